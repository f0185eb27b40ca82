/* Storm detector, mode machine, drain bucket and superseding (storm.h).
 *
 * The detector keeps two bounded tables, both keyed by the keyed SipHash of
 * the names (hashset.h) rather than the names, and both ordered by recency:
 * jobs (the last same_job_builds build times of each, and whether it was
 * counted as first seen) and sources (per-bucket counts of events, replays
 * and first-seen jobs over the window). An entry with no event within the
 * window holds nothing the signals need, so it is dropped from the cold end
 * of its recency list; past max_jobs / max_sources the least recent entry is
 * evicted even if younger. Memory therefore stays under a fixed bound
 * whatever names the poller sends. */
#include "stormguard/gate/storm.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/base/hashset.h"
#include "stormguard/base/util.h"

#define NIL UINT32_MAX
#define NEVER INT64_MIN
#define MICRO INT64_C(1000000)

/* ---- a bounded table in recency order ---- */

typedef struct entry {
    uint64_t key;
    int64_t last_ms;
    uint32_t prev, next; /* recency list, head most recent; next also links the free list */
} entry;

struct sg_storm_table {
    entry *e;
    unsigned char *data; /* payload bytes per entry */
    uint32_t *slots;     /* entry index + 1, 0 = empty; open addressing */
    size_t payload, cap, used, len, max, nslots, evicted;
    uint32_t head, tail, free_list;
};

static size_t home_slot(uint64_t key, size_t nslots)
{
    return (size_t)(key * 0x9e3779b97f4a7c15ULL >> 17) & (nslots - 1);
}

static void *payload_of(struct sg_storm_table *t, uint32_t i)
{
    return t->data + (size_t)i * t->payload;
}

static void slot_insert(struct sg_storm_table *t, uint32_t i)
{
    size_t mask = t->nslots - 1, j = home_slot(t->e[i].key, t->nslots);
    while (t->slots[j])
        j = (j + 1) & mask;
    t->slots[j] = i + 1;
}

/* Backward-shift deletion, as hashset.c: no tombstones. */
static void slot_delete(struct sg_storm_table *t, uint32_t i)
{
    size_t mask = t->nslots - 1, s = home_slot(t->e[i].key, t->nslots);
    while (t->slots[s] != i + 1) {
        assert(t->slots[s]);
        s = (s + 1) & mask;
    }
    for (size_t j = (s + 1) & mask; t->slots[j]; j = (j + 1) & mask) {
        size_t home = home_slot(t->e[t->slots[j] - 1].key, t->nslots);
        if (((j - home) & mask) >= ((j - s) & mask)) {
            t->slots[s] = t->slots[j];
            s = j;
        }
    }
    t->slots[s] = 0;
}

static struct sg_storm_table *table_new(size_t payload, size_t max)
{
    struct sg_storm_table *t = sg_xcalloc(1, sizeof *t);
    t->payload = payload;
    t->max = max;
    t->head = t->tail = t->free_list = NIL;
    return t;
}

static void table_free(struct sg_storm_table *t)
{
    if (!t)
        return;
    free(t->e);
    free(t->data);
    free(t->slots);
    free(t);
}

static size_t table_bytes(const struct sg_storm_table *t)
{
    return sizeof *t + t->cap * (sizeof *t->e + t->payload) + t->nslots * sizeof *t->slots;
}

/* Grows the entry arrays (at most to max) and rehashes at load <= 1/2. */
static void table_grow(struct sg_storm_table *t)
{
    size_t cap = t->cap ? t->cap * 2 : 16;
    if (cap > t->max)
        cap = t->max;
    assert(cap > t->cap);
    t->e = sg_xrealloc(t->e, cap * sizeof *t->e);
    t->data = sg_xrealloc(t->data, cap * t->payload);
    t->cap = cap;
    size_t nslots = 16;
    while (nslots < cap * 2)
        nslots *= 2;
    if (nslots != t->nslots) {
        free(t->slots);
        t->slots = sg_xcalloc(nslots, sizeof *t->slots);
        t->nslots = nslots;
        for (uint32_t i = t->head; i != NIL; i = t->e[i].next)
            slot_insert(t, i);
    }
}

static uint32_t table_find(const struct sg_storm_table *t, uint64_t key)
{
    if (!t->nslots)
        return NIL;
    size_t mask = t->nslots - 1;
    for (size_t j = home_slot(key, t->nslots); t->slots[j]; j = (j + 1) & mask)
        if (t->e[t->slots[j] - 1].key == key)
            return t->slots[j] - 1;
    return NIL;
}

static void list_unlink(struct sg_storm_table *t, uint32_t i)
{
    entry *x = &t->e[i];
    if (x->prev != NIL)
        t->e[x->prev].next = x->next;
    else
        t->head = x->next;
    if (x->next != NIL)
        t->e[x->next].prev = x->prev;
    else
        t->tail = x->prev;
}

static void list_push_head(struct sg_storm_table *t, uint32_t i)
{
    t->e[i].prev = NIL;
    t->e[i].next = t->head;
    if (t->head != NIL)
        t->e[t->head].prev = i;
    else
        t->tail = i;
    t->head = i;
}

static void table_remove(struct sg_storm_table *t, uint32_t i)
{
    list_unlink(t, i);
    slot_delete(t, i);
    t->e[i].next = t->free_list;
    t->free_list = i;
    t->len--;
}

/* Drops every entry last touched at or before before_ms. */
static void table_expire(struct sg_storm_table *t, int64_t before_ms)
{
    while (t->tail != NIL && t->e[t->tail].last_ms <= before_ms)
        table_remove(t, t->tail);
}

/* Adds key (not present) with a zeroed payload, evicting the least recent
 * entry if the table is full. The index stays valid until the next add. */
static uint32_t table_add(struct sg_storm_table *t, uint64_t key, int64_t now_ms)
{
    if (t->len == t->max) {
        table_remove(t, t->tail);
        t->evicted++;
    }
    uint32_t i;
    if (t->free_list != NIL) {
        i = t->free_list;
        t->free_list = t->e[i].next;
    } else {
        if (t->used == t->cap)
            table_grow(t);
        i = (uint32_t)t->used++;
    }
    t->e[i].key = key;
    t->e[i].last_ms = now_ms;
    memset(payload_of(t, i), 0, t->payload);
    list_push_head(t, i);
    slot_insert(t, i);
    t->len++;
    return i;
}

static void table_touch(struct sg_storm_table *t, uint32_t i, int64_t now_ms)
{
    t->e[i].last_ms = now_ms;
    if (t->head != i) {
        list_unlink(t, i);
        list_push_head(t, i);
    }
}

/* ---- detector state ---- */

/* A tracked job: its last same_job_builds build times, oldest first from
 * next once the ring is full. */
typedef struct job_state {
    uint16_t n, next;
    uint16_t unknown_counted; /* counted towards first_seen while tracked */
    uint16_t pad;
    int64_t stamps[];
} job_state;

/* The per-source window is cut into at most this many buckets: 1 s each at
 * the default 60 s window. */
#define SOURCE_BUCKETS 60

typedef struct counts {
    uint32_t total, replay, unknown, tags; /* tags: Docker tags seen for the first time */
} counts;

typedef struct source_state {
    int64_t bucket; /* number of the newest bucket (now_ms / bucket_ms) */
    counts sum;     /* over the buckets in the window */
    counts b[SOURCE_BUCKETS];
    int64_t reported[SG_STORM_RATE]; /* per-source signals: last fresh report */
} source_state;

static const char *const signal_names[] = {"same_job", "first_seen", "replay_share", "rate"};

const char *sg_storm_signal_name(sg_storm_signal sig)
{
    return (unsigned)sig < SG_STORM_NSIGNALS ? signal_names[sig] : "?";
}

void sg_storm_opts_default(sg_storm_opts *o)
{
    memset(o, 0, sizeof *o);
    o->window_ms = 60 * 1000; /* Igor polls every 60 s by default: DOMAIN.md section 1 */
    o->same_job_builds = 3;
    o->first_seen_jobs = 20;
    o->first_seen_tags = 20;
    o->replay_min = 20;
    o->replay_share_pct = 50;
    o->rate_factor = 5.0;
    o->rate_floor = 20;
    o->rate_baseline_ms = 5 * 60 * 1000;
    o->max_jobs = 50000;
    o->max_sources = 256;
}

static int range_error(sg_error *err, const char *field, int64_t v, const char *range)
{
    return sg_error_set(err, SG_EINVAL, "storm detector: %s %lld is out of range (%s)", field,
                        (long long)v, range);
}

int sg_storm_opts_check(const sg_storm_opts *o, sg_error *err)
{
    if (o->window_ms < 1 || o->window_ms > INT64_C(86400000))
        return range_error(err, "window_ms", o->window_ms, "1 ms to 1 day");
    if (o->same_job_builds == 1 || o->same_job_builds < 0 ||
        o->same_job_builds > SG_STORM_SAME_JOB_MAX)
        return range_error(err, "same_job_builds", o->same_job_builds, "0 = off, or 2 to 64");
    if (o->first_seen_jobs < 0 || o->first_seen_jobs > UINT32_MAX)
        return range_error(err, "first_seen_jobs", o->first_seen_jobs, "0 = off, or more");
    if (o->first_seen_tags < 0 || o->first_seen_tags > UINT32_MAX)
        return range_error(err, "first_seen_tags", o->first_seen_tags, "0 = off, or more");
    if (o->replay_min < 0 || o->replay_min > UINT32_MAX)
        return range_error(err, "replay_min", o->replay_min, "0 or more");
    if (o->replay_share_pct < 0 || o->replay_share_pct > 100)
        return range_error(err, "replay_share_pct", o->replay_share_pct, "0 = off, or 1 to 100");
    if (!(o->rate_factor >= 0 && o->rate_factor <= 1e6))
        return sg_error_set(err, SG_EINVAL,
                            "storm detector: rate_factor %g is out of range (0 = off, up to 1e6)",
                            o->rate_factor);
    if (o->rate_floor < 0 || o->rate_floor > INT64_C(1000000000))
        return range_error(err, "rate_floor", o->rate_floor, "0 to 1e9 per second");
    if (o->rate_baseline_ms < 1000 || o->rate_baseline_ms > INT64_C(86400000) * 7)
        return range_error(err, "rate_baseline_ms", o->rate_baseline_ms, "1 s to 7 days");
    if (o->max_jobs < 1 || o->max_jobs > (INT64_C(1) << 28))
        return range_error(err, "max_jobs", o->max_jobs, "1 to 2^28");
    if (o->max_sources < 1 || o->max_sources > (INT64_C(1) << 20))
        return range_error(err, "max_sources", o->max_sources, "1 to 2^20");
    return 0;
}

static void format_span(char *buf, size_t size, int64_t ms)
{
    if (ms % 1000 == 0)
        snprintf(buf, size, "%lld s", (long long)(ms / 1000));
    else if (ms > 1000)
        snprintf(buf, size, "%.1f s", (double)ms / 1000.0);
    else
        snprintf(buf, size, "%lld ms", (long long)ms);
}

int sg_storm_init(sg_storm *s, const sg_storm_opts *opts, sg_error *err)
{
    int rc = sg_storm_opts_check(opts, err);
    if (rc)
        return rc;
    memset(s, 0, sizeof *s);
    s->opts = *opts;
    s->nbuckets = opts->window_ms < SOURCE_BUCKETS ? opts->window_ms : SOURCE_BUCKETS;
    /* rounded down, so the buckets never span more than the window */
    s->bucket_ms = opts->window_ms / s->nbuckets;
    s->jobs = table_new(sizeof(job_state) + (size_t)opts->same_job_builds * sizeof(int64_t),
                        (size_t)opts->max_jobs);
    s->sources = table_new(sizeof(source_state), (size_t)opts->max_sources);
    /* One sample a second: alpha = 1 - e^(-1 s / tau) weighs the last tau
     * (5 min by default) of seconds most. */
    s->alpha = 1.0 - exp(-1000.0 / (double)opts->rate_baseline_ms);
    s->rate_sec = -1;
    s->rate_reported_ms = NEVER;
    format_span(s->window_text, sizeof s->window_text, opts->window_ms);
    snprintf(s->factor_text, sizeof s->factor_text, "%g", opts->rate_factor);
    return 0;
}

void sg_storm_close(sg_storm *s)
{
    table_free(s->jobs);
    table_free(s->sources);
    s->jobs = s->sources = NULL;
}

static int64_t rate_threshold(const sg_storm *s)
{
    double t = s->opts.rate_factor * s->baseline;
    if (t < (double)s->opts.rate_floor)
        t = (double)s->opts.rate_floor;
    return t >= 9e18 ? INT64_MAX : (int64_t)floor(t);
}

/* Closes the seconds before now_ms's and folds them into the baseline.
 *
 * The baseline must not learn the storm it is meant to catch, so a second
 * that tripped the backstop is left out of the average altogether. Folding
 * it in capped at the threshold would not do: the threshold is rate_factor
 * times the baseline, so each capped storm second would still raise the
 * baseline by alpha x (rate_factor - 1) of itself, about 1.3 % a second at
 * the defaults, and a ten-minute storm would teach it a baseline thousands
 * of times higher. Seconds below the threshold, quiet ones included, are
 * folded in as usual, so the baseline still follows genuine growth that
 * comes gradually; the floor keeps a cold or quiet baseline from making the
 * threshold absurdly low. */
static void rate_roll(sg_storm *s, int64_t now_ms)
{
    int64_t sec = now_ms / 1000;
    if (s->rate_sec < 0 || sec <= s->rate_sec) {
        if (s->rate_sec < 0)
            s->rate_sec = sec;
        return;
    }
    if (!s->rate_tripped)
        s->baseline += s->alpha * ((double)s->rate_count - s->baseline);
    int64_t quiet = sec - s->rate_sec - 1;
    if (quiet > 0)
        s->baseline *= pow(1.0 - s->alpha, (double)(quiet < 100000000 ? quiet : 100000000));
    s->rate_sec = sec;
    s->rate_count = 0;
    s->rate_tripped = false;
}

static void source_advance(const sg_storm *s, source_state *st, int64_t bucket)
{
    if (bucket <= st->bucket)
        return;
    if (bucket - st->bucket >= s->nbuckets) {
        memset(&st->sum, 0, sizeof st->sum);
        memset(st->b, 0, sizeof st->b);
    } else {
        for (int64_t n = st->bucket + 1; n <= bucket; n++) {
            counts *c = &st->b[n % s->nbuckets];
            st->sum.total -= c->total;
            st->sum.replay -= c->replay;
            st->sum.unknown -= c->unknown;
            st->sum.tags -= c->tags;
            memset(c, 0, sizeof *c);
        }
    }
    st->bucket = bucket;
}

static source_state *source_get(sg_storm *s, const char *source)
{
    uint64_t key = sg_hash(source, strlen(source));
    uint32_t i = table_find(s->sources, key);
    if (i != NIL) {
        table_touch(s->sources, i, s->now_ms);
        source_state *st = payload_of(s->sources, i);
        source_advance(s, st, s->now_ms / s->bucket_ms);
        return st;
    }
    i = table_add(s->sources, key, s->now_ms);
    source_state *st = payload_of(s->sources, i);
    st->bucket = s->now_ms / s->bucket_ms;
    for (int k = 0; k < SG_STORM_RATE; k++)
        st->reported[k] = NEVER;
    return st;
}

/* The tracked entry of a job, or of a Docker tag (key: sg_hash_job or
 * sg_hash_docker_tag), added if new. */
static job_state *job_get(sg_storm *s, uint64_t key)
{
    uint32_t i = table_find(s->jobs, key);
    if (i != NIL)
        table_touch(s->jobs, i, s->now_ms);
    else
        i = table_add(s->jobs, key, s->now_ms);
    return payload_of(s->jobs, i);
}

/* Records a build time; true if the job now has same_job_builds of them
 * within the window. */
static bool job_stamp(const sg_storm *s, job_state *js)
{
    int64_t k = s->opts.same_job_builds;
    js->stamps[js->next] = s->now_ms;
    js->next = (uint16_t)((js->next + 1) % k);
    if (js->n < k)
        js->n++;
    /* full: the oldest of the k is where the next one goes */
    return js->n == k && js->stamps[js->next] > s->now_ms - s->opts.window_ms;
}

/* Fills t; a fresh report if none for this scope and signal within the
 * window (then *reported moves to now). */
static void trigger_fill(const sg_storm *s, sg_storm_trigger *t, sg_storm_signal sig,
                         const char *scope, int64_t count, int64_t threshold, int64_t *reported)
{
    t->signal = sig;
    t->name = signal_names[sig];
    t->scope = scope;
    t->count = count;
    t->threshold = threshold;
    t->repeat = *reported != NEVER && s->now_ms - *reported < s->opts.window_ms;
    if (!t->repeat)
        *reported = s->now_ms;
}

static size_t replay_share(sg_storm *s, source_state *st, const char *source,
                           sg_storm_trigger *out);

/* tag: a Docker event's (job is then its repository), NULL for a build;
 * first_seen_tag: that tag is new to the index and the ledger. */
static size_t observe_source(sg_storm *s, const char *source, const char *job, const char *tag,
                             bool first_seen_tag, sg_kind kind, sg_storm_trigger *out)
{
    const sg_storm_opts *o = &s->opts;
    size_t n = 0;

    source_state *st = source_get(s, source);
    /* a Docker tag is tracked as a job is: one tag posted again and again
     * is what one job completing build after build is */
    job_state *js =
        job_get(s, tag ? sg_hash_docker_tag(source, job, tag) : sg_hash_job(source, job));
    counts *c = &st->b[st->bucket % s->nbuckets];
    c->total++;
    st->sum.total++;
    if (kind == SG_KIND_REPLAY) {
        c->replay++;
        st->sum.replay++;
    }
    /* first_seen counts jobs, not events: a wiped job posts many builds */
    if (!tag && kind == SG_KIND_UNKNOWN && !js->unknown_counted) {
        js->unknown_counted = 1;
        c->unknown++;
        st->sum.unknown++;
    }
    /* and tags apart, once each */
    if (tag && first_seen_tag && !js->unknown_counted) {
        js->unknown_counted = 1;
        c->tags++;
        st->sum.tags++;
    }

    if (o->same_job_builds && job_stamp(s, js)) {
        sg_storm_trigger *t = &out[n++];
        trigger_fill(s, t, SG_STORM_SAME_JOB, source, o->same_job_builds, o->same_job_builds,
                     &st->reported[SG_STORM_SAME_JOB]);
        if (tag)
            snprintf(t->message, sizeof t->message,
                     "tag %s:%s of account %s posted %lld times within %s (threshold %lld)", job,
                     tag, source, (long long)t->count, s->window_text, (long long)t->threshold);
        else
            snprintf(t->message, sizeof t->message,
                     "job %s on %s completed %lld builds within %s (threshold %lld)", job, source,
                     (long long)t->count, s->window_text, (long long)t->threshold);
    }
    if (o->first_seen_jobs && st->sum.unknown >= o->first_seen_jobs) {
        sg_storm_trigger *t = &out[n++];
        trigger_fill(s, t, SG_STORM_FIRST_SEEN, source, st->sum.unknown, o->first_seen_jobs,
                     &st->reported[SG_STORM_FIRST_SEEN]);
        snprintf(t->message, sizeof t->message,
                 "%lld jobs never seen before reported on %s within %s (threshold %lld)",
                 (long long)t->count, source, s->window_text, (long long)t->threshold);
    } else if (o->first_seen_tags && st->sum.tags >= o->first_seen_tags) {
        sg_storm_trigger *t = &out[n++];
        trigger_fill(s, t, SG_STORM_FIRST_SEEN, source, st->sum.tags, o->first_seen_tags,
                     &st->reported[SG_STORM_FIRST_SEEN]);
        snprintf(t->message, sizeof t->message,
                 "%lld Docker tags never seen before posted for account %s within %s "
                 "(threshold %lld)",
                 (long long)t->count, source, s->window_text, (long long)t->threshold);
    }
    return n + replay_share(s, st, source, out + n);
}

/* The replay share of a source's events: 0 or 1 trigger. */
static size_t replay_share(sg_storm *s, source_state *st, const char *source, sg_storm_trigger *out)
{
    const sg_storm_opts *o = &s->opts;
    int64_t total = st->sum.total, replay = st->sum.replay;
    if (!o->replay_share_pct || total < o->replay_min || replay * 100 < o->replay_share_pct * total)
        return 0;
    sg_storm_trigger *t = out;
    trigger_fill(s, t, SG_STORM_REPLAY_SHARE, source, replay * 100 / total, o->replay_share_pct,
                 &st->reported[SG_STORM_REPLAY_SHARE]);
    snprintf(t->message, sizeof t->message,
             "%lld of %lld builds from %s within %s were replays (%lld%%, threshold %lld%% of "
             "at least %lld)",
             (long long)replay, (long long)total, source, s->window_text, (long long)t->count,
             (long long)t->threshold, (long long)o->replay_min);
    return 1;
}

static size_t observe(sg_storm *s, int64_t now_ms, const char *source, const char *job,
                      const char *tag, bool first_seen_tag, sg_kind kind,
                      sg_storm_trigger out[SG_STORM_NSIGNALS])
{
    if (now_ms > s->now_ms)
        s->now_ms = now_ms;
    table_expire(s->jobs, s->now_ms - s->opts.window_ms);
    table_expire(s->sources, s->now_ms - s->opts.window_ms);
    rate_roll(s, s->now_ms);
    if (kind != SG_KIND_NEW && kind != SG_KIND_UNKNOWN && kind != SG_KIND_REPLAY)
        return 0;

    size_t n =
        observe_source(s, source ? source : "", job ? job : "", tag, first_seen_tag, kind, out);

    /* the backstop: only what would be forwarded counts */
    if (s->opts.rate_factor > 0 && kind != SG_KIND_REPLAY) {
        int64_t limit = rate_threshold(s);
        if (++s->rate_count > limit) {
            s->rate_tripped = true;
            sg_storm_trigger *t = &out[n++];
            trigger_fill(s, t, SG_STORM_RATE, NULL, s->rate_count, limit, &s->rate_reported_ms);
            /* integer tenths: this runs on every event of a storm second */
            long long tenths = llround(s->baseline * 10);
            snprintf(t->message, sizeof t->message,
                     "%lld new or unknown builds within 1 s, above %lld/s (%s x baseline "
                     "%lld.%lld/s, floor %lld/s)",
                     (long long)s->rate_count, (long long)limit, s->factor_text, tenths / 10,
                     tenths % 10, (long long)s->opts.rate_floor);
        }
    }
    assert(n <= SG_STORM_NSIGNALS);
    return n;
}

size_t sg_storm_observe(sg_storm *s, int64_t now_ms, const char *source, const char *job,
                        sg_kind kind, sg_storm_trigger out[SG_STORM_NSIGNALS])
{
    return observe(s, now_ms, source, job, NULL, false, kind, out);
}

size_t sg_storm_observe_tag(sg_storm *s, int64_t now_ms, const char *account,
                            const char *repository, const char *tag, sg_kind kind, bool first_seen,
                            sg_storm_trigger out[SG_STORM_NSIGNALS])
{
    return observe(s, now_ms, account, repository, tag ? tag : "", first_seen, kind, out);
}

size_t sg_storm_replayed(sg_storm *s, int64_t observed_ms, int64_t now_ms, const char *source,
                         sg_storm_trigger out[SG_STORM_NSIGNALS])
{
    if (now_ms > s->now_ms)
        s->now_ms = now_ms;
    table_expire(s->jobs, s->now_ms - s->opts.window_ms);
    table_expire(s->sources, s->now_ms - s->opts.window_ms);
    rate_roll(s, s->now_ms);
    /* the backstop counted it within its second, if that second still runs */
    if (observed_ms / 1000 == s->rate_sec && s->rate_count > 0)
        s->rate_count--;
    source_state *st = source_get(s, source ? source : "");
    if (st->sum.replay >= st->sum.total)
        return 0; /* its own count has left the window meanwhile */
    st->b[st->bucket % s->nbuckets].replay++;
    st->sum.replay++;
    return replay_share(s, st, source ? source : "", out);
}

void sg_storm_stats_get(const sg_storm *s, sg_storm_stats *out)
{
    memset(out, 0, sizeof *out);
    out->jobs = s->jobs->len;
    out->sources = s->sources->len;
    out->evicted_jobs = s->jobs->evicted;
    out->evicted_sources = s->sources->evicted;
    out->bytes = table_bytes(s->jobs) + table_bytes(s->sources);
    out->baseline = s->baseline;
    out->rate_threshold = rate_threshold(s);
}

/* ---- modes ---- */

struct sg_modes_scope {
    char *scope; /* NULL: global */
    char *message;
    int64_t since_ms, until_ms;
};

static const char *const mode_names[] = {"normal", "guard", "storm"};

const char *sg_mode_name(sg_mode m)
{
    return (unsigned)m < sizeof mode_names / sizeof mode_names[0] ? mode_names[m] : "?";
}

void sg_modes_init(sg_modes *m, sg_modes_cb cb, void *cb_arg)
{
    memset(m, 0, sizeof *m);
    m->cb = cb;
    m->cb_arg = cb_arg;
    /* the sources, plus the global storm */
    m->storms = sg_xcalloc(SG_MODES_MAX_STORMS + 1, sizeof *m->storms);
}

void sg_modes_close(sg_modes *m)
{
    for (size_t i = 0; i < m->nstorms; i++) {
        free(m->storms[i].scope);
        free(m->storms[i].message);
    }
    free(m->storms);
    free(m->guard_reason);
    memset(m, 0, sizeof *m);
}

static void report(const sg_modes *m, sg_mode mode, bool started, bool forced, const char *scope,
                   const char *detail, int64_t since_ms, int64_t until_ms)
{
    if (!m->cb)
        return;
    sg_mode_change c = {.mode = mode,
                        .started = started,
                        .forced = forced,
                        .scope = scope,
                        .detail = detail,
                        .since_ms = since_ms,
                        .until_ms = until_ms};
    m->cb(&c, m->cb_arg);
}

static void guard_end(sg_modes *m, int64_t at_ms, bool forced)
{
    assert(m->guard_on);
    m->guard_on = false;
    report(m, SG_MODE_GUARD, false, forced, NULL, m->guard_reason, m->guard_since, at_ms);
    free(m->guard_reason);
    m->guard_reason = NULL;
}

bool sg_modes_guard(sg_modes *m, int64_t now_ms, int64_t duration_ms, const char *reason)
{
    if (duration_ms < 1)
        duration_ms = 1;
    if (m->guard_on && m->guard_until <= now_ms)
        guard_end(m, m->guard_until, false);
    m->guard_ms = duration_ms;
    if (m->guard_on) {
        if (m->guard_until < now_ms + duration_ms)
            m->guard_until = now_ms + duration_ms;
        return false;
    }
    m->guard_on = true;
    m->guard_since = now_ms;
    m->guard_until = now_ms + duration_ms;
    m->guard_reason = sg_xstrdup(reason ? reason : "");
    report(m, SG_MODE_GUARD, true, false, NULL, m->guard_reason, now_ms, 0);
    return true;
}

bool sg_modes_guard_off(sg_modes *m, int64_t now_ms)
{
    if (!m->guard_on)
        return false;
    if (m->guard_until <= now_ms) {
        guard_end(m, m->guard_until, false); /* it had ended on its own */
        return false;
    }
    guard_end(m, now_ms, true);
    return true;
}

static bool same_scope(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

static size_t storm_find(const sg_modes *m, const char *scope)
{
    for (size_t i = 0; i < m->nstorms; i++)
        if (same_scope(m->storms[i].scope, scope))
            return i;
    return SIZE_MAX;
}

static void storm_end(sg_modes *m, size_t i, int64_t at_ms, bool forced)
{
    struct sg_modes_scope *x = &m->storms[i];
    report(m, SG_MODE_STORM, false, forced, x->scope, x->message, x->since_ms, at_ms);
    free(x->scope);
    free(x->message);
    m->storms[i] = m->storms[--m->nstorms];
}

static void storms_expire(sg_modes *m, int64_t now_ms)
{
    for (size_t i = 0; i < m->nstorms;) {
        if (m->storms[i].until_ms <= now_ms)
            storm_end(m, i, m->storms[i].until_ms, false);
        else
            i++;
    }
}

bool sg_modes_storm(sg_modes *m, int64_t now_ms, const char *scope, int64_t cooldown_ms,
                    const char *message)
{
    if (cooldown_ms < 1)
        cooldown_ms = 1;
    /* "guard mode for guard.duration, extended while the storm detector
     * still fires" */
    if (m->guard_on && m->guard_until > now_ms && m->guard_until < now_ms + m->guard_ms)
        m->guard_until = now_ms + m->guard_ms;

    size_t i = storm_find(m, scope);
    if (i != SIZE_MAX && m->storms[i].until_ms <= now_ms) {
        storm_end(m, i, m->storms[i].until_ms, false);
        i = SIZE_MAX;
    }
    if (i != SIZE_MAX) {
        if (m->storms[i].until_ms < now_ms + cooldown_ms)
            m->storms[i].until_ms = now_ms + cooldown_ms;
        return false;
    }
    if (scope) {
        size_t sources = m->nstorms - (storm_find(m, NULL) != SIZE_MAX);
        if (sources >= SG_MODES_MAX_STORMS) {
            storms_expire(m, now_ms);
            sources = m->nstorms - (storm_find(m, NULL) != SIZE_MAX);
        }
        if (sources >= SG_MODES_MAX_STORMS) {
            char *msg = sg_xasprintf("storms on more than %d sources; %s on %s",
                                     SG_MODES_MAX_STORMS, message ? message : "a trigger", scope);
            bool started = sg_modes_storm(m, now_ms, NULL, cooldown_ms, msg);
            free(msg);
            return started;
        }
    }
    assert(m->nstorms <= SG_MODES_MAX_STORMS);
    struct sg_modes_scope *x = &m->storms[m->nstorms++];
    x->scope = scope ? sg_xstrdup(scope) : NULL;
    x->message = sg_xstrdup(message ? message : "");
    x->since_ms = now_ms;
    x->until_ms = now_ms + cooldown_ms;
    report(m, SG_MODE_STORM, true, false, x->scope, x->message, now_ms, 0);
    return true;
}

bool sg_modes_storm_off(sg_modes *m, int64_t now_ms, const char *scope)
{
    size_t i = storm_find(m, scope);
    if (i == SIZE_MAX)
        return false;
    if (m->storms[i].until_ms <= now_ms) {
        storm_end(m, i, m->storms[i].until_ms, false);
        return false;
    }
    storm_end(m, i, now_ms, true);
    return true;
}

void sg_modes_tick(sg_modes *m, int64_t now_ms)
{
    storms_expire(m, now_ms);
    if (m->guard_on && m->guard_until <= now_ms)
        guard_end(m, m->guard_until, false);
}

static bool guard_active(const sg_modes *m, int64_t now_ms)
{
    return m->guard_on && m->guard_until > now_ms;
}

sg_mode sg_modes_for(const sg_modes *m, int64_t now_ms, const char *source)
{
    for (size_t i = 0; i < m->nstorms; i++) {
        const struct sg_modes_scope *x = &m->storms[i];
        if (x->until_ms > now_ms && (!x->scope || (source && !strcmp(x->scope, source))))
            return SG_MODE_STORM;
    }
    return guard_active(m, now_ms) ? SG_MODE_GUARD : SG_MODE_NORMAL;
}

sg_mode sg_modes_overall(const sg_modes *m, int64_t now_ms)
{
    for (size_t i = 0; i < m->nstorms; i++)
        if (m->storms[i].until_ms > now_ms)
            return SG_MODE_STORM;
    return guard_active(m, now_ms) ? SG_MODE_GUARD : SG_MODE_NORMAL;
}

bool sg_modes_guard_info(const sg_modes *m, int64_t now_ms, sg_guard_info *out)
{
    if (!guard_active(m, now_ms))
        return false;
    if (out) {
        out->since_ms = m->guard_since;
        out->until_ms = m->guard_until;
        out->reason = m->guard_reason;
    }
    return true;
}

size_t sg_modes_storms(const sg_modes *m, int64_t now_ms, sg_mode_storm_info *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < m->nstorms; i++) {
        const struct sg_modes_scope *x = &m->storms[i];
        if (x->until_ms <= now_ms)
            continue;
        if (n < max)
            out[n] = (sg_mode_storm_info){.scope = x->scope,
                                          .message = x->message,
                                          .since_ms = x->since_ms,
                                          .until_ms = x->until_ms};
        n++;
    }
    return n;
}

/* ---- token bucket ---- */

void sg_bucket_init(sg_bucket *b, double rate_per_s, int64_t burst)
{
    memset(b, 0, sizeof *b);
    /* tokens/s x 1e6 micro-tokens / 1000 ms: a granularity of 0.001/s */
    if (rate_per_s > 0) {
        double r = rate_per_s * 1000.0;
        b->rate_u = r >= 1e15 ? INT64_C(1000000000000000) : r < 1 ? 1 : llround(r);
    }
    if (burst < 1)
        burst = 1;
    if (burst > INT64_C(1000000000000))
        burst = INT64_C(1000000000000);
    b->burst_u = burst * MICRO;
    b->tokens_u = b->burst_u;
    b->last_ms = NEVER;
}

/* The tokens at now_ms (no earlier than the last take's time). */
static int64_t bucket_level(const sg_bucket *b, int64_t now_ms)
{
    if (b->last_ms == NEVER || now_ms <= b->last_ms || !b->rate_u)
        return b->tokens_u;
    int64_t missing = b->burst_u - b->tokens_u, elapsed = now_ms - b->last_ms;
    if (elapsed >= missing / b->rate_u + 1)
        return b->burst_u;
    return b->tokens_u + elapsed * b->rate_u;
}

int64_t sg_bucket_take(sg_bucket *b, int64_t now_ms, int64_t n)
{
    b->tokens_u = bucket_level(b, now_ms);
    if (b->last_ms == NEVER || now_ms > b->last_ms)
        b->last_ms = now_ms;
    if (n <= 0)
        return 0;
    int64_t have = b->tokens_u / MICRO, take = n < have ? n : have;
    b->tokens_u -= take * MICRO;
    return take;
}

int64_t sg_bucket_wait_ms(const sg_bucket *b, int64_t now_ms)
{
    int64_t level = bucket_level(b, now_ms);
    if (level >= MICRO)
        return 0;
    if (!b->rate_u)
        return -1;
    return (MICRO - level + b->rate_u - 1) / b->rate_u;
}
