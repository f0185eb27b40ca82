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

int sg_inspect_run(sg_rconn *c, int64_t scan_count, int64_t samples, sg_inspect_result *out,
                   sg_error *err)
{
    memset(out, 0, sizeof *out);
    double started = sg_mono_s();
    int rc;
    if ((rc = sg_rconn_info_field(c, "server", "redis_version", &out->redis_version, err)))
        return rc;
    out->used_memory = info_int(c, "used_memory", err, &rc);
    if (rc == 0)
        out->maxmemory = info_int(c, "maxmemory", err, &rc);
    if (rc == 0)
        rc = sg_rconn_info_field(c, "memory", "maxmemory_policy", &out->maxmemory_policy, err);
    if (rc)
        return rc;
    out->db = c->db;

    sg_nstally *t = sg_nstally_new();
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
