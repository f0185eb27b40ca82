/* HTTP listeners: a thin layer over libh2o on the daemon's libuv loop. It
 * owns accepting (with a connection cap), limits (body size, read timeout,
 * TLS, HTTP/2 via ALPN) and deferred replies: a handler may answer a request
 * later, e.g. once its event is durable, and a request whose client went
 * away meanwhile is answered into the void safely.
 *
 * Limits: a body over max_body gets 413 and a close; a header section (the
 * request line and headers) over max_header gets 431 and a close; a client
 * that does not complete its request within read_timeout_ms is disconnected
 * (slowloris). h2o answers an unparsable request, more than 100 headers or a
 * header section beyond its own buffer (about 400 KiB) with 400 and a close.
 *
 * What a handler receives can be copied on as it is: a request whose method
 * is not a token of 1 to SG_HTTP_METHOD_MAX characters, whose target is not
 * an origin-form path of printable ASCII, with a folded header line
 * (obs-fold) or a NUL, CR or LF in a header value gets 400 and a close
 * before any handler sees it. */
#ifndef STORMGUARD_HTTP_H
#define STORMGUARD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stormguard/base/error.h"

struct uv_loop_s;

#define SG_HTTP_METHOD_MAX 32

typedef struct sg_http sg_http;
typedef struct sg_http_req sg_http_req;

typedef struct sg_http_opts {
    const char *listen;  /* "ADDR:PORT" ("127.0.0.1:8090", "[::1]:8090"); port 0 = any */
    size_t max_body;     /* bytes */
    size_t max_header;   /* bytes of the request line and headers; 0: h2o's own limit */
    int read_timeout_ms; /* to receive a whole request */
    int max_connections;
    const char *tls_cert; /* PEM files; both or neither */
    const char *tls_key;
} sg_http_opts;

/* Called for every complete request. The handler must eventually call
 * sg_http_reply exactly once (now or later, on the loop thread). */
typedef void (*sg_http_handler)(void *ud, sg_http_req *req);

int sg_http_start(struct uv_loop_s *loop, const sg_http_opts *opts, sg_http_handler handler,
                  void *ud, sg_http **out, sg_error *err);

/* What sg_http_start checks before it binds, without a loop or a socket:
 * the listen address, and the TLS certificate and key when given (read and
 * matched). SG_EUSAGE with the reason, as sg_http_start would give it. */
int sg_http_check(const sg_http_opts *opts, sg_error *err);

/* Requests refused before any handler saw them (malformed, or a header
 * section over max_header); 0 for NULL. */
uint64_t sg_http_refused(const sg_http *h);

/* Stops accepting; calls done(ud) once every connection is closed, after h
 * is freed (h must not be used after this call). A connection already open
 * stays until it is idle past read_timeout or its client closes it, and
 * its requests are still handed to the handler meanwhile: a handler must
 * answer them while its owner stops. */
void sg_http_stop(sg_http *h, void (*done)(void *ud), void *ud);

typedef struct sg_str {
    const char *p;
    size_t len;
} sg_str;

sg_str sg_http_method(const sg_http_req *r);
sg_str sg_http_path(const sg_http_req *r); /* with the query string */
sg_str sg_http_body(const sg_http_req *r);
size_t sg_http_header_count(const sg_http_req *r);
/* Header i (name lower-case). */
void sg_http_header_at(const sg_http_req *r, size_t i, sg_str *name, sg_str *value);
/* The first header called name (lower-case); false if absent. */
bool sg_http_header(const sg_http_req *r, const char *name, sg_str *value);

/* Answers the request (copies body) and releases r. retry_after_s > 0 adds
 * Retry-After. If the client has gone, the answer is dropped. */
void sg_http_reply(sg_http_req *r, int status, const char *content_type, const char *body,
                   size_t len, int retry_after_s);

#endif
