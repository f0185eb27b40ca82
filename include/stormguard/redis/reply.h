/* Redis replies read as stormguard needs them: pure functions of a hiredis
 * reply tree or of INFO's text, with no connection and no I/O. The code that
 * talks to Redis (rconn.c, watch.c, scan.c, sync.c) hands its replies here, so
 * each reading is written once and can be fed any reply: tests/fuzz/
 * fuzz_resp.c runs every tree hiredis's parser makes of arbitrary bytes
 * through them. None keeps a pointer into the reply it was given. */
#ifndef STORMGUARD_REPLY_H
#define STORMGUARD_REPLY_H

#include <stddef.h>
#include <stdint.h>

struct redisReply;

/* The value of field in INFO text (lines "field:value", CRLF separated), or
 * NULL when no line names it. Caller frees. */
char *sg_reply_info_field(const char *info, const char *field);

/* An error reply's message without the arguments Redis 7 echoes ("ERR
 * unknown command 'AUTH', with args beginning with: 'pw'" becomes "ERR
 * unknown command 'AUTH'"), for a command whose arguments are secret; into
 * buf, which it returns. */
const char *sg_reply_error_no_args(const char *msg, char *buf, size_t cap);

/* The databases INFO keyspace lists (lines "dbN:keys=...,expires=..."), in
 * its order (ascending); a line whose N is not a number from 0 to INT_MAX
 * names none. *out is NULL when there are none. Caller frees *out. */
void sg_reply_info_dbs(const char *info, int **out, int *count);

/* The keys with an expiry INFO keyspace counts, summed over its databases
 * (the expires= fields) up to INT64_MAX; a count below 1 adds nothing. */
int64_t sg_reply_info_expires(const char *info);

/* Keys a Redis database holds at most. */
#define SG_REDIS_KEYS_MAX (INT64_C(1) << 32)

/* An integer reply that counts things, at most max of them (EXISTS over n
 * keys: n; DBSIZE: SG_REDIS_KEYS_MAX; MEMORY USAGE's bytes: INT64_MAX): 0
 * and *out, or 1 if the reply is no integer or not from 0 to max; *out is
 * then not written. Sums of counts so bounded cannot overflow. */
int sg_reply_count(const struct redisReply *r, int64_t max, int64_t *out);

/* A PTTL reply as an absolute expiry, the remaining time counted from
 * sent_ms (epoch ms when the command was sent, so never later than the
 * key's own; at most INT64_MAX): 0 and *expire_at_ms (0: the key does not
 * expire), or 1 if the key is gone (-2) or the reply is no integer;
 * *expire_at_ms is then not written. */
int sg_reply_pttl(const struct redisReply *r, int64_t sent_ms, int64_t *expire_at_ms);

/* The value of a CONFIG GET reply for one parameter (["name", "value"]), or
 * NULL for any other reply. Caller frees. */
char *sg_reply_config_value(const struct redisReply *r);

/* What a push on the tracking connection (SUBSCRIBE __redis__:invalidate,
 * over RESP2) says. */
typedef enum sg_invalidation {
    SG_INVALIDATION_OTHER,      /* nothing the watcher reads */
    SG_INVALIDATION_SUBSCRIBED, /* the subscription is confirmed */
    SG_INVALIDATION_FLUSH,      /* everything: FLUSHALL/FLUSHDB, or a replica's reload */
    SG_INVALIDATION_KEYS,       /* named keys (the canary) were written or deleted */
} sg_invalidation;

sg_invalidation sg_reply_invalidation(const struct redisReply *r);

#endif
