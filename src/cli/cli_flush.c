/* stormguard flush: the safe replacement for runbook flushes. Before it
 * deletes anything it announces the flush to the running gate (POST
 * /v1/flush): the gate enters guard mode and snapshots the poller's state, so
 * the builds the poller re-announces after the flush are held or suppressed
 * instead of starting pipelines (DOMAIN.md section 1). Without the gate's
 * confirmation nothing is deleted. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "stormguard/snapshot/flush.h"
#include "stormguard/base/output.h"

enum {
    OPT_MATCH = 1,
    OPT_FLUSHDB,
    OPT_ALL,
    OPT_FORCE,
    OPT_NO_SNAPSHOT,
    OPT_DRY_RUN,
    OPT_NO_ANNOUNCE,
    OPT_REASON,
};

static const sg_cli_opt opts[] = {
    {"match", "PATTERN", OPT_MATCH, "delete keys matching PATTERN (repeatable): SCAN + UNLINK"},
    {"flushdb", NULL, OPT_FLUSHDB, "delete the URL's whole database: FLUSHDB ASYNC"},
    {"all", NULL, OPT_ALL, "delete every database: FLUSHALL ASYNC"},
    {"force", NULL, OPT_FORCE, "delete protected namespaces too"},
    {"no-snapshot", NULL, OPT_NO_SNAPSHOT, "skip the pre-flush snapshot (nothing to restore from)"},
    {"dry-run", NULL, OPT_DRY_RUN,
     "print the plan, delete nothing; asks the daemon whether it would confirm the announce "
     "(exit 3 if not), changing nothing there"},
    {"no-announce", NULL, OPT_NO_ANNOUNCE,
     "do not tell the daemon at --admin first (no gate runs); as [flush] announce = no"},
    {"reason", "TEXT", OPT_REASON, "why, sent with the announce for the daemon's audit log"},
    {NULL, NULL, 0, NULL},
};

/* What the announce to the daemon came to, for the output. */
typedef struct announce {
    sg_cli *cli;
    bool attempted, confirmed;
    long long snapshot_id; /* the daemon's fresh snapshot, 0 if it named none */
    bool checked;          /* --dry-run asked the daemon whether it would confirm */
} announce;

typedef struct args {
    sg_flush_opts o;
    sg_strlist match;
    int modes;
    bool no_announce;
    const char *reason;
    announce ann;
} args;

static int on_opt(void *ud, int id, const char *arg, sg_error *err)
{
    (void)err;
    args *a = ud;
    switch (id) {
    case OPT_MATCH:
        sg_strlist_push(&a->match, arg);
        if (a->match.len == 1)
            a->modes++;
        a->o.mode = SG_FLUSH_MATCH;
        break;
    case OPT_FLUSHDB:
        a->o.mode = SG_FLUSH_DB;
        a->modes++;
        break;
    case OPT_ALL:
        a->o.mode = SG_FLUSH_ALL;
        a->modes++;
        break;
    case OPT_FORCE:
        a->o.force = true;
        break;
    case OPT_NO_SNAPSHOT:
        a->o.snapshot = false;
        break;
    case OPT_DRY_RUN:
        a->o.dry_run = true;
        break;
    case OPT_NO_ANNOUNCE:
        a->no_announce = true;
        break;
    case OPT_REASON:
        a->reason = arg;
        break;
    }
    return 0;
}

/* The flush's before_delete hook: POST /v1/flush and proceed only on the
 * daemon's confirmation that it is in guard mode. Anything else refuses the
 * flush (exit 3), except a configuration mistake (the token: exit 2), so a
 * runbook never deletes a poller's state behind an unprepared gate. */
static int announce_flush(void *ud, const sg_flush_result *plan, sg_error *err)
{
    (void)plan;
    args *a = ud;
    sg_cli *cli = a->ann.cli;
    a->ann.attempted = true;
    char actor[512];
    sg_cli_actor(actor, sizeof actor);
    json_t *patterns = json_array();
    for (size_t i = 0; i < a->match.len; i++)
        json_array_append_new(patterns, json_string(a->match.items[i]));
    /* the admin API names the modes as the flags do */
    static const char *const modes[] = {
        [SG_FLUSH_MATCH] = "match", [SG_FLUSH_DB] = "flushdb", [SG_FLUSH_ALL] = "all"};
    /* wait_ms: the daemon confirms only while this command still waits
     * for it (less a margin for the answer's way back) */
    json_t *body =
        json_pack("{s:s,s:s,s:s,s:o,s:I}", "actor", actor, "reason",
                  a->reason ? a->reason : "stormguard flush", "mode", modes[a->o.mode], "patterns",
                  patterns, "wait_ms", (json_int_t)(SG_CLI_ADMIN_FLUSH_MS - 5000));
    if (!body)
        return sg_error_set(err, SG_EUSAGE, "--match, --reason and $USER must be valid UTF-8 text");
    json_t *answer = NULL;
    int rc =
        sg_cli_admin_json(cli, "POST", "/v1/flush", body, SG_CLI_ADMIN_FLUSH_MS, &answer, NULL);
    json_decref(body);
    /* the admin call reports into cli->err; the flush's error is err */
    char why[SG_ERRMSG_MAX];
    memcpy(why, cli->err.msg, sizeof why);
    const char *mode = json_string_value(json_object_get(answer, "mode"));
    if (rc == 0 && (!mode || strcmp(mode, "guard"))) {
        rc = SG_EREFUSED;
        snprintf(why, sizeof why, "the daemon at %s answered without entering guard mode (mode %s)",
                 cli->cfg.admin_listen, mode ? mode : "not reported");
    }
    if (rc == 0) {
        a->ann.confirmed = true;
        a->ann.snapshot_id = (long long)json_integer_value(json_object_get(answer, "snapshot_id"));
    }
    json_decref(answer);
    if (rc == SG_EUSAGE)
        return sg_error_set(err, rc, "nothing was deleted: announcing the flush to the daemon: %s",
                            why);
    if (rc)
        return sg_error_set(err, SG_EREFUSED,
                            "refusing to flush: no stormguard daemon confirmed it: %.600s. "
                            "Nothing was deleted: a running gate must be told before its "
                            "poller's keys go, or the builds the poller re-announces start "
                            "pipelines. Start the daemon or point --admin at it; where no gate "
                            "runs, use --no-announce (or [flush] announce = no)",
                            why);
    return 0;
}

/* --dry-run: asks the daemon whether it would confirm the announce, and
 * changes nothing there. A daemon that cannot be reached or would refuse
 * means the real flush would be refused: SG_EREFUSED, as the flush itself. */
static int check_announce(args *a, sg_error *err)
{
    sg_cli *cli = a->ann.cli;
    json_t *body = json_pack("{s:b}", "dry_run", 1);
    json_t *answer = NULL;
    int rc = sg_cli_admin_json(cli, "POST", "/v1/flush", body, SG_CLI_ADMIN_READ_MS, &answer, NULL);
    json_decref(body);
    char why[SG_ERRMSG_MAX];
    memcpy(why, cli->err.msg, sizeof why);
    if (rc == 0 && !json_is_true(json_object_get(answer, "would_confirm"))) {
        const char *reason = json_string_value(json_object_get(answer, "reason"));
        snprintf(why, sizeof why, "%s", reason ? reason : "it did not say why");
        rc = SG_EREFUSED;
    }
    json_decref(answer);
    a->ann.checked = rc == 0;
    if (rc == SG_EUSAGE)
        return sg_error_set(err, rc, "dry run: asking the daemon about the announce: %s", why);
    if (rc)
        return sg_error_set(err, SG_EREFUSED,
                            "dry run: the flush would be refused: the stormguard daemon at %s "
                            "would not confirm the announce: %.600s",
                            cli->cfg.admin_listen, why);
    return 0;
}

static json_t *announce_json(const args *a, const char *admin)
{
    if (a->ann.checked)
        return json_pack("{s:s,s:b,s:b}", "admin", admin, "confirmed", 0, "would_confirm", 1);
    if (!a->ann.attempted)
        return json_null();
    json_t *doc = json_pack("{s:s,s:b}", "admin", admin, "confirmed", a->ann.confirmed);
    json_object_set_new(doc, "snapshot_id",
                        a->ann.snapshot_id ? json_integer((json_int_t)a->ann.snapshot_id)
                                           : json_null());
    return doc;
}

static json_t *namespaces_json(const sg_flush_result *r)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < r->namespace_count; i++)
        json_array_append_new(arr, json_pack("{s:s,s:I,s:I}", "namespace", r->namespaces[i].ns,
                                             "keys", (json_int_t)r->namespaces[i].keys, "protected",
                                             (json_int_t)r->namespaces[i].protected_keys));
    return arr;
}

static void print_json(const args *a, const sg_flush_result *r, int rc, const char *redis,
                       const char *admin)
{
    json_t *prot = json_object();
    for (size_t i = 0; i < a->o.protect->len; i++)
        if (r->protected_counts && r->protected_counts[i])
            json_object_set_new(prot, a->o.protect->items[i],
                                json_integer((json_int_t)r->protected_counts[i]));
    json_t *patterns = json_array();
    for (size_t i = 0; i < a->match.len; i++)
        json_array_append_new(patterns, json_string(a->match.items[i]));
    const char *outcome = rc == SG_EREFUSED ? "refused"
                          : a->o.dry_run    ? "dry-run"
                          : r->planned == 0 ? "nothing-to-flush"
                                            : "flushed";
    json_t *doc =
        json_pack("{s:s,s:s,s:s,s:o,s:b,s:I,s:o,s:I,s:o}", "outcome", outcome, "redis", redis,
                  "mode", sg_flush_mode_name(a->o.mode), "patterns", patterns, "dry_run",
                  a->o.dry_run, "planned", (json_int_t)r->planned, "namespaces", namespaces_json(r),
                  "protected_total", (json_int_t)r->protected_total, "protected", prot);
    if (r->snapshot.id)
        json_object_set_new(doc, "snapshot_id", json_integer((json_int_t)r->snapshot.id));
    else
        json_object_set_new(doc, "snapshot_id", json_null());
    json_object_set_new(doc, "announce", announce_json(a, admin));
    if (rc) { /* the document is the command's one answer: why, and its exit code */
        json_object_set_new(doc, "error", json_string(a->ann.cli->err.msg));
        json_object_set_new(doc, "exit", json_integer(sg_error_exit_code(rc)));
    }
    if (!strcmp(outcome, "flushed")) {
        json_object_set_new(doc, "deleted", json_integer((json_int_t)r->deleted));
        json_object_set_new(doc, "remaining", json_integer((json_int_t)r->remaining));
        json_object_set_new(doc, "verified", json_boolean(r->verified));
        json_object_set_new(doc, "seconds", json_real(r->seconds));
    }
    sg_json_print(doc, stdout);
}

static void print_plan(const args *a, const sg_flush_result *r, const char *redis)
{
    printf("flush plan for %s (%s): %lld keys\n", redis, sg_flush_mode_name(a->o.mode),
           (long long)r->planned);
    if (r->namespace_count) {
        static const char *const head[] = {"NAMESPACE", "KEYS", "PROTECTED"};
        sg_table *t = sg_table_new(3, head, "lrr");
        for (size_t i = 0; i < r->namespace_count; i++) {
            char keys[24], prot[24];
            snprintf(keys, sizeof keys, "%lld", (long long)r->namespaces[i].keys);
            snprintf(prot, sizeof prot, "%lld", (long long)r->namespaces[i].protected_keys);
            const char *ns = r->namespaces[i].ns[0] ? r->namespaces[i].ns : "(no namespace)";
            const char *row[] = {ns, keys, prot};
            sg_table_row(t, row);
        }
        sg_table_print(t, stdout);
        sg_table_free(t);
    }
}

static void print_text(const args *a, const sg_flush_result *r, int rc, const char *redis,
                       const char *admin)
{
    print_plan(a, r, redis);
    if (a->ann.confirmed && a->ann.snapshot_id)
        printf("announced to the stormguard daemon at %s: guard mode, its snapshot %lld\n", admin,
               a->ann.snapshot_id);
    else if (a->ann.confirmed)
        printf("announced to the stormguard daemon at %s: guard mode\n", admin);
    if (rc == SG_EREFUSED)
        return; /* the reason follows on stderr */
    if (a->ann.checked)
        printf("the stormguard daemon at %s is reachable and would confirm the announce\n", admin);
    if (a->o.dry_run) {
        if (r->protected_total)
            printf("would delete %lld protected keys (--force given)\n",
                   (long long)r->protected_total);
        printf("dry run: would %s%s, then delete %lld keys; nothing was changed\n",
               a->no_announce ? "" : "announce the flush to the daemon, ",
               a->o.snapshot ? "take a pre-flush snapshot of them" : "take no snapshot",
               (long long)r->planned);
        return;
    }
    if (r->planned == 0) {
        printf("nothing to flush\n");
        return;
    }
    if (r->snapshot.id)
        printf("pre-flush snapshot %lld: %lld keys (restore with: stormguard restore %lld)\n",
               (long long)r->snapshot.id, (long long)r->snapshot.keys, (long long)r->snapshot.id);
    else
        printf("no pre-flush snapshot (--no-snapshot)\n");
    printf("deleted %lld keys in %.2f s; redis %s; %lld selected keys remain%s\n",
           (long long)r->deleted, r->seconds, r->verified ? "answers PING" : "did NOT answer PING",
           (long long)r->remaining,
           r->remaining && a->o.mode == SG_FLUSH_MATCH ? " (written after the snapshot)" : "");
}

int sg_cmd_flush(int argc, char **argv)
{
    args a = {.o = {.snapshot = true}};
    sg_cli_spec spec = {
        .command = "flush",
        .sections = "redis store profile snapshot flush admin",
        .examples = "  stormguard flush --match 'igor:*' --dry-run            # the plan; would "
                    "the daemon confirm?\n"
                    "  stormguard flush --match 'igor:*' --reason 'INC-42'    # announce, "
                    "snapshot, delete\n"
                    "  stormguard restore latest --match 'igor:*'            # undo it",
        .usage = "(--match PATTERN... | --flushdb | --all) [--dry-run] [--force] [--no-snapshot]\n"
                 "       [--no-announce] [--reason TEXT] [--admin ADDR:PORT]",
        .summary =
            "The safe replacement for runbook flushes. Plans the flush (keys per namespace),\n"
            "refuses with exit code 3 if protected namespaces would be lost (unless --force),\n"
            "snapshots everything it will delete (reason pre-flush; if that fails nothing is\n"
            "deleted), deletes without blocking Redis (UNLINK in batches, FLUSHDB/FLUSHALL\n"
            "ASYNC), then verifies. With --match exactly the snapshotted keys are deleted.\n"
            "Before the snapshot it announces the flush to the running stormguard daemon at\n"
            "--admin (POST /v1/flush): the gate enters guard mode and snapshots the poller's\n"
            "state. If no daemon confirms, nothing is deleted (exit 3); where no gate runs,\n"
            "pass --no-announce or set [flush] announce = no.\n"
            "Note: --db names the store file, as everywhere; --flushdb is the mode.",
        .opts = opts,
        .on_opt = on_opt,
        .ud = &a,
        .cluster = true,
    };
    sg_cli cli;
    int rc = sg_cli_parse(&cli, &spec, argc, argv);
    a.ann.cli = &cli;
    if (rc == 0 && cli.cfg.flush_announce && !a.no_announce) {
        a.o.before_delete = announce_flush;
        a.o.before_delete_ud = &a;
    } else {
        a.no_announce = true;
    }
    if (rc == 0 && a.modes != 1)
        rc = sg_error_set(&cli.err, SG_EUSAGE,
                          "choose exactly one of --match PATTERN, --flushdb or --all");
    sg_rconn conn = {0};
    sg_store *store = NULL;
    if (rc == 0 && (a.o.snapshot || !a.o.dry_run))
        rc = sg_cli_open_store(&cli, &store);
    if (rc == 0)
        rc = sg_cli_connect(&cli, &conn);
    if (rc == 0) {
        sg_progress progress;
        sg_progress_init(&progress, "pre-flush snapshot", cli.json);
        a.o.match = &a.match;
        a.o.protect = &cli.cfg.protect;
        a.o.scan_count = cli.cfg.scan_count;
        sg_snapshot_opts snap = {.method = sg_snapshot_method_named(cli.cfg.snapshot_method),
                                 .profile = cli.cfg.profile,
                                 .prefix = cli.cfg.prefix,
                                 .scan_count = cli.cfg.scan_count,
                                 .progress = sg_progress_update,
                                 .progress_ud = &progress};
        sg_flush_result res;
        rc = sg_flush_run(&conn, store, &snap, &a.o, &res, &cli.err);
        sg_progress_done(&progress);
        if (rc == 0 && a.o.dry_run && !a.no_announce)
            rc = check_announce(&a, &cli.err);
        if (rc == 0 || rc == SG_EREFUSED) {
            if (cli.json)
                print_json(&a, &res, rc, conn.redacted, cli.cfg.admin_listen);
            else
                print_text(&a, &res, rc, conn.redacted, cli.cfg.admin_listen);
        }
        if (rc == 0 && !a.o.dry_run && res.planned && !res.verified)
            rc = sg_error_set(&cli.err, SG_EREDIS, "redis %s did not answer PING after the flush",
                              conn.address);
        sg_flush_result_close(&res);
    }
    sg_strlist_clear(&a.match);
    sg_rconn_close(&conn);
    sg_store_free(store);
    rc = rc ? sg_cli_fail(&cli, rc) : 0;
    sg_cli_close(&cli);
    return rc;
}
