/* stormguard config: the effective configuration, checked as `run` checks
 * it before it opens the store or binds anything, so a supervisor can run
 * it as the pre-start check (systemd's ExecStartPre, a Kubernetes
 * initContainer) and a person can see what the daemon would run with. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "stormguard/base/output.h"
#include "stormguard/gate/daemon.h"

typedef struct json_state {
    json_t *doc;
    json_t *section; /* the object of the section being filled (borrowed) */
    const char *name;
} json_state;

static void json_key(void *ud, const char *section, const char *key, const char *value)
{
    json_state *j = ud;
    if (!j->section || strcmp(j->name, section)) {
        j->section = json_object();
        json_object_set_new(j->doc, section, j->section);
        j->name = section;
    }
    json_object_set_new(j->section, key, value ? json_string(value) : json_null());
}

int sg_cmd_config(int argc, char **argv)
{
    sg_cli_spec spec = {
        .command = "config",
        .usage = "[-c FILE] [configuration flags] [--json]",
        .summary =
            "Loads the configuration as every command does (the defaults, then -c FILE or\n"
            "STORMGUARD_CONFIG, then the flags), runs the checks `stormguard run` makes\n"
            "before it opens the store or binds a port (a --downstream it can use, the\n"
            "admin token readable and required beyond loopback, on_storm and the storm\n"
            "detector's ranges, the listen addresses, the TLS files), and prints the\n"
            "effective configuration as INI, or with --json as one object\n"
            "{section: {key: value}} (values as the INI file gives them, null when not\n"
            "set). Secrets are never printed: the admin token and the sentinels'\n"
            "password show as (set), the Redis\n"
            "URL without its password, token_file by its path only. Exit 0 when `run`\n"
            "would start with it; 2 with FILE:LINE: [section] key: reason (or the check\n"
            "that failed) when not. It connects to nothing. The defaults are run's (the Igor\n"
            "profile): this is run's pre-start check.",
        .sections = "*",
        .examples = "  stormguard config -c /etc/stormguard/stormguard.ini\n"
                    "  stormguard config --downstream http://spin-echo:8089 --admin-token-file "
                    "/run/token\n"
                    "  stormguard config -c stormguard.ini --json",
        .defaults = sg_cli_run_defaults,
    };
    sg_cli cli;
    int rc = sg_cli_parse(&cli, &spec, argc, argv);
    if (rc == 0)
        rc = sg_daemon_check(&cli.cfg, &cli.err);
    if (rc == 0 && cli.json) {
        json_state j = {.doc = json_object()};
        sg_config_each(&cli.cfg, json_key, &j);
        sg_json_print(j.doc, stdout);
    } else if (rc == 0) {
        sg_config_dump(&cli.cfg, stdout);
    }
    rc = rc ? sg_cli_fail(&cli, rc) : 0;
    sg_cli_close(&cli);
    return rc;
}
