/* The daemon's log (log.h). Lines come from the loop thread and from the
 * journal's threads: one lock keeps them whole and the file steady while
 * SIGHUP reopens it. */
#include "stormguard/base/log.h"
#include "stormguard/base/clock.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stormguard/base/util.h"

static struct {
    FILE *out; /* NULL: stderr */
    char *path;
    bool json;
    volatile sig_atomic_t fd; /* out's descriptor, for the fatal-signal line */
} lg = {.fd = 2};

static pthread_mutex_t lg_lock = PTHREAD_MUTEX_INITIALIZER;

int sg_log_open(const char *format, const char *file, sg_error *err)
{
    lg.json = format && !strcmp(format, "json");
    if (file) {
        FILE *f = fopen(file, "a");
        if (!f)
            return sg_error_set(err, SG_EUSAGE, "opening log file %s: %s", file, strerror(errno));
        setvbuf(f, NULL, _IOLBF, 0);
        lg.out = f;
        lg.fd = fileno(f);
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
    pthread_mutex_lock(&lg_lock);
    FILE *old = lg.out;
    lg.out = f;
    lg.fd = fileno(f);
    pthread_mutex_unlock(&lg_lock);
    fclose(old);
    sg_log(SG_LOG_INFO, "log", "reopened %s", lg.path);
}

void sg_log_close(void)
{
    pthread_mutex_lock(&lg_lock);
    if (lg.out)
        fclose(lg.out);
    free(lg.path);
    lg.out = NULL;
    lg.path = NULL;
    lg.json = false;
    lg.fd = 2;
    pthread_mutex_unlock(&lg_lock);
}

static const char *const level_names[] = {"info", "warn", "error"};

static void emit(sg_log_level level, const char *what, const char *msg)
{
    char when[40];
    sg_format_time(sg_now_ms(), when, sizeof when);
    char *line = NULL;
    if (lg.json) {
        json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "ts", when, "level", level_names[level], "what",
                              what, "msg", msg);
        line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(o);
    }
    pthread_mutex_lock(&lg_lock);
    FILE *out = lg.out ? lg.out : stderr;
    if (line)
        fprintf(out, "%s\n", line);
    else
        fprintf(out, "%s %s %s: %s\n", when, level_names[level], what, msg);
    fflush(out);
    pthread_mutex_unlock(&lg_lock);
    free(line);
}

void sg_log(sg_log_level level, const char *what, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit(level, what, msg);
}

/* ---- rate-limited lines ---- */

static uint64_t fnv1a(const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *s = a; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
    for (const char *s = b; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h ? h : 1;
}

void sg_log_limited(sg_log_limit *l, sg_log_level level, const char *what, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int64_t now = sg_now_ms(), every = l->every_ms > 0 ? l->every_ms : 60000;
    uint64_t h = fnv1a(what, msg);
    struct sg_log_cause *c = NULL, *oldest = &l->causes[0];
    for (size_t i = 0; i < SG_LOG_CAUSES; i++) {
        if (l->causes[i].hash == h)
            c = &l->causes[i];
        if (l->causes[i].logged_at < oldest->logged_at)
            oldest = &l->causes[i];
    }
    if (c && now - c->logged_at < every) {
        c->suppressed++;
        return;
    }
    if (!c) {
        c = oldest; /* a new cause takes the slot logged longest ago */
        c->hash = h;
        c->suppressed = 0;
    }
    if (c->suppressed) {
        size_t n = strlen(msg);
        snprintf(msg + n, sizeof msg - n, " (and %lld more times in the last %llds)",
                 (long long)c->suppressed, (long long)((now - c->logged_at) / 1000));
    }
    c->logged_at = now;
    c->suppressed = 0;
    emit(level, what, msg);
}

/* ---- a fatal signal ---- */

static char fatal_line[1024]; /* the line up to its timestamp's end, then the rest */
static size_t fatal_split, fatal_len;

/* Writes v in decimal, zero-padded to width, at p; returns the end. */
static char *put_num(char *p, int64_t v, int width)
{
    char digits[24];
    int n = 0;
    do
        digits[n++] = (char)('0' + v % 10);
    while ((v /= 10) && n < 20);
    while (n < width)
        digits[n++] = '0';
    while (n)
        *p++ = digits[--n];
    return p;
}

/* The ISO 8601 time of now, as sg_format_time writes it, without a call
 * that is not async-signal-safe (gmtime_r may take locks): days to a civil
 * date by H. Hinnant's algorithm. */
static size_t signal_safe_time(char *buf)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t secs = ts.tv_sec, days = secs / 86400, rem = secs % 86400;
    days += 719468;
    int64_t era = days / 146097, doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = yoe + era * 400 + (m <= 2);
    char *p = buf;
    p = put_num(p, y, 4);
    *p++ = '-';
    p = put_num(p, m, 2);
    *p++ = '-';
    p = put_num(p, d, 2);
    *p++ = 'T';
    p = put_num(p, rem / 3600, 2);
    *p++ = ':';
    p = put_num(p, rem / 60 % 60, 2);
    *p++ = ':';
    p = put_num(p, rem % 60, 2);
    *p++ = '.';
    p = put_num(p, ts.tv_nsec / 1000000, 3);
    *p++ = 'Z';
    return (size_t)(p - buf);
}

static void on_fatal_signal(int signum)
{
    char buf[sizeof fatal_line + 64];
    char *p = buf;
    memcpy(p, fatal_line, fatal_split);
    p += fatal_split;
    p += signal_safe_time(p);
    memcpy(p, fatal_line + fatal_split, fatal_len - fatal_split);
    p += fatal_len - fatal_split;
    ssize_t w = write(lg.fd, buf, (size_t)(p - buf));
    (void)w;
    (void)signum;
    _exit(1);
}

void sg_log_fatal_signal(int signum, const char *what, const char *msg)
{
    char *line;
    if (lg.json) {
        /* {"ts":"<time>","level":"error","what":...,"msg":...} */
        json_t *o =
            json_pack("{s:s,s:s,s:s,s:s}", "ts", "", "level", "error", "what", what, "msg", msg);
        line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
    } else {
        line = sg_xasprintf(" error %s: %s", what, msg);
    }
    size_t n = strlen(line);
    const char *mark = lg.json ? strstr(line, "\"\"") : NULL;
    fatal_split = mark ? (size_t)(mark - line) + 1 : 0;
    fatal_len = n + 1 < sizeof fatal_line ? n + 1 : sizeof fatal_line - 1;
    memcpy(fatal_line, line, fatal_len - 1);
    fatal_line[fatal_len - 1] = '\n';
    free(line);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(signum, &sa, NULL);
}
