/* One watcher, or one per Cluster master (watchset.h).
 *
 * The set starts as one watcher of the URL. Its first check tells a
 * Cluster node (on_cluster): that watcher stops and the set reads CLUSTER
 * SLOTS on the thread pool with a blocking connection (rconn.h), bounded
 * by the connect timeout, asking the masters it knows and then the URL's
 * node. The reply is applied on the loop (reconcile): a master still at its
 * address with the same canary keeps its watcher and what it knows; any
 * other gets a new watcher, told of its predecessor when the canary it
 * will watch was armed on another master before. A canary's hash tag is
 * the smallest number whose slot the master serves, so it depends on the
 * slots, not on the node: the replica promoted in a master's place serves
 * the same slots and holds the same canary (replicated to it), and finding
 * it there tells a failover that kept the data from one to an empty
 * replica.
 *
 * Master watchers carry the master in their ud; the set keeps them by
 * pointer, so a watcher that survives a reconcile keeps its ud. Every
 * report to the owner names the master. The set is freed when the timer,
 * every stopped watcher and a CLUSTER SLOTS read in flight have finished. */
#include "stormguard/redis/watchset.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "stormguard/base/log.h"
#include "stormguard/base/util.h"
#include "stormguard/redis/rconn.h"
#include "stormguard/redis/redis_url.h"
#include "stormguard/redis/slot.h"

#define REFRESH_MS 5000      /* CLUSTER SLOTS read again while all is well */
#define REFRESH_DOWN_MS 1000 /* and while a master is down or the read failed */
#define MAX_TAG (1 << 22)    /* more than enough numbers to hit every slot */

typedef struct master {
    sg_watchset *ws;
    sg_watch *w; /* NULL if it could not be started */
    char *host;
    int port;
    char *address;   /* "host:port" */
    char *canary;    /* base{tag} */
    int canary_slot; /* the slot of its tag */
    char *slots;     /* "0-5460,10923" */
    bool up;
} master;

typedef struct discovery {
    uv_work_t req;
    sg_watchset *ws;
    sg_redis_url url; /* the set's, configured; a seed NULL host is it unchanged */
    char **hosts;
    int *ports;
    int nseeds;
    int timeout_ms;
    int rc;
    sg_error err;
    sg_rconn_cluster_master *m;
    int n;
    char *layout;
    int16_t *owner;
} discovery;

struct sg_watchset {
    uv_loop_t *loop;
    sg_wipe_fn on_wipe;
    sg_link_fn on_link;
    void (*on_change)(void *ud, sg_wipe_cause cause, const char *detail);
    void *ud;
    /* the options, for the watchers started later */
    char *redis_url, *canary, *count_pattern;
    sg_redis_url url; /* parsed and configured: the masters' TLS, CLUSTER SLOTS's seed */
    int check_ms, timeout_ms;
    const sg_clock *clock;
    char *address;

    sg_watch *single; /* the one watcher while Redis is not (known as) a Cluster */
    bool cluster;
    master **masters;
    size_t n;
    char *layout;
    int16_t *owner; /* slot -> index in masters, from the last good read */
    sg_strlist sample;
    int64_t wipes_gone; /* wipes seen by master watchers since replaced */
    uv_timer_t refresh;
    bool refresh_fast;
    discovery *discovering;
    char *error; /* why the last CLUSTER SLOTS read failed; NULL after a good one */
    bool told, told_up;
    char server[64];

    bool stopping;
    int pending; /* the timer, watchers stopping, a read in flight */
    void (*done)(void *ud);
    void *done_ud;
};

static void start_discovery(sg_watchset *ws);
static void on_refresh(uv_timer_t *t);

static void maybe_done(sg_watchset *ws)
{
    if (!ws->stopping || ws->pending)
        return;
    void (*done)(void *) = ws->done;
    void *ud = ws->done_ud;
    free(ws->redis_url);
    free(ws->canary);
    free(ws->count_pattern);
    free(ws->address);
    free(ws->layout);
    free(ws->owner);
    free(ws->error);
    sg_redis_url_close(&ws->url);
    sg_strlist_clear(&ws->sample);
    free(ws->masters);
    free(ws);
    if (done)
        done(ud);
}

static void on_watch_stopped(void *ud)
{
    sg_watchset *ws = ud;
    ws->pending--;
    maybe_done(ws);
}

static void master_free(master *m)
{
    free(m->host);
    free(m->address);
    free(m->canary);
    free(m->slots);
    free(m);
}

/* Stops m's watcher (its wipes are kept in the count) and frees m. */
static void master_drop(sg_watchset *ws, master *m)
{
    if (m->w) {
        sg_watch_report r;
        sg_watch_report_get(m->w, &r);
        ws->wipes_gone += r.wipes;
        ws->pending++;
        sg_watch_stop(m->w, on_watch_stopped, ws);
    }
    master_free(m);
}

/* ---- the link as the owner sees it ---- */

static void set_refresh(sg_watchset *ws, bool fast)
{
    if (ws->stopping || fast == ws->refresh_fast)
        return;
    ws->refresh_fast = fast;
    uint64_t every = fast ? REFRESH_DOWN_MS : REFRESH_MS;
    /* fails only for a closing handle or no callback: neither here */
    (void)uv_timer_start(&ws->refresh, on_refresh, every, every);
}

/* Tells the owner up once every master is up, down (with why) when one is
 * not; each only on a change. A failed CLUSTER SLOTS read alone changes
 * nothing while every master is watched and up: the watchers are what
 * sees a wipe, and the next read comes soon. */
static void link_update(sg_watchset *ws, const char *why)
{
    bool all_up = ws->n > 0;
    char unwatched[512] = "";
    for (size_t i = 0; i < ws->n; i++) {
        all_up = all_up && ws->masters[i]->up;
        if (!ws->masters[i]->w && !unwatched[0])
            snprintf(unwatched, sizeof unwatched,
                     "master %s (slots %s) of the Redis Cluster is not watched: its watcher "
                     "could not be started",
                     ws->masters[i]->address, ws->masters[i]->slots);
    }
    if (!why && unwatched[0])
        why = unwatched;
    set_refresh(ws, !all_up || ws->error);
    if (ws->stopping || !ws->on_link)
        return;
    if (all_up && !(ws->told && ws->told_up)) {
        sg_buf b = {0};
        sg_buf_printf(&b, "Redis Cluster at %s: watching %zu masters (", ws->address, ws->n);
        for (size_t i = 0; i < ws->n; i++)
            sg_buf_printf(&b, "%s%s slots %s", i ? ", " : "", ws->masters[i]->address,
                          ws->masters[i]->slots);
        sg_buf_printf(&b, ")");
        ws->told = ws->told_up = true;
        ws->on_link(ws->ud, true, b.p);
        sg_buf_free(&b);
    } else if (!all_up && why && !(ws->told && !ws->told_up)) {
        ws->told = true;
        ws->told_up = false;
        ws->on_link(ws->ud, false, why);
    }
}

/* ---- one master's watcher ---- */

/* The keys of master m's slots leave the set's sample: they are gone with
 * its data, and handing them to it again (a later reconcile) would report
 * the wipe a second time. A new sample comes after the rewarm. */
static void forget_sample_of(sg_watchset *ws, const master *m)
{
    size_t idx = 0;
    while (idx < ws->n && ws->masters[idx] != m)
        idx++;
    if (idx == ws->n || !ws->owner)
        return;
    sg_strlist kept = {0};
    for (size_t j = 0; j < ws->sample.len; j++) {
        const char *key = ws->sample.items[j];
        if (ws->owner[sg_cluster_slot(key, strlen(key))] != (int16_t)idx)
            sg_strlist_push(&kept, key);
    }
    sg_strlist_clear(&ws->sample);
    ws->sample = kept;
}

/* detail, prefixed with the master it is of, into buf. */
static const char *of_master(const master *m, const char *detail, char *buf, size_t size)
{
    snprintf(buf, size, "master %s (slots %s) of the Redis Cluster: %s", m->address, m->slots,
             detail);
    return buf;
}

static void m_on_wipe(void *ud, sg_wipe_cause cause, const char *detail, int64_t at)
{
    master *m = ud;
    forget_sample_of(m->ws, m);
    char buf[SG_WIPE_DETAIL_MAX + 256];
    m->ws->on_wipe(m->ws->ud, cause, of_master(m, detail, buf, sizeof buf), at);
}

static void m_on_change(void *ud, sg_wipe_cause cause, const char *detail)
{
    master *m = ud;
    char buf[SG_WIPE_NOTE_MAX + 256];
    if (m->ws->on_change)
        m->ws->on_change(m->ws->ud, cause, of_master(m, detail, buf, sizeof buf));
}

static void m_on_link(void *ud, bool up, const char *detail)
{
    master *m = ud;
    m->up = up;
    char buf[1024];
    link_update(m->ws, up ? NULL : of_master(m, detail, buf, sizeof buf));
}

/* The master's slots are elsewhere: read CLUSTER SLOTS now, not at the
 * next refresh. */
static void m_on_moved(void *ud)
{
    master *m = ud;
    start_discovery(m->ws);
}

static void master_start(sg_watchset *ws, master *m, const char *predecessor)
{
    const sg_watch_opts wo = {.redis_url = ws->redis_url,
                              .tls = &ws->url.tls,
                              .canary = m->canary,
                              .check_ms = ws->check_ms,
                              .connect_timeout_ms = ws->timeout_ms,
                              .count_pattern = ws->count_pattern,
                              .clock = ws->clock,
                              .on_change = m_on_change,
                              .on_moved = m_on_moved,
                              .node_host = m->host,
                              .node_port = m->port,
                              .predecessor = predecessor};
    sg_error err;
    if (sg_watch_start(ws->loop, &wo, m_on_wipe, m_on_link, m, &m->w, &err)) {
        m->w = NULL; /* down for good: said once, and the link stays down */
        sg_log(SG_LOG_ERROR, "watch", "cannot watch master %s of the Redis Cluster: %s", m->address,
               err.msg);
    }
}

/* Hands each master the sample keys of its slots. */
static void split_sample(sg_watchset *ws)
{
    for (size_t i = 0; i < ws->n; i++) {
        if (!ws->masters[i]->w)
            continue;
        const char **keys = sg_xcalloc(ws->sample.len + 1, sizeof *keys);
        size_t k = 0;
        for (size_t j = 0; j < ws->sample.len; j++) {
            const char *key = ws->sample.items[j];
            if (ws->owner[sg_cluster_slot(key, strlen(key))] == (int16_t)i)
                keys[k++] = key;
        }
        sg_watch_set_sample(ws->masters[i]->w, keys, k);
        free(keys);
    }
}

/* ---- CLUSTER SLOTS, off the loop ---- */

static void discovery_free(discovery *d)
{
    sg_redis_url_close(&d->url);
    for (int i = 0; i < d->nseeds; i++)
        free(d->hosts[i]);
    free(d->hosts);
    free(d->ports);
    sg_rconn_cluster_masters_free(d->m, d->n);
    free(d->layout);
    free(d->owner);
    free(d);
}

static void discover_work(uv_work_t *req)
{
    discovery *d = req->data;
    sg_buf why = {0};
    d->rc = SG_EREDIS;
    for (int i = 0; i < d->nseeds && d->rc; i++) {
        sg_redis_url u;
        sg_redis_url_copy(&u, &d->url);
        if (d->hosts[i]) {
            free(u.host);
            free(u.path);
            u.host = sg_xstrdup(d->hosts[i]);
            u.path = NULL;
            u.port = d->ports[i];
        }
        sg_rconn c;
        sg_error e;
        int rc = sg_rconn_open(&c, &u, d->timeout_ms, d->timeout_ms, &e);
        if (rc == 0) {
            d->owner = sg_xmalloc(SG_CLUSTER_SLOTS * sizeof *d->owner);
            rc = sg_rconn_cluster_slots(&c, &d->m, &d->n, &d->layout, d->owner, &e);
            sg_rconn_close(&c);
        }
        sg_redis_url_close(&u);
        if (rc == 0) {
            d->rc = 0;
            break;
        }
        free(d->owner);
        d->owner = NULL;
        sg_buf_printf(&why, "%s%s", why.len ? "; " : "", e.msg);
    }
    if (d->rc)
        sg_error_set(&d->err, SG_EREDIS, "reading CLUSTER SLOTS: %s", why.p ? why.p : "no node");
    sg_buf_free(&why);
}

/* "0-5460,10923": the slots owner gives master i. */
static char *slots_of(const int16_t *owner, int i)
{
    sg_buf b = {0};
    for (int s = 0; s < SG_CLUSTER_SLOTS; s++) {
        if (owner[s] != i)
            continue;
        int e = s;
        while (e + 1 < SG_CLUSTER_SLOTS && owner[e + 1] == i)
            e++;
        if (e > s)
            sg_buf_printf(&b, "%s%d-%d", b.len ? "," : "", s, e);
        else
            sg_buf_printf(&b, "%s%d", b.len ? "," : "", s);
        s = e;
    }
    return b.p ? b.p : sg_xstrdup("none");
}

/* The smallest number whose slot master i serves, as the hash tag of a
 * new canary; -1 if none is found (a master with no slots). */
static int canary_tag(const int16_t *owner, int i)
{
    char tag[16];
    for (int t = 0; t < MAX_TAG; t++) {
        int n = snprintf(tag, sizeof tag, "%d", t);
        if (owner[sg_cluster_slot(tag, (size_t)n)] == i)
            return t;
    }
    return -1;
}

static bool is_master(const sg_rconn_cluster_master *m, int n, const master *old)
{
    for (int i = 0; i < n; i++)
        if (m[i].port == old->port && !strcmp(m[i].host, old->host))
            return true;
    return false;
}

/* A watcher for master i of the read: the one it had, if its canary's slot
 * is still its own; else one whose canary is that of a master gone from the
 * masters (a failover: the promoted replica serves the slots and holds the
 * canary, replicated to it), which knows the canary should be there; else
 * one with a new canary. A watcher whose canary's slot moved to another
 * master (a resharding) is replaced: the canary it watched went with the
 * slot. */
static master *master_for(sg_watchset *ws, const discovery *d, int i)
{
    const char *host = d->m[i].host;
    int port = d->m[i].port;
    for (size_t j = 0; j < ws->n; j++) {
        master *old = ws->masters[j];
        if (old && old->canary && old->port == port && !strcmp(old->host, host) &&
            d->owner[old->canary_slot] == i) {
            ws->masters[j] = NULL;
            if (!old->w)
                master_start(ws, old, NULL); /* it could not be started before */
            return old;
        }
    }
    master *m = sg_xcalloc(1, sizeof *m);
    m->ws = ws;
    m->host = sg_xstrdup(host);
    m->port = port;
    m->address =
        strchr(host, ':') ? sg_xasprintf("[%s]:%d", host, port) : sg_xasprintf("%s:%d", host, port);
    const char *predecessor = NULL;
    for (size_t j = 0; j < ws->n && !m->canary; j++) {
        master *old = ws->masters[j];
        sg_watch_report r;
        if (!old || !old->canary || !old->w || d->owner[old->canary_slot] != i ||
            is_master(d->m, d->n, old))
            continue;
        sg_watch_report_get(old->w, &r);
        if (!r.canary_seen)
            continue;
        m->canary = sg_xstrdup(old->canary);
        m->canary_slot = old->canary_slot;
        predecessor = old->address;
    }
    int tag = m->canary ? 0 : canary_tag(d->owner, i);
    if (!m->canary && tag >= 0) {
        m->canary = sg_xasprintf("%s{%d}", ws->canary, tag);
        char t[16];
        m->canary_slot = sg_cluster_slot(t, (size_t)snprintf(t, sizeof t, "%d", tag));
    }
    if (m->canary)
        master_start(ws, m, predecessor);
    else /* cannot happen for a master CLUSTER SLOTS lists */
        sg_log(SG_LOG_ERROR, "watch",
               "master %s of the Redis Cluster: no canary name found for its slots", m->address);
    return m;
}

/* Applies a good CLUSTER SLOTS read: keeps, replaces and adds watchers. */
static void reconcile(sg_watchset *ws, discovery *d)
{
    free(ws->error);
    ws->error = NULL;
    if (ws->layout && !strcmp(ws->layout, d->layout)) {
        for (size_t i = 0; i < ws->n; i++)
            if (!ws->masters[i]->w && ws->masters[i]->canary)
                master_start(ws, ws->masters[i], NULL); /* failed before: again */
        link_update(ws, NULL);
        return;
    }
    master **now = sg_xcalloc((size_t)d->n, sizeof *now);
    for (int i = 0; i < d->n; i++) {
        now[i] = master_for(ws, d, i);
        free(now[i]->slots);
        now[i]->slots = slots_of(d->owner, i);
    }
    for (size_t j = 0; j < ws->n; j++)
        if (ws->masters[j])
            master_drop(ws, ws->masters[j]);
    free(ws->masters);
    ws->masters = now;
    ws->n = (size_t)d->n;
    free(ws->layout);
    ws->layout = d->layout;
    d->layout = NULL;
    free(ws->owner);
    ws->owner = d->owner;
    d->owner = NULL;
    snprintf(ws->server, sizeof ws->server, "Redis Cluster, %zu masters", ws->n);
    sg_buf b = {0};
    for (size_t i = 0; i < ws->n; i++)
        sg_buf_printf(&b, "%s%s (slots %s, canary %s)", i ? ", " : "", ws->masters[i]->address,
                      ws->masters[i]->slots,
                      ws->masters[i]->canary ? ws->masters[i]->canary : "none");
    sg_log(SG_LOG_INFO, "watch", "Redis Cluster at %s: watching %zu masters: %s", ws->address,
           ws->n, b.p);
    sg_buf_free(&b);
    split_sample(ws);
    link_update(ws, NULL);
}

static void discover_done(uv_work_t *req, int status)
{
    discovery *d = req->data;
    sg_watchset *ws = d->ws;
    ws->discovering = NULL;
    ws->pending--;
    if (status == UV_ECANCELED) {
        /* stopping: it never ran */
    } else if (!ws->stopping && status == 0 && d->rc == 0) {
        reconcile(ws, d);
    } else if (!ws->stopping) {
        const char *msg = status ? uv_strerror(status) : d->err.msg;
        if (!ws->error || strcmp(ws->error, msg))
            sg_log(SG_LOG_WARN, "watch", "Redis Cluster at %s: %s", ws->address, msg);
        free(ws->error);
        ws->error = sg_xstrdup(msg);
        char why[SG_ERRMSG_MAX + 64];
        snprintf(why, sizeof why, "Redis Cluster at %s: %s", ws->address, msg);
        link_update(ws, why);
    }
    discovery_free(d);
    maybe_done(ws);
}

static void start_discovery(sg_watchset *ws)
{
    if (ws->discovering || ws->stopping)
        return;
    discovery *d = sg_xcalloc(1, sizeof *d);
    d->req.data = d;
    d->ws = ws;
    sg_redis_url_copy(&d->url, &ws->url);
    d->timeout_ms = ws->timeout_ms;
    /* the masters that are up first, then the others, then the URL's node */
    d->hosts = sg_xcalloc(ws->n + 1, sizeof *d->hosts);
    d->ports = sg_xcalloc(ws->n + 1, sizeof *d->ports);
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < ws->n; i++) {
            if (ws->masters[i]->up != (pass == 0))
                continue;
            d->hosts[d->nseeds] = sg_xstrdup(ws->masters[i]->host);
            d->ports[d->nseeds++] = ws->masters[i]->port;
        }
    d->hosts[d->nseeds] = NULL;
    d->ports[d->nseeds++] = 0;
    int rc = uv_queue_work(ws->loop, &d->req, discover_work, discover_done);
    if (rc) {
        sg_log(SG_LOG_ERROR, "watch", "Redis Cluster at %s: cannot read CLUSTER SLOTS: %s",
               ws->address, uv_strerror(rc));
        discovery_free(d);
        return;
    }
    ws->discovering = d;
    ws->pending++;
}

static void on_refresh(uv_timer_t *t)
{
    start_discovery(t->data);
}

static void on_refresh_closed(uv_handle_t *h)
{
    sg_watchset *ws = h->data;
    ws->pending--;
    maybe_done(ws);
}

/* ---- the one watcher ---- */

static void s_on_wipe(void *ud, sg_wipe_cause cause, const char *detail, int64_t at)
{
    sg_watchset *ws = ud;
    ws->on_wipe(ws->ud, cause, detail, at);
}

static void s_on_link(void *ud, bool up, const char *detail)
{
    sg_watchset *ws = ud;
    ws->told = true;
    ws->told_up = up;
    if (ws->on_link)
        ws->on_link(ws->ud, up, detail);
}

static void s_on_change(void *ud, sg_wipe_cause cause, const char *detail)
{
    sg_watchset *ws = ud;
    if (ws->on_change)
        ws->on_change(ws->ud, cause, detail);
}

/* The URL names a Cluster node: watch every master instead. */
static void s_on_cluster(void *ud)
{
    sg_watchset *ws = ud;
    sg_log(SG_LOG_INFO, "watch", "redis %s is a node of a Redis Cluster: watching every master",
           ws->address);
    ws->pending++;
    sg_watch_stop(ws->single, on_watch_stopped, ws);
    ws->single = NULL;
    ws->cluster = true;
    snprintf(ws->server, sizeof ws->server, "Redis Cluster");
    ws->refresh_fast = true;
    (void)uv_timer_start(&ws->refresh, on_refresh, REFRESH_DOWN_MS, REFRESH_DOWN_MS);
    start_discovery(ws);
}

/* ---- the set ---- */

int sg_watchset_start(uv_loop_t *loop, const sg_watch_opts *o, sg_wipe_fn on_wipe,
                      sg_link_fn on_link, void *ud, sg_watchset **out, sg_error *err)
{
    assert(!o->node_host && !o->predecessor && !o->on_cluster && !o->on_moved);
    if (o->canary && strchr(o->canary, '{'))
        /* a hash tag of its own would put every master's canary in one slot */
        return sg_error_set(err, SG_EUSAGE, "watch: the canary key %s may not contain '{'",
                            o->canary);
    sg_watchset *ws = sg_xcalloc(1, sizeof *ws);
    int rc = sg_redis_url_parse(o->redis_url ? o->redis_url : "", &ws->url, err);
    if (rc == 0 && (rc = sg_redis_url_configure(&ws->url, o->tls, o->sentinel_password, err)))
        sg_redis_url_close(&ws->url);
    if (rc) {
        free(ws);
        return rc;
    }
    sg_redis_url_password_from_env(&ws->url);
    sg_watch_opts wo = *o;
    wo.on_change = s_on_change;
    wo.on_cluster = s_on_cluster;
    if ((rc = sg_watch_start(loop, &wo, s_on_wipe, s_on_link, ws, &ws->single, err))) {
        sg_redis_url_close(&ws->url);
        free(ws);
        return rc;
    }
    ws->loop = loop;
    ws->on_wipe = on_wipe;
    ws->on_link = on_link;
    ws->on_change = o->on_change;
    ws->ud = ud;
    ws->redis_url = sg_xstrdup(o->redis_url);
    ws->canary = sg_xstrdup(o->canary);
    ws->count_pattern = o->count_pattern ? sg_xstrdup(o->count_pattern) : NULL;
    ws->check_ms = o->check_ms;
    ws->timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 5000;
    ws->clock = o->clock;
    ws->address = sg_redis_url_address(&ws->url);
    uv_timer_init(loop, &ws->refresh); /* cannot fail on Unix */
    ws->refresh.data = ws;
    *out = ws;
    return 0;
}

void sg_watchset_set_sample(sg_watchset *ws, const char *const *keys, size_t n)
{
    /* kept: a Cluster found later splits it among its masters */
    sg_strlist_clear(&ws->sample);
    for (size_t i = 0; i < n; i++)
        sg_strlist_push(&ws->sample, keys[i]);
    if (ws->single)
        sg_watch_set_sample(ws->single, keys, n);
    else if (ws->owner)
        split_sample(ws);
}

void sg_watchset_report_get(const sg_watchset *ws, sg_watch_report *out)
{
    if (ws->single) {
        sg_watch_report_get(ws->single, out);
        return;
    }
    *out = (sg_watch_report){.link = ws->told ? (ws->told_up ? SG_WATCH_UP : SG_WATCH_DOWN)
                                              : SG_WATCH_CONNECTING,
                             .address = ws->address,
                             .server = ws->server,
                             .canary = ws->canary,
                             .tracking = ws->n > 0,
                             .armed = ws->n > 0,
                             .canary_seen = ws->n > 0,
                             .last_error = ws->error,
                             .wipes = ws->wipes_gone};
    for (size_t i = 0; i < ws->n; i++) {
        sg_watch_report r = {.link = SG_WATCH_DOWN, .last_error = "not watched"};
        if (ws->masters[i]->w)
            sg_watch_report_get(ws->masters[i]->w, &r);
        if (i == 0) {
            out->run_id = r.run_id;
            out->role = r.role;
            out->redis_version = r.redis_version;
            out->last_check_ms = r.last_check_ms;
        }
        if (r.link == SG_WATCH_DOWN)
            out->link = SG_WATCH_DOWN;
        else if (r.link == SG_WATCH_CONNECTING && out->link == SG_WATCH_UP)
            out->link = SG_WATCH_CONNECTING;
        out->tracking = out->tracking && r.tracking;
        out->armed = out->armed && r.armed;
        out->canary_seen = out->canary_seen && r.canary_seen;
        if (r.last_check_ms < out->last_check_ms)
            out->last_check_ms = r.last_check_ms;
        out->dbsize += r.dbsize;
        out->sample += r.sample;
        out->wipes += r.wipes;
        if (!out->last_error && r.last_error && r.link != SG_WATCH_UP)
            out->last_error = r.last_error;
    }
}

size_t sg_watchset_masters(const sg_watchset *ws)
{
    return ws->single ? 0 : ws->n;
}

void sg_watchset_master_report(const sg_watchset *ws, size_t i, sg_watch_report *out,
                               const char **slots)
{
    assert(i < ws->n);
    const master *m = ws->masters[i];
    if (m->w)
        sg_watch_report_get(m->w, out);
    else
        *out = (sg_watch_report){.link = SG_WATCH_DOWN,
                                 .address = m->address,
                                 .server = m->address,
                                 .canary = m->canary,
                                 .last_error = "no watcher could be started"};
    *slots = m->slots;
}

void sg_watchset_stop(sg_watchset *ws, void (*done)(void *ud), void *ud)
{
    assert(!ws->stopping);
    ws->stopping = true;
    ws->done = done;
    ws->done_ud = ud;
    if (ws->single) {
        ws->pending++;
        sg_watch_stop(ws->single, on_watch_stopped, ws);
        ws->single = NULL;
    }
    for (size_t i = 0; i < ws->n; i++)
        master_drop(ws, ws->masters[i]);
    ws->n = 0;
    /* a read not yet started is cancelled; one under way ends within the
     * timeouts of the nodes it asks */
    if (ws->discovering)
        (void)uv_cancel((uv_req_t *)&ws->discovering->req);
    ws->pending++;
    uv_close((uv_handle_t *)&ws->refresh, on_refresh_closed);
}
