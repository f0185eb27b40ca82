/* Time, as the modules that decide by it read it: wall-clock epoch
 * milliseconds (what the journal records, what a poller's timestamps are)
 * and monotonic seconds (durations). The daemon (gate.c) hands sg_clock_real
 * to the gate core, guard, hold queue, journal, forwarder and watcher; the
 * snapshot and restore take one in their options. The simulator and the unit
 * tests hand them a virtual clock (sg_vclock) that moves only when told, so
 * the same code runs in virtual time. The store stamps no row with a time of
 * its own choosing: the caller passes it.
 *
 * sg_now_ms and sg_mono_s are the real clock itself. Read directly (or the
 * system's clocks) only by what measures physical time: a one-shot command
 * timing its own work and stamping its audit row, the log's timestamps and
 * rate limit, the journal writer's commit pacing and WAL checkpoints (how
 * long its thread waited on the disk), a snapshot's heartbeat in the store
 * (another process tells by it whether the writer is alive), the loop's
 * timers (uv_now: a transfer's deadline, DNS re-resolution, the watcher's
 * check period, its wait for replies and its reconnect backoff: network
 * time), the hash seed (hashset.c), and the daemon's word to systemd
 * (daemon.c: the watchdog's timer and a reload's MONOTONIC_USEC, which
 * systemd compares with its own CLOCK_MONOTONIC). */
#ifndef STORMGUARD_CLOCK_H
#define STORMGUARD_CLOCK_H

#include <stdint.h>

typedef struct sg_clock sg_clock;
struct sg_clock {
    int64_t (*wall_ms)(const sg_clock *c);
    double (*mono_s)(const sg_clock *c);
};

/* The system's clocks (CLOCK_REALTIME, CLOCK_MONOTONIC). */
extern const sg_clock sg_clock_real;

static inline int64_t sg_clock_ms(const sg_clock *c)
{
    return c->wall_ms(c);
}

static inline double sg_clock_mono(const sg_clock *c)
{
    return c->mono_s(c);
}

int64_t sg_now_ms(void);
double sg_mono_s(void);

/* A clock that stands still until set: its monotonic seconds are its wall
 * milliseconds / 1000. Embed it and pass &v->clock. */
typedef struct sg_vclock {
    sg_clock clock;
    int64_t now_ms;
} sg_vclock;

void sg_vclock_init(sg_vclock *v, int64_t start_ms);
/* Moves the clock to now_ms; a time before the current one is ignored
 * (time never runs backwards). */
void sg_vclock_set(sg_vclock *v, int64_t now_ms);

#endif
