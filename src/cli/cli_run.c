/* stormguard run: the webhook gate daemon. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "stormguard/gate/daemon.h"

void sg_cli_run_defaults(sg_config *cfg)
{
    cfg->profile = SG_PROFILE_IGOR;
}

enum { OPT_OBSERVE = 1 };

static int on_opt(void *ud, int id, const char *arg, sg_error *err)
{
    (void)arg;
    (void)err;
    *(bool *)ud = id == OPT_OBSERVE;
    return 0;
}

int sg_cmd_run(int argc, char **argv)
{
    static const sg_cli_opt opts[] = {
        {"observe", NULL, OPT_OBSERVE,
         "observe mode ([gate] mode = observe): forward everything, count what would have been "
         "suppressed or held"},
        {NULL, NULL, 0, NULL},
    };
    bool observe = false;
    sg_cli_spec spec = {
        .command = "run",
        .sections = "*",
        .examples =
            "  stormguard run --downstream http://spin-echo:8089 --redis redis://127.0.0.1:6379/0\n"
            "  stormguard run -c /etc/stormguard/stormguard.ini --observe",
        .usage =
            "--downstream URL [--listen ADDR:PORT] [--admin ADDR:PORT] [--db PATH] [--observe]",
        .summary =
            "Runs the webhook gate. Point the poller's notifier URL at --listen; every\n"
            "event is journaled in the store before it is answered 200 (503 with\n"
            "Retry-After if it cannot be), classified against the latest snapshot's build\n"
            "index and the gate's own ledger, and forwarded to the same method and path\n"
            "on --downstream unless it replays a build announced before. Pending\n"
            "deliveries resume after a restart. SIGTERM/SIGINT stop cleanly; SIGHUP\n"
            "reopens --log-file. The admin API (--admin) serves /v1/status, /v1/events,\n"
            "/metrics, /livez (or /healthz) and /readyz. Under systemd (Type=notify,\n"
            "NOTIFY_SOCKET) it sends READY=1 once both listeners are bound and the store is\n"
            "open, WATCHDOG=1 at half of WATCHDOG_USEC, RELOADING=1 and READY=1 around\n"
            "SIGHUP, STOPPING=1. `stormguard config` makes its start-up checks without\n"
            "starting.\n"
            "\n"
            "The gate snapshots the Igor profile's keys (--profile igor is run's default;\n"
            "--prefix for another spinnaker.jedis.prefix); it refuses --profile none,\n"
            "which would snapshot nothing. One daemon per store: a second run on the\n"
            "same --db exits 1 naming the first one's pid.\n"
            "\n"
            "It watches --redis for wipes: one server, the master a Sentinel set names\n"
            "(redis-sentinel://, following failovers), or every master of a Redis\n"
            "Cluster named by any of its nodes (a canary per master; a promoted replica\n"
            "is watched in its master's place).\n"
            "\n"
            "--observe (or [gate] mode = observe) forwards every event as if stormguard\n"
            "were not there, while classifying, journaling and counting what it would have\n"
            "suppressed, held or dropped (status, events, metrics): run it so for a while\n"
            "before trusting it.",
        .opts = opts,
        .on_opt = on_opt,
        .ud = &observe,
        .defaults = sg_cli_run_defaults,
    };
    sg_cli cli;
    int rc = sg_cli_parse(&cli, &spec, argc, argv);
    if (rc == 0 && observe) { /* the flag wins over the file */
        free(cli.cfg.gate_mode);
        cli.cfg.gate_mode = sg_xstrdup("observe");
    }
    if (rc == 0)
        rc = sg_daemon_run(&cli.cfg, &cli.err);
    rc = rc ? sg_cli_fail(&cli, rc) : 0;
    sg_cli_close(&cli);
    return rc;
}
