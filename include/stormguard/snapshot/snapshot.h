/* Moving keys between Redis and the store: snapshot (SCAN, then PTTL+DUMP per
 * page, streamed into one SQLite transaction), restore (RESTORE ... ABSTTL,
 * pipelined) and the safe flush built on both. */
#ifndef STORMGUARD_SNAPSHOT_H
#define STORMGUARD_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "stormguard/base/clock.h"
#include "stormguard/base/error.h"
#include "stormguard/snapshot/profile.h"
#include "stormguard/redis/rconn.h"
#include "stormguard/store/store.h"
#include "stormguard/store/snapshots.h"
#include "stormguard/base/util.h"

/* Called now and then during long runs with the keys done so far. */
typedef void (*sg_progress_fn)(void *ud, int64_t done, double elapsed_s);

/* How the keys are read: SCAN with pipelined DUMP (and PTTL where keys
 * expire), or the RDB Redis sends a replica on SYNC (a fork of Redis writes
 * it; one consistent cut, about half the server's work per key). */
typedef enum { SG_SNAPSHOT_SCAN = 0, SG_SNAPSHOT_SYNC } sg_snapshot_method;

/* "sync" is SG_SNAPSHOT_SYNC; anything else ([snapshot] method checks the
 * word) SG_SNAPSHOT_SCAN. */
sg_snapshot_method sg_snapshot_method_named(const char *name);

typedef struct sg_snapshot_opts {
    sg_snapshot_method method;
    sg_profile_kind profile;
    const char *prefix;       /* profile prefix, "igor" */
    const sg_strlist *match;  /* extra patterns; with no profile and none: all keys */
    const sg_strlist *select; /* if set, exactly these patterns (empty: all keys);
                                 the profile then only decodes */
    const char *reason;
    int64_t scan_count;
    const int *dbs; /* databases to take (NULL: the connection's) */
    int db_count;
    /* With a profile: a snapshot holding fewer than this percentage of the
     * profile keys the last good snapshot (sg_store_last_good) held is
     * committed as suspect. 0 disables the check. */
    int suspect_below_pct;
    sg_progress_fn progress;
    void *progress_ud;
    /* The time the snapshot is taken at and keys' expiries are measured
     * from, and the progress reports' pace; NULL: the real clock. */
    const sg_clock *clock;
} sg_snapshot_opts;

#define SG_SUSPECT_REASON_MAX 256

typedef struct sg_snapshot_result {
    int64_t id;
    int64_t keys, bytes, vanished, undecoded;
    int64_t profile_keys; /* keys matching the profile's pattern; -1 without profile */
    double seconds;
    sg_index_counts index;
    bool suspect; /* committed as suspect; then suspect_reason says why */
    char suspect_reason[SG_SUSPECT_REASON_MAX];
} sg_snapshot_result;

/* Takes a snapshot into the store. Either the whole snapshot commits, with
 * state complete or (see suspect_below_pct) suspect, or nothing is written. */
int sg_snapshot_take(sg_rconn *c, sg_store *s, const sg_snapshot_opts *o, sg_snapshot_result *out,
                     sg_error *err);

/* The patterns a snapshot with these options selects (profile's pattern plus
 * match); empty means every key. */
void sg_snapshot_patterns(const sg_snapshot_opts *o, sg_strlist *out);

/* The Redis type of a DUMP payload, from its first byte (the RDB object
 * type): "string", "list", "set", "zset", "hash", "stream", "module" or
 * "unknown". */
const char *sg_payload_type(const void *payload, size_t len);

typedef struct sg_restore_opts {
    bool replace;
    bool dry_run;
    const sg_strlist *match; /* empty: every key */
    sg_progress_fn progress;
    void *progress_ud;
    const sg_clock *clock; /* expiries are measured from its time; NULL: the real one */
} sg_restore_opts;

#define SG_RESTORE_REASONS 8
typedef struct sg_restore_result {
    int64_t restored, skipped_existing, skipped_expired, skipped_unmatched, failed;
    double seconds;
    struct {
        char *reason;
        int64_t count;
    } reasons[SG_RESTORE_REASONS]; /* distinct failure reasons, first seen */
    int reason_count;
} sg_restore_result;

/* Restores snapshot id (0: latest complete) into the connection's server.
 * Keys of a one-database snapshot go to the connection's database; a
 * snapshot of several databases restores each key into its own. */
int sg_restore_run(sg_rconn *c, sg_store *s, int64_t id, const sg_restore_opts *o,
                   sg_restore_result *out, sg_error *err);
void sg_restore_result_close(sg_restore_result *r);

#endif
