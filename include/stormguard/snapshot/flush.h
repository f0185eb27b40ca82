/* The safe flush that replaces runbook flushes (DOMAIN.md section 6):
 * inspect what would go, refuse protected namespaces, snapshot first (or do
 * nothing), delete without blocking the server, then verify. */
#ifndef STORMGUARD_FLUSH_H
#define STORMGUARD_FLUSH_H

#include <stdbool.h>
#include <stdint.h>

#include "stormguard/base/error.h"
#include "stormguard/snapshot/namespace.h"
#include "stormguard/redis/rconn.h"
#include "stormguard/snapshot/snapshot.h"
#include "stormguard/store/store.h"
#include "stormguard/base/util.h"

typedef enum sg_flush_mode {
    SG_FLUSH_MATCH = 0, /* SCAN + UNLINK of keys matching patterns */
    SG_FLUSH_DB,        /* FLUSHDB ASYNC */
    SG_FLUSH_ALL,       /* FLUSHALL ASYNC: every database */
} sg_flush_mode;

const char *sg_flush_mode_name(sg_flush_mode m);

typedef struct sg_flush_result {
    int64_t planned;         /* keys the flush would delete */
    sg_ns_stats *namespaces; /* sorted by key count, descending */
    size_t namespace_count;
    int64_t *protected_counts; /* per protect pattern, in opts order */
    int64_t protected_total;
    int *dbs; /* databases the flush covers */
    int db_count;
    sg_snapshot_result snapshot; /* id 0 when none was taken */
    int64_t deleted;
    int64_t remaining; /* keys left that the flush selected */
    bool verified;     /* PING answered after the flush */
    double seconds;
} sg_flush_result;

typedef struct sg_flush_opts {
    sg_flush_mode mode;
    const sg_strlist *match;   /* SG_FLUSH_MATCH patterns */
    const sg_strlist *protect; /* protected namespaces */
    bool force;                /* delete protected keys too */
    bool snapshot;             /* take the pre-flush snapshot (default) */
    bool dry_run;
    int64_t scan_count;
    sg_progress_fn progress;
    void *progress_ud;
    /* Called once the plan passed the protection check, before the pre-flush
     * snapshot, only when keys are to be deleted (never on a dry run or an
     * empty plan); the CLI announces the flush to the gate here. A non-zero
     * return stops the flush with nothing snapshotted or deleted, and is
     * returned with err as the hook left it. */
    int (*before_delete)(void *ud, const sg_flush_result *plan, sg_error *err);
    void *before_delete_ud;
} sg_flush_opts;

/* Plans and, unless dry_run, performs the flush. Returns SG_EREFUSED (and
 * deletes nothing) when protected keys would go without force; the result
 * then says which. */
int sg_flush_run(sg_rconn *c, sg_store *s, const sg_snapshot_opts *snap, const sg_flush_opts *o,
                 sg_flush_result *out, sg_error *err);
void sg_flush_result_close(sg_flush_result *r);

#endif
