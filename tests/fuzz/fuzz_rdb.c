/* libFuzzer target: the RDB stream parser (rdb.h) on arbitrary bytes, read
 * the way the SYNC reader reads its socket: in one piece, and in chunks of
 * the sizes a socket may return (the input chooses them, from 1 byte to the
 * parser's whole buffer), with and without a want callback and a diskless
 * end mark. Every reading must give the same result, error and keys (those
 * wanted); every key's payload must be a DUMP payload (the stream's RDB
 * version, a CRC64 of the rest) that the payload readers take without harm.
 * The input itself goes through them too, as the DUMP reply of a key.
 * Built and run by tests/fuzz/run.sh rdb. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/snapshot/rdb.h"
#include "stormguard/snapshot/snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MARK_LEN 40 /* "$EOF:<40 bytes>": the end mark of a diskless SYNC */

typedef struct source {
    const uint8_t *p;
    size_t len, at;
    uint64_t seed; /* 0: all at once */
} source;

/* The next chunk size: mostly small, so refills land inside every field. */
static size_t chunk(source *s)
{
    s->seed ^= s->seed << 13;
    s->seed ^= s->seed >> 7;
    s->seed ^= s->seed << 17;
    switch (s->seed % 4) {
    case 0:
        return 1;
    case 1:
        return 1 + (s->seed >> 8) % 16;
    case 2:
        return 1 + (s->seed >> 8) % 1024;
    default:
        return 1 + (s->seed >> 8) % (300 * 1024); /* beyond the parser's buffer */
    }
}

static int read_source(void *ud, void *buf, size_t cap, size_t *got, sg_error *err)
{
    source *s = ud;
    size_t n = s->len - s->at;
    if (n > cap)
        n = cap;
    if (s->seed) {
        size_t c = chunk(s);
        n = n < c ? n : c;
    }
    memcpy(buf, s->p + s->at, n);
    s->at += n;
    *got = n;
    return 0;
}

typedef struct key {
    int db;
    int64_t expire_at_ms;
    char *key, *payload;
    size_t key_len, payload_len;
} key;

typedef struct run {
    bool filter; /* want only some keys */
    int version;
    key *keys;
    size_t n;
} run;

/* Which keys a filtering run wants: a function of the key alone. */
static bool wanted(void *ud, int db, const char *k, size_t len)
{
    return ((sg_crc64(0, k, len) + (uint64_t)db) & 3) != 0;
}

static int count_pair(void *ud, sg_slice field, sg_slice value)
{
    (*(size_t *)ud)++;
    return 0;
}

/* What the snapshot (snapshot.c, sync.c) reads out of a key's payload. */
static void read_payload(const void *payload, size_t len)
{
    const unsigned char *p = payload;
    const char *type = sg_payload_type(payload, len);
    sg_buf s = {0};
    if (sg_rdb_string(payload, len, &s) == 0 && strcmp(type, "string"))
        abort(); /* a string read from a payload that is no string */
    sg_buf_free(&s);
    size_t pairs = 0;
    if (sg_rdb_hash_each(payload, len, count_pair, &pairs) == 0 && strcmp(type, "hash"))
        abort();
    if (len && p[0] == 0 && len >= 11 && strcmp(type, "string"))
        abort();
}

static int on_key(void *ud, const sg_rdb_key *k, sg_error *err)
{
    run *r = ud;
    const unsigned char *p = (const unsigned char *)k->payload;
    size_t len = k->payload_len;
    if (len < 1 + 1 + 10 || k->db < 0)
        abort();
    /* the trailer DUMP has: RDB version (2 bytes), CRC64 of the rest (8), little endian */
    uint64_t crc = 0;
    for (int i = 0; i < 8; i++)
        crc |= (uint64_t)p[len - 8 + i] << (8 * i);
    if (crc != sg_crc64(0, p, len - 8))
        abort();
    read_payload(p, len);
    r->keys = sg_xrealloc(r->keys, (r->n + 1) * sizeof *r->keys);
    key *c = &r->keys[r->n++];
    c->db = k->db;
    c->expire_at_ms = k->expire_at_ms;
    c->key = sg_xmalloc(k->key_len + 1);
    memcpy(c->key, k->key, k->key_len + 1); /* NUL-terminated, as rdb.h hands it */
    c->key_len = k->key_len;
    c->payload = sg_xmalloc(len);
    memcpy(c->payload, p, len);
    c->payload_len = len;
    return 0;
}

static int parse(const uint8_t *data, size_t size, uint64_t seed, const void *mark, run *r,
                 sg_error *err)
{
    source s = {.p = data, .len = size, .seed = seed};
    r->version = -1;
    int rc = sg_rdb_parse(read_source, &s, mark, mark ? MARK_LEN : 0, r->filter ? wanted : NULL,
                          on_key, r, &r->version, err);
    for (size_t i = 0; rc == 0 && i < r->n; i++) {
        const unsigned char *t = (const unsigned char *)r->keys[i].payload;
        size_t len = r->keys[i].payload_len;
        if ((t[len - 10] | t[len - 9] << 8) != (r->version & 0xffff))
            abort(); /* the stream's version, as DUMP writes it */
    }
    return rc;
}

static void run_free(run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->keys[i].key);
        free(r->keys[i].payload);
    }
    free(r->keys);
}

static bool same_key(const key *a, const key *b)
{
    return a->db == b->db && a->expire_at_ms == b->expire_at_ms && a->key_len == b->key_len &&
           !memcmp(a->key, b->key, a->key_len) && a->payload_len == b->payload_len &&
           !memcmp(a->payload, b->payload, a->payload_len);
}

/* b (filtering or not) holds exactly the keys of a it wants, in order. */
static void same_keys(const run *a, const run *b)
{
    size_t j = 0;
    for (size_t i = 0; i < a->n; i++) {
        if (b->filter && !wanted(NULL, a->keys[i].db, a->keys[i].key, a->keys[i].key_len))
            continue;
        if (j == b->n || !same_key(&a->keys[i], &b->keys[j]))
            abort();
        j++;
    }
    if (j != b->n)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the input as a payload of its own, as DUMP may return it */
    read_payload(data, size);

    uint64_t seed = sg_crc64(0, data, size) | 1;
    run whole = {0}, chunked = {.filter = true}, marked = {0};
    sg_error e1 = {0}, e2 = {0}, e3 = {0};
    int r1 = parse(data, size, 0, NULL, &whole, &e1);
    int r2 = parse(data, size, seed, NULL, &chunked, &e2);
    if (r1 != r2 || strcmp(e1.msg, e2.msg) || whole.version != chunked.version) {
        fprintf(stderr, "chunked reading differs: %d %s / %d %s\n", r1, e1.msg, r2, e2.msg);
        abort();
    }
    same_keys(&whole, &chunked);
    /* With the input's last 40 bytes as the end mark: where that reading
     * succeeds, the RDB ends right before them, and it has the same keys. */
    if (size > MARK_LEN) {
        int r3 = parse(data, size, seed * 31, data + size - MARK_LEN, &marked, &e3);
        if (r3 == 0 && (r1 != 0 || marked.n != whole.n))
            abort();
        if (r3 == 0)
            same_keys(&whole, &marked);
    }
    run_free(&whole);
    run_free(&chunked);
    run_free(&marked);
    return 0;
}
