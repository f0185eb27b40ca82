/* Prometheus text exposition: counters, gauges and fixed-bucket latency
 * histograms rendered into a buffer. */
#ifndef STORMGUARD_METRICS_H
#define STORMGUARD_METRICS_H

#include <stdint.h>

#include "stormguard/base/util.h"

#define SG_HIST_BUCKETS 14

/* Latency buckets in seconds, 0.1 ms to 10 s. */
extern const double sg_hist_bounds[SG_HIST_BUCKETS];

typedef struct sg_histogram {
    uint64_t counts[SG_HIST_BUCKETS + 1]; /* the last one is +Inf */
    uint64_t count;
    double sum;
} sg_histogram;

void sg_histogram_observe(sg_histogram *h, double seconds);

/* "# HELP" and "# TYPE" lines of a metric family. */
void sg_metric_family(sg_buf *b, const char *name, const char *type, const char *help);
/* One sample; labels is "" or 'kind="new",state="pending"'. */
void sg_metric_sample(sg_buf *b, const char *name, const char *labels, double value);
/* A whole histogram family with its buckets, _sum and _count. */
void sg_metric_histogram(sg_buf *b, const char *name, const char *help, const sg_histogram *h);

#endif
