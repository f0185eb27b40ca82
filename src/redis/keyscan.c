/* SCAN-based keyspace walking (keyscan.h). */
#include "stormguard/redis/keyscan.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sg_keyscan_init(sg_keyscan *ks, sg_rconn *conn, const sg_strlist *patterns, int64_t count)
{
    memset(ks, 0, sizeof *ks);
    ks->conn = conn;
    ks->patterns = patterns;
    ks->count = count < 1000 ? 1000 : count; /* never small pages: DOMAIN.md section 5 */
    strcpy(ks->cursor, "0");
}

void sg_keyscan_close(sg_keyscan *ks)
{
    memset(ks, 0, sizeof *ks);
}

void sg_keypage_close(sg_keypage *page)
{
    if (page->reply)
        freeReplyObject(page->reply);
    free(page->keys);
    free(page->lens);
    memset(page, 0, sizeof *page);
}

int sg_keyscan_request(sg_keyscan *ks, sg_error *err)
{
    if (ks->done)
        return 1;
    char count[24];
    snprintf(count, sizeof count, "%lld", (long long)ks->count);
    const char *argv[6] = {"SCAN", ks->cursor, "COUNT", count};
    int argc = 4;
    if (ks->patterns && ks->patterns->len == 1) {
        argv[argc++] = "MATCH";
        argv[argc++] = ks->patterns->items[0];
    }
    return sg_rconn_append(ks->conn, err, argc, argv, NULL);
}

int sg_keyscan_receive(sg_keyscan *ks, sg_keypage *page, sg_error *err)
{
    memset(page, 0, sizeof *page);
    redisReply *r = NULL;
    int rc = sg_rconn_read(ks->conn, &r, err);
    return rc ? rc : sg_keyscan_take(ks, r, page, err);
}

int sg_keyscan_take(sg_keyscan *ks, struct redisReply *r, sg_keypage *page, sg_error *err)
{
    memset(page, 0, sizeof *page);
    if (r->type == REDIS_REPLY_ERROR) {
        int rc = sg_rconn_reply_error(ks->conn, "SCAN", r, err);
        freeReplyObject(r);
        return rc;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= sizeof ks->cursor ||
        r->element[1]->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return sg_error_set(err, SG_EREDIS, "redis %s sent a malformed SCAN reply",
                            ks->conn->address);
    }
    memcpy(ks->cursor, r->element[0]->str, r->element[0]->len + 1);
    ks->done = !strcmp(ks->cursor, "0");

    redisReply *arr = r->element[1];
    page->reply = r;
    page->keys = sg_xmalloc(arr->elements * sizeof *page->keys);
    page->lens = sg_xmalloc(arr->elements * sizeof *page->lens);
    bool filter = ks->patterns && ks->patterns->len > 1;
    for (size_t i = 0; i < arr->elements; i++) {
        redisReply *k = arr->element[i];
        if (k->type != REDIS_REPLY_STRING)
            continue;
        if (filter && !sg_strlist_match(ks->patterns, k->str, k->len))
            continue;
        page->keys[page->n] = k->str;
        page->lens[page->n++] = k->len;
    }
    return 0;
}

int sg_keyscan_each(sg_keyscan *ks, sg_keyscan_fn fn, void *ud, sg_error *err)
{
    int rc;
    while ((rc = sg_keyscan_request(ks, err)) == 0) {
        sg_keypage page;
        if ((rc = sg_keyscan_receive(ks, &page, err)))
            return rc;
        for (size_t i = 0; i < page.n && rc == 0; i++)
            rc = fn(ud, page.keys[i], page.lens[i], err);
        sg_keypage_close(&page);
        if (rc)
            return rc;
    }
    return rc < 0 ? rc : 0;
}
