/* Redis addresses: redis://[user[:password]@]host[:port][/db], the same
 * with rediss:// for TLS, unix:///path[?db=N], and a master behind
 * Sentinel in Lettuce's convention,
 * redis-sentinel://[password@]host[:port][,host[:port]...][/db]#master-name
 * (sentinel port 26379 by default; the password is the master's). The
 * password lives only in memory: the redacted form used for logs, output
 * and the store never contains it. */
#ifndef STORMGUARD_REDIS_URL_H
#define STORMGUARD_REDIS_URL_H

#include <stdbool.h>

#include "stormguard/base/error.h"

/* How to speak TLS to the server ([redis] tls ..., the flags redis-cli
 * names alike). The chain and the host name are verified unless insecure. */
typedef struct sg_redis_tls {
    bool enabled;    /* rediss://, --tls or [redis] tls */
    bool insecure;   /* --insecure: neither chain nor host name is checked */
    char *cacert;    /* PEM file of trusted CAs; NULL with cacertdir NULL: the system's */
    char *cacertdir; /* directory of hashed CA certificates (openssl rehash) */
    char *cert;      /* client certificate chain (PEM), for servers that ask */
    char *key;       /* its private key */
    char *sni;       /* name sent as SNI and verified; NULL: the URL's host */
} sg_redis_tls;

#define SG_SENTINEL_PORT 26379

typedef struct sg_redis_sentinel {
    char *host;
    int port;
} sg_redis_sentinel;

typedef struct sg_redis_url {
    char *host;     /* NULL for a unix socket */
    int port;       /* 6379 unless given */
    char *path;     /* unix socket path, or NULL */
    char *user;     /* NULL: default user */
    char *password; /* NULL: no AUTH */
    int db;
    sg_redis_tls tls;
    /* Sentinel: the master's name and the sentinels to ask for its address
     * (host and port are then NULL and 6379 until sg_sentinel_resolve
     * fills them); sentinel_password is the sentinels' own, if any. */
    char *master_name;
    sg_redis_sentinel *sentinels;
    int nsentinels;
    char *sentinel_password;
} sg_redis_url;

/* Parses url into out (zeroed first). On error returns SG_EUSAGE and err
 * says what part of the URL is wrong; out then holds nothing to free. */
int sg_redis_url_parse(const char *url, sg_redis_url *out, sg_error *err);

/* Adds the settings of the configuration that a URL cannot hold to u
 * (strings copied): TLS, enabled if either says so, a file or name given in
 * tls replacing u's; and the sentinels' password. NULL or "" is none. A unix
 * socket with TLS is SG_EUSAGE (Redis offers TLS on TCP only). */
int sg_redis_url_configure(sg_redis_url *u, const sg_redis_tls *tls, const char *sentinel_password,
                           sg_error *err);

/* Fills a missing password from STORMGUARD_REDIS_PASSWORD, then REDISCLI_AUTH. */
void sg_redis_url_password_from_env(sg_redis_url *u);

/* The URL without its password ("redis://admin@10.0.0.5:6379/0", rediss://
 * with TLS); caller frees. */
char *sg_redis_url_redacted(const sg_redis_url *u);

/* "10.0.0.5:6379" or the socket path, for error messages; for a Sentinel
 * URL not yet resolved "master mymaster (sentinels 10.0.0.1:26379,...)";
 * caller frees. */
char *sg_redis_url_address(const sg_redis_url *u);

/* Deep copy of u into out. */
void sg_redis_url_copy(sg_redis_url *out, const sg_redis_url *u);

void sg_redis_url_close(sg_redis_url *u);

#endif
