/* stormguard restore: put a snapshot's keys back into Redis. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "stormguard/base/clock.h"
#include "stormguard/base/output.h"
#include "stormguard/snapshot/snapshot.h"
#include "stormguard/store/episodes.h"
#include "stormguard/store/snapshots.h"

enum { OPT_REPLACE = 1, OPT_DRY_RUN, OPT_MATCH };

static const sg_cli_opt opts[] = {
    {"replace", NULL, OPT_REPLACE, "overwrite keys that exist (default: never clobber)"},
    {"dry-run", NULL, OPT_DRY_RUN, "report what would be restored, change nothing"},
    {"match", "PATTERN", OPT_MATCH, "restore only keys matching PATTERN (repeatable)"},
    {NULL, NULL, 0, NULL},
};

typedef struct args {
    sg_restore_opts o;
    sg_strlist match;
} args;

static int on_opt(void *ud, int id, const char *arg, sg_error *err)
{
    (void)err;
    args *a = ud;
    switch (id) {
    case OPT_REPLACE:
        a->o.replace = true;
        break;
    case OPT_DRY_RUN:
        a->o.dry_run = true;
        break;
    case OPT_MATCH:
        sg_strlist_push(&a->match, arg);
        break;
    }
    return 0;
}

static int parse_id(sg_cli *cli, int64_t *id)
{
    *id = 0;
    if (cli->nargs == 0 || !strcmp(cli->args[0], "latest"))
        return 0;
    if (sg_parse_int64(cli->args[0], 1, INT64_MAX, id))
        return sg_error_set(&cli->err, SG_EUSAGE,
                            "'%s' is not a snapshot id (a number from `stormguard snapshots`, "
                            "or latest)",
                            cli->args[0]);
    return 0;
}

static void print_result(const sg_cli *cli, const sg_restore_result *r, int64_t id, bool dry)
{
    if (cli->json) {
        json_t *reasons = json_array();
        for (int i = 0; i < r->reason_count; i++)
            json_array_append_new(reasons, json_pack("{s:s,s:I}", "reason", r->reasons[i].reason,
                                                     "count", (json_int_t)r->reasons[i].count));
        sg_json_print(json_pack("{s:I,s:b,s:I,s:I,s:I,s:I,s:I,s:f,s:o}", "snapshot_id",
                                (json_int_t)id, "dry_run", dry, "restored", (json_int_t)r->restored,
                                "skipped_existing", (json_int_t)r->skipped_existing,
                                "skipped_expired", (json_int_t)r->skipped_expired,
                                "skipped_unmatched", (json_int_t)r->skipped_unmatched, "failed",
                                (json_int_t)r->failed, "seconds", r->seconds, "errors", reasons),
                      stdout);
        return;
    }
    printf("%s snapshot %lld: %lld %s, %lld skipped (exist), %lld skipped (expired), "
           "%lld failed in %.2f s\n",
           dry ? "dry run of restoring" : "restored", (long long)id, (long long)r->restored,
           dry ? "would be restored" : "restored", (long long)r->skipped_existing,
           (long long)r->skipped_expired, (long long)r->failed, r->seconds);
    if (r->skipped_unmatched)
        printf("  %lld keys did not match --match\n", (long long)r->skipped_unmatched);
    for (int i = 0; i < r->reason_count; i++)
        printf("  failed %lld: %s\n", (long long)r->reasons[i].count, r->reasons[i].reason);
}

int sg_cmd_restore(int argc, char **argv)
{
    args a = {0};
    sg_cli_spec spec = {
        .command = "restore",
        .sections = "redis store profile snapshot",
        .examples = "  stormguard restore latest --dry-run\n"
                    "  stormguard restore 42 --match 'igor:*'\n"
                    "  stormguard restore latest --replace",
        .usage = "[ID|latest] [--replace] [--match PATTERN]... [--dry-run] [--json]",
        .summary =
            "Restores a snapshot (default: the latest complete one) with RESTORE ... ABSTTL.\n"
            "Keys that exist are never overwritten unless --replace; keys whose TTL has\n"
            "passed are skipped. A one-database snapshot restores into the URL's database;\n"
            "a snapshot of several databases (taken before flush --all) into each key's own.",
        .opts = opts,
        .max_args = 1,
        .on_opt = on_opt,
        .ud = &a,
        .cluster = true,
    };
    sg_cli cli;
    int64_t id = 0;
    int rc = sg_cli_parse(&cli, &spec, argc, argv);
    sg_rconn conn = {0};
    sg_store *store = NULL;
    if (rc == 0)
        rc = parse_id(&cli, &id);
    if (rc == 0)
        rc = sg_cli_open_store(&cli, &store);
    if (rc == 0)
        rc = sg_cli_connect(&cli, &conn);
    if (rc == 0) {
        sg_progress progress;
        sg_progress_init(&progress, "restore", cli.json);
        a.o.match = &a.match;
        a.o.progress = sg_progress_update;
        a.o.progress_ud = &progress;
        sg_snapshot_info info;
        rc = sg_store_snapshot_get(store, id, &info, &cli.err);
        if (rc == 0 && info.state && !strcmp(info.state, "partial")) {
            rc = sg_error_set(&cli.err, SG_EREFUSED,
                              "snapshot %lld is partial (being written, or its writer stopped "
                              "midway): it would restore only some keys",
                              (long long)info.id);
            sg_snapshot_info_close(&info);
        }
        if (rc == 0) {
            sg_restore_result res;
            rc = sg_restore_run(&conn, store, info.id, &a.o, &res, &cli.err);
            sg_progress_done(&progress);
            if (rc == 0 && !a.o.dry_run) {
                char *detail = sg_xasprintf("snapshot=%lld restored=%lld skipped=%lld "
                                            "failed=%lld redis=%s",
                                            (long long)info.id, (long long)res.restored,
                                            (long long)res.skipped_existing, (long long)res.failed,
                                            conn.redacted);
                rc = sg_store_audit(store, sg_now_ms(), "cli", "restore", detail, &cli.err);
                free(detail);
            }
            if (rc == 0)
                print_result(&cli, &res, info.id, a.o.dry_run);
            if (rc == 0 && res.failed)
                rc = sg_error_set(&cli.err, SG_EREDIS, "%lld keys could not be restored",
                                  (long long)res.failed);
            sg_restore_result_close(&res);
            sg_snapshot_info_close(&info);
        }
    }
    sg_strlist_clear(&a.match);
    sg_rconn_close(&conn);
    sg_store_free(store);
    rc = rc ? sg_cli_fail(&cli, rc) : 0;
    sg_cli_close(&cli);
    return rc;
}
