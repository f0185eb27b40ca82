/* One error vocabulary for every module: functions return 0 or a negative
 * SG_E* code, and fill an sg_error with a message that names the action, the
 * object and the reason ("opening store /var/lib/sg.db: disk I/O error"). */
#ifndef STORMGUARD_ERROR_H
#define STORMGUARD_ERROR_H

enum {
    SG_OK = 0,
    SG_EUSAGE = -1, /* bad command line or configuration */
    SG_EINVAL = -2, /* bad input data */
    SG_EIO = -3,    /* a system call or file failed */
    SG_EREDIS = -4, /* redis unreachable or answered with an error */
    SG_ESTORE = -5, /* the SQLite store failed */
    SG_ENOTFOUND = -6,
    SG_EREFUSED = -7, /* a safety rule refused the operation */
    SG_EVERSION = -8, /* incompatible versions (schema, RDB payload) */
    SG_EBUSY = -9,    /* not now: the daemon is stopping or busy; try again */
};

#define SG_ERRMSG_MAX 1024

typedef struct sg_error {
    int code;
    char msg[SG_ERRMSG_MAX];
} sg_error;

/* Names an SG_E* code. */
const char *sg_strerror(int code);

/* Records code and a printf-style message in err (err may be NULL) and
 * returns code, so callers can write `return sg_error_set(err, ...)`. */
int sg_error_set(sg_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the message already in err with more context ("snapshot: ..."). */
int sg_error_prefix(sg_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The process exit code for an error: 2 usage/config, 3 refused, else 1. */
int sg_error_exit_code(int code);

#endif
