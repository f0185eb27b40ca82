/* Configuration (config.h). One table describes every key: its section,
 * its flag, its type and limits, and its help line; the INI loader, the flag
 * parser, --help and the dump all read it. */
#include "stormguard/config/config.h"
#include "stormguard/redis/rconn.h"
#include "stormguard/redis/redis_url.h"
#include "stormguard/store/store.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum {
    T_STRING,   /* required, non-empty */
    T_OPTIONAL, /* may stay unset (NULL) */
    T_INT,
    T_SIZE,     /* bytes, with an optional k/m suffix */
    T_DURATION, /* seconds, with s/m/h/d suffixes */
    T_LIST,
    T_SYNC,
    T_PROFILE,
    T_URL,
    T_STORE_URL, /* a postgresql:// URL (store.h) */
    T_CHOICE,    /* one of the words in choices, "a|b|c" */
    T_BOOL,      /* on/off, true/false, yes/no, 1/0 */
    T_SWITCH,    /* a T_BOOL whose flag takes no value: --tls is tls = yes */
    T_POINTER,   /* a JSON pointer */
} key_type;

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
     "redis://[user[:password]@]host[:port][/db], rediss://... (TLS), "
     "redis-sentinel://[password@]host[:port][,host[:port]...][/db]#master or unix:///path[?db=N]"},
    {"redis", "connect_timeout", "connect-timeout", T_INT, F(connect_timeout_ms), 1, 600000,
     "milliseconds to wait for a connection (default 5000)"},
    {"redis", "timeout", "timeout", T_DURATION, F(redis_timeout_s), 1, 3600,
     "a command's reply waits at most this, then the command fails naming it (default 30s)"},
    {"redis", "tls", "tls", T_SWITCH, F(redis_tls.enabled), 0, 0,
     "speak TLS to Redis, as a rediss:// URL does; the chain and the host name are verified"},
    {"redis", "cacert", "cacert", T_OPTIONAL, F(redis_tls.cacert), 0, 0,
     "PEM file of the CAs that sign Redis's certificate (default: the system's)"},
    {"redis", "cacertdir", "cacertdir", T_OPTIONAL, F(redis_tls.cacertdir), 0, 0,
     "directory of hashed CA certificates (openssl rehash), instead of or besides cacert"},
    {"redis", "cert", "cert", T_OPTIONAL, F(redis_tls.cert), 0, 0,
     "client certificate (PEM) for a Redis that asks for one (tls-auth-clients)"},
    {"redis", "key", "key", T_OPTIONAL, F(redis_tls.key), 0, 0, "private key (PEM) of cert"},
    {"redis", "sni", "sni", T_OPTIONAL, F(redis_tls.sni), 0, 0,
     "server name to send and to verify the certificate against (default: the URL's host)"},
    {"redis", "insecure", "insecure", T_SWITCH, F(redis_tls.insecure), 0, 0,
     "TLS without verifying the certificate or its name (logged as a warning; for tests)"},
    {"redis", "sentinel_password", "sentinel-password", T_OPTIONAL, F(sentinel_password), 0, 0,
     "the sentinels' own password, when they have one (redis-sentinel:// URLs; better "
     "STORMGUARD_SENTINEL_PASSWORD)"},
    {"redis", "watch", "watch", T_BOOL, F(watch), 0, 0,
     "stormguard run watches Redis for wipes (default on)"},
    {"redis", "canary", "canary", T_STRING, F(canary), 0, 0,
     "key the daemon owns to confirm a wipe (default stormguard:canary)"},
    {"redis", "check_interval_ms", "check-interval-ms", T_INT, F(check_interval_ms), 10, 600000,
     "wipe check period in ms, the fallback to client tracking (default 1000)"},
    {"store", "path", "db", T_STRING, F(db_path), 0, 0,
     "SQLite database file (default " SG_DEFAULT_DB_PATH ")"},
    {"store", "url", "store", T_STORE_URL, F(store_url), 0, 0,
     "postgresql://[user@]host[:port]/db: the store on PostgreSQL instead of path (the password "
     "from PGPASSWORD or PGPASSFILE, better than in the URL)"},
    {"store", "synchronous", "synchronous", T_SYNC, F(synchronous), 0, 0,
     "normal (survives a crash of the process) or full (survives power loss)"},
    {"store", "keep_events", "keep-events", T_DURATION, F(keep_events_s), 0, 0,
     "stormguard run deletes journaled events this much older than now once they are "
     "forwarded, suppressed, dropped or superseded (0 = never; default 30d)"},
    {"profile", "name", "profile", T_PROFILE, F(profile), 0, 0,
     "igor (Igor's key families, decoded into the build index) or none"},
    {"profile", "prefix", "prefix", T_STRING, F(prefix), 0, 0,
     "Igor's key prefix, spinnaker.jedis.prefix (default igor)"},
    {"snapshot", "match", "match", T_LIST, F(match), 0, 0,
     "extra key patterns to snapshot (repeatable)"},
    {"snapshot", "scan_count", "scan-count", T_INT, F(scan_count), 1000, 1000000,
     "SCAN COUNT per page, at least 1000 (default 1000)"},
    {"snapshot", "method", "method", T_CHOICE, F(snapshot_method), 0, 0,
     "scan (SCAN and DUMP per key, the default) or sync (read the RDB a replica gets; Redis "
     "forks, the user needs SYNC; whole databases in one consistent cut)"},
    {"snapshot", "keep", "keep", T_INT, F(keep), 0, 1000000,
     "snapshots kept, 0 for no limit (default 20)"},
    {"snapshot", "max_age", "max-age", T_DURATION, F(max_age_s), 0, 0,
     "prune snapshots older than this (90s, 15m, 2h, 7d; 0 = never; default 0)"},
    {"snapshot", "interval", "snapshot-interval", T_DURATION, F(snapshot_interval_s), 0, 0,
     "stormguard run snapshots the profile's keys this often (0 = never; default 60s)"},
    {"snapshot", "suspect_below", "suspect-below", T_INT, F(suspect_below_pct), 0, 100,
     "a profile snapshot with fewer than this % of the last good one's keys is suspect, never "
     "a baseline (0 = off; default 50)"},
    {"flush", "protect", "protect", T_LIST, F(protect), 0, 0,
     "namespaces a flush refuses to delete (default session:* queue:* workflow:* lock:* rate:*)"},
    {"flush", "announce", "announce", T_BOOL, F(flush_announce), 0, 0,
     "a flush first tells the daemon at [admin] listen and needs its confirmation (default "
     "yes; no where no gate runs)"},
    {"gate", "mode", "gate-mode", T_CHOICE, F(gate_mode), 0, 0,
     "enforce (the default) or observe: forward every event as if stormguard were not there, "
     "journaling and counting what it would have suppressed, held or dropped (run --observe)"},
    {"gate", "listen", "listen", T_STRING, F(listen), 0, 0,
     "ADDR:PORT the poller posts to (default " SG_DEFAULT_LISTEN ")"},
    {"gate", "downstream", "downstream", T_OPTIONAL, F(downstream), 0, 0,
     "the notifier's base URL, e.g. Echo at http://127.0.0.1:8089"},
    {"gate", "build_paths", "build-path", T_LIST, F(build_paths), 0, 0,
     "request paths where build events arrive; invalid JSON there is a 400 (default /)"},
    {"gate", "max_body", "max-body", T_SIZE, F(max_body), 1, 1 << 30,
     "largest request body, bytes or with k/m (default 1m); larger gets 413"},
    {"gate", "max_header", "max-header", T_SIZE, F(max_header), 1024, 256 << 10,
     "largest request header section, bytes or with k (default 16k); larger gets 431"},
    {"gate", "read_timeout", "read-timeout", T_DURATION, F(read_timeout_s), 1, 3600,
     "a client must send its whole request within this (default 10s)"},
    {"gate", "max_connections", "max-connections", T_INT, F(max_connections), 1, 1000000,
     "open client connections at most (default 1024)"},
    {"gate", "tls_cert", "tls-cert", T_OPTIONAL, F(tls_cert), 0, 0,
     "PEM certificate chain: the gate listener speaks TLS (HTTP/2 by ALPN)"},
    {"gate", "tls_key", "tls-key", T_OPTIONAL, F(tls_key), 0, 0, "PEM private key for tls_cert"},
    {"gate", "forward_headers", "forward-header", T_LIST, F(forward_headers), 0, 0,
     "request headers passed downstream, globs (default content-type accept user-agent "
     "x-spinnaker-* x-request-id)"},
    {"gate", "notification_source", "notification-source", T_STRING, F(notification_source), 0, 0,
     "source (Jenkins master name) of Jenkins Notification plugin events (default jenkins)"},
    {"gate", "source_pointer", "source-pointer", T_POINTER, F(source_pointer), 0, 0,
     "generic events: JSON pointer to the source"},
    {"gate", "job_pointer", "job-pointer", T_POINTER, F(job_pointer), 0, 0,
     "generic events: JSON pointer to the job"},
    {"gate", "number_pointer", "number-pointer", T_POINTER, F(number_pointer), 0, 0,
     "generic events: JSON pointer to the build number"},
    {"gate", "timestamp_pointer", "timestamp-pointer", T_POINTER, F(timestamp_pointer), 0, 0,
     "generic events: JSON pointer to the build start (epoch ms), optional"},
    {"forward", "max_inflight", "max-inflight", T_INT, F(max_inflight), 1, 10000,
     "requests in flight to the downstream at most (default 32)"},
    {"forward", "timeout", "forward-timeout", T_DURATION, F(forward_timeout_s), 1, 3600,
     "per delivery attempt (default 10s)"},
    {"forward", "max_age", "forward-max-age", T_DURATION, F(forward_max_age_s), 1, 0,
     "retry an event until it is this old, then declare it dead (default 24h)"},
    {"forward", "retry_base_ms", "retry-base-ms", T_INT, F(retry_base_ms), 1, 3600000,
     "first retry delay in ms, doubling per attempt (default 500)"},
    {"forward", "retry_max", "retry-max", T_DURATION, F(retry_max_s), 1, 86400,
     "longest retry delay (default 60s)"},
    {"guard", "duration", "guard-duration", T_DURATION, F(guard_duration_s), 1, 0,
     "guard mode after a wipe lasts this long, extended while a storm goes on (default 10m)"},
    {"guard", "rewarm", "rewarm", T_BOOL, F(rewarm), 0, 0,
     "on a wipe, restore the profile's missing keys from the last good snapshot (default off)"},
    {"storm", "window", "storm-window", T_DURATION, F(storm_window_s), 1, 86400,
     "the storm signals count events within this window (default 60s)"},
    {"storm", "same_job_builds", "storm-same-job", T_INT, F(storm_same_job), 0, 64,
     "builds of one job within the window that make a storm, 2 to 64 (default 3; 0 = off)"},
    {"storm", "first_seen_jobs", "storm-first-seen", T_INT, F(storm_first_seen), 0, 1000000,
     "first-seen jobs of one source within the window that make a storm (default 20; 0 = off)"},
    {"storm", "first_seen_tags", "storm-first-seen-tags", T_INT, F(storm_first_seen_tags), 0,
     1000000,
     "Docker tags of one account seen for the first time within the window that make a storm "
     "(default 20; 0 = off)"},
    {"storm", "replay_share", "storm-replay-share", T_INT, F(storm_replay_pct), 0, 100,
     "% of replays among a source's recent events that makes a storm (default 50; 0 = off)"},
    {"storm", "replay_min", "storm-replay-min", T_INT, F(storm_replay_min), 1, 1000000,
     "events of a source in the window before replay_share applies (default 20)"},
    {"storm", "rate_factor", "storm-rate-factor", T_INT, F(storm_rate_factor), 0, 1000,
     "new+unknown events/s above this times their moving average make a storm (default 5; "
     "0 = off)"},
    {"storm", "rate_floor", "storm-rate-floor", T_INT, F(storm_rate_floor), 1, 1000000,
     "the rate signal never fires below this many new+unknown events/s (default 20)"},
    {"storm", "cooldown", "storm-cooldown", T_DURATION, F(storm_cooldown_s), 1, 86400,
     "a storm ends after this long without a signal (default 5m)"},
    {"storm", "on_storm", "on-storm", T_CHOICE, F(on_storm), 0, 0,
     "what happens to held events: hold (until an operator acts), drain (at drain_rate, "
     "newest build per job) or drop (default hold)"},
    {"storm", "drain_rate", "drain-rate", T_INT, F(drain_rate), 1, 100000,
     "on_storm = drain: held events released per second (default 5)"},
    {"admin", "listen", "admin", T_STRING, F(admin_listen), 0, 0,
     "ADDR:PORT (or http://ADDR:PORT) of the admin API (default " SG_DEFAULT_ADMIN
     "); loopback only without a token"},
    {"admin", "token", "admin-token", T_OPTIONAL, F(admin_token), 0, 0,
     "bearer token the admin API requires (prefer token_file)"},
    {"admin", "token_file", "admin-token-file", T_OPTIONAL, F(admin_token_file), 0, 0,
     "file holding the admin bearer token"},
    {"log", "format", "log-format", T_CHOICE, F(log_format), 0, 0, "text or json (default text)"},
    {"log", "file", "log-file", T_OPTIONAL, F(log_file), 0, 0,
     "append logs to this file, reopened on SIGHUP (default: standard error)"},
};

#define NKEYS (sizeof keys / sizeof keys[0])

void sg_config_init(sg_config *c)
{
    memset(c, 0, sizeof *c);
    c->redis_url = sg_xstrdup(SG_DEFAULT_REDIS_URL);
    c->connect_timeout_ms = 5000;
    c->redis_timeout_s = SG_REDIS_TIMEOUT_MS / 1000;
    c->watch = true;
    c->canary = sg_xstrdup("stormguard:canary");
    c->check_interval_ms = 1000;
    c->db_path = sg_xstrdup(SG_DEFAULT_DB_PATH);
    c->synchronous = SG_SYNC_NORMAL;
    c->profile = SG_PROFILE_NONE;
    c->prefix = sg_xstrdup("igor");
    c->scan_count = 1000;
    c->keep = 20;
    c->snapshot_interval_s = 60;
    c->suspect_below_pct = 50;
    /* DOMAIN.md section 6: what runbooks say must never be flushed */
    static const char *const protect[] = {"session:*", "queue:*", "workflow:*", "lock:*", "rate:*"};
    for (size_t i = 0; i < sizeof protect / sizeof protect[0]; i++)
        sg_strlist_push(&c->protect, protect[i]);
    c->flush_announce = true;
    c->gate_mode = sg_xstrdup("enforce");
    c->listen = sg_xstrdup(SG_DEFAULT_LISTEN);
    sg_strlist_push(&c->build_paths, "/");
    c->max_body = 1 << 20;
    c->max_header = 16 << 10;
    c->read_timeout_s = 10;
    c->max_connections = 1024;
    static const char *const headers[] = {"content-type", "accept", "user-agent", "x-spinnaker-*",
                                          "x-request-id"};
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++)
        sg_strlist_push(&c->forward_headers, headers[i]);
    c->notification_source = sg_xstrdup("jenkins");
    c->max_inflight = 32;
    c->forward_timeout_s = 10;
    c->forward_max_age_s = 86400;
    c->keep_events_s = 30 * 86400;
    c->retry_base_ms = 500;
    c->retry_max_s = 60;
    c->guard_duration_s = 600;
    c->storm_window_s = 60;
    c->storm_same_job = 3;
    c->storm_first_seen = 20;
    c->storm_first_seen_tags = 20;
    c->storm_replay_pct = 50;
    c->storm_replay_min = 20;
    c->storm_rate_factor = 5;
    c->storm_rate_floor = 20;
    c->storm_cooldown_s = 300;
    c->on_storm = sg_xstrdup("hold");
    c->snapshot_method = sg_xstrdup("scan");
    c->drain_rate = 5;
    c->admin_listen = sg_xstrdup(SG_DEFAULT_ADMIN);
    c->log_format = sg_xstrdup("text");
    c->origin_line = sg_xcalloc(NKEYS, sizeof *c->origin_line);
}

void sg_config_close(sg_config *c)
{
    free(c->redis_url);
    free(c->db_path);
    free(c->store_url);
    free(c->prefix);
    sg_strlist_clear(&c->match);
    sg_strlist_clear(&c->protect);
    sg_strlist_clear(&c->build_paths);
    sg_strlist_clear(&c->forward_headers);
    char **strings[] = {&c->canary,
                        &c->on_storm,
                        &c->snapshot_method,
                        &c->listen,
                        &c->downstream,
                        &c->tls_cert,
                        &c->tls_key,
                        &c->notification_source,
                        &c->source_pointer,
                        &c->job_pointer,
                        &c->number_pointer,
                        &c->timestamp_pointer,
                        &c->admin_listen,
                        &c->admin_token,
                        &c->admin_token_file,
                        &c->log_format,
                        &c->log_file,
                        &c->gate_mode,
                        &c->origin_file,
                        &c->redis_tls.cacert,
                        &c->redis_tls.cacertdir,
                        &c->redis_tls.cert,
                        &c->redis_tls.key,
                        &c->redis_tls.sni,
                        &c->sentinel_password};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        free(*strings[i]);
    free(c->origin_line);
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

/* The words a T_CHOICE key accepts, "a|b|c". */
static const struct {
    size_t offset;
    const char *words;
} choice_sets[] = {{F(log_format), "text|json"},
                   {F(on_storm), "hold|drain|drop"},
                   {F(gate_mode), "enforce|observe"},
                   {F(snapshot_method), "scan|sync"}};

static const char *choices_of(const key_spec *k)
{
    for (size_t i = 0; i < sizeof choice_sets / sizeof choice_sets[0]; i++)
        if (choice_sets[i].offset == k->offset)
            return choice_sets[i].words;
    return "";
}

static bool choice_valid(const char *choices, const char *value)
{
    size_t n = strlen(value);
    for (const char *p = choices; n && p;) {
        if (!strncmp(p, value, n) && (p[n] == '|' || p[n] == '\0'))
            return true;
        p = strchr(p, '|');
        p = p ? p + 1 : NULL;
    }
    return false;
}

/* Sets k from text; the error says only the reason, the caller adds "[section] key". */
static int set_value(sg_config *c, const key_spec *k, const char *value, bool append, sg_error *err)
{
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
    case T_STORE_URL:
        if (k->type == T_STORE_URL && !sg_store_is_url(value))
            return sg_error_set(err, SG_EUSAGE,
                                "must be a postgresql:// URL (an SQLite file is [store] path)");
        if (k->type == T_STORE_URL && sg_store_url_check(value, err))
            return SG_EUSAGE;
        /* fall through */
    case T_STRING:
    case T_OPTIONAL:
        if (!*value)
            return sg_error_set(err, SG_EUSAGE, "must not be empty");
        if (k->offset == F(admin_listen)) {
            /* the admin API's address, also as the URL an operator copies */
            if (!strncasecmp(value, "https://", 8))
                return sg_error_set(err, SG_EUSAGE,
                                    "'%s': the admin API speaks plain HTTP (give ADDR:PORT)",
                                    value);
            if (strchr(value, '@'))
                return sg_error_set(err, SG_EUSAGE,
                                    "the admin address takes no user or password (the token is "
                                    "[admin] token or token_file)");
            if (!strncasecmp(value, "http://", 7)) {
                char *v = sg_xstrdup(value + 7);
                size_t len = strlen(v);
                while (len && v[len - 1] == '/')
                    v[--len] = '\0';
                bool ok = len && !strchr(v, '/');
                if (ok) {
                    free(*(char **)field);
                    *(char **)field = v;
                    return 0;
                }
                free(v);
                return sg_error_set(err, SG_EUSAGE, "'%s': give ADDR:PORT or http://ADDR:PORT",
                                    value);
            }
        }
        free(*(char **)field);
        *(char **)field = sg_xstrdup(value);
        return 0;
    case T_POINTER:
        if (!sg_json_pointer_valid(value) || !*value)
            return sg_error_set(err, SG_EUSAGE,
                                "'%s' is not a JSON pointer (like /content/project/name)", value);
        free(*(char **)field);
        *(char **)field = sg_xstrdup(value);
        return 0;
    case T_CHOICE:
        if (!choice_valid(choices_of(k), value)) {
            char words[128];
            snprintf(words, sizeof words, "%s", choices_of(k));
            for (char *p = words; *p; p++)
                *p = *p == '|' ? ',' : *p;
            return sg_error_set(err, SG_EUSAGE, "'%s' must be one of %s", value, words);
        }
        free(*(char **)field);
        *(char **)field = sg_xstrdup(value);
        return 0;
    case T_SIZE: {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        int64_t unit = !strcasecmp(end, "k") ? 1024 : !strcasecmp(end, "m") ? 1 << 20 : 1;
        if (errno || end == value || (*end && unit == 1) || v < 0 || v > k->max / unit ||
            v * unit < k->min)
            return sg_error_set(err, SG_EUSAGE,
                                "'%s' is not a size from %lld bytes to %lld MiB "
                                "(like 512k or 1m)",
                                value, (long long)k->min, (long long)(k->max >> 20));
        *(int64_t *)field = v * unit;
        return 0;
    }
    case T_INT:
        if (sg_parse_int64(value, k->min, k->max, &n))
            return sg_error_set(err, SG_EUSAGE, "'%s' is not a whole number from %lld to %lld",
                                value, (long long)k->min, (long long)k->max);
        *(int64_t *)field = n;
        return 0;
    case T_DURATION:
        if (sg_parse_duration(value, &n) || n < k->min || (k->max && n > k->max))
            return sg_error_set(err, SG_EUSAGE, "'%s' is not a duration (like 90s, 15m, 2h, 7d)%s",
                                value, k->min ? " of at least 1s" : "");
        *(int64_t *)field = n;
        return 0;
    case T_SYNC:
        if (sg_sync_mode_parse(value, (sg_sync_mode *)field))
            return sg_error_set(err, SG_EUSAGE, "'%s' must be normal or full", value);
        return 0;
    case T_BOOL:
    case T_SWITCH: {
        static const char *const yes[] = {"yes", "true", "on", "1"};
        static const char *const no[] = {"no", "false", "off", "0"};
        for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
            if (!strcasecmp(value, yes[i]) || !strcasecmp(value, no[i])) {
                *(bool *)field = !strcasecmp(value, yes[i]);
                return 0;
            }
        }
        return sg_error_set(err, SG_EUSAGE, "'%s' must be yes or no (on or off)", value);
    }
    case T_PROFILE:
        if (sg_profile_kind_parse(value, (sg_profile_kind *)field))
            return sg_error_set(err, SG_EUSAGE, "unknown profile '%s' (igor or none)", value);
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

int sg_config_set(sg_config *c, const char *section, const char *key, const char *value,
                  bool append, sg_error *err)
{
    const key_spec *k = find(section, key);
    if (!k) {
        if (!known_section(section))
            return sg_error_set(err, SG_EUSAGE, "unknown section [%s]", section);
        return sg_error_set(err, SG_EUSAGE, "[%s] %s: unknown key", section, key);
    }
    int rc = set_value(c, k, value, append, err);
    if (rc)
        return sg_error_prefix(err, "[%s] %s", section, key);
    c->origin_line[k - keys] = 0; /* a flag; the file's loader sets its line */
    return 0;
}

int sg_config_blame(const sg_config *c, const char *section, const char *key, sg_error *err)
{
    const key_spec *k = find(section, key);
    int line = k && c->origin_line ? c->origin_line[k - keys] : 0;
    if (line && c->origin_file)
        return sg_error_prefix(err, "%s:%d: [%s] %s", c->origin_file, line, section, key);
    if (k)
        return sg_error_prefix(err, "[%s] %s (--%s)", section, key, k->flag);
    return err->code;
}

/* Trims spaces and tabs at both ends, in place. */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
        *--e = '\0';
    return s;
}

/* Cuts an inline comment: ';' or '#' after whitespace. */
static void cut_comment(char *s)
{
    for (char *p = s; *p; p++) {
        if ((*p == ';' || *p == '#') && p > s && (p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            return;
        }
    }
}

/* One line of the file; section is the current [section] (updated). */
static int load_line(sg_config *c, char *line, int lineno, char *section, size_t section_size,
                     const key_spec **lists_seen, size_t *nseen, sg_error *err)
{
    char *s = trim(line);
    if (!*s || *s == ';' || *s == '#')
        return 0;
    if (*s == '[') {
        char *end = strchr(s, ']');
        if (!end || *trim(end + 1))
            return sg_error_set(err, SG_EUSAGE, "syntax error: expected [section]");
        *end = '\0';
        char *name = trim(s + 1);
        if (!known_section(name))
            return sg_error_set(err, SG_EUSAGE, "unknown section [%s]", name);
        snprintf(section, section_size, "%s", name);
        return 0;
    }
    char *eq = strchr(s, '=');
    if (!eq)
        return sg_error_set(err, SG_EUSAGE, "syntax error: expected [section] or key = value");
    *eq = '\0';
    char *key = trim(s), *value = eq + 1;
    cut_comment(value);
    value = trim(value);
    if (!*section)
        return sg_error_set(err, SG_EUSAGE, "%s: key outside of any [section]", key);
    /* a list key given again in the same file adds to the list */
    const key_spec *k = find(section, key);
    bool append = false;
    for (size_t i = 0; k && i < *nseen; i++)
        append |= lists_seen[i] == k;
    if (k && k->type == T_LIST && !append)
        lists_seen[(*nseen)++] = k;
    int rc = sg_config_set(c, section, key, value, append, err);
    if (rc == 0 && k)
        c->origin_line[k - keys] = lineno;
    return rc;
}

int sg_config_load_text(sg_config *c, const char *name, const char *text, size_t len, sg_error *err)
{
    free(c->origin_file);
    c->origin_file = sg_xstrdup(name);
    char section[64] = "";
    size_t nseen = 0;
    const key_spec *lists_seen[NKEYS];
    sg_buf line = {0};
    int rc = 0, lineno = 0;
    for (size_t at = 0; rc == 0 && at < len;) {
        const char *eol = memchr(text + at, '\n', len - at);
        size_t n = eol ? (size_t)(eol - (text + at)) + 1 : len - at;
        lineno++;
        line.len = 0;
        sg_buf_append(&line, text + at, n); /* load_line cuts it up in place */
        at += n;
        if (memchr(line.p, '\0', n))
            rc = sg_error_set(err, SG_EUSAGE, "line holds a NUL byte");
        else
            rc = load_line(c, line.p, lineno, section, sizeof section, lists_seen, &nseen, err);
        if (rc)
            sg_error_prefix(err, "%s:%d", name, lineno);
    }
    sg_buf_free(&line);
    return rc;
}

int sg_config_load_file(sg_config *c, const char *path, sg_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return sg_error_set(err, SG_EUSAGE, "reading config %s: %s", path, strerror(errno));
    sg_buf text = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        sg_buf_append(&text, chunk, n);
    int rc = ferror(f)
                 ? sg_error_set(err, SG_EUSAGE, "reading config %s: %s", path, strerror(errno))
                 : sg_config_load_text(c, path, text.p, text.len, err);
    sg_buf_free(&text);
    fclose(f);
    return rc;
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

bool sg_config_flag_is_switch(size_t i)
{
    return i < NKEYS && keys[i].type == T_SWITCH;
}

/* Whether the space-separated list names section ("*": every one). */
static bool names_section(const char *list, const char *section)
{
    if (!strcmp(list, "*"))
        return true;
    size_t n = strlen(section);
    for (const char *p = list; (p = strstr(p, section)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return true;
    return false;
}

void sg_config_print_flags(FILE *out, const char *sections)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (!names_section(sections, keys[i].section))
            continue;
        char left[48];
        snprintf(left, sizeof left, "--%s%s", keys[i].flag,
                 keys[i].type == T_LIST     ? " PATTERN"
                 : keys[i].type == T_SWITCH ? ""
                                            : " VALUE");
        fprintf(out, "  %-26s [%s] %s: %s\n", left, keys[i].section, keys[i].key, keys[i].help);
    }
}

/* Whether the loader would take text starting with c, after whitespace, as
 * a comment (cut_comment). */
static bool starts_comment(char c)
{
    return c == ';' || c == '#';
}

/* k's value as the file would give it. */
static void dump_value(const key_spec *k, const void *field, sg_buf *v)
{
    switch (k->type) {
    case T_URL: {
        sg_redis_url u;
        if (sg_redis_url_parse(*(char *const *)field, &u, NULL) == 0) {
            char *red = sg_redis_url_redacted(&u);
            sg_buf_printf(v, "%s", red);
            free(red);
            sg_redis_url_close(&u);
        }
        break;
    }
    case T_STORE_URL: {
        const char *url = *(char *const *)field;
        char *red = url ? sg_store_url_redacted(url) : NULL;
        sg_buf_printf(v, "%s", red ? red : "");
        free(red);
        break;
    }
    case T_STRING:
    case T_CHOICE:
    case T_POINTER:
    case T_OPTIONAL: {
        const char *s = *(char *const *)field;
        if ((k->offset == F(admin_token) || k->offset == F(sentinel_password)) && s)
            s = "(set)"; /* a secret: never printed */
        sg_buf_printf(v, "%s", s ? s : "");
        break;
    }
    case T_SIZE:
    case T_INT:
    case T_DURATION:
        sg_buf_printf(v, "%lld", (long long)*(const int64_t *)field);
        break;
    case T_BOOL:
    case T_SWITCH:
        sg_buf_printf(v, "%s", *(const bool *)field ? "yes" : "no");
        break;
    case T_SYNC:
        sg_buf_printf(v, "%s", sg_sync_mode_name(*(const sg_sync_mode *)field));
        break;
    case T_PROFILE:
        sg_buf_printf(v, "%s", sg_profile_kind_name(*(const sg_profile_kind *)field));
        break;
    case T_LIST: {
        /* an item after a space that starts with ; or # would be read as a
         * comment: a comma separates it */
        const sg_strlist *l = field;
        for (size_t j = 0; j < l->len; j++)
            sg_buf_printf(v, "%s%s",
                          !j                               ? ""
                          : starts_comment(l->items[j][0]) ? ","
                                                           : " ",
                          l->items[j]);
        break;
    }
    }
}

void sg_config_each(const sg_config *c, sg_config_each_fn fn, void *ud)
{
    sg_buf v = {0};
    for (size_t i = 0; i < NKEYS; i++) {
        const key_spec *k = &keys[i];
        const void *field = (const char *)c + k->offset;
        if ((k->type == T_OPTIONAL || k->type == T_POINTER || k->type == T_STORE_URL) &&
            !*(char *const *)field) {
            fn(ud, k->section, k->key, NULL);
            continue;
        }
        v.len = 0;
        dump_value(k, field, &v);
        sg_buf_append(&v, "", 1);
        fn(ud, k->section, k->key, v.p);
    }
    sg_buf_free(&v);
}

typedef struct dump_state {
    FILE *out;
    const char *section;
} dump_state;

static void dump_key(void *ud, const char *section, const char *key, const char *value)
{
    dump_state *d = ud;
    if (strcmp(d->section, section)) {
        fprintf(d->out, "%s[%s]\n", *d->section ? "\n" : "", section);
        d->section = section;
    }
    if (!value) {
        fprintf(d->out, "; %s (not set)\n", key);
        return;
    }
    if ((!strcmp(section, "admin") && !strcmp(key, "token")) ||
        (!strcmp(section, "redis") && !strcmp(key, "sentinel_password"))) {
        /* a comment: the dump read back as a file must not make "(set)"
         * the token */
        fprintf(d->out, "; %s = %s, not shown\n", key, value);
        return;
    }
    /* "key =;x" is the value ;x, "key = ;x" no value and a comment */
    fprintf(d->out, "%s =%s%s\n", key, *value && starts_comment(value[0]) ? "" : " ", value);
}

void sg_config_dump(const sg_config *c, FILE *out)
{
    dump_state d = {.out = out, .section = ""};
    sg_config_each(c, dump_key, &d);
}

/* The token without the whitespace around it: a header value cannot carry
 * it (RFC 9110 5.5), and a file of blanks is not a token. */
static char *trimmed(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        n--;
    return sg_xstrndup(s, n);
}

const char *sg_config_store(const sg_config *c)
{
    return c->store_url ? c->store_url : c->db_path;
}

int sg_config_admin_token(const sg_config *c, char **out, sg_error *err)
{
    char *token = NULL;
    if (c->admin_token) {
        token = trimmed(c->admin_token);
        if (!*token) {
            free(token);
            return sg_error_set(err, SG_EUSAGE, "[admin] token is empty");
        }
    } else if (c->admin_token_file) {
        FILE *f = fopen(c->admin_token_file, "r");
        if (!f)
            return sg_error_set(err, SG_EUSAGE, "reading admin token file %s: %s",
                                c->admin_token_file, strerror(errno));
        char line[512] = "";
        if (!fgets(line, sizeof line, f))
            line[0] = '\0';
        fclose(f);
        line[strcspn(line, "\r\n")] = '\0';
        token = trimmed(line);
        explicit_bzero(line, sizeof line); /* the secret stays in one place only */
        if (!*token) {
            free(token);
            return sg_error_set(err, SG_EUSAGE,
                                "admin token file %s holds no token (its first line is empty or "
                                "blank)",
                                c->admin_token_file);
        }
    }
    *out = token;
    return 0;
}
