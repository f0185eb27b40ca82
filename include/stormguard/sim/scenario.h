/* A simulation scenario (simulations/README.md documents every field): a
 * world of Jenkins masters and Docker accounts, how Igor polls them, the
 * faults that wipe Igor's Redis and the changes that happen, and how
 * stormguard and the operator are set up. Read from JSON; every field is
 * checked, and an unknown one is an error, so that a typo never silently
 * runs another scenario than the one written. Durations are strings in
 * the product's own form ("250ms", "90s", "15m", "2h"). */
#ifndef STORMGUARD_SCENARIO_H
#define STORMGUARD_SCENARIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stormguard/base/error.h"

typedef struct sg_sim_master {
    char *name;
    int64_t jobs;              /* at the start */
    int64_t history;           /* completed builds each job has at the start, all announced */
    int64_t build_every_ms;    /* mean time between a job's builds; 0: none */
    int64_t build_duration_ms; /* how long a build runs */
    double success_rate;       /* share of builds that end SUCCESS */
    double out_of_order;       /* share of builds that run long enough to end after the next */
    int64_t pipelines_per_job; /* Echo pipelines whose trigger matches each job */
} sg_sim_master;

typedef struct sg_sim_account {
    char *name;
    int64_t repositories;       /* each with a Docker-triggered pipeline per... */
    int64_t tags;               /* tags each repository has at the start, all cached */
    int64_t push_every_ms;      /* mean time between new tags of a repository; 0: none */
    int64_t pipelines_per_repo; /* Echo pipelines whose trigger matches the repository */
} sg_sim_account;

typedef enum sg_sim_fault_kind {
    SG_SIM_FLUSHALL,       /* FLUSHALL: every key */
    SG_SIM_FLUSHDB,        /* FLUSHDB of Igor's database */
    SG_SIM_RESTART,        /* Redis restarts empty (no persistence) */
    SG_SIM_FAILOVER_EMPTY, /* a replica with no data is promoted */
    SG_SIM_EVICT,          /* a fraction of Igor's keys evicted (allkeys-lru) */
    SG_SIM_DELETE_PATTERN, /* only the poller's keys deleted; the canary stays */
    SG_SIM_PARK,           /* a cluster park and unpark: Redis comes back empty and
                            * Clouddriver cold (first_read of each account) */
} sg_sim_fault_kind;

typedef struct sg_sim_fault {
    int64_t at_ms;
    sg_sim_fault_kind kind;
    double fraction; /* evict: the share of keys; park: Clouddriver's first read */
} sg_sim_fault;

typedef enum sg_sim_change_kind {
    SG_SIM_NEW_JOBS,      /* count new jobs on master, history builds each, never announced */
    SG_SIM_SET_THRESHOLD, /* an operator sets Igor's item_upper_threshold to value */
} sg_sim_change_kind;

typedef struct sg_sim_change {
    int64_t at_ms;
    sg_sim_change_kind kind;
    char *master;
    int64_t count, history, value;
} sg_sim_change;

typedef enum sg_sim_action {
    SG_SIM_RELEASE_NEWEST, /* stormguard release --all --newest-only */
    SG_SIM_DROP,           /* stormguard drop --all */
    SG_SIM_NONE,
} sg_sim_action;

typedef struct sg_scenario {
    char *name, *about;
    uint64_t seed;
    int64_t duration_ms;
    struct {
        int64_t poll_interval_ms;
        int64_t item_upper_threshold; /* the igor-threshold defence's; 0: off */
        bool handle_first_builds;
        int64_t look_back_window_ms; /* the igor-lookback defence's; -1: off */
        int64_t post_latency_ms;     /* Echo's answer to one post */
        int64_t docker_poll_interval_ms;
    } igor;
    struct {
        double rate;   /* requests a second */
        int64_t burst; /* nodelay: beyond the burst, 503 */
    } nginx;
    sg_sim_master *masters;
    size_t nmasters;
    sg_sim_account *accounts;
    size_t naccounts;
    sg_sim_fault *faults;
    size_t nfaults;
    sg_sim_change *changes;
    size_t nchanges;
    struct {
        int64_t starts_at_ms; /* installed this long after the start (cold, no snapshot) */
        bool rewarm;
        int64_t snapshot_interval_ms;
    } stormguard;
    struct {
        int64_t reacts_after_ms;
        sg_sim_action action;
    } operator_;
} sg_scenario;

/* Reads a scenario from JSON text; path names it in messages. Errors are
 * SG_EUSAGE: "FILE: masters[0].jobs: must be a whole number from 0 to
 * 1000000". On error *out is not written. */
int sg_scenario_parse(const char *text, size_t len, const char *path, sg_scenario *out,
                      sg_error *err);
/* Reads the file at path. */
int sg_scenario_load(const char *path, sg_scenario *out, sg_error *err);
void sg_scenario_close(sg_scenario *s);

#endif
