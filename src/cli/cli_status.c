/* stormguard status: what a running gate is doing (GET /v1/status). */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "stormguard/base/output.h"

/* ": <value>" of an optional string field, or "". */
static const char *opt(json_t *o, const char *key, char *buf, size_t size)
{
    const char *s = json_string_value(json_object_get(o, key));
    snprintf(buf, size, "%s%s", s ? ": " : "", s ? s : "");
    return buf;
}

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "-";
}

/* The mode's why: guard until when and for what, each storm, the watcher. */
static void print_modes(json_t *doc)
{
    json_t *g = json_object_get(doc, "guard");
    if (json_is_object(g))
        printf("guard mode until %s: %s\n", str(g, "until"), str(g, "reason"));
    size_t i;
    json_t *st;
    json_array_foreach(json_object_get(doc, "storms"), i, st)
    {
        const char *src = json_string_value(json_object_get(st, "source"));
        printf("storm on %s until %s: %s\n", src ? src : "all sources", str(st, "until"),
               str(st, "trigger"));
    }
    json_t *r = json_object_get(doc, "redis");
    if (json_is_object(r)) {
        char buf[512];
        printf("redis %s: link %s, canary %s%s%s\n", str(r, "address"), str(r, "link"),
               str(r, "canary"), json_is_true(json_object_get(r, "tracking")) ? ", tracking" : "",
               opt(r, "last_error", buf, sizeof buf));
    } else {
        printf("redis: not watched\n");
    }
    printf("wipes %lld, storm signals %lld, rewarms %lld, held %lld\n",
           (long long)json_integer_value(json_object_get(doc, "wipes")),
           (long long)json_integer_value(json_object_get(doc, "storm_signals")),
           (long long)json_integer_value(json_object_get(doc, "rewarms")),
           (long long)json_integer_value(json_object_get(doc, "held")));
}

static void print_text(json_t *doc)
{
    json_t *j = json_object_get(doc, "journal"), *d = json_object_get(doc, "downstream");
    json_t *snap = json_object_get(doc, "snapshot");
    printf("mode %s, up %llds since %s\n", str(doc, "mode"),
           (long long)json_integer_value(json_object_get(doc, "uptime_s")), str(doc, "started_at"));
    print_modes(doc);
    if (!strcmp(str(doc, "gate_mode"), "observe")) {
        json_t *w = json_object_get(doc, "would");
        printf("observe mode: every event is forwarded; it would have suppressed %lld, held "
               "%lld, dropped %lld\n",
               (long long)json_integer_value(json_object_get(w, "suppressed")),
               (long long)json_integer_value(json_object_get(w, "held")),
               (long long)json_integer_value(json_object_get(w, "dropped")));
    }
    char buf[512];
    printf("journal: %s, %lld writes queued%s\n",
           json_is_true(json_object_get(j, "writable")) ? "writable" : "NOT WRITABLE",
           (long long)json_integer_value(json_object_get(j, "depth")),
           opt(j, "error", buf, sizeof buf));
    printf("downstream %s: %s, %lld in flight, %lld queued; last ok %s, last failure %s%s\n",
           str(d, "url"), json_is_true(json_object_get(d, "healthy")) ? "healthy" : "FAILING",
           (long long)json_integer_value(json_object_get(d, "inflight")),
           (long long)json_integer_value(json_object_get(d, "backlog")), str(d, "last_ok"),
           str(d, "last_failure"), opt(d, "last_error", buf, sizeof buf));
    if (json_is_object(snap))
        printf("baseline: snapshot %lld of %s (%lld jobs); ledger %lld builds\n",
               (long long)json_integer_value(json_object_get(snap, "id")), str(snap, "taken_at"),
               (long long)json_integer_value(json_object_get(snap, "jobs")),
               (long long)json_integer_value(json_object_get(doc, "ledger")));
    else
        printf("baseline: no snapshot yet (every job is unknown until one is taken); ledger "
               "%lld builds\n",
               (long long)json_integer_value(json_object_get(doc, "ledger")));
    /* A column for every state an event rests in, so no event drops out of
     * the table: the held builds an operator dropped or a newer build
     * superseded are counted too. "released" has none: a release makes an
     * event pending again. */
    static const char *const head[] = {"KIND", "PENDING", "FORWARDED",  "SUPPRESSED",
                                       "HELD", "DROPPED", "SUPERSEDED", "DEAD"};
    static const char *const states[] = {"pending", "forwarded",  "suppressed", "held",
                                         "dropped", "superseded", "dead"};
    enum { NSTATES = sizeof states / sizeof states[0] };
    sg_table *t = sg_table_new(NSTATES + 1, head, "lrrrrrrr");
    const char *kind;
    json_t *by_state;
    json_object_foreach(json_object_get(doc, "counts"), kind, by_state)
    {
        char cells[NSTATES][24];
        const char *row[NSTATES + 1] = {kind};
        for (int i = 0; i < NSTATES; i++) {
            snprintf(cells[i], sizeof cells[i], "%lld",
                     (long long)json_integer_value(json_object_get(by_state, states[i])));
            row[i + 1] = cells[i];
        }
        sg_table_row(t, row);
    }
    sg_table_print(t, stdout);
    sg_table_free(t);
}

int sg_cmd_status(int argc, char **argv)
{
    sg_cli_spec spec = {
        .command = "status",
        .sections = "admin",
        .examples = "  stormguard status\n"
                    "  stormguard status --admin http://10.0.0.5:8091 --json",
        .usage = "[--admin ADDR:PORT] [--json]",
        .summary = "Shows what the running gate is doing: mode (and why: guard mode, storms,\n"
                   "the watched Redis), journal, downstream health, baseline snapshot and\n"
                   "event counts by kind and state. --json prints the\n"
                   "/v1/status document as is.",
    };
    sg_cli cli;
    int rc = sg_cli_parse(&cli, &spec, argc, argv);
    sg_buf raw = {0};
    json_t *doc = NULL;
    if (rc == 0)
        rc = sg_cli_admin_json(&cli, "GET", "/v1/status", NULL, SG_CLI_ADMIN_READ_MS, &doc, &raw);
    if (rc == 0 && cli.json)
        sg_cli_print_raw(&raw);
    else if (rc == 0)
        print_text(doc);
    json_decref(doc);
    sg_buf_free(&raw);
    rc = rc ? sg_cli_fail(&cli, rc) : 0;
    sg_cli_close(&cli);
    return rc;
}
