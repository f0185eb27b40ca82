/* Shared plumbing of the subcommands (cli.h). */
#include "stormguard/cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/util.h"

enum { OPT_HELP = 1000, OPT_JSON, OPT_CONFIG, OPT_LOCAL = 2000, OPT_CONFIG_FLAG = 3000 };

typedef struct flag_value {
    const char *flag;
    const char *value;
} flag_value;

static void print_help(const sg_cli_spec *spec, FILE *out)
{
    fprintf(out, "usage: stormguard %s %s\n\n%s\n", spec->command, spec->usage, spec->summary);
    if (spec->opts && spec->opts[0].name) {
        fputs("\noptions:\n", out);
        for (const sg_cli_opt *o = spec->opts; o->name; o++) {
            char left[48];
            snprintf(left, sizeof left, "--%s%s%s", o->name, o->arg ? " " : "",
                     o->arg ? o->arg : "");
            fprintf(out, "  %-26s %s\n", left, o->help);
        }
    }
    fputs("\ncommon options:\n"
          "  -c, --config FILE          INI configuration file (or STORMGUARD_CONFIG)\n"
          "  --json                     machine-readable output on stdout\n"
          "  -h, --help                 this help\n"
          "\nconfiguration flags (each is also an INI key; flags win over the file):\n",
          out);
    sg_config_print_flags(out);
    fputs("\nThe redis password may also come from STORMGUARD_REDIS_PASSWORD or REDISCLI_AUTH.\n"
          "Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error,\n"
          "3 refused by a safety rule.\n",
          out);
}

static bool is_local(const sg_cli_spec *spec, const char *name)
{
    for (const sg_cli_opt *o = spec->opts; o && o->name; o++)
        if (!strcmp(o->name, name))
            return true;
    return false;
}

int sg_cli_parse(sg_cli *cli, const sg_cli_spec *spec, int argc, char **argv)
{
    memset(cli, 0, sizeof *cli);
    cli->command = spec->command;
    sg_config_init(&cli->cfg);

    size_t nlocal = 0;
    for (const sg_cli_opt *o = spec->opts; o && o->name; o++)
        nlocal++;
    size_t nconf = 0;
    while (sg_config_flag_at(nconf))
        nconf++;
    struct option *lopts = sg_xcalloc(nlocal + nconf + 4, sizeof *lopts);
    size_t n = 0;
    for (size_t i = 0; i < nlocal; i++)
        lopts[n++] = (struct option){spec->opts[i].name,
                                     spec->opts[i].arg ? required_argument : no_argument, NULL,
                                     OPT_LOCAL + (int)i};
    for (size_t i = 0; i < nconf; i++)
        if (!is_local(spec, sg_config_flag_at(i)))
            lopts[n++] = (struct option){sg_config_flag_at(i), required_argument, NULL,
                                         OPT_CONFIG_FLAG + (int)i};
    lopts[n++] = (struct option){"help", no_argument, NULL, OPT_HELP};
    lopts[n++] = (struct option){"json", no_argument, NULL, OPT_JSON};
    lopts[n++] = (struct option){"config", required_argument, NULL, OPT_CONFIG};

    flag_value *flags = sg_xcalloc((size_t)argc + 1, sizeof *flags);
    size_t nflags = 0;
    const char *config_path = getenv("STORMGUARD_CONFIG");
    int rc = 0, c;
    optind = 1;
    opterr = 0;
    while (rc == 0 && (c = getopt_long(argc, argv, ":hc:", lopts, NULL)) != -1) {
        if (c == 'h' || c == OPT_HELP) {
            print_help(spec, stdout);
            rc = 1;
        } else if (c == OPT_JSON) {
            cli->json = true;
        } else if (c == 'c' || c == OPT_CONFIG) {
            config_path = optarg;
        } else if (c >= OPT_CONFIG_FLAG) {
            flags[nflags++] = (flag_value){sg_config_flag_at((size_t)(c - OPT_CONFIG_FLAG)), optarg};
        } else if (c >= OPT_LOCAL && (size_t)(c - OPT_LOCAL) < nlocal) {
            rc = spec->on_opt(spec->ud, spec->opts[c - OPT_LOCAL].id, optarg, &cli->err);
        } else if (c == ':') {
            rc = sg_error_set(&cli->err, SG_EUSAGE, "option %s needs a value (see --help)",
                              argv[optind - 1]);
        } else {
            rc = sg_error_set(&cli->err, SG_EUSAGE, "unknown option %s (see --help)",
                              argv[optind - 1]);
        }
    }
    free(lopts);
    if (rc == 0) {
        cli->nargs = argc - optind;
        cli->args = argv + optind;
        if (cli->nargs > spec->max_args)
            rc = sg_error_set(&cli->err, SG_EUSAGE, "unexpected argument '%s' (see --help)",
                              cli->args[spec->max_args]);
    }
    if (rc == 0 && config_path)
        rc = sg_config_load_file(&cli->cfg, config_path, &cli->err);
    /* flags win over the file; a repeated list flag adds to the list */
    for (size_t i = 0; rc == 0 && i < nflags; i++) {
        const char *section, *key;
        bool is_list, append = false;
        sg_config_flag(flags[i].flag, &section, &key, &is_list);
        for (size_t j = 0; is_list && j < i; j++)
            append |= !strcmp(flags[j].flag, flags[i].flag);
        if ((rc = sg_config_set(&cli->cfg, section, key, flags[i].value, append, &cli->err)))
            sg_error_prefix(&cli->err, "--%s", flags[i].flag);
    }
    free(flags);
    return rc;
}

void sg_cli_close(sg_cli *cli)
{
    sg_config_close(&cli->cfg);
}

int sg_cli_connect(sg_cli *cli, sg_rconn *conn)
{
    sg_redis_url u;
    int rc = sg_redis_url_parse(cli->cfg.redis_url, &u, &cli->err);
    if (rc)
        return rc;
    sg_redis_url_password_from_env(&u);
    rc = sg_rconn_open(conn, &u, (int)cli->cfg.connect_timeout_ms, &cli->err);
    sg_redis_url_close(&u);
    return rc;
}

int sg_cli_open_store(sg_cli *cli, sg_store **store)
{
    sg_store_options opt = {.synchronous = cli->cfg.synchronous};
    return sg_store_open(cli->cfg.db_path, &opt, store, &cli->err);
}

int sg_cli_fail(sg_cli *cli, int rc)
{
    if (rc == 1)
        return 0; /* --help */
    fflush(stdout); /* what was printed comes before the reason it stopped */
    fprintf(stderr, "stormguard %s: %s\n", cli->command, cli->err.msg);
    return sg_error_exit_code(rc);
}

static size_t collect(char *p, size_t size, size_t n, void *ud)
{
    sg_buf_append(ud, p, size * n);
    return size * n;
}

/* The admin token as the daemon reads it: [admin] token, else token_file. */
static int read_token(sg_cli *cli, char **out)
{
    *out = NULL;
    if (cli->cfg.admin_token) {
        *out = sg_xstrdup(cli->cfg.admin_token);
        return 0;
    }
    if (!cli->cfg.admin_token_file)
        return 0;
    FILE *f = fopen(cli->cfg.admin_token_file, "r");
    if (!f)
        return sg_error_set(&cli->err, SG_EUSAGE, "reading admin token file %s: %s",
                            cli->cfg.admin_token_file, strerror(errno));
    char line[512] = "";
    if (!fgets(line, sizeof line, f))
        line[0] = '\0';
    fclose(f);
    line[strcspn(line, "\r\n")] = '\0';
    *out = sg_xstrdup(line);
    return 0;
}

int sg_cli_admin_get(sg_cli *cli, const char *path, sg_buf *body, long *status)
{
    char *token;
    int rc = read_token(cli, &token);
    if (rc)
        return rc;
    CURL *c = curl_easy_init();
    if (!c) {
        free(token);
        return sg_error_set(&cli->err, SG_EIO, "curl_easy_init failed");
    }
    char *url = sg_xasprintf("http://%s%s", cli->cfg.admin_listen, path);
    char *auth = token ? sg_xasprintf("Authorization: Bearer %s", token) : NULL;
    struct curl_slist *headers = auth ? curl_slist_append(NULL, auth) : NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode cc = curl_easy_perform(c);
    if (cc != CURLE_OK)
        rc = sg_error_set(&cli->err, SG_EIO, "cannot reach the stormguard admin API at %s: %s",
                          cli->cfg.admin_listen, errbuf[0] ? errbuf : curl_easy_strerror(cc));
    else
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    free(url);
    if (auth) {
        memset(auth, 0, strlen(auth));
        free(auth);
    }
    free(token);
    if (rc == 0 && *status == 401)
        rc = sg_error_set(&cli->err, SG_EUSAGE,
                          "the admin API at %s refused the token: set [admin] token or "
                          "token_file as the daemon has them",
                          cli->cfg.admin_listen);
    else if (rc == 0 && *status != 200)
        rc = sg_error_set(&cli->err, SG_EIO, "the admin API at %s answered %ld: %.300s",
                          cli->cfg.admin_listen, *status, body->p ? body->p : "");
    return rc;
}
