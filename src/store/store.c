/* The SQLite store (store.h): one connection, explicit pragmas, migrations
 * from the embedded schema, transactions and checkpoints, and the helpers
 * the table families share (store_int.h): the error messages and the cache
 * of prepared statements for the hot paths, whose SQL each family's file
 * holds (snapshots.c, events.c, held.c, episodes.c). */
#include "stormguard/store/store.h"
#include "stormguard/store/snapshots.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stormguard/base/log.h"
#include "stormguard/base/util.h"
#include "stormguard/store/replicas.h"
#include "store_pg_int.h"
#include "store_int.h"

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
    if (s->pg)
        return sg_pg_schema_version(s->pg);
    int v = -1;
    pragma_int(s, "PRAGMA user_version", &v, NULL);
    return v;
}

const char *sg_store_path(const sg_store *s)
{
    return s->pg ? s->pg->where : s->path;
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

bool sg_store_is_url(const char *where)
{
    return sg_pg_is_url(where);
}

int sg_store_url_check(const char *url, sg_error *err)
{
    return sg_pg_url_check(url, err);
}

char *sg_store_url_redacted(const char *url)
{
    return sg_pg_redact(url);
}

struct sg_store_claim {
    int fd;     /* SQLite: the lock file, flocked */
    sg_pg *pg;  /* PostgreSQL: the replica's own connection */
    char *name; /* PostgreSQL: the replica's name */
};

static int lock_file(const char *path, int *fd_out, sg_error *err);

int sg_store_claim_new(const char *where, sg_store_claim **out, sg_error *err)
{
    sg_store_claim c = {.fd = -1};
    int rc = sg_pg_is_url(where) ? sg_pg_claim(where, &c.pg, &c.name, err)
                                 : lock_file(where, &c.fd, err);
    if (rc)
        return rc;
    *out = sg_xmalloc(sizeof c);
    **out = c;
    return 0;
}

const char *sg_store_claim_name(const sg_store_claim *c)
{
    return c ? c->name : NULL;
}

void sg_store_claim_free(sg_store_claim *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    if (c->pg) {
        sg_error err = {0};
        if (sg_pg_replica_leave(c->pg, c->name, &err))
            sg_log(SG_LOG_WARN, "store",
                   "%s (the other replicas take its claims once its lease runs out)", err.msg);
        sg_pg_free(c->pg);
    }
    free(c->name);
    free(c);
}

/* ---- replicas (replicas.h) ---- */

static int not_shared(const sg_store *s, sg_error *err)
{
    return sg_error_set(err, SG_EINVAL, "the store %s is not shared: it has no replicas",
                        sg_store_path(s));
}

int sg_store_replica_renew(sg_store *s, const char *name, int64_t lease_ms, int64_t *released,
                           sg_error *err)
{
    return s->pg ? sg_pg_replica_renew(s->pg, name, lease_ms, released, err) : not_shared(s, err);
}

int sg_store_replica_leave(sg_store *s, const char *name, sg_error *err)
{
    return s->pg ? sg_pg_replica_leave(s->pg, name, err) : not_shared(s, err);
}

void sg_store_set_replica(sg_store *s, const char *name)
{
    if (!s->pg)
        return;
    free(s->pg->replica);
    s->pg->replica = name ? sg_xstrdup(name) : NULL;
}

int sg_store_events_claim(sg_store *s, const char *name, int limit, sg_event_fn fn, void *ud,
                          sg_error *err)
{
    return s->pg ? sg_pg_events_claim(s->pg, name, limit, fn, ud, err) : not_shared(s, err);
}

int sg_store_replicas(sg_store *s, sg_replica_fn fn, void *ud, sg_error *err)
{
    return s->pg ? sg_pg_replicas(s->pg, fn, ud, err) : not_shared(s, err);
}

int sg_store_accepted_since(sg_store *s, int64_t after_id, int limit, sg_ledger_tag_fn fn, void *ud,
                            int64_t *last, sg_error *err)
{
    return s->pg ? sg_pg_accepted_since(s->pg, after_id, limit, fn, ud, last, err)
                 : not_shared(s, err);
}

int sg_store_mode_publish(sg_store *s, const sg_mode_row *m, bool notify, sg_error *err)
{
    return s->pg ? sg_pg_mode_publish(s->pg, m, notify, err) : not_shared(s, err);
}

int sg_store_mode_off(sg_store *s, const char *replica, int64_t at_ms, sg_error *err)
{
    return s->pg ? sg_pg_mode_off(s->pg, replica, at_ms, err) : not_shared(s, err);
}

int sg_store_modes(sg_store *s, int64_t after_ms, sg_mode_row_fn fn, void *ud, sg_error *err)
{
    return s->pg ? sg_pg_modes(s->pg, after_ms, fn, ud, err) : not_shared(s, err);
}

int sg_store_claim_watcher(sg_store_claim *c, bool give_up, bool *held, sg_error *err)
{
    if (!c->pg) { /* SQLite: one daemon, the watcher */
        *held = true;
        return 0;
    }
    return sg_pg_watcher(c->pg, give_up, held, err);
}

static int lock_file(const char *path, int *fd_out, sg_error *err)
{
    if (create_file(path, err))
        return SG_ESTORE;
    /* named by the store's real path: another path to the same file (a
     * symlink, a relative one) must meet the same lock */
    char *real = realpath(path, NULL);
    char *lock = sg_xasprintf("%s.lock", real ? real : path);
    free(real);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        sg_error_set(err, SG_ESTORE, "opening the store's lock file %s: %s", lock, strerror(e));
        free(lock);
        return SG_ESTORE;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        if (e == EWOULDBLOCK)
            sg_error_set(err, SG_ESTORE,
                         "the store %s is in use by another stormguard run (pid %s): stop it "
                         "first, or give this one a store of its own (--db)",
                         path, *pid ? pid : "unknown");
        else
            sg_error_set(err, SG_ESTORE, "locking %s: %s", lock, strerror(e));
        free(lock);
        return SG_ESTORE;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        int e = errno;
        close(fd);
        sg_error_set(err, SG_ESTORE, "writing the pid to %s: %s", lock, strerror(e));
        free(lock);
        return SG_ESTORE;
    }
    free(lock);
    *fd_out = fd;
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
    if (sg_pg_is_url(path)) {
        sg_pg *pg;
        if ((rc = sg_pg_open(path, opt, &pg, err)))
            return rc;
        sg_store *s = sg_xcalloc(1, sizeof *s);
        s->pg = pg;
        *out = s;
        return 0;
    }
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
    sg_pg_free(s->pg);
    s->pg = NULL;
    sg_store_snapshot_abort(s);
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    sqlite3_finalize(s->add_keys);
    sg_buf_free(&s->pending_bytes);
    sg_buf_free(&s->posted.source);
    sg_buf_free(&s->posted.job);
    free(s->posted.numbers);
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

/* ---- transactions and the WAL ---- */

bool sg_store_shared(const sg_store *s)
{
    return s->pg != NULL;
}

int sg_store_wal_frames(const sg_store *s)
{
    return s->wal_frames;
}

int sg_store_checkpoint(sg_store *s, sg_checkpoint_mode mode, int *wal_frames, sg_error *err)
{
    if (s->pg) { /* PostgreSQL checkpoints by itself */
        if (wal_frames)
            *wal_frames = 0;
        return 0;
    }
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
    if (s->pg)
        return sg_pg_begin(s->pg, err);
    return sg_store_exec(s, "BEGIN IMMEDIATE", err, "starting a transaction in");
}

int sg_store_commit(sg_store *s, sg_error *err)
{
    if (s->pg)
        return sg_pg_commit(s->pg, err);
    return sg_store_exec(s, "COMMIT", err, "committing to");
}

void sg_store_rollback(sg_store *s)
{
    if (s->pg) {
        sg_pg_rollback(s->pg);
        return;
    }
    for (int i = 0; i < ST_COUNT; i++)
        if (s->st[i])
            sqlite3_reset(s->st[i]);
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

int sg_store_probe_write(sg_store *s, sg_error *err)
{
    if (s->pg)
        return sg_pg_probe_write(s->pg, err);
    return sg_store_exec(s, "UPDATE ledger_mark SET upto = upto WHERE id = 1", err,
                         "writing a probe row in");
}
