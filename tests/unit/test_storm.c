/* Tests storm.h: each storm signal at its threshold and just below, window
 * expiry, per-source scopes, repeat suppression, the rate backstop's floor
 * and its baseline that must not learn a storm, bounded memory under a flood
 * of distinct names; the mode machine (guard, storm, extension, expiry,
 * transitions); the drain bucket; superseding. Time is passed explicitly, so
 * nothing here sleeps. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stormguard/gate/classify.h"
#include "stormguard/base/error.h"
#include "stormguard/gate/storm.h"
#include "stormguard/base/util.h"

#define T0 INT64_C(1526030000000) /* epoch ms, on a second boundary */
#define SEC INT64_C(1000)
#define WINDOW (60 * SEC)

static const char PROD[] = "jenkins-prod";
static const char STAGING[] = "jenkins-staging";

/* Options with every signal off but the ones a test turns on. */
static sg_storm_opts opts_off(void)
{
    sg_storm_opts o;
    sg_storm_opts_default(&o);
    o.same_job_builds = 0;
    o.first_seen_jobs = 0;
    o.first_seen_tags = 0;
    o.replay_share_pct = 0;
    o.rate_factor = 0;
    return o;
}

static void storm_init(sg_storm *s, const sg_storm_opts *o)
{
    sg_error err = {0};
    memset(s, 0x5a, sizeof *s); /* init must not rely on zeroed memory */
    if (sg_storm_init(s, o, &err) != 0)
        fail_msg("sg_storm_init: %s", err.msg);
}

/* The storm state of one test, with the triggers of the last event. */
typedef struct run {
    sg_storm s;
    sg_storm_trigger out[SG_STORM_NSIGNALS];
    size_t n;
} run;

static size_t feed(run *r, int64_t now, const char *source, const char *job, sg_kind kind)
{
    memset(r->out, 0x5a, sizeof r->out);
    r->n = sg_storm_observe(&r->s, now, source, job, kind, r->out);
    assert_true(r->n <= SG_STORM_NSIGNALS);
    return r->n;
}

static size_t feed_tag(run *r, int64_t now, const char *account, const char *repo, const char *tag,
                       sg_kind kind, bool first_seen)
{
    memset(r->out, 0x5a, sizeof r->out);
    r->n = sg_storm_observe_tag(&r->s, now, account, repo, tag, kind, first_seen, r->out);
    assert_true(r->n <= SG_STORM_NSIGNALS);
    return r->n;
}

/* The trigger of signal among the last event's, or NULL. */
static const sg_storm_trigger *fired(const run *r, sg_storm_signal signal)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->out[i].signal == signal)
            return &r->out[i];
    return NULL;
}

static const char *job_name(char *buf, size_t size, int i)
{
    snprintf(buf, size, "team-a/service-%d", i);
    return buf;
}

/* ---- same_job ---- */

static void same_job_trips_at_threshold(void **state)
{
    (void)state;
    run r;
    sg_storm_opts o = opts_off();
    o.same_job_builds = 3;
    storm_init(&r.s, &o);

    assert_int_equal(feed(&r, T0, PROD, "team-a/service-1", SG_KIND_UNKNOWN), 0);
    assert_int_equal(feed(&r, T0 + 1 * SEC, PROD, "team-a/service-1", SG_KIND_NEW), 0);
    /* pass-through events never count, whatever names they carry */
    for (int i = 0; i < 5; i++)
        assert_int_equal(feed(&r, T0 + 2 * SEC, PROD, "team-a/service-1", SG_KIND_PASSTHROUGH), 0);
    assert_int_equal(feed(&r, T0 + 3 * SEC, PROD, "team-a/service-1", SG_KIND_NEW), 1);
    const sg_storm_trigger *t = fired(&r, SG_STORM_SAME_JOB);
    assert_non_null(t);
    assert_string_equal(t->name, "same_job");
    assert_ptr_equal(t->scope, PROD);
    assert_false(t->repeat);
    assert_int_equal(t->count, 3);
    assert_int_equal(t->threshold, 3);
    assert_string_equal(t->message,
                        "job team-a/service-1 on jenkins-prod completed 3 builds within 60 s "
                        "(threshold 3)");

    /* the storm goes on: it keeps firing, as a repeat */
    assert_int_equal(feed(&r, T0 + 4 * SEC, PROD, "team-a/service-1", SG_KIND_NEW), 1);
    assert_true(r.out[0].repeat);
    assert_int_equal(r.out[0].signal, SG_STORM_SAME_JOB);
    sg_storm_close(&r.s);
}

static void same_job_counts_replays(void **state)
{
    (void)state;
    run r;
    sg_storm_opts o = opts_off();
    o.same_job_builds = 3;
    storm_init(&r.s, &o);
    /* a storm of replays is a storm too */
    assert_int_equal(feed(&r, T0, PROD, "svc", SG_KIND_REPLAY), 0);
    assert_int_equal(feed(&r, T0, PROD, "svc", SG_KIND_REPLAY), 0);
    assert_int_equal(feed(&r, T0, PROD, "svc", SG_KIND_REPLAY), 1);
    assert_int_equal(r.out[0].signal, SG_STORM_SAME_JOB);
    assert_false(r.out[0].repeat);
    sg_storm_close(&r.s);
}

static void same_job_window_expiry(void **state)
{
    (void)state;
    run r;
    sg_storm_opts o = opts_off();
    o.same_job_builds = 3;
    storm_init(&r.s, &o);

    /* the third build exactly one window after the first: not within it */
    assert_int_equal(feed(&r, T0, PROD, "svc", SG_KIND_NEW), 0);
    assert_int_equal(feed(&r, T0 + 30 * SEC, PROD, "svc", SG_KIND_NEW), 0);
    assert_int_equal(feed(&r, T0 + WINDOW, PROD, "svc", SG_KIND_NEW), 0);
    /* the last three are */
    assert_int_equal(feed(&r, T0 + WINDOW + 1, PROD, "svc", SG_KIND_NEW), 1);

    /* one millisecond inside the window trips */
    assert_int_equal(feed(&r, T0, PROD, "other", SG_KIND_NEW), 0); /* late clock: now stays */
    int64_t t1 = T0 + 10 * WINDOW;
    assert_int_equal(feed(&r, t1, STAGING, "svc", SG_KIND_NEW), 0);
    assert_int_equal(feed(&r, t1 + 1, STAGING, "svc", SG_KIND_NEW), 0);
    assert_int_equal(feed(&r, t1 + WINDOW - 1, STAGING, "svc", SG_KIND_NEW), 1);

    /* an idle job is forgotten after a window: it starts from scratch */
    int64_t t2 = t1 + 3 * WINDOW;
    assert_int_equal(feed(&r, t2, STAGING, "svc", SG_KIND_NEW), 0);
    assert_int_equal(feed(&r, t2 + SEC, STAGING, "svc", SG_KIND_NEW), 0);
    sg_storm_stats st;
    sg_storm_stats_get(&r.s, &st);
    assert_int_equal(st.jobs, 1);
    assert_int_equal(st.sources, 1);
    sg_storm_close(&r.s);
}

static void same_job_scopes(void **state)
{
    (void)state;
    run r;
    sg_storm_opts o = opts_off();
    o.same_job_builds = 3;
    storm_init(&r.s, &o);

    /* one job name on two sources is two jobs; two jobs on a source too */
    feed(&r, T0, PROD, "svc", SG_KIND_NEW);
    feed(&r, T0, PROD, "svc", SG_KIND_NEW);
    feed(&r, T0, STAGING, "svc", SG_KIND_NEW);
    feed(&r, T0, STAGING, "svc", SG_KIND_NEW);
    feed(&r, T0, PROD, "svc-2", SG_KIND_NEW);
    assert_int_equal(feed(&r, T0, PROD, "svc-2", SG_KIND_NEW), 0);
    /* names split differently are different jobs */
    feed(&r, T0, "a/b", "c", SG_KIND_NEW);
    feed(&r, T0, "a", "b/c", SG_KIND_NEW);
    assert_int_equal(feed(&r, T0, "a/b", "c", SG_KIND_NEW), 0);

    assert_int_equal(feed(&r, T0 + 1, PROD, "svc", SG_KIND_NEW), 1);
    assert_ptr_equal(r.out[0].scope, PROD);
    assert_false(r.out[0].repeat);
    /* the other source's first trip is reported on its own */
    assert_int_equal(feed(&r, T0 + 2, STAGING, "svc", SG_KIND_NEW), 1);
    assert_ptr_equal(r.out[0].scope, STAGING);
    assert_false(r.out[0].repeat);
    /* another job of the first source: the same scope and signal, a repeat */
    assert_int_equal(feed(&r, T0 + 3, PROD, "svc-2", SG_KIND_NEW), 1);
    assert_true(r.out[0].repeat);
    assert_string_equal(r.out[0].message,
                        "job svc-2 on jenkins-prod completed 3 builds within 60 s (threshold 3)");
    sg_storm_close(&r.s);
}

static void repeat_suppression_per_window(void **state)
{
    (void)state;
    run r;
    sg_storm_opts o = opts_off();
    o.same_job_builds = 2;
    storm_init(&r.s, &o);

    feed(&r, T0, PROD, "svc", SG_KIND_NEW);
    assert_int_equal(feed(&r, T0, PROD, "svc", SG_KIND_NEW), 1);
    assert_false(r.out[0].repeat);
    /* firing on every build for the next window, reported once */
    int fresh = 0;
    for (int64_t t = T0 + SEC; t < T0 + WINDOW; t += SEC) {
        assert_int_equal(feed(&r, t, PROD, "svc", SG_KIND_NEW), 1);
        fresh += !r.out[0].repeat;
    }
    assert_int_equal(fresh, 0);
    /* a window after the report, reported again */
    assert_int_equal(feed(&r, T0 + WINDOW, PROD, "svc", SG_KIND_NEW), 1);
    assert_false(r.out[0].repeat);
    assert_int_equal(feed(&r, T0 + WINDOW + 1, PROD, "svc", SG_KIND_NEW), 1);
    assert_true(r.out[0].repeat);
    sg_storm_close(&r.s);
}

/* ---- first_seen ---- */

static void first_seen_trips_at_threshold(void **state)
{
    (void)state;
    run r;
    char job[64];
    sg_storm_opts o = opts_off();
    o.first_seen_jobs = 20;
    storm_init(&r.s, &o);

    for (int i = 0; i < 19; i++)
        assert_int_equal(
            feed(&r, T0 + i * 100, PROD, job_name(job, sizeof job, i), SG_KIND_UNKNOWN), 0);
    /* more builds of a job already counted, known jobs, replays: no */
    for (int i = 0; i < 5; i++)
        assert_int_equal(feed(&r, T0 + 2 * SEC, PROD, "team-a/service-0", SG_KIND_UNKNOWN), 0);
    assert_int_equal(feed(&r, T0 + 2 * SEC, PROD, "known", SG_KIND_NEW), 0);
    assert_int_equal(feed(&r, T0 + 2 * SEC, PROD, "old", SG_KIND_REPLAY), 0);
    /* another source's first-seen jobs are its own */
    assert_int_equal(feed(&r, T0 + 2 * SEC, STAGING, "team-a/service-19", SG_KIND_UNKNOWN), 0);

    assert_int_equal(feed(&r, T0 + 3 * SEC, PROD, "team-a/service-19", SG_KIND_UNKNOWN), 1);
    const sg_storm_trigger *t = fired(&r, SG_STORM_FIRST_SEEN);
    assert_non_null(t);
    assert_ptr_equal(t->scope, PROD);
    assert_false(t->repeat);
    assert_int_equal(t->count, 20);
    assert_int_equal(t->threshold, 20);
    assert_string_equal(t->message,
                        "20 jobs never seen before reported on jenkins-prod within 60 s "
                        "(threshold 20)");
    /* ongoing: any event of the source sees the count over the threshold */
    assert_int_equal(feed(&r, T0 + 4 * SEC, PROD, "known", SG_KIND_NEW), 1);
    assert_true(r.out[0].repeat);
    assert_int_equal(feed(&r, T0 + 4 * SEC, STAGING, "x", SG_KIND_UNKNOWN), 0);
    sg_storm_close(&r.s);
}

static void first_seen_window_expiry(void **state)
{
    (void)state;
    run r;
    char job[64];
    sg_storm_opts o = opts_off();
    o.first_seen_jobs = 20;
    storm_init(&r.s, &o);

    /* ten at the start, ten a window later: never twenty within one */
    for (int i = 0; i < 10; i++)
        assert_int_equal(feed(&r, T0, PROD, job_name(job, sizeof job, i), SG_KIND_UNKNOWN), 0);
    for (int i = 10; i < 20; i++)
        assert_int_equal(feed(&r, T0 + WINDOW, PROD, job_name(job, sizeof job, i), SG_KIND_UNKNOWN),
                         0);
    /* nineteen, then the twentieth a second before the window closes */
    int64_t t1 = T0 + 5 * WINDOW;
    for (int i = 100; i < 119; i++)
        assert_int_equal(feed(&r, t1, PROD, job_name(job, sizeof job, i), SG_KIND_UNKNOWN), 0);
    assert_int_equal(feed(&r, t1 + WINDOW - SEC, PROD, "late", SG_KIND_UNKNOWN), 1);
    assert_int_equal(r.out[0].signal, SG_STORM_FIRST_SEEN);
    sg_storm_close(&r.s);
}

/* ---- replay_share ---- */

static void replay_share_trips_at_threshold(void **state)
{
    (void)state;
    run r;
    char job[64];
    sg_storm_opts o = opts_off();
    o.replay_min = 20;
    o.replay_share_pct = 50;
    storm_init(&r.s, &o);

    /* 10 replays and 9 new: half, but fewer than replay_min events */
    for (int i = 0; i < 10; i++)
        assert_int_equal(feed(&r, T0, PROD, job_name(job, sizeof job, i), SG_KIND_REPLAY), 0);
    for (int i = 10; i < 19; i++)
        assert_int_equal(feed(&r, T0, PROD, job_name(job, sizeof job, i), SG_KIND_NEW), 0);
    /* pass-through events are not events of the source */
    assert_int_equal(feed(&r, T0, PROD, NULL, SG_KIND_PASSTHROUGH), 0);
    /* the twentieth event: 10 of 20 */
    assert_int_equal(feed(&r, T0 + SEC, PROD, "team-a/service-19", SG_KIND_UNKNOWN), 1);
    const sg_storm_trigger *t = fired(&r, SG_STORM_REPLAY_SHARE);
    assert_non_null(t);
    assert_ptr_equal(t->scope, PROD);
    assert_false(t->repeat);
    assert_int_equal(t->count, 50);
    assert_int_equal(t->threshold, 50);
    assert_string_equal(t->message, "10 of 20 builds from jenkins-prod within 60 s were replays "
                                    "(50%, threshold 50% of at least 20)");
    /* one more new build: 10 of 21 is below half */
    assert_int_equal(feed(&r, T0 + SEC, PROD, "svc", SG_KIND_NEW), 0);
    sg_storm_close(&r.s);
}

static void replay_share_below_and_scopes(void **state)
{
    (void)state;
    run r;
    sg_storm_opts o = opts_off();
    o.replay_min = 20;
    o.replay_share_pct = 50;
    storm_init(&r.s, &o);

    /* 9 replays of 20 */
    for (int i = 0; i < 9; i++)
        assert_int_equal(feed(&r, T0, PROD, "svc", SG_KIND_REPLAY), 0);
    for (int i = 0; i < 11; i++)
        assert_int_equal(feed(&r, T0, PROD, "svc", SG_KIND_NEW), 0);
    /* another source's replays do not lift this one's share ... */
    for (int i = 0; i < 19; i++)
        assert_int_equal(feed(&r, T0, STAGING, "svc", SG_KIND_REPLAY), 0);
    assert_int_equal(feed(&r, T0, PROD, "svc", SG_KIND_NEW), 0);
    /* ... but trip it */
    assert_int_equal(feed(&r, T0, STAGING, "svc", SG_KIND_REPLAY), 1);
    assert_ptr_equal(r.out[0].scope, STAGING);
    assert_int_equal(r.out[0].count, 100);

    /* a window later the old replays are gone */
    for (int i = 0; i < 19; i++)
        assert_int_equal(feed(&r, T0 + WINDOW, STAGING, "svc", SG_KIND_NEW), 0);
    assert_int_equal(feed(&r, T0 + WINDOW, STAGING, "svc", SG_KIND_REPLAY), 0);
    sg_storm_close(&r.s);
}

/* ---- rate backstop ---- */

/* Feeds count events of kind spread over the second starting at sec_ms;
 * returns how many fired the rate signal. */
static int rate_second(run *r, int64_t sec_ms, int count, sg_kind kind)
{
    int trips = 0;
    for (int i = 0; i < count; i++) {
        feed(r, sec_ms + (int64_t)i * 999 / (count > 1 ? count - 1 : 1), PROD, "svc", kind);
        trips += fired(r, SG_STORM_RATE) != NULL;
    }
    return trips;
}

/* Events observed as new that the journal found to be replays after all
 * (sg_storm_replayed) count as replays for the share and stop counting for
 * the rate backstop within their second. */
static void replayed_corrects_share_and_rate(void **state)
{
    (void)state;
    run r;
    char job[64];
    sg_storm_opts o = opts_off();
    o.replay_min = 20;
    o.replay_share_pct = 50;
    o.rate_factor = 5;
    o.rate_floor = 20;
    storm_init(&r.s, &o);
    for (int i = 0; i < 20; i++)
        assert_int_equal(feed(&r, T0 + i, PROD, job_name(job, sizeof job, i), SG_KIND_NEW), 0);
    /* 9 of 20 turn out replays: 45 %, below the share */
    for (int i = 0; i < 9; i++) {
        r.n = sg_storm_replayed(&r.s, T0 + i, T0 + 100 + i, PROD, r.out);
        assert_int_equal(r.n, 0);
    }
    /* the tenth: 10 of 20 */
    r.n = sg_storm_replayed(&r.s, T0 + 9, T0 + 200, PROD, r.out);
    assert_int_equal(r.n, 1);
    const sg_storm_trigger *t = fired(&r, SG_STORM_REPLAY_SHARE);
    assert_non_null(t);
    assert_ptr_equal(t->scope, PROD);
    assert_string_equal(t->message, "10 of 20 builds from jenkins-prod within 60 s were replays "
                                    "(50%, threshold 50% of at least 20)");
    /* the rate: 20 counted in this second, 10 of them taken back, so ten
     * more new ones stay at the floor (without the correction the first
     * of them would be the 21st) */
    for (int i = 0; i < 10; i++)
        assert_null(
            (feed(&r, T0 + 300 + i, STAGING, "svc", SG_KIND_NEW), fired(&r, SG_STORM_RATE)));
    assert_non_null((feed(&r, T0 + 400, STAGING, "svc", SG_KIND_NEW), fired(&r, SG_STORM_RATE)));
    /* a correction for a second that is over takes nothing from the next */
    r.n = sg_storm_replayed(&r.s, T0 + 500, T0 + SEC + 10, STAGING, r.out);
    for (int i = 0; i < 20; i++)
        assert_null(
            (feed(&r, T0 + SEC + 20 + i, STAGING, "svc", SG_KIND_NEW), fired(&r, SG_STORM_RATE)));
    assert_non_null(
        (feed(&r, T0 + SEC + 50, STAGING, "svc", SG_KIND_NEW), fired(&r, SG_STORM_RATE)));
    sg_storm_close(&r.s);
}

static void rate_floor(void **state)
{
    (void)state;
    run r;
    sg_storm_opts o = opts_off();
    o.rate_factor = 5;
    o.rate_floor = 20;
    storm_init(&r.s, &o);

    /* cold: no baseline, so the floor decides; 20 a second is not above it */
    assert_int_equal(rate_second(&r, T0, 20, SG_KIND_NEW), 0);
    /* replays and pass-through events are not counted */
    assert_int_equal(rate_second(&r, T0 + SEC, 100, SG_KIND_REPLAY), 0);
    assert_int_equal(rate_second(&r, T0 + SEC, 100, SG_KIND_PASSTHROUGH), 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(feed(&r, T0 + 2 * SEC + i, PROD, "svc", SG_KIND_NEW), 0);
        assert_int_equal(feed(&r, T0 + 2 * SEC + 500 + i, PROD, "svc", SG_KIND_UNKNOWN), 0);
    }
    /* the 21st */
    assert_int_equal(feed(&r, T0 + 2 * SEC + 999, PROD, "svc", SG_KIND_UNKNOWN), 1);
    const sg_storm_trigger *t = fired(&r, SG_STORM_RATE);
    assert_non_null(t);
    assert_null(t->scope);
    assert_false(t->repeat);
    assert_int_equal(t->count, 21);
    assert_int_equal(t->threshold, 20);
    assert_non_null(strstr(t->message, "21 new or unknown builds within 1 s, above 20/s"));
    /* the rest of that second fires too, as repeats */
    assert_int_equal(feed(&r, T0 + 2 * SEC + 999, PROD, "svc", SG_KIND_NEW), 1);
    assert_true(r.out[0].repeat);
    /* a new second starts from zero */
    assert_int_equal(feed(&r, T0 + 3 * SEC, PROD, "svc", SG_KIND_NEW), 0);
    sg_storm_close(&r.s);
}

static void rate_baseline_does_not_learn_the_storm(void **state)
{
    (void)state;
    run r;
    sg_storm_opts o = opts_off();
    o.rate_factor = 5;
    o.rate_floor = 20;
    o.rate_baseline_ms = 300 * SEC;
    storm_init(&r.s, &o);
    sg_storm_stats st;

    /* 25 minutes at 10 builds a second: the baseline converges near 10 */
    int64_t t = T0;
    for (int i = 0; i < 1500; i++, t += SEC)
        assert_int_equal(rate_second(&r, t, 10, SG_KIND_NEW), 0);
    feed(&r, t, PROD, "svc", SG_KIND_PASSTHROUGH); /* closes the last second */
    sg_storm_stats_get(&r.s, &st);
    assert_true(st.baseline > 9.8 && st.baseline < 10.0);
    const double before = st.baseline;
    const int64_t limit = st.rate_threshold;
    /* factor x baseline, above the floor */
    assert_int_equal(limit, (int64_t)floor(5 * st.baseline));
    assert_true(limit > o.rate_floor);

    /* at the threshold: no; one more: yes, counted against 5 x baseline */
    assert_int_equal(rate_second(&r, t, (int)limit, SG_KIND_NEW), 0);
    t += SEC;
    feed(&r, t, PROD, "svc", SG_KIND_PASSTHROUGH);
    sg_storm_stats_get(&r.s, &st);
    const double after_busy = st.baseline; /* that second was learned */
    assert_true(after_busy > before);
    const int64_t limit2 = st.rate_threshold;
    assert_int_equal(rate_second(&r, t, (int)limit2 + 1, SG_KIND_NEW), 1);
    t += SEC;

    /* ten minutes of storm at 400 a second: every second trips, none is
     * learned */
    for (int i = 0; i < 600; i++, t += SEC)
        assert_int_equal(rate_second(&r, t, 400, SG_KIND_UNKNOWN), 400 - (int)limit2);
    feed(&r, t, PROD, "svc", SG_KIND_PASSTHROUGH);
    sg_storm_stats_get(&r.s, &st);
    assert_true(fabs(st.baseline - after_busy) < 1e-9);
    assert_int_equal(st.rate_threshold, limit2);
    /* so a storm after the storm still trips at the same point */
    assert_int_equal(rate_second(&r, t, (int)limit2 + 1, SG_KIND_NEW), 1);
    t += SEC;

    /* an hour of quiet: the baseline decays and the floor takes over */
    t += 3600 * SEC;
    feed(&r, t, PROD, "svc", SG_KIND_PASSTHROUGH);
    sg_storm_stats_get(&r.s, &st);
    assert_true(st.baseline < 0.01);
    assert_int_equal(st.rate_threshold, 20);
    sg_storm_close(&r.s);
}

static void rate_repeat_suppression(void **state)
{
    (void)state;
    run r;
    sg_storm_opts o = opts_off();
    o.rate_factor = 5;
    o.rate_floor = 20;
    storm_init(&r.s, &o);

    int fresh = 0, trips = 0;
    int64_t t = T0;
    for (int s = 0; s < 60; s++, t += SEC) {
        for (int i = 0; i < 30; i++) {
            feed(&r, t + i, PROD, "svc", SG_KIND_NEW);
            const sg_storm_trigger *tr = fired(&r, SG_STORM_RATE);
            if (tr) {
                trips++;
                fresh += !tr->repeat;
            }
        }
    }
    assert_int_equal(trips, 60 * 10);
    assert_int_equal(fresh, 1);
    /* a window after the first report */
    rate_second(&r, t, 21, SG_KIND_NEW);
    assert_false(fired(&r, SG_STORM_RATE)->repeat);
    sg_storm_close(&r.s);
}

/* ---- together ---- */

static void defaults_and_several_signals(void **state)
{
    (void)state;
    run r;
    char job[64];
    sg_storm_opts o;
    sg_storm_opts_default(&o);
    assert_int_equal(o.window_ms, 60 * SEC);
    assert_int_equal(o.same_job_builds, 3);
    assert_int_equal(o.first_seen_jobs, 20);
    assert_int_equal(o.replay_min, 20);
    assert_int_equal(o.replay_share_pct, 50);
    assert_true(o.rate_factor == 5.0);
    assert_int_equal(o.rate_floor, 20);
    assert_int_equal(o.rate_baseline_ms, 300 * SEC);
    storm_init(&r.s, &o);

    /* a cold start after a wipe: 19 jobs post a build each, then one job
     * posts its history within the same second */
    for (int i = 0; i < 19; i++)
        assert_int_equal(feed(&r, T0, PROD, job_name(job, sizeof job, i), SG_KIND_UNKNOWN), 0);
    assert_int_equal(feed(&r, T0, PROD, "svc", SG_KIND_UNKNOWN), 1); /* the 20th first-seen job */
    assert_int_equal(r.out[0].signal, SG_STORM_FIRST_SEEN);
    assert_int_equal(feed(&r, T0, PROD, "svc", SG_KIND_UNKNOWN), 2); /* 21 this second */
    assert_int_equal(r.out[0].signal, SG_STORM_FIRST_SEEN);
    assert_true(r.out[0].repeat);
    assert_int_equal(r.out[1].signal, SG_STORM_RATE);
    assert_false(r.out[1].repeat);
    /* cheapest first */
    assert_int_equal(feed(&r, T0, PROD, "svc", SG_KIND_UNKNOWN), 3);
    assert_int_equal(r.out[0].signal, SG_STORM_SAME_JOB);
    assert_false(r.out[0].repeat);
    assert_int_equal(r.out[1].signal, SG_STORM_FIRST_SEEN);
    assert_int_equal(r.out[2].signal, SG_STORM_RATE);
    assert_null(r.out[2].scope);
    sg_storm_close(&r.s);
}

static void opts_validation(void **state)
{
    (void)state;
    sg_storm_opts good;
    sg_storm_opts_default(&good);
    sg_error err = {0};
    assert_int_equal(sg_storm_opts_check(&good, &err), 0);

    /* each field out of range, one at a time */
    sg_storm_opts o;
#define EXPECT_BAD(field, value)                                                                   \
    do {                                                                                           \
        o = good;                                                                                  \
        o.field = value;                                                                           \
        memset(&err, 0, sizeof err);                                                               \
        assert_int_equal(sg_storm_opts_check(&o, &err), SG_EINVAL);                                \
        if (!strstr(err.msg, #field))                                                              \
            fail_msg("error for %s does not name it: %s", #field, err.msg);                        \
        sg_storm s;                                                                                \
        memset(&s, 0x5a, sizeof s);                                                                \
        assert_int_equal(sg_storm_init(&s, &o, &err), SG_EINVAL);                                  \
        assert_int_equal(((unsigned char *)&s)[0], 0x5a); /* untouched */                          \
    } while (0)
    EXPECT_BAD(window_ms, 0);
    EXPECT_BAD(same_job_builds, 1);
    EXPECT_BAD(same_job_builds, -1);
    EXPECT_BAD(same_job_builds, SG_STORM_SAME_JOB_MAX + 1);
    EXPECT_BAD(first_seen_jobs, -1);
    EXPECT_BAD(replay_min, -5);
    EXPECT_BAD(replay_share_pct, 101);
    EXPECT_BAD(rate_factor, -1);
    EXPECT_BAD(rate_factor, NAN);
    EXPECT_BAD(rate_floor, -1);
    EXPECT_BAD(rate_baseline_ms, 10);
    EXPECT_BAD(max_jobs, 0);
    EXPECT_BAD(max_sources, 0);
#undef EXPECT_BAD

    /* the edges that are fine */
    o = opts_off();
    o.same_job_builds = SG_STORM_SAME_JOB_MAX;
    o.window_ms = 1;
    o.max_jobs = 1;
    o.max_sources = 1;
    assert_int_equal(sg_storm_opts_check(&o, &err), 0);
    run r;
    storm_init(&r.s, &o);
    for (int i = 0; i < SG_STORM_SAME_JOB_MAX - 1; i++)
        assert_int_equal(feed(&r, T0, PROD, "svc", SG_KIND_NEW), 0);
    assert_int_equal(feed(&r, T0, PROD, "svc", SG_KIND_NEW), 1);
    /* a 1 ms window: one millisecond later it is all gone */
    assert_int_equal(feed(&r, T0 + 1, PROD, "svc", SG_KIND_NEW), 0);
    sg_storm_close(&r.s);
}

static void signal_names(void **state)
{
    (void)state;
    assert_string_equal(sg_storm_signal_name(SG_STORM_SAME_JOB), "same_job");
    assert_string_equal(sg_storm_signal_name(SG_STORM_FIRST_SEEN), "first_seen");
    assert_string_equal(sg_storm_signal_name(SG_STORM_REPLAY_SHARE), "replay_share");
    assert_string_equal(sg_storm_signal_name(SG_STORM_RATE), "rate");
    assert_string_equal(sg_storm_signal_name(SG_STORM_NSIGNALS), "?");
    assert_string_equal(sg_storm_signal_name((sg_storm_signal)-1), "?");
}

/* ---- memory bounds ---- */

static double elapsed_s(struct timespec a)
{
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

static void million_jobs_at_once_stay_capped(void **state)
{
    (void)state;
    run r;
    char job[64], source[32];
    sg_storm_opts o;
    sg_storm_opts_default(&o);
    /* a flood of distinct names fires the rate backstop on every event, and
     * formatting its message is not what this measures */
    o.rate_factor = 0;
    o.max_jobs = 1000;
    o.max_sources = 16;
    storm_init(&r.s, &o);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);

    /* all within one window: nothing expires, the caps must hold */
    for (int i = 0; i < 1000000; i++) {
        snprintf(source, sizeof source, "jenkins-%d", i % 1000);
        snprintf(job, sizeof job, "job-%d", i);
        sg_storm_observe(&r.s, T0 + i / 100, source, job, SG_KIND_NEW, r.out);
    }
    sg_storm_stats st;
    sg_storm_stats_get(&r.s, &st);
    assert_int_equal(st.jobs, 1000);
    assert_int_equal(st.sources, 16);
    assert_int_equal(st.evicted_jobs, 1000000 - 1000);
    assert_int_equal(st.evicted_sources, 1000000 - 16);
    assert_true(st.bytes < 200 * 1024);
    print_message("1,000,000 distinct jobs in %.2f s; %zu bytes tracked\n", elapsed_s(start),
                  st.bytes);
    sg_storm_close(&r.s);
}

static void million_jobs_over_time_expire(void **state)
{
    (void)state;
    run r;
    char job[64];
    sg_storm_opts o;
    sg_storm_opts_default(&o);
    o.rate_factor = 0;
    storm_init(&r.s, &o);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);

    /* 1,000 distinct jobs a second for 1,000 s: 60,000 of them within any
     * window, over the default cap of 50,000 */
    size_t peak = 0;
    for (int i = 0; i < 1000000; i++) {
        snprintf(job, sizeof job, "folder/job/job-%d", i);
        sg_storm_observe(&r.s, T0 + i, PROD, job, SG_KIND_NEW, r.out);
        if (i % 10000 == 0) {
            sg_storm_stats st;
            sg_storm_stats_get(&r.s, &st);
            if (st.jobs > peak)
                peak = st.jobs;
        }
    }
    sg_storm_stats st;
    sg_storm_stats_get(&r.s, &st);
    assert_true(peak <= (size_t)o.max_jobs);
    assert_int_equal(st.jobs, o.max_jobs);
    assert_true(st.bytes < 8 * 1024 * 1024);
    const size_t bytes = st.bytes;

    /* a window of quiet: everything expires; the arrays are reused */
    feed(&r, T0 + 1000000 + WINDOW, STAGING, "one", SG_KIND_NEW);
    sg_storm_stats_get(&r.s, &st);
    assert_int_equal(st.jobs, 1);
    assert_int_equal(st.sources, 1);
    assert_int_equal(st.bytes, bytes);
    print_message("1,000,000 jobs over 1,000 s in %.2f s; %zu bytes tracked at most\n",
                  elapsed_s(start), bytes);
    sg_storm_close(&r.s);
}

/* ---- modes ---- */

typedef struct heard {
    sg_mode_change c[16];
    char scope[16][64], detail[16][600];
    size_t n;
} heard;

static void listen_cb(const sg_mode_change *change, void *arg)
{
    heard *h = arg;
    assert_true(h->n < 16);
    h->c[h->n] = *change;
    /* the strings are only valid during the call */
    snprintf(h->scope[h->n], sizeof h->scope[0], "%s", change->scope ? change->scope : "(global)");
    snprintf(h->detail[h->n], sizeof h->detail[0], "%s", change->detail ? change->detail : "");
    h->c[h->n].scope = h->scope[h->n];
    h->c[h->n].detail = h->detail[h->n];
    h->n++;
}

static void guard_enters_extends_expires(void **state)
{
    (void)state;
    heard h = {0};
    sg_modes m;
    memset(&m, 0x5a, sizeof m);
    sg_modes_init(&m, listen_cb, &h);
    assert_int_equal(sg_modes_overall(&m, T0), SG_MODE_NORMAL);
    assert_false(sg_modes_guard_info(&m, T0, NULL));

    assert_true(sg_modes_guard(&m, T0, 60 * SEC, "redis wipe detected"));
    assert_int_equal(h.n, 1);
    assert_int_equal(h.c[0].mode, SG_MODE_GUARD);
    assert_true(h.c[0].started);
    assert_string_equal(h.c[0].detail, "redis wipe detected");
    assert_int_equal(h.c[0].since_ms, T0);

    assert_int_equal(sg_modes_for(&m, T0, PROD), SG_MODE_GUARD);
    assert_int_equal(sg_modes_for(&m, T0, NULL), SG_MODE_GUARD);
    assert_int_equal(sg_modes_overall(&m, T0), SG_MODE_GUARD);

    /* a shorter guard does not shorten it; a longer one extends it */
    assert_false(sg_modes_guard(&m, T0 + 10 * SEC, 30 * SEC, "flush announced"));
    sg_guard_info gi;
    assert_true(sg_modes_guard_info(&m, T0 + 10 * SEC, &gi));
    assert_int_equal(gi.until_ms, T0 + 60 * SEC);
    assert_false(sg_modes_guard(&m, T0 + 50 * SEC, 60 * SEC, "flush announced"));
    assert_true(sg_modes_guard_info(&m, T0 + 50 * SEC, &gi));
    assert_int_equal(gi.since_ms, T0);
    assert_int_equal(gi.until_ms, T0 + 110 * SEC);
    assert_string_equal(gi.reason, "redis wipe detected");
    assert_int_equal(h.n, 1);

    /* over at its until, even before a tick reports it */
    assert_int_equal(sg_modes_for(&m, T0 + 110 * SEC - 1, PROD), SG_MODE_GUARD);
    assert_int_equal(sg_modes_for(&m, T0 + 110 * SEC, PROD), SG_MODE_NORMAL);
    assert_int_equal(sg_modes_overall(&m, T0 + 110 * SEC), SG_MODE_NORMAL);
    assert_false(sg_modes_guard_info(&m, T0 + 110 * SEC, &gi));
    sg_modes_tick(&m, T0 + 100 * SEC);
    assert_int_equal(h.n, 1);
    sg_modes_tick(&m, T0 + 200 * SEC);
    assert_int_equal(h.n, 2);
    assert_false(h.c[1].started);
    assert_false(h.c[1].forced);
    assert_int_equal(h.c[1].mode, SG_MODE_GUARD);
    assert_int_equal(h.c[1].since_ms, T0);
    assert_int_equal(h.c[1].until_ms, T0 + 110 * SEC); /* when it ended, not when heard */
    assert_string_equal(h.c[1].detail, "redis wipe detected");
    sg_modes_tick(&m, T0 + 300 * SEC);
    assert_int_equal(h.n, 2);

    /* a new episode after the end; an expired one not yet ticked is
     * reported ended before the new one starts */
    assert_true(sg_modes_guard(&m, T0 + 400 * SEC, 10 * SEC, "second"));
    assert_true(sg_modes_guard(&m, T0 + 500 * SEC, 10 * SEC, "third"));
    assert_int_equal(h.n, 5);
    assert_true(h.c[2].started);
    assert_false(h.c[3].started);
    assert_string_equal(h.c[3].detail, "second");
    assert_int_equal(h.c[3].until_ms, T0 + 410 * SEC);
    assert_true(h.c[4].started);
    assert_string_equal(h.c[4].detail, "third");
    sg_modes_close(&m); /* with guard on: nothing leaks */
}

static void guard_off(void **state)
{
    (void)state;
    heard h = {0};
    sg_modes m;
    sg_modes_init(&m, listen_cb, &h);
    assert_false(sg_modes_guard_off(&m, T0));
    assert_true(sg_modes_guard(&m, T0, 60 * SEC, NULL));
    assert_true(sg_modes_guard_off(&m, T0 + 5 * SEC));
    assert_int_equal(sg_modes_for(&m, T0 + 5 * SEC, PROD), SG_MODE_NORMAL);
    assert_int_equal(h.n, 2);
    assert_false(h.c[1].started);
    assert_true(h.c[1].forced);
    assert_int_equal(h.c[1].until_ms, T0 + 5 * SEC);
    assert_string_equal(h.c[1].detail, "");
    assert_false(sg_modes_guard_off(&m, T0 + 6 * SEC));
    assert_int_equal(h.n, 2);

    /* off after it ran out on its own: reported as its natural end */
    assert_true(sg_modes_guard(&m, T0 + 10 * SEC, 10 * SEC, "x"));
    assert_false(sg_modes_guard_off(&m, T0 + 30 * SEC));
    assert_int_equal(h.n, 4);
    assert_false(h.c[3].forced);
    assert_int_equal(h.c[3].until_ms, T0 + 20 * SEC);

    /* guard off leaves storms alone */
    sg_modes_guard(&m, T0 + 40 * SEC, 60 * SEC, "x");
    sg_modes_storm(&m, T0 + 40 * SEC, PROD, 60 * SEC, "m");
    assert_true(sg_modes_guard_off(&m, T0 + 41 * SEC));
    assert_int_equal(sg_modes_for(&m, T0 + 41 * SEC, PROD), SG_MODE_STORM);
    assert_int_equal(sg_modes_for(&m, T0 + 41 * SEC, STAGING), SG_MODE_NORMAL);
    sg_modes_close(&m);
}

static void storm_per_source_and_overall(void **state)
{
    (void)state;
    heard h = {0};
    sg_modes m;
    sg_modes_init(&m, listen_cb, &h);
    const char *msg = "job svc on jenkins-prod completed 3 builds within 60 s (threshold 3)";

    assert_true(sg_modes_storm(&m, T0, PROD, 120 * SEC, msg));
    assert_int_equal(h.n, 1);
    assert_int_equal(h.c[0].mode, SG_MODE_STORM);
    assert_true(h.c[0].started);
    assert_string_equal(h.c[0].scope, PROD);
    assert_string_equal(h.c[0].detail, msg);

    assert_int_equal(sg_modes_for(&m, T0, PROD), SG_MODE_STORM);
    assert_int_equal(sg_modes_for(&m, T0, STAGING), SG_MODE_NORMAL);
    assert_int_equal(sg_modes_for(&m, T0, NULL), SG_MODE_NORMAL);
    assert_int_equal(sg_modes_overall(&m, T0), SG_MODE_STORM);
    /* with guard on too: storm where it storms, guard elsewhere */
    sg_modes_guard(&m, T0, 10 * SEC, "wipe");
    assert_int_equal(sg_modes_for(&m, T0, PROD), SG_MODE_STORM);
    assert_int_equal(sg_modes_for(&m, T0, STAGING), SG_MODE_GUARD);
    assert_int_equal(sg_modes_overall(&m, T0), SG_MODE_STORM);
    assert_true(sg_modes_guard_off(&m, T0));

    /* extended by a later trigger; the first message stays */
    assert_false(sg_modes_storm(&m, T0 + 100 * SEC, PROD, 120 * SEC, "later"));
    sg_mode_storm_info si[4];
    assert_int_equal(sg_modes_storms(&m, T0 + 100 * SEC, si, 4), 1);
    assert_string_equal(si[0].scope, PROD);
    assert_string_equal(si[0].message, msg);
    assert_int_equal(si[0].since_ms, T0);
    assert_int_equal(si[0].until_ms, T0 + 220 * SEC);

    /* a global storm covers every source, and events without one */
    assert_true(sg_modes_storm(&m, T0 + 100 * SEC, NULL, 30 * SEC, "rate"));
    assert_int_equal(sg_modes_for(&m, T0 + 100 * SEC, STAGING), SG_MODE_STORM);
    assert_int_equal(sg_modes_for(&m, T0 + 100 * SEC, NULL), SG_MODE_STORM);
    assert_int_equal(sg_modes_storms(&m, T0 + 100 * SEC, si, 4), 2);
    assert_int_equal(sg_modes_storms(&m, T0 + 100 * SEC, si, 1), 2); /* fills one */
    assert_int_equal(sg_modes_storms(&m, T0 + 100 * SEC, NULL, 0), 2);

    /* the global one ends first */
    assert_int_equal(sg_modes_for(&m, T0 + 130 * SEC, STAGING), SG_MODE_NORMAL);
    assert_int_equal(sg_modes_for(&m, T0 + 130 * SEC, PROD), SG_MODE_STORM);
    assert_int_equal(sg_modes_storms(&m, T0 + 130 * SEC, si, 4), 1);
    size_t before = h.n;
    sg_modes_tick(&m, T0 + 130 * SEC);
    assert_int_equal(h.n, before + 1);
    assert_string_equal(h.c[before].scope, "(global)");
    assert_false(h.c[before].started);
    assert_int_equal(h.c[before].until_ms, T0 + 130 * SEC);

    /* then the source's, at now + cooldown of its last trigger */
    assert_int_equal(sg_modes_overall(&m, T0 + 220 * SEC - 1), SG_MODE_STORM);
    assert_int_equal(sg_modes_overall(&m, T0 + 220 * SEC), SG_MODE_NORMAL);
    sg_modes_tick(&m, T0 + 221 * SEC);
    assert_int_equal(h.n, before + 2);
    assert_string_equal(h.c[before + 1].scope, PROD);
    assert_string_equal(h.c[before + 1].detail, msg);
    assert_int_equal(h.c[before + 1].since_ms, T0);
    assert_int_equal(h.c[before + 1].until_ms, T0 + 220 * SEC);

    /* a trigger after expiry but before a tick: the old one is reported
     * over, a new one starts */
    assert_true(sg_modes_storm(&m, T0 + 300 * SEC, STAGING, 10 * SEC, "a"));
    assert_true(sg_modes_storm(&m, T0 + 400 * SEC, STAGING, 10 * SEC, "b"));
    assert_int_equal(h.n, before + 5);
    assert_false(h.c[before + 3].started);
    assert_int_equal(h.c[before + 3].until_ms, T0 + 310 * SEC);
    assert_true(h.c[before + 4].started);
    assert_string_equal(h.c[before + 4].detail, "b");

    /* storm off */
    assert_false(sg_modes_storm_off(&m, T0 + 401 * SEC, PROD));
    assert_true(sg_modes_storm_off(&m, T0 + 401 * SEC, STAGING));
    assert_true(h.c[h.n - 1].forced);
    assert_int_equal(sg_modes_overall(&m, T0 + 401 * SEC), SG_MODE_NORMAL);
    sg_modes_close(&m);
}

static void storm_triggers_extend_guard(void **state)
{
    (void)state;
    heard h = {0};
    sg_modes m;
    sg_modes_init(&m, listen_cb, &h);
    sg_guard_info gi;

    /* a storm while guard is off does not start it */
    sg_modes_storm(&m, T0, PROD, 10 * SEC, "x");
    assert_false(sg_modes_guard_info(&m, T0, NULL));
    assert_int_equal(sg_modes_for(&m, T0, STAGING), SG_MODE_NORMAL);

    /* guard for 60 s; triggers keep pushing it to now + 60 s */
    sg_modes_guard(&m, T0 + 100 * SEC, 60 * SEC, "wipe");
    sg_modes_storm(&m, T0 + 150 * SEC, PROD, 10 * SEC, "x");
    assert_true(sg_modes_guard_info(&m, T0 + 150 * SEC, &gi));
    assert_int_equal(gi.until_ms, T0 + 210 * SEC);
    sg_modes_storm(&m, T0 + 200 * SEC, NULL, 10 * SEC, "y");
    assert_true(sg_modes_guard_info(&m, T0 + 200 * SEC, &gi));
    assert_int_equal(gi.until_ms, T0 + 260 * SEC);
    /* the storm is over long before guard; elsewhere it is still guard */
    assert_int_equal(sg_modes_for(&m, T0 + 230 * SEC, PROD), SG_MODE_GUARD);
    assert_int_equal(sg_modes_overall(&m, T0 + 230 * SEC), SG_MODE_GUARD);
    /* once the detector stops, guard runs out */
    assert_int_equal(sg_modes_overall(&m, T0 + 260 * SEC), SG_MODE_NORMAL);
    /* a trigger after guard ran out does not bring it back */
    sg_modes_storm(&m, T0 + 270 * SEC, PROD, 10 * SEC, "z");
    assert_false(sg_modes_guard_info(&m, T0 + 270 * SEC, NULL));
    assert_int_equal(sg_modes_for(&m, T0 + 270 * SEC, STAGING), SG_MODE_NORMAL);
    sg_modes_tick(&m, T0 + 1000 * SEC);
    for (size_t i = 0; i < h.n; i++)
        if (h.c[i].mode == SG_MODE_GUARD && !h.c[i].started)
            assert_int_equal(h.c[i].until_ms, T0 + 260 * SEC);
    sg_modes_close(&m);
}

static void too_many_storm_sources_go_global(void **state)
{
    (void)state;
    sg_modes m;
    sg_modes_init(&m, NULL, NULL);
    char source[32];
    for (int i = 0; i < SG_MODES_MAX_STORMS; i++) {
        snprintf(source, sizeof source, "jenkins-%d", i);
        assert_true(sg_modes_storm(&m, T0, source, 60 * SEC, "m"));
    }
    assert_int_equal(sg_modes_for(&m, T0, "elsewhere"), SG_MODE_NORMAL);
    assert_true(sg_modes_storm(&m, T0, "one-more", 60 * SEC, "trigger"));
    assert_int_equal(sg_modes_for(&m, T0, "elsewhere"), SG_MODE_STORM);
    sg_mode_storm_info si[SG_MODES_MAX_STORMS + 1];
    assert_int_equal(sg_modes_storms(&m, T0, si, SG_MODES_MAX_STORMS + 1), SG_MODES_MAX_STORMS + 1);
    bool global = false;
    for (int i = 0; i <= SG_MODES_MAX_STORMS; i++) {
        if (!si[i].scope) {
            global = true;
            assert_string_equal(si[i].message,
                                "storms on more than 64 sources; trigger on one-more");
        }
    }
    assert_true(global);
    /* expired sources make room again */
    assert_true(sg_modes_storm(&m, T0 + 61 * SEC, "late", 60 * SEC, "m"));
    assert_int_equal(sg_modes_storms(&m, T0 + 61 * SEC, si, SG_MODES_MAX_STORMS + 1), 1);
    sg_modes_close(&m);
}

static void mode_names(void **state)
{
    (void)state;
    assert_string_equal(sg_mode_name(SG_MODE_NORMAL), "normal");
    assert_string_equal(sg_mode_name(SG_MODE_GUARD), "guard");
    assert_string_equal(sg_mode_name(SG_MODE_STORM), "storm");
    assert_string_equal(sg_mode_name((sg_mode)3), "?");
    assert_string_equal(sg_mode_name((sg_mode)-1), "?");
}

/* ---- bucket ---- */

static void bucket_burst_then_rate(void **state)
{
    (void)state;
    sg_bucket b;
    sg_bucket_init(&b, 10, 5);
    /* starts full */
    assert_int_equal(sg_bucket_wait_ms(&b, T0), 0);
    assert_int_equal(sg_bucket_take(&b, T0, 100), 5);
    assert_int_equal(sg_bucket_take(&b, T0, 1), 0);
    assert_int_equal(sg_bucket_wait_ms(&b, T0), 100);
    assert_int_equal(sg_bucket_wait_ms(&b, T0 + 40), 60);
    assert_int_equal(sg_bucket_take(&b, T0 + 99, 1), 0);
    assert_int_equal(sg_bucket_take(&b, T0 + 100, 3), 1);
    assert_int_equal(sg_bucket_take(&b, T0 + 100, 0), 0);
    assert_int_equal(sg_bucket_take(&b, T0 + 100, -3), 0);

    /* exactly the rate over ten seconds, however often it is asked */
    int64_t total = 0;
    for (int64_t t = T0 + 110; t <= T0 + 10100; t += 10)
        total += sg_bucket_take(&b, t, 1000);
    assert_int_equal(total, 100);
    for (int64_t t = T0 + 10108; t <= T0 + 20100; t += 8)
        total += sg_bucket_take(&b, t, 1);
    assert_int_equal(total, 200);

    /* idle time saves up no more than the burst */
    assert_int_equal(sg_bucket_take(&b, T0 + 3600 * SEC, 100), 5);
    /* a clock going backwards refills nothing */
    assert_int_equal(sg_bucket_take(&b, T0, 100), 0);
    assert_int_equal(sg_bucket_take(&b, T0 + 3600 * SEC + 100, 100), 1);
}

static void bucket_slow_and_stopped(void **state)
{
    (void)state;
    sg_bucket b;
    sg_bucket_init(&b, 0.5, 1); /* one every two seconds */
    assert_int_equal(sg_bucket_take(&b, T0, 10), 1);
    assert_int_equal(sg_bucket_wait_ms(&b, T0), 2000);
    assert_int_equal(sg_bucket_take(&b, T0 + 1999, 10), 0);
    assert_int_equal(sg_bucket_wait_ms(&b, T0 + 1999), 1);
    assert_int_equal(sg_bucket_take(&b, T0 + 2000, 10), 1);

    sg_bucket_init(&b, 0, 0); /* rate 0: the burst (at least 1), then never */
    assert_int_equal(sg_bucket_take(&b, T0, 10), 1);
    assert_int_equal(sg_bucket_wait_ms(&b, T0), -1);
    assert_int_equal(sg_bucket_take(&b, T0 + 3600 * SEC, 10), 0);

    sg_bucket_init(&b, 1000, 1000); /* fast */
    assert_int_equal(sg_bucket_take(&b, T0, 5000), 1000);
    assert_int_equal(sg_bucket_wait_ms(&b, T0), 1);
    assert_int_equal(sg_bucket_take(&b, T0 + 250, 5000), 250);
}

/* ---- Docker tags ---- */

/* first_seen_tags counts the first-seen tags of one account, once each,
 * apart from the jobs; tags known to index or ledger count for nothing. */
static void first_seen_tags_per_account(void **state)
{
    (void)state;
    run r;
    char tag[32];
    sg_storm_opts o = opts_off();
    o.first_seen_tags = 20;
    o.first_seen_jobs = 3; /* the jobs' signal does not count tags */
    storm_init(&r.s, &o);
    for (int i = 0; i < 19; i++) {
        snprintf(tag, sizeof tag, "v%d", i);
        assert_int_equal(feed_tag(&r, T0 + i * 100, "hub", "team/app", tag, SG_KIND_NEW, true), 0);
    }
    /* again the same tag, known tags, another account: no */
    assert_int_equal(feed_tag(&r, T0 + 2 * SEC, "hub", "team/app", "v3", SG_KIND_NEW, true), 0);
    assert_int_equal(feed_tag(&r, T0 + 2 * SEC, "hub", "team/app", "old", SG_KIND_NEW, false), 0);
    assert_int_equal(feed_tag(&r, T0 + 2 * SEC, "hub", "team/web", "old", SG_KIND_REPLAY, false),
                     0);
    assert_int_equal(feed_tag(&r, T0 + 2 * SEC, "gcr", "team/app", "v19", SG_KIND_NEW, true), 0);
    /* the same tag name in another repository is another tag */
    assert_int_equal(feed_tag(&r, T0 + 3 * SEC, "hub", "team/web", "v1", SG_KIND_UNKNOWN, true), 1);
    const sg_storm_trigger *t = fired(&r, SG_STORM_FIRST_SEEN);
    assert_non_null(t);
    assert_string_equal(t->scope, "hub");
    assert_int_equal(t->count, 20);
    assert_string_equal(t->message, "20 Docker tags never seen before posted for account hub "
                                    "within 60 s (threshold 20)");
    /* builds of the account's name are judged on jobs alone */
    assert_int_equal(feed(&r, T0 + 3 * SEC, "hub", "job-1", SG_KIND_UNKNOWN), 1);
    /* a window later the count is gone */
    assert_int_equal(
        feed_tag(&r, T0 + 3 * SEC + WINDOW + SEC, "hub", "team/app", "v99", SG_KIND_NEW, true), 0);
    sg_storm_close(&r.s);
}

/* same_job for Docker: one tag posted again and again, not many tags of
 * one repository. */
static void same_tag_posted_again(void **state)
{
    (void)state;
    run r;
    sg_storm_opts o = opts_off();
    o.same_job_builds = 3;
    storm_init(&r.s, &o);
    assert_int_equal(feed_tag(&r, T0, "hub", "team/app", "v1", SG_KIND_NEW, false), 0);
    assert_int_equal(feed_tag(&r, T0 + 100, "hub", "team/app", "v2", SG_KIND_NEW, false), 0);
    assert_int_equal(feed_tag(&r, T0 + 200, "hub", "team/app", "v3", SG_KIND_NEW, false), 0);
    assert_int_equal(feed_tag(&r, T0 + 300, "hub", "team/app", "v1", SG_KIND_REPLAY, false), 0);
    assert_int_equal(feed_tag(&r, T0 + 400, "hub", "team/app", "v1", SG_KIND_REPLAY, false), 1);
    const sg_storm_trigger *t = fired(&r, SG_STORM_SAME_JOB);
    assert_non_null(t);
    assert_string_equal(t->message,
                        "tag team/app:v1 of account hub posted 3 times within 60 s (threshold 3)");
    sg_storm_close(&r.s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_job_trips_at_threshold),
        cmocka_unit_test(same_job_counts_replays),
        cmocka_unit_test(same_job_window_expiry),
        cmocka_unit_test(same_job_scopes),
        cmocka_unit_test(repeat_suppression_per_window),
        cmocka_unit_test(first_seen_trips_at_threshold),
        cmocka_unit_test(first_seen_window_expiry),
        cmocka_unit_test(first_seen_tags_per_account),
        cmocka_unit_test(same_tag_posted_again),
        cmocka_unit_test(replay_share_trips_at_threshold),
        cmocka_unit_test(replay_share_below_and_scopes),
        cmocka_unit_test(replayed_corrects_share_and_rate),
        cmocka_unit_test(rate_floor),
        cmocka_unit_test(rate_baseline_does_not_learn_the_storm),
        cmocka_unit_test(rate_repeat_suppression),
        cmocka_unit_test(defaults_and_several_signals),
        cmocka_unit_test(opts_validation),
        cmocka_unit_test(signal_names),
        cmocka_unit_test(million_jobs_at_once_stay_capped),
        cmocka_unit_test(million_jobs_over_time_expire),
        cmocka_unit_test(guard_enters_extends_expires),
        cmocka_unit_test(guard_off),
        cmocka_unit_test(storm_per_source_and_overall),
        cmocka_unit_test(storm_triggers_extend_guard),
        cmocka_unit_test(too_many_storm_sources_go_global),
        cmocka_unit_test(mode_names),
        cmocka_unit_test(bucket_burst_then_rate),
        cmocka_unit_test(bucket_slow_and_stopped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
