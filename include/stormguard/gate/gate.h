/* The webhook gate (stormguard run): receives the poller's events over HTTP,
 * journals each one durably before answering, classifies it (replay / new /
 * unknown / pass-through), suppresses replays and forwards the rest to the
 * notifier. Everything runs on one libuv loop; SQLite writes go through the
 * journal's writer thread. */
#ifndef STORMGUARD_GATE_H
#define STORMGUARD_GATE_H

#include <stdbool.h>
#include <stdint.h>

#include "stormguard/base/config.h"
#include "stormguard/base/error.h"
#include "stormguard/store/store.h"
#include "stormguard/base/util.h"

struct json_t;
struct sg_http_req;

typedef struct sg_gate sg_gate;

/* Runs the daemon until SIGTERM or SIGINT, then stops cleanly: stops
 * accepting, finishes the commits in flight, closes every handle. Returns 0,
 * or an error if it could not start. */
int sg_gate_run(const sg_config *cfg, sg_error *err);

/* ---- for the admin API (admin.c) ---- */

/* The /v1/status document. */
struct json_t *sg_gate_status(sg_gate *g);
/* The /v1/events document; filters may be NULL. */
int sg_gate_events(sg_gate *g, const char *state, const char *kind, const char *job, int limit,
                   struct json_t **out, sg_error *err);
/* Prometheus text. */
void sg_gate_metrics(sg_gate *g, sg_buf *out);
/* An operator's request (admin API); strings are borrowed for the call. */
typedef struct sg_op_request {
    sg_hold_filter hold; /* release, drop: which held events */
    bool newest_only;    /* release: older builds of a job are superseded */
    const char *reason;  /* drop (required), guard, flush */
    const char *actor;   /* who asked, for the audit log */
} sg_op_request;

/* Each of these answers req, now or once the change is durable. */
void sg_gate_held(sg_gate *g, struct sg_http_req *req, int64_t limit);
void sg_gate_release(sg_gate *g, struct sg_http_req *req, const sg_op_request *r);
void sg_gate_drop(sg_gate *g, struct sg_http_req *req, const sg_op_request *r);
/* Guard mode on (for [guard] duration) or off. */
void sg_gate_guard(sg_gate *g, struct sg_http_req *req, bool on, const sg_op_request *r);
/* A flush is coming (stormguard flush): guard mode on, a fresh snapshot;
 * answered once the snapshot is committed. */
void sg_gate_flush_announce(sg_gate *g, struct sg_http_req *req, const sg_op_request *r);

/* Ready: journal writable and downstream reachable; reasons lists what is not. */
bool sg_gate_ready(sg_gate *g, struct json_t *reasons);
/* What works only in part (Redis unreachable: no wipe detection), appended
 * to reasons; the gate is still ready. */
void sg_gate_degraded(sg_gate *g, struct json_t *reasons);

#endif
