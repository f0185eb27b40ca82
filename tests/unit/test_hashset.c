/* Tests hashset.h: the keyed SipHash and its job/build hashes, the u64 set
 * (open addressing with backward-shift deletion, probed with keys crafted to
 * share a home slot) and the u64 map (put/get, zeroed values, growth). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/base/hashset.h"

/* ---- helpers ---- */

/* splitmix64: a bijection of its counter, so distinct counters give distinct
 * keys; fixed seeds keep failures reproducible. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void shuffle(uint64_t *a, size_t n, uint64_t *rng)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(splitmix64(rng) % i);
        uint64_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* hashset.c places h at home slot ((h * GOLDEN) >> 17) & (cap - 1). GOLDEN is
 * odd, so multiplying by its inverse mod 2^64 crafts a key with any chosen
 * product: key_at(slot, v) has home slot `slot` for every capacity up to
 * 2^24, and keys differing only in v differ only in high bits. */
#define GOLDEN 0x9e3779b97f4a7c15ULL

static uint64_t golden_inverse(void)
{
    uint64_t x = GOLDEN; /* correct to 3 bits; Newton doubles that each step */
    for (int i = 0; i < 6; i++)
        x *= 2 - GOLDEN * x;
    return x;
}

static uint64_t key_at(size_t slot, uint64_t variant)
{
    assert_true(slot < ((size_t)1 << 24) && variant < ((uint64_t)1 << 23));
    uint64_t product = ((uint64_t)slot << 17) | (variant << 41) | 1;
    return product * golden_inverse();
}

/* The home slot as hashset.c computes it (only used to check that the
 * crafted keys really collide, so the test exercises what it claims). */
static size_t home_of(uint64_t h, size_t cap)
{
    return (size_t)(h * GOLDEN >> 17) & (cap - 1);
}

/* ---- sg_hash ---- */

static void hash_never_zero_and_deterministic(void **state)
{
    (void)state;
    unsigned char buf[128];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 37 + 11);
    uint64_t seen[129];
    /* every length, so each tail size (len % 8) and the empty input are covered */
    for (size_t len = 0; len <= sizeof buf; len++) {
        uint64_t h = sg_hash(buf, len);
        assert_true(h != 0);
        assert_true(h == sg_hash(buf, len));
        for (size_t k = 0; k < len; k++)
            if (seen[k] == h)
                fail_msg("sg_hash of %zu and %zu bytes of the same buffer collide", k, len);
        seen[len] = h;
    }
    assert_true(sg_hash("", 0) == sg_hash(buf, 0));
    /* the length is hashed: trailing NULs matter */
    assert_true(sg_hash("a", 1) != sg_hash("a\0", 2));
    assert_true(sg_hash("\0", 1) != sg_hash("", 0));
    /* each byte matters, including the last of a partial block */
    for (size_t len = 1; len <= 24; len++) {
        for (size_t pos = 0; pos < len; pos++) {
            unsigned char copy[24];
            memcpy(copy, buf, len);
            copy[pos] ^= 0x01;
            if (sg_hash(copy, len) == sg_hash(buf, len))
                fail_msg("flipping byte %zu of %zu does not change sg_hash", pos, len);
        }
    }
}

static void hash_many_inputs_never_zero(void **state)
{
    (void)state;
    uint64_t rng = 42;
    for (int i = 0; i < 200000; i++) {
        uint64_t v = splitmix64(&rng);
        assert_true(sg_hash(&v, sizeof v) != 0);
    }
}

static void hash_job_separates_parts(void **state)
{
    (void)state;
    uint64_t a_bc = sg_hash_job("a", "bc"), ab_c = sg_hash_job("ab", "c");
    assert_true(a_bc != 0 && ab_c != 0);
    assert_true(a_bc != ab_c);
    assert_true(sg_hash_job("", "abc") != sg_hash_job("abc", ""));
    assert_true(sg_hash_job("m", "job") != sg_hash_job("job", "m"));
    assert_true(sg_hash_job("m", "job") == sg_hash_job("m", "job"));
    assert_true(sg_hash_job("m", "job") != sg_hash_job("m", "Job"));
    /* builds too: the number cannot be confused with the job name */
    assert_true(sg_hash_build("a", "bc", 1) != sg_hash_build("ab", "c", 1));
    assert_true(sg_hash_build("m", "job", 7) == sg_hash_build("m", "job", 7));
    assert_true(sg_hash_build("m", "job", 7) != sg_hash_job("m", "job"));
    assert_true(sg_hash_build("m", "job", 7) != sg_hash_build("m", "job2", 7));
    assert_true(sg_hash_build("m", "job", 7) != sg_hash_build("m2", "job", 7));
}

static void hash_build_numbers_differ(void **state)
{
    (void)state;
    enum { N = 20000 };
    sg_u64set s = {0};
    for (int64_t n = 1; n <= N; n++) {
        uint64_t h = sg_hash_build("jenkins-prod", "team-a/service-17", n);
        assert_true(h != 0);
        if (!sg_u64set_add(&s, h))
            fail_msg("sg_hash_build of build %lld repeats an earlier build's", (long long)n);
    }
    /* high bits of the number count too */
    assert_true(
        sg_u64set_add(&s, sg_hash_build("jenkins-prod", "team-a/service-17", INT64_C(1) << 53)));
    assert_true(sg_u64set_add(
        &s, sg_hash_build("jenkins-prod", "team-a/service-17", (INT64_C(1) << 40) + 1)));
    assert_int_equal(s.len, N + 2);
    sg_u64set_clear(&s);
}

static void hash_long_names(void **state)
{
    (void)state;
    /* names longer than any stack buffer the implementation may use */
    size_t n = 5000;
    char *a = malloc(n + 1), *b = malloc(n + 1);
    assert_non_null(a);
    assert_non_null(b);
    memset(a, 'x', n);
    a[n] = 0;
    memcpy(b, a, n + 1);
    assert_true(sg_hash_job(a, b) == sg_hash_job(a, b));
    assert_true(sg_hash_build(a, b, 3) == sg_hash_build(a, b, 3));
    assert_true(sg_hash_build(a, b, 3) != sg_hash_build(a, b, 4));
    b[n - 1] = 'y';
    assert_true(sg_hash_job(a, a) != sg_hash_job(a, b));
    assert_true(sg_hash_job(a, b) != sg_hash_job(b, a));
    free(a);
    free(b);
}

static void hash_seed_changes_key(void **state)
{
    (void)state;
    uint64_t before = sg_hash("stormguard", 10), job = sg_hash_job("m", "job");
    sg_hash_seed_random();
    uint64_t after = sg_hash("stormguard", 10);
    /* a fresh 128-bit key gives a different hash (fails with probability 2^-64) */
    assert_true(before != after);
    assert_true(sg_hash_job("m", "job") != job);
    assert_true(after == sg_hash("stormguard", 10));
    assert_true(after != 0);
    uint64_t seeded = after;
    sg_hash_seed_random();
    assert_true(sg_hash("stormguard", 10) != seeded);
}

/* ---- sg_u64set ---- */

static void set_basics(void **state)
{
    (void)state;
    sg_u64set s = {0};
    assert_false(sg_u64set_has(&s, 1));
    assert_false(sg_u64set_remove(&s, 1));
    assert_int_equal(s.len, 0);
    assert_true(sg_u64set_add(&s, 1));
    assert_false(sg_u64set_add(&s, 1));
    assert_int_equal(s.len, 1);
    assert_true(sg_u64set_has(&s, 1));
    assert_false(sg_u64set_has(&s, 2));
    assert_true(sg_u64set_add(&s, UINT64_MAX));
    assert_true(sg_u64set_has(&s, UINT64_MAX));
    assert_int_equal(s.len, 2);
    assert_false(sg_u64set_remove(&s, 2));
    assert_int_equal(s.len, 2);
    assert_true(sg_u64set_remove(&s, 1));
    assert_false(sg_u64set_remove(&s, 1));
    assert_int_equal(s.len, 1);
    assert_false(sg_u64set_has(&s, 1));
    assert_true(sg_u64set_has(&s, UINT64_MAX));
    assert_true(sg_u64set_add(&s, 1)); /* re-adding a removed key */
    assert_int_equal(s.len, 2);
    assert_true(s.cap > 0 && (s.cap & (s.cap - 1)) == 0);
    sg_u64set_clear(&s);
    assert_int_equal(s.len, 0);
    assert_int_equal(s.cap, 0);
    assert_null(s.slots);
    assert_false(sg_u64set_has(&s, 1));
    assert_false(sg_u64set_has(&s, UINT64_MAX));
    assert_false(sg_u64set_remove(&s, 1));
    /* usable after clear */
    assert_true(sg_u64set_add(&s, 5));
    assert_true(sg_u64set_has(&s, 5));
    assert_int_equal(s.len, 1);
    sg_u64set_clear(&s);
    sg_u64set_clear(&s);
}

static void crafted_keys_collide(void **state)
{
    (void)state;
    uint64_t inv = golden_inverse();
    assert_true(inv * GOLDEN == 1);
    for (size_t cap = 64; cap <= ((size_t)1 << 20); cap <<= 1) {
        for (uint64_t v = 0; v < 50; v++) {
            assert_int_equal(home_of(key_at(5, v), cap), 5);
            assert_int_equal(home_of(key_at(cap - 1, v), cap), cap - 1);
        }
    }
    assert_true(key_at(0, 0) != 0);
}

/* Checks membership of all n keys: present[i] says whether keys[i] should be. */
static void check_all(const sg_u64set *s, const uint64_t *keys, const bool *present, size_t n,
                      const char *when)
{
    size_t want = 0;
    for (size_t i = 0; i < n; i++) {
        if (sg_u64set_has(s, keys[i]) != present[i])
            fail_msg("%s: has(key %zu = %#llx) = %d, want %d", when, i, (unsigned long long)keys[i],
                     !present[i], present[i]);
        want += present[i];
    }
    if (s->len != want)
        fail_msg("%s: len %zu, want %zu", when, s->len, want);
}

/* A small table (cap 64) where the effect of each backward shift is known:
 * A, B, C share home 10 (slots 10-12); D has home 11 (slot 13); E has home
 * 15 and sits alone; F, G share home 63 and wrap to 0; H has home 0 (slot 1). */
static void set_backward_shift_small(void **state)
{
    (void)state;
    uint64_t a = key_at(10, 1), b = key_at(10, 2), c = key_at(10, 3), d = key_at(11, 1);
    uint64_t e = key_at(15, 1), f = key_at(63, 1), g = key_at(63, 2), h = key_at(0, 1);
    uint64_t keys[] = {a, b, c, d, e, f, g, h};
    bool present[8];
    size_t n = 8;

    /* each key removed first, with the others checked afterwards */
    for (size_t first = 0; first < n; first++) {
        sg_u64set s = {0};
        for (size_t i = 0; i < n; i++) {
            assert_true(sg_u64set_add(&s, keys[i]));
            present[i] = true;
        }
        assert_int_equal(s.cap, 64);
        /* the layout the crafted keys are meant to produce */
        assert_true(s.slots[10] == a && s.slots[11] == b && s.slots[12] == c);
        assert_true(s.slots[13] == d && s.slots[15] == e);
        assert_true(s.slots[63] == f && s.slots[0] == g && s.slots[1] == h);
        assert_true(sg_u64set_remove(&s, keys[first]));
        present[first] = false;
        char when[64];
        snprintf(when, sizeof when, "after removing key %zu", first);
        check_all(&s, keys, present, n, when);
        /* then all others, in order */
        for (size_t i = 0; i < n; i++) {
            if (!present[i])
                continue;
            assert_true(sg_u64set_remove(&s, keys[i]));
            present[i] = false;
            snprintf(when, sizeof when, "after removing key %zu then %zu", first, i);
            check_all(&s, keys, present, n, when);
        }
        assert_int_equal(s.len, 0);
        for (size_t i = 0; i < s.cap; i++)
            assert_true(s.slots[i] == 0);
        sg_u64set_clear(&s);
    }
}

/* An element must never be shifted before its home: A (home 10), D and D2
 * (home 11), E (home 12) fill slots 10-13. Removing A moves nothing (each
 * other key is at or past its home, none may go to 10); removing D then
 * pulls D2 to 11 and E to 12. */
static void set_backward_shift_respects_home(void **state)
{
    (void)state;
    uint64_t a = key_at(10, 1), d = key_at(11, 1), d2 = key_at(11, 2), e = key_at(12, 1);
    sg_u64set s = {0};
    assert_true(sg_u64set_add(&s, a));  /* slot 10 */
    assert_true(sg_u64set_add(&s, d));  /* slot 11 */
    assert_true(sg_u64set_add(&s, d2)); /* slot 12 */
    assert_true(sg_u64set_add(&s, e));  /* slot 13 */
    assert_true(sg_u64set_remove(&s, a));
    /* nothing has home 10: slot 10 empties and the others stay findable */
    assert_true(s.slots[10] == 0);
    assert_true(sg_u64set_has(&s, d) && sg_u64set_has(&s, d2) && sg_u64set_has(&s, e));
    assert_true(sg_u64set_remove(&s, d));
    /* d2 moves to its home 11; e moves to its home 12 */
    assert_true(s.slots[11] == d2 && s.slots[12] == e && s.slots[13] == 0);
    assert_true(sg_u64set_has(&s, d2) && sg_u64set_has(&s, e));
    assert_false(sg_u64set_has(&s, d));
    assert_int_equal(s.len, 2);
    sg_u64set_clear(&s);
}

static void set_many_random_with_collisions(void **state)
{
    (void)state;
    enum { RANDOM = 100000, PER_CLUSTER = 100 };
    /* clusters sharing a home slot: adjacent homes so their runs merge, and
     * homes at the end of the final table (cap 2^18) so runs wrap to 0 */
    const size_t final_cap = (size_t)1 << 18;
    const size_t homes[] = {1000, 1001, 1003, final_cap - 2, final_cap - 1, 0};
    const size_t nclusters = sizeof homes / sizeof homes[0];
    size_t n = RANDOM + nclusters * PER_CLUSTER;
    uint64_t *keys = malloc(n * sizeof *keys);
    bool *present = calloc(n, sizeof *present);
    assert_non_null(keys);
    assert_non_null(present);

    uint64_t rng = 0x5eed;
    size_t k = 0;
    /* clusters interleaved with the random keys, so growth rehashes them */
    for (size_t v = 0; v < PER_CLUSTER; v++)
        for (size_t c = 0; c < nclusters; c++)
            keys[k++] = key_at(homes[c], v + 1);
    size_t ncluster_keys = k;
    while (k < n) {
        uint64_t r = splitmix64(&rng);
        if (r)
            keys[k++] = r;
    }
    uint64_t *order = malloc(n * sizeof *order);
    assert_non_null(order);
    memcpy(order, keys, n * sizeof *keys);
    uint64_t srng = 7;
    shuffle(order, n, &srng);

    sg_u64set s = {0};
    for (size_t i = 0; i < n; i++) {
        if (!sg_u64set_add(&s, order[i]))
            fail_msg("add of new key %#llx returned false", (unsigned long long)order[i]);
        if (s.len != i + 1)
            fail_msg("len %zu after %zu adds", s.len, i + 1);
    }
    for (size_t i = 0; i < n; i++) {
        present[i] = true;
        assert_false(sg_u64set_add(&s, keys[i]));
    }
    assert_int_equal(s.len, n);
    assert_int_equal(s.cap, final_cap);
    /* the clusters really collide: each home begins a run at least as long
     * as the cluster (a precondition of this test, mirrored from slot_of) */
    for (size_t c = 0; c < nclusters; c++) {
        size_t in_run = 0;
        for (size_t j = homes[c];; j = (j + 1) & (s.cap - 1)) {
            if (!s.slots[j])
                break;
            if (home_of(s.slots[j], s.cap) == homes[c])
                in_run++;
        }
        /* (random keys may share the home too) */
        if (in_run < PER_CLUSTER)
            fail_msg("precondition: only %zu keys of home %zu in its run, want >= %d", in_run,
                     homes[c], PER_CLUSTER);
    }
    check_all(&s, keys, present, n, "after adding");

    /* keys that are not there: none found, none removed */
    uint64_t absent_rng = 0xabad1dea;
    for (int i = 0; i < 1000; i++) {
        uint64_t r = splitmix64(&absent_rng) | 1;
        uint64_t crafted = key_at(homes[(size_t)i % nclusters], PER_CLUSTER + 1 + (uint64_t)i);
        assert_false(sg_u64set_has(&s, crafted));
        assert_false(sg_u64set_remove(&s, crafted));
        if (!sg_u64set_has(&s, r))
            assert_false(sg_u64set_remove(&s, r));
    }
    assert_int_equal(s.len, n);

    /* remove in random order (indices into keys, so present[] can follow) */
    size_t *idx = malloc(n * sizeof *idx);
    assert_non_null(idx);
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    uint64_t rrng = 99;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(splitmix64(&rrng) % i);
        size_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
    for (size_t r = 0; r < n; r++) {
        size_t i = idx[r];
        if (!sg_u64set_remove(&s, keys[i]))
            fail_msg("removal %zu: remove(%#llx) = false for a present key", r,
                     (unsigned long long)keys[i]);
        present[i] = false;
        if (sg_u64set_has(&s, keys[i]))
            fail_msg("removal %zu: key still found after remove", r);
        if (sg_u64set_remove(&s, keys[i]))
            fail_msg("removal %zu: key removed twice", r);
        if (s.len != n - r - 1)
            fail_msg("removal %zu: len %zu, want %zu", r, s.len, n - r - 1);
        /* a cluster key: every other cluster key must still be found */
        if (i < ncluster_keys) {
            for (size_t c = 0; c < ncluster_keys; c++)
                if (sg_u64set_has(&s, keys[c]) != present[c])
                    fail_msg("removal %zu (cluster key %zu): has(cluster key %zu) = %d", r, i, c,
                             !present[c]);
        }
        if (r % 4096 == 0 || r + 1 == n) {
            char when[64];
            snprintf(when, sizeof when, "after %zu removals", r + 1);
            check_all(&s, keys, present, n, when);
        }
    }
    assert_int_equal(s.len, 0);
    for (size_t i = 0; i < s.cap; i++)
        if (s.slots[i])
            fail_msg("slot %zu still holds %#llx after removing everything", i,
                     (unsigned long long)s.slots[i]);
    sg_u64set_clear(&s);
    assert_int_equal(s.len, 0);
    assert_int_equal(s.cap, 0);
    free(idx);
    free(order);
    free(present);
    free(keys);
}

static void set_interleaved_add_remove(void **state)
{
    (void)state;
    /* churn on a set that stays small, so removals and inserts reuse the
     * same runs (backward shift must leave no tombstone behind) */
    enum { N = 4000 };
    uint64_t *keys = malloc(N * sizeof *keys);
    bool *present = calloc(N, sizeof *present);
    assert_non_null(keys);
    assert_non_null(present);
    for (size_t i = 0; i < N; i++)
        keys[i] = i % 2 ? key_at(40 + i % 3, i + 1) : key_at(i % 128, i + 1);
    sg_u64set s = {0};
    uint64_t rng = 3;
    for (int step = 0; step < 200000; step++) {
        size_t i = (size_t)(splitmix64(&rng) % 200); /* a working set of 200 keys */
        i = (i + (size_t)step / 1000) % N;
        if (present[i]) {
            assert_true(sg_u64set_remove(&s, keys[i]));
            present[i] = false;
        } else {
            assert_true(sg_u64set_add(&s, keys[i]));
            present[i] = true;
        }
        if (step % 997 == 0)
            check_all(&s, keys, present, N, "during churn");
    }
    check_all(&s, keys, present, N, "after churn");
    sg_u64set_clear(&s);
    free(present);
    free(keys);
}

/* ---- sg_u64map ---- */

typedef struct val {
    uint64_t key;
    int64_t count;
    char tag[9];
} val;

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

static void map_basics(void **state)
{
    (void)state;
    sg_u64map m;
    memset(&m, 0x5a, sizeof m);
    sg_u64map_init(&m, sizeof(val));
    assert_int_equal(m.len, 0);
    assert_int_equal(m.cap, 0);
    assert_int_equal(m.val_size, sizeof(val));
    assert_null(sg_u64map_get(&m, 7));

    bool created = false;
    val *v = sg_u64map_put(&m, 7, &created);
    assert_non_null(v);
    assert_true(created);
    assert_true(all_zero(v, sizeof *v));
    assert_int_equal(m.len, 1);
    v->key = 7;
    v->count = 41;
    memcpy(v->tag, "abcdefgh", 9);

    created = true;
    val *again = sg_u64map_put(&m, 7, &created);
    assert_false(created);
    assert_ptr_equal(again, v);
    assert_int_equal(again->count, 41);
    again->count++;
    assert_int_equal(m.len, 1);

    val *got = sg_u64map_get(&m, 7);
    assert_ptr_equal(got, v);
    assert_int_equal(got->count, 42);
    assert_string_equal(got->tag, "abcdefgh");
    assert_null(sg_u64map_get(&m, 8));

    val *other = sg_u64map_put(&m, UINT64_MAX, &created);
    assert_true(created);
    assert_true(all_zero(other, sizeof *other));
    assert_true(other != got);
    assert_int_equal(m.len, 2);
    assert_int_equal(((val *)sg_u64map_get(&m, 7))->count, 42);

    sg_u64map_clear(&m);
    assert_int_equal(m.len, 0);
    assert_int_equal(m.cap, 0);
    assert_int_equal(m.val_size, sizeof(val));
    assert_null(sg_u64map_get(&m, 7));
    /* usable after clear, and a re-created key starts zeroed */
    v = sg_u64map_put(&m, 7, &created);
    assert_true(created);
    assert_true(all_zero(v, sizeof *v));
    sg_u64map_clear(&m);
}

static void map_growth_preserves_values(void **state)
{
    (void)state;
    enum { RANDOM = 60000, PER_CLUSTER = 200 };
    size_t n = RANDOM + 2 * PER_CLUSTER;
    uint64_t *keys = malloc(n * sizeof *keys);
    assert_non_null(keys);
    uint64_t rng = 1234;
    size_t k = 0;
    for (size_t v = 0; v < PER_CLUSTER; v++) {
        keys[k++] = key_at(77, v + 1);
        keys[k++] = key_at(63, v + 1); /* 63 wraps at cap 64 */
    }
    while (k < n) {
        uint64_t r = splitmix64(&rng);
        if (r)
            keys[k++] = r;
    }
    uint64_t srng = 5;
    shuffle(keys, n, &srng);

    sg_u64map m;
    sg_u64map_init(&m, sizeof(val));
    size_t grew = 0, cap = 0;
    for (size_t i = 0; i < n; i++) {
        bool created = false;
        val *v = sg_u64map_put(&m, keys[i], &created);
        if (!created)
            fail_msg("put %zu: created false for a new key", i);
        if (!all_zero(v, sizeof *v))
            fail_msg("put %zu: new value not zeroed (cap %zu)", i, m.cap);
        v->key = keys[i];
        v->count = (int64_t)i;
        snprintf(v->tag, sizeof v->tag, "%08zx", i);
        if (m.len != i + 1)
            fail_msg("put %zu: len %zu", i, m.len);
        if (m.cap != cap) {
            grew++;
            cap = m.cap;
            /* right after a growth, every earlier value is intact */
            for (size_t j = 0; j <= i; j++) {
                val *g = sg_u64map_get(&m, keys[j]);
                if (!g || g->key != keys[j] || g->count != (int64_t)j)
                    fail_msg("after growth to %zu: value of key %zu lost", cap, j);
            }
        }
    }
    assert_true(grew >= 10);
    assert_true(m.len * 4 <= m.cap * 3);
    for (size_t i = 0; i < n; i++) {
        bool created = true;
        val *v = sg_u64map_put(&m, keys[i], &created);
        assert_false(created);
        char want[9];
        snprintf(want, sizeof want, "%08zx", i);
        if (v->key != keys[i] || v->count != (int64_t)i || strcmp(v->tag, want))
            fail_msg("key %zu: value {%#llx, %lld, %s}", i, (unsigned long long)v->key,
                     (long long)v->count, v->tag);
        assert_ptr_equal(sg_u64map_get(&m, keys[i]), v);
    }
    assert_int_equal(m.len, n);
    /* crafted keys of the same homes that were never put */
    for (uint64_t v = 0; v < 100; v++) {
        assert_null(sg_u64map_get(&m, key_at(77, PER_CLUSTER + 1 + v)));
        assert_null(sg_u64map_get(&m, key_at(63, PER_CLUSTER + 1 + v)));
    }
    sg_u64map_clear(&m);
    free(keys);
}

static void map_small_values(void **state)
{
    (void)state;
    /* one-byte values: the stride is the value size */
    sg_u64map m;
    sg_u64map_init(&m, 1);
    bool created;
    for (uint64_t h = 1; h <= 1000; h++) {
        unsigned char *v = sg_u64map_put(&m, h * 0x100000001ULL, &created);
        assert_true(created);
        assert_int_equal(*v, 0);
        *v = (unsigned char)(h & 0xff);
    }
    for (uint64_t h = 1; h <= 1000; h++) {
        unsigned char *v = sg_u64map_get(&m, h * 0x100000001ULL);
        assert_non_null(v);
        assert_int_equal(*v, h & 0xff);
    }
    assert_int_equal(m.len, 1000);
    sg_u64map_clear(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hash_never_zero_and_deterministic),
        cmocka_unit_test(hash_many_inputs_never_zero),
        cmocka_unit_test(hash_job_separates_parts),
        cmocka_unit_test(hash_build_numbers_differ),
        cmocka_unit_test(hash_long_names),
        cmocka_unit_test(set_basics),
        cmocka_unit_test(crafted_keys_collide),
        cmocka_unit_test(set_backward_shift_small),
        cmocka_unit_test(set_backward_shift_respects_home),
        cmocka_unit_test(set_many_random_with_collisions),
        cmocka_unit_test(set_interleaved_add_remove),
        cmocka_unit_test(map_basics),
        cmocka_unit_test(map_growth_preserves_values),
        cmocka_unit_test(map_small_values),
        /* last: it replaces the process key */
        cmocka_unit_test(hash_seed_changes_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
