/* libFuzzer target: Redis URLs (redis_url.h) from arbitrary text. A URL that
 * parses redacts to text that does not depend on its password (so never
 * holds it) and that parses again to the same server, user and database,
 * without a password, and redacts to itself. A URL that does not parse
 * leaves nothing behind, and its message is one of a few fixed ones. Built
 * and run by tests/fuzz/run.sh redis_url. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/base/util.h"
#include "stormguard/redis/redis_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

static void check_parsed(const char *url, const sg_redis_url *u)
{
    /* one kind of place: a host, a socket path, or sentinels and a name */
    int places = !!u->host + !!u->path + !!u->master_name;
    if (places != 1 || (u->host && !*u->host) || u->port < 1 || u->port > 65535 || u->db < 0 ||
        (u->password && !*u->password) || !u->master_name != !u->nsentinels ||
        (u->master_name && !*u->master_name))
        abort();
    for (int i = 0; i < u->nsentinels; i++)
        if (!*u->sentinels[i].host || u->sentinels[i].port < 1 || u->sentinels[i].port > 65535)
            abort();
    char *red = sg_redis_url_redacted(u);
    sg_redis_url bare;
    sg_redis_url_copy(&bare, u);
    free(bare.password);
    bare.password = NULL;
    char *bare_red = sg_redis_url_redacted(&bare);
    if (strcmp(red, bare_red)) {
        fprintf(stderr, "the redacted form of %s depends on the password: %s\n", url, red);
        abort();
    }
    sg_redis_url again;
    sg_error err = {0};
    if (sg_redis_url_parse(red, &again, &err)) {
        fprintf(stderr, "%s redacts to %s, which does not parse: %s\n", url, red, err.msg);
        abort();
    }
    bool same_sentinels =
        again.nsentinels == u->nsentinels && same(again.master_name, u->master_name);
    for (int i = 0; same_sentinels && i < u->nsentinels; i++)
        same_sentinels = same(again.sentinels[i].host, u->sentinels[i].host) &&
                         again.sentinels[i].port == u->sentinels[i].port;
    if (!same(again.host, u->host) || !same(again.path, u->path) || !same(again.user, u->user) ||
        again.port != u->port || again.db != u->db || again.password || !same_sentinels ||
        again.tls.enabled != u->tls.enabled) {
        fprintf(stderr, "%s redacts to %s, which names another server\n", url, red);
        abort();
    }
    char *red2 = sg_redis_url_redacted(&again);
    if (strcmp(red, red2))
        abort();
    char *addr = sg_redis_url_address(u);
    free(addr);
    free(red2);
    free(bare_red);
    free(red);
    sg_redis_url_close(&again);
    sg_redis_url_close(&bare);
}

/* An error names what is wrong and never repeats the URL, which may hold a
 * password: its messages are a small fixed set, whatever the input. */
static void fixed_message(const char *msg)
{
    static char seen[64][SG_ERRMSG_MAX];
    static size_t n;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(seen[i], msg))
            return;
    if (n == sizeof seen / sizeof seen[0]) {
        fprintf(stderr, "more than %zu distinct messages; this one: %s\n", n, msg);
        abort();
    }
    snprintf(seen[n++], sizeof seen[0], "%s", msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = sg_xstrndup((const char *)data, size); /* text: up to a NUL */
    sg_redis_url u;
    sg_error err = {0};
    if (sg_redis_url_parse(url, &u, &err) == 0) {
        check_parsed(url, &u);
        sg_redis_url_close(&u);
    } else {
        if (u.host || u.path || u.user || u.password || strncmp(err.msg, "bad redis URL: ", 15))
            abort();
        fixed_message(err.msg);
    }
    free(url);
    return 0;
}
