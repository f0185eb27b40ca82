/* Output for people and for scripts: aligned text tables, JSON documents
 * (one per command, on stdout), sizes and progress lines. */
#ifndef STORMGUARD_OUTPUT_H
#define STORMGUARD_OUTPUT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct json_t;

typedef struct sg_table sg_table;

/* A table with ncols columns; align holds 'l' or 'r' per column. */
sg_table *sg_table_new(int ncols, const char *const *headers, const char *align);
/* Adds a row of ncols strings (copied). */
void sg_table_row(sg_table *t, const char *const *cells);
void sg_table_print(const sg_table *t, FILE *out);
void sg_table_free(sg_table *t);

/* Prints a JSON document on one line to out and releases it. */
void sg_json_print(struct json_t *doc, FILE *out);
/* Whether sg_json_print has written a document to stdout: a command's
 * --json output is one document, its result or its error. */
bool sg_json_printed(void);

/* "1.5 MiB" */
const char *sg_human_bytes(int64_t n, char *buf, size_t size);

/* Progress on a terminal: rewrites one stderr line at most every 250 ms;
 * silent when stderr is not a terminal. */
typedef struct sg_progress {
    bool enabled;
    bool shown;
    const char *what;
} sg_progress;

void sg_progress_init(sg_progress *p, const char *what, bool quiet);
/* An sg_progress_fn (snapshot.h): "what: N keys (R keys/s)". */
void sg_progress_update(void *ud, int64_t done, double elapsed_s);
/* Clears the progress line if one was shown. */
void sg_progress_done(sg_progress *p);

#endif
