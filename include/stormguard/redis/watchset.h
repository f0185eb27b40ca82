/* What the daemon watches for wipes: one server (standalone, or the master
 * a Sentinel set names) through one watcher (watch.h), or every master of a
 * Redis Cluster through one watcher each. The owner sees one watcher
 * either way: the same callbacks, one report, one stop.
 *
 * A Cluster is found out by the first watcher's first check (redis_mode
 * cluster). The set then reads CLUSTER SLOTS on the thread pool, off the
 * loop, and watches each master with a canary of its own slots
 * ("stormguard:canary{7}", the tag chosen from the slots alone, so the
 * replica that takes a master's place inherits the same canary) and the
 * sample keys of its slots. It reads CLUSTER SLOTS again every few
 * seconds, and every second while a master is down: a master that gave
 * its slots to another (a failover, a resharding) is replaced by a watcher
 * of the new one, which knows the canary it should find (watch.h
 * predecessor). A FLUSHALL on any one master is a wipe that names it; a
 * promoted replica that kept the data is a failover that cost nothing
 * (on_change). DOMAIN.md section 8 has the Cluster facts. */
#ifndef STORMGUARD_WATCHSET_H
#define STORMGUARD_WATCHSET_H

#include <stddef.h>

#include "stormguard/base/error.h"
#include "stormguard/redis/watch.h"

struct uv_loop_s;

typedef struct sg_watchset sg_watchset;

/* As sg_watch_start, with o->node_host, predecessor, on_cluster and
 * on_moved unset (the set's own); o->canary is the base name of every
 * master's canary and may not contain '{' (SG_EUSAGE). on_link tells up
 * once every master is watched and up, down when one goes down, cannot be
 * watched, or CLUSTER SLOTS cannot be read before any master is known,
 * each with its reason. The callbacks run on the loop and may call
 * sg_watchset_set_sample, _report_get and _stop. */
int sg_watchset_start(struct uv_loop_s *loop, const sg_watch_opts *o, sg_wipe_fn on_wipe,
                      sg_link_fn on_link, void *ud, sg_watchset **out, sg_error *err);

/* As sg_watch_set_sample; in a Cluster each master gets the keys of its
 * slots (up to 32 each). */
void sg_watchset_set_sample(sg_watchset *ws, const char *const *keys, size_t n);

/* One report for the whole: for a Cluster the link is up when every master
 * is, armed and tracking when every master is, dbsize, sample and wipes
 * are sums, server is "Redis Cluster, N masters", run_id, role and version
 * are the first master's, last_check_ms the oldest master's. Strings as
 * sg_watch_report_get's. */
void sg_watchset_report_get(const sg_watchset *ws, sg_watch_report *out);

/* The masters watched: 0 unless Redis is a Cluster. */
size_t sg_watchset_masters(const sg_watchset *ws);
/* Master i's report, and the slots it serves ("0-5460"), valid as the
 * report's strings. */
void sg_watchset_master_report(const sg_watchset *ws, size_t i, sg_watch_report *out,
                               const char **slots);

/* As sg_watch_stop, for every watcher of the set. A CLUSTER SLOTS read not
 * yet started is cancelled; one under way is waited for, each node it asks
 * bounded by the connect timeout (masters that are up are asked first). */
void sg_watchset_stop(sg_watchset *ws, void (*done)(void *ud), void *ud);

#endif
