/* Tables, JSON and progress lines (output.h). */
#include "stormguard/base/output.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stormguard/base/util.h"

struct sg_table {
    int ncols;
    char *align;
    char **cells; /* row-major, header row first */
    size_t rows, cap;
};

sg_table *sg_table_new(int ncols, const char *const *headers, const char *align)
{
    sg_table *t = sg_xcalloc(1, sizeof *t);
    t->ncols = ncols;
    t->align = sg_xstrdup(align);
    sg_table_row(t, headers);
    return t;
}

void sg_table_row(sg_table *t, const char *const *cells)
{
    if (t->rows == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 8;
        t->cells = sg_xrealloc(t->cells, t->cap * (size_t)t->ncols * sizeof *t->cells);
    }
    for (int i = 0; i < t->ncols; i++)
        t->cells[t->rows * (size_t)t->ncols + (size_t)i] = sg_xstrdup(cells[i] ? cells[i] : "");
    t->rows++;
}

void sg_table_print(const sg_table *t, FILE *out)
{
    size_t *width = sg_xcalloc((size_t)t->ncols, sizeof *width);
    for (size_t r = 0; r < t->rows; r++)
        for (int c = 0; c < t->ncols; c++) {
            size_t n = strlen(t->cells[r * (size_t)t->ncols + (size_t)c]);
            if (n > width[c])
                width[c] = n;
        }
    for (size_t r = 0; r < t->rows; r++) {
        for (int c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * (size_t)t->ncols + (size_t)c];
            bool last = c == t->ncols - 1;
            if (t->align[c] == 'r')
                fprintf(out, "%*s", (int)width[c], cell);
            else if (last)
                fputs(cell, out);
            else
                fprintf(out, "%-*s", (int)width[c], cell);
            if (!last)
                fputs("  ", out);
        }
        fputc('\n', out);
    }
    free(width);
}

void sg_table_free(sg_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->rows * (size_t)t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t->align);
    free(t);
}

static bool json_on_stdout;

bool sg_json_printed(void)
{
    return json_on_stdout;
}

void sg_json_print(json_t *doc, FILE *out)
{
    json_on_stdout |= out == stdout;
    json_dumpf(doc, out, JSON_COMPACT | JSON_PRESERVE_ORDER);
    fputc('\n', out);
    fflush(out);
    json_decref(doc);
}

const char *sg_human_bytes(int64_t n, char *buf, size_t size)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, size, "%lld B", (long long)n);
    else
        snprintf(buf, size, "%.1f %s", v, units[u]);
    return buf;
}

void sg_progress_init(sg_progress *p, const char *what, bool quiet)
{
    p->enabled = !quiet && isatty(STDERR_FILENO);
    p->shown = false;
    p->what = what;
}

void sg_progress_update(void *ud, int64_t done, double elapsed_s)
{
    sg_progress *p = ud;
    if (!p->enabled || elapsed_s < 1.0)
        return; /* short runs need no progress line */
    fprintf(stderr, "\r%s: %lld keys (%.0f keys/s)\033[K", p->what, (long long)done,
            elapsed_s > 0 ? (double)done / elapsed_s : 0.0);
    fflush(stderr);
    p->shown = true;
}

void sg_progress_done(sg_progress *p)
{
    if (p->shown)
        fputs("\r\033[K", stderr);
    p->shown = false;
}
