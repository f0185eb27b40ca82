/* Snapshots on PostgreSQL (store_pg_int.h; schema/pg/002_snapshots.sql): each
 * function has the contract of its sg_store_ twin in snapshots.h, whose
 * SQLite version (snapshots.c) is the reference.
 *
 * A snapshot is one transaction from begin to commit or abort. Under MVCC
 * it blocks none of the journal's writers, and no other session sees it
 * before its commit, so it needs no slices (yield does nothing) and an
 * abort leaves nothing behind. What it writes goes in batches, since every
 * statement is a round trip to the server (a network's, for gates that
 * share one): keys by COPY in binary format, a few thousand rows or a few
 * MB at a time; build index rows, posted builds and Docker tags by one
 * INSERT ... SELECT FROM unnest() of arrays per batch, merged per job in
 * memory first. Keys are read by keyset pages, so that nothing stays open
 * on the connection between two calls of an iterator; the build index,
 * read in one call, by cursors in a transaction of that call. */
#include "store_pg_int.h"

#include <assert.h>
#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/base/clock.h"
#include "stormguard/base/util.h"

/* ---- statements ---- */

#define STR_(x) #x
#define STR(x) STR_(x)

/* A page of keys read: KEY_PAGE_ROWS rows, fewer once their bytes reach
 * KEY_PAGE_BYTES (libpq holds a whole result in memory; a page of DUMPs of
 * big hashes could otherwise be gigabytes). */
#define KEY_PAGE_ROWS 1000
#define KEY_PAGE_BYTES (8 << 20)
/* Build index rows fetched at a time. */
#define INDEX_PAGE 10000

static const char *const statement_sql[PG_SLOT_COUNT] = {
    /* the page after seq $2: $3 rows, up to the first at which the
     * page's bytes reach $4, sized by octet_length, which reads a TOASTed
     * value's header, not the value */
    [PG_SNAP_KEYS] = "SELECT seq, db, key, expire_at_ms, payload FROM snapshot_key "
                     "WHERE snapshot_id = $1 AND seq > $2 AND seq <= ("
                     "SELECT coalesce(min(seq) FILTER (WHERE upto >= $4::bigint), max(seq)) "
                     "FROM (SELECT seq, sum(octet_length(key)::bigint + octet_length(payload)) "
                     "OVER (ORDER BY seq) AS upto FROM (SELECT seq, key, payload "
                     "FROM snapshot_key WHERE snapshot_id = $1 AND seq > $2 "
                     "ORDER BY seq LIMIT $3) p) w) ORDER BY seq",
    /* a batch of rows, one per job; a field a row leaves NULL keeps what
     * the job's row already has */
    [PG_SNAP_CURSOR] =
        "INSERT INTO build_index(snapshot_id, source, job, cursor_ms, last_completed, "
        "last_running) SELECT $1::bigint, u.* FROM unnest($2::bytea[], $3::bytea[], "
        "$4::bigint[], $5::bigint[], $6::bigint[]) AS u ON CONFLICT (snapshot_id, source, job) "
        "DO UPDATE SET cursor_ms = coalesce(excluded.cursor_ms, build_index.cursor_ms), "
        "last_completed = coalesce(excluded.last_completed, build_index.last_completed), "
        "last_running = coalesce(excluded.last_running, build_index.last_running)",
    /* a batch of jobs, each with the slice [lo:hi] of the numbers $6; a
     * job's second row (two marker hashes of one job) joins the first */
    [PG_SNAP_POSTED] =
        "INSERT INTO posted_builds(snapshot_id, source, job, numbers) "
        "SELECT $1::bigint, u.source, u.job, ($6::bigint[])[u.lo:u.hi] "
        "FROM unnest($2::bytea[], $3::bytea[], $4::integer[], $5::integer[]) "
        "AS u(source, job, lo, hi) ON CONFLICT (snapshot_id, source, job) DO UPDATE SET "
        "numbers = ARRAY(SELECT n FROM unnest(posted_builds.numbers) AS a(n) UNION "
        "SELECT n FROM unnest(excluded.numbers) AS b(n) ORDER BY 1)",
    /* as SQLite's INSERT OR REPLACE: the last digest given wins */
    [PG_SNAP_DOCKER] = "INSERT INTO docker_tag(snapshot_id, account, repository, tag, digest) "
                       "SELECT $1::bigint, u.* FROM unnest($2::bytea[], $3::bytea[], $4::bytea[], "
                       "$5::bytea[]) AS u ON CONFLICT (snapshot_id, account, repository, tag) "
                       "DO UPDATE SET digest = excluded.digest",
};

static PGresult *query(sg_pg *pg, int slot, const pg_params *p, sg_error *err, const char *doing)
{
    assert(statement_sql[slot]);
    return sg_pg_query(pg, slot, statement_sql[slot], p, err, doing);
}

static int exec_slot(sg_pg *pg, int slot, const pg_params *p, sg_error *err, const char *doing)
{
    assert(statement_sql[slot]);
    return sg_pg_exec(pg, slot, statement_sql[slot], p, err, doing);
}

/* ---- binary values ---- */

/* Type oids of the arrays' elements (pg_type.h): the binary form of an
 * array names it, and the server checks it. */
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT4 23

/* The most bytes one value (a field, a CopyData message) may hold: 1 GB. */
#define VALUE_MAX 0x3fffffffu

/* n bytes at p (which may be NULL when n is 0). */
static void put_bytes(sg_buf *b, const void *p, size_t n)
{
    if (n)
        sg_buf_append(b, p, n);
}

static void put16(sg_buf *b, uint16_t v)
{
    v = htobe16(v);
    sg_buf_append(b, &v, 2);
}

static void put32(sg_buf *b, uint32_t v)
{
    v = htobe32(v);
    sg_buf_append(b, &v, 4);
}

static void put64(sg_buf *b, int64_t v)
{
    uint64_t x = htobe64((uint64_t)v);
    sg_buf_append(b, &x, 8);
}

static uint32_t get32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return be32toh(v);
}

static int64_t get64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return (int64_t)be64toh(v);
}

/* Starts a one-dimensional array of n elements of type oid, in the binary
 * form (array_recv): dimensions, a flags word the server recomputes, the
 * element type, then each element as a length (-1 for NULL) and bytes. */
static void array_start(sg_buf *a, uint32_t oid, size_t n)
{
    a->len = 0;
    put32(a, 1);
    put32(a, 0);
    put32(a, oid);
    put32(a, (uint32_t)n);
    put32(a, 1);
}

static void array_bytes(sg_buf *a, const void *p, size_t n)
{
    put32(a, (uint32_t)n);
    put_bytes(a, p, n);
}

static void array_null(sg_buf *a)
{
    put32(a, UINT32_MAX);
}

static void array_int8(sg_buf *a, int64_t v)
{
    put32(a, 8);
    put64(a, v);
}

static void array_int4(sg_buf *a, uint32_t v)
{
    put32(a, 4);
    put32(a, v);
}

/* ---- batches of index rows ---- */

/* Index rows go INDEX_BATCH to a statement (or fewer once their strings
 * pass INDEX_BATCH_BYTES, or a batch's posted numbers POSTED_BATCH). */
#define INDEX_BATCH 4096
#define INDEX_BATCH_BYTES (1 << 20)
#define POSTED_BATCH 65536
#define HASH_SLOTS (2 * INDEX_BATCH) /* a power of two, never more than half full */

/* One row of a batch: the strings that key it (source and job, or account,
 * repository and tag), in the batch's bytes, and what it holds. */
typedef struct irow {
    uint64_t hash;
    size_t at[3], len[3];
    size_t digest_at, digest_len; /* docker_tag */
    bool has_digest;
    int64_t v[3];           /* build_index: cursor_ms, last_completed, last_running */
    unsigned has;           /* bit i: v[i] given */
    size_t num_at, num_len; /* posted_builds: in the batch's nums */
} irow;

/* Rows of one table not yet written. An ON CONFLICT DO UPDATE statement
 * may not meet one row twice, so a batch holds each key once: the hash
 * finds the row a second call for the same job joins. */
typedef struct batch {
    int nkey; /* strings that key a row */
    irow *rows;
    size_t n, cap;
    sg_buf bytes;
    int64_t *nums;
    size_t nnums, numcap;
    uint32_t slots[HASH_SLOTS]; /* a row's index + 1, 0 free */
} batch;

static uint64_t hash_key(int nkey, const char *const *s, const size_t *len)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a, each string ended by its length */
    for (int k = 0; k < nkey; k++) {
        for (size_t i = 0; i < len[k]; i++)
            h = (h ^ (unsigned char)s[k][i]) * 1099511628211ull;
        h = (h ^ len[k]) * 1099511628211ull;
    }
    return h;
}

static bool row_is(const batch *b, const irow *r, uint64_t h, const char *const *s,
                   const size_t *len)
{
    if (r->hash != h)
        return false;
    for (int k = 0; k < b->nkey; k++)
        if (r->len[k] != len[k] || (len[k] && memcmp(b->bytes.p + r->at[k], s[k], len[k])))
            return false;
    return true;
}

/* The row of key s, or NULL with *slot where it would go. */
static irow *batch_find(batch *b, uint64_t h, const char *const *s, const size_t *len, size_t *slot)
{
    size_t i = h & (HASH_SLOTS - 1);
    for (; b->slots[i]; i = (i + 1) & (HASH_SLOTS - 1)) {
        irow *r = &b->rows[b->slots[i] - 1];
        if (row_is(b, r, h, s, len))
            return r;
    }
    *slot = i;
    return NULL;
}

/* A new row of key s at slot (from batch_find). */
static irow *batch_add(batch *b, uint64_t h, const char *const *s, const size_t *len, size_t slot)
{
    assert(b->n < INDEX_BATCH);
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 256;
        b->rows = sg_xrealloc(b->rows, b->cap * sizeof *b->rows);
    }
    irow *r = &b->rows[b->n++];
    memset(r, 0, sizeof *r);
    r->hash = h;
    for (int k = 0; k < b->nkey; k++) {
        r->at[k] = b->bytes.len;
        r->len[k] = len[k];
        put_bytes(&b->bytes, s[k], len[k]);
    }
    b->slots[slot] = (uint32_t)b->n;
    return r;
}

static bool batch_full(const batch *b)
{
    return b->n == INDEX_BATCH || b->bytes.len >= INDEX_BATCH_BYTES || b->nnums >= POSTED_BATCH;
}

static void batch_clear(batch *b)
{
    b->n = 0;
    b->bytes.len = 0;
    b->nnums = 0;
    memset(b->slots, 0, sizeof b->slots);
}

static void batch_free(batch *b)
{
    free(b->rows);
    sg_buf_free(&b->bytes);
    free(b->nums);
}

/* The bytea[] of key string k of every row. */
static void array_of_key(sg_buf *a, const batch *b, int k)
{
    array_start(a, OID_BYTEA, b->n);
    for (size_t i = 0; i < b->n; i++)
        array_bytes(a, b->bytes.p + b->rows[i].at[k], b->rows[i].len[k]);
}

/* ---- the snapshot being written ---- */

/* Keys go KEY_BATCH_ROWS to a COPY (or fewer once their bytes pass
 * KEY_BATCH_BYTES); a key and value of KEY_BIG bytes or more go in a COPY
 * of their own, straight from the caller's memory. */
#define KEY_BATCH_ROWS 8192
#define KEY_BATCH_BYTES (4 << 20)
#define KEY_BIG (1 << 20)

struct pg_snap {
    int64_t id;
    int64_t seq;  /* the next key's */
    sg_buf keys;  /* COPY data of the keys not yet written, from its header on */
    size_t nkeys; /* rows in keys */
    batch index, posted, docker;
    bool posted_open; /* the posted batch's last row still takes its job's numbers */
    sg_buf arr[5];    /* the arrays of a batch being written */
};

static void snap_free(pg_snap *sn)
{
    if (!sn)
        return;
    sg_buf_free(&sn->keys);
    batch_free(&sn->index);
    batch_free(&sn->posted);
    batch_free(&sn->docker);
    for (size_t i = 0; i < sizeof sn->arr / sizeof sn->arr[0]; i++)
        sg_buf_free(&sn->arr[i]);
    free(sn);
}

/* The binary COPY format (the COPY manual page): a signature, a flags word
 * and a header extension length; rows of a field count and fields, each a
 * length (-1 for NULL) and bytes; -1 where the next row's count would be.
 * The signature's last byte is the literal's NUL. */
static const char copy_signature[11] = "PGCOPY\n\377\r\n";
#define COPY_SQL                                                                                   \
    "COPY snapshot_key(snapshot_id, seq, db, key, expire_at_ms, payload) FROM STDIN "              \
    "WITH (FORMAT binary)"
/* CopyData messages carry at most this much each (any split will do: a row
 * may span messages). */
#define COPY_CHUNK (64u << 20)

static void copy_header(sg_buf *b)
{
    sg_buf_append(b, copy_signature, sizeof copy_signature);
    put32(b, 0);
    put32(b, 0);
}

/* A row's fields up to the key's length; the key follows. */
static void copy_row_start(sg_buf *b, int64_t id, int64_t seq, int db, size_t key_len)
{
    put16(b, 6);
    put32(b, 8);
    put64(b, id);
    put32(b, 8);
    put64(b, seq);
    put32(b, 4);
    put32(b, (uint32_t)db);
    put32(b, (uint32_t)key_len);
}

/* The fields between the key and the payload; the payload follows. */
static void copy_row_middle(sg_buf *b, int64_t expire_at_ms, size_t payload_len)
{
    if (expire_at_ms > 0) {
        put32(b, 8);
        put64(b, expire_at_ms);
    } else {
        put32(b, UINT32_MAX);
    }
    put32(b, (uint32_t)payload_len);
}

/* Writes the parts, which together are whole COPY data, by one COPY. The
 * connection is idle again afterwards, also after an error (the server's,
 * which the transaction has then failed with, or the connection's). */
static int copy_keys(sg_pg *pg, const sg_slice *parts, int nparts, sg_error *err)
{
    char doing[80];
    snprintf(doing, sizeof doing, "writing the keys of snapshot %lld to", (long long)pg->snap->id);
    if (PQstatus(pg->conn) != CONNECTION_OK)
        return sg_error_set(err, SG_ESTORE, "%s %s: the connection was lost", doing, pg->where);
    if (sg_pg_send_begin(pg, err))
        return SG_ESTORE;
    PGresult *r = PQexec(pg->conn, COPY_SQL);
    if (PQresultStatus(r) != PGRES_COPY_IN) { /* the connection is idle */
        int rc = sg_pg_error(pg, r, err, doing);
        PQclear(r);
        return rc;
    }
    PQclear(r);
    bool sent = true;
    for (int i = 0; i < nparts && sent; i++)
        for (size_t off = 0; off < parts[i].len && sent; off += COPY_CHUNK) {
            size_t n = parts[i].len - off < COPY_CHUNK ? parts[i].len - off : COPY_CHUNK;
            sent = PQputCopyData(pg->conn, parts[i].p + off, (int)n) == 1;
        }
    int rc = 0;
    /* a COPY that could not send it all is failed by the server; the
     * error is the connection's */
    if (PQputCopyEnd(pg->conn, sent ? NULL : "stormguard could not send every key") != 1 || !sent)
        rc = sg_pg_error(pg, NULL, err, doing);
    /* the COPY's result, then NULL; should libpq still be in COPY IN (an
     * end it could not send), it is told to end it once more, then left */
    for (int copy_in = 0; (r = PQgetResult(pg->conn)); PQclear(r)) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COPY_IN) {
            if (copy_in++ || PQputCopyEnd(pg->conn, "stormguard gave up the COPY") != 1) {
                PQclear(r);
                break;
            }
        } else if (st != PGRES_COMMAND_OK && rc == 0) {
            rc = sg_pg_error(pg, r, err, doing);
        }
    }
    return rc;
}

/* Writes the buffered keys; the buffer is empty afterwards, also after an
 * error. */
static int flush_keys(sg_pg *pg, sg_error *err)
{
    pg_snap *sn = pg->snap;
    if (!sn->nkeys)
        return 0;
    put16(&sn->keys, UINT16_MAX);
    sg_slice all = {sn->keys.p, sn->keys.len};
    int rc = copy_keys(pg, &all, 1, err);
    sn->keys.len = 0;
    sn->nkeys = 0;
    return rc;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Sorts the open posted row's numbers and keeps each once: the row takes
 * no more. */
static void close_posted(pg_snap *sn)
{
    if (!sn->posted_open)
        return;
    batch *b = &sn->posted;
    irow *r = &b->rows[b->n - 1];
    int64_t *v = b->nums + r->num_at;
    qsort(v, r->num_len, sizeof *v, cmp_i64);
    size_t n = 0;
    for (size_t i = 0; i < r->num_len; i++)
        if (n == 0 || v[i] != v[n - 1])
            v[n++] = v[i];
    r->num_len = n;
    b->nnums = r->num_at + n;
    sn->posted_open = false;
}

static void doing_index(char *buf, size_t cap, const pg_snap *sn)
{
    snprintf(buf, cap, "writing the build index of snapshot %lld to", (long long)sn->id);
}

static int flush_index(sg_pg *pg, sg_error *err)
{
    pg_snap *sn = pg->snap;
    batch *b = &sn->index;
    if (!b->n)
        return 0;
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, sn->id);
    for (int k = 0; k < 2; k++) {
        array_of_key(&sn->arr[k], b, k);
        pgp_bytes(&p, sn->arr[k].p, sn->arr[k].len);
    }
    for (int f = 0; f < 3; f++) {
        sg_buf *a = &sn->arr[2 + f];
        array_start(a, OID_INT8, b->n);
        for (size_t i = 0; i < b->n; i++) {
            if (b->rows[i].has & 1u << f)
                array_int8(a, b->rows[i].v[f]);
            else
                array_null(a);
        }
        pgp_bytes(&p, a->p, a->len);
    }
    char doing[80];
    doing_index(doing, sizeof doing, sn);
    int rc = exec_slot(pg, PG_SNAP_CURSOR, &p, err, doing);
    batch_clear(b);
    return rc;
}

static int flush_posted(sg_pg *pg, sg_error *err)
{
    pg_snap *sn = pg->snap;
    batch *b = &sn->posted;
    close_posted(sn);
    if (!b->n)
        return 0;
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, sn->id);
    for (int k = 0; k < 2; k++) {
        array_of_key(&sn->arr[k], b, k);
        pgp_bytes(&p, sn->arr[k].p, sn->arr[k].len);
    }
    /* each row's numbers follow the one before's in nums: its slice of
     * them is [num_at + 1 : num_at + num_len] (arrays count from 1) */
    array_start(&sn->arr[2], OID_INT4, b->n);
    array_start(&sn->arr[3], OID_INT4, b->n);
    for (size_t i = 0; i < b->n; i++) {
        array_int4(&sn->arr[2], (uint32_t)(b->rows[i].num_at + 1));
        array_int4(&sn->arr[3], (uint32_t)(b->rows[i].num_at + b->rows[i].num_len));
    }
    array_start(&sn->arr[4], OID_INT8, b->nnums);
    for (size_t i = 0; i < b->nnums; i++)
        array_int8(&sn->arr[4], b->nums[i]);
    for (int k = 2; k < 5; k++)
        pgp_bytes(&p, sn->arr[k].p, sn->arr[k].len);
    char doing[80];
    doing_index(doing, sizeof doing, sn);
    int rc = exec_slot(pg, PG_SNAP_POSTED, &p, err, doing);
    batch_clear(b);
    return rc;
}

static int flush_docker(sg_pg *pg, sg_error *err)
{
    pg_snap *sn = pg->snap;
    batch *b = &sn->docker;
    if (!b->n)
        return 0;
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, sn->id);
    for (int k = 0; k < 3; k++) {
        array_of_key(&sn->arr[k], b, k);
        pgp_bytes(&p, sn->arr[k].p, sn->arr[k].len);
    }
    array_start(&sn->arr[3], OID_BYTEA, b->n);
    for (size_t i = 0; i < b->n; i++) {
        const irow *r = &b->rows[i];
        if (r->has_digest)
            array_bytes(&sn->arr[3], b->bytes.p + r->digest_at, r->digest_len);
        else
            array_null(&sn->arr[3]);
    }
    pgp_bytes(&p, sn->arr[3].p, sn->arr[3].len);
    char doing[80];
    snprintf(doing, sizeof doing, "writing the Docker index of snapshot %lld to",
             (long long)sn->id);
    int rc = exec_slot(pg, PG_SNAP_DOCKER, &p, err, doing);
    batch_clear(b);
    return rc;
}

/* Everything still buffered. After an error the transaction has failed:
 * what is left is the abort's to free. */
static int flush_all(sg_pg *pg, sg_error *err)
{
    int rc;
    if ((rc = flush_keys(pg, err)) || (rc = flush_index(pg, err)) || (rc = flush_posted(pg, err)) ||
        (rc = flush_docker(pg, err)))
        return rc;
    return 0;
}

/* Before reading the snapshot being written: what it still buffers. */
static int settle(sg_pg *pg, int64_t id, sg_error *err)
{
    return pg->snap && pg->snap->id == id ? flush_all(pg, err) : 0;
}

/* ---- writing a snapshot ---- */

int sg_pg_snapshot_yield(sg_pg *pg, sg_error *err)
{
    /* Nothing to do: the snapshot's one transaction blocks no other
     * writer (MVCC), so it has no slices to commit, and what it buffers
     * goes out as its batches fill. */
    (void)err;
    assert(pg->snap);
    return 0;
}

int sg_pg_snapshot_begin(sg_pg *pg, const sg_snapshot_info *m, int64_t *id, sg_error *err)
{
    assert(!pg->snap);
    const char *doing = "starting a snapshot in";
    if (pg->in_txn)
        return sg_error_set(err, SG_ESTORE, "%s %s: a transaction is already open", doing,
                            pg->where);
    int rc = sg_pg_begin(pg, err);
    if (rc)
        return rc;
    /* A snapshot is what a flush deletes against: its commit reaches the
     * disk whatever the server's default, so that a power loss right
     * after a flush cannot take the snapshot with it (a stronger setting,
     * remote_apply say, stays). */
    rc = sg_pg_exec(pg, -1,
                    "SELECT set_config('synchronous_commit', 'on', true) "
                    "WHERE current_setting('synchronous_commit') = 'off'",
                    NULL, err, doing);
    PGresult *r = NULL;
    if (rc == 0) {
        pg_params p;
        pgp_reset(&p);
        pgp_int(&p, m->taken_at_ms);
        pgp_str(&p, m->reason);
        pgp_str(&p, m->redis);
        pgp_str(&p, m->redis_version);
        pgp_str(&p, m->profile);
        pgp_str(&p, m->selection);
        pgp_int(&p, m->db);
        pgp_str(&p, m->profile_pattern);
        r = sg_pg_query(pg, -1,
                        "INSERT INTO snapshot(taken_at, reason, redis, redis_version, profile, "
                        "selection, db, profile_pattern, state) "
                        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'partial') RETURNING id",
                        &p, err, doing);
        if (!r)
            rc = SG_ESTORE;
    }
    if (rc) {
        sg_pg_rollback(pg);
        return rc;
    }
    pg_snap *sn = sg_xcalloc(1, sizeof *sn);
    sn->id = sg_pg_int(r, 0, 0);
    PQclear(r);
    sn->index.nkey = 2;
    sn->posted.nkey = 2;
    sn->docker.nkey = 3;
    pg->snap = sn;
    *id = sn->id;
    return 0;
}

int sg_pg_snapshot_add_key(sg_pg *pg, int db, const void *key, size_t key_len, int64_t expire_at_ms,
                           const void *payload, size_t payload_len, sg_error *err)
{
    pg_snap *sn = pg->snap;
    assert(sn);
    if (key_len > VALUE_MAX || payload_len > VALUE_MAX)
        return sg_error_set(err, SG_ESTORE,
                            "writing the keys of snapshot %lld to %s: a key of %zu bytes with a "
                            "value of %zu is more than a PostgreSQL bytea holds (1 GB)",
                            (long long)sn->id, pg->where, key_len, payload_len);
    if (key_len + payload_len >= KEY_BIG) {
        /* a big value goes as it is, not copied into the buffer first */
        int rc = flush_keys(pg, err);
        if (rc)
            return rc;
        sg_buf head = {0}, middle = {0}, end = {0};
        copy_header(&head);
        copy_row_start(&head, sn->id, sn->seq++, db, key_len);
        copy_row_middle(&middle, expire_at_ms, payload_len);
        put16(&end, UINT16_MAX);
        sg_slice parts[] = {{head.p, head.len},
                            {key, key_len},
                            {middle.p, middle.len},
                            {payload, payload_len},
                            {end.p, end.len}};
        rc = copy_keys(pg, parts, 5, err);
        sg_buf_free(&head);
        sg_buf_free(&middle);
        sg_buf_free(&end);
        return rc;
    }
    if (!sn->nkeys)
        copy_header(&sn->keys);
    copy_row_start(&sn->keys, sn->id, sn->seq++, db, key_len);
    put_bytes(&sn->keys, key, key_len);
    copy_row_middle(&sn->keys, expire_at_ms, payload_len);
    put_bytes(&sn->keys, payload, payload_len);
    sn->nkeys++;
    if (sn->nkeys == KEY_BATCH_ROWS || sn->keys.len >= KEY_BATCH_BYTES)
        return flush_keys(pg, err);
    return 0;
}

/* The row of key s in b, made if there is none (after writing the batch
 * if it is full); NULL if writing failed. */
static irow *row_for(sg_pg *pg, batch *b, int (*flush)(sg_pg *, sg_error *), const char *const *s,
                     const size_t *len, sg_error *err)
{
    uint64_t h = hash_key(b->nkey, s, len);
    size_t slot;
    irow *r = batch_find(b, h, s, len, &slot);
    if (r)
        return r;
    if (batch_full(b)) {
        if (flush(pg, err))
            return NULL;
        batch_find(b, h, s, len, &slot);
    }
    return batch_add(b, h, s, len, slot);
}

static int index_field(sg_pg *pg, int field, const char *source, size_t source_len, const char *job,
                       size_t job_len, int64_t v, sg_error *err)
{
    assert(pg->snap);
    const char *s[2] = {source, job};
    size_t len[2] = {source_len, job_len};
    irow *r = row_for(pg, &pg->snap->index, flush_index, s, len, err);
    if (!r)
        return SG_ESTORE;
    r->v[field] = v;
    r->has |= 1u << field;
    return 0;
}

int sg_pg_index_cursor(sg_pg *pg, const char *source, size_t source_len, const char *job,
                       size_t job_len, int64_t cursor_ms, sg_error *err)
{
    return index_field(pg, 0, source, source_len, job, job_len, cursor_ms, err);
}

int sg_pg_index_ci(sg_pg *pg, const char *source, size_t source_len, const char *job,
                   size_t job_len, bool running, int64_t number, sg_error *err)
{
    return index_field(pg, running ? 2 : 1, source, source_len, job, job_len, number, err);
}

int sg_pg_index_posted(sg_pg *pg, const char *source, size_t source_len, const char *job,
                       size_t job_len, int64_t number, sg_error *err)
{
    pg_snap *sn = pg->snap;
    assert(sn);
    batch *b = &sn->posted;
    const char *s[2] = {source, job};
    size_t len[2] = {source_len, job_len};
    uint64_t h = hash_key(2, s, len);
    /* a job's markers come together, from its one hash: they go on its
     * row until another job's come */
    irow *r = sn->posted_open ? &b->rows[b->n - 1] : NULL;
    if (!r || !row_is(b, r, h, s, len)) {
        close_posted(sn);
        size_t slot;
        /* the job's second row in one batch (a second marker hash of
         * it) goes in the next batch, and joins the first in the table */
        if (batch_full(b) || batch_find(b, h, s, len, &slot)) {
            if (flush_posted(pg, err))
                return SG_ESTORE;
            batch_find(b, h, s, len, &slot);
        }
        r = batch_add(b, h, s, len, slot);
        r->num_at = b->nnums;
        sn->posted_open = true;
    }
    if (b->nnums == b->numcap) {
        b->numcap = b->numcap ? 2 * b->numcap : 1024;
        b->nums = sg_xrealloc(b->nums, b->numcap * sizeof *b->nums);
    }
    b->nums[b->nnums++] = number;
    r->num_len++;
    return 0;
}

int sg_pg_index_docker(sg_pg *pg, const char *account, size_t account_len, const char *repository,
                       size_t repository_len, const char *tag, size_t tag_len, const char *digest,
                       size_t digest_len, sg_error *err)
{
    assert(pg->snap);
    batch *b = &pg->snap->docker;
    const char *s[3] = {account, repository, tag};
    size_t len[3] = {account_len, repository_len, tag_len};
    irow *r = row_for(pg, b, flush_docker, s, len, err);
    if (!r)
        return SG_ESTORE;
    /* a tag given again replaces its digest (the old bytes stay unused
     * until the batch is written) */
    r->has_digest = digest != NULL;
    r->digest_at = b->bytes.len;
    r->digest_len = digest ? digest_len : 0;
    if (digest)
        put_bytes(&b->bytes, digest, digest_len);
    return 0;
}

int sg_pg_snapshot_add_node(sg_pg *pg, int node, const char *address, const char *slots,
                            int64_t keys, sg_error *err)
{
    assert(pg->snap);
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, pg->snap->id);
    pgp_int(&p, node);
    pgp_str(&p, address);
    pgp_str(&p, slots);
    pgp_int(&p, keys);
    return sg_pg_exec(pg, -1,
                      "INSERT INTO snapshot_node(snapshot_id, node, address, slots, keys) "
                      "VALUES ($1, $2, $3, $4, $5)",
                      &p, err, "writing a snapshot's Cluster node to");
}

int sg_pg_snapshot_commit(sg_pg *pg, const sg_snapshot_info *t, sg_error *err)
{
    pg_snap *sn = pg->snap;
    assert(sn);
    int rc = flush_all(pg, err);
    if (rc)
        return rc;
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, sn->id);
    pgp_int(&p, t->key_count);
    pgp_int(&p, t->bytes);
    pgp_int(&p, t->vanished);
    pgp_double(&p, t->seconds);
    pgp_str(&p, t->state ? t->state : "complete");
    pgp_int(&p, t->profile_keys);
    pgp_str(&p, t->suspect_reason);
    PGresult *r = sg_pg_query(pg, -1,
                              "UPDATE snapshot SET key_count = $2, bytes = $3, vanished = $4, "
                              "seconds = $5, state = $6, profile_keys = CASE WHEN "
                              "profile_pattern IS NULL THEN NULL ELSE $7::bigint END, "
                              "suspect_reason = $8 WHERE id = $1 RETURNING id",
                              &p, err, "finishing a snapshot in");
    if (!r)
        return SG_ESTORE;
    int rows = PQntuples(r);
    PQclear(r);
    if (rows != 1)
        return sg_error_set(err, SG_ESTORE,
                            "snapshot %lld was deleted from %s while it was being written",
                            (long long)sn->id, pg->where);
    /* a failed commit leaves pg->snap for the caller's abort */
    if ((rc = sg_pg_commit(pg, err)))
        return rc;
    snap_free(sn);
    pg->snap = NULL;
    return 0;
}

void sg_pg_snapshot_abort(sg_pg *pg)
{
    if (!pg->snap)
        return;
    sg_pg_rollback(pg);
    snap_free(pg->snap);
    pg->snap = NULL;
}

/* ---- reading snapshots ---- */

int sg_pg_index_counts(sg_pg *pg, int64_t id, sg_index_counts *out, sg_error *err)
{
    int rc = settle(pg, id, err);
    if (rc)
        return rc;
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, id);
    PGresult *r = sg_pg_query(pg, -1,
                              "SELECT (SELECT count(*) FROM build_index WHERE snapshot_id = $1), "
                              "(SELECT coalesce(sum(cardinality(numbers)), 0) FROM posted_builds "
                              "WHERE snapshot_id = $1), "
                              "(SELECT count(*) FROM docker_tag WHERE snapshot_id = $1)",
                              &p, err, "counting the build index in");
    if (!r)
        return SG_ESTORE;
    *out = (sg_index_counts){.jobs = sg_pg_int(r, 0, 0),
                             .posted = sg_pg_int(r, 0, 1),
                             .docker_tags = sg_pg_int(r, 0, 2)};
    PQclear(r);
    return 0;
}

int sg_pg_snapshot_nodes(sg_pg *pg, int64_t id, sg_snapshot_node **out, size_t *count,
                         sg_error *err)
{
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, id);
    PGresult *r = sg_pg_query(pg, -1,
                              "SELECT node, address, slots, keys FROM snapshot_node "
                              "WHERE snapshot_id = $1 ORDER BY node",
                              &p, err, "reading snapshot nodes from");
    if (!r)
        return SG_ESTORE;
    size_t n = (size_t)PQntuples(r);
    sg_snapshot_node *v = n ? sg_xcalloc(n, sizeof *v) : NULL;
    for (size_t i = 0; i < n; i++)
        v[i] = (sg_snapshot_node){.node = (int)sg_pg_int(r, (int)i, 0),
                                  .address = sg_xstrdup(sg_pg_str(r, (int)i, 1)),
                                  .slots = sg_xstrdup(sg_pg_str(r, (int)i, 2)),
                                  .keys = sg_pg_int(r, (int)i, 3)};
    PQclear(r);
    *out = v;
    *count = n;
    return 0;
}

#define SNAPSHOT_COLUMNS                                                                           \
    "id, taken_at, reason, redis, redis_version, profile, selection, key_count, bytes, "           \
    "vanished, seconds, state, db, profile_pattern, profile_keys, suspect_reason"

static char *col_text(const PGresult *r, int row, int col)
{
    const char *s = sg_pg_str(r, row, col);
    return s ? sg_xstrdup(s) : NULL;
}

static void read_info(const PGresult *r, int row, sg_snapshot_info *i)
{
    memset(i, 0, sizeof *i);
    i->id = sg_pg_int(r, row, 0);
    i->taken_at_ms = sg_pg_int(r, row, 1);
    i->reason = col_text(r, row, 2);
    i->redis = col_text(r, row, 3);
    i->redis_version = col_text(r, row, 4);
    i->profile = col_text(r, row, 5);
    i->selection = col_text(r, row, 6);
    i->key_count = sg_pg_int(r, row, 7);
    i->bytes = sg_pg_int(r, row, 8);
    i->vanished = sg_pg_int(r, row, 9);
    i->seconds = sg_pg_double(r, row, 10);
    i->state = col_text(r, row, 11);
    i->db = (int)sg_pg_int(r, row, 12);
    i->profile_pattern = col_text(r, row, 13);
    i->profile_keys = PQgetisnull(r, row, 14) ? -1 : sg_pg_int(r, row, 14);
    i->suspect_reason = col_text(r, row, 15);
}

int sg_pg_snapshot_list(sg_pg *pg, sg_snapshot_info **out, size_t *count, sg_error *err)
{
    PGresult *r = sg_pg_query(pg, -1, "SELECT " SNAPSHOT_COLUMNS " FROM snapshot ORDER BY id DESC",
                              NULL, err, "listing snapshots in");
    if (!r)
        return SG_ESTORE;
    size_t n = (size_t)PQntuples(r);
    sg_snapshot_info *list = n ? sg_xcalloc(n, sizeof *list) : NULL;
    for (size_t i = 0; i < n; i++)
        read_info(r, (int)i, &list[i]);
    PQclear(r);
    *out = list;
    *count = n;
    return 0;
}

int sg_pg_snapshot_get(sg_pg *pg, int64_t id, sg_snapshot_info *out, sg_error *err)
{
    pg_params p;
    pgp_reset(&p);
    if (id)
        pgp_int(&p, id);
    PGresult *r = sg_pg_query(pg, -1,
                              id ? "SELECT " SNAPSHOT_COLUMNS " FROM snapshot WHERE id = $1"
                                 : "SELECT " SNAPSHOT_COLUMNS " FROM snapshot WHERE state = "
                                   "'complete' ORDER BY id DESC LIMIT 1",
                              &p, err, "reading snapshots in");
    if (!r)
        return SG_ESTORE;
    if (PQntuples(r) == 0) {
        PQclear(r);
        if (id)
            return sg_error_set(err, SG_ENOTFOUND, "no snapshot %lld in %s", (long long)id,
                                pg->where);
        return sg_error_set(err, SG_ENOTFOUND, "no complete snapshot in %s", pg->where);
    }
    read_info(r, 0, out);
    PQclear(r);
    return 0;
}

int sg_pg_last_good(sg_pg *pg, const char *redis, int db, const char *profile_pattern, int64_t *id,
                    int64_t *profile_keys, sg_error *err)
{
    pg_params p;
    pgp_reset(&p);
    pgp_str(&p, redis);
    pgp_int(&p, db);
    pgp_str(&p, profile_pattern);
    PGresult *r = sg_pg_query(pg, -1,
                              "SELECT id, profile_keys FROM snapshot WHERE state = 'complete' "
                              "AND redis = $1 AND db = $2 AND profile_pattern = $3 AND "
                              "profile_keys IS NOT NULL ORDER BY id DESC LIMIT 1",
                              &p, err, "reading snapshots in");
    if (!r)
        return SG_ESTORE;
    if (PQntuples(r) == 0) {
        *id = 0;
    } else {
        *id = sg_pg_int(r, 0, 0);
        *profile_keys = sg_pg_int(r, 0, 1);
    }
    PQclear(r);
    return 0;
}

int sg_pg_baseline(sg_pg *pg, int64_t *snapshot_id, sg_error *err)
{
    return sg_pg_query_int(pg, -1,
                           "SELECT coalesce(max(id), 0) FROM snapshot WHERE state = 'complete' "
                           "AND profile <> 'none'",
                           NULL, snapshot_id, err, "reading snapshots in");
}

/* A partial snapshot whose heartbeat (taken_at + seconds) is this recent
 * may still be being written (as in snapshots.c; on PostgreSQL no other
 * session sees one before its commit, so only a row some other writer left
 * partial is ever met). */
#define PARTIAL_GRACE_MS (10 * 60 * 1000LL)

int sg_pg_snapshot_prune(sg_pg *pg, int keep, int64_t max_age_s, int64_t now_ms, int64_t *pruned,
                         sg_error *err)
{
    /* Never the latest complete snapshot (what `restore latest` takes) nor
     * the latest complete one with a profile (the index baseline,
     * sg_pg_baseline): a suspect or partial snapshot is neither, however
     * new. */
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, keep);
    pgp_int(&p, max_age_s);
    pgp_int(&p, now_ms - max_age_s * 1000);
    pgp_int(&p, sg_now_ms() - PARTIAL_GRACE_MS);
    PGresult *r = sg_pg_query(
        pg, -1,
        "SELECT id FROM snapshot WHERE id <> coalesce((SELECT max(id) FROM snapshot WHERE "
        "state = 'complete'), 0) AND id <> coalesce((SELECT max(id) FROM snapshot WHERE "
        "state = 'complete' AND profile <> 'none'), 0) AND (($1::integer > 0 AND id NOT IN "
        "(SELECT id FROM snapshot ORDER BY id DESC LIMIT greatest($1::integer, 0))) OR "
        "($2::bigint > 0 AND taken_at < $3::bigint)) AND NOT (state = 'partial' AND "
        "taken_at + trunc(seconds * 1000)::bigint > $4::bigint) ORDER BY id",
        &p, err, "pruning snapshots in");
    if (!r)
        return SG_ESTORE;
    int n = PQntuples(r), rc = 0;
    /* one statement per snapshot, atomic: its keys (no foreign key) and
     * its row, which the index tables follow (ON DELETE CASCADE). Another
     * statement sees all of it or none (a key iterator checks at its end);
     * the journal's writers wait for none of it. */
    for (int i = 0; i < n && rc == 0; i++) {
        pg_params d;
        pgp_reset(&d);
        pgp_int(&d, sg_pg_int(r, i, 0));
        rc = sg_pg_exec(pg, -1,
                        "WITH k AS (DELETE FROM snapshot_key WHERE snapshot_id = $1) "
                        "DELETE FROM snapshot WHERE id = $1",
                        &d, err, "deleting a snapshot in");
    }
    PQclear(r);
    if (rc == 0)
        *pruned = n;
    return rc;
}

/* A read in pages ends early if the snapshot is deleted between two of
 * them (a prune elsewhere): what read some of it checks at the end that it
 * is still there, rather than take what it got for all of it. */
static int still_there(sg_pg *pg, int64_t id, sg_error *err, const char *doing)
{
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, id);
    int64_t n;
    int rc =
        sg_pg_query_int(pg, -1, "SELECT count(*) FROM snapshot WHERE id = $1", &p, &n, err, doing);
    if (rc == 0 && n == 0)
        rc = sg_error_set(err, SG_ESTORE,
                          "%s %s: snapshot %lld was deleted while it was being read (pruned "
                          "by another stormguard?)",
                          doing, pg->where, (long long)id);
    return rc;
}

struct pg_key_iter {
    sg_pg *pg;
    int64_t snapshot_id;
    PGresult *page; /* the rows handed out point into it */
    int next, rows; /* the page's next row, its rows */
    int64_t after;  /* seq of the last row read */
    bool last;      /* the page is the snapshot's last */
    bool seen;      /* a key was read */
    bool ended;     /* the end was reached and checked */
};

/* The page after it->after, in place of the one before. */
static int next_page(pg_key_iter *it, sg_error *err)
{
    char doing[80];
    snprintf(doing, sizeof doing, "reading the keys of snapshot %lld in",
             (long long)it->snapshot_id);
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, it->snapshot_id);
    pgp_int(&p, it->after);
    pgp_int(&p, KEY_PAGE_ROWS);
    pgp_int(&p, KEY_PAGE_BYTES);
    PGresult *r = query(it->pg, PG_SNAP_KEYS, &p, err, doing);
    if (!r)
        return SG_ESTORE;
    PQclear(it->page);
    it->page = r;
    it->next = 0;
    it->rows = PQntuples(r);
    size_t bytes = 0;
    for (int i = 0; i < it->rows; i++)
        bytes += sg_pg_len(r, i, 2) + sg_pg_len(r, i, 4);
    /* a page short of rows and of bytes was cut by neither limit */
    it->last = it->rows < KEY_PAGE_ROWS && bytes < KEY_PAGE_BYTES;
    return 0;
}

int sg_pg_keys_open(sg_pg *pg, int64_t snapshot_id, pg_key_iter **out, sg_error *err)
{
    int rc = settle(pg, snapshot_id, err);
    if (rc)
        return rc;
    pg_key_iter *it = sg_xcalloc(1, sizeof *it);
    it->pg = pg;
    it->snapshot_id = snapshot_id;
    it->after = -1;
    if ((rc = next_page(it, err))) {
        free(it);
        return rc;
    }
    *out = it;
    return 0;
}

int sg_pg_key_iter_next(pg_key_iter *it, sg_key_row *row, sg_error *err)
{
    if (it->ended)
        return 0;
    if (it->next == it->rows) {
        int rc = it->last ? 0 : next_page(it, err);
        if (rc)
            return rc;
        if (it->next == it->rows) {
            char doing[80];
            snprintf(doing, sizeof doing, "reading the keys of snapshot %lld in",
                     (long long)it->snapshot_id);
            if (it->seen && (rc = still_there(it->pg, it->snapshot_id, err, doing)))
                return rc;
            it->ended = true;
            return 0;
        }
    }
    const PGresult *r = it->page;
    int i = it->next++;
    it->after = sg_pg_int(r, i, 0);
    it->seen = true;
    row->db = (int)sg_pg_int(r, i, 1);
    row->key = sg_pg_str(r, i, 2);
    row->key_len = sg_pg_len(r, i, 2);
    row->expire_at_ms = sg_pg_int(r, i, 3);
    row->payload = sg_pg_str(r, i, 4);
    row->payload_len = sg_pg_len(r, i, 4);
    return 1;
}

void sg_pg_key_iter_free(pg_key_iter *it)
{
    if (!it)
        return;
    PQclear(it->page);
    free(it);
}

int sg_pg_sample_keys(sg_pg *pg, int64_t snapshot_id, const char *glob, int n, sg_key_fn fn,
                      void *ud, sg_error *err)
{
    if (n <= 0)
        return 0;
    int rc = settle(pg, snapshot_id, err);
    if (rc)
        return rc;
    /* point lookups of every step-th key, so that the sample spreads over
     * the snapshot without reading it: 4n candidates for n keys that
     * qualify. The glob is matched here, on the key's bytes: a key need
     * not be text the server could match. */
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, snapshot_id);
    pgp_int(&p, 4 * (int64_t)n);
    PGresult *r =
        sg_pg_query(pg, -1,
                    "SELECT k.key FROM snapshot s, generate_series(0::bigint, $2::bigint - 1) "
                    "AS g(i), snapshot_key k WHERE s.id = $1 AND k.snapshot_id = $1 AND "
                    "k.seq = g.i * greatest(1, s.key_count / $2::bigint) AND "
                    "k.expire_at_ms IS NULL ORDER BY k.seq",
                    &p, err, "sampling snapshot keys in");
    if (!r)
        return SG_ESTORE;
    int rows = PQntuples(r), given = 0;
    for (int i = 0; i < rows && given < n; i++) {
        const char *key = sg_pg_str(r, i, 0);
        size_t len = sg_pg_len(r, i, 0);
        /* the watcher takes C strings */
        if (memchr(key, '\0', len) || (glob && !sg_glob_match(glob, key, len)))
            continue;
        given++;
        if (fn(ud, key))
            break;
    }
    PQclear(r);
    return 0;
}

/* ---- the build index, by a cursor ---- */

typedef int (*index_row_fn)(const PGresult *r, int row, void *ctx);

/* Calls fn for each row that sql (a SELECT of snapshot $1's rows) gives,
 * fetched INDEX_PAGE at a time through a cursor: in no order, so that no
 * plan sorts the whole table's rows of the snapshot (a keyset page ordered
 * by the primary key did, for every page, while the table had no
 * statistics yet). Inside a transaction. */
static int each_row(sg_pg *pg, int64_t id, const char *sql, index_row_fn fn, void *ctx,
                    sg_error *err, const char *doing)
{
    char declare[512];
    snprintf(declare, sizeof declare, "DECLARE sg_index NO SCROLL CURSOR FOR %s", sql);
    pg_params p;
    pgp_reset(&p);
    pgp_int(&p, id);
    int rc = sg_pg_exec(pg, -1, declare, &p, err, doing);
    if (rc)
        return rc;
    for (int rows = INDEX_PAGE; rc == 0 && rows == INDEX_PAGE;) {
        PGresult *r =
            sg_pg_query(pg, -1, "FETCH " STR(INDEX_PAGE) " FROM sg_index", NULL, err, doing);
        if (!r)
            return SG_ESTORE; /* the transaction failed, and the cursor with it */
        rows = PQntuples(r);
        for (int i = 0; i < rows && rc == 0; i++)
            rc = fn(r, i, ctx);
        PQclear(r);
    }
    /* closed also after a row that could not be read: the caller's
     * transaction may go on, and read the index again */
    sg_error spare;
    int crc = sg_pg_exec(pg, -1, "CLOSE sg_index", NULL, rc ? &spare : err, doing);
    return rc ? rc : crc;
}

typedef struct index_ctx {
    sg_pg *pg;
    int64_t id;
    const sg_index_visitor *v;
    void *ud;
    sg_error *err;
} index_ctx;

static int jobs_row(const PGresult *r, int i, void *ctx)
{
    index_ctx *c = ctx;
    const char *source = sg_pg_str(r, i, 0), *job = sg_pg_str(r, i, 1);
    if (!PQgetisnull(r, i, 2))
        c->v->cursor(c->ud, source, job, sg_pg_int(r, i, 2));
    if (!PQgetisnull(r, i, 3))
        c->v->completed(c->ud, source, job, sg_pg_int(r, i, 3));
    return 0;
}

/* Calls v->posted for each number of a bigint[] in binary (array_recv's
 * form: dimensions, flags, element type, then each element's length and
 * value); false if it is not one of numbers. */
static bool posted_each(const char *p, size_t len, const index_ctx *c, const char *source,
                        const char *job)
{
    if (len < 12)
        return false;
    uint32_t ndim = get32(p);
    if (ndim == 0)
        return len == 12; /* {} */
    if (ndim != 1 || get32(p + 8) != OID_INT8 || len < 20)
        return false;
    uint32_t n = get32(p + 12);
    if ((len - 20) / 12 != n || (len - 20) % 12)
        return false;
    for (const char *e = p + 20; e < p + len; e += 12) {
        if (get32(e) != 8)
            return false;
        c->v->posted(c->ud, source, job, get64(e + 4));
    }
    return true;
}

static int posted_row(const PGresult *r, int i, void *ctx)
{
    index_ctx *c = ctx;
    const char *source = sg_pg_str(r, i, 0), *job = sg_pg_str(r, i, 1);
    if (posted_each(sg_pg_str(r, i, 2), sg_pg_len(r, i, 2), c, source, job))
        return 0;
    return sg_error_set(c->err, SG_ESTORE,
                        "reading the build index in %s: the posted builds of job %s in snapshot "
                        "%lld are not an array of numbers",
                        c->pg->where, job, (long long)c->id);
}

static int docker_row(const PGresult *r, int i, void *ctx)
{
    index_ctx *c = ctx;
    c->v->docker(c->ud, sg_pg_str(r, i, 0), sg_pg_str(r, i, 1), sg_pg_str(r, i, 2),
                 sg_pg_str(r, i, 3));
    return 0;
}

int sg_pg_index_each(sg_pg *pg, int64_t id, const sg_index_visitor *v, void *ud, sg_error *err)
{
    int rc = settle(pg, id, err);
    if (rc)
        return rc;
    /* outside a transaction, one of its own: the cursors need one, and
     * the three tables are read at one moment (a prune elsewhere takes all
     * of a snapshot's rows or none of them) */
    bool own = !pg->in_txn;
    const char *doing = "reading the build index in";
    if (own && ((rc = sg_pg_begin(pg, err)) ||
                (rc = sg_pg_exec(pg, -1, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", NULL,
                                 err, doing)))) {
        sg_pg_rollback(pg);
        return rc;
    }
    index_ctx c = {.pg = pg, .id = id, .v = v, .ud = ud, .err = err};
    rc = each_row(pg, id,
                  "SELECT source, job, cursor_ms, last_completed FROM build_index "
                  "WHERE snapshot_id = $1",
                  jobs_row, &c, err, doing);
    if (rc == 0)
        rc = each_row(pg, id,
                      "SELECT source, job, numbers FROM posted_builds WHERE snapshot_id = $1",
                      posted_row, &c, err, doing);
    if (rc == 0 && v->docker)
        rc = each_row(pg, id,
                      "SELECT account, repository, tag, digest FROM docker_tag "
                      "WHERE snapshot_id = $1",
                      docker_row, &c, err, "reading the Docker index in");
    if (own) {
        if (rc == 0)
            rc = sg_pg_commit(pg, err);
        else
            sg_pg_rollback(pg);
    }
    return rc;
}
