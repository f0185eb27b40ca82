/* The webhook gate daemon (`stormguard run`): the gate core (core.h) behind
 * the HTTP front end, on one libuv loop. It owns the listeners (the
 * poller's and the admin API's), the forwarder that delivers to the
 * notifier, the Redis watcher, the periodic snapshots and the rewarm, the
 * signals and the timer that ticks the core. SQLite writes go through the
 * core's journal (its writer thread). */
#ifndef STORMGUARD_GATE_H
#define STORMGUARD_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stormguard/base/config.h"
#include "stormguard/base/error.h"
#include "stormguard/gate/core.h"

struct sg_watch;

typedef struct sg_gate sg_gate;

/* Runs the daemon until SIGTERM or SIGINT, then stops cleanly: stops
 * accepting, lets the deliveries in flight finish and records them, commits
 * what is queued, closes every handle. Returns 0, or an error if it could
 * not start. */
int sg_gate_run(const sg_config *cfg, sg_error *err);

/* ---- for the admin API (admin.c), on the loop thread ---- */

sg_core *sg_gate_core(sg_gate *g);

typedef struct sg_gate_info {
    bool stopping;
    const char *downstream;       /* the notifier's URL */
    size_t inflight, backlog;     /* the forwarder's */
    uint64_t refused;             /* requests the listener refused (http.h) */
    const struct sg_watch *watch; /* NULL: Redis not watched */
    bool redis_up;
} sg_gate_info;
void sg_gate_info_get(const sg_gate *g, sg_gate_info *out);

/* The answer to a flush announce (stormguard flush, POST /v1/flush). */
typedef struct sg_announce_result {
    int status; /* 0; SG_EBUSY (a snapshot is being taken, or stopping); SG_EREDIS
                 * or SG_ESTORE (the pre-flush snapshot failed) */
    char error[SG_ERRMSG_MAX + 64];
    int retry_after; /* seconds, when it is worth asking again soon */
    int64_t snapshot_id;
    bool suspect;
} sg_announce_result;
typedef void (*sg_gate_announce_fn)(void *ud, const sg_announce_result *r);

/* A flush is coming: guard mode on, the wipe it causes expected (no
 * rewarm), an audit row, and a fresh snapshot of the profile's keys; done
 * runs once, after the snapshot committed or failed (r valid during the
 * call). actor and reason are copied. */
void sg_gate_flush_announce(sg_gate *g, const char *actor, const char *reason,
                            sg_gate_announce_fn done, void *ud);

#endif
