/* The wipe rules: whether one check of a Redis server shows that the data the
 * watcher knew about is gone, what caused it, and the evidence in words.
 * Pure: no I/O, no clock (the time comes in the structs), nothing kept
 * between calls. watch.c gathers the observation on the loop and acts on the
 * verdict; DOMAIN.md section 5 explains the Redis facts the rules rest on. */
#ifndef STORMGUARD_WIPE_H
#define STORMGUARD_WIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum sg_wipe_cause {
    SG_WIPE_FLUSH,    /* the canary vanished on the same server (FLUSHALL/FLUSHDB) */
    SG_WIPE_RESTART,  /* a new run_id and the canary gone: restart without persistence */
    SG_WIPE_FAILOVER, /* role or replication id changed (or another server answers) and
                       * the canary is gone */
    SG_WIPE_KEYS,     /* the canary survives but most of the sampled keys are gone */
} sg_wipe_cause;

/* "flush", "restart", "failover", "keys". */
const char *sg_wipe_cause_name(sg_wipe_cause c);

/* What made a check run. A later value is the more telling one: a check that
 * two signals ask for is reported under the later. */
typedef enum sg_wipe_trigger {
    SG_WIPE_TRIGGER_TIMER,  /* the periodic check */
    SG_WIPE_TRIGGER_FIRST,  /* the first check of a connection (after a reconnect) */
    SG_WIPE_TRIGGER_CANARY, /* an invalidation naming the canary: written or deleted */
    SG_WIPE_TRIGGER_FLUSH,  /* an invalidation with a null key list: FLUSHALL/FLUSHDB, or a
                             * replica loading a new dataset */
} sg_wipe_trigger;

/* What the watcher knew before this check. The strings are borrowed for the
 * call. */
typedef struct sg_wipe_known {
    const char *address;       /* "10.0.0.5:6379", for the detail */
    const char *canary;        /* the canary's key name */
    const char *count_pattern; /* the profile's key pattern ("igor:*"), or NULL */
    bool canary_seen;          /* the canary existed at the last look, or was set since */
    /* The server at the last good check; run_id NULL if there was none (then
     * role and master_replid are not read). */
    const char *run_id, *role, *master_replid;
    int64_t checked_at_ms; /* epoch ms of that check */
    /* With no check of this server yet (run_id NULL): the Cluster master
     * whose slots it took over ("10.0.0.5:6379"), or NULL. A canary gone is
     * then a failover, a canary kept a failover the data survived. */
    const char *predecessor;
    uint64_t sample_gen; /* generation of the current key sample */
} sg_wipe_known;

/* One check's replies. The strings are "" when INFO lacks the field, never
 * NULL, and borrowed for the call. */
typedef struct sg_wipe_obs {
    sg_wipe_trigger trigger;
    int64_t now_ms; /* epoch ms when the replies are judged */
    bool canary;    /* EXISTS canary */
    int64_t dbsize; /* DBSIZE: evidence for the detail, decides nothing */
    const char *run_id, *role, *master_replid;
    int64_t uptime_s; /* uptime_in_seconds; -1 if unknown */
    size_t sample_n;  /* sampled keys asked about; 0: no sample (the next two are then not read) */
    int64_t sample_present; /* how many of them exist */
    uint64_t sample_gen;    /* the sample's generation when the check was sent */
} sg_wipe_obs;

typedef enum sg_wipe_verdict {
    SG_VERDICT_INTACT,  /* nothing the watcher knew of is gone */
    SG_VERDICT_UNARMED, /* the canary is missing but was never seen: nothing to judge by */
    SG_VERDICT_WIPED,   /* the data is gone: cause and detail say how */
} sg_wipe_verdict;

#define SG_WIPE_DETAIL_MAX 1024
#define SG_WIPE_NOTE_MAX 512

typedef struct sg_wipe_result {
    sg_wipe_verdict verdict;
    /* Written only for SG_VERDICT_WIPED. */
    sg_wipe_cause cause;
    /* The evidence with numbers ("FLUSHALL/FLUSHDB: canary stormguard:canary
     * gone, dbsize 0"); "" unless wiped. */
    char detail[SG_WIPE_DETAIL_MAX];
    /* A change of the server that by itself costs no data ("new run_id
     * 1a2b.. (was 3c4d..), canary kept: data survived"), for the log; "" if
     * none. Set whatever the verdict. */
    char note[SG_WIPE_NOTE_MAX];
    /* Intact, and the server restarted or another took over (the rules of
     * a wipe's cause): a change the data survived, which the note words
     * ("redis restarted (...), canary kept: data survived"). kept_cause
     * (SG_WIPE_RESTART or SG_WIPE_FAILOVER) is written only when kept. */
    bool kept;
    sg_wipe_cause kept_cause;
} sg_wipe_result;

/* Judges one check against what was known:
 * - The canary gone although it was seen: a wipe. Its cause is a restart if
 *   the run_id changed and the server is no older than the time since the
 *   last check (+1 s), a failover if the run_id changed otherwise (another
 *   server at the address), a failover if the role changed or a replica's
 *   master_replid did (a master's new master_replid alone is not: Redis
 *   starts a replication history when it creates or frees a backlog), else a
 *   flush, worded by the trigger.
 * - The canary gone and never seen: unarmed, not a wipe.
 * - The canary present and at least half of a sample of the current
 *   generation gone: a wipe of cause keys.
 * Writes verdict, detail and note on every path, cause on a wipe. */
void sg_wipe_judge(const sg_wipe_known *k, const sg_wipe_obs *o, sg_wipe_result *out);

#endif
