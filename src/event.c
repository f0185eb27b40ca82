/* Request bodies to events (event.h). The shapes are DOMAIN.md section 3:
 *   Igor:    {"details": {"type": "build", ...}, "content": {"master": M,
 *             "project": {"name": J, "lastBuild": {"number": N, "building": B,
 *             "timestamp": "ms"}}, "type"?: "travis"|"gitlab"...}}
 *   Jenkins Notification plugin: {"name": J, "build": {"number": N,
 *             "phase": "COMPLETED"|"FINALIZED"|..., "timestamp": ms}}
 *   generic: four JSON pointers from the configuration. */
#include "stormguard/event.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/util.h"

#define MAX_BUILD_NUMBER (INT64_C(1) << 53) /* beyond this JSON numbers lose precision */
/* epoch ms between 2000-01-01 and 3000-01-01: anything else is not a build time */
#define MIN_EPOCH_MS INT64_C(946684800000)
#define MAX_EPOCH_MS INT64_C(32503680000000)

void sg_event_close(sg_event *e)
{
    free(e->source);
    free(e->job);
    memset(e, 0, sizeof *e);
}

bool sg_json_pointer_valid(const char *p)
{
    if (!p)
        return false;
    if (*p && *p != '/')
        return false;
    for (; *p; p++)
        if (*p == '~' && p[1] != '0' && p[1] != '1')
            return false;
    return true;
}

/* Resolves an RFC 6901 pointer; NULL if any step is missing. */
static json_t *resolve(json_t *root, const char *ptr)
{
    json_t *cur = root;
    const char *p = ptr;
    char token[512];
    while (cur && *p == '/') {
        p++;
        size_t n = 0;
        while (*p && *p != '/') {
            char c = *p++;
            if (c == '~')
                c = *p++ == '1' ? '/' : '~';
            if (n + 1 >= sizeof token)
                return NULL;
            token[n++] = c;
        }
        token[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, token);
        } else if (json_is_array(cur)) {
            char *end;
            unsigned long idx = strtoul(token, &end, 10);
            cur = *token && !*end ? json_array_get(cur, idx) : NULL;
        } else {
            cur = NULL;
        }
    }
    return cur;
}

/* A build number from an integer, or a string of digits. */
static int number_of(json_t *v, int64_t *out)
{
    int64_t n;
    if (json_is_integer(v)) {
        n = json_integer_value(v);
    } else if (json_is_string(v)) {
        if (sg_parse_int64(json_string_value(v), 1, MAX_BUILD_NUMBER, &n))
            return SG_EINVAL;
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d != floor(d) || d < 1 || d > (double)MAX_BUILD_NUMBER)
            return SG_EINVAL;
        n = (int64_t)d;
    } else {
        return SG_EINVAL;
    }
    if (n < 1 || n > MAX_BUILD_NUMBER)
        return SG_EINVAL;
    *out = n;
    return 0;
}

/* A build start time: epoch ms as an integer or a string (Igor sends a string). */
static int timestamp_of(json_t *v, int64_t *out)
{
    int64_t t;
    if (!v || json_is_null(v)) {
        *out = 0;
        return 0;
    }
    if (json_is_integer(v))
        t = json_integer_value(v);
    else if (!json_is_string(v) || sg_parse_int64(json_string_value(v), 0, INT64_MAX, &t))
        return SG_EINVAL;
    if (t < MIN_EPOCH_MS || t > MAX_EPOCH_MS)
        return SG_EINVAL;
    *out = t;
    return 0;
}

static int fill(sg_event *out, const char *shape, const char *source, const char *job,
                json_t *number, json_t *ts, sg_error *err)
{
    if (!source || !*source || !job || !*job)
        return sg_error_set(err, SG_EINVAL, "%s build event without a source or job name", shape);
    if (number_of(number, &out->number))
        return sg_error_set(err, SG_EINVAL,
                            "%s build event for job '%s': build number is not a whole number "
                            "from 1 to 2^53",
                            shape, job);
    if (timestamp_of(ts, &out->build_ts))
        return sg_error_set(err, SG_EINVAL,
                            "%s build event for job '%s': timestamp is not epoch milliseconds",
                            shape, job);
    out->type = SG_EVENT_BUILD;
    out->shape = shape;
    out->source = sg_xstrdup(source);
    out->job = sg_xstrdup(job);
    return 0;
}

/* Igor: details.type == "build". Only completed builds (building false) are
 * classified; Echo ignores the others (DOMAIN.md section 1). */
static int parse_igor(json_t *root, sg_event *out, sg_error *err, bool *matched)
{
    json_t *details = json_object_get(root, "details");
    json_t *type = json_object_get(details, "type");
    if (!json_is_string(type) || strcmp(json_string_value(type), "build"))
        return 0;
    json_t *content = json_object_get(root, "content");
    json_t *project = json_object_get(content, "project");
    json_t *build = json_object_get(project, "lastBuild");
    if (!json_is_object(build))
        return 0;
    *matched = true;
    if (json_is_true(json_object_get(build, "building")))
        return 0; /* still running: pass through */
    json_t *ci = json_object_get(content, "type");
    out->ci_number_cursor = json_is_string(ci) && strcmp(json_string_value(ci), "jenkins");
    return fill(out, "igor", json_string_value(json_object_get(content, "master")),
                json_string_value(json_object_get(project, "name")),
                json_object_get(build, "number"), json_object_get(build, "timestamp"), err);
}

/* "job/a/job/b/" -> "a/b"; NULL if url is not a job URL of that form. */
static char *full_name(const char *url)
{
    if (!url || strncmp(url, "job/", 4))
        return NULL;
    sg_buf b = {0};
    const char *p = url;
    while (!strncmp(p, "job/", 4)) {
        p += 4;
        size_t n = strcspn(p, "/");
        if (n == 0)
            break;
        if (b.len)
            sg_buf_append(&b, "/", 1);
        sg_buf_append(&b, p, n);
        p += n;
        if (*p == '/')
            p++;
    }
    return b.p;
}

/* Jenkins Notification plugin: one build sends QUEUED, STARTED, COMPLETED and
 * FINALIZED; only the last two are a completed build (DOMAIN.md section 3). */
static int parse_notification(json_t *root, const sg_event_config *cfg, sg_event *out,
                              sg_error *err, bool *matched)
{
    json_t *build = json_object_get(root, "build");
    json_t *phase = json_object_get(build, "phase");
    json_t *name = json_object_get(root, "name");
    if (!json_is_string(phase) || !json_is_string(name))
        return 0;
    *matched = true;
    const char *ph = json_string_value(phase);
    if (strcmp(ph, "COMPLETED") && strcmp(ph, "FINALIZED"))
        return 0;
    /* "name" is the job's short name; Igor knows a folder job by its full
     * name, which the job URL spells as job/<a>/job/<b>/ */
    char *full = full_name(json_string_value(json_object_get(root, "url")));
    int rc = fill(out, "jenkins-notification",
                  cfg && cfg->notification_source ? cfg->notification_source : "jenkins",
                  full ? full : json_string_value(name), json_object_get(build, "number"),
                  json_object_get(build, "timestamp"), err);
    free(full);
    return rc;
}

static int parse_generic(json_t *root, const sg_event_config *cfg, sg_event *out, sg_error *err,
                         bool *matched)
{
    const sg_event_pointers *p = &cfg->generic;
    if (!p->source || !p->job || !p->number)
        return 0; /* an incomplete configuration selects nothing */
    json_t *source = resolve(root, p->source), *job = resolve(root, p->job);
    json_t *number = resolve(root, p->number);
    if (!json_is_string(source) || !json_is_string(job) || !number)
        return 0;
    *matched = true;
    return fill(out, "generic", json_string_value(source), json_string_value(job), number,
                p->timestamp ? resolve(root, p->timestamp) : NULL, err);
}

int sg_event_parse(const char *body, size_t len, bool build_path, const sg_event_config *cfg,
                   sg_event *out, sg_error *err)
{
    memset(out, 0, sizeof *out);
    out->shape = "other";
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root) {
        if (!build_path)
            return 0;
        return sg_error_set(err, SG_EINVAL, "invalid JSON at line %d column %d: %s", jerr.line,
                            jerr.column, jerr.text);
    }
    int rc = 0;
    bool matched = false;
    if (json_is_object(root)) {
        rc = parse_igor(root, out, err, &matched);
        if (rc == 0 && !matched)
            rc = parse_notification(root, cfg, out, err, &matched);
        if (rc == 0 && !matched && cfg && cfg->generic.source)
            rc = parse_generic(root, cfg, out, err, &matched);
    }
    json_decref(root);
    if (rc) {
        sg_event_close(out);
        out->shape = "other";
    }
    return rc;
}
