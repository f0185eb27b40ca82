/* Tests config.h: defaults, INI loading and its errors, sg_config_set, the flag table, dump. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stormguard/config/config.h"
#include "stormguard/base/error.h"

#define SECRET "Secr3tPw"

/* Temp files made by a test; removed by the teardown even if it fails. */
#define MAX_TEMPS 32
static char temps[MAX_TEMPS][64];
static size_t ntemps;

/* Configs made by a test; closed by the teardown even if it fails. */
static sg_config cfgs[128];
static size_t ncfgs;

static sg_config *new_config(void)
{
    assert_true(ncfgs < sizeof cfgs / sizeof cfgs[0]);
    sg_config *c = &cfgs[ncfgs++];
    sg_config_init(c);
    return c;
}

static int cleanup(void **state)
{
    (void)state;
    for (size_t i = 0; i < ntemps; i++)
        unlink(temps[i]);
    ntemps = 0;
    for (size_t i = 0; i < ncfgs; i++)
        sg_config_close(&cfgs[i]);
    ncfgs = 0;
    return 0;
}

/* Writes text to a new temp file; returns its path (valid until teardown). */
static const char *write_ini(const char *text)
{
    assert_true(ntemps < MAX_TEMPS);
    char *path = temps[ntemps];
    snprintf(path, sizeof temps[0], "/tmp/sg-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    ntemps++;
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    assert_int_equal(close(fd), 0);
    return path;
}

static void assert_list(const sg_strlist *l, const char *const *want, size_t n)
{
    if (l->len != n) {
        fprintf(stderr, "list has %zu items:", l->len);
        for (size_t i = 0; i < l->len; i++)
            fprintf(stderr, " '%s'", l->items[i]);
        fprintf(stderr, "\n");
        fail_msg("list has %zu items, want %zu", l->len, n);
    }
    for (size_t i = 0; i < n; i++)
        assert_string_equal(l->items[i], want[i]);
}

#define ASSERT_LIST(l, ...)                                                                        \
    do {                                                                                           \
        static const char *const want_[] = {__VA_ARGS__};                                          \
        assert_list((l), want_, sizeof want_ / sizeof want_[0]);                                   \
    } while (0)

/* ---- defaults ---- */

static void defaults(void **state)
{
    (void)state;
    sg_config *c = new_config();
    assert_string_equal(c->redis_url, SG_DEFAULT_REDIS_URL);
    assert_int_equal(c->connect_timeout_ms, 5000);
    assert_string_equal(c->db_path, SG_DEFAULT_DB_PATH);
    assert_int_equal(c->synchronous, SG_SYNC_NORMAL);
    assert_int_equal(c->profile, SG_PROFILE_NONE);
    assert_string_equal(c->prefix, "igor");
    assert_int_equal(c->match.len, 0);
    assert_int_equal(c->scan_count, 1000);
    assert_int_equal(c->keep, 20);
    assert_int_equal(c->max_age_s, 0);
    assert_int_equal(c->keep_events_s, 30 * 86400);
    ASSERT_LIST(&c->protect, "session:*", "queue:*", "workflow:*", "lock:*", "rate:*");
    assert_true(c->flush_announce);
    sg_config_close(c);
    assert_null(c->redis_url);
    assert_int_equal(c->protect.len, 0);
    sg_config_close(c); /* closing twice is harmless */
}

/* ---- loading ---- */

static void load_all_keys(void **state)
{
    (void)state;
    const char *path = write_ini("; stormguard test config\n"
                                 "# another comment style\n"
                                 "[redis]\n"
                                 "url = redis://admin:" SECRET "@10.0.0.5:6380/2\n"
                                 "connect_timeout = 2500\n"
                                 "\n"
                                 "[store]\n"
                                 "path = /tmp/sg-test.db\n"
                                 "synchronous = full\n"
                                 "\n"
                                 "[profile]\n"
                                 "name = igor\n"
                                 "prefix = spin\n"
                                 "\n"
                                 "[snapshot]\n"
                                 "match = cache:* build:*\n"
                                 "scan_count = 5000\n"
                                 "keep = 3\n"
                                 "max_age = 7d\n"
                                 "\n"
                                 "[flush]\n"
                                 "protect = session:*,lock:*\n");
    sg_config *c = new_config();
    sg_error err = {0};
    int rc = sg_config_load_file(c, path, &err);
    if (rc)
        fail_msg("load: %d %s", rc, err.msg);
    assert_string_equal(c->redis_url, "redis://admin:" SECRET "@10.0.0.5:6380/2");
    assert_int_equal(c->connect_timeout_ms, 2500);
    assert_string_equal(c->db_path, "/tmp/sg-test.db");
    assert_int_equal(c->synchronous, SG_SYNC_FULL);
    assert_int_equal(c->profile, SG_PROFILE_IGOR);
    assert_string_equal(c->prefix, "spin");
    ASSERT_LIST(&c->match, "cache:*", "build:*");
    assert_int_equal(c->scan_count, 5000);
    assert_int_equal(c->keep, 3);
    assert_int_equal(c->max_age_s, 7 * 86400);
    ASSERT_LIST(&c->protect, "session:*", "lock:*"); /* replaces the defaults */
}

static void load_partial_keeps_defaults(void **state)
{
    (void)state;
    const char *path = write_ini("[snapshot]\nkeep = 0\n");
    sg_config *c = new_config();
    sg_error err = {0};
    assert_int_equal(sg_config_load_file(c, path, &err), 0);
    assert_int_equal(c->keep, 0);
    assert_string_equal(c->redis_url, SG_DEFAULT_REDIS_URL);
    assert_int_equal(c->scan_count, 1000);
    assert_int_equal(c->protect.len, 5);
}

static void load_lists(void **state)
{
    (void)state;
    const char *path = write_ini("[snapshot]\n"
                                 "match = a:*  b:*,c:*\n"
                                 "match = d:*,, e:*\t f:*\n"
                                 "[flush]\n"
                                 "protect = x:*\n"
                                 "protect = y:* z:*\n");
    sg_config *c = new_config();
    sg_error err = {0};
    int rc = sg_config_load_file(c, path, &err);
    if (rc)
        fail_msg("load: %d %s", rc, err.msg);
    ASSERT_LIST(&c->match, "a:*", "b:*", "c:*", "d:*", "e:*", "f:*");
    ASSERT_LIST(&c->protect, "x:*", "y:*", "z:*");
}

/* inih reads lines of at most 200 bytes by default; a long but legitimate
 * list must still load whole, or fail loudly, never half-loaded. */
static void load_long_line(void **state)
{
    (void)state;
    char text[1024], want[40][16];
    size_t n = (size_t)snprintf(text, sizeof text, "[snapshot]\nmatch =");
    for (int i = 0; i < 40; i++) {
        snprintf(want[i], sizeof want[i], "ns%02d:*", i);
        n += (size_t)snprintf(text + n, sizeof text - n, " %s", want[i]);
    }
    snprintf(text + n, sizeof text - n, "\nkeep = 4\n");
    const char *path = write_ini(text);
    sg_config *c = new_config();
    sg_error err = {0};
    int rc = sg_config_load_file(c, path, &err);
    if (rc)
        fail_msg("a 290-byte line: %d %s", rc, err.msg);
    assert_int_equal(c->match.len, 40);
    for (int i = 0; i < 40; i++)
        assert_string_equal(c->match.items[i], want[i]);
    assert_int_equal(c->keep, 4);
}

static void load_missing_file(void **state)
{
    (void)state;
    sg_config *c = new_config();
    sg_error err = {0};
    const char *path = "/nonexistent-sg-dir/stormguard.ini";
    assert_int_equal(sg_config_load_file(c, path, &err), SG_EUSAGE);
    assert_non_null(strstr(err.msg, path));
}

/* The text a file holds, loaded from memory: the same lines and the same
 * errors, under the name given; a last line without a newline counts, and a
 * NUL byte (which a file may hold) is an error of its line. */
static void load_text(void **state)
{
    (void)state;
    sg_config *c = new_config();
    sg_error err = {0};
    static const char ok[] = "[snapshot]\r\nkeep = 4\n\n; note\nmatch = a:* b:*\nmatch = c:*";
    assert_int_equal(sg_config_load_text(c, "mem.ini", ok, sizeof ok - 1, &err), 0);
    assert_int_equal(c->keep, 4);
    ASSERT_LIST(&c->match, "a:*", "b:*", "c:*");

    static const char nul[] = "[snapshot]\nkeep = 5\nkeep = 6\0\n";
    assert_int_equal(sg_config_load_text(c, "mem.ini", nul, sizeof nul - 1, &err), SG_EUSAGE);
    assert_non_null(strstr(err.msg, "mem.ini:3: line holds a NUL byte"));
    assert_int_equal(c->keep, 5);

    /* only len bytes count: the text needs no terminating NUL */
    static const char cut[] = "[snapshot]\nkeep = 78";
    assert_int_equal(sg_config_load_text(c, "mem.ini", cut, sizeof cut - 2, &err), 0);
    assert_int_equal(c->keep, 7);
    assert_int_equal(sg_config_load_text(c, "mem.ini", "", 0, &err), 0);
}

/* ---- load errors ---- */

/* Loads text, expects SG_EUSAGE naming the file, "file:line:", and want
 * after that location. */
static void check_load_error(const char *text, int line, const char *want)
{
    const char *path = write_ini(text);
    sg_config *c = new_config();
    sg_error err = {0};
    int rc = sg_config_load_file(c, path, &err);
    if (rc != SG_EUSAGE)
        fail_msg("loading %s: rc %d, want SG_EUSAGE (%s)", text, rc, err.msg);
    assert_int_equal(err.code, SG_EUSAGE);
    char where[128];
    snprintf(where, sizeof where, "%s:%d:", path, line);
    const char *at = strstr(err.msg, where);
    if (!at)
        fail_msg("message '%s' lacks '%s'", err.msg, where);
    if (want && !strstr(at + strlen(where), want))
        fail_msg("message '%s' lacks '%s'", err.msg, want);
    if (strstr(err.msg, SECRET))
        fail_msg("message '%s' leaks the password", err.msg);
}

static void error_unknown_key(void **state)
{
    (void)state;
    check_load_error("[snapshot]\nkeep = 3\nkepp = 3\n", 3, "kepp");
}

static void error_unknown_section(void **state)
{
    (void)state;
    /* the header itself is the mistake: reported on its own line */
    check_load_error("[redis]\nurl = redis://h\n[bogus]\nfoo = 1\n", 3, "unknown section [bogus]");
}

static void error_bad_values(void **state)
{
    (void)state;
    check_load_error("[snapshot]\nkeep = many\n", 2, "keep");
    check_load_error("[snapshot]\nkeep = -1\n", 2, "keep");
    check_load_error("[snapshot]\n; a comment\n\nscan_count = 999\n", 4, "scan_count");
    check_load_error("[snapshot]\nscan_count = 1000x\n", 2, "scan_count");
    check_load_error("[redis]\nconnect_timeout = 0\n", 2, "connect_timeout");
    check_load_error("[snapshot]\nmax_age = 5x\n", 2, "max_age");
    check_load_error("[snapshot]\nmax_age = -1\n", 2, "max_age");
    check_load_error("[profile]\nname = jenkins\n", 2, "name");
    check_load_error("[store]\nsynchronous = sometimes\n", 2, "synchronous");
    check_load_error("[store]\npath =\n", 2, "path");
    check_load_error("[storm]\non_storm = panic\n", 2, "must be one of hold,drain,drop");
    check_load_error("[storm]\non_storm = dra\n", 2, "must be one of hold,drain,drop");
    check_load_error("[guard]\nrewarm = maybe\n", 2, "must be yes or no");
    check_load_error("[snapshot]\nsuspect_below = 101\n", 2, "suspect_below");
    check_load_error("[storm]\nsame_job_builds = 65\n", 2, "same_job_builds");
}

static void load_guard_and_storm(void **state)
{
    (void)state;
    const char *path = write_ini("[redis]\ncanary = sg:canary\ncheck_interval_ms = 250\n"
                                 "[snapshot]\ninterval = 5m\nsuspect_below = 0\n"
                                 "[guard]\nduration = 30m\nrewarm = on\n"
                                 "[storm]\nwindow = 2m\nsame_job_builds = 5\n"
                                 "on_storm = drain\ndrain_rate = 50\n");
    sg_config *c = new_config();
    assert_false(c->rewarm);
    assert_string_equal(c->on_storm, "hold");
    sg_error err = {0};
    if (sg_config_load_file(c, path, &err))
        fail_msg("load: %s", err.msg);
    assert_string_equal(c->canary, "sg:canary");
    assert_int_equal(c->check_interval_ms, 250);
    assert_int_equal(c->snapshot_interval_s, 300);
    assert_int_equal(c->suspect_below_pct, 0);
    assert_int_equal(c->guard_duration_s, 1800);
    assert_true(c->rewarm);
    assert_int_equal(c->storm_window_s, 120);
    assert_int_equal(c->storm_same_job, 5);
    assert_string_equal(c->on_storm, "drain");
    assert_int_equal(c->drain_rate, 50);
    assert_int_equal(sg_config_set(c, "guard", "rewarm", "off", false, &err), 0);
    assert_false(c->rewarm);
}

static void error_bad_url(void **state)
{
    (void)state;
    check_load_error("[redis]\nurl = rediss://u:" SECRET "@host:0\n", 2, "port");
    check_load_error("[redis]\nconnect_timeout = 10\n\nurl = redis://u:" SECRET "@host:70000\n", 4,
                     "port");
    /* the key, as every other value error names it ("[section] key: ...") */
    check_load_error("[redis]\nconnect_timeout = 10\n\nurl = redis://u:" SECRET "@host:70000\n", 4,
                     "url");
}

static void error_syntax(void **state)
{
    (void)state;
    check_load_error("[redis]\nurl = redis://h\nthis line has no equals sign\n", 3, "syntax");
}

/* Loads text that has two problems; the message must report one of them,
 * with its own line: (line1, reason1) or (line2, reason2). */
static void check_line_matches_reason(const char *text, int line1, const char *reason1, int line2,
                                      const char *reason2)
{
    const char *path = write_ini(text);
    sg_config *c = new_config();
    sg_error err = {0};
    assert_int_equal(sg_config_load_file(c, path, &err), SG_EUSAGE);
    char w1[128], w2[128];
    snprintf(w1, sizeof w1, "%s:%d:", path, line1);
    snprintf(w2, sizeof w2, "%s:%d:", path, line2);
    const char *at1 = strstr(err.msg, w1), *at2 = strstr(err.msg, w2);
    bool first = at1 && strstr(at1 + strlen(w1), reason1);
    bool second = at2 && strstr(at2 + strlen(w2), reason2);
    if (!first && !second)
        fail_msg("message '%s' names the wrong line for its reason (want line %d: %s, or "
                 "line %d: %s)",
                 err.msg, line1, reason1, line2, reason2);
}

static void error_line_matches_reason(void **state)
{
    (void)state;
    /* a syntax error on line 2, a bad value on line 4 */
    check_line_matches_reason("[snapshot]\n"
                              "not a key value line\n"
                              "keep = 1\n"
                              "keep = many\n",
                              2, "syntax", 4, "many");
    /* a broken section header on line 1; line 2 then falls in no section */
    check_line_matches_reason("[redis\nurl = redis://h\n", 1, "syntax", 2, "url");
}

/* ---- sg_config_set ---- */

static void set_scalars(void **state)
{
    (void)state;
    sg_config *c = new_config();
    sg_error err = {0};
    assert_int_equal(sg_config_set(c, "snapshot", "keep", "7", false, &err), 0);
    assert_int_equal(c->keep, 7);
    assert_int_equal(sg_config_set(c, "snapshot", "max_age", "2h", false, &err), 0);
    assert_int_equal(c->max_age_s, 7200);
    assert_int_equal(sg_config_set(c, "store", "keep_events", "0", false, &err), 0);
    assert_int_equal(c->keep_events_s, 0);
    assert_int_equal(sg_config_set(c, "store", "keep_events", "90d", false, &err), 0);
    assert_int_equal(c->keep_events_s, 90 * 86400);
    assert_int_equal(sg_config_set(c, "store", "synchronous", "FULL", false, &err), 0);
    assert_int_equal(c->synchronous, SG_SYNC_FULL);
    assert_int_equal(sg_config_set(c, "profile", "name", "igor", false, &err), 0);
    assert_int_equal(c->profile, SG_PROFILE_IGOR);
    assert_int_equal(sg_config_set(c, "redis", "url", "unix:///tmp/r.sock?db=3", false, &err), 0);
    assert_string_equal(c->redis_url, "unix:///tmp/r.sock?db=3");

    /* a bad value leaves the old one */
    assert_int_equal(sg_config_set(c, "snapshot", "keep", "x", false, &err), SG_EUSAGE);
    assert_int_equal(c->keep, 7);
    assert_int_equal(sg_config_set(c, "redis", "url", "http://x", false, &err), SG_EUSAGE);
    assert_string_equal(c->redis_url, "unix:///tmp/r.sock?db=3");
    assert_int_equal(sg_config_set(c, "store", "synchronous", "off", false, &err), SG_EUSAGE);
    assert_int_equal(c->synchronous, SG_SYNC_FULL);
    assert_int_equal(sg_config_set(c, "profile", "prefix", "", false, &err), SG_EUSAGE);
    assert_string_equal(c->prefix, "igor");

    assert_int_equal(sg_config_set(c, "nosuch", "keep", "1", false, &err), SG_EUSAGE);
    assert_non_null(strstr(err.msg, "nosuch"));
    assert_int_equal(sg_config_set(c, "snapshot", "nosuch", "1", false, &err), SG_EUSAGE);
    assert_non_null(strstr(err.msg, "nosuch"));
}

static void set_lists(void **state)
{
    (void)state;
    sg_config *c = new_config();
    sg_error err = {0};
    assert_int_equal(sg_config_set(c, "flush", "protect", "extra:*", true, &err), 0);
    ASSERT_LIST(&c->protect, "session:*", "queue:*", "workflow:*", "lock:*", "rate:*", "extra:*");
    assert_int_equal(sg_config_set(c, "flush", "protect", "a:*, b:*", false, &err), 0);
    ASSERT_LIST(&c->protect, "a:*", "b:*");
    assert_int_equal(sg_config_set(c, "snapshot", "match", "x:* y:*", true, &err), 0);
    assert_int_equal(sg_config_set(c, "snapshot", "match", "z:*", true, &err), 0);
    ASSERT_LIST(&c->match, "x:*", "y:*", "z:*");
    assert_int_equal(sg_config_set(c, "snapshot", "match", ",, w:*\t,", false, &err), 0);
    ASSERT_LIST(&c->match, "w:*");
}

/* ---- flags ---- */

static void flag_mapping(void **state)
{
    (void)state;
    const char *section = NULL, *key = NULL;
    bool is_list = true;
    assert_true(sg_config_flag("keep", &section, &key, &is_list));
    assert_string_equal(section, "snapshot");
    assert_string_equal(key, "keep");
    assert_false(is_list);

    assert_true(sg_config_flag("protect", &section, &key, &is_list));
    assert_string_equal(section, "flush");
    assert_string_equal(key, "protect");
    assert_true(is_list);

    assert_true(sg_config_flag("match", &section, &key, &is_list));
    assert_true(is_list);

    static const struct {
        const char *flag, *section, *key;
    } named[] = {
        {"redis", "redis", "url"},
        {"connect-timeout", "redis", "connect_timeout"},
        {"db", "store", "path"},
        {"profile", "profile", "name"},
        {"scan-count", "snapshot", "scan_count"},
        {"max-age", "snapshot", "max_age"},
        {"keep-events", "store", "keep_events"},
    };
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        assert_true(sg_config_flag(named[i].flag, &section, &key, &is_list));
        assert_string_equal(section, named[i].section);
        assert_string_equal(key, named[i].key);
        assert_false(is_list);
    }

    section = key = "unchanged";
    assert_false(sg_config_flag("nonexistent", &section, &key, &is_list));
    assert_false(sg_config_flag("", &section, &key, &is_list));
    assert_false(sg_config_flag("max_age", &section, &key, &is_list)); /* keys are not flags */
    assert_string_equal(section, "unchanged");
}

static void flag_at_table(void **state)
{
    (void)state;
    size_t n = 0;
    const char *flags[128], *sections[128], *keys[128];
    for (const char *f; (f = sg_config_flag_at(n)) != NULL; n++) {
        assert_true(n < 128);
        bool is_list;
        /* every flag maps back to a config key */
        assert_true(sg_config_flag(f, &sections[n], &keys[n], &is_list));
        flags[n] = f;
        /* the flags that take no value are TLS's two, as redis-cli names them */
        bool is_switch = !strcmp(f, "tls") || !strcmp(f, "insecure");
        assert_int_equal(sg_config_flag_is_switch(n), is_switch);
        for (size_t j = 0; j < n; j++) {
            assert_true(strcmp(flags[j], f) != 0); /* each flag once */
            assert_true(strcmp(sections[j], sections[n]) || strcmp(keys[j], keys[n]));
        }
        /* and the key is one sg_config_set knows: a failure is about the value */
        sg_config *c = new_config();
        sg_error err = {0};
        if (sg_config_set(c, sections[n], keys[n], "no-such-value-!", false, &err)) {
            assert_null(strstr(err.msg, "unknown key"));
            assert_null(strstr(err.msg, "unknown section"));
        }
    }
    /* the table is walked to its end: flags of every section are there */
    static const char *const expected[] = {
        "redis",      "db",           "profile", "keep",           "protect",  "listen",
        "downstream", "max-inflight", "admin",   "guard-duration", "on-storm", "log-format"};
    for (size_t e = 0; e < sizeof expected / sizeof expected[0]; e++) {
        bool found = false;
        for (size_t j = 0; j < n; j++)
            found |= !strcmp(flags[j], expected[e]);
        assert_true(found);
    }
    assert_null(sg_config_flag_at(n));
    assert_null(sg_config_flag_at(n + 1000));
}

/* ---- dump ---- */

static char *dump(const sg_config *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    sg_config_dump(c, f);
    assert_int_equal(fclose(f), 0);
    return buf;
}

static void dump_hides_password(void **state)
{
    (void)state;
    sg_config *c = new_config();
    sg_error err = {0};
    assert_int_equal(
        sg_config_set(c, "redis", "url", "redis://admin:" SECRET "@10.0.0.5:6380/2", false, &err),
        0);
    assert_int_equal(sg_config_set(c, "snapshot", "keep", "3", false, &err), 0);
    char *out = dump(c);
    if (strstr(out, SECRET))
        fail_msg("dump leaks the password:\n%s", out);
    assert_non_null(strstr(out, "[redis]\n"));
    assert_non_null(strstr(out, "url = redis://admin@10.0.0.5:6380/2\n"));
    assert_non_null(strstr(out, "[snapshot]\n"));
    assert_non_null(strstr(out, "keep = 3\n"));
    assert_non_null(strstr(out, "protect = session:* queue:* workflow:* lock:* rate:*\n"));
    assert_non_null(strstr(out, "synchronous = normal\n"));
    assert_non_null(strstr(out, "name = none\n"));
    free(out);

    /* a password given percent-encoded is hidden too */
    assert_int_equal(sg_config_set(c, "redis", "url", "redis://:" SECRET "%40x@h", false, &err), 0);
    out = dump(c);
    assert_null(strstr(out, SECRET));
    assert_non_null(strstr(out, "url = redis://h:6379/0\n"));
    free(out);
}

/* [flush] announce: a yes/no key; a bad value names both and keeps the old one. */
static void bool_key(void **state)
{
    (void)state;
    sg_config *c = new_config();
    sg_error err = {0};
    static const char *const no[] = {"no", "NO", "false", "off", "0"};
    static const char *const yes[] = {"yes", "True", "on", "1"};
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        assert_int_equal(sg_config_set(c, "flush", "announce", "yes", false, &err), 0);
        assert_int_equal(sg_config_set(c, "flush", "announce", no[i], false, &err), 0);
        assert_false(c->flush_announce);
    }
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        assert_int_equal(sg_config_set(c, "flush", "announce", yes[i], false, &err), 0);
        assert_true(c->flush_announce);
    }
    assert_int_equal(sg_config_set(c, "flush", "announce", "maybe", false, &err), SG_EUSAGE);
    assert_non_null(strstr(err.msg, "[flush] announce"));
    assert_non_null(strstr(err.msg, "yes or no"));
    assert_true(c->flush_announce);
    assert_int_equal(sg_config_set(c, "flush", "announce", "", false, &err), SG_EUSAGE);

    const char *section, *key;
    bool is_list;
    assert_true(sg_config_flag("announce", &section, &key, &is_list));
    assert_string_equal(section, "flush");
    assert_string_equal(key, "announce");
    assert_false(is_list);

    assert_int_equal(sg_config_set(c, "flush", "announce", "no", false, &err), 0);
    char *out = dump(c);
    assert_non_null(strstr(out, "announce = no\n"));
    const char *path = write_ini(out);
    free(out);
    sg_config *b = new_config();
    assert_int_equal(sg_config_load_file(b, path, &err), 0);
    assert_false(b->flush_announce);
}

/* The dump is a config file: loaded again it gives the same settings
 * (minus the password). */
static void dump_roundtrips(void **state)
{
    (void)state;
    sg_config *a = new_config(), *b = new_config();
    sg_error err = {0};
    assert_int_equal(sg_config_set(a, "redis", "url", "redis://u:" SECRET "@h:7000/4", false, &err),
                     0);
    assert_int_equal(sg_config_set(a, "redis", "connect_timeout", "1234", false, &err), 0);
    assert_int_equal(sg_config_set(a, "store", "path", "/tmp/x.db", false, &err), 0);
    assert_int_equal(sg_config_set(a, "store", "synchronous", "full", false, &err), 0);
    assert_int_equal(sg_config_set(a, "profile", "name", "igor", false, &err), 0);
    assert_int_equal(sg_config_set(a, "profile", "prefix", "spin", false, &err), 0);
    assert_int_equal(sg_config_set(a, "snapshot", "match", "m1:* m2:*", false, &err), 0);
    assert_int_equal(sg_config_set(a, "snapshot", "scan_count", "2000", false, &err), 0);
    assert_int_equal(sg_config_set(a, "snapshot", "keep", "0", false, &err), 0);
    assert_int_equal(sg_config_set(a, "snapshot", "max_age", "15m", false, &err), 0);
    assert_int_equal(sg_config_set(a, "flush", "protect", "p:*", false, &err), 0);
    char *out = dump(a);
    const char *path = write_ini(out);
    free(out);

    int rc = sg_config_load_file(b, path, &err);
    if (rc)
        fail_msg("reloading the dump: %d %s", rc, err.msg);
    assert_string_equal(b->redis_url, "redis://u@h:7000/4");
    assert_int_equal(b->connect_timeout_ms, 1234);
    assert_string_equal(b->db_path, "/tmp/x.db");
    assert_int_equal(b->synchronous, SG_SYNC_FULL);
    assert_int_equal(b->profile, SG_PROFILE_IGOR);
    assert_string_equal(b->prefix, "spin");
    ASSERT_LIST(&b->match, "m1:*", "m2:*");
    assert_int_equal(b->scan_count, 2000);
    assert_int_equal(b->keep, 0);
    assert_int_equal(b->max_age_s, 900);
    ASSERT_LIST(&b->protect, "p:*");
}

/* A value or list item the file gave starting with ; or # (no whitespace
 * before it, so no comment) comes back from the dump as it was: the
 * fuzzer's find, where "match =#a:*" dumped as "match = #a:*", a comment. */
static void dump_roundtrips_comment_chars(void **state)
{
    (void)state;
    sg_config *a = new_config(), *b = new_config();
    sg_error err = {0};
    static const char text[] = "[redis]\ncanary =#x\n[snapshot]\nmatch =;a:* b:*,#c ; note\n";
    assert_int_equal(sg_config_load_text(a, "a.ini", text, sizeof text - 1, &err), 0);
    assert_string_equal(a->canary, "#x");
    ASSERT_LIST(&a->match, ";a:*", "b:*", "#c");
    char *out = dump(a);
    int rc = sg_config_load_text(b, "dump.ini", out, strlen(out), &err);
    if (rc)
        fail_msg("reloading the dump: %d %s\n%s", rc, err.msg, out);
    free(out);
    assert_string_equal(b->canary, "#x");
    ASSERT_LIST(&b->match, ";a:*", "b:*", "#c");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(defaults, cleanup),
        cmocka_unit_test_teardown(load_all_keys, cleanup),
        cmocka_unit_test_teardown(load_partial_keeps_defaults, cleanup),
        cmocka_unit_test_teardown(load_lists, cleanup),
        cmocka_unit_test_teardown(load_long_line, cleanup),
        cmocka_unit_test_teardown(load_missing_file, cleanup),
        cmocka_unit_test_teardown(load_text, cleanup),
        cmocka_unit_test_teardown(error_unknown_key, cleanup),
        cmocka_unit_test_teardown(error_unknown_section, cleanup),
        cmocka_unit_test_teardown(error_bad_values, cleanup),
        cmocka_unit_test_teardown(load_guard_and_storm, cleanup),
        cmocka_unit_test_teardown(error_bad_url, cleanup),
        cmocka_unit_test_teardown(error_syntax, cleanup),
        cmocka_unit_test_teardown(error_line_matches_reason, cleanup),
        cmocka_unit_test_teardown(set_scalars, cleanup),
        cmocka_unit_test_teardown(set_lists, cleanup),
        cmocka_unit_test_teardown(flag_mapping, cleanup),
        cmocka_unit_test_teardown(flag_at_table, cleanup),
        cmocka_unit_test_teardown(dump_hides_password, cleanup),
        cmocka_unit_test_teardown(dump_roundtrips, cleanup),
        cmocka_unit_test_teardown(dump_roundtrips_comment_chars, cleanup),
        cmocka_unit_test_teardown(bool_key, cleanup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
