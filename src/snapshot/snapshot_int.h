/* What the files of the snapshot module share: snapshot.c (the options and
 * the lifecycle of one snapshot), restore.c, and the progress reports both
 * give during long runs. Private to them: nothing else includes it. */
#ifndef STORMGUARD_SNAPSHOT_INT_H
#define STORMGUARD_SNAPSHOT_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "stormguard/snapshot/snapshot.h"

/* Progress reports to an sg_progress_fn, at most four a second. */
typedef struct sg_snap_progress {
    sg_progress_fn fn; /* NULL: no reports */
    void *ud;
    double started, last; /* sg_mono_s() */
} sg_snap_progress;

/* Starts the clock of a run: its elapsed time counts from now. */
void sg_snap_progress_init(sg_snap_progress *p, sg_progress_fn fn, void *ud);

/* Reports done (units finished so far) if there is a callback and the last
 * report is a quarter second old, or always when final. */
void sg_snap_progress_tick(sg_snap_progress *p, int64_t done, bool final);

#endif
