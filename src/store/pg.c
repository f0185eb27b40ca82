/* The PostgreSQL store (store_pg_int.h): connecting to a postgresql:// URL with
 * libpq, the embedded migrations of schema/pg/, transactions, and the
 * helpers the table families share:
 * parameters, prepared statements, binary results and error messages.
 *
 * A URL's password (or PGPASSWORD, or a PGPASSFILE entry, both read by
 * libpq) reaches libpq only: messages name the store by `where`, the URL
 * rebuilt without it, and libpq's own messages never contain it. */
#include "store_pg_int.h"

#include <assert.h>
#include <endian.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stormguard/base/clock.h"
#include "stormguard/base/util.h"

bool sg_pg_is_url(const char *where)
{
    return where && (!strncmp(where, "postgresql://", 13) || !strncmp(where, "postgres://", 11));
}

/* ---- messages ---- */

/* libpq's message on one line: "ERROR:  x\nDETAIL:  y\n" becomes "x; y". */
static void one_line(const char *msg, char *out, size_t cap)
{
    size_t n = 0;
    if (!strncmp(msg, "ERROR:  ", 8))
        msg += 8;
    for (const char *p = msg; *p && n + 1 < cap; p++) {
        if (*p == '\n') {
            while (p[1] == '\n')
                p++;
            if (!p[1])
                break;
            if (n + 2 < cap) {
                out[n++] = ';';
                out[n++] = ' ';
            }
            continue;
        }
        out[n++] = *p;
    }
    while (n && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

int sg_pg_error(sg_pg *pg, const PGresult *r, sg_error *err, const char *doing)
{
    char line[768];
    const char *msg = r ? PQresultErrorMessage(r) : "";
    if (!*msg)
        msg = pg->conn ? PQerrorMessage(pg->conn) : "out of memory";
    one_line(*msg ? msg : "no reason given", line, sizeof line);
    return sg_error_set(err, SG_ESTORE, "%s %s: %s", doing, pg->where, line);
}

/* ---- parameters ---- */

void pgp_str(pg_params *p, const char *s)
{
    pgp_bytes(p, s, s ? strlen(s) : 0);
}

void pgp_bytes(pg_params *p, const void *b, size_t n)
{
    int i = p->n++;
    if (i >= PG_MAX_PARAMS) {
        fprintf(stderr, "stormguard: a statement with more than %d parameters\n", PG_MAX_PARAMS);
        abort();
    }
    p->values[i] = b ? (n ? b : "") : NULL;
    p->lengths[i] = (int)n;
    p->formats[i] = 1;
}

void pgp_int(pg_params *p, int64_t v)
{
    int i = p->n++;
    if (i >= PG_MAX_PARAMS) {
        fprintf(stderr, "stormguard: a statement with more than %d parameters\n", PG_MAX_PARAMS);
        abort();
    }
    snprintf(p->num[i], sizeof p->num[i], "%" PRId64, v);
    p->values[i] = p->num[i];
    p->lengths[i] = 0;
    p->formats[i] = 0;
}

void pgp_int_or_null(pg_params *p, int64_t v)
{
    if (v) {
        pgp_int(p, v);
    } else {
        pgp_bytes(p, NULL, 0);
        p->formats[p->n - 1] = 0;
    }
}

void pgp_double(pg_params *p, double v)
{
    pgp_int(p, 0);
    snprintf(p->num[p->n - 1], sizeof p->num[0], "%.17g", v);
}

/* ---- results ---- */

int64_t sg_pg_int(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    const char *v = PQgetvalue(r, row, col);
    switch (PQgetlength(r, row, col)) {
    case 1:
        return (unsigned char)v[0];
    case 2: {
        uint16_t x;
        memcpy(&x, v, 2);
        return (int16_t)be16toh(x);
    }
    case 4: {
        uint32_t x;
        memcpy(&x, v, 4);
        return (int32_t)be32toh(x);
    }
    case 8: {
        uint64_t x;
        memcpy(&x, v, 8);
        return (int64_t)be64toh(x);
    }
    default:
        return 0;
    }
}

const char *sg_pg_str(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

size_t sg_pg_len(const PGresult *r, int row, int col)
{
    return (size_t)PQgetlength(r, row, col);
}

double sg_pg_double(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8)
        return 0;
    uint64_t x;
    memcpy(&x, PQgetvalue(r, row, col), 8);
    x = be64toh(x);
    double d;
    memcpy(&d, &x, sizeof d);
    return d;
}

bool sg_pg_bool(const PGresult *r, int row, int col)
{
    return sg_pg_int(r, row, col) != 0;
}

/* ---- statements ---- */

int64_t sg_pg_to_server(const sg_pg *pg, int64_t local_ms)
{
    return local_ms ? local_ms + pg->skew_ms : 0;
}

int64_t sg_pg_from_server(const sg_pg *pg, int64_t server_ms)
{
    return server_ms ? server_ms - pg->skew_ms : 0;
}

static int64_t mono_ms(void);
static int ensure_connected(sg_pg *pg, sg_error *err);

/* The server's clock against this machine's, at the middle of a round
 * trip (within half of it: a millisecond on a LAN). */
static int measure_skew(sg_pg *pg, sg_error *err)
{
    pg->skew_at = mono_ms();
    int64_t t0 = sg_now_ms();
    PGresult *r =
        PQexecParams(pg->conn, "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint", 0,
                     NULL, NULL, NULL, NULL, 1);
    int64_t t1 = sg_now_ms();
    int rc = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                 ? 0
                 : sg_pg_error(pg, r, err, "reading the clock of");
    if (rc == 0)
        pg->skew_ms = sg_pg_int(r, 0, 0) - (t0 + t1) / 2;
    PQclear(r);
    return rc;
}

/* After a (re)connect: the session's settings, the clocks' skew, and no
 * statement prepared. */
static int session_setup(sg_pg *pg, sg_error *err)
{
    pg->prepared = 0;
    int rc = 0;
    char timeout[64] = "";
    if (pg->timeout_ms > 0)
        snprintf(timeout, sizeof timeout, "SET statement_timeout = %d", pg->timeout_ms);
    const char *sql[] = {pg->readonly    ? "SET default_transaction_read_only = on"
                         : pg->sync_full ? "SET synchronous_commit = on"
                                         : NULL,
                         timeout[0] ? timeout : NULL,
                         pg->keyed ? "SET enable_seqscan = off; SET enable_hashjoin = off; "
                                     "SET enable_mergejoin = off; SET jit = off"
                                   : NULL};
    for (size_t i = 0; i < sizeof sql / sizeof *sql; i++) {
        if (!sql[i])
            continue;
        PGresult *r = PQexec(pg->conn, sql[i]);
        rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : sg_pg_error(pg, r, err, "setting up");
        PQclear(r);
        if (rc)
            return rc;
    }
    return measure_skew(pg, err);
}

/* The skew measured again a minute on: a clock stepped by NTP after the
 * connect (a machine just booted) is followed. */
#define SKEW_EVERY_MS 60000

int sg_pg_follow_clock(sg_pg *pg, sg_error *err)
{
    if (ensure_connected(pg, err))
        return SG_ESTORE;
    return mono_ms() - pg->skew_at < SKEW_EVERY_MS || pg->in_txn ? 0 : measure_skew(pg, err);
}

/* A connection the server or the network dropped is reset between
 * transactions (inside one, the transaction is lost with it: its caller
 * rolls back and answers 503, and the next one reconnects). A reset that
 * failed is tried again only after a backoff, 100 ms doubling to 5 s: in
 * between every call fails at once with the last reason, instead of each
 * batch of a busy gate waiting on a connect of its own. */
#define RESET_FIRST_MS 100
#define RESET_MAX_MS 5000

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int ensure_connected(sg_pg *pg, sg_error *err)
{
    if (PQstatus(pg->conn) == CONNECTION_OK)
        return 0;
    if (pg->in_txn && !pg->begin_due) /* nothing of a due transaction was sent: reset */
        return sg_error_set(err, SG_ESTORE, "store %s: the connection was lost", pg->where);
    int64_t now = mono_ms();
    if (pg->down[0] && now < pg->retry_at)
        return sg_error_set(err, SG_ESTORE, "%s (connecting again in %lld ms)", pg->down,
                            (long long)(pg->retry_at - now));
    PQreset(pg->conn);
    if (PQstatus(pg->conn) != CONNECTION_OK) {
        int rc = sg_pg_error(pg, NULL, err, "connecting to");
        pg->backoff_ms = pg->backoff_ms ? pg->backoff_ms * 2 : RESET_FIRST_MS;
        if (pg->backoff_ms > RESET_MAX_MS)
            pg->backoff_ms = RESET_MAX_MS;
        pg->retry_at = mono_ms() + pg->backoff_ms;
        snprintf(pg->down, sizeof pg->down, "%s", err->msg);
        return rc;
    }
    pg->down[0] = '\0';
    pg->backoff_ms = 0;
    return session_setup(pg, err);
}

/* Prepares the statement of slot on this connection once; its name in
 * name. */
static int prepare_slot(sg_pg *pg, int slot, const char *sql, int nparams, char name[16],
                        sg_error *err, const char *doing)
{
    snprintf(name, 16, "sg%d", slot);
    if (pg->prepared & (1u << slot))
        return 0;
    PGresult *r = PQprepare(pg->conn, name, sql, nparams, NULL);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : sg_pg_error(pg, r, err, doing);
    PQclear(r);
    if (rc == 0)
        pg->prepared |= 1u << slot;
    return rc;
}

/* Leaves pipeline mode; with results or queries left in it (a connection
 * lost or a send that failed midway), on a new session (the server rolls
 * the transaction back), set up as at a connect. Whether it reset. */
static bool leave_pipeline(sg_pg *pg)
{
    if (PQexitPipelineMode(pg->conn))
        return false;
    PQreset(pg->conn);
    sg_error spare;
    if (PQstatus(pg->conn) == CONNECTION_OK)
        session_setup(pg, &spare);
    return true;
}

/* The transaction's BEGIN, the statement's PREPARE if due, and the
 * statement, in one round trip (libpq's pipeline mode); the statement's
 * result, or NULL with err set after the first that failed. */
static PGresult *pipelined(sg_pg *pg, int slot, const char *sql, const pg_params *p, sg_error *err,
                           const char *doing)
{
    int n = p ? p->n : 0;
    char name[16] = "";
    bool prepare = slot >= 0 && !(pg->prepared & (1u << slot));
    if (slot >= 0)
        snprintf(name, sizeof name, "sg%d", slot);
    bool sent = PQenterPipelineMode(pg->conn) &&
                PQsendQueryParams(pg->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 1) &&
                (!prepare || PQsendPrepare(pg->conn, name, sql, n, NULL)) &&
                (slot >= 0 ? PQsendQueryPrepared(pg->conn, name, n, p ? p->values : NULL,
                                                 p ? p->lengths : NULL, p ? p->formats : NULL, 1)
                           : PQsendQueryParams(pg->conn, sql, n, NULL, p ? p->values : NULL,
                                               p ? p->lengths : NULL, p ? p->formats : NULL, 1)) &&
                PQpipelineSync(pg->conn);
    if (!sent) {
        sg_pg_error(pg, NULL, err, doing);
        leave_pipeline(pg);
        return NULL;
    }
    pg->begin_due = false; /* sent: the transaction is on the server now */
    /* Each query's result then a NULL, the sync's result last; after an
     * error the queries behind it are aborted. A connection lost gives
     * NULLs only, which end the loop. */
    PGresult *out = NULL;
    bool failed = false, synced = false, prepared = false;
    int queries = prepare ? 3 : 2;
    for (int q = 0; q <= queries + 1;) {
        PGresult *r = PQgetResult(pg->conn);
        if (!r) {
            q++;
            continue;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            synced = true;
            PQclear(r);
            break;
        }
        if (prepare && q == 1 && st == PGRES_COMMAND_OK)
            prepared = true; /* kept by the session whatever follows */
        if (!failed && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            failed = true;
            sg_pg_error(pg, r, err, q == 0 ? "beginning a transaction in" : doing);
        } else if (!failed && q == queries - 1) {
            PQclear(out);
            out = r;
            r = NULL;
        }
        PQclear(r);
    }
    if (!synced && !failed)
        sg_pg_error(pg, NULL, err, doing);
    failed = failed || !synced;
    bool reset = leave_pipeline(pg);
    if (prepared && PQstatus(pg->conn) == CONNECTION_OK && !reset)
        pg->prepared |= 1u << slot;
    if (failed) {
        PQclear(out);
        return NULL;
    }
    return out;
}

PGresult *sg_pg_query(sg_pg *pg, int slot, const char *sql, const pg_params *p, sg_error *err,
                      const char *doing)
{
    if (ensure_connected(pg, err))
        return NULL;
    if (pg->begin_due)
        return pipelined(pg, slot, sql, p, err, doing);
    int n = p ? p->n : 0;
    const char *const *values = p ? p->values : NULL;
    const int *lengths = p ? p->lengths : NULL, *formats = p ? p->formats : NULL;
    PGresult *r;
    if (slot >= 0) {
        char name[16];
        if (prepare_slot(pg, slot, sql, n, name, err, doing))
            return NULL;
        r = PQexecPrepared(pg->conn, name, n, values, lengths, formats, 1);
    } else {
        r = PQexecParams(pg->conn, sql, n, NULL, values, lengths, formats, 1);
    }
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        sg_pg_error(pg, r, err, doing);
        PQclear(r);
        return NULL;
    }
    return r;
}

/* The element types of sg_pg_query_arrays (pg_type's OIDs). */
#define PG_INT8_OID 20
#define PG_TEXT_OID 25
#define PG_BYTEA_OID 17

/* An array of n elements in PostgreSQL's binary format: a header (one
 * dimension, the null flag, the element type, its length and lower bound
 * 1) and each element as its length (-1: NULL) and bytes. */
static void array_start(sg_buf *b, uint32_t oid, size_t n)
{
    uint32_t head[5] = {htobe32(1), 0, htobe32(oid), htobe32((uint32_t)n), htobe32(1)};
    b->len = 0;
    sg_buf_append(b, head, sizeof head);
}

static void array_add(sg_buf *b, char type, const char *v, int len, int format)
{
    if (!v) {
        uint32_t null = htobe32(UINT32_MAX);
        sg_buf_append(b, &null, 4);
        uint32_t flag = htobe32(1);
        memcpy(b->p + 4, &flag, 4);
        return;
    }
    if (type == 'i') { /* built as decimal text (pgp_int); strings and bytes raw */
        assert(format == 0);
        uint32_t size = htobe32(8);
        uint64_t x = htobe64((uint64_t)strtoll(v, NULL, 10));
        sg_buf_append(b, &size, 4);
        sg_buf_append(b, &x, 8);
        return;
    }
    assert(format == 1);
    uint32_t size = htobe32((uint32_t)len);
    sg_buf_append(b, &size, 4);
    sg_buf_append(b, v, (size_t)len);
}

PGresult *sg_pg_query_arrays(sg_pg *pg, int slot, const char *sql, const char *types, size_t n,
                             void (*fill)(void *ud, size_t i, pg_params *p), void *ud,
                             sg_error *err, const char *doing)
{
    int cols = (int)strlen(types);
    assert(cols <= PG_MAX_PARAMS && n > 0 && n <= INT32_MAX);
    sg_buf arr[PG_MAX_PARAMS] = {{0}};
    for (int k = 0; k < cols; k++)
        array_start(&arr[k],
                    types[k] == 'i'   ? PG_INT8_OID
                    : types[k] == 't' ? PG_TEXT_OID
                                      : PG_BYTEA_OID,
                    n);
    for (size_t i = 0; i < n; i++) {
        pg_params row;
        pgp_reset(&row);
        fill(ud, i, &row);
        assert(row.n == cols);
        for (int k = 0; k < cols; k++)
            array_add(&arr[k], types[k], row.values[k], row.lengths[k], row.formats[k]);
    }
    pg_params p;
    pgp_reset(&p);
    for (int k = 0; k < cols; k++)
        pgp_bytes(&p, arr[k].p, arr[k].len);
    PGresult *r = sg_pg_query(pg, slot, sql, &p, err, doing);
    for (int k = 0; k < cols; k++)
        free(arr[k].p);
    return r;
}

int sg_pg_exec(sg_pg *pg, int slot, const char *sql, const pg_params *p, sg_error *err,
               const char *doing)
{
    PGresult *r = sg_pg_query(pg, slot, sql, p, err, doing);
    if (!r)
        return SG_ESTORE;
    PQclear(r);
    return 0;
}

int sg_pg_query_int(sg_pg *pg, int slot, const char *sql, const pg_params *p, int64_t *out,
                    sg_error *err, const char *doing)
{
    PGresult *r = sg_pg_query(pg, slot, sql, p, err, doing);
    if (!r)
        return SG_ESTORE;
    if (PQntuples(r) < 1) {
        PQclear(r);
        return sg_error_set(err, SG_ESTORE, "%s %s: no row", doing, pg->where);
    }
    *out = sg_pg_int(r, 0, 0);
    PQclear(r);
    return 0;
}

/* Runs sql (one or more statements, no parameters) by the simple protocol. */
static int exec_simple(sg_pg *pg, const char *sql, sg_error *err, const char *doing)
{
    PGresult *r = PQexec(pg->conn, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : sg_pg_error(pg, r, err, doing);
    PQclear(r);
    return rc;
}

/* ---- transactions ---- */

/* The BEGIN goes with the transaction's first statement (pipelined): a
 * round trip of its own was 180 to 250 us of each batch's time at full
 * load. A transaction that ran no statement sends nothing. */
int sg_pg_begin(sg_pg *pg, sg_error *err)
{
    if (ensure_connected(pg, err))
        return SG_ESTORE;
    pg->in_txn = true;
    pg->begin_due = true;
    return 0;
}

int sg_pg_send_begin(sg_pg *pg, sg_error *err)
{
    if (!pg->begin_due)
        return 0;
    pg->begin_due = false;
    return exec_simple(pg, "BEGIN", err, "beginning a transaction in");
}

int sg_pg_commit(sg_pg *pg, sg_error *err)
{
    if (pg->begin_due) {
        pg->in_txn = pg->begin_due = false;
        return 0;
    }
    PGresult *r = PQexec(pg->conn, "COMMIT");
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        rc = sg_pg_error(pg, r, err, "committing to");
    else if (strcmp(PQcmdStatus(r), "COMMIT") != 0) /* the transaction had failed */
        rc = sg_error_set(err, SG_ESTORE, "committing to %s: the transaction was rolled back",
                          pg->where);
    PQclear(r);
    pg->in_txn = false;
    return rc;
}

void sg_pg_rollback(sg_pg *pg)
{
    if (pg->in_txn && !pg->begin_due && PQstatus(pg->conn) == CONNECTION_OK)
        PQclear(PQexec(pg->conn, "ROLLBACK"));
    pg->in_txn = pg->begin_due = false;
}

int sg_pg_probe_write(sg_pg *pg, sg_error *err)
{
    return sg_pg_exec(pg, -1, "UPDATE ledger_mark SET upto = upto WHERE id = 1", NULL, err,
                      "writing to");
}

/* ---- migrations ---- */

/* Every replica migrates on start: the advisory lock makes the second wait
 * for the first, then find nothing left to do. */
#define MIGRATE_LOCK "SELECT pg_advisory_lock(7301163522301)"
#define MIGRATE_UNLOCK "SELECT pg_advisory_unlock(7301163522301)"

int sg_pg_schema_version(sg_pg *pg)
{
    int64_t v = 0;
    sg_error err;
    if (sg_pg_query_int(pg, -1,
                        "SELECT CASE WHEN to_regclass('stormguard_schema') IS NULL THEN 0 "
                        "ELSE (SELECT coalesce(max(version), 0) FROM stormguard_schema) END",
                        NULL, &v, &err, "reading the schema version of"))
        return -1;
    return (int)v;
}

static int migrate(sg_pg *pg, int target, sg_error *err)
{
    int rc = exec_simple(pg,
                         "CREATE TABLE IF NOT EXISTS stormguard_schema ("
                         "version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                         "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                         err, "creating the schema table in");
    if (rc)
        return rc;
    int current = sg_pg_schema_version(pg);
    if (current < 0)
        return sg_error_set(err, SG_ESTORE, "reading the schema version of %s", pg->where);
    if (current > sg_pg_migration_count)
        return sg_error_set(err, SG_EVERSION,
                            "store %s has schema version %d, newer than this stormguard "
                            "knows (%d): upgrade stormguard",
                            pg->where, current, sg_pg_migration_count);
    for (int v = current + 1; v <= target; v++) {
        const sg_migration *m = &sg_pg_migrations[v - 1];
        char record[160];
        snprintf(record, sizeof record,
                 "INSERT INTO stormguard_schema(version, name) VALUES (%d, '%s')", v, m->name);
        if ((rc = exec_simple(pg, "BEGIN", err, "migrating")) ||
            (rc = exec_simple(pg, m->sql, err, "migrating")) ||
            (rc = exec_simple(pg, record, err, "migrating")) ||
            (rc = exec_simple(pg, "COMMIT", err, "migrating"))) {
            PQclear(PQexec(pg->conn, "ROLLBACK"));
            return sg_error_prefix(err, "applying schema %s", m->name);
        }
    }
    return 0;
}

/* ---- connecting ---- */

/* The URL without its password: postgresql://user@host:port/db. */
char *sg_pg_redact(const char *url)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &msg);
    if (!opts) {
        PQfreemem(msg);
        return sg_xstrdup("postgresql://(unparsable URL)");
    }
    const char *user = NULL, *host = NULL, *port = NULL, *db = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val)
            continue;
        if (!strcmp(o->keyword, "user"))
            user = o->val;
        else if (!strcmp(o->keyword, "host"))
            host = o->val;
        else if (!strcmp(o->keyword, "port"))
            port = o->val;
        else if (!strcmp(o->keyword, "dbname"))
            db = o->val;
    }
    char *out = sg_xasprintf("postgresql://%s%s%s%s%s/%s", user ? user : "", user ? "@" : "",
                             host ? host : "", port ? ":" : "", port ? port : "", db ? db : "");
    PQconninfoFree(opts);
    return out;
}

/* Whether url's authority has a password (user:password@host). */
static bool has_password(const char *url)
{
    const char *a = strstr(url, "://");
    a = a ? a + 3 : url;
    size_t n = strcspn(a, "/?#");
    const char *at = memrchr(a, '@', n);
    return at && memchr(a, ':', (size_t)(at - a));
}

int sg_pg_url_check(const char *url, sg_error *err)
{
    char *msg = NULL;
    PQconninfoOption *parsed = PQconninfoParse(url, &msg);
    if (!parsed && has_password(url)) {
        /* libpq's reason may quote the bad part, which may be the password */
        PQfreemem(msg);
        return sg_error_set(err, SG_EUSAGE,
                            "the store URL cannot be parsed (libpq's reason is not shown: the URL "
                            "holds a password; PGPASSWORD or PGPASSFILE keep it out of the URL)");
    }
    if (!parsed) {
        char line[512];
        one_line(msg ? msg : "out of memory", line, sizeof line);
        PQfreemem(msg);
        return sg_error_set(err, SG_EUSAGE, "the store URL: %s", line);
    }
    PQconninfoFree(parsed);
    return 0;
}

static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* A connection to url: libpq's defaults, a bounded connect, keepalives that
 * notice a server gone within about 20 s, and a name in pg_stat_activity.
 * Keywords before dbname are overridden by what the URL says. */
static PGconn *connect_url(const char *url, const char *app)
{
    const char *keys[] = {
        "connect_timeout",  "keepalives_idle", "keepalives_interval",       "keepalives_count",
        "tcp_user_timeout", "dbname",          "fallback_application_name", NULL};
    const char *vals[] = {"5", "10", "5", "2", "20000", url, app, NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    /* the server's notices ("relation ... already exists, skipping" of
     * an idempotent migration) are not errors: libpq would print them */
    if (conn)
        PQsetNoticeProcessor(conn, ignore_notice, NULL);
    return conn;
}

int sg_pg_open(const char *url, const sg_store_options *opt, sg_pg **out, sg_error *err)
{
    static const sg_store_options defaults = {0};
    opt = opt ? opt : &defaults;
    int rc = sg_pg_url_check(url, err);
    if (rc)
        return rc;
    sg_pg *pg = sg_xcalloc(1, sizeof *pg);
    pg->where = sg_pg_redact(url);
    pg->readonly = opt->readonly;
    pg->sync_full = opt->synchronous == SG_SYNC_FULL;
    pg->timeout_ms = opt->statement_timeout_ms;
    pg->keyed = opt->keyed;
    pg->conn = connect_url(url, "stormguard");
    if (!pg->conn || PQstatus(pg->conn) != CONNECTION_OK)
        rc = sg_pg_error(pg, NULL, err, "connecting to");
    if (rc == 0 && !opt->readonly) {
        int target = opt->migrate_to > 0 && opt->migrate_to < sg_pg_migration_count
                         ? opt->migrate_to
                         : sg_pg_migration_count;
        if ((rc = exec_simple(pg, MIGRATE_LOCK, err, "locking the schema of")) == 0) {
            rc = migrate(pg, target, err);
            sg_error spare;
            if (exec_simple(pg, MIGRATE_UNLOCK, &spare, "unlocking the schema of") && rc == 0) {
                *err = spare;
                rc = SG_ESTORE;
            }
        }
    } else if (rc == 0) {
        int v = sg_pg_schema_version(pg);
        if (v == 0)
            rc = sg_error_set(err, SG_ESTORE,
                              "store %s has no stormguard schema: run stormguard store migrate",
                              pg->where);
        else if (v < 0)
            rc = sg_error_set(err, SG_ESTORE, "reading the schema version of %s", pg->where);
        else if (v != sg_pg_migration_count)
            rc = sg_error_set(err, SG_EVERSION,
                              "store %s has schema version %d, this stormguard needs %d: run "
                              "stormguard store migrate",
                              pg->where, v, sg_pg_migration_count);
    }
    if (rc == 0)
        rc = session_setup(pg, err);
    if (rc) {
        sg_pg_free(pg);
        return rc;
    }
    *out = pg;
    return 0;
}

void sg_pg_free(sg_pg *pg)
{
    if (!pg)
        return;
    sg_pg_snapshot_abort(pg);
    if (pg->conn)
        PQfinish(pg->conn);
    free(pg->where);
    free(pg->replica);
    free(pg);
}

/* ---- globs ---- */

/* Appends c to b escaped as a literal of a regular expression: letters,
 * digits and bytes past ASCII as they are, the rest behind a backslash (in
 * PostgreSQL's regexes a backslash before a letter would be an escape). */
static void regex_literal(sg_buf *b, unsigned char c)
{
    bool plain =
        c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    char two[2] = {'\\', (char)c};
    sg_buf_append(b, plain ? two + 1 : two, plain ? 1 : 2);
}

char *sg_pg_glob_regex(const char *glob)
{
    sg_buf b = {0};
    sg_buf_append(&b, "^", 1);
    for (const char *p = glob; *p; p++) {
        if (*p == '*') {
            sg_buf_append(&b, ".*", 2);
            continue;
        }
        if (*p == '?') {
            sg_buf_append(&b, ".", 1);
            continue;
        }
        /* a set ([abc], [a-z], [^x] or [!x]; a ']' first in it is one of
         * it, as in SQLite's GLOB), or a '[' nothing closes: a literal */
        const char *q = p + 1;
        bool negated = *p == '[' && (*q == '^' || *q == '!');
        q += negated;
        const char *close = *p == '[' ? strchr(*q == ']' ? q + 1 : q, ']') : NULL;
        if (!close) {
            regex_literal(&b, (unsigned char)*p);
            continue;
        }
        sg_buf_append(&b, negated ? "[^" : "[", negated ? 2 : 1);
        for (; q < close; q++) {
            if (*q == '\\' || *q == '[' || *q == ']')
                sg_buf_append(&b, "\\", 1);
            sg_buf_append(&b, q, 1);
        }
        sg_buf_append(&b, "]", 1);
        p = close;
    }
    sg_buf_append(&b, "$", 2); /* with the terminating NUL */
    return b.p;
}
