/* Tests profile.h: Igor key names (DOMAIN.md section 2), job splitting,
 * patterns, names, and decoding values into build-index rows. The payload
 * vectors are what Redis 7.0 returned for DUMP, except the ziplists (Redis
 * before 7.0), written here with their RDB 9 trailer and real CRC64 and
 * accepted by Redis 7.0's RESTORE with sanitize-dump-payload yes. */
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

/* ---- sg_igor_decode ---- */

#define VEC(s) s, sizeof(s) - 1

/* HSET k lastPollCycleTimestamp 1526030017000 (listpack) */
static const char cursor_lp[] =
    "\x10\x29\x29\x00\x00\x00\x02\x00\x96\x6c\x61\x73\x74\x50\x6f\x6c\x6c\x43\x79\x63\x6c\x65"
    "\x54\x69\x6d\x65\x73\x74\x61\x6d\x70\x17\xf4\xe8\x21\x7a\x4e\x63\x01\x00\x00\x09\xff\x0a"
    "\x00\xa1\x8a\xb6\xb5\x03\x7c\x63\xd6";
/* HSET k lastBuildLabel 4242 lastPollCycleTimestamp 1526030017000 (hash
 * table: hash-max-listpack-entries 0) */
static const char cursor_table[] =
    "\x04\x02\x0e\x6c\x61\x73\x74\x42\x75\x69\x6c\x64\x4c\x61\x62\x65\x6c\xc1\x92\x10\x16\x6c"
    "\x61\x73\x74\x50\x6f\x6c\x6c\x43\x79\x63\x6c\x65\x54\x69\x6d\x65\x73\x74\x61\x6d\x70\x0d"
    "\x31\x35\x32\x36\x30\x33\x30\x30\x31\x37\x30\x30\x30\x0a\x00\x3a\xb0\x6c\x66\x0c\xb9\x47"
    "\xb1";
/* lastPollCycleTimestamp 1526030017000 (ziplist, the value an int64 entry) */
static const char cursor_zl[] =
    "\x0d\x2d\x2d\x00\x00\x00\x22\x00\x00\x00\x02\x00\x00\x16\x6c\x61\x73\x74\x50\x6f\x6c\x6c"
    "\x43\x79\x63\x6c\x65\x54\x69\x6d\x65\x73\x74\x61\x6d\x70\x18\xe0\xe8\x21\x7a\x4e\x63\x01"
    "\x00\x00\xff\x09\x00\x53\x84\xe4\xdd\x58\x85\xb8\xbd";
/* HSET k 117 POSTED 118 POSTED -5 x 100000 y 4000000000 z (listpack) */
static const char posted_lp[] =
    "\x10\x36\x36\x00\x00\x00\x0a\x00\x75\x01\x86\x50\x4f\x53\x54\x45\x44\x07\x76\x01\x86\x50"
    "\x4f\x53\x54\x45\x44\x07\xdf\xfb\x02\x81\x78\x02\xf2\xa0\x86\x01\x04\x81\x79\x02\xf4\x00"
    "\x28\x6b\xee\x00\x00\x00\x00\x09\x81\x7a\x02\xff\x0a\x00\xea\xf4\x59\x61\x8c\xe4\xaa\xc3";
/* HSET k 117 POSTED 118 POSTED note x (hash table; the numbers integer
 * encoded) */
static const char posted_table[] =
    "\x04\x03\x04\x6e\x6f\x74\x65\x01\x78\xc0\x76\x06\x50\x4f\x53\x54\x45\x44\xc0\x75\x06\x50"
    "\x4f\x53\x54\x45\x44\x0a\x00\x8f\x8d\x38\x8b\xfe\x10\xb9\xce";
/* 117 POSTED 4242 POSTED (ziplist: int8 and int16 entries) */
static const char posted_zl[] =
    "\x0d\x22\x22\x00\x00\x00\x19\x00\x00\x00\x04\x00\x00\xfe\x75\x03\x06\x50\x4f\x53\x54\x45"
    "\x44\x08\xc0\x92\x10\x04\x06\x50\x4f\x53\x54\x45\x44\xff\x09\x00\x89\xf0\x01\x36\xe7\x45"
    "\x8e\x45";
/* HSET k digest sha256:abab...ab (63 bytes; listpack, LZF compressed) */
static const char docker_lp_lzf[] =
    "\x10\xc3\x1f\x40\x50\x17\x50\x00\x00\x00\x02\x00\x86\x64\x69\x67\x65\x73\x74\x07\xbf\x73"
    "\x68\x61\x32\x35\x36\x3a\x61\x62\xe0\x2d\x01\x01\x40\xff\x0a\x00\x59\xbb\x67\xe5\xd2\x5f"
    "\x27\x80";
/* HSET k size 1234 digest sha256:cdcd...cd (71 bytes; hash table, the
 * digest LZF compressed) */
static const char docker_table_lzf[] =
    "\x04\x02\x04\x73\x69\x7a\x65\xc1\xd2\x04\x06\x64\x69\x67\x65\x73\x74\xc3\x10\x40\x47\x08"
    "\x73\x68\x61\x32\x35\x36\x3a\x63\x64\xe0\x33\x01\x01\x63\x64\x0a\x00\xb0\x39\x0d\x82\x41"
    "\xc3\xd4\x02";
/* SET k 42 (8-bit integer encoded) */
static const char ci_int8[] = "\x00\xc0\x2a\x0a\x00\x81\xfb\x5c\xfa\x86\x63\x4f\x50";
/* SET k -70000 (32-bit integer encoded) */
static const char ci_int32[] = "\x00\xc2\x90\xee\xfe\xff\x0a\x00\x28\x75\xde\x7b\x13\xeb\x28\x00";
/* SET k 1234567890123 (raw: too long for the integer encoding) */
static const char ci_raw[] = "\x00\x0d\x31\x32\x33\x34\x35\x36\x37\x38\x39\x30\x31\x32\x33\x0a"
                             "\x00\x5e\x0c\x12\xae\x04\x29\xbc\x1e";
/* SET k aaaa...(100 a) (LZF) */
static const char ci_lzf[] = "\x00\xc3\x09\x40\x64\x01\x61\x61\xe0\x57\x00\x01\x61\x61\x0a\x00"
                             "\xe8\xa3\xb5\x07\xb0\x6d\xf2\x71";
/* SET k "marked as running" */
static const char ci_word[] = "\x00\x11\x6d\x61\x72\x6b\x65\x64\x20\x61\x73\x20\x72\x75\x6e\x6e"
                              "\x69\x6e\x67\x0a\x00\x12\x5b\xec\xd6\x6c\x97\xec\x87";

/* The rows one decoding gave, as text: "family source job tag number digest;" */
typedef struct rows {
    char text[1024];
    int n;
    int stop_at; /* > 0: the n-th row returns SG_ESTORE */
} rows;

static int add_row(void *ud, const sg_igor_row *r, sg_error *err)
{
    rows *rs = ud;
    size_t n = strlen(rs->text);
    snprintf(rs->text + n, sizeof rs->text - n, "%d %.*s %.*s %.*s %lld %.*s;", (int)r->family,
             (int)r->source.len, r->source.p, (int)r->job.len, r->job.p, (int)r->tag.len,
             r->tag.p ? r->tag.p : "", (long long)r->number, (int)r->digest.len,
             r->digest.p ? r->digest.p : "");
    if (++rs->n == rs->stop_at)
        return sg_error_set(err, SG_ESTORE, "row %d refused", rs->n);
    return 0;
}

/* Decodes payload for key, expecting rc 0; returns *undecoded, rows in rs.
 * undecoded starts as a poison value so an unset one fails. */
static bool decode(const char *key, const char *payload, size_t len, rows *rs)
{
    sg_igor_key k = parse("igor", key);
    memset(rs->text, 0, sizeof rs->text);
    rs->n = 0;
    sg_error err = {0};
    bool undecoded;
    memset(&undecoded, 0x5a, sizeof undecoded);
    int rc = sg_igor_decode(&k, payload, len, add_row, rs, &undecoded, &err);
    if (rc != 0)
        fail_msg("sg_igor_decode(%s) = %d (%s), want 0", key, rc, err.msg);
    unsigned char byte;
    memcpy(&byte, &undecoded, 1);
    if (byte > 1)
        fail_msg("sg_igor_decode(%s) left *undecoded unset", key);
    return undecoded;
}

#define CURSOR_KEY "igor:jenkins-prod:TEAM-A/SVC:team-a/svc"
#define POSTED_KEY CURSOR_KEY ":lastPollCycleTimestamp:1526030017000"
#define DOCKER_KEY "igor:dockerRegistry:v2:hub:team/app:1.2.3"

static void decode_cursor(void **state)
{
    (void)state;
    const char *want = "1 jenkins-prod team-a/svc  1526030017000 ;";
    rows rs = {0};
    assert_false(decode(CURSOR_KEY, VEC(cursor_lp), &rs));
    assert_string_equal(rs.text, want);
    /* the legacy lastBuildLabel beside it gives no row */
    assert_false(decode(CURSOR_KEY, VEC(cursor_table), &rs));
    assert_string_equal(rs.text, want);
    assert_false(decode(CURSOR_KEY, VEC(cursor_zl), &rs));
    assert_string_equal(rs.text, want);
}

static void decode_posted(void **state)
{
    (void)state;
    rows rs = {0};
    /* every numeric field is a build; "-5" is a number too */
    assert_false(decode(POSTED_KEY, VEC(posted_lp), &rs));
    assert_string_equal(rs.text, "2 jenkins-prod team-a/svc  117 ;2 jenkins-prod team-a/svc  118 ;"
                                 "2 jenkins-prod team-a/svc  -5 ;"
                                 "2 jenkins-prod team-a/svc  100000 ;"
                                 "2 jenkins-prod team-a/svc  4000000000 ;");
    /* a field that is no number gives no row */
    assert_false(decode(POSTED_KEY, VEC(posted_table), &rs));
    assert_string_equal(rs.text,
                        "2 jenkins-prod team-a/svc  118 ;2 jenkins-prod team-a/svc  117 ;");
    assert_false(decode(POSTED_KEY, VEC(posted_zl), &rs));
    assert_string_equal(rs.text,
                        "2 jenkins-prod team-a/svc  117 ;2 jenkins-prod team-a/svc  4242 ;");
}

static void decode_docker(void **state)
{
    (void)state;
    char want[256];
    rows rs = {0};
    assert_false(decode(DOCKER_KEY, VEC(docker_lp_lzf), &rs));
    snprintf(want, sizeof want, "6 hub team/app 1.2.3 0 sha256:%s;",
             "abababababababababababababababababababababababababababab");
    assert_string_equal(rs.text, want);
    assert_false(decode(DOCKER_KEY, VEC(docker_table_lzf), &rs));
    snprintf(want, sizeof want, "6 hub team/app 1.2.3 0 sha256:%s;",
             "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd");
    assert_string_equal(rs.text, want);
}

static void decode_ci(void **state)
{
    (void)state;
    rows rs = {0};
    assert_false(decode("igor:builds:completed:travis:ORG/REPO:org/repo", VEC(ci_int8), &rs));
    assert_string_equal(rs.text, "3 travis org/repo  42 ;");
    assert_false(decode("igor:builds:running:travis:ORG/REPO:org/repo", VEC(ci_int32), &rs));
    assert_string_equal(rs.text, "4 travis org/repo  -70000 ;");
    assert_false(decode("igor:builds:completed:gitlab:G/P:g/p", VEC(ci_raw), &rs));
    assert_string_equal(rs.text, "3 gitlab g/p  1234567890123 ;");
    /* an LZF string decodes, but 100 a's are no build number */
    assert_true(decode("igor:builds:completed:gitlab:G/P:g/p", VEC(ci_lzf), &rs));
    assert_int_equal(rs.n, 0);
}

/* Families that hold no index, and values that are not what their family
 * holds. */
static void decode_other_and_bad(void **state)
{
    (void)state;
    rows rs = {0};
    /* no index in these families, whatever the value */
    assert_false(decode("igor:builds:track:travis:ORG/REPO:org/repo:43", VEC(ci_word), &rs));
    assert_false(decode("igor:something", VEC(posted_lp), &rs));
    assert_false(decode("igor:something", "", 0, &rs));
    assert_int_equal(rs.n, 0);

    /* another type: a string under a cursor's name, a hash under a number's */
    assert_true(decode(CURSOR_KEY, VEC(ci_word), &rs));
    assert_true(decode("igor:builds:completed:t:J:j", VEC(posted_lp), &rs));
    /* a hash without the field that counts */
    assert_true(decode(DOCKER_KEY, VEC(cursor_lp), &rs));
    assert_true(decode(CURSOR_KEY, VEC(docker_lp_lzf), &rs));
    assert_int_equal(rs.n, 0);
    /* too short for a payload's trailer, or empty */
    assert_true(decode(CURSOR_KEY, cursor_lp, 10, &rs));
    assert_true(decode("igor:builds:completed:t:J:j", ci_int8, 4, &rs));
    assert_true(decode(POSTED_KEY, "", 0, &rs));
    assert_int_equal(rs.n, 0);

    /* a hash table claiming a fourth pair it does not hold: the rows before
     * the malformed part are given, and the value is undecoded */
    char bad[sizeof posted_table];
    memcpy(bad, posted_table, sizeof bad);
    bad[1] = 4;
    assert_true(decode(POSTED_KEY, bad, sizeof bad - 1, &rs));
    assert_int_equal(rs.n, 2);
    /* a listpack entry claiming more than the blob holds */
    char lp[sizeof posted_lp];
    memcpy(lp, posted_lp, sizeof lp);
    lp[8] = (char)0xf0; /* a 32-bit string length where 117 was */
    assert_true(decode(POSTED_KEY, lp, sizeof lp - 1, &rs));
    assert_int_equal(rs.n, 0);
    /* LZF data that does not expand to its stated length */
    memcpy(lp, docker_lp_lzf, sizeof docker_lp_lzf);
    lp[4] = 0x51; /* 81 bytes, where the data expands to 80 */
    assert_true(decode(DOCKER_KEY, lp, sizeof docker_lp_lzf - 1, &rs));
    /* every truncation is refused or decodes a prefix, never overreads
     * (ASan watches) */
    for (size_t cut = 0; cut < sizeof cursor_zl - 1; cut++) {
        char *copy = malloc(cut ? cut : 1);
        memcpy(copy, cursor_zl, cut);
        decode(CURSOR_KEY, copy, cut, &rs);
        free(copy);
    }
}

/* fn's error stops the decoding and comes back as it is; *undecoded is left
 * alone then. */
static void decode_stops_on_row_error(void **state)
{
    (void)state;
    sg_igor_key k = parse("igor", POSTED_KEY);
    rows rs = {.stop_at = 2};
    sg_error err = {0};
    bool undecoded = true;
    assert_int_equal(sg_igor_decode(&k, VEC(posted_lp), add_row, &rs, &undecoded, &err), SG_ESTORE);
    assert_int_equal(rs.n, 2);
    assert_string_equal(err.msg, "row 2 refused");
    assert_true(undecoded);

    k = parse("igor", "igor:builds:completed:t:J:j");
    rs = (rows){.stop_at = 1};
    undecoded = true;
    assert_int_equal(sg_igor_decode(&k, VEC(ci_int8), add_row, &rs, &undecoded, &err), SG_ESTORE);
    assert_int_equal(rs.n, 1);
    assert_true(undecoded);
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
        cmocka_unit_test(decode_cursor),
        cmocka_unit_test(decode_posted),
        cmocka_unit_test(decode_docker),
        cmocka_unit_test(decode_ci),
        cmocka_unit_test(decode_other_and_bad),
        cmocka_unit_test(decode_stops_on_row_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
