/* The webhook gate (gate.h).
 *
 * A request's path:  http -> parse (event.c) -> classify (classify.c) ->
 * journal (writer thread, group commit) -> answer 200 once durable (503 if
 * the journal failed: the poller retries, nothing is half-written) ->
 * forward (forward.c) unless suppressed.
 *
 * A second delivery of a build the gate accepted before is told by the
 * journal, which checks the store's ledger in the transaction that would
 * add the build to it, so two deliveries racing each other cannot both be
 * accepted, and a crash leaves both the event and its ledger row or neither.
 * The loop only remembers which jobs the ledger knows.
 *
 * Delivery order: events reach the forwarder in journal (id) order. While
 * the forwarder's backlog is under SPILL_AT, committed events are pushed to it
 * directly; past that, the journal is the queue ("spilled") and the
 * forwarder is refilled from the store in id order as it drains, so memory
 * stays bounded however long the notifier is down. Startup is the spilled
 * state: pending events of the previous run are resumed the same way. */
#include "stormguard/gate/gate.h"
#include "stormguard/base/clock.h"
#include "gate_int.h"

#include <errno.h>
#include <malloc.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <uv.h>

#include "stormguard/gate/admin.h"
#include "stormguard/gate/classify.h"
#include "stormguard/gate/event.h"
#include "stormguard/gate/forward.h"
#include "stormguard/gate/http.h"
#include "stormguard/gate/journal.h"
#include "stormguard/base/log.h"
#include "stormguard/gate/metrics.h"
#include "stormguard/store/store.h"

/* ---- answering ---- */

void sg_gate_reply_json(sg_http_req *req, int status, json_t *doc, int retry_after)
{
    char *body = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(doc);
    sg_http_reply(req, status, "application/json", body, strlen(body), retry_after);
    free(body);
}

void sg_gate_reply_error(sg_http_req *req, int status, const char *msg, int retry_after)
{
    sg_gate_reply_json(req, status, json_pack("{s:s}", "error", msg), retry_after);
}

/* ---- forwarding ---- */

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

static int refill_one(void *ud, const sg_event_row *r)
{
    sg_gate *g = ud;
    sg_forward_push(g->fwd, item_from_row(r));
    g->loaded_gen = r->qgen;
    g->loaded_id = r->id;
    return 0;
}

/* Moves pending events from the journal to the forwarder, in id order,
 * while it has room. */
void sg_gate_refill(sg_gate *g)
{
    while (g->spilled && !g->stopping && sg_forward_backlog(g->fwd) < SPILL_AT / 2) {
        size_t before = sg_forward_backlog(g->fwd);
        int64_t upto = g->loaded_id;
        sg_error err;
        if (sg_store_events_pending(g->reader, g->loaded_gen, g->loaded_id, REFILL_BATCH,
                                    refill_one, g, &err)) {
            sg_log(SG_LOG_ERROR, "forward", "reading pending events: %s", err.msg);
            return;
        }
        size_t loaded = sg_forward_backlog(g->fwd) - before;
        if (loaded < REFILL_BATCH || g->loaded_id == upto)
            g->spilled = false; /* caught up with the journal */
    }
}

typedef struct fwd_update {
    sg_jop op;
    sg_gate *g;
    char *error;
} fwd_update;

static void on_update_done(sg_jop *op)
{
    fwd_update *u = op->ud;
    if (op->status)
        sg_log(SG_LOG_ERROR, "journal",
               "recording the delivery of event %lld failed (%s): it stays pending and is "
               "delivered again after a restart",
               (long long)op->row.id, op->errmsg);
    free(u->error);
    free(u);
}

static void on_forward_result(void *ud, sg_fwd_item *it, sg_fwd_outcome outcome, long status,
                              const char *error, double seconds)
{
    sg_gate *g = ud;
    g->fwd_attempts++;
    sg_histogram_observe(&g->forward_hist, seconds);
    int64_t now = sg_now_ms();
    if (outcome == SG_FWD_DELIVERED) {
        g->downstream_ok = true;
        g->downstream_last_ok = now;
    } else {
        g->fwd_failures++;
        g->downstream_last_fail = now;
        snprintf(g->downstream_error, sizeof g->downstream_error, "%s", error ? error : "");
        /* a refusal (4xx) is about the event; anything else about the downstream */
        if (outcome == SG_FWD_RETRY || status == 0 || status >= 500)
            g->downstream_ok = false;
    }
    /* also while stopping: the forwarder lets the deliveries in flight end
     * so that their results are journaled (a delivery the downstream took
     * must not go again after the restart) */
    fwd_update *u = sg_xcalloc(1, sizeof *u);
    u->g = g;
    u->error = error ? sg_xstrdup(error) : NULL;
    u->op.type = SG_JOP_UPDATE;
    u->op.row.id = it->id;
    u->op.row.attempts = it->attempts;
    u->op.row.last_error = u->error;
    u->op.done = on_update_done;
    u->op.ud = u;
    switch (outcome) {
    case SG_FWD_DELIVERED:
        u->op.row.state = "forwarded";
        u->op.row.done_at = now;
        break;
    case SG_FWD_RETRY:
        u->op.row.state = "pending";
        u->op.row.next_attempt_at = it->next_attempt_at;
        sg_log(SG_LOG_WARN, "forward", "event %lld attempt %lld failed: %s; retrying in %lld ms",
               (long long)it->id, (long long)it->attempts, error ? error : "?",
               (long long)(it->next_attempt_at - now));
        break;
    case SG_FWD_DEAD:
        u->op.row.state = "dead";
        u->op.row.done_at = now;
        sg_log(SG_LOG_ERROR, "forward", "event %lld %s %s is dead after %lld attempts: %s",
               (long long)it->id, it->method, it->path, (long long)it->attempts,
               error ? error : "?");
        break;
    }
    sg_journal_submit(g->journal, &u->op);
    if (outcome != SG_FWD_RETRY) {
        g->counts[it->tag][ST_PENDING]--;
        g->counts[it->tag][outcome == SG_FWD_DELIVERED ? ST_FORWARDED : ST_DEAD]++;
        sg_fwd_item_free(it);
    }
    sg_gate_refill(g);
}

/* ---- incoming events ---- */

typedef struct incoming {
    sg_jop op;
    sg_gate *g;
    sg_http_req *req;
    sg_event ev;
    sg_kind kind;
    char *method, *path, *body;
    size_t body_len;
    sg_buf headers;
} incoming;

static void incoming_free(incoming *in)
{
    sg_event_close(&in->ev);
    free(in->method);
    free(in->path);
    free(in->body);
    sg_buf_free(&in->headers);
    free(in);
}

static bool forwardable(sg_kind k)
{
    return k == SG_KIND_NEW || k == SG_KIND_UNKNOWN;
}

/* ---- the journal's health ---- */

/* While the journal cannot be written (a full or read-only disk), a probe
 * write every PROBE_EVERY_MS tells when it can again, so that /readyz comes
 * back by itself and not only with the next event a poller posts. */
#define PROBE_EVERY_MS 1000

static void journal_writable(sg_gate *g)
{
    if (g->journal_ok)
        return;
    sg_log(SG_LOG_INFO, "journal", "journal writable again");
    g->journal_ok = true;
    uv_timer_stop(&g->probe_timer);
}

static void on_probe_done(sg_jop *op)
{
    sg_gate *g = op->ud;
    g->probing = false;
    if (op->status == 0)
        journal_writable(g);
    else
        snprintf(g->journal_error, sizeof g->journal_error, "%s", op->errmsg);
}

static void on_probe_timer(uv_timer_t *t)
{
    sg_gate *g = t->data;
    if (g->probing || g->stopping || g->journal_ok)
        return;
    g->probing = true;
    g->probe = (sg_jop){.type = SG_JOP_PROBE, .done = on_probe_done, .ud = g};
    sg_journal_submit(g->journal, &g->probe);
}

static void journal_failed(sg_gate *g, const char *why)
{
    snprintf(g->journal_error, sizeof g->journal_error, "%s", why);
    if (!g->journal_ok)
        return;
    sg_log(SG_LOG_ERROR, "journal", "cannot journal events, answering 503: %s", why);
    g->journal_ok = false;
    if (!g->stopping)
        uv_timer_start(&g->probe_timer, on_probe_timer, PROBE_EVERY_MS, PROBE_EVERY_MS);
}

static void on_incoming_done(sg_jop *op)
{
    incoming *in = op->ud;
    sg_gate *g = in->g;
    if (op->status) {
        journal_failed(g, op->errmsg);
        g->unavailable++;
        char msg[400];
        snprintf(msg, sizeof msg, "event not accepted: the journal cannot be written (%s)",
                 op->errmsg);
        sg_gate_reply_error(in->req, 503, msg, 1);
        incoming_free(in);
        return;
    }
    journal_writable(g);
    sg_histogram_observe(&g->commit_hist, op->commit_s);
    if (op->duplicate) {
        /* of a build the store's ledger had; the storm detector saw it as
         * what it looked like at classification: set it right */
        if (in->kind != SG_KIND_REPLAY)
            sg_guard_replayed(g, op->row.received_at, in->ev.source);
        in->kind = SG_KIND_REPLAY;
    } else if (op->ledger)
        g->ledger_builds++;
    int st = state_index(op->row.state);
    g->counts[in->kind][st]++;
    g->received[in->kind]++;
    /* kind and state are fixed names (classify.h, the schema): no escaping */
    char reply[128];
    int n = snprintf(reply, sizeof reply, "{\"id\":%lld,\"kind\":\"%s\",\"state\":\"%s\"}",
                     (long long)op->row.id, sg_kind_name(in->kind), op->row.state);
    sg_http_reply(in->req, 200, "application/json", reply, (size_t)n, 0);
    if (st == ST_PENDING && !g->stopping) { /* else the next run delivers it */
        if (!g->spilled && sg_forward_backlog(g->fwd) < SPILL_AT) {
            sg_fwd_item *it = sg_xcalloc(1, sizeof *it);
            it->id = op->row.id;
            it->lane = forwardable(in->kind) ? sg_hash_job(in->ev.source, in->ev.job) : 0;
            it->method = in->method;
            it->path = in->path;
            it->headers = in->headers.p ? in->headers.p : sg_xstrdup("");
            it->body = in->body;
            it->body_len = in->body_len;
            it->received_at = op->row.received_at;
            it->tag = (int)in->kind;
            in->method = in->path = in->body = NULL;
            in->headers.p = NULL;
            g->loaded_gen = op->row.qgen;
            g->loaded_id = it->id;
            sg_forward_push(g->fwd, it);
        } else {
            g->spilled = true;
            sg_gate_refill(g);
        }
    }
    incoming_free(in);
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
}

static bool is_build_path(const sg_gate *g, sg_str path)
{
    const char *q = memchr(path.p, '?', path.len);
    size_t n = q ? (size_t)(q - path.p) : path.len;
    return sg_strlist_match(&g->cfg->build_paths, path.p, n);
}

static void on_request(void *ud, sg_http_req *req)
{
    sg_gate *g = ud;
    if (g->stopping) {
        sg_gate_reply_error(req, 503, "stormguard is shutting down", 1);
        return;
    }
    sg_str method = sg_http_method(req), path = sg_http_path(req), body = sg_http_body(req);
    incoming *in = sg_xcalloc(1, sizeof *in);
    in->g = g;
    in->req = req;
    sg_error err;
    if (sg_event_parse(body.p, body.len, is_build_path(g, path), &g->evcfg, &in->ev, &err)) {
        g->rejected++;
        sg_gate_reply_error(req, 400, err.msg, 0);
        incoming_free(in);
        return;
    }
    sg_reason why;
    in->kind = sg_classify(&g->index, &g->ledger, &in->ev, &why);
    int64_t now = sg_now_ms();
    /* The storm detector sees each event as it arrives, so the event that
     * trips it is already held; a second delivery the journal will call a
     * replay is corrected once it does (on_incoming_done). */
    if (in->kind != SG_KIND_PASSTHROUGH)
        sg_guard_observe(g, now, in->ev.source, in->ev.job, in->kind);
    /* In guard or storm mode only a snapshot makes a job known: the ledger
     * has no cursor, so an old build of a job it knows cannot be told from a
     * new one, and the first build held would let the rest through. */
    if (why == SG_REASON_LEDGER_JOB && sg_gate_mode_for(g, now, in->ev.source) != SG_MODE_NORMAL)
        in->kind = SG_KIND_UNKNOWN;
    /* copies: h2o may free the request (an HTTP/2 reset) while the journal
     * thread still reads them */
    in->method = sg_xstrndup(method.p, method.len);
    in->path = sg_xstrndup(path.p, path.len);
    in->body = sg_xmalloc(body.len + 1);
    memcpy(in->body, body.p, body.len);
    in->body_len = body.len;
    collect_headers(g, req, &in->headers);

    sg_event_row *r = &in->op.row;
    r->received_at = now;
    r->source = in->ev.source;
    r->job = in->ev.job;
    r->number = in->ev.number;
    r->build_ts = in->ev.build_ts;
    r->kind = sg_kind_name(in->kind);
    r->reason = sg_reason_name(why);
    r->state = sg_hold_state(g, in->kind, in->ev.source, now, &r->last_error);
    bool pending = !strcmp(r->state, "pending");
    if (forwardable(in->kind))
        sg_ledger_add(&g->ledger, in->ev.source, in->ev.job);
    r->done_at = pending || !strcmp(r->state, "held") ? 0 : now;
    r->qgen = pending ? g->qgen : 0;
    r->method = in->method;
    r->path = in->path;
    r->headers = in->headers.p ? in->headers.p : "";
    r->body = in->body;
    r->body_len = in->body_len;
    in->op.type = SG_JOP_INSERT;
    in->op.ledger = forwardable(in->kind);
    in->op.done = on_incoming_done;
    in->op.ud = in;
    sg_journal_submit(g->journal, &in->op);
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

static const sg_index_visitor index_visitor = {ix_cursor, ix_completed, ix_posted};

/* Loads the newest baseline into ix if it is not `current`; *id says which. */
static int load_baseline(const char *path, int64_t current, sg_index *ix, int64_t *id,
                         sg_error *err)
{
    sg_store *s;
    sg_store_options opt = {.readonly = true};
    int rc = sg_store_open(path, &opt, &s, err);
    if (rc)
        return rc;
    rc = sg_store_baseline(s, id, err);
    if (rc == 0 && *id && *id != current) {
        sg_index_init(ix);
        ix->snapshot_id = *id;
        rc = sg_store_index_each(s, *id, &index_visitor, ix, err);
        if (rc)
            sg_index_close(ix);
    }
    sg_store_free(s);
    return rc;
}

typedef struct reload {
    uv_work_t work;
    sg_gate *g;
    int64_t current, id;
    bool trim; /* give freed memory back to the system first */
    sg_index ix;
    int rc;
    sg_error err;
} reload;

static void reload_work(uv_work_t *w)
{
    reload *r = w->data;
    if (r->trim)
        malloc_trim(0); /* the index the last reload replaced (see sidecar.c) */
    r->rc = load_baseline(r->g->cfg->db_path, r->current, &r->ix, &r->id, &r->err);
}

static void reload_done(uv_work_t *w, int status)
{
    reload *r = w->data;
    sg_gate *g = r->g;
    g->reloading = false;
    if (status == 0 && r->rc == 0 && r->id && r->id != r->current) {
        sg_index_close(&g->index);
        g->trim_pending = true;
        g->index = r->ix;
        g->baseline_id = r->id;
        sg_log(SG_LOG_INFO, "gate", "classifying against snapshot %lld (%zu jobs)",
               (long long)r->id, g->index.jobs.len);
        sg_guard_baseline(g, r->id, false);
    } else if (r->rc) {
        sg_log(SG_LOG_ERROR, "gate", "reloading the build index: %s", r->err.msg);
    }
    free(r);
}

/* One line of activity per SUMMARY_TICKS ticks, when there was any. */
#define SUMMARY_TICKS 2

static void log_activity(sg_gate *g)
{
    uint64_t got[N_KINDS], total = 0;
    for (int k = 0; k < N_KINDS; k++) {
        got[k] = g->received[k] - g->logged_received[k];
        total += got[k];
        g->logged_received[k] = g->received[k];
    }
    uint64_t attempts = g->fwd_attempts - g->logged_attempts;
    uint64_t failures = g->fwd_failures - g->logged_failures;
    uint64_t rejected = g->rejected - g->logged_rejected;
    g->logged_attempts = g->fwd_attempts;
    g->logged_failures = g->fwd_failures;
    g->logged_rejected = g->rejected;
    if (!total && !attempts && !rejected)
        return;
    sg_log(SG_LOG_INFO, "gate",
           "last %ds: %llu events (%llu new, %llu unknown, %llu replays suppressed, %llu "
           "pass-through), %llu rejected; %llu deliveries, %llu failed",
           SUMMARY_TICKS * BASELINE_CHECK_MS / 1000, (unsigned long long)total,
           (unsigned long long)got[SG_KIND_NEW], (unsigned long long)got[SG_KIND_UNKNOWN],
           (unsigned long long)got[SG_KIND_REPLAY], (unsigned long long)got[SG_KIND_PASSTHROUGH],
           (unsigned long long)rejected, (unsigned long long)(attempts - failures),
           (unsigned long long)failures);
}

/* ---- the journal's retention ---- */

/* Once an hour (the first time shortly after the start), events older than
 * [store] keep_events that are done with are deleted, a chunk per journal
 * transaction so the gate's own commits go in between. Without it the
 * journal, every body included, grows until the disk is full. */
#define PRUNE_FIRST_MS 10000
#define PRUNE_EVERY_MS (3600 * 1000LL)

static void on_prune_done(sg_jop *op)
{
    sg_gate *g = op->ud;
    if (op->status) {
        sg_log(SG_LOG_WARN, "journal", "pruning events older than %llds: %s (next try in an hour)",
               (long long)g->cfg->keep_events_s, op->errmsg);
    } else {
        g->pruned_pass += op->pruned;
        if (op->more && !g->stopping) {
            sg_journal_submit(g->journal, op);
            return;
        }
        if (g->pruned_pass)
            sg_log(SG_LOG_INFO, "journal", "pruned %lld events older than %llds",
                   (long long)g->pruned_pass, (long long)g->cfg->keep_events_s);
    }
    g->pruning = false;
    g->next_prune_at = sg_now_ms() + PRUNE_EVERY_MS;
}

static void maybe_prune(sg_gate *g, int64_t now)
{
    if (g->pruning || g->stopping || !g->cfg->keep_events_s || now < g->next_prune_at)
        return;
    g->pruning = true;
    g->pruned_pass = 0;
    g->prune = (sg_jop){.type = SG_JOP_PRUNE,
                        .prune_before = now - g->cfg->keep_events_s * 1000,
                        .done = on_prune_done,
                        .ud = g};
    sg_journal_submit(g->journal, &g->prune);
}

/* ---- the store's disk space ---- */

typedef struct space_job {
    uv_work_t work;
    sg_gate *g;
    int64_t free_bytes, store_bytes; /* -1: unknown */
} space_job;

static void space_work(uv_work_t *w)
{
    space_job *j = w->data;
    const char *path = j->g->cfg->db_path;
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
    j->g->measuring = false;
    if (status == 0) {
        j->g->store_free_bytes = j->free_bytes;
        j->g->store_bytes = j->store_bytes;
    }
    free(j);
}

/* How much room the store has, off the loop (statvfs may wait on a network
 * file system): /v1/status reports it. */
static void measure_space(sg_gate *g)
{
    if (g->measuring || g->stopping)
        return;
    space_job *j = sg_xcalloc(1, sizeof *j);
    j->g = g;
    j->work.data = j;
    if (uv_queue_work(g->loop, &j->work, space_work, space_done) == 0)
        g->measuring = true;
    else
        free(j);
}

static void on_tick(uv_timer_t *t)
{
    sg_gate *g = t->data;
    sg_gate_refill(g);
    if (++g->ticks % SUMMARY_TICKS == 0)
        log_activity(g);
    maybe_prune(g, sg_now_ms());
    measure_space(g);
    if (g->reloading || g->stopping)
        return;
    reload *r = sg_xcalloc(1, sizeof *r);
    r->g = g;
    r->current = g->baseline_id;
    r->trim = g->trim_pending;
    g->trim_pending = false;
    r->work.data = r;
    if (uv_queue_work(g->loop, &r->work, reload_work, reload_done) == 0)
        g->reloading = true;
    else
        free(r);
}

/* ---- status for the admin API ---- */

json_t *sg_gate_status(sg_gate *g)
{
    json_t *counts = json_object();
    int64_t pending = 0;
    for (int k = 0; k < N_KINDS; k++) {
        json_t *by_state = json_object();
        for (int s = 0; s < N_STATES; s++)
            if (g->counts[k][s])
                json_object_set_new(by_state, state_names[s], json_integer(g->counts[k][s]));
        json_object_set_new(counts, sg_kind_name((sg_kind)k), by_state);
        pending += g->counts[k][ST_PENDING];
    }
    char started[40], ok[40] = "", fail[40] = "";
    sg_format_time(g->started_at, started, sizeof started);
    if (g->downstream_last_ok)
        sg_format_time(g->downstream_last_ok, ok, sizeof ok);
    if (g->downstream_last_fail)
        sg_format_time(g->downstream_last_fail, fail, sizeof fail);
    json_t *snapshot = json_null();
    sg_snapshot_info info;
    sg_error err;
    if (g->baseline_id && sg_store_snapshot_get(g->reader, g->baseline_id, &info, &err) == 0) {
        char when[40];
        sg_format_time(info.taken_at_ms, when, sizeof when);
        snapshot = json_pack("{s:I,s:s,s:s,s:I,s:I}", "id", (json_int_t)info.id, "taken_at", when,
                             "reason", info.reason, "keys", (json_int_t)info.key_count, "jobs",
                             (json_int_t)g->index.jobs.len);
        sg_snapshot_info_close(&info);
    }
    json_t *doc = json_pack(
        "{s:s,s:s,s:I,s:o,s:I,s:{s:b,s:i,s:s?},s:{s:s,s:b,s:I,s:I,s:s?,s:s?,s:s?},s:o,s:I}", "mode",
        sg_mode_name(sg_modes_overall(&g->modes, sg_now_ms())), "started_at", started, "uptime_s",
        (json_int_t)((sg_now_ms() - g->started_at) / 1000), "counts", counts, "pending",
        (json_int_t)pending, "journal", "writable", g->journal_ok, "depth",
        sg_journal_depth(g->journal), "error", g->journal_ok ? NULL : g->journal_error,
        "downstream", "url", g->cfg->downstream, "healthy", g->downstream_ok, "inflight",
        (json_int_t)sg_forward_inflight(g->fwd), "backlog", (json_int_t)sg_forward_backlog(g->fwd),
        "last_ok", g->downstream_last_ok ? ok : NULL, "last_failure",
        g->downstream_last_fail ? fail : NULL, "last_error",
        g->downstream_last_fail ? g->downstream_error : NULL, "snapshot", snapshot, "ledger",
        (json_int_t)g->ledger_builds);
    json_t *journal = json_object_get(doc, "journal");
    json_object_set_new(journal, "headroom_bytes", json_integer(SG_JOURNAL_HEADROOM_BYTES));
    if (g->store_free_bytes >= 0) {
        json_object_set_new(journal, "free_bytes", json_integer(g->store_free_bytes));
        json_object_set_new(journal, "store_bytes", json_integer(g->store_bytes));
        json_object_set_new(journal, "low_space",
                            json_boolean(g->store_free_bytes < SG_JOURNAL_HEADROOM_BYTES));
    }
    json_object_set_new(doc, "redis",
                        g->watch ? sg_watch_status(g->watch) : json_string("not watched"));
    json_t *modes = sg_guard_status(g);
    json_object_update(doc, modes);
    json_decref(modes);
    return doc;
}

static int event_json(void *ud, const sg_event_row *r)
{
    json_t *arr = ud;
    char when[40];
    sg_format_time(r->received_at, when, sizeof when);
    json_t *o =
        json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:I}", "id", (json_int_t)r->id, "received_at", when,
                  "kind", r->kind, "state", r->state, "reason", r->reason, "method", r->method,
                  "path", r->path, "attempts", (json_int_t)r->attempts);
    if (r->source) {
        json_object_set_new(o, "source", json_string(r->source));
        json_object_set_new(o, "job", json_string(r->job));
        json_object_set_new(o, "number", json_integer(r->number));
    }
    if (r->build_ts)
        json_object_set_new(o, "build_ts", json_integer(r->build_ts));
    if (r->last_error)
        json_object_set_new(o, "last_error", json_string(r->last_error));
    json_array_append_new(arr, o);
    return 0;
}

int sg_gate_events(sg_gate *g, const char *state, const char *kind, const char *job, int limit,
                   json_t **out, sg_error *err)
{
    json_t *arr = json_array();
    int rc = sg_store_events_query(g->reader, state, kind, job, limit, event_json, arr, err);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    *out = json_pack("{s:o}", "events", arr);
    return 0;
}

void sg_gate_metrics(sg_gate *g, sg_buf *b)
{
    sg_metric_family(b, "stormguard_events_received_total", "counter",
                     "Events journaled and answered 200, by kind");
    for (int k = 0; k < N_KINDS; k++) {
        char labels[64];
        snprintf(labels, sizeof labels, "kind=\"%s\"", sg_kind_name((sg_kind)k));
        sg_metric_sample(b, "stormguard_events_received_total", labels, (double)g->received[k]);
    }
    sg_metric_family(b, "stormguard_events", "gauge", "Journaled events by kind and state");
    for (int k = 0; k < N_KINDS; k++)
        for (int s = 0; s < N_STATES; s++) {
            char labels[96];
            snprintf(labels, sizeof labels, "kind=\"%s\",state=\"%s\"", sg_kind_name((sg_kind)k),
                     state_names[s]);
            sg_metric_sample(b, "stormguard_events", labels, (double)g->counts[k][s]);
        }
    sg_metric_family(b, "stormguard_requests_rejected_total", "counter",
                     "Requests answered 400 (malformed or absurd events)");
    sg_metric_sample(b, "stormguard_requests_rejected_total", "", (double)g->rejected);
    sg_metric_family(b, "stormguard_http_refused_total", "counter",
                     "Requests refused before they were read as events (a method, target or "
                     "header the gate could not forward; a header section over max_header)");
    sg_metric_sample(b, "stormguard_http_refused_total", "", (double)sg_http_refused(g->http));
    sg_metric_family(b, "stormguard_requests_unavailable_total", "counter",
                     "Requests answered 503 because the journal could not be written");
    sg_metric_sample(b, "stormguard_requests_unavailable_total", "", (double)g->unavailable);
    sg_metric_family(b, "stormguard_forward_attempts_total", "counter",
                     "Delivery attempts to the downstream");
    sg_metric_sample(b, "stormguard_forward_attempts_total", "", (double)g->fwd_attempts);
    sg_metric_family(b, "stormguard_forward_failures_total", "counter",
                     "Delivery attempts that failed (retried or dead)");
    sg_metric_sample(b, "stormguard_forward_failures_total", "", (double)g->fwd_failures);
    int64_t pending = 0, held = 0;
    for (int k = 0; k < N_KINDS; k++) {
        pending += g->counts[k][ST_PENDING];
        held += g->counts[k][ST_HELD];
    }
    sg_metric_family(b, "stormguard_pending", "gauge", "Events waiting for delivery");
    sg_metric_sample(b, "stormguard_pending", "", (double)pending);
    sg_metric_family(b, "stormguard_held", "gauge", "Events held during a storm");
    sg_metric_sample(b, "stormguard_held", "", (double)held);
    sg_metric_family(b, "stormguard_mode", "gauge",
                     "1 for the gate's current mode (normal, guard or storm)");
    sg_mode mode = sg_modes_overall(&g->modes, sg_now_ms());
    for (int m = SG_MODE_NORMAL; m <= SG_MODE_STORM; m++) {
        char labels[32];
        snprintf(labels, sizeof labels, "mode=\"%s\"", sg_mode_name((sg_mode)m));
        sg_metric_sample(b, "stormguard_mode", labels, m == (int)mode);
    }
    sg_metric_family(b, "stormguard_wipes_total", "counter", "Redis wipes detected");
    sg_metric_sample(b, "stormguard_wipes_total", "", (double)g->wipes);
    sg_metric_family(b, "stormguard_storm_signals_total", "counter",
                     "Storm signals reported (the first per source and window)");
    sg_metric_sample(b, "stormguard_storm_signals_total", "", (double)g->storms);
    sg_metric_family(b, "stormguard_rewarms_total", "counter", "Rewarms after a wipe");
    sg_metric_sample(b, "stormguard_rewarms_total", "", (double)g->rewarms);
    sg_metric_family(b, "stormguard_redis_up", "gauge", "1 while the watched Redis answers");
    sg_metric_sample(b, "stormguard_redis_up", "", g->watch && g->redis_up);
    sg_metric_family(b, "stormguard_forward_inflight", "gauge", "Deliveries in flight");
    sg_metric_sample(b, "stormguard_forward_inflight", "", (double)sg_forward_inflight(g->fwd));
    sg_metric_family(b, "stormguard_journal_depth", "gauge", "Journal writes not yet committed");
    sg_metric_sample(b, "stormguard_journal_depth", "", (double)sg_journal_depth(g->journal));
    sg_metric_histogram(b, "stormguard_journal_commit_seconds",
                        "Duration of the journal transactions events waited for", &g->commit_hist);
    sg_metric_histogram(b, "stormguard_forward_seconds", "Duration of delivery attempts",
                        &g->forward_hist);
}

bool sg_gate_ready(sg_gate *g, json_t *reasons)
{
    bool ready = true;
    if (!g->journal_ok) {
        json_array_append_new(reasons, json_sprintf("journal not writable: %s", g->journal_error));
        ready = false;
    }
    if (!g->downstream_ok) {
        json_array_append_new(reasons, json_sprintf("downstream %s unreachable: %s",
                                                    g->cfg->downstream, g->downstream_error));
        ready = false;
    }
    if (g->stopping) {
        json_array_append_new(reasons, json_string("shutting down"));
        ready = false;
    }
    return ready;
}

void sg_gate_degraded(sg_gate *g, json_t *reasons)
{
    if (g->store_free_bytes >= 0 && g->store_free_bytes < SG_JOURNAL_HEADROOM_BYTES)
        json_array_append_new(
            reasons, json_sprintf("the store's file system has %lld MiB free; the journal needs "
                                  "%lld MiB of headroom (commits may fail for want of space)",
                                  (long long)(g->store_free_bytes >> 20),
                                  (long long)(SG_JOURNAL_HEADROOM_BYTES >> 20)));
    /* the gate keeps classifying and forwarding without Redis: degraded, not
     * unready, but wipes go unnoticed until it is back */
    if (!g->watch || g->redis_up)
        return;
    json_t *w = sg_watch_status(g->watch);
    const char *addr = json_string_value(json_object_get(w, "address"));
    const char *why = json_string_value(json_object_get(w, "last_error"));
    json_array_append_new(reasons, json_sprintf("Redis %s unreachable (%s): wipes go unnoticed",
                                                addr ? addr : "?", why ? why : "no answer yet"));
    json_decref(w);
}

/* ---- start and stop ---- */

static void on_closed_signal(uv_handle_t *h)
{
    (void)h;
}

/* The last stage: the journal has committed everything. */
static void on_journal_stopped(void *ud)
{
    sg_gate *g = ud;
    g->journal = NULL;
    uv_close((uv_handle_t *)&g->sigterm, on_closed_signal);
    uv_close((uv_handle_t *)&g->sigint, on_closed_signal);
    uv_close((uv_handle_t *)&g->sighup, on_closed_signal);
}

/* Both listeners are closed, so every answered event is committed (answers
 * are sent after commits), and the deliveries in flight have ended and had
 * their results submitted: the journal commits what is queued and stops.
 * The journal's read-write connections close last: only such a last
 * connection checkpoints and removes the WAL. Nothing reads from here on. */
static void on_part_stopped(void *ud)
{
    sg_gate *g = ud;
    if (--g->stop_waits > 0)
        return;
    g->http = g->admin_http = NULL;
    sg_store_free(g->reader);
    g->reader = NULL;
    sg_journal_stop(g->journal, on_journal_stopped, g);
}

static void on_forward_stopped(void *ud)
{
    sg_gate *g = ud;
    g->fwd = NULL;
    on_part_stopped(g);
}

static void stop(sg_gate *g, const char *why)
{
    if (g->stopping)
        return;
    g->stopping = true;
    size_t inflight = sg_forward_inflight(g->fwd);
    sg_log(SG_LOG_INFO, "gate",
           "%s: stopping (finishing commits in flight and %zu deliveries, at most %llds)", why,
           inflight, (long long)g->cfg->forward_timeout_s);
    uv_close((uv_handle_t *)&g->tick, NULL);
    uv_close((uv_handle_t *)&g->probe_timer, NULL);
    sg_hold_stop(g);
    sg_guard_stop(g);
    g->stop_waits = 3;
    sg_forward_stop(g->fwd, on_forward_stopped, g);
    sg_http_stop(g->http, on_part_stopped, g);
    sg_http_stop(g->admin_http, on_part_stopped, g);
}

static void on_signal(uv_signal_t *s, int signum)
{
    sg_gate *g = s->data;
    if (signum == SIGHUP) {
        sg_log_reopen();
        return;
    }
    stop(g, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void count_events(void *ud, const char *kind, const char *state, int64_t n)
{
    sg_gate *g = ud;
    sg_kind k;
    int s = state_index(state);
    if (sg_kind_parse(kind, &k) == 0 && s >= 0)
        g->counts[k][s] = n;
}

static void ledger_add(void *ud, const char *source, const char *job)
{
    sg_ledger_add(ud, source, job);
}

static bool loopback(const char *listen)
{
    return !strncmp(listen, "127.", 4) || !strncmp(listen, "[::1]:", 6) ||
           !strncmp(listen, "localhost:", 10);
}

/* The admin token; none is allowed only on loopback. */
static int admin_token(const sg_config *c, char **out, sg_error *err)
{
    int rc = sg_config_admin_token(c, out, err);
    if (rc == 0 && !*out && !loopback(c->admin_listen))
        return sg_error_set(err, SG_EUSAGE,
                            "the admin API listens on %s, beyond loopback, but no admin token "
                            "is configured ([admin] token or token_file)",
                            c->admin_listen);
    return rc;
}

static int start(sg_gate *g, sg_error *err)
{
    const sg_config *c = g->cfg;
    int rc;
    if (!c->downstream)
        return sg_error_set(err, SG_EUSAGE,
                            "no downstream: give the notifier's URL with --downstream or "
                            "[gate] downstream");
    if ((c->source_pointer || c->job_pointer || c->number_pointer) &&
        !(c->source_pointer && c->job_pointer && c->number_pointer))
        return sg_error_set(err, SG_EUSAGE,
                            "generic events need source_pointer, job_pointer and "
                            "number_pointer together");
    if ((rc = admin_token(c, &g->admin_token, err)))
        return rc;
    g->evcfg.generic = (sg_event_pointers){c->source_pointer, c->job_pointer, c->number_pointer,
                                           c->timestamp_pointer};
    g->evcfg.notification_source = c->notification_source;

    if ((rc = sg_journal_start(g->loop, c->db_path, c->synchronous, &g->journal, err)))
        return rc;
    /* SQLite maps the WAL's index (<db>-shm) into memory: when its file
     * system fails (NFS gone, a remount, the file made immutable) touching
     * it raises SIGBUS. Nothing can be journaled after that, and nothing
     * lost by stopping: every event answered 200 is committed. So one clear
     * line and exit 1, for the supervisor to restart the daemon once the
     * store is back, instead of a crash report. */
    char *bus = sg_xasprintf(
        "the store %s could not be read or written through its memory map (SIGBUS; the "
        "WAL index %s-shm or the database on a file system that failed, went read-only or "
        "was removed): exiting; every event answered 200 is committed and resumes at the "
        "next start",
        c->db_path, c->db_path);
    sg_log_fatal_signal(SIGBUS, "store", bus);
    free(bus);
    sg_store_options ro = {.readonly = true};
    if ((rc = sg_store_open(c->db_path, &ro, &g->reader, err)) ||
        (rc = sg_store_queue_gen(g->reader, &g->qgen, err)) ||
        (rc = sg_store_ledger_jobs(g->reader, ledger_add, &g->ledger, &g->ledger_builds, err)) ||
        (rc = sg_store_event_counts(g->reader, count_events, g, err)))
        return rc;
    sg_index fresh;
    if ((rc = load_baseline(c->db_path, 0, &fresh, &g->baseline_id, err)))
        return rc;
    if (g->baseline_id)
        g->index = fresh;

    sg_forward_opts fo = {.downstream = c->downstream,
                          .max_inflight = (int)c->max_inflight,
                          .timeout_ms = (int)(c->forward_timeout_s * 1000),
                          .max_age_ms = c->forward_max_age_s * 1000,
                          .retry_base_ms = (int)c->retry_base_ms,
                          .retry_max_ms = (int)(c->retry_max_s * 1000)};
    if ((rc = sg_forward_start(g->loop, &fo, on_forward_result, g, &g->fwd, err)))
        return rc;
    sg_http_opts ho = {.listen = c->listen,
                       .max_body = (size_t)c->max_body,
                       .max_header = (size_t)c->max_header,
                       .read_timeout_ms = (int)(c->read_timeout_s * 1000),
                       .max_connections = (int)c->max_connections,
                       .tls_cert = c->tls_cert,
                       .tls_key = c->tls_key};
    if ((rc = sg_http_start(g->loop, &ho, on_request, g, &g->http, err)))
        return sg_error_prefix(err, "gate");
    g->admin = (sg_admin){.gate = g, .token = g->admin_token};
    sg_http_opts ao = {.listen = c->admin_listen,
                       .max_body = 64 << 10,
                       .max_header = (size_t)c->max_header,
                       .read_timeout_ms = (int)(c->read_timeout_s * 1000),
                       .max_connections = 64};
    if ((rc = sg_http_start(g->loop, &ao, sg_admin_handle, &g->admin, &g->admin_http, err)))
        return sg_error_prefix(err, "admin API");

    sg_hold_start(g);
    if ((rc = sg_guard_start(g, err)))
        return rc;
    uv_signal_init(g->loop, &g->sigterm);
    uv_signal_init(g->loop, &g->sigint);
    uv_signal_init(g->loop, &g->sighup);
    g->sigterm.data = g->sigint.data = g->sighup.data = g;
    uv_signal_start(&g->sigterm, on_signal, SIGTERM);
    uv_signal_start(&g->sigint, on_signal, SIGINT);
    uv_signal_start(&g->sighup, on_signal, SIGHUP);
    g->next_prune_at = sg_now_ms() + PRUNE_FIRST_MS;
    uv_timer_init(g->loop, &g->tick);
    g->tick.data = g;
    uv_timer_init(g->loop, &g->probe_timer);
    g->probe_timer.data = g;
    measure_space(g);
    uv_timer_start(&g->tick, on_tick, BASELINE_CHECK_MS, BASELINE_CHECK_MS);

    int64_t pending = 0;
    for (int k = 0; k < N_KINDS; k++)
        pending += g->counts[k][ST_PENDING];
    sg_log(SG_LOG_INFO, "gate",
           "listening on %s (admin %s%s), forwarding to %s; baseline snapshot %lld (%zu jobs), "
           "ledger %lld builds of %zu jobs, %lld events pending",
           c->listen, c->admin_listen, g->admin_token ? ", token required" : "", c->downstream,
           (long long)g->baseline_id, g->index.jobs.len, (long long)g->ledger_builds,
           g->ledger.jobs.len, (long long)pending);
    g->spilled = true; /* resume what the last run left pending */
    sg_gate_refill(g);
    return 0;
}

int sg_gate_run(const sg_config *cfg, sg_error *err)
{
    int rc = sg_log_open(cfg->log_format, cfg->log_file, err);
    if (rc)
        return rc;
    sg_hash_seed_random();
    uv_loop_t loop;
    uv_loop_init(&loop);
    sg_gate *g = sg_xcalloc(1, sizeof *g);
    g->loop = &loop;
    g->cfg = cfg;
    g->started_at = sg_now_ms();
    g->journal_ok = g->downstream_ok = true;
    g->store_free_bytes = -1; /* until measured */
    sg_index_init(&g->index);
    sg_ledger_init(&g->ledger);

    rc = start(g, err);
    if (rc) {
        /* unwind whatever started, then let the loop close the handles */
        g->stopping = true;
        if (g->http)
            sg_http_stop(g->http, NULL, NULL);
        if (g->admin_http)
            sg_http_stop(g->admin_http, NULL, NULL);
        if (g->fwd)
            sg_forward_stop(g->fwd, NULL, NULL);
        if (g->journal)
            sg_journal_stop(g->journal, NULL, NULL);
        if (g->drain.loop)
            sg_hold_stop(g);
        if (g->guard_tick.loop)
            sg_guard_stop(g);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    int busy = uv_loop_close(&loop);
    if (rc == 0 && busy)
        sg_log(SG_LOG_WARN, "gate", "libuv handles still open at exit: %s", uv_strerror(busy));
    if (rc == 0)
        sg_log(SG_LOG_INFO, "gate", "stopped");
    sg_store_free(g->reader);
    sg_guard_close(g);
    sg_index_close(&g->index);
    sg_ledger_close(&g->ledger);
    free(g->admin_token);
    free(g);
    sg_log_close();
    return rc;
}
