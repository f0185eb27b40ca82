/* The safe flush (flush.h): plan, refuse, snapshot, delete, verify.
 *
 * Every step runs on each server of the flush: the one server, or every
 * master of a Redis Cluster (a flush that counted, deleted or verified one
 * node would report success for its share of the keys). On a Cluster keys
 * of different slots cannot share a command (CROSSSLOT): each key gets its
 * own UNLINK, pipelined to the master of its slot. */
#include "stormguard/snapshot/flush.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/redis/keyscan.h"
#include "stormguard/redis/reply.h"
#include "stormguard/redis/slot.h"
#include "stormguard/store/episodes.h"
#include "stormguard/store/snapshots.h"
#include "stormguard/base/clock.h"

#define UNLINK_BATCH 1000 /* keys per UNLINK: frees memory off Redis's main thread */

const char *sg_flush_mode_name(sg_flush_mode m)
{
    return m == SG_FLUSH_ALL ? "all" : m == SG_FLUSH_DB ? "db" : "match";
}

typedef struct plan {
    const sg_flush_opts *o;
    sg_flush_result *res;
    sg_nstally *tally;
} plan;

static int plan_key(void *ud, const char *key, size_t len, sg_error *err)
{
    (void)err;
    plan *p = ud;
    sg_ns_stats *ns = sg_nstally_get(p->tally, key, len);
    ns->keys++;
    p->res->planned++;
    bool hit = false;
    for (size_t i = 0; i < p->o->protect->len; i++) {
        if (sg_glob_match(p->o->protect->items[i], key, len)) {
            p->res->protected_counts[i]++;
            hit = true;
        }
    }
    if (hit) {
        ns->protected_keys++;
        p->res->protected_total++;
    }
    return 0;
}

static int dbsize(sg_rconn *c, int64_t *out, sg_error *err)
{
    const char *argv[] = {"DBSIZE"};
    redisReply *r = NULL;
    int rc = sg_rconn_command(c, &r, err, 1, argv, NULL);
    if (rc)
        return rc;
    if (sg_reply_count(r, SG_REDIS_KEYS_MAX, out))
        *out = 0;
    freeReplyObject(r);
    return 0;
}

/* The servers a flush acts on: the one, or every master of a Cluster. */
typedef struct servers {
    sg_rconn *c; /* the caller's connection */
    sg_rconn *nodes;
    int n;
    int16_t *owner; /* Cluster: slot -> node; NULL: one server */
    char *layout;
} servers;

static sg_rconn *server(servers *sv, int i)
{
    return sv->owner ? &sv->nodes[i] : sv->c;
}

static int servers_open(sg_rconn *c, servers *sv, sg_error *err)
{
    *sv = (servers){.c = c, .n = 1};
    if (strcmp(c->mode, "cluster"))
        return 0;
    sv->owner = sg_xmalloc(SG_CLUSTER_SLOTS * sizeof *sv->owner);
    return sg_rconn_cluster_map(c, &sv->nodes, &sv->n, &sv->layout, sv->owner, err);
}

static void servers_close(servers *sv)
{
    for (int i = 0; sv->owner && sv->nodes && i < sv->n; i++)
        sg_rconn_close(&sv->nodes[i]);
    free(sv->nodes);
    free(sv->owner);
    free(sv->layout);
}

/* Counts what the flush would delete, per namespace and protected pattern. */
static int make_plan(servers *sv, const sg_flush_opts *o, const sg_strlist *select,
                     sg_flush_result *res, sg_error *err)
{
    plan p = {.o = o, .res = res, .tally = sg_nstally_new()};
    res->protected_counts = sg_xcalloc(o->protect->len, sizeof *res->protected_counts);
    sg_rconn *c = sv->c;
    int home = c->db, rc = 0;
    if (o->mode == SG_FLUSH_ALL && sv->owner) {
        res->dbs = sg_xcalloc(1, sizeof *res->dbs); /* a Cluster has database 0 only */
        res->db_count = 1;
    } else if (o->mode == SG_FLUSH_ALL) {
        rc = sg_rconn_nonempty_dbs(c, &res->dbs, &res->db_count, err);
    } else {
        res->dbs = sg_xmalloc(sizeof *res->dbs);
        res->dbs[0] = home;
        res->db_count = 1;
    }
    for (int i = 0; i < res->db_count && rc == 0; i++) {
        if (res->dbs[i] != c->db && (rc = sg_rconn_select(c, res->dbs[i], err)))
            break;
        for (int n = 0; n < sv->n && rc == 0; n++) {
            sg_keyscan ks;
            sg_keyscan_init(&ks, server(sv, n), select, o->scan_count);
            rc = sg_keyscan_each(&ks, plan_key, &p, err);
            sg_keyscan_close(&ks);
        }
    }
    if (rc == 0 && c->db != home)
        rc = sg_rconn_select(c, home, err);
    sg_nstally_take(p.tally, &res->namespaces, &res->namespace_count);
    sg_nstally_free(p.tally);
    return rc;
}

/* UNLINKs keys in batches; adds what Redis removed to *deleted. */
typedef struct unlinker {
    sg_rconn *c;
    const char **argv;
    size_t *lens;
    char **owned; /* copies of key names (the source rows do not outlive a call) */
    size_t n;
    int64_t *deleted;
} unlinker;

static int unlink_flush(unlinker *u, sg_error *err)
{
    if (u->n == 0)
        return 0;
    u->argv[0] = "UNLINK";
    u->lens[0] = 6;
    redisReply *r = NULL;
    int rc = sg_rconn_command(u->c, &r, err, (int)u->n + 1, u->argv, u->lens);
    for (size_t i = 0; i < u->n; i++)
        free(u->owned[i]);
    int64_t asked = (int64_t)u->n, removed;
    u->n = 0;
    if (rc)
        return rc;
    if (sg_reply_count(r, asked, &removed) == 0)
        *u->deleted += removed;
    freeReplyObject(r);
    return 0;
}

/* A Cluster's deletes: one UNLINK per key, pipelined to its slot's master,
 * replies read a batch at a time. A redirect (the slot moved since the
 * flush began) stops the flush: its count says how far it got. */
typedef struct cluster_unlinker {
    servers *sv;
    size_t *pending; /* per node */
    int64_t *deleted;
} cluster_unlinker;

/* Reads node n's pending UNLINK replies. After an error reply the rest are
 * still read and counted (those keys are gone), so the count of what was
 * deleted stays true; the first error is returned. */
static int cluster_drain(cluster_unlinker *u, int n, sg_error *err)
{
    sg_rconn *c = server(u->sv, n);
    int rc = u->pending[n] ? sg_rconn_flush(c, err) : 0, first = 0;
    for (; rc == 0 && u->pending[n]; u->pending[n]--) {
        redisReply *r = NULL;
        if ((rc = sg_rconn_read(c, &r, err)))
            break;
        if (r->type == REDIS_REPLY_INTEGER)
            *u->deleted += r->integer > 0;
        else if (!first && r->type == REDIS_REPLY_ERROR &&
                 (!strncmp(r->str, "MOVED ", 6) || !strncmp(r->str, "ASK ", 4)))
            first = sg_error_set(err, SG_EREDIS,
                                 "redis %s answered UNLINK with %s: the Cluster's slots moved "
                                 "during the flush",
                                 c->address, r->str);
        else if (!first && r->type == REDIS_REPLY_ERROR)
            first = sg_rconn_reply_error(c, "UNLINK", r, err);
        freeReplyObject(r);
    }
    return rc ? rc : first;
}

static int cluster_unlink_key(void *ud, const char *key, size_t len, sg_error *err)
{
    cluster_unlinker *u = ud;
    int n = u->sv->owner[sg_cluster_slot(key, len)];
    if (n < 0)
        return sg_error_set(err, SG_EREDIS, "no master of the Cluster serves slot %d",
                            sg_cluster_slot(key, len));
    const char *argv[] = {"UNLINK", key};
    size_t lens[] = {6, len};
    int rc = sg_rconn_append(server(u->sv, n), err, 2, argv, lens);
    if (rc == 0 && ++u->pending[n] == UNLINK_BATCH)
        rc = cluster_drain(u, n, err);
    return rc;
}

static int cluster_drain_all(cluster_unlinker *u, sg_error *err)
{
    int rc = 0;
    for (int n = 0; n < u->sv->n && rc == 0; n++)
        rc = cluster_drain(u, n, err);
    return rc;
}

static int unlink_key(void *ud, const char *key, size_t len, sg_error *err)
{
    unlinker *u = ud;
    u->owned[u->n] = sg_xstrndup(key, len);
    u->argv[u->n + 1] = u->owned[u->n];
    u->lens[u->n + 1] = len;
    u->n++;
    return u->n == UNLINK_BATCH ? unlink_flush(u, err) : 0;
}

/* Deletes exactly the keys the pre-flush snapshot holds, so nothing is
 * deleted that is not in the snapshot: each row goes to each(ud, key). */
static int unlink_snapshot(sg_store *s, int64_t id, sg_keyscan_fn each, void *ud, sg_error *err)
{
    sg_key_iter *it;
    int rc = sg_store_keys_open(s, id, &it, err);
    if (rc)
        return rc;
    sg_key_row row;
    while ((rc = sg_key_iter_next(it, &row, err)) == 1)
        if ((rc = each(ud, row.key, row.key_len, err)))
            break;
    sg_key_iter_free(it);
    return rc;
}

/* FLUSHDB or FLUSHALL on every server, counting what each held first. */
static int flush_whole(servers *sv, const sg_flush_opts *o, sg_flush_result *res, sg_error *err)
{
    int rc = 0;
    for (int s = 0; s < sv->n && rc == 0; s++) {
        sg_rconn *c = server(sv, s);
        for (int i = 0; i < res->db_count && rc == 0; i++) {
            int64_t n = 0;
            if (o->mode == SG_FLUSH_ALL && !sv->owner &&
                (rc = sg_rconn_select(c, res->dbs[i], err)))
                break;
            if ((rc = dbsize(c, &n, err)))
                break;
            res->deleted += n;
        }
        if (rc == 0 && o->mode == SG_FLUSH_ALL && !sv->owner)
            rc = sg_rconn_select(c, res->dbs[0], err);
        const char *argv[] = {o->mode == SG_FLUSH_ALL ? "FLUSHALL" : "FLUSHDB", "ASYNC"};
        redisReply *r = NULL;
        if (rc == 0 && (rc = sg_rconn_command(c, &r, err, 2, argv, NULL)) == 0)
            freeReplyObject(r);
    }
    return rc;
}

static int cluster_delete(servers *sv, sg_store *s, const sg_flush_opts *o,
                          const sg_strlist *select, sg_flush_result *res, sg_error *err)
{
    cluster_unlinker u = {.sv = sv, .deleted = &res->deleted};
    u.pending = sg_xcalloc((size_t)sv->n, sizeof *u.pending);
    int rc = 0;
    if (res->snapshot.id) {
        rc = unlink_snapshot(s, res->snapshot.id, cluster_unlink_key, &u, err);
    } else {
        /* SCAN on a connection of its own: the UNLINKs pipelined on the
         * node's connection must not come between SCAN and its reply */
        for (int n = 0; n < sv->n && rc == 0; n++) {
            sg_rconn scan;
            if ((rc = sg_rconn_clone(server(sv, n), &scan, err)))
                break;
            sg_keyscan ks;
            sg_keyscan_init(&ks, &scan, select, o->scan_count);
            rc = sg_keyscan_each(&ks, cluster_unlink_key, &u, err);
            sg_keyscan_close(&ks);
            sg_rconn_close(&scan);
        }
    }
    if (rc == 0)
        rc = cluster_drain_all(&u, err);
    free(u.pending);
    return rc;
}

static int delete_keys(servers *sv, sg_store *s, const sg_flush_opts *o, const sg_strlist *select,
                       sg_flush_result *res, sg_error *err)
{
    int rc;
    sg_rconn *c = sv->c;
    if (o->mode != SG_FLUSH_MATCH)
        return flush_whole(sv, o, res, err);
    if (sv->owner)
        return cluster_delete(sv, s, o, select, res, err);
    unlinker u = {.c = c, .deleted = &res->deleted};
    u.argv = sg_xmalloc((UNLINK_BATCH + 1) * sizeof *u.argv);
    u.lens = sg_xmalloc((UNLINK_BATCH + 1) * sizeof *u.lens);
    u.owned = sg_xmalloc(UNLINK_BATCH * sizeof *u.owned);
    if (res->snapshot.id) {
        rc = unlink_snapshot(s, res->snapshot.id, unlink_key, &u, err);
        if (rc == 0)
            rc = unlink_flush(&u, err);
    } else {
        sg_keyscan ks;
        sg_keyscan_init(&ks, c, select, o->scan_count);
        rc = sg_keyscan_each(&ks, unlink_key, &u, err);
        sg_keyscan_close(&ks);
        if (rc == 0)
            rc = unlink_flush(&u, err);
    }
    for (size_t i = 0; i < u.n; i++)
        free(u.owned[i]);
    free(u.argv);
    free(u.lens);
    free(u.owned);
    return rc;
}

static int count_key(void *ud, const char *key, size_t len, sg_error *err)
{
    (void)key;
    (void)len;
    (void)err;
    ++*(int64_t *)ud;
    return 0;
}

/* Every server answers, and counts what is left of the selection. */
static int verify_server(sg_rconn *c, const sg_flush_opts *o, const sg_strlist *select,
                         sg_flush_result *res, bool *alive, sg_error *err)
{
    const char *ping[] = {"PING"};
    redisReply *r = NULL;
    int rc = sg_rconn_command(c, &r, err, 1, ping, NULL);
    if (rc)
        return rc;
    *alive = r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");
    freeReplyObject(r);
    int home = c->db;
    for (int i = 0; i < res->db_count && rc == 0; i++) {
        if (res->dbs[i] != c->db && (rc = sg_rconn_select(c, res->dbs[i], err)))
            break;
        if (o->mode == SG_FLUSH_MATCH) {
            sg_keyscan ks;
            sg_keyscan_init(&ks, c, select, o->scan_count);
            rc = sg_keyscan_each(&ks, count_key, &res->remaining, err);
            sg_keyscan_close(&ks);
        } else {
            int64_t n = 0;
            rc = dbsize(c, &n, err);
            res->remaining += n;
        }
    }
    if (rc == 0 && c->db != home)
        rc = sg_rconn_select(c, home, err);
    return rc;
}

static int verify(servers *sv, const sg_flush_opts *o, const sg_strlist *select,
                  sg_flush_result *res, sg_error *err)
{
    int rc = 0;
    res->remaining = 0;
    res->verified = true;
    for (int n = 0; n < sv->n && rc == 0; n++) {
        bool alive = false;
        rc = verify_server(server(sv, n), o, select, res, &alive, err);
        res->verified &= alive;
    }
    /* slots that moved to a master not planned for would keep their keys
     * out of every count above */
    char *now = NULL;
    if (rc == 0 && sv->owner && (rc = sg_rconn_cluster_layout(sv->c, &now, err)) == 0 &&
        strcmp(now, sv->layout))
        rc = sg_error_set(err, SG_EREDIS,
                          "the Cluster's slots moved during the flush (resharding or a "
                          "failover): keys may remain on a master it did not cover; run it "
                          "again");
    free(now);
    return rc ? sg_error_prefix(err, "verifying the flush") : 0;
}

static void refusal(const sg_flush_opts *o, const sg_flush_result *res, sg_error *err)
{
    char list[512] = "";
    size_t at = 0;
    for (size_t i = 0; i < o->protect->len; i++) {
        if (!res->protected_counts[i] || at >= sizeof list)
            continue;
        at += (size_t)snprintf(list + at, sizeof list - at, "%s%s %lld", at ? ", " : "",
                               o->protect->items[i], (long long)res->protected_counts[i]);
    }
    sg_error_set(err, SG_EREFUSED,
                 "refusing to flush: %lld protected key%s would be lost (%s); nothing was "
                 "deleted. Narrow the flush with --match, or use --force to delete them anyway",
                 (long long)res->protected_total, res->protected_total == 1 ? "" : "s", list);
}

static int flush_servers(servers *sv, sg_store *s, const sg_snapshot_opts *snap,
                         const sg_flush_opts *o, const sg_strlist *select, sg_flush_result *out,
                         double started, sg_error *err);

int sg_flush_run(sg_rconn *c, sg_store *s, const sg_snapshot_opts *snap, const sg_flush_opts *o,
                 sg_flush_result *out, sg_error *err)
{
    memset(out, 0, sizeof *out);
    double started = sg_mono_s();
    static const sg_strlist all_keys = {0};
    const sg_strlist *select = o->mode == SG_FLUSH_MATCH ? o->match : &all_keys;
    if (o->mode == SG_FLUSH_MATCH && (!o->match || !o->match->len))
        return sg_error_set(err, SG_EUSAGE, "flush --match needs at least one pattern");

    servers sv;
    int rc = servers_open(c, &sv, err);
    if (rc == 0)
        rc = flush_servers(&sv, s, snap, o, select, out, started, err);
    servers_close(&sv);
    return rc;
}

static int flush_servers(servers *sv, sg_store *s, const sg_snapshot_opts *snap,
                         const sg_flush_opts *o, const sg_strlist *select, sg_flush_result *out,
                         double started, sg_error *err)
{
    sg_rconn *c = sv->c;
    int rc = make_plan(sv, o, select, out, err);
    if (rc)
        return sg_error_prefix(err, "planning the flush");
    if (out->protected_total && !o->force) {
        refusal(o, out, err);
        return SG_EREFUSED;
    }
    if (o->dry_run || out->planned == 0) {
        out->seconds = sg_mono_s() - started;
        return 0;
    }
    if (o->before_delete && (rc = o->before_delete(o->before_delete_ud, out, err)))
        return rc;
    if (o->snapshot) {
        /* the snapshot covers exactly what will be deleted, decoded by the
         * profile; if it fails nothing is deleted */
        sg_snapshot_opts so = *snap;
        so.select = select;
        so.reason = "pre-flush";
        so.dbs = out->dbs;
        so.db_count = out->db_count;
        if ((rc = sg_snapshot_take(c, s, &so, &out->snapshot, err)))
            return sg_error_prefix(err,
                                   "nothing was deleted because the pre-flush snapshot failed");
    }
    if ((rc = delete_keys(sv, s, o, select, out, err))) {
        /* how far it got, and how to undo it: the operator must know */
        if (o->mode == SG_FLUSH_MATCH && out->snapshot.id)
            return sg_error_prefix(err,
                                   "flushing %s stopped after deleting %lld of %lld keys (the "
                                   "pre-flush snapshot %lld holds them all: stormguard restore "
                                   "%lld)",
                                   c->redacted, (long long)out->deleted, (long long)out->planned,
                                   (long long)out->snapshot.id, (long long)out->snapshot.id);
        if (o->mode == SG_FLUSH_MATCH)
            return sg_error_prefix(err, "flushing %s stopped after deleting %lld of %lld keys",
                                   c->redacted, (long long)out->deleted, (long long)out->planned);
        return sg_error_prefix(err, "flushing %s", c->redacted);
    }
    rc = verify(sv, o, select, out, err);
    out->seconds = sg_mono_s() - started;
    if (s) {
        char *detail =
            sg_xasprintf("mode=%s deleted=%lld snapshot=%lld remaining=%lld redis=%s",
                         sg_flush_mode_name(o->mode), (long long)out->deleted,
                         (long long)out->snapshot.id, (long long)out->remaining, c->redacted);
        sg_error ignored;
        sg_store_audit(s, sg_now_ms(), "cli", "flush", detail, &ignored);
        free(detail);
    }
    return rc;
}

void sg_flush_result_close(sg_flush_result *r)
{
    sg_ns_stats_free(r->namespaces, r->namespace_count);
    free(r->protected_counts);
    free(r->dbs);
    memset(r, 0, sizeof *r);
}
