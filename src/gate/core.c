/* The gate core (core.h).
 *
 * A second delivery of a build the gate accepted before is told by the
 * journal, which checks the store's ledger in the transaction that would
 * add the build to it, so two deliveries racing each other cannot both be
 * accepted, and a crash leaves both the event and its ledger row or
 * neither. The core only remembers which jobs the ledger knows.
 *
 * The delivery queue. While the deliverer's backlog is under SPILL_AT,
 * committed pending events are pushed to it directly; past that (and at a
 * start, and after a release) the journal is the queue and refills read it
 * in queue order (qgen, id) after the last event handed over. A refill
 * runs on the thread pool; events committed meanwhile are not pushed (that
 * would jump the queue) but make the refill run again once it is back,
 * since it may have read the journal before they were in it.
 *
 * On a store other gates share (o.replica), the store is always the queue:
 * the commit of an event not claimed as it went in, the record of a
 * delivery whose job has unclaimed events behind it (fwd_update's
 * followers) and the tick each start a claim of the heads of the jobs'
 * queues (replicas.h), which runs again while it finds some, and the
 * claimed events go to the deliverer. A claim after every delivery cost
 * PostgreSQL a quarter of a core at full load, mostly finding nothing. The
 * tick renews the replica's lease and hands the claims of replicas gone to
 * everyone. */
#include "stormguard/gate/core.h"

#include <assert.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <uv.h>

#include "stormguard/base/clock.h"
#include "stormguard/base/log.h"
#include "stormguard/store/events.h"
#include "stormguard/store/held.h"
#include "stormguard/store/replicas.h"
#include "stormguard/store/snapshots.h"

#define SPILL_AT 4096 /* deliverer backlog held in memory at most */
#define REFILL_BATCH 512
#define RELOAD_EVERY_MS 5000   /* how often a newer baseline is looked for */
#define SPACE_EVERY_MS 5000    /* the store's free space */
#define SUMMARY_EVERY_MS 10000 /* a line of activity in the log */
#define PROBE_EVERY_MS 1000    /* a probe write while the journal is unwritable */
#define PRUNE_FIRST_MS 10000   /* the retention's first pass after the start */
#define PRUNE_EVERY_MS (3600 * 1000LL)
#define AGES_EVERY_MS 5000 /* the oldest pending and held events, read again */
#define COUNTS_COST 100    /* a count of the set's events waits 100 times its duration */
#define ANALYZE_RETRY_S 60 /* an analyze that failed is tried again this much later */
/* An analyze for a backlog the planner does not see waits only 10 times its
 * duration: the backlog grows meanwhile (each such analyze needs 4 times
 * the pending events of the last, sg_events_stale). */
#define ANALYZE_BACKLOG_COST 10

/* A read of the store off the loop. Serial ones share the core's reader
 * connection, one at a time, in order; the others (operators' queries that
 * may take a second) open a connection of their own and run alongside. */
typedef struct read_job read_job;
struct read_job {
    uv_work_t work;
    sg_core *c;
    bool serial;
    bool bare;                             /* runs without a store connection (s NULL) */
    void (*run)(read_job *j, sg_store *s); /* on the thread pool */
    void (*done)(read_job *j, int status); /* on the loop; frees j */
    int rc;
    sg_error err;
    read_job *next;
};

struct sg_core {
    uv_loop_t *loop;
    sg_core_opts o;
    const sg_clock *clock;
    sg_journal *journal;
    /* A replica's delivery outcomes: a journal of their own, on a connection
     * of their own, so that they commit beside the events' transactions
     * instead of between them (NULL on SQLite, whose one writer is the
     * journal's). An outcome is written after its event's commit, whichever
     * journal: delivery waits for that commit. */
    sg_journal *outcomes;
    bool outcomes_stopping;
    sg_guard *guard;
    sg_hold *hold;
    sg_store *reader; /* the serial read jobs' connection (not a replica's claims') */
    read_job *reads, **reads_tail;
    bool reading; /* a serial read job is on the thread pool */
    int readers;  /* read jobs not yet done, serial or not */

    sg_index index;
    sg_ledger ledger;
    int64_t ledger_builds;
    int64_t baseline_id, baseline_taken_at, baseline_keys;
    char *baseline_reason;
    bool reloading, trim_pending;
    int64_t deferred_id; /* the newest snapshot, left for after the modes (load_baseline) */
    int64_t baseline_profile_keys; /* -1: not counted (no profile) */
    int64_t empty_noticed;         /* the baseline whose emptiness made a wipe */
    const char *sample_glob;
    sg_core_baseline_fn on_baseline;
    void *on_baseline_ud;

    /* the delivery queue */
    sg_deliverer deliverer;
    bool has_deliverer;
    bool spilled, refilling, refill_again;
    bool shared;  /* deliveries are claimed (o.replica) */
    bool leading; /* drains held events (sg_core_set_leading) */
    /* the replica's lease: renewed on a connection of its own, never
     * behind a read of the reader's queue (one a locked table keeps waiting
     * would let the lease run out, and the others deliver its claims) */
    sg_store *lease;
    /* a replica's claims (refill_run): a keyed connection of their own,
     * on which the claim is prepared (sg_store_options.keyed) */
    sg_store *claims;
    bool renewing, renew_failed;
    int64_t next_renew_at;

    /* guard and storm mode across replicas (shared) */
    sg_store_listener *listener;
    uv_poll_t listen_poll;
    bool listen_polling, listen_connecting, listen_failed;
    int64_t next_listen_at;
    bool adopting; /* the guard changes for another replica: nothing to publish */
    bool modes_reading, modes_again, modes_failed;
    bool refill_failed;       /* the last refill (a claim) failed: logged once */
    bool claim_waits_room;    /* a replica's last claim waited for room in the deliverer */
    int64_t last_off;         /* the latest operator's off adopted */
    struct known_mode *known; /* each scope's until as the store has it */
    size_t nknown;
    sg_replica_row *replicas; /* as last read with the ages (names owned) */
    size_t nreplicas;
    int64_t accepted_seen; /* the other replicas' accepted builds read up to this event */
    /* claimed events held back (deliver_in_order): their job has an event
     * this replica claims as it goes in still in the journal */
    sg_u64map claiming; /* lane -> inserts in the journal asking to claim */
    sg_fwd_item *held_back, **held_back_tail;
    int64_t qgen;                  /* generation new pending events join */
    int64_t loaded_gen, loaded_id; /* the last event handed to the deliverer */

    int64_t counts[SG_CORE_KINDS][SG_STATE_COUNT];
    int64_t would[SG_STATE_COUNT]; /* observe mode: by the state it would have had */
    uint64_t received[SG_CORE_KINDS], rejected, unavailable;
    uint64_t fwd_attempts, fwd_failures;
    sg_histogram commit_hist, forward_hist;
    bool journal_ok;
    char journal_error[256];
    struct fwd_update *unrecorded; /* delivery outcomes whose write failed, for the
                                      journal's return */
    sg_jop probe;
    bool probing;
    int64_t next_probe_at;
    int64_t failed_at;   /* the last failed write */
    size_t failed_bytes; /* the largest request that failed since the last success */
    bool downstream_ok;
    int64_t downstream_last_ok, downstream_last_fail;
    char downstream_error[256];

    /* the tick's periodic work */
    int64_t started_at, next_reload_at, next_space_at, next_summary_at;
    bool measuring;
    int64_t free_bytes, store_bytes;
    int64_t space_at; /* when the last measurement began */
    sg_jop prune;
    bool pruning;
    int64_t next_prune_at, pruned_pass;
    uint64_t logged_received[SG_CORE_KINDS], logged_attempts, logged_failures, logged_rejected;

    /* The age gauges: the arrival of the oldest pending and held event
     * (epoch ms, 0: not known). An arrival lowers them at once; what
     * leaves is noticed by a read of the store (sg_store_oldest_*) every
     * AGES_EVERY_MS, the held one only after a release or drop made it
     * stale (its read is O(held)). seen_* gather the arrivals while that
     * read runs, which it may not have seen. */
    int64_t oldest_pending, oldest_held, seen_pending, seen_held;
    bool held_stale, aging;
    int64_t next_ages_at;
    /* A replica's count of the whole set's events (sg_store_event_counts:
     * a scan of the journal, which its retention may make millions of
     * rows): read with the ages, but no more often than COUNTS_COST times
     * its last duration, so that it never takes more than 1% of the
     * store's time whatever the journal's size; the open events' (pending,
     * held, dead: their partial indexes) at every read, for the drain. */
    double next_count_s; /* monotonic: the pause is about the store's time */
    int64_t counted_at, count_ms;
    sg_log_limit count_log;
    /* whether the event table's statistics are stale, read with the ages
     * (a minute after a read that failed: next_stale_s); renewed for the
     * rows changed no more often than the counts (COUNTS_COST times the
     * last analyze's duration), for a backlog the planner does not see
     * after ANALYZE_BACKLOG_COST times it, and a minute after a failure
     * (analyze_job) */
    double next_stale_s, next_analyze_s, next_backlog_s;
    /* the planner's estimate a backlog's analyze began from, and when it
     * ended: an estimate no higher after it (a sample of a huge table that
     * missed the pending events) waits ANALYZE_RETRY_S for the next */
    int64_t backlog_planned;
    double backlog_done_s;
    bool analyzing;
    sg_log_limit analyze_log;

    bool stopping, closing;
    bool close_begun; /* sg_core_close was called: no more reads */
    void (*closed)(void *ud);
    void *closed_ud;
};

static int64_t now_ms(const sg_core *c)
{
    return sg_clock_ms(c->clock);
}

static void maybe_close(sg_core *c);
static void shared_modes_tick(sg_core *c, int64_t now);

/* ---- reading the store off the loop ---- */

static void read_work(uv_work_t *w)
{
    read_job *j = w->data;
    sg_store *s = j->c->reader;
    if (j->bare) {
        j->run(j, NULL);
        return;
    }
    if (!j->serial) {
        sg_store_options ro = {.readonly = true};
        if ((j->rc = sg_store_open(j->c->o.db_path, &ro, &s, &j->err)))
            return;
    }
    j->run(j, s);
    if (!j->serial)
        sg_store_free(s);
}

static void start_reads(sg_core *c);

static void read_done(uv_work_t *w, int status)
{
    read_job *j = w->data;
    sg_core *c = j->c;
    bool serial = j->serial;
    j->done(j, status);
    c->readers--;
    if (serial) {
        c->reading = false;
        start_reads(c);
    }
    maybe_close(c);
}

static void queue_work(sg_core *c, read_job *j)
{
    j->work.data = j;
    /* fails only without a work callback (UV_EINVAL) */
    int r = uv_queue_work(c->loop, &j->work, read_work, read_done);
    assert(r == 0);
    (void)r;
}

static void start_reads(sg_core *c)
{
    if (c->reading || !c->reads)
        return;
    read_job *j = c->reads;
    c->reads = j->next;
    if (!c->reads)
        c->reads_tail = &c->reads;
    c->reading = true;
    queue_work(c, j);
}

/* j (calloc'ed by the caller, run and done set) runs on the thread pool. */
/* Queues j. Never once the close began: the reader goes then. */
static void read_submit(sg_core *c, read_job *j, bool serial)
{
    assert(!c->close_begun);
    j->c = c;
    j->serial = serial;
    c->readers++;
    if (!serial) {
        queue_work(c, j);
        return;
    }
    j->next = NULL;
    *c->reads_tail = j;
    c->reads_tail = &j->next;
    start_reads(c);
}

/* ---- the delivery queue ---- */

static sg_fwd_item *item_from_row(const sg_event_row *r)
{
    sg_fwd_item *it = sg_xcalloc(1, sizeof *it);
    it->id = r->id;
    it->lane = r->source && r->job ? sg_hash_job(r->source, r->job) : 0;
    it->method = sg_xstrdup(r->method);
    it->path = sg_xstrdup(r->path);
    it->headers = sg_xstrdup(r->headers ? r->headers : "");
    it->body = sg_xmalloc(r->body_len + 1);
    if (r->body_len)
        memcpy(it->body, r->body, r->body_len);
    it->body_len = r->body_len;
    it->received_at = r->received_at;
    it->attempts = r->attempts;
    it->next_attempt_at = r->next_attempt_at;
    sg_kind kind = SG_KIND_PASSTHROUGH;
    sg_kind_parse(r->kind, &kind);
    it->tag = (int)kind;
    return it;
}

static size_t backlog(const sg_core *c)
{
    return c->has_deliverer ? c->deliverer.backlog(c->deliverer.ud) : 0;
}

typedef struct refill_job {
    read_job rj;
    int64_t after_gen, after_id;
    sg_fwd_item *items, **tail;
    size_t n;
    int64_t last_gen, last_id;
} refill_job;

static int refill_row(void *ud, const sg_event_row *r)
{
    refill_job *f = ud;
    sg_fwd_item *it = item_from_row(r);
    *f->tail = it;
    f->tail = &it->next;
    f->n++;
    f->last_gen = r->qgen;
    f->last_id = r->id;
    return 0;
}

static void refill_run(read_job *j, sg_store *s)
{
    refill_job *f = (refill_job *)j;
    if (j->c->shared)
        j->rc = sg_store_events_claim(j->c->claims, j->c->o.replica, REFILL_BATCH, refill_row, f,
                                      &j->err);
    else
        j->rc = sg_store_events_pending(s, f->after_gen, f->after_id, REFILL_BATCH, refill_row, f,
                                        &j->err);
}

static void refill(sg_core *c);

/* A replica claims an event as it goes in only when it is alone in its
 * job's queue; what its claims from the table bring is behind such an
 * event if its job has one still in the journal, whose commit pushes it
 * (on_incoming_done): those wait for it, so that a job's lane gets its
 * events in queue order. */
static size_t *claiming(sg_core *c, uint64_t lane)
{
    return sg_u64map_get(&c->claiming, lane);
}

static void deliver_in_order(sg_core *c, sg_fwd_item *it)
{
    size_t *n = it->lane ? claiming(c, it->lane) : NULL;
    if (!c->held_back && (!n || !*n)) {
        c->deliverer.push(c->deliverer.ud, it);
        return;
    }
    it->next = NULL;
    *c->held_back_tail = it;
    c->held_back_tail = &it->next;
}

/* After an insert asking to claim left the journal: what waited for it. */
static void release_held_back(sg_core *c)
{
    sg_fwd_item *list = c->held_back;
    c->held_back = NULL;
    c->held_back_tail = &c->held_back;
    while (list) {
        sg_fwd_item *it = list;
        list = it->next;
        it->next = NULL;
        if (c->stopping)
            sg_fwd_item_free(it);
        else
            deliver_in_order(c, it);
    }
}

static void refill_done(read_job *j, int status)
{
    refill_job *f = (refill_job *)j;
    sg_core *c = j->c;
    c->refilling = false;
    bool ok = status == 0 && j->rc == 0;
    /* a replica claims many times a second under load, and every second: one line a
     * failure, and one when it works again */
    if (!ok && !c->refill_failed)
        sg_log(SG_LOG_ERROR, "forward", "%s pending events: %s", c->shared ? "claiming" : "reading",
               status ? uv_strerror(status) : j->err.msg);
    else if (ok && c->refill_failed)
        sg_log(SG_LOG_INFO, "forward", "%s pending events again",
               c->shared ? "claiming" : "reading");
    c->refill_failed = !ok;
    for (sg_fwd_item *it = f->items, *next; it; it = next) {
        next = it->next;
        it->next = NULL;
        if (c->stopping) { /* the next run delivers them */
            sg_fwd_item_free(it);
            continue;
        }
        deliver_in_order(c, it);
    }
    bool again = ok;
    if (c->shared) {
        /* the store stays the queue; claiming a head may have made its
         * job's next one claimable */
        again = ok && (f->n || c->refill_again);
    } else {
        if (ok && f->n) {
            c->loaded_gen = f->last_gen;
            c->loaded_id = f->last_id;
        }
        /* caught up with the journal, unless events came in while it read */
        if (ok && f->n < REFILL_BATCH && !c->refill_again)
            c->spilled = false;
    }
    free(f);
    if (again)
        refill(c);
}

/* Moves pending events from the journal to the deliverer, in queue order,
 * while it has room. */
static void refill(sg_core *c)
{
    c->claim_waits_room = c->shared && backlog(c) >= SPILL_AT / 2;
    if (!c->spilled || c->stopping || c->refilling || !c->has_deliverer ||
        backlog(c) >= SPILL_AT / 2)
        return;
    refill_job *f = sg_xcalloc(1, sizeof *f);
    f->after_gen = c->loaded_gen;
    f->after_id = c->loaded_id;
    f->tail = &f->items;
    f->rj.run = refill_run;
    f->rj.done = refill_done;
    /* a replica's claims have a connection of their own: they wait for no
     * read in the reader's queue (c->refilling keeps them one at a time) */
    f->rj.bare = c->shared;
    c->refilling = true;
    c->refill_again = false;
    read_submit(c, &f->rj, !c->shared);
}

static void spill(sg_core *c)
{
    c->spilled = true;
    if (c->refilling)
        c->refill_again = true;
    refill(c);
}

static int64_t next_gen(void *ud)
{
    sg_core *c = ud;
    return ++c->qgen;
}

/* Events in state st, of any kind. */
static int64_t open_count(const sg_core *c, sg_event_state st)
{
    int64_t n = 0;
    for (int k = 0; k < SG_CORE_KINDS; k++)
        n += c->counts[k][st];
    return n;
}

/* *oldest = the earlier of the two; 0 is none, not a time. */
static void lower(int64_t *oldest, int64_t at)
{
    if (at && (!*oldest || at < *oldest))
        *oldest = at;
}

/* An event journaled pending or held at `at` (counted already). */
static void note_arrival(sg_core *c, sg_event_state st, int64_t at)
{
    bool held = st == SG_STATE_HELD;
    int64_t *oldest = held ? &c->oldest_held : &c->oldest_pending;
    if (open_count(c, st) == 1)
        *oldest = 0; /* the first: what was remembered has left */
    lower(oldest, at);
    if (c->aging)
        lower(held ? &c->seen_held : &c->seen_pending, at);
}

static void on_moved(void *ud, const sg_hold_moved *m)
{
    sg_core *c = ud;
    int64_t *n = c->counts[SG_KIND_UNKNOWN];
    if (m->released && open_count(c, SG_STATE_PENDING) == 0) {
        c->oldest_pending = 0; /* released events arrived long ago: read it */
        c->next_ages_at = 0;
    }
    if (m->released + m->superseded + m->dropped)
        c->held_stale = true;
    n[SG_STATE_HELD] -= m->released + m->superseded + m->dropped;
    n[SG_STATE_PENDING] += m->released;
    n[SG_STATE_SUPERSEDED] += m->superseded;
    n[SG_STATE_DROPPED] += m->dropped;
    if (m->released && !c->stopping)
        spill(c);
}

/* ---- the journal's health ---- */

/* While the journal cannot be written (a full or read-only disk), a probe
 * write a second tells when it can again, so /readyz comes back by itself
 * and not only with the next event a poller posts. On a full disk a probe
 * of one page can succeed where the events that failed cannot: it is made
 * only once a measurement taken after the failure finds room for twice the
 * largest failed request and 1 MiB more. */
static void record_again(sg_core *c);

static void journal_writable(sg_core *c)
{
    c->failed_bytes = 0;
    if (c->journal_ok)
        return;
    sg_log(SG_LOG_INFO, "journal", "journal writable again");
    c->journal_ok = true;
    record_again(c);
}

static void journal_failed(sg_core *c, const char *why, size_t bytes)
{
    snprintf(c->journal_error, sizeof c->journal_error, "%s", why);
    c->failed_at = now_ms(c);
    if (bytes > c->failed_bytes)
        c->failed_bytes = bytes;
    if (!c->journal_ok)
        return;
    sg_log(SG_LOG_ERROR, "journal", "cannot journal events, answering 503: %s", why);
    c->journal_ok = false;
    c->next_probe_at = now_ms(c) + PROBE_EVERY_MS;
}

static void on_probe_done(sg_jop *op)
{
    sg_core *c = op->ud;
    c->probing = false;
    if (op->status == 0)
        journal_writable(c);
    else
        snprintf(c->journal_error, sizeof c->journal_error, "%s", op->errmsg);
    maybe_close(c);
}

static void measure_space(sg_core *c);

static void maybe_probe(sg_core *c, int64_t now)
{
    if (c->journal_ok || c->probing || c->stopping || now < c->next_probe_at)
        return;
    c->next_probe_at = now + PROBE_EVERY_MS;
    if (c->space_at <= c->failed_at) {
        measure_space(c); /* the probe comes at the next tick */
        return;
    }
    int64_t need = 2 * (int64_t)c->failed_bytes + (1 << 20);
    if (c->free_bytes >= 0 && c->free_bytes < need) {
        measure_space(c);
        return;
    }
    c->probing = true;
    c->probe = (sg_jop){.type = SG_JOP_PROBE, .done = on_probe_done, .ud = c};
    sg_journal_submit(c->journal, &c->probe);
}

/* ---- deliveries ---- */

typedef struct fwd_update {
    sg_jop op;
    char *error;
    sg_core *c;
    struct fwd_update *next; /* on c->unrecorded */
} fwd_update;

/* A delivery's outcome that could not be written (the disk, the store's
 * server gone) is written again once the journal takes writes: else the
 * event would stay pending in the store, delivered once more only after a
 * restart. While it waits, the deliverer has it as done. */
static void on_update_done(sg_jop *op)
{
    fwd_update *u = op->ud;
    sg_core *c = u->c;
    if (op->status && !c->stopping) {
        sg_log(SG_LOG_ERROR, "journal",
               "recording the delivery of event %lld failed (%s): written again once the "
               "journal takes writes",
               (long long)op->row.id, op->errmsg);
        journal_failed(c, op->errmsg, 0);
        u->next = c->unrecorded;
        c->unrecorded = u;
        return;
    }
    if (op->status)
        sg_log(SG_LOG_ERROR, "journal",
               "recording the delivery of event %lld failed (%s): it stays pending and is "
               "delivered again after a restart",
               (long long)op->row.id, op->errmsg);
    else if (op->followers && !c->stopping)
        spill(c); /* the job's next event, this replica's or another's */
    free(u->error);
    free(u);
}

static sg_journal *outcome_journal(const sg_core *c)
{
    return c->outcomes ? c->outcomes : c->journal;
}

static void record_again(sg_core *c)
{
    if (c->stopping) /* unrecorded_free tells what stays pending */
        return;
    fwd_update *list = c->unrecorded;
    c->unrecorded = NULL;
    while (list) {
        fwd_update *u = list;
        list = u->next;
        u->next = NULL;
        sg_journal_submit(outcome_journal(c), &u->op);
    }
}

static void unrecorded_free(sg_core *c)
{
    while (c->unrecorded) {
        fwd_update *u = c->unrecorded;
        c->unrecorded = u->next;
        sg_log(SG_LOG_ERROR, "journal",
               "the delivery of event %lld was never recorded: it stays pending and is "
               "delivered again after a restart",
               (long long)u->op.row.id);
        free(u->error);
        free(u);
    }
}

void sg_core_delivered(sg_core *c, sg_fwd_item *it, sg_fwd_outcome outcome, long status,
                       const char *error, double seconds)
{
    c->fwd_attempts++;
    sg_histogram_observe(&c->forward_hist, seconds);
    int64_t now = now_ms(c);
    if (outcome == SG_FWD_DELIVERED) {
        c->downstream_ok = true;
        c->downstream_last_ok = now;
    } else {
        c->fwd_failures++;
        c->downstream_last_fail = now;
        snprintf(c->downstream_error, sizeof c->downstream_error, "%s", error ? error : "");
        /* a refusal (4xx) is about the event; anything else about the downstream */
        if (outcome == SG_FWD_RETRY || status == 0 || status >= 500)
            c->downstream_ok = false;
    }
    /* also while stopping: the deliveries in flight end so that their
     * results are journaled (one the downstream took must not go again
     * after the restart) */
    fwd_update *u = sg_xcalloc(1, sizeof *u);
    u->c = c;
    u->error = error ? sg_xstrdup(error) : NULL;
    u->op.type = SG_JOP_UPDATE;
    u->op.at = now;
    u->op.row.id = it->id;
    u->op.row.attempts = it->attempts;
    u->op.row.last_error = u->error;
    u->op.done = on_update_done;
    u->op.ud = u;
    switch (outcome) {
    case SG_FWD_DELIVERED:
        u->op.row.state = SG_STATE_FORWARDED;
        u->op.row.done_at = now;
        break;
    case SG_FWD_RETRY:
        u->op.row.state = SG_STATE_PENDING;
        u->op.row.next_attempt_at = it->next_attempt_at;
        sg_log(SG_LOG_WARN, "forward", "event %lld attempt %lld failed: %s; retrying in %lld ms",
               (long long)it->id, (long long)it->attempts, error ? error : "?",
               (long long)(it->next_attempt_at - now));
        break;
    case SG_FWD_DEAD:
        u->op.row.state = SG_STATE_DEAD;
        u->op.row.done_at = now;
        sg_log(SG_LOG_ERROR, "forward", "event %lld %s %s is dead after %lld attempts: %s",
               (long long)it->id, it->method, it->path, (long long)it->attempts,
               error ? error : "?");
        break;
    }
    sg_journal_submit(outcome_journal(c), &u->op);
    if (outcome != SG_FWD_RETRY) {
        c->counts[it->tag][SG_STATE_PENDING]--;
        c->counts[it->tag][outcome == SG_FWD_DELIVERED ? SG_STATE_FORWARDED : SG_STATE_DEAD]++;
        sg_fwd_item_free(it);
    }
    /* a replica claims again once the outcome is written if its job has
     * events waiting behind it (on_update_done), or when the claim waited
     * for room in the deliverer */
    if (!c->shared || c->claim_waits_room)
        refill(c);
}

/* ---- incoming events ---- */

typedef struct incoming {
    sg_jop op;
    sg_core *c;
    sg_answer_fn answer;
    void *ud;
    sg_event ev;
    sg_kind kind;
    uint64_t lane; /* its job's delivery lane (0: none) */
    char *method, *path, *headers, *body;
    size_t body_len;
} incoming;

static void incoming_free(incoming *in)
{
    sg_event_close(&in->ev);
    free(in->method);
    free(in->path);
    free(in->headers);
    free(in->body);
    free(in);
}

static bool forwardable(sg_kind k)
{
    return k == SG_KIND_NEW || k == SG_KIND_UNKNOWN;
}

static void on_incoming_done(sg_jop *op)
{
    incoming *in = op->ud;
    sg_core *c = in->c;
    size_t *claims = op->claim && in->lane ? claiming(c, in->lane) : NULL;
    if (claims && *claims)
        --*claims;
    if (op->status) {
        journal_failed(c, op->errmsg, in->body_len);
        c->unavailable++;
        char msg[400];
        snprintf(msg, sizeof msg, "event not accepted: the journal cannot be written (%s)",
                 op->errmsg);
        in->answer(in->ud, &(sg_answer){.status = 503, .retry_after = 1, .error = msg});
        incoming_free(in);
        maybe_close(c);
        return;
    }
    journal_writable(c);
    sg_histogram_observe(&c->commit_hist, op->commit_s);
    if (op->duplicate) {
        /* of a build the store's ledger had; the storm detector saw it as
         * what it looked like at classification: set it right */
        if (in->kind != SG_KIND_REPLAY)
            sg_guard_replayed(c->guard, op->row.received_at, in->ev.source);
        in->kind = SG_KIND_REPLAY;
    } else if (op->ledger) {
        c->ledger_builds++;
    }
    sg_event_state st = op->row.state, would;
    c->counts[in->kind][st]++;
    if (op->row.would && sg_event_state_parse(op->row.would, &would) == 0)
        c->would[would]++;
    c->received[in->kind]++;
    if (st == SG_STATE_PENDING || st == SG_STATE_HELD)
        note_arrival(c, st, op->row.received_at);
    in->answer(in->ud,
               &(sg_answer){.status = 200, .id = op->row.id, .kind = in->kind, .state = st});
    if (st == SG_STATE_PENDING && !c->stopping) { /* else the next run delivers it */
        /* a replica's claimed event is its own to deliver: in memory, past
         * SPILL_AT by what was in the journal when the room was judged */
        if (c->shared ? op->claimed : !c->spilled && c->has_deliverer && backlog(c) < SPILL_AT) {
            sg_fwd_item *it = sg_xcalloc(1, sizeof *it);
            it->id = op->row.id;
            it->lane = in->lane;
            it->method = in->method;
            it->path = in->path;
            it->headers = in->headers;
            it->body = in->body;
            it->body_len = in->body_len;
            it->received_at = op->row.received_at;
            it->tag = (int)in->kind;
            in->method = in->path = in->headers = in->body = NULL;
            c->loaded_gen = op->row.qgen;
            c->loaded_id = it->id;
            c->deliverer.push(c->deliverer.ud, it);
        } else {
            spill(c);
        }
    }
    if (claims)
        release_held_back(c);
    incoming_free(in);
    maybe_close(c);
}

/* A build that ended after the wipe cannot have been announced before it
 * (the poller posts completed builds only): in guard or storm mode it is
 * forwarded, not held, whatever the job. It ended at its start plus its
 * duration (at least its start, when Igor does not say). Its times are
 * Jenkins' clock and the wipe's the gate's: a build ending less than
 * WIPE_SKEW_MS after the wipe stays held. */
#define WIPE_SKEW_MS 60000

static bool ended_after_wipe(const sg_core *c, const sg_event *ev)
{
    sg_guard_report gr;
    sg_guard_report_get(c->guard, &gr);
    return gr.last_wipe_at_ms && ev->build_ts &&
           ev->build_ts + ev->duration_ms > gr.last_wipe_at_ms + WIPE_SKEW_MS;
}

/* The poller posts builds while the baseline found none of its keys: its
 * Redis was wiped before the gate saw it (a gate started cold after the
 * wipe, a restart of both), and what it posts now is its whole history.
 * That is a wipe, noticed once per baseline: the watcher cannot see one
 * that happened before it started. */
static void empty_poller(sg_core *c, const incoming *in, int64_t now)
{
    if (in->kind == SG_KIND_PASSTHROUGH || !c->baseline_id || c->baseline_profile_keys != 0 ||
        c->empty_noticed == c->baseline_id)
        return;
    c->empty_noticed = c->baseline_id;
    char detail[200];
    snprintf(detail, sizeof detail,
             "the poller posts builds while snapshot %lld, the baseline, found none of its keys",
             (long long)c->baseline_id);
    sg_guard_wipe(c->guard, "empty", detail, now);
}

static bool is_build_path(const sg_core *c, const char *path, size_t len)
{
    const char *q = memchr(path, '?', len);
    size_t n = q ? (size_t)(q - path) : len;
    return sg_strlist_match(c->o.build_paths, path, n);
}

int sg_core_submit(sg_core *c, const sg_request *rq, sg_answer_fn answer, void *ud, sg_error *err)
{
    if (c->stopping)
        return sg_error_set(err, SG_EBUSY, "stormguard is shutting down");
    incoming *in = sg_xcalloc(1, sizeof *in);
    if (sg_event_parse(rq->body, rq->body_len, is_build_path(c, rq->path, rq->path_len),
                       &c->o.events, &in->ev, err)) {
        c->rejected++;
        incoming_free(in);
        return err->code;
    }
    in->c = c;
    in->answer = answer;
    in->ud = ud;
    sg_reason why;
    in->kind = sg_classify(&c->index, &c->ledger, &in->ev, &why);
    int64_t now = now_ms(c);
    /* The storm detector sees each event as it arrives, so the event that
     * trips it is already held; a second delivery the journal will call a
     * replay is corrected once it does (on_incoming_done). */
    bool docker = in->ev.type == SG_EVENT_DOCKER;
    if (docker)
        /* a tag new to index and ledger counts towards first_seen_tags:
         * many at once is what an evicted Docker index looks like */
        sg_guard_observe_tag(c->guard, in->ev.source, in->ev.job, in->ev.tag, in->kind,
                             why == SG_REASON_DOCKER_NEW_TAG || why == SG_REASON_DOCKER_UNKNOWN);
    else if (in->kind != SG_KIND_PASSTHROUGH) {
        sg_guard_observe(c->guard, in->ev.source, in->ev.job, in->kind);
    }
    /* In guard or storm mode only a snapshot makes a job known: the ledger
     * has no cursor, so an old build of a job it knows cannot be told from a
     * new one, and the first build held would let the rest through. Alike,
     * a Docker tag the index lacks may be one a wipe made Igor forget. */
    sg_mode mode = sg_guard_mode(c->guard, in->ev.source);
    if ((why == SG_REASON_LEDGER_JOB || why == SG_REASON_DOCKER_NEW_TAG) && mode != SG_MODE_NORMAL)
        in->kind = SG_KIND_UNKNOWN;
    empty_poller(c, in, now);
    if (in->kind == SG_KIND_UNKNOWN && sg_guard_mode(c->guard, in->ev.source) != SG_MODE_NORMAL &&
        ended_after_wipe(c, &in->ev)) {
        in->kind = SG_KIND_NEW;
        why = SG_REASON_AFTER_WIPE;
    }
    /* copies: the front end may free the request (an HTTP/2 reset) while
     * the journal thread still reads them */
    in->method = sg_xstrndup(rq->method, rq->method_len);
    in->path = sg_xstrndup(rq->path, rq->path_len);
    in->headers = sg_xstrdup(rq->headers ? rq->headers : "");
    in->body = sg_xmalloc(rq->body_len + 1);
    if (rq->body_len)
        memcpy(in->body, rq->body, rq->body_len);
    in->body_len = rq->body_len;

    sg_event_row *r = &in->op.row;
    r->received_at = now;
    r->source = in->ev.source;
    r->job = in->ev.job;
    r->number = docker ? sg_docker_identity(in->ev.tag, in->ev.digest) : in->ev.number;
    r->build_ts = in->ev.build_ts;
    r->tag = in->ev.tag;
    r->digest = in->ev.digest;
    r->kind = sg_kind_name(in->kind);
    r->reason = sg_reason_name(why);
    r->state = sg_hold_state(c->hold, in->kind, in->ev.source, &r->last_error);
    r->would = NULL;
    if (c->o.observe && r->state != SG_STATE_PENDING) {
        /* forwarded as if the gate were not there; what it would have done
         * stays in the journal */
        r->would = sg_event_state_name(r->state);
        r->state = SG_STATE_PENDING;
        r->last_error = NULL;
    }
    bool pending = r->state == SG_STATE_PENDING;
    if (forwardable(in->kind))
        sg_ledger_add(&c->ledger, in->ev.source, in->ev.job);
    if (forwardable(in->kind) && docker)
        sg_ledger_add_tag(&c->ledger, in->ev.source, in->ev.job, in->ev.tag, in->ev.digest);
    r->done_at = pending || r->state == SG_STATE_HELD ? 0 : now;
    r->qgen = pending ? c->qgen : 0;
    r->method = in->method;
    r->path = in->path;
    r->headers = in->headers;
    r->body = in->body;
    r->body_len = in->body_len;
    in->op.type = SG_JOP_INSERT;
    in->op.at = now;
    in->op.ledger = forwardable(in->kind);
    in->op.observe = c->o.observe;
    /* a replica delivers what it journals itself while it has room, if
     * it is its job's head (the journal claims it as it goes in) */
    in->op.claim = c->shared && c->has_deliverer && backlog(c) < SPILL_AT / 2;
    in->lane = forwardable(in->kind) ? sg_hash_job(in->ev.source, in->ev.job) : 0;
    if (in->op.claim && in->lane) {
        bool fresh;
        size_t *n = sg_u64map_put(&c->claiming, in->lane, &fresh);
        *n = fresh ? 1 : *n + 1;
    }
    in->op.done = on_incoming_done;
    in->op.ud = in;
    sg_journal_submit(c->journal, &in->op);
    return 0;
}

/* ---- the build index baseline ---- */

static void ix_cursor(void *ud, const char *s, const char *j, int64_t v)
{
    sg_index_cursor(ud, s, j, v);
}

static void ix_completed(void *ud, const char *s, const char *j, int64_t v)
{
    sg_index_completed(ud, s, j, v);
}

static void ix_posted(void *ud, const char *s, const char *j, int64_t v)
{
    sg_index_posted(ud, s, j, v);
}

static void ix_docker(void *ud, const char *account, const char *repository, const char *tag,
                      const char *digest)
{
    sg_index_docker(ud, account, repository, tag, digest);
}

static const sg_index_visitor index_visitor = {ix_cursor, ix_completed, ix_posted, ix_docker};

typedef struct baseline {
    int64_t id;
    bool deferred; /* id is newer, but not taken: see load_baseline */
    sg_index ix;
    sg_snapshot_info info;
} baseline;

/* Loads the newest baseline into b if it is not `current` (b->id says
 * which; 0: none).
 *
 * One taken after defer_after (a wipe, while the guard or storm mode it
 * caused is on) is not loaded, b->deferred says so. The poller is
 * rebuilding its keys from the replay at that moment, and a snapshot of it
 * is half the old state: the jobs it has not re-posted yet are missing, so
 * their builds would look unknown, and a job caught between its re-posts
 * has markers but no cursor, so its older builds would look new. The
 * snapshot's size does not tell (past half the last good one it is not
 * suspect). Once the modes are over, the next reload takes it.
 * defer_after 0: anything goes. */
static int load_baseline(sg_store *s, int64_t current, int64_t defer_after, baseline *b,
                         sg_error *err)
{
    int rc = sg_store_baseline(s, &b->id, err);
    if (rc || !b->id || b->id == current)
        return rc;
    if ((rc = sg_store_snapshot_get(s, b->id, &b->info, err)))
        return rc;
    if (defer_after && b->info.taken_at_ms > defer_after) {
        b->deferred = true;
        sg_snapshot_info_close(&b->info);
        return 0;
    }
    sg_index_init(&b->ix);
    b->ix.snapshot_id = b->id;
    if ((rc = sg_store_index_each(s, b->id, &index_visitor, &b->ix, err))) {
        sg_index_close(&b->ix);
        sg_snapshot_info_close(&b->info);
    }
    return rc;
}

static void use_baseline(sg_core *c, baseline *b)
{
    sg_index_close(&c->index);
    c->index = b->ix;
    c->baseline_id = b->id;
    c->baseline_taken_at = b->info.taken_at_ms;
    c->baseline_keys = b->info.key_count;
    c->baseline_profile_keys = b->info.profile_keys;
    free(c->baseline_reason);
    c->baseline_reason = b->info.reason;
    b->info.reason = NULL;
    sg_snapshot_info_close(&b->info);
}

typedef struct reload_job {
    read_job rj;
    const sg_index *older; /* the index in use: read here, replaced on the loop after */
    int64_t current, defer_after;
    int64_t now_ms; /* the core's clock when the reload began */
    bool trim;      /* give the replaced index's memory back to the system first */
    baseline b;
} reload_job;

static void reload_run(read_job *j, sg_store *s)
{
    reload_job *r = (reload_job *)j;
    if (r->trim)
        malloc_trim(0); /* the index the last reload replaced (see sidecar.c) */
    j->rc = load_baseline(s, r->current, r->defer_after, &r->b, &j->err);
    /* what the older baseline knew stays known (classify.h) */
    if (j->rc == 0 && r->b.id && r->b.id != r->current && !r->b.deferred)
        sg_index_inherit(&r->b.ix, r->older, r->now_ms);
}

static void reload_done(read_job *j, int status)
{
    reload_job *r = (reload_job *)j;
    sg_core *c = j->c;
    c->reloading = false;
    if (status == 0 && j->rc == 0 && r->b.deferred) {
        if (c->deferred_id != r->b.id)
            sg_log(SG_LOG_INFO, "gate",
                   "snapshot %lld is not the baseline while guard or storm mode is on: it was "
                   "taken after the wipe, while the poller rebuilds its keys from the replay",
                   (long long)r->b.id);
        c->deferred_id = r->b.id;
    } else if (status == 0 && j->rc == 0 && r->b.id && r->b.id != r->current) {
        use_baseline(c, &r->b);
        c->trim_pending = true;
        sg_log(SG_LOG_INFO, "gate", "classifying against snapshot %lld (%zu jobs)",
               (long long)c->baseline_id, c->index.jobs.len);
        if (c->on_baseline) {
            sg_guard_report gr;
            sg_guard_report_get(c->guard, &gr);
            c->on_baseline(c->on_baseline_ud, c->baseline_id,
                           c->baseline_taken_at > gr.last_wipe_at_ms);
        }
    } else if (status || j->rc) {
        sg_log(SG_LOG_ERROR, "gate", "reloading the build index: %s",
               status ? uv_strerror(status) : j->err.msg);
    }
    free(r);
}

void sg_core_reload(sg_core *c)
{
    if (c->reloading || c->stopping)
        return;
    reload_job *r = sg_xcalloc(1, sizeof *r);
    r->current = c->baseline_id;
    r->older = &c->index;
    r->now_ms = now_ms(c);
    sg_guard_report gr;
    sg_guard_report_get(c->guard, &gr);
    if (gr.mode != SG_MODE_NORMAL && c->baseline_id)
        r->defer_after = gr.last_wipe_at_ms;
    r->trim = c->trim_pending;
    c->trim_pending = false;
    r->rj.run = reload_run;
    r->rj.done = reload_done;
    c->reloading = true;
    read_submit(c, &r->rj, true);
}

void sg_core_on_baseline(sg_core *c, sg_core_baseline_fn fn, void *ud)
{
    c->on_baseline = fn;
    c->on_baseline_ud = ud;
}

/* ---- keys of a snapshot, for the watcher ---- */

typedef struct sample_job {
    read_job rj;
    int64_t snapshot_id;
    char *glob;
    sg_strlist keys;
    sg_core_sample_fn fn;
    void *ud;
} sample_job;

static int sample_key(void *ud, const char *key)
{
    sg_strlist_push(ud, key);
    return 0;
}

static void sample_run(read_job *j, sg_store *s)
{
    sample_job *x = (sample_job *)j;
    j->rc = sg_store_sample_keys(s, x->snapshot_id, x->glob, SG_CORE_SAMPLE_KEYS, sample_key,
                                 &x->keys, &j->err);
}

static void sample_done(read_job *j, int status)
{
    sample_job *x = (sample_job *)j;
    if (status || j->rc)
        sg_log(SG_LOG_WARN, "guard", "reading sample keys of snapshot %lld: %s",
               (long long)x->snapshot_id, status ? uv_strerror(status) : j->err.msg);
    else
        x->fn(x->ud, x->snapshot_id, (const char *const *)x->keys.items, x->keys.len);
    sg_strlist_clear(&x->keys);
    free(x->glob);
    free(x);
}

int sg_core_sample(sg_core *c, int64_t snapshot_id, const char *glob, sg_core_sample_fn fn,
                   void *ud)
{
    if (c->close_begun)
        return SG_EBUSY;
    sample_job *x = sg_xcalloc(1, sizeof *x);
    x->snapshot_id = snapshot_id;
    x->glob = glob ? sg_xstrdup(glob) : NULL;
    x->fn = fn;
    x->ud = ud;
    x->rj.run = sample_run;
    x->rj.done = sample_done;
    read_submit(c, &x->rj, true);
    return 0;
}

/* ---- the tick ---- */

static void log_activity(sg_core *c)
{
    uint64_t got[SG_CORE_KINDS], total = 0;
    for (int k = 0; k < SG_CORE_KINDS; k++) {
        got[k] = c->received[k] - c->logged_received[k];
        total += got[k];
        c->logged_received[k] = c->received[k];
    }
    uint64_t attempts = c->fwd_attempts - c->logged_attempts;
    uint64_t failures = c->fwd_failures - c->logged_failures;
    uint64_t rejected = c->rejected - c->logged_rejected;
    c->logged_attempts = c->fwd_attempts;
    c->logged_failures = c->fwd_failures;
    c->logged_rejected = c->rejected;
    if (!total && !attempts && !rejected)
        return;
    sg_log(SG_LOG_INFO, "gate",
           "last %ds: %llu events (%llu new, %llu unknown, %llu replays suppressed, %llu "
           "pass-through), %llu rejected; %llu deliveries, %llu failed",
           SUMMARY_EVERY_MS / 1000, (unsigned long long)total, (unsigned long long)got[SG_KIND_NEW],
           (unsigned long long)got[SG_KIND_UNKNOWN], (unsigned long long)got[SG_KIND_REPLAY],
           (unsigned long long)got[SG_KIND_PASSTHROUGH], (unsigned long long)rejected,
           (unsigned long long)(attempts - failures), (unsigned long long)failures);
}

/* The journal's retention ([store] keep_events): once an hour (the first
 * time shortly after the start), events older than it that are done with
 * are deleted, a chunk per journal transaction so the gate's own commits go
 * in between. Without it the journal, every body included, grows until the
 * disk is full. */
static void on_prune_done(sg_jop *op)
{
    sg_core *c = op->ud;
    long long keep_s = (long long)(c->o.keep_events_ms / 1000);
    if (op->status) {
        sg_log(SG_LOG_WARN, "journal", "pruning events older than %llds: %s (next try in an hour)",
               keep_s, op->errmsg);
    } else {
        c->pruned_pass += op->pruned;
        if (op->more && !c->stopping) {
            op->at = 0;
            sg_journal_submit(c->journal, op);
            return;
        }
        if (c->pruned_pass)
            sg_log(SG_LOG_INFO, "journal", "pruned %lld events older than %llds",
                   (long long)c->pruned_pass, keep_s);
    }
    c->pruning = false;
    c->next_prune_at = now_ms(c) + PRUNE_EVERY_MS;
    maybe_close(c);
}

static void maybe_prune(sg_core *c, int64_t now)
{
    if (c->pruning || c->stopping || !c->o.keep_events_ms || now < c->next_prune_at)
        return;
    c->pruning = true;
    c->pruned_pass = 0;
    c->prune = (sg_jop){.type = SG_JOP_PRUNE,
                        .prune_before = now - c->o.keep_events_ms,
                        .done = on_prune_done,
                        .ud = c};
    sg_journal_submit(c->journal, &c->prune);
}

/* How much room the store has (statvfs may wait on a network file system,
 * so off the loop): /v1/status reports it. */
typedef struct space_job {
    uv_work_t work;
    sg_core *c;
    int64_t free_bytes, store_bytes; /* -1: unknown */
    int64_t started_at;
} space_job;

static void space_work(uv_work_t *w)
{
    space_job *j = w->data;
    const char *path = j->c->o.db_path;
    char *dir = sg_xstrdup(path), *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    struct statvfs vfs;
    j->free_bytes = statvfs(dir, &vfs) == 0 ? (int64_t)vfs.f_bavail * (int64_t)vfs.f_frsize : -1;
    free(dir);
    j->store_bytes = 0;
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char *file = sg_xasprintf("%s%s", path, suffixes[i]);
        struct stat st;
        if (stat(file, &st) == 0)
            j->store_bytes += (int64_t)st.st_blocks * 512;
        free(file);
    }
}

static void space_done(uv_work_t *w, int status)
{
    space_job *j = w->data;
    sg_core *c = j->c;
    c->measuring = false;
    if (status == 0) {
        c->free_bytes = j->free_bytes;
        c->store_bytes = j->store_bytes;
        c->space_at = j->started_at;
    }
    free(j);
    maybe_close(c);
}

static void measure_space(sg_core *c)
{
    /* a PostgreSQL store's disk is its server's, not this machine's */
    if (c->measuring || c->stopping || sg_store_is_url(c->o.db_path))
        return;
    space_job *j = sg_xcalloc(1, sizeof *j);
    j->c = c;
    j->started_at = now_ms(c);
    j->work.data = j;
    if (uv_queue_work(c->loop, &j->work, space_work, space_done) == 0)
        c->measuring = true;
    else
        free(j);
}

/* ---- the replica's lease ---- */

#define LEASE_STATEMENT_MS 2000 /* well inside SG_REPLICA_LEASE_MS */

typedef struct renew_job {
    read_job rj;
    int64_t released;
} renew_job;

static void renew_run(read_job *j, sg_store *s)
{
    (void)s; /* a bare job: the lease's own connection */
    renew_job *x = (renew_job *)j;
    j->rc = sg_store_replica_renew(j->c->lease, j->c->o.replica, SG_REPLICA_LEASE_MS, &x->released,
                                   &j->err);
}

static void renew_done(read_job *j, int status)
{
    renew_job *x = (renew_job *)j;
    sg_core *c = j->c;
    c->renewing = false;
    if (status || j->rc) {
        /* one line a failure, not one a second */
        if (!c->renew_failed)
            sg_log(SG_LOG_ERROR, "store",
                   "renewing the lease of replica %s: %s (its deliveries go on; past %d s "
                   "without a renewal the other replicas may deliver its claims again)",
                   c->o.replica, status ? uv_strerror(status) : j->err.msg,
                   SG_REPLICA_LEASE_MS / 1000);
        c->renew_failed = true;
    } else {
        if (c->renew_failed)
            sg_log(SG_LOG_INFO, "store", "replica %s renews its lease again", c->o.replica);
        c->renew_failed = false;
        if (x->released) {
            sg_log(SG_LOG_WARN, "forward",
                   "%lld events claimed by replicas whose lease ran out are up for delivery "
                   "again",
                   (long long)x->released);
            spill(c);
        }
    }
    free(x);
}

static void maybe_renew(sg_core *c, int64_t now)
{
    if (!c->shared || c->renewing || now < c->next_renew_at)
        return;
    c->next_renew_at = now + SG_REPLICA_RENEW_MS;
    renew_job *x = sg_xcalloc(1, sizeof *x);
    x->rj.run = renew_run;
    x->rj.done = renew_done;
    x->rj.bare = true;
    c->renewing = true;
    read_submit(c, &x->rj, false);
}

/* ---- the planner's statistics of a shared store's event table ---- */

/* An analyze on a connection of its own (a read job not serial): it may
 * take a second on a big table, which the reader's reads (the modes
 * another replica published, the ages) must not wait for. */
typedef struct analyze_job {
    read_job rj;
    sg_events_stale why;
    int64_t counted; /* the pending events, when why.planned says the planner did not see them */
    bool done;
    double took;
} analyze_job;

static void analyze_run(read_job *j, sg_store *s)
{
    analyze_job *x = (analyze_job *)j;
    double t0 = sg_mono_s(); /* what it costs the store: real time */
    j->rc = sg_store_events_analyze(s, &x->done, &j->err);
    x->took = sg_mono_s() - t0;
}

static void analyze_done(read_job *j, int status)
{
    analyze_job *x = (analyze_job *)j;
    sg_core *c = j->c;
    c->analyzing = false;
    bool ok = status == 0 && j->rc == 0, backlog = x->why.planned >= 0;
    double now = sg_mono_s(), wait = ok ? x->took * COUNTS_COST : ANALYZE_RETRY_S;
    c->next_analyze_s = now + wait;
    c->next_backlog_s = now + (ok ? x->took * ANALYZE_BACKLOG_COST : ANALYZE_RETRY_S);
    if (ok && backlog) {
        c->backlog_planned = x->why.planned;
        c->backlog_done_s = now;
    }
    if (!ok)
        sg_log_limited(&c->analyze_log, SG_LOG_WARN, "journal", "%s (tried again in %.0f s)",
                       status ? uv_strerror(status) : j->err.msg, wait);
    else if (x->done && backlog)
        sg_log(SG_LOG_INFO, "journal",
               "renewed the planner's statistics of the event table (%lld events pending, where "
               "they counted %lld; %.0f ms)",
               (long long)x->counted, (long long)x->why.planned, x->took * 1000);
    else if (x->done)
        sg_log(SG_LOG_INFO, "journal",
               "renewed the planner's statistics of the event table (%lld rows changed since "
               "they were taken; %.0f ms)",
               (long long)x->why.changes, x->took * 1000);
    free(x);
}

static void analyze(sg_core *c, const sg_events_stale *why, int64_t counted)
{
    if (c->analyzing || c->stopping)
        return;
    analyze_job *x = sg_xcalloc(1, sizeof *x);
    x->why = *why;
    x->counted = counted;
    x->rj.run = analyze_run;
    x->rj.done = analyze_done;
    c->analyzing = true;
    read_submit(c, &x->rj, false);
}

/* Analyzes for what sg_store_events_stale found, each reason once its
 * pause is over. */
static void analyze_if_due(sg_core *c, sg_events_stale why, int64_t counted)
{
    double now = sg_mono_s();
    if (now < c->next_backlog_s ||
        (why.planned <= c->backlog_planned && now < c->backlog_done_s + ANALYZE_RETRY_S))
        why.planned = -1;
    if (now < c->next_analyze_s)
        why.changes = 0;
    if (why.changes > 0 || why.planned >= 0)
        analyze(c, &why, counted);
}

/* ---- the oldest pending and held events ---- */

typedef struct ages_job {
    read_job rj;
    bool pending, held; /* which to read */
    int64_t pending_at, held_at;
    bool set;    /* a shared store: the replicas, what the others accepted, the open counts */
    bool counts; /* and all the whole set's counts (next_count_s) */
    int counts_rc;
    sg_error counts_err;
    double counts_s;
    bool analyze; /* and whether the statistics are stale (next_stale_s) */
    int stale_rc; /* sg_store_events_stale's */
    sg_error stale_err;
    sg_events_stale stale; /* why an analyze is due, if one is */
    int64_t counted;       /* the pending events, as last counted (and since delivered) */
    int64_t n[SG_CORE_KINDS][SG_STATE_COUNT];
    int64_t would[SG_STATE_COUNT];
    sg_replica_row *replicas;
    size_t nreplicas;
    int64_t accepted_after, accepted_last;
    char **accepted; /* 4 strings a build: source, job, tag, digest (NULL: none) */
    size_t naccepted;
} ages_job;

/* Events read again below the last one seen: a transaction that took an
 * id before the last may commit after it. */
#define ACCEPTED_AGAIN 1024
#define ACCEPTED_LIMIT 10000

static void keep_accepted(void *ud, const char *source, const char *job, const char *tag,
                          const char *digest)
{
    ages_job *x = ud;
    x->accepted = sg_xrealloc(x->accepted, (x->naccepted + 1) * 4 * sizeof *x->accepted);
    const char *v[4] = {source, job, tag, digest};
    for (int i = 0; i < 4; i++)
        x->accepted[x->naccepted * 4 + i] = v[i] ? sg_xstrdup(v[i]) : NULL;
    x->naccepted++;
}

static void keep_replica(void *ud, const sg_replica_row *r)
{
    ages_job *x = ud;
    x->replicas = sg_xrealloc(x->replicas, (x->nreplicas + 1) * sizeof *x->replicas);
    x->replicas[x->nreplicas] = *r;
    x->replicas[x->nreplicas++].name = sg_xstrdup(r->name);
}

static void replicas_free(sg_replica_row *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free((char *)r[i].name);
    free(r);
}

static void count_into(void *ud, const char *kind, sg_event_state state, const char *would,
                       int64_t n)
{
    ages_job *x = ud;
    sg_kind k;
    sg_event_state w;
    if (sg_kind_parse(kind, &k) == 0)
        x->n[k][state] += n;
    if (would && sg_event_state_parse(would, &w) == 0)
        x->would[w] += n;
}

static void ages_run(read_job *j, sg_store *s)
{
    ages_job *x = (ages_job *)j;
    if (x->pending && (j->rc = sg_store_oldest_pending(s, &x->pending_at, &j->err)))
        return;
    if (x->held && (j->rc = sg_store_oldest_held(s, &x->held_at, &j->err)))
        return;
    if (x->set && (j->rc = sg_store_replicas(s, keep_replica, x, &j->err)) == 0)
        j->rc = sg_store_accepted_since(s, x->accepted_after, ACCEPTED_LIMIT, keep_accepted, x,
                                        &x->accepted_last, &j->err);
    if (j->rc || !x->set)
        return;
    /* before the counts, so that nothing comes between their read and
     * their use (a count read as a drop's last chunk commits puts back
     * for a moment what it took away) */
    if (x->analyze)
        x->stale_rc = sg_store_events_stale(s, x->counted, &x->stale, &x->stale_err);
    /* the open events every time (the leader's drain counts the held);
     * all of them when the pause is over, failed or not, paced alike (a
     * count that ran into statement_timeout must not run again at once) */
    double t0 = sg_mono_s(); /* what the count costs the store: real time */
    x->counts_rc = sg_store_event_counts(s, !x->counts, count_into, x, &x->counts_err);
    x->counts_s = sg_mono_s() - t0;
}

static void ages_done(read_job *j, int status)
{
    ages_job *x = (ages_job *)j;
    sg_core *c = j->c;
    c->aging = false;
    if (status || j->rc) {
        sg_log(SG_LOG_ERROR, "journal", "reading the oldest pending and held events: %s",
               status ? uv_strerror(status) : j->err.msg);
        c->held_stale |= x->held;
    } else {
        if (x->pending) {
            c->oldest_pending = x->pending_at;
            lower(&c->oldest_pending, c->seen_pending);
        }
        if (x->held) {
            c->oldest_held = x->held_at;
            lower(&c->oldest_held, c->seen_held);
        }
        if (x->set && x->counts_rc == 0) {
            /* what the other replicas did since the last read */
            static const sg_event_state open[] = {SG_STATE_PENDING, SG_STATE_HELD, SG_STATE_DEAD};
            if (x->counts) {
                memcpy(c->counts, x->n, sizeof c->counts);
                memcpy(c->would, x->would, sizeof c->would);
                c->counted_at = now_ms(c);
            }
            for (size_t i = 0; !x->counts && i < sizeof open / sizeof *open; i++)
                for (int k = 0; k < SG_CORE_KINDS; k++)
                    c->counts[k][open[i]] = x->n[k][open[i]];
        }
        if (x->analyze && x->stale_rc) {
            c->next_stale_s = sg_mono_s() + ANALYZE_RETRY_S;
            sg_log_limited(&c->analyze_log, SG_LOG_WARN, "journal", "%s (read again in %d s)",
                           x->stale_err.msg, ANALYZE_RETRY_S);
        } else if (x->analyze) {
            analyze_if_due(c, x->stale, x->counted);
        }
        if (x->set && x->counts) {
            c->count_ms = (int64_t)(x->counts_s * 1000);
            double wait = x->counts_s * COUNTS_COST;
            c->next_count_s = sg_mono_s() + (wait > AGES_EVERY_MS / 1000.0 ? wait : 0);
            if (x->counts_rc)
                sg_log_limited(&c->count_log, SG_LOG_WARN, "journal",
                               "counting the replicas' events: %s (counted again in %.0f s)",
                               x->counts_err.msg, wait > 5 ? wait : 5);
        }
        if (x->set) {
            replicas_free(c->replicas, c->nreplicas);
            c->replicas = x->replicas;
            c->nreplicas = x->nreplicas;
            x->replicas = NULL;
            x->nreplicas = 0;
            /* the jobs and tags the other replicas accepted, for the
             * classifier (its own are added as they commit) */
            for (size_t i = 0; i < x->naccepted; i++) {
                char **b = &x->accepted[i * 4];
                if (b[0] && b[1] && b[2])
                    sg_ledger_add_tag(&c->ledger, b[0], b[1], b[2], b[3]);
                else if (b[0] && b[1])
                    sg_ledger_add(&c->ledger, b[0], b[1]);
            }
            if (x->accepted_last > c->accepted_seen)
                c->accepted_seen = x->accepted_last;
        }
    }
    for (size_t i = 0; i < x->naccepted * 4; i++)
        free(x->accepted[i]);
    free(x->accepted);
    replicas_free(x->replicas, x->nreplicas); /* of a failed read */
    free(x);
}

/* The arrivals of the oldest events, read off the loop on the core's
 * reader: the pending one every time (deliveries take the oldest away),
 * the held one when releases and drops made it stale. */
static void read_ages(sg_core *c)
{
    /* on a shared store the other replicas change both at any time */
    bool pending = c->shared || open_count(c, SG_STATE_PENDING) > 0;
    bool held = c->shared || (c->held_stale && open_count(c, SG_STATE_HELD) > 0);
    if (!pending && !held)
        return;
    ages_job *x = sg_xcalloc(1, sizeof *x);
    x->pending = pending;
    x->held = held;
    x->set = c->shared;
    x->counts = c->shared && sg_mono_s() >= c->next_count_s;
    x->analyze = c->shared && !c->analyzing && sg_mono_s() >= c->next_stale_s;
    for (int k = 0; k < SG_CORE_KINDS; k++)
        x->counted += c->counts[k][SG_STATE_PENDING];
    x->accepted_after = c->accepted_seen > ACCEPTED_AGAIN ? c->accepted_seen - ACCEPTED_AGAIN : 0;
    x->rj.run = ages_run;
    x->rj.done = ages_done;
    c->aging = true;
    c->held_stale = c->held_stale && !held;
    c->seen_pending = c->seen_held = 0;
    read_submit(c, &x->rj, true);
}

void sg_core_tick(sg_core *c)
{
    if (c->stopping)
        return;
    int64_t now = now_ms(c);
    sg_guard_tick(c->guard);
    if (c->leading)
        sg_hold_tick(c->hold, c->counts[SG_KIND_UNKNOWN][SG_STATE_HELD]);
    refill(c);
    maybe_renew(c, now);
    shared_modes_tick(c, now);
    maybe_probe(c, now);
    maybe_prune(c, now);
    if (now >= c->next_space_at) {
        c->next_space_at = now + SPACE_EVERY_MS;
        measure_space(c);
    }
    if (now >= c->next_reload_at) {
        c->next_reload_at = now + RELOAD_EVERY_MS;
        sg_core_reload(c);
    }
    if (now >= c->next_summary_at) {
        c->next_summary_at = now + SUMMARY_EVERY_MS;
        log_activity(c);
    }
    if (now >= c->next_ages_at && !c->aging) {
        c->next_ages_at = now + AGES_EVERY_MS;
        read_ages(c);
    }
}

/* ---- guard and storm mode across replicas ----
 *
 * On a shared store a mode this replica starts goes into the store's
 * gate_mode table and is told at once (NOTIFY, for a start or an
 * operator's off only); its extensions are written by the tick, a
 * second apart at most. Each replica LISTENs on a connection of its own,
 * watched by the loop, and reads the table when told and at every tick
 * (a notice lost with a connection is caught up by then), adopting what
 * the others started: the wipe one replica's watcher saw, the storm one
 * replica's detector tripped, an operator's guard on or off at any. */

#define LISTEN_RETRY_MS 5000
#define EXTEND_STEP_MS 1000 /* an extension shorter than this waits */

typedef struct known_mode {
    char *scope; /* "" guard mode, "*" a storm everywhere, else the source */
    int64_t until;
    int64_t wipe, expect; /* guard mode: its last wipe, an announce's window */
} known_mode;

static const char *mode_key(bool storm, const char *scope)
{
    return !storm ? "" : scope ? scope : "*";
}

/* What the store holds for key, as last written or read here. */
static known_mode *known(sg_core *c, const char *key)
{
    for (size_t i = 0; i < c->nknown; i++)
        if (!strcmp(c->known[i].scope, key))
            return &c->known[i];
    c->known = sg_xrealloc(c->known, (c->nknown + 1) * sizeof *c->known);
    c->known[c->nknown] = (known_mode){.scope = sg_xstrdup(key)};
    return &c->known[c->nknown++];
}

static int64_t *known_until(sg_core *c, const char *key)
{
    return &known(c, key)->until;
}

typedef struct publish_job {
    read_job rj;
    sg_mode_row row;
    char *scope, *reason;
    bool notify, off;
    sg_core_done_fn done; /* once written (sg_core_announce), or NULL */
    void *done_ud;
} publish_job;

static void publish_run(read_job *j, sg_store *s)
{
    publish_job *x = (publish_job *)j;
    j->rc = x->off ? sg_store_mode_off(s, x->row.replica, x->row.until_ms, &j->err)
                   : sg_store_mode_publish(s, &x->row, x->notify, &j->err);
}

static void publish_done(read_job *j, int status)
{
    publish_job *x = (publish_job *)j;
    if (status || j->rc)
        sg_log(SG_LOG_ERROR, "guard", "telling the other replicas of %s: %s",
               x->off        ? "guard mode off"
               : x->scope[0] ? "a storm"
                             : "guard mode",
               status ? uv_strerror(status) : j->err.msg);
    if (x->done)
        x->done(x->done_ud, status ? SG_ESTORE : j->rc, status ? uv_strerror(status) : j->err.msg);
    free(x->scope);
    free(x->reason);
    free(x);
}

static publish_job *publish(sg_core *c, const char *key, int64_t since, int64_t until,
                            const char *reason, bool notify, bool off)
{
    if (c->close_begun)
        return NULL;
    publish_job *x = sg_xcalloc(1, sizeof *x);
    x->scope = sg_xstrdup(key);
    x->reason = sg_xstrdup(reason ? reason : "");
    x->row = (sg_mode_row){.scope = *key ? x->scope : NULL,
                           .since_ms = since,
                           .until_ms = until,
                           .reason = x->reason,
                           .replica = c->o.replica};
    if (!*key && !off) { /* guard mode: the wipes it knows of go with it */
        sg_guard_report r;
        sg_guard_report_get(c->guard, &r);
        known_mode *k = known(c, "");
        x->row.wipe_at_ms = r.last_wipe_at_ms;
        x->row.expect_until_ms = r.expect_wipe_until_ms;
        /* what the row holds from now: the later of each (never lowered) */
        k->wipe = r.last_wipe_at_ms > k->wipe ? r.last_wipe_at_ms : k->wipe;
        k->expect = r.expect_wipe_until_ms > k->expect ? r.expect_wipe_until_ms : k->expect;
    }
    x->notify = notify;
    x->off = off;
    x->rj.run = publish_run;
    x->rj.done = publish_done;
    if (!off)
        *known_until(c, key) = until;
    read_submit(c, &x->rj, true);
    return x;
}

/* Writes the extensions of this replica's modes the store lags behind. */
static void publish_extensions(sg_core *c)
{
    sg_guard_report r;
    sg_guard_report_get(c->guard, &r);
    known_mode *g = known(c, "");
    if (r.guard && (r.guard_until_ms > g->until + EXTEND_STEP_MS || r.last_wipe_at_ms > g->wipe ||
                    r.expect_wipe_until_ms > g->expect))
        publish(c, "", r.guard_since_ms, r.guard_until_ms, r.guard_reason, false, false);
    for (size_t i = 0; i < r.nstorms && i < SG_GUARD_MAX_STORMS; i++) {
        const sg_mode_storm_info *st = &r.storms[i];
        const char *key = mode_key(true, st->scope);
        if (st->until_ms > *known_until(c, key) + EXTEND_STEP_MS)
            publish(c, key, st->since_ms, st->until_ms, st->message, false, false);
    }
}

typedef struct modes_job {
    read_job rj;
    sg_mode_row *rows;
    size_t n;
    int64_t after;          /* rows ending after this time, by the loop's clock */
    void (*then)(void *ud); /* after adopting them (sg_core_read_modes), or NULL */
    void *then_ud;
} modes_job;

static void keep_mode(void *ud, const sg_mode_row *m)
{
    modes_job *x = ud;
    x->rows = sg_xrealloc(x->rows, (x->n + 1) * sizeof *x->rows);
    sg_mode_row *r = &x->rows[x->n++];
    *r = *m;
    r->scope = m->scope ? sg_xstrdup(m->scope) : NULL;
    r->reason = sg_xstrdup(m->reason ? m->reason : "");
    r->replica = sg_xstrdup(m->replica ? m->replica : "");
}

static void modes_run(read_job *j, sg_store *s)
{
    modes_job *x = (modes_job *)j;
    j->rc = sg_store_modes(s, x->after, keep_mode, x, &j->err);
}

static void read_modes(sg_core *c);

/* What another replica started, or an operator turned off there. */
static void adopt(sg_core *c, const sg_mode_row *m, int64_t now)
{
    bool storm = m->scope != NULL;
    const char *scope = storm && strcmp(m->scope, "*") ? m->scope : NULL;
    known_mode *k = known(c, mode_key(storm, scope));
    if (m->until_ms > k->until)
        k->until = m->until_ms;
    /* the last wipe and an announced flush, whatever the mode: each once,
     * when it changed (the watcher narrows an announce's window once its
     * wipe came; the row keeps the first) */
    int64_t wipe = !storm && m->wipe_at_ms > k->wipe ? m->wipe_at_ms : 0;
    int64_t expect = !storm && m->expect_until_ms > k->expect ? m->expect_until_ms : 0;
    if (wipe)
        k->wipe = wipe;
    if (expect)
        k->expect = expect;
    if (wipe || expect) /* whoever wrote the row last: it may be this one */
        sg_guard_adopt_wipes(c->guard, wipe, expect);
    if (!strcmp(m->replica, c->o.replica))
        return;
    sg_guard_report r;
    sg_guard_report_get(c->guard, &r);
    c->adopting = true;
    if (!storm && m->off_at > c->last_off) {
        c->last_off = m->off_at;
        if (r.guard && r.guard_since_ms <= m->off_at) {
            char why[400];
            snprintf(why, sizeof why, "turned off at replica %s", m->replica);
            sg_guard_off(c->guard, why);
        }
    } else if (m->until_ms > now) {
        char why[768];
        snprintf(why, sizeof why, "%s (from replica %s)", m->reason, m->replica);
        sg_guard_adopt(c->guard, scope, storm, m->until_ms, why);
    }
    c->adopting = false;
}

static void modes_done(read_job *j, int status)
{
    modes_job *x = (modes_job *)j;
    sg_core *c = j->c;
    if (!x->then)
        c->modes_reading = false;
    bool failed = status || j->rc;
    if (failed && !c->modes_failed) /* read every second: once a failure */
        sg_log(SG_LOG_ERROR, "guard", "reading the other replicas' modes: %s",
               status ? uv_strerror(status) : j->err.msg);
    c->modes_failed = failed;
    int64_t now = now_ms(c);
    for (size_t i = 0; i < x->n; i++) {
        if (!c->stopping)
            adopt(c, &x->rows[i], now);
        free((char *)x->rows[i].scope);
        free((char *)x->rows[i].reason);
        free((char *)x->rows[i].replica);
    }
    free(x->rows);
    if (x->then)
        x->then(x->then_ud);
    bool tick = !x->then;
    free(x);
    if (tick && c->modes_again) {
        c->modes_again = false;
        read_modes(c);
    }
}

static modes_job *modes_job_new(sg_core *c)
{
    modes_job *x = sg_xcalloc(1, sizeof *x);
    x->after = now_ms(c) - 60000;
    x->rj.run = modes_run;
    x->rj.done = modes_done;
    return x;
}

static void read_modes(sg_core *c)
{
    if (c->stopping || c->close_begun)
        return;
    if (c->modes_reading) {
        c->modes_again = true;
        return;
    }
    c->modes_reading = true;
    read_submit(c, &modes_job_new(c)->rj, true);
}

void sg_core_read_modes(sg_core *c, void (*then)(void *ud), void *ud)
{
    if (!c->shared || c->close_begun) {
        then(ud);
        return;
    }
    modes_job *x = modes_job_new(c);
    x->then = then;
    x->then_ud = ud;
    read_submit(c, &x->rj, true);
}

void sg_core_announce(sg_core *c, const char *reason, sg_core_done_fn done, void *ud)
{
    sg_guard_announce(c->guard, reason);
    sg_guard_report r;
    sg_guard_report_get(c->guard, &r);
    publish_job *x =
        c->shared ? publish(c, "", r.guard_since_ms, r.guard_until_ms, r.guard_reason, true, false)
                  : NULL;
    if (!x) {
        done(ud, 0, NULL);
        return;
    }
    x->done = done;
    x->done_ud = ud;
}

static void listener_close(sg_core *c);

static void on_listen_readable(uv_poll_t *p, int status, int events)
{
    sg_core *c = p->data;
    (void)events;
    bool notified = false;
    sg_error err = {0};
    /* libpq closes the socket of a connection it finds gone, and libuv
     * must not poll a closed descriptor: the poll stops before the read */
    uv_poll_stop(p);
    if (status < 0 || sg_store_listener_read(c->listener, &notified, &err)) {
        sg_log(SG_LOG_WARN, "guard",
               "listening for the other replicas' modes: %s: listening again in %d s (the "
               "modes are read every second meanwhile)",
               status < 0 ? uv_strerror(status) : err.msg, LISTEN_RETRY_MS / 1000);
        listener_close(c);
        c->next_listen_at = now_ms(c) + LISTEN_RETRY_MS;
        return;
    }
    int r = uv_poll_start(p, UV_READABLE, on_listen_readable);
    if (r) {
        sg_log(SG_LOG_WARN, "guard",
               "listening for the other replicas' modes: %s: listening again in %d s",
               uv_strerror(r), LISTEN_RETRY_MS / 1000);
        listener_close(c);
        c->next_listen_at = now_ms(c) + LISTEN_RETRY_MS;
    }
    if (notified)
        read_modes(c);
}

static void on_listen_closed(uv_handle_t *h)
{
    sg_core *c = h->data;
    sg_store_listener_free(c->listener);
    c->listener = NULL;
    c->listen_polling = false;
    maybe_close(c);
}

static void listener_close(sg_core *c)
{
    if (c->listen_polling && !uv_is_closing((uv_handle_t *)&c->listen_poll))
        uv_close((uv_handle_t *)&c->listen_poll, on_listen_closed);
}

typedef struct listen_job {
    read_job rj;
    sg_store_listener *l;
} listen_job;

static void listen_run(read_job *j, sg_store *s)
{
    (void)s;
    listen_job *x = (listen_job *)j;
    j->rc = sg_store_listen(j->c->o.db_path, &x->l, &j->err);
}

static void listen_done(read_job *j, int status)
{
    listen_job *x = (listen_job *)j;
    sg_core *c = j->c;
    c->listen_connecting = false;
    if (status || j->rc) {
        if (!c->listen_failed)
            sg_log(SG_LOG_WARN, "guard", "cannot listen for the other replicas' modes: %s",
                   status ? uv_strerror(status) : j->err.msg);
        c->listen_failed = true;
        c->next_listen_at = now_ms(c) + LISTEN_RETRY_MS;
        free(x);
        return;
    }
    if (c->stopping) {
        sg_store_listener_free(x->l);
        free(x);
        return;
    }
    if (c->listen_failed)
        sg_log(SG_LOG_INFO, "guard", "listening for the other replicas' modes again");
    c->listen_failed = false;
    c->listener = x->l;
    free(x);
    int r = uv_poll_init(c->loop, &c->listen_poll, sg_store_listener_fd(c->listener));
    if (r) {
        sg_log(SG_LOG_WARN, "guard",
               "listening for the other replicas' modes: %s: listening again in %d s",
               uv_strerror(r), LISTEN_RETRY_MS / 1000);
        sg_store_listener_free(c->listener);
        c->listener = NULL;
        c->next_listen_at = now_ms(c) + LISTEN_RETRY_MS;
        return;
    }
    c->listen_poll.data = c;
    c->listen_polling = true;
    if ((r = uv_poll_start(&c->listen_poll, UV_READABLE, on_listen_readable))) {
        sg_log(SG_LOG_WARN, "guard",
               "listening for the other replicas' modes: %s: listening again in %d s",
               uv_strerror(r), LISTEN_RETRY_MS / 1000);
        listener_close(c);
        c->next_listen_at = now_ms(c) + LISTEN_RETRY_MS;
        return;
    }
    read_modes(c); /* what changed before it listened */
}

/* The tick's share: listening, the table read, the extensions. */
static void shared_modes_tick(sg_core *c, int64_t now)
{
    if (!c->shared)
        return;
    if (!c->listener && !c->listen_connecting && !c->listen_polling && now >= c->next_listen_at) {
        listen_job *x = sg_xcalloc(1, sizeof *x);
        x->rj.run = listen_run;
        x->rj.done = listen_done;
        x->rj.bare = true;
        c->listen_connecting = true;
        read_submit(c, &x->rj, false);
    }
    read_modes(c);
    publish_extensions(c);
}

/* ---- the guard's mode changes ---- */

static void on_mode(void *ud, const sg_mode_change *ch)
{
    sg_core *c = ud;
    if (c->shared && !c->adopting) {
        sg_guard_report r;
        sg_guard_report_get(c->guard, &r);
        if (ch->started && ch->mode == SG_MODE_GUARD && r.guard)
            publish(c, "", ch->since_ms, r.guard_until_ms, ch->detail, true, false);
        for (size_t i = 0;
             ch->started && ch->mode == SG_MODE_STORM && i < r.nstorms && i < SG_GUARD_MAX_STORMS;
             i++)
            if (!r.storms[i].scope == !ch->scope &&
                (!ch->scope || !strcmp(ch->scope, r.storms[i].scope)))
                publish(c, mode_key(true, ch->scope), ch->since_ms, r.storms[i].until_ms,
                        ch->detail, true, false);
        if (!ch->started && ch->forced && ch->mode == SG_MODE_GUARD)
            publish(c, "", ch->since_ms, ch->until_ms, NULL, false, true);
    }
    if (ch->started || sg_guard_mode(c->guard, NULL) != SG_MODE_NORMAL)
        return;
    int64_t held = c->counts[SG_KIND_UNKNOWN][SG_STATE_HELD];
    if (held)
        sg_log(SG_LOG_WARN, "guard",
               "back to normal mode; %lld events stay held until released or dropped "
               "(stormguard held)",
               (long long)held);
}

/* ---- audit rows ---- */

typedef struct audit_op {
    sg_jop op;
    sg_core *c;
    sg_core_done_fn done;
    void *ud;
    char *actor, *action, *detail;
} audit_op;

static void on_audit_done(sg_jop *op)
{
    audit_op *a = op->ud;
    if (op->status)
        sg_log(SG_LOG_ERROR, "guard", "writing the audit row (%s) failed: %s", a->action,
               op->errmsg);
    if (a->done)
        a->done(a->ud, op->status, op->status ? op->errmsg : NULL);
    sg_core *c = a->c;
    free(a->actor);
    free(a->action);
    free(a->detail);
    free(a);
    maybe_close(c);
}

int sg_core_audit(sg_core *c, const char *actor, const char *action, const char *detail,
                  sg_core_done_fn done, void *ud)
{
    if (c->stopping)
        return SG_EBUSY;
    audit_op *a = sg_xcalloc(1, sizeof *a);
    a->c = c;
    a->done = done;
    a->ud = ud;
    a->actor = sg_xstrdup(actor);
    a->action = sg_xstrdup(action);
    a->detail = sg_xstrdup(detail);
    a->op.type = SG_JOP_AUDIT;
    a->op.actor = a->actor;
    a->op.action = a->action;
    a->op.detail = a->detail;
    a->op.done = on_audit_done;
    a->op.ud = a;
    sg_journal_submit(c->journal, &a->op);
    return 0;
}

/* ---- queries for the admin API ---- */

typedef struct events_job {
    read_job rj;
    sg_event_state state;
    bool any_state;
    char *kind, *job;
    int limit;
    sg_core_events_fn fn;
    void *ud;
    /* the rows, copied off the statement */
    sg_event_row *rows;
    size_t n, cap;
} events_job;

static char *keep(const char *s)
{
    return s ? sg_xstrdup(s) : NULL;
}

static int events_row(void *ud, const sg_event_row *r)
{
    events_job *x = ud;
    if (x->n == x->cap) {
        x->cap = x->cap ? 2 * x->cap : 64;
        x->rows = sg_xrealloc(x->rows, x->cap * sizeof *x->rows);
    }
    sg_event_row *o = &x->rows[x->n++];
    *o = *r;
    o->source = keep(r->source);
    o->job = keep(r->job);
    o->kind = keep(r->kind);
    o->reason = keep(r->reason);
    o->method = keep(r->method);
    o->path = keep(r->path);
    o->headers = NULL;
    o->body = NULL;
    o->body_len = 0;
    o->last_error = keep(r->last_error);
    o->would = keep(r->would);
    o->tag = keep(r->tag);
    o->digest = keep(r->digest);
    return 0;
}

static void events_run(read_job *j, sg_store *s)
{
    events_job *x = (events_job *)j;
    j->rc = sg_store_events_query(s, x->any_state ? NULL : &x->state, x->kind, x->job, x->limit,
                                  events_row, x, &j->err);
}

static void events_done(read_job *j, int status)
{
    events_job *x = (events_job *)j;
    if (status || j->rc)
        x->fn(x->ud, status ? SG_EIO : j->rc, status ? uv_strerror(status) : j->err.msg, NULL, 0);
    else
        x->fn(x->ud, 0, NULL, x->rows, x->n);
    for (size_t i = 0; i < x->n; i++) {
        sg_event_row *r = &x->rows[i];
        free((char *)r->source);
        free((char *)r->job);
        free((char *)r->kind);
        free((char *)r->reason);
        free((char *)r->method);
        free((char *)r->path);
        free((char *)r->last_error);
        free((char *)r->would);
        free((char *)r->tag);
        free((char *)r->digest);
    }
    free(x->rows);
    free(x->kind);
    free(x->job);
    free(x);
}

int sg_core_events(sg_core *c, const sg_event_state *state, const char *kind, const char *job,
                   int limit, sg_core_events_fn fn, void *ud)
{
    if (c->close_begun)
        return SG_EBUSY;
    events_job *x = sg_xcalloc(1, sizeof *x);
    x->any_state = !state;
    if (state)
        x->state = *state;
    x->kind = kind ? sg_xstrdup(kind) : NULL;
    x->job = job ? sg_xstrdup(job) : NULL;
    x->limit = limit;
    x->fn = fn;
    x->ud = ud;
    x->rj.run = events_run;
    x->rj.done = events_done;
    read_submit(c, &x->rj, false);
    return 0;
}

typedef struct held_job {
    read_job rj;
    int64_t limit, held, jobs_total;
    sg_held_job *jobs;
    size_t n, cap;
    sg_core_held_fn fn;
    void *ud;
} held_job;

static void held_row(void *ud, const char *source, const char *job, int64_t count, int64_t oldest,
                     int64_t newest)
{
    held_job *x = ud;
    if (x->n == x->cap) {
        x->cap = x->cap ? 2 * x->cap : 64;
        x->jobs = sg_xrealloc(x->jobs, x->cap * sizeof *x->jobs);
    }
    x->jobs[x->n++] = (sg_held_job){sg_xstrdup(source), sg_xstrdup(job), count, oldest, newest};
}

static void held_run(read_job *j, sg_store *s)
{
    held_job *x = (held_job *)j;
    j->rc = sg_store_held_summary(s, x->limit, held_row, x, &x->held, &x->jobs_total, &j->err);
}

static void held_done(read_job *j, int status)
{
    held_job *x = (held_job *)j;
    if (status || j->rc)
        x->fn(x->ud, status ? SG_EIO : j->rc, status ? uv_strerror(status) : j->err.msg, 0, 0, NULL,
              0);
    else
        x->fn(x->ud, 0, NULL, x->held, x->jobs_total, x->jobs, x->n);
    for (size_t i = 0; i < x->n; i++) {
        free((char *)x->jobs[i].source);
        free((char *)x->jobs[i].job);
    }
    free(x->jobs);
    free(x);
}

int sg_core_held_summary(sg_core *c, int64_t limit, sg_core_held_fn fn, void *ud)
{
    if (c->close_begun)
        return SG_EBUSY;
    held_job *x = sg_xcalloc(1, sizeof *x);
    x->limit = limit;
    x->fn = fn;
    x->ud = ud;
    x->rj.run = held_run;
    x->rj.done = held_done;
    read_submit(c, &x->rj, false);
    return 0;
}

/* ---- reports ---- */

void sg_core_stats_get(const sg_core *c, sg_core_stats *out)
{
    memset(out, 0, sizeof *out);
    memcpy(out->counts, c->counts, sizeof out->counts);
    out->observe = c->o.observe;
    out->counted_at_ms = c->counted_at;
    out->count_ms = c->count_ms;
    /* with the ages (every AGES_EVERY_MS) once its pause is over */
    int64_t pause = (int64_t)((c->next_count_s - sg_mono_s()) * 1000);
    int64_t next = now_ms(c) + (pause > 0 ? pause : 0);
    out->next_count_ms = !c->counted_at                         ? 0
                         : next > c->counted_at + AGES_EVERY_MS ? next
                                                                : c->counted_at + AGES_EVERY_MS;
    memcpy(out->would, c->would, sizeof out->would);
    memcpy(out->received, c->received, sizeof out->received);
    out->rejected = c->rejected;
    out->unavailable = c->unavailable;
    for (int k = 0; k < SG_CORE_KINDS; k++) {
        out->pending += c->counts[k][SG_STATE_PENDING];
        out->held += c->counts[k][SG_STATE_HELD];
    }
    out->journal_ok = c->journal_ok;
    out->journal_error = c->journal_ok ? NULL : c->journal_error;
    out->journal_depth = (c->journal ? sg_journal_depth(c->journal) : 0) +
                         (c->outcomes ? sg_journal_depth(c->outcomes) : 0);
    out->reads = c->readers;
    out->free_bytes = c->free_bytes;
    out->store_bytes = c->store_bytes;
    out->ledger_builds = c->ledger_builds;
    out->ledger_jobs = c->ledger.jobs.len;
    out->baseline_id = c->baseline_id;
    out->baseline_taken_at_ms = c->baseline_taken_at;
    out->baseline_keys = c->baseline_keys;
    out->baseline_reason = c->baseline_reason;
    out->replicas = c->replicas;
    out->nreplicas = c->nreplicas;
    out->replica = c->o.replica;
    out->baseline_jobs = c->index.jobs.len;
    out->fwd_attempts = c->fwd_attempts;
    out->fwd_failures = c->fwd_failures;
    out->downstream_ok = c->downstream_ok;
    out->downstream_last_ok = c->downstream_last_ok;
    out->downstream_last_fail = c->downstream_last_fail;
    out->downstream_error = c->downstream_last_fail ? c->downstream_error : NULL;
    out->commit_hist = &c->commit_hist;
    out->forward_hist = &c->forward_hist;
    out->started_at_ms = c->started_at;
    out->now_ms = now_ms(c);
    out->oldest_pending_ms = out->pending ? c->oldest_pending : 0;
    out->oldest_held_ms = out->held ? c->oldest_held : 0;
}

sg_guard *sg_core_guard(sg_core *c)
{
    return c->guard;
}

sg_hold *sg_core_hold(sg_core *c)
{
    return c->hold;
}

int64_t sg_core_held(const sg_core *c)
{
    return c->counts[SG_KIND_UNKNOWN][SG_STATE_HELD];
}

/* ---- start and stop ---- */

static void count_events(void *ud, const char *kind, sg_event_state state, const char *would,
                         int64_t n)
{
    sg_core *c = ud;
    sg_kind k;
    sg_event_state w;
    if (sg_kind_parse(kind, &k) == 0)
        c->counts[k][state] += n;
    if (would && sg_event_state_parse(would, &w) == 0)
        c->would[w] += n;
}

static void ledger_add(void *ud, const char *source, const char *job)
{
    sg_ledger_add(ud, source, job);
}

static void ledger_add_tag(void *ud, const char *account, const char *repository, const char *tag,
                           const char *digest)
{
    sg_ledger_add_tag(ud, account, repository, tag, digest);
}

int sg_core_start(uv_loop_t *loop, const sg_core_opts *o, sg_core **out, sg_error *err)
{
    sg_core *c = sg_xcalloc(1, sizeof *c);
    c->loop = loop;
    c->o = *o;
    c->clock = o->clock ? o->clock : &sg_clock_real;
    c->reads_tail = &c->reads;
    c->journal_ok = c->downstream_ok = true;
    c->free_bytes = c->store_bytes = -1; /* until measured */
    c->started_at = now_ms(c);
    c->next_prune_at = c->started_at + PRUNE_FIRST_MS;
    c->next_reload_at = c->started_at + RELOAD_EVERY_MS;
    c->next_summary_at = c->started_at + SUMMARY_EVERY_MS;
    c->spilled = true; /* resume what the last run left pending */
    c->shared = o->replica != NULL;
    c->leading = !c->shared;
    sg_index_init(&c->index);
    sg_ledger_init(&c->ledger);
    sg_u64map_init(&c->claiming, sizeof(size_t));
    c->held_back_tail = &c->held_back;
    int rc;
    /* a replica's reader publishes mode changes; its lease (maybe_renew)
     * and its claims (refill_run) have connections of their own */
    sg_store_options ro = {.readonly = !c->shared};
    /* a renewal that waits (its release of lapsed claims on a locked
     * table) gives up before the lease is gone: the next one renews */
    sg_store_options lo = {.statement_timeout_ms = LEASE_STATEMENT_MS};
    sg_store_options co = {.keyed = true};
    sg_journal_opts jo = {.sync = o->synchronous,
                          .clock = c->clock,
                          .no_linger = o->one_at_a_time,
                          .replica = o->replica};
    sg_journal_opts oo = jo;
    oo.keyed = true;
    if ((rc = sg_journal_start(loop, o->db_path, &jo, &c->journal, err)) ||
        (c->shared && (rc = sg_journal_start(loop, o->db_path, &oo, &c->outcomes, err))) ||
        (rc = sg_store_open(o->db_path, &ro, &c->reader, err)) ||
        (c->shared && (rc = sg_store_open(o->db_path, &lo, &c->lease, err))) ||
        (c->shared && (rc = sg_store_open(o->db_path, &co, &c->claims, err))) ||
        (rc = sg_store_queue_gen(c->reader, &c->qgen, err)) ||
        (rc = sg_store_ledger_jobs(c->reader, ledger_add, &c->ledger, &c->ledger_builds, err)) ||
        (rc = sg_store_ledger_docker(c->reader, ledger_add_tag, &c->ledger, err)) ||
        (rc = sg_store_event_counts(c->reader, false, count_events, c, err)) ||
        (c->shared && (rc = sg_store_last_event_id(c->reader, &c->accepted_seen, err))))
        goto fail;
    c->held_stale = true; /* the first tick reads both ages */
    baseline b = {0};
    if ((rc = load_baseline(c->reader, 0, 0, &b, err)))
        goto fail;
    if (b.id)
        use_baseline(c, &b);
    sg_guard_opts go = {.storm = o->storm,
                        .guard_ms = o->guard_ms,
                        .cooldown_ms = o->cooldown_ms,
                        .clock = c->clock,
                        .journal = c->journal,
                        .drops_unknown = o->on_storm == SG_ON_STORM_DROP};
    if ((rc = sg_guard_new(&go, on_mode, c, &c->guard, err)))
        goto fail;
    sg_hold_opts ho = {.on_storm = o->on_storm,
                       .drain_rate = o->drain_rate,
                       .guard = c->guard,
                       .journal = c->journal,
                       .clock = c->clock,
                       .hooks = {.next_gen = next_gen, .moved = on_moved, .ud = c}};
    c->hold = sg_hold_new(&ho);
    measure_space(c);
    *out = c;
    return 0;
fail:
    /* the journal stops on the loop: the caller runs it to the end */
    if (c->outcomes)
        sg_journal_stop(c->outcomes, NULL, NULL);
    if (c->journal)
        sg_journal_stop(c->journal, NULL, NULL);
    c->journal = c->outcomes = NULL;
    sg_core_free(c);
    return rc;
}

void sg_core_set_leading(sg_core *c, bool leading)
{
    c->leading = leading || !c->shared;
}

void sg_core_set_deliverer(sg_core *c, const sg_deliverer *d)
{
    c->deliverer = *d;
    c->has_deliverer = true;
    refill(c);
}

void sg_core_stop(sg_core *c)
{
    c->stopping = true;
    listener_close(c);
    sg_hold_stop(c->hold);
}

bool sg_core_stopping(const sg_core *c)
{
    return c->stopping;
}

static void on_journal_stopped(void *ud)
{
    sg_core *c = ud;
    c->journal = NULL;
    if (c->closed)
        c->closed(c->closed_ud);
}

static void maybe_close(sg_core *c);

static void on_outcomes_stopped(void *ud)
{
    sg_core *c = ud;
    c->outcomes = NULL;
    maybe_close(c);
}

/* The journal's read-write connections close last: only such a last
 * connection checkpoints and removes the WAL; the reader goes first, once
 * no read uses it, and the outcomes' journal before the events' one. */
static void maybe_close(sg_core *c)
{
    if (!c->closing || c->readers || c->measuring || !c->journal || c->listen_polling)
        return;
    if (c->outcomes) {
        if (!c->outcomes_stopping) {
            c->outcomes_stopping = true;
            sg_journal_stop(c->outcomes, on_outcomes_stopped, c);
        }
        return;
    }
    sg_store_free(c->reader);
    sg_store_free(c->lease);
    sg_store_free(c->claims);
    c->reader = c->lease = c->claims = NULL;
    sg_journal *j = c->journal;
    c->closing = false;
    sg_journal_stop(j, on_journal_stopped, c);
}

void sg_core_close(sg_core *c, void (*done)(void *ud), void *ud)
{
    assert(c->stopping);
    c->closing = c->close_begun = true;
    c->closed = done;
    c->closed_ud = ud;
    maybe_close(c);
}

void sg_core_free(sg_core *c)
{
    if (!c)
        return;
    unrecorded_free(c);
    sg_store_free(c->reader);
    sg_store_free(c->lease);
    sg_store_free(c->claims);
    sg_hold_free(c->hold);
    sg_guard_free(c->guard);
    sg_index_close(&c->index);
    sg_ledger_close(&c->ledger);
    free(c->baseline_reason);
    replicas_free(c->replicas, c->nreplicas);
    while (c->held_back) {
        sg_fwd_item *it = c->held_back;
        c->held_back = it->next;
        sg_fwd_item_free(it);
    }
    sg_u64map_clear(&c->claiming);
    for (size_t i = 0; i < c->nknown; i++)
        free(c->known[i].scope);
    free(c->known);
    free(c);
}
