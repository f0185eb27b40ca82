/* Restore (snapshot.h): a snapshot's keys back into Redis.
 *
 * The snapshot's rows stream out of the store into pipelined RESTORE ...
 * ABSTTL, with up to two batches in flight: the server restores one while
 * the next is sent. Each command's expected reply (a key's, or a SELECT's
 * where a snapshot of several databases changes database) waits in a ring,
 * so replies are matched to what was sent without holding the rows. BUSYKEY
 * counts as "skipped, exists"; a key's other errors are tallied by reason,
 * except those every key would get (NOPERM, no RESTORE command), which stop
 * the run, as does a payload of a newer RDB version than the server's. A
 * dry run asks EXISTS instead and counts what RESTORE would do.
 *
 * On a Redis Cluster each master has its own pipeline (a lane) and each key
 * goes to the lane of its slot's master; a MOVED or ASK reply sends the key
 * again to the master named (after ASKING for ASK), so a pending key keeps
 * a copy of its row there. */
#include "stormguard/snapshot/snapshot.h"
#include "stormguard/store/snapshots.h"

#include <assert.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "snapshot_int.h"
#include "stormguard/redis/slot.h"
#include "stormguard/base/clock.h"

typedef enum { EXPECT_KEY, EXPECT_SELECT, EXPECT_ASKING } expect;

/* A command whose reply is awaited. On a Cluster it keeps a copy of its
 * key's row, so a redirect (MOVED, ASK) can send it again elsewhere. */
typedef struct pend {
    expect e;
    int redirects;
    char *key, *payload; /* cluster only */
    size_t key_len, payload_len;
    int64_t expire_at_ms;
} pend;

/* One server's pipeline: a standalone server, or one master of a Cluster. */
typedef struct lane {
    sg_rconn *c;
    pend *ring;
    size_t cap, head, pending;
} lane;

typedef struct restore {
    lane *lanes;
    int nlanes;
    int16_t *owner; /* Cluster: slot -> lane; NULL: one server */
    const sg_restore_opts *o;
    sg_restore_result *res;
} restore;

/* A key is sent again after a redirect at most this often: a slot moving
 * back and forth longer than that is a Cluster in trouble. */
#define MAX_REDIRECTS 5

static void tally_reason(sg_restore_result *res, const char *msg)
{
    res->failed++;
    for (int i = 0; i < res->reason_count; i++) {
        if (!strcmp(res->reasons[i].reason, msg)) {
            res->reasons[i].count++;
            return;
        }
    }
    if (res->reason_count < SG_RESTORE_REASONS) {
        res->reasons[res->reason_count].reason = sg_xstrdup(msg);
        res->reasons[res->reason_count++].count = 1;
    }
}

static void pend_clear(pend *p)
{
    free(p->key);
    free(p->payload);
    memset(p, 0, sizeof *p);
}

static int push(restore *rs, lane *l, const pend *p, sg_error *err, int argc, const char **argv,
                const size_t *lens)
{
    int rc = sg_rconn_append(l->c, err, argc, argv, lens);
    if (rc)
        return rc;
    if (l->pending == l->cap) { /* redirects add to a lane beyond its batches */
        pend *ring = sg_xmalloc(2 * l->cap * sizeof *ring);
        for (size_t i = 0; i < l->pending; i++)
            ring[i] = l->ring[(l->head + i) % l->cap];
        free(l->ring);
        l->ring = ring;
        l->head = 0;
        l->cap *= 2;
    }
    l->ring[(l->head + l->pending++) % l->cap] = *p;
    return 0;
}

/* Sends the command for a key's row to lane l: EXISTS for a dry run, else
 * RESTORE ... ABSTTL [REPLACE]. copy: keep the row (a Cluster). */
static int send_key(restore *rs, lane *l, const char *key, size_t klen, const char *payload,
                    size_t plen, int64_t expire_at_ms, int redirects, bool copy, sg_error *err)
{
    pend p = {.e = EXPECT_KEY, .redirects = redirects, .expire_at_ms = expire_at_ms};
    if (copy) {
        p.key = sg_xmalloc(klen ? klen : 1);
        memcpy(p.key, key, klen);
        p.key_len = klen;
        p.payload = sg_xmalloc(plen ? plen : 1);
        memcpy(p.payload, payload, plen);
        p.payload_len = plen;
    }
    int rc;
    if (rs->o->dry_run) {
        const char *argv[] = {"EXISTS", key};
        size_t lens[] = {6, klen};
        rc = push(rs, l, &p, err, 2, argv, lens);
    } else {
        char ttl[24];
        snprintf(ttl, sizeof ttl, "%lld", (long long)(expire_at_ms > 0 ? expire_at_ms : 0));
        const char *argv[] = {"RESTORE", key, ttl, payload, "ABSTTL", "REPLACE"};
        size_t lens[] = {7, klen, strlen(ttl), plen, 6, 7};
        rc = push(rs, l, &p, err, rs->o->replace ? 6 : 5, argv, lens);
    }
    if (rc)
        pend_clear(&p);
    return rc;
}

/* A Cluster's redirect of a key ("MOVED 3999 10.0.0.7:6379", "ASK ..."):
 * the key goes to the master named, and after MOVED so do the slot's next
 * keys. A master not known at the start means the Cluster changed under
 * the restore: it stops, naming it. */
static int redirect(restore *rs, lane *from, pend *p, const char *msg, sg_error *err)
{
    bool ask = !strncmp(msg, "ASK ", 4);
    int slot = 0;
    char where[128] = "";
    if (sscanf(msg + (ask ? 4 : 6), "%d %127s", &slot, where) != 2 || slot < 0 ||
        slot >= SG_CLUSTER_SLOTS)
        return sg_error_set(err, SG_EREDIS, "redis %s answered RESTORE with '%s'", from->c->address,
                            msg);
    /* "host:port" as Redis writes it: IPv6 without brackets, an empty
     * host for the node that answered */
    char *colon = strrchr(where, ':');
    int port = colon ? atoi(colon + 1) : 0;
    if (colon)
        *colon = '\0';
    const char *host = colon && *where ? where : from->c->url.host;
    int to = -1;
    for (int i = 0; i < rs->nlanes && to < 0; i++)
        if (rs->lanes[i].c->url.port == port && !strcmp(rs->lanes[i].c->url.host, host))
            to = i;
    if (colon)
        *colon = ':';
    if (to < 0)
        return sg_error_set(err, SG_EREDIS,
                            "redis %s sent key slot %d to %s, which was no master when the "
                            "restore began: the Cluster changed; restore again (keys already "
                            "restored are skipped as existing)",
                            from->c->address, slot, where);
    if (++p->redirects > MAX_REDIRECTS)
        return sg_error_set(err, SG_EREDIS,
                            "key slot %d was redirected %d times (last to %s): the Cluster is "
                            "moving it back and forth; restore again once it settles",
                            slot, MAX_REDIRECTS, where);
    lane *l = &rs->lanes[to];
    if (!ask) {
        rs->owner[slot] = (int16_t)to;
    } else {
        const char *argv[] = {"ASKING"};
        const pend asking = {.e = EXPECT_ASKING};
        int rc = push(rs, l, &asking, err, 1, argv, NULL);
        if (rc)
            return rc;
    }
    return send_key(rs, l, p->key, p->key_len, p->payload, p->payload_len, p->expire_at_ms,
                    p->redirects, true, err);
}

static int read_one(restore *rs, lane *l, sg_error *err)
{
    redisReply *r = NULL;
    int rc = sg_rconn_read(l->c, &r, err);
    if (rc)
        return rc;
    pend p = l->ring[l->head];
    l->head = (l->head + 1) % l->cap;
    l->pending--;
    bool redirected = r->type == REDIS_REPLY_ERROR && rs->owner &&
                      (!strncmp(r->str, "MOVED ", 6) || !strncmp(r->str, "ASK ", 4));
    if (p.e == EXPECT_SELECT) {
        if (r->type == REDIS_REPLY_ERROR)
            rc = sg_rconn_reply_error(l->c, "SELECT", r, err);
    } else if (p.e == EXPECT_ASKING) {
        if (r->type == REDIS_REPLY_ERROR)
            rc = sg_rconn_reply_error(l->c, "ASKING", r, err);
    } else if (redirected) {
        rc = redirect(rs, l, &p, r->str, err);
    } else if (rs->o->dry_run) {
        /* an existing key would be overwritten with --replace, skipped without */
        if (r->type == REDIS_REPLY_INTEGER && r->integer > 0 && !rs->o->replace)
            rs->res->skipped_existing++;
        else if (r->type == REDIS_REPLY_INTEGER)
            rs->res->restored++;
        else
            rc = sg_rconn_reply_error(l->c, "EXISTS", r, err);
    } else if (r->type != REDIS_REPLY_ERROR) {
        rs->res->restored++;
    } else if (!strncmp(r->str, "BUSYKEY", 7)) {
        rs->res->skipped_existing++;
    } else if (!strncmp(r->str, "NOPERM", 6) || !strncasecmp(r->str, "ERR unknown command", 19)) {
        rc = sg_rconn_reply_error(l->c, "RESTORE", r, err); /* will not get better */
    } else {
        tally_reason(rs->res, r->str);
    }
    pend_clear(&p);
    freeReplyObject(r);
    return rc;
}

static int drain_to(restore *rs, lane *l, size_t keep, sg_error *err)
{
    int rc = 0;
    if (l->pending > keep)
        rc = sg_rconn_flush(l->c, err);
    while (rc == 0 && l->pending > keep)
        rc = read_one(rs, l, err);
    return rc;
}

/* Every lane's replies, including those of keys redirected meanwhile. */
static int drain_all(restore *rs, sg_error *err)
{
    int rc = 0;
    for (bool busy = true; busy && rc == 0;) {
        busy = false;
        for (int i = 0; i < rs->nlanes && rc == 0; i++) {
            busy |= rs->lanes[i].pending > 0;
            rc = drain_to(rs, &rs->lanes[i], 0, err);
        }
    }
    return rc;
}

static int restore_row(restore *rs, lane *l, const sg_key_row *row, int target_db, int max_rdb,
                       int64_t now, sg_error *err)
{
    if (rs->o->match && rs->o->match->len &&
        !sg_strlist_match(rs->o->match, row->key, row->key_len)) {
        rs->res->skipped_unmatched++;
        return 0;
    }
    if (row->expire_at_ms > 0 && row->expire_at_ms <= now) {
        rs->res->skipped_expired++;
        return 0;
    }
    /* DUMP payload trailer: 2-byte RDB version (little endian), 8-byte CRC64 */
    if (row->payload_len >= 10 && max_rdb > 0) {
        const unsigned char *t = (const unsigned char *)row->payload + row->payload_len - 10;
        int v = t[0] | t[1] << 8;
        if (v > max_rdb)
            return sg_error_set(err, SG_EVERSION,
                                "snapshot payloads are RDB version %d but redis %s speaks at "
                                "most RDB version %d: restore into a server at least as new as "
                                "the one snapshotted",
                                v, l->c->address, max_rdb);
    }
    int rc;
    if (target_db != l->c->db) {
        char dbs[16];
        snprintf(dbs, sizeof dbs, "%d", target_db);
        const char *argv[] = {"SELECT", dbs};
        const pend sel = {.e = EXPECT_SELECT};
        if ((rc = push(rs, l, &sel, err, 2, argv, NULL)))
            return rc;
        l->c->db = target_db;
    }
    return send_key(rs, l, row->key, row->key_len, row->payload, row->payload_len,
                    row->expire_at_ms, 0, rs->owner != NULL, err);
}

#define RESTORE_BATCH 1000

/* The lane of a row: its slot's master on a Cluster. */
static int lane_of(restore *rs, const sg_key_row *row, lane **out, sg_error *err)
{
    if (!rs->owner) {
        *out = &rs->lanes[0];
        return 0;
    }
    int slot = sg_cluster_slot(row->key, row->key_len);
    if (rs->owner[slot] < 0)
        return sg_error_set(err, SG_EREDIS,
                            "no master of the Cluster serves slot %d (CLUSTER SLOTS): its keys "
                            "have nowhere to go",
                            slot);
    *out = &rs->lanes[rs->owner[slot]];
    return 0;
}

static int restore_rows(restore *rs, sg_store *s, const sg_snapshot_info *info, int home,
                        int max_rdb, sg_snap_progress *progress, sg_error *err)
{
    int64_t now = sg_clock_ms(progress->clock), rows = 0;
    sg_key_iter *it = NULL;
    int rc = sg_store_keys_open(s, info->id, &it, err);
    if (rc)
        return rc;
    sg_key_row row;
    while ((rc = sg_key_iter_next(it, &row, err)) == 1) {
        int target = info->db < 0 ? row.db : home;
        lane *l = NULL;
        if (rs->owner && target != 0) {
            rc = sg_error_set(err, SG_EUSAGE,
                              "the snapshot holds keys of database %d; a Redis Cluster has "
                              "database 0 only",
                              target);
            break;
        }
        if ((rc = lane_of(rs, &row, &l, err)) ||
            (rc = restore_row(rs, l, &row, target, max_rdb, now, err)))
            break;
        /* two batches in flight: the server restores one while we send the next */
        if (l->pending >= 2 * RESTORE_BATCH && (rc = drain_to(rs, l, RESTORE_BATCH, err)))
            break;
        if ((++rows & 1023) == 0)
            sg_snap_progress_tick(progress, rows, false);
    }
    sg_key_iter_free(it);
    return rc < 0 ? rc : drain_all(rs, err);
}

int sg_restore_run(sg_rconn *c, sg_store *s, int64_t id, const sg_restore_opts *o,
                   sg_restore_result *out, sg_error *err)
{
    memset(out, 0, sizeof *out);
    sg_snapshot_info info;
    int rc = sg_store_snapshot_get(s, id, &info, err);
    if (rc)
        return rc;
    int max_rdb = sg_rdb_version_for_redis(c->version);

    restore rs = {.o = o, .res = out};
    sg_rconn *nodes = NULL;
    char *layout = NULL;
    int home = c->db;
    sg_snap_progress progress;
    sg_snap_progress_init(&progress, o->clock, o->progress, o->progress_ud);
    if (!strcmp(c->mode, "cluster")) {
        /* each key to the master that serves its slot now (DOMAIN.md
         * section 8): one pipeline per master */
        rs.owner = sg_xmalloc(SG_CLUSTER_SLOTS * sizeof *rs.owner);
        if ((rc = sg_rconn_cluster_map(c, &nodes, &rs.nlanes, &layout, rs.owner, err)))
            goto done;
        rs.lanes = sg_xcalloc((size_t)rs.nlanes, sizeof *rs.lanes);
        for (int i = 0; i < rs.nlanes; i++)
            rs.lanes[i].c = &nodes[i];
    } else {
        rs.nlanes = 1;
        rs.lanes = sg_xcalloc(1, sizeof *rs.lanes);
        rs.lanes[0].c = c;
    }
    for (int i = 0; i < rs.nlanes; i++) {
        rs.lanes[i].cap = 4 * RESTORE_BATCH + 4;
        rs.lanes[i].ring = sg_xmalloc(rs.lanes[i].cap * sizeof *rs.lanes[i].ring);
    }
    rc = restore_rows(&rs, s, &info, home, max_rdb, &progress, err);
    if (rc == 0 && c->db != home)
        rc = sg_rconn_select(c, home, err);
done:
    for (int i = 0; i < rs.nlanes && rs.lanes; i++) {
        lane *l = &rs.lanes[i];
        for (size_t j = 0; j < l->pending; j++)
            pend_clear(&l->ring[(l->head + j) % l->cap]);
        free(l->ring);
    }
    free(rs.lanes);
    for (int i = 0; nodes && i < rs.nlanes; i++)
        sg_rconn_close(&nodes[i]);
    free(nodes);
    free(layout);
    free(rs.owner);
    out->seconds = sg_snap_progress_elapsed(&progress);
    if (rc)
        sg_error_prefix(err, "restore of snapshot %lld to %s", (long long)info.id, c->redacted);
    sg_snapshot_info_close(&info);
    return rc;
}

void sg_restore_result_close(sg_restore_result *r)
{
    for (int i = 0; i < r->reason_count; i++)
        free(r->reasons[i].reason);
    r->reason_count = 0;
}
