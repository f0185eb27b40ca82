#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/)
from a real redis-server: RDBs that `redis-cli --rdb` fetches (rdb/), the
bytes of Redis's replies to the commands stormguard sends (resp/), the
configuration of README.md (config/) and a few Redis URLs (redis_url/).
The event corpus is request bodies, kept as they are, and files named
regress-* are inputs that once found a bug, kept too. Run it again after a
Redis upgrade; it replaces the files it writes and nothing else.

usage: tests/fuzz/make_corpus.py [OUT_DIR]   (default tests/fuzz/corpus)
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def encode(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Conn:
    """A RESP connection that keeps the raw bytes of each reply."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def _fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError("redis closed the connection")
        self.buf += chunk

    def _line(self, at):
        while True:
            end = self.buf.find(b"\r\n", at)
            if end >= 0:
                return end
            self._fill()

    def _skip(self, at):
        """The offset just past the reply that starts at at."""
        end = self._line(at)
        kind, n = self.buf[at:at + 1], self.buf[at + 1:end]
        at = end + 2
        if kind == b"$" and int(n) >= 0:
            while len(self.buf) < at + int(n) + 2:
                self._fill()
            return at + int(n) + 2
        if kind == b"*" and int(n) >= 0:
            for _ in range(int(n)):
                at = self._skip(at)
        return at

    def raw(self):
        """The bytes of the next reply."""
        end = self._skip(0)
        reply, self.buf = self.buf[:end], self.buf[end:]
        return reply

    def call(self, *args):
        self.s.sendall(encode(*args))
        return self.raw()


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def fill_types(c):
    """Keys of every type in every encoding Redis gives a small value."""
    c.call("SET", "s:raw", "hello")
    c.call("SET", "s:int8", "42")
    c.call("SET", "s:int16", "-3000")
    c.call("SET", "s:int32", "70000")
    c.call("SET", "s:big", "12345678901234567890")
    c.call("SET", "s:lzf", "abcd" * 40)
    c.call("SET", b"s:bin\x00\xff", b"\x00\x01\x02")
    c.call("SET", "s:empty", "")
    c.call("RPUSH", "l:small", "a", "b", "1", "-2", "300000")
    c.call("RPUSH", "l:big", *["elem%03d" % i for i in range(200)])
    c.call("SADD", "z:intset", 1, 2, 3, -40000, 5000000000)
    c.call("SADD", "z:strings", "x", "y", "z")
    c.call("ZADD", "zs:small", 1, "a", 2.5, "b", -3, "c")
    c.call("HSET", "h:small", "f1", "v1", "f2", "2", "f3", "-70000")
    c.call("CONFIG", "SET", "zset-max-listpack-entries", 2)
    c.call("CONFIG", "SET", "hash-max-listpack-entries", 2)
    c.call("CONFIG", "SET", "set-max-intset-entries", 2)
    c.call("ZADD", "zs:skiplist", 1, "a", 2.5, "b", "inf", "c")
    c.call("HSET", "h:table", "f1", "v1", "f2", "2", "f3", "x" * 30)
    c.call("SADD", "z:table", 1, 2, 3)
    for k in ("zset-max-listpack-entries", "hash-max-listpack-entries"):
        c.call("CONFIG", "SET", k, 128)
    c.call("CONFIG", "SET", "set-max-intset-entries", 512)
    c.call("XADD", "x:stream", "1-1", "f", "v")
    c.call("XADD", "x:stream", "2-1", "f", "w", "g", "1")
    c.call("XGROUP", "CREATE", "x:stream", "grp", "0")
    c.call("XREADGROUP", "GROUP", "grp", "alice", "COUNT", 1, "STREAMS", "x:stream", ">")
    c.call("SET", "s:ttl", "v", "PX", 10**9)


def rdb(port, path):
    subprocess.run(["redis-cli", "-p", str(port), "--rdb", path], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(path, "rb") as f:
        return f.read()


def make_rdbs(c, port, tmp):
    path = os.path.join(tmp, "dump.rdb")
    c.call("FLUSHALL")
    write("rdb", "empty.rdb", rdb(port, path))
    fill_types(c)
    everything = rdb(port, path)
    write("rdb", "types.rdb", everything)
    # a diskless SYNC's RDB is followed by the 40-byte mark "$EOF:" announced
    write("rdb", "types-diskless.rdb", everything + b"0123456789abcdef0123456789abcdef01234567")
    groups = {"strings": "s:*", "lists": "l:*", "sets": "z:*", "zsets": "zs:*",
              "hashes": "h:*", "streams": "x:*"}
    for name, pattern in groups.items():
        c.call("FLUSHALL")
        fill_types(c)
        keys = re.findall(rb"\$\d+\r\n([^\r]*)\r\n", c.call("KEYS", "*"))
        for k in keys:
            if not re.fullmatch(pattern.replace("*", ".*").encode(), k):
                c.call("DEL", k)
        write("rdb", name + ".rdb", rdb(port, path))
    # databases, expiries and a function library (the FUNCTION2 opcode)
    c.call("FLUSHALL")
    for db in (0, 3, 15):
        c.call("SELECT", db)
        c.call("SET", "k%d" % db, "v")
        c.call("SET", "t%d" % db, "v", "PX", 10**9)
    c.call("SELECT", 0)
    c.call("FUNCTION", "LOAD",
           "#!lua name=sg\nredis.register_function('f', function() return 1 end)")
    write("rdb", "dbs-function.rdb", rdb(port, path))
    c.call("FUNCTION", "FLUSH")
    # the keys of an Igor (DOMAIN.md section 2)
    c.call("FLUSHALL")
    c.call("HSET", "igor:jenkinsJobs:master1:deploy:lastPollCycleTimestamp",
           "lastPollCycleTimestamp", 1526030017000)
    c.call("HSET", "igor:jenkinsJobs:master1:deploy", 117, "POSTED", 118, "POSTED")
    c.call("SET", "igor:travis:builds:completed:travis1:org/repo", 42)
    write("rdb", "igor.rdb", rdb(port, path))


def make_replies(c, port):
    c.call("FLUSHALL")
    fill_types(c)
    for section in ("server", "replication", "keyspace", "stats", "memory"):
        write("resp", "info-%s.resp" % section, c.call("INFO", section))
    write("resp", "scan.resp", c.call("SCAN", 0, "COUNT", 1000))
    write("resp", "scan-cursor.resp", c.call("SCAN", 0, "COUNT", 2))
    write("resp", "pttl.resp", c.call("PTTL", "s:ttl"))
    write("resp", "pttl-none.resp", c.call("PTTL", "s:raw"))
    write("resp", "pttl-gone.resp", c.call("PTTL", "nothing"))
    for key in ("s:raw", "s:int32", "s:lzf", "l:small", "z:intset", "z:table", "zs:small",
                "zs:skiplist", "h:small", "h:table", "x:stream"):
        write("resp", "dump-%s.resp" % key.replace(":", "-"), c.call("DUMP", key))
    write("resp", "dump-gone.resp", c.call("DUMP", "nothing"))
    # a page of the snapshot pipeline: PTTL and DUMP per key
    page = c.call("SCAN", 0, "MATCH", "h:*", "COUNT", 1000)
    for key in (b"h:small", b"h:table"):
        page += c.call("PTTL", key) + c.call("DUMP", key)
    write("resp", "snapshot-page.resp", page)
    write("resp", "memory-usage.resp", c.call("MEMORY", "USAGE", "h:table"))
    write("resp", "memory-usage-gone.resp", c.call("MEMORY", "USAGE", "nothing"))
    write("resp", "config-save.resp", c.call("CONFIG", "GET", "save"))
    write("resp", "config-diskless.resp", c.call("CONFIG", "GET", "repl-diskless-sync"))
    write("resp", "exists.resp", c.call("EXISTS", "s:raw", "nothing", "h:small"))
    write("resp", "dbsize.resp", c.call("DBSIZE"))
    write("resp", "ping.resp", c.call("PING"))
    write("resp", "unknown-command.resp", c.call("NOSUCHCOMMAND"))
    write("resp", "busykey.resp", c.call("RESTORE", "s:raw", 0, b"x" * 11))
    c.call("ACL", "SETUSER", "weak", "on", ">pw", "~*", "+@read")
    weak = Conn(port)
    weak.call("AUTH", "weak", "pw")
    write("resp", "noperm.resp", weak.call("FLUSHALL"))
    write("resp", "wrongpass.resp", weak.call("AUTH", "weak", "nope"))
    # the tracking connection: CLIENT ID, the subscription, a flush's push
    trk = Conn(port)
    client_id = trk.call("CLIENT", "ID")
    write("resp", "client-id.resp", client_id)
    write("resp", "subscribe.resp", trk.call("SUBSCRIBE", "__redis__:invalidate"))
    cid = int(client_id[1:-2])
    c.call("CLIENT", "TRACKING", "on", "REDIRECT", cid, "BCAST", "PREFIX", "stormguard:canary",
           "NOLOOP")
    other = Conn(port)
    other.call("SET", "stormguard:canary", "x")
    write("resp", "invalidate-key.resp", trk.raw())
    c.call("FLUSHALL")
    write("resp", "invalidate-flush.resp", trk.raw())


def make_config():
    with open(os.path.join(HERE, "..", "..", "README.md")) as f:
        readme = f.read()
    ini = re.search(r"```ini\n(.*?)```", readme, re.S).group(1)
    write("config", "readme.ini", ini)
    write("config", "lists.ini", "[snapshot]\nmatch = a:* b:*\nmatch = c:*\n[flush]\nprotect =\n")
    write("config", "secret.ini", "[redis]\nurl = redis://admin:s%40cret@10.0.0.5:6380/2\n"
          "[admin]\ntoken = abc ; a comment\n")


def make_urls():
    urls = ["redis://127.0.0.1:6379/0", "redis://admin:s%40cr%3At@cache.internal:6380/2",
            "redis://:pw@h", "redis://[::1]:7000/1", "redis://h/?db=4",
            "unix:///run/redis/redis.sock?db=3", "unix:///tmp/r.sock"]
    for i, url in enumerate(urls):
        write("redis_url", "url%d" % i, url)


def main():
    tmp = tempfile.mkdtemp(prefix="sg-corpus.")
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--dir", tmp, "--save", "",
                               "--appendonly", "no", "--bind", "127.0.0.1"],
                              stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                c = Conn(port)
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise SystemExit("redis-server did not start")
        make_rdbs(c, port, tmp)
        make_replies(c, port)
        make_config()
        make_urls()
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
