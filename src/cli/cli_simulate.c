/* stormguard simulate: a scenario in virtual time, once per defence. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "stormguard/base/log.h"
#include "stormguard/sim/report.h"
#include "stormguard/sim/sim.h"

enum { OPT_DEFENCE = 1, OPT_SEED, OPT_OUT, OPT_WORLD };

typedef struct args {
    bool chosen[SG_DEF_COUNT];
    bool any_chosen;
    bool has_seed;
    uint64_t seed;
    const char *out;
    const char *world;
} args;

static int on_opt(void *ud, int id, const char *arg, sg_error *err)
{
    args *a = ud;
    switch (id) {
    case OPT_DEFENCE: {
        sg_sim_defence d;
        if (sg_sim_defence_parse(arg, &d))
            return sg_error_set(err, SG_EUSAGE,
                                "--defence %s: not one of none, igor-threshold, "
                                "igor-first-builds-off, igor-lookback, nginx-limit, stormguard",
                                arg);
        a->chosen[d] = a->any_chosen = true;
        return 0;
    }
    case OPT_SEED: {
        int64_t v;
        if (sg_parse_int64(arg, 0, INT64_MAX, &v))
            return sg_error_set(err, SG_EUSAGE, "--seed %s: not a whole number from 0", arg);
        a->seed = (uint64_t)v;
        a->has_seed = true;
        return 0;
    }
    case OPT_OUT:
        a->out = arg;
        return 0;
    case OPT_WORLD:
        a->world = arg;
        return 0;
    }
    return 0;
}

int sg_cmd_simulate(int argc, char **argv)
{
    static const sg_cli_opt opts[] = {
        {"defence", "NAME", OPT_DEFENCE,
         "none, igor-threshold, igor-first-builds-off, igor-lookback, nginx-limit or "
         "stormguard (repeatable; default: all)"},
        {"seed", "N", OPT_SEED, "the random numbers' seed (default: the scenario's)"},
        {"out", "DIR", OPT_OUT,
         "also write the time series (CSV), the plots (gnuplot) and report.html there"},
        {"world", "FILE", OPT_WORLD,
         "write the builds the scenario draws (JSON) to FILE and run nothing: what "
         "simulations/live.sh replays against the real daemon"},
        {NULL, NULL, 0, NULL},
    };
    args a = {0};
    sg_cli_spec spec = {
        .command = "simulate",
        .sections = "storm guard snapshot gate",
        .examples = "  stormguard simulate simulations/spinnaker-flushall.json\n"
                    "  stormguard simulate simulations/spinnaker-flushall.json --defence "
                    "stormguard --storm-replay-min 50",
        .usage =
            "SCENARIO.json [--defence NAME]... [--seed N] [--json] [--out DIR] [--world FILE]\n"
            "       [-c FILE] [gate configuration flags]",
        .summary =
            "Replays a storm scenario (simulations/*.json; simulations/README.md) in virtual\n"
            "time, once per defence, and prints what reached the notifier under each: the\n"
            "spurious triggers of builds that had triggered before, the genuine ones on time,\n"
            "delayed or lost, the delays, inversions (an older build deployed after a newer\n"
            "one), what the gate still holds and the peak rate. Igor, Jenkins, Echo and the\n"
            "other defences are models of their source; the stormguard row is the real gate\n"
            "(classification, storm detector, guard, held queue, journal on a real SQLite\n"
            "file) on a virtual clock. Same scenario and seed, same output.\n"
            "\n"
            "The gate runs with the configuration given (-c FILE or STORMGUARD_CONFIG, and\n"
            "the flags) as `run` would: [storm], [guard] duration, [snapshot] keep and\n"
            "suspect_below, the [gate] event pointers; try a threshold before deploying it.\n"
            "The scenario's \"stormguard\" section says when the gate is installed, how often\n"
            "it snapshots and whether it rewarms; the Redis, listen, store and admin settings\n"
            "play no part.",
        .opts = opts,
        .max_args = 1,
        .on_opt = on_opt,
        .ud = &a,
    };
    sg_cli cli;
    int rc = sg_cli_parse(&cli, &spec, argc, argv);
    if (rc) {
        rc = rc == 1 ? 0 : sg_cli_fail(&cli, rc);
        sg_cli_close(&cli);
        return rc;
    }
    sg_scenario sc;
    if (cli.nargs != 1) {
        rc = sg_error_set(&cli.err, SG_EUSAGE, "give the scenario file (simulations/*.json)");
    } else if ((rc = sg_scenario_load(cli.args[0], &sc, &cli.err)) == 0 && a.world) {
        FILE *f = fopen(a.world, "w");
        bool bad = !f || sg_sim_write_world(&sc, a.has_seed ? a.seed : sc.seed, f);
        if ((f && fclose(f)) || bad)
            rc = sg_error_set(&cli.err, SG_EIO, "writing %s: %s", a.world, strerror(errno));
        sg_scenario_close(&sc);
    } else if (rc == 0) {
        uint64_t seed = a.has_seed ? a.seed : sc.seed;
        sg_sim_result results[SG_DEF_COUNT];
        size_t n = 0;
        char work[] = "/tmp/stormguard-sim.XXXXXX";
        if (!mkdtemp(work)) {
            rc = sg_error_set(&cli.err, SG_EIO, "creating a temporary directory: %s",
                              strerror(errno));
        } else {
            /* the gate logs as the daemon does; a simulation's thousands of
             * lines a second go to a file of the run's own */
            char *log = sg_xasprintf("%s/gate.log", work);
            sg_log_open("text", log, &cli.err);
            for (int d = 0; d < SG_DEF_COUNT && rc == 0; d++) {
                if (a.any_chosen && !a.chosen[d])
                    continue;
                rc =
                    sg_sim_run(&sc, (sg_sim_defence)d, seed, &cli.cfg, work, &results[n], &cli.err);
                if (rc == 0)
                    n++;
            }
            sg_log_close();
            char *db = sg_xasprintf("%s/stormguard-sim.db", work);
            for (const char *sfx = ""; sfx; sfx = !*sfx                  ? "-wal"
                                                  : !strcmp(sfx, "-wal") ? "-shm"
                                                                         : NULL) {
                char *p = sg_xasprintf("%s%s", db, sfx);
                unlink(p);
                free(p);
            }
            free(db);
            unlink(log);
            free(log);
            rmdir(work);
        }
        if (rc == 0 && a.out)
            rc = sg_sim_write_report(a.out, &sc, seed, results, n, &cli.err);
        if (rc == 0 && cli.json)
            sg_sim_print_json(stdout, &sc, seed, results, n);
        else if (rc == 0)
            sg_sim_print_table(stdout, &sc, seed, results, n);
        for (size_t i = 0; i < n; i++)
            sg_sim_result_close(&results[i]);
        sg_scenario_close(&sc);
    }
    rc = rc ? sg_cli_fail(&cli, rc) : 0;
    sg_cli_close(&cli);
    return rc;
}
