/* The gate core's test driver (core_driver.h). */
#include "core_driver.h"

#include <stdarg.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void push(void *ud, sg_fwd_item *it)
{
    driven *d = ud;
    assert_true(d->npushed < DRIVEN_MAX_PUSHED);
    d->pushed[d->npushed++] = it;
}

static size_t backlog(void *ud)
{
    driven *d = ud;
    return d->full ? 100000 : d->npushed - d->nreported;
}

void driven_core_opts(sg_core_opts *o, const char *db, const sg_clock *clock,
                      const sg_strlist *build_paths, bool storms)
{
    *o = (sg_core_opts){.db_path = db,
                        .clock = clock,
                        .build_paths = build_paths,
                        .guard_ms = 600000,
                        .cooldown_ms = 300000};
    o->events.notification_source = "jenkins";
    sg_storm_opts_default(&o->storm);
    if (!storms) {
        o->storm.same_job_builds = 0;
        o->storm.first_seen_jobs = 0;
        o->storm.replay_share_pct = 0;
        o->storm.rate_factor = 0;
    }
}

void driven_attach(driven *d)
{
    sg_deliverer del = {.push = push, .backlog = backlog, .ud = d};
    sg_core_set_deliverer(d->core, &del);
}

void driven_on_answer(void *ud, const sg_answer *a)
{
    driven *d = ud;
    d->last = *a;
    d->answered = true;
}

void driven_submit(driven *d, const char *job, int64_t number, int64_t start_ms,
                   int64_t duration_ms)
{
    char duration[32] = "";
    if (duration_ms >= 0)
        snprintf(duration, sizeof duration, ",\"duration\":%lld", (long long)duration_ms);
    char body[512];
    int n = snprintf(body, sizeof body,
                     "{\"details\":{\"type\":\"build\",\"source\":\"igor\"},\"content\":{"
                     "\"master\":\"jenkins-prod\",\"project\":{\"name\":\"%s\",\"lastBuild\":{"
                     "\"number\":%lld,\"result\":\"SUCCESS\",\"building\":false,\"timestamp\":"
                     "\"%lld\"%s}}}}",
                     job, (long long)number, (long long)start_ms, duration);
    assert_true(n > 0 && (size_t)n < sizeof body);
    sg_request rq = {.method = "POST",
                     .method_len = 4,
                     .path = "/",
                     .path_len = 1,
                     .headers = "content-type: application/json\n",
                     .body = body,
                     .body_len = (size_t)n};
    memset(&d->last, 0, sizeof d->last);
    d->answered = false;
    sg_error err;
    if (sg_core_submit(d->core, &rq, driven_on_answer, d, &err))
        fail_msg("submit: %s", err.msg);
}

void driven_settle(uv_loop_t *loop, driven *const *d, size_t n)
{
    int quiet = 0;
    for (int i = 0; i < 20000; i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        bool idle = true;
        for (size_t k = 0; k < n; k++) {
            sg_core_stats st;
            sg_core_stats_get(d[k]->core, &st);
            idle = idle && st.journal_depth == 0 && st.reads == 0;
        }
        quiet = idle ? quiet + 1 : 0;
        if (quiet == 3)
            return;
        usleep(500);
    }
    fail_msg("the core did not settle");
}

void driven_deliver_all(driven *d)
{
    while (d->nreported < d->npushed) {
        sg_fwd_item *it = d->pushed[d->nreported];
        d->pushed[d->nreported++] = NULL; /* the core takes it */
        it->attempts++;
        sg_core_delivered(d->core, it, SG_FWD_DELIVERED, 200, NULL, 0.001);
    }
}

void driven_on_closed(void *ud)
{
    ((driven *)ud)->closed = true;
}

void driven_close(uv_loop_t *loop, driven *const *d, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if (!d[k]->core)
            continue;
        sg_core_stop(d[k]->core);
        sg_core_close(d[k]->core, driven_on_closed, d[k]);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    for (size_t k = 0; k < n; k++) {
        if (d[k]->core) {
            assert_true(d[k]->closed);
            sg_core_free(d[k]->core);
            d[k]->core = NULL;
        }
        for (size_t i = 0; i < d[k]->npushed; i++)
            sg_fwd_item_free(d[k]->pushed[i]);
        d[k]->npushed = d[k]->nreported = 0;
    }
}
