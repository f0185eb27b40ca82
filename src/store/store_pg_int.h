/* The PostgreSQL store's connection and the helpers its files share: pg.c
 * (connecting, migrations, transactions, the daemon's claim) and the table
 * families pg_events.c (the journal and the ledger, the episodes and the
 * audit log), pg_held.c and pg_snapshots.c. Private to src/store: only
 * these files include libpq-fe.h, and store.c, events.c, held.c,
 * episodes.c and snapshots.c hand every call on a PostgreSQL store to the
 * sg_pg_* function of the same name.
 *
 * Values travel in binary: parameters that are strings or bytes go as raw
 * bytes with their length (no escaping, a NUL-free C string or a blob),
 * integers as decimal text; results come back in binary, read by
 * sg_pg_int, sg_pg_str and sg_pg_double. Columns that hold what a client
 * sent or a server answered (request paths, headers, bodies, errors, key
 * names) are bytea: a database in UTF-8 refuses such bytes as text. */
#ifndef STORMGUARD_STORE_STORE_PG_INT_H
#define STORMGUARD_STORE_STORE_PG_INT_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stormguard/base/error.h"
#include "stormguard/store/episodes.h"
#include "stormguard/store/events.h"
#include "stormguard/store/held.h"
#include "stormguard/store/replicas.h"
#include "stormguard/store/snapshots.h"
#include "stormguard/store/store.h"

/* Slots of the prepared statements (sg_pg.prepared): each family's file
 * holds its slots' SQL. */
enum {
    PG_EVENT_INSERT,
    PG_EVENT_UPDATE,
    PG_LEDGER_ADD,
    PG_LEDGER_HAS,
    PG_EVENTS_PENDING,
    PG_EVENTS_JOURNAL,
    PG_JOB_LOCKS,
    PG_JOB_TRYLOCKS,
    PG_EVENTS_OUTCOMES,
    PG_EVENTS_CLAIM,
    PG_EVENTS_CLAIM_JOBS,
    PG_EVENT_REPLAYED,
    PG_SNAP_KEYS,
    PG_SNAP_CURSOR,
    PG_SNAP_POSTED,
    PG_SNAP_DOCKER,
    PG_SLOT_COUNT
};
_Static_assert(PG_SLOT_COUNT <= 32, "sg_pg.prepared has a bit per slot");

typedef struct pg_snap pg_snap; /* a snapshot being written (pg_snapshots.c) */

typedef struct sg_pg {
    PGconn *conn;
    char *where;    /* the URL without its password, for messages and sg_store_path */
    char *conninfo; /* what PQconnectdb was given (may hold a password: never printed) */
    bool readonly;  /* default_transaction_read_only */
    bool sync_full; /* synchronous_commit = on whatever the server's default */
    int timeout_ms; /* statement_timeout, 0: the server's */
    /* sg_store_options.keyed: the session plans with enable_seqscan,
     * enable_hashjoin and enable_mergejoin off. Its prepared statements
     * join a batch's arrays to a table by its key, and a generic plan is
     * made once, for the table's size at that moment: made while the
     * table was young, it joined the arrays to a scan of all of it (12 ms
     * a batch once it had grown). Where no other plan exists a disabled
     * one is still taken, only costed higher. And without JIT: a claim
     * on a backlog, costed high, spent 15 ms compiling at each call what
     * ran in 20. */
    bool keyed;
    bool in_txn;              /* between sg_pg_begin and commit or rollback */
    bool begin_due;           /* in_txn, its BEGIN not sent yet (sg_pg_begin) */
    uint32_t prepared;        /* bit per slot prepared on this connection */
    char down[SG_ERRMSG_MAX]; /* why the last reset failed ("" while connected) */
    char *replica;            /* sg_store_set_replica: its outcomes are fenced */
    int64_t retry_at;         /* monotonic ms: the next reset, not before */
    int64_t skew_ms;          /* the server's clock minus this machine's, measured at
                               * each connect and each minute (sg_pg_to_server) */
    int64_t skew_at;          /* monotonic ms: when it was measured */
    int backoff_ms;           /* the wait after the last failed reset */
    pg_snap *snap;
} sg_pg;

/* Times the replicas compare (the modes' since and until): stored in the
 * server's clock, so that a replica whose clock is off by seconds reads
 * another's guard mode as lasting as long as it does there. 0 stays 0 (no
 * time). */
int64_t sg_pg_to_server(const sg_pg *pg, int64_t local_ms);
int64_t sg_pg_from_server(const sg_pg *pg, int64_t server_ms);
/* Connects if need be, and measures the skew again if a minute passed
 * (outside a transaction): before the times of a statement convert. */
int sg_pg_follow_clock(sg_pg *pg, sg_error *err);

/* Opens a connection to the database at url (postgresql:// or postgres://)
 * and migrates its schema up to opt->migrate_to (0: latest) unless
 * opt->readonly. *out is written only on success. */
int sg_pg_open(const char *url, const sg_store_options *opt, sg_pg **out, sg_error *err);
void sg_pg_free(sg_pg *pg);

/* Whether where names a PostgreSQL store (a postgresql:// or postgres://
 * URL) rather than an SQLite file. */
bool sg_pg_is_url(const char *where);
/* sg_store_url_check and sg_store_url_redacted. */
int sg_pg_url_check(const char *url, sg_error *err);
char *sg_pg_redact(const char *url);

/* The regular expression (for ~) matching what the glob pattern matches
 * in SQLite's GLOB: * any run, ? one character, [...] a set; the caller
 * frees it. */
char *sg_pg_glob_regex(const char *glob);

/* Up to PG_MAX_PARAMS parameters of one statement, built in order. */
#define PG_MAX_PARAMS 24
typedef struct pg_params {
    int n;
    const char *values[PG_MAX_PARAMS];
    int lengths[PG_MAX_PARAMS];
    int formats[PG_MAX_PARAMS];
    char num[PG_MAX_PARAMS][24];
} pg_params;

static inline void pgp_reset(pg_params *p)
{
    p->n = 0;
}
/* s (NULL: SQL NULL), borrowed until the statement ran. */
void pgp_str(pg_params *p, const char *s);
/* n bytes at b (NULL: SQL NULL), borrowed likewise. */
void pgp_bytes(pg_params *p, const void *b, size_t n);
void pgp_int(pg_params *p, int64_t v);
/* v, or SQL NULL when v is 0. */
void pgp_int_or_null(pg_params *p, int64_t v);
void pgp_double(pg_params *p, double v);

/* Runs sql with p (NULL: none), results in binary. slot >= 0: as the
 * prepared statement of that slot, prepared on this connection's first
 * use; -1: once. Returns the result of a statement that succeeded, or NULL
 * with err set to "<doing> <where>: <server's message>" (SG_ESTORE). A
 * connection found broken outside a transaction is reset first, once. */
PGresult *sg_pg_query(sg_pg *pg, int slot, const char *sql, const pg_params *p, sg_error *err,
                      const char *doing);
/* Sends the BEGIN of the transaction sg_pg_begin opened, if it has not gone
 * yet: before a statement that goes by another way than sg_pg_query (a
 * COPY). */
int sg_pg_send_begin(sg_pg *pg, sg_error *err);
/* err = "<doing> <where>: <the server's or libpq's message, on one line>"
 * (SG_ESTORE), of r or else of the connection; returns SG_ESTORE. */
int sg_pg_error(sg_pg *pg, const PGresult *r, sg_error *err, const char *doing);
/* Passes each row of r (PG_EVENT_COLUMNS) to fn until it returns non-zero,
 * and clears r; NULL (a failed query) is SG_ESTORE. */
int sg_pg_each_event(PGresult *r, sg_event_fn fn, void *ud);
/* Runs sql once for n rows (n > 0): its parameter $k is the array of the
 * k-th value of every row, fill(ud, i, p) building row i's as for a single
 * statement, of element type types[k-1]: 'i' bigint (pgp_int), 't' text,
 * 'b' bytea. One round trip, one execution: the per-statement work
 * (planning, checks, executor start) is done once for the batch, where a
 * pipeline of a statement per row did it for each. slot as for
 * sg_pg_query: prepared, its generic plan takes the arrays for 100 rows,
 * which suits a statement that looks each row up by itself; one that
 * joins the arrays to a table passes -1, planned for these arrays' sizes.
 * Returns as sg_pg_query does. */
PGresult *sg_pg_query_arrays(sg_pg *pg, int slot, const char *sql, const char *types, size_t n,
                             void (*fill)(void *ud, size_t i, pg_params *p), void *ud,
                             sg_error *err, const char *doing);
/* sg_pg_query without the result. */
int sg_pg_exec(sg_pg *pg, int slot, const char *sql, const pg_params *p, sg_error *err,
               const char *doing);
/* *out = the integer in the first column of sql's first row (0 for NULL;
 * sql must give a row); slot as for sg_pg_query. */
int sg_pg_query_int(sg_pg *pg, int slot, const char *sql, const pg_params *p, int64_t *out,
                    sg_error *err, const char *doing);

/* A binary result's value at (row, col): an integer column of any width
 * (0 for NULL), a string or bytes (NULL for NULL; NUL-terminated by
 * libpq, the length by sg_pg_len), a float8, a bool. */
int64_t sg_pg_int(const PGresult *r, int row, int col);
const char *sg_pg_str(const PGresult *r, int row, int col);
size_t sg_pg_len(const PGresult *r, int row, int col);
double sg_pg_double(const PGresult *r, int row, int col);
bool sg_pg_bool(const PGresult *r, int row, int col);

/* Transactions: the journal's group commit, a chunk of a release. A commit
 * the server turned into a rollback (the transaction had failed) is an
 * error. */
int sg_pg_begin(sg_pg *pg, sg_error *err);
int sg_pg_commit(sg_pg *pg, sg_error *err);
void sg_pg_rollback(sg_pg *pg);

int sg_pg_schema_version(sg_pg *pg);
/* The replica's claim on the store at url (sg_store_claim_new): its own
 * connection, named in pg_stat_activity, and its name in the replica
 * table (pg_replicas.c); the caller frees both. */
int sg_pg_claim(const char *url, sg_pg **out, char **name, sg_error *err);
int sg_pg_probe_write(sg_pg *pg, sg_error *err);

/* ---- the table families, each with the contract of its sg_store_ twin ---- */

int sg_pg_event_insert(sg_pg *pg, sg_event_row *row, sg_error *err);
int sg_pg_events_update(sg_pg *pg, sg_event_outcome *outs, size_t n, sg_error *err);
int sg_pg_event_update(sg_pg *pg, int64_t id, sg_event_state state, int64_t attempts,
                       int64_t next_attempt_at, const char *last_error, int64_t done_at,
                       sg_error *err);
int sg_pg_event_replayed(sg_pg *pg, const sg_event_row *row, sg_error *err);
int sg_pg_events_journal(sg_pg *pg, sg_event_insert *ins, size_t n, sg_error *err);
int sg_pg_events_lock_jobs(sg_pg *pg, const sg_event_insert *ins, size_t n, bool wait, bool *got,
                           sg_error *err);
/* The columns of an event, in the order sg_pg_read_event reads them. */
#define PG_EVENT_COLUMNS                                                                           \
    "id, received_at, source, job, number, build_ts, kind, reason, state, method, path, "          \
    "headers, body, attempts, next_attempt_at, last_error, done_at, qgen, would, tag, digest"
/* The event of row i of a result whose columns are
 * PG_EVENT_COLUMNS. */
void sg_pg_read_event(const PGresult *r, int i, sg_event_row *e);
int sg_pg_events_pending(sg_pg *pg, int64_t after_gen, int64_t after_id, int limit, sg_event_fn fn,
                         void *ud, sg_error *err);
int sg_pg_queue_gen(sg_pg *pg, int64_t *gen, sg_error *err);
int sg_pg_events_query(sg_pg *pg, const sg_event_state *state, const char *kind, const char *job,
                       int limit, sg_event_fn fn, void *ud, sg_error *err);
int sg_pg_event_counts(sg_pg *pg, bool open_only, sg_count_fn fn, void *ud, sg_error *err);
int sg_pg_events_stale(sg_pg *pg, int64_t pending, sg_events_stale *out, sg_error *err);
int sg_pg_events_analyze(sg_pg *pg, bool *done, sg_error *err);
int sg_pg_oldest_pending(sg_pg *pg, int64_t *received_at, sg_error *err);
int sg_pg_oldest_held(sg_pg *pg, int64_t *received_at, sg_error *err);
int sg_pg_last_event_id(sg_pg *pg, int64_t *id, sg_error *err);
int sg_pg_events_prune(sg_pg *pg, int64_t before, int64_t limit, int64_t *cursor, int64_t *deleted,
                       bool *more, sg_error *err);
int sg_pg_ledger_add(sg_pg *pg, const char *source, const char *job, int64_t number,
                     int64_t event_id, int64_t accepted_at, bool *added, sg_error *err);
int sg_pg_ledger_has(sg_pg *pg, const char *source, const char *job, int64_t number, bool *has,
                     sg_error *err);
int sg_pg_ledger_newest(sg_pg *pg, sg_ledger_newest_fn fn, void *ud, sg_error *err);
int sg_pg_ledger_jobs(sg_pg *pg, sg_ledger_fn fn, void *ud, int64_t *builds, sg_error *err);
int sg_pg_ledger_docker(sg_pg *pg, sg_ledger_tag_fn fn, void *ud, sg_error *err);
int sg_pg_ledger_mark(sg_pg *pg, int64_t *upto, sg_error *err);
int sg_pg_ledger_set_mark(sg_pg *pg, int64_t upto, sg_error *err);
int sg_pg_ledger_catch_up(sg_pg *pg, int64_t *added, sg_error *err);

int sg_pg_replica_join(sg_pg *pg, const char *name, int64_t lease_ms, sg_error *err);
int sg_pg_replica_renew(sg_pg *pg, const char *name, int64_t lease_ms, int64_t *released,
                        sg_error *err);
int sg_pg_replica_leave(sg_pg *pg, const char *name, sg_error *err);
int sg_pg_replicas(sg_pg *pg, sg_replica_fn fn, void *ud, sg_error *err);
/* sg_store_claim_watcher on the claim's connection. */
int sg_pg_watcher(sg_pg *pg, bool give_up, bool *held, sg_error *err);
int sg_pg_accepted_since(sg_pg *pg, int64_t after_id, int limit, sg_ledger_tag_fn fn, void *ud,
                         int64_t *last, sg_error *err);
int sg_pg_mode_publish(sg_pg *pg, const sg_mode_row *m, bool notify, sg_error *err);
int sg_pg_mode_off(sg_pg *pg, const char *replica, int64_t at_ms, sg_error *err);
int sg_pg_modes(sg_pg *pg, int64_t after_ms, sg_mode_row_fn fn, void *ud, sg_error *err);
int sg_pg_events_claim(sg_pg *pg, const char *name, int limit, sg_event_fn fn, void *ud,
                       sg_error *err);

int sg_pg_episode_open(sg_pg *pg, int64_t at, const char *cause, const char *detail, int64_t *id,
                       sg_error *err);
int sg_pg_episode_update(sg_pg *pg, int64_t id, int64_t ended_at, const char *detail,
                         sg_error *err);
int sg_pg_audit(sg_pg *pg, int64_t at_ms, const char *actor, const char *action, const char *detail,
                sg_error *err);

int sg_pg_held_release(sg_pg *pg, const sg_hold_filter *f, bool newest_only, int64_t qgen,
                       int64_t now, int64_t *released, int64_t *superseded, bool *more,
                       sg_error *err);
int sg_pg_held_drop(sg_pg *pg, const sg_hold_filter *f, const char *reason, int64_t now,
                    int64_t *dropped, bool *more, sg_error *err);
int sg_pg_held_summary(sg_pg *pg, int64_t limit, sg_held_fn fn, void *ud, int64_t *held,
                       int64_t *jobs, sg_error *err);

int sg_pg_snapshot_yield(sg_pg *pg, sg_error *err);
int sg_pg_snapshot_begin(sg_pg *pg, const sg_snapshot_info *meta, int64_t *id, sg_error *err);
int sg_pg_snapshot_add_key(sg_pg *pg, int db, const void *key, size_t key_len, int64_t expire_at_ms,
                           const void *payload, size_t payload_len, sg_error *err);
int sg_pg_index_cursor(sg_pg *pg, const char *source, size_t source_len, const char *job,
                       size_t job_len, int64_t cursor_ms, sg_error *err);
int sg_pg_index_ci(sg_pg *pg, const char *source, size_t source_len, const char *job,
                   size_t job_len, bool running, int64_t number, sg_error *err);
int sg_pg_index_posted(sg_pg *pg, const char *source, size_t source_len, const char *job,
                       size_t job_len, int64_t number, sg_error *err);
int sg_pg_index_docker(sg_pg *pg, const char *account, size_t account_len, const char *repository,
                       size_t repository_len, const char *tag, size_t tag_len, const char *digest,
                       size_t digest_len, sg_error *err);
int sg_pg_snapshot_add_node(sg_pg *pg, int node, const char *address, const char *slots,
                            int64_t keys, sg_error *err);
int sg_pg_snapshot_commit(sg_pg *pg, const sg_snapshot_info *totals, sg_error *err);
void sg_pg_snapshot_abort(sg_pg *pg);
int sg_pg_index_counts(sg_pg *pg, int64_t snapshot_id, sg_index_counts *out, sg_error *err);
int sg_pg_snapshot_nodes(sg_pg *pg, int64_t id, sg_snapshot_node **out, size_t *count,
                         sg_error *err);
int sg_pg_snapshot_list(sg_pg *pg, sg_snapshot_info **out, size_t *count, sg_error *err);
int sg_pg_snapshot_get(sg_pg *pg, int64_t id, sg_snapshot_info *out, sg_error *err);
int sg_pg_last_good(sg_pg *pg, const char *redis, int db, const char *profile_pattern, int64_t *id,
                    int64_t *profile_keys, sg_error *err);
int sg_pg_baseline(sg_pg *pg, int64_t *snapshot_id, sg_error *err);
int sg_pg_snapshot_prune(sg_pg *pg, int keep, int64_t max_age_s, int64_t now_ms, int64_t *pruned,
                         sg_error *err);
/* A key iterator over a PostgreSQL snapshot: sg_store_keys_open hands it
 * out as an sg_key_iter whose next and free come here. */
typedef struct pg_key_iter pg_key_iter;
int sg_pg_keys_open(sg_pg *pg, int64_t snapshot_id, pg_key_iter **out, sg_error *err);
int sg_pg_key_iter_next(pg_key_iter *it, sg_key_row *row, sg_error *err);
void sg_pg_key_iter_free(pg_key_iter *it);
int sg_pg_sample_keys(sg_pg *pg, int64_t snapshot_id, const char *glob, int n, sg_key_fn fn,
                      void *ud, sg_error *err);
int sg_pg_index_each(sg_pg *pg, int64_t snapshot_id, const sg_index_visitor *v, void *ud,
                     sg_error *err);

#endif
