/* The held queue (DESIGN.md: hold; the "held" state of the data model).
 *
 * While guard or storm mode is on for its source, a build of a job the index
 * has never seen (kind unknown) is not forwarded: it is journaled as held,
 * or dropped with on_storm = drop, and waits for an operator's release or
 * drop, or for the drain (on_storm = drain). Replays stay suppressed and new
 * builds are forwarded in every mode: they are genuine (DOMAIN.md section 4).
 *
 * Held events live only in the store, so a million of them cost no memory
 * per event and all of them survive a restart. A release moves them to a
 * new queue generation (store.h, 004_held.sql): the owner's delivery queue
 * finds them there, the path that resumes pending events after a restart,
 * so a released build is delivered at most once like any other. Leaving
 * guard or storm mode releases nothing by itself.
 *
 * No sockets, no timers: the owner calls sg_hold_tick about once a second
 * (the drain) and hears of every committed change through its hooks. One
 * thread (the loop's). */
#ifndef STORMGUARD_HOLD_H
#define STORMGUARD_HOLD_H

#include <stdbool.h>
#include <stdint.h>

#include "stormguard/base/clock.h"
#include "stormguard/base/error.h"
#include "stormguard/gate/classify.h"
#include "stormguard/gate/guard.h"
#include "stormguard/gate/journal.h"
#include "stormguard/store/events.h"
#include "stormguard/store/held.h"

typedef struct sg_hold sg_hold;

/* What happens to what guard or storm mode holds ([storm] on_storm). */
typedef enum sg_on_storm {
    SG_ON_STORM_HOLD,  /* held until an operator acts */
    SG_ON_STORM_DRAIN, /* released at drain_rate, newest build per job */
    SG_ON_STORM_DROP,  /* dropped on arrival */
} sg_on_storm;
/* "hold", "drain", "drop". */
int sg_on_storm_parse(const char *s, sg_on_storm *out);

/* A committed chunk of a release or drop: held events that became pending
 * (released), superseded or dropped. */
typedef struct sg_hold_moved {
    int64_t released, superseded, dropped;
} sg_hold_moved;

typedef struct sg_hold_hooks {
    /* The delivery queue's next generation: released events queue behind
     * everything journaled so far and ahead of what comes after. */
    int64_t (*next_gen)(void *ud);
    /* After each committed chunk (before the operation's done): counts to
     * move; released events are in the store, pending. */
    void (*moved)(void *ud, const sg_hold_moved *m);
    void *ud;
} sg_hold_hooks;

typedef struct sg_hold_opts {
    sg_on_storm on_storm;
    int64_t drain_rate;    /* events a second, with SG_ON_STORM_DRAIN */
    const sg_guard *guard; /* whose mode decides (borrowed) */
    sg_journal *journal;   /* where releases and drops are written (borrowed) */
    const sg_clock *clock; /* borrowed */
    sg_hold_hooks hooks;
} sg_hold_opts;

sg_hold *sg_hold_new(const sg_hold_opts *o);
/* Frees h (NULL is fine); call once no operation is running (after the
 * journal stopped). */
void sg_hold_free(sg_hold *h);

/* The state a classified event is journaled in: suppressed (a replay),
 * pending, held, or dropped with *why saying why (else *why is NULL). */
sg_event_state sg_hold_state(const sg_hold *h, sg_kind kind, const char *source, const char **why);

/* An operator's release or drop. Strings are copied. */
typedef struct sg_hold_request {
    sg_hold_filter filter; /* which held events (store.h); filter.limit is ignored */
    bool newest_only;      /* release: older builds of a job are superseded */
    const char *reason;    /* drop: required */
    const char *actor;     /* who asked, for the audit row and the log */
} sg_hold_request;

typedef struct sg_hold_result {
    int status;      /* 0, SG_ESTORE (the journal failed) or SG_EBUSY (stopping) */
    char error[400]; /* why, when status != 0, with what was done before */
    int64_t released, superseded, dropped; /* over every chunk */
} sg_hold_result;
/* Called once per operation, after its last chunk committed or failed; r
 * is valid during the call only. */
typedef void (*sg_hold_done_fn)(void *ud, const sg_hold_result *r);

/* Releases or drops the held events r selects, in chunks of 5,000 events,
 * one journal transaction each, so the gate's own commits go in between;
 * the audit row goes with the first. A release or drop acts on what was
 * held when it began, not on what a storm holds while it runs. */
void sg_hold_release(sg_hold *h, const sg_hold_request *r, sg_hold_done_fn done, void *ud);
void sg_hold_drop(sg_hold *h, const sg_hold_request *r, sg_hold_done_fn done, void *ud);

/* The drain: with on_storm = drain and events held, releases the next
 * drain_rate of them (newest build per job, the rest superseded), one
 * release at a time. held: how many are held now. */
void sg_hold_tick(sg_hold *h, int64_t held);

/* No chunk starts after this: an operation in chunks ends after its current
 * one, its done reporting SG_EBUSY with the count so far; the drain stops;
 * a release or drop asked for afterwards calls its done at once, inside the
 * call, with SG_EBUSY. */
void sg_hold_stop(sg_hold *h);

#endif
