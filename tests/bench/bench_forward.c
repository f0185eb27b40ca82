/* The forwarder's HTTP client, measured alone: N POSTs of an Igor build
 * event, C in flight at a time over kept-alive connections, to URL, on one
 * libuv loop, with either
 *   curl  libcurl's multi interface driven by uv_poll and uv_timer, reusing
 *         easy handles (what the forwarder used before), or
 *   h2o   h2o's HTTP/1.1 client with its socket pool (what it uses now).
 * Prints the requests per second and the CPU time per request of this
 * process (user + system, so the kernel's share of each send and receive).
 *
 * usage: bench_forward curl|h2o HOST PORT N C */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <h2o.h>
#include <h2o/http1client.h>
#include <h2o/socketpool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

static const char body[] =
    "{\"details\":{\"type\":\"build\",\"source\":\"igor\",\"created\":\"1427237764257\"},"
    "\"content\":{\"master\":\"jenkins-prod\",\"project\":{\"name\":\"team-1/service-1\","
    "\"lastBuild\":{\"number\":1,\"result\":\"SUCCESS\",\"building\":false,"
    "\"timestamp\":\"1700000000001\",\"duration\":93000,\"url\":\"https://jenkins/job/x/1/\"}}}}";

static uv_loop_t *loop;
static long total, started, finished;
static char host[64];
static int port;

static void failed(const char *what, const char *why)
{
    fprintf(stderr, "bench_forward: %s: %s\n", what, why);
    exit(1);
}

/* ---- libcurl multi on libuv ---- */

static CURLM *multi;
static uv_timer_t curl_timer;
static CURL *spare[1024];
static int nspare;
static char url[128];

typedef struct {
    uv_poll_t poll;
    curl_socket_t fd;
} sock_ctx;

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static void curl_start(void)
{
    CURL *e = nspare ? spare[--nspare] : curl_easy_init();
    char id[64];
    snprintf(id, sizeof id, "X-Stormguard-Event-Id: %ld", started++);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, id);
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_PRIVATE, h);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "stormguard");
    curl_multi_add_handle(multi, e);
}

static void curl_collect(void)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        long status = 0;
        struct curl_slist *h;
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&h);
        if (m->data.result != CURLE_OK || status != 200)
            failed("curl", m->data.result != CURLE_OK ? curl_easy_strerror(m->data.result)
                                                      : "status is not 200");
        CURL *e = m->easy_handle;
        curl_multi_remove_handle(multi, e);
        curl_easy_reset(e);
        spare[nspare++] = e;
        curl_slist_free_all(h);
        finished++;
        if (started < total)
            curl_start();
    }
}

static void on_curl_poll(uv_poll_t *p, int status, int events)
{
    sock_ctx *s = p->data;
    int flags = status < 0 ? CURL_CSELECT_ERR : 0, running;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(multi, s->fd, flags, &running);
    curl_collect();
}

static void on_poll_closed(uv_handle_t *h)
{
    free(h->data);
}

static int on_curl_socket(CURL *e, curl_socket_t fd, int action, void *ud, void *sockp)
{
    (void)e;
    (void)ud;
    sock_ctx *s = sockp;
    if (action == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, on_poll_closed);
            curl_multi_assign(multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        s->fd = fd;
        uv_poll_init_socket(loop, &s->poll, fd);
        s->poll.data = s;
        curl_multi_assign(multi, fd, s);
    }
    int events = 0;
    if (action == CURL_POLL_IN || action == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_curl_poll);
    return 0;
}

static void on_curl_timer(uv_timer_t *t)
{
    (void)t;
    int running;
    curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
    curl_collect();
}

static int on_curl_timer_change(CURLM *m, long ms, void *ud)
{
    (void)m;
    (void)ud;
    if (ms < 0)
        uv_timer_stop(&curl_timer);
    else
        uv_timer_start(&curl_timer, on_curl_timer, (uint64_t)ms, 0);
    return 0;
}

static void curl_run(int conc)
{
    snprintf(url, sizeof url, "http://%s:%d/", host, port);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_curl_timer_change);
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)conc);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)conc);
    uv_timer_init(loop, &curl_timer);
    for (int i = 0; i < conc && started < total; i++)
        curl_start();
    while (finished < total)
        uv_run(loop, UV_RUN_ONCE);
}

/* ---- h2o's HTTP/1.1 client ---- */

static h2o_socketpool_t pool;
static h2o_http1client_ctx_t ctx;
static h2o_timeout_t io_timeout;

typedef struct {
    char head[256];
    h2o_iovec_t req[2];
} h2o_request;

static void h2o_start(void);

static void h2o_done(h2o_http1client_t *c)
{
    free(c->data);
    finished++;
    if (started < total)
        h2o_start();
}

static int on_h2o_body(h2o_http1client_t *c, const char *err)
{
    h2o_buffer_consume(&c->sock->input, c->sock->input->size);
    if (err && err != h2o_http1client_error_is_eos)
        failed("h2o", err);
    if (err)
        h2o_done(c);
    return 0;
}

static h2o_http1client_body_cb on_h2o_head(h2o_http1client_t *c, const char *err, int minor,
                                           int status, h2o_iovec_t msg, h2o_header_t *headers,
                                           size_t n, int rlen)
{
    (void)minor;
    (void)msg;
    (void)headers;
    (void)n;
    (void)rlen;
    if (err && err != h2o_http1client_error_is_eos)
        failed("h2o", err);
    if (status != 200)
        failed("h2o", "status is not 200");
    if (err) {
        h2o_done(c);
        return NULL;
    }
    return on_h2o_body;
}

static h2o_http1client_head_cb on_h2o_connect(h2o_http1client_t *c, const char *err,
                                              h2o_iovec_t **bufs, size_t *nbufs, int *is_head)
{
    if (err)
        failed("h2o", err);
    h2o_request *r = c->data;
    *bufs = r->req;
    *nbufs = 2;
    *is_head = 0;
    return on_h2o_head;
}

static void h2o_start(void)
{
    h2o_request *r = calloc(1, sizeof *r);
    int n = snprintf(r->head, sizeof r->head,
                     "POST / HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: stormguard\r\n"
                     "Content-Type: application/json\r\nX-Stormguard-Event-Id: %ld\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     host, port, started++, strlen(body));
    r->req[0] = h2o_iovec_init(r->head, (size_t)n);
    r->req[1] = h2o_iovec_init(body, strlen(body));
    h2o_http1client_t *c;
    h2o_http1client_connect_with_pool(&c, r, &ctx, &pool, on_h2o_connect);
}

static void h2o_run(int conc)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
        failed(host, "not an IPv4 address");
    h2o_socketpool_init_by_address(&pool, (struct sockaddr *)&sin, sizeof sin, 0, (size_t)conc);
    h2o_socketpool_set_timeout(&pool, loop, 2000);
    h2o_timeout_init(loop, &io_timeout, 10000);
    ctx.loop = loop;
    ctx.io_timeout = &io_timeout;
    for (int i = 0; i < conc && started < total; i++)
        h2o_start();
    while (finished < total)
        uv_run(loop, UV_RUN_ONCE);
}

int main(int argc, char **argv)
{
    if (argc != 6 || (strcmp(argv[1], "curl") && strcmp(argv[1], "h2o"))) {
        fprintf(stderr, "usage: bench_forward curl|h2o HOST PORT N C\n");
        return 2;
    }
    snprintf(host, sizeof host, "%s", argv[2]);
    port = atoi(argv[3]);
    total = atol(argv[4]);
    int conc = atoi(argv[5]);
    loop = uv_default_loop();
    uint64_t t0 = uv_hrtime();
    if (!strcmp(argv[1], "curl"))
        curl_run(conc);
    else
        h2o_run(conc);
    double secs = (double)(uv_hrtime() - t0) / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    printf("%s %ld %.0f %.1f\n", argv[1], finished, (double)finished / secs,
           cpu * 1e6 / (double)finished);
    return 0;
}
