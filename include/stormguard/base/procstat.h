/* This process's figures as Prometheus's process_* family reports them,
 * read from Linux's /proc/self. */
#ifndef STORMGUARD_PROCSTAT_H
#define STORMGUARD_PROCSTAT_H

#include <stdint.h>

#include "stormguard/base/error.h"

typedef struct sg_procstat {
    double cpu_seconds;        /* user and system time */
    int64_t resident_bytes;    /* resident set size */
    int64_t virtual_bytes;     /* address space */
    int64_t open_fds, max_fds; /* descriptors open; the soft RLIMIT_NOFILE */
    double start_time_s;       /* epoch seconds */
} sg_procstat;

/* Fills *out from /proc/self/stat, /proc/stat (the boot time), the
 * entries of /proc/self/fd and getrlimit; *out is written only on success
 * (SG_EIO with err naming the file otherwise). Reads files: the daemon
 * calls it on the thread pool, never on the loop. */
int sg_procstat_read(sg_procstat *out, sg_error *err);

#endif
