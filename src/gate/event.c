/* Request bodies to events (event.h). The shapes are DOMAIN.md section 3:
 *   Igor:    {"details": {"type": "build", ...}, "content": {"master": M,
 *             "project": {"name": J, "lastBuild": {"number": N, "building": B,
 *             "timestamp": "ms"}}, "type"?: "travis"|"gitlab"...}}
 *   Jenkins Notification plugin: {"name": J, "build": {"number": N,
 *             "phase": "COMPLETED"|"FINALIZED"|..., "timestamp": ms}}
 *   generic: four JSON pointers from the configuration. */
#include "stormguard/gate/event.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stormguard/base/util.h"

#define MAX_BUILD_NUMBER (INT64_C(1) << 53) /* beyond this JSON numbers lose precision */
/* epoch ms between 2000-01-01 and 3000-01-01: anything else is not a build time */
#define MIN_EPOCH_MS INT64_C(946684800000)
#define MAX_EPOCH_MS INT64_C(32503680000000)

int64_t sg_docker_identity(const char *tag, const char *digest)
{
    /* FNV-1a, 64 bits: stable across runs and versions (it is stored) */
    uint64_t h = 0xcbf29ce484222325ULL;
    const char *parts[2] = {tag, digest ? digest : ""};
    for (int p = 0; p < 2; p++) {
        for (const unsigned char *c = (const unsigned char *)parts[p]; *c; c++)
            h = (h ^ *c) * 0x100000001b3ULL;
        if (p == 0)
            h = (h ^ 0) * 0x100000001b3ULL; /* the separator: names hold no NUL */
    }
    return (int64_t)(h % ((UINT64_C(1) << 53) - 1)) + 1;
}

void sg_event_close(sg_event *e)
{
    free(e->source);
    free(e->job);
    free(e->tag);
    free(e->digest);
    free(e->registry);
    memset(e, 0, sizeof *e);
}

/* Resolves an RFC 6901 pointer; NULL if any step is missing. */
static json_t *resolve(json_t *root, const char *ptr)
{
    json_t *cur = root;
    const char *p = ptr;
    char token[512];
    while (cur && *p == '/') {
        p++;
        size_t n = 0;
        while (*p && *p != '/') {
            char c = *p++;
            if (c == '~')
                c = *p++ == '1' ? '/' : '~';
            if (n + 1 >= sizeof token)
                return NULL;
            token[n++] = c;
        }
        token[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, token);
        } else if (json_is_array(cur)) {
            char *end;
            unsigned long idx = strtoul(token, &end, 10);
            cur = *token && !*end ? json_array_get(cur, idx) : NULL;
        } else {
            cur = NULL;
        }
    }
    return cur;
}

/* ---- the fields the shapes look at ----
 *
 * Both readers below fill the same table, and one shape logic reads it:
 * jansson's tree, and a scanner that validates the body without building
 * one. jansson parsing an Igor event took about a fifth of the gate's loop
 * (objects, hash tables and a string per value); the scanner reads it in
 * one pass and keeps only these fields, as slices of the body. It gives up
 * ("unsure") on anything it does not check as jansson would (escapes in a
 * key or a field, a duplicate key, integers beyond 18 digits, reals in a
 * field, deep nesting, invalid JSON, and so on), and jansson then reads the
 * body: it accepts nothing jansson would refuse, and jansson alone says why
 * a body is invalid. test_event compares the two on every case it has and
 * on thousands of mutations of them. */

typedef enum vtype {
    V_ABSENT,
    V_NULL,
    V_FALSE,
    V_TRUE,
    V_INT,
    V_REAL,
    V_STRING,
    V_OBJECT,
    V_ARRAY
} vtype;

typedef struct value {
    vtype type;
    const char *s; /* V_STRING: its bytes (no NUL inside), len of them */
    size_t len;
    int64_t i; /* V_INT */
    double d;  /* V_REAL */
} value;

enum {
    F_DETAILS,
    F_DETAILS_TYPE,
    F_CONTENT,
    F_CONTENT_TYPE,
    F_MASTER,
    F_PROJECT,
    F_PROJECT_NAME,
    F_LAST,
    F_LAST_NUMBER,
    F_LAST_BUILDING,
    F_LAST_TIMESTAMP, /* Igor */
    F_LAST_DURATION,
    F_BUILD,
    F_BUILD_PHASE,
    F_BUILD_NUMBER,
    F_BUILD_TIMESTAMP,
    F_NAME,
    F_URL, /* Notification */
    F_ACCOUNT,
    F_REGISTRY,
    F_REPOSITORY,
    F_TAG,
    F_DIGEST, /* Docker */
    N_FIELDS
};

#define ROOT (-1)
#define UNTRACKED (-2)

static const struct {
    int parent;
    const char *key;
} fields[N_FIELDS] = {
    [F_DETAILS] = {ROOT, "details"},
    [F_DETAILS_TYPE] = {F_DETAILS, "type"},
    [F_CONTENT] = {ROOT, "content"},
    [F_CONTENT_TYPE] = {F_CONTENT, "type"},
    [F_MASTER] = {F_CONTENT, "master"},
    [F_PROJECT] = {F_CONTENT, "project"},
    [F_PROJECT_NAME] = {F_PROJECT, "name"},
    [F_LAST] = {F_PROJECT, "lastBuild"},
    [F_LAST_NUMBER] = {F_LAST, "number"},
    [F_LAST_BUILDING] = {F_LAST, "building"},
    [F_LAST_TIMESTAMP] = {F_LAST, "timestamp"},
    [F_LAST_DURATION] = {F_LAST, "duration"},
    [F_BUILD] = {ROOT, "build"},
    [F_BUILD_PHASE] = {F_BUILD, "phase"},
    [F_BUILD_NUMBER] = {F_BUILD, "number"},
    [F_BUILD_TIMESTAMP] = {F_BUILD, "timestamp"},
    [F_NAME] = {ROOT, "name"},
    [F_URL] = {ROOT, "url"},
    [F_ACCOUNT] = {F_CONTENT, "account"},
    [F_REGISTRY] = {F_CONTENT, "registry"},
    [F_REPOSITORY] = {F_CONTENT, "repository"},
    [F_TAG] = {F_CONTENT, "tag"},
    [F_DIGEST] = {F_CONTENT, "digest"},
};

static bool is_str(const value *v, const char *lit)
{
    size_t n = strlen(lit);
    return v->type == V_STRING && v->len == n && !memcmp(v->s, lit, n);
}

/* -- jansson's tree -- */

static void from_json(json_t *j, value *v)
{
    memset(v, 0, sizeof *v);
    switch (j ? json_typeof(j) : JSON_NULL) {
    case JSON_OBJECT:
        v->type = V_OBJECT;
        break;
    case JSON_ARRAY:
        v->type = V_ARRAY;
        break;
    case JSON_STRING:
        v->type = V_STRING;
        v->s = json_string_value(j);
        v->len = json_string_length(j);
        break;
    case JSON_INTEGER:
        v->type = V_INT;
        v->i = json_integer_value(j);
        break;
    case JSON_REAL:
        v->type = V_REAL;
        v->d = json_real_value(j);
        break;
    case JSON_TRUE:
        v->type = V_TRUE;
        break;
    case JSON_FALSE:
        v->type = V_FALSE;
        break;
    case JSON_NULL:
        v->type = j ? V_NULL : V_ABSENT;
        break;
    }
}

static void fields_of_tree(json_t *root, value *fv)
{
    json_t *node[N_FIELDS];
    for (int f = 0; f < N_FIELDS; f++) { /* parents come before their children */
        json_t *parent = fields[f].parent == ROOT ? root : node[fields[f].parent];
        node[f] = json_is_object(parent) ? json_object_get(parent, fields[f].key) : NULL;
        from_json(node[f], &fv[f]);
    }
}

/* -- the scanner -- */

#define SCAN_DEPTH 64 /* deeper: jansson reads it */
#define SCAN_KEYS 32  /* keys per object it checks for duplicates */

typedef struct scan {
    const unsigned char *p, *end;
    value *fv;
    int depth;
} scan;

static void skip_ws(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hex4(const unsigned char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int c = p[i], d = c >= '0' && c <= '9'   ? c - '0'
                          : c >= 'a' && c <= 'f' ? c - 'a' + 10
                          : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* One well-formed UTF-8 sequence (no overlong form, surrogate or code point
 * past U+10FFFF) at p; its length, 0 if there is none. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n;
    unsigned min;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4, min = 0x10000;
    else
        return 0;
    if ((size_t)(end - p) < n)
        return 0;
    unsigned cp = c & (0x3F >> (n - 1));
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* A string at s->p ('"'): its raw bytes, and whether it has escapes. */
static int scan_string(scan *s, const char **out, size_t *len, bool *escaped)
{
    const unsigned char *p = s->p + 1;
    *escaped = false;
    for (;;) {
        if (p >= s->end)
            return -1;
        unsigned c = *p;
        if (c == '"')
            break;
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            *escaped = true;
            if (p + 1 >= s->end)
                return -1;
            c = p[1];
            if (c == 'u') {
                if (s->end - p < 6)
                    return -1;
                int u = hex4(p + 2);
                if (u <= 0 || (u >= 0xDC00 && u <= 0xDFFF)) /* NUL: jansson refuses it */
                    return -1;
                p += 6;
                if (u >= 0xD800 && u <= 0xDBFF) { /* a high surrogate needs its low one */
                    if (s->end - p < 6 || p[0] != '\\' || p[1] != 'u')
                        return -1;
                    int lo = hex4(p + 2);
                    if (lo < 0xDC00 || lo > 0xDFFF)
                        return -1;
                    p += 6;
                }
                continue;
            }
            if (!strchr("\"\\/bfnrt", (int)c) || c == 0)
                return -1;
            p += 2;
            continue;
        }
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t n = utf8_len(p, s->end);
        if (!n)
            return -1;
        p += n;
    }
    *out = (const char *)s->p + 1;
    *len = (size_t)(p - s->p) - 1;
    s->p = p + 1;
    return 0;
}

static int scan_digits(scan *s)
{
    int n = 0;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        s->p++, n++;
    return n;
}

static int scan_number(scan *s, value *v)
{
    const unsigned char *start = s->p;
    if (*s->p == '-')
        s->p++;
    if (s->p >= s->end)
        return -1;
    int digits;
    if (*s->p == '0') {
        s->p++;
        digits = 1;
    } else if (*s->p >= '1' && *s->p <= '9') {
        digits = scan_digits(s);
    } else {
        return -1;
    }
    bool real = false;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (!scan_digits(s))
            return -1;
        real = true;
    }
    int exp_digits = 0;
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (!(exp_digits = scan_digits(s)))
            return -1;
        real = true;
    }
    if (real) {
        /* jansson refuses a real that overflows; it reads these, and the
         * shapes' fields are left to it too */
        if (digits > 100 || exp_digits > 2 || v)
            return -1;
        return 0;
    }
    if (digits > 18) /* jansson refuses integers past int64 */
        return -1;
    if (v) {
        int64_t n = 0;
        for (const unsigned char *q = start + (*start == '-'); q < s->p; q++)
            n = n * 10 + (*q - '0');
        v->type = V_INT;
        v->i = *start == '-' ? -n : n;
    }
    return 0;
}

static int scan_value(scan *s, int field);

/* After a member or an element: 1 past the closing bracket, 0 past a comma
 * (another follows), -1 for anything else. */
static int next_or_close(scan *s, unsigned char close)
{
    skip_ws(s);
    if (s->p >= s->end)
        return -1;
    if (*s->p == close) {
        s->p++;
        return 1;
    }
    if (*s->p != ',')
        return -1;
    s->p++;
    return 0;
}

/* Past the opening bracket: true if the closing one follows (consumed). */
static bool opens_empty(scan *s, unsigned char close)
{
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return true;
    }
    return false;
}

static int scan_object(scan *s, int field)
{
    struct {
        const char *p;
        size_t len;
    } keys[SCAN_KEYS];
    int nkeys = 0;
    if (opens_empty(s, '}'))
        return 0;
    for (;;) {
        skip_ws(s);
        if (s->p >= s->end || *s->p != '"')
            return -1;
        const char *key;
        size_t len;
        bool escaped;
        if (scan_string(s, &key, &len, &escaped) || escaped || nkeys == SCAN_KEYS)
            return -1;
        for (int i = 0; i < nkeys; i++)
            if (keys[i].len == len && !memcmp(keys[i].p, key, len))
                return -1; /* a duplicate: jansson refuses the body */
        keys[nkeys].p = key;
        keys[nkeys++].len = len;
        int child = UNTRACKED;
        if (field != UNTRACKED)
            for (int f = 0; f < N_FIELDS; f++)
                if (fields[f].parent == field && strlen(fields[f].key) == len &&
                    !memcmp(fields[f].key, key, len)) {
                    child = f;
                    break;
                }
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':')
            return -1;
        s->p++;
        skip_ws(s);
        int next = scan_value(s, child) ? -1 : next_or_close(s, '}');
        if (next)
            return next < 0 ? -1 : 0;
    }
}

static int scan_array(scan *s)
{
    if (opens_empty(s, ']'))
        return 0;
    for (;;) {
        skip_ws(s);
        int next = scan_value(s, UNTRACKED) ? -1 : next_or_close(s, ']');
        if (next)
            return next < 0 ? -1 : 0;
    }
}

static int scan_literal(scan *s, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n))
        return -1;
    s->p += n;
    return 0;
}

/* A value at s->p; field: which one it is (ROOT, UNTRACKED or F_*). */
static int scan_value(scan *s, int field)
{
    if (s->p >= s->end)
        return -1;
    value *v = field >= 0 ? &s->fv[field] : NULL;
    int rc;
    switch (*s->p) {
    case '{':
        if (++s->depth > SCAN_DEPTH)
            return -1;
        if (v)
            v->type = V_OBJECT;
        rc = scan_object(s, field == ROOT || field >= 0 ? field : UNTRACKED);
        s->depth--;
        return rc;
    case '[':
        if (++s->depth > SCAN_DEPTH)
            return -1;
        if (v)
            v->type = V_ARRAY;
        rc = scan_array(s);
        s->depth--;
        return rc;
    case '"': {
        const char *str;
        size_t len;
        bool escaped;
        if (scan_string(s, &str, &len, &escaped) || (v && escaped))
            return -1;
        if (v) {
            v->type = V_STRING;
            v->s = str;
            v->len = len;
        }
        return 0;
    }
    case 't':
        if (v)
            v->type = V_TRUE;
        return scan_literal(s, "true");
    case 'f':
        if (v)
            v->type = V_FALSE;
        return scan_literal(s, "false");
    case 'n':
        if (v)
            v->type = V_NULL;
        return scan_literal(s, "null");
    default:
        return scan_number(s, v);
    }
}

/* Fills fv from body; -1 if unsure (jansson must read it). */
static int fields_of_scan(const char *body, size_t len, value *fv)
{
    scan s = {(const unsigned char *)body, (const unsigned char *)body + len, fv, 0};
    memset(fv, 0, N_FIELDS * sizeof *fv);
    skip_ws(&s);
    if (scan_value(&s, ROOT))
        return -1;
    skip_ws(&s);
    return s.p == s.end ? 0 : -1;
}

/* ---- the shapes ---- */

/* An integer from a string value of digits (its bytes are not NUL-ended). */
static int int_of_string(const value *v, int64_t min, int64_t max, int64_t *out)
{
    char digits[32];
    if (v->len >= sizeof digits)
        return SG_EINVAL;
    memcpy(digits, v->s, v->len);
    digits[v->len] = '\0';
    return sg_parse_int64(digits, min, max, out) ? SG_EINVAL : 0;
}

/* A build number from an integer, or a string of digits. */
static int number_of(const value *v, int64_t *out)
{
    int64_t n;
    if (v->type == V_INT) {
        n = v->i;
    } else if (v->type == V_STRING) {
        if (int_of_string(v, 1, MAX_BUILD_NUMBER, &n))
            return SG_EINVAL;
    } else if (v->type == V_REAL) {
        double d = v->d;
        if (d != floor(d) || d < 1 || d > (double)MAX_BUILD_NUMBER)
            return SG_EINVAL;
        n = (int64_t)d;
    } else {
        return SG_EINVAL;
    }
    if (n < 1 || n > MAX_BUILD_NUMBER)
        return SG_EINVAL;
    *out = n;
    return 0;
}

/* A build start time: epoch ms as an integer or a string (Igor sends a string). */
static int timestamp_of(const value *v, int64_t *out)
{
    int64_t t;
    if (v->type == V_ABSENT || v->type == V_NULL) {
        *out = 0;
        return 0;
    }
    if (v->type == V_INT) {
        t = v->i;
    } else if (v->type == V_STRING) {
        if (int_of_string(v, 0, INT64_MAX, &t))
            return SG_EINVAL;
    } else {
        return SG_EINVAL;
    }
    if (t < MIN_EPOCH_MS || t > MAX_EPOCH_MS)
        return SG_EINVAL;
    *out = t;
    return 0;
}

static int fill(sg_event *out, const char *shape, const char *source, size_t source_len,
                const char *job, size_t job_len, const value *number, const value *ts,
                sg_error *err)
{
    if (!source || !source_len || !job || !job_len)
        return sg_error_set(err, SG_EINVAL, "%s build event without a source or job name", shape);
    if (source_len > SG_EVENT_NAME_MAX || job_len > SG_EVENT_NAME_MAX)
        return sg_error_set(err, SG_EINVAL,
                            "%s build event for job '%.64s...': the %s name is %zu bytes, over "
                            "the limit of %d",
                            shape, job, source_len > SG_EVENT_NAME_MAX ? "source" : "job",
                            source_len > SG_EVENT_NAME_MAX ? source_len : job_len,
                            SG_EVENT_NAME_MAX);
    if (memchr(source, '\0', source_len) || memchr(job, '\0', job_len))
        return sg_error_set(err, SG_EINVAL, "%s build event: a NUL character in the %s name", shape,
                            memchr(source, '\0', source_len) ? "source" : "job");
    if (number_of(number, &out->number))
        return sg_error_set(err, SG_EINVAL,
                            "%s build event for job '%.*s': build number is not a whole number "
                            "from 1 to 2^53",
                            shape, (int)job_len, job);
    if (timestamp_of(ts, &out->build_ts))
        return sg_error_set(err, SG_EINVAL,
                            "%s build event for job '%.*s': timestamp is not epoch milliseconds",
                            shape, (int)job_len, job);
    out->type = SG_EVENT_BUILD;
    out->shape = shape;
    out->source = sg_xstrndup(source, source_len);
    out->job = sg_xstrndup(job, job_len);
    return 0;
}

static const char *str_of(const value *v, size_t *len)
{
    *len = v->type == V_STRING ? v->len : 0;
    return v->type == V_STRING ? v->s : NULL;
}

/* Igor: details.type == "build". Only completed builds (building false) are
 * classified; Echo ignores the others (DOMAIN.md section 1). */
static int parse_igor(const value *fv, sg_event *out, sg_error *err, bool *matched)
{
    if (!is_str(&fv[F_DETAILS_TYPE], "build") || fv[F_LAST].type != V_OBJECT)
        return 0;
    *matched = true;
    if (fv[F_LAST_BUILDING].type == V_TRUE)
        return 0; /* still running: pass through */
    out->ci_number_cursor =
        fv[F_CONTENT_TYPE].type == V_STRING && !is_str(&fv[F_CONTENT_TYPE], "jenkins");
    size_t slen, jlen;
    const char *source = str_of(&fv[F_MASTER], &slen), *job = str_of(&fv[F_PROJECT_NAME], &jlen);
    /* how long it ran, when Igor says (ms): tells when it ended; anything
     * but a whole number of at most a year is taken as not said */
    const value *d = &fv[F_LAST_DURATION];
    out->duration_ms = d->type == V_INT && d->i >= 0 && d->i <= 366LL * 86400000 ? d->i : 0;
    return fill(out, "igor", source, slen, job, jlen, &fv[F_LAST_NUMBER], &fv[F_LAST_TIMESTAMP],
                err);
}

static bool is_str_nocase(const value *v, const char *lit)
{
    size_t n = strlen(lit);
    return v->type == V_STRING && v->len == n && !strncasecmp(v->s, lit, n);
}

/* A Docker name (account, repository, tag, digest) as fill checks a job's:
 * 0, or SG_EINVAL naming which. */
static int docker_name(const value *v, const char *what, bool optional, char **out, sg_error *err)
{
    size_t len;
    const char *p = str_of(v, &len);
    if (!p || !len) {
        if (optional)
            return 0;
        return sg_error_set(err, SG_EINVAL, "igor Docker event without a %s", what);
    }
    if (len > SG_EVENT_NAME_MAX)
        return sg_error_set(err, SG_EINVAL,
                            "igor Docker event: the %s is %zu bytes, over the limit of %d", what,
                            len, SG_EVENT_NAME_MAX);
    if (memchr(p, '\0', len))
        return sg_error_set(err, SG_EINVAL, "igor Docker event: a NUL character in the %s", what);
    *out = sg_xstrndup(p, len);
    return 0;
}

/* Igor's Docker monitor: details.type "docker" (Echo compares it without
 * case) and content {account, registry, repository, tag, digest}
 * (DOMAIN.md section 3). Echo triggers on account, repository and a
 * non-empty tag (DockerEventHandler): an event without all three starts
 * nothing and passes through, as anything else Echo takes. The digest is
 * null when Igor could not read the manifest. */
static int parse_docker(const value *fv, sg_event *out, sg_error *err, bool *matched)
{
    if (!is_str_nocase(&fv[F_DETAILS_TYPE], "docker") || fv[F_CONTENT].type != V_OBJECT)
        return 0;
    *matched = true;
    size_t len;
    if (!str_of(&fv[F_TAG], &len) || !len || !str_of(&fv[F_ACCOUNT], &len) || !len ||
        !str_of(&fv[F_REPOSITORY], &len) || !len)
        return 0;
    int rc = docker_name(&fv[F_ACCOUNT], "account", false, &out->source, err);
    if (rc == 0)
        rc = docker_name(&fv[F_REPOSITORY], "repository", false, &out->job, err);
    if (rc == 0)
        rc = docker_name(&fv[F_TAG], "tag", false, &out->tag, err);
    if (rc == 0)
        rc = docker_name(&fv[F_DIGEST], "digest", true, &out->digest, err);
    if (rc == 0)
        rc = docker_name(&fv[F_REGISTRY], "registry", true, &out->registry, err);
    if (rc)
        return rc;
    out->type = SG_EVENT_DOCKER;
    out->shape = "igor-docker";
    return 0;
}

/* "job/a/job/b/" -> "a/b"; NULL if url is not a job URL of that form. */
static char *full_name(const char *url, size_t len)
{
    if (!url || len < 4 || strncmp(url, "job/", 4))
        return NULL;
    sg_buf b = {0};
    const char *p = url, *end = url + len;
    while (end - p >= 4 && !strncmp(p, "job/", 4)) {
        p += 4;
        const char *slash = memchr(p, '/', (size_t)(end - p));
        size_t n = slash ? (size_t)(slash - p) : (size_t)(end - p);
        if (n == 0)
            break;
        if (b.len)
            sg_buf_append(&b, "/", 1);
        sg_buf_append(&b, p, n);
        p += n;
        if (p < end && *p == '/')
            p++;
    }
    return b.p;
}

/* Jenkins Notification plugin: one build sends QUEUED, STARTED, COMPLETED and
 * FINALIZED; only the last two are a completed build (DOMAIN.md section 3). */
static int parse_notification(const value *fv, const sg_event_config *cfg, sg_event *out,
                              sg_error *err, bool *matched)
{
    const value *phase = &fv[F_BUILD_PHASE], *name = &fv[F_NAME];
    if (phase->type != V_STRING || name->type != V_STRING)
        return 0;
    *matched = true;
    if (!is_str(phase, "COMPLETED") && !is_str(phase, "FINALIZED"))
        return 0;
    /* "name" is the job's short name; Igor knows a folder job by its full
     * name, which the job URL spells as job/<a>/job/<b>/ */
    size_t ulen;
    const char *url = str_of(&fv[F_URL], &ulen);
    char *full = full_name(url, ulen);
    const char *source = cfg && cfg->notification_source ? cfg->notification_source : "jenkins";
    int rc =
        fill(out, "jenkins-notification", source, strlen(source), full ? full : name->s,
             full ? strlen(full) : name->len, &fv[F_BUILD_NUMBER], &fv[F_BUILD_TIMESTAMP], err);
    free(full);
    return rc;
}

static int parse_generic(json_t *root, const sg_event_config *cfg, sg_event *out, sg_error *err,
                         bool *matched)
{
    const sg_event_pointers *p = &cfg->generic;
    if (!p->source || !p->job || !p->number)
        return 0; /* an incomplete configuration selects nothing */
    json_t *source = resolve(root, p->source), *job = resolve(root, p->job);
    json_t *number = resolve(root, p->number);
    if (!json_is_string(source) || !json_is_string(job) || !number)
        return 0;
    *matched = true;
    value n, ts;
    from_json(number, &n);
    from_json(p->timestamp ? resolve(root, p->timestamp) : NULL, &ts);
    return fill(out, "generic", json_string_value(source), json_string_length(source),
                json_string_value(job), json_string_length(job), &n, &ts, err);
}

static int parse_fields(const value *fv, json_t *root, const sg_event_config *cfg, sg_event *out,
                        sg_error *err)
{
    bool matched = false;
    int rc = parse_igor(fv, out, err, &matched);
    if (rc == 0 && !matched)
        rc = parse_docker(fv, out, err, &matched);
    if (rc == 0 && !matched)
        rc = parse_notification(fv, cfg, out, err, &matched);
    if (rc == 0 && !matched && root && cfg && cfg->generic.source)
        rc = parse_generic(root, cfg, out, err, &matched);
    return rc;
}

static int parse(const char *body, size_t len, bool build_path, const sg_event_config *cfg,
                 bool scan_first, sg_event *out, sg_error *err)
{
    memset(out, 0, sizeof *out);
    out->shape = "other";
    value fv[N_FIELDS];
    int rc;
    /* generic events resolve their pointers in jansson's tree */
    if (scan_first && !(cfg && cfg->generic.source) && fields_of_scan(body, len, fv) == 0) {
        rc = parse_fields(fv, NULL, cfg, out, err);
    } else {
        json_error_t jerr;
        json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
        if (!root) {
            if (!build_path)
                return 0;
            return sg_error_set(err, SG_EINVAL, "invalid JSON at line %d column %d: %s", jerr.line,
                                jerr.column, jerr.text);
        }
        fields_of_tree(root, fv);
        rc = parse_fields(fv, root, cfg, out, err);
        json_decref(root);
    }
    if (rc) {
        sg_event_close(out);
        out->shape = "other";
    }
    return rc;
}

int sg_event_parse(const char *body, size_t len, bool build_path, const sg_event_config *cfg,
                   sg_event *out, sg_error *err)
{
    return parse(body, len, build_path, cfg, true, out, err);
}

int sg_event_parse_tree(const char *body, size_t len, bool build_path, const sg_event_config *cfg,
                        sg_event *out, sg_error *err)
{
    return parse(body, len, build_path, cfg, false, out, err);
}
