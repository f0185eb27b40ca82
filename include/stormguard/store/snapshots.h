/* Snapshots in the store (schema/001_snapshots.sql, 003_suspect.sql): the
 * poller's Redis keys as DUMP payloads with absolute expiry, and the build
 * index the profile decodes from them (cursors, last completed and running
 * builds, posted builds, Docker tags). A snapshot is written in slices that
 * let the gate's journal commit in between, and reads as 'partial' until
 * its last commit; readers of "the latest" or "the baseline" never see a
 * partial or suspect one. Callers include stormguard/store/store.h; like
 * every store call, these run on the one thread using the sg_store. */
#ifndef STORMGUARD_STORE_SNAPSHOTS_H
#define STORMGUARD_STORE_SNAPSHOTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stormguard/base/error.h"

typedef struct sg_store sg_store;

typedef struct sg_snapshot_info {
    int64_t id;
    int64_t taken_at_ms;
    char *reason;
    char *redis; /* redacted URL */
    char *redis_version;
    char *profile;
    char *selection; /* what was selected: patterns, or "all keys" */
    int64_t key_count;
    int64_t bytes;
    int64_t vanished; /* keys that disappeared between SCAN and DUMP */
    double seconds;
    char *state;           /* complete | partial | suspect */
    int db;                /* database taken, or -1 for several (a FLUSHALL) */
    char *profile_pattern; /* the profile's pattern ("igor:*"); NULL without profile */
    int64_t profile_keys;  /* keys matching profile_pattern; -1 when not counted */
    char *suspect_reason;  /* why the state is suspect; NULL otherwise */
} sg_snapshot_info;

/* Frees the info's strings (heap strings, as sg_store_snapshot_get and
 * sg_store_snapshot_list fill them in) and zeroes it. */
void sg_snapshot_info_close(sg_snapshot_info *info);

/* ---- writing a snapshot ---- */

/* Commits the snapshot's current slice if it has held the write lock for
 * its time (50 ms), letting other writers in. sg_store_snapshot_add_key does
 * this itself; a snapshot that goes a while without adding keys (skipping
 * keys it does not take, waiting for Redis) calls it. */
int sg_store_snapshot_yield(sg_store *s, sg_error *err);

/* Starts writing a snapshot: one transaction until commit or abort. Of meta,
 * taken_at_ms, reason, redis, redis_version, profile, selection, db and
 * profile_pattern are recorded. */
int sg_store_snapshot_begin(sg_store *s, const sg_snapshot_info *meta, int64_t *id, sg_error *err);
/* Adds one key of the open snapshot (expire_at_ms 0: none). key and payload
 * are borrowed for the call: small ones are copied, big ones written at once. */
int sg_store_snapshot_add_key(sg_store *s, int db, const void *key, size_t key_len,
                              int64_t expire_at_ms, const void *payload, size_t payload_len,
                              sg_error *err);
/* Build index rows decoded by the profile (see profile.h), of the open
 * snapshot; strings are borrowed for the call. NULL fields are left
 * unchanged when a job's row already exists. */
int sg_store_index_cursor(sg_store *s, const char *source, size_t source_len, const char *job,
                          size_t job_len, int64_t cursor_ms, sg_error *err);
int sg_store_index_ci(sg_store *s, const char *source, size_t source_len, const char *job,
                      size_t job_len, bool running, int64_t number, sg_error *err);
int sg_store_index_posted(sg_store *s, const char *source, size_t source_len, const char *job,
                          size_t job_len, int64_t number, sg_error *err);
int sg_store_index_docker(sg_store *s, const char *account, size_t account_len,
                          const char *repository, size_t repository_len, const char *tag,
                          size_t tag_len, const char *digest, size_t digest_len, sg_error *err);
/* One master of a Cluster the open snapshot read: its address, the slots
 * it served ("0-5460") and the keys taken from it; strings borrowed. */
int sg_store_snapshot_add_node(sg_store *s, int node, const char *address, const char *slots,
                               int64_t keys, sg_error *err);
/* Finishes the snapshot row with the totals (key_count, bytes, vanished,
 * seconds, state, and for a snapshot begun with a profile_pattern,
 * profile_keys and suspect_reason), and commits. */
int sg_store_snapshot_commit(sg_store *s, const sg_snapshot_info *totals, sg_error *err);
/* Rolls back everything since begin. Safe to call when nothing is open. */
void sg_store_snapshot_abort(sg_store *s);

/* ---- reading snapshots ---- */

typedef struct sg_index_counts {
    int64_t jobs, posted, docker_tags;
} sg_index_counts;
/* Counts the build index rows of a snapshot into *out. */
int sg_store_index_counts(sg_store *s, int64_t snapshot_id, sg_index_counts *out, sg_error *err);

/* The masters of a Cluster snapshot id, in node order (none for one
 * server); caller frees with sg_snapshot_nodes_free. */
typedef struct sg_snapshot_node {
    int node;
    char *address, *slots;
    int64_t keys;
} sg_snapshot_node;
int sg_store_snapshot_nodes(sg_store *s, int64_t id, sg_snapshot_node **out, size_t *count,
                            sg_error *err);
void sg_snapshot_nodes_free(sg_snapshot_node *nodes, size_t count);

/* Lists snapshots newest first; caller frees with sg_snapshot_list_free. */
int sg_store_snapshot_list(sg_store *s, sg_snapshot_info **out, size_t *count, sg_error *err);
void sg_snapshot_list_free(sg_snapshot_info *list, size_t count);

/* Looks up one snapshot; id 0 means the latest complete one (never a partial
 * or suspect one; those are found by their id only). The caller closes *out
 * with sg_snapshot_info_close. */
int sg_store_snapshot_get(sg_store *s, int64_t id, sg_snapshot_info *out, sg_error *err);

/* The last good snapshot of a profile: the newest complete snapshot of the
 * same server (redacted URL), database and profile pattern whose profile
 * keys were counted. It is what a new snapshot's profile key count is compared
 * with, and what a rewarm restores by default. *id is 0 (and *profile_keys
 * untouched) if there is none. Sees the caller's open snapshot transaction,
 * whose own row is not complete yet. */
int sg_store_last_good(sg_store *s, const char *redis, int db, const char *profile_pattern,
                       int64_t *id, int64_t *profile_keys, sg_error *err);

/* The newest complete snapshot taken with a profile (the classification
 * baseline; a suspect snapshot never is); 0 if none. */
int sg_store_baseline(sg_store *s, int64_t *snapshot_id, sg_error *err);

/* Deletes snapshots beyond the newest `keep` (0: no count limit) or taken
 * more than max_age_s before now_ms (epoch ms, the caller's clock; 0: no age
 * limit), never the latest complete one nor the
 * baseline (sg_store_baseline): partial and suspect snapshots do not count as
 * good ones and go by the limits like any other. */
int sg_store_snapshot_prune(sg_store *s, int keep, int64_t max_age_s, int64_t now_ms,
                            int64_t *pruned, sg_error *err);

/* Iterates a snapshot's keys in the order they were taken. The row's
 * pointers stay valid until the next call to next or close. */
typedef struct sg_key_iter sg_key_iter;
typedef struct sg_key_row {
    int db;
    const void *key;
    size_t key_len;
    int64_t expire_at_ms; /* 0: no expiry */
    const void *payload;
    size_t payload_len;
} sg_key_row;
int sg_store_keys_open(sg_store *s, int64_t snapshot_id, sg_key_iter **out, sg_error *err);
/* Returns 1 with a row, 0 at the end, or a negative error. */
int sg_key_iter_next(sg_key_iter *it, sg_key_row *row, sg_error *err);
void sg_key_iter_free(sg_key_iter *it);

/* Calls fn with up to n keys of snapshot_id spread over it: keys without
 * expiry that match glob (NULL: any) and hold no NUL byte. The string is
 * valid during the call; fn returns non-zero to stop. */
typedef int (*sg_key_fn)(void *ud, const char *key);
int sg_store_sample_keys(sg_store *s, int64_t snapshot_id, const char *glob, int n, sg_key_fn fn,
                         void *ud, sg_error *err);

/* Calls the visitor for every row of a snapshot's build index; the strings
 * are valid during the call only. */
typedef struct sg_index_visitor {
    void (*cursor)(void *ud, const char *source, const char *job, int64_t cursor_ms);
    void (*completed)(void *ud, const char *source, const char *job, int64_t number);
    void (*posted)(void *ud, const char *source, const char *job, int64_t number);
    /* a tag of Igor's Docker index; digest NULL when Igor stored none */
    void (*docker)(void *ud, const char *account, const char *repository, const char *tag,
                   const char *digest);
} sg_index_visitor;
int sg_store_index_each(sg_store *s, int64_t snapshot_id, const sg_index_visitor *v, void *ud,
                        sg_error *err);

#endif
