/* stormguard flush: the safe replacement for runbook flushes. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/cli.h"
#include "stormguard/flush.h"
#include "stormguard/output.h"

enum { OPT_MATCH = 1, OPT_FLUSHDB, OPT_ALL, OPT_FORCE, OPT_NO_SNAPSHOT, OPT_DRY_RUN };

static const sg_cli_opt opts[] = {
    {"match", "PATTERN", OPT_MATCH, "delete keys matching PATTERN (repeatable): SCAN + UNLINK"},
    {"flushdb", NULL, OPT_FLUSHDB, "delete the URL's whole database: FLUSHDB ASYNC"},
    {"all", NULL, OPT_ALL, "delete every database: FLUSHALL ASYNC"},
    {"force", NULL, OPT_FORCE, "delete protected namespaces too"},
    {"no-snapshot", NULL, OPT_NO_SNAPSHOT, "skip the pre-flush snapshot (nothing to restore from)"},
    {"dry-run", NULL, OPT_DRY_RUN, "print the plan, delete nothing"},
    {NULL, NULL, 0, NULL},
};

typedef struct args {
    sg_flush_opts o;
    sg_strlist match;
    int modes;
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
    case OPT_FLUSHDB: a->o.mode = SG_FLUSH_DB; a->modes++; break;
    case OPT_ALL: a->o.mode = SG_FLUSH_ALL; a->modes++; break;
    case OPT_FORCE: a->o.force = true; break;
    case OPT_NO_SNAPSHOT: a->o.snapshot = false; break;
    case OPT_DRY_RUN: a->o.dry_run = true; break;
    }
    return 0;
}

static json_t *namespaces_json(const sg_flush_result *r)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < r->namespace_count; i++)
        json_array_append_new(arr, json_pack("{s:s,s:I,s:I}", "namespace", r->namespaces[i].ns,
                                             "keys", (json_int_t)r->namespaces[i].keys,
                                             "protected",
                                             (json_int_t)r->namespaces[i].protected_keys));
    return arr;
}

static void print_json(const args *a, const sg_flush_result *r, int rc, const char *redis)
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
    json_t *doc = json_pack("{s:s,s:s,s:s,s:o,s:b,s:I,s:o,s:I,s:o}", "outcome", outcome, "redis",
                            redis, "mode", sg_flush_mode_name(a->o.mode), "patterns", patterns,
                            "dry_run", a->o.dry_run, "planned", (json_int_t)r->planned,
                            "namespaces", namespaces_json(r), "protected_total",
                            (json_int_t)r->protected_total, "protected", prot);
    if (r->snapshot.id)
        json_object_set_new(doc, "snapshot_id", json_integer((json_int_t)r->snapshot.id));
    else
        json_object_set_new(doc, "snapshot_id", json_null());
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

static void print_text(const args *a, const sg_flush_result *r, int rc, const char *redis)
{
    print_plan(a, r, redis);
    if (rc == SG_EREFUSED)
        return; /* the reason follows on stderr */
    if (a->o.dry_run) {
        if (r->protected_total)
            printf("would delete %lld protected keys (--force given)\n",
                   (long long)r->protected_total);
        printf("dry run: would %s, then delete %lld keys; nothing was changed\n",
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
               (long long)r->snapshot.id, (long long)r->snapshot.keys,
               (long long)r->snapshot.id);
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
        .usage = "(--match PATTERN... | --flushdb | --all) [--dry-run] [--force] [--no-snapshot]",
        .summary =
            "The safe replacement for runbook flushes. Plans the flush (keys per namespace),\n"
            "refuses with exit code 3 if protected namespaces would be lost (unless --force),\n"
            "snapshots everything it will delete (reason pre-flush; if that fails nothing is\n"
            "deleted), deletes without blocking Redis (UNLINK in batches, FLUSHDB/FLUSHALL\n"
            "ASYNC), then verifies. With --match exactly the snapshotted keys are deleted.\n"
            "Note: --db names the store file, as everywhere; --flushdb is the mode.",
        .opts = opts,
        .on_opt = on_opt,
        .ud = &a,
    };
    sg_cli cli;
    int rc = sg_cli_parse(&cli, &spec, argc, argv);
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
        sg_snapshot_opts snap = {.profile = cli.cfg.profile,
                                 .prefix = cli.cfg.prefix,
                                 .scan_count = cli.cfg.scan_count,
                                 .progress = sg_progress_update,
                                 .progress_ud = &progress};
        sg_flush_result res;
        rc = sg_flush_run(&conn, store, &snap, &a.o, &res, &cli.err);
        sg_progress_done(&progress);
        if (rc == 0 || rc == SG_EREFUSED) {
            if (cli.json)
                print_json(&a, &res, rc, conn.redacted);
            else
                print_text(&a, &res, rc, conn.redacted);
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
