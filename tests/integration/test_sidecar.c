/* Tests sidecar.h against a real redis-server: periodic snapshots and rewarms
 * run on the libuv threadpool and report on the loop thread, suspect
 * snapshots are never rewarmed from by default, a rewarm never overwrites a
 * key written after the wipe, TTLs come back absolute, and every loop closes
 * with no handle or request left (uv_loop_close == 0).
 *
 * Each test starts its own redis-server on a free 127.0.0.1 port
 * (redis_fixture.h: no persistence, killed on any exit) and stops it in the
 * teardown, which cmocka runs after a failed assertion too. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "redis_fixture.h"
#include "stormguard/base/clock.h"
#include "stormguard/base/error.h"
#include "stormguard/redis/rconn.h"
#include "stormguard/snapshot/sidecar.h"
#include "stormguard/snapshot/snapshot.h"
#include "stormguard/store/store.h"
#include "stormguard/base/util.h"

/* ---- the redis-server fixture ---- */

typedef struct fixture {
    char dir[64];
    char db[128];
    char url[64];
    int port;
    redis_fixture srv;
    redisContext *rc; /* the test's own connection, for seeding and checking */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    if (redis_fixture_mkdtemp(f->dir, sizeof f->dir, "sidecar")) {
        free(f);
        return -1;
    }
    snprintf(f->db, sizeof f->db, "%s/sg.db", f->dir);
    if (redis_fixture_start(&f->srv, f->dir) || !(f->rc = redis_fixture_connect(f->srv.port, 0))) {
        redis_fixture_stop(&f->srv);
        redis_fixture_rmtree(f->dir);
        free(f);
        return -1;
    }
    f->port = f->srv.port;
    snprintf(f->url, sizeof f->url, "redis://127.0.0.1:%d", f->port);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    redisFree(f->rc);
    redis_fixture_stop(&f->srv);
    redis_fixture_rmtree(f->dir);
    free(f);
    return 0;
}

/* ---- redis helpers ---- */

/* Runs a command on the test's connection and returns its reply (caller
 * frees); fails the test on an error reply. */
static redisReply *cmd(fixture *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(f->rc, fmt, ap);
    va_end(ap);
    if (!r)
        fail_msg("redis: %s", f->rc->errstr);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("redis: %s", r->str);
    return r;
}

static long long cmd_int(fixture *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(f->rc, fmt, ap);
    va_end(ap);
    if (!r || r->type != REDIS_REPLY_INTEGER)
        fail_msg("redis: expected an integer reply: %s", r && r->str ? r->str : f->rc->errstr);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static void cmd_ok(fixture *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(f->rc, fmt, ap);
    va_end(ap);
    if (!r || r->type == REDIS_REPLY_ERROR)
        fail_msg("redis: %s", r ? r->str : f->rc->errstr);
    freeReplyObject(r);
}

/* The cursor value of job i as seed_igor sets it (tests/lib.sh). */
static long long seed_cursor(int i)
{
    return 1526030000000LL + (long long)i * 1000;
}

/* Igor Jenkins jobs first..last, as tests/lib.sh seed_igor makes them: a
 * cursor hash and a posted-marker hash with three builds (DOMAIN.md
 * section 2). Pipelined. */
static void seed_igor(fixture *f, int first, int last)
{
    int n = 0;
    for (int i = first; i <= last; i++) {
        char base[96], marker[160];
        snprintf(base, sizeof base, "igor:jenkins-prod:TEAM-A/SERVICE-%d:team-a/service-%d", i, i);
        snprintf(marker, sizeof marker, "%s:lastPollCycleTimestamp:%lld", base, seed_cursor(i));
        redisAppendCommand(f->rc, "HSET %s lastPollCycleTimestamp %lld", base, seed_cursor(i));
        redisAppendCommand(f->rc, "HSET %s %d POSTED %d POSTED %d POSTED", marker, 100 + i, 101 + i,
                           102 + i);
        n += 2;
    }
    for (int i = 0; i < n; i++) {
        void *r = NULL;
        assert_int_equal(redisGetReply(f->rc, &r), REDIS_OK);
        assert_int_not_equal(((redisReply *)r)->type, REDIS_REPLY_ERROR);
        freeReplyObject(r);
    }
}

static char *hget_cursor(fixture *f, int i)
{
    redisReply *r = cmd(f,
                        "HGET igor:jenkins-prod:TEAM-A/SERVICE-%d:team-a/service-%d "
                        "lastPollCycleTimestamp",
                        i, i);
    char *v = r->type == REDIS_REPLY_STRING ? sg_xstrdup(r->str) : NULL;
    freeReplyObject(r);
    return v;
}

/* ---- running jobs on a loop ---- */

typedef struct outcome {
    int calls;
    sg_sidecar_result r;
    pthread_t thread;
} outcome;

static void on_done(void *ud, const sg_sidecar_result *r)
{
    outcome *o = ud;
    o->calls++;
    o->r = *r;
    o->thread = pthread_self();
}

static sg_sidecar_opts opts_for(const fixture *f)
{
    return (sg_sidecar_opts){
        .redis_url = f->url,
        .connect_timeout_ms = 2000,
        .db_path = f->db,
        .profile = SG_PROFILE_IGOR,
        .suspect_below_pct = 50,
    };
}

/* Runs one job to its end on a fresh loop and checks the loop closes clean. */
static outcome run_job(const sg_sidecar_opts *o, bool rewarm, int64_t snapshot_id)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    outcome out = {0};
    sg_error err = {0};
    int rc = rewarm ? sg_sidecar_rewarm(&loop, o, snapshot_id, on_done, &out, &err)
                    : sg_sidecar_snapshot(&loop, o, "periodic", on_done, &out, &err);
    if (rc)
        fail_msg("queueing the job: %s", err.msg);
    assert_int_equal(out.calls, 0); /* queued, not run on the caller's thread */
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(out.calls, 1);
    assert_true(pthread_equal(out.thread, pthread_self())); /* reported on the loop thread */
    assert_int_equal(uv_loop_close(&loop), 0);
    return out;
}

static outcome run_ok(const sg_sidecar_opts *o, bool rewarm, int64_t snapshot_id)
{
    outcome out = run_job(o, rewarm, snapshot_id);
    if (out.r.rc)
        fail_msg("%s failed: %d %s", rewarm ? "rewarm" : "snapshot", out.r.rc, out.r.err.msg);
    return out;
}

/* ---- tests ---- */

#define TRACK_KEY "igor:builds:track:travis-ci:ORG/REPO:org/repo:43"

static void flush_rewarm(void **state, sg_snapshot_method method)
{
    fixture *f = *state;
    enum { JOBS = 200 };
    seed_igor(f, 1, JOBS);
    cmd_ok(f, "SET %s %s EX 18000", TRACK_KEY, "marked as running");
    cmd_ok(f, "SET cache:1 not-igor");
    sg_sidecar_opts o = opts_for(f);
    o.method = method;

    outcome snap = run_ok(&o, false, 0);
    assert_true(snap.r.snapshot_id > 0);
    assert_int_equal(snap.r.keys, 2 * JOBS + 1); /* igor:* only */
    assert_int_equal(snap.r.profile_keys, 2 * JOBS + 1);
    assert_false(snap.r.suspect);
    assert_int_equal(snap.r.suspect_reason[0], '\0');
    assert_true(snap.r.seconds > 0);

    long long ttl_before = cmd_int(f, "PTTL %s", TRACK_KEY);
    cmd_ok(f, "FLUSHALL");
    /* the poller wrote a key after the wipe: the rewarm must keep it */
    cmd_ok(f, "HSET igor:jenkins-prod:TEAM-A/SERVICE-7:team-a/service-7 lastPollCycleTimestamp "
              "1526039999999");

    outcome warm = run_ok(&o, true, 0);
    assert_int_equal(warm.r.snapshot_id, snap.r.snapshot_id);
    assert_int_equal(warm.r.restored, 2 * JOBS);
    assert_int_equal(warm.r.skipped_existing, 1);
    assert_int_equal(warm.r.skipped_expired, 0);
    assert_int_equal(warm.r.failed, 0);
    assert_int_equal(warm.r.keys, 2 * JOBS + 1);

    assert_int_equal(cmd_int(f, "DBSIZE"), 2 * JOBS + 1);
    assert_int_equal(cmd_int(f, "EXISTS cache:1"), 0); /* not a profile key */
    char *v = hget_cursor(f, 7);
    assert_string_equal(v, "1526039999999");
    free(v);
    for (int i = 1; i <= JOBS; i += 37) {
        if (i == 7)
            continue;
        char want[24];
        snprintf(want, sizeof want, "%lld", seed_cursor(i));
        v = hget_cursor(f, i);
        assert_non_null(v);
        assert_string_equal(v, want);
        free(v);
        assert_int_equal(cmd_int(f,
                                 "HLEN igor:jenkins-prod:TEAM-A/SERVICE-%d:team-a/service-%d:"
                                 "lastPollCycleTimestamp:%lld",
                                 i, i, seed_cursor(i)),
                         3);
        assert_int_equal(
            cmd_int(f, "PTTL igor:jenkins-prod:TEAM-A/SERVICE-%d:team-a/service-%d", i, i),
            -1); /* Jenkins keys have no TTL, and get none */
    }
    /* the expiry is absolute: what was left of it, not a fresh 5 h */
    long long ttl_after = cmd_int(f, "PTTL %s", TRACK_KEY);
    assert_true(ttl_after > 0);
    assert_true(ttl_after <= ttl_before);
    assert_true(ttl_after > ttl_before - 60000);

    /* a second rewarm finds everything there and overwrites nothing */
    outcome again = run_ok(&o, true, 0);
    assert_int_equal(again.r.restored, 0);
    assert_int_equal(again.r.skipped_existing, 2 * JOBS + 1);
    v = hget_cursor(f, 7);
    assert_string_equal(v, "1526039999999");
    free(v);
}

static void snapshot_flush_rewarm(void **state)
{
    flush_rewarm(state, SG_SNAPSHOT_SCAN);
}

/* The same with the daemon's snapshots read from the RDB of a SYNC. */
static void snapshot_flush_rewarm_sync(void **state)
{
    flush_rewarm(state, SG_SNAPSHOT_SYNC);
}

static void suspect_snapshot_is_not_rewarmed_by_default(void **state)
{
    fixture *f = *state;
    seed_igor(f, 1, 100);
    sg_sidecar_opts o = opts_for(f);
    o.keep = 1;
    outcome good = run_ok(&o, false, 0);
    assert_false(good.r.suspect);

    cmd_ok(f, "FLUSHALL");
    seed_igor(f, 1, 1);
    outcome bad = run_ok(&o, false, 0);
    assert_true(bad.r.suspect);
    assert_int_equal(bad.r.profile_keys, 2);
    char want[160];
    snprintf(want, sizeof want,
             "found 2 igor keys, the last good snapshot %lld had 200 (below 50%%)",
             (long long)good.r.snapshot_id);
    assert_string_equal(bad.r.suspect_reason, want);
    assert_int_equal(bad.r.pruned, 0); /* keep 1: the newest, and the good one regardless */
    outcome bad2 = run_ok(&o, false, 0);
    assert_true(bad2.r.suspect);
    assert_int_equal(bad2.r.pruned, 1); /* the older suspect one */

    cmd_ok(f, "FLUSHALL");
    outcome warm = run_ok(&o, true, 0);
    assert_int_equal(warm.r.snapshot_id, good.r.snapshot_id);
    assert_int_equal(warm.r.restored, 200);

    /* a suspect snapshot by its id */
    cmd_ok(f, "FLUSHALL");
    outcome by_id = run_ok(&o, true, bad2.r.snapshot_id);
    assert_int_equal(by_id.r.snapshot_id, bad2.r.snapshot_id);
    assert_int_equal(by_id.r.restored, 2);
    assert_int_equal(cmd_int(f, "DBSIZE"), 2);

    /* with the check off, few keys make a good snapshot */
    o.suspect_below_pct = 0;
    outcome accepted = run_ok(&o, false, 0);
    assert_false(accepted.r.suspect);
}

/* While jobs run, the loop is free: a 1 ms timer keeps firing. A rewarm and
 * a snapshot run side by side, each on its own connections. */
typedef struct busy {
    uv_timer_t timer;
    int pending;          /* jobs not reported yet */
    int ticks_while_busy; /* timer ticks while a job was outstanding */
    outcome snap, warm;
} busy;

static void busy_tick(uv_timer_t *t)
{
    busy *b = t->data;
    if (b->pending)
        b->ticks_while_busy++;
}

static void busy_report(busy *b)
{
    if (--b->pending == 0)
        uv_close((uv_handle_t *)&b->timer, NULL);
}

static void busy_snap_done(void *ud, const sg_sidecar_result *r)
{
    busy *b = ud;
    on_done(&b->snap, r);
    busy_report(b);
}

static void busy_warm_done(void *ud, const sg_sidecar_result *r)
{
    busy *b = ud;
    on_done(&b->warm, r);
    busy_report(b);
}

static void loop_keeps_running(void **state)
{
    fixture *f = *state;
    enum { JOBS = 5000 };
    seed_igor(f, 1, JOBS);
    sg_sidecar_opts o = opts_for(f);
    outcome first = run_ok(&o, false, 0);
    cmd_ok(f, "FLUSHALL");

    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    busy b = {.pending = 2};
    assert_int_equal(uv_timer_init(&loop, &b.timer), 0);
    b.timer.data = &b;
    assert_int_equal(uv_timer_start(&b.timer, busy_tick, 1, 1), 0);
    sg_error err = {0};
    assert_int_equal(sg_sidecar_rewarm(&loop, &o, 0, busy_warm_done, &b, &err), 0);
    assert_int_equal(sg_sidecar_snapshot(&loop, &o, "periodic", busy_snap_done, &b, &err), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);

    assert_int_equal(b.pending, 0);
    assert_true(b.ticks_while_busy > 0);
    if (b.warm.r.rc)
        fail_msg("rewarm: %s", b.warm.r.err.msg);
    if (b.snap.r.rc)
        fail_msg("snapshot: %s", b.snap.r.err.msg);
    assert_int_equal(b.warm.r.snapshot_id, first.r.snapshot_id);
    assert_int_equal(b.warm.r.restored, 2 * JOBS);
    assert_true(b.snap.r.snapshot_id > first.r.snapshot_id);
    assert_int_equal(cmd_int(f, "DBSIZE"), 2 * JOBS);
}

static void errors(void **state)
{
    fixture *f = *state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    outcome out = {0};
    sg_error err = {0};
    sg_sidecar_opts o = opts_for(f);

    /* refused at the call: done is never called */
    o.redis_url = "http://nope";
    assert_int_equal(sg_sidecar_snapshot(&loop, &o, NULL, on_done, &out, &err), SG_EUSAGE);
    o = opts_for(f);
    o.profile = SG_PROFILE_NONE;
    assert_int_equal(sg_sidecar_rewarm(&loop, &o, 0, on_done, &out, &err), SG_EUSAGE);
    assert_non_null(strstr(err.msg, "profile"));
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(out.calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);

    /* no snapshot yet: nothing to rewarm from */
    o = opts_for(f);
    outcome r = run_job(&o, true, 0);
    assert_int_equal(r.r.rc, SG_ENOTFOUND);
    assert_int_equal(r.r.err.code, SG_ENOTFOUND);
    assert_non_null(strstr(r.r.err.msg, "no good igor snapshot"));
    r = run_job(&o, true, 12345);
    assert_int_equal(r.r.rc, SG_ENOTFOUND);

    /* nobody listening */
    char url[64], addr[32];
    int port = redis_fixture_free_port();
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    o.redis_url = url;
    r = run_job(&o, false, 0);
    assert_int_equal(r.r.rc, SG_EREDIS);
    assert_int_equal(r.r.snapshot_id, 0);
    assert_non_null(strstr(r.r.err.msg, addr));

    /* a store that cannot be opened */
    o = opts_for(f);
    o.db_path = "/dev/null/sg.db";
    r = run_job(&o, false, 0);
    assert_int_equal(r.r.rc, SG_ESTORE);
    assert_non_null(strstr(r.r.err.msg, "/dev/null/sg.db"));
}

/* The password comes from the URL or, as for the CLI, the environment. */
static void password_from_environment(void **state)
{
    fixture *f = *state;
    seed_igor(f, 1, 3);
    cmd_ok(f, "CONFIG SET requirepass s3cret");
    unsetenv("STORMGUARD_REDIS_PASSWORD");
    unsetenv("REDISCLI_AUTH");
    sg_sidecar_opts o = opts_for(f);
    outcome r = run_job(&o, false, 0);
    assert_int_equal(r.r.rc, SG_EREDIS);
    assert_null(strstr(r.r.err.msg, "s3cret"));

    setenv("STORMGUARD_REDIS_PASSWORD", "s3cret", 1);
    r = run_ok(&o, false, 0);
    assert_int_equal(r.r.keys, 6);
    unsetenv("STORMGUARD_REDIS_PASSWORD");

    char url[96];
    snprintf(url, sizeof url, "redis://:s3cret@127.0.0.1:%d", f->port);
    o.redis_url = url;
    r = run_ok(&o, false, 0);
    assert_int_equal(r.r.keys, 6);
    cmd_ok(f, "AUTH s3cret");
}

/* ---- the snapshot's PTTL-free path (scan.c) ---- */

typedef struct ttl_probe {
    fixture *f;
    int calls;
} ttl_probe;

/* The first progress report, mid-snapshot: a key with an expiry appears. */
static void key_with_ttl_appears(void *ud, int64_t done, double elapsed)
{
    (void)done;
    (void)elapsed;
    ttl_probe *p = ud;
    if (p->calls++ == 0)
        cmd_ok(p->f, "SET late:ttl v PX 3600000");
}

static int64_t store_int(fixture *f, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* A database where no key expires is snapshotted without PTTL; a key with an
 * expiry that appears meanwhile makes the snapshot start over with PTTL, so
 * no key is stored without the expiry it had. */
static void snapshot_skips_pttl_without_expiring_keys(void **state)
{
    fixture *f = *state;
    enum { N = 300000 };
    for (int i = 0; i < N; i++)
        redisAppendCommand(f->rc, "SET plain:%d v", i);
    for (int i = 0; i < N; i++) {
        void *r;
        assert_int_equal(redisGetReply(f->rc, &r), REDIS_OK);
        freeReplyObject(r);
    }
    sg_redis_url u;
    sg_error err = {0};
    assert_int_equal(sg_redis_url_parse(f->url, &u, &err), 0);
    sg_rconn c;
    assert_int_equal(sg_rconn_open(&c, &u, 5000, 0, &err), 0);
    sg_store *s;
    sg_store_options so = {0};
    assert_int_equal(sg_store_open(f->db, &so, &s, &err), 0);

    /* no expiring key before or after: stored without expiry, one pass */
    sg_snapshot_opts o = {.scan_count = 1000};
    sg_snapshot_result r;
    assert_int_equal(sg_snapshot_take(&c, s, &o, &r, &err), 0);
    assert_int_equal(r.keys, N);
    assert_int_equal(store_int(f, "SELECT count(*) FROM snapshot_key WHERE expire_at_ms IS NULL"),
                     N);

    /* one appears mid-snapshot: taken again, with PTTL */
    ttl_probe p = {.f = f};
    o.progress = key_with_ttl_appears;
    o.progress_ud = &p;
    assert_int_equal(sg_snapshot_take(&c, s, &o, &r, &err), 0);
    assert_true(p.calls >= 2); /* a report came before the end */
    assert_int_equal(r.keys, N + 1);
    char sql[160];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM snapshot_key WHERE snapshot_id = %lld AND "
             "CAST(key AS TEXT) = 'late:ttl' AND expire_at_ms > %lld",
             (long long)r.id, (long long)sg_now_ms());
    assert_int_equal(store_int(f, sql), 1);
    assert_int_equal(store_int(f, "SELECT count(*) FROM snapshot"), 2);
    sg_store_free(s);
    sg_rconn_close(&c);
    sg_redis_url_close(&u);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the daemon: a dropped connection is an error, not a kill */
    const struct CMUnitTest tests[] = {
        T(snapshot_flush_rewarm),
        T(snapshot_flush_rewarm_sync),
        T(suspect_snapshot_is_not_rewarmed_by_default),
        T(loop_keeps_running),
        T(errors),
        T(password_from_environment),
        T(snapshot_skips_pttl_without_expiring_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
