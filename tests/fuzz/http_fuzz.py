#!/usr/bin/env python3
"""A mutational HTTP fuzzer against a running `stormguard run`.

It sends COUNT requests, each made from a well-formed seed (an Igor build
event, a Jenkins Notification event, a pass-through webhook, a GET with a
query) and a few random mutations of its request line, headers, framing or
body, one request per connection from THREADS threads. A fraction repeats
an earlier seed unchanged, so that replays occur. Every request and its
answer go to OUT (JSON lines).

Then, once the gate has nothing pending, it checks the gate's one promise
about input, "answered 200 <=> journaled <=> delivered exactly once or
suppressed as a true replay":
  - every 200 answer names an event that is in the journal (its kind and
    state as answered, or later ones of the same lifecycle);
  - the journal holds no event that was not answered 200;
  - every journaled event that is not a suppressed replay reached the sink
    exactly once, with the method, path and body that were posted;
  - every suppressed replay names a build accepted before as new/unknown;
  - no answer is a 5xx other than 503, and the gate is still alive.
Prints "ok" or the violations (first 20) and exits 0 or 1.

usage: http_fuzz.py --port P --admin HOST:PORT --sink-log FILE --db FILE --out FILE
                    [--count N] [--seed S] [--threads T]
"""
import argparse
import hashlib
import json
import random
import socket
import sqlite3
import sys
import threading
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--admin", required=True)
ap.add_argument("--sink-log", required=True)
ap.add_argument("--db", required=True, help="the gate's store, read for its journal")
ap.add_argument("--out", required=True)
ap.add_argument("--count", type=int, default=3000)
ap.add_argument("--seed", type=int, default=int(time.time()))
ap.add_argument("--threads", type=int, default=8)
ap.add_argument("--settle", type=float, default=60, help="seconds to wait for deliveries")
a = ap.parse_args()
rng = random.Random(a.seed)
print("# http_fuzz seed %d, %d requests" % (a.seed, a.count), file=sys.stderr)

METHODS = ["POST", "PUT", "PATCH", "GET", "DELETE"]
TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def igor(job, number, master="jenkins-fz"):
    return json.dumps({"details": {"type": "build", "source": "igor", "created": "1"},
                       "content": {"master": master, "project": {"name": job, "lastBuild": {
                           "number": number, "result": "SUCCESS", "building": False,
                           "timestamp": str(1526030000000 + number), "duration": 1}}}}).encode()


def notification(job, number):
    return json.dumps({"name": job, "url": "job/%s/" % job, "build": {
        "number": number, "phase": "COMPLETED", "status": "SUCCESS",
        "url": "job/%s/%d/" % (job, number), "timestamp": 1526030000000 + number}}).encode()


def seed():
    kind = rng.random()
    job = "team-fz/job-%d" % rng.randrange(40)
    number = rng.randrange(1, 60)
    if kind < 0.5:
        return {"method": "POST", "path": "/", "body": igor(job, number)}
    if kind < 0.7:
        return {"method": "POST", "path": "/", "body": notification(job, number)}
    if kind < 0.9:
        return {"method": rng.choice(METHODS[:3]), "path": "/webhooks/git",
                "body": json.dumps({"ref": "refs/heads/main", "n": rng.randrange(1 << 30)}).encode()}
    return {"method": "GET", "path": "/health?probe=%d" % rng.randrange(1000), "body": b""}


def flip(b, n):
    b = bytearray(b)
    for _ in range(n):
        if not b:
            break
        op = rng.random()
        i = rng.randrange(len(b))
        if op < 0.4:
            b[i] = rng.randrange(256)
        elif op < 0.7:
            del b[i:i + rng.randrange(1, 8)]
        else:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
    return bytes(b)


def mutate(req):
    """Returns (raw bytes, description); req is changed in place to what a
    correct reader would take the request to be (for the checks)."""
    headers = [("Host", "gate"), ("Content-Type", "application/json"), ("User-Agent", "fuzz")]
    framing = "length"
    notes = []
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        m = rng.randrange(12)
        if m == 0:
            req["method"] = rng.choice(["", " ", "P(ST", 'P"ST', "\xff\xfe", "po st", "GET\t",
                                        "X" * 40, "".join(rng.choice(TOKEN_CHARS) for _ in range(5))])
            notes.append("method")
        elif m == 1:
            req["path"] = rng.choice(["", "*", "http://x/", "/a b", "/\xe9", "/%zz", "/a?b=\x01",
                                      "/" + "p" * rng.randrange(1, 3000), "//double", "/?"])
            notes.append("path")
        elif m == 2:
            headers.append(("X-Fold", "one\r\n two"))
            notes.append("obs-fold")
        elif m == 3:
            headers.append((rng.choice(["X-Bad", "X Bad", "X:Bad", "", "X\x00"]),
                            rng.choice(["v\x00v", "v\x7fv", "\xe9t\xe9", "v" * 5000, ""])))
            notes.append("header")
        elif m == 4:
            framing = rng.choice(["chunked", "chunked-bad", "both", "two-lengths", "short", "long"])
            notes.append(framing)
        elif m == 5:
            req["body"] = flip(req["body"], rng.randrange(1, 6))
            notes.append("body")
        elif m == 6:
            req["body"] = req["body"][:rng.randrange(len(req["body"]) + 1)]
            notes.append("cut")
        elif m == 7:
            headers.append(("Transfer-Encoding", rng.choice(["gzip", "chunked, gzip", "identity"])))
            notes.append("te")
        elif m == 8:
            headers.append(("Expect", rng.choice(["100-continue", "nothing"])))
            notes.append("expect")
        elif m == 9:
            headers.extend(("X-Many-%d" % i, "v") for i in range(rng.choice([50, 99, 120])))
            notes.append("many")
        elif m == 10:
            req["version"] = rng.choice(["HTTP/1.0", "HTTP/2.0", "HTTP/1.1 ", "HTTX/1.1"])
            notes.append("version")
        else:
            headers = [(k.upper(), v) for k, v in headers]
            notes.append("case")
    body = req["body"]
    line = ("%s %s %s\r\n" % (req["method"], req["path"], req.get("version", "HTTP/1.1")))
    out = [line.encode("latin-1")]
    for k, v in headers:
        out.append(("%s: %s\r\n" % (k, v)).encode("latin-1"))
    if framing == "length":
        out.append(b"Content-Length: %d\r\n" % len(body))
    elif framing in ("chunked", "chunked-bad"):
        out.append(b"Transfer-Encoding: chunked\r\n")
    elif framing == "both":
        out.append(b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(body))
    elif framing == "two-lengths":
        out.append(b"Content-Length: %d\r\nContent-Length: %d\r\n" % (len(body), len(body) + 1))
    elif framing == "short":
        out.append(b"Content-Length: %d\r\n" % max(0, len(body) - 3))
        req["body"] = body[:max(0, len(body) - 3)]  # the rest reads as the next request
    elif framing == "long":
        out.append(b"Content-Length: %d\r\n" % (len(body) + 5))
    out.append(b"Connection: close\r\n\r\n")
    if framing == "chunked":
        i = 0
        while i < len(body):
            n = rng.randrange(1, 64)
            out.append(b"%x\r\n%s\r\n" % (len(body[i:i + n]), body[i:i + n]))
            i += n
        out.append(b"0\r\n\r\n")
    elif framing == "chunked-bad":
        out.append(rng.choice([b"zz\r\n", b"-1\r\n", b"%x\r\n" % (len(body) + 100)]) + body)
    elif framing == "both":
        out.append(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    else:
        out.append(body)
    return b"".join(out), ",".join(notes) or "seed"


records = []
lock = threading.Lock()
history = []  # earlier seeds, repeated unchanged now and then


def send(raw):
    try:
        s = socket.create_connection(("127.0.0.1", a.port), timeout=5)
    except OSError as e:
        return None, "connect: %s" % e
    try:
        s.sendall(raw)
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        return None, "timeout"
    except OSError as e:
        return None, str(e)
    finally:
        s.close()
    while data.startswith(b"HTTP/1.1 1"):  # 100 Continue before the answer
        data = data.partition(b"\r\n\r\n")[2]
    if not data.startswith(b"HTTP/"):
        return None, "no status" if not data else "garbage %r" % data[:40]
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        body, pos = b"", 0
        while True:
            nl = rest.find(b"\r\n", pos)
            if nl < 0:
                break
            n = int(rest[pos:nl].split(b";")[0] or b"0", 16)
            if n == 0:
                break
            body += rest[nl + 2:nl + 2 + n]
            pos = nl + 4 + n
        rest = body
    return status, rest.decode("utf-8", "replace")


def worker(k):
    for i in range(k, a.count, a.threads):
        with lock:
            if history and rng.random() < 0.15:
                req = dict(rng.choice(history))
                raw, what = mutate_none(req)
            else:
                req = seed()
                history.append(dict(req))
                raw, what = mutate(req)
        status, body = send(raw)
        rec = {"i": i, "what": what, "status": status, "answer": body,
               "method": req["method"], "path": req["path"],
               "sha256": hashlib.sha256(req["body"]).hexdigest()}
        with lock:
            records.append(rec)


def mutate_none(req):
    body = req["body"]
    raw = (("%s %s HTTP/1.1\r\nHost: gate\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\nConnection: close\r\n\r\n" % (req["method"], req["path"], len(body)))
           .encode("latin-1") + body)
    return raw, "repeat"


threads = [threading.Thread(target=worker, args=(k,)) for k in range(a.threads)]
for t in threads:
    t.start()
for t in threads:
    t.join()
with open(a.out, "w") as f:
    for r in sorted(records, key=lambda r: r["i"]):
        f.write(json.dumps(r) + "\n")


def admin(path):
    with urllib.request.urlopen("http://%s%s" % (a.admin, path), timeout=10) as r:
        return json.load(r)


errors = []
deadline = time.time() + a.settle
while time.time() < deadline:
    try:
        if admin("/v1/status")["pending"] == 0:
            break
    except OSError as e:
        errors.append("the gate does not answer its admin API: %s" % e)
        break
    time.sleep(0.2)
else:
    errors.append("events still pending after %.0f s" % a.settle)
time.sleep(0.3)

answered = {}
by_status = {}
for r in records:
    by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    if r["status"] == 200:
        try:
            ans = json.loads(r["answer"])
        except ValueError:
            errors.append("request %d (%s): a 200 without a JSON answer: %r" % (r["i"], r["what"], r["answer"][:80]))
            continue
        answered[ans["id"]] = (r, ans)
    elif r["status"] is not None and r["status"] >= 500 and r["status"] != 503:
        errors.append("request %d (%s): answered %d: %s" % (r["i"], r["what"], r["status"], r["answer"][:120]))

events = {}
db = sqlite3.connect("file:%s?mode=ro" % a.db, uri=True)
db.text_factory = lambda b: b.decode("utf-8", "replace")
for row in db.execute("SELECT id, kind, state, method, path, source, job, number, last_error "
                      "FROM event"):
    e = dict(zip(("id", "kind", "state", "method", "path", "source", "job", "number",
                  "last_error"), row))
    if e["source"] is None:
        del e["source"]
    events[e["id"]] = e
ledger = set(db.execute("SELECT source, job, number FROM ledger"))
db.close()
accepted = set((e["source"], e["job"], e["number"]) for e in events.values()
               if "source" in e and e["kind"] in ("new", "unknown"))
for b in sorted(ledger - accepted)[:5]:
    errors.append("the ledger holds %r, which no journaled event accepted" % (b,))

sink = {}
with open(a.sink_log) as f:
    for line in f:
        if line.endswith("\n"):
            rec = json.loads(line)
            if 200 <= rec["status"] < 300:
                sink.setdefault(rec["event_id"], []).append(rec)

for id_, (r, ans) in answered.items():
    e = events.get(id_)
    if not e:
        errors.append("request %d (%s): answered 200 as event %d, not in the journal" % (r["i"], r["what"], id_))
        continue
    if e["kind"] != ans["kind"]:
        errors.append("event %d: answered kind %s, journaled %s" % (id_, ans["kind"], e["kind"]))
    if e["method"] != r["method"] or e["path"] != r["path"]:
        errors.append("event %d (%s): journaled %r %r, posted %r %r" % (id_, r["what"], e["method"], e["path"], r["method"], r["path"]))
    got = sink.get(str(id_), [])
    if e["state"] == "suppressed":
        if got:
            errors.append("event %d: suppressed, yet delivered %d times" % (id_, len(got)))
        if e["kind"] != "replay" or "source" not in e:
            errors.append("event %d: suppressed but not a replay of a build: %r" % (id_, e))
        continue
    if e["state"] != "forwarded":
        errors.append("event %d (%s): state %s (%s)" % (id_, r["what"], e["state"], e.get("last_error")))
        continue
    if len(got) != 1:
        errors.append("event %d (%s): forwarded, reached the sink %d times" % (id_, r["what"], len(got)))
        continue
    d = got[0]
    # the sink (Python's http.server) turns a leading "//" into "/"
    path = "/" + r["path"].lstrip("/") if r["path"].startswith("//") else r["path"]
    if d["method"] != r["method"] or d["path"] != path or d["sha256"] != r["sha256"]:
        errors.append("event %d (%s): delivered %s %s (body %s), posted %s %s (body %s)" % (
            id_, r["what"], d["method"], d["path"], d["sha256"][:8], r["method"], r["path"], r["sha256"][:8]))

first_accept = {}
for id_ in sorted(events):
    e = events[id_]
    if id_ not in answered:
        errors.append("event %d is in the journal but was never answered 200: %r" % (id_, e))
    if "source" in e:
        b = (e["source"], e["job"], e["number"])
        if e["kind"] in ("new", "unknown"):
            first_accept.setdefault(b, id_)
        elif e["state"] == "suppressed" and first_accept.get(b, id_) >= id_:
            errors.append("event %d suppressed as a replay of %r, never accepted before" % (id_, b))
for id_ in sink:
    if id_ is None or int(id_) not in events:
        errors.append("the sink got event %r, which is not in the journal" % id_)

print("# answers: %s; %d journaled, %d delivered" % (
    ", ".join("%s: %d" % (k, v) for k, v in sorted(by_status.items(), key=lambda kv: str(kv[0]))),
    len(events), sum(len(v) for v in sink.values())), file=sys.stderr)
print("\n".join(errors[:20]) or "ok")
sys.exit(1 if errors else 0)
