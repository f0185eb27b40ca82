#!/usr/bin/env python3
"""A poller stand-in for the end-to-end tests: posts COUNT distinct Igor build
events to the gate at about RATE per second from THREADS keep-alive
connections and, as Igor does, posts each again until it is answered 200
(a refused connection, a 503 while the gate stops or restarts). One line per
attempt in OUT: i, HTTP status (000 without an answer), the answer's body.
Event i is build 1000 + i // JOBS of team-l/svc-(i % JOBS). Ends when every
event got its 200, or after DEADLINE seconds (exit 1)."""
import argparse
import http.client
import json
import sys
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--count", type=int, required=True)
ap.add_argument("--rate", type=float, default=200)
ap.add_argument("--threads", type=int, default=4)
ap.add_argument("--jobs", type=int, default=50)
ap.add_argument("--deadline", type=float, default=120)
ap.add_argument("--out", required=True)
a = ap.parse_args()


def body(i):
    job = "team-l/svc-%d" % (i % a.jobs)
    number = 1000 + i // a.jobs
    return json.dumps({
        "details": {"type": "build", "source": "igor", "created": "1427237764257"},
        "content": {"master": "jenkins-load", "project": {"name": job, "lastBuild": {
            "number": number, "result": "SUCCESS", "building": False,
            "timestamp": str(1526030000000 + i), "duration": 1000,
            "url": "https://jenkins/job/%s/%d/" % (job, number)}}}}).encode()


out = open(a.out, "w", buffering=1)
lock = threading.Lock()
end = time.time() + a.deadline
failed = []


def worker(k):
    conn = None
    interval = a.threads / a.rate
    for i in range(k, a.count, a.threads):
        data = body(i)
        while True:
            t0 = time.time()
            if t0 > end:
                failed.append(i)
                return
            status, reply = "000", ""
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10)
                conn.request("POST", "/", data, {"Content-Type": "application/json"})
                r = conn.getresponse()
                status, reply = "%03d" % r.status, r.read().decode("utf-8", "replace")
                if r.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            with lock:
                out.write("%d\t%s\t%s\n" % (i, status, reply.replace("\n", " ")))
            if status == "200":
                break
            time.sleep(0.05)
        left = interval - (time.time() - t0)
        if left > 0:
            time.sleep(left)


threads = [threading.Thread(target=worker, args=(k,)) for k in range(a.threads)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if failed:
    print("poster: %d events never answered 200 within %.0f s" % (len(failed), a.deadline),
          file=sys.stderr)
    sys.exit(1)
