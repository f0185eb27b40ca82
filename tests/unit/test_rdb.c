/* Tests rdb.h: CRC64, LZF, splitting an RDB stream into DUMP payloads, and
 * reading hashes and strings out of payloads. The payload vectors are what
 * Redis 7.0 returned for DUMP. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/snapshot/rdb.h"

#define VEC(s) s, sizeof(s) - 1

/* HSET posted 117 POSTED 118 POSTED -5 x 100000 y 4000000000 z (listpack) */
static const char posted[] =
    "\x10\x36\x36\x00\x00\x00\x0a\x00\x75\x01\x86\x50\x4f\x53\x54\x45\x44\x07\x76\x01\x86\x50"
    "\x4f\x53\x54\x45\x44\x07\xdf\xfb\x02\x81\x78\x02\xf2\xa0\x86\x01\x04\x81\x79\x02\xf4\x00"
    "\x28\x6b\xee\x00\x00\x00\x00\x09\x81\x7a\x02\xff\x0a\x00\xea\xf4\x59\x61\x8c\xe4\xaa\xc3";
/* HSET cursor lastPollCycleTimestamp 1526030017000 (listpack) */
static const char cursor[] =
    "\x10\x29\x29\x00\x00\x00\x02\x00\x96\x6c\x61\x73\x74\x50\x6f\x6c\x6c\x43\x79\x63\x6c\x65"
    "\x54\x69\x6d\x65\x73\x74\x61\x6d\x70\x17\xf4\xe8\x21\x7a\x4e\x63\x01\x00\x00\x09\xff\x0a"
    "\x00\xa1\x8a\xb6\xb5\x03\x7c\x63\xd6";
/* SET num 42 (integer encoded) */
static const char num[] = "\x00\xc0\x2a\x0a\x00\x81\xfb\x5c\xfa\x86\x63\x4f\x50";
/* SET lzf aaaa...(100 a) (LZF) */
static const char lzf[] =
    "\x00\xc3\x09\x40\x64\x01\x61\x61\xe0\x57\x00\x01\x61\x61\x0a\x00\xe8\xa3\xb5\x07\xb0\x6d"
    "\xf2\x71";
/* SET neg -70000 (32-bit integer encoded) */
static const char neg[] = "\x00\xc2\x90\xee\xfe\xff\x0a\x00\x28\x75\xde\x7b\x13\xeb\x28\x00";

static void crc64_check_value(void **state)
{
    (void)state;
    assert_true(sg_crc64(0, "123456789", 9) == 0xe9c6d914c4b8d9caULL);
    /* in pieces, and over the unaligned tail path */
    uint64_t c = sg_crc64(0, "1234", 4);
    assert_true(sg_crc64(c, "56789", 5) == 0xe9c6d914c4b8d9caULL);
    /* a real DUMP payload's own CRC: the last 8 bytes, little endian */
    uint64_t want = 0;
    for (int i = 0; i < 8; i++)
        want |= (uint64_t)(unsigned char)posted[sizeof posted - 1 - 8 + i] << (8 * i);
    assert_true(sg_crc64(0, posted, sizeof posted - 1 - 8) == want);
}

static void lzf_decompresses_and_rejects(void **state)
{
    (void)state;
    /* the payload's compressed bytes (after type, 0xc3, clen 9, ulen 100): 9 in, 100 out */
    char out[100];
    assert_int_equal(sg_lzf_decompress(lzf + 5, 9, out, sizeof out), 100);
    for (int i = 0; i < 100; i++)
        assert_int_equal(out[i], 'a');
    /* output too small, truncated input, a back reference before the start */
    assert_int_equal(sg_lzf_decompress(lzf + 5, 9, out, 99), -1);
    assert_int_equal(sg_lzf_decompress(lzf + 5, 8, out, sizeof out), -1);
    assert_int_equal(sg_lzf_decompress("\x20\x05", 2, out, sizeof out), -1);
    assert_int_equal(sg_lzf_decompress("\x05"
                                       "ab",
                                       3, out, sizeof out),
                     -1); /* run past input */
}

typedef struct pairs {
    char text[512];
} pairs;

static int add_pair(void *ud, sg_slice f, sg_slice v)
{
    pairs *p = ud;
    size_t n = strlen(p->text);
    snprintf(p->text + n, sizeof p->text - n, "%.*s=%.*s;", (int)f.len, f.p, (int)v.len, v.p);
    return 0;
}

static void hash_listpack_pairs(void **state)
{
    (void)state;
    pairs p = {{0}};
    assert_int_equal(sg_rdb_hash_each(VEC(posted), add_pair, &p), 0);
    assert_string_equal(p.text, "117=POSTED;118=POSTED;-5=x;100000=y;4000000000=z;");
    memset(&p, 0, sizeof p);
    assert_int_equal(sg_rdb_hash_each(VEC(cursor), add_pair, &p), 0);
    assert_string_equal(p.text, "lastPollCycleTimestamp=1526030017000;");
}

static int stop_at_first(void *ud, sg_slice f, sg_slice v)
{
    (void)f, (void)v;
    ++*(int *)ud;
    return 7;
}

static void hash_callback_stops(void **state)
{
    (void)state;
    int calls = 0;
    assert_int_equal(sg_rdb_hash_each(VEC(posted), stop_at_first, &calls), 7);
    assert_int_equal(calls, 1);
}

/* A type 4 hash (hash table encoding, written field by field) and a type 13
 * ziplist hash (Redis before 7.0), built by hand with a made-up trailer. */
static void hash_table_and_ziplist(void **state)
{
    (void)state;
    static const char table[] = "\x04\x02"
                                "\x03"
                                "abc"
                                "\xc0\x07" /* abc = 7 (int8) */
                                "\xc1\x39\x30"
                                "\x02"
                                "hi" /* 12345 = hi */
                                "\x0a\x00"
                                "\x00\x00\x00\x00\x00\x00\x00\x00";
    pairs p = {{0}};
    assert_int_equal(sg_rdb_hash_each(VEC(table), add_pair, &p), 0);
    assert_string_equal(p.text, "abc=7;12345=hi;");

    /* ziplist: zlbytes, zltail, zllen; entries prevlen + encoding */
    static const char zl_body[] = "\x00\x00\x00\x00"
                                  "\x00\x00\x00\x00"
                                  "\x04\x00"
                                  "\x00"
                                  "\x03"
                                  "abc" /* "abc" */
                                  "\x05"
                                  "\xc0\x39\x30" /* int16 12345 */
                                  "\x04"
                                  "\xf3" /* immediate 2 */
                                  "\x02"
                                  "\xfe\xfb" /* int8 -5 */
                                  "\xff";
    char zl[64];
    size_t n = 0;
    zl[n++] = 13;
    zl[n++] = (char)(sizeof zl_body - 1); /* the blob as a raw string */
    memcpy(zl + n, zl_body, sizeof zl_body - 1);
    n += sizeof zl_body - 1;
    memcpy(zl + n, "\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00", 10);
    n += 10;
    memset(&p, 0, sizeof p);
    assert_int_equal(sg_rdb_hash_each(zl, n, add_pair, &p), 0);
    assert_string_equal(p.text, "abc=12345;2=-5;");
}

static void hash_rejects_other_types_and_garbage(void **state)
{
    (void)state;
    pairs p = {{0}};
    assert_int_equal(sg_rdb_hash_each(VEC(num), add_pair, &p), 1);
    assert_int_equal(sg_rdb_hash_each(posted, 5, add_pair, &p), 1);
    /* every truncation of the listpack blob is refused, never overread */
    for (size_t cut = 1; cut < sizeof posted - 1 - 10; cut++) {
        char *copy = malloc(cut + 10);
        memcpy(copy, posted, cut);
        memset(copy + cut, 0, 10);
        copy[1] = (char)0x36; /* the blob still claims its full length */
        sg_rdb_hash_each(copy, cut + 10, add_pair, &p);
        free(copy);
    }
    /* a blob whose entries claim more than it holds */
    char bad[sizeof posted];
    memcpy(bad, posted, sizeof posted);
    bad[8] = (char)0xf0; /* a 32-bit string length where 117 was */
    assert_int_equal(sg_rdb_hash_each(bad, sizeof posted - 1, add_pair, &p), 1);
}

static void string_payloads(void **state)
{
    (void)state;
    sg_buf b = {0};
    assert_int_equal(sg_rdb_string(VEC(num), &b), 0);
    assert_string_equal(b.p, "42");
    assert_int_equal(sg_rdb_string(VEC(neg), &b), 0);
    assert_string_equal(b.p, "-70000");
    assert_int_equal(sg_rdb_string(VEC(lzf), &b), 0);
    assert_int_equal(b.len, 100);
    assert_int_equal(sg_rdb_string(VEC(posted), &b), 1); /* a hash */
    assert_int_equal(sg_rdb_string(num, 4, &b), 1);      /* no trailer */
    sg_buf_free(&b);
}

/* ---- the stream parser ---- */

typedef struct src {
    const char *p;
    size_t len, at, chunk; /* chunk: at most this much per read */
} src;

static int src_read(void *ud, void *buf, size_t cap, size_t *got, sg_error *err)
{
    (void)err;
    src *s = ud;
    size_t n = s->len - s->at;
    if (n > cap)
        n = cap;
    if (s->chunk && n > s->chunk)
        n = s->chunk;
    memcpy(buf, s->p + s->at, n);
    s->at += n;
    *got = n;
    return 0;
}

typedef struct seen {
    int n;
    int db[8];
    char key[8][64];
    int64_t expire[8];
    char payload[8][128];
    size_t payload_len[8];
} seen;

static int on_key(void *ud, const sg_rdb_key *k, sg_error *err)
{
    (void)err;
    seen *s = ud;
    assert_true(s->n < 8);
    s->db[s->n] = k->db;
    snprintf(s->key[s->n], 64, "%.*s", (int)k->key_len, k->key);
    s->expire[s->n] = k->expire_at_ms;
    assert_true(k->payload_len <= 128);
    memcpy(s->payload[s->n], k->payload, k->payload_len);
    s->payload_len[s->n] = k->payload_len;
    s->n++;
    return 0;
}

/* An RDB 10 stream holding the vectors' values under three keys (a raw
 * one with an expiry, an integer-encoded and an LZF-compressed name) across
 * two databases, with the opcodes Redis 7.0 writes around them. */
static size_t build_rdb(char *out, bool checksum)
{
    size_t n = 0;
#define PUT(s, len) (memcpy(out + n, s, len), n += (len))
    PUT("REDIS0010", 9);
    PUT("\xfa\x09redis-ver\x06"
        "7.0.15",
        18);
    PUT("\xfa\x0aredis-bits\xc0\x40", 14);
    PUT("\xfe\x00\xfb\x03\x01", 5);
    /* expiry 1893456000000 ms, little endian */
    PUT("\xfc\x00\xb4\xc5\xda\xb8\x01\x00\x00", 9);
    PUT("\x10", 1);
    PUT("\x06posted", 7);
    PUT(posted + 1, sizeof posted - 1 - 1 - 10);
    PUT("\xf8\x05", 2); /* an IDLE hint before a key */
    PUT("\x00", 1);
    PUT("\xc1\x39\x30", 3); /* key 12345 */
    PUT(num + 1, sizeof num - 1 - 1 - 10);
    PUT("\xfe\x03", 2);
    PUT("\xf9\x02", 2); /* a FREQ hint */
    PUT("\x00", 1);
    /* key "bbbbbbbbbbbbbbbbbbbbbbbbb" (25 b) as LZF: literal b, back ref 23 */
    PUT("\xc3\x05\x19\x00\x62\xe0\x0f\x00", 8);
    PUT(lzf + 1, sizeof lzf - 1 - 1 - 10);
    PUT("\xff", 1);
    uint64_t crc = checksum ? sg_crc64(0, out, n) : 0;
    for (int i = 0; i < 8; i++)
        out[n++] = (char)(crc >> (8 * i));
#undef PUT
    return n;
}

static void parse_splits_keys(void **state)
{
    (void)state;
    char rdb[512];
    size_t len = build_rdb(rdb, true);
    for (size_t chunk = 0; chunk <= 7; chunk += 7) { /* whole, and 7 bytes a read */
        src s = {rdb, len, 0, chunk};
        seen got = {0};
        sg_error err = {0};
        int version = 0;
        assert_int_equal(sg_rdb_parse(src_read, &s, NULL, 0, NULL, on_key, &got, &version, &err),
                         0);
        assert_int_equal(version, 10);
        assert_int_equal(got.n, 3);
        assert_string_equal(got.key[0], "posted");
        assert_int_equal(got.db[0], 0);
        assert_true(got.expire[0] == 1893456000000LL);
        /* the payloads are exactly Redis's DUMP output */
        assert_int_equal(got.payload_len[0], sizeof posted - 1);
        assert_memory_equal(got.payload[0], posted, sizeof posted - 1);
        assert_string_equal(got.key[1], "12345");
        assert_int_equal(got.expire[1], 0);
        assert_memory_equal(got.payload[1], num, sizeof num - 1);
        assert_string_equal(got.key[2], "bbbbbbbbbbbbbbbbbbbbbbbbb");
        assert_int_equal(got.db[2], 3);
        assert_memory_equal(got.payload[2], lzf, sizeof lzf - 1);
    }
    /* rdbchecksum no: a zero checksum is not checked */
    len = build_rdb(rdb, false);
    src s = {rdb, len, 0, 0};
    seen got = {0};
    sg_error err = {0};
    assert_int_equal(sg_rdb_parse(src_read, &s, NULL, 0, NULL, on_key, &got, NULL, &err), 0);
    assert_int_equal(got.n, 3);
}

static bool not_posted(void *ud, int db, const char *key, size_t len)
{
    seen *s = ud;
    s->db[7] += db + 1; /* every key is asked about: dbs 0, 0, 3 */
    return !(len == 6 && !memcmp(key, "posted", 6));
}

static void parse_skips_unwanted(void **state)
{
    (void)state;
    char rdb[512];
    size_t len = build_rdb(rdb, true);
    src s = {rdb, len, 0, 4};
    seen got = {0};
    sg_error err = {0};
    assert_int_equal(sg_rdb_parse(src_read, &s, NULL, 0, not_posted, on_key, &got, NULL, &err), 0);
    assert_int_equal(got.db[7], 1 + 1 + 4);
    assert_int_equal(got.n, 2); /* the skipped one's value was read past, checksum intact */
    assert_string_equal(got.key[0], "12345");
    assert_memory_equal(got.payload[0], num, sizeof num - 1);
    assert_string_equal(got.key[1], "bbbbbbbbbbbbbbbbbbbbbbbbb");
}

static void parse_checks_trailer(void **state)
{
    (void)state;
    char rdb[600];
    size_t len = build_rdb(rdb, true);
    memcpy(rdb + len, "0123456789012345678901234567890123456789", 40);
    src s = {rdb, len + 40, 0, 0};
    seen got = {0};
    sg_error err = {0};
    assert_int_equal(sg_rdb_parse(src_read, &s, "0123456789012345678901234567890123456789", 40,
                                  NULL, on_key, &got, NULL, &err),
                     0);
    s.at = 0;
    got.n = 0;
    assert_int_equal(sg_rdb_parse(src_read, &s, "x123456789012345678901234567890123456789", 40,
                                  NULL, on_key, &got, NULL, &err),
                     SG_EINVAL);
    assert_non_null(strstr(err.msg, "end mark"));
}

static int parse_bytes(const char *p, size_t len, sg_error *err)
{
    src s = {p, len, 0, 3};
    seen got = {0};
    return sg_rdb_parse(src_read, &s, NULL, 0, NULL, on_key, &got, NULL, err);
}

static void parse_rejects_bad_streams(void **state)
{
    (void)state;
    char rdb[512];
    size_t len = build_rdb(rdb, true);
    sg_error err = {0};
    /* every truncation fails with a message naming the offset */
    for (size_t cut = 0; cut < len; cut++) {
        assert_int_equal(parse_bytes(rdb, cut, &err), SG_EINVAL);
        assert_non_null(strstr(err.msg, "malformed RDB at byte"));
    }
    /* a flipped bit in the content: the checksum catches it */
    rdb[22] ^= 1;
    assert_int_equal(parse_bytes(rdb, len, &err), SG_EINVAL);
    assert_non_null(strstr(err.msg, "checksum"));
    rdb[22] ^= 1;
    /* not an RDB */
    assert_int_equal(parse_bytes("HELLO0010\xff", 10, &err), SG_EINVAL);
    assert_non_null(strstr(err.msg, "not an RDB"));
    /* a value type it does not know is named */
    static const char unknown[] = "REDIS0012\xfe\x00\x17\x01k\x00"; /* 23: pre-release 7.4 */
    assert_int_equal(parse_bytes(unknown, sizeof unknown - 1, &err), SG_EINVAL);
    assert_non_null(strstr(err.msg, "value type 23 is not supported"));
    assert_non_null(strstr(err.msg, "--method scan"));
    /* every single-byte change either parses or fails cleanly (ASan watches) */
    for (size_t i = 9; i < len; i++)
        for (int v = 0; v < 256; v += 37) {
            char copy[512];
            memcpy(copy, rdb, len);
            copy[i] = (char)v;
            parse_bytes(copy, len, &err);
        }
}

/* A key claiming to decompress to 2^44 bytes from one: refused as the lie it
 * is, never attempted as an allocation. */
static void parse_refuses_lzf_bomb(void **state)
{
    (void)state;
    static const char bomb[] = "REDIS0010\xfe\x00"
                               "\x00"                                         /* a string */
                               "\xc3\x01\x81\x00\x00\x10\x00\x00\x00\x00\x00" /* key */
                               "a\x01v\xff";
    sg_error err = {0};
    assert_int_equal(parse_bytes(bomb, sizeof bomb - 1, &err), SG_EINVAL);
    assert_non_null(strstr(err.msg, "more than its bytes can expand to"));
}

/* An LZF string of no bytes that decompresses to none (the fuzzer's find):
 * an empty key, read without arithmetic on the NULL of an empty buffer. */
static void parse_empty_lzf_key(void **state)
{
    (void)state;
    assert_int_equal(sg_lzf_decompress(NULL, 0, NULL, 0), 0);
    assert_int_equal(sg_lzf_decompress(NULL, 0, (char[1]){0}, 1), 0);
    assert_int_equal(sg_lzf_decompress("\x00a", 2, NULL, 0), -1);
    static const char rdb[] = "REDIS0010\xfe\x00"
                              "\x00\xc3\x00\x00\x01v" /* key: LZF, 0 bytes in, 0 out */
                              "\xff\x00\x00\x00\x00\x00\x00\x00\x00";
    src s = {rdb, sizeof rdb - 1, 0, 0};
    seen got = {0};
    sg_error err = {0};
    assert_int_equal(sg_rdb_parse(src_read, &s, NULL, 0, NULL, on_key, &got, NULL, &err), 0);
    assert_int_equal(got.n, 1);
    assert_string_equal(got.key[0], "");
}

/* Redis 7.4's hashes with field expiry (types 24 and 25) are carried as
 * payloads like any other value. */
static void parse_hashes_with_field_expiry(void **state)
{
    (void)state;
    char rdb[256];
    size_t n = 0;
#define PUT(s, len) (memcpy(rdb + n, s, len), n += (len))
    PUT("REDIS0012\xfe\x00", 11);
    /* type 25: minimum expiry, then the listpack (the posted vector's) */
    PUT("\x19\x02lx"
        "\x00\xb4\xc5\xda\xb8\x01\x00\x00",
        12);
    PUT(posted + 1, sizeof posted - 1 - 1 - 10);
    /* type 24: minimum expiry, 2 fields: TTL, field, value each */
    PUT("\x18\x02md"
        "\x00\xb4\xc5\xda\xb8\x01\x00\x00"
        "\x02"
        "\x00\x01"
        "a"
        "\x01"
        "1"
        "\x81\x00\x00\x01\xb8\xda\xc5\xb4\x00\x01"
        "b"
        "\x01"
        "2",
        31);
    PUT("\xff", 1);
    uint64_t crc = sg_crc64(0, rdb, n);
    for (int i = 0; i < 8; i++)
        rdb[n++] = (char)(crc >> (8 * i));
#undef PUT
    src s = {rdb, n, 0, 5};
    seen got = {0};
    sg_error err = {0};
    int version = 0;
    assert_int_equal(sg_rdb_parse(src_read, &s, NULL, 0, NULL, on_key, &got, &version, &err), 0);
    assert_int_equal(version, 12);
    assert_int_equal(got.n, 2);
    assert_string_equal(got.key[0], "lx");
    assert_int_equal(got.payload_len[0], 1 + 8 + (sizeof posted - 1 - 1 - 10) + 10);
    assert_int_equal((unsigned char)got.payload[0][0], 25);
    assert_memory_equal(got.payload[0] + 9, posted + 1, sizeof posted - 1 - 1 - 10);
    assert_int_equal(got.payload[0][got.payload_len[0] - 10], 12); /* RDB version */
    assert_string_equal(got.key[1], "md");
    assert_int_equal((unsigned char)got.payload[1][0], 24);
    assert_int_equal(got.payload_len[1], 1 + 27 + 10);
}

static int stop_key(void *ud, const sg_rdb_key *k, sg_error *err)
{
    (void)k;
    ++*(int *)ud;
    return sg_error_set(err, SG_ESTORE, "store full");
}

static void parse_stops_on_callback_error(void **state)
{
    (void)state;
    char rdb[512];
    size_t len = build_rdb(rdb, true);
    src s = {rdb, len, 0, 0};
    int calls = 0;
    sg_error err = {0};
    assert_int_equal(sg_rdb_parse(src_read, &s, NULL, 0, NULL, stop_key, &calls, NULL, &err),
                     SG_ESTORE);
    assert_int_equal(calls, 1);
    assert_string_equal(err.msg, "store full");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc64_check_value),
        cmocka_unit_test(lzf_decompresses_and_rejects),
        cmocka_unit_test(hash_listpack_pairs),
        cmocka_unit_test(hash_callback_stops),
        cmocka_unit_test(hash_table_and_ziplist),
        cmocka_unit_test(hash_rejects_other_types_and_garbage),
        cmocka_unit_test(string_payloads),
        cmocka_unit_test(parse_splits_keys),
        cmocka_unit_test(parse_skips_unwanted),
        cmocka_unit_test(parse_checks_trailer),
        cmocka_unit_test(parse_rejects_bad_streams),
        cmocka_unit_test(parse_stops_on_callback_error),
        cmocka_unit_test(parse_refuses_lzf_bomb),
        cmocka_unit_test(parse_empty_lzf_key),
        cmocka_unit_test(parse_hashes_with_field_expiry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
