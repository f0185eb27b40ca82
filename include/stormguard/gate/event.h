/* Turning a request body into an event (DOMAIN.md section 3): an Igor build
 * event, a Jenkins Notification plugin event, or a generic event whose fields
 * JSON pointers name. Anything else passes through untouched and is never
 * classified. Pure: no I/O. */
#ifndef STORMGUARD_EVENT_H
#define STORMGUARD_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stormguard/base/error.h"

/* Longest source (master) or job name a build event may carry, in bytes.
 * Jenkins' own names are far shorter (a folder path of a few hundred
 * bytes at most); a longer one is not a build the notifier could match. */
#define SG_EVENT_NAME_MAX 1024

typedef enum sg_event_type {
    SG_EVENT_PASSTHROUGH = 0, /* not a completed build: forwarded untouched */
    SG_EVENT_BUILD,           /* a completed build: classified */
    SG_EVENT_DOCKER,          /* a Docker image tag Igor found: classified */
} sg_event_type;

/* JSON pointers (RFC 6901) of a generic build event; all four or none. */
typedef struct sg_event_pointers {
    char *source, *job, *number, *timestamp; /* timestamp may be NULL */
} sg_event_pointers;

typedef struct sg_event_config {
    sg_event_pointers generic;       /* used when source is set */
    const char *notification_source; /* source of Jenkins Notification events */
} sg_event_config;

typedef struct sg_event {
    sg_event_type type;
    const char *shape;     /* "igor", "igor-docker", "jenkins-notification", "generic", "other" */
    char *source;          /* Jenkins/Travis master; Docker: the registry account (owned) */
    char *job;             /* job name as the poller writes it; Docker: the repository (owned) */
    char *tag, *digest;    /* Docker: the tag, its digest (NULL: Igor read none) (owned) */
    char *registry;        /* Docker: the registry host, NULL if not given (owned) */
    int64_t number;        /* build number */
    int64_t build_ts;      /* build start, epoch ms; 0 when unknown */
    int64_t duration_ms;   /* how long it ran (Igor's lastBuild.duration); 0: unknown */
    bool ci_number_cursor; /* Travis/GitLab: replays are numbers <= last completed */
} sg_event;

/* Parses body. build_path says whether the request's path is one where build
 * events arrive: there, invalid JSON is an error (SG_EINVAL, err has the
 * parser's line and column); elsewhere anything unparsable passes through.
 * A build with absurd fields (number <= 0 or > 2^53, a timestamp that is not
 * epoch milliseconds, a source or job name over SG_EVENT_NAME_MAX bytes or
 * with a NUL in it) is SG_EINVAL too. On success *out is filled; release it
 * with sg_event_close. */
int sg_event_parse(const char *body, size_t len, bool build_path, const sg_event_config *cfg,
                   sg_event *out, sg_error *err);
void sg_event_close(sg_event *e);

/* A Docker event's identity in the ledger, its number: (tag, digest) as a
 * number from 1 to 2^53 - 1 (FNV-1a of "tag\0digest", stored, so never to
 * change). With the account as source and the repository as job, the
 * ledger forwards each (account, repository, tag, digest) at most once; a
 * collision within one repository (about 10^-8 among 10,000 tags) would take
 * a re-pushed tag for one seen. */
int64_t sg_docker_identity(const char *tag, const char *digest);
/* The same, always through jansson's tree (sg_event_parse reads most bodies
 * without building one): tests compare the two. */
int sg_event_parse_tree(const char *body, size_t len, bool build_path, const sg_event_config *cfg,
                        sg_event *out, sg_error *err);

#endif
