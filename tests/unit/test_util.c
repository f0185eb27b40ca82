/* Tests util.h: Redis glob matching, number and duration parsing, time format, string lists. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stormguard/base/error.h"
#include "stormguard/base/util.h"

/* Matches a NUL-terminated string (the common case). */
static bool m(const char *pattern, const char *s)
{
    return sg_glob_match(pattern, s, strlen(s));
}

/* Runs fn in a child process with an alarm, so a hang or a sanitizer abort
 * fails one test instead of the whole program. Returns the child's exit
 * status: fn's result (0 or 1), or -1 if it was killed or timed out. */
static int run_isolated(int (*fn)(void), unsigned timeout_s)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(timeout_s);
        _exit(fn());
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return -1;
}

/* ---- sg_glob_match ---- */

static void glob_star(void **state)
{
    (void)state;
    assert_true(m("*", ""));
    assert_true(m("*", "anything:at:all"));
    assert_true(m("a*", "a"));
    assert_true(m("a*", "abc"));
    assert_false(m("a*", "ba"));
    assert_true(m("*c", "abc"));
    assert_false(m("*c", "abd"));
    assert_true(m("a*c", "ac"));
    assert_true(m("a*c", "abbbc"));
    assert_false(m("a*c", "abcd"));
    assert_true(m("a**c", "abc")); /* consecutive stars collapse */
    assert_true(m("*:*:*", "m:J:j"));
    assert_false(m("*:*:*", "m:J"));
}

static void glob_question(void **state)
{
    (void)state;
    assert_true(m("?", "a"));
    assert_false(m("?", ""));
    assert_false(m("?", "ab"));
    assert_true(m("a?c", "abc"));
    assert_false(m("a?c", "ac"));
    assert_true(m("??", "xy"));
    assert_false(m("??", "x"));
    assert_false(m("?*", "")); /* ? needs a byte even before a star */
    assert_false(m("a?*", "a"));
    assert_true(m("a?*", "ab"));
}

static void glob_classes(void **state)
{
    (void)state;
    assert_true(m("[abc]", "b"));
    assert_false(m("[abc]", "d"));
    assert_false(m("[abc]", ""));
    assert_false(m("[abc]", "ab"));
    assert_true(m("[a-z]", "m"));
    assert_false(m("[a-z]", "M"));
    assert_true(m("[^a-z]", "M"));
    assert_false(m("[^a-z]", "m"));
    assert_true(m("[^abc]", "d"));
    assert_false(m("[^abc]", "a"));
    assert_true(m("[z-a]", "q")); /* reversed range, as Redis swaps it */
    assert_true(m("x[0-9][0-9]", "x42"));
    assert_false(m("x[0-9][0-9]", "x4a"));
    assert_true(m("[a-cx-z]", "y"));
    assert_false(m("[a-cx-z]", "m"));
    assert_true(m("[\\]]", "]")); /* escaped ']' inside a class */
    assert_false(m("[\\]]", "\\"));
    assert_true(m("[\\-]", "-"));
    assert_true(m("h[ae]llo*", "hello world"));
    assert_false(m("h[ae]llo*", "hillo"));
}

static void glob_escapes(void **state)
{
    (void)state;
    assert_true(m("\\*", "*"));
    assert_false(m("\\*", "a"));
    assert_false(m("\\*", ""));
    assert_true(m("\\?", "?"));
    assert_false(m("\\?", "x"));
    assert_true(m("a\\[b", "a[b"));
    assert_false(m("a\\[b", "ab"));
    assert_true(m("a\\\\b", "a\\b"));
    assert_true(m("a\\b", "ab")); /* \ before an ordinary char is that char */
    assert_true(m("a\\", "a\\")); /* a trailing \ matches itself */
    assert_false(m("a\\", "a"));
    assert_true(m("ig\\*or:*", "ig*or:x"));
    assert_false(m("ig\\*or:*", "igXor:x"));
}

static void glob_binary(void **state)
{
    (void)state;
    assert_true(sg_glob_match("a?b", "a\0b", 3));
    assert_true(sg_glob_match("a*", "a\0\0", 3));
    assert_true(sg_glob_match("a*z", "a\0z", 3));
    assert_false(sg_glob_match("a*z", "a\0y", 3));
    assert_false(sg_glob_match("a", "a\0", 2)); /* the length counts, not the NUL */
    assert_true(sg_glob_match("[^x]", "\0", 1));
    assert_false(sg_glob_match("[a-z]", "\0", 1));
    assert_true(sg_glob_match("igor:*", "igor:m\0x", 8));
    /* the string is not NUL-terminated at len */
    assert_true(sg_glob_match("ab", "abc", 2));
    assert_false(sg_glob_match("abc", "abc", 2));
    assert_true(sg_glob_match("*", "\xff\xfe", 2));
    assert_true(sg_glob_match("\xc3\xb6*", "\xc3\xb6x", 3));
}

static void glob_empty(void **state)
{
    (void)state;
    assert_true(sg_glob_match("", "", 0));
    assert_false(sg_glob_match("", "a", 1));
    assert_false(sg_glob_match("", "\0", 1));
    assert_true(sg_glob_match("*", "", 0));
    assert_true(sg_glob_match("**", "", 0));
    assert_false(sg_glob_match("a", "", 0));
}

static void glob_igor_prefix(void **state)
{
    (void)state;
    assert_true(m("igor:*", "igor:jenkins:JOB:job"));
    assert_true(m("igor:*", "igor:"));
    assert_false(m("igor:*", "igor"));
    assert_false(m("igor:*", "igo"));
    assert_false(m("igor:*", "igorx:y"));
    assert_false(m("igor:*", "spin:igor:x"));
    assert_false(m("igor:*", "IGOR:x"));
}

/* Redis only refuses patterns nested deeper than 1000 stars; 70 distinct
 * star segments are an ordinary (if long) pattern and must still match. */
static int many_stars_child(void)
{
    char pattern[256], s[128];
    size_t pn = 0;
    for (int i = 0; i < 70; i++) {
        pattern[pn++] = '*';
        pattern[pn++] = (char)(0xa0 + i);
        s[i] = (char)(0xa0 + i);
    }
    pattern[pn] = '\0';
    if (!sg_glob_match(pattern, s, 70))
        return 1;
    if (sg_glob_match(pattern, s, 69)) /* last segment missing */
        return 1;
    return 0;
}

static void glob_many_stars(void **state)
{
    (void)state;
    assert_int_equal(run_isolated(many_stars_child, 20), 0);
}

/* Redis's matcher (since the CVE-2022-36021 fix) gives up on longer matches
 * once a star's tail cannot match, so this pattern answers at once instead
 * of backtracking exponentially. */
static int pathological_child(void)
{
    char s[101];
    memset(s, 'a', 100);
    s[100] = '\0';
    return sg_glob_match("a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", s, 100) ? 1 : 0;
}

static void glob_pathological_is_fast(void **state)
{
    (void)state;
    assert_int_equal(run_isolated(pathological_child, 5), 0);
}

static void glob_is_literal(void **state)
{
    (void)state;
    assert_true(sg_glob_is_literal("igor:jenkins:JOB:job"));
    assert_true(sg_glob_is_literal(""));
    assert_true(sg_glob_is_literal("a]b"));
    assert_true(sg_glob_is_literal("team-a/service-17"));
    assert_false(sg_glob_is_literal("igor:*"));
    assert_false(sg_glob_is_literal("a?"));
    assert_false(sg_glob_is_literal("a[bc]"));
    assert_false(sg_glob_is_literal("a\\b"));
}

/* ---- sg_parse_int64 ---- */

static void parse_int64_good(void **state)
{
    (void)state;
    int64_t v = -7;
    assert_int_equal(sg_parse_int64("0", 0, 10, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(sg_parse_int64("-5", -10, 10, &v), 0);
    assert_int_equal(v, -5);
    assert_int_equal(sg_parse_int64("10", 0, 10, &v), 0); /* max is inclusive */
    assert_int_equal(v, 10);
    assert_int_equal(sg_parse_int64("1", 1, 10, &v), 0); /* min is inclusive */
    assert_int_equal(v, 1);
    assert_int_equal(sg_parse_int64("9223372036854775807", INT64_MIN, INT64_MAX, &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(sg_parse_int64("-9223372036854775808", INT64_MIN, INT64_MAX, &v), 0);
    assert_true(v == INT64_MIN);
}

static void parse_int64_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {"", "abc", "-", "12abc", "12 ", "1.5", "0x10", "1e3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 1234;
        assert_int_equal(sg_parse_int64(bad[i], INT64_MIN, INT64_MAX, &v), SG_EINVAL);
        assert_int_equal(v, 1234); /* written only on success */
    }
    int64_t v = 1234;
    assert_int_equal(sg_parse_int64(NULL, 0, 10, &v), SG_EINVAL);
    assert_int_equal(sg_parse_int64("11", 0, 10, &v), SG_EINVAL);
    assert_int_equal(sg_parse_int64("0", 1, 10, &v), SG_EINVAL);
    assert_int_equal(sg_parse_int64("-1", 0, 10, &v), SG_EINVAL);
    assert_int_equal(sg_parse_int64("9223372036854775808", INT64_MIN, INT64_MAX, &v), SG_EINVAL);
    assert_int_equal(sg_parse_int64("-9223372036854775809", INT64_MIN, INT64_MAX, &v), SG_EINVAL);
    assert_int_equal(sg_parse_int64("99999999999999999999", INT64_MIN, INT64_MAX, &v), SG_EINVAL);
    assert_int_equal(v, 1234);
}

/* ---- sg_parse_duration ---- */

static void parse_duration_good(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t want;
    } cases[] = {
        {"0", 0},      {"90", 90},   {"90s", 90},
        {"15m", 900},  {"2h", 7200}, {"7d", 604800},
        {"1d", 86400}, {"0m", 0},    {"106751991167300d", INT64_C(106751991167300) * 86400},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t v = -1;
        assert_int_equal(sg_parse_duration(cases[i].s, &v), 0);
        assert_true(v == cases[i].want);
    }
}

static void parse_duration_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "5x",
        "-1",
        "-1s",
        "s",
        "m",
        "1.5h",
        "5 m",
        "5ms",
        "5mm",
        " ",
        "h2",
        "106751991167301d",    /* * 86400 overflows int64 */
        "153722867280912931m", /* * 60 overflows int64 */
        "2562047788015216h",   /* * 3600 overflows int64 */
        "9223372036854775808", /* does not fit at all */
        "99999999999999999999s",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 4321;
        int rc = sg_parse_duration(bad[i], &v);
        if (rc != SG_EINVAL)
            fail_msg("sg_parse_duration(\"%s\") = %d, want SG_EINVAL", bad[i], rc);
        assert_int_equal(v, 4321);
    }
    int64_t v = 4321;
    assert_int_equal(sg_parse_duration(NULL, &v), SG_EINVAL);
    assert_int_equal(v, 4321);
}

/* ---- sg_format_time ---- */

static void format_time(void **state)
{
    (void)state;
    char buf[64];
    sg_format_time(0, buf, sizeof buf);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    sg_format_time(INT64_C(1526030000123), buf, sizeof buf);
    assert_string_equal(buf, "2018-05-11T09:13:20.123Z");
    sg_format_time(INT64_C(1526030000007), buf, sizeof buf);
    assert_string_equal(buf, "2018-05-11T09:13:20.007Z");
    sg_format_time(INT64_C(4102444799999), buf, sizeof buf);
    assert_string_equal(buf, "2099-12-31T23:59:59.999Z");
}

static void format_time_truncates_safely(void **state)
{
    (void)state;
    char buf[16];
    memset(buf, 'X', sizeof buf);
    sg_format_time(INT64_C(1526030000123), buf, 11);
    assert_string_equal(buf, "2018-05-11");
    assert_int_equal(buf[11], 'X'); /* nothing written past size */
}

/* One millisecond before the epoch is 1969-12-31T23:59:59.999Z; the
 * millisecond field must never be negative. */
static void format_time_before_epoch(void **state)
{
    (void)state;
    char buf[64];
    sg_format_time(-1, buf, sizeof buf);
    assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
    sg_format_time(-1500, buf, sizeof buf);
    assert_string_equal(buf, "1969-12-31T23:59:58.500Z");
}

/* ---- sg_strlist ---- */

static void strlist_push_owns_copies(void **state)
{
    (void)state;
    sg_strlist l = {0};
    char buf[16];
    for (int i = 0; i < 10; i++) { /* past the initial capacity */
        snprintf(buf, sizeof buf, "item%d", i);
        sg_strlist_push(&l, buf);
    }
    strcpy(buf, "changed");
    assert_int_equal(l.len, 10);
    assert_true(l.cap >= 10);
    for (int i = 0; i < 10; i++) {
        char want[16];
        snprintf(want, sizeof want, "item%d", i);
        assert_string_equal(l.items[i], want);
    }
    sg_strlist_clear(&l);
    assert_null(l.items);
    assert_int_equal(l.len, 0);
    assert_int_equal(l.cap, 0);
    /* reusable after clear */
    sg_strlist_push(&l, "again");
    assert_int_equal(l.len, 1);
    assert_string_equal(l.items[0], "again");
    sg_strlist_clear(&l);
    sg_strlist_clear(&l); /* clearing an empty list is harmless */
}

static void strlist_copy_replaces(void **state)
{
    (void)state;
    sg_strlist src = {0}, dst = {0};
    sg_strlist_push(&src, "session:*");
    sg_strlist_push(&src, "lock:*");
    sg_strlist_push(&dst, "old1");
    sg_strlist_push(&dst, "old2");
    sg_strlist_push(&dst, "old3");
    sg_strlist_copy(&dst, &src);
    assert_int_equal(dst.len, 2);
    assert_string_equal(dst.items[0], "session:*");
    assert_string_equal(dst.items[1], "lock:*");
    assert_ptr_not_equal(dst.items[0], src.items[0]); /* a deep copy */
    sg_strlist_clear(&src);
    assert_string_equal(dst.items[1], "lock:*");
    sg_strlist empty = {0};
    sg_strlist_copy(&dst, &empty);
    assert_int_equal(dst.len, 0);
    sg_strlist_clear(&dst);
}

static void strlist_match(void **state)
{
    (void)state;
    sg_strlist l = {0};
    assert_false(sg_strlist_match(&l, "x", 1)); /* empty list matches nothing */
    sg_strlist_push(&l, "session:*");
    sg_strlist_push(&l, "lock:*");
    assert_true(sg_strlist_match(&l, "lock:x", 6));
    assert_true(sg_strlist_match(&l, "session:abc", 11));
    assert_false(sg_strlist_match(&l, "cache:x", 7));
    assert_false(sg_strlist_match(&l, "locks", 5));
    assert_true(sg_strlist_match(&l, "lock:\0bin", 9));
    assert_false(sg_strlist_match(&l, "lock:x", 4)); /* only the first len bytes */
    sg_strlist_clear(&l);
}

/* A URL fit for a message: no user, password or query survives. */
static void url_redacted(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"http://echo:s3cret@127.0.0.1:9/x", "http://***@127.0.0.1:9/x"},
        {"https://a@b@host/p?token=t0p", "https://***@host/p?***"},
        {"http://host:8089/hook?token=t0p&x=1", "http://host:8089/hook?***"},
        {"http://host", "http://host"},
        {"host:1/p@x", "host:1/p@x"}, /* '@' in the path is no user */
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *r = sg_url_redacted(cases[i][0]);
        assert_string_equal(r, cases[i][1]);
        free(r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(glob_star),
        cmocka_unit_test(glob_question),
        cmocka_unit_test(glob_classes),
        cmocka_unit_test(glob_escapes),
        cmocka_unit_test(glob_binary),
        cmocka_unit_test(glob_empty),
        cmocka_unit_test(glob_igor_prefix),
        cmocka_unit_test(glob_many_stars),
        cmocka_unit_test(glob_pathological_is_fast),
        cmocka_unit_test(glob_is_literal),
        cmocka_unit_test(parse_int64_good),
        cmocka_unit_test(parse_int64_bad),
        cmocka_unit_test(parse_duration_good),
        cmocka_unit_test(parse_duration_bad),
        cmocka_unit_test(format_time),
        cmocka_unit_test(format_time_truncates_safely),
        cmocka_unit_test(format_time_before_epoch),
        cmocka_unit_test(strlist_push_owns_copies),
        cmocka_unit_test(strlist_copy_replaces),
        cmocka_unit_test(strlist_match),
        cmocka_unit_test(url_redacted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
