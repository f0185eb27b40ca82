/* stormguard store: the store itself. `store migrate` brings a store's
 * schema to this stormguard's version (every open read-write does the
 * same; this does only that, for a deploy step before the daemons start). */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "stormguard/base/output.h"

static int store_migrate(sg_cli *cli)
{
    sg_store *store;
    int rc = sg_cli_open_store(cli, &store);
    if (rc)
        return rc;
    int version = sg_store_schema_version(store);
    if (cli->json)
        sg_json_print(json_pack("{s:s,s:s,s:i}", "store", sg_store_path(store), "backend",
                                sg_store_shared(store) ? "postgresql" : "sqlite", "schema",
                                version),
                      stdout);
    else
        printf("store %s: schema version %d (%s)\n", sg_store_path(store), version,
               sg_store_shared(store) ? "postgresql" : "sqlite");
    sg_store_free(store);
    return 0;
}

int sg_cmd_store(int argc, char **argv)
{
    sg_cli_spec spec = {
        .command = "store",
        .usage = "migrate [--store URL | --db PATH] [--json]",
        .summary = "migrate: creates the store's tables or brings them to this stormguard's "
                   "schema version, and prints it. Every command that opens the store "
                   "read-write migrates it too; run this as a deploy step before the daemons "
                   "start. Several daemons migrating one PostgreSQL store at once take turns.",
        .max_args = 1,
        .sections = "store",
        .examples = "stormguard store migrate --store postgresql://stormguard@db:5432/stormguard\n"
                    "PGPASSFILE=/etc/stormguard/pgpass stormguard store migrate -c "
                    "/etc/stormguard/stormguard.ini"};
    sg_cli cli;
    int rc = sg_cli_parse(&cli, &spec, argc, argv);
    if (rc == 0 && (cli.nargs != 1 || strcmp(cli.args[0], "migrate") != 0))
        rc = sg_error_set(&cli.err, SG_EUSAGE, "give what to do: migrate (see --help)");
    if (rc == 0)
        rc = store_migrate(&cli);
    rc = rc ? sg_cli_fail(&cli, rc) : 0;
    sg_cli_close(&cli);
    return rc;
}
