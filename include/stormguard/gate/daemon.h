/* `stormguard run`: the gate (gate.h) and the admin API (admin.h) on one
 * libuv loop, with the signals a daemon answers: SIGTERM and SIGINT stop it
 * cleanly, SIGHUP reopens the log file; under systemd it reports readiness,
 * reloads, the stop and a watchdog beat through sd_notify. */
#ifndef STORMGUARD_DAEMON_H
#define STORMGUARD_DAEMON_H

#include "stormguard/config/config.h"
#include "stormguard/base/error.h"

/* Runs until SIGTERM or SIGINT, then stops cleanly: stops accepting, lets
 * the deliveries in flight finish and records them, commits what is
 * queued, closes every handle. Returns 0, or an error if it could not
 * start. */
int sg_daemon_run(const sg_config *cfg, sg_error *err);

/* What sg_daemon_run checks before it opens the store or binds anything:
 * the admin token (read from token_file if set; required beyond loopback),
 * the admin listen address, and the gate's checks (sg_gate_check). The
 * token is never kept nor shown. SG_EUSAGE with the reason. */
int sg_daemon_check(const sg_config *cfg, sg_error *err);

#endif
