/* Scenario files (scenario.h). Each object is read against the list of the
 * fields it may have: a field is checked as it is read, and a field that
 * is not on the list is an error naming it. */
#include "stormguard/sim/scenario.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/base/util.h"

#define MAX_JOBS 1000000
#define MAX_HISTORY 1000
/* No duration a scenario holds needs more: the run keeps a value per
 * simulated minute for each defence, and a typo such as "90d" for "90s"
 * must be an error, not an exhausted memory. */
#define MAX_DURATION_MS (INT64_C(30) * 86400 * 1000)

typedef struct reader {
    const char *path;
    sg_error *err;
    int rc;
} reader;

static int bad(reader *r, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(reader *r, const char *where, const char *fmt, ...)
{
    if (r->rc)
        return r->rc;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->rc = sg_error_set(r->err, SG_EUSAGE, "%s: %s: %s", r->path, where, msg);
    return r->rc;
}

/* Fails on any member of o not named in known (NULL-terminated). */
static void only(reader *r, json_t *o, const char *where, const char *const *known)
{
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        bool ok = false;
        for (const char *const *k = known; *k && !ok; k++)
            ok = !strcmp(*k, key);
        if (!ok) {
            char at[256];
            snprintf(at, sizeof at, "%s%s%s", where, *where ? "." : "", key);
            bad(r, at, "unknown field (see simulations/README.md)");
            return;
        }
    }
}

static void at(char *buf, size_t size, const char *where, const char *key)
{
    snprintf(buf, size, "%s%s%s", where, *where ? "." : "", key);
}

static char *str_field(reader *r, json_t *o, const char *where, const char *key, bool required,
                       const char *def)
{
    char w[256];
    at(w, sizeof w, where, key);
    json_t *v = json_object_get(o, key);
    if (!v) {
        if (required)
            bad(r, w, "missing");
        return def ? sg_xstrdup(def) : NULL;
    }
    if (!json_is_string(v) || !json_string_length(v)) {
        bad(r, w, "must be a non-empty string");
        return NULL;
    }
    return sg_xstrdup(json_string_value(v));
}

static int64_t int_field(reader *r, json_t *o, const char *where, const char *key, int64_t min,
                         int64_t max, int64_t def)
{
    char w[256];
    at(w, sizeof w, where, key);
    json_t *v = json_object_get(o, key);
    if (!v)
        return def;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        bad(r, w, "must be a whole number from %lld to %lld", (long long)min, (long long)max);
        return def;
    }
    return json_integer_value(v);
}

static double real_field(reader *r, json_t *o, const char *where, const char *key, double min,
                         double max, double def)
{
    char w[256];
    at(w, sizeof w, where, key);
    json_t *v = json_object_get(o, key);
    if (!v)
        return def;
    if (!json_is_number(v) || json_number_value(v) < min || json_number_value(v) > max) {
        bad(r, w, "must be a number from %g to %g", min, max);
        return def;
    }
    return json_number_value(v);
}

static bool bool_field(reader *r, json_t *o, const char *where, const char *key, bool def)
{
    char w[256];
    at(w, sizeof w, where, key);
    json_t *v = json_object_get(o, key);
    if (!v)
        return def;
    if (!json_is_boolean(v)) {
        bad(r, w, "must be true or false");
        return def;
    }
    return json_is_true(v);
}

/* A duration in ms; with off_ok, "off" gives -1. */
static int64_t duration_field(reader *r, json_t *o, const char *where, const char *key,
                              bool required, bool off_ok, int64_t min_ms, int64_t def)
{
    char w[256];
    at(w, sizeof w, where, key);
    json_t *v = json_object_get(o, key);
    if (!v) {
        if (required)
            bad(r, w, "missing");
        return def;
    }
    const char *s = json_string_value(v);
    if (off_ok && s && !strcmp(s, "off"))
        return -1;
    int64_t ms;
    if (!s || sg_parse_duration_ms(s, &ms)) {
        bad(r, w, "must be a duration such as \"250ms\", \"90s\", \"15m\" or \"2h\"%s",
            off_ok ? ", or \"off\"" : "");
        return def;
    }
    if (ms < min_ms) {
        bad(r, w, "must be at least %lld ms", (long long)min_ms);
        return def;
    }
    if (ms > MAX_DURATION_MS) {
        bad(r, w, "must be at most 30 days (\"30d\")");
        return def;
    }
    return ms;
}

static json_t *object_field(reader *r, json_t *o, const char *where, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (v && !json_is_object(v)) {
        char w[256];
        at(w, sizeof w, where, key);
        bad(r, w, "must be an object");
        return NULL;
    }
    return v;
}

static json_t *array_field(reader *r, json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (v && !json_is_array(v)) {
        bad(r, key, "must be an array");
        return NULL;
    }
    return v;
}

static void read_igor(reader *r, json_t *o, sg_scenario *s)
{
    static const char *const known[] = {"poll_interval",
                                        "item_upper_threshold",
                                        "handle_first_builds",
                                        "look_back_window",
                                        "post_latency",
                                        "docker_poll_interval",
                                        NULL};
    s->igor.poll_interval_ms = 60000;
    s->igor.item_upper_threshold = 1000;
    s->igor.handle_first_builds = true;
    s->igor.look_back_window_ms = -1;
    s->igor.post_latency_ms = 50;
    s->igor.docker_poll_interval_ms = 60000;
    if (!o)
        return;
    only(r, o, "igor", known);
    s->igor.poll_interval_ms =
        duration_field(r, o, "igor", "poll_interval", false, false, 1000, 60000);
    s->igor.item_upper_threshold =
        int_field(r, o, "igor", "item_upper_threshold", 0, INT32_MAX, 1000);
    s->igor.handle_first_builds = bool_field(r, o, "igor", "handle_first_builds", true);
    s->igor.look_back_window_ms =
        duration_field(r, o, "igor", "look_back_window", false, true, 0, -1);
    s->igor.post_latency_ms = duration_field(r, o, "igor", "post_latency", false, false, 1, 50);
    s->igor.docker_poll_interval_ms =
        duration_field(r, o, "igor", "docker_poll_interval", false, false, 1000, 60000);
}

static void read_nginx(reader *r, json_t *o, sg_scenario *s)
{
    static const char *const known[] = {"rate", "burst", NULL};
    s->nginx.rate = 10;
    s->nginx.burst = 20;
    if (!o)
        return;
    only(r, o, "nginx", known);
    json_t *rate = json_object_get(o, "rate");
    if (rate) {
        /* nginx's own notation: "10r/s" or "600r/m" */
        const char *t = json_string_value(rate);
        char *end = NULL;
        double v = t ? strtod(t, &end) : 0;
        double per = end && !strcmp(end, "r/s") ? 1 : end && !strcmp(end, "r/m") ? 60 : 0;
        if (!t || !per || !(v > 0) || !isfinite(v))
            bad(r, "nginx.rate", "must be a rate as nginx writes it: \"10r/s\" or \"600r/m\"");
        else
            s->nginx.rate = v / per;
    }
    s->nginx.burst = int_field(r, o, "nginx", "burst", 0, 1000000, 20);
}

static void read_masters(reader *r, json_t *a, sg_scenario *s)
{
    static const char *const known[] = {
        "name",         "jobs",         "history",           "build_every", "build_duration",
        "success_rate", "out_of_order", "pipelines_per_job", NULL};
    s->nmasters = a ? json_array_size(a) : 0;
    s->masters = sg_xcalloc(s->nmasters ? s->nmasters : 1, sizeof *s->masters);
    for (size_t i = 0; i < s->nmasters && !r->rc; i++) {
        char w[64];
        snprintf(w, sizeof w, "masters[%zu]", i);
        json_t *o = json_array_get(a, i);
        if (!json_is_object(o)) {
            bad(r, w, "must be an object");
            return;
        }
        only(r, o, w, known);
        sg_sim_master *m = &s->masters[i];
        m->name = str_field(r, o, w, "name", true, NULL);
        m->jobs = int_field(r, o, w, "jobs", 0, MAX_JOBS, 0);
        m->history = int_field(r, o, w, "history", 0, MAX_HISTORY, 0);
        m->build_every_ms = duration_field(r, o, w, "build_every", false, false, 0, 0);
        m->build_duration_ms =
            duration_field(r, o, w, "build_duration", false, false, 1000, 360000);
        m->success_rate = real_field(r, o, w, "success_rate", 0, 1, 1);
        m->out_of_order = real_field(r, o, w, "out_of_order", 0, 1, 0);
        m->pipelines_per_job = int_field(r, o, w, "pipelines_per_job", 0, 100, 1);
        for (size_t k = 0; k < i && m->name && !r->rc; k++)
            if (s->masters[k].name && !strcmp(s->masters[k].name, m->name))
                bad(r, w, "name \"%s\" is taken by masters[%zu]", m->name, k);
    }
}

static void read_accounts(reader *r, json_t *a, sg_scenario *s)
{
    static const char *const known[] = {"name",       "repositories",       "tags",
                                        "push_every", "pipelines_per_repo", NULL};
    s->naccounts = a ? json_array_size(a) : 0;
    s->accounts = sg_xcalloc(s->naccounts ? s->naccounts : 1, sizeof *s->accounts);
    for (size_t i = 0; i < s->naccounts && !r->rc; i++) {
        char w[64];
        snprintf(w, sizeof w, "docker[%zu]", i);
        json_t *o = json_array_get(a, i);
        if (!json_is_object(o)) {
            bad(r, w, "must be an object");
            return;
        }
        only(r, o, w, known);
        sg_sim_account *d = &s->accounts[i];
        d->name = str_field(r, o, w, "name", true, NULL);
        d->repositories = int_field(r, o, w, "repositories", 0, MAX_JOBS, 0);
        d->tags = int_field(r, o, w, "tags", 0, MAX_HISTORY, 0);
        d->push_every_ms = duration_field(r, o, w, "push_every", false, false, 0, 0);
        d->pipelines_per_repo = int_field(r, o, w, "pipelines_per_repo", 0, 100, 1);
    }
}

static void read_faults(reader *r, json_t *a, sg_scenario *s)
{
    static const char *const known[] = {"at", "kind", "fraction", NULL};
    static const char *const kinds[] = {"flushall", "flushdb",        "restart", "failover_empty",
                                        "evict",    "delete_pattern", "park",    NULL};
    s->nfaults = a ? json_array_size(a) : 0;
    s->faults = sg_xcalloc(s->nfaults ? s->nfaults : 1, sizeof *s->faults);
    for (size_t i = 0; i < s->nfaults && !r->rc; i++) {
        char w[64];
        snprintf(w, sizeof w, "faults[%zu]", i);
        json_t *o = json_array_get(a, i);
        if (!json_is_object(o)) {
            bad(r, w, "must be an object");
            return;
        }
        only(r, o, w, known);
        sg_sim_fault *f = &s->faults[i];
        f->at_ms = duration_field(r, o, w, "at", true, false, 0, 0);
        char *kind = str_field(r, o, w, "kind", true, NULL);
        int k = -1;
        for (int j = 0; kind && kinds[j]; j++)
            if (!strcmp(kinds[j], kind))
                k = j;
        if (kind && k < 0) {
            char ww[80];
            snprintf(ww, sizeof ww, "%s.kind", w);
            bad(r, ww,
                "\"%s\" is not one of flushall, flushdb, restart, failover_empty, evict, "
                "delete_pattern, park",
                kind);
        }
        free(kind);
        f->kind = k < 0 ? SG_SIM_FLUSHALL : (sg_sim_fault_kind)k;
        bool needs = f->kind == SG_SIM_EVICT || f->kind == SG_SIM_PARK;
        f->fraction = real_field(r, o, w, "fraction", 0, 1, needs ? -1 : 1);
        if (needs && f->fraction < 0) {
            char ww[80];
            snprintf(ww, sizeof ww, "%s.fraction", w);
            bad(r, ww,
                "missing: %s needs the share of keys (evict) or of Clouddriver's first read (park)",
                f->kind == SG_SIM_EVICT ? "evict" : "park");
        }
    }
}

static void read_changes(reader *r, json_t *a, sg_scenario *s)
{
    static const char *const known[] = {"at", "kind", "master", "count", "history", "value", NULL};
    s->nchanges = a ? json_array_size(a) : 0;
    s->changes = sg_xcalloc(s->nchanges ? s->nchanges : 1, sizeof *s->changes);
    for (size_t i = 0; i < s->nchanges && !r->rc; i++) {
        char w[64];
        snprintf(w, sizeof w, "changes[%zu]", i);
        json_t *o = json_array_get(a, i);
        if (!json_is_object(o)) {
            bad(r, w, "must be an object");
            return;
        }
        only(r, o, w, known);
        sg_sim_change *c = &s->changes[i];
        c->at_ms = duration_field(r, o, w, "at", true, false, 0, 0);
        char *kind = str_field(r, o, w, "kind", true, NULL);
        char ww[80];
        snprintf(ww, sizeof ww, "%s.kind", w);
        if (kind && !strcmp(kind, "new_jobs")) {
            c->kind = SG_SIM_NEW_JOBS;
            c->master = str_field(r, o, w, "master", true, NULL);
            c->count = int_field(r, o, w, "count", 1, MAX_JOBS, 1);
            c->history = int_field(r, o, w, "history", 0, MAX_HISTORY, 0);
            bool found = false;
            for (size_t k = 0; k < s->nmasters && c->master; k++)
                found = found || (s->masters[k].name && !strcmp(s->masters[k].name, c->master));
            if (c->master && !found) {
                char wm[80];
                snprintf(wm, sizeof wm, "%s.master", w);
                bad(r, wm, "no master is named \"%s\"", c->master);
            }
        } else if (kind && !strcmp(kind, "set_threshold")) {
            c->kind = SG_SIM_SET_THRESHOLD;
            c->value = int_field(r, o, w, "value", 0, INT32_MAX, -1);
            if (c->value < 0) {
                char wv[80];
                snprintf(wv, sizeof wv, "%s.value", w);
                bad(r, wv, "missing: the new item_upper_threshold");
            }
        } else if (kind) {
            bad(r, ww, "\"%s\" is not one of new_jobs, set_threshold", kind);
        }
        free(kind);
    }
}

static void read_stormguard(reader *r, json_t *o, sg_scenario *s)
{
    static const char *const known[] = {"starts_at", "rewarm", "snapshot_interval", NULL};
    s->stormguard.snapshot_interval_ms = 60000;
    if (!o)
        return;
    only(r, o, "stormguard", known);
    s->stormguard.starts_at_ms =
        duration_field(r, o, "stormguard", "starts_at", false, false, 0, 0);
    s->stormguard.rewarm = bool_field(r, o, "stormguard", "rewarm", false);
    s->stormguard.snapshot_interval_ms =
        duration_field(r, o, "stormguard", "snapshot_interval", false, false, 1000, 60000);
}

static void read_operator(reader *r, json_t *o, sg_scenario *s)
{
    static const char *const known[] = {"reacts_after", "action", NULL};
    s->operator_.reacts_after_ms = 15 * 60000;
    s->operator_.action = SG_SIM_RELEASE_NEWEST;
    if (!o)
        return;
    only(r, o, "operator", known);
    s->operator_.reacts_after_ms =
        duration_field(r, o, "operator", "reacts_after", false, false, 0, 15 * 60000);
    char *a = str_field(r, o, "operator", "action", false, "release-newest");
    if (a && !strcmp(a, "release-newest"))
        s->operator_.action = SG_SIM_RELEASE_NEWEST;
    else if (a && !strcmp(a, "drop"))
        s->operator_.action = SG_SIM_DROP;
    else if (a && !strcmp(a, "none"))
        s->operator_.action = SG_SIM_NONE;
    else if (a)
        bad(r, "operator.action", "\"%s\" is not one of release-newest, drop, none", a);
    free(a);
}

int sg_scenario_parse(const char *text, size_t len, const char *path, sg_scenario *out,
                      sg_error *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return sg_error_set(err, SG_EUSAGE, "%s: invalid JSON at line %d column %d: %s", path,
                            jerr.line, jerr.column, jerr.text);
    reader r = {.path = path, .err = err};
    sg_scenario s;
    memset(&s, 0, sizeof s);
    if (!json_is_object(root)) {
        bad(&r, "the document", "must be an object");
    } else {
        static const char *const known[] = {
            "name",   "about",  "seed",    "duration",   "igor",     "nginx", "masters",
            "docker", "faults", "changes", "stormguard", "operator", NULL};
        only(&r, root, "", known);
        s.name = str_field(&r, root, "", "name", true, NULL);
        s.about = str_field(&r, root, "", "about", false, "");
        s.seed = (uint64_t)int_field(&r, root, "", "seed", 0, INT64_MAX, 1);
        s.duration_ms = duration_field(&r, root, "", "duration", true, false, 1000, 0);
        read_igor(&r, object_field(&r, root, "", "igor"), &s);
        read_nginx(&r, object_field(&r, root, "", "nginx"), &s);
        read_masters(&r, array_field(&r, root, "masters"), &s);
        read_accounts(&r, array_field(&r, root, "docker"), &s);
        read_faults(&r, array_field(&r, root, "faults"), &s);
        read_changes(&r, array_field(&r, root, "changes"), &s);
        read_stormguard(&r, object_field(&r, root, "", "stormguard"), &s);
        read_operator(&r, object_field(&r, root, "", "operator"), &s);
        if (!r.rc && !s.nmasters && !s.naccounts)
            bad(&r, "masters", "a scenario needs a Jenkins master or a Docker account");
        for (size_t i = 0; i < s.nfaults && !r.rc; i++)
            if (s.faults[i].at_ms > s.duration_ms)
                bad(&r, "faults", "faults[%zu] is at %lld s, after the end (duration)", i,
                    (long long)(s.faults[i].at_ms / 1000));
    }
    json_decref(root);
    if (r.rc) {
        sg_scenario_close(&s);
        return r.rc;
    }
    *out = s;
    return 0;
}

int sg_scenario_load(const char *path, sg_scenario *out, sg_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sg_error_set(err, SG_EUSAGE, "reading scenario %s: %s", path, strerror(errno));
    sg_buf b = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        sg_buf_append(&b, chunk, n);
    bool failed = ferror(f);
    fclose(f);
    if (failed) {
        sg_buf_free(&b);
        return sg_error_set(err, SG_EUSAGE, "reading scenario %s: read error", path);
    }
    int rc = sg_scenario_parse(b.p ? b.p : "", b.len, path, out, err);
    sg_buf_free(&b);
    return rc;
}

void sg_scenario_close(sg_scenario *s)
{
    free(s->name);
    free(s->about);
    for (size_t i = 0; i < s->nmasters; i++)
        free(s->masters[i].name);
    free(s->masters);
    for (size_t i = 0; i < s->naccounts; i++)
        free(s->accounts[i].name);
    free(s->accounts);
    free(s->faults);
    for (size_t i = 0; i < s->nchanges; i++)
        free(s->changes[i].master);
    free(s->changes);
    memset(s, 0, sizeof *s);
}
