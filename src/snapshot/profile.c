/* Igor's Redis key families (DOMAIN.md section 2) and how to read them:
 * key names into families, sources and jobs; values, read out of their DUMP
 * payloads with rdb.h, into build-index rows. Reading the value from the
 * payload costs Redis no command beyond the DUMP a snapshot takes anyway. */
#include "stormguard/snapshot/profile.h"

#include <stdint.h>
#include <string.h>

#include "stormguard/base/util.h"
#include "stormguard/snapshot/rdb.h"

int sg_profile_kind_parse(const char *name, sg_profile_kind *out)
{
    if (!strcmp(name, "igor"))
        *out = SG_PROFILE_IGOR;
    else if (!strcmp(name, "none"))
        *out = SG_PROFILE_NONE;
    else
        return SG_EINVAL;
    return 0;
}

const char *sg_profile_kind_name(sg_profile_kind kind)
{
    return kind == SG_PROFILE_IGOR ? "igor" : "none";
}

char *sg_profile_pattern(sg_profile_kind kind, const char *prefix)
{
    if (kind != SG_PROFILE_IGOR)
        return NULL;
    /* escape glob metacharacters so an odd prefix matches only itself */
    size_t n = strlen(prefix);
    char *p = sg_xmalloc(2 * n + 3), *o = p;
    for (size_t i = 0; i < n; i++) {
        if (strchr("*?[]\\", prefix[i]))
            *o++ = '\\';
        *o++ = prefix[i];
    }
    memcpy(o, ":*", 3);
    return p;
}

bool sg_parse_slice_int64(sg_slice s, int64_t *out)
{
    if (s.len == 0 || s.len > 19)
        return false;
    int64_t v = 0;
    size_t i = 0;
    bool neg = s.p[0] == '-';
    if (neg && s.len == 1)
        return false;
    for (i = neg ? 1 : 0; i < s.len; i++) {
        if (s.p[i] < '0' || s.p[i] > '9')
            return false;
        int d = s.p[i] - '0';
        if (v > (INT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = neg ? -v : v;
    return true;
}

/* Length of the UTF-8 sequence starting with byte c (1 for stray bytes). */
static size_t utf8_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0)
        return 2;
    if ((c & 0xf0) == 0xe0)
        return 3;
    if ((c & 0xf8) == 0xf0)
        return 4;
    return 1;
}

static unsigned char ascii_upper(unsigned char c)
{
    return c >= 'a' && c <= 'z' ? (unsigned char)(c - 32) : c;
}

/* True if upper is what Java's toUpperCase could make of lower, compared code
 * point by code point: ASCII letters must be upper-cased exactly; a non-ASCII
 * code point on the lower side may become one code point of any kind
 * ('ı' -> 'I', 'ö' -> 'Ö') or two ASCII letters ('ß' -> "SS"), since we carry
 * no Unicode case tables. Backtracks only at non-ASCII points. */
static bool is_upper_of(const char *u, size_t ulen, const char *l, size_t llen)
{
    while (ulen && llen) {
        unsigned char lc = (unsigned char)*l;
        if (lc < 0x80) {
            if ((unsigned char)*u != ascii_upper(lc))
                return false;
            u++, ulen--, l++, llen--;
            continue;
        }
        size_t ln = utf8_len(lc), un = utf8_len((unsigned char)*u);
        if (ln > llen || un > ulen)
            return false;
        if (ulen >= 2 && (unsigned char)u[0] < 0x80 && (unsigned char)u[1] < 0x80 &&
            is_upper_of(u + 2, ulen - 2, l + ln, llen - ln))
            return true;
        u += un, ulen -= un, l += ln, llen -= ln;
    }
    return ulen == 0 && llen == 0;
}

bool sg_igor_split_job(const char *s, size_t len, sg_slice *job)
{
    /* DOMAIN.md section 2: both parts have the same length in Java chars, so
     * for ASCII names the split is exactly in the middle; try that first. */
    if (len >= 3 && len % 2 == 1 && s[len / 2] == ':' &&
        is_upper_of(s, len / 2, s + len / 2 + 1, len / 2)) {
        job->p = s + len / 2 + 1;
        job->len = len / 2;
        return true;
    }
    for (size_t i = 1; i + 1 < len; i++) {
        if (s[i] != ':')
            continue;
        if (is_upper_of(s, i, s + i + 1, len - i - 1)) {
            job->p = s + i + 1;
            job->len = len - i - 1;
            return true;
        }
    }
    return false;
}

static bool starts_with(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && !memcmp(s, prefix, n);
}

/* "<master>:<JOB>:<job>" -> source and job. */
static bool split_master_job(const char *s, size_t len, sg_igor_key *out)
{
    const char *colon = memchr(s, ':', len);
    if (!colon || colon == s)
        return false;
    out->source.p = s;
    out->source.len = (size_t)(colon - s);
    return sg_igor_split_job(colon + 1, len - out->source.len - 1, &out->job);
}

/* Strips ":<digits>" from the end of s; false if s does not end so. */
static bool strip_number(const char *s, size_t *len, int64_t *num)
{
    size_t i = *len;
    while (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9')
        i--;
    if (i == *len || i == 0 || s[i - 1] != ':')
        return false;
    sg_slice digits = {s + i, *len - i};
    if (!sg_parse_slice_int64(digits, num))
        return false;
    *len = i - 1;
    return true;
}

static void parse_ci(const char *s, size_t len, sg_igor_key *out)
{
    static const struct {
        const char *prefix;
        sg_key_family family;
    } kinds[] = {
        {"builds:completed:", SG_KEY_CI_COMPLETED},
        {"builds:running:", SG_KEY_CI_RUNNING},
        {"builds:track:", SG_KEY_CI_TRACK},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (!starts_with(s, len, kinds[i].prefix))
            continue;
        size_t n = strlen(kinds[i].prefix), rest = len - n;
        if (kinds[i].family == SG_KEY_CI_TRACK && !strip_number(s + n, &rest, &out->marker))
            return;
        if (split_master_job(s + n, rest, out))
            out->family = kinds[i].family;
        return;
    }
}

static void parse_docker(const char *s, size_t len, sg_igor_key *out)
{
    /* <account>:<repository>:<tag>; tags cannot hold ':', repositories may
     * hold '/', so split at the first and the last ':' */
    const char *first = memchr(s, ':', len);
    const char *last = memrchr(s, ':', len);
    if (!first || first == last || first == s || last == s + len - 1 || last == first + 1)
        return;
    out->source = (sg_slice){s, (size_t)(first - s)};
    out->job = (sg_slice){first + 1, (size_t)(last - first - 1)};
    out->tag = (sg_slice){last + 1, (size_t)(s + len - last - 1)};
    out->family = SG_KEY_DOCKER_TAG;
}

int sg_igor_parse_key(const char *prefix, const char *key, size_t len, sg_igor_key *out)
{
    size_t plen = strlen(prefix);
    if (len <= plen || memcmp(key, prefix, plen) || key[plen] != ':')
        return SG_ENOTFOUND;
    memset(out, 0, sizeof *out);
    const char *s = key + plen + 1;
    size_t n = len - plen - 1;

    if (starts_with(s, n, "builds:")) {
        parse_ci(s, n, out);
        return 0;
    }
    if (starts_with(s, n, "dockerRegistry:v2:")) {
        size_t skip = strlen("dockerRegistry:v2:");
        parse_docker(s + skip, n - skip, out);
        return 0;
    }
    /* Jenkins: <master>:<JOB>:<job>[:lastPollCycleTimestamp:<cursor>] */
    static const char marker[] = ":" SG_IGOR_CURSOR_FIELD;
    size_t rest = n;
    int64_t cursor;
    if (strip_number(s, &rest, &cursor) && rest >= sizeof marker - 1 &&
        !memcmp(s + rest - (sizeof marker - 1), marker, sizeof marker - 1)) {
        rest -= sizeof marker - 1;
        if (split_master_job(s, rest, out)) {
            out->family = SG_KEY_JENKINS_POSTED;
            out->marker = cursor;
            return 0;
        }
        /* not a marker after all: a job whose name ends like one */
    }
    if (split_master_job(s, n, out))
        out->family = SG_KEY_JENKINS_CURSOR;
    return 0;
}

/* ---- Values into build-index rows ---------------------------------------- */

static bool slice_is(sg_slice s, const char *word)
{
    size_t n = strlen(word);
    return s.len == n && !memcmp(s.p, word, n);
}

/* Decoding one index hash: the key's family decides which fields count. */
typedef struct decoding {
    sg_igor_row row; /* the key's part, filled once */
    sg_igor_row_fn fn;
    void *ud;
    sg_error *err;
    bool used; /* some field gave a row */
    int rc;    /* fn's nonzero return */
} decoding;

static int decode_pair(void *ud, sg_slice field, sg_slice value)
{
    decoding *d = ud;
    sg_igor_row row = d->row;
    switch (row.family) {
    case SG_KEY_JENKINS_CURSOR:
        if (!slice_is(field, SG_IGOR_CURSOR_FIELD) || !sg_parse_slice_int64(value, &row.number))
            return 0;
        break;
    case SG_KEY_JENKINS_POSTED:
        /* field = build number, value POSTED (DOMAIN.md section 2) */
        if (!sg_parse_slice_int64(field, &row.number))
            return 0;
        break;
    case SG_KEY_DOCKER_TAG:
        if (!slice_is(field, "digest"))
            return 0;
        row.digest = value;
        break;
    default:
        return 0;
    }
    d->used = true;
    return d->rc = d->fn(d->ud, &row, d->err);
}

int sg_igor_decode(const sg_igor_key *k, const void *payload, size_t len, sg_igor_row_fn fn,
                   void *ud, bool *undecoded, sg_error *err)
{
    sg_igor_row row = {.family = k->family, .source = k->source, .job = k->job, .tag = k->tag};
    switch (k->family) {
    case SG_KEY_CI_COMPLETED:
    case SG_KEY_CI_RUNNING: {
        sg_buf v = {0};
        bool ok = sg_rdb_string(payload, len, &v) == 0 &&
                  sg_parse_slice_int64((sg_slice){v.p, v.len}, &row.number);
        int rc = ok ? fn(ud, &row, err) : 0;
        sg_buf_free(&v);
        if (rc == 0)
            *undecoded = !ok;
        return rc;
    }
    case SG_KEY_JENKINS_CURSOR:
    case SG_KEY_JENKINS_POSTED:
    case SG_KEY_DOCKER_TAG: {
        decoding d = {.row = row, .fn = fn, .ud = ud, .err = err};
        int rc = sg_rdb_hash_each(payload, len, decode_pair, &d);
        if (d.rc)
            return d.rc;
        *undecoded = rc || !d.used;
        return 0;
    }
    default:
        *undecoded = false;
        return 0;
    }
}
