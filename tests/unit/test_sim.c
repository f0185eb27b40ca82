/* Tests the simulator (sim.h) against counts that follow from the rules of
 * its world (DOMAIN.md section 7), on scenarios small enough to reason
 * about: after a FLUSHALL Igor re-posts every completed build among each
 * job's 100 most recent, newest first, and Echo triggers each SUCCESS one
 * again; the polling safeguard skips a master's whole cycle while more jobs
 * than the threshold have a delta, until the operator fast-forwards; a 503
 * from nginx ends Igor's cycle and the refused build comes back next cycle.
 * Also: a run is a function of the scenario and the seed, the genuine
 * triggers are accounted for, no fault means no spurious trigger under any
 * defence, and the real gate stops a FLUSHALL's replays without losing a
 * genuine build. Scenarios are written with ' for " (readable JSON in C). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stormguard/base/log.h"
#include "stormguard/config/config.h"
#include "stormguard/sim/scenario.h"
#include "stormguard/sim/sim.h"

static char workdir[64], logpath[128];

static int group_setup(void **state)
{
    (void)state;
    snprintf(workdir, sizeof workdir, "/tmp/sg-sim-XXXXXX");
    if (!mkdtemp(workdir))
        return -1;
    /* the gate logs as the daemon does: thousands of lines, to a file */
    snprintf(logpath, sizeof logpath, "%s/gate.log", workdir);
    sg_error err;
    return sg_log_open("text", logpath, &err) ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    sg_log_close();
    const char *files[] = {"stormguard-sim.db", "stormguard-sim.db-wal", "stormguard-sim.db-shm",
                           "gate.log"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char p[160];
        snprintf(p, sizeof p, "%s/%s", workdir, files[i]);
        unlink(p);
    }
    return rmdir(workdir);
}

/* Parses a scenario written with ' for ". */
static void scenario(sg_scenario *sc, const char *fmt, ...)
{
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    for (char *p = text; *p; p++)
        if (*p == '\'')
            *p = '"';
    sg_error err;
    if (sg_scenario_parse(text, strlen(text), "test.json", sc, &err))
        fail_msg("%s\nin: %s", err.msg, text);
}

static void run(const sg_scenario *sc, sg_sim_defence d, uint64_t seed, sg_sim_result *r)
{
    sg_error err;
    if (sg_sim_run(sc, d, seed, NULL, workdir, r, &err))
        fail_msg("sg_sim_run %s: %s", sg_sim_defence_name(d), err.msg);
    assert_int_equal(r->defence, d);
}

static int64_t sum(const int64_t *v, size_t from, size_t to)
{
    int64_t n = 0;
    for (size_t m = from; m < to; m++)
        n += v[m];
    return n;
}

/* The identities every run keeps, whatever the defence. */
static void check_accounts(const sg_sim_result *r)
{
    assert_int_equal(r->genuine, r->genuine_on_time + r->genuine_delayed + r->genuine_lost);
    assert_true(r->genuine_lost >= 0);
    assert_true(r->genuine_superseded >= 0 && r->genuine_superseded <= r->genuine_lost);
    assert_int_equal(r->spurious_cum[r->minutes - 1], r->spurious);
    assert_int_equal(r->genuine_cum[r->minutes - 1], r->genuine_on_time + r->genuine_delayed);
    /* every trigger is spurious, genuine, or of a build that ended after
     * the end (on its way then, owed to no one) */
    assert_true(sum(r->triggers, 0, r->minutes) >=
                r->spurious + r->genuine_on_time + r->genuine_delayed);
    assert_true(r->answered_503 <= r->posts);
    assert_int_equal(strlen(r->mode), r->minutes);
}

/* One master of J jobs with H history builds, all SUCCESS, no new builds
 * (build_every 0), and one FLUSHALL at 10 minutes: Igor finds no cursor and
 * posts the min(H, 100) builds Jenkins lists, each a trigger of a build
 * that had triggered before, and each but the newest an older build
 * triggering after a newer one (the newest had triggered last). */
static void flushall_replays_what_jenkins_lists(void **state)
{
    (void)state;
    const int64_t J = 12, P = 2;
    const int64_t histories[] = {1, 40, 100, 101, 150};
    for (size_t i = 0; i < sizeof histories / sizeof *histories; i++) {
        int64_t H = histories[i], listed = H < 100 ? H : 100;
        sg_scenario sc;
        scenario(&sc,
                 "{'name':'flush','duration':'30m','igor':{'look_back_window':'10m'},"
                 "'masters':[{'name':'jenkins-prod','jobs':%lld,'history':%lld,"
                 "'pipelines_per_job':%lld}],'faults':[{'at':'10m','kind':'flushall'}]}",
                 (long long)J, (long long)H, (long long)P);
        sg_sim_result r;
        run(&sc, SG_DEF_NONE, sc.seed, &r);
        check_accounts(&r);
        assert_int_equal(r.spurious, J * listed * P);
        assert_int_equal(r.posts, J * listed);
        assert_int_equal(r.inversions, J * (listed - 1) * P);
        assert_int_equal(r.genuine, 0);
        assert_int_equal(r.answered_503, 0);
        assert_int_equal(r.spurious_cum[9], 0); /* nothing before the flush */
        sg_sim_result_close(&r);

        /* the default threshold (1000 jobs) is far above 12: no change */
        run(&sc, SG_DEF_THRESHOLD, sc.seed, &r);
        check_accounts(&r);
        assert_int_equal(r.spurious, J * listed * P);
        assert_int_equal(r.operator_actions, 0);
        sg_sim_result_close(&r);

        /* handleFirstBuilds off: a job without a cursor is recorded, not posted */
        run(&sc, SG_DEF_FIRST_BUILDS_OFF, sc.seed, &r);
        check_accounts(&r);
        assert_int_equal(r.spurious, 0);
        assert_int_equal(r.posts, 0);
        assert_int_equal(r.inversions, 0);
        sg_sim_result_close(&r);

        /* every history build ended more than the window before the flush */
        run(&sc, SG_DEF_LOOKBACK, sc.seed, &r);
        check_accounts(&r);
        assert_int_equal(r.spurious, 0);
        assert_int_equal(r.posts, 0);
        sg_sim_result_close(&r);
        sg_scenario_close(&sc);
    }
}

/* Builds Igor meets for the first time (4 new jobs, each with 6 ended
 * builds that never triggered): posted newest first, so after the first
 * every one is an older build triggering after a newer one, 5 per job and
 * pipeline; each is genuine. handleFirstBuilds off posts none of them. */
static void first_sight_posts_newest_first(void **state)
{
    (void)state;
    sg_scenario sc;
    scenario(&sc, "{'name':'new-jobs','duration':'40m',"
                  "'masters':[{'name':'jenkins-prod','jobs':5,'history':3,"
                  "'build_duration':'1m','pipelines_per_job':2}],"
                  "'changes':[{'at':'20m','kind':'new_jobs','master':'jenkins-prod',"
                  "'count':4,'history':6}]}");
    sg_sim_result r;
    run(&sc, SG_DEF_NONE, sc.seed, &r);
    check_accounts(&r);
    assert_int_equal(r.genuine, 4 * 6 * 2);
    assert_int_equal(r.genuine_lost, 0);
    assert_int_equal(r.inversions, 4 * 5 * 2);
    assert_int_equal(r.spurious, 0);
    assert_int_equal(r.posts, 4 * 6);
    assert_int_equal(sum(r.triggers, 0, 20), 0);
    sg_sim_result_close(&r);
    run(&sc, SG_DEF_FIRST_BUILDS_OFF, sc.seed, &r);
    check_accounts(&r);
    assert_int_equal(r.genuine_lost, 4 * 6 * 2);
    assert_int_equal(r.genuine_superseded, 0);
    assert_int_equal(r.inversions, 0);
    assert_int_equal(r.posts, 0);
    sg_sim_result_close(&r);
    sg_scenario_close(&sc);
}

/* A threshold below J after a FLUSHALL: every cycle of the master is
 * skipped (no post at all, so no replay), until the operator's fast-forward
 * marks everything pending as seen, still without a post. A threshold of
 * exactly J is not exceeded. */
static void threshold_below_jobs_skips_every_cycle(void **state)
{
    (void)state;
    const char *fmt = "{'name':'threshold','duration':'60m',"
                      "'igor':{'item_upper_threshold':%d},"
                      "'masters':[{'name':'jenkins-prod','jobs':12,'history':5}],"
                      "'faults':[{'at':'5m','kind':'flushall'}],"
                      "'operator':{'reacts_after':'20m','action':'%s'}}";
    sg_scenario sc;
    sg_sim_result r;
    scenario(&sc, fmt, 11, "release-newest");
    run(&sc, SG_DEF_THRESHOLD, sc.seed, &r);
    check_accounts(&r);
    assert_int_equal(r.posts, 0);
    assert_int_equal(r.spurious, 0);
    assert_int_equal(r.operator_actions, 1);
    sg_sim_result_close(&r);
    sg_scenario_close(&sc);

    /* no operator: skipped for the rest of the run, never fast-forwarded */
    scenario(&sc, fmt, 11, "none");
    run(&sc, SG_DEF_THRESHOLD, sc.seed, &r);
    assert_int_equal(r.posts, 0);
    assert_int_equal(r.operator_actions, 0);
    sg_sim_result_close(&r);
    sg_scenario_close(&sc);

    scenario(&sc, fmt, 12, "release-newest");
    run(&sc, SG_DEF_THRESHOLD, sc.seed, &r);
    assert_int_equal(r.spurious, 12 * 5);
    assert_int_equal(r.operator_actions, 0);
    sg_sim_result_close(&r);
    sg_scenario_close(&sc);
}

/* The same with builds going on: from the first cycle after the wipe until
 * the fast-forward (tripped at about 10 min, acted on at about 30) nothing
 * reaches Echo, genuine builds included; those ended by the fast-forward
 * are lost; builds after it flow again. Under none the same minutes are
 * busy. */
static void threshold_blocks_genuine_builds_until_fast_forward(void **state)
{
    (void)state;
    sg_scenario sc;
    scenario(&sc, "{'name':'threshold-builds','duration':'60m',"
                  "'igor':{'item_upper_threshold':15},"
                  "'masters':[{'name':'jenkins-prod','jobs':30,'history':5,"
                  "'build_every':'30m','build_duration':'2m'}],"
                  "'faults':[{'at':'10m','kind':'flushall'}],"
                  "'operator':{'reacts_after':'20m','action':'release-newest'}}");
    sg_sim_result r, none;
    run(&sc, SG_DEF_THRESHOLD, sc.seed, &r);
    run(&sc, SG_DEF_NONE, sc.seed, &none);
    check_accounts(&r);
    assert_int_equal(r.operator_actions, 1);
    assert_int_equal(r.spurious, 0);
    assert_true(sum(r.triggers, 0, 10) > 0);      /* before the wipe */
    assert_int_equal(sum(r.triggers, 11, 30), 0); /* tripped */
    assert_true(sum(none.triggers, 11, 30) > 0);
    assert_true(sum(r.triggers, 32, r.minutes) > 0); /* after the fast-forward */
    assert_true(r.genuine_lost > 0);
    assert_int_equal(none.genuine_lost, 0);
    assert_true(none.spurious >= 30 * 5); /* the history, and the builds of before the wipe */
    sg_sim_result_close(&r);
    sg_sim_result_close(&none);
    sg_scenario_close(&sc);
}

/* nginx limit_req nodelay at 30r/m with a burst of 29: a full bucket holds
 * 30 requests and refills within a poll interval. After the FLUSHALL Igor
 * posts 30 replays a cycle at 20 a second; the 31st is refused, which ends
 * the cycle (one 503 a cycle, not a 503 for every post after it), and that
 * build comes back next cycle: all 300 reach Echo once, within 10 cycles,
 * in 300 + 9 posts. */
static void nginx_503_ends_the_cycle_and_the_build_comes_back(void **state)
{
    (void)state;
    sg_scenario sc;
    scenario(&sc, "{'name':'nginx','duration':'30m','nginx':{'rate':'30r/m','burst':29},"
                  "'masters':[{'name':'jenkins-prod','jobs':10,'history':30}],"
                  "'faults':[{'at':'5m','kind':'flushall'}]}");
    sg_sim_result r;
    run(&sc, SG_DEF_NGINX, sc.seed, &r);
    check_accounts(&r);
    assert_int_equal(r.spurious, 300);
    assert_int_equal(r.answered_503, 9);
    assert_int_equal(r.posts, 300 + r.answered_503);
    assert_int_equal(r.spurious_cum[4], 0);
    assert_int_equal(r.spurious_cum[5 + 11], 300);
    assert_true(r.peak_triggers_per_min <= 2 * 31);
    sg_sim_result_close(&r);
    sg_scenario_close(&sc);
}

/* A small world with everything in it: two masters, builds ending out of
 * order and failing, a Docker account, new jobs, a FLUSHALL. */
static const char *const mixed =
    "{'name':'mixed','seed':%d,'duration':'40m',"
    "'masters':[{'name':'jenkins-prod','jobs':10,'history':8,'build_every':'8m',"
    "'build_duration':'3m','success_rate':0.8,'out_of_order':0.3,'pipelines_per_job':2},"
    "{'name':'jenkins-ci','jobs':6,'history':4,'build_every':'5m','build_duration':'1m'}],"
    "'docker':[{'name':'dockerhub','repositories':4,'tags':3,'push_every':'10m'}],"
    "'faults':[{'at':'15m','kind':'flushall'}],"
    "'changes':[{'at':'20m','kind':'new_jobs','master':'jenkins-ci','count':3,'history':1}],"
    "'operator':{'reacts_after':'5m'}}";

static void assert_same(const sg_sim_result *a, const sg_sim_result *b)
{
    assert_int_equal(a->defence, b->defence);
    assert_int_equal(a->spurious, b->spurious);
    assert_int_equal(a->genuine, b->genuine);
    assert_int_equal(a->genuine_on_time, b->genuine_on_time);
    assert_int_equal(a->genuine_delayed, b->genuine_delayed);
    assert_int_equal(a->genuine_lost, b->genuine_lost);
    assert_int_equal(a->genuine_superseded, b->genuine_superseded);
    assert_true(a->delay_p50_s == b->delay_p50_s);
    assert_true(a->delay_max_s == b->delay_max_s);
    assert_int_equal(a->inversions, b->inversions);
    assert_int_equal(a->held_at_end, b->held_at_end);
    assert_int_equal(a->operator_actions, b->operator_actions);
    assert_int_equal(a->peak_triggers_per_min, b->peak_triggers_per_min);
    assert_int_equal(a->posts, b->posts);
    assert_int_equal(a->answered_503, b->answered_503);
    assert_int_equal(a->minutes, b->minutes);
    size_t n = a->minutes * sizeof(int64_t);
    assert_memory_equal(a->triggers, b->triggers, n);
    assert_memory_equal(a->spurious_cum, b->spurious_cum, n);
    assert_memory_equal(a->genuine_cum, b->genuine_cum, n);
    assert_memory_equal(a->held, b->held, n);
    assert_string_equal(a->mode, b->mode);
}

/* Same scenario and seed: the same results, every field and every minute,
 * under every defence (the gate's included: its store starts afresh). */
static void same_seed_same_results(void **state)
{
    (void)state;
    sg_scenario sc;
    scenario(&sc, mixed, 3);
    for (int d = 0; d < SG_DEF_COUNT; d++) {
        sg_sim_result a, b;
        run(&sc, (sg_sim_defence)d, sc.seed, &a);
        run(&sc, (sg_sim_defence)d, sc.seed, &b);
        check_accounts(&a);
        assert_same(&a, &b);
        sg_sim_result_close(&a);
        sg_sim_result_close(&b);
    }
    sg_scenario_close(&sc);
}

static char *world_text(const sg_scenario *sc, uint64_t seed)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    assert_int_equal(sg_sim_write_world(sc, seed, f), 0);
    fclose(f);
    return text;
}

/* Another seed draws other builds, and the run differs with them; the
 * scenario's seed is only a default (passing it gives the same world). */
static void another_seed_another_world(void **state)
{
    (void)state;
    sg_scenario sc, sc2;
    scenario(&sc, mixed, 3);
    scenario(&sc2, mixed, 4);
    char *w3 = world_text(&sc, 3), *again = world_text(&sc, 3), *w4 = world_text(&sc, 4),
         *w4b = world_text(&sc2, sc2.seed);
    /* (strcmp: a world is too long to print) */
    assert_true(strcmp(w3, again) == 0);
    assert_true(strcmp(w3, w4) != 0);
    assert_true(strcmp(w4, w4b) == 0);
    sg_sim_result a, b;
    run(&sc, SG_DEF_NONE, 3, &a);
    run(&sc, SG_DEF_NONE, 4, &b);
    assert_true(a.genuine != b.genuine ||
                memcmp(a.triggers, b.triggers, a.minutes * sizeof(int64_t)) != 0);
    sg_sim_result_close(&a);
    sg_sim_result_close(&b);
    free(w3);
    free(again);
    free(w4);
    free(w4b);
    sg_scenario_close(&sc);
    sg_scenario_close(&sc2);
}

/* The genuine triggers owed are the pipelines of every SUCCESS build that
 * ended within the run, counted from the world the run draws; each is on
 * time, delayed or lost, under every defence. */
static void genuine_is_what_the_world_owes(void **state)
{
    (void)state;
    sg_scenario sc;
    scenario(&sc, "{'name':'owed','seed':5,'duration':'40m',"
                  "'masters':[{'name':'jenkins-prod','jobs':10,'history':8,"
                  "'build_every':'6m','build_duration':'3m','success_rate':0.7,"
                  "'out_of_order':0.3,'pipelines_per_job':3}],"
                  "'faults':[{'at':'15m','kind':'flushall'}],"
                  "'changes':[{'at':'20m','kind':'new_jobs','master':'jenkins-prod',"
                  "'count':4,'history':2}]}");
    char *text = world_text(&sc, sc.seed);
    json_error_t jerr;
    json_t *w = json_loads(text, 0, &jerr);
    assert_non_null(w);
    int64_t owed = 0;
    json_t *jobs = json_object_get(json_array_get(json_object_get(w, "masters"), 0), "jobs");
    size_t i, k;
    json_t *job, *b;
    json_array_foreach(jobs, i, job)
    {
        json_array_foreach(json_object_get(job, "builds"), k, b)
        {
            json_int_t end = json_integer_value(json_array_get(b, 1));
            if (json_integer_value(json_array_get(b, 2)) && end >= 0 && end <= sc.duration_ms)
                owed += 3;
        }
    }
    json_decref(w);
    free(text);
    assert_true(owed > 0);
    for (int d = 0; d < SG_DEF_COUNT; d++) {
        sg_sim_result r;
        run(&sc, (sg_sim_defence)d, sc.seed, &r);
        check_accounts(&r);
        assert_int_equal(r.genuine, owed);
        sg_sim_result_close(&r);
    }
    sg_scenario_close(&sc);
}

/* No fault: no defence lets a build trigger twice. Without one, every
 * build reaches Echo within two poll intervals of its end (the next cycle
 * posts it), and the gate delays none of them. */
static void no_fault_no_spurious(void **state)
{
    (void)state;
    sg_scenario sc;
    scenario(&sc, "{'name':'normal','seed':9,'duration':'90m',"
                  "'igor':{'item_upper_threshold':1000,'look_back_window':'10m'},"
                  "'masters':[{'name':'jenkins-prod','jobs':30,'history':10,"
                  "'build_every':'20m','build_duration':'5m','success_rate':0.9,"
                  "'out_of_order':0.1},{'name':'jenkins-ci','jobs':15,'history':10,"
                  "'build_every':'10m','build_duration':'2m','success_rate':0.85,"
                  "'pipelines_per_job':2}]}");
    int64_t on_time = -1;
    for (int d = 0; d < SG_DEF_COUNT; d++) {
        sg_sim_result r;
        run(&sc, (sg_sim_defence)d, sc.seed, &r);
        check_accounts(&r);
        assert_int_equal(r.spurious, 0);
        assert_true(r.genuine > 0);
        if (d == SG_DEF_NONE) {
            assert_int_equal(r.genuine_on_time, r.genuine);
            assert_true(r.delay_max_s <= 2 * 60);
            on_time = r.genuine_on_time;
        }
        if (d == SG_DEF_STORMGUARD) {
            assert_int_equal(r.genuine_on_time, on_time);
            assert_int_equal(r.held_at_end, 0);
            assert_null(strchr(r.mode, 'g'));
            assert_null(strchr(r.mode, 's'));
        }
        sg_sim_result_close(&r);
    }
    sg_scenario_close(&sc);
}

/* The real gate on a small FLUSHALL: the replays it knows from its
 * snapshots are a storm at once, the watcher sees the wipe (guard mode once
 * the storm cools down), no replay reaches Echo, no genuine build is lost,
 * nothing is left held, and the gate is back to normal by the end. */
static void stormguard_stops_a_flushall(void **state)
{
    (void)state;
    sg_scenario sc;
    scenario(&sc, "{'name':'small-flushall','seed':1,'duration':'90m',"
                  "'masters':[{'name':'jenkins-prod','jobs':40,'history':20,"
                  "'build_every':'20m','build_duration':'4m','success_rate':0.9,"
                  "'out_of_order':0.05}],"
                  "'faults':[{'at':'30m','kind':'flushall'}],"
                  "'changes':[{'at':'60m','kind':'new_jobs','master':'jenkins-prod',"
                  "'count':3,'history':1}],"
                  "'operator':{'reacts_after':'15m','action':'release-newest'}}");
    sg_sim_result r, none;
    run(&sc, SG_DEF_STORMGUARD, sc.seed, &r);
    run(&sc, SG_DEF_NONE, sc.seed, &none);
    check_accounts(&r);
    assert_true(none.spurious >= 40 * 20 * 9 / 10 / 2); /* the storm it stopped */
    assert_int_equal(r.spurious, 0);
    assert_int_equal(r.genuine_lost, 0);
    assert_int_equal(r.genuine, none.genuine);
    assert_int_equal(r.held_at_end, 0);
    assert_int_equal(r.posts, none.posts); /* the gate answers 200: Igor's view is the same */
    assert_int_equal(r.answered_503, 0);
    assert_null(memchr(r.mode, 'g', 30)); /* normal until the wipe */
    assert_null(memchr(r.mode, 's', 30));
    assert_int_equal(r.mode[30], 's');             /* the replays are a storm */
    assert_non_null(memchr(r.mode + 30, 'g', 10)); /* the watcher saw the wipe */
    assert_int_equal(r.mode[r.minutes - 1], 'n');
    sg_sim_result_close(&r);
    sg_sim_result_close(&none);
    sg_scenario_close(&sc);
}

/* The stormguard row runs the gate with the configuration it is given:
 * with every storm threshold out of reach the FLUSHALL's replays are no
 * storm (the watcher's guard mode alone meets them), and a configuration
 * the daemon would refuse is refused. */
static void stormguard_runs_the_given_configuration(void **state)
{
    (void)state;
    sg_scenario sc;
    scenario(&sc, "{'name':'small-flushall','seed':1,'duration':'60m',"
                  "'masters':[{'name':'jenkins-prod','jobs':40,'history':20,"
                  "'build_every':'20m','build_duration':'4m','success_rate':0.9}],"
                  "'faults':[{'at':'30m','kind':'flushall'}],"
                  "'operator':{'reacts_after':'15m','action':'release-newest'}}");
    sg_config cfg;
    sg_config_init(&cfg);
    cfg.storm_same_job = cfg.storm_first_seen = cfg.storm_replay_pct = cfg.storm_rate_factor = 0;
    cfg.storm_replay_min = 1000000;
    sg_sim_result r;
    sg_error err;
    if (sg_sim_run(&sc, SG_DEF_STORMGUARD, sc.seed, &cfg, workdir, &r, &err))
        fail_msg("sg_sim_run: %s", err.msg);
    check_accounts(&r);
    assert_null(memchr(r.mode, 's', r.minutes));
    assert_non_null(memchr(r.mode + 30, 'g', 10));
    assert_int_equal(r.spurious, 0);
    sg_sim_result_close(&r);

    sg_config_close(&cfg);
    sg_config_init(&cfg);
    free(cfg.on_storm);
    cfg.on_storm = strdup("sometimes");
    assert_int_equal(sg_sim_run(&sc, SG_DEF_STORMGUARD, sc.seed, &cfg, workdir, &r, &err),
                     SG_EUSAGE);
    assert_non_null(strstr(err.msg, "on_storm"));
    sg_config_close(&cfg);
    sg_scenario_close(&sc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(flushall_replays_what_jenkins_lists),
        cmocka_unit_test(first_sight_posts_newest_first),
        cmocka_unit_test(threshold_below_jobs_skips_every_cycle),
        cmocka_unit_test(threshold_blocks_genuine_builds_until_fast_forward),
        cmocka_unit_test(nginx_503_ends_the_cycle_and_the_build_comes_back),
        cmocka_unit_test(same_seed_same_results),
        cmocka_unit_test(another_seed_another_world),
        cmocka_unit_test(genuine_is_what_the_world_owes),
        cmocka_unit_test(no_fault_no_spurious),
        cmocka_unit_test(stormguard_stops_a_flushall),
        cmocka_unit_test(stormguard_runs_the_given_configuration),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
