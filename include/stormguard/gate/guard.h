/* Guard and storm modes (DOMAIN.md sections 4 and 5): the gate's judgment,
 * per source, of whether what arrives now can be told from a replay.
 *
 *   wipes (the daemon's watcher) ----------\
 *   events as classified -> storm detector -+-> modes: normal / guard / storm
 *   operator: guard on/off, flush announce -/
 *
 * A wipe, an operator's "guard on" or an announced flush turns guard mode on
 * for guard_ms; a storm signal turns storm mode on for its source (or
 * everywhere) until cooldown_ms passes without another, and extends guard
 * mode. Wipes and storms are episodes, recorded in the journal.
 *
 * No sockets, no timers, no Redis: the owner tells it what happened and
 * calls sg_guard_tick about once a second; every time it reads comes from
 * the clock it was given, so the simulator runs it in virtual time. One
 * thread (the loop's). */
#ifndef STORMGUARD_GUARD_H
#define STORMGUARD_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stormguard/base/clock.h"
#include "stormguard/base/error.h"
#include "stormguard/gate/classify.h"
#include "stormguard/gate/journal.h"
#include "stormguard/gate/storm.h"

typedef struct sg_guard sg_guard;

typedef struct sg_guard_opts {
    sg_storm_opts storm;    /* the detector's thresholds (sg_storm_opts_check) */
    int64_t guard_ms;       /* how long guard mode lasts from its last cause */
    int64_t cooldown_ms;    /* a storm ends this long after its last signal */
    int64_t expect_wipe_ms; /* an announced flush is expected this long; 0: 10 min */
    const sg_clock *clock;  /* borrowed for the guard's life */
    sg_journal *journal;    /* episodes are written here; NULL: not recorded */
    bool drops_unknown;     /* on_storm = drop: the log says unknown builds are
                               dropped in guard and storm mode, not held */
} sg_guard_opts;

/* Hears every mode that starts or ends (after the guard logged it); the
 * change is valid during the call only. It may read the guard
 * (sg_guard_mode, sg_guard_report_get) but not change it. */
typedef void (*sg_guard_mode_fn)(void *ud, const sg_mode_change *change);

/* A new guard in normal mode. The options are checked (a storm threshold out
 * of range is SG_EUSAGE naming it); on error *out is not written. */
int sg_guard_new(const sg_guard_opts *o, sg_guard_mode_fn on_mode, void *ud, sg_guard **out,
                 sg_error *err);
/* Frees g (NULL is fine); an episode still open stays open in the store.
 * While an episode write is in the journal, the memory is freed once it
 * committed: the journal given in the options must outlive it (stop the
 * journal after this call, not before). */
void sg_guard_free(sg_guard *g);

/* The mode for an event of source (NULL: the overall mode, storm if any
 * storm is on). */
sg_mode sg_guard_mode(const sg_guard *g, const char *source);

/* An event as classified (pass-through events count for nothing). The event
 * that trips a signal is judged in the mode it starts. */
void sg_guard_observe(sg_guard *g, const char *source, const char *job, sg_kind kind);
/* The same for an Igor Docker event (storm.h sg_storm_observe_tag). */
void sg_guard_observe_tag(sg_guard *g, const char *account, const char *repository, const char *tag,
                          sg_kind kind, bool first_seen);
/* An event observed at observed_ms as new or unknown was a replay after all
 * (the journal found its build in the ledger). */
void sg_guard_replayed(sg_guard *g, int64_t observed_ms, const char *source);

/* Redis was wiped (cause "flush", "restart", ...; detail the evidence).
 * Opens an episode and turns guard mode on. Returns true if the wipe was
 * announced (a flush stormguard performs, within expect_wipe_ms, and each
 * wipe within 5 s of the one before it, inside that window: a Cluster's
 * masters are flushed in turn and seen apart): the operator meant it, so
 * the owner does not rewarm. */
bool sg_guard_wipe(sg_guard *g, const char *cause, const char *detail, int64_t detected_at_ms);
/* Redis restarted or failed over and kept the data (cause "restart" or
 * "failover", detail the evidence): an episode of its own ("failover, data
 * kept"), opened and ended at once; the mode and the open episode stay as
 * they were. */
void sg_guard_server_changed(sg_guard *g, const char *cause, const char *detail);
/* A rewarm after the last wipe finished (detail says how): appended to its
 * episode. */
void sg_guard_rewarmed(sg_guard *g, const char *detail);
/* An operator turns guard mode on (for guard_ms) or off; reason names who
 * and why. */
void sg_guard_on(sg_guard *g, const char *reason);
void sg_guard_off(sg_guard *g, const char *reason);
/* Another replica of the gate's mode (a shared store): guard mode, or a
 * storm of scope (NULL: every source), on until until_ms at least. The
 * mode is logged and told to the owner as any start, but its episode is
 * the other replica's: none is opened here. */
void sg_guard_adopt(sg_guard *g, const char *scope, bool storm, int64_t until_ms,
                    const char *reason);
/* What another replica knows of the wipes: the last one it saw (epoch ms,
 * 0: none), the builds ending after it are no replays here either; and
 * until when a flush announced to it expects its wipe (0: none), so that
 * this replica, should it watch Redis, takes that wipe as announced (no
 * rewarm). Either only ever moves later. */
void sg_guard_adopt_wipes(sg_guard *g, int64_t wipe_at_ms, int64_t expect_until_ms);
/* A flush is coming: guard mode on, and the wipe it causes is expected. */
void sg_guard_announce(sg_guard *g, const char *reason);

/* Ends what expired (a guard period, a storm's cooldown) and reports it. */
void sg_guard_tick(sg_guard *g);

/* What the guard knows, for status pages and metrics. Strings are valid
 * until the guard next changes. */
#define SG_GUARD_MAX_STORMS 16
typedef struct sg_guard_report {
    sg_mode mode; /* overall */
    bool guard;   /* guard mode is on: */
    int64_t guard_since_ms, guard_until_ms;
    const char *guard_reason;
    size_t nstorms; /* storms on (the first SG_GUARD_MAX_STORMS below) */
    sg_mode_storm_info storms[SG_GUARD_MAX_STORMS];
    uint64_t wipes, storm_signals, rewarms;
    uint64_t server_changes;      /* restarts and failovers that kept the data */
    int64_t last_wipe_at_ms;      /* 0: none since the start */
    int64_t expect_wipe_until_ms; /* an announced flush's wipe is expected until then (0: none) */
} sg_guard_report;
void sg_guard_report_get(const sg_guard *g, sg_guard_report *out);

#endif
