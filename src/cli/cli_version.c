/* stormguard version: this build and the libraries it runs on. */
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>

#include "cli.h"
#include "stormguard/base/output.h"

int sg_cmd_version(int argc, char **argv)
{
    sg_cli_spec spec = {.command = "version",
                        .usage = "[--json]",
                        .summary = "Prints the version of stormguard and of its libraries."};
    sg_cli cli;
    int rc = sg_cli_parse(&cli, &spec, argc, argv);
    if (rc == 0) {
        char hiredis[16];
        snprintf(hiredis, sizeof hiredis, "%d.%d.%d", HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
        if (cli.json)
            sg_json_print(json_pack("{s:s,s:s,s:s,s:s,s:i}", "stormguard", SG_VERSION, "hiredis",
                                    hiredis, "sqlite", sqlite3_libversion(), "jansson",
                                    JANSSON_VERSION, "schema", sg_migration_count),
                          stdout);
        else
            printf("stormguard %s (hiredis %s, sqlite %s, jansson %s, schema %d)\n", SG_VERSION,
                   hiredis, sqlite3_libversion(), JANSSON_VERSION, sg_migration_count);
    }
    rc = rc ? sg_cli_fail(&cli, rc) : 0;
    sg_cli_close(&cli);
    return rc;
}
