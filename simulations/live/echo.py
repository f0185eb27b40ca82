"""The Echo stand-in of the live simulation (simulations/live.sh).

Listens on 127.0.0.1 (a free port, written to --port-file) and takes what
Echo takes: any method and path, a build event as Igor posts it (DOMAIN.md
section 3). Like Echo (DOMAIN.md section 7) it triggers every pipeline of
the job (pipelines_per_job of its master) for a SUCCESS build that is not
building, with no de-duplication, and counts those triggers with the
simulator's metrics (src/sim/sim.c, echo_fire and finish): spurious (a
build that had triggered before, in the history or in the run), genuine on
time (within 2 poll intervals of the build's end), delayed, lost,
superseded, inversions (per job and pipeline: a build after a newer one),
the delays and the peak of triggers per simulated minute.

Times are simulated: the emulator writes its virtual clock (ms from the
scenario's start) into --clock, 8 bytes, and a trigger happens at the
clock's value when it arrives.

GET /_sim/results answers the totals as JSON (the field names of
`stormguard simulate --json`); GET /_sim/healthz answers 200."""

import argparse
import json
import mmap
import os
import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Counts:
    def __init__(self, world, duration_ms, poll_ms):
        self.lock = threading.Lock()
        self.duration_ms = duration_ms
        self.poll_ms = poll_ms
        self.minutes = (duration_ms + 2 * poll_ms + 59999) // 60000
        self.triggers = [0] * self.minutes
        self.jobs = {}  # (master, name) -> job record
        for m in world["masters"]:
            p = m["pipelines_per_job"]
            for j in m["jobs"]:
                builds = j["builds"]
                fired = bytearray(len(builds))
                top = 0
                if j["announced"]:
                    # the history: announced, and each SUCCESS build triggered once
                    for b in range(j["history"]):
                        if builds[b][2]:
                            fired[b] = 1
                            top = b + 1
                self.jobs[(m["name"], j["name"])] = {
                    "builds": builds, "fired": fired, "top": top, "pipelines": p}
        self.spurious = self.on_time = self.delayed = self.inversions = 0
        self.delays = []
        self.events = self.builds = self.other = self.unknown = 0

    def fire(self, now, master, name, number):
        j = self.jobs.get((master, name))
        if j is None or not 1 <= number <= len(j["builds"]):
            self.unknown += 1
            return
        p = j["pipelines"]
        if p <= 0:
            return
        minute = min(max(now, 0) // 60000, self.minutes - 1)
        self.triggers[minute] += p
        if number < j["top"]:
            self.inversions += p
        if number > j["top"]:
            j["top"] = number
        if j["fired"][number - 1]:
            self.spurious += p
            return
        j["fired"][number - 1] = 2  # in the run (1: before it)
        ended = j["builds"][number - 1][1]
        if not 0 <= ended <= self.duration_ms:
            return  # a build of before the run that never triggered: neither
        delay = now - ended
        if delay <= 2 * self.poll_ms:
            self.on_time += p
        else:
            self.delayed += p
        self.delays.extend([delay] * p)

    def results(self):
        owed = superseded = 0
        for j in self.jobs.values():
            p, builds, fired = j["pipelines"], j["builds"], j["fired"]
            newer = False  # a newer build of the job triggered in the run
            for b in range(len(builds) - 1, -1, -1):
                start, end, ok = builds[b]
                if ok and 0 <= end <= self.duration_ms:
                    owed += p
                    if not fired[b] and newer:
                        superseded += p
                newer = newer or fired[b] == 2
        d = sorted(self.delays)
        return {
            "spurious": self.spurious,
            "genuine": owed,
            "genuine_on_time": self.on_time,
            "genuine_delayed": self.delayed,
            "genuine_lost": owed - self.on_time - self.delayed,
            "genuine_superseded": superseded,
            "delay_p50_s": round(d[(len(d) - 1) // 2] / 1000.0, 3) if d else 0.0,
            "delay_max_s": round(d[-1] / 1000.0, 3) if d else 0.0,
            "inversions": self.inversions,
            "peak_triggers_per_min": max(self.triggers) if self.triggers else 0,
            "echo": {"events": self.events, "builds": self.builds, "other": self.other,
                     "unknown_builds": self.unknown},
        }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", required=True)
    ap.add_argument("--clock", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--duration-ms", type=int, required=True)
    ap.add_argument("--poll-ms", type=int, required=True)
    ap.add_argument("--parent", type=int, default=0, help="exit once this pid is gone")
    a = ap.parse_args()
    with open(a.world) as f:
        counts = Counts(json.load(f), a.duration_ms, a.poll_ms)
    fd = os.open(a.clock, os.O_RDONLY)
    clock = mmap.mmap(fd, 8, prot=mmap.PROT_READ)

    def now():
        return struct.unpack_from("<q", clock, 0)[0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = 1 << 16  # the answer in one write, flushed after each request

        def setup(self):
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def reply(self, status, doc):
            out = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def any(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n > 0 else b""
            if self.path.startswith("/_sim/"):
                if self.path == "/_sim/results":
                    with counts.lock:
                        return self.reply(200, counts.results())
                return self.reply(200, {"ok": True})
            t = now()
            try:
                ev = json.loads(body)
                build = ev["details"]["type"] == "build"
            except (ValueError, KeyError, TypeError):
                ev, build = None, False
            with counts.lock:
                counts.events += 1
                if not build:
                    counts.other += 1
                else:
                    counts.builds += 1
                    c = ev.get("content", {})
                    lb = c.get("project", {}).get("lastBuild", {})
                    # Echo: every matching pipeline, SUCCESS and not building
                    if lb.get("result") == "SUCCESS" and not lb.get("building"):
                        counts.fire(t, c.get("master"), c["project"].get("name"),
                                    int(lb.get("number", 0)))
            self.reply(200, {"eventProcessed": True})

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = any

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, a.port_file)
    if a.parent:
        def watch():
            import time
            while True:
                try:
                    os.kill(a.parent, 0)
                except OSError:
                    os._exit(1)
                time.sleep(0.5)
        threading.Thread(target=watch, daemon=True).start()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
