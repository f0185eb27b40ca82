/* Synchronous hiredis connection for the one-shot subcommands (rconn.h). */
#include "stormguard/redis/rconn.h"

#include <ctype.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stormguard/base/util.h"
#include "stormguard/redis/reply.h"

/* Long enough for a DUMP of a big key or a page of a slow SCAN. */

static int io_error(sg_rconn *c, sg_error *err, const char *doing)
{
    int e = errno;
    if (c->ctx->err == REDIS_ERR_IO && (e == EAGAIN || e == EWOULDBLOCK))
        return sg_error_set(err, SG_EREDIS,
                            "redis %s did not answer %s within %d ms ([redis] timeout, "
                            "--timeout): it accepts connections but does not reply",
                            c->address, c->waiting[0] ? c->waiting : "a command", c->command_ms);
    const char *why = c->ctx->errstr[0] ? c->ctx->errstr : strerror(e);
    if (c->ctx->err == REDIS_ERR_EOF)
        why = "connection closed by the server";
    return sg_error_set(err, SG_EREDIS, "%s redis %s: %s", doing, c->address, why);
}

/* Remembers which command the connection now waits on (upper case). */
static void waiting_for(sg_rconn *c, const char *name, size_t len)
{
    snprintf(c->waiting, sizeof c->waiting, "%.*s", (int)len, name);
    for (char *p = c->waiting; *p; p++)
        *p = (char)toupper((unsigned char)*p);
}

int sg_rconn_reply_error(sg_rconn *c, const char *command, const redisReply *r, sg_error *err)
{
    const char *msg = r->str ? r->str : "error";
    if (!strncmp(msg, "NOPERM", 6))
        return sg_error_set(err, SG_EREDIS, "redis %s denied %s to this user (ACL): %s", c->address,
                            command, msg);
    if (!strncasecmp(msg, "ERR unknown command", 19))
        return sg_error_set(err, SG_EREDIS, "redis %s does not offer %s (renamed or disabled): %s",
                            c->address, command, msg);
    if (!strncmp(msg, "NOAUTH", 6))
        return sg_error_set(err, SG_EREDIS,
                            "redis %s requires authentication: give a password in the URL, "
                            "STORMGUARD_REDIS_PASSWORD or REDISCLI_AUTH (%s)",
                            c->address, msg);
    return sg_error_set(err, SG_EREDIS, "%s on redis %s: %s", command, c->address, msg);
}

int sg_rconn_command(sg_rconn *c, redisReply **out, sg_error *err, int argc, const char **argv,
                     const size_t *argvlen)
{
    waiting_for(c, argv[0], argvlen ? argvlen[0] : strlen(argv[0]));
    redisReply *r = redisCommandArgv(c->ctx, argc, argv, argvlen);
    if (!r)
        return io_error(c, err, "talking to");
    if (r->type == REDIS_REPLY_ERROR) {
        char name[32];
        snprintf(name, sizeof name, "%.*s", (int)(argvlen ? argvlen[0] : strlen(argv[0])), argv[0]);
        for (char *p = name; *p; p++)
            *p = (char)toupper((unsigned char)*p);
        int rc = sg_rconn_reply_error(c, name, r, err);
        freeReplyObject(r);
        return rc;
    }
    *out = r;
    return 0;
}

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

/* The command in RESP, written in one pass into one buffer: hiredis's own
 * formatting (sdscatfmt, an allocation per argument) was a tenth of a
 * snapshot's CPU time, which pipelines two commands per key. */
int sg_rconn_append(sg_rconn *c, sg_error *err, int argc, const char **argv, const size_t *argvlen)
{
    waiting_for(c, argv[0], argvlen ? argvlen[0] : strlen(argv[0]));
    size_t total = 24 + 2;
    for (int i = 0; i < argc; i++)
        total += 24 + 2 + (argvlen ? argvlen[i] : strlen(argv[i])) + 2;
    char stack[1024];
    char *buf = total <= sizeof stack ? stack : sg_xmalloc(total);
    char *p = put_count(buf, '*', (size_t)argc);
    for (int i = 0; i < argc; i++) {
        size_t n = argvlen ? argvlen[i] : strlen(argv[i]);
        p = put_count(p, '$', n);
        memcpy(p, argv[i], n);
        p += n;
        *p++ = '\r';
        *p++ = '\n';
    }
    int rc = redisAppendFormattedCommand(c->ctx, buf, (size_t)(p - buf));
    if (buf != stack)
        free(buf);
    if (rc != REDIS_OK)
        return io_error(c, err, "queueing a command for");
    return 0;
}

int sg_rconn_read(sg_rconn *c, redisReply **out, sg_error *err)
{
    void *r = NULL;
    if (redisGetReply(c->ctx, &r) != REDIS_OK || !r)
        return io_error(c, err, "reading from");
    *out = r;
    return 0;
}

int sg_rconn_flush(sg_rconn *c, sg_error *err)
{
    int done = 0;
    while (!done)
        if (redisBufferWrite(c->ctx, &done) != REDIS_OK)
            return io_error(c, err, "writing to");
    return 0;
}

static int simple(sg_rconn *c, sg_error *err, int argc, const char **argv)
{
    redisReply *r = NULL;
    int rc = sg_rconn_command(c, &r, err, argc, argv, NULL);
    if (rc == 0)
        freeReplyObject(r);
    return rc;
}

int sg_rconn_select(sg_rconn *c, int db, sg_error *err)
{
    char dbs[16];
    snprintf(dbs, sizeof dbs, "%d", db);
    const char *argv[] = {"SELECT", dbs};
    int rc = simple(c, err, 2, argv);
    if (rc == 0)
        c->db = db;
    return rc;
}

int sg_rconn_open(sg_rconn *c, const sg_redis_url *u, int timeout_ms, int command_ms, sg_error *err)
{
    memset(c, 0, sizeof *c);
    sg_redis_url_copy(&c->url, u);
    c->timeout_ms = timeout_ms;
    c->command_ms = command_ms > 0 ? command_ms : SG_REDIS_TIMEOUT_MS;
    c->address = sg_redis_url_address(u);
    c->redacted = sg_redis_url_redacted(u);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    c->ctx = u->path ? redisConnectUnixWithTimeout(u->path, tv)
                     : redisConnectWithTimeout(u->host, u->port, tv);
    if (!c->ctx) {
        sg_error_set(err, SG_EREDIS, "cannot reach redis %s: out of memory", c->address);
        sg_rconn_close(c);
        return SG_EREDIS;
    }
    if (c->ctx->err) {
        sg_error_set(err, SG_EREDIS, "cannot reach redis %s: %s", c->address, c->ctx->errstr);
        sg_rconn_close(c);
        return SG_EREDIS;
    }
    struct timeval cmd = {c->command_ms / 1000, (c->command_ms % 1000) * 1000};
    redisSetTimeout(c->ctx, cmd);

    int rc = 0;
    if (u->password) {
        const char *argv[] = {"AUTH", u->user ? u->user : u->password, u->password};
        waiting_for(c, "AUTH", 4);
        redisReply *r = redisCommandArgv(c->ctx, u->user ? 3 : 2, argv, NULL);
        if (!r) {
            rc = io_error(c, err, "authenticating to");
        } else if (r->type == REDIS_REPLY_ERROR) {
            rc = sg_error_set(err, SG_EREDIS, "authenticating to redis %s as user '%s': %s",
                              c->address, u->user ? u->user : "default", r->str);
        }
        if (r)
            freeReplyObject(r);
    } else if (u->user) {
        rc = sg_error_set(err, SG_EUSAGE,
                          "redis URL names user '%s' but no password was given (URL, "
                          "STORMGUARD_REDIS_PASSWORD or REDISCLI_AUTH)",
                          u->user);
    }
    if (rc == 0) {
        const char *ping[] = {"PING"};
        rc = simple(c, err, 1, ping);
    }
    if (rc == 0 && u->db)
        rc = sg_rconn_select(c, u->db, err);
    if (rc) {
        sg_rconn_close(c);
        return rc;
    }
    c->db = u->db;
    return 0;
}

void sg_rconn_close(sg_rconn *c)
{
    if (c->ctx)
        redisFree(c->ctx);
    free(c->address);
    free(c->redacted);
    sg_redis_url_close(&c->url);
    memset(c, 0, sizeof *c);
}

int sg_rconn_clone(const sg_rconn *c, sg_rconn *out, sg_error *err)
{
    int rc = sg_rconn_open(out, &c->url, c->timeout_ms, c->command_ms, err);
    if (rc == 0 && out->db != c->db)
        rc = sg_rconn_select(out, c->db, err);
    if (rc)
        sg_rconn_close(out);
    return rc;
}

int sg_rconn_info_field(sg_rconn *c, const char *section, const char *field, char **out,
                        sg_error *err)
{
    const char *argv[] = {"INFO", section};
    redisReply *r = NULL;
    int rc = sg_rconn_command(c, &r, err, 2, argv, NULL);
    if (rc)
        return rc;
    *out = r->type == REDIS_REPLY_STRING ? sg_reply_info_field(r->str, field) : NULL;
    freeReplyObject(r);
    return 0;
}

int sg_rdb_version_for_redis(const char *v)
{
    int major = 0, minor = 0;
    if (!v || sscanf(v, "%d.%d", &major, &minor) < 1)
        return 0;
    /* RDB format versions by release (Redis's rdb.h RDB_VERSION). */
    if (major > 7 || (major == 7 && minor >= 4))
        return 12;
    if (major == 7 && minor >= 2)
        return 11;
    if (major == 7)
        return 10;
    if (major >= 5)
        return 9;
    if (major == 4)
        return 8;
    if (major == 3 && minor >= 2)
        return 7;
    return 6;
}

int sg_rconn_nonempty_dbs(sg_rconn *c, int **out, int *count, sg_error *err)
{
    const char *argv[] = {"INFO", "keyspace"};
    redisReply *r = NULL;
    int rc = sg_rconn_command(c, &r, err, 2, argv, NULL);
    if (rc)
        return rc;
    int *dbs = NULL, n = 0;
    if (r->type == REDIS_REPLY_STRING)
        sg_reply_info_dbs(r->str, &dbs, &n);
    freeReplyObject(r);
    *out = dbs;
    *count = n;
    return 0;
}
