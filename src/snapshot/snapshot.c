/* Snapshots (snapshot.h): the options, and what every snapshot goes
 * through whichever method reads its keys (scan.c, sync.c).
 *
 * The whole snapshot is one SQLite transaction: it commits complete or not at
 * all. Each key goes into it with its DUMP payload and, for a key of the
 * profile, its rows of the build index as the profile decodes them. Once the
 * keys are in, the profile keys are compared with the last good snapshot's
 * (suspect_below_pct) and the snapshot commits as complete or suspect. The
 * SCAN method may ask for one retry, from a new transaction, when it finds
 * that it should have asked every key's PTTL. */
#include "stormguard/snapshot/snapshot.h"
#include "stormguard/store/snapshots.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot_int.h"
#include "stormguard/base/clock.h"

#define PROGRESS_EVERY_S 0.25

void sg_snap_progress_init(sg_snap_progress *p, const sg_clock *clock, sg_progress_fn fn, void *ud)
{
    clock = clock ? clock : &sg_clock_real;
    *p = (sg_snap_progress){.clock = clock, .fn = fn, .ud = ud, .started = sg_clock_mono(clock)};
    p->last = p->started;
}

double sg_snap_progress_elapsed(const sg_snap_progress *p)
{
    return sg_clock_mono(p->clock) - p->started;
}

void sg_snap_progress_tick(sg_snap_progress *p, int64_t done, bool final)
{
    if (!p->fn)
        return;
    double now = sg_clock_mono(p->clock);
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

/* The SCAN method over every master of a Cluster at once, into the one
 * transaction; the slots must not move meanwhile, or a key could be missed
 * (scanned on its new node before it came, on its old one after it left)
 * or taken twice. */
/* The slot ranges layout gives address ("0-5460,6000-6100"); caller frees. */
static char *slots_of(const char *layout, const char *address)
{
    sg_buf b = {0};
    size_t alen = strlen(address);
    for (const char *line = layout; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *sp = memchr(line, ' ', len);
        if (sp && (size_t)(line + len - sp - 1) == alen && !memcmp(sp + 1, address, alen))
            sg_buf_printf(&b, "%s%.*s", b.len ? "," : "", (int)(sp - line), line);
        line += len + (end ? 1 : 0);
    }
    return b.p ? b.p : sg_xstrdup("");
}

static int scan_nodes(sg_snap *sn, sg_rconn *nodes, int n, const char *layout,
                      const sg_strlist *patterns, sg_error *err)
{
    sg_rconn *seed = sn->c;
    int64_t *keys = sg_xcalloc((size_t)n, sizeof *keys);
    int rc = sg_snap_scan_servers(sn, nodes, n, patterns, keys, err);
    char *after = NULL;
    if (rc == 0 && (rc = sg_rconn_cluster_layout(seed, &after, err)) == 0 && strcmp(layout, after))
        rc = sg_error_set(err, SG_EREDIS,
                          "the Cluster's slots moved during the snapshot (resharding or a "
                          "failover): it could miss keys or take some twice, so it is not kept; "
                          "take it again");
    /* which master each key came from: the one whose slots hold its slot */
    for (int i = 0; i < n && rc == 0; i++) {
        char *slots = slots_of(layout, nodes[i].address);
        rc = sg_store_snapshot_add_node(sn->s, i, nodes[i].address, slots, keys[i], err);
        free(slots);
    }
    free(after);
    free(keys);
    return rc;
}

int sg_snapshot_take(sg_rconn *c, sg_store *s, const sg_snapshot_opts *o, sg_snapshot_result *out,
                     sg_error *err)
{
    sg_rconn *nodes = NULL;
    int nnodes = 0;
    char *layout = NULL;
    sg_snapshot_result res = {0};
    sg_snap sn = {.c = c,
                  .s = s,
                  .o = o,
                  .clock = o->clock ? o->clock : &sg_clock_real,
                  .res = &res,
                  .prefix = o->prefix ? o->prefix : "igor"};
    sg_snap_progress_init(&sn.progress, sn.clock, o->progress, o->progress_ud);
    sg_strlist patterns = {0};
    sg_snapshot_patterns(o, &patterns);
    char *profile_pattern = counted_pattern(o, sn.prefix);
    sn.count_profile = profile_pattern != NULL;
    if (!profile_pattern)
        res.profile_keys = -1;
    int rc = 0;

    int home = c->db;
    int one_db[1] = {home};
    const int *dbs = o->dbs ? o->dbs : one_db;
    int ndb = o->dbs ? o->db_count : 1;
    sg_snap_sync *sync = NULL;
    if (!strcmp(c->mode, "cluster")) {
        /* a Cluster has database 0 only; each master's own SYNC would be
         * a cut of its own moment, not one of the whole */
        if (o->method == SG_SNAPSHOT_SYNC) {
            rc = sg_error_set(err, SG_EUSAGE,
                              "--method sync reads one server's RDB; on a Redis Cluster use "
                              "--method scan, which covers every master");
            goto done;
        }
        ndb = 1;
        dbs = one_db;
        if ((rc = sg_rconn_cluster_masters(c, &nodes, &nnodes, &layout, err)))
            goto done;
    }
    if (o->method == SG_SNAPSHOT_SYNC && (rc = sg_snap_sync_new(&sn, &sync, err)))
        goto done;
    sg_snapshot_info meta = {
        .taken_at_ms = sg_clock_ms(sn.clock),
        .reason = (char *)(o->reason ? o->reason : "manual"),
        .redis = c->redacted,
        .redis_version = c->version,
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
        else if (nodes)
            rc = scan_nodes(&sn, nodes, nnodes, layout, &patterns, err);
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
        sg_snap_progress_init(&sn.progress, sn.clock, o->progress, o->progress_ud);
    }
    free(meta.selection);
    sg_snap_sync_free(sync);
    if (rc) {
        sg_store_snapshot_abort(s);
        goto done;
    }
    res.seconds = sg_snap_progress_elapsed(&sn.progress);
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
    for (int i = 0; i < nnodes; i++)
        sg_rconn_close(&nodes[i]);
    free(nodes);
    free(layout);
    free(profile_pattern);
    sg_strlist_clear(&patterns);
    if (rc)
        sg_error_prefix(err, "snapshot of %s", c->redacted);
    return rc;
}
