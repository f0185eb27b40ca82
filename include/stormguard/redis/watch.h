/* Wipe detection: notices within milliseconds that the poller's Redis lost its
 * data (FLUSHALL/FLUSHDB, a restart without persistence, a failover to an
 * empty replica, or the poller's keys vanishing some other way) and tells the
 * owner once per wipe. Runs on the caller's libuv loop with two connections
 * of one Redis link (async.h: client tracking for the immediate signal, a
 * command connection for confirmation) plus a periodic check as fallback;
 * reconnects with backoff and never blocks the loop. The rules that tell a
 * wipe are wipe.h's; DOMAIN.md section 5 explains the Redis side. */
#ifndef STORMGUARD_WATCH_H
#define STORMGUARD_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stormguard/base/clock.h"
#include "stormguard/base/error.h"
#include "stormguard/redis/redis_url.h"
#include "stormguard/redis/wipe.h"

struct uv_loop_s;

typedef struct sg_watch sg_watch;

typedef struct sg_watch_opts {
    /* redis://[user[:pw]@]host[:port][/db] or unix:///path[?db=N]; a missing
     * password is taken from STORMGUARD_REDIS_PASSWORD or REDISCLI_AUTH. */
    const char *redis_url;
    const sg_redis_tls *tls; /* TLS settings besides the URL's ([redis] tls ...); may be NULL */
    const char *sentinel_password; /* [redis] sentinel_password; may be NULL */
    /* A key the watcher owns in that database ("stormguard:canary"); it is
     * created when missing and re-created after each wipe. Give each watcher
     * of one Redis its own canary. */
    const char *canary;
    int check_ms;              /* period of the fallback check; 0: 1000 */
    int connect_timeout_ms;    /* connect + handshake, and the longest wait for a
                                * check's replies; 0: 5000 */
    const char *count_pattern; /* the profile's key pattern ("igor:*"), named in
                                * details; may be NULL */
    /* The time a wipe was detected at and a check's "now" (the wipe rules
     * compare it with the last check); NULL: the real clock. The reconnect
     * backoff and check period run on the loop's timers. */
    const sg_clock *clock;

    /* A restart or failover the data survived (wipe.h kept: cause
     * SG_WIPE_RESTART or SG_WIPE_FAILOVER, the note as detail, valid during
     * the call); may be NULL. Runs on the loop with the start's ud. */
    void (*on_change)(void *ud, sg_wipe_cause cause, const char *detail);

    /* One master of a Redis Cluster (watchset.h): host and port replace the
     * URL's (its credentials and TLS settings stay), the canary should carry
     * a hash tag of one of the master's slots, and the sample keys must
     * all be the master's (each is asked about alone: no CROSSSLOT).
     * predecessor, if not NULL, is the master that served those slots
     * before, whose canary this one inherited: the canary is taken as seen
     * and its absence is a failover (wipe.h). */
    const char *node_host;
    int node_port;
    const char *predecessor;
    /* A check of that master was answered MOVED (its slots are served
     * elsewhere now: a failover, a resharding): on_moved(ud), after the
     * failure is logged; may be NULL. */
    void (*on_moved)(void *ud);
    /* A server that turns out to be a Cluster node without node_host set:
     * on_cluster(ud) is called once, from the loop, and the watcher then
     * waits for sg_watch_stop (no wipe can be told from one node). NULL:
     * the session fails with the reason and reconnects. */
    void (*on_cluster)(void *ud);
} sg_watch_opts;

/* One call per wipe. detail names the evidence with numbers ("FLUSHALL/FLUSHDB:
 * canary stormguard:canary gone, dbsize 0") and is valid during the call only.
 * detected_at_ms (epoch ms) is when the first sign arrived: the invalidation
 * message, or the start of the check that found it. */
typedef void (*sg_wipe_fn)(void *ud, sg_wipe_cause cause, const char *detail,
                           int64_t detected_at_ms);
/* Link transitions: up once the first check of a session succeeded (a missing
 * canary is being created at that moment: status "armed"), down on
 * the first failure after that (or when the first attempt fails), with the
 * reason. Not repeated while Redis stays down. */
typedef void (*sg_link_fn)(void *ud, bool up, const char *detail);

/* Starts watching: parses the URL and begins connecting on loop; returns at
 * once (Redis being down is not an error here, it is reported through on_link).
 * on_link may be NULL. Both callbacks run on the loop thread and may call
 * sg_watch_stop. An error (bad URL or options) writes nothing to *out. */
int sg_watch_start(struct uv_loop_s *loop, const sg_watch_opts *o, sg_wipe_fn on_wipe,
                   sg_link_fn on_link, void *ud, sg_watch **out, sg_error *err);

/* Keys (NUL-terminated) from the last good snapshot. The watcher copies up to
 * 32 of them, spread over the list, and checks on every check that at least
 * half still exist; n == 0 clears the sample. A wipe clears the sample: set a
 * new one after the keys are back (rewarm or a new snapshot). */
void sg_watch_set_sample(sg_watch *w, const char *const *keys, size_t n);

/* What the watcher knows, for status pages. The strings are the watcher's:
 * valid until control returns to the loop (or sg_watch_stop). */
typedef enum sg_watch_link { SG_WATCH_CONNECTING, SG_WATCH_UP, SG_WATCH_DOWN } sg_watch_link;
typedef struct sg_watch_report {
    sg_watch_link link;
    const char *address, *canary;
    const char *server; /* the server watched: address, or the master a Sentinel named */
    const char *run_id, *role, *redis_version; /* NULL until the first check */
    bool tracking;                             /* client tracking on (the link is up) */
    bool armed;                                /* the canary is confirmed: a flush would be seen */
    bool canary_seen; /* the canary existed at the last look or was set since, link up or not */
    int64_t last_check_ms;  /* epoch ms of the last good check, 0: none yet */
    int64_t dbsize;         /* at the last check */
    size_t sample;          /* keys in the sample */
    const char *last_error; /* NULL: none */
    int64_t wipes;
} sg_watch_report;
void sg_watch_report_get(const sg_watch *w, sg_watch_report *out);
/* "connecting", "up", "down". */
const char *sg_watch_link_name(sg_watch_link link);

/* Closes both connections and every handle, then calls done(ud) (done may be
 * NULL) from the loop; w is freed before done runs and must not be used after
 * this call. No callback of w runs after this call returns. */
void sg_watch_stop(sg_watch *w, void (*done)(void *ud), void *ud);

#endif
