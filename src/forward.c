/* Delivery with libcurl multi on libuv (forward.h).
 *
 * Scheduling. Each ordered lane (a build's source+job) is a FIFO whose head
 * is the only item of the lane that may be in flight; pass-through items
 * (lane 0) get a lane of their own each ("solo"), so they never wait for one
 * another. A lane whose head is due sits on the ready list; one whose head
 * waits for a retry sits on the waiting list, and one uv_timer fires at the
 * earliest retry. pump() starts transfers from the ready list while fewer
 * than max_inflight are running.
 *
 * curl glue. CURLMOPT_SOCKETFUNCTION creates, updates and closes one uv_poll
 * per socket curl uses; CURLMOPT_TIMERFUNCTION arms a uv_timer; both call
 * curl_multi_socket_action and then collect finished transfers. */
#include "stormguard/forward.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "stormguard/hashset.h"
#include "stormguard/util.h"

typedef struct lane {
    uint64_t key;
    sg_fwd_item *head, *tail;
    bool busy;   /* its head is in flight */
    bool listed; /* on the ready or waiting list */
    bool solo;   /* a pass-through item's own lane, freed with the item */
    struct lane *next;
} lane;

typedef struct transfer {
    struct transfer *prev, *next; /* the forwarder's in-flight list */
    CURL *easy;
    struct curl_slist *headers;
    lane *lane;
    double started;
    char error[CURL_ERROR_SIZE];
} transfer;

typedef struct sockctx {
    uv_poll_t poll;
    curl_socket_t fd;
    struct sg_forward *f;
} sockctx;

struct sg_forward {
    uv_loop_t *loop;
    sg_forward_opts o;
    char *base;               /* downstream without a trailing '/' */
    CURLM *multi;
    uv_timer_t curl_timer;    /* curl's timeouts */
    uv_timer_t retry_timer;   /* the earliest waiting lane */
    sg_u64map lanes;          /* key -> lane * */
    lane *ready, *ready_tail;
    lane *waiting;
    transfer *transfers;      /* in flight */
    CURL **spare;             /* reset easy handles, reused (fewer allocations) */
    size_t nspare;
    size_t inflight, backlog;
    sg_fwd_result_fn fn;
    void *ud;
    bool stopping;
    int closing;              /* handles whose close callback is pending */
    void (*done)(void *ud);
    void *done_ud;
};

void sg_fwd_item_free(sg_fwd_item *it)
{
    if (!it)
        return;
    free(it->method);
    free(it->path);
    free(it->headers);
    free(it->body);
    free(it);
}

static void check_finished(sg_forward *f);
static void pump(sg_forward *f);
static void finish(sg_forward *f, struct transfer *t, CURLcode cc);
static void on_retry_timer(uv_timer_t *t);

/* ---- lanes ---- */

static void make_ready(sg_forward *f, lane *l)
{
    l->next = NULL;
    if (f->ready_tail)
        f->ready_tail->next = l;
    else
        f->ready = l;
    f->ready_tail = l;
    l->listed = true;
}

static void arm_retry_timer(sg_forward *f)
{
    int64_t earliest = 0;
    for (lane *l = f->waiting; l; l = l->next)
        if (!earliest || l->head->next_attempt_at < earliest)
            earliest = l->head->next_attempt_at;
    if (!earliest) {
        uv_timer_stop(&f->retry_timer);
        return;
    }
    int64_t delay = earliest - sg_now_ms();
    uv_timer_start(&f->retry_timer, on_retry_timer, delay > 0 ? (uint64_t)delay : 0, 0);
}

/* Puts a lane whose head may go on the ready or the waiting list. */
static void schedule(sg_forward *f, lane *l)
{
    if (l->busy || l->listed || !l->head)
        return;
    if (l->head->next_attempt_at <= sg_now_ms()) {
        make_ready(f, l);
        return;
    }
    l->next = f->waiting;
    f->waiting = l;
    l->listed = true;
    arm_retry_timer(f);
}

static void on_retry_timer(uv_timer_t *t)
{
    sg_forward *f = t->data;
    int64_t now = sg_now_ms();
    lane **pp = &f->waiting;
    while (*pp) {
        lane *l = *pp;
        if (l->head->next_attempt_at <= now) {
            *pp = l->next;
            make_ready(f, l);
        } else {
            pp = &l->next;
        }
    }
    arm_retry_timer(f);
    pump(f);
}

void sg_forward_push(sg_forward *f, sg_fwd_item *it)
{
    lane *l;
    it->next = NULL;
    if (it->lane == 0) {
        l = sg_xcalloc(1, sizeof *l);
        l->solo = true;
    } else {
        bool created;
        lane **slot = sg_u64map_put(&f->lanes, it->lane, &created);
        if (created) {
            *slot = sg_xcalloc(1, sizeof **slot);
            (*slot)->key = it->lane;
        }
        l = *slot;
    }
    if (l->tail)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
    f->backlog++;
    schedule(f, l);
    pump(f);
}

size_t sg_forward_backlog(const sg_forward *f)
{
    return f->backlog;
}

size_t sg_forward_inflight(const sg_forward *f)
{
    return f->inflight;
}

/* ---- transfers ---- */

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static void start(sg_forward *f, lane *l)
{
    sg_fwd_item *it = l->head;
    transfer *t = sg_xcalloc(1, sizeof *t);
    t->lane = l;
    t->started = sg_mono_s();
    t->next = f->transfers;
    if (f->transfers)
        f->transfers->prev = t;
    f->transfers = t;
    l->busy = true;
    f->inflight++;
    it->attempts++;

    char *url = sg_xasprintf("%s%s", f->base, it->path[0] == '/' ? it->path : "/");
    t->easy = f->nspare ? f->spare[--f->nspare] : curl_easy_init();
    bool has_type = false;
    for (char *line = it->headers, *eol; line && *line; line = eol + 1) {
        eol = strchr(line, '\n');
        if (!eol)
            break;
        *eol = '\0';
        t->headers = curl_slist_append(t->headers, line);
        has_type = has_type || strncasecmp(line, "content-type:", 13) == 0;
        *eol = '\n';
    }
    /* The notifier sees the request as the poller sent it: libcurl adds a
     * form Content-Type to any request with a body unless told not to. */
    if (!has_type)
        t->headers = curl_slist_append(t->headers, "Content-Type:");
    char id[64];
    snprintf(id, sizeof id, "X-Stormguard-Event-Id: %lld", (long long)it->id);
    t->headers = curl_slist_append(t->headers, id);
    t->headers = curl_slist_append(t->headers, "Expect:"); /* no 100-continue round trip */
    curl_easy_setopt(t->easy, CURLOPT_URL, url);
    curl_easy_setopt(t->easy, CURLOPT_CUSTOMREQUEST, it->method);
    if (it->body_len || strcmp(it->method, "GET")) {
        curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, it->body ? it->body : "");
        curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)it->body_len);
    }
    curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, (long)f->o.timeout_ms);
    curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)f->o.timeout_ms);
    curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->error);
    curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
    curl_easy_setopt(t->easy, CURLOPT_USERAGENT, "stormguard");
    free(url);
    CURLMcode mc = curl_multi_add_handle(f->multi, t->easy);
    if (mc != CURLM_OK) {
        snprintf(t->error, sizeof t->error, "starting the transfer: %s", curl_multi_strerror(mc));
        finish(f, t, CURLE_FAILED_INIT); /* retried like any failure */
    }
}

static void pump(sg_forward *f)
{
    while (!f->stopping && f->ready && f->inflight < (size_t)f->o.max_inflight) {
        lane *l = f->ready;
        f->ready = l->next;
        if (!f->ready)
            f->ready_tail = NULL;
        l->listed = false;
        start(f, l);
    }
}

/* Delay before the next attempt: exponential with "equal jitter" (half
 * fixed, half random), at least what Retry-After asked. */
static int64_t backoff_ms(const sg_forward *f, int64_t attempts, long retry_after_s)
{
    int64_t d = f->o.retry_base_ms;
    for (int64_t i = 1; i < attempts && d < f->o.retry_max_ms; i++)
        d *= 2;
    if (d > f->o.retry_max_ms)
        d = f->o.retry_max_ms;
    d = d / 2 + (int64_t)((double)(d / 2) * ((double)rand() / RAND_MAX));
    if (retry_after_s > 0 && retry_after_s * 1000 > d)
        d = retry_after_s * 1000;
    return d;
}

static void unlink_transfer(sg_forward *f, transfer *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        f->transfers = t->next;
    if (t->next)
        t->next->prev = t->prev;
    curl_multi_remove_handle(f->multi, t->easy);
    if (!f->stopping && f->nspare < (size_t)f->o.max_inflight) {
        curl_easy_reset(t->easy);
        f->spare[f->nspare++] = t->easy;
    } else {
        curl_easy_cleanup(t->easy);
    }
    curl_slist_free_all(t->headers);
    free(t);
    f->inflight--;
}

static void finish(sg_forward *f, transfer *t, CURLcode cc)
{
    lane *l = t->lane;
    sg_fwd_item *it = l->head;
    long status = 0;
    curl_off_t retry_after = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(t->easy, CURLINFO_RETRY_AFTER, &retry_after);
    double took = sg_mono_s() - t->started;
    char error[CURL_ERROR_SIZE + 64];
    sg_fwd_outcome outcome;
    if (cc == CURLE_OK && status >= 200 && status < 300) {
        outcome = SG_FWD_DELIVERED;
        error[0] = '\0';
    } else if (cc == CURLE_OK && status != 408 && status != 429 && status < 500) {
        outcome = SG_FWD_DEAD; /* the downstream refuses it: retrying changes nothing */
        snprintf(error, sizeof error, "downstream answered %ld", status);
    } else {
        if (cc == CURLE_OK)
            snprintf(error, sizeof error, "downstream answered %ld", status);
        else
            snprintf(error, sizeof error, "%s", t->error[0] ? t->error : curl_easy_strerror(cc));
        int64_t now = sg_now_ms();
        if (now - it->received_at >= f->o.max_age_ms) {
            outcome = SG_FWD_DEAD;
            size_t n = strlen(error);
            snprintf(error + n, sizeof error - n, "; gave up after %lld attempts over %lld s",
                     (long long)it->attempts, (long long)((now - it->received_at) / 1000));
        } else {
            outcome = SG_FWD_RETRY;
            it->next_attempt_at = now + backoff_ms(f, it->attempts, (long)retry_after);
        }
    }
    unlink_transfer(f, t);
    l->busy = false;

    if (outcome != SG_FWD_RETRY) {
        l->head = it->next;
        if (!l->head)
            l->tail = NULL;
        it->next = NULL;
        f->backlog--;
    }
    f->fn(f->ud, it, outcome, status, error[0] ? error : NULL, took);
    if (l->solo && outcome != SG_FWD_RETRY)
        free(l);
    else
        schedule(f, l);
}

static void check_finished(sg_forward *f)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(f->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        transfer *t;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        finish(f, t, m->data.result);
    }
    pump(f);
}

/* ---- curl <-> libuv ---- */

static void on_poll(uv_poll_t *p, int status, int events)
{
    sockctx *s = p->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(s->f->multi, s->fd, flags, &running);
    check_finished(s->f);
}

static void maybe_stopped(sg_forward *f);

static void on_handle_closed(uv_handle_t *h)
{
    sg_forward *f = h->data;
    f->closing--;
    maybe_stopped(f);
}

static void on_poll_closed(uv_handle_t *h)
{
    sockctx *s = h->data;
    sg_forward *f = s->f;
    free(s);
    f->closing--;
    maybe_stopped(f);
}

static int on_socket(CURL *easy, curl_socket_t fd, int action, void *ud, void *sockp)
{
    (void)easy;
    sg_forward *f = ud;
    sockctx *s = sockp;
    if (action == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            f->closing++;
            uv_close((uv_handle_t *)&s->poll, on_poll_closed);
            curl_multi_assign(f->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = sg_xcalloc(1, sizeof *s);
        s->fd = fd;
        s->f = f;
        if (uv_poll_init_socket(f->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        curl_multi_assign(f->multi, fd, s);
    }
    int events = 0;
    if (action == CURL_POLL_IN || action == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

static void on_curl_timer(uv_timer_t *t)
{
    sg_forward *f = t->data;
    int running;
    curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_finished(f);
}

static int on_timer_change(CURLM *multi, long timeout_ms, void *ud)
{
    (void)multi;
    sg_forward *f = ud;
    if (timeout_ms < 0)
        uv_timer_stop(&f->curl_timer);
    else /* 0 means "as soon as possible": from the loop, never recursively */
        uv_timer_start(&f->curl_timer, on_curl_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

int sg_forward_start(uv_loop_t *loop, const sg_forward_opts *o, sg_fwd_result_fn fn, void *ud,
                     sg_forward **out, sg_error *err)
{
    if (strncmp(o->downstream, "http://", 7) && strncmp(o->downstream, "https://", 8))
        return sg_error_set(err, SG_EUSAGE, "downstream '%s' must be an http:// or https:// URL",
                            o->downstream);
    sg_forward *f = sg_xcalloc(1, sizeof *f);
    f->loop = loop;
    f->o = *o;
    f->fn = fn;
    f->ud = ud;
    f->base = sg_xstrdup(o->downstream);
    size_t n = strlen(f->base);
    while (n > 0 && f->base[n - 1] == '/')
        f->base[--n] = '\0';
    sg_u64map_init(&f->lanes, sizeof(lane *));
    f->spare = sg_xcalloc((size_t)o->max_inflight, sizeof *f->spare);
    f->multi = curl_multi_init();
    if (!f->multi) {
        free(f->base);
        free(f);
        return sg_error_set(err, SG_EIO, "starting the forwarder: curl_multi_init failed");
    }
    curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f);
    curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
    curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f);
    curl_multi_setopt(f->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)o->max_inflight);
    /* Keep every connection max_inflight transfers may use: curl's default
     * cache (4 per easy handle in use at the moment) shrinks when the load
     * dips and closes connections it will open again a moment later. */
    curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, (long)o->max_inflight);
    uv_timer_init(loop, &f->curl_timer);
    uv_timer_init(loop, &f->retry_timer);
    f->curl_timer.data = f->retry_timer.data = f;
    *out = f;
    return 0;
}

static void free_lane(sg_forward *f, lane *l)
{
    while (l->head) {
        sg_fwd_item *it = l->head;
        l->head = it->next;
        sg_fwd_item_free(it);
        f->backlog--;
    }
    free(l);
}

static void maybe_stopped(sg_forward *f)
{
    if (!f->stopping || f->closing)
        return;
    void (*done)(void *) = f->done;
    void *ud = f->done_ud;
    free(f->base);
    free(f);
    if (done)
        done(ud);
}

void sg_forward_stop(sg_forward *f, void (*done)(void *ud), void *ud)
{
    f->stopping = true;
    f->done = done;
    f->done_ud = ud;
    /* in flight: abandoned; their events stay pending in the journal */
    while (f->transfers) {
        lane *l = f->transfers->lane;
        unlink_transfer(f, f->transfers);
        if (l->solo)
            free_lane(f, l);
    }
    /* solo lanes live only on the lists; ordered lanes live in the map */
    for (lane **list = &f->ready; list; list = list == &f->ready ? &f->waiting : NULL) {
        for (lane *l = *list, *next; l; l = next) {
            next = l->next;
            if (l->solo)
                free_lane(f, l);
        }
    }
    for (size_t i = 0; i < f->lanes.cap; i++)
        if (f->lanes.keys[i])
            free_lane(f, *(lane **)(f->lanes.vals + i * f->lanes.val_size));
    sg_u64map_clear(&f->lanes);
    f->ready = f->ready_tail = f->waiting = NULL;
    while (f->nspare)
        curl_easy_cleanup(f->spare[--f->nspare]);
    free(f->spare);
    curl_multi_cleanup(f->multi); /* may close sockets: their polls count in closing */
    f->multi = NULL;
    f->closing += 2;
    uv_close((uv_handle_t *)&f->curl_timer, on_handle_closed);
    uv_close((uv_handle_t *)&f->retry_timer, on_handle_closed);
}
