/* Snapshots (snapshot.h): the options, what every snapshot goes through
 * whichever method reads its keys (this file's SCAN method, sync.c), and
 * the SCAN method.
 *
 * The whole snapshot is one SQLite transaction: it commits complete or not at
 * all. Each key goes into it with its DUMP payload and, for a key of the
 * profile, its rows of the build index as the profile decodes them. Once the
 * keys are in, the profile keys are compared with the last good snapshot's
 * (suspect_below_pct) and the snapshot commits as complete or suspect. The
 * SCAN method may ask for one retry, from a new transaction, when it finds
 * that it should have asked every key's PTTL.
 *
 * SCAN. A SCAN page names up to ~COUNT keys; for each we pipeline PTTL and
 * DUMP. The key type is read from the payload's first byte (the RDB object
 * type), which saves a TYPE per key. (Measured on Redis 7.0 with 1M keys:
 * pipelined PTTL+DUMP cost the server 2.2 s of CPU, the same work in one
 * EVAL per page 2.6 s, so there is no script.)
 *
 * The client overlaps with the server: while Redis works on page k+1 we write
 * page k into SQLite. Replies stay in order on the one connection, so the
 * loop is: read page k's replies, read page k+1's SCAN reply, send page k+1's
 * commands and the SCAN for page k+2, then store page k. Memory stays flat:
 * at most two pages are in flight. */
#include "stormguard/snapshot/snapshot.h"

#include <assert.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot_int.h"
#include "stormguard/redis/keyscan.h"

#define PROGRESS_EVERY_S 0.25

void sg_snap_progress_init(sg_snap_progress *p, sg_progress_fn fn, void *ud)
{
    *p = (sg_snap_progress){.fn = fn, .ud = ud, .started = sg_mono_s()};
    p->last = p->started;
}

void sg_snap_progress_tick(sg_snap_progress *p, int64_t done, bool final)
{
    if (!p->fn)
        return;
    double now = sg_mono_s();
    if (final || now - p->last >= PROGRESS_EVERY_S) {
        p->last = now;
        p->fn(p->ud, done, now - p->started);
    }
}

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

/* Stores one row of the build index (sg_igor_decode) into the snapshot. */
static int store_row(void *ud, const sg_igor_row *r, sg_error *err)
{
    sg_store *s = ud;
    switch (r->family) {
    case SG_KEY_JENKINS_CURSOR:
        return sg_store_index_cursor(s, r->source.p, r->source.len, r->job.p, r->job.len, r->number,
                                     err);
    case SG_KEY_JENKINS_POSTED:
        return sg_store_index_posted(s, r->source.p, r->source.len, r->job.p, r->job.len, r->number,
                                     err);
    case SG_KEY_CI_COMPLETED:
    case SG_KEY_CI_RUNNING:
        return sg_store_index_ci(s, r->source.p, r->source.len, r->job.p, r->job.len,
                                 r->family == SG_KEY_CI_RUNNING, r->number, err);
    default:
        assert(r->family == SG_KEY_DOCKER_TAG);
        return sg_store_index_docker(s, r->source.p, r->source.len, r->job.p, r->job.len, r->tag.p,
                                     r->tag.len, r->digest.p, r->digest.len, err);
    }
}

bool sg_snap_profile_key(const sg_snap *sn, const char *key, size_t len, sg_igor_key *out)
{
    return sn->o->profile == SG_PROFILE_IGOR && sg_igor_parse_key(sn->prefix, key, len, out) == 0;
}

int sg_snap_take_key(sg_snap *sn, const char *key, size_t klen, int64_t expire_at,
                     const char *payload, size_t len, const sg_igor_key *igor, sg_error *err)
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
    bool undecoded;
    if ((rc = sg_igor_decode(igor, payload, len, store_row, sn->s, &undecoded, err)))
        return rc;
    if (undecoded)
        sn->res->undecoded++;
    return 0;
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

static int send_page(sg_snap *sn, page *p, sg_error *err)
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
        p->mine[i] = sg_snap_profile_key(sn, p->keys.keys[i], p->keys.lens[i], &p->parsed[i]);
    return 0;
}

/* Reads the replies of page p's commands (stored later, by store_page). */
static int read_page(sg_snap *sn, page *p, sg_error *err)
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

/* Stores one key from its PTTL and DUMP replies. A remaining TTL counts
 * from when the page was sent, before Redis answered: the stored expiry is
 * never later than the key's own (earlier by at most the time the page
 * waited for its answers). */
static int store_key(sg_snap *sn, const char *key, size_t klen, const redisReply *ttl,
                     const redisReply *dump, int64_t sent_ms, const sg_igor_key *igor,
                     sg_error *err)
{
    if (!dump || dump->type != REDIS_REPLY_STRING) {
        sn->res->vanished++; /* deleted between SCAN and DUMP */
        return 0;
    }
    /* ttl NULL: the database had no key with an expiry (snapshot_db) */
    if (ttl && (ttl->type != REDIS_REPLY_INTEGER || ttl->integer == -2)) {
        sn->res->vanished++;
        return 0;
    }
    int64_t expire_at = ttl && ttl->integer >= 0 ? sent_ms + ttl->integer : 0;
    if (ttl && ttl->integer == 0)
        expire_at = sent_ms + 1;
    return sg_snap_take_key(sn, key, klen, expire_at, dump->str, dump->len, igor, err);
}

/* Stores the keys of page p from the replies read_page collected. */
static int store_page(sg_snap *sn, page *p, sg_error *err)
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

/* Pages whose commands are queued at the server at once: while we store
 * the oldest, Redis works on the others and never waits for us. */
#define PAGES_IN_FLIGHT 2

/* Snapshots the current database's keys. SCAN runs on its own connection
 * (scan) so the cursor chain can run ahead of the PTTL/DUMP pipeline on
 * sn->c. */
static int snapshot_keys(sg_snap *sn, sg_rconn *scan, const sg_strlist *patterns, sg_error *err)
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
        sg_snap_progress_tick(&sn->progress, sn->res->keys, false);
    }
    for (size_t i = 0; i < PAGES_IN_FLIGHT; i++)
        page_close(&flight[i]);
    sg_keyscan_close(&ks);
    return rc;
}

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
    out->expires = 0;
    for (const char *e = r->type == REDIS_REPLY_STRING ? strstr(r->str, "expires=") : NULL; e;
         e = strstr(e + 8, "expires="))
        out->expires += strtoll(e + 8, NULL, 10);
    freeReplyObject(r);
    char *expired = NULL;
    if ((rc = sg_rconn_info_field(c, "stats", "expired_keys", &expired, err)))
        return rc;
    out->expired = expired ? strtoll(expired, NULL, 10) : -1;
    free(expired);
    return 0;
}

static int snapshot_db(sg_snap *sn, sg_rconn *scan, const sg_strlist *patterns, sg_error *err)
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
        return SG_SNAP_AGAIN;
    }
    return rc;
}

int sg_snap_scan(sg_snap *sn, const sg_strlist *patterns, const int *dbs, int ndb, sg_error *err)
{
    sg_rconn *c = sn->c, scan = {0};
    int rc = sg_rconn_clone(c, &scan, err);
    for (int i = 0; i < ndb && rc == 0; i++) {
        if (dbs[i] != c->db && (rc = sg_rconn_select(c, dbs[i], err)))
            break;
        if (dbs[i] != scan.db && (rc = sg_rconn_select(&scan, dbs[i], err)))
            break;
        sn->db = dbs[i];
        rc = snapshot_db(sn, &scan, patterns, err);
    }
    sg_rconn_close(&scan);
    return rc;
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
    sg_snap sn = {.c = c, .s = s, .o = o, .res = &res, .prefix = o->prefix ? o->prefix : "igor"};
    sg_snap_progress_init(&sn.progress, o->progress, o->progress_ud);
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
    sg_snap_sync *sync = NULL;
    if (o->method == SG_SNAPSHOT_SYNC && (rc = sg_snap_sync_new(&sn, &sync, err)))
        goto done;
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
        if (sync)
            rc = sg_snap_sync_keys(&sn, sync, &patterns, dbs, ndb, err);
        else
            rc = sg_snap_scan(&sn, &patterns, dbs, ndb, err);
        if (rc == 0 && c->db != home)
            rc = sg_rconn_select(c, home, err);
        if (rc != SG_SNAP_AGAIN)
            break;
        /* a key with an expiry appeared while PTTL was not asked: again,
         * asking it for every key (sn.with_ttl is now set) */
        sg_store_snapshot_abort(s);
        res = (sg_snapshot_result){.profile_keys = profile_pattern ? 0 : -1};
        sg_snap_progress_init(&sn.progress, o->progress, o->progress_ud);
    }
    free(meta.selection);
    sg_snap_sync_free(sync);
    if (rc) {
        sg_store_snapshot_abort(s);
        goto done;
    }
    res.seconds = sg_mono_s() - sn.progress.started;
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
    sg_snap_progress_tick(&sn.progress, res.keys, true);
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
