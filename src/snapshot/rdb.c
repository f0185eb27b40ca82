/* The Redis RDB format (rdb.h).
 *
 * An RDB is a header ("REDIS" and a 4-digit version), then opcodes (AUX
 * fields, SELECTDB, RESIZEDB, expiry and eviction hints, module and function
 * data) and keys, each a type byte, the key as a string and the value, and
 * finally the EOF opcode and a CRC64 of everything before it. A DUMP payload
 * is a key's type byte and value as they appear there, followed by the RDB
 * version (2 bytes, little endian) and a CRC64 of all that. So splitting a
 * stream into payloads means walking each value's structure without
 * interpreting it: lengths, strings (raw, integer or LZF encoded), doubles,
 * stream metadata and module opcodes. Layouts follow Redis's rdb.c, types
 * up to 7.4's hashes with field expiry; the pre-release forms of those (22,
 * 23) and anything newer fail the parse with a message naming the type.
 *
 * The stream parser keeps one read buffer. The file CRC is taken over each
 * span of the buffer once it has been consumed, not byte by byte. */
#include "stormguard/snapshot/rdb.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- CRC64 (Jones polynomial, reflected), slice by 8 --------------------- */

static uint64_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    const uint64_t jones = 0xad93d23594c935a9ULL;
    uint64_t poly = 0;
    for (int i = 0; i < 64; i++) /* reflected */
        if (jones & (1ULL << i))
            poly |= 1ULL << (63 - i);
    for (int n = 0; n < 256; n++) {
        uint64_t c = (uint64_t)n;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? poly ^ (c >> 1) : c >> 1;
        crc_table[0][n] = c;
    }
    for (int n = 0; n < 256; n++) {
        uint64_t c = crc_table[0][n];
        for (int k = 1; k < 8; k++) {
            c = crc_table[0][c & 0xff] ^ (c >> 8);
            crc_table[k][n] = c;
        }
    }
}

uint64_t sg_crc64(uint64_t crc, const void *data, size_t len)
{
    pthread_once(&crc_once, crc_init);
    const unsigned char *p = data;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        crc ^= w;
        crc = crc_table[7][crc & 0xff] ^ crc_table[6][(crc >> 8) & 0xff] ^
              crc_table[5][(crc >> 16) & 0xff] ^ crc_table[4][(crc >> 24) & 0xff] ^
              crc_table[3][(crc >> 32) & 0xff] ^ crc_table[2][(crc >> 40) & 0xff] ^
              crc_table[1][(crc >> 48) & 0xff] ^ crc_table[0][crc >> 56];
        p += 8;
        len -= 8;
    }
#endif
    while (len--)
        crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

/* ---- LZF ---------------------------------------------------------------- */

long sg_lzf_decompress(const void *in, size_t in_len, void *out, size_t out_len)
{
    /* Offsets, not pointers: an empty input or output may be NULL (the
     * buffer of a zero-length read), and NULL + 0 is undefined in C. */
    const unsigned char *ip = in;
    unsigned char *op = out;
    size_t i = 0, o = 0;
    while (i < in_len) {
        size_t ctrl = ip[i++];
        if (ctrl < 32) { /* a literal run of ctrl + 1 bytes */
            size_t n = ctrl + 1;
            if (n > in_len - i || n > out_len - o)
                return -1;
            memcpy(op + o, ip + i, n);
            o += n;
            i += n;
            continue;
        }
        size_t n = ctrl >> 5; /* a back reference: length - 2, offset - 1 */
        if (n == 7) {
            if (i >= in_len)
                return -1;
            n += ip[i++];
        }
        if (i >= in_len)
            return -1;
        size_t off = ((ctrl & 0x1f) << 8) + ip[i++] + 1;
        n += 2;
        if (off > o || n > out_len - o)
            return -1;
        for (size_t ref = o - off; n--;) /* may overlap: byte by byte */
            op[o++] = op[ref++];
    }
    return (long)o;
}

/* ---- RDB constants (Redis rdb.h) ----------------------------------------- */

enum {
    T_STRING = 0,
    T_LIST = 1,
    T_SET = 2,
    T_ZSET = 3,
    T_HASH = 4,
    T_ZSET_2 = 5,
    T_MODULE_PRE_GA = 6,
    T_MODULE_2 = 7,
    T_HASH_ZIPMAP = 9,
    T_LIST_ZIPLIST = 10,
    T_SET_INTSET = 11,
    T_ZSET_ZIPLIST = 12,
    T_HASH_ZIPLIST = 13,
    T_LIST_QUICKLIST = 14,
    T_STREAM_LISTPACKS = 15,
    T_HASH_LISTPACK = 16,
    T_ZSET_LISTPACK = 17,
    T_LIST_QUICKLIST_2 = 18,
    T_STREAM_LISTPACKS_2 = 19,
    T_SET_LISTPACK = 20,
    T_STREAM_LISTPACKS_3 = 21,
    T_HASH_METADATA = 24,
    T_HASH_LISTPACK_EX = 25,
};

enum {
    OP_SLOT_INFO = 244,
    OP_FUNCTION2 = 245,
    OP_FUNCTION_PRE_GA = 246,
    OP_MODULE_AUX = 247,
    OP_IDLE = 248,
    OP_FREQ = 249,
    OP_AUX = 250,
    OP_RESIZEDB = 251,
    OP_EXPIRETIME_MS = 252,
    OP_EXPIRETIME = 253,
    OP_SELECTDB = 254,
    OP_EOF = 255,
};

enum { ENC_INT8 = 0, ENC_INT16 = 1, ENC_INT32 = 2, ENC_LZF = 3 };

/* Bytes of an integer-encoded string: 1, 2 or 4. */
static size_t enc_int_size(uint64_t enc)
{
    return enc == ENC_INT8 ? 1 : enc == ENC_INT16 ? 2 : 4;
}

/* n little-endian bytes (1..8), unsigned and sign-extended: the integers of
 * RDB strings, listpacks and ziplists. */
static uint64_t le_unsigned(const unsigned char *p, size_t n)
{
    uint64_t u = 0;
    for (size_t i = 0; i < n; i++)
        u |= (uint64_t)p[i] << (8 * i);
    return u;
}

static int64_t le_signed(const unsigned char *p, size_t n)
{
    uint64_t u = le_unsigned(p, n);
    if (n < 8 && (u >> (8 * n - 1)) & 1)
        u |= ~0ULL << (8 * n);
    return (int64_t)u;
}

/* LZF expands at most 88-fold (a 3-byte back reference copies 264 bytes):
 * a claimed length beyond that is a lie, not an allocation to attempt. */
#define LZF_MAX_OUT(clen) (88 * (uint64_t)(clen) + 88)

enum { MOD_EOF = 0, MOD_SINT = 1, MOD_UINT = 2, MOD_FLOAT = 3, MOD_DOUBLE = 4, MOD_STRING = 5 };

/* ---- The stream parser ----------------------------------------------------- */

#define RD_BUF (256 * 1024)

typedef struct rd {
    sg_rdb_read_fn read;
    void *read_ud;
    unsigned char *buf;
    size_t pos, len;
    size_t crc_from; /* buf[crc_from..pos) is consumed but not yet in crc */
    uint64_t crc;    /* file checksum of everything before crc_from */
    uint64_t offset; /* stream offset of buf[0] */
    sg_buf *capture; /* while set, consumed bytes go here: buf[cap_from..pos) */
    size_t cap_from; /* when the buffer is refilled or the capture ends */
    sg_error *err;
} rd;

static int rd_fail(rd *r, const char *what)
{
    return sg_error_set(r->err, SG_EINVAL, "malformed RDB at byte %llu: %s",
                        (unsigned long long)(r->offset + r->pos), what);
}

/* Reads more into the buffer, moving the unconsumed bytes to its start. */
/* Starts or ends capturing consumed bytes into c. */
static void rd_capture(rd *r, sg_buf *c)
{
    if (r->capture)
        sg_buf_append(r->capture, r->buf + r->cap_from, r->pos - r->cap_from);
    r->capture = c;
    r->cap_from = r->pos;
}

static int rd_fill(rd *r)
{
    r->crc = sg_crc64(r->crc, r->buf + r->crc_from, r->pos - r->crc_from);
    rd_capture(r, r->capture);
    memmove(r->buf, r->buf + r->pos, r->len - r->pos);
    r->offset += r->pos;
    r->len -= r->pos;
    r->pos = r->crc_from = r->cap_from = 0;
    size_t got = 0;
    int rc = r->read(r->read_ud, r->buf + r->len, RD_BUF - r->len, &got, r->err);
    if (rc)
        return rc;
    if (got == 0)
        return rd_fail(r, "the stream ended before the RDB did");
    r->len += got;
    return 0;
}

/* Consumes n bytes, appending them to dst if given. */
static int rd_take(rd *r, size_t n, sg_buf *dst)
{
    while (n) {
        if (r->pos == r->len) {
            int rc = rd_fill(r);
            if (rc)
                return rc;
        }
        size_t k = r->len - r->pos < n ? r->len - r->pos : n;
        if (dst)
            sg_buf_append(dst, r->buf + r->pos, k);
        r->pos += k;
        n -= k;
    }
    return 0;
}

static int rd_byte(rd *r, unsigned *out)
{
    if (r->pos == r->len) {
        int rc = rd_fill(r);
        if (rc)
            return rc;
    }
    *out = r->buf[r->pos++];
    return 0;
}

/* n (at most 8) little-endian bytes of the stream. */
static int rd_le(rd *r, size_t n, unsigned char bytes[8])
{
    for (size_t i = 0; i < n; i++) {
        unsigned c;
        int rc = rd_byte(r, &c);
        if (rc)
            return rc;
        bytes[i] = (unsigned char)c;
    }
    return 0;
}

/* An RDB length; *special is set for the string encodings (a first byte
 * whose top two bits are 11). */
static int rd_len(rd *r, uint64_t *len, bool *special)
{
    unsigned b, c;
    int rc = rd_byte(r, &b);
    if (rc)
        return rc;
    if (special)
        *special = false;
    switch (b >> 6) {
    case 0:
        *len = b & 0x3f;
        return 0;
    case 1:
        if ((rc = rd_byte(r, &c)))
            return rc;
        *len = (uint64_t)(b & 0x3f) << 8 | c;
        return 0;
    case 2: {
        if (b != 0x80 && b != 0x81)
            return rd_fail(r, "unknown length encoding");
        size_t n = b == 0x80 ? 4 : 8;
        uint64_t v = 0;
        for (size_t i = 0; i < n; i++) {
            if ((rc = rd_byte(r, &c)))
                return rc;
            v = v << 8 | c; /* big endian */
        }
        *len = v;
        return 0;
    }
    default:
        if (!special)
            return rd_fail(r, "a string encoding where a length belongs");
        *special = true;
        *len = b & 0x3f;
        return 0;
    }
}

/* A string: raw bytes, an integer or LZF. Decoded into out if given (keys),
 * else only consumed (values, which are captured as they are). */
static int rd_string(rd *r, sg_buf *out)
{
    uint64_t len = 0;
    bool special;
    int rc = rd_len(r, &len, &special);
    if (rc)
        return rc;
    if (!special) {
        if (len > SIZE_MAX / 2)
            return rd_fail(r, "a string longer than memory");
        return rd_take(r, (size_t)len, out);
    }
    if (len <= ENC_INT32) {
        unsigned char b[8];
        size_t n = enc_int_size(len);
        if ((rc = rd_le(r, n, b)) == 0 && out)
            sg_buf_printf(out, "%lld", (long long)le_signed(b, n));
        return rc;
    }
    if (len != ENC_LZF)
        return rd_fail(r, "unknown string encoding");
    uint64_t clen = 0, ulen = 0;
    if ((rc = rd_len(r, &clen, NULL)) || (rc = rd_len(r, &ulen, NULL)))
        return rc;
    if (clen > SIZE_MAX / 2 || ulen > LZF_MAX_OUT(clen))
        return rd_fail(r, "a compressed string claims more than its bytes can expand to");
    if (!out)
        return rd_take(r, (size_t)clen, NULL);
    sg_buf c = {0};
    if ((rc = rd_take(r, (size_t)clen, &c)) == 0) {
        size_t at = out->len;
        sg_buf_append(out, "", 0);
        if (out->cap < at + ulen + 1) {
            out->cap = at + ulen + 1;
            out->p = sg_xrealloc(out->p, out->cap);
        }
        if (sg_lzf_decompress(c.p, c.len, out->p + at, ulen) != (long)ulen)
            rc = rd_fail(r, "an LZF string that does not decompress");
        else
            out->len = at + ulen;
        out->p[out->len] = '\0';
    }
    sg_buf_free(&c);
    return rc;
}

/* A sorted set score of RDB_TYPE_ZSET: a length byte, then that many ASCII
 * bytes; 253, 254 and 255 stand for nan, +inf and -inf. */
static int rd_old_double(rd *r)
{
    unsigned n;
    int rc = rd_byte(r, &n);
    return rc || n >= 253 ? rc : rd_take(r, n, NULL);
}

/* Module opcodes up to MOD_EOF (module values and aux data, RDB >= 9). */
static int rd_module_body(rd *r)
{
    for (;;) {
        uint64_t op, v;
        int rc = rd_len(r, &op, NULL);
        if (rc)
            return rc;
        switch (op) {
        case MOD_EOF:
            return 0;
        case MOD_SINT:
        case MOD_UINT:
            rc = rd_len(r, &v, NULL);
            break;
        case MOD_FLOAT:
            rc = rd_take(r, 4, NULL);
            break;
        case MOD_DOUBLE:
            rc = rd_take(r, 8, NULL);
            break;
        case MOD_STRING:
            rc = rd_string(r, NULL);
            break;
        default:
            return rd_fail(r, "unknown module opcode");
        }
        if (rc)
            return rc;
    }
}

/* n lengths in a row. */
static int rd_lens(rd *r, int n)
{
    uint64_t v;
    int rc = 0;
    while (rc == 0 && n--)
        rc = rd_len(r, &v, NULL);
    return rc;
}

/* A stream's pending entries list: 16-byte IDs, with the delivery time and
 * count in a group's list (nacks), bare in a consumer's. */
static int rd_stream_pel(rd *r, bool nacks)
{
    uint64_t n;
    int rc = rd_len(r, &n, NULL);
    for (uint64_t i = 0; rc == 0 && i < n; i++) {
        rc = rd_take(r, 16, NULL);
        if (rc == 0 && nacks && (rc = rd_take(r, 8, NULL)) == 0)
            rc = rd_lens(r, 1);
    }
    return rc;
}

static int rd_stream(rd *r, unsigned type)
{
    uint64_t nodes, groups;
    int rc = rd_len(r, &nodes, NULL);
    for (uint64_t i = 0; rc == 0 && i < nodes; i++) /* master ID, listpack */
        if ((rc = rd_string(r, NULL)) == 0)
            rc = rd_string(r, NULL);
    /* length, last ID; since 7.0 also first ID, max deleted ID, entries added */
    if (rc || (rc = rd_lens(r, type >= T_STREAM_LISTPACKS_2 ? 8 : 3)) ||
        (rc = rd_len(r, &groups, NULL)))
        return rc;
    for (uint64_t g = 0; rc == 0 && g < groups; g++) {
        uint64_t consumers;
        /* name, last ID, since 7.0 entries read; the group's PEL */
        if ((rc = rd_string(r, NULL)) || (rc = rd_lens(r, type >= T_STREAM_LISTPACKS_2 ? 3 : 2)) ||
            (rc = rd_stream_pel(r, true)) || (rc = rd_len(r, &consumers, NULL)))
            return rc;
        for (uint64_t c = 0; rc == 0 && c < consumers; c++) {
            /* name, seen time, since 7.2 active time; the consumer's PEL */
            if ((rc = rd_string(r, NULL)) ||
                (rc = rd_take(r, type >= T_STREAM_LISTPACKS_3 ? 16 : 8, NULL)))
                return rc;
            rc = rd_stream_pel(r, false);
        }
    }
    return rc;
}

/* Consumes a value of the given type (the capture records it). */
static int rd_value(rd *r, unsigned type)
{
    uint64_t n;
    int rc;
    switch (type) {
    case T_STRING:
    case T_HASH_ZIPMAP:
    case T_LIST_ZIPLIST:
    case T_SET_INTSET:
    case T_ZSET_ZIPLIST:
    case T_HASH_ZIPLIST:
    case T_HASH_LISTPACK:
    case T_ZSET_LISTPACK:
    case T_SET_LISTPACK:
        return rd_string(r, NULL); /* one blob */
    case T_LIST:
    case T_SET:
    case T_LIST_QUICKLIST:
        rc = rd_len(r, &n, NULL);
        for (uint64_t i = 0; rc == 0 && i < n; i++)
            rc = rd_string(r, NULL);
        return rc;
    case T_LIST_QUICKLIST_2: /* per node: container kind, then the node */
        rc = rd_len(r, &n, NULL);
        for (uint64_t i = 0; rc == 0 && i < n; i++)
            if ((rc = rd_lens(r, 1)) == 0)
                rc = rd_string(r, NULL);
        return rc;
    case T_ZSET:
    case T_ZSET_2:
        rc = rd_len(r, &n, NULL);
        for (uint64_t i = 0; rc == 0 && i < n; i++)
            if ((rc = rd_string(r, NULL)) == 0)
                rc = type == T_ZSET ? rd_old_double(r) : rd_take(r, 8, NULL);
        return rc;
    case T_HASH:
        rc = rd_len(r, &n, NULL);
        for (uint64_t i = 0; rc == 0 && i < n; i++)
            if ((rc = rd_string(r, NULL)) == 0)
                rc = rd_string(r, NULL);
        return rc;
    case T_MODULE_2:
        return (rc = rd_lens(r, 1)) ? rc : rd_module_body(r); /* module id */
    case T_HASH_LISTPACK_EX: /* minimum field expiry (8 bytes), the listpack */
        return (rc = rd_take(r, 8, NULL)) ? rc : rd_string(r, NULL);
    case T_HASH_METADATA: /* minimum field expiry, then per field: its TTL, field, value */
        if ((rc = rd_take(r, 8, NULL)) || (rc = rd_len(r, &n, NULL)))
            return rc;
        for (uint64_t i = 0; rc == 0 && i < n; i++)
            if ((rc = rd_lens(r, 1)) == 0 && (rc = rd_string(r, NULL)) == 0)
                rc = rd_string(r, NULL);
        return rc;
    case T_STREAM_LISTPACKS:
    case T_STREAM_LISTPACKS_2:
    case T_STREAM_LISTPACKS_3:
        return rd_stream(r, type);
    default: {
        char what[96];
        snprintf(what, sizeof what,
                 "value type %u is not supported (take this snapshot with --method scan)", type);
        return rd_fail(r, what);
    }
    }
}

/* Checks the "REDIS" magic and reads the 4-digit version. */
static int rd_header(rd *r, int *version)
{
    sg_buf h = {0};
    int rc = rd_take(r, 9, &h);
    if (rc == 0 && memcmp(h.p, "REDIS", 5))
        rc = rd_fail(r, "no REDIS magic: not an RDB");
    int v = 0;
    for (int i = 5; rc == 0 && i < 9; i++) {
        if (h.p[i] < '0' || h.p[i] > '9') {
            rc = rd_fail(r, "the version after the REDIS magic is not a number");
            break;
        }
        v = v * 10 + (h.p[i] - '0');
    }
    sg_buf_free(&h);
    *version = v;
    return rc;
}

/* The 8-byte file checksum after the EOF opcode, then the trailer. */
static int rd_end(rd *r, int version, const void *trailer, size_t trailer_len)
{
    r->crc = sg_crc64(r->crc, r->buf + r->crc_from, r->pos - r->crc_from);
    r->crc_from = r->pos;
    uint64_t want = r->crc, sum = 0;
    unsigned char b[8];
    int rc = version >= 5 ? rd_le(r, 8, b) : 0;
    if (rc == 0 && version >= 5)
        sum = le_unsigned(b, 8);
    if (sum != 0 && sum != want) {
        char what[96];
        snprintf(what, sizeof what, "checksum %016llx, but the content sums to %016llx",
                 (unsigned long long)sum, (unsigned long long)want);
        return rd_fail(r, what);
    }
    if (rc || !trailer_len)
        return rc;
    sg_buf t = {0};
    if ((rc = rd_take(r, trailer_len, &t)) == 0 && memcmp(t.p, trailer, trailer_len))
        rc = rd_fail(r, "the end mark after the RDB does not match the one announced");
    sg_buf_free(&t);
    return rc;
}

int sg_rdb_parse(sg_rdb_read_fn read, void *read_ud, const void *trailer, size_t trailer_len,
                 sg_rdb_want_fn want, sg_rdb_key_fn fn, void *fn_ud, int *version, sg_error *err)
{
    rd r = {.read = read, .read_ud = read_ud, .buf = sg_xmalloc(RD_BUF), .err = err};
    sg_buf key = {0}, payload = {0};
    int64_t expire = 0;
    int db = 0, v = 0;
    int rc = rd_header(&r, &v);
    if (version)
        *version = v;
    while (rc == 0) {
        unsigned op;
        uint64_t n;
        if ((rc = rd_byte(&r, &op)))
            break;
        switch (op) {
        case OP_EOF:
            rc = rd_end(&r, v, trailer, trailer_len);
            goto out;
        case OP_SELECTDB:
            if ((rc = rd_len(&r, &n, NULL)) == 0 && n > INT_MAX)
                rc = rd_fail(&r, "a database number out of range");
            db = (int)n;
            continue;
        case OP_RESIZEDB:
            rc = rd_lens(&r, 2);
            continue;
        case OP_SLOT_INFO:
            rc = rd_lens(&r, 3);
            continue;
        case OP_AUX:
            if ((rc = rd_string(&r, NULL)) == 0)
                rc = rd_string(&r, NULL);
            continue;
        case OP_FUNCTION2:
            rc = rd_string(&r, NULL);
            continue;
        case OP_MODULE_AUX: /* module id, when opcode, when; then the body */
            if ((rc = rd_lens(&r, 3)) == 0)
                rc = rd_module_body(&r);
            continue;
        case OP_IDLE:
            rc = rd_lens(&r, 1);
            continue;
        case OP_FREQ:
            rc = rd_take(&r, 1, NULL);
            continue;
        case OP_EXPIRETIME_MS:
        case OP_EXPIRETIME: {
            /* milliseconds, or (before RDB 5) signed seconds */
            unsigned char b[8];
            size_t width = op == OP_EXPIRETIME_MS ? 8 : 4;
            if ((rc = rd_le(&r, width, b)) == 0)
                expire = width == 8 ? le_signed(b, 8) : le_signed(b, 4) * 1000;
            if (rc == 0 && expire <= 0)
                expire = 1; /* long expired; still marks the key as expiring */
            continue;
        }
        case OP_FUNCTION_PRE_GA:
            rc = rd_fail(&r, "functions in the Redis 7.0 release candidate format are not "
                             "supported (take this snapshot with --method scan)");
            continue;
        default:
            break;
        }
        /* a key: type byte, key, value */
        key.len = payload.len = 0;
        sg_buf_append(&payload, &(char){(char)op}, 1);
        if ((rc = rd_string(&r, &key)))
            break;
        if (want && !want(fn_ud, db, key.p ? key.p : "", key.len)) {
            rc = rd_value(&r, op); /* read past, not captured */
            expire = 0;
            continue;
        }
        rd_capture(&r, &payload);
        rc = rd_value(&r, op);
        rd_capture(&r, NULL);
        if (rc)
            break;
        unsigned char tail[10] = {(unsigned char)(v & 0xff), (unsigned char)(v >> 8)};
        sg_buf_append(&payload, tail, 2);
        uint64_t crc = sg_crc64(0, payload.p, payload.len);
        for (int i = 0; i < 8; i++)
            tail[2 + i] = (unsigned char)(crc >> (8 * i));
        sg_buf_append(&payload, tail + 2, 8);
        sg_rdb_key k = {.db = db,
                        .key = key.p ? key.p : "",
                        .key_len = key.len,
                        .expire_at_ms = expire,
                        .payload = payload.p,
                        .payload_len = payload.len};
        rc = fn(fn_ud, &k, err);
        expire = 0;
    }
out:
    sg_buf_free(&key);
    sg_buf_free(&payload);
    free(r.buf);
    return rc;
}

/* ---- Reading DUMP payloads ------------------------------------------------ */

/* A bounded cursor over a payload's value (the trailer excluded). */
typedef struct cur {
    const unsigned char *p, *end;
} cur;

static bool cur_len(cur *c, uint64_t *len, bool *special)
{
    if (c->p >= c->end)
        return false;
    unsigned b = *c->p++;
    *special = false;
    switch (b >> 6) {
    case 0:
        *len = b & 0x3f;
        return true;
    case 1:
        if (c->p >= c->end)
            return false;
        *len = (uint64_t)(b & 0x3f) << 8 | *c->p++;
        return true;
    case 2: {
        size_t n = b == 0x80 ? 4 : b == 0x81 ? 8 : 0;
        if (!n || (size_t)(c->end - c->p) < n)
            return false;
        uint64_t v = 0;
        for (size_t i = 0; i < n; i++)
            v = v << 8 | *c->p++;
        *len = v;
        return true;
    }
    default:
        *special = true;
        *len = b & 0x3f;
        return true;
    }
}

/* A string of the payload; raw strings point into it, encoded ones are
 * decoded into tmp. */
static bool cur_string(cur *c, sg_buf *tmp, sg_slice *out)
{
    uint64_t len;
    bool special;
    if (!cur_len(c, &len, &special))
        return false;
    if (!special) {
        if (len > (uint64_t)(c->end - c->p))
            return false;
        *out = (sg_slice){(const char *)c->p, (size_t)len};
        c->p += len;
        return true;
    }
    tmp->len = 0;
    if (len <= ENC_INT32) {
        size_t n = enc_int_size(len);
        if ((size_t)(c->end - c->p) < n)
            return false;
        sg_buf_printf(tmp, "%lld", (long long)le_signed(c->p, n));
        c->p += n;
    } else if (len == ENC_LZF) {
        uint64_t clen, ulen;
        if (!cur_len(c, &clen, &special) || special || !cur_len(c, &ulen, &special) || special ||
            clen > (uint64_t)(c->end - c->p) || ulen > LZF_MAX_OUT(clen))
            return false;
        sg_buf_append(tmp, "", 0);
        if (tmp->cap < ulen + 1) {
            tmp->cap = (size_t)ulen + 1;
            tmp->p = sg_xrealloc(tmp->p, tmp->cap);
        }
        if (sg_lzf_decompress(c->p, (size_t)clen, tmp->p, (size_t)ulen) != (long)ulen)
            return false;
        tmp->len = (size_t)ulen;
        c->p += clen;
    } else {
        return false;
    }
    *out = (sg_slice){tmp->p, tmp->len};
    return true;
}

/* Opens a DUMP payload: checks the trailer is there and returns the type. */
static bool payload_open(const void *payload, size_t len, cur *c, unsigned *type)
{
    if (len < 11)
        return false;
    c->p = (const unsigned char *)payload + 1;
    c->end = (const unsigned char *)payload + len - 10;
    *type = *(const unsigned char *)payload;
    return true;
}

int sg_rdb_string(const void *payload, size_t len, sg_buf *out)
{
    cur c;
    unsigned type;
    if (!payload_open(payload, len, &c, &type) || type != T_STRING)
        return 1;
    sg_buf tmp = {0};
    sg_slice s;
    bool ok = cur_string(&c, &tmp, &s);
    if (ok) {
        out->len = 0;
        sg_buf_append(out, s.p, s.len);
    }
    sg_buf_free(&tmp);
    return ok ? 0 : 1;
}

/* One element of a listpack (Redis listpack.c): a string, or an integer
 * written into num. Advances *p past the element and its back length. */
static bool lp_next(const unsigned char **pp, const unsigned char *end, char num[24], sg_slice *out)
{
    const unsigned char *p = *pp;
    unsigned b = *p;
    size_t head, len = 0;
    int64_t v = 0;
    bool is_int = true;
    if ((b & 0x80) == 0) {
        head = 1, v = b & 0x7f;
    } else if ((b & 0xc0) == 0x80) {
        head = 1, len = b & 0x3f, is_int = false;
    } else if ((b & 0xe0) == 0xc0) {
        if (end - p < 2)
            return false;
        head = 2, v = ((int64_t)(b & 0x1f) << 8 | p[1]);
        if (v >= 1 << 12)
            v -= 1 << 13;
    } else if ((b & 0xf0) == 0xe0) {
        if (end - p < 2)
            return false;
        head = 2, len = (size_t)(b & 0x0f) << 8 | p[1], is_int = false;
    } else if (b == 0xf0) {
        if (end - p < 5)
            return false;
        head = 5, len = (size_t)p[1] | (size_t)p[2] << 8 | (size_t)p[3] << 16 | (size_t)p[4] << 24;
        is_int = false;
    } else if (b >= 0xf1 && b <= 0xf4) {
        size_t n = b == 0xf1 ? 2 : b == 0xf2 ? 3 : b == 0xf3 ? 4 : 8;
        if ((size_t)(end - p) < 1 + n)
            return false;
        head = 1 + n, v = le_signed(p + 1, n);
    } else {
        return false;
    }
    if (len > (size_t)(end - p) - head)
        return false; /* (also keeps head + len from wrapping) */
    size_t entry = head + len;
    /* lpEncodeBacklen's size classes */
    size_t back = entry <= 127        ? 1
                  : entry < 16383     ? 2
                  : entry < 2097151   ? 3
                  : entry < 268435455 ? 4
                                      : 5;
    if ((size_t)(end - p) < entry + back)
        return false;
    if (is_int) {
        snprintf(num, 24, "%lld", (long long)v);
        *out = (sg_slice){num, strlen(num)};
    } else {
        *out = (sg_slice){(const char *)p + head, len};
    }
    *pp = p + entry + back;
    return true;
}

/* One element of a ziplist (Redis ziplist.c, before 7.0). */
static bool zl_next(const unsigned char **pp, const unsigned char *end, char num[24], sg_slice *out)
{
    const unsigned char *p = *pp;
    size_t prev = *p == 254 ? 5 : 1;
    if ((size_t)(end - p) < prev + 1)
        return false;
    p += prev;
    unsigned e = *p;
    size_t head, len = 0, n = 0;
    int64_t v = 0;
    switch (e >> 6) {
    case 0:
        head = 1, len = e & 0x3f;
        break;
    case 1:
        if (end - p < 2)
            return false;
        head = 2, len = (size_t)(e & 0x3f) << 8 | p[1];
        break;
    case 2:
        if (end - p < 5)
            return false;
        head = 5, len = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
        break;
    default:
        head = 1;
        switch (e) {
        case 0xc0:
            n = 2;
            break;
        case 0xd0:
            n = 4;
            break;
        case 0xe0:
            n = 8;
            break;
        case 0xf0:
            n = 3;
            break;
        case 0xfe:
            n = 1;
            break;
        default:
            if (e < 0xf1 || e > 0xfd)
                return false;
            v = (int64_t)(e & 0x0f) - 1; /* immediate 0..12 */
        }
        if ((size_t)(end - p) < head + n)
            return false;
        if (n)
            v = le_signed(p + 1, n);
        snprintf(num, 24, "%lld", (long long)v);
        *out = (sg_slice){num, strlen(num)};
        *pp = p + head + n;
        return true;
    }
    if ((size_t)(end - p) < head || len > (size_t)(end - p) - head)
        return false;
    *out = (sg_slice){(const char *)p + head, len};
    *pp = p + head + len;
    return true;
}

/* Pairs of a listpack (headed by 4-byte total and 2-byte count) or a
 * ziplist (4-byte total, 4-byte tail offset, 2-byte count). */
static int blob_pairs(sg_slice blob, bool listpack, sg_rdb_pair_fn fn, void *ud)
{
    const unsigned char *p = (const unsigned char *)blob.p, *end = p + blob.len;
    size_t header = listpack ? 6 : 10;
    if (blob.len < header + 1)
        return 1;
    p += header;
    char n1[24], n2[24];
    while (p < end && *p != 0xff) {
        sg_slice f, v;
        bool ok = listpack ? lp_next(&p, end, n1, &f) : zl_next(&p, end, n1, &f);
        if (!ok || p >= end || *p == 0xff)
            return 1;
        ok = listpack ? lp_next(&p, end, n2, &v) : zl_next(&p, end, n2, &v);
        if (!ok)
            return 1;
        int rc = fn(ud, f, v);
        if (rc)
            return rc;
    }
    return p < end ? 0 : 1;
}

int sg_rdb_hash_each(const void *payload, size_t len, sg_rdb_pair_fn fn, void *ud)
{
    cur c;
    unsigned type;
    if (!payload_open(payload, len, &c, &type))
        return 1;
    sg_buf t1 = {0}, t2 = {0};
    int rc = 1;
    sg_slice f, v;
    if (type == T_HASH) {
        uint64_t n;
        bool special;
        if (cur_len(&c, &n, &special) && !special) {
            rc = 0;
            for (uint64_t i = 0; i < n && rc == 0; i++)
                rc = cur_string(&c, &t1, &f) && cur_string(&c, &t2, &v) ? fn(ud, f, v) : 1;
        }
    } else if ((type == T_HASH_LISTPACK || type == T_HASH_ZIPLIST) && cur_string(&c, &t1, &f)) {
        rc = blob_pairs(f, type == T_HASH_LISTPACK, fn, ud);
    }
    sg_buf_free(&t1);
    sg_buf_free(&t2);
    return rc;
}
