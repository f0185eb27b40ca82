/* Tests profile.h: Igor key names (DOMAIN.md section 2), job splitting, patterns, names. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stormguard/base/error.h"
#include "stormguard/snapshot/profile.h"
#include "stormguard/base/util.h"

static void assert_slice(sg_slice s, const char *want)
{
    size_t n = strlen(want);
    if (s.len != n || (n && memcmp(s.p, want, n)))
        fail_msg("slice '%.*s' (%zu bytes), want '%s' (%zu bytes)", (int)s.len, s.p ? s.p : "",
                 s.len, want, n);
}

/* Parses a NUL-terminated key with prefix, expecting success. */
static sg_igor_key parse(const char *prefix, const char *key)
{
    sg_igor_key k;
    memset(&k, 0x5a, sizeof k);
    int rc = sg_igor_parse_key(prefix, key, strlen(key), &k);
    if (rc != 0)
        fail_msg("sg_igor_parse_key(%s, %s) = %d, want 0", prefix, key, rc);
    return k;
}

static void expect_cursor(const char *prefix, const char *key, const char *source, const char *job)
{
    sg_igor_key k = parse(prefix, key);
    if (k.family != SG_KEY_JENKINS_CURSOR)
        fail_msg("%s: family %d, want SG_KEY_JENKINS_CURSOR", key, k.family);
    assert_slice(k.source, source);
    assert_slice(k.job, job);
}

static void expect_posted(const char *key, const char *source, const char *job, int64_t cursor)
{
    sg_igor_key k = parse("igor", key);
    if (k.family != SG_KEY_JENKINS_POSTED)
        fail_msg("%s: family %d, want SG_KEY_JENKINS_POSTED", key, k.family);
    assert_slice(k.source, source);
    assert_slice(k.job, job);
    assert_true(k.marker == cursor);
}

/* ---- Jenkins ---- */

static void jenkins_cursor(void **state)
{
    (void)state;
    expect_cursor("igor", "igor:jenkins-prod:SERVICE-17:service-17", "jenkins-prod", "service-17");
    expect_cursor("igor", "igor:m:JOB:job", "m", "job");
    expect_cursor("igor", "igor:m:MYJOB:MyJob", "m", "MyJob"); /* job keeps its case */
    expect_cursor("igor", "igor:m:X:x", "m", "x");
}

static void jenkins_folder_jobs(void **state)
{
    (void)state;
    expect_cursor("igor", "igor:jenkins-prod:TEAM-A/SERVICE-17:team-a/service-17", "jenkins-prod",
                  "team-a/service-17");
    expect_cursor("igor", "igor:m:FOLDER/JOB/CHILD:folder/job/child", "m", "folder/job/child");
}

static void jenkins_colon_in_job(void **state)
{
    (void)state;
    expect_cursor("igor", "igor:m:A:B:a:b", "m", "a:b");
    expect_cursor("igor", "igor:m:A:B:C:a:b:c", "m", "a:b:c");
    /* a job ending in ":42" is not a posted marker */
    expect_cursor("igor", "igor:m:SVC:42:svc:42", "m", "svc:42");
    expect_cursor("igor", "igor:m:42:42", "m", "42");
}

static void jenkins_unicode(void **state)
{
    (void)state;
    expect_cursor("igor",
                  "igor:m:J\xc3\x96"
                  "B:j\xc3\xb6"
                  "b",
                  "m",
                  "j\xc3\xb6"
                  "b");
    expect_cursor("igor", "igor:m:CAF\xc3\x89:caf\xc3\xa9", "m", "caf\xc3\xa9");
}

/* Java's "ıi".toUpperCase() is "II": the same number of chars (DOMAIN.md
 * section 2), but the dotless i is two UTF-8 bytes and I is one. */
static void jenkins_unicode_shorter_upper(void **state)
{
    (void)state;
    sg_slice job = {NULL, 0};
    const char *s = "II:\xc4\xb1i";
    assert_true(sg_igor_split_job(s, strlen(s), &job));
    assert_slice(job, "\xc4\xb1i");
    expect_cursor("igor", "igor:m:II:\xc4\xb1i", "m", "\xc4\xb1i");
}

static void jenkins_posted(void **state)
{
    (void)state;
    expect_posted("igor:jenkins-prod:TEAM-A/SERVICE-17:team-a/service-17:"
                  "lastPollCycleTimestamp:1526030000000",
                  "jenkins-prod", "team-a/service-17", INT64_C(1526030000000));
    expect_posted("igor:m:A:B:a:b:lastPollCycleTimestamp:7", "m", "a:b", 7);
    expect_posted("igor:m:SVC:42:svc:42:lastPollCycleTimestamp:99", "m", "svc:42", 99);
    expect_posted("igor:m:J\xc3\x96"
                  "B:j\xc3\xb6"
                  "b:lastPollCycleTimestamp:5",
                  "m",
                  "j\xc3\xb6"
                  "b",
                  5);
}

/* A key that only looks like a posted marker: the job itself is named
 * "x:lastPollCycleTimestamp:5". Read as a marker the rest does not split;
 * read as a cursor it does, so it is a cursor key. */
static void jenkins_cursor_that_looks_like_posted(void **state)
{
    (void)state;
    expect_cursor("igor", "igor:m:X:LASTPOLLCYCLETIMESTAMP:5:x:lastPollCycleTimestamp:5", "m",
                  "x:lastPollCycleTimestamp:5");
}

/* ---- Travis / GitLab ---- */

static void ci_completed_running(void **state)
{
    (void)state;
    sg_igor_key k = parse("igor", "igor:builds:completed:travis-prod:ORG/REPO:org/repo");
    assert_int_equal(k.family, SG_KEY_CI_COMPLETED);
    assert_slice(k.source, "travis-prod");
    assert_slice(k.job, "org/repo");

    k = parse("igor", "igor:builds:running:gitlab:GROUP/SUB/PROJ:group/sub/proj");
    assert_int_equal(k.family, SG_KEY_CI_RUNNING);
    assert_slice(k.source, "gitlab");
    assert_slice(k.job, "group/sub/proj");

    k = parse("igor", "igor:builds:completed:t:A:B:a:b");
    assert_int_equal(k.family, SG_KEY_CI_COMPLETED);
    assert_slice(k.source, "t");
    assert_slice(k.job, "a:b");

    k = parse("igor", "igor:builds:completed:t:J:42:j:42");
    assert_int_equal(k.family, SG_KEY_CI_COMPLETED);
    assert_slice(k.job, "j:42");
}

static void ci_track(void **state)
{
    (void)state;
    sg_igor_key k = parse("igor", "igor:builds:track:travis-prod:ORG/REPO:org/repo:98765");
    assert_int_equal(k.family, SG_KEY_CI_TRACK);
    assert_slice(k.source, "travis-prod");
    assert_slice(k.job, "org/repo");
    assert_true(k.marker == 98765);

    k = parse("igor", "igor:builds:track:t:J:42:j:42:777");
    assert_int_equal(k.family, SG_KEY_CI_TRACK);
    assert_slice(k.job, "j:42");
    assert_true(k.marker == 777);

    /* no build id: under the prefix, but not a tracking key */
    k = parse("igor", "igor:builds:track:t:JOB:job");
    assert_int_equal(k.family, SG_KEY_OTHER);
}

/* ---- Docker ---- */

static void docker(void **state)
{
    (void)state;
    sg_igor_key k = parse("igor", "igor:dockerRegistry:v2:dockerhub:library/nginx:1.25-alpine");
    assert_int_equal(k.family, SG_KEY_DOCKER_TAG);
    assert_slice(k.source, "dockerhub");
    assert_slice(k.job, "library/nginx");
    assert_slice(k.tag, "1.25-alpine");

    /* split at the first and the last ':': a registry port stays in the
     * repository */
    k = parse("igor", "igor:dockerRegistry:v2:acct:registry.local:5000/team/app:v1");
    assert_int_equal(k.family, SG_KEY_DOCKER_TAG);
    assert_slice(k.source, "acct");
    assert_slice(k.job, "registry.local:5000/team/app");
    assert_slice(k.tag, "v1");

    k = parse("igor", "igor:dockerRegistry:v2:ecr:org/team/app:latest");
    assert_int_equal(k.family, SG_KEY_DOCKER_TAG);
    assert_slice(k.source, "ecr");
    assert_slice(k.job, "org/team/app");
    assert_slice(k.tag, "latest");

    /* missing tag or repository: not a docker tag key */
    k = parse("igor", "igor:dockerRegistry:v2:dockerhub:library/nginx");
    assert_int_equal(k.family, SG_KEY_OTHER);
    k = parse("igor", "igor:dockerRegistry:v2:dockerhub:library/nginx:");
    assert_int_equal(k.family, SG_KEY_OTHER);
    k = parse("igor", "igor:dockerRegistry:v2:dockerhub::tag");
    assert_int_equal(k.family, SG_KEY_OTHER);
}

/* ---- prefixes and other keys ---- */

static void custom_prefix(void **state)
{
    (void)state;
    expect_cursor("spin", "spin:m:JOB:job", "m", "job");
    sg_igor_key k = parse("spin", "spin:dockerRegistry:v2:acct:repo/x:v1");
    assert_int_equal(k.family, SG_KEY_DOCKER_TAG);
    assert_slice(k.tag, "v1");

    static const char *const outside[] = {
        "igor:m:JOB:job",  "spinnaker:m:JOB:job", "spin", "spi", "",
        "xspin:m:JOB:job", "SPIN:m:JOB:job"};
    for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++) {
        sg_igor_key o;
        int rc = sg_igor_parse_key("spin", outside[i], strlen(outside[i]), &o);
        if (rc != SG_ENOTFOUND)
            fail_msg("prefix spin, key '%s': rc %d, want SG_ENOTFOUND", outside[i], rc);
    }
}

static void not_under_prefix(void **state)
{
    (void)state;
    static const char *const keys[] = {"session:abc", "igor", "igorx:m:JOB:job", "igo",
                                       "cache:igor:m:JOB:job"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        sg_igor_key k;
        assert_int_equal(sg_igor_parse_key("igor", keys[i], strlen(keys[i]), &k), SG_ENOTFOUND);
    }
    /* binary: the prefix must match byte for byte */
    sg_igor_key k;
    assert_int_equal(sg_igor_parse_key("igor", "ig\0r:m:J:j", 10, &k), SG_ENOTFOUND);
}

static void other_family(void **state)
{
    (void)state;
    static const char *const keys[] = {
        "igor:",
        "igor:something",
        "igor:m:JOB:other", /* upper part is not the job's upper case */
        "igor:m:job",       /* no <JOB>:<job> pair */
        "igor:builds:unknown:t:JOB:job",
        "igor:builds:completed:t",
        "igor:dockerRegistry:v2:acct",
        "igor:m:JOB:job:lastPollCycleTimestamp:", /* no cursor number */
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        sg_igor_key k = parse("igor", keys[i]);
        if (k.family != SG_KEY_OTHER)
            fail_msg("%s: family %d, want SG_KEY_OTHER", keys[i], k.family);
    }
    /* a binary key under the prefix */
    sg_igor_key k;
    assert_int_equal(sg_igor_parse_key("igor", "igor:\0\xff", 7, &k), 0);
    assert_int_equal(k.family, SG_KEY_OTHER);
}

/* ---- sg_igor_split_job ---- */

static void split_job(void **state)
{
    (void)state;
    static const struct {
        const char *in, *job; /* job NULL: no split fits */
    } cases[] = {
        {"JOB:job", "job"},
        {"A:B:a:b", "a:b"},
        {"Y:y", "y"},
        {"X:y", NULL}, /* X is not the upper case of y */
        {"TEAM-A/SERVICE-17:team-a/service-17", "team-a/service-17"},
        {"J\xc3\x96"
         "B:j\xc3\xb6"
         "b",
         "j\xc3\xb6"
         "b"},
        {"JOB:other", NULL},
        {"JOB:jo", NULL},
        {"job:job", NULL}, /* the left part must be upper case */
        {"\xc3\x96"
         "B:ob",
         NULL}, /* non-ASCII only on one side */
        {"JOB", NULL},
        {"", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sg_slice job = {NULL, 0};
        bool ok = sg_igor_split_job(cases[i].in, strlen(cases[i].in), &job);
        if (cases[i].job == NULL) {
            if (ok)
                fail_msg("split_job('%s') gave '%.*s', want no split", cases[i].in, (int)job.len,
                         job.p);
            continue;
        }
        if (!ok)
            fail_msg("split_job('%s') found no split, want '%s'", cases[i].in, cases[i].job);
        assert_slice(job, cases[i].job);
        /* the slice points into the input */
        assert_true(job.p >= cases[i].in && job.p + job.len <= cases[i].in + strlen(cases[i].in));
    }
}

/* Neither part may be empty: the general search starts at the second byte
 * for that reason, and the middle-split shortcut must agree. */
static void split_job_empty_parts(void **state)
{
    (void)state;
    sg_slice job = {NULL, 0};
    assert_false(sg_igor_split_job(":", 1, &job));
    sg_igor_key k = parse("igor", "igor:m::");
    assert_int_equal(k.family, SG_KEY_OTHER);
}

/* ---- sg_parse_slice_int64 ---- */

static bool slice_int(const char *s, int64_t *out)
{
    return sg_parse_slice_int64((sg_slice){s, strlen(s)}, out);
}

static void parse_slice_int64(void **state)
{
    (void)state;
    int64_t v = -99;
    assert_true(slice_int("0", &v));
    assert_int_equal(v, 0);
    assert_true(slice_int("4242", &v));
    assert_int_equal(v, 4242);
    assert_true(slice_int("-1", &v));
    assert_int_equal(v, -1);
    assert_true(slice_int("1526030000000", &v));
    assert_true(v == INT64_C(1526030000000));
    assert_true(slice_int("999999999999999999", &v)); /* 18 digits */
    assert_true(v == INT64_C(999999999999999999));
    assert_true(slice_int("9223372036854775807", &v));
    assert_true(v == INT64_MAX);
    /* not NUL-terminated: only len bytes count */
    assert_true(sg_parse_slice_int64((sg_slice){"12345", 3}, &v));
    assert_int_equal(v, 123);

    static const char *const bad[] = {
        "", "-", "+1", "12a", "a12", " 1", "1 ", "1.0", "12345678901234567890"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 777;
        if (slice_int(bad[i], &v))
            fail_msg("sg_parse_slice_int64('%s') accepted it as %lld", bad[i], (long long)v);
        assert_int_equal(v, 777);
    }
    assert_false(sg_parse_slice_int64((sg_slice){"1\0"
                                                 "2",
                                                 3},
                                      &v));
}

/* Values come from Redis (build numbers, cursor fields) and key names, so a
 * 19-digit number above INT64_MAX must be rejected, not overflow (signed
 * overflow is undefined; the sanitizer build aborts on it). Checked in a
 * child so an abort fails this test only. */
static int overflow_child(void)
{
    int64_t v = 5;
    if (slice_int("9999999999999999999", &v) || v != 5)
        return 1;
    if (slice_int("9223372036854775808", &v) || v != 5)
        return 1;
    sg_igor_key k;
    const char *key = "igor:m:JOB:job:lastPollCycleTimestamp:9999999999999999999";
    if (sg_igor_parse_key("igor", key, strlen(key), &k) != 0)
        return 1;
    if (k.family == SG_KEY_JENKINS_POSTED)
        return 1;
    return 0;
}

static void parse_slice_int64_overflow(void **state)
{
    (void)state;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(10);
        _exit(overflow_child());
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("19-digit numbers above INT64_MAX: child %s %d (want a clean rejection)",
                 WIFEXITED(status) ? "exited" : "killed by signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

/* ---- patterns and names ---- */

static void profile_pattern(void **state)
{
    (void)state;
    char *p = sg_profile_pattern(SG_PROFILE_IGOR, "igor");
    assert_string_equal(p, "igor:*");
    assert_true(sg_glob_match(p, "igor:m:JOB:job", 14));
    assert_false(sg_glob_match(p, "igorx:m", 7));
    free(p);

    p = sg_profile_pattern(SG_PROFILE_IGOR, "a*b?c[d]e\\f");
    assert_string_equal(p, "a\\*b\\?c\\[d\\]e\\\\f:*");
    const char *own = "a*b?c[d]e\\f:key";
    assert_true(sg_glob_match(p, own, strlen(own)));
    const char *other = "aXXbYcde\\f:key";
    assert_false(sg_glob_match(p, other, strlen(other)));
    other = "axb?c[d]e\\f:key";
    assert_false(sg_glob_match(p, other, strlen(other)));
    free(p);

    assert_null(sg_profile_pattern(SG_PROFILE_NONE, "igor"));
}

static void profile_kind(void **state)
{
    (void)state;
    sg_profile_kind k = SG_PROFILE_NONE;
    assert_int_equal(sg_profile_kind_parse("igor", &k), 0);
    assert_int_equal(k, SG_PROFILE_IGOR);
    assert_int_equal(sg_profile_kind_parse("none", &k), 0);
    assert_int_equal(k, SG_PROFILE_NONE);
    k = SG_PROFILE_IGOR;
    assert_int_equal(sg_profile_kind_parse("jenkins", &k), SG_EINVAL);
    assert_int_equal(sg_profile_kind_parse("", &k), SG_EINVAL);
    assert_int_equal(sg_profile_kind_parse("igor ", &k), SG_EINVAL);
    assert_int_equal(k, SG_PROFILE_IGOR); /* unchanged on error */
    assert_string_equal(sg_profile_kind_name(SG_PROFILE_IGOR), "igor");
    assert_string_equal(sg_profile_kind_name(SG_PROFILE_NONE), "none");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(jenkins_cursor),
        cmocka_unit_test(jenkins_folder_jobs),
        cmocka_unit_test(jenkins_colon_in_job),
        cmocka_unit_test(jenkins_unicode),
        cmocka_unit_test(jenkins_unicode_shorter_upper),
        cmocka_unit_test(jenkins_posted),
        cmocka_unit_test(jenkins_cursor_that_looks_like_posted),
        cmocka_unit_test(ci_completed_running),
        cmocka_unit_test(ci_track),
        cmocka_unit_test(docker),
        cmocka_unit_test(custom_prefix),
        cmocka_unit_test(not_under_prefix),
        cmocka_unit_test(other_family),
        cmocka_unit_test(split_job),
        cmocka_unit_test(split_job_empty_parts),
        cmocka_unit_test(parse_slice_int64),
        cmocka_unit_test(parse_slice_int64_overflow),
        cmocka_unit_test(profile_pattern),
        cmocka_unit_test(profile_kind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
