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
    default:
        return "";
    }
}

void sg_index_init(sg_index *ix)
{
    memset(ix, 0, sizeof *ix);
    sg_u64map_init(&ix->jobs, sizeof(sg_job_facts));
}

void sg_index_close(sg_index *ix)
{
    sg_u64map_clear(&ix->jobs);
    sg_u64set_clear(&ix->posted);
}

void sg_index_inherit(sg_index *ix, const sg_index *older)
{
    for (size_t i = 0; i < older->jobs.cap; i++) {
        uint64_t h = older->jobs.keys[i];
        if (!h)
            continue;
        const sg_job_facts *old = (const void *)(older->jobs.vals + i * older->jobs.val_size);
        bool created;
        sg_job_facts *now = sg_u64map_put(&ix->jobs, h, &created);
        /* a fact the newer lacks (the cursor key gone, its markers kept) */
        if (!now->cursor_ms)
            now->cursor_ms = old->cursor_ms;
        if (!now->last_completed)
            now->last_completed = old->last_completed;
    }
    for (size_t i = 0; i < older->posted.cap; i++)
        if (older->posted.slots[i])
            sg_u64set_add(&ix->posted, older->posted.slots[i]);
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

void sg_ledger_init(sg_ledger *l)
{
    memset(l, 0, sizeof *l);
}

void sg_ledger_close(sg_ledger *l)
{
    sg_u64set_clear(&l->jobs);
}

void sg_ledger_add(sg_ledger *l, const char *source, const char *job)
{
    sg_u64set_add(&l->jobs, sg_hash_job(source, job));
}

sg_kind sg_classify(const sg_index *ix, const sg_ledger *l, const sg_event *e, sg_reason *why)
{
    if (e->type != SG_EVENT_BUILD) {
        *why = SG_REASON_NOT_A_BUILD;
        return SG_KIND_PASSTHROUGH;
    }
    uint64_t build = sg_hash_build(e->source, e->job, e->number);
    uint64_t job = sg_hash_job(e->source, e->job);
    const sg_job_facts *f = sg_u64map_get(&ix->jobs, job);
    if (f) {
        if (sg_u64set_has(&ix->posted, build)) {
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
