/* stormguard: dispatches to the subcommands (cli_*.c). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"run", sg_cmd_run, "the webhook gate daemon in front of the notifier"},
    {"status", sg_cmd_status, "what a running gate is doing"},
    {"events", sg_cmd_events, "recent events the gate journaled"},
    {"held", sg_cmd_held, "events the gate holds, per source and job"},
    {"release", sg_cmd_release, "release held events to the notifier"},
    {"drop", sg_cmd_drop, "drop held events (never forwarded)"},
    {"guard", sg_cmd_guard, "turn the gate's guard mode on or off"},
    {"snapshot", sg_cmd_snapshot, "snapshot the poller's Redis keys into the store"},
    {"snapshots", sg_cmd_snapshots, "list snapshots"},
    {"restore", sg_cmd_restore, "restore a snapshot into Redis (missing keys only by default)"},
    {"flush", sg_cmd_flush, "safe flush: refuse protected namespaces, snapshot, delete, verify"},
    {"inspect", sg_cmd_inspect, "keyspace by namespace, memory and eviction policy"},
    {"simulate", sg_cmd_simulate,
     "replay a storm scenario against stormguard and today's defences"},
    {"store", sg_cmd_store, "migrate the store's schema, or copy an SQLite store into PostgreSQL"},
    {"config", sg_cmd_config, "check the configuration as run would and print it"},
    {"version", sg_cmd_version, "print versions"},
};

static void usage(FILE *out)
{
    fputs("usage: stormguard <command> [options]\n\n"
          "stormguard keeps a CI poller's Redis cache from turning into a pipeline storm:\n"
          "it snapshots the poller's state, flushes safely and restores what was lost.\n\n"
          "commands:\n",
          out);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
    fputs("\nRun 'stormguard <command> --help' for its options.\n", out);
}

int main(int argc, char **argv)
{
    /* A peer that closed makes a write fail with EPIPE, which every caller
     * handles; OpenSSL writes to its sockets with write(), which would
     * raise SIGPIPE instead and end the process (a Redis or a downstream
     * dropping a TLS connection). */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))
        return sg_cmd_version(1, argv);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "stormguard: unknown command '%s' (see stormguard --help)\n", argv[1]);
    return 2;
}
