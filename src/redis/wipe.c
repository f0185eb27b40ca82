/* The wipe rules (wipe.h): a check's replies against what the watcher knew.
 *
 * The canary is the proof: a key the watcher itself keeps in the watched
 * database, so its absence means the database lost data, whatever else the
 * server says. Everything else only names the cause. An invalidation with a
 * null key list names no database (FLUSHDB of another one sends it too) and a
 * replica loading a dataset sends it as well, so it triggers a check but never
 * decides one; DBSIZE goes into the detail only, because a poller's own keys
 * may be few or many. The key sample covers what the canary cannot see: the
 * poller's keys deleted one by one (eviction, a runbook's SCAN | DEL). */
#include "stormguard/redis/wipe.h"

#include <stdio.h>
#include <string.h>

const char *sg_wipe_cause_name(sg_wipe_cause c)
{
    switch (c) {
    case SG_WIPE_FLUSH:
        return "flush";
    case SG_WIPE_RESTART:
        return "restart";
    case SG_WIPE_FAILOVER:
        return "failover";
    case SG_WIPE_KEYS:
        return "keys";
    }
    return "unknown";
}

/* "role master -> slave, master_replid 1a2b.. -> 3c4d..": what changed in
 * replication on the same server; false if nothing did. */
static bool replication_change(const sg_wipe_known *k, const sg_wipe_obs *o, char *buf, size_t size)
{
    bool role = strcmp(k->role, o->role) != 0;
    bool replid = strcmp(k->master_replid, o->master_replid) != 0;
    if (!role && !replid)
        return false;
    int n = 0;
    if (role)
        n = snprintf(buf, size, "role %s -> %s", k->role, o->role);
    if (replid && n >= 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n, "%smaster_replid %.12s -> %.12s", role ? ", " : "",
                 k->master_replid, o->master_replid);
    return true;
}

/* What changed about the server since the last good check that could
 * explain lost data: a restart (a new run_id, the server no older than our
 * last look at the old one), another server at the address (a new run_id
 * otherwise), a failover (a new role, or a replica following another
 * master), or, with no check of this server yet, a Cluster master that took
 * over the slots a predecessor served. what names it; -1 if none did. */
static int server_change(const sg_wipe_known *k, const sg_wipe_obs *o, char *what, size_t size)
{
    if (!k->run_id) {
        if (!k->predecessor)
            return -1;
        snprintf(what, size, "failover: %s took over from %s (run_id %.12s, up %lld s, %s)",
                 k->address, k->predecessor, o->run_id, (long long)o->uptime_s, o->role);
        return SG_WIPE_FAILOVER;
    }
    if (strcmp(k->run_id, o->run_id)) {
        long long away_s = (long long)((o->now_ms - k->checked_at_ms) / 1000);
        if (o->uptime_s >= 0 && o->uptime_s <= away_s + 1) {
            snprintf(what, size, "redis restarted (run_id %.12s -> %.12s, up %lld s)", k->run_id,
                     o->run_id, (long long)o->uptime_s);
            return SG_WIPE_RESTART;
        }
        snprintf(what, size, "another server answers at %s (run_id %.12s -> %.12s, up %lld s, %s)",
                 k->address, k->run_id, o->run_id, (long long)o->uptime_s, o->role);
        return SG_WIPE_FAILOVER;
    }
    /* A master that only got a new master_replid started a replication
     * history: Redis does that when it creates a backlog for a replica (or
     * for a snapshot with --method sync) and when it frees an idle one. */
    char change[256];
    if (replication_change(k, o, change, sizeof change) &&
        (strcmp(k->role, o->role) || strcmp(o->role, "master"))) {
        snprintf(what, size, "failover (%s)", change);
        return SG_WIPE_FAILOVER;
    }
    return -1;
}

/* Names what made the canary vanish: a change of the server, else a flush
 * worded by what made the check run. */
static sg_wipe_cause canary_cause(const sg_wipe_known *k, const sg_wipe_obs *o, char *what,
                                  size_t size)
{
    int change = server_change(k, o, what, size);
    if (change >= 0)
        return (sg_wipe_cause)change;
    switch (o->trigger) {
    case SG_WIPE_TRIGGER_FLUSH:
        snprintf(what, size, "FLUSHALL/FLUSHDB");
        break;
    case SG_WIPE_TRIGGER_CANARY:
        snprintf(what, size, "FLUSHALL/FLUSHDB or a deletion of the canary");
        break;
    case SG_WIPE_TRIGGER_FIRST:
        snprintf(what, size, "FLUSHALL/FLUSHDB while the watcher was reconnecting (same run_id)");
        break;
    case SG_WIPE_TRIGGER_TIMER:
        snprintf(what, size, "FLUSHALL/FLUSHDB (found by the periodic check)");
        break;
    }
    return SG_WIPE_FLUSH;
}

/* Changes of the server worth a log line whether or not they cost data; a
 * restart or failover the data survived is also told in kept. */
static void note_changes(const sg_wipe_known *k, const sg_wipe_obs *o, sg_wipe_result *out)
{
    char change[256], what[512];
    out->note[0] = '\0';
    out->kept = false;
    int c;
    if (out->verdict == SG_VERDICT_INTACT && o->canary &&
        (c = server_change(k, o, what, sizeof what)) >= 0) {
        out->kept = true;
        out->kept_cause = (sg_wipe_cause)c;
        snprintf(out->note, sizeof out->note, "%.480s, canary kept: data survived", what);
        return;
    }
    if (!k->run_id)
        return;
    const char *canary = o->canary ? "kept: data survived" : "absent";
    if (strcmp(k->run_id, o->run_id))
        snprintf(out->note, sizeof out->note, "new run_id %.12s (was %.12s), canary %s", o->run_id,
                 k->run_id, canary);
    else if (replication_change(k, o, change, sizeof change))
        snprintf(out->note, sizeof out->note, "%s, canary %s", change, canary);
}

void sg_wipe_judge(const sg_wipe_known *k, const sg_wipe_obs *o, sg_wipe_result *out)
{
    out->verdict = SG_VERDICT_INTACT;
    out->detail[0] = '\0';
    if (!o->canary && k->canary_seen) {
        char what[512];
        out->cause = canary_cause(k, o, what, sizeof what);
        snprintf(out->detail, sizeof out->detail, "%s: canary %s gone, dbsize %lld", what,
                 k->canary, (long long)o->dbsize);
        out->verdict = SG_VERDICT_WIPED;
    } else if (!o->canary) {
        out->verdict = SG_VERDICT_UNARMED;
    } else if (o->sample_n && o->sample_gen == k->sample_gen) {
        /* A sample replaced while the check was out was not what it asked about. */
        long long missing = (long long)o->sample_n - (long long)o->sample_present;
        if (missing * 2 >= (long long)o->sample_n) {
            out->cause = SG_WIPE_KEYS;
            snprintf(out->detail, sizeof out->detail,
                     "%lld of %zu sampled keys%s%s%s gone, canary %s present, dbsize %lld", missing,
                     o->sample_n, k->count_pattern ? " (" : "",
                     k->count_pattern ? k->count_pattern : "", k->count_pattern ? ")" : "",
                     k->canary, (long long)o->dbsize);
            out->verdict = SG_VERDICT_WIPED;
        }
    }
    note_changes(k, o, out);
}
