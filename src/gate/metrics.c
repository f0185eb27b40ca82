/* Prometheus text exposition (metrics.h). */
#include "stormguard/gate/metrics.h"

const double sg_hist_bounds[SG_HIST_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                0.025,  0.05,    0.1,    0.25,  0.5,    1,     10};

void sg_histogram_observe(sg_histogram *h, double s)
{
    int i = 0;
    while (i < SG_HIST_BUCKETS && s > sg_hist_bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += s;
}

void sg_metric_family(sg_buf *b, const char *name, const char *type, const char *help)
{
    sg_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void sg_metric_sample(sg_buf *b, const char *name, const char *labels, double value)
{
    if (*labels)
        sg_buf_printf(b, "%s{%s} %.17g\n", name, labels, value);
    else
        sg_buf_printf(b, "%s %.17g\n", name, value);
}

void sg_metric_histogram(sg_buf *b, const char *name, const char *help, const sg_histogram *h)
{
    sg_metric_family(b, name, "histogram", help);
    uint64_t cum = 0;
    for (int i = 0; i < SG_HIST_BUCKETS; i++) {
        cum += h->counts[i];
        sg_buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, sg_hist_bounds[i],
                      (unsigned long long)cum);
    }
    sg_buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.17g\n%s_count %llu\n", name,
                  (unsigned long long)h->count, name, h->sum, name, (unsigned long long)h->count);
}
