/* Plain, unix and TLS bytes for a Redis connection (transport.h). */
#include "stormguard/redis/transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "stormguard/base/util.h"

int64_t sg_tx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- TLS context ---- */

/* The last OpenSSL error's reason ("no start line"), emptying the queue. */
static const char *ssl_reason(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(buf, cap, "%s", r ? r : "unknown TLS error");
    ERR_clear_error();
    return buf;
}

/* A file a setting names must be readable: the error says which setting. */
static int readable(const char *path, const char *setting, sg_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return sg_error_set(err, SG_EUSAGE, "reading %s %s: %s", setting, path, strerror(errno));
    fclose(f);
    return 0;
}

/* An encrypted key would make OpenSSL prompt on the terminal: refuse it. */
static int no_passphrase(char *buf, int size, int rwflag, void *ud)
{
    return 0;
}

static int tls_setup(SSL_CTX *ctx, const sg_redis_tls *t, sg_error *err)
{
    char why[256];
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* a write retried after WANT_WRITE may come from a moved buffer (the
     * output buffer grows between tries) and may be partial */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    SSL_CTX_set_verify(ctx, t->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    int rc;
    if (t->cacert && (rc = readable(t->cacert, "[redis] cacert (--cacert)", err)))
        return rc;
    struct stat st;
    if (t->cacertdir && stat(t->cacertdir, &st) != 0)
        return sg_error_set(err, SG_EUSAGE, "reading [redis] cacertdir (--cacertdir) %s: %s",
                            t->cacertdir, strerror(errno));
    if (t->cacertdir && !S_ISDIR(st.st_mode))
        return sg_error_set(err, SG_EUSAGE, "[redis] cacertdir (--cacertdir) %s is not a directory",
                            t->cacertdir);
    if (t->cacert || t->cacertdir) {
        if (SSL_CTX_load_verify_locations(ctx, t->cacert, t->cacertdir) != 1)
            return sg_error_set(err, SG_EUSAGE, "loading the CA certificates of %s %s: %s",
                                t->cacert ? "[redis] cacert" : "[redis] cacertdir",
                                t->cacert ? t->cacert : t->cacertdir, ssl_reason(why, sizeof why));
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        return sg_error_set(err, SG_EUSAGE, "loading the system's CA certificates: %s",
                            ssl_reason(why, sizeof why));
    }
    if (!t->cert != !t->key)
        return sg_error_set(err, SG_EUSAGE,
                            "[redis] cert and key go together (--cert FILE --key FILE): "
                            "only %s is given",
                            t->cert ? "cert" : "key");
    if (!t->cert)
        return 0;
    if ((rc = readable(t->cert, "[redis] cert (--cert)", err)) ||
        (rc = readable(t->key, "[redis] key (--key)", err)))
        return rc;
    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1)
        return sg_error_set(err, SG_EUSAGE, "loading the client certificate [redis] cert %s: %s",
                            t->cert, ssl_reason(why, sizeof why));
    if (SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM) != 1) {
        bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
        ssl_reason(why, sizeof why);
        if (mismatch)
            return sg_error_set(err, SG_EUSAGE, "[redis] key %s is not the key of [redis] cert %s",
                                t->key, t->cert);
        return sg_error_set(err, SG_EUSAGE,
                            "loading the private key [redis] key %s: %s (a key protected by a "
                            "passphrase cannot be used)",
                            t->key, why);
    }
    if (SSL_CTX_check_private_key(ctx) != 1)
        return sg_error_set(err, SG_EUSAGE, "[redis] key %s is not the key of [redis] cert %s",
                            t->key, t->cert);
    return 0;
}

int sg_tx_tls_new(const sg_redis_url *u, SSL_CTX **out, sg_error *err)
{
    if (!u->tls.enabled) {
        *out = NULL;
        return 0;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        char why[256];
        return sg_error_set(err, SG_EIO, "creating a TLS context for redis: %s",
                            ssl_reason(why, sizeof why));
    }
    int rc = tls_setup(ctx, &u->tls, err);
    if (rc) {
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

void sg_tx_tls_free(SSL_CTX *tls)
{
    if (tls)
        SSL_CTX_free(tls);
}

/* ---- connecting ---- */

bool sg_tx_is_ip(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* A TLS session for t on fd: SNI for a host name, and the name (or the IP
 * address) the certificate must hold. */
static int tls_session(sg_tx *t, const sg_redis_url *u, SSL_CTX *tls, sg_error *err)
{
    char why[256];
    t->ssl = SSL_new(tls);
    if (!t->ssl || SSL_set_fd(t->ssl, t->fd) != 1)
        return sg_error_set(err, SG_EIO, "starting TLS with redis %s: %s", t->address,
                            ssl_reason(why, sizeof why));
    const char *name = u->tls.sni ? u->tls.sni : u->host;
    bool ip = sg_tx_is_ip(name);
    /* RFC 6066: SNI carries host names only, never an address */
    if (!ip && SSL_set_tlsext_host_name(t->ssl, name) != 1)
        return sg_error_set(err, SG_EIO, "setting TLS SNI %s for redis %s: %s", name, t->address,
                            ssl_reason(why, sizeof why));
    if (u->tls.insecure)
        return 0;
    X509_VERIFY_PARAM *param = SSL_get0_param(t->ssl);
    int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name) : SSL_set1_host(t->ssl, name);
    if (ok != 1)
        return sg_error_set(err, SG_EIO, "setting the name %s to verify for redis %s: %s", name,
                            t->address, ssl_reason(why, sizeof why));
    return 0;
}

int sg_tx_start(sg_tx *t, const sg_redis_url *u, const struct sockaddr *sa, socklen_t salen,
                SSL_CTX *tls, sg_error *err)
{
    memset(t, 0, sizeof *t);
    t->fd = -1;
    t->address = sg_redis_url_address(u);
    struct sockaddr_un sun;
    if (!sa) {
        memset(&sun, 0, sizeof sun);
        sun.sun_family = AF_UNIX;
        if (strlen(u->path) >= sizeof sun.sun_path) {
            sg_error_set(err, SG_EUSAGE, "redis socket path %s is longer than %zu bytes", u->path,
                         sizeof sun.sun_path - 1);
            sg_tx_close(t);
            return SG_EUSAGE;
        }
        memcpy(sun.sun_path, u->path, strlen(u->path) + 1);
        sa = (const struct sockaddr *)&sun;
        salen = sizeof sun;
    }
    t->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (t->fd < 0) {
        sg_error_set(err, SG_EIO, "opening a socket for redis %s: %s", t->address, strerror(errno));
        sg_tx_close(t);
        return SG_EIO;
    }
    if (sa->sa_family != AF_UNIX) {
        int one = 1;
        /* commands are small and pipelined: never wait for Nagle */
        setsockopt(t->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    int rc;
    do
        rc = connect(t->fd, sa, salen);
    while (rc < 0 && errno == EINTR);
    if (rc < 0 && errno != EINPROGRESS) {
        sg_error_set(err, SG_EREDIS, "cannot reach redis %s: %s", t->address, strerror(errno));
        sg_tx_close(t);
        return SG_EREDIS;
    }
    t->state = SG_TX_CONNECTING;
    if (tls && (rc = tls_session(t, u, tls, err))) {
        sg_tx_close(t);
        return rc;
    }
    return 0;
}

/* A handshake that failed: why, in the words an operator can act on. */
static int tls_failed(sg_tx *t, int ret, sg_error *err)
{
    t->fatal = true;
    int e = SSL_get_error(t->ssl, ret);
    int saved = errno;
    /* without verification OpenSSL still records what it found wrong with
     * the chain: that is no reason for a failure then */
    long v =
        SSL_get_verify_mode(t->ssl) == SSL_VERIFY_NONE ? X509_V_OK : SSL_get_verify_result(t->ssl);
    char why[256];
    if (v != X509_V_OK) {
        const char *hint = "";
        switch (v) {
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
        case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
            hint = " (no CA stormguard trusts signed it: give its CA with --cacert or [redis] "
                   "cacert)";
            break;
        case X509_V_ERR_CERT_HAS_EXPIRED:
            hint = " (the server's certificate must be renewed)";
            break;
        case X509_V_ERR_HOSTNAME_MISMATCH:
        case X509_V_ERR_IP_ADDRESS_MISMATCH:
            hint = " (the certificate does not hold the name or address connected to: connect "
                   "by a name it holds, or name it with --sni)";
            break;
        default:
            break;
        }
        ERR_clear_error();
        return sg_error_set(err, SG_EREDIS, "TLS with redis %s: certificate verify failed: %s%s",
                            t->address, X509_verify_cert_error_string(v), hint);
    }
    if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        return sg_error_set(err, SG_EREDIS,
                            "TLS with redis %s: the server closed the connection during the "
                            "handshake (%s): is this a plain port (redis://, without --tls)?",
                            t->address, saved && ret < 0 ? strerror(saved) : "end of stream");
    }
    unsigned long code = ERR_peek_last_error();
    int reason = ERR_GET_REASON(code);
    if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ERR_clear_error();
        return sg_error_set(err, SG_EREDIS,
                            "TLS with redis %s: the server closed the connection during the "
                            "handshake: is this a plain port (redis://, without --tls), or "
                            "does it want a client certificate (--cert, --key)?",
                            t->address);
    }
    ssl_reason(why, sizeof why);
    const char *hint = "";
    if (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
        reason == SSL_R_UNEXPECTED_RECORD || reason == SSL_R_HTTP_REQUEST)
        hint = ": the server does not speak TLS on this port (use redis://, without --tls)";
    else if (strstr(why, "certificate required") || strstr(why, "handshake failure"))
        hint = ": the server may want a client certificate (--cert FILE --key FILE)";
    return sg_error_set(err, SG_EREDIS, "TLS with redis %s: %s%s", t->address, why, hint);
}

int sg_tx_handshake(sg_tx *t, sg_error *err)
{
    if (t->state == SG_TX_CONNECTING) {
        struct pollfd p = {.fd = t->fd, .events = POLLOUT};
        if (poll(&p, 1, 0) == 0)
            return SG_TX_WANT_WRITE;
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
            soerr = errno;
        if (soerr)
            return sg_error_set(err, SG_EREDIS, "cannot reach redis %s: %s", t->address,
                                strerror(soerr));
        t->state = t->ssl ? SG_TX_HANDSHAKE : SG_TX_OPEN;
    }
    if (t->state == SG_TX_HANDSHAKE) {
        ERR_clear_error();
        int ret = SSL_connect(t->ssl);
        if (ret == 1) {
            t->state = SG_TX_OPEN;
            return 0;
        }
        int e = SSL_get_error(t->ssl, ret);
        if (e == SSL_ERROR_WANT_READ)
            return SG_TX_WANT_READ;
        if (e == SSL_ERROR_WANT_WRITE)
            return SG_TX_WANT_WRITE;
        return tls_failed(t, ret, err);
    }
    return 0;
}

/* ---- bytes ---- */

static ssize_t closed(sg_tx *t, bool reset, const char *why, sg_error *err)
{
    t->eof = true;
    t->reset = reset;
    return sg_error_set(err, SG_EREDIS, "%s", why);
}

/* SSL_read or SSL_write returned ret <= 0: wait, or fail. */
static ssize_t ssl_io(sg_tx *t, int ret, int *want, sg_error *err)
{
    int e = SSL_get_error(t->ssl, ret);
    char why[256];
    switch (e) {
    case SSL_ERROR_WANT_READ:
        *want = SG_TX_WANT_READ;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        *want = SG_TX_WANT_WRITE;
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        return closed(t, false, "connection closed by the server", err);
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        t->fatal = true;
        if (ret == 0 || errno == 0 || errno == ECONNRESET || errno == EPIPE)
            return closed(t, errno == ECONNRESET || errno == EPIPE,
                          errno && ret ? strerror(errno) : "connection closed by the server", err);
        return sg_error_set(err, SG_EREDIS, "%s", strerror(errno));
    default:
        t->fatal = true;
        /* OpenSSL 3 reports a peer gone without close_notify (a crash, a
         * kill -9) as this error, not as SSL_ERROR_SYSCALL */
        if (ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            ERR_clear_error();
            return closed(t, false, "connection closed by the server", err);
        }
        ssl_reason(why, sizeof why);
        /* TLS 1.3 sends the server's refusal of the client after the
         * handshake: it arrives with the first reply */
        return sg_error_set(err, SG_EREDIS, "TLS: %s%s", why,
                            strstr(why, "certificate required")
                                ? " (the server wants a client certificate: --cert FILE --key "
                                  "FILE, [redis] cert and key)"
                                : "");
    }
}

ssize_t sg_tx_read(sg_tx *t, void *buf, size_t cap, int *want, sg_error *err)
{
    if (t->ssl) {
        ERR_clear_error();
        errno = 0;
        int n = SSL_read(t->ssl, buf, cap > INT32_MAX ? INT32_MAX : (int)cap);
        if (n > 0) {
            t->received = true;
            return n;
        }
        return ssl_io(t, n, want, err);
    }
    for (;;) {
        ssize_t n = read(t->fd, buf, cap);
        if (n > 0) {
            t->received = true;
            return n;
        }
        if (n == 0)
            return closed(t, false, "connection closed by the server", err);
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            *want = SG_TX_WANT_READ;
            return 0;
        }
        if (errno == ECONNRESET)
            return closed(t, true, strerror(errno), err);
        return sg_error_set(err, SG_EREDIS, "%s", strerror(errno));
    }
}

ssize_t sg_tx_write(sg_tx *t, const void *buf, size_t len, int *want, sg_error *err)
{
    if (t->ssl) {
        ERR_clear_error();
        errno = 0;
        int n = SSL_write(t->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
        return n > 0 ? n : ssl_io(t, n, want, err);
    }
    for (;;) {
        /* MSG_NOSIGNAL: a closed peer is an error here, not SIGPIPE */
        ssize_t n = send(t->fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0)
            return n ? n : (*want = SG_TX_WANT_WRITE, 0);
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            *want = SG_TX_WANT_WRITE;
            return 0;
        }
        if (errno == ECONNRESET || errno == EPIPE)
            return closed(t, true, strerror(errno), err);
        return sg_error_set(err, SG_EREDIS, "%s", strerror(errno));
    }
}

/* ---- the output queue ---- */

static char *put_count(char *p, char type, size_t n)
{
    char digits[24];
    int i = 0;
    do
        digits[i++] = (char)('0' + n % 10);
    while ((n /= 10));
    *p++ = type;
    while (i)
        *p++ = digits[--i];
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* hiredis's own formatting (sdscatfmt, an allocation per argument) was a
 * tenth of a snapshot's CPU time, which pipelines two commands per key. */
void sg_txbuf_command(sg_txbuf *b, int argc, const char **argv, const size_t *argvlen)
{
    size_t total = 24 + 2;
    for (int i = 0; i < argc; i++)
        total += 24 + 2 + (argvlen ? argvlen[i] : strlen(argv[i])) + 2;
    if (b->pos && b->pos == b->len)
        b->pos = b->len = 0;
    if (b->len + total > b->cap) {
        if (b->pos) {
            memmove(b->p, b->p + b->pos, b->len - b->pos);
            b->len -= b->pos;
            b->pos = 0;
        }
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->len + total)
            cap *= 2;
        if (cap != b->cap) {
            b->p = sg_xrealloc(b->p, cap);
            b->cap = cap;
        }
    }
    char *p = put_count(b->p + b->len, '*', (size_t)argc);
    for (int i = 0; i < argc; i++) {
        size_t n = argvlen ? argvlen[i] : strlen(argv[i]);
        p = put_count(p, '$', n);
        memcpy(p, argv[i], n);
        p += n;
        *p++ = '\r';
        *p++ = '\n';
    }
    b->len = (size_t)(p - b->p);
}

int sg_txbuf_send(sg_txbuf *b, sg_tx *t, int *want, sg_error *err)
{
    *want = 0;
    while (b->pos < b->len) {
        ssize_t n = sg_tx_write(t, b->p + b->pos, b->len - b->pos, want, err);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return 0;
        b->pos += (size_t)n;
    }
    b->pos = b->len = 0;
    *want = 0;
    return 0;
}

void sg_txbuf_free(sg_txbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

int sg_tx_keepalive(sg_tx *t, sg_error *err)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(t->fd, (struct sockaddr *)&ss, &len) == 0 && ss.ss_family == AF_UNIX)
        return 0;
    int one = 1, idle = 15, intvl = 5, cnt = 3;
    if (setsockopt(t->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) < 0 ||
        setsockopt(t->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) < 0 ||
        setsockopt(t->fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) < 0 ||
        setsockopt(t->fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) < 0)
        return sg_error_set(err, SG_EIO, "setting TCP keepalive for redis %s: %s", t->address,
                            strerror(errno));
    return 0;
}

void sg_tx_close(sg_tx *t)
{
    if (t->ssl) {
        /* one try: close_notify if it fits, never a wait; none after a
         * fatal error, which OpenSSL forbids */
        if (t->state == SG_TX_OPEN && !t->eof && !t->fatal)
            SSL_shutdown(t->ssl);
        SSL_free(t->ssl);
        ERR_clear_error();
    }
    if (t->fd >= 0)
        close(t->fd);
    free(t->address);
    memset(t, 0, sizeof *t);
    t->fd = -1;
}

/* ---- blocking ---- */

int sg_tx_wait(const sg_tx *t, int want, int64_t deadline_ms, sg_error *err)
{
    struct pollfd p = {.fd = t->fd,
                       .events = (short)((want & SG_TX_WANT_READ ? POLLIN : 0) |
                                         (want & SG_TX_WANT_WRITE ? POLLOUT : 0))};
    for (;;) {
        int64_t left = deadline_ms - sg_tx_now_ms();
        if (left <= 0)
            return 1;
        int n = poll(&p, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (n > 0)
            return 0; /* also POLLERR and POLLHUP: the next call meets the error */
        if (n == 0)
            return 1;
        if (errno != EINTR)
            return sg_error_set(err, SG_EIO, "waiting on redis %s: %s", t->address,
                                strerror(errno));
    }
}

/* Connects to one address and completes the handshake by deadline;
 * *unreachable tells a failure to connect (another address may answer)
 * from one after it. */
static int connect_one(sg_tx *t, const sg_redis_url *u, const struct sockaddr *sa, socklen_t salen,
                       SSL_CTX *tls, int64_t deadline, int timeout_ms, bool *unreachable,
                       sg_error *err)
{
    int rc = sg_tx_start(t, u, sa, salen, tls, err);
    *unreachable = rc != 0;
    while (rc == 0) {
        int want = sg_tx_handshake(t, err);
        *unreachable = t->state == SG_TX_CONNECTING;
        if (want <= 0) {
            rc = want;
            break;
        }
        rc = sg_tx_wait(t, want, deadline, err);
        if (rc == 1)
            rc = t->state == SG_TX_CONNECTING
                     ? sg_error_set(err, SG_EREDIS,
                                    "cannot reach redis %s: connect timed out after %d ms",
                                    t->address, timeout_ms)
                     : sg_error_set(err, SG_EREDIS,
                                    "TLS with redis %s: no handshake within %d ms "
                                    "([redis] connect_timeout): is this a plain port "
                                    "(redis://, without --tls)?",
                                    t->address, timeout_ms);
    }
    if (rc && t->fd >= 0)
        sg_tx_close(t);
    return rc;
}

int sg_tx_connect(sg_tx *t, const sg_redis_url *u, SSL_CTX *tls, int timeout_ms, sg_error *err)
{
    int64_t deadline = sg_tx_now_ms() + timeout_ms;
    bool unreachable;
    if (u->path)
        return connect_one(t, u, NULL, 0, tls, deadline, timeout_ms, &unreachable, err);
    char port[8];
    snprintf(port, sizeof port, "%d", u->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int g = getaddrinfo(u->host, port, &hints, &res);
    if (g != 0) {
        char *address = sg_redis_url_address(u);
        sg_error_set(err, SG_EREDIS, "cannot reach redis %s: resolving %s: %s", address, u->host,
                     g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
        free(address);
        return SG_EREDIS;
    }
    /* IPv4 addresses first, as hiredis (and async.c) prefer, then the
     * rest; another address of the host may answer where one did not, a
     * TLS failure would not be different there */
    int rc = SG_EREDIS;
    bool done = false;
    for (int pass = 0; pass < 2 && !done; pass++) {
        for (const struct addrinfo *ai = res; ai && !done; ai = ai->ai_next) {
            if ((ai->ai_family == AF_INET) != (pass == 0))
                continue;
            rc = connect_one(t, u, ai->ai_addr, ai->ai_addrlen, tls, deadline, timeout_ms,
                             &unreachable, err);
            done = rc == 0 || !unreachable || sg_tx_now_ms() >= deadline;
        }
    }
    freeaddrinfo(res);
    return rc;
}
