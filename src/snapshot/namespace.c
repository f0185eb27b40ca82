/* Keys by namespace: an open-addressing hash table of namespace names. */
#include "stormguard/snapshot/namespace.h"

#include <stdlib.h>
#include <string.h>

#include "stormguard/base/util.h"

#define OTHER_NS "(other)"

struct sg_nstally {
    sg_ns_stats *entries; /* dense, in order of first sight */
    size_t count, cap;
    size_t *slots; /* index + 1 into entries, 0 = empty */
    size_t nslots;
    sg_ns_stats *other; /* overflow bucket, once SG_NS_MAX is reached */
};

static uint64_t hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

sg_nstally *sg_nstally_new(void)
{
    sg_nstally *t = sg_xcalloc(1, sizeof *t);
    t->nslots = 64;
    t->slots = sg_xcalloc(t->nslots, sizeof *t->slots);
    return t;
}

void sg_nstally_free(sg_nstally *t)
{
    if (!t)
        return;
    sg_ns_stats_free(t->entries, t->count);
    free(t->slots);
    free(t->other);
    free(t);
}

static void rehash(sg_nstally *t)
{
    free(t->slots);
    t->nslots *= 2;
    t->slots = sg_xcalloc(t->nslots, sizeof *t->slots);
    for (size_t i = 0; i < t->count; i++) {
        const char *ns = t->entries[i].ns;
        size_t j = hash(ns, strlen(ns)) & (t->nslots - 1);
        while (t->slots[j])
            j = (j + 1) & (t->nslots - 1);
        t->slots[j] = i + 1;
    }
}

sg_ns_stats *sg_nstally_get(sg_nstally *t, const char *key, size_t len)
{
    const char *colon = memchr(key, ':', len);
    size_t n = colon ? (size_t)(colon - key) : 0;
    size_t j = hash(key, n) & (t->nslots - 1);
    for (; t->slots[j]; j = (j + 1) & (t->nslots - 1)) {
        sg_ns_stats *e = &t->entries[t->slots[j] - 1];
        if (strlen(e->ns) == n && !memcmp(e->ns, key, n))
            return e;
    }
    if (t->count >= SG_NS_MAX || memchr(key, '\0', n)) {
        if (!t->other) {
            t->other = sg_xcalloc(1, sizeof *t->other);
            t->other->ns = sg_xstrdup(OTHER_NS);
        }
        return t->other;
    }
    if (t->count == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->entries = sg_xrealloc(t->entries, t->cap * sizeof *t->entries);
    }
    sg_ns_stats *e = &t->entries[t->count];
    memset(e, 0, sizeof *e);
    e->ns = sg_xstrndup(key, n);
    t->slots[j] = ++t->count;
    if (t->count * 2 > t->nslots)
        rehash(t);
    return e;
}

static int by_keys_desc(const void *a, const void *b)
{
    const sg_ns_stats *x = a, *y = b;
    if (x->keys != y->keys)
        return x->keys > y->keys ? -1 : 1;
    return strcmp(x->ns, y->ns);
}

void sg_nstally_take(sg_nstally *t, sg_ns_stats **out, size_t *count)
{
    if (t->other) {
        if (t->count == t->cap)
            t->entries = sg_xrealloc(t->entries, ++t->cap * sizeof *t->entries);
        t->entries[t->count++] = *t->other;
        free(t->other);
        t->other = NULL;
    }
    if (t->count)
        qsort(t->entries, t->count, sizeof *t->entries, by_keys_desc);
    *out = t->entries;
    *count = t->count;
    t->entries = NULL;
    t->count = t->cap = 0;
    memset(t->slots, 0, t->nslots * sizeof *t->slots);
}

void sg_ns_stats_free(sg_ns_stats *arr, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(arr[i].ns);
    free(arr);
}
