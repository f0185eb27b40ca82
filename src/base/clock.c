/* The real and the virtual clock (clock.h). */
#include "stormguard/base/clock.h"

#include <stddef.h>
#include <time.h>

int64_t sg_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double sg_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t real_wall(const sg_clock *c)
{
    (void)c;
    return sg_now_ms();
}

static double real_mono(const sg_clock *c)
{
    (void)c;
    return sg_mono_s();
}

const sg_clock sg_clock_real = {real_wall, real_mono};

static int64_t virtual_wall(const sg_clock *c)
{
    return ((const sg_vclock *)c)->now_ms;
}

static double virtual_mono(const sg_clock *c)
{
    return (double)((const sg_vclock *)c)->now_ms / 1000.0;
}

void sg_vclock_init(sg_vclock *v, int64_t start_ms)
{
    v->clock = (sg_clock){virtual_wall, virtual_mono};
    v->now_ms = start_ms;
}

void sg_vclock_set(sg_vclock *v, int64_t now_ms)
{
    if (now_ms > v->now_ms)
        v->now_ms = now_ms;
}
