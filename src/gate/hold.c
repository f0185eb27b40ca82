/* The held queue (hold.h). */
#include "stormguard/gate/hold.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/base/log.h"
#include "stormguard/base/util.h"
#include "stormguard/store/events.h"
#include "stormguard/store/held.h"

/* A release or drop of many events runs as chunks of CHUNK events, one
 * journal transaction each, so the gate's own commits (every answer to the
 * poller waits on one) slip in between instead of waiting seconds for a
 * single transaction over a million rows. */
#define CHUNK 5000

struct sg_hold {
    sg_hold_opts o;
    bool draining; /* a drain release is in the journal */
    bool stopping;
};

int sg_on_storm_parse(const char *s, sg_on_storm *out)
{
    static const char *const names[] = {"hold", "drain", "drop"};
    for (int i = 0; i < 3; i++)
        if (s && !strcmp(s, names[i])) {
            *out = (sg_on_storm)i;
            return 0;
        }
    return SG_EINVAL;
}

sg_hold *sg_hold_new(const sg_hold_opts *o)
{
    sg_hold *h = sg_xcalloc(1, sizeof *h);
    h->o = *o;
    return h;
}

void sg_hold_free(sg_hold *h)
{
    free(h);
}

sg_event_state sg_hold_state(const sg_hold *h, sg_kind kind, const char *source, const char **why)
{
    *why = NULL;
    if (kind == SG_KIND_REPLAY)
        return SG_STATE_SUPPRESSED;
    if (kind != SG_KIND_UNKNOWN || sg_guard_mode(h->o.guard, source) == SG_MODE_NORMAL)
        return SG_STATE_PENDING;
    if (h->o.on_storm == SG_ON_STORM_DROP) {
        *why = "dropped on arrival: guard or storm mode with on_storm = drop";
        return SG_STATE_DROPPED;
    }
    return SG_STATE_HELD;
}

/* ---- release and drop ---- */

typedef struct hold_op {
    sg_jop op;
    sg_hold *h;
    sg_hold_done_fn done; /* NULL: the drain */
    void *ud;
    bool chunked;       /* go on while a chunk says there may be more */
    sg_hold_result res; /* over all chunks so far */
    char *source, *job, *reason, *actor, *detail;
} hold_op;

static void hold_op_free(hold_op *x)
{
    free(x->source);
    free(x->job);
    free(x->reason);
    free(x->actor);
    free(x->detail);
    free(x);
}

static char *dup_or_null(const char *s)
{
    return s ? sg_xstrdup(s) : NULL;
}

static void finish(hold_op *x)
{
    if (x->done)
        x->done(x->ud, &x->res);
    else /* the drain: nobody to answer */
        x->h->draining = false;
    hold_op_free(x);
}

/* Reports a committed chunk, then submits the next one or finishes. */
static void on_hold_done(sg_jop *op)
{
    hold_op *x = op->ud;
    sg_hold *h = x->h;
    bool release = op->type == SG_JOP_RELEASE;
    if (op->status) {
        sg_log(SG_LOG_ERROR, "hold", "%s failed: %s", op->action ? op->action : "release or drop",
               op->errmsg);
        x->res.status = SG_ESTORE;
        snprintf(x->res.error, sizeof x->res.error,
                 "%s stopped: the journal cannot be written (%s); %lld done before that",
                 release ? "release" : "drop", op->errmsg,
                 (long long)(release ? x->res.released + x->res.superseded : x->res.dropped));
        finish(x);
        return;
    }
    sg_hold_moved m = {0};
    if (release) {
        m.released = op->released;
        m.superseded = op->superseded;
        x->res.released += op->released;
        x->res.superseded += op->superseded;
    } else {
        m.dropped = op->dropped;
        x->res.dropped += op->dropped;
    }
    if (h->o.hooks.moved)
        h->o.hooks.moved(h->o.hooks.ud, &m);
    if (x->chunked && op->more && !h->stopping) {
        /* the audit row went with the first chunk; each chunk of a release
         * queues in a generation of its own, behind what arrived meanwhile */
        op->action = NULL;
        op->at = 0; /* stamped again: the time the chunk goes in */
        if (release)
            op->qgen = h->o.hooks.next_gen(h->o.hooks.ud);
        sg_journal_submit(h->o.journal, op);
        return;
    }
    if (release && (x->res.released || x->res.superseded))
        sg_log(SG_LOG_INFO, "hold", "%s by %s: %lld released, %lld superseded (%s)",
               x->done ? "release" : "drain", x->actor, (long long)x->res.released,
               (long long)x->res.superseded, x->detail);
    if (!release)
        sg_log(SG_LOG_INFO, "hold", "drop by %s: %lld dropped (%s)", x->actor,
               (long long)x->res.dropped, x->detail);
    if (x->chunked && op->more) { /* stopping */
        x->res.status = SG_EBUSY;
        snprintf(x->res.error, sizeof x->res.error,
                 "stormguard is shutting down: %lld %s so far; run the command again after "
                 "the restart for the rest",
                 (long long)(release ? x->res.released : x->res.dropped),
                 release ? "released" : "dropped");
    }
    finish(x);
}

/* "source jenkins-prod, job team-a/..., newest only": what the audit row and
 * the log say about a selection. */
static char *describe(const sg_hold_filter *f, bool newest_only, const char *reason)
{
    sg_buf b = {0};
    if (f->all || (!f->source && !f->job))
        sg_buf_printf(&b, "all held events");
    if (!f->all && f->source)
        sg_buf_printf(&b, "source %s", f->source);
    if (!f->all && f->job)
        sg_buf_printf(&b, "%sjob %s", f->source ? ", " : "", f->job);
    if (newest_only)
        sg_buf_printf(&b, ", newest build per job (tag per repository) only");
    if (reason)
        sg_buf_printf(&b, "; reason: %s", reason);
    return b.p;
}

/* limit > 0: one chunk of that many (the drain); 0: all, in chunks. */
static void submit(sg_hold *h, sg_jop_type type, const sg_hold_request *r, const char *action,
                   int64_t limit, sg_hold_done_fn done, void *ud)
{
    hold_op *x = sg_xcalloc(1, sizeof *x);
    x->h = h;
    x->done = done;
    x->ud = ud;
    if (h->stopping) {
        x->res.status = SG_EBUSY;
        snprintf(x->res.error, sizeof x->res.error, "stormguard is shutting down");
        finish(x);
        return;
    }
    x->chunked = limit <= 0;
    const sg_hold_filter *f = &r->filter;
    x->source = dup_or_null(f->all ? NULL : f->source);
    x->job = dup_or_null(f->all ? NULL : f->job);
    x->reason = dup_or_null(r->reason);
    x->actor = sg_xstrdup(r->actor ? r->actor : "stormguard");
    x->detail = describe(f, r->newest_only, r->reason);
    x->op.type = type;
    x->op.hold = (sg_hold_filter){
        .all = f->all, .source = x->source, .job = x->job, .limit = limit > 0 ? limit : CHUNK};
    x->op.newest_only = r->newest_only;
    x->op.reason = x->reason;
    x->op.actor = x->actor;
    x->op.action = action;
    x->op.detail = x->detail;
    x->op.done = on_hold_done;
    x->op.ud = x;
    if (type == SG_JOP_RELEASE)
        x->op.qgen = h->o.hooks.next_gen(h->o.hooks.ud);
    sg_journal_submit(h->o.journal, &x->op);
}

void sg_hold_release(sg_hold *h, const sg_hold_request *r, sg_hold_done_fn done, void *ud)
{
    submit(h, SG_JOP_RELEASE, r, "release", 0, done, ud);
}

void sg_hold_drop(sg_hold *h, const sg_hold_request *r, sg_hold_done_fn done, void *ud)
{
    submit(h, SG_JOP_DROP, r, "drop", 0, done, ud);
}

/* ---- the drain ---- */

/* With on_storm = drain, held events leave at drain_rate per second, newest
 * build of each job only: the older ones are superseded, as an operator's
 * `release --newest-only` would do. One release at a time; the owner ticks
 * once a second. */
void sg_hold_tick(sg_hold *h, int64_t held)
{
    if (h->o.on_storm != SG_ON_STORM_DRAIN || h->draining || h->stopping || held <= 0)
        return;
    int64_t n = h->o.drain_rate;
    sg_hold_request r = {
        .filter = {.all = true}, .newest_only = true, .actor = "stormguard (drain)"};
    h->draining = true;
    submit(h, SG_JOP_RELEASE, &r, "drain", n > 0 ? n : 1, NULL, NULL);
}

void sg_hold_stop(sg_hold *h)
{
    h->stopping = true;
}
