/* The gate's journal, the ledger, episodes and the audit log on PostgreSQL
 * (store_pg_int.h; schema/pg/001_gate.sql): each function has the contract of
 * its sg_store_ twin in events.h and episodes.h, whose SQLite versions
 * (events.c, episodes.c) are the reference. */
#include "store_pg_int.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/base/util.h"

static const char *const statement_sql[PG_SLOT_COUNT] = {
    [PG_EVENT_INSERT] = "INSERT INTO event(received_at, source, job, number, build_ts, kind, "
                        "reason, state, method, path, headers, body, next_attempt_at, done_at, "
                        "qgen, last_error, would, tag, digest) "
                        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, "
                        "$16, $17, $18, $19) RETURNING id",
    [PG_EVENT_UPDATE] = "UPDATE event SET state = $1, attempts = $2, next_attempt_at = $3, "
                        "last_error = $4, done_at = $5 WHERE id = $6 AND ($7::text IS NULL OR "
                        "claimed_by IS NULL OR claimed_by = $7)",
    [PG_LEDGER_ADD] = "INSERT INTO ledger(source, job, number, accepted_at, event_id) "
                      "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    [PG_EVENT_REPLAYED] = "UPDATE event SET kind = $1, reason = $2, state = $3, would = $4, "
                          "next_attempt_at = $5, done_at = $6, qgen = $7, last_error = $8 "
                          "WHERE id = $9",
    [PG_LEDGER_HAS] = "SELECT 1 FROM ledger WHERE source = $1 AND job = $2 AND number = $3",
};

void sg_pg_read_event(const PGresult *r, int i, sg_event_row *e)
{
    memset(e, 0, sizeof *e);
    e->id = sg_pg_int(r, i, 0);
    e->received_at = sg_pg_int(r, i, 1);
    e->source = sg_pg_str(r, i, 2);
    e->job = sg_pg_str(r, i, 3);
    e->number = sg_pg_int(r, i, 4);
    e->build_ts = sg_pg_int(r, i, 5);
    e->kind = sg_pg_str(r, i, 6);
    e->reason = sg_pg_str(r, i, 7);
    /* the table's CHECK admits the names only */
    sg_event_state_parse(sg_pg_str(r, i, 8), &e->state);
    e->method = sg_pg_str(r, i, 9);
    e->path = sg_pg_str(r, i, 10);
    e->headers = sg_pg_str(r, i, 11);
    e->body = sg_pg_str(r, i, 12);
    e->body_len = sg_pg_len(r, i, 12);
    e->attempts = sg_pg_int(r, i, 13);
    e->next_attempt_at = sg_pg_int(r, i, 14);
    e->last_error = sg_pg_str(r, i, 15);
    e->done_at = sg_pg_int(r, i, 16);
    e->qgen = sg_pg_int(r, i, 17);
    e->would = sg_pg_str(r, i, 18);
    e->tag = sg_pg_str(r, i, 19);
    e->digest = sg_pg_str(r, i, 20);
}

/* Rows an INSERT, UPDATE or DELETE changed. */
static int64_t changed(PGresult *r)
{
    return strtoll(PQcmdTuples(r), NULL, 10);
}

int sg_pg_each_event(PGresult *r, sg_event_fn fn, void *ud)
{
    if (!r)
        return SG_ESTORE;
    for (int i = 0, n = PQntuples(r); i < n; i++) {
        sg_event_row e;
        sg_pg_read_event(r, i, &e);
        if (fn(ud, &e))
            break;
    }
    PQclear(r);
    return 0;
}

/* The parameters $1 to $19 of an event row, in the insert's order. */
static void event_params(pg_params *p, const sg_event_row *e)
{
    pgp_int(p, e->received_at);
    pgp_str(p, e->source);
    pgp_str(p, e->job);
    pgp_int_or_null(p, e->number);
    pgp_int_or_null(p, e->build_ts);
    pgp_str(p, e->kind);
    pgp_str(p, e->reason);
    pgp_str(p, sg_event_state_name(e->state));
    pgp_str(p, e->method);
    pgp_str(p, e->path);
    pgp_str(p, e->headers);
    pgp_bytes(p, e->body ? e->body : "", e->body_len);
    pgp_int_or_null(p, e->next_attempt_at);
    pgp_int_or_null(p, e->done_at);
    pgp_int(p, e->qgen);
    pgp_str(p, e->last_error);
    pgp_str(p, e->would);
    pgp_str(p, e->tag);
    pgp_str(p, e->digest);
}

int sg_pg_event_insert(sg_pg *pg, sg_event_row *e, sg_error *err)
{
    pg_params p;
    pgp_reset(&p);
    event_params(&p, e);
    PGresult *r = sg_pg_query(pg, PG_EVENT_INSERT, statement_sql[PG_EVENT_INSERT], &p, err,
                              "journaling an event in");
    if (!r)
        return SG_ESTORE;
    e->id = sg_pg_int(r, 0, 0);
    PQclear(r);
    return 0;
}

/* A batch of events in one statement: $k is the array of every event's
 * k-th value (sg_pg_query_arrays), in event_params' order, then $20 (1: its
 * build goes into the ledger, unless the key has it already) and $21 (the
 * replica that claims it). The ids come from the table's sequence in the
 * batch's order, so that the queue's order (qgen, id) is the order the
 * events came in. A pending event joins its job's queue behind what is
 * pending of the job already (g), in the table or earlier in the batch
 * (b): its queue generation is at least the newest of theirs, which a
 * release at another replica may have raised above this replica's. It is
 * claimed when nothing of its job is pending (an event without a job,
 * pass-through, always). */
#define EVENTS_JOURNAL_SQL                                                                         \
    "WITH v AS (SELECT nextval('event_id_seq') AS id, u.* FROM (SELECT * FROM unnest("             \
    "$1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::text[], "   \
    "$8::text[], $9::text[], $10::bytea[], $11::bytea[], $12::bytea[], $13::bigint[], "            \
    "$14::bigint[], $15::bigint[], $16::bytea[], $17::text[], $18::text[], $19::text[], "          \
    "$20::bigint[], $21::text[]) WITH ORDINALITY AS u(received_at, source, job, number, "          \
    "build_ts, kind, reason, state, method, path, headers, body, next_attempt_at, done_at, qgen, " \
    "last_error, would, tag, digest, ledger, claimer, ord) ORDER BY ord) u), "                     \
    "h AS (SELECT v.*, (SELECT max(q.qgen) FROM event q WHERE q.state = 'pending' AND "            \
    "q.source = v.source AND q.job = v.job) AS g, CASE WHEN v.source IS NOT NULL AND v.job IS "    \
    "NOT NULL THEN max(CASE WHEN v.state = 'pending' THEN v.qgen END) OVER (PARTITION BY "         \
    "v.source, v.job ORDER BY v.ord ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) END AS b "   \
    "FROM v), "                                                                                    \
    "x AS (SELECT h.*, CASE WHEN h.state = 'pending' THEN greatest(h.qgen, h.g, h.b) ELSE h.qgen " \
    "END AS gen, CASE WHEN h.state = 'pending' AND h.g IS NULL AND h.b IS NULL THEN h.claimer "    \
    "END AS claim FROM h), "                                                                       \
    "e AS (INSERT INTO event(id, received_at, source, job, number, build_ts, kind, reason, "       \
    "state, method, path, headers, body, next_attempt_at, done_at, qgen, last_error, would, tag, " \
    "digest, claimed_by) SELECT id, received_at, source, job, number, build_ts, kind, reason, "    \
    "state, method, path, headers, body, next_attempt_at, done_at, gen, last_error, would, tag, "  \
    "digest, claim FROM x ORDER BY ord), "                                                         \
    "l AS (INSERT INTO ledger(source, job, number, accepted_at, event_id) SELECT source, job, "    \
    "number, received_at, id FROM x WHERE ledger = 1 ORDER BY ord ON CONFLICT DO NOTHING "         \
    "RETURNING event_id) "                                                                         \
    "SELECT id, id IN (SELECT event_id FROM l), claim IS NOT NULL, gen FROM x ORDER BY ord"

static void journal_fill(void *ud, size_t i, pg_params *p)
{
    const sg_event_insert *in = (const sg_event_insert *)ud + i;
    event_params(p, in->row);
    pgp_int(p, in->ledger);
    pgp_str(p, in->claimer);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The key of a job's lock: the same in every replica (FNV-1a of source,
 * a unit separator and job; sg_hash_job is seeded per process). */
static uint64_t job_key(const char *source, const char *job)
{
    uint64_t h = 14695981039346656037ULL;
    for (const char *p = source; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ 0x1f) * 1099511628211ULL;
    for (const char *p = job; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h;
}

int sg_pg_events_lock_jobs(sg_pg *pg, const sg_event_insert *ins, size_t n, bool wait, bool *got,
                           sg_error *err)
{
    *got = true;
    uint64_t *h = sg_xmalloc((n ? n : 1) * sizeof *h);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (ins[i].row->source && ins[i].row->job)
            h[m++] = job_key(ins[i].row->source, ins[i].row->job);
    int rc = 0;
    if (m) {
        qsort(h, m, sizeof *h, cmp_u64);
        sg_buf keys = {0};
        sg_buf_append(&keys, "{", 1);
        for (size_t i = 0; i < m; i++) {
            if (i && h[i] == h[i - 1])
                continue;
            char k[24];
            int len = snprintf(k, sizeof k, "%s%lld", keys.len > 1 ? "," : "", (long long)h[i]);
            sg_buf_append(&keys, k, (size_t)len);
        }
        sg_buf_append(&keys, "}", 2); /* with the NUL */
        pg_params p;
        pgp_reset(&p);
        pgp_str(&p, keys.p);
        p.formats[0] = 0; /* an array literal, as text */
        int64_t all = 1;
        rc = wait ? sg_pg_exec(pg, PG_JOB_LOCKS,
                               "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) "
                               "AS k",
                               &p, err, "locking the jobs of a batch in")
                  : sg_pg_query_int(pg, PG_JOB_TRYLOCKS,
                                    "SELECT bool_and(pg_try_advisory_xact_lock(k))::int FROM "
                                    "unnest($1::bigint[]) AS k",
                                    &p, &all, err, "locking the jobs of a batch in");
        *got = all != 0;
        free(keys.p);
    }
    free(h);
    return rc;
}

/* A statement's arrays hold at most this much of the events' requests
 * (more go in the next statement of the transaction, which sees these):
 * a batch of big bodies would pass the server's 1 GB limit of a value. */
#define JOURNAL_BYTES (64u << 20)

static size_t request_bytes(const sg_event_row *e)
{
    return e->body_len + (e->headers ? strlen(e->headers) : 0) + (e->path ? strlen(e->path) : 0);
}

int sg_pg_events_journal(sg_pg *pg, sg_event_insert *ins, size_t n, sg_error *err)
{
    for (size_t done = 0, m; done < n; done += m) {
        size_t bytes = request_bytes(ins[done].row);
        for (m = 1; done + m < n && bytes + request_bytes(ins[done + m].row) <= JOURNAL_BYTES; m++)
            bytes += request_bytes(ins[done + m].row);
        PGresult *r =
            sg_pg_query_arrays(pg, PG_EVENTS_JOURNAL, EVENTS_JOURNAL_SQL, "ittiittttbbbiiibtttit",
                               m, journal_fill, ins + done, err, "journaling events in");
        if (!r)
            return SG_ESTORE;
        assert((size_t)PQntuples(r) == m);
        for (size_t i = 0; i < m; i++) {
            sg_event_insert *in = &ins[done + i];
            in->row->id = sg_pg_int(r, (int)i, 0);
            in->added = in->ledger && sg_pg_bool(r, (int)i, 1);
            in->claimed = sg_pg_bool(r, (int)i, 2);
            in->row->qgen = sg_pg_int(r, (int)i, 3);
        }
        PQclear(r);
    }
    return 0;
}

/* The parameters of sg_pg_event_update's statement, $1 to $7. */
static void outcome_params(pg_params *p, const sg_event_outcome *o, const char *replica)
{
    pgp_str(p, sg_event_state_name(o->state));
    pgp_int(p, o->attempts);
    pgp_int_or_null(p, o->next_attempt_at);
    pgp_str(p, o->last_error);
    pgp_int_or_null(p, o->done_at);
    pgp_int(p, o->id);
    pgp_str(p, replica);
}

typedef struct outcomes {
    const sg_event_outcome *outs;
    const char *replica;
} outcomes;

static void outcome_fill(void *ud, size_t i, pg_params *p)
{
    const outcomes *o = ud;
    outcome_params(p, &o->outs[i], o->replica);
}

/* The outcomes in one statement (sg_pg_query_arrays), each row found by its
 * primary key; of two outcomes of one event, the later. Prepared on a
 * keyed connection (the outcomes' journal's), whose plans cannot join the
 * arrays to a scan of the table; planned for each batch elsewhere. Each
 * updated row says whether its job has unclaimed pending events: a lookup
 * in event_lane here spares the replica a claim after every delivery. */
int sg_pg_events_update(sg_pg *pg, sg_event_outcome *outs, size_t n, sg_error *err)
{
    if (n == 0)
        return 0;
    outcomes o = {outs, pg->replica};
    PGresult *r = sg_pg_query_arrays(
        pg, pg->keyed ? PG_EVENTS_OUTCOMES : -1,
        "UPDATE event SET state = o.state, attempts = o.attempts, next_attempt_at = "
        "o.next_attempt_at, last_error = o.last_error, done_at = o.done_at FROM (SELECT DISTINCT "
        "ON (id) * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bytea[], $5::bigint[], "
        "$6::bigint[], $7::text[]) WITH ORDINALITY AS u(state, attempts, next_attempt_at, "
        "last_error, done_at, id, replica, ord) ORDER BY id, ord DESC) o WHERE event.id = o.id "
        "AND (o.replica IS NULL OR event.claimed_by IS NULL OR event.claimed_by = o.replica) "
        "RETURNING event.id, EXISTS (SELECT 1 FROM event q WHERE q.state = 'pending' AND "
        "q.source = event.source AND q.job = event.job AND q.claimed_by IS NULL)",
        "tiibiit", n, outcome_fill, &o, err, "updating events in");
    if (!r)
        return SG_ESTORE;
    for (size_t i = 0; i < n; i++)
        outs[i].followers = false;
    /* the rows come back in no order; a batch is at most a few hundred */
    for (int k = 0, rows = PQntuples(r); k < rows; k++) {
        if (!sg_pg_bool(r, k, 1))
            continue;
        int64_t id = sg_pg_int(r, k, 0);
        for (size_t i = 0; i < n; i++)
            outs[i].followers = outs[i].followers || outs[i].id == id;
    }
    PQclear(r);
    return 0;
}

int sg_pg_event_update(sg_pg *pg, int64_t id, sg_event_state state, int64_t attempts,
                       int64_t next_attempt_at, const char *last_error, int64_t done_at,
                       sg_error *err)
{
    sg_event_outcome o = {.id = id,
                          .state = state,
                          .attempts = attempts,
                          .next_attempt_at = next_attempt_at,
                          .done_at = done_at,
                          .last_error = last_error};
    pg_params p;
    pgp_reset(&p);
    outcome_params(&p, &o, pg->replica);
    return sg_pg_exec(pg, PG_EVENT_UPDATE, statement_sql[PG_EVENT_UPDATE], &p, err,
                      "updating an event in");
}

int sg_pg_event_replayed(sg_pg *pg, const sg_event_row *e, sg_error *err)
{
    pg_params p;
    pgp_reset(&p);
    pgp_str(&p, e->kind);
    pgp_str(&p, e->reason);
    pgp_str(&p, sg_event_state_name(e->state));
    pgp_str(&p, e->would);
    pgp_int_or_null(&p, e->next_attempt_at);
    pgp_int_or_null(&p, e->done_at);
    pgp_int(&p, e->qgen);
    pgp_str(&p, e->last_error);
    pgp_int(&p, e->id);
    return sg_pg_exec(pg, PG_EVENT_REPLAYED, statement_sql[PG_EVENT_REPLAYED], &p, err,
                      "journaling a replay in");
}

int sg_pg_events_pending(sg_pg *pg, int64_t after_gen, int64_t after_id, int limit, sg_event_fn fn,
                         void *ud, sg_error *err)
{
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, after_gen);
    pgp_int(&p, after_id);
    pgp_int(&p, limit);
    return sg_pg_each_event(sg_pg_query(pg, PG_EVENTS_PENDING,
                                        "SELECT " PG_EVENT_COLUMNS
                                        " FROM event WHERE state = 'pending' "
                                        "AND (qgen, id) > ($1, $2) ORDER BY qgen, id LIMIT $3",
                                        &p, err, "reading events in"),
                            fn, ud);
}

int sg_pg_queue_gen(sg_pg *pg, int64_t *gen, sg_error *err)
{
    return sg_pg_query_int(pg, -1,
                           "SELECT coalesce(max(qgen), 0) FROM event WHERE state = 'pending'", NULL,
                           gen, err, "reading the delivery queue in");
}

int sg_pg_events_query(sg_pg *pg, const sg_event_state *state, const char *kind, const char *job,
                       int limit, sg_event_fn fn, void *ud, sg_error *err)
{
    pg_params p;
    pgp_reset(&p);
    pgp_str(&p, state ? sg_event_state_name(*state) : NULL);
    pgp_str(&p, kind);
    pgp_str(&p, job);
    pgp_int(&p, limit);
    return sg_pg_each_event(sg_pg_query(pg, -1,
                                        "SELECT " PG_EVENT_COLUMNS
                                        " FROM event WHERE ($1::text IS NULL "
                                        "OR state = $1) AND ($2::text IS NULL OR kind = $2) AND "
                                        "($3::text IS NULL OR job = $3) ORDER BY id DESC LIMIT $4",
                                        &p, err, "reading events in"),
                            fn, ud);
}

int sg_pg_event_counts(sg_pg *pg, bool open_only, sg_count_fn fn, void *ud, sg_error *err)
{
    /* the states as literals: the planner matches them to the partial
     * indexes (event_open, event_held) */
    PGresult *r = sg_pg_query(pg, -1,
                              open_only ? "SELECT kind, state, would, count(*) FROM event WHERE "
                                          "state IN ('pending', 'held', 'dead') "
                                          "GROUP BY kind, state, would"
                                        : "SELECT kind, state, would, count(*) FROM event "
                                          "GROUP BY kind, state, would",
                              NULL, err, "counting events in");
    if (!r)
        return SG_ESTORE;
    for (int i = 0, n = PQntuples(r); i < n; i++) {
        sg_event_state state;
        if (sg_event_state_parse(sg_pg_str(r, i, 1), &state) == 0)
            fn(ud, sg_pg_str(r, i, 0), state, sg_pg_str(r, i, 2), sg_pg_int(r, i, 3));
    }
    PQclear(r);
    return 0;
}

/* An analyze the table needs, by either of two measures, each at
 * ANALYZE_MIN_CHANGES at least; only its owner may (another is told
 * nothing but a warning):
 *  - it changed by as much as it holds since its last (the planner's
 *    picture of it is off by half or more);
 *  - the pending events counted are ANALYZE_PENDING_FACTOR times those the
 *    planner counts on (EXPLAIN's estimate of them). An analyze while
 *    nothing was pending (an idle gate, autovacuum's) leaves every partial
 *    index on the pending events counted empty: the planner takes the
 *    index's tuples as its density at that analyze times its pages, 0
 *    however many it grows to. A backlog (a notifier down, a load beyond
 *    the deliveries) then had every claim, outcome and release of lapsed
 *    claims walk those indexes whole: on 270,000 pending events of two
 *    replicas, a claim took 1.9 s and the deliveries stopped. */
#define ANALYZE_MIN_CHANGES 1000
#define ANALYZE_PENDING_FACTOR 4

/* The rows of the first line of an EXPLAIN ("... (cost=0.29..8.31 rows=1
 * width=4)"), or -1. */
static int64_t plan_rows(const char *line)
{
    const char *r = line ? strstr(line, " rows=") : NULL;
    return r ? strtoll(r + 6, NULL, 10) : -1;
}

int sg_pg_events_stale(sg_pg *pg, int64_t pending, sg_events_stale *out, sg_error *err)
{
    sg_events_stale st = {.changes = 0, .planned = -1};
    PGresult *r = sg_pg_query(pg, -1,
                              "SELECT pg_has_role(c.relowner, 'USAGE')::int, "
                              "coalesce(t.n_mod_since_analyze, 0), coalesce(t.n_live_tup, 0) "
                              "FROM pg_class c LEFT JOIN pg_stat_user_tables t ON t.relid = c.oid "
                              "WHERE c.oid = 'event'::regclass",
                              NULL, err, "reading the event table's statistics in");
    if (!r)
        return SG_ESTORE;
    bool owner = PQntuples(r) == 1 && sg_pg_int(r, 0, 0) != 0;
    int64_t changes = owner ? sg_pg_int(r, 0, 1) : 0, live = owner ? sg_pg_int(r, 0, 2) : 0;
    PQclear(r);
    if (changes >= ANALYZE_MIN_CHANGES && changes >= live)
        st.changes = changes;
    if (!owner || pending < ANALYZE_MIN_CHANGES) {
        *out = st;
        return 0;
    }
    /* the state as a literal: the planner's estimate of that value */
    r = sg_pg_query(pg, -1, "EXPLAIN SELECT 1 FROM event WHERE state = 'pending'", NULL, err,
                    "reading the planner's estimate of the pending events in");
    if (!r)
        return SG_ESTORE;
    int64_t planned = PQntuples(r) > 0 ? plan_rows(sg_pg_str(r, 0, 0)) : -1;
    PQclear(r);
    if (planned >= 0 && pending >= ANALYZE_PENDING_FACTOR * planned)
        st.planned = planned;
    *out = st;
    return 0;
}

int sg_pg_events_analyze(sg_pg *pg, bool *done, sg_error *err)
{
    static const char count_sql[] =
        "SELECT analyze_count FROM pg_stat_user_tables WHERE relid = 'event'::regclass";
    int64_t before = 0, after = 0;
    int rc = sg_pg_query_int(pg, -1, count_sql, NULL, &before, err,
                             "reading the event table's statistics in");
    /* skipped, not failed, while another session holds the table's lock
     * (autovacuum's analyze or vacuum, another replica's analyze) */
    if (rc == 0)
        rc = sg_pg_exec(pg, -1, "ANALYZE (SKIP_LOCKED) event", NULL, err,
                        "analyzing the event table in");
    if (rc == 0)
        rc = sg_pg_query_int(pg, -1, count_sql, NULL, &after, err,
                             "reading the event table's statistics in");
    if (rc == 0)
        *done = after > before;
    return rc;
}

int sg_pg_oldest_pending(sg_pg *pg, int64_t *received_at, sg_error *err)
{
    /* the first event of each queue generation through event_open (a skip
     * scan by recursion, as events.c explains) */
    return sg_pg_query_int(
        pg, -1,
        "WITH RECURSIVE g(q) AS ("
        " SELECT (SELECT qgen FROM event WHERE state = 'pending' ORDER BY qgen, id LIMIT 1)"
        " UNION ALL"
        " SELECT (SELECT qgen FROM event WHERE state = 'pending' AND qgen > g.q"
        "         ORDER BY qgen, id LIMIT 1) FROM g WHERE g.q IS NOT NULL)"
        " SELECT coalesce(min((SELECT received_at FROM event WHERE state = 'pending' AND"
        "                      qgen = g.q ORDER BY qgen, id LIMIT 1)), 0)"
        " FROM g WHERE g.q IS NOT NULL",
        NULL, received_at, err, "reading the delivery queue in");
}

int sg_pg_oldest_held(sg_pg *pg, int64_t *received_at, sg_error *err)
{
    return sg_pg_query_int(pg, -1,
                           "SELECT coalesce((SELECT received_at FROM event WHERE state = 'held' "
                           "ORDER BY id LIMIT 1), 0)",
                           NULL, received_at, err, "reading the held queue in");
}

int sg_pg_last_event_id(sg_pg *pg, int64_t *id, sg_error *err)
{
    return sg_pg_query_int(pg, -1, "SELECT coalesce(max(id), 0) FROM event", NULL, id, err,
                           "reading events in");
}

int sg_pg_events_prune(sg_pg *pg, int64_t before, int64_t limit, int64_t *cursor, int64_t *deleted,
                       bool *more, sg_error *err)
{
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, *cursor);
    pgp_int(&p, limit);
    PGresult *r = sg_pg_query(pg, -1,
                              "SELECT max(id), max(received_at) FROM (SELECT id, received_at "
                              "FROM event WHERE id > $1 ORDER BY id LIMIT $2) c",
                              &p, err, "pruning the journal in");
    if (!r)
        return SG_ESTORE;
    bool empty = PQgetisnull(r, 0, 0);
    int64_t last = sg_pg_int(r, 0, 0), newest = sg_pg_int(r, 0, 1);
    PQclear(r);
    *deleted = 0;
    *more = false;
    if (empty)
        return 0;
    pgp_reset(&p);
    pgp_int(&p, *cursor);
    pgp_int(&p, last);
    pgp_int(&p, before);
    r = sg_pg_query(pg, -1,
                    "DELETE FROM event WHERE id > $1 AND id <= $2 AND received_at < $3 "
                    "AND state IN ('forwarded', 'suppressed', 'dropped', 'superseded')",
                    &p, err, "pruning the journal in");
    if (!r)
        return SG_ESTORE;
    *deleted = changed(r);
    PQclear(r);
    *cursor = last;
    *more = newest < before;
    return 0;
}

/* ---- the ledger ---- */

int sg_pg_ledger_add(sg_pg *pg, const char *source, const char *job, int64_t number,
                     int64_t event_id, int64_t accepted_at, bool *added, sg_error *err)
{
    assert(source && job);
    pg_params p;
    pgp_reset(&p);
    pgp_str(&p, source);
    pgp_str(&p, job);
    pgp_int(&p, number);
    pgp_int(&p, accepted_at);
    pgp_int(&p, event_id);
    /* the primary key decides, also between gates writing at once: the
     * second waits for the first's commit and adds nothing */
    PGresult *r = sg_pg_query(pg, PG_LEDGER_ADD, statement_sql[PG_LEDGER_ADD], &p, err,
                              "writing the ledger in");
    if (!r)
        return SG_ESTORE;
    *added = changed(r) > 0;
    PQclear(r);
    return 0;
}

int sg_pg_ledger_has(sg_pg *pg, const char *source, const char *job, int64_t number, bool *has,
                     sg_error *err)
{
    pg_params p;
    pgp_reset(&p);
    pgp_str(&p, source);
    pgp_str(&p, job);
    pgp_int(&p, number);
    PGresult *r = sg_pg_query(pg, PG_LEDGER_HAS, statement_sql[PG_LEDGER_HAS], &p, err,
                              "reading the ledger in");
    if (!r)
        return SG_ESTORE;
    *has = PQntuples(r) > 0;
    PQclear(r);
    return 0;
}

int sg_pg_ledger_newest(sg_pg *pg, sg_ledger_newest_fn fn, void *ud, sg_error *err)
{
    PGresult *r =
        sg_pg_query(pg, -1, "SELECT source, job, max(number) FROM ledger GROUP BY source, job",
                    NULL, err, "reading the ledger in");
    if (!r)
        return SG_ESTORE;
    for (int i = 0, n = PQntuples(r); i < n; i++)
        fn(ud, sg_pg_str(r, i, 0), sg_pg_str(r, i, 1), sg_pg_int(r, i, 2));
    PQclear(r);
    return 0;
}

int sg_pg_ledger_jobs(sg_pg *pg, sg_ledger_fn fn, void *ud, int64_t *builds, sg_error *err)
{
    PGresult *r =
        sg_pg_query(pg, -1, "SELECT source, job, count(*) FROM ledger GROUP BY source, job", NULL,
                    err, "reading the ledger in");
    if (!r)
        return SG_ESTORE;
    int64_t total = 0;
    for (int i = 0, n = PQntuples(r); i < n; i++) {
        fn(ud, sg_pg_str(r, i, 0), sg_pg_str(r, i, 1));
        total += sg_pg_int(r, i, 2);
    }
    PQclear(r);
    *builds = total;
    return 0;
}

int sg_pg_ledger_docker(sg_pg *pg, sg_ledger_tag_fn fn, void *ud, sg_error *err)
{
    PGresult *r = sg_pg_query(pg, -1,
                              "SELECT source, job, tag, digest FROM event WHERE tag IS NOT NULL "
                              "AND kind IN ('new', 'unknown') ORDER BY id",
                              NULL, err, "reading the ledger's Docker tags in");
    if (!r)
        return SG_ESTORE;
    for (int i = 0, n = PQntuples(r); i < n; i++)
        fn(ud, sg_pg_str(r, i, 0), sg_pg_str(r, i, 1), sg_pg_str(r, i, 2), sg_pg_str(r, i, 3));
    PQclear(r);
    return 0;
}

int sg_pg_ledger_mark(sg_pg *pg, int64_t *upto, sg_error *err)
{
    return sg_pg_query_int(pg, -1, "SELECT upto FROM ledger_mark WHERE id = 1", NULL, upto, err,
                           "reading the ledger mark in");
}

int sg_pg_ledger_set_mark(sg_pg *pg, int64_t upto, sg_error *err)
{
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, upto);
    return sg_pg_exec(pg, -1, "UPDATE ledger_mark SET upto = $1 WHERE id = 1", &p, err,
                      "writing the ledger mark in");
}

int sg_pg_ledger_catch_up(sg_pg *pg, int64_t *added, sg_error *err)
{
    int64_t upto = 0, last = 0;
    int rc;
    if ((rc = sg_pg_ledger_mark(pg, &upto, err)) || (rc = sg_pg_last_event_id(pg, &last, err)))
        return rc;
    *added = 0;
    if (last <= upto)
        return 0;
    if ((rc = sg_pg_begin(pg, err)))
        return rc;
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, upto);
    /* the events the ledger should hold: kinds new and unknown (the journal
     * turns a second delivery into a replay) */
    PGresult *r = sg_pg_query(pg, -1,
                              "INSERT INTO ledger(source, job, number, accepted_at, event_id) "
                              "SELECT source, job, number, received_at, id FROM event "
                              "WHERE id > $1 AND kind IN ('new', 'unknown') "
                              "ORDER BY source, job, number ON CONFLICT DO NOTHING",
                              &p, err, "catching the ledger up in");
    int64_t n = 0;
    if (!r) {
        rc = SG_ESTORE;
    } else {
        n = changed(r);
        PQclear(r);
    }
    if (rc == 0)
        rc = sg_pg_ledger_set_mark(pg, last, err);
    if (rc == 0)
        rc = sg_pg_commit(pg, err);
    if (rc) {
        sg_pg_rollback(pg);
        return rc;
    }
    *added = n;
    return 0;
}

/* ---- episodes and the audit log ---- */

int sg_pg_episode_open(sg_pg *pg, int64_t at, const char *cause, const char *detail, int64_t *id,
                       sg_error *err)
{
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, at);
    pgp_str(&p, cause);
    pgp_str(&p, detail);
    PGresult *r = sg_pg_query(pg, -1,
                              "INSERT INTO episode(started_at, cause, detail) "
                              "VALUES ($1, $2, $3) RETURNING id",
                              &p, err, "recording an episode in");
    if (!r)
        return SG_ESTORE;
    *id = sg_pg_int(r, 0, 0);
    PQclear(r);
    return 0;
}

int sg_pg_episode_update(sg_pg *pg, int64_t id, int64_t ended_at, const char *detail, sg_error *err)
{
    pg_params p;
    pgp_reset(&p);
    pgp_int_or_null(&p, ended_at);
    pgp_str(&p, detail);
    pgp_int(&p, id);
    /* the detail appended after "; ", as episodes.c does */
    return sg_pg_exec(pg, -1,
                      "UPDATE episode SET ended_at = coalesce($1, ended_at), detail = "
                      "coalesce(detail || '; '::bytea || $2::bytea, $2::bytea, detail) "
                      "WHERE id = $3",
                      &p, err, "updating an episode in");
}

int sg_pg_audit(sg_pg *pg, int64_t at_ms, const char *actor, const char *action, const char *detail,
                sg_error *err)
{
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, at_ms);
    pgp_str(&p, actor);
    pgp_str(&p, action);
    pgp_str(&p, detail);
    return sg_pg_exec(pg, -1,
                      "INSERT INTO audit(at, actor, action, detail) VALUES ($1, $2, $3, $4)", &p,
                      err, "writing the audit log in");
}
