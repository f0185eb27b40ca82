/* Tallies keys by namespace, the text before the first ':' (runbooks name
 * what is safe to flush by namespace: DOMAIN.md section 6). Used by inspect
 * and by the flush plan. */
#ifndef STORMGUARD_NAMESPACE_H
#define STORMGUARD_NAMESPACE_H

#include <stddef.h>
#include <stdint.h>

typedef struct sg_ns_stats {
    char *ns; /* "" for keys without ':' */
    int64_t keys;
    int64_t with_ttl;
    int64_t sampled; /* keys whose MEMORY USAGE was read */
    int64_t sampled_bytes;
    int64_t protected_keys; /* keys a flush must not delete */
} sg_ns_stats;

/* Past this many namespaces, further ones are tallied under "(other)" so a
 * keyspace of unstructured names cannot grow the table without bound. */
#define SG_NS_MAX 10000

typedef struct sg_nstally sg_nstally;

sg_nstally *sg_nstally_new(void);
void sg_nstally_free(sg_nstally *t);

/* The entry for key's namespace, created on first use; valid until the
 * tally is taken or freed. */
sg_ns_stats *sg_nstally_get(sg_nstally *t, const char *key, size_t len);

/* Moves the entries out, sorted by key count descending then name; the
 * tally is left empty. Free the array with sg_ns_stats_free. */
void sg_nstally_take(sg_nstally *t, sg_ns_stats **out, size_t *count);
void sg_ns_stats_free(sg_ns_stats *arr, size_t count);

#endif
