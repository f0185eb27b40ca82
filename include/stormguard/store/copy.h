/* Moving a single daemon's SQLite store into PostgreSQL (stormguard store
 * copy): what a gate needs to go on where the SQLite one stopped, so that
 * replicas sharing the PostgreSQL store forward nothing the SQLite gate
 * forwarded and lose nothing it still had to deliver. Callers include
 * stormguard/store/store.h. */
#ifndef STORMGUARD_STORE_COPY_H
#define STORMGUARD_STORE_COPY_H

#include <stdint.h>

#include "stormguard/base/error.h"

/* What a copy wrote into the destination. */
typedef struct sg_store_copy_stats {
    int64_t ledger;    /* builds of the ledger, all of them */
    int64_t caught_up; /* of those, added to the source's own ledger first (its catch-up) */
    int64_t held, pending, dead; /* the open events, by state */
    int64_t docker;              /* the other Docker events the ledger's tags are read from */
    int64_t first_id, last_id;   /* the copied events' ids in the destination (0: none) */
    int64_t snapshot_from;       /* the source's baseline snapshot copied, 0: none */
    int64_t snapshot_id;         /* its id in the destination */
    int64_t snapshot_keys;
    int64_t baseline_kept; /* the destination's own baseline, kept instead (0: none) */
} sg_store_copy_stats;

/* Copies the SQLite store at path into the empty PostgreSQL store at url
 * (postgresql://, migrated on open), in one PostgreSQL transaction: the
 * whole ledger, the events still open (held, pending and dead, each with
 * every column; pending ones keep their place in the delivery queue), the
 * accepted Docker events the gate reads its ledger's tags from, and the
 * source's baseline snapshot with its build index unless the destination
 * has a baseline of its own. The copied events get new ids, above every id
 * the source ever gave, in the source's order.
 *
 * path must be an existing store; it is claimed as a daemon claims it
 * (sg_store_claim_new: a running daemon is SG_ESTORE naming it, and none
 * can start until the copy is done) and opened read-write as a daemon opens
 * it: migrated if older, its ledger caught up (the builds of events after
 * its mark added, sg_store_ledger_catch_up); nothing else in it changes. A
 * destination that holds any event or ledger row is SG_EREFUSED, a missing
 * source SG_ENOTFOUND, a path or URL of the wrong kind SG_EUSAGE. actor
 * (may be NULL: none) is recorded with the copy in the destination's audit
 * log. *out is written only on success. Messages name the destination by
 * its URL without the password. */
int sg_store_copy(const char *path, const char *url, const char *actor, sg_store_copy_stats *out,
                  sg_error *err);

#endif
