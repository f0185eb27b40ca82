/* Allocation, glob matching, clocks and number parsing used everywhere. */
#include "stormguard/base/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stormguard/base/error.h"

static void out_of_memory(size_t n)
{
    fprintf(stderr, "stormguard: out of memory allocating %zu bytes\n", n);
    abort();
}

void *sg_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        out_of_memory(n);
    return p;
}

void *sg_xcalloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (!p)
        out_of_memory(count * n);
    return p;
}

void *sg_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        out_of_memory(n);
    return q;
}

char *sg_xstrdup(const char *s)
{
    return sg_xstrndup(s, strlen(s));
}

char *sg_xstrndup(const char *s, size_t n)
{
    char *p = sg_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *sg_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        out_of_memory(0);
    char *p = sg_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

/* Matches one [...] class starting at p against c; *next is set past the
 * closing ']'. An unterminated class runs to the end of the pattern, as in
 * Redis. */
static bool match_class(const char *p, unsigned char c, const char **next)
{
    p++;
    bool negate = false, hit = false;
    if (*p == '^') {
        negate = true;
        p++;
    }
    while (*p && *p != ']') {
        if (*p == '\\' && p[1]) {
            p++;
            if ((unsigned char)*p == c)
                hit = true;
        } else if (p[1] == '-' && p[2] && p[2] != ']') {
            unsigned char lo = (unsigned char)p[0], hi = (unsigned char)p[2];
            if (lo > hi) {
                unsigned char t = lo;
                lo = hi;
                hi = t;
            }
            if (c >= lo && c <= hi)
                hit = true;
            p += 2;
        } else if ((unsigned char)*p == c) {
            hit = true;
        }
        p++;
    }
    *next = *p ? p + 1 : p;
    return negate ? !hit : hit;
}

/* Does the single-character token at p match c? *next is set past it. */
static bool match_one(const char *p, unsigned char c, const char **next)
{
    switch (*p) {
    case '?':
        *next = p + 1;
        return true;
    case '[':
        return match_class(p, c, next);
    case '\\':
        if (p[1])
            p++;
        /* fall through */
    default:
        *next = p + 1;
        return (unsigned char)*p == c;
    }
}

/* Iterative glob with backtracking to the last '*' only: since '*' matches
 * any run, an earlier star never needs revisiting, so matching is O(n*m)
 * whatever the pattern (a recursive matcher is exponential on "a*a*a*...b",
 * CVE-2022-36021). */
bool sg_glob_match(const char *pattern, const char *s, size_t len)
{
    const char *p = pattern, *star = NULL;
    size_t i = 0, star_i = 0;
    while (i < len) {
        const char *next;
        if (*p == '*') {
            while (*p == '*')
                p++;
            if (!*p)
                return true;
            star = p;
            star_i = i;
        } else if (*p && match_one(p, (unsigned char)s[i], &next)) {
            p = next;
            i++;
        } else if (star) {
            p = star;
            i = ++star_i;
        } else {
            return false;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

bool sg_glob_is_literal(const char *pattern)
{
    return strpbrk(pattern, "*?[\\") == NULL;
}

int sg_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || !((*s >= '0' && *s <= '9') || (*s == '-' && s[1] >= '0' && s[1] <= '9')))
        return SG_EINVAL; /* strtoll would skip spaces and accept '+' */
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < min || v > max)
        return SG_EINVAL;
    *out = v;
    return 0;
}

/* "90" or "90s", "15m", "2h", "7d", and with ms_ok "250ms": *out in units
 * of scale per second (1: seconds, 1000: milliseconds). */
static int parse_duration(const char *s, bool ms_ok, int64_t scale, int64_t *out)
{
    if (!s || !*s)
        return SG_EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0)
        return SG_EINVAL;
    int64_t unit;
    if (!strcmp(end, "") || !strcmp(end, "s"))
        unit = scale;
    else if (!strcmp(end, "m"))
        unit = 60 * scale;
    else if (!strcmp(end, "h"))
        unit = 3600 * scale;
    else if (!strcmp(end, "d"))
        unit = 86400 * scale;
    else if (ms_ok && !strcmp(end, "ms"))
        unit = 1;
    else
        return SG_EINVAL;
    if (v > INT64_MAX / unit)
        return SG_EINVAL;
    *out = v * unit;
    return 0;
}

int sg_parse_duration(const char *s, int64_t *out_seconds)
{
    return parse_duration(s, false, 1, out_seconds);
}

int sg_parse_duration_ms(const char *s, int64_t *out_ms)
{
    return parse_duration(s, true, 1000, out_ms);
}

void sg_format_time(int64_t epoch_ms, char *buf, size_t size)
{
    int64_t secs = epoch_ms / 1000, ms = epoch_ms % 1000;
    if (ms < 0) { /* floor division for times before 1970 */
        secs--;
        ms += 1000;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%03dZ", base, (int)ms);
}

void sg_strlist_push(sg_strlist *l, const char *s)
{
    if (l->len == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4;
        l->items = sg_xrealloc(l->items, l->cap * sizeof *l->items);
    }
    l->items[l->len++] = sg_xstrdup(s);
}

void sg_strlist_clear(sg_strlist *l)
{
    for (size_t i = 0; i < l->len; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->len = l->cap = 0;
}

void sg_strlist_copy(sg_strlist *l, const sg_strlist *src)
{
    sg_strlist_clear(l);
    for (size_t i = 0; i < src->len; i++)
        sg_strlist_push(l, src->items[i]);
}

bool sg_strlist_match(const sg_strlist *patterns, const char *s, size_t len)
{
    for (size_t i = 0; i < patterns->len; i++)
        if (sg_glob_match(patterns->items[i], s, len))
            return true;
    return false;
}

void sg_buf_append(sg_buf *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = sg_xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void sg_buf_printf(sg_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    if (b->len + (size_t)n + 1 > b->cap) {
        b->cap = (b->len + (size_t)n + 1) * 2;
        b->p = sg_xrealloc(b->p, b->cap);
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sg_buf_free(sg_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

char *sg_url_redacted(const char *url)
{
    const char *scheme = strstr(url, "://");
    size_t head = scheme ? (size_t)(scheme - url) + 3 : 0; /* "http://" */
    const char *rest = url + head;
    size_t authority = strcspn(rest, "/?#"), user = 0;
    for (size_t i = 0; i < authority; i++)
        if (rest[i] == '@')
            user = i + 1;                    /* up to and with the last '@' */
    size_t tail = strcspn(rest + user, "?"); /* from the host to the query */
    bool query = rest[user + tail] == '?';
    return sg_xasprintf("%.*s%s%.*s%s", (int)head, url, user ? "***@" : "", (int)tail, rest + user,
                        query ? "?***" : "");
}

bool sg_json_pointer_valid(const char *p)
{
    if (!p)
        return false;
    if (*p && *p != '/')
        return false;
    for (; *p; p++)
        if (*p == '~' && p[1] != '0' && p[1] != '1')
            return false;
    return true;
}
