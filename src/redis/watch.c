/* Wipe detection on the loop with async hiredis (watch.h).
 *
 * A session is two connections to the same server. The tracking connection
 * runs CLIENT ID, then SUBSCRIBE __redis__:invalidate; the command connection
 * then runs CLIENT TRACKING on REDIRECT <that id> BCAST PREFIX <canary> NOLOOP.
 * Redis (>= 6.0.6) sends every tracking client an invalidation with a null
 * payload on FLUSHALL/FLUSHDB, whatever keys it tracks; over RESP2 it arrives
 * on the subscribed connection as a "message" whose third element is nil.
 * BCAST with the canary as the only prefix keeps the server from remembering
 * the keys we read; NOLOOP keeps our own SET of the canary quiet.
 *
 * The signal names no database, and a replica loading a new dataset sends it
 * too, so it only triggers a check on the command connection: EXISTS canary,
 * DBSIZE, INFO server, INFO replication and one EXISTS over the key sample,
 * pipelined. A wipe is declared only when the canary the watcher knew about is
 * gone (or most of the sample is); the canary is then re-created, and because
 * the SET goes out on the same connection before any later check, the next
 * check sees it: one wipe, one report, whichever of the invalidation and the
 * periodic timer looks first. A check already in flight when the signal
 * arrives may have been answered before the flush, so a second one follows it.
 *
 * What the watcher knows about the dataset (the canary existed, the server's
 * run_id, role and replication id) outlives sessions: after a reconnect the
 * first check compares them, which is how a restart without persistence
 * (new run_id, canary gone) and a failover (new role or replication id, or
 * another server at the address) are told from a flush.
 *
 * hiredis 0.14 has no connect timeout for async contexts and no RESP3: one
 * uv_timer bounds the connect and handshake, the periodic check bounds every
 * later wait. Any failure of either connection ends the session (a tracking
 * connection that went away would leave tracking silently broken); the next
 * attempt follows after a capped exponential backoff. Host names are resolved
 * with uv_getaddrinfo so no DNS lookup runs on the loop thread.
 *
 * Context lifetime. hiredis frees a context itself after calling its connect
 * callback with an error or its disconnect callback, and calls every pending
 * reply callback with a NULL reply first. So: a conn's ac is set to NULL
 * before the watcher frees it (the disconnect callback then sees a context
 * that is no longer its conn's and ignores it), reply callbacks treat NULL as
 * "going away" and do nothing else, and no user callback runs from a NULL
 * path. redisAsyncFree called inside a reply callback of the same context is
 * deferred by hiredis until the callback returns. The watcher is freed when
 * its timers and every poll handle of its contexts have closed. */
#include "stormguard/redis/watch.h"

#include <arpa/inet.h>
#include <assert.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "stormguard/base/log.h"
#include "stormguard/redis/redis_url.h"
#include "stormguard/redis/reply.h"
#include "stormguard/base/util.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define SAMPLE_MAX 32
#define DEFAULT_CHECK_MS 1000
#define DEFAULT_TIMEOUT_MS 5000
#define INVALIDATE_CHANNEL "__redis__:invalidate"

typedef enum link_state { LINK_CONNECTING, LINK_UP, LINK_DOWN } link_state;

/* What made a check run; a later value is the more telling one. */
typedef enum trigger { TRIG_TIMER, TRIG_FIRST, TRIG_CANARY, TRIG_FLUSH } trigger;

typedef enum trk_stage { TRK_ID, TRK_SUBSCRIBING, TRK_SUBSCRIBED } trk_stage;

typedef struct conn {
    struct sg_watch *w;
    redisAsyncContext *ac; /* NULL once gone or given up */
    const char *name;      /* for messages */
    bool connected;
} conn;

/* Server facts from INFO; empty strings when absent. */
typedef struct facts {
    char *run_id, *role, *master_replid, *version;
    int64_t uptime_s;
} facts;

enum { Q_EXISTS, Q_DBSIZE, Q_SERVER, Q_REPLICATION, Q_SAMPLE, Q_COUNT };

typedef struct check check;

typedef struct slot {
    check *c;
    int what; /* Q_* */
} slot;

/* One pipelined check; freed when its last reply (or NULL) came. */
struct check {
    struct sg_watch *w;
    slot slots[Q_COUNT];
    int pending;
    bool failed;
    char *error; /* an error reply, for the log */
    trigger why;
    int64_t at;    /* epoch ms of the trigger */
    uint64_t sent; /* uv_now when sent */
    uint64_t sample_gen;
    size_t sample_n;
    bool exists;
    int64_t dbsize, sample_present;
    facts f;
};

typedef struct resolve {
    uv_getaddrinfo_t req;
    struct sg_watch *w;
    bool abandoned;
} resolve;

struct sg_watch {
    uv_loop_t *loop;
    sg_redis_url url;
    char *address;
    char *canary;
    char *count_pattern;
    int check_ms, timeout_ms;
    sg_wipe_fn on_wipe;
    sg_link_fn on_link;
    void *ud;

    conn cmd, trk;
    uv_timer_t check_timer; /* periodic check while up */
    uv_timer_t link_timer;  /* connect timeout, then reconnect backoff */
    resolve *resolving;
    bool attempt; /* a connect attempt or a session is live */
    bool ready;   /* handshake done: checks may run */
    trk_stage stage;
    long long trk_id; /* CLIENT ID of the tracking connection */
    link_state link;
    bool tracking;
    char *tracking_note; /* why tracking is off (logged once per reason) */
    int backoff_ms;
    check *check; /* in flight */
    bool recheck;
    trigger recheck_why;
    int64_t recheck_at;

    /* knowledge that outlives sessions */
    facts known;       /* run_id NULL until a first good check */
    int64_t known_at;  /* epoch ms of that check */
    bool canary_known; /* the canary existed at the last look or was set */
    bool canary_warned;
    sg_strlist sample;
    uint64_t sample_gen;

    int64_t last_check, dbsize, wipes;
    char *last_error;

    bool stopping;
    int pending; /* close callbacks and resolutions still to come */
    void (*done)(void *ud);
    void *done_ud;
};

const char *sg_wipe_cause_name(sg_wipe_cause c)
{
    switch (c) {
    case SG_WIPE_FLUSH:
        return "flush";
    case SG_WIPE_RESTART:
        return "restart";
    case SG_WIPE_FAILOVER:
        return "failover";
    case SG_WIPE_KEYS:
        return "keys";
    }
    return "unknown";
}

static void connect_attempt(sg_watch *w);
static void start_check(sg_watch *w, trigger why, int64_t at);
static void on_check_timer(uv_timer_t *t);
static void maybe_stopped(sg_watch *w);

static void facts_free(facts *f)
{
    free(f->run_id);
    free(f->role);
    free(f->master_replid);
    free(f->version);
    memset(f, 0, sizeof *f);
}

static void set_error(sg_watch *w, const char *msg)
{
    free(w->last_error);
    w->last_error = sg_xstrdup(msg);
}

/* ---- hiredis <-> libuv ----
 *
 * The event hooks of hiredis's libuv adapter (adapters/libuv.h), with two
 * changes. libuv reports a socket error (a refused connect, a reset) as a
 * negative status, without events, and stops the handle; the 0.14 adapter
 * ignores such calls, so hiredis never learns and the connection hangs. Here
 * hiredis reads or writes as it wanted to and meets the error itself. And the
 * poll handle's close is counted, so sg_watch_stop's done runs after it. */

typedef struct uvev {
    redisAsyncContext *ac; /* NULL once hiredis cleaned up */
    uv_poll_t poll;
    int events;
    struct sg_watch *w;
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
    sg_watch *w = e->w;
    free(e);
    w->pending--;
    maybe_stopped(w);
}

static void ev_cleanup(void *d)
{
    uvev *e = d;
    e->ac = NULL;
    uv_close((uv_handle_t *)&e->poll, ev_closed);
}

static int ev_attach(sg_watch *w, redisAsyncContext *ac)
{
    uvev *e = sg_xcalloc(1, sizeof *e);
    int rc = uv_poll_init(w->loop, &e->poll, ac->c.fd);
    if (rc != 0) {
        free(e);
        return rc;
    }
    e->ac = ac;
    e->w = w;
    e->poll.data = e;
    ac->ev.data = e;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    w->pending++;
    return 0;
}

/* ---- connections ---- */

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

static bool send_command(conn *c, redisCallbackFn *fn, void *pd, int argc, const char **argv)
{
    return c->ac && redisAsyncCommandArgv(c->ac, fn, pd, argc, argv, NULL) == REDIS_OK;
}

static void on_retry(uv_timer_t *t)
{
    connect_attempt(t->data);
}

/* Ends the session (or attempt): both connections go, a reconnect is
 * scheduled, and the owner hears "down" unless it already did. */
static void session_fail(sg_watch *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void session_fail(sg_watch *w, const char *fmt, ...)
{
    if (w->stopping || !w->attempt)
        return;
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);

    w->attempt = false;
    w->ready = false;
    w->recheck = false;
    uv_timer_stop(&w->check_timer);
    if (w->resolving) {
        w->resolving->abandoned = true;
        uv_cancel((uv_req_t *)&w->resolving->req); /* fails if it already runs: fine */
        w->resolving = NULL;
    }
    drop_conn(&w->trk);
    drop_conn(&w->cmd);
    set_error(w, reason);
    uv_timer_start(&w->link_timer, on_retry, (uint64_t)w->backoff_ms, 0);
    w->backoff_ms = w->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : w->backoff_ms * 2;
    if (w->link == LINK_DOWN)
        return;
    w->link = LINK_DOWN;
    sg_log(SG_LOG_WARN, "watch", "redis %s down: %s; reconnecting", w->address, reason);
    if (w->on_link)
        w->on_link(w->ud, false, reason);
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
    session_fail(c->w, "cannot reach redis %s: %s", c->w->address, ac->c.errstr);
}

/* Tracking is unavailable for this session: the periodic check carries on
 * alone. Logged once per distinct reason, not on every reconnect. */
static void tracking_settled(sg_watch *w, bool on, const char *why)
{
    w->tracking = on;
    if (!on) {
        drop_conn(&w->trk);
        if (!w->tracking_note || strcmp(w->tracking_note, why)) {
            sg_log(SG_LOG_WARN, "watch",
                   "redis %s: no client tracking (%s); flushes are seen by the check every "
                   "%d ms instead",
                   w->address, why, w->check_ms);
            free(w->tracking_note);
            w->tracking_note = sg_xstrdup(why);
        }
    } else {
        free(w->tracking_note);
        w->tracking_note = NULL;
    }
    w->ready = true;
    start_check(w, TRIG_FIRST, sg_now_ms());
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    conn *c = ac->data;
    sg_watch *w = c->w;
    if (c->ac != ac)
        return; /* the watcher dropped it */
    c->ac = NULL;
    c->connected = false;
    const char *why = status == REDIS_OK ? "connection closed" : ac->c.errstr;
    /* An error reply to SUBSCRIBE (an ACL without the channel) has no callback
     * to go to in hiredis 0.14: it closes the connection with the server's
     * message. That only costs us tracking. */
    if (c == &w->trk && !w->ready && w->stage == TRK_SUBSCRIBING && ac->c.err == REDIS_ERR_OTHER) {
        char msg[256];
        snprintf(msg, sizeof msg, "SUBSCRIBE %s: %s", INVALIDATE_CHANNEL, why);
        tracking_settled(w, false, msg);
        return;
    }
    session_fail(w, "lost the %s to redis %s: %s", c->name, w->address, why);
}

static bool open_conn(sg_watch *w, conn *c, const char *host)
{
    redisAsyncContext *ac =
        w->url.path ? redisAsyncConnectUnix(w->url.path) : redisAsyncConnect(host, w->url.port);
    if (!ac) {
        session_fail(w, "connecting to redis %s: out of memory", w->address);
        return false;
    }
    if (ac->c.err) {
        char why[128];
        snprintf(why, sizeof why, "%s", ac->c.errstr);
        redisAsyncFree(ac); /* not attached, no callbacks: freed at once */
        session_fail(w, "cannot reach redis %s: %s", w->address, why);
        return false;
    }
    if (!w->url.path && redisEnableKeepAlive(&ac->c) != REDIS_OK) {
        char why[128];
        snprintf(why, sizeof why, "%s", ac->c.errstr);
        redisAsyncFree(ac);
        session_fail(w, "setting TCP keepalive for redis %s: %s", w->address, why);
        return false;
    }
    ac->data = c;
    int rc = ev_attach(w, ac);
    if (rc != 0) {
        redisAsyncFree(ac);
        session_fail(w, "watching the socket of redis %s: %s", w->address, uv_strerror(rc));
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
    sg_watch *w = pd;
    redisReply *reply = r;
    if (!reply || w->stopping || reply->type != REDIS_REPLY_ERROR)
        return;
    session_fail(w, "authenticating to redis %s as user '%s': %s", w->address,
                 w->url.user ? w->url.user : "default", reply->str);
}

static void on_select(redisAsyncContext *ac, void *r, void *pd)
{
    sg_watch *w = pd;
    redisReply *reply = r;
    if (!reply || w->stopping || reply->type != REDIS_REPLY_ERROR)
        return;
    session_fail(w, "selecting database %d on redis %s: %s", w->url.db, w->address, reply->str);
}

static void on_tracking(redisAsyncContext *ac, void *r, void *pd)
{
    sg_watch *w = pd;
    redisReply *reply = r;
    if (!reply || w->stopping)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        char msg[256];
        snprintf(msg, sizeof msg, "CLIENT TRACKING: %s", reply->str);
        tracking_settled(w, false, msg);
    } else {
        tracking_settled(w, true, NULL);
    }
}

/* Subscription confirmations and invalidation messages. */
static void on_invalidation(redisAsyncContext *ac, void *r, void *pd)
{
    sg_watch *w = pd;
    redisReply *reply = r;
    if (!reply || w->stopping)
        return;
    sg_invalidation what = sg_reply_invalidation(reply);
    if (what == SG_INVALIDATION_SUBSCRIBED && w->stage == TRK_SUBSCRIBING) {
        w->stage = TRK_SUBSCRIBED;
        char id[32];
        snprintf(id, sizeof id, "%lld", (long long)w->trk_id);
        const char *argv[] = {"CLIENT", "TRACKING", "on",      "REDIRECT", id,
                              "BCAST",  "PREFIX",   w->canary, "NOLOOP"};
        if (!send_command(&w->cmd, on_tracking, w, 9, argv))
            session_fail(w, "queueing CLIENT TRACKING for redis %s failed", w->address);
        return;
    }
    if (what == SG_INVALIDATION_FLUSH)
        start_check(w, TRIG_FLUSH, sg_now_ms());
    else if (what == SG_INVALIDATION_KEYS)
        start_check(w, TRIG_CANARY, sg_now_ms()); /* the canary was written or deleted */
}

static void on_client_id(redisAsyncContext *ac, void *r, void *pd)
{
    sg_watch *w = pd;
    redisReply *reply = r;
    if (!reply || w->stopping)
        return;
    if (reply->type != REDIS_REPLY_INTEGER) {
        char msg[256];
        snprintf(msg, sizeof msg, "CLIENT ID: %s",
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        tracking_settled(w, false, msg);
        return;
    }
    w->trk_id = reply->integer;
    w->stage = TRK_SUBSCRIBING;
    const char *argv[] = {"SUBSCRIBE", INVALIDATE_CHANNEL};
    if (!send_command(&w->trk, on_invalidation, w, 2, argv))
        session_fail(w, "queueing SUBSCRIBE for redis %s failed", w->address);
}

/* Queues AUTH on a new connection if the URL or environment gave a password. */
static bool queue_auth(sg_watch *w, conn *c)
{
    if (!w->url.password)
        return true;
    const char *argv[] = {"AUTH", w->url.user ? w->url.user : w->url.password, w->url.password};
    return send_command(c, on_auth, w, w->url.user ? 3 : 2, argv);
}

/* Opens both connections and queues their handshakes; hiredis writes them
 * once connected. The command connection waits for the tracking setup (or
 * its refusal) before its first check. */
static void open_session(sg_watch *w, const char *host)
{
    if (!open_conn(w, &w->cmd, host) || !open_conn(w, &w->trk, host))
        return;
    bool ok = queue_auth(w, &w->cmd) && queue_auth(w, &w->trk);
    if (ok && w->url.db) {
        char db[16];
        snprintf(db, sizeof db, "%d", w->url.db);
        const char *argv[] = {"SELECT", db};
        ok = send_command(&w->cmd, on_select, w, 2, argv);
    }
    if (ok) {
        const char *argv[] = {"CLIENT", "ID"};
        w->stage = TRK_ID;
        ok = send_command(&w->trk, on_client_id, w, 2, argv);
    }
    if (!ok)
        session_fail(w, "queueing the handshake for redis %s failed", w->address);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    resolve *r = req->data;
    sg_watch *w = r->w;
    bool abandoned = r->abandoned;
    free(r);
    w->pending--;
    if (abandoned) {
        uv_freeaddrinfo(res);
        maybe_stopped(w);
        return;
    }
    w->resolving = NULL;
    if (status != 0) {
        uv_freeaddrinfo(res);
        session_fail(w, "resolving redis host %s: %s", w->url.host, uv_strerror(status));
        return;
    }
    /* IPv4 first, as hiredis itself prefers */
    const struct addrinfo *pick = NULL;
    for (const struct addrinfo *a = res; a; a = a->ai_next) {
        if (a->ai_family == AF_INET) {
            pick = a;
            break;
        }
        if (a->ai_family == AF_INET6 && !pick)
            pick = a;
    }
    char ip[64] = "";
    if (pick && pick->ai_family == AF_INET)
        uv_ip4_name((const struct sockaddr_in *)pick->ai_addr, ip, sizeof ip);
    else if (pick)
        uv_ip6_name((const struct sockaddr_in6 *)pick->ai_addr, ip, sizeof ip);
    uv_freeaddrinfo(res);
    if (!ip[0]) {
        session_fail(w, "resolving redis host %s: no IPv4 or IPv6 address", w->url.host);
        return;
    }
    open_session(w, ip);
}

static void on_attempt_timeout(uv_timer_t *t)
{
    sg_watch *w = t->data;
    if (w->resolving)
        session_fail(w, "resolving redis host %s took longer than %d ms", w->url.host,
                     w->timeout_ms);
    else if (!w->cmd.connected)
        session_fail(w, "cannot reach redis %s: connect timed out after %d ms", w->address,
                     w->timeout_ms);
    else
        session_fail(w, "redis %s did not answer the handshake within %d ms", w->address,
                     w->timeout_ms);
}

static bool is_numeric_host(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static void connect_attempt(sg_watch *w)
{
    assert(!w->attempt && !w->cmd.ac && !w->trk.ac);
    w->attempt = true;
    w->ready = false;
    w->tracking = false;
    w->stage = TRK_ID;
    uv_timer_start(&w->link_timer, on_attempt_timeout, (uint64_t)w->timeout_ms, 0);
    if (w->url.path || is_numeric_host(w->url.host)) {
        open_session(w, w->url.host);
        return;
    }
    resolve *r = sg_xcalloc(1, sizeof *r);
    r->w = w;
    r->req.data = r;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = uv_getaddrinfo(w->loop, &r->req, on_resolved, w->url.host, NULL, &hints);
    if (rc != 0) {
        free(r);
        session_fail(w, "resolving redis host %s: %s", w->url.host, uv_strerror(rc));
        return;
    }
    w->resolving = r;
    w->pending++;
}

/* ---- checks ---- */

static void check_free(check *c)
{
    facts_free(&c->f);
    free(c->error);
    free(c);
}

/* Value of "field:" in an INFO section, or "" (caller frees). */
static char *info_field(const char *info, const char *field)
{
    char *v = sg_reply_info_field(info, field);
    return v ? v : sg_xstrdup("");
}

static const char *const check_names[Q_COUNT] = {"EXISTS canary", "DBSIZE", "INFO server",
                                                 "INFO replication", "EXISTS sample"};

static void store_reply(check *c, int what, const redisReply *r)
{
    /* counts of what was asked about: a sample count beyond the sample
     * would make evaluate's arithmetic overflow */
    bool want_int = what == Q_EXISTS || what == Q_DBSIZE || what == Q_SAMPLE;
    int64_t max = what == Q_EXISTS   ? 1
                  : what == Q_SAMPLE ? (int64_t)c->sample_n
                                     : SG_REDIS_KEYS_MAX;
    int64_t n = 0;
    if (want_int ? sg_reply_count(r, max, &n) != 0 : r->type != REDIS_REPLY_STRING) {
        c->failed = true;
        if (!c->error)
            c->error = sg_xasprintf("%s: %s", check_names[what],
                                    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        return;
    }
    switch (what) {
    case Q_EXISTS:
        c->exists = n > 0;
        break;
    case Q_DBSIZE:
        c->dbsize = n;
        break;
    case Q_SAMPLE:
        c->sample_present = n;
        break;
    case Q_SERVER: {
        c->f.run_id = info_field(r->str, "run_id");
        c->f.version = info_field(r->str, "redis_version");
        char *up = info_field(r->str, "uptime_in_seconds");
        if (sg_parse_int64(up, 0, INT64_MAX, &c->f.uptime_s) != 0)
            c->f.uptime_s = -1;
        free(up);
        break;
    }
    case Q_REPLICATION:
        c->f.role = info_field(r->str, "role");
        c->f.master_replid = info_field(r->str, "master_replid");
        break;
    }
}

static void on_canary_set(redisAsyncContext *ac, void *r, void *pd)
{
    sg_watch *w = pd;
    redisReply *reply = r;
    if (!reply || w->stopping)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        char msg[512];
        snprintf(msg, sizeof msg, "creating canary %s on redis %s: %s", w->canary, w->address,
                 reply->str);
        set_error(w, msg);
        if (!w->canary_warned)
            sg_log(SG_LOG_WARN, "watch", "%s; flushes cannot be confirmed until it exists", msg);
        w->canary_warned = true;
        return;
    }
    if (w->canary_warned)
        sg_log(SG_LOG_INFO, "watch", "created canary %s on redis %s", w->canary, w->address);
    w->canary_known = true;
    w->canary_warned = false;
}

static void set_canary(sg_watch *w)
{
    char when[40], value[96];
    sg_format_time(sg_now_ms(), when, sizeof when);
    snprintf(value, sizeof value, "stormguard watch pid %ld %s", (long)getpid(), when);
    const char *argv[] = {"SET", w->canary, value};
    if (!send_command(&w->cmd, on_canary_set, w, 3, argv))
        session_fail(w, "queueing SET %s for redis %s failed", w->canary, w->address);
}

static void session_up(sg_watch *w)
{
    w->link = LINK_UP;
    w->backoff_ms = BACKOFF_MIN_MS;
    uv_timer_stop(&w->link_timer);
    uv_timer_start(&w->check_timer, on_check_timer, (uint64_t)w->check_ms, (uint64_t)w->check_ms);
    char detail[512];
    if (w->tracking)
        snprintf(detail, sizeof detail,
                 "connected to redis %s (%s, %s, run_id %.12s); client tracking on", w->address,
                 w->known.version, w->known.role, w->known.run_id);
    else
        snprintf(detail, sizeof detail,
                 "connected to redis %s (%s, %s, run_id %.12s); no client tracking (%s), "
                 "checking every %d ms",
                 w->address, w->known.version, w->known.role, w->known.run_id,
                 w->tracking_note ? w->tracking_note : "?", w->check_ms);
    sg_log(SG_LOG_INFO, "watch", "%s", detail);
    if (w->on_link)
        w->on_link(w->ud, true, detail);
}

/* "role master -> slave, master_replid 1a2b.. -> 3c4d..": what changed in
 * replication on the same server; false if nothing did. */
static bool replication_change(const facts *k, const facts *f, char *buf, size_t size)
{
    bool role = strcmp(k->role, f->role) != 0;
    bool replid = strcmp(k->master_replid, f->master_replid) != 0;
    if (!role && !replid)
        return false;
    int n = 0;
    if (role)
        n = snprintf(buf, size, "role %s -> %s", k->role, f->role);
    if (replid && n >= 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n, "%smaster_replid %.12s -> %.12s", role ? ", " : "",
                 k->master_replid, f->master_replid);
    return true;
}

/* Names what made the canary vanish, from what changed since the last good
 * check. A new run_id is a restart when the server is younger than our last
 * look at the old one, else another server took over the address. */
static sg_wipe_cause classify(const sg_watch *w, const check *c, char *what, size_t size)
{
    const facts *k = &w->known, *f = &c->f;
    if (k->run_id && strcmp(k->run_id, f->run_id)) {
        long long away_s = (long long)((sg_now_ms() - w->known_at) / 1000);
        if (f->uptime_s >= 0 && f->uptime_s <= away_s + 1) {
            snprintf(what, size, "redis restarted (run_id %.12s -> %.12s, up %lld s)", k->run_id,
                     f->run_id, (long long)f->uptime_s);
            return SG_WIPE_RESTART;
        }
        snprintf(what, size, "another server answers at %s (run_id %.12s -> %.12s, up %lld s, %s)",
                 w->address, k->run_id, f->run_id, (long long)f->uptime_s, f->role);
        return SG_WIPE_FAILOVER;
    }
    /* A new role, or a replica following another master, is a failover. A
     * master that only got a new master_replid started a replication history:
     * Redis does that when it creates a backlog for a replica (or for a
     * snapshot with --method sync) and when it frees an idle one. */
    char change[256];
    if (k->run_id && replication_change(k, f, change, sizeof change) &&
        (strcmp(k->role, f->role) || strcmp(f->role, "master"))) {
        snprintf(what, size, "failover (%s)", change);
        return SG_WIPE_FAILOVER;
    }
    switch (c->why) {
    case TRIG_FLUSH:
        snprintf(what, size, "FLUSHALL/FLUSHDB");
        break;
    case TRIG_CANARY:
        snprintf(what, size, "FLUSHALL/FLUSHDB or a deletion of the canary");
        break;
    case TRIG_FIRST:
        snprintf(what, size, "FLUSHALL/FLUSHDB while the watcher was reconnecting (same run_id)");
        break;
    case TRIG_TIMER:
        snprintf(what, size, "FLUSHALL/FLUSHDB (found by the periodic check)");
        break;
    }
    return SG_WIPE_FLUSH;
}

/* Logs changes of the server that cost no data. */
static void note_changes(const sg_watch *w, const check *c)
{
    const facts *k = &w->known, *f = &c->f;
    char change[256];
    if (!k->run_id)
        return;
    if (strcmp(k->run_id, f->run_id))
        sg_log(SG_LOG_INFO, "watch", "redis %s: new run_id %.12s (was %.12s), canary %s",
               w->address, f->run_id, k->run_id, c->exists ? "kept: data survived" : "absent");
    else if (replication_change(k, f, change, sizeof change))
        sg_log(SG_LOG_INFO, "watch", "redis %s: %s, canary %s", w->address, change,
               c->exists ? "kept: data survived" : "absent");
}

static void evaluate(sg_watch *w, check *c)
{
    bool wipe = false;
    sg_wipe_cause cause = SG_WIPE_FLUSH;
    char detail[1024];
    if (!c->exists && w->canary_known) {
        char what[512];
        cause = classify(w, c, what, sizeof what);
        snprintf(detail, sizeof detail, "%s: canary %s gone, dbsize %lld", what, w->canary,
                 (long long)c->dbsize);
        wipe = true;
    } else if (c->exists && c->sample_n && c->sample_gen == w->sample_gen) {
        long long missing = (long long)c->sample_n - (long long)c->sample_present;
        if (missing * 2 >= (long long)c->sample_n) {
            cause = SG_WIPE_KEYS;
            snprintf(detail, sizeof detail,
                     "%lld of %zu sampled keys%s%s%s gone, canary %s present, dbsize %lld", missing,
                     c->sample_n, w->count_pattern ? " (" : "",
                     w->count_pattern ? w->count_pattern : "", w->count_pattern ? ")" : "",
                     w->canary, (long long)c->dbsize);
            wipe = true;
        }
    }
    note_changes(w, c);
    facts_free(&w->known);
    w->known = c->f;
    memset(&c->f, 0, sizeof c->f);
    w->known_at = w->last_check = sg_now_ms();
    w->dbsize = c->dbsize;
    w->canary_known = c->exists;
    if (wipe) {
        w->wipes++;
        sg_strlist_clear(&w->sample); /* gone with the data: would report the wipe again */
        w->sample_gen++;
    }
    /* Queued before anything else can queue a check: the next one sees it. */
    if (!c->exists) {
        set_canary(w);
        if (!w->attempt)
            return;
    }
    if (w->link != LINK_UP) {
        session_up(w);
        if (w->stopping)
            return;
    }
    if (wipe) {
        sg_log(SG_LOG_WARN, "watch", "wipe (%s) on redis %s: %s", sg_wipe_cause_name(cause),
               w->address, detail);
        w->on_wipe(w->ud, cause, detail, c->at);
        if (w->stopping)
            return;
    }
    if (w->recheck) {
        w->recheck = false;
        start_check(w, w->recheck_why, w->recheck_at);
    }
}

static void check_failed(sg_watch *w, const char *error)
{
    if (w->link != LINK_UP) {
        session_fail(w, "checking redis %s: %s", w->address, error);
        return;
    }
    char msg[512];
    snprintf(msg, sizeof msg, "checking redis %s: %s", w->address, error);
    if (!w->last_error || strcmp(w->last_error, msg))
        sg_log(SG_LOG_WARN, "watch", "%s", msg);
    set_error(w, msg);
    if (w->recheck) {
        w->recheck = false;
        start_check(w, w->recheck_why, w->recheck_at);
    }
}

static void on_check_reply(redisAsyncContext *ac, void *r, void *pd)
{
    slot *s = pd;
    check *c = s->c;
    sg_watch *w = c->w;
    if (!r)
        c->failed = true; /* the connection is going away; its owner says why */
    else
        store_reply(c, s->what, r);
    if (--c->pending > 0)
        return;
    if (w->check == c)
        w->check = NULL;
    if (!w->stopping && w->attempt) {
        if (!c->failed)
            evaluate(w, c);
        else if (c->error)
            check_failed(w, c->error);
    }
    check_free(c);
}

static void start_check(sg_watch *w, trigger why, int64_t at)
{
    if (w->stopping || !w->ready || !w->cmd.ac)
        return;
    if (w->check) {
        /* Its replies may predate the event: it reports what it finds, under
         * the better reason, and another check follows it. */
        if (why > w->check->why) {
            w->check->why = why;
            w->check->at = at;
        }
        if (!w->recheck || why > w->recheck_why) {
            w->recheck = true;
            w->recheck_why = why;
            w->recheck_at = at;
        }
        return;
    }
    check *c = sg_xcalloc(1, sizeof *c);
    c->w = w;
    c->why = why;
    c->at = at;
    c->sent = uv_now(w->loop);
    c->sample_gen = w->sample_gen;
    c->sample_n = w->sample.len;
    const char *exists[] = {"EXISTS", w->canary};
    const char *dbsize[] = {"DBSIZE"};
    const char *server[] = {"INFO", "server"};
    const char *repl[] = {"INFO", "replication"};
    const char *sample[SAMPLE_MAX + 1];
    sample[0] = "EXISTS";
    for (size_t i = 0; i < c->sample_n; i++)
        sample[i + 1] = w->sample.items[i];
    struct {
        int argc;
        const char **argv;
    } q[Q_COUNT] = {{2, exists},
                    {1, dbsize},
                    {2, server},
                    {2, repl},
                    {c->sample_n ? (int)c->sample_n + 1 : 0, sample}};
    int wanted = 0;
    for (int i = 0; i < Q_COUNT; i++) {
        if (!q[i].argc)
            continue;
        wanted++;
        c->slots[i].c = c;
        c->slots[i].what = i;
        if (send_command(&w->cmd, on_check_reply, &c->slots[i], q[i].argc, q[i].argv))
            c->pending++;
    }
    if (c->pending == wanted) {
        w->check = c;
        return;
    }
    c->failed = true;
    if (c->pending)
        w->check = c; /* its callbacks free it when the connection goes */
    else
        check_free(c);
    session_fail(w, "queueing a check for redis %s failed", w->address);
}

static void on_check_timer(uv_timer_t *t)
{
    sg_watch *w = t->data;
    if (w->check) {
        uint64_t waited = uv_now(w->loop) - w->check->sent;
        if (waited > (uint64_t)w->timeout_ms)
            session_fail(w, "redis %s did not answer a check for %llu ms", w->address,
                         (unsigned long long)waited);
        return;
    }
    start_check(w, TRIG_TIMER, sg_now_ms());
}

/* ---- lifecycle ---- */

int sg_watch_start(uv_loop_t *loop, const sg_watch_opts *o, sg_wipe_fn on_wipe, sg_link_fn on_link,
                   void *ud, sg_watch **out, sg_error *err)
{
    if (!o->redis_url || !*o->redis_url)
        return sg_error_set(err, SG_EUSAGE, "watch: no redis URL given");
    if (!o->canary || !*o->canary)
        return sg_error_set(err, SG_EUSAGE, "watch: no canary key given");
    if (o->check_ms < 0 || o->connect_timeout_ms < 0)
        return sg_error_set(err, SG_EUSAGE, "watch: check period and timeout must be positive");
    assert(on_wipe);
    sg_redis_url url;
    int rc = sg_redis_url_parse(o->redis_url, &url, err);
    if (rc)
        return rc;
    sg_redis_url_password_from_env(&url);
    if (url.user && !url.password) {
        rc = sg_error_set(err, SG_EUSAGE,
                          "redis URL names user '%s' but no password was given (URL, "
                          "STORMGUARD_REDIS_PASSWORD or REDISCLI_AUTH)",
                          url.user);
        sg_redis_url_close(&url);
        return rc;
    }
    sg_watch *w = sg_xcalloc(1, sizeof *w);
    w->loop = loop;
    w->url = url;
    w->address = sg_redis_url_address(&url);
    w->canary = sg_xstrdup(o->canary);
    w->count_pattern = o->count_pattern ? sg_xstrdup(o->count_pattern) : NULL;
    w->check_ms = o->check_ms ? o->check_ms : DEFAULT_CHECK_MS;
    w->timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : DEFAULT_TIMEOUT_MS;
    w->on_wipe = on_wipe;
    w->on_link = on_link;
    w->ud = ud;
    w->cmd = (conn){.w = w, .name = "command connection"};
    w->trk = (conn){.w = w, .name = "tracking connection"};
    w->backoff_ms = BACKOFF_MIN_MS;
    w->link = LINK_CONNECTING;
    /* uv_timer_init cannot fail on Unix (libuv 1.x returns 0) */
    uv_timer_init(loop, &w->check_timer);
    uv_timer_init(loop, &w->link_timer);
    w->check_timer.data = w->link_timer.data = w;
    /* first attempt from the loop, so no callback runs before *out is set */
    uv_timer_start(&w->link_timer, on_retry, 0, 0);
    *out = w;
    return 0;
}

void sg_watch_set_sample(sg_watch *w, const char *const *keys, size_t n)
{
    sg_strlist_clear(&w->sample);
    size_t take = n < SAMPLE_MAX ? n : SAMPLE_MAX;
    for (size_t i = 0; i < take; i++)
        sg_strlist_push(&w->sample, keys[i * n / take]);
    w->sample_gen++;
}

static json_t *string_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

json_t *sg_watch_status(const sg_watch *w)
{
    static const char *const links[] = {"connecting", "up", "down"};
    json_t *st = json_object();
    json_object_set_new(st, "link", json_string(links[w->link]));
    json_object_set_new(st, "address", json_string(w->address));
    json_object_set_new(st, "canary", json_string(w->canary));
    json_object_set_new(st, "run_id", string_or_null(w->known.run_id));
    json_object_set_new(st, "role", string_or_null(w->known.role));
    json_object_set_new(st, "redis_version", string_or_null(w->known.version));
    json_object_set_new(st, "tracking", json_boolean(w->link == LINK_UP && w->tracking));
    json_object_set_new(st, "armed", json_boolean(w->link == LINK_UP && w->canary_known));
    if (w->last_check) {
        char when[40];
        sg_format_time(w->last_check, when, sizeof when);
        json_object_set_new(st, "last_check", json_string(when));
        json_object_set_new(st, "dbsize", json_integer(w->dbsize));
    } else {
        json_object_set_new(st, "last_check", json_null());
        json_object_set_new(st, "dbsize", json_null());
    }
    json_object_set_new(st, "sample", json_integer((json_int_t)w->sample.len));
    json_object_set_new(st, "last_error", string_or_null(w->last_error));
    json_object_set_new(st, "wipes", json_integer(w->wipes));
    return st;
}

static void maybe_stopped(sg_watch *w)
{
    if (!w->stopping || w->pending)
        return;
    assert(!w->cmd.ac && !w->trk.ac && !w->check);
    void (*done)(void *) = w->done;
    void *ud = w->done_ud;
    sg_redis_url_close(&w->url);
    free(w->address);
    free(w->canary);
    free(w->count_pattern);
    free(w->tracking_note);
    free(w->last_error);
    facts_free(&w->known);
    sg_strlist_clear(&w->sample);
    free(w);
    if (done)
        done(ud);
}

static void on_timer_closed(uv_handle_t *h)
{
    sg_watch *w = h->data;
    w->pending--;
    maybe_stopped(w);
}

void sg_watch_stop(sg_watch *w, void (*done)(void *ud), void *ud)
{
    assert(!w->stopping);
    w->stopping = true;
    w->done = done;
    w->done_ud = ud;
    w->attempt = false;
    w->ready = false;
    w->pending += 2;
    uv_close((uv_handle_t *)&w->check_timer, on_timer_closed);
    uv_close((uv_handle_t *)&w->link_timer, on_timer_closed);
    if (w->resolving) {
        w->resolving->abandoned = true;
        uv_cancel((uv_req_t *)&w->resolving->req);
        w->resolving = NULL;
    }
    drop_conn(&w->trk);
    drop_conn(&w->cmd);
}
