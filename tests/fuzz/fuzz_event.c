/* libFuzzer target: request bodies through both of event.c's readers. The
 * scanner may leave a body to jansson, but whenever it reads one itself the
 * result (return code, error text, event) must be jansson's. Built and run
 * by tests/fuzz/run.sh event. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/gate/event.h"

static int same(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const sg_event_config cfg = {.notification_source = "ci"};
    for (int path = 0; path < 2; path++) {
        sg_event a, b;
        sg_error ea = {0}, eb = {0};
        int ra = sg_event_parse((const char *)data, size, path, &cfg, &a, &ea);
        int rb = sg_event_parse_tree((const char *)data, size, path, &cfg, &b, &eb);
        if (ra != rb || (ra && strcmp(ea.msg, eb.msg)) || a.type != b.type ||
            !same(a.shape, b.shape) || !same(a.source, b.source) || !same(a.job, b.job) ||
            a.number != b.number || a.build_ts != b.build_ts ||
            a.ci_number_cursor != b.ci_number_cursor || !same(a.tag, b.tag) ||
            !same(a.digest, b.digest) || !same(a.registry, b.registry)) {
            fprintf(stderr, "readers disagree: %d/%d %s / %s\n", ra, rb, ea.msg, eb.msg);
            abort();
        }
        sg_event_close(&a);
        sg_event_close(&b);
    }
    return 0;
}
