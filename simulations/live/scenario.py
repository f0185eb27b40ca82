"""The parts of a scenario (simulations/README.md) the live run needs, with
the simulator's defaults (src/sim/scenario.c). `stormguard simulate
--world` has checked the file already; this reads what it needs and says
what cannot run against a real server."""

import json
import re

_UNITS = {"": 1000, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000, "ms": 1}


def duration_ms(text):
    """"250ms", "90s", "15m", "2h", "7d" (a bare number is seconds), as the
    product parses them (sg_parse_duration_ms)."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d|)", text or "")
    if not m:
        raise ValueError("not a duration such as \"250ms\", \"90s\", \"15m\" or \"2h\": %r" % text)
    return int(m.group(1)) * _UNITS[m.group(2)]


def fmt_ms(ms):
    for unit, size in (("h", 3600000), ("m", 60000), ("s", 1000)):
        if ms % size == 0 and ms >= size:
            return "%d%s" % (ms // size, unit)
    return "%dms" % ms


# the faults a real redis-server can be given, and why the others cannot
SUPPORTED_FAULTS = {
    "flushall": "FLUSHALL on the server",
    "flushdb": "FLUSHDB of database 0",
    "restart": "the redis-server stopped and started empty on the same port",
    "delete_pattern": "every igor:* key deleted (SCAN and UNLINK); the gate's canary stays",
}
REFUSED_FAULTS = {
    "evict": "which keys an eviction takes is the simulator's random draw; a real "
    "allkeys-lru server evicts by its own LRU clock, so the two runs would lose "
    "different keys",
    "failover_empty": "a promoted empty replica behind the same address needs a second "
    "server and a proxy in front of both; restart is the nearest fault that runs live",
    "park": "the Docker monitor and Clouddriver's cold first read are not emulated",
}


class Scenario:
    def __init__(self, path):
        with open(path) as f:
            d = json.load(f)
        self.raw = d
        self.name = d["name"]
        self.seed = d.get("seed", 1)
        self.duration_ms = duration_ms(d["duration"])
        ig = d.get("igor", {})
        self.poll_interval_ms = duration_ms(ig.get("poll_interval", "60s"))
        self.handle_first_builds = ig.get("handle_first_builds", True)
        self.post_latency_ms = duration_ms(ig.get("post_latency", "50ms"))
        sg = d.get("stormguard", {})
        self.starts_at_ms = duration_ms(sg.get("starts_at", "0s"))
        self.rewarm = sg.get("rewarm", False)
        self.snapshot_interval_ms = duration_ms(sg.get("snapshot_interval", "60s"))
        op = d.get("operator", {})
        self.reacts_after_ms = duration_ms(op.get("reacts_after", "15m"))
        self.action = op.get("action", "release-newest")
        self.faults = [
            {"at": duration_ms(f["at"]), "kind": f["kind"]} for f in d.get("faults", [])
        ]
        self.changes = d.get("changes", [])
        self.docker = d.get("docker", [])

    def unsupported(self):
        """What of the scenario cannot run live: a list of sentences."""
        out = []
        if self.docker:
            out.append("docker: the Docker monitor is not emulated (Jenkins masters only)")
        for i, f in enumerate(self.faults):
            why = REFUSED_FAULTS.get(f["kind"])
            if why:
                out.append("faults[%d] %s: %s" % (i, f["kind"], why))
        return out

    def notes(self):
        out = []
        for c in self.changes:
            if c.get("kind") == "set_threshold":
                out.append("set_threshold at %s changes only the igor-threshold defence, "
                           "which does not run live" % c["at"])
        return out


def cut(path, duration_text, out_path):
    """Writes the scenario cut short to duration_text: faults after the cut
    are left out (they would never happen), and so are changes."""
    with open(path) as f:
        d = json.load(f)
    full = duration_ms(d["duration"])
    ms = duration_ms(duration_text)
    if ms >= full:
        return False
    d["duration"] = fmt_ms(ms)
    d["faults"] = [f for f in d.get("faults", []) if duration_ms(f["at"]) <= ms]
    d["changes"] = [c for c in d.get("changes", []) if duration_ms(c["at"]) <= ms]
    if not d["faults"]:
        del d["faults"]
    if not d["changes"]:
        del d["changes"]
    with open(out_path, "w") as f:
        json.dump(d, f, indent=1)
    return True
