/* The bytes of one Redis connection: TCP, a unix socket, or TLS over TCP
 * (OpenSSL), behind one interface. hiredis 0.14 reads and writes only plain
 * sockets itself, so stormguard keeps hiredis for RESP (redisReader) and
 * does the I/O here: rconn.c blocks on it with deadlines (poll), async.c
 * drives it from the loop (uv_poll). Sockets are always non-blocking; every
 * call returns at once and says what it waits for.
 *
 * TLS. The chain and the host name (or IP address) are verified unless the
 * URL's tls.insecure says not to; SNI is sent for a host name (or tls.sni).
 * TLS 1.2 or newer. A TLS library may hold decrypted bytes the socket no
 * longer shows as readable: sg_tx_read must be called until it says it
 * waits, never only when the socket polls readable. OpenSSL writes with
 * write(): the process must ignore SIGPIPE (main does). */
#ifndef STORMGUARD_TRANSPORT_H
#define STORMGUARD_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <stdint.h>
#include <sys/types.h>

#include "stormguard/base/error.h"
#include "stormguard/redis/redis_url.h"

struct ssl_ctx_st;
struct ssl_st;

/* What a call waits for before it can go on (poll's POLLIN / POLLOUT). */
#define SG_TX_WANT_READ 1
#define SG_TX_WANT_WRITE 2

typedef enum { SG_TX_CONNECTING, SG_TX_HANDSHAKE, SG_TX_OPEN } sg_tx_state;

typedef struct sg_tx {
    int fd; /* -1 when closed */
    struct ssl_st *ssl;
    sg_tx_state state;
    bool eof;      /* the last error was the peer closing the connection */
    bool reset;    /* ... by a reset (or a write into a closed one): not a clean end */
    bool fatal;    /* TLS failed: no close_notify may be sent */
    bool received; /* a byte came from the server: a plain port closing at
                    * once hints at TLS */
    char *address; /* for messages: "10.0.0.5:6380" or the socket path */
} sg_tx;

/* The TLS context for u's settings (CA, client certificate), or *out NULL
 * when u has no TLS. Files are read here, so a bad path fails now, naming
 * the setting. Shared by the connections to one server: free it with
 * sg_tx_tls_free once none needs it (SSL_CTX_up_ref for a second owner). */
int sg_tx_tls_new(const sg_redis_url *u, struct ssl_ctx_st **out, sg_error *err);
void sg_tx_tls_free(struct ssl_ctx_st *tls);

/* Starts connecting t to sa (TCP; u gives the host for TLS's name check and
 * SNI) or to u->path (sa NULL), with TLS when tls is not NULL. On success t
 * is open for sg_tx_handshake; on failure nothing needs closing. */
int sg_tx_start(sg_tx *t, const sg_redis_url *u, const struct sockaddr *sa, socklen_t salen,
                struct ssl_ctx_st *tls, sg_error *err);

/* Advances the connect and the TLS handshake: 0 once open, SG_TX_WANT_* to
 * wait for, or an error (SG_EREDIS) naming the reason: "cannot reach redis
 * ADDR: Connection refused", "TLS with redis ADDR: certificate verify
 * failed: ...". */
int sg_tx_handshake(sg_tx *t, sg_error *err);

/* Reads into buf: the count (> 0), 0 when it must wait (*want says for
 * what), or a negative SG_E* with err set (t->eof when the server closed
 * the connection). */
ssize_t sg_tx_read(sg_tx *t, void *buf, size_t cap, int *want, sg_error *err);

/* Writes from buf: the count (> 0), 0 when it must wait (*want), or an error. */
ssize_t sg_tx_write(sg_tx *t, const void *buf, size_t len, int *want, sg_error *err);

/* Sets TCP keepalive (a no-op for a unix socket). */
int sg_tx_keepalive(sg_tx *t, sg_error *err);

/* Closes the connection (a TLS close_notify is attempted, never waited
 * for); a closed or zeroed-and-fd=-1 t is a no-op. */
void sg_tx_close(sg_tx *t);

/* Commands queued for a connection, in RESP: [pos, len) of p is not sent
 * yet. Zero-initialise; both the blocking and the loop connection use it. */
typedef struct sg_txbuf {
    char *p;
    size_t pos, len, cap;
} sg_txbuf;

/* Appends a command (argvlen NULL: NUL-terminated arguments), written in
 * one pass straight into the buffer; what was sent makes room first. */
void sg_txbuf_command(sg_txbuf *b, int argc, const char **argv, const size_t *argvlen);

/* Whether some of b is not sent yet. */
static inline bool sg_txbuf_pending(const sg_txbuf *b)
{
    return b->pos < b->len;
}

/* Sends what t takes now: 0 with *want 0 when all went, with *want set
 * when t must wait first; or sg_tx_write's error. */
int sg_txbuf_send(sg_txbuf *b, sg_tx *t, int *want, sg_error *err);

void sg_txbuf_free(sg_txbuf *b);

/* Blocking helpers for the one-shot commands. */

/* Resolves u's host, connects to its addresses in turn and completes the
 * handshake, waiting at most timeout_ms in all. */
int sg_tx_connect(sg_tx *t, const sg_redis_url *u, struct ssl_ctx_st *tls, int timeout_ms,
                  sg_error *err);

/* Whether host is a numeric IPv4 or IPv6 address (no lookup needed, no SNI). */
bool sg_tx_is_ip(const char *host);

/* Now on the scale of the deadlines below (CLOCK_MONOTONIC, ms). */
int64_t sg_tx_now_ms(void);

/* Waits until t's socket is ready for want (SG_TX_WANT_*), or until
 * deadline_ms: 0 when ready, 1 when the deadline passed first, or an error. */
int sg_tx_wait(const sg_tx *t, int want, int64_t deadline_ms, sg_error *err);

#endif
