/* A read-only look at a Redis keyspace: keys per namespace, sampled memory,
 * share with a TTL, and the server facts that decide whether a flush or an
 * eviction is coming (version, memory, eviction policy). SCAN only. */
#ifndef STORMGUARD_INSPECT_H
#define STORMGUARD_INSPECT_H

#include <stdint.h>

#include "stormguard/base/error.h"
#include "stormguard/snapshot/namespace.h"
#include "stormguard/redis/rconn.h"

typedef struct sg_inspect_result {
    char *redis_version;
    int64_t used_memory, maxmemory;
    char *maxmemory_policy;
    int db;
    int nodes; /* masters walked: 1, or each master of a Redis Cluster */
    int64_t keys;
    sg_ns_stats *namespaces; /* sorted by key count, descending */
    size_t namespace_count;
    double seconds;
} sg_inspect_result;

/* Walks the connection's database; on a Redis Cluster node, every master of
 * the Cluster, its memory figures summed, and fails if slots moved during
 * the walk. samples: keys per namespace (per master) whose memory is
 * measured. */
int sg_inspect_run(sg_rconn *c, int64_t scan_count, int64_t samples, sg_inspect_result *out,
                   sg_error *err);
void sg_inspect_result_close(sg_inspect_result *r);

#endif
