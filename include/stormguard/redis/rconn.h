/* A synchronous Redis connection for the one-shot subcommands (snapshot,
 * restore, flush, inspect): connect, AUTH, SELECT with messages that name the
 * server and the reason, plus the few server facts those commands need. What
 * runs on the loop uses the asynchronous link (async.h) instead. Blocking:
 * never on the loop thread; a connection is used by one thread at a time
 * (the sidecar's jobs run on the thread pool, one connection each). */
#ifndef STORMGUARD_RCONN_H
#define STORMGUARD_RCONN_H

#include <stddef.h>
#include <stdint.h>

#include "stormguard/base/error.h"
#include "stormguard/redis/redis_url.h"
#include "stormguard/redis/transport.h"

struct redisReader;
struct redisReply;

/* A command's reply waits at most this by default ([redis] timeout). */
#define SG_REDIS_TIMEOUT_MS 30000

typedef struct sg_rconn {
    sg_tx tx;                   /* plain, unix or TLS (transport.h) */
    struct ssl_ctx_st *tls;     /* NULL without TLS; each connection loads its own */
    struct redisReader *reader; /* replies (hiredis's RESP parser) */
    sg_txbuf out;               /* commands queued, not yet sent */
    char *address;              /* for messages */
    char *redacted;             /* URL without password */
    int db;                     /* currently selected */
    sg_redis_url url;           /* to open a second connection (sg_rconn_clone) */
    int timeout_ms;             /* connecting */
    int command_ms;   /* a reply (from the call that waits for it) or a send waits at most this */
    char waiting[32]; /* the command last sent, for a timeout's message */
    char mode[16];    /* INFO server's redis_mode: standalone, cluster or sentinel */
    char version[32]; /* INFO server's redis_version ("" if it gives none) */
    /* Sticky: once a read or write failed or timed out, the stream is out
     * of step (a late reply would be taken for the next command's), so
     * every later call fails with this. */
    sg_error broken;
} sg_rconn;

/* Connects (TLS when u says so; to the master the sentinels name for a
 * redis-sentinel:// URL, checking its ROLE), authenticates and selects u->db, waiting
 * at most timeout_ms for the connection and its TLS handshake, and
 * command_ms for each command's whole reply ([redis] timeout: a server that
 * accepts and never answers, or trickles, is an error naming the address
 * and the command, not a hang). On failure nothing needs closing. */
int sg_rconn_open(sg_rconn *c, const sg_redis_url *u, int timeout_ms, int command_ms,
                  sg_error *err);
void sg_rconn_close(sg_rconn *c);

/* The master of a redis-sentinel:// URL, as the Sentinel client guidelines
 * say: each sentinel in turn is asked SENTINEL get-master-addr-by-name
 * (with the sentinels' password if any, TLS as the URL says), the first
 * answer wins. *out is a copy of u with host and port set to the master's.
 * Each sentinel waits at most timeout_ms to connect and command_ms to
 * answer; the error names every sentinel and why it gave no answer.
 * *which (may be NULL) is the index of the sentinel that answered. */
int sg_rconn_resolve_master(const sg_redis_url *u, int timeout_ms, int command_ms,
                            sg_redis_url *out, int *which, sg_error *err);

/* Whether the server c is connected to says it is a master (ROLE): 0, or
 * SG_EREDIS naming what it is instead. */
int sg_rconn_check_master(sg_rconn *c, sg_error *err);

/* Whether c's server is one stormguard can act on alone: a standalone
 * server (a master or a replica). A node of a Redis Cluster is
 * SG_EREFUSED: a command on it would cover that node's share of the keys
 * only and report success. A Sentinel is SG_EUSAGE, naming the
 * redis-sentinel:// URL to use instead. */
int sg_rconn_check_standalone(const sg_rconn *c, sg_error *err);

/* The masters of the Redis Cluster c's server is a node of (CLUSTER
 * SLOTS), in the order of their first slot, each opened as c was (its URL,
 * TLS and timeouts, another host and port); the caller closes each and
 * frees the array. *layout (caller frees) describes who serves which
 * slots, to compare before and after a walk over the nodes: a change means
 * slots moved (resharding, a failover) meanwhile. */
int sg_rconn_cluster_masters(sg_rconn *c, sg_rconn **out, int *n, char **layout, sg_error *err);

/* As sg_rconn_cluster_masters, and owner[slot] (SG_CLUSTER_SLOTS entries)
 * is the index of the master serving it, or -1 for a slot no one serves. */
int sg_rconn_cluster_map(sg_rconn *c, sg_rconn **out, int *n, char **layout, int16_t *owner,
                         sg_error *err);

/* One master of CLUSTER SLOTS: its address and first slot. */
typedef struct sg_rconn_cluster_master {
    char *host;
    int port;
    int64_t first_slot;
} sg_rconn_cluster_master;

/* Reads CLUSTER SLOTS without opening anything: the distinct masters (by
 * address) in the order of their first slot (caller frees with
 * sg_rconn_cluster_masters_free), the layout as sg_rconn_cluster_masters gives
 * it, and owner (may be NULL) as sg_rconn_cluster_map. */
int sg_rconn_cluster_slots(sg_rconn *c, sg_rconn_cluster_master **out, int *n, char **layout,
                           int16_t *owner, sg_error *err);
void sg_rconn_cluster_masters_free(sg_rconn_cluster_master *m, int n);

/* The CLUSTER SLOTS layout alone, as sg_rconn_cluster_masters gives it. */
int sg_rconn_cluster_layout(sg_rconn *c, char **layout, sg_error *err);

/* Opens another connection to the same server and database as c. */
int sg_rconn_clone(const sg_rconn *c, sg_rconn *out, sg_error *err);

/* Runs one command (argv form, binary safe) and returns its reply, which the
 * caller frees with freeReplyObject. An error reply is returned as
 * SG_EREDIS with err naming the command and Redis's message; *out is then
 * not written. */
int sg_rconn_command(sg_rconn *c, struct redisReply **out, sg_error *err, int argc,
                     const char **argv, const size_t *argvlen);

/* Queues a command without sending it (pipelining) / reads the next reply. */
int sg_rconn_append(sg_rconn *c, sg_error *err, int argc, const char **argv, const size_t *argvlen);
int sg_rconn_read(sg_rconn *c, struct redisReply **out, sg_error *err);
/* Sends what is queued without waiting for replies (so the server works while
 * the caller does). */
int sg_rconn_flush(sg_rconn *c, sg_error *err);

/* Reads raw bytes after the last reply (SYNC's RDB stream): what the reply
 * parser already holds first, then the connection, waiting at most idle_ms
 * for each read. 0 with *got bytes (0: the server closed the connection),
 * 1 when idle_ms passed in silence, or an error. No reply may be read after
 * this. */
int sg_rconn_read_raw(sg_rconn *c, void *buf, size_t cap, size_t *got, int idle_ms, sg_error *err);

/* Value of field in the INFO section (e.g. "server", "redis_version"); NULL if
 * absent. Caller frees. */
int sg_rconn_info_field(sg_rconn *c, const char *section, const char *field, char **out,
                        sg_error *err);

/* The highest RDB format version the server's DUMP/RESTORE speak, derived from
 * its redis_version (7.0 = 10, 7.2 = 11, 7.4 = 12; DOMAIN.md section 5). */
int sg_rdb_version_for_redis(const char *redis_version);

/* Databases that hold keys (from INFO keyspace), ascending; caller frees. */
int sg_rconn_nonempty_dbs(sg_rconn *c, int **out, int *count, sg_error *err);

/* SELECT db on the connection. */
int sg_rconn_select(sg_rconn *c, int db, sg_error *err);

/* Describes an error reply for a command, recognising ACL denials and missing
 * commands ("redis denied FLUSHALL to this user (ACL): ..."). */
int sg_rconn_reply_error(sg_rconn *c, const char *command, const struct redisReply *r,
                         sg_error *err);

#endif
