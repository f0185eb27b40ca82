/* Tests the gate core (core.h) of replicas: two cores on one PostgreSQL
 * database the test starts (pg_fixture.h), each with its replica's claim
 * (store.h) and a deliverer that records what it is handed, on one libuv
 * loop and one virtual clock, driven as the simulator drives one core. Each
 * test names the shared path it would catch breaking: the ledger's word
 * across replicas, a job's order across replicas, claims that wait for the
 * deliverer's room. The replicas' leases run on the server's clock (5 s)
 * and their renewals on the virtual one (advance): each test advances
 * within a second or two of real time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core_driver.h"
#include "pg_fixture.h"
#include "stormguard/base/clock.h"
#include "stormguard/base/util.h"
#include "stormguard/gate/core.h"
#include "stormguard/store/store.h"

#define T0 1700000000000LL

static pg_fixture g_pg;
static int g_databases;

/* One replica: its claim on the store, its core and what its deliverer
 * got (core_driver.h). */
typedef struct replica {
    sg_store_claim *claim;
    driven d;
} replica;

typedef struct fixture {
    char dbname[32], url[320];
    uv_loop_t loop;
    sg_vclock clock;
    sg_strlist build_paths;
    replica r[2];
} fixture;

static void settle(fixture *f);

static void start_replica(fixture *f, replica *r)
{
    sg_error err;
    if (sg_store_claim_new(f->url, &r->claim, &err))
        fail_msg("claiming the store: %s", err.msg);
    sg_core_opts o;
    /* no storm: what is tested is the queue */
    driven_core_opts(&o, f->url, &f->clock.clock, &f->build_paths, false);
    o.on_storm = SG_ON_STORM_HOLD;
    o.replica = sg_store_claim_name(r->claim);
    if (sg_core_start(&f->loop, &o, &r->d.core, &err))
        fail_msg("sg_core_start: %s", err.msg);
    driven_attach(&r->d);
}

static int setup(void **state)
{
    fixture *f = sg_xcalloc(1, sizeof *f);
    snprintf(f->dbname, sizeof f->dbname, "c%d", ++g_databases);
    if (pg_fixture_create_db(&g_pg, f->dbname, f->url, sizeof f->url)) {
        free(f);
        return -1;
    }
    uv_loop_init(&f->loop);
    sg_vclock_init(&f->clock, T0);
    sg_strlist_push(&f->build_paths, "/");
    for (int i = 0; i < 2; i++)
        start_replica(f, &f->r[i]);
    settle(f); /* the first claims (nothing pending) are back */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    driven *d[] = {&f->r[0].d, &f->r[1].d};
    driven_close(&f->loop, d, 2); /* before the claims, whose names the cores borrow */
    for (int i = 0; i < 2; i++)
        sg_store_claim_free(f->r[i].claim);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    sg_strlist_clear(&f->build_paths);
    pg_fixture_drop_db(&g_pg, f->dbname);
    free(f);
    return 0;
}

static void settle(fixture *f)
{
    driven *d[] = {&f->r[0].d, &f->r[1].d};
    driven_settle(&f->loop, d, 2);
}

/* Submits an Igor build event of job, started a day before T0. */
static void submit(driven *d, const char *job, int64_t number)
{
    driven_submit(d, job, number, T0 - 86400000 + number, -1);
}

static const sg_answer *post(fixture *f, driven *d, const char *job, int64_t number)
{
    submit(d, job, number);
    while (!d->answered)
        uv_run(&f->loop, UV_RUN_ONCE);
    settle(f);
    return &d->last;
}

static void deliver_all(fixture *f, driven *d)
{
    driven_deliver_all(d);
    settle(f);
}

/* Both replicas' ticks a second later (each claims what it finds). */
static void advance(fixture *f)
{
    sg_vclock_set(&f->clock, f->clock.now_ms + 1000);
    for (int k = 0; k < 2; k++)
        sg_core_tick(f->r[k].d.core);
    settle(f);
}

static size_t pushed_all(const fixture *f)
{
    return f->r[0].d.npushed + f->r[1].d.npushed;
}

/* The id of the event r was handed k-th (the slot is NULL once reported,
 * so this asks about what is still held). */
static int64_t pushed_id(const driven *r, size_t k)
{
    assert_true(k < r->npushed && r->pushed[k]);
    return r->pushed[k]->id;
}

/* The same build submitted to both replicas in one turn of the loop, many
 * times: one of them journals it new and delivers it, the other journals
 * a replay (the ledger's primary key decides, in the transaction that
 * journals the event), whichever commits first. */
static void same_build_at_both_forwarded_once(void **state)
{
    fixture *f = *state;
    enum { ROUNDS = 20 };
    for (int i = 0; i < ROUNDS; i++) {
        char job[32];
        snprintf(job, sizeof job, "team-a/svc-%d", i);
        submit(&f->r[0].d, job, 7);
        submit(&f->r[1].d, job, 7);
        while (!f->r[0].d.answered || !f->r[1].d.answered)
            uv_run(&f->loop, UV_RUN_ONCE);
        settle(f);
        int news = 0, replays = 0; /* a job no snapshot knows: unknown, forwarded */
        for (int k = 0; k < 2; k++) {
            const sg_answer *a = &f->r[k].d.last;
            assert_int_equal(a->status, 200);
            news += a->kind != SG_KIND_REPLAY && a->state == SG_STATE_PENDING;
            replays += a->kind == SG_KIND_REPLAY && a->state == SG_STATE_SUPPRESSED;
        }
        if (news != 1 || replays != 1)
            fail_msg("round %d: %d new and %d replays, want one of each", i, news, replays);
        assert_int_equal(pushed_all(f), (size_t)i + 1);
        advance(f); /* nothing else to claim */
        assert_int_equal(pushed_all(f), (size_t)i + 1);
    }
}

/* A job's second build, journaled at the other replica while the first is
 * being delivered, goes to the replica delivering the first (it alone may
 * claim what is behind its own claim), behind it in its job's lane: never
 * to the other, ticks or not. Another job is not held back by it. */
static void job_order_across_replicas(void **state)
{
    fixture *f = *state;
    driven *a = &f->r[0].d, *b = &f->r[1].d;
    int64_t first = post(f, a, "team-o/svc", 1)->id;
    assert_int_equal(a->npushed, 1); /* alone in its job's queue: claimed as it went in */
    assert_int_equal(pushed_id(a, 0), first);
    const sg_answer *s = post(f, b, "team-o/svc", 2);
    if (s->state != SG_STATE_PENDING)
        fail_msg("the second build is %s (%s), want pending", sg_event_state_name(s->state),
                 sg_kind_name(s->kind));
    int64_t second = s->id;
    assert_true(second > first);
    int64_t other = post(f, b, "team-p/svc", 1)->id;
    for (int i = 0; i < 3; i++)
        advance(f);
    assert_int_equal(b->npushed, 1);
    assert_int_equal(pushed_id(b, 0), other);
    assert_int_equal(a->npushed, 2);
    assert_int_equal(pushed_id(a, 1), second);
    deliver_all(f, a);
    deliver_all(f, b);
    for (int i = 0; i < 2; i++)
        advance(f);
    assert_int_equal(pushed_all(f), 3); /* each once */
}

/* A replica whose deliverer is full claims nothing; its events stay in the
 * store, and once it has room its claims bring every one of them, each
 * job's in the order they came. */
static void claims_wait_for_room_in_order(void **state)
{
    fixture *f = *state;
    driven *a = &f->r[0].d;
    a->full = true;
    f->r[1].d.full = true; /* the other claims nothing either */
    int64_t ids[6];
    for (int i = 0; i < 6; i++) { /* svc-0, svc-0, svc-1, ...: each head has one behind it */
        char job[32];
        snprintf(job, sizeof job, "team-g/svc-%d", i / 2);
        ids[i] = post(f, a, job, i + 1)->id;
    }
    advance(f);
    assert_int_equal(pushed_all(f), 0);
    a->full = false;
    advance(f);
    assert_int_equal(a->npushed, 6);
    for (int j = 0; j < 3; j++) {
        size_t at[2], n = 0;
        for (size_t k = 0; k < 6; k++)
            if (a->pushed[k]->id == ids[2 * j] || a->pushed[k]->id == ids[2 * j + 1])
                at[n++] = k;
        assert_int_equal(n, 2);
        assert_int_equal(a->pushed[at[0]]->id, ids[2 * j]);
        assert_int_equal(a->pushed[at[1]]->id, ids[2 * j + 1]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(same_build_at_both_forwarded_once, setup, teardown),
        cmocka_unit_test_setup_teardown(job_order_across_replicas, setup, teardown),
        cmocka_unit_test_setup_teardown(claims_wait_for_room_in_order, setup, teardown),
    };
    if (pg_fixture_start(&g_pg) != 0)
        return 1;
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    pg_fixture_stop(&g_pg);
    return failed;
}
