/* The admin API (admin.h): routing, the bearer token, and every answer the
 * operator gets, JSON and Prometheus text, made from what the gate, its
 * core, the guard and the held queue report. */
#include "stormguard/gate/admin.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stormguard/base/util.h"
#include "stormguard/gate/classify.h"
#include "stormguard/gate/core.h"
#include "stormguard/redis/watch.h"
#include "stormguard/redis/watchset.h"
#include "stormguard/store/events.h"
#include "stormguard/store/held.h"

bool sg_token_equal(const char *token, size_t len, const char *expected)
{
    size_t n = strlen(expected);
    /* compare every byte of the longer of the two, whatever differs first */
    unsigned char diff = len != n;
    size_t m = len > n ? len : n;
    for (size_t i = 0; i < m; i++) {
        unsigned char a = i < len ? (unsigned char)token[i] : 0;
        unsigned char b = i < n ? (unsigned char)expected[i] : 0;
        diff |= a ^ b;
    }
    return diff == 0;
}

/* Answers with doc (its reference taken), with Retry-After when > 0. */
static void reply_after(sg_http_req *req, int status, json_t *doc, int retry_after)
{
    char *body = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(doc);
    sg_http_reply(req, status, "application/json", body, strlen(body), retry_after);
    free(body);
}

static void reply(sg_http_req *req, int status, json_t *doc)
{
    reply_after(req, status, doc, 0);
}

static void reply_error(sg_http_req *req, int status, const char *msg)
{
    reply(req, status, json_pack("{s:s}", "error", msg));
}

/* 503 while the daemon stops: true if it answered. */
static bool refuse_stopping(sg_admin *a, sg_http_req *req)
{
    if (!sg_core_stopping(sg_gate_core(a->gate)))
        return false;
    reply_after(req, 503, json_pack("{s:s}", "error", "stormguard is shutting down"), 1);
    return true;
}

static bool authorized(const sg_admin *a, const sg_http_req *req)
{
    if (!a->token)
        return true;
    sg_str v;
    /* RFC 9110 11.1: the scheme name is case-insensitive, then 1*SP */
    if (!sg_http_header(req, "authorization", &v) || v.len < 7 || strncasecmp(v.p, "bearer ", 7))
        return false;
    size_t at = 7;
    while (at < v.len && v.p[at] == ' ')
        at++;
    return sg_token_equal(v.p + at, v.len - at, a->token);
}

static int hex(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Copies the percent-decoded value of query parameter name into buf; false if
 * absent. A value too long for buf, or with a bad or NUL escape, is absent. */
static bool query_param(sg_str path, const char *name, char *buf, size_t size)
{
    const char *q = memchr(path.p, '?', path.len);
    if (!q)
        return false;
    const char *end = path.p + path.len, *p = q + 1;
    size_t n = strlen(name);
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - p) > n && !strncmp(p, name, n) && p[n] == '=') {
            size_t o = 0;
            for (const char *c = p + n + 1; c < stop; c++) {
                int ch = (unsigned char)*c;
                if (ch == '+') {
                    ch = ' ';
                } else if (ch == '%') {
                    int hi = c + 1 < stop ? hex(c[1]) : -1;
                    int lo = c + 2 < stop ? hex(c[2]) : -1;
                    if (hi < 0 || lo < 0 || (hi | lo) == 0)
                        return false;
                    ch = hi * 16 + lo;
                    c += 2;
                }
                if (o + 1 >= size)
                    return false;
                buf[o++] = (char)ch;
            }
            buf[o] = '\0';
            return true;
        }
        p = stop + 1;
    }
    return false;
}

/* ---- /v1/status ---- */

static json_t *time_or_null(int64_t ms)
{
    if (!ms)
        return json_null();
    char when[40];
    sg_format_time(ms, when, sizeof when);
    return json_string(when);
}

static json_t *string_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* A watcher's report as /v1/status shows it (README: "redis"). */
static json_t *watch_json(const sg_watch_report *w)
{
    json_t *st = json_pack(
        "{s:s,s:s?,s:s?,s:s?,s:o,s:o,s:o,s:b,s:b,s:o,s:o,s:I,s:o,s:I}", "link",
        sg_watch_link_name(w->link), "address", w->address, "server", w->server, "canary",
        w->canary, "run_id", string_or_null(w->run_id), "role", string_or_null(w->role),
        "redis_version", string_or_null(w->redis_version), "tracking", w->tracking, "armed",
        w->armed, "last_check", time_or_null(w->last_check_ms), "dbsize",
        w->last_check_ms ? json_integer(w->dbsize) : json_null(), "sample", (json_int_t)w->sample,
        "last_error", string_or_null(w->last_error), "wipes", (json_int_t)w->wipes);
    return st;
}

/* The watched Redis; for a Cluster also each master ("masters"). */
static json_t *redis_json(const sg_gate_info *gi)
{
    json_t *st = watch_json(&gi->watch);
    size_t n = sg_watchset_masters(gi->watchset);
    if (!n)
        return st;
    json_t *masters = json_array();
    for (size_t i = 0; i < n; i++) {
        sg_watch_report r;
        const char *slots;
        sg_watchset_master_report(gi->watchset, i, &r, &slots);
        json_t *m = watch_json(&r);
        json_object_set_new(m, "slots", json_string(slots));
        json_array_append_new(masters, m);
    }
    json_object_set_new(st, "masters", masters);
    return st;
}

/* Guard, storms and the guard's counters, merged into the status. */
static void guard_status(json_t *doc, const sg_guard_report *gr, int64_t held)
{
    json_t *guard = json_null();
    if (gr->guard)
        guard = json_pack("{s:o,s:o,s:s?}", "since", time_or_null(gr->guard_since_ms), "until",
                          time_or_null(gr->guard_until_ms), "reason", gr->guard_reason);
    json_t *storms = json_array();
    for (size_t i = 0; i < gr->nstorms && i < SG_GUARD_MAX_STORMS; i++) {
        const sg_mode_storm_info *si = &gr->storms[i];
        json_array_append_new(storms,
                              json_pack("{s:s?,s:s?,s:o,s:o}", "source", si->scope, "trigger",
                                        si->message, "since", time_or_null(si->since_ms), "until",
                                        time_or_null(si->until_ms)));
    }
    json_object_set_new(doc, "guard", guard);
    json_object_set_new(doc, "storms", storms);
    json_object_set_new(doc, "wipes", json_integer((json_int_t)gr->wipes));
    json_object_set_new(doc, "storm_signals", json_integer((json_int_t)gr->storm_signals));
    json_object_set_new(doc, "rewarms", json_integer((json_int_t)gr->rewarms));
    json_object_set_new(doc, "redis_changes", json_integer((json_int_t)gr->server_changes));
    json_object_set_new(doc, "held", json_integer(held));
}

static json_t *status_doc(sg_admin *a)
{
    sg_core *core = sg_gate_core(a->gate);
    sg_core_stats st;
    sg_core_stats_get(core, &st);
    sg_gate_info gi;
    sg_gate_info_get(a->gate, &gi);
    sg_guard_report gr;
    sg_guard_report_get(sg_core_guard(core), &gr);
    json_t *counts = json_object();
    for (int k = 0; k < SG_CORE_KINDS; k++) {
        json_t *by_state = json_object();
        for (int s = 0; s < SG_STATE_COUNT; s++)
            if (st.counts[k][s])
                json_object_set_new(by_state, sg_event_state_name((sg_event_state)s),
                                    json_integer(st.counts[k][s]));
        json_object_set_new(counts, sg_kind_name((sg_kind)k), by_state);
    }
    json_t *snapshot = json_null();
    if (st.baseline_id)
        snapshot = json_pack("{s:I,s:o,s:s,s:I,s:I}", "id", (json_int_t)st.baseline_id, "taken_at",
                             time_or_null(st.baseline_taken_at_ms), "reason",
                             st.baseline_reason ? st.baseline_reason : "", "keys",
                             (json_int_t)st.baseline_keys, "jobs", (json_int_t)st.baseline_jobs);
    json_t *doc = json_pack(
        "{s:s,s:o,s:I,s:o,s:I,s:{s:b,s:i,s:s?},s:{s:s,s:b,s:I,s:I,s:o,s:o,s:s?},s:o,s:I}", "mode",
        sg_mode_name(gr.mode), "started_at", time_or_null(st.started_at_ms), "uptime_s",
        (json_int_t)((st.now_ms - st.started_at_ms) / 1000), "counts", counts, "pending",
        (json_int_t)st.pending, "journal", "writable", st.journal_ok, "depth", st.journal_depth,
        "error", st.journal_error, "downstream", "url", gi.downstream, "healthy", st.downstream_ok,
        "inflight", (json_int_t)gi.inflight, "backlog", (json_int_t)gi.backlog, "last_ok",
        time_or_null(st.downstream_last_ok), "last_failure", time_or_null(st.downstream_last_fail),
        "last_error", st.downstream_error, "snapshot", snapshot, "ledger",
        (json_int_t)st.ledger_builds);
    json_object_set_new(doc, "gate_mode", json_string(st.observe ? "observe" : "enforce"));
    if (st.replica) {
        json_object_set_new(doc, "replica", json_string(st.replica));
        /* the whole set's counts, as of a read of the store */
        json_object_set_new(doc, "counted",
                            json_pack("{s:o,s:I,s:o}", "at", time_or_null(st.counted_at_ms),
                                      "took_ms", (json_int_t)st.count_ms, "next",
                                      time_or_null(st.next_count_ms)));
    }
    if (st.nreplicas) { /* a shared store's: every replica, this one too */
        json_t *reps = json_array();
        for (size_t i = 0; i < st.nreplicas; i++) {
            const sg_replica_row *r = &st.replicas[i];
            json_array_append_new(reps,
                                  json_pack("{s:s,s:o,s:o,s:b,s:I}", "name", r->name, "started_at",
                                            time_or_null(r->started_at), "lease_until",
                                            time_or_null(r->lease_until), "live", r->live,
                                            "claimed", (json_int_t)r->claimed));
        }
        json_object_set_new(doc, "replicas", reps);
    }
    json_object_set_new(doc, "would",
                        json_pack("{s:I,s:I,s:I}", "suppressed",
                                  (json_int_t)st.would[SG_STATE_SUPPRESSED], "held",
                                  (json_int_t)st.would[SG_STATE_HELD], "dropped",
                                  (json_int_t)st.would[SG_STATE_DROPPED]));
    json_t *journal = json_object_get(doc, "journal");
    json_object_set_new(journal, "headroom_bytes", json_integer(SG_JOURNAL_HEADROOM_BYTES));
    if (st.free_bytes >= 0) {
        json_object_set_new(journal, "free_bytes", json_integer(st.free_bytes));
        json_object_set_new(journal, "store_bytes", json_integer(st.store_bytes));
        json_object_set_new(journal, "low_space",
                            json_boolean(st.free_bytes < SG_JOURNAL_HEADROOM_BYTES));
    }
    json_object_set_new(doc, "redis",
                        gi.watched             ? redis_json(&gi)
                        : gi.watched_elsewhere ? json_string("watched by another replica")
                                               : json_string("not watched"));
    guard_status(doc, &gr, sg_core_held(core));
    return doc;
}

/* ---- /readyz ---- */

/* Ready: the gate can accept events and make them durable (the journal
 * takes writes, not stopping); reasons lists what is not. The downstream
 * is not part of it: the gate journals and holds while the notifier is
 * down, and a sidecar taken out of its pod's Service for an outage of the
 * notifier would take the poller with it. Its trouble is degraded. */
static bool ready(sg_admin *a, json_t *reasons)
{
    sg_core_stats st;
    sg_core_stats_get(sg_gate_core(a->gate), &st);
    sg_gate_info gi;
    sg_gate_info_get(a->gate, &gi);
    bool ok = true;
    if (!st.journal_ok) {
        json_array_append_new(reasons, json_sprintf("journal not writable: %s", st.journal_error));
        ok = false;
    }
    if (gi.stopping) {
        json_array_append_new(reasons, json_string("shutting down"));
        ok = false;
    }
    return ok;
}

/* What works only in part, appended to reasons; the gate is still ready. */
static void degraded(sg_admin *a, json_t *reasons)
{
    sg_core_stats st;
    sg_core_stats_get(sg_gate_core(a->gate), &st);
    if (st.free_bytes >= 0 && st.free_bytes < SG_JOURNAL_HEADROOM_BYTES)
        json_array_append_new(
            reasons, json_sprintf("the store's file system has %lld MiB free; the journal needs "
                                  "%lld MiB of headroom (commits may fail for want of space)",
                                  (long long)(st.free_bytes >> 20),
                                  (long long)(SG_JOURNAL_HEADROOM_BYTES >> 20)));
    sg_gate_info gi;
    sg_gate_info_get(a->gate, &gi);
    if (!gi.watched && !gi.watched_elsewhere && !gi.stopping)
        json_array_append_new(reasons, json_string("Redis not watched ([redis] watch = no): no "
                                                   "snapshots are taken and wipes go unnoticed; "
                                                   "the gate has its ledger only"));
    if (!st.downstream_ok)
        json_array_append_new(
            reasons, json_sprintf("downstream %s unreachable (%s): deliveries "
                                  "wait in the journal",
                                  gi.downstream,
                                  st.downstream_error ? st.downstream_error : "no answer yet"));
    /* the gate keeps classifying and forwarding without Redis: degraded, not
     * unready, but wipes go unnoticed until it is back */
    if (!gi.watched || gi.redis_up)
        return;
    json_array_append_new(
        reasons, json_sprintf("Redis %s unreachable (%s): wipes go unnoticed", gi.watch.address,
                              gi.watch.last_error ? gi.watch.last_error : "no answer yet"));
}

/* ---- /metrics ---- */

/* Seconds since at (epoch ms) by the core's clock; 0 for at == 0 (none). */
static double age_s(const sg_core_stats *st, int64_t at)
{
    return at && st->now_ms > at ? (double)(st->now_ms - at) / 1000 : 0;
}

/* What the alert rules of deploy/prometheus/ read beside the counts: the
 * build, the journal and downstream health, the snapshots, and how long
 * the oldest pending and held events have waited (0 when none waits). */
static void health_metrics(sg_buf *b, const sg_core_stats *st, const sg_gate_info *gi)
{
    sg_metric_family(b, "stormguard_build_info", "gauge", "1, labelled with the build's version");
    sg_metric_sample(b, "stormguard_build_info", "version=\"" SG_VERSION "\"", 1);
    sg_metric_family(b, "stormguard_journal_writable", "gauge",
                     "1 while the journal takes writes (0: events are answered 503)");
    sg_metric_sample(b, "stormguard_journal_writable", "", st->journal_ok);
    sg_metric_family(b, "stormguard_downstream_up", "gauge",
                     "1 unless the last delivery attempt failed for the downstream's sake "
                     "(a connection error, a timeout, 5xx or 429)");
    sg_metric_sample(b, "stormguard_downstream_up", "", st->downstream_ok);
    sg_metric_family(b, "stormguard_pending_oldest_age_seconds", "gauge",
                     "Age of the oldest event waiting for delivery, from its arrival (0: none)");
    sg_metric_sample(b, "stormguard_pending_oldest_age_seconds", "",
                     age_s(st, st->oldest_pending_ms));
    sg_metric_family(b, "stormguard_held_oldest_age_seconds", "gauge",
                     "Age of the oldest held event, from its arrival (0: none held)");
    sg_metric_sample(b, "stormguard_held_oldest_age_seconds", "", age_s(st, st->oldest_held_ms));
    /* the newest good snapshot: the gate's own, or a newer baseline the
     * core found in the store (taken by `stormguard snapshot`) */
    int64_t good_at = gi->snapshot_good_at_ms, good_keys = gi->snapshot_good_keys;
    if (st->baseline_taken_at_ms > good_at) {
        good_at = st->baseline_taken_at_ms;
        good_keys = st->baseline_keys;
    }
    sg_metric_family(b, "stormguard_snapshot_last_good_timestamp_seconds", "gauge",
                     "When the newest good (complete, not suspect) snapshot began, epoch "
                     "seconds (0: none)");
    sg_metric_sample(b, "stormguard_snapshot_last_good_timestamp_seconds", "",
                     (double)good_at / 1000);
    sg_metric_family(b, "stormguard_snapshot_last_good_keys", "gauge",
                     "Keys in the newest good snapshot");
    sg_metric_sample(b, "stormguard_snapshot_last_good_keys", "", (double)good_keys);
    sg_metric_family(b, "stormguard_snapshot_interval_seconds", "gauge",
                     "The periodic snapshots' interval (0: the daemon takes none)");
    sg_metric_sample(b, "stormguard_snapshot_interval_seconds", "",
                     (double)gi->snapshot_interval_s);
}

/* Prometheus's process_* family, as its client libraries export it, from
 * the last read of /proc (the gate's tick, off the loop). */
static void process_metrics(sg_buf *b, const sg_gate_info *gi)
{
    if (!gi->process_known)
        return;
    const sg_procstat *p = &gi->process;
    sg_metric_family(b, "process_cpu_seconds_total", "counter",
                     "Total user and system CPU time spent in seconds.");
    sg_metric_sample(b, "process_cpu_seconds_total", "", p->cpu_seconds);
    sg_metric_family(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    sg_metric_sample(b, "process_resident_memory_bytes", "", (double)p->resident_bytes);
    sg_metric_family(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    sg_metric_sample(b, "process_virtual_memory_bytes", "", (double)p->virtual_bytes);
    sg_metric_family(b, "process_open_fds", "gauge", "Number of open file descriptors.");
    sg_metric_sample(b, "process_open_fds", "", (double)p->open_fds);
    if (p->max_fds >= 0) {
        sg_metric_family(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
        sg_metric_sample(b, "process_max_fds", "", (double)p->max_fds);
    }
    sg_metric_family(b, "process_start_time_seconds", "gauge",
                     "Start time of the process since unix epoch in seconds.");
    sg_metric_sample(b, "process_start_time_seconds", "", p->start_time_s);
}

static void metrics(sg_admin *a, sg_buf *b)
{
    sg_core *core = sg_gate_core(a->gate);
    sg_core_stats st;
    sg_core_stats_get(core, &st);
    sg_gate_info gi;
    sg_gate_info_get(a->gate, &gi);
    sg_guard_report gr;
    sg_guard_report_get(sg_core_guard(core), &gr);
    sg_metric_family(b, "stormguard_events_received_total", "counter",
                     "Events journaled and answered 200, by kind");
    for (int k = 0; k < SG_CORE_KINDS; k++) {
        char labels[64];
        snprintf(labels, sizeof labels, "kind=\"%s\"", sg_kind_name((sg_kind)k));
        sg_metric_sample(b, "stormguard_events_received_total", labels, (double)st.received[k]);
    }
    sg_metric_family(b, "stormguard_events", "gauge", "Journaled events by kind and state");
    for (int k = 0; k < SG_CORE_KINDS; k++)
        for (int s = 0; s < SG_STATE_COUNT; s++) {
            char labels[96];
            snprintf(labels, sizeof labels, "kind=\"%s\",state=\"%s\"", sg_kind_name((sg_kind)k),
                     sg_event_state_name((sg_event_state)s));
            sg_metric_sample(b, "stormguard_events", labels, (double)st.counts[k][s]);
        }
    sg_metric_family(b, "stormguard_requests_rejected_total", "counter",
                     "Requests answered 400 (malformed or absurd events)");
    sg_metric_sample(b, "stormguard_requests_rejected_total", "", (double)st.rejected);
    sg_metric_family(b, "stormguard_http_refused_total", "counter",
                     "Requests refused before they were read as events (a method, target or "
                     "header the gate could not forward; a header section over max_header)");
    sg_metric_sample(b, "stormguard_http_refused_total", "", (double)gi.refused);
    sg_metric_family(b, "stormguard_requests_unavailable_total", "counter",
                     "Requests answered 503 because the journal could not be written");
    sg_metric_sample(b, "stormguard_requests_unavailable_total", "", (double)st.unavailable);
    sg_metric_family(b, "stormguard_forward_attempts_total", "counter",
                     "Delivery attempts to the downstream");
    sg_metric_sample(b, "stormguard_forward_attempts_total", "", (double)st.fwd_attempts);
    sg_metric_family(b, "stormguard_forward_failures_total", "counter",
                     "Delivery attempts that failed (retried or dead)");
    sg_metric_sample(b, "stormguard_forward_failures_total", "", (double)st.fwd_failures);
    sg_metric_family(b, "stormguard_pending", "gauge", "Events waiting for delivery");
    sg_metric_sample(b, "stormguard_pending", "", (double)st.pending);
    sg_metric_family(b, "stormguard_held", "gauge", "Events held during a storm");
    sg_metric_sample(b, "stormguard_held", "", (double)st.held);
    sg_metric_family(b, "stormguard_mode", "gauge",
                     "1 for the gate's current mode (normal, guard or storm)");
    for (int m = SG_MODE_NORMAL; m <= SG_MODE_STORM; m++) {
        char labels[32];
        snprintf(labels, sizeof labels, "mode=\"%s\"", sg_mode_name((sg_mode)m));
        sg_metric_sample(b, "stormguard_mode", labels, m == (int)gr.mode);
    }
    sg_metric_family(b, "stormguard_wipes_total", "counter", "Redis wipes detected");
    sg_metric_sample(b, "stormguard_wipes_total", "", (double)gr.wipes);
    sg_metric_family(b, "stormguard_storm_signals_total", "counter",
                     "Storm signals reported (the first per source and window)");
    sg_metric_sample(b, "stormguard_storm_signals_total", "", (double)gr.storm_signals);
    sg_metric_family(b, "stormguard_rewarms_total", "counter", "Rewarms after a wipe");
    sg_metric_sample(b, "stormguard_rewarms_total", "", (double)gr.rewarms);
    sg_metric_family(b, "stormguard_redis_changes_total", "counter",
                     "Restarts and failovers of the watched Redis that kept the data");
    sg_metric_sample(b, "stormguard_redis_changes_total", "", (double)gr.server_changes);
    sg_metric_family(b, "stormguard_redis_up", "gauge", "1 while the watched Redis answers");
    sg_metric_sample(b, "stormguard_redis_up", "", gi.watched && gi.redis_up);
    sg_metric_family(b, "stormguard_forward_inflight", "gauge", "Deliveries in flight");
    sg_metric_sample(b, "stormguard_forward_inflight", "", (double)gi.inflight);
    sg_metric_family(b, "stormguard_journal_depth", "gauge", "Journal writes not yet committed");
    sg_metric_sample(b, "stormguard_journal_depth", "", (double)st.journal_depth);
    sg_metric_histogram(b, "stormguard_journal_commit_seconds",
                        "Duration of the journal transactions events waited for", st.commit_hist);
    sg_metric_histogram(b, "stormguard_forward_seconds", "Duration of delivery attempts",
                        st.forward_hist);
    sg_metric_family(b, "stormguard_observe_mode", "gauge",
                     "1 in observe mode ([gate] mode = observe): every event is forwarded");
    sg_metric_sample(b, "stormguard_observe_mode", "", st.observe ? 1 : 0);
    sg_metric_family(b, "stormguard_events_would", "gauge",
                     "Journaled events observe mode forwarded, by the state the gate would have "
                     "given them");
    for (int s = 0; s < SG_STATE_COUNT; s++) {
        if (s != SG_STATE_SUPPRESSED && s != SG_STATE_HELD && s != SG_STATE_DROPPED)
            continue;
        char labels[48];
        snprintf(labels, sizeof labels, "state=\"%s\"", sg_event_state_name((sg_event_state)s));
        sg_metric_sample(b, "stormguard_events_would", labels, (double)st.would[s]);
    }
    health_metrics(b, &st, &gi);
    process_metrics(b, &gi);
}

/* ---- /v1/events ---- */

static void on_events(void *ud, int status, const char *error, const sg_event_row *rows, size_t n)
{
    sg_http_req *req = ud;
    if (status) {
        reply_error(req, 500, error);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        const sg_event_row *r = &rows[i];
        char when[40];
        sg_format_time(r->received_at, when, sizeof when);
        json_t *o = json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:I}", "id", (json_int_t)r->id,
                              "received_at", when, "kind", r->kind, "state",
                              sg_event_state_name(r->state), "reason", r->reason, "method",
                              r->method, "path", r->path, "attempts", (json_int_t)r->attempts);
        if (!o)
            continue; /* not UTF-8: left out rather than failing the whole list */
        if (r->source) {
            json_object_set_new(o, "source", json_string(r->source));
            json_object_set_new(o, "job", json_string(r->job));
        }
        if (r->source && r->tag) { /* Docker: account, repository, tag, digest */
            json_object_set_new(o, "tag", json_string(r->tag));
            json_object_set_new(o, "digest", string_or_null(r->digest));
        } else if (r->source) {
            json_object_set_new(o, "number", json_integer(r->number));
        }
        if (r->build_ts)
            json_object_set_new(o, "build_ts", json_integer(r->build_ts));
        if (r->last_error)
            json_object_set_new(o, "last_error", json_string(r->last_error));
        if (r->would)
            json_object_set_new(o, "would", json_string(r->would));
        json_array_append_new(arr, o);
    }
    reply(req, 200, json_pack("{s:o}", "events", arr));
}

static void events(sg_admin *a, sg_http_req *req, sg_str path)
{
    char state[32], kind[32], job[512], limit_s[16];
    bool has_state = query_param(path, "state", state, sizeof state);
    bool has_kind = query_param(path, "kind", kind, sizeof kind);
    bool has_job = query_param(path, "job", job, sizeof job);
    int64_t limit = 100;
    if (query_param(path, "limit", limit_s, sizeof limit_s) &&
        sg_parse_int64(limit_s, 1, 10000, &limit)) {
        reply_error(req, 400, "limit must be a number from 1 to 10000");
        return;
    }
    sg_kind k;
    if (has_kind && sg_kind_parse(kind, &k)) {
        reply_error(req, 400, "kind must be passthrough, new, replay or unknown");
        return;
    }
    sg_event_state st;
    if (has_state && sg_event_state_parse(state, &st)) {
        reply_error(req, 400,
                    "state must be pending, forwarded, suppressed, held, released, dropped, "
                    "superseded or dead");
        return;
    }
    if (sg_core_events(sg_gate_core(a->gate), has_state ? &st : NULL, has_kind ? kind : NULL,
                       has_job ? job : NULL, (int)limit, on_events, req))
        reply_error(req, 503, "stormguard is shutting down");
}

/* ---- operators ---- */

/* An operator's request (a JSON body); strings borrowed from its document. */
typedef struct sg_op_request {
    sg_hold_filter hold; /* release, drop: which held events */
    bool newest_only;    /* release: older builds of a job are superseded */
    const char *reason;  /* drop (required), guard, flush */
    const char *actor;   /* who asked, for the audit log */
    bool dry_run;        /* flush: whether the announce would be confirmed, nothing done */
    int64_t wait_ms;     /* flush: how long the caller waits for the answer; 0: no limit */
} sg_op_request;

static bool route_is(sg_str path, const char *route)
{
    size_t n = strlen(route);
    return path.len >= n && !memcmp(path.p, route, n) && (path.len == n || path.p[n] == '?');
}

/* Reads the JSON body of an operator's request into r (strings borrowed
 * from *doc, which the caller releases). False, with a 400 sent, if the body
 * is not a JSON object of the expected fields. */
static bool operator_request(sg_http_req *req, sg_op_request *r, json_t **doc)
{
    memset(r, 0, sizeof *r);
    sg_str body = sg_http_body(req);
    json_error_t jerr;
    *doc = body.len ? json_loadb(body.p, body.len, 0, &jerr) : json_object();
    if (!*doc || !json_is_object(*doc)) {
        char msg[256];
        if (*doc)
            snprintf(msg, sizeof msg, "the request body must be a JSON object");
        else
            snprintf(msg, sizeof msg, "invalid JSON at line %d column %d: %s", jerr.line,
                     jerr.column, jerr.text);
        json_decref(*doc);
        *doc = NULL;
        reply_error(req, 400, msg);
        return false;
    }
    static const char *const strings[] = {"source", "job", "reason", "actor"};
    const char **dest[] = {&r->hold.source, &r->hold.job, &r->reason, &r->actor};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        json_t *v = json_object_get(*doc, strings[i]);
        if (v && !json_is_null(v) && (!json_is_string(v) || !*json_string_value(v))) {
            char msg[96];
            snprintf(msg, sizeof msg, "\"%s\" must be a non-empty string", strings[i]);
            reply_error(req, 400, msg);
            json_decref(*doc);
            *doc = NULL;
            return false;
        }
        *dest[i] = v ? json_string_value(v) : NULL;
    }
    static const char *const flags[] = {"all", "newest_only", "dry_run"};
    bool *fdest[] = {&r->hold.all, &r->newest_only, &r->dry_run};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        json_t *v = json_object_get(*doc, flags[i]);
        if (v && !json_is_boolean(v)) {
            char msg[96];
            snprintf(msg, sizeof msg, "\"%s\" must be true or false", flags[i]);
            reply_error(req, 400, msg);
            json_decref(*doc);
            *doc = NULL;
            return false;
        }
        *fdest[i] = v && json_is_true(v);
    }
    json_t *w = json_object_get(*doc, "wait_ms");
    if (w && (!json_is_integer(w) || json_integer_value(w) < 1)) {
        reply_error(req, 400, "\"wait_ms\" must be a whole number of milliseconds, at least 1");
        json_decref(*doc);
        *doc = NULL;
        return false;
    }
    r->wait_ms = w ? (int64_t)json_integer_value(w) : 0;
    if (!r->actor)
        r->actor = "admin-api";
    return true;
}

/* Release and drop act on an explicit selection only: never everything by
 * accident of an empty body. */
static bool has_selection(sg_http_req *req, const sg_op_request *r)
{
    if (r->hold.all || r->hold.source || r->hold.job)
        return true;
    reply_error(req, 400, "say which held events: \"all\": true, \"source\" or \"job\"");
    return false;
}

static bool is_method(sg_str method, const char *name)
{
    return method.len == strlen(name) && !memcmp(method.p, name, method.len);
}

static void on_held(void *ud, int status, const char *error, int64_t held, int64_t jobs_total,
                    const sg_held_job *jobs, size_t n)
{
    sg_http_req *req = ud;
    if (status) {
        reply_error(req, 500, error);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s,s:s,s:I,s:I,s:I}", "source", jobs[i].source,
                                             "job", jobs[i].job, "count", (json_int_t)jobs[i].count,
                                             "oldest", (json_int_t)jobs[i].oldest, "newest",
                                             (json_int_t)jobs[i].newest));
    reply(req, 200,
          json_pack("{s:I,s:I,s:o}", "held", (json_int_t)held, "jobs_total", (json_int_t)jobs_total,
                    "jobs", arr));
}

static void on_hold_done(void *ud, const sg_hold_result *r)
{
    sg_http_req *req = ud;
    if (r->status) {
        reply_after(req, 503, json_pack("{s:s}", "error", r->error), 1);
        return;
    }
    reply(req, 200,
          json_pack("{s:I,s:I}", "released", (json_int_t)r->released, "superseded",
                    (json_int_t)r->superseded));
}

static void on_drop_done(void *ud, const sg_hold_result *r)
{
    sg_http_req *req = ud;
    if (r->status) {
        reply_after(req, 503, json_pack("{s:s}", "error", r->error), 1);
        return;
    }
    reply(req, 200, json_pack("{s:I}", "dropped", (json_int_t)r->dropped));
}

typedef struct guard_reply {
    sg_admin *a;
    sg_http_req *req;
} guard_reply;

static void on_guard_audited(void *ud, int status, const char *error)
{
    guard_reply *g = ud;
    if (status)
        reply_after(g->req, 503, json_pack("{s:s}", "error", error), 1);
    else
        reply(g->req, 200, status_doc(g->a));
    free(g);
}

static void guard(sg_admin *a, sg_http_req *req, bool on, const sg_op_request *r)
{
    sg_core *core = sg_gate_core(a->gate);
    char reason[512];
    snprintf(reason, sizeof reason, "%s by %s%s%s", on ? "turned on" : "turned off", r->actor,
             r->reason ? ": " : "", r->reason ? r->reason : "");
    if (on)
        sg_guard_on(sg_core_guard(core), reason);
    else
        sg_guard_off(sg_core_guard(core), reason);
    guard_reply *g = sg_xcalloc(1, sizeof *g);
    g->a = a;
    g->req = req;
    if (sg_core_audit(core, r->actor, on ? "guard on" : "guard off", reason, on_guard_audited, g)) {
        free(g);
        reply_error(req, 503, "stormguard is shutting down");
    }
}

static void on_announced(void *ud, const sg_announce_result *r)
{
    guard_reply *g = ud;
    if (r->status) {
        reply_after(g->req, 503, json_pack("{s:s}", "error", r->error), r->retry_after);
    } else {
        /* "mode": what the announce put the gate in (the CLI checks it); a
         * storm on some source may be on as well */
        sg_guard_report gr;
        sg_guard_report_get(sg_core_guard(sg_gate_core(g->a->gate)), &gr);
        reply(g->req, 200,
              json_pack("{s:s,s:s,s:I,s:b}", "mode", gr.guard ? "guard" : "normal", "overall_mode",
                        sg_mode_name(gr.mode), "snapshot_id", (json_int_t)r->snapshot_id, "suspect",
                        r->suspect));
    }
    free(g);
}

/* The operator's routes: /v1/held, /v1/release, /v1/drop, /v1/guard,
 * /v1/flush. True if path was one of them (and answered). */
static bool operator_route(sg_admin *a, sg_http_req *req, sg_str method, sg_str path)
{
    bool post = is_method(method, "POST");
    sg_core *core = sg_gate_core(a->gate);
    if (route_is(path, "/v1/held")) {
        char limit_s[16];
        int64_t limit = 100;
        if (!is_method(method, "GET"))
            reply_error(req, 405, "use GET");
        else if (query_param(path, "limit", limit_s, sizeof limit_s) &&
                 sg_parse_int64(limit_s, 1, 10000, &limit))
            reply_error(req, 400, "limit must be a number from 1 to 10000");
        else if (sg_core_held_summary(core, limit, on_held, req))
            reply_error(req, 503, "stormguard is shutting down");
        return true;
    }
    int which = route_is(path, "/v1/release") ? 1
                : route_is(path, "/v1/drop")  ? 2
                : route_is(path, "/v1/guard") ? 3
                : route_is(path, "/v1/flush") ? 4
                                              : 0;
    if (!which)
        return false;
    bool del = which == 3 && is_method(method, "DELETE");
    if (!post && !del) {
        reply_error(req, 405,
                    which == 3 ? "use POST (guard on) or DELETE (guard off)" : "use POST");
        return true;
    }
    sg_op_request r;
    json_t *doc;
    if (!operator_request(req, &r, &doc))
        return true;
    if (refuse_stopping(a, req)) {
        json_decref(doc);
        return true;
    }
    sg_hold_request hr = {
        .filter = r.hold, .newest_only = r.newest_only, .reason = r.reason, .actor = r.actor};
    switch (which) {
    case 1:
        if (has_selection(req, &r))
            sg_hold_release(sg_core_hold(core), &hr, on_hold_done, req);
        break;
    case 2:
        if (!has_selection(req, &r))
            break;
        if (!r.reason)
            reply_error(req, 400, "a drop needs a \"reason\"");
        else
            sg_hold_drop(sg_core_hold(core), &hr, on_drop_done, req);
        break;
    case 3:
        guard(a, req, post, &r);
        break;
    case 4: {
        if (r.dry_run) {
            sg_announce_result ar;
            sg_gate_flush_check(a->gate, &ar);
            reply(req, 200,
                  json_pack("{s:b,s:s?}", "would_confirm", !ar.status, "reason",
                            ar.status ? ar.error : NULL));
            break;
        }
        guard_reply *g = sg_xcalloc(1, sizeof *g);
        g->a = a;
        g->req = req;
        sg_gate_flush_announce(a->gate, r.actor, r.reason, r.wait_ms, on_announced, g);
        break;
    }
    }
    json_decref(doc);
    return true;
}

void sg_admin_handle(void *ud, sg_http_req *req)
{
    sg_admin *a = ud;
    sg_str method = sg_http_method(req), path = sg_http_path(req);
    bool get = method.len == 3 && !memcmp(method.p, "GET", 3);
    if (route_is(path, "/healthz") || route_is(path, "/livez")) {
        reply(req, 200, json_pack("{s:s}", "status", "ok"));
        return;
    }
    if (route_is(path, "/readyz")) {
        json_t *reasons = json_array();
        json_t *partial = json_array();
        bool ok = ready(a, reasons);
        degraded(a, partial);
        reply(req, ok ? 200 : 503,
              json_pack("{s:b,s:o,s:o}", "ready", ok, "reasons", reasons, "degraded", partial));
        return;
    }
    if (route_is(path, "/metrics")) {
        sg_buf b = {0};
        metrics(a, &b);
        sg_http_reply(req, 200, "text/plain; version=0.0.4", b.p, b.len, 0);
        sg_buf_free(&b);
        return;
    }
    if (path.len >= 4 && !memcmp(path.p, "/v1/", 4) && !authorized(a, req)) {
        reply_error(req, 401, "missing or wrong bearer token (Authorization: Bearer ...)");
        return;
    }
    if (route_is(path, "/v1/status") || route_is(path, "/v1/events")) {
        if (!get) {
            reply_error(req, 405, "use GET");
            return;
        }
        if (route_is(path, "/v1/status"))
            reply(req, 200, status_doc(a));
        else
            events(a, req, path);
        return;
    }
    if (operator_route(a, req, method, path))
        return;
    reply_error(req, 404,
                "no such endpoint (try /v1/status, /v1/events, /v1/held, /metrics, "
                "/livez, /readyz)");
}
