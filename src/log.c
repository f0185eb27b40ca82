/* The daemon's log (log.h). */
#include "stormguard/log.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/util.h"

static struct {
    FILE *out; /* NULL: stderr */
    char *path;
    bool json;
} lg;

int sg_log_open(const char *format, const char *file, sg_error *err)
{
    lg.json = format && !strcmp(format, "json");
    if (file) {
        FILE *f = fopen(file, "a");
        if (!f)
            return sg_error_set(err, SG_EUSAGE, "opening log file %s: %s", file, strerror(errno));
        setvbuf(f, NULL, _IOLBF, 0);
        lg.out = f;
        lg.path = sg_xstrdup(file);
    }
    return 0;
}

void sg_log_reopen(void)
{
    if (!lg.path)
        return;
    FILE *f = fopen(lg.path, "a");
    if (!f) {
        sg_log(SG_LOG_ERROR, "log", "reopening %s: %s; still writing to the old file", lg.path,
               strerror(errno));
        return;
    }
    setvbuf(f, NULL, _IOLBF, 0);
    fclose(lg.out);
    lg.out = f;
    sg_log(SG_LOG_INFO, "log", "reopened %s", lg.path);
}

void sg_log_close(void)
{
    if (lg.out)
        fclose(lg.out);
    free(lg.path);
    memset(&lg, 0, sizeof lg);
}

void sg_log(sg_log_level level, const char *what, const char *fmt, ...)
{
    static const char *const names[] = {"info", "warn", "error"};
    char msg[2048], when[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sg_format_time(sg_now_ms(), when, sizeof when);
    FILE *out = lg.out ? lg.out : stderr;
    if (lg.json) {
        json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "ts", when, "level", names[level], "what", what,
                              "msg", msg);
        char *line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        fprintf(out, "%s\n", line ? line : msg);
        free(line);
        json_decref(o);
    } else {
        fprintf(out, "%s %s %s: %s\n", when, names[level], what, msg);
    }
    fflush(out);
}
