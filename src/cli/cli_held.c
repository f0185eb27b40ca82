/* stormguard held, release, drop: the gate's held queue (GET /v1/held,
 * POST /v1/release, POST /v1/drop). Release and drop name what they act on
 * with the same selector (--all, --source, --job), checked here before any
 * request: the daemon never releases or drops everything implicitly, and
 * neither does the CLI. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "stormguard/base/output.h"

/* ---- held ---------------------------------------------------------------- */

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "-";
}

static long long num(json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

/* Rows by source, then job, so one source's jobs read together. */
static int by_source_job(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    int c = strcmp(str(x, "source"), str(y, "source"));
    return c ? c : strcmp(str(x, "job"), str(y, "job"));
}

static void print_held(json_t *doc)
{
    json_t *jobs = json_object_get(doc, "jobs");
    size_t n = json_array_size(jobs);
    if (n == 0 && num(doc, "held") == 0) {
        printf("nothing held\n");
        return;
    }
    json_t **rows = sg_xcalloc(n ? n : 1, sizeof *rows);
    for (size_t i = 0; i < n; i++)
        rows[i] = json_array_get(jobs, i);
    qsort(rows, n, sizeof *rows, by_source_job);
    static const char *const head[] = {"SOURCE", "JOB", "HELD", "OLDEST", "NEWEST"};
    sg_table *t = sg_table_new(5, head, "llrrr");
    for (size_t i = 0; i < n; i++) {
        char count[24], oldest[24], newest[24];
        snprintf(count, sizeof count, "%lld", num(rows[i], "count"));
        /* 0: a Docker repository, whose tags have no numbers */
        long long lo = num(rows[i], "oldest"), hi = num(rows[i], "newest");
        snprintf(oldest, sizeof oldest, "%lld", lo);
        snprintf(newest, sizeof newest, "%lld", hi);
        if (!lo)
            snprintf(oldest, sizeof oldest, "-");
        if (!hi)
            snprintf(newest, sizeof newest, "-");
        const char *row[] = {str(rows[i], "source"), str(rows[i], "job"), count, oldest, newest};
        sg_table_row(t, row);
    }
    sg_table_print(t, stdout);
    sg_table_free(t);
    free(rows);
    long long held = num(doc, "held"), total = num(doc, "jobs_total");
    printf("%lld event%s held in %lld job%s", held, held == 1 ? "" : "s", total,
           total == 1 ? "" : "s");
    if ((long long)n < total)
        printf(" (shown: the %zu with the most; --limit N for more)", n);
    printf("\n");
}

static int on_held_opt(void *ud, int id, const char *arg, sg_error *err)
{
    (void)id;
    if (sg_parse_int64(arg, 1, 10000, ud))
        return sg_error_set(err, SG_EUSAGE, "--limit must be a number from 1 to 10000, not '%s'",
                            arg);
    return 0;
}

int sg_cmd_held(int argc, char **argv)
{
    static const sg_cli_opt opts[] = {
        {"limit", "N", 1, "list the N jobs with the most held events (1 to 10000; default 100)"},
        {NULL, NULL, 0, NULL},
    };
    int64_t limit = 100;
    sg_cli_spec spec = {
        .command = "held",
        .sections = "admin",
        .examples = "  stormguard held\n"
                    "  stormguard held --limit 500 --json",
        .usage = "[--limit N] [--admin ADDR:PORT] [--json]",
        .summary = "Lists the events the running gate holds, per source and job: how many, and\n"
                   "their oldest and newest build numbers, for the jobs with the most held\n"
                   "events, and the totals over all jobs. --json prints the /v1/held document\n"
                   "as is. Release them with 'stormguard release', discard them with\n"
                   "'stormguard drop'.",
        .opts = opts,
        .on_opt = on_held_opt,
        .ud = &limit,
    };
    sg_cli cli;
    int rc = sg_cli_parse(&cli, &spec, argc, argv);
    sg_buf raw = {0};
    json_t *doc = NULL;
    char path[48];
    snprintf(path, sizeof path, "/v1/held?limit=%lld", (long long)limit);
    if (rc == 0)
        rc = sg_cli_admin_json(&cli, "GET", path, NULL, SG_CLI_ADMIN_READ_MS, &doc, &raw);
    if (rc == 0 && cli.json)
        sg_cli_print_raw(&raw);
    else if (rc == 0)
        print_held(doc);
    json_decref(doc);
    sg_buf_free(&raw);
    rc = rc ? sg_cli_fail(&cli, rc) : 0;
    sg_cli_close(&cli);
    return rc;
}

/* ---- release and drop ------------------------------------------------------ */

enum { OPT_ALL = 1, OPT_SOURCE, OPT_JOB, OPT_NEWEST_ONLY, OPT_REASON };

typedef struct selection {
    bool all;
    const char *source; /* argv strings: valid for the whole command */
    const char *job;
    bool newest_only;
    const char *reason;
} selection;

static int on_opt(void *ud, int id, const char *arg, sg_error *err)
{
    (void)err;
    selection *s = ud;
    switch (id) {
    case OPT_ALL:
        s->all = true;
        break;
    case OPT_SOURCE:
        s->source = arg;
        break;
    case OPT_JOB:
        s->job = arg;
        break;
    case OPT_NEWEST_ONLY:
        s->newest_only = true;
        break;
    case OPT_REASON:
        s->reason = arg;
        break;
    }
    return 0;
}

/* --all alone, or --source and/or --job: what the command acts on. */
static int check_selection(sg_cli *cli, const selection *s, const char *verb)
{
    if (s->all && (s->source || s->job))
        return sg_error_set(&cli->err, SG_EUSAGE,
                            "--all cannot be combined with --source or --job (see --help)");
    if (!s->all && !s->source && !s->job)
        return sg_error_set(&cli->err, SG_EUSAGE,
                            "choose what to %s: --all, --source SOURCE or --job GLOB (see --help)",
                            verb);
    return 0;
}

/* {"all", "source", "job", "actor", key: value}: the body of both commands;
 * NULL when an argument is not UTF-8 (JSON cannot carry it). */
static json_t *selection_body(const selection *s, const char *key, json_t *value)
{
    char actor[512];
    sg_cli_actor(actor, sizeof actor);
    return json_pack("{s:b,s:s?,s:s?,s:o,s:s}", "all", s->all, "source", s->source, "job", s->job,
                     key, value, "actor", actor);
}

/* Sends body (stolen) to path and prints the answer with print (or as is
 * with --json). */
static int change(sg_cli *cli, const char *path, json_t *body, void (*print)(json_t *answer))
{
    if (!body)
        return sg_error_set(&cli->err, SG_EUSAGE,
                            "--source, --job, --reason and $USER must be valid UTF-8 text");
    sg_buf raw = {0};
    json_t *answer = NULL;
    int rc = sg_cli_admin_json(cli, "POST", path, body, SG_CLI_ADMIN_WRITE_MS, &answer, &raw);
    json_decref(body);
    if (rc == 0 && cli->json)
        sg_cli_print_raw(&raw);
    else if (rc == 0)
        print(answer);
    json_decref(answer);
    sg_buf_free(&raw);
    return rc;
}

static void print_released(json_t *answer)
{
    long long n = num(answer, "released"), m = num(answer, "superseded");
    printf("released %lld event%s (%lld older build%s superseded)\n", n, n == 1 ? "" : "s", m,
           m == 1 ? "" : "s");
}

static void print_dropped(json_t *answer)
{
    long long n = num(answer, "dropped");
    printf("dropped %lld event%s\n", n, n == 1 ? "" : "s");
}

#define SELECTOR_OPTS                                                                              \
    {"all", NULL, OPT_ALL, "every held event"},                                                    \
        {"source", "SOURCE", OPT_SOURCE, "events of one source (Jenkins master, Travis, ...)"},    \
    {                                                                                              \
        "job", "GLOB", OPT_JOB,                                                                    \
            "events of jobs matching GLOB (Docker: repository:tag; with --source: of that "        \
            "source)"                                                                              \
    }

int sg_cmd_release(int argc, char **argv)
{
    static const sg_cli_opt opts[] = {
        SELECTOR_OPTS,
        {"newest-only", NULL, OPT_NEWEST_ONLY,
         "per job, forward only the newest build (per Docker repository, the tag Igor posted "
         "last); older ones are superseded"},
        {NULL, NULL, 0, NULL},
    };
    selection s = {0};
    sg_cli_spec spec = {
        .command = "release",
        .sections = "admin",
        .examples = "  stormguard release --all --newest-only   # each job's newest build, the "
                    "rest superseded\n"
                    "  stormguard release --source jenkins-prod --job 'team-a/*'",
        .usage = "(--all | [--source SOURCE] [--job GLOB]) [--newest-only] [--admin ADDR:PORT] "
                 "[--json]",
        .summary = "Releases held events to the notifier. Name what to release: --all, or a\n"
                   "source and/or a job glob; nothing is released implicitly. With\n"
                   "--newest-only only the newest build of each job is forwarded and the older\n"
                   "ones are marked superseded, so an environment never ends up on an older\n"
                   "build that happened to be delivered last. Docker events are held per\n"
                   "account and repository: --job GLOB matches repository:tag, and\n"
                   "--newest-only keeps the tag Igor posted last.",
        .opts = opts,
        .on_opt = on_opt,
        .ud = &s,
    };
    sg_cli cli;
    int rc = sg_cli_parse(&cli, &spec, argc, argv);
    if (rc == 0)
        rc = check_selection(&cli, &s, "release");
    if (rc == 0) {
        json_t *body = selection_body(&s, "newest_only", json_boolean(s.newest_only));
        rc = change(&cli, "/v1/release", body, print_released);
    }
    rc = rc ? sg_cli_fail(&cli, rc) : 0;
    sg_cli_close(&cli);
    return rc;
}

int sg_cmd_drop(int argc, char **argv)
{
    static const sg_cli_opt opts[] = {
        SELECTOR_OPTS,
        {"reason", "TEXT", OPT_REASON, "why they are dropped, kept in the audit log (required)"},
        {NULL, NULL, 0, NULL},
    };
    selection s = {0};
    sg_cli_spec spec = {
        .command = "drop",
        .sections = "admin",
        .examples = "  stormguard drop --all --reason 'replays of the 04:00 FLUSHALL'",
        .usage = "(--all | [--source SOURCE] [--job GLOB]) --reason TEXT [--admin ADDR:PORT] "
                 "[--json]",
        .summary = "Drops held events: they are never forwarded. Name what to drop (--all, or\n"
                   "a source and/or a job glob) and say why with --reason: the daemon records\n"
                   "both in its audit log.",
        .opts = opts,
        .on_opt = on_opt,
        .ud = &s,
    };
    sg_cli cli;
    int rc = sg_cli_parse(&cli, &spec, argc, argv);
    if (rc == 0)
        rc = check_selection(&cli, &s, "drop");
    if (rc == 0 && (!s.reason || !*s.reason))
        rc = sg_error_set(&cli.err, SG_EUSAGE,
                          "--reason TEXT is required: say why these events are dropped");
    if (rc == 0) {
        rc = change(&cli, "/v1/drop", selection_body(&s, "reason", json_string(s.reason)),
                    print_dropped);
    }
    rc = rc ? sg_cli_fail(&cli, rc) : 0;
    sg_cli_close(&cli);
    return rc;
}
