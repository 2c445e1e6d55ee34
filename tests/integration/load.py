#!/usr/bin/env python3
"""load.py - a small closed-loop HTTP load driver for the integration tests.

Sends N chat completions with C concurrent keep-alive connections and prints
one JSON line per request: {"i", "status", "backend", "rid", "ms", "prio",
"session", "err"} (err: a transport error, e.g. the server died).

  load.py --url http://127.0.0.1:8080 --model m -n 1000 -c 8
          [--priority-mix 0.1] [--sessions K] [--header 'X-Foo: 1'] [--timeout 30]
"""
import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("-c", type=int, default=4)
    ap.add_argument("--priority-mix", type=float, default=0.0,
                    help="fraction of requests sent with X-Priority: high (others: low)")
    ap.add_argument("--sessions", type=int, default=0,
                    help="use K session ids (X-Session-Id: s<i mod K>); 0 = none")
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--rate", type=float, default=0,
                    help="open loop: start requests at this rate (req/s) instead of back to back")
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    lock = threading.Lock()
    nxt = [0]
    out = []
    t0 = time.monotonic()
    body_t = {"model": a.model, "messages": [{"role": "user", "content": "hello there"}]}

    def worker():
        conn = None
        while True:
            with lock:
                i = nxt[0]
                if i >= a.n:
                    break
                nxt[0] += 1
            if a.rate > 0:
                due = t0 + i / a.rate
                d = due - time.monotonic()
                if d > 0:
                    time.sleep(d)
            hdr = {"Content-Type": "application/json"}
            for h in a.header:
                k, v = h.split(":", 1)
                hdr[k.strip()] = v.strip()
            prio = "normal"
            if a.priority_mix > 0:
                # every k-th request is high: an even spread
                k = max(1, round(1 / a.priority_mix))
                prio = "high" if i % k == 0 else "low"
                hdr["X-Priority"] = prio
            sess = None
            if a.sessions > 0:
                sess = "s%d" % (i % a.sessions)
                hdr["X-Session-Id"] = sess
            rec = {"i": i, "status": 0, "backend": None, "rid": None, "prio": prio,
                   "session": sess, "err": None}
            t = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=a.timeout)
                conn.request("POST", "/v1/chat/completions", json.dumps(body_t), hdr)
                r = conn.getresponse()
                r.read()
                rec["status"] = r.status
                rec["backend"] = r.getheader("X-Sluice-Backend")
                rec["rid"] = r.getheader("X-Request-Id")
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as e:  # a transport error is a result too
                rec["err"] = type(e).__name__
                try:
                    conn.close()
                except Exception:
                    pass
                conn = None
            rec["ms"] = round((time.monotonic() - t) * 1000, 3)
            with lock:
                out.append(rec)
                sys.stdout.write(json.dumps(rec) + "\n")
                sys.stdout.flush()

    th = [threading.Thread(target=worker) for _ in range(a.c)]
    for x in th:
        x.start()
    for x in th:
        x.join()


if __name__ == "__main__":
    main()
