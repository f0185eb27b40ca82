/* The gate core: what happens to a request, without sockets.
 *
 *   request -> parse (event.h) -> classify (classify.h) -> guard (modes,
 *   storms) -> hold (the state it is journaled in) -> journal (group commit)
 *   -> answer -> delivery queue -> the deliverer -> result -> journal
 *
 * The HTTP front end (gate.h, `stormguard run`) feeds it requests and hands
 * its deliveries to the forwarder; the simulator feeds it the same requests
 * in virtual time and delivers to a model of the notifier. Underneath are
 * the real journal and store either way.
 *
 * Delivery order is journal order: committed pending events go to the
 * deliverer directly while its backlog is under 4,096; past that the
 * journal is the queue ("spilled") and the deliverer is refilled from the
 * store in queue order (qgen, id) as it drains, so memory stays bounded
 * however long the notifier is down. A start is the spilled state: what
 * the last run left pending resumes the same way. Reads of the store (the
 * refill, baseline reloads, the ages of the oldest pending and held events,
 * /v1/events, the held summary) run one at a time
 * on libuv's thread pool with the core's own read-only connection, so the
 * loop never waits on SQLite.
 *
 * Time comes from the clock in the options. Everything runs on the loop
 * thread; every callback below runs there too, never inside the call that
 * caused it. */
#ifndef STORMGUARD_CORE_H
#define STORMGUARD_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stormguard/base/clock.h"
#include "stormguard/base/error.h"
#include "stormguard/base/util.h"
#include "stormguard/gate/classify.h"
#include "stormguard/gate/delivery.h"
#include "stormguard/gate/event.h"
#include "stormguard/gate/guard.h"
#include "stormguard/gate/hold.h"
#include "stormguard/gate/journal.h"
#include "stormguard/gate/metrics.h"
#include "stormguard/store/store.h"
#include "stormguard/store/events.h"
#include "stormguard/store/held.h"
#include "stormguard/store/replicas.h"

struct uv_loop_s;

typedef struct sg_core sg_core;

typedef struct sg_core_opts {
    const char *db_path;
    sg_sync_mode synchronous;
    const sg_clock *clock;         /* borrowed for the core's life */
    sg_event_config events;        /* strings borrowed for the core's life */
    const sg_strlist *build_paths; /* paths where build events arrive; borrowed */
    sg_storm_opts storm;           /* guard.h */
    int64_t guard_ms, cooldown_ms; /* guard.h */
    sg_on_storm on_storm;          /* hold.h */
    int64_t drain_rate;            /* hold.h */
    int64_t keep_events_ms;        /* retention of finished events; 0: keep them */
    /* The submitter waits for each answer before its next request (the
     * simulator): the journal commits each write at once instead of
     * lingering for company (journal.h, no_linger). */
    bool one_at_a_time;
    /* Observe mode ([gate] mode = observe): every event is forwarded as if
     * the gate were not there; what it would have suppressed, held or
     * dropped is journaled (sg_event_row.would) and counted (would). */
    bool observe;
    /* On a shared store (replicas.h): this gate's replica name, the
     * sg_store_claim_name of its claim. Its deliveries are then claimed
     * from the store (the heads of the jobs' queues, under a lease renewed
     * every tick) instead of pushed as they commit, and the counts of
     * events are the whole set's, read with the ages. NULL: the gate
     * delivers its own queue. */
    const char *replica;
} sg_core_opts;

/* Where deliveries go: the forwarder, or the simulator's notifier. push
 * takes the item (free it with sg_fwd_item_free once done); its result
 * comes back through sg_core_delivered. backlog counts items pushed and not
 * yet reported DELIVERED or DEAD. */
typedef struct sg_deliverer {
    void (*push)(void *ud, sg_fwd_item *item);
    size_t (*backlog)(void *ud);
    void *ud;
} sg_deliverer;

/* Opens the journal (its writer thread) and the core's reader, loads the
 * counts, the ledger's jobs and the newest baseline snapshot, and resumes
 * the pending events of the last run once sg_core_set_deliverer gave it
 * somewhere to send them. On error *out is not written, and a journal
 * already started is stopping: the caller runs the loop to its end before
 * closing it. Once the core is closed (sg_core_close's done), no function
 * but sg_core_free may be called, sg_core_delivered included. */
int sg_core_start(struct uv_loop_s *loop, const sg_core_opts *o, sg_core **out, sg_error *err);
void sg_core_set_deliverer(sg_core *c, const sg_deliverer *d);
/* Of replicas sharing a store (o.replica), one leads: the holder of the
 * store's watcher lock (store.h, sg_store_claim_watcher), told by its owner.
 * Only the leader drains held events (on_storm = drain), so the whole set
 * drains at drain_rate, not at drain_rate times the replicas. A gate of its
 * own store always leads. */
void sg_core_set_leading(sg_core *c, bool leading);

/* One request as the front end received it. Strings are borrowed for the
 * call: the core copies what it keeps. headers are the lines the
 * deliverer will send, "name: value\n" each. */
typedef struct sg_request {
    const char *method, *path; /* path with the query string */
    size_t method_len, path_len;
    const char *headers;
    const void *body;
    size_t body_len;
} sg_request;

typedef struct sg_answer {
    int status;      /* 200, or 503 when the journal could not be written */
    int retry_after; /* seconds, with 503 */
    int64_t id;      /* the event's, with 200 */
    sg_kind kind;
    sg_event_state state;
    const char *error; /* with 503 */
} sg_answer;
/* Called once per accepted request; a is valid during the call only. */
typedef void (*sg_answer_fn)(void *ud, const sg_answer *a);

/* Takes a request: 0, and answer(ud, ...) runs once its event is durable
 * (or could not be made so); SG_EINVAL with err saying why (a malformed or
 * absurd event: nothing journaled, answer never called); SG_EBUSY when the
 * core is stopping. */
int sg_core_submit(sg_core *c, const sg_request *rq, sg_answer_fn answer, void *ud, sg_error *err);

/* A delivery's result, as the forwarder reports it (forward.h): for RETRY
 * the deliverer keeps the item; for DELIVERED and DEAD the core takes it. */
void sg_core_delivered(sg_core *c, sg_fwd_item *it, sg_fwd_outcome outcome, long status,
                       const char *error, double seconds);

/* About once a second: mode expiry, the drain, the refill, the journal's
 * retention, a look for a newer baseline (every 5 s), the store's free
 * space, and a line of activity in the log (every 10 s). */
void sg_core_tick(sg_core *c);
/* Looks for a newer baseline snapshot now (after one was taken). */
void sg_core_reload(sg_core *c);

/* The guard and the held queue, for the front end's wipes and operators. */
sg_guard *sg_core_guard(sg_core *c);

/* A flush is announced (sg_guard_announce), and on a shared store told to
 * the other replicas (its guard mode and the window its wipe is expected
 * in) before done(ud, 0, NULL): the one that
 * watches Redis must know it before the flush comes. The status and error
 * say why it could not be told. */
typedef void (*sg_core_done_fn)(void *ud, int status, const char *error);
void sg_core_announce(sg_core *c, const char *reason, sg_core_done_fn done, void *ud);
/* Reads the other replicas' modes now (a shared store; else at once) and
 * adopts them before then(ud): a wipe just seen may be the flush another
 * replica announced. */
void sg_core_read_modes(sg_core *c, void (*then)(void *ud), void *ud);
sg_hold *sg_core_hold(sg_core *c);
/* Events held now. */
int64_t sg_core_held(const sg_core *c);

/* Writes an audit row (actor, action, detail; copied) and calls done(ud,
 * status, error) (done may be NULL) once it committed (status 0) or failed
 * (SG_ESTORE). Returns SG_EBUSY once the core is stopping (done is not
 * called), else 0. */
int sg_core_audit(sg_core *c, const char *actor, const char *action, const char *detail,
                  sg_core_done_fn done, void *ud);

/* Called on the loop thread each time a newer baseline snapshot was loaded
 * (sg_core_reload, the tick), with its id, and whether it was taken after
 * the last wipe the guard heard of: a snapshot from before it (a flush's own
 * pre-flush snapshot) names keys that are gone, and watching them would
 * report the same wipe again. */
typedef void (*sg_core_baseline_fn)(void *ud, int64_t snapshot_id, bool after_last_wipe);
void sg_core_on_baseline(sg_core *c, sg_core_baseline_fn fn, void *ud);

/* Up to SG_CORE_SAMPLE_KEYS keys of snapshot_id that match glob (NULL: any),
 * spread over it, read off the loop: what the watcher checks for (a wipe
 * of the poller's keys alone leaves the canary). fn runs once on success,
 * with the keys valid during the call; a failure is logged. Reads (this,
 * sg_core_events, sg_core_held_summary) are served while the core stops;
 * once sg_core_close began they return SG_EBUSY and fn is not called. */
#define SG_CORE_SAMPLE_KEYS 32
typedef void (*sg_core_sample_fn)(void *ud, int64_t snapshot_id, const char *const *keys, size_t n);
int sg_core_sample(sg_core *c, int64_t snapshot_id, const char *glob, sg_core_sample_fn fn,
                   void *ud);

/* ---- reports ---- */

enum { SG_CORE_KINDS = 4 };

typedef struct sg_core_stats {
    int64_t counts[SG_CORE_KINDS][SG_STATE_COUNT]; /* journaled events by kind, state */
    bool observe;                                  /* sg_core_opts.observe */
    /* observe mode: journaled events the gate would have suppressed, held
     * or dropped (indexed by that state; forwarded, or pending, instead) */
    int64_t would[SG_STATE_COUNT];
    uint64_t received[SG_CORE_KINDS]; /* answered 200, by kind */
    uint64_t rejected, unavailable;   /* 400 (bad events), 503 (journal) */
    int64_t pending, held;
    bool journal_ok;
    const char *journal_error; /* when !journal_ok; valid until the next call */
    int journal_depth;
    int reads;                       /* reads of the store running or queued off the loop */
    int64_t free_bytes, store_bytes; /* the store's file system; -1 until measured */
    int64_t ledger_builds;
    /* the baseline: id 0 if none */
    int64_t baseline_id, baseline_taken_at_ms, baseline_keys;
    const char *baseline_reason; /* valid until the next reload */
    size_t baseline_jobs, ledger_jobs;
    /* deliveries */
    uint64_t fwd_attempts, fwd_failures;
    bool downstream_ok;
    int64_t downstream_last_ok, downstream_last_fail; /* epoch ms, 0: never */
    const char *downstream_error;                     /* the last failure's */
    const sg_histogram *commit_hist, *forward_hist;
    int64_t started_at_ms, now_ms; /* the core's clock */
    /* when the oldest pending and the oldest held event arrived (epoch ms);
     * 0 when there is none, or until the store was read (within 5 s of a
     * start or a release). An event that left is noticed within 5 s. */
    int64_t oldest_pending_ms, oldest_held_ms;
    /* A shared store's replicas (replicas.h), as last read with the ages;
     * valid until the loop turns. None on SQLite. */
    const sg_replica_row *replicas;
    size_t nreplicas;
    const char *replica; /* this one's name (sg_core_opts.replica), or NULL */
    /* a shared store: when all its counts were last read (epoch ms, 0:
     * not yet), how long that took, and when they are read next (100
     * times that later, 5 s at least; the open events' at every 5 s) */
    int64_t counted_at_ms, count_ms, next_count_ms;
} sg_core_stats;
void sg_core_stats_get(const sg_core *c, sg_core_stats *out);

/* Journaled events, newest first, read off the loop: filters may be NULL
 * (state is copied).
 * fn runs once on the loop thread with the rows (valid during the call) or
 * with status != 0 and error set. */
typedef void (*sg_core_events_fn)(void *ud, int status, const char *error, const sg_event_row *rows,
                                  size_t n);
int sg_core_events(sg_core *c, const sg_event_state *state, const char *kind, const char *job,
                   int limit, sg_core_events_fn fn, void *ud);

/* The held summary (store.h: sg_store_held_summary), read off the loop. */
typedef struct sg_held_job {
    const char *source, *job;
    int64_t count, oldest, newest;
} sg_held_job;
typedef void (*sg_core_held_fn)(void *ud, int status, const char *error, int64_t held,
                                int64_t jobs_total, const sg_held_job *jobs, size_t n);
int sg_core_held_summary(sg_core *c, int64_t limit, sg_core_held_fn fn, void *ud);

/* ---- stopping ---- */

/* Stops taking requests and operations (sg_core_submit, sg_core_audit:
 * SG_EBUSY from now on) and starts no delivery; results of deliveries already pushed are still
 * taken. Then, once the front end has no request waiting (the listeners are closed) and the
 * deliverer has reported everything in flight, sg_core_close commits what is queued, stops the
 * journal, and calls done(ud); after that only sg_core_free may be called. */
void sg_core_stop(sg_core *c);
bool sg_core_stopping(const sg_core *c);
void sg_core_close(sg_core *c, void (*done)(void *ud), void *ud);
/* Frees c (NULL is fine), after close's done ran or the loop ended. */
void sg_core_free(sg_core *c);

#endif
