/* Tests classify.h: replay / new / unknown / pass-through as DOMAIN.md
 * section 4 defines them, with the snapshot index and the gate's ledger set
 * up through sg_index_* and sg_ledger_*; kind and reason names. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/gate/classify.h"
#include "stormguard/base/error.h"
#include "stormguard/gate/event.h"
#include "stormguard/base/hashset.h"
#include "stormguard/base/util.h"

#define T0 INT64_C(1526030000000) /* a build start, epoch ms */
#define SEC INT64_C(1000)
/* FNV-1a 64 of "v1\0sha256:aaa" mod 2^53 - 1, plus 1, computed apart (Python) */
#define DOCKER_ID_V1_AAA INT64_C(1680384259324559)

/* Each test gets an empty index and ledger, closed by the teardown (ASan
 * checks that closing frees everything). */
typedef struct fixture {
    sg_index ix;
    sg_ledger l;
} fixture;

static int setup(void **state)
{
    fixture *f = malloc(sizeof *f);
    if (!f)
        return -1;
    memset(f, 0x5a, sizeof *f); /* init must not rely on zeroed memory */
    sg_index_init(&f->ix);
    sg_ledger_init(&f->l);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sg_index_close(&f->ix);
    sg_ledger_close(&f->l);
    free(f);
    return 0;
}

/* A completed build event; release with sg_event_close. ci selects the
 * Travis/GitLab number rule. */
static sg_event build_event(const char *source, const char *job, int64_t number, int64_t ts,
                            bool ci)
{
    sg_event e;
    memset(&e, 0, sizeof e);
    e.type = SG_EVENT_BUILD;
    e.shape = "igor";
    e.source = sg_xstrdup(source);
    e.job = sg_xstrdup(job);
    e.number = number;
    e.build_ts = ts;
    e.ci_number_cursor = ci;
    return e;
}

static void expect_kind_at(const fixture *f, const char *source, const char *job, int64_t number,
                           int64_t ts, bool ci, sg_kind kind, sg_reason reason, int line)
{
    sg_event e = build_event(source, job, number, ts, ci);
    sg_reason why = (sg_reason)0x7777; /* must be set on every path */
    sg_kind got = sg_classify(&f->ix, &f->l, &e, &why);
    if (got != kind || why != reason)
        fail_msg("line %d: (%s, %s, #%lld, ts %lld, %s) classified %s (%s), want %s (%s)", line,
                 source, job, (long long)number, (long long)ts, ci ? "travis" : "jenkins",
                 sg_kind_name(got), sg_reason_name(why), sg_kind_name(kind),
                 sg_reason_name(reason));
    sg_event_close(&e);
}

#define EXPECT(f, source, job, number, ts, ci, kind, reason)                                       \
    expect_kind_at(f, source, job, number, ts, ci, kind, reason, __LINE__)

#define JENKINS false
#define TRAVIS true

/* ---- replays ---- */

static void posted_marker_is_replay(void **state)
{
    fixture *f = *state;
    sg_index_cursor(&f->ix, "jenkins-prod", "svc", T0);
    sg_index_posted(&f->ix, "jenkins-prod", "svc", 42);
    /* started after the cursor, but Igor marked it posted */
    EXPECT(f, "jenkins-prod", "svc", 42, T0 + 60 * SEC, JENKINS, SG_KIND_REPLAY, SG_REASON_POSTED);
    EXPECT(f, "jenkins-prod", "svc", 43, T0 + 60 * SEC, JENKINS, SG_KIND_NEW, SG_REASON_BEYOND);
    /* the marker is per job */
    sg_index_cursor(&f->ix, "jenkins-prod", "other", T0);
    EXPECT(f, "jenkins-prod", "other", 42, T0 + 60 * SEC, JENKINS, SG_KIND_NEW, SG_REASON_BEYOND);
}

static void posted_marker_alone_makes_job_known(void **state)
{
    fixture *f = *state;
    sg_index_posted(&f->ix, "jenkins-prod", "svc", 7);
    EXPECT(f, "jenkins-prod", "svc", 7, T0, JENKINS, SG_KIND_REPLAY, SG_REASON_POSTED);
    EXPECT(f, "jenkins-prod", "svc", 8, T0, JENKINS, SG_KIND_NEW, SG_REASON_BEYOND);
    /* Travis builds can carry posted markers too */
    sg_index_completed(&f->ix, "travis", "org/repo", 3);
    sg_index_posted(&f->ix, "travis", "org/repo", 9);
    EXPECT(f, "travis", "org/repo", 9, T0, TRAVIS, SG_KIND_REPLAY, SG_REASON_POSTED);
    EXPECT(f, "travis", "org/repo", 10, T0, TRAVIS, SG_KIND_NEW, SG_REASON_BEYOND);
}

static void jenkins_cursor(void **state)
{
    fixture *f = *state;
    sg_index_cursor(&f->ix, "jenkins-prod", "svc", T0);
    EXPECT(f, "jenkins-prod", "svc", 10, T0 - 3600 * SEC, JENKINS, SG_KIND_REPLAY,
           SG_REASON_CURSOR);
    EXPECT(f, "jenkins-prod", "svc", 11, T0 - 1, JENKINS, SG_KIND_REPLAY, SG_REASON_CURSOR);
    /* started exactly at the cursor: processed already */
    EXPECT(f, "jenkins-prod", "svc", 12, T0, JENKINS, SG_KIND_REPLAY, SG_REASON_CURSOR);
    EXPECT(f, "jenkins-prod", "svc", 13, T0 + 1, JENKINS, SG_KIND_NEW, SG_REASON_BEYOND);
    EXPECT(f, "jenkins-prod", "svc", 14, T0 + 3600 * SEC, JENKINS, SG_KIND_NEW, SG_REASON_BEYOND);
    /* the number plays no part for Jenkins: a huge number before the cursor
     * is a replay, a small one after it is new */
    EXPECT(f, "jenkins-prod", "svc", 1000000, T0 - 1, JENKINS, SG_KIND_REPLAY, SG_REASON_CURSOR);
    EXPECT(f, "jenkins-prod", "svc", 1, T0 + 1, JENKINS, SG_KIND_NEW, SG_REASON_BEYOND);
}

static void jenkins_unknown_start_is_not_a_cursor_replay(void **state)
{
    fixture *f = *state;
    /* build_ts 0 means "unknown", not "the epoch": no evidence of a replay */
    sg_index_cursor(&f->ix, "jenkins-prod", "svc", T0);
    EXPECT(f, "jenkins-prod", "svc", 12, 0, JENKINS, SG_KIND_NEW, SG_REASON_BEYOND);
}

static void cursor_moves(void **state)
{
    fixture *f = *state;
    sg_index_cursor(&f->ix, "jenkins-prod", "svc", T0);
    EXPECT(f, "jenkins-prod", "svc", 20, T0 + 10 * SEC, JENKINS, SG_KIND_NEW, SG_REASON_BEYOND);
    /* a later snapshot with an advanced cursor */
    sg_index_cursor(&f->ix, "jenkins-prod", "svc", T0 + 10 * SEC);
    EXPECT(f, "jenkins-prod", "svc", 20, T0 + 10 * SEC, JENKINS, SG_KIND_REPLAY, SG_REASON_CURSOR);
    assert_int_equal(f->ix.jobs.len, 1);
}

/* DOMAIN.md section 4: builds finish out of order. The job's cursor is at
 * build 100's start; 101 starts later, then 102; 102 is short and completes
 * first, then the long 101. Both are genuine. */
static void jenkins_out_of_order_completions(void **state)
{
    fixture *f = *state;
    const int64_t t100 = T0, t101 = T0 + 30 * SEC, t102 = T0 + 60 * SEC;
    sg_index_cursor(&f->ix, "jenkins-prod", "svc", t100);

    EXPECT(f, "jenkins-prod", "svc", 102, t102, JENKINS, SG_KIND_NEW, SG_REASON_BEYOND);
    sg_ledger_add(&f->l, "jenkins-prod", "svc"); /* the gate forwards it */
    EXPECT(f, "jenkins-prod", "svc", 101, t101, JENKINS, SG_KIND_NEW, SG_REASON_BEYOND);

    /* a later snapshot records 102 as the job's highest build: 101 is still
     * not judged by its number (its second delivery is the journal's to
     * tell, from the store's ledger) */
    sg_index_completed(&f->ix, "jenkins-prod", "svc", 102);
    EXPECT(f, "jenkins-prod", "svc", 101, t101, JENKINS, SG_KIND_NEW, SG_REASON_BEYOND);

    /* 100 itself and anything before it: the cursor */
    EXPECT(f, "jenkins-prod", "svc", 100, t100, JENKINS, SG_KIND_REPLAY, SG_REASON_CURSOR);
    EXPECT(f, "jenkins-prod", "svc", 99, t100 - 90 * SEC, JENKINS, SG_KIND_REPLAY,
           SG_REASON_CURSOR);
}

static void jenkins_ignores_last_completed(void **state)
{
    fixture *f = *state;
    /* a Jenkins event for a job with only a number fact: the number rule is
     * Travis/GitLab's, so a low number is not a replay */
    sg_index_completed(&f->ix, "jenkins-prod", "svc", 50);
    EXPECT(f, "jenkins-prod", "svc", 10, T0, JENKINS, SG_KIND_NEW, SG_REASON_BEYOND);
    EXPECT(f, "jenkins-prod", "svc", 50, T0, JENKINS, SG_KIND_NEW, SG_REASON_BEYOND);
}

static void travis_number(void **state)
{
    fixture *f = *state;
    sg_index_completed(&f->ix, "travis-ci", "org/repo", 50);
    EXPECT(f, "travis-ci", "org/repo", 1, T0, TRAVIS, SG_KIND_REPLAY, SG_REASON_NUMBER);
    EXPECT(f, "travis-ci", "org/repo", 49, T0, TRAVIS, SG_KIND_REPLAY, SG_REASON_NUMBER);
    EXPECT(f, "travis-ci", "org/repo", 50, T0, TRAVIS, SG_KIND_REPLAY, SG_REASON_NUMBER);
    EXPECT(f, "travis-ci", "org/repo", 51, T0, TRAVIS, SG_KIND_NEW, SG_REASON_BEYOND);
    EXPECT(f, "travis-ci", "org/repo", 51, 0, TRAVIS, SG_KIND_NEW, SG_REASON_BEYOND);
    /* a later snapshot */
    sg_index_completed(&f->ix, "travis-ci", "org/repo", 51);
    EXPECT(f, "travis-ci", "org/repo", 51, T0, TRAVIS, SG_KIND_REPLAY, SG_REASON_NUMBER);
    EXPECT(f, "travis-ci", "org/repo", 52, T0, TRAVIS, SG_KIND_NEW, SG_REASON_BEYOND);
}

static void travis_job_with_only_a_jenkins_cursor(void **state)
{
    fixture *f = *state;
    /* the cursor rule is Jenkins': a Travis build started before it is not
     * shown to be a replay, and there is no completed number to compare */
    sg_index_cursor(&f->ix, "ci", "org/repo", T0);
    EXPECT(f, "ci", "org/repo", 3, T0 - 60 * SEC, TRAVIS, SG_KIND_NEW, SG_REASON_BEYOND);
    EXPECT(f, "ci", "org/repo", 4, T0 + 60 * SEC, TRAVIS, SG_KIND_NEW, SG_REASON_BEYOND);
}

static void both_facts_kept_per_job(void **state)
{
    fixture *f = *state;
    /* setting one fact must not reset the other */
    sg_index_cursor(&f->ix, "m", "job", T0);
    sg_index_completed(&f->ix, "m", "job", 30);
    sg_index_posted(&f->ix, "m", "job", 99);
    EXPECT(f, "m", "job", 31, T0 - 1, JENKINS, SG_KIND_REPLAY, SG_REASON_CURSOR);
    EXPECT(f, "m", "job", 30, T0 + 1, TRAVIS, SG_KIND_REPLAY, SG_REASON_NUMBER);
    sg_index_completed(&f->ix, "m", "job", 31);
    EXPECT(f, "m", "job", 32, T0 - 1, JENKINS, SG_KIND_REPLAY, SG_REASON_CURSOR);
    sg_index_cursor(&f->ix, "m", "job", T0 + 10);
    EXPECT(f, "m", "job", 31, T0 + 20, TRAVIS, SG_KIND_REPLAY, SG_REASON_NUMBER);
    EXPECT(f, "m", "job", 32, T0 + 20, TRAVIS, SG_KIND_NEW, SG_REASON_BEYOND);
    assert_int_equal(f->ix.jobs.len, 1);
    assert_int_equal(f->ix.posted.len, 1);
}

/* ---- new / unknown ---- */

static void job_known_only_from_ledger_is_new(void **state)
{
    fixture *f = *state;
    /* the snapshot is gone (cold start after the wipe), but the gate
     * forwarded another build of the job */
    sg_ledger_add(&f->l, "jenkins-prod", "svc");
    EXPECT(f, "jenkins-prod", "svc", 8, T0, JENKINS, SG_KIND_NEW, SG_REASON_LEDGER_JOB);
    EXPECT(f, "jenkins-prod", "svc", 6, T0, JENKINS, SG_KIND_NEW, SG_REASON_LEDGER_JOB);
    EXPECT(f, "jenkins-prod", "svc", 8, T0, TRAVIS, SG_KIND_NEW, SG_REASON_LEDGER_JOB);
}

static void job_in_neither_is_unknown(void **state)
{
    fixture *f = *state;
    EXPECT(f, "jenkins-prod", "svc", 1, T0, JENKINS, SG_KIND_UNKNOWN, SG_REASON_UNKNOWN_JOB);
    EXPECT(f, "travis-ci", "org/repo", 1, T0, TRAVIS, SG_KIND_UNKNOWN, SG_REASON_UNKNOWN_JOB);
    /* other jobs known, this one not */
    sg_index_cursor(&f->ix, "jenkins-prod", "svc-a", T0);
    sg_index_completed(&f->ix, "jenkins-prod", "svc-b", 10);
    sg_index_posted(&f->ix, "jenkins-prod", "svc-c", 3);
    sg_ledger_add(&f->l, "jenkins-prod", "svc-d");
    EXPECT(f, "jenkins-prod", "svc", 1, T0 - 60 * SEC, JENKINS, SG_KIND_UNKNOWN,
           SG_REASON_UNKNOWN_JOB);
    EXPECT(f, "jenkins-prod", "svc-a/child", 1, T0 - 60 * SEC, JENKINS, SG_KIND_UNKNOWN,
           SG_REASON_UNKNOWN_JOB);
    EXPECT(f, "jenkins-prod", "svc-", 4, T0, JENKINS, SG_KIND_UNKNOWN, SG_REASON_UNKNOWN_JOB);
    /* the same names are known */
    EXPECT(f, "jenkins-prod", "svc-a", 1, T0 - 60 * SEC, JENKINS, SG_KIND_REPLAY, SG_REASON_CURSOR);
    EXPECT(f, "jenkins-prod", "svc-b", 5, T0, TRAVIS, SG_KIND_REPLAY, SG_REASON_NUMBER);
    EXPECT(f, "jenkins-prod", "svc-c", 3, T0, JENKINS, SG_KIND_REPLAY, SG_REASON_POSTED);
    EXPECT(f, "jenkins-prod", "svc-d", 5, T0, JENKINS, SG_KIND_NEW, SG_REASON_LEDGER_JOB);
}

static void passthrough_event(void **state)
{
    fixture *f = *state;
    sg_event e;
    memset(&e, 0, sizeof e);
    e.type = SG_EVENT_PASSTHROUGH;
    e.shape = "other";
    sg_reason why = SG_REASON_LEDGER;
    assert_int_equal(sg_classify(&f->ix, &f->l, &e, &why), SG_KIND_PASSTHROUGH);
    assert_int_equal(why, SG_REASON_NOT_A_BUILD);
    sg_event_close(&e);

    /* even with names that the ledger and index know */
    sg_ledger_add(&f->l, "m", "job");
    sg_index_cursor(&f->ix, "m", "job", T0);
    e = build_event("m", "job", 3, T0 - 1, false);
    e.type = SG_EVENT_PASSTHROUGH;
    why = SG_REASON_LEDGER;
    assert_int_equal(sg_classify(&f->ix, &f->l, &e, &why), SG_KIND_PASSTHROUGH);
    assert_int_equal(why, SG_REASON_NOT_A_BUILD);
    sg_event_close(&e);
}

/* ---- Docker (Igor's DockerMonitor events) ---- */

static sg_event docker_event(const char *account, const char *repo, const char *tag,
                             const char *digest)
{
    sg_event e;
    memset(&e, 0, sizeof e);
    e.type = SG_EVENT_DOCKER;
    e.shape = "igor-docker";
    e.source = sg_xstrdup(account);
    e.job = sg_xstrdup(repo);
    e.tag = sg_xstrdup(tag);
    e.digest = digest ? sg_xstrdup(digest) : NULL;
    return e;
}

static void expect_docker_at(const sg_index *ix, const sg_ledger *l, const char *account,
                             const char *repo, const char *tag, const char *digest, sg_kind kind,
                             sg_reason reason, int line)
{
    sg_event e = docker_event(account, repo, tag, digest);
    sg_reason why = (sg_reason)0x7777;
    sg_kind got = sg_classify(ix, l, &e, &why);
    if (got != kind || why != reason)
        fail_msg("line %d: docker (%s, %s, %s, %s) classified %s (%s), want %s (%s)", line, account,
                 repo, tag, digest ? digest : "null", sg_kind_name(got), sg_reason_name(why),
                 sg_kind_name(kind), sg_reason_name(reason));
    sg_event_close(&e);
}

#define EXPECT_DOCKER(ix, l, a, r, t, d, kind, reason)                                             \
    expect_docker_at(ix, l, a, r, t, d, kind, reason, __LINE__)

/* Each row of the Docker rules: a known tag with its digest, or without one
 * said (by the event or the index), is a replay; a known tag with another
 * digest was pushed again: new; a new tag of a repository the index or the
 * ledger knows is new; a repository neither knows is unknown. Accounts and
 * repositories are apart. */
static void docker_rules(void **state)
{
    fixture *f = *state;
    sg_index_docker(&f->ix, "hub", "lib/app", "v1", "sha256:aaa");
    sg_index_docker(&f->ix, "hub", "lib/app", "v2", "~"); /* Igor's null digest */
    sg_index_docker(&f->ix, "hub", "lib/web", "v1", NULL);
    EXPECT_DOCKER(&f->ix, &f->l, "hub", "lib/app", "v1", "sha256:aaa", SG_KIND_REPLAY,
                  SG_REASON_DOCKER_TAG);
    EXPECT_DOCKER(&f->ix, &f->l, "hub", "lib/app", "v1", NULL, SG_KIND_REPLAY,
                  SG_REASON_DOCKER_TAG);
    EXPECT_DOCKER(&f->ix, &f->l, "hub", "lib/app", "v2", "sha256:ccc", SG_KIND_REPLAY,
                  SG_REASON_DOCKER_TAG);
    EXPECT_DOCKER(&f->ix, &f->l, "hub", "lib/web", "v1", "sha256:ddd", SG_KIND_REPLAY,
                  SG_REASON_DOCKER_TAG);
    EXPECT_DOCKER(&f->ix, &f->l, "hub", "lib/app", "v1", "sha256:bbb", SG_KIND_NEW,
                  SG_REASON_DOCKER_DIGEST);
    EXPECT_DOCKER(&f->ix, &f->l, "hub", "lib/app", "v3", "sha256:eee", SG_KIND_NEW,
                  SG_REASON_DOCKER_NEW_TAG);
    EXPECT_DOCKER(&f->ix, &f->l, "hub", "lib/other", "v1", "sha256:aaa", SG_KIND_UNKNOWN,
                  SG_REASON_DOCKER_UNKNOWN);
    EXPECT_DOCKER(&f->ix, &f->l, "gcr", "lib/app", "v1", "sha256:aaa", SG_KIND_UNKNOWN,
                  SG_REASON_DOCKER_UNKNOWN);
    /* the tag "v1" of "lib/app" is not the tag "app:v1" of "lib" */
    EXPECT_DOCKER(&f->ix, &f->l, "hub", "lib", "app:v1", "sha256:aaa", SG_KIND_UNKNOWN,
                  SG_REASON_DOCKER_UNKNOWN);
    /* the ledger makes a repository known */
    sg_ledger_add(&f->l, "gcr", "team/svc");
    EXPECT_DOCKER(&f->ix, &f->l, "gcr", "team/svc", "v9", "sha256:fff", SG_KIND_NEW,
                  SG_REASON_DOCKER_NEW_TAG);
    /* the ledger's tags judge as the index does; an event without a digest
     * on its tag alone */
    sg_ledger_add_tag(&f->l, "hub", "lib/led", "v1", "sha256:x");
    EXPECT_DOCKER(&f->ix, &f->l, "hub", "lib/led", "v1", "sha256:x", SG_KIND_REPLAY,
                  SG_REASON_LEDGER);
    EXPECT_DOCKER(&f->ix, &f->l, "hub", "lib/led", "v1", NULL, SG_KIND_REPLAY, SG_REASON_LEDGER);
    EXPECT_DOCKER(&f->ix, &f->l, "hub", "lib/led", "v1", "sha256:y", SG_KIND_NEW,
                  SG_REASON_DOCKER_DIGEST);
    EXPECT_DOCKER(&f->ix, &f->l, "hub", "lib/led", "v2", "sha256:y", SG_KIND_NEW,
                  SG_REASON_DOCKER_NEW_TAG);
    /* the index has v1 with aaa, the ledger accepted it pushed again as bbb */
    sg_ledger_add_tag(&f->l, "hub", "lib/app", "v1", "sha256:bbb");
    EXPECT_DOCKER(&f->ix, &f->l, "hub", "lib/app", "v1", "sha256:bbb", SG_KIND_REPLAY,
                  SG_REASON_LEDGER);
    EXPECT_DOCKER(&f->ix, &f->l, "hub", "lib/app", "v1", "sha256:ccc", SG_KIND_NEW,
                  SG_REASON_DOCKER_DIGEST);
    /* a Jenkins job of the same names is another thing */
    sg_index_cursor(&f->ix, "jenkins", "build-me", T0);
    EXPECT_DOCKER(&f->ix, &f->l, "jenkins", "build-me", "v1", "sha256:aaa", SG_KIND_UNKNOWN,
                  SG_REASON_DOCKER_UNKNOWN);
}

/* Tags an older snapshot had and a newer lacks (evicted from Igor's keys)
 * stay known, as jobs do. */
static void docker_tags_inherited(void **state)
{
    fixture *f = *state;
    sg_index older;
    sg_index_init(&older);
    sg_index_docker(&older, "hub", "lib/app", "v1", "sha256:aaa");
    sg_index_docker(&older, "hub", "lib/gone", "v1", "sha256:bbb");
    sg_index_docker(&f->ix, "hub", "lib/app", "v2", "sha256:ccc");
    EXPECT_DOCKER(&f->ix, &f->l, "hub", "lib/app", "v1", "sha256:aaa", SG_KIND_NEW,
                  SG_REASON_DOCKER_NEW_TAG);
    sg_index_inherit(&f->ix, &older, T0);
    EXPECT_DOCKER(&f->ix, &f->l, "hub", "lib/app", "v1", "sha256:aaa", SG_KIND_REPLAY,
                  SG_REASON_DOCKER_TAG);
    EXPECT_DOCKER(&f->ix, &f->l, "hub", "lib/gone", "v1", "sha256:bbb", SG_KIND_REPLAY,
                  SG_REASON_DOCKER_TAG);
    EXPECT_DOCKER(&f->ix, &f->l, "hub", "lib/gone", "v2", "sha256:ddd", SG_KIND_NEW,
                  SG_REASON_DOCKER_NEW_TAG);
    /* a generation later, then another: forgotten */
    sg_index newer, newest;
    sg_index_init(&newer);
    sg_index_init(&newest);
    sg_index_inherit(&newer, &f->ix, T0 + SG_INDEX_KEEP_MS);
    EXPECT_DOCKER(&newer, &f->l, "hub", "lib/gone", "v1", "sha256:bbb", SG_KIND_REPLAY,
                  SG_REASON_DOCKER_TAG);
    sg_index_inherit(&newest, &newer, T0 + 2 * SG_INDEX_KEEP_MS + 1);
    EXPECT_DOCKER(&newest, &f->l, "hub", "lib/gone", "v1", "sha256:bbb", SG_KIND_UNKNOWN,
                  SG_REASON_DOCKER_UNKNOWN);
    sg_index_close(&older);
    sg_index_close(&newer);
    sg_index_close(&newest);
}

/* The ledger's identity of a Docker event: stable, tag and digest apart. */
static void docker_identity(void **state)
{
    (void)state;
    int64_t a = sg_docker_identity("v1", "sha256:aaa");
    assert_true(a >= 1 && a < (INT64_C(1) << 53));
    assert_int_equal(a, sg_docker_identity("v1", "sha256:aaa"));
    assert_int_not_equal(a, sg_docker_identity("v1", "sha256:aab"));
    assert_int_not_equal(a, sg_docker_identity("v1s", "ha256:aaa"));
    assert_int_not_equal(sg_docker_identity("v1", NULL), a);
    assert_int_equal(sg_docker_identity("v1", NULL), sg_docker_identity("v1", ""));
    /* stored in the ledger: never to change (FNV-1a of "v1\0sha256:aaa") */
    assert_int_equal(sg_docker_identity("v1", "sha256:aaa"), DOCKER_ID_V1_AAA);
}

static void jobs_separated_by_source(void **state)
{
    fixture *f = *state;
    /* the same job name on two masters */
    sg_index_cursor(&f->ix, "jenkins-a", "svc", T0);
    sg_index_posted(&f->ix, "jenkins-a", "svc", 6);
    sg_index_completed(&f->ix, "jenkins-a", "svc", 9);
    sg_ledger_add(&f->l, "jenkins-a", "svc");
    EXPECT(f, "jenkins-b", "svc", 5, T0 - 60 * SEC, JENKINS, SG_KIND_UNKNOWN,
           SG_REASON_UNKNOWN_JOB);
    EXPECT(f, "jenkins-b", "svc", 6, T0 - 60 * SEC, JENKINS, SG_KIND_UNKNOWN,
           SG_REASON_UNKNOWN_JOB);
    EXPECT(f, "jenkins-b", "svc", 7, T0, TRAVIS, SG_KIND_UNKNOWN, SG_REASON_UNKNOWN_JOB);

    /* each master has its own cursor */
    sg_index_cursor(&f->ix, "jenkins-b", "svc", T0 - 100 * SEC);
    EXPECT(f, "jenkins-a", "svc", 7, T0 - 50 * SEC, JENKINS, SG_KIND_REPLAY, SG_REASON_CURSOR);
    EXPECT(f, "jenkins-b", "svc", 7, T0 - 50 * SEC, JENKINS, SG_KIND_NEW, SG_REASON_BEYOND);
    EXPECT(f, "jenkins-b", "svc", 5, T0 - 50 * SEC, JENKINS, SG_KIND_NEW, SG_REASON_BEYOND);
    EXPECT(f, "jenkins-b", "svc", 6, T0 - 50 * SEC, JENKINS, SG_KIND_NEW, SG_REASON_BEYOND);
    EXPECT(f, "jenkins-b", "svc", 8, T0, TRAVIS, SG_KIND_NEW, SG_REASON_BEYOND);

    /* the split between source and job is part of the key */
    sg_index_cursor(&f->ix, "a", "bc", T0);
    EXPECT(f, "ab", "c", 1, T0 - 1, JENKINS, SG_KIND_UNKNOWN, SG_REASON_UNKNOWN_JOB);
    EXPECT(f, "a", "bc", 1, T0 - 1, JENKINS, SG_KIND_REPLAY, SG_REASON_CURSOR);
}

static void many_jobs(void **state)
{
    fixture *f = *state;
    /* an index large enough to grow many times */
    enum { N = 5000 };
    char job[32];
    for (int i = 0; i < N; i++) {
        snprintf(job, sizeof job, "job-%d", i);
        if (i % 2)
            sg_index_cursor(&f->ix, "m", job, T0 + i);
        else
            sg_index_completed(&f->ix, "m", job, i + 1);
        if (i % 3 == 0)
            sg_ledger_add(&f->l, "m", job);
    }
    assert_int_equal(f->ix.jobs.len, N);
    for (int i = 0; i < N; i++) {
        snprintf(job, sizeof job, "job-%d", i);
        if (i % 2) {
            EXPECT(f, "m", job, 5, T0 + i, JENKINS, SG_KIND_REPLAY, SG_REASON_CURSOR);
            EXPECT(f, "m", job, 5, T0 + i + 1, JENKINS, SG_KIND_NEW, SG_REASON_BEYOND);
        } else {
            EXPECT(f, "m", job, i + 1, T0, TRAVIS, SG_KIND_REPLAY, SG_REASON_NUMBER);
            EXPECT(f, "m", job, i + 2, T0, TRAVIS, SG_KIND_NEW, SG_REASON_BEYOND);
        }
        snprintf(job, sizeof job, "other-%d", i);
        EXPECT(f, "m", job, 1, T0, JENKINS, SG_KIND_UNKNOWN, SG_REASON_UNKNOWN_JOB);
    }
}

/* ---- through the parser: the event's names match the index's ---- */

/* A newer index that lost jobs (evicted, deleted, half re-posted) keeps
 * what the older knew of them: their old builds stay replays; what the
 * newer knows wins. */
static void inherited_jobs_stay_known(void **state)
{
    fixture *f = *state;
    sg_index older;
    sg_index_init(&older);
    sg_index_cursor(&older, "m", "kept", 1000);
    sg_index_cursor(&older, "m", "lost", 2000);
    sg_index_posted(&older, "m", "lost", 77);
    sg_index_cursor(&f->ix, "m", "kept", 5000); /* the newer moved kept's cursor */
    sg_index_cursor(&older, "m", "half", 3000);
    sg_index_posted(&f->ix, "m", "half", 4); /* the newer has its markers, no cursor */
    EXPECT(f, "m", "lost", 5, 1500, JENKINS, SG_KIND_UNKNOWN, SG_REASON_UNKNOWN_JOB);
    sg_index_inherit(&f->ix, &older, T0);
    EXPECT(f, "m", "lost", 5, 1500, JENKINS, SG_KIND_REPLAY, SG_REASON_CURSOR);
    EXPECT(f, "m", "lost", 77, 9000, JENKINS, SG_KIND_REPLAY, SG_REASON_POSTED);
    EXPECT(f, "m", "lost", 78, 9000, JENKINS, SG_KIND_NEW, SG_REASON_BEYOND);
    EXPECT(f, "m", "kept", 9, 4000, JENKINS, SG_KIND_REPLAY, SG_REASON_CURSOR);
    EXPECT(f, "m", "kept", 10, 6000, JENKINS, SG_KIND_NEW, SG_REASON_BEYOND);
    EXPECT(f, "m", "half", 3, 2500, JENKINS, SG_KIND_REPLAY, SG_REASON_CURSOR);
    EXPECT(f, "m", "half", 4, 3500, JENKINS, SG_KIND_REPLAY, SG_REASON_POSTED);
    sg_index_close(&older);
}

/* sg_classify of a Jenkins build against ix. */
static sg_kind kind_in(const sg_index *ix, const sg_ledger *l, const char *job, int64_t number,
                       int64_t ts)
{
    sg_event e = build_event("m", job, number, ts, JENKINS);
    sg_reason why;
    sg_kind k = sg_classify(ix, l, &e, &why);
    sg_event_close(&e);
    return k;
}

/* An index taken every minute after the poller lost a job's keys keeps the
 * job for at least SG_INDEX_KEEP_MS and forgets it within twice that; a
 * marker that vanished (Igor prunes a job's older markers) likewise: the
 * index does not grow with every build ever posted. */
static void inherited_facts_are_forgotten(void **state)
{
    fixture *f = *state;
    sg_index ix[2];
    sg_index_init(&ix[0]);
    sg_index_cursor(&ix[0], "m", "lost", 2000);
    sg_index_cursor(&ix[0], "m", "busy", 2000);
    sg_index_posted(&ix[0], "m", "busy", 7);
    int64_t forgotten_at = 0;
    int minute;
    for (minute = 1; minute <= 3 * 60 && !forgotten_at; minute++) {
        sg_index *older = &ix[(minute - 1) % 2], *now = &ix[minute % 2];
        int64_t t = T0 + (int64_t)minute * 60000;
        sg_index_init(now);
        sg_index_cursor(now, "m", "busy", 2000 + minute); /* its markers pruned */
        sg_index_inherit(now, older, t);
        sg_index_close(older);
        sg_kind lost = kind_in(now, &f->l, "lost", 1, 1500);
        bool marker = kind_in(now, &f->l, "busy", 7, 9000) == SG_KIND_REPLAY;
        if (lost == SG_KIND_UNKNOWN) {
            assert_false(marker); /* both vanished at minute 1 */
            forgotten_at = t;
        } else {
            assert_int_equal(lost, SG_KIND_REPLAY);
            assert_true(marker);
        }
    }
    sg_index_close(&ix[(minute - 1) % 2]);
    assert_true(forgotten_at >= T0 + 60000 + SG_INDEX_KEEP_MS);
    assert_true(forgotten_at <= T0 + 60000 + 2 * SG_INDEX_KEEP_MS + 60000);
}

static sg_event parsed(const char *body)
{
    sg_event e;
    sg_error err = {0};
    int rc = sg_event_parse(body, strlen(body), true, NULL, &e, &err);
    if (rc != 0)
        fail_msg("sg_event_parse = %d (%s)", rc, err.msg);
    return e;
}

static void classify_parsed_events(void **state)
{
    fixture *f = *state;
    sg_event jenkins =
        parsed("{\"details\": {\"type\": \"build\", \"source\": \"igor\"},"
               " \"content\": {\"master\": \"jenkins-prod\", \"project\": {\"name\": "
               "\"team-a/service-17\","
               " \"lastBuild\": {\"number\": 4242, \"result\": \"SUCCESS\", \"building\": false,"
               " \"timestamp\": \"1526030000000\"}}}}");
    sg_event travis =
        parsed("{\"details\": {\"type\": \"build\", \"source\": \"igor\"},"
               " \"content\": {\"master\": \"travis-ci\", \"type\": \"travis\", \"project\":"
               " {\"name\": \"org/repo\", \"lastBuild\": {\"number\": 311, \"building\": false,"
               " \"timestamp\": \"1526030000000\"}}}}");
    sg_event git = parsed("{\"details\": {\"type\": \"git\"}, \"content\": {}}");
    sg_reason why;

    assert_int_equal(sg_classify(&f->ix, &f->l, &jenkins, &why), SG_KIND_UNKNOWN);
    assert_int_equal(sg_classify(&f->ix, &f->l, &travis, &why), SG_KIND_UNKNOWN);
    assert_int_equal(sg_classify(&f->ix, &f->l, &git, &why), SG_KIND_PASSTHROUGH);
    assert_int_equal(why, SG_REASON_NOT_A_BUILD);

    sg_index_cursor(&f->ix, "jenkins-prod", "team-a/service-17", T0 - 1);
    sg_index_completed(&f->ix, "travis-ci", "org/repo", 310);
    assert_int_equal(sg_classify(&f->ix, &f->l, &jenkins, &why), SG_KIND_NEW);
    assert_int_equal(why, SG_REASON_BEYOND);
    assert_int_equal(sg_classify(&f->ix, &f->l, &travis, &why), SG_KIND_NEW);
    assert_int_equal(why, SG_REASON_BEYOND);

    sg_index_cursor(&f->ix, "jenkins-prod", "team-a/service-17", T0);
    sg_index_completed(&f->ix, "travis-ci", "org/repo", 311);
    assert_int_equal(sg_classify(&f->ix, &f->l, &jenkins, &why), SG_KIND_REPLAY);
    assert_int_equal(why, SG_REASON_CURSOR);
    assert_int_equal(sg_classify(&f->ix, &f->l, &travis, &why), SG_KIND_REPLAY);
    assert_int_equal(why, SG_REASON_NUMBER);

    sg_event_close(&jenkins);
    sg_event_close(&travis);
    sg_event_close(&git);
}

/* ---- names ---- */

static void kind_names(void **state)
{
    (void)state;
    const sg_kind kinds[] = {SG_KIND_PASSTHROUGH, SG_KIND_NEW, SG_KIND_REPLAY, SG_KIND_UNKNOWN};
    const size_t n = sizeof kinds / sizeof kinds[0];
    for (size_t i = 0; i < n; i++) {
        const char *name = sg_kind_name(kinds[i]);
        assert_non_null(name);
        assert_true(name[0] != 0);
        assert_string_not_equal(name, "?");
        sg_kind back = (sg_kind)-1;
        if (sg_kind_parse(name, &back) != 0)
            fail_msg("sg_kind_parse(%s) failed", name);
        assert_int_equal(back, kinds[i]);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(name, sg_kind_name(kinds[j]));
    }
    assert_string_equal(sg_kind_name(SG_KIND_REPLAY), "replay");
    assert_string_equal(sg_kind_name(SG_KIND_NEW), "new");
    assert_string_equal(sg_kind_name(SG_KIND_UNKNOWN), "unknown");
    assert_string_equal(sg_kind_name(SG_KIND_PASSTHROUGH), "passthrough");

    sg_kind out = SG_KIND_NEW;
    assert_int_not_equal(sg_kind_parse("bogus", &out), 0);
    assert_int_not_equal(sg_kind_parse("", &out), 0);
    assert_int_not_equal(sg_kind_parse("replayed", &out), 0);
    assert_int_not_equal(sg_kind_parse("?", &out), 0);
    assert_int_equal(out, SG_KIND_NEW); /* untouched on failure */
    /* out of range still names something */
    assert_non_null(sg_kind_name((sg_kind)42));
    assert_non_null(sg_kind_name((sg_kind)-1));
}

static void reason_names(void **state)
{
    (void)state;
    const sg_reason reasons[] = {
        SG_REASON_LEDGER,        SG_REASON_POSTED,         SG_REASON_CURSOR,
        SG_REASON_NUMBER,        SG_REASON_BEYOND,         SG_REASON_UNKNOWN_JOB,
        SG_REASON_NOT_A_BUILD,   SG_REASON_AFTER_WIPE,     SG_REASON_DOCKER_TAG,
        SG_REASON_DOCKER_DIGEST, SG_REASON_DOCKER_NEW_TAG, SG_REASON_DOCKER_UNKNOWN};
    const size_t n = sizeof reasons / sizeof reasons[0];
    for (size_t i = 0; i < n; i++) {
        const char *name = sg_reason_name(reasons[i]);
        assert_non_null(name);
        if (!name[0])
            fail_msg("sg_reason_name(%d) is empty", (int)reasons[i]);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(name, sg_reason_name(reasons[j])))
                fail_msg("reasons %d and %d share the name '%s'", (int)reasons[i], (int)reasons[j],
                         name);
    }
    assert_non_null(sg_reason_name(SG_REASON_NONE));
    assert_non_null(sg_reason_name((sg_reason)99));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(posted_marker_is_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(posted_marker_alone_makes_job_known, setup, teardown),
        cmocka_unit_test_setup_teardown(jenkins_cursor, setup, teardown),
        cmocka_unit_test_setup_teardown(jenkins_unknown_start_is_not_a_cursor_replay, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(cursor_moves, setup, teardown),
        cmocka_unit_test_setup_teardown(jenkins_out_of_order_completions, setup, teardown),
        cmocka_unit_test_setup_teardown(jenkins_ignores_last_completed, setup, teardown),
        cmocka_unit_test_setup_teardown(travis_number, setup, teardown),
        cmocka_unit_test_setup_teardown(travis_job_with_only_a_jenkins_cursor, setup, teardown),
        cmocka_unit_test_setup_teardown(both_facts_kept_per_job, setup, teardown),
        cmocka_unit_test_setup_teardown(job_known_only_from_ledger_is_new, setup, teardown),
        cmocka_unit_test_setup_teardown(job_in_neither_is_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(passthrough_event, setup, teardown),
        cmocka_unit_test_setup_teardown(docker_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(docker_tags_inherited, setup, teardown),
        cmocka_unit_test(docker_identity),
        cmocka_unit_test_setup_teardown(jobs_separated_by_source, setup, teardown),
        cmocka_unit_test_setup_teardown(many_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(classify_parsed_events, setup, teardown),
        cmocka_unit_test_setup_teardown(inherited_jobs_stay_known, setup, teardown),
        cmocka_unit_test_setup_teardown(inherited_facts_are_forgotten, setup, teardown),
        cmocka_unit_test(kind_names),
        cmocka_unit_test(reason_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
