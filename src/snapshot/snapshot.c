/* Snapshot and restore (snapshot.h).
 *
 * Snapshot. A SCAN page names up to ~COUNT keys; for each we pipeline PTTL
 * and DUMP. The key type is read from the payload's first byte (the RDB object
 * type), which saves a TYPE per key. (Measured on Redis 7.0 with 1M keys:
 * pipelined PTTL+DUMP cost the server 2.2 s of CPU, the same work in one
 * EVAL per page 2.6 s, so there is no script.)
 *
 * The client overlaps with the server: while Redis works on page k+1 we write
 * page k into SQLite. Replies stay in order on the one connection, so the
 * loop is: read page k's replies, read page k+1's SCAN reply, send page k+1's
 * commands and the SCAN for page k+2, then store page k.
 *
 * The whole snapshot is one SQLite transaction: it commits complete or not at
 * all. Memory stays flat: at most two pages are in flight.
 *
 * Restore streams the snapshot's rows into pipelined RESTORE ... ABSTTL with
 * up to two batches in flight, counting BUSYKEY as "skipped, exists". */
#include "stormguard/snapshot/snapshot.h"

#include <assert.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "stormguard/redis/keyscan.h"
#include "stormguard/redis/reply.h"
#include "stormguard/snapshot/rdb.h"

#define PROGRESS_EVERY_S 0.25

const char *sg_payload_type(const void *payload, size_t len)
{
    const unsigned char *p = payload;
    if (len < 11)
        return "unknown";
    switch ((unsigned char)p[0]) {
    case 0:
        return "string";
    case 1:
    case 10:
    case 14:
    case 18:
        return "list";
    case 2:
    case 11:
    case 20:
        return "set";
    case 3:
    case 5:
    case 12:
    case 17:
        return "zset";
    case 4:
    case 9:
    case 13:
    case 16:
    case 22:
    case 23:
    case 24:
    case 25:
        return "hash";
    case 15:
    case 19:
    case 21:
        return "stream";
    case 6:
    case 7:
        return "module";
    default:
        return "unknown";
    }
}

sg_snapshot_method sg_snapshot_method_named(const char *name)
{
    return name && !strcmp(name, "sync") ? SG_SNAPSHOT_SYNC : SG_SNAPSHOT_SCAN;
}

void sg_snapshot_patterns(const sg_snapshot_opts *o, sg_strlist *out)
{
    sg_strlist_clear(out);
    if (o->select) {
        sg_strlist_copy(out, o->select);
        return;
    }
    char *p = sg_profile_pattern(o->profile, o->prefix ? o->prefix : "igor");
    if (p) {
        sg_strlist_push(out, p);
        free(p);
    }
    if (o->match)
        for (size_t i = 0; i < o->match->len; i++)
            sg_strlist_push(out, o->match->items[i]);
}

/* A SCAN page and the replies to its commands. */
typedef struct page {
    sg_keypage keys;
    sg_igor_key *parsed;  /* per key, with the igor profile */
    bool *mine;           /* per key: an Igor key under the profile's prefix */
    size_t expected;      /* replies the page's commands will produce */
    redisReply **replies; /* read, not yet stored */
    size_t nreplies;
    int64_t sent_ms; /* the page's commands were sent no earlier */
} page;

typedef struct snap {
    sg_rconn *c;
    sg_store *s;
    const sg_snapshot_opts *o;
    sg_snapshot_result *res;
    const char *prefix;
    int db;
    bool count_profile; /* res->profile_keys is counted */
    bool with_ttl;      /* the database has keys with an expiry: PTTL each key */
    double started, last_progress;
} snap;

static void page_close(page *p)
{
    for (size_t i = 0; i < p->nreplies; i++)
        freeReplyObject(p->replies[i]);
    free(p->replies);
    sg_keypage_close(&p->keys);
    free(p->parsed);
    free(p->mine);
    memset(p, 0, sizeof *p);
}

static int send_page(snap *sn, page *p, sg_error *err)
{
    size_t n = p->keys.n;
    p->sent_ms = sg_now_ms();
    int rc;
    for (size_t i = 0; i < n; i++) {
        const char *argv[2] = {"PTTL", p->keys.keys[i]};
        size_t lens[2] = {4, p->keys.lens[i]};
        if (sn->with_ttl && (rc = sg_rconn_append(sn->c, err, 2, argv, lens)))
            return rc;
        argv[0] = "DUMP";
        if ((rc = sg_rconn_append(sn->c, err, 2, argv, lens)))
            return rc;
        p->expected += sn->with_ttl ? 2 : 1;
    }
    if (sn->o->profile != SG_PROFILE_IGOR)
        return 0;
    p->parsed = sg_xcalloc(n, sizeof *p->parsed);
    p->mine = sg_xcalloc(n, sizeof *p->mine);
    for (size_t i = 0; i < n; i++)
        p->mine[i] =
            sg_igor_parse_key(sn->prefix, p->keys.keys[i], p->keys.lens[i], &p->parsed[i]) == 0;
    return 0;
}

/* Reads the replies of page p's commands (stored later, by store_page). */
static int read_page(snap *sn, page *p, sg_error *err)
{
    p->replies = sg_xmalloc((p->expected ? p->expected : 1) * sizeof *p->replies);
    while (p->nreplies < p->expected) {
        int rc = sg_rconn_read(sn->c, &p->replies[p->nreplies], err);
        if (rc)
            return rc;
        p->nreplies++;
    }
    return 0;
}

/* Decoding one index hash: its family decides which fields count. */
typedef struct decoding {
    snap *sn;
    const sg_igor_key *k;
    bool used;
    int rc;
    sg_error *err;
} decoding;

static int decode_pair(void *ud, sg_slice field, sg_slice value)
{
    decoding *d = ud;
    const sg_igor_key *k = d->k;
    sg_store *s = d->sn->s;
    int64_t n;
    switch (k->family) {
    case SG_KEY_JENKINS_CURSOR:
        if (field.len == strlen(SG_IGOR_CURSOR_FIELD) &&
            !memcmp(field.p, SG_IGOR_CURSOR_FIELD, field.len) && sg_parse_slice_int64(value, &n)) {
            d->rc = sg_store_index_cursor(s, k->source.p, k->source.len, k->job.p, k->job.len, n,
                                          d->err);
            d->used = true;
        }
        break;
    case SG_KEY_JENKINS_POSTED:
        /* field = build number, value POSTED (DOMAIN.md section 2) */
        if (sg_parse_slice_int64(field, &n)) {
            d->rc = sg_store_index_posted(s, k->source.p, k->source.len, k->job.p, k->job.len, n,
                                          d->err);
            d->used = true;
        }
        break;
    case SG_KEY_DOCKER_TAG:
        if (field.len == 6 && !memcmp(field.p, "digest", 6)) {
            d->rc = sg_store_index_docker(s, k->source.p, k->source.len, k->job.p, k->job.len,
                                          k->tag.p, k->tag.len, value.p, value.len, d->err);
            d->used = true;
        }
        break;
    default:
        break;
    }
    return d->rc;
}

/* Decodes the build index (DOMAIN.md section 2) from an Igor key's DUMP
 * payload: the value is read out of the payload, so the index costs Redis
 * no command beyond the DUMP. A value of a type or shape the family does not
 * have is counted as undecoded. */
static int decode_payload(snap *sn, const sg_igor_key *k, const char *payload, size_t len,
                          sg_error *err)
{
    switch (k->family) {
    case SG_KEY_CI_COMPLETED:
    case SG_KEY_CI_RUNNING: {
        sg_buf v = {0};
        int64_t number;
        int rc = 0;
        if (sg_rdb_string(payload, len, &v) ||
            !sg_parse_slice_int64((sg_slice){v.p, v.len}, &number))
            sn->res->undecoded++;
        else
            rc = sg_store_index_ci(sn->s, k->source.p, k->source.len, k->job.p, k->job.len,
                                   k->family == SG_KEY_CI_RUNNING, number, err);
        sg_buf_free(&v);
        return rc;
    }
    case SG_KEY_JENKINS_CURSOR:
    case SG_KEY_JENKINS_POSTED:
    case SG_KEY_DOCKER_TAG: {
        decoding d = {.sn = sn, .k = k, .err = err};
        int rc = sg_rdb_hash_each(payload, len, decode_pair, &d);
        if (d.rc)
            return d.rc;
        if (rc || !d.used)
            sn->res->undecoded++;
        return 0;
    }
    default:
        return 0;
    }
}

/* Stores a key and, for an Igor key, its part of the build index. */
static int take_key(snap *sn, const char *key, size_t klen, int64_t expire_at, const char *payload,
                    size_t len, const sg_igor_key *igor, sg_error *err)
{
    int rc = sg_store_snapshot_add_key(sn->s, sn->db, key, klen, expire_at, payload, len, err);
    if (rc)
        return rc;
    sn->res->keys++;
    sn->res->bytes += (int64_t)(klen + len);
    if (!igor)
        return 0;
    if (sn->count_profile)
        sn->res->profile_keys++;
    return decode_payload(sn, igor, payload, len, err);
}

/* Stores one key from its PTTL and DUMP replies. A remaining TTL counts
 * from when the page was sent, before Redis answered: the stored expiry is
 * never later than the key's own (earlier by at most the time the page
 * waited for its answers). */
static int store_key(snap *sn, const char *key, size_t klen, const redisReply *ttl,
                     const redisReply *dump, int64_t sent_ms, const sg_igor_key *igor,
                     sg_error *err)
{
    if (!dump || dump->type != REDIS_REPLY_STRING) {
        sn->res->vanished++; /* deleted between SCAN and DUMP */
        return 0;
    }
    /* ttl NULL: the database had no key with an expiry (snapshot_db) */
    int64_t expire_at = 0;
    if (ttl && sg_reply_pttl(ttl, sent_ms, &expire_at)) {
        sn->res->vanished++;
        return 0;
    }
    return take_key(sn, key, klen, expire_at, dump->str, dump->len, igor, err);
}

/* Stores the keys of page p from the replies read_page collected. */
static int store_page(snap *sn, page *p, sg_error *err)
{
    int rc = 0;
    size_t n = p->keys.n, next = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        redisReply *ttl = sn->with_ttl ? p->replies[next++] : NULL, *dump = p->replies[next++];
        if (dump->type == REDIS_REPLY_ERROR)
            return sg_rconn_reply_error(sn->c, "DUMP", dump, err);
        if (ttl && ttl->type == REDIS_REPLY_ERROR)
            return sg_rconn_reply_error(sn->c, "PTTL", ttl, err);
        rc = store_key(sn, p->keys.keys[i], p->keys.lens[i], ttl, dump, p->sent_ms,
                       p->mine && p->mine[i] ? &p->parsed[i] : NULL, err);
    }
    return rc;
}

static void progress(snap *sn, bool final)
{
    if (!sn->o->progress)
        return;
    double now = sg_mono_s();
    if (final || now - sn->last_progress >= PROGRESS_EVERY_S) {
        sn->last_progress = now;
        sn->o->progress(sn->o->progress_ud, sn->res->keys, now - sn->started);
    }
}

/* Pages whose commands are queued at the server at once: while we store
 * the oldest, Redis works on the others and never waits for us. */
#define PAGES_IN_FLIGHT 2

#define SNAPSHOT_AGAIN (-1000) /* snapshot_db: take the snapshot again, with PTTL */

static int snapshot_keys(snap *sn, sg_rconn *scan, const sg_strlist *patterns, sg_error *err);

/* Whether any key could carry an expiry: keys with one in any database of
 * the server (INFO keyspace), and how many keys the server has expired so
 * far (INFO stats, server-wide too: a key that got an expiry and expired
 * between two looks shows there). A key that gets an expiry and loses it
 * to PERSIST, DEL or SET between the looks goes unseen: it is stored
 * without the expiry it had for a moment. */
typedef struct ttl_look {
    int64_t expires, expired;
} ttl_look;

static int look_ttl(sg_rconn *c, ttl_look *out, sg_error *err)
{
    const char *argv[] = {"INFO", "keyspace"};
    redisReply *r = NULL;
    int rc = sg_rconn_command(c, &r, err, 2, argv, NULL);
    if (rc)
        return rc;
    out->expires = r->type == REDIS_REPLY_STRING ? sg_reply_info_expires(r->str) : 0;
    freeReplyObject(r);
    char *expired = NULL;
    if ((rc = sg_rconn_info_field(c, "stats", "expired_keys", &expired, err)))
        return rc;
    out->expired = expired ? strtoll(expired, NULL, 10) : -1;
    free(expired);
    return 0;
}

static int snapshot_db(snap *sn, sg_rconn *scan, const sg_strlist *patterns, sg_error *err)
{
    /* A key's PTTL costs Redis nearly as much as its DUMP. On a server
     * where no key expires (a Jenkins-only Igor keeps no key with a TTL,
     * DOMAIN.md section 2) it is not asked: every key is stored without
     * expiry. Should a key with an expiry appear meanwhile (or appear and
     * expire), which key it was is unknown: the caller takes the snapshot
     * again with PTTL. */
    ttl_look before = {0}, after = {0};
    if (!sn->with_ttl) {
        int rc = look_ttl(sn->c, &before, err);
        if (rc)
            return rc;
        if (before.expires > 0 || before.expired < 0)
            sn->with_ttl = true;
    }
    int rc = snapshot_keys(sn, scan, patterns, err);
    if (rc == 0 && !sn->with_ttl && (rc = look_ttl(sn->c, &after, err)) == 0 &&
        (after.expires > 0 || after.expired != before.expired)) {
        sn->with_ttl = true;
        return SNAPSHOT_AGAIN;
    }
    return rc;
}

/* Snapshots the current database's keys. SCAN runs on its own connection
 * (scan) so the cursor chain can run ahead of the PTTL/DUMP pipeline on
 * sn->c. */
static int snapshot_keys(snap *sn, sg_rconn *scan, const sg_strlist *patterns, sg_error *err)
{
    sg_keyscan ks;
    sg_keyscan_init(&ks, scan, patterns, sn->o->scan_count);
    page flight[PAGES_IN_FLIGHT] = {0};
    size_t head = 0, count = 0;
    int scanning = sg_keyscan_request(&ks, err); /* 0: a SCAN is queued */
    int rc = scanning < 0 ? scanning : sg_rconn_flush(scan, err);
    while (rc == 0) {
        while (rc == 0 && scanning == 0 && count < PAGES_IN_FLIGHT) {
            page *p = &flight[(head + count) % PAGES_IN_FLIGHT];
            if ((rc = sg_keyscan_receive(&ks, &p->keys, err)))
                break;
            count++;
            if ((scanning = sg_keyscan_request(&ks, err)) < 0 ||
                (scanning == 0 && (rc = sg_rconn_flush(scan, err))))
                rc = rc ? rc : scanning;
            if (rc == 0)
                rc = send_page(sn, p, err);
            if (rc == 0)
                rc = sg_rconn_flush(sn->c, err);
        }
        if (rc || count == 0)
            break;
        page *oldest = &flight[head];
        /* the yield: a run of pages that match few keys ends slices too */
        if ((rc = read_page(sn, oldest, err)) || (rc = store_page(sn, oldest, err)) ||
            (rc = sg_store_snapshot_yield(sn->s, err)))
            break;
        page_close(oldest);
        head = (head + 1) % PAGES_IN_FLIGHT;
        count--;
        progress(sn, false);
    }
    for (size_t i = 0; i < PAGES_IN_FLIGHT; i++)
        page_close(&flight[i]);
    sg_keyscan_close(&ks);
    return rc;
}

/* ---- The sync method: the RDB a replica would get ------------------------ */

/* Silence from the server longer than this ends a sync snapshot. Redis sends
 * a newline a second while it prepares the RDB (replicationCron); during a
 * diskless transfer it may pause for a slow replica fed by the same fork,
 * for as long as its repl-timeout (60 s by default) lets that one live. */
#define SYNC_IDLE_MS 90000

typedef struct sync_src {
    int fd;
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
    for (;;) {
        struct pollfd pfd = {.fd = src->fd, .events = POLLIN};
        int ready = poll(&pfd, 1, SYNC_IDLE_MS);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready == 0)
            return sg_error_set(err, SG_EREDIS,
                                "redis %s sent nothing for %d s during the RDB "
                                "transfer",
                                src->address, SYNC_IDLE_MS / 1000);
        ssize_t n = ready < 0 ? -1 : read(src->fd, buf, cap);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return sg_error_set(err, SG_EREDIS, "reading the RDB from redis %s: %s", src->address,
                                strerror(errno));
        *got = (size_t)n;
        if (src->left > 0)
            src->left -= n;
        return 0;
    }
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
    snap *sn;
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
        progress(t->sn, false);
    int i = 0;
    while (i < t->ndb && t->dbs[i] != db)
        i++;
    return i < t->ndb && (!t->patterns->len || sg_strlist_match(t->patterns, key, len));
}

static int sync_key(void *ud, const sg_rdb_key *k, sg_error *err)
{
    sync_take *t = ud;
    snap *sn = t->sn;
    if (k->expire_at_ms > 0 && k->expire_at_ms <= t->now_ms) {
        sn->res->vanished++; /* expired, not yet reclaimed: DUMP would not see it */
        return 0;
    }
    sg_igor_key igor;
    bool mine = sn->o->profile == SG_PROFILE_IGOR &&
                sg_igor_parse_key(sn->prefix, k->key, k->key_len, &igor) == 0;
    sn->db = k->db;
    return take_key(sn, k->key, k->key_len, k->expire_at_ms, k->payload, k->payload_len,
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

/* The sync method: the RDB a replica would get, over a connection of its
 * own (REPLCONF rdb-only 1 on Redis 7.0 and later: no replication stream
 * follows). The keys are one consistent cut of the server, taken by a fork
 * of Redis, as BGSAVE takes them. Two steps: sync_start asks for the RDB and
 * waits until it begins (Redis may first wait out repl-diskless-sync-delay,
 * 5 s by default, or a BGSAVE already running) before the snapshot's
 * transaction starts, so the store's write lock is not held meanwhile;
 * sync_keys then reads it. */
typedef struct sync_conn {
    sg_rconn r;
    sync_src src;
    char mark[40];
    bool has_mark;
} sync_conn;

static int sync_start(snap *sn, sync_conn *sc, sg_error *err)
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
    sc->src = (sync_src){.fd = sc->r.ctx->fd, .left = -1, .address = sc->r.address};
    return rc ? rc : sync_preamble(&sc->src, sc->mark, &sc->has_mark, err);
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

static int sync_keys(snap *sn, sync_conn *sc, const sg_strlist *patterns, const int *dbs, int ndb,
                     sg_error *err)
{
    sync_take t = {.sn = sn, .patterns = patterns, .dbs = dbs, .ndb = ndb, .now_ms = sg_now_ms()};
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

static char *join(const sg_strlist *l)
{
    if (!l->len)
        return sg_xstrdup("*");
    size_t n = 0;
    for (size_t i = 0; i < l->len; i++)
        n += strlen(l->items[i]) + 1;
    char *s = sg_xmalloc(n), *o = s;
    for (size_t i = 0; i < l->len; i++) {
        size_t k = strlen(l->items[i]);
        memcpy(o, l->items[i], k);
        o += k;
        *o++ = ' ';
    }
    o[-1] = '\0';
    return s;
}

/* The profile's pattern if the snapshot takes every key it matches, so its
 * profile keys can be counted and compared; NULL otherwise (no profile, or a
 * --select that leaves some out, as a flush of cache:* with the igor profile
 * does). Caller frees. */
static char *counted_pattern(const sg_snapshot_opts *o, const char *prefix)
{
    char *p = sg_profile_pattern(o->profile, prefix);
    if (!p || !o->select || o->select->len == 0)
        return p;
    for (size_t i = 0; i < o->select->len; i++)
        if (!strcmp(o->select->items[i], p) || !strcmp(o->select->items[i], "*"))
            return p;
    free(p);
    return NULL;
}

/* Marks res suspect when its profile keys fall below o->suspect_below_pct of
 * the last good snapshot's. Only profile keys are compared, never all keys:
 * --match extras come and go with other applications, and what a wipe takes
 * is the poller's state. The comparison is with the last good snapshot, not
 * the previous one, so a run of snapshots after a wipe stays suspect until the
 * poller has rebuilt its keys (or an operator takes one with the check off). */
static int judge(sg_store *s, const sg_snapshot_opts *o, const sg_snapshot_info *meta,
                 sg_snapshot_result *res, sg_error *err)
{
    if (o->suspect_below_pct <= 0)
        return 0;
    int64_t good_id = 0, good_keys = 0;
    int rc = sg_store_last_good(s, meta->redis, meta->db, meta->profile_pattern, &good_id,
                                &good_keys, err);
    if (rc || good_id == 0)
        return rc;
    if (res->profile_keys * 100 >= good_keys * o->suspect_below_pct)
        return 0;
    res->suspect = true;
    snprintf(res->suspect_reason, sizeof res->suspect_reason,
             "found %lld %s keys, the last good snapshot %lld had %lld (below %d%%)",
             (long long)res->profile_keys, meta->profile, (long long)good_id, (long long)good_keys,
             o->suspect_below_pct);
    return 0;
}

int sg_snapshot_take(sg_rconn *c, sg_store *s, const sg_snapshot_opts *o, sg_snapshot_result *out,
                     sg_error *err)
{
    sg_snapshot_result res = {0};
    snap sn = {.c = c, .s = s, .o = o, .res = &res, .prefix = o->prefix ? o->prefix : "igor"};
    sn.started = sn.last_progress = sg_mono_s();
    sg_strlist patterns = {0};
    sg_snapshot_patterns(o, &patterns);
    char *profile_pattern = counted_pattern(o, sn.prefix);
    sn.count_profile = profile_pattern != NULL;
    if (!profile_pattern)
        res.profile_keys = -1;
    char *version = NULL;
    int rc = sg_rconn_info_field(c, "server", "redis_version", &version, err);
    if (rc)
        goto done;

    int home = c->db;
    int one_db[1] = {home};
    const int *dbs = o->dbs ? o->dbs : one_db;
    int ndb = o->dbs ? o->db_count : 1;
    sync_conn sc = {0};
    if (o->method == SG_SNAPSHOT_SYNC && (rc = sync_start(&sn, &sc, err))) {
        sg_rconn_close(&sc.r);
        goto done;
    }
    sg_snapshot_info meta = {
        .taken_at_ms = sg_now_ms(),
        .reason = (char *)(o->reason ? o->reason : "manual"),
        .redis = c->redacted,
        .redis_version = version,
        .profile = (char *)sg_profile_kind_name(o->profile),
        .db = ndb == 1 ? dbs[0] : -1,
    };
    meta.selection = join(&patterns);
    meta.profile_pattern = profile_pattern;
    for (;;) {
        rc = sg_store_snapshot_begin(s, &meta, &res.id, err);
        if (rc)
            break;
        sg_rconn scan = {0};
        if (o->method == SG_SNAPSHOT_SYNC) {
            rc = sync_keys(&sn, &sc, &patterns, dbs, ndb, err);
        } else if ((rc = sg_rconn_clone(c, &scan, err)) == 0) {
            for (int i = 0; i < ndb && rc == 0; i++) {
                if (dbs[i] != c->db && (rc = sg_rconn_select(c, dbs[i], err)))
                    break;
                if (dbs[i] != scan.db && (rc = sg_rconn_select(&scan, dbs[i], err)))
                    break;
                sn.db = dbs[i];
                rc = snapshot_db(&sn, &scan, &patterns, err);
            }
            sg_rconn_close(&scan);
        }
        if (rc == 0 && c->db != home)
            rc = sg_rconn_select(c, home, err);
        if (rc != SNAPSHOT_AGAIN)
            break;
        /* a key with an expiry appeared while PTTL was not asked: again,
         * asking it for every key (sn.with_ttl is now set) */
        sg_store_snapshot_abort(s);
        res = (sg_snapshot_result){.profile_keys = profile_pattern ? 0 : -1};
        sn.started = sn.last_progress = sg_mono_s();
    }
    free(meta.selection);
    sg_rconn_close(&sc.r);
    if (rc) {
        sg_store_snapshot_abort(s);
        goto done;
    }
    res.seconds = sg_mono_s() - sn.started;
    if (meta.profile_pattern && (rc = judge(s, o, &meta, &res, err))) {
        sg_store_snapshot_abort(s);
        goto done;
    }
    sg_snapshot_info totals = {.key_count = res.keys,
                               .bytes = res.bytes,
                               .vanished = res.vanished,
                               .seconds = res.seconds,
                               .state = res.suspect ? "suspect" : "complete",
                               .profile_keys = res.profile_keys,
                               .suspect_reason = res.suspect ? res.suspect_reason : NULL};
    if ((rc = sg_store_snapshot_commit(s, &totals, err))) {
        sg_store_snapshot_abort(s);
        goto done;
    }
    progress(&sn, true);
    if ((rc = sg_store_index_counts(s, res.id, &res.index, err)))
        goto done;
    *out = res;
done:
    free(profile_pattern);
    free(version);
    sg_strlist_clear(&patterns);
    if (rc)
        sg_error_prefix(err, "snapshot of %s", c->redacted);
    return rc;
}

/* ---- restore ---- */

typedef enum { EXPECT_KEY, EXPECT_SELECT } expect;

typedef struct restore {
    sg_rconn *c;
    const sg_restore_opts *o;
    sg_restore_result *res;
    expect *ring;
    size_t cap, head, pending;
    bool fatal;
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
    double started = sg_mono_s(), last = started;
    int64_t now = sg_now_ms(), rows = 0;
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
        if (o->progress && (++rows & 1023) == 0 && sg_mono_s() - last >= PROGRESS_EVERY_S) {
            last = sg_mono_s();
            o->progress(o->progress_ud, rows, last - started);
        }
    }
    if (rc == 0)
        rc = drain_to(&rs, 0, err);
    if (rc == 0 && c->db != home)
        rc = sg_rconn_select(c, home, err);
done:
    sg_key_iter_free(it);
    free(rs.ring);
    out->seconds = sg_mono_s() - started;
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
