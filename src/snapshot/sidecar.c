/* The daemon's snapshot and rewarm runners (sidecar.h).
 *
 * A job is one heap object holding its uv_work_t, a deep copy of the options
 * and the result. The work function runs on a threadpool thread and touches
 * nothing but the job: it opens its own Redis connection and store, does the
 * same work as `stormguard snapshot` / `restore` (snapshot.c), and closes both
 * before returning, so no connection outlives the job or crosses threads. The
 * after-work callback runs on the loop thread, calls done and frees the job.
 *
 * The URL is parsed and the password read from the environment at the call,
 * on the caller's thread: a bad URL fails at once instead of in a callback,
 * and getenv never runs on a pool thread. */
#include "stormguard/snapshot/sidecar.h"

#include <assert.h>
#include <stdio.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "stormguard/redis/rconn.h"
#include "stormguard/redis/redis_url.h"
#include "stormguard/snapshot/snapshot.h"
#include "stormguard/store/store.h"
#include "stormguard/store/episodes.h"
#include "stormguard/store/snapshots.h"
#include "stormguard/base/clock.h"
#include "stormguard/base/util.h"

_Static_assert(sizeof(((sg_sidecar_result *)0)->suspect_reason) == SG_SUSPECT_REASON_MAX,
               "sidecar and snapshot suspect reasons differ in size");

typedef enum { JOB_SNAPSHOT, JOB_REWARM } job_kind;

typedef struct job {
    uv_work_t req;
    job_kind kind;
    sg_redis_url url;
    int connect_timeout_ms, command_timeout_ms;
    char *db_path;
    sg_profile_kind profile;
    char *prefix;
    int64_t scan_count, keep, max_age_s;
    sg_snapshot_method method;
    int suspect_below_pct;
    const sg_clock *clock;
    char *reason;        /* snapshot */
    int64_t snapshot_id; /* rewarm: requested, 0 for the last good one */
    sg_sidecar_done done;
    void *ud;
    sg_sidecar_result res;
} job;

static void job_free(job *j)
{
    sg_redis_url_close(&j->url);
    free(j->db_path);
    free(j->prefix);
    free(j->reason);
    free(j);
}

/* Opens the job's store and Redis connection; on failure nothing is open. */
static int job_open(job *j, sg_store **store, sg_rconn *conn)
{
    sg_error *err = &j->res.err;
    int rc = sg_store_open(j->db_path, NULL, store, err);
    if (rc)
        return rc;
    /* a Cluster node is fine: snapshot and restore cover every master */
    if ((rc = sg_rconn_open(conn, &j->url, j->connect_timeout_ms, j->command_timeout_ms, err)) ==
            0 &&
        strcmp(conn->mode, "cluster") && (rc = sg_rconn_check_standalone(conn, err)))
        sg_rconn_close(conn);
    if (rc) {
        sg_store_free(*store);
        *store = NULL;
    }
    return rc;
}

/* A job's buffers (pipelined replies, SQLite's page cache) came from this
 * worker thread's malloc arena; glibc keeps freed arena memory mapped, so a
 * daemon that snapshots every minute would carry its peak for good. */
static void release_memory(void)
{
    malloc_trim(0);
}

static void snapshot_work(uv_work_t *req)
{
    job *j = req->data;
    sg_sidecar_result *r = &j->res;
    double started = sg_mono_s();
    sg_store *store = NULL;
    sg_rconn conn;
    if ((r->rc = job_open(j, &store, &conn)))
        goto out;
    sg_snapshot_opts o = {.method = j->method,
                          .profile = j->profile,
                          .prefix = j->prefix,
                          .reason = j->reason,
                          .scan_count = j->scan_count,
                          .suspect_below_pct = j->suspect_below_pct,
                          .clock = j->clock};
    sg_snapshot_result snap;
    r->rc = sg_snapshot_take(&conn, store, &o, &snap, &r->err);
    if (r->rc == 0) {
        r->snapshot_id = snap.id;
        r->keys = snap.keys;
        r->profile_keys = snap.profile_keys;
        r->suspect = snap.suspect;
        memcpy(r->suspect_reason, snap.suspect_reason, sizeof r->suspect_reason);
        r->rc = sg_store_snapshot_prune(store, (int)j->keep, j->max_age_s, sg_clock_ms(j->clock),
                                        &r->pruned, &r->err);
        if (r->rc)
            sg_error_prefix(&r->err, "snapshot %lld was taken, but pruning failed",
                            (long long)snap.id);
    }
    sg_rconn_close(&conn);
    sg_store_free(store);
out:
    r->seconds = sg_mono_s() - started;
    release_memory();
}

/* Restores the profile's keys of snapshot r->snapshot_id (resolved first when
 * 0) and records the rewarm in the audit log. */
static int rewarm(job *j, sg_store *store, sg_rconn *conn)
{
    sg_sidecar_result *r = &j->res;
    char *pattern = sg_profile_pattern(j->profile, j->prefix ? j->prefix : "igor");
    int rc = 0;
    r->snapshot_id = j->snapshot_id;
    if (r->snapshot_id == 0) {
        int64_t ignored;
        rc = sg_store_last_good(store, conn->redacted, conn->db, pattern, &r->snapshot_id, &ignored,
                                &r->err);
        if (rc == 0 && r->snapshot_id == 0)
            rc = sg_error_set(
                &r->err, SG_ENOTFOUND, "no good %s snapshot of %s in %s to rewarm from",
                sg_profile_kind_name(j->profile), conn->redacted, sg_store_path(store));
    }
    sg_strlist match = {0};
    sg_strlist_push(&match, pattern);
    free(pattern);
    sg_restore_opts o = {.match = &match, .clock = j->clock};
    sg_restore_result rr = {0};
    if (rc == 0)
        rc = sg_restore_run(conn, store, r->snapshot_id, &o, &rr, &r->err);
    sg_strlist_clear(&match);
    if (rc == 0) {
        r->restored = rr.restored;
        r->skipped_existing = rr.skipped_existing;
        r->skipped_expired = rr.skipped_expired;
        r->failed = rr.failed;
        r->keys = rr.restored + rr.skipped_existing + rr.skipped_expired + rr.failed;
        char *detail =
            sg_xasprintf("snapshot=%lld restored=%lld skipped=%lld failed=%lld "
                         "redis=%s",
                         (long long)r->snapshot_id, (long long)rr.restored,
                         (long long)rr.skipped_existing, (long long)rr.failed, conn->redacted);
        rc = sg_store_audit(store, sg_clock_ms(j->clock), "daemon", "rewarm", detail, &r->err);
        free(detail);
    }
    if (rc == 0 && rr.failed)
        rc = sg_error_set(&r->err, SG_EREDIS,
                          "rewarm from snapshot %lld: %lld keys could not "
                          "be restored (first reason: %s)",
                          (long long)r->snapshot_id, (long long)rr.failed,
                          rr.reason_count ? rr.reasons[0].reason : "unknown");
    sg_restore_result_close(&rr);
    return rc;
}

static void rewarm_work(uv_work_t *req)
{
    job *j = req->data;
    double started = sg_mono_s();
    sg_store *store = NULL;
    sg_rconn conn;
    if ((j->res.rc = job_open(j, &store, &conn)) == 0) {
        j->res.rc = rewarm(j, store, &conn);
        sg_rconn_close(&conn);
        sg_store_free(store);
    }
    j->res.seconds = sg_mono_s() - started;
    release_memory();
}

static void after_work(uv_work_t *req, int status)
{
    job *j = req->data;
    if (status == UV_ECANCELED && j->res.rc == 0)
        j->res.rc = sg_error_set(&j->res.err, SG_EIO, "the %s job was cancelled",
                                 j->kind == JOB_SNAPSHOT ? "snapshot" : "rewarm");
    j->res.err.code = j->res.rc;
    j->done(j->ud, &j->res);
    job_free(j);
}

/* Copies o into a new job and queues it. */
static int submit(struct uv_loop_s *loop, job_kind kind, const sg_sidecar_opts *o,
                  const char *reason, int64_t snapshot_id, sg_sidecar_done done, void *ud,
                  sg_error *err)
{
    assert(loop && o && done);
    if (o->profile == SG_PROFILE_NONE)
        return sg_error_set(err, SG_EUSAGE,
                            "the sidecar needs a profile (igor) to know which "
                            "keys to snapshot and rewarm");
    if (!o->db_path || !o->redis_url)
        return sg_error_set(err, SG_EUSAGE, "the sidecar needs a redis URL and a store path");
    job *j = sg_xcalloc(1, sizeof *j);
    int rc = sg_redis_url_parse(o->redis_url, &j->url, err);
    if (rc == 0 && (rc = sg_redis_url_configure(&j->url, o->tls, o->sentinel_password, err)))
        sg_redis_url_close(&j->url);
    if (rc) {
        free(j);
        return rc;
    }
    sg_redis_url_password_from_env(&j->url);
    j->kind = kind;
    j->connect_timeout_ms = o->connect_timeout_ms;
    j->command_timeout_ms = o->command_timeout_ms;
    j->db_path = sg_xstrdup(o->db_path);
    j->profile = o->profile;
    j->prefix = o->prefix ? sg_xstrdup(o->prefix) : NULL;
    j->scan_count = o->scan_count;
    j->method = o->method;
    j->keep = o->keep;
    j->max_age_s = o->max_age_s;
    j->clock = o->clock ? o->clock : &sg_clock_real;
    j->suspect_below_pct = o->suspect_below_pct;
    j->reason = reason ? sg_xstrdup(reason) : NULL;
    j->snapshot_id = snapshot_id;
    j->done = done;
    j->ud = ud;
    j->req.data = j;
    j->res.profile_keys = -1;
    rc = uv_queue_work(loop, &j->req, kind == JOB_SNAPSHOT ? snapshot_work : rewarm_work,
                       after_work);
    if (rc) {
        job_free(j);
        return sg_error_set(err, SG_EIO, "queueing a %s job: %s",
                            kind == JOB_SNAPSHOT ? "snapshot" : "rewarm", uv_strerror(rc));
    }
    return 0;
}

int sg_sidecar_snapshot(struct uv_loop_s *loop, const sg_sidecar_opts *o, const char *reason,
                        sg_sidecar_done done, void *ud, sg_error *err)
{
    return submit(loop, JOB_SNAPSHOT, o, reason ? reason : "periodic", 0, done, ud, err);
}

int sg_sidecar_rewarm(struct uv_loop_s *loop, const sg_sidecar_opts *o, int64_t snapshot_id,
                      sg_sidecar_done done, void *ud, sg_error *err)
{
    return submit(loop, JOB_REWARM, o, NULL, snapshot_id, done, ud, err);
}
