/* The writer thread and its group commit (journal.h).
 *
 * Loop thread                      writer thread
 *   submit(op) -> queue, signal      wait for ops; BEGIN; apply the queued
 *                                    ops, and those queued meanwhile, until
 *                                    none is left; COMMIT (or ROLLBACK: then
 *                                    every op of the batch fails)
 *   async cb <- done list, async     move the batch to the done list
 *   op->done(op) for each
 *
 * A failed batch fails all its ops: the gate answers 503 for each and the
 * poller retries, so nothing is half-written.
 *
 * The ledger is written in bulk (schema/006_ledger_mark.sql). A build the
 * journal accepts goes into the writer's memory ("recent") with its event;
 * a second delivery is looked up there, then among the builds being
 * written, then in the store's ledger. About once a second the recent
 * builds become the ones being written: sorted, they go into the ledger 256
 * per transaction while the writer has nothing else to do (with the ops
 * when it never has), and the last one moves the mark that says up to which
 * event the ledger is complete. Written at once, 16k builds held every
 * answer for 30 to 120 ms. A crash loses only the memory: opening the
 * journal adds the builds of the events after the mark from the event
 * table. On a store that other gates write too (PostgreSQL replicas), one
 * writer's memory tells nothing of theirs: each build goes into the ledger
 * with its event, and the ledger's key decides (insert_shared).
 *
 * Times. What the writer records comes with the op (op->at, stamped by the
 * submitter's clock on the loop thread: virtual time in the simulator);
 * the writer's own pacing (lingering, the ledger's cadence, the WAL's
 * restarts) is real time, as it is about this machine's disk.
 *
 * Checkpoints (copying the WAL into the database, with an fsync) run on a
 * third thread with its own connection, never inside a commit: done by the
 * committing connection, as SQLite does by default, one commit in a thousand
 * would take tens of milliseconds and every answer waiting on it with it. */
#include "stormguard/gate/journal.h"
#include "stormguard/base/clock.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "stormguard/gate/classify.h"
#include "stormguard/base/hashset.h"
#include "stormguard/base/log.h"
#include "stormguard/base/util.h"
#include "stormguard/store/episodes.h"
#include "stormguard/store/events.h"
#include "stormguard/store/held.h"
#include "stormguard/store/replicas.h"

#define LINGER_US 250    /* longest a write waits for company */
#define LINGER_UNTIL 64  /* no lingering once this many writes wait */
#define BATCH_MAX 256    /* a transaction takes no more ops than this */
#define LINGER_GAP_US 60 /* nor once this long passed without one */

#define LEDGER_EVERY_S 1.0 /* recent builds go into the ledger this often */
#define LEDGER_AT 16384    /* or once this many wait */
#define LEDGER_CHUNK 256   /* builds a writing transaction takes */

/* The names of a set of builds, in a few big blocks freed together: a
 * string per build, allocated and freed a second later by the ten thousand,
 * left the heap fragmented (RSS steps of several hundred KiB under load). */
#define NAMES_BLOCK (64 << 10)

typedef struct names_block {
    struct names_block *next;
    size_t cap, used;
    char data[];
} names_block;

typedef struct names {
    names_block *head;
} names;

static char *names_dup(names *n, const char *s)
{
    size_t len = strlen(s) + 1;
    names_block *b = n->head;
    if (!b || b->used + len > b->cap) {
        size_t cap = len > NAMES_BLOCK ? len : NAMES_BLOCK;
        b = sg_xmalloc(sizeof *b + cap);
        b->cap = cap;
        b->used = 0;
        b->next = n->head;
        n->head = b;
    }
    char *p = b->data + b->used;
    memcpy(p, s, len);
    b->used += len;
    return p;
}

static void names_free(names *n)
{
    while (n->head) {
        names_block *b = n->head;
        n->head = b->next;
        free(b);
    }
}

typedef struct recent_build {
    char *source, *job;
    int64_t number, event_id, received_at; /* the event's, epoch ms */
} recent_build;

struct sg_journal {
    uv_loop_t *loop;
    const sg_clock *clock; /* read on the loop thread only, in submit */
    bool linger;           /* a first write waits for company (sg_journal_opts) */
    uv_async_t async;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t ckpt_wake;
    sg_jop *queue, **queue_tail; /* submitted, not yet taken */
    int queued;                  /* ops on queue */
    sg_jop *done, **done_tail;   /* committed, not yet reported */
    int depth;                   /* submitted and not reported */
    bool stopping;
    sg_store *store;
    pthread_t checkpointer;
    sg_store *ckpt_store;
    bool shared;          /* other gates write the store too (insert_shared) */
    const char *replica;  /* sg_journal_opts.replica */
    sg_event_insert *ins; /* insert_shared's batch */
    size_t capins;
    sg_event_outcome *outs; /* update_run's batch */
    size_t capouts;
    /* writer thread only: builds accepted since the ledger was last written */
    recent_build *recent;
    names recent_names; /* their source and job strings */
    size_t nrecent, caprecent;
    sg_u64map recent_ix; /* sg_hash_build -> index into recent */
    sg_u64map newest;    /* sg_hash_job -> its highest build accepted (a
                            job's later build needs no look in the ledger) */
    double recent_since; /* sg_mono_s of the oldest */
    /* the builds being written, sorted, a chunk at a time (writer only) */
    recent_build *flushing;
    names flushing_names;
    size_t nflushing, flushed;
    int64_t flushing_upto;   /* the mark once they are all written */
    double flushing_since;   /* sg_mono_s when they were cut from recent */
    int64_t flushing_oldest; /* received_at (epoch ms) of the oldest of them */
    int64_t last_id;         /* the last event id journaled */
    bool ledger_now;         /* this transaction writes them, due or not */
    bool ckpt_kicked;        /* the writer woke the checkpointer (under lock) */
    int64_t ckpt_passes;     /* passive checkpoints done (under lock) */
    int kicked_at;           /* writer: the WAL's length when it last woke it */
    int64_t reset_after;     /* writer: start the WAL over after this pass (0: no) */
    sg_log_limit wal_log;    /* writer: the WAL could not start over */
    sg_log_limit ckpt_log;   /* checkpointer: a checkpoint failed */
    double wal_retry_at;     /* writer: no attempt to empty it before (sg_mono_s) */
    void (*stopped)(void *ud);
    void *stopped_ud;
};

#define PRUNE_CHUNK 5000 /* events looked at per retention transaction */

/* ---- the ledger in bulk ---- */

static bool same_build(const recent_build *b, const sg_event_row *r)
{
    return b->number == r->number && !strcmp(b->source, r->source) && !strcmp(b->job, r->job);
}

static int build_cmp(const char *source, const char *job, int64_t number, const recent_build *b)
{
    int c = strcmp(source, b->source);
    if (!c)
        c = strcmp(job, b->job);
    if (!c)
        c = number < b->number ? -1 : number > b->number;
    return c;
}

static int sort_cmp(const void *x, const void *y)
{
    const recent_build *a = x;
    return build_cmp(a->source, a->job, a->number, y);
}

/* Whether the build of r was accepted before: recently, being written, or
 * in the ledger. */
static int ledger_seen(sg_journal *j, const sg_event_row *r, bool *seen, sg_error *err)
{
    size_t *at = sg_u64map_get(&j->recent_ix, sg_hash_build(r->source, r->job, r->number));
    if (at && same_build(&j->recent[*at], r)) {
        *seen = true;
        return 0;
    }
    /* beyond the job's highest build accepted: nowhere (two jobs sharing a
     * hash only make that highest higher, and the look below happen) */
    const int64_t *top = sg_u64map_get(&j->newest, sg_hash_job(r->source, r->job));
    if (!top || r->number > *top) {
        *seen = false;
        return 0;
    }
    size_t lo = 0, hi = j->nflushing;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = build_cmp(r->source, r->job, r->number, &j->flushing[mid]);
        if (!c) {
            *seen = true;
            return 0;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return sg_store_ledger_has(j->store, r->source, r->job, r->number, seen, err);
}

/* Remembers the build of r, journaled as event r->id, for the next write. */
static int ledger_remember(sg_journal *j, const sg_event_row *r, sg_error *err)
{
    /* first: every accepted build counts in its job's highest, also one
     * written at once below (ledger_seen skips the ledger above it) */
    bool fresh;
    int64_t *top = sg_u64map_put(&j->newest, sg_hash_job(r->source, r->job), &fresh);
    if (fresh || r->number > *top)
        *top = r->number;
    bool created;
    size_t *at =
        sg_u64map_put(&j->recent_ix, sg_hash_build(r->source, r->job, r->number), &created);
    if (!created) {
        /* another build with the same 64-bit hash: this one goes into the
         * ledger at once, where the next look finds it */
        bool added;
        return sg_store_ledger_add(j->store, r->source, r->job, r->number, r->id, r->received_at,
                                   &added, err);
    }
    if (j->nrecent == j->caprecent) {
        j->caprecent = j->caprecent ? j->caprecent * 2 : 256;
        j->recent = sg_xrealloc(j->recent, j->caprecent * sizeof *j->recent);
    }
    if (j->nrecent == 0)
        j->recent_since = sg_mono_s();
    *at = j->nrecent;
    /* received_at: what the journal's retention deletes events by */
    j->recent[j->nrecent++] =
        (recent_build){names_dup(&j->recent_names, r->source), names_dup(&j->recent_names, r->job),
                       r->number, r->id, r->received_at};
    return 0;
}

/* Drops the recent builds from index `from` on (written, or rolled back;
 * their names go with the last of them). */
static void ledger_forget(sg_journal *j, size_t from)
{
    if (from == 0)
        names_free(&j->recent_names);
    j->nrecent = from;
    sg_u64map_reset(&j->recent_ix);
    for (size_t i = 0; i < j->nrecent; i++) {
        bool created;
        const recent_build *b = &j->recent[i];
        *(size_t *)sg_u64map_put(&j->recent_ix, sg_hash_build(b->source, b->job, b->number),
                                 &created) = i;
    }
}

/* The recent builds become the ones being written, sorted (neighbours in
 * the ledger's b-tree go in together); the mark will be the last event so
 * far. Between transactions, when none is being written. */
static void ledger_cut(sg_journal *j)
{
    j->flushing = j->recent;
    j->nflushing = j->nrecent;
    j->flushed = 0;
    j->flushing_upto = j->last_id;
    j->flushing_since = sg_mono_s();
    j->flushing_oldest = j->nrecent ? j->recent[0].received_at : 0;
    qsort(j->flushing, j->nflushing, sizeof *j->flushing, sort_cmp);
    j->flushing_names = j->recent_names;
    j->recent_names.head = NULL;
    j->recent = NULL;
    j->nrecent = j->caprecent = 0;
    sg_u64map_reset(&j->recent_ix);
}

static void flushing_free(sg_journal *j)
{
    names_free(&j->flushing_names);
    free(j->flushing);
    j->flushing = NULL;
    j->nflushing = j->flushed = 0;
}

/* Writes builds being written from *pos on, at most n of them, in the open
 * transaction, and the mark once they are all there; *pos moves past them.
 * The caller keeps *pos only if the transaction commits. */
static int ledger_write_chunk(sg_journal *j, size_t *pos, size_t n, sg_error *err)
{
    int rc = 0;
    size_t end = *pos + n < j->nflushing ? *pos + n : j->nflushing;
    for (; rc == 0 && *pos < end; (*pos)++) {
        const recent_build *b = &j->flushing[*pos];
        bool added;
        rc = sg_store_ledger_add(j->store, b->source, b->job, b->number, b->event_id,
                                 b->received_at, &added, err);
    }
    if (rc == 0 && *pos == j->nflushing)
        rc = sg_store_ledger_set_mark(j->store, j->flushing_upto, err);
    return rc;
}

/* Writes every build accepted so far, in the open transaction, and the mark
 * at the last event (a prune, the stop). The caller forgets them once the
 * transaction commits. */
static int ledger_write_all(sg_journal *j, sg_error *err)
{
    size_t pos = j->flushed;
    int rc = ledger_write_chunk(j, &pos, j->nflushing, err);
    for (size_t i = 0; rc == 0 && i < j->nrecent; i++) {
        const recent_build *b = &j->recent[i];
        bool added;
        rc = sg_store_ledger_add(j->store, b->source, b->job, b->number, b->event_id,
                                 b->received_at, &added, err);
    }
    return rc ? rc : sg_store_ledger_set_mark(j->store, j->last_id, err);
}

static bool ledger_due(const sg_journal *j)
{
    return j->nrecent >= LEDGER_AT ||
           (j->nrecent && sg_mono_s() - j->recent_since >= LEDGER_EVERY_S);
}

/* Between transactions: cuts the recent builds when due, and writes those
 * being written a chunk per transaction while no op waits (the writer's idle
 * time; a long write would hold every answer). Chunks go into the ops'
 * transactions instead (txn_end) when the writer finds no idle time. */
static void ledger_idle_work(sg_journal *j)
{
    for (;;) {
        if (!j->flushing && ledger_due(j))
            ledger_cut(j);
        if (!j->flushing)
            return;
        pthread_mutex_lock(&j->lock);
        bool waiting = j->queue != NULL || j->stopping;
        pthread_mutex_unlock(&j->lock);
        if (waiting)
            return;
        sg_error err;
        size_t pos = j->flushed;
        int rc = sg_store_begin(j->store, &err);
        if (rc == 0)
            rc = ledger_write_chunk(j, &pos, LEDGER_CHUNK, &err);
        if (rc == 0)
            rc = sg_store_commit(j->store, &err);
        if (rc) {
            sg_store_rollback(j->store);
            return; /* tried again after the next transaction */
        }
        j->flushed = pos;
        if (j->flushed == j->nflushing)
            flushing_free(j);
    }
}

/* ---- applying writes ---- */

/* The event of op is a second delivery of a build the ledger has. */
static void as_replay(sg_jop *op, int64_t now)
{
    sg_event_row *r = &op->row;
    op->duplicate = true;
    r->kind = sg_kind_name(SG_KIND_REPLAY);
    r->reason = sg_reason_name(SG_REASON_LEDGER);
    r->last_error = NULL;
    if (op->observe) { /* forwarded all the same, as if the gate were not there */
        r->would = sg_event_state_name(SG_STATE_SUPPRESSED);
    } else {
        r->state = SG_STATE_SUPPRESSED;
        r->next_attempt_at = 0;
        r->done_at = now;
        r->qgen = 0;
    }
}

/* An array of *cap elements of size, grown to hold n (BATCH_MAX at least). */
static void *reserve(void *p, size_t *cap, size_t n, size_t size)
{
    if (n <= *cap)
        return p;
    *cap = n > BATCH_MAX ? n : BATCH_MAX;
    return sg_xrealloc(p, *cap * size);
}

/* On a store other gates write too, the memory of one writer tells
 * nothing: the ledger's key decides, in this transaction. An add that
 * meets another replica's uncommitted row waits for its commit (then loses)
 * or rollback (then wins), so two replicas that take one build at the same
 * moment forward it once. The loser's event becomes a replay. A run of
 * events goes to the store together (sg_store_events_journal: one round
 * trip to PostgreSQL for the whole run). */
static int insert_shared(sg_journal *j, sg_jop *first, size_t n, sg_error *err)
{
    j->ins = reserve(j->ins, &j->capins, n, sizeof *j->ins);
    sg_jop *op = first;
    for (size_t i = 0; i < n; i++, op = op->next) {
        op->duplicate = op->claimed = false;
        j->ins[i] = (sg_event_insert){
            .row = &op->row, .ledger = op->ledger, .claimer = op->claim ? j->replica : NULL};
    }
    int rc = sg_store_events_journal(j->store, j->ins, n, err);
    op = first;
    for (size_t i = 0; rc == 0 && i < n; i++, op = op->next) {
        j->last_id = op->row.id;
        op->claimed = j->ins[i].claimed;
        if (!op->ledger || j->ins[i].added)
            continue;
        as_replay(op, op->at);
        op->claimed = op->claimed && op->observe; /* suppressed: nothing to deliver */
        rc = sg_store_event_replayed(j->store, &op->row, err);
    }
    return rc;
}

static int apply_one(sg_journal *j, sg_jop *op, sg_error *err)
{
    sg_store *s = j->store;
    sg_event_row *r = &op->row;
    int64_t now = op->at; /* the submitter's clock: the writer reads none */
    switch (op->type) {
    case SG_JOP_INSERT: {
        /* The ledger has the last word on "accepted before" (classify.h): a
         * second delivery of a build is caught here, also when both ride in
         * one batch, and goes in as a suppressed replay. */
        op->duplicate = false;
        if (j->shared)
            return insert_shared(j, op, 1, err);
        bool seen = false;
        int rc = op->ledger ? ledger_seen(j, r, &seen, err) : 0;
        if (rc)
            return rc;
        if (seen)
            as_replay(op, now);
        if ((rc = sg_store_event_insert(s, r, err)))
            return rc;
        j->last_id = r->id;
        return op->ledger && !seen ? ledger_remember(j, r, err) : 0;
    }
    case SG_JOP_UPDATE:
        return sg_store_event_update(s, r->id, r->state, r->attempts, r->next_attempt_at,
                                     r->last_error, r->done_at, err);
    case SG_JOP_RELEASE:
    case SG_JOP_DROP: {
        /* a release or drop in chunks acts on what was held when it began,
         * not on what a storm holds while it runs */
        int rc = op->hold.max_id ? 0 : sg_store_last_event_id(s, &op->hold.max_id, err);
        if (rc)
            return rc;
        if (op->type == SG_JOP_DROP)
            return sg_store_held_drop(s, &op->hold, op->reason, now, &op->dropped, &op->more, err);
        return sg_store_held_release(s, &op->hold, op->newest_only, op->qgen, now, &op->released,
                                     &op->superseded, &op->more, err);
    }
    case SG_JOP_AUDIT:
        return 0;
    case SG_JOP_PROBE:
        return sg_store_probe_write(s, err);
    case SG_JOP_PRUNE: {
        /* builds not yet in the ledger whose events it may delete (a short
         * keep_events) go in first, in this transaction: after a crash
         * those events would not be there to bring them back */
        int64_t oldest = j->flushing ? j->flushing_oldest : 0;
        if (j->nrecent && (!oldest || j->recent[0].received_at < oldest))
            oldest = j->recent[0].received_at;
        if (oldest && oldest < op->prune_before)
            j->ledger_now = true;
        return sg_store_events_prune(s, op->prune_before, PRUNE_CHUNK, &op->prune_cursor,
                                     &op->pruned, &op->more, err);
    }
    case SG_JOP_EPISODE:
        if (op->episode_id == 0) {
            int rc = sg_store_episode_open(s, op->at, op->cause, op->detail, &op->episode_id, err);
            if (rc == 0 && op->ended_at) /* one that ends as it opens */
                rc = sg_store_episode_update(s, op->episode_id, op->ended_at, NULL, err);
            return rc;
        }
        return sg_store_episode_update(s, op->episode_id, op->ended_at, op->detail, err);
    }
    return sg_error_set(err, SG_EINVAL, "unknown journal operation %d", (int)op->type);
}

static void apply(sg_journal *j, sg_jop *op, sg_error *err, int *rc)
{
    if (*rc)
        return;
    *rc = apply_one(j, op, err);
    if (*rc == 0 && op->action)
        *rc = sg_store_audit(j->store, op->at, op->actor ? op->actor : "stormguard", op->action,
                             op->detail, err);
}

/* One transaction: ops are applied as the writer takes them, and committed
 * together. */
typedef struct txn {
    sg_error err;
    int rc;
    double started;
    size_t kept;     /* recent builds of committed transactions */
    int64_t last_id; /* the last event id before it */
    sg_jop *ops, **tail;
} txn;

static void txn_begin(sg_journal *j, txn *t)
{
    memset(&t->err, 0, sizeof t->err);
    t->started = sg_mono_s();
    t->kept = j->nrecent;
    t->last_id = j->last_id;
    t->ops = NULL;
    t->tail = &t->ops;
    j->ledger_now = false;
    t->rc = sg_store_begin(j->store, &t->err);
}

/* Applies a list of ops (after a failure, only collects them: they fail with
 * the transaction). */
static bool plain_insert(const sg_jop *op)
{
    return op && op->type == SG_JOP_INSERT && !op->action;
}

static bool plain_update(const sg_jop *op)
{
    return op && op->type == SG_JOP_UPDATE && !op->action;
}

/* A run of n delivery outcomes from first, in one go (sg_store_events_update:
 * one round trip to PostgreSQL, where one per outcome was the writer's
 * largest cost at full load). */
static int update_run(sg_journal *j, sg_jop *first, size_t n, sg_error *err)
{
    j->outs = reserve(j->outs, &j->capouts, n, sizeof *j->outs);
    sg_jop *op = first;
    for (size_t i = 0; i < n; i++, op = op->next) {
        const sg_event_row *r = &op->row;
        j->outs[i] = (sg_event_outcome){.id = r->id,
                                        .state = r->state,
                                        .attempts = r->attempts,
                                        .next_attempt_at = r->next_attempt_at,
                                        .done_at = r->done_at,
                                        .last_error = r->last_error};
    }
    int rc = sg_store_events_update(j->store, j->outs, n, err);
    op = first;
    for (size_t i = 0; i < n; i++, op = op->next)
        op->followers = rc == 0 && j->outs[i].followers;
    return rc;
}

/* A shared store's transaction locks the jobs of its first events first,
 * waiting for them in one order; the events it takes on later lock theirs
 * without waiting (sg_store_events_lock_jobs), *got false if one was
 * another transaction's. */
static int lock_jobs(sg_journal *j, sg_jop *ops, bool wait, bool *got, sg_error *err)
{
    *got = true;
    size_t n = 0;
    for (sg_jop *o = ops; o; o = o->next)
        n += o->type == SG_JOP_INSERT;
    j->ins = reserve(j->ins, &j->capins, n, sizeof *j->ins);
    n = 0;
    for (sg_jop *o = ops; o; o = o->next)
        if (o->type == SG_JOP_INSERT)
            j->ins[n++] = (sg_event_insert){.row = &o->row};
    return n ? sg_store_events_lock_jobs(j->store, j->ins, n, wait, got, err) : 0;
}

/* Applies ops (a shared store's, their jobs locked already but for the
 * first ops of the transaction: lock). */
static void txn_apply(sg_journal *j, txn *t, sg_jop *ops, bool lock)
{
    *t->tail = ops;
    bool got;
    if (j->shared && lock && t->rc == 0)
        t->rc = lock_jobs(j, ops, true, &got, &t->err);
    for (sg_jop *op = ops; op;) {
        size_t n = 0, m = 0;
        for (sg_jop *o = op; j->shared && plain_insert(o) && n < BATCH_MAX; o = o->next)
            n++;
        for (sg_jop *o = op; plain_update(o) && m < BATCH_MAX; o = o->next)
            m++;
        if (n > 1) { /* a run of events, in one go */
            if (t->rc == 0)
                t->rc = insert_shared(j, op, n, &t->err);
        } else if (m > 1 || (m == 1 && j->shared)) { /* outcomes likewise (shared: followers) */
            if (t->rc == 0)
                t->rc = update_run(j, op, m, &t->err);
            n = m;
        } else {
            apply(j, op, &t->err, &t->rc);
            n = 1;
        }
        while (n--) {
            t->tail = &op->next;
            op = op->next;
        }
    }
}

static void txn_end(sg_journal *j, txn *t)
{
    int rc = t->rc;
    size_t pos = j->flushed;
    if (rc == 0 && j->ledger_now) {
        rc = ledger_write_all(j, &t->err);
    } else if (rc == 0 && j->flushing && sg_mono_s() - j->flushing_since >= LEDGER_EVERY_S) {
        /* no idle time to write them in: a chunk rides with the ops,
         * bigger than what they add to recent */
        rc = ledger_write_chunk(j, &pos, LEDGER_CHUNK + (j->nrecent - t->kept), &t->err);
    }
    if (rc == 0)
        rc = sg_store_commit(j->store, &t->err);
    if (rc) {
        sg_store_rollback(j->store);
        ledger_forget(j, t->kept); /* their events are not journaled either */
        j->last_id = t->last_id;
    } else if (j->ledger_now) {
        flushing_free(j);
        ledger_forget(j, 0);
    } else {
        j->flushed = pos;
        if (j->flushing && j->flushed == j->nflushing)
            flushing_free(j);
    }
    double took = sg_mono_s() - t->started;
    for (sg_jop *op = t->ops; op; op = op->next) {
        op->status = rc;
        op->commit_s = took;
        if (rc) {
            size_t n = strnlen(t->err.msg, sizeof op->errmsg - 1);
            memcpy(op->errmsg, t->err.msg, n);
            op->errmsg[n] = '\0';
        }
    }
}

/* The WAL. Passive checkpoints copy it into the database without stopping
 * commits, but under a steady stream of commits they never copy all of it,
 * and SQLite starts the WAL file over only after a checkpoint that did: left
 * alone, it grows without end (gigabytes in minutes at full load, and the
 * shared-memory index with it). So:
 *  - every WAL_KICK_FRAMES pages the writer wakes the checkpointer, whose
 *    passive checkpoint copies and syncs what is there, commits going on;
 *  - past WAL_RESET_FRAMES the writer, between two batches and once a passive
 *    checkpoint that began after that point is done, copies the little that
 *    came since and syncs it (a restart checkpoint), and its next commit
 *    writes the WAL from its start again. Commits wait for that part only:
 *    a few ms here, where emptying the WAL at once used to hold every answer
 *    for 30 to 90 ms (half the WAL to copy, two syncs and a truncate);
 *  - past WAL_BOUND_FRAMES (no such pass came) it does it anyway.
 * The file is kept and overwritten, not truncated and grown again;
 * journal_size_limit cuts it back to WAL_RESET_FRAMES after a long reader
 * let it grow. */
#define WAL_KICK_FRAMES 2048   /* 8 MiB of 4 KiB pages */
#define WAL_RESET_FRAMES 8192  /* 32 MiB */
#define WAL_BOUND_FRAMES 16384 /* 64 MiB: half of SG_JOURNAL_HEADROOM_BYTES */

#define WAL_RETRY_MS 100 /* after a reader kept it from starting over */

static void kick_checkpointer(sg_journal *j)
{
    pthread_mutex_lock(&j->lock);
    j->ckpt_kicked = true;
    pthread_cond_signal(&j->ckpt_wake);
    pthread_mutex_unlock(&j->lock);
}

static void bound_wal(sg_journal *j)
{
    int frames = sg_store_wal_frames(j->store);
    if (frames < j->kicked_at) /* the WAL started over */
        j->kicked_at = 0;
    if (frames - j->kicked_at >= WAL_KICK_FRAMES) {
        j->kicked_at = frames;
        kick_checkpointer(j);
    }
    if (frames < WAL_RESET_FRAMES)
        return;
    pthread_mutex_lock(&j->lock);
    int64_t passes = j->ckpt_passes;
    pthread_mutex_unlock(&j->lock);
    if (!j->reset_after) {
        j->reset_after = passes + 1; /* a pass that begins from now */
        kick_checkpointer(j);
    }
    double now = sg_mono_s();
    if ((passes < j->reset_after && frames < WAL_BOUND_FRAMES) || now < j->wal_retry_at)
        return;
    /* A long read (a held summary, a rewarm reading its snapshot) keeps the
     * WAL from starting over; the checkpoint does not wait for it, so the
     * commits do not either: the WAL grows past the bound until it ends. */
    sg_error err;
    if (sg_store_checkpoint(j->store, SG_CHECKPOINT_RESTART, &frames, &err))
        sg_log_limited(&j->wal_log, SG_LOG_WARN, "journal", "cannot start the WAL over: %s",
                       err.msg);
    if (frames >= 0) {
        j->reset_after = 0;
        j->wal_retry_at = 0;
    } else {
        j->wal_retry_at = now + WAL_RETRY_MS / 1000.0;
    }
}

/* Waits (lock held) for a write until LINGER_GAP_US pass without one, and
 * until at most. */
static void linger(sg_journal *j, const struct timespec *until)
{
    struct timespec gap;
    clock_gettime(CLOCK_REALTIME, &gap);
    gap.tv_nsec += LINGER_GAP_US * 1000;
    if (gap.tv_nsec >= 1000000000) {
        gap.tv_sec++;
        gap.tv_nsec -= 1000000000;
    }
    bool sooner =
        gap.tv_sec < until->tv_sec || (gap.tv_sec == until->tv_sec && gap.tv_nsec < until->tv_nsec);
    pthread_cond_timedwait(&j->wake, &j->lock, sooner ? &gap : until);
}

/* Takes the queue (lock held); how many ops it had. */
static sg_jop *take(sg_journal *j, int *n)
{
    sg_jop *ops = j->queue;
    *n = j->queued;
    j->queued = 0;
    j->queue = NULL;
    j->queue_tail = &j->queue;
    return ops;
}

static void *writer(void *arg)
{
    sg_journal *j = arg;
    pthread_mutex_lock(&j->lock);
    for (;;) {
        bool slept = false;
        while (!j->queue && !j->stopping) {
            pthread_cond_wait(&j->wake, &j->lock);
            slept = true;
        }
        if (!j->queue && j->stopping)
            break;
        /* The ops are applied as they come, while the loop reads the next
         * requests, and the transaction commits once the queue is empty:
         * the answers wait for the commit, not for all of the statements.
         * Woken by a first write, the transaction stays open LINGER_US for
         * the writes the loop is reading at this moment (they share its
         * WAL pages); back from a commit, the writes that waited for it
         * commit as soon as they are applied. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        slept = slept && j->linger;
        until.tv_nsec += slept ? LINGER_US * 1000 : 0;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        int n, total = 0;
        sg_jop *ops = take(j, &n);
        pthread_mutex_unlock(&j->lock);
        txn t;
        txn_begin(j, &t);
        if (j->shared && slept) {
            /* A shared store's statement costs its fixed 0.4 ms (executor
             * start, the checks and index predicates prepared) whatever its
             * rows: the writes the loop is reading join the first one
             * rather than a second, and no lingering follows it. */
            pthread_mutex_lock(&j->lock);
            sg_jop **tail = &ops;
            while (*tail)
                tail = &(*tail)->next;
            while (n < LINGER_UNTIL && !j->stopping) {
                if (!j->queue)
                    linger(j, &until);
                if (!j->queue)
                    break;
                int m;
                *tail = take(j, &m);
                n += m;
                while (*tail)
                    tail = &(*tail)->next;
            }
            pthread_mutex_unlock(&j->lock);
            slept = false;
        }
        /* a shared store's first ops wait for their jobs' locks, in one
         * order; the ops it takes on lock theirs without waiting, and go
         * back to the queue's front for the next transaction when one is
         * another's (lock_jobs): no two transactions wait for each other */
        bool first = true;
        for (;;) {
            bool got = true;
            if (j->shared && !first && t.rc == 0) {
                int rc = lock_jobs(j, ops, false, &got, &t.err);
                t.rc = rc ? rc : t.rc;
            }
            if (!got) {
                pthread_mutex_lock(&j->lock);
                sg_jop *last = ops;
                while (last->next)
                    last = last->next;
                last->next = j->queue;
                if (!j->queue)
                    j->queue_tail = &last->next;
                j->queue = ops;
                j->queued += n;
                break;
            }
            txn_apply(j, &t, ops, first);
            first = false;
            total += n;
            pthread_mutex_lock(&j->lock);
            if (t.rc || total >= BATCH_MAX || j->stopping)
                break;
            if (!j->queue && total < LINGER_UNTIL && slept)
                linger(j, &until);
            if (!j->queue)
                break;
            ops = take(j, &n);
            pthread_mutex_unlock(&j->lock);
        }
        pthread_mutex_unlock(&j->lock);
        txn_end(j, &t);

        pthread_mutex_lock(&j->lock);
        *j->done_tail = t.ops;
        while (*j->done_tail)
            j->done_tail = &(*j->done_tail)->next;
        pthread_mutex_unlock(&j->lock);
        uv_async_send(&j->async);
        bound_wal(j); /* after the batch is answered: its answers do not wait for it */
        ledger_idle_work(j);
        pthread_mutex_lock(&j->lock);
    }
    pthread_mutex_unlock(&j->lock);
    /* the recent builds go into the ledger before the store closes (were the
     * process killed instead, the next start would add them) */
    if (j->nrecent || j->flushing) {
        sg_error err;
        int rc = sg_store_begin(j->store, &err);
        if (rc == 0)
            rc = ledger_write_all(j, &err);
        if (rc == 0)
            rc = sg_store_commit(j->store, &err);
        if (rc) {
            sg_store_rollback(j->store);
            sg_log(SG_LOG_WARN, "journal",
                   "writing %zu builds into the ledger at stop: %s (the next start adds them)",
                   j->nrecent + j->nflushing - j->flushed, err.msg);
        }
    }
    flushing_free(j);
    ledger_forget(j, 0);
    free(j->recent);
    sg_u64map_clear(&j->recent_ix);
    sg_u64map_clear(&j->newest);
    return NULL;
}

#define CHECKPOINT_EVERY_MS 500

static void *checkpointer(void *arg)
{
    sg_journal *j = arg;
    pthread_mutex_lock(&j->lock);
    while (!j->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += CHECKPOINT_EVERY_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000;
        until.tv_nsec %= 1000000000;
        while (!j->ckpt_kicked && !j->stopping)
            if (pthread_cond_timedwait(&j->ckpt_wake, &j->lock, &until) != 0)
                break;
        j->ckpt_kicked = false;
        if (j->stopping)
            break;
        pthread_mutex_unlock(&j->lock);
        sg_error err;
        if (j->ckpt_store && sg_store_checkpoint(j->ckpt_store, SG_CHECKPOINT_PASSIVE, NULL, &err))
            sg_log_limited(&j->ckpt_log, SG_LOG_WARN, "journal",
                           "checkpoint (copying the WAL into the database): %s", err.msg);
        pthread_mutex_lock(&j->lock);
        j->ckpt_passes++;
    }
    pthread_mutex_unlock(&j->lock);
    sg_error err;
    /* the writer has stopped: leave an empty WAL behind */
    if (j->ckpt_store)
        sg_store_checkpoint(j->ckpt_store, SG_CHECKPOINT_TRUNCATE, NULL, &err);
    return NULL;
}

static void on_closed(uv_handle_t *h)
{
    sg_journal *j = h->data;
    void (*stopped)(void *) = j->stopped;
    void *ud = j->stopped_ud;
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->wake);
    pthread_cond_destroy(&j->ckpt_wake);
    free(j->ins);
    free(j->outs);
    free(j);
    if (stopped)
        stopped(ud);
}

static void on_async(uv_async_t *a)
{
    sg_journal *j = a->data;
    pthread_mutex_lock(&j->lock);
    sg_jop *list = j->done;
    j->done = NULL;
    j->done_tail = &j->done;
    pthread_mutex_unlock(&j->lock);
    while (list) {
        sg_jop *op = list;
        list = op->next;
        op->next = NULL;
        j->depth--;
        op->done(op);
    }
    if (j->stopping && j->depth == 0 && !uv_is_closing((uv_handle_t *)&j->async)) {
        pthread_join(j->thread, NULL);
        pthread_join(j->checkpointer, NULL);
        sg_store_free(j->store);
        sg_store_free(j->ckpt_store);
        uv_close((uv_handle_t *)&j->async, on_closed);
    }
}

static void remember_newest(void *ud, const char *source, const char *job, int64_t number)
{
    sg_journal *j = ud;
    bool fresh;
    int64_t *top = sg_u64map_put(&j->newest, sg_hash_job(source, job), &fresh);
    if (fresh || number > *top)
        *top = number;
}

int sg_journal_start(uv_loop_t *loop, const char *path, const sg_journal_opts *o, sg_journal **out,
                     sg_error *err)
{
    static const sg_journal_opts defaults = {0};
    o = o ? o : &defaults;
    sg_sync_mode sync = o->sync;
    sg_journal *j = sg_xcalloc(1, sizeof *j);
    j->clock = o->clock ? o->clock : &sg_clock_real;
    j->linger = !o->no_linger;
    j->replica = o->replica;
    /* A bigger cache lets the many small commits of a busy gate rewrite hot
     * pages (the table's tail, the ledger) in memory; checkpoints are the
     * checkpointer thread's. */
    sg_store_options opt = {.synchronous = sync,
                            .cache_kib = 8192,
                            .checkpoint_pages = -1,
                            .eager_wait = true,
                            .wal_limit_kib = WAL_RESET_FRAMES * 4,
                            .keyed = o->keyed};
    int rc = sg_store_open(path, &opt, &j->store, err);
    if (rc) {
        free(j);
        return rc;
    }
    j->shared = sg_store_shared(j->store);
    sg_store_set_replica(j->store, o->replica);
    /* builds of events a crash kept out of the ledger (see above); a
     * shared store's are written with their events, but an earlier
     * version's single daemon wrote them in bulk */
    int64_t added;
    if ((rc = sg_store_ledger_catch_up(j->store, &added, err)) ||
        (rc = sg_store_last_event_id(j->store, &j->last_id, err))) {
        sg_store_free(j->store);
        free(j);
        return rc;
    }
    if (added)
        sg_log(SG_LOG_INFO, "journal",
               "added %lld builds to the ledger: accepted before the last run stopped without "
               "writing them",
               (long long)added);
    sg_u64map_init(&j->recent_ix, sizeof(size_t));
    sg_u64map_init(&j->newest, sizeof(int64_t));
    if (!j->shared && (rc = sg_store_ledger_newest(j->store, remember_newest, j, err))) {
        sg_u64map_clear(&j->newest);
        sg_store_free(j->store);
        free(j);
        return rc;
    }
    /* a shared store (PostgreSQL) checkpoints by itself: no second
     * connection, and the checkpointer thread only waits for the stop */
    sg_store_options ckpt = {
        .synchronous = sync, .checkpoint_pages = -1, .wal_limit_kib = WAL_RESET_FRAMES * 4};
    if (!sg_store_shared(j->store) && (rc = sg_store_open(path, &ckpt, &j->ckpt_store, err))) {
        sg_u64map_clear(&j->newest);
        sg_store_free(j->store);
        free(j);
        return rc;
    }
    j->loop = loop;
    j->queue_tail = &j->queue;
    j->done_tail = &j->done;
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->wake, NULL);
    pthread_cond_init(&j->ckpt_wake, NULL);
    int r = uv_async_init(loop, &j->async, on_async);
    if (r != 0) {
        sg_u64map_clear(&j->newest);
        sg_store_free(j->store);
        sg_store_free(j->ckpt_store);
        free(j);
        return sg_error_set(err, SG_EIO, "starting the journal: %s", uv_strerror(r));
    }
    j->async.data = j;
    if ((r = pthread_create(&j->thread, NULL, writer, j)) != 0) {
        sg_u64map_clear(&j->newest);
        sg_store_free(j->store);
        sg_store_free(j->ckpt_store);
        j->stopping = true;
        uv_close((uv_handle_t *)&j->async, on_closed);
        return sg_error_set(err, SG_EIO, "starting the journal thread: %s", strerror(r));
    }
    if ((r = pthread_create(&j->checkpointer, NULL, checkpointer, j)) != 0) {
        pthread_mutex_lock(&j->lock);
        j->stopping = true;
        pthread_cond_signal(&j->wake);
        pthread_mutex_unlock(&j->lock);
        pthread_join(j->thread, NULL);
        sg_store_free(j->store);
        sg_store_free(j->ckpt_store);
        uv_close((uv_handle_t *)&j->async, on_closed);
        return sg_error_set(err, SG_EIO, "starting the checkpoint thread: %s", strerror(r));
    }
    *out = j;
    return 0;
}

void sg_journal_submit(sg_journal *j, sg_jop *op)
{
    assert(!j->stopping);
    if (!op->at)
        op->at = sg_clock_ms(j->clock);
    op->next = NULL;
    op->status = 0;
    j->depth++;
    pthread_mutex_lock(&j->lock);
    *j->queue_tail = op;
    j->queue_tail = &op->next;
    if (++j->queued == 1 || j->queued >= LINGER_UNTIL)
        pthread_cond_signal(&j->wake);
    pthread_mutex_unlock(&j->lock);
}

int sg_journal_depth(const sg_journal *j)
{
    return j->depth;
}

void sg_journal_stop(sg_journal *j, void (*stopped)(void *ud), void *ud)
{
    j->stopped = stopped;
    j->stopped_ud = ud;
    pthread_mutex_lock(&j->lock);
    j->stopping = true;
    pthread_cond_signal(&j->wake);
    pthread_cond_signal(&j->ckpt_wake);
    pthread_mutex_unlock(&j->lock);
    /* the async callback finishes the stop once everything is reported */
    uv_async_send(&j->async);
}
