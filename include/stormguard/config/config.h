/* Configuration: built-in defaults, then the INI file (-c FILE), then the
 * environment, then command-line flags. Every INI key is also a flag, by one
 * table (config.c), so the two can never disagree. Errors name the file, the
 * line and the key. */
#ifndef STORMGUARD_CONFIG_H
#define STORMGUARD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "stormguard/base/error.h"
#include "stormguard/redis/redis_url.h"
#include "stormguard/snapshot/profile.h"
#include "stormguard/store/store.h"
#include "stormguard/base/util.h"

#define SG_DEFAULT_DB_PATH "/var/lib/stormguard/stormguard.db"
#define SG_DEFAULT_REDIS_URL "redis://127.0.0.1:6379/0"
#define SG_DEFAULT_LISTEN "127.0.0.1:8090"
#define SG_DEFAULT_ADMIN "127.0.0.1:8091"

typedef struct sg_config {
    /* [redis] */
    char *redis_url;
    int64_t connect_timeout_ms;
    int64_t redis_timeout_s;   /* each command's reply waits at most this */
    bool watch;                /* the daemon watches Redis for wipes */
    char *canary;              /* key the daemon owns to confirm wipes */
    int64_t check_interval_ms; /* wipe check period, fallback to tracking */
    sg_redis_tls redis_tls;    /* tls, insecure, cacert ... (a rediss:// URL also turns TLS on) */
    char *sentinel_password;   /* the sentinels' own (a secret: never printed) */
    /* [store] */
    char *db_path;   /* the SQLite file */
    char *store_url; /* a PostgreSQL store instead (postgresql://...), or NULL */
    sg_sync_mode synchronous;
    int64_t keep_events_s; /* finished events older than this are deleted, 0 = never */
    /* [profile] */
    sg_profile_kind profile;
    char *prefix;
    /* [snapshot] */
    sg_strlist match;            /* extra patterns to snapshot */
    int64_t scan_count;          /* SCAN COUNT, >= 1000 */
    char *snapshot_method;       /* scan | sync */
    int64_t keep;                /* snapshots kept, 0 = no count limit */
    int64_t max_age_s;           /* 0 = no age limit */
    int64_t snapshot_interval_s; /* the daemon's periodic snapshots, 0 = off */
    int64_t suspect_below_pct;   /* profile keys below this % of the last good: suspect */
    /* [flush] */
    sg_strlist protect;  /* namespaces a flush refuses to delete */
    bool flush_announce; /* a flush needs the daemon's confirmation first */
    /* [gate] */
    char *gate_mode; /* enforce | observe */
    char *listen;
    char *downstream;       /* NULL until configured */
    sg_strlist build_paths; /* paths where build events arrive */
    int64_t max_body;       /* bytes */
    int64_t max_header;     /* bytes of the request line and headers */
    int64_t read_timeout_s;
    int64_t max_connections;
    char *tls_cert, *tls_key;
    sg_strlist forward_headers; /* request headers passed on (globs, lower-case) */
    char *notification_source;
    char *source_pointer, *job_pointer, *number_pointer, *timestamp_pointer;
    /* [forward] */
    int64_t max_inflight;
    int64_t forward_timeout_s;
    int64_t forward_max_age_s;
    int64_t retry_base_ms;
    int64_t retry_max_s;
    /* [guard] */
    int64_t guard_duration_s;
    bool rewarm;
    /* [storm] */
    int64_t storm_window_s;
    int64_t storm_same_job, storm_first_seen, storm_replay_pct, storm_replay_min;
    int64_t storm_first_seen_tags;
    int64_t storm_rate_factor, storm_rate_floor;
    int64_t storm_cooldown_s;
    char *on_storm;     /* hold | drain | drop */
    int64_t drain_rate; /* events/s */
    /* [admin] */
    char *admin_listen;
    char *admin_token;
    char *admin_token_file;
    /* [log] */
    char *log_format; /* text | json */
    char *log_file;   /* NULL: stderr */
    /* where each key was last set: its line in origin_file, 0 for a
     * default or a flag (sg_config_blame) */
    char *origin_file;
    int *origin_line; /* one per key of the table */
} sg_config;

/* Fills c with the built-in defaults. */
void sg_config_init(sg_config *c);
void sg_config_close(sg_config *c);

/* Loads an INI file over c. Errors: "FILE:LINE: [section] key: reason". */
int sg_config_load_file(sg_config *c, const char *path, sg_error *err);

/* Loads INI text (len bytes, a file's contents; NULs are errors) over c, as
 * sg_config_load_file does with what it reads; name stands for FILE in the
 * errors. Keys set before an error stay set. */
int sg_config_load_text(sg_config *c, const char *name, const char *text, size_t len,
                        sg_error *err);

/* Sets one key ("section", "key") from text, as the file and flags do. A list
 * value holds items separated by spaces or commas; with append the items are
 * added to the list, else they replace it. */
int sg_config_set(sg_config *c, const char *section, const char *key, const char *value,
                  bool append, sg_error *err);

/* Maps a long flag name ("keep") to its section and key; false if the flag
 * is not a config key. */
bool sg_config_flag(const char *flag, const char **section, const char **key, bool *is_list);

/* Prefixes err with "FILE:LINE: [section] key: " when that key's value
 * came from the configuration file, or "[section] key: " (with the flag
 * named) otherwise, so a check of the whole configuration names the line
 * to fix as the loader does; returns err->code. */
int sg_config_blame(const sg_config *c, const char *section, const char *key, sg_error *err);

/* The i-th config key's flag name; NULL past the last. */
const char *sg_config_flag_at(size_t i);

/* Whether the i-th flag takes no value (--tls, --insecure: "yes"). */
bool sg_config_flag_is_switch(size_t i);

/* One line per config key of the sections named (space-separated; "*":
 * all) with its flag and meaning, for --help. */
void sg_config_print_flags(FILE *out, const char *sections);

/* The admin API's bearer token: [admin] token, else the first line of
 * token_file, without surrounding whitespace; *out is NULL when neither is
 * set (free it). A token file that cannot be read or holds no token is
 * SG_EUSAGE, naming the file. */
/* Where the store is: [store] url when set, else [store] path. What
 * sg_store_open and sg_store_claim_new take. */
const char *sg_config_store(const sg_config *c);

int sg_config_admin_token(const sg_config *c, char **out, sg_error *err);

/* Writes the effective configuration as INI (passwords never included). */
void sg_config_dump(const sg_config *c, FILE *out);

/* Called for each key, in the order of the key table (sections together),
 * with its value as the INI file would give it: the Redis URL without its
 * password, the admin token as "(set)", lists space-separated (a comma
 * before an item that starts with ';' or '#', which would read as a
 * comment). value is
 * NULL for an optional key that is not set; it is valid during the call. */
typedef void (*sg_config_each_fn)(void *ud, const char *section, const char *key,
                                  const char *value);
void sg_config_each(const sg_config *c, sg_config_each_fn fn, void *ud);

#endif
