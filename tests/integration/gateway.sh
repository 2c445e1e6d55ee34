#!/usr/bin/env bash
# Integration test of `sluice serve` with curl on loopback: endpoints, raw
# SSE framing, headers, every bad-input case of the gateway issue, /metrics,
# shedding, cancellation on disconnect, the chain to `sluice mock-upstream`,
# and a clean exit on SIGTERM.
# Usage: tests/integration/gateway.sh path/to/sluice
set -u
BIN=${1:?usage: gateway.sh path/to/sluice}
T=$(mktemp -d)
PIDS=()
pass=0
fail=0
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { # check "what" cond...
	local what=$1
	shift
	if "$@"; then ok; else bad "$what"; fi
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_port() {
	for _ in $(seq 1 100); do
		(exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "nothing listening on $1" >&2
	return 1
}

PORT=
start() { # start LOG args... ; sets PORT (not in a subshell: the server is our child)
	local log=$1
	shift
	PORT=$(free_port)
	"$BIN" "$@" --port "$PORT" >"$T/$log.out" 2>"$T/$log.err" &
	PIDS+=($!)
	echo "$!" >"$T/$log.pid"
	wait_port "$PORT" || { cat "$T/$log.err" >&2; bad "$log did not start"; return 1; }
}

# post PORT PATH BODY [curl args...] -> writes $T/body, prints status
post() {
	local port=$1 path=$2 body=$3
	shift 3
	curl -s -o "$T/body" -D "$T/headers" -w '%{http_code}' -X POST \
		-H 'Content-Type: application/json' --data-binary "$body" "$@" \
		"http://127.0.0.1:$port$path"
}

jget() { # jget FILE python-expression-on-j
	python3 -c "import json,sys; j=json.load(open('$1')); print($2)" 2>/dev/null
}

start echo serve --shards 2 --no-pin --read-timeout-ms 1500; P=$PORT
CHAT=/v1/chat/completions

# A second server on a port another one serves must refuse to start (its
# listeners use SO_REUSEPORT, which would otherwise split the traffic).
"$BIN" serve --shards 1 --no-pin --port "$P" >"$T/dup.out" 2>"$T/dup.err" &
dup=$!
dup_rc=0
for _ in $(seq 50); do kill -0 "$dup" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$dup" 2>/dev/null; then kill "$dup"; dup_rc=running; else wait "$dup" || dup_rc=$?; fi
check "second server on a used port exits non-zero" test "$dup_rc" != 0 -a "$dup_rc" != running
check "second server names the cause" grep -q 'Address already in use' "$T/dup.err"

# --- endpoints -----------------------------------------------------------
check "healthz" test "$(curl -s http://127.0.0.1:$P/healthz)" = "ok"
check "readyz" test "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$P/readyz)" = 200
curl -s "http://127.0.0.1:$P/v1/models" >"$T/models"
check "models lists echo" test "$(jget "$T/models" "j['data'][0]['id']")" = echo

code=$(post "$P" $CHAT '{"model":"echo","messages":[{"role":"user","content":"Hello,   world!"}]}' -H 'X-Request-Id: it-123')
check "chat 200" test "$code" = 200
check "chat content" test "$(jget "$T/body" "j['choices'][0]['message']['content']")" = "Hello, world!"
check "chat object" test "$(jget "$T/body" "j['object']")" = chat.completion
check "request id echoed" grep -qi '^X-Request-Id: it-123' "$T/headers"
code=$(post "$P" $CHAT '{"model":"echo","messages":[{"role":"user","content":"x"}]}')
check "request id generated" grep -qiE '^X-Request-Id: req-[0-9a-f]{16}' "$T/headers"

code=$(post "$P" /v1/completions '{"model":"echo","prompt":"legacy  prompt"}')
check "completions 200" test "$code" = 200
check "completions text" test "$(jget "$T/body" "j['choices'][0]['text']")" = "legacy prompt"

# --- raw SSE framing ---------------------------------------------------------
curl -s -N -X POST "http://127.0.0.1:$P$CHAT" -H 'Content-Type: application/json' \
	--data-binary '{"model":"echo","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"a b c"}]}' \
	-D "$T/sse.h" >"$T/sse"
check "sse content-type" grep -qi '^Content-Type: text/event-stream' "$T/sse.h"
check "sse ends with [DONE]" test "$(tail -c 14 "$T/sse" | tr -d '\n')" = "data: [DONE]"
python3 - "$T/sse" <<'EOF' && ok || bad "sse framing"
import json, sys
raw = open(sys.argv[1], 'rb').read().decode()
assert raw.endswith("\n\n"), "events end with a blank line"
events = [e for e in raw.split("\n\n") if e]
assert all(e.startswith("data: ") for e in events), events
datas = [e[6:] for e in events]
assert datas[-1] == "[DONE]"
objs = [json.loads(d) for d in datas[:-1]]
assert objs[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
text = "".join(o["choices"][0]["delta"].get("content", "") for o in objs if o["choices"])
assert text == "a b c", text
fin = [o for o in objs if o["choices"] and o["choices"][0]["finish_reason"]]
assert len(fin) == 1 and fin[0]["choices"][0]["finish_reason"] == "stop"
usage = objs[-1]
assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 3, usage
assert all(o["object"] == "chat.completion.chunk" for o in objs)
EOF

# --- bad input: each gets its status and an OpenAI-style error body ----------
expect_err() { # expect_err NAME STATUS CODE BODY [curl args]
	local name=$1 st=$2 ecode=$3 body=$4
	shift 4
	local got
	got=$(post "$P" $CHAT "$body" "$@")
	if [ "$got" != "$st" ]; then bad "$name: status $got, want $st ($(head -c 300 "$T/body"))"; return; fi
	local c
	c=$(jget "$T/body" "j['error']['code']")
	if [ -n "$ecode" ] && [ "$c" != "$ecode" ]; then bad "$name: code '$c', want $ecode"; return; fi
	if [ -z "$(jget "$T/body" "j['error']['message']")" ]; then bad "$name: no error.message"; return; fi
	ok
}
expect_err "malformed json" 400 invalid_json '{"model":"echo","messages":['
expect_err "wrong type" 400 invalid_type '{"model":"echo","messages":"hi"}'
expect_err "missing messages" 400 missing_required_parameter '{"model":"echo"}'
expect_err "empty messages" 400 empty_array '{"model":"echo","messages":[]}'
expect_err "unknown model" 404 model_not_found '{"model":"nope","messages":[{"role":"user","content":"x"}]}'
expect_err "max_tokens range" 400 invalid_value '{"model":"echo","max_tokens":0,"messages":[{"role":"user","content":"x"}]}'
expect_err "n>1" 400 unsupported_value '{"model":"echo","n":2,"messages":[{"role":"user","content":"x"}]}'
check "n>1 message" grep -q 'n>1 is not supported' "$T/body"
printf '{"model":"echo","messages":[{"role":"user","content":"\xff\xfe"}]}' >"$T/badutf8"
expect_err "invalid utf-8" 400 invalid_json "@$T/badutf8"
expect_err "bad priority" 400 invalid_value '{"model":"echo","messages":[{"role":"user","content":"x"}]}' -H 'X-Priority: urgent'
python3 -c "import json; print(json.dumps({'model':'echo','messages':[{'role':'user','content':'x'*1100000}]}))" >"$T/big"
expect_err "body over limit" 413 "" "@$T/big"
expect_err "headers over limit" 431 "" '{"model":"echo","messages":[{"role":"user","content":"x"}]}' -H "X-Big: $(head -c 20000 /dev/zero | tr '\0' a)"
code=$(post "$P" $CHAT '{"model":"echo","messages":[{"role":"user","content":"x"}]}' -H 'X-Sluice-Pipeline: default')
check "X-Sluice-Pipeline known" test "$code" = 200
expect_err "X-Sluice-Pipeline unknown" 404 pipeline_not_found '{"model":"echo","messages":[{"role":"user","content":"x"}]}' -H 'X-Sluice-Pipeline: nope'
check "wrong method" test "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$P$CHAT)" = 405
check "unknown path" test "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$P/v2/nothing)" = 404

# slow client: a body a byte at a time is cut by the read timeout (1.5 s)
python3 - "$P" <<'EOF' && ok || bad "slow body cut by read timeout"
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
body = b'{"model":"echo","messages":[{"role":"user","content":"slow"}]}'
s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
t0 = time.time()
s.settimeout(0.5)
got = b""
for b in body:
    try:
        s.send(bytes([b]))
    except OSError:
        break
    try:
        d = s.recv(4096)
        if not d:
            break
        got += d
        break
    except socket.timeout:
        pass
    if time.time() - t0 > 10:
        break
took = time.time() - t0
assert took < 6, f"not cut: {took:.1f}s"
assert got == b"" or b" 408 " in got.split(b"\r\n")[0], got[:100]
EOF
# the server still serves others
code=$(post "$P" $CHAT '{"model":"echo","messages":[{"role":"user","content":"still here"}]}')
check "serves after bad input" test "$code" = 200

# --- metrics ------------------------------------------------------------------
curl -s "http://127.0.0.1:$P/metrics" >"$T/metrics"
for m in sluice_requests_total sluice_stage_queue_depth sluice_stage_in_flight \
	sluice_stage_processed_total sluice_stage_shed_total sluice_stage_failed_total \
	sluice_stage_latency_seconds_bucket sluice_time_to_first_token_seconds_bucket \
	sluice_tokens_out_total sluice_http_responses_total; do
	check "metric $m" grep -q "^$m" "$T/metrics"
done
check "completed counted" grep -qE '^sluice_requests_total\{pipeline="default",outcome="completed"\} [1-9]' "$T/metrics"

# --- shed at the door: 503 + Retry-After, fast ----------------------------
start shed serve --shards 1 --no-pin --shed --queue 1 --concurrency 1 --echo-delay-ms 500; S=$PORT
for i in $(seq 1 8); do
	curl -s -o "$T/shed$i" -w '%{http_code} %{time_total}\n' -X POST "http://127.0.0.1:$S$CHAT" \
		-H 'X-Session-Id: same' -D "$T/shedh$i" \
		--data-binary '{"model":"echo","messages":[{"role":"user","content":"burst"}]}' >"$T/shedc$i" &
done
wait_jobs() { for j in $(jobs -p); do case " ${PIDS[*]} " in *" $j "*) ;; *) wait "$j";; esac; done; }
wait_jobs
n503=0
n200=0
for i in $(seq 1 8); do
	read -r c t <"$T/shedc$i"
	if [ "$c" = 503 ]; then
		n503=$((n503 + 1))
		grep -qi '^Retry-After:' "$T/shedh$i" || bad "503 without Retry-After"
		[ "$(jget "$T/shed$i" "j['error']['code']")" = overloaded ] || bad "503 body code"
		python3 -c "import sys; sys.exit(0 if float('$t') < 0.25 else 1)" || bad "503 took ${t}s"
	elif [ "$c" = 200 ]; then n200=$((n200 + 1)); fi
done
check "some shed (503)" test "$n503" -ge 1
check "some served (200)" test "$n200" -ge 1
check "all answered" test $((n503 + n200)) = 8

# --- block at the door: nothing refused, requests wait for room -------------
start block serve --shards 1 --no-pin --queue 1 --concurrency 1 --echo-delay-ms 100; B=$PORT
for i in $(seq 1 6); do
	curl -s -o /dev/null -w '%{http_code}\n' -X POST "http://127.0.0.1:$B$CHAT" \
		-H 'X-Session-Id: same' --max-time 20 \
		--data-binary '{"model":"echo","messages":[{"role":"user","content":"wait for room"}]}' >"$T/blockc$i" &
done
wait_jobs
nok=0
for i in $(seq 1 6); do [ "$(cat "$T/blockc$i")" = 200 ] && nok=$((nok + 1)); done
check "block: all 6 served, none refused" test "$nok" = 6

# --- the chain: sluice -> mock-upstream ----------------------------------
start mock mock-upstream --threads 1 --tokens 6 --inter-token-ms 20; M=$PORT
start chain serve --shards 2 --no-pin --upstream "http://127.0.0.1:$M/v1" --model m1; C=$PORT
code=$(post "$C" $CHAT '{"model":"m1","messages":[{"role":"user","content":"hi"}]}')
check "chain 200" test "$code" = 200
check "chain content" test "$(jget "$T/body" "j['choices'][0]['message']['content']")" = "w0 w1 w2 w3 w4 w5"
code=$(post "$C" $CHAT '{"model":"echo","messages":[{"role":"user","content":"hi"}]}')
check "chain: other model 404" test "$code" = 404

# upstream faults
start mockf mock-upstream --threads 1 --fault http500; MF=$PORT
start chainf serve --shards 1 --no-pin --upstream "http://127.0.0.1:$MF/v1" --model m1; CF=$PORT
code=$(post "$CF" $CHAT '{"model":"m1","messages":[{"role":"user","content":"hi"}]}')
check "upstream 500 -> 502" test "$code" = 502
check "X-Upstream-Status" grep -qi '^X-Upstream-Status: 500' "$T/headers"
check "upstream error body" test "$(jget "$T/body" "j['error']['code']")" = upstream_error

start mockd mock-upstream --threads 1 --tokens 20 --inter-token-ms 10 --fault drop-mid-stream; MD=$PORT
start chaind serve --shards 1 --no-pin --upstream "http://127.0.0.1:$MD/v1" --model m1; CD=$PORT
curl -s -N -X POST "http://127.0.0.1:$CD$CHAT" --data-binary \
	'{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}' >"$T/drop"
check "dropped upstream: tokens before" grep -q '"content":"w0"' "$T/drop"
check "dropped upstream: error event" grep -q '^data: {"error"' "$T/drop"
check "dropped upstream: no [DONE]" bash -c "! grep -q '\[DONE\]' '$T/drop'"

# cancellation: a client that disconnects mid-stream cancels within 100 ms
start mocks mock-upstream --threads 1 --tokens 1000 --inter-token-ms 50; MS=$PORT
start chains serve --shards 1 --no-pin --upstream "http://127.0.0.1:$MS/v1" --model m1; CS=$PORT
timeout 0.5 curl -s -N -X POST "http://127.0.0.1:$CS$CHAT" --data-binary \
	'{"model":"m1","stream":true,"messages":[{"role":"user","content":"long"}]}' >/dev/null
sleep 0.15
curl -s "http://127.0.0.1:$CS/metrics" >"$T/cm"
check "disconnect -> cancelled" grep -qE '^sluice_requests_total\{pipeline="default",outcome="cancelled"\} 1' "$T/cm"
check "disconnect -> nothing in flight" grep -qE '^sluice_requests_in_flight\{pipeline="default"\} 0' "$T/cm"

# --- SIGTERM: drains and exits 0 -----------------------------------------
pid=$(cat "$T/echo.pid")
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
check "exit 0 on SIGTERM" test "$rc" = 0

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
