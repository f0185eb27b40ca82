/* stormguard events: recent events the gate journaled (GET /v1/events). */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "stormguard/base/output.h"
#include "stormguard/gate/classify.h"
#include "stormguard/store/events.h"

enum { OPT_STATE = 1, OPT_KIND, OPT_JOB, OPT_LIMIT };

static const sg_cli_opt opts[] = {
    {"state", "STATE", OPT_STATE,
     "pending, forwarded, suppressed, held, released, dropped, superseded or dead"},
    {"kind", "KIND", OPT_KIND, "new, replay, unknown or passthrough"},
    {"job", "JOB", OPT_JOB, "one job, as the poller names it"},
    {"limit", "N", OPT_LIMIT, "at most N events, newest first (default 50)"},
    {NULL, NULL, 0, NULL},
};

typedef struct args {
    sg_buf query;
} args;

static int on_opt(void *ud, int id, const char *arg, sg_error *err)
{
    args *a = ud;
    sg_event_state st;
    sg_kind k;
    if (id == OPT_STATE && sg_event_state_parse(arg, &st))
        return sg_error_set(err, SG_EUSAGE,
                            "--state %s: not one of pending, forwarded, suppressed, held, "
                            "released, dropped, superseded, dead",
                            arg);
    int64_t n;
    if (id == OPT_LIMIT && sg_parse_int64(arg, 1, 10000, &n))
        return sg_error_set(err, SG_EUSAGE, "--limit %s: not a whole number from 1 to 10000", arg);
    if (id == OPT_KIND && sg_kind_parse(arg, &k))
        return sg_error_set(err, SG_EUSAGE,
                            "--kind %s: not one of new, replay, unknown, passthrough", arg);
    static const char *const names[] = {"", "state", "kind", "job", "limit"};
    sg_buf_printf(&a->query, "%c%s=", a->query.len ? '&' : '?', names[id]);
    for (const unsigned char *c = (const unsigned char *)arg; *c; c++) {
        if (isalnum(*c) || strchr("-._~/:", *c))
            sg_buf_append(&a->query, c, 1);
        else
            sg_buf_printf(&a->query, "%%%02X", *c);
    }
    return 0;
}

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static void print_text(json_t *doc)
{
    json_t *events = json_object_get(doc, "events");
    if (!json_array_size(events)) {
        printf("no events\n");
        return;
    }
    static const char *const head[] = {"ID",        "RECEIVED_AT", "KIND",
                                       "STATE",     "SOURCE",      "JOB",
                                       "BUILD/TAG", "TRIES",       "REASON / LAST ERROR"};
    sg_table *t = sg_table_new(9, head, "rlllllrrl");
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e)
    {
        char id[24], number[SG_EVENT_NAME_MAX + 1] = "", tries[24];
        snprintf(id, sizeof id, "%lld", (long long)json_integer_value(json_object_get(e, "id")));
        if (json_object_get(e, "number"))
            snprintf(number, sizeof number, "%lld",
                     (long long)json_integer_value(json_object_get(e, "number")));
        else if (json_object_get(e, "tag")) /* a Docker event: its tag */
            snprintf(number, sizeof number, "%s", str(e, "tag"));
        snprintf(tries, sizeof tries, "%lld",
                 (long long)json_integer_value(json_object_get(e, "attempts")));
        const char *why =
            json_object_get(e, "last_error") ? str(e, "last_error") : str(e, "reason");
        char state[64];
        if (json_object_get(e, "would")) /* observe mode */
            snprintf(state, sizeof state, "%s (would be %s)", str(e, "state"), str(e, "would"));
        else
            snprintf(state, sizeof state, "%s", str(e, "state"));
        const char *row[] = {id,
                             str(e, "received_at"),
                             str(e, "kind"),
                             state,
                             str(e, "source"),
                             str(e, "job"),
                             number,
                             tries,
                             why};
        sg_table_row(t, row);
    }
    sg_table_print(t, stdout);
    sg_table_free(t);
}

int sg_cmd_events(int argc, char **argv)
{
    args a = {0};
    sg_cli_spec spec = {
        .command = "events",
        .sections = "admin",
        .examples = "  stormguard events --state held --limit 20\n"
                    "  stormguard events --job team-a/service-1 --json",
        .usage = "[--state S] [--kind K] [--job J] [--limit N] [--admin ADDR:PORT] [--json]",
        .summary = "Lists the events the running gate journaled, newest first, with what it\n"
                   "decided (kind, state) and why.",
        .opts = opts,
        .on_opt = on_opt,
        .ud = &a,
    };
    sg_cli cli;
    int rc = sg_cli_parse(&cli, &spec, argc, argv);
    sg_buf raw = {0};
    json_t *doc = NULL;
    if (rc == 0) {
        if (!strstr(a.query.p ? a.query.p : "", "limit="))
            sg_buf_printf(&a.query, "%climit=50", a.query.len ? '&' : '?');
        char *path = sg_xasprintf("/v1/events%s", a.query.p);
        rc = sg_cli_admin_json(&cli, "GET", path, NULL, SG_CLI_ADMIN_READ_MS, &doc, &raw);
        free(path);
    }
    if (rc == 0 && cli.json)
        sg_cli_print_raw(&raw);
    else if (rc == 0)
        print_text(doc);
    json_decref(doc);
    sg_buf_free(&raw);
    sg_buf_free(&a.query);
    rc = rc ? sg_cli_fail(&cli, rc) : 0;
    sg_cli_close(&cli);
    return rc;
}
