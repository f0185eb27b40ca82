/* Delivery with h2o's HTTP/1.1 client on the daemon's loop (forward.h).
 *
 * Scheduling. Each ordered lane (a build's source+job) is a FIFO whose head
 * is the only item of the lane that may be in flight; pass-through items
 * (lane 0) get a lane of their own each ("solo"), so they never wait for one
 * another. A lane whose head is due sits on the ready list; one whose head
 * waits for a retry sits on the waiting list, and one uv_timer fires at the
 * earliest retry. pump() starts transfers from the ready list while fewer
 * than max_inflight are running.
 *
 * Transfers. h2o's client (the one its reverse proxy uses) runs on the same
 * libuv loop as the listeners and keeps connections to the downstream alive
 * in a socket pool. The request is written as the poller sent it: method,
 * path and query, the allowed headers and the body, plus Host, Content-Length
 * and X-Stormguard-Event-Id. libcurl did this before at about 27 us of CPU per
 * request on the benchmark machine; this client takes about 9 us
 * (tests/bench/bench_forward.sh), and the gate's throughput is bound by CPU.
 *
 * Every transfer has the same timeout, so the in-flight list, kept in start
 * order, is also in deadline order: one uv_timer watches its oldest entry.
 * Transfers start a few per turn of the loop (pump), so that reading and
 * answering requests is not held up behind a burst of deliveries.
 * A transfer's outcome is reported from a uv_idle callback, after h2o has
 * returned the connection to its pool, so the next transfer reuses it; new
 * items start from there too, once the loop has done what it was doing (the
 * gate answers a committed batch before its deliveries start).
 *
 * Names are resolved with uv_getaddrinfo (the loop never blocks), again
 * after a minute or after a failed connection; a new address gets a new
 * pool, and the old one is kept until the forwarder stops, for the
 * connections still in flight on it. */
#include "stormguard/gate/forward.h"
#include "stormguard/base/clock.h"

#include <arpa/inet.h>
#include <assert.h>
#include <h2o.h>
#include <h2o/http1client.h>
#include <h2o/socketpool.h>
#include <netdb.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#include "stormguard/base/hashset.h"
#include "stormguard/base/util.h"

#define POOL_IDLE_MS 2000 /* an idle connection is closed after this (h2o proxy's default) */
#define RESOLVE_EVERY_MS 60000
#define RESOLVE_RETRY_MS 1000
#define PUMP_PER_TURN 4   /* transfers started per turn of the loop... */
#define PUMP_CATCH_UP 256 /* ...while fewer than this wait to start */

typedef struct lane {
    uint64_t key;
    sg_fwd_item *head, *tail;
    bool busy;   /* its head is in flight */
    bool listed; /* on the ready or waiting list */
    bool solo;   /* a pass-through item's own lane, freed with the item */
    struct lane *next;
} lane;

typedef struct transfer {
    struct transfer *prev, *next; /* in flight (oldest first), then ended */
    struct sg_forward *f;
    h2o_http1client_t *client; /* NULL once h2o is done with it */
    lane *lane;
    double started;    /* the clock's monotonic seconds */
    uint64_t deadline; /* uv_now */
    sg_buf head;       /* request line and headers */
    h2o_iovec_t req[2];
    int status; /* the answer's, 0 without one */
    long retry_after_s;
    bool failed; /* no complete answer: error says why */
    char error[256];
} transfer;

typedef struct pool {
    h2o_socketpool_t h2o;
    struct sockaddr_storage addr; /* the pool's peer */
    socklen_t len;
    struct pool *older;
} pool;

typedef struct resolve {
    uv_getaddrinfo_t req;
    struct sg_forward *f;
} resolve;

struct sg_forward {
    uv_loop_t *loop;
    sg_forward_opts o;
    /* the downstream, from its URL */
    bool tls;
    char *host;      /* name or address, without IPv6 brackets */
    char *authority; /* the Host header */
    char *prefix;    /* the URL's path, without a trailing '/' */
    char port[8];
    bool literal;            /* host is an address: never resolved */
    pool *pool;              /* the current address's (older ones after it); NULL before
                                the first resolution */
    resolve *lookup;         /* the name's lookup in progress */
    bool stale;              /* a connection failed: resolve again */
    uint64_t resolved_at;    /* uv_now of the last resolution */
    char resolve_error[160]; /* why the last resolution failed, "" if not */
    h2o_http1client_ctx_t ctx;
    h2o_timeout_t io_timeout; /* h2o's own: a backstop behind the deadline */
    SSL_CTX *ssl;
    uv_timer_t deadline;    /* the oldest transfer's */
    uv_idle_t report;       /* reports ended transfers */
    uv_timer_t retry_timer; /* the earliest waiting lane */
    sg_u64map lanes;        /* key -> lane * */
    lane *ready, *ready_tail;
    lane *waiting;
    transfer *first, *last; /* in flight, oldest first */
    transfer *ended, **ended_tail;
    size_t inflight, backlog;
    sg_fwd_result_fn fn;
    void *ud;
    bool pumping;
    bool stopping;
    bool disposed; /* the h2o parts are closing (stop) */
    int closing;   /* handles and lookups not yet finished */
    void (*done)(void *ud);
    void *done_ud;
};

static void pump(sg_forward *f);
static void on_retry_timer(uv_timer_t *t);
static void on_report(uv_idle_t *h);
static void free_lane(sg_forward *f, lane *l);
static void maybe_drained(sg_forward *f);

/* ---- lanes ---- */

static void make_ready(sg_forward *f, lane *l)
{
    l->next = NULL;
    if (f->ready_tail)
        f->ready_tail->next = l;
    else
        f->ready = l;
    f->ready_tail = l;
    l->listed = true;
}

static void arm_retry_timer(sg_forward *f)
{
    int64_t earliest = 0;
    for (lane *l = f->waiting; l; l = l->next)
        if (!earliest || l->head->next_attempt_at < earliest)
            earliest = l->head->next_attempt_at;
    if (!earliest) {
        uv_timer_stop(&f->retry_timer);
        return;
    }
    int64_t delay = earliest - sg_clock_ms(f->o.clock);
    uv_timer_start(&f->retry_timer, on_retry_timer, delay > 0 ? (uint64_t)delay : 0, 0);
}

/* Puts a lane whose head may go on the ready or the waiting list. */
static void schedule(sg_forward *f, lane *l)
{
    if (l->busy || l->listed || !l->head)
        return;
    if (l->head->next_attempt_at <= sg_clock_ms(f->o.clock)) {
        make_ready(f, l);
        return;
    }
    l->next = f->waiting;
    f->waiting = l;
    l->listed = true;
    arm_retry_timer(f);
}

static void on_retry_timer(uv_timer_t *t)
{
    sg_forward *f = t->data;
    int64_t now = sg_clock_ms(f->o.clock);
    lane **pp = &f->waiting;
    while (*pp) {
        lane *l = *pp;
        if (l->head->next_attempt_at <= now) {
            *pp = l->next;
            make_ready(f, l);
        } else {
            pp = &l->next;
        }
    }
    arm_retry_timer(f);
    pump(f);
}

void sg_forward_push(sg_forward *f, sg_fwd_item *it)
{
    assert(!f->stopping);
    lane *l;
    it->next = NULL;
    if (it->lane == 0) {
        l = sg_xcalloc(1, sizeof *l);
        l->solo = true;
    } else {
        bool created;
        lane **slot = sg_u64map_put(&f->lanes, it->lane, &created);
        if (created) {
            *slot = sg_xcalloc(1, sizeof **slot);
            (*slot)->key = it->lane;
        }
        l = *slot;
    }
    if (l->tail)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
    f->backlog++;
    schedule(f, l);
    /* started from the idle callback: the loop finishes what it is doing
     * first (the gate answers a whole committed batch before its deliveries
     * start) */
    uv_idle_start(&f->report, on_report);
}

size_t sg_forward_backlog(const sg_forward *f)
{
    return f ? f->backlog : 0;
}

size_t sg_forward_inflight(const sg_forward *f)
{
    return f ? f->inflight : 0;
}

/* ---- the downstream's address ---- */

static void maybe_stopped(sg_forward *f);

/* Makes the pool of sa the current one. A name whose answers rotate comes
 * back to an address it had: its pool again, so there are never more pools
 * than addresses. */
static void use_address(sg_forward *f, const struct sockaddr *sa, socklen_t len)
{
    for (pool **pp = &f->pool; *pp; pp = &(*pp)->older) {
        pool *p = *pp;
        if (p->len == len && !memcmp(&p->addr, sa, len)) {
            *pp = p->older;
            p->older = f->pool;
            f->pool = p;
            return;
        }
    }
    pool *p = sg_xcalloc(1, sizeof *p);
    memcpy(&p->addr, sa, len);
    p->len = len;
    h2o_socketpool_init_by_address(&p->h2o, (struct sockaddr *)sa, len, f->tls,
                                   (size_t)f->o.max_inflight);
    if (f->tls) {
        /* the pool names its peer by the address; TLS checks the certificate
         * against the name in the URL */
        free(p->h2o.peer.host.base);
        p->h2o.peer.host = h2o_strdup(NULL, f->host, strlen(f->host));
    }
    h2o_socketpool_set_timeout(&p->h2o, f->loop, POOL_IDLE_MS);
    p->older = f->pool;
    f->pool = p;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    resolve *r = req->data;
    sg_forward *f = r->f;
    free(r);
    f->closing--;
    f->lookup = NULL;
    f->resolved_at = uv_now(f->loop);
    if (status == 0 && res) {
        f->stale = false;
        f->resolve_error[0] = '\0';
        if (!f->stopping)
            use_address(f, res->ai_addr, res->ai_addrlen);
    } else {
        snprintf(f->resolve_error, sizeof f->resolve_error, "cannot resolve %s: %s", f->host,
                 status == UV_ECANCELED ? "cancelled" : uv_strerror(status));
    }
    uv_freeaddrinfo(res);
    if (f->stopping)
        maybe_stopped(f);
    else
        pump(f);
}

/* Starts a lookup of the downstream's name if it is due. */
static void maybe_resolve(sg_forward *f)
{
    if (f->literal || f->lookup || f->stopping)
        return;
    uint64_t now = uv_now(f->loop), age = now - f->resolved_at;
    bool due =
        !f->pool || f->stale ? age >= RESOLVE_RETRY_MS || !f->resolved_at : age >= RESOLVE_EVERY_MS;
    if (!due)
        return;
    resolve *r = sg_xcalloc(1, sizeof *r);
    r->f = f;
    r->req.data = r;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_protocol = IPPROTO_TCP,
                             .ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV};
    int rc = uv_getaddrinfo(f->loop, &r->req, on_resolved, f->host, f->port, &hints);
    if (rc) {
        free(r);
        f->resolved_at = now;
        snprintf(f->resolve_error, sizeof f->resolve_error, "cannot resolve %s: %s", f->host,
                 uv_strerror(rc));
        return;
    }
    f->lookup = r;
    f->closing++;
}

/* ---- transfers ---- */

static void on_deadline(uv_timer_t *h);

static void arm_deadline(sg_forward *f)
{
    if (!f->first || uv_is_active((uv_handle_t *)&f->deadline))
        return;
    uint64_t now = uv_now(f->loop);
    uv_timer_start(&f->deadline, on_deadline,
                   f->first->deadline > now ? f->first->deadline - now : 0, 0);
}

/* The transfer has its outcome: off the in-flight list, on to be reported.
 * h2o may still hold the client; it frees it after the callback returns. */
static void ended(transfer *t)
{
    sg_forward *f = t->f;
    t->client = NULL;
    if (t->prev)
        t->prev->next = t->next;
    else
        f->first = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        f->last = t->prev;
    t->prev = t->next = NULL;
    *f->ended_tail = t;
    f->ended_tail = &t->next;
    uv_idle_start(&f->report, on_report);
}

static void fail(transfer *t, const char *doing, const char *why)
{
    t->failed = true;
    snprintf(t->error, sizeof t->error, "%s the downstream %s: %s", doing, t->f->authority, why);
}

/* Retry-After: delta-seconds or an HTTP-date (RFC 9110 10.2.3), the date
 * against now_ms (the forwarder's clock). */
static long retry_after(h2o_iovec_t v, int64_t now_ms)
{
    char s[64];
    size_t n = v.len < sizeof s - 1 ? v.len : sizeof s - 1;
    memcpy(s, v.base, n);
    s[n] = '\0';
    char *end;
    long secs = strtol(s, &end, 10);
    if (end != s && *end == '\0')
        return secs > 0 ? secs : 0;
    struct tm tm = {0};
    const char *rest = strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!rest || *rest)
        return 0;
    int64_t at = (int64_t)timegm(&tm), now = now_ms / 1000;
    return at > now ? (long)(at - now) : 0;
}

static int on_body(h2o_http1client_t *c, const char *err)
{
    transfer *t = c->data;
    h2o_buffer_consume(&c->sock->input, c->sock->input->size); /* nobody reads it */
    if (!err)
        return 0;
    if (err != h2o_http1client_error_is_eos)
        fail(t, "reading the answer of", err);
    ended(t);
    return 0;
}

static h2o_http1client_body_cb on_head(h2o_http1client_t *c, const char *err, int minor, int status,
                                       h2o_iovec_t msg, h2o_header_t *headers, size_t n, int rlen)
{
    (void)minor;
    (void)msg;
    (void)rlen;
    transfer *t = c->data;
    if (err && err != h2o_http1client_error_is_eos) {
        fail(t, "waiting for the answer of", err);
        ended(t);
        return NULL;
    }
    t->status = status;
    for (size_t i = 0; i < n; i++)
        if (headers[i].name == &H2O_TOKEN_RETRY_AFTER->buf)
            t->retry_after_s = retry_after(headers[i].value, sg_clock_ms(t->f->o.clock));
    if (err) { /* no body */
        ended(t);
        return NULL;
    }
    return on_body;
}

static h2o_http1client_head_cb on_connect(h2o_http1client_t *c, const char *err, h2o_iovec_t **bufs,
                                          size_t *nbufs, int *is_head)
{
    transfer *t = c->data;
    if (err) {
        t->f->stale = true; /* it may have moved: look the name up again */
        fail(t, t->f->tls ? "connecting (TCP, then TLS) to" : "connecting to", err);
        ended(t);
        return NULL;
    }
    *bufs = t->req;
    *nbufs = t->req[1].len ? 2 : 1;
    *is_head = !strcmp(t->lane->head->method, "HEAD");
    return on_head;
}

/* Request headers the forwarder writes itself or that would change the
 * framing of the request on the downstream's connection. */
static bool own_header(const char *line, size_t n)
{
    static const char *const names[] = {"host",
                                        "content-length",
                                        "transfer-encoding",
                                        "connection",
                                        "keep-alive",
                                        "te",
                                        "trailer",
                                        "upgrade",
                                        "proxy-connection",
                                        "expect",
                                        "x-stormguard-event-id"};
    const char *colon = memchr(line, ':', n);
    size_t len = colon ? (size_t)(colon - line) : n;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strlen(names[i]) == len && !strncasecmp(line, names[i], len))
            return true;
    return false;
}

static void append_str(sg_buf *b, const char *s)
{
    sg_buf_append(b, s, strlen(s));
}

static void append_uint(sg_buf *b, uint64_t v)
{
    char digits[24], *p = digits + sizeof digits;
    do
        *--p = (char)('0' + v % 10);
    while (v /= 10);
    sg_buf_append(b, p, (size_t)(digits + sizeof digits - p));
}

static void start(sg_forward *f, lane *l)
{
    sg_fwd_item *it = l->head;
    transfer *t = sg_xcalloc(1, sizeof *t);
    t->f = f;
    t->lane = l;
    t->started = sg_clock_mono(f->o.clock);
    t->deadline = uv_now(f->loop) + (uint64_t)f->o.timeout_ms;
    t->prev = f->last;
    if (f->last)
        f->last->next = t;
    else
        f->first = t;
    f->last = t;
    l->busy = true;
    f->inflight++;
    it->attempts++;

    sg_buf *b = &t->head; /* appends, not printf: this runs for every event */
    const char *path = it->path[0] == '/' ? it->path : "/";
    append_str(b, it->method);
    sg_buf_append(b, " ", 1);
    append_str(b, f->prefix);
    append_str(b, path);
    append_str(b, " HTTP/1.1\r\nHost: ");
    append_str(b, f->authority);
    sg_buf_append(b, "\r\n", 2);
    bool has_agent = false;
    for (const char *line = it->headers, *eol; line && *line; line = eol + 1) {
        if (!(eol = strchr(line, '\n')))
            break;
        size_t n = (size_t)(eol - line);
        if (own_header(line, n))
            continue;
        has_agent = has_agent || (n >= 11 && !strncasecmp(line, "user-agent:", 11));
        sg_buf_append(b, line, n);
        sg_buf_append(b, "\r\n", 2);
    }
    if (!has_agent)
        append_str(b, "User-Agent: stormguard\r\n");
    append_str(b, "X-Stormguard-Event-Id: ");
    append_uint(b, (uint64_t)it->id);
    sg_buf_append(b, "\r\n", 2);
    if (it->body_len || strcmp(it->method, "GET")) {
        append_str(b, "Content-Length: ");
        append_uint(b, it->body_len);
        sg_buf_append(b, "\r\n", 2);
    }
    sg_buf_append(b, "\r\n", 2);
    t->req[0] = h2o_iovec_init(b->p, b->len);
    t->req[1] = h2o_iovec_init(it->body, it->body_len);

    arm_deadline(f);
    if (!f->pool) {
        fail(t, "reaching",
             f->resolve_error[0] ? f->resolve_error : "its name is not resolved yet");
        ended(t);
        return;
    }
    /* may end the transfer before it returns (a pooled connection found
     * dead, a socket that cannot be created): reported from the idle */
    h2o_http1client_connect_with_pool(&t->client, t, &f->ctx, &f->pool->h2o, on_connect);
}

static void pump(sg_forward *f)
{
    if (f->pumping || f->stopping)
        return;
    maybe_resolve(f);
    if (!f->pool && f->lookup)
        return; /* resumed when the name is resolved */
    f->pumping = true;
    /* A few per turn of the loop, the rest on the next turns (the idle
     * callback again): between them the loop reads requests and answers
     * the poller, which the journal's writer waits for. All at once, unless
     * the backlog is big enough to need it. */
    int started = 0;
    bool few = f->backlog - f->inflight < PUMP_CATCH_UP;
    while (f->ready && f->inflight < (size_t)f->o.max_inflight) {
        if (few && started++ == PUMP_PER_TURN) {
            uv_idle_start(&f->report, on_report);
            break;
        }
        lane *l = f->ready;
        f->ready = l->next;
        if (!f->ready)
            f->ready_tail = NULL;
        l->listed = false;
        start(f, l);
    }
    f->pumping = false;
}

/* Delay before the next attempt: exponential with "equal jitter" (half
 * fixed, half random), at least what Retry-After asked. */
static int64_t backoff_ms(const sg_forward *f, int64_t attempts, long retry_after_s)
{
    int64_t d = f->o.retry_base_ms;
    for (int64_t i = 1; i < attempts && d < f->o.retry_max_ms; i++)
        d *= 2;
    if (d > f->o.retry_max_ms)
        d = f->o.retry_max_ms;
    d = d / 2 + (int64_t)((double)(d / 2) * ((double)rand() / RAND_MAX));
    /* an absurd Retry-After (a date in 9999) neither overflows nor waits
     * past max_age: the caller stops at the event's last chance */
    if (retry_after_s > 0)
        d = retry_after_s > f->o.max_age_ms / 1000
                ? f->o.max_age_ms
                : (retry_after_s * 1000 > d ? retry_after_s * 1000 : d);
    return d;
}

static void finish(sg_forward *f, transfer *t)
{
    lane *l = t->lane;
    sg_fwd_item *it = l->head;
    long status = t->failed ? 0 : t->status;
    double took = sg_clock_mono(f->o.clock) - t->started;
    char error[sizeof t->error + 64];
    sg_fwd_outcome outcome;
    if (status >= 200 && status < 300) {
        outcome = SG_FWD_DELIVERED;
        error[0] = '\0';
    } else if (status && status != 408 && status != 429 && status < 500) {
        outcome = SG_FWD_DEAD; /* the downstream refuses it: retrying changes nothing */
        snprintf(error, sizeof error, "downstream answered %ld", status);
    } else {
        if (status)
            snprintf(error, sizeof error, "downstream answered %ld", status);
        else
            snprintf(error, sizeof error, "%s", t->error);
        int64_t now = sg_clock_ms(f->o.clock);
        if (now - it->received_at >= f->o.max_age_ms) {
            outcome = SG_FWD_DEAD;
            size_t n = strlen(error);
            snprintf(error + n, sizeof error - n, "; gave up after %lld attempts over %lld s",
                     (long long)it->attempts, (long long)((now - it->received_at) / 1000));
        } else {
            outcome = SG_FWD_RETRY;
            int64_t d = backoff_ms(f, it->attempts, status ? t->retry_after_s : 0);
            int64_t last_chance = it->received_at + f->o.max_age_ms - now; /* > 0 here */
            it->next_attempt_at = now + (d < last_chance ? d : last_chance);
        }
    }
    sg_buf_free(&t->head);
    free(t);
    f->inflight--;
    l->busy = false;

    if (outcome != SG_FWD_RETRY) {
        l->head = it->next;
        if (!l->head)
            l->tail = NULL;
        it->next = NULL;
        f->backlog--;
    }
    f->fn(f->ud, it, outcome, status, error[0] ? error : NULL, took);
    if (f->stopping) {
        /* draining: the retry, and whatever waits behind it, is the next
         * run's (it stays pending in the journal) */
        if (!l->solo)
            sg_u64map_remove(&f->lanes, l->key);
        free_lane(f, l);
    } else if (l->head) {
        schedule(f, l);
    } else if (!l->solo) {
        /* ordered lanes live in the map while they have items: one per job
         * ever seen would grow with every job name */
        sg_u64map_remove(&f->lanes, l->key);
        free(l);
    } else {
        free(l);
    }
}

static void on_report(uv_idle_t *h)
{
    sg_forward *f = h->data;
    uv_idle_stop(h);
    transfer *list = f->ended;
    f->ended = NULL;
    f->ended_tail = &f->ended;
    f->pumping = true; /* the results may queue more: started below, in order */
    while (list) {
        transfer *t = list;
        list = t->next;
        finish(f, t);
    }
    f->pumping = false;
    if (f->stopping)
        maybe_drained(f);
    else
        pump(f);
}

static void on_deadline(uv_timer_t *h)
{
    sg_forward *f = h->data;
    uint64_t now = uv_now(f->loop);
    while (f->first && f->first->deadline <= now) {
        transfer *t = f->first;
        if (t->client)
            h2o_http1client_cancel(t->client);
        t->failed = true;
        snprintf(t->error, sizeof t->error,
                 "the downstream %s did not answer within %d ms (timed out)", f->authority,
                 f->o.timeout_ms);
        ended(t);
    }
    arm_deadline(f);
}

/* ---- start and stop ---- */

/* Splits an http:// or https:// URL into its parts; *literal_len is 0
 * unless the host is an address, then in *literal. Messages show the URL as
 * shown (redacted: it may hold a password). */
static int parse_downstream(sg_forward *f, const char *url, const char *shown,
                            struct sockaddr_storage *literal, socklen_t *literal_len, sg_error *err)
{
    const char *p;
    if (!strncmp(url, "http://", 7)) {
        p = url + 7;
    } else if (!strncmp(url, "https://", 8)) {
        p = url + 8;
        f->tls = true;
    } else {
        return sg_error_set(err, SG_EUSAGE, "downstream '%s' must be an http:// or https:// URL",
                            shown);
    }
    size_t alen = strcspn(p, "/?#");
    if (strpbrk(p, "?#@") || alen == 0)
        return sg_error_set(err, SG_EUSAGE,
                            "downstream '%s': give scheme, host, port and path only "
                            "(no user, query or fragment)",
                            shown);
    const char *host = p, *hend, *port = NULL;
    if (*p == '[') {
        hend = memchr(p, ']', alen);
        if (!hend)
            return sg_error_set(err, SG_EUSAGE, "downstream '%s': unclosed '[' in the host", shown);
        host = p + 1;
        if (hend + 1 < p + alen) {
            if (hend[1] != ':')
                return sg_error_set(err, SG_EUSAGE, "downstream '%s': bad host", shown);
            port = hend + 2;
        }
    } else {
        hend = memchr(p, ':', alen);
        if (hend)
            port = hend + 1;
        else
            hend = p + alen;
    }
    long portnum = f->tls ? 443 : 80;
    if (port) {
        char *end;
        portnum = strtol(port, &end, 10);
        if (end != p + alen || end == port || portnum < 1 || portnum > 65535)
            return sg_error_set(err, SG_EUSAGE, "downstream '%s': the port must be 1 to 65535",
                                shown);
    }
    if (hend == host)
        return sg_error_set(err, SG_EUSAGE, "downstream '%s' has no host", shown);
    f->host = sg_xstrndup(host, (size_t)(hend - host));
    f->authority = sg_xstrndup(p, alen);
    snprintf(f->port, sizeof f->port, "%ld", portnum);
    f->prefix = sg_xstrdup(p + alen);
    size_t n = strlen(f->prefix);
    while (n > 0 && f->prefix[n - 1] == '/')
        f->prefix[--n] = '\0';
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)literal;
    struct sockaddr_in *sin = (struct sockaddr_in *)literal;
    *literal_len = 0;
    if (inet_pton(AF_INET, f->host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)portnum);
        *literal_len = sizeof *sin;
    } else if (inet_pton(AF_INET6, f->host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)portnum);
        *literal_len = sizeof *sin6;
    }
    f->literal = *literal_len > 0;
    return 0;
}

static int setup_tls(sg_forward *f, sg_error *err)
{
    if (!f->tls)
        return 0;
    /* verified like a browser would: the system's CAs (or SSL_CERT_FILE /
     * SSL_CERT_DIR) and the host name of the URL */
    f->ssl = SSL_CTX_new(TLS_client_method());
    if (!f->ssl || SSL_CTX_set_default_verify_paths(f->ssl) != 1)
        return sg_error_set(err, SG_EIO, "downstream %s: cannot set up TLS", f->authority);
    SSL_CTX_set_min_proto_version(f->ssl, TLS1_2_VERSION);
    SSL_CTX_set_verify(f->ssl, SSL_VERIFY_PEER, NULL);
    /* h2o's client checks the chain only: the name is checked by OpenSSL,
     * through the parameters every connection inherits from this context */
    X509_VERIFY_PARAM *param = SSL_CTX_get0_param(f->ssl);
    int named = f->literal ? X509_VERIFY_PARAM_set1_ip_asc(param, f->host)
                           : X509_VERIFY_PARAM_set1_host(param, f->host, 0);
    if (named != 1)
        return sg_error_set(err, SG_EIO, "downstream %s: cannot set up TLS for the name %s",
                            f->authority, f->host);
    f->ctx.ssl_ctx = f->ssl;
    return 0;
}

/* Closes the h2o parts: their timers close with the loop's next closing
 * phase, before the handles closed earlier (libuv closes the newest first),
 * so their memory is freed after them, in free_forward. */
static void dispose_h2o(sg_forward *f)
{
    if (f->disposed)
        return;
    f->disposed = true;
    for (pool *p = f->pool; p; p = p->older)
        h2o_socketpool_dispose(&p->h2o);
    if (f->ctx.io_timeout)
        h2o_timeout_dispose(f->loop, &f->io_timeout);
}

static void free_forward(sg_forward *f)
{
    dispose_h2o(f);
    sg_u64map_clear(&f->lanes); /* empty by now: every lane ended or was freed */
    while (f->pool) {
        pool *p = f->pool;
        f->pool = p->older;
        free(p);
    }
    if (f->ssl)
        SSL_CTX_free(f->ssl);
    free(f->host);
    free(f->authority);
    free(f->prefix);
    free(f);
}

int sg_forward_check_downstream(const char *url, sg_error *err)
{
    sg_forward *f = sg_xcalloc(1, sizeof *f);
    struct sockaddr_storage literal = {0};
    socklen_t literal_len = 0;
    char *shown = sg_url_redacted(url);
    int rc = parse_downstream(f, url, shown, &literal, &literal_len, err);
    free(shown);
    free_forward(f); /* nothing of h2o's was set up: no loop needed */
    return rc;
}

int sg_forward_start(uv_loop_t *loop, const sg_forward_opts *o, sg_fwd_result_fn fn, void *ud,
                     sg_forward **out, sg_error *err)
{
    sg_forward *f = sg_xcalloc(1, sizeof *f);
    f->loop = loop;
    f->o = *o;
    if (!f->o.clock)
        f->o.clock = &sg_clock_real;
    f->fn = fn;
    f->ud = ud;
    f->ended_tail = &f->ended;
    int rc;
    struct sockaddr_storage literal = {0};
    socklen_t literal_len = 0;
    char *shown = sg_url_redacted(o->downstream);
    rc = parse_downstream(f, o->downstream, shown, &literal, &literal_len, err);
    free(shown);
    if (rc || (rc = setup_tls(f, err))) {
        free_forward(f);
        return rc;
    }
    sg_u64map_init(&f->lanes, sizeof(lane *));
    /* h2o's own timeout only backs up the deadline, which ends first */
    h2o_timeout_init(loop, &f->io_timeout, (uint64_t)o->timeout_ms + 1000);
    f->ctx.loop = loop;
    f->ctx.io_timeout = &f->io_timeout;
    uv_timer_init(loop, &f->deadline);
    uv_timer_init(loop, &f->retry_timer);
    uv_idle_init(loop, &f->report);
    f->deadline.data = f->retry_timer.data = f->report.data = f;
    if (f->literal)
        use_address(f, (struct sockaddr *)&literal, literal_len);
    maybe_resolve(f);
    *out = f;
    return 0;
}

static void free_lane(sg_forward *f, lane *l)
{
    while (l->head) {
        sg_fwd_item *it = l->head;
        l->head = it->next;
        sg_fwd_item_free(it);
        f->backlog--;
    }
    free(l);
}

static void on_handle_closed(uv_handle_t *h)
{
    sg_forward *f = h->data;
    f->closing--;
    maybe_stopped(f);
}

static void maybe_stopped(sg_forward *f)
{
    if (!f->stopping || !f->disposed || f->closing)
        return;
    void (*done)(void *) = f->done;
    void *ud = f->done_ud;
    free_forward(f);
    if (done)
        done(ud);
}

/* Every transfer has ended and been reported: the handles close. */
static void maybe_drained(sg_forward *f)
{
    if (!f->stopping || f->inflight || f->ended || f->disposed)
        return;
    if (f->lookup)
        uv_cancel((uv_req_t *)&f->lookup->req);
    f->closing += 3;
    uv_close((uv_handle_t *)&f->deadline, on_handle_closed);
    uv_close((uv_handle_t *)&f->retry_timer, on_handle_closed);
    uv_close((uv_handle_t *)&f->report, on_handle_closed);
    dispose_h2o(f); /* after the handles above: see there */
}

void sg_forward_stop(sg_forward *f, void (*done)(void *ud), void *ud)
{
    f->stopping = true;
    f->done = done;
    f->done_ud = ud;
    /* What has not started stays pending in the journal for the next run.
     * What is in flight may have reached the downstream already: it runs to
     * its end (the attempt's deadline bounds the wait) and is reported as
     * usual, so its result is journaled and it is not delivered again. */
    for (lane **list = &f->ready; list; list = list == &f->ready ? &f->waiting : NULL) {
        for (lane *l = *list, *next; l; l = next) {
            next = l->next;
            if (l->solo)
                free_lane(f, l);
        }
    }
    f->ready = f->ready_tail = f->waiting = NULL;
    for (size_t i = 0; i < f->lanes.cap; i++) {
        if (!f->lanes.keys[i])
            continue;
        lane *l = *(lane **)(f->lanes.vals + i * f->lanes.val_size);
        if (l->busy) {
            /* keep its head, in flight; the items behind it go */
            sg_fwd_item *behind = l->head->next;
            l->head->next = NULL;
            l->tail = l->head;
            while (behind) {
                sg_fwd_item *it = behind;
                behind = it->next;
                sg_fwd_item_free(it);
                f->backlog--;
            }
        } else {
            sg_u64map_remove(&f->lanes, l->key);
            free_lane(f, l);
            i--; /* removal may move another lane into this slot */
        }
    }
    uv_timer_stop(&f->retry_timer);
    maybe_drained(f);
}
