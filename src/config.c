/* Configuration (config.h). One table describes every key: its section,
 * its flag, its type and limits, and its help line; the INI loader, the flag
 * parser, --help and the dump all read it. */
#include "stormguard/config.h"
#include "stormguard/redis_url.h"

#include <errno.h>
#include <ini.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum { T_STRING, T_INT, T_DURATION, T_LIST, T_SYNC, T_PROFILE, T_URL } key_type;

typedef struct key_spec {
    const char *section, *key, *flag;
    key_type type;
    size_t offset;
    int64_t min, max;
    const char *help;
} key_spec;

#define F(field) offsetof(sg_config, field)

static const key_spec keys[] = {
    {"redis", "url", "redis", T_URL, F(redis_url), 0, 0,
     "redis://[user[:password]@]host[:port][/db] or unix:///path[?db=N]"},
    {"redis", "connect_timeout", "connect-timeout", T_INT, F(connect_timeout_ms), 1, 600000,
     "milliseconds to wait for a connection (default 5000)"},
    {"store", "path", "db", T_STRING, F(db_path), 0, 0,
     "SQLite database file (default " SG_DEFAULT_DB_PATH ")"},
    {"store", "synchronous", "synchronous", T_SYNC, F(synchronous), 0, 0,
     "normal (survives a crash of the process) or full (survives power loss)"},
    {"profile", "name", "profile", T_PROFILE, F(profile), 0, 0,
     "igor (Igor's key families, decoded into the build index) or none"},
    {"profile", "prefix", "prefix", T_STRING, F(prefix), 0, 0,
     "Igor's key prefix, spinnaker.jedis.prefix (default igor)"},
    {"snapshot", "match", "match", T_LIST, F(match), 0, 0,
     "extra key patterns to snapshot (repeatable)"},
    {"snapshot", "scan_count", "scan-count", T_INT, F(scan_count), 1000, 1000000,
     "SCAN COUNT per page, at least 1000 (default 1000)"},
    {"snapshot", "keep", "keep", T_INT, F(keep), 0, 1000000,
     "snapshots kept, 0 for no limit (default 20)"},
    {"snapshot", "max_age", "max-age", T_DURATION, F(max_age_s), 0, 0,
     "prune snapshots older than this (90s, 15m, 2h, 7d; 0 = never; default 0)"},
    {"flush", "protect", "protect", T_LIST, F(protect), 0, 0,
     "namespaces a flush refuses to delete (default session:* queue:* workflow:* lock:* rate:*)"},
};

#define NKEYS (sizeof keys / sizeof keys[0])

void sg_config_init(sg_config *c)
{
    memset(c, 0, sizeof *c);
    c->redis_url = sg_xstrdup(SG_DEFAULT_REDIS_URL);
    c->connect_timeout_ms = 5000;
    c->db_path = sg_xstrdup(SG_DEFAULT_DB_PATH);
    c->synchronous = SG_SYNC_NORMAL;
    c->profile = SG_PROFILE_NONE;
    c->prefix = sg_xstrdup("igor");
    c->scan_count = 1000;
    c->keep = 20;
    /* DOMAIN.md section 6: what runbooks say must never be flushed */
    static const char *const protect[] = {"session:*", "queue:*", "workflow:*", "lock:*",
                                          "rate:*"};
    for (size_t i = 0; i < sizeof protect / sizeof protect[0]; i++)
        sg_strlist_push(&c->protect, protect[i]);
}

void sg_config_close(sg_config *c)
{
    free(c->redis_url);
    free(c->db_path);
    free(c->prefix);
    sg_strlist_clear(&c->match);
    sg_strlist_clear(&c->protect);
    memset(c, 0, sizeof *c);
}

static const key_spec *find(const char *section, const char *key)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(keys[i].section, section) && !strcmp(keys[i].key, key))
            return &keys[i];
    return NULL;
}

static bool known_section(const char *section)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(keys[i].section, section))
            return true;
    return false;
}

int sg_config_set(sg_config *c, const char *section, const char *key, const char *value,
                  bool append, sg_error *err)
{
    const key_spec *k = find(section, key);
    if (!k) {
        if (!known_section(section))
            return sg_error_set(err, SG_EUSAGE, "unknown section [%s]", section);
        return sg_error_set(err, SG_EUSAGE, "unknown key '%s' in [%s]", key, section);
    }
    void *field = (char *)c + k->offset;
    int64_t n;
    switch (k->type) {
    case T_URL: {
        sg_redis_url u;
        if (sg_redis_url_parse(value, &u, err))
            return SG_EUSAGE;
        sg_redis_url_close(&u);
    }
        /* fall through */
    case T_STRING:
        if (!*value)
            return sg_error_set(err, SG_EUSAGE, "[%s] %s: must not be empty", section, key);
        free(*(char **)field);
        *(char **)field = sg_xstrdup(value);
        return 0;
    case T_INT:
        if (sg_parse_int64(value, k->min, k->max, &n))
            return sg_error_set(err, SG_EUSAGE,
                                "[%s] %s: '%s' is not a whole number from %lld to %lld", section,
                                key, value, (long long)k->min, (long long)k->max);
        *(int64_t *)field = n;
        return 0;
    case T_DURATION:
        if (sg_parse_duration(value, &n))
            return sg_error_set(err, SG_EUSAGE,
                                "[%s] %s: '%s' is not a duration (like 90s, 15m, 2h, 7d)",
                                section, key, value);
        *(int64_t *)field = n;
        return 0;
    case T_SYNC:
        if (sg_sync_mode_parse(value, (sg_sync_mode *)field))
            return sg_error_set(err, SG_EUSAGE, "[%s] %s: '%s' must be normal or full", section,
                                key, value);
        return 0;
    case T_PROFILE:
        if (sg_profile_kind_parse(value, (sg_profile_kind *)field))
            return sg_error_set(err, SG_EUSAGE, "[%s] %s: unknown profile '%s' (igor or none)",
                                section, key, value);
        return 0;
    case T_LIST: {
        sg_strlist *l = field;
        if (!append)
            sg_strlist_clear(l);
        char *copy = sg_xstrdup(value), *save = NULL;
        for (char *t = strtok_r(copy, " \t,", &save); t; t = strtok_r(NULL, " \t,", &save))
            sg_strlist_push(l, t);
        free(copy);
        return 0;
    }
    }
    return SG_EUSAGE;
}

typedef struct load_state {
    sg_config *c;
    sg_error *err;
    int failed;
    const key_spec *lists_seen[NKEYS]; /* list keys set in this file: later ones append */
    size_t nseen;
} load_state;

static int on_ini(void *ud, const char *section, const char *name, const char *value)
{
    load_state *st = ud;
    if (st->failed)
        return 0;
    const key_spec *k = find(section, name);
    bool append = false;
    for (size_t i = 0; k && i < st->nseen; i++)
        if (st->lists_seen[i] == k)
            append = true;
    if (k && k->type == T_LIST && !append && st->nseen < NKEYS)
        st->lists_seen[st->nseen++] = k;
    if (sg_config_set(st->c, section, name, value, append, st->err)) {
        st->failed = 1;
        return 0;
    }
    return 1;
}

int sg_config_load_file(sg_config *c, const char *path, sg_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return sg_error_set(err, SG_EUSAGE, "reading config %s: %s", path, strerror(errno));
    load_state st = {.c = c, .err = err};
    int line = ini_parse_file(f, on_ini, &st);
    fclose(f);
    if (line == 0)
        return 0;
    if (st.failed)
        return sg_error_prefix(err, "%s:%d", path, line);
    if (line < 0)
        return sg_error_set(err, SG_EUSAGE, "reading config %s: out of memory", path);
    return sg_error_set(err, SG_EUSAGE, "%s:%d: syntax error (expected [section] or key = value)",
                        path, line);
}

bool sg_config_flag(const char *flag, const char **section, const char **key, bool *is_list)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (!strcmp(keys[i].flag, flag)) {
            *section = keys[i].section;
            *key = keys[i].key;
            *is_list = keys[i].type == T_LIST;
            return true;
        }
    }
    return false;
}

const char *sg_config_flag_at(size_t i)
{
    return i < NKEYS ? keys[i].flag : NULL;
}

void sg_config_print_flags(FILE *out)
{
    for (size_t i = 0; i < NKEYS; i++) {
        char left[48];
        snprintf(left, sizeof left, "--%s %s", keys[i].flag,
                 keys[i].type == T_LIST ? "PATTERN" : "VALUE");
        fprintf(out, "  %-26s [%s] %s: %s\n", left, keys[i].section, keys[i].key, keys[i].help);
    }
}

void sg_config_dump(const sg_config *c, FILE *out)
{
    const char *section = "";
    for (size_t i = 0; i < NKEYS; i++) {
        const key_spec *k = &keys[i];
        const void *field = (const char *)c + k->offset;
        if (strcmp(section, k->section))
            fprintf(out, "%s[%s]\n", i ? "\n" : "", section = k->section);
        fprintf(out, "%s = ", k->key);
        switch (k->type) {
        case T_URL: {
            sg_redis_url u;
            if (sg_redis_url_parse(*(char *const *)field, &u, NULL) == 0) {
                char *red = sg_redis_url_redacted(&u);
                fputs(red, out);
                free(red);
                sg_redis_url_close(&u);
            }
            break;
        }
        case T_STRING: fputs(*(char *const *)field, out); break;
        case T_INT:
        case T_DURATION: fprintf(out, "%lld", (long long)*(const int64_t *)field); break;
        case T_SYNC: fputs(sg_sync_mode_name(*(const sg_sync_mode *)field), out); break;
        case T_PROFILE: fputs(sg_profile_kind_name(*(const sg_profile_kind *)field), out); break;
        case T_LIST: {
            const sg_strlist *l = field;
            for (size_t j = 0; j < l->len; j++)
                fprintf(out, "%s%s", j ? " " : "", l->items[j]);
            break;
        }
        }
        fputc('\n', out);
    }
}
