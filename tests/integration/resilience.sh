#!/usr/bin/env bash
# Fault tests of the routing layer against real processes on loopback:
# `sluice serve` in front of two `sluice mock-upstream` processes whose
# behaviour is changed at run time (POST /mock/config).
#   1. backend a starts failing under load: its breaker opens within the
#      configured failures, traffic fails over to b, every request is
#      accounted for (submitted = completed + dead letters), and when a
#      recovers, half-open probes close the breaker;
#   2. a backend that slows from 20 ms to 2 s: its adaptive limit falls and
#      requests served by the other backend stay fast;
#   3. weighted 90/10 over 10,000 requests within +-2 %, sticky sessions
#      never switch arm;
#   4. kill -9 of the server under load: every failure a client saw is in
#      the dead-letter log after the restart, and it replays;
#   5. the server runs out of file descriptors (ulimit -n 40, a backend that
#      holds every call): the calls that cannot open an upstream socket get
#      503 resources_exhausted, the backend's breaker does not count them,
#      and the server serves again once the held calls end.
# Usage: tests/integration/resilience.sh path/to/sluice
set -u
BIN=${1:?usage: resilience.sh path/to/sluice}
HERE=$(cd "$(dirname "$0")" && pwd)
LOAD="python3 $HERE/load.py"
T=$(mktemp -d)
PIDS=()
SPID=
pass=0
fail=0
cleanup() {
	[ -n "$SPID" ] && kill "$SPID" 2>/dev/null
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() {
	local what=$1
	shift
	if "$@"; then ok; else bad "$what"; fi
}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_up() {
	for _ in $(seq 1 200); do
		curl -s -o /dev/null "http://127.0.0.1:$1/healthz" && return 0
		sleep 0.05
	done
	return 1
}
mock_cfg() { curl -s -X POST "http://127.0.0.1:$1/mock/config" -d "$2" >/dev/null; }
mock_requests() { curl -s "http://127.0.0.1:$1/mock/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])'; }
# backend_field MODEL BACKEND FIELD: from GET /admin/backends
backend_field() {
	curl -s "http://127.0.0.1:$SP/admin/backends" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for m in d["models"]:
    if m["model"] == sys.argv[1]:
        for b in m["backends"]:
            if b["name"] == sys.argv[2]:
                print(b[sys.argv[3]])' "$1" "$2" "$3"
}
metric() { # metric NAME LABELS-SUBSTRING
	curl -s "http://127.0.0.1:$SP/metrics" | awk -v n="$1" -v l="$2" 'index($0, n"{")==1 && index($0, l) {s+=$2} END {print s+0}'
}

AP=$(port)
BP=$(port)
"$BIN" mock-upstream --port "$AP" --threads 1 --tokens 4 >"$T/a.log" 2>&1 &
PIDS+=($!)
"$BIN" mock-upstream --port "$BP" --threads 1 --tokens 4 >"$T/b.log" 2>&1 &
PIDS+=($!)
wait_up "$AP" && wait_up "$BP" || { echo "mocks did not start"; exit 1; }

SP=$(port)
DLQ=$T/dlq
start_server() {
	"$BIN" serve --config "$T/sluice.yaml" --log-level error >>"$T/s.out" 2>>"$T/s.err" &
	SPID=$!
	wait_up "$SP" || { echo "server did not start"; cat "$T/s.err"; exit 1; }
}
cat >"$T/sluice.yaml" <<EOF
server: {port: $SP, shards: 2, pin: false}
pipelines:
  p:
    stages:
      - {name: rag, type: rag}
      - {name: assemble, type: assemble}
      - {name: inference, type: inference}
      - {name: post, type: post}
      - {name: stream, type: stream}
backends:
  a:
    type: openai
    url: http://127.0.0.1:$AP/v1
    breaker: {consecutive_failures: 5, failure_ratio: 0, cooldown_ms: 300, max_cooldown_ms: 300, half_open_probes: 2}
    retry: {budget_ratio: 0.5, budget_min_per_s: 50}
  b:
    type: openai
    url: http://127.0.0.1:$BP/v1
  slow:
    type: openai
    url: http://127.0.0.1:$AP/v1
    concurrency: {algorithm: gradient, min: 2, max: 64, initial: 32}
  e1: {type: echo}
  e2: {type: echo}
models:
  ha: {pipeline: p, backends: [a, b]}
  adaptive: {pipeline: p, backends: [slow, b]}
  ab: {pipeline: p, backends: [e1, e2], routing: weighted, weights: [90, 10]}
  sticky: {pipeline: p, backends: [e1, e2], routing: sticky, weights: [50, 50]}
dlq: {dir: $DLQ, fsync: never}
EOF
start_server
URL=http://127.0.0.1:$SP

# ---- 1. a starts failing under load, then recovers -------------------------
$LOAD --url "$URL" --model ha -n 100 -c 4 >"$T/p1.jsonl"
check "healthy: all from a" python3 -c '
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
sys.exit(0 if len(r) == 100 and all(x["status"] == 200 and x["backend"] == "a" for x in r) else 1)' "$T/p1.jsonl"
a_before=$(mock_requests "$AP")
mock_cfg "$AP" '{"fault":"http500"}'
$LOAD --url "$URL" --model ha -n 400 -c 8 >"$T/p2.jsonl"
a_after=$(mock_requests "$AP")
check "breaker opened" [ "$(backend_field ha a breaker_trips)" -ge 1 ]
check "some requests failed over" [ "$(backend_field ha b retries)" -ge 5 ]
# a saw the 5 failures that opened it plus a few probes, not 400 requests
check "a spared after the trip ($((a_after - a_before)) calls)" [ $((a_after - a_before)) -lt 60 ]
check "failed over to b" python3 -c '
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
ok = [x for x in r if x["status"] == 200]
sys.exit(0 if len(r) == 400 and len(ok) >= 390 and all(x["backend"] == "b" for x in ok) else 1)' "$T/p2.jsonl"
# every request is accounted for: submitted = completed + dead letters
sleep 0.2
submitted=$(metric sluice_requests_submitted_total 'pipeline="p:ha"')
completed=$(metric sluice_requests_total 'pipeline="p:ha",outcome="completed"')
in_flight=$(metric sluice_requests_in_flight 'pipeline="p:ha"')
dead=$("$BIN" dlq list --dir "$DLQ" 2>/dev/null | wc -l)
client_fail=$(cat "$T/p1.jsonl" "$T/p2.jsonl" | python3 -c 'import json,sys; print(sum(1 for l in sys.stdin if json.loads(l)["status"] != 200))')
check "submitted ($submitted) = completed ($completed) + dead letters ($dead)" [ "$submitted" -eq $((completed + dead)) ] && [ "$in_flight" -eq 0 ]
check "dead letters ($dead) = failures clients saw ($client_fail)" [ "$dead" -eq "$client_fail" ]
# recovery: probes close the breaker, traffic returns to a
mock_cfg "$AP" '{"fault":"none"}'
sleep 0.5
$LOAD --url "$URL" --model ha -n 40 -c 1 >"$T/p3.jsonl"
check "breaker closed again" [ "$(backend_field ha a breaker)" = closed ]
check "traffic back on a" python3 -c '
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
sys.exit(0 if all(x["status"] == 200 for x in r) and all(x["backend"] == "a" for x in r[-20:]) else 1)' "$T/p3.jsonl"

# ---- 2. a backend slows from 20 ms to 2 s ----------------------------------
mock_cfg "$AP" '{"fault":"none","first_token_ms":20}'
mock_cfg "$BP" '{"first_token_ms":20}'
$LOAD --url "$URL" --model adaptive -n 400 -c 16 >"$T/s1.jsonl"
lim_before=$(backend_field adaptive slow concurrency_limit)
mock_cfg "$AP" '{"first_token_ms":2000}'
$LOAD --url "$URL" --model adaptive -n 1500 -c 16 --timeout 60 >"$T/s2.jsonl"
lim_after=$(backend_field adaptive slow concurrency_limit)
check "slow backend's limit cut ($lim_before -> $lim_after)" [ "$lim_after" -lt "$lim_before" ]
check "requests on b stay fast while slow is slow" python3 -c '
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
b = sorted(x["ms"] for x in r if x["backend"] == "b" and x["status"] == 200)
slow = [x for x in r if x["backend"] == "slow"]
p99 = b[int(len(b) * 0.99) - 1]
print("  b: %d requests, p99 %.1f ms; slow: %d requests" % (len(b), p99, len(slow)))
sys.exit(0 if len(b) > 1000 and p99 < 1000 and all(x["status"] == 200 for x in r) else 1)' "$T/s2.jsonl"
mock_cfg "$AP" '{"first_token_ms":0}'
mock_cfg "$BP" '{"first_token_ms":0}'

# ---- 3. weighted 90/10 and sticky sessions ---------------------------------
$LOAD --url "$URL" --model ab -n 10000 -c 8 >"$T/w.jsonl"
check "weighted 90/10 within 2 %" python3 -c '
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
e1 = sum(1 for x in r if x["backend"] == "e1")
print("  e1 share %.4f of %d" % (e1 / len(r), len(r)))
sys.exit(0 if len(r) == 10000 and all(x["status"] == 200 for x in r) and 0.88 <= e1 / len(r) <= 0.92 else 1)' "$T/w.jsonl"
check "ab split readable off /metrics" [ "$(metric sluice_backend_selected_total 'model="ab",backend="e1"')" -ge 8800 ]
$LOAD --url "$URL" --model sticky -n 3000 -c 8 --sessions 300 >"$T/st.jsonl"
check "sticky sessions never switch arm" python3 -c '
import json, sys
arm = {}
for l in open(sys.argv[1]):
    x = json.loads(l)
    if x["status"] != 200 or arm.setdefault(x["session"], x["backend"]) != x["backend"]:
        sys.exit(1)
n1 = sum(1 for v in arm.values() if v == "e1")
print("  %d sessions, %d on e1" % (len(arm), n1))
sys.exit(0 if len(arm) == 300 and 100 < n1 < 200 else 1)' "$T/st.jsonl"

# ---- 4. kill -9 under load: acknowledged dead letters survive -------------
mock_cfg "$AP" '{"fault":"http500"}'
mock_cfg "$BP" '{"fault":"http500"}'
$LOAD --url "$URL" --model ha -n 100000 -c 8 --timeout 5 >"$T/k.jsonl" 2>/dev/null &
LP=$!
sleep 1.5
kill -9 "$SPID"
wait "$SPID" 2>/dev/null
SPID=
sleep 0.2
kill "$LP" 2>/dev/null
wait "$LP" 2>/dev/null
start_server
"$BIN" dlq list --dir "$DLQ" --json >"$T/dlq.json" 2>"$T/dlq.err"
check "dead-letter log intact after kill -9 ($(cat "$T/dlq.err"))" grep -q " 0 corrupt" "$T/dlq.err"
check "every failure a client saw is in the log" python3 -c '
import json, sys
seen = {json.loads(l)["rid"] for l in open(sys.argv[1]) if json.loads(l)["status"] not in (0, 200)}
have = {r["request_id"] for r in json.load(open(sys.argv[2]))}
missing = seen - have
print("  %d failures answered before the kill, %d records, %d missing" % (len(seen), len(have), len(missing)))
sys.exit(0 if len(seen) > 20 and not missing else 1)' "$T/k.jsonl" "$T/dlq.json"
mock_cfg "$AP" '{"fault":"none"}'
mock_cfg "$BP" '{"fault":"none"}'
sleep 0.4
ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[-1]["id"])' "$T/dlq.json")
curl -s -X POST "$URL/admin/dlq/$ID/replay" >"$T/replay.json"
check "replay completes" grep -q '"outcome":"completed"' "$T/replay.json"
check "replay recorded" grep -q "replayed:completed" <("$BIN" dlq list --dir "$DLQ" 2>/dev/null | grep "$ID")
check "replay through the CLI" "$BIN" dlq replay "$ID" --url "$URL" >/dev/null
check "unknown id is 404" [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/admin/dlq/dlq-nope/replay")" = 404 ]

# 5. local exhaustion is not the backend's fault
HP=$(port)
"$BIN" mock-upstream --port "$HP" --threads 1 --tokens 3 --first-token-ms 2500 >"$T/h.log" 2>&1 &
PIDS+=($!)
wait_up "$HP" || bad "hanging mock did not start"
XP=$(port)
(ulimit -n 40 && exec "$BIN" serve --port "$XP" --shards 1 --no-pin --upstream "http://127.0.0.1:$HP/v1" \
	--model m --log-level error >"$T/x.out" 2>"$T/x.err") &
XPID=$!
PIDS+=($XPID)
if wait_up "$XP"; then
	# Client connections first, all accepted (so accept(2) has nothing left
	# to fail on), then a request on each: what runs out is the upstream
	# sockets.  free = the limit minus what the server has open now.
	FREE=$((40 - $(ls /proc/$XPID/fd | wc -l)))
	python3 - "$XP" "$FREE" "$T" <<'PY' >"$T/x.codes"
import socket, sys, time, json
port, free, tdir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
n = max(free - 3, 4)   # leave a few descriptors for the upstream sockets
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
time.sleep(0.5)
body = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
       b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)) + body
for c in conns:
    c.sendall(req)
for i, c in enumerate(conns):
    c.settimeout(15)
    data = b""
    while True:
        try:
            d = c.recv(65536)
        except socket.timeout:
            break
        if not d:
            break
        data += d
    status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1 ") else "0"
    open("%s/x%d.json" % (tdir, i), "wb").write(data.split(b"\r\n\r\n", 1)[-1])
    print(status)
PY
	n200=$(grep -c '^200$' "$T/x.codes")
	n503=$(grep -c '^503$' "$T/x.codes")
	nall=$(wc -l <"$T/x.codes")
	echo "  fd exhaustion: $n200 x 200, $n503 x 503 of $nall"
	[ $((n200 + n503)) -eq "$nall" ] || { sort "$T/x.codes" | uniq -c; cat "$T"/x*.json | grep -o '"message":"[^"]*"' | sort | uniq -c; }
	check "fd exhaustion: some calls served, the rest 503 (no other status)" \
		[ "$n200" -gt 0 -a "$n503" -gt 0 -a $((n200 + n503)) -eq "$nall" ]
	check "fd exhaustion: 503 says resources_exhausted" \
		bash -c "cat '$T'/x*.json | grep -q '\"code\":\"resources_exhausted\"'"
	curl -s "http://127.0.0.1:$XP/metrics" >"$T/x.metrics"
	check "fd exhaustion: no breaker failure, no trip" \
		grep -q '^sluice_backend_failures_total{model="m",backend="upstream"} 0$' "$T/x.metrics"
	check "fd exhaustion: breaker never opened" \
		grep -q '^sluice_backend_breaker_trips_total{model="m",backend="upstream"} 0$' "$T/x.metrics"
	check "fd exhaustion: serves again after the held calls end" [ "$(curl -s -o /dev/null -w '%{http_code}' \
		"http://127.0.0.1:$XP/v1/chat/completions" -d '{"model":"m","messages":[{"role":"user","content":"hi"}]}')" = 200 ]
else
	bad "fd-limited server did not start ($(tail -c 300 "$T/x.err"))"
fi

if [ "$fail" -ne 0 ]; then
	echo "--- server stderr (last 60 lines):"
	tail -n 60 "$T/s.err"
fi
echo "resilience: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
