/* The safe flush (flush.h): plan, refuse, snapshot, delete, verify. */
#include "stormguard/snapshot/flush.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/redis/keyscan.h"
#include "stormguard/redis/reply.h"
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

/* Counts what the flush would delete, per namespace and protected pattern. */
static int make_plan(sg_rconn *c, const sg_flush_opts *o, const sg_strlist *select,
                     sg_flush_result *res, sg_error *err)
{
    plan p = {.o = o, .res = res, .tally = sg_nstally_new()};
    res->protected_counts = sg_xcalloc(o->protect->len, sizeof *res->protected_counts);
    int home = c->db, rc = 0;
    if (o->mode == SG_FLUSH_ALL) {
        rc = sg_rconn_nonempty_dbs(c, &res->dbs, &res->db_count, err);
    } else {
        res->dbs = sg_xmalloc(sizeof *res->dbs);
        res->dbs[0] = home;
        res->db_count = 1;
    }
    for (int i = 0; i < res->db_count && rc == 0; i++) {
        if (res->dbs[i] != c->db && (rc = sg_rconn_select(c, res->dbs[i], err)))
            break;
        sg_keyscan ks;
        sg_keyscan_init(&ks, c, select, o->scan_count);
        rc = sg_keyscan_each(&ks, plan_key, &p, err);
        sg_keyscan_close(&ks);
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
 * deleted that is not in the snapshot. */
static int unlink_snapshot(unlinker *u, sg_store *s, int64_t id, sg_error *err)
{
    sg_key_iter *it;
    int rc = sg_store_keys_open(s, id, &it, err);
    if (rc)
        return rc;
    sg_key_row row;
    while ((rc = sg_key_iter_next(it, &row, err)) == 1)
        if ((rc = unlink_key(u, row.key, row.key_len, err)))
            break;
    sg_key_iter_free(it);
    return rc ? rc : unlink_flush(u, err);
}

static int delete_keys(sg_rconn *c, sg_store *s, const sg_flush_opts *o, const sg_strlist *select,
                       sg_flush_result *res, sg_error *err)
{
    int rc;
    if (o->mode != SG_FLUSH_MATCH) {
        for (int i = 0; i < res->db_count; i++) {
            int64_t n = 0;
            if (o->mode == SG_FLUSH_ALL && (rc = sg_rconn_select(c, res->dbs[i], err)))
                return rc;
            if ((rc = dbsize(c, &n, err)))
                return rc;
            res->deleted += n;
        }
        if (o->mode == SG_FLUSH_ALL && (rc = sg_rconn_select(c, res->dbs[0], err)))
            return rc;
        const char *argv[] = {o->mode == SG_FLUSH_ALL ? "FLUSHALL" : "FLUSHDB", "ASYNC"};
        redisReply *r = NULL;
        if ((rc = sg_rconn_command(c, &r, err, 2, argv, NULL)))
            return rc;
        freeReplyObject(r);
        return 0;
    }
    unlinker u = {.c = c, .deleted = &res->deleted};
    u.argv = sg_xmalloc((UNLINK_BATCH + 1) * sizeof *u.argv);
    u.lens = sg_xmalloc((UNLINK_BATCH + 1) * sizeof *u.lens);
    u.owned = sg_xmalloc(UNLINK_BATCH * sizeof *u.owned);
    if (res->snapshot.id) {
        rc = unlink_snapshot(&u, s, res->snapshot.id, err);
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

static int verify(sg_rconn *c, const sg_flush_opts *o, const sg_strlist *select,
                  sg_flush_result *res, sg_error *err)
{
    const char *ping[] = {"PING"};
    redisReply *r = NULL;
    int rc = sg_rconn_command(c, &r, err, 1, ping, NULL);
    if (rc)
        return sg_error_prefix(err, "verifying the flush");
    res->verified = r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");
    freeReplyObject(r);
    int home = c->db;
    res->remaining = 0;
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

int sg_flush_run(sg_rconn *c, sg_store *s, const sg_snapshot_opts *snap, const sg_flush_opts *o,
                 sg_flush_result *out, sg_error *err)
{
    memset(out, 0, sizeof *out);
    double started = sg_mono_s();
    static const sg_strlist all_keys = {0};
    const sg_strlist *select = o->mode == SG_FLUSH_MATCH ? o->match : &all_keys;
    if (o->mode == SG_FLUSH_MATCH && (!o->match || !o->match->len))
        return sg_error_set(err, SG_EUSAGE, "flush --match needs at least one pattern");

    int rc = make_plan(c, o, select, out, err);
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
    if ((rc = delete_keys(c, s, o, select, out, err))) {
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
    rc = verify(c, o, select, out, err);
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
