/* A delivery: one journaled event on its way to the notifier, as the gate
 * core hands it to a deliverer (the forwarder, forward.h, or the
 * simulator's model of the notifier) and gets it back with an outcome. */
#ifndef STORMGUARD_DELIVERY_H
#define STORMGUARD_DELIVERY_H

#include <stddef.h>
#include <stdint.h>

typedef struct sg_fwd_item {
    int64_t id;
    uint64_t lane;       /* same lane: delivered in order, one at a time; 0: none */
    char *method, *path; /* path with the query string */
    char *headers;       /* "name: value\n" lines to send */
    char *body;
    size_t body_len;
    int64_t received_at; /* epoch ms */
    int64_t attempts;
    int64_t next_attempt_at; /* epoch ms; 0 = now */
    int tag;                 /* the owner's (the gate core: the event's kind) */
    struct sg_fwd_item *next;
} sg_fwd_item;

typedef enum sg_fwd_outcome {
    SG_FWD_DELIVERED, /* 2xx */
    SG_FWD_RETRY,     /* will be tried again at item->next_attempt_at */
    SG_FWD_DEAD,      /* refused (4xx) or too old: never retried */
} sg_fwd_outcome;

/* Frees an item and its strings; NULL is fine. */
void sg_fwd_item_free(sg_fwd_item *item);

#endif
