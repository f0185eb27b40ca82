/* Tests rconn.h against a real redis-server: after a reply times out, the
 * connection stays failed (a reply that arrives late must never be taken
 * for the next command's), and raw reads name a reset. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_fixture.h"
#include "stormguard/redis/rconn.h"

static redis_fixture g_srv;
static char g_dir[64];

static void open_conn(sg_rconn *c, int command_ms)
{
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", g_srv.port);
    sg_redis_url u;
    sg_error err = {0};
    assert_int_equal(sg_redis_url_parse(url, &u, &err), 0);
    int rc = sg_rconn_open(c, &u, 1000, command_ms, &err);
    sg_redis_url_close(&u);
    if (rc)
        fail_msg("connecting: %s", err.msg);
}

static void seed(const char *cmd)
{
    redisContext *r = redis_fixture_connect(g_srv.port, 1000);
    assert_non_null(r);
    redisReply *rep = redisCommand(r, cmd);
    assert_non_null(rep);
    freeReplyObject(rep);
    redisFree(r);
}

/* A late reply is not the next command's: the connection stays failed. */
static void timeout_is_sticky(void **state)
{
    (void)state;
    sg_rconn c;
    open_conn(&c, 300);
    seed("CLIENT PAUSE 800 ALL");
    const char *first[] = {"ECHO", "first"};
    redisReply *r = NULL;
    sg_error err = {0};
    assert_int_equal(sg_rconn_command(&c, &r, &err, 2, first, NULL), SG_EREDIS);
    assert_non_null(strstr(err.msg, "did not answer ECHO within 300 ms"));
    redis_fixture_sleep_ms(1000); /* the pause ends: "first" arrives now */
    const char *second[] = {"ECHO", "second"};
    sg_error again = {0};
    int rc = sg_rconn_command(&c, &r, &again, 2, second, NULL);
    if (rc == 0) {
        char got[64];
        snprintf(got, sizeof got, "%s", r->str ? r->str : "?");
        freeReplyObject(r);
        fail_msg("the command after a timeout got a reply ('%s')", got);
    }
    assert_string_equal(again.msg, err.msg); /* the first failure, again */
    sg_rconn_close(&c);
}

/* The same for an I/O error: a server that closed stays closed. */
static void closed_is_sticky(void **state)
{
    (void)state;
    sg_rconn c;
    open_conn(&c, 2000);
    seed("CLIENT KILL TYPE normal");
    const char *ping[] = {"PING"};
    redisReply *r = NULL;
    sg_error err = {0};
    assert_int_equal(sg_rconn_command(&c, &r, &err, 1, ping, NULL), SG_EREDIS);
    sg_error again = {0};
    assert_int_equal(sg_rconn_command(&c, &r, &again, 1, ping, NULL), SG_EREDIS);
    assert_string_equal(again.msg, err.msg);
    assert_int_equal(sg_rconn_append(&c, &again, 1, ping, NULL), SG_EREDIS);
    assert_int_equal(sg_rconn_flush(&c, &again), SG_EREDIS);
    char buf[16];
    size_t got = 99;
    assert_int_equal(sg_rconn_read_raw(&c, buf, sizeof buf, &got, 100, &again), SG_EREDIS);
    sg_rconn_close(&c);
}

int main(void)
{
    if (redis_fixture_mkdtemp(g_dir, sizeof g_dir, "rconn") || redis_fixture_start(&g_srv, g_dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(timeout_is_sticky),
        cmocka_unit_test(closed_is_sticky),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    redis_fixture_kill(&g_srv);
    redis_fixture_rmtree(g_dir);
    return failed;
}
