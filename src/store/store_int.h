/* The store's connection state and the helpers its files share: store.c
 * (open, migrate, transactions, checkpoints) and the table families
 * snapshots.c, events.c, held.c and episodes.c. Private to src/store:
 * nothing else includes it, and only these files include sqlite3.h (the
 * PostgreSQL backend's own are store_pg_int.h and pg*.c). */
#ifndef STORMGUARD_STORE_INT_H
#define STORMGUARD_STORE_INT_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stormguard/base/util.h"
#include "stormguard/store/store.h"

/* Slots of the prepared statements of the hot paths (sg_store.st). Each
 * family's file holds its slots' SQL and prepares them with sg_store_stmt. */
enum {
    /* snapshots.c */
    ST_ADD_KEY,
    ST_CURSOR,
    ST_CI_COMPLETED,
    ST_CI_RUNNING,
    ST_POSTED,
    ST_DOCKER,
    /* events.c */
    ST_EVENT_INSERT,
    ST_EVENT_UPDATE,
    ST_EVENT_REPLAYED,
    ST_LEDGER_ADD,
    ST_LEDGER_HAS,
    ST_COUNT
};

/* Snapshot keys go in KEY_BATCH rows per INSERT (or fewer once their bytes
 * pass KEY_BATCH_BYTES). One statement keeps its cursor at the table's end
 * from row to row; a statement per row descends the b-tree again and pays
 * its setup each time. Measured with 1M rows of 100-byte values: 32 rows a
 * statement take a quarter less time than one. */
#define KEY_BATCH 32
#define KEY_BATCH_BYTES (1 << 20)

struct sg_pg;

/* An SQLite store, or a PostgreSQL one when pg is set: then every public
 * function hands the call to its sg_pg_ twin (store_pg_int.h) and the SQLite
 * fields stay unused. */
struct sg_store {
    struct sg_pg *pg;
    sqlite3 *db;
    char *path;
    sqlite3_stmt *st[ST_COUNT];
    int64_t snapshot_id; /* snapshot being written, 0 if none */
    int64_t key_seq;     /* keys added to it so far */
    unsigned snap_rows;  /* rows written since the clock was last read */
    double snap_since;   /* the snapshot's transaction began (sg_mono_s) */
    bool eager;          /* polls for busy locks (sg_store_options.eager_wait, snapshots) */
    bool eager_opt;      /* sg_store_options.eager_wait */
    sg_sync_mode sync;   /* the configured synchronous mode */
    int wal_frames;      /* the WAL's length after this connection's last commit */
    /* snapshot keys not yet inserted (flush_keys) */
    struct pending_key {
        int db;
        int64_t id, expire_at_ms;
        size_t key_at, key_len, payload_at, payload_len; /* in pending_bytes */
    } pending[KEY_BATCH];
    int npending;
    sg_buf pending_bytes;
    sqlite3_stmt *add_keys; /* INSERT of KEY_BATCH rows */
    /* the posted builds of one job not yet written (flush_posted): a job's
     * markers arrive together, from its one hash */
    struct pending_posted {
        sg_buf source, job;
        int64_t *numbers;
        size_t n, cap;
    } posted;
};

/* Sets err (may be NULL) from the connection's current SQLite error, with
 * the OS reason if any: "<doing> <path>: <message>". Returns SG_ESTORE. */
int sg_store_db_error(sg_store *s, sg_error *err, const char *doing);

/* Runs sql (one or more statements, no result rows wanted). */
int sg_store_exec(sg_store *s, const char *sql, sg_error *err, const char *doing);

/* wait: how this connection waits for another's lock (the configured way,
 * or polling while s->eager), or not at all. */
void sg_store_set_busy(sg_store *s, bool wait);

/* The cached statement of slot i, prepared from sql on first use, else
 * reset with its bindings cleared; NULL (err set) if it cannot be prepared.
 * It stays s's until sg_store_free. */
sqlite3_stmt *sg_store_stmt(sg_store *s, int i, const char *sql, sg_error *err);

/* Steps st once, expecting no row, and resets it. */
int sg_store_step_done(sg_store *s, sqlite3_stmt *st, sg_error *err, const char *doing);

/* *out = the first column of sql's first row, with ?1 bound to id (a
 * statement without ?1 ignores it); sql must give a row. */
int sg_store_query_int(sg_store *s, const char *sql, int64_t id, int64_t *out, sg_error *err);

/* v bound as parameter i, or NULL when v is NULL (0). Strings are bound
 * without a copy: they must outlive the statement's step. */
static inline void bind_text_or_null(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static inline void bind_int_or_null(sqlite3_stmt *st, int i, int64_t v)
{
    if (v)
        sqlite3_bind_int64(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

#endif
