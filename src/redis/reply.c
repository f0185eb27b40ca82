/* Reading Redis replies (reply.h). INFO is text of "field:value" lines in
 * "# Section" groups; hiredis 0.14 speaks RESP2 only, so every push of the
 * tracking connection is a plain array ("message", channel, payload). */
#include "stormguard/redis/reply.h"

#include <assert.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/base/util.h"

char *sg_reply_info_field(const char *info, const char *field)
{
    size_t flen = strlen(field);
    for (const char *line = info; line && *line;) {
        const char *eol = strstr(line, "\r\n");
        size_t n = eol ? (size_t)(eol - line) : strlen(line);
        if (n > flen && !strncmp(line, field, flen) && line[flen] == ':')
            return sg_xstrndup(line + flen + 1, n - flen - 1);
        line = eol ? eol + 2 : NULL;
    }
    return NULL;
}

void sg_reply_info_dbs(const char *info, int **out, int *count)
{
    int *dbs = NULL, n = 0;
    for (const char *p = info; (p = strstr(p, "\ndb")) != NULL; p++) {
        /* digits only: sscanf's %d took "db-1:" and overflowed on more digits
         * than an int holds; the numbers are SELECTed */
        const char *d = p + 3;
        size_t len = strspn(d, "0123456789");
        int64_t db = 0;
        for (size_t i = 0; i < len && db <= INT_MAX; i++)
            db = db * 10 + (d[i] - '0');
        if (!len || d[len] != ':' || db > INT_MAX)
            continue;
        dbs = sg_xrealloc(dbs, (size_t)(n + 1) * sizeof *dbs);
        dbs[n++] = (int)db;
    }
    *out = dbs;
    *count = n;
}

int64_t sg_reply_info_expires(const char *info)
{
    int64_t expires = 0;
    for (const char *e = strstr(info, "expires="); e; e = strstr(e + 8, "expires=")) {
        long long n = strtoll(e + 8, NULL, 10);
        if (n > 0)
            expires = n > INT64_MAX - expires ? INT64_MAX : expires + n;
    }
    return expires;
}

int sg_reply_count(const redisReply *r, int64_t max, int64_t *out)
{
    if (r->type != REDIS_REPLY_INTEGER || r->integer < 0 || r->integer > max)
        return 1;
    *out = r->integer;
    return 0;
}

int sg_reply_pttl(const redisReply *r, int64_t sent_ms, int64_t *expire_at_ms)
{
    assert(sent_ms >= 0);
    if (r->type != REDIS_REPLY_INTEGER || r->integer == -2)
        return 1;
    int64_t at = 0;
    if (r->integer > 0)
        at = r->integer > INT64_MAX - sent_ms ? INT64_MAX : sent_ms + r->integer;
    if (r->integer == 0)
        at = sent_ms + 1;
    *expire_at_ms = at;
    return 0;
}

char *sg_reply_config_value(const redisReply *r)
{
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_STRING)
        return sg_xstrndup(r->element[1]->str, r->element[1]->len);
    return NULL;
}

sg_invalidation sg_reply_invalidation(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return SG_INVALIDATION_OTHER;
    const char *kind = r->element[0]->str;
    if (!strcmp(kind, "subscribe"))
        return SG_INVALIDATION_SUBSCRIBED;
    if (strcmp(kind, "message"))
        return SG_INVALIDATION_OTHER;
    /* a nil payload: "everything" */
    return r->element[2]->type == REDIS_REPLY_NIL ? SG_INVALIDATION_FLUSH : SG_INVALIDATION_KEYS;
}

const char *sg_reply_error_no_args(const char *msg, char *buf, size_t cap)
{
    const char *cut = strstr(msg, ", with args");
    snprintf(buf, cap, "%.*s", (int)(cut ? (size_t)(cut - msg) : strlen(msg)), msg);
    return buf;
}
