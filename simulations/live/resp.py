"""A small RESP2 client for the live simulation (no redis-py: stdlib only).

call() sends one command and returns its reply; send() queues a command
whose reply is read (and checked) before the next call(), so Igor's marker
writes cost no round trip of their own; pipeline() sends many and returns
their replies in order. Errors come back as RespError, raised."""

import socket


class RespError(Exception):
    pass


def _encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, int):
            a = str(a)
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Redis:
    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.addr = (host, port)
        self.timeout = timeout
        self.sock = None
        self.rf = None
        self.queued = 0

    def connect(self):
        self.close()
        s = socket.create_connection(self.addr, timeout=self.timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = s
        self.rf = s.makefile("rb")
        self.queued = 0

    def close(self):
        if self.sock:
            try:
                self.rf.close()
                self.sock.close()
            except OSError:
                pass
        self.sock = self.rf = None
        self.queued = 0

    def _read(self):
        line = self.rf.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.rf.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._read() for _ in range(n)]
        raise ConnectionError("unexpected reply from redis: %r" % line[:40])

    def _drain(self):
        while self.queued:
            self.queued -= 1
            r = self._read()
            if isinstance(r, RespError):
                raise r

    def _ensure(self):
        if self.sock is None:
            self.connect()

    def send(self, *args):
        self._ensure()
        self.sock.sendall(_encode(args))
        self.queued += 1

    def call(self, *args):
        self._ensure()
        self.sock.sendall(_encode(args))
        self._drain()
        r = self._read()
        if isinstance(r, RespError):
            raise r
        return r

    def pipeline(self, commands):
        self._ensure()
        if not commands:
            return []
        self.sock.sendall(b"".join(_encode(c) for c in commands))
        self._drain()
        out = []
        for _ in commands:
            r = self._read()
            if isinstance(r, RespError):
                raise r
            out.append(r)
        return out
