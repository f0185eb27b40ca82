/* The async Redis link on the loop (async.h).
 *
 * hiredis 0.14 has no connect timeout for async contexts: one uv_timer bounds
 * an attempt from its start to sg_rasync_up, then waits out the backoff
 * before the next. Host names are resolved with uv_getaddrinfo so no DNS
 * lookup runs on the loop thread; a numeric address or a unix socket needs
 * none.
 *
 * Context lifetime. hiredis frees a context itself after calling its connect
 * callback with an error or its disconnect callback, and calls every pending
 * reply callback with a NULL reply first. So: a conn's ac is set to NULL
 * before the link frees it (the disconnect callback then sees a context that
 * is no longer its conn's and ignores it), reply callbacks treat NULL as
 * "going away", and no owner callback but a NULL reply runs from a NULL path.
 * redisAsyncFree called inside a reply callback of the same context is
 * deferred by hiredis until the callback returns. The link is freed when its
 * timer and every poll handle of its contexts have closed. */
#include "stormguard/redis/async.h"

#include <arpa/inet.h>
#include <assert.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "stormguard/base/util.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

typedef struct conn {
    struct sg_rasync *a;
    redisAsyncContext *ac; /* NULL once gone or given up */
    char *name;            /* for messages */
    bool no_select;
    bool connected;
} conn;

typedef struct resolve {
    uv_getaddrinfo_t req;
    struct sg_rasync *a;
    bool abandoned;
} resolve;

struct sg_rasync {
    uv_loop_t *loop;
    sg_redis_url url;
    char *address;
    int nconns;
    conn conns[SG_RASYNC_MAX_CONNS];
    int timeout_ms, backoff_min_ms, backoff_max_ms, backoff_ms;
    sg_rasync_cbs cbs;
    void *ud;

    uv_timer_t timer; /* attempt timeout, then backoff */
    resolve *resolving;
    bool live; /* an attempt or a session is under way */

    bool stopping;
    int pending; /* close callbacks and resolutions still to come */
    void (*done)(void *ud);
    void *done_ud;
};

static void attempt(sg_rasync *a);
static void maybe_stopped(sg_rasync *a);

/* ---- hiredis <-> libuv ----
 *
 * The event hooks of hiredis's libuv adapter (adapters/libuv.h), with three
 * changes. libuv reports a socket error (a refused connect, a reset) as a
 * negative status, without events, and stops the handle; the 0.14 adapter
 * ignores such calls, so hiredis never learns and the connection hangs. Here
 * hiredis reads or writes as it wanted to and meets the error itself. The
 * poll handle's close is counted, so sg_rasync_stop's done runs after it.
 * And the context's subscriptions hang here: hiredis calls them for the last
 * time (with NULL) just before the cleanup hook, so that is where they go. */

typedef struct sub {
    struct sub *next;
    sg_rasync_reply_fn fn;
    void *pd;
} sub;

typedef struct uvev {
    redisAsyncContext *ac; /* NULL once hiredis cleaned up */
    uv_poll_t poll;
    int events;
    struct sg_rasync *a;
    sub *subs;
} uvev;

static void ev_poll(uv_poll_t *h, int status, int events)
{
    uvev *e = h->data;
    int ev = status < 0 ? e->events : events;
    if (e->ac && (ev & UV_READABLE))
        redisAsyncHandleRead(e->ac);
    if (e->ac && (ev & UV_WRITABLE))
        redisAsyncHandleWrite(e->ac);
}

static void ev_set(uvev *e, int events)
{
    e->events = events;
    if (events)
        uv_poll_start(&e->poll, events, ev_poll);
    else
        uv_poll_stop(&e->poll);
}

static void ev_add_read(void *d)
{
    uvev *e = d;
    ev_set(e, e->events | UV_READABLE);
}

static void ev_del_read(void *d)
{
    uvev *e = d;
    ev_set(e, e->events & ~UV_READABLE);
}

static void ev_add_write(void *d)
{
    uvev *e = d;
    ev_set(e, e->events | UV_WRITABLE);
}

static void ev_del_write(void *d)
{
    uvev *e = d;
    ev_set(e, e->events & ~UV_WRITABLE);
}

static void ev_closed(uv_handle_t *h)
{
    uvev *e = h->data;
    sg_rasync *a = e->a;
    free(e);
    a->pending--;
    maybe_stopped(a);
}

static void ev_cleanup(void *d)
{
    uvev *e = d;
    e->ac = NULL;
    while (e->subs) {
        sub *s = e->subs;
        e->subs = s->next;
        free(s);
    }
    uv_close((uv_handle_t *)&e->poll, ev_closed);
}

static int ev_attach(sg_rasync *a, redisAsyncContext *ac)
{
    uvev *e = sg_xcalloc(1, sizeof *e);
    int rc = uv_poll_init(a->loop, &e->poll, ac->c.fd);
    if (rc != 0) {
        free(e);
        return rc;
    }
    e->ac = ac;
    e->a = a;
    e->poll.data = e;
    ac->ev.data = e;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    a->pending++;
    return 0;
}

/* ---- sessions ---- */

/* Frees a conn's context unless hiredis is already doing so. */
static void drop_conn(conn *c)
{
    redisAsyncContext *ac = c->ac;
    if (!ac)
        return;
    c->ac = NULL;
    c->connected = false;
    redisAsyncFree(ac);
}

static void on_retry(uv_timer_t *t)
{
    attempt(t->data);
}

/* Ends the attempt or session: every connection goes and the next attempt
 * is scheduled. The NULL replies of the dropped connections may stop the
 * link. */
static void end_session(sg_rasync *a)
{
    a->live = false;
    if (a->resolving) {
        a->resolving->abandoned = true;
        uv_cancel((uv_req_t *)&a->resolving->req); /* fails if it already runs: fine */
        a->resolving = NULL;
    }
    for (int i = 0; i < a->nconns; i++)
        drop_conn(&a->conns[i]);
    if (a->stopping)
        return;
    uv_timer_start(&a->timer, on_retry, (uint64_t)a->backoff_ms, 0);
    a->backoff_ms = a->backoff_ms * 2 > a->backoff_max_ms ? a->backoff_max_ms : a->backoff_ms * 2;
}

/* A failure the link found itself: the session ends and the owner hears why. */
static void session_fail(sg_rasync *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void session_fail(sg_rasync *a, const char *fmt, ...)
{
    if (a->stopping || !a->live)
        return;
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    end_session(a);
    if (!a->stopping)
        a->cbs.on_down(a->ud, reason);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    conn *c = ac->data;
    if (c->ac != ac)
        return;
    if (status == REDIS_OK) {
        c->connected = true;
        return;
    }
    c->ac = NULL; /* hiredis frees it when we return */
    session_fail(c->a, "cannot reach redis %s: %s", c->a->address, ac->c.errstr);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    conn *c = ac->data;
    sg_rasync *a = c->a;
    if (c->ac != ac)
        return; /* the link dropped it */
    assert(a->live && !a->stopping);
    c->ac = NULL;
    c->connected = false;
    const char *why = status == REDIS_OK ? "connection closed" : ac->c.errstr;
    if (a->cbs.on_lost &&
        a->cbs.on_lost(a->ud, (int)(c - a->conns), why, ac->c.err == REDIS_ERR_OTHER))
        return;
    session_fail(a, "lost the %s to redis %s: %s", c->name, a->address, why);
}

static bool open_conn(sg_rasync *a, conn *c, const char *host)
{
    redisAsyncContext *ac =
        a->url.path ? redisAsyncConnectUnix(a->url.path) : redisAsyncConnect(host, a->url.port);
    if (!ac) {
        session_fail(a, "connecting to redis %s: out of memory", a->address);
        return false;
    }
    if (ac->c.err) {
        char why[128];
        snprintf(why, sizeof why, "%s", ac->c.errstr);
        redisAsyncFree(ac); /* not attached, no callbacks: freed at once */
        session_fail(a, "cannot reach redis %s: %s", a->address, why);
        return false;
    }
    if (!a->url.path && redisEnableKeepAlive(&ac->c) != REDIS_OK) {
        char why[128];
        snprintf(why, sizeof why, "%s", ac->c.errstr);
        redisAsyncFree(ac);
        session_fail(a, "setting TCP keepalive for redis %s: %s", a->address, why);
        return false;
    }
    ac->data = c;
    int rc = ev_attach(a, ac);
    if (rc != 0) {
        redisAsyncFree(ac);
        session_fail(a, "watching the socket of redis %s: %s", a->address, uv_strerror(rc));
        return false;
    }
    c->ac = ac;
    c->connected = false;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    return true;
}

static void on_auth(redisAsyncContext *ac, void *r, void *pd)
{
    sg_rasync *a = pd;
    redisReply *reply = r;
    if (!reply || a->stopping || reply->type != REDIS_REPLY_ERROR)
        return;
    session_fail(a, "authenticating to redis %s as user '%s': %s", a->address,
                 a->url.user ? a->url.user : "default", reply->str);
}

static void on_select(redisAsyncContext *ac, void *r, void *pd)
{
    sg_rasync *a = pd;
    redisReply *reply = r;
    if (!reply || a->stopping || reply->type != REDIS_REPLY_ERROR)
        return;
    session_fail(a, "selecting database %d on redis %s: %s", a->url.db, a->address, reply->str);
}

/* Queues AUTH on a new connection if the URL or environment gave a password. */
static bool queue_auth(sg_rasync *a, conn *c)
{
    if (!a->url.password)
        return true;
    const char *argv[] = {"AUTH", a->url.user ? a->url.user : a->url.password, a->url.password};
    return redisAsyncCommandArgv(c->ac, on_auth, a, a->url.user ? 3 : 2, argv, NULL) == REDIS_OK;
}

static bool queue_select(sg_rasync *a, conn *c)
{
    if (!a->url.db || c->no_select)
        return true;
    char db[16];
    snprintf(db, sizeof db, "%d", a->url.db);
    const char *argv[] = {"SELECT", db};
    return redisAsyncCommandArgv(c->ac, on_select, a, 2, argv, NULL) == REDIS_OK;
}

/* Opens every connection and queues its handshake; hiredis writes it once
 * connected. Then the owner queues its own. */
static void open_session(sg_rasync *a, const char *host)
{
    for (int i = 0; i < a->nconns; i++)
        if (!open_conn(a, &a->conns[i], host))
            return;
    bool ok = true;
    for (int i = 0; i < a->nconns && ok; i++)
        ok = queue_auth(a, &a->conns[i]);
    for (int i = 0; i < a->nconns && ok; i++)
        ok = queue_select(a, &a->conns[i]);
    if (!ok) {
        session_fail(a, "queueing the handshake for redis %s failed", a->address);
        return;
    }
    a->cbs.on_open(a->ud);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    resolve *r = req->data;
    sg_rasync *a = r->a;
    bool abandoned = r->abandoned;
    free(r);
    a->pending--;
    if (abandoned) {
        uv_freeaddrinfo(res);
        maybe_stopped(a);
        return;
    }
    a->resolving = NULL;
    if (status != 0) {
        uv_freeaddrinfo(res);
        session_fail(a, "resolving redis host %s: %s", a->url.host, uv_strerror(status));
        return;
    }
    /* IPv4 first, as hiredis itself prefers */
    const struct addrinfo *pick = NULL;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            pick = ai;
            break;
        }
        if (ai->ai_family == AF_INET6 && !pick)
            pick = ai;
    }
    char ip[64] = "";
    if (pick && pick->ai_family == AF_INET)
        uv_ip4_name((const struct sockaddr_in *)pick->ai_addr, ip, sizeof ip);
    else if (pick)
        uv_ip6_name((const struct sockaddr_in6 *)pick->ai_addr, ip, sizeof ip);
    uv_freeaddrinfo(res);
    if (!ip[0]) {
        session_fail(a, "resolving redis host %s: no IPv4 or IPv6 address", a->url.host);
        return;
    }
    open_session(a, ip);
}

static void on_attempt_timeout(uv_timer_t *t)
{
    sg_rasync *a = t->data;
    bool connecting = false;
    for (int i = 0; i < a->nconns; i++)
        connecting |= a->conns[i].ac && !a->conns[i].connected;
    if (a->resolving)
        session_fail(a, "resolving redis host %s took longer than %d ms", a->url.host,
                     a->timeout_ms);
    else if (connecting)
        session_fail(a, "cannot reach redis %s: connect timed out after %d ms", a->address,
                     a->timeout_ms);
    else
        session_fail(a, "redis %s did not answer the handshake within %d ms", a->address,
                     a->timeout_ms);
}

static bool is_numeric_host(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static void attempt(sg_rasync *a)
{
    assert(!a->live && !a->stopping);
    for (int i = 0; i < a->nconns; i++)
        assert(!a->conns[i].ac);
    a->live = true;
    uv_timer_start(&a->timer, on_attempt_timeout, (uint64_t)a->timeout_ms, 0);
    if (a->url.path || is_numeric_host(a->url.host)) {
        open_session(a, a->url.host);
        return;
    }
    resolve *r = sg_xcalloc(1, sizeof *r);
    r->a = a;
    r->req.data = r;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = uv_getaddrinfo(a->loop, &r->req, on_resolved, a->url.host, NULL, &hints);
    if (rc != 0) {
        free(r);
        session_fail(a, "resolving redis host %s: %s", a->url.host, uv_strerror(rc));
        return;
    }
    a->resolving = r;
    a->pending++;
}

/* ---- commands ---- */

/* A command's callback and its data, for the one call hiredis makes. */
typedef struct cmd {
    sg_rasync_reply_fn fn;
    void *pd;
} cmd;

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    cmd c = *(cmd *)privdata;
    free(privdata);
    c.fn(c.pd, r);
}

static void on_message(redisAsyncContext *ac, void *r, void *privdata)
{
    sub *s = privdata;
    s->fn(s->pd, r);
}

static redisAsyncContext *open_context(sg_rasync *a, int index)
{
    assert(index >= 0 && index < a->nconns);
    return a->stopping ? NULL : a->conns[index].ac;
}

int sg_rasync_command(sg_rasync *a, int index, sg_rasync_reply_fn fn, void *pd, int argc,
                      const char **argv, const size_t *argvlen)
{
    redisAsyncContext *ac = open_context(a, index);
    if (!ac)
        return SG_EREDIS;
    cmd *c = sg_xmalloc(sizeof *c);
    c->fn = fn;
    c->pd = pd;
    if (redisAsyncCommandArgv(ac, on_reply, c, argc, argv, argvlen) != REDIS_OK) {
        free(c);
        return SG_EREDIS;
    }
    return 0;
}

int sg_rasync_subscribe(sg_rasync *a, int index, const char *channel, sg_rasync_reply_fn fn,
                        void *pd)
{
    redisAsyncContext *ac = open_context(a, index);
    if (!ac)
        return SG_EREDIS;
    sub *s = sg_xmalloc(sizeof *s);
    s->fn = fn;
    s->pd = pd;
    const char *argv[] = {"SUBSCRIBE", channel};
    if (redisAsyncCommandArgv(ac, on_message, s, 2, argv, NULL) != REDIS_OK) {
        free(s);
        return SG_EREDIS;
    }
    uvev *e = ac->ev.data;
    s->next = e->subs;
    e->subs = s;
    return 0;
}

void sg_rasync_drop(sg_rasync *a, int index)
{
    assert(index >= 0 && index < a->nconns);
    drop_conn(&a->conns[index]);
}

void sg_rasync_up(sg_rasync *a)
{
    assert(a->live);
    a->backoff_ms = a->backoff_min_ms;
    uv_timer_stop(&a->timer);
}

void sg_rasync_fail(sg_rasync *a)
{
    if (!a->stopping && a->live)
        end_session(a);
}

bool sg_rasync_live(const sg_rasync *a)
{
    return a->live;
}

/* ---- lifecycle ---- */

int sg_rasync_start(uv_loop_t *loop, const sg_rasync_opts *o, const sg_rasync_cbs *cbs, void *ud,
                    sg_rasync **out, sg_error *err)
{
    assert(cbs->on_open && cbs->on_down);
    if (o->nconns < 1 || o->nconns > SG_RASYNC_MAX_CONNS)
        return sg_error_set(err, SG_EUSAGE, "redis link: %d connections asked for, 1 to %d work",
                            o->nconns, SG_RASYNC_MAX_CONNS);
    if (o->timeout_ms <= 0 || o->backoff_min_ms < 0 || o->backoff_max_ms < 0)
        return sg_error_set(err, SG_EUSAGE, "redis link: timeout and backoff must be positive");
    if (o->url->user && !o->url->password)
        return sg_error_set(err, SG_EUSAGE,
                            "redis URL names user '%s' but no password was given (URL, "
                            "STORMGUARD_REDIS_PASSWORD or REDISCLI_AUTH)",
                            o->url->user);
    sg_rasync *a = sg_xcalloc(1, sizeof *a);
    a->loop = loop;
    sg_redis_url_copy(&a->url, o->url);
    a->address = sg_redis_url_address(o->url);
    a->nconns = o->nconns;
    for (int i = 0; i < o->nconns; i++)
        a->conns[i] = (conn){.a = a,
                             .name = sg_xstrdup(o->conns[i].name ? o->conns[i].name : "connection"),
                             .no_select = o->conns[i].no_select};
    a->timeout_ms = o->timeout_ms;
    a->backoff_min_ms = o->backoff_min_ms ? o->backoff_min_ms : BACKOFF_MIN_MS;
    a->backoff_max_ms = o->backoff_max_ms ? o->backoff_max_ms : BACKOFF_MAX_MS;
    if (a->backoff_max_ms < a->backoff_min_ms)
        a->backoff_max_ms = a->backoff_min_ms;
    a->backoff_ms = a->backoff_min_ms;
    a->cbs = *cbs;
    a->ud = ud;
    /* uv_timer_init cannot fail on Unix (libuv 1.x returns 0) */
    uv_timer_init(loop, &a->timer);
    a->timer.data = a;
    /* first attempt from the loop, so no callback runs before *out is set */
    uv_timer_start(&a->timer, on_retry, 0, 0);
    *out = a;
    return 0;
}

static void maybe_stopped(sg_rasync *a)
{
    if (!a->stopping || a->pending)
        return;
    void (*done)(void *) = a->done;
    void *ud = a->done_ud;
    for (int i = 0; i < a->nconns; i++) {
        assert(!a->conns[i].ac);
        free(a->conns[i].name);
    }
    sg_redis_url_close(&a->url);
    free(a->address);
    free(a);
    if (done)
        done(ud);
}

static void on_timer_closed(uv_handle_t *h)
{
    sg_rasync *a = h->data;
    a->pending--;
    maybe_stopped(a);
}

void sg_rasync_stop(sg_rasync *a, void (*done)(void *ud), void *ud)
{
    assert(!a->stopping);
    a->stopping = true;
    a->live = false;
    a->done = done;
    a->done_ud = ud;
    a->pending++;
    uv_close((uv_handle_t *)&a->timer, on_timer_closed);
    if (a->resolving) {
        a->resolving->abandoned = true;
        uv_cancel((uv_req_t *)&a->resolving->req);
        a->resolving = NULL;
    }
    for (int i = 0; i < a->nconns; i++)
        drop_conn(&a->conns[i]);
}
