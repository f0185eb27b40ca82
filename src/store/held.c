/* The held queue in the store (held.h): what a storm held back, released
 * into the delivery queue, dropped, or summed up by job. */
#include "stormguard/store/held.h"

#include <sqlite3.h>

#include "store_pg_int.h"
#include "store_int.h"

/* The selection of held events, bound as ?1 source, ?2 job glob (a Docker
 * event's job is its repository:tag) and ?9 the highest id
 * (sg_hold_filter.max_id). */
#define JOB_MATCHES(t)                                                                             \
    "(?2 IS NULL OR (CASE WHEN " t "tag IS NULL THEN " t "job ELSE " t "job || ':' || " t          \
    "tag END) GLOB ?2)"
#define HELD_WHERE                                                                                 \
    "state = 'held' AND (?1 IS NULL OR source = ?1) AND " JOB_MATCHES(                             \
        "") " AND "                                                                                \
            "(?9 IS NULL OR id <= ?9)"

/* The order of a job's builds: the number; of a repository's Docker tags,
 * the order Igor posted them (the event's id). */
#define RANK(t) "(CASE WHEN " t ".tag IS NULL THEN " t ".number ELSE " t ".id END)"

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
     * newest held one is superseded and the newest released. A Docker
     * repository's newest is the tag Igor posted last: it posts a cycle's
     * tags in the order of Clouddriver's answer (an unsorted cache set),
     * no date order, but the last posted is the one a notifier without
     * stormguard would have acted on last. */
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
        (rc = held_exec(
             s,
             "WITH newest AS (SELECT e.source, e.job, max(" RANK(
                 "e") ") AS rank, "
                      "e.number AS number, e.tag AS tag "
                      "FROM release_job r JOIN event e ON e.source = r.source "
                      "AND e.job = r.job AND e.state = 'held' AND (?9 IS NULL OR e.id <= ?9) "
                      "AND " JOB_MATCHES(
                          "e.") " GROUP BY e.source, e.job) "
                                "UPDATE event SET state = 'superseded', done_at = ?3, "
                                "last_error = 'superseded by ' || CASE WHEN newest.tag IS NULL "
                                "THEN "
                                "'build ' || newest.number ELSE 'tag ' || newest.tag END "
                                "FROM newest WHERE event.state = 'held' AND event.source = "
                                "newest.source "
                                "AND event.job = newest.job AND " RANK(
                                    "event") " < newest.rank "
                                             "AND " JOB_MATCHES(
                                                 "event.") " AND (?9 IS NULL OR event.id <= ?9)",
             f, now, &gone, err)) ||
        (rc = held_exec(s,
                        "UPDATE event SET state = 'pending', qgen = ?3, next_attempt_at = NULL "
                        "WHERE state = 'held' AND (source, job) IN "
                        "(SELECT source, job FROM release_job) AND " JOB_MATCHES(
                            "") " AND "
                                "(?9 IS NULL OR id <= ?9)",
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
    if (s->pg)
        return sg_pg_held_release(s->pg, f, newest_only, qgen, now, released, superseded, more,
                                  err);
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
    if (s->pg)
        return sg_pg_held_drop(s->pg, f, reason, now, dropped, more, err);
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
    if (s->pg)
        return sg_pg_held_summary(s->pg, limit, fn, ud, held, jobs, err);
    /* one pass over the held rows' index; the totals ride on every row */
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           /* a Docker repository's numbers are identities: no range */
                           "SELECT source, job, count(*), min(CASE WHEN tag IS NULL THEN number "
                           "END), max(CASE WHEN tag IS NULL THEN number END), "
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
