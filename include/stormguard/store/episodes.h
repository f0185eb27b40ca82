/* Episodes and the audit log in the store (schema/001_snapshots.sql,
 * 002_gate.sql): an episode is a wipe or a storm, from its detection to its
 * end; an audit entry is one thing an operator or the daemon did (a flush,
 * a restore, a rewarm, guard mode turned on or off). No decision of the
 * gate reads them: they are its record for operators. Callers include
 * stormguard/store/store.h; like every store call, these run on the one
 * thread using the sg_store. */
#ifndef STORMGUARD_STORE_EPISODES_H
#define STORMGUARD_STORE_EPISODES_H

#include <stdint.h>

#include "stormguard/base/error.h"

typedef struct sg_store sg_store;

/* Episodes: a wipe or a storm, opened when detected (at: epoch ms; detail
 * may be NULL) with its id in *id; the update sets ended_at (0: unchanged)
 * and appends to the detail (NULL: unchanged). Strings are borrowed for
 * the call. */
int sg_store_episode_open(sg_store *s, int64_t at, const char *cause, const char *detail,
                          int64_t *id, sg_error *err);
int sg_store_episode_update(sg_store *s, int64_t id, int64_t ended_at, const char *detail,
                            sg_error *err);

/* Records an audit entry (flushes, restores, guard changes) made at at_ms
 * (epoch ms, the caller's clock); detail may be NULL. Strings are borrowed
 * for the call. */
int sg_store_audit(sg_store *s, int64_t at_ms, const char *actor, const char *action,
                   const char *detail, sg_error *err);

#endif
