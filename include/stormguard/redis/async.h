/* An asynchronous link to one Redis server on the caller's libuv loop, over
 * TCP, TLS or a unix socket (transport.h; hiredis only parses the replies).
 * It never blocks the loop and never logs: the owner hears of every failure
 * and decides what to report. rconn.h is its blocking counterpart for the
 * one-shot commands.
 *
 * The link works in sessions. An attempt resolves the host once (with
 * uv_getaddrinfo, off the loop thread), opens the same few connections to
 * that one address, queues AUTH and SELECT on each, and hands them to the
 * owner (on_open), who queues its own handshake and calls sg_rasync_up once
 * it is satisfied. One timer bounds the whole attempt, from the resolution to
 * sg_rasync_up. A failure of any part ends the session: every connection is
 * closed, because connections of one session may share server state (client
 * tracking's REDIRECT names another connection's id), and the next attempt
 * follows after a capped exponential backoff, which sg_rasync_up resets. A
 * later discovery (a Sentinel that names the master, a Cluster node) belongs
 * in the attempt: every session starts from a fresh resolution.
 *
 * Callbacks. All run on the loop thread. on_open, on_down and on_lost never
 * run inside a call into this module (sg_rasync_start schedules the first
 * attempt on the loop; a command that cannot be queued fails with a return
 * code, not a callback); only NULL replies do, as described below. From any
 * callback the owner may call every function here, sg_rasync_stop included.
 * - on_open: an attempt's connections exist with AUTH and SELECT queued
 *   (the link sends them once connected). Once per attempt that gets this
 *   far, which is not yet a connection: a refused connect may follow as
 *   on_down, and the commands queued meanwhile get NULL.
 * - on_down: the attempt or session failed (reason names the action, the
 *   server and the cause: "cannot reach redis 10.0.0.5:6379: Connection
 *   refused"); every connection is already closed and the next attempt is
 *   scheduled. Once per failure, also while Redis stays down. Not called for
 *   sg_rasync_fail or sg_rasync_stop.
 * - on_lost (optional): a connection of the live session was closed by the
 *   server or the network. The owner returns true to carry on without it, or
 *   false to end the session, which on_down then reports as "lost the
 *   <name> to redis <address>: <why>".
 * - a reply callback runs exactly once per command queued: with the reply,
 *   or with NULL when its connection closes first (a failure, sg_rasync_drop,
 *   sg_rasync_fail, sg_rasync_stop). With NULL the connection is going
 *   away: the callback releases what pd holds, and a command it queues on
 *   that connection fails. A subscription's callback runs for the
 *   confirmation and every message, and once with NULL when its connection
 *   closes. The reply belongs to the link and is valid during the call only.
 * When the connection closes outside any of its callbacks, the NULL replies
 * run before the closing call returns; when it closes from inside one of its
 * own reply callbacks (the close is deferred), right after that callback
 * returns. Either way before the done callback of sg_rasync_stop. */
#ifndef STORMGUARD_ASYNC_H
#define STORMGUARD_ASYNC_H

#include <stdbool.h>
#include <stddef.h>

#include "stormguard/base/error.h"
#include "stormguard/redis/redis_url.h"

struct uv_loop_s;
struct redisReply;

typedef struct sg_rasync sg_rasync;

#define SG_RASYNC_MAX_CONNS 4

typedef struct sg_rasync_conn_opts {
    const char *name; /* "command connection": for messages; copied */
    bool no_select;   /* no SELECT: a connection that only subscribes */
} sg_rasync_conn_opts;

typedef struct sg_rasync_opts {
    const sg_redis_url *url; /* copied; a user needs a password (give it or take it from
                              * the environment first: sg_redis_url_password_from_env) */
    int nconns;              /* connections per session, 1..SG_RASYNC_MAX_CONNS; the
                              * index into conns names a connection in the calls below */
    sg_rasync_conn_opts conns[SG_RASYNC_MAX_CONNS];
    int timeout_ms;     /* the longest attempt: resolve, connect, handshake until
                         * sg_rasync_up; > 0 */
    int backoff_min_ms; /* first wait after a failure, doubled up to backoff_max_ms; */
    int backoff_max_ms; /* 0: 100 and 5000 */
} sg_rasync_opts;

typedef struct sg_rasync_cbs {
    void (*on_open)(void *ud);
    void (*on_down)(void *ud, const char *reason);
    /* error_reply: the link closed the connection on an error reply that no
     * command was waiting for (an error reply to SUBSCRIBE, "max number of
     * clients reached", LOADING); why is the server's message. May be NULL. */
    bool (*on_lost)(void *ud, int conn, const char *why, bool error_reply);
} sg_rasync_cbs;

/* reply is NULL when the connection closed first (see above). */
typedef void (*sg_rasync_reply_fn)(void *pd, const struct redisReply *reply);

/* Starts the link: copies the options and schedules the first attempt on
 * loop; returns at once (Redis being down is reported through on_down, not
 * here). on_open and on_down are required. An error (bad options, a user
 * without a password: SG_EUSAGE) writes nothing to *out and calls nothing. */
int sg_rasync_start(struct uv_loop_s *loop, const sg_rasync_opts *o, const sg_rasync_cbs *cbs,
                    void *ud, sg_rasync **out, sg_error *err);

/* Queues a command (argv form; argvlen NULL: NUL-terminated) on connection
 * conn of the live session; fn(pd, reply) runs once, as described above.
 * Returns SG_EREDIS, and fn never runs, if that connection is not open or is
 * going away. */
int sg_rasync_command(sg_rasync *a, int conn, sg_rasync_reply_fn fn, void *pd, int argc,
                      const char **argv, const size_t *argvlen);

/* SUBSCRIBE channel on connection conn; fn(pd, reply) runs for the
 * confirmation and for every message, and with NULL when the connection
 * closes. A refused SUBSCRIBE closes the connection: on_lost
 * with error_reply. Returns SG_EREDIS, and fn never runs, as for
 * sg_rasync_command. */
int sg_rasync_subscribe(sg_rasync *a, int conn, const char *channel, sg_rasync_reply_fn fn,
                        void *pd);

/* Closes connection conn of the session without ending the session (its
 * pending replies run with NULL); a no-op if it is not open. */
void sg_rasync_drop(sg_rasync *a, int conn);

/* The owner's handshake is done: the attempt timer stops and the backoff
 * starts over from backoff_min_ms. Once per session. */
void sg_rasync_up(sg_rasync *a);

/* Ends the live session for a reason of the owner's (a reply it cannot use,
 * a check that took too long): as a failure, but without on_down, since the
 * owner knows. A no-op when no attempt is live. */
void sg_rasync_fail(sg_rasync *a);

/* The server of the current (or last) attempt: the URL's address, or the
 * master the sentinels named ("10.0.0.7:6379"); before the first answer,
 * the Sentinel URL's description. Valid until the next attempt starts. */
const char *sg_rasync_server(const sg_rasync *a);

/* An attempt or session is under way: false between a failure and the next
 * attempt, and after sg_rasync_stop. */
bool sg_rasync_live(const sg_rasync *a);

/* Closes every connection and handle; done(ud) (done may be NULL) runs from
 * the loop once they are closed, after a is freed. a must not be used after
 * this call; no callback of a except the NULL replies described above runs
 * after it returns, and none at all after done. */
void sg_rasync_stop(sg_rasync *a, void (*done)(void *ud), void *ud);

#endif
