/* Tests redis_url.h: parsing, errors that never leak the password, redaction, env passwords. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/base/error.h"
#include "stormguard/redis/redis_url.h"

#define SECRET "Sup3rS3cret"

static void parse_ok(const char *url, sg_redis_url *u)
{
    sg_error err = {0};
    int rc = sg_redis_url_parse(url, u, &err);
    if (rc != 0)
        fail_msg("parsing %s: rc %d: %s", url, rc, err.msg);
}

static void assert_unset(const sg_redis_url *u)
{
    assert_null(u->host);
    assert_null(u->path);
    assert_null(u->user);
    assert_null(u->password);
}

/* ---- good URLs ---- */

static void plain_host(void **state)
{
    (void)state;
    sg_redis_url u;
    parse_ok("redis://cache.internal", &u);
    assert_string_equal(u.host, "cache.internal");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_null(u.path);
    assert_null(u.user);
    assert_null(u.password);
    sg_redis_url_close(&u);
    assert_null(u.host); /* close leaves nothing behind */
}

static void host_port_db(void **state)
{
    (void)state;
    sg_redis_url u;
    parse_ok("redis://10.0.0.5:6380/3", &u);
    assert_string_equal(u.host, "10.0.0.5");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 3);
    assert_null(u.user);
    assert_null(u.password);
    sg_redis_url_close(&u);

    parse_ok("redis://h:65535/15", &u);
    assert_int_equal(u.port, 65535);
    assert_int_equal(u.db, 15);
    sg_redis_url_close(&u);
}

static void user_and_password(void **state)
{
    (void)state;
    sg_redis_url u;
    parse_ok("redis://admin:" SECRET "@host:1/2", &u);
    assert_string_equal(u.user, "admin");
    assert_string_equal(u.password, SECRET);
    assert_string_equal(u.host, "host");
    assert_int_equal(u.port, 1);
    assert_int_equal(u.db, 2);
    sg_redis_url_close(&u);

    parse_ok("redis://admin@host", &u); /* user, no password */
    assert_string_equal(u.user, "admin");
    assert_null(u.password);
    sg_redis_url_close(&u);

    parse_ok("redis://admin:@host", &u); /* an empty password is no password */
    assert_string_equal(u.user, "admin");
    assert_null(u.password);
    sg_redis_url_close(&u);
}

static void percent_encoded_password(void **state)
{
    (void)state;
    sg_redis_url u;
    parse_ok("redis://us%65r:p%3Aa%40b%2Fc%25d@host:6380/1", &u);
    assert_string_equal(u.user, "user");
    assert_string_equal(u.password, "p:a@b/c%d");
    assert_string_equal(u.host, "host");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 1);
    sg_redis_url_close(&u);

    parse_ok("redis://u:%2f%2F@host", &u); /* hex digits in either case */
    assert_string_equal(u.password, "//");
    sg_redis_url_close(&u);
}

static void password_without_user(void **state)
{
    (void)state;
    sg_redis_url u;
    parse_ok("redis://:" SECRET "@host", &u);
    assert_null(u.user);
    assert_string_equal(u.password, SECRET);
    assert_string_equal(u.host, "host");
    assert_int_equal(u.port, 6379);
    sg_redis_url_close(&u);
}

static void ipv6(void **state)
{
    (void)state;
    sg_redis_url u;
    parse_ok("redis://[::1]:6390/0", &u);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 6390);
    assert_int_equal(u.db, 0);
    sg_redis_url_close(&u);

    parse_ok("redis://u:" SECRET "@[fe80::1:2]/7", &u);
    assert_string_equal(u.host, "fe80::1:2");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 7);
    assert_string_equal(u.password, SECRET);
    sg_redis_url_close(&u);
}

static void unix_socket(void **state)
{
    (void)state;
    sg_redis_url u;
    parse_ok("unix:///tmp/r.sock", &u);
    assert_string_equal(u.path, "/tmp/r.sock");
    assert_null(u.host);
    assert_int_equal(u.db, 0);
    sg_redis_url_close(&u);

    parse_ok("unix:///tmp/r.sock?db=4", &u);
    assert_string_equal(u.path, "/tmp/r.sock");
    assert_int_equal(u.db, 4);
    sg_redis_url_close(&u);
}

/* ---- bad URLs ---- */

/* Parses a bad URL: SG_EUSAGE, a message holding want, never the secret,
 * and nothing left in u. */
static void check_bad(const char *url, const char *want)
{
    sg_redis_url u;
    sg_error err = {0};
    int rc = sg_redis_url_parse(url, &u, &err);
    if (rc != SG_EUSAGE)
        fail_msg("parsing '%s': rc %d, want SG_EUSAGE", url ? url : "(null)", rc);
    assert_int_equal(err.code, SG_EUSAGE);
    assert_true(strlen(err.msg) > 0);
    if (want && !strstr(err.msg, want))
        fail_msg("parsing '%s': message '%s' lacks '%s'", url, err.msg, want);
    if (strstr(err.msg, SECRET) || strstr(err.msg, "S3cret"))
        fail_msg("parsing '%s': message '%s' leaks the password", url, err.msg);
    assert_unset(&u);
    sg_redis_url_close(&u); /* harmless */
}

static void bad_urls(void **state)
{
    (void)state;
    check_bad("", "empty");
    check_bad(NULL, "empty");
    check_bad("http://host:6379", "redis://");
    check_bad("rediss//host:6380", "rediss://");
    check_bad("rediss://u:" SECRET "@host:0", "port");
    check_bad("redis://host:0", "port");
    check_bad("redis://host:70000", "port");
    check_bad("redis://host:65536", "port");
    check_bad("redis://host:abc", "port");
    check_bad("redis://host:", "port");
    check_bad("redis://host:-1", "port");
    check_bad("redis://host/x", "database");
    check_bad("redis://host/-1", "database");
    check_bad("redis://host:6379/1x", "database");
    check_bad("redis://:6379", "host");
    check_bad("redis://", "host");
    check_bad("redis://u:" SECRET "@:6379/0", "host");
    check_bad("redis://u:p%zz" SECRET "@host", "escape");
    check_bad("redis://u:" SECRET "%4@host", "escape");
    check_bad("redis://u:" SECRET "%00@host", "escape");
    check_bad("redis://u%g1:" SECRET "@host", "escape");
    check_bad("unix://tmp/r.sock", "absolute");
    check_bad("unix://", "absolute");
    check_bad("unix:///tmp/r.sock?db=x", "db");
    check_bad("unix:///tmp/r.sock?foo=1", "db");
    check_bad("redis://[::1", "IPv6");
    /* the fuzzer's find: "[[x]" named host "[x", whose redacted form did not parse */
    check_bad("redis://[[x]", "IPv6");
    check_bad("redis://u:" SECRET "@[::[1]:6390", "IPv6");
}

static void bad_urls_never_leak_password(void **state)
{
    (void)state;
    /* every failure mode with the password in the URL */
    check_bad("redis://admin:" SECRET "@host:0/1", NULL);
    check_bad("redis://admin:" SECRET "@host:70000", NULL);
    check_bad("redis://admin:" SECRET "@host:port", NULL);
    check_bad("redis://admin:" SECRET "@host/db", NULL);
    check_bad("redis://admin:" SECRET "@host?x=1", NULL);
    check_bad("redis://admin:" SECRET "@[::1]junk", NULL);
    check_bad("http://admin:" SECRET "@host", NULL);
    /* an unencoded '/' in the password cuts the authority short */
    check_bad("redis://admin:" SECRET "/x@host", NULL);
    check_bad("redis://admin:" SECRET, NULL);
}

/* ---- redacted form and address ---- */

static void check_redacted(const char *url, const char *want)
{
    sg_redis_url u;
    parse_ok(url, &u);
    char *r = sg_redis_url_redacted(&u);
    if (strcmp(r, want))
        fail_msg("redacted(%s) = '%s', want '%s'", url, r, want);
    if (u.password && strstr(r, u.password))
        fail_msg("redacted(%s) = '%s' holds the password", url, r);
    free(r);
    sg_redis_url_close(&u);
}

static void redacted(void **state)
{
    (void)state;
    check_redacted("redis://admin:" SECRET "@10.0.0.5:6380/3", "redis://admin@10.0.0.5:6380/3");
    check_redacted("redis://:" SECRET "@host", "redis://host:6379/0");
    check_redacted("redis://host", "redis://host:6379/0");
    check_redacted("redis://admin@host:7000/9", "redis://admin@host:7000/9");
    check_redacted("redis://u:" SECRET "@[::1]:6390/2", "redis://u@[::1]:6390/2");
    check_redacted("redis://u:p%3Aa%40b@h", "redis://u@h:6379/0");
    check_redacted("unix:///tmp/r.sock", "unix:///tmp/r.sock");
    check_redacted("unix:///tmp/r.sock?db=4", "unix:///tmp/r.sock?db=4");
}

/* The redacted URL is printed by `config dump` and stored with snapshots:
 * parsed again it must name the same user, host, port and db. */
static void check_roundtrip(const char *url)
{
    sg_redis_url u, v;
    parse_ok(url, &u);
    char *r = sg_redis_url_redacted(&u);
    sg_error err = {0};
    char why[SG_ERRMSG_MAX + 256] = "";
    if (sg_redis_url_parse(r, &v, &err)) {
        snprintf(why, sizeof why, "redacted(%s) = '%s' does not parse: %s", url, r, err.msg);
    } else {
        bool same_user = (!u.user && !v.user) || (u.user && v.user && !strcmp(u.user, v.user));
        bool same_place = u.host   ? v.host && !strcmp(u.host, v.host)
                          : u.path ? v.path && !strcmp(u.path, v.path)
                                   : v.master_name && !strcmp(u.master_name, v.master_name) &&
                                         v.nsentinels == u.nsentinels;
        if (!same_user || v.password || !same_place || u.port != v.port || u.db != v.db ||
            u.tls.enabled != v.tls.enabled)
            snprintf(why, sizeof why,
                     "redacted(%s) = '%s' reparses as user '%s' password %s host '%s' port %d "
                     "db %d",
                     url, r, v.user ? v.user : "(none)", v.password ? "set" : "unset",
                     v.host ? v.host : v.path, v.port, v.db);
        sg_redis_url_close(&v);
    }
    free(r);
    sg_redis_url_close(&u);
    if (*why)
        fail_msg("%s", why);
}

static void redacted_roundtrips(void **state)
{
    (void)state;
    check_roundtrip("redis://admin:" SECRET "@10.0.0.5:6380/3");
    check_roundtrip("redis://[::1]:6390/5");
    check_roundtrip("redis://[x]:6390/5"); /* brackets without a ':' */
    check_roundtrip("redis://a[b]c:7/1");
    check_roundtrip("unix:///tmp/r.sock?db=4");
    check_roundtrip("rediss://admin:" SECRET "@cache.example:6380/1");
}

static void redacted_roundtrips_encoded_user(void **state)
{
    (void)state;
    /* a user name holding ':' or '%' must come back percent-encoded */
    check_roundtrip("redis://ops%3Ateam:" SECRET "@host:6380/1");
    check_roundtrip("redis://ops%25team@host:6380/1");
}

static void address(void **state)
{
    (void)state;
    static const struct {
        const char *url, *want;
    } cases[] = {
        {"redis://admin:" SECRET "@10.0.0.5:6380/3", "10.0.0.5:6380"},
        {"redis://host", "host:6379"},
        {"redis://[::1]:6390/0", "[::1]:6390"},
        {"unix:///tmp/r.sock?db=4", "/tmp/r.sock"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sg_redis_url u;
        parse_ok(cases[i].url, &u);
        char *a = sg_redis_url_address(&u);
        assert_string_equal(a, cases[i].want);
        assert_null(strstr(a, SECRET));
        free(a);
        sg_redis_url_close(&u);
    }
}

/* rediss:// is the same URL with TLS on; [redis] tls and its files join
 * it, a setting given replacing the URL's, and a unix socket takes none. */
static void tls_urls(void **state)
{
    (void)state;
    sg_redis_url u;
    parse_ok("rediss://u:" SECRET "@cache.example:6380/2", &u);
    assert_true(u.tls.enabled);
    assert_false(u.tls.insecure);
    assert_string_equal(u.host, "cache.example");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 2);
    char *r = sg_redis_url_redacted(&u);
    assert_string_equal(r, "rediss://u@cache.example:6380/2");
    free(r);
    sg_redis_url_close(&u);

    parse_ok("redis://cache.example", &u);
    assert_false(u.tls.enabled);
    sg_redis_tls t = {.enabled = true, .cacert = "/etc/ca.pem", .sni = "name.example"};
    sg_error err = {0};
    assert_int_equal(sg_redis_url_configure(&u, &t, NULL, &err), 0);
    assert_true(u.tls.enabled);
    assert_string_equal(u.tls.cacert, "/etc/ca.pem");
    assert_ptr_not_equal(u.tls.cacert, t.cacert);
    assert_string_equal(u.tls.sni, "name.example");
    assert_null(u.tls.cert);
    sg_redis_url c;
    memset(&c, 0x5a, sizeof c);
    sg_redis_url_copy(&c, &u);
    sg_redis_url_close(&u);
    assert_true(c.tls.enabled);
    assert_string_equal(c.tls.cacert, "/etc/ca.pem");
    assert_string_equal(c.tls.sni, "name.example");
    assert_null(c.tls.key);
    r = sg_redis_url_redacted(&c);
    assert_string_equal(r, "rediss://cache.example:6379/0");
    free(r);
    sg_redis_url_close(&c);

    /* the settings without TLS on change nothing but the files */
    parse_ok("redis://h", &u);
    sg_redis_tls off = {.cacert = "/ca"};
    assert_int_equal(sg_redis_url_configure(&u, &off, NULL, &err), 0);
    assert_false(u.tls.enabled);
    assert_int_equal(sg_redis_url_configure(&u, NULL, NULL, &err), 0);
    sg_redis_url_close(&u);

    parse_ok("unix:///tmp/r.sock", &u);
    assert_int_equal(sg_redis_url_configure(&u, &t, NULL, &err), SG_EUSAGE);
    assert_non_null(strstr(err.msg, "unix socket"));
    sg_redis_url_close(&u);
}

/* redis-sentinel://[password@]host[:port][,host[:port]...][/db]#name:
 * sentinels with their ports (26379 by default), the master's name, and no
 * host until the sentinels are asked. */
static void sentinel_urls(void **state)
{
    (void)state;
    sg_redis_url u;
    parse_ok("redis-sentinel://:" SECRET "@s1,s2:26380,[::1]/3#my%20master", &u);
    assert_null(u.host);
    assert_null(u.path);
    assert_string_equal(u.password, SECRET);
    assert_string_equal(u.master_name, "my master");
    assert_int_equal(u.nsentinels, 3);
    assert_string_equal(u.sentinels[0].host, "s1");
    assert_int_equal(u.sentinels[0].port, 26379);
    assert_string_equal(u.sentinels[1].host, "s2");
    assert_int_equal(u.sentinels[1].port, 26380);
    assert_string_equal(u.sentinels[2].host, "::1");
    assert_int_equal(u.db, 3);
    char *r = sg_redis_url_redacted(&u);
    assert_string_equal(r, "redis-sentinel://s1:26379,s2:26380,[::1]:26379/3#my%20master");
    free(r);
    char *a = sg_redis_url_address(&u);
    assert_non_null(strstr(a, "master my master"));
    assert_null(strstr(a, SECRET));
    free(a);
    sg_redis_url c;
    memset(&c, 0x5a, sizeof c);
    sg_redis_url_copy(&c, &u);
    sg_redis_url_close(&u);
    assert_int_equal(c.nsentinels, 3);
    assert_string_equal(c.sentinels[2].host, "::1");
    assert_string_equal(c.master_name, "my master");
    sg_error err = {0};
    assert_int_equal(sg_redis_url_configure(&c, NULL, "sentinel-pw", &err), 0);
    assert_string_equal(c.sentinel_password, "sentinel-pw");
    sg_redis_url_close(&c);

    /* Lettuce's form: the userinfo without ':' is the password */
    parse_ok("redis-sentinel://" SECRET "@s1#m", &u);
    assert_null(u.user);
    assert_string_equal(u.password, SECRET);
    r = sg_redis_url_redacted(&u);
    assert_null(strstr(r, SECRET));
    free(r);
    sg_redis_url_close(&u);
    check_roundtrip("redis-sentinel://10.0.0.1:26379,10.0.0.2:26379#mymaster");
    check_roundtrip("redis-sentinel://admin:" SECRET "@h/2#m");
    /* a # in a plain URL's password is no master's name */
    parse_ok("redis://:pa#ss@host", &u);
    assert_string_equal(u.password, "pa#ss");
    assert_null(u.master_name);
    sg_redis_url_close(&u);

    check_bad("redis-sentinel://s1:26379", "#");
    check_bad("redis-sentinel://s1#", "master");
    check_bad("redis-sentinel://s1,#m", "comma");
    check_bad("redis-sentinel://s1,,s2#m", "host");
    check_bad("redis-sentinel://s1:0#m", "port");
    check_bad("redis-sentinel://:" SECRET "@s1:x#m", "port");
}

static void copy_is_deep(void **state)
{
    (void)state;
    sg_redis_url u, c;
    parse_ok("redis://admin:" SECRET "@[::1]:6390/5", &u);
    memset(&c, 0x5a, sizeof c);
    sg_redis_url_copy(&c, &u);
    assert_string_equal(c.host, "::1");
    assert_ptr_not_equal(c.host, u.host);
    assert_string_equal(c.user, "admin");
    assert_ptr_not_equal(c.user, u.user);
    assert_string_equal(c.password, SECRET);
    assert_ptr_not_equal(c.password, u.password);
    assert_null(c.path);
    assert_int_equal(c.port, 6390);
    assert_int_equal(c.db, 5);
    sg_redis_url_close(&u); /* the copy outlives the original */
    assert_string_equal(c.password, SECRET);
    sg_redis_url_close(&c);

    parse_ok("unix:///tmp/r.sock?db=4", &u);
    sg_redis_url_copy(&c, &u);
    assert_string_equal(c.path, "/tmp/r.sock");
    assert_null(c.host);
    assert_null(c.user);
    assert_null(c.password);
    assert_int_equal(c.db, 4);
    sg_redis_url_close(&u);
    sg_redis_url_close(&c);
}

/* ---- passwords from the environment ---- */

static int clear_env(void **state)
{
    (void)state;
    unsetenv("STORMGUARD_REDIS_PASSWORD");
    unsetenv("REDISCLI_AUTH");
    return 0;
}

static char *env_password(const char *url)
{
    sg_redis_url u;
    parse_ok(url, &u);
    sg_redis_url_password_from_env(&u);
    char *pw = u.password ? strdup(u.password) : NULL;
    sg_redis_url_close(&u);
    return pw;
}

static void env_stormguard_first(void **state)
{
    (void)state;
    setenv("STORMGUARD_REDIS_PASSWORD", "from-sg", 1);
    setenv("REDISCLI_AUTH", "from-cli", 1);
    char *pw = env_password("redis://host");
    assert_non_null(pw);
    assert_string_equal(pw, "from-sg");
    free(pw);
}

static void env_rediscli_auth(void **state)
{
    (void)state;
    setenv("REDISCLI_AUTH", "from-cli", 1);
    char *pw = env_password("redis://host");
    assert_non_null(pw);
    assert_string_equal(pw, "from-cli");
    free(pw);
    /* an empty STORMGUARD_REDIS_PASSWORD does not hide REDISCLI_AUTH */
    setenv("STORMGUARD_REDIS_PASSWORD", "", 1);
    pw = env_password("redis://host");
    assert_non_null(pw);
    assert_string_equal(pw, "from-cli");
    free(pw);
}

static void env_url_password_wins(void **state)
{
    (void)state;
    setenv("STORMGUARD_REDIS_PASSWORD", "from-sg", 1);
    setenv("REDISCLI_AUTH", "from-cli", 1);
    char *pw = env_password("redis://u:from-url@host");
    assert_non_null(pw);
    assert_string_equal(pw, "from-url");
    free(pw);
}

static void env_none(void **state)
{
    (void)state;
    char *pw = env_password("redis://host");
    assert_null(pw);
    setenv("REDISCLI_AUTH", "", 1);
    pw = env_password("redis://host");
    assert_null(pw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_host),
        cmocka_unit_test(host_port_db),
        cmocka_unit_test(user_and_password),
        cmocka_unit_test(percent_encoded_password),
        cmocka_unit_test(password_without_user),
        cmocka_unit_test(ipv6),
        cmocka_unit_test(unix_socket),
        cmocka_unit_test(bad_urls),
        cmocka_unit_test(bad_urls_never_leak_password),
        cmocka_unit_test(redacted),
        cmocka_unit_test(redacted_roundtrips),
        cmocka_unit_test(redacted_roundtrips_encoded_user),
        cmocka_unit_test(address),
        cmocka_unit_test(copy_is_deep),
        cmocka_unit_test(tls_urls),
        cmocka_unit_test(sentinel_urls),
        cmocka_unit_test_setup_teardown(env_stormguard_first, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(env_rediscli_auth, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(env_url_password_wins, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(env_none, clear_env, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
