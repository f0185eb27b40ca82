/* Tests hold.h's decision, the state a classified event is journaled in,
 * against the guard's mode on a virtual clock: replays are suppressed and new
 * builds forwarded in every mode; an unknown build is forwarded in normal
 * mode, held (or dropped, with on_storm = drop) in guard and storm mode, for
 * its own source only. Releases, drops and the drain run on the journal and
 * are tested with the core (test_core.c) and end to end. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "stormguard/base/clock.h"
#include "stormguard/gate/hold.h"
#include "stormguard/store/events.h"

#define T0 1700000000000LL

static sg_guard *guard(sg_vclock *clock)
{
    sg_vclock_init(clock, T0);
    sg_guard_opts o = {.guard_ms = 60000, .cooldown_ms = 60000, .clock = &clock->clock};
    sg_storm_opts_default(&o.storm);
    sg_guard *g;
    sg_error err;
    assert_int_equal(sg_guard_new(&o, NULL, NULL, &g, &err), 0);
    return g;
}

static void decisions_by_mode(void **state)
{
    (void)state;
    sg_vclock clock;
    sg_guard *g = guard(&clock);
    sg_hold_opts o = {.on_storm = SG_ON_STORM_HOLD, .guard = g, .clock = &clock.clock};
    sg_hold *h = sg_hold_new(&o);
    const char *why = "poison";
    assert_int_equal(sg_hold_state(h, SG_KIND_UNKNOWN, "m1", &why), SG_STATE_PENDING);
    assert_null(why);
    assert_int_equal(sg_hold_state(h, SG_KIND_REPLAY, "m1", &why), SG_STATE_SUPPRESSED);
    sg_guard_on(g, "test");
    why = "poison";
    assert_int_equal(sg_hold_state(h, SG_KIND_UNKNOWN, "m1", &why), SG_STATE_HELD);
    assert_null(why);
    assert_int_equal(sg_hold_state(h, SG_KIND_NEW, "m1", &why), SG_STATE_PENDING);
    assert_int_equal(sg_hold_state(h, SG_KIND_REPLAY, "m1", &why), SG_STATE_SUPPRESSED);
    assert_int_equal(sg_hold_state(h, SG_KIND_PASSTHROUGH, NULL, &why), SG_STATE_PENDING);
    sg_guard_off(g, "test");
    /* a storm on m1 holds m1's unknown builds, not m2's */
    for (int i = 0; i < 3; i++)
        sg_guard_observe(g, "m1", "team/job", SG_KIND_UNKNOWN);
    assert_int_equal(sg_hold_state(h, SG_KIND_UNKNOWN, "m1", &why), SG_STATE_HELD);
    assert_int_equal(sg_hold_state(h, SG_KIND_UNKNOWN, "m2", &why), SG_STATE_PENDING);
    /* over after the cooldown, on the clock's time */
    sg_vclock_set(&clock, T0 + 60001);
    sg_guard_tick(g);
    assert_int_equal(sg_hold_state(h, SG_KIND_UNKNOWN, "m1", &why), SG_STATE_PENDING);
    sg_hold_free(h);
    sg_guard_free(g);
}

static void drop_on_arrival(void **state)
{
    (void)state;
    sg_vclock clock;
    sg_guard *g = guard(&clock);
    sg_hold_opts o = {.on_storm = SG_ON_STORM_DROP, .guard = g, .clock = &clock.clock};
    sg_hold *h = sg_hold_new(&o);
    const char *why = NULL;
    sg_guard_wipe(g, "flush", "canary gone", T0);
    assert_int_equal(sg_hold_state(h, SG_KIND_UNKNOWN, "m1", &why), SG_STATE_DROPPED);
    assert_non_null(why);
    assert_non_null(strstr(why, "on_storm = drop"));
    assert_int_equal(sg_hold_state(h, SG_KIND_NEW, "m1", &why), SG_STATE_PENDING);
    sg_hold_free(h);
    sg_guard_free(g);
}

static void on_storm_names(void **state)
{
    (void)state;
    sg_on_storm m = SG_ON_STORM_DRAIN;
    assert_int_equal(sg_on_storm_parse("hold", &m), 0);
    assert_int_equal(m, SG_ON_STORM_HOLD);
    assert_int_equal(sg_on_storm_parse("drain", &m), 0);
    assert_int_equal(m, SG_ON_STORM_DRAIN);
    assert_int_equal(sg_on_storm_parse("drop", &m), 0);
    assert_int_equal(m, SG_ON_STORM_DROP);
    assert_int_equal(sg_on_storm_parse("panic", &m), SG_EINVAL);
    assert_int_equal(sg_on_storm_parse(NULL, &m), SG_EINVAL);
    assert_int_equal(m, SG_ON_STORM_DROP);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decisions_by_mode),
        cmocka_unit_test(drop_on_arrival),
        cmocka_unit_test(on_storm_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
