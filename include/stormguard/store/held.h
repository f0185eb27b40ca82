/* The held queue in the store (schema/004_held.sql): events in state held,
 * which a storm kept from the downstream because they could not be told
 * apart from replays. An operator or a drain policy releases them into the
 * delivery queue behind what is already queued (a new queue generation), or
 * drops them; both go in chunks, so a million held events take many short
 * transactions with the journal's commits in between. Callers include
 * stormguard/store/store.h; like every store call, these run on the one
 * thread using the sg_store. */
#ifndef STORMGUARD_STORE_HELD_H
#define STORMGUARD_STORE_HELD_H

#include <stdbool.h>
#include <stdint.h>

#include "stormguard/base/error.h"

typedef struct sg_store sg_store;

/* Which held events a release or drop applies to: all, or those of source
 * (NULL: any) whose job matches the glob job (NULL: any); limit > 0: one
 * chunk of at most that many, oldest first (see below). Strings are
 * borrowed for the call. */
typedef struct sg_hold_filter {
    bool all;
    const char *source;
    const char *job;
    int64_t limit;
    int64_t max_id; /* > 0: only events up to this id (those journaled before the command) */
} sg_hold_filter;

/* Held events of f become pending in queue generation qgen (on a store
 * several gates share: qgen or one more than any pending event's, whichever
 * is greater, so a release is behind what another gate queued). With
 * newest_only, the held builds of each job below its newest held build are
 * superseded (never forwarded) and only the newest released. Counts go to
 * *released, *superseded. With f->limit, one chunk: the limit oldest held
 * events (with newest_only: all held events of their jobs); *more says
 * whether another chunk may find some, so a million events are released in
 * many short transactions. */
int sg_store_held_release(sg_store *s, const sg_hold_filter *f, bool newest_only, int64_t qgen,
                          int64_t now, int64_t *released, int64_t *superseded, bool *more,
                          sg_error *err);
/* Held events of f become dropped with reason; the count goes to *dropped.
 * Chunked by f->limit like a release. */
int sg_store_held_drop(sg_store *s, const sg_hold_filter *f, const char *reason, int64_t now,
                       int64_t *dropped, bool *more, sg_error *err);
/* Calls fn for the (source, job) pairs with held events, most held first,
 * at most limit of them: count, lowest and highest build number (0 for a
 * Docker repository, whose events carry tags: events shows them). Strings
 * are valid during the call only. *held and *jobs (may be NULL) get the
 * totals over all pairs. */
typedef void (*sg_held_fn)(void *ud, const char *source, const char *job, int64_t count,
                           int64_t oldest, int64_t newest);
int sg_store_held_summary(sg_store *s, int64_t limit, sg_held_fn fn, void *ud, int64_t *held,
                          int64_t *jobs, sg_error *err);

#endif
