/* libFuzzer target: arbitrary bytes as a Redis server's replies. hiredis's
 * own parser (redisReader) makes reply trees of them, and every tree goes
 * through each of our readings of replies, as if it answered the command
 * that reading expects: error replies (sg_rconn_reply_error), INFO fields,
 * keyspace lines and the redis_version (reply.h, rconn.h), counts, PTTL,
 * CONFIG GET, the tracking connection's pushes, DUMP payloads (rdb.h,
 * snapshot.h), and last SCAN (sg_keyscan_take, which keeps the tree), whose
 * keys then go where a snapshot and inspect send them (the Igor key parser,
 * the namespace tally). Built and run by tests/fuzz/run.sh resp. */
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/redis/keyscan.h"
#include "stormguard/redis/rconn.h"
#include "stormguard/redis/reply.h"
#include "stormguard/snapshot/namespace.h"
#include "stormguard/snapshot/profile.h"
#include "stormguard/snapshot/rdb.h"
#include "stormguard/snapshot/snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What INFO is asked for: watch.c, rconn.c, inspect.c, snapshot.c, sync.c. */
static const char *const info_fields[] = {
    "redis_version", "run_id",    "uptime_in_seconds", "role", "master_replid", "expired_keys",
    "used_memory",   "maxmemory", "maxmemory_policy",
};

static void read_info(const char *info)
{
    for (size_t i = 0; i < sizeof info_fields / sizeof info_fields[0]; i++) {
        char *v = sg_reply_info_field(info, info_fields[i]);
        if (v) {
            /* a line "field:value" of the text */
            char *line = sg_xasprintf("%s:%s", info_fields[i], v);
            if (!strstr(info, line))
                abort();
            free(line);
            int64_t n;
            (void)sg_parse_int64(v, 0, INT64_MAX, &n);
            (void)sg_rdb_version_for_redis(v);
        }
        free(v);
    }
    int *dbs, count;
    sg_reply_info_dbs(info, &dbs, &count);
    for (int i = 0; i < count; i++)
        if (dbs[i] < 0)
            abort(); /* SELECTed later: a database number */
    free(dbs);
    if (sg_reply_info_expires(info) < 0)
        abort(); /* a count of keys */
}

static int count_pair(void *ud, sg_slice field, sg_slice value)
{
    (*(size_t *)ud)++;
    return 0;
}

/* A DUMP reply's payload, as the snapshot stores and decodes it. */
static void read_payload(const char *p, size_t len)
{
    const char *type = sg_payload_type(p, len);
    sg_buf s = {0};
    if (sg_rdb_string(p, len, &s) == 0 && strcmp(type, "string"))
        abort();
    int64_t n;
    (void)sg_parse_slice_int64((sg_slice){s.p, s.len}, &n);
    sg_buf_free(&s);
    size_t pairs = 0;
    if (sg_rdb_hash_each(p, len, count_pair, &pairs) == 0 && strcmp(type, "hash"))
        abort();
}

static void read_scan(redisReply *r, unsigned which)
{
    sg_rconn conn = {.address = "127.0.0.1:6379"};
    sg_strlist patterns = {0};
    if (which % 3 >= 1)
        sg_strlist_push(&patterns, "igor:*");
    if (which % 3 == 2)
        sg_strlist_push(&patterns, "*[0-9]?");
    sg_keyscan ks;
    sg_keyscan_init(&ks, &conn, &patterns, 1000);
    sg_keypage page;
    sg_error err = {0};
    if (sg_keyscan_take(&ks, r, &page, &err) == 0) {
        if (strlen(ks.cursor) >= sizeof ks.cursor || ks.done != !strcmp(ks.cursor, "0"))
            abort();
        sg_nstally *t = sg_nstally_new();
        for (size_t i = 0; i < page.n; i++) {
            sg_igor_key k;
            (void)sg_igor_parse_key("igor", page.keys[i], page.lens[i], &k);
            sg_nstally_get(t, page.keys[i], page.lens[i])->keys++;
        }
        sg_ns_stats *ns;
        size_t nns;
        sg_nstally_take(t, &ns, &nns);
        sg_ns_stats_free(ns, nns);
        sg_nstally_free(t);
        sg_keypage_close(&page);
    } else if (!err.msg[0]) {
        abort();
    }
    sg_keyscan_close(&ks);
    sg_strlist_clear(&patterns);
}

static void read_reply(redisReply *r, unsigned which)
{
    sg_rconn conn = {.address = "127.0.0.1:6379"};
    sg_error err = {0};
    if (r->type == REDIS_REPLY_ERROR &&
        (sg_rconn_reply_error(&conn, "DUMP", r, &err) != SG_EREDIS || !strstr(err.msg, r->str)))
        abort();
    if (r->type == REDIS_REPLY_STRING) {
        read_info(r->str);
        read_payload(r->str, r->len);
    }
    static const int64_t maxes[] = {0, 1, 3, SG_REDIS_KEYS_MAX, INT64_MAX};
    for (size_t i = 0; i < sizeof maxes / sizeof maxes[0]; i++) {
        int64_t n = -7;
        if (sg_reply_count(r, maxes[i], &n) == 0 && (n < 0 || n > maxes[i]))
            abort();
    }
    const int64_t sent_ms = 1764547200000; /* 2025-12-01 */
    int64_t at = -7;
    if (sg_reply_pttl(r, sent_ms, &at) == 0 && at != 0 && at <= sent_ms)
        abort(); /* an expiry after the command was sent, or none */
    free(sg_reply_config_value(r));
    (void)sg_reply_invalidation(r);
    read_scan(r, which); /* takes r */
}

/* hiredis 0.14 allocates an array reply's elements when it reads their
 * count, with no limit (1.0 has maxelements): "*1000000000" is a calloc of
 * 8 GB, an out-of-memory report of libFuzzer's that is no finding in our
 * code. Inputs claiming an array of more than 2^20 elements (anywhere: a
 * bulk string's bytes count too) are left out. */
static bool claims_huge_array(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        uint64_t n = 0;
        for (size_t j = i + 1; data[i] == '*' && j < size && data[j] >= '0' && data[j] <= '9'; j++)
            if ((n = n * 10 + (data[j] - '0')) > (1u << 20))
                return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (claims_huge_array(data, size))
        return 0;
    redisReader *rd = redisReaderCreate();
    if (!rd)
        abort();
    if (redisReaderFeed(rd, (const char *)data, size) != REDIS_OK)
        abort();
    void *r;
    for (unsigned i = 0; redisReaderGetReply(rd, &r) == REDIS_OK && r; i++)
        read_reply(r, i);
    redisReaderFree(rd);
    return 0;
}
