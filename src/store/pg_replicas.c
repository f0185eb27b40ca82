/* Gates sharing one PostgreSQL store (replicas.h; schema/pg/003_replicas.sql):
 * the replica rows and their leases, and the delivery claims.
 *
 * Leases are kept by the server's clock (NOW_MS), never a replica's: two
 * machines' clocks may disagree by more than a lease. */
#include "store_pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stormguard/base/util.h"

#define NOW_MS "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"

int sg_pg_replica_join(sg_pg *pg, const char *name, int64_t lease_ms, sg_error *err)
{
    pg_params p;
    pgp_reset(&p);
    pgp_str(&p, name);
    pgp_int(&p, lease_ms);
    return sg_pg_exec(pg, -1,
                      "INSERT INTO replica(name, started_at, lease_until) VALUES ($1, " NOW_MS
                      ", " NOW_MS " + $2) ON CONFLICT (name) DO UPDATE SET lease_until = "
                      "EXCLUDED.lease_until",
                      &p, err, "joining the replicas of");
}

int sg_pg_replica_renew(sg_pg *pg, const char *name, int64_t lease_ms, int64_t *released,
                        sg_error *err)
{
    *released = 0;
    pg_params p;
    pgp_reset(&p);
    pgp_str(&p, name);
    pgp_int(&p, lease_ms);
    /* a replica found dead and removed while it could not reach the store
     * (its claims gone to the others) joins again: it delivers what it
     * still holds, the window the crash guarantee already has */
    int rc = sg_pg_replica_join(pg, name, lease_ms, err);
    if (rc)
        return rc;
    PGresult *r = sg_pg_query(pg, -1,
                              "UPDATE event e SET claimed_by = NULL WHERE e.state = 'pending' AND "
                              "e.claimed_by IS NOT NULL AND NOT EXISTS (SELECT 1 FROM replica r "
                              "WHERE r.name = e.claimed_by AND r.lease_until >= " NOW_MS ")",
                              NULL, err, "releasing the claims of replicas gone from");
    if (!r)
        return SG_ESTORE;
    *released = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    /* a replica gone for a minute is gone: its claims were released above */
    return sg_pg_exec(pg, -1, "DELETE FROM replica WHERE lease_until < " NOW_MS " - 60000", NULL,
                      err, "removing replicas gone from");
}

int sg_pg_replica_leave(sg_pg *pg, const char *name, sg_error *err)
{
    pg_params p;
    pgp_reset(&p);
    pgp_str(&p, name);
    int rc = sg_pg_exec(pg, -1,
                        "UPDATE event SET claimed_by = NULL WHERE state = 'pending' AND "
                        "claimed_by = $1",
                        &p, err, "releasing this replica's claims in");
    return rc ? rc
              : sg_pg_exec(pg, -1, "DELETE FROM replica WHERE name = $1", &p, err,
                           "leaving the replicas of");
}

int sg_pg_replicas(sg_pg *pg, sg_replica_fn fn, void *ud, sg_error *err)
{
    PGresult *r = sg_pg_query(
        pg, -1,
        "SELECT r.name, r.started_at, r.lease_until, r.lease_until >= " NOW_MS
        ", (SELECT count(*) FROM event e WHERE e.state = 'pending' AND e.claimed_by = r.name) "
        "FROM replica r ORDER BY r.started_at, r.name",
        NULL, err, "listing the replicas of");
    if (!r)
        return SG_ESTORE;
    for (int i = 0, n = PQntuples(r); i < n; i++) {
        sg_replica_row row = {.name = sg_pg_str(r, i, 0),
                              .started_at = sg_pg_int(r, i, 1),
                              .lease_until = sg_pg_int(r, i, 2),
                              .live = sg_pg_bool(r, i, 3),
                              .claimed = sg_pg_int(r, i, 4)};
        fn(ud, &row);
    }
    PQclear(r);
    return 0;
}

/* Claims the heads: an unclaimed pending event none of whose job's earlier
 * pending events is claimed by another replica or by none. An event
 * another replica is claiming right now is locked (skipped) and still
 * unclaimed in this statement's snapshot, so it holds its job's later
 * events back here too: two replicas never split one job's queue. The
 * rows claimed come back in queue order. The look for an earlier event is
 * a subquery per candidate (a scalar one, which the planner cannot turn
 * into a join).
 *
 * Each statement takes one event per job; a claim looked at every
 * unclaimed event: on a backlog of 40,000 of 500 jobs, 280 ms a call. It looks first at
 * the CLAIM_WINDOW times limit first ones in queue order (22 ms there),
 * and job by job only when those were that many and gave less than a
 * quarter of limit: the front may be one job's long queue (a release), or
 * with two replicas the jobs whose heads the other one holds, which must
 * not hold the other jobs back. Either way the front moves: what the
 * window gives leaves it. Job by job costs two index lookups a job with
 * pending events, whatever the backlog: the look at every unclaimed event
 * it replaced walked, on each call, the other replica's jobs' backlog in
 * front of this one's, 0.3 to 1 s a call on 50,000 to 300,000 pending,
 * and two replicas stopped delivering behind a backlog.
 *
 * The statements are prepared on a keyed connection (a replica's claims
 * have one) and planned at each call elsewhere; their plans are only as
 * good as the table's statistics (sg_store_events_analyze). */
#define CLAIM_WINDOW 4 /* candidates: this many times limit */
#define CLAIM_ENOUGH 4 /* a full window giving limit / CLAIM_ENOUGH or more suffices */

/* Whether x, an unclaimed pending event, is a head ($1: the replica). */
#define CLAIM_HEAD(x)                                                                              \
    "(SELECT q.id FROM event q WHERE q.state = 'pending' AND q.source = " x ".source AND "         \
    "q.job = " x ".job AND (q.qgen, q.id) < (" x ".qgen, " x ".id) AND q.claimed_by IS "           \
    "DISTINCT FROM $1 LIMIT 1) IS NULL"

/* The first $2 of the heads k that no other claim holds: locked in queue
 * order through the primary key, those another replica is locking
 * skipped (not counted), and rechecked once locked. The condition is on
 * the claim alone, not the state (CLAIM_UPDATE checks that): one on the
 * pending unclaimed events let the planner drive the lock by
 * event_unclaimed and match each of its rows to the heads, which on
 * statistics taken while nothing was pending (the index counted empty)
 * walked the whole backlog, 1.9 s a call on 270,000
 * (sg_store_events_stale). */
#define CLAIM_LOCK                                                                                 \
    "c AS (SELECT e.id, e.state, e.claimed_by FROM event e WHERE e.id IN (SELECT id FROM k) AND "  \
    "e.claimed_by IS NULL ORDER BY e.qgen, e.id LIMIT $2 FOR UPDATE OF e SKIP LOCKED), "

/* The claim of the rows c locked: those still pending and unclaimed. */
#define CLAIM_UPDATE                                                                               \
    "u AS (UPDATE event SET claimed_by = $1 FROM c WHERE event.id = c.id AND c.state = "           \
    "'pending' AND c.claimed_by IS NULL RETURNING event.*) "

/* Among the window's candidates ($3 of them): one row at least, its last
 * column whether the window was full, beside the rows it gave. The heads
 * among them (k) are told apart on the window alone. */
#define CLAIM_WINDOW_SQL                                                                           \
    "WITH w AS MATERIALIZED (SELECT id, source, job, qgen FROM event WHERE state = 'pending' AND " \
    "claimed_by IS NULL ORDER BY qgen, id LIMIT $3), k AS MATERIALIZED (SELECT w.id FROM w "       \
    "WHERE " CLAIM_HEAD("w") "), " CLAIM_LOCK CLAIM_UPDATE "SELECT " PG_EVENT_COLUMNS              \
                             ", full_window FROM (SELECT count(*) = $3 AS full_window FROM w) "    \
                             "s LEFT JOIN u ON true ORDER BY qgen, id"

/* Job by job (j: every job with pending events, by skips through
 * event_lane), the first pending event not $1's: a head when unclaimed
 * (all before it are $1's); and the unclaimed events without a job
 * (event_unclaimed_bare), each its own head. */
#define CLAIM_JOBS_SQL                                                                             \
    "WITH RECURSIVE j(source, job) AS ((SELECT source, job FROM event WHERE state = 'pending' "    \
    "AND source IS NOT NULL AND job IS NOT NULL ORDER BY source, job LIMIT 1) UNION ALL SELECT "   \
    "n.source, n.job FROM j CROSS JOIN LATERAL (SELECT source, job FROM event WHERE state = "      \
    "'pending' AND (source, job) > (j.source, j.job) ORDER BY source, job LIMIT 1) n), w AS "      \
    "MATERIALIZED (SELECT f.* FROM j CROSS JOIN LATERAL (SELECT e.id, e.qgen, e.claimed_by FROM "  \
    "event e WHERE e.state = 'pending' AND e.source = j.source AND e.job = j.job AND "             \
    "e.claimed_by IS DISTINCT FROM $1 ORDER BY e.qgen, e.id LIMIT 1) f UNION ALL (SELECT id, "     \
    "qgen, claimed_by FROM event WHERE state = 'pending' AND claimed_by IS NULL AND (source IS "   \
    "NULL OR job IS NULL) ORDER BY qgen, id LIMIT $2)), k AS MATERIALIZED (SELECT w.id FROM w "    \
    "WHERE w.claimed_by IS NULL), " CLAIM_LOCK CLAIM_UPDATE "SELECT " PG_EVENT_COLUMNS             \
    " FROM u ORDER BY qgen, id"

typedef struct claimed {
    sg_event_fn fn;
    void *ud;
    int n;
    bool stop;
} claimed;

/* Passes the claimed rows of r to x->fn (a row without an id: none). */
static void pass_claimed(PGresult *r, claimed *x)
{
    for (int i = 0, n = PQntuples(r); i < n && !x->stop; i++) {
        if (PQgetisnull(r, i, 0))
            continue;
        sg_event_row e;
        sg_pg_read_event(r, i, &e);
        x->n++;
        x->stop = x->fn(x->ud, &e) != 0;
    }
}

int sg_pg_events_claim(sg_pg *pg, const char *name, int limit, sg_event_fn fn, void *ud,
                       sg_error *err)
{
    pg_params p;
    pgp_reset(&p);
    pgp_str(&p, name);
    pgp_int(&p, limit);
    pgp_int(&p, (int64_t)limit * CLAIM_WINDOW);
    PGresult *r = sg_pg_query(pg, pg->keyed ? PG_EVENTS_CLAIM : -1, CLAIM_WINDOW_SQL, &p, err,
                              "claiming events in");
    if (!r)
        return SG_ESTORE;
    claimed x = {fn, ud, 0, false};
    bool full = PQntuples(r) > 0 && sg_pg_bool(r, 0, PQnfields(r) - 1);
    pass_claimed(r, &x);
    PQclear(r);
    if (x.stop || !full || x.n * CLAIM_ENOUGH >= limit)
        return 0;
    pgp_reset(&p);
    pgp_str(&p, name);
    pgp_int(&p, limit - x.n);
    r = sg_pg_query(pg, pg->keyed ? PG_EVENTS_CLAIM_JOBS : -1, CLAIM_JOBS_SQL, &p, err,
                    "claiming events in");
    if (!r)
        return SG_ESTORE;
    pass_claimed(r, &x);
    PQclear(r);
    return 0;
}

/* ---- the replica's claim on the store ---- */

int sg_pg_claim(const char *url, sg_pg **out, char **name, sg_error *err)
{
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* unique per run: a container's gate is pid 1 at every start, and a
     * name met again would inherit claims its memory never had */
    char *nm = sg_xasprintf("%ld@%s#%llx", (long)getpid(), host,
                            (unsigned long long)ts.tv_sec * 1000000ULL +
                                (unsigned long long)ts.tv_nsec / 1000);
    sg_pg *pg = NULL;
    int rc = sg_pg_open(url, NULL, &pg, err);
    if (rc == 0) {
        char *set = sg_xasprintf("SET application_name = 'stormguard run %s'", nm);
        for (char *q = set + 30; q[1]; q++) /* a host name holds no quote, but */
            if (*q == '\'')
                *q = '_';
        rc = sg_pg_exec(pg, -1, set, NULL, err, "naming the connection to");
        free(set);
    }
    if (rc == 0)
        rc = sg_pg_replica_join(pg, nm, SG_REPLICA_LEASE_MS, err);
    if (rc) {
        sg_pg_free(pg);
        free(nm);
        return rc;
    }
    *out = pg;
    *name = nm;
    return 0;
}

int sg_pg_accepted_since(sg_pg *pg, int64_t after_id, int limit, sg_ledger_tag_fn fn, void *ud,
                         int64_t *last, sg_error *err)
{
    *last = after_id;
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, after_id);
    pgp_int(&p, limit);
    PGresult *r = sg_pg_query(pg, -1,
                              "SELECT id, source, job, tag, digest FROM event WHERE id > $1 AND "
                              "kind IN ('new', 'unknown') ORDER BY id LIMIT $2",
                              &p, err, "reading the builds the replicas accepted in");
    if (!r)
        return SG_ESTORE;
    for (int i = 0, n = PQntuples(r); i < n; i++) {
        *last = sg_pg_int(r, i, 0);
        fn(ud, sg_pg_str(r, i, 1), sg_pg_str(r, i, 2), sg_pg_str(r, i, 3), sg_pg_str(r, i, 4));
    }
    PQclear(r);
    return 0;
}

/* ---- the watcher's lock ---- */

/* Whether this session holds the lock, else an attempt to take it (the
 * lock stacks per session: taken once, never again while held). */
#define WATCHER_KEY "7301163522303"
#define WATCHER_HELD                                                                               \
    "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = "            \
    "pg_backend_pid() AND classid = (" WATCHER_KEY                                                 \
    "::bigint >> 32)::oid AND objid = (" WATCHER_KEY                                               \
    "::bigint & 4294967295)::oid AND objsubid = 1)"

int sg_pg_watcher(sg_pg *pg, bool give_up, bool *held, sg_error *err)
{
    int64_t got = 0;
    /* held once at most (above): one unlock lets it go */
    int rc =
        give_up ? sg_pg_query_int(pg, -1,
                                  "SELECT (CASE WHEN " WATCHER_HELD
                                  " THEN pg_advisory_unlock(" WATCHER_KEY ") END)::int",
                                  NULL, &got, err, "giving up the watcher's lock of")
                : sg_pg_query_int(pg, -1,
                                  "SELECT (CASE WHEN " WATCHER_HELD
                                  " THEN true ELSE pg_try_advisory_lock(" WATCHER_KEY ") END)::int",
                                  NULL, &got, err, "taking the watcher's lock of");
    if (rc == 0)
        *held = !give_up && got != 0;
    return rc;
}

/* ---- guard and storm mode ---- */

#define MODE_CHANNEL "stormguard_mode"

/* An operator's off after the mode began wins over its extension; a mode
 * that begins after the row's ended (or was turned off) is a new one. */
#define MODE_NEW "(gate_mode.until_ms < EXCLUDED.since_ms OR gate_mode.off_at < EXCLUDED.since_ms)"
#define MODE_OFF "(gate_mode.off_at >= EXCLUDED.since_ms)"

int sg_pg_mode_publish(sg_pg *pg, const sg_mode_row *m, bool notify, sg_error *err)
{
    if (sg_pg_follow_clock(pg, err))
        return SG_ESTORE;
    pg_params p;
    pgp_reset(&p);
    pgp_str(&p, m->scope ? m->scope : "");
    pgp_int(&p, sg_pg_to_server(pg, m->since_ms));
    pgp_int(&p, sg_pg_to_server(pg, m->until_ms));
    pgp_str(&p, m->reason ? m->reason : "");
    pgp_str(&p, m->replica);
    pgp_int_or_null(&p, sg_pg_to_server(pg, m->wipe_at_ms));
    pgp_int_or_null(&p, sg_pg_to_server(pg, m->expect_until_ms));
    int rc = sg_pg_exec(
        pg, -1,
        "INSERT INTO gate_mode(scope, since_ms, until_ms, reason, replica, wipe_at, expect_until) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (scope) DO UPDATE SET "
        "since_ms = CASE WHEN " MODE_NEW " THEN EXCLUDED.since_ms ELSE gate_mode.since_ms END, "
        "reason = CASE WHEN " MODE_NEW " THEN EXCLUDED.reason ELSE gate_mode.reason END, "
        "until_ms = CASE WHEN " MODE_OFF " THEN gate_mode.until_ms WHEN " MODE_NEW
        " THEN EXCLUDED.until_ms ELSE GREATEST(gate_mode.until_ms, EXCLUDED.until_ms) END, "
        "off_at = CASE WHEN " MODE_OFF " THEN gate_mode.off_at END, "
        "wipe_at = GREATEST(gate_mode.wipe_at, EXCLUDED.wipe_at), "
        "expect_until = GREATEST(gate_mode.expect_until, EXCLUDED.expect_until), "
        "replica = EXCLUDED.replica",
        &p, err, "publishing a mode in");
    if (rc || !notify)
        return rc;
    return sg_pg_exec(pg, -1, "NOTIFY " MODE_CHANNEL, NULL, err, "telling the replicas of");
}

int sg_pg_mode_off(sg_pg *pg, const char *replica, int64_t at_ms, sg_error *err)
{
    if (sg_pg_follow_clock(pg, err))
        return SG_ESTORE;
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, sg_pg_to_server(pg, at_ms));
    pgp_str(&p, replica);
    int rc = sg_pg_exec(pg, -1,
                        "UPDATE gate_mode SET until_ms = LEAST(until_ms, $1), off_at = $1, "
                        "replica = $2 WHERE scope = ''",
                        &p, err, "turning guard mode off in");
    return rc ? rc
              : sg_pg_exec(pg, -1, "NOTIFY " MODE_CHANNEL, NULL, err, "telling the replicas of");
}

int sg_pg_modes(sg_pg *pg, int64_t after_ms, sg_mode_row_fn fn, void *ud, sg_error *err)
{
    if (sg_pg_follow_clock(pg, err))
        return SG_ESTORE;
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, sg_pg_to_server(pg, after_ms));
    PGresult *r = sg_pg_query(pg, -1,
                              "SELECT scope, since_ms, until_ms, coalesce(off_at, 0), reason, "
                              "replica, coalesce(wipe_at, 0), coalesce(expect_until, 0) FROM "
                              "gate_mode WHERE until_ms > $1 OR off_at > $1 ORDER BY scope",
                              &p, err, "reading the modes in");
    if (!r)
        return SG_ESTORE;
    for (int i = 0, n = PQntuples(r); i < n; i++) {
        const char *scope = sg_pg_str(r, i, 0);
        sg_mode_row m = {.scope = scope && *scope ? scope : NULL,
                         .since_ms = sg_pg_from_server(pg, sg_pg_int(r, i, 1)),
                         .until_ms = sg_pg_from_server(pg, sg_pg_int(r, i, 2)),
                         .off_at = sg_pg_from_server(pg, sg_pg_int(r, i, 3)),
                         .reason = sg_pg_str(r, i, 4),
                         .replica = sg_pg_str(r, i, 5),
                         .wipe_at_ms = sg_pg_from_server(pg, sg_pg_int(r, i, 6)),
                         .expect_until_ms = sg_pg_from_server(pg, sg_pg_int(r, i, 7))};
        fn(ud, &m);
    }
    PQclear(r);
    return 0;
}

/* ---- the listener ---- */

struct sg_store_listener {
    sg_pg *pg;
};

int sg_store_listen(const char *url, sg_store_listener **out, sg_error *err)
{
    if (!sg_pg_is_url(url))
        return sg_error_set(err, SG_EINVAL, "an SQLite store has no replicas to listen to");
    sg_store_options ro = {.readonly = true};
    sg_pg *pg = NULL;
    int rc = sg_pg_open(url, &ro, &pg, err);
    if (rc == 0)
        rc = sg_pg_exec(pg, -1, "LISTEN " MODE_CHANNEL, NULL, err, "listening to");
    if (rc == 0 && PQsetnonblocking(pg->conn, 1) != 0)
        rc = sg_error_set(err, SG_ESTORE,
                          "listening to %s: cannot make the connection non-blocking", pg->where);
    if (rc) {
        sg_pg_free(pg);
        return rc;
    }
    *out = sg_xmalloc(sizeof **out);
    (*out)->pg = pg;
    return 0;
}

int sg_store_listener_fd(const sg_store_listener *l)
{
    return PQsocket(l->pg->conn);
}

int sg_store_listener_read(sg_store_listener *l, bool *notified, sg_error *err)
{
    *notified = false;
    PGconn *conn = l->pg->conn;
    if (!PQconsumeInput(conn) || PQstatus(conn) != CONNECTION_OK) {
        char line[512];
        snprintf(line, sizeof line, "%s", PQerrorMessage(conn));
        line[strcspn(line, "\n")] = '\0';
        return sg_error_set(err, SG_ESTORE, "listening to %s: %s", l->pg->where,
                            *line ? line : "the connection was closed");
    }
    PGnotify *n;
    while ((n = PQnotifies(conn))) {
        *notified = true;
        PQfreemem(n);
    }
    return 0;
}

void sg_store_listener_free(sg_store_listener *l)
{
    if (!l)
        return;
    sg_pg_free(l->pg);
    free(l);
}
