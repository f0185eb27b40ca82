/* Tests store.h on real SQLite files: migrations, errors, snapshots, index,
 * prune, audit. Built again as test_store_pg (SG_TEST_PG): the tests of the
 * contract itself, not of SQLite's files, on a real PostgreSQL that the
 * test starts (pg_fixture.h), each in a database of its own. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stormguard/base/clock.h"
#include "stormguard/base/error.h"
#include "stormguard/store/store.h"
#include "stormguard/store/copy.h"
#include "stormguard/store/episodes.h"
#include "stormguard/store/events.h"
#include "stormguard/store/held.h"
#include "stormguard/store/replicas.h"
#include "stormguard/store/snapshots.h"
#include "stormguard/base/util.h"

#ifdef SG_TEST_PG
/* the tests of SQLite's own files are compiled but not run */
#pragma GCC diagnostic ignored "-Wunused-function"
#include <libpq-fe.h>

#include "pg_fixture.h"

static pg_fixture g_pg;
static int g_pg_databases;
#endif

/* The schema's latest version, on the backend under test. */
#ifdef SG_TEST_PG
#define SCHEMA_VERSIONS sg_pg_migration_count
#else
#define SCHEMA_VERSIONS sg_migration_count
#endif

/* Each test gets a fresh mkdtemp directory, removed by the teardown; on
 * PostgreSQL also a fresh database, whose URL is db. */
typedef struct fixture {
    char dir[64];
    char db[256];
    char dbname[32];
} fixture;

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    chmod(path, 0700); /* a test may have made a directory read-only */
    return remove(path);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/sg-test-store-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->db, sizeof f->db, "%s/sg.db", f->dir);
#ifdef SG_TEST_PG
    snprintf(f->dbname, sizeof f->dbname, "t%d", ++g_pg_databases);
    if (pg_fixture_create_db(&g_pg, f->dbname, f->db, sizeof f->db))
        return -1;
#endif
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
#ifdef SG_TEST_PG
    pg_fixture_drop_db(&g_pg, f->dbname);
#endif
    chmod(f->dir, 0700);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static sg_store *open_ok(const char *path, const sg_store_options *opt)
{
    sg_store *s = NULL;
    sg_error err = {0};
    int rc = sg_store_open(path, opt, &s, &err);
    if (rc)
        fail_msg("opening %s: %d %s", path, rc, err.msg);
    assert_non_null(s);
    return s;
}

/* Opens path expecting failure; returns the code and checks the message
 * names the path. */
static int open_fails(const char *path, const sg_store_options *opt, sg_error *err)
{
    sg_store *s = (sg_store *)&s; /* must stay untouched on failure */
    sg_store *const sentinel = s;
    memset(err, 0, sizeof *err);
    int rc = sg_store_open(path, opt, &s, err);
    if (rc == 0) {
        sg_store_free(s);
        fail_msg("opening %s succeeded, want an error", path);
    }
    assert_ptr_equal(s, sentinel);
    assert_int_equal(err->code, rc);
    if (!strstr(err->msg, path))
        fail_msg("error '%s' does not name %s", err->msg, path);
    return rc;
}

/* ---- raw SQLite access, to check what the store wrote ---- */

#ifdef SG_TEST_PG
/* On PostgreSQL the same SQL through libpq: the tests that share it ask
 * what both schemas answer alike. */
static int64_t raw_int(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    int64_t v = PQgetisnull(r, 0, 0) ? 0 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return v;
}

static void raw_exec(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}
#else
static int64_t raw_int(const char *path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}
#endif

/* sql on the SQLite file at path (created if need be), whichever the
 * backend under test: the source of a store copy. */
static void sqlite_exec(const char *path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
                     SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

static const char *const tables[] = {"snapshot",      "snapshot_key", "build_index",
                                     "posted_builds", "docker_tag",   "audit"};

static void assert_tables(const char *path)
{
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        char sql[128];
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '%s'",
                 tables[i]);
        if (raw_int(path, sql) != 1)
            fail_msg("table %s missing from %s", tables[i], path);
    }
    /* the posted builds one per row, as they were before 007 */
    if (raw_int(path, "SELECT count(*) FROM sqlite_master WHERE type = 'view' AND "
                      "name = 'posted'") != 1)
        fail_msg("view posted missing from %s", path);
}

/* ---- snapshot helpers ---- */

static sg_snapshot_info meta(int64_t taken_at_ms, const char *reason)
{
    return (sg_snapshot_info){
        .taken_at_ms = taken_at_ms,
        .reason = (char *)reason,
        .redis = "redis://admin@10.0.0.5:6379/0",
        .redis_version = "7.2.4",
        .profile = "igor",
        .selection = "igor:*",
        .db = 0,
    };
}

/* Writes a committed snapshot with one key; returns its id. */
static int64_t quick_snapshot(sg_store *s, int64_t taken_at_ms, const char *state)
{
    sg_snapshot_info m = meta(taken_at_ms, "test");
    sg_error err = {0};
    int64_t id = 0;
    assert_int_equal(sg_store_snapshot_begin(s, &m, &id, &err), 0);
    char key[32];
    snprintf(key, sizeof key, "k:%lld", (long long)taken_at_ms);
    assert_int_equal(sg_store_snapshot_add_key(s, 0, key, strlen(key), 0, "v", 1, &err), 0);
    assert_int_equal(sg_store_index_cursor(s, "m", 1, "job", 3, taken_at_ms, &err), 0);
    sg_snapshot_info t = {.key_count = 1, .bytes = 1, .state = (char *)state};
    assert_int_equal(sg_store_snapshot_commit(s, &t, &err), 0);
    return id;
}

/* Writes a committed profile snapshot of redis (igor:*, db 0) that counted
 * profile_keys profile keys; returns its id. */
static int64_t counted_snapshot(sg_store *s, const char *redis, const char *state,
                                int64_t profile_keys, const char *suspect_reason)
{
    sg_snapshot_info m = meta(sg_now_ms(), "periodic");
    m.redis = (char *)redis;
    m.profile_pattern = "igor:*";
    sg_error err = {0};
    int64_t id = 0;
    assert_int_equal(sg_store_snapshot_begin(s, &m, &id, &err), 0);
    assert_int_equal(sg_store_snapshot_add_key(s, 0, "igor:k", 6, 0, "v", 1, &err), 0);
    sg_snapshot_info t = {.key_count = profile_keys,
                          .state = (char *)state,
                          .profile_keys = profile_keys,
                          .suspect_reason = (char *)suspect_reason};
    assert_int_equal(sg_store_snapshot_commit(s, &t, &err), 0);
    return id;
}

/* A snapshot without profile (all keys); returns its id. */
static int64_t plain_snapshot(sg_store *s)
{
    sg_snapshot_info m = meta(sg_now_ms(), "manual");
    m.profile = "none";
    m.selection = "*";
    sg_error err = {0};
    int64_t id = 0;
    assert_int_equal(sg_store_snapshot_begin(s, &m, &id, &err), 0);
    sg_snapshot_info t = {.state = "complete"};
    assert_int_equal(sg_store_snapshot_commit(s, &t, &err), 0);
    return id;
}

static int64_t baseline(sg_store *s)
{
    sg_error err = {0};
    int64_t id = -1;
    assert_int_equal(sg_store_baseline(s, &id, &err), 0);
    return id;
}

static size_t snapshot_count(sg_store *s)
{
    sg_snapshot_info *list = NULL;
    size_t n = 99;
    sg_error err = {0};
    assert_int_equal(sg_store_snapshot_list(s, &list, &n, &err), 0);
    sg_snapshot_list_free(list, n);
    return n;
}

/* ---- tests: opening and migrating ---- */

static void sync_mode(void **state)
{
    (void)state;
    sg_sync_mode m = SG_SYNC_FULL;
    assert_int_equal(sg_sync_mode_parse("normal", &m), 0);
    assert_int_equal(m, SG_SYNC_NORMAL);
    assert_int_equal(sg_sync_mode_parse("Full", &m), 0);
    assert_int_equal(m, SG_SYNC_FULL);
    assert_int_equal(sg_sync_mode_parse("off", &m), SG_EINVAL);
    assert_int_equal(sg_sync_mode_parse("", &m), SG_EINVAL);
    assert_int_equal(m, SG_SYNC_FULL);
    assert_string_equal(sg_sync_mode_name(SG_SYNC_NORMAL), "normal");
    assert_string_equal(sg_sync_mode_name(SG_SYNC_FULL), "full");
}

static void migrations_table(void **state)
{
    (void)state;
    assert_true(sg_migration_count >= 1);
    for (int i = 0; i < sg_migration_count; i++) {
        assert_int_equal(sg_migrations[i].version, i + 1);
        assert_non_null(sg_migrations[i].name);
        char num[16];
        snprintf(num, sizeof num, "%03d", i + 1);
        assert_memory_equal(sg_migrations[i].name, num, 3);
        assert_non_null(sg_migrations[i].sql);
        assert_true(strlen(sg_migrations[i].sql) > 0);
    }
}

static void open_creates_private_file(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    assert_string_equal(sg_store_path(s), f->db);
    struct stat st;
    assert_int_equal(stat(f->db, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);

    /* WAL side files hold snapshot data too: never readable by others */
    quick_snapshot(s, sg_now_ms(), NULL);
    char side[300];
    snprintf(side, sizeof side, "%s-wal", f->db);
    if (stat(side, &st) == 0)
        assert_int_equal(st.st_mode & 077, 0);
    sg_store_free(s);
    assert_int_equal(stat(f->db, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void open_creates_directory(void **state)
{
    fixture *f = *state;
    char sub[128], path[160];
    snprintf(sub, sizeof sub, "%s/state", f->dir);
    snprintf(path, sizeof path, "%s/sg.db", sub);
    sg_store *s = open_ok(path, NULL);
    sg_store_free(s);
    struct stat st;
    assert_int_equal(stat(sub, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void migrate_from_empty(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    assert_int_equal(sg_store_schema_version(s), sg_migration_count);
    sg_store_free(s);
    assert_int_equal(raw_int(f->db, "PRAGMA user_version"), sg_migration_count);
    assert_tables(f->db);
    /* reopening an up-to-date store changes nothing */
    s = open_ok(f->db, NULL);
    assert_int_equal(sg_store_schema_version(s), sg_migration_count);
    assert_int_equal(snapshot_count(s), 0);
    sg_store_free(s);
}

/* Snapshot rows as a store before 003_suspect.sql held them: an Igor snapshot
 * of igor:* only (its key count is its profile key count), one with --match
 * extras and one without profile (neither counted). */
static void insert_pre003_snapshots(const char *path)
{
    raw_exec(path, "INSERT INTO snapshot(id, taken_at, reason, redis, profile, selection, db, "
                   "key_count, state) VALUES "
                   "(1, 1, 'periodic', 'redis://r:6379/0', 'igor', 'igor:*', 0, 2000, "
                   "'complete'), "
                   "(2, 2, 'manual', 'redis://r:6379/0', 'igor', 'igor:* extra:*', 0, 2010, "
                   "'complete'), "
                   "(3, 3, 'manual', 'redis://r:6379/0', 'none', '*', 0, 5000, 'complete')");
}

static void assert_pre003_backfilled(const char *path)
{
    assert_int_equal(raw_int(path, "SELECT profile_keys FROM snapshot WHERE id = 1"), 2000);
    assert_int_equal(raw_int(path, "SELECT profile_pattern = 'igor:*' FROM snapshot WHERE id = 1"),
                     1);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM snapshot WHERE id IN (2, 3) AND "
                                   "profile_keys IS NULL AND profile_pattern IS NULL"),
                     2);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM snapshot WHERE suspect_reason IS NULL"),
                     3);
}

static void migrate_from_each_version(void **state)
{
    fixture *f = *state;
    /* v = count is the trivial case; every earlier version must upgrade */
    for (int v = 1; v <= sg_migration_count; v++) {
        char path[160];
        snprintf(path, sizeof path, "%s/v%d.db", f->dir, v);
        sg_store_options opt = {.migrate_to = v};
        sg_store *s = open_ok(path, &opt);
        assert_int_equal(sg_store_schema_version(s), v);
        sg_store_free(s);
        if (v < 3)
            insert_pre003_snapshots(path);

        s = open_ok(path, NULL);
        if (v < 3) {
            assert_pre003_backfilled(path);
            /* the backfilled count is a comparison reference */
            sg_error err = {0};
            int64_t good = -1, keys = -1;
            assert_int_equal(
                sg_store_last_good(s, "redis://r:6379/0", 0, "igor:*", &good, &keys, &err), 0);
            assert_int_equal(good, 1);
            assert_int_equal(keys, 2000);
            raw_exec(path, "DELETE FROM snapshot");
        }
        assert_int_equal(sg_store_schema_version(s), sg_migration_count);
        int64_t id = quick_snapshot(s, sg_now_ms(), NULL);
        sg_snapshot_info info;
        sg_error err = {0};
        assert_int_equal(sg_store_snapshot_get(s, 0, &info, &err), 0);
        assert_int_equal(info.id, id);
        sg_snapshot_info_close(&info);
        assert_int_equal(
            sg_store_audit(s, 1700000000000, "test", "migrate", "from an old version", &err), 0);
        sg_store_free(s);
        assert_tables(path);
    }
}

/* Every row of event, all columns, as one text (for before/after). */
static char *event_dump(const char *path)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT group_concat(quote(id) || quote(received_at) || "
                                        "quote(source) || quote(job) || quote(number) || "
                                        "quote(build_ts) || quote(kind) || quote(reason) || "
                                        "quote(state) || quote(method) || quote(path) || "
                                        "quote(headers) || quote(body) || quote(attempts) || "
                                        "quote(next_attempt_at) || quote(last_error) || "
                                        "quote(done_at) || quote(qgen), ';') FROM "
                                        "(SELECT * FROM event ORDER BY id)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    char *out = strdup(sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0) : "");
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

/* The plan of sql names index (EXPLAIN QUERY PLAN's details). */
static bool plan_uses(sqlite3 *db, const char *sql, const char *index)
{
    char *eqp = sqlite3_mprintf("EXPLAIN QUERY PLAN %s", sql);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, eqp, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", eqp, sqlite3_errmsg(db));
    sqlite3_free(eqp);
    bool uses = false;
    while (sqlite3_step(st) == SQLITE_ROW)
        uses = uses || strstr((const char *)sqlite3_column_text(st, 3), index);
    sqlite3_finalize(st);
    return uses;
}

/* 005 rebuilds the event table (CHECKs and the open index without IN
 * lists): every row, column and id survives, ids are never reused, the
 * constraints hold as before, the delivery queue reads through event_open
 * and the held queue through event_held. */
static void migration_005_keeps_events(void **state)
{
    fixture *f = *state;
    sg_store_options opt = {.migrate_to = 4};
    sg_store *s = open_ok(f->db, &opt);
    sg_store_free(s);
    raw_exec(f->db,
             "INSERT INTO event(received_at, source, job, number, build_ts, kind, reason, "
             "state, method, path, headers, body, attempts, next_attempt_at, last_error, "
             "done_at, qgen) VALUES "
             "(11, 'j', 'a', 1, 101, 'new', 'r1', 'pending', 'POST', '/a', 'x: 1', x'01', 2, "
             "1001, 'e1', NULL, 3), "
             "(12, 'j', 'a', 2, 102, 'unknown', 'r2', 'held', 'PUT', '/b?q', '', x'02', 0, "
             "NULL, NULL, NULL, 0), "
             "(13, NULL, NULL, NULL, NULL, 'passthrough', 'r3', 'forwarded', 'GET', '/p', "
             "'a: b' || char(10), x'', 1, NULL, NULL, 1003, 0), "
             "(14, 'j', 'b', 9, 104, 'replay', 'r4', 'dead', 'POST', '/', '', x'04', 7, NULL, "
             "'HTTP 404', 1004, 0), "
             "(15, 'j', 'c', 5, 105, 'new', 'r5', 'released', 'POST', '/', '', x'05', 0, NULL, "
             "NULL, NULL, 0);"
             "DELETE FROM event WHERE id = 5;");
    char *before = event_dump(f->db);
    assert_int_equal(raw_int(f->db, "SELECT seq FROM sqlite_sequence WHERE name = 'event'"), 5);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM pragma_table_info('event')"), 18);
    int64_t columns_hash =
        raw_int(f->db, "SELECT sum(unicode(name) * cid + length(type) + \"notnull\" * 7 "
                       "+ coalesce(length(dflt_value), 0) * 11 + pk * 13) "
                       "FROM pragma_table_info('event')");

    s = open_ok(f->db, NULL);
    assert_int_equal(sg_store_schema_version(s), sg_migration_count);
    char *after = event_dump(f->db);
    assert_string_equal(after, before);
    free(before);
    free(after);
    /* 008_observe.sql adds would after them, 010_docker_events.sql tag and
     * digest */
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM pragma_table_info('event')"), 21);
    assert_int_equal(raw_int(f->db, "SELECT cid FROM pragma_table_info('event') "
                                    "WHERE name = 'would'"),
                     18);
    assert_int_equal(raw_int(f->db, "SELECT cid FROM pragma_table_info('event') "
                                    "WHERE name = 'tag'"),
                     19);
    assert_int_equal(raw_int(f->db, "SELECT cid FROM pragma_table_info('event') "
                                    "WHERE name = 'digest'"),
                     20);
    assert_int_equal(raw_int(f->db,
                             "SELECT sum(unicode(name) * cid + length(type) + \"notnull\" * 7 "
                             "+ coalesce(length(dflt_value), 0) * 11 + pk * 13) "
                             "FROM pragma_table_info('event') WHERE cid < 18"),
                     columns_hash);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM sqlite_schema WHERE tbl_name = "
                                    "'event' AND sql LIKE '% IN (%'"),
                     0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' "
                                    "AND name IN ('event_open', 'event_held')"),
                     2);
    /* the next id continues after the deleted 5 */
    sg_event_row r = {.received_at = 5,
                      .source = "j",
                      .job = "c",
                      .number = 1,
                      .kind = "new",
                      .reason = "r",
                      .state = SG_STATE_PENDING,
                      .method = "POST",
                      .path = "/",
                      .headers = "",
                      .body = "x",
                      .body_len = 1};
    sg_error err = {0};
    assert_int_equal(sg_store_event_insert(s, &r, &err), 0);
    assert_int_equal(r.id, 6);
    sg_store_free(s);

    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    /* every kind and state is still accepted, anything else refused */
    const char *kinds[] = {"passthrough", "new", "replay", "unknown"};
    const char *states[] = {"pending",  "forwarded", "suppressed", "held",
                            "released", "dropped",   "superseded", "dead"};
    for (size_t k = 0; k < 4; k++)
        for (size_t i = 0; i < 8; i++) {
            char *sql = sqlite3_mprintf("INSERT INTO event(received_at, kind, reason, state, "
                                        "method, path, headers, body) VALUES (1, %Q, 'r', %Q, "
                                        "'GET', '/', '', x'')",
                                        kinds[k], states[i]);
            assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
            sqlite3_free(sql);
        }
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO event(received_at, kind, reason, state, method, "
                                  "path, headers, body) VALUES (1, 'new', 'r', 'lost', 'GET', "
                                  "'/', '', x'')",
                                  NULL, NULL, NULL),
                     SQLITE_CONSTRAINT);
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO event(received_at, kind, reason, state, method, "
                                  "path, headers, body) VALUES (1, 'old', 'r', 'held', 'GET', "
                                  "'/', '', x'')",
                                  NULL, NULL, NULL),
                     SQLITE_CONSTRAINT);
    /* the statements of events.c and held.c that read the queues, as they are written */
    assert_true(plan_uses(db,
                          "SELECT id FROM event WHERE state = 'pending' AND (qgen, id) > (?1, ?2) "
                          "ORDER BY qgen, id LIMIT ?3",
                          "event_open"));
    assert_true(plan_uses(db,
                          "SELECT source, job, count(*), min(number), max(number), "
                          "sum(count(*)) OVER (), count(*) OVER () FROM event "
                          "WHERE state = 'held' GROUP BY source, job "
                          "ORDER BY 3 DESC, source, job LIMIT ?1",
                          "event_held"));
    assert_int_equal(
        sqlite3_exec(db, "CREATE TEMP TABLE release_job(source, job)", NULL, NULL, NULL),
        SQLITE_OK);
    assert_true(plan_uses(db,
                          "UPDATE event SET state = 'pending', qgen = ?3, next_attempt_at = NULL "
                          "WHERE state = 'held' AND (source, job) IN "
                          "(SELECT source, job FROM release_job) AND (?9 IS NULL OR id <= ?9)",
                          "event_held"));
    sqlite3_close(db);
}

static void newer_version_refused(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_store_free(s);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", sg_migration_count + 1);
    raw_exec(f->db, sql);

    sg_error err;
    assert_int_equal(open_fails(f->db, NULL, &err), SG_EVERSION);
    sg_store_options ro = {.readonly = true};
    assert_int_equal(open_fails(f->db, &ro, &err), SG_EVERSION);
    /* and the file was left alone */
    assert_int_equal(raw_int(f->db, "PRAGMA user_version"), sg_migration_count + 1);
}

static void corrupt_file(void **state)
{
    fixture *f = *state;
    int fd = open(f->db, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    unsigned char junk[4096];
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < sizeof junk; i++) { /* xorshift: not a SQLite header */
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        junk[i] = (unsigned char)x;
    }
    assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    close(fd);

    sg_error err;
    int rc = open_fails(f->db, NULL, &err);
    assert_int_equal(rc, SG_ESTORE);
    sg_store_options ro = {.readonly = true};
    open_fails(f->db, &ro, &err);

    /* a short garbage file as well */
    fd = open(f->db, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "not a database\n", 15), 15);
    close(fd);
    open_fails(f->db, NULL, &err);
}

/* One daemon per store: the lock holds the holder's pid, a second claim
 * (another open file description: flock locks are per description, so this
 * process stands in for a second daemon) is refused naming it, and closing
 * the first frees the store. The store's own file is never the lock: SQLite's
 * POSIX locks on it would drop with any close of another descriptor. */
static void lock_is_one_daemon_per_store(void **state)
{
    fixture *f = *state;
    sg_store_claim *c = NULL, *c2 = NULL;
    sg_error err = {0};
    assert_int_equal(sg_store_claim_new(f->db, &c, &err), 0);
    assert_non_null(c);
    char lock[300], pid[32], text[32] = "";
    snprintf(lock, sizeof lock, "%s.lock", f->db);
    snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    int r = open(lock, O_RDONLY);
    assert_true(r >= 0);
    assert_true(read(r, text, sizeof text - 1) > 0);
    close(r);
    assert_string_equal(text, pid);

    assert_int_equal(sg_store_claim_new(f->db, &c2, &err), SG_ESTORE);
    assert_null(c2);
    char want[64];
    snprintf(want, sizeof want, "(pid %ld)", (long)getpid());
    assert_non_null(strstr(err.msg, want));
    assert_non_null(strstr(err.msg, "in use by another stormguard run"));
    /* another path to the same store meets the same lock */
    char alias[192];
    snprintf(alias, sizeof alias, "%s/alias.db", f->dir);
    assert_int_equal(symlink(f->db, alias), 0);
    assert_int_equal(sg_store_claim_new(alias, &c2, &err), SG_ESTORE);
    assert_non_null(strstr(err.msg, want));
    /* the store itself opens alongside: the one-shot commands share it */
    sg_store_free(open_ok(f->db, NULL));

    sg_store_claim_free(c);
    assert_int_equal(sg_store_claim_new(f->db, &c2, &err), 0);
    sg_store_claim_free(c2);
}

static void open_under_a_file_fails(void **state)
{
    fixture *f = *state;
    /* a regular file used as a directory: fails even for root */
    char file[128], path[192];
    snprintf(file, sizeof file, "%s/file.txt", f->dir);
    int fd = open(file, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    snprintf(path, sizeof path, "%s/db", file);
    sg_error err;
    open_fails(path, NULL, &err);
    snprintf(path, sizeof path, "%s/sub/db", file);
    open_fails(path, NULL, &err);
}

static void open_readonly_directory_fails(void **state)
{
    fixture *f = *state;
    if (geteuid() == 0)
        skip(); /* root writes anywhere: the permission check cannot fail */
    char ro[128], path[160];
    snprintf(ro, sizeof ro, "%s/ro", f->dir);
    assert_int_equal(mkdir(ro, 0500), 0);
    snprintf(path, sizeof path, "%s/sg.db", ro);
    sg_error err;
    open_fails(path, NULL, &err);
    struct stat st;
    assert_int_not_equal(stat(path, &st), 0);
}

static void readonly_open(void **state)
{
    fixture *f = *state;
    sg_error err;
    sg_store_options ro = {.readonly = true};
    /* a missing file is not created by a read-only open */
    open_fails(f->db, &ro, &err);
    struct stat st;
    assert_int_not_equal(stat(f->db, &st), 0);

    sg_store *s = open_ok(f->db, NULL);
    int64_t id = quick_snapshot(s, sg_now_ms(), NULL);
    sg_store_free(s);

    s = open_ok(f->db, &ro);
    assert_int_equal(sg_store_schema_version(s), SCHEMA_VERSIONS);
    sg_snapshot_info info;
    memset(&err, 0, sizeof err);
    assert_int_equal(sg_store_snapshot_get(s, 0, &info, &err), 0);
    assert_int_equal(info.id, id);
    sg_snapshot_info_close(&info);
    sg_key_iter *it = NULL;
    sg_key_row row;
    assert_int_equal(sg_store_keys_open(s, id, &it, &err), 0);
    assert_int_equal(sg_key_iter_next(it, &row, &err), 1);
    assert_int_equal(sg_key_iter_next(it, &row, &err), 0);
    sg_key_iter_free(it);
    /* writes are refused */
    assert_int_not_equal(sg_store_audit(s, 1700000000000, "test", "write", NULL, &err), 0);
    sg_store_free(s);
}

static void readonly_needs_migrated_store(void **state)
{
    fixture *f = *state;
    if (sg_migration_count < 2) {
        /* an empty file has version 0 */
        int fd = open(f->db, O_WRONLY | O_CREAT, 0600);
        assert_true(fd >= 0);
        close(fd);
    } else {
        sg_store_options opt = {.migrate_to = sg_migration_count - 1};
        sg_store_free(open_ok(f->db, &opt));
    }
    sg_store_options ro = {.readonly = true};
    sg_error err;
    assert_int_equal(open_fails(f->db, &ro, &err), SG_EVERSION);
}

/* ---- tests: snapshots ---- */

typedef struct test_key {
    int db;
    const char *key;
    size_t key_len;
    int64_t expire_at_ms;
    const char *payload;
    size_t payload_len;
} test_key;

static const test_key test_keys[] = {
    {0, "igor:m:JOB:job", 14, 0, "\x0d\x00\x01payload", 10},
    {0, "bin\0key", 7, INT64_C(1900000000000), "\x00\x00\x00", 3},
    {3, "\xff\xfe\x00\x01", 4, 0, "p\0q", 3},
    {0, "", 0, 0, "empty-key", 9},
    {0, "zzz", 3, 5, "x", 1},
};
#define NTEST_KEYS (sizeof test_keys / sizeof test_keys[0])

static void snapshot_roundtrip(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    int64_t now = sg_now_ms();
    sg_snapshot_info m = meta(now, "before flush");
    m.db = -1;
    int64_t id = 0;
    assert_int_equal(sg_store_snapshot_begin(s, &m, &id, &err), 0);
    assert_true(id > 0);
    for (size_t i = 0; i < NTEST_KEYS; i++) {
        const test_key *k = &test_keys[i];
        assert_int_equal(sg_store_snapshot_add_key(s, k->db, k->key, k->key_len, k->expire_at_ms,
                                                   k->payload, k->payload_len, &err),
                         0);
    }
    /* index: the cursor and the CI numbers of one job share a row */
    assert_int_equal(sg_store_index_cursor(s, "m", 1, "job", 3, 1526029999000, &err), 0);
    assert_int_equal(sg_store_index_ci(s, "m", 1, "job", 3, false, 41, &err), 0);
    assert_int_equal(sg_store_index_ci(s, "m", 1, "job", 3, true, 42, &err), 0);
    /* a later cursor updates the cursor only */
    assert_int_equal(sg_store_index_cursor(s, "m", 1, "job", 3, 1526030000000, &err), 0);
    assert_int_equal(sg_store_index_cursor(s, "m2XX", 2, "team-a/svc", 10, 5, &err), 0);
    assert_int_equal(sg_store_index_posted(s, "m", 1, "job", 3, 40, &err), 0);
    assert_int_equal(sg_store_index_posted(s, "m", 1, "job", 3, 41, &err), 0);
    assert_int_equal(sg_store_index_posted(s, "m", 1, "job", 3, 41, &err), 0); /* duplicate */
    assert_int_equal(
        sg_store_index_docker(s, "hub", 3, "library/nginx", 13, "1.25", 4, "sha256:abc", 10, &err),
        0);
    assert_int_equal(
        sg_store_index_docker(s, "hub", 3, "library/nginx", 13, "1.26", 4, NULL, 0, &err), 0);
    sg_snapshot_info t = {.key_count = NTEST_KEYS, .bytes = 26, .vanished = 2, .seconds = 1.5};
    assert_int_equal(sg_store_snapshot_commit(s, &t, &err), 0);

    /* list */
    sg_snapshot_info *list = NULL;
    size_t n = 0;
    assert_int_equal(sg_store_snapshot_list(s, &list, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(list[0].id, id);
    assert_true(list[0].taken_at_ms == now);
    assert_string_equal(list[0].reason, "before flush");
    assert_string_equal(list[0].redis, "redis://admin@10.0.0.5:6379/0");
    assert_string_equal(list[0].redis_version, "7.2.4");
    assert_string_equal(list[0].profile, "igor");
    assert_string_equal(list[0].selection, "igor:*");
    assert_int_equal(list[0].key_count, NTEST_KEYS);
    assert_int_equal(list[0].bytes, 26);
    assert_int_equal(list[0].vanished, 2);
    assert_true(list[0].seconds > 1.49 && list[0].seconds < 1.51);
    assert_string_equal(list[0].state, "complete");
    assert_int_equal(list[0].db, -1);
    sg_snapshot_list_free(list, n);

    /* get: by id and latest complete */
    sg_snapshot_info info;
    assert_int_equal(sg_store_snapshot_get(s, 0, &info, &err), 0);
    assert_int_equal(info.id, id);
    assert_string_equal(info.reason, "before flush");
    sg_snapshot_info_close(&info);
    assert_int_equal(sg_store_snapshot_get(s, id, &info, &err), 0);
    assert_int_equal(info.id, id);
    sg_snapshot_info_close(&info);
    assert_int_equal(sg_store_snapshot_get(s, id + 100, &info, &err), SG_ENOTFOUND);

    /* keys come back byte for byte, in insertion order */
    sg_key_iter *it = NULL;
    assert_int_equal(sg_store_keys_open(s, id, &it, &err), 0);
    sg_key_row row;
    for (size_t i = 0; i < NTEST_KEYS; i++) {
        const test_key *k = &test_keys[i];
        assert_int_equal(sg_key_iter_next(it, &row, &err), 1);
        assert_int_equal(row.db, k->db);
        assert_int_equal(row.key_len, k->key_len);
        if (k->key_len)
            assert_memory_equal(row.key, k->key, k->key_len);
        assert_non_null(row.key);
        assert_true(row.expire_at_ms == k->expire_at_ms);
        assert_int_equal(row.payload_len, k->payload_len);
        assert_memory_equal(row.payload, k->payload, k->payload_len);
    }
    assert_int_equal(sg_key_iter_next(it, &row, &err), 0);
    sg_key_iter_free(it);
    sg_key_iter_free(NULL);

    /* index */
    sg_index_counts c = {-1, -1, -1};
    assert_int_equal(sg_store_index_counts(s, id, &c, &err), 0);
    assert_int_equal(c.jobs, 2);
    assert_int_equal(c.posted, 2);
    assert_int_equal(c.docker_tags, 2);
    assert_int_equal(sg_store_index_counts(s, id + 100, &c, &err), 0);
    assert_int_equal(c.jobs, 0);
    assert_int_equal(c.posted, 0);
    assert_int_equal(c.docker_tags, 0);
    sg_store_free(s);

    assert_int_equal(raw_int(f->db, "SELECT cursor_ms FROM build_index WHERE source = 'm' AND "
                                    "job = 'job'"),
                     1526030000000);
    assert_int_equal(raw_int(f->db, "SELECT last_completed FROM build_index WHERE source = 'm' "
                                    "AND job = 'job'"),
                     41);
    assert_int_equal(raw_int(f->db, "SELECT last_running FROM build_index WHERE source = 'm' AND "
                                    "job = 'job'"),
                     42);
    /* lengths are honoured: "m2XX" with length 2 is "m2" */
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM build_index WHERE source = 'm2' AND "
                                    "job = 'team-a/svc'"),
                     1);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM docker_tag WHERE tag = '1.26' AND "
                                    "digest IS NULL"),
                     1);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM snapshot_key WHERE expire_at_ms IS NULL"),
                     3);
}

static void snapshots_are_separate(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    int64_t now = sg_now_ms();
    int64_t a = quick_snapshot(s, now - 2000, NULL);
    int64_t b = quick_snapshot(s, now - 1000, NULL);
    int64_t c = quick_snapshot(s, now, "partial"); /* newer, but not complete */
    assert_true(a < b && b < c);

    sg_snapshot_info *list = NULL;
    size_t n = 0;
    assert_int_equal(sg_store_snapshot_list(s, &list, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(list[0].id, c); /* newest first */
    assert_int_equal(list[1].id, b);
    assert_int_equal(list[2].id, a);
    assert_string_equal(list[0].state, "partial");
    sg_snapshot_list_free(list, n);

    sg_snapshot_info info;
    assert_int_equal(sg_store_snapshot_get(s, 0, &info, &err), 0);
    assert_int_equal(info.id, b); /* latest complete, not latest */
    sg_snapshot_info_close(&info);

    /* each snapshot iterates its own key only */
    int64_t ids[] = {a, b, c};
    int64_t times[] = {now - 2000, now - 1000, now};
    for (int i = 0; i < 3; i++) {
        sg_key_iter *it;
        sg_key_row row;
        assert_int_equal(sg_store_keys_open(s, ids[i], &it, &err), 0);
        assert_int_equal(sg_key_iter_next(it, &row, &err), 1);
        char want[32];
        snprintf(want, sizeof want, "k:%lld", (long long)times[i]);
        assert_int_equal(row.key_len, strlen(want));
        assert_memory_equal(row.key, want, row.key_len);
        assert_int_equal(sg_key_iter_next(it, &row, &err), 0);
        sg_key_iter_free(it);
    }
    sg_store_free(s);
}

static void no_complete_snapshot(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    sg_snapshot_info info;
    assert_int_equal(sg_store_snapshot_get(s, 0, &info, &err), SG_ENOTFOUND);
    assert_non_null(strstr(err.msg, f->db));
    quick_snapshot(s, sg_now_ms(), "suspect");
    assert_int_equal(sg_store_snapshot_get(s, 0, &info, &err), SG_ENOTFOUND);
    assert_int_equal(sg_store_snapshot_get(s, 12345, &info, &err), SG_ENOTFOUND);
    sg_store_free(s);
}

static void abort_leaves_nothing(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    sg_store_snapshot_abort(s); /* nothing open: harmless */
    sg_snapshot_info m = meta(sg_now_ms(), "aborted");
    int64_t id = 0;
    assert_int_equal(sg_store_snapshot_begin(s, &m, &id, &err), 0);
    assert_int_equal(sg_store_snapshot_add_key(s, 0, "k", 1, 0, "v", 1, &err), 0);
    assert_int_equal(sg_store_index_cursor(s, "m", 1, "j", 1, 1, &err), 0);
    assert_int_equal(sg_store_index_posted(s, "m", 1, "j", 1, 1, &err), 0);
    sg_store_snapshot_abort(s);
    sg_store_snapshot_abort(s);
    assert_int_equal(snapshot_count(s), 0);
    sg_snapshot_info info;
    assert_int_equal(sg_store_snapshot_get(s, id, &info, &err), SG_ENOTFOUND);

    /* the store is usable afterwards, and the next snapshot (which may get
     * the aborted one's id) holds only its own key */
    int64_t t = sg_now_ms();
    int64_t next = quick_snapshot(s, t, NULL);
    assert_int_equal(snapshot_count(s), 1);
    sg_key_iter *it;
    sg_key_row row;
    char want[32];
    snprintf(want, sizeof want, "k:%lld", (long long)t);
    assert_int_equal(sg_store_keys_open(s, next, &it, &err), 0);
    assert_int_equal(sg_key_iter_next(it, &row, &err), 1);
    assert_int_equal(row.key_len, strlen(want));
    assert_memory_equal(row.key, want, row.key_len);
    assert_int_equal(sg_key_iter_next(it, &row, &err), 0);
    sg_key_iter_free(it);
    sg_index_counts c;
    assert_int_equal(sg_store_index_counts(s, next, &c, &err), 0);
    assert_int_equal(c.jobs, 1);
    assert_int_equal(c.posted, 0);
    sg_store_free(s);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM snapshot_key"), 1);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM posted"), 0);

    /* freeing a store with a snapshot open rolls it back */
    s = open_ok(f->db, NULL);
    assert_int_equal(sg_store_snapshot_begin(s, &m, &id, &err), 0);
    assert_int_equal(sg_store_snapshot_add_key(s, 0, "k2", 2, 0, "v", 1, &err), 0);
    sg_store_free(s);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM snapshot"), 1);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM snapshot_key"), 1);
}

/* A Cluster snapshot's masters come back in node order, with their slots
 * and keys; a snapshot of one server has none; pruning takes them along. */
static void snapshot_nodes(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    int64_t one = quick_snapshot(s, sg_now_ms() - 1000, NULL);
    sg_snapshot_info m = meta(sg_now_ms(), "manual");
    int64_t id = 0;
    assert_int_equal(sg_store_snapshot_begin(s, &m, &id, &err), 0);
    assert_int_equal(sg_store_snapshot_add_node(s, 1, "10.0.0.8:6379", "5461-10922", 7, &err), 0);
    assert_int_equal(sg_store_snapshot_add_node(s, 0, "10.0.0.7:6379", "0-5460", 5, &err), 0);
    sg_snapshot_info t = {.key_count = 12, .state = "complete"};
    assert_int_equal(sg_store_snapshot_commit(s, &t, &err), 0);
    sg_snapshot_node *nodes = NULL;
    size_t n = 99;
    assert_int_equal(sg_store_snapshot_nodes(s, id, &nodes, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(nodes[0].node, 0);
    assert_string_equal(nodes[0].address, "10.0.0.7:6379");
    assert_string_equal(nodes[0].slots, "0-5460");
    assert_int_equal(nodes[0].keys, 5);
    assert_string_equal(nodes[1].slots, "5461-10922");
    assert_int_equal(nodes[1].keys, 7);
    sg_snapshot_nodes_free(nodes, n);
    n = 99;
    assert_int_equal(sg_store_snapshot_nodes(s, one, &nodes, &n, &err), 0);
    assert_int_equal(n, 0);
    sg_snapshot_nodes_free(nodes, n);
    /* pruned with its snapshot: only the newest may stay */
    quick_snapshot(s, sg_now_ms(), NULL);
    int64_t pruned = 0;
    assert_int_equal(sg_store_snapshot_prune(s, 1, 0, sg_now_ms(), &pruned, &err), 0);
    n = 99;
    assert_int_equal(sg_store_snapshot_nodes(s, id, &nodes, &n, &err), 0);
    assert_int_equal(n, 0);
    sg_snapshot_nodes_free(nodes, n);
    sg_store_free(s);
}

/* ---- tests: prune ---- */

static void prune_keeps_latest_complete(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    int64_t now = sg_now_ms();
    int64_t a = quick_snapshot(s, now - 100000, NULL);
    int64_t b = quick_snapshot(s, now - 90000, NULL);
    /* a partial snapshot from a crash two hours ago */
    int64_t c = quick_snapshot(s, now - 2 * 3600 * 1000, "partial");
    (void)a;
    (void)c;

    int64_t pruned = -1;
    assert_int_equal(sg_store_snapshot_prune(s, 0, 0, sg_now_ms(), &pruned, &err),
                     0); /* no limits */
    assert_int_equal(pruned, 0);
    assert_int_equal(snapshot_count(s), 3);

    /* everything is too old and only one may stay: the latest complete */
    assert_int_equal(sg_store_snapshot_prune(s, 1, 1, sg_now_ms(), &pruned, &err), 0);
    assert_int_equal(pruned, 2);
    sg_snapshot_info *list = NULL;
    size_t n = 0;
    assert_int_equal(sg_store_snapshot_list(s, &list, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(list[0].id, b);
    sg_snapshot_list_free(list, n);

    /* again: still kept */
    assert_int_equal(sg_store_snapshot_prune(s, 1, 1, sg_now_ms(), &pruned, &err), 0);
    assert_int_equal(pruned, 0);

    /* a partial snapshot with a heartbeat (taken_at + seconds) in the last
     * ten minutes may be being written by another process: not pruned,
     * however the limits read; one started two hours ago but still writing
     * neither */
    int64_t young = quick_snapshot(s, now - 1000, "partial");
    int64_t long_running = quick_snapshot(s, now - 2 * 3600 * 1000, "partial");
    sg_store_free(s);
    char beat[128];
    snprintf(beat, sizeof beat, "UPDATE snapshot SET seconds = %d WHERE id = %lld", 2 * 3600 - 30,
             (long long)long_running);
    raw_exec(f->db, beat);
    s = open_ok(f->db, NULL);
    assert_int_equal(sg_store_snapshot_prune(s, 1, 1, sg_now_ms(), &pruned, &err), 0);
    assert_int_equal(pruned, 0);
    assert_int_equal(snapshot_count(s), 3);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM snapshot WHERE state = 'partial'"), 2);
    /* its writer stopped writing 20 minutes ago: it goes */
    sg_store_free(s);
    snprintf(beat, sizeof beat, "UPDATE snapshot SET seconds = %d WHERE id = %lld", 2 * 3600 - 1200,
             (long long)long_running);
    raw_exec(f->db, beat);
    s = open_ok(f->db, NULL);
    assert_int_equal(sg_store_snapshot_prune(s, 1, 1, sg_now_ms(), &pruned, &err), 0);
    assert_int_equal(pruned, 1);
    (void)young;
    sg_store_free(s);

    /* the pruned snapshots' rows went with them (b's and young's remain) */
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM snapshot_key"), 2);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM build_index"), 2);
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM snapshot_key WHERE snapshot_id = %lld",
             (long long)b);
    assert_int_equal(raw_int(f->db, sql), 1);
}

static void prune_by_count(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    int64_t now = sg_now_ms();
    int64_t a = quick_snapshot(s, now, NULL);
    int64_t b = quick_snapshot(s, now, NULL);
    int64_t c = quick_snapshot(s, now, "suspect");
    int64_t d = quick_snapshot(s, now, "partial");
    (void)a;

    int64_t pruned = -1;
    /* keep the newest two (c, d) and the latest complete (b) */
    assert_int_equal(sg_store_snapshot_prune(s, 2, 0, sg_now_ms(), &pruned, &err), 0);
    assert_int_equal(pruned, 1);
    sg_snapshot_info *list = NULL;
    size_t n = 0;
    assert_int_equal(sg_store_snapshot_list(s, &list, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(list[0].id, d);
    assert_int_equal(list[1].id, c);
    assert_int_equal(list[2].id, b);
    sg_snapshot_list_free(list, n);

    /* recent snapshots survive an age limit */
    assert_int_equal(sg_store_snapshot_prune(s, 0, 3600, sg_now_ms(), &pruned, &err), 0);
    assert_int_equal(pruned, 0);
    /* the age is measured from the caller's time: two hours on, the
     * suspect one goes (the partial one is a live writer's, by its
     * heartbeat; the latest complete stays) */
    assert_int_equal(
        sg_store_snapshot_prune(s, 0, 3600, sg_now_ms() + 2 * 3600 * 1000, &pruned, &err), 0);
    assert_int_equal(pruned, 1);
    assert_int_equal(sg_store_snapshot_list(s, &list, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(list[0].id, d);
    assert_int_equal(list[1].id, b);
    sg_snapshot_list_free(list, n);
    sg_store_free(s);
}

/* A pruned newest snapshot's id may be handed out again: the new snapshot
 * must not inherit its keys or index rows. */
static void prune_then_snapshot_again(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    int64_t now = sg_now_ms();
    quick_snapshot(s, now - 100000, NULL);
    sg_snapshot_info m = meta(now - 2 * 3600 * 1000, "partial one, from a crash");
    int64_t old = 0;
    assert_int_equal(sg_store_snapshot_begin(s, &m, &old, &err), 0);
    for (int i = 0; i < 3; i++) {
        char key[16];
        snprintf(key, sizeof key, "old:%d", i);
        assert_int_equal(sg_store_snapshot_add_key(s, 0, key, strlen(key), 0, "v", 1, &err), 0);
    }
    assert_int_equal(sg_store_index_posted(s, "m", 1, "job", 3, 7, &err), 0);
    assert_int_equal(sg_store_index_docker(s, "a", 1, "r", 1, "t", 1, NULL, 0, &err), 0);
    sg_snapshot_info t = {.key_count = 3, .state = "partial"};
    assert_int_equal(sg_store_snapshot_commit(s, &t, &err), 0);

    int64_t pruned = -1;
    assert_int_equal(sg_store_snapshot_prune(s, 1, 1, sg_now_ms(), &pruned, &err), 0);
    assert_int_equal(pruned, 1);

    int64_t fresh = quick_snapshot(s, now, NULL);
    sg_key_iter *it;
    sg_key_row row;
    assert_int_equal(sg_store_keys_open(s, fresh, &it, &err), 0);
    int n = 0;
    while (sg_key_iter_next(it, &row, &err) == 1) {
        n++;
        assert_false(row.key_len >= 4 && !memcmp(row.key, "old:", 4));
    }
    sg_key_iter_free(it);
    assert_int_equal(n, 1);
    sg_index_counts c;
    assert_int_equal(sg_store_index_counts(s, fresh, &c, &err), 0);
    assert_int_equal(c.jobs, 1);
    assert_int_equal(c.posted, 0);
    assert_int_equal(c.docker_tags, 0);
    sg_store_free(s);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM snapshot_key"), 2);
}

/* ---- tests: the posted builds, one row per job (007) ---- */

typedef struct posted_seen {
    char text[8192]; /* "source/job#number " for each visit */
    size_t len;
    int64_t visits;
} posted_seen;

static void seen_cursor(void *ud, const char *source, const char *job, int64_t cursor_ms)
{
    (void)ud, (void)source, (void)job, (void)cursor_ms;
}

static void seen_posted(void *ud, const char *source, const char *job, int64_t number)
{
    posted_seen *p = ud;
    p->visits++;
    if (p->len < sizeof p->text - 64)
        p->len += (size_t)snprintf(p->text + p->len, sizeof p->text - p->len, "%s/%s#%lld ", source,
                                   job, (long long)number);
}

static void posted_visit(sg_store *s, int64_t id, posted_seen *out)
{
    memset(out, 0, sizeof *out);
    sg_index_visitor v = {.cursor = seen_cursor, .completed = seen_cursor, .posted = seen_posted};
    sg_error err = {0};
    assert_int_equal(sg_store_index_each(s, id, &v, out, &err), 0);
}

/* A job's markers go in one row, ascending and each once; a job whose
 * markers come in two runs (two marker hashes of one job, another job
 * between them) and one with more numbers than a row takes still end in
 * one row each, read back once per build, through the view too. */
static void posted_builds_one_row_per_job(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    sg_snapshot_info m = meta(sg_now_ms(), "test");
    int64_t id = 0;
    assert_int_equal(sg_store_snapshot_begin(s, &m, &id, &err), 0);
    static const int64_t first[] = {119, 117, 118, 117};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(sg_store_index_posted(s, "m", 1, "a", 1, first[i], &err), 0);
    assert_int_equal(sg_store_index_posted(s, "m", 1, "b", 1, 5, &err), 0);
    assert_int_equal(sg_store_index_posted(s, "m", 1, "a", 1, 120, &err), 0);
    assert_int_equal(sg_store_index_posted(s, "m", 1, "a", 1, 118, &err), 0);
    for (int64_t n = 1; n <= 5000; n++) /* past POSTED_ROW_MAX (4096) */
        assert_int_equal(sg_store_index_posted(s, "n", 1, "big", 3, n, &err), 0);
    sg_snapshot_info t = {.key_count = 3};
    assert_int_equal(sg_store_snapshot_commit(s, &t, &err), 0);

    sg_index_counts c;
    assert_int_equal(sg_store_index_counts(s, id, &c, &err), 0);
    assert_int_equal(c.posted, 4 + 1 + 5000);
    posted_seen seen;
    posted_visit(s, id, &seen);
    assert_int_equal(seen.visits, 4 + 1 + 5000);
    assert_non_null(strstr(seen.text, "m/a#117 m/a#118 m/a#119 m/a#120 m/b#5 "));
    sg_store_free(s);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM posted_builds"), 3);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM posted WHERE job = 'a'"), 4);
    assert_int_equal(raw_int(f->db, "SELECT count(DISTINCT number) FROM posted WHERE job = 'big'"),
                     5000);
    assert_int_equal(raw_int(f->db, "SELECT sum(number) FROM posted WHERE job = 'a'"),
                     117 + 118 + 119 + 120);
}

/* 007 turns a store's rows of posted builds into one row per job: what
 * the index reads is the same, and so is what the view "posted" shows; a
 * row that is no JSON array of numbers is an error naming the job. */
static void migration_007_packs_posted(void **state)
{
    fixture *f = *state;
    sg_store_options opt = {.migrate_to = 6};
    sg_store *s = open_ok(f->db, &opt);
    sg_store_free(s);
    raw_exec(f->db, "INSERT INTO snapshot(id, taken_at, reason, redis, profile, selection, db, "
                    "state) VALUES (1, 1000, 'test', 'redis://r', 'igor', 'igor:*', 0, "
                    "'complete');"
                    "INSERT INTO posted(snapshot_id, source, job, number) VALUES "
                    "(1, 'm', 'a', 3), (1, 'm', 'a', 1), (1, 'm', 'a', 2), (1, 'm', 'b', 9);");
    s = open_ok(f->db, NULL);
    assert_int_equal(sg_store_schema_version(s), sg_migration_count);
    posted_seen seen;
    posted_visit(s, 1, &seen);
    assert_int_equal(seen.visits, 4);
    assert_non_null(strstr(seen.text, "m/a#1 m/a#2 m/a#3 "));
    assert_non_null(strstr(seen.text, "m/b#9 "));
    sg_error err = {0};
    sg_index_counts c;
    assert_int_equal(sg_store_index_counts(s, 1, &c, &err), 0);
    assert_int_equal(c.posted, 4);
    sg_store_free(s);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM posted_builds"), 2);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM posted"), 4);

    raw_exec(f->db, "UPDATE posted_builds SET numbers = '[1,x]' WHERE job = 'b'");
    s = open_ok(f->db, NULL);
    sg_index_visitor v = {.cursor = seen_cursor, .completed = seen_cursor, .posted = seen_posted};
    assert_int_equal(sg_store_index_each(s, 1, &v, &seen, &err), SG_ESTORE);
    assert_non_null(strstr(err.msg, "job b"));
    assert_non_null(strstr(err.msg, "not a JSON array"));
    sg_store_free(s);
}

/* ---- tests: suspect snapshots ---- */

#define SERVER "redis://10.0.0.5:6379/0"

static void suspect_is_never_baseline(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    assert_int_equal(baseline(s), 0);
    int64_t suspect_first = counted_snapshot(s, SERVER, "suspect", 3, "found 3 igor keys");
    assert_int_equal(baseline(s), 0); /* a suspect snapshot alone is no baseline */
    int64_t good = counted_snapshot(s, SERVER, "complete", 2000, NULL);
    int64_t bad = counted_snapshot(s, SERVER, "suspect", 3,
                                   "found 3 igor keys, the last good snapshot 2 had 2000 (below "
                                   "50%)");
    assert_int_equal(baseline(s), good);

    /* restore latest skips it; by id it is there, with its reason */
    sg_snapshot_info info;
    assert_int_equal(sg_store_snapshot_get(s, 0, &info, &err), 0);
    assert_int_equal(info.id, good);
    assert_int_equal(info.profile_keys, 2000);
    assert_null(info.suspect_reason);
    assert_string_equal(info.profile_pattern, "igor:*");
    sg_snapshot_info_close(&info);
    assert_int_equal(sg_store_snapshot_get(s, bad, &info, &err), 0);
    assert_string_equal(info.state, "suspect");
    assert_int_equal(info.profile_keys, 3);
    assert_non_null(strstr(info.suspect_reason, "had 2000 (below 50%)"));
    sg_snapshot_info_close(&info);

    /* a newer snapshot without profile is restore's latest, not the baseline */
    int64_t plain = plain_snapshot(s);
    assert_int_equal(baseline(s), good);
    assert_int_equal(sg_store_snapshot_get(s, 0, &info, &err), 0);
    assert_int_equal(info.id, plain);
    assert_int_equal(info.profile_keys, -1);
    assert_null(info.profile_pattern);
    sg_snapshot_info_close(&info);

    /* the list shows every state and reason */
    sg_snapshot_info *list = NULL;
    size_t n = 0;
    assert_int_equal(sg_store_snapshot_list(s, &list, &n, &err), 0);
    assert_int_equal(n, 4);
    assert_int_equal(list[1].id, bad);
    assert_string_equal(list[1].state, "suspect");
    assert_non_null(list[1].suspect_reason);
    assert_int_equal(list[3].id, suspect_first);
    sg_snapshot_list_free(list, n);
    sg_store_free(s);
}

static void last_good_reference(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    int64_t id = -1, keys = -1;
    assert_int_equal(sg_store_last_good(s, SERVER, 0, "igor:*", &id, &keys, &err), 0);
    assert_int_equal(id, 0);
    assert_int_equal(keys, -1); /* untouched */

    int64_t good = counted_snapshot(s, SERVER, "complete", 2000, NULL);
    counted_snapshot(s, SERVER, "suspect", 3, "found 3 igor keys");
    counted_snapshot(s, SERVER, "partial", 2100, NULL);
    counted_snapshot(s, "redis://10.0.0.6:6379/0", "complete", 10, NULL); /* another server */
    quick_snapshot(s, sg_now_ms(), NULL); /* profile keys not counted */
    plain_snapshot(s);
    assert_int_equal(sg_store_last_good(s, SERVER, 0, "igor:*", &id, &keys, &err), 0);
    assert_int_equal(id, good);
    assert_int_equal(keys, 2000);
    assert_int_equal(sg_store_last_good(s, SERVER, 1, "igor:*", &id, &keys, &err), 0);
    assert_int_equal(id, 0); /* another database */
    assert_int_equal(sg_store_last_good(s, SERVER, 0, "spin:*", &id, &keys, &err), 0);
    assert_int_equal(id, 0); /* another prefix */

    /* seen from inside a snapshot being written: its own row is not complete */
    sg_snapshot_info m = meta(sg_now_ms(), "periodic");
    m.redis = SERVER;
    m.profile_pattern = "igor:*";
    int64_t open_id = 0;
    assert_int_equal(sg_store_snapshot_begin(s, &m, &open_id, &err), 0);
    assert_int_equal(sg_store_last_good(s, SERVER, 0, "igor:*", &id, &keys, &err), 0);
    assert_int_equal(id, good);
    sg_snapshot_info t = {.state = "complete", .profile_keys = 1900};
    assert_int_equal(sg_store_snapshot_commit(s, &t, &err), 0);
    assert_int_equal(sg_store_last_good(s, SERVER, 0, "igor:*", &id, &keys, &err), 0);
    assert_int_equal(id, open_id);
    assert_int_equal(keys, 1900);
    sg_store_free(s);
}

static void prune_never_keeps_suspect_as_good(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    int64_t good = counted_snapshot(s, SERVER, "complete", 2000, NULL);
    int64_t bad[3];
    for (int i = 0; i < 3; i++)
        bad[i] = counted_snapshot(s, SERVER, "suspect", 3, "found 3 igor keys");

    /* keep one: the newest (a suspect one) stays by count, the good one as
     * the last good and baseline; the other suspects go */
    int64_t pruned = -1;
    assert_int_equal(sg_store_snapshot_prune(s, 1, 0, sg_now_ms(), &pruned, &err), 0);
    assert_int_equal(pruned, 2);
    sg_snapshot_info *list = NULL;
    size_t n = 0;
    assert_int_equal(sg_store_snapshot_list(s, &list, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(list[0].id, bad[2]);
    assert_int_equal(list[1].id, good);
    sg_snapshot_list_free(list, n);

    /* by age: every suspect goes, the good one stays */
    sg_store_free(s);
    raw_exec(f->db, "UPDATE snapshot SET taken_at = 0");
    s = open_ok(f->db, NULL);
    assert_int_equal(sg_store_snapshot_prune(s, 0, 1, sg_now_ms(), &pruned, &err), 0);
    assert_int_equal(pruned, 1);
    assert_int_equal(snapshot_count(s), 1);
    assert_int_equal(baseline(s), good);

    /* a newer complete snapshot without profile does not cost the baseline */
    int64_t plain = plain_snapshot(s);
    assert_int_equal(sg_store_snapshot_prune(s, 1, 1, sg_now_ms(), &pruned, &err), 0);
    assert_int_equal(pruned, 0);
    assert_int_equal(snapshot_count(s), 2);
    assert_int_equal(baseline(s), good);
    sg_snapshot_info info;
    assert_int_equal(sg_store_snapshot_get(s, 0, &info, &err), 0);
    assert_int_equal(info.id, plain);
    sg_snapshot_info_close(&info);
    sg_store_free(s);
}

/* ---- tests: audit ---- */

static void audit(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    assert_int_equal(
        sg_store_audit(s, 1700000000000, "ops@host", "flush", "cache:* 120 keys", &err), 0);
    assert_int_equal(sg_store_audit(s, 1700000000500, "ops@host", "restore", NULL, &err), 0);
    sg_store_free(s);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM audit"), 2);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM audit WHERE actor = 'ops@host' AND "
                                    "action = 'flush' AND detail = 'cache:* 120 keys'"),
                     1);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM audit WHERE action = 'restore' AND "
                                    "detail IS NULL"),
                     1);
    /* the time is the caller's (its clock may be virtual) */
    assert_int_equal(raw_int(f->db, "SELECT min(at) FROM audit"), 1700000000000);
    assert_int_equal(raw_int(f->db, "SELECT max(at) FROM audit"), 1700000000500);
}

/* ---- the held queue ---- */

/* A pending event of kind new of jenkins-prod's job, build number, with
 * body (borrowed). */
static sg_event_row new_pending(const char *job, int64_t number, const char *body, size_t len)
{
    return (sg_event_row){.received_at = 2000 + number,
                          .source = "jenkins-prod",
                          .job = job,
                          .number = number,
                          .kind = "new",
                          .reason = "after-cursor",
                          .state = SG_STATE_PENDING,
                          .method = "POST",
                          .path = "/",
                          .headers = "",
                          .body = body,
                          .body_len = len};
}

static int64_t put_event(sg_store *s, const char *state_name, const char *job, int64_t number,
                         int64_t qgen)
{
    sg_event_row r = new_pending(job, number, "{}", 2);
    assert_int_equal(sg_event_state_parse(state_name, &r.state), 0);
    r.received_at = 1000 + number;
    r.kind = "unknown";
    r.reason = "unknown-job";
    r.qgen = qgen;
    sg_error err = {0};
    if (sg_store_event_insert(s, &r, &err))
        fail_msg("insert: %s", err.msg);
    return r.id;
}

/* ---- event states ---- */

/* The newest CHECK of the event table's state in the migrations: the text
 * from "CHECK (state " to the first ')' (an IN list's or the comparisons'
 * end), the one that names 'pending'. */
static const char *state_check(const char **end)
{
    const char *found = NULL;
    for (int i = 0; i < sg_migration_count; i++)
        for (const char *p = sg_migrations[i].sql; (p = strstr(p, "CHECK (state ")); p++) {
            const char *close = strchr(p, ')');
            const char *pending = strstr(p, "'pending'");
            if (close && pending && pending < close) {
                found = p;
                *end = close;
            }
        }
    return found;
}

/* sg_event_state's names are the schema's CHECK list in its order, each
 * parses back, nothing else parses, and the store takes every one. */
static void event_states(void **state)
{
    fixture *f = *state;
    const char *end = NULL, *check = state_check(&end);
    assert_non_null(check);
    int n = 0;
    for (const char *q = strchr(check, '\''); q && q < end; q = strchr(q + 1, '\'')) {
        const char *close = strchr(q + 1, '\'');
        assert_non_null(close);
        assert_true(n < SG_STATE_COUNT);
        const char *name = sg_event_state_name((sg_event_state)n);
        assert_non_null(name);
        if (strlen(name) != (size_t)(close - q - 1) || memcmp(name, q + 1, strlen(name)))
            fail_msg("state %d is %s, the schema's is %.*s", n, name, (int)(close - q - 1), q + 1);
        sg_event_state parsed = SG_STATE_COUNT;
        assert_int_equal(sg_event_state_parse(name, &parsed), 0);
        assert_int_equal(parsed, n);
        n++;
        q = close;
    }
    assert_int_equal(n, SG_STATE_COUNT);
    assert_null(sg_event_state_name(SG_STATE_COUNT));
    assert_null(sg_event_state_name((sg_event_state)(SG_STATE_COUNT + 1)));

    sg_event_state kept = SG_STATE_DEAD; /* a failed parse leaves it */
    const char *const bad[] = {"", "Pending", "pending ", "pend", "lost", "complete"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sg_event_state_parse(bad[i], &kept), SG_EINVAL);
    assert_int_equal(sg_event_state_parse(NULL, &kept), SG_EINVAL);
    assert_int_equal(kept, SG_STATE_DEAD);

    sg_store *s = open_ok(f->db, NULL);
    for (int i = 0; i < SG_STATE_COUNT; i++)
        put_event(s, sg_event_state_name((sg_event_state)i), "job", i + 1, 0);
    sg_store_free(s);
    assert_int_equal(raw_int(f->db, "SELECT count(DISTINCT state) FROM event"), SG_STATE_COUNT);
}

typedef struct pending_seen {
    int64_t ids[16];
    int n;
} pending_seen;

static int collect_pending(void *ud, const sg_event_row *r)
{
    pending_seen *p = ud;
    assert_true(p->n < 16);
    p->ids[p->n++] = r->id;
    return 0;
}

typedef struct held_seen {
    char jobs[8][32];
    int64_t count[8], oldest[8], newest[8];
    int n;
} held_seen;

static void collect_held(void *ud, const char *source, const char *job, int64_t count,
                         int64_t oldest, int64_t newest)
{
    held_seen *h = ud;
    assert_string_equal(source, "jenkins-prod");
    assert_true(h->n < 8);
    snprintf(h->jobs[h->n], sizeof h->jobs[h->n], "%s", job);
    h->count[h->n] = count;
    h->oldest[h->n] = oldest;
    h->newest[h->n++] = newest;
}

/* A release queues held events behind what is already pending and ahead of
 * what arrives later; newest-only supersedes older builds of the job. */
static void held_release_order(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    int64_t a1 = put_event(s, "held", "team-a/app", 101, 0);
    int64_t p1 = put_event(s, "pending", "team-b/lib", 7, 0);
    int64_t a2 = put_event(s, "held", "team-a/app", 102, 0);
    int64_t c1 = put_event(s, "held", "team-c/web", 5, 0);
    int64_t d1 = put_event(s, "held", "ops/deploy", 1, 0);

    /* most held first, then by name; the totals cover every job */
    held_seen h = {0};
    int64_t held = -1, jobs = -1;
    assert_int_equal(sg_store_held_summary(s, 10, collect_held, &h, &held, &jobs, &err), 0);
    assert_int_equal(h.n, 3);
    assert_string_equal(h.jobs[0], "team-a/app");
    assert_int_equal(h.count[0], 2);
    assert_int_equal(h.oldest[0], 101);
    assert_int_equal(h.newest[0], 102);
    assert_string_equal(h.jobs[1], "ops/deploy");
    assert_string_equal(h.jobs[2], "team-c/web");
    assert_int_equal(held, 4);
    assert_int_equal(jobs, 3);
    held_seen top = {0};
    assert_int_equal(sg_store_held_summary(s, 1, collect_held, &top, &held, &jobs, &err), 0);
    assert_int_equal(top.n, 1);
    assert_string_equal(top.jobs[0], "team-a/app");
    assert_int_equal(held, 4);
    assert_int_equal(jobs, 3);

    /* team-* only, newest per job: a1 superseded, a2 and c1 released */
    int64_t released = -1, superseded = -1, dropped = -1;
    bool more = true;
    sg_hold_filter team = {.job = "team-*"};
    assert_int_equal(
        sg_store_held_release(s, &team, true, 1, 5000, &released, &superseded, &more, &err), 0);
    assert_false(more); /* no limit: everything in one go */
    assert_int_equal(released, 2);
    assert_int_equal(superseded, 1);
    int64_t late = put_event(s, "pending", "team-b/lib", 8, 1);

    pending_seen p = {0};
    assert_int_equal(sg_store_events_pending(s, 0, 0, 10, collect_pending, &p, &err), 0);
    assert_int_equal(p.n, 4);
    assert_int_equal(p.ids[0], p1); /* queued before the release */
    assert_int_equal(p.ids[1], a2); /* released, in id order */
    assert_int_equal(p.ids[2], c1);
    assert_int_equal(p.ids[3], late); /* arrived after it */
    /* the cursor is (qgen, id): after a2, only c1 and late */
    p.n = 0;
    assert_int_equal(sg_store_events_pending(s, 1, a2, 10, collect_pending, &p, &err), 0);
    assert_int_equal(p.n, 2);
    assert_int_equal(p.ids[0], c1);
    int64_t gen = -1;
    assert_int_equal(sg_store_queue_gen(s, &gen, &err), 0);
    assert_int_equal(gen, 1);
    sg_store_free(s);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event WHERE state = 'superseded' AND "
                                    "last_error = 'superseded by build 102'"),
                     1);
    (void)a1;

    /* a limited release takes the oldest; drop takes the rest with its reason */
    s = open_ok(f->db, NULL);
    int64_t d2 = put_event(s, "held", "ops/deploy", 2, 0);
    sg_hold_filter one = {.all = true, .limit = 1};
    assert_int_equal(
        sg_store_held_release(s, &one, false, 2, 6000, &released, &superseded, &more, &err), 0);
    assert_int_equal(released, 1);
    assert_int_equal(superseded, 0);
    assert_true(more); /* a full chunk: there may be more */
    p.n = 0;
    assert_int_equal(sg_store_events_pending(s, 1, late, 10, collect_pending, &p, &err), 0);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.ids[0], d1);
    sg_hold_filter other_source = {.source = "jenkins-dev"};
    assert_int_equal(sg_store_held_drop(s, &other_source, "not ours", 7000, &dropped, &more, &err),
                     0);
    assert_int_equal(dropped, 0);
    sg_hold_filter all = {.all = true, .source = "ignored when all"};
    assert_int_equal(sg_store_held_drop(s, &all, "stale storm", 7000, &dropped, &more, &err), 0);
    assert_int_equal(dropped, 1);
    sg_store_free(s);
    char sql[128];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM event WHERE id = %lld AND state = 'dropped' "
             "AND last_error = 'stale storm'",
             (long long)d2);
    assert_int_equal(raw_int(f->db, sql), 1);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event WHERE state = 'held'"), 0);
}

/* The journal's retention works through the table a chunk at a time, takes
 * only old events that are done with, and stops at the first young chunk. */
static void events_prune(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    /* put_event: received_at = 1000 + number */
    static const char *const states[] = {"forwarded", "suppressed", "held", "pending",
                                         "dropped",   "superseded", "dead", "forwarded"};
    for (int i = 0; i < 8; i++)
        put_event(s, states[i], "team/job", i + 1, 0);             /* received 1001..1008 */
    int64_t young = put_event(s, "forwarded", "team/job", 100, 0); /* received 1100 */
    int64_t cursor = 0, deleted, total = 0;
    bool more = true;
    int chunks = 0;
    while (more) {
        assert_int_equal(sg_store_events_prune(s, 1050, 3, &cursor, &deleted, &more, &err), 0);
        total += deleted;
        assert_true(++chunks < 10);
    }
    assert_int_equal(total, 5);  /* not held, pending or dead; not the young one */
    assert_int_equal(chunks, 3); /* 3 + 3 + (2 old and the young one) */
    assert_int_equal(cursor, young);
    /* past the end: nothing, no more */
    assert_int_equal(sg_store_events_prune(s, 1050, 3, &cursor, &deleted, &more, &err), 0);
    assert_int_equal(deleted, 0);
    assert_false(more);
    sg_store_free(s);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event"), 4);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event WHERE state IN ('held', "
                                    "'pending', 'dead')"),
                     3);
}

/* Chunks of a newest-only release take whole jobs (their oldest held events
 * first), so each job's newest build is the one released however the chunks
 * fall; the chunk after the last finds nothing. Chunked drops likewise. */
static void held_release_chunks(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    char job[32];
    /* 5 jobs x 4 builds, interleaved: job j build n arrives in round n */
    for (int n = 1; n <= 4; n++)
        for (int j = 0; j < 5; j++) {
            snprintf(job, sizeof job, "team/job-%d", j);
            put_event(s, "held", job, 100 + n, 0);
        }
    sg_hold_filter chunk = {.all = true, .limit = 2};
    int64_t released = 0, superseded = 0, r, sup;
    bool more = true;
    int chunks = 0;
    while (more) {
        assert_int_equal(
            sg_store_held_release(s, &chunk, true, 1 + chunks, 5000, &r, &sup, &more, &err), 0);
        assert_true(r <= 2);
        released += r;
        superseded += sup;
        assert_true(++chunks < 10);
    }
    assert_int_equal(released, 5);
    assert_int_equal(superseded, 15);
    assert_int_equal(chunks, 4); /* 2 + 2 + 1 jobs, then an empty one */
    sg_store_free(s);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event WHERE state = 'pending' "
                                    "AND number = 104"),
                     5);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event WHERE state = 'held'"), 0);

    /* a bound (the last id when the command began): later arrivals stay */
    s = open_ok(f->db, NULL);
    int64_t before = put_event(s, "held", "team/bound", 1, 0);
    put_event(s, "held", "team/bound", 2, 0);
    sg_hold_filter bounded = {.all = true, .max_id = before};
    assert_int_equal(sg_store_held_release(s, &bounded, true, 9, 5000, &r, &sup, &more, &err), 0);
    assert_int_equal(r, 1);
    assert_int_equal(sup, 0); /* build 2 is not below the bound's newest: untouched */
    int64_t dropped_b = 0;
    assert_int_equal(sg_store_held_drop(s, &bounded, "x", 5000, &dropped_b, &more, &err), 0);
    assert_int_equal(dropped_b, 0);
    sg_store_free(s);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event WHERE job = 'team/bound' AND "
                                    "state = 'held' AND number = 2"),
                     1);
    s = open_ok(f->db, NULL);
    sg_hold_filter rest = {.job = "team/bound"};
    assert_int_equal(sg_store_held_drop(s, &rest, "x", 5000, &dropped_b, &more, &err), 0);
    assert_int_equal(dropped_b, 1);
    for (int i = 0; i < 7; i++)
        put_event(s, "held", "team/late", 200 + i, 0);
    sg_hold_filter three = {.all = true, .limit = 3};
    int64_t dropped = 0, d;
    chunks = 0;
    more = true;
    while (more) {
        assert_int_equal(sg_store_held_drop(s, &three, "stale", 6000, &d, &more, &err), 0);
        dropped += d;
        assert_true(++chunks < 10);
    }
    assert_int_equal(dropped, 7);
    assert_int_equal(chunks, 3);
    sg_store_free(s);
}

/* A slow snapshot (its keys come from Redis over the network) on a thread
 * of its own, as the daemon runs it. */
typedef struct slow_snapshot {
    const char *db;
    double seconds;     /* how long it keeps adding keys */
    bool abort;         /* abort instead of commit */
    volatile int begun; /* set once the snapshot's first transaction is open */
    int rc;
} slow_snapshot;

static void *slow_snapshot_run(void *arg)
{
    slow_snapshot *w = arg;
    sg_store *s = open_ok(w->db, NULL);
    sg_error err = {0};
    sg_snapshot_info m = meta(sg_now_ms(), "slow");
    int64_t id;
    w->rc = sg_store_snapshot_begin(s, &m, &id, &err);
    __atomic_store_n(&w->begun, 1, __ATOMIC_SEQ_CST);
    double until = sg_mono_s() + w->seconds;
    char key[32];
    for (int i = 0; w->rc == 0 && sg_mono_s() < until; i++) {
        snprintf(key, sizeof key, "igor:key-%d", i);
        w->rc = sg_store_snapshot_add_key(s, 0, key, strlen(key), 0, "payload", 7, &err);
        if (i % 100 == 99)
            usleep(1000); /* the next page of SCAN and DUMP replies */
    }
    sg_snapshot_info t = {.key_count = 1, .state = "complete"};
    if (w->abort)
        sg_store_snapshot_abort(s);
    else if (w->rc == 0)
        w->rc = sg_store_snapshot_commit(s, &t, &err);
    sg_store_free(s);
    return NULL;
}

/* A snapshot gives the write lock up between slices: another writer (the
 * gate's journal) commits within a slice's time, not after the snapshot. */
static void snapshot_lets_writers_in(void **state)
{
    fixture *f = *state;
    sg_store_free(open_ok(f->db, NULL)); /* the schema */
    slow_snapshot w = {.db = f->db, .seconds = 1.5};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, slow_snapshot_run, &w), 0);
    while (!__atomic_load_n(&w.begun, __ATOMIC_SEQ_CST))
        usleep(1000);
    /* its heartbeat shows while it writes */
    bool beat = false;
    for (int i = 0; i < 100 && !beat; i++) {
        beat = raw_int(f->db, "SELECT count(*) FROM snapshot WHERE state = 'partial' AND "
                              "seconds > 0") == 1;
        usleep(10 * 1000);
    }
    assert_true(beat);
    sg_store_options eager = {.eager_wait = true}; /* as the journal's */
    sg_store *j = open_ok(f->db, &eager);
    sg_error err = {0};
    double worst = 0;
    for (int i = 0; i < 10; i++) {
        double t0 = sg_mono_s();
        assert_int_equal(sg_store_begin(j, &err), 0);
        assert_int_equal(
            sg_store_audit(j, 1700000000000, "test", "probe", "a write during a snapshot", &err),
            0);
        assert_int_equal(sg_store_commit(j, &err), 0);
        double took = sg_mono_s() - t0;
        worst = took > worst ? took : worst;
        usleep(20 * 1000);
    }
    pthread_join(t, NULL);
    assert_int_equal(w.rc, 0);
    sg_store_free(j);
    /* without slices every write would wait for the whole 1.5 s */
    assert_true(worst < 0.5);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM snapshot WHERE state = 'complete'"), 1);
}

/* A journal committing back to back, as under full load, until told to stop. */
typedef struct busy_writer {
    const char *db;
    volatile int stop;
    int commits;
} busy_writer;

static void *busy_writer_run(void *arg)
{
    busy_writer *w = arg;
    sg_store_options eager = {.eager_wait = true};
    sg_store *j = open_ok(w->db, &eager);
    sg_error err = {0};
    while (!__atomic_load_n(&w->stop, __ATOMIC_SEQ_CST)) {
        if (sg_store_begin(j, &err) == 0) {
            for (int i = 0; i < 20; i++)
                sg_store_audit(j, 1700000000000, "test", "probe", "a busy journal", &err);
            if (sg_store_commit(j, &err) == 0)
                w->commits++;
        }
    }
    sg_store_free(j);
    return NULL;
}

/* Pruning deletes in many short transactions: against a journal that
 * commits back to back it must still get its turns, not time out. */
static void prune_beside_a_busy_journal(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    sg_snapshot_info m = meta(sg_now_ms() - 60000, "big");
    int64_t big = 0;
    assert_int_equal(sg_store_snapshot_begin(s, &m, &big, &err), 0);
    char key[32];
    for (int i = 0; i < 60000; i++) {
        snprintf(key, sizeof key, "igor:k-%d", i);
        assert_int_equal(sg_store_snapshot_add_key(s, 0, key, strlen(key), 0, "v", 1, &err), 0);
    }
    sg_snapshot_info t = {.key_count = 60000, .state = "complete"};
    assert_int_equal(sg_store_snapshot_commit(s, &t, &err), 0);
    quick_snapshot(s, sg_now_ms(), NULL);

    busy_writer w = {.db = f->db};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, busy_writer_run, &w), 0);
    usleep(100 * 1000);
    int64_t pruned = -1;
    double t0 = sg_mono_s();
    int rc = sg_store_snapshot_prune(s, 1, 0, sg_now_ms(), &pruned, &err);
    double took = sg_mono_s() - t0;
    __atomic_store_n(&w.stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(th, NULL);
    if (rc)
        fail_msg("prune beside a busy journal: %s", err.msg);
    assert_int_equal(pruned, 1);
    assert_true(took < 4.0);
    assert_true(w.commits > 0);
    sg_store_free(s);
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM snapshot_key WHERE snapshot_id = %lld",
             (long long)big);
    assert_int_equal(raw_int(f->db, sql), 0);
}

/* An abort takes back what the committed slices wrote. */
static void snapshot_abort_after_slices(void **state)
{
    fixture *f = *state;
    sg_store_free(open_ok(f->db, NULL));
    slow_snapshot w = {.db = f->db, .seconds = 0.3, .abort = true};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, slow_snapshot_run, &w), 0);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, 0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM snapshot"), 0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM snapshot_key"), 0);
}

static int push_key(void *ud, const char *key)
{
    sg_strlist_push(ud, key);
    return 0;
}

/* The watcher's sample: spread over the snapshot, profile keys without
 * expiry only. */
static void sample_keys(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    sg_snapshot_info m = meta(sg_now_ms(), "sample");
    int64_t id = 0;
    assert_int_equal(sg_store_snapshot_begin(s, &m, &id, &err), 0);
    char key[64];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "%s:%04d", i % 2 == 0 ? "igor" : "session", i);
        assert_int_equal(sg_store_snapshot_add_key(s, 0, key, strlen(key), i % 10 == 0 ? 99999 : 0,
                                                   "v", 1, &err),
                         0);
    }
    sg_snapshot_info t = {.key_count = 1000, .bytes = 1000, .state = "complete"};
    assert_int_equal(sg_store_snapshot_commit(s, &t, &err), 0);
    sg_strlist got = {0};
    assert_int_equal(sg_store_sample_keys(s, id, "igor:*", 32, push_key, &got, &err), 0);
    assert_true(got.len >= 16 && got.len <= 32);
    for (size_t i = 0; i < got.len; i++) {
        assert_true(!strncmp(got.items[i], "igor:", 5));
        int n = atoi(got.items[i] + 5);
        assert_true(n % 10 != 0); /* those expire */
    }
    /* spread: the sample reaches into the second half of the snapshot */
    assert_true(atoi(got.items[got.len - 1] + 5) > 500);
    sg_strlist_clear(&got);
    assert_int_equal(sg_store_sample_keys(s, id + 1, NULL, 32, push_key, &got, &err), 0);
    assert_int_equal(got.len, 0);
    sg_store_free(s);
}

static void episodes(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    int64_t id = 0;
    assert_int_equal(sg_store_episode_open(s, 1000, "flush", "canary gone", &id, &err), 0);
    assert_true(id > 0);
    assert_int_equal(sg_store_episode_update(s, id, 0, "rewarmed 20 keys", &err), 0);
    assert_int_equal(sg_store_episode_update(s, id, 5000, NULL, &err), 0);
    sg_store_free(s);
    assert_int_equal(raw_int(f->db, "SELECT ended_at FROM episode"), 5000);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM episode WHERE detail = "
                                    "'canary gone; rewarmed 20 keys' AND cause = 'flush'"),
                     1);
}

/* Whether another process would see a lock on the byte range SQLite uses
 * for SHARED locks (pending byte + 2, 510 bytes: os_unix.c). F_GETLK never
 * reports the caller's own locks, hence the child. */
static bool shared_lock_visible(const char *path)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(path, O_RDWR);
        struct flock fl = {
            .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0x40000000 + 2, .l_len = 510};
        if (fd < 0 || fcntl(fd, F_GETLK, &fl) != 0)
            _exit(2);
        _exit(fl.l_type == F_UNLCK ? 1 : 0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 2);
    return WEXITSTATUS(status) == 0;
}

/* A second connection in the same process must leave the first one's locks
 * alone: otherwise another process closing the database takes itself for the
 * last user and checkpoints and deletes the WAL under the live one. */
static void second_open_keeps_locks(void **state)
{
    fixture *f = *state;
    sg_store *a = open_ok(f->db, NULL);
    assert_true(shared_lock_visible(f->db));
    sg_store *b = open_ok(f->db, NULL);
    sg_store_free(b);
    assert_true(shared_lock_visible(f->db));
    sg_store_free(a);
    assert_false(shared_lock_visible(f->db));
}

#ifdef SG_TEST_PG
/* A database without tables gets the whole schema; every later open finds
 * it at the latest version and changes nothing. */
static void migrate_from_empty_pg(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    assert_int_equal(sg_store_schema_version(s), sg_pg_migration_count);
    assert_true(sg_store_shared(s));
    assert_non_null(strstr(sg_store_path(s), f->dbname));
    sg_store_free(s);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM stormguard_schema"),
                     sg_pg_migration_count);
    s = open_ok(f->db, NULL);
    sg_store_free(s);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM stormguard_schema"),
                     sg_pg_migration_count);
    /* a store from a newer stormguard is refused, naming both versions */
    raw_exec(f->db, "INSERT INTO stormguard_schema(version, name) VALUES (999, '999_future')");
    sg_error err;
    assert_int_equal(open_fails(f->db, NULL, &err), SG_EVERSION);
    assert_non_null(strstr(err.msg, "999"));
}

typedef struct replicas_seen {
    char names[4][320];
    bool live[4];
    int64_t claimed[4];
    int n;
} replicas_seen;

static void collect_replica(void *ud, const sg_replica_row *r)
{
    replicas_seen *x = ud;
    assert_true(x->n < 4);
    snprintf(x->names[x->n], sizeof x->names[0], "%s", r->name);
    x->live[x->n] = r->live;
    x->claimed[x->n++] = r->claimed;
}

static replicas_seen replicas_of(sg_store *s)
{
    replicas_seen x = {0};
    sg_error err = {0};
    if (sg_store_replicas(s, collect_replica, &x, &err))
        fail_msg("replicas: %s", err.msg);
    return x;
}

/* Any number of daemons share a PostgreSQL store: each claim is a replica
 * under a name of its own (pid@host#run), and freeing it leaves. */
static void claims_are_replicas_pg(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_store_claim *c = NULL, *c2 = NULL;
    sg_error err = {0};
    assert_int_equal(sg_store_claim_new(f->db, &c, &err), 0);
    assert_int_equal(sg_store_claim_new(f->db, &c2, &err), 0);
    char want[64];
    snprintf(want, sizeof want, "%ld@", (long)getpid());
    assert_non_null(strstr(sg_store_claim_name(c), want));
    assert_string_not_equal(sg_store_claim_name(c), sg_store_claim_name(c2));
    replicas_seen x = replicas_of(s);
    assert_int_equal(x.n, 2);
    assert_true(x.live[0] && x.live[1]);
    /* named in pg_stat_activity, for an operator's look at the server */
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'stormguard run %s'",
             sg_store_claim_name(c));
    assert_int_equal(raw_int(f->db, sql), 1);
    sg_store_claim_free(c);
    x = replicas_of(s);
    assert_int_equal(x.n, 1);
    assert_string_equal(x.names[0], sg_store_claim_name(c2));
    sg_store_claim_free(c2);
    assert_int_equal(replicas_of(s).n, 0);
    sg_store_free(s);
}

typedef struct claimed_seen {
    int64_t ids[16];
    int n;
} claimed_seen;

static int collect_claimed(void *ud, const sg_event_row *r)
{
    claimed_seen *x = ud;
    assert_true(x->n < 16);
    x->ids[x->n++] = r->id;
    return 0;
}

static claimed_seen claim(sg_store *s, const char *name)
{
    claimed_seen x = {0};
    sg_error err = {0};
    if (sg_store_events_claim(s, name, 10, collect_claimed, &x, &err))
        fail_msg("claim: %s", err.msg);
    return x;
}

static void forwarded(sg_store *s, int64_t id)
{
    sg_error err = {0};
    assert_int_equal(sg_store_event_update(s, id, SG_STATE_FORWARDED, 1, 0, NULL, 5000, &err), 0);
}

/* A replica claims the heads of the jobs' queues in queue order: never an
 * event behind one another replica (or none) has, so one job's events are
 * delivered by one replica at a time, in order. */
static void claims_take_heads_pg(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_store_claim *c1 = NULL, *c2 = NULL;
    sg_error err = {0};
    assert_int_equal(sg_store_claim_new(f->db, &c1, &err), 0);
    assert_int_equal(sg_store_claim_new(f->db, &c2, &err), 0);
    const char *r1 = sg_store_claim_name(c1), *r2 = sg_store_claim_name(c2);
    int64_t a1 = put_event(s, "pending", "a", 1, 0), a2 = put_event(s, "pending", "a", 2, 0);
    int64_t b1 = put_event(s, "pending", "b", 1, 0);
    int64_t held = put_event(s, "held", "c", 1, 0);
    int64_t a3 = put_event(s, "pending", "a", 3, 0);
    (void)held;
    claimed_seen x = claim(s, r1);
    assert_int_equal(x.n, 2); /* a1 and b1; a2 waits for a1's claim */
    assert_int_equal(x.ids[0], a1);
    assert_int_equal(x.ids[1], b1);
    x = claim(s, r2);
    assert_int_equal(x.n, 0); /* a2 is behind r1's a1 */
    x = claim(s, r1);
    assert_int_equal(x.n, 1); /* behind its own a1: r1 delivers it next */
    assert_int_equal(x.ids[0], a2);
    x = claim(s, r1);
    assert_int_equal(x.n, 1);
    assert_int_equal(x.ids[0], a3);
    assert_int_equal(claim(s, r1).n, 0);
    /* a release puts an event of a in a later generation: behind a3 */
    int64_t a0 = put_event(s, "pending", "a", 0, 1);
    assert_int_equal(claim(s, r2).n, 0);
    forwarded(s, a1);
    forwarded(s, a2);
    forwarded(s, a3);
    x = claim(s, r2);
    assert_int_equal(x.n, 1); /* the queue of a is empty before it: r2's */
    assert_int_equal(x.ids[0], a0);
    replicas_seen rs = replicas_of(s);
    assert_int_equal(rs.n, 2);
    assert_int_equal(rs.claimed[0] + rs.claimed[1], 2); /* b1 and a0 */
    /* leaving gives the claims back at once */
    sg_store_claim_free(c1);
    sg_store_claim_free(c2);
    x = claim(s, "another");
    assert_int_equal(x.n, 2);
    assert_int_equal(x.ids[0], b1);
    assert_int_equal(x.ids[1], a0);
    sg_store_free(s);
}

/* A replica that stops renewing its lease loses its claims to the others
 * once the lease ran out, and a renewal joins it again. */
static void leases_run_out_pg(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_store_claim *c1 = NULL, *c2 = NULL;
    sg_error err = {0};
    assert_int_equal(sg_store_claim_new(f->db, &c1, &err), 0);
    assert_int_equal(sg_store_claim_new(f->db, &c2, &err), 0);
    const char *r1 = sg_store_claim_name(c1), *r2 = sg_store_claim_name(c2);
    int64_t e1 = put_event(s, "pending", "a", 1, 0), e2 = put_event(s, "pending", "b", 1, 0);
    assert_int_equal(claim(s, r1).n, 2);
    int64_t released = -1;
    assert_int_equal(sg_store_replica_renew(s, r2, 5000, &released, &err), 0);
    assert_int_equal(released, 0); /* r1's lease runs */
    assert_int_equal(claim(s, r2).n, 0);
    /* r1's lease runs out */
    char sql[512];
    snprintf(sql, sizeof sql, "UPDATE replica SET lease_until = 1 WHERE name = '%s'", r1);
    raw_exec(f->db, sql);
    assert_int_equal(sg_store_replica_renew(s, r2, 5000, &released, &err), 0);
    assert_int_equal(released, 2);
    claimed_seen x = claim(s, r2);
    assert_int_equal(x.n, 2);
    assert_int_equal(x.ids[0], e1);
    assert_int_equal(x.ids[1], e2);
    /* a replica gone for a minute is removed; its renewal joins it again */
    raw_exec(f->db, "UPDATE replica SET lease_until = 0");
    assert_int_equal(sg_store_replica_renew(s, r2, 5000, &released, &err), 0);
    assert_int_equal(released, 0); /* r2 renewed itself before the look */
    replicas_seen rs = replicas_of(s);
    assert_int_equal(rs.n, 1);
    assert_string_equal(rs.names[0], r2);
    assert_int_equal(sg_store_replica_renew(s, r1, 5000, &released, &err), 0);
    assert_int_equal(replicas_of(s).n, 2);
    sg_store_claim_free(c1);
    sg_store_claim_free(c2);
    sg_store_free(s);
}

typedef struct modes_seen {
    int n;
    int64_t since, until, off;
    char reason[64], scope[32];
} modes_seen;

static void collect_mode(void *ud, const sg_mode_row *m)
{
    modes_seen *x = ud;
    x->n++;
    x->since = m->since_ms;
    x->until = m->until_ms;
    x->off = m->off_at;
    snprintf(x->reason, sizeof x->reason, "%s", m->reason);
    snprintf(x->scope, sizeof x->scope, "%s", m->scope ? m->scope : "(guard)");
}

static modes_seen modes_of(sg_store *s)
{
    modes_seen x = {0};
    sg_error err = {0};
    if (sg_store_modes(s, 0, collect_mode, &x, &err))
        fail_msg("modes: %s", err.msg);
    return x;
}

static void publish_mode(sg_store *s, const char *scope, int64_t since, int64_t until,
                         const char *reason)
{
    sg_mode_row m = {
        .scope = scope, .since_ms = since, .until_ms = until, .reason = reason, .replica = "r1"};
    sg_error err = {0};
    if (sg_store_mode_publish(s, &m, false, &err))
        fail_msg("publish: %s", err.msg);
}

/* A mode's row keeps the later until of its episode; an operator's off
 * wins over an extension of what it turned off; a mode that starts after
 * it is a new one. */
static void modes_published_pg(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    publish_mode(s, NULL, 100, 1000, "wipe");
    modes_seen x = modes_of(s);
    assert_int_equal(x.n, 1);
    assert_string_equal(x.scope, "(guard)");
    assert_int_equal(x.until, 1000);
    publish_mode(s, NULL, 100, 2000, "wipe");
    publish_mode(s, NULL, 100, 500, "wipe");
    x = modes_of(s);
    assert_int_equal(x.until, 2000);
    assert_int_equal(sg_store_mode_off(s, "r2", 1500, &err), 0);
    x = modes_of(s);
    assert_int_equal(x.until, 1500);
    assert_int_equal(x.off, 1500);
    publish_mode(s, NULL, 100, 3000, "wipe"); /* an extension the off overtook */
    assert_int_equal(modes_of(s).until, 1500);
    publish_mode(s, NULL, 1600, 4000, "operator"); /* a new guard mode */
    x = modes_of(s);
    assert_int_equal(x.since, 1600);
    assert_int_equal(x.until, 4000);
    assert_int_equal(x.off, 0);
    assert_string_equal(x.reason, "operator");
    publish_mode(s, "jenkins-prod", 10, 20, "same_job");
    x = (modes_seen){0};
    assert_int_equal(sg_store_modes(s, 1000, collect_mode, &x, &err), 0);
    assert_int_equal(x.n, 1); /* the storm ended at 20, before 1000 */
    sg_store_free(s);
}

/* A mode published with notify wakes a listener on another connection. */
static void listener_hears_modes_pg(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_store_listener *l = NULL;
    sg_error err = {0};
    assert_int_equal(sg_store_listen(f->db, &l, &err), 0);
    bool notified = true;
    assert_int_equal(sg_store_listener_read(l, &notified, &err), 0);
    assert_false(notified);
    sg_mode_row m = {.since_ms = 1, .until_ms = 2, .reason = "wipe", .replica = "r1"};
    assert_int_equal(sg_store_mode_publish(s, &m, true, &err), 0);
    struct pollfd p = {.fd = sg_store_listener_fd(l), .events = POLLIN};
    assert_int_equal(poll(&p, 1, 5000), 1);
    assert_int_equal(sg_store_listener_read(l, &notified, &err), 0);
    assert_true(notified);
    /* the server gone: the read says so, naming the store */
    raw_exec(f->db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE "
                    "'LISTEN%'");
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++) /* the server's farewell, then the end */
        if (poll(&p, 1, 5000) == 1)
            rc = sg_store_listener_read(l, &notified, &err);
    assert_int_equal(rc, SG_ESTORE);
    assert_non_null(strstr(err.msg, "listening to postgresql://"));
    sg_store_listener_free(l);
    sg_store_free(s);
}

/* A replica claims what it journals when it is alone in its job's queue:
 * not an event behind another pending one (another replica's, nobody's,
 * or its own earlier one in the batch: those it claims from the table, in
 * order), nor a held one. */
static void events_journal_claims_heads_pg(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    int64_t other = put_event(s, "pending", "b", 1, 0);
    char sql[128];
    snprintf(sql, sizeof sql, "UPDATE event SET claimed_by = 'r2' WHERE id = %lld",
             (long long)other);
    raw_exec(f->db, sql);
    sg_event_row rows[4];
    const char *jobs[4] = {"a", "a", "b", "c"};
    for (int i = 0; i < 4; i++)
        rows[i] = (sg_event_row){.received_at = 2000 + i,
                                 .source = "jenkins-prod",
                                 .job = jobs[i],
                                 .number = 10 + i,
                                 .kind = "new",
                                 .reason = "after-cursor",
                                 .state = i == 3 ? SG_STATE_HELD : SG_STATE_PENDING,
                                 .method = "POST",
                                 .path = "/",
                                 .headers = "",
                                 .body = "{}",
                                 .body_len = 2};
    sg_event_insert ins[4];
    for (int i = 0; i < 4; i++)
        ins[i] = (sg_event_insert){.row = &rows[i], .ledger = true, .claimer = "r1"};
    assert_int_equal(sg_store_begin(s, &err), 0);
    bool got = false;
    assert_int_equal(sg_store_events_lock_jobs(s, ins, 4, true, &got, &err), 0);
    assert_true(got);
    assert_int_equal(sg_store_events_journal(s, ins, 4, &err), 0);
    assert_int_equal(sg_store_commit(s, &err), 0);
    assert_true(ins[0].claimed);  /* a's head */
    assert_false(ins[1].claimed); /* behind r1's own: claimed from the table */
    assert_false(ins[2].claimed); /* behind r2's b */
    assert_false(ins[3].claimed); /* held */
    assert_true(rows[1].id > rows[0].id && rows[1].qgen >= rows[0].qgen);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event WHERE claimed_by = 'r1'"), 1);
    /* events without a job (pass-through) queue behind nothing: each is
     * claimed, two in one batch too; a job's queue generation, raised by a
     * release elsewhere, carries over to what joins it in a batch */
    raw_exec(f->db, "UPDATE event SET qgen = 7 WHERE job = 'a'");
    sg_event_row more[3];
    for (int i = 0; i < 3; i++)
        more[i] = (sg_event_row){.received_at = 3000 + i,
                                 .source = i < 2 ? NULL : "jenkins-prod",
                                 .job = i < 2 ? NULL : "a",
                                 .number = i < 2 ? 0 : 20,
                                 .kind = i < 2 ? "passthrough" : "new",
                                 .reason = "test",
                                 .state = SG_STATE_PENDING,
                                 .qgen = 1,
                                 .method = "POST",
                                 .path = "/other",
                                 .headers = "",
                                 .body = "{}",
                                 .body_len = 2};
    sg_event_insert in2[3];
    for (int i = 0; i < 3; i++)
        in2[i] = (sg_event_insert){.row = &more[i], .ledger = i == 2, .claimer = "r1"};
    assert_int_equal(sg_store_begin(s, &err), 0);
    assert_int_equal(sg_store_events_journal(s, in2, 3, &err), 0);
    assert_int_equal(sg_store_commit(s, &err), 0);
    assert_true(in2[0].claimed && in2[1].claimed);
    assert_false(in2[2].claimed);
    assert_int_equal(more[0].qgen, 1);
    assert_int_equal(more[2].qgen, 7);
    /* two events of a job nothing is pending of, in one batch: the later
     * joins the queue behind the first, whose generation is higher */
    for (int i = 0; i < 2; i++) {
        more[i].source = "jenkins-prod";
        more[i].job = "z";
        more[i].kind = "new";
        more[i].number = 30 + i;
        more[i].qgen = i == 0 ? 5 : 1;
        in2[i] = (sg_event_insert){.row = &more[i], .claimer = "r1", .claimed = i == 1};
    }
    assert_int_equal(sg_store_begin(s, &err), 0);
    assert_int_equal(sg_store_events_journal(s, in2, 2, &err), 0);
    assert_int_equal(sg_store_commit(s, &err), 0);
    assert_true(in2[0].claimed);
    assert_false(in2[1].claimed);
    assert_int_equal(more[0].qgen, 5);
    assert_int_equal(more[1].qgen, 5);
    sg_store_free(s);
}

/* Event id claimed by replica by, as another replica's claim leaves it. */
static void set_claimed(const char *db, int64_t id, const char *by)
{
    char sql[160];
    snprintf(sql, sizeof sql, "UPDATE event SET claimed_by = '%s' WHERE id = %lld", by,
             (long long)id);
    raw_exec(db, sql);
}

/* A batch of requests bigger than one statement's arrays take (64 MiB)
 * goes in as several statements of one transaction, in order, the later
 * ones behind the earlier in their job's queue. */
static void events_journal_big_batch_pg(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    size_t big = 30u << 20;
    char *body = sg_xmalloc(big);
    memset(body, 'x', big);
    sg_event_row rows[3];
    sg_event_insert ins[3];
    for (int i = 0; i < 3; i++) {
        rows[i] = new_pending("big", 1 + i, body, big);
        ins[i] =
            (sg_event_insert){.row = &rows[i], .ledger = true, .claimer = "r1", .claimed = i > 0};
    }
    assert_int_equal(sg_store_begin(s, &err), 0);
    assert_int_equal(sg_store_events_journal(s, ins, 3, &err), 0);
    assert_int_equal(sg_store_commit(s, &err), 0);
    free(body);
    assert_true(rows[0].id > 0 && rows[1].id > rows[0].id && rows[2].id > rows[1].id);
    assert_true(ins[0].claimed && ins[0].added && ins[2].added);
    assert_false(ins[1].claimed); /* behind the first, in the statement before */
    assert_false(ins[2].claimed);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event WHERE length(body) = 31457280"), 3);
    sg_store_free(s);
}

/* A delivery's record says whether its job has unclaimed events behind
 * it: the replica claims them then, and not after every delivery. */
static void outcomes_tell_followers_pg(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    int64_t a1 = put_event(s, "pending", "a", 1, 0), a2 = put_event(s, "pending", "a", 2, 0);
    int64_t b1 = put_event(s, "pending", "b", 1, 0);
    set_claimed(f->db, a1, "r1");
    set_claimed(f->db, b1, "r1");
    sg_store_set_replica(s, "r1");
    sg_event_outcome outs[] = {
        {.id = b1, .state = SG_STATE_FORWARDED, .attempts = 1, .done_at = 6000},
        {.id = a1, .state = SG_STATE_FORWARDED, .attempts = 1, .done_at = 6000},
    };
    outs[0].followers = true; /* set by the call either way */
    assert_int_equal(sg_store_begin(s, &err), 0);
    assert_int_equal(sg_store_events_update(s, outs, 2, &err), 0);
    assert_int_equal(sg_store_commit(s, &err), 0);
    assert_false(outs[0].followers);
    assert_true(outs[1].followers); /* a2 waits */
    claimed_seen x = claim(s, "r1");
    assert_int_equal(x.n, 1);
    assert_int_equal(x.ids[0], a2);
    sg_store_free(s);
}

typedef struct claim_count {
    int n;
} claim_count;

static int count_claimed(void *ud, const sg_event_row *r)
{
    (void)r;
    ((claim_count *)ud)->n++;
    return 0;
}

/* n pending events of `jobs` jobs in one statement: event i is build i of
 * job-(i % jobs), received at 1000 + i, claimed by r0 if claimed_every
 * divides i (0: none is). */
static void put_many(const char *db, int n, int jobs, int claimed_every)
{
    char claim[64] = "NULL";
    if (claimed_every)
        snprintf(claim, sizeof claim, "CASE WHEN n %% %d = 0 THEN 'r0' END", claimed_every);
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO event(received_at, source, job, number, kind, reason, state, method, "
             "path, headers, body, qgen, claimed_by) SELECT 1000 + n, 'jenkins-prod', "
             "'job-' || (n %% %d), n, 'new', 'test', 'pending', 'POST', '/', '', '{}', 0, %s "
             "FROM generate_series(1, %d) AS n",
             jobs, claim, n);
    raw_exec(db, sql);
}

/* Two claims by r1 of s, each giving each events: how long they took
 * (the first takes each job's head, the second its next). */
static double two_claims(sg_store *s, int each)
{
    sg_error err = {0};
    double t0 = sg_mono_s();
    for (int round = 0; round < 2; round++) {
        claim_count x = {0};
        if (sg_store_events_claim(s, "r1", 512, count_claimed, &x, &err))
            fail_msg("claim %d: %s", round, err.msg);
        assert_int_equal(x.n, each);
    }
    return sg_mono_s() - t0;
}

/* A claim on a backlog of thousands of events stays quick however young
 * the table was when the replica first claimed: a plan made then and kept
 * (a prepared statement's) ran for minutes on such a backlog. Planned at
 * each call, and prepared on a keyed connection (a replica's claims'). */
static void claims_quick_on_a_backlog_pg(void **state)
{
    fixture *f = *state;
    for (int keyed = 0; keyed < 2; keyed++) {
        sg_store_options o = {.statement_timeout_ms = 5000, .keyed = keyed};
        sg_store *s = open_ok(f->db, &o);
        raw_exec(f->db, "TRUNCATE event"); /* a young table again: DELETE keeps its size */
        sg_error err = {0};
        for (int i = 0; i < 12; i++) { /* on an empty table */
            claim_count x = {0};
            assert_int_equal(sg_store_events_claim(s, "r1", 512, count_claimed, &x, &err), 0);
            assert_int_equal(x.n, 0);
        }
        put_many(f->db, 20000, 100, 0);
        double t0 = sg_mono_s();
        claim_count x = {0};
        if (sg_store_events_claim(s, "r1", 512, count_claimed, &x, &err))
            fail_msg("%s claim: %s", keyed ? "keyed" : "planned", err.msg);
        /* each job's head; the window giving less than a quarter of 512,
         * the look at all of them then gives each job's next one */
        assert_int_equal(x.n, 200);
        /* the two after those, now that the first two are this replica's */
        x.n = 0;
        assert_int_equal(sg_store_events_claim(s, "r1", 512, count_claimed, &x, &err), 0);
        assert_int_equal(x.n, 200);
        double took = sg_mono_s() - t0;
        if (took > 5.0)
            fail_msg("%s: two claims on 20,000 pending took %.0f ms", keyed ? "keyed" : "planned",
                     took * 1000);
        sg_store_free(s);
    }
}

/* Whether event id is claimed by `by` (NULL: by none). */
static bool claimed_by(const char *db, int64_t id, const char *by)
{
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM event WHERE id = %lld AND claimed_by %s%s%s",
             (long long)id, by ? "= '" : "IS NULL", by ? by : "", by ? "'" : "");
    return raw_int(db, sql) == 1;
}

/* A claim looks at the first 4 times its limit unclaimed events in queue
 * order, not at the whole backlog, when they give it a quarter of its
 * limit; when they give less, at all of them: a long queue of one job at
 * the front holds no other job back. */
static void claim_window_pg(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    /* the front: 8 events behind r2's head of job a, the window of a claim of 2 */
    set_claimed(f->db, put_event(s, "pending", "a", 1, 0), "r2");
    for (int i = 0; i < 8; i++)
        put_event(s, "pending", "a", 2 + i, 0);
    int64_t b = put_event(s, "pending", "b", 1, 0);
    claim_count x = {0};
    assert_int_equal(sg_store_events_claim(s, "r1", 2, count_claimed, &x, &err), 0);
    assert_int_equal(x.n, 1); /* the window gave none: b, beyond it */
    assert_true(claimed_by(f->db, b, "r1"));
    raw_exec(f->db, "DELETE FROM event");
    /* the front: c's head, then 7 events behind r2's head of job d */
    set_claimed(f->db, put_event(s, "pending", "d", 1, 0), "r2");
    int64_t c = put_event(s, "pending", "c", 1, 0);
    for (int i = 0; i < 7; i++)
        put_event(s, "pending", "d", 2 + i, 0);
    int64_t e = put_event(s, "pending", "e", 1, 0);
    x.n = 0;
    assert_int_equal(sg_store_events_claim(s, "r1", 2, count_claimed, &x, &err), 0);
    assert_int_equal(x.n, 1); /* c: half the limit, and e waits beyond the window */
    assert_true(claimed_by(f->db, c, "r1"));
    assert_true(claimed_by(f->db, e, NULL));
    x.n = 0;
    assert_int_equal(sg_store_events_claim(s, "r1", 2, count_claimed, &x, &err), 0);
    assert_int_equal(x.n, 1); /* the front moved: e is in the window */
    assert_true(claimed_by(f->db, e, "r1"));
    raw_exec(f->db, "DELETE FROM event");
    /* the front: 8 events behind r2's head of job g, then a pass-through
     * event whose replica's lease lapsed (no job: a head of its own) */
    set_claimed(f->db, put_event(s, "pending", "g", 1, 0), "r2");
    for (int i = 0; i < 8; i++)
        put_event(s, "pending", "g", 2 + i, 0);
    raw_exec(f->db, "INSERT INTO event(received_at, kind, reason, state, method, path, headers, "
                    "body, qgen) VALUES (2000, 'passthrough', 'not-a-build', 'pending', 'POST', "
                    "'/', '', '{}', 0)");
    x.n = 0;
    assert_int_equal(sg_store_events_claim(s, "r1", 2, count_claimed, &x, &err), 0);
    assert_int_equal(x.n, 1); /* the window gave none: the look job by job took it */
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event WHERE job IS NULL AND "
                                    "claimed_by = 'r1'"),
                     1);
    sg_store_free(s);
}

/* Two replicas behind a backlog: the window in front full of the jobs
 * whose heads the other one holds, a claim finds this one's jobs further
 * back job by job, as quick however long the backlog in front (the look
 * at every unclaimed event walked it all, each call). */
static void claims_past_another_replicas_jobs_pg(void **state)
{
    fixture *f = *state;
    sg_store_options o = {.statement_timeout_ms = 20000, .keyed = true};
    sg_store *s = open_ok(f->db, &o);
    /* in front: 100,000 events of 250 jobs whose heads are r0's */
    put_many(f->db, 100000, 250, 0);
    raw_exec(f->db, "UPDATE event SET claimed_by = 'r0' WHERE number <= 250");
    /* behind them: 250 jobs of their own, 4 events each */
    raw_exec(f->db, "INSERT INTO event(received_at, source, job, number, kind, reason, state, "
                    "method, path, headers, body, qgen) SELECT 1000 + n, 'jenkins-prod', "
                    "'late-' || (n % 250), n, 'new', 'test', 'pending', 'POST', '/', '', '{}', 0 "
                    "FROM generate_series(1, 1000) AS n");
    raw_exec(f->db, "ANALYZE event");
    double took = two_claims(s, 250); /* the late jobs' heads, then their next */
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event WHERE claimed_by = 'r1' AND "
                                    "job LIKE 'late-%'"),
                     500);
    if (took > 0.25) /* 36 ms here, 0.8 s looking at every unclaimed event */
        fail_msg("two claims behind 100,000 blocked events took %.0f ms", took * 1000);
    sg_store_free(s);
}

/* Two replicas claiming at once: the heads the other one is locking are
 * skipped, not counted, and this claim takes the next ones up to its
 * limit (counted before the lock, it found the same first heads locked
 * and took none). */
static void claims_beside_another_claim_pg(void **state)
{
    fixture *f = *state;
    sg_store *s0 = open_ok(f->db, NULL), *s1 = open_ok(f->db, NULL);
    sg_error err = {0};
    put_many(f->db, 6000, 2000, 0); /* 2,000 jobs, 3 events each */
    assert_int_equal(sg_store_begin(s0, &err), 0);
    claim_count x0 = {0};
    if (sg_store_events_claim(s0, "r0", 512, count_claimed, &x0, &err))
        fail_msg("r0's claim: %s", err.msg);
    assert_int_equal(x0.n, 512); /* locked until r0 commits */
    claim_count x1 = {0};
    if (sg_store_events_claim(s1, "r1", 512, count_claimed, &x1, &err))
        fail_msg("r1's claim: %s", err.msg);
    assert_int_equal(x1.n, 512);
    assert_int_equal(sg_store_commit(s0, &err), 0);
    /* no job split: each job's head went to one of them, none claimed twice */
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event WHERE claimed_by IS NOT NULL"),
                     1024);
    assert_int_equal(raw_int(f->db, "SELECT count(DISTINCT job) FROM event WHERE claimed_by IS "
                                    "NOT NULL"),
                     1024);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event WHERE claimed_by IS NOT NULL AND "
                                    "number > 2000"),
                     0);
    sg_store_free(s1);
    sg_store_free(s0);
}

/* The changes PostgreSQL's statistics count on the event table since its
 * last analyze, once they reach at least (a closed session's count
 * arrives as it exits): waits up to 5 s. */
static void wait_changes(const char *url, int64_t at_least)
{
    int64_t n = 0;
    for (int i = 0; i < 500; i++) {
        n = raw_int(url, "SELECT coalesce((SELECT n_mod_since_analyze FROM pg_stat_user_tables "
                         "WHERE relname = 'event'), 0)");
        if (n >= at_least)
            return;
        usleep(10000);
    }
    fail_msg("the event table's changes: %lld, not yet %lld", (long long)n, (long long)at_least);
}

/* The event table's statistics are stale once it changed by as much as it
 * holds, not before (sg_store_events_stale); renewed by another session
 * (sg_store_events_analyze), a claim whose plan was made on 200 rows
 * without statistics (it looked for a job's earlier events among every
 * pending one: minutes on a backlog) is quick. */
static void analyze_once_grown_pg(void **state)
{
    fixture *f = *state;
    sg_store_options o = {.statement_timeout_ms = 20000, .keyed = true};
    sg_store *s = open_ok(f->db, &o);
    sg_store *r = open_ok(f->db, NULL); /* another session analyzes, as a replica's reader */
    raw_exec(f->db, "ALTER TABLE event SET (autovacuum_enabled = off)");
    sg_error err = {0};
    sg_events_stale st = {-1, 0};
    assert_int_equal(sg_store_events_stale(r, 0, &st, &err), 0);
    assert_int_equal(st.changes, 0);
    assert_int_equal(st.planned, -1);
    put_many(f->db, 200, 500, 3);
    raw_exec(f->db, "UPDATE event SET state = 'forwarded' WHERE id % 2 = 0");
    wait_changes(f->db, 300);
    assert_int_equal(sg_store_events_stale(r, 0, &st, &err), 0);
    assert_int_equal(st.changes, 0); /* fewer than 1,000 */
    for (int i = 0; i < 12; i++) {   /* the claim's plan, made on these */
        claim_count x = {0};
        assert_int_equal(sg_store_events_claim(s, "r1", 512, count_claimed, &x, &err), 0);
    }
    /* a backlog: 20,000 pending of 500 jobs behind 40,000 forwarded */
    raw_exec(f->db, "DELETE FROM event"); /* a TRUNCATE would have the plan made again */
    put_many(f->db, 60000, 500, 0);
    raw_exec(f->db, "UPDATE event SET state = 'forwarded' WHERE number <= 40000");
    wait_changes(f->db, 100000);
    assert_int_equal(sg_store_events_stale(r, 0, &st, &err), 0);
    assert_true(st.changes >= 100000);
    bool done = false;
    if (sg_store_events_analyze(r, &done, &err))
        fail_msg("analyze: %s", err.msg);
    assert_true(done);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM pg_stat_user_tables WHERE relname = "
                                    "'event' AND last_analyze IS NOT NULL"),
                     1);
    assert_int_equal(sg_store_events_stale(r, 20000, &st, &err), 0);
    assert_int_equal(st.changes, 0);  /* renewed: nothing changed since */
    assert_int_equal(st.planned, -1); /* and the 20,000 pending counted */
    double took = two_claims(s, 500); /* each job's head, then its next */
    if (took > 3.0)
        fail_msg("two claims on 20,000 pending took %.0f ms", took * 1000);
    sg_store_free(r);
    sg_store_free(s);
}

/* An analyze of an idle table (nothing pending: autovacuum's, a quiet
 * gate's) has the planner count every partial index on the pending events
 * empty, whatever they grow to: a backlog behind it is stale statistics
 * (sg_store_events_stale's planned) until renewed, and meanwhile a claim
 * stays quick (on 270,000 pending events, half of the jobs' heads another
 * replica's, it walked every unclaimed one: 1.9 s a call). */
static void backlog_after_idle_analyze_pg(void **state)
{
    fixture *f = *state;
    sg_store_options o = {.statement_timeout_ms = 20000, .keyed = true};
    sg_store *s = open_ok(f->db, &o);
    sg_store *r = open_ok(f->db, NULL);
    raw_exec(f->db, "ALTER TABLE event SET (autovacuum_enabled = off)");
    sg_error err = {0};
    put_many(f->db, 50000, 500, 0); /* an idle gate: every event forwarded */
    raw_exec(f->db, "UPDATE event SET state = 'forwarded'");
    bool done = false;
    if (sg_store_events_analyze(r, &done, &err))
        fail_msg("analyze: %s", err.msg);
    assert_true(done);
    for (int i = 0; i < 12; i++) { /* the claim's plan, made on that picture */
        claim_count x = {0};
        assert_int_equal(sg_store_events_claim(s, "r1", 512, count_claimed, &x, &err), 0);
        assert_int_equal(x.n, 0);
    }
    /* the backlog: 150,000 pending of 500 jobs, half of the heads r0's */
    put_many(f->db, 150000, 500, 0);
    raw_exec(f->db, "UPDATE event SET claimed_by = 'r0' WHERE state = 'pending' AND number <= 500 "
                    "AND number % 2 = 0");
    sg_events_stale st = {0, 0};
    assert_int_equal(sg_store_events_stale(r, 999, &st, &err), 0);
    assert_int_equal(st.planned, -1); /* fewer than 1,000 counted: not looked at */
    assert_int_equal(sg_store_events_stale(r, 150000, &st, &err), 0);
    if (st.planned < 0 || st.planned * 4 > 150000)
        fail_msg("150,000 pending, the planner counting %lld: not found stale",
                 (long long)st.planned);
    double took = two_claims(s, 250); /* the free jobs' heads, then their next */
    if (took > 0.5)                   /* 40 ms here, 1.4 s when the lock went by event_unclaimed */
        fail_msg("two claims on 150,000 pending after an idle analyze took %.0f ms", took * 1000);
    if (sg_store_events_analyze(r, &done, &err))
        fail_msg("analyze: %s", err.msg);
    assert_true(done);
    assert_int_equal(sg_store_events_stale(r, 150000, &st, &err), 0);
    assert_int_equal(st.planned, -1); /* renewed: the planner counts them */
    sg_store_free(r);
    sg_store_free(s);
}

/* A transaction's BEGIN goes with its first statement: one that ran none
 * commits and rolls back as nothing; a first statement that fails (here
 * at execution, its statement prepared in the same round trip) fails the
 * transaction with the server's reason, and the next one runs it. */
static void begin_with_first_statement_pg(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    assert_int_equal(sg_store_begin(s, &err), 0);
    assert_int_equal(sg_store_commit(s, &err), 0);
    assert_int_equal(sg_store_begin(s, &err), 0);
    sg_store_rollback(s);
    sg_event_row r = new_pending("a", 1, "{}", 2);
    r.received_at = 1000;
    r.kind = "bogus";
    sg_event_insert in = {.row = &r};
    assert_int_equal(sg_store_begin(s, &err), 0);
    assert_int_not_equal(sg_store_events_journal(s, &in, 1, &err), 0);
    assert_non_null(strstr(err.msg, "journaling events in"));
    assert_non_null(strstr(err.msg, "check constraint"));
    sg_store_rollback(s);
    r.kind = "unknown";
    assert_int_equal(sg_store_begin(s, &err), 0);
    if (sg_store_events_journal(s, &in, 1, &err))
        fail_msg("journal: %s", err.msg);
    assert_int_equal(sg_store_commit(s, &err), 0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event"), 1);
    /* the connection lost between the BEGIN and the first statement: that
     * one fails, the next transaction connects again */
    assert_int_equal(sg_store_begin(s, &err), 0);
    raw_exec(f->db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                    "datname = current_database() AND pid <> pg_backend_pid()");
    for (int i = 0; i < 500 && raw_int(f->db, "SELECT count(*) FROM pg_stat_activity WHERE "
                                              "datname = current_database() AND "
                                              "pid <> pg_backend_pid()") > 0;
         i++)
        usleep(10000);
    r.number = 2;
    assert_int_not_equal(sg_store_events_journal(s, &in, 1, &err), 0);
    assert_non_null(strstr(err.msg, "127.0.0.1"));
    sg_store_rollback(s);
    assert_int_equal(sg_store_begin(s, &err), 0);
    if (sg_store_events_journal(s, &in, 1, &err) || sg_store_commit(s, &err))
        fail_msg("after the connection was lost: %s", err.msg);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event"), 2);
    sg_store_free(s);
}

/* A keyed connection's batch of outcomes stays quick however young the
 * table was when its statement was planned: prepared, the generic plan
 * made on a few rows joined the arrays to a scan of the whole table. */
static void outcomes_quick_on_a_grown_table_pg(void **state)
{
    fixture *f = *state;
    sg_store_options o = {.keyed = true};
    sg_store *s = open_ok(f->db, &o);
    sg_error err = {0};
    enum { N = 200 };
    sg_event_outcome outs[N];
    for (int round = 0; round < 12; round++) { /* the plan made on an empty table */
        for (int i = 0; i < N; i++)
            outs[i] = (sg_event_outcome){.id = i + 1, .state = SG_STATE_FORWARDED, .attempts = 1};
        assert_int_equal(sg_store_events_update(s, outs, N, &err), 0);
    }
    put_many(f->db, 400000, 100, 0);
    raw_exec(f->db, "UPDATE event SET state = 'forwarded' WHERE id > 2000");
    double t0 = sg_mono_s();
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < N; i++)
            outs[i] = (sg_event_outcome){
                .id = round * N + i + 1, .state = SG_STATE_FORWARDED, .attempts = 1};
        assert_int_equal(sg_store_events_update(s, outs, N, &err), 0);
    }
    double took = sg_mono_s() - t0;
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event WHERE state = 'pending'"), 0);
    /* by the key: under 10 ms a batch here; a scan of the table: 140 ms */
    if (took > 0.5)
        fail_msg("10 batches of outcomes took %.0f ms", took * 1000);
    sg_store_free(s);
}

/* A replica's outcomes change its own claims and unclaimed events, never
 * one another replica claimed after its lease ran out. */
static void outcomes_fenced_by_claims_pg(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    int64_t mine = put_event(s, "pending", "a", 1, 0), theirs = put_event(s, "pending", "b", 1, 0);
    int64_t none = put_event(s, "pending", "c", 1, 0);
    set_claimed(f->db, mine, "r1");
    set_claimed(f->db, theirs, "r2");
    char sql[160];
    sg_store_set_replica(s, "r1");
    for (int64_t id = mine; id <= none; id++)
        assert_int_equal(sg_store_event_update(s, id, SG_STATE_FORWARDED, 1, 0, NULL, 9, &err), 0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event WHERE state = 'forwarded'"), 2);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM event WHERE id = %lld AND state = 'pending'",
             (long long)theirs);
    assert_int_equal(raw_int(f->db, sql), 1);
    /* in one batch, likewise */
    sg_event_outcome outs[3];
    for (int i = 0; i < 3; i++)
        outs[i] = (sg_event_outcome){.id = mine + i, .state = SG_STATE_DEAD, .attempts = 2};
    assert_int_equal(sg_store_events_update(s, outs, 3, &err), 0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event WHERE state = 'dead'"), 2);
    assert_int_equal(raw_int(f->db, sql), 1);
    sg_store_set_replica(s, NULL); /* unfenced again */
    assert_int_equal(sg_store_event_update(s, theirs, SG_STATE_DEAD, 1, 0, NULL, 9, &err), 0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event WHERE state = 'dead'"), 3);
    sg_store_free(s);
}

/* A job's lock held by one transaction: another waits for it only when
 * asked to; without waiting it is told, and takes the free ones. */
static void job_locks_pg(void **state)
{
    fixture *f = *state;
    sg_store *s1 = open_ok(f->db, NULL), *s2 = open_ok(f->db, NULL);
    sg_error err = {0};
    sg_event_row a = {.source = "jenkins-prod", .job = "a"},
                 b = {.source = "jenkins-prod", .job = "b"};
    sg_event_insert ia = {.row = &a}, ib = {.row = &b};
    bool got = false;
    assert_int_equal(sg_store_begin(s1, &err), 0);
    assert_int_equal(sg_store_events_lock_jobs(s1, &ia, 1, true, &got, &err), 0);
    assert_true(got);
    assert_int_equal(sg_store_begin(s2, &err), 0);
    assert_int_equal(sg_store_events_lock_jobs(s2, &ia, 1, false, &got, &err), 0);
    assert_false(got); /* s1's */
    assert_int_equal(sg_store_events_lock_jobs(s2, &ib, 1, false, &got, &err), 0);
    assert_true(got);
    sg_store_rollback(s1); /* a's lock goes with s1's transaction */
    assert_int_equal(sg_store_events_lock_jobs(s2, &ia, 1, false, &got, &err), 0);
    assert_true(got);
    sg_store_rollback(s2);
    sg_store_free(s1);
    sg_store_free(s2);
}

/* One replica holds the watcher's lock at a time; it goes with the claim. */
static void watcher_lock_pg(void **state)
{
    fixture *f = *state;
    sg_store_free(open_ok(f->db, NULL));
    sg_store_claim *c1 = NULL, *c2 = NULL;
    sg_error err = {0};
    assert_int_equal(sg_store_claim_new(f->db, &c1, &err), 0);
    assert_int_equal(sg_store_claim_new(f->db, &c2, &err), 0);
    bool held = false;
    assert_int_equal(sg_store_claim_watcher(c1, false, &held, &err), 0);
    assert_true(held);
    assert_int_equal(sg_store_claim_watcher(c2, false, &held, &err), 0);
    assert_false(held);
    assert_int_equal(sg_store_claim_watcher(c1, false, &held, &err), 0);
    assert_true(held); /* still its */
    /* given up (Redis unreachable from it), the other takes it at once */
    assert_int_equal(sg_store_claim_watcher(c1, true, &held, &err), 0);
    assert_false(held);
    assert_int_equal(sg_store_claim_watcher(c2, false, &held, &err), 0);
    assert_true(held);
    assert_int_equal(sg_store_claim_watcher(c1, true, &held, &err), 0); /* not its: nothing */
    assert_false(held);
    assert_int_equal(sg_store_claim_watcher(c1, false, &held, &err), 0);
    assert_false(held);
    assert_int_equal(sg_store_claim_watcher(c2, true, &held, &err), 0);
    assert_int_equal(sg_store_claim_watcher(c1, false, &held, &err), 0);
    assert_true(held);
    sg_store_claim_free(c1);
    /* the server lets go of a closed session's locks a moment later */
    held = false;
    for (int i = 0; i < 100 && !held; i++) {
        assert_int_equal(sg_store_claim_watcher(c2, false, &held, &err), 0);
        if (!held)
            usleep(20 * 1000);
    }
    assert_true(held);
    sg_store_claim_free(c2);
}

/* A lost connection is reset before the next statement; a failed reset
 * is tried again only after a backoff, failing at once meanwhile. */
static void reconnect_backs_off_pg(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    int64_t id = 0;
    assert_int_equal(sg_store_last_event_id(s, &id, &err), 0);
    char sql[256];
    snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS false", f->dbname);
    raw_exec(g_pg.url, sql);
    snprintf(sql, sizeof sql,
             "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '%s'",
             f->dbname);
    raw_int(g_pg.url, sql);
    /* the statement meets the connection closed, then the reset fails */
    assert_int_equal(sg_store_last_event_id(s, &id, &err), SG_ESTORE);
    assert_int_equal(sg_store_last_event_id(s, &id, &err), SG_ESTORE);
    if (!strstr(err.msg, "connecting to postgresql://"))
        fail_msg("%s", err.msg);
    assert_int_equal(sg_store_last_event_id(s, &id, &err), SG_ESTORE); /* at once, waiting */
    assert_non_null(strstr(err.msg, "connecting again in"));
    snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS true", f->dbname);
    raw_exec(g_pg.url, sql);
    usleep(150 * 1000); /* past the first backoff, 100 ms */
    assert_int_equal(sg_store_last_event_id(s, &id, &err), 0);
    sg_store_free(s);
}

/* Errors name the store by its URL without the password, never with it. */
static void url_errors_name_no_password(void **state)
{
    fixture *f = *state;
    char url[320];
    /* a server that is not there */
    snprintf(url, sizeof url, "postgresql://stormguard:s3cret-pw@127.0.0.1:1/%s", f->dbname);
    sg_store *s = NULL;
    sg_error err = {0};
    assert_int_equal(sg_store_open(url, NULL, &s, &err), SG_ESTORE);
    assert_null(s);
    assert_null(strstr(err.msg, "s3cret-pw"));
    assert_non_null(strstr(err.msg, "postgresql://stormguard@127.0.0.1:1/"));
    /* a URL libpq cannot parse, with a password in it */
    assert_int_equal(sg_store_url_check("postgresql://u:s3cret-pw%zz@h/db", &err), SG_EUSAGE);
    assert_null(strstr(err.msg, "s3cret-pw"));
    char *red = sg_store_url_redacted("postgresql://u:s3cret-pw@h:5/db?sslmode=require");
    assert_string_equal(red, "postgresql://u@h:5/db");
    free(red);
    /* a database that does not exist */
    snprintf(url, sizeof url, "postgresql://stormguard@127.0.0.1:%d/nosuchdb", g_pg.port);
    assert_int_equal(sg_store_open(url, NULL, &s, &err), SG_ESTORE);
    assert_non_null(strstr(err.msg, "nosuchdb"));
    assert_non_null(strstr(err.msg, "connecting to"));
}

/* ---- store copy: SQLite into PostgreSQL ---- */

/* An SQLite event of state_name; *id its id. Strings borrowed. */
static int64_t copy_event(sg_store *s, const char *state_name, const char *kind, const char *job,
                          int64_t number, const char *tag, const void *body, size_t body_len)
{
    sg_event_state state;
    assert_int_equal(sg_event_state_parse(state_name, &state), 0);
    sg_event_row r = {.received_at = 1700000000000 + number,
                      .source = job ? "jenkins-prod" : NULL,
                      .job = job,
                      .number = number,
                      .build_ts = job ? 1600000000000 + number : 0,
                      .kind = kind,
                      .reason = "a reason",
                      .state = state,
                      .method = "POST",
                      .path = "/webhooks/x?y=1",
                      .headers = "content-type: application/json\n",
                      .body = body,
                      .body_len = body_len,
                      .next_attempt_at = state == SG_STATE_PENDING ? 1700000009999 : 0,
                      .qgen = state == SG_STATE_PENDING ? 3 : 0,
                      .tag = tag,
                      .digest = tag ? "sha256:abc" : NULL};
    sg_error err = {0};
    if (sg_store_event_insert(s, &r, &err))
        fail_msg("insert: %s", err.msg);
    if (job && (!strcmp(kind, "new") || !strcmp(kind, "unknown"))) {
        bool added;
        assert_int_equal(
            sg_store_ledger_add(s, r.source, job, number, r.id, r.received_at, &added, &err), 0);
    }
    return r.id;
}

/* An SQLite store with what a copy takes and what it leaves: every kind
 * of open event (a held one with a body of several COPY chunks), Docker
 * events, a ledger of BULK_LEDGER builds more whose events were pruned, a
 * build after the ledger's mark, a profile snapshot. Returns the held
 * event's id; *last the highest event id. */
#define BULK_LEDGER 30000
#define BIG_BODY (3u << 20)
static int64_t copy_source(const char *path, int64_t *last, int64_t *snapshot)
{
    sg_store *s = open_ok(path, NULL);
    sg_error err = {0};
    char *big = malloc(BIG_BODY);
    assert_non_null(big);
    for (size_t i = 0; i < BIG_BODY; i++)
        big[i] = (char)(i * 7 + (i >> 11)); /* every byte value, NUL included */
    copy_event(s, "forwarded", "new", "done", 1, NULL, "{}", 2);
    int64_t held = copy_event(s, "held", "unknown", "held", 1, NULL, big, BIG_BODY);
    copy_event(s, "held", "new", "held", 2, NULL, "", 0);
    int64_t pend = copy_event(s, "pending", "new", "pend", 1, NULL, "{\"a\":1}", 7);
    assert_int_equal(sg_store_event_update(s, pend, SG_STATE_PENDING, 2, 1700000005555,
                                           "503 from the downstream", 0, &err),
                     0);
    copy_event(s, "dead", "new", "refused", 1, NULL, "{}", 2);
    copy_event(s, "forwarded", "unknown", "lib/app", 77, "v1", "{}", 2); /* Docker, accepted */
    copy_event(s, "suppressed", "replay", "lib/app", 77, "v1", "{}", 2); /* Docker, a replay */
    copy_event(s, "forwarded", "passthrough", NULL, 0, NULL, "x", 1);
    free(big);
    int64_t mark = 0;
    assert_int_equal(sg_store_last_event_id(s, &mark, &err), 0);
    assert_int_equal(sg_store_ledger_set_mark(s, mark, &err), 0);
    /* accepted after the mark, its ledger row not written (a crash) */
    sg_event_row r = {.received_at = 1700000100000,
                      .source = "jenkins-prod",
                      .job = "late",
                      .number = 5,
                      .kind = "new",
                      .reason = "after the cursor",
                      .state = SG_STATE_FORWARDED,
                      .method = "POST",
                      .path = "/",
                      .headers = "",
                      .body = "{}",
                      .body_len = 2};
    assert_int_equal(sg_store_event_insert(s, &r, &err), 0);
    *last = r.id;

    sg_snapshot_info m = meta(1700000000000, "periodic");
    m.profile_pattern = "igor:*";
    assert_int_equal(sg_store_snapshot_begin(s, &m, snapshot, &err), 0);
    assert_int_equal(sg_store_snapshot_add_key(s, 0, "igor:a", 6, 0, "v1", 2, &err), 0);
    assert_int_equal(sg_store_snapshot_add_key(s, 0, "igor:b", 6, 1800000000000, "\0\1\2", 3, &err),
                     0);
    assert_int_equal(sg_store_index_cursor(s, "jenkins-prod", 12, "job", 3, 1600000000000, &err),
                     0);
    assert_int_equal(sg_store_index_ci(s, "travis", 6, "org/lib", 7, false, 41, &err), 0);
    assert_int_equal(sg_store_index_ci(s, "travis", 6, "org/lib", 7, true, 42, &err), 0);
    assert_int_equal(sg_store_index_posted(s, "jenkins-prod", 12, "job", 3, 10, &err), 0);
    assert_int_equal(sg_store_index_posted(s, "jenkins-prod", 12, "job", 3, 11, &err), 0);
    assert_int_equal(
        sg_store_index_docker(s, "hub", 3, "lib/app", 7, "v1", 2, "sha256:abc", 10, &err), 0);
    assert_int_equal(sg_store_index_docker(s, "hub", 3, "lib/app", 7, "v0", 2, NULL, 0, &err), 0);
    assert_int_equal(sg_store_snapshot_add_node(s, 0, "10.0.0.7:6379", "0-16383", 2, &err), 0);
    sg_snapshot_info t = {.key_count = 2, .bytes = 5, .state = "complete", .profile_keys = 2};
    assert_int_equal(sg_store_snapshot_commit(s, &t, &err), 0);
    sg_store_free(s);
    /* the ledger of builds whose events were pruned long ago */
    char sql[512];
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
             "INSERT INTO ledger(source, job, number, accepted_at, event_id) "
             "SELECT 'jenkins-old', 'team/job-' || (i %% 97), i, 1600000000000 + i, 1 FROM n",
             BULK_LEDGER);
    sqlite_exec(path, sql);
    return held;
}

/* Everything a gate needs goes over in one transaction; the copied events
 * get new ids above the source's, the ledger's rows follow them; a second
 * copy is refused. */
static void copy_into_postgresql_pg(void **state)
{
    fixture *f = *state;
    char src[96];
    snprintf(src, sizeof src, "%s/src.db", f->dir);
    int64_t last = 0, snap = 0;
    int64_t held = copy_source(src, &last, &snap);
    sg_store_copy_stats st;
    memset(&st, 0x5a, sizeof st);
    sg_error err = {0};
    if (sg_store_copy(src, f->db, "tester@host", &st, &err))
        fail_msg("copy: %s", err.msg);
    assert_int_equal(st.ledger, BULK_LEDGER + 7);
    assert_int_equal(st.caught_up, 1);
    assert_int_equal(st.held, 2);
    assert_int_equal(st.pending, 1);
    assert_int_equal(st.dead, 1);
    assert_int_equal(st.docker, 1);
    assert_int_equal(st.first_id, last + 1);
    assert_int_equal(st.last_id, last + 5);
    assert_int_equal(st.snapshot_from, snap);
    assert_int_equal(st.snapshot_keys, 2);
    assert_int_equal(st.baseline_kept, 0);

    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event"), 5);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM ledger"), BULK_LEDGER + 7);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM ledger WHERE event_id = 1"),
                     BULK_LEDGER + 1); /* 'done' 1 was event 1, not copied: kept */
    /* the ledger's rows of copied events name their new ids */
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM ledger l JOIN event e ON "
                                    "e.id = l.event_id AND e.job = l.job AND "
                                    "e.number = l.number"),
                     5);
    /* the first held event: the source's order, every byte of its body */
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT id FROM event WHERE job = 'held' AND number = 1");
    assert_int_equal(raw_int(f->db, sql), last + 1);
    (void)held;
    assert_int_equal(raw_int(f->db, "SELECT octet_length(body) FROM event WHERE job = 'held' "
                                    "AND number = 1"),
                     BIG_BODY);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event WHERE job = 'held' AND number = 1 "
                                    "AND get_byte(body, 0) = 0 AND get_byte(body, 1) = 7 AND "
                                    "get_byte(body, 3145727) = (3145727 * 7 + 1535) % 256"),
                     1);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event WHERE job = 'pend' AND "
                                    "state = 'pending' AND qgen = 3 AND attempts = 2 AND "
                                    "next_attempt_at = 1700000005555 AND last_error = "
                                    "'503 from the downstream'::bytea AND build_ts = "
                                    "1600000000001 AND path = '/webhooks/x?y=1'::bytea AND "
                                    "claimed_by IS NULL"),
                     1);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event WHERE tag = 'v1' AND "
                                    "digest = 'sha256:abc' AND kind = 'unknown'"),
                     1);
    /* identity and mark past the copied ids */
    assert_int_equal(raw_int(f->db, "SELECT upto FROM ledger_mark"), last + 5);
    assert_int_equal(raw_int(f->db, "SELECT nextval(pg_get_serial_sequence('event', 'id'))"),
                     last + 6);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM audit WHERE action = 'copy' AND "
                                    "actor = 'tester@host'"),
                     1);

    /* the baseline, its index (the running build too), its node */
    sg_store *to = open_ok(f->db, NULL);
    assert_int_equal(baseline(to), st.snapshot_id);
    sg_index_counts c;
    assert_int_equal(sg_store_index_counts(to, st.snapshot_id, &c, &err), 0);
    assert_int_equal(c.jobs, 2);
    assert_int_equal(c.posted, 2);
    assert_int_equal(c.docker_tags, 2);
    assert_int_equal(raw_int(f->db, "SELECT last_running FROM build_index WHERE "
                                    "job = 'org/lib'::bytea"),
                     42);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM docker_tag WHERE tag = 'v0'::bytea "
                                    "AND digest IS NULL"),
                     1);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM snapshot_key WHERE expire_at_ms = "
                                    "1800000000000 AND payload = '\\x000102'::bytea"),
                     1);
    assert_int_equal(raw_int(f->db, "SELECT keys FROM snapshot_node"), 2);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM snapshot WHERE state = 'complete' AND "
                                    "profile_keys = 2 AND key_count = 2 AND taken_at = "
                                    "1700000000000"),
                     1);
    sg_store_free(to);

    /* the source: its ledger caught up, nothing else */
    sg_store *from = open_ok(src, NULL);
    int64_t mark = 0, n = 0;
    assert_int_equal(sg_store_ledger_mark(from, &mark, &err), 0);
    assert_int_equal(mark, last);
    assert_int_equal(sg_store_last_event_id(from, &n, &err), 0);
    assert_int_equal(n, last);
    sg_store_free(from);

    /* into a store that is not empty: refused, nothing added */
    memset(&st, 0x5a, sizeof st);
    sg_store_copy_stats untouched = st;
    assert_int_equal(sg_store_copy(src, f->db, NULL, &st, &err), SG_EREFUSED);
    assert_non_null(strstr(err.msg, "5 events and"));
    assert_non_null(strstr(err.msg, f->dbname));
    assert_memory_equal(&st, &untouched, sizeof st);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event"), 5);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM snapshot"), 1);
}

/* A copy that fails half-way leaves nothing in the destination: a job
 * name PostgreSQL's UTF-8 refuses, in the ledger copied after the
 * events. */
static void copy_fails_whole_pg(void **state)
{
    fixture *f = *state;
    char src[96];
    snprintf(src, sizeof src, "%s/src.db", f->dir);
    int64_t last = 0, snap = 0;
    copy_source(src, &last, &snap);
    sqlite_exec(src, "INSERT INTO ledger(source, job, number, accepted_at, event_id) "
                     "VALUES ('jenkins-prod', CAST(x'ff' AS TEXT), 1, 1, 1)");
    sg_store_copy_stats st;
    sg_error err = {0};
    assert_int_equal(sg_store_copy(src, f->db, NULL, &st, &err), SG_ESTORE);
    if (!strstr(err.msg, "copying the ledger into postgresql://stormguard@"))
        fail_msg("%s", err.msg);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event"), 0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM ledger"), 0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM snapshot"), 0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM audit"), 0);
    /* and the store takes a copy afterwards (the connection was left idle) */
    sqlite_exec(src, "DELETE FROM ledger WHERE number = 1 AND source = 'jenkins-prod' AND "
                     "job = CAST(x'ff' AS TEXT)");
    assert_int_equal(sg_store_copy(src, f->db, NULL, &st, &err), 0);
    assert_int_equal(st.held, 2);
}
#endif

/* store copy's arguments: an SQLite source that exists, a postgresql://
 * destination; a missing source is not created. */
static void copy_arguments(void **state)
{
    fixture *f = *state;
    sg_store_copy_stats st;
    sg_error err = {0};
    assert_int_equal(
        sg_store_copy("postgresql://u:pw@h/db", "postgresql://u@h/db", NULL, &st, &err), SG_EUSAGE);
    assert_null(strstr(err.msg, "pw"));
    assert_int_equal(sg_store_copy(f->db, f->db, NULL, &st, &err), SG_EUSAGE);
    char missing[96];
    snprintf(missing, sizeof missing, "%s/missing.db", f->dir);
    assert_int_equal(sg_store_copy(missing, "postgresql://u@127.0.0.1:1/db", NULL, &st, &err),
                     SG_ENOTFOUND);
    assert_non_null(strstr(err.msg, missing));
    assert_int_equal(access(missing, F_OK), -1);
    /* an SQLite file that is no store */
    sqlite_exec(f->db, "CREATE TABLE t(x)");
    assert_int_equal(sg_store_copy(f->db, "postgresql://u@127.0.0.1:1/db", NULL, &st, &err),
                     SG_EUSAGE);
    assert_non_null(strstr(err.msg, "no stormguard store"));
    /* a store, but the destination unreachable: named without its password */
    remove(f->db);
    sg_store_free(open_ok(f->db, NULL));
    assert_int_equal(
        sg_store_copy(f->db, "postgresql://u:s3cret-pw@127.0.0.1:1/db", NULL, &st, &err),
        SG_ESTORE);
    assert_null(strstr(err.msg, "s3cret-pw"));
    assert_non_null(strstr(err.msg, "postgresql://u@127.0.0.1:1/db"));
}

/* A replay told after the insert (the ledger's key lost to another
 * replica's) is rewritten in place: kind, reason, state and times. */
static void event_replayed(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    int64_t id = put_event(s, "pending", "a", 7, 3);
    sg_event_row r = {.id = id,
                      .kind = "replay",
                      .reason = "ledger",
                      .state = SG_STATE_SUPPRESSED,
                      .done_at = 4242};
    assert_int_equal(sg_store_event_replayed(s, &r, &err), 0);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM event WHERE id = %lld AND kind = 'replay' AND reason = "
             "'ledger' AND state = 'suppressed' AND done_at = 4242 AND qgen = 0 AND "
             "next_attempt_at IS NULL AND would IS NULL",
             (long long)id);
    assert_int_equal(raw_int(f->db, sql), 1);
    pending_seen p = {0};
    assert_int_equal(sg_store_events_pending(s, 0, 0, 10, collect_pending, &p, &err), 0);
    assert_int_equal(p.n, 0);
    sg_store_free(s);
}

typedef struct outcome_seen {
    sg_event_state state;
    int64_t attempts, next_attempt_at, done_at;
    char error[64];
    bool error_null;
} outcome_seen;

static int read_outcome(void *ud, const sg_event_row *r)
{
    outcome_seen *o = ud;
    o->state = r->state;
    o->attempts = r->attempts;
    o->next_attempt_at = r->next_attempt_at;
    o->done_at = r->done_at;
    o->error_null = !r->last_error;
    snprintf(o->error, sizeof o->error, "%s", r->last_error ? r->last_error : "");
    return 1;
}

static outcome_seen outcome_of(sg_store *s, const char *job)
{
    outcome_seen o = {0};
    sg_error err = {0};
    assert_int_equal(sg_store_events_query(s, NULL, NULL, job, 1, read_outcome, &o, &err), 0);
    return o;
}

/* Outcomes in one call are each recorded as sg_store_event_update records
 * one, the last of an event's winning; an error's bytes (quotes, braces,
 * commas, backslashes, a byte no UTF-8 has) come back as they went. */
static void events_update_batch(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    int64_t a = put_event(s, "pending", "a", 1, 0), b = put_event(s, "pending", "b", 1, 0);
    int64_t c = put_event(s, "pending", "c", 1, 0);
    const char *odd = "502 \"bad\", {x} \\ \xff end";
    sg_event_outcome outs[] = {
        {.id = a,
         .state = SG_STATE_PENDING,
         .attempts = 1,
         .next_attempt_at = 5000,
         .last_error = "first try"},
        {.id = b, .state = SG_STATE_FORWARDED, .attempts = 1, .done_at = 6000},
        {.id = c,
         .state = SG_STATE_PENDING,
         .attempts = 3,
         .next_attempt_at = 7000,
         .last_error = odd},
        {.id = a, .state = SG_STATE_FORWARDED, .attempts = 2, .done_at = 8000},
    };
    assert_int_equal(sg_store_begin(s, &err), 0);
    assert_int_equal(sg_store_events_update(s, outs, 4, &err), 0);
    assert_int_equal(sg_store_commit(s, &err), 0);
    outcome_seen oa = outcome_of(s, "a"), ob = outcome_of(s, "b"), oc = outcome_of(s, "c");
    assert_int_equal(oa.state, SG_STATE_FORWARDED);
    assert_int_equal(oa.attempts, 2);
    assert_int_equal(oa.next_attempt_at, 0);
    assert_int_equal(oa.done_at, 8000);
    assert_true(oa.error_null);
    assert_int_equal(ob.state, SG_STATE_FORWARDED);
    assert_int_equal(ob.done_at, 6000);
    assert_int_equal(oc.state, SG_STATE_PENDING);
    assert_int_equal(oc.attempts, 3);
    assert_int_equal(oc.next_attempt_at, 7000);
    assert_int_equal(oc.done_at, 0);
    assert_string_equal(oc.error, odd);
    sg_store_free(s);
}

/* A batch journaled in one go: ids in order, each build into the ledger
 * unless it was there; a row the schema refuses fails the whole batch. */
static void events_journal_batch(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    bool added;
    assert_int_equal(sg_store_ledger_add(s, "jenkins-prod", "a", 2, 0, 1000, &added, &err), 0);
    sg_event_row rows[4];
    for (int i = 0; i < 4; i++)
        rows[i] = new_pending("a", 1 + i, "{}", 2);
    sg_event_insert ins[4] = {{.row = &rows[0], .ledger = true},
                              {.row = &rows[1], .ledger = true, .added = true},
                              {.row = &rows[2], .added = true},
                              {.row = &rows[3], .ledger = true}};
    assert_int_equal(sg_store_begin(s, &err), 0);
    assert_int_equal(sg_store_events_journal(s, ins, 4, &err), 0);
    assert_int_equal(sg_store_commit(s, &err), 0);
    assert_true(rows[0].id > 0 && rows[1].id > rows[0].id && rows[2].id > rows[1].id &&
                rows[3].id > rows[2].id);
    assert_true(ins[0].added);
    assert_false(ins[1].added); /* build 2 was in the ledger */
    assert_false(ins[2].added); /* not for the ledger */
    assert_true(ins[3].added);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM ledger"), 3);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event"), 4);
    /* one bad row: none of the batch stays */
    rows[1].kind = "bogus";
    rows[0].number = rows[1].number = 10;
    assert_int_equal(sg_store_begin(s, &err), 0);
    assert_int_equal(sg_store_events_journal(s, ins, 2, &err), SG_ESTORE);
    sg_store_rollback(s);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event"), 4);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM ledger"), 3);
    /* and the connection takes the next batch */
    rows[0].number = 11;
    assert_int_equal(sg_store_begin(s, &err), 0);
    assert_int_equal(sg_store_events_journal(s, ins, 1, &err), 0);
    assert_int_equal(sg_store_commit(s, &err), 0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM event"), 5);
    /* the same build twice in one batch: the first goes into the ledger */
    rows[0].number = rows[1].number = 20;
    rows[1].kind = "new";
    ins[0].added = false; /* the opposite of what the call must write */
    ins[1].added = true;
    assert_int_equal(sg_store_begin(s, &err), 0);
    assert_int_equal(sg_store_events_journal(s, ins, 2, &err), 0);
    assert_int_equal(sg_store_commit(s, &err), 0);
    assert_true(ins[0].added);
    assert_false(ins[1].added);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM ledger WHERE number = 20"), 1);
    sg_store_free(s);
}

/* Replicas are a shared store's: an SQLite store has none, and says so. */
static void replicas_not_on_sqlite(void **state)
{
    fixture *f = *state;
    sg_store *s = open_ok(f->db, NULL);
    sg_error err = {0};
    pending_seen x = {0};
    assert_int_equal(sg_store_events_claim(s, "r", 10, collect_pending, &x, &err), SG_EINVAL);
    assert_non_null(strstr(err.msg, "is not shared"));
    int64_t released;
    assert_int_equal(sg_store_replica_renew(s, "r", 5000, &released, &err), SG_EINVAL);
    sg_store_claim *c = NULL;
    assert_int_equal(sg_store_claim_new(f->db, &c, &err), 0);
    assert_null(sg_store_claim_name(c));
    sg_store_claim_free(c);
    sg_store_free(s);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

#ifdef SG_TEST_PG
int main(void)
{
    /* the contract's own tests; those of SQLite's files, locks and
     * migrations stay with test_store */
    const struct CMUnitTest tests[] = {
        T(migrate_from_empty_pg),
        T(readonly_open),
        T(snapshot_roundtrip),
        T(snapshots_are_separate),
        T(no_complete_snapshot),
        T(abort_leaves_nothing),
        T(snapshot_nodes),
        T(prune_keeps_latest_complete),
        T(prune_by_count),
        T(prune_then_snapshot_again),
        T(suspect_is_never_baseline),
        T(last_good_reference),
        T(prune_never_keeps_suspect_as_good),
        T(audit),
        T(event_states),
        T(held_release_order),
        T(held_release_chunks),
        T(events_prune),
        T(episodes),
        T(sample_keys),
        T(claims_are_replicas_pg),
        T(claims_take_heads_pg),
        T(leases_run_out_pg),
        T(modes_published_pg),
        T(listener_hears_modes_pg),
        T(watcher_lock_pg),
        T(events_journal_claims_heads_pg),
        T(outcomes_tell_followers_pg),
        T(events_journal_big_batch_pg),
        T(claims_quick_on_a_backlog_pg),
        T(analyze_once_grown_pg),
        T(backlog_after_idle_analyze_pg),
        T(claim_window_pg),
        T(claims_past_another_replicas_jobs_pg),
        T(claims_beside_another_claim_pg),
        T(outcomes_quick_on_a_grown_table_pg),
        T(begin_with_first_statement_pg),
        T(job_locks_pg),
        T(outcomes_fenced_by_claims_pg),
        T(reconnect_backs_off_pg),
        T(event_replayed),
        T(events_journal_batch),
        T(events_update_batch),
        T(url_errors_name_no_password),
        T(copy_into_postgresql_pg),
        T(copy_fails_whole_pg),
    };
    if (pg_fixture_start(&g_pg) != 0)
        return 1;
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    pg_fixture_stop(&g_pg);
    return failed;
}
#else
int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sync_mode),
        cmocka_unit_test(migrations_table),
        T(open_creates_private_file),
        T(open_creates_directory),
        T(second_open_keeps_locks),
        T(migrate_from_empty),
        T(snapshot_nodes),
        T(migrate_from_each_version),
        T(migration_005_keeps_events),
        T(newer_version_refused),
        T(corrupt_file),
        T(open_under_a_file_fails),
        T(lock_is_one_daemon_per_store),
        T(open_readonly_directory_fails),
        T(readonly_open),
        T(readonly_needs_migrated_store),
        T(snapshot_roundtrip),
        T(snapshots_are_separate),
        T(no_complete_snapshot),
        T(abort_leaves_nothing),
        T(prune_keeps_latest_complete),
        T(prune_by_count),
        T(prune_then_snapshot_again),
        T(posted_builds_one_row_per_job),
        T(migration_007_packs_posted),
        T(suspect_is_never_baseline),
        T(last_good_reference),
        T(prune_never_keeps_suspect_as_good),
        T(audit),
        T(event_states),
        T(held_release_order),
        T(held_release_chunks),
        T(events_prune),
        T(snapshot_lets_writers_in),
        T(snapshot_abort_after_slices),
        T(prune_beside_a_busy_journal),
        T(episodes),
        T(sample_keys),
        T(replicas_not_on_sqlite),
        T(event_replayed),
        T(events_journal_batch),
        T(events_update_batch),
        T(copy_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
