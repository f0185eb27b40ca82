/* The simulator (`stormguard simulate`): a discrete-event simulation, in
 * virtual time, of a scenario (scenario.h) once per defence, with the
 * defences people use today beside stormguard.
 *
 * The world follows Igor's, Jenkins' and Echo's source (DOMAIN.md section
 * 7): Jenkins builds start, run and end; Igor's Jenkins poller runs one
 * cycle over the masters after another with a fixed delay, keeps each job's
 * cursor and posted markers in a simulated Redis, takes the builds after the
 * cursor (all of the 100 most recent without one), posts each completed one
 * without a marker newest first and synchronously, stops the master's cycle
 * on a non-2xx answer, and advances the cursor only when no build runs;
 * Igor's Docker poller posts tags its cache lacks, except from an account
 * whose cache is empty; Echo triggers every matching pipeline of a SUCCESS
 * build, with no de-duplication. Faults wipe the simulated Redis.
 *
 * The stormguard defence is not a model: it is the gate core (core.h) with
 * its guard, held queue and journal on a real SQLite file, on a virtual
 * clock; the watcher's verdicts come from the real wipe rules (wipe.h) fed
 * with what the simulated Redis shows; snapshots are taken from the
 * simulated Redis into the store as the daemon takes them. If the daemon's
 * behaviour changes, its row changes with it.
 *
 * Same scenario and seed, same results, byte for byte. */
#ifndef STORMGUARD_SIM_H
#define STORMGUARD_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <stdio.h>

#include "stormguard/base/error.h"
#include "stormguard/config/config.h"
#include "stormguard/sim/scenario.h"

typedef enum sg_sim_defence {
    SG_DEF_NONE,             /* Igor with no safeguard (1.87, the seed incident's) */
    SG_DEF_THRESHOLD,        /* item_upper_threshold; the operator fast-forwards */
    SG_DEF_FIRST_BUILDS_OFF, /* handle_first_builds = false */
    SG_DEF_LOOKBACK,         /* look_back_window */
    SG_DEF_NGINX,            /* nginx limit_req (nodelay) in front of Echo */
    SG_DEF_STORMGUARD,       /* the real gate in front of Echo */
    SG_DEF_COUNT
} sg_sim_defence;

/* "none", "igor-threshold", "igor-first-builds-off", "igor-lookback",
 * "nginx-limit", "stormguard". */
const char *sg_sim_defence_name(sg_sim_defence d);
int sg_sim_defence_parse(const char *name, sg_sim_defence *out);

/* What reached Echo under one defence. Counts are triggers: events times
 * the pipelines they match. */
typedef struct sg_sim_result {
    sg_sim_defence defence;
    int64_t spurious;                /* triggers of a build that had triggered before */
    int64_t genuine;                 /* triggers owed for builds that ended SUCCESS in the run */
    int64_t genuine_on_time;         /* of those: within 2 poll intervals of the build's end */
    int64_t genuine_delayed;         /* later */
    int64_t genuine_lost;            /* never, by the end */
    int64_t genuine_superseded;      /* of the lost: a newer build of the job triggered instead */
    double delay_p50_s, delay_max_s; /* over the genuine triggers that came */
    int64_t inversions;  /* a build's trigger after a newer build's, per job and pipeline */
    int64_t held_at_end; /* events the gate still holds */
    int64_t operator_actions;
    int64_t peak_triggers_per_min;
    int64_t posts, answered_503; /* Igor's posts, and those refused */
    /* one value per simulated minute */
    size_t minutes;
    int64_t *triggers, *spurious_cum, *genuine_cum, *held;
    char *mode; /* 'n'ormal, 'g'uard, 's'torm, or '-' (no gate) */
} sg_sim_result;

void sg_sim_result_close(sg_sim_result *r);

/* Runs scenario s under defence d with seed (the scenario's when the caller
 * passes it through). gate: the stormguard defence's configuration, as the
 * daemon's ([storm], [guard] duration, [snapshot] keep and suspect_below,
 * the event pointers; NULL: the daemon's defaults); the scenario's own
 * stormguard section says when the gate is installed, how often it
 * snapshots and whether it rewarms. workdir: a directory for the gate's
 * store (the stormguard defence); it must exist. Errors are SG_ESTORE and
 * alike, or SG_EUSAGE for a configuration the gate refuses: the scenario
 * itself was checked when it was read. */
int sg_sim_run(const sg_scenario *s, sg_sim_defence d, uint64_t seed, const sg_config *gate,
               const char *workdir, sg_sim_result *out, sg_error *err);

/* Writes the world a run of s with seed draws (every job's builds: start,
 * end and result, in virtual ms from the start, which is epoch ms t0) as
 * one JSON document, for a replay against the real daemon
 * (simulations/live.sh) to post the same builds. */
int sg_sim_write_world(const sg_scenario *s, uint64_t seed, FILE *out);

#endif
