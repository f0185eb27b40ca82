/* Tests wipe.h: every wipe rule, each way (it fires / it does not), the
 * wording of the evidence, and the notes on server changes that cost no data.
 *
 * Inputs are built on memory filled with a poison byte and only the fields a
 * rule may read are set, so a rule that reads a field it should not (a
 * pointer of 0xa5 bytes, a bool of 0xa5) crashes or trips UBSan. The result
 * is filled with a sentinel byte first, so a field the judge forgot to write
 * fails the comparison. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "stormguard/redis/wipe.h"

#define POISON 0xa5
#define SENTINEL 0x5a

#define T0 INT64_C(1700000000000) /* epoch ms of the last good check */
#define ADDRESS "10.0.0.5:6379"
#define CANARY "stormguard:canary"
#define RUN_A "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
#define RUN_B "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"
#define REPL_A "1111111111111111111111111111111111111111"
#define REPL_B "2222222222222222222222222222222222222222"
#define SAMPLE_GEN 7

/* A watcher whose last good check, at T0, saw master RUN_A with its canary
 * and a key sample of generation SAMPLE_GEN. */
static sg_wipe_known known_master(void)
{
    sg_wipe_known k;
    memset(&k, POISON, sizeof k);
    k.address = ADDRESS;
    k.canary = CANARY;
    k.count_pattern = "igor:*";
    k.canary_seen = true;
    k.run_id = RUN_A;
    k.role = "master";
    k.master_replid = REPL_A;
    k.checked_at_ms = T0;
    k.sample_gen = SAMPLE_GEN;
    return k;
}

/* The same server 5.5 s later, up for a day, canary present, no sample
 * asked about (so its other two fields stay poisoned). */
static sg_wipe_obs obs_same(sg_wipe_trigger trigger)
{
    sg_wipe_obs o;
    memset(&o, POISON, sizeof o);
    o.trigger = trigger;
    o.now_ms = T0 + 5500;
    o.canary = true;
    o.dbsize = 42;
    o.run_id = RUN_A;
    o.role = "master";
    o.master_replid = REPL_A;
    o.uptime_s = 86400;
    o.sample_n = 0;
    return o;
}

/* The same server after the data went: canary gone, dbsize 0. */
static sg_wipe_obs obs_emptied(sg_wipe_trigger trigger)
{
    sg_wipe_obs o = obs_same(trigger);
    o.canary = false;
    o.dbsize = 0;
    return o;
}

static void poison(void *p, size_t n)
{
    memset(p, POISON, n);
}

static const char *verdict_name(sg_wipe_verdict v)
{
    switch (v) {
    case SG_VERDICT_INTACT:
        return "intact";
    case SG_VERDICT_UNARMED:
        return "unarmed";
    case SG_VERDICT_WIPED:
        return "wiped";
    }
    return "(unset)";
}

static bool all_sentinel(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != SENTINEL)
            return false;
    return true;
}

/* Judges and checks what every result must hold: the verdict wanted, both
 * texts written and terminated, and for anything but a wipe an empty detail
 * and an untouched cause. */
static sg_wipe_result judge_at(const sg_wipe_known *k, const sg_wipe_obs *o, sg_wipe_verdict want,
                               int line)
{
    sg_wipe_result r;
    memset(&r, SENTINEL, sizeof r);
    sg_wipe_judge(k, o, &r);
    if (!memchr(r.detail, '\0', sizeof r.detail) || !memchr(r.note, '\0', sizeof r.note))
        fail_msg("line %d: detail or note not written", line);
    if (r.verdict != want)
        fail_msg("line %d: verdict %s, want %s (detail \"%s\")", line, verdict_name(r.verdict),
                 verdict_name(want), r.detail);
    if (want != SG_VERDICT_WIPED) {
        if (r.detail[0])
            fail_msg("line %d: %s with a detail: %s", line, verdict_name(want), r.detail);
        if (!all_sentinel(&r.cause, sizeof r.cause))
            fail_msg("line %d: cause written without a wipe", line);
    } else if (!r.detail[0]) {
        fail_msg("line %d: a wipe without a detail", line);
    }
    return r;
}

#define JUDGE(k, o, want) judge_at(k, o, want, __LINE__)

static void expect_wipe_at(const sg_wipe_known *k, const sg_wipe_obs *o, sg_wipe_cause cause,
                           const char *detail, int line)
{
    sg_wipe_result r = judge_at(k, o, SG_VERDICT_WIPED, line);
    if (r.cause != cause)
        fail_msg("line %d: cause %s, want %s (detail \"%s\")", line, sg_wipe_cause_name(r.cause),
                 sg_wipe_cause_name(cause), r.detail);
    if (strcmp(r.detail, detail))
        fail_msg("line %d: detail\n  \"%s\"\nwant\n  \"%s\"", line, r.detail, detail);
}

#define EXPECT_WIPE(k, o, cause, detail) expect_wipe_at(k, o, cause, detail, __LINE__)

/* ---- the canary ---- */

static void canary_present_is_intact(void **state)
{
    (void)state;
    sg_wipe_known k = known_master();
    sg_wipe_obs o = obs_same(SG_WIPE_TRIGGER_TIMER);
    sg_wipe_result r = JUDGE(&k, &o, SG_VERDICT_INTACT);
    assert_string_equal(r.note, "");
}

/* FLUSHALL/FLUSHDB on the same server: the canary is gone. */
static void canary_gone_is_flush(void **state)
{
    (void)state;
    sg_wipe_known k = known_master();
    sg_wipe_obs o = obs_emptied(SG_WIPE_TRIGGER_FLUSH);
    EXPECT_WIPE(&k, &o, SG_WIPE_FLUSH, "FLUSHALL/FLUSHDB: canary " CANARY " gone, dbsize 0");
    sg_wipe_result r = JUDGE(&k, &o, SG_VERDICT_WIPED);
    assert_string_equal(r.note, ""); /* nothing changed on the server */
}

/* What made the check run words the flush; it never decides it. */
static void flush_worded_by_trigger(void **state)
{
    (void)state;
    sg_wipe_known k = known_master();
    sg_wipe_obs o = obs_emptied(SG_WIPE_TRIGGER_CANARY);
    EXPECT_WIPE(&k, &o, SG_WIPE_FLUSH,
                "FLUSHALL/FLUSHDB or a deletion of the canary: canary " CANARY " gone, dbsize 0");
    o = obs_emptied(SG_WIPE_TRIGGER_FIRST);
    EXPECT_WIPE(&k, &o, SG_WIPE_FLUSH,
                "FLUSHALL/FLUSHDB while the watcher was reconnecting (same run_id): canary " CANARY
                " gone, dbsize 0");
    o = obs_emptied(SG_WIPE_TRIGGER_TIMER);
    EXPECT_WIPE(&k, &o, SG_WIPE_FLUSH,
                "FLUSHALL/FLUSHDB (found by the periodic check): canary " CANARY " gone, dbsize 0");
}

/* A null-key invalidation alone is no wipe: FLUSHDB of another database
 * sends it too, and a replica loading a dataset. */
static void invalidation_alone_is_not_a_wipe(void **state)
{
    (void)state;
    sg_wipe_known k = known_master();
    sg_wipe_obs o = obs_same(SG_WIPE_TRIGGER_FLUSH);
    JUDGE(&k, &o, SG_VERDICT_INTACT);
    o = obs_same(SG_WIPE_TRIGGER_CANARY);
    JUDGE(&k, &o, SG_VERDICT_INTACT);
}

/* DBSIZE is evidence, not a rule: a database holding only the canary is not
 * wiped, a full one without the canary is. */
static void dbsize_decides_nothing(void **state)
{
    (void)state;
    sg_wipe_known k = known_master();
    sg_wipe_obs o = obs_same(SG_WIPE_TRIGGER_TIMER);
    o.dbsize = 1;
    JUDGE(&k, &o, SG_VERDICT_INTACT);
    o = obs_emptied(SG_WIPE_TRIGGER_TIMER);
    o.dbsize = 5000;
    EXPECT_WIPE(&k, &o, SG_WIPE_FLUSH,
                "FLUSHALL/FLUSHDB (found by the periodic check): canary " CANARY
                " gone, dbsize 5000");
}

/* A canary never seen (first start, or a replica that refuses the SET) is
 * no proof of anything, whatever else looks bad. */
static void canary_never_seen_is_unarmed(void **state)
{
    (void)state;
    sg_wipe_known k = known_master();
    k.canary_seen = false;
    sg_wipe_obs o = obs_emptied(SG_WIPE_TRIGGER_FLUSH);
    JUDGE(&k, &o, SG_VERDICT_UNARMED);
    /* a new server and the whole sample gone: still nothing to judge by */
    o.run_id = RUN_B;
    o.uptime_s = 2;
    o.sample_n = 10;
    o.sample_present = 0;
    o.sample_gen = SAMPLE_GEN;
    sg_wipe_result r = JUDGE(&k, &o, SG_VERDICT_UNARMED);
    assert_string_equal(r.note, "new run_id b2b2b2b2b2b2 (was a1a1a1a1a1a1), canary absent");
}

/* No good check yet (the first session): the run_id rules have nothing to
 * compare, so the server's role and replication id are not even read. */
static void no_history_is_a_flush(void **state)
{
    (void)state;
    sg_wipe_known k = known_master();
    k.run_id = NULL;
    k.predecessor = NULL;
    poison(&k.role, sizeof k.role);
    poison(&k.master_replid, sizeof k.master_replid);
    poison(&k.checked_at_ms, sizeof k.checked_at_ms);
    sg_wipe_obs o = obs_emptied(SG_WIPE_TRIGGER_FIRST);
    o.run_id = RUN_B;
    o.role = "slave";
    o.master_replid = REPL_B;
    EXPECT_WIPE(&k, &o, SG_WIPE_FLUSH,
                "FLUSHALL/FLUSHDB while the watcher was reconnecting (same run_id): canary " CANARY
                " gone, dbsize 0");
    sg_wipe_result r = JUDGE(&k, &o, SG_VERDICT_WIPED);
    assert_string_equal(r.note, "");
    o.canary = true;
    r = JUDGE(&k, &o, SG_VERDICT_INTACT);
    assert_string_equal(r.note, "");
}

/* A Cluster master seen for the first time that took over another's slots
 * (the watcher set names the predecessor): its canary gone is a failover
 * to an empty replica, its canary kept a failover the data survived. */
static void predecessor_is_failover(void **state)
{
    (void)state;
    sg_wipe_known k = known_master();
    k.run_id = NULL;
    k.predecessor = "10.0.0.6:6379";
    poison(&k.role, sizeof k.role);
    poison(&k.master_replid, sizeof k.master_replid);
    poison(&k.checked_at_ms, sizeof k.checked_at_ms);
    sg_wipe_obs o = obs_emptied(SG_WIPE_TRIGGER_FIRST);
    o.run_id = RUN_B;
    o.uptime_s = 600;
    EXPECT_WIPE(&k, &o, SG_WIPE_FAILOVER,
                "failover: " ADDRESS " took over from 10.0.0.6:6379 (run_id b2b2b2b2b2b2, up 600 "
                "s, master): canary " CANARY " gone, dbsize 0");
    sg_wipe_result r = JUDGE(&k, &o, SG_VERDICT_WIPED);
    assert_false(r.kept);
    o.canary = true;
    r = JUDGE(&k, &o, SG_VERDICT_INTACT);
    assert_true(r.kept);
    assert_int_equal(r.kept_cause, SG_WIPE_FAILOVER);
    assert_string_equal(r.note, "failover: " ADDRESS " took over from 10.0.0.6:6379 (run_id "
                                "b2b2b2b2b2b2, up 600 s, master), canary kept: data survived");
}

/* ---- a new run_id ---- */

/* Younger than our absence (5 s since the last check, +1 s of slack): it
 * restarted without persistence. */
static void new_run_id_young_is_restart(void **state)
{
    (void)state;
    sg_wipe_known k = known_master();
    sg_wipe_obs o = obs_emptied(SG_WIPE_TRIGGER_FIRST);
    o.run_id = RUN_B;
    o.uptime_s = 3;
    EXPECT_WIPE(&k, &o, SG_WIPE_RESTART,
                "redis restarted (run_id a1a1a1a1a1a1 -> b2b2b2b2b2b2, up 3 s): canary " CANARY
                " gone, dbsize 0");
    o.uptime_s = 0;
    EXPECT_WIPE(&k, &o, SG_WIPE_RESTART,
                "redis restarted (run_id a1a1a1a1a1a1 -> b2b2b2b2b2b2, up 0 s): canary " CANARY
                " gone, dbsize 0");
    o.uptime_s = 6; /* away 5 s (5.5 rounds down), one second of slack */
    EXPECT_WIPE(&k, &o, SG_WIPE_RESTART,
                "redis restarted (run_id a1a1a1a1a1a1 -> b2b2b2b2b2b2, up 6 s): canary " CANARY
                " gone, dbsize 0");
    sg_wipe_result r = JUDGE(&k, &o, SG_VERDICT_WIPED);
    assert_string_equal(r.note, "new run_id b2b2b2b2b2b2 (was a1a1a1a1a1a1), canary absent");
}

/* Older than our absence, or of unknown age: another server took over the
 * address. */
static void new_run_id_old_is_another_server(void **state)
{
    (void)state;
    sg_wipe_known k = known_master();
    sg_wipe_obs o = obs_emptied(SG_WIPE_TRIGGER_FIRST);
    o.run_id = RUN_B;
    o.uptime_s = 7;
    EXPECT_WIPE(&k, &o, SG_WIPE_FAILOVER,
                "another server answers at " ADDRESS
                " (run_id a1a1a1a1a1a1 -> b2b2b2b2b2b2, up 7 s, master): canary " CANARY
                " gone, dbsize 0");
    o.uptime_s = -1;
    o.role = "slave";
    EXPECT_WIPE(&k, &o, SG_WIPE_FAILOVER,
                "another server answers at " ADDRESS
                " (run_id a1a1a1a1a1a1 -> b2b2b2b2b2b2, up -1 s, slave): canary " CANARY
                " gone, dbsize 0");
}

/* A restart with persistence kept the data: a note, no wipe. */
static void new_run_id_with_canary_is_intact(void **state)
{
    (void)state;
    sg_wipe_known k = known_master();
    sg_wipe_obs o = obs_same(SG_WIPE_TRIGGER_FIRST);
    o.run_id = RUN_B;
    o.uptime_s = 2;
    o.master_replid = REPL_B;
    sg_wipe_result r = JUDGE(&k, &o, SG_VERDICT_INTACT);
    assert_true(r.kept);
    assert_int_equal(r.kept_cause, SG_WIPE_RESTART);
    assert_string_equal(r.note, "redis restarted (run_id a1a1a1a1a1a1 -> b2b2b2b2b2b2, up 2 s), "
                                "canary kept: data survived");
}

/* ---- replication ---- */

/* The master became a replica (of an empty master): a failover. */
static void master_demoted_is_failover(void **state)
{
    (void)state;
    sg_wipe_known k = known_master();
    sg_wipe_obs o = obs_emptied(SG_WIPE_TRIGGER_FLUSH);
    o.role = "slave";
    o.master_replid = REPL_B;
    EXPECT_WIPE(&k, &o, SG_WIPE_FAILOVER,
                "failover (role master -> slave, master_replid 111111111111 -> 222222222222): "
                "canary " CANARY " gone, dbsize 0");
    sg_wipe_result r = JUDGE(&k, &o, SG_VERDICT_WIPED);
    assert_string_equal(r.note,
                        "role master -> slave, master_replid 111111111111 -> 222222222222, canary "
                        "absent");
}

/* A replica promoted to master: the role changed, though the new role is
 * master. */
static void replica_promoted_is_failover(void **state)
{
    (void)state;
    sg_wipe_known k = known_master();
    k.role = "slave";
    sg_wipe_obs o = obs_emptied(SG_WIPE_TRIGGER_TIMER);
    EXPECT_WIPE(&k, &o, SG_WIPE_FAILOVER,
                "failover (role slave -> master): canary " CANARY " gone, dbsize 0");
}

/* A replica that follows another master (a new master_replid, same role):
 * a failover. */
static void replica_new_master_is_failover(void **state)
{
    (void)state;
    sg_wipe_known k = known_master();
    k.role = "slave";
    sg_wipe_obs o = obs_emptied(SG_WIPE_TRIGGER_FLUSH);
    o.role = "slave";
    o.master_replid = REPL_B;
    EXPECT_WIPE(&k, &o, SG_WIPE_FAILOVER,
                "failover (master_replid 111111111111 -> 222222222222): canary " CANARY
                " gone, dbsize 0");
}

/* A master's new master_replid alone is no failover: Redis starts a new
 * replication history when it creates a backlog for a replica (or a
 * snapshot with --method sync) and when it frees an idle one. The canary
 * gone is then a flush. */
static void master_new_replid_is_not_failover(void **state)
{
    (void)state;
    sg_wipe_known k = known_master();
    sg_wipe_obs o = obs_emptied(SG_WIPE_TRIGGER_FLUSH);
    o.master_replid = REPL_B;
    EXPECT_WIPE(&k, &o, SG_WIPE_FLUSH, "FLUSHALL/FLUSHDB: canary " CANARY " gone, dbsize 0");
    sg_wipe_result r = JUDGE(&k, &o, SG_VERDICT_WIPED);
    assert_string_equal(r.note, "master_replid 111111111111 -> 222222222222, canary absent");
    o.canary = true;
    r = JUDGE(&k, &o, SG_VERDICT_INTACT);
    assert_false(r.kept); /* no failover: nothing to record */
    assert_string_equal(r.note,
                        "master_replid 111111111111 -> 222222222222, canary kept: data survived");
}

/* A failover to a replica that has the data: a note, no wipe. */
static void role_change_with_canary_is_intact(void **state)
{
    (void)state;
    sg_wipe_known k = known_master();
    sg_wipe_obs o = obs_same(SG_WIPE_TRIGGER_FLUSH);
    o.role = "slave";
    sg_wipe_result r = JUDGE(&k, &o, SG_VERDICT_INTACT);
    assert_true(r.kept);
    assert_int_equal(r.kept_cause, SG_WIPE_FAILOVER);
    assert_string_equal(r.note, "failover (role master -> slave), canary kept: data survived");
}

/* ---- the key sample ---- */

static sg_wipe_obs obs_sample(size_t n, int64_t present, uint64_t gen)
{
    sg_wipe_obs o = obs_same(SG_WIPE_TRIGGER_TIMER);
    o.sample_n = n;
    o.sample_present = present;
    o.sample_gen = gen;
    return o;
}

/* Half the sample or more gone while the canary stays: the poller's keys
 * were deleted (eviction, a runbook's SCAN | DEL). */
static void half_the_sample_gone_is_keys(void **state)
{
    (void)state;
    sg_wipe_known k = known_master();
    sg_wipe_obs o = obs_sample(10, 5, SAMPLE_GEN);
    EXPECT_WIPE(&k, &o, SG_WIPE_KEYS,
                "5 of 10 sampled keys (igor:*) gone, canary " CANARY " present, dbsize 42");
    o = obs_sample(10, 0, SAMPLE_GEN);
    EXPECT_WIPE(&k, &o, SG_WIPE_KEYS,
                "10 of 10 sampled keys (igor:*) gone, canary " CANARY " present, dbsize 42");
    o = obs_sample(1, 0, SAMPLE_GEN);
    EXPECT_WIPE(&k, &o, SG_WIPE_KEYS,
                "1 of 1 sampled keys (igor:*) gone, canary " CANARY " present, dbsize 42");
    k.count_pattern = NULL;
    o = obs_sample(32, 16, SAMPLE_GEN);
    EXPECT_WIPE(&k, &o, SG_WIPE_KEYS,
                "16 of 32 sampled keys gone, canary " CANARY " present, dbsize 42");
}

static void less_than_half_gone_is_intact(void **state)
{
    (void)state;
    sg_wipe_known k = known_master();
    sg_wipe_obs o = obs_sample(10, 6, SAMPLE_GEN);
    JUDGE(&k, &o, SG_VERDICT_INTACT);
    o = obs_sample(10, 10, SAMPLE_GEN);
    JUDGE(&k, &o, SG_VERDICT_INTACT);
    o = obs_sample(3, 2, SAMPLE_GEN);
    JUDGE(&k, &o, SG_VERDICT_INTACT);
}

/* The sample was replaced while the check was out: its count answers a
 * question about other keys. */
static void stale_sample_is_not_judged(void **state)
{
    (void)state;
    sg_wipe_known k = known_master();
    sg_wipe_obs o = obs_sample(10, 0, SAMPLE_GEN - 1);
    JUDGE(&k, &o, SG_VERDICT_INTACT);
}

/* With the canary gone the canary rules speak, not the sample. */
static void canary_rules_before_the_sample(void **state)
{
    (void)state;
    sg_wipe_known k = known_master();
    sg_wipe_obs o = obs_sample(10, 0, SAMPLE_GEN);
    o.canary = false;
    o.dbsize = 0;
    EXPECT_WIPE(&k, &o, SG_WIPE_FLUSH,
                "FLUSHALL/FLUSHDB (found by the periodic check): canary " CANARY " gone, dbsize 0");
}

/* ---- names ---- */

static void cause_names(void **state)
{
    (void)state;
    assert_string_equal(sg_wipe_cause_name(SG_WIPE_FLUSH), "flush");
    assert_string_equal(sg_wipe_cause_name(SG_WIPE_RESTART), "restart");
    assert_string_equal(sg_wipe_cause_name(SG_WIPE_FAILOVER), "failover");
    assert_string_equal(sg_wipe_cause_name(SG_WIPE_KEYS), "keys");
    assert_string_equal(sg_wipe_cause_name((sg_wipe_cause)99), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(canary_present_is_intact),
        cmocka_unit_test(canary_gone_is_flush),
        cmocka_unit_test(flush_worded_by_trigger),
        cmocka_unit_test(invalidation_alone_is_not_a_wipe),
        cmocka_unit_test(dbsize_decides_nothing),
        cmocka_unit_test(canary_never_seen_is_unarmed),
        cmocka_unit_test(no_history_is_a_flush),
        cmocka_unit_test(predecessor_is_failover),
        cmocka_unit_test(new_run_id_young_is_restart),
        cmocka_unit_test(new_run_id_old_is_another_server),
        cmocka_unit_test(new_run_id_with_canary_is_intact),
        cmocka_unit_test(master_demoted_is_failover),
        cmocka_unit_test(replica_promoted_is_failover),
        cmocka_unit_test(replica_new_master_is_failover),
        cmocka_unit_test(master_new_replid_is_not_failover),
        cmocka_unit_test(role_change_with_canary_is_intact),
        cmocka_unit_test(half_the_sample_gone_is_keys),
        cmocka_unit_test(less_than_half_gone_is_intact),
        cmocka_unit_test(stale_sample_is_not_judged),
        cmocka_unit_test(canary_rules_before_the_sample),
        cmocka_unit_test(cause_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
