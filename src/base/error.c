/* The error vocabulary shared by all modules (see error.h). */
#include "stormguard/base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *sg_strerror(int code)
{
    switch (code) {
    case SG_OK:
        return "ok";
    case SG_EUSAGE:
        return "usage or configuration error";
    case SG_EINVAL:
        return "invalid input";
    case SG_EIO:
        return "I/O error";
    case SG_EREDIS:
        return "redis error";
    case SG_ESTORE:
        return "store error";
    case SG_ENOTFOUND:
        return "not found";
    case SG_EREFUSED:
        return "refused by a safety rule";
    case SG_EVERSION:
        return "incompatible version";
    case SG_EBUSY:
        return "busy or stopping: try again";
    default:
        return "unknown error";
    }
}

int sg_error_set(sg_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int sg_error_prefix(sg_error *err, const char *fmt, ...)
{
    if (!err)
        return SG_EIO;
    char prefix[SG_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* prefix + ": " + the old message, cut to fit */
    char old[SG_ERRMSG_MAX];
    memcpy(old, err->msg, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof err->msg - 3)
        n = sizeof err->msg - 3;
    memcpy(err->msg, prefix, n);
    memcpy(err->msg + n, ": ", 2);
    size_t room = sizeof err->msg - n - 3, m = strlen(old);
    if (m > room)
        m = room;
    memcpy(err->msg + n + 2, old, m);
    err->msg[n + 2 + m] = '\0';
    return err->code;
}

int sg_error_exit_code(int code)
{
    switch (code) {
    case SG_OK:
        return 0;
    case SG_EUSAGE:
        return 2;
    case SG_EREFUSED:
        return 3;
    default:
        return 1;
    }
}
