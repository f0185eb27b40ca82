/* The sync method of taking a snapshot (snapshot_int.h, sg_snap_sync_*):
 * the RDB a replica would get, over a connection of its own (REPLCONF
 * rdb-only 1 on Redis 7.0 and later: no replication stream follows). The
 * keys are one consistent cut of the server, taken by a fork of Redis, as
 * BGSAVE takes them; rdb.c splits the stream into one DUMP payload per key,
 * the payload the SCAN method would have stored.
 *
 * Two steps: sg_snap_sync_new asks for the RDB and waits until it begins
 * (Redis may first wait out repl-diskless-sync-delay, 5 s by default, or a
 * BGSAVE already running) before the snapshot's transaction starts, so the
 * store's write lock is not held meanwhile; sg_snap_sync_keys then reads it. */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "snapshot_int.h"
#include "stormguard/snapshot/rdb.h"
#include "stormguard/redis/reply.h"
#include "stormguard/store/snapshots.h"
#include "stormguard/base/clock.h"

/* Silence from the server longer than this ends a sync snapshot. Redis sends
 * a newline a second while it prepares the RDB (replicationCron); during a
 * diskless transfer it may pause for a slow replica fed by the same fork,
 * for as long as its repl-timeout (60 s by default) lets that one live. */
#define SYNC_IDLE_MS 90000

typedef struct sync_src {
    sg_rconn *r;
    int64_t left; /* bytes of a "$<len>" transfer still to come; -1: end mark */
    const char *address;
    sg_store *store; /* once the snapshot's transaction runs: slices end on time */
} sync_src;

static int sync_read(void *ud, void *buf, size_t cap, size_t *got, sg_error *err)
{
    sync_src *src = ud;
    *got = 0;
    if (src->left == 0)
        return 0;
    if (src->left > 0 && (uint64_t)src->left < cap)
        cap = (size_t)src->left;
    /* between keys, and while Redis is slow to send: the store's other
     * writers get their turn as when keys are added */
    int rc = src->store ? sg_store_snapshot_yield(src->store, err) : 0;
    if (rc)
        return rc;
    rc = sg_rconn_read_raw(src->r, buf, cap, got, SYNC_IDLE_MS, err);
    if (rc == 1)
        return sg_error_set(err, SG_EREDIS,
                            "redis %s sent nothing for %d s during the RDB transfer", src->address,
                            SYNC_IDLE_MS / 1000);
    if (rc)
        return rc;
    if (src->left > 0)
        src->left -= (int64_t)*got;
    return 0;
}

/* Reads SYNC's preamble: newlines while the server prepares the RDB, then
 * "$EOF:<40-byte mark>" (diskless: the mark follows the RDB) or "$<length>",
 * or an error line. */
static int sync_preamble(sync_src *src, char mark[40], bool *has_mark, sg_error *err)
{
    char line[128];
    size_t n = 0;
    for (;;) {
        char ch;
        size_t got;
        int rc = sync_read(src, &ch, 1, &got, err);
        if (rc)
            return rc;
        if (got == 0)
            return sg_error_set(err, SG_EREDIS, "redis %s closed the connection before the RDB",
                                src->address);
        if (n == 0 && ch == '\n')
            continue; /* keepalive */
        if (ch == '\n')
            break;
        if (n == sizeof line - 1)
            return sg_error_set(err, SG_EREDIS,
                                "redis %s answered SYNC with a line longer "
                                "than %zu bytes, not an RDB header",
                                src->address, n);
        line[n++] = ch;
    }
    while (n && line[n - 1] == '\r')
        n--;
    line[n] = '\0';
    if (line[0] == '-') {
        /* managed Redis renames SYNC away (DOMAIN.md section 8) */
        if (!strncasecmp(line + 1, "ERR unknown command", 19))
            return sg_error_set(err, SG_EREDIS,
                                "redis %s does not offer SYNC (renamed or disabled, as managed "
                                "Redis services do): use --method scan, which needs only SCAN "
                                "and DUMP (%s)",
                                src->address, line + 1);
        bool acl = !strncmp(line + 1, "NOPERM", 6);
        return sg_error_set(err, SG_EREDIS, "redis %s refused SYNC: %s%s", src->address, line + 1,
                            acl ? " (the sync method needs a user allowed SYNC and REPLCONF; "
                                  "--method scan needs only SCAN and DUMP)"
                                : "");
    }
    if (!strncmp(line, "$EOF:", 5) && n == 5 + 40) {
        memcpy(mark, line + 5, 40);
        *has_mark = true;
        src->left = -1;
        return 0;
    }
    char *end;
    errno = 0;
    long long len = line[0] == '$' ? strtoll(line + 1, &end, 10) : -1;
    if (len < 0 || errno || *end)
        return sg_error_set(err, SG_EREDIS, "redis %s answered SYNC with \"%s\", not an RDB",
                            src->address, line);
    *has_mark = false;
    src->left = len;
    return 0;
}

typedef struct sync_take {
    sg_snap *sn;
    const sg_strlist *patterns;
    const int *dbs;
    int ndb;
    int64_t now_ms, seen;
} sync_take;

/* Whether a key of the RDB is taken: its database and name are selected.
 * The values of the others are read past, never held in memory. */
static bool sync_want(void *ud, int db, const char *key, size_t len)
{
    sync_take *t = ud;
    if ((++t->seen & 1023) == 0)
        sg_snap_progress_tick(&t->sn->progress, t->sn->res->keys, false);
    int i = 0;
    while (i < t->ndb && t->dbs[i] != db)
        i++;
    return i < t->ndb && (!t->patterns->len || sg_strlist_match(t->patterns, key, len));
}

static int sync_key(void *ud, const sg_rdb_key *k, sg_error *err)
{
    sync_take *t = ud;
    sg_snap *sn = t->sn;
    if (k->expire_at_ms > 0 && k->expire_at_ms <= t->now_ms) {
        sn->res->vanished++; /* expired, not yet reclaimed: DUMP would not see it */
        return 0;
    }
    sg_igor_key igor;
    bool mine = sg_snap_profile_key(sn, k->key, k->key_len, &igor);
    sn->db = k->db;
    return sg_snap_take_key(sn, k->key, k->key_len, k->expire_at_ms, k->payload, k->payload_len,
                            mine ? &igor : NULL, err);
}

/* CONFIG GET name's value, or NULL where it cannot be read (ACL, renamed
 * CONFIG). Caller frees. */
static char *config_value(sg_rconn *r, const char *name)
{
    const char *argv[] = {"CONFIG", "GET", name};
    redisReply *reply = NULL;
    sg_error ignored;
    if (sg_rconn_command(r, &reply, &ignored, 3, argv, NULL))
        return NULL;
    char *v = sg_reply_config_value(reply);
    freeReplyObject(reply);
    return v;
}

/* Redis writes the RDB of a SYNC to its disk (dbfilename) unless
 * repl-diskless-sync is on, the default since 7.0. On a server that keeps no
 * persistence (save "", appendonly no) that file would be loaded by its next
 * restart: the data of the snapshot's time instead of the empty start its
 * operator chose, and a wipe hidden from the watcher. Refused there. Where
 * CONFIG cannot be read, the snapshot goes ahead. */
static int sync_check_disk(sg_rconn *r, sg_error *err)
{
    char *diskless = config_value(r, "repl-diskless-sync");
    char *save = config_value(r, "save"), *aof = config_value(r, "appendonly");
    bool refuse =
        diskless && !strcmp(diskless, "no") && save && !*save && aof && !strcmp(aof, "no");
    free(diskless);
    free(save);
    free(aof);
    if (refuse)
        return sg_error_set(err, SG_EREFUSED,
                            "redis %s would write this snapshot's RDB to its disk "
                            "(repl-diskless-sync no) although it keeps no persistence (save \"\", "
                            "appendonly no): its next restart would load that file; use --method "
                            "scan, or set repl-diskless-sync yes",
                            r->address);
    return 0;
}

/* A transfer: its connection, and the end mark that follows a diskless
 * RDB. */
struct sg_snap_sync {
    sg_rconn r;
    sync_src src;
    char mark[40];
    bool has_mark;
};

static int sync_start(sg_snap *sn, sg_snap_sync *sc, sg_error *err)
{
    int rc = sg_rconn_clone(sn->c, &sc->r, err);
    if (rc || (rc = sync_check_disk(&sc->r, err)))
        return rc;
    redisReply *reply = NULL;
    const char *capa[] = {"REPLCONF", "capa", "eof"};
    const char *only[] = {"REPLCONF", "rdb-only", "1"};
    const char *sync[] = {"SYNC"};
    if ((rc = sg_rconn_command(&sc->r, &reply, err, 3, capa, NULL)) == 0)
        freeReplyObject(reply);
    /* Before 7.0 rdb-only is unknown (an error reply): the replication
     * stream then follows the RDB, unread, until the connection closes. */
    if (rc == 0 && (rc = sg_rconn_append(&sc->r, err, 3, only, NULL)) == 0 &&
        (rc = sg_rconn_read(&sc->r, &reply, err)) == 0)
        freeReplyObject(reply);
    if (rc == 0 && (rc = sg_rconn_append(&sc->r, err, 1, sync, NULL)) == 0)
        rc = sg_rconn_flush(&sc->r, err);
    sc->src = (sync_src){.r = &sc->r, .left = -1, .address = sc->r.address};
    return rc ? rc : sync_preamble(&sc->src, sc->mark, &sc->has_mark, err);
}

int sg_snap_sync_new(sg_snap *sn, sg_snap_sync **out, sg_error *err)
{
    sg_snap_sync *sc = sg_xcalloc(1, sizeof *sc);
    int rc = sync_start(sn, sc, err);
    if (rc) {
        sg_snap_sync_free(sc);
        return rc;
    }
    *out = sc;
    return 0;
}

void sg_snap_sync_free(sg_snap_sync *sc)
{
    if (!sc)
        return;
    sg_rconn_close(&sc->r);
    free(sc);
}

/* The caller's connection sat idle through the transfer: a server with a
 * client `timeout` shorter than that has closed it. A flush goes on with it,
 * so it is opened again if it no longer answers. */
static int revive(sg_rconn *c, sg_error *err)
{
    const char *argv[] = {"PING"};
    redisReply *r = NULL;
    sg_error ignored;
    if (sg_rconn_command(c, &r, &ignored, 1, argv, NULL) == 0) {
        freeReplyObject(r);
        return 0;
    }
    sg_rconn fresh = {0};
    int rc = sg_rconn_clone(c, &fresh, err);
    if (rc == 0) {
        sg_rconn_close(c);
        *c = fresh;
    }
    return rc;
}

int sg_snap_sync_keys(sg_snap *sn, sg_snap_sync *sc, const sg_strlist *patterns, const int *dbs,
                      int ndb, sg_error *err)
{
    sync_take t = {
        .sn = sn, .patterns = patterns, .dbs = dbs, .ndb = ndb, .now_ms = sg_clock_ms(sn->clock)};
    sc->src.store = sn->s;
    int rc = sg_rdb_parse(sync_read, &sc->src, sc->has_mark ? sc->mark : NULL,
                          sc->has_mark ? 40 : 0, sync_want, sync_key, &t, NULL, err);
    sc->src.store = NULL;
    if (rc == 0 && sc->src.left > 0)
        rc =
            sg_error_set(err, SG_EREDIS, "redis %s announced %lld more RDB bytes than the RDB held",
                         sc->r.address, (long long)sc->src.left);
    if (rc == SG_EINVAL)
        sg_error_prefix(err, "reading the RDB of redis %s", sc->r.address);
    return rc ? rc : revive(sn->c, err);
}
