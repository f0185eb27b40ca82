/* The held queue (DESIGN.md: hold, and the "held" state of the data model).
 *
 * While guard or storm mode is on for its source, a build of a job the index
 * has never seen (kind unknown) is not forwarded: it is journaled as held, or
 * dropped when on_storm = drop, and waits for an operator's release or drop,
 * or for the drain (on_storm = drain). Replays stay suppressed and new builds
 * are forwarded in every mode: they are genuine (DOMAIN.md section 4).
 *
 * Held events live only in the store (the classifier remembers their jobs,
 * the journal tells their second delivery from the store's ledger), so a
 * million of them cost no memory per event and all of them survive a
 * restart. A release moves them to a new queue
 * generation (004_held.sql) and lets the forwarder's refill find them: the
 * same path that resumes pending events after a restart, so a released build
 * is delivered at most once like any other. Leaving guard or storm mode
 * releases nothing by itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gate_int.h"
#include "stormguard/base/log.h"

#define DRAIN_TICK_MS 1000

const char *sg_hold_state(sg_gate *g, sg_kind kind, const char *source, int64_t now,
                          const char **why)
{
    *why = NULL;
    if (kind == SG_KIND_REPLAY)
        return "suppressed";
    if (kind != SG_KIND_UNKNOWN || sg_gate_mode_for(g, now, source) == SG_MODE_NORMAL)
        return "pending";
    if (!strcmp(g->cfg->on_storm, "drop")) {
        *why = "dropped on arrival: guard or storm mode with on_storm = drop";
        return "dropped";
    }
    return "held";
}

/* ---- release and drop ---- */

/* A release or drop of many events runs as chunks of CHUNK events, one
 * journal transaction each, so the gate's own commits (every answer to the
 * poller waits on one) slip in between instead of waiting seconds for a
 * single transaction over a million rows. */
#define CHUNK 5000

typedef struct hold_op {
    sg_jop op;
    sg_gate *g;
    sg_http_req *req;                      /* NULL for the drain */
    bool chunked;                          /* go on while a chunk says there may be more */
    int64_t released, superseded, dropped; /* over all chunks so far */
    char *source, *job, *reason, *actor, *detail;
} hold_op;

static void hold_op_free(hold_op *h)
{
    free(h->source);
    free(h->job);
    free(h->reason);
    free(h->actor);
    free(h->detail);
    free(h);
}

static char *dup_or_null(const char *s)
{
    return s ? sg_xstrdup(s) : NULL;
}

static void hold_op_reply(hold_op *h, int status, json_t *doc)
{
    if (h->req) {
        sg_gate_reply_json(h->req, status, doc, status == 503 ? 1 : 0);
    } else { /* the drain: nobody to answer */
        json_decref(doc);
        h->g->draining = false;
    }
    hold_op_free(h);
}

/* Applies a committed chunk to the counts (released events join the
 * delivery queue through the refill), then submits the next chunk or
 * answers. */
static void on_hold_done(sg_jop *op)
{
    hold_op *h = op->ud;
    sg_gate *g = h->g;
    bool release = op->type == SG_JOP_RELEASE;
    if (op->status) {
        sg_log(SG_LOG_ERROR, "hold", "%s failed: %s", op->action ? op->action : "release or drop",
               op->errmsg);
        char msg[400];
        snprintf(msg, sizeof msg,
                 "%s stopped: the journal cannot be written (%s); %lld done before that",
                 release ? "release" : "drop", op->errmsg,
                 (long long)(release ? h->released + h->superseded : h->dropped));
        hold_op_reply(h, 503, json_pack("{s:s}", "error", msg));
        return;
    }
    int64_t *c = g->counts[SG_KIND_UNKNOWN];
    if (release) {
        c[ST_HELD] -= op->released + op->superseded;
        c[ST_PENDING] += op->released;
        c[ST_SUPERSEDED] += op->superseded;
        h->released += op->released;
        h->superseded += op->superseded;
        if (op->released && !g->stopping) {
            g->spilled = true;
            sg_gate_refill(g);
        }
    } else {
        c[ST_HELD] -= op->dropped;
        c[ST_DROPPED] += op->dropped;
        h->dropped += op->dropped;
    }
    if (h->chunked && op->more && !g->stopping) {
        /* the audit row went with the first chunk; each chunk of a release
         * queues in a generation of its own, behind what arrived meanwhile */
        op->action = NULL;
        if (release)
            op->qgen = ++g->qgen;
        sg_journal_submit(g->journal, op);
        return;
    }
    if (release && (h->released || h->superseded))
        sg_log(SG_LOG_INFO, "hold", "%s by %s: %lld released, %lld superseded (%s)",
               h->req ? "release" : "drain", h->actor, (long long)h->released,
               (long long)h->superseded, h->detail);
    if (!release)
        sg_log(SG_LOG_INFO, "hold", "drop by %s: %lld dropped (%s)", h->actor,
               (long long)h->dropped, h->detail);
    if (h->chunked && op->more) { /* g->stopping */
        char msg[300];
        snprintf(msg, sizeof msg,
                 "stormguard is shutting down: %lld %s so far; run the command again after "
                 "the restart for the rest",
                 (long long)(release ? h->released : h->dropped), release ? "released" : "dropped");
        hold_op_reply(h, 503, json_pack("{s:s}", "error", msg));
        return;
    }
    hold_op_reply(h, 200,
                  release ? json_pack("{s:I,s:I}", "released", (json_int_t)h->released,
                                      "superseded", (json_int_t)h->superseded)
                          : json_pack("{s:I}", "dropped", (json_int_t)h->dropped));
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
        sg_buf_printf(&b, ", newest build per job only");
    if (reason)
        sg_buf_printf(&b, "; reason: %s", reason);
    return b.p;
}

/* limit > 0: one chunk of that many (the drain); 0: all, in chunks. */
static hold_op *hold_op_new(sg_gate *g, sg_http_req *req, sg_jop_type type, const sg_op_request *r,
                            const char *action, int64_t limit)
{
    hold_op *h = sg_xcalloc(1, sizeof *h);
    h->g = g;
    h->req = req;
    h->chunked = limit <= 0;
    h->source = dup_or_null(r->hold.all ? NULL : r->hold.source);
    h->job = dup_or_null(r->hold.all ? NULL : r->hold.job);
    h->reason = dup_or_null(r->reason);
    h->actor = sg_xstrdup(r->actor ? r->actor : "stormguard");
    h->detail = describe(&r->hold, r->newest_only, r->reason);
    h->op.type = type;
    h->op.hold = (sg_hold_filter){
        .all = r->hold.all, .source = h->source, .job = h->job, .limit = limit > 0 ? limit : CHUNK};
    h->op.newest_only = r->newest_only;
    h->op.reason = h->reason;
    h->op.actor = h->actor;
    h->op.action = action;
    h->op.detail = h->detail;
    h->op.done = on_hold_done;
    h->op.ud = h;
    if (type == SG_JOP_RELEASE) {
        /* released events queue behind everything submitted so far and
         * ahead of what arrives after: the next generation (store.h) */
        h->op.qgen = ++g->qgen;
    }
    return h;
}

static bool refuse_stopping(sg_gate *g, sg_http_req *req)
{
    if (!g->stopping)
        return false;
    sg_gate_reply_error(req, 503, "stormguard is shutting down", 1);
    return true;
}

void sg_gate_release(sg_gate *g, sg_http_req *req, const sg_op_request *r)
{
    if (refuse_stopping(g, req))
        return;
    hold_op *h = hold_op_new(g, req, SG_JOP_RELEASE, r, "release", 0);
    sg_journal_submit(g->journal, &h->op);
}

void sg_gate_drop(sg_gate *g, sg_http_req *req, const sg_op_request *r)
{
    if (refuse_stopping(g, req))
        return;
    hold_op *h = hold_op_new(g, req, SG_JOP_DROP, r, "drop", 0);
    sg_journal_submit(g->journal, &h->op);
}

/* ---- the drain ---- */

/* With on_storm = drain, held events leave at drain_rate per second, newest
 * build of each job only: the older ones are superseded, as an operator's
 * `release --newest-only` would do. One release at a time. */
static void on_drain_tick(uv_timer_t *t)
{
    sg_gate *g = t->data;
    if (g->draining || g->stopping || g->counts[SG_KIND_UNKNOWN][ST_HELD] <= 0)
        return;
    int64_t n = g->cfg->drain_rate * DRAIN_TICK_MS / 1000;
    sg_op_request r = {.hold = {.all = true}, .newest_only = true, .actor = "stormguard (drain)"};
    g->draining = true;
    hold_op *h = hold_op_new(g, NULL, SG_JOP_RELEASE, &r, "drain", n > 0 ? n : 1);
    sg_journal_submit(g->journal, &h->op);
}

void sg_hold_start(sg_gate *g)
{
    uv_timer_init(g->loop, &g->drain);
    g->drain.data = g;
    if (!strcmp(g->cfg->on_storm, "drain"))
        uv_timer_start(&g->drain, on_drain_tick, DRAIN_TICK_MS, DRAIN_TICK_MS);
}

void sg_hold_stop(sg_gate *g)
{
    uv_close((uv_handle_t *)&g->drain, NULL);
}

/* ---- the held summary ---- */

/* The summary groups every held row: a million of them take a second to
 * read, so it runs on libuv's thread pool with its own read-only connection
 * and the loop goes on answering meanwhile. The reply lists the `limit` jobs
 * with the most held events and the totals over all of them. */
typedef struct held_query {
    uv_work_t work;
    sg_gate *g;
    sg_http_req *req;
    int64_t limit, held, jobs_total;
    json_t *jobs;
    int rc;
    sg_error err;
} held_query;

static void held_job(void *ud, const char *source, const char *job, int64_t count, int64_t oldest,
                     int64_t newest)
{
    json_array_append_new(ud, json_pack("{s:s,s:s,s:I,s:I,s:I}", "source", source, "job", job,
                                        "count", (json_int_t)count, "oldest", (json_int_t)oldest,
                                        "newest", (json_int_t)newest));
}

static void held_work(uv_work_t *w)
{
    held_query *q = w->data;
    sg_store *s;
    sg_store_options ro = {.readonly = true};
    q->rc = sg_store_open(q->g->cfg->db_path, &ro, &s, &q->err);
    if (q->rc == 0) {
        q->rc = sg_store_held_summary(s, q->limit, held_job, q->jobs, &q->held, &q->jobs_total,
                                      &q->err);
        sg_store_free(s);
    }
}

static void held_done(uv_work_t *w, int status)
{
    held_query *q = w->data;
    if (status)
        sg_gate_reply_error(q->req, 503, "stormguard is shutting down", 1);
    else if (q->rc)
        sg_gate_reply_error(q->req, 500, q->err.msg, 0);
    else
        sg_gate_reply_json(q->req, 200,
                           json_pack("{s:I,s:I,s:O}", "held", (json_int_t)q->held, "jobs_total",
                                     (json_int_t)q->jobs_total, "jobs", q->jobs),
                           0);
    json_decref(q->jobs);
    free(q);
}

void sg_gate_held(sg_gate *g, sg_http_req *req, int64_t limit)
{
    held_query *q = sg_xcalloc(1, sizeof *q);
    q->g = g;
    q->req = req;
    q->limit = limit;
    q->jobs = json_array();
    q->work.data = q;
    int r = uv_queue_work(g->loop, &q->work, held_work, held_done);
    if (r) {
        char msg[160];
        snprintf(msg, sizeof msg, "cannot read the held queue now: %s", uv_strerror(r));
        sg_gate_reply_error(req, 503, msg, 1);
        json_decref(q->jobs);
        free(q);
    }
}
