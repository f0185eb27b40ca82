/* Tests event.h: Igor, Jenkins Notification and generic build events
 * (DOMAIN.md section 3), pass-through of everything else, invalid JSON on and
 * off the build path, absurd fields, JSON pointers. Every case is parsed by
 * both readers (the scanner and jansson's tree), which must agree. Every
 * parse result is released with sg_event_close so AddressSanitizer catches
 * leaks. */
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
#include "stormguard/gate/event.h"
#include "stormguard/base/util.h"

#define TS "1526030000000"
#define TS_MS INT64_C(1526030000000)

/* The Igor Jenkins build event of DOMAIN.md section 3, verbatim. */
static const char IGOR_JENKINS[] =
    "{\"details\": {\"type\": \"build\", \"source\": \"igor\", \"created\": \"1427237764257\"},\n"
    " \"content\": {\"master\": \"jenkins-prod\",\n"
    "             \"project\": {\"name\": \"team-a/service-17\",\n"
    "                         \"lastBuild\": {\"number\": 4242, \"result\": \"SUCCESS\",\n"
    "                                       \"building\": false,\n"
    "                                       \"timestamp\": \"1526030000000\",\n"
    "                                       \"duration\": 93000,\n"
    "                                       \"url\": \"https://jenkins/job/service-17/4242/\"}}}}";

/* ---- helpers ---- */

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

/* sg_event_parse (which reads most bodies without jansson's tree) and
 * sg_event_parse_tree must agree on everything: result, error, event. */
static int parse_both(const char *body, size_t len, bool build_path, const sg_event_config *cfg,
                      sg_event *ev, sg_error *err)
{
    sg_event tree;
    sg_error tree_err;
    memset(ev, 0x5a, sizeof *ev);
    memset(err, 0, sizeof *err);
    memset(&tree_err, 0, sizeof tree_err);
    int rc = sg_event_parse(body, len, build_path, cfg, ev, err);
    int tree_rc = sg_event_parse_tree(body, len, build_path, cfg, &tree, &tree_err);
    if (rc != tree_rc || (rc && strcmp(err->msg, tree_err.msg)) || ev->type != tree.type ||
        !same_str(ev->shape, tree.shape) || !same_str(ev->source, tree.source) ||
        !same_str(ev->job, tree.job) || ev->number != tree.number ||
        ev->build_ts != tree.build_ts || ev->ci_number_cursor != tree.ci_number_cursor ||
        !same_str(ev->tag, tree.tag) || !same_str(ev->digest, tree.digest) ||
        !same_str(ev->registry, tree.registry))
        fail_msg("the scanner and jansson disagree on %.*s: rc %d/%d (%s / %s), job %s/%s, "
                 "number %lld/%lld",
                 (int)len, body, rc, tree_rc, err->msg, tree_err.msg, ev->job ? ev->job : "-",
                 tree.job ? tree.job : "-", (long long)ev->number, (long long)tree.number);
    sg_event_close(&tree);
    return rc;
}

/* Parses a NUL-terminated body; the event is poisoned first so that fields
 * the parser forgets to set show up. */
static int parse(const char *body, bool build_path, const sg_event_config *cfg, sg_event *ev,
                 sg_error *err)
{
    return parse_both(body, strlen(body), build_path, cfg, ev, err);
}

static void check_build(const sg_event *ev, const char *shape, const char *source, const char *job,
                        int64_t number, int64_t ts, bool ci)
{
    if (ev->type != SG_EVENT_BUILD)
        fail_msg("type %d, want SG_EVENT_BUILD", (int)ev->type);
    assert_non_null(ev->shape);
    assert_string_equal(ev->shape, shape);
    assert_non_null(ev->source);
    assert_string_equal(ev->source, source);
    assert_non_null(ev->job);
    assert_string_equal(ev->job, job);
    if (ev->number != number)
        fail_msg("number %lld, want %lld", (long long)ev->number, (long long)number);
    if (ev->build_ts != ts)
        fail_msg("build_ts %lld, want %lld", (long long)ev->build_ts, (long long)ts);
    if (ev->ci_number_cursor != ci)
        fail_msg("ci_number_cursor %d, want %d", ev->ci_number_cursor, ci);
}

/* Parses body expecting success and a build event. */
static void expect_build(const char *body, const sg_event_config *cfg, const char *shape,
                         const char *source, const char *job, int64_t number, int64_t ts, bool ci)
{
    sg_event ev;
    sg_error err;
    int rc = parse(body, true, cfg, &ev, &err);
    if (rc != 0)
        fail_msg("parse(%s) = %d (%s), want 0", body, rc, err.msg);
    check_build(&ev, shape, source, job, number, ts, ci);
    sg_event_close(&ev);
}

/* Parses body expecting success and a pass-through event with no fields. */
static void expect_passthrough(const char *body, bool build_path, const sg_event_config *cfg)
{
    sg_event ev;
    sg_error err;
    int rc = parse(body, build_path, cfg, &ev, &err);
    if (rc != 0)
        fail_msg("parse(%s, build_path=%d) = %d (%s), want 0", body, build_path, rc, err.msg);
    if (ev.type != SG_EVENT_PASSTHROUGH)
        fail_msg("parse(%s): type %d, want SG_EVENT_PASSTHROUGH", body, (int)ev.type);
    assert_null(ev.source);
    assert_null(ev.job);
    assert_non_null(ev.shape);
    sg_event_close(&ev);
}

/* Parses body on the build path expecting SG_EINVAL; the message must hold
 * each of the NULL-terminated words. The event is left empty. */
static void expect_einval(const char *body, const sg_event_config *cfg, ...)
{
    sg_event ev;
    sg_error err;
    int rc = parse(body, true, cfg, &ev, &err);
    if (rc != SG_EINVAL)
        fail_msg("parse(%s) = %d, want SG_EINVAL", body, rc);
    if (!err.msg[0])
        fail_msg("parse(%s): empty error message", body);
    va_list ap;
    va_start(ap, cfg);
    for (const char *w; (w = va_arg(ap, const char *));)
        if (!strstr(err.msg, w))
            fail_msg("parse(%s): message '%s' does not mention '%s'", body, err.msg, w);
    va_end(ap);
    if (ev.type != SG_EVENT_PASSTHROUGH)
        fail_msg("parse(%s) failed but left type %d", body, (int)ev.type);
    assert_null(ev.source);
    assert_null(ev.job);
    sg_event_close(&ev);
}

/* An Igor build event with the given raw JSON values. */
static void igor_body(char *buf, size_t size, const char *master, const char *name,
                      const char *number, const char *building, const char *ts, const char *type)
{
    int n = snprintf(buf, size,
                     "{\"details\": {\"type\": \"build\", \"source\": \"igor\"},"
                     " \"content\": {\"master\": %s,%s%s%s"
                     " \"project\": {\"name\": %s, \"lastBuild\": {\"number\": %s,"
                     " \"result\": \"SUCCESS\", \"building\": %s, \"timestamp\": %s}}}}",
                     master, type ? " \"type\": " : "", type ? type : "", type ? "," : "", name,
                     number, building, ts);
    assert_true(n > 0 && (size_t)n < size);
}

/* A Jenkins Notification plugin event. */
/* A Notification plugin body. As the plugin does, "name" is the job's name
 * and "url" its job URL, job/<folder>/job/<name>/, made from name when name
 * is a non-empty JSON string. */
static void notification_body(char *buf, size_t size, const char *name, const char *phase,
                              const char *number, const char *ts)
{
    char url[256] = "";
    size_t nlen = strlen(name);
    if (nlen > 2 && name[0] == '"' && name[nlen - 1] == '"') {
        size_t at = 0;
        const char *p = name + 1, *end = name + nlen - 1;
        while (p < end) {
            const char *slash = memchr(p, '/', (size_t)(end - p));
            const char *stop = slash ? slash : end;
            at += (size_t)snprintf(url + at, sizeof url - at, "job/%.*s/", (int)(stop - p), p);
            p = slash ? slash + 1 : end;
        }
    }
    int n = snprintf(buf, size,
                     "{\"name\": %s, \"url\": \"%s\", \"build\": {\"full_url\":"
                     " \"http://jenkins/job/asgard/18/\", \"number\": %s, \"phase\": \"%s\","
                     " \"status\": \"SUCCESS\", \"url\": \"job/asgard/18/\", \"timestamp\": %s,"
                     " \"scm\": {\"branch\": \"origin/main\"}}}",
                     name, url, number, phase, ts);
    assert_true(n > 0 && (size_t)n < size);
}

/* ---- Igor ---- */

static void igor_jenkins_build(void **state)
{
    (void)state;
    expect_build(IGOR_JENKINS, NULL, "igor", "jenkins-prod", "team-a/service-17", 4242, TS_MS,
                 false);
    /* the same with a configuration that has no generic pointers */
    sg_event_config cfg = {.notification_source = "jenkins-x"};
    expect_build(IGOR_JENKINS, &cfg, "igor", "jenkins-prod", "team-a/service-17", 4242, TS_MS,
                 false);
}

static void igor_explicit_jenkins_type(void **state)
{
    (void)state;
    char body[1024];
    igor_body(body, sizeof body, "\"m\"", "\"job\"", "7", "false", "\"" TS "\"", "\"jenkins\"");
    expect_build(body, NULL, "igor", "m", "job", 7, TS_MS, false);
}

static void igor_travis_and_gitlab(void **state)
{
    (void)state;
    char body[1024];
    igor_body(body, sizeof body, "\"travis-ci\"", "\"org/repo\"", "311", "false", "\"" TS "\"",
              "\"travis\"");
    expect_build(body, NULL, "igor", "travis-ci", "org/repo", 311, TS_MS, true);
    igor_body(body, sizeof body, "\"gitlab\"", "\"group/proj\"", "12", "false", "\"" TS "\"",
              "\"gitlab\"");
    expect_build(body, NULL, "igor", "gitlab", "group/proj", 12, TS_MS, true);
}

static void igor_number_as_string(void **state)
{
    (void)state;
    char body[1024];
    igor_body(body, sizeof body, "\"m\"", "\"job\"", "\"4243\"", "false", "\"" TS "\"", NULL);
    expect_build(body, NULL, "igor", "m", "job", 4243, TS_MS, false);
}

static void igor_number_bounds(void **state)
{
    (void)state;
    char body[1024];
    igor_body(body, sizeof body, "\"m\"", "\"job\"", "1", "false", "\"" TS "\"", NULL);
    expect_build(body, NULL, "igor", "m", "job", 1, TS_MS, false);
    /* 2^53 is the largest allowed ("> 2^53" is absurd) */
    igor_body(body, sizeof body, "\"m\"", "\"job\"", "9007199254740992", "false", "\"" TS "\"",
              NULL);
    expect_build(body, NULL, "igor", "m", "job", INT64_C(9007199254740992), TS_MS, false);
}

static void igor_building_passes_through(void **state)
{
    (void)state;
    char body[1024];
    igor_body(body, sizeof body, "\"m\"", "\"job\"", "4243", "true", "\"" TS "\"", NULL);
    expect_passthrough(body, true, NULL);
    expect_passthrough(body, false, NULL);
    /* a running build is not judged, even with absurd fields */
    igor_body(body, sizeof body, "\"m\"", "\"job\"", "0", "true", "\"12\"", NULL);
    expect_passthrough(body, true, NULL);
}

/* ---- other Echo events ---- */

static void echo_git_event_passes_through(void **state)
{
    (void)state;
    const char *git = "{\"details\": {\"type\": \"git\", \"source\": \"github\","
                      " \"created\": \"1427237764257\"},"
                      " \"content\": {\"repoProject\": \"team-a\", \"slug\": \"service-17\","
                      " \"hash\": \"abc123\", \"branch\": \"main\"}}";
    expect_passthrough(git, true, NULL);
    expect_passthrough(git, false, NULL);
}

/* Igor's DockerMonitor.postEvent body (DockerEvent: details, content of
 * five fields; the artifact Echo drops), verbatim but for the names. */
static const char IGOR_DOCKER[] =
    "{\"details\": {\"type\": \"docker\", \"source\": \"igor\"},"
    " \"content\": {\"account\": \"dockerhub\", \"registry\": \"index.docker.io\","
    " \"repository\": \"team-a/service-17\", \"tag\": \"42\","
    " \"digest\": \"sha256:00\"},"
    " \"artifact\": {\"type\": \"docker\", \"name\": \"team-a/service-17\", \"version\": \"42\","
    " \"reference\": \"index.docker.io/team-a/service-17:42\", \"fileName\": "
    "\"team-a/service-17:42\","
    " \"metadata\": {\"registry\": \"index.docker.io\"}, \"decorated\": false}}";

static void expect_docker(const char *body, const char *account, const char *repo, const char *tag,
                          const char *digest, const char *registry)
{
    sg_event ev;
    sg_error err;
    int rc = parse(body, true, NULL, &ev, &err);
    if (rc != 0)
        fail_msg("parse(%s) = %d (%s), want 0", body, rc, err.msg);
    if (ev.type != SG_EVENT_DOCKER)
        fail_msg("parse(%s): type %d, want SG_EVENT_DOCKER", body, (int)ev.type);
    assert_string_equal(ev.shape, "igor-docker");
    assert_string_equal(ev.source, account);
    assert_string_equal(ev.job, repo);
    assert_string_equal(ev.tag, tag);
    if (!same_str(ev.digest, digest) || !same_str(ev.registry, registry))
        fail_msg("parse(%s): digest %s, registry %s", body, ev.digest ? ev.digest : "NULL",
                 ev.registry ? ev.registry : "NULL");
    assert_int_equal(ev.number, 0);
    sg_event_close(&ev);
}

/* A Docker tag event: the account as source, the repository as job, its tag
 * and digest; a null or absent digest (Igor read no manifest) is NULL;
 * unknown fields are ignored; details.type is compared without case, as
 * Echo does. */
static void igor_docker_event(void **state)
{
    (void)state;
    expect_docker(IGOR_DOCKER, "dockerhub", "team-a/service-17", "42", "sha256:00",
                  "index.docker.io");
    expect_docker("{\"details\":{\"type\":\"DOCKER\"},\"content\":{\"account\":\"a\","
                  "\"repository\":\"r\",\"tag\":\"t\",\"digest\":null,\"new\":[1,2]},"
                  "\"more\":{}}",
                  "a", "r", "t", NULL, NULL);
    expect_docker("{\"details\":{\"type\":\"docker\"},\"content\":{\"account\":\"a\","
                  "\"repository\":\"r\",\"tag\":\"t\"}}",
                  "a", "r", "t", NULL, NULL);
    /* a build event is still one */
    expect_build(IGOR_JENKINS, NULL, "igor", "jenkins-prod", "team-a/service-17", 4242,
                 1526030000000, false);
}

/* Echo starts nothing for a Docker event without a tag, an account or a
 * repository: passed through. One with an absurd name is refused as a
 * build event with one would be. */
static void igor_docker_bad_events(void **state)
{
    (void)state;
    expect_passthrough("{\"details\":{\"type\":\"docker\"},\"content\":{\"account\":"
                       "\"a\",\"repository\":\"r\",\"tag\":\"\"}}",
                       true, NULL);
    expect_passthrough("{\"details\":{\"type\":\"docker\"},\"content\":{\"account\":"
                       "\"a\",\"repository\":\"r\",\"tag\":null}}",
                       true, NULL);
    expect_passthrough("{\"details\":{\"type\":\"docker\"},\"content\":\"x\"}", true, NULL);
    expect_passthrough("{\"details\":{\"type\":\"docker\"},\"content\":{\"repository\":"
                       "\"r\",\"tag\":\"t\"}}",
                       true, NULL);
    expect_passthrough("{\"details\":{\"type\":\"docker\"},\"content\":{\"account\":\"a\","
                       "\"repository\":7,\"tag\":\"t\"}}",
                       true, NULL);
    char big[SG_EVENT_NAME_MAX + 200];
    int n = snprintf(big, sizeof big,
                     "{\"details\":{\"type\":\"docker\"},\"content\":{\"account\":\"a\","
                     "\"repository\":\"r\",\"tag\":\"");
    memset(big + n, 'x', SG_EVENT_NAME_MAX + 1);
    snprintf(big + n + SG_EVENT_NAME_MAX + 1, sizeof big - (size_t)n - SG_EVENT_NAME_MAX - 1,
             "\"}}");
    expect_einval(big, NULL, "Docker", "tag", "over the limit", NULL);
}

static void other_objects_pass_through(void **state)
{
    (void)state;
    expect_passthrough("{}", true, NULL);
    expect_passthrough("{\"details\": {\"type\": \"webhook\"}, \"content\": {}}", true, NULL);
    expect_passthrough("{\"name\": \"x\", \"build\": 3}", true, NULL);
}

/* ---- Jenkins Notification plugin ---- */

static void notification_phases(void **state)
{
    (void)state;
    char body[1024];
    static const char *const skipped[] = {"QUEUED", "STARTED"};
    for (size_t i = 0; i < 2; i++) {
        notification_body(body, sizeof body, "\"asgard\"", skipped[i], "18", TS);
        expect_passthrough(body, true, NULL);
    }
    static const char *const done[] = {"COMPLETED", "FINALIZED"};
    for (size_t i = 0; i < 2; i++) {
        notification_body(body, sizeof body, "\"asgard\"", done[i], "18", TS);
        expect_build(body, NULL, "jenkins-notification", "jenkins", "asgard", 18, TS_MS, false);
    }
}

/* The plugin names a folder job by its short name; the job URL holds the
 * full one, which is what Igor and the index use. */
static void notification_folder_job_from_url(void **state)
{
    (void)state;
    const char *body = "{\"name\": \"asgard\", \"url\": \"job/folder/job/asgard/\", "
                       "\"build\": {\"number\": 7, \"phase\": \"FINALIZED\", "
                       "\"timestamp\": " TS "}}";
    expect_build(body, NULL, "jenkins-notification", "jenkins", "folder/asgard", 7, TS_MS, false);
    /* without a job URL the name is all there is */
    const char *bare = "{\"name\": \"asgard\", \"build\": {\"number\": 7, "
                       "\"phase\": \"COMPLETED\"}}";
    expect_build(bare, NULL, "jenkins-notification", "jenkins", "asgard", 7, 0, false);
}

static void notification_source(void **state)
{
    (void)state;
    char body[1024];
    notification_body(body, sizeof body, "\"folder/asgard\"", "COMPLETED", "19", TS);
    sg_event_config none = {0};
    expect_build(body, &none, "jenkins-notification", "jenkins", "folder/asgard", 19, TS_MS, false);
    sg_event_config cfg = {.notification_source = "jenkins-prod"};
    expect_build(body, &cfg, "jenkins-notification", "jenkins-prod", "folder/asgard", 19, TS_MS,
                 false);
}

static void notification_phase_without_result_passes(void **state)
{
    (void)state;
    /* STARTED has no status yet and may carry no number: still pass-through */
    expect_passthrough("{\"name\": \"asgard\", \"build\": {\"phase\": \"STARTED\"}}", true, NULL);
    expect_passthrough("{\"name\": \"asgard\", \"build\": {\"phase\": \"QUEUED\", \"number\": 0}}",
                       true, NULL);
}

/* ---- generic ---- */

/* A generic config whose pointers are copied into buffers the test owns. */
typedef struct generic_cfg {
    char source[128], job[128], number[128], timestamp[128];
    sg_event_config cfg;
} generic_cfg;

static void generic_init(generic_cfg *g, const char *source, const char *job, const char *number,
                         const char *timestamp)
{
    memset(g, 0, sizeof *g);
    snprintf(g->source, sizeof g->source, "%s", source);
    snprintf(g->job, sizeof g->job, "%s", job);
    snprintf(g->number, sizeof g->number, "%s", number);
    g->cfg.generic.source = g->source;
    g->cfg.generic.job = g->job;
    g->cfg.generic.number = g->number;
    if (timestamp) {
        snprintf(g->timestamp, sizeof g->timestamp, "%s", timestamp);
        g->cfg.generic.timestamp = g->timestamp;
    }
}

/* keys with '/' and '~', arrays, a number given as a numeric string */
static const char GENERIC_BODY[] =
    "{\"hook\": {\"a/b\": {\"m~n\": [{\"account\": \"registry-1\"}, {\"image\": \"team/img\"}]}},"
    " \"x~1y\": {\"tag\": \"57\"}, \"times\": [0, 1526030000000]}";

static void generic_pointers(void **state)
{
    (void)state;
    generic_cfg g;
    generic_init(&g, "/hook/a~1b/m~0n/0/account", "/hook/a~1b/m~0n/1/image", "/x~01y/tag",
                 "/times/1");
    assert_true(sg_json_pointer_valid(g.source));
    assert_true(sg_json_pointer_valid(g.number));
    expect_build(GENERIC_BODY, &g.cfg, "generic", "registry-1", "team/img", 57, TS_MS, false);
}

static void generic_without_timestamp(void **state)
{
    (void)state;
    generic_cfg g;
    generic_init(&g, "/s", "/j", "/n", NULL);
    expect_build("{\"s\": \"src\", \"j\": \"job\", \"n\": 3}", &g.cfg, "generic", "src", "job", 3,
                 0, false);
    /* a timestamp pointer that does not resolve: start unknown */
    generic_init(&g, "/s", "/j", "/n", "/t");
    expect_build("{\"s\": \"src\", \"j\": \"job\", \"n\": 3}", &g.cfg, "generic", "src", "job", 3,
                 0, false);
}

static void generic_unresolved_passes_through(void **state)
{
    (void)state;
    generic_cfg g;
    generic_init(&g, "/hook/a~1b/m~0n/0/account", "/hook/a~1b/m~0n/1/image", "/x~01y/tag",
                 "/times/1");
    /* each pointer in turn missing */
    expect_passthrough("{\"hook\": {\"a/b\": {\"m~n\": [{\"account\": \"r\"}]}},"
                       " \"x~1y\": {\"tag\": \"57\"}}",
                       true, &g.cfg); /* array index 1 out of range */
    expect_passthrough("{\"hook\": {\"a/b\": {\"m~n\": [{}, {\"image\": \"i\"}]}},"
                       " \"x~1y\": {\"tag\": \"57\"}}",
                       true, &g.cfg); /* no account */
    expect_passthrough(
        "{\"hook\": {\"a/b\": {\"m~n\": [{\"account\": \"r\"}, {\"image\": \"i\"}]}},"
        " \"x/y\": {\"tag\": \"57\"}}",
        true, &g.cfg); /* "~01" is "~1", not "/" */
    expect_passthrough(
        "{\"hook\": {\"a~1b\": {\"m~n\": [{\"account\": \"r\"}, {\"image\": \"i\"}]}},"
        " \"x~1y\": {\"tag\": \"57\"}}",
        true, &g.cfg); /* "~1" is "/" */
    expect_passthrough("{\"hook\": {\"a/b\": {\"m~n\": {\"0\": 1}}}}", true, &g.cfg);
    expect_passthrough("{\"hook\": \"scalar\"}", true, &g.cfg);
    expect_passthrough("{}", true, &g.cfg);
    expect_passthrough("{\"other\": 1}", false, &g.cfg);
}

static void generic_absurd_number(void **state)
{
    (void)state;
    generic_cfg g;
    generic_init(&g, "/s", "/j", "/n", "/t");
    expect_einval("{\"s\": \"src\", \"j\": \"gjob\", \"n\": 0}", &g.cfg, "gjob", (char *)NULL);
    expect_einval("{\"s\": \"src\", \"j\": \"gjob\", \"n\": \"x1\"}", &g.cfg, "gjob", (char *)NULL);
    expect_einval("{\"s\": \"src\", \"j\": \"gjob\", \"n\": 4, \"t\": \"12\"}", &g.cfg, "gjob",
                  (char *)NULL);
    expect_einval("{\"s\": \"\", \"j\": \"gjob\", \"n\": 4}", &g.cfg, (char *)NULL);
    expect_einval("{\"s\": \"src\", \"j\": \"\", \"n\": 4}", &g.cfg, (char *)NULL);
}

/* ---- invalid JSON ---- */

/* The first integer after word in msg, or -1. */
static long number_after(const char *msg, const char *word)
{
    const char *p = strstr(msg, word);
    if (!p)
        return -1;
    p += strlen(word);
    while (*p && (*p < '0' || *p > '9'))
        p++;
    return *p ? strtol(p, NULL, 10) : -1;
}

static void invalid_json_on_build_path(void **state)
{
    (void)state;
    expect_einval("{\"details\": ", NULL, "line", "column", (char *)NULL);
    expect_einval("not json", NULL, "line", "column", (char *)NULL);
    expect_einval("{\"a\": 1,}", NULL, "line", "column", (char *)NULL);
    expect_einval("{\"a\": 1} trailing", NULL, "line", "column", (char *)NULL);

    /* the position is the parser's: the error is on line 3 */
    sg_event ev;
    sg_error err;
    assert_int_equal(parse("{\n\"a\": 1,\n\"b\": ]\n}", true, NULL, &ev, &err), SG_EINVAL);
    if (number_after(err.msg, "line") != 3)
        fail_msg("message '%s' does not give line 3", err.msg);
    if (number_after(err.msg, "column") < 1)
        fail_msg("message '%s' has no column", err.msg);
    sg_event_close(&ev);
}

static void invalid_json_elsewhere_passes_through(void **state)
{
    (void)state;
    expect_passthrough("{\"details\": ", false, NULL);
    expect_passthrough("not json", false, NULL);
    expect_passthrough("\xff\xfe", false, NULL);
}

static void empty_body(void **state)
{
    (void)state;
    expect_einval("", NULL, "line", "column", (char *)NULL);
    expect_einval("   \n", NULL, "line", "column", (char *)NULL);
    expect_passthrough("", false, NULL);
}

static void duplicate_keys(void **state)
{
    (void)state;
    /* which "number" would Echo use? ambiguous: rejected on the build path */
    char body[1024];
    int n = snprintf(body, sizeof body,
                     "{\"details\": {\"type\": \"build\"}, \"content\": {\"master\": \"m\","
                     " \"project\": {\"name\": \"job\", \"lastBuild\": {\"number\": 5,"
                     " \"number\": 6, \"building\": false, \"timestamp\": \"%s\"}}}}",
                     TS);
    assert_true(n > 0 && (size_t)n < sizeof body);
    expect_einval(body, NULL, (char *)NULL);
    expect_passthrough(body, false, NULL);
    expect_einval("{\"name\": \"a\", \"name\": \"b\", \"build\": {\"phase\": \"COMPLETED\","
                  " \"number\": 3, \"timestamp\": " TS "}}",
                  NULL, (char *)NULL);
}

static void array_root_passes_through(void **state)
{
    (void)state;
    char body[2048];
    int n = snprintf(body, sizeof body, "[%s]", IGOR_JENKINS);
    assert_true(n > 0 && (size_t)n < sizeof body);
    expect_passthrough(body, true, NULL);
    expect_passthrough(body, false, NULL);
    expect_passthrough("[]", true, NULL);
}

/* RFC 8259 JSON text may be any value; a scalar is valid JSON, not a build,
 * so it passes through like an array ("anything else passes through"). */
static void scalar_root_passes_through(void **state)
{
    (void)state;
    expect_passthrough("42", true, NULL);
    expect_passthrough("\"build\"", true, NULL);
    expect_passthrough("null", true, NULL);
}

static void body_length_is_respected(void **state)
{
    (void)state;
    /* only the first len bytes are the body: what follows is not parsed */
    char buf[2048];
    int n = snprintf(buf, sizeof buf, "%s garbage {", IGOR_JENKINS);
    assert_true(n > 0 && (size_t)n < sizeof buf);
    sg_event ev;
    sg_error err = {0};
    int rc = sg_event_parse(buf, strlen(IGOR_JENKINS), true, NULL, &ev, &err);
    if (rc != 0)
        fail_msg("parse = %d (%s), want 0", rc, err.msg);
    check_build(&ev, "igor", "jenkins-prod", "team-a/service-17", 4242, TS_MS, false);
    sg_event_close(&ev);
    /* and a truncated body is invalid */
    rc = sg_event_parse(IGOR_JENKINS, strlen(IGOR_JENKINS) - 1, true, NULL, &ev, &err);
    assert_int_equal(rc, SG_EINVAL);
    sg_event_close(&ev);
}

/* ---- absurd fields ---- */

static void absurd_numbers(void **state)
{
    (void)state;
    static const char *const numbers[] = {
        "0",
        "-1",
        "9007199254740993",
        "1.5",
        "\"abc\"",
        "\"0\"",
        "\"-3\"",
        "\"9007199254740993\"",
        "\"\"",
        "null",
        "true",
        "{}",
        "[1]",
        "1e300",
        "-0.5",
    };
    char body[1024];
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        igor_body(body, sizeof body, "\"m\"", "\"team/absurd-job\"", numbers[i], "false",
                  "\"" TS "\"", NULL);
        expect_einval(body, NULL, "team/absurd-job", (char *)NULL);
    }
    /* no number at all */
    expect_einval("{\"details\": {\"type\": \"build\"}, \"content\": {\"master\": \"m\","
                  " \"project\": {\"name\": \"no-number\", \"lastBuild\": {\"building\": false,"
                  " \"timestamp\": \"" TS "\"}}}}",
                  NULL, "no-number", (char *)NULL);
    /* the same on Notification events */
    notification_body(body, sizeof body, "\"asgard\"", "COMPLETED", "0", TS);
    expect_einval(body, NULL, "asgard", (char *)NULL);
    notification_body(body, sizeof body, "\"asgard\"", "FINALIZED", "9007199254740993", TS);
    expect_einval(body, NULL, "asgard", (char *)NULL);
}

static void absurd_timestamps(void **state)
{
    (void)state;
    static const char *const stamps[] = {
        "\"12\"", "\"99999999999999999\"", "\"abc\"", "\"\"", "\"-1526030000000\"", "12",
        "-1",     "99999999999999999",     "true",    "{}",
    };
    char body[1024];
    for (size_t i = 0; i < sizeof stamps / sizeof stamps[0]; i++) {
        igor_body(body, sizeof body, "\"m\"", "\"ts-job\"", "5", "false", stamps[i], NULL);
        expect_einval(body, NULL, "ts-job", (char *)NULL);
    }
    /* seconds instead of milliseconds */
    notification_body(body, sizeof body, "\"asgard\"", "COMPLETED", "18", "1526030000");
    expect_einval(body, NULL, "asgard", (char *)NULL);
}

static void empty_source_or_job(void **state)
{
    (void)state;
    char body[1024];
    igor_body(body, sizeof body, "\"\"", "\"job\"", "5", "false", "\"" TS "\"", NULL);
    expect_einval(body, NULL, (char *)NULL);
    igor_body(body, sizeof body, "\"m\"", "\"\"", "5", "false", "\"" TS "\"", NULL);
    expect_einval(body, NULL, (char *)NULL);
    igor_body(body, sizeof body, "null", "\"job\"", "5", "false", "\"" TS "\"", NULL);
    expect_einval(body, NULL, (char *)NULL);
    igor_body(body, sizeof body, "\"m\"", "7", "5", "false", "\"" TS "\"", NULL);
    expect_einval(body, NULL, (char *)NULL);
    notification_body(body, sizeof body, "\"\"", "COMPLETED", "18", TS);
    expect_einval(body, NULL, (char *)NULL);
}

/* ---- pointers and close ---- */

static void json_pointer_valid(void **state)
{
    (void)state;
    assert_true(sg_json_pointer_valid(""));
    assert_true(sg_json_pointer_valid("/"));
    assert_true(sg_json_pointer_valid("/a"));
    assert_true(sg_json_pointer_valid("/a/b~1c"));
    assert_true(sg_json_pointer_valid("/~0"));
    assert_true(sg_json_pointer_valid("/~01"));
    assert_true(sg_json_pointer_valid("/a/0/b"));
    assert_true(sg_json_pointer_valid("//"));
    assert_false(sg_json_pointer_valid(NULL));
    assert_false(sg_json_pointer_valid("a"));
    assert_false(sg_json_pointer_valid("a/b"));
    assert_false(sg_json_pointer_valid("/a~"));
    assert_false(sg_json_pointer_valid("/a~2"));
    assert_false(sg_json_pointer_valid("/~/a"));
    assert_false(sg_json_pointer_valid("/a/~x"));
}

static void close_is_idempotent(void **state)
{
    (void)state;
    sg_event ev;
    sg_error err;
    assert_int_equal(parse(IGOR_JENKINS, true, NULL, &ev, &err), 0);
    sg_event_close(&ev);
    assert_null(ev.source);
    assert_null(ev.job);
    sg_event_close(&ev);
    sg_event zero = {0};
    sg_event_close(&zero);
}

/* Thousands of bodies near valid ones: every truncation, and every byte
 * replaced by one that matters to a JSON reader, of an Igor event (escapes,
 * numbers, UTF-8 and a duplicate key included) and a Notification event. The
 * scanner must give what jansson gives, or leave the body to it. */
static void scanner_agrees_with_jansson(void **state)
{
    (void)state;
    static const char *const bases[] = {
        IGOR_JENKINS,
        IGOR_DOCKER,
        "{\"details\":{\"type\":\"build\"},\"content\":{\"master\":\"m\u00e9\",\"type\":"
        "\"travis\",\"project\":{\"name\":\"a/b\",\"lastBuild\":{\"number\":\"12\","
        "\"building\":false,\"timestamp\":1526030000000,\"x\":[1.5e3,-0,\"\\ud83d\\ude00\","
        "null,true,{}]}}}}",
        "{\"name\":\"svc\",\"url\":\"job/f/job/svc/\",\"build\":{\"phase\":\"COMPLETED\","
        "\"number\":7,\"timestamp\":1526030000000,\"notes\":\"caf\xc3\xa9 \\n\"}}",
        "{\"details\":{\"type\":\"build\"},\"content\":{\"master\":\"m\",\"project\":"
        "{\"name\":\"j\",\"lastBuild\":{\"number\":3,\"number\":4}}}}",
    };
    static const char swaps[] = "\"\\{}[],:0-1eE.+ tu/nx\x80\xc3\xe0\xff";
    sg_event_config cfg = {.notification_source = "ci"};
    char buf[1024];
    long cases = 0;
    for (size_t b = 0; b < sizeof bases / sizeof *bases; b++) {
        size_t n = strlen(bases[b]);
        assert_true(n < sizeof buf);
        for (size_t i = 0; i <= n; i++) {
            sg_event ev;
            sg_error err;
            for (int path = 0; path < 2; path++) {
                parse_both(bases[b], i, path, &cfg, &ev, &err); /* truncated */
                sg_event_close(&ev);
                cases++;
            }
            if (i == n)
                break;
            for (size_t k = 0; k < sizeof swaps - 1; k++) {
                memcpy(buf, bases[b], n);
                buf[i] = swaps[k];
                parse_both(buf, n, true, &cfg, &ev, &err);
                sg_event_close(&ev);
                cases++;
            }
            memcpy(buf, bases[b], i); /* a byte deleted */
            memcpy(buf + i, bases[b] + i + 1, n - i - 1);
            parse_both(buf, n - 1, true, &cfg, &ev, &err);
            sg_event_close(&ev);
            cases++;
        }
    }
    assert_true(cases > 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(igor_jenkins_build),
        cmocka_unit_test(igor_explicit_jenkins_type),
        cmocka_unit_test(igor_travis_and_gitlab),
        cmocka_unit_test(igor_number_as_string),
        cmocka_unit_test(igor_number_bounds),
        cmocka_unit_test(igor_building_passes_through),
        cmocka_unit_test(echo_git_event_passes_through),
        cmocka_unit_test(igor_docker_event),
        cmocka_unit_test(igor_docker_bad_events),
        cmocka_unit_test(other_objects_pass_through),
        cmocka_unit_test(notification_phases),
        cmocka_unit_test(notification_source),
        cmocka_unit_test(notification_folder_job_from_url),
        cmocka_unit_test(notification_phase_without_result_passes),
        cmocka_unit_test(generic_pointers),
        cmocka_unit_test(generic_without_timestamp),
        cmocka_unit_test(generic_unresolved_passes_through),
        cmocka_unit_test(generic_absurd_number),
        cmocka_unit_test(invalid_json_on_build_path),
        cmocka_unit_test(invalid_json_elsewhere_passes_through),
        cmocka_unit_test(empty_body),
        cmocka_unit_test(duplicate_keys),
        cmocka_unit_test(array_root_passes_through),
        cmocka_unit_test(scalar_root_passes_through),
        cmocka_unit_test(body_length_is_respected),
        cmocka_unit_test(absurd_numbers),
        cmocka_unit_test(absurd_timestamps),
        cmocka_unit_test(empty_source_or_job),
        cmocka_unit_test(json_pointer_valid),
        cmocka_unit_test(close_is_idempotent),
        cmocka_unit_test(scanner_agrees_with_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
