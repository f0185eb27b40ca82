/* stormguard store: the store itself. `store migrate` brings a store's
 * schema to this stormguard's version (every open read-write does the
 * same; this does only that, for a deploy step before the daemons start).
 * `store copy` moves a single daemon's SQLite store into an empty
 * PostgreSQL one (copy.h), for replicas to take over where it stopped. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "stormguard/base/output.h"
#include "stormguard/store/copy.h"

enum { OPT_TO = 1 };

static const sg_cli_opt opts[] = {
    {"to", "URL", OPT_TO, "copy: the empty PostgreSQL store to copy into (postgresql://...)"},
    {NULL, NULL, 0, NULL},
};

static int on_opt(void *ud, int id, const char *arg, sg_error *err)
{
    (void)id;
    /* never echoed: the URL may hold a password */
    if (!sg_store_is_url(arg))
        return sg_error_set(err, SG_EUSAGE, "--to must be a postgresql:// URL");
    if (sg_store_url_check(arg, err)) {
        sg_error_prefix(err, "--to");
        return SG_EUSAGE;
    }
    *(const char **)ud = arg;
    return 0;
}

static int store_migrate(sg_cli *cli)
{
    sg_store *store;
    int rc = sg_cli_open_store(cli, &store);
    if (rc)
        return rc;
    int version = sg_store_schema_version(store);
    if (cli->json)
        sg_json_print(json_pack("{s:s,s:s,s:i}", "store", sg_store_path(store), "backend",
                                sg_store_shared(store) ? "postgresql" : "sqlite", "schema",
                                version),
                      stdout);
    else
        printf("store %s: schema version %d (%s)\n", sg_store_path(store), version,
               sg_store_shared(store) ? "postgresql" : "sqlite");
    sg_store_free(store);
    return 0;
}

static const char *plural(int64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

static void print_copy(const char *from, const char *to, const sg_store_copy_stats *st)
{
    printf("copied %s into %s (one transaction):\n", from, to);
    printf("  ledger    %lld %s", (long long)st->ledger, plural(st->ledger, "build", "builds"));
    if (st->caught_up)
        printf(" (%lld added to the source's ledger first: accepted after its mark)",
               (long long)st->caught_up);
    printf("\n  held      %lld %s\n", (long long)st->held, plural(st->held, "event", "events"));
    printf("  pending   %lld %s\n", (long long)st->pending, plural(st->pending, "event", "events"));
    printf("  dead      %lld %s\n", (long long)st->dead, plural(st->dead, "event", "events"));
    if (st->docker)
        printf("  Docker    %lld accepted %s (the ledger's tags)\n", (long long)st->docker,
               plural(st->docker, "event", "events"));
    if (st->first_id)
        printf("  event ids %lld to %lld in %s\n", (long long)st->first_id, (long long)st->last_id,
               to);
    if (st->snapshot_from)
        printf("  baseline  snapshot %lld, as snapshot %lld (%lld %s)\n",
               (long long)st->snapshot_from, (long long)st->snapshot_id,
               (long long)st->snapshot_keys, plural(st->snapshot_keys, "key", "keys"));
    else if (st->baseline_kept)
        printf("  baseline  the destination's own, snapshot %lld, kept\n",
               (long long)st->baseline_kept);
    else
        printf("  baseline  none in the source (the gates' first periodic snapshot, or "
               "stormguard snapshot --store URL, makes one)\n");
}

static int store_copy(sg_cli *cli, const char *to)
{
    if (!to)
        return sg_error_set(&cli->err, SG_EUSAGE,
                            "copy needs --to postgresql://..., the store to copy into");
    /* the source is the SQLite file; a configuration already naming the
     * destination as its store is fine */
    if (cli->cfg.store_url && strcmp(cli->cfg.store_url, to) != 0)
        return sg_error_set(&cli->err, SG_EUSAGE,
                            "copy reads the SQLite store ([store] path, --db PATH) and writes "
                            "--to; [store] url (--store) names another PostgreSQL store");
    const char *from = cli->cfg.db_path;
    char actor[320];
    sg_cli_actor(actor, sizeof actor);
    sg_store_copy_stats st;
    int rc = sg_store_copy(from, to, actor, &st, &cli->err);
    if (rc)
        return rc;
    char *where = sg_store_url_redacted(to);
    if (cli->json) {
        json_t *snap =
            st.snapshot_from
                ? json_pack("{s:I,s:I,s:I}", "from", (json_int_t)st.snapshot_from, "id",
                            (json_int_t)st.snapshot_id, "keys", (json_int_t)st.snapshot_keys)
                : json_null();
        sg_json_print(json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:I}", "from", from,
                                "to", where, "ledger", (json_int_t)st.ledger, "caught_up",
                                (json_int_t)st.caught_up, "held", (json_int_t)st.held, "pending",
                                (json_int_t)st.pending, "dead", (json_int_t)st.dead, "docker",
                                (json_int_t)st.docker, "first_id", (json_int_t)st.first_id,
                                "last_id", (json_int_t)st.last_id, "snapshot", snap,
                                "baseline_kept", (json_int_t)st.baseline_kept),
                      stdout);
    } else {
        print_copy(from, where, &st);
    }
    free(where);
    return 0;
}

int sg_cmd_store(int argc, char **argv)
{
    const char *to = NULL;
    sg_cli_spec spec = {
        .command = "store",
        .usage = "migrate [--store URL | --db PATH] [--json]\n"
                 "       stormguard store copy [--db PATH] --to URL [--json]",
        .summary =
            "migrate: creates the store's tables or brings them to this stormguard's schema\n"
            "version, and prints it. Every command that opens the store read-write migrates\n"
            "it too; run this as a deploy step before the daemons start. Several daemons\n"
            "migrating one PostgreSQL store at once take turns.\n"
            "\n"
            "copy: moves the SQLite store (--db) into the empty PostgreSQL store --to, in\n"
            "one transaction, for gates sharing it to go on where the SQLite one stopped:\n"
            "the whole ledger, the held, pending and dead events with all their columns (new\n"
            "ids; pending ones keep their place in the queue), the accepted Docker events\n"
            "and the baseline snapshot with its build index. The rest of the journal, the\n"
            "episodes, the audit log and older snapshots stay in the SQLite file. Stop the\n"
            "daemon first: the copy takes its claim on the store (a running one is an error\n"
            "naming its pid) and opens it as the daemon does, adding to its ledger the\n"
            "builds a crash left out; nothing else in it changes. A destination holding any\n"
            "event or ledger row is refused (exit 3).",
        .opts = opts,
        .max_args = 1,
        .on_opt = on_opt,
        .ud = &to,
        .sections = "store",
        .examples = "stormguard store migrate --store postgresql://stormguard@db:5432/stormguard\n"
                    "PGPASSFILE=/etc/stormguard/pgpass stormguard store migrate -c "
                    "/etc/stormguard/stormguard.ini\n"
                    "PGPASSFILE=/etc/stormguard/pgpass stormguard store copy --db "
                    "/var/lib/stormguard/stormguard.db --to "
                    "postgresql://stormguard@db:5432/stormguard"};
    sg_cli cli;
    int rc = sg_cli_parse(&cli, &spec, argc, argv);
    const char *action = rc == 0 && cli.nargs == 1 ? cli.args[0] : NULL;
    if (rc == 0 && (!action || (strcmp(action, "migrate") && strcmp(action, "copy"))))
        rc = sg_error_set(&cli.err, SG_EUSAGE, "give what to do: migrate or copy (see --help)");
    if (rc == 0 && !strcmp(action, "migrate") && to)
        rc = sg_error_set(&cli.err, SG_EUSAGE, "--to is for copy, not migrate");
    if (rc == 0)
        rc = !strcmp(action, "copy") ? store_copy(&cli, to) : store_migrate(&cli);
    rc = rc ? sg_cli_fail(&cli, rc) : 0;
    sg_cli_close(&cli);
    return rc;
}
