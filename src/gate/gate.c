/* The webhook gate daemon (gate.h): wiring, on one libuv loop.
 *
 *   poller -> http (the gate's listener) -> core -> journal -> answer
 *   core -> forwarder -> notifier -> core (the result, journaled)
 *   Redis -> watch -> guard (wipes); sidecar (snapshots, rewarm) -> store
 *   operator -> http (the admin listener) -> admin -> core, guard, hold
 *
 * The periodic snapshots and the rewarm run on libuv's thread pool with
 * their own Redis and store connections (sidecar.h); a snapshot that is
 * committed becomes the baseline at the core's next reload.
 *
 * Stopping (SIGTERM, SIGINT): the core takes nothing new, the listeners
 * close (requests waiting for their commit are answered first), and the
 * forwarder lets its deliveries in flight end and reports them; once all
 * three are done the core commits what is queued and closes the journal,
 * and the last handles close. */
#include "stormguard/gate/gate.h"

#include <assert.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "stormguard/base/clock.h"
#include "stormguard/base/log.h"
#include "stormguard/gate/forward.h"
#include "stormguard/gate/http.h"
#include "stormguard/gate/storm.h"
#include "stormguard/redis/watchset.h"
#include "stormguard/snapshot/sidecar.h"
#include "stormguard/store/events.h"
#include "stormguard/store/store.h"

#define TICK_MS 1000

struct sg_gate {
    uv_loop_t *loop;
    const sg_config *cfg;
    const sg_clock *clock; /* the real one: this is the daemon */
    sg_core *core;
    sg_http *http; /* the poller's listener */
    sg_forward *fwd;
    sg_watchset *watch;
    uint64_t refused; /* the listener's refusals, kept once it stopped */
    bool redis_up, snapshotting;
    bool rewarming, rewarm_again; /* one rewarm at a time; another wipe meanwhile: once more */
    int64_t last_snapshot_at;
    int64_t good_snapshot_at, good_snapshot_keys; /* the newest good one taken here */
    struct proc_job *proc_job;                    /* a read of /proc on the thread pool */
    sg_store_claim *store_claim;                  /* one daemon per store; NULL until taken */
    struct watcher_job *watcher_job;              /* asking for the watcher's lock */
    int64_t next_watcher_at;
    bool replica_leads;      /* replicas: the watcher's lock decides which one leads */
    bool replica_watches;    /* replicas: [redis] watch is on, the leader watches */
    bool leading;            /* replicas: this one holds the lock */
    int64_t unwatched_since; /* replicas: the leader's watch has had no Redis link since (0: up) */
    sg_procstat proc;
    bool proc_known, proc_failed;
    char sample_glob[256]; /* the profile's keys, for the watcher's sample */
    uv_timer_t tick;
    bool stopping;
    int stop_waits; /* parts whose stop callback is pending */
    void (*stopped)(void *ud), (*closed)(void *ud);
    void *stopped_ud, *closed_ud;
};

sg_core *sg_gate_core(sg_gate *g)
{
    return g->core;
}

void sg_gate_info_get(const sg_gate *g, sg_gate_info *out)
{
    *out = (sg_gate_info){.stopping = g->stopping,
                          .downstream = g->cfg->downstream,
                          .inflight = sg_forward_inflight(g->fwd),
                          .backlog = sg_forward_backlog(g->fwd),
                          .refused = g->http ? sg_http_refused(g->http) : g->refused,
                          .watched = g->watch != NULL,
                          .watched_elsewhere = g->replica_watches && !g->watch,
                          .redis_up = g->redis_up};
    if (g->watch)
        sg_watchset_report_get(g->watch, &out->watch);
    out->watchset = g->watch;
    out->snapshot_good_at_ms = g->good_snapshot_at;
    out->snapshot_good_keys = g->good_snapshot_keys;
    /* the periodic snapshots need a profile and the watcher's link (on_tick) */
    const sg_config *c = g->cfg;
    out->snapshot_interval_s =
        c->watch && c->profile != SG_PROFILE_NONE ? c->snapshot_interval_s : 0;
    out->process_known = g->proc_known;
    out->process = g->proc;
}

/* ---- the process's figures (/metrics), read off the loop ---- */

typedef struct proc_job {
    uv_work_t work;
    sg_gate *g; /* NULL once the gate was freed: the job frees itself */
    int rc;
    sg_error err;
    sg_procstat ps;
} proc_job;

static void proc_work(uv_work_t *w)
{
    proc_job *j = w->data;
    j->rc = sg_procstat_read(&j->ps, &j->err);
}

static void proc_done(uv_work_t *w, int status)
{
    proc_job *j = w->data;
    sg_gate *g = j->g;
    if (g) {
        g->proc_job = NULL;
        if (!status && !j->rc) {
            g->proc = j->ps;
            g->proc_known = true;
        } else if (!g->proc_failed) { /* once: it would fail every second */
            g->proc_failed = true;
            sg_log(SG_LOG_WARN, "admin", "process metrics unavailable: %s",
                   status ? uv_strerror(status) : j->err.msg);
        }
    }
    free(j);
}

/* One read of /proc at a time, each tick: a scrape only copies the last. */
static void sample_process(sg_gate *g)
{
    if (g->proc_job || g->stopping)
        return;
    proc_job *j = sg_xcalloc(1, sizeof *j);
    j->g = g;
    j->work.data = j;
    if (uv_queue_work(g->loop, &j->work, proc_work, proc_done)) {
        free(j);
        return;
    }
    g->proc_job = j;
}

/* ---- the poller's requests ---- */

/* {"error": msg}: the poller's answer when its request is not taken. */
static void reply_error(sg_http_req *req, int status, const char *msg, int retry_after)
{
    json_t *doc = json_pack("{s:s}", "error", msg);
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    sg_http_reply(req, status, "application/json", body, strlen(body), retry_after);
    free(body);
}

static void on_answer(void *ud, const sg_answer *a)
{
    sg_http_req *req = ud;
    if (a->status != 200) {
        reply_error(req, a->status, a->error ? a->error : "", a->retry_after);
        return;
    }
    /* kind and state are fixed names (classify.h, the schema): no escaping */
    char reply[128];
    int n = snprintf(reply, sizeof reply, "{\"id\":%lld,\"kind\":\"%s\",\"state\":\"%s\"}",
                     (long long)a->id, sg_kind_name(a->kind), sg_event_state_name(a->state));
    sg_http_reply(req, 200, "application/json", reply, (size_t)n, 0);
}

/* The request's headers the downstream should see, "name: value\n" each. */
static void collect_headers(const sg_gate *g, const sg_http_req *req, sg_buf *out)
{
    for (size_t i = 0; i < sg_http_header_count(req); i++) {
        sg_str name, value;
        sg_http_header_at(req, i, &name, &value);
        if (!sg_strlist_match(&g->cfg->forward_headers, name.p, name.len))
            continue;
        if (memchr(value.p, '\n', value.len) || memchr(value.p, '\r', value.len))
            continue;
        sg_buf_append(out, name.p, name.len);
        sg_buf_append(out, ": ", 2);
        sg_buf_append(out, value.p, value.len);
        sg_buf_append(out, "\n", 1);
    }
    sg_buf_append(out, "", 1);
}

static void on_request(void *ud, sg_http_req *req)
{
    sg_gate *g = ud;
    sg_str method = sg_http_method(req), path = sg_http_path(req), body = sg_http_body(req);
    sg_buf headers = {0};
    collect_headers(g, req, &headers);
    sg_request rq = {.method = method.p,
                     .method_len = method.len,
                     .path = path.p,
                     .path_len = path.len,
                     .headers = headers.p,
                     .body = body.p,
                     .body_len = body.len};
    sg_error err;
    int rc = sg_core_submit(g->core, &rq, on_answer, req, &err);
    sg_buf_free(&headers);
    if (rc == SG_EBUSY)
        reply_error(req, 503, err.msg, 1);
    else if (rc)
        reply_error(req, 400, err.msg, 0);
}

/* ---- deliveries ---- */

static void deliver(void *ud, sg_fwd_item *it)
{
    sg_gate *g = ud;
    sg_forward_push(g->fwd, it);
}

static size_t deliver_backlog(void *ud)
{
    sg_gate *g = ud;
    return sg_forward_backlog(g->fwd);
}

static void on_forward_result(void *ud, sg_fwd_item *it, sg_fwd_outcome outcome, long status,
                              const char *error, double seconds)
{
    sg_gate *g = ud;
    sg_core_delivered(g->core, it, outcome, status, error, seconds);
}

/* ---- Redis: the watcher, snapshots, rewarm ---- */

static void sidecar_opts(const sg_gate *g, sg_sidecar_opts *o)
{
    const sg_config *c = g->cfg;
    *o = (sg_sidecar_opts){.redis_url = c->redis_url,
                           .tls = &c->redis_tls,
                           .sentinel_password = c->sentinel_password,
                           .connect_timeout_ms = (int)c->connect_timeout_ms,
                           .command_timeout_ms = (int)(c->redis_timeout_s * 1000),
                           .db_path = sg_config_store(c),
                           .profile = c->profile,
                           .prefix = c->prefix,
                           .scan_count = c->scan_count,
                           .method = sg_snapshot_method_named(c->snapshot_method),
                           .keep = c->keep,
                           .max_age_s = c->max_age_s,
                           .suspect_below_pct = (int)c->suspect_below_pct,
                           .clock = g->clock};
}

static void on_sample(void *ud, int64_t snapshot_id, const char *const *keys, size_t n)
{
    sg_gate *g = ud;
    (void)snapshot_id;
    if (g->watch)
        sg_watchset_set_sample(g->watch, keys, n);
}

/* Hands the watcher keys of snapshot id to look for (a wipe of the poller's
 * keys alone leaves the canary). */
static void arm_watch(sg_gate *g, int64_t id)
{
    if (!g->watch || !id || g->stopping)
        return;
    (void)sg_core_sample(g->core, id, g->cfg->profile == SG_PROFILE_NONE ? NULL : g->sample_glob,
                         on_sample, g); /* not stopping */
}

/* A newer baseline: watched unless it predates the last wipe (core.h). */
static void on_baseline(void *ud, int64_t snapshot_id, bool after_last_wipe)
{
    if (after_last_wipe)
        arm_watch(ud, snapshot_id);
}

typedef struct announce {
    sg_gate *g;
    int64_t started_at;       /* epoch ms: the snapshot is of Redis from then on */
    sg_gate_announce_fn done; /* the flush announce waiting for its snapshot, or NULL */
    void *ud;
    char *actor, *why; /* the flush announce's, for guard mode and the audit */
    int64_t wait_ms;   /* how long its caller waits for the answer; 0: no limit */
} announce;

/* The announce is confirmed: guard mode on, the wipe it causes expected, an
 * audit row. Only now: a refused or failed announce leaves the gate as it
 * was, so the next wipe is not taken for the flush that never came. */
static void announce_finish(announce *a, const sg_announce_result *res)
{
    if (a->done)
        a->done(a->ud, res);
    free(a->actor);
    free(a->why);
    free(a);
}

typedef struct confirming {
    announce *a;
    sg_announce_result res;
} confirming;

static void on_announced(void *ud, int status, const char *error)
{
    confirming *k = ud;
    announce *a = k->a;
    if (status) {
        /* the replica that watches Redis would take the flush for a wipe */
        k->res.status = status;
        snprintf(k->res.error, sizeof k->res.error,
                 "the other replicas could not be told of the flush: %s", error ? error : "");
        sg_log(SG_LOG_ERROR, "guard", "flush announce by %s not confirmed: %s", a->actor,
               k->res.error);
    } else {
        (void)sg_core_audit(a->g->core, a->actor, "flush announced", a->why, NULL, NULL);
    }
    announce_finish(a, &k->res);
    free(k);
}

/* Guard mode on and the wipe expected, told to the other replicas first
 * when the store is shared; then the answer. */
static void confirm_announce(sg_gate *g, announce *a, const sg_announce_result *res)
{
    confirming *k = sg_xcalloc(1, sizeof *k);
    k->a = a;
    k->res = *res;
    sg_core_announce(g->core, a->why, on_announced, k);
}

static void on_snapshot_done(void *ud, const sg_sidecar_result *r)
{
    announce *a = ud;
    sg_gate *g = a->g;
    g->snapshotting = false;
    sg_announce_result res = {.snapshot_id = r->snapshot_id, .suspect = r->suspect};
    if (r->rc) {
        sg_log(SG_LOG_ERROR, "guard", "snapshot failed: %s", r->err.msg);
        res.status = r->rc;
        snprintf(res.error, sizeof res.error, "the pre-flush snapshot failed: %s", r->err.msg);
    } else if (r->suspect) {
        sg_log(SG_LOG_WARN, "guard", "snapshot %lld is suspect and not a baseline: %s",
               (long long)r->snapshot_id, r->suspect_reason);
    } else {
        sg_log(SG_LOG_INFO, "guard", "snapshot %lld: %lld keys in %.2fs", (long long)r->snapshot_id,
               (long long)r->keys, r->seconds);
        g->good_snapshot_at = a->started_at;
        g->good_snapshot_keys = r->keys;
        /* a snapshot that began before a wipe names keys that are gone */
        sg_guard_report gr;
        sg_guard_report_get(sg_core_guard(g->core), &gr);
        if (gr.last_wipe_at_ms < a->started_at)
            arm_watch(g, r->snapshot_id);
        sg_core_reload(g->core);
    }
    int64_t took = sg_clock_ms(g->clock) - a->started_at;
    if (a->why && !res.status) {
        if (g->stopping) { /* the daemon will not be there to hold the replays */
            res.status = SG_EBUSY;
            snprintf(res.error, sizeof res.error, "stormguard is shutting down");
        } else if (a->wait_ms && took > a->wait_ms) {
            res.status = SG_EBUSY;
            snprintf(res.error, sizeof res.error,
                     "the pre-flush snapshot took %lld ms, longer than the flush waits (%lld ms): "
                     "not confirmed, guard mode not entered",
                     (long long)took, (long long)a->wait_ms);
            sg_log(SG_LOG_WARN, "guard", "flush announce by %s not confirmed: %s", a->actor,
                   res.error);
        } else {
            confirm_announce(g, a, &res);
            return;
        }
    }
    announce_finish(a, &res);
}

/* Starts a snapshot; a (a flush announce's, or NULL for a periodic one) is
 * what waits for it, freed either way. */
static int take_snapshot(sg_gate *g, const char *reason, announce *a, sg_error *err)
{
    sg_sidecar_opts o;
    sidecar_opts(g, &o);
    if (!a)
        a = sg_xcalloc(1, sizeof *a);
    a->g = g;
    a->started_at = sg_clock_ms(g->clock);
    int rc = sg_sidecar_snapshot(g->loop, &o, reason, on_snapshot_done, a, err);
    if (rc) {
        free(a->actor);
        free(a->why);
        free(a);
        return rc;
    }
    g->snapshotting = true;
    return 0;
}

static void start_rewarm(sg_gate *g);

static void on_rewarm_done(void *ud, const sg_sidecar_result *r)
{
    sg_gate *g = ud;
    g->rewarming = false;
    char detail[SG_ERRMSG_MAX + 128];
    if (r->rc) {
        snprintf(detail, sizeof detail, "rewarm failed: %s", r->err.msg);
        sg_log(SG_LOG_ERROR, "guard", "%s", detail);
    } else {
        snprintf(detail, sizeof detail,
                 "rewarmed %lld keys from snapshot %lld in %.0f ms (%lld existed, %lld expired, "
                 "%lld failed)",
                 (long long)r->restored, (long long)r->snapshot_id, r->seconds * 1000,
                 (long long)r->skipped_existing, (long long)r->skipped_expired,
                 (long long)r->failed);
        sg_log(SG_LOG_INFO, "guard", "%s", detail);
        arm_watch(g, r->snapshot_id); /* the keys are back: watch them */
    }
    if (!g->stopping)
        sg_guard_rewarmed(sg_core_guard(g->core), detail);
    if (g->rewarm_again && !g->stopping) {
        g->rewarm_again = false;
        start_rewarm(g); /* another wipe came while it ran (a Cluster's other master) */
    }
}

/* Restores the profile's missing keys from the last good snapshot, on the
 * thread pool; a wipe while one runs has it run once more after. */
static void start_rewarm(sg_gate *g)
{
    if (g->rewarming) {
        g->rewarm_again = true;
        return;
    }
    sg_sidecar_opts o;
    sidecar_opts(g, &o);
    sg_error err;
    if (sg_sidecar_rewarm(g->loop, &o, 0, on_rewarm_done, g, &err))
        sg_log(SG_LOG_ERROR, "guard", "cannot start the rewarm: %s", err.msg);
    else
        g->rewarming = true;
}

static void rewarm_unless_announced(void *ud)
{
    sg_gate *g = ud;
    sg_guard_report r;
    sg_guard_report_get(sg_core_guard(g->core), &r);
    if (g->stopping)
        return;
    if (r.expect_wipe_until_ms) {
        sg_log(SG_LOG_INFO, "guard", "the wipe is a flush announced at another replica: no rewarm");
        return;
    }
    start_rewarm(g);
}

static void on_wipe(void *ud, sg_wipe_cause cause, const char *detail, int64_t detected_at)
{
    sg_gate *g = ud;
    if (g->stopping)
        return;
    bool expected =
        sg_guard_wipe(sg_core_guard(g->core), sg_wipe_cause_name(cause), detail, detected_at);
    /* observe mode changes nothing in Redis either: the replays it counts
     * are the ones that come */
    if (!g->cfg->rewarm || expected || !strcmp(g->cfg->gate_mode, "observe"))
        return;
    /* one of several replicas: the flush may have been announced to
     * another, which told the store before it answered */
    if (g->replica_watches) {
        sg_core_read_modes(g->core, rewarm_unless_announced, g);
        return;
    }
    start_rewarm(g);
}

/* A restart or failover that kept the data: recorded, nothing changes. */
static void on_change(void *ud, sg_wipe_cause cause, const char *detail)
{
    sg_gate *g = ud;
    if (!g->stopping)
        sg_guard_server_changed(sg_core_guard(g->core), sg_wipe_cause_name(cause), detail);
}

static void on_link(void *ud, bool up, const char *detail)
{
    sg_gate *g = ud;
    g->redis_up = up;
    sg_log(up ? SG_LOG_INFO : SG_LOG_WARN, "guard", "Redis %s: %s", up ? "up" : "down", detail);
}

/* Why an announce would be refused now, in res; false if it would not. */
static bool announce_refused(const sg_gate *g, sg_announce_result *res)
{
    const char *why = g->stopping       ? "stormguard is shutting down"
                      : g->snapshotting ? "a snapshot is being taken: announce again shortly"
                      : g->watch && !g->redis_up
                          ? "Redis is unreachable from the daemon: it cannot take the pre-flush "
                            "snapshot"
                          : NULL;
    if (!why)
        return false;
    res->status = g->stopping || g->snapshotting ? SG_EBUSY : SG_EREDIS;
    res->retry_after = g->stopping ? 1 : 2;
    snprintf(res->error, sizeof res->error, "%s", why);
    return true;
}

void sg_gate_flush_check(const sg_gate *g, sg_announce_result *res)
{
    memset(res, 0, sizeof *res);
    (void)announce_refused(g, res);
}

void sg_gate_flush_announce(sg_gate *g, const char *actor, const char *reason, int64_t wait_ms,
                            sg_gate_announce_fn done, void *ud)
{
    sg_announce_result res = {0};
    if (announce_refused(g, &res)) {
        done(ud, &res);
        return;
    }
    announce *a = sg_xcalloc(1, sizeof *a);
    a->done = done;
    a->ud = ud;
    a->actor = sg_xstrdup(actor);
    a->wait_ms = wait_ms;
    a->why =
        sg_xasprintf("flush announced by %s%s%s", actor, reason ? ": " : "", reason ? reason : "");
    sg_error err;
    if (take_snapshot(g, "pre-flush", a, &err)) {
        res.status = err.code;
        snprintf(res.error, sizeof res.error, "cannot take the pre-flush snapshot: %s", err.msg);
        done(ud, &res);
    }
}

/* ---- the watcher among replicas ----
 *
 * Of replicas sharing a store only one leads: it watches Redis, takes the
 * periodic snapshots and runs the drain (sg_core_set_leading). It is the
 * holder of the store's watcher lock (store.h, sg_store_claim_watcher),
 * asked for also with [redis] watch off. The others ask every WATCHER_EVERY_MS,
 * and the holder checks that it still holds it (it goes with the claim's
 * connection): a watcher that died is followed within a few seconds. A
 * watcher that cannot reach Redis for HANDOVER_MS (its network, its
 * DNS, a firewall the others do not have) gives the lock up and asks again
 * only HANDOVER_PAUSE_MS later, so that a replica that reaches Redis
 * watches meanwhile; were Redis down for every replica, the lock goes
 * round and each tries. */

#define WATCHER_EVERY_MS 2000
#define HANDOVER_MS 10000
#define HANDOVER_PAUSE_MS (3 * WATCHER_EVERY_MS)

typedef struct watcher_job {
    uv_work_t work;
    sg_gate *g; /* NULL once the gate was freed: the job frees itself */
    sg_store_claim *claim;
    int rc;
    bool give_up, held;
    sg_error err;
} watcher_job;

static int start_watch(sg_gate *g, sg_error *err);

static void watcher_work(uv_work_t *w)
{
    watcher_job *j = w->data;
    j->rc = sg_store_claim_watcher(j->claim, j->give_up, &j->held, &j->err);
}

static void watcher_done(uv_work_t *w, int status)
{
    watcher_job *j = w->data;
    sg_gate *g = j->g;
    if (g)
        g->watcher_job = NULL;
    bool held = !status && !j->rc && j->held;
    if (!g || g->stopping) {
        /* nothing to change */
    } else if (status || j->rc) {
        /* the store unreachable says nothing of who holds it: a watcher
         * goes on watching (its lock, if the connection is gone, is lost
         * and the next look tells) */
        sg_log(SG_LOG_WARN, "guard", "asking for the watcher's lock: %s",
               status ? uv_strerror(status) : j->err.msg);
    } else {
        if (held != g->leading) {
            g->leading = held;
            sg_core_set_leading(g->core, held);
            if (held)
                sg_log(SG_LOG_INFO, "guard", "this replica holds the watcher's lock: it %s",
                       g->replica_watches
                           ? "watches Redis, takes the periodic snapshots and runs the drain"
                           : "runs the drain");
            else if (j->give_up)
                sg_log(SG_LOG_WARN, "guard",
                       "Redis unreachable from this replica for %d s: it gives the watcher's "
                       "lock up for another replica to watch (it asks again in %d s)",
                       HANDOVER_MS / 1000, HANDOVER_PAUSE_MS / 1000);
            else
                sg_log(SG_LOG_WARN, "guard",
                       "this replica lost the watcher's lock with its connection: another "
                       "replica %s now",
                       g->replica_watches ? "watches Redis" : "runs the drain");
        }
        if (held && g->replica_watches && !g->watch) {
            sg_error err;
            if (start_watch(g, &err))
                sg_log(SG_LOG_ERROR, "guard", "%s", err.msg);
        } else if (!held && g->watch) {
            sg_watchset_stop(g->watch, NULL, NULL);
            g->watch = NULL;
            g->redis_up = false;
        }
    }
    free(j);
}

static void maybe_watch(sg_gate *g, int64_t now)
{
    if (!g->replica_leads || g->watcher_job || g->stopping)
        return;
    bool watching = g->leading && g->watch;
    if (!watching || g->redis_up)
        g->unwatched_since = 0;
    else if (!g->unwatched_since)
        g->unwatched_since = now;
    bool give_up = watching && g->unwatched_since && now - g->unwatched_since >= HANDOVER_MS;
    if (now < g->next_watcher_at && !give_up)
        return;
    g->next_watcher_at = now + (give_up ? HANDOVER_PAUSE_MS : WATCHER_EVERY_MS);
    g->unwatched_since = give_up ? 0 : g->unwatched_since;
    watcher_job *j = sg_xcalloc(1, sizeof *j);
    j->give_up = give_up;
    j->g = g;
    j->claim = g->store_claim;
    j->work.data = j;
    if (uv_queue_work(g->loop, &j->work, watcher_work, watcher_done)) {
        free(j);
        return;
    }
    g->watcher_job = j;
}

/* ---- the tick: the core's, and periodic snapshots ---- */

static void on_tick(uv_timer_t *t)
{
    sg_gate *g = t->data;
    sg_core_tick(g->core);
    sample_process(g);
    maybe_watch(g, sg_clock_ms(g->clock));
    int64_t now = sg_clock_ms(g->clock);
    int64_t every = g->cfg->snapshot_interval_s * 1000;
    if (every && g->cfg->profile != SG_PROFILE_NONE && g->redis_up && !g->snapshotting &&
        !g->stopping && now - g->last_snapshot_at >= every) {
        g->last_snapshot_at = now;
        sg_error err;
        if (take_snapshot(g, "periodic", NULL, &err))
            sg_log(SG_LOG_ERROR, "guard", "cannot start the periodic snapshot: %s", err.msg);
    }
}

/* ---- start and stop ---- */

static void on_core_closed(void *ud)
{
    sg_gate *g = ud;
    if (g->closed)
        g->closed(g->closed_ud);
}

/* The listener is closed, so every answered event is committed (answers
 * are sent after commits), and the deliveries in flight have ended and had
 * their results submitted. */
static void on_part_stopped(void *ud)
{
    sg_gate *g = ud;
    if (--g->stop_waits > 0)
        return;
    if (g->stopped)
        g->stopped(g->stopped_ud);
}

static void on_forward_stopped(void *ud)
{
    sg_gate *g = ud;
    g->fwd = NULL;
    on_part_stopped(g);
}

void sg_gate_stop(sg_gate *g, void (*stopped)(void *ud), void *ud)
{
    assert(!g->stopping);
    g->stopping = true;
    g->stopped = stopped;
    g->stopped_ud = ud;
    if (g->core)
        sg_core_stop(g->core);
    if (g->tick.loop)
        uv_close((uv_handle_t *)&g->tick, NULL);
    if (g->watch) {
        sg_watchset_stop(g->watch, NULL, NULL); /* not to be used after this call */
        g->watch = NULL;
    }
    g->stop_waits = 1 + (g->fwd != NULL) + (g->http != NULL);
    if (g->fwd)
        sg_forward_stop(g->fwd, on_forward_stopped, g);
    if (g->http) {
        /* the listener is freed before its stop ends, and the admin side
         * may ask for the gate's info while the forwarder drains */
        g->refused = sg_http_refused(g->http);
        sg_http_stop(g->http, on_part_stopped, g);
        g->http = NULL;
    }
    on_part_stopped(g); /* the one for the call itself */
}

void sg_gate_close(sg_gate *g, void (*closed)(void *ud), void *ud)
{
    g->closed = closed;
    g->closed_ud = ud;
    if (g->core)
        sg_core_close(g->core, on_core_closed, g);
    else if (closed)
        closed(ud);
}

bool sg_gate_stopping(const sg_gate *g)
{
    return g->stopping;
}

int sg_gate_core_opts(const sg_config *c, sg_core_opts *o, sg_error *err)
{
    *o = (sg_core_opts){.db_path = sg_config_store(c),
                        .synchronous = c->synchronous,
                        .clock = &sg_clock_real,
                        .build_paths = &c->build_paths,
                        .guard_ms = c->guard_duration_s * 1000,
                        .cooldown_ms = c->storm_cooldown_s * 1000,
                        .drain_rate = c->drain_rate,
                        .keep_events_ms = c->keep_events_s * 1000,
                        .observe = !strcmp(c->gate_mode, "observe")};
    o->events.generic = (sg_event_pointers){c->source_pointer, c->job_pointer, c->number_pointer,
                                            c->timestamp_pointer};
    o->events.notification_source = c->notification_source;
    if (sg_on_storm_parse(c->on_storm, &o->on_storm))
        return sg_error_set(err, SG_EUSAGE, "[storm] on_storm must be hold, drain or drop");
    sg_storm_opts *so = &o->storm;
    sg_storm_opts_default(so);
    so->window_ms = c->storm_window_s * 1000;
    so->same_job_builds = c->storm_same_job;
    so->first_seen_jobs = c->storm_first_seen;
    so->first_seen_tags = c->storm_first_seen_tags;
    so->replay_share_pct = c->storm_replay_pct;
    so->replay_min = c->storm_replay_min;
    so->rate_factor = (double)c->storm_rate_factor;
    so->rate_floor = c->storm_rate_floor;
    return 0;
}

static void listener_opts(const sg_config *c, sg_http_opts *o)
{
    *o = (sg_http_opts){.listen = c->listen,
                        .max_body = (size_t)c->max_body,
                        .max_header = (size_t)c->max_header,
                        .read_timeout_ms = (int)(c->read_timeout_s * 1000),
                        .max_connections = (int)c->max_connections,
                        .tls_cert = c->tls_cert,
                        .tls_key = c->tls_key};
}

int sg_gate_check(const sg_config *c, sg_error *err)
{
    int rc;
    if (!c->downstream)
        return sg_error_set(err, SG_EUSAGE,
                            "no downstream: give the notifier's URL with --downstream or "
                            "[gate] downstream");
    if (sg_forward_check_downstream(c->downstream, err))
        return sg_config_blame(c, "gate", "downstream", err);
    if ((c->source_pointer || c->job_pointer || c->number_pointer) &&
        !(c->source_pointer && c->job_pointer && c->number_pointer)) {
        sg_error_set(err, SG_EUSAGE,
                     "generic events need source_pointer, job_pointer and number_pointer "
                     "together");
        return sg_config_blame(c, "gate",
                               c->source_pointer ? "source_pointer"
                               : c->job_pointer  ? "job_pointer"
                                                 : "number_pointer",
                               err);
    }
    if (c->watch && strchr(c->canary, '{')) {
        /* in a Redis Cluster each master's canary gets a hash tag of its
         * slots: one of the name's own would put them all in one slot */
        sg_error_set(err, SG_EUSAGE, "the canary key %s may not contain '{'", c->canary);
        return sg_config_blame(c, "redis", "canary", err);
    }
    sg_core_opts co;
    if ((rc = sg_gate_core_opts(c, &co, err)))
        return rc;
    /* the guard checks them again when the core starts, after the store
     * opened; here they are the configuration's fault, so a usage error,
     * blamed on the key whose range it names (the file's ranges are checked
     * as it is read: what is left are the detector's own rules) */
    if (sg_storm_opts_check(&co.storm, err)) {
        err->code = SG_EUSAGE;
        static const char *const storm_keys[] = {"same_job_builds", "first_seen_jobs",
                                                 "first_seen_tags", "replay_min",
                                                 "rate_factor",     "rate_floor"};
        for (size_t i = 0; i < sizeof storm_keys / sizeof *storm_keys; i++)
            if (strstr(err->msg, storm_keys[i]))
                return sg_config_blame(c, "storm", storm_keys[i], err);
        return SG_EUSAGE;
    }
    sg_http_opts ho;
    listener_opts(c, &ho);
    if (sg_http_check(&ho, err)) /* the address, else the TLS pair */
        return sg_config_blame(c, "gate",
                               !strncmp(err->msg, "listen address", 14) ? "listen"
                               : c->tls_cert                            ? "tls_cert"
                                                                        : "tls_key",
                               err);
    return 0;
}

static int start_watch(sg_gate *g, sg_error *err)
{
    const sg_config *c = g->cfg;
    snprintf(g->sample_glob, sizeof g->sample_glob, "%s:*", c->prefix);
    /* the first periodic snapshot at once, not an interval later: a gate
     * started after a wipe learns from it that the poller's keys are gone
     * (core.h: a poller posting builds while the baseline has none of its
     * keys is a wipe), before the replay has gone through */
    g->last_snapshot_at = 0;
    if (!c->watch)
        return 0;
    sg_watch_opts wo = {.redis_url = c->redis_url,
                        .tls = &c->redis_tls,
                        .sentinel_password = c->sentinel_password,
                        .canary = c->canary,
                        .check_ms = (int)c->check_interval_ms,
                        .connect_timeout_ms = (int)c->connect_timeout_ms,
                        .count_pattern = c->profile == SG_PROFILE_NONE ? NULL : g->sample_glob,
                        .clock = g->clock,
                        .on_change = on_change};
    int rc = sg_watchset_start(g->loop, &wo, on_wipe, on_link, g, &g->watch, err);
    if (rc)
        return sg_error_prefix(err, "watching Redis");
    sg_core_stats st;
    sg_core_stats_get(g->core, &st);
    arm_watch(g, st.baseline_id); /* no wipe seen yet */
    return 0;
}

static int start(sg_gate *g, sg_error *err)
{
    const sg_config *c = g->cfg;
    int rc;
    if ((rc = sg_gate_check(c, err)) ||
        (rc = sg_store_claim_new(sg_config_store(c), &g->store_claim, err)))
        return rc;
    sg_core_opts co;
    if ((rc = sg_gate_core_opts(c, &co, err)))
        return rc;
    co.clock = g->clock;
    co.replica = sg_store_claim_name(g->store_claim);
    if ((rc = sg_core_start(g->loop, &co, &g->core, err)))
        return rc;
    /* SQLite maps the WAL's index (<db>-shm) into memory: when its file
     * system fails (NFS gone, a remount, the file made immutable) touching
     * it raises SIGBUS. Nothing can be journaled after that, and nothing
     * lost by stopping: every event answered 200 is committed. So one clear
     * line and exit 1, for the supervisor to restart the daemon once the
     * store is back, instead of a crash report. */
    char *bus =
        c->store_url
            ? NULL
            : sg_xasprintf(
                  "the store %s could not be read or written through its memory map (SIGBUS; the "
                  "WAL index %s-shm or the database on a file system that failed, went read-only "
                  "or "
                  "was removed): exiting; every event answered 200 is committed and resumes at the "
                  "next start",
                  c->db_path, c->db_path);
    if (bus) /* a PostgreSQL store maps nothing */
        sg_log_fatal_signal(SIGBUS, "store", bus);
    free(bus);

    sg_forward_opts fo = {.downstream = c->downstream,
                          .max_inflight = (int)c->max_inflight,
                          .timeout_ms = (int)(c->forward_timeout_s * 1000),
                          .max_age_ms = c->forward_max_age_s * 1000,
                          .retry_base_ms = (int)c->retry_base_ms,
                          .retry_max_ms = (int)(c->retry_max_s * 1000),
                          .clock = g->clock};
    if ((rc = sg_forward_start(g->loop, &fo, on_forward_result, g, &g->fwd, err)))
        return rc;
    sg_http_opts ho;
    listener_opts(c, &ho);
    if ((rc = sg_http_start(g->loop, &ho, on_request, g, &g->http, err)))
        return sg_error_prefix(err, "gate");
    /* replicas: the one holding the watcher's lock leads: it watches and
     * drains (maybe_watch) */
    g->replica_leads = sg_store_claim_name(g->store_claim) != NULL;
    g->replica_watches = c->watch && g->replica_leads;
    if (!g->replica_watches && (rc = start_watch(g, err)))
        return rc;
    sg_core_on_baseline(g->core, on_baseline, g);
    uv_timer_init(g->loop, &g->tick);
    g->tick.data = g;
    uv_timer_start(&g->tick, on_tick, TICK_MS, TICK_MS);
    sample_process(g);
    sg_deliverer d = {.push = deliver, .backlog = deliver_backlog, .ud = g};
    sg_core_set_deliverer(g->core, &d); /* resumes what the last run left pending */
    return 0;
}

int sg_gate_start(uv_loop_t *loop, const sg_config *cfg, sg_gate **out, sg_error *err)
{
    sg_gate *g = sg_xcalloc(1, sizeof *g);
    g->loop = loop;
    g->cfg = cfg;
    g->clock = &sg_clock_real;
    *out = g;
    int rc = start(g, err);
    if (rc) {
        /* undo what started; the loop closes the handles */
        sg_gate_stop(g, NULL, NULL);
        sg_gate_close(g, NULL, NULL);
    }
    return rc;
}

void sg_gate_free(sg_gate *g)
{
    if (!g)
        return;
    if (g->proc_job)
        g->proc_job->g = NULL;
    if (g->watcher_job) /* the loop ran to its end: only if it was left early */
        g->watcher_job->g = NULL;
    sg_core_free(g->core);
    sg_store_claim_free(g->store_claim); /* the store is free for the next daemon */
    free(g);
}
