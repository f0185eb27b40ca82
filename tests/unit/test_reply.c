/* Tests reply.h: INFO fields and keyspace lines, PTTL as an expiry, CONFIG
 * GET values and the tracking connection's pushes, on replies that hiredis's
 * own parser makes of RESP text. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/redis/reply.h"

/* The reply hiredis reads from resp (one whole reply); freeReplyObject it. */
static redisReply *parse(const char *resp)
{
    redisReader *rd = redisReaderCreate();
    assert_non_null(rd);
    assert_int_equal(redisReaderFeed(rd, resp, strlen(resp)), REDIS_OK);
    void *r = NULL;
    assert_int_equal(redisReaderGetReply(rd, &r), REDIS_OK);
    assert_non_null(r);
    redisReaderFree(rd);
    return r;
}

static const char server[] = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n"
                             "run_id:4d1c\r\nuptime_in_seconds:12\r\nempty:\r\nlast:x";

static void info_field(void **state)
{
    (void)state;
    char *v = sg_reply_info_field(server, "redis_version");
    assert_string_equal(v, "7.0.15");
    free(v);
    v = sg_reply_info_field(server, "empty");
    assert_string_equal(v, "");
    free(v);
    v = sg_reply_info_field(server, "last"); /* no CRLF after the last line */
    assert_string_equal(v, "x");
    free(v);
    /* a prefix of a field, a section header, a value are no field */
    assert_null(sg_reply_info_field(server, "redis"));
    assert_null(sg_reply_info_field(server, "# Server"));
    assert_null(sg_reply_info_field(server, "standalone"));
    assert_null(sg_reply_info_field("", "run_id"));
}

static const char keyspace[] =
    "# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\n"
    "db2:keys=1,expires=0,avg_ttl=0\r\ndb15:keys=9,expires=4,avg_ttl=7\r\n";

static void info_keyspace(void **state)
{
    (void)state;
    int *dbs, n;
    sg_reply_info_dbs(keyspace, &dbs, &n);
    assert_int_equal(n, 3);
    assert_int_equal(dbs[0], 0);
    assert_int_equal(dbs[1], 2);
    assert_int_equal(dbs[2], 15);
    free(dbs);
    sg_reply_info_dbs("# Keyspace\r\n", &dbs, &n);
    assert_int_equal(n, 0);
    assert_null(dbs);
    /* the fuzzer's find: a sign or more digits than an int holds (which
     * sscanf's %d took, or overflowed on) name no database */
    sg_reply_info_dbs("# Keyspace\r\ndb-1:keys=1\r\ndb99999999999:keys=1\r\n"
                      "db2147483648:keys=1\r\ndb 4:keys=1\r\ndb5x:keys=1\r\ndb:keys=1\r\n"
                      "db2147483647:keys=1\r\n",
                      &dbs, &n);
    assert_int_equal(n, 1);
    assert_int_equal(dbs[0], 2147483647);
    free(dbs);
    assert_int_equal(sg_reply_info_expires(keyspace), 5);
    assert_int_equal(sg_reply_info_expires("# Keyspace\r\n"), 0);
    /* counts that summed past int64 (an overflow), negative ones */
    assert_true(sg_reply_info_expires("db0:keys=1,expires=9223372036854775807\r\n"
                                      "db1:keys=1,expires=5\r\n") == INT64_MAX);
    assert_int_equal(sg_reply_info_expires("db0:keys=1,expires=-9223372036854775807\r\n"
                                           "db1:keys=1,expires=-5\r\ndb2:expires=3\r\n"),
                     3);
}

static void pttl(void **state)
{
    (void)state;
    static const struct {
        const char *resp;
        int rc;
        int64_t at;
    } cases[] = {
        {":1500\r\n", 0, 1000 + 1500},
        {":0\r\n", 0, 1000 + 1}, /* expires now: still an expiry */
        {":-1\r\n", 0, 0},       /* no expiry */
        /* the fuzzer's find: beyond int64 from sent_ms, where the sum overflowed */
        {":9223372036854775807\r\n", 0, INT64_MAX},
        {":9223372036854774808\r\n", 0, INT64_MAX},
        {":9223372036854774806\r\n", 0, INT64_MAX - 1},
        {":-2\r\n", 1, -7},      /* gone */
        {"$2\r\n10\r\n", 1, -7}, /* no integer */
        {"-ERR x\r\n", 1, -7},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        redisReply *r = parse(cases[i].resp);
        int64_t at = -7;
        assert_int_equal(sg_reply_pttl(r, 1000, &at), cases[i].rc);
        assert_int_equal(at, cases[i].at);
        freeReplyObject(r);
    }
}

static void count(void **state)
{
    (void)state;
    static const struct {
        const char *resp;
        int rc;
        int64_t n;
    } cases[] = {
        {":0\r\n", 0, 0},
        {":3\r\n", 0, 3},
        {":4\r\n", 1, -7}, /* more than asked about */
        {":-1\r\n", 1, -7},
        /* EXISTS over the watcher's sample: evaluate's missing = n - present
         * overflowed on this */
        {":-9223372036854775808\r\n", 1, -7},
        {"$1\r\n3\r\n", 1, -7},
        {"-ERR x\r\n", 1, -7},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        redisReply *r = parse(cases[i].resp);
        int64_t n = -7;
        assert_int_equal(sg_reply_count(r, 3, &n), cases[i].rc);
        assert_int_equal(n, cases[i].n);
        freeReplyObject(r);
    }
}

static void config_value(void **state)
{
    (void)state;
    redisReply *r = parse("*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
    char *v = sg_reply_config_value(r);
    assert_string_equal(v, "");
    free(v);
    freeReplyObject(r);
    static const char *const none[] = {"*0\r\n", "*2\r\n$4\r\nsave\r\n:1\r\n", "$3\r\nyes\r\n",
                                       "*4\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
        r = parse(none[i]);
        assert_null(sg_reply_config_value(r));
        freeReplyObject(r);
    }
}

static void error_no_args(void **state)
{
    (void)state;
    char buf[64];
    assert_string_equal(
        sg_reply_error_no_args("ERR unknown command 'AUTH', with args beginning with: 'pw' ", buf,
                               sizeof buf),
        "ERR unknown command 'AUTH'");
    assert_string_equal(
        sg_reply_error_no_args("WRONGPASS invalid username-password pair", buf, sizeof buf),
        "WRONGPASS invalid username-password pair");
    /* cut to the buffer, never past it */
    assert_string_equal(sg_reply_error_no_args("0123456789", buf, 5), "0123");
}

static void invalidation(void **state)
{
    (void)state;
    static const struct {
        const char *resp;
        sg_invalidation want;
    } cases[] = {
        {"*3\r\n$9\r\nsubscribe\r\n$20\r\n__redis__:invalidate\r\n:1\r\n",
         SG_INVALIDATION_SUBSCRIBED},
        {"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*-1\r\n", SG_INVALIDATION_FLUSH},
        {"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$6\r\ncanary\r\n",
         SG_INVALIDATION_KEYS},
        {"*2\r\n$7\r\nmessage\r\n$1\r\nc\r\n", SG_INVALIDATION_OTHER},
        {"*3\r\n:1\r\n$1\r\nc\r\n$-1\r\n", SG_INVALIDATION_OTHER},
        {"*3\r\n$8\r\npmessage\r\n$1\r\nc\r\n$-1\r\n", SG_INVALIDATION_OTHER},
        {"+OK\r\n", SG_INVALIDATION_OTHER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        redisReply *r = parse(cases[i].resp);
        assert_int_equal(sg_reply_invalidation(r), cases[i].want);
        freeReplyObject(r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(info_field),    cmocka_unit_test(info_keyspace),
        cmocka_unit_test(pttl),          cmocka_unit_test(count),
        cmocka_unit_test(config_value),  cmocka_unit_test(invalidation),
        cmocka_unit_test(error_no_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
