/* Parsing of Redis URLs (see redis_url.h). Userinfo is percent-decoded so a
 * password may hold ':' '@' or '/'. */
#include "stormguard/redis/redis_url.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/base/util.h"

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into a new string; NULL on a bad escape or NUL. */
static char *pct_decode(const char *s, size_t n)
{
    char *out = sg_xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 1 < n ? hexval((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            *o++ = (char)(hi * 16 + lo);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

static int parse_db(const char *s, size_t n, int *out)
{
    char buf[16];
    if (n == 0 || n >= sizeof buf)
        return SG_EINVAL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    int64_t v;
    if (sg_parse_int64(buf, 0, 1000000, &v))
        return SG_EINVAL;
    *out = (int)v;
    return 0;
}

static int fail(sg_redis_url *out, sg_error *err, const char *url, const char *why)
{
    sg_redis_url_close(out);
    /* never echo the URL itself: it may hold a password */
    (void)url;
    return sg_error_set(err, SG_EUSAGE, "bad redis URL: %s", why);
}

static int parse_rest(const char *p, bool sentinel, const char *url, sg_redis_url *out,
                      sg_error *err);

static int parse_unix(const char *url, sg_redis_url *out, sg_error *err)
{
    const char *path = url + strlen("unix://");
    if (*path != '/')
        return fail(out, err, url, "unix:// needs an absolute socket path (unix:///path)");
    const char *q = strchr(path, '?');
    size_t plen = q ? (size_t)(q - path) : strlen(path);
    if (plen < 2)
        return fail(out, err, url, "unix:// socket path is empty");
    out->path = sg_xstrndup(path, plen);
    if (q) {
        if (strncmp(q + 1, "db=", 3) || parse_db(q + 4, strlen(q + 4), &out->db))
            return fail(out, err, url, "the only unix:// query is ?db=N with N a number");
    }
    return 0;
}

/* host[:port] in s[0..n), the host maybe an [IPv6] literal; *port keeps
 * its default when none is given. NULL, or what is wrong. */
static const char *parse_hostport(const char *p, size_t n, char **host, int *port)
{
    const char *host_end, *rest = p + n;
    if (*p == '[') {
        const char *rb = memchr(p, ']', n);
        if (!rb)
            return "unterminated [ in an IPv6 address";
        /* the redacted form would lose the brackets of one without a ':'
         * ("[[x]" becomes "[x"), and [x does not parse */
        if (memchr(p + 1, '[', (size_t)(rb - p - 1)))
            return "a [ inside the brackets of an IPv6 address";
        *host = sg_xstrndup(p + 1, (size_t)(rb - p - 1));
        host_end = rb + 1;
    } else {
        const char *colon = memchr(p, ':', n);
        host_end = colon ? colon : rest;
        *host = sg_xstrndup(p, (size_t)(host_end - p));
    }
    if (!**host)
        return "no host";
    if (host_end < rest) {
        if (*host_end != ':')
            return "unexpected text after the host";
        char buf[8];
        size_t len = (size_t)(rest - host_end - 1);
        int64_t v;
        if (len == 0 || len >= sizeof buf)
            return "port must be a number from 1 to 65535";
        memcpy(buf, host_end + 1, len);
        buf[len] = '\0';
        if (sg_parse_int64(buf, 1, 65535, &v))
            return "port must be a number from 1 to 65535";
        *port = (int)v;
    }
    return NULL;
}

int sg_redis_url_parse(const char *url, sg_redis_url *out, sg_error *err)
{
    memset(out, 0, sizeof *out);
    out->port = 6379;
    if (!url || !*url)
        return fail(out, err, url, "empty");
    if (!strncmp(url, "unix://", 7))
        return parse_unix(url, out, err);
    const char *p;
    bool sentinel = false;
    if (!strncmp(url, "rediss://", 9)) {
        out->tls.enabled = true;
        p = url + 9;
    } else if (!strncmp(url, "redis://", 8)) {
        p = url + 8;
    } else if (!strncmp(url, "redis-sentinel://", 17)) {
        sentinel = true;
        p = url + 17;
    } else {
        return fail(out, err, url,
                    "must start with redis://, rediss://, redis-sentinel:// or unix://");
    }
    /* redis-sentinel://...#master-name (Lettuce's convention) */
    const char *hash = sentinel ? strrchr(p, '#') : NULL;
    if (sentinel && !hash)
        return fail(out, err, url,
                    "redis-sentinel:// needs the master's name after a # "
                    "(redis-sentinel://host:26379#mymaster)");
    char *body = sg_xstrndup(p, hash ? (size_t)(hash - p) : strlen(p));
    if (hash) {
        out->master_name = pct_decode(hash + 1, strlen(hash + 1));
        if (!out->master_name || !*out->master_name) {
            free(body);
            return fail(out, err, url, "the master's name after # is empty or badly escaped");
        }
    }
    int rc = parse_rest(body, sentinel, url, out, err);
    free(body);
    return rc;
}

/* What follows the scheme (and precedes a #): [userinfo@]hosts[/db][?db=N]. */
static int parse_rest(const char *p, bool sentinel, const char *url, sg_redis_url *out,
                      sg_error *err)
{
    const char *end_auth = strpbrk(p, "/?");
    size_t hostpart_len = end_auth ? (size_t)(end_auth - p) : strlen(p);
    const char *at = memrchr(p, '@', hostpart_len);
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        /* Lettuce's redis-sentinel://password@...: without a ':' the
         * userinfo is the password, never a user name (which is printed) */
        if (sentinel && !colon)
            colon = p - 1;
        size_t ulen = !colon ? (size_t)(at - p) : colon >= p ? (size_t)(colon - p) : 0;
        if (ulen) {
            out->user = pct_decode(p, ulen);
            if (!out->user)
                return fail(out, err, url, "bad %-escape in the user name");
        }
        if (colon) {
            out->password = pct_decode(colon + 1, (size_t)(at - colon - 1));
            if (!out->password)
                return fail(out, err, url, "bad %-escape in the password");
            if (!*out->password) {
                free(out->password);
                out->password = NULL;
            }
        }
        hostpart_len -= (size_t)(at + 1 - p);
        p = at + 1;
    }

    const char *rest = p + hostpart_len;
    if (sentinel) {
        /* host[:port] items separated by commas, each a sentinel */
        for (const char *item = p; item < rest;) {
            const char *comma = memchr(item, ',', (size_t)(rest - item));
            const char *end = comma ? comma : rest;
            out->sentinels =
                sg_xrealloc(out->sentinels, (size_t)(out->nsentinels + 1) * sizeof *out->sentinels);
            sg_redis_sentinel *sn = &out->sentinels[out->nsentinels++];
            *sn = (sg_redis_sentinel){NULL, SG_SENTINEL_PORT};
            const char *why = parse_hostport(item, (size_t)(end - item), &sn->host, &sn->port);
            if (why)
                return fail(out, err, url, why);
            item = comma ? comma + 1 : rest;
            if (comma && item == rest)
                return fail(out, err, url, "a comma without a sentinel after it");
        }
        if (!out->nsentinels)
            return fail(out, err, url, "no sentinel host");
    } else {
        const char *why = parse_hostport(p, hostpart_len, &out->host, &out->port);
        if (why)
            return fail(out, err, url, why);
    }
    if (*rest == '/') {
        rest++;
        size_t n = strcspn(rest, "?");
        if (n && parse_db(rest, n, &out->db))
            return fail(out, err, url, "database must be a number (redis://host:port/N)");
        rest += n;
    }
    if (*rest == '?') {
        if (strncmp(rest + 1, "db=", 3) || parse_db(rest + 4, strlen(rest + 4), &out->db))
            return fail(out, err, url, "the only query is ?db=N with N a number");
    } else if (*rest) {
        return fail(out, err, url, "unexpected text after the host");
    }
    return 0;
}

void sg_redis_url_password_from_env(sg_redis_url *u)
{
    const char *spw = getenv("STORMGUARD_SENTINEL_PASSWORD");
    if (u->master_name && !u->sentinel_password && spw && *spw)
        u->sentinel_password = sg_xstrdup(spw);
    if (u->password)
        return;
    const char *pw = getenv("STORMGUARD_REDIS_PASSWORD");
    if (!pw || !*pw)
        pw = getenv("REDISCLI_AUTH");
    if (pw && *pw)
        u->password = sg_xstrdup(pw);
}

/* Percent-encodes what userinfo cannot hold as is, so the redacted URL parses
 * back to the same user. Caller frees. */
static char *pct_encode(const char *s)
{
    char *out = sg_xmalloc(3 * strlen(s) + 1), *o = out;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || strchr("-._~", c))
            *o++ = (char)c;
        else
            o += sprintf(o, "%%%02X", c);
    }
    *o = '\0';
    return out;
}

/* "h1:26379,[::1]:26380" */
static char *sentinel_list(const sg_redis_url *u)
{
    sg_buf b = {0};
    for (int i = 0; i < u->nsentinels; i++) {
        const char *h = u->sentinels[i].host;
        bool v6 = strchr(h, ':') != NULL;
        sg_buf_printf(&b, "%s%s%s%s:%d", i ? "," : "", v6 ? "[" : "", h, v6 ? "]" : "",
                      u->sentinels[i].port);
    }
    return b.p ? b.p : sg_xstrdup("");
}

char *sg_redis_url_redacted(const sg_redis_url *u)
{
    if (u->master_name) {
        char *list = sentinel_list(u), *name = pct_encode(u->master_name);
        char *user = u->user ? pct_encode(u->user) : NULL;
        /* "user:@": a user without ':' would read back as the password */
        char *url = sg_xasprintf("redis-sentinel://%s%s%s/%d#%s", user ? user : "",
                                 user ? ":@" : "", list, u->db, name);
        free(user);
        free(list);
        free(name);
        return url;
    }
    if (u->path)
        return u->db ? sg_xasprintf("unix://%s?db=%d", u->path, u->db)
                     : sg_xasprintf("unix://%s", u->path);
    const char *lb = strchr(u->host, ':') ? "[" : "", *rb = *lb ? "]" : "";
    char *user = u->user ? pct_encode(u->user) : NULL;
    char *url = sg_xasprintf("%s://%s%s%s%s%s:%d/%d", u->tls.enabled ? "rediss" : "redis",
                             user ? user : "", user ? "@" : "", lb, u->host, rb, u->port, u->db);
    free(user);
    return url;
}

char *sg_redis_url_address(const sg_redis_url *u)
{
    if (u->master_name && !u->host) {
        char *list = sentinel_list(u);
        char *a = sg_xasprintf("master %s (sentinels %s)", u->master_name, list);
        free(list);
        return a;
    }
    if (u->path)
        return sg_xstrdup(u->path);
    const char *lb = strchr(u->host, ':') ? "[" : "", *rb = *lb ? "]" : "";
    return sg_xasprintf("%s%s%s:%d", lb, u->host, rb, u->port);
}

static char *dup_or_null(const char *s)
{
    return s ? sg_xstrdup(s) : NULL;
}

/* Frees a secret, leaving no copy in freed memory. */
static void wipe_free(char *secret)
{
    if (!secret)
        return;
    volatile char *p = secret;
    while (*p)
        *p++ = 0;
    free(secret);
}

static void replace(char **field, const char *value)
{
    if (!value)
        return;
    free(*field);
    *field = sg_xstrdup(value);
}

int sg_redis_url_configure(sg_redis_url *u, const sg_redis_tls *tls, const char *sentinel_password,
                           sg_error *err)
{
    if (sentinel_password && *sentinel_password) {
        wipe_free(u->sentinel_password);
        u->sentinel_password = sg_xstrdup(sentinel_password);
    }
    if (tls) {
        u->tls.enabled |= tls->enabled;
        u->tls.insecure |= tls->insecure;
        replace(&u->tls.cacert, tls->cacert);
        replace(&u->tls.cacertdir, tls->cacertdir);
        replace(&u->tls.cert, tls->cert);
        replace(&u->tls.key, tls->key);
        replace(&u->tls.sni, tls->sni);
    }
    if (u->path && u->tls.enabled)
        return sg_error_set(err, SG_EUSAGE,
                            "TLS ([redis] tls, --tls) over a unix socket: Redis offers TLS on "
                            "TCP ports only");
    return 0;
}

void sg_redis_url_copy(sg_redis_url *out, const sg_redis_url *u)
{
    out->tls = (sg_redis_tls){.enabled = u->tls.enabled, .insecure = u->tls.insecure};
    replace(&out->tls.cacert, u->tls.cacert);
    replace(&out->tls.cacertdir, u->tls.cacertdir);
    replace(&out->tls.cert, u->tls.cert);
    replace(&out->tls.key, u->tls.key);
    replace(&out->tls.sni, u->tls.sni);
    out->host = dup_or_null(u->host);
    out->port = u->port;
    out->path = dup_or_null(u->path);
    out->user = dup_or_null(u->user);
    out->password = dup_or_null(u->password);
    out->db = u->db;
    out->master_name = dup_or_null(u->master_name);
    out->sentinel_password = dup_or_null(u->sentinel_password);
    out->nsentinels = u->nsentinels;
    out->sentinels = u->nsentinels ? sg_xcalloc((size_t)u->nsentinels, sizeof *u->sentinels) : NULL;
    for (int i = 0; i < u->nsentinels; i++)
        out->sentinels[i] =
            (sg_redis_sentinel){sg_xstrdup(u->sentinels[i].host), u->sentinels[i].port};
}

void sg_redis_url_close(sg_redis_url *u)
{
    free(u->host);
    free(u->path);
    free(u->user);
    free(u->tls.cacert);
    free(u->tls.cacertdir);
    free(u->tls.cert);
    free(u->tls.key);
    free(u->tls.sni);
    free(u->master_name);
    for (int i = 0; i < u->nsentinels; i++)
        free(u->sentinels[i].host);
    free(u->sentinels);
    wipe_free(u->password);
    wipe_free(u->sentinel_password);
    memset(u, 0, sizeof *u);
}
