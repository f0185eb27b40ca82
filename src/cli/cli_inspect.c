/* stormguard inspect: what is in this Redis, by namespace. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "stormguard/snapshot/inspect.h"
#include "stormguard/base/output.h"

enum { OPT_SAMPLES = 1 };

static const sg_cli_opt opts[] = {
    {"samples", "N", OPT_SAMPLES, "keys per namespace whose MEMORY USAGE is read (default 100)"},
    {NULL, NULL, 0, NULL},
};

static int on_opt(void *ud, int id, const char *arg, sg_error *err)
{
    if (id == OPT_SAMPLES && sg_parse_int64(arg, 0, 1000000, ud))
        return sg_error_set(err, SG_EUSAGE, "--samples: '%s' is not a number from 0 to 1000000",
                            arg);
    return 0;
}

/* Estimated bytes of a namespace: mean sampled size times its key count. */
static int64_t estimate(const sg_ns_stats *ns)
{
    return ns->sampled ? ns->sampled_bytes / ns->sampled * ns->keys : 0;
}

static void print_result(const sg_cli *cli, const sg_inspect_result *r, const char *redis)
{
    if (cli->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < r->namespace_count; i++) {
            const sg_ns_stats *ns = &r->namespaces[i];
            json_array_append_new(
                arr,
                json_pack("{s:s,s:I,s:I,s:f,s:I,s:I}", "namespace", ns->ns, "keys",
                          (json_int_t)ns->keys, "with_ttl", (json_int_t)ns->with_ttl, "ttl_share",
                          ns->keys ? (double)ns->with_ttl / (double)ns->keys : 0.0, "sampled",
                          (json_int_t)ns->sampled, "memory_estimate", (json_int_t)estimate(ns)));
        }
        sg_json_print(json_pack("{s:s,s:{s:s,s:I,s:I,s:s},s:i,s:i,s:I,s:f,s:o}", "redis", redis,
                                "server", "redis_version", r->redis_version, "used_memory",
                                (json_int_t)r->used_memory, "maxmemory", (json_int_t)r->maxmemory,
                                "maxmemory_policy", r->maxmemory_policy ? r->maxmemory_policy : "",
                                "db", r->db, "nodes", r->nodes, "keys", (json_int_t)r->keys,
                                "seconds", r->seconds, "namespaces", arr),
                      stdout);
        return;
    }
    char used[32], max[32];
    char cluster[48] = "";
    if (r->nodes > 1)
        snprintf(cluster, sizeof cluster, " (a Cluster: %d masters)", r->nodes);
    printf("%s%s: redis %s, db %d, %lld keys; memory %s used of %s, policy %s\n", redis, cluster,
           r->redis_version, r->db, (long long)r->keys,
           sg_human_bytes(r->used_memory, used, sizeof used),
           r->maxmemory ? sg_human_bytes(r->maxmemory, max, sizeof max) : "no limit",
           r->maxmemory_policy ? r->maxmemory_policy : "?");
    if (r->maxmemory && r->maxmemory_policy && !strncmp(r->maxmemory_policy, "allkeys-", 8))
        printf("warning: %s may evict the poller's keys under memory pressure (DOMAIN.md: "
               "eviction is a wipe)\n",
               r->maxmemory_policy);
    static const char *const head[] = {"NAMESPACE", "KEYS", "WITH_TTL", "EST_MEMORY"};
    sg_table *t = sg_table_new(4, head, "lrrr");
    for (size_t i = 0; i < r->namespace_count; i++) {
        const sg_ns_stats *ns = &r->namespaces[i];
        char keys[24], ttl[24], mem[32];
        snprintf(keys, sizeof keys, "%lld", (long long)ns->keys);
        snprintf(ttl, sizeof ttl, "%.0f%%",
                 ns->keys ? 100.0 * (double)ns->with_ttl / (double)ns->keys : 0.0);
        const char *row[] = {ns->ns[0] ? ns->ns : "(no namespace)", keys, ttl,
                             ns->sampled ? sg_human_bytes(estimate(ns), mem, sizeof mem) : "-"};
        sg_table_row(t, row);
    }
    sg_table_print(t, stdout);
    sg_table_free(t);
}

int sg_cmd_inspect(int argc, char **argv)
{
    int64_t samples = 100;
    sg_cli_spec spec = {
        .command = "inspect",
        .sections = "redis profile snapshot",
        .examples = "  stormguard inspect --redis redis://127.0.0.1:6379/0\n"
                    "  stormguard inspect --samples 5 --json",
        .usage = "[--redis URL] [--samples N] [--json]",
        .summary = "Shows a Redis keyspace by namespace (the text before the first ':'): keys,\n"
                   "share with a TTL and sampled memory; plus the server version, memory and\n"
                   "eviction policy. Read-only; uses SCAN, never KEYS.",
        .opts = opts,
        .on_opt = on_opt,
        .ud = &samples,
        .cluster = true,
    };
    sg_cli cli;
    int rc = sg_cli_parse(&cli, &spec, argc, argv);
    sg_rconn conn = {0};
    if (rc == 0)
        rc = sg_cli_connect(&cli, &conn);
    if (rc == 0) {
        sg_inspect_result res;
        rc = sg_inspect_run(&conn, cli.cfg.scan_count, samples, &res, &cli.err);
        if (rc == 0)
            print_result(&cli, &res, conn.redacted);
        sg_inspect_result_close(&res);
    }
    sg_rconn_close(&conn);
    rc = rc ? sg_cli_fail(&cli, rc) : 0;
    sg_cli_close(&cli);
    return rc;
}
