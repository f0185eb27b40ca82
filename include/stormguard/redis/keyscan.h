/* Walks a Redis keyspace with SCAN (never KEYS), COUNT >= 1000, selecting
 * keys by a list of glob patterns. A single pattern is sent as SCAN MATCH; several
 * are matched here so the keyspace is walked once. */
#ifndef STORMGUARD_KEYSCAN_H
#define STORMGUARD_KEYSCAN_H

#include <stddef.h>
#include <stdint.h>

#include "stormguard/base/error.h"
#include "stormguard/redis/rconn.h"
#include "stormguard/base/util.h"

struct redisReply;

typedef struct sg_keyscan {
    sg_rconn *conn;
    const sg_strlist *patterns; /* empty: every key */
    int64_t count;
    char cursor[32];
    int done; /* the server returned cursor 0 */
} sg_keyscan;

/* One page of selected keys. The keys point into the SCAN reply the page
 * owns; they stay valid until sg_keypage_close. */
typedef struct sg_keypage {
    struct redisReply *reply;
    const char **keys;
    size_t *lens;
    size_t n;
} sg_keypage;

void sg_keypage_close(sg_keypage *page);

void sg_keyscan_init(sg_keyscan *ks, sg_rconn *conn, const sg_strlist *patterns, int64_t count);
void sg_keyscan_close(sg_keyscan *ks);

/* Queues the SCAN command for the next page (used to pipeline the next page
 * with work on the current one). Returns 0 if queued, 1 if the scan is
 * complete. */
int sg_keyscan_request(sg_keyscan *ks, sg_error *err);

/* Reads the queued SCAN reply into page (which the caller closes). */
int sg_keyscan_receive(sg_keyscan *ks, sg_keypage *page, sg_error *err);

/* What sg_keyscan_receive does with the reply it read: takes r, a SCAN
 * reply, into page and the next cursor into ks. r belongs to the page from
 * then on (freed with it, or at once on an error: SG_EREDIS for an error
 * reply or one that is not [cursor, [keys...]]). ks->conn serves only for
 * messages. */
int sg_keyscan_take(sg_keyscan *ks, struct redisReply *r, sg_keypage *page, sg_error *err);

/* Convenience: calls fn for every selected key; stops early if fn returns
 * non-zero and returns that value. */
typedef int (*sg_keyscan_fn)(void *ud, const char *key, size_t len, sg_error *err);
int sg_keyscan_each(sg_keyscan *ks, sg_keyscan_fn fn, void *ud, sg_error *err);

#endif
