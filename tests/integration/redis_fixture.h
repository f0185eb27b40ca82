/* The redis-server of the cmocka integration tests: started on a free
 * 127.0.0.1 port without persistence, waited for until it answers PING, and
 * stopped by its pid. Nothing outlives the test process: a server still
 * running at exit is killed (atexit), and one whose test process dies
 * outright (a sanitizer abort, a ctest timeout) is killed by the kernel
 * (PR_SET_PDEATHSIG). redis-server must be on PATH. */
#ifndef SG_TEST_REDIS_FIXTURE_H
#define SG_TEST_REDIS_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct redisContext;

typedef struct redis_fixture {
    int port;
    pid_t pid;     /* 0: not running */
    char dir[256]; /* its --dir: where a replica writes the RDB it receives */
} redis_fixture;

/* Starts a server with --dir dir on a free port, trying a few ports (another
 * process may take one between the probe and the server's bind). Returns 0
 * once it answers PING (within 5 s), else -1 with the reason on stderr. */
int redis_fixture_start(redis_fixture *r, const char *dir);

/* Starts it again on the same port and dir, after redis_fixture_kill or
 * _stop: a restart as the watched client sees it. 0 or -1 as above. */
int redis_fixture_restart(redis_fixture *r);

/* SIGKILL and reap: a crash. A no-op when it is not running. */
void redis_fixture_kill(redis_fixture *r);

/* SIGTERM, SIGKILL after 5 s, reaped. A no-op when it is not running. */
void redis_fixture_stop(redis_fixture *r);

/* The server on port answers PING. */
bool redis_fixture_pings(int port);

/* A blocking connection to 127.0.0.1:port for seeding and checking (1 s to
 * connect; each command waits at most command_timeout_ms, 0: no limit), or
 * NULL if nothing answers. The caller frees it with redisFree. */
struct redisContext *redis_fixture_connect(int port, int command_timeout_ms);

/* A 127.0.0.1 port nothing listened on a moment ago. */
int redis_fixture_free_port(void);

/* Creates a fresh directory "/tmp/sg-test-<tag>-XXXXXX" into buf (size >=
 * 64); 0 or -1. Remove it with redis_fixture_rmtree. */
int redis_fixture_mkdtemp(char *buf, size_t size, const char *tag);

/* Removes dir and everything under it; a no-op for "" or NULL. */
void redis_fixture_rmtree(const char *dir);

void redis_fixture_sleep_ms(int ms);

#endif
