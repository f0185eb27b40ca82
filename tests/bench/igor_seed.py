#!/usr/bin/env python3
"""Prints, as RESP for `redis-cli --pipe`, the HSETs of N Igor Jenkins jobs
(DOMAIN.md section 2): per job a cursor hash and a posted-marker hash of 3
builds, as seed_igor in tests/lib.sh.  usage: igor_seed.py N"""
import sys

n = int(sys.argv[1])
out = sys.stdout.buffer


def cmd(*args):
    args = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    out.write(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))


for i in range(1, n + 1):
    job = "team-a/service-%d" % i
    base = "igor:jenkins-prod:%s:%s" % (job.upper(), job)
    cursor = 1526030000000 + i * 1000
    cmd("HSET", base, "lastPollCycleTimestamp", cursor)
    cmd("HSET", "%s:lastPollCycleTimestamp:%d" % (base, cursor),
        100 + i, "POSTED", 101 + i, "POSTED", 102 + i, "POSTED")
