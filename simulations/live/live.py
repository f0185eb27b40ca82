#!/usr/bin/env python3
"""The live simulation (simulations/live.sh): one scenario, one defence, in
compressed real time against a real redis-server, the real `stormguard
run` and an Echo stand-in (echo.py).

    live.py run --defence none|stormguard --scenario S --world W --speed N
                --workdir DIR --pidfile FILE --sg-bin BIN
    live.py check SCENARIO                what cannot run live (exit 2)
    live.py cut SCENARIO DURATION OUT     the scenario cut short (exit 1: not shorter)
    live.py merge ...                     the rows into one document

The emulator is Jenkins and Igor's Jenkins monitor following the rules of
the simulator's model (src/sim/sim.c: has_delta, open_job, close_job,
jenkins_step), with Igor's state in the real Redis under Igor's key schema
(DOMAIN.md section 2) and Igor's payloads (section 3) posted over HTTP.

Time. Virtual milliseconds from the scenario's start, as in the simulator.
The emulator keeps a virtual clock of its own and paces it against the wall
clock: virtual time v happens at wall time start + v / speed. A post costs
the scenario's post_latency of virtual time, as in the simulator; when a
burst of posts takes longer than that on this machine the emulator runs
late (it never skips anything) and catches up in the poll interval's rest.
Jenkins answers as of Igor's virtual time, so Igor's decisions, and so
what it posts, are the simulator's whatever the machine's speed; the
largest lag is reported (max_lag_s). The Echo stand-in reads that clock
(an 8-byte file both map) when a trigger arrives.

Jenkins' clock (the build timestamps Igor posts and keeps as cursors) is
the gate's clock, compressed alike: epoch ms = start + v / speed (plus the
pauses below), so every duration the gate compares against its own clock
is scaled, and ahead of the gate's by 60 s - 60 s / speed: the gate allows
Jenkins' clock 60 s of skew (WIPE_SKEW_MS in src/gate/core.c, a constant),
which this turns back into 60 s of simulated time.

The gate is started at the scenario's stormguard.starts_at; virtual time
stands still while it starts and takes its first snapshot (Jenkins' clock
jumps by the same pause, so no cursor comparison changes)."""

import argparse
import ctypes
import heapq
import json
import mmap
import os
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from resp import Redis, RespError  # noqa: E402
import scenario as scen  # noqa: E402

JENKINS_LIST = 100  # the builds of a job Jenkins' builds tree returns
TICK_MS = 1000  # the operator looks at the held count every simulated second, as in sim.c
CURSOR_FIELD = "lastPollCycleTimestamp"
NO_CURSOR = 0  # the markers key of a job without a cursor (see mkey)
WIPE_SKEW_MS = 60000  # src/gate/core.c

EV_GATE, EV_JENKINS, EV_FAULT, EV_TICK = range(4)


def log(msg):
    sys.stderr.write("live: %s\n" % msg)
    sys.stderr.flush()


# ---- processes: every one started is stopped by pid ----------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    # PR_SET_PDEATHSIG: the child is killed if this process dies first
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)


class Procs:
    def __init__(self, pidfile):
        self.pidfile = pidfile
        self.live = []

    def start(self, argv, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(argv, preexec_fn=_die_with_parent, **kw)
        self.live.append(p)
        if self.pidfile:
            with open(self.pidfile, "a") as f:
                f.write("%d\n" % p.pid)
        return p

    def stop(self, p, sig=signal.SIGTERM, wait_s=10.0):
        if p.poll() is None:
            try:
                p.send_signal(sig)
                p.wait(wait_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.live:
            self.live.remove(p)
        return p.returncode

    def stop_all(self):
        for p in reversed(list(self.live)):  # the gate before the server it watches
            self.stop(p, wait_s=5.0)


def _epoch(iso):
    """Seconds since the epoch of the daemon's "2026-01-01T00:00:00.000Z"."""
    import calendar
    t = time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S")
    return calendar.timegm(t) + float("0" + iso[19:-1])


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- HTTP/1.1 with keep-alive, small and quick --------------------------


class Http:
    def __init__(self, port, timeout=30.0):
        self.port = port
        self.timeout = timeout
        self.sock = self.rf = None

    def close(self):
        if self.sock:
            try:
                self.rf.close()
                self.sock.close()
            except OSError:
                pass
        self.sock = self.rf = None

    def _connect(self):
        self.close()
        s = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.rf = s, s.makefile("rb")

    def request(self, method, path, body=b""):
        """(status, body); status 0 if the server could not be reached."""
        for attempt in (0, 1):
            reused = self.sock is not None
            try:
                if not reused:
                    self._connect()
                head = ("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json"
                        "\r\nContent-Length: %d\r\n\r\n" % (method, path, self.port, len(body)))
                self.sock.sendall(head.encode() + body)
                line = self.rf.readline()
                if not line:
                    raise ConnectionError("closed")
            except OSError:
                self.close()
                # a kept-alive connection the server had closed: nothing was read
                if reused and attempt == 0:
                    continue
                return 0, b""
            try:
                status = int(line.split()[1])
                length, close, chunked = 0, False, False
                while True:
                    h = self.rf.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.partition(b":")
                    k, v = k.strip().lower(), v.strip().lower()
                    if k == b"content-length":
                        length = int(v)
                    elif k == b"connection" and v == b"close":
                        close = True
                    elif k == b"transfer-encoding" and v == b"chunked":
                        chunked = True
                if chunked:
                    parts = []
                    while True:
                        size = int(self.rf.readline().split(b";")[0], 16)
                        if not size:
                            while self.rf.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            break
                        parts.append(self.rf.read(size))
                        self.rf.readline()
                    data = b"".join(parts)
                else:
                    data = self.rf.read(length) if length else b""
                if close:
                    self.close()
                return status, data
            except (OSError, ValueError, IndexError):
                self.close()
                return 0, b""
        return 0, b""

    def get_json(self, path):
        status, data = self.request("GET", path)
        if status != 200:
            raise ConnectionError("GET %s: %s" % (path, status or "no answer"))
        return json.loads(data)


# ---- the redis-server --------------------------------------------------


class RedisServer:
    def __init__(self, procs, workdir):
        self.procs = procs
        self.dir = os.path.join(workdir, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.port = None
        self.p = None
        self.starts = 0

    def _launch(self, port):
        self.starts += 1
        logf = os.path.join(self.dir, "redis-%d.log" % self.starts)
        p = self.procs.start(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", self.dir, "--logfile", logf],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if p.poll() is not None:
                break
            try:
                c = Redis(port, timeout=1)
                c.connect()
                if c.call("PING") == "PONG":
                    c.close()
                    self.p, self.port = p, port
                    return True
            except (OSError, RespError):
                pass
            time.sleep(0.02)
        self.procs.stop(p)
        return False

    def start(self):
        for _ in range(10):
            if self._launch(free_port()):
                return self
        raise RuntimeError("redis-server did not start (see %s)" % self.dir)

    def restart_empty(self):
        """A restart without persistence: the same port, nothing kept."""
        self.procs.stop(self.p)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._launch(self.port):
                return
            time.sleep(0.1)
        raise RuntimeError("redis-server did not start again on port %d" % self.port)


# ---- the gate's settings, scaled ---------------------------------------


def gate_settings(sc, speed):
    """The daemon's time settings divided by speed (its rates multiplied):
    (flags, scaled, fixed), scaled/fixed being lists for the report."""
    flags, scaled = [], []

    def seconds(flag, what, full_s):
        v = full_s / speed
        r = max(1, int(round(v)))
        flags.extend([flag, "%ds" % r])
        scaled.append({"flag": flag, "what": what, "simulated": scen.fmt_ms(int(full_s * 1000)),
                       "live": "%ds" % r, "exact": r * speed == full_s})

    def number(flag, what, full, lo, hi, unit, mul=False):
        v = full * speed if mul else full / speed
        r = min(hi, max(lo, int(round(v))))
        flags.extend([flag, str(r)])
        scaled.append({"flag": flag, "what": what, "simulated": "%s%s" % (full, unit),
                       "live": "%d%s" % (r, unit),
                       "exact": (r == full * speed) if mul else (r * speed == full)})

    seconds("--snapshot-interval", "periodic snapshot", sc.snapshot_interval_ms // 1000)
    seconds("--guard-duration", "guard mode after a wipe", 600)
    seconds("--storm-window", "storm signals' window", 60)
    seconds("--storm-cooldown", "storm ends after this without a signal", 300)
    seconds("--forward-max-age", "a delivery is retried until this old", 86400)
    seconds("--retry-max", "longest retry delay", 60)
    number("--check-interval-ms", "watcher's fallback check", 1000, 10, 600000, "ms")
    number("--retry-base-ms", "first retry delay", 500, 1, 3600000, "ms")
    number("--storm-rate-floor", "rate signal's floor (a rate: multiplied)", 20, 1, 1000000,
           "/s", mul=True)
    number("--drain-rate", "on_storm = drain: releases per second (a rate: multiplied)", 5, 1,
           100000, "/s", mul=True)
    scaled.append({"flag": "(Jenkins' clock)", "what": "timestamps and durations Igor posts, "
                   "compressed alike and %d ms ahead of the gate's, so that the gate's fixed "
                   "60 s of allowed clock skew is 60 s simulated" % (
                       WIPE_SKEW_MS - WIPE_SKEW_MS // speed),
                   "simulated": "60s", "live": "60s", "exact": WIPE_SKEW_MS % speed == 0})
    flags.extend(["--keep-events", "0"])  # as the simulator: no retention pass in a run
    fixed = [
        "the daemon's tick (1 s) is %d s simulated: guard and storm modes end up to that "
        "much later, and released events wait for it to be read back from the journal and "
        "delivered (the delays of released builds are longer than the simulator's)" % speed,
        "the baseline is looked for every 5 s (%s simulated), besides the reload after "
        "each snapshot" % scen.fmt_ms(5000 * speed),
        "the rate signal's moving average (5 min, %s simulated) and its 1 s buckets" %
        scen.fmt_ms(300000 * speed),
        "I/O limits stay real: --read-timeout, --forward-timeout, the keep-alive idle time",
    ]
    return flags, scaled, fixed


# ---- the emulator --------------------------------------------------------


class Job:
    __slots__ = ("master", "name", "b", "appears_at", "announced", "history", "started",
                 "ckey", "marks_key", "fs")


class Emulator:
    def __init__(self, a, sc, world, procs):
        self.a = a
        self.sc = sc
        self.speed = a.speed
        self.procs = procs
        self.defence = a.defence
        self.until = sc.duration_ms + 2 * sc.poll_interval_ms
        self.masters = []
        collide = 0
        for m in world["masters"]:
            jobs = []
            for jd in m["jobs"]:
                j = Job()
                j.master, j.name = m["name"], jd["name"]
                j.b = [tuple(x) for x in jd["builds"]]
                j.appears_at, j.announced, j.history = (jd["appears_at"], jd["announced"],
                                                        jd["history"])
                j.started = 0
                j.ckey = "igor:%s:%s:%s" % (m["name"], jd["name"].upper(), jd["name"])
                j.marks_key = None
                j.fs = []
                starts = [x[0] // self.speed for x in j.b]
                if any(s2 <= s1 for s1, s2 in zip(starts, starts[1:])):
                    collide += 1
                jobs.append(j)
            self.masters.append(jobs)
        self.collide = collide
        self.heap = []
        self.seq = 0
        self.now = 0
        self.posts = self.answered_503 = 0
        self.operator_actions = 0
        self.max_lag_ms = 0.0
        self.pauses = []  # (virtual ms, wall ms): the clock stood still there
        self.parent = os.getppid()
        self.gate = None
        self.admin = None
        self.op_proc = None
        self.react_at = 0
        self.faults_done = []
        # Igor's cycle in progress (sim.c's names)
        self.cur_master = 0
        self.delta, self.pos = [], 0
        self.todo, self.todo_pos = [], 0
        self.job_open = self.job_building = False
        self.job_last_ts = self.job_key = 0

    # ---- clocks ----

    def frame(self, v):
        """Jenkins' clock: epoch ms of virtual time v."""
        f = self.j0 + v // self.speed
        for at, wall in self.pauses:
            if v >= at:
                f += wall
        return f

    def start_frame(self, j, i):
        """Jenkins' timestamp of build i's start: frame(start), one ms later
        than the build before where compressing made them equal (builds of a
        job less than `speed` ms apart), so that the cursor comparisons of
        the simulator hold."""
        fs = j.fs
        while len(fs) <= i:
            f = self.frame(j.b[len(fs)][0])
            if fs and f <= fs[-1]:
                f = fs[-1] + 1
            fs.append(f)
        return fs[i]

    def publish(self):
        struct.pack_into("<q", self.clock, 0, self.now)

    def wait_until(self, v):
        target = self.base + v / (self.speed * 1000.0)
        now = time.monotonic()
        if now < target:
            time.sleep(target - now)
        else:
            self.max_lag_ms = max(self.max_lag_ms, (now - target) * 1000.0)
        if os.getppid() != self.parent:
            raise SystemExit("live.py: the script that started it is gone")
        if time.monotonic() > self.deadline:
            raise RuntimeError("the run takes longer than its time bound (%d s); the machine "
                               "is too slow for --speed %d" % (self.bound_s, self.speed))

    def schedule(self, at, kind, arg=0):
        heapq.heappush(self.heap, (at, self.seq, kind, arg))
        self.seq += 1

    # ---- redis, retried across a restart ----

    def rcall(self, *args):
        for attempt in range(50):
            try:
                return self.r.call(*args)
            except (OSError, ConnectionError):
                self.r.close()
                time.sleep(0.1)
        raise RuntimeError("redis unreachable")

    def rsend(self, *args):
        try:
            self.r.send(*args)
        except (OSError, ConnectionError):
            self.r.close()
            self.rcall(*args)

    def rpipe(self, cmds):
        for attempt in range(50):
            try:
                return self.r.pipeline(cmds)
            except (OSError, ConnectionError):
                self.r.close()
                time.sleep(0.1)
        raise RuntimeError("redis unreachable")

    # ---- Igor's keys (DOMAIN.md section 2) ----

    def mkey(self, j, key):
        # Igor names a cursorless job's markers after its last build; the
        # simulator keeps one set of them for the job as long as it has no
        # cursor (sim.c: job_key -1), which cursor 0 stands for here, so that
        # a job polled while a build runs does not post its builds again
        return "%s:%s:%d" % (j.ckey, CURSOR_FIELD, key)

    def advance_started(self, j):
        b, n, now = j.b, j.started, self.now
        while n < len(b) and b[n][0] <= now:
            n += 1
        j.started = n
        return n

    # ---- Igor's Jenkins monitor (sim.c) ----

    def start_master(self):
        jobs = self.masters[self.cur_master]
        cand = [j for j in jobs if j.appears_at <= self.now and self.advance_started(j)]
        cursors = self.rpipe([("HGET", j.ckey, CURSOR_FIELD) for j in cand])
        self.delta = [j for j, c in zip(cand, cursors)
                      if c is None or int(c) != self.start_frame(j, j.started - 1)]
        self.pos = 0
        self.job_open = False

    def open_job(self, j):
        last = j.started
        frm = max(0, last - JENKINS_LIST)
        now = self.now
        self.job_last_ts = self.start_frame(j, last - 1)
        self.job_building = any(j.b[i][1] > now for i in range(frm, last))
        self.todo, self.todo_pos = [], 0
        self.job_open = True
        c = self.rcall("HGET", j.ckey, CURSOR_FIELD)
        cursor = int(c) if c is not None else None
        self.job_key = cursor if cursor is not None else NO_CURSOR
        if cursor is None and not self.sc.handle_first_builds:
            self.rcall("HSET", j.ckey, CURSOR_FIELD, self.job_last_ts)
            self.job_open = False
            return
        for i in range(last - 1, frm - 1, -1):
            if j.b[i][1] > now:
                continue  # still building
            if cursor is not None and not cursor < self.start_frame(j, i) <= self.job_last_ts:
                continue
            self.todo.append(i + 1)

    def close_job(self, j):
        if not self.job_building:
            self.rsend("HSET", j.ckey, CURSOR_FIELD, self.job_last_ts)
        self.job_open = False

    def marked(self, j, number):
        return self.rcall("HEXISTS", self.mkey(j, self.job_key), number) == 1

    def mark(self, j, number):
        key = self.mkey(j, self.job_key)
        if j.marks_key is not None and j.marks_key != key:
            self.rsend("DEL", j.marks_key)
        self.rsend("HSET", key, number, "POSTED")
        j.marks_key = key

    def post(self, j, number):
        start, end, ok = j.b[number - 1]
        fs = self.start_frame(j, number - 1)
        body = json.dumps(
            {"details": {"type": "build", "source": "igor",
                         "created": str(int(time.time() * 1000))},
             "content": {"master": j.master, "project": {"name": j.name, "lastBuild": {
                 "number": number, "result": "SUCCESS" if ok else "FAILURE", "building": False,
                 "timestamp": str(fs), "duration": max(0, self.frame(end) - fs),
                 "url": "https://jenkins/job/%s/%d/" % (j.name, number)}}}},
            separators=(",", ":")).encode()
        self.posts += 1
        target = self.gate if self.gate else self.echo
        status, _ = target.request("POST", "/", body)
        if not 200 <= status < 300:
            self.answered_503 += 1
        return status

    def jenkins_step(self):
        while True:
            if self.cur_master >= len(self.masters):
                self.cur_master = 0
                self.schedule(self.now + self.sc.poll_interval_ms, EV_JENKINS, 1)
                return
            if self.pos >= len(self.delta) and not self.job_open:
                self.cur_master += 1
                if self.cur_master < len(self.masters):
                    self.start_master()
                continue
            j = self.delta[self.pos]
            if not self.job_open:
                self.open_job(j)
                if not self.job_open:
                    self.pos += 1
                    continue
            while self.todo_pos < len(self.todo) and self.marked(j, self.todo[self.todo_pos]):
                self.todo_pos += 1
            if self.todo_pos >= len(self.todo):
                self.close_job(j)
                self.pos += 1
                continue
            number = self.todo[self.todo_pos]
            self.todo_pos += 1
            status = self.post(j, number)
            if 200 <= status < 300:
                self.mark(j, number)
            else:
                # a non-2xx ends this master's cycle; the rest comes back next cycle
                self.job_open = False
                self.pos = len(self.delta)
            self.schedule(self.now + self.sc.post_latency_ms, EV_JENKINS, 0)
            return

    def on_jenkins(self, new_cycle):
        if new_cycle:
            self.cur_master = 0
            if not self.masters:
                return
            self.start_master()
        self.jenkins_step()

    # ---- faults ----

    def on_fault(self, f):
        kind = f["kind"]
        t0 = time.monotonic()
        if kind == "flushall":
            self.rcall("FLUSHALL")
        elif kind == "flushdb":
            self.rcall("FLUSHDB")
        elif kind == "restart":
            self.r.close()
            self.server.restart_empty()
        elif kind == "delete_pattern":
            cursor, n = b"0", 0
            while True:
                cursor, keys = self.rcall("SCAN", cursor, "MATCH", "igor:*", "COUNT", 1000)
                if keys:
                    n += self.rcall("UNLINK", *keys)
                if cursor in (b"0", 0):
                    break
        self.faults_done.append({"at_s": self.now // 1000, "kind": kind,
                                 "took_ms": round((time.monotonic() - t0) * 1000, 1)})
        log("%s at %s simulated" % (kind, scen.fmt_ms(self.now)))

    # ---- the gate and the operator ----

    def start_gate(self):
        """Starts `stormguard run` and waits for its first snapshot; the
        virtual clock stands still meanwhile."""
        t0 = time.monotonic()
        a, sc = self.a, self.sc
        flags, self.scaled, self.fixed = gate_settings(sc, self.speed)
        for attempt in range(10):
            listen, admin = free_port(), free_port()
            if listen == admin:
                continue
            self.gate_log = os.path.join(a.workdir, "gate-%s.log" % self.defence)
            argv = [a.sg_bin, "run", "--db", os.path.join(a.workdir, "stormguard.db"),
                    "--profile", "igor", "--redis", "redis://127.0.0.1:%d" % self.server.port,
                    "--downstream", "http://127.0.0.1:%d" % self.echo_port,
                    "--listen", "127.0.0.1:%d" % listen, "--admin", "127.0.0.1:%d" % admin,
                    "--rewarm", "on" if sc.rewarm else "off", "--log-file", self.gate_log] + flags
            self.gate_argv = argv
            p = self.procs.start(argv, stdout=subprocess.DEVNULL,
                                 stderr=open(self.gate_log + ".err", "w"))
            adm = Http(admin, timeout=5)
            deadline = time.monotonic() + 20
            ok = False
            while time.monotonic() < deadline and p.poll() is None:
                st, _ = adm.request("GET", "/healthz")
                if st == 200:
                    ok = True
                    break
                time.sleep(0.05)
            if not ok:
                self.procs.stop(p)
                err = open(self.gate_log + ".err").read() + (
                    open(self.gate_log).read() if os.path.exists(self.gate_log) else "")
                if "in use" in err:
                    continue
                raise RuntimeError("stormguard run did not start:\n" + err[-2000:])
            break
        else:
            raise RuntimeError("no free ports for stormguard run")
        self.gate_proc, self.admin_addr = p, "127.0.0.1:%d" % admin
        self.admin = adm
        self.gate = Http(listen, timeout=30)
        # what the simulator does at the same instant after the gate's start
        # (a fault at starts_at: the cold start) happens before its first
        # snapshot, which the daemon takes at its first tick, as there
        while self.heap and self.heap[0][0] == self.now:
            _, _, kind, arg = heapq.heappop(self.heap)
            self.dispatch(kind, arg)
        since = time.time()
        deadline = time.monotonic() + 20
        while True:
            st = adm.get_json("/v1/status")
            snap = st.get("snapshot")
            if snap and _epoch(snap["taken_at"]) >= since - 0.001:
                break
            if time.monotonic() > deadline or p.poll() is not None:
                raise RuntimeError("stormguard run took no snapshot within 20 s")
            time.sleep(0.05)
        log("the daemon's settings at --speed %d: %s" % (self.speed, ", ".join(
            "%s %s (%s simulated%s)" % (x["flag"], x["live"], x["simulated"],
                                        "" if x["exact"] else ", rounded")
            for x in self.scaled if x["flag"].startswith("--"))))
        pause_ms = (time.monotonic() - t0) * 1000.0
        self.base += pause_ms / 1000.0
        self.deadline += pause_ms / 1000.0
        self.pauses.append((self.now, int(round(pause_ms))))
        log("stormguard run pid %d on 127.0.0.1:%d (admin %s), baseline snapshot %s; "
            "the clock stood still %.1f s while it started" % (
                p.pid, listen, self.admin_addr, st["snapshot"]["id"], pause_ms / 1000.0))

    def operator_check(self):
        """sim.c's operator_check: act reacts_after once events are first
        held, on what is held then; held again later, again."""
        sc = self.sc
        if sc.action == "none":
            return
        if self.op_proc is not None:
            rc = self.op_proc.poll()
            if rc is None:
                return  # the command is still running
            self.procs.live.remove(self.op_proc)
            if rc == 0:
                self.operator_actions += 1
            else:
                log("the operator's command failed (exit %d), see %s" % (rc, self.op_log))
            self.op_proc = None
        held = self.admin.get_json("/v1/status")["held"]
        if not self.react_at and held > 0:
            self.react_at = self.now + sc.reacts_after_ms
        if not self.react_at or self.now < self.react_at:
            return
        self.react_at = 0
        if sc.action == "drop":
            cmd = ["drop", "--all", "--reason", "stale after the storm"]
        else:
            cmd = ["release", "--all", "--newest-only"]
        self.op_log = os.path.join(self.a.workdir, "operator-%d.log" % self.now)
        log("operator at %s simulated: stormguard %s (%d held)" % (
            scen.fmt_ms(self.now), " ".join(cmd), held))
        with open(self.op_log, "w") as out:
            self.op_proc = self.procs.start([self.a.sg_bin] + cmd + ["--admin", self.admin_addr,
                                                                       "--json"],
                                            stdout=out, stderr=subprocess.STDOUT)

    def drain(self):
        """After the end: waits for the gate to deliver what it took."""
        if self.op_proc is not None:
            try:
                self.op_proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
            self.operator_check()
        deadline = time.monotonic() + 60
        while True:
            st = self.admin.get_json("/v1/status")
            d = st["downstream"]
            if not st["pending"] and not d["inflight"] and not d["backlog"]:
                return st
            if time.monotonic() > deadline:
                log("the gate still has %d events pending after 60 s" % st["pending"])
                return st

    # ---- the run ----

    def close(self):
        """Closes the connections: the gate waits for idle keep-alive
        clients when it stops."""
        for c in (self.gate, self.admin, getattr(self, "echo", None), getattr(self, "r", None)):
            if c:
                c.close()

    def setup(self):
        a = self.a
        self.server = RedisServer(self.procs, a.workdir).start()
        self.r = Redis(self.server.port)
        self.r.connect()
        log("redis-server pid %d on 127.0.0.1:%d" % (self.server.p.pid, self.server.port))
        clock_path = os.path.join(a.workdir, "clock-%s" % self.defence)
        with open(clock_path, "wb") as f:
            f.write(b"\0" * 8)
        self.clock_fd = os.open(clock_path, os.O_RDWR)
        self.clock = mmap.mmap(self.clock_fd, 8)
        port_file = os.path.join(a.workdir, "echo-%s.port" % self.defence)
        self.echo_proc = self.procs.start(
            [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "echo.py"),
             "--world", a.world, "--clock", clock_path, "--port-file", port_file,
             "--duration-ms", str(self.sc.duration_ms), "--poll-ms",
             str(self.sc.poll_interval_ms), "--parent", str(os.getpid())],
            stdout=subprocess.DEVNULL, stderr=open(port_file + ".err", "w"))
        deadline = time.monotonic() + 10
        while not os.path.exists(port_file):
            if time.monotonic() > deadline or self.echo_proc.poll() is not None:
                raise RuntimeError("the Echo stand-in did not start: " +
                                   open(port_file + ".err").read())
            time.sleep(0.02)
        self.echo_port = int(open(port_file).read())
        self.echo = Http(self.echo_port)
        log("Echo stand-in pid %d on 127.0.0.1:%d" % (self.echo_proc.pid, self.echo_port))
        # virtual 0 now; Jenkins' clock ahead of the gate's (see the top)
        self.base = time.monotonic()
        epoch = int(time.time() * 1000)
        self.j0 = epoch + (WIPE_SKEW_MS - WIPE_SKEW_MS // self.speed)
        self.bound_s = int(self.until / 1000 / self.speed * 3 + 120)
        self.deadline = self.base + self.bound_s
        # Igor's state before the run: each announced job's cursor at its
        # last history build (sim.c init_run), written before the gate starts
        cmds = []
        for jobs in self.masters:
            for j in jobs:
                if j.announced and j.history:
                    cmds.append(("HSET", j.ckey, CURSOR_FIELD, self.start_frame(j, j.history - 1)))
        for i in range(0, len(cmds), 1000):
            self.rpipe(cmds[i:i + 1000])
        log("%d cursors written (%d jobs)" % (len(cmds), sum(len(m) for m in self.masters)))

    def dispatch(self, kind, arg):
        if kind == EV_JENKINS:
            self.on_jenkins(arg)
        elif kind == EV_FAULT:
            self.on_fault(self.sc.faults[arg])
        elif kind == EV_GATE:
            self.start_gate()
            self.schedule(self.now + TICK_MS, EV_TICK)
        elif kind == EV_TICK:
            self.operator_check()
            self.schedule(self.now + TICK_MS, EV_TICK)

    def run(self):
        sc = self.sc
        if self.defence == "stormguard":
            self.schedule(sc.starts_at_ms, EV_GATE)
        if self.masters:
            self.schedule(1000, EV_JENKINS, 1)
        for i, f in enumerate(sc.faults):
            self.schedule(f["at"], EV_FAULT, i)
        wall0 = time.monotonic()
        next_report = 0
        while self.heap:
            at, _, kind, arg = heapq.heappop(self.heap)
            if at > self.until:
                break
            self.wait_until(at)
            self.now = at
            self.publish()
            self.dispatch(kind, arg)
            if at >= next_report:
                next_report = at + 30 * 60000
                log("%s: %s of %s simulated, %d posts, late by %.1f s simulated at most" % (
                    self.defence, scen.fmt_ms(at - at % 60000) if at >= 60000 else "0m",
                    scen.fmt_ms(self.until), self.posts, self.max_lag_ms * self.speed / 1000))
        self.now = self.until
        self.publish()
        held, gate_status = 0, None
        if self.gate:
            gate_status = self.drain()
            held = gate_status["held"]
            # idle keep-alive clients would hold the gate's stop up to its read_timeout
            self.gate.close()
            self.admin.close()
            self.procs.stop(self.gate_proc, wait_s=20)
        res = self.echo.get_json("/_sim/results")
        row = {"name": self.defence}
        for k in ("spurious", "genuine", "genuine_on_time", "genuine_delayed", "genuine_lost",
                  "genuine_superseded", "delay_p50_s", "delay_max_s", "inversions"):
            row[k] = res[k]
        row["held_at_end"] = held
        row["operator_actions"] = self.operator_actions
        row["peak_triggers_per_min"] = res["peak_triggers_per_min"]
        row["posts"] = self.posts
        row["answered_503"] = self.answered_503
        run = {"wall_s": round(time.monotonic() - wall0, 1),
               "max_lag_s": round(self.max_lag_ms * self.speed / 1000.0, 1),
               "echo": res["echo"], "faults": self.faults_done}
        if self.collide:
            run["jobs_with_starts_moved_1ms_apart"] = self.collide
        if gate_status:
            run["gate"] = {k: gate_status.get(k) for k in ("mode", "wipes", "storm_signals",
                                                            "rewarms", "counts")}
            run["clock_pauses_s"] = [round(w / 1000.0, 2) for _, w in self.pauses]
        row["live"] = run
        out = {"row": row}
        if self.gate:
            out["scaled"], out["not_scaled"] = self.scaled, self.fixed
        return out


def cmd_run(a):
    sc = scen.Scenario(a.scenario)
    bad = sc.unsupported()
    if bad:
        for b in bad:
            log("not supported live: " + b)
        return 2
    with open(a.world) as f:
        world = json.load(f)
    procs = Procs(a.pidfile)

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    emu = None
    try:
        emu = Emulator(a, sc, world, procs)
        emu.setup()
        out = emu.run()
        out["notes"] = sc.notes()
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
        return 0
    finally:
        if emu:
            emu.close()
        procs.stop_all()


def cmd_check(a):
    sc = scen.Scenario(a.scenario)
    bad = sc.unsupported()
    for b in bad:
        log("not supported live: " + b)
    if bad:
        log("faults that run live: " + "; ".join(
            "%s (%s)" % kv for kv in scen.SUPPORTED_FAULTS.items()))
    for n in sc.notes():
        log("note: " + n)
    return 2 if bad else 0


def cmd_cut(a):
    return 0 if scen.cut(a.scenario, a.duration, a.out) else 1


def cmd_merge(a):
    sc = scen.Scenario(a.scenario)
    doc = {"scenario": sc.name, "seed": a.seed, "duration_s": sc.duration_ms // 1000,
           "live": True, "speed": a.speed, "defences": []}
    if a.cut_from:
        doc["cut_short"] = {"from_s": scen.duration_ms(a.cut_from) // 1000,
                            "note": "the scenario cut short by --duration: faults and changes "
                                    "after the cut left out; compare it with the virtual run "
                                    "of the same cut (--compare)"}
    scaled = not_scaled = notes = None
    for path in a.rows:
        with open(path) as f:
            r = json.load(f)
        doc["defences"].append(r["row"])
        scaled = r.get("scaled", scaled)
        not_scaled = r.get("not_scaled", not_scaled)
        notes = r.get("notes", notes)
    if scaled:
        doc["scaled"] = scaled
        doc["not_scaled"] = not_scaled
    if notes:
        doc["notes"] = notes
    if a.virtual:
        with open(a.virtual) as f:
            v = json.load(f)
        doc["virtual"] = v["defences"]
        vrows = {r["name"]: r for r in v["defences"]}
        agree = {}
        for r in doc["defences"]:
            vr = vrows.get(r["name"])
            if vr:
                agree[r["name"]] = {k: {"live": r[k], "virtual": vr[k]}
                                    for k in ("spurious", "genuine_lost", "held_at_end")}
                agree[r["name"]]["all_equal"] = all(
                    x["live"] == x["virtual"] for x in agree[r["name"]].values())
        doc["agreement"] = agree
    json.dump(doc, sys.stdout)
    sys.stdout.write("\n")
    return 0


def main():
    ap = argparse.ArgumentParser(prog="live.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--defence", choices=("none", "stormguard"), required=True)
    r.add_argument("--scenario", required=True)
    r.add_argument("--world", required=True)
    r.add_argument("--speed", type=int, required=True)
    r.add_argument("--workdir", required=True)
    r.add_argument("--pidfile")
    r.add_argument("--sg-bin", required=True)
    k = sub.add_parser("check")
    k.add_argument("scenario")
    c = sub.add_parser("cut")
    c.add_argument("scenario")
    c.add_argument("duration")
    c.add_argument("out")
    m = sub.add_parser("merge")
    m.add_argument("--scenario", required=True)
    m.add_argument("--seed", type=int, required=True)
    m.add_argument("--speed", type=int, required=True)
    m.add_argument("--cut-from")
    m.add_argument("--virtual")
    m.add_argument("rows", nargs="+")
    a = ap.parse_args()
    try:
        return {"run": cmd_run, "check": cmd_check, "cut": cmd_cut,
                "merge": cmd_merge}[a.cmd](a)
    except (RuntimeError, ValueError, OSError, RespError) as e:
        log("error: %s" % e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
