/* Small helpers every module uses: allocation that never returns NULL,
 * Redis-compatible glob matching, durations and checked integers (time is
 * clock.h's). */
#ifndef STORMGUARD_UTIL_H
#define STORMGUARD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Allocation wrappers: abort with a message on exhaustion, never NULL. */
void *sg_xmalloc(size_t n);
void *sg_xcalloc(size_t count, size_t n);
void *sg_xrealloc(void *p, size_t n);
char *sg_xstrdup(const char *s);
char *sg_xstrndup(const char *s, size_t n);
char *sg_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Validates the syntax of a JSON pointer (RFC 6901) ("" or "/a/b~1c"). */
bool sg_json_pointer_valid(const char *pointer);

/* A copy of url fit for a message: a user and password ("scheme://u:p@host")
 * become "***", a query string "?***". Caller frees. */
char *sg_url_redacted(const char *url);

/* Redis glob semantics (as SCAN MATCH): * ? [abc] [^a-z] and \ escapes,
 * binary safe on the string side. */
bool sg_glob_match(const char *pattern, const char *s, size_t len);

/* True if pattern has no glob metacharacters, so it names a single key. */
bool sg_glob_is_literal(const char *pattern);

/* Parses a base-10 integer in [min, max] with no trailing text. */
int sg_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out);

/* Parses a duration: "90", "90s", "15m", "2h", "7d" into seconds. */
int sg_parse_duration(const char *s, int64_t *out_seconds);
/* The same in milliseconds, "250ms" accepted too. */
int sg_parse_duration_ms(const char *s, int64_t *out_ms);

/* Formats epoch ms as ISO 8601 UTC ("2026-11-22T04:00:00.123Z"). */
void sg_format_time(int64_t epoch_ms, char *buf, size_t size);

/* A growable text buffer. */
/* Bytes borrowed from somewhere else (a key being parsed, a payload): not
 * NUL-terminated. */
typedef struct sg_slice {
    const char *p;
    size_t len;
} sg_slice;

typedef struct sg_buf {
    char *p;
    size_t len, cap;
} sg_buf;

void sg_buf_append(sg_buf *b, const void *data, size_t n);
void sg_buf_printf(sg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sg_buf_free(sg_buf *b);

/* A growable list of owned strings. */
typedef struct sg_strlist {
    char **items;
    size_t len, cap;
} sg_strlist;

void sg_strlist_push(sg_strlist *l, const char *s);
void sg_strlist_clear(sg_strlist *l);
/* Replaces l's contents with a copy of src. */
void sg_strlist_copy(sg_strlist *l, const sg_strlist *src);
/* True if any pattern in l matches s. */
bool sg_strlist_match(const sg_strlist *patterns, const char *s, size_t len);

#endif
