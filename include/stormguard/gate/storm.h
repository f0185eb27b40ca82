/* Storm detection and the gate's modes (DOMAIN.md section 4). The detector
 * watches classified build events for the signatures of a poller replaying
 * its history (many builds of one job within a poll interval, many jobs seen
 * for the first time, a high share of replays, a rate far above the usual);
 * the mode machine turns its triggers and wipe alarms into normal / guard /
 * storm; the token bucket paces the release of held events. Pure: no I/O, no
 * clock. Every function takes the time as now_ms, so tests are
 * deterministic. */
#ifndef STORMGUARD_STORM_H
#define STORMGUARD_STORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stormguard/gate/classify.h"
#include "stormguard/base/error.h"

/* ---- detector ---- */

typedef enum sg_storm_signal {
    SG_STORM_SAME_JOB = 0, /* many builds of one job within the window (per source) */
    SG_STORM_FIRST_SEEN,   /* many jobs seen for the first time (per source) */
    SG_STORM_REPLAY_SHARE, /* a high share of replays among the source's events */
    SG_STORM_RATE,         /* new + unknown builds per second over the baseline (global) */
    SG_STORM_NSIGNALS,
} sg_storm_signal;

/* "same_job", "first_seen", "replay_share", "rate"; "?" out of range. */
const char *sg_storm_signal_name(sg_storm_signal sig);

/* The largest same_job_builds accepted: the detector keeps that many build
 * times per tracked job. */
#define SG_STORM_SAME_JOB_MAX 64

/* Thresholds. A signal whose threshold is 0 is off (for the rate backstop:
 * rate_factor 0). */
typedef struct sg_storm_opts {
    int64_t window_ms;        /* the sliding window of the per-source signals */
    int64_t same_job_builds;  /* builds of one job within the window; 0 or 2..64 */
    int64_t first_seen_jobs;  /* distinct jobs classified unknown within the window */
    int64_t first_seen_tags;  /* distinct Docker tags of one account seen for the first time */
    int64_t replay_min;       /* events within the window before the share counts */
    int64_t replay_share_pct; /* replays among them, percent; 0..100 */
    double rate_factor;       /* a second above rate_factor x baseline trips */
    int64_t rate_floor;       /* per second; the threshold is never below it */
    int64_t rate_baseline_ms; /* time constant of the baseline's moving average */
    int64_t max_jobs;         /* jobs tracked at once; the least recent is evicted */
    int64_t max_sources;      /* sources tracked at once; likewise */
} sg_storm_opts;

/* The defaults: window 60 s (Igor's default poll interval), same_job 3,
 * first_seen 20 (jobs and tags), replay_min 20 at 50 %, rate 5 x baseline with a floor of 20/s
 * over a 5 min baseline, 50,000 jobs, 256 sources. */
void sg_storm_opts_default(sg_storm_opts *o);

/* Checks o's ranges; SG_EINVAL with the offending field named in err. */
int sg_storm_opts_check(const sg_storm_opts *o, sg_error *err);

/* A signal firing on one event. */
typedef struct sg_storm_trigger {
    sg_storm_signal signal;
    const char *name;  /* sg_storm_signal_name(signal) */
    const char *scope; /* the source argument of sg_storm_observe, or NULL: global */
    bool repeat;       /* already reported for this scope within the window */
    /* What tripped: same_job the builds within the window (the detector keeps
     * threshold of them, so it says threshold), first_seen the jobs,
     * replay_share the percentage of replays, rate the builds this second. */
    int64_t count;
    int64_t threshold; /* the limit count reached (rate: exceeded) */
    char message[512]; /* for logs and status, with the numbers; may be truncated */
} sg_storm_trigger;

/* The detector. Embedded; the fields are private to storm.c. */
typedef struct sg_storm {
    sg_storm_opts opts;
    int64_t now_ms; /* the latest time observed: time never runs backwards */
    int64_t bucket_ms, nbuckets;
    char window_text[24], factor_text[24]; /* for messages */
    struct sg_storm_table *jobs, *sources;
    /* rate backstop */
    double alpha, baseline;
    int64_t rate_sec, rate_count, rate_reported_ms;
    bool rate_tripped;
} sg_storm;

/* Initializes s with a copy of opts (checked as sg_storm_opts_check does;
 * s is untouched on error). */
int sg_storm_init(sg_storm *s, const sg_storm_opts *opts, sg_error *err);
void sg_storm_close(sg_storm *s);

/* Counts one classified event and fills out[0..n) with the n signals firing
 * on it (0 to SG_STORM_NSIGNALS, cheapest first), which it returns. A signal
 * keeps firing on every event while its condition holds, so the caller can
 * extend the storm; the first time in a window per scope and signal it comes
 * with repeat false (log it, audit it), otherwise repeat true. Pass-through
 * events count for nothing. out[i].scope is source itself, so it stays valid
 * as long as the caller's string; the detector keeps only keyed hashes of
 * the names. An earlier now_ms than before is taken as the latest seen. */
size_t sg_storm_observe(sg_storm *s, int64_t now_ms, const char *source, const char *job,
                        sg_kind kind, sg_storm_trigger out[SG_STORM_NSIGNALS]);

/* As sg_storm_observe for an Igor Docker event of account (the source):
 * same_job counts the repository's events, replay_share and the rate count
 * it as any event, and a tag seen for the first time (first_seen: new to
 * the index and the ledger) counts towards first_seen_tags, apart from the
 * jobs. */
size_t sg_storm_observe_tag(sg_storm *s, int64_t now_ms, const char *account,
                            const char *repository, const char *tag, sg_kind kind, bool first_seen,
                            sg_storm_trigger out[SG_STORM_NSIGNALS]);

/* An event observed at observed_ms as new or unknown turned out to be a
 * replay (the journal found its build in the ledger): from now on it counts
 * as one, for replay_share and not for the rate backstop. Fires like
 * sg_storm_observe (replay_share only). */
size_t sg_storm_replayed(sg_storm *s, int64_t observed_ms, int64_t now_ms, const char *source,
                         sg_storm_trigger out[SG_STORM_NSIGNALS]);

/* Gauges for status and metrics. */
typedef struct sg_storm_stats {
    size_t jobs, sources;   /* tracked now */
    size_t evicted_jobs;    /* evicted by max_jobs (not expired), ever */
    size_t evicted_sources; /* likewise by max_sources */
    size_t bytes;           /* memory held by the tracking tables */
    double baseline;        /* new + unknown builds per second, moving average */
    int64_t rate_threshold; /* a second with more builds than this trips */
} sg_storm_stats;

void sg_storm_stats_get(const sg_storm *s, sg_storm_stats *out);

/* ---- modes ---- */

typedef enum sg_mode {
    SG_MODE_NORMAL = 0, /* forward new and unknown builds */
    SG_MODE_GUARD,      /* a wipe was seen or announced: hold what cannot be told apart */
    SG_MODE_STORM,      /* the detector fires: hold */
} sg_mode;

/* "normal", "guard", "storm"; "?" out of range. */
const char *sg_mode_name(sg_mode m);

/* A transition, reported to the listener given to sg_modes_init. The strings
 * are valid only during the call. */
typedef struct sg_mode_change {
    sg_mode mode;       /* SG_MODE_GUARD or SG_MODE_STORM */
    bool started;       /* false: ended */
    bool forced;        /* ended by sg_modes_guard_off or sg_modes_storm_off */
    const char *scope;  /* storm: the source, NULL when global; guard: NULL */
    const char *detail; /* guard: its reason; storm: the trigger that started it */
    int64_t since_ms;   /* when it started */
    int64_t until_ms;   /* when it ended (its expiry, or the off call's time); 0 if started */
} sg_mode_change;

typedef void (*sg_modes_cb)(const sg_mode_change *change, void *arg);

/* More sources in storm at once than this, and the storm goes global. */
#define SG_MODES_MAX_STORMS 64

/* The mode machine. Embedded; the fields are private to storm.c. */
typedef struct sg_modes {
    sg_modes_cb cb;
    void *cb_arg;
    bool guard_on; /* a guard episode not yet reported as ended */
    int64_t guard_since, guard_until, guard_ms;
    char *guard_reason;
    struct sg_modes_scope *storms;
    size_t nstorms;
} sg_modes;

/* cb (may be NULL) hears of every start and end, synchronously, from the
 * function that notices it; it must not call back into m. */
void sg_modes_init(sg_modes *m, sg_modes_cb cb, void *cb_arg);
/* Frees m without reporting the episodes still on. */
void sg_modes_close(sg_modes *m);

/* Enters guard mode, or extends it: guard until max(current, now +
 * duration_ms). Later storm triggers extend it by duration_ms again. reason
 * is copied; an extension keeps the first reason. True if guard started. */
bool sg_modes_guard(sg_modes *m, int64_t now_ms, int64_t duration_ms, const char *reason);

/* Ends guard mode now; true if it was on. */
bool sg_modes_guard_off(sg_modes *m, int64_t now_ms);

/* Enters or extends a storm on scope (a source; NULL: global) until now +
 * cooldown_ms, and extends an active guard (see sg_modes_guard). message
 * (the trigger's, copied) describes a storm that starts; an extension keeps
 * the first. Past SG_MODES_MAX_STORMS sources the storm goes global. True if
 * a storm started. */
bool sg_modes_storm(sg_modes *m, int64_t now_ms, const char *scope, int64_t cooldown_ms,
                    const char *message);

/* Ends the storm on scope (NULL: the global one) now; true if it was on. */
bool sg_modes_storm_off(sg_modes *m, int64_t now_ms, const char *scope);

/* Reports (and forgets) every episode that expired by now_ms. Queries are
 * right without it; call it about once a second so ends are heard soon. */
void sg_modes_tick(sg_modes *m, int64_t now_ms);

/* The mode for an event of source (NULL: no source): storm if that source or
 * everything is in storm, else guard if on, else normal. */
sg_mode sg_modes_for(const sg_modes *m, int64_t now_ms, const char *source);

/* The mode for /v1/status: storm if any storm is on, else guard, else normal. */
sg_mode sg_modes_overall(const sg_modes *m, int64_t now_ms);

typedef struct sg_guard_info {
    int64_t since_ms, until_ms;
    const char *reason; /* valid until m next changes */
} sg_guard_info;

/* True if guard is on at now_ms; fills out (may be NULL) only then. */
bool sg_modes_guard_info(const sg_modes *m, int64_t now_ms, sg_guard_info *out);

typedef struct sg_mode_storm_info {
    const char *scope;   /* NULL: global; valid until m next changes */
    const char *message; /* likewise */
    int64_t since_ms, until_ms;
} sg_mode_storm_info;

/* Fills out[0..max) with the storms on at now_ms and returns how many are on
 * (which may exceed max). */
size_t sg_modes_storms(const sg_modes *m, int64_t now_ms, sg_mode_storm_info *out, size_t max);

/* ---- draining ---- */

/* A token bucket: rate_per_s tokens a second, at most burst saved up. It
 * starts full. Exact (integer micro-tokens), so repeated takes do not drift. */
typedef struct sg_bucket {
    int64_t rate_u;   /* micro-tokens per ms */
    int64_t burst_u;  /* capacity in micro-tokens */
    int64_t tokens_u; /* as of last_ms */
    int64_t last_ms;
} sg_bucket;

/* burst is at least 1; a rate of 0 (or below) never refills. */
void sg_bucket_init(sg_bucket *b, double rate_per_s, int64_t burst);

/* How many of n may go at now_ms; takes their tokens. */
int64_t sg_bucket_take(sg_bucket *b, int64_t now_ms, int64_t n);

/* Milliseconds from now_ms until a token is there (0: one is there now; -1:
 * never, as the rate is 0). */
int64_t sg_bucket_wait_ms(const sg_bucket *b, int64_t now_ms);

#endif
