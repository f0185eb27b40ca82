/* The integration tests' redis-server (redis_fixture.h). */
#include "redis_fixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_TRIES 10
#define PING_WAIT_MS 5000
#define PING_EVERY_MS 10
#define MAX_SERVERS 16

/* Every server started and not yet reaped, for the exit handler. */
static pid_t g_running[MAX_SERVERS];

static void kill_all(void)
{
    for (int i = 0; i < MAX_SERVERS; i++) {
        if (g_running[i] > 0) {
            kill(g_running[i], SIGKILL);
            waitpid(g_running[i], NULL, 0);
            g_running[i] = 0;
        }
    }
}

static void track(pid_t pid)
{
    static bool registered;
    if (!registered) {
        atexit(kill_all);
        registered = true;
    }
    for (int i = 0; i < MAX_SERVERS; i++) {
        if (g_running[i] <= 0) {
            g_running[i] = pid;
            return;
        }
    }
    fprintf(stderr, "redis_fixture: more than %d servers at once\n", MAX_SERVERS);
    abort();
}

static void untrack(pid_t pid)
{
    for (int i = 0; i < MAX_SERVERS; i++)
        if (g_running[i] == pid)
            g_running[i] = 0;
}

void redis_fixture_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int redis_fixture_free_port(void)
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

redisContext *redis_fixture_connect(int port, int command_timeout_ms)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    if (command_timeout_ms > 0) {
        struct timeval ct = {command_timeout_ms / 1000, (command_timeout_ms % 1000) * 1000};
        redisSetTimeout(c, ct);
    }
    return c;
}

bool redis_fixture_pings(int port)
{
    redisContext *c = redis_fixture_connect(port, 1000);
    if (!c)
        return false;
    redisReply *r = redisCommand(c, "PING");
    bool ok = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return ok;
}

/* One try on r->port: 0 once it answers, -1 if it exits first (the port was
 * taken meanwhile, no binary) or stays silent. */
static int spawn(redis_fixture *r)
{
    char port[16];
    snprintf(port, sizeof port, "%d", r->port);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        perror("redis_fixture: fork");
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127); /* the test died before prctl */
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--repl-diskless-sync-delay", "0", "--dir", r->dir,
               (char *)NULL);
        _exit(127);
    }
    r->pid = pid;
    track(pid);
    for (int waited = 0; waited < PING_WAIT_MS; waited += PING_EVERY_MS) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            untrack(pid);
            r->pid = 0;
            return -1;
        }
        if (redis_fixture_pings(r->port))
            return 0;
        redis_fixture_sleep_ms(PING_EVERY_MS);
    }
    redis_fixture_kill(r);
    return -1;
}

int redis_fixture_start(redis_fixture *r, const char *dir)
{
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    for (int i = 0; i < START_TRIES; i++) {
        r->port = redis_fixture_free_port();
        if (r->port > 0 && spawn(r) == 0)
            return 0;
    }
    fprintf(stderr, "redis_fixture: could not start redis-server (is it installed and on PATH?)\n");
    r->port = 0;
    return -1;
}

int redis_fixture_restart(redis_fixture *r)
{
    if (r->pid > 0 || r->port <= 0)
        return -1;
    if (spawn(r) == 0)
        return 0;
    fprintf(stderr, "redis_fixture: redis-server does not come back on port %d\n", r->port);
    return -1;
}

void redis_fixture_kill(redis_fixture *r)
{
    if (r->pid <= 0)
        return;
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    untrack(r->pid);
    r->pid = 0;
}

void redis_fixture_stop(redis_fixture *r)
{
    if (r->pid <= 0)
        return;
    kill(r->pid, SIGTERM);
    for (int i = 0; i < 100; i++) { /* 5 s, then SIGKILL */
        if (waitpid(r->pid, NULL, WNOHANG) == r->pid) {
            untrack(r->pid);
            r->pid = 0;
            return;
        }
        redis_fixture_sleep_ms(50);
    }
    redis_fixture_kill(r);
}

int redis_fixture_mkdtemp(char *buf, size_t size, const char *tag)
{
    int n = snprintf(buf, size, "/tmp/sg-test-%s-XXXXXX", tag);
    if (n < 0 || (size_t)n >= size || !mkdtemp(buf)) {
        perror("redis_fixture: mkdtemp");
        if (size)
            buf[0] = '\0';
        return -1;
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    return remove(path);
}

void redis_fixture_rmtree(const char *dir)
{
    if (dir && dir[0])
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
