#!/usr/bin/env python3
"""The module graph of stormguard's includes, and a check that it has no
circle. A module is a source file and its header (src/gate/core.c with
include/stormguard/gate/core.h), or, when a module's files share a private
header (src/store/store_int.h, and store_pg_int.h beside it), every source
that includes it; module A
depends on B when A's .c or .h includes B's header. Layers must depend downwards only (base <- redis <- store <- snapshot <-
config <- gate <- sim <- cli), so a header of a lower layer including one
of a higher layer fails the check too. Inside the gate, calls run one way
as well: daemon -> admin -> gate -> core -> {hold -> guard} -> the gate's
parts (http, event, classify, storm, journal, forward, delivery, metrics),
which may include one another but none of those above them.

usage: scripts/check-includes.py [--graph]   (--graph prints every edge)
Exit 0 when the graph is acyclic and layered, 1 otherwise."""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
LAYERS = ["base", "redis", "store", "snapshot", "config", "gate", "sim", "cli"]
# rank inside the gate layer: a module includes only lower ranks (rank 0
# modules one another too)
GATE_RANK = {"daemon": 6, "admin": 5, "gate": 4, "core": 3, "hold": 2, "guard": 1}
INC = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def private_module(name):
    """The module whose private half the header NAME is: X_int.h is X's;
    X_Y_int.h is also X's, one more of its private headers (store_pg_int.h:
    the store's PostgreSQL backend)."""
    base = os.path.splitext(os.path.basename(name))[0][:-4]
    return base.split("_")[0]


def module_of(path):
    """(layer, name) of a source or header path relative to ROOT."""
    parts = path.split(os.sep)
    if path.endswith("_int.h"):
        return parts[1], private_module(parts[2])
    if parts[0] == "include":
        return parts[2], os.path.splitext(parts[3])[0]
    if parts[0] == "src" and len(parts) == 3:
        return parts[1], os.path.splitext(parts[2])[0]
    if parts[0] == "src":
        return "cli", "main"
    return None


def included_module(inc, src_dir):
    if inc.startswith("stormguard/"):
        parts = inc.split("/")
        if len(parts) == 3:
            return parts[1], os.path.splitext(parts[2])[0]
        return None
    # a private header next to the source ("cli.h", "store_int.h"), or in
    # a layer's folder seen from src/ ("cli/cli.h"); X_int.h is module X's
    # private half, shared by the files that implement it
    layer = inc.split("/")[0] if "/" in inc else os.path.basename(src_dir)
    name = os.path.splitext(os.path.basename(inc))[0]
    return layer, private_module(inc) if name.endswith("_int") else name


edges = {}
for top in ("src", "include"):
    for d, _, files in os.walk(os.path.join(ROOT, top)):
        for f in files:
            if not f.endswith((".c", ".h")):
                continue
            path = os.path.relpath(os.path.join(d, f), ROOT)
            m = module_of(path)
            if not m:
                continue
            text = open(os.path.join(ROOT, path), encoding="utf-8").read()
            incs = INC.findall(text)
            if f.endswith(".c"):
                for inc in incs:
                    if inc.endswith("_int.h") and "/" not in inc:
                        m = included_module(inc, d)  # one of the module's files
            for inc in incs:
                t = included_module(inc, d)
                if t and t != m:
                    edges.setdefault(m, set()).add(t)

problems = []
for a, targets in sorted(edges.items()):
    for b in sorted(targets):
        if LAYERS.index(b[0]) > LAYERS.index(a[0]):
            problems.append("%s/%s includes %s/%s, a higher layer" % (a + b))
        elif a[0] == b[0] == "gate":
            ra, rb = GATE_RANK.get(a[1], 0), GATE_RANK.get(b[1], 0)
            if rb > ra or (rb == ra and ra > 0):
                problems.append("%s/%s includes %s/%s, above it in the gate" % (a + b))

# cycles, by depth-first search
state, stack = {}, []


def visit(n):
    state[n] = 1
    stack.append(n)
    for t in sorted(edges.get(n, ())):
        if state.get(t) == 1:
            cyc = stack[stack.index(t):] + [t]
            problems.append("circle: " + " -> ".join("%s/%s" % m for m in cyc))
        elif not state.get(t):
            visit(t)
    stack.pop()
    state[n] = 2


for n in sorted(edges):
    if not state.get(n):
        visit(n)

if "--graph" in sys.argv:
    for a, targets in sorted(edges.items()):
        print("%s/%s -> %s" % (a[0], a[1], ", ".join("%s/%s" % t for t in sorted(targets))))
if problems:
    print("\n".join("check-includes: " + p for p in problems), file=sys.stderr)
    sys.exit(1)
print("check-includes: %d modules, %d edges, no circle, layers (and the gate's parts) "
      "depend downwards" %
      (len(set(edges) | {t for ts in edges.values() for t in ts}),
       sum(len(t) for t in edges.values())))
