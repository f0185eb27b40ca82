/* The command line: one entry point per subcommand (cli_<name>.c) and the
 * helpers they share for options, configuration, connecting and opening the
 * store, so no subcommand repeats another's plumbing. */
#ifndef STORMGUARD_CLI_H
#define STORMGUARD_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "stormguard/config/config.h"
#include "stormguard/base/error.h"
#include "stormguard/redis/rconn.h"
#include "stormguard/store/store.h"
#include "stormguard/base/util.h"

struct json_t;

typedef struct sg_cli {
    const char *command;
    sg_config cfg;
    bool json;
    bool cluster; /* the command covers a Redis Cluster (its spec says so) */
    int nargs;    /* positional arguments left after the options */
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
    const char *usage;      /* after "stormguard <command> " */
    const char *summary;    /* paragraph for --help */
    const sg_cli_opt *opts; /* terminated by {NULL} */
    int max_args;
    /* Called for each of the subcommand's options; returns 0 or an error. */
    int (*on_opt)(void *ud, int id, const char *arg, sg_error *err);
    void *ud;
    /* The command's own defaults over the built-in ones, before the file
     * and the flags (NULL: none). */
    void (*defaults)(sg_config *cfg);
    /* The configuration sections the command reads, "redis store" ("*":
     * all; NULL: none): --help lists their flags. Every configuration flag
     * is accepted by every command all the same (one file serves all). */
    const char *sections;
    const char *examples; /* for --help: lines "stormguard ...  # what", or NULL */
    /* The command covers every master of a Redis Cluster; without this
     * sg_cli_connect refuses a Cluster node (rconn.h,
     * sg_rconn_check_standalone). */
    bool cluster;
} sg_cli_spec;

/* run's defaults: the Igor profile (the gate snapshots Igor's keys). */
void sg_cli_run_defaults(sg_config *cfg);

/* Parses argv for the subcommand: its own options, then -c FILE, --json,
 * --help and every configuration flag. Loads the config (defaults, file,
 * environment, flags). Returns 0, 1 when --help was printed, or an error
 * (in cli->err). */
int sg_cli_parse(sg_cli *cli, const sg_cli_spec *spec, int argc, char **argv);
void sg_cli_close(sg_cli *cli);

/* Connects to the configured Redis (password from URL or environment); a
 * Cluster node only for a command whose spec covers Cluster. */
int sg_cli_connect(sg_cli *cli, sg_rconn *conn);
/* Opens the configured store read-write (migrating it). */
int sg_cli_open_store(sg_cli *cli, sg_store **store);

/* How long one admin API call may take: a read; a change (release, drop,
 * guard: a journal transaction that may queue behind a storm's commits); the
 * flush announce (the daemon takes a snapshot before it answers). */
#define SG_CLI_ADMIN_READ_MS 10000L
#define SG_CLI_ADMIN_WRITE_MS 30000L
#define SG_CLI_ADMIN_FLUSH_MS 120000L

/* Sends one request to the running daemon's admin API ([admin] listen, with
 * the configured bearer token). json_body (NULL for none) goes as
 * application/json; timeout_ms bounds the whole exchange. On a 2xx answer
 * returns 0, appends the answer to body and sets *status. Otherwise returns
 * an error naming the admin API and showing the daemon's "error" text:
 * SG_EIO when it is unreachable, answers 5xx or an unexpected status,
 * SG_EUSAGE for 400, 422 and 401 (the token), SG_EREFUSED for 403 and 409. */
int sg_cli_admin_request(sg_cli *cli, const char *method, const char *path, const char *json_body,
                         long timeout_ms, sg_buf *body, long *status);

/* sg_cli_admin_request with JSON both ways: request (NULL for none; not
 * stolen) is sent compact, the answer must be JSON. On success *answer is the
 * parsed answer (the caller decrefs it) and, when raw is not NULL, the text as
 * received is appended to raw (what --json prints). */
int sg_cli_admin_json(sg_cli *cli, const char *method, const char *path, struct json_t *request,
                      long timeout_ms, struct json_t **answer, sg_buf *raw);

/* Prints a daemon's document as received, on one line of stdout (--json). */
void sg_cli_print_raw(const sg_buf *raw);

/* Who runs the command, for the daemon's audit: "$USER@host" ("cli" for an
 * unknown user; the host is left out when unknown). */
void sg_cli_actor(char *buf, size_t size);

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
int sg_cmd_held(int argc, char **argv);
int sg_cmd_release(int argc, char **argv);
int sg_cmd_drop(int argc, char **argv);
int sg_cmd_guard(int argc, char **argv);
int sg_cmd_simulate(int argc, char **argv);
int sg_cmd_config(int argc, char **argv);
int sg_cmd_store(int argc, char **argv);

#endif
