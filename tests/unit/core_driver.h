/* Drives a gate core (core.h) as the simulator does, for the cmocka tests
 * of test_core.c (one core) and test_core_replicas.c (two on one store): a
 * deliverer that records what it is handed, Igor build requests, their
 * answers, and a loop run until the cores are idle. */
#ifndef SG_TEST_CORE_DRIVER_H
#define SG_TEST_CORE_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "stormguard/gate/core.h"

#define DRIVEN_MAX_PUSHED 256

typedef struct driven {
    sg_core *core;
    sg_fwd_item *pushed[DRIVEN_MAX_PUSHED]; /* NULL once reported */
    size_t npushed, nreported;
    bool full; /* its deliverer says its backlog is beyond the spill point */
    sg_answer last;
    bool answered;
    bool closed;
} driven;

/* The options of a core on db that the tests share: the virtual clock,
 * the build paths, guard 10 min, cooldown 5 min, Igor's source "jenkins";
 * the storm detector's default thresholds, or none of them (storms false). */
void driven_core_opts(sg_core_opts *o, const char *db, const sg_clock *clock,
                      const sg_strlist *build_paths, bool storms);

/* d's recording deliverer, set on d->core. */
void driven_attach(driven *d);

/* The done callback of sg_core_close with ud d: d->closed. */
void driven_on_closed(void *ud);

/* Stops and closes each of the n cores that started (a close begun
 * already is taken as it is), runs loop until they are closed, and frees
 * them and what their deliverers kept. */
void driven_close(uv_loop_t *loop, driven *const *d, size_t n);

/* The answer callback of a submit with ud d: d->last and d->answered. */
void driven_on_answer(void *ud, const sg_answer *a);

/* Submits an Igor build event of job (jenkins-prod, SUCCESS, started at
 * start_ms; its duration when duration_ms >= 0) to d's core, not waiting
 * for the answer (d->answered once it came). */
void driven_submit(driven *d, const char *job, int64_t number, int64_t start_ms,
                   int64_t duration_ms);

/* Runs loop until none of the n cores has anything in its journals or on
 * the thread pool (a claim, a refill, a reload); fails the test after 10 s. */
void driven_settle(uv_loop_t *loop, driven *const *d, size_t n);

/* Reports every item d was handed and has not reported as delivered. */
void driven_deliver_all(driven *d);

#endif
