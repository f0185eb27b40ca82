/* Integration test of watch.h against a real redis-server that the test starts
 * itself on a free 127.0.0.1 port (redis_fixture.h: killed on any exit).
 * Each test drives its own uv loop and ends by asserting uv_loop_close() ==
 * 0. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "redis_fixture.h"
#include "stormguard/redis/watch.h"

#define CANARY "stormguard:canary"

/* ---- the redis-server under test ---- */

static redis_fixture g_srv;
static char g_dir[64]; /* the servers' --dir: a replica writes the RDB it receives there */

static redisContext *rconnect(void)
{
    return redis_fixture_connect(g_srv.port, 1000);
}

static void cleanup(void)
{
    redis_fixture_kill(&g_srv);
    redis_fixture_rmtree(g_dir);
}

/* Runs a command (words separated by spaces) on a fresh synchronous
 * connection to db; NULL if Redis cannot be reached. */
static redisReply *rcmd_db(int db, const char *cmd)
{
    redisContext *c = rconnect();
    if (!c)
        return NULL;
    if (db) {
        redisReply *s = redisCommand(c, "SELECT %d", db);
        if (s)
            freeReplyObject(s);
    }
    char buf[256];
    const char *argv[16];
    int argc = 0;
    snprintf(buf, sizeof buf, "%s", cmd);
    for (char *save, *t = strtok_r(buf, " ", &save); t && argc < 16; t = strtok_r(NULL, " ", &save))
        argv[argc++] = t;
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    redisFree(c);
    return r;
}

/* Runs a command in db 0 and requires a non-error reply. */
static void rok(const char *cmd)
{
    redisReply *r = rcmd_db(0, cmd);
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("%s: %s", cmd, r->str);
    freeReplyObject(r);
}

static long long rinteger(const char *cmd)
{
    redisReply *r = rcmd_db(0, cmd);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static char *server_run_id(void)
{
    redisReply *r = rcmd_db(0, "INFO server");
    assert_non_null(r);
    char *p = strstr(r->str, "run_id:");
    assert_non_null(p);
    char *id = strndup(p + 7, strcspn(p + 7, "\r\n"));
    freeReplyObject(r);
    return id;
}

/* ---- a loop with a watcher ---- */

typedef struct wipe_ev {
    sg_wipe_cause cause;
    char detail[512];
    int64_t at;
    uint64_t hr; /* uv_hrtime at the callback */
} wipe_ev;

typedef struct fx {
    uv_loop_t loop;
    uv_timer_t tick; /* wakes uv_run(ONCE) every 5 ms; counts to prove the loop runs */
    int ticks;
    sg_watch *w;
    bool stopped, closed;
    bool stop_in_wipe;
    wipe_ev wipes[16];
    int nwipes;
    int ups, downs;
    char link_detail[512];
    redis_fixture other; /* a second redis-server, killed by the teardown */
} fx;

#define RUN_UNTIL(f, cond, ms)                                                                     \
    do {                                                                                           \
        uint64_t end_ = uv_hrtime() + (uint64_t)(ms)*1000000u;                                     \
        while (!(cond) && uv_hrtime() < end_)                                                      \
            uv_run(&(f)->loop, UV_RUN_ONCE);                                                       \
    } while (0)

static void run_for(fx *f, int ms)
{
    RUN_UNTIL(f, false, ms);
}

static void on_tick(uv_timer_t *t)
{
    ((fx *)t->data)->ticks++;
}

static void on_stopped(void *ud)
{
    ((fx *)ud)->stopped = true;
}

static void on_wipe(void *ud, sg_wipe_cause cause, const char *detail, int64_t at)
{
    fx *f = ud;
    if (f->nwipes < 16) {
        wipe_ev *e = &f->wipes[f->nwipes];
        e->cause = cause;
        snprintf(e->detail, sizeof e->detail, "%s", detail);
        e->at = at;
        e->hr = uv_hrtime();
    }
    f->nwipes++;
    printf("  wipe: %s: %s\n", sg_wipe_cause_name(cause), detail);
    if (f->stop_in_wipe) {
        sg_watch_stop(f->w, on_stopped, f);
        f->w = NULL;
    }
}

static void on_link(void *ud, bool up, const char *detail)
{
    fx *f = ud;
    if (up)
        f->ups++;
    else
        f->downs++;
    snprintf(f->link_detail, sizeof f->link_detail, "%s", detail);
    printf("  link %s: %s\n", up ? "up" : "down", detail);
}

static void start_watch_url(fx *f, const char *url, int check_ms, int timeout_ms)
{
    sg_watch_opts o = {.redis_url = url,
                       .canary = CANARY,
                       .check_ms = check_ms,
                       .connect_timeout_ms = timeout_ms,
                       .count_pattern = "k*"};
    sg_error err = {0};
    int rc = sg_watch_start(&f->loop, &o, on_wipe, on_link, f, &f->w, &err);
    if (rc)
        fail_msg("sg_watch_start: %s", err.msg);
}

static void start_watch(fx *f, int check_ms)
{
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", g_srv.port);
    start_watch_url(f, url, check_ms, 2000);
}

static bool canary_exists(void)
{
    redisReply *r = rcmd_db(0, "EXISTS " CANARY);
    bool yes = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    if (r)
        freeReplyObject(r);
    return yes;
}

static bool armed(fx *f)
{
    sg_watch_report r;
    sg_watch_report_get(f->w, &r);
    return r.armed;
}

/* Waits for the link to come up and the watcher to confirm its canary. */
static void wait_up(fx *f, int ups)
{
    RUN_UNTIL(f, f->ups >= ups, 5000);
    assert_int_equal(f->ups, ups);
    RUN_UNTIL(f, armed(f), 1000);
    assert_true(armed(f));
    assert_true(canary_exists());
}

/* Stops the watcher, runs the loop dry and requires it to close. */
static void finish(fx *f)
{
    if (f->w) {
        sg_watch_stop(f->w, on_stopped, f);
        f->w = NULL;
    }
    RUN_UNTIL(f, f->stopped, 5000);
    assert_true(f->stopped);
    uv_close((uv_handle_t *)&f->tick, NULL);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    f->closed = true;
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static sg_watch_report status(fx *f)
{
    sg_watch_report r;
    sg_watch_report_get(f->w, &r);
    return r;
}

static int setup(void **state)
{
    if (g_srv.pid <= 0 || !redis_fixture_pings(g_srv.port)) {
        redis_fixture_kill(&g_srv);
        if (redis_fixture_restart(&g_srv))
            return -1;
    }
    redisReply *r = rcmd_db(0, "REPLICAOF NO ONE"); /* after the failover test */
    if (r)
        freeReplyObject(r);
    r = rcmd_db(0, "FLUSHALL");
    if (!r || r->type == REDIS_REPLY_ERROR)
        return -1;
    freeReplyObject(r);
    fx *f = calloc(1, sizeof *f);
    if (!f || uv_loop_init(&f->loop) != 0)
        return -1;
    uv_timer_init(&f->loop, &f->tick);
    f->tick.data = f;
    uv_timer_start(&f->tick, on_tick, 5, 5);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (!f->closed) { /* a failed test: release what can be released */
        if (f->w)
            sg_watch_stop(f->w, NULL, NULL);
        if (!uv_is_closing((uv_handle_t *)&f->tick))
            uv_close((uv_handle_t *)&f->tick, NULL);
        uv_run(&f->loop, UV_RUN_DEFAULT);
        uv_loop_close(&f->loop);
    }
    redis_fixture_kill(&f->other);
    free(f);
    unsetenv("STORMGUARD_REDIS_PASSWORD");
    return 0;
}

/* ---- tests ---- */

static void first_connect_creates_canary(void **state)
{
    fx *f = *state;
    assert_int_equal(rinteger("EXISTS " CANARY), 0);
    start_watch(f, 100);
    wait_up(f, 1);
    run_for(f, 300);
    assert_int_equal(f->nwipes, 0);
    assert_int_equal(f->downs, 0);

    sg_watch_report st = status(f);
    char *run_id = server_run_id();
    assert_string_equal(sg_watch_link_name(st.link), "up");
    assert_string_equal(st.run_id, run_id);
    assert_string_equal(st.role, "master");
    assert_true(st.tracking);
    assert_true(st.last_check_ms > 0);
    assert_null(st.last_error);
    assert_int_equal(st.wipes, 0);
    free(run_id);
    finish(f);
}

/* A host name goes through uv_getaddrinfo, off the loop thread. */
static void connects_by_host_name(void **state)
{
    fx *f = *state;
    char url[64];
    snprintf(url, sizeof url, "redis://localhost:%d", g_srv.port);
    start_watch_url(f, url, 100, 2000);
    wait_up(f, 1);
    finish(f);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The periodic check is far away (10 s): only the invalidation can report. */
static void flushall_detected_at_once(void **state)
{
    fx *f = *state;
    start_watch(f, 10000);
    wait_up(f, 1);
    enum { ROUNDS = 7 };
    double ms[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        rok("SET k1 v");
        uint64_t t0 = uv_hrtime();
        rok("FLUSHALL");
        RUN_UNTIL(f, f->nwipes == i + 1, 2000);
        assert_int_equal(f->nwipes, i + 1);
        wipe_ev *e = &f->wipes[i];
        ms[i] = (double)(e->hr - t0) / 1e6;
        assert_int_equal(e->cause, SG_WIPE_FLUSH);
        assert_non_null(strstr(e->detail, "FLUSHALL/FLUSHDB: canary " CANARY " gone, dbsize 0"));
        assert_true(e->at > 0);
        RUN_UNTIL(f, armed(f), 1000); /* the canary is back before the next round */
        assert_true(armed(f) && canary_exists());
    }
    qsort(ms, ROUNDS, sizeof *ms, cmp_double);
    printf("  FLUSHALL -> on_wipe over %d rounds: min %.2f ms, median %.2f ms, max %.2f ms\n",
           ROUNDS, ms[0], ms[ROUNDS / 2], ms[ROUNDS - 1]);
    assert_true(ms[ROUNDS - 1] < 2000);
    run_for(f, 300);
    assert_int_equal(f->nwipes, ROUNDS);
    finish(f);
}

/* FLUSHDB of another database signals too, but the canary confirms nothing
 * was lost here; FLUSHDB of the watched database is one wipe, not two, even
 * with the periodic check running. */
static void flushdb_detected_once(void **state)
{
    fx *f = *state;
    redisReply *r = rcmd_db(1, "SET other v");
    assert_non_null(r);
    freeReplyObject(r);
    start_watch(f, 100);
    wait_up(f, 1);
    r = rcmd_db(1, "FLUSHDB");
    assert_non_null(r);
    freeReplyObject(r);
    run_for(f, 400);
    assert_int_equal(f->nwipes, 0);

    uint64_t t0 = uv_hrtime();
    rok("FLUSHDB");
    RUN_UNTIL(f, f->nwipes == 1, 2000);
    assert_int_equal(f->nwipes, 1);
    printf("  FLUSHDB -> on_wipe: %.2f ms\n", (double)(f->wipes[0].hr - t0) / 1e6);
    assert_int_equal(f->wipes[0].cause, SG_WIPE_FLUSH);
    run_for(f, 500);
    assert_int_equal(f->nwipes, 1);
    sg_watch_report st = status(f);
    assert_int_equal(st.wipes, 1);
    finish(f);
}

/* The watched server becomes a replica of an empty one: same run_id, new role
 * and replication id, data gone. */
static void failover_detected(void **state)
{
    fx *f = *state;
    assert_int_equal(redis_fixture_start(&f->other, g_dir), 0);
    start_watch(f, 100);
    wait_up(f, 1);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "REPLICAOF 127.0.0.1 %d", f->other.port);
    rok(cmd);
    RUN_UNTIL(f, f->nwipes == 1, 5000);
    assert_int_equal(f->nwipes, 1);
    assert_int_equal(f->wipes[0].cause, SG_WIPE_FAILOVER);
    assert_non_null(strstr(f->wipes[0].detail, "failover ("));
    run_for(f, 400); /* a replica refuses the canary: no second report */
    assert_int_equal(f->nwipes, 1);
    sg_watch_report st = status(f);
    assert_string_equal(st.role, "slave");
    assert_false(st.armed);
    assert_non_null(strstr(st.last_error, "READONLY"));
    finish(f);
}

static char *server_replid(void)
{
    redisReply *r = rcmd_db(0, "INFO replication");
    assert_non_null(r);
    char *p = strstr(r->str, "master_replid:"), *id = NULL;
    if (p)
        id = strndup(p + 14, 40);
    freeReplyObject(r);
    assert_non_null(id);
    return id;
}

/* A master's master_replid changes when Redis creates a replication backlog
 * for a replica (a snapshot with --method sync is one) and when it frees an
 * idle one: not a failover. The periodic check is far away, so the FLUSHALL
 * is judged against the facts from the connection. */
static void new_replid_on_master_is_not_failover(void **state)
{
    fx *f = *state;
    rok("CONFIG SET repl-backlog-ttl 1");
    start_watch(f, 10000);
    wait_up(f, 1);
    char *before = server_replid(), *after = NULL;
    char cmd[PATH_MAX + 80];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d --rdb %s/sync.rdb >/dev/null 2>&1", g_srv.port,
             g_dir);
    assert_int_equal(system(cmd), 0);
    for (int i = 0; i < 60; i++) { /* freed after a second without replicas */
        free(after);
        after = server_replid();
        if (strcmp(before, after))
            break;
        run_for(f, 100);
    }
    assert_string_not_equal(before, after);
    rok("CONFIG SET repl-backlog-ttl 3600");
    rok("FLUSHALL");
    RUN_UNTIL(f, f->nwipes == 1, 2000);
    assert_int_equal(f->nwipes, 1);
    assert_int_equal(f->wipes[0].cause, SG_WIPE_FLUSH);
    free(before);
    free(after);
    finish(f);
}

static void restart_detected(void **state)
{
    fx *f = *state;
    start_watch(f, 100);
    wait_up(f, 1);
    char *old_id = server_run_id();
    redis_fixture_kill(&g_srv);
    assert_int_equal(redis_fixture_restart(&g_srv), 0);
    RUN_UNTIL(f, f->nwipes == 1, 5000);
    assert_int_equal(f->nwipes, 1);
    assert_int_equal(f->wipes[0].cause, SG_WIPE_RESTART);
    assert_non_null(strstr(f->wipes[0].detail, "redis restarted"));
    assert_true(f->downs >= 1);
    assert_int_equal(f->ups, 2);
    char *new_id = server_run_id();
    assert_string_not_equal(old_id, new_id);
    sg_watch_report st = status(f);
    assert_string_equal(st.run_id, new_id);
    run_for(f, 300);
    assert_int_equal(f->nwipes, 1);
    free(old_id);
    free(new_id);
    finish(f);
}

static void sampled_keys_vanishing_detected(void **state)
{
    fx *f = *state;
    const char *keys[10];
    char names[10][8];
    for (int i = 0; i < 10; i++) {
        snprintf(names[i], sizeof names[i], "k%d", i);
        keys[i] = names[i];
        char cmd[32];
        snprintf(cmd, sizeof cmd, "SET k%d v", i);
        rok(cmd);
    }
    start_watch(f, 100);
    sg_watch_set_sample(f->w, keys, 10);
    wait_up(f, 1);
    rok("DEL k0 k1 k2 k3"); /* 4 of 10: not yet half */
    run_for(f, 400);
    assert_int_equal(f->nwipes, 0);
    rok("DEL k4");
    RUN_UNTIL(f, f->nwipes == 1, 2000);
    assert_int_equal(f->nwipes, 1);
    assert_int_equal(f->wipes[0].cause, SG_WIPE_KEYS);
    assert_non_null(strstr(f->wipes[0].detail, "5 of 10 sampled keys (k*) gone"));
    run_for(f, 400);
    assert_int_equal(f->nwipes, 1); /* the sample went with the wipe */
    sg_watch_report st = status(f);
    assert_int_equal(st.sample, 0);
    finish(f);
}

static void quiet_redis_reports_nothing(void **state)
{
    fx *f = *state;
    rok("SET k1 v");
    start_watch(f, 100);
    const char *keys[] = {"k1"};
    sg_watch_set_sample(f->w, keys, 1);
    wait_up(f, 1);
    run_for(f, 1500);
    assert_int_equal(f->nwipes, 0);
    assert_int_equal(f->downs, 0);
    sg_watch_report st = status(f);
    assert_string_equal(sg_watch_link_name(st.link), "up");
    assert_int_equal(st.dbsize, 2);
    finish(f);
}

static void redis_down_then_back(void **state)
{
    fx *f = *state;
    start_watch(f, 100);
    wait_up(f, 1);
    redis_fixture_kill(&g_srv);
    RUN_UNTIL(f, f->downs == 1, 2000);
    assert_int_equal(f->downs, 1);
    int ticks = f->ticks;
    run_for(f, 1500);
    printf("  loop ticks (5 ms timer) during 1.5 s of redis down: %d\n", f->ticks - ticks);
    assert_true(f->ticks - ticks > 50);
    assert_int_equal(f->downs, 1); /* reported once, not per attempt */
    sg_watch_report st = status(f);
    assert_string_equal(sg_watch_link_name(st.link), "down");
    assert_non_null(st.last_error);
    printf("  last_error: %s\n", st.last_error);

    assert_int_equal(redis_fixture_restart(&g_srv), 0);
    wait_up(f, 2);
    RUN_UNTIL(f, f->nwipes == 1, 2000);
    assert_int_equal(f->nwipes, 1);
    assert_int_equal(f->wipes[0].cause, SG_WIPE_RESTART);
    finish(f);
}

/* An ACL user that may not enable tracking: the periodic check alone sees the
 * flush. */
static void no_tracking_falls_back_to_timer(void **state)
{
    fx *f = *state;
    rok("ACL SETUSER sgw on >pw ~* &* +@all -client|tracking");
    char url[96];
    snprintf(url, sizeof url, "redis://sgw:pw@127.0.0.1:%d", g_srv.port);
    start_watch_url(f, url, 200, 2000);
    wait_up(f, 1);
    assert_non_null(strstr(f->link_detail, "no client tracking"));
    sg_watch_report st = status(f);
    assert_false(st.tracking);
    uint64_t t0 = uv_hrtime();
    rok("FLUSHALL");
    RUN_UNTIL(f, f->nwipes == 1, 2000);
    assert_int_equal(f->nwipes, 1);
    printf("  FLUSHALL -> on_wipe without tracking (check every 200 ms): %.1f ms\n",
           (double)(f->wipes[0].hr - t0) / 1e6);
    assert_int_equal(f->wipes[0].cause, SG_WIPE_FLUSH);
    assert_non_null(strstr(f->wipes[0].detail, "periodic check"));
    run_for(f, 500);
    assert_int_equal(f->nwipes, 1);
    finish(f);
    rok("ACL DELUSER sgw");
}

/* A user without the invalidation channel (Redis 7's default for new users):
 * hiredis 0.14 drops the tracking connection on the SUBSCRIBE error; the link
 * still comes up. The password comes from the environment. */
static void subscribe_refused_still_up(void **state)
{
    fx *f = *state;
    rok("ACL SETUSER sgw2 on >pw2 ~* resetchannels +@all");
    setenv("STORMGUARD_REDIS_PASSWORD", "pw2", 1);
    char url[96];
    snprintf(url, sizeof url, "redis://sgw2@127.0.0.1:%d", g_srv.port);
    start_watch_url(f, url, 100, 2000);
    wait_up(f, 1);
    assert_non_null(strstr(f->link_detail, "SUBSCRIBE"));
    rok("FLUSHALL");
    RUN_UNTIL(f, f->nwipes == 1, 2000);
    assert_int_equal(f->nwipes, 1);
    assert_int_equal(f->downs, 0);
    finish(f);
    rok("ACL DELUSER sgw2");
}

static void wrong_password_reported(void **state)
{
    fx *f = *state;
    char url[96];
    snprintf(url, sizeof url, "redis://nobody:bad@127.0.0.1:%d", g_srv.port);
    start_watch_url(f, url, 100, 2000);
    RUN_UNTIL(f, f->downs == 1, 2000);
    assert_int_equal(f->downs, 1);
    assert_non_null(strstr(f->link_detail, "authenticating"));
    assert_int_equal(f->ups, 0);
    finish(f);
}

/* A listener that never answers: the handshake timer ends the attempt. */
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
    start_watch_url(f, url, 100, 300);
    RUN_UNTIL(f, f->downs == 1, 2000);
    assert_int_equal(f->downs, 1);
    assert_non_null(strstr(f->link_detail, "did not answer the handshake within 300 ms"));
    finish(f);
    close(fd);
}

static void refused_reported_and_stop_while_retrying(void **state)
{
    fx *f = *state;
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", redis_fixture_free_port());
    start_watch_url(f, url, 100, 2000);
    RUN_UNTIL(f, f->downs == 1, 2000);
    assert_int_equal(f->downs, 1);
    assert_non_null(strstr(f->link_detail, "cannot reach redis"));
    run_for(f, 200);
    assert_int_equal(f->downs, 1);
    finish(f);
}

/* Stop while the host name is being resolved on the thread pool. */
static void stop_while_resolving(void **state)
{
    fx *f = *state;
    char url[64];
    snprintf(url, sizeof url, "redis://localhost:%d", g_srv.port);
    start_watch_url(f, url, 100, 2000);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* the first attempt starts */
    finish(f);
    assert_int_equal(f->ups, 0);
}

/* The owner may stop the watcher from its wipe callback (inside a hiredis
 * reply callback). */
static void stop_from_wipe_callback(void **state)
{
    fx *f = *state;
    f->stop_in_wipe = true;
    start_watch(f, 100);
    wait_up(f, 1);
    rok("FLUSHALL");
    RUN_UNTIL(f, f->stopped, 2000);
    assert_true(f->stopped);
    assert_int_equal(f->nwipes, 1);
    finish(f);
}

static void bad_options_refused(void **state)
{
    fx *f = *state;
    sg_watch *w = NULL; /* must stay untouched */
    sg_watch *const orig = w;
    sg_error err = {0};
    sg_watch_opts o = {.redis_url = "http://x", .canary = CANARY};
    assert_int_equal(sg_watch_start(&f->loop, &o, on_wipe, NULL, f, &w, &err), SG_EUSAGE);
    assert_ptr_equal(w, orig);
    o.redis_url = "redis://someone@127.0.0.1:1";
    unsetenv("REDISCLI_AUTH");
    assert_int_equal(sg_watch_start(&f->loop, &o, on_wipe, NULL, f, &w, &err), SG_EUSAGE);
    assert_non_null(strstr(err.msg, "no password"));
    o.redis_url = "redis://127.0.0.1:1";
    o.canary = "";
    assert_int_equal(sg_watch_start(&f->loop, &o, on_wipe, NULL, f, &w, &err), SG_EUSAGE);
    assert_ptr_equal(w, orig);
    assert_string_equal(sg_wipe_cause_name(SG_WIPE_FAILOVER), "failover");
    f->stopped = true;
    finish(f);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    unsetenv("STORMGUARD_REDIS_PASSWORD");
    unsetenv("REDISCLI_AUTH");
    if (redis_fixture_mkdtemp(g_dir, sizeof g_dir, "watch"))
        return 1;
    atexit(cleanup);
    if (redis_fixture_start(&g_srv, g_dir))
        return 1;
    const struct CMUnitTest tests[] = {
        T(bad_options_refused),
        T(first_connect_creates_canary),
        T(connects_by_host_name),
        T(flushall_detected_at_once),
        T(flushdb_detected_once),
        T(sampled_keys_vanishing_detected),
        T(quiet_redis_reports_nothing),
        T(no_tracking_falls_back_to_timer),
        T(subscribe_refused_still_up),
        T(wrong_password_reported),
        T(handshake_timeout),
        T(refused_reported_and_stop_while_retrying),
        T(stop_while_resolving),
        T(stop_from_wipe_callback),
        T(failover_detected),
        T(new_replid_on_master_is_not_failover),
        T(restart_detected),
        T(redis_down_then_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
