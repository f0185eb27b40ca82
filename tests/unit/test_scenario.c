/* Tests reading simulation scenarios (scenario.h): every field's check, its
 * message naming the field by its path ("masters[0].jobz"), the defaults of
 * the fields left out, the checks across fields (duplicate master names, a
 * change naming no master, a fault after the end, evict and park without a
 * fraction), invalid JSON with its line and column, and that a failed read
 * leaves the caller's scenario as it was (filled with a poison byte first).
 * The shipped scenarios (the JSON files in simulations/) must all read. Documents are
 * written with ' for " (readable JSON in C). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stormguard/sim/scenario.h"

#define POISON 0xA5

/* A valid document: name, duration, one master. D() adds top-level
 * members to it; M() gives the master's members after its name. */
#define D(extra) "{'name':'t','duration':'2h','masters':[{'name':'m','jobs':3}]," extra "}"
#define M(fields) "{'name':'t','duration':'2h','masters':[{'name':'m'," fields "}]}"

static char *dequote(const char *s)
{
    char *t = strdup(s);
    for (char *p = t; *p; p++)
        if (*p == '\'')
            *p = '"';
    return t;
}

static int parse(const char *doc, sg_scenario *out, sg_error *err)
{
    char *text = dequote(doc);
    int rc = sg_scenario_parse(text, strlen(text), "t.json", out, err);
    free(text);
    return rc;
}

/* Parses a document that must read; the caller closes *out. */
static void good(const char *doc, sg_scenario *out)
{
    sg_error err;
    if (parse(doc, out, &err))
        fail_msg("%s: %s", doc, err.msg);
}

/* A document that must fail with SG_EUSAGE and the message "t.json: "
 * msg, leaving the out-parameter untouched. */
static void bad(const char *doc, const char *msg)
{
    sg_scenario s, poison;
    memset(&s, POISON, sizeof s);
    memset(&poison, POISON, sizeof poison);
    sg_error err = {0};
    int rc = parse(doc, &s, &err);
    if (rc != SG_EUSAGE)
        fail_msg("%s: expected SG_EUSAGE, got %d (%s)", doc, rc, rc ? err.msg : "read");
    char want[1100];
    snprintf(want, sizeof want, "t.json: %s", msg);
    if (strcmp(err.msg, want))
        fail_msg("%s:\n expected: %s\n      got: %s", doc, want, err.msg);
    if (memcmp(&s, &poison, sizeof s))
        fail_msg("%s: the scenario was written on an error", doc);
}

#define DURATION_MSG "must be a duration such as \"250ms\", \"90s\", \"15m\" or \"2h\""
#define UNKNOWN "unknown field (see simulations/README.md)"

/* The least document: every field left out has its default. */
static void defaults(void **state)
{
    (void)state;
    sg_scenario s;
    good("{'name':'least','duration':'1s','masters':[{'name':'m'}],"
         "'faults':[{'at':'0s','kind':'flushall'}],"
         "'changes':[{'at':'0s','kind':'new_jobs','master':'m'}],"
         "'docker':[{'name':'hub'}]}",
         &s);
    assert_string_equal(s.name, "least");
    assert_string_equal(s.about, "");
    assert_int_equal(s.seed, 1);
    assert_int_equal(s.duration_ms, 1000);
    assert_int_equal(s.igor.poll_interval_ms, 60000);
    assert_int_equal(s.igor.item_upper_threshold, 1000);
    assert_true(s.igor.handle_first_builds);
    assert_int_equal(s.igor.look_back_window_ms, -1);
    assert_int_equal(s.igor.post_latency_ms, 50);
    assert_int_equal(s.igor.docker_poll_interval_ms, 60000);
    assert_true(s.nginx.rate == 10.0);
    assert_int_equal(s.nginx.burst, 20);
    assert_int_equal(s.nmasters, 1);
    const sg_sim_master *m = &s.masters[0];
    assert_string_equal(m->name, "m");
    assert_int_equal(m->jobs, 0);
    assert_int_equal(m->history, 0);
    assert_int_equal(m->build_every_ms, 0);
    assert_int_equal(m->build_duration_ms, 360000);
    assert_true(m->success_rate == 1.0);
    assert_true(m->out_of_order == 0.0);
    assert_int_equal(m->pipelines_per_job, 1);
    assert_int_equal(s.naccounts, 1);
    const sg_sim_account *a = &s.accounts[0];
    assert_string_equal(a->name, "hub");
    assert_int_equal(a->repositories, 0);
    assert_int_equal(a->tags, 0);
    assert_int_equal(a->push_every_ms, 0);
    assert_int_equal(a->pipelines_per_repo, 1);
    assert_int_equal(s.nfaults, 1);
    assert_int_equal(s.faults[0].at_ms, 0);
    assert_int_equal(s.faults[0].kind, SG_SIM_FLUSHALL);
    assert_true(s.faults[0].fraction == 1.0);
    assert_int_equal(s.nchanges, 1);
    assert_int_equal(s.changes[0].kind, SG_SIM_NEW_JOBS);
    assert_string_equal(s.changes[0].master, "m");
    assert_int_equal(s.changes[0].count, 1);
    assert_int_equal(s.changes[0].history, 0);
    assert_int_equal(s.stormguard.starts_at_ms, 0);
    assert_false(s.stormguard.rewarm);
    assert_int_equal(s.stormguard.snapshot_interval_ms, 60000);
    assert_int_equal(s.operator_.reacts_after_ms, 15 * 60000);
    assert_int_equal(s.operator_.action, SG_SIM_RELEASE_NEWEST);
    sg_scenario_close(&s);

    /* the sections present but empty: the same defaults */
    good(D("'igor':{},'nginx':{},'stormguard':{},'operator':{}"), &s);
    assert_int_equal(s.igor.poll_interval_ms, 60000);
    assert_int_equal(s.igor.item_upper_threshold, 1000);
    assert_true(s.igor.handle_first_builds);
    assert_int_equal(s.igor.look_back_window_ms, -1);
    assert_int_equal(s.igor.post_latency_ms, 50);
    assert_int_equal(s.igor.docker_poll_interval_ms, 60000);
    assert_true(s.nginx.rate == 10.0);
    assert_int_equal(s.nginx.burst, 20);
    assert_int_equal(s.stormguard.snapshot_interval_ms, 60000);
    assert_int_equal(s.operator_.reacts_after_ms, 15 * 60000);
    assert_int_equal(s.operator_.action, SG_SIM_RELEASE_NEWEST);
    assert_int_equal(s.nfaults, 0);
    assert_int_equal(s.nchanges, 0);
    assert_int_equal(s.naccounts, 0);
    sg_scenario_close(&s);

    /* Docker accounts alone make a scenario */
    good("{'name':'d','duration':'1h','docker':[{'name':'hub','repositories':2}]}", &s);
    assert_int_equal(s.nmasters, 0);
    assert_int_equal(s.naccounts, 1);
    sg_scenario_close(&s);
}

/* Every field given: each value lands where it belongs. */
static void every_field_read(void **state)
{
    (void)state;
    sg_scenario s;
    good("{'name':'all','about':'every field','seed':9223372036854775807,'duration':'3h',"
         "'igor':{'poll_interval':'30s','item_upper_threshold':0,'handle_first_builds':false,"
         "'look_back_window':'10m','post_latency':'250ms','docker_poll_interval':'2m'},"
         "'nginx':{'rate':'600r/m','burst':0},"
         "'masters':[{'name':'a','jobs':1000000,'history':1000,'build_every':'45m',"
         "'build_duration':'1s','success_rate':0,'out_of_order':1,'pipelines_per_job':100},"
         "{'name':'b','jobs':0,'history':0,'build_every':'0s','pipelines_per_job':0}],"
         "'docker':[{'name':'hub','repositories':7,'tags':1000,'push_every':'90m',"
         "'pipelines_per_repo':0}],"
         "'faults':[{'at':'3h','kind':'flushdb'},{'at':'1m','kind':'restart'},"
         "{'at':'2m','kind':'failover_empty'},{'at':'3m','kind':'evict','fraction':0.35},"
         "{'at':'4m','kind':'delete_pattern'},{'at':'5m','kind':'park','fraction':0},"
         "{'at':'6m','kind':'flushall','fraction':0.5}],"
         "'changes':[{'at':'2h','kind':'new_jobs','master':'b','count':1000000,'history':1000},"
         "{'at':'4h','kind':'set_threshold','value':0}],"
         "'stormguard':{'starts_at':'20m','rewarm':true,'snapshot_interval':'1s'},"
         "'operator':{'reacts_after':'0s','action':'drop'}}",
         &s);
    assert_string_equal(s.about, "every field");
    assert_int_equal(s.seed, INT64_MAX);
    assert_int_equal(s.duration_ms, 3 * 3600000);
    assert_int_equal(s.igor.poll_interval_ms, 30000);
    assert_int_equal(s.igor.item_upper_threshold, 0);
    assert_false(s.igor.handle_first_builds);
    assert_int_equal(s.igor.look_back_window_ms, 600000);
    assert_int_equal(s.igor.post_latency_ms, 250);
    assert_int_equal(s.igor.docker_poll_interval_ms, 120000);
    assert_true(s.nginx.rate == 10.0);
    assert_int_equal(s.nginx.burst, 0);
    assert_int_equal(s.nmasters, 2);
    assert_int_equal(s.masters[0].jobs, 1000000);
    assert_int_equal(s.masters[0].history, 1000);
    assert_int_equal(s.masters[0].build_every_ms, 45 * 60000);
    assert_int_equal(s.masters[0].build_duration_ms, 1000);
    assert_true(s.masters[0].success_rate == 0.0);
    assert_true(s.masters[0].out_of_order == 1.0);
    assert_int_equal(s.masters[0].pipelines_per_job, 100);
    assert_string_equal(s.masters[1].name, "b");
    assert_int_equal(s.masters[1].pipelines_per_job, 0);
    assert_int_equal(s.accounts[0].repositories, 7);
    assert_int_equal(s.accounts[0].tags, 1000);
    assert_int_equal(s.accounts[0].push_every_ms, 90 * 60000);
    assert_int_equal(s.accounts[0].pipelines_per_repo, 0);
    assert_int_equal(s.nfaults, 7);
    static const sg_sim_fault_kind kinds[] = {
        SG_SIM_FLUSHDB,        SG_SIM_RESTART, SG_SIM_FAILOVER_EMPTY, SG_SIM_EVICT,
        SG_SIM_DELETE_PATTERN, SG_SIM_PARK,    SG_SIM_FLUSHALL};
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(s.faults[i].kind, kinds[i]);
    assert_int_equal(s.faults[0].at_ms, 3 * 3600000); /* at the end: allowed */
    assert_true(s.faults[3].fraction == 0.35);
    assert_true(s.faults[5].fraction == 0.0);
    assert_true(s.faults[6].fraction == 0.5);
    assert_int_equal(s.changes[0].kind, SG_SIM_NEW_JOBS);
    assert_string_equal(s.changes[0].master, "b");
    assert_int_equal(s.changes[0].at_ms, 2 * 3600000);
    assert_int_equal(s.changes[0].count, 1000000);
    assert_int_equal(s.changes[0].history, 1000);
    assert_int_equal(s.changes[1].kind, SG_SIM_SET_THRESHOLD);
    assert_int_equal(s.changes[1].at_ms, 4 * 3600000); /* a change may come after the end */
    assert_int_equal(s.changes[1].value, 0);
    assert_int_equal(s.stormguard.starts_at_ms, 20 * 60000);
    assert_true(s.stormguard.rewarm);
    assert_int_equal(s.stormguard.snapshot_interval_ms, 1000);
    assert_int_equal(s.operator_.reacts_after_ms, 0);
    assert_int_equal(s.operator_.action, SG_SIM_DROP);
    sg_scenario_close(&s);

    good(D("'igor':{'look_back_window':'off','poll_interval':'1s','post_latency':'1ms'},"
           "'nginx':{'rate':'2.5r/s','burst':1000000},'operator':{'action':'none'}"),
         &s);
    assert_int_equal(s.igor.look_back_window_ms, -1);
    assert_int_equal(s.igor.poll_interval_ms, 1000);
    assert_int_equal(s.igor.post_latency_ms, 1);
    assert_true(s.nginx.rate == 2.5);
    assert_int_equal(s.nginx.burst, 1000000);
    assert_int_equal(s.operator_.action, SG_SIM_NONE);
    sg_scenario_close(&s);
    good(D("'operator':{'action':'release-newest'},'igor':{'look_back_window':'0s'}"), &s);
    assert_int_equal(s.operator_.action, SG_SIM_RELEASE_NEWEST);
    assert_int_equal(s.igor.look_back_window_ms, 0);
    sg_scenario_close(&s);
    good(D("'seed':0,'igor':{'item_upper_threshold':2147483647}"), &s);
    assert_int_equal(s.seed, 0);
    assert_int_equal(s.igor.item_upper_threshold, INT32_MAX);
    sg_scenario_close(&s);
}

static void document_errors(void **state)
{
    (void)state;
    sg_scenario s;
    bad("[]", "the document: must be an object");
    bad("[{'name':'t','duration':'2h'}]", "the document: must be an object");
    bad(D("'jobz':1"), "jobz: " UNKNOWN);
    bad("{'duration':'2h','masters':[{'name':'m'}]}", "name: missing");
    bad("{'name':'','duration':'2h','masters':[{'name':'m'}]}", "name: must be a non-empty string");
    bad("{'name':7,'duration':'2h','masters':[{'name':'m'}]}", "name: must be a non-empty string");
    bad(D("'about':['x']"), "about: must be a non-empty string");
    bad(D("'seed':-1"), "seed: must be a whole number from 0 to 9223372036854775807");
    bad(D("'seed':1.5"), "seed: must be a whole number from 0 to 9223372036854775807");
    bad(D("'seed':'1'"), "seed: must be a whole number from 0 to 9223372036854775807");
    bad("{'name':'t','masters':[{'name':'m'}]}", "duration: missing");
    bad("{'name':'t','duration':'999ms','masters':[{'name':'m'}]}",
        "duration: must be at least 1000 ms");
    bad("{'name':'t','duration':'2 hours','masters':[{'name':'m'}]}", "duration: " DURATION_MSG);
    bad("{'name':'t','duration':7200,'masters':[{'name':'m'}]}", "duration: " DURATION_MSG);
    bad("{'name':'t','duration':'-2h','masters':[{'name':'m'}]}", "duration: " DURATION_MSG);
    bad("{'name':'t','duration':'off','masters':[{'name':'m'}]}", "duration: " DURATION_MSG);
    /* "90d" for "90s": an error, not a run that exhausts memory */
    bad("{'name':'t','duration':'90d','masters':[{'name':'m'}]}",
        "duration: must be at most 30 days (\"30d\")");
    bad(M("'build_every':'31d'"), "masters[0].build_every: must be at most 30 days (\"30d\")");
    good("{'name':'t','duration':'30d','masters':[{'name':'m'}]}", &s);
    sg_scenario_close(&s);
    bad("{'name':'t','duration':'2h'}",
        "masters: a scenario needs a Jenkins master or a Docker account");
    bad("{'name':'t','duration':'2h','masters':[],'docker':[]}",
        "masters: a scenario needs a Jenkins master or a Docker account");
    bad("{'name':'t','duration':'2h','masters':{'name':'m'}}", "masters: must be an array");
    bad("{'name':'t','duration':'2h','masters':[7]}", "masters[0]: must be an object");
    bad(D("'docker':'hub'"), "docker: must be an array");
    bad(D("'docker':[[]]"), "docker[0]: must be an object");
    bad(D("'faults':{}"), "faults: must be an array");
    bad(D("'faults':['flushall']"), "faults[0]: must be an object");
    bad(D("'changes':1"), "changes: must be an array");
    bad(D("'changes':[null]"), "changes[0]: must be an object");
    bad(D("'igor':5"), "igor: must be an object");
    bad(D("'nginx':[]"), "nginx: must be an object");
    bad(D("'stormguard':true"), "stormguard: must be an object");
    bad(D("'operator':'drop'"), "operator: must be an object");
}

static void igor_and_nginx_errors(void **state)
{
    (void)state;
    bad(D("'igor':{'pollInterval':'60s'}"), "igor.pollInterval: " UNKNOWN);
    bad(D("'igor':{'poll_interval':'999ms'}"), "igor.poll_interval: must be at least 1000 ms");
    bad(D("'igor':{'poll_interval':60}"), "igor.poll_interval: " DURATION_MSG);
    bad(D("'igor':{'poll_interval':'off'}"), "igor.poll_interval: " DURATION_MSG);
    bad(D("'igor':{'item_upper_threshold':-1}"),
        "igor.item_upper_threshold: must be a whole number from 0 to 2147483647");
    bad(D("'igor':{'item_upper_threshold':2147483648}"),
        "igor.item_upper_threshold: must be a whole number from 0 to 2147483647");
    bad(D("'igor':{'item_upper_threshold':10.5}"),
        "igor.item_upper_threshold: must be a whole number from 0 to 2147483647");
    bad(D("'igor':{'handle_first_builds':'no'}"),
        "igor.handle_first_builds: must be true or false");
    bad(D("'igor':{'handle_first_builds':0}"), "igor.handle_first_builds: must be true or false");
    bad(D("'igor':{'look_back_window':'never'}"),
        "igor.look_back_window: " DURATION_MSG ", or \"off\"");
    bad(D("'igor':{'post_latency':'0ms'}"), "igor.post_latency: must be at least 1 ms");
    bad(D("'igor':{'docker_poll_interval':'500ms'}"),
        "igor.docker_poll_interval: must be at least 1000 ms");
    bad(D("'nginx':{'rates':'10r/s'}"), "nginx.rates: " UNKNOWN);
    const char *rates[] = {"'10'",     "'0r/s'",   "'-1r/s'", "'10r/h'", "'r/s'",
                           "'infr/s'", "'nanr/s'", "10",      "'10 r/s'"};
    for (size_t i = 0; i < sizeof rates / sizeof *rates; i++) {
        char doc[256];
        snprintf(doc, sizeof doc, D("'nginx':{'rate':%s}"), rates[i]);
        bad(doc, "nginx.rate: must be a rate as nginx writes it: \"10r/s\" or \"600r/m\"");
    }
    bad(D("'nginx':{'burst':-1}"), "nginx.burst: must be a whole number from 0 to 1000000");
    bad(D("'nginx':{'burst':1000001}"), "nginx.burst: must be a whole number from 0 to 1000000");
}

static void master_and_docker_errors(void **state)
{
    (void)state;
    bad(M("'jobz':3"), "masters[0].jobz: " UNKNOWN);
    bad("{'name':'t','duration':'2h','masters':[{'jobs':3}]}", "masters[0].name: missing");
    bad("{'name':'t','duration':'2h','masters':[{'name':''}]}",
        "masters[0].name: must be a non-empty string");
    const char *jobs = "masters[0].jobs: must be a whole number from 0 to 1000000";
    bad(M("'jobs':-1"), jobs);
    bad(M("'jobs':1000001"), jobs);
    bad(M("'jobs':2.5"), jobs);
    bad(M("'jobs':'3'"), jobs);
    bad(M("'history':-1"), "masters[0].history: must be a whole number from 0 to 1000");
    bad(M("'history':1001"), "masters[0].history: must be a whole number from 0 to 1000");
    bad(M("'build_every':'often'"), "masters[0].build_every: " DURATION_MSG);
    bad(M("'build_duration':'999ms'"), "masters[0].build_duration: must be at least 1000 ms");
    bad(M("'build_duration':360"), "masters[0].build_duration: " DURATION_MSG);
    bad(M("'success_rate':1.01"), "masters[0].success_rate: must be a number from 0 to 1");
    bad(M("'success_rate':-0.5"), "masters[0].success_rate: must be a number from 0 to 1");
    bad(M("'success_rate':'1'"), "masters[0].success_rate: must be a number from 0 to 1");
    bad(M("'out_of_order':2"), "masters[0].out_of_order: must be a number from 0 to 1");
    bad(M("'pipelines_per_job':101"),
        "masters[0].pipelines_per_job: must be a whole number from 0 to 100");
    bad(M("'pipelines_per_job':-1"),
        "masters[0].pipelines_per_job: must be a whole number from 0 to 100");
    /* the index of the master at fault */
    bad("{'name':'t','duration':'2h','masters':[{'name':'a'},{'name':'b','jobs':-1}]}",
        "masters[1].jobs: must be a whole number from 0 to 1000000");
    bad("{'name':'t','duration':'2h','masters':[{'name':'a'},{'name':'b'},{'name':'a'}]}",
        "masters[2]: name \"a\" is taken by masters[0]");
    bad(D("'docker':[{'name':'hub','tagz':1}]"), "docker[0].tagz: " UNKNOWN);
    bad(D("'docker':[{'repositories':1}]"), "docker[0].name: missing");
    bad(D("'docker':[{'name':'hub','repositories':-1}]"),
        "docker[0].repositories: must be a whole number from 0 to 1000000");
    bad(D("'docker':[{'name':'hub'},{'name':'ecr','tags':1001}]"),
        "docker[1].tags: must be a whole number from 0 to 1000");
    bad(D("'docker':[{'name':'hub','push_every':'weekly'}]"),
        "docker[0].push_every: " DURATION_MSG);
    bad(D("'docker':[{'name':'hub','pipelines_per_repo':101}]"),
        "docker[0].pipelines_per_repo: must be a whole number from 0 to 100");
}

static void fault_and_change_errors(void **state)
{
    (void)state;
    bad(D("'faults':[{'kind':'flushall'}]"), "faults[0].at: missing");
    bad(D("'faults':[{'at':'1m'}]"), "faults[0].kind: missing");
    bad(D("'faults':[{'at':'1m','kind':'flushall','when':'now'}]"), "faults[0].when: " UNKNOWN);
    bad(D("'faults':[{'at':'1m','kind':'flushall'},{'at':'2m','kind':'nuke'}]"),
        "faults[1].kind: \"nuke\" is not one of flushall, flushdb, restart, failover_empty, "
        "evict, delete_pattern, park");
    bad(D("'faults':[{'at':'1m','kind':'evict'}]"),
        "faults[0].fraction: missing: evict needs the share of keys (evict) or of "
        "Clouddriver's first read (park)");
    bad(D("'faults':[{'at':'1m','kind':'park'}]"),
        "faults[0].fraction: missing: park needs the share of keys (evict) or of "
        "Clouddriver's first read (park)");
    bad(D("'faults':[{'at':'1m','kind':'evict','fraction':1.5}]"),
        "faults[0].fraction: must be a number from 0 to 1");
    bad(D("'faults':[{'at':'1m','kind':'evict','fraction':'half'}]"),
        "faults[0].fraction: must be a number from 0 to 1");
    bad(D("'faults':[{'at':'soon','kind':'restart'}]"), "faults[0].at: " DURATION_MSG);
    bad(D("'faults':[{'at':'3h','kind':'flushall'}]"),
        "faults: faults[0] is at 10800 s, after the end (duration)");
    bad(D("'faults':[{'at':'1h','kind':'flushall'},{'at':'121m','kind':'restart'}]"),
        "faults: faults[1] is at 7260 s, after the end (duration)");

    bad(D("'changes':[{'kind':'new_jobs','master':'m'}]"), "changes[0].at: missing");
    bad(D("'changes':[{'at':'1m'}]"), "changes[0].kind: missing");
    bad(D("'changes':[{'at':'1m','kind':'grow'}]"),
        "changes[0].kind: \"grow\" is not one of new_jobs, set_threshold");
    bad(D("'changes':[{'at':'1m','kind':'new_jobs','master':'m','jobs':3}]"),
        "changes[0].jobs: " UNKNOWN);
    bad(D("'changes':[{'at':'1m','kind':'new_jobs'}]"), "changes[0].master: missing");
    bad(D("'changes':[{'at':'1m','kind':'new_jobs','master':'m'},"
          "{'at':'1m','kind':'new_jobs','master':'jenkins-ci'}]"),
        "changes[1].master: no master is named \"jenkins-ci\"");
    bad(D("'changes':[{'at':'1m','kind':'new_jobs','master':'m','count':0}]"),
        "changes[0].count: must be a whole number from 1 to 1000000");
    bad(D("'changes':[{'at':'1m','kind':'new_jobs','master':'m','history':1001}]"),
        "changes[0].history: must be a whole number from 0 to 1000");
    bad(D("'changes':[{'at':'1m','kind':'set_threshold'}]"),
        "changes[0].value: missing: the new item_upper_threshold");
    bad(D("'changes':[{'at':'1m','kind':'set_threshold','value':-1}]"),
        "changes[0].value: must be a whole number from 0 to 2147483647");
}

static void gate_and_operator_errors(void **state)
{
    (void)state;
    bad(D("'stormguard':{'start_at':'1m'}"), "stormguard.start_at: " UNKNOWN);
    bad(D("'stormguard':{'starts_at':'later'}"), "stormguard.starts_at: " DURATION_MSG);
    bad(D("'stormguard':{'rewarm':'yes'}"), "stormguard.rewarm: must be true or false");
    bad(D("'stormguard':{'snapshot_interval':'999ms'}"),
        "stormguard.snapshot_interval: must be at least 1000 ms");
    bad(D("'operator':{'reacts':'1m'}"), "operator.reacts: " UNKNOWN);
    bad(D("'operator':{'reacts_after':'-1m'}"), "operator.reacts_after: " DURATION_MSG);
    bad(D("'operator':{'action':'retry'}"),
        "operator.action: \"retry\" is not one of release-newest, drop, none");
    bad(D("'operator':{'action':''}"), "operator.action: must be a non-empty string");
}

/* Not JSON: the message gives the line and column of the mistake, then
 * jansson's reason (its wording is jansson's, so only its presence is
 * checked). Duplicate members are mistakes too (the second would win). */
static void bad_json(const char *doc, int line, int column, const char *reason)
{
    sg_scenario s, poison;
    memset(&s, POISON, sizeof s);
    memset(&poison, POISON, sizeof poison);
    sg_error err = {0};
    assert_int_equal(parse(doc, &s, &err), SG_EUSAGE);
    char want[128];
    snprintf(want, sizeof want, "t.json: invalid JSON at line %d column %d: ", line, column);
    if (strncmp(err.msg, want, strlen(want)) || !strstr(err.msg, reason))
        fail_msg("%s:\n expected: %s...%s...\n      got: %s", doc, want, reason, err.msg);
    assert_memory_equal(&s, &poison, sizeof s);
}

static void invalid_json(void **state)
{
    (void)state;
    bad_json("{\n  'name': 't',\n  'duration': ,\n}", 3, 15, "unexpected token");
    bad_json("{'name':'t','duration':'2h','masters':[{'name':'m'}],'name':'u'}", 1, 59,
             "duplicate object key");
    bad_json("", 1, 0, "expected");
    bad_json("{'name':'t'", 1, 11, "expected");
    /* jansson takes no scalar for a document */
    bad_json("'flush'", 1, 7, "expected");
}

/* A file: what sg_scenario_load reads, or the reason it could not. */
static void load_files(void **state)
{
    (void)state;
    sg_scenario s, poison;
    memset(&s, POISON, sizeof s);
    memset(&poison, POISON, sizeof poison);
    sg_error err;
    assert_int_equal(sg_scenario_load("/nonexistent/flush.json", &s, &err), SG_EUSAGE);
    assert_string_equal(err.msg,
                        "reading scenario /nonexistent/flush.json: No such file or directory");
    assert_memory_equal(&s, &poison, sizeof s);
    char path[] = "/tmp/sg-scenario-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(sg_scenario_load(path, &s, &err), SG_EUSAGE);
    assert_non_null(strstr(err.msg, ": invalid JSON at line 1 column 0"));
    assert_memory_equal(&s, &poison, sizeof s);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"name\": \"file\", \"duration\": \"1h\", \"masters\": [{\"name\": \"m\"}]}\n", f);
    fclose(f);
    assert_int_equal(sg_scenario_load(path, &s, &err), 0);
    assert_string_equal(s.name, "file");
    sg_scenario_close(&s);
    unlink(path);
}

/* Every scenario shipped in simulations/ reads (found from this file's
 * path: tests/unit/ beside simulations/). */
static void shipped_scenarios_read(void **state)
{
    (void)state;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", __FILE__);
    char *slash = strstr(dir, "/tests/unit/test_scenario.c");
    assert_non_null(slash);
    snprintf(slash, sizeof dir - (size_t)(slash - dir), "/simulations");
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("opening %s", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".json"))
            continue;
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        sg_scenario s;
        sg_error err;
        if (sg_scenario_load(path, &s, &err))
            fail_msg("%s", err.msg);
        assert_true(*s.about);
        assert_true(s.nfaults > 0 || !strcmp(s.name, "normal-day") || !strcmp(s.name, "busy-day"));
        sg_scenario_close(&s);
        n++;
    }
    closedir(d);
    assert_true(n >= 11);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(every_field_read),
        cmocka_unit_test(document_errors),
        cmocka_unit_test(igor_and_nginx_errors),
        cmocka_unit_test(master_and_docker_errors),
        cmocka_unit_test(fault_and_change_errors),
        cmocka_unit_test(gate_and_operator_errors),
        cmocka_unit_test(invalid_json),
        cmocka_unit_test(load_files),
        cmocka_unit_test(shipped_scenarios_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
