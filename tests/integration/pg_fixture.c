/* The integration tests' PostgreSQL server (pg_fixture.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nftw, popen, realpath when built on its own (CMake defines it) */
#endif
#include "pg_fixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <grp.h>
#include <libpq-fe.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_TRIES 10
#define INITDB_WAIT_MS 120000
#define READY_WAIT_MS 30000
#define STOP_WAIT_MS 15000
#define EXIT_STOP_WAIT_MS 5000 /* at exit: the test is over, waits add up */
#define KILL_WAIT_MS 5000
#define POLL_MS 20
#define MAX_CLUSTERS 8
#define MAX_CHILDREN 64

/* A cluster started and not yet stopped, for the exit handler: its dir, its
 * postmaster (0: not running) and the SysV segment that postmaster made,
 * which a SIGKILL leaves behind (a clean shutdown removes it). */
typedef struct cluster {
    char dir[sizeof(((pg_fixture *)0)->dir)];
    pid_t pid;
    pid_t shm_cpid;
    int shmid; /* -1: none to remove */
    int starts;
} cluster;

static cluster g_clusters[MAX_CLUSTERS];
/* The process that registered the exit handler: a forked child of the test
 * that exits must not stop the test's servers. */
static pid_t g_owner;
static char g_bindir[PATH_MAX - 32]; /* room for "/initdb" in a PATH_MAX buffer */

/* Who initdb and postgres run as: ourselves, or (as root) another user. */
static bool g_drop;
static uid_t g_uid;
static gid_t g_gid;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

static void rmtree(const char *dir)
{
    if (dir && dir[0])
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A 127.0.0.1 port nothing listened on a moment ago. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* Prints the end (<= 4 KB) of a log to stderr: why a server did not start. */
static void print_tail(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, "pg_fixture: (no %s: %s)\n", path, strerror(errno));
        return;
    }
    char buf[4096];
    if (fseek(fp, -(long)(sizeof buf - 1), SEEK_END) != 0)
        rewind(fp); /* a shorter one */
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    fprintf(stderr, "--- %s:\n%s%s", path, buf, n && buf[n - 1] != '\n' ? "\n" : "");
}

/* The log contains needle (the server said why it exited). */
static bool log_says(const char *path, const char *needle)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return false;
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof line, fp))
        found = strstr(line, needle) != NULL;
    fclose(fp);
    return found;
}

static bool has_programs(const char *dir)
{
    static const char *const progs[] = {"initdb", "postgres"};
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof progs / sizeof progs[0]; i++) {
        int n = snprintf(path, sizeof path, "%s/%s", dir, progs[i]);
        if (n < 0 || (size_t)n >= sizeof path || access(path, X_OK) != 0)
            return false;
    }
    return true;
}

static bool use_bindir(const char *dir)
{
    if (!dir || !dir[0] || strlen(dir) >= sizeof g_bindir || !has_programs(dir))
        return false;
    snprintf(g_bindir, sizeof g_bindir, "%s", dir);
    return true;
}

/* "/usr/lib/postgresql/N[.M]/bin": N and M, for the newest. */
static long version_of(const char *path)
{
    const char *v = path + strlen("/usr/lib/postgresql/");
    char *end;
    long major = strtol(v, &end, 10);
    long minor = *end == '.' ? strtol(end + 1, NULL, 10) : 0;
    return major * 1000 + minor;
}

/* Sets g_bindir (once) to where initdb and postgres are; -1 with the reason
 * on stderr if nowhere: a test that needs PostgreSQL must not pass without. */
static int find_bindir(void)
{
    if (g_bindir[0])
        return 0;
    const char *env = getenv("PG_BINDIR");
    if (env && env[0]) {
        if (use_bindir(env))
            return 0;
        fprintf(stderr, "pg_fixture: PG_BINDIR=%s has no initdb and postgres\n", env);
        return -1;
    }
    /* Debian's libpq-dev pg_config names its libpq's version, which may have
     * no server installed: then the newest server installed */
    FILE *p = popen("pg_config --bindir 2>/dev/null", "r");
    if (p) {
        char line[PATH_MAX];
        bool got = fgets(line, sizeof line, p) != NULL;
        pclose(p);
        if (got) {
            line[strcspn(line, "\n")] = '\0';
            if (use_bindir(line))
                return 0;
        }
    }
    glob_t g;
    if (glob("/usr/lib/postgresql/*/bin", 0, NULL, &g) == 0) {
        const char *best = NULL;
        for (size_t i = 0; i < g.gl_pathc; i++)
            if (has_programs(g.gl_pathv[i]) &&
                (!best || version_of(g.gl_pathv[i]) > version_of(best)))
                best = g.gl_pathv[i];
        bool ok = best && use_bindir(best);
        globfree(&g);
        if (ok)
            return 0;
    }
    const char *path = getenv("PATH");
    char dir[PATH_MAX], real[PATH_MAX];
    while (path && *path) {
        size_t len = strcspn(path, ":");
        int n = snprintf(dir, sizeof dir, "%.*s/postgres", (int)len, path);
        if (n > 0 && (size_t)n < sizeof dir && realpath(dir, real)) {
            char *slash = strrchr(real, '/');
            *slash = '\0';
            if (use_bindir(real))
                return 0;
        }
        path += len + (path[len] == ':');
    }
    fprintf(stderr, "pg_fixture: PostgreSQL not found (initdb, postgres: not in pg_config "
                    "--bindir, /usr/lib/postgresql/*/bin nor on PATH); install it "
                    "(scripts/setup.sh) or set PG_BINDIR\n");
    return -1;
}

/* As root, picks the user initdb and postgres run as. */
static int pick_user(void)
{
    g_drop = geteuid() == 0;
    if (!g_drop)
        return 0;
    static const char *const users[] = {"postgres", "nobody"};
    for (size_t i = 0; i < sizeof users / sizeof users[0]; i++) {
        struct passwd *pw = getpwnam(users[i]);
        if (pw && pw->pw_uid != 0) {
            g_uid = pw->pw_uid;
            g_gid = pw->pw_gid;
            return 0;
        }
    }
    fprintf(stderr, "pg_fixture: running as root, and no user postgres or nobody to run "
                    "PostgreSQL as\n");
    return -1;
}

static void exit_handler(void);

static cluster *track(const char *dir)
{
    if (!g_owner) {
        if (atexit(exit_handler) != 0) {
            fprintf(stderr, "pg_fixture: atexit failed\n");
            return NULL;
        }
        g_owner = getpid();
    }
    for (int i = 0; i < MAX_CLUSTERS; i++) {
        if (!g_clusters[i].dir[0]) {
            cluster *c = &g_clusters[i];
            memset(c, 0, sizeof *c);
            snprintf(c->dir, sizeof c->dir, "%s", dir);
            c->shmid = -1;
            return c;
        }
    }
    fprintf(stderr, "pg_fixture: more than %d clusters at once\n", MAX_CLUSTERS);
    return NULL;
}

static cluster *find(const char *dir)
{
    for (int i = 0; i < MAX_CLUSTERS; i++)
        if (dir[0] && !strcmp(g_clusters[i].dir, dir))
            return &g_clusters[i];
    return NULL;
}

/* In the child between fork and exec, where only async-signal-safe calls
 * are fine (the test may have threads): says why and exits. */
static void child_fail(const char *what)
{
    const char *why = strerror(errno);
    ssize_t ignored = write(2, "pg_fixture: ", 12);
    ignored = write(2, what, strlen(what));
    ignored = write(2, ": ", 2);
    ignored = write(2, why, strlen(why));
    ignored = write(2, "\n", 1);
    (void)ignored;
    _exit(127);
}

/* Runs argv (argv[0] a path) in cwd with stdout and stderr to log (created
 * anew), as the chosen user; it gets SIGKILL if we die. The pid, or -1. */
static pid_t spawn(char *const argv[], const char *cwd, const char *log)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        perror("pg_fixture: fork");
        return -1;
    }
    if (pid > 0)
        return pid;
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || null < 0)
        child_fail(log);
    if (dup2(null, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
        child_fail("dup2");
    /* none of the test's descriptors (a pipe's write end, a listener) may
     * live on in the server */
    bool closed = false;
#ifdef SYS_close_range
    closed = syscall(SYS_close_range, 3U, ~0U, 0U) == 0;
#endif
    for (int i = 3; !closed && i < 65536; i++)
        close(i);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (chdir(cwd) != 0)
        child_fail(cwd);
    if (g_drop && (setgroups(0, NULL) != 0 || setgid(g_gid) != 0 || setuid(g_uid) != 0))
        child_fail("dropping root");
    /* after setuid, which clears it */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        child_fail("prctl");
    if (getppid() != parent)
        _exit(127); /* the test died before prctl */
    execv(argv[0], argv);
    child_fail(argv[0]);
    return -1;
}

/* Reaps pid if it exits within ms; its status in *status. */
static bool reaped_within(pid_t pid, int ms, int *status)
{
    long long deadline = now_ms() + ms;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD))
            return true;
        if (now_ms() >= deadline)
            return false;
        sleep_ms(POLL_MS);
    }
}

/* A process that is gone for us: no more, or a zombie its new parent has not
 * reaped yet. */
static bool gone(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return true;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return true;
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')'); /* "pid (comm) S ..." */
    return paren && paren[1] == ' ' && paren[2] == 'Z';
}

/* SIGKILL to the postmaster and its children, reaped (the postmaster) and
 * waited for (<= 5 s; they exit once the postmaster is gone, but not at
 * once, and a restart needs them gone from the shared memory). */
static void kill_tree(pid_t pid)
{
    pid_t kids[MAX_CHILDREN];
    int nkids = 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *fp = fopen(path, "r");
    if (fp) {
        int k;
        while (nkids < MAX_CHILDREN && fscanf(fp, "%d", &k) == 1)
            kids[nkids++] = k;
        fclose(fp);
    }
    kill(pid, SIGKILL);
    for (int i = 0; i < nkids; i++)
        kill(kids[i], SIGKILL);
    waitpid(pid, NULL, 0);
    long long deadline = now_ms() + KILL_WAIT_MS;
    for (int i = 0; i < nkids; i++)
        while (!gone(kids[i]) && now_ms() < deadline)
            sleep_ms(POLL_MS);
}

/* Removes the segment a killed postmaster left, if it is still that one
 * (made by that pid) and nothing is attached. */
static void drop_segment(cluster *c)
{
    struct shmid_ds ds;
    if (c->shmid >= 0 && shmctl(c->shmid, IPC_STAT, &ds) == 0 && ds.shm_cpid == c->shm_cpid &&
        ds.shm_nattch == 0)
        shmctl(c->shmid, IPC_RMID, NULL);
    c->shmid = -1;
}

/* The postmaster's lock file, data/postmaster.pid: its pid (line 1), the
 * key and id of its SysV segment (line 7) and its status (line 8: "ready"
 * once it accepts connections). false if it cannot be read (yet). */
static bool read_lock_file(const char *dir, pid_t *pid, int *shmid, bool *ready)
{
    char path[PATH_MAX], line[PATH_MAX];
    snprintf(path, sizeof path, "%s/data/postmaster.pid", dir);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return false;
    *pid = 0;
    *shmid = -1;
    *ready = false;
    for (int n = 1; fgets(line, sizeof line, fp); n++) {
        if (n == 1)
            *pid = (pid_t)strtol(line, NULL, 10);
        unsigned long key, id;
        if (n == 7 && sscanf(line, "%lu %lu", &key, &id) == 2 && id <= INT_MAX)
            *shmid = (int)id;
        if (n == 8)
            *ready = !strncmp(line, "ready", 5);
    }
    fclose(fp);
    return true;
}

/* "pid:[inode]": which pids a pid names. 0 or -1. */
static int pid_namespace(char *buf, size_t size)
{
    ssize_t n = readlink("/proc/self/ns/pid", buf, size - 1);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

/* A test process that died outright (an abort, a ctest timeout) left its
 * clusters' dirs (tens of MB each) and SysV segments: its servers died with
 * it (PR_SET_PDEATHSIG), their data did not. Each dir names the test's pid
 * and pid namespace in its file "owner"; the dirs of a test that is gone are
 * removed here, once their postmaster is gone too. (A pid of another
 * namespace, a container sharing /tmp, says nothing here: its dirs stay.) */
static void sweep(void)
{
    char ns[64];
    glob_t g;
    if (pid_namespace(ns, sizeof ns) != 0 || glob("/tmp/sg-test-pg-*/owner", 0, NULL, &g) != 0)
        return;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        FILE *fp = fopen(g.gl_pathv[i], "r");
        int owner = 0;
        char its_ns[64];
        if (!fp)
            continue;
        bool got = fscanf(fp, "%d %63s", &owner, its_ns) == 2;
        fclose(fp);
        if (!got || owner <= 0 || strcmp(its_ns, ns) != 0 ||
            (kill(owner, 0) == 0 || errno != ESRCH))
            continue;
        char dir[sizeof(((cluster *)0)->dir)];
        int n = snprintf(dir, sizeof dir, "%.*s", (int)(strlen(g.gl_pathv[i]) - strlen("/owner")),
                         g.gl_pathv[i]);
        if (n < 0 || (size_t)n >= sizeof dir)
            continue;
        cluster left = {.shmid = -1};
        bool ready;
        if (read_lock_file(dir, &left.shm_cpid, &left.shmid, &ready) && left.shm_cpid > 0 &&
            !gone(left.shm_cpid))
            continue; /* still exiting: the next start removes it */
        drop_segment(&left);
        rmtree(dir);
    }
    globfree(&g);
}

/* Writes our pid and pid namespace to dir/owner, for sweep. */
static int write_owner(const char *dir)
{
    char path[PATH_MAX], ns[64];
    if (pid_namespace(ns, sizeof ns) != 0) {
        fprintf(stderr, "pg_fixture: /proc/self/ns/pid: %s\n", strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/owner", dir);
    FILE *fp = fopen(path, "w");
    if (!fp || fprintf(fp, "%d %s\n", (int)getpid(), ns) < 0) {
        fprintf(stderr, "pg_fixture: %s: %s\n", path, strerror(errno));
        if (fp)
            fclose(fp);
        return -1;
    }
    if (fclose(fp) != 0) {
        fprintf(stderr, "pg_fixture: %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static bool accepts(int port, const char *db)
{
    char conninfo[128];
    snprintf(conninfo, sizeof conninfo,
             "host=127.0.0.1 port=%d user=stormguard dbname=%s connect_timeout=2", port, db);
    return PQping(conninfo) == PQPING_OK;
}

/* One postmaster on f->port: 0 once it accepts connections, 1 if it exits
 * first (log: why), -1 if it stays silent for 30 s (then killed). */
static int launch(pg_fixture *f, cluster *c, char *log, size_t logsize)
{
    char postgres[PATH_MAX], data[PATH_MAX], port[16];
    snprintf(postgres, sizeof postgres, "%s/postgres", g_bindir);
    snprintf(data, sizeof data, "%s/data", f->dir);
    snprintf(port, sizeof port, "%d", f->port);
    snprintf(log, logsize, "%s/postgres-%d.log", f->dir, ++c->starts);
    char *argv[] = {postgres, "-D", data, "-p", port, "-k", f->dir, "-c",
                    "listen_addresses=127.0.0.1", "-c", "max_connections=100", "-c",
                    "shared_buffers=32MB",
                    /* its segments in data/, not /dev/shm: a SIGKILL leaves none */
                    "-c", "dynamic_shared_memory_type=mmap", NULL};
    pid_t pid = spawn(argv, f->dir, log);
    if (pid < 0)
        return -1;
    f->pid = c->pid = pid;
    long long deadline = now_ms() + READY_WAIT_MS;
    for (;;) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            f->pid = c->pid = 0;
            return 1;
        }
        /* that the lock file names this pid tells it from another server
         * on the port */
        pid_t owner;
        int shmid;
        bool ready;
        if (read_lock_file(f->dir, &owner, &shmid, &ready) && owner == pid && ready &&
            accepts(f->port, "postgres")) {
            c->shmid = shmid;
            c->shm_cpid = pid;
            return 0;
        }
        if (now_ms() >= deadline) {
            fprintf(stderr,
                    "pg_fixture: postgres does not accept connections on 127.0.0.1:%d "
                    "within %d s\n",
                    f->port, READY_WAIT_MS / 1000);
            kill_tree(pid);
            f->pid = c->pid = 0;
            drop_segment(c);
            print_tail(log);
            return -1;
        }
        sleep_ms(POLL_MS);
    }
}

/* SIGINT, then SIGKILL after ms; the data stays. */
static void shut_down(pg_fixture *f, cluster *c, int ms)
{
    if (f->pid <= 0)
        return;
    kill(f->pid, SIGINT);
    if (!reaped_within(f->pid, ms, NULL)) {
        fprintf(stderr, "pg_fixture: postgres pid %d did not stop within %d s of SIGINT\n",
                (int)f->pid, ms / 1000);
        kill_tree(f->pid);
    }
    drop_segment(c); /* a no-op after a clean shutdown */
    f->pid = c->pid = 0;
}

static void exit_handler(void)
{
    if (getpid() != g_owner)
        return;
    for (int i = 0; i < MAX_CLUSTERS; i++) {
        cluster *c = &g_clusters[i];
        if (!c->dir[0])
            continue;
        pg_fixture f = {.pid = c->pid};
        shut_down(&f, c, EXIT_STOP_WAIT_MS);
        rmtree(c->dir);
        c->dir[0] = '\0';
    }
}

static int create_database(int port)
{
    char conninfo[128];
    snprintf(conninfo, sizeof conninfo,
             "host=127.0.0.1 port=%d user=stormguard dbname=postgres connect_timeout=10", port);
    PGconn *conn = PQconnectdb(conninfo);
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "pg_fixture: connecting to 127.0.0.1:%d: %s", port,
                conn ? PQerrorMessage(conn) : "out of memory\n");
        PQfinish(conn);
        return -1;
    }
    PGresult *res = PQexec(conn, "CREATE DATABASE stormguard");
    int rc = 0;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fprintf(stderr, "pg_fixture: CREATE DATABASE stormguard: %s", PQerrorMessage(conn));
        rc = -1;
    }
    PQclear(res);
    PQfinish(conn);
    return rc;
}

static int run_initdb(const char *dir)
{
    char initdb[PATH_MAX], data[PATH_MAX], log[PATH_MAX];
    snprintf(initdb, sizeof initdb, "%s/initdb", g_bindir);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(log, sizeof log, "%s/initdb.log", dir);
    /* --no-sync: the cluster is gone before the machine could crash */
    char *argv[] = {initdb, "-D",   data,         "-U",        "stormguard", "--auth=trust",
                    "-E",   "UTF8", "--locale=C", "--no-sync", NULL};
    pid_t pid = spawn(argv, dir, log);
    if (pid < 0)
        return -1;
    int status = 0;
    if (!reaped_within(pid, INITDB_WAIT_MS, &status)) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fprintf(stderr, "pg_fixture: initdb did not finish within %d s\n", INITDB_WAIT_MS / 1000);
        print_tail(log);
        return -1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "pg_fixture: %s failed (status %d)\n", initdb, status);
        print_tail(log);
        return -1;
    }
    return 0;
}

int pg_fixture_start(pg_fixture *f)
{
    char log[PATH_MAX];
    memset(f, 0, sizeof *f);
    if (find_bindir() != 0 || pick_user() != 0)
        return -1;
    sweep();
    snprintf(f->dir, sizeof f->dir, "/tmp/sg-test-pg-XXXXXX");
    if (!mkdtemp(f->dir)) {
        perror("pg_fixture: mkdtemp");
        f->dir[0] = '\0';
        return -1;
    }
    cluster *c = track(f->dir);
    if (!c) {
        rmtree(f->dir);
        f->dir[0] = '\0';
        return -1;
    }
    if (write_owner(f->dir) != 0)
        goto fail;
    if (g_drop && chown(f->dir, g_uid, g_gid) != 0) {
        fprintf(stderr, "pg_fixture: chown %s: %s\n", f->dir, strerror(errno));
        goto fail;
    }
    if (run_initdb(f->dir) != 0)
        goto fail;
    for (int i = 0; i < START_TRIES; i++) {
        f->port = free_port();
        if (f->port <= 0)
            continue;
        int rc = launch(f, c, log, sizeof log);
        if (rc == 0) {
            if (create_database(f->port) != 0)
                goto fail;
            snprintf(f->url, sizeof f->url, "postgresql://stormguard@127.0.0.1:%d/stormguard",
                     f->port);
            return 0;
        }
        if (rc < 0)
            goto fail;
        /* another process took the port between the probe and the bind */
        if (!log_says(log, "Address already in use")) {
            fprintf(stderr, "pg_fixture: postgres exited at startup\n");
            print_tail(log);
            goto fail;
        }
    }
    fprintf(stderr, "pg_fixture: no free port for postgres after %d tries\n", START_TRIES);
fail:
    pg_fixture_stop(f);
    return -1;
}

void pg_fixture_stop(pg_fixture *f)
{
    cluster *c = find(f->dir);
    if (c) {
        shut_down(f, c, STOP_WAIT_MS);
        rmtree(c->dir);
        c->dir[0] = '\0';
    }
    memset(f, 0, sizeof *f);
}

int pg_fixture_restart(pg_fixture *f)
{
    cluster *c = find(f->dir);
    if (!c || f->port <= 0) {
        fprintf(stderr, "pg_fixture: restart of a fixture not started\n");
        return -1;
    }
    shut_down(f, c, STOP_WAIT_MS);
    char log[PATH_MAX];
    int rc = launch(f, c, log, sizeof log);
    if (rc == 0)
        return 0;
    if (rc > 0) {
        fprintf(stderr, "pg_fixture: postgres does not start again on 127.0.0.1:%d\n", f->port);
        print_tail(log);
    }
    return -1;
}

void pg_fixture_kill(pg_fixture *f)
{
    cluster *c = find(f->dir);
    if (!c || f->pid <= 0)
        return;
    kill_tree(f->pid);
    f->pid = c->pid = 0;
    /* nothing is attached now; a restart would remove it too */
    drop_segment(c);
}

/* One statement on the server's "stormguard" database; false, with the
 * server's reason on stderr, when it failed. */
static bool admin_exec(const pg_fixture *f, const char *sql)
{
    PGconn *c = PQconnectdb(f->url);
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "pg_fixture: %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return ok;
}

int pg_fixture_create_db(const pg_fixture *f, const char *name, char *url, size_t cap)
{
    char sql[128];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    if (!admin_exec(f, sql))
        return -1;
    snprintf(url, cap, "postgresql://stormguard@127.0.0.1:%d/%s", f->port, name);
    return 0;
}

void pg_fixture_drop_db(const pg_fixture *f, const char *name)
{
    char sql[128];
    snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", name);
    admin_exec(f, sql);
}
