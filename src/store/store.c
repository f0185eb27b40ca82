/* The SQLite store (store.h): one connection, explicit pragmas, migrations
 * from the embedded schema, prepared statements for the hot paths. */
#include "stormguard/store/store.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stormguard/base/util.h"
#include "store_int.h"

static const char *const statement_sql[ST_COUNT] = {
    [ST_ADD_KEY] = "INSERT INTO snapshot_key(id, snapshot_id, db, key, expire_at_ms, payload) "
                   "VALUES (?, ?, ?, ?, ?, ?)", /* bind_key; flush_keys for KEY_BATCH rows */
    [ST_CURSOR] =
        "INSERT INTO build_index(snapshot_id, source, job, cursor_ms) "
        "VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO UPDATE SET cursor_ms = excluded.cursor_ms",
    [ST_CI_COMPLETED] = "INSERT INTO build_index(snapshot_id, source, job, last_completed) "
                        "VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO UPDATE SET "
                        "last_completed = excluded.last_completed",
    [ST_CI_RUNNING] = "INSERT INTO build_index(snapshot_id, source, job, last_running) "
                      "VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO UPDATE SET "
                      "last_running = excluded.last_running",
    [ST_POSTED] = "INSERT OR IGNORE INTO posted(snapshot_id, source, job, number) "
                  "VALUES (?1, ?2, ?3, ?4)",
    [ST_DOCKER] =
        "INSERT OR REPLACE INTO docker_tag(snapshot_id, account, repository, tag, digest) "
        "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_EVENT_INSERT] = "INSERT INTO event(received_at, source, job, number, build_ts, kind, "
                        "reason, state, method, path, headers, body, next_attempt_at, done_at, "
                        "qgen, last_error) "
                        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
                        "?16)",
    [ST_EVENT_UPDATE] = "UPDATE event SET state = ?1, attempts = ?2, next_attempt_at = ?3, "
                        "last_error = ?4, done_at = ?5 WHERE id = ?6",
    [ST_LEDGER_ADD] = "INSERT OR IGNORE INTO ledger(source, job, number, accepted_at, event_id) "
                      "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_LEDGER_HAS] = "SELECT 1 FROM ledger WHERE source = ?1 AND job = ?2 AND number = ?3",
};

/* A snapshot's keys have ids KEY_ID(snapshot, 0) .. KEY_ID(snapshot, n - 1)
 * (schema/001_snapshots.sql). */
#define KEY_ID(snapshot, seq) ((int64_t)(snapshot) << 32 | (int64_t)(seq))
#define KEY_ID_MAX_SEQ 0xffffffffLL

struct sg_key_iter {
    sg_store *store;
    sqlite3_stmt *st;
};

int sg_sync_mode_parse(const char *s, sg_sync_mode *out)
{
    if (!strcasecmp(s, "normal"))
        *out = SG_SYNC_NORMAL;
    else if (!strcasecmp(s, "full"))
        *out = SG_SYNC_FULL;
    else
        return SG_EINVAL;
    return 0;
}

const char *sg_sync_mode_name(sg_sync_mode m)
{
    return m == SG_SYNC_FULL ? "full" : "normal";
}

int sg_store_db_error(sg_store *s, sg_error *err, const char *doing)
{
    int sys = s->db ? sqlite3_system_errno(s->db) : 0;
    const char *msg = s->db ? sqlite3_errmsg(s->db) : "out of memory";
    if (sys && s->db && sqlite3_errcode(s->db) != SQLITE_FULL)
        return sg_error_set(err, SG_ESTORE, "%s %s: %s (%s)", doing, s->path, msg, strerror(sys));
    return sg_error_set(err, SG_ESTORE, "%s %s: %s", doing, s->path, msg);
}

int sg_store_exec(sg_store *s, const char *sql, sg_error *err, const char *doing)
{
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, doing);
    return 0;
}

static int pragma_int(sg_store *s, const char *sql, int *out, sg_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "reading store");
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return sg_store_db_error(s, err, "reading store");
    }
    *out = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return 0;
}

int sg_store_schema_version(sg_store *s)
{
    int v = -1;
    pragma_int(s, "PRAGMA user_version", &v, NULL);
    return v;
}

const char *sg_store_path(const sg_store *s)
{
    return s->path;
}

/* Creates the directory of path (one level, 0700) and the file with mode
 * 0600 before SQLite opens it: snapshots may hold session data. */
static int create_file(const char *path, sg_error *err)
{
    char *copy = sg_xstrdup(path);
    const char *dir = dirname(copy);
    struct stat st;
    if (stat(dir, &st) != 0 && mkdir(dir, 0700) != 0 && errno != EEXIST) {
        int e = errno;
        free(copy);
        return sg_error_set(err, SG_ESTORE, "creating store directory for %s: %s", path,
                            strerror(e));
    }
    free(copy);
    /* O_EXCL: only a file nobody has open is ever closed here. close() drops
     * every POSIX lock this process holds on the file, SQLite's included: a
     * second connection opened beside a live one would otherwise release the
     * first one's SHARED lock, and another process closing the database
     * would take it for the last user and delete the WAL under it. */
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == EEXIST
                   ? 0
                   : sg_error_set(err, SG_ESTORE, "opening store %s: %s", path, strerror(errno));
    close(fd);
    return 0;
}

static int migrate(sg_store *s, int target, sg_error *err)
{
    int current;
    int rc = pragma_int(s, "PRAGMA user_version", &current, err);
    if (rc)
        return sg_error_prefix(err, "not a stormguard store or corrupt");
    if (current > sg_migration_count)
        return sg_error_set(err, SG_EVERSION,
                            "store %s has schema version %d, newer than this stormguard "
                            "knows (%d): upgrade stormguard",
                            s->path, current, sg_migration_count);
    for (int v = current + 1; v <= target; v++) {
        const sg_migration *m = &sg_migrations[v - 1];
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", v);
        if ((rc = sg_store_exec(s, "BEGIN IMMEDIATE", err, "migrating store")) ||
            (rc = sg_store_exec(s, m->sql, err, "migrating store")) ||
            (rc = sg_store_exec(s, pragma, err, "migrating store")) ||
            (rc = sg_store_exec(s, "COMMIT", err, "migrating store"))) {
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return sg_error_prefix(err, "applying schema %s", m->name);
        }
    }
    return 0;
}

#define BUSY_TIMEOUT_MS 5000 /* how long a statement waits for another connection's lock */
#define EAGER_POLL_US 200

/* SQLite's own busy handler sleeps longer and longer between tries (up to
 * 100 ms): a writer would miss the short gaps another leaves between its
 * transactions (a snapshot between its slices, the journal between its
 * batches) and could wait for the whole busy timeout. The journal's writer,
 * and a snapshot while it writes, try every EAGER_POLL_US instead. (Not
 * every connection: the polling costs the busy gate a tenth of its
 * throughput, measured.) */
static int busy_eager(void *ud, int tries)
{
    (void)ud;
    if ((long)tries * EAGER_POLL_US >= BUSY_TIMEOUT_MS * 1000L)
        return 0;
    usleep(EAGER_POLL_US);
    return 1;
}

/* wait: how this connection waits for another's lock (the configured way),
 * or not at all */
void sg_store_set_busy(sg_store *s, bool wait)
{
    if (!wait)
        sqlite3_busy_timeout(s->db, 0);
    else if (s->eager)
        sqlite3_busy_handler(s->db, busy_eager, NULL);
    else
        sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
}

static int on_wal_commit(void *ud, sqlite3 *db, const char *name, int frames)
{
    (void)db;
    (void)name;
    ((sg_store *)ud)->wal_frames = frames;
    return SQLITE_OK;
}

int sg_store_open(const char *path, const sg_store_options *opt, sg_store **out, sg_error *err)
{
    static const sg_store_options defaults = {0};
    if (!opt)
        opt = &defaults;
    int rc;
    if (!opt->readonly && (rc = create_file(path, err)))
        return rc;

    sg_store *s = sg_xcalloc(1, sizeof *s);
    s->path = sg_xstrdup(path);
    s->sync = opt->synchronous;
    int flags = opt->readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    if (sqlite3_open_v2(path, &s->db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        rc = sg_store_db_error(s, err, "opening store");
        sg_store_free(s);
        return rc;
    }
    sqlite3_extended_result_codes(s->db, 1);
    char sync[64];
    snprintf(sync, sizeof sync, "PRAGMA synchronous = %s", sg_sync_mode_name(opt->synchronous));
    int target = opt->migrate_to > 0 && opt->migrate_to < sg_migration_count ? opt->migrate_to
                                                                             : sg_migration_count;
    s->eager = s->eager_opt = opt->eager_wait;
    sg_store_set_busy(s, true);
    if ((!opt->readonly &&
         (rc = sg_store_exec(s, "PRAGMA journal_mode = WAL", err, "opening store"))) ||
        (rc = sg_store_exec(s, sync, err, "configuring store")) ||
        (rc = sg_store_exec(s, "PRAGMA foreign_keys = ON", err, "configuring store")) ||
        (!opt->readonly && (rc = migrate(s, target, err)))) {
        sg_store_free(s);
        return rc;
    }
    char tune[96];
    if (rc == 0 && opt->cache_kib) {
        snprintf(tune, sizeof tune, "PRAGMA cache_size = -%d", opt->cache_kib);
        rc = sg_store_exec(s, tune, err, "configuring store");
    }
    if (rc == 0 && opt->checkpoint_pages > 0) {
        snprintf(tune, sizeof tune, "PRAGMA wal_autocheckpoint = %d", opt->checkpoint_pages);
        rc = sg_store_exec(s, tune, err, "configuring store");
    }
    if (rc == 0 && opt->checkpoint_pages < 0)
        sqlite3_wal_hook(s->db, on_wal_commit, s); /* replaces the auto-checkpoint */
    if (rc == 0 && opt->wal_limit_kib > 0) {
        snprintf(tune, sizeof tune, "PRAGMA journal_size_limit = %lld",
                 (long long)opt->wal_limit_kib * 1024);
        rc = sg_store_exec(s, tune, err, "configuring store");
    }
    if (rc) {
        sg_store_free(s);
        return rc;
    }
    if (opt->readonly) {
        int v;
        if ((rc = pragma_int(s, "PRAGMA user_version", &v, err))) {
            sg_store_free(s);
            return rc;
        }
        if (v != sg_migration_count) {
            rc = sg_error_set(err, SG_EVERSION,
                              "store %s has schema version %d, this stormguard needs %d: "
                              "open it once read-write to migrate",
                              path, v, sg_migration_count);
            sg_store_free(s);
            return rc;
        }
    }
    *out = s;
    return 0;
}

void sg_store_free(sg_store *s)
{
    if (!s)
        return;
    sg_store_snapshot_abort(s);
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    sqlite3_finalize(s->add_keys);
    sg_buf_free(&s->pending_bytes);
    if (s->db)
        sqlite3_close_v2(s->db);
    free(s->path);
    free(s);
}

sqlite3_stmt *sg_store_stmt(sg_store *s, int i, const char *sql, sg_error *err)
{
    if (!s->st[i]) {
        if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL) !=
            SQLITE_OK) {
            sg_store_db_error(s, err, "preparing a statement on");
            return NULL;
        }
    } else {
        sqlite3_reset(s->st[i]);
        sqlite3_clear_bindings(s->st[i]);
    }
    return s->st[i];
}

/* The cached statement i, reset and with its bindings cleared. */
static sqlite3_stmt *stmt(sg_store *s, int i, sg_error *err)
{
    return sg_store_stmt(s, i, statement_sql[i], err);
}

int sg_store_step_done(sg_store *s, sqlite3_stmt *st, sg_error *err, const char *doing)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return sg_store_db_error(s, err, doing);
    return 0;
}

int sg_store_query_int(sg_store *s, const char *sql, int64_t id, int64_t *out, sg_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "reading");
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : sg_store_db_error(s, err, "reading");
}

/* ---- snapshots ---- */

void sg_snapshot_info_close(sg_snapshot_info *i)
{
    free(i->reason);
    free(i->redis);
    free(i->redis_version);
    free(i->profile);
    free(i->selection);
    free(i->state);
    free(i->profile_pattern);
    free(i->suspect_reason);
    memset(i, 0, sizeof *i);
}

static int delete_snapshot(sg_store *s, int64_t id, sg_error *err);

/* Back to the configured synchronous mode after a snapshot's transaction. */
static void restore_sync(sg_store *s)
{
    s->eager = s->eager_opt;
    sg_store_set_busy(s, true);
    char sync[48];
    snprintf(sync, sizeof sync, "PRAGMA synchronous = %s", sg_sync_mode_name(s->sync));
    sg_store_exec(s, sync, NULL, "configuring store");
}

/* Binds one snapshot key as the statement's row at parameter base + 1. */
static void bind_key(sg_store *s, sqlite3_stmt *st, int base, int64_t id, int db, const void *key,
                     size_t key_len, int64_t expire_at_ms, const void *payload, size_t payload_len)
{
    sqlite3_bind_int64(st, base + 1, id);
    sqlite3_bind_int64(st, base + 2, s->snapshot_id);
    sqlite3_bind_int(st, base + 3, db);
    sqlite3_bind_blob64(st, base + 4, key_len ? key : "", key_len, SQLITE_STATIC);
    if (expire_at_ms > 0)
        sqlite3_bind_int64(st, base + 5, expire_at_ms);
    else
        sqlite3_bind_null(st, base + 5);
    sqlite3_bind_blob64(st, base + 6, payload, payload_len, SQLITE_STATIC);
}

static void bind_pending(sg_store *s, sqlite3_stmt *st, int base, const struct pending_key *k)
{
    const char *bytes = s->pending_bytes.p;
    bind_key(s, st, base, k->id, k->db, bytes + k->key_at, k->key_len, k->expire_at_ms,
             bytes + k->payload_at, k->payload_len);
}

/* Inserts the pending snapshot keys; the buffer is empty afterwards, also
 * after an error. */
static int flush_keys(sg_store *s, sg_error *err)
{
    int rc = 0;
    if (s->npending == KEY_BATCH) {
        if (!s->add_keys) {
            sg_buf sql = {0};
            sg_buf_printf(&sql, "INSERT INTO snapshot_key(id, snapshot_id, db, key, "
                                "expire_at_ms, payload) VALUES ");
            for (int i = 0; i < KEY_BATCH; i++)
                sg_buf_printf(&sql, "%s(?, ?, ?, ?, ?, ?)", i ? ", " : "");
            int prc =
                sqlite3_prepare_v3(s->db, sql.p, -1, SQLITE_PREPARE_PERSISTENT, &s->add_keys, NULL);
            sg_buf_free(&sql);
            if (prc != SQLITE_OK)
                rc = sg_store_db_error(s, err, "preparing a statement on");
        }
        for (int i = 0; rc == 0 && i < KEY_BATCH; i++)
            bind_pending(s, s->add_keys, 6 * i, &s->pending[i]);
        if (rc == 0)
            rc = sg_store_step_done(s, s->add_keys, err, "writing snapshot keys to");
    } else {
        for (int i = 0; i < s->npending && rc == 0; i++) {
            sqlite3_stmt *st = s->st[ST_ADD_KEY];
            if (!st && !(st = stmt(s, ST_ADD_KEY, err)))
                rc = SG_ESTORE;
            if (rc == 0) {
                bind_pending(s, st, 0, &s->pending[i]);
                rc = sg_store_step_done(s, st, err, "writing a snapshot key to");
            }
        }
    }
    s->npending = 0;
    s->pending_bytes.len = 0;
    return rc;
}

/* A snapshot is written in slices: one transaction holds the database's
 * write lock for at most SNAPSHOT_SLICE_S, then commits and lets the other
 * writers in (the gate's journal: every answer to the poller waits on one of
 * its commits) before it goes on. Until its last commit the snapshot's row
 * says 'partial', which no reader takes for a snapshot; an abort deletes
 * what the slices wrote. The slices commit at synchronous = NORMAL (no fsync
 * at commit; a checkpoint that copies their pages into the database syncs
 * it); the last commit's fsync (FULL) covers the WAL they left. Not OFF: a
 * checkpoint would then copy pages into the database file without a sync,
 * and the WAL that was the only durable copy could be started over. */
#define SNAPSHOT_SLICE_S 0.05
#define SNAPSHOT_YIELD_US 2000 /* the pause between slices */

int sg_store_snapshot_yield(sg_store *s, sg_error *err)
{
    assert(s->snapshot_id);
    s->snap_rows = 0;
    double now = sg_mono_s();
    if (now - s->snap_since < SNAPSHOT_SLICE_S)
        return 0;
    int rc = flush_keys(s, err);
    if (rc)
        return rc;
    /* the heartbeat: seconds so far, so that a prune elsewhere can tell a
     * snapshot still being written from one whose writer died */
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE snapshot SET seconds = (?2 - taken_at) / 1000.0 "
                           "WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "writing a snapshot to");
    sqlite3_bind_int64(st, 1, s->snapshot_id);
    sqlite3_bind_int64(st, 2, sg_now_ms());
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sg_store_db_error(s, err, "writing a snapshot to");
    rc = sg_store_exec(s, "COMMIT", err, "writing a snapshot to");
    if (rc)
        return rc;
    usleep(SNAPSHOT_YIELD_US);
    rc = sg_store_exec(s, "BEGIN IMMEDIATE", err, "writing a snapshot to");
    s->snap_since = sg_mono_s();
    return rc;
}

/* After a row: a slice ends after SNAPSHOT_SLICE_S; the clock is read every
 * 128 rows. */
static int snapshot_slice(sg_store *s, sg_error *err)
{
    return ++s->snap_rows < 128 ? 0 : sg_store_snapshot_yield(s, err);
}

int sg_store_snapshot_begin(sg_store *s, const sg_snapshot_info *m, int64_t *id, sg_error *err)
{
    assert(s->snapshot_id == 0);
    s->eager = true; /* never miss the gaps the journal leaves (restore_sync undoes it) */
    sg_store_set_busy(s, true);
    int rc = sg_store_exec(s, "PRAGMA synchronous = NORMAL", err, "starting a snapshot in");
    if (rc == 0)
        rc = sg_store_exec(s, "BEGIN IMMEDIATE", err, "starting a snapshot in");
    if (rc) {
        restore_sync(s);
        return rc;
    }
    s->snap_since = sg_mono_s();
    s->snap_rows = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO snapshot(taken_at, reason, redis, redis_version, profile, "
                           "selection, db, profile_pattern, state) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'partial')",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = sg_store_db_error(s, err, "starting a snapshot in");
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        restore_sync(s);
        return rc;
    }
    sqlite3_bind_int64(st, 1, m->taken_at_ms);
    sqlite3_bind_text(st, 2, m->reason, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, m->redis, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, m->redis_version, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, m->profile, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, m->selection, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 7, m->db);
    sqlite3_bind_text(st, 8, m->profile_pattern, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        rc = sg_store_db_error(s, err, "starting a snapshot in");
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        restore_sync(s);
        return rc;
    }
    s->snapshot_id = sqlite3_last_insert_rowid(s->db);
    s->key_seq = 0;
    *id = s->snapshot_id;
    return 0;
}

int sg_store_snapshot_add_key(sg_store *s, int db, const void *key, size_t key_len,
                              int64_t expire_at_ms, const void *payload, size_t payload_len,
                              sg_error *err)
{
    assert(s->snapshot_id);
    if (s->key_seq > KEY_ID_MAX_SEQ)
        return sg_error_set(err, SG_ESTORE, "snapshot holds more keys than a store can (%lld)",
                            KEY_ID_MAX_SEQ);
    assert(s->npending < KEY_BATCH);
    if (key_len + payload_len >= KEY_BATCH_BYTES) {
        /* a big value goes in as it is, not copied into the buffer first */
        int rc = flush_keys(s, err);
        sqlite3_stmt *st = s->st[ST_ADD_KEY];
        if (rc == 0 && !st && !(st = stmt(s, ST_ADD_KEY, err)))
            rc = SG_ESTORE;
        if (rc == 0) {
            bind_key(s, st, 0, KEY_ID(s->snapshot_id, s->key_seq++), db, key, key_len, expire_at_ms,
                     payload, payload_len);
            rc = sg_store_step_done(s, st, err, "writing a snapshot key to");
        }
        return rc ? rc : snapshot_slice(s, err);
    }
    struct pending_key *k = &s->pending[s->npending++];
    *k = (struct pending_key){.db = db,
                              .id = KEY_ID(s->snapshot_id, s->key_seq++),
                              .expire_at_ms = expire_at_ms,
                              .key_at = s->pending_bytes.len,
                              .key_len = key_len,
                              .payload_at = s->pending_bytes.len + key_len,
                              .payload_len = payload_len};
    sg_buf_append(&s->pending_bytes, key, key_len);
    sg_buf_append(&s->pending_bytes, payload, payload_len);
    int rc = 0;
    if (s->npending == KEY_BATCH || s->pending_bytes.len >= KEY_BATCH_BYTES)
        rc = flush_keys(s, err);
    return rc ? rc : snapshot_slice(s, err);
}

static int index_row(sg_store *s, int which, const char *a, size_t alen, const char *b, size_t blen,
                     int64_t n, sg_error *err)
{
    assert(s->snapshot_id);
    sqlite3_stmt *st = stmt(s, which, err);
    if (!st)
        return SG_ESTORE;
    sqlite3_bind_int64(st, 1, s->snapshot_id);
    sqlite3_bind_text(st, 2, a, (int)alen, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, b, (int)blen, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, n);
    int rc = sg_store_step_done(s, st, err, "writing the build index to");
    return rc ? rc : snapshot_slice(s, err);
}

int sg_store_index_cursor(sg_store *s, const char *source, size_t source_len, const char *job,
                          size_t job_len, int64_t cursor_ms, sg_error *err)
{
    return index_row(s, ST_CURSOR, source, source_len, job, job_len, cursor_ms, err);
}

int sg_store_index_ci(sg_store *s, const char *source, size_t source_len, const char *job,
                      size_t job_len, bool running, int64_t number, sg_error *err)
{
    return index_row(s, running ? ST_CI_RUNNING : ST_CI_COMPLETED, source, source_len, job, job_len,
                     number, err);
}

int sg_store_index_posted(sg_store *s, const char *source, size_t source_len, const char *job,
                          size_t job_len, int64_t number, sg_error *err)
{
    return index_row(s, ST_POSTED, source, source_len, job, job_len, number, err);
}

int sg_store_index_docker(sg_store *s, const char *account, size_t account_len,
                          const char *repository, size_t repository_len, const char *tag,
                          size_t tag_len, const char *digest, size_t digest_len, sg_error *err)
{
    assert(s->snapshot_id);
    sqlite3_stmt *st = stmt(s, ST_DOCKER, err);
    if (!st)
        return SG_ESTORE;
    sqlite3_bind_int64(st, 1, s->snapshot_id);
    sqlite3_bind_text(st, 2, account, (int)account_len, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, repository, (int)repository_len, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, tag, (int)tag_len, SQLITE_STATIC);
    if (digest)
        sqlite3_bind_text(st, 5, digest, (int)digest_len, SQLITE_STATIC);
    int rc = sg_store_step_done(s, st, err, "writing the build index to");
    return rc ? rc : snapshot_slice(s, err);
}

int sg_store_snapshot_commit(sg_store *s, const sg_snapshot_info *t, sg_error *err)
{
    assert(s->snapshot_id);
    /* A snapshot is what a flush deletes against: its last commit reaches
     * the disk (WAL fsync, which covers the slices before it) whatever the
     * store's synchronous setting, so a power loss right after a flush
     * cannot take the snapshot with it. (The setting cannot change inside a
     * transaction, hence the last slice's commit first.) */
    int rc;
    if ((rc = flush_keys(s, err)) ||
        (rc = sg_store_exec(s, "COMMIT", err, "committing a snapshot to")) ||
        (rc = sg_store_exec(s, "PRAGMA synchronous = FULL", err, "committing a snapshot to")) ||
        (rc = sg_store_exec(s, "BEGIN IMMEDIATE", err, "committing a snapshot to")))
        return rc;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE snapshot SET key_count = ?1, bytes = ?2, vanished = ?3, "
                           "seconds = ?4, state = ?5, profile_keys = CASE WHEN profile_pattern "
                           "IS NULL THEN NULL ELSE ?7 END, suspect_reason = ?8 WHERE id = ?6",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "finishing a snapshot in");
    sqlite3_bind_int64(st, 1, t->key_count);
    sqlite3_bind_int64(st, 2, t->bytes);
    sqlite3_bind_int64(st, 3, t->vanished);
    sqlite3_bind_double(st, 4, t->seconds);
    sqlite3_bind_text(st, 5, t->state ? t->state : "complete", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, s->snapshot_id);
    sqlite3_bind_int64(st, 7, t->profile_keys);
    sqlite3_bind_text(st, 8, t->suspect_reason, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sg_store_db_error(s, err, "finishing a snapshot in");
    if (sqlite3_changes(s->db) != 1)
        return sg_error_set(err, SG_ESTORE,
                            "snapshot %lld was deleted from %s while it was being written "
                            "(pruned by another stormguard?)",
                            (long long)s->snapshot_id, s->path);
    if ((rc = sg_store_exec(s, "COMMIT", err, "committing a snapshot to")))
        return rc;
    s->snapshot_id = 0;
    restore_sync(s);
    return 0;
}

void sg_store_snapshot_abort(sg_store *s)
{
    if (!s->snapshot_id)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        if (s->st[i])
            sqlite3_reset(s->st[i]);
    if (s->add_keys)
        sqlite3_reset(s->add_keys);
    s->npending = 0;
    s->pending_bytes.len = 0;
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    /* what earlier slices committed; if even this fails (the disk is full,
     * say), the row stays 'partial': never read, pruned later */
    sg_error ignored;
    delete_snapshot(s, s->snapshot_id, &ignored);
    s->snapshot_id = 0;
    restore_sync(s);
}

int sg_store_index_counts(sg_store *s, int64_t id, sg_index_counts *out, sg_error *err)
{
    int rc;
    if ((rc = sg_store_query_int(s, "SELECT count(*) FROM build_index WHERE snapshot_id = ?", id,
                                 &out->jobs, err)) ||
        (rc = sg_store_query_int(s, "SELECT count(*) FROM posted WHERE snapshot_id = ?", id,
                                 &out->posted, err)) ||
        (rc = sg_store_query_int(s, "SELECT count(*) FROM docker_tag WHERE snapshot_id = ?", id,
                                 &out->docker_tags, err)))
        return rc;
    return 0;
}

#define SNAPSHOT_COLUMNS                                                                           \
    "id, taken_at, reason, redis, redis_version, profile, selection, key_count, bytes, "           \
    "vanished, seconds, state, db, profile_pattern, profile_keys, suspect_reason"

static char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? sg_xstrdup((const char *)t) : NULL;
}

static void read_info(sqlite3_stmt *st, sg_snapshot_info *i)
{
    i->id = sqlite3_column_int64(st, 0);
    i->taken_at_ms = sqlite3_column_int64(st, 1);
    i->reason = col_text(st, 2);
    i->redis = col_text(st, 3);
    i->redis_version = col_text(st, 4);
    i->profile = col_text(st, 5);
    i->selection = col_text(st, 6);
    i->key_count = sqlite3_column_int64(st, 7);
    i->bytes = sqlite3_column_int64(st, 8);
    i->vanished = sqlite3_column_int64(st, 9);
    i->seconds = sqlite3_column_double(st, 10);
    i->state = col_text(st, 11);
    i->db = sqlite3_column_int(st, 12);
    i->profile_pattern = col_text(st, 13);
    i->profile_keys =
        sqlite3_column_type(st, 14) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 14);
    i->suspect_reason = col_text(st, 15);
}

int sg_store_snapshot_list(sg_store *s, sg_snapshot_info **out, size_t *count, sg_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT " SNAPSHOT_COLUMNS " FROM snapshot ORDER BY id DESC", -1,
                           &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "listing snapshots in");
    sg_snapshot_info *list = NULL;
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        list = sg_xrealloc(list, (n + 1) * sizeof *list);
        memset(&list[n], 0, sizeof *list);
        read_info(st, &list[n++]);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        sg_snapshot_list_free(list, n);
        return sg_store_db_error(s, err, "listing snapshots in");
    }
    *out = list;
    *count = n;
    return 0;
}

void sg_snapshot_list_free(sg_snapshot_info *list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        sg_snapshot_info_close(&list[i]);
    free(list);
}

int sg_store_snapshot_get(sg_store *s, int64_t id, sg_snapshot_info *out, sg_error *err)
{
    sqlite3_stmt *st;
    const char *sql = id ? "SELECT " SNAPSHOT_COLUMNS " FROM snapshot WHERE id = ?"
                         : "SELECT " SNAPSHOT_COLUMNS " FROM snapshot WHERE state = 'complete' "
                           "ORDER BY id DESC LIMIT 1";
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "reading snapshots in");
    if (id)
        sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        read_info(st, out);
        sqlite3_finalize(st);
        return 0;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sg_store_db_error(s, err, "reading snapshots in");
    if (id)
        return sg_error_set(err, SG_ENOTFOUND, "no snapshot %lld in %s", (long long)id, s->path);
    return sg_error_set(err, SG_ENOTFOUND, "no complete snapshot in %s", s->path);
}

int sg_store_last_good(sg_store *s, const char *redis, int db, const char *profile_pattern,
                       int64_t *id, int64_t *profile_keys, sg_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT id, profile_keys FROM snapshot WHERE state = 'complete' AND "
                           "redis = ?1 AND db = ?2 AND profile_pattern = ?3 AND profile_keys IS "
                           "NOT NULL ORDER BY id DESC LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "reading snapshots in");
    sqlite3_bind_text(st, 1, redis, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, db);
    sqlite3_bind_text(st, 3, profile_pattern, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        *profile_keys = sqlite3_column_int64(st, 1);
    } else if (rc == SQLITE_DONE) {
        *id = 0;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE
               ? 0
               : sg_store_db_error(s, err, "reading snapshots in");
}

/* Deletes one snapshot: its key range, then its row (the index tables
 * follow by ON DELETE CASCADE). */
/* Deletes snapshot id in slices of DELETE_SLICE keys, each its own
 * transaction, so the gate's journal commits in between (a million keys take
 * seconds to delete). The row turns 'partial' first, in a transaction of its
 * own, so that nothing reads a half-deleted snapshot, and a crash midway
 * leaves a partial row that the next prune takes. Outside any transaction. */
#define DELETE_SLICE 20000

/* (a statement without ?2 ignores b) */
static int step_sql(sg_store *s, const char *sql, int64_t a, int64_t b, const char *doing,
                    sg_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, doing);
    sqlite3_bind_int64(st, 1, a);
    sqlite3_bind_int64(st, 2, b);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sg_store_db_error(s, err, doing);
}

static int delete_snapshot(sg_store *s, int64_t id, sg_error *err)
{
    const char *doing = "deleting a snapshot in";
    /* many short transactions: like a snapshot's slices, they must not miss
     * the gaps a busy journal leaves */
    bool was_eager = s->eager;
    s->eager = true;
    sg_store_set_busy(s, true);
    int64_t end = KEY_ID(id, KEY_ID_MAX_SEQ); /* the last key id this snapshot can have */
    int rc = step_sql(s, "UPDATE snapshot SET state = 'partial' WHERE id = ?1", id, 0, doing, err);
    for (int64_t from = KEY_ID(id, 0); rc == 0; from += DELETE_SLICE) {
        int64_t to = end - from < DELETE_SLICE ? end : from + DELETE_SLICE - 1;
        rc = step_sql(s, "DELETE FROM snapshot_key WHERE id >= ?1 AND id <= ?2", from, to, doing,
                      err);
        if (rc == 0 && (to == end || sqlite3_changes(s->db) < DELETE_SLICE)) {
            /* a short slice: keys are dense from 0, unless a crash left
             * gaps; one range delete of the rest settles it */
            if (to < end)
                rc = step_sql(s, "DELETE FROM snapshot_key WHERE id > ?1 AND id <= ?2", to, end,
                              doing, err);
            break;
        }
    }
    /* the build index rows go with the row (ON DELETE CASCADE) */
    if (rc == 0)
        rc = step_sql(s, "DELETE FROM snapshot WHERE id = ?1", id, 0, doing, err);
    s->eager = was_eager;
    sg_store_set_busy(s, true);
    return rc;
}

#define PARTIAL_GRACE_MS (10 * 60 * 1000LL)

int sg_store_snapshot_prune(sg_store *s, int keep, int64_t max_age_s, int64_t *pruned,
                            sg_error *err)
{
    /* Never the latest complete snapshot (what `restore latest` takes) nor the
     * latest complete one with a profile (the index baseline, sg_store_baseline):
     * a suspect or partial snapshot is neither, however new. */
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            s->db,
            "SELECT id FROM snapshot WHERE id != coalesce((SELECT max(id) FROM snapshot WHERE "
            "state = 'complete'), 0) AND id != coalesce((SELECT max(id) FROM snapshot WHERE "
            "state = 'complete' AND profile != 'none'), 0) AND ((?1 > 0 AND id NOT IN (SELECT "
            "id FROM snapshot ORDER BY id DESC LIMIT ?1)) OR (?2 > 0 AND taken_at < ?3)) "
            "AND NOT (state = 'partial' AND taken_at + CAST(seconds * 1000 AS INTEGER) > ?4)",
            -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "pruning snapshots in");
    sqlite3_bind_int(st, 1, keep);
    sqlite3_bind_int64(st, 2, max_age_s);
    sqlite3_bind_int64(st, 3, sg_now_ms() - max_age_s * 1000);
    /* a partial snapshot whose writer wrote a slice (its heartbeat: taken_at
     * + seconds) within this may still be being written, by another
     * process: the daemon's periodic one, a flush's */
    sqlite3_bind_int64(st, 4, sg_now_ms() - PARTIAL_GRACE_MS);
    int64_t *ids = NULL;
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ids = sg_xrealloc(ids, (n + 1) * sizeof *ids);
        ids[n++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(ids);
        return sg_store_db_error(s, err, "pruning snapshots in");
    }
    rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = delete_snapshot(s, ids[i], err);
    free(ids);
    if (rc == 0)
        *pruned = (int64_t)n;
    return rc;
}

int sg_store_keys_open(sg_store *s, int64_t snapshot_id, sg_key_iter **out, sg_error *err)
{
    sg_key_iter *it = sg_xcalloc(1, sizeof *it);
    it->store = s;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT db, key, expire_at_ms, payload FROM snapshot_key "
                           "WHERE id BETWEEN ?1 AND ?2 ORDER BY id",
                           -1, &it->st, NULL) != SQLITE_OK) {
        free(it);
        return sg_store_db_error(s, err, "reading snapshot keys from");
    }
    sqlite3_bind_int64(it->st, 1, KEY_ID(snapshot_id, 0));
    sqlite3_bind_int64(it->st, 2, KEY_ID(snapshot_id, KEY_ID_MAX_SEQ));
    *out = it;
    return 0;
}

int sg_key_iter_next(sg_key_iter *it, sg_key_row *row, sg_error *err)
{
    int rc = sqlite3_step(it->st);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return sg_store_db_error(it->store, err, "reading snapshot keys from");
    row->db = sqlite3_column_int(it->st, 0);
    row->key = sqlite3_column_blob(it->st, 1);
    row->key_len = (size_t)sqlite3_column_bytes(it->st, 1);
    row->expire_at_ms = sqlite3_column_int64(it->st, 2);
    row->payload = sqlite3_column_blob(it->st, 3);
    row->payload_len = (size_t)sqlite3_column_bytes(it->st, 3);
    if (!row->key)
        row->key = "";
    return 1;
}

void sg_key_iter_free(sg_key_iter *it)
{
    if (!it)
        return;
    sqlite3_finalize(it->st);
    free(it);
}

int sg_store_audit(sg_store *s, const char *actor, const char *action, const char *detail,
                   sg_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "INSERT INTO audit(at, actor, action, detail) VALUES (?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "writing the audit log to");
    sqlite3_bind_int64(st, 1, sg_now_ms());
    sqlite3_bind_text(st, 2, actor, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, action, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, detail, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sg_store_db_error(s, err, "writing the audit log to");
}

/* ---- the gate's journal ---- */

int sg_store_wal_frames(const sg_store *s)
{
    return s->wal_frames;
}

int sg_store_checkpoint(sg_store *s, sg_checkpoint_mode mode, int *wal_frames, sg_error *err)
{
    int frames = -1, done = -1;
    static const int modes[] = {[SG_CHECKPOINT_PASSIVE] = SQLITE_CHECKPOINT_PASSIVE,
                                [SG_CHECKPOINT_RESTART] = SQLITE_CHECKPOINT_RESTART,
                                [SG_CHECKPOINT_TRUNCATE] = SQLITE_CHECKPOINT_TRUNCATE};
    bool waits = mode != SG_CHECKPOINT_PASSIVE;
    if (waits)
        sg_store_set_busy(s, false); /* never wait for the writer or a reader: try again later */
    int rc = sqlite3_wal_checkpoint_v2(s->db, NULL, modes[mode], &frames, &done);
    if (waits)
        sg_store_set_busy(s, true);
    if (wal_frames)
        *wal_frames = rc == SQLITE_OK ? frames : -1;
    if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != SQLITE_LOCKED)
        return sg_store_db_error(s, err, "checkpointing");
    return 0;
}

int sg_store_begin(sg_store *s, sg_error *err)
{
    return sg_store_exec(s, "BEGIN IMMEDIATE", err, "starting a transaction in");
}

int sg_store_commit(sg_store *s, sg_error *err)
{
    return sg_store_exec(s, "COMMIT", err, "committing to");
}

void sg_store_rollback(sg_store *s)
{
    for (int i = 0; i < ST_COUNT; i++)
        if (s->st[i])
            sqlite3_reset(s->st[i]);
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

int sg_store_event_insert(sg_store *s, sg_event_row *r, sg_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_EVENT_INSERT, err);
    if (!st)
        return SG_ESTORE;
    sqlite3_bind_int64(st, 1, r->received_at);
    bind_text_or_null(st, 2, r->source);
    bind_text_or_null(st, 3, r->job);
    bind_int_or_null(st, 4, r->number);
    bind_int_or_null(st, 5, r->build_ts);
    sqlite3_bind_text(st, 6, r->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, r->reason, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, r->state, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, r->method, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, r->path, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 11, r->headers, -1, SQLITE_STATIC);
    sqlite3_bind_blob64(st, 12, r->body ? r->body : "", r->body_len, SQLITE_STATIC);
    bind_int_or_null(st, 13, r->next_attempt_at);
    bind_int_or_null(st, 14, r->done_at);
    sqlite3_bind_int64(st, 15, r->qgen);
    bind_text_or_null(st, 16, r->last_error);
    int rc = sg_store_step_done(s, st, err, "journaling an event in");
    if (rc == 0)
        r->id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

int sg_store_event_update(sg_store *s, int64_t id, const char *state, int64_t attempts,
                          int64_t next_attempt_at, const char *last_error, int64_t done_at,
                          sg_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_EVENT_UPDATE, err);
    if (!st)
        return SG_ESTORE;
    sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, attempts);
    bind_int_or_null(st, 3, next_attempt_at);
    bind_text_or_null(st, 4, last_error);
    bind_int_or_null(st, 5, done_at);
    sqlite3_bind_int64(st, 6, id);
    return sg_store_step_done(s, st, err, "updating an event in");
}

int sg_store_ledger_add(sg_store *s, const char *source, const char *job, int64_t number,
                        int64_t event_id, bool *added, sg_error *err)
{
    /* OR IGNORE would skip a row with a NULL key just as silently as a
     * duplicate; build events always have both (event.c refuses others) */
    assert(source && job);
    sqlite3_stmt *st = stmt(s, ST_LEDGER_ADD, err);
    if (!st)
        return SG_ESTORE;
    sqlite3_bind_text(st, 1, source, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, job, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, number);
    sqlite3_bind_int64(st, 4, sg_now_ms());
    sqlite3_bind_int64(st, 5, event_id);
    int rc = sg_store_step_done(s, st, err, "writing the ledger in");
    *added = rc == 0 && sqlite3_changes(s->db) > 0;
    return rc;
}

int sg_store_ledger_has(sg_store *s, const char *source, const char *job, int64_t number, bool *has,
                        sg_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_LEDGER_HAS, err);
    if (!st)
        return SG_ESTORE;
    sqlite3_bind_text(st, 1, source, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, job, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, number);
    int rc = sqlite3_step(st);
    *has = rc == SQLITE_ROW;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sg_store_db_error(s, err, "reading the ledger in");
    return 0;
}

int sg_store_ledger_newest(sg_store *s, sg_ledger_newest_fn fn, void *ud, sg_error *err)
{
    sqlite3_stmt *st;
    /* the primary key's order: one pass, no sort */
    if (sqlite3_prepare_v2(s->db,
                           "SELECT source, job, max(number) FROM ledger GROUP BY source, job", -1,
                           &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "reading the ledger in");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        fn(ud, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
           sqlite3_column_int64(st, 2));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sg_store_db_error(s, err, "reading the ledger in");
}

int sg_store_ledger_mark(sg_store *s, int64_t *upto, sg_error *err)
{
    return sg_store_query_int(s, "SELECT upto FROM ledger_mark WHERE id = 1", 0, upto, err);
}

int sg_store_ledger_set_mark(sg_store *s, int64_t upto, sg_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "UPDATE ledger_mark SET upto = ?1 WHERE id = 1", -1, &st, NULL) !=
        SQLITE_OK)
        return sg_store_db_error(s, err, "writing the ledger mark in");
    sqlite3_bind_int64(st, 1, upto);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sg_store_db_error(s, err, "writing the ledger mark in");
}

int sg_store_probe_write(sg_store *s, sg_error *err)
{
    return sg_store_exec(s, "UPDATE ledger_mark SET upto = upto WHERE id = 1", err,
                         "writing a probe row in");
}

int sg_store_ledger_catch_up(sg_store *s, int64_t *added, sg_error *err)
{
    int64_t upto = 0, last = 0;
    int rc;
    if ((rc = sg_store_ledger_mark(s, &upto, err)) || (rc = sg_store_last_event_id(s, &last, err)))
        return rc;
    *added = 0;
    if (last <= upto)
        return 0;
    if ((rc = sg_store_begin(s, err)))
        return rc;
    /* the events the ledger should hold: kinds new and unknown (the journal
     * turns a second delivery into a replay) */
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR IGNORE INTO ledger(source, job, number, accepted_at, "
                           "event_id) SELECT source, job, number, received_at, id FROM event "
                           "WHERE id > ?1 AND (kind = 'new' OR kind = 'unknown') "
                           "ORDER BY source, job, number",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = sg_store_db_error(s, err, "catching the ledger up in");
    } else {
        sqlite3_bind_int64(st, 1, upto);
        rc = sqlite3_step(st) == SQLITE_DONE
                 ? 0
                 : sg_store_db_error(s, err, "catching the ledger up in");
        *added = sqlite3_changes(s->db);
        sqlite3_finalize(st);
    }
    if (rc == 0)
        rc = sg_store_ledger_set_mark(s, last, err);
    if (rc == 0)
        rc = sg_store_commit(s, err);
    if (rc)
        sg_store_rollback(s);
    return rc;
}

int sg_store_last_event_id(sg_store *s, int64_t *id, sg_error *err)
{
    return sg_store_query_int(s, "SELECT coalesce(max(id), 0) FROM event", 0, id, err);
}

int sg_store_events_prune(sg_store *s, int64_t before, int64_t limit, int64_t *cursor,
                          int64_t *deleted, bool *more, sg_error *err)
{
    /* the chunk: the next `limit` ids (the table's own b-tree, no index),
     * its last id and whether its newest event is still too young */
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT max(id), max(received_at) FROM (SELECT id, received_at "
                           "FROM event WHERE id > ?1 ORDER BY id LIMIT ?2)",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "pruning the journal in");
    sqlite3_bind_int64(st, 1, *cursor);
    sqlite3_bind_int64(st, 2, limit);
    int rc = sqlite3_step(st);
    bool empty = rc == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_NULL;
    int64_t last = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    int64_t newest = rc == SQLITE_ROW ? sqlite3_column_int64(st, 1) : 0;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return sg_store_db_error(s, err, "pruning the journal in");
    *deleted = 0;
    *more = false;
    if (empty)
        return 0;
    if (sqlite3_prepare_v2(s->db,
                           "DELETE FROM event WHERE id > ?1 AND id <= ?2 AND received_at < ?3 "
                           "AND state IN ('forwarded', 'suppressed', 'dropped', 'superseded')",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "pruning the journal in");
    sqlite3_bind_int64(st, 1, *cursor);
    sqlite3_bind_int64(st, 2, last);
    sqlite3_bind_int64(st, 3, before);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sg_store_db_error(s, err, "pruning the journal in");
    *deleted = sqlite3_changes(s->db);
    *cursor = last;
    *more = newest < before;
    return 0;
}

int sg_store_ledger_jobs(sg_store *s, sg_ledger_fn fn, void *ud, int64_t *builds, sg_error *err)
{
    int rc = sg_store_query_int(s, "SELECT count(*) FROM ledger", 0, builds, err);
    if (rc)
        return rc;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT DISTINCT source, job FROM ledger", -1, &st, NULL) !=
        SQLITE_OK)
        return sg_store_db_error(s, err, "reading the ledger in");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        fn(ud, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sg_store_db_error(s, err, "reading the ledger in");
}

int sg_store_index_each(sg_store *s, int64_t id, const sg_index_visitor *v, void *ud, sg_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT source, job, cursor_ms, last_completed FROM build_index "
                           "WHERE snapshot_id = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "reading the build index in");
    sqlite3_bind_int64(st, 1, id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *source = (const char *)sqlite3_column_text(st, 0);
        const char *job = (const char *)sqlite3_column_text(st, 1);
        if (sqlite3_column_type(st, 2) != SQLITE_NULL)
            v->cursor(ud, source, job, sqlite3_column_int64(st, 2));
        if (sqlite3_column_type(st, 3) != SQLITE_NULL)
            v->completed(ud, source, job, sqlite3_column_int64(st, 3));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sg_store_db_error(s, err, "reading the build index in");
    if (sqlite3_prepare_v2(s->db, "SELECT source, job, number FROM posted WHERE snapshot_id = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "reading the build index in");
    sqlite3_bind_int64(st, 1, id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        v->posted(ud, (const char *)sqlite3_column_text(st, 0),
                  (const char *)sqlite3_column_text(st, 1), sqlite3_column_int64(st, 2));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sg_store_db_error(s, err, "reading the build index in");
}

int sg_store_baseline(sg_store *s, int64_t *snapshot_id, sg_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT coalesce(max(id), 0) FROM snapshot WHERE state = 'complete' "
                           "AND profile != 'none'",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "reading snapshots in");
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *snapshot_id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : sg_store_db_error(s, err, "reading snapshots in");
}

#define EVENT_COLUMNS                                                                              \
    "id, received_at, source, job, number, build_ts, kind, reason, state, method, path, "          \
    "headers, body, attempts, next_attempt_at, last_error, done_at, qgen"

static void read_event(sqlite3_stmt *st, sg_event_row *r)
{
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(st, 0);
    r->received_at = sqlite3_column_int64(st, 1);
    r->source = (const char *)sqlite3_column_text(st, 2);
    r->job = (const char *)sqlite3_column_text(st, 3);
    r->number = sqlite3_column_int64(st, 4);
    r->build_ts = sqlite3_column_int64(st, 5);
    r->kind = (const char *)sqlite3_column_text(st, 6);
    r->reason = (const char *)sqlite3_column_text(st, 7);
    r->state = (const char *)sqlite3_column_text(st, 8);
    r->method = (const char *)sqlite3_column_text(st, 9);
    r->path = (const char *)sqlite3_column_text(st, 10);
    r->headers = (const char *)sqlite3_column_text(st, 11);
    r->body = sqlite3_column_blob(st, 12);
    r->body_len = (size_t)sqlite3_column_bytes(st, 12);
    r->attempts = sqlite3_column_int64(st, 13);
    r->next_attempt_at = sqlite3_column_int64(st, 14);
    r->last_error = (const char *)sqlite3_column_text(st, 15);
    r->done_at = sqlite3_column_int64(st, 16);
    r->qgen = sqlite3_column_int64(st, 17);
}

static int each_event(sg_store *s, sqlite3_stmt *st, sg_event_fn fn, void *ud, sg_error *err)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sg_event_row r;
        read_event(st, &r);
        if (fn(ud, &r))
            break;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0
                                                 : sg_store_db_error(s, err, "reading events in");
}

int sg_store_events_pending(sg_store *s, int64_t after_gen, int64_t after_id, int limit,
                            sg_event_fn fn, void *ud, sg_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT " EVENT_COLUMNS " FROM event WHERE state = 'pending' AND "
                           "(qgen, id) > (?1, ?2) ORDER BY qgen, id LIMIT ?3",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "reading events in");
    sqlite3_bind_int64(st, 1, after_gen);
    sqlite3_bind_int64(st, 2, after_id);
    sqlite3_bind_int(st, 3, limit);
    return each_event(s, st, fn, ud, err);
}

int sg_store_queue_gen(sg_store *s, int64_t *gen, sg_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT coalesce(max(qgen), 0) FROM event WHERE state = 'pending'", -1,
                           &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "reading the delivery queue in");
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *gen = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : sg_store_db_error(s, err, "reading the delivery queue in");
}

/* ---- the held queue ---- */

/* The selection of held events, bound as ?1 source, ?2 job glob and ?9 the
 * highest id (sg_hold_filter.max_id). */
#define HELD_WHERE                                                                                 \
    "state = 'held' AND (?1 IS NULL OR source = ?1) AND (?2 IS NULL OR job GLOB ?2) AND "          \
    "(?9 IS NULL OR id <= ?9)"

/* (statements that do not name ?1 and ?2 but a higher parameter ignore
 * them) */
static sqlite3_stmt *held_stmt(sg_store *s, const char *sql, const sg_hold_filter *f, sg_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        sg_store_db_error(s, err, "changing held events in");
        return NULL;
    }
    bind_text_or_null(st, 1, f->all ? NULL : f->source);
    bind_text_or_null(st, 2, f->all ? NULL : f->job);
    if (f->max_id > 0)
        sqlite3_bind_int64(st, 9, f->max_id);
    else
        sqlite3_bind_null(st, 9);
    return st;
}

static int held_step(sg_store *s, sqlite3_stmt *st, int64_t *changed, sg_error *err)
{
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sg_store_db_error(s, err, "changing held events in");
    *changed = sqlite3_changes(s->db);
    return 0;
}

/* A statement over the selection f with one more integer, ?3. */
static int held_exec(sg_store *s, const char *sql, const sg_hold_filter *f, int64_t p3,
                     int64_t *changed, sg_error *err)
{
    sqlite3_stmt *st = held_stmt(s, sql, f, err);
    if (!st)
        return SG_ESTORE;
    sqlite3_bind_int64(st, 3, p3);
    return held_step(s, st, changed, err);
}

/* One call handles one chunk: at most f->limit of the oldest held events of
 * f (all of them with limit 0), so a release of a million events commits as
 * many short transactions, with the gate's own commits in between. *more
 * says whether the chunk was full (there may be more to do). */

static int release_newest(sg_store *s, const sg_hold_filter *f, int64_t qgen, int64_t now,
                          int64_t *released, int64_t *superseded, bool *more, sg_error *err)
{
    /* The chunk is the jobs of the oldest held events (so a job is handled
     * whole: its newest build is known); per job, every build below the
     * newest held one is superseded and the newest released. */
    int64_t picked = 0, gone = 0, moved = 0;
    int rc;
    if ((rc = sg_store_exec(s,
                            "CREATE TEMP TABLE IF NOT EXISTS release_job (source TEXT, job TEXT, "
                            "PRIMARY KEY (source, job)) WITHOUT ROWID; DELETE FROM release_job",
                            err, "releasing held events in")) ||
        (rc = held_exec(s,
                        "INSERT OR IGNORE INTO release_job SELECT source, job FROM event "
                        "WHERE " HELD_WHERE " ORDER BY id LIMIT ?3",
                        f, f->limit > 0 ? f->limit : -1, &picked, err)) ||
        (rc = held_exec(s,
                        "WITH newest AS (SELECT e.source, e.job, max(e.number) AS number "
                        "FROM release_job r JOIN event e ON e.source = r.source "
                        "AND e.job = r.job AND e.state = 'held' AND (?9 IS NULL OR e.id <= ?9) "
                        "GROUP BY e.source, e.job) "
                        "UPDATE event SET state = 'superseded', done_at = ?3, "
                        "last_error = 'superseded by build ' || newest.number "
                        "FROM newest WHERE event.state = 'held' AND event.source = newest.source "
                        "AND event.job = newest.job AND event.number < newest.number "
                        "AND (?9 IS NULL OR event.id <= ?9)",
                        f, now, &gone, err)) ||
        (rc = held_exec(s,
                        "UPDATE event SET state = 'pending', qgen = ?3, next_attempt_at = NULL "
                        "WHERE state = 'held' AND (source, job) IN "
                        "(SELECT source, job FROM release_job) AND (?9 IS NULL OR id <= ?9)",
                        f, qgen, &moved, err)))
        return rc;
    *released = moved;
    *superseded = gone;
    *more = f->limit > 0 && picked > 0; /* the chunk after the last one picks none */
    return 0;
}

int sg_store_held_release(sg_store *s, const sg_hold_filter *f, bool newest_only, int64_t qgen,
                          int64_t now, int64_t *released, int64_t *superseded, bool *more,
                          sg_error *err)
{
    *released = *superseded = 0;
    *more = false;
    if (newest_only)
        return release_newest(s, f, qgen, now, released, superseded, more, err);
    sqlite3_stmt *st = held_stmt(s,
                                 "UPDATE event SET state = 'pending', qgen = ?3, "
                                 "next_attempt_at = NULL WHERE id IN (SELECT id FROM event "
                                 "WHERE " HELD_WHERE " ORDER BY id LIMIT ?4)",
                                 f, err);
    if (!st)
        return SG_ESTORE;
    sqlite3_bind_int64(st, 3, qgen);
    sqlite3_bind_int64(st, 4, f->limit > 0 ? f->limit : -1);
    int rc = held_step(s, st, released, err);
    *more = rc == 0 && f->limit > 0 && *released == f->limit;
    return rc;
}

int sg_store_held_drop(sg_store *s, const sg_hold_filter *f, const char *reason, int64_t now,
                       int64_t *dropped, bool *more, sg_error *err)
{
    *dropped = 0;
    sqlite3_stmt *st = held_stmt(s,
                                 "UPDATE event SET state = 'dropped', done_at = ?3, "
                                 "last_error = ?4 WHERE id IN (SELECT id FROM event "
                                 "WHERE " HELD_WHERE " ORDER BY id LIMIT ?5)",
                                 f, err);
    if (!st)
        return SG_ESTORE;
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_text(st, 4, reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, f->limit > 0 ? f->limit : -1);
    int rc = held_step(s, st, dropped, err);
    *more = rc == 0 && f->limit > 0 && *dropped == f->limit;
    return rc;
}

int sg_store_held_summary(sg_store *s, int64_t limit, sg_held_fn fn, void *ud, int64_t *held,
                          int64_t *jobs, sg_error *err)
{
    /* one pass over the held rows' index; the totals ride on every row */
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT source, job, count(*), min(number), max(number), "
                           "sum(count(*)) OVER (), count(*) OVER () FROM event "
                           "WHERE state = 'held' GROUP BY source, job "
                           "ORDER BY 3 DESC, source, job LIMIT ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "reading held events in");
    sqlite3_bind_int64(st, 1, limit > 0 ? limit : 1);
    int64_t total = 0, groups = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        total = sqlite3_column_int64(st, 5);
        groups = sqlite3_column_int64(st, 6);
        fn(ud, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
           sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 4));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sg_store_db_error(s, err, "reading held events in");
    if (held)
        *held = total;
    if (jobs)
        *jobs = groups;
    return 0;
}

int sg_store_sample_keys(sg_store *s, int64_t snapshot_id, const char *glob, int n, sg_key_fn fn,
                         void *ud, sg_error *err)
{
    /* point lookups of every step-th key, so the sample spreads over the
     * snapshot without reading it: 4n candidates for n keys that qualify */
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            s->db,
            "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq "
            "WHERE i + 1 < 4 * ?5), "
            "step(n) AS (SELECT max(1, key_count / (4 * ?5)) FROM snapshot "
            "WHERE id = ?4) "
            "SELECT key FROM seq, step, snapshot_key "
            "WHERE snapshot_key.id = ?1 + seq.i * step.n AND snapshot_key.id <= ?2 "
            "AND expire_at_ms IS NULL AND (?3 IS NULL OR CAST(key AS TEXT) GLOB ?3) LIMIT ?5",
            -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "sampling snapshot keys in");
    sqlite3_bind_int64(st, 1, KEY_ID(snapshot_id, 0));
    sqlite3_bind_int64(st, 2, KEY_ID(snapshot_id, KEY_ID_MAX_SEQ));
    bind_text_or_null(st, 3, glob);
    sqlite3_bind_int64(st, 4, snapshot_id);
    sqlite3_bind_int(st, 5, n);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = sqlite3_column_blob(st, 0);
        int len = sqlite3_column_bytes(st, 0);
        if (!key || memchr(key, '\0', (size_t)len))
            continue; /* the watcher takes C strings */
        char *copy = sg_xstrndup(key, (size_t)len);
        int stop = fn(ud, copy);
        free(copy);
        if (stop)
            break;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW
               ? 0
               : sg_store_db_error(s, err, "sampling snapshot keys in");
}

/* ---- episodes ---- */

int sg_store_episode_open(sg_store *s, int64_t at, const char *cause, const char *detail,
                          int64_t *id, sg_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "INSERT INTO episode(started_at, cause, detail) VALUES (?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "recording an episode in");
    sqlite3_bind_int64(st, 1, at);
    sqlite3_bind_text(st, 2, cause, -1, SQLITE_STATIC);
    bind_text_or_null(st, 3, detail);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sg_store_db_error(s, err, "recording an episode in");
    *id = sqlite3_last_insert_rowid(s->db);
    return 0;
}

int sg_store_episode_update(sg_store *s, int64_t id, int64_t ended_at, const char *detail,
                            sg_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE episode SET ended_at = coalesce(?2, ended_at), "
                           "detail = coalesce(detail || '; ' || ?3, ?3, detail) WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "recording an episode in");
    sqlite3_bind_int64(st, 1, id);
    bind_int_or_null(st, 2, ended_at);
    bind_text_or_null(st, 3, detail);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sg_store_db_error(s, err, "recording an episode in");
}

int sg_store_events_query(sg_store *s, const char *state, const char *kind, const char *job,
                          int limit, sg_event_fn fn, void *ud, sg_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT " EVENT_COLUMNS " FROM event WHERE (?1 IS NULL OR state = ?1) "
                           "AND (?2 IS NULL OR kind = ?2) AND (?3 IS NULL OR job = ?3) "
                           "ORDER BY id DESC LIMIT ?4",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "reading events in");
    bind_text_or_null(st, 1, state);
    bind_text_or_null(st, 2, kind);
    bind_text_or_null(st, 3, job);
    sqlite3_bind_int(st, 4, limit);
    return each_event(s, st, fn, ud, err);
}

int sg_store_event_counts(sg_store *s, sg_count_fn fn, void *ud, sg_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT kind, state, count(*) FROM event GROUP BY kind, state",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "counting events in");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        fn(ud, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
           sqlite3_column_int64(st, 2));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sg_store_db_error(s, err, "counting events in");
}
