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
 * dry run asks EXISTS instead and counts what RESTORE would do. */
#include "stormguard/snapshot/snapshot.h"
#include "stormguard/store/snapshots.h"

#include <assert.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "snapshot_int.h"
#include "stormguard/base/clock.h"

typedef enum { EXPECT_KEY, EXPECT_SELECT } expect;

typedef struct restore {
    sg_rconn *c;
    const sg_restore_opts *o;
    sg_restore_result *res;
    expect *ring;
    size_t cap, head, pending;
} restore;

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

static int push(restore *rs, expect e, sg_error *err, int argc, const char **argv,
                const size_t *lens)
{
    int rc = sg_rconn_append(rs->c, err, argc, argv, lens);
    if (rc)
        return rc;
    assert(rs->pending < rs->cap);
    rs->ring[(rs->head + rs->pending++) % rs->cap] = e;
    return 0;
}

static int read_one(restore *rs, sg_error *err)
{
    redisReply *r = NULL;
    int rc = sg_rconn_read(rs->c, &r, err);
    if (rc)
        return rc;
    expect e = rs->ring[rs->head];
    rs->head = (rs->head + 1) % rs->cap;
    rs->pending--;
    if (e == EXPECT_SELECT) {
        if (r->type == REDIS_REPLY_ERROR)
            rc = sg_rconn_reply_error(rs->c, "SELECT", r, err);
    } else if (rs->o->dry_run) {
        /* an existing key would be overwritten with --replace, skipped without */
        if (r->type == REDIS_REPLY_INTEGER && r->integer > 0 && !rs->o->replace)
            rs->res->skipped_existing++;
        else if (r->type == REDIS_REPLY_INTEGER)
            rs->res->restored++;
        else
            rc = sg_rconn_reply_error(rs->c, "EXISTS", r, err);
    } else if (r->type != REDIS_REPLY_ERROR) {
        rs->res->restored++;
    } else if (!strncmp(r->str, "BUSYKEY", 7)) {
        rs->res->skipped_existing++;
    } else if (!strncmp(r->str, "NOPERM", 6) || !strncasecmp(r->str, "ERR unknown command", 19)) {
        rc = sg_rconn_reply_error(rs->c, "RESTORE", r, err); /* will not get better */
    } else {
        tally_reason(rs->res, r->str);
    }
    freeReplyObject(r);
    return rc;
}

static int drain_to(restore *rs, size_t keep, sg_error *err)
{
    int rc = 0;
    if (rs->pending > keep)
        rc = sg_rconn_flush(rs->c, err);
    while (rc == 0 && rs->pending > keep)
        rc = read_one(rs, err);
    return rc;
}

static int restore_row(restore *rs, const sg_key_row *row, int target_db, int max_rdb, int64_t now,
                       sg_error *err)
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
                                v, rs->c->address, max_rdb);
    }
    int rc;
    if (target_db != rs->c->db) {
        char dbs[16];
        snprintf(dbs, sizeof dbs, "%d", target_db);
        const char *argv[] = {"SELECT", dbs};
        if ((rc = push(rs, EXPECT_SELECT, err, 2, argv, NULL)))
            return rc;
        rs->c->db = target_db;
    }
    if (rs->o->dry_run) {
        const char *argv[] = {"EXISTS", row->key};
        size_t lens[] = {6, row->key_len};
        return push(rs, EXPECT_KEY, err, 2, argv, lens);
    }
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%lld", (long long)(row->expire_at_ms > 0 ? row->expire_at_ms : 0));
    const char *argv[] = {"RESTORE", row->key, ttl, row->payload, "ABSTTL", "REPLACE"};
    size_t lens[] = {7, row->key_len, strlen(ttl), row->payload_len, 6, 7};
    return push(rs, EXPECT_KEY, err, rs->o->replace ? 6 : 5, argv, lens);
}

#define RESTORE_BATCH 1000

int sg_restore_run(sg_rconn *c, sg_store *s, int64_t id, const sg_restore_opts *o,
                   sg_restore_result *out, sg_error *err)
{
    memset(out, 0, sizeof *out);
    sg_snapshot_info info;
    int rc = sg_store_snapshot_get(s, id, &info, err);
    if (rc)
        return rc;
    char *version = NULL;
    if ((rc = sg_rconn_info_field(c, "server", "redis_version", &version, err))) {
        sg_snapshot_info_close(&info);
        return rc;
    }
    int max_rdb = sg_rdb_version_for_redis(version);
    free(version);

    restore rs = {.c = c, .o = o, .res = out, .cap = 4 * RESTORE_BATCH + 4};
    rs.ring = sg_xmalloc(rs.cap * sizeof *rs.ring);
    sg_key_iter *it = NULL;
    int home = c->db;
    sg_snap_progress progress;
    sg_snap_progress_init(&progress, o->clock, o->progress, o->progress_ud);
    int64_t now = sg_clock_ms(progress.clock), rows = 0;
    if ((rc = sg_store_keys_open(s, info.id, &it, err)))
        goto done;
    sg_key_row row;
    while ((rc = sg_key_iter_next(it, &row, err)) == 1) {
        int target = info.db < 0 ? row.db : home;
        if ((rc = restore_row(&rs, &row, target, max_rdb, now, err)))
            break;
        /* two batches in flight: the server restores one while we send the next */
        if (rs.pending >= 2 * RESTORE_BATCH && (rc = drain_to(&rs, RESTORE_BATCH, err)))
            break;
        if ((++rows & 1023) == 0)
            sg_snap_progress_tick(&progress, rows, false);
    }
    if (rc == 0)
        rc = drain_to(&rs, 0, err);
    if (rc == 0 && c->db != home)
        rc = sg_rconn_select(c, home, err);
done:
    sg_key_iter_free(it);
    free(rs.ring);
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
