/* A simulation's outputs (report.h). */
#include "stormguard/sim/report.h"

#include <errno.h>
#include <stdbool.h>
#include <jansson.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stormguard/base/util.h"

extern char **environ;

static json_t *result_json(const sg_sim_result *r)
{
    /* delays in milliseconds, as seconds with three decimals: the same
     * text on every machine */
    return json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:I,s:I,s:I,s:I,s:I,s:I}", "name",
                     sg_sim_defence_name(r->defence), "spurious", (json_int_t)r->spurious,
                     "genuine", (json_int_t)r->genuine, "genuine_on_time",
                     (json_int_t)r->genuine_on_time, "genuine_delayed",
                     (json_int_t)r->genuine_delayed, "genuine_lost", (json_int_t)r->genuine_lost,
                     "genuine_superseded", (json_int_t)r->genuine_superseded, "delay_p50_s",
                     r->delay_p50_s, "delay_max_s", r->delay_max_s, "inversions",
                     (json_int_t)r->inversions, "held_at_end", (json_int_t)r->held_at_end,
                     "operator_actions", (json_int_t)r->operator_actions, "peak_triggers_per_min",
                     (json_int_t)r->peak_triggers_per_min, "posts", (json_int_t)r->posts,
                     "answered_503", (json_int_t)r->answered_503);
}

static json_t *document(const sg_scenario *s, uint64_t seed, const sg_sim_result *r, size_t n)
{
    json_t *defs = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(defs, result_json(&r[i]));
    return json_pack("{s:s,s:I,s:I,s:o}", "scenario", s->name, "seed", (json_int_t)seed,
                     "duration_s", (json_int_t)(s->duration_ms / 1000), "defences", defs);
}

void sg_sim_print_json(FILE *out, const sg_scenario *s, uint64_t seed, const sg_sim_result *r,
                       size_t n)
{
    json_t *doc = document(s, seed, r, n);
    char *text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    fprintf(out, "%s\n", text);
    free(text);
    json_decref(doc);
}

/* The rows, as text columns or as HTML table rows. */
static void print_rows(FILE *out, const sg_sim_result *r, size_t n, bool html)
{
    for (size_t i = 0; i < n; i++) {
        const sg_sim_result *x = &r[i];
        double v[12] = {(double)x->spurious,
                        (double)x->genuine,
                        (double)x->genuine_on_time,
                        (double)x->genuine_delayed,
                        (double)x->genuine_lost,
                        (double)x->genuine_superseded,
                        x->delay_p50_s,
                        x->delay_max_s,
                        (double)x->inversions,
                        (double)x->held_at_end,
                        (double)x->operator_actions,
                        (double)x->peak_triggers_per_min};
        const char *name = sg_sim_defence_name(x->defence);
        if (html)
            fprintf(out, "<tr><td>%s</td>", name);
        else
            fprintf(out, "%-22s", name);
        for (int k = 0; k < 12; k++) {
            if (html)
                fprintf(out, "<td>%.0f</td>", v[k]);
            else
                fprintf(out, " %11.0f", v[k]);
        }
        fputs(html ? "</tr>\n" : "\n", out);
    }
}

static const char *const columns[] = {"spurious",   "genuine",     "on time",     "delayed",
                                      "lost",       "superseded",  "delay p50 s", "delay max s",
                                      "inversions", "held at end", "operator",    "peak/min"};

void sg_sim_print_table(FILE *out, const sg_scenario *s, uint64_t seed, const sg_sim_result *r,
                        size_t n)
{
    fprintf(out, "%s (seed %llu, %lld min)\n", s->name, (unsigned long long)seed,
            (long long)(s->duration_ms / 60000));
    fprintf(out, "%-22s", "defence");
    for (int k = 0; k < 12; k++)
        fprintf(out, " %11s", columns[k]);
    fputc('\n', out);
    print_rows(out, r, n, false);
}

/* ---- the report directory ---- */

static int write_file(const char *dir, const char *name, const char *text, size_t len,
                      sg_error *err)
{
    char *path = sg_xasprintf("%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    int rc = 0;
    if (!f || fwrite(text, 1, len, f) != len || fclose(f) != 0) {
        rc = sg_error_set(err, SG_EIO, "writing %s: %s", path, strerror(errno));
        if (f)
            fclose(f);
    }
    free(path);
    return rc;
}

static void csv_series(sg_buf *b, const sg_sim_result *r, size_t n, size_t which)
{
    sg_buf_printf(b, "minute");
    for (size_t i = 0; i < n; i++) {
        const char *d = sg_sim_defence_name(r[i].defence);
        if (which == 0)
            sg_buf_printf(b, ",%s", d);
        else
            sg_buf_printf(b, ",spurious %s,genuine %s", d, d);
    }
    sg_buf_printf(b, "\n");
    size_t minutes = n ? r[0].minutes : 0;
    for (size_t m = 0; m < minutes; m++) {
        sg_buf_printf(b, "%zu", m);
        for (size_t i = 0; i < n; i++) {
            if (which == 0)
                sg_buf_printf(b, ",%lld", (long long)r[i].triggers[m]);
            else
                sg_buf_printf(b, ",%lld,%lld", (long long)r[i].spurious_cum[m],
                              (long long)r[i].genuine_cum[m]);
        }
        sg_buf_printf(b, "\n");
    }
}

static const char *const fault_names[] = {"flushall", "flushdb",        "restart", "failover_empty",
                                          "evict",    "delete_pattern", "park"};

static void plot_script(sg_buf *b, const sg_scenario *s, const sg_sim_result *r, size_t n)
{
    sg_buf_printf(b, "# made by stormguard simulate: gnuplot plots.gp\n"
                     "set datafile separator ','\n"
                     "set key outside right top\n"
                     "set grid\n"
                     "set xlabel 'minute'\n");
    for (size_t i = 0; i < s->nfaults; i++)
        sg_buf_printf(b,
                      "set arrow from %lld, graph 0 to %lld, graph 1 nohead dt 2 lc rgb 'red'\n"
                      "set label '%s' at %lld, graph 0.95 left offset 0.5,0 tc rgb 'red'\n",
                      (long long)(s->faults[i].at_ms / 60000),
                      (long long)(s->faults[i].at_ms / 60000), fault_names[s->faults[i].kind],
                      (long long)(s->faults[i].at_ms / 60000));
    sg_buf_printf(b,
                  "set terminal pngcairo size 1100,500 font 'sans,10'\n"
                  "set output 'triggers.png'\n"
                  "set title 'Pipeline triggers per minute into Echo: %s'\n"
                  "set ylabel 'triggers / min'\n"
                  "plot",
                  s->name);
    for (size_t i = 0; i < n; i++)
        sg_buf_printf(b, "%s 'triggers.csv' using 1:%zu with steps lw 2 title '%s'", i ? "," : "",
                      i + 2, sg_sim_defence_name(r[i].defence));
    sg_buf_printf(b,
                  "\nset output 'cumulative.png'\n"
                  "set title 'Spurious (solid) and genuine (dashed) triggers so far: %s'\n"
                  "set ylabel 'triggers'\n"
                  "plot",
                  s->name);
    for (size_t i = 0; i < n; i++)
        sg_buf_printf(
            b,
            "%s 'cumulative.csv' using 1:%zu with lines lw 2 lc %zu title 'spurious %s',"
            " 'cumulative.csv' using 1:%zu with lines lw 2 dt 2 lc %zu title 'genuine %s'",
            i ? "," : "", 2 * i + 2, i + 1, sg_sim_defence_name(r[i].defence), 2 * i + 3, i + 1,
            sg_sim_defence_name(r[i].defence));
    sg_buf_printf(b, "\n");
}

static int run_gnuplot(const char *dir, sg_error *err)
{
    char *argv[] = {"gnuplot", "plots.gp", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    char *old = getcwd(NULL, 0);
    if (!old || chdir(dir) != 0) {
        free(old);
        posix_spawn_file_actions_destroy(&fa);
        return sg_error_set(err, SG_EIO, "entering %s: %s", dir, strerror(errno));
    }
    pid_t pid;
    int rc = posix_spawnp(&pid, "gnuplot", &fa, NULL, argv, environ);
    int cd = chdir(old);
    (void)cd;
    free(old);
    posix_spawn_file_actions_destroy(&fa);
    if (rc)
        return sg_error_set(err, SG_EIO,
                            "running gnuplot for the plots: %s (install Debian's gnuplot-nox)",
                            strerror(rc));
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
        return sg_error_set(err, SG_EIO, "gnuplot failed on %s/plots.gp (exit %d)", dir,
                            WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}

static void base64(sg_buf *b, const unsigned char *p, size_t n)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        char out[4] = {t[v >> 18], t[(v >> 12) & 63], i + 1 < n ? t[(v >> 6) & 63] : '=',
                       i + 2 < n ? t[v & 63] : '='};
        sg_buf_append(b, out, 4);
    }
}

static int embed_png(sg_buf *b, const char *dir, const char *name, const char *alt, sg_error *err)
{
    char *path = sg_xasprintf("%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        int rc = sg_error_set(err, SG_EIO, "reading %s: %s", path, strerror(errno));
        free(path);
        return rc;
    }
    sg_buf png = {0};
    char chunk[65536];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0)
        sg_buf_append(&png, chunk, k);
    fclose(f);
    free(path);
    sg_buf_printf(b, "<figure><img id=\"%.*s\" alt=\"%s\" src=\"data:image/png;base64,",
                  (int)(strlen(name) - 4), name, alt);
    base64(b, (const unsigned char *)png.p, png.len);
    sg_buf_printf(b, "\"></figure>\n");
    sg_buf_free(&png);
    return 0;
}

static void html_escape(sg_buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            sg_buf_printf(b, "&lt;");
            break;
        case '>':
            sg_buf_printf(b, "&gt;");
            break;
        case '&':
            sg_buf_printf(b, "&amp;");
            break;
        case '"':
            sg_buf_printf(b, "&quot;");
            break;
        default:
            sg_buf_append(b, s, 1);
        }
    }
}

int sg_sim_write_report(const char *dir, const sg_scenario *s, uint64_t seed,
                        const sg_sim_result *r, size_t n, sg_error *err)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return sg_error_set(err, SG_EIO, "creating %s: %s", dir, strerror(errno));
    sg_buf b = {0};
    int rc;
    csv_series(&b, r, n, 0);
    if ((rc = write_file(dir, "triggers.csv", b.p, b.len, err)))
        goto out;
    sg_buf_free(&b);
    csv_series(&b, r, n, 1);
    if ((rc = write_file(dir, "cumulative.csv", b.p, b.len, err)))
        goto out;
    sg_buf_free(&b);
    sg_buf_printf(&b, "minute,held,mode\n");
    for (size_t i = 0; i < n; i++) {
        if (r[i].defence != SG_DEF_STORMGUARD)
            continue;
        for (size_t m = 0; m < r[i].minutes; m++)
            sg_buf_printf(&b, "%zu,%lld,%s\n", m, (long long)r[i].held[m],
                          r[i].mode[m] == 's'   ? "storm"
                          : r[i].mode[m] == 'g' ? "guard"
                          : r[i].mode[m] == 'n' ? "normal"
                                                : "not installed");
    }
    if ((rc = write_file(dir, "gate.csv", b.p ? b.p : "", b.len, err)))
        goto out;
    sg_buf_free(&b);
    json_t *doc = document(s, seed, r, n);
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(doc);
    rc = write_file(dir, "results.json", text, strlen(text), err);
    free(text);
    if (rc)
        goto out;
    plot_script(&b, s, r, n);
    if ((rc = write_file(dir, "plots.gp", b.p, b.len, err)) || (rc = run_gnuplot(dir, err)))
        goto out;
    sg_buf_free(&b);

    sg_buf_printf(&b, "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>stormguard "
                      "simulate: ");
    html_escape(&b, s->name);
    sg_buf_printf(&b, "</title><style>body{font-family:sans-serif;margin:2em;max-width:1200px}"
                      "table{border-collapse:collapse}td,th{border:1px solid #999;padding:4px "
                      "8px;text-align:right}th{background:#eee}td:first-child{text-align:left}"
                      "img{max-width:100%%}</style></head><body>\n<h1>");
    html_escape(&b, s->name);
    sg_buf_printf(&b, "</h1>\n<p>");
    html_escape(&b, s->about);
    sg_buf_printf(&b, "</p>\n<p>seed %llu, %lld minutes of virtual time</p>\n",
                  (unsigned long long)seed, (long long)(s->duration_ms / 60000));
    sg_buf_printf(&b, "<table id=\"results\"><tr><th>defence</th>");
    for (int k = 0; k < 12; k++)
        sg_buf_printf(&b, "<th>%s</th>", columns[k]);
    sg_buf_printf(&b, "</tr>\n");
    FILE *mem = open_memstream(&text, &(size_t){0});
    print_rows(mem, r, n, true);
    fclose(mem);
    sg_buf_append(&b, text, strlen(text));
    free(text);
    sg_buf_printf(&b, "</table>\n");
    if ((rc = embed_png(&b, dir, "triggers.png", "triggers per minute", err)) ||
        (rc = embed_png(&b, dir, "cumulative.png", "spurious and genuine triggers so far", err)))
        goto out;
    sg_buf_printf(&b, "</body></html>\n");
    rc = write_file(dir, "report.html", b.p, b.len, err);
out:
    sg_buf_free(&b);
    return rc;
}
