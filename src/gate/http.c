/* HTTP listeners on libh2o (http.h).
 *
 * Request lifetime. h2o owns its h2o_req_t and frees it with the request's
 * memory pool: after the response, or when the connection dies first (an
 * HTTP/2 stream reset, a shutdown). Our sg_http_req outlives the handler
 * (deferred replies), so it is a separate object with two references: one
 * for the handler until sg_http_reply, one for h2o, dropped by a dispose
 * callback on the request's pool (h2o_mem_alloc_shared). When the pool goes
 * first, the dispose callback clears r->req and sg_http_reply only frees. */
#include "stormguard/gate/http.h"

#include <arpa/inet.h>
#include <h2o.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "stormguard/base/util.h"

struct sg_http {
    uv_loop_t *loop;
    uv_tcp_t listener;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept;
    sg_http_handler handler;
    void *ud;
    int connections, max_connections;
    size_t max_header;
    uint64_t refused; /* requests answered 4xx before the handler */
    bool stopping, listener_closed;
    void (*done)(void *ud);
    void *done_ud;
};

typedef struct sg_h2o_handler {
    h2o_handler_t super;
    sg_http *http;
} sg_h2o_handler;

struct sg_http_req {
    h2o_req_t *req; /* NULL once h2o disposed it */
    int refs;
};

typedef struct conn {
    uv_tcp_t tcp; /* first: on_conn_closed finds the conn from the handle */
    sg_http *http;
} conn;

static void maybe_done(sg_http *h);
static void on_listener_closed(uv_handle_t *handle);

static void unref_req(sg_http_req *r)
{
    if (--r->refs == 0)
        free(r);
}

static void on_pool_dispose(void *p)
{
    sg_http_req *r = *(sg_http_req **)p;
    r->req = NULL;
    unref_req(r);
}

/* The request line and headers as they came, give or take the separators. */
static size_t header_bytes(const h2o_req_t *req)
{
    size_t n = req->method.len + req->path.len + 12;
    for (size_t i = 0; i < req->headers.size; i++)
        n += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    return n;
}

/* RFC 9110 5.6.2: token = 1*tchar. */
static bool tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_token(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!tchar((unsigned char)p[i]))
            return false;
    return len > 0;
}

/* Why the request cannot be taken as it is, or NULL. h2o's parser lets
 * through what a handler that copies the request on (the gate forwards its
 * method, path and headers) must not: a method that is empty or not a token,
 * a target that is not a path, bytes in it that are not ASCII, and folded
 * header lines, which h2o hands over as a header with an empty name. Such a
 * request could never be delivered the same way, so it is refused before
 * the handler sees it (RFC 9110 5.6.2, 9112 3.2 and 5.2). */
static const char *malformed(const h2o_req_t *req, char *buf, size_t size)
{
    if (req->method.len > SG_HTTP_METHOD_MAX || !is_token(req->method.base, req->method.len))
        return "the request method is not an HTTP token of 1 to 32 characters";
    if (!req->path.len || req->path.base[0] != '/')
        return "the request target is not a path starting with '/' (origin-form)";
    for (size_t i = 0; i < req->path.len; i++) {
        unsigned char c = (unsigned char)req->path.base[i];
        if (c <= 0x20 || c >= 0x7f) {
            snprintf(buf, size,
                     "the request target has byte 0x%02x at offset %zu: "
                     "percent-encode it",
                     c, i);
            return buf;
        }
    }
    for (size_t i = 0; i < req->headers.size; i++) {
        const h2o_header_t *hd = &req->headers.entries[i];
        if (hd->name->len == 0)
            return "a folded header line (obs-fold, RFC 9112 5.2): send each header on one line";
        if (!is_token(hd->name->base, hd->name->len))
            return "a header name is not an HTTP token";
        for (size_t k = 0; k < hd->value.len; k++) {
            unsigned char c = (unsigned char)hd->value.base[k];
            if (c == '\0' || c == '\r' || c == '\n') {
                snprintf(buf, size, "header '%.*s' has a NUL, CR or LF in its value",
                         (int)(hd->name->len < 64 ? hd->name->len : 64), hd->name->base);
                return buf;
            }
        }
    }
    return NULL;
}

/* Answers r with status and {"error": why}; why holds no character JSON
 * must escape (the messages above, a header name that is a token). */
static void refuse(sg_http_req *r, int status, const char *why)
{
    char msg[320];
    int n = snprintf(msg, sizeof msg, "{\"error\":\"%s\"}", why);
    r->req->http1_is_persistent = 0; /* what follows on the connection is suspect */
    sg_http_reply(r, status, "application/json", msg, (size_t)n, 0);
}

uint64_t sg_http_refused(const sg_http *h)
{
    return h ? h->refused : 0;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    sg_http *h = ((sg_h2o_handler *)self)->http;
    sg_http_req *r = sg_xcalloc(1, sizeof *r);
    r->req = req;
    r->refs = 2;
    sg_http_req **link = h2o_mem_alloc_shared(&req->pool, sizeof *link, on_pool_dispose);
    *link = r;
    size_t got = header_bytes(req);
    char why[200];
    if (h->max_header && got > h->max_header) {
        snprintf(why, sizeof why,
                 "request header section of %zu bytes is over the limit of %zu ([gate] "
                 "max_header)",
                 got, h->max_header);
        h->refused++;
        refuse(r, 431, why);
        return 0;
    }
    const char *bad = malformed(req, why, sizeof why);
    if (bad) {
        h->refused++;
        refuse(r, 400, bad);
        return 0;
    }
    h->handler(h->ud, r);
    return 0;
}

sg_str sg_http_method(const sg_http_req *r)
{
    return r->req ? (sg_str){r->req->method.base, r->req->method.len} : (sg_str){"", 0};
}

sg_str sg_http_path(const sg_http_req *r)
{
    return r->req ? (sg_str){r->req->path.base, r->req->path.len} : (sg_str){"/", 1};
}

sg_str sg_http_body(const sg_http_req *r)
{
    return r->req && r->req->entity.base ? (sg_str){r->req->entity.base, r->req->entity.len}
                                         : (sg_str){"", 0};
}

size_t sg_http_header_count(const sg_http_req *r)
{
    return r->req ? r->req->headers.size : 0;
}

void sg_http_header_at(const sg_http_req *r, size_t i, sg_str *name, sg_str *value)
{
    const h2o_header_t *hd = &r->req->headers.entries[i];
    *name = (sg_str){hd->name->base, hd->name->len};
    *value = (sg_str){hd->value.base, hd->value.len};
}

bool sg_http_header(const sg_http_req *r, const char *name, sg_str *value)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < sg_http_header_count(r); i++) {
        sg_str k, v;
        sg_http_header_at(r, i, &k, &v);
        if (k.len == n && !memcmp(k.p, name, n)) {
            *value = v;
            return true;
        }
    }
    return false;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    default:
        return "Status";
    }
}

void sg_http_reply(sg_http_req *r, int status, const char *content_type, const char *body,
                   size_t len, int retry_after_s)
{
    h2o_req_t *req = r->req;
    if (req) {
        req->res.status = status;
        req->res.reason = reason_phrase(status);
        if (content_type)
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                           content_type, strlen(content_type));
        if (retry_after_s > 0) {
            char *v = h2o_mem_alloc_pool(&req->pool, 16);
            int n = snprintf(v, 16, "%d", retry_after_s);
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, v,
                           (size_t)n);
        }
        /* h2o_send_inline copies the body into the pool */
        h2o_send_inline(req, body, len);
    }
    unref_req(r);
}

/* ---- accepting ---- */

static void on_conn_closed(uv_handle_t *handle)
{
    /* h2o's binding owns handle->data; the handle is conn's first member */
    conn *c = (conn *)handle;
    sg_http *h = c->http;
    free(c);
    h->connections--;
    maybe_done(h);
}

static void on_refused_closed(uv_handle_t *handle)
{
    free(handle);
}

static void on_accept(uv_stream_t *listener, int status)
{
    sg_http *h = listener->data;
    if (status != 0)
        return;
    if (h->connections >= h->max_connections) {
        /* over the cap: accept and close at once, so the client gets a
         * clean refusal instead of waiting in the backlog */
        uv_tcp_t *t = sg_xmalloc(sizeof *t);
        if (uv_tcp_init(h->loop, t) != 0) {
            free(t);
            return;
        }
        if (uv_accept(listener, (uv_stream_t *)t) != 0) {
            uv_close((uv_handle_t *)t, on_refused_closed);
            return;
        }
        uv_close((uv_handle_t *)t, on_refused_closed);
        return;
    }
    conn *c = sg_xcalloc(1, sizeof *c);
    c->http = h;
    if (uv_tcp_init(h->loop, &c->tcp) != 0) {
        free(c);
        return;
    }
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_refused_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_closed);
    h->connections++;
    h2o_accept(&h->accept, sock);
}

static int parse_listen(const char *listen, struct sockaddr_storage *ss, sg_error *err)
{
    const char *colon = strrchr(listen, ':');
    int64_t port;
    if (!colon || sg_parse_int64(colon + 1, 0, 65535, &port))
        return sg_error_set(err, SG_EUSAGE, "listen address '%s' is not ADDR:PORT", listen);
    char host[64];
    size_t n = (size_t)(colon - listen);
    if (n >= 2 && listen[0] == '[' && listen[n - 1] == ']') {
        listen++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof host)
        return sg_error_set(err, SG_EUSAGE, "listen address '%s' has no host", listen);
    memcpy(host, listen, n);
    host[n] = '\0';
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) != 0 &&
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) != 0)
        return sg_error_set(err, SG_EUSAGE,
                            "listen address '%s': '%s' is not an IPv4 or IPv6 address", listen,
                            host);
    return 0;
}

/* The TLS context of opts' certificate and key, or NULL without TLS. */
static int load_tls(const sg_http_opts *o, SSL_CTX **out, sg_error *err)
{
    *out = NULL;
    if (!o->tls_cert && !o->tls_key)
        return 0;
    if (!o->tls_cert || !o->tls_key)
        return sg_error_set(err, SG_EUSAGE, "TLS needs both tls_cert and tls_key");
    SSL_CTX *ssl = SSL_CTX_new(TLS_server_method());
    if (!ssl)
        return sg_error_set(err, SG_EIO, "creating a TLS context: out of memory");
    SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ssl, o->tls_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ssl, o->tls_key, SSL_FILETYPE_PEM) != 1) {
        char why[256];
        ERR_error_string_n(ERR_get_error(), why, sizeof why);
        SSL_CTX_free(ssl);
        return sg_error_set(err, SG_EUSAGE, "loading TLS certificate %s and key %s: %s",
                            o->tls_cert, o->tls_key, why);
    }
    *out = ssl;
    return 0;
}

static int setup_tls(sg_http *h, const sg_http_opts *o, sg_error *err)
{
    SSL_CTX *ssl;
    int rc = load_tls(o, &ssl, err);
    if (rc || !ssl)
        return rc;
    h2o_ssl_register_alpn_protocols(ssl, h2o_http2_alpn_protocols);
    h->accept.ssl_ctx = ssl;
    return 0;
}

int sg_http_check(const sg_http_opts *o, sg_error *err)
{
    struct sockaddr_storage ss;
    SSL_CTX *ssl = NULL;
    int rc = parse_listen(o->listen, &ss, err);
    if (rc == 0)
        rc = load_tls(o, &ssl, err);
    if (ssl)
        SSL_CTX_free(ssl);
    return rc;
}

int sg_http_start(uv_loop_t *loop, const sg_http_opts *o, sg_http_handler handler, void *ud,
                  sg_http **out, sg_error *err)
{
    struct sockaddr_storage ss;
    int rc = parse_listen(o->listen, &ss, err);
    if (rc)
        return rc;
    sg_http *h = sg_xcalloc(1, sizeof *h);
    h->loop = loop;
    h->handler = handler;
    h->ud = ud;
    h->max_connections = o->max_connections > 0 ? o->max_connections : 1024;
    h->max_header = o->max_header;
    h2o_config_init(&h->config);
    h->config.server_name = h2o_iovec_init(H2O_STRLIT("stormguard"));
    h->config.max_request_entity_size = o->max_body;
    h->config.http1.req_timeout = (uint64_t)o->read_timeout_ms;
    h->config.http2.idle_timeout = (uint64_t)o->read_timeout_ms;
    h2o_hostconf_t *host =
        h2o_config_register_host(&h->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    sg_h2o_handler *hh = (sg_h2o_handler *)h2o_create_handler(path, sizeof *hh);
    hh->super.on_req = on_req;
    hh->http = h;
    h2o_context_init(&h->ctx, loop, &h->config);
    h->accept.ctx = &h->ctx;
    h->accept.hosts = h->config.hosts;
    if ((rc = setup_tls(h, o, err)))
        goto fail;

    int r;
    if ((r = uv_tcp_init(loop, &h->listener)) != 0) {
        rc = sg_error_set(err, SG_EIO, "listening on %s: %s", o->listen, uv_strerror(r));
        goto fail;
    }
    h->listener.data = h;
    if ((r = uv_tcp_bind(&h->listener, (struct sockaddr *)&ss, 0)) != 0 ||
        (r = uv_listen((uv_stream_t *)&h->listener, 511, on_accept)) != 0) {
        rc = sg_error_set(err, SG_EIO, "listening on %s: %s", o->listen, uv_strerror(r));
        /* h is freed by the close callback, on the loop's next turn */
        h->stopping = true;
        uv_close((uv_handle_t *)&h->listener, on_listener_closed);
        return rc;
    }
    *out = h;
    return 0;
fail:
    h2o_context_dispose(&h->ctx);
    h2o_config_dispose(&h->config);
    if (h->accept.ssl_ctx)
        SSL_CTX_free(h->accept.ssl_ctx);
    free(h);
    return rc;
}

static void free_http(sg_http *h)
{
    void (*done)(void *) = h->done;
    void *ud = h->done_ud;
    h2o_context_dispose(&h->ctx);
    h2o_config_dispose(&h->config);
    if (h->accept.ssl_ctx)
        SSL_CTX_free(h->accept.ssl_ctx);
    free(h);
    if (done)
        done(ud);
}

static void maybe_done(sg_http *h)
{
    if (h->stopping && h->listener_closed && h->connections == 0)
        free_http(h);
}

static void on_listener_closed(uv_handle_t *handle)
{
    sg_http *h = handle->data;
    h->listener_closed = true;
    maybe_done(h);
}

void sg_http_stop(sg_http *h, void (*done)(void *ud), void *ud)
{
    h->stopping = true;
    h->done = done;
    h->done_ud = ud;
    /* Idle keep-alive connections close when read_timeout expires: with
     * Debian's h2o 2.2.5, h2o_context_request_shutdown leaves a timeout entry
     * behind that makes h2o_context_dispose abort (observed), so it is not
     * used, and h2o cannot close idle HTTP/1 connections on request. */
    uv_close((uv_handle_t *)&h->listener, on_listener_closed);
}
