/* stormguard snapshot: take a snapshot of the poller's keys now. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "stormguard/base/output.h"
#include "stormguard/snapshot/snapshot.h"
#include "stormguard/store/snapshots.h"

enum { OPT_REASON = 1 };

static const sg_cli_opt opts[] = {
    {"reason", "TEXT", OPT_REASON, "why the snapshot is taken, recorded with it (default manual)"},
    {NULL, NULL, 0, NULL},
};

typedef struct args {
    const char *reason;
} args;

static int on_opt(void *ud, int id, const char *arg, sg_error *err)
{
    args *a = ud;
    (void)err;
    if (id == OPT_REASON)
        a->reason = arg;
    return 0;
}

static void print_result(const sg_cli *cli, const sg_snapshot_result *r, const char *redis,
                         int64_t pruned)
{
    double rate = r->seconds > 0 ? (double)r->keys / r->seconds : 0;
    if (cli->json) {
        json_t *doc = json_pack(
            "{s:I,s:s,s:I,s:I,s:f,s:f,s:I,s:I,s:s,s:s,s:{s:I,s:I,s:I},s:I}", "snapshot_id",
            (json_int_t)r->id, "state", r->suspect ? "suspect" : "complete", "keys",
            (json_int_t)r->keys, "bytes", (json_int_t)r->bytes, "seconds", r->seconds,
            "keys_per_second", rate, "vanished", (json_int_t)r->vanished, "undecoded",
            (json_int_t)r->undecoded, "redis", redis, "profile",
            sg_profile_kind_name(cli->cfg.profile), "index", "jobs", (json_int_t)r->index.jobs,
            "posted", (json_int_t)r->index.posted, "docker_tags", (json_int_t)r->index.docker_tags,
            "pruned", (json_int_t)pruned);
        if (r->profile_keys >= 0)
            json_object_set_new(doc, "profile_keys", json_integer(r->profile_keys));
        if (r->suspect)
            json_object_set_new(doc, "suspect_reason", json_string(r->suspect_reason));
        sg_json_print(doc, stdout);
        return;
    }
    char size[32];
    printf("snapshot %lld %s: %lld keys, %s in %.2f s (%.0f keys/s) from %s\n", (long long)r->id,
           r->suspect ? "SUSPECT" : "complete", (long long)r->keys,
           sg_human_bytes(r->bytes, size, sizeof size), r->seconds, rate, redis);
    if (r->suspect)
        printf("  suspect: %s.\n"
               "  Redis was probably wiped. The snapshot is kept, but it is neither the\n"
               "  classification baseline nor what `restore latest` takes (restore it by id).\n"
               "  If the poller really has fewer keys now, take one with --suspect-below 0.\n",
               r->suspect_reason);
    if (r->vanished)
        printf("  %lld keys vanished before they were read (deleted or expired; skipped)\n",
               (long long)r->vanished);
    if (cli->cfg.profile != SG_PROFILE_NONE)
        printf("  build index: %lld jobs, %lld posted builds, %lld docker tags%s\n",
               (long long)r->index.jobs, (long long)r->index.posted,
               (long long)r->index.docker_tags, r->undecoded ? "" : "");
    if (r->undecoded)
        printf("  %lld profile keys could not be decoded (unexpected type or value)\n",
               (long long)r->undecoded);
    if (pruned)
        printf("  pruned %lld old snapshot%s\n", (long long)pruned, pruned == 1 ? "" : "s");
}

int sg_cmd_snapshot(int argc, char **argv)
{
    args a = {.reason = "manual"};
    sg_cli_spec spec = {
        .command = "snapshot",
        .sections = "redis store profile snapshot",
        .examples = "  stormguard snapshot --profile igor --reason before-upgrade\n"
                    "  stormguard snapshot --match 'session:*' --json",
        .usage = "[--redis URL] [--db PATH] [--profile igor] [--match PATTERN]... "
                 "[--method scan|sync] [--suspect-below PCT] [--json]",
        .summary =
            "Snapshots the poller's Redis keys into the SQLite store: SCAN (never KEYS),\n"
            "DUMP and PTTL per key, streamed into one transaction, so the snapshot is\n"
            "complete or absent. With --profile igor it also decodes Igor's build index\n"
            "(Jenkins cursors and posted markers, Travis/GitLab build numbers, Docker tags).\n"
            "With neither --profile nor --match, every key of the database is taken.\n"
            "--method sync reads the keys from the RDB Redis sends a replica (SYNC, as\n"
            "redis-cli --rdb does) instead: Redis forks, its main thread does next to no\n"
            "work, and every key is from one point in time; the user needs REPLCONF and\n"
            "SYNC.\n"
            "A profile snapshot with fewer than PCT% (--suspect-below) of the profile keys\n"
            "of the last good snapshot of the same server and database is kept as suspect:\n"
            "never the classification baseline nor the default of `restore latest`. It\n"
            "still exits 0: the snapshot was taken.",
        .opts = opts,
        .on_opt = on_opt,
        .ud = &a,
        .cluster = true,
    };
    sg_cli cli;
    int rc = sg_cli_parse(&cli, &spec, argc, argv);
    sg_rconn conn = {0};
    sg_store *store = NULL;
    if (rc == 0)
        rc = sg_cli_open_store(&cli, &store);
    if (rc == 0)
        rc = sg_cli_connect(&cli, &conn);
    if (rc == 0) {
        sg_progress progress;
        sg_progress_init(&progress, "snapshot", cli.json);
        sg_snapshot_opts o = {.method = sg_snapshot_method_named(cli.cfg.snapshot_method),
                              .profile = cli.cfg.profile,
                              .prefix = cli.cfg.prefix,
                              .match = &cli.cfg.match,
                              .reason = a.reason,
                              .scan_count = cli.cfg.scan_count,
                              .suspect_below_pct = (int)cli.cfg.suspect_below_pct,
                              .progress = sg_progress_update,
                              .progress_ud = &progress};
        sg_snapshot_result res;
        rc = sg_snapshot_take(&conn, store, &o, &res, &cli.err);
        sg_progress_done(&progress);
        int64_t pruned = 0;
        if (rc == 0)
            rc = sg_store_snapshot_prune(store, (int)cli.cfg.keep, cli.cfg.max_age_s, sg_now_ms(),
                                         &pruned, &cli.err);
        if (rc == 0)
            print_result(&cli, &res, conn.redacted, pruned);
    }
    sg_rconn_close(&conn);
    sg_store_free(store);
    rc = rc ? sg_cli_fail(&cli, rc) : 0;
    sg_cli_close(&cli);
    return rc;
}
