/* Tests slot.h against Redis's own values (CLUSTER KEYSLOT). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "stormguard/redis/slot.h"

static int slot(const char *k)
{
    return sg_cluster_slot(k, strlen(k));
}

static void crc16_check_value(void **state)
{
    (void)state;
    /* the XMODEM check value, as in Redis's crc16.c */
    assert_int_equal(sg_crc16("123456789", 9), 0x31C3);
    assert_int_equal(sg_crc16("", 0), 0);
}

static void slots_as_redis_computes_them(void **state)
{
    (void)state;
    /* redis-cli CLUSTER KEYSLOT on Redis 7.0 */
    assert_int_equal(slot("foo"), 12182);
    assert_int_equal(slot("bar"), 5061);
    assert_int_equal(slot("cache:1"), 9864);
    assert_int_equal(slot("igor:jenkins-prod:TEAM-A/SVC-1:team-a/svc-1"), 3096);
    assert_int_equal(slot("{{bar}}"), 4015);
}

static void hash_tags(void **state)
{
    (void)state;
    assert_int_equal(slot("{user1000}.following"), slot("user1000"));
    assert_int_equal(slot("{user1000}.followers"), slot("user1000"));
    /* only the first { counts, up to the next } */
    assert_int_equal(slot("foo{bar}{zap}"), slot("bar"));
    /* empty or unclosed tags: the whole key */
    assert_int_equal(slot("foo{}{bar}"), sg_crc16("foo{}{bar}", 10) & 16383);
    assert_int_equal(slot("foo{bar"), sg_crc16("foo{bar", 7) & 16383);
    assert_int_equal(slot("{{bar}}"), slot("{bar"));
    /* binary keys */
    const char bin[] = {'a', 0, '{', 'x', '}', 'b'};
    assert_int_equal(sg_cluster_slot(bin, sizeof bin), slot("x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc16_check_value),
        cmocka_unit_test(slots_as_redis_computes_them),
        cmocka_unit_test(hash_tags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
