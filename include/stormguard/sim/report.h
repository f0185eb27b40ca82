/* What a simulation prints and writes: one row per defence as a table or as
 * the JSON document, and with --out the time series (CSV), the plots
 * (gnuplot) and a self-contained report.html. The same results give the
 * same bytes. */
#ifndef STORMGUARD_REPORT_H
#define STORMGUARD_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "stormguard/base/error.h"
#include "stormguard/sim/scenario.h"
#include "stormguard/sim/sim.h"

/* The JSON document: {"scenario", "seed", "duration_s", "defences": [...]},
 * on one line, to out. */
void sg_sim_print_json(FILE *out, const sg_scenario *s, uint64_t seed, const sg_sim_result *r,
                       size_t n);
/* The table, for a person. */
void sg_sim_print_table(FILE *out, const sg_scenario *s, uint64_t seed, const sg_sim_result *r,
                        size_t n);

/* Writes into dir (created if missing): triggers.csv (per minute, a column
 * per defence), cumulative.csv (spurious and genuine so far), gate.csv (the
 * gate's held events and mode), results.json, plots.gp and, by running
 * gnuplot on it, triggers.png and cumulative.png, then report.html with the
 * scenario, the table and the plots embedded. SG_EIO names what failed
 * (gnuplot missing or failing included). */
int sg_sim_write_report(const char *dir, const sg_scenario *s, uint64_t seed,
                        const sg_sim_result *r, size_t n, sg_error *err);

#endif
