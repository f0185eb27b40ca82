/* stormguard guard on|off: puts the running gate into guard mode or takes it
 * out (POST / DELETE /v1/guard). In guard mode the gate holds what it cannot
 * tell apart from a replay instead of forwarding it. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

enum { OPT_REASON = 1 };

static const sg_cli_opt opts[] = {
    {"reason", "TEXT", OPT_REASON, "why, kept in the daemon's audit log (default manual)"},
    {NULL, NULL, 0, NULL},
};

static int on_opt(void *ud, int id, const char *arg, sg_error *err)
{
    (void)err;
    (void)id;
    *(const char **)ud = arg;
    return 0;
}

int sg_cmd_guard(int argc, char **argv)
{
    const char *reason = "manual";
    sg_cli_spec spec = {
        .command = "guard",
        .sections = "admin",
        .examples = "  stormguard guard on --reason 'Redis failover at 14:05'\n"
                    "  stormguard guard off",
        .usage = "on|off [--reason TEXT] [--admin ADDR:PORT] [--json]",
        .summary = "Turns the running gate's guard mode on or off and prints the mode it is in\n"
                   "afterwards. In guard mode events the gate cannot classify are held (see\n"
                   "'stormguard held') instead of forwarded. --json prints the /v1/status\n"
                   "document the daemon answers with.",
        .opts = opts,
        .max_args = 1,
        .on_opt = on_opt,
        .ud = &reason,
    };
    sg_cli cli;
    int rc = sg_cli_parse(&cli, &spec, argc, argv);
    bool on = cli.nargs == 1 && !strcmp(cli.args[0], "on");
    if (rc == 0 && !on && (cli.nargs != 1 || strcmp(cli.args[0], "off")))
        rc = sg_error_set(&cli.err, SG_EUSAGE, "say 'guard on' or 'guard off' (see --help)");
    char actor[512];
    sg_cli_actor(actor, sizeof actor);
    json_t *body = rc ? NULL : json_pack("{s:s,s:s}", "reason", reason, "actor", actor);
    if (rc == 0 && !body)
        rc = sg_error_set(&cli.err, SG_EUSAGE, "--reason and $USER must be valid UTF-8 text");
    sg_buf raw = {0};
    json_t *status = NULL;
    if (rc == 0)
        rc = sg_cli_admin_json(&cli, on ? "POST" : "DELETE", "/v1/guard", body,
                               SG_CLI_ADMIN_WRITE_MS, &status, &raw);
    if (rc == 0 && cli.json) {
        sg_cli_print_raw(&raw);
    } else if (rc == 0) {
        const char *mode = json_string_value(json_object_get(status, "mode"));
        printf("mode %s\n", mode ? mode : "(not reported)");
        /* the daemon may keep guard mode, e.g. while a wipe episode lasts */
        if (!on && mode && !strcmp(mode, "guard"))
            printf("the daemon stayed in guard mode: see 'stormguard status'\n");
    }
    json_decref(body);
    json_decref(status);
    sg_buf_free(&raw);
    rc = rc ? sg_cli_fail(&cli, rc) : 0;
    sg_cli_close(&cli);
    return rc;
}
