/* Profiles name the key families of a poller's Redis cache and decode them
 * into build indices. Pure functions: no I/O; key names and DUMP payloads
 * come in as bytes, index rows go out to a callback. The Igor key formats
 * are in DOMAIN.md section 2. */
#ifndef STORMGUARD_PROFILE_H
#define STORMGUARD_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stormguard/base/error.h"
#include "stormguard/base/util.h"

typedef enum sg_profile_kind {
    SG_PROFILE_NONE = 0, /* no key families: only --match patterns */
    SG_PROFILE_IGOR,
} sg_profile_kind;

/* Parses "igor" or "none". */
int sg_profile_kind_parse(const char *name, sg_profile_kind *out);
const char *sg_profile_kind_name(sg_profile_kind kind);

typedef enum sg_key_family {
    SG_KEY_OTHER = 0,      /* under the prefix but not a family we decode */
    SG_KEY_JENKINS_CURSOR, /* igor:<master>:<JOB>:<job> hash */
    SG_KEY_JENKINS_POSTED, /* ...:lastPollCycleTimestamp:<cursor> hash */
    SG_KEY_CI_COMPLETED,   /* igor:builds:completed:<master>:<JOB>:<job> string */
    SG_KEY_CI_RUNNING,     /* igor:builds:running:... string */
    SG_KEY_CI_TRACK,       /* igor:builds:track:...:<buildId> string */
    SG_KEY_DOCKER_TAG,     /* igor:dockerRegistry:v2:<account>:<repo>:<tag> hash */
} sg_key_family;

/* What a key name says. Slices point into the key passed to the parser. */
typedef struct sg_igor_key {
    sg_key_family family;
    sg_slice source; /* Jenkins/Travis master, or Docker account */
    sg_slice job;    /* job as written (not upper-cased); Docker: repository */
    sg_slice tag;    /* Docker tag */
    int64_t marker;  /* posted marker's cursor; Travis tracking build id */
} sg_igor_key;

/* Classifies key (binary, len bytes) for the Igor profile with the given
 * prefix (default "igor"). Returns 0 and fills out when the key is under the
 * prefix (family may be SG_KEY_OTHER); SG_ENOTFOUND when it is not. */
int sg_igor_parse_key(const char *prefix, const char *key, size_t len, sg_igor_key *out);

/* Splits "<JOB>:<job>" (Igor's upper-cased copy, ':' and the job) into the
 * job. Prefers the split where the left part is the upper-case of the right,
 * comparing code point by code point (ASCII case-folded; other code points
 * must only be present on both sides). Returns false if no split fits. */
bool sg_igor_split_job(const char *s, size_t len, sg_slice *job);

/* Parses a decimal build number or epoch-ms field value. */
bool sg_parse_slice_int64(sg_slice s, int64_t *out);

/* The SCAN MATCH pattern that selects every key of the profile ("igor:*");
 * caller frees. NULL for SG_PROFILE_NONE. */
char *sg_profile_pattern(sg_profile_kind kind, const char *prefix);

/* Jenkins cursor hash field (DOMAIN.md section 2). */
#define SG_IGOR_CURSOR_FIELD "lastPollCycleTimestamp"

/* One row of a build index (DESIGN.md, Data model), decoded from the value
 * of an Igor key. family is the key's and says what number is: a Jenkins
 * job's cursor (SG_KEY_JENKINS_CURSOR: epoch ms), one posted build of a
 * Jenkins job (SG_KEY_JENKINS_POSTED: its number), a Travis/GitLab job's
 * last completed or running build (SG_KEY_CI_COMPLETED, SG_KEY_CI_RUNNING:
 * its number); for a Docker tag (SG_KEY_DOCKER_TAG) digest is set and
 * number is 0. source, job and tag are the key's slices (sg_igor_key). */
typedef struct sg_igor_row {
    sg_key_family family;
    sg_slice source, job, tag;
    int64_t number;
    sg_slice digest;
} sg_igor_row;

/* Takes one decoded row; row and the bytes its slices point to are valid
 * during the call only. A nonzero return stops the decoding. */
typedef int (*sg_igor_row_fn)(void *ud, const sg_igor_row *row, sg_error *err);

/* Decodes the build-index rows of an Igor key, k as sg_igor_parse_key filled
 * it, from the key's DUMP payload (len bytes, trailer included): a cursor's
 * SG_IGOR_CURSOR_FIELD, a marker hash's numeric fields, a Travis/GitLab
 * number, a Docker tag's "digest" field, whichever encoding Redis wrote
 * (hash table, listpack or ziplist hashes; raw, integer or LZF strings).
 * Calls fn(ud, row, err) for each row in payload order. Returns fn's first
 * nonzero return, or 0 and sets *undecoded: true when the value is not what
 * the family holds (another type, a malformed payload, no field that counts;
 * rows before a malformed part have been given all the same). Families
 * without index rows (SG_KEY_OTHER, SG_KEY_CI_TRACK) give none and are not
 * undecoded. The payload's CRC64 is not checked. */
int sg_igor_decode(const sg_igor_key *k, const void *payload, size_t len, sg_igor_row_fn fn,
                   void *ud, bool *undecoded, sg_error *err);

#endif
