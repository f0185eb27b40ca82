/* Tests journal.h on a real SQLite file and a real libuv loop: every op is
 * reported once, the ledger catches a build's second delivery (also within
 * one batch, from the journal's memory and from the store, and after a
 * crash between two ledger writes), and the WAL stays bounded however much
 * is written. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "stormguard/gate/journal.h"
#include "stormguard/base/clock.h"
#include "stormguard/store/store.h"
#include "stormguard/store/events.h"
#include "stormguard/base/util.h"

typedef struct fixture {
    char dir[64];
    char db[128];
    uv_loop_t loop;
    sg_journal *j;
    int reported;
    bool stopped;
} fixture;

static void on_stopped(void *ud)
{
    ((fixture *)ud)->stopped = true;
}

static int setup(void **state)
{
    fixture *f = sg_xcalloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/sg-journal-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->db, sizeof f->db, "%s/sg.db", f->dir);
    uv_loop_init(&f->loop);
    sg_error err;
    if (sg_journal_start(&f->loop, f->db, NULL, &f->j, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sg_journal_stop(f->j, on_stopped, f);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_true(f->stopped);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    char path[160];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s%s", f->db, suffix[i]);
        unlink(path);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static void on_done(sg_jop *op)
{
    fixture *f = op->ud;
    assert_int_equal(op->status, 0);
    f->reported++;
}

static void fill(fixture *f, sg_jop *op, const char *job, int64_t number, const void *body,
                 size_t body_len)
{
    memset(op, 0, sizeof *op);
    op->type = SG_JOP_INSERT;
    op->ledger = true;
    op->row = (sg_event_row){.received_at = sg_now_ms(),
                             .source = "jenkins-prod",
                             .job = job,
                             .number = number,
                             .kind = "unknown",
                             .reason = "job unknown to snapshot and ledger",
                             .state = SG_STATE_HELD,
                             .method = "POST",
                             .path = "/",
                             .headers = "",
                             .body = body,
                             .body_len = body_len};
    op->done = on_done;
    op->ud = f;
}

static void wait_reported(fixture *f, int n)
{
    while (f->reported < n)
        uv_run(&f->loop, UV_RUN_ONCE);
}

/* A held build is not in the loop's memory: its second delivery must be
 * told by the store's ledger, in the same batch as the first or later. */
static void test_second_delivery_is_replay(void **state)
{
    fixture *f = *state;
    sg_jop ops[3];
    fill(f, &ops[0], "team-a/svc", 7, "{}", 2);
    fill(f, &ops[1], "team-a/svc", 7, "{}", 2);
    fill(f, &ops[2], "team-a/svc", 8, "{}", 2);
    for (int i = 0; i < 3; i++)
        sg_journal_submit(f->j, &ops[i]);
    wait_reported(f, 3);
    assert_false(ops[0].duplicate);
    assert_int_equal(ops[0].row.state, SG_STATE_HELD);
    assert_true(ops[1].duplicate);
    assert_string_equal(ops[1].row.kind, "replay");
    assert_int_equal(ops[1].row.state, SG_STATE_SUPPRESSED);
    assert_true(ops[1].row.done_at > 0);
    assert_false(ops[2].duplicate);

    sg_jop again;
    fill(f, &again, "team-a/svc", 8, "{}", 2);
    sg_journal_submit(f->j, &again);
    wait_reported(f, 4);
    assert_true(again.duplicate);
    assert_int_equal(again.row.state, SG_STATE_SUPPRESSED);
}

/* Observe mode: a second delivery the ledger catches is still a replay,
 * but it stays pending (it goes downstream as if the gate were not there)
 * in its queue generation, with would = suppressed. */
static void test_observe_duplicate_stays_pending(void **state)
{
    fixture *f = *state;
    sg_jop ops[2];
    for (int i = 0; i < 2; i++) {
        fill(f, &ops[i], "team-o/svc", 3, "{}", 2);
        ops[i].row.kind = "new";
        ops[i].row.state = SG_STATE_PENDING;
        ops[i].row.qgen = 1;
        ops[i].observe = true;
        sg_journal_submit(f->j, &ops[i]);
    }
    wait_reported(f, 2);
    assert_false(ops[0].duplicate);
    assert_null(ops[0].row.would);
    assert_true(ops[1].duplicate);
    assert_string_equal(ops[1].row.kind, "replay");
    assert_int_equal(ops[1].row.state, SG_STATE_PENDING);
    assert_int_equal(ops[1].row.done_at, 0);
    assert_int_equal(ops[1].row.qgen, 1);
    assert_string_equal(ops[1].row.would, "suppressed");
}

static int64_t ledger_rows(const fixture *f, const char *job)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT count(*) FROM ledger WHERE job = ?1", -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_text(st, 1, job, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* accepted_at of a build in the store's ledger (-1: none). */
static int64_t ledger_accepted_at(const fixture *f, const char *job, int64_t number)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT accepted_at FROM ledger WHERE job = ?1 AND "
                                        "number = ?2",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, job, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, number);
    int64_t at = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return at;
}

static int64_t ledger_upto(const fixture *f)
{
    sg_store *s;
    sg_error err;
    sg_store_options ro = {.readonly = true};
    assert_int_equal(sg_store_open(f->db, &ro, &s, &err), 0);
    int64_t upto = -1;
    assert_int_equal(sg_store_ledger_mark(s, &upto, &err), 0);
    sg_store_free(s);
    return upto;
}

/* The ledger is written in bulk: a build accepted a moment ago is told by
 * the journal's memory; about a second later it is in the store's ledger,
 * with the mark at the last event, and still told. Many builds are written
 * in chunks, each told throughout. */
static void test_ledger_written_in_bulk(void **state)
{
    fixture *f = *state;
    sg_jop first, again, later, last;
    fill(f, &first, "team-b/svc", 1, "{}", 2);
    first.row.received_at = 1600000000000; /* the submitter's clock, not the writer's */
    sg_journal_submit(f->j, &first);
    wait_reported(f, 1);
    assert_int_equal(ledger_rows(f, "team-b/svc"), 0); /* in memory only */
    fill(f, &again, "team-b/svc", 1, "{}", 2);
    sg_journal_submit(f->j, &again);
    wait_reported(f, 2);
    assert_true(again.duplicate);

    usleep(1100 * 1000); /* past LEDGER_EVERY_S: written after the next commit */
    fill(f, &later, "team-b/svc", 2, "{}", 2);
    sg_journal_submit(f->j, &later);
    wait_reported(f, 3);
    for (int i = 0; i < 200 && ledger_rows(f, "team-b/svc") < 2; i++)
        usleep(10 * 1000); /* in the writer's idle time, after the answer */
    assert_int_equal(ledger_rows(f, "team-b/svc"), 2);
    assert_int_equal(ledger_accepted_at(f, "team-b/svc", 1), 1600000000000);
    assert_int_equal(ledger_upto(f), later.row.id);
    fill(f, &last, "team-b/svc", 1, "{}", 2);
    sg_journal_submit(f->j, &last);
    wait_reported(f, 4);
    assert_true(last.duplicate); /* told by the store's ledger now */

    /* 3000 builds of 50 jobs (written in chunks of 256), then all of them
     * again at once, while they are being written: every one a replay */
    enum { M = 3000 };
    sg_jop *ops = sg_xcalloc(2 * M, sizeof *ops);
    char(*jobs)[32] = sg_xcalloc(50, sizeof *jobs);
    for (int i = 0; i < 50; i++)
        snprintf(jobs[i], sizeof jobs[i], "team-m/job-%d", i);
    for (int i = 0; i < M; i++) {
        fill(f, &ops[i], jobs[i % 50], 100 + i, "{}", 2);
        sg_journal_submit(f->j, &ops[i]);
    }
    wait_reported(f, 4 + M);
    usleep(1100 * 1000);
    for (int i = 0; i < M; i++) {
        fill(f, &ops[M + i], jobs[i % 50], 100 + i, "{}", 2);
        sg_journal_submit(f->j, &ops[M + i]);
    }
    wait_reported(f, 4 + 2 * M);
    for (int i = 0; i < M; i++) {
        assert_false(ops[i].duplicate);
        assert_true(ops[M + i].duplicate);
    }
    int64_t rows = 0;
    for (int k = 0; k < 300 && rows < M; k++) {
        rows = 0;
        for (int i = 0; i < 50; i++)
            rows += ledger_rows(f, jobs[i]);
        if (rows < M)
            usleep(10 * 1000);
    }
    assert_int_equal(rows, M);
    assert_true(ledger_upto(f) >= ops[M - 1].row.id);
    free(jobs);
    free(ops);
}

/* A crash between two ledger writes: events journaled after the mark have
 * builds the ledger lacks. Opening the journal adds them, so their second
 * delivery is still a replay; the builds of replays and pass-through events
 * are not added. */
static void test_ledger_caught_up_after_crash(void **state)
{
    fixture *f = *state;
    sg_journal_stop(f->j, on_stopped, f);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_true(f->stopped);
    f->stopped = false;

    sg_store *s;
    sg_error err;
    sg_store_options rw = {0};
    assert_int_equal(sg_store_open(f->db, &rw, &s, &err), 0);
    assert_int_equal(sg_store_begin(s, &err), 0);
    const char *kinds[] = {"new", "unknown", "replay", "passthrough"};
    for (int i = 0; i < 4; i++) {
        sg_event_row r = {.received_at = sg_now_ms(),
                          .source = "jenkins-prod",
                          .job = "team-c/crashed",
                          .number = 10 + i,
                          .kind = kinds[i],
                          .reason = "test",
                          .state = SG_STATE_FORWARDED,
                          .method = "POST",
                          .path = "/",
                          .headers = "",
                          .body = "{}",
                          .body_len = 2,
                          .done_at = 1};
        assert_int_equal(sg_store_event_insert(s, &r, &err), 0);
    }
    assert_int_equal(sg_store_commit(s, &err), 0);
    sg_store_free(s);
    assert_int_equal(ledger_rows(f, "team-c/crashed"), 0);

    assert_int_equal(sg_journal_start(&f->loop, f->db, NULL, &f->j, &err), 0);
    assert_int_equal(ledger_rows(f, "team-c/crashed"), 2); /* new and unknown */
    sg_jop ops[3];
    fill(f, &ops[0], "team-c/crashed", 10, "{}", 2);
    fill(f, &ops[1], "team-c/crashed", 11, "{}", 2);
    fill(f, &ops[2], "team-c/crashed", 12, "{}", 2);
    for (int i = 0; i < 3; i++)
        sg_journal_submit(f->j, &ops[i]);
    wait_reported(f, 3);
    assert_true(ops[0].duplicate);
    assert_true(ops[1].duplicate);
    assert_false(ops[2].duplicate); /* a replay's build was never accepted */
}

static off_t wal_size(const fixture *f)
{
    char wal[160];
    snprintf(wal, sizeof wal, "%s-wal", f->db);
    struct stat st;
    return stat(wal, &st) == 0 ? st.st_size : -1;
}

/* A steady stream of commits must not grow the WAL without end: well past
 * 32 MiB of pages it starts over (once a passive checkpoint has copied most
 * of it) and the file is cut back to 32 MiB. */
static void test_wal_stays_bounded(void **state)
{
    fixture *f = *state;
    enum { N = 3000, BODY = 16384 };
    char *body = sg_xmalloc(BODY);
    memset(body, 'x', BODY);
    sg_jop *ops = sg_xcalloc(N, sizeof *ops);
    for (int i = 0; i < N; i++) {
        fill(f, &ops[i], "team-b/big", i + 1, body, BODY);
        sg_journal_submit(f->j, &ops[i]);
        if (i % 100 == 99)
            wait_reported(f, i + 1); /* many commits, not one */
    }
    wait_reported(f, N);
    /* N * BODY is about 48 MiB; the hard bound, should the checkpointer lag
     * (ASan), is 64 MiB */
    assert_true(wal_size(f) < 66 * 1024 * 1024);
    sg_jop more[60];
    int tries = 0;
    while (tries < 60 && wal_size(f) > 32 * 1024 * 1024) {
        usleep(100 * 1000);
        fill(f, &more[tries], "team-b/big", N + 1 + tries, "{}", 2);
        sg_journal_submit(f->j, &more[tries]);
        wait_reported(f, N + ++tries);
    }
    assert_true(wal_size(f) <= 32 * 1024 * 1024);
    free(ops);
    free(body);
}

/* A long read keeps the WAL from starting over: commits must not wait for
 * it, and once it ends the WAL starts over and is cut back to 32 MiB. */
static void test_long_reader_does_not_stall_commits(void **state)
{
    fixture *f = *state;
    sqlite3 *reader;
    assert_int_equal(sqlite3_open_v2(f->db, &reader, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM event", NULL, NULL, NULL),
                     SQLITE_OK);
    enum { N = 3000, BODY = 16384 };
    char *body = sg_xmalloc(BODY);
    memset(body, 'y', BODY);
    sg_jop *ops = sg_xcalloc(N, sizeof *ops);
    double started = sg_mono_s();
    for (int i = 0; i < N; i++) {
        fill(f, &ops[i], "team-c/big", i + 1, body, BODY);
        sg_journal_submit(f->j, &ops[i]);
        if (i % 100 == 99)
            wait_reported(f, i + 1);
    }
    wait_reported(f, N);
    /* a checkpoint that waited for the reader would take 5 s per try */
    assert_true(sg_mono_s() - started < 4.0);
    assert_true(wal_size(f) > 40 * 1024 * 1024); /* held up by the reader */
    assert_int_equal(sqlite3_exec(reader, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(reader);
    /* the next commits start it over, once a checkpoint got past the
     * reader's end: a few tries (more on a machine busy with other tests) */
    sg_jop more[60];
    int tries = 0;
    while (tries < 60 && wal_size(f) > 32 * 1024 * 1024) {
        usleep(150 * 1000);
        fill(f, &more[tries], "team-c/big", N + 1 + tries, body, BODY);
        sg_journal_submit(f->j, &more[tries]);
        wait_reported(f, N + ++tries);
    }
    assert_true(wal_size(f) <= 32 * 1024 * 1024);
    free(ops);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_second_delivery_is_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_observe_duplicate_stays_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_written_in_bulk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_caught_up_after_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_stays_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_reader_does_not_stall_commits, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
