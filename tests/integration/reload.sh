#!/usr/bin/env bash
# Hot reload under load: wrk drives `sluice serve --config F` while the file
# is replaced by a valid new one (SIGHUP), then by an invalid one (SIGHUP and
# POST /admin/reload).  Zero failed requests; the new models and stage
# settings visible on /v1/models and /metrics; the invalid file rejected
# with its problems while the running config stays in force.
# Usage: tests/integration/reload.sh path/to/sluice
set -u
BIN=${1:?usage: reload.sh path/to/sluice}
T=$(mktemp -d)
PID=
pass=0
fail=0
cleanup() {
	[ -n "$PID" ] && kill "$PID" 2>/dev/null
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

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')

gen() { # gen FILE MODEL2 QUEUE
	cat >"$1" <<EOF
server:
  port: $PORT
  shards: 2
  pin: false
pipelines:
  main:
    stages:
      - {name: rag, type: rag}
      - {name: assemble, type: assemble}
      - {name: inference, type: inference, queue: $3}
      - {name: post, type: post}
      - {name: stream, type: stream}
models:
  shared: {pipeline: main, backends: [echo]}
  $2: {pipeline: main, backends: [echo]}
backends:
  echo: {type: echo, delay_ms: 2}
EOF
}

CFG=$T/sluice.yaml
gen "$CFG" first 1024
"$BIN" serve --config "$CFG" --log-level warn >"$T/out" 2>"$T/err" &
PID=$!
for _ in $(seq 1 100); do
	curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
	sleep 0.05
done
check "serves first" grep -q '"first"' <(curl -s "http://127.0.0.1:$PORT/v1/models")

cat >"$T/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"model":"shared","messages":[{"role":"user","content":"reload me"}]}'
wrk.headers["Content-Type"] = "application/json"
EOF
wrk -t1 -c16 -d6s -s "$T/post.lua" "http://127.0.0.1:$PORT/v1/chat/completions" >"$T/wrk" 2>&1 &
WRK=$!
sleep 1.5
gen "$CFG" second 77
kill -HUP "$PID"
sleep 1.5
curl -s "http://127.0.0.1:$PORT/v1/models" >"$T/models"
check "new model listed" grep -q '"second"' "$T/models"
check "old model gone" bash -c "! grep -q '\"first\"' '$T/models'"
curl -s "http://127.0.0.1:$PORT/metrics" >"$T/metrics"
check "new pipelines on /metrics" grep -q 'pipeline="main:second"' "$T/metrics"
check "new queue size in effect" grep -qE '^sluice_stage_queue_capacity\{pipeline="main:shared",stage="inference"\} 154$' "$T/metrics"
# an invalid file: the running config stays
printf 'pipelines:\n  main:\n    stages:\n      - {name: rag, type: rag, queu: 5}\n' >"$CFG"
kill -HUP "$PID"
sleep 1
curl -s -o "$T/adm" -w '%{http_code}' -X POST "http://127.0.0.1:$PORT/admin/reload" >"$T/admc"
check "admin reload of an invalid file is 422" test "$(cat "$T/admc")" = 422
check "admin reload lists the problem" grep -q 'unknown key' "$T/adm"
check "admin reload names file:line:col" grep -q "sluice.yaml:4:" "$T/adm"
check "still serving second" grep -q '"second"' <(curl -s "http://127.0.0.1:$PORT/v1/models")
check "invalid reload logged" grep -q 'reload_invalid' "$T/err"
wait "$WRK"
check "load ran" grep -q 'requests in' "$T/wrk"
check "zero failed requests under reload" bash -c "! grep -q 'Non-2xx' '$T/wrk' && ! grep -q 'Socket errors' '$T/wrk'"
n=$(awk '/requests in/ {print $1}' "$T/wrk")
check "enough requests ($n)" test "${n:-0}" -gt 100
# a valid file again via the admin API
gen "$CFG" third 128
code=$(curl -s -o "$T/adm2" -w '%{http_code}' -X POST "http://127.0.0.1:$PORT/admin/reload")
check "admin reload ok" test "$code" = 200
check "third listed" grep -q '"third"' <(curl -s "http://127.0.0.1:$PORT/v1/models")
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$PORT/v1/chat/completions" \
	-d '{"model":"third","messages":[{"role":"user","content":"x"}]}')
check "third answers" test "$code" = 200
kill -TERM "$PID"
rc=0
wait "$PID" || rc=$?
PID=
check "exit 0" test "$rc" = 0
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
