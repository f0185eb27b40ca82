/* Telling a replay from a new build (DOMAIN.md section 4). The index is the
 * poller's own memory, decoded from the latest good snapshot; the ledger is
 * the gate's memory of the builds it accepted, which survives a Redis wipe:
 * its jobs here, its builds in the store (a second delivery of an accepted
 * build is told by the journal). Both live in memory as keyed hashes
 * (hashset.h). Pure: no I/O. */
#ifndef STORMGUARD_CLASSIFY_H
#define STORMGUARD_CLASSIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "stormguard/gate/event.h"
#include "stormguard/base/hashset.h"

typedef enum sg_kind {
    SG_KIND_PASSTHROUGH = 0, /* not a build event: forwarded untouched */
    SG_KIND_NEW,             /* a known job, a build beyond everything known */
    SG_KIND_REPLAY,          /* announced before: suppressed */
    SG_KIND_UNKNOWN,         /* a job neither the snapshot nor the ledger knows */
} sg_kind;

const char *sg_kind_name(sg_kind k);
int sg_kind_parse(const char *s, sg_kind *out);

/* Per job, from the snapshot's build index. */
typedef struct sg_job_facts {
    int64_t cursor_ms;      /* Jenkins: lastPollCycleTimestamp, 0 if none */
    int64_t last_completed; /* Travis/GitLab: last completed number, 0 if none */
} sg_job_facts;

/* Facts older snapshots had and a newer one lacks: one generation of them
 * (sg_index_inherit). */
typedef struct sg_index_kept {
    sg_u64map jobs;   /* sg_hash_job -> the facts the newer lacked */
    sg_u64set posted; /* markers the newer lacked */
    sg_u64map tags;   /* Docker tags the newer lacked (as sg_index.tags) */
    sg_u64set repos;  /* Docker repositories the newer lacked */
} sg_index_kept;

typedef struct sg_index {
    sg_u64map jobs;   /* sg_hash_job -> sg_job_facts */
    sg_u64set posted; /* sg_hash_build of builds Igor marked POSTED */
    /* Igor's Docker index (igor:dockerRegistry:v2:<account>:<repository>:<tag>,
     * field digest): sg_hash_docker_tag -> sg_hash of the digest, 0 when
     * Igor stored none; and sg_hash_job(account, repository) of its
     * repositories */
    sg_u64map tags;
    sg_u64set repos;
    /* kept[0] began at kept_since_ms (the index's clock), kept[1] is the
     * generation before it */
    sg_index_kept kept[2];
    int64_t kept_since_ms;
    int64_t snapshot_id;
} sg_index;

/* How long a fact lost from the poller's keys stays known: at least this
 * after the last snapshot that had it, at most twice this. Igor re-creates
 * a job's lost keys in its next poll of the job (a minute or two, the
 * replay it then posts being suppressed); the facts must outlive that, and
 * not every build of a year (Igor prunes the markers of a job's older
 * cursors, so an index that kept them all would grow with every build). */
#define SG_INDEX_KEEP_MS (3600 * 1000)

void sg_index_init(sg_index *ix);
void sg_index_close(sg_index *ix);
void sg_index_cursor(sg_index *ix, const char *source, const char *job, int64_t cursor_ms);
void sg_index_completed(sg_index *ix, const char *source, const char *job, int64_t number);
void sg_index_posted(sg_index *ix, const char *source, const char *job, int64_t number);
/* A tag of Igor's Docker index; digest NULL or "" when it stored none. */
void sg_index_docker(sg_index *ix, const char *account, const char *repository, const char *tag,
                     const char *digest);
/* Keeps in ix what older knew and ix does not: the facts of every job ix
 * lacks (its cursor or last completed number, or the whole job), and every
 * posted marker, for SG_INDEX_KEEP_MS (now_ms: the time of ix). A snapshot
 * that misses keys the poller lost (evicted, a pattern deleted by hand, a
 * replay half done: a job's markers without its cursor) must not make its
 * old builds look unknown or new again while the poller re-creates them.
 * What ix knows wins. older is only read (it may be in use meanwhile). */
void sg_index_inherit(sg_index *ix, const sg_index *older, int64_t now_ms);

/* What the classifier knows of the gate's ledger: the jobs of the builds it
 * accepted. The builds themselves are in the store's ledger table, which is
 * the authority on "accepted before": the journal checks it for every build
 * it accepts and journals a second delivery as a replay (journal.h). So the
 * daemon's memory grows with the number of jobs, never with the number of
 * events. */
typedef struct sg_ledger {
    sg_u64set jobs; /* sg_hash_job of every accepted build's job (a Docker repository) */
    /* Docker: sg_hash_docker_tag -> the digest's hash (0: none) of the
     * last accepted event of that tag; the journal keys on (tag, digest),
     * this judges an event without a digest on its tag alone */
    sg_u64map tags;
} sg_ledger;

void sg_ledger_init(sg_ledger *l);
void sg_ledger_close(sg_ledger *l);
void sg_ledger_add(sg_ledger *l, const char *source, const char *job);
/* An accepted Docker event; digest NULL or "" when it had none. */
void sg_ledger_add_tag(sg_ledger *l, const char *account, const char *repository, const char *tag,
                       const char *digest);

/* Why an event got its kind, for the journal and the logs. */
typedef enum sg_reason {
    SG_REASON_NONE = 0,
    SG_REASON_LEDGER,      /* the gate accepted this build before (the journal's verdict) */
    SG_REASON_POSTED,      /* Igor's posted marker names it */
    SG_REASON_CURSOR,      /* started at or before the job's Jenkins cursor */
    SG_REASON_NUMBER,      /* at or below the job's last completed number */
    SG_REASON_BEYOND,      /* known job, beyond everything known */
    SG_REASON_LEDGER_JOB,  /* job in the ledger only: new, but no cursor to tell */
    SG_REASON_UNKNOWN_JOB, /* job in neither snapshot nor ledger */
    SG_REASON_NOT_A_BUILD,
    SG_REASON_AFTER_WIPE,     /* unknown job, but the build ended after the wipe (the gate's) */
    SG_REASON_DOCKER_TAG,     /* Docker: the tag is in the index with this digest (or none said) */
    SG_REASON_DOCKER_DIGEST,  /* Docker: a known tag with another digest: pushed again */
    SG_REASON_DOCKER_NEW_TAG, /* Docker: a new tag of a repository the index or ledger knows */
    SG_REASON_DOCKER_UNKNOWN, /* Docker: a repository neither knows */
} sg_reason;

const char *sg_reason_name(sg_reason r);

/* Classifies e. Never "number <= highest seen" for Jenkins: builds finish out
 * of order, so a long build 101 completing after 102 is genuine. A Docker
 * event (issue rules, DOMAIN.md section 3) is a replay when the index has
 * its (account, repository, tag) with its digest, or the event or the index
 * has no digest (Igor posts a cached tag again only when its digest
 * changed); new when the index has the tag with another digest (a re-pushed
 * tag) or the repository is known (a new tag: the owner makes that unknown
 * in guard or storm mode); unknown otherwise. The ledger's tags judge alike
 * (a tag it accepted with that digest, or with none, or an event without
 * one: a replay; with another: new); its verdict on the exact (tag,
 * digest) also comes from the journal, as for builds. */
sg_kind sg_classify(const sg_index *ix, const sg_ledger *l, const sg_event *e, sg_reason *why);

#endif
