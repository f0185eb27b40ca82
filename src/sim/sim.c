/* The simulator (sim.h).
 *
 * Time. Virtual milliseconds from the scenario's start, SIM_T0 on the wall
 * clock (so that the gate sees epoch times like the real ones). Events wait
 * in a binary heap ordered by (time, sequence): the sequence makes ties
 * come in the order they were scheduled, so a run is deterministic.
 *
 * The world. Every build a job will ever have is drawn at the start from a
 * stream of its own (the seed and the job's index), so all defences see the
 * same builds whatever they change about Igor's timing. Igor's view of a job
 * at time t is the builds started by t; its cache (cursor, posted markers,
 * Docker tags) is the simulated Redis that faults wipe.
 *
 * Igor runs two tasks, each a coroutine here: the Jenkins monitor (one cycle
 * over the masters, one after another, then poll_interval of rest) and the
 * Docker monitor. A post takes post_latency of virtual time; Igor waits for
 * it (it is synchronous), so a cycle with many posts pushes the next back.
 *
 * The stormguard defence runs the real gate core on a virtual clock. After
 * every post and every tick the simulator runs the libuv loop until the
 * journal and the core's reads are done and every delivery has reached
 * Echo: nothing is left in flight when virtual time moves on. */
#include "stormguard/sim/sim.h"

#include <inttypes.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "stormguard/base/clock.h"
#include "stormguard/config/config.h"
#include "stormguard/base/log.h"
#include "stormguard/base/util.h"
#include "stormguard/gate/core.h"
#include "stormguard/gate/gate.h"
#include "stormguard/gate/storm.h"
#include "stormguard/redis/wipe.h"
#include "stormguard/store/store.h"
#include "stormguard/store/snapshots.h"

#define SIM_T0 1767225600000LL /* 2026-01-01T00:00:00Z */
#define JENKINS_LIST 100       /* the builds of a job Jenkins' builds tree returns */
#define TICK_MS 1000           /* the daemon's tick, and its watcher's check */
#define SAMPLE_KEYS 32         /* keys of the baseline the watcher looks for */
#define CANARY "stormguard:canary"

/* ---- random numbers: splitmix64 seeds xoshiro256** streams ---- */

typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95ULL);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Uniform in [0, 1). */
static double rng_unit(rng *r)
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static int64_t rng_exp(rng *r, int64_t mean_ms)
{
    double u = rng_unit(r);
    return (int64_t)(-log(1.0 - u) * (double)mean_ms) + 1;
}

/* ---- the world ---- */

typedef struct build {
    int64_t start, end; /* virtual ms; negative: before the run */
    bool success;
} build;

typedef struct job {
    uint32_t master;
    char *name;
    build *b; /* build number i + 1 is b[i] */
    uint32_t nb;
    int64_t appears_at; /* new_jobs: when Igor first sees it; 0 from the start */
    bool announced;     /* its builds before the run are in Igor's cache */
    uint32_t history;   /* builds before the run (or before it appeared) */
} job;

typedef struct tag {
    int64_t pushed_at; /* virtual ms; negative: before the run */
} tag;

typedef struct repo {
    uint32_t account;
    char *name;
    tag *t;
    uint32_t nt, history;
} repo;

typedef struct world {
    const sg_scenario *sc;
    uint64_t seed;
    job *jobs;
    size_t njobs;
    size_t *first_job; /* per master: its jobs are first_job[m] .. first_job[m + 1] */
    repo *repos;
    size_t nrepos;
    size_t *first_repo;
} world;

static char *xfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xfmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s;
    if (vasprintf(&s, fmt, ap) < 0)
        abort();
    va_end(ap);
    return s;
}

/* The builds of a job: history before `from` (ended, one every `spacing`),
 * then new ones at the master's rate until the run ends. */
static void draw_builds(job *j, const sg_sim_master *m, uint64_t seed, size_t index, int64_t from,
                        int64_t history, int64_t spacing, int64_t until)
{
    rng r;
    rng_seed(&r, seed, 0x10000 + index);
    int64_t every = spacing;
    int64_t dur = m->build_duration_ms;
    size_t cap = (size_t)history + 8, n = 0;
    build *b = sg_xcalloc(cap, sizeof *b);
    /* the history ends a little before `from`, oldest first */
    int64_t t = from - (int64_t)history * every - dur - (int64_t)(rng_unit(&r) * (double)every);
    for (int64_t i = 0; i < history; i++) {
        b[n].start = t;
        b[n].end = t + dur;
        b[n].success = rng_unit(&r) < m->success_rate;
        n++;
        t += every;
    }
    if (m->build_every_ms) {
        t = from + rng_exp(&r, m->build_every_ms);
        while (t < until) {
            if (n == cap) {
                cap *= 2;
                b = sg_xrealloc(b, cap * sizeof *b);
            }
            int64_t d = (int64_t)((double)dur * (0.8 + 0.4 * rng_unit(&r)));
            b[n].start = t;
            b[n].end = t + d;
            b[n].success = rng_unit(&r) < m->success_rate;
            n++;
            t += rng_exp(&r, m->build_every_ms);
        }
        /* out of order: a long build N ending after N + 1 (DOMAIN.md 4) */
        for (size_t i = (size_t)history; i + 1 < n; i++)
            if (rng_unit(&r) < m->out_of_order)
                b[i].end = b[i + 1].end + 1 + (int64_t)(rng_unit(&r) * (double)dur);
    }
    j->b = b;
    j->nb = (uint32_t)n;
    j->history = (uint32_t)history;
}

static void world_build(world *w, const sg_scenario *sc, uint64_t seed)
{
    memset(w, 0, sizeof *w);
    w->sc = sc;
    w->seed = seed;
    size_t total = 0;
    for (size_t m = 0; m < sc->nmasters; m++)
        total += (size_t)sc->masters[m].jobs;
    for (size_t c = 0; c < sc->nchanges; c++)
        if (sc->changes[c].kind == SG_SIM_NEW_JOBS)
            total += (size_t)sc->changes[c].count;
    w->jobs = sg_xcalloc(total ? total : 1, sizeof *w->jobs);
    w->first_job = sg_xcalloc(sc->nmasters + 1, sizeof *w->first_job);
    size_t n = 0;
    /* the masters' own jobs, then each master's new jobs, grouped by master */
    for (size_t m = 0; m < sc->nmasters; m++) {
        w->first_job[m] = n;
        const sg_sim_master *mm = &sc->masters[m];
        for (int64_t i = 0; i < mm->jobs; i++, n++) {
            job *j = &w->jobs[n];
            j->master = (uint32_t)m;
            j->name = xfmt("team-%lld/service-%lld", (long long)(i % 50), (long long)i);
            j->announced = true;
            draw_builds(j, mm, seed, n, 0, mm->history,
                        mm->build_every_ms ? mm->build_every_ms : 600000, sc->duration_ms);
        }
        int64_t added = 0;
        for (size_t c = 0; c < sc->nchanges; c++) {
            const sg_sim_change *ch = &sc->changes[c];
            if (ch->kind != SG_SIM_NEW_JOBS || strcmp(ch->master, mm->name))
                continue;
            for (int64_t i = 0; i < ch->count; i++, n++, added++) {
                job *j = &w->jobs[n];
                j->master = (uint32_t)m;
                j->name = xfmt("new-%lld/service-%lld", (long long)c, (long long)added);
                j->appears_at = ch->at_ms;
                /* a job created at `at`: its first builds ran one after the
                 * other just before Igor's first look, during the run (genuine,
                 * never announced) */
                draw_builds(j, mm, seed, n, ch->at_ms, ch->history, mm->build_duration_ms + 60000,
                            sc->duration_ms);
            }
        }
    }
    w->first_job[sc->nmasters] = n;
    w->njobs = n;

    size_t rtotal = 0;
    for (size_t a = 0; a < sc->naccounts; a++)
        rtotal += (size_t)sc->accounts[a].repositories;
    w->repos = sg_xcalloc(rtotal ? rtotal : 1, sizeof *w->repos);
    w->first_repo = sg_xcalloc(sc->naccounts + 1, sizeof *w->first_repo);
    size_t k = 0;
    for (size_t a = 0; a < sc->naccounts; a++) {
        w->first_repo[a] = k;
        const sg_sim_account *acc = &sc->accounts[a];
        for (int64_t i = 0; i < acc->repositories; i++, k++) {
            repo *rp = &w->repos[k];
            rp->account = (uint32_t)a;
            rp->name = xfmt("%s/app-%lld", acc->name, (long long)i);
            rng r;
            rng_seed(&r, seed, 0x8000000 + k);
            size_t cap = (size_t)acc->tags + 8, nt = 0;
            tag *t = sg_xcalloc(cap, sizeof *t);
            for (int64_t h = 0; h < acc->tags; h++)
                t[nt++].pushed_at = -(acc->tags - h) * 3600000;
            if (acc->push_every_ms)
                for (int64_t at = rng_exp(&r, acc->push_every_ms); at < sc->duration_ms;
                     at += rng_exp(&r, acc->push_every_ms)) {
                    if (nt == cap) {
                        cap *= 2;
                        t = sg_xrealloc(t, cap * sizeof *t);
                    }
                    t[nt++].pushed_at = at;
                }
            rp->t = t;
            rp->nt = (uint32_t)nt;
            rp->history = (uint32_t)acc->tags;
        }
    }
    w->first_repo[sc->naccounts] = k;
    w->nrepos = k;
}

static void world_free(world *w)
{
    for (size_t i = 0; i < w->njobs; i++) {
        free(w->jobs[i].name);
        free(w->jobs[i].b);
    }
    for (size_t i = 0; i < w->nrepos; i++) {
        free(w->repos[i].name);
        free(w->repos[i].t);
    }
    free(w->jobs);
    free(w->first_job);
    free(w->repos);
    free(w->first_repo);
}

/* ---- a run: the world under one defence ---- */

/* Igor's keys for one job in the simulated Redis. */
typedef struct igor_job {
    bool has_cursor;
    int64_t cursor;       /* lastPollCycleTimestamp: a build's start, virtual ms */
    int64_t marks_cursor; /* the cursor the markers hash is for */
    uint32_t *marks;      /* build numbers marked POSTED */
    uint32_t nmarks, capmarks;
    bool has_marks_key;
    uint32_t started; /* builds started so far (moves with time) */
} igor_job;

/* Echo's memory of a job or repository, for the metrics. */
typedef struct echo_mem {
    uint8_t *fired; /* per build or tag: 1 triggered before the run, 2 in it */
    int64_t top;    /* the highest number triggered (inversions) */
} echo_mem;

typedef enum ev_kind {
    EV_JENKINS, /* Igor's Jenkins monitor: the next step of its cycle */
    EV_DOCKER,  /* Igor's Docker monitor */
    EV_TICK,    /* the gate's second: tick, watcher check, snapshots, operator */
    EV_FAULT,
    EV_CHANGE,
    EV_FASTFORWARD, /* the operator fast-forwards a tripped master (igor-threshold) */
    EV_GATE,        /* stormguard is installed (starts_at) */
} ev_kind;

typedef struct event {
    int64_t at;
    uint64_t seq;
    ev_kind kind;
    size_t arg;
} event;

typedef struct snapshot_copy {
    bool valid;
    int64_t id;
    igor_job *jobs; /* the cursors and markers at the time */
    uint8_t **cached;
} snapshot_copy;

struct sim;

typedef struct sim {
    const world *w;
    const sg_scenario *sc;
    sg_sim_defence def;
    sg_sim_result *res;
    int64_t now;
    event *heap;
    size_t nheap, capheap;
    uint64_t seq;
    rng faults; /* the faults' draws (evictions) */

    /* Igor */
    igor_job *ij;
    uint8_t **cached;   /* per repository: tag cached by Igor's Docker monitor */
    bool *account_read; /* Clouddriver has served the account since the park */
    double *first_read; /* per account: the share of tags the next read returns */
    int64_t threshold;  /* item_upper_threshold now; 0: off */
    bool handle_first_builds;
    int64_t lookback_ms;         /* -1: off */
    bool *tripped, *fastforward; /* per master: the threshold rejected its cycle */
    /* the Jenkins cycle in progress */
    size_t cur_master;
    size_t *delta; /* job indices of the master's deltas this cycle */
    size_t ndelta, pos;
    uint32_t *todo; /* build numbers of the current job still to post */
    size_t ntodo, todo_pos, todo_cap;
    bool job_open, job_building, master_quiet;
    int64_t job_last_ts, job_key;
    /* the Docker cycle in progress */
    size_t d_repo;
    uint32_t d_tag;
    bool docker_running;

    /* Echo */
    echo_mem *echo_jobs, *echo_repos;
    int64_t *delays;
    size_t ndelays, capdelays;

    /* the simulated Redis server, for the watcher */
    bool canary;
    uint64_t run_id;
    bool replica_promoted;
    int64_t started_at; /* the server's start, for uptime */

    /* nginx */
    sg_bucket bucket;

    /* stormguard */
    bool gate_on;
    uv_loop_t loop;
    bool loop_init;
    sg_vclock vclock;
    const sg_config *cfg; /* the gate's configuration: its options point into it */
    sg_config defaults;   /* what cfg points at when the caller gave none */
    sg_core *core;
    sg_store *snap_store; /* the simulator's own connection, for the snapshots it takes */
    char db_path[512];
    char redacted[64];
    sg_answer answer;
    bool answered;
    sg_fwd_item **deliveries;
    size_t ndeliveries, capdeliveries;
    int64_t next_snapshot_at;
    snapshot_copy good; /* the last good snapshot, what a rewarm restores */
    /* the watcher */
    bool w_armed, w_canary_seen;
    uint64_t w_run_id;
    bool w_promoted;
    int64_t w_checked_at;
    uint64_t w_sample_gen;
    size_t w_sample[SAMPLE_KEYS];
    size_t w_nsample;
    bool pending_flush_check;
    /* the operator */
    int64_t react_at; /* 0: no reaction pending */
    bool hold_done;
} sim;

/* ---- the event heap ---- */

static bool before(const event *a, const event *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void schedule(sim *s, int64_t at, ev_kind kind, size_t arg)
{
    if (s->nheap == s->capheap) {
        s->capheap = s->capheap ? 2 * s->capheap : 64;
        s->heap = sg_xrealloc(s->heap, s->capheap * sizeof *s->heap);
    }
    size_t i = s->nheap++;
    s->heap[i] = (event){at, s->seq++, kind, arg};
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(&s->heap[i], &s->heap[p]))
            break;
        event t = s->heap[i];
        s->heap[i] = s->heap[p];
        s->heap[p] = t;
        i = p;
    }
}

static event pop(sim *s)
{
    event top = s->heap[0];
    s->heap[0] = s->heap[--s->nheap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < s->nheap && before(&s->heap[l], &s->heap[m]))
            m = l;
        if (r < s->nheap && before(&s->heap[r], &s->heap[m]))
            m = r;
        if (m == i)
            break;
        event t = s->heap[i];
        s->heap[i] = s->heap[m];
        s->heap[m] = t;
        i = m;
    }
    return top;
}

/* ---- Echo: what reached the notifier ---- */

static size_t minute_of(const sim *s)
{
    size_t m = (size_t)(s->now / 60000);
    return m < s->res->minutes ? m : s->res->minutes - 1;
}

static int64_t owed_from(const sim *s, int64_t ended)
{
    return ended >= 0 && ended <= s->sc->duration_ms;
}

/* A trigger of item `number` (1-based) of a job or repository: counts it. */
static void echo_fire(sim *s, echo_mem *e, uint32_t number, int64_t ended, int64_t pipelines)
{
    if (pipelines <= 0)
        return;
    sg_sim_result *r = s->res;
    r->triggers[minute_of(s)] += pipelines;
    if ((int64_t)number < e->top)
        r->inversions += pipelines;
    if ((int64_t)number > e->top)
        e->top = number;
    if (e->fired[number - 1]) {
        r->spurious += pipelines;
        r->spurious_cum[minute_of(s)] += pipelines;
        return;
    }
    e->fired[number - 1] = 2; /* in the run (1: before it) */
    if (!owed_from(s, ended))
        return; /* a build of before the run that never triggered: neither */
    int64_t delay = s->now - ended;
    if (delay <= 2 * s->sc->igor.poll_interval_ms)
        r->genuine_on_time += pipelines;
    else
        r->genuine_delayed += pipelines;
    r->genuine_cum[minute_of(s)] += pipelines;
    for (int64_t p = 0; p < pipelines; p++) {
        if (s->ndelays == s->capdelays) {
            s->capdelays = s->capdelays ? 2 * s->capdelays : 1024;
            s->delays = sg_xrealloc(s->delays, s->capdelays * sizeof *s->delays);
        }
        s->delays[s->ndelays++] = delay;
    }
}

/* Echo gets a build event: every matching pipeline of a SUCCESS build. */
static void echo_build(sim *s, size_t ji, uint32_t number)
{
    const job *j = &s->w->jobs[ji];
    const build *b = &j->b[number - 1];
    if (!b->success)
        return;
    echo_fire(s, &s->echo_jobs[ji], number, b->end, s->sc->masters[j->master].pipelines_per_job);
}

static void echo_tag(sim *s, size_t ri, uint32_t number)
{
    const repo *rp = &s->w->repos[ri];
    echo_fire(s, &s->echo_repos[ri], number, rp->t[number - 1].pushed_at,
              s->sc->accounts[rp->account].pipelines_per_repo);
}

/* ---- posts from Igor, through the defence in front of Echo ---- */

typedef struct post {
    bool docker;
    size_t index;    /* job or repository */
    uint32_t number; /* build or tag number, 1-based */
} post;

static char *post_body(const sim *s, const post *p, size_t *len)
{
    char *body;
    if (!p->docker) {
        const job *j = &s->w->jobs[p->index];
        const build *b = &j->b[p->number - 1];
        body = xfmt("{\"details\":{\"type\":\"build\",\"source\":\"igor\",\"created\":\"%lld\"},"
                    "\"content\":{\"master\":\"%s\",\"project\":{\"name\":\"%s\",\"lastBuild\":"
                    "{\"number\":%u,\"result\":\"%s\",\"building\":false,\"timestamp\":\"%lld\","
                    "\"duration\":%lld,\"url\":\"https://jenkins/job/%s/%u/\"}}}}",
                    (long long)(SIM_T0 + s->now), s->sc->masters[j->master].name, j->name,
                    p->number, b->success ? "SUCCESS" : "FAILURE", (long long)(SIM_T0 + b->start),
                    (long long)(b->end - b->start), j->name, p->number);
    } else {
        const repo *rp = &s->w->repos[p->index];
        const char *acc = s->sc->accounts[rp->account].name;
        body = xfmt("{\"details\":{\"type\":\"docker\",\"source\":\"igor\"},\"content\":{"
                    "\"registry\":\"registry.example\",\"repository\":\"%s\",\"tag\":\"v%u\","
                    "\"digest\":\"sha256:%016llx\",\"account\":\"%s\"},\"artifact\":{\"type\":"
                    "\"docker\",\"name\":\"%s\",\"version\":\"v%u\",\"reference\":"
                    "\"registry.example/%s:v%u\"}}",
                    rp->name, p->number, (unsigned long long)(p->index * 1000003ULL + p->number),
                    acc, rp->name, p->number, rp->name, p->number);
    }
    *len = strlen(body);
    return body;
}

static void echo_post(sim *s, const post *p)
{
    if (p->docker)
        echo_tag(s, p->index, p->number);
    else
        echo_build(s, p->index, p->number);
}

static int gate_post(sim *s, const post *p);

/* Igor's POST to what it takes for Echo: the answer's status. */
static int igor_post(sim *s, const post *p)
{
    s->res->posts++;
    int status = 200;
    switch (s->def) {
    case SG_DEF_NGINX:
        if (sg_bucket_take(&s->bucket, s->now, 1) < 1)
            status = 503;
        else
            echo_post(s, p);
        break;
    case SG_DEF_STORMGUARD:
        if (s->gate_on)
            status = gate_post(s, p);
        else
            echo_post(s, p);
        break;
    default:
        echo_post(s, p);
        break;
    }
    if (status >= 300)
        s->res->answered_503++;
    return status;
}

/* ---- Igor's Jenkins monitor ---- */

static bool marked(const igor_job *ij, int64_t key, uint32_t number)
{
    if (!ij->has_marks_key || ij->marks_cursor != key)
        return false;
    for (uint32_t i = 0; i < ij->nmarks; i++)
        if (ij->marks[i] == number)
            return true;
    return false;
}

static void mark(igor_job *ij, int64_t key, uint32_t number)
{
    if (!ij->has_marks_key || ij->marks_cursor != key) {
        ij->nmarks = 0;
        ij->marks_cursor = key;
        ij->has_marks_key = true;
    }
    if (ij->nmarks == ij->capmarks) {
        ij->capmarks = ij->capmarks ? 2 * ij->capmarks : 8;
        ij->marks = sg_xrealloc(ij->marks, ij->capmarks * sizeof *ij->marks);
    }
    ij->marks[ij->nmarks++] = number;
}

static void advance_started(const sim *s, size_t ji, igor_job *ij)
{
    const job *j = &s->w->jobs[ji];
    while (ij->started < j->nb && j->b[ij->started].start <= s->now)
        ij->started++;
}

/* Does the job have a delta (its cursor differs from its last build's
 * start)? A job Igor cannot see yet has none. */
static bool has_delta(sim *s, size_t ji)
{
    const job *j = &s->w->jobs[ji];
    if (j->appears_at > s->now)
        return false;
    igor_job *ij = &s->ij[ji];
    advance_started(s, ji, ij);
    if (!ij->started)
        return false;
    return !ij->has_cursor || ij->cursor != j->b[ij->started - 1].start;
}

/* Igor's getBuilds for job ji now: what to post, newest first, into todo. */
static void open_job(sim *s, size_t ji)
{
    const job *j = &s->w->jobs[ji];
    igor_job *ij = &s->ij[ji];
    uint32_t last = ij->started;
    uint32_t from = last > JENKINS_LIST ? last - JENKINS_LIST : 0;
    s->job_last_ts = j->b[last - 1].start;
    s->job_building = false;
    for (uint32_t i = from; i < last; i++)
        if (j->b[i].end > s->now)
            s->job_building = true;
    s->ntodo = s->todo_pos = 0;
    s->job_open = true;
    s->job_key = ij->has_cursor ? ij->cursor : -1;
    if (!ij->has_cursor && !s->handle_first_builds) {
        /* first sight, handleFirstBuilds off: remember, post nothing */
        ij->has_cursor = true;
        ij->cursor = s->job_last_ts;
        s->job_open = false;
        return;
    }
    int64_t oldest_end =
        s->lookback_ms >= 0 ? s->now - s->sc->igor.poll_interval_ms - s->lookback_ms : INT64_MIN;
    for (uint32_t i = last; i-- > from;) {
        const build *b = &j->b[i];
        if (b->end > s->now)
            continue; /* still building */
        if (ij->has_cursor && !(b->start > ij->cursor && b->start <= s->job_last_ts))
            continue;
        if (b->end < oldest_end)
            continue; /* older than the look-back window */
        if (s->ntodo == s->todo_cap) {
            s->todo_cap = s->todo_cap ? 2 * s->todo_cap : 128;
            s->todo = sg_xrealloc(s->todo, s->todo_cap * sizeof *s->todo);
        }
        s->todo[s->ntodo++] = i + 1;
    }
}

/* The job's builds are all posted: the cursor moves, unless one runs. */
static void close_job(sim *s, size_t ji)
{
    igor_job *ij = &s->ij[ji];
    if (!s->job_building) {
        ij->has_cursor = true;
        ij->cursor = s->job_last_ts;
    }
    s->job_open = false;
}

static void start_master(sim *s)
{
    const world *w = s->w;
    size_t m = s->cur_master;
    s->ndelta = s->pos = 0;
    size_t n = w->first_job[m + 1] - w->first_job[m];
    s->delta = sg_xrealloc(s->delta, (n ? n : 1) * sizeof *s->delta);
    for (size_t ji = w->first_job[m]; ji < w->first_job[m + 1]; ji++)
        if (has_delta(s, ji))
            s->delta[s->ndelta++] = ji;
    s->master_quiet = false;
    if (s->fastforward[m]) {
        /* the operator's fast-forward: everything pending is seen, unposted */
        s->fastforward[m] = s->tripped[m] = false;
        s->master_quiet = true;
    } else if (s->threshold && (int64_t)s->ndelta > s->threshold) {
        /* over the threshold: the whole cycle of this master is skipped,
         * nothing posted, nothing written (spinnaker.pollingSafeguard) */
        if (!s->tripped[m]) {
            s->tripped[m] = true;
            if (s->sc->operator_.action != SG_SIM_NONE) {
                schedule(s, s->now + s->sc->operator_.reacts_after_ms, EV_FASTFORWARD, m);
            }
        }
        s->ndelta = 0;
    }
    s->job_open = false;
}

/* One step of the Jenkins cycle: runs until a post (which takes
 * post_latency) or the cycle's end (then poll_interval of rest). */
static void jenkins_step(sim *s)
{
    const sg_scenario *sc = s->sc;
    for (;;) {
        if (s->cur_master >= sc->nmasters) {
            s->cur_master = 0;
            schedule(s, s->now + sc->igor.poll_interval_ms, EV_JENKINS, 1);
            return;
        }
        if (s->pos >= s->ndelta && !s->job_open) {
            s->cur_master++;
            if (s->cur_master < sc->nmasters)
                start_master(s);
            continue;
        }
        size_t ji = s->delta[s->pos];
        if (!s->job_open) {
            open_job(s, ji);
            if (!s->job_open) {
                s->pos++;
                continue;
            }
        }
        igor_job *ij = &s->ij[ji];
        while (s->todo_pos < s->ntodo && marked(ij, s->job_key, s->todo[s->todo_pos]))
            s->todo_pos++;
        if (s->todo_pos >= s->ntodo) {
            close_job(s, ji);
            s->pos++;
            continue;
        }
        uint32_t number = s->todo[s->todo_pos++];
        int status = 200;
        if (!s->master_quiet) {
            post p = {.docker = false, .index = ji, .number = number};
            status = igor_post(s, &p);
        }
        if (status >= 200 && status < 300) {
            mark(ij, s->job_key, number);
        } else {
            /* a non-2xx ends this master's cycle; the rest comes back next cycle */
            s->job_open = false;
            s->pos = s->ndelta;
        }
        schedule(s, s->now + (s->master_quiet ? 0 : sc->igor.post_latency_ms), EV_JENKINS, 0);
        return;
    }
}

static void on_jenkins(sim *s, size_t new_cycle)
{
    if (new_cycle) {
        s->cur_master = 0;
        if (!s->sc->nmasters)
            return;
        start_master(s);
    }
    jenkins_step(s);
}

/* ---- Igor's Docker monitor ---- */

static bool account_empty(const sim *s, size_t a)
{
    const world *w = s->w;
    for (size_t ri = w->first_repo[a]; ri < w->first_repo[a + 1]; ri++)
        for (uint32_t t = 0; t < w->repos[ri].nt; t++)
            if (s->cached[ri][t])
                return false;
    return true;
}

/* What Clouddriver lists of repository ri now: tags pushed by now, all of
 * them, or (cold, after a park) the first share of them. */
static uint32_t listed(sim *s, size_t ri)
{
    const repo *rp = &s->w->repos[ri];
    uint32_t n = 0;
    while (n < rp->nt && rp->t[n].pushed_at <= s->now)
        n++;
    double share = s->first_read[rp->account];
    if (share < 1)
        n = (uint32_t)((double)n * share);
    return n;
}

static void docker_step(sim *s)
{
    const sg_scenario *sc = s->sc;
    const world *w = s->w;
    for (;;) {
        if (s->d_repo >= w->nrepos) {
            for (size_t a = 0; a < sc->naccounts; a++)
                s->first_read[a] = 1; /* Clouddriver is warm after one read */
            s->docker_running = false;
            schedule(s, s->now + sc->igor.docker_poll_interval_ms, EV_DOCKER, 1);
            return;
        }
        size_t ri = s->d_repo;
        const repo *rp = &w->repos[ri];
        bool first_of_account = ri == w->first_repo[rp->account] && s->d_tag == 0;
        if (first_of_account)
            s->account_read[rp->account] = account_empty(s, rp->account);
        uint32_t n = listed(s, ri);
        while (s->d_tag < n && s->cached[ri][s->d_tag])
            s->d_tag++;
        if (s->d_tag >= n) {
            s->d_repo++;
            s->d_tag = 0;
            continue;
        }
        uint32_t t = s->d_tag++;
        if (s->account_read[rp->account]) {
            /* an account whose cache was empty is cached without posting */
            s->cached[ri][t] = 1;
            continue;
        }
        post p = {.docker = true, .index = ri, .number = t + 1};
        int status = igor_post(s, &p);
        if (status >= 200 && status < 300)
            s->cached[ri][t] = 1;
        schedule(s, s->now + sc->igor.post_latency_ms, EV_DOCKER, 0);
        return;
    }
}

static void on_docker(sim *s, size_t new_cycle)
{
    if (new_cycle) {
        s->d_repo = 0;
        s->d_tag = 0;
        s->docker_running = true;
    }
    docker_step(s);
}

/* ---- the gate: the real core on the virtual clock ---- */

static void on_answer(void *ud, const sg_answer *a)
{
    sim *s = ud;
    s->answer = *a;
    s->answered = true;
}

static void deliver(void *ud, sg_fwd_item *it)
{
    sim *s = ud;
    if (s->ndeliveries == s->capdeliveries) {
        s->capdeliveries = s->capdeliveries ? 2 * s->capdeliveries : 64;
        s->deliveries = sg_xrealloc(s->deliveries, s->capdeliveries * sizeof *s->deliveries);
    }
    s->deliveries[s->ndeliveries++] = it;
}

static size_t backlog(void *ud)
{
    sim *s = ud;
    return s->ndeliveries;
}

/* The post an item carries (the x-sim-post header the simulator added). */
static bool item_post(const sg_fwd_item *it, post *p)
{
    const char *h = strstr(it->headers, "x-sim-post: ");
    unsigned d;
    size_t index;
    unsigned number;
    if (!h || sscanf(h + 12, "%u.%zu.%u", &d, &index, &number) != 3)
        return false;
    *p = (post){.docker = d != 0, .index = index, .number = number};
    return true;
}

/* Runs the loop until the gate has nothing in flight: journal, reads,
 * deliveries (each reaches Echo now, and its result goes back). */
static void settle(sim *s)
{
    for (;;) {
        while (s->ndeliveries) {
            sg_fwd_item *it = s->deliveries[--s->ndeliveries];
            post p;
            if (item_post(it, &p))
                echo_post(s, &p);
            it->attempts++;
            sg_core_delivered(s->core, it, SG_FWD_DELIVERED, 200, NULL, 0);
        }
        sg_core_stats st;
        sg_core_stats_get(s->core, &st);
        if (!st.journal_depth && !st.reads && !s->ndeliveries)
            return;
        uv_run(&s->loop, UV_RUN_ONCE);
    }
}

static int gate_post(sim *s, const post *p)
{
    size_t len;
    char *body = post_body(s, p, &len);
    char headers[96];
    snprintf(headers, sizeof headers, "content-type: application/json\nx-sim-post: %u.%zu.%u\n",
             p->docker ? 1u : 0u, p->index, p->number);
    sg_request rq = {.method = "POST",
                     .method_len = 4,
                     .path = "/",
                     .path_len = 1,
                     .headers = headers,
                     .body = body,
                     .body_len = len};
    s->answered = false;
    sg_error err;
    int rc = sg_core_submit(s->core, &rq, on_answer, s, &err);
    free(body);
    if (rc)
        return rc == SG_EBUSY ? 503 : 400;
    while (!s->answered)
        uv_run(&s->loop, UV_RUN_ONCE);
    settle(s);
    return s->answer.status;
}

/* ---- the watcher, on what the simulated Redis shows ---- */

static size_t igor_keys(const sim *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->w->njobs; i++)
        n += s->ij[i].has_cursor + s->ij[i].has_marks_key;
    for (size_t r = 0; r < s->w->nrepos; r++)
        for (uint32_t t = 0; t < s->w->repos[r].nt; t++)
            n += s->cached[r][t];
    return n;
}

static void on_baseline(void *ud, int64_t snapshot_id, bool after_last_wipe)
{
    sim *s = ud;
    if (!after_last_wipe || !s->good.valid || s->good.id != snapshot_id)
        return;
    /* the daemon samples 32 of the baseline's keys spread over it: here, the
     * cursor keys of 32 jobs that had one */
    s->w_nsample = 0;
    size_t n = s->w->njobs, step = n / SAMPLE_KEYS ? n / SAMPLE_KEYS : 1;
    for (size_t i = 0; i < n && s->w_nsample < SAMPLE_KEYS; i += step)
        if (s->good.jobs[i].has_cursor)
            s->w_sample[s->w_nsample++] = i;
    s->w_sample_gen++;
}

static void rewarm(sim *s);

static void watch_check(sim *s, sg_wipe_trigger trigger)
{
    char run_id[32], known_run[32], master_replid[32], known_replid[32];
    snprintf(run_id, sizeof run_id, "%016" PRIx64, s->run_id);
    snprintf(known_run, sizeof known_run, "%016" PRIx64, s->w_run_id);
    snprintf(master_replid, sizeof master_replid, "%016" PRIx64, s->run_id * 31);
    snprintf(known_replid, sizeof known_replid, "%016" PRIx64, s->w_run_id * 31);
    size_t present = 0;
    for (size_t i = 0; i < s->w_nsample; i++)
        present += s->ij[s->w_sample[i]].has_cursor;
    sg_wipe_known k = {.address = "redis.sim:6379",
                       .canary = CANARY,
                       .count_pattern = "igor:*",
                       .canary_seen = s->w_canary_seen,
                       .run_id = s->w_armed ? known_run : NULL,
                       .role = "master",
                       .master_replid = known_replid,
                       .checked_at_ms = SIM_T0 + s->w_checked_at,
                       .sample_gen = s->w_sample_gen};
    sg_wipe_obs o = {.trigger = trigger,
                     .now_ms = SIM_T0 + s->now,
                     .canary = s->canary,
                     .dbsize = (int64_t)igor_keys(s) + s->canary,
                     .run_id = run_id,
                     .role = "master",
                     .master_replid = master_replid,
                     .uptime_s = (s->now - s->started_at) / 1000,
                     .sample_n = s->w_nsample,
                     .sample_present = (int64_t)present,
                     .sample_gen = s->w_sample_gen};
    sg_wipe_result r;
    sg_wipe_judge(&k, &o, &r);
    s->w_armed = true;
    s->w_run_id = s->run_id;
    s->w_checked_at = s->now;
    if (!s->canary) {
        s->canary = true; /* the watcher creates its canary when missing */
        s->w_canary_seen = true;
    }
    if (r.verdict != SG_VERDICT_WIPED)
        return;
    s->w_nsample = 0; /* a wipe clears the sample: set again once the keys are back */
    s->w_sample_gen++;
    bool expected = sg_guard_wipe(sg_core_guard(s->core), sg_wipe_cause_name(r.cause), r.detail,
                                  SIM_T0 + s->now);
    settle(s);
    if (s->sc->stormguard.rewarm && !expected)
        rewarm(s);
}

/* The rewarm: Igor's keys missing now come back from the last good
 * snapshot (RESTORE of absent keys only, as the daemon does). */
static void rewarm(sim *s)
{
    if (!s->good.valid)
        return;
    int64_t restored = 0;
    for (size_t i = 0; i < s->w->njobs; i++) {
        igor_job *ij = &s->ij[i], *g = &s->good.jobs[i];
        if (!ij->has_cursor && g->has_cursor) {
            ij->has_cursor = true;
            ij->cursor = g->cursor;
            restored++;
        }
        if (!ij->has_marks_key && g->has_marks_key) {
            ij->has_marks_key = true;
            ij->marks_cursor = g->marks_cursor;
            ij->nmarks = 0;
            for (uint32_t k = 0; k < g->nmarks; k++)
                mark(ij, g->marks_cursor, g->marks[k]);
            restored++;
        }
    }
    for (size_t r = 0; r < s->w->nrepos; r++)
        for (uint32_t t = 0; t < s->w->repos[r].nt; t++)
            if (!s->cached[r][t] && s->good.cached[r][t]) {
                s->cached[r][t] = 1;
                restored++;
            }
    char detail[160];
    snprintf(detail, sizeof detail, "rewarmed %lld keys from snapshot %lld", (long long)restored,
             (long long)s->good.id);
    sg_guard_rewarmed(sg_core_guard(s->core), detail);
    on_baseline(s, s->good.id, true); /* the keys are back: watch them */
    settle(s);
}

/* ---- snapshots of the simulated Redis into the gate's store ---- */

static void copy_state(const sim *s, snapshot_copy *c)
{
    size_t n = s->w->njobs;
    if (!c->jobs) {
        c->jobs = sg_xcalloc(n ? n : 1, sizeof *c->jobs);
        c->cached = sg_xcalloc(s->w->nrepos ? s->w->nrepos : 1, sizeof *c->cached);
        for (size_t r = 0; r < s->w->nrepos; r++)
            c->cached[r] = sg_xcalloc(s->w->repos[r].nt ? s->w->repos[r].nt : 1, 1);
    }
    for (size_t i = 0; i < n; i++) {
        igor_job *d = &c->jobs[i];
        const igor_job *src = &s->ij[i];
        uint32_t *marks = d->marks, cap = d->capmarks;
        *d = *src;
        d->marks = marks;
        d->capmarks = cap;
        if (d->capmarks < src->nmarks) {
            d->capmarks = src->nmarks;
            d->marks = sg_xrealloc(d->marks, d->capmarks * sizeof *d->marks);
        }
        if (src->nmarks)
            memcpy(d->marks, src->marks, src->nmarks * sizeof *d->marks);
    }
    for (size_t r = 0; r < s->w->nrepos; r++)
        memcpy(c->cached[r], s->cached[r], s->w->repos[r].nt);
    c->valid = true;
}

static void copy_free(const sim *s, snapshot_copy *c)
{
    if (c->jobs)
        for (size_t i = 0; i < s->w->njobs; i++)
            free(c->jobs[i].marks);
    free(c->jobs);
    if (c->cached)
        for (size_t r = 0; r < s->w->nrepos; r++)
            free(c->cached[r]);
    free(c->cached);
}

/* Writes the simulated Redis's Igor keys as a profile snapshot: the same
 * rows the daemon's periodic snapshot writes for them (the build index; the
 * keys' payloads are left out: nothing in a simulation restores from the
 * store), marked suspect by the daemon's own rule. */
static int take_snapshot(sim *s, sg_error *err)
{
    const world *w = s->w;
    const sg_scenario *sc = s->sc;
    sg_snapshot_info meta = {.taken_at_ms = SIM_T0 + s->now,
                             .reason = "periodic",
                             .redis = s->redacted,
                             .redis_version = "7.0.0",
                             .profile = "igor",
                             .selection = "igor:*",
                             .db = 0,
                             .profile_pattern = "igor:*"};
    int64_t id;
    int rc = sg_store_snapshot_begin(s->snap_store, &meta, &id, err);
    if (rc)
        return rc;
    int64_t keys = 0;
    for (size_t i = 0; i < w->njobs && !rc; i++) {
        const igor_job *ij = &s->ij[i];
        const char *master = sc->masters[w->jobs[i].master].name, *name = w->jobs[i].name;
        if (ij->has_cursor) {
            keys++;
            rc = sg_store_index_cursor(s->snap_store, master, strlen(master), name, strlen(name),
                                       SIM_T0 + ij->cursor, err);
        }
        if (ij->has_marks_key) {
            keys++;
            for (uint32_t k = 0; k < ij->nmarks && !rc; k++)
                rc = sg_store_index_posted(s->snap_store, master, strlen(master), name,
                                           strlen(name), ij->marks[k], err);
        }
    }
    for (size_t r = 0; r < w->nrepos; r++)
        for (uint32_t t = 0; t < w->repos[r].nt; t++)
            keys += s->cached[r][t];
    if (rc) {
        sg_store_snapshot_abort(s->snap_store);
        return rc;
    }
    sg_snapshot_info totals = {.key_count = keys, .profile_keys = keys, .state = "complete"};
    int64_t good_id = 0, good_keys = 0;
    rc = sg_store_last_good(s->snap_store, meta.redis, 0, meta.profile_pattern, &good_id,
                            &good_keys, err);
    char reason[160] = "";
    /* [snapshot] suspect_below: far fewer keys than the last good one is a
     * wipe's aftermath, never a baseline */
    bool suspect = rc == 0 && good_id && keys * 100 < good_keys * s->cfg->suspect_below_pct;
    if (suspect) {
        snprintf(reason, sizeof reason,
                 "found %lld igor keys, the last good snapshot %lld had %lld", (long long)keys,
                 (long long)good_id, (long long)good_keys);
        totals.state = "suspect";
        totals.suspect_reason = reason;
    }
    if (rc || (rc = sg_store_snapshot_commit(s->snap_store, &totals, err))) {
        sg_store_snapshot_abort(s->snap_store);
        return rc;
    }
    if (!suspect) {
        copy_state(s, &s->good);
        s->good.id = id;
    }
    /* as the daemon's periodic snapshot: the newest [snapshot] keep stay */
    int64_t pruned;
    if ((rc = sg_store_snapshot_prune(s->snap_store, (int)s->cfg->keep, 0, SIM_T0 + s->now, &pruned,
                                      err)))
        return rc;
    sg_core_reload(s->core);
    settle(s);
    return 0;
}

/* ---- the operator ---- */

static void on_hold_done(void *ud, const sg_hold_result *r)
{
    sim *s = ud;
    (void)r;
    s->hold_done = true;
}

/* The operator hears of held events (the alert on events held) and acts
 * reacts_after later on what is held then; held again later, again. */
static void operator_check(sim *s)
{
    sg_core *c = s->core;
    if (s->sc->operator_.action == SG_SIM_NONE)
        return;
    if (!s->react_at && sg_core_held(c) > 0)
        s->react_at = s->now + s->sc->operator_.reacts_after_ms;
    if (!s->react_at || s->now < s->react_at)
        return;
    s->react_at = 0;
    sg_hold_request r = {.filter = {.all = true}, .actor = "operator (simulated)"};
    s->hold_done = false;
    if (s->sc->operator_.action == SG_SIM_DROP) {
        r.reason = "stale after the storm";
        sg_hold_drop(sg_core_hold(c), &r, on_hold_done, s);
    } else {
        r.newest_only = true;
        sg_hold_release(sg_core_hold(c), &r, on_hold_done, s);
    }
    while (!s->hold_done)
        uv_run(&s->loop, UV_RUN_ONCE);
    settle(s);
    s->res->operator_actions++;
}

static int start_gate(sim *s, const char *workdir, sg_error *err)
{
    snprintf(s->db_path, sizeof s->db_path, "%s/stormguard-sim.db", workdir);
    for (const char *suffix = ""; suffix; suffix = !*suffix                  ? "-wal"
                                                   : !strcmp(suffix, "-wal") ? "-shm"
                                                                             : NULL) {
        char p[540];
        snprintf(p, sizeof p, "%s%s", s->db_path, suffix);
        unlink(p);
    }
    snprintf(s->redacted, sizeof s->redacted, "redis://redis.sim:6379/0");
    sg_core_opts o;
    int rc = sg_gate_core_opts(s->cfg, &o, err);
    if (rc)
        return rc;
    o.db_path = s->db_path;
    o.clock = &s->vclock.clock;
    o.keep_events_ms = 0;   /* nothing old enough to prune in a few virtual hours */
    o.one_at_a_time = true; /* Igor waits for each answer (gate_post) */
    rc = sg_core_start(&s->loop, &o, &s->core, err);
    if (rc)
        return rc;
    sg_store_options so = {.synchronous = SG_SYNC_NORMAL};
    if ((rc = sg_store_open(s->db_path, &so, &s->snap_store, err)))
        return rc;
    sg_deliverer d = {.push = deliver, .backlog = backlog, .ud = s};
    sg_core_set_deliverer(s->core, &d);
    sg_core_on_baseline(s->core, on_baseline, s);
    s->gate_on = true;
    s->next_snapshot_at = s->now + TICK_MS; /* as the daemon: the first at its first tick */
    settle(s);
    return 0;
}

static void stop_gate(sim *s)
{
    if (!s->core)
        return;
    s->res->held_at_end = sg_core_held(s->core);
    sg_core_stop(s->core);
    sg_core_close(s->core, NULL, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    sg_core_free(s->core);
    s->core = NULL;
    sg_store_free(s->snap_store);
    s->snap_store = NULL;
    for (size_t i = 0; i < s->ndeliveries; i++)
        sg_fwd_item_free(s->deliveries[i]);
    s->ndeliveries = 0;
}

static int on_tick(sim *s, sg_error *err)
{
    sg_vclock_set(&s->vclock, SIM_T0 + s->now);
    sg_core_tick(s->core);
    settle(s);
    watch_check(s, s->pending_flush_check ? SG_WIPE_TRIGGER_FLUSH : SG_WIPE_TRIGGER_TIMER);
    s->pending_flush_check = false;
    if (s->now >= s->next_snapshot_at) {
        s->next_snapshot_at = s->now + s->sc->stormguard.snapshot_interval_ms;
        int rc = take_snapshot(s, err);
        if (rc)
            return rc;
    }
    operator_check(s);
    return 0;
}

/* ---- faults and changes ---- */

static void wipe_igor(sim *s, double fraction)
{
    for (size_t i = 0; i < s->w->njobs; i++) {
        igor_job *ij = &s->ij[i];
        if (ij->has_cursor && (fraction >= 1 || rng_unit(&s->faults) < fraction))
            ij->has_cursor = false;
        if (ij->has_marks_key && (fraction >= 1 || rng_unit(&s->faults) < fraction)) {
            ij->has_marks_key = false;
            ij->nmarks = 0;
        }
    }
    for (size_t r = 0; r < s->w->nrepos; r++)
        for (uint32_t t = 0; t < s->w->repos[r].nt; t++)
            if (s->cached[r][t] && (fraction >= 1 || rng_unit(&s->faults) < fraction))
                s->cached[r][t] = 0;
}

static void on_fault(sim *s, const sg_sim_fault *f)
{
    switch (f->kind) {
    case SG_SIM_FLUSHALL:
    case SG_SIM_FLUSHDB:
        wipe_igor(s, 1);
        s->canary = false;
        s->pending_flush_check = true; /* the tracking invalidation */
        break;
    case SG_SIM_RESTART:
    case SG_SIM_FAILOVER_EMPTY:
    case SG_SIM_PARK:
        wipe_igor(s, 1);
        s->canary = false;
        s->run_id = s->run_id * 6364136223846793005ULL + 1442695040888963407ULL;
        s->started_at = s->now;
        if (f->kind == SG_SIM_PARK)
            for (size_t a = 0; a < s->sc->naccounts; a++)
                s->first_read[a] = f->fraction;
        break;
    case SG_SIM_EVICT:
        wipe_igor(s, f->fraction);
        if (rng_unit(&s->faults) < f->fraction)
            s->canary = false;
        break;
    case SG_SIM_DELETE_PATTERN:
        wipe_igor(s, 1);
        break;
    }
}

static void on_change(sim *s, const sg_sim_change *c)
{
    if (c->kind == SG_SIM_SET_THRESHOLD && s->def == SG_DEF_THRESHOLD)
        s->threshold = c->value;
}

/* ---- the run ---- */

static void record_minute(sim *s, size_t minute)
{
    sg_sim_result *r = s->res;
    if (minute >= r->minutes)
        return;
    if (s->core && s->gate_on) {
        r->held[minute] = sg_core_held(s->core);
        sg_mode m = sg_guard_mode(sg_core_guard(s->core), NULL);
        r->mode[minute] = m == SG_MODE_STORM ? 's' : m == SG_MODE_GUARD ? 'g' : 'n';
    }
}

static void init_run(sim *s, const world *w, sg_sim_defence d, sg_sim_result *res)
{
    const sg_scenario *sc = w->sc;
    memset(s, 0, sizeof *s);
    s->w = w;
    s->sc = sc;
    s->def = d;
    s->res = res;
    rng_seed(&s->faults, w->seed, 7);
    s->ij = sg_xcalloc(w->njobs ? w->njobs : 1, sizeof *s->ij);
    s->echo_jobs = sg_xcalloc(w->njobs ? w->njobs : 1, sizeof *s->echo_jobs);
    for (size_t i = 0; i < w->njobs; i++) {
        const job *j = &w->jobs[i];
        s->echo_jobs[i].fired = sg_xcalloc(j->nb ? j->nb : 1, 1);
        if (!j->announced)
            continue;
        /* the history: announced, and each SUCCESS build triggered once */
        igor_job *ij = &s->ij[i];
        if (j->history) {
            ij->has_cursor = true;
            ij->cursor = j->b[j->history - 1].start;
        }
        for (uint32_t b = 0; b < j->history; b++)
            if (j->b[b].success) {
                s->echo_jobs[i].fired[b] = 1;
                s->echo_jobs[i].top = b + 1;
            }
    }
    s->cached = sg_xcalloc(w->nrepos ? w->nrepos : 1, sizeof *s->cached);
    s->echo_repos = sg_xcalloc(w->nrepos ? w->nrepos : 1, sizeof *s->echo_repos);
    for (size_t r = 0; r < w->nrepos; r++) {
        const repo *rp = &w->repos[r];
        s->cached[r] = sg_xcalloc(rp->nt ? rp->nt : 1, 1);
        s->echo_repos[r].fired = sg_xcalloc(rp->nt ? rp->nt : 1, 1);
        for (uint32_t t = 0; t < rp->history; t++) {
            s->cached[r][t] = 1;
            s->echo_repos[r].fired[t] = 1;
            s->echo_repos[r].top = t + 1;
        }
    }
    s->account_read = sg_xcalloc(sc->naccounts ? sc->naccounts : 1, sizeof *s->account_read);
    s->first_read = sg_xcalloc(sc->naccounts ? sc->naccounts : 1, sizeof *s->first_read);
    for (size_t a = 0; a < sc->naccounts; a++)
        s->first_read[a] = 1;
    s->tripped = sg_xcalloc(sc->nmasters ? sc->nmasters : 1, sizeof *s->tripped);
    s->fastforward = sg_xcalloc(sc->nmasters ? sc->nmasters : 1, sizeof *s->fastforward);
    s->threshold = d == SG_DEF_THRESHOLD ? sc->igor.item_upper_threshold : 0;
    s->handle_first_builds = d == SG_DEF_FIRST_BUILDS_OFF ? false : sc->igor.handle_first_builds;
    s->lookback_ms = d == SG_DEF_LOOKBACK ? sc->igor.look_back_window_ms : -1;
    s->canary = true;
    s->run_id = 0x5eed0000 + w->seed;
    sg_bucket_init(&s->bucket, sc->nginx.rate, sc->nginx.burst + 1);
    s->bucket.last_ms = 0;
    res->defence = d;
    res->minutes = (size_t)((sc->duration_ms + 2 * sc->igor.poll_interval_ms + 59999) / 60000);
    res->triggers = sg_xcalloc(res->minutes, sizeof *res->triggers);
    res->spurious_cum = sg_xcalloc(res->minutes, sizeof *res->spurious_cum);
    res->genuine_cum = sg_xcalloc(res->minutes, sizeof *res->genuine_cum);
    res->held = sg_xcalloc(res->minutes, sizeof *res->held);
    res->mode = sg_xmalloc(res->minutes + 1);
    memset(res->mode, '-', res->minutes);
    res->mode[res->minutes] = '\0';
}

static void free_run(sim *s)
{
    const world *w = s->w;
    for (size_t i = 0; i < w->njobs; i++) {
        free(s->ij[i].marks);
        free(s->echo_jobs[i].fired);
    }
    for (size_t r = 0; r < w->nrepos; r++) {
        free(s->cached[r]);
        free(s->echo_repos[r].fired);
    }
    free(s->ij);
    free(s->echo_jobs);
    free(s->cached);
    free(s->echo_repos);
    free(s->account_read);
    free(s->first_read);
    free(s->tripped);
    free(s->fastforward);
    free(s->delta);
    free(s->todo);
    free(s->delays);
    free(s->heap);
    free(s->deliveries);
    copy_free(s, &s->good);
    if (s->cfg == &s->defaults)
        sg_config_close(&s->defaults);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The totals once the run is over. */
static void finish(sim *s)
{
    sg_sim_result *r = s->res;
    const world *w = s->w;
    const sg_scenario *sc = s->sc;
    int64_t owed = 0, superseded = 0;
    for (size_t i = 0; i < w->njobs; i++) {
        const job *j = &w->jobs[i];
        int64_t p = sc->masters[j->master].pipelines_per_job;
        bool newer = false; /* a newer build of the job triggered in the run */
        for (uint32_t b = j->nb; b-- > 0;) {
            const build *x = &j->b[b];
            if (x->success && x->end >= 0 && x->end <= sc->duration_ms) {
                owed += p;
                if (!s->echo_jobs[i].fired[b] && newer)
                    superseded += p;
            }
            newer = newer || s->echo_jobs[i].fired[b] == 2;
        }
    }
    for (size_t k = 0; k < w->nrepos; k++) {
        const repo *rp = &w->repos[k];
        int64_t p = sc->accounts[rp->account].pipelines_per_repo;
        bool newer = false;
        for (uint32_t t = rp->nt; t-- > rp->history;) {
            if (rp->t[t].pushed_at <= sc->duration_ms) {
                owed += p;
                if (!s->echo_repos[k].fired[t] && newer)
                    superseded += p;
            }
            newer = newer || s->echo_repos[k].fired[t] == 2;
        }
    }
    r->genuine_superseded = superseded;
    r->genuine = owed;
    r->genuine_lost = owed - r->genuine_on_time - r->genuine_delayed;
    if (s->ndelays) {
        qsort(s->delays, s->ndelays, sizeof *s->delays, cmp_i64);
        r->delay_p50_s = (double)s->delays[(s->ndelays - 1) / 2] / 1000.0;
        r->delay_max_s = (double)s->delays[s->ndelays - 1] / 1000.0;
    }
    for (size_t m = 0; m < r->minutes; m++) {
        if (r->triggers[m] > r->peak_triggers_per_min)
            r->peak_triggers_per_min = r->triggers[m];
        if (m) {
            r->spurious_cum[m] += r->spurious_cum[m - 1];
            r->genuine_cum[m] += r->genuine_cum[m - 1];
        }
    }
}

static void apply_change(sim *s, size_t i)
{
    on_change(s, &s->sc->changes[i]);
}

int sg_sim_run(const sg_scenario *sc, sg_sim_defence d, uint64_t seed, const sg_config *gate,
               const char *workdir, sg_sim_result *out, sg_error *err)
{
    world w;
    world_build(&w, sc, seed);
    sg_sim_result res;
    memset(&res, 0, sizeof res);
    sim *s = sg_xcalloc(1, sizeof *s);
    init_run(s, &w, d, &res);
    int rc = 0;
    if (d == SG_DEF_STORMGUARD) {
        uv_loop_init(&s->loop);
        s->loop_init = true;
        sg_vclock_init(&s->vclock, SIM_T0);
        if (!gate) {
            /* the daemon's defaults, as `stormguard run` without a configuration */
            sg_config_init(&s->defaults);
            gate = &s->defaults;
        }
        s->cfg = gate;
        schedule(s, sc->stormguard.starts_at_ms, EV_GATE, 0);
    }
    if (sc->nmasters)
        schedule(s, 1000, EV_JENKINS, 1);
    if (sc->naccounts)
        schedule(s, 1500, EV_DOCKER, 1);
    for (size_t i = 0; i < sc->nfaults; i++)
        schedule(s, sc->faults[i].at_ms, EV_FAULT, i);
    for (size_t i = 0; i < sc->nchanges; i++)
        schedule(s, sc->changes[i].at_ms, EV_CHANGE, i);
    /* after the end, two poll intervals more for what is on its way: a build
     * that ended in the last minute is not lost because Igor has not looked
     * yet (no fault or change comes then, no build starts) */
    int64_t until = sc->duration_ms + 2 * sc->igor.poll_interval_ms;
    size_t recorded = 0;
    while (rc == 0 && s->nheap) {
        event e = pop(s);
        if (e.at > until)
            break;
        while (recorded < (size_t)(e.at / 60000) && recorded < res.minutes)
            record_minute(s, recorded++);
        s->now = e.at;
        if (s->core)
            sg_vclock_set(&s->vclock, SIM_T0 + s->now);
        switch (e.kind) {
        case EV_JENKINS:
            on_jenkins(s, e.arg);
            break;
        case EV_DOCKER:
            on_docker(s, e.arg);
            break;
        case EV_FAULT:
            on_fault(s, &sc->faults[e.arg]);
            break;
        case EV_CHANGE:
            apply_change(s, e.arg);
            break;
        case EV_FASTFORWARD:
            s->fastforward[e.arg] = true;
            res.operator_actions++;
            break;
        case EV_GATE:
            rc = start_gate(s, workdir, err);
            if (rc == 0)
                schedule(s, s->now + TICK_MS, EV_TICK, 0);
            break;
        case EV_TICK:
            rc = on_tick(s, err);
            schedule(s, s->now + TICK_MS, EV_TICK, 0);
            break;
        }
    }
    while (recorded < res.minutes)
        record_minute(s, recorded++);
    s->now = until;
    stop_gate(s);
    if (s->loop_init) {
        uv_run(&s->loop, UV_RUN_DEFAULT); /* a gate that failed to start stops its journal */
        uv_loop_close(&s->loop);
    }
    finish(s);
    free_run(s);
    free(s);
    world_free(&w);
    if (rc) {
        sg_sim_result_close(&res);
        return rc;
    }
    *out = res;
    return 0;
}

void sg_sim_result_close(sg_sim_result *r)
{
    free(r->triggers);
    free(r->spurious_cum);
    free(r->genuine_cum);
    free(r->held);
    free(r->mode);
    memset(r, 0, sizeof *r);
}

static const char *const defence_names[SG_DEF_COUNT] = {
    "none",          "igor-threshold", "igor-first-builds-off",
    "igor-lookback", "nginx-limit",    "stormguard"};

const char *sg_sim_defence_name(sg_sim_defence d)
{
    return (unsigned)d < SG_DEF_COUNT ? defence_names[d] : "?";
}

int sg_sim_defence_parse(const char *name, sg_sim_defence *out)
{
    for (int i = 0; i < SG_DEF_COUNT; i++)
        if (name && !strcmp(name, defence_names[i])) {
            *out = (sg_sim_defence)i;
            return 0;
        }
    return SG_EINVAL;
}

int sg_sim_write_world(const sg_scenario *sc, uint64_t seed, FILE *out)
{
    world w;
    world_build(&w, sc, seed);
    fprintf(out, "{\"t0\":%lld,\"masters\":[", (long long)SIM_T0);
    for (size_t m = 0; m < sc->nmasters; m++) {
        fprintf(out, "%s{\"name\":\"%s\",\"pipelines_per_job\":%lld,\"jobs\":[", m ? "," : "",
                sc->masters[m].name, (long long)sc->masters[m].pipelines_per_job);
        for (size_t ji = w.first_job[m]; ji < w.first_job[m + 1]; ji++) {
            const job *j = &w.jobs[ji];
            fprintf(out,
                    "%s{\"name\":\"%s\",\"appears_at\":%lld,\"announced\":%s,"
                    "\"history\":%u,\"builds\":[",
                    ji > w.first_job[m] ? "," : "", j->name, (long long)j->appears_at,
                    j->announced ? "true" : "false", j->history);
            for (uint32_t b = 0; b < j->nb; b++)
                fprintf(out, "%s[%lld,%lld,%d]", b ? "," : "", (long long)j->b[b].start,
                        (long long)j->b[b].end, j->b[b].success ? 1 : 0);
            fputs("]}", out);
        }
        fputs("]}", out);
    }
    fputs("]}\n", out);
    world_free(&w);
    return ferror(out) ? SG_EIO : 0;
}
