/* `stormguard run` (daemon.h).
 *
 * Stopping: the gate stops (its listener closes, its deliveries in flight
 * end) while the admin listener closes; once both are done nothing else can
 * submit to the journal, so the gate closes it, and the signal handles and
 * the watchdog timer go last.
 *
 * Under systemd (Type=notify) the daemon tells its manager through
 * sd_notify: READY=1 once both listeners are bound and the store is open,
 * WATCHDOG=1 from a loop timer at half the WATCHDOG_USEC it was given (a
 * loop that stops turning misses it and is restarted), RELOADING=1 and
 * READY=1 around SIGHUP's reopening of the log file, STOPPING=1 when a
 * stop begins. Without NOTIFY_SOCKET every call does nothing. The watchdog
 * keeps beating while the daemon stops: a clean stop may wait up to
 * [forward] timeout for the deliveries in flight. */
#include "stormguard/gate/daemon.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <uv.h>

#include "stormguard/base/log.h"
#include "stormguard/gate/admin.h"
#include "stormguard/gate/gate.h"
#include "stormguard/gate/http.h"

typedef struct run_state {
    uv_loop_t loop;
    const sg_config *cfg;
    sg_gate *gate;
    sg_http *admin_http;
    sg_admin admin;
    char *admin_token;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t watchdog; /* started only when systemd asks for it */
    bool signals, watchdog_on, stopping;
    int stop_waits;
} run_state;

static void on_closed_signal(uv_handle_t *h)
{
    (void)h;
}

static void on_gate_closed(void *ud)
{
    run_state *d = ud;
    if (!d->signals)
        return;
    uv_close((uv_handle_t *)&d->sigterm, on_closed_signal);
    uv_close((uv_handle_t *)&d->sigint, on_closed_signal);
    uv_close((uv_handle_t *)&d->sighup, on_closed_signal);
    if (d->watchdog_on)
        uv_close((uv_handle_t *)&d->watchdog, on_closed_signal);
}

static void on_part_stopped(void *ud)
{
    run_state *d = ud;
    if (--d->stop_waits > 0)
        return;
    d->admin_http = NULL;
    sg_gate_close(d->gate, on_gate_closed, d);
}

static void stop(run_state *d, const char *why)
{
    if (d->stopping)
        return;
    d->stopping = true;
    (void)sd_notify(0, "STOPPING=1"); /* nothing to do if systemd is not told */
    sg_gate_info gi;
    sg_gate_info_get(d->gate, &gi);
    sg_log(SG_LOG_INFO, "gate",
           "%s: stopping (finishing commits in flight and %zu deliveries, at most %llds)", why,
           gi.inflight, (long long)d->cfg->forward_timeout_s);
    d->stop_waits = 1 + (d->admin_http != NULL);
    sg_gate_stop(d->gate, on_part_stopped, d);
    if (d->admin_http)
        sg_http_stop(d->admin_http, on_part_stopped, d);
}

static void on_signal(uv_signal_t *s, int signum)
{
    run_state *d = s->data;
    if (signum == SIGHUP) {
        /* systemd 253's reload protocol wants the time the reload began,
         * on CLOCK_MONOTONIC (uv_hrtime's clock; clock.h) */
        (void)sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
                         (unsigned long long)(uv_hrtime() / 1000));
        sg_log_reopen();
        (void)sd_notify(0, "READY=1");
        return;
    }
    stop(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static bool loopback(const char *listen)
{
    return !strncmp(listen, "127.", 4) || !strncmp(listen, "[::1]:", 6) ||
           !strncmp(listen, "localhost:", 10);
}

/* The admin token; none is allowed only on loopback. */
static int admin_token(const sg_config *c, char **out, sg_error *err)
{
    int rc = sg_config_admin_token(c, out, err);
    if (rc == 0 && !*out && !loopback(c->admin_listen))
        return sg_error_set(err, SG_EUSAGE,
                            "the admin API listens on %s, beyond loopback, but no admin token "
                            "is configured ([admin] token or token_file)",
                            c->admin_listen);
    return rc;
}

static void admin_opts(const sg_config *c, sg_http_opts *o)
{
    *o = (sg_http_opts){.listen = c->admin_listen,
                        .max_body = 64 << 10,
                        .max_header = (size_t)c->max_header,
                        .read_timeout_ms = (int)(c->read_timeout_s * 1000),
                        .max_connections = 64};
}

/* The daemon's own part of the checks (the gate's are sg_gate_check's):
 * the profile, the admin token (*token, NULL when none is set; the
 * caller owns it) and the admin address. */
static int check_daemon(const sg_config *cfg, char **token, sg_error *err)
{
    /* the profile's keys are what the gate's snapshots hold (DESIGN.md):
     * without them no snapshot is ever taken, a wipe's replays of builds
     * announced before the gate ran cannot be told from new ones, and a
     * flush announce can never be confirmed */
    if (cfg->profile == SG_PROFILE_NONE) {
        sg_error_set(err, SG_EUSAGE,
                     "none: the gate would never snapshot the poller's state, so it guards "
                     "nothing but its own ledger; run it with the poller's profile (igor, "
                     "the default)");
        return sg_config_blame(cfg, "profile", "name", err);
    }
    *token = NULL;
    int rc = admin_token(cfg, token, err);
    if (rc)
        return sg_config_blame(cfg, "admin",
                               cfg->admin_token        ? "token"
                               : cfg->admin_token_file ? "token_file"
                                                       : "listen",
                               err);
    sg_http_opts ao;
    admin_opts(cfg, &ao);
    if ((rc = sg_http_check(&ao, err))) {
        explicit_bzero(*token, *token ? strlen(*token) : 0);
        free(*token);
        *token = NULL;
        return sg_config_blame(cfg, "admin", "listen", err);
    }
    return 0;
}

int sg_daemon_check(const sg_config *cfg, sg_error *err)
{
    char *token = NULL;
    int rc = check_daemon(cfg, &token, err);
    if (token) {
        explicit_bzero(token, strlen(token));
        free(token);
    }
    return rc ? rc : sg_gate_check(cfg, err);
}

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    (void)sd_notify(0, "WATCHDOG=1");
}

/* WATCHDOG=1 every half of the period systemd gave (WATCHDOG_USEC), when it
 * gave one to this process. */
static void start_watchdog(run_state *d)
{
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return;
    uint64_t every_ms = usec / 2000;
    if (every_ms == 0)
        every_ms = 1;
    if (uv_timer_init(&d->loop, &d->watchdog) != 0)
        return; /* only fails for a bad loop */
    d->watchdog.data = d;
    d->watchdog_on = true; /* initialised: closed with the signal handles */
    int rc = uv_timer_start(&d->watchdog, on_watchdog, every_ms, every_ms);
    if (rc) {
        sg_log(SG_LOG_ERROR, "gate", "systemd watchdog: cannot start its timer: %s",
               uv_strerror(rc));
        return;
    }
    sg_log(SG_LOG_INFO, "gate", "systemd watchdog: WATCHDOG=1 every %llu ms",
           (unsigned long long)every_ms);
}

static int start(run_state *d, sg_error *err)
{
    const sg_config *c = d->cfg;
    int rc;
    /* the gate checks its part, then claims the store, before it opens it */
    if ((rc = check_daemon(c, &d->admin_token, err)) ||
        (rc = sg_gate_start(&d->loop, c, &d->gate, err)))
        return rc;
    d->admin = (sg_admin){.gate = d->gate, .token = d->admin_token};
    sg_http_opts ao;
    admin_opts(c, &ao);
    if ((rc = sg_http_start(&d->loop, &ao, sg_admin_handle, &d->admin, &d->admin_http, err)))
        return sg_error_prefix(err, "admin API");
    uv_signal_init(&d->loop, &d->sigterm);
    uv_signal_init(&d->loop, &d->sigint);
    uv_signal_init(&d->loop, &d->sighup);
    d->sigterm.data = d->sigint.data = d->sighup.data = d;
    uv_signal_start(&d->sigterm, on_signal, SIGTERM);
    uv_signal_start(&d->sigint, on_signal, SIGINT);
    uv_signal_start(&d->sighup, on_signal, SIGHUP);
    d->signals = true;
    sg_core_stats st;
    sg_core_stats_get(sg_gate_core(d->gate), &st);
    sg_log(SG_LOG_INFO, "gate",
           "listening on %s (admin %s%s), forwarding to %s; baseline snapshot %lld (%zu jobs), "
           "ledger %lld builds of %zu jobs, %lld events pending",
           c->listen, c->admin_listen, d->admin_token ? ", token required" : "", c->downstream,
           (long long)st.baseline_id, st.baseline_jobs, (long long)st.ledger_builds, st.ledger_jobs,
           (long long)st.pending);
    start_watchdog(d);
    (void)sd_notifyf(0, "READY=1\nSTATUS=listening on %s (admin %s), forwarding to %s", c->listen,
                     c->admin_listen, c->downstream);
    return 0;
}

int sg_daemon_run(const sg_config *cfg, sg_error *err)
{
    int rc = sg_log_open(cfg->log_format, cfg->log_file, err);
    if (rc)
        return rc;
    sg_hash_seed_random();
    run_state *d = sg_xcalloc(1, sizeof *d);
    d->cfg = cfg;
    uv_loop_init(&d->loop);
    rc = start(d, err);
    if (rc && d->gate && !sg_gate_stopping(d->gate)) /* the admin API failed */
        stop(d, "start failed");
    uv_run(&d->loop, UV_RUN_DEFAULT);
    int busy = uv_loop_close(&d->loop);
    if (rc == 0 && busy)
        sg_log(SG_LOG_WARN, "gate", "libuv handles still open at exit: %s", uv_strerror(busy));
    if (rc == 0)
        sg_log(SG_LOG_INFO, "gate", "stopped");
    sg_gate_free(d->gate);
    free(d->admin_token);
    free(d);
    sg_log_close();
    return rc;
}
