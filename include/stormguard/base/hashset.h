/* Keyed 64-bit hashes and open-addressing tables of them: the gate's
 * in-memory build index and ledger hold the SipHash of (source, job[,
 * number]) rather than the strings, so a 100,000-job index costs a few MB.
 * The key is random per process, so nobody outside can craft colliding
 * names; at 64 bits an accidental collision among millions of builds has a
 * probability of about 1e-7 (n^2 / 2^65). */
#ifndef STORMGUARD_HASHSET_H
#define STORMGUARD_HASHSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Seeds the process-wide SipHash key from the system's random source. */
void sg_hash_seed_random(void);

/* SipHash-2-4 of data with the process key. Never returns 0. */
uint64_t sg_hash(const void *data, size_t len);

/* The hash of a job (source, job) or a build (source, job, number). */
uint64_t sg_hash_job(const char *source, const char *job);
uint64_t sg_hash_build(const char *source, const char *job, int64_t number);
/* A Docker tag of Igor's index: (account, repository, tag). */
uint64_t sg_hash_docker_tag(const char *account, const char *repository, const char *tag);

/* A set of hashes. */
typedef struct sg_u64set {
    uint64_t *slots;
    size_t cap, len; /* cap is a power of two, or 0 */
} sg_u64set;

/* Adds h; true if it was not there. */
bool sg_u64set_add(sg_u64set *s, uint64_t h);
bool sg_u64set_has(const sg_u64set *s, uint64_t h);
/* Removes h; true if it was there. */
bool sg_u64set_remove(sg_u64set *s, uint64_t h);
void sg_u64set_clear(sg_u64set *s);

/* A map from hashes to fixed-size values (val_size bytes each). */
typedef struct sg_u64map {
    uint64_t *keys;
    unsigned char *vals;
    size_t cap, len, val_size;
} sg_u64map;

void sg_u64map_init(sg_u64map *m, size_t val_size);
/* The value slot of h, inserted zeroed if absent (*created says which). The
 * pointer is valid until the next insertion. */
void *sg_u64map_put(sg_u64map *m, uint64_t h, bool *created);
void *sg_u64map_get(const sg_u64map *m, uint64_t h);
/* Removes h; true if it was there. Value pointers from before are stale. */
bool sg_u64map_remove(sg_u64map *m, uint64_t h);
void sg_u64map_clear(sg_u64map *m);
/* Empties m and keeps its memory. */
void sg_u64map_reset(sg_u64map *m);

#endif
