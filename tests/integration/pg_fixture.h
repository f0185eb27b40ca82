/* The PostgreSQL server of the cmocka integration tests: a fresh cluster
 * (initdb: superuser stormguard, trust authentication, UTF8, C locale) in a
 * temp dir, its postmaster started directly (not by pg_ctl, so its pid is
 * ours to wait for) on a free 127.0.0.1 port with its unix socket in that
 * dir, waited for until it accepts connections, with a database "stormguard",
 * and stopped by its pid with SIGINT (a fast shutdown: clients are cut off,
 * then a checkpoint). Nothing outlives the test process: a server still
 * running at exit is stopped and its dir removed (atexit), and one whose test
 * process dies outright (a sanitizer abort, a ctest timeout) is killed by the
 * kernel (PR_SET_PDEATHSIG; its backends then exit by themselves), and the
 * next pg_fixture_start, of any test, removes what it left (its dir, its
 * SysV segment).
 *
 * The programs are $PG_BINDIR's if set, else pg_config --bindir's, else the
 * newest /usr/lib/postgresql/N/bin's, else postgres's on PATH. initdb and
 * postgres refuse to run as root, so as root (a CI container) they run as the
 * user postgres (Debian's package makes it), else as nobody. The test links
 * libpq (pkg-config libpq). */
#ifndef SG_TEST_PG_FIXTURE_H
#define SG_TEST_PG_FIXTURE_H

#include <stddef.h>
#include <sys/types.h>

typedef struct pg_fixture {
    pid_t pid; /* the postmaster; 0: not running */
    int port;
    char dir[256]; /* the temp dir: data/ (the cluster), the socket, the logs */
    char url[320]; /* postgresql://stormguard@127.0.0.1:PORT/stormguard */
} pg_fixture;

/* Starts a fresh PostgreSQL cluster in a temp dir on a free 127.0.0.1 port
 * with database "stormguard"; url = postgresql://stormguard@127.0.0.1:PORT/
 * stormguard. Tries a few ports (another process may take one between the
 * probe and the server's bind). Returns 0 once it accepts connections
 * (within 30 s of its exec), else -1 with a message on stderr (and nothing
 * left behind). */
int pg_fixture_start(pg_fixture *f);

/* Stops it (a fast shutdown, SIGKILL after 15 s) if it runs, and removes its
 * dir. A no-op on a fixture that was stopped or never started. */
void pg_fixture_stop(pg_fixture *f);

/* Stops it (as pg_fixture_stop, but the data stays) if it runs, and starts
 * it again on the same port and data: a restart as its clients see it. After
 * pg_fixture_kill, the start is a crash recovery. 0 or -1 as above. */
int pg_fixture_restart(pg_fixture *f);

/* SIGKILL to the postmaster and its children, waited for: a crash. A no-op
 * when it is not running. */
void pg_fixture_kill(pg_fixture *f);

/* A fresh database name (letters, digits and _) on f's server; url =
 * its postgresql:// URL (cap bytes). 0, or -1 with the server's reason on
 * stderr. */
int pg_fixture_create_db(const pg_fixture *f, const char *name, char *url, size_t cap);

/* Drops the database name, cutting off its clients (a test's teardown). */
void pg_fixture_drop_db(const pg_fixture *f, const char *name);

#endif
