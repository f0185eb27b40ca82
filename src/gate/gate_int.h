/* The gate's state, shared by the files that make up `stormguard run`:
 * gate.c (requests, journal, forwarding, status), hold.c (the held queue and
 * its policies) and guard.c (wipes, storms, guard mode, snapshots, rewarm).
 * Private to them: nothing else includes it. */
#ifndef STORMGUARD_GATE_INT_H
#define STORMGUARD_GATE_INT_H

#include <jansson.h>
#include <string.h>
#include <uv.h>

#include "stormguard/gate/admin.h"
#include "stormguard/gate/classify.h"
#include "stormguard/gate/event.h"
#include "stormguard/gate/forward.h"
#include "stormguard/gate/gate.h"
#include "stormguard/gate/http.h"
#include "stormguard/gate/journal.h"
#include "stormguard/gate/metrics.h"
#include "stormguard/snapshot/sidecar.h"
#include "stormguard/store/store.h"
#include "stormguard/gate/storm.h"
#include "stormguard/redis/watch.h"

#define SPILL_AT 4096 /* forwarder backlog held in memory at most */
#define REFILL_BATCH 512
#define BASELINE_CHECK_MS 5000 /* how often a newer snapshot is looked for */

enum { N_KINDS = 4, N_STATES = 8 };
static const char *const state_names[N_STATES] = {"pending",  "forwarded", "suppressed", "held",
                                                  "released", "dropped",   "superseded", "dead"};
enum {
    ST_PENDING,
    ST_FORWARDED,
    ST_SUPPRESSED,
    ST_HELD,
    ST_RELEASED,
    ST_DROPPED,
    ST_SUPERSEDED,
    ST_DEAD
};

static inline int state_index(const char *s)
{
    for (int i = 0; i < N_STATES; i++)
        if (!strcmp(s, state_names[i]))
            return i;
    return -1;
}

struct sg_gate {
    uv_loop_t *loop;
    const sg_config *cfg;
    sg_http *http, *admin_http;
    sg_admin admin;
    char *admin_token;
    sg_journal *journal;
    sg_forward *fwd;
    sg_store *reader; /* read-only connection: admin queries, refills */
    sg_event_config evcfg;

    sg_index index;
    sg_ledger ledger;
    int64_t ledger_builds; /* rows of the store's ledger */
    bool trim_pending;     /* the next reload job first runs malloc_trim */
    int64_t baseline_id;
    bool reloading;

    bool spilled;
    /* the delivery queue's order is (qgen, id): store.h, 004_held.sql */
    int64_t qgen;                  /* generation new pending events join */
    int64_t loaded_gen, loaded_id; /* the last event handed to the forwarder */

    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t tick;
    /* the journal's retention ([store] keep_events): a pass of chunks */
    sg_jop prune;
    bool pruning;
    int64_t next_prune_at, pruned_pass;
    bool stopping;
    int stop_waits; /* components whose stop callback is pending */

    int64_t started_at;
    int64_t counts[N_KINDS][N_STATES];
    uint64_t received[N_KINDS], rejected, unavailable;
    uint64_t fwd_attempts, fwd_failures;
    sg_histogram commit_hist, forward_hist;
    bool journal_ok;
    char journal_error[256];
    uv_timer_t probe_timer; /* while !journal_ok: a probe write a second */
    sg_jop probe;
    bool probing;
    bool measuring;                        /* a space_job is running */
    int64_t store_free_bytes, store_bytes; /* -1 until measured */
    bool downstream_ok;
    int64_t downstream_last_ok, downstream_last_fail;
    /* what the last activity line reported */
    uint64_t logged_received[N_KINDS], logged_attempts, logged_failures, logged_rejected;
    int ticks;
    char downstream_error[256];

    /* hold.c */
    uv_timer_t drain;
    bool draining; /* a drain release is in the journal */
    /* guard.c */
    bool storm_on; /* storm and modes initialized */
    sg_storm storm;
    sg_modes modes;
    sg_watch *watch;
    uv_timer_t guard_tick;
    bool redis_up, snapshotting;
    int64_t last_snapshot_at, expect_wipe_until, last_wipe_at;
    int64_t episode_id; /* the open episode, 0 if none (or not yet committed) */
    uint64_t wipes, storms, rewarms;
};

void sg_gate_reply_json(sg_http_req *req, int status, json_t *doc, int retry_after);
void sg_gate_reply_error(sg_http_req *req, int status, const char *msg, int retry_after);
/* Moves pending events from the journal to the forwarder while it has room. */
void sg_gate_refill(sg_gate *g);

/* hold.c: the state a classified event is journaled in ("pending",
 * "suppressed", "held" or "dropped", *why then says why); the drain. */
const char *sg_hold_state(sg_gate *g, sg_kind kind, const char *source, int64_t now,
                          const char **why);
void sg_hold_start(sg_gate *g);
void sg_hold_stop(sg_gate *g);

/* guard.c: modes, storms, the Redis watcher, periodic snapshots, rewarm. */
int sg_guard_start(sg_gate *g, sg_error *err);
void sg_guard_stop(sg_gate *g);  /* closes handles (loop still running) */
void sg_guard_close(sg_gate *g); /* frees the rest, after the loop ended */
sg_mode sg_gate_mode_for(sg_gate *g, int64_t now, const char *source);
void sg_guard_observe(sg_gate *g, int64_t now, const char *source, const char *job, sg_kind kind);
/* An event observed (at observed) as new or unknown was a replay after all. */
void sg_guard_replayed(sg_gate *g, int64_t observed, const char *source);
/* A new baseline snapshot: the watcher samples its keys, unless the
 * snapshot predates the last wipe; keys_back (after a rewarm) arms anyway. */
void sg_guard_baseline(sg_gate *g, int64_t snapshot_id, bool keys_back);
/* The mode part of /v1/status: guard, storms, counters. */
json_t *sg_guard_status(sg_gate *g);

#endif
