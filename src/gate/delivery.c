/* Deliveries (delivery.h). */
#include "stormguard/gate/delivery.h"

#include <stdlib.h>

void sg_fwd_item_free(sg_fwd_item *it)
{
    if (!it)
        return;
    free(it->method);
    free(it->path);
    free(it->headers);
    free(it->body);
    free(it);
}
