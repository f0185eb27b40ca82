/* Tests keyscan.h's reading of SCAN replies (sg_keyscan_take): the cursor,
 * the keys, the patterns matched here, and the replies it refuses. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/redis/keyscan.h"

static redisReply *parse(const char *resp, size_t len)
{
    redisReader *rd = redisReaderCreate();
    assert_non_null(rd);
    assert_int_equal(redisReaderFeed(rd, resp, len), REDIS_OK);
    void *r = NULL;
    assert_int_equal(redisReaderGetReply(rd, &r), REDIS_OK);
    assert_non_null(r);
    redisReaderFree(rd);
    return r;
}

#define PARSE(s) parse(s, sizeof(s) - 1)

static void take_page(void **state)
{
    (void)state;
    sg_rconn conn = {.address = "10.0.0.5:6379"};
    sg_strlist two = {0};
    sg_strlist_push(&two, "a:*");
    sg_strlist_push(&two, "b\\*");
    sg_keyscan ks;
    sg_keyscan_init(&ks, &conn, &two, 1000);
    sg_keypage page;
    sg_error err = {0};
    /* a binary key, a key of neither pattern, an integer where a key belongs */
    redisReply *r = PARSE("*2\r\n$5\r\n17408\r\n*4\r\n$3\r\na:\0\r\n$1\r\nc\r\n:5\r\n$2\r\nb*\r\n");
    assert_int_equal(sg_keyscan_take(&ks, r, &page, &err), 0);
    assert_string_equal(ks.cursor, "17408");
    assert_false(ks.done);
    assert_int_equal(page.n, 2);
    assert_int_equal(page.lens[0], 3);
    assert_memory_equal(page.keys[0], "a:\0", 3);
    assert_int_equal(page.lens[1], 2);
    assert_memory_equal(page.keys[1], "b*", 2);
    sg_keypage_close(&page);

    r = PARSE("*2\r\n$1\r\n0\r\n*0\r\n");
    assert_int_equal(sg_keyscan_take(&ks, r, &page, &err), 0);
    assert_true(ks.done);
    assert_int_equal(page.n, 0);
    sg_keypage_close(&page);
    sg_strlist_clear(&two);
}

static void take_refuses(void **state)
{
    (void)state;
    sg_rconn conn = {.address = "10.0.0.5:6379"};
    sg_keyscan ks;
    sg_keyscan_init(&ks, &conn, NULL, 1000);
    static const char *const bad[] = {
        "*1\r\n$1\r\n0\r\n",
        "*2\r\n:0\r\n*0\r\n",
        "*2\r\n$1\r\n0\r\n$1\r\nk\r\n",
        "*2\r\n$32\r\n01234567890123456789012345678901\r\n*0\r\n", /* a cursor too long */
        "+OK\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sg_keypage page;
        sg_error err = {0};
        redisReply *r = parse(bad[i], strlen(bad[i]));
        assert_int_equal(sg_keyscan_take(&ks, r, &page, &err), SG_EREDIS);
        assert_non_null(strstr(err.msg, "malformed SCAN reply"));
        assert_null(page.reply);
        assert_string_equal(ks.cursor, "0");
    }
    sg_keypage page;
    sg_error err = {0};
    redisReply *r = PARSE("-NOPERM this user has no permissions to run the 'scan' command\r\n");
    assert_int_equal(sg_keyscan_take(&ks, r, &page, &err), SG_EREDIS);
    assert_non_null(strstr(err.msg, "denied SCAN"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(take_page),
        cmocka_unit_test(take_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
