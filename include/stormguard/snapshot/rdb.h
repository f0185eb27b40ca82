/* The Redis RDB format, as far as stormguard needs it: splitting an RDB
 * stream (what SYNC sends a replica) into one DUMP payload per key, and
 * reading hash and string values out of DUMP payloads (the Igor index). */
#ifndef STORMGUARD_RDB_H
#define STORMGUARD_RDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stormguard/base/error.h"
#include "stormguard/base/util.h"

/* CRC-64/Jones as Redis computes it for DUMP payloads and RDB files
 * (reflected, init 0): sg_crc64(0, "123456789", 9) == 0xe9c6d914c4b8d9ca. */
uint64_t sg_crc64(uint64_t crc, const void *data, size_t len);

/* Decompresses LZF data (Redis's compressed strings) into out; returns the
 * bytes written, or -1 if the input is malformed or does not fit. */
long sg_lzf_decompress(const void *in, size_t in_len, void *out, size_t out_len);

/* One key of an RDB stream. payload is its DUMP payload: the value's type
 * byte and serialisation, the stream's RDB version and the CRC64, exactly
 * what DUMP returns for it and RESTORE takes. */
typedef struct sg_rdb_key {
    int db;
    const char *key;
    size_t key_len;
    int64_t expire_at_ms; /* absolute; 0: no expiry */
    const char *payload;
    size_t payload_len;
} sg_rdb_key;

/* Called once per key; a nonzero return stops the parse with that code. */
typedef int (*sg_rdb_key_fn)(void *ud, const sg_rdb_key *k, sg_error *err);

/* Fills buf with up to cap bytes of the stream; *got = 0 at its end. */
typedef int (*sg_rdb_read_fn)(void *ud, void *buf, size_t cap, size_t *got, sg_error *err);

/* Whether a key is wanted; the value of one that is not is read past, never
 * held in memory, and fn is not called for it. */
typedef bool (*sg_rdb_want_fn)(void *ud, int db, const char *key, size_t key_len);

/* Reads one RDB ("REDIS0010" ... EOF opcode, checksum) from read and calls
 * fn for each key that want (if given) wants, in stream order; both get
 * fn_ud. The file checksum is verified (unless
 * the server wrote 0: rdbchecksum no). If trailer is given, those bytes must
 * follow the RDB (the end mark of a diskless SYNC). Errors (SG_EINVAL) name
 * the byte offset and what was malformed or unsupported; *version gets the
 * RDB version of the stream. */
int sg_rdb_parse(sg_rdb_read_fn read, void *read_ud, const void *trailer, size_t trailer_len,
                 sg_rdb_want_fn want, sg_rdb_key_fn fn, void *fn_ud, int *version, sg_error *err);

/* Calls fn for each field and value of a hash DUMP payload (hash table,
 * ziplist or listpack encoding). Returns 0, fn's nonzero return, or 1 if
 * the payload is not such a hash or is malformed. */
typedef int (*sg_rdb_pair_fn)(void *ud, sg_slice field, sg_slice value);
int sg_rdb_hash_each(const void *payload, size_t len, sg_rdb_pair_fn fn, void *ud);

/* The value of a string DUMP payload, decoded (integer and LZF encodings)
 * into out. Returns 0, or 1 if the payload is not a string or malformed. */
int sg_rdb_string(const void *payload, size_t len, sg_buf *out);

#endif
