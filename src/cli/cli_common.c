/* Shared plumbing of the subcommands (cli.h). */
#include "cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stormguard/base/output.h"
#include "stormguard/base/util.h"

enum { OPT_HELP = 1000, OPT_JSON, OPT_CONFIG, OPT_LOCAL = 2000, OPT_CONFIG_FLAG = 3000 };

typedef struct flag_value {
    const char *flag;
    const char *value;
} flag_value;

static void print_help(const sg_cli_spec *spec, FILE *out)
{
    fprintf(out, "usage: stormguard %s %s\n\n%s\n", spec->command, spec->usage, spec->summary);
    if (spec->cluster)
        fputs("Redis over TLS (rediss://, --tls), a Sentinel's master (redis-sentinel://...#name)\n"
              "and a Redis Cluster (every master, whichever node the URL names) work alike.\n",
              out);
    if (spec->opts && spec->opts[0].name) {
        fputs("\noptions:\n", out);
        for (const sg_cli_opt *o = spec->opts; o->name; o++) {
            char left[48];
            snprintf(left, sizeof left, "--%s%s%s", o->name, o->arg ? " " : "",
                     o->arg ? o->arg : "");
            fprintf(out, "  %-26s %s\n", left, o->help);
        }
    }
    if (spec->sections) {
        fputs("\nconfiguration it reads (each flag is also an INI key; flags win over the "
              "file):\n",
              out);
        sg_config_print_flags(out, spec->sections);
    }
    if (spec->examples)
        fprintf(out, "\nexamples:\n%s\n", spec->examples);
    fputs("\ncommon: -c, --config FILE (INI; or STORMGUARD_CONFIG), --json (machine-readable\n"
          "output on stdout; errors as {\"error\", \"exit\"}), -h, --help. Every configuration\n"
          "flag is accepted (`stormguard config --help` lists them all). The redis\n"
          "password may also come from STORMGUARD_REDIS_PASSWORD or REDISCLI_AUTH. Exit\n"
          "codes: 0 ok, 1 runtime failure, 2 usage or configuration error, 3 refused by a\n"
          "safety rule.\n",
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
    cli->cluster = spec->cluster;
    sg_config_init(&cli->cfg);
    if (spec->defaults)
        spec->defaults(&cli->cfg);

    size_t nlocal = 0;
    for (const sg_cli_opt *o = spec->opts; o && o->name; o++)
        nlocal++;
    size_t nconf = 0;
    while (sg_config_flag_at(nconf))
        nconf++;
    struct option *lopts = sg_xcalloc(nlocal + nconf + 4, sizeof *lopts);
    size_t n = 0;
    for (size_t i = 0; i < nlocal; i++)
        lopts[n++] =
            (struct option){spec->opts[i].name, spec->opts[i].arg ? required_argument : no_argument,
                            NULL, OPT_LOCAL + (int)i};
    for (size_t i = 0; i < nconf; i++)
        if (!is_local(spec, sg_config_flag_at(i)))
            lopts[n++] = (struct option){
                sg_config_flag_at(i), sg_config_flag_is_switch(i) ? no_argument : required_argument,
                NULL, OPT_CONFIG_FLAG + (int)i};
    lopts[n++] = (struct option){"help", no_argument, NULL, OPT_HELP};
    lopts[n++] = (struct option){"json", no_argument, NULL, OPT_JSON};
    lopts[n++] = (struct option){"config", required_argument, NULL, OPT_CONFIG};

    /* --json anywhere: an error in an option before it is a document too */
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        cli->json |= !strcmp(argv[i], "--json");
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
            size_t i = (size_t)(c - OPT_CONFIG_FLAG);
            flags[nflags++] =
                (flag_value){sg_config_flag_at(i), sg_config_flag_is_switch(i) ? "yes" : optarg};
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
    if ((rc = sg_redis_url_configure(&u, &cli->cfg.redis_tls, cli->cfg.sentinel_password,
                                     &cli->err))) {
        sg_redis_url_close(&u);
        return rc;
    }
    sg_redis_url_password_from_env(&u);
    rc = sg_rconn_open(conn, &u, (int)cli->cfg.connect_timeout_ms,
                       (int)(cli->cfg.redis_timeout_s * 1000), &cli->err);
    if (rc == 0 && !(cli->cluster && !strcmp(conn->mode, "cluster")) &&
        (rc = sg_rconn_check_standalone(conn, &cli->err)))
        sg_rconn_close(conn);
    sg_redis_url_close(&u);
    return rc;
}

int sg_cli_open_store(sg_cli *cli, sg_store **store)
{
    sg_store_options opt = {.synchronous = cli->cfg.synchronous};
    return sg_store_open(sg_config_store(&cli->cfg), &opt, store, &cli->err);
}

int sg_cli_fail(sg_cli *cli, int rc)
{
    if (rc == 1)
        return 0;   /* --help */
    fflush(stdout); /* what was printed comes before the reason it stopped */
    fprintf(stderr, "stormguard %s: %s\n", cli->command, cli->err.msg);
    int code = sg_error_exit_code(rc);
    /* --json: a program reading stdout gets the error as a document too,
     * unless the command's own document (which tells the outcome) went out */
    if (cli->json && !sg_json_printed())
        sg_json_print(json_pack("{s:s,s:i}", "error", cli->err.msg, "exit", code), stdout);
    return code;
}

static size_t collect(char *p, size_t size, size_t n, void *ud)
{
    sg_buf_append(ud, p, size * n);
    return size * n;
}

/* "$USER@host" as far as known, else "cli": who asked, for the daemon's audit. */
void sg_cli_actor(char *buf, size_t size)
{
    const char *user = getenv("USER");
    if (!user || !*user) {
        struct passwd *pw = getpwuid(geteuid());
        user = pw && pw->pw_name && *pw->pw_name ? pw->pw_name : "cli";
    }
    char host[256];
    if (gethostname(host, sizeof host) == 0 && host[0]) {
        host[sizeof host - 1] = '\0';
        snprintf(buf, size, "%s@%s", user, host);
    } else {
        snprintf(buf, size, "%s", user);
    }
}

/* The "error" text of a daemon's error answer, else its first bytes. */
static void answer_error(const sg_buf *body, char *out, size_t size)
{
    json_t *doc = body->len ? json_loadb(body->p, body->len, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(doc, "error"));
    if (msg)
        snprintf(out, size, "%s", msg);
    else if (body->len)
        snprintf(out, size, "%.*s", (int)(body->len > 300 ? 300 : body->len), body->p);
    else
        snprintf(out, size, "(no body)");
    json_decref(doc);
}

/* The error for a non-2xx answer: what the daemon said, and an exit code that
 * matches who is at fault (DESIGN.md: 2 usage, 3 refused, else 1). */
static int answer_status_error(sg_cli *cli, const char *method, const char *path, long status,
                               const sg_buf *body)
{
    const char *admin = cli->cfg.admin_listen;
    if (status == 401)
        return sg_error_set(&cli->err, SG_EUSAGE,
                            "the admin API at %s refused the token: set [admin] token or "
                            "token_file as the daemon has them",
                            admin);
    char msg[512];
    answer_error(body, msg, sizeof msg);
    int code = status == 400 || status == 422   ? SG_EUSAGE
               : status == 403 || status == 409 ? SG_EREFUSED
                                                : SG_EIO;
    const char *hint =
        status == 404 || status == 405 ? " (is the daemon older than this command?)" : "";
    return sg_error_set(&cli->err, code, "the admin API at %s answered %s %s with %ld: %s%s", admin,
                        method, path, status, msg, hint);
}

int sg_cli_admin_request(sg_cli *cli, const char *method, const char *path, const char *json_body,
                         long timeout_ms, sg_buf *body, long *status)
{
    char *token;
    int rc = sg_config_admin_token(&cli->cfg, &token, &cli->err);
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
    if (json_body)
        headers = curl_slist_append(headers, "Content-Type: application/json");
    sg_buf answer = {0};
    char errbuf[CURL_ERROR_SIZE] = "";
    CURLcode cc = CURLE_OK;
    /* every setopt is checked: a failed one would send a different request */
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(c, CURLOPT_URL, url);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (cc == CURLE_OK && json_body)
        cc = curl_easy_setopt(c, CURLOPT_POSTFIELDS, json_body);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(c, CURLOPT_WRITEDATA, &answer);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (cc == CURLE_OK)
        cc = curl_easy_perform(c);
    long code = 0;
    if (cc == CURLE_OK)
        cc = curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (cc != CURLE_OK)
        rc = sg_error_set(&cli->err, SG_EIO,
                          "admin API at %s unreachable: %s (is stormguard run listening there? "
                          "see --admin)",
                          cli->cfg.admin_listen, errbuf[0] ? errbuf : curl_easy_strerror(cc));
    else if (code < 200 || code > 299)
        rc = answer_status_error(cli, method, path, code, &answer);
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    free(url);
    if (auth) {
        memset(auth, 0, strlen(auth));
        free(auth);
    }
    free(token);
    if (rc == 0) {
        sg_buf_append(body, answer.p, answer.len);
        *status = code;
    }
    sg_buf_free(&answer);
    return rc;
}

int sg_cli_admin_json(sg_cli *cli, const char *method, const char *path, json_t *request,
                      long timeout_ms, json_t **answer, sg_buf *raw)
{
    char *text = request ? json_dumps(request, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (request && !text)
        return sg_error_set(&cli->err, SG_EIO, "encoding the request to %s %s", method, path);
    sg_buf body = {0};
    long status;
    int rc = sg_cli_admin_request(cli, method, path, text, timeout_ms, &body, &status);
    free(text);
    json_t *doc = NULL;
    if (rc == 0) {
        json_error_t jerr;
        doc = json_loadb(body.p ? body.p : "", body.len, 0, &jerr);
        if (!doc)
            rc = sg_error_set(&cli->err, SG_EIO,
                              "the admin API at %s sent invalid JSON for %s %s: %s",
                              cli->cfg.admin_listen, method, path, jerr.text);
    }
    if (rc == 0) {
        *answer = doc;
        if (raw)
            sg_buf_append(raw, body.p, body.len);
    }
    sg_buf_free(&body);
    return rc;
}

void sg_cli_print_raw(const sg_buf *raw)
{
    /* the daemon's document as is, one per line */
    fwrite(raw->p ? raw->p : "", 1, raw->len, stdout);
    if (!raw->len || raw->p[raw->len - 1] != '\n')
        fputc('\n', stdout);
}
