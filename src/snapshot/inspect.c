/* Keyspace inspection (inspect.h): one SCAN walk; per page, pipelined PTTL
 * for every key and MEMORY USAGE for the first `samples` keys of each
 * namespace. SCAN's order is the hash table's, so the first keys seen of a
 * namespace are a fair sample of it. */
#include "stormguard/snapshot/inspect.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/redis/keyscan.h"
#include "stormguard/redis/reply.h"
#include "stormguard/base/clock.h"
#include "stormguard/base/util.h"

static int64_t info_int(sg_rconn *c, const char *field, sg_error *err, int *rc)
{
    char *v = NULL;
    *rc = sg_rconn_info_field(c, "memory", field, &v, err);
    int64_t n = v ? strtoll(v, NULL, 10) : 0;
    free(v);
    return n;
}

static int inspect_page(sg_rconn *c, sg_nstally *t, const sg_keypage *page, int64_t samples,
                        sg_error *err)
{
    int rc = 0;
    bool *sampled = sg_xcalloc(page->n, sizeof *sampled);
    for (size_t i = 0; i < page->n && rc == 0; i++) {
        sg_ns_stats *ns = sg_nstally_get(t, page->keys[i], page->lens[i]);
        ns->keys++;
        const char *argv[] = {"PTTL", page->keys[i]};
        size_t lens[] = {4, page->lens[i]};
        rc = sg_rconn_append(c, err, 2, argv, lens);
        if (rc == 0 && ns->sampled < samples) {
            const char *mem[] = {"MEMORY", "USAGE", page->keys[i]};
            size_t mlens[] = {6, 5, page->lens[i]};
            ns->sampled++; /* counted now, bytes added when the reply comes */
            sampled[i] = true;
            rc = sg_rconn_append(c, err, 3, mem, mlens);
        }
    }
    for (size_t i = 0; i < page->n && rc == 0; i++) {
        sg_ns_stats *ns = sg_nstally_get(t, page->keys[i], page->lens[i]);
        redisReply *r = NULL;
        if ((rc = sg_rconn_read(c, &r, err)))
            break;
        if (r->type == REDIS_REPLY_INTEGER && r->integer >= 0)
            ns->with_ttl++;
        else if (r->type == REDIS_REPLY_ERROR)
            rc = sg_rconn_reply_error(c, "PTTL", r, err);
        freeReplyObject(r);
        if (rc || !sampled[i])
            continue;
        if ((rc = sg_rconn_read(c, &r, err)))
            break;
        int64_t bytes;
        if (sg_reply_count(r, INT64_MAX, &bytes) == 0)
            ns->sampled_bytes =
                bytes > INT64_MAX - ns->sampled_bytes ? INT64_MAX : ns->sampled_bytes + bytes;
        else if (r->type == REDIS_REPLY_ERROR)
            rc = sg_rconn_reply_error(c, "MEMORY USAGE", r, err);
        else
            ns->sampled--; /* vanished since SCAN (nil) */
        freeReplyObject(r);
    }
    free(sampled);
    return rc;
}

/* Adds one server's memory figures and keys to out and t. */
static int inspect_node(sg_rconn *c, sg_nstally *t, int64_t scan_count, int64_t samples,
                        sg_inspect_result *out, sg_error *err)
{
    int rc;
    int64_t used = info_int(c, "used_memory", err, &rc);
    int64_t max = rc == 0 ? info_int(c, "maxmemory", err, &rc) : 0;
    if (rc)
        return rc;
    out->used_memory += used;
    /* 0 is no limit: one unlimited master makes the whole unlimited (a
     * negative sum marks that until the walk ends) */
    out->maxmemory = max == 0 || out->maxmemory < 0 ? -1 : out->maxmemory + max;
    sg_keyscan ks;
    sg_keyscan_init(&ks, c, NULL, scan_count);
    while ((rc = sg_keyscan_request(&ks, err)) == 0) {
        sg_keypage page;
        if ((rc = sg_keyscan_receive(&ks, &page, err)))
            break;
        out->keys += (int64_t)page.n;
        rc = inspect_page(c, t, &page, samples, err);
        sg_keypage_close(&page);
        if (rc)
            break;
    }
    sg_keyscan_close(&ks);
    return rc < 0 ? rc : 0;
}

/* Every master of c's Cluster in turn; the layout must not change meanwhile. */
static int inspect_cluster(sg_rconn *c, sg_nstally *t, int64_t scan_count, int64_t samples,
                           sg_inspect_result *out, sg_error *err)
{
    sg_rconn *nodes = NULL;
    int n = 0;
    char *before = NULL, *after = NULL;
    int rc = sg_rconn_cluster_masters(c, &nodes, &n, &before, err);
    if (rc)
        return rc;
    out->nodes = n;
    for (int i = 0; i < n && rc == 0; i++)
        rc = inspect_node(&nodes[i], t, scan_count, samples, out, err);
    if (rc == 0 && (rc = sg_rconn_cluster_layout(c, &after, err)) == 0 && strcmp(before, after))
        rc = sg_error_set(err, SG_EREDIS,
                          "the Cluster's slots moved while it was walked (resharding or a "
                          "failover): the counts would be off; run it again");
    for (int i = 0; i < n; i++)
        sg_rconn_close(&nodes[i]);
    free(nodes);
    free(before);
    free(after);
    return rc;
}

int sg_inspect_run(sg_rconn *c, int64_t scan_count, int64_t samples, sg_inspect_result *out,
                   sg_error *err)
{
    memset(out, 0, sizeof *out);
    double started = sg_mono_s();
    int rc;
    out->redis_version = sg_xstrdup(c->version);
    if ((rc = sg_rconn_info_field(c, "memory", "maxmemory_policy", &out->maxmemory_policy, err)))
        return rc;
    out->db = c->db;
    out->nodes = 1;
    sg_nstally *t = sg_nstally_new();
    if (!strcmp(c->mode, "cluster"))
        rc = inspect_cluster(c, t, scan_count, samples, out, err);
    else
        rc = inspect_node(c, t, scan_count, samples, out, err);
    if (out->maxmemory < 0)
        out->maxmemory = 0;
    sg_nstally_take(t, &out->namespaces, &out->namespace_count);
    sg_nstally_free(t);
    out->seconds = sg_mono_s() - started;
    if (rc < 0) {
        sg_error_prefix(err, "inspecting %s", c->redacted);
        return rc;
    }
    return 0;
}

void sg_inspect_result_close(sg_inspect_result *r)
{
    free(r->redis_version);
    free(r->maxmemory_policy);
    sg_ns_stats_free(r->namespaces, r->namespace_count);
    memset(r, 0, sizeof *r);
}
