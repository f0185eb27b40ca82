/* The gate's journal in the store (events.h): event rows, their delivery
 * queue and retention, and the ledger of accepted builds. */
#include "stormguard/store/events.h"

#include <assert.h>
#include <sqlite3.h>
#include <string.h>

#include "stormguard/base/util.h"
#include "store_pg_int.h"
#include "store_int.h"

static const char *const statement_sql[ST_COUNT] = {
    [ST_EVENT_INSERT] = "INSERT INTO event(received_at, source, job, number, build_ts, kind, "
                        "reason, state, method, path, headers, body, next_attempt_at, done_at, "
                        "qgen, last_error, would, tag, digest) "
                        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
                        "?16, ?17, ?18, ?19)",
    [ST_EVENT_UPDATE] = "UPDATE event SET state = ?1, attempts = ?2, next_attempt_at = ?3, "
                        "last_error = ?4, done_at = ?5 WHERE id = ?6",
    [ST_EVENT_REPLAYED] = "UPDATE event SET kind = ?1, reason = ?2, state = ?3, would = ?4, "
                          "next_attempt_at = ?5, done_at = ?6, qgen = ?7, last_error = ?8 "
                          "WHERE id = ?9",
    [ST_LEDGER_ADD] = "INSERT OR IGNORE INTO ledger(source, job, number, accepted_at, event_id) "
                      "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_LEDGER_HAS] = "SELECT 1 FROM ledger WHERE source = ?1 AND job = ?2 AND number = ?3",
};

/* The cached statement i, reset and with its bindings cleared. */
static sqlite3_stmt *stmt(sg_store *s, int i, sg_error *err)
{
    assert(statement_sql[i]);
    return sg_store_stmt(s, i, statement_sql[i], err);
}

/* ---- events ---- */

static const char *const state_names[SG_STATE_COUNT] = {
    [SG_STATE_PENDING] = "pending",       [SG_STATE_FORWARDED] = "forwarded",
    [SG_STATE_SUPPRESSED] = "suppressed", [SG_STATE_HELD] = "held",
    [SG_STATE_RELEASED] = "released",     [SG_STATE_DROPPED] = "dropped",
    [SG_STATE_SUPERSEDED] = "superseded", [SG_STATE_DEAD] = "dead",
};

const char *sg_event_state_name(sg_event_state state)
{
    return (unsigned)state < SG_STATE_COUNT ? state_names[state] : NULL;
}

int sg_event_state_parse(const char *name, sg_event_state *out)
{
    for (int i = 0; name && i < SG_STATE_COUNT; i++)
        if (!strcmp(name, state_names[i])) {
            *out = (sg_event_state)i;
            return 0;
        }
    return SG_EINVAL;
}

#define EVENT_COLUMNS                                                                              \
    "id, received_at, source, job, number, build_ts, kind, reason, state, method, path, "          \
    "headers, body, attempts, next_attempt_at, last_error, done_at, qgen, would, tag, digest"

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
    /* the table's CHECK admits the names only */
    sg_event_state_parse((const char *)sqlite3_column_text(st, 8), &r->state);
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
    r->would = (const char *)sqlite3_column_text(st, 18);
    r->tag = (const char *)sqlite3_column_text(st, 19);
    r->digest = (const char *)sqlite3_column_text(st, 20);
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

int sg_store_event_insert(sg_store *s, sg_event_row *r, sg_error *err)
{
    if (s->pg)
        return sg_pg_event_insert(s->pg, r, err);
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
    sqlite3_bind_text(st, 8, sg_event_state_name(r->state), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, r->method, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, r->path, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 11, r->headers, -1, SQLITE_STATIC);
    sqlite3_bind_blob64(st, 12, r->body ? r->body : "", r->body_len, SQLITE_STATIC);
    bind_int_or_null(st, 13, r->next_attempt_at);
    bind_int_or_null(st, 14, r->done_at);
    sqlite3_bind_int64(st, 15, r->qgen);
    bind_text_or_null(st, 16, r->last_error);
    bind_text_or_null(st, 17, r->would);
    bind_text_or_null(st, 18, r->tag);
    bind_text_or_null(st, 19, r->digest);
    int rc = sg_store_step_done(s, st, err, "journaling an event in");
    if (rc == 0)
        r->id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

int sg_store_event_update(sg_store *s, int64_t id, sg_event_state state, int64_t attempts,
                          int64_t next_attempt_at, const char *last_error, int64_t done_at,
                          sg_error *err)
{
    if (s->pg)
        return sg_pg_event_update(s->pg, id, state, attempts, next_attempt_at, last_error, done_at,
                                  err);
    sqlite3_stmt *st = stmt(s, ST_EVENT_UPDATE, err);
    if (!st)
        return SG_ESTORE;
    sqlite3_bind_text(st, 1, sg_event_state_name(state), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, attempts);
    bind_int_or_null(st, 3, next_attempt_at);
    bind_text_or_null(st, 4, last_error);
    bind_int_or_null(st, 5, done_at);
    sqlite3_bind_int64(st, 6, id);
    return sg_store_step_done(s, st, err, "updating an event in");
}

int sg_store_events_update(sg_store *s, sg_event_outcome *outs, size_t n, sg_error *err)
{
    if (s->pg)
        return sg_pg_events_update(s->pg, outs, n, err);
    for (size_t i = 0; i < n; i++) {
        sg_event_outcome *o = &outs[i];
        int rc = sg_store_event_update(s, o->id, o->state, o->attempts, o->next_attempt_at,
                                       o->last_error, o->done_at, err);
        if (rc)
            return rc;
        o->followers = false; /* one daemon: nothing to claim */
    }
    return 0;
}

int sg_store_events_journal(sg_store *s, sg_event_insert *ins, size_t n, sg_error *err)
{
    if (s->pg)
        return sg_pg_events_journal(s->pg, ins, n, err);
    for (size_t i = 0; i < n; i++) {
        sg_event_row *r = ins[i].row;
        int rc = sg_store_event_insert(s, r, err);
        ins[i].added = ins[i].claimed = false; /* one daemon: nothing to claim */
        if (rc == 0 && ins[i].ledger)
            rc = sg_store_ledger_add(s, r->source, r->job, r->number, r->id, r->received_at,
                                     &ins[i].added, err);
        if (rc)
            return rc;
    }
    return 0;
}

int sg_store_events_lock_jobs(sg_store *s, const sg_event_insert *ins, size_t n, bool wait,
                              bool *got, sg_error *err)
{
    *got = true;
    return s->pg ? sg_pg_events_lock_jobs(s->pg, ins, n, wait, got, err) : 0;
}

int sg_store_event_replayed(sg_store *s, const sg_event_row *row, sg_error *err)
{
    if (s->pg)
        return sg_pg_event_replayed(s->pg, row, err);
    sqlite3_stmt *st = stmt(s, ST_EVENT_REPLAYED, err);
    if (!st)
        return SG_ESTORE;
    sqlite3_bind_text(st, 1, row->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, row->reason, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, sg_event_state_name(row->state), -1, SQLITE_STATIC);
    bind_text_or_null(st, 4, row->would);
    bind_int_or_null(st, 5, row->next_attempt_at);
    bind_int_or_null(st, 6, row->done_at);
    sqlite3_bind_int64(st, 7, row->qgen);
    bind_text_or_null(st, 8, row->last_error);
    sqlite3_bind_int64(st, 9, row->id);
    return sg_store_step_done(s, st, err, "journaling a replay in");
}

int sg_store_events_pending(sg_store *s, int64_t after_gen, int64_t after_id, int limit,
                            sg_event_fn fn, void *ud, sg_error *err)
{
    if (s->pg)
        return sg_pg_events_pending(s->pg, after_gen, after_id, limit, fn, ud, err);
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
    if (s->pg)
        return sg_pg_queue_gen(s->pg, gen, err);
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

int sg_store_events_query(sg_store *s, const sg_event_state *state, const char *kind,
                          const char *job, int limit, sg_event_fn fn, void *ud, sg_error *err)
{
    if (s->pg)
        return sg_pg_events_query(s->pg, state, kind, job, limit, fn, ud, err);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT " EVENT_COLUMNS " FROM event WHERE (?1 IS NULL OR state = ?1) "
                           "AND (?2 IS NULL OR kind = ?2) AND (?3 IS NULL OR job = ?3) "
                           "ORDER BY id DESC LIMIT ?4",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "reading events in");
    bind_text_or_null(st, 1, state ? sg_event_state_name(*state) : NULL);
    bind_text_or_null(st, 2, kind);
    bind_text_or_null(st, 3, job);
    sqlite3_bind_int(st, 4, limit);
    return each_event(s, st, fn, ud, err);
}

int sg_store_event_counts(sg_store *s, bool open_only, sg_count_fn fn, void *ud, sg_error *err)
{
    if (s->pg)
        return sg_pg_event_counts(s->pg, open_only, fn, ud, err);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           open_only ? "SELECT kind, state, would, count(*) FROM event WHERE "
                                       "state IN ('pending', 'held', 'dead') "
                                       "GROUP BY kind, state, would"
                                     : "SELECT kind, state, would, count(*) FROM event "
                                       "GROUP BY kind, state, would",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "counting events in");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sg_event_state state;
        if (sg_event_state_parse((const char *)sqlite3_column_text(st, 1), &state) == 0)
            fn(ud, (const char *)sqlite3_column_text(st, 0), state,
               (const char *)sqlite3_column_text(st, 2), sqlite3_column_int64(st, 3));
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sg_store_db_error(s, err, "counting events in");
}

int sg_store_events_stale(sg_store *s, int64_t pending, sg_events_stale *out, sg_error *err)
{
    if (s->pg)
        return sg_pg_events_stale(s->pg, pending, out, err);
    *out = (sg_events_stale){.changes = 0, .planned = -1};
    return 0;
}

int sg_store_events_analyze(sg_store *s, bool *done, sg_error *err)
{
    if (s->pg)
        return sg_pg_events_analyze(s->pg, done, err);
    *done = false;
    return 0;
}

int sg_store_oldest_pending(sg_store *s, int64_t *received_at, sg_error *err)
{
    if (s->pg)
        return sg_pg_oldest_pending(s->pg, received_at, err);
    /* a skip-scan of event_open by hand: SQLite has none for min() per group */
    return sg_store_query_int(
        s,
        "WITH RECURSIVE g(q) AS ("
        " SELECT (SELECT qgen FROM event WHERE state = 'pending' ORDER BY qgen, id LIMIT 1)"
        " UNION ALL"
        " SELECT (SELECT qgen FROM event WHERE state = 'pending' AND qgen > g.q"
        "         ORDER BY qgen, id LIMIT 1) FROM g WHERE g.q IS NOT NULL)"
        " SELECT coalesce(min((SELECT received_at FROM event WHERE state = 'pending' AND"
        "                      qgen = g.q ORDER BY qgen, id LIMIT 1)), 0)"
        " FROM g WHERE g.q IS NOT NULL",
        0, received_at, err);
}

int sg_store_oldest_held(sg_store *s, int64_t *received_at, sg_error *err)
{
    if (s->pg)
        return sg_pg_oldest_held(s->pg, received_at, err);
    return sg_store_query_int(s,
                              "SELECT coalesce((SELECT received_at FROM event WHERE id = "
                              "(SELECT min(id) FROM event INDEXED BY event_held WHERE "
                              "state = 'held')), 0)",
                              0, received_at, err);
}

int sg_store_last_event_id(sg_store *s, int64_t *id, sg_error *err)
{
    if (s->pg)
        return sg_pg_last_event_id(s->pg, id, err);
    return sg_store_query_int(s, "SELECT coalesce(max(id), 0) FROM event", 0, id, err);
}

int sg_store_events_prune(sg_store *s, int64_t before, int64_t limit, int64_t *cursor,
                          int64_t *deleted, bool *more, sg_error *err)
{
    if (s->pg)
        return sg_pg_events_prune(s->pg, before, limit, cursor, deleted, more, err);
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

/* ---- the ledger ---- */

int sg_store_ledger_add(sg_store *s, const char *source, const char *job, int64_t number,
                        int64_t event_id, int64_t accepted_at, bool *added, sg_error *err)
{
    if (s->pg)
        return sg_pg_ledger_add(s->pg, source, job, number, event_id, accepted_at, added, err);
    /* OR IGNORE would skip a row with a NULL key just as silently as a
     * duplicate; build events always have both (event.c refuses others) */
    assert(source && job);
    sqlite3_stmt *st = stmt(s, ST_LEDGER_ADD, err);
    if (!st)
        return SG_ESTORE;
    sqlite3_bind_text(st, 1, source, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, job, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, number);
    sqlite3_bind_int64(st, 4, accepted_at);
    sqlite3_bind_int64(st, 5, event_id);
    int rc = sg_store_step_done(s, st, err, "writing the ledger in");
    *added = rc == 0 && sqlite3_changes(s->db) > 0;
    return rc;
}

int sg_store_ledger_has(sg_store *s, const char *source, const char *job, int64_t number, bool *has,
                        sg_error *err)
{
    if (s->pg)
        return sg_pg_ledger_has(s->pg, source, job, number, has, err);
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
    if (s->pg)
        return sg_pg_ledger_newest(s->pg, fn, ud, err);
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

int sg_store_ledger_jobs(sg_store *s, sg_ledger_fn fn, void *ud, int64_t *builds, sg_error *err)
{
    if (s->pg)
        return sg_pg_ledger_jobs(s->pg, fn, ud, builds, err);
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

int sg_store_ledger_docker(sg_store *s, sg_ledger_tag_fn fn, void *ud, sg_error *err)
{
    if (s->pg)
        return sg_pg_ledger_docker(s->pg, fn, ud, err);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT source, job, tag, digest FROM event INDEXED BY event_docker "
                           "WHERE tag IS NOT NULL AND kind IN ('new', 'unknown') ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "reading the ledger's Docker tags in");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        fn(ud, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
           (const char *)sqlite3_column_text(st, 2), (const char *)sqlite3_column_text(st, 3));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sg_store_db_error(s, err, "reading the ledger's Docker tags in");
}

int sg_store_ledger_mark(sg_store *s, int64_t *upto, sg_error *err)
{
    if (s->pg)
        return sg_pg_ledger_mark(s->pg, upto, err);
    return sg_store_query_int(s, "SELECT upto FROM ledger_mark WHERE id = 1", 0, upto, err);
}

int sg_store_ledger_set_mark(sg_store *s, int64_t upto, sg_error *err)
{
    if (s->pg)
        return sg_pg_ledger_set_mark(s->pg, upto, err);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "UPDATE ledger_mark SET upto = ?1 WHERE id = 1", -1, &st, NULL) !=
        SQLITE_OK)
        return sg_store_db_error(s, err, "writing the ledger mark in");
    sqlite3_bind_int64(st, 1, upto);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sg_store_db_error(s, err, "writing the ledger mark in");
}

int sg_store_ledger_catch_up(sg_store *s, int64_t *added, sg_error *err)
{
    if (s->pg)
        return sg_pg_ledger_catch_up(s->pg, added, err);
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
