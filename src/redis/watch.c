/* Wipe detection on the loop with the async Redis link (watch.h).
 *
 * A session is two connections to the same server, opened by the Redis link
 * (async.h): it resolves, connects, authenticates, selects the database,
 * bounds the handshake with a timer and reconnects with backoff; any failure
 * of either connection ends the session (a tracking connection that went
 * away would leave tracking silently broken). On them the watcher runs its
 * own handshake. The tracking connection runs CLIENT ID, then SUBSCRIBE
 * __redis__:invalidate; the command connection then runs CLIENT TRACKING on
 * REDIRECT <that id> BCAST PREFIX <canary> NOLOOP. Redis (>= 6.0.6) sends
 * every tracking client an invalidation with a null payload on
 * FLUSHALL/FLUSHDB, whatever keys it tracks; over RESP2 it arrives on the
 * subscribed connection as a "message" whose third element is nil. BCAST
 * with the canary as the only prefix keeps the server from remembering the
 * keys we read; NOLOOP keeps our own SET of the canary quiet. The link is
 * declared up after the first check, so the link's timer bounds the whole
 * handshake and the periodic check bounds every later wait.
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
 * another server at the address) are told from a flush. The rules themselves
 * are wipe.c's, a pure function of that knowledge and the check's replies.
 *
 * Reply callbacks get NULL when their connection goes away (async.h): they
 * then free what they hold and do nothing else. The watcher is freed when
 * its timer has closed and the link has stopped. */
#include "stormguard/redis/watch.h"

#include <assert.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "stormguard/base/clock.h"
#include "stormguard/base/log.h"
#include "stormguard/redis/async.h"
#include "stormguard/redis/redis_url.h"
#include "stormguard/redis/reply.h"
#include "stormguard/base/util.h"

#define SAMPLE_MAX 32
#define DEFAULT_CHECK_MS 1000
#define DEFAULT_TIMEOUT_MS 5000
#define INVALIDATE_CHANNEL "__redis__:invalidate"

typedef enum link_state { LINK_CONNECTING, LINK_UP, LINK_DOWN } link_state;

typedef enum trk_stage { TRK_ID, TRK_SUBSCRIBING, TRK_SUBSCRIBED } trk_stage;

/* The link's connections. */
enum { CMD, TRK, NCONNS };

/* Server facts from INFO; empty strings when absent. */
typedef struct facts {
    char *run_id, *role, *master_replid, *version, *mode;
    int64_t uptime_s;
} facts;

enum { Q_EXISTS, Q_DBSIZE, Q_SERVER, Q_REPLICATION, Q_SAMPLE, Q_COUNT };

typedef struct check check;

/* The replies a check waits for: one per Q_*, and with a Cluster master's
 * sample one EXISTS per key (Q_SAMPLE and the slots after it). */
#define CHECK_SLOTS (Q_COUNT + SAMPLE_MAX - 1)

typedef struct slot {
    check *c;
    int what; /* Q_* */
} slot;

/* One pipelined check; freed when its last reply (or NULL) came. */
struct check {
    struct sg_watch *w;
    slot slots[CHECK_SLOTS];
    int pending;
    bool failed;
    bool moved; /* an error reply said MOVED: a Cluster master's slots went elsewhere */
    size_t sample_elsewhere; /* sample keys a Cluster master redirected (MOVED, ASK) */
    char *error;             /* an error reply, for the log */
    sg_wipe_trigger why;
    int64_t at;    /* epoch ms of the trigger */
    uint64_t sent; /* uv_now when sent */
    uint64_t sample_gen;
    size_t sample_n;
    bool exists;
    int64_t dbsize, sample_present;
    facts f;
};

struct sg_watch {
    uv_loop_t *loop;
    char *address;
    char *canary;
    char *count_pattern;
    const sg_clock *clock; /* the wipes' times */
    int check_ms, timeout_ms;
    sg_wipe_fn on_wipe;
    sg_link_fn on_link;
    void *ud;
    void (*on_change)(void *ud, sg_wipe_cause cause, const char *detail);
    void (*on_cluster)(void *ud);
    void (*on_moved)(void *ud);
    bool cluster_node;   /* one master of a Cluster: keys asked about one by one */
    char *predecessor;   /* until the first good check: wipe.h predecessor */
    bool cluster_told;   /* on_cluster was called */
    bool follows_master; /* a Sentinel's master or a Cluster master: not one address */

    sg_rasync *redis;       /* NULL once stopped */
    uv_timer_t check_timer; /* periodic check while up */
    bool ready;             /* handshake done: checks may run */
    trk_stage stage;
    long long trk_id; /* CLIENT ID of the tracking connection */
    link_state link;
    bool tracking;
    char *tracking_note; /* why tracking is off (logged once per reason) */
    check *check;        /* in flight */
    bool recheck;
    sg_wipe_trigger recheck_why;
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
    int pending; /* the timer's close and the link's stop still to come */
    void (*done)(void *ud);
    void *done_ud;
};

static void start_check(sg_watch *w, sg_wipe_trigger why, int64_t at);
static void on_check_timer(uv_timer_t *t);
static void maybe_stopped(sg_watch *w);

static void facts_free(facts *f)
{
    free(f->run_id);
    free(f->role);
    free(f->master_replid);
    free(f->version);
    free(f->mode);
    memset(f, 0, sizeof *f);
}

static void set_error(sg_watch *w, const char *msg)
{
    free(w->last_error);
    w->last_error = sg_xstrdup(msg);
}

/* ---- the session ---- */

/* A session is live (attempting or up) and the watcher is not stopping. */
static bool live(const sg_watch *w)
{
    return !w->stopping && sg_rasync_live(w->redis);
}

/* The session ended, whoever found out: checks stop, and the owner hears
 * "down" unless it already did. */
static void session_down(sg_watch *w, const char *reason)
{
    w->ready = false;
    w->recheck = false;
    uv_timer_stop(&w->check_timer);
    set_error(w, reason);
    if (w->link == LINK_DOWN)
        return;
    w->link = LINK_DOWN;
    sg_log(SG_LOG_WARN, "watch", "redis %s down: %s; reconnecting", w->address, reason);
    if (w->on_link)
        w->on_link(w->ud, false, reason);
}

/* Ends the session for a reason of the watcher's own; the link reconnects. */
static void session_fail(sg_watch *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void session_fail(sg_watch *w, const char *fmt, ...)
{
    if (!live(w))
        return;
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    sg_rasync_fail(w->redis);
    session_down(w, reason);
}

static bool send_command(sg_watch *w, int conn, sg_rasync_reply_fn fn, void *pd, int argc,
                         const char **argv)
{
    return sg_rasync_command(w->redis, conn, fn, pd, argc, argv, NULL) == 0;
}

/* Tracking is unavailable for this session: the periodic check carries on
 * alone. Logged once per distinct reason, not on every reconnect. */
static void tracking_settled(sg_watch *w, bool on, const char *why)
{
    w->tracking = on;
    if (!on) {
        sg_rasync_drop(w->redis, TRK);
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
    start_check(w, SG_WIPE_TRIGGER_FIRST, sg_clock_ms(w->clock));
}

static void on_tracking(void *pd, const redisReply *reply)
{
    sg_watch *w = pd;
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
static void on_invalidation(void *pd, const redisReply *reply)
{
    sg_watch *w = pd;
    if (!reply || w->stopping)
        return;
    sg_invalidation what = sg_reply_invalidation(reply);
    if (what == SG_INVALIDATION_SUBSCRIBED && w->stage == TRK_SUBSCRIBING) {
        w->stage = TRK_SUBSCRIBED;
        char id[32];
        snprintf(id, sizeof id, "%lld", (long long)w->trk_id);
        const char *argv[] = {"CLIENT", "TRACKING", "on",      "REDIRECT", id,
                              "BCAST",  "PREFIX",   w->canary, "NOLOOP"};
        if (!send_command(w, CMD, on_tracking, w, 9, argv))
            session_fail(w, "queueing CLIENT TRACKING for redis %s failed", w->address);
        return;
    }
    if (what == SG_INVALIDATION_FLUSH)
        start_check(w, SG_WIPE_TRIGGER_FLUSH, sg_clock_ms(w->clock)); /* "everything": a flush */
    else if (what == SG_INVALIDATION_KEYS)
        start_check(w, SG_WIPE_TRIGGER_CANARY,
                    sg_clock_ms(w->clock)); /* the canary was written or deleted */
}

static void on_client_id(void *pd, const redisReply *reply)
{
    sg_watch *w = pd;
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
    if (sg_rasync_subscribe(w->redis, TRK, INVALIDATE_CHANNEL, on_invalidation, w))
        session_fail(w, "queueing SUBSCRIBE for redis %s failed", w->address);
}

/* The link opened both connections with AUTH and SELECT queued. The command
 * connection waits for the tracking setup (or its refusal) before its first
 * check. */
static void on_open(void *ud)
{
    sg_watch *w = ud;
    w->ready = false;
    w->tracking = false;
    w->stage = TRK_ID;
    const char *argv[] = {"CLIENT", "ID"};
    if (!send_command(w, TRK, on_client_id, w, 2, argv))
        session_fail(w, "queueing the handshake for redis %s failed", w->address);
}

static void on_down(void *ud, const char *reason)
{
    session_down(ud, reason);
}

/* An error reply to SUBSCRIBE (an ACL without the channel) closes the
 * tracking connection with the server's message (async.h). That only costs
 * us tracking; any other loss ends the session. */
static bool on_lost(void *ud, int conn, const char *why, bool error_reply)
{
    sg_watch *w = ud;
    if (conn != TRK || w->ready || w->stage != TRK_SUBSCRIBING || !error_reply)
        return false;
    char msg[256];
    snprintf(msg, sizeof msg, "SUBSCRIBE %s: %s", INVALIDATE_CHANNEL, why);
    tracking_settled(w, false, msg);
    return true;
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
    int64_t max = what == Q_EXISTS                         ? 1
                  : what == Q_SAMPLE && c->w->cluster_node ? 1
                  : what == Q_SAMPLE                       ? (int64_t)c->sample_n
                                                           : SG_REDIS_KEYS_MAX;
    int64_t n = 0;
    if (what == Q_SAMPLE && c->w->cluster_node && r->type == REDIS_REPLY_ERROR &&
        (!strncmp(r->str, "MOVED ", 6) || !strncmp(r->str, "ASK ", 4) ||
         !strncmp(r->str, "TRYAGAIN", 8))) {
        /* a key of a slot being moved (resharding, a failover): not this
         * master's to judge now; the canary and the other keys still are */
        c->sample_elsewhere++;
        c->moved = c->moved || r->str[0] != 'T';
        return;
    }
    if (want_int ? sg_reply_count(r, max, &n) != 0 : r->type != REDIS_REPLY_STRING) {
        c->failed = true;
        if (r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "MOVED ", 6))
            c->moved = true;
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
        c->sample_present += n;
        break;
    case Q_SERVER: {
        c->f.run_id = info_field(r->str, "run_id");
        c->f.version = info_field(r->str, "redis_version");
        c->f.mode = info_field(r->str, "redis_mode");
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

static void on_canary_set(void *pd, const redisReply *reply)
{
    sg_watch *w = pd;
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
    sg_format_time(sg_clock_ms(w->clock), when, sizeof when);
    snprintf(value, sizeof value, "stormguard watch pid %ld %s", (long)getpid(), when);
    const char *argv[] = {"SET", w->canary, value};
    if (!send_command(w, CMD, on_canary_set, w, 3, argv))
        session_fail(w, "queueing SET %s for redis %s failed", w->canary, w->address);
}

static void session_up(sg_watch *w)
{
    w->link = LINK_UP;
    sg_rasync_up(w->redis);
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

/* Judges a check by the wipe rules (wipe.h), then learns from it. */
static void evaluate(sg_watch *w, check *c)
{
    int64_t now = sg_clock_ms(w->clock);
    const sg_wipe_known k = {.address = w->address,
                             .canary = w->canary,
                             .count_pattern = w->count_pattern,
                             .canary_seen = w->canary_known,
                             .run_id = w->known.run_id,
                             .role = w->known.role,
                             .master_replid = w->known.master_replid,
                             .checked_at_ms = w->known_at,
                             .sample_gen = w->sample_gen,
                             .predecessor = w->predecessor};
    const sg_wipe_obs o = {.trigger = c->why,
                           .now_ms = now,
                           .canary = c->exists,
                           .dbsize = c->dbsize,
                           .run_id = c->f.run_id,
                           .role = c->f.role,
                           .master_replid = c->f.master_replid,
                           .uptime_s = c->f.uptime_s,
                           .sample_n = c->sample_n - c->sample_elsewhere,
                           .sample_present = c->sample_present,
                           .sample_gen = c->sample_gen};
    sg_wipe_result r;
    sg_wipe_judge(&k, &o, &r);
    bool wipe = r.verdict == SG_VERDICT_WIPED;
    /* A master a Sentinel or a Cluster demoted: the master that took its
     * place is where the change is told, once, by the check that finds it */
    bool told_elsewhere = w->follows_master && !strcmp(c->f.role, "slave");
    if (r.note[0])
        sg_log(SG_LOG_INFO, "watch", "redis %s: %s", w->address, r.note);
    facts_free(&w->known);
    w->known = c->f;
    memset(&c->f, 0, sizeof c->f);
    w->known_at = w->last_check = now;
    free(w->predecessor); /* the server's own facts are known now */
    w->predecessor = NULL;
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
        if (!live(w))
            return;
    }
    if (w->link != LINK_UP) {
        session_up(w);
        if (w->stopping)
            return;
    }
    if (wipe) {
        sg_log(SG_LOG_WARN, "watch", "wipe (%s) on redis %s: %s", sg_wipe_cause_name(r.cause),
               w->address, r.detail);
        w->on_wipe(w->ud, r.cause, r.detail, c->at);
        if (w->stopping)
            return;
    } else if (r.kept && w->on_change && !told_elsewhere) {
        w->on_change(w->ud, r.kept_cause, r.note);
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

static void on_check_reply(void *pd, const redisReply *r)
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
    if (live(w)) {
        /* before any other failure: a multi-key EXISTS of the sample fails
         * there with CROSSSLOT, which would hide the reason */
        if (c->f.mode && !strcmp(c->f.mode, "cluster") && !w->cluster_node && w->on_cluster) {
            /* the owner watches every master instead */
            if (!w->cluster_told) {
                w->cluster_told = true;
                uv_timer_stop(&w->check_timer);
                w->ready = false;
                w->on_cluster(w->ud);
            }
        } else if (c->f.mode && !strcmp(c->f.mode, "cluster") && !w->cluster_node)
            /* one node's canary and keys would stand for the whole data */
            session_fail(w,
                         "redis %s is a node of a Redis Cluster, which stormguard does not "
                         "watch yet (a FLUSHALL on another node would go unseen)",
                         w->address);
        else if (!c->failed)
            evaluate(w, c);
        else if (c->error)
            check_failed(w, c->error);
        if (c->moved && w->cluster_node && w->on_moved && live(w) && !w->stopping)
            w->on_moved(w->ud);
    }
    check_free(c);
}

static void start_check(sg_watch *w, sg_wipe_trigger why, int64_t at)
{
    if (!live(w) || !w->ready || w->cluster_told)
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
    /* a Cluster master's keys may be in different slots: one EXISTS each */
    size_t per_key = w->cluster_node ? c->sample_n : 0;
    struct {
        int argc;
        const char **argv;
    } q[CHECK_SLOTS] = {{2, exists},
                        {1, dbsize},
                        {2, server},
                        {2, repl},
                        {c->sample_n && !per_key ? (int)c->sample_n + 1 : 0, sample}};
    const char *one[SAMPLE_MAX][2];
    for (size_t i = 0; i < per_key; i++) {
        one[i][0] = "EXISTS";
        one[i][1] = w->sample.items[i];
        q[Q_SAMPLE + i].argc = 2;
        q[Q_SAMPLE + i].argv = one[i];
    }
    int wanted = 0;
    for (int i = 0; i < CHECK_SLOTS; i++) {
        if (!q[i].argc)
            continue;
        wanted++;
        c->slots[i].c = c;
        c->slots[i].what = i < Q_SAMPLE ? i : Q_SAMPLE;
        if (send_command(w, CMD, on_check_reply, &c->slots[i], q[i].argc, q[i].argv))
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
    start_check(w, SG_WIPE_TRIGGER_TIMER, sg_clock_ms(w->clock));
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
    if (rc == 0 && (rc = sg_redis_url_configure(&url, o->tls, o->sentinel_password, err)))
        sg_redis_url_close(&url);
    if (rc)
        return rc;
    sg_redis_url_password_from_env(&url);
    if (o->node_host) {
        free(url.host);
        url.host = sg_xstrdup(o->node_host);
        url.port = o->node_port;
        free(url.path); /* a Cluster node named by a unix socket: its peers by TCP */
        url.path = NULL;
    }
    if (url.tls.enabled && url.tls.insecure)
        sg_log(SG_LOG_WARN, "watch",
               "TLS to redis without verifying its certificate or name (--insecure, [redis] "
               "insecure): anyone on the path can pose as the server");
    sg_watch *w = sg_xcalloc(1, sizeof *w);
    w->timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : DEFAULT_TIMEOUT_MS;
    const sg_rasync_opts ro = {
        .url = &url,
        .nconns = NCONNS,
        .conns = {[CMD] = {.name = "command connection"},
                  [TRK] = {.name = "tracking connection", .no_select = true}},
        .timeout_ms = w->timeout_ms};
    const sg_rasync_cbs cbs = {.on_open = on_open, .on_down = on_down, .on_lost = on_lost};
    rc = sg_rasync_start(loop, &ro, &cbs, w, &w->redis, err);
    if (rc) {
        sg_redis_url_close(&url);
        free(w);
        return rc;
    }
    w->loop = loop;
    w->address = sg_redis_url_address(&url);
    w->follows_master = o->node_host || url.master_name;
    sg_redis_url_close(&url);
    w->canary = sg_xstrdup(o->canary);
    w->count_pattern = o->count_pattern ? sg_xstrdup(o->count_pattern) : NULL;
    w->check_ms = o->check_ms ? o->check_ms : DEFAULT_CHECK_MS;
    w->clock = o->clock ? o->clock : &sg_clock_real;
    w->on_wipe = on_wipe;
    w->on_link = on_link;
    w->on_change = o->on_change;
    w->on_cluster = o->on_cluster;
    w->on_moved = o->on_moved;
    w->cluster_node = o->node_host != NULL;
    if (o->predecessor) {
        w->predecessor = sg_xstrdup(o->predecessor);
        w->canary_known = true; /* inherited: its absence is a wipe */
    }
    w->ud = ud;
    w->link = LINK_CONNECTING;
    /* uv_timer_init cannot fail on Unix (libuv 1.x returns 0) */
    uv_timer_init(loop, &w->check_timer);
    w->check_timer.data = w;
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

const char *sg_watch_link_name(sg_watch_link link)
{
    static const char *const names[] = {"connecting", "up", "down"};
    return (unsigned)link < 3 ? names[link] : "?";
}

static const char *set_or_null(const char *s)
{
    return s && *s ? s : NULL;
}

void sg_watch_report_get(const sg_watch *w, sg_watch_report *out)
{
    static const sg_watch_link links[] = {[LINK_CONNECTING] = SG_WATCH_CONNECTING,
                                          [LINK_UP] = SG_WATCH_UP,
                                          [LINK_DOWN] = SG_WATCH_DOWN};
    *out = (sg_watch_report){.link = links[w->link],
                             .address = w->address,
                             .server = w->redis ? sg_rasync_server(w->redis) : w->address,
                             .canary = w->canary,
                             .run_id = set_or_null(w->known.run_id),
                             .role = set_or_null(w->known.role),
                             .redis_version = set_or_null(w->known.version),
                             .tracking = w->link == LINK_UP && w->tracking,
                             .armed = w->link == LINK_UP && w->canary_known,
                             .canary_seen = w->canary_known,
                             .last_check_ms = w->last_check,
                             .dbsize = w->dbsize,
                             .sample = w->sample.len,
                             .last_error = set_or_null(w->last_error),
                             .wipes = w->wipes};
}

static void maybe_stopped(sg_watch *w)
{
    if (!w->stopping || w->pending)
        return;
    assert(!w->redis && !w->check);
    void (*done)(void *) = w->done;
    void *ud = w->done_ud;
    free(w->address);
    free(w->canary);
    free(w->count_pattern);
    free(w->tracking_note);
    free(w->last_error);
    free(w->predecessor);
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

static void on_redis_stopped(void *ud)
{
    sg_watch *w = ud;
    w->redis = NULL;
    w->pending--;
    maybe_stopped(w);
}

void sg_watch_stop(sg_watch *w, void (*done)(void *ud), void *ud)
{
    assert(!w->stopping);
    w->stopping = true;
    w->done = done;
    w->done_ud = ud;
    w->ready = false;
    w->pending += 2;
    uv_close((uv_handle_t *)&w->check_timer, on_timer_closed);
    sg_rasync_stop(w->redis, on_redis_stopped, w);
}
