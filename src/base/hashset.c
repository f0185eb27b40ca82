/* SipHash-2-4 and open-addressing hash tables (hashset.h). Deletion uses
 * backward-shift so no tombstones accumulate. */
#include "stormguard/base/hashset.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "stormguard/base/util.h"

static uint64_t sip_k0 = 0x736f6d6570736575ULL, sip_k1 = 0x646f72616e646f6dULL;

void sg_hash_seed_random(void)
{
    uint64_t k[2];
    if (getrandom(k, sizeof k, 0) != (ssize_t)sizeof k) {
        /* no entropy source: still differ per process and run */
        k[0] = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ULL;
        k[1] = (uint64_t)getpid() * 0xbf58476d1ce4e5b9ULL ^ (uint64_t)clock();
    }
    sip_k0 = k[0];
    sip_k1 = k[1];
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

uint64_t sg_hash(const void *data, size_t len)
{
    const unsigned char *in = data;
    uint64_t v0 = 0x736f6d6570736575ULL ^ sip_k0, v1 = 0x646f72616e646f6dULL ^ sip_k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ sip_k0, v3 = 0x7465646279746573ULL ^ sip_k1;
    uint64_t b = (uint64_t)len << 56, m;
    size_t i, whole = len - len % 8;
    for (i = 0; i < whole; i += 8) {
        memcpy(&m, in + i, 8); /* little-endian hosts; the hash is per process anyway */
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t j = 0; j < len % 8; j++)
        b |= (uint64_t)in[whole + j] << (8 * j);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    uint64_t h = v0 ^ v1 ^ v2 ^ v3;
    return h ? h : 1; /* 0 marks an empty slot */
}

static uint64_t hash_parts(const char *source, const char *job, const int64_t *number)
{
    size_t ls = strlen(source), lj = strlen(job), n = ls + lj + 2 + (number ? 8 : 0);
    unsigned char stack[512], *buf = n <= sizeof stack ? stack : sg_xmalloc(n);
    memcpy(buf, source, ls);
    buf[ls] = 0; /* names cannot hold NUL, so the separator is unambiguous */
    memcpy(buf + ls + 1, job, lj);
    buf[ls + 1 + lj] = 0;
    if (number)
        memcpy(buf + ls + lj + 2, number, 8);
    uint64_t h = sg_hash(buf, n);
    if (buf != stack)
        free(buf);
    return h;
}

uint64_t sg_hash_job(const char *source, const char *job)
{
    return hash_parts(source, job, NULL);
}

uint64_t sg_hash_build(const char *source, const char *job, int64_t number)
{
    return hash_parts(source, job, &number);
}

uint64_t sg_hash_docker_tag(const char *account, const char *repository, const char *tag)
{
    size_t la = strlen(account), lr = strlen(repository), lt = strlen(tag), n = la + lr + lt + 2;
    unsigned char stack[512], *buf = n <= sizeof stack ? stack : sg_xmalloc(n);
    memcpy(buf, account, la);
    buf[la] = 0; /* names cannot hold NUL */
    memcpy(buf + la + 1, repository, lr);
    buf[la + 1 + lr] = 0;
    memcpy(buf + la + lr + 2, tag, lt);
    uint64_t h = sg_hash(buf, n);
    if (buf != stack)
        free(buf);
    return h;
}

/* ---- set ---- */

static size_t slot_of(uint64_t h, size_t cap)
{
    return (size_t)(h * 0x9e3779b97f4a7c15ULL >> 17) & (cap - 1);
}

static void set_grow(sg_u64set *s)
{
    sg_u64set bigger = {.cap = s->cap ? s->cap * 2 : 64};
    bigger.slots = sg_xcalloc(bigger.cap, sizeof *bigger.slots);
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i])
            sg_u64set_add(&bigger, s->slots[i]);
    free(s->slots);
    *s = bigger;
}

bool sg_u64set_add(sg_u64set *s, uint64_t h)
{
    if ((s->len + 1) * 4 > s->cap * 3)
        set_grow(s);
    size_t i = slot_of(h, s->cap);
    for (; s->slots[i]; i = (i + 1) & (s->cap - 1))
        if (s->slots[i] == h)
            return false;
    s->slots[i] = h;
    s->len++;
    return true;
}

bool sg_u64set_has(const sg_u64set *s, uint64_t h)
{
    if (!s->cap)
        return false;
    for (size_t i = slot_of(h, s->cap); s->slots[i]; i = (i + 1) & (s->cap - 1))
        if (s->slots[i] == h)
            return true;
    return false;
}

bool sg_u64set_remove(sg_u64set *s, uint64_t h)
{
    if (!s->cap)
        return false;
    size_t i = slot_of(h, s->cap), mask = s->cap - 1;
    for (; s->slots[i] != h; i = (i + 1) & mask)
        if (!s->slots[i])
            return false;
    /* backward-shift: pull later members of the probe run into the hole */
    for (size_t j = (i + 1) & mask; s->slots[j]; j = (j + 1) & mask) {
        size_t home = slot_of(s->slots[j], s->cap);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            s->slots[i] = s->slots[j];
            i = j;
        }
    }
    s->slots[i] = 0;
    s->len--;
    return true;
}

void sg_u64set_clear(sg_u64set *s)
{
    free(s->slots);
    memset(s, 0, sizeof *s);
}

/* ---- map ---- */

void sg_u64map_init(sg_u64map *m, size_t val_size)
{
    memset(m, 0, sizeof *m);
    m->val_size = val_size;
}

static void map_grow(sg_u64map *m)
{
    sg_u64map bigger;
    sg_u64map_init(&bigger, m->val_size);
    bigger.cap = m->cap ? m->cap * 2 : 64;
    bigger.keys = sg_xcalloc(bigger.cap, sizeof *bigger.keys);
    bigger.vals = sg_xcalloc(bigger.cap, m->val_size);
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i])
            continue;
        bool created;
        memcpy(sg_u64map_put(&bigger, m->keys[i], &created), m->vals + i * m->val_size,
               m->val_size);
    }
    free(m->keys);
    free(m->vals);
    *m = bigger;
}

void *sg_u64map_put(sg_u64map *m, uint64_t h, bool *created)
{
    if ((m->len + 1) * 4 > m->cap * 3)
        map_grow(m);
    size_t i = slot_of(h, m->cap);
    for (; m->keys[i]; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == h) {
            *created = false;
            return m->vals + i * m->val_size;
        }
    }
    m->keys[i] = h;
    m->len++;
    *created = true;
    return m->vals + i * m->val_size;
}

void *sg_u64map_get(const sg_u64map *m, uint64_t h)
{
    if (!m->cap)
        return NULL;
    for (size_t i = slot_of(h, m->cap); m->keys[i]; i = (i + 1) & (m->cap - 1))
        if (m->keys[i] == h)
            return m->vals + i * m->val_size;
    return NULL;
}

bool sg_u64map_remove(sg_u64map *m, uint64_t h)
{
    if (!m->cap)
        return false;
    size_t i = slot_of(h, m->cap), mask = m->cap - 1;
    for (; m->keys[i] != h; i = (i + 1) & mask)
        if (!m->keys[i])
            return false;
    /* backward-shift, as in sg_u64set_remove, moving the values along */
    for (size_t j = (i + 1) & mask; m->keys[j]; j = (j + 1) & mask) {
        size_t home = slot_of(m->keys[j], m->cap);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->keys[i] = m->keys[j];
            memcpy(m->vals + i * m->val_size, m->vals + j * m->val_size, m->val_size);
            i = j;
        }
    }
    m->keys[i] = 0;
    memset(m->vals + i * m->val_size, 0, m->val_size);
    m->len--;
    return true;
}

void sg_u64map_reset(sg_u64map *m)
{
    if (m->cap) {
        memset(m->keys, 0, m->cap * sizeof *m->keys);
        memset(m->vals, 0, m->cap * m->val_size);
    }
    m->len = 0;
}

void sg_u64map_clear(sg_u64map *m)
{
    free(m->keys);
    free(m->vals);
    size_t vs = m->val_size;
    sg_u64map_init(m, vs);
}
