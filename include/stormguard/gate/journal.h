/* The journal: every write the daemon makes to the store goes through one
 * writer thread that commits all pending writes in one transaction (group
 * commit) and reports each write's outcome back on the loop thread. Requests
 * that arrive while a transaction commits ride in the next one, so the cost
 * of a commit is shared by everything that waited for it. */
#ifndef STORMGUARD_JOURNAL_H
#define STORMGUARD_JOURNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "stormguard/base/clock.h"
#include "stormguard/base/error.h"
#include "stormguard/store/store.h"
#include "stormguard/store/events.h"
#include "stormguard/store/held.h"

struct uv_loop_s;

/* Free space the store's file system needs beyond the store's own files:
 * the WAL grows to 64 MiB at most before it starts over (journal.c), and
 * the database grows by as much when the WAL is copied into it. With less,
 * a commit may fail for want of space (the gate answers 503), and space
 * freed on a full disk goes first to that copy. */
#define SG_JOURNAL_HEADROOM_BYTES (128LL << 20)

typedef struct sg_journal sg_journal;

typedef enum sg_jop_type {
    SG_JOP_INSERT,  /* insert row (its id is set), and the ledger entry if ledger */
    SG_JOP_UPDATE,  /* update row.id's state, attempts, next attempt, error, done_at */
    SG_JOP_RELEASE, /* held events of hold become pending in qgen (store.h) */
    SG_JOP_DROP,    /* held events of hold become dropped with reason */
    SG_JOP_AUDIT,   /* only the audit row below */
    SG_JOP_EPISODE, /* opens an episode (episode_id 0: set) or updates one */
    SG_JOP_PRUNE,   /* one chunk of the journal's retention (store.h) */
    SG_JOP_PROBE,   /* a write that changes nothing: does the store take commits? */
} sg_jop_type;

typedef struct sg_jop sg_jop;
struct sg_jop {
    sg_jop_type type;
    sg_event_row row; /* borrowed strings: must live until done runs */
    bool ledger;      /* INSERT: also add (source, job, number) to the ledger */
    bool duplicate;   /* INSERT with ledger: the ledger had the build, so the
                       * row went in as a suppressed replay instead */
    bool observe;     /* INSERT, observe mode: a duplicate stays pending, would
                       * "suppressed" */
    bool claim;       /* INSERT, a shared store: claim the event for this replica
                       * if it is its job's head (sg_journal_opts.replica) */
    bool claimed;     /* after commit: it was (the submitter delivers it) */
    bool followers;   /* UPDATE, a shared store, after commit: the event's job
                       * has unclaimed pending events (sg_event_outcome) */
    /* RELEASE, DROP: which events, how; results after commit */
    sg_hold_filter hold;
    bool newest_only;
    int64_t qgen;
    const char *reason;
    int64_t released, superseded, dropped;
    bool more; /* a chunk (hold.limit, PRUNE): another may find more */
    /* PRUNE: events received before prune_before, from prune_cursor on
     * (moved past the chunk); how many went */
    int64_t prune_before, prune_cursor, pruned;
    /* any type: with an action, an audit row in the same transaction */
    const char *actor, *action, *detail;
    /* any type: when it was submitted (epoch ms; 0: sg_journal_submit sets
     * it from the journal's clock): the time the store records for it
     * (a duplicate's done_at, a release's or drop's, an episode's opening) */
    int64_t at;
    /* EPISODE: cause (on open), detail (appended), ended_at (0: open) */
    int64_t episode_id, ended_at;
    const char *cause;
    int status;               /* after commit: 0 or an SG_E* code */
    char errmsg[256];         /* why, when status != 0 */
    double commit_s;          /* how long the transaction that carried it took */
    void (*done)(sg_jop *op); /* on the loop thread, after the commit */
    void *ud;
    sg_jop *next; /* private to the journal */
};

typedef struct sg_journal_opts {
    sg_sync_mode sync;
    /* stamps op->at at submit when the submitter left it 0; NULL: the real
     * one; borrowed for the journal's life */
    const sg_clock *clock;
    /* A write that wakes the idle writer keeps its transaction open a
     * moment (250 us at most) for the writes the loop is reading behind it,
     * so that they share one commit. A submitter that waits for each answer
     * before its next write (the simulator's one poller) sets no_linger:
     * nothing ever comes behind, and the moment would only be lost. */
    bool no_linger;
    /* On a shared store, the replica's name (replicas.h): the events it
     * journals with op->claim are claimed as they go in, when they are
     * the heads of their jobs' queues. Borrowed for the journal's life. */
    const char *replica;
    /* Every op reaches rows by their keys (a replica's delivery outcomes):
     * the store's connection is keyed (sg_store_options). */
    bool keyed;
} sg_journal_opts;

/* Opens the store at path for writing on a new thread; o may be NULL (all
 * defaults). */
int sg_journal_start(struct uv_loop_s *loop, const char *path, const sg_journal_opts *o,
                     sg_journal **out, sg_error *err);

/* Queues op (loop thread). The caller keeps op alive until op->done. */
void sg_journal_submit(sg_journal *j, sg_jop *op);

/* Writes still queued or committing. */
int sg_journal_depth(const sg_journal *j);

/* Commits what is queued, stops the thread, closes the store and calls
 * stopped(ud) on the loop thread; j is then freed. */
void sg_journal_stop(sg_journal *j, void (*stopped)(void *ud), void *ud);

#endif
