/* The held queue on PostgreSQL (store_pg_int.h): each function has the contract
 * of its sg_store_ twin in held.h, whose SQLite version (held.c) is the
 * reference; a job glob becomes a regular expression (sg_pg_glob_regex). */
#include "store_pg_int.h"

#include <stdlib.h>
#include <string.h>

#include "stormguard/base/util.h"

/* The selection of held events: $1 source, $2 the job glob as a regular
 * expression (a Docker event's job is its repository:tag), $3 the highest
 * id (sg_hold_filter.max_id); each NULL for any. */
#define JOB_MATCHES(t)                                                                             \
    "($2::text IS NULL OR (CASE WHEN " t "tag IS NULL THEN " t "job ELSE " t "job || ':' || " t    \
    "tag END) ~ $2)"
#define HELD_WHERE                                                                                 \
    "state = 'held' AND ($1::text IS NULL OR source = $1) AND " JOB_MATCHES(                       \
        "") " AND ($3::bigint IS NULL OR id <= $3)"

/* The order of a job's builds: the number; of a repository's Docker tags,
 * the order Igor posted them (the event's id). */
#define RANK(t) "(CASE WHEN " t ".tag IS NULL THEN " t ".number ELSE " t ".id END)"

/* What a release sets: pending, in the queue generation $4 or one more
 * than any pending event's, whichever is greater (held.h): behind
 * everything pending, whichever replica journaled it, though this gate's
 * own count may lag another replica's releases. */
#define RELEASE_SET                                                                                \
    "UPDATE event SET state = 'pending', next_attempt_at = NULL, qgen = greatest($4::bigint, "     \
    "(SELECT coalesce(max(q.qgen), 0) + 1 FROM event q WHERE q.state = 'pending')) "

typedef struct selection {
    pg_params p;
    char *regex;
} selection;

/* The parameters $1..$3 of f; the statement's own follow from $4. */
static void select_init(selection *s, const sg_hold_filter *f)
{
    pgp_reset(&s->p);
    s->regex = !f->all && f->job ? sg_pg_glob_regex(f->job) : NULL;
    pgp_str(&s->p, f->all ? NULL : f->source);
    pgp_str(&s->p, s->regex);
    pgp_int_or_null(&s->p, f->max_id > 0 ? f->max_id : 0);
}

static int select_exec(sg_pg *pg, selection *s, const char *sql, int64_t *changed, sg_error *err)
{
    PGresult *r = sg_pg_query(pg, -1, sql, &s->p, err, "changing held events in");
    if (!r)
        return SG_ESTORE;
    if (changed)
        *changed = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return 0;
}

static int64_t limit_of(const sg_hold_filter *f)
{
    return f->limit > 0 ? f->limit : INT64_MAX;
}

static int release_newest(sg_pg *pg, const sg_hold_filter *f, int64_t qgen, int64_t now,
                          int64_t *released, int64_t *superseded, bool *more, sg_error *err)
{
    /* as in held.c: the chunk is the jobs of the oldest held events, each
     * handled whole; its newest held build (a repository's last posted
     * tag) is released and the rest superseded */
    int64_t picked = 0, gone = 0, moved = 0;
    selection s;
    select_init(&s, f);
    int rc = sg_pg_exec(pg, -1,
                        "CREATE TEMP TABLE IF NOT EXISTS release_job (source TEXT, job TEXT, "
                        "PRIMARY KEY (source, job))",
                        NULL, err, "releasing held events in");
    if (rc == 0)
        rc = sg_pg_exec(pg, -1, "DELETE FROM release_job", NULL, err, "releasing held events in");
    if (rc == 0) {
        pgp_int(&s.p, limit_of(f));
        rc = select_exec(pg, &s,
                         "INSERT INTO release_job SELECT DISTINCT source, job FROM (SELECT "
                         "source, job FROM event WHERE " HELD_WHERE " ORDER BY id LIMIT $4) c "
                         "ON CONFLICT DO NOTHING",
                         &picked, err);
        s.p.n--;
    }
    if (rc == 0) {
        pgp_int(&s.p, now);
        rc = select_exec(
            pg, &s,
            "WITH newest AS (SELECT DISTINCT ON (e.source, e.job) e.source, e.job, " RANK(
                "e") " AS rank, e.number, e.tag FROM release_job r JOIN event e ON e.source = "
                     "r.source AND e.job = r.job AND e.state = 'held' AND ($3::bigint IS NULL "
                     "OR e.id <= $3) AND " JOB_MATCHES(
                         "e.") " AND ($1::text IS NULL OR "
                               "e.source = $1) ORDER BY e.source, "
                               "e.job, " RANK(
                                   "e") " DESC) "
                                        "UPDATE event SET state = 'superseded', done_at = $4, "
                                        "last_error = "
                                        "convert_to('superseded by ' || CASE WHEN newest.tag IS "
                                        "NULL THEN 'build ' || "
                                        "newest.number ELSE 'tag ' || newest.tag END, 'UTF8') FROM "
                                        "newest WHERE "
                                        "event.state = 'held' AND event.source = newest.source AND "
                                        "event.job = newest.job "
                                        "AND " RANK("event") " < newest.rank AND " JOB_MATCHES(
                                            "event.") " AND ($3::bigint IS NULL OR event.id <= $3)",
            &gone, err);
        s.p.n--;
    }
    if (rc == 0) {
        pgp_int(&s.p, qgen);
        rc = select_exec(pg, &s,
                         RELEASE_SET "WHERE (source, job) IN (SELECT source, job FROM release_job) "
                                     "AND " HELD_WHERE,
                         &moved, err);
    }
    free(s.regex);
    if (rc)
        return rc;
    *released = moved;
    *superseded = gone;
    *more = f->limit > 0 && picked > 0; /* the chunk after the last one picks none */
    return 0;
}

int sg_pg_held_release(sg_pg *pg, const sg_hold_filter *f, bool newest_only, int64_t qgen,
                       int64_t now, int64_t *released, int64_t *superseded, bool *more,
                       sg_error *err)
{
    *released = *superseded = 0;
    *more = false;
    if (newest_only)
        return release_newest(pg, f, qgen, now, released, superseded, more, err);
    selection s;
    select_init(&s, f);
    pgp_int(&s.p, qgen);
    pgp_int(&s.p, limit_of(f));
    int rc = select_exec(pg, &s,
                         RELEASE_SET "WHERE id IN (SELECT id FROM event WHERE " HELD_WHERE
                                     " ORDER BY id LIMIT $5)",
                         released, err);
    free(s.regex);
    *more = rc == 0 && f->limit > 0 && *released == f->limit;
    return rc;
}

int sg_pg_held_drop(sg_pg *pg, const sg_hold_filter *f, const char *reason, int64_t now,
                    int64_t *dropped, bool *more, sg_error *err)
{
    *dropped = 0;
    selection s;
    select_init(&s, f);
    pgp_int(&s.p, now);
    pgp_str(&s.p, reason);
    pgp_int(&s.p, limit_of(f));
    int rc =
        select_exec(pg, &s,
                    "UPDATE event SET state = 'dropped', done_at = $4, last_error = $5 "
                    "WHERE id IN (SELECT id FROM event WHERE " HELD_WHERE " ORDER BY id LIMIT $6)",
                    dropped, err);
    free(s.regex);
    *more = rc == 0 && f->limit > 0 && *dropped == f->limit;
    return rc;
}

int sg_pg_held_summary(sg_pg *pg, int64_t limit, sg_held_fn fn, void *ud, int64_t *held,
                       int64_t *jobs, sg_error *err)
{
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, limit > 0 ? limit : 1);
    /* a Docker repository's numbers are identities: no range */
    PGresult *r = sg_pg_query(pg, -1,
                              "SELECT source, job, count(*), min(CASE WHEN tag IS NULL THEN "
                              "number END), max(CASE WHEN tag IS NULL THEN number END), "
                              "(sum(count(*)) OVER ())::bigint, count(*) OVER () FROM event "
                              "WHERE state = 'held' GROUP BY source, job "
                              "ORDER BY 3 DESC, source, job LIMIT $1",
                              &p, err, "reading held events in");
    if (!r)
        return SG_ESTORE;
    int64_t total = 0, groups = 0;
    for (int i = 0, n = PQntuples(r); i < n; i++) {
        total = sg_pg_int(r, i, 5);
        groups = sg_pg_int(r, i, 6);
        fn(ud, sg_pg_str(r, i, 0), sg_pg_str(r, i, 1), sg_pg_int(r, i, 2), sg_pg_int(r, i, 3),
           sg_pg_int(r, i, 4));
    }
    PQclear(r);
    if (held)
        *held = total;
    if (jobs)
        *jobs = groups;
    return 0;
}
