/* The command line: one entry point per subcommand (cli_<name>.c) and the
 * helpers they share for options, configuration, connecting and opening the
 * store, so no subcommand repeats another's plumbing. */
#ifndef STORMGUARD_CLI_H
#define STORMGUARD_CLI_H

#include <stdbool.h>

#include "stormguard/config.h"
#include "stormguard/error.h"
#include "stormguard/rconn.h"
#include "stormguard/store.h"
#include "stormguard/util.h"

#define SG_VERSION "0.1.0"

typedef struct sg_cli {
    const char *command;
    sg_config cfg;
    bool json;
    int nargs;      /* positional arguments left after the options */
    char **args;
    sg_error err;
} sg_cli;

/* A subcommand's own option. id > 0 is passed to the handler; arg names the
 * value (NULL for a switch). */
typedef struct sg_cli_opt {
    const char *name;
    const char *arg;
    int id;
    const char *help;
} sg_cli_opt;

typedef struct sg_cli_spec {
    const char *command;
    const char *usage;   /* after "stormguard <command> " */
    const char *summary; /* paragraph for --help */
    const sg_cli_opt *opts; /* terminated by {NULL} */
    int max_args;
    /* Called for each of the subcommand's options; returns 0 or an error. */
    int (*on_opt)(void *ud, int id, const char *arg, sg_error *err);
    void *ud;
} sg_cli_spec;

/* Parses argv for the subcommand: its own options, then -c FILE, --json,
 * --help and every configuration flag. Loads the config (defaults, file,
 * environment, flags). Returns 0, 1 when --help was printed, or an error
 * (in cli->err). */
int sg_cli_parse(sg_cli *cli, const sg_cli_spec *spec, int argc, char **argv);
void sg_cli_close(sg_cli *cli);

/* Connects to the configured Redis (password from URL or environment). */
int sg_cli_connect(sg_cli *cli, sg_rconn *conn);
/* Opens the configured store read-write (migrating it). */
int sg_cli_open_store(sg_cli *cli, sg_store **store);

/* GETs path from the running daemon's admin API ([admin] listen, with the
 * configured token); body receives the answer and *status its HTTP status. */
int sg_cli_admin_get(sg_cli *cli, const char *path, sg_buf *body, long *status);

/* Prints cli->err as "stormguard <command>: message" and returns the exit
 * code for rc. */
int sg_cli_fail(sg_cli *cli, int rc);

int sg_cmd_snapshot(int argc, char **argv);
int sg_cmd_snapshots(int argc, char **argv);
int sg_cmd_restore(int argc, char **argv);
int sg_cmd_flush(int argc, char **argv);
int sg_cmd_inspect(int argc, char **argv);
int sg_cmd_version(int argc, char **argv);
int sg_cmd_run(int argc, char **argv);
int sg_cmd_status(int argc, char **argv);
int sg_cmd_events(int argc, char **argv);

#endif
