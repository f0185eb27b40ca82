/* Drives the daemon's sidecar jobs (sidecar.h) from tests/bench/bench_rewarm.sh,
 * so the benchmark times the very code path the daemon runs:
 *
 *   bench_rewarm snapshot|rewarm REDIS_URL DB_PATH
 *
 * runs one job with the igor profile on a libuv loop and prints one line of
 * key=value pairs (seconds is the job's own wall time, connecting included).
 * Exits 1 if the job failed. */
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "stormguard/snapshot/sidecar.h"
#include "stormguard/base/clock.h"
#include "stormguard/base/util.h"

static void on_done(void *ud, const sg_sidecar_result *r)
{
    *(sg_sidecar_result *)ud = *r;
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "snapshot") && strcmp(argv[1], "rewarm"))) {
        fprintf(stderr, "usage: bench_rewarm snapshot|rewarm REDIS_URL DB_PATH\n");
        return 2;
    }
    bool rewarm = !strcmp(argv[1], "rewarm");
    sg_sidecar_opts o = {.redis_url = argv[2],
                         .connect_timeout_ms = 5000,
                         .db_path = argv[3],
                         .profile = SG_PROFILE_IGOR,
                         .suspect_below_pct = 50};
    uv_loop_t loop;
    if (uv_loop_init(&loop)) {
        fprintf(stderr, "bench_rewarm: uv_loop_init failed\n");
        return 1;
    }
    sg_sidecar_result r = {.rc = 1};
    sg_error err = {0};
    double started = sg_mono_s();
    int rc = rewarm ? sg_sidecar_rewarm(&loop, &o, 0, on_done, &r, &err)
                    : sg_sidecar_snapshot(&loop, &o, "bench", on_done, &r, &err);
    if (rc) {
        fprintf(stderr, "bench_rewarm: %s\n", err.msg);
        uv_loop_close(&loop);
        return 1;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    double wall = sg_mono_s() - started;
    if (uv_loop_close(&loop)) {
        fprintf(stderr, "bench_rewarm: the loop did not close cleanly\n");
        return 1;
    }
    if (r.rc) {
        fprintf(stderr, "bench_rewarm: %s failed: %s\n", argv[1], r.err.msg);
        return 1;
    }
    printf("seconds=%.4f wall=%.4f snapshot=%lld keys=%lld restored=%lld skipped_existing=%lld "
           "failed=%lld suspect=%d\n",
           r.seconds, wall, (long long)r.snapshot_id, (long long)r.keys, (long long)r.restored,
           (long long)r.skipped_existing, (long long)r.failed, r.suspect ? 1 : 0);
    return 0;
}
