/* The webhook gate (`stormguard run`): the gate core (core.h) behind its
 * HTTP front end on a libuv loop. It owns the poller's listener, the
 * forwarder that delivers to the notifier, the Redis watcher, the periodic
 * snapshots and the rewarm, and the timer that ticks the core. SQLite
 * writes go through the core's journal (its writer thread). The daemon
 * (daemon.h) runs it with the admin API beside it. Loop thread only. */
#ifndef STORMGUARD_GATE_H
#define STORMGUARD_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stormguard/redis/watch.h"
#include "stormguard/config/config.h"
#include "stormguard/base/error.h"
#include "stormguard/base/procstat.h"
#include "stormguard/gate/core.h"

struct sg_watchset;
struct uv_loop_s;

typedef struct sg_gate sg_gate;

/* Starts the gate on loop with cfg (borrowed for its life): after
 * sg_gate_check, the claim on the store (sg_store_claim_new: another daemon on
 * it is an error naming its pid; sg_gate_free lets go), the core, the
 * listener, the forwarder, the watcher. *out is set either way: on error
 * (a bad downstream, the store, the listen address) what started is being
 * stopped; run the loop to its end, then sg_gate_free. */
int sg_gate_start(struct uv_loop_s *loop, const sg_config *cfg, sg_gate **out, sg_error *err);

/* What sg_gate_start checks of cfg before it opens the store, binds or
 * connects anything: a downstream that the forwarder takes, the generic
 * event pointers given together, the core's options and the storm
 * detector's ranges, the listen address and the TLS files. SG_EUSAGE with
 * the reason (the config command's pre-start check, and the daemon's). */
int sg_gate_check(const sg_config *cfg, sg_error *err);

/* Stops taking requests and starting deliveries: the listener closes
 * (requests waiting for their commit are answered first), the deliveries in
 * flight end and are recorded, the watcher stops; then stopped(ud). */
void sg_gate_stop(sg_gate *g, void (*stopped)(void *ud), void *ud);
bool sg_gate_stopping(const sg_gate *g);
/* After stopped, once nothing else submits to it (the admin API closed):
 * commits what is queued, closes the journal, then closed(ud). */
void sg_gate_close(sg_gate *g, void (*closed)(void *ud), void *ud);
/* Frees g (NULL is fine), after closed or once the loop ended. */
void sg_gate_free(sg_gate *g);

/* The gate core's options as cfg says (the daemon's, and the simulator's
 * stormguard): its strings are borrowed from cfg; the clock is the real one,
 * for the caller to replace. SG_EUSAGE for a value the core refuses. */
int sg_gate_core_opts(const sg_config *cfg, sg_core_opts *o, sg_error *err);

/* ---- for the admin API (admin.c), on the loop thread ---- */

sg_core *sg_gate_core(sg_gate *g);

typedef struct sg_gate_info {
    bool stopping;
    const char *downstream;             /* the notifier's URL */
    size_t inflight, backlog;           /* the forwarder's */
    uint64_t refused;                   /* requests the listener refused (http.h) */
    bool watched;                       /* false: Redis not watched (or no longer: stopping) */
    bool watched_elsewhere;             /* replicas: another holds the watcher's lock */
    sg_watch_report watch;              /* when watched: its strings valid until the loop turns */
    const struct sg_watchset *watchset; /* when watched: its Cluster masters (watchset.h) */
    bool redis_up;
    /* the newest snapshot the gate took that is good (complete, not
     * suspect): when it began (epoch ms) and its keys; 0 if none yet */
    int64_t snapshot_good_at_ms, snapshot_good_keys;
    int64_t snapshot_interval_s; /* [snapshot] interval; 0 when the gate takes no periodic
                                    snapshots (interval 0, no profile, Redis not watched) */
    bool process_known;          /* false until the first read of /proc ended */
    sg_procstat process;         /* read every second on the thread pool */
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

/* A flush is coming: a fresh snapshot of the profile's keys, and once it
 * committed the announce is confirmed: guard mode on, the wipe it causes
 * expected (no rewarm), an audit row. A refused announce (stopping, a
 * snapshot under way, Redis unreachable), a failed snapshot, or one that
 * committed after wait_ms (how long the caller waits for the answer; 0: no
 * limit) changes nothing: a caller gone does not flush, so no wipe may be
 * taken for its flush. done runs once, after the snapshot committed or
 * failed (r valid during the call). actor and reason are copied. */
void sg_gate_flush_announce(sg_gate *g, const char *actor, const char *reason, int64_t wait_ms,
                            sg_gate_announce_fn done, void *ud);

/* Whether an announce now would be refused before its snapshot (res.status
 * 0: it would go ahead), changing nothing: `stormguard flush --dry-run`. */
void sg_gate_flush_check(const sg_gate *g, sg_announce_result *res);

#endif
