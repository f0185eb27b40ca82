/* Guard and storm modes inside `stormguard run` (DOMAIN.md sections 4-5).
 *
 *   Redis -> watch (wipe) ----\
 *   events -> storm detector --+-> modes (normal / guard / storm) -> hold.c
 *   operator (guard on|off, flush announce) --/
 *
 * A wipe detected by the watcher opens an episode, turns guard mode on for
 * [guard] duration and, with rewarm on, restores the profile's missing keys
 * from the last good snapshot so the poller's next cycle sees its old state.
 * A storm signal turns storm mode on for its source (or everywhere) until
 * [storm] cooldown passes without another, and extends guard mode. Periodic
 * snapshots keep the baseline fresh while Redis is healthy; a snapshot taken
 * after a wipe is suspect (far fewer keys) and never becomes the baseline.
 *
 * Redis work that blocks (snapshots, rewarm) runs on the libuv threadpool
 * (sidecar.c); the watcher is asynchronous on the loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gate_int.h"
#include "stormguard/base/log.h"
#include "stormguard/base/clock.h"

#define GUARD_TICK_MS 1000
#define EXPECTED_WIPE_MS (10 * 60 * 1000) /* an announced flush is expected this long */
#define SAMPLE_KEYS 32

sg_mode sg_gate_mode_for(sg_gate *g, int64_t now, const char *source)
{
    return sg_modes_for(&g->modes, now, source);
}

/* ---- episodes ---- */

typedef struct episode_op {
    sg_jop op;
    sg_gate *g;
    char *cause, *detail;
} episode_op;

static void on_episode_done(sg_jop *op)
{
    episode_op *e = op->ud;
    if (op->status)
        sg_log(SG_LOG_ERROR, "guard", "recording episode (%s) failed: %s",
               e->cause ? e->cause : "update", op->errmsg);
    else if (e->cause)
        e->g->episode_id = op->episode_id;
    free(e->cause);
    free(e->detail);
    free(e);
}

/* Opens an episode (cause set) or appends to the current one. */
static void episode(sg_gate *g, const char *cause, const char *detail, int64_t ended_at)
{
    if (g->stopping || (!cause && !g->episode_id))
        return;
    episode_op *e = sg_xcalloc(1, sizeof *e);
    e->g = g;
    e->cause = cause ? sg_xstrdup(cause) : NULL;
    e->detail = detail ? sg_xstrdup(detail) : NULL;
    e->op.type = SG_JOP_EPISODE;
    e->op.episode_id = cause ? 0 : g->episode_id;
    e->op.at = sg_now_ms();
    e->op.ended_at = ended_at;
    e->op.cause = e->cause;
    e->op.detail = e->detail;
    e->op.done = on_episode_done;
    e->op.ud = e;
    if (cause)
        g->episode_id = 0; /* set when committed */
    sg_journal_submit(g->journal, &e->op);
}

/* ---- storms ---- */

static void on_triggers(sg_gate *g, int64_t now, const sg_storm_trigger *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        /* every firing extends the storm (and guard mode); the first in a
         * window is reported */
        sg_modes_storm(&g->modes, now, t[i].scope, g->cfg->storm_cooldown_s * 1000, t[i].message);
        if (t[i].repeat)
            continue;
        g->storms++;
        sg_log(SG_LOG_WARN, "guard", "storm signal %s on %s: %s", t[i].name,
               t[i].scope ? t[i].scope : "all sources", t[i].message);
    }
}

void sg_guard_observe(sg_gate *g, int64_t now, const char *source, const char *job, sg_kind kind)
{
    sg_storm_trigger t[SG_STORM_NSIGNALS];
    on_triggers(g, now, t, sg_storm_observe(&g->storm, now, source, job, kind, t));
}

void sg_guard_replayed(sg_gate *g, int64_t observed, const char *source)
{
    sg_storm_trigger t[SG_STORM_NSIGNALS];
    int64_t now = sg_now_ms();
    on_triggers(g, now, t, sg_storm_replayed(&g->storm, observed, now, source, t));
}

static void guard_on(sg_gate *g, int64_t now, const char *reason)
{
    sg_modes_guard(&g->modes, now, g->cfg->guard_duration_s * 1000, reason);
}

/* The mode machine's transitions: logged, and kept in the episode table. */
static void on_mode_change(const sg_mode_change *c, void *ud)
{
    sg_gate *g = ud;
    char what[768];
    const char *holds = strcmp(g->cfg->on_storm, "drop") ? "held" : "dropped";
    if (c->started)
        snprintf(what, sizeof what, "%s mode on%s%s: %s; unknown builds are %s",
                 sg_mode_name(c->mode), c->scope ? " for " : "", c->scope ? c->scope : "",
                 c->detail ? c->detail : "", holds);
    else
        snprintf(what, sizeof what, "%s mode%s%s over after %llds%s", sg_mode_name(c->mode),
                 c->scope ? " for " : "", c->scope ? c->scope : "",
                 (long long)((c->until_ms - c->since_ms) / 1000), c->forced ? " (turned off)" : "");
    sg_log(c->started ? SG_LOG_WARN : SG_LOG_INFO, "guard", "%s", what);
    if (c->started && c->mode == SG_MODE_STORM)
        episode(g, "storm", what, 0);
    if (c->started)
        return;
    if (sg_modes_overall(&g->modes, c->until_ms) == SG_MODE_NORMAL) {
        int64_t held = g->counts[SG_KIND_UNKNOWN][ST_HELD];
        if (held)
            sg_log(SG_LOG_WARN, "guard",
                   "back to normal mode; %lld events stay held until released or dropped "
                   "(stormguard held)",
                   (long long)held);
        episode(g, NULL, what, c->until_ms);
    }
}

/* ---- snapshots and rewarm (sidecar.c, on the threadpool) ---- */

static void sidecar_opts(const sg_gate *g, sg_sidecar_opts *o)
{
    const sg_config *c = g->cfg;
    *o = (sg_sidecar_opts){.redis_url = c->redis_url,
                           .connect_timeout_ms = (int)c->connect_timeout_ms,
                           .db_path = c->db_path,
                           .profile = c->profile,
                           .prefix = c->prefix,
                           .scan_count = c->scan_count,
                           .method = sg_snapshot_method_named(c->snapshot_method),
                           .keep = c->keep,
                           .max_age_s = c->max_age_s,
                           .suspect_below_pct = (int)c->suspect_below_pct};
}

static int sample_key(void *ud, const char *key)
{
    sg_strlist_push(ud, key);
    return 0;
}

/* Hands the watcher keys of snapshot id to look for (a wipe of the poller's
 * keys alone leaves the canary). */
void sg_guard_baseline(sg_gate *g, int64_t id, bool keys_back)
{
    if (!g->watch || !id || !g->reader) /* no reader: stopping */
        return;
    sg_error err;
    /* A snapshot taken before the last wipe names keys that are gone (a
     * flush's own pre-flush snapshot, say): watching them would report the
     * same wipe again. Only a rewarm, or a snapshot taken since, re-arms. */
    sg_snapshot_info info;
    if (!keys_back && g->last_wipe_at) {
        if (sg_store_snapshot_get(g->reader, id, &info, &err))
            return;
        bool stale = info.taken_at_ms <= g->last_wipe_at;
        sg_snapshot_info_close(&info);
        if (stale)
            return;
    }
    sg_strlist keys = {0};
    char glob[256];
    snprintf(glob, sizeof glob, "%s:*", g->cfg->prefix);
    if (sg_store_sample_keys(g->reader, id, g->cfg->profile == SG_PROFILE_NONE ? NULL : glob,
                             SAMPLE_KEYS, sample_key, &keys, &err))
        sg_log(SG_LOG_WARN, "guard", "reading sample keys of snapshot %lld: %s", (long long)id,
               err.msg);
    else
        sg_watch_set_sample(g->watch, (const char *const *)keys.items, keys.len);
    sg_strlist_clear(&keys);
}

typedef struct announce {
    sg_gate *g;
    sg_http_req *req; /* the flush announce waiting for its snapshot, or NULL */
} announce;

static void on_snapshot_done(void *ud, const sg_sidecar_result *r)
{
    announce *a = ud;
    sg_gate *g = a->g;
    g->snapshotting = false;
    if (r->rc) {
        sg_log(SG_LOG_ERROR, "guard", "snapshot failed: %s", r->err.msg);
        if (a->req) {
            char msg[SG_ERRMSG_MAX + 64];
            snprintf(msg, sizeof msg, "the pre-flush snapshot failed: %s", r->err.msg);
            sg_gate_reply_error(a->req, 503, msg, 0);
        }
        free(a);
        return;
    }
    if (r->suspect)
        sg_log(SG_LOG_WARN, "guard", "snapshot %lld is suspect and not a baseline: %s",
               (long long)r->snapshot_id, r->suspect_reason);
    else
        sg_log(SG_LOG_INFO, "guard", "snapshot %lld: %lld keys in %.2fs", (long long)r->snapshot_id,
               (long long)r->keys, r->seconds);
    if (!r->suspect)
        sg_guard_baseline(g, r->snapshot_id, false);
    if (a->req)
        /* "mode": what the announce put the gate in (the CLI checks it);
         * a storm on some source may be on as well */
        sg_gate_reply_json(
            a->req, 200,
            json_pack("{s:s,s:s,s:I,s:b}", "mode",
                      sg_modes_guard_info(&g->modes, sg_now_ms(), NULL) ? "guard" : "normal",
                      "overall_mode", sg_mode_name(sg_modes_overall(&g->modes, sg_now_ms())),
                      "snapshot_id", (json_int_t)r->snapshot_id, "suspect", r->suspect),
            0);
    free(a);
}

static int take_snapshot(sg_gate *g, const char *reason, sg_http_req *req, sg_error *err)
{
    sg_sidecar_opts o;
    sidecar_opts(g, &o);
    announce *a = sg_xcalloc(1, sizeof *a);
    a->g = g;
    a->req = req;
    int rc = sg_sidecar_snapshot(g->loop, &o, reason, on_snapshot_done, a, err);
    if (rc) {
        free(a);
        return rc;
    }
    g->snapshotting = true;
    return 0;
}

static void on_rewarm_done(void *ud, const sg_sidecar_result *r)
{
    sg_gate *g = ud;
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
        sg_guard_baseline(g, r->snapshot_id, true); /* the keys are back: watch them */
    }
    g->rewarms++;
    episode(g, NULL, detail, 0);
}

/* ---- the watcher's reports ---- */

static void on_wipe(void *ud, sg_wipe_cause cause, const char *detail, int64_t detected_at)
{
    sg_gate *g = ud;
    int64_t now = sg_now_ms();
    bool expected = g->expect_wipe_until > now;
    g->expect_wipe_until = 0;
    g->wipes++;
    g->last_wipe_at = detected_at;
    sg_log(SG_LOG_WARN, "guard", "Redis wiped (%s): %s%s", sg_wipe_cause_name(cause), detail,
           expected ? " (announced by stormguard flush)" : "");
    char reason[512];
    snprintf(reason, sizeof reason, "wipe (%s): %s", sg_wipe_cause_name(cause), detail);
    guard_on(g, now, reason);
    episode(g, sg_wipe_cause_name(cause), detail, 0);
    if (!g->cfg->rewarm || expected || g->stopping)
        return;
    sg_sidecar_opts o;
    sidecar_opts(g, &o);
    sg_error err;
    if (sg_sidecar_rewarm(g->loop, &o, 0, on_rewarm_done, g, &err))
        sg_log(SG_LOG_ERROR, "guard", "cannot start the rewarm: %s", err.msg);
}

static void on_link(void *ud, bool up, const char *detail)
{
    sg_gate *g = ud;
    g->redis_up = up;
    sg_log(up ? SG_LOG_INFO : SG_LOG_WARN, "guard", "Redis %s: %s", up ? "up" : "down", detail);
}

/* ---- the tick: mode expiry, periodic snapshots ---- */

static void on_guard_tick(uv_timer_t *t)
{
    sg_gate *g = t->data;
    int64_t now = sg_now_ms();
    sg_modes_tick(&g->modes, now);
    int64_t every = g->cfg->snapshot_interval_s * 1000;
    if (every && g->cfg->profile != SG_PROFILE_NONE && g->redis_up && !g->snapshotting &&
        !g->stopping && now - g->last_snapshot_at >= every) {
        g->last_snapshot_at = now;
        sg_error err;
        if (take_snapshot(g, "periodic", NULL, &err))
            sg_log(SG_LOG_ERROR, "guard", "cannot start the periodic snapshot: %s", err.msg);
    }
}

/* ---- operator requests ---- */

typedef struct audit_op {
    sg_jop op;
    sg_gate *g;
    sg_http_req *req; /* answered with the status once committed, or NULL */
    char *actor, *detail;
} audit_op;

static void on_audit_done(sg_jop *op)
{
    audit_op *a = op->ud;
    if (op->status)
        sg_log(SG_LOG_ERROR, "guard", "writing the audit row (%s) failed: %s", op->action,
               op->errmsg);
    if (a->req && op->status)
        sg_gate_reply_error(a->req, 503, op->errmsg, 1);
    else if (a->req)
        sg_gate_reply_json(a->req, 200, sg_gate_status(a->g), 0);
    free(a->actor);
    free(a->detail);
    free(a);
}

static void audit(sg_gate *g, sg_http_req *req, const char *actor, const char *action,
                  const char *detail)
{
    audit_op *a = sg_xcalloc(1, sizeof *a);
    a->g = g;
    a->req = req;
    a->actor = sg_xstrdup(actor);
    a->detail = sg_xstrdup(detail);
    a->op.type = SG_JOP_AUDIT;
    a->op.actor = a->actor;
    a->op.action = action; /* a string literal */
    a->op.detail = a->detail;
    a->op.done = on_audit_done;
    a->op.ud = a;
    sg_journal_submit(g->journal, &a->op);
}

static bool refuse_stopping(sg_gate *g, sg_http_req *req)
{
    if (!g->stopping)
        return false;
    sg_gate_reply_error(req, 503, "stormguard is shutting down", 1);
    return true;
}

void sg_gate_guard(sg_gate *g, sg_http_req *req, bool on, const sg_op_request *r)
{
    if (refuse_stopping(g, req))
        return;
    int64_t now = sg_now_ms();
    char reason[512];
    snprintf(reason, sizeof reason, "%s by %s%s%s", on ? "turned on" : "turned off", r->actor,
             r->reason ? ": " : "", r->reason ? r->reason : "");
    if (on) {
        guard_on(g, now, reason);
    } else {
        sg_modes_guard_off(&g->modes, now);
        sg_log(SG_LOG_INFO, "guard", "guard mode %s", reason);
    }
    audit(g, req, r->actor, on ? "guard on" : "guard off", reason);
}

void sg_gate_flush_announce(sg_gate *g, sg_http_req *req, const sg_op_request *r)
{
    if (refuse_stopping(g, req))
        return;
    if (g->snapshotting) {
        sg_gate_reply_error(req, 503, "a snapshot is being taken: announce again shortly", 2);
        return;
    }
    int64_t now = sg_now_ms();
    char reason[512];
    snprintf(reason, sizeof reason, "flush announced by %s%s%s", r->actor, r->reason ? ": " : "",
             r->reason ? r->reason : "");
    guard_on(g, now, reason);
    /* the wipe this flush causes is the operator's intent: no rewarm */
    g->expect_wipe_until = now + EXPECTED_WIPE_MS;
    audit(g, NULL, r->actor, "flush announced", reason);
    sg_error err;
    if (take_snapshot(g, "pre-flush", req, &err)) {
        char msg[SG_ERRMSG_MAX + 64];
        snprintf(msg, sizeof msg, "cannot take the pre-flush snapshot: %s", err.msg);
        sg_gate_reply_error(req, 503, msg, 0);
    }
}

/* ---- start, stop, status ---- */

int sg_guard_start(sg_gate *g, sg_error *err)
{
    const sg_config *c = g->cfg;
    sg_storm_opts so;
    sg_storm_opts_default(&so);
    so.window_ms = c->storm_window_s * 1000;
    so.same_job_builds = c->storm_same_job;
    so.first_seen_jobs = c->storm_first_seen;
    so.replay_share_pct = c->storm_replay_pct;
    so.replay_min = c->storm_replay_min;
    so.rate_factor = (double)c->storm_rate_factor;
    so.rate_floor = c->storm_rate_floor;
    int rc = sg_storm_init(&g->storm, &so, err);
    if (rc) {
        char msg[SG_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "%s", err->msg);
        return sg_error_set(err, SG_EUSAGE, "[storm] %s", msg); /* a configuration error */
    }
    g->storm_on = true;
    sg_modes_init(&g->modes, on_mode_change, g);
    uv_timer_init(g->loop, &g->guard_tick);
    g->guard_tick.data = g;
    uv_timer_start(&g->guard_tick, on_guard_tick, GUARD_TICK_MS, GUARD_TICK_MS);
    g->last_snapshot_at = sg_now_ms();
    if (!c->watch)
        return 0;
    char pattern[256];
    snprintf(pattern, sizeof pattern, "%s:*", c->prefix);
    sg_watch_opts wo = {.redis_url = c->redis_url,
                        .canary = c->canary,
                        .check_ms = (int)c->check_interval_ms,
                        .connect_timeout_ms = (int)c->connect_timeout_ms,
                        .count_pattern = c->profile == SG_PROFILE_NONE ? NULL : pattern};
    if ((rc = sg_watch_start(g->loop, &wo, on_wipe, on_link, g, &g->watch, err)))
        return sg_error_prefix(err, "watching Redis");
    sg_guard_baseline(g, g->baseline_id, false);
    return 0;
}

static void on_watch_stopped(void *ud)
{
    sg_gate *g = ud;
    g->watch = NULL;
}

void sg_guard_stop(sg_gate *g)
{
    uv_close((uv_handle_t *)&g->guard_tick, NULL);
    if (g->watch)
        sg_watch_stop(g->watch, on_watch_stopped, g);
}

void sg_guard_close(sg_gate *g)
{
    if (!g->storm_on)
        return;
    sg_storm_close(&g->storm);
    sg_modes_close(&g->modes);
}

json_t *sg_guard_status(sg_gate *g)
{
    int64_t now = sg_now_ms();
    char t1[40], t2[40];
    json_t *guard = json_null();
    sg_guard_info gi;
    if (g->storm_on && sg_modes_guard_info(&g->modes, now, &gi)) {
        sg_format_time(gi.since_ms, t1, sizeof t1);
        sg_format_time(gi.until_ms, t2, sizeof t2);
        guard = json_pack("{s:s,s:s,s:s?}", "since", t1, "until", t2, "reason", gi.reason);
    }
    json_t *storms = json_array();
    sg_mode_storm_info si[16];
    size_t n = g->storm_on ? sg_modes_storms(&g->modes, now, si, 16) : 0;
    for (size_t i = 0; i < n && i < 16; i++) {
        sg_format_time(si[i].since_ms, t1, sizeof t1);
        sg_format_time(si[i].until_ms, t2, sizeof t2);
        json_array_append_new(storms,
                              json_pack("{s:s?,s:s?,s:s,s:s}", "source", si[i].scope, "trigger",
                                        si[i].message, "since", t1, "until", t2));
    }
    return json_pack("{s:o,s:o,s:I,s:I,s:I,s:I}", "guard", guard, "storms", storms, "wipes",
                     (json_int_t)g->wipes, "storm_signals", (json_int_t)g->storms, "rewarms",
                     (json_int_t)g->rewarms, "held",
                     (json_int_t)g->counts[SG_KIND_UNKNOWN][ST_HELD]);
}
