/* Integration test of async.h against a real redis-server (redis_fixture.h):
 * sessions and their handshake, replies and NULL replies exactly once, stop
 * from inside a reply, subscriptions, a lost connection the owner keeps
 * going without, failures reported once each and the reconnect after them.
 * Each test drives its own uv loop and ends by asserting uv_loop_close() ==
 * 0. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "redis_fixture.h"
#include "stormguard/redis/async.h"

static redis_fixture g_srv;
static char g_dir[64];

/* Runs a command on a fresh blocking connection; fails the test on an error. */
static void rok(const char *fmt, ...)
{
    redisContext *c = redis_fixture_connect(g_srv.port, 1000);
    assert_non_null(c);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r || r->type == REDIS_REPLY_ERROR)
        fail_msg("%s: %s", fmt, r ? r->str : c->errstr);
    freeReplyObject(r);
    redisFree(c);
}

/* ---- a loop with a link ---- */

typedef struct fx fx;

/* One command's outcome, as its callback saw it. */
typedef struct call {
    fx *f;
    int calls, nulls;
    char str[256]; /* the reply's string or status */
    size_t len;
    long long integer;
    bool stop_here;    /* the callback stops the link */
    bool done_in_stop; /* the done callback ran inside sg_rasync_stop */
} call;

struct fx {
    uv_loop_t loop;
    uv_timer_t tick; /* wakes uv_run(ONCE) every 5 ms */
    sg_rasync *a;
    int opens, downs, losts;
    char down[512];
    bool keep_lost; /* on_lost's answer */
    int lost_conn;
    bool lost_error_reply;
    char lost_why[256];
    bool up_on_open;   /* call sg_rasync_up from on_open */
    call *on_open_cmd; /* queued on connection 0 by on_open */
    bool stopped, closed;
};

#define RUN_UNTIL(f, cond, ms)                                                                     \
    do {                                                                                           \
        uint64_t end_ = uv_hrtime() + (uint64_t)(ms)*1000000u;                                     \
        while (!(cond) && uv_hrtime() < end_)                                                      \
            uv_run(&(f)->loop, UV_RUN_ONCE);                                                       \
    } while (0)

static void on_tick(uv_timer_t *t) {}

static void on_stopped(void *ud)
{
    fx *f = ud;
    assert_false(f->stopped);
    f->stopped = true;
}

static void on_reply(void *pd, const redisReply *r)
{
    call *c = pd;
    c->calls++;
    if (!r) {
        c->nulls++;
        return;
    }
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
        r->type == REDIS_REPLY_ERROR) {
        c->len = r->len < sizeof c->str ? r->len : sizeof c->str - 1;
        memcpy(c->str, r->str, c->len);
        c->str[c->len] = '\0';
    } else if (r->type == REDIS_REPLY_INTEGER)
        c->integer = r->integer;
    else if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
             r->element[2]->type == REDIS_REPLY_STRING)
        snprintf(c->str, sizeof c->str, "%s", r->element[2]->str); /* a message */
    if (c->stop_here) {
        sg_rasync_stop(c->f->a, on_stopped, c->f);
        c->f->a = NULL;
        c->done_in_stop = c->f->stopped;
    }
}

static void on_open(void *ud)
{
    fx *f = ud;
    f->opens++;
    if (f->on_open_cmd) {
        const char *argv[] = {"PING"};
        assert_int_equal(sg_rasync_command(f->a, 0, on_reply, f->on_open_cmd, 1, argv, NULL), 0);
    }
    if (f->up_on_open)
        sg_rasync_up(f->a);
}

static void on_down(void *ud, const char *reason)
{
    fx *f = ud;
    f->downs++;
    snprintf(f->down, sizeof f->down, "%s", reason);
    printf("  down: %s\n", reason);
}

static bool on_lost(void *ud, int conn, const char *why, bool error_reply)
{
    fx *f = ud;
    f->losts++;
    f->lost_conn = conn;
    f->lost_error_reply = error_reply;
    snprintf(f->lost_why, sizeof f->lost_why, "%s", why);
    return f->keep_lost;
}

static int setup(void **state)
{
    if (!redis_fixture_pings(g_srv.port)) {
        redis_fixture_kill(&g_srv);
        if (redis_fixture_restart(&g_srv))
            return -1;
    }
    fx *f = calloc(1, sizeof *f);
    if (!f || uv_loop_init(&f->loop) != 0)
        return -1;
    uv_timer_init(&f->loop, &f->tick);
    uv_timer_start(&f->tick, on_tick, 5, 5);
    f->up_on_open = true;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (!f->closed) { /* a failed test: release what can be released */
        if (f->a)
            sg_rasync_stop(f->a, NULL, NULL);
        if (!uv_is_closing((uv_handle_t *)&f->tick))
            uv_close((uv_handle_t *)&f->tick, NULL);
        uv_run(&f->loop, UV_RUN_DEFAULT);
        uv_loop_close(&f->loop);
    }
    free(f);
    return 0;
}

/* Starts a link with nconns connections (the last one without SELECT). */
static void start_url(fx *f, const char *url_text, int nconns, int timeout_ms)
{
    sg_redis_url url;
    sg_error err = {0};
    if (sg_redis_url_parse(url_text, &url, &err))
        fail_msg("%s: %s", url_text, err.msg);
    sg_rasync_opts o = {
        .url = &url,
        .nconns = nconns,
        .conns = {{.name = "first connection"}, {.name = "second connection", .no_select = true}},
        .timeout_ms = timeout_ms,
        .backoff_min_ms = 20,
        .backoff_max_ms = 80};
    sg_rasync_cbs cbs = {.on_open = on_open, .on_down = on_down, .on_lost = on_lost};
    int rc = sg_rasync_start(&f->loop, &o, &cbs, f, &f->a, &err);
    sg_redis_url_close(&url);
    if (rc)
        fail_msg("sg_rasync_start: %s", err.msg);
}

static void start(fx *f, int nconns)
{
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", g_srv.port);
    start_url(f, url, nconns, 2000);
}

static void command(fx *f, int conn, call *c, const char *a0, const char *a1, const char *a2)
{
    const char *argv[] = {a0, a1, a2};
    int argc = a2 ? 3 : a1 ? 2 : 1;
    c->f = f;
    assert_int_equal(sg_rasync_command(f->a, conn, on_reply, c, argc, argv, NULL), 0);
}

/* Stops the link, runs the loop dry and requires it to close. */
static void finish(fx *f)
{
    if (f->a) {
        sg_rasync_stop(f->a, on_stopped, f);
        f->a = NULL;
    }
    RUN_UNTIL(f, f->stopped, 5000);
    assert_true(f->stopped);
    uv_close((uv_handle_t *)&f->tick, NULL);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    f->closed = true;
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* ---- tests ---- */

static void commands_get_their_replies(void **state)
{
    fx *f = *state;
    call ping = {0};
    f->on_open_cmd = &ping;
    start(f, 1);
    assert_int_equal(f->opens, 0); /* the first attempt runs from the loop */
    RUN_UNTIL(f, ping.calls == 1, 2000);
    assert_int_equal(f->opens, 1);
    assert_string_equal(ping.str, "PONG");
    assert_true(sg_rasync_live(f->a));

    call set = {0}, get = {0};
    const char *argv[] = {"SET", "async:k", "v\0w"};
    const size_t lens[] = {3, 7, 3};
    set.f = f;
    assert_int_equal(sg_rasync_command(f->a, 0, on_reply, &set, 3, argv, lens), 0);
    command(f, 0, &get, "GET", "async:k", NULL);
    RUN_UNTIL(f, get.calls == 1, 2000);
    assert_int_equal(set.calls, 1);
    assert_string_equal(set.str, "OK");
    assert_int_equal(get.calls, 1);
    assert_int_equal(get.nulls, 0);
    assert_int_equal(get.len, 3); /* binary safe */
    assert_memory_equal(get.str, "v\0w", 3);
    assert_int_equal(f->downs, 0);
    finish(f);
    assert_int_equal(ping.calls, 1);
}

/* AUTH as a user, SELECT on the connections that want it. */
static void handshake_auth_and_select(void **state)
{
    fx *f = *state;
    rok("ACL SETUSER sga on >pw ~* &* +@all");
    char url[96];
    snprintf(url, sizeof url, "redis://sga:pw@127.0.0.1:%d/3", g_srv.port);
    start_url(f, url, 2, 2000);
    RUN_UNTIL(f, f->opens == 1, 2000);
    call who = {0}, db0 = {0}, db1 = {0};
    command(f, 0, &who, "ACL", "WHOAMI", NULL);
    command(f, 0, &db0, "CLIENT", "INFO", NULL);
    command(f, 1, &db1, "CLIENT", "INFO", NULL);
    RUN_UNTIL(f, db1.calls == 1 && db0.calls == 1, 2000);
    assert_string_equal(who.str, "sga");
    assert_non_null(strstr(db0.str, " db=3 "));
    assert_non_null(strstr(db1.str, " db=0 ")); /* no_select */
    finish(f);
    rok("ACL DELUSER sga");
}

static void wrong_password_is_down(void **state)
{
    fx *f = *state;
    char url[96];
    snprintf(url, sizeof url, "redis://nobody:bad@127.0.0.1:%d", g_srv.port);
    start_url(f, url, 1, 2000);
    RUN_UNTIL(f, f->downs == 1, 2000);
    assert_int_equal(f->downs, 1);
    assert_non_null(strstr(f->down, "authenticating to redis"));
    assert_non_null(strstr(f->down, "as user 'nobody'"));
    assert_false(sg_rasync_live(f->a));
    finish(f);
}

/* Dropping a connection runs its pending replies with NULL, once, before
 * the drop returns; the connection takes no more commands. */
static void drop_gives_null_replies(void **state)
{
    fx *f = *state;
    start(f, 2);
    RUN_UNTIL(f, f->opens == 1, 2000);
    call blocked = {0}, other = {0};
    command(f, 1, &blocked, "BLPOP", "async:nothing", "0");
    command(f, 0, &other, "PING", NULL, NULL);
    RUN_UNTIL(f, other.calls == 1, 2000);
    assert_int_equal(blocked.calls, 0);
    sg_rasync_drop(f->a, 1);
    assert_int_equal(blocked.calls, 1);
    assert_int_equal(blocked.nulls, 1);
    const char *argv[] = {"PING"};
    call late = {0};
    assert_int_equal(sg_rasync_command(f->a, 1, on_reply, &late, 1, argv, NULL), SG_EREDIS);
    sg_rasync_drop(f->a, 1); /* again: a no-op */
    call still = {0};
    command(f, 0, &still, "PING", NULL, NULL); /* the session goes on */
    RUN_UNTIL(f, still.calls == 1, 2000);
    assert_string_equal(still.str, "PONG");
    assert_int_equal(f->downs, 0);
    finish(f);
    assert_int_equal(blocked.calls, 1);
    assert_int_equal(late.calls, 0);
}

/* Stop from inside a reply callback: hiredis defers the free, so the other
 * pending reply runs with NULL once that callback returns; done comes
 * later, from the loop; nothing else runs. */
static void stop_from_a_reply(void **state)
{
    fx *f = *state;
    start(f, 1);
    RUN_UNTIL(f, f->opens == 1, 2000);
    call first = {.stop_here = true}, blocked = {0};
    command(f, 0, &first, "PING", NULL, NULL);
    command(f, 0, &blocked, "BLPOP", "async:nothing", "0");
    RUN_UNTIL(f, first.calls == 1, 2000);
    assert_null(f->a);
    assert_int_equal(blocked.calls, 1);
    assert_int_equal(blocked.nulls, 1);
    assert_false(first.done_in_stop);
    finish(f);
    assert_int_equal(first.calls, 1);
    assert_int_equal(f->downs, 0);
}

/* A subscription gets its confirmation and every message, then NULL once
 * when its connection closes. */
static void subscription_messages(void **state)
{
    fx *f = *state;
    start(f, 1);
    RUN_UNTIL(f, f->opens == 1, 2000);
    call sub = {0};
    sub.f = f;
    assert_int_equal(sg_rasync_subscribe(f->a, 0, "async:chan", on_reply, &sub), 0);
    RUN_UNTIL(f, sub.calls == 1, 2000);
    assert_int_equal(sub.calls, 1); /* "subscribe" */
    rok("PUBLISH async:chan hello");
    RUN_UNTIL(f, sub.calls == 2, 2000);
    assert_string_equal(sub.str, "hello");
    finish(f);
    assert_int_equal(sub.calls, 3);
    assert_int_equal(sub.nulls, 1);
}

/* A refused SUBSCRIBE closes its connection with the server's message; an
 * owner that keeps the session goes on with the other connection. */
static void lost_connection_kept_going_without(void **state)
{
    fx *f = *state;
    rok("ACL SETUSER sgb on >pw ~* resetchannels +@all");
    char url[96];
    snprintf(url, sizeof url, "redis://sgb:pw@127.0.0.1:%d", g_srv.port);
    start_url(f, url, 2, 2000);
    RUN_UNTIL(f, f->opens == 1, 2000);
    f->keep_lost = true;
    call sub = {0};
    sub.f = f;
    assert_int_equal(sg_rasync_subscribe(f->a, 1, "async:chan", on_reply, &sub), 0);
    RUN_UNTIL(f, f->losts == 1, 2000);
    assert_int_equal(f->losts, 1);
    assert_int_equal(f->lost_conn, 1);
    assert_true(f->lost_error_reply);
    assert_non_null(strstr(f->lost_why, "NOPERM"));
    assert_int_equal(sub.nulls, 1);
    call ping = {0};
    command(f, 0, &ping, "PING", NULL, NULL);
    RUN_UNTIL(f, ping.calls == 1, 2000);
    assert_string_equal(ping.str, "PONG");
    assert_int_equal(f->downs, 0);
    assert_true(sg_rasync_live(f->a));
    finish(f);
    rok("ACL DELUSER sgb");
}

/* A lost connection the owner does not keep ends the session; the link
 * reports it, then reports each failed attempt while Redis is down, and
 * opens a new session when it is back. */
static void lost_server_reconnects(void **state)
{
    fx *f = *state;
    start(f, 2);
    RUN_UNTIL(f, f->opens == 1, 2000);
    redis_fixture_kill(&g_srv);
    RUN_UNTIL(f, f->downs == 1, 2000);
    assert_int_equal(f->downs, 1);
    assert_true(f->losts >= 1);
    assert_non_null(strstr(f->down, "lost the "));
    assert_false(sg_rasync_live(f->a));
    RUN_UNTIL(f, f->downs >= 4, 2000); /* backoff 20, 40, 80, 80 ms */
    assert_true(f->downs >= 4);
    assert_non_null(strstr(f->down, "cannot reach redis"));
    assert_int_equal(redis_fixture_restart(&g_srv), 0);
    int opens = f->opens;
    RUN_UNTIL(f, f->opens > opens, 2000); /* an attempt begun after the restart */
    assert_true(f->opens > opens);
    call ping = {0};
    command(f, 0, &ping, "PING", NULL, NULL);
    RUN_UNTIL(f, ping.calls == 1, 2000);
    assert_string_equal(ping.str, "PONG");
    finish(f);
}

/* The owner ends a session itself: no on_down, a new session follows. */
static void owner_fails_the_session(void **state)
{
    fx *f = *state;
    start(f, 1);
    RUN_UNTIL(f, f->opens == 1, 2000);
    call blocked = {0};
    command(f, 0, &blocked, "BLPOP", "async:nothing", "0");
    sg_rasync_fail(f->a);
    assert_false(sg_rasync_live(f->a));
    assert_int_equal(blocked.nulls, 1);
    sg_rasync_fail(f->a); /* no session: a no-op */
    RUN_UNTIL(f, f->opens == 2, 2000);
    assert_int_equal(f->opens, 2);
    assert_int_equal(f->downs, 0);
    finish(f);
}

/* A listener that never answers: the attempt timer ends the handshake,
 * unless the owner said up. */
static void handshake_timeout(void **state)
{
    fx *f = *state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", ntohs(a.sin_port));
    f->up_on_open = false;
    call ping = {0};
    f->on_open_cmd = &ping;
    start_url(f, url, 1, 200);
    RUN_UNTIL(f, f->downs == 1, 2000);
    assert_int_equal(f->downs, 1);
    assert_non_null(strstr(f->down, "did not answer the handshake within 200 ms"));
    assert_int_equal(ping.nulls, 1);
    finish(f);
    close(fd);
}

static void refused_is_down(void **state)
{
    fx *f = *state;
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", redis_fixture_free_port());
    start_url(f, url, 2, 2000);
    RUN_UNTIL(f, f->downs == 1, 2000);
    assert_int_equal(f->downs, 1);
    assert_non_null(strstr(f->down, "cannot reach redis 127.0.0.1:"));
    assert_false(sg_rasync_live(f->a));
    finish(f);
}

/* Stop while the host name is being resolved on the thread pool: nothing
 * is reported after the stop, and the loop closes. */
static void stop_while_resolving(void **state)
{
    fx *f = *state;
    char url[64];
    snprintf(url, sizeof url, "redis://localhost:%d", g_srv.port);
    start_url(f, url, 1, 2000);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* the first attempt starts */
    /* 0 while it resolves; 1 when the thread pool resolved localhost before
     * that iteration's poll (seen on a loaded machine): then this stops a
     * session whose sockets are connecting, which must end as quietly */
    int opened = f->opens;
    finish(f);
    assert_int_equal(f->opens, opened);
    assert_int_equal(f->downs, 0);
}

static void bad_options_refused(void **state)
{
    fx *f = *state;
    sg_redis_url url;
    sg_error err = {0};
    assert_int_equal(sg_redis_url_parse("redis://someone@127.0.0.1:1", &url, &err), 0);
    sg_rasync *a = NULL; /* must stay untouched */
    sg_rasync_opts o = {.url = &url, .nconns = 1, .timeout_ms = 100};
    sg_rasync_cbs cbs = {.on_open = on_open, .on_down = on_down};
    assert_int_equal(sg_rasync_start(&f->loop, &o, &cbs, f, &a, &err), SG_EUSAGE);
    assert_non_null(strstr(err.msg, "no password"));
    assert_null(a);
    free(url.user);
    url.user = NULL;
    o.nconns = 0;
    assert_int_equal(sg_rasync_start(&f->loop, &o, &cbs, f, &a, &err), SG_EUSAGE);
    o.nconns = SG_RASYNC_MAX_CONNS + 1;
    assert_int_equal(sg_rasync_start(&f->loop, &o, &cbs, f, &a, &err), SG_EUSAGE);
    o.nconns = 1;
    o.timeout_ms = 0;
    assert_int_equal(sg_rasync_start(&f->loop, &o, &cbs, f, &a, &err), SG_EUSAGE);
    assert_null(a);
    sg_redis_url_close(&url);
    f->stopped = true;
    finish(f);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (redis_fixture_mkdtemp(g_dir, sizeof g_dir, "async"))
        return 1;
    if (redis_fixture_start(&g_srv, g_dir))
        return 1;
    const struct CMUnitTest tests[] = {
        T(bad_options_refused),       T(commands_get_their_replies),
        T(handshake_auth_and_select), T(wrong_password_is_down),
        T(drop_gives_null_replies),   T(stop_from_a_reply),
        T(subscription_messages),     T(lost_connection_kept_going_without),
        T(owner_fails_the_session),   T(handshake_timeout),
        T(refused_is_down),           T(stop_while_resolving),
        T(lost_server_reconnects),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    redis_fixture_kill(&g_srv);
    redis_fixture_rmtree(g_dir);
    return failed;
}
