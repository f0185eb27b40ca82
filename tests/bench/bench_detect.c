/* Times `stormguard run` from a FLUSHALL to guard mode, for
 * tests/bench/bench_detect.sh:
 *
 *   bench_detect seed --redis-port P --jobs N
 *   bench_detect run --redis-port P --admin HOST:PORT --log FILE --rounds N
 *                    [--jobs N] [--jitter-ms MS] [--no-tracking] [--samples FILE]
 *
 * seed writes N Igor Jenkins jobs (a cursor hash and a posted-marker hash
 * each, as seed_igor in tests/lib.sh) with pipelined HSETs.
 *
 * run drives a daemon that is already running with --log-format json
 * --log-file FILE. Per round: re-seed the jobs, turn guard mode off (DELETE
 * /v1/guard) and wait until the daemon has re-armed (/v1/status: mode normal,
 * redis link up, armed = the canary is back, tracking as expected, the wipe
 * count as expected), wait a random 0..jitter ms, then take the client time
 * t0 and send FLUSHALL without waiting for its reply. The driver then blocks
 * in poll() on inotify (the log file) and the Redis socket; the daemon writes
 * "guard mode on" (on_mode_change in guard.c) in the same loop callback in
 * which it turns guard mode on, and flushes each line, so inotify wakes the
 * driver at once. Per round it records, from t0:
 *
 *   seen   when the driver read the "guard mode on" line (CLOCK_REALTIME, us):
 *          an upper bound of the detection time, by the write and the wakeup
 *   logged the line's own "ts" plus 1 ms: the daemon's clock truncates to
 *          the ms, so the moment it turned guard mode on is before ts + 1 ms;
 *          a second upper bound, independent of the wakeup
 *   reply  when the FLUSHALL reply arrived (the server's flush plus a round
 *          trip: the floor any watcher has to live with)
 *
 * and prints one line per measure: "NAME n=.. median=.. p90=.. p99=.. max=.."
 * in ms (nearest-rank percentiles). --samples writes every round's figures.
 * The admin bearer token, if any, comes from SG_ADMIN_TOKEN. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#define STATUS_WAIT_MS 15000
#define DETECT_WAIT_MS 5000
#define LINE_MAX_BYTES 65536

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_detect: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* ---- Redis ---- */

static redisContext *redis_open(int port)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err)
        die("cannot reach redis 127.0.0.1:%d: %s", port, c ? c->errstr : "out of memory");
    redisSetTimeout(c, tv);
    return c;
}

/* N jobs team-a/service-1..N on jenkins-prod, as seed_igor in tests/lib.sh. */
static void seed(redisContext *c, int jobs)
{
    for (int i = 1; i <= jobs; i++) {
        char job[64], upper[64], base[160], markers[200], cursor[32];
        snprintf(job, sizeof job, "team-a/service-%d", i);
        snprintf(upper, sizeof upper, "TEAM-A/SERVICE-%d", i);
        snprintf(base, sizeof base, "igor:jenkins-prod:%s:%s", upper, job);
        long long at = 1526030000000LL + (long long)i * 1000;
        snprintf(cursor, sizeof cursor, "%lld", at);
        snprintf(markers, sizeof markers, "%s:lastPollCycleTimestamp:%lld", base, at);
        redisAppendCommand(c, "HSET %s lastPollCycleTimestamp %s", base, cursor);
        redisAppendCommand(c, "HSET %s %d POSTED %d POSTED %d POSTED", markers, 100 + i, 101 + i,
                           102 + i);
    }
    for (int i = 0; i < 2 * jobs; i++) {
        redisReply *r;
        if (redisGetReply(c, (void **)&r) != REDIS_OK)
            die("seeding redis: %s", c->errstr);
        if (r->type == REDIS_REPLY_ERROR)
            die("seeding redis: %s", r->str);
        freeReplyObject(r);
    }
}

/* ---- the admin API ---- */

typedef struct admin {
    CURL *curl; /* one handle: one keep-alive connection */
    struct curl_slist *headers;
    char base[128];
    char *body;
    size_t len;
} admin;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    admin *a = ud;
    a->body = realloc(a->body, a->len + size * n + 1);
    if (!a->body)
        die("out of memory");
    memcpy(a->body + a->len, p, size * n);
    a->len += size * n;
    a->body[a->len] = 0;
    return size * n;
}

static void admin_open(admin *a, const char *addr)
{
    memset(a, 0, sizeof *a);
    snprintf(a->base, sizeof a->base, "http://%s", addr);
    a->curl = curl_easy_init();
    if (!a->curl)
        die("curl_easy_init failed");
    const char *token = getenv("SG_ADMIN_TOKEN");
    if (token && *token) {
        char h[512];
        snprintf(h, sizeof h, "Authorization: Bearer %s", token);
        a->headers = curl_slist_append(a->headers, h);
    }
    a->headers = curl_slist_append(a->headers, "Content-Type: application/json");
    curl_easy_setopt(a->curl, CURLOPT_HTTPHEADER, a->headers);
    curl_easy_setopt(a->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(a->curl, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(a->curl, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(a->curl, CURLOPT_NOSIGNAL, 1L);
}

static void admin_close(admin *a)
{
    curl_slist_free_all(a->headers);
    curl_easy_cleanup(a->curl);
    free(a->body);
}

/* METHOD PATH [BODY]: the parsed JSON reply (caller decrefs); dies unless 200. */
static json_t *admin_call(admin *a, const char *method, const char *path, const char *body)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", a->base, path);
    a->len = 0;
    curl_easy_setopt(a->curl, CURLOPT_URL, url);
    curl_easy_setopt(a->curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(a->curl, CURLOPT_POSTFIELDS, body);
    if (!body)
        curl_easy_setopt(a->curl, CURLOPT_HTTPGET, 1L);
    CURLcode rc = curl_easy_perform(a->curl);
    if (rc != CURLE_OK)
        die("%s %s: %s", method, url, curl_easy_strerror(rc));
    long status = 0;
    curl_easy_getinfo(a->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200)
        die("%s %s: HTTP %ld: %s", method, url, status, a->body ? a->body : "");
    json_error_t jerr;
    json_t *doc = json_loadb(a->body, a->len, 0, &jerr);
    if (!doc)
        die("%s %s: not JSON: %s", method, url, jerr.text);
    return doc;
}

/* ---- the daemon's log ---- */

typedef struct logtail {
    int fd, ino;
    char buf[LINE_MAX_BYTES];
    size_t have;
    int64_t read_at; /* when the bytes of the last read() came */
} logtail;

static void log_open(logtail *t, const char *path)
{
    memset(t, 0, sizeof *t);
    t->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (t->ino < 0)
        die("inotify_init1: %s", strerror(errno));
    /* the watch first: a write after our last read() then always wakes us */
    if (inotify_add_watch(t->ino, path, IN_MODIFY) < 0)
        die("watching %s: %s", path, strerror(errno));
    t->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (t->fd < 0)
        die("opening %s: %s", path, strerror(errno));
}

/* The "ts" of a log line, "2026-01-02T03:04:05.678Z", in epoch ms; -1 if bad. */
static int64_t parse_ts(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int ms = 0;
    if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                     &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

typedef struct guard_line {
    bool found;
    int64_t seen_us, logged_ms;
    char msg[512];
} guard_line;

/* Looks at one complete line; true if it is the daemon turning guard mode on. */
static bool take_line(logtail *t, const char *line, guard_line *out)
{
    json_error_t jerr;
    json_t *o = json_loads(line, 0, &jerr);
    if (!o)
        return false; /* not ours to judge: the daemon writes JSON lines only */
    const char *what = json_string_value(json_object_get(o, "what"));
    const char *msg = json_string_value(json_object_get(o, "msg"));
    bool hit = what && msg && !strcmp(what, "guard") && !strncmp(msg, "guard mode on", 13);
    if (hit && out && !out->found) {
        out->found = true;
        out->seen_us = t->read_at;
        out->logged_ms = parse_ts(json_string_value(json_object_get(o, "ts")));
        snprintf(out->msg, sizeof out->msg, "%s", msg);
    }
    json_decref(o);
    return hit;
}

/* Reads what the log has now; returns the number of "guard mode on" lines. */
static int log_drain(logtail *t, guard_line *out)
{
    int hits = 0;
    for (;;) {
        ssize_t n = read(t->fd, t->buf + t->have, sizeof t->buf - 1 - t->have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("reading the daemon's log: %s", strerror(errno));
        if (n == 0)
            return hits;
        t->read_at = now_us();
        t->have += (size_t)n;
        t->buf[t->have] = 0;
        char *start = t->buf, *nl;
        while ((nl = strchr(start, '\n'))) {
            *nl = 0;
            hits += take_line(t, start, out);
            start = nl + 1;
        }
        t->have -= (size_t)(start - t->buf);
        memmove(t->buf, start, t->have);
        if (t->have == sizeof t->buf - 1)
            t->have = 0; /* an absurd line: skip it */
    }
}

static void inotify_clear(logtail *t)
{
    char ev[4096];
    while (read(t->ino, ev, sizeof ev) > 0)
        ;
}

/* ---- one round ---- */

typedef struct sample {
    double seen_ms, logged_ms, reply_ms;
} sample;

/* Sends FLUSHALL and waits, without a polling delay, for both its reply and
 * the daemon's "guard mode on". */
static sample flush_and_wait(redisContext *c, logtail *t, int wait_ms)
{
    guard_line g = {0};
    log_drain(t, NULL); /* nothing of earlier rounds counts */
    inotify_clear(t);
    int64_t t0 = now_us(), reply_at = -1;
    if (redisAppendCommand(c, "FLUSHALL") != REDIS_OK)
        die("queueing FLUSHALL: %s", c->errstr);
    int done = 0;
    while (!done)
        if (redisBufferWrite(c, &done) != REDIS_OK)
            die("sending FLUSHALL: %s", c->errstr);
    int64_t deadline = t0 + (int64_t)wait_ms * 1000;
    while (!g.found || reply_at < 0) {
        int64_t left = (deadline - now_us()) / 1000;
        if (left <= 0)
            die("no %s within %d ms of FLUSHALL", g.found ? "FLUSHALL reply" : "guard mode",
                wait_ms);
        struct pollfd p[2] = {{.fd = t->ino, .events = POLLIN}, {.fd = c->fd, .events = POLLIN}};
        int nfds = reply_at < 0 ? 2 : 1;
        int rc = poll(p, (nfds_t)nfds, (int)left);
        if (rc < 0 && errno != EINTR)
            die("poll: %s", strerror(errno));
        if (rc <= 0)
            continue;
        if (p[0].revents) {
            inotify_clear(t);
            log_drain(t, &g);
        }
        if (nfds == 2 && p[1].revents) {
            int64_t at = now_us();
            if (redisBufferRead(c) != REDIS_OK)
                die("reading the FLUSHALL reply: %s", c->errstr);
            redisReply *r = NULL;
            if (redisGetReplyFromReader(c, (void **)&r) != REDIS_OK)
                die("reading the FLUSHALL reply: %s", c->errstr);
            if (r) {
                if (r->type != REDIS_REPLY_STATUS || strcmp(r->str, "OK"))
                    die("FLUSHALL: unexpected reply %s", r->str ? r->str : "");
                freeReplyObject(r);
                reply_at = at;
            }
        }
    }
    if (!strstr(g.msg, "wipe (flush)"))
        die("guard mode came on for another reason: %s", g.msg);
    if (g.logged_ms < 0)
        die("the guard line has no readable ts");
    return (sample){.seen_ms = (double)(g.seen_us - t0) / 1000,
                    .logged_ms = (double)(g.logged_ms + 1) - (double)t0 / 1000,
                    .reply_ms = (double)(reply_at - t0) / 1000};
}

/* Waits until the daemon is back in normal mode and its watcher re-armed
 * after `wipes` wipes: link up, canary back, tracking as expected. */
static void wait_armed(admin *a, logtail *t, bool tracking, long long wipes)
{
    int64_t deadline = now_us() + (int64_t)STATUS_WAIT_MS * 1000;
    char last[256] = "";
    for (;;) {
        log_drain(t, NULL); /* the round's flush will find the log read to its end */
        json_t *st = admin_call(a, "GET", "/v1/status", NULL);
        json_t *r = json_object_get(st, "redis");
        const char *mode = json_string_value(json_object_get(st, "mode"));
        const char *link = json_string_value(json_object_get(r, "link"));
        long long seen = (long long)json_integer_value(json_object_get(r, "wipes"));
        bool armed = json_is_true(json_object_get(r, "armed"));
        bool trk = json_is_true(json_object_get(r, "tracking"));
        snprintf(last, sizeof last, "mode %s, link %s, armed %d, tracking %d, wipes %lld",
                 mode ? mode : "?", link ? link : "?", armed, trk, seen);
        bool ready = mode && !strcmp(mode, "normal") && link && !strcmp(link, "up") && armed &&
                     trk == tracking && seen == wipes;
        json_decref(st);
        if (seen > wipes)
            die("the daemon counted more wipes than flushes: %s (expected %lld)", last, wipes);
        if (ready)
            return;
        if (now_us() > deadline)
            die("the daemon did not re-arm within %d ms: %s", STATUS_WAIT_MS, last);
        sleep_ms(2);
    }
}

/* ---- statistics ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v. */
static double pct(const double *v, int n, double p)
{
    int k = (int)ceil(p / 100 * n);
    return v[k < 1 ? 0 : k - 1];
}

static void print_stats(const char *name, const sample *rs, size_t off, int n)
{
    double *v = malloc(sizeof *v * (size_t)n);
    if (!v)
        die("out of memory");
    for (int i = 0; i < n; i++)
        v[i] = *(const double *)((const char *)&rs[i] + off);
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    printf("%s n=%d min=%.3f median=%.3f p90=%.3f p99=%.3f max=%.3f\n", name, n, v[0],
           pct(v, n, 50), pct(v, n, 90), pct(v, n, 99), v[n - 1]);
    free(v);
}

/* ---- main ---- */

static void usage(void)
{
    fprintf(stderr, "usage: bench_detect seed --redis-port P --jobs N\n"
                    "       bench_detect run --redis-port P --admin HOST:PORT --log FILE "
                    "--rounds N [--jobs N] [--jitter-ms MS] [--no-tracking] [--samples FILE]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "seed") && strcmp(argv[1], "run")))
        usage();
    bool run = !strcmp(argv[1], "run");
    int port = 0, jobs = 0, rounds = 0, jitter_ms = 0;
    bool tracking = true;
    const char *addr = NULL, *log_path = NULL, *samples = NULL;
    static const struct option opts[] = {{"redis-port", required_argument, NULL, 'p'},
                                         {"jobs", required_argument, NULL, 'j'},
                                         {"admin", required_argument, NULL, 'a'},
                                         {"log", required_argument, NULL, 'l'},
                                         {"rounds", required_argument, NULL, 'n'},
                                         {"jitter-ms", required_argument, NULL, 'J'},
                                         {"no-tracking", no_argument, NULL, 'T'},
                                         {"samples", required_argument, NULL, 's'},
                                         {NULL, 0, NULL, 0}};
    optind = 2;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'p':
            port = atoi(optarg);
            break;
        case 'j':
            jobs = atoi(optarg);
            break;
        case 'a':
            addr = optarg;
            break;
        case 'l':
            log_path = optarg;
            break;
        case 'n':
            rounds = atoi(optarg);
            break;
        case 'J':
            jitter_ms = atoi(optarg);
            break;
        case 'T':
            tracking = false;
            break;
        case 's':
            samples = optarg;
            break;
        default:
            usage();
        }
    }
    if (optind != argc || port <= 0 || jobs < 0 || jitter_ms < 0 ||
        (run && (!addr || !log_path || rounds < 1)) || (!run && jobs < 1))
        usage();

    redisContext *c = redis_open(port);
    if (!run) {
        seed(c, jobs);
        redisFree(c);
        return 0;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    admin a;
    admin_open(&a, addr);
    logtail t;
    log_open(&t, log_path);
    sample *rs = calloc((size_t)rounds, sizeof *rs);
    if (!rs)
        die("out of memory");
    srand48(1); /* the same jitter sequence every run */
    int wait_ms = DETECT_WAIT_MS + (tracking ? 0 : 3 * jitter_ms);
    for (int i = 0; i < rounds; i++) {
        if (jobs)
            seed(c, jobs);
        if (i > 0)
            json_decref(admin_call(&a, "DELETE", "/v1/guard",
                                   "{\"actor\":\"bench_detect\",\"reason\":\"next round\"}"));
        wait_armed(&a, &t, tracking, i);
        if (jitter_ms)
            sleep_ms((int)(drand48() * jitter_ms));
        rs[i] = flush_and_wait(c, &t, wait_ms);
    }
    json_decref(
        admin_call(&a, "DELETE", "/v1/guard", "{\"actor\":\"bench_detect\",\"reason\":\"done\"}"));
    wait_armed(&a, &t, tracking, rounds);

    if (samples) {
        FILE *f = fopen(samples, "w");
        if (!f)
            die("writing %s: %s", samples, strerror(errno));
        fprintf(f, "round seen_ms logged_ms reply_ms\n");
        for (int i = 0; i < rounds; i++)
            fprintf(f, "%d %.3f %.3f %.3f\n", i + 1, rs[i].seen_ms, rs[i].logged_ms,
                    rs[i].reply_ms);
        fclose(f);
    }
    print_stats("seen", rs, offsetof(sample, seen_ms), rounds);
    print_stats("logged", rs, offsetof(sample, logged_ms), rounds);
    print_stats("reply", rs, offsetof(sample, reply_ms), rounds);
    free(rs);
    admin_close(&a);
    curl_global_cleanup();
    close(t.fd);
    close(t.ino);
    redisFree(c);
    return 0;
}
