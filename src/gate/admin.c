/* The admin API (admin.h): routing, the bearer token, JSON and text out. */
#include "stormguard/gate/admin.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stormguard/gate/classify.h"
#include "stormguard/base/util.h"

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

static void reply(sg_http_req *req, int status, json_t *doc)
{
    char *body = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(doc);
    sg_http_reply(req, status, "application/json", body, strlen(body), 0);
    free(body);
}

static void reply_error(sg_http_req *req, int status, const char *msg)
{
    reply(req, status, json_pack("{s:s}", "error", msg));
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
    json_t *doc;
    sg_error err;
    if (sg_gate_events(a->gate, has_state ? state : NULL, has_kind ? kind : NULL,
                       has_job ? job : NULL, (int)limit, &doc, &err)) {
        reply_error(req, 500, err.msg);
        return;
    }
    reply(req, 200, doc);
}

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
    static const char *const flags[] = {"all", "newest_only"};
    bool *fdest[] = {&r->hold.all, &r->newest_only};
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

/* The operator's routes: /v1/held, /v1/release, /v1/drop, /v1/guard,
 * /v1/flush. True if path was one of them (and answered). */
static bool operator_route(sg_admin *a, sg_http_req *req, sg_str method, sg_str path)
{
    bool post = is_method(method, "POST");
    if (route_is(path, "/v1/held")) {
        char limit_s[16];
        int64_t limit = 100;
        if (!is_method(method, "GET"))
            reply_error(req, 405, "use GET");
        else if (query_param(path, "limit", limit_s, sizeof limit_s) &&
                 sg_parse_int64(limit_s, 1, 10000, &limit))
            reply_error(req, 400, "limit must be a number from 1 to 10000");
        else
            sg_gate_held(a->gate, req, limit);
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
    switch (which) {
    case 1:
        if (has_selection(req, &r))
            sg_gate_release(a->gate, req, &r);
        break;
    case 2:
        if (!has_selection(req, &r))
            break;
        if (!r.reason)
            reply_error(req, 400, "a drop needs a \"reason\"");
        else
            sg_gate_drop(a->gate, req, &r);
        break;
    case 3:
        sg_gate_guard(a->gate, req, post, &r);
        break;
    case 4:
        sg_gate_flush_announce(a->gate, req, &r);
        break;
    }
    json_decref(doc);
    return true;
}

void sg_admin_handle(void *ud, sg_http_req *req)
{
    sg_admin *a = ud;
    sg_str method = sg_http_method(req), path = sg_http_path(req);
    bool get = method.len == 3 && !memcmp(method.p, "GET", 3);
    if (route_is(path, "/healthz")) {
        reply(req, 200, json_pack("{s:s}", "status", "ok"));
        return;
    }
    if (route_is(path, "/readyz")) {
        json_t *reasons = json_array();
        json_t *degraded = json_array();
        bool ready = sg_gate_ready(a->gate, reasons);
        sg_gate_degraded(a->gate, degraded);
        reply(req, ready ? 200 : 503,
              json_pack("{s:b,s:o,s:o}", "ready", ready, "reasons", reasons, "degraded", degraded));
        return;
    }
    if (route_is(path, "/metrics")) {
        sg_buf b = {0};
        sg_gate_metrics(a->gate, &b);
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
            reply(req, 200, sg_gate_status(a->gate));
        else
            events(a, req, path);
        return;
    }
    if (operator_route(a, req, method, path))
        return;
    reply_error(req, 404,
                "no such endpoint (try /v1/status, /v1/events, /v1/held, /metrics, "
                "/healthz, /readyz)");
}
