/* The admin API on its own listener: /v1/status, /v1/events, /v1/held,
 * /v1/release, /v1/drop, /v1/guard, /v1/flush, /metrics, /healthz, /readyz.
 * The /v1 routes need the bearer token when one is configured (compared in
 * constant time); health and metrics do not, for probes and scrapers. JSON
 * in and out: the only module that turns what the gate, its core, the guard
 * and the held queue report into HTTP answers. Loop thread. */
#ifndef STORMGUARD_ADMIN_H
#define STORMGUARD_ADMIN_H

#include "stormguard/gate/gate.h"
#include "stormguard/gate/http.h"

typedef struct sg_admin {
    sg_gate *gate;
    const char *token; /* NULL: no token (then the listener is loopback only) */
} sg_admin;

/* An sg_http_handler; ud is an sg_admin. */
void sg_admin_handle(void *ud, sg_http_req *req);

/* True if token equals expected, in time independent of where they differ. */
bool sg_token_equal(const char *token, size_t len, const char *expected);

#endif
