/* The daemon's snapshot and rewarm runners. Each call runs one job on the
 * libuv threadpool (uv_queue_work) with its own synchronous Redis connection
 * and its own store connection, both opened and closed inside the job, so
 * the loop never waits on Redis, SQLite or an fsync; the outcome comes back
 * through a callback on the loop thread. Jobs are independent: several may
 * run at once (a rewarm while a periodic snapshot is being written). */
#ifndef STORMGUARD_SIDECAR_H
#define STORMGUARD_SIDECAR_H

#include <stdbool.h>
#include <stdint.h>

#include "stormguard/base/error.h"
#include "stormguard/redis/redis_url.h"
#include "stormguard/snapshot/profile.h"
#include "stormguard/base/clock.h"
#include "stormguard/snapshot/snapshot.h"

struct uv_loop_s;

/* What a job works on. The call copies everything it needs: the strings may
 * go away as soon as it returns. */
typedef struct sg_sidecar_opts {
    const char *redis_url;         /* password from the URL, else STORMGUARD_REDIS_PASSWORD,
                                      else REDISCLI_AUTH (read at the call) */
    const sg_redis_tls *tls;       /* [redis] tls ... besides the URL's; may be NULL */
    const char *sentinel_password; /* [redis] sentinel_password; may be NULL */
    int connect_timeout_ms;
    int command_timeout_ms;  /* [redis] timeout; 0: SG_REDIS_TIMEOUT_MS */
    const char *db_path;     /* the store */
    sg_profile_kind profile; /* required: the key families taken and rewarmed */
    const char *prefix;      /* profile prefix; NULL: "igor" */
    int64_t scan_count;      /* 0: the SCAN default */
    sg_snapshot_method method;
    int64_t keep, max_age_s; /* retention applied after a snapshot, as the CLI does
                                (0, 0: keep everything) */
    int suspect_below_pct;   /* sg_snapshot_opts.suspect_below_pct; 0: off */
    /* the snapshot's time, the rewarm's audit row, retention by age; read on
     * the thread pool (the real clock is safe there); NULL: the real one */
    const sg_clock *clock;
} sg_sidecar_opts;

typedef struct sg_sidecar_result {
    int rc; /* 0 or a negative SG_E*; err says what failed */
    sg_error err;
    int64_t snapshot_id; /* taken, or rewarmed from; 0 if it never got that far */
    bool suspect;        /* snapshot: committed as suspect, suspect_reason says why */
    char suspect_reason[256];
    int64_t keys;         /* snapshot: keys taken; rewarm: profile keys of the snapshot */
    int64_t profile_keys; /* snapshot: keys matching the profile's pattern */
    int64_t restored, skipped_existing, skipped_expired, failed; /* rewarm */
    int64_t pruned; /* snapshot: old snapshots deleted by retention */
    double seconds; /* the job's wall time, connecting included */
} sg_sidecar_result;

/* Called once per job on the loop thread. r is valid during the call only. */
typedef void (*sg_sidecar_done)(void *ud, const sg_sidecar_result *r);

/* Takes a snapshot of the profile's keys (recorded with reason, e.g.
 * "periodic"), marks it suspect as sg_snapshot_take does, then prunes with
 * keep / max_age_s. rc != 0 with snapshot_id != 0 means the snapshot was
 * taken and pruning failed.
 *
 * Returns 0 once the job is queued: done will be called exactly once, and the
 * loop stays alive until then. Otherwise returns a negative SG_E* with err set
 * (a bad URL, no profile, uv_queue_work refused) and done is never called. */
int sg_sidecar_snapshot(struct uv_loop_s *loop, const sg_sidecar_opts *o, const char *reason,
                        sg_sidecar_done done, void *ud, sg_error *err);

/* Restores the profile's keys from snapshot_id (0: the last good snapshot of
 * this server, database and profile, never a suspect one; an explicit id may
 * name a suspect one) with RESTORE ... ABSTTL: only keys missing now come
 * back, an existing key is never overwritten, keys whose TTL has passed are
 * skipped. rc is SG_EREDIS when some keys failed (the counts are filled
 * anyway). Queuing, ownership and done as for sg_sidecar_snapshot. */
int sg_sidecar_rewarm(struct uv_loop_s *loop, const sg_sidecar_opts *o, int64_t snapshot_id,
                      sg_sidecar_done done, void *ud, sg_error *err);

#endif
