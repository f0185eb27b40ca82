/* The one SQLite database: the connection (opened in WAL mode with explicit
 * pragmas, created 0600, migrated on open from the schema/ files embedded at
 * build time), its transactions and its WAL. What the database holds is
 * declared by table family, each in a header of its own that a caller
 * includes beside this one: snapshots.h (snapshots and the build index),
 * events.h (the gate's journal and the ledger), held.h (the held queue),
 * episodes.h (episodes and the audit log). An sg_store is used by one
 * thread at a time.
 *
 * What the gate needs from a store backend, operation by operation. SQLite
 * is the embedded default; PostgreSQL (src/store/pg*.c, for gates that
 * share one store) owes the gate exactly this, under the same names, and
 * no more: every sg_store_ function of a store opened from a URL hands
 * the call to its sg_pg_ twin. The gate uses
 * two connections: the journal's writer thread (gate/journal.h) writes, one
 * read-only connection on the loop's thread pool reads (gate/core.c); a
 * read sees what was committed before it began and nothing half-written.
 *
 * 1. Journal a batch (sg_store_begin, sg_store_event_insert...,
 *    sg_store_commit / sg_store_rollback). The writer applies every queued
 *    write in one transaction; the commit is durable at the synchronous
 *    level asked (sg_sync_mode: "full" survives a power loss) before any
 *    poller is answered, and a failed commit leaves none of the batch
 *    behind. Event ids grow with the order of insertion and are never
 *    reused (the delivery queue and a chunked release depend on it).
 * 2. The ledger check, in the same transaction (sg_store_ledger_has,
 *    sg_store_ledger_add): a build (source, job, number) is accepted at
 *    most once, ever. Within one writer the journal's memory tells the
 *    builds not written yet; the store tells the rest. A backend written by
 *    several gates at once must make the check and the add one atomic step
 *    (a unique key; "added" says who won), or two gates forward one build;
 *    the loser's event is then journaled a replay (sg_store_event_replayed)
 *    in the same transaction.
 * 3. The ledger in bulk (sg_store_ledger_mark, _set_mark, _catch_up): every
 *    event up to the mark that should be in the ledger is; on open the
 *    builds of the events after it are added. A backend that writes each
 *    build with its event keeps the mark at the last event. A Docker event
 *    is a build to the ledger: account, repository and the identity of
 *    (tag, digest) as its number (events.h, 010_docker_events.sql); the
 *    gate reads the Docker tags it accepted when it starts
 *    (sg_store_ledger_docker).
 * 4. Deliveries (sg_store_events_pending, sg_store_queue_gen,
 *    sg_store_event_update): the pending events in (qgen, id) order after a
 *    cursor, in pages; a delivery's outcome (forwarded, retried at a time,
 *    dead) as one update of that event. One gate on SQLite delivers its
 *    own queue; gates sharing a store claim the heads of the jobs' queues
 *    under a lease instead (replicas.h).
 * 5. The held queue (held.h: sg_store_held_summary, _release, _drop): held
 *    events by job (a Docker repository's by repository, a job glob
 *    matching repository:tag); release into a new queue generation behind
 *    what is queued (optionally only each job's newest build, or a
 *    repository's last posted tag, the rest superseded) and
 *    drop with a reason, both in bounded chunks acting only on events up
 *    to the id the command began at, each chunk its own transaction.
 * 6. Retention (sg_store_events_prune): bounded chunks of events done with
 *    and older than a time; the ledger keeps its rows.
 * 7. The guard's record (episodes.h: episodes opened and ended, the audit
 *    log). The guard's mode itself lives in the gate's memory: a restarted
 *    gate on SQLite starts calm. Gates sharing a store share it through
 *    the backend's mode rows, told by a notice (replicas.h: a replica
 *    joining adopts the modes still on).
 * 8. The baseline index (snapshots.h: sg_store_baseline, sg_store_index_each,
 *    sg_store_sample_keys): the newest complete profile snapshot, its build
 *    index (cursor, last number, posted markers, Igor's Docker tags with
 *    their digests) visited row by row, and a sample of its keys for the
 *    watcher. Snapshots are written by the
 *    sidecar (snapshot/), not the gate.
 * 9. What operators read (sg_store_event_counts by kind, state and
 *    would, sg_store_events_query, sg_store_last_event_id) and whether
 *    writes are taken again after a failure (sg_store_probe_write: a write
 *    that changes nothing). An event's would (observe mode) is written with
 *    it and never changes.
 * 10. Who runs on the store (sg_store_claim_new): on SQLite one daemon,
 *    a second refused naming the first; on PostgreSQL any number of
 *    replicas, each with a lease (replicas.h).
 * Checkpoints and the WAL (sg_store_checkpoint, sg_store_wal_frames) are
 * SQLite's own: another backend needs no counterpart. */
#ifndef STORMGUARD_STORE_H
#define STORMGUARD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stormguard/base/error.h"

typedef struct sg_store sg_store;

typedef struct sg_migration {
    int version;
    const char *name;
    const char *sql;
} sg_migration;

/* Embedded schema/NNN_*.sql, in order (generated by cmake/embed.cmake),
 * and the PostgreSQL schema's, schema/pg/NNN_*.sql. */
extern const sg_migration sg_migrations[];
extern const int sg_migration_count;
extern const sg_migration sg_pg_migrations[];
extern const int sg_pg_migration_count;

/* PRAGMA synchronous of the store's commits. The parser takes "normal" or
 * "full" in any case and writes *out only on success (else SG_EINVAL). */
typedef enum sg_sync_mode { SG_SYNC_NORMAL = 0, SG_SYNC_FULL } sg_sync_mode;
int sg_sync_mode_parse(const char *s, sg_sync_mode *out);
const char *sg_sync_mode_name(sg_sync_mode m);

typedef struct sg_store_options {
    sg_sync_mode synchronous;
    bool readonly;            /* open an existing database for reading only */
    int migrate_to;           /* 0: latest; tests stop at an earlier version */
    int cache_kib;            /* page cache; 0: SQLite's default (2 MiB) */
    int checkpoint_pages;     /* WAL auto-checkpoint interval; 0: SQLite's default (1000),
                                 -1: never (someone calls sg_store_checkpoint and
                                 watches sg_store_wal_frames) */
    bool eager_wait;          /* poll for another connection's lock every 0.2 ms (the
                                 journal: never miss a snapshot's pause) */
    int wal_limit_kib;        /* journal_size_limit: a WAL starting over is cut to
                                 this; 0: never cut */
    int statement_timeout_ms; /* PostgreSQL: a statement running longer fails;
                                 0: the server's setting */
    bool keyed;               /* PostgreSQL: every statement of this connection reaches
                                 rows by their keys, so its plans take no sequential
                                 scan nor hash or merge join (store_pg_int.h) */
} sg_store_options;

/* Opens (creating with mode 0600 and its directory if needed) and migrates
 * the database at path; opt may be NULL (all defaults). A path that is a
 * postgresql:// (or postgres://) URL opens the PostgreSQL backend instead:
 * libpq's URL, its PGPASSWORD and PGPASSFILE; synchronous full makes every
 * commit synchronous whatever the server's default, the cache and WAL
 * options do not apply. *out is written only on success. */
int sg_store_open(const char *path, const sg_store_options *opt, sg_store **out, sg_error *err);
/* Whether where names a PostgreSQL store (a postgresql:// or postgres://
 * URL) rather than an SQLite file. */
bool sg_store_is_url(const char *where);
/* 0 if libpq can parse url, else SG_EUSAGE with its reason (never the
 * URL itself: it may hold a password). */
int sg_store_url_check(const char *url, sg_error *err);
/* url without its password, postgresql://user@host:port/db; the caller
 * frees it. */
char *sg_store_url_redacted(const char *url);

/* The daemon's claim on the store at where (a path or a postgresql://
 * URL), held until sg_store_claim_free or the process exits. SQLite: one
 * daemon per store, an exclusive flock on "PATH.lock", which then holds
 * its pid; another daemon holding it is SG_ESTORE naming it. PostgreSQL:
 * any number of daemons, each a replica (replicas.h) joined under a name
 * unique to this run, with a connection of its own named in
 * pg_stat_activity ("stormguard run NAME"); freeing the claim leaves, and
 * the replica's delivery claims go back to the others at once. One-shot
 * commands take no claim: they share the store with a running daemon. */
typedef struct sg_store_claim sg_store_claim;
int sg_store_claim_new(const char *where, sg_store_claim **out, sg_error *err);
/* The replica's name (PostgreSQL), NULL for an SQLite store's claim. */
const char *sg_store_claim_name(const sg_store_claim *c);
/* Whether the claim's daemon is the one that watches Redis and takes the
 * periodic snapshots: SQLite's always is; of a PostgreSQL store's
 * replicas, the one holding a session advisory lock on its claim's
 * connection, taken here when free (and lost with the connection). With
 * give_up, a holder that cannot do the watcher's work (Redis unreachable
 * from it) lets the lock go for another replica to take: *held is false
 * (SQLite's daemon stays the watcher). Asks the server: off the loop. */
int sg_store_claim_watcher(sg_store_claim *c, bool give_up, bool *held, sg_error *err);
void sg_store_claim_free(sg_store_claim *c);
/* Closes the connection, rolling back a snapshot still being written
 * (sg_store_snapshot_abort). Accepts NULL. */
void sg_store_free(sg_store *s);

/* The schema version (PRAGMA user_version); -1 if it cannot be read. */
int sg_store_schema_version(sg_store *s);
/* The path the store was opened with (a URL without its password);
 * valid until sg_store_free. */
const char *sg_store_path(const sg_store *s);

/* Whether the store is one several daemons may share (PostgreSQL): its
 * commits need no checkpoints, and sg_store_wal_frames stays 0. */
bool sg_store_shared(const sg_store *s);

/* ---- transactions and the WAL ---- */

/* Copies what the WAL holds into the database. Passive never blocks
 * writers, but under a steady stream of commits it never catches up either,
 * and SQLite starts the WAL over only after a checkpoint that did: restart
 * and truncate take the write lock (never waiting for it, nor for readers),
 * copy the rest, and let the next commit write the WAL from its start;
 * truncate also empties the file. *wal_frames (may be NULL) is the WAL's
 * length in frames (pages) afterwards (0 once truncated), -1 if unknown (a
 * writer or reader held it up). */
typedef enum sg_checkpoint_mode {
    SG_CHECKPOINT_PASSIVE,
    SG_CHECKPOINT_RESTART, /* like truncate, but the next commit overwrites the file */
    SG_CHECKPOINT_TRUNCATE
} sg_checkpoint_mode;
int sg_store_checkpoint(sg_store *s, sg_checkpoint_mode mode, int *wal_frames, sg_error *err);

/* With checkpoint_pages -1: the WAL's length in frames after this
 * connection's last commit. */
int sg_store_wal_frames(const sg_store *s);

/* Explicit transactions, for the journal's group commit. */
int sg_store_begin(sg_store *s, sg_error *err);
int sg_store_commit(sg_store *s, sg_error *err);
void sg_store_rollback(sg_store *s);

/* Rewrites one row as it is (the ledger mark), in the open transaction:
 * its commit writes a page as a journaled event's does, so it tells whether
 * the store takes writes again. */
int sg_store_probe_write(sg_store *s, sg_error *err);

#endif
