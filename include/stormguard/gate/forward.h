/* Delivery to the downstream notifier with h2o's HTTP/1.1 client on the
 * daemon's loop: no thread per request and no blocking call (names are
 * looked up on libuv's thread pool). Connections are kept alive; in-flight
 * requests are capped; events of one lane (a build's source and job) are
 * delivered one at a time in order; failures are retried with exponential
 * backoff and jitter, honouring Retry-After, until the downstream accepts or
 * the event is older than max_age and is declared dead. */
#ifndef STORMGUARD_FORWARD_H
#define STORMGUARD_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "stormguard/base/clock.h"
#include "stormguard/base/error.h"
#include "stormguard/gate/delivery.h"

struct uv_loop_s;

typedef struct sg_forward sg_forward;

typedef struct sg_forward_opts {
    const char *downstream; /* base URL: "http://127.0.0.1:8089", https:// too */
    int max_inflight;
    int timeout_ms;        /* per attempt, from its start to the end of the answer */
    int64_t max_age_ms;    /* give up on events older than this */
    int retry_base_ms;     /* first retry delay; doubles per attempt */
    int retry_max_ms;      /* cap of the delay */
    const sg_clock *clock; /* the events' ages and retry times; NULL: the real one */
} sg_forward_opts;

/* Reports each attempt. For RETRY the item stays with the forwarder (the
 * callback may record the attempt); for DELIVERED and DEAD the callback now
 * owns the item and frees it with sg_fwd_item_free. */
typedef void (*sg_fwd_result_fn)(void *ud, sg_fwd_item *item, sg_fwd_outcome outcome,
                                 long http_status, const char *error, double seconds);

/* Whether sg_forward_start would take url as the downstream (scheme, host,
 * port, path; no user, query or fragment), without a loop, a lookup or a
 * connection. SG_EUSAGE with the reason. */
int sg_forward_check_downstream(const char *url, sg_error *err);
int sg_forward_start(struct uv_loop_s *loop, const sg_forward_opts *o, sg_fwd_result_fn fn,
                     void *ud, sg_forward **out, sg_error *err);
/* Queues an item (loop thread; not after sg_forward_stop); the forwarder
 * owns it from now until its result. */
void sg_forward_push(sg_forward *f, sg_fwd_item *item);
/* Items queued or in flight; 0 for NULL (a forwarder stopped). */
size_t sg_forward_backlog(const sg_forward *f);
size_t sg_forward_inflight(const sg_forward *f);
/* Stops: starts no new transfer and frees every queued item (its event
 * stays pending in the journal, delivered by the next run). Transfers in
 * flight run to their end, at most timeout_ms, and are reported through the
 * result callback as usual, so that a delivery the downstream accepted is
 * recorded and never sent again; a RETRY reported now is not retried (the
 * forwarder frees the item after the callback). Then the handles close and
 * done(ud) runs; f is freed. Loop thread, not from the result callback. */
void sg_forward_stop(sg_forward *f, void (*done)(void *ud), void *ud);

#endif
