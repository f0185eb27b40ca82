/* Tests the gate core (core.h) without sockets, as the simulator drives it:
 * a virtual clock, a real journal on a temporary SQLite file, a real libuv
 * loop, and a deliverer that records what it is handed (core_driver.h).
 * Each test names the behaviour it would catch breaking: classification
 * and the ledger, guard and storm modes in virtual time, the held queue's
 * release and drain, the delivery queue's spill and refill order,
 * refusals. Replicas' cores: test_core_replicas.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "stormguard/base/clock.h"
#include "stormguard/base/util.h"
#include "stormguard/gate/core.h"
#include "stormguard/store/events.h"
#include "stormguard/store/snapshots.h"

#include "core_driver.h"

#define T0 1700000000000LL

typedef struct fixture {
    char dir[64], db[128];
    uv_loop_t loop;
    sg_vclock clock;
    sg_strlist build_paths;
    driven d; /* the core, what its deliverer got, its last answer */
    sg_hold_result hold;
    bool hold_done;
} fixture;

static void settle(fixture *f);

static void start_core(fixture *f, sg_on_storm on_storm, int64_t drain_rate, bool storms)
{
    sg_core_opts o;
    driven_core_opts(&o, f->db, &f->clock.clock, &f->build_paths, storms);
    o.on_storm = on_storm;
    o.drain_rate = drain_rate;
    sg_error err;
    if (sg_core_start(&f->loop, &o, &f->d.core, &err))
        fail_msg("sg_core_start: %s", err.msg);
    driven_attach(&f->d);
    settle(f); /* the first refill (nothing pending) is back */
}

static int setup(void **state)
{
    fixture *f = sg_xcalloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/sg-core-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->db, sizeof f->db, "%s/sg.db", f->dir);
    uv_loop_init(&f->loop);
    sg_vclock_init(&f->clock, T0);
    sg_strlist_push(&f->build_paths, "/");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    driven *d = &f->d;
    driven_close(&f->loop, &d, 1);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    sg_strlist_clear(&f->build_paths);
    char path[160];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s%s", f->db, suffix[i]);
        unlink(path);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static void settle(fixture *f)
{
    driven *d = &f->d;
    driven_settle(&f->loop, &d, 1);
}

/* Posts an Igor build event of job (jenkins-prod) started at start_ms (its
 * duration when duration_ms >= 0) and waits for its answer. */
static const sg_answer *post_timed(fixture *f, const char *job, int64_t number, int64_t start_ms,
                                   int64_t duration_ms)
{
    driven_submit(&f->d, job, number, start_ms, duration_ms);
    while (!f->d.answered)
        uv_run(&f->loop, UV_RUN_ONCE);
    settle(f);
    return &f->d.last;
}

/* A build that started a day before T0. */
static const sg_answer *post(fixture *f, const char *job, int64_t number)
{
    return post_timed(f, job, number, T0 - 86400000 + number, -1);
}

static void deliver_all(fixture *f)
{
    driven_deliver_all(&f->d);
    settle(f);
}

static void advance(fixture *f, int64_t ms)
{
    sg_vclock_set(&f->clock, f->clock.now_ms + ms);
    sg_core_tick(f->d.core);
    settle(f);
}

static void on_hold(void *ud, const sg_hold_result *r)
{
    fixture *f = ud;
    f->hold = *r;
    f->hold_done = true;
}

/* An unknown job's build is forwarded in normal mode; posted again it is a
 * replay, answered 200 and not delivered (the journal's ledger check). */
static void unknown_forwarded_then_replay_suppressed(void **state)
{
    fixture *f = *state;
    start_core(f, SG_ON_STORM_HOLD, 0, false);
    const sg_answer *a = post(f, "team-a/svc", 7);
    assert_int_equal(a->status, 200);
    assert_int_equal(a->kind, SG_KIND_UNKNOWN);
    assert_int_equal(a->state, SG_STATE_PENDING);
    assert_int_equal(f->d.npushed, 1);
    assert_int_equal(f->d.pushed[0]->id, a->id);
    deliver_all(f);
    a = post(f, "team-a/svc", 7);
    assert_int_equal(a->kind, SG_KIND_REPLAY);
    assert_int_equal(a->state, SG_STATE_SUPPRESSED);
    assert_int_equal(f->d.npushed, 1);
    sg_core_stats st;
    sg_core_stats_get(f->d.core, &st);
    assert_int_equal(st.counts[SG_KIND_UNKNOWN][SG_STATE_FORWARDED], 1); /* forwarded */
    assert_int_equal(st.counts[SG_KIND_REPLAY][SG_STATE_SUPPRESSED], 1); /* suppressed */
    assert_int_equal(st.ledger_builds, 1);
}

/* A wipe turns guard mode on: an unknown build is held, not delivered; once
 * guard_ms passed on the virtual clock the mode is over and the next one is
 * forwarded (with the real clock the mode would still be on). */
static void guard_holds_unknown_until_it_expires(void **state)
{
    fixture *f = *state;
    start_core(f, SG_ON_STORM_HOLD, 0, false);
    sg_guard *g = sg_core_guard(f->d.core);
    bool expected = sg_guard_wipe(g, "flush", "canary gone", f->clock.now_ms);
    assert_false(expected);
    assert_int_equal(sg_guard_mode(g, "jenkins-prod"), SG_MODE_GUARD);
    const sg_answer *a = post(f, "team-b/svc", 1);
    assert_int_equal(a->state, SG_STATE_HELD);
    assert_int_equal(f->d.npushed, 0);
    assert_int_equal(sg_core_held(f->d.core), 1);
    advance(f, 600001);
    assert_int_equal(sg_guard_mode(g, NULL), SG_MODE_NORMAL);
    a = post(f, "team-c/svc", 1);
    assert_int_equal(a->state, SG_STATE_PENDING);
    assert_int_equal(f->d.npushed, 1);
    assert_int_equal(sg_core_held(f->d.core), 1); /* leaving guard mode releases nothing */
}

/* A flush announced before the wipe: the wipe is expected (no rewarm), but
 * an announce is expected only for expect_wipe_ms (10 min) of virtual time. */
static void announced_wipe_is_expected_for_ten_minutes(void **state)
{
    fixture *f = *state;
    start_core(f, SG_ON_STORM_HOLD, 0, false);
    sg_guard *g = sg_core_guard(f->d.core);
    sg_guard_announce(g, "flush announced by test");
    assert_true(sg_guard_wipe(g, "flush", "canary gone", f->clock.now_ms));
    sg_guard_announce(g, "flush announced by test");
    advance(f, 10 * 60 * 1000 + 1);
    assert_false(sg_guard_wipe(g, "flush", "canary gone", f->clock.now_ms));
    sg_guard_report gr;
    sg_guard_report_get(g, &gr);
    assert_int_equal(gr.wipes, 2);
}

/* release --newest-only: of a job's held builds only the newest is
 * released (and delivered, through the refill), the older superseded. */
static void release_newest_only(void **state)
{
    fixture *f = *state;
    start_core(f, SG_ON_STORM_HOLD, 0, false);
    sg_guard_on(sg_core_guard(f->d.core), "turned on by test");
    for (int n = 1; n <= 3; n++)
        assert_int_equal(post(f, "team-d/svc", n)->state, SG_STATE_HELD);
    assert_int_equal(post(f, "team-e/svc", 9)->state, SG_STATE_HELD);
    sg_hold_request r = {.filter = {.all = true}, .newest_only = true, .actor = "test"};
    sg_hold_release(sg_core_hold(f->d.core), &r, on_hold, f);
    while (!f->hold_done)
        uv_run(&f->loop, UV_RUN_ONCE);
    settle(f);
    assert_int_equal(f->hold.status, 0);
    assert_int_equal(f->hold.released, 2);
    assert_int_equal(f->hold.superseded, 2);
    assert_int_equal(f->d.npushed, 2);
    int64_t numbers[2];
    for (int i = 0; i < 2; i++) {
        const char *body = f->d.pushed[i]->body;
        const char *at = strstr(body, "\"number\":");
        assert_non_null(at);
        numbers[i] = strtoll(at + 9, NULL, 10);
    }
    assert_true((numbers[0] == 3 && numbers[1] == 9) || (numbers[0] == 9 && numbers[1] == 3));
    assert_int_equal(sg_core_held(f->d.core), 0);
}

/* on_storm = drain at 2 a second: each tick releases at most 2 held builds
 * (newest per job), on the virtual clock's ticks. */
static void drain_releases_at_its_rate(void **state)
{
    fixture *f = *state;
    start_core(f, SG_ON_STORM_DRAIN, 2, false);
    sg_guard_on(sg_core_guard(f->d.core), "turned on by test");
    char job[32];
    for (int i = 0; i < 5; i++) {
        snprintf(job, sizeof job, "team-f/svc-%d", i);
        assert_int_equal(post(f, job, 1)->state, SG_STATE_HELD);
    }
    advance(f, 1000);
    assert_int_equal(f->d.npushed, 2);
    advance(f, 1000);
    assert_int_equal(f->d.npushed, 4);
    advance(f, 1000);
    assert_int_equal(f->d.npushed, 5);
    assert_int_equal(sg_core_held(f->d.core), 0);
}

/* Past the spill point the journal is the queue: nothing is pushed while
 * the deliverer is full; once it has room the refill hands the events over
 * in journal order. */
static void spill_and_refill_in_order(void **state)
{
    fixture *f = *state;
    start_core(f, SG_ON_STORM_HOLD, 0, false);
    f->d.full = true;
    int64_t ids[6];
    char job[32];
    for (int i = 0; i < 6; i++) {
        snprintf(job, sizeof job, "team-g/svc-%d", i % 3);
        ids[i] = post(f, job, i + 1)->id;
    }
    assert_int_equal(f->d.npushed, 0);
    f->d.full = false;
    advance(f, 1000);
    assert_int_equal(f->d.npushed, 6);
    for (int i = 0; i < 6; i++)
        assert_int_equal(f->d.pushed[i]->id, ids[i]);
    /* caught up: the next one goes straight to the deliverer */
    int64_t id = post(f, "team-g/svc-9", 1)->id;
    assert_int_equal(f->d.npushed, 7);
    assert_int_equal(f->d.pushed[6]->id, id);
}

/* The storm detector in virtual time: the third build of one job within the
 * window starts storm mode for its source, and it is held; the storm ends
 * after its cooldown without another signal. */
static void storm_signal_holds_then_cools_down(void **state)
{
    fixture *f = *state;
    start_core(f, SG_ON_STORM_HOLD, 0, true);
    assert_int_equal(post(f, "team-h/svc", 1)->state, SG_STATE_PENDING);
    assert_int_equal(post(f, "team-h/svc", 2)->state, SG_STATE_PENDING);
    assert_int_equal(post(f, "team-h/svc", 3)->state, SG_STATE_HELD);
    sg_guard *g = sg_core_guard(f->d.core);
    assert_int_equal(sg_guard_mode(g, "jenkins-prod"), SG_MODE_STORM);
    assert_int_equal(sg_guard_mode(g, "jenkins-other"), SG_MODE_NORMAL);
    advance(f, 600001); /* past the cooldown (300 s) and the guard it extended (600 s) */
    assert_int_equal(sg_guard_mode(g, NULL), SG_MODE_NORMAL);
}

/* A malformed event is refused without a trace; a stopping core refuses
 * everything. */
static void refusals(void **state)
{
    fixture *f = *state;
    start_core(f, SG_ON_STORM_HOLD, 0, false);
    sg_request rq = {.method = "POST",
                     .method_len = 4,
                     .path = "/",
                     .path_len = 1,
                     .headers = "",
                     .body = "{\"details\": oops",
                     .body_len = 16};
    sg_error err;
    assert_int_equal(sg_core_submit(f->d.core, &rq, driven_on_answer, &f->d, &err), SG_EINVAL);
    assert_non_null(strstr(err.msg, "line 1"));
    settle(f);
    sg_core_stats st;
    sg_core_stats_get(f->d.core, &st);
    assert_int_equal(st.rejected, 1);
    int64_t journaled = 0;
    for (int k = 0; k < SG_CORE_KINDS; k++)
        for (int s = 0; s < SG_STATE_COUNT; s++)
            journaled += st.counts[k][s];
    assert_int_equal(journaled, 0);
    assert_false(f->d.answered);
    sg_core_stop(f->d.core);
    rq.body = "{}";
    rq.body_len = 2;
    assert_int_equal(sg_core_submit(f->d.core, &rq, driven_on_answer, &f->d, &err), SG_EBUSY);
    sg_hold_request r = {.filter = {.all = true}, .actor = "test"};
    sg_hold_release(sg_core_hold(f->d.core), &r, on_hold, f);
    assert_true(f->hold_done);
    assert_int_equal(f->hold.status, SG_EBUSY);
    assert_int_equal(sg_core_audit(f->d.core, "test", "guard on", NULL, NULL, NULL), SG_EBUSY);
    /* reads go on while it stops, not once the close began (its reader goes) */
    sg_core_close(f->d.core, driven_on_closed, &f->d);
    assert_int_equal(sg_core_events(f->d.core, NULL, NULL, NULL, 10, NULL, NULL), SG_EBUSY);
    assert_int_equal(sg_core_held_summary(f->d.core, 10, NULL, NULL), SG_EBUSY);
    assert_int_equal(sg_core_sample(f->d.core, 1, NULL, NULL, NULL), SG_EBUSY);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_true(f->d.closed);
    sg_core_free(f->d.core);
    f->d.core = NULL;
}

/* A profile snapshot taken at taken_at (virtual time) in which job has
 * cursor cursor_ms: written through a connection of the test's own. */
static int64_t snapshot(fixture *f, int64_t taken_at, const char *job, int64_t cursor_ms)
{
    sg_store *st;
    sg_store_options so = {0};
    sg_error err;
    assert_int_equal(sg_store_open(f->db, &so, &st, &err), 0);
    sg_snapshot_info m = {.taken_at_ms = taken_at,
                          .reason = "periodic",
                          .redis = "redis://r:6379/0",
                          .redis_version = "7.0.0",
                          .profile = "igor",
                          .selection = "igor:*",
                          .profile_pattern = "igor:*"};
    int64_t id;
    assert_int_equal(sg_store_snapshot_begin(st, &m, &id, &err), 0);
    assert_int_equal(
        sg_store_index_cursor(st, "jenkins-prod", 12, job, strlen(job), cursor_ms, &err), 0);
    sg_snapshot_info t = {.key_count = 1, .profile_keys = 1, .state = "complete"};
    assert_int_equal(sg_store_snapshot_commit(st, &t, &err), 0);
    sg_store_free(st);
    return id;
}

/* After a wipe, while guard or storm mode is on, a snapshot taken since the
 * wipe is not the baseline (the poller is rebuilding its keys from the
 * replay: half the old state); once the modes are over it is. A snapshot
 * taken before the wipe (a pre-flush one) is taken at once. */
static void no_baseline_from_a_replay_in_progress(void **state)
{
    fixture *f = *state;
    int64_t first = snapshot(f, T0 - 60000, "team-x/svc", T0 - 86400000);
    start_core(f, SG_ON_STORM_HOLD, 0, false);
    sg_core_stats st;
    sg_core_stats_get(f->d.core, &st);
    assert_int_equal(st.baseline_id, first);
    /* a snapshot taken before the wipe becomes the baseline even in guard mode */
    int64_t before = snapshot(f, T0 - 1000, "team-y/svc", T0 - 86400000);
    sg_guard *g = sg_core_guard(f->d.core);
    advance(f, 1000);
    assert_false(sg_guard_wipe(g, "flush", "canary gone", f->clock.now_ms));
    sg_core_reload(f->d.core);
    settle(f);
    sg_core_stats_get(f->d.core, &st);
    assert_int_equal(st.baseline_id, before);
    /* one taken after the wipe waits while guard mode is on */
    int64_t after = snapshot(f, f->clock.now_ms + 1000, "team-z/svc", T0 - 86400000);
    advance(f, 5000);
    sg_core_reload(f->d.core);
    settle(f);
    sg_core_stats_get(f->d.core, &st);
    assert_int_equal(st.baseline_id, before);
    /* team-z is no job of the baseline yet: unknown, held */
    assert_int_equal(post(f, "team-z/svc", 5)->state, SG_STATE_HELD);
    advance(f, 600001); /* guard over */
    assert_int_equal(sg_guard_mode(g, NULL), SG_MODE_NORMAL);
    sg_core_reload(f->d.core);
    settle(f);
    sg_core_stats_get(f->d.core, &st);
    assert_int_equal(st.baseline_id, after);
}

/* Posts an Igor build of job that started at start_ms and ran duration_ms. */
/* A gate started after the wipe: its first snapshot finds none of the
 * poller's keys, and the poller posts builds: a wipe (guard mode), noticed
 * once. A build that ended after it is genuine and forwarded; one that
 * ended before it is held. */
static void cold_start_empty_poller_is_a_wipe(void **state)
{
    fixture *f = *state;
    sg_store *st;
    sg_store_options so = {0};
    sg_error err;
    assert_int_equal(sg_store_open(f->db, &so, &st, &err), 0);
    sg_snapshot_info m = {.taken_at_ms = T0 - 1000,
                          .reason = "periodic",
                          .redis = "redis://r",
                          .redis_version = "7",
                          .profile = "igor",
                          .selection = "igor:*",
                          .profile_pattern = "igor:*"};
    int64_t id;
    assert_int_equal(sg_store_snapshot_begin(st, &m, &id, &err), 0);
    sg_snapshot_info t = {.key_count = 0, .profile_keys = 0, .state = "complete"};
    assert_int_equal(sg_store_snapshot_commit(st, &t, &err), 0);
    sg_store_free(st);
    start_core(f, SG_ON_STORM_HOLD, 0, false);
    sg_guard *g = sg_core_guard(f->d.core);
    assert_int_equal(sg_guard_mode(g, NULL), SG_MODE_NORMAL);
    /* an old build, replayed: the first event notices the empty poller */
    const sg_answer *a = post_timed(f, "team-q/svc", 12, T0 - 86400000, 300000);
    assert_int_equal(sg_guard_mode(g, NULL), SG_MODE_GUARD);
    assert_int_equal(a->state, SG_STATE_HELD);
    sg_guard_report gr;
    sg_guard_report_get(g, &gr);
    assert_int_equal(gr.wipes, 1);
    assert_int_equal(post_timed(f, "team-r/svc", 3, T0 - 3600000, 60000)->state, SG_STATE_HELD);
    sg_guard_report_get(g, &gr);
    assert_int_equal(gr.wipes, 1); /* once per baseline */
    /* started before the wipe, ended well after it: never announced */
    advance(f, 5 * 60000);
    a = post_timed(f, "team-s/svc", 8, T0 - 60000, 4 * 60000 + 1);
    assert_int_equal(a->kind, SG_KIND_NEW);
    assert_int_equal(a->state, SG_STATE_PENDING);
    /* ended within a minute of the wipe (the clocks may differ): held */
    a = post_timed(f, "team-t/svc", 8, T0 - 60000, 90000);
    assert_int_equal(a->state, SG_STATE_HELD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(unknown_forwarded_then_replay_suppressed, setup, teardown),
        cmocka_unit_test_setup_teardown(guard_holds_unknown_until_it_expires, setup, teardown),
        cmocka_unit_test_setup_teardown(announced_wipe_is_expected_for_ten_minutes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(release_newest_only, setup, teardown),
        cmocka_unit_test_setup_teardown(drain_releases_at_its_rate, setup, teardown),
        cmocka_unit_test_setup_teardown(spill_and_refill_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(storm_signal_holds_then_cools_down, setup, teardown),
        cmocka_unit_test_setup_teardown(refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(no_baseline_from_a_replay_in_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(cold_start_empty_poller_is_a_wipe, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
