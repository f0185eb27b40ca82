/* The blocking Redis connection of the one-shot subcommands (rconn.h):
 * hiredis's reader parses, transport.h moves the bytes, and every wait is
 * bounded by a deadline. */
#include "stormguard/redis/rconn.h"

#include <ctype.h>
#include <stdatomic.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stormguard/base/log.h"
#include "stormguard/base/util.h"
#include "stormguard/redis/reply.h"
#include "stormguard/redis/slot.h"

static int open_server(sg_rconn *c, const sg_redis_url *u, int timeout_ms, int command_ms,
                       sg_error *err);

/* Bytes read from the server at once: a page of SCAN or a pipeline of DUMP
 * replies arrives in a few reads. */
#define READ_CHUNK 65536

/* What a server closing a plain connection at once, or answering in TLS
 * records, most likely means. */
static const char *tls_hint(const sg_rconn *c)
{
    if (c->tx.received)
        return "";
    /* TLS 1.3 refuses a missing client certificate after the handshake:
     * the first write or read then meets the closed connection */
    return c->url.tls.enabled ? " (a server that wants a client certificate closes the "
                                "connection like this: --cert FILE --key FILE)"
                              : " (if this is a TLS port, use rediss:// or --tls)";
}

/* The connection's sticky failure, if it has one, into err. */
static int still_broken(const sg_rconn *c, sg_error *err)
{
    if (!c->broken.code)
        return 0;
    if (err)
        *err = c->broken;
    return c->broken.code;
}

/* Records c's failure (c->broken, already written) for every later call. */
static int broke(sg_rconn *c, sg_error *err)
{
    if (err)
        *err = c->broken;
    return c->broken.code;
}

/* An error of the transport while doing something: the message names the
 * address; a peer that closed says so. */
static int io_error(sg_rconn *c, sg_error *err, const char *doing, const char *why)
{
    sg_error_set(&c->broken, SG_EREDIS, "%s redis %s: %s%s", doing, c->address, why,
                 c->tx.eof ? tls_hint(c) : "");
    return broke(c, err);
}

/* got: bytes of the awaited reply that did arrive (a reply too slow, not a
 * silent server). */
static int timed_out(sg_rconn *c, size_t got, sg_error *err)
{
    const char *what = c->waiting[0] ? c->waiting : "a command";
    if (got)
        sg_error_set(&c->broken, SG_EREDIS,
                     "redis %s did not finish answering %s within %d ms ([redis] timeout, "
                     "--timeout): %zu bytes of the reply came, then it was too slow",
                     c->address, what, c->command_ms, got);
    else
        sg_error_set(&c->broken, SG_EREDIS,
                     "redis %s did not answer %s within %d ms ([redis] timeout, --timeout): "
                     "it accepts connections but does not reply",
                     c->address, what, c->command_ms);
    return broke(c, err);
}

/* Remembers which command the connection now waits on (upper case). */
static void waiting_for(sg_rconn *c, const char *name, size_t len)
{
    snprintf(c->waiting, sizeof c->waiting, "%.*s", (int)len, name);
    for (char *p = c->waiting; *p; p++)
        *p = (char)toupper((unsigned char)*p);
}

/* Sends what it can of the queued output without waiting: 0, or an error.
 * *want is set when the transport must wait before sending more. */
static int send_some(sg_rconn *c, int *want, sg_error *err)
{
    sg_error e;
    return sg_txbuf_send(&c->out, &c->tx, want, &e) ? io_error(c, err, "writing to", e.msg) : 0;
}

int sg_rconn_flush(sg_rconn *c, sg_error *err)
{
    int rc = still_broken(c, err);
    int64_t deadline = sg_tx_now_ms() + c->command_ms;
    while (rc == 0 && sg_txbuf_pending(&c->out)) {
        int want = 0;
        if ((rc = send_some(c, &want, err)))
            break;
        if (want && (rc = sg_tx_wait(&c->tx, want, deadline, &c->broken)))
            rc = rc == 1 ? timed_out(c, 0, err) : broke(c, err);
    }
    return rc;
}

/* The reader's parse error, in words: a TLS record where RESP belongs is a
 * TLS port spoken to in plain text. */
static int protocol_error(sg_rconn *c, sg_error *err)
{
    redisReader *r = c->reader;
    bool tls_record = r->len > 0 && (r->buf[0] == 0x15 || r->buf[0] == 0x16);
    if (tls_record && !c->url.tls.enabled)
        sg_error_set(&c->broken, SG_EREDIS,
                     "redis %s answered in TLS: use rediss:// or --tls for this port", c->address);
    else
        sg_error_set(&c->broken, SG_EREDIS, "redis %s sent a reply that is not RESP: %s",
                     c->address, r->errstr);
    return broke(c, err);
}

int sg_rconn_read(sg_rconn *c, redisReply **out, sg_error *err)
{
    int rc = still_broken(c, err);
    if (rc)
        return rc;
    int64_t deadline = sg_tx_now_ms() + c->command_ms;
    size_t got = 0;
    char buf[READ_CHUNK];
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(c->reader, &reply) != REDIS_OK)
            return protocol_error(c, err);
        if (reply) {
            *out = reply;
            return 0;
        }
        /* queued commands go out while the reply is awaited: a pipeline
         * longer than the socket buffers would otherwise stall both ends */
        int want_out = 0, want_in = 0;
        if ((rc = send_some(c, &want_out, err)))
            return rc;
        sg_error e;
        ssize_t n = sg_tx_read(&c->tx, buf, sizeof buf, &want_in, &e);
        if (n < 0)
            return io_error(c, err, "reading from", e.msg);
        if (n > 0) {
            got += (size_t)n;
            if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK)
                return protocol_error(c, err);
            continue;
        }
        if ((rc = sg_tx_wait(&c->tx, want_in | want_out, deadline, &c->broken)))
            return rc == 1 ? timed_out(c, got, err) : broke(c, err);
    }
}

int sg_rconn_read_raw(sg_rconn *c, void *buf, size_t cap, size_t *got, int idle_ms, sg_error *err)
{
    int rc = still_broken(c, err);
    if (rc)
        return rc;
    *got = 0;
    redisReader *r = c->reader;
    if (r->len > r->pos) {
        size_t n = r->len - r->pos < cap ? r->len - r->pos : cap;
        memcpy(buf, r->buf + r->pos, n);
        r->pos += n;
        *got = n;
        return 0;
    }
    for (;;) {
        int want = 0;
        sg_error e;
        ssize_t n = sg_tx_read(&c->tx, buf, cap, &want, &e);
        if (n > 0) {
            *got = (size_t)n;
            return 0;
        }
        /* the end of the stream is no failure here; a reset is */
        if (n < 0)
            return c->tx.eof && !c->tx.reset ? 0 : io_error(c, err, "reading from", e.msg);
        if ((rc = sg_tx_wait(&c->tx, want, sg_tx_now_ms() + idle_ms, &c->broken)))
            return rc == 1 ? 1 : broke(c, err);
    }
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
    redisReply *r = NULL;
    int rc = sg_rconn_append(c, err, argc, argv, argvlen);
    if (rc || (rc = sg_rconn_read(c, &r, err)))
        return rc;
    if (r->type == REDIS_REPLY_ERROR) {
        char name[32];
        snprintf(name, sizeof name, "%.*s", (int)(argvlen ? argvlen[0] : strlen(argv[0])), argv[0]);
        for (char *p = name; *p; p++)
            *p = (char)toupper((unsigned char)*p);
        rc = sg_rconn_reply_error(c, name, r, err);
        freeReplyObject(r);
        return rc;
    }
    *out = r;
    return 0;
}

/* Queues the command; the connection's read or flush sends it. */
int sg_rconn_append(sg_rconn *c, sg_error *err, int argc, const char **argv, const size_t *argvlen)
{
    int rc = still_broken(c, err);
    if (rc)
        return rc;
    waiting_for(c, argv[0], argvlen ? argvlen[0] : strlen(argv[0]));
    sg_txbuf_command(&c->out, argc, argv, argvlen);
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

/* Asks one sentinel for the master's address. */
static int ask_sentinel(const sg_redis_url *u, int i, int timeout_ms, int command_ms, char **host,
                        int *port, sg_error *err)
{
    sg_redis_url s = {.host = u->sentinels[i].host,
                      .port = u->sentinels[i].port,
                      .password = u->sentinel_password,
                      .tls = u->tls};
    sg_rconn c;
    int rc = sg_rconn_open(&c, &s, timeout_ms, command_ms, err);
    if (rc)
        return rc;
    const char *argv[] = {"SENTINEL", "get-master-addr-by-name", u->master_name};
    redisReply *r = NULL;
    rc = sg_rconn_command(&c, &r, err, 3, argv, NULL);
    int64_t p = 0;
    if (rc == 0 && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING &&
        sg_parse_int64(r->element[1]->str, 1, 65535, &p) == 0) {
        *host = sg_xstrdup(r->element[0]->str);
        *port = (int)p;
    } else if (rc == 0) {
        rc = sg_error_set(err, SG_EREDIS, "it knows no master named %s%s", u->master_name,
                          r->type == REDIS_REPLY_NIL ? "" : " (an unexpected reply)");
    }
    if (r)
        freeReplyObject(r);
    sg_rconn_close(&c);
    return rc;
}

int sg_rconn_resolve_master(const sg_redis_url *u, int timeout_ms, int command_ms,
                            sg_redis_url *out, int *which, sg_error *err)
{
    sg_buf why = {0};
    for (int i = 0; i < u->nsentinels; i++) {
        char *host = NULL;
        int port = 0;
        sg_error e = {0};
        if (ask_sentinel(u, i, timeout_ms, command_ms, &host, &port, &e) == 0) {
            sg_buf_free(&why);
            sg_redis_url_copy(out, u);
            out->host = host;
            out->port = port;
            if (which)
                *which = i;
            return 0;
        }
        sg_buf_printf(&why, "%s%s:%d: %s", i ? "; " : "", u->sentinels[i].host,
                      u->sentinels[i].port, e.msg);
    }
    int rc = sg_error_set(err, SG_EREDIS, "no sentinel named the master %s: %s", u->master_name,
                          why.p ? why.p : "no sentinels");
    sg_buf_free(&why);
    return rc;
}

int sg_rconn_check_standalone(const sg_rconn *c, sg_error *err)
{
    if (!strcmp(c->mode, "cluster"))
        return sg_error_set(err, SG_EREFUSED,
                            "redis %s is a node of a Redis Cluster, which stormguard does not "
                            "cover yet: acting on this node would reach only its share of the "
                            "keys; nothing was done",
                            c->address);
    if (!strcmp(c->mode, "sentinel"))
        return sg_error_set(err, SG_EUSAGE,
                            "redis %s is a Sentinel, not a Redis server: name the master through "
                            "it, redis-sentinel://%s#<master-name>",
                            c->address, c->address);
    return 0;
}

static int by_first_slot(const void *a, const void *b)
{
    const sg_rconn_cluster_master *x = a, *y = b;
    return x->first_slot < y->first_slot ? -1 : x->first_slot > y->first_slot;
}

/* The layout is "start-end host:port" per range, in the server's order. */
int sg_rconn_cluster_slots(sg_rconn *c, sg_rconn_cluster_master **out, int *n, char **layout,
                           int16_t *owner, sg_error *err)
{
    const char *argv[] = {"CLUSTER", "SLOTS"};
    redisReply *r = NULL;
    int rc = sg_rconn_command(c, &r, err, 2, argv, NULL);
    if (rc)
        return rc;
    sg_rconn_cluster_master *m = NULL;
    int count = 0;
    sg_buf lay = {0};
    int16_t *by_first = owner ? sg_xmalloc(SG_CLUSTER_SLOTS * sizeof *by_first) : NULL;
    for (int i = 0; by_first && i < SG_CLUSTER_SLOTS; i++)
        by_first[i] = -1;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *range = r->element[i];
        /* [start, end, [ip, port, id, ...] (the master), replicas...] */
        if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 ||
            range->element[0]->type != REDIS_REPLY_INTEGER ||
            range->element[1]->type != REDIS_REPLY_INTEGER ||
            range->element[2]->type != REDIS_REPLY_ARRAY || range->element[2]->elements < 2 ||
            range->element[2]->element[0]->type != REDIS_REPLY_STRING ||
            range->element[2]->element[1]->type != REDIS_REPLY_INTEGER) {
            rc = sg_error_set(err, SG_EREDIS, "redis %s answered CLUSTER SLOTS in a form not known",
                              c->address);
            break;
        }
        const char *host = range->element[2]->element[0]->str;
        int port = (int)range->element[2]->element[1]->integer;
        /* an empty host means the node itself, as the client reached it */
        if (!*host)
            host = c->url.host;
        bool v6 = strchr(host, ':') != NULL; /* as sg_redis_url_address writes it */
        sg_buf_printf(&lay, "%lld-%lld %s%s%s:%d\n", (long long)range->element[0]->integer,
                      (long long)range->element[1]->integer, v6 ? "[" : "", host, v6 ? "]" : "",
                      port);
        int j = 0;
        while (j < count && (m[j].port != port || strcmp(m[j].host, host)))
            j++;
        if (j == count) {
            m = sg_xrealloc(m, (size_t)(count + 1) * sizeof *m);
            m[count++] =
                (sg_rconn_cluster_master){sg_xstrdup(host), port, range->element[0]->integer};
        } else if (range->element[0]->integer < m[j].first_slot) {
            m[j].first_slot = range->element[0]->integer;
        }
        /* the index before sorting, mapped to the sorted one below */
        for (int64_t s = range->element[0]->integer;
             by_first && s <= range->element[1]->integer && s < SG_CLUSTER_SLOTS; s++)
            if (s >= 0)
                by_first[s] = (int16_t)j;
    }
    freeReplyObject(r);
    if (rc == 0 && count == 0)
        rc = sg_error_set(err, SG_EREDIS,
                          "redis %s is a Cluster node that serves no slots yet "
                          "(CLUSTER SLOTS is empty)",
                          c->address);
    if (rc) {
        for (int j = 0; j < count; j++)
            free(m[j].host);
        free(m);
        free(by_first);
        sg_buf_free(&lay);
        return rc;
    }
    if (by_first) {
        /* sort by first slot, keeping where each master was */
        int16_t *rank = sg_xmalloc((size_t)count * sizeof *rank);
        for (int j = 0; j < count; j++) {
            rank[j] = 0;
            for (int k = 0; k < count; k++)
                rank[j] += m[k].first_slot < m[j].first_slot;
        }
        for (int s = 0; s < SG_CLUSTER_SLOTS; s++)
            owner[s] = by_first[s] < 0 ? -1 : rank[by_first[s]];
        free(rank);
        free(by_first);
    }
    qsort(m, (size_t)count, sizeof *m, by_first_slot);
    *out = m;
    *n = count;
    *layout = lay.p;
    return 0;
}

int sg_rconn_cluster_layout(sg_rconn *c, char **layout, sg_error *err)
{
    sg_rconn_cluster_master *m = NULL;
    int n = 0;
    int rc = sg_rconn_cluster_slots(c, &m, &n, layout, NULL, err);
    sg_rconn_cluster_masters_free(m, n);
    return rc;
}

void sg_rconn_cluster_masters_free(sg_rconn_cluster_master *m, int n)
{
    for (int i = 0; i < n; i++)
        free(m[i].host);
    free(m);
}

int sg_rconn_cluster_masters(sg_rconn *c, sg_rconn **out, int *n, char **layout, sg_error *err)
{
    return sg_rconn_cluster_map(c, out, n, layout, NULL, err);
}

int sg_rconn_cluster_map(sg_rconn *c, sg_rconn **out, int *n, char **layout, int16_t *owner,
                         sg_error *err)
{
    sg_rconn_cluster_master *m = NULL;
    int count = 0;
    int rc = sg_rconn_cluster_slots(c, &m, &count, layout, owner, err);
    if (rc)
        return rc;
    sg_rconn *nodes = sg_xcalloc((size_t)count, sizeof *nodes);
    int opened = 0;
    for (; rc == 0 && opened < count; opened++) {
        sg_redis_url u;
        sg_redis_url_copy(&u, &c->url);
        free(u.host);
        u.host = sg_xstrdup(m[opened].host);
        u.port = m[opened].port;
        rc = open_server(&nodes[opened], &u, c->timeout_ms, c->command_ms, err);
        sg_redis_url_close(&u);
        if (rc)
            break;
    }
    sg_rconn_cluster_masters_free(m, count);
    if (rc) {
        for (int i = 0; i < opened; i++)
            sg_rconn_close(&nodes[i]);
        free(nodes);
        free(*layout);
        *layout = NULL;
        return rc;
    }
    *out = nodes;
    *n = count;
    return 0;
}

int sg_rconn_check_master(sg_rconn *c, sg_error *err)
{
    const char *argv[] = {"ROLE"};
    redisReply *r = NULL;
    int rc = sg_rconn_command(c, &r, err, 1, argv, NULL);
    if (rc)
        return rc;
    const char *role =
        r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0]->type == REDIS_REPLY_STRING
            ? r->element[0]->str
            : "?";
    if (strcmp(role, "master"))
        rc = sg_error_set(err, SG_EREDIS,
                          "redis %s, which the sentinels name the master %s, says it is a %s "
                          "(a failover under way? try again)",
                          c->address, c->url.master_name ? c->url.master_name : "", role);
    freeReplyObject(r);
    return rc;
}

int sg_rconn_open(sg_rconn *c, const sg_redis_url *u, int timeout_ms, int command_ms, sg_error *err)
{
    if (!u->master_name || u->host)
        return open_server(c, u, timeout_ms, command_ms, err);
    sg_redis_url m;
    int rc = sg_rconn_resolve_master(u, timeout_ms, command_ms, &m, NULL, err);
    if (rc)
        return rc;
    rc = open_server(c, &m, timeout_ms, command_ms, err);
    sg_redis_url_close(&m);
    if (rc == 0 && (rc = sg_rconn_check_master(c, err)))
        sg_rconn_close(c);
    return rc;
}

static int open_server(sg_rconn *c, const sg_redis_url *u, int timeout_ms, int command_ms,
                       sg_error *err)
{
    memset(c, 0, sizeof *c);
    c->tx.fd = -1;
    sg_redis_url_copy(&c->url, u);
    c->timeout_ms = timeout_ms;
    c->command_ms = command_ms > 0 ? command_ms : SG_REDIS_TIMEOUT_MS;
    c->address = sg_redis_url_address(u);
    c->redacted = sg_redis_url_redacted(u);
    c->reader = redisReaderCreate();
    int rc = sg_tx_tls_new(u, &c->tls, err);
    static atomic_flag warned = ATOMIC_FLAG_INIT;
    if (rc == 0 && u->tls.insecure && !atomic_flag_test_and_set(&warned))
        sg_log(SG_LOG_WARN, "redis",
               "TLS to redis %s without verifying its certificate or name (--insecure, "
               "[redis] insecure): anyone on the path can pose as the server",
               c->address);
    if (rc == 0)
        rc = sg_tx_connect(&c->tx, u, c->tls, timeout_ms, err);
    if (rc == 0 && u->password) {
        const char *argv[] = {"AUTH", u->user ? u->user : u->password, u->password};
        redisReply *r = NULL;
        rc = sg_rconn_append(c, err, u->user ? 3 : 2, argv, NULL);
        char why[256];
        /* never r->str as is: a server without AUTH echoes its arguments */
        if (rc == 0 && (rc = sg_rconn_read(c, &r, err)) == 0 && r->type == REDIS_REPLY_ERROR)
            rc = sg_error_set(err, SG_EREDIS, "authenticating to redis %s as user '%s': %s",
                              c->address, u->user ? u->user : "default",
                              sg_reply_error_no_args(r->str, why, sizeof why));
        if (r)
            freeReplyObject(r);
    } else if (rc == 0 && u->user) {
        rc = sg_error_set(err, SG_EUSAGE,
                          "redis URL names user '%s' but no password was given (URL, "
                          "STORMGUARD_REDIS_PASSWORD or REDISCLI_AUTH)",
                          u->user);
    }
    if (rc == 0) {
        const char *ping[] = {"PING"};
        rc = simple(c, err, 1, ping);
    }
    /* what the server is, read once for every command on the connection */
    const char *info[] = {"INFO", "server"};
    redisReply *r = NULL;
    if (rc == 0 && (rc = sg_rconn_command(c, &r, err, 2, info, NULL)) == 0) {
        const char *text = r->type == REDIS_REPLY_STRING ? r->str : "";
        char *mode = sg_reply_info_field(text, "redis_mode");
        char *version = sg_reply_info_field(text, "redis_version");
        snprintf(c->mode, sizeof c->mode, "%s", mode ? mode : "standalone");
        snprintf(c->version, sizeof c->version, "%s", version ? version : "");
        free(mode);
        free(version);
        freeReplyObject(r);
    }
    if (rc == 0 && u->db && strcmp(c->mode, "sentinel"))
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
    if (c->address) /* opened (a zeroed c has fd 0, not a connection) */
        sg_tx_close(&c->tx);
    sg_tx_tls_free(c->tls);
    if (c->reader)
        redisReaderFree(c->reader);
    sg_txbuf_free(&c->out);
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
