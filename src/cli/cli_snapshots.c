/* stormguard snapshots: list the snapshots in the store. */
#include <jansson.h>
#include <stdio.h>

#include "cli.h"
#include "stormguard/base/output.h"
#include "stormguard/base/util.h"
#include "stormguard/store/snapshots.h"

/* A Cluster snapshot's masters: [{node, address, slots, keys}], NULL for
 * one server (or if they cannot be read: the listing goes on). */
static json_t *nodes_json(sg_store *store, int64_t id)
{
    sg_snapshot_node *nodes = NULL;
    size_t n = 0;
    sg_error err;
    if (sg_store_snapshot_nodes(store, id, &nodes, &n, &err) || n == 0)
        return NULL;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:i,s:s,s:s,s:I}", "node", nodes[i].node, "address",
                                             nodes[i].address, "slots", nodes[i].slots, "keys",
                                             (json_int_t)nodes[i].keys));
    sg_snapshot_nodes_free(nodes, n);
    return arr;
}

static void print_list(const sg_cli *cli, sg_store *store, const sg_snapshot_info *list, size_t n)
{
    char when[40], size[32], keys[24], id[24];
    if (cli->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            sg_format_time(list[i].taken_at_ms, when, sizeof when);
            json_t *row = json_pack(
                "{s:I,s:s,s:s,s:I,s:I,s:s,s:f,s:s,s:s?,s:s,s:s,s:i,s:I,s:s?}", "id",
                (json_int_t)list[i].id, "taken_at", when, "reason", list[i].reason, "keys",
                (json_int_t)list[i].key_count, "bytes", (json_int_t)list[i].bytes, "state",
                list[i].state, "seconds", list[i].seconds, "redis", list[i].redis, "redis_version",
                list[i].redis_version, "profile", list[i].profile, "selection", list[i].selection,
                "db", list[i].db, "vanished", (json_int_t)list[i].vanished, "suspect_reason",
                list[i].suspect_reason);
            if (list[i].profile_keys >= 0)
                json_object_set_new(row, "profile_keys", json_integer(list[i].profile_keys));
            json_t *nodes = nodes_json(store, list[i].id);
            if (nodes)
                json_object_set_new(row, "nodes", nodes);
            json_array_append_new(arr, row);
        }
        sg_json_print(json_pack("{s:o}", "snapshots", arr), stdout);
        return;
    }
    if (n == 0) {
        printf("no snapshots in %s\n", sg_store_path(store));
        return;
    }
    static const char *const head[] = {"ID",    "TAKEN_AT", "REASON",   "KEYS",
                                       "BYTES", "STATE",    "SELECTION"};
    sg_table *t = sg_table_new(7, head, "rllrrll");
    for (size_t i = 0; i < n; i++) {
        snprintf(id, sizeof id, "%lld", (long long)list[i].id);
        snprintf(keys, sizeof keys, "%lld", (long long)list[i].key_count);
        sg_format_time(list[i].taken_at_ms, when, sizeof when);
        const char *row[] = {id,
                             when,
                             list[i].reason,
                             keys,
                             sg_human_bytes(list[i].bytes, size, sizeof size),
                             list[i].state,
                             list[i].selection};
        sg_table_row(t, row);
    }
    sg_table_print(t, stdout);
    sg_table_free(t);
    for (size_t i = 0; i < n; i++)
        if (list[i].suspect_reason)
            printf("snapshot %lld is suspect: %s\n", (long long)list[i].id, list[i].suspect_reason);
    for (size_t i = 0; i < n; i++) {
        sg_snapshot_node *nodes = NULL;
        size_t count = 0;
        sg_error err;
        if (sg_store_snapshot_nodes(store, list[i].id, &nodes, &count, &err) || !count)
            continue;
        printf("snapshot %lld read a Cluster of %zu masters:", (long long)list[i].id, count);
        for (size_t j = 0; j < count; j++)
            printf("%s %s (slots %s) %lld keys", j ? ";" : "", nodes[j].address, nodes[j].slots,
                   (long long)nodes[j].keys);
        printf("\n");
        sg_snapshot_nodes_free(nodes, count);
    }
}

int sg_cmd_snapshots(int argc, char **argv)
{
    sg_cli_spec spec = {
        .command = "snapshots",
        .sections = "store",
        .examples = "  stormguard snapshots --db /var/lib/stormguard/stormguard.db",
        .usage = "[--db PATH] [--json]",
        .summary = "Lists the snapshots in the store, newest first. A suspect snapshot (far\n"
                   "fewer profile keys than the last good one) is listed with its reason; a\n"
                   "snapshot of a Redis Cluster with its masters, their slots and keys (a key\n"
                   "came from the master whose slots hold its own).",
    };
    sg_cli cli;
    int rc = sg_cli_parse(&cli, &spec, argc, argv);
    sg_store *store = NULL;
    if (rc == 0) {
        sg_store_options opt = {.readonly = true};
        rc = sg_store_open(sg_config_store(&cli.cfg), &opt, &store, &cli.err);
    }
    if (rc == 0) {
        sg_snapshot_info *list;
        size_t n;
        rc = sg_store_snapshot_list(store, &list, &n, &cli.err);
        if (rc == 0) {
            print_list(&cli, store, list, n);
            sg_snapshot_list_free(list, n);
        }
    }
    sg_store_free(store);
    rc = rc ? sg_cli_fail(&cli, rc) : 0;
    sg_cli_close(&cli);
    return rc;
}
