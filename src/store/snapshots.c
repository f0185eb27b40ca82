/* Snapshots (snapshots.h): a snapshot's row and keys, written in slices,
 * and the build index the profile decodes from them; reading them back,
 * sampling and pruning them. */
#include "stormguard/store/snapshots.h"

#include <assert.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stormguard/base/clock.h"
#include "stormguard/base/util.h"
#include "store_pg_int.h"
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
    /* a job's second row (two marker hashes of one job) joins the first */
    [ST_POSTED] = "INSERT INTO posted_builds(snapshot_id, source, job, numbers) "
                  "VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO UPDATE SET numbers = "
                  "(SELECT json_group_array(value) FROM (SELECT value FROM json_each(numbers) "
                  "UNION SELECT value FROM json_each(excluded.numbers)))",
    [ST_DOCKER] =
        "INSERT OR REPLACE INTO docker_tag(snapshot_id, account, repository, tag, digest) "
        "VALUES (?1, ?2, ?3, ?4, ?5)",
};

/* A snapshot's keys have ids KEY_ID(snapshot, 0) .. KEY_ID(snapshot, n - 1)
 * (schema/001_snapshots.sql). */
#define KEY_ID(snapshot, seq) ((int64_t)(snapshot) << 32 | (int64_t)(seq))
#define KEY_ID_MAX_SEQ 0xffffffffLL

struct sg_key_iter {
    sg_store *store;
    sqlite3_stmt *st;
    pg_key_iter *pg; /* a PostgreSQL store's instead */
};

/* The cached statement i, reset and with its bindings cleared. */
static sqlite3_stmt *stmt(sg_store *s, int i, sg_error *err)
{
    assert(statement_sql[i]);
    return sg_store_stmt(s, i, statement_sql[i], err);
}

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

/* The posted builds of one job go in one row (schema/007_posted_builds.sql)
 * of at most POSTED_ROW_MAX numbers. */
#define POSTED_ROW_MAX 4096

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Writes the pending posted builds as one row: ascending, each once, a
 * JSON array. The buffer is empty afterwards, also after an error. */
static int flush_posted(sg_store *s, sg_error *err)
{
    struct pending_posted *p = &s->posted;
    if (!p->n)
        return 0;
    qsort(p->numbers, p->n, sizeof *p->numbers, cmp_i64);
    sg_buf json = {0};
    sg_buf_append(&json, "[", 1);
    for (size_t i = 0; i < p->n; i++)
        if (i == 0 || p->numbers[i] != p->numbers[i - 1])
            sg_buf_printf(&json, "%s%lld", i ? "," : "", (long long)p->numbers[i]);
    sg_buf_append(&json, "]", 1);
    p->n = 0;
    int rc = SG_ESTORE;
    sqlite3_stmt *st = stmt(s, ST_POSTED, err);
    if (st) {
        sqlite3_bind_int64(st, 1, s->snapshot_id);
        sqlite3_bind_text(st, 2, p->source.p ? p->source.p : "", (int)p->source.len, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, p->job.p ? p->job.p : "", (int)p->job.len, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, json.p, (int)json.len, SQLITE_STATIC);
        rc = sg_store_step_done(s, st, err, "writing the build index to");
    }
    sg_buf_free(&json);
    return rc;
}

/* What a slice or the snapshot's end writes first: the rows still buffered. */
static int flush_pending(sg_store *s, sg_error *err)
{
    int rc = flush_keys(s, err);
    int prc = flush_posted(s, rc ? NULL : err);
    return rc ? rc : prc;
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
    if (s->pg)
        return sg_pg_snapshot_yield(s->pg, err);
    assert(s->snapshot_id);
    s->snap_rows = 0;
    double now = sg_mono_s();
    if (now - s->snap_since < SNAPSHOT_SLICE_S)
        return 0;
    int rc = flush_pending(s, err);
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
    if (s->pg)
        return sg_pg_snapshot_begin(s->pg, m, id, err);
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
    if (s->pg)
        return sg_pg_snapshot_add_key(s->pg, db, key, key_len, expire_at_ms, payload, payload_len,
                                      err);
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
    if (s->pg)
        return sg_pg_index_cursor(s->pg, source, source_len, job, job_len, cursor_ms, err);
    return index_row(s, ST_CURSOR, source, source_len, job, job_len, cursor_ms, err);
}

int sg_store_index_ci(sg_store *s, const char *source, size_t source_len, const char *job,
                      size_t job_len, bool running, int64_t number, sg_error *err)
{
    if (s->pg)
        return sg_pg_index_ci(s->pg, source, source_len, job, job_len, running, number, err);
    return index_row(s, running ? ST_CI_RUNNING : ST_CI_COMPLETED, source, source_len, job, job_len,
                     number, err);
}

int sg_store_index_posted(sg_store *s, const char *source, size_t source_len, const char *job,
                          size_t job_len, int64_t number, sg_error *err)
{
    if (s->pg)
        return sg_pg_index_posted(s->pg, source, source_len, job, job_len, number, err);
    assert(s->snapshot_id);
    struct pending_posted *p = &s->posted;
    bool same = p->n && p->source.len == source_len && p->job.len == job_len &&
                memcmp(p->source.p, source, source_len) == 0 && memcmp(p->job.p, job, job_len) == 0;
    if (!same || p->n == POSTED_ROW_MAX) {
        int rc = flush_posted(s, err);
        if (rc)
            return rc;
        p->source.len = p->job.len = 0;
        sg_buf_append(&p->source, source, source_len);
        sg_buf_append(&p->job, job, job_len);
    }
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        p->numbers = sg_xrealloc(p->numbers, p->cap * sizeof *p->numbers);
    }
    p->numbers[p->n++] = number;
    return snapshot_slice(s, err);
}

int sg_store_index_docker(sg_store *s, const char *account, size_t account_len,
                          const char *repository, size_t repository_len, const char *tag,
                          size_t tag_len, const char *digest, size_t digest_len, sg_error *err)
{
    if (s->pg)
        return sg_pg_index_docker(s->pg, account, account_len, repository, repository_len, tag,
                                  tag_len, digest, digest_len, err);
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

int sg_store_snapshot_add_node(sg_store *s, int node, const char *address, const char *slots,
                               int64_t keys, sg_error *err)
{
    if (s->pg)
        return sg_pg_snapshot_add_node(s->pg, node, address, slots, keys, err);
    assert(s->snapshot_id);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO snapshot_node(snapshot_id, node, address, slots, keys) "
                           "VALUES (?1, ?2, ?3, ?4, ?5)",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "preparing a statement on");
    sqlite3_bind_int64(st, 1, s->snapshot_id);
    sqlite3_bind_int(st, 2, node);
    sqlite3_bind_text(st, 3, address, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, slots, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, keys);
    int rc = sg_store_step_done(s, st, err, "writing a snapshot's Cluster node to");
    sqlite3_finalize(st);
    return rc;
}

int sg_store_snapshot_nodes(sg_store *s, int64_t id, sg_snapshot_node **out, size_t *count,
                            sg_error *err)
{
    if (s->pg)
        return sg_pg_snapshot_nodes(s->pg, id, out, count, err);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT node, address, slots, keys FROM snapshot_node "
                           "WHERE snapshot_id = ?1 ORDER BY node",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "preparing a statement on");
    sqlite3_bind_int64(st, 1, id);
    sg_snapshot_node *v = NULL;
    size_t n = 0;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        v = sg_xrealloc(v, (n + 1) * sizeof *v);
        v[n++] = (sg_snapshot_node){.node = sqlite3_column_int(st, 0),
                                    .address = sg_xstrdup((const char *)sqlite3_column_text(st, 1)),
                                    .slots = sg_xstrdup((const char *)sqlite3_column_text(st, 2)),
                                    .keys = sqlite3_column_int64(st, 3)};
    }
    int rc = step == SQLITE_DONE ? 0 : sg_store_db_error(s, err, "reading snapshot nodes from");
    sqlite3_finalize(st);
    if (rc) {
        sg_snapshot_nodes_free(v, n);
        return rc;
    }
    *out = v;
    *count = n;
    return 0;
}

void sg_snapshot_nodes_free(sg_snapshot_node *nodes, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(nodes[i].address);
        free(nodes[i].slots);
    }
    free(nodes);
}

int sg_store_snapshot_commit(sg_store *s, const sg_snapshot_info *t, sg_error *err)
{
    if (s->pg)
        return sg_pg_snapshot_commit(s->pg, t, err);
    assert(s->snapshot_id);
    /* A snapshot is what a flush deletes against: its last commit reaches
     * the disk (WAL fsync, which covers the slices before it) whatever the
     * store's synchronous setting, so a power loss right after a flush
     * cannot take the snapshot with it. (The setting cannot change inside a
     * transaction, hence the last slice's commit first.) */
    int rc;
    if ((rc = flush_pending(s, err)) ||
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
    if (s->pg) {
        sg_pg_snapshot_abort(s->pg);
        return;
    }
    if (!s->snapshot_id)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        if (s->st[i])
            sqlite3_reset(s->st[i]);
    if (s->add_keys)
        sqlite3_reset(s->add_keys);
    s->npending = 0;
    s->pending_bytes.len = 0;
    s->posted.n = 0;
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
    if (s->pg)
        return sg_pg_index_counts(s->pg, id, out, err);
    int rc;
    if ((rc = sg_store_query_int(s, "SELECT count(*) FROM build_index WHERE snapshot_id = ?", id,
                                 &out->jobs, err)) ||
        (rc = sg_store_query_int(s,
                                 "SELECT coalesce(sum(json_array_length(numbers)), 0) FROM "
                                 "posted_builds WHERE snapshot_id = ?",
                                 id, &out->posted, err)) ||
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
    if (s->pg)
        return sg_pg_snapshot_list(s->pg, out, count, err);
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
    if (s->pg)
        return sg_pg_snapshot_get(s->pg, id, out, err);
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
    if (s->pg)
        return sg_pg_last_good(s->pg, redis, db, profile_pattern, id, profile_keys, err);
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

int sg_store_snapshot_prune(sg_store *s, int keep, int64_t max_age_s, int64_t now_ms,
                            int64_t *pruned, sg_error *err)
{
    if (s->pg)
        return sg_pg_snapshot_prune(s->pg, keep, max_age_s, now_ms, pruned, err);
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
    sqlite3_bind_int64(st, 3, now_ms - max_age_s * 1000);
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
    if (s->pg) {
        int rc = sg_pg_keys_open(s->pg, snapshot_id, &it->pg, err);
        if (rc) {
            free(it);
            return rc;
        }
        *out = it;
        return 0;
    }
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
    if (it->pg)
        return sg_pg_key_iter_next(it->pg, row, err);
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
    sg_pg_key_iter_free(it->pg);
    sqlite3_finalize(it->st);
    free(it);
}

/* Calls v->posted for each number of a row's JSON array ("[1,2,3]", as
 * flush_posted writes it; spaces allowed); false if it is not one. */
static bool posted_each(const char *p, const sg_index_visitor *v, void *ud, const char *source,
                        const char *job)
{
    if (!p)
        return false;
    while (*p == ' ')
        p++;
    if (*p++ != '[')
        return false;
    while (*p == ' ')
        p++;
    if (*p == ']')
        return p[1 + strspn(p + 1, " ")] == '\0';
    for (;;) {
        char *end;
        errno = 0;
        long long n = strtoll(p, &end, 10);
        if (end == p || errno)
            return false;
        v->posted(ud, source, job, (int64_t)n);
        p = end + strspn(end, " ");
        if (*p == ']')
            return p[1 + strspn(p + 1, " ")] == '\0';
        if (*p++ != ',')
            return false;
        p += strspn(p, " ");
    }
}

int sg_store_index_each(sg_store *s, int64_t id, const sg_index_visitor *v, void *ud, sg_error *err)
{
    if (s->pg)
        return sg_pg_index_each(s->pg, id, v, ud, err);
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
    if (sqlite3_prepare_v2(s->db,
                           "SELECT source, job, numbers FROM posted_builds WHERE snapshot_id = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "reading the build index in");
    sqlite3_bind_int64(st, 1, id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *source = (const char *)sqlite3_column_text(st, 0);
        const char *job = (const char *)sqlite3_column_text(st, 1);
        const char *numbers = (const char *)sqlite3_column_text(st, 2);
        if (!posted_each(numbers, v, ud, source, job)) {
            rc = sg_error_set(err, SG_ESTORE,
                              "reading the build index in %s: the posted builds of job %s in "
                              "snapshot %lld are not a JSON array of numbers",
                              s->path, job, (long long)id);
            sqlite3_finalize(st);
            return rc;
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sg_store_db_error(s, err, "reading the build index in");
    if (!v->docker)
        return 0;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT account, repository, tag, digest FROM docker_tag "
                           "WHERE snapshot_id = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "reading the Docker index in");
    sqlite3_bind_int64(st, 1, id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        v->docker(
            ud, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
            (const char *)sqlite3_column_text(st, 2), (const char *)sqlite3_column_text(st, 3));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sg_store_db_error(s, err, "reading the Docker index in");
}

int sg_store_baseline(sg_store *s, int64_t *snapshot_id, sg_error *err)
{
    if (s->pg)
        return sg_pg_baseline(s->pg, snapshot_id, err);
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

int sg_store_sample_keys(sg_store *s, int64_t snapshot_id, const char *glob, int n, sg_key_fn fn,
                         void *ud, sg_error *err)
{
    if (s->pg)
        return sg_pg_sample_keys(s->pg, snapshot_id, glob, n, fn, ud, err);
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
