/* Redis addresses: redis://[user[:password]@]host[:port][/db] and
 * unix:///path[?db=N]. The password lives only in memory: the redacted form
 * used for logs, output and the store never contains it. */
#ifndef STORMGUARD_REDIS_URL_H
#define STORMGUARD_REDIS_URL_H

#include "stormguard/base/error.h"

typedef struct sg_redis_url {
    char *host;     /* NULL for a unix socket */
    int port;       /* 6379 unless given */
    char *path;     /* unix socket path, or NULL */
    char *user;     /* NULL: default user */
    char *password; /* NULL: no AUTH */
    int db;
} sg_redis_url;

/* Parses url into out (zeroed first). On error returns SG_EUSAGE and err
 * says what part of the URL is wrong; out then holds nothing to free. */
int sg_redis_url_parse(const char *url, sg_redis_url *out, sg_error *err);

/* Fills a missing password from STORMGUARD_REDIS_PASSWORD, then REDISCLI_AUTH. */
void sg_redis_url_password_from_env(sg_redis_url *u);

/* The URL without its password ("redis://admin@10.0.0.5:6379/0"); caller frees. */
char *sg_redis_url_redacted(const sg_redis_url *u);

/* "10.0.0.5:6379" or the socket path, for error messages; caller frees. */
char *sg_redis_url_address(const sg_redis_url *u);

/* Deep copy of u into out. */
void sg_redis_url_copy(sg_redis_url *out, const sg_redis_url *u);

void sg_redis_url_close(sg_redis_url *u);

#endif
