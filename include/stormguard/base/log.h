/* The daemon's log: one line per notable action, as text
 * ("2026-11-22T04:00:00.123Z warn forward: ...") or as JSON objects, on
 * standard error or appended to a file that SIGHUP reopens (for logrotate).
 * Process-wide, like syslog. */
#ifndef STORMGUARD_LOG_H
#define STORMGUARD_LOG_H

#include <stdint.h>

#include "stormguard/base/error.h"

typedef enum sg_log_level { SG_LOG_INFO, SG_LOG_WARN, SG_LOG_ERROR } sg_log_level;

/* format: "text" or "json"; file: NULL for standard error. */
int sg_log_open(const char *format, const char *file, sg_error *err);
/* Reopens the file (after rotation); keeps the old one if that fails. */
void sg_log_reopen(void);
void sg_log_close(void);

/* Logs "what: message". what names the component or event ("gate", "forward").
 * Any thread. */
void sg_log(sg_log_level level, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A line that may repeat many times a second (a failing checkpoint): each
 * cause (what and the message) is logged at most once per every_ms
 * (default 60 s); the next line of that cause says how many were left
 * out. Zero-initialise one per call site; one thread at a time uses it. */
#define SG_LOG_CAUSES 8
typedef struct sg_log_limit {
    int64_t every_ms;
    struct sg_log_cause {
        uint64_t hash;
        int64_t logged_at, suppressed;
    } causes[SG_LOG_CAUSES];
} sg_log_limit;

void sg_log_limited(sg_log_limit *l, sg_log_level level, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* From now on signal signum (SIGBUS: a mapped file whose storage failed)
 * ends the process with exit code 1 and one error line, "what: msg", in the
 * log's format, instead of a crash. Call after sg_log_open; msg is copied. */
void sg_log_fatal_signal(int signum, const char *what, const char *msg);

#endif
