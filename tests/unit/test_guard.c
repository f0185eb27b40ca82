/* Tests guard.h on a virtual clock, without a journal: modes start and end
 * on the clock's time, per source; storms extend guard mode; the owner hears
 * every transition; the report counts. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "stormguard/base/clock.h"
#include "stormguard/gate/guard.h"

#define T0 1700000000000LL

typedef struct fixture {
    sg_vclock clock;
    sg_guard *g;
    int started, ended;
    sg_mode last_mode;
} fixture;

static void on_mode(void *ud, const sg_mode_change *c)
{
    fixture *f = ud;
    if (c->started)
        f->started++;
    else
        f->ended++;
    f->last_mode = c->mode;
}

static sg_guard *make(fixture *f, bool storms)
{
    memset(f, 0, sizeof *f);
    sg_vclock_init(&f->clock, T0);
    sg_guard_opts o = {.guard_ms = 600000, .cooldown_ms = 300000, .clock = &f->clock.clock};
    sg_storm_opts_default(&o.storm);
    if (!storms) {
        o.storm.same_job_builds = o.storm.first_seen_jobs = o.storm.replay_share_pct = 0;
        o.storm.rate_factor = 0;
    }
    sg_error err;
    assert_int_equal(sg_guard_new(&o, on_mode, f, &f->g, &err), 0);
    return f->g;
}

static void tick_at(fixture *f, int64_t ms)
{
    sg_vclock_set(&f->clock, T0 + ms);
    sg_guard_tick(f->g);
}

/* A wipe: guard mode for every source, for guard_ms of the clock's time. */
static void wipe_guards_for_its_duration(void **state)
{
    (void)state;
    fixture f;
    sg_guard *g = make(&f, false);
    assert_int_equal(sg_guard_mode(g, "m1"), SG_MODE_NORMAL);
    assert_false(sg_guard_wipe(g, "flush", "canary gone", T0));
    assert_int_equal(sg_guard_mode(g, "m1"), SG_MODE_GUARD);
    assert_int_equal(sg_guard_mode(g, "m2"), SG_MODE_GUARD);
    assert_int_equal(f.started, 1);
    tick_at(&f, 599999);
    assert_int_equal(sg_guard_mode(g, NULL), SG_MODE_GUARD);
    assert_int_equal(f.ended, 0);
    tick_at(&f, 600001);
    assert_int_equal(sg_guard_mode(g, NULL), SG_MODE_NORMAL);
    assert_int_equal(f.ended, 1);
    sg_guard_report r;
    sg_guard_report_get(g, &r);
    assert_int_equal(r.wipes, 1);
    assert_int_equal(r.last_wipe_at_ms, T0);
    assert_false(r.guard);
    sg_guard_free(g);
}

/* An operator's guard on and off; the report names the reason while on. */
static void operator_on_and_off(void **state)
{
    (void)state;
    fixture f;
    sg_guard *g = make(&f, false);
    sg_guard_on(g, "turned on by alice");
    sg_guard_report r;
    sg_guard_report_get(g, &r);
    assert_true(r.guard);
    assert_string_equal(r.guard_reason, "turned on by alice");
    assert_int_equal(r.guard_until_ms, T0 + 600000);
    assert_int_equal(r.mode, SG_MODE_GUARD);
    sg_guard_off(g, "turned off by alice");
    assert_int_equal(sg_guard_mode(g, NULL), SG_MODE_NORMAL);
    assert_int_equal(f.ended, 1);
    sg_guard_free(g);
}

/* An announce makes the next wipe expected, for ten minutes only, and each
 * wipe within 5 s of the one before it (one flush of a Cluster's masters,
 * each seen apart); a wipe after that is not the flush. */
static void announce_expects_the_wipe(void **state)
{
    (void)state;
    fixture f;
    sg_guard *g = make(&f, false);
    sg_guard_announce(g, "flush announced");
    assert_int_equal(sg_guard_mode(g, NULL), SG_MODE_GUARD);
    tick_at(&f, 1000);
    assert_true(sg_guard_wipe(g, "flush", "master 1", T0 + 1000));
    tick_at(&f, 1010);
    assert_true(sg_guard_wipe(g, "flush", "master 2", T0 + 1010));
    tick_at(&f, 5999);
    assert_true(sg_guard_wipe(g, "flush", "master 3", T0 + 5999));
    tick_at(&f, 10998); /* 5 s after the one before it, not after the first */
    assert_true(sg_guard_wipe(g, "flush", "master 4", T0 + 10998));
    tick_at(&f, 15999);
    assert_false(sg_guard_wipe(g, "flush", "again", T0 + 15999)); /* not the announced flush */
    tick_at(&f, 16000);
    assert_false(sg_guard_wipe(g, "flush", "and again", T0 + 16000));
    /* the wipes that follow never outlast the announce's own window */
    sg_guard_announce(g, "flush announced");
    tick_at(&f, 16000 + 10 * 60 * 1000 - 1000);
    assert_true(sg_guard_wipe(g, "flush", "in time", T0 + 615000));
    tick_at(&f, 16000 + 10 * 60 * 1000 + 1);
    assert_false(sg_guard_wipe(g, "flush", "late", T0 + 616001));
    sg_guard_free(g);
}

/* A restart or failover that kept the data is counted and changes no mode. */
static void server_change_keeps_the_mode(void **state)
{
    (void)state;
    fixture f;
    sg_guard *g = make(&f, false);
    sg_guard_server_changed(g, "failover", "another server answers, canary kept");
    assert_int_equal(sg_guard_mode(g, NULL), SG_MODE_NORMAL);
    assert_int_equal(f.started, 0);
    sg_guard_report r;
    sg_guard_report_get(g, &r);
    assert_int_equal(r.server_changes, 1);
    assert_int_equal(r.wipes, 0);
    sg_guard_free(g);
}

/* Storms are per source and cool down; a storm extends a guard that is on. */
static void storm_per_source_and_cooldown(void **state)
{
    (void)state;
    fixture f;
    sg_guard *g = make(&f, true);
    for (int n = 1; n <= 3; n++)
        sg_guard_observe(g, "m1", "team/job", SG_KIND_UNKNOWN);
    assert_int_equal(sg_guard_mode(g, "m1"), SG_MODE_STORM);
    assert_int_equal(sg_guard_mode(g, "m2"), SG_MODE_NORMAL);
    assert_int_equal(sg_guard_mode(g, NULL), SG_MODE_STORM);
    sg_guard_report r;
    sg_guard_report_get(g, &r);
    assert_int_equal(r.storm_signals, 1);
    assert_int_equal(r.nstorms, 1);
    assert_string_equal(r.storms[0].scope, "m1");
    tick_at(&f, 300001);
    assert_int_equal(sg_guard_mode(g, "m1"), SG_MODE_NORMAL);
    assert_int_equal(f.last_mode, SG_MODE_STORM);
    assert_int_equal(f.ended, 1);
    /* guard on, then a storm at 500 s extends guard to 500 s + 600 s */
    sg_guard_on(g, "on");
    tick_at(&f, 500000);
    for (int n = 1; n <= 3; n++)
        sg_guard_observe(g, "m2", "team/other", SG_KIND_UNKNOWN);
    tick_at(&f, 300001 + 600000 + 1);
    assert_int_equal(sg_guard_mode(g, "m1"), SG_MODE_GUARD);
    sg_guard_free(g);
}

/* Another replica's modes: on until the time it gives, not guard_ms or
 * the cooldown; told to the owner; a mode already over is not adopted. */
static void adopted_modes_last_until_given(void **state)
{
    (void)state;
    fixture f;
    sg_guard *g = make(&f, false);
    sg_guard_adopt(g, NULL, false, T0 - 1, "over");
    assert_int_equal(sg_guard_mode(g, NULL), SG_MODE_NORMAL);
    assert_int_equal(f.started, 0);
    sg_guard_adopt(g, NULL, false, T0 + 5000, "wipe (flush) (from replica r2)");
    assert_int_equal(sg_guard_mode(g, NULL), SG_MODE_GUARD);
    assert_int_equal(f.started, 1);
    sg_guard_report r;
    sg_guard_report_get(g, &r);
    assert_int_equal(r.guard_until_ms, T0 + 5000);
    assert_string_equal(r.guard_reason, "wipe (flush) (from replica r2)");
    assert_int_equal(r.wipes, 0); /* the wipe was the other replica's */
    sg_guard_adopt(g, "m1", true, T0 + 3000, "first_seen (from replica r2)");
    assert_int_equal(sg_guard_mode(g, "m1"), SG_MODE_STORM);
    assert_int_equal(sg_guard_mode(g, "m2"), SG_MODE_GUARD);
    tick_at(&f, 3001);
    assert_int_equal(sg_guard_mode(g, "m1"), SG_MODE_GUARD);
    tick_at(&f, 5001);
    assert_int_equal(sg_guard_mode(g, NULL), SG_MODE_NORMAL);
    assert_int_equal(f.ended, 2);
    sg_guard_free(g);
}

/* A threshold out of range is a configuration error naming [storm]. */
static void bad_storm_options(void **state)
{
    (void)state;
    sg_vclock clock;
    sg_vclock_init(&clock, T0);
    sg_guard_opts o = {.guard_ms = 1, .cooldown_ms = 1, .clock = &clock.clock};
    sg_storm_opts_default(&o.storm);
    o.storm.same_job_builds = 1000;
    sg_guard *g = (sg_guard *)&clock; /* must stay untouched */
    sg_error err;
    assert_int_equal(sg_guard_new(&o, NULL, NULL, &g, &err), SG_EUSAGE);
    assert_ptr_equal(g, (sg_guard *)&clock);
    assert_non_null(strstr(err.msg, "[storm]"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(wipe_guards_for_its_duration),
        cmocka_unit_test(operator_on_and_off),
        cmocka_unit_test(announce_expects_the_wipe),
        cmocka_unit_test(server_change_keeps_the_mode),
        cmocka_unit_test(storm_per_source_and_cooldown),
        cmocka_unit_test(adopted_modes_last_until_given),
        cmocka_unit_test(bad_storm_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
