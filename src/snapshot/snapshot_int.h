/* What the files of the snapshot module share: snapshot.c (the options and
 * the lifecycle of one snapshot: its transaction, storing each key with its
 * part of the build index, the suspect check, the commit), the two methods
 * that read the keys, scan.c (SCAN with pipelined DUMP) and sync.c (the RDB
 * of a replica's SYNC), and restore.c; snapshot and restore report progress
 * the same way. Private to them: nothing else includes it. */
#ifndef STORMGUARD_SNAPSHOT_INT_H
#define STORMGUARD_SNAPSHOT_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "stormguard/snapshot/profile.h"
#include "stormguard/snapshot/snapshot.h"

/* Progress reports to an sg_progress_fn, at most four a second. */
typedef struct sg_snap_progress {
    const sg_clock *clock;
    sg_progress_fn fn; /* NULL: no reports */
    void *ud;
    double started, last; /* the clock's monotonic seconds */
} sg_snap_progress;

/* Starts the clock of a run: its elapsed time counts from now. clock NULL:
 * the real one. */
void sg_snap_progress_init(sg_snap_progress *p, const sg_clock *clock, sg_progress_fn fn, void *ud);

/* Seconds since sg_snap_progress_init. */
double sg_snap_progress_elapsed(const sg_snap_progress *p);

/* Reports done (units finished so far) if there is a callback and the last
 * report is a quarter second old, or always when final. */
void sg_snap_progress_tick(sg_snap_progress *p, int64_t done, bool final);

/* One snapshot being taken (sg_snapshot_take), inside its transaction. */
typedef struct sg_snap {
    sg_rconn *c; /* the caller's connection */
    sg_store *s;
    const sg_snapshot_opts *o;
    const sg_clock *clock; /* o's, or the real one */
    sg_snapshot_result *res;
    const char *prefix; /* the profile's, "igor" by default */
    int db;             /* the database of the keys being taken */
    bool count_profile; /* res->profile_keys is counted */
    bool with_ttl;      /* scan: the database has keys with an expiry: PTTL each key */
    sg_snap_progress progress;
} sg_snap;

/* Whether key (binary, len bytes) is one of the profile's: an Igor key under
 * the prefix, parsed into out. */
bool sg_snap_profile_key(const sg_snap *sn, const char *key, size_t len, sg_igor_key *out);

/* Stores a key of database sn->db with its DUMP payload and absolute expiry
 * (0: none) into the snapshot, counts it in sn->res and, for a profile key
 * (igor, else NULL), stores its rows of the build index. */
int sg_snap_take_key(sg_snap *sn, const char *key, size_t klen, int64_t expire_at,
                     const char *payload, size_t len, const sg_igor_key *igor, sg_error *err);

/* The SCAN method (scan.c): takes the keys matching patterns (empty: all)
 * of databases dbs[0..ndb), leaving the caller's connection on whichever
 * database it used last. Returns SG_SNAP_AGAIN when a key with an expiry
 * appeared while PTTL was not asked: the caller aborts the transaction and
 * takes the snapshot again (sn->with_ttl is set by then). */
#define SG_SNAP_AGAIN (-1000)
int sg_snap_scan(sg_snap *sn, const sg_strlist *patterns, const int *dbs, int ndb, sg_error *err);

/* The SCAN method on servers nodes[0..n) at once, database 0 (a Cluster's
 * masters): a reader thread per server, the store written by the caller's
 * thread alone; node_keys[i] counts the keys taken from nodes[i].
 * SG_SNAP_AGAIN as for sg_snap_scan. */
int sg_snap_scan_servers(sg_snap *sn, sg_rconn *nodes, int n, const sg_strlist *patterns,
                         int64_t *node_keys, sg_error *err);

/* The sync method (sync.c), in two steps. sg_snap_sync_new asks the server
 * for the RDB a replica would get and returns once the transfer begins,
 * before the snapshot's transaction starts; sg_snap_sync_keys reads it
 * inside the transaction and takes the keys matching patterns (empty: all)
 * of databases dbs[0..ndb), then opens sn->c again if the server closed it
 * while it sat idle through the transfer. sg_snap_sync_free closes the
 * transfer's connection; it accepts NULL. */
typedef struct sg_snap_sync sg_snap_sync;
int sg_snap_sync_new(sg_snap *sn, sg_snap_sync **out, sg_error *err);
int sg_snap_sync_keys(sg_snap *sn, sg_snap_sync *sync, const sg_strlist *patterns, const int *dbs,
                      int ndb, sg_error *err);
void sg_snap_sync_free(sg_snap_sync *sync);

#endif
