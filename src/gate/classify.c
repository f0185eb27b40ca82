/* Replay / new / unknown (classify.h, DOMAIN.md section 4). */
#include "stormguard/gate/classify.h"

#include <string.h>

static const char *const kind_names[] = {"passthrough", "new", "replay", "unknown"};

const char *sg_kind_name(sg_kind k)
{
    return (unsigned)k < sizeof kind_names / sizeof kind_names[0] ? kind_names[k] : "?";
}

int sg_kind_parse(const char *s, sg_kind *out)
{
    for (size_t i = 0; i < sizeof kind_names / sizeof kind_names[0]; i++) {
        if (!strcmp(s, kind_names[i])) {
            *out = (sg_kind)i;
            return 0;
        }
    }
    return -1;
}

const char *sg_reason_name(sg_reason r)
{
    switch (r) {
    case SG_REASON_LEDGER:
        return "already accepted by the gate";
    case SG_REASON_POSTED:
        return "posted marker in snapshot";
    case SG_REASON_CURSOR:
        return "started at or before the job's cursor";
    case SG_REASON_NUMBER:
        return "at or below the job's last completed build";
    case SG_REASON_BEYOND:
        return "beyond everything known of the job";
    case SG_REASON_LEDGER_JOB:
        return "job known only from the gate's ledger";
    case SG_REASON_UNKNOWN_JOB:
        return "job unknown to snapshot and ledger";
    case SG_REASON_AFTER_WIPE:
        return "ended after the wipe: not announced before it";
    case SG_REASON_NOT_A_BUILD:
        return "not a completed build";
    case SG_REASON_DOCKER_TAG:
        return "tag in the snapshot's Docker index";
    case SG_REASON_DOCKER_DIGEST:
        return "known tag with a new digest: pushed again";
    case SG_REASON_DOCKER_NEW_TAG:
        return "new tag of a known repository";
    case SG_REASON_DOCKER_UNKNOWN:
        return "repository unknown to snapshot and ledger";
    default:
        return "";
    }
}

void sg_index_init(sg_index *ix)
{
    memset(ix, 0, sizeof *ix);
    sg_u64map_init(&ix->jobs, sizeof(sg_job_facts));
    sg_u64map_init(&ix->tags, sizeof(uint64_t));
    for (int g = 0; g < 2; g++) {
        sg_u64map_init(&ix->kept[g].jobs, sizeof(sg_job_facts));
        sg_u64map_init(&ix->kept[g].tags, sizeof(uint64_t));
    }
}

static void kept_clear(sg_index_kept *k)
{
    sg_u64map_clear(&k->jobs);
    sg_u64set_clear(&k->posted);
    sg_u64map_clear(&k->tags);
    sg_u64set_clear(&k->repos);
}

void sg_index_close(sg_index *ix)
{
    sg_u64map_clear(&ix->jobs);
    sg_u64set_clear(&ix->posted);
    sg_u64map_clear(&ix->tags);
    sg_u64set_clear(&ix->repos);
    for (int g = 0; g < 2; g++)
        kept_clear(&ix->kept[g]);
}

/* Fills the facts *to lacks from *from. */
static void facts_fill(sg_job_facts *to, const sg_job_facts *from)
{
    if (!to->cursor_ms)
        to->cursor_ms = from->cursor_ms;
    if (!to->last_completed)
        to->last_completed = from->last_completed;
}

/* Puts into to the Docker tags of from that to lacks and own (may be NULL)
 * does not have. */
static void tags_missing(sg_u64map *to, const sg_u64map *from, const sg_u64map *own)
{
    for (size_t i = 0; i < from->cap; i++) {
        uint64_t h = from->keys[i];
        if (!h || (own && sg_u64map_get(own, h)))
            continue;
        bool created;
        uint64_t *d = sg_u64map_put(to, h, &created);
        if (created)
            memcpy(d, from->vals + i * from->val_size, sizeof *d);
    }
}

/* Adds the facts of from into to (a copy of a generation, or more of it). */
static void kept_merge(sg_index_kept *to, const sg_index_kept *from)
{
    for (size_t i = 0; i < from->jobs.cap; i++) {
        uint64_t h = from->jobs.keys[i];
        if (h) {
            bool created;
            facts_fill(sg_u64map_put(&to->jobs, h, &created),
                       (const void *)(from->jobs.vals + i * from->jobs.val_size));
        }
    }
    for (size_t i = 0; i < from->posted.cap; i++)
        if (from->posted.slots[i])
            sg_u64set_add(&to->posted, from->posted.slots[i]);
    tags_missing(&to->tags, &from->tags, NULL);
    for (size_t i = 0; i < from->repos.cap; i++)
        if (from->repos.slots[i])
            sg_u64set_add(&to->repos, from->repos.slots[i]);
}

void sg_index_inherit(sg_index *ix, const sg_index *older, int64_t now_ms)
{
    /* two generations: a fact stays in kept[0] until the generation is
     * SG_INDEX_KEEP_MS old, then in kept[1] for as long again */
    if (older->kept_since_ms && now_ms - older->kept_since_ms < SG_INDEX_KEEP_MS) {
        kept_merge(&ix->kept[0], &older->kept[0]);
        kept_merge(&ix->kept[1], &older->kept[1]);
        ix->kept_since_ms = older->kept_since_ms;
    } else {
        kept_merge(&ix->kept[1], &older->kept[0]);
        ix->kept_since_ms = now_ms;
    }
    /* what the older's own snapshot had and this one lacks */
    for (size_t i = 0; i < older->jobs.cap; i++) {
        uint64_t h = older->jobs.keys[i];
        if (!h)
            continue;
        const sg_job_facts *old = (const void *)(older->jobs.vals + i * older->jobs.val_size);
        const sg_job_facts *now = sg_u64map_get(&ix->jobs, h);
        /* the whole job, or a fact it lacks (its cursor key gone, its
         * markers kept) */
        if (!now || (!now->cursor_ms && old->cursor_ms) ||
            (!now->last_completed && old->last_completed)) {
            bool created;
            facts_fill(sg_u64map_put(&ix->kept[0].jobs, h, &created), old);
        }
    }
    for (size_t i = 0; i < older->posted.cap; i++) {
        uint64_t b = older->posted.slots[i];
        if (b && !sg_u64set_has(&ix->posted, b))
            sg_u64set_add(&ix->kept[0].posted, b);
    }
    /* Docker tags evicted from Igor's keys: their replays come while Igor
     * re-caches them */
    tags_missing(&ix->kept[0].tags, &older->tags, &ix->tags);
    for (size_t i = 0; i < older->repos.cap; i++) {
        uint64_t r = older->repos.slots[i];
        if (r && !sg_u64set_has(&ix->repos, r))
            sg_u64set_add(&ix->kept[0].repos, r);
    }
}

/* A job's facts: its own, with what it lacks from the kept generations;
 * false if none knows the job. */
static bool job_known(const sg_index *ix, uint64_t job, sg_job_facts *out)
{
    const sg_job_facts *own = sg_u64map_get(&ix->jobs, job);
    const sg_job_facts *k0 = sg_u64map_get(&ix->kept[0].jobs, job);
    const sg_job_facts *k1 = sg_u64map_get(&ix->kept[1].jobs, job);
    if (!own && !k0 && !k1)
        return false;
    *out = own ? *own : (sg_job_facts){0};
    if (k0)
        facts_fill(out, k0);
    if (k1)
        facts_fill(out, k1);
    return true;
}

static bool build_posted(const sg_index *ix, uint64_t build)
{
    return sg_u64set_has(&ix->posted, build) || sg_u64set_has(&ix->kept[0].posted, build) ||
           sg_u64set_has(&ix->kept[1].posted, build);
}

static sg_job_facts *job_facts(sg_index *ix, const char *source, const char *job)
{
    bool created;
    return sg_u64map_put(&ix->jobs, sg_hash_job(source, job), &created);
}

void sg_index_cursor(sg_index *ix, const char *source, const char *job, int64_t cursor_ms)
{
    job_facts(ix, source, job)->cursor_ms = cursor_ms;
}

void sg_index_completed(sg_index *ix, const char *source, const char *job, int64_t number)
{
    job_facts(ix, source, job)->last_completed = number;
}

void sg_index_posted(sg_index *ix, const char *source, const char *job, int64_t number)
{
    job_facts(ix, source, job); /* a posted marker makes the job known */
    sg_u64set_add(&ix->posted, sg_hash_build(source, job, number));
}

/* A digest as the maps keep it; 0 for none: NULL, "" or "~", how Igor
 * stores a null digest (its Docker cache's EMPTY_DIGEST). */
static uint64_t digest_hash(const char *digest)
{
    return digest && *digest && strcmp(digest, "~") ? sg_hash(digest, strlen(digest)) | 1 : 0;
}

void sg_index_docker(sg_index *ix, const char *account, const char *repository, const char *tag,
                     const char *digest)
{
    bool created;
    uint64_t *d = sg_u64map_put(&ix->tags, sg_hash_docker_tag(account, repository, tag), &created);
    *d = digest_hash(digest);
    sg_u64set_add(&ix->repos, sg_hash_job(account, repository));
}

/* The digest hash the index has for a tag (its own, else a kept one);
 * false if none has the tag. */
static bool tag_known(const sg_index *ix, uint64_t tag, uint64_t *digest)
{
    const uint64_t *d = sg_u64map_get(&ix->tags, tag);
    if (!d)
        d = sg_u64map_get(&ix->kept[0].tags, tag);
    if (!d)
        d = sg_u64map_get(&ix->kept[1].tags, tag);
    if (d)
        *digest = *d;
    return d != NULL;
}

static bool repo_known(const sg_index *ix, uint64_t repo)
{
    return sg_u64set_has(&ix->repos, repo) || sg_u64set_has(&ix->kept[0].repos, repo) ||
           sg_u64set_has(&ix->kept[1].repos, repo);
}

static sg_kind classify_docker(const sg_index *ix, const sg_ledger *l, const sg_event *e,
                               sg_reason *why)
{
    uint64_t tag = sg_hash_docker_tag(e->source, e->job, e->tag), digest = digest_hash(e->digest);
    uint64_t known;
    bool indexed = tag_known(ix, tag, &known);
    /* no digest on either side: the tag alone decides (Igor posts a cached
     * tag again only when it read a new digest) */
    if (indexed && (!digest || !known || digest == known)) {
        *why = SG_REASON_DOCKER_TAG;
        return SG_KIND_REPLAY;
    }
    const uint64_t *accepted = sg_u64map_get(&l->tags, tag);
    if (accepted && (!digest || !*accepted || digest == *accepted)) {
        *why = SG_REASON_LEDGER;
        return SG_KIND_REPLAY;
    }
    if (indexed || accepted) {
        *why = SG_REASON_DOCKER_DIGEST;
        return SG_KIND_NEW;
    }
    uint64_t repo = sg_hash_job(e->source, e->job);
    if (repo_known(ix, repo) || sg_u64set_has(&l->jobs, repo)) {
        *why = SG_REASON_DOCKER_NEW_TAG;
        return SG_KIND_NEW;
    }
    *why = SG_REASON_DOCKER_UNKNOWN;
    return SG_KIND_UNKNOWN;
}

void sg_ledger_init(sg_ledger *l)
{
    memset(l, 0, sizeof *l);
    sg_u64map_init(&l->tags, sizeof(uint64_t));
}

void sg_ledger_close(sg_ledger *l)
{
    sg_u64set_clear(&l->jobs);
    sg_u64map_clear(&l->tags);
}

void sg_ledger_add_tag(sg_ledger *l, const char *account, const char *repository, const char *tag,
                       const char *digest)
{
    bool created;
    uint64_t *d = sg_u64map_put(&l->tags, sg_hash_docker_tag(account, repository, tag), &created);
    *d = digest_hash(digest);
    sg_u64set_add(&l->jobs, sg_hash_job(account, repository));
}

void sg_ledger_add(sg_ledger *l, const char *source, const char *job)
{
    sg_u64set_add(&l->jobs, sg_hash_job(source, job));
}

sg_kind sg_classify(const sg_index *ix, const sg_ledger *l, const sg_event *e, sg_reason *why)
{
    if (e->type == SG_EVENT_DOCKER)
        return classify_docker(ix, l, e, why);
    if (e->type != SG_EVENT_BUILD) {
        *why = SG_REASON_NOT_A_BUILD;
        return SG_KIND_PASSTHROUGH;
    }
    uint64_t build = sg_hash_build(e->source, e->job, e->number);
    uint64_t job = sg_hash_job(e->source, e->job);
    sg_job_facts facts;
    if (job_known(ix, job, &facts)) {
        const sg_job_facts *f = &facts;
        if (build_posted(ix, build)) {
            *why = SG_REASON_POSTED;
            return SG_KIND_REPLAY;
        }
        /* the cursor only advances when the job has no running build, so
         * every build started at or before it was processed (DOMAIN.md 4) */
        if (!e->ci_number_cursor && f->cursor_ms && e->build_ts && e->build_ts <= f->cursor_ms) {
            *why = SG_REASON_CURSOR;
            return SG_KIND_REPLAY;
        }
        if (e->ci_number_cursor && f->last_completed && e->number <= f->last_completed) {
            *why = SG_REASON_NUMBER;
            return SG_KIND_REPLAY;
        }
        *why = SG_REASON_BEYOND;
        return SG_KIND_NEW;
    }
    if (sg_u64set_has(&l->jobs, job)) {
        *why = SG_REASON_LEDGER_JOB;
        return SG_KIND_NEW;
    }
    *why = SG_REASON_UNKNOWN_JOB;
    return SG_KIND_UNKNOWN;
}
