#!/usr/bin/env bash
# Integration test of `sluice mock-upstream`: starts the real server on
# 127.0.0.1 (port 0: the kernel picks a free one, read back from the start
# line) and checks the OpenAI shapes, streaming framing, per-request
# overrides, faults, limits, runtime control (/mock/config, /mock/stats,
# --fail-after), flags and shutdown with curl.
# Usage: tests/integration/mock_upstream.sh /path/to/sluice
# Prints "N passed, M failed" last; exits non-zero when anything failed.
set -u

BIN=${1:?usage: $0 /path/to/sluice}
command -v curl >/dev/null || { echo "mock_upstream.sh: curl is required" >&2; exit 1; }

TMP=$(mktemp -d)
PIDS=()
cleanup() {
	local p f
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	if [ "${FAIL:-0}" -ne 0 ]; then
		for f in "$TMP"/*.log; do [ -s "$f" ] && { echo "--- $f"; cat "$f"; }; done
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok   - $1"; }
nok() { FAIL=$((FAIL + 1)); echo "FAIL - $1${2:+: $2}"; }
# check NAME CMD...: passes when CMD succeeds.
check() { local n=$1; shift; if "$@"; then ok "$n"; else nok "$n"; fi; }
# eq NAME GOT WANT
eq() { if [ "$2" = "$3" ]; then ok "$1"; else nok "$1" "got [$2] want [$3]"; fi; }
has() { case "$2" in *"$3"*) ok "$1" ;; *) nok "$1" "[$3] not in [${2:0:400}]" ;; esac; }
hasnt() { case "$2" in *"$3"*) nok "$1" "[$3] found" ;; *) ok "$1" ;; esac; }

# JSON validity through whichever interpreter is present (node comes with the
# test dependencies); returns 2 when none is.
json_ok() {
	if command -v node >/dev/null; then
		node -e 'JSON.parse(require("fs").readFileSync(0, "utf8"))' 2>/dev/null
	elif command -v python3 >/dev/null; then
		python3 -c 'import json,sys; json.load(sys.stdin)' 2>/dev/null
	else
		cat >/dev/null; return 2
	fi
}
check_json() { # NAME BODY
	printf '%s' "$2" | json_ok
	case $? in 0) ok "$1" ;; 2) ok "$1 (skipped: no node/python3)" ;; *) nok "$1" "${2:0:300}" ;; esac
}
check_not_json() { # NAME BODY
	printf '%s' "$2" | json_ok
	case $? in 1) ok "$1" ;; 2) ok "$1 (skipped: no node/python3)" ;; *) nok "$1" "valid JSON: ${2:0:300}" ;; esac
}

# start NAME ARGS...: starts the server, sets PID and PORT, waits for /healthz.
start() {
	local name=$1; shift
	"$BIN" mock-upstream --host 127.0.0.1 --port 0 "$@" 2>"$TMP/$name.log" &
	PID=$!
	PIDS+=("$PID")
	PORT=
	for _ in $(seq 100); do
		PORT=$(sed -n 's#^mock-upstream listening on http://127\.0\.0\.1:\([0-9]*\) (threads=[0-9]*)$#\1#p' "$TMP/$name.log")
		[ -n "$PORT" ] && curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && return 0
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "server $name did not start:" >&2
	cat "$TMP/$name.log" >&2
	exit 1
}

# stop PID: SIGTERM, then the exit status must be 0.
stop() {
	kill -TERM "$1"
	local rc=0 p keep=()
	wait "$1" || rc=$?
	for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
	eq "SIGTERM exits 0 (pid $1)" "$rc" 0
}

CHAT='{"model":"gpt-test","messages":[{"role":"user","content":"Say something nice."}]}'

# ------------------------------------------------------------ main instance
start main --threads 2 --tokens 5 --model test-model
U="http://127.0.0.1:$PORT"
MAIN_PID=$PID
MAIN_PORT=$PORT
has "start line" "$(cat "$TMP/main.log")" "mock-upstream listening on http://127.0.0.1:$PORT (threads=2)"

# healthz, models, routing
eq "healthz body" "$(curl -s "$U/healthz")" "ok"
R=$(curl -s "$U/v1/models")
has "models lists --model" "$R" '"id":"test-model"'
has "models is a list" "$R" '"object":"list"'
check_json "models is JSON" "$R"
has "models/<id> echoes id" "$(curl -s "$U/v1/models/gpt-4o")" '"id":"gpt-4o","object":"model"'
eq "unknown path 404" "$(curl -s -o /dev/null -w '%{http_code}' "$U/nope")" 404
eq "GET chat 405" "$(curl -s -o /dev/null -w '%{http_code}' "$U/v1/chat/completions")" 405

# non-streaming chat
R=$(curl -s -D "$TMP/h" -H 'Content-Type: application/json' -d "$CHAT" "$U/v1/chat/completions")
check_json "chat is JSON" "$R"
has "chat object" "$R" '"object":"chat.completion"'
has "chat model echoed" "$R" '"model":"gpt-test"'
has "chat content w0..w4" "$R" '"message":{"role":"assistant","content":"w0 w1 w2 w3 w4"}'
has "chat finish stop" "$R" '"finish_reason":"stop"'
has "chat usage" "$R" '"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}'
has "chat content-type" "$(cat "$TMP/h")" "Content-Type: application/json"

R=$(curl -s -d '{"messages":[],"max_tokens":3}' "$U/v1/chat/completions")
has "max_tokens cuts" "$R" '"content":"w0 w1 w2"'
has "max_tokens finish length" "$R" '"finish_reason":"length"'
has "default model is --model" "$R" '"model":"test-model"'
R=$(curl -s -d '{"messages":[],"max_completion_tokens":1}' "$U/v1/chat/completions")
has "max_completion_tokens cuts" "$R" '"content":"w0"'
R=$(curl -s -d '{"messages":[],"max_tokens":9}' "$U/v1/chat/completions")
has "max_tokens above --tokens: stop" "$R" '"finish_reason":"stop"'
R=$(curl -s -H 'X-Mock-Tokens: 2' -d "$CHAT" "$U/v1/chat/completions")
has "X-Mock-Tokens" "$R" '"content":"w0 w1"'
R=$(curl -s -H 'X-Mock-Tokens: 0' -d "$CHAT" "$U/v1/chat/completions")
has "X-Mock-Tokens 0" "$R" '"content":""'

# non-streaming completions
R=$(curl -s -d '{"model":"davinci","prompt":"one two"}' "$U/v1/completions")
check_json "completion is JSON" "$R"
has "completion object" "$R" '"object":"text_completion"'
has "completion text" "$R" '"text":"w0 w1 w2 w3 w4"'
has "completion usage" "$R" '"usage":{"prompt_tokens":2,"completion_tokens":5,"total_tokens":7}'

# streaming chat
SB='{"model":"s","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}'
R=$(curl -s -N -D "$TMP/h" -d "$SB" "$U/v1/chat/completions")
H=$(cat "$TMP/h")
has "stream content-type" "$H" "Content-Type: text/event-stream"
has "stream chunked" "$H" "Transfer-Encoding: chunked"
eq "stream event count (role+5+final+usage+done)" "$(grep -c '^data: ' <<<"$R")" 9
has "stream role chunk" "$(grep '^data: ' <<<"$R" | head -1)" '"delta":{"role":"assistant","content":""}'
has "stream chunk object" "$R" '"object":"chat.completion.chunk"'
CONTENT=$(grep -o '"delta":{"content":"[^"]*"}' <<<"$R" | sed 's/.*"content":"\([^"]*\)"}/\1/' | tr -d '\n')
eq "stream content joined" "$CONTENT" "w0 w1 w2 w3 w4"
has "stream final chunk" "$R" '"delta":{},"logprobs":null,"finish_reason":"stop"}]'
has "stream usage chunk" "$R" '"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":5,"total_tokens":6}}'
eq "stream ends with [DONE]" "$(grep '^data: ' <<<"$R" | tail -1)" "data: [DONE]"
BAD=0
while IFS= read -r line; do
	[ "$line" = "data: [DONE]" ] && continue
	printf '%s' "${line#data: }" | json_ok; [ $? -eq 1 ] && BAD=$((BAD + 1))
done < <(grep '^data: ' <<<"$R")
eq "every stream event is JSON" "$BAD" 0
# each SSE event is its own HTTP chunk: 9 data chunks + the last 0 chunk
RAW=$(curl -s -N --raw -d "$SB" "$U/v1/chat/completions" | tr -d '\r')
eq "one HTTP chunk per event" "$(grep -cE '^[0-9a-f]+$' <<<"$RAW")" 10
R=$(curl -s -N -d '{"stream":true,"messages":[],"max_tokens":2}' "$U/v1/chat/completions")
hasnt "no usage chunk unless asked" "$R" '"usage"'
has "stream max_tokens finish length" "$R" '"finish_reason":"length"'
eq "stream max_tokens event count" "$(grep -c '^data: ' <<<"$R")" 5

# streaming completions
R=$(curl -s -N -H 'X-Mock-Tokens: 3' -d '{"prompt":"x","stream":true}' "$U/v1/completions")
eq "completion stream events (3+final+done)" "$(grep -c '^data: ' <<<"$R")" 5
has "completion stream text" "$R" '"choices":[{"index":0,"text":" w1","logprobs":null,"finish_reason":null}]'

# HTTP/1.0 stream: no chunking, ends with the connection
R=$(curl -s -0 -N -D "$TMP/h" -d '{"stream":true,"messages":[]}' "$U/v1/chat/completions")
hasnt "HTTP/1.0 stream not chunked" "$(cat "$TMP/h")" "chunked"
eq "HTTP/1.0 stream ends with [DONE]" "$(grep '^data: ' <<<"$R" | tail -1)" "data: [DONE]"

# request validation
R=$(curl -s -w ' %{http_code}' -d '{"messages":[' "$U/v1/chat/completions")
has "invalid JSON 400" "$R" " 400"
has "invalid JSON error shape" "$R" '"type":"invalid_request_error"'
eq "missing body 400" "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$U/v1/chat/completions")" 400
eq "non-object body 400" "$(curl -s -o /dev/null -w '%{http_code}' -d '[1]' "$U/v1/chat/completions")" 400
eq "messages missing 400" "$(curl -s -o /dev/null -w '%{http_code}' -d '{"model":"x"}' "$U/v1/chat/completions")" 400
eq "bad max_tokens 400" "$(curl -s -o /dev/null -w '%{http_code}' -d '{"messages":[],"max_tokens":"3"}' "$U/v1/chat/completions")" 400
eq "bad X-Mock-Fault 400" "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Mock-Fault: nope' -d "$CHAT" "$U/v1/chat/completions")" 400
eq "bad X-Mock-Tokens 400" "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Mock-Tokens: -1' -d "$CHAT" "$U/v1/chat/completions")" 400
head -c $((1024 * 1024 + 10)) /dev/zero | tr '\0' ' ' >"$TMP/big"
eq "body over 1 MiB 413" "$(curl -s -o /dev/null -w '%{http_code}' --data-binary @"$TMP/big" "$U/v1/chat/completions")" 413
R=$(curl -s -H 'Transfer-Encoding: chunked' -d "$CHAT" "$U/v1/chat/completions")
has "chunked request body" "$R" '"content":"w0 w1 w2 w3 w4"'
R=$(curl -s -H 'Expect: 100-continue' -d "$CHAT" "$U/v1/chat/completions")
has "Expect: 100-continue" "$R" '"content":"w0 w1 w2 w3 w4"'

# keep-alive and pipelining
V=$(curl -sv -o /dev/null -o /dev/null -d "$CHAT" "$U/v1/chat/completions" "$U/v1/chat/completions" 2>&1)
check "keep-alive reuses the connection" grep -qiE 're-?using existing connection' <<<"$V"
PIPE=$( (exec 3<>"/dev/tcp/127.0.0.1/$PORT" || exit 1
	printf 'GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nPOST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n' >&3
	timeout 5 cat <&3) | tr -d '\r')
eq "pipelined requests answered in order" "$(grep -oE 'HTTP/1.1 [0-9]+ [A-Za-z ]+' <<<"$PIPE" | tr '\n' ,)" "HTTP/1.1 200 OK,HTTP/1.1 200 OK,HTTP/1.1 200 OK,"

# delays (timers): non-streaming total = first + (n-1)*inter = 200 + 4*50 ms
T=$(curl -s -o /dev/null -w '%{time_total}' -H 'X-Mock-First-Token-Ms: 200' -H 'X-Mock-Inter-Token-Ms: 50' -d "$CHAT" "$U/v1/chat/completions")
check "non-stream delay >= 0.4 s ($T)" awk -v t="$T" 'BEGIN{exit !(t >= 0.39 && t < 3)}'
T=$(curl -s -N -o "$TMP/s" -w '%{time_starttransfer} %{time_total}' -H 'X-Mock-First-Token-Ms: 300' -H 'X-Mock-Inter-Token-Ms: 50' -d "$SB" "$U/v1/chat/completions")
check "stream headers+role before the first token ($T)" awk -v t="${T% *}" 'BEGIN{exit !(t < 0.25)}'
check "stream total >= 0.5 s ($T)" awk -v t="${T#* }" 'BEGIN{exit !(t >= 0.49 && t < 3)}'
eq "delayed stream complete" "$(grep -c '^data: ' "$TMP/s")" 9

# faults forced per request
R=$(curl -s -D "$TMP/h" -w ' %{http_code}' -H 'X-Mock-Fault: http500' -d "$CHAT" "$U/v1/chat/completions")
has "http500 status" "$R" " 500"
has "http500 body" "$R" '{"error":{"message":"mock fault","type":"server_error","param":null,"code":"mock_http500"}}'
R=$(curl -s -D "$TMP/h" -w ' %{http_code}' -H 'X-Mock-Fault: http429' -d "$SB" "$U/v1/chat/completions")
has "http429 status (stream request)" "$R" " 429"
has "http429 type" "$R" '"type":"rate_limit_exceeded"'
has "http429 Retry-After" "$(cat "$TMP/h")" "Retry-After: 1"
curl -s -o /dev/null --max-time 0.5 -H 'X-Mock-Fault: hang' -d "$CHAT" "$U/v1/chat/completions"
eq "hang never answers (curl timeout)" "$?" 28
R=$(curl -s -N -H 'X-Mock-Fault: drop-mid-stream' -H 'X-Mock-Tokens: 6' -d "$SB" "$U/v1/chat/completions")
RC=$?
eq "drop-mid-stream: transfer cut (curl 18)" "$RC" 18
eq "drop-mid-stream: role + 3 tokens" "$(grep -c '^data: ' <<<"$R")" 4
hasnt "drop-mid-stream: no [DONE]" "$R" "[DONE]"
curl -s -o /dev/null -H 'X-Mock-Fault: drop-mid-stream' -d "$CHAT" "$U/v1/chat/completions"
eq "drop non-stream: empty reply (curl 52)" "$?" 52
R=$(curl -s -N -H 'X-Mock-Fault: malformed' -H 'X-Mock-Tokens: 4' -d "$SB" "$U/v1/chat/completions")
eq "malformed stream: clean end (curl 0)" "$?" 0
has "malformed stream: bad event" "$R" 'data: {"choices":[{"delta":{"content":"x"'
eq "malformed stream: then [DONE]" "$(grep '^data: ' <<<"$R" | tail -1)" "data: [DONE]"
eq "malformed stream: role + 2 tokens before" "$(grep -c '"object":"chat.completion.chunk"' <<<"$R")" 3
R=$(curl -s -w '\n%{http_code}' -H 'X-Mock-Fault: malformed' -d "$CHAT" "$U/v1/chat/completions")
eq "malformed non-stream: 200" "$(tail -1 <<<"$R")" 200
check_not_json "malformed non-stream: invalid JSON" "$(head -1 <<<"$R")"
N=$(curl -s -N --max-time 1 -o /dev/null -w '%{size_header} %{size_download}' -H 'X-Mock-Fault: trickle' -d "$SB" "$U/v1/chat/completions")
N=$(( ${N% *} + ${N#* } ))
check "trickle: ~1 byte per 10 ms ($N bytes in 1 s)" test "$N" -ge 20 -a "$N" -le 110
R=$(curl -s -N --max-time 20 -H 'X-Mock-Fault: trickle' -H 'X-Mock-Tokens: 0' -d '{"prompt":""}' "$U/v1/completions")
has "trickle non-stream: whole body arrives" "$R" '"finish_reason":"stop"}]'
R=$(curl -s -H 'X-Mock-Fault: none' -d "$CHAT" "$U/v1/chat/completions")
has "X-Mock-Fault none" "$R" '"content":"w0 w1 w2 w3 w4"'

# hung and cut-short streaming connections are freed when the client goes
# away (streams would take 4 s; curl gives up after 3 s, mid-stream)
fds() { ls "/proc/$MAIN_PID/fd" | wc -l; }
BASE=$(fds)
CURLS=()
for _ in $(seq 20); do
	curl -s -o /dev/null --max-time 3 -H 'X-Mock-Fault: hang' -d "$CHAT" "$U/v1/chat/completions" &
	CURLS+=($!)
	curl -s -N -o /dev/null --max-time 3 -H 'X-Mock-Inter-Token-Ms: 1000' -d "$SB" "$U/v1/chat/completions" &
	CURLS+=($!)
done
MAX=$BASE
for _ in $(seq 20); do
	N=$(fds); [ "$N" -gt "$MAX" ] && MAX=$N
	[ "$MAX" -ge $((BASE + 40)) ] && break
	sleep 0.1
done
wait "${CURLS[@]}"
sleep 0.3
check "in-flight connections seen ($BASE -> $MAX)" test "$MAX" -ge $((BASE + 30))
eq "fds back to baseline after clients left" "$(fds)" "$BASE"
eq "still serving after disconnects" "$(curl -s "$U/healthz")" ok

# the port is taken: a second server must not silently share it
timeout 10 "$BIN" mock-upstream --port "$MAIN_PORT" 2>"$TMP/dup.log"
eq "port in use: exit 1" "$?" 1
has "port in use: message" "$(cat "$TMP/dup.log")" "cannot listen"

stop "$MAIN_PID"

# ------------------------------------------------------- fault rate, flags
start rate --threads 1 --tokens 2 --fault http500 --fault-rate 0.5
CODES=
for _ in 1 2 3 4 5 6; do
	CODES="$CODES$(curl -s -o /dev/null -w '%{http_code}' -d "$CHAT" "http://127.0.0.1:$PORT/v1/chat/completions"),"
done
eq "--fault-rate 0.5: every 2nd request" "$CODES" "200,500,200,500,200,500,"
eq "faults skip /healthz" "$(curl -s "http://127.0.0.1:$PORT/healthz")" ok
stop "$PID"

start delays --threads 1 --tokens 3 --first-token-ms 150 --inter-token-ms 100
T=$(curl -s -o /dev/null -w '%{time_total}' -d "$CHAT" "http://127.0.0.1:$PORT/v1/chat/completions")
check "--first-token-ms/--inter-token-ms ($T >= 0.35)" awk -v t="$T" 'BEGIN{exit !(t >= 0.34 && t < 3)}'
stop "$PID"

# ------------------------------------------------------------ runtime control
# codes N ARGS...: the status codes of N chat requests, comma-terminated.
codes() {
	local n=$1 out= _; shift
	for _ in $(seq "$n"); do
		out="$out$(curl -s -o /dev/null -w '%{http_code}' "$@" -d "$CHAT" "$U/v1/chat/completions"),"
	done
	printf '%s' "$out"
}
# cfg BODY: POST /mock/config, prints the body then the status code.
cfg() { curl -s -w ' %{http_code}' -d "$1" "$U/mock/config"; }

start ctl --threads 2 --tokens 3
U="http://127.0.0.1:$PORT"
R=$(curl -s "$U/mock/config")
eq "GET /mock/config: the flags" "$R" '{"tokens":3,"first_token_ms":0,"inter_token_ms":0,"fault":"none","fault_rate":1,"fail_after":0}'
check_json "config is JSON" "$R"
R=$(cfg '{"tokens":2,"first_token_ms":12.5}')
eq "POST /mock/config: changes the given fields, answers all" "$R" '{"tokens":2,"first_token_ms":12.5,"inter_token_ms":0,"fault":"none","fault_rate":1,"fail_after":0} 200'
eq "GET /mock/config after POST" "$(curl -s "$U/mock/config")" "${R% 200}"
# every thread sees it: ids name the thread (chatcmpl-mock-<thread>-<n>)
SEEN= BADN=0
for i in $(seq 60); do
	R=$(curl -s -d "$CHAT" "$U/v1/chat/completions")
	case $R in *'"content":"w0 w1"'*) ;; *) BADN=$((BADN + 1)) ;; esac
	SEEN="$SEEN $(sed -n 's/.*"id":"chatcmpl-mock-\([0-9]*\)-.*/\1/p' <<<"$R")"
	[ "$i" -ge 10 ] && [ "$(tr ' ' '\n' <<<"$SEEN" | sed '/^$/d' | sort -u | wc -l)" -ge 2 ] && break
done
eq "new tokens on every request" "$BADN" 0
eq "both threads answered with the new tokens" "$(tr ' ' '\n' <<<"$SEEN" | sed '/^$/d' | sort -u | tr '\n' ,)" "0,1,"
# a backend that slows down, then speeds up again
cfg '{"first_token_ms":400}' >/dev/null
T=$(curl -s -o /dev/null -w '%{time_total}' -d "$CHAT" "$U/v1/chat/completions")
check "first_token_ms 400 applies ($T >= 0.4)" awk -v t="$T" 'BEGIN{exit !(t >= 0.39 && t < 3)}'
cfg '{"first_token_ms":0}' >/dev/null
T=$(curl -s -o /dev/null -w '%{time_total}' -d "$CHAT" "$U/v1/chat/completions")
check "first_token_ms 0 applies ($T < 0.3)" awk -v t="$T" 'BEGIN{exit !(t < 0.3)}'
# an answer under way keeps the settings it started with
cfg '{"tokens":4,"inter_token_ms":150}' >/dev/null
curl -s -N -o "$TMP/s" -d '{"stream":true,"messages":[]}' "$U/v1/chat/completions" &
SPID=$!
for _ in $(seq 40); do # until the mock has read it
	case $(curl -s "$U/mock/stats") in *'"in_flight":1,'*) break ;; esac
	sleep 0.05
done
cfg '{"tokens":1,"inter_token_ms":0}' >/dev/null
has "next request: new settings" "$(curl -s -d "$CHAT" "$U/v1/chat/completions")" '"content":"w0"}'
wait "$SPID"
eq "stream under way keeps its settings (role+4+final+done)" "$(grep -c '^data: ' "$TMP/s")" 7
# starts failing, then recovers
R=$(cfg '{"fault":"http500"}')
has "POST fault http500" "$R" '"fault":"http500","fault_rate":1,"fail_after":0} 200'
eq "fault applies to every request" "$(codes 6)" "500,500,500,500,500,500,"
eq "/mock/config gets no fault" "$(curl -s -o /dev/null -w '%{http_code}' "$U/mock/config")" 200
eq "X-Mock-Fault none still overrides" "$(codes 1 -H 'X-Mock-Fault: none')" "200,"
cfg '{"fault":"none"}' >/dev/null
eq "recovered" "$(codes 6)" "200,200,200,200,200,200,"
# validation: 400 naming the field, nothing changed
BEFORE=$(curl -s "$U/mock/config")
while read -r body param; do
	R=$(cfg "$body")
	has "bad $body: 400" "$R" " 400"
	has "bad $body: param $param" "$R" "\"type\":\"invalid_request_error\",\"param\":\"$param\""
done <<'BAD'
{"tokens":-1} tokens
{"tokens":1000001} tokens
{"tokens":2.5} tokens
{"tokens":"3"} tokens
{"first_token_ms":3600001} first_token_ms
{"inter_token_ms":-0.5} inter_token_ms
{"inter_token_ms":null} inter_token_ms
{"fault":"bogus"} fault
{"fault_rate":1.5} fault_rate
{"fail_after":-1} fail_after
{"tokens":4,"bogus":1} bogus
BAD
has "bad fault: lists the modes" "$(cfg '{"fault":"x"}')" "drop-mid-stream"
has "unknown field: lists the fields" "$(cfg '{"x":1}')" "(accepted: tokens, first_token_ms, inter_token_ms, fault, fault_rate, fail_after)"
R=$(cfg '{"tokens":')
has "invalid JSON: 400" "$R" " 400"
has "invalid JSON: error shape" "$R" '"type":"invalid_request_error","param":null'
has "non-object body: 400" "$(cfg '[1]')" " 400"
eq "missing body: 400" "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$U/mock/config")" 400
eq "a rejected POST changes nothing" "$(curl -s "$U/mock/config")" "$BEFORE"
eq "PUT /mock/config 405" "$(curl -s -o /dev/null -D "$TMP/h" -w '%{http_code}' -X PUT -d '{}' "$U/mock/config")" 405
has "405 Allow: GET, POST" "$(cat "$TMP/h")" "Allow: GET, POST"
eq "POST /mock/stats 405" "$(curl -s -o /dev/null -w '%{http_code}' -d '{}' "$U/mock/stats")" 405
eq "/mock/ paths match whole" "$(curl -s -o /dev/null -w '%{http_code}' "$U/v1/mock/config")" 404
stop "$PID"

# counters
start stats --threads 2 --tokens 2
U="http://127.0.0.1:$PORT"
R=$(curl -s "$U/mock/stats")
eq "stats start at 0" "$R" '{"requests":0,"streams":0,"faults":0,"in_flight":0,"completed":0,"cancelled_by_client":0}'
check_json "stats is JSON" "$R"
codes 3 >/dev/null
curl -s -N -o /dev/null -d "$SB" "$U/v1/chat/completions"
curl -s -N -o /dev/null -d '{"prompt":"x","stream":true}' "$U/v1/completions"
curl -s -o /dev/null -H 'X-Mock-Fault: http500' -d "$CHAT" "$U/v1/chat/completions"
curl -s -N -o /dev/null -H 'X-Mock-Fault: drop-mid-stream' -d "$SB" "$U/v1/chat/completions"
curl -s -o /dev/null -d '{"messages":1}' "$U/v1/chat/completions"
for P in /healthz /v1/models /mock/config /mock/stats; do curl -s -o /dev/null "$U$P"; done
eq "stats count completion requests only" "$(curl -s "$U/mock/stats")" '{"requests":8,"streams":3,"faults":2,"in_flight":0,"completed":8,"cancelled_by_client":0}'
# in flight, then cancelled by the client: a hang, a slow stream, a delayed answer
CURLS=()
curl -s -o /dev/null --max-time 1.5 -H 'X-Mock-Fault: hang' -d "$CHAT" "$U/v1/chat/completions" & CURLS+=($!)
curl -s -N -o /dev/null --max-time 1.5 -H 'X-Mock-Tokens: 5' -H 'X-Mock-Inter-Token-Ms: 1000' -d "$SB" "$U/v1/chat/completions" & CURLS+=($!)
curl -s -o /dev/null --max-time 1.5 -H 'X-Mock-First-Token-Ms: 5000' -d "$CHAT" "$U/v1/chat/completions" & CURLS+=($!)
for _ in $(seq 20); do
	R=$(curl -s "$U/mock/stats")
	case $R in *'"in_flight":3,'*) break ;; esac
	sleep 0.05
done
has "in_flight counts answers under way" "$R" '"requests":11,"streams":4,"faults":3,"in_flight":3,"completed":8,"cancelled_by_client":0}'
wait "${CURLS[@]}"
for _ in $(seq 20); do
	R=$(curl -s "$U/mock/stats")
	case $R in *'"in_flight":0,'*) break ;; esac
	sleep 0.05
done
eq "client closes counted as cancelled" "$R" '{"requests":11,"streams":4,"faults":3,"in_flight":0,"completed":8,"cancelled_by_client":3}'
# settings changed while requests run on both threads (races show under TSan)
SP=()
for i in 1 2 3 4; do
	( for _ in $(seq 5); do
		curl -s -o /dev/null -w '%{http_code}\n' -d "$CHAT" "$U/v1/chat/completions"
		curl -s -N -o /dev/null -w '%{http_code}\n' -d "$SB" "$U/v1/chat/completions"
	done >"$TMP/stress$i" ) &
	SP+=($!)
done
for j in $(seq 12); do
	if [ $((j % 2)) = 1 ]; then F=http500; else F=none; fi
	curl -s -o /dev/null -d "{\"tokens\":$((j % 4)),\"fault\":\"$F\",\"fault_rate\":0.5}" "$U/mock/config"
	curl -s -o /dev/null "$U/mock/stats"
done
wait "${SP[@]}"
cfg '{"fault":"none"}' >/dev/null
eq "concurrent changes: 40 answers, all 200 or 500" "$(cat "$TMP"/stress? | grep -cE '^(200|500)$')" 40
R=$(curl -s "$U/mock/stats")
has "concurrent changes: counted" "$R" '"requests":51,"streams":24,'
has "concurrent changes: nothing in flight" "$R" '"in_flight":0,"completed":48,"cancelled_by_client":3}'
stop "$PID"

# --fail-after, and fail_after / fault_rate set at run time (one thread:
# the pattern is exact)
start fail --threads 1 --tokens 2 --fault http500 --fail-after 3
U="http://127.0.0.1:$PORT"
has "config shows --fail-after" "$(curl -s "$U/mock/config")" '"fault":"http500","fault_rate":1,"fail_after":3}'
eq "--fail-after 3: then every request fails" "$(codes 6)" "200,200,200,500,500,500,"
cfg '{"fault":"http429","fault_rate":0.5,"fail_after":2}' >/dev/null
eq "fail_after restarts counting; then the rate" "$(codes 5)" "200,200,200,429,200,"
cfg '{"fault":"http500","fault_rate":0.5}' >/dev/null
eq "setting the fault restarts the diffusion" "$(codes 4)" "200,500,200,500,"
cfg '{"fault":"none"}' >/dev/null
eq "fault none: recovered" "$(codes 4)" "200,200,200,200,"
stop "$PID"

badflag() { # NAME EXPECTED_TEXT ARGS...
	local n=$1 want=$2; shift 2
	timeout 10 "$BIN" mock-upstream "$@" >/dev/null 2>"$TMP/flag.log"
	local rc=$?
	eq "$n: exit 2" "$rc" 2
	has "$n: message" "$(cat "$TMP/flag.log")" "$want"
}
badflag "unknown flag" "unknown flag '--bogus'" --bogus 1
badflag "--threads 0" "--threads: bad value '0' (accepted: an integer 1..1024)" --threads 0
badflag "--fault bogus" "drop-mid-stream" --fault bogus
badflag "--fault-rate 2" "--fault-rate: bad value '2'" --fault http500 --fault-rate 2
badflag "--fault-rate alone" "--fault-rate needs --fault" --fault-rate 0.5
badflag "--port missing value" "--port needs a value" --port
badflag "--first-token-ms x" "--first-token-ms: bad value 'x'" --first-token-ms x
badflag "--fail-after alone" "--fail-after needs --fault" --fail-after 3
badflag "--fail-after x" "--fail-after: bad value 'x' (accepted: an integer 0..1000000000)" --fault http500 --fail-after x
"$BIN" mock-upstream --help >"$TMP/help" 2>&1
eq "--help exits 0" "$?" 0
has "--help names flags" "$(cat "$TMP/help")" "--inter-token-ms"
has "--help names --fail-after" "$(cat "$TMP/help")" "--fail-after N"

echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
