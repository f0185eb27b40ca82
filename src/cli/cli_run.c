/* stormguard run: the webhook gate daemon. */
#include <stdio.h>

#include "cli.h"
#include "stormguard/gate/daemon.h"

int sg_cmd_run(int argc, char **argv)
{
    sg_cli_spec spec = {
        .command = "run",
        .usage = "--downstream URL [--listen ADDR:PORT] [--admin ADDR:PORT] [--db PATH]",
        .summary = "Runs the webhook gate. Point the poller's notifier URL at --listen; every\n"
                   "event is journaled in the store before it is answered 200 (503 with\n"
                   "Retry-After if it cannot be), classified against the latest snapshot's build\n"
                   "index and the gate's own ledger, and forwarded to the same method and path\n"
                   "on --downstream unless it replays a build announced before. Pending\n"
                   "deliveries resume after a restart. SIGTERM/SIGINT stop cleanly; SIGHUP\n"
                   "reopens --log-file. The admin API (--admin) serves /v1/status, /v1/events,\n"
                   "/metrics, /healthz and /readyz. Under systemd (Type=notify, NOTIFY_SOCKET)\n"
                   "it sends READY=1 once both listeners are bound and the store is open,\n"
                   "WATCHDOG=1 at half of WATCHDOG_USEC, RELOADING=1 and READY=1 around SIGHUP,\n"
                   "STOPPING=1. `stormguard config` makes its start-up checks without starting.",
    };
    sg_cli cli;
    int rc = sg_cli_parse(&cli, &spec, argc, argv);
    if (rc == 0)
        rc = sg_daemon_run(&cli.cfg, &cli.err);
    rc = rc ? sg_cli_fail(&cli, rc) : 0;
    sg_cli_close(&cli);
    return rc;
}
