/* The writer thread and its group commit (journal.h).
 *
 * Loop thread                      writer thread
 *   submit(op) -> queue, signal      wait for ops; take them all
 *                                    BEGIN; apply each; COMMIT (or ROLLBACK:
 *                                    then every op of the batch fails)
 *   async cb <- done list, async     move the batch to the done list
 *   op->done(op) for each
 *
 * A failed batch fails all its ops: the gate answers 503 for each and the
 * poller retries, so nothing is half-written.
 *
 * Checkpoints (copying the WAL into the database, with an fsync) run on a
 * third thread with its own connection, never inside a commit: done by the
 * committing connection, as SQLite does by default, one commit in a thousand
 * would take tens of milliseconds and every answer waiting on it with it. */
#include "stormguard/journal.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "stormguard/classify.h"
#include "stormguard/util.h"

#define LINGER_US 250    /* longest a write waits for company */
#define LINGER_UNTIL 64  /* no lingering once this many writes wait */

struct sg_journal {
    uv_loop_t *loop;
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
    bool wal_warned;             /* writer: said once that the WAL cannot be emptied */
    double wal_retry_at;         /* writer: no attempt to empty it before (sg_mono_s) */
    void (*stopped)(void *ud);
    void *stopped_ud;
};

#define PRUNE_CHUNK 5000 /* events looked at per retention transaction */

static int apply_one(sg_store *s, sg_jop *op, sg_error *err)
{
    sg_event_row *r = &op->row;
    int64_t now = sg_now_ms();
    switch (op->type) {
    case SG_JOP_INSERT: {
        /* The store's ledger has the last word on "accepted before"
         * (classify.h): a second delivery of a build is caught here, also
         * when both ride in one batch. */
        op->duplicate = false;
        int rc = sg_store_event_insert(s, r, err);
        bool added = true;
        if (rc || !op->ledger ||
            (rc = sg_store_ledger_add(s, r->source, r->job, r->number, r->id, &added, err)) ||
            added)
            return rc;
        /* the ledger had the build: the event is a replay after all (one
         * statement per event on the common path, this one more on the rare) */
        op->duplicate = true;
        r->kind = sg_kind_name(SG_KIND_REPLAY);
        r->reason = sg_reason_name(SG_REASON_LEDGER);
        r->state = "suppressed";
        r->last_error = NULL;
        r->done_at = now;
        r->qgen = 0;
        return sg_store_event_reclassify(s, r->id, r->kind, r->reason, r->state, r->done_at,
                                         err);
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
            return sg_store_held_drop(s, &op->hold, op->reason, now, &op->dropped, &op->more,
                                      err);
        return sg_store_held_release(s, &op->hold, op->newest_only, op->qgen, now,
                                     &op->released, &op->superseded, &op->more, err);
    }
    case SG_JOP_AUDIT:
        return 0;
    case SG_JOP_PRUNE:
        return sg_store_events_prune(s, op->prune_before, PRUNE_CHUNK, &op->prune_cursor,
                                     &op->pruned, &op->more, err);
    case SG_JOP_EPISODE:
        if (op->episode_id == 0)
            return sg_store_episode_open(s, op->at, op->cause, op->detail, &op->episode_id,
                                         err);
        return sg_store_episode_update(s, op->episode_id, op->ended_at, op->detail, err);
    }
    return sg_error_set(err, SG_EINVAL, "unknown journal operation %d", (int)op->type);
}

static void apply(sg_journal *j, sg_jop *op, sg_error *err, int *rc)
{
    if (*rc)
        return;
    *rc = apply_one(j->store, op, err);
    if (*rc == 0 && op->action)
        *rc = sg_store_audit(j->store, op->actor ? op->actor : "stormguard", op->action,
                             op->detail, err);
}

static void commit_batch(sg_journal *j, sg_jop *batch)
{
    sg_error err = {0};
    double started = sg_mono_s();
    int rc = sg_store_begin(j->store, &err);
    for (sg_jop *op = batch; op; op = op->next)
        apply(j, op, &err, &rc);
    if (rc == 0)
        rc = sg_store_commit(j->store, &err);
    if (rc)
        sg_store_rollback(j->store);
    double took = sg_mono_s() - started;
    for (sg_jop *op = batch; op; op = op->next) {
        op->status = rc;
        op->commit_s = took;
        if (rc) {
            size_t n = strnlen(err.msg, sizeof op->errmsg - 1);
            memcpy(op->errmsg, err.msg, n);
            op->errmsg[n] = '\0';
        }
    }
}

/* The checkpointer's passive checkpoints copy the WAL into the database
 * without stopping commits, but under a steady stream of commits they never
 * copy all of it, and SQLite starts the WAL file over only after a checkpoint
 * that did: left alone, the WAL grows without end (gigabytes in minutes at
 * full load, and the shared-memory index with it). So once it passes
 * WAL_RESET_FRAMES pages, the writer itself, between two batches, finishes
 * the copy and empties the file. The passive checkpoints have copied nearly
 * everything by then, so the pause is short. */
#define WAL_RESET_FRAMES 8192 /* 32 MiB of 4 KiB pages */

#define WAL_RETRY_MS 100      /* after a reader kept it from emptying the WAL */

static void bound_wal(sg_journal *j)
{
    if (sg_store_wal_frames(j->store) < WAL_RESET_FRAMES)
        return;
    double now = sg_mono_s();
    if (now < j->wal_retry_at)
        return;
    /* A long read (a held summary, a rewarm reading its snapshot) keeps the
     * WAL from being emptied; the checkpoint does not wait for it, so the
     * commits do not either: the WAL grows past the bound until it ends. */
    sg_error err;
    int frames;
    if (sg_store_checkpoint(j->store, SG_CHECKPOINT_TRUNCATE, &frames, &err)) {
        if (!j->wal_warned)
            fprintf(stderr, "stormguard: journal: cannot empty the WAL: %s\n", err.msg);
        j->wal_warned = true;
    } else {
        j->wal_warned = false;
    }
    j->wal_retry_at = frames == 0 ? 0 : now + WAL_RETRY_MS / 1000.0;
}

static void *writer(void *arg)
{
    sg_journal *j = arg;
    pthread_mutex_lock(&j->lock);
    for (;;) {
        while (!j->queue && !j->stopping)
            pthread_cond_wait(&j->wake, &j->lock);
        if (!j->queue && j->stopping)
            break;
        /* a short linger when few writes wait: more of them share one commit
         * (fewer WAL page writes per event) for at most LINGER_US of latency */
        if (j->queued < LINGER_UNTIL && !j->stopping) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += LINGER_US * 1000;
            if (until.tv_nsec >= 1000000000) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000;
            }
            while (j->queued < LINGER_UNTIL && !j->stopping)
                if (pthread_cond_timedwait(&j->wake, &j->lock, &until) != 0)
                    break;
        }
        sg_jop *batch = j->queue;
        j->queued = 0;
        j->queue = NULL;
        j->queue_tail = &j->queue;
        pthread_mutex_unlock(&j->lock);

        commit_batch(j, batch);

        pthread_mutex_lock(&j->lock);
        *j->done_tail = batch;
        while (*j->done_tail)
            j->done_tail = &(*j->done_tail)->next;
        pthread_mutex_unlock(&j->lock);
        uv_async_send(&j->async);
        bound_wal(j); /* after the batch is answered: its answers do not wait for it */
        pthread_mutex_lock(&j->lock);
    }
    pthread_mutex_unlock(&j->lock);
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
        pthread_cond_timedwait(&j->ckpt_wake, &j->lock, &until);
        if (j->stopping)
            break;
        pthread_mutex_unlock(&j->lock);
        sg_error err;
        if (sg_store_checkpoint(j->ckpt_store, SG_CHECKPOINT_PASSIVE, NULL, &err))
            fprintf(stderr, "stormguard: journal checkpoint: %s\n", err.msg);
        pthread_mutex_lock(&j->lock);
    }
    pthread_mutex_unlock(&j->lock);
    sg_error err;
    /* the writer has stopped: leave an empty WAL behind */
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

int sg_journal_start(uv_loop_t *loop, const char *path, sg_sync_mode sync, sg_journal **out,
                     sg_error *err)
{
    sg_journal *j = sg_xcalloc(1, sizeof *j);
    /* A bigger cache lets the many small commits of a busy gate rewrite hot
     * pages (the table's tail, the ledger) in memory; checkpoints are the
     * checkpointer thread's. */
    sg_store_options opt = {
        .synchronous = sync, .cache_kib = 8192, .checkpoint_pages = -1, .eager_wait = true};
    int rc = sg_store_open(path, &opt, &j->store, err);
    if (rc) {
        free(j);
        return rc;
    }
    sg_store_options ckpt = {.synchronous = sync, .checkpoint_pages = -1};
    if ((rc = sg_store_open(path, &ckpt, &j->ckpt_store, err))) {
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
        sg_store_free(j->store);
        sg_store_free(j->ckpt_store);
        free(j);
        return sg_error_set(err, SG_EIO, "starting the journal: %s", uv_strerror(r));
    }
    j->async.data = j;
    if ((r = pthread_create(&j->thread, NULL, writer, j)) != 0) {
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
