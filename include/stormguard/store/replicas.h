/* Gates sharing one store: the replicas of a PostgreSQL store and their
 * delivery claims (schema/pg/003_replicas.sql). Each running gate is a
 * replica with a name unique to its run (sg_store_claim_name) and a lease
 * it renews every second by the server's clock; a pending event is
 * delivered by the replica that claimed it. A replica claims only the
 * head of each job's pending queue, so a job's events go out in queue
 * order whichever replica journaled them; the claims of a replica whose
 * lease ran out (it died, or lost the store for longer) go back to none
 * and the others deliver them again, with the same event id. Only a
 * shared store (sg_store_shared) has replicas: on an SQLite store these
 * fail with SG_EINVAL, as one daemon there delivers its own queue
 * (events.h, sg_store_events_pending). Callers include
 * stormguard/store/store.h. */
#ifndef STORMGUARD_STORE_REPLICAS_H
#define STORMGUARD_STORE_REPLICAS_H

#include <stdbool.h>
#include <stdint.h>

#include "stormguard/base/error.h"
#include "stormguard/store/events.h"

typedef struct sg_store sg_store;

/* How long a replica's claims outlive its last renewal; renewed every
 * SG_REPLICA_RENEW_MS. */
#define SG_REPLICA_LEASE_MS 5000
#define SG_REPLICA_RENEW_MS 1000

/* Renews the lease of the replica name (joining again if it was found
 * dead meanwhile) and gives the claims of replicas whose lease ran out
 * back to none; *released counts those. */
int sg_store_replica_renew(sg_store *s, const char *name, int64_t lease_ms, int64_t *released,
                           sg_error *err);
/* The replica leaves: its claims go back to none at once. */
int sg_store_replica_leave(sg_store *s, const char *name, sg_error *err);

/* The replica this connection writes for (NULL: none): a delivery's
 * outcome it records (sg_store_event_update) changes an event claimed by
 * this replica or by none, never one another replica claimed since (this
 * one's lease ran out and the other delivers it now). A no-op on SQLite. */
void sg_store_set_replica(sg_store *s, const char *name);

/* Claims for the replica name up to limit pending events that are the
 * heads of their jobs' queues (or of no job: pass-through) and passes
 * them to fn in queue order (qgen, id), as sg_store_events_pending does.
 * An event another replica is claiming at the same moment is skipped,
 * never waited for. */
int sg_store_events_claim(sg_store *s, const char *name, int limit, sg_event_fn fn, void *ud,
                          sg_error *err);

/* One replica: times are epoch ms by the server's clock; live while its
 * lease runs; claimed counts its pending claims. */
typedef struct sg_replica_row {
    const char *name;
    int64_t started_at, lease_until;
    bool live;
    int64_t claimed;
} sg_replica_row;
typedef void (*sg_replica_fn)(void *ud, const sg_replica_row *row);
/* Every replica known to the store, oldest first; the strings are valid
 * during the call only. */
int sg_store_replicas(sg_store *s, sg_replica_fn fn, void *ud, sg_error *err);

/* What the other replicas accepted, for the classifier's memory of the
 * ledger's jobs and Docker tags (classify.h, sg_ledger): the events of
 * kind new or unknown with an id above after_id, at most limit, oldest
 * first, as fn(ud, source, job, tag, digest) (tag and digest NULL but for
 * a Docker event); *last is the highest id passed (after_id if none). */
int sg_store_accepted_since(sg_store *s, int64_t after_id, int limit, sg_ledger_tag_fn fn, void *ud,
                            int64_t *last, sg_error *err);

/* ---- guard and storm mode across replicas (004_modes.sql) ---- */

/* A mode on (or lately on) in some replica: scope NULL is guard mode,
 * "*" a storm of every source, else the source in storm; times are epoch
 * ms; off_at is when an operator turned guard mode off (0: never). */
typedef struct sg_mode_row {
    const char *scope;
    int64_t since_ms, until_ms, off_at;
    const char *reason, *replica;
    /* guard mode: when the last wipe was seen (0: none), and until when a
     * flush announced to some replica expects its wipe (0: none), for the
     * replica that watches Redis not to rewarm what the operator meant */
    int64_t wipe_at_ms, expect_until_ms;
} sg_mode_row;

/* Publishes a mode the replica m->replica started or extended: the row
 * keeps the later until (an earlier off no longer counts once a mode
 * starts after it); notify tells the other replicas at once, for a start
 * only (never per extension). */
int sg_store_mode_publish(sg_store *s, const sg_mode_row *m, bool notify, sg_error *err);
/* An operator turned guard mode off at at_ms, from replica: told to the
 * others at once. */
int sg_store_mode_off(sg_store *s, const char *replica, int64_t at_ms, sg_error *err);
/* Every mode row whose until or off is after after_ms; strings valid
 * during the call only. */
typedef void (*sg_mode_row_fn)(void *ud, const sg_mode_row *m);
int sg_store_modes(sg_store *s, int64_t after_ms, sg_mode_row_fn fn, void *ud, sg_error *err);

/* A connection of its own that LISTENs for mode changes: its socket for
 * the loop to watch (sg_store_listener_fd), and what arrived on it read
 * without blocking (sg_store_listener_read: *notified once a change was
 * told). SG_ESTORE once the connection is gone: free it and listen anew
 * (the changes missed meanwhile are in sg_store_modes). Connecting blocks:
 * off the loop. */
typedef struct sg_store_listener sg_store_listener;
int sg_store_listen(const char *url, sg_store_listener **out, sg_error *err);
int sg_store_listener_fd(const sg_store_listener *l);
int sg_store_listener_read(sg_store_listener *l, bool *notified, sg_error *err);
void sg_store_listener_free(sg_store_listener *l);

#endif
