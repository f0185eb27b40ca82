/* The daemon's log: one line per notable action, as text
 * ("2026-11-22T04:00:00.123Z warn forward: ...") or as JSON objects, on
 * standard error or appended to a file that SIGHUP reopens (for logrotate).
 * Process-wide, like syslog. */
#ifndef STORMGUARD_LOG_H
#define STORMGUARD_LOG_H

#include "stormguard/error.h"

typedef enum sg_log_level { SG_LOG_INFO, SG_LOG_WARN, SG_LOG_ERROR } sg_log_level;

/* format: "text" or "json"; file: NULL for standard error. */
int sg_log_open(const char *format, const char *file, sg_error *err);
/* Reopens the file (after rotation); keeps the old one if that fails. */
void sg_log_reopen(void);
void sg_log_close(void);

/* Logs "what: message". what names the component or event ("gate", "forward"). */
void sg_log(sg_log_level level, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
