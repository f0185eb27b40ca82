/* stormguard store copy (copy.h): an SQLite store into an empty PostgreSQL
 * one, for a team moving from one gate to replicas without re-announcing
 * anything.
 *
 * What goes over is what a gate reads to go on: the ledger (every build
 * accepted, which is what suppresses a replay); the events still open, held
 * (the held queue), pending (not yet delivered) and dead (refused or too
 * old: retention never deletes them, `events --state dead` is how an
 * operator finds them); the accepted Docker events whatever their state,
 * since the ledger's tags are read from the journal (sg_store_ledger_docker:
 * a tag posted again without a digest is a replay only by them); and the
 * baseline snapshot with its build index, the gate's memory of what the
 * poller announced before. The rest of the journal (forwarded, suppressed,
 * dropped, superseded events: done with, their builds in the ledger), the
 * episodes, the audit log and the other snapshots stay in the SQLite file.
 *
 * Both sides are read and written at one moment each. The source, after
 * its catch-up, is read in one read transaction (WAL: a one-shot command
 * writing meanwhile is not seen), under the daemon's claim, so no gate
 * journals anything into it while it is copied. The destination is written
 * in one transaction: a failure anywhere leaves nothing of the copy behind,
 * and its journal and ledger are locked against writers from the check that
 * they are empty to the commit. The PostgreSQL backend writes a snapshot in
 * a transaction it opens itself (pg_snapshots.c), so when a baseline is
 * copied that transaction is the copy's: it is begun first and everything
 * else goes into it before the snapshot's commit.
 *
 * Rows go by COPY in binary format, sent a chunk at a time as they are read
 * from SQLite: memory stays flat whatever the ledger's size, but for the
 * ids of the copied events (8 bytes each), which the ledger's rows are
 * mapped by. */
#include "stormguard/store/copy.h"

#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "stormguard/base/clock.h"
#include "stormguard/base/util.h"
#include "stormguard/store/snapshots.h"
#include "store_pg_int.h"
#include "store_int.h"

/* COPY data goes to the server in pieces of about this many bytes. */
#define COPY_CHUNK (1u << 20)
/* How long the copy waits for a gate's transaction on the destination's
 * journal or ledger before it gives up. */
#define LOCK_TIMEOUT "10s"

/* ---- COPY in binary, streamed ---- */

/* The binary COPY format (the COPY manual page): a signature, a flags word
 * and a header extension length; rows of a field count and fields, each a
 * length (-1 for NULL) and bytes; -1 where the next row's count would be.
 * The signature's last byte is the literal's NUL. */
static const char copy_signature[11] = "PGCOPY\n\377\r\n";

typedef struct copy_in {
    sg_pg *pg;
    const char *doing;
    sg_buf buf; /* data not sent yet */
} copy_in;

static void put16(sg_buf *b, uint16_t v)
{
    v = htobe16(v);
    sg_buf_append(b, &v, 2);
}

static void put32(sg_buf *b, uint32_t v)
{
    v = htobe32(v);
    sg_buf_append(b, &v, 4);
}

static void field_null(sg_buf *b)
{
    put32(b, UINT32_MAX);
}

static void field_int8(sg_buf *b, int64_t v)
{
    uint64_t x = htobe64((uint64_t)v);
    put32(b, 8);
    sg_buf_append(b, &x, 8);
}

static void field_bytes(sg_buf *b, const void *p, size_t n)
{
    put32(b, (uint32_t)n);
    if (n)
        sg_buf_append(b, p, n);
}

/* Column i of st as a bigint field (NULL stays NULL). */
static void column_int8(sg_buf *b, sqlite3_stmt *st, int i)
{
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        field_null(b);
    else
        field_int8(b, sqlite3_column_int64(st, i));
}

/* Column i of st as a text or bytea field: its bytes as SQLite holds them. */
static void column_bytes(sg_buf *b, sqlite3_stmt *st, int i)
{
    if (sqlite3_column_type(st, i) == SQLITE_NULL) {
        field_null(b);
        return;
    }
    const void *p = sqlite3_column_blob(st, i);
    field_bytes(b, p, (size_t)sqlite3_column_bytes(st, i));
}

/* Starts `sql`, a COPY ... FROM STDIN WITH (FORMAT binary), and its data's
 * header; c->pg is set once it runs. */
static int copy_start(copy_in *c, sg_pg *pg, const char *sql, const char *doing, sg_error *err)
{
    if (PQstatus(pg->conn) != CONNECTION_OK)
        return sg_error_set(err, SG_ESTORE, "%s %s: the connection was lost", doing, pg->where);
    if (sg_pg_send_begin(pg, err))
        return SG_ESTORE;
    PGresult *r = PQexec(pg->conn, sql);
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        int rc = sg_pg_error(pg, r, err, doing);
        PQclear(r);
        return rc;
    }
    PQclear(r);
    c->pg = pg; /* started */
    c->doing = doing;
    c->buf.len = 0;
    sg_buf_append(&c->buf, copy_signature, sizeof copy_signature);
    put32(&c->buf, 0);
    put32(&c->buf, 0);
    return 0;
}

/* Sends what the buffer holds once it is a chunk (or anything, if all). */
static int copy_send(copy_in *c, bool all, sg_error *err)
{
    if (!c->buf.len || (!all && c->buf.len < COPY_CHUNK))
        return 0;
    if (PQputCopyData(c->pg->conn, c->buf.p, (int)c->buf.len) != 1)
        return sg_pg_error(c->pg, NULL, err, c->doing);
    c->buf.len = 0;
    return 0;
}

/* Ends the COPY: its last data and the server's verdict when ok, else
 * failed on purpose (the caller's error is in err already, and the
 * transaction fails with the COPY: the result is then 0 and err left as
 * it is). The connection is idle again afterwards, whatever happened. */
static int copy_end(copy_in *c, bool ok, sg_error *err)
{
    sg_error spare;
    sg_error *e = ok ? err : &spare;
    int rc = 0;
    if (ok) {
        put16(&c->buf, UINT16_MAX);
        rc = copy_send(c, true, e);
    }
    const char *failed = ok && rc == 0 ? NULL : "stormguard store copy stopped";
    if (PQputCopyEnd(c->pg->conn, failed) != 1 && rc == 0)
        rc = sg_pg_error(c->pg, NULL, e, c->doing);
    /* the COPY's result, then NULL; should libpq still be in COPY IN (an
     * end it could not send), it is told once more, then left */
    PGresult *r;
    for (int again = 0; (r = PQgetResult(c->pg->conn)); PQclear(r)) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COPY_IN) {
            if (again++ || PQputCopyEnd(c->pg->conn, "stormguard gave up the COPY") != 1) {
                PQclear(r);
                break;
            }
        } else if (st != PGRES_COMMAND_OK && rc == 0) {
            rc = sg_pg_error(c->pg, r, e, c->doing);
        }
    }
    c->buf.len = 0;
    return ok ? rc : 0;
}

/* ---- the destination ---- */

/* Its events and ledger rows (counted: a destination that has some is
 * refused with the numbers). */
static int dest_rows(sg_pg *pg, int64_t *events, int64_t *builds, sg_error *err)
{
    PGresult *r =
        sg_pg_query(pg, -1, "SELECT (SELECT count(*) FROM event), (SELECT count(*) FROM ledger)",
                    NULL, err, "counting the events and the ledger of");
    if (!r)
        return SG_ESTORE;
    *events = sg_pg_int(r, 0, 0);
    *builds = sg_pg_int(r, 0, 1);
    PQclear(r);
    return 0;
}

static int dest_empty(sg_pg *pg, sg_error *err)
{
    int64_t events, builds;
    int rc = dest_rows(pg, &events, &builds, err);
    if (rc || (!events && !builds))
        return rc;
    char what[96] = "";
    if (events)
        snprintf(what, sizeof what, "%lld event%s%s", (long long)events, events == 1 ? "" : "s",
                 builds ? " and " : "");
    if (builds)
        snprintf(what + strlen(what), sizeof what - strlen(what), "%lld build%s in its ledger",
                 (long long)builds, builds == 1 ? "" : "s");
    return sg_error_set(err, SG_EREFUSED,
                        "the store %s already holds %s: store copy fills an empty store only (a "
                        "new database, or this one emptied)",
                        pg->where, what);
}

/* ---- events ---- */

/* The copied events: open ones, and the Docker events the ledger's tags
 * are read from (kinds new and unknown, as sg_store_ledger_docker reads
 * them), in id order. */
#define EVENTS_COPIED                                                                              \
    "state = 'held' OR state = 'pending' OR state = 'dead' OR "                                    \
    "(tag IS NOT NULL AND (kind = 'new' OR kind = 'unknown'))"

/* Columns 1 to 20 of the SELECT and of the COPY, in order; the COPY's
 * first is the new id. */
#define EVENT_COPY_COLUMNS                                                                         \
    "received_at, source, job, number, build_ts, kind, reason, state, method, path, headers, "     \
    "body, attempts, next_attempt_at, last_error, done_at, qgen, would, tag, digest"
#define EVENT_FIELDS 21
/* which of them are integers (the others are text or bytea) */
static const bool event_int_column[EVENT_FIELDS] = {
    [1] = true, [4] = true, [5] = true, [13] = true, [14] = true, [16] = true, [17] = true,
};

/* The ids the copied events had in the source, ascending: the event of
 * the source's id ids[i] is the destination's base + 1 + i. */
typedef struct id_map {
    int64_t base;
    int64_t *ids;
    size_t n, cap;
} id_map;

static void id_map_add(id_map *m, int64_t id)
{
    assert(m->n == 0 || id > m->ids[m->n - 1]);
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 1024;
        m->ids = sg_xrealloc(m->ids, m->cap * sizeof *m->ids);
    }
    m->ids[m->n++] = id;
}

/* The destination's id of the source's event id: its new id if it was
 * copied, else id itself (see copy_ledger). */
static int64_t id_map_get(const id_map *m, int64_t id)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->ids[mid] == id)
            return m->base + 1 + (int64_t)mid;
        if (m->ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return id;
}

static void count_state(sg_store_copy_stats *st, const char *state)
{
    if (!strcmp(state, "held"))
        st->held++;
    else if (!strcmp(state, "pending"))
        st->pending++;
    else if (!strcmp(state, "dead"))
        st->dead++;
    else
        st->docker++;
}

static int copy_events(sg_store *from, sg_pg *pg, id_map *map, sg_store_copy_stats *stats,
                       sg_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(from->db,
                           "SELECT id, " EVENT_COPY_COLUMNS " FROM event WHERE " EVENTS_COPIED
                           " ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(from, err, "reading the events to copy from");
    copy_in c = {0};
    int rc =
        copy_start(&c, pg, "COPY event(id, " EVENT_COPY_COLUMNS ") FROM STDIN WITH (FORMAT binary)",
                   "copying the events into", err);
    int step = SQLITE_DONE;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        id_map_add(map, sqlite3_column_int64(st, 0));
        put16(&c.buf, EVENT_FIELDS);
        field_int8(&c.buf, map->base + (int64_t)map->n);
        for (int i = 1; i < EVENT_FIELDS; i++) {
            if (event_int_column[i])
                column_int8(&c.buf, st, i);
            else
                column_bytes(&c.buf, st, i);
        }
        const char *state = (const char *)sqlite3_column_text(st, 8);
        count_state(stats, state ? state : "");
        rc = copy_send(&c, false, err);
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = sg_store_db_error(from, err, "reading the events to copy from");
    sqlite3_finalize(st);
    if (c.pg) {
        int end = copy_end(&c, rc == 0, err);
        rc = rc ? rc : end;
    }
    sg_buf_free(&c.buf);
    if (rc == 0 && map->n) {
        stats->first_id = map->base + 1;
        stats->last_id = map->base + (int64_t)map->n;
    }
    return rc;
}

/* ---- the ledger ---- */

/* Every row as it is, but for the event a build was accepted with: a
 * copied event's row names its new id, so that what the row says stays
 * true. A row whose event was not copied (forwarded, say, or pruned long
 * ago) keeps the source's id: the event stays in the SQLite file under it,
 * and the destination gives no event that id, since its ids start above
 * every id the source gave. Nothing reads the id to decide anything; it
 * tells an operator which event a build came with. */
static int copy_ledger(sg_store *from, sg_pg *pg, const id_map *map, int64_t *builds, sg_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(from->db,
                           "SELECT source, job, number, accepted_at, event_id FROM ledger", -1, &st,
                           NULL) != SQLITE_OK)
        return sg_store_db_error(from, err, "reading the ledger to copy from");
    copy_in c = {0};
    int rc = copy_start(&c, pg,
                        "COPY ledger(source, job, number, accepted_at, event_id) FROM STDIN "
                        "WITH (FORMAT binary)",
                        "copying the ledger into", err);
    int64_t n = 0;
    int step = SQLITE_DONE;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        put16(&c.buf, 5);
        column_bytes(&c.buf, st, 0);
        column_bytes(&c.buf, st, 1);
        column_int8(&c.buf, st, 2);
        column_int8(&c.buf, st, 3);
        field_int8(&c.buf, id_map_get(map, sqlite3_column_int64(st, 4)));
        n++;
        rc = copy_send(&c, false, err);
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = sg_store_db_error(from, err, "reading the ledger to copy from");
    sqlite3_finalize(st);
    if (c.pg) {
        int end = copy_end(&c, rc == 0, err);
        rc = rc ? rc : end;
    }
    sg_buf_free(&c.buf);
    if (rc == 0)
        *builds = n;
    return rc;
}

/* ---- the baseline snapshot ---- */

typedef struct index_copy {
    sg_store *to;
    sg_error *err;
    int rc; /* the first error; the visitor's calls after it do nothing */
} index_copy;

static void skip_job(void *ud, const char *source, const char *job, int64_t v)
{
    (void)ud;
    (void)source;
    (void)job;
    (void)v;
}

static void copy_posted(void *ud, const char *source, const char *job, int64_t number)
{
    index_copy *c = ud;
    if (c->rc == 0)
        c->rc =
            sg_store_index_posted(c->to, source, strlen(source), job, strlen(job), number, c->err);
}

static void copy_docker(void *ud, const char *account, const char *repository, const char *tag,
                        const char *digest)
{
    index_copy *c = ud;
    if (c->rc == 0)
        c->rc =
            sg_store_index_docker(c->to, account, strlen(account), repository, strlen(repository),
                                  tag, strlen(tag), digest, digest ? strlen(digest) : 0, c->err);
}

/* The jobs' rows of the build index, read here rather than through
 * sg_store_index_each, which gives no last running build. */
static int copy_jobs(sg_store *from, sg_store *to, int64_t id, sg_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(from->db,
                           "SELECT source, job, cursor_ms, last_completed, last_running "
                           "FROM build_index WHERE snapshot_id = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(from, err, "reading the build index to copy from");
    sqlite3_bind_int64(st, 1, id);
    int rc = 0, step = SQLITE_DONE;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *source = (const char *)sqlite3_column_text(st, 0);
        size_t slen = (size_t)sqlite3_column_bytes(st, 0);
        const char *job = (const char *)sqlite3_column_text(st, 1);
        size_t jlen = (size_t)sqlite3_column_bytes(st, 1);
        if (sqlite3_column_type(st, 2) != SQLITE_NULL)
            rc = sg_store_index_cursor(to, source, slen, job, jlen, sqlite3_column_int64(st, 2),
                                       err);
        if (rc == 0 && sqlite3_column_type(st, 3) != SQLITE_NULL)
            rc = sg_store_index_ci(to, source, slen, job, jlen, false, sqlite3_column_int64(st, 3),
                                   err);
        if (rc == 0 && sqlite3_column_type(st, 4) != SQLITE_NULL)
            rc = sg_store_index_ci(to, source, slen, job, jlen, true, sqlite3_column_int64(st, 4),
                                   err);
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = sg_store_db_error(from, err, "reading the build index to copy from");
    sqlite3_finalize(st);
    return rc;
}

/* The keys, the build index and the Cluster's masters of snapshot id into
 * the destination's open snapshot; *keys counts the keys. */
static int copy_snapshot_body(sg_store *from, sg_store *to, int64_t id, int64_t *keys,
                              sg_error *err)
{
    sg_key_iter *it;
    int rc = sg_store_keys_open(from, id, &it, err);
    if (rc)
        return rc;
    sg_key_row k;
    int64_t n = 0;
    while ((rc = sg_key_iter_next(it, &k, err)) == 1) {
        if ((rc = sg_store_snapshot_add_key(to, k.db, k.key, k.key_len, k.expire_at_ms, k.payload,
                                            k.payload_len, err)))
            break;
        n++;
    }
    sg_key_iter_free(it);
    if (rc)
        return rc;
    if ((rc = copy_jobs(from, to, id, err)))
        return rc;
    index_copy ic = {.to = to, .err = err};
    const sg_index_visitor v = {
        .cursor = skip_job, .completed = skip_job, .posted = copy_posted, .docker = copy_docker};
    if ((rc = sg_store_index_each(from, id, &v, &ic, err)) || (rc = ic.rc))
        return rc;
    sg_snapshot_node *nodes;
    size_t count;
    if ((rc = sg_store_snapshot_nodes(from, id, &nodes, &count, err)))
        return rc;
    for (size_t i = 0; i < count && rc == 0; i++)
        rc = sg_store_snapshot_add_node(to, nodes[i].node, nodes[i].address, nodes[i].slots,
                                        nodes[i].keys, err);
    sg_snapshot_nodes_free(nodes, count);
    if (rc == 0)
        *keys = n;
    return rc;
}

/* ---- the copy ---- */

/* The highest event id the source ever gave (AUTOINCREMENT remembers those
 * of events pruned since). */
static int source_last_id(sg_store *from, int64_t *id, sg_error *err)
{
    return sg_store_query_int(from,
                              "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE "
                              "name = 'event'), 0), coalesce((SELECT max(id) FROM event), 0))",
                              0, id, err);
}

/* In the destination's open transaction: its journal and ledger locked
 * against writers and found empty, the events and the ledger copied, the
 * identity past the copied ids, the ledger's mark at the last of them (the
 * source's ledger holds every build it should: nothing to catch up), the
 * audit entry. */
static int copy_journal(sg_store *from, sg_pg *pg, int64_t source_last, const char *path,
                        const char *actor, sg_store_copy_stats *stats, sg_error *err)
{
    const char *doing = "locking the journal and the ledger of";
    int rc;
    if ((rc =
             sg_pg_exec(pg, -1, "SET LOCAL lock_timeout = '" LOCK_TIMEOUT "'", NULL, err, doing)) ||
        (rc = sg_pg_exec(pg, -1, "LOCK TABLE event, ledger IN EXCLUSIVE MODE", NULL, err, doing)) ||
        (rc = dest_empty(pg, err)))
        return rc;
    /* above the ids the source gave, and the destination's identity gave
     * (to events deleted since) */
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, source_last);
    id_map map = {0};
    rc = sg_pg_query_int(pg, -1,
                         "SELECT greatest($1::bigint, coalesce(pg_sequence_last_value("
                         "pg_get_serial_sequence('event', 'id')::regclass), 0))",
                         &p, &map.base, err, "reading the event ids of");
    if (rc == 0)
        rc = copy_events(from, pg, &map, stats, err);
    if (rc == 0)
        rc = copy_ledger(from, pg, &map, &stats->ledger, err);
    int64_t last = map.base + (int64_t)map.n;
    free(map.ids);
    if (rc == 0 && last > 0) {
        pgp_reset(&p);
        pgp_int(&p, last);
        rc = sg_pg_exec(pg, -1, "SELECT setval(pg_get_serial_sequence('event', 'id'), $1)", &p, err,
                        "setting the event ids of");
    }
    if (rc == 0)
        rc = sg_pg_ledger_set_mark(pg, last, err);
    if (rc == 0 && actor) {
        char detail[512];
        snprintf(detail, sizeof detail,
                 "from %s: %lld builds in the ledger, %lld held, %lld pending, %lld dead "
                 "events, %lld other Docker events",
                 path, (long long)stats->ledger, (long long)stats->held, (long long)stats->pending,
                 (long long)stats->dead, (long long)stats->docker);
        rc = sg_pg_audit(pg, sg_now_ms(), actor, "copy", detail, err);
    }
    return rc;
}

/* The copy proper, from an open source to an open, empty destination: the
 * source read in one transaction, the destination written in one. */
static int copy_stores(sg_store *from, sg_store *to, const char *path, const char *actor,
                       sg_store_copy_stats *stats, sg_error *err)
{
    int64_t source_last = 0, baseline = 0, theirs = 0;
    int rc = sg_store_exec(from, "BEGIN", err, "reading");
    if (rc)
        return rc;
    if ((rc = source_last_id(from, &source_last, err)) ||
        (rc = sg_store_baseline(from, &baseline, err)) ||
        (rc = sg_store_baseline(to, &theirs, err))) {
        sqlite3_exec(from->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    /* a destination with a baseline of its own (snapshots taken into it
     * already) keeps it: it is newer than the source's */
    sg_snapshot_info info = {0};
    bool snap = baseline && !theirs;
    if (snap && (rc = sg_store_snapshot_get(from, baseline, &info, err)) == 0)
        rc = sg_store_snapshot_begin(to, &info, &stats->snapshot_id, err);
    else if (!snap)
        rc = sg_pg_begin(to->pg, err);
    if (rc) {
        sg_snapshot_info_close(&info);
        sqlite3_exec(from->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    rc = copy_journal(from, to->pg, source_last, path, actor, stats, err);
    if (rc == 0 && snap)
        rc = copy_snapshot_body(from, to, baseline, &stats->snapshot_keys, err);
    if (rc == 0)
        rc = snap ? sg_store_snapshot_commit(to, &info, err) : sg_pg_commit(to->pg, err);
    if (rc && snap)
        sg_store_snapshot_abort(to);
    else if (rc)
        sg_pg_rollback(to->pg);
    if (rc == 0 && snap)
        stats->snapshot_from = baseline;
    else
        stats->snapshot_id = 0;
    stats->baseline_kept = theirs;
    sg_snapshot_info_close(&info);
    /* a read transaction: its end changes nothing */
    sqlite3_exec(from->db, "COMMIT", NULL, NULL, NULL);
    return rc;
}

/* The schema version of the SQLite file at path, read on a connection of
 * its own before any other opens it (closing a connection drops every
 * POSIX lock of the process on the file: see store.c create_file). */
static int file_version(const char *path, int *version, sg_error *err)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *version = sqlite3_column_int(st, 0);
    else
        sg_error_set(err, SG_ESTORE, "opening store %s: %s", path,
                     db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc == SQLITE_ROW ? 0 : SG_ESTORE;
}

/* The source: an existing file holding a stormguard store. */
static int check_source(const char *path, sg_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return errno == ENOENT
                   ? sg_error_set(err, SG_ENOTFOUND,
                                  "no store to copy at %s (the SQLite store is [store] path, "
                                  "--db PATH)",
                                  path)
                   : sg_error_set(err, SG_EIO, "reading %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return sg_error_set(err, SG_EUSAGE, "%s is not an SQLite store: not a file", path);
    int version;
    int rc = file_version(path, &version, err);
    if (rc == 0 && version == 0)
        rc = sg_error_set(err, SG_EUSAGE, "%s holds no stormguard store (schema version 0)", path);
    return rc;
}

int sg_store_copy(const char *path, const char *url, const char *actor, sg_store_copy_stats *out,
                  sg_error *err)
{
    /* neither string is echoed: a URL may hold a password */
    if (!path || sg_store_is_url(path))
        return sg_error_set(err, SG_EUSAGE,
                            "the store to copy from must be an SQLite file ([store] path, --db "
                            "PATH), not a URL");
    if (!url || !sg_store_is_url(url))
        return sg_error_set(err, SG_EUSAGE, "the store to copy into must be a postgresql:// URL");
    int rc;
    if ((rc = sg_store_url_check(url, err)) || (rc = check_source(path, err)))
        return rc;
    sg_store_claim *claim = NULL;
    sg_store *from = NULL, *to = NULL;
    sg_store_options opt = {.synchronous = SG_SYNC_FULL};
    sg_store_copy_stats stats = {0};
    rc = sg_store_claim_new(path, &claim, err);
    if (rc == 0)
        rc = sg_store_open(path, &opt, &from, err);
    if (rc == 0)
        rc = sg_store_open(url, &opt, &to, err);
    /* refused before anything is done, the source's catch-up included; the
     * copy's transaction checks again */
    if (rc == 0)
        rc = dest_empty(to->pg, err);
    if (rc == 0)
        rc = sg_store_ledger_catch_up(from, &stats.caught_up, err);
    if (rc == 0)
        rc = copy_stores(from, to, path, actor, &stats, err);
    sg_store_free(to);
    sg_store_free(from);
    sg_store_claim_free(claim);
    if (rc == 0)
        *out = stats;
    return rc;
}
