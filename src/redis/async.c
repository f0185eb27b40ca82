/* The async Redis link on the loop (async.h), on this module's own
 * connections: transport.h moves the bytes (plain, unix, TLS), hiredis's
 * reader parses the replies, and a uv_poll per connection drives both.
 *
 * One uv_timer bounds an attempt from its start to sg_rasync_up, then
 * waits out the backoff before the next. Host names are resolved with
 * uv_getaddrinfo so no DNS lookup runs on the loop thread; a numeric
 * address or a unix socket needs none.
 *
 * A connection (sock) lives on the heap from its connect to its poll
 * handle's close callback. Its owner (conn) lets go of it first (c->s =
 * NULL), so nothing reaches a sock that is going away. Closing runs every
 * pending reply callback and every subscription with NULL, in the order
 * queued, then closes the socket. A close asked for while one of the sock's
 * own callbacks runs (in_callback) is done right after that callback
 * returns (hiredis's REDIS_IN_CALLBACK), so a callback may drop or stop
 * anything, its own connection included. The link is freed when its timer
 * and every poll handle have closed. */
#include "stormguard/redis/async.h"

#include <arpa/inet.h>
#include <assert.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netdb.h>
#include <uv.h>

#include "stormguard/base/util.h"
#include "stormguard/redis/rconn.h"
#include "stormguard/redis/reply.h"
#include "stormguard/redis/transport.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define READ_CHUNK 16384

/* A command waiting for its reply, in the order sent. */
typedef struct pending {
    struct pending *next;
    sg_rasync_reply_fn fn;
    void *pd;
    bool subscribe; /* its confirmation makes a subscription */
} pending;

typedef struct sub {
    struct sub *next;
    char *channel;
    sg_rasync_reply_fn fn;
    void *pd;
} sub;

typedef struct sock {
    struct sg_rasync *a;
    struct conn *owner; /* NULL once let go */
    sg_tx tx;
    uv_poll_t poll;
    int events;            /* UV_READABLE | UV_WRITABLE asked of poll; 0: not polling */
    bool want_write;       /* the handshake or a write waits for the socket to take more */
    bool read_wants_write; /* a TLS read must write first (a key update) */
    redisReader *reader;
    sg_txbuf out; /* commands queued, not yet sent */
    pending *head, *tail;
    sub *subs;
    int in_callback;
    bool closing; /* asked to close inside a callback */
    bool closed;  /* NULL replies given, handle closing */
} sock;

typedef struct conn {
    struct sg_rasync *a;
    sock *s;    /* NULL when not open */
    char *name; /* for messages */
    bool no_select;
    bool connected; /* connect and TLS handshake done */
} conn;

typedef struct resolve {
    uv_getaddrinfo_t req;
    struct sg_rasync *a;
    bool abandoned;
} resolve;

typedef struct discover {
    uv_work_t req;
    struct sg_rasync *a;
    bool abandoned;
    sg_redis_url url; /* a copy: the work runs off the loop thread */
    int timeout_ms;
    int rc;
    sg_error err;
    sg_redis_url master;
    int which; /* the sentinel that answered */
    struct sockaddr_storage sentinel_addr;
    socklen_t sentinel_len; /* 0: its address did not resolve (no subscription) */
} discover;

struct sg_rasync {
    uv_loop_t *loop;
    sg_redis_url url;       /* as given */
    sg_redis_url srv;       /* the server of this attempt: url, or the master the
                             * sentinels named (host set) */
    char *address;          /* srv's, for messages */
    struct ssl_ctx_st *tls; /* NULL without TLS */
    int nconns;
    conn conns[SG_RASYNC_MAX_CONNS];
    conn sentinel;                /* Sentinel: subscribed to +switch-master */
    struct discover *discovering; /* Sentinel: the master is being asked for */
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
static void session_fail(sg_rasync *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- one connection ---- */

static void sock_closed(uv_handle_t *h)
{
    sock *s = h->data;
    sg_rasync *a = s->a;
    free(s);
    a->pending--;
    maybe_stopped(a);
}

/* Gives every pending reply and subscription its NULL, then closes. */
static void sock_finish(sock *s)
{
    assert(!s->owner && !s->in_callback && !s->closed);
    s->closed = true;
    s->in_callback++;
    while (s->head) {
        pending *p = s->head;
        s->head = p->next;
        p->fn(p->pd, NULL);
        free(p);
    }
    while (s->subs) {
        sub *u = s->subs;
        s->subs = u->next;
        u->fn(u->pd, NULL);
        free(u->channel);
        free(u);
    }
    s->in_callback--;
    uv_close((uv_handle_t *)&s->poll, sock_closed); /* stops polling before the fd closes */
    sg_tx_close(&s->tx);
    redisReaderFree(s->reader);
    sg_txbuf_free(&s->out);
}

/* Lets go of c's connection and closes it (after the running callback, if
 * one of its own runs). */
static void drop_conn(conn *c)
{
    sock *s = c->s;
    if (!s)
        return;
    c->s = NULL;
    c->connected = false;
    s->owner = NULL;
    if (s->in_callback)
        s->closing = true;
    else
        sock_finish(s);
}

/* The connection broke (the server closed it, an I/O error, a reply it
 * cannot parse, an error reply nothing waited for). */
static void sock_lost(sock *s, const char *why, bool error_reply)
{
    conn *c = s->owner;
    if (!c)
        return;
    sg_rasync *a = c->a;
    char reason[512];
    snprintf(reason, sizeof reason, "%s", why);
    drop_conn(c);
    if (c == &a->sentinel)
        return; /* only the early word of a failover is lost: ROLE and the checks remain */
    if (a->stopping || !a->live)
        return;
    if (a->cbs.on_lost && a->cbs.on_lost(a->ud, (int)(c - a->conns), reason, error_reply))
        return;
    session_fail(a, "lost the %s to redis %s: %s", c->name, a->address, reason);
}

static void call(sock *s, sg_rasync_reply_fn fn, void *pd, const redisReply *r)
{
    s->in_callback++;
    fn(pd, r);
    s->in_callback--;
}

static bool is_kind(const redisReply *r, const char *kind)
{
    return r->type == REDIS_REPLY_ARRAY && r->elements >= 3 &&
           r->element[0]->type == REDIS_REPLY_STRING && !strcasecmp(r->element[0]->str, kind);
}

/* One reply to whom it belongs: a subscription's message to the channel's
 * callback, everything else to the oldest pending command. */
static void dispatch(sock *s, const redisReply *r)
{
    if (s->subs && is_kind(r, "message")) {
        for (sub *u = s->subs; u; u = u->next)
            if (r->element[1]->type == REDIS_REPLY_STRING &&
                !strcmp(u->channel, r->element[1]->str)) {
                call(s, u->fn, u->pd, r);
                return;
            }
        return;
    }
    pending *p = s->head;
    if (!p) {
        /* the server's own word, nothing asked: "max number of clients
         * reached", LOADING; the connection is of no further use */
        if (r->type == REDIS_REPLY_ERROR)
            sock_lost(s, r->str, true);
        return;
    }
    if (p->subscribe && r->type == REDIS_REPLY_ERROR) {
        /* a refused SUBSCRIBE ends its connection (async.h); its callback
         * hears NULL with the rest */
        sock_lost(s, r->str, true);
        return;
    }
    s->head = p->next;
    if (!s->head)
        s->tail = NULL;
    if (p->subscribe && is_kind(r, "subscribe") && r->element[1]->type == REDIS_REPLY_STRING) {
        sub *u = sg_xmalloc(sizeof *u);
        *u = (sub){
            .next = s->subs, .channel = sg_xstrdup(r->element[1]->str), .fn = p->fn, .pd = p->pd};
        s->subs = u;
    }
    call(s, p->fn, p->pd, r);
    free(p);
}

static void on_poll(uv_poll_t *h, int status, int events);

/* Polls for what the connection waits for; a libuv error (which only a
 * socket gone bad gives) or 0. */
static int update_events(sock *s)
{
    int ev;
    if (s->tx.state == SG_TX_CONNECTING)
        ev = UV_WRITABLE;
    else if (s->tx.state == SG_TX_HANDSHAKE)
        ev = s->want_write ? UV_WRITABLE : UV_READABLE;
    else
        ev = UV_READABLE |
             (sg_txbuf_pending(&s->out) || s->want_write || s->read_wants_write ? UV_WRITABLE : 0);
    if (ev == s->events)
        return 0;
    int rc = uv_poll_start(&s->poll, ev, on_poll);
    s->events = rc ? 0 : ev;
    return rc;
}

/* Writes what it can; false when the connection broke (s let go). */
static bool sock_write(sock *s)
{
    int want = 0;
    sg_error e;
    if (sg_txbuf_send(&s->out, &s->tx, &want, &e)) {
        sock_lost(s, e.msg, false);
        return false;
    }
    s->want_write = want == SG_TX_WANT_WRITE;
    return true;
}

/* Reads until the transport would wait (TLS may hold decrypted bytes the
 * socket no longer shows), handing each complete reply on. */
static bool sock_read(sock *s)
{
    char buf[READ_CHUNK];
    for (;;) {
        void *reply = NULL;
        while (s->owner && !s->closing) {
            if (redisReaderGetReply(s->reader, &reply) != REDIS_OK) {
                char why[192];
                snprintf(why, sizeof why, "a reply that is not RESP: %s", s->reader->errstr);
                sock_lost(s, why, false);
                return false;
            }
            if (!reply)
                break;
            dispatch(s, reply);
            freeReplyObject(reply);
        }
        if (!s->owner || s->closing)
            return false;
        int want = 0;
        sg_error e;
        ssize_t n = sg_tx_read(&s->tx, buf, sizeof buf, &want, &e);
        if (n < 0) {
            sock_lost(s, s->tx.eof ? "connection closed" : e.msg, false);
            return false;
        }
        if (n == 0) {
            s->read_wants_write = want == SG_TX_WANT_WRITE;
            return true;
        }
        if (redisReaderFeed(s->reader, buf, (size_t)n) != REDIS_OK) {
            sock_lost(s, "out of memory reading a reply", false);
            return false;
        }
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    sock *s = h->data;
    conn *c = s->owner;
    if (!c)
        return;
    /* libuv stopped the handle on a socket error (status < 0, no events):
     * the I/O below meets the error, and polling starts again if it does
     * not */
    if (status < 0)
        s->events = 0;
    if (s->tx.state != SG_TX_OPEN) {
        sg_error e;
        int rc = sg_tx_handshake(&s->tx, &e);
        if (rc < 0) {
            session_fail(c->a, "%s", e.msg);
            return;
        }
        if (rc > 0) {
            s->want_write = rc == SG_TX_WANT_WRITE;
            if ((rc = update_events(s)))
                sock_lost(s, uv_strerror(rc), false);
            return;
        }
        c->connected = true;
    }
    /* a poll error (a reset) arrives as status < 0 without events: the
     * read or write meets it and says what it is. A reply callback that
     * let go of this connection left it closing: it closes now. */
    bool ok = sock_write(s) && sock_read(s) && sock_write(s);
    if (s->closing && !s->in_callback) {
        sock_finish(s);
        return;
    }
    int rc;
    if (ok && s->owner && (rc = update_events(s)))
        sock_lost(s, uv_strerror(rc), false);
}

/* Opens c's connection to sa (NULL: u's unix socket); u gives the name TLS
 * verifies. */
static bool sock_open_url(sg_rasync *a, conn *c, const sg_redis_url *u, const struct sockaddr *sa,
                          socklen_t salen)
{
    sock *s = sg_xcalloc(1, sizeof *s);
    sg_error e;
    if (sg_tx_start(&s->tx, u, sa, salen, a->tls, &e) ||
        (!u->path && sg_tx_keepalive(&s->tx, &e))) {
        sg_tx_close(&s->tx);
        free(s);
        if (c != &a->sentinel) /* the sentinel's connection is optional */
            session_fail(a, "%s", e.msg);
        return false;
    }
    int rc = uv_poll_init(a->loop, &s->poll, s->tx.fd);
    if (rc != 0) {
        sg_tx_close(&s->tx);
        free(s);
        if (c != &a->sentinel)
            session_fail(a, "watching the socket of redis %s: %s", a->address, uv_strerror(rc));
        return false;
    }
    a->pending++;
    s->a = a;
    s->owner = c;
    s->poll.data = s;
    s->reader = redisReaderCreate();
    c->s = s;
    if ((rc = update_events(s))) {
        drop_conn(c);
        if (c != &a->sentinel)
            session_fail(a, "watching the socket of redis %s: %s", a->address, uv_strerror(rc));
        return false;
    }
    c->connected = false;
    return true;
}

static bool sock_open(sg_rasync *a, conn *c, const struct sockaddr *sa, socklen_t salen)
{
    return sock_open_url(a, c, &a->srv, sa, salen);
}

/* Formats a command into s's output and queues its callback. */
static void sock_queue(sock *s, sg_rasync_reply_fn fn, void *pd, bool subscribe, int argc,
                       const char **argv, const size_t *argvlen)
{
    sg_txbuf_command(&s->out, argc, argv, argvlen);
    pending *p = sg_xmalloc(sizeof *p);
    *p = (pending){.fn = fn, .pd = pd, .subscribe = subscribe};
    if (s->tail)
        s->tail->next = p;
    else
        s->head = p;
    s->tail = p;
    /* written when the socket says so: never a callback from here. Should
     * polling fail, the command's reply never comes and the owner's own
     * timeout for it ends the session. */
    if (s->tx.state == SG_TX_OPEN && !s->in_callback)
        (void)update_events(s);
}

/* ---- sessions ---- */

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
    if (a->discovering) {
        a->discovering->abandoned = true;
        uv_cancel((uv_req_t *)&a->discovering->req);
        a->discovering = NULL;
    }
    drop_conn(&a->sentinel);
    for (int i = 0; i < a->nconns; i++)
        drop_conn(&a->conns[i]);
    if (a->stopping)
        return;
    uv_timer_start(&a->timer, on_retry, (uint64_t)a->backoff_ms, 0);
    a->backoff_ms = a->backoff_ms * 2 > a->backoff_max_ms ? a->backoff_max_ms : a->backoff_ms * 2;
}

/* A failure the link found itself: the session ends and the owner hears why. */
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

static void on_auth(void *pd, const redisReply *reply)
{
    sg_rasync *a = pd;
    if (!reply || a->stopping || reply->type != REDIS_REPLY_ERROR)
        return;
    char why[256];
    /* never reply->str as is: a server without AUTH echoes its arguments */
    session_fail(a, "authenticating to redis %s as user '%s': %s", a->address,
                 a->url.user ? a->url.user : "default",
                 sg_reply_error_no_args(reply->str, why, sizeof why));
}

static void on_auth_sentinel(void *pd, const redisReply *reply)
{
    sg_rasync *a = pd;
    if (reply && !a->stopping && reply->type == REDIS_REPLY_ERROR)
        drop_conn(&a->sentinel); /* the session goes on without the early word */
}

static void on_role(void *pd, const redisReply *r);

static void on_select(void *pd, const redisReply *reply)
{
    sg_rasync *a = pd;
    if (!reply || a->stopping || reply->type != REDIS_REPLY_ERROR)
        return;
    session_fail(a, "selecting database %d on redis %s: %s", a->url.db, a->address, reply->str);
}

/* Queues AUTH (if the URL or environment gave a password) and SELECT on a
 * new connection; they go out once it is connected. */
static void queue_handshake(sg_rasync *a, conn *c)
{
    if (a->url.password) {
        const char *argv[] = {"AUTH", a->url.user ? a->url.user : a->url.password, a->url.password};
        sock_queue(c->s, on_auth, a, false, a->url.user ? 3 : 2, argv, NULL);
    }
    if (a->url.db && !c->no_select) {
        char db[16];
        snprintf(db, sizeof db, "%d", a->url.db);
        const char *argv[] = {"SELECT", db};
        sock_queue(c->s, on_select, a, false, 2, argv, NULL);
    }
}

/* Opens every connection to sa (NULL: the unix socket) and queues its
 * handshake. Then the owner queues its own. */
static void open_session(sg_rasync *a, const struct sockaddr *sa, socklen_t salen)
{
    for (int i = 0; i < a->nconns; i++)
        if (!sock_open(a, &a->conns[i], sa, salen))
            return;
    for (int i = 0; i < a->nconns; i++)
        queue_handshake(a, &a->conns[i]);
    if (a->url.master_name) {
        const char *argv[] = {"ROLE"};
        sock_queue(a->conns[0].s, on_role, a, false, 1, argv, NULL);
    }
    a->cbs.on_open(a->ud);
}

/* Opens the session to a numeric address. */
static void open_numeric(sg_rasync *a, const char *ip)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (strchr(ip, ':')) {
        uv_ip6_addr(ip, a->srv.port, (struct sockaddr_in6 *)&ss);
        len = sizeof(struct sockaddr_in6);
    } else {
        uv_ip4_addr(ip, a->srv.port, (struct sockaddr_in *)&ss);
        len = sizeof(struct sockaddr_in);
    }
    open_session(a, (struct sockaddr *)&ss, len);
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
        session_fail(a, "resolving redis host %s: %s", a->srv.host, uv_strerror(status));
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
        session_fail(a, "resolving redis host %s: no IPv4 or IPv6 address", a->srv.host);
        return;
    }
    open_numeric(a, ip);
}

static void on_attempt_timeout(uv_timer_t *t)
{
    sg_rasync *a = t->data;
    bool connecting = false;
    for (int i = 0; i < a->nconns; i++)
        connecting |= a->conns[i].s && !a->conns[i].connected;
    if (a->discovering)
        session_fail(a, "the sentinels of master %s named no master within %d ms",
                     a->url.master_name, a->timeout_ms);
    else if (a->resolving)
        session_fail(a, "resolving redis host %s took longer than %d ms", a->srv.host,
                     a->timeout_ms);
    else if (connecting && a->tls)
        session_fail(a,
                     "cannot reach redis %s: no connection and TLS handshake within %d ms (a "
                     "plain port answers no TLS handshake: redis://, without --tls)",
                     a->address, a->timeout_ms);
    else if (connecting)
        session_fail(a, "cannot reach redis %s: connect timed out after %d ms", a->address,
                     a->timeout_ms);
    else
        session_fail(a, "redis %s did not answer the handshake within %d ms", a->address,
                     a->timeout_ms);
}

/* ---- Sentinel ----
 *
 * An attempt on a redis-sentinel:// URL first asks the sentinels for the
 * master, on the thread pool: the blocking discovery of rconn.h, bounded
 * by the attempt's timeout, so every attempt (every reconnect) resolves
 * afresh. The session then checks ROLE on the answer and keeps a
 * connection to the sentinel that answered, subscribed to +switch-master:
 * a failover ends the session at once, and the next attempt asks again. */

static void connect_to_server(sg_rasync *a);

static void discover_work(uv_work_t *req)
{
    discover *d = req->data;
    d->rc = sg_rconn_resolve_master(&d->url, d->timeout_ms, d->timeout_ms, &d->master, &d->which,
                                    &d->err);
    if (d->rc)
        return;
    char port[8];
    snprintf(port, sizeof port, "%d", d->url.sentinels[d->which].port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(d->url.sentinels[d->which].host, port, &hints, &res) == 0 && res) {
        memcpy(&d->sentinel_addr, res->ai_addr, res->ai_addrlen);
        d->sentinel_len = res->ai_addrlen;
    }
    if (res)
        freeaddrinfo(res);
}

static void on_switch(void *pd, const redisReply *r)
{
    sg_rasync *a = pd;
    if (!r || a->stopping || !is_kind(r, "message") || r->element[2]->type != REDIS_REPLY_STRING)
        return;
    /* "<name> <old-ip> <old-port> <new-ip> <new-port>" */
    char name[256], oldip[64], newip[64];
    int oldport, newport;
    if (sscanf(r->element[2]->str, "%255s %63s %d %63s %d", name, oldip, &oldport, newip,
               &newport) != 5 ||
        strcmp(name, a->url.master_name))
        return;
    session_fail(a, "the sentinels moved master %s from %s:%d to %s:%d (+switch-master)", name,
                 oldip, oldport, newip, newport);
}

static void on_role(void *pd, const redisReply *r)
{
    sg_rasync *a = pd;
    if (!r || a->stopping)
        return;
    const char *role =
        r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0]->type == REDIS_REPLY_STRING
            ? r->element[0]->str
        : r->type == REDIS_REPLY_ERROR ? r->str
                                       : "?";
    if (strcmp(role, "master"))
        session_fail(a,
                     "redis %s, which the sentinels name the master %s, says it is a %s (a "
                     "failover under way?): asking the sentinels again",
                     a->address, a->url.master_name, role);
}

/* The sentinel's connection of the session: AUTH, then +switch-master. */
static void watch_sentinel(sg_rasync *a, const discover *d)
{
    if (!d->sentinel_len)
        return;
    sg_redis_url s = {.host = a->url.sentinels[d->which].host,
                      .port = a->url.sentinels[d->which].port,
                      .tls = a->url.tls};
    if (!sock_open_url(a, &a->sentinel, &s, (const struct sockaddr *)&d->sentinel_addr,
                       d->sentinel_len))
        return;
    if (a->url.sentinel_password) {
        const char *argv[] = {"AUTH", a->url.sentinel_password};
        sock_queue(a->sentinel.s, on_auth_sentinel, a, false, 2, argv, NULL);
    }
    const char *argv[] = {"SUBSCRIBE", "+switch-master"};
    sock_queue(a->sentinel.s, on_switch, a, true, 2, argv, NULL);
}

static void discover_done(uv_work_t *req, int status)
{
    discover *d = req->data;
    sg_rasync *a = d->a;
    a->pending--;
    if (!d->abandoned && status == 0 && d->rc) {
        a->discovering = NULL;
        session_fail(a, "%s", d->err.msg);
    } else if (!d->abandoned && status == 0) {
        a->discovering = NULL;
        sg_redis_url_close(&a->srv);
        a->srv = d->master;
        memset(&d->master, 0, sizeof d->master);
        free(a->address);
        a->address = sg_redis_url_address(&a->srv);
        watch_sentinel(a, d);
        if (a->live)
            connect_to_server(a);
    }
    if (d->rc == 0)
        sg_redis_url_close(&d->master);
    sg_redis_url_close(&d->url);
    free(d);
    maybe_stopped(a);
}

static void discover_master(sg_rasync *a)
{
    discover *d = sg_xcalloc(1, sizeof *d);
    d->a = a;
    d->req.data = d;
    d->rc = SG_EREDIS;
    sg_redis_url_copy(&d->url, &a->url);
    /* every sentinel gets its share of the attempt, so that an attempt
     * timed out leaves no discovery running long after it */
    d->timeout_ms = a->timeout_ms / (2 * a->url.nsentinels);
    if (d->timeout_ms < 200)
        d->timeout_ms = 200;
    int rc = uv_queue_work(a->loop, &d->req, discover_work, discover_done);
    if (rc != 0) {
        sg_redis_url_close(&d->url);
        free(d);
        session_fail(a, "asking the sentinels of %s: %s", a->url.master_name, uv_strerror(rc));
        return;
    }
    a->discovering = d;
    a->pending++;
}

static void attempt(sg_rasync *a)
{
    assert(!a->live && !a->stopping);
    for (int i = 0; i < a->nconns; i++)
        assert(!a->conns[i].s);
    assert(!a->sentinel.s);
    a->live = true;
    uv_timer_start(&a->timer, on_attempt_timeout, (uint64_t)a->timeout_ms, 0);
    if (a->url.master_name)
        discover_master(a);
    else
        connect_to_server(a);
}

/* Opens the session to srv: resolved here, or at once if numeric. */
static void connect_to_server(sg_rasync *a)
{
    if (a->srv.path) {
        open_session(a, NULL, 0);
        return;
    }
    if (sg_tx_is_ip(a->srv.host)) {
        open_numeric(a, a->srv.host);
        return;
    }
    resolve *r = sg_xcalloc(1, sizeof *r);
    r->a = a;
    r->req.data = r;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = uv_getaddrinfo(a->loop, &r->req, on_resolved, a->srv.host, NULL, &hints);
    if (rc != 0) {
        free(r);
        session_fail(a, "resolving redis host %s: %s", a->srv.host, uv_strerror(rc));
        return;
    }
    a->resolving = r;
    a->pending++;
}

/* ---- commands ---- */

static sock *open_sock(sg_rasync *a, int index)
{
    assert(index >= 0 && index < a->nconns);
    sock *s = a->stopping ? NULL : a->conns[index].s;
    return s && !s->closing ? s : NULL;
}

int sg_rasync_command(sg_rasync *a, int index, sg_rasync_reply_fn fn, void *pd, int argc,
                      const char **argv, const size_t *argvlen)
{
    sock *s = open_sock(a, index);
    if (!s)
        return SG_EREDIS;
    sock_queue(s, fn, pd, false, argc, argv, argvlen);
    return 0;
}

int sg_rasync_subscribe(sg_rasync *a, int index, const char *channel, sg_rasync_reply_fn fn,
                        void *pd)
{
    sock *s = open_sock(a, index);
    if (!s)
        return SG_EREDIS;
    const char *argv[] = {"SUBSCRIBE", channel};
    sock_queue(s, fn, pd, true, 2, argv, NULL);
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

const char *sg_rasync_server(const sg_rasync *a)
{
    return a->address;
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
    struct ssl_ctx_st *tls = NULL;
    int rc = sg_tx_tls_new(o->url, &tls, err);
    if (rc)
        return rc;
    sg_rasync *a = sg_xcalloc(1, sizeof *a);
    a->tls = tls;
    a->loop = loop;
    sg_redis_url_copy(&a->url, o->url);
    sg_redis_url_copy(&a->srv, o->url);
    a->address = sg_redis_url_address(o->url);
    a->sentinel = (conn){.a = a, .name = sg_xstrdup("sentinel connection"), .no_select = true};
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
        assert(!a->conns[i].s);
        free(a->conns[i].name);
    }
    assert(!a->sentinel.s);
    free(a->sentinel.name);
    sg_tx_tls_free(a->tls);
    sg_redis_url_close(&a->url);
    sg_redis_url_close(&a->srv);
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
    if (a->discovering) {
        a->discovering->abandoned = true;
        uv_cancel((uv_req_t *)&a->discovering->req);
        a->discovering = NULL;
    }
    drop_conn(&a->sentinel);
    for (int i = 0; i < a->nconns; i++)
        drop_conn(&a->conns[i]);
}
