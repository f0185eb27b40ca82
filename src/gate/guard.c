/* Guard and storm modes (guard.h).
 *
 * The storm detector and the mode machine (storm.h) are pure; this object
 * feeds them the clock's time, logs the transitions and keeps them as
 * episodes. An episode is a journal row opened when a wipe or a storm starts
 * and updated as it goes on (a rewarm, the end): its id is known only once
 * the opening row committed, so an update before that is left out. */
#include "stormguard/gate/guard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/base/clock.h"
#include "stormguard/base/log.h"
#include "stormguard/base/util.h"

#define EXPECT_WIPE_MS (10 * 60 * 1000)
#define EXPECT_MORE_WIPES_MS 5000 /* after an announced flush's first wipe */

struct sg_guard {
    sg_guard_opts o;
    sg_storm storm;
    sg_modes modes;
    sg_guard_mode_fn on_mode;
    void *ud;
    int64_t expect_wipe_until, last_wipe_at;
    int64_t expect_wipe_deadline; /* the announce's window: expect_wipe_until never passes it */
    int64_t episode_id;           /* the open episode, 0 if none (or not yet committed) */
    uint64_t wipes, storms, rewarms, server_changes;
    int pending_episodes; /* submitted, not yet done: they hold a pointer to g */
    bool adopting;        /* in sg_guard_adopt: another replica's mode, its episode */
    bool freed;           /* sg_guard_free ran while some were pending */
};

static int64_t now_ms(const sg_guard *g)
{
    return sg_clock_ms(g->o.clock);
}

/* ---- episodes ---- */

typedef struct episode_op {
    sg_jop op;
    sg_guard *g;
    char *cause, *detail;
    bool apart; /* an episode of its own: the open one stays the current */
} episode_op;

static void guard_release(sg_guard *g)
{
    sg_storm_close(&g->storm);
    sg_modes_close(&g->modes);
    free(g);
}

static void on_episode_done(sg_jop *op)
{
    episode_op *e = op->ud;
    sg_guard *g = e->g;
    if (op->status)
        sg_log(SG_LOG_ERROR, "guard", "recording episode (%s) failed: %s",
               e->cause ? e->cause : "update", op->errmsg);
    else if (e->cause && !e->apart)
        g->episode_id = op->episode_id;
    free(e->cause);
    free(e->detail);
    free(e);
    if (--g->pending_episodes == 0 && g->freed)
        guard_release(g);
}

/* Opens an episode (cause set) or appends to the current one; apart: an
 * episode that ends as it opens (ended_at) and leaves the current one be. */
static void episode_op_submit(sg_guard *g, const char *cause, const char *detail, int64_t ended_at,
                              bool apart)
{
    if (!g->o.journal || (!cause && !g->episode_id))
        return;
    episode_op *e = sg_xcalloc(1, sizeof *e);
    e->g = g;
    e->cause = cause ? sg_xstrdup(cause) : NULL;
    e->detail = detail ? sg_xstrdup(detail) : NULL;
    e->op.type = SG_JOP_EPISODE;
    e->op.episode_id = cause ? 0 : g->episode_id;
    e->op.at = now_ms(g);
    e->op.ended_at = ended_at;
    e->op.cause = e->cause;
    e->op.detail = e->detail;
    e->op.done = on_episode_done;
    e->op.ud = e;
    e->apart = apart;
    if (cause && !apart)
        g->episode_id = 0; /* set when committed */
    g->pending_episodes++;
    sg_journal_submit(g->o.journal, &e->op);
}

static void episode(sg_guard *g, const char *cause, const char *detail, int64_t ended_at)
{
    episode_op_submit(g, cause, detail, ended_at, false);
}

/* ---- modes ---- */

/* The mode machine's transitions: logged, kept in the episode table, told
 * to the owner. */
static void on_mode_change(const sg_mode_change *c, void *ud)
{
    sg_guard *g = ud;
    char what[768];
    if (c->started)
        snprintf(what, sizeof what, "%s mode on%s%s: %s; unknown builds are %s",
                 sg_mode_name(c->mode), c->scope ? " for " : "", c->scope ? c->scope : "",
                 c->detail ? c->detail : "", g->o.drops_unknown ? "dropped" : "held");
    else
        snprintf(what, sizeof what, "%s mode%s%s over after %llds%s", sg_mode_name(c->mode),
                 c->scope ? " for " : "", c->scope ? c->scope : "",
                 (long long)((c->until_ms - c->since_ms) / 1000), c->forced ? " (turned off)" : "");
    sg_log(c->started ? SG_LOG_WARN : SG_LOG_INFO, "guard", "%s", what);
    if (c->started && c->mode == SG_MODE_STORM && !g->adopting)
        episode(g, "storm", what, 0);
    if (!c->started && sg_modes_overall(&g->modes, c->until_ms) == SG_MODE_NORMAL)
        episode(g, NULL, what, c->until_ms);
    if (g->on_mode)
        g->on_mode(g->ud, c);
}

int sg_guard_new(const sg_guard_opts *o, sg_guard_mode_fn on_mode, void *ud, sg_guard **out,
                 sg_error *err)
{
    sg_guard *g = sg_xcalloc(1, sizeof *g);
    g->o = *o;
    if (!g->o.expect_wipe_ms)
        g->o.expect_wipe_ms = EXPECT_WIPE_MS;
    int rc = sg_storm_init(&g->storm, &o->storm, err);
    if (rc) {
        free(g);
        char msg[SG_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "%s", err->msg);
        return sg_error_set(err, SG_EUSAGE, "[storm] %s", msg); /* a configuration error */
    }
    g->on_mode = on_mode;
    g->ud = ud;
    sg_modes_init(&g->modes, on_mode_change, g);
    *out = g;
    return 0;
}

void sg_guard_free(sg_guard *g)
{
    if (!g)
        return;
    if (g->pending_episodes) {
        g->freed = true; /* the last episode's completion frees it */
        g->on_mode = NULL;
        return;
    }
    guard_release(g);
}

sg_mode sg_guard_mode(const sg_guard *g, const char *source)
{
    int64_t now = now_ms(g);
    return source ? sg_modes_for(&g->modes, now, source) : sg_modes_overall(&g->modes, now);
}

/* ---- storms ---- */

static void on_triggers(sg_guard *g, int64_t now, const sg_storm_trigger *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        /* every firing extends the storm (and guard mode); the first in a
         * window is reported */
        sg_modes_storm(&g->modes, now, t[i].scope, g->o.cooldown_ms, t[i].message);
        if (t[i].repeat)
            continue;
        g->storms++;
        sg_log(SG_LOG_WARN, "guard", "storm signal %s on %s: %s", t[i].name,
               t[i].scope ? t[i].scope : "all sources", t[i].message);
    }
}

void sg_guard_observe(sg_guard *g, const char *source, const char *job, sg_kind kind)
{
    sg_storm_trigger t[SG_STORM_NSIGNALS];
    int64_t now = now_ms(g);
    on_triggers(g, now, t, sg_storm_observe(&g->storm, now, source, job, kind, t));
}

void sg_guard_observe_tag(sg_guard *g, const char *account, const char *repository, const char *tag,
                          sg_kind kind, bool first_seen)
{
    sg_storm_trigger t[SG_STORM_NSIGNALS];
    int64_t now = now_ms(g);
    on_triggers(
        g, now, t,
        sg_storm_observe_tag(&g->storm, now, account, repository, tag, kind, first_seen, t));
}

void sg_guard_replayed(sg_guard *g, int64_t observed_ms, const char *source)
{
    sg_storm_trigger t[SG_STORM_NSIGNALS];
    int64_t now = now_ms(g);
    on_triggers(g, now, t, sg_storm_replayed(&g->storm, observed_ms, now, source, t));
}

/* ---- wipes and the operator ---- */

bool sg_guard_wipe(sg_guard *g, const char *cause, const char *detail, int64_t detected_at_ms)
{
    int64_t now = now_ms(g);
    bool expected = g->expect_wipe_until > now;
    /* A flush wipes every master of a Redis Cluster in turn, each seen
     * apart: a wipe within 5 s of the announced flush's last one is the same
     * flush, until the announce's own window ends. Any later one is not. */
    g->expect_wipe_until = 0;
    if (expected)
        g->expect_wipe_until = now + EXPECT_MORE_WIPES_MS < g->expect_wipe_deadline
                                   ? now + EXPECT_MORE_WIPES_MS
                                   : g->expect_wipe_deadline;
    g->wipes++;
    g->last_wipe_at = detected_at_ms;
    sg_log(SG_LOG_WARN, "guard", "Redis wiped (%s): %s%s", cause, detail,
           expected ? " (announced by stormguard flush)" : "");
    char reason[512];
    snprintf(reason, sizeof reason, "wipe (%s): %s", cause, detail);
    sg_modes_guard(&g->modes, now, g->o.guard_ms, reason);
    episode(g, cause, detail, 0);
    return expected;
}

void sg_guard_server_changed(sg_guard *g, const char *cause, const char *detail)
{
    g->server_changes++;
    sg_log(SG_LOG_INFO, "guard", "Redis %s without a wipe: %s", cause, detail);
    char what[64];
    snprintf(what, sizeof what, "%s, data kept", cause);
    int64_t now = now_ms(g);
    episode_op_submit(g, what, detail, now, true);
}

void sg_guard_rewarmed(sg_guard *g, const char *detail)
{
    g->rewarms++;
    episode(g, NULL, detail, 0);
}

void sg_guard_on(sg_guard *g, const char *reason)
{
    sg_modes_guard(&g->modes, now_ms(g), g->o.guard_ms, reason);
}

void sg_guard_off(sg_guard *g, const char *reason)
{
    sg_modes_guard_off(&g->modes, now_ms(g));
    sg_log(SG_LOG_INFO, "guard", "guard mode %s", reason);
}

void sg_guard_adopt(sg_guard *g, const char *scope, bool storm, int64_t until_ms,
                    const char *reason)
{
    int64_t now = now_ms(g);
    if (until_ms <= now)
        return;
    g->adopting = true;
    if (storm)
        sg_modes_storm(&g->modes, now, scope, until_ms - now, reason);
    else
        sg_modes_guard(&g->modes, now, until_ms - now, reason);
    g->adopting = false;
}

void sg_guard_adopt_wipes(sg_guard *g, int64_t wipe_at_ms, int64_t expect_until_ms)
{
    if (wipe_at_ms > g->last_wipe_at)
        g->last_wipe_at = wipe_at_ms;
    if (expect_until_ms > g->expect_wipe_until) {
        g->expect_wipe_until = expect_until_ms;
        if (expect_until_ms > g->expect_wipe_deadline)
            g->expect_wipe_deadline = expect_until_ms;
    }
}

void sg_guard_announce(sg_guard *g, const char *reason)
{
    int64_t now = now_ms(g);
    /* the wipe this flush causes is the operator's intent (known before
     * the mode starts: its owner may tell others of both at once) */
    g->expect_wipe_until = g->expect_wipe_deadline = now + g->o.expect_wipe_ms;
    sg_modes_guard(&g->modes, now, g->o.guard_ms, reason);
}

void sg_guard_tick(sg_guard *g)
{
    sg_modes_tick(&g->modes, now_ms(g));
}

void sg_guard_report_get(const sg_guard *g, sg_guard_report *out)
{
    int64_t now = now_ms(g);
    memset(out, 0, sizeof *out);
    out->mode = sg_modes_overall(&g->modes, now);
    sg_guard_info gi;
    if (sg_modes_guard_info(&g->modes, now, &gi)) {
        out->guard = true;
        out->guard_since_ms = gi.since_ms;
        out->guard_until_ms = gi.until_ms;
        out->guard_reason = gi.reason;
    }
    out->nstorms = sg_modes_storms(&g->modes, now, out->storms, SG_GUARD_MAX_STORMS);
    out->wipes = g->wipes;
    out->storm_signals = g->storms;
    out->rewarms = g->rewarms;
    out->server_changes = g->server_changes;
    out->last_wipe_at_ms = g->last_wipe_at;
    out->expect_wipe_until_ms = g->expect_wipe_until > now ? g->expect_wipe_until : 0;
}
