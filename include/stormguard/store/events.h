/* The gate's journal in the store (schema/002_gate.sql, 004_held.sql,
 * 005_event_checks.sql, 006_ledger_mark.sql): one event row per request the
 * gate answered 2xx, the delivery queue of the pending ones in (qgen, id)
 * order, their retention, and the ledger of every build accepted for
 * forwarding, which survives a Redis wipe. The journal's writer thread
 * writes them in its group commit (sg_store_begin/commit); the gate reads
 * them on its own read-only connection. Callers include
 * stormguard/store/store.h; like every store call, these run on the one
 * thread using the sg_store. */
#ifndef STORMGUARD_STORE_EVENTS_H
#define STORMGUARD_STORE_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stormguard/base/error.h"

typedef struct sg_store sg_store;

/* ---- events ---- */

/* The states of an event: the store's one vocabulary of them. Their names
 * are the event table's CHECK list (schema/002_gate.sql, kept by
 * 005_event_checks.sql), in its order; only the store turns them into
 * those names and back. */
typedef enum sg_event_state {
    SG_STATE_PENDING,    /* in the delivery queue: not yet accepted downstream */
    SG_STATE_FORWARDED,  /* the downstream accepted it */
    SG_STATE_SUPPRESSED, /* a replay (the ledger's or the classifier's): never forwarded */
    SG_STATE_HELD,       /* kept back in a storm until released (pending again) or dropped */
    SG_STATE_RELEASED,   /* in the schema's list, but a release makes an event pending */
    SG_STATE_DROPPED,    /* by an operator while held, or on arrival (on_storm = drop) */
    SG_STATE_SUPERSEDED, /* held below a newer held build of its job that was released */
    SG_STATE_DEAD,       /* refused (4xx) or too old (max_age): never retried */
    SG_STATE_COUNT
} sg_event_state;

/* The state's name as the event table stores it ("pending"); NULL for a
 * value that is no state (SG_STATE_COUNT included). The string is static. */
const char *sg_event_state_name(sg_event_state state);
/* The state named name, exactly as the table stores it (case matters);
 * *out is written only on success. Returns 0, or SG_EINVAL for NULL or any
 * other string. */
int sg_event_state_parse(const char *name, sg_event_state *out);

/* One journaled request. Strings are borrowed for the call. */
typedef struct sg_event_row {
    int64_t id;               /* set by sg_store_event_insert */
    int64_t received_at;      /* epoch ms */
    const char *source, *job; /* NULL for pass-through */
    int64_t number, build_ts;
    const char *kind, *reason;
    sg_event_state state;
    const char *method, *path, *headers;
    const void *body;
    size_t body_len;
    int64_t attempts, next_attempt_at, done_at;
    const char *last_error;
    int64_t qgen;      /* queue generation of a pending event (004_held.sql) */
    const char *would; /* observe mode: the state the gate would have given it, or NULL
                        * (008_observe.sql) */
    /* A Docker event (010_docker_events.sql): source is the account, job
     * the repository, number the identity of tag and digest; NULL else. */
    const char *tag, *digest;
} sg_event_row;

/* Journals row (in the caller's transaction, if one is open) and sets
 * row->id; number, build_ts, next_attempt_at and done_at of 0 are stored
 * as NULL. */
int sg_store_event_insert(sg_store *s, sg_event_row *row, sg_error *err);
/* Records a delivery attempt's outcome: state, attempts, next attempt,
 * last error, done_at (0 = NULL). Strings are borrowed for the call. */
int sg_store_event_update(sg_store *s, int64_t id, sg_event_state state, int64_t attempts,
                          int64_t next_attempt_at, const char *last_error, int64_t done_at,
                          sg_error *err);

/* A delivery attempt's outcome, as sg_store_event_update takes it. */
typedef struct sg_event_outcome {
    int64_t id;
    sg_event_state state;
    int64_t attempts, next_attempt_at, done_at; /* 0 = NULL */
    const char *last_error;                     /* borrowed for the call */
    /* set by the call on a store other gates share: the event's job has
     * unclaimed pending events (behind it; replicas.h), which a claim can
     * take now that it is done */
    bool followers;
} sg_event_outcome;
/* Records n outcomes, in order, each as sg_store_event_update (and fenced
 * as it is, replicas.h). On PostgreSQL in one statement, one round trip
 * for them all; on SQLite one after another. In the caller's transaction. */
int sg_store_events_update(sg_store *s, sg_event_outcome *outs, size_t n, sg_error *err);

/* A batch of events to journal on a store other gates write too: each
 * row goes in as by sg_store_event_insert (row->id set) and, with ledger,
 * its build into the ledger in the same statement; added says whether the
 * build was new to the ledger (false: another event had it, and the
 * caller journals this one a replay, sg_store_event_replayed). A pending
 * row joins its job's queue behind what is pending of the job already:
 * its qgen is raised to theirs if below (another gate's release), and
 * row->qgen says the one it got. On PostgreSQL the batch is one statement
 * (64 MiB of requests a statement at most), one round trip; on SQLite one
 * statement after another. In the caller's transaction; a failure fails
 * the whole batch. */
typedef struct sg_event_insert {
    sg_event_row *row;
    bool ledger;
    bool added;
    /* a shared store's replica that claims the event as it goes in, if
     * pending and alone in its job's queue (replicas.h: events behind
     * others are claimed from the table, in order); NULL: none. claimed
     * says whether it did. */
    const char *claimer;
    bool claimed;
} sg_event_insert;
int sg_store_events_journal(sg_store *s, sg_event_insert *ins, size_t n, sg_error *err);
/* Takes, for the rest of the open transaction, a lock on each job (source
 * and job) of the rows, every gate in the same order. Gates journaling
 * events of one job then take turns: within a job, id order is commit
 * order (a claim never meets a job's later event committed before its
 * earlier one, replicas.h), and their ledger rows never wait for each
 * other crosswise (a deadlock the server would break by failing a whole
 * batch). With wait, once a transaction, before its first events; later
 * ones take more without waiting: *got says whether every lock was free
 * (if not, those events go in another transaction). SQLite has one
 * writer: nothing to take, *got is true. */
int sg_store_events_lock_jobs(sg_store *s, const sg_event_insert *ins, size_t n, bool wait,
                              bool *got, sg_error *err);

/* Rewrites the classification of the event row->id, journaled in the
 * open transaction, as row says: kind, reason, state, would, next attempt,
 * done_at and qgen (0 = NULL as on insert), last error. A gate sharing its
 * store learns that an event is a replay only once its ledger row lost to
 * another replica's (sg_store_ledger_add), after the insert. */
int sg_store_event_replayed(sg_store *s, const sg_event_row *row, sg_error *err);

/* Pending events after (after_gen, after_id) in queue order (qgen, id), at
 * most limit; the row's pointers are valid during the call only, and fn
 * returns non-zero to stop. */
typedef int (*sg_event_fn)(void *ud, const sg_event_row *row);
int sg_store_events_pending(sg_store *s, int64_t after_gen, int64_t after_id, int limit,
                            sg_event_fn fn, void *ud, sg_error *err);
/* The highest queue generation among pending events (0 if none). */
int sg_store_queue_gen(sg_store *s, int64_t *gen, sg_error *err);

/* Events newest first, filtered by state, kind and job (each may be NULL:
 * any), at most limit, passed to fn as by sg_store_events_pending. */
int sg_store_events_query(sg_store *s, const sg_event_state *state, const char *kind,
                          const char *job, int limit, sg_event_fn fn, void *ud, sg_error *err);

/* Calls fn(ud, kind, state, would, count) for every (kind, state, would)
 * present (would NULL but in observe mode); the strings are valid during
 * the call only. open_only: of the events still open (pending, held,
 * dead), which their partial indexes count without a scan of the journal. */
typedef void (*sg_count_fn)(void *ud, const char *kind, sg_event_state state, const char *would,
                            int64_t count);
int sg_store_event_counts(sg_store *s, bool open_only, sg_count_fn fn, void *ud, sg_error *err);

/* PostgreSQL: whether the planner's statistics of the event table are
 * stale, given the pending events counted (out: changes 0 and planned -1
 * when not; always on SQLite, whose plans do not depend on them, and for
 * a user that does not own the table, which may not renew them).
 * Autovacuum renews them a minute or more after the table changed, and
 * plans made on a wrong picture scan every pending event for each one
 * they look at: on a young table, a replica's claims; after an analyze of
 * an idle table (nothing pending, so every partial index on the pending
 * events counted empty however big it grows), the claims, the outcomes
 * and the release of lapsed claims, until deliveries all but stopped
 * behind a backlog (README, "Scale out"). */
typedef struct sg_events_stale {
    int64_t changes; /* rows changed since, when as many as the table holds
                        (and 1,000 at least); else 0 */
    int64_t planned; /* the pending events the planner counts on, when the
                        `pending` counted are 4 times as many or more (and
                        1,000 at least); else -1 */
} sg_events_stale;
int sg_store_events_stale(sg_store *s, int64_t pending, sg_events_stale *out, sg_error *err);
/* Renews them (ANALYZE, which has every session's plans made again);
 * *done false if PostgreSQL skipped it (the table locked by another
 * session; SQLite). It may take a second on a big table. */
int sg_store_events_analyze(sg_store *s, bool *done, sg_error *err);

/* The arrival time (received_at, epoch ms; 0 if none) of the oldest
 * pending event and of the oldest held one, for the gate's age gauges.
 * Both are read through partial indexes, never by a scan of the table:
 * the pending one is the first of each queue generation of event_open
 * (O(generations log n): events of one generation arrived in id order,
 * and a release puts older events in a newer generation), the held one
 * the lowest id of event_held (a scan of that index alone, O(held)). */
int sg_store_oldest_pending(sg_store *s, int64_t *received_at, sg_error *err);
int sg_store_oldest_held(sg_store *s, int64_t *received_at, sg_error *err);

/* The highest event id journaled so far (0 if none). */
int sg_store_last_event_id(sg_store *s, int64_t *id, sg_error *err);

/* One chunk of the journal's retention: among the `limit` events after id
 * *cursor, deletes those received before `before` (epoch ms) that are done
 * with (forwarded, suppressed, dropped, superseded; never pending, held or
 * dead). *cursor moves past the chunk; *deleted counts; *more is false once
 * the chunk reached events received at or after `before` (or the end). The
 * ledger keeps its rows: it still tells a second delivery. */
int sg_store_events_prune(sg_store *s, int64_t before, int64_t limit, int64_t *cursor,
                          int64_t *deleted, bool *more, sg_error *err);

/* ---- the ledger ---- */

/* Adds a build to the ledger, accepted at accepted_at (epoch ms: the time its
 * event was received, by the journal's clock); an existing entry is kept, and
 * *added says which happened. source and job are never NULL. */
int sg_store_ledger_add(sg_store *s, const char *source, const char *job, int64_t number,
                        int64_t event_id, int64_t accepted_at, bool *added, sg_error *err);
/* Whether the ledger has the build. */
int sg_store_ledger_has(sg_store *s, const char *source, const char *job, int64_t number, bool *has,
                        sg_error *err);
/* Calls fn with every job of the ledger and its highest build number; the
 * strings are valid during the call only. */
typedef void (*sg_ledger_newest_fn)(void *ud, const char *source, const char *job, int64_t number);
int sg_store_ledger_newest(sg_store *s, sg_ledger_newest_fn fn, void *ud, sg_error *err);
/* Calls fn for every job with a build in the ledger (the classifier's
 * sg_ledger), strings valid during the call only; *builds gets the number
 * of builds. */
typedef void (*sg_ledger_fn)(void *ud, const char *source, const char *job);
int sg_store_ledger_jobs(sg_store *s, sg_ledger_fn fn, void *ud, int64_t *builds, sg_error *err);
/* The Docker tags the gate accepted for forwarding (events of kind new or
 * unknown still journaled), oldest first: account, repository, tag and
 * digest (NULL: none). */
typedef void (*sg_ledger_tag_fn)(void *ud, const char *account, const char *repository,
                                 const char *tag, const char *digest);
int sg_store_ledger_docker(sg_store *s, sg_ledger_tag_fn fn, void *ud, sg_error *err);

/* The ledger is written in bulk (journal.c, 006_ledger_mark.sql): every
 * event up to *upto that it should hold (kind new or unknown) is in it. The
 * setter moves the mark in the caller's transaction, if one is open. */
int sg_store_ledger_mark(sg_store *s, int64_t *upto, sg_error *err);
int sg_store_ledger_set_mark(sg_store *s, int64_t upto, sg_error *err);
/* Adds the builds of the events after the mark to the ledger and moves the
 * mark to the last event, in a transaction of its own (none may be open);
 * *added counts the builds that were missing. */
int sg_store_ledger_catch_up(sg_store *s, int64_t *added, sg_error *err);

#endif
