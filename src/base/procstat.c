/* /proc/self as the process_* metrics (procstat.h), the fields Prometheus's
 * own client libraries read: proc(5) stat fields 14-15 (utime, stime) and
 * 22-24 (starttime, vsize, rss), after the command name, which may hold
 * blanks and parentheses (so the parse starts after its last ')'). */
#include "stormguard/base/procstat.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* The whole of a small /proc file into buf (NUL-terminated). */
static int read_small(const char *path, char *buf, size_t size, sg_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return sg_error_set(err, SG_EIO, "opening %s: %s", path, strerror(errno));
    size_t n = fread(buf, 1, size - 1, f);
    int failed = ferror(f);
    fclose(f);
    if (failed)
        return sg_error_set(err, SG_EIO, "reading %s: %s", path, strerror(errno));
    buf[n] = '\0';
    return 0;
}

/* The boot's wall-clock time in seconds: now less the time since boot
 * (CLOCK_BOOTTIME counts from the boot, suspends included, as starttime
 * does). Not /proc/stat's btime: a sandbox (systemd's ProcSubset=pid) hides
 * that file, and on a host of many CPUs its lines before btime outgrow any
 * small buffer. */
static double boot_time(void)
{
    struct timespec real, boot;
    clock_gettime(CLOCK_REALTIME, &real);
    clock_gettime(CLOCK_BOOTTIME, &boot);
    return (double)(real.tv_sec - boot.tv_sec) + (double)(real.tv_nsec - boot.tv_nsec) / 1e9;
}

static int count_fds(int64_t *out, sg_error *err)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return sg_error_set(err, SG_EIO, "opening /proc/self/fd: %s", strerror(errno));
    int64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    *out = n - 1; /* not the directory's own descriptor */
    return 0;
}

int sg_procstat_read(sg_procstat *out, sg_error *err)
{
    char buf[2048];
    int rc = read_small("/proc/self/stat", buf, sizeof buf, err);
    if (rc)
        return rc;
    const char *p = strrchr(buf, ')');
    unsigned long long utime, stime, start, vsize;
    long long rss;
    /* from field 3 (state) on: skip 4-13, read 14 and 15, skip 16-21 */
    if (!p || sscanf(p + 1,
                     " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
                     "%*d %*d %llu %llu %lld",
                     &utime, &stime, &start, &vsize, &rss) != 5)
        return sg_error_set(err, SG_EIO, "reading /proc/self/stat: unexpected format");
    int64_t fds = 0;
    if ((rc = count_fds(&fds, err)))
        return rc;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return sg_error_set(err, SG_EIO, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
    double ticks = (double)sysconf(_SC_CLK_TCK);
    *out = (sg_procstat){.cpu_seconds = (double)(utime + stime) / ticks,
                         .resident_bytes = rss * (int64_t)sysconf(_SC_PAGESIZE),
                         .virtual_bytes = (int64_t)vsize,
                         .open_fds = fds,
                         .max_fds = rl.rlim_cur == RLIM_INFINITY ? -1 : (int64_t)rl.rlim_cur,
                         .start_time_s = boot_time() + (double)start / ticks};
    return 0;
}
