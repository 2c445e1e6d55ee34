#!/usr/bin/env bash
# Runs the shared gateway comparison harness (../shared/bench/run-peers.sh:
# wrk and a streaming client against the mock upstream directly, through
# nginx, Portkey and nullplatform) with sluice in the same table.
#
# Usage: scripts/bench-gateway.sh [--harness-start] [run-peers options,
#        e.g. --quick --repeat 2 --modes stream --conc 256]
#
# How sluice is started.  The harness starts its own peers (nginx, Portkey,
# nullplatform) and the mock upstreams as plain background jobs of its shell,
# but a system given with --target-start under `setsid`: in a session of its
# own.  With the kernel's autogroup scheduling (kernel.sched_autogroup_enabled
# = 1, Debian's default) every session is a separate CFS group, so such a
# system no longer shares the upstream's group the way nginx does: on the one
# core the system under test shares with the upstream, each token the upstream
# writes then wakes it and preempts the upstream, and it handles tokens one or
# two at a time instead of in batches.  Measured on the 2-core VM
# (2026-11-27, 256 streams): nginx itself drops from ~940 to ~730 streams/s
# under setsid, exactly as sluice does; sluice and nginx are within noise of
# each other when both are treated alike.
#
# So by default this script starts sluice itself, in the harness's session,
# pinned to the system-under-test CPU like the peers (taskset -c 1, unless
# --no-pin), with one config that serves both request kinds (model mock-json
# through the nginx `return 200` upstream on 18080, mock-stream through the C
# mock on 18081: the same upstreams the nginx peer uses) and hands the
# harness its URL (--target, --target-upstream json).  --harness-start uses
# the harness's --target-start instead (sluice in its own session), to
# reproduce that setting.
#
# The default pipeline's rag stage retrieves from ${SLUICE_DOCS:-docs} when
# that folder exists; the peers do no retrieval, so the comparison runs
# sluice with no corpus (the stage passes requests through, all five stages
# still run).  Set SLUICE_DOCS to a folder to include retrieval (with
# --harness-start only).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bench=${SLUICE_PEER_BENCH:-$top/../shared/bench}
[ -x "$top/build/sluice" ] || make -C "$top" build
if [ ! -f "$bench/run-peers.sh" ]; then
	echo "bench-gateway: no harness at $bench (set SLUICE_PEER_BENCH)" >&2
	exit 2
fi
export SLUICE_DOCS=${SLUICE_DOCS:-/nonexistent-sluice-corpus}
PORT=${SLUICE_BENCH_PORT:-18100}

harness_start=0
pin=(taskset -c 1)
args=()
for a in "$@"; do
	case "$a" in
	--harness-start) harness_start=1 ;;
	--no-pin) pin=(); args+=("$a") ;;
	*) args+=("$a") ;;
	esac
done

if [ "$harness_start" = 1 ]; then
	exec bash "$bench/run-peers.sh" \
		--target sluice=http://127.0.0.1:$PORT \
		--target-start "sluice=$top/build/sluice serve --port \$PORT --upstream \$UPSTREAM_URL --model mock-\$MODE --log-level warn" \
		"${args[@]}"
fi

if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then
	echo "bench-gateway: port $PORT is in use (set SLUICE_BENCH_PORT)" >&2
	exit 2
fi
tmp=$(mktemp -d)
spid=
cleanup() {
	[ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
# The embedded default pipeline (queues 512/512/1024/512/256, inference
# concurrency 256 per shard), no retrieval corpus; one backend per upstream.
cat >"$tmp/bench.yaml" <<EOF
server: {host: 127.0.0.1, port: $PORT}
pipelines:
  default:
    stages:
      - {name: rag, type: rag, queue: 512, concurrency: 64}
      - {name: assemble, type: assemble, queue: 512, concurrency: 64}
      - {name: inference, type: inference, queue: 1024, concurrency: 256}
      - {name: post, type: post, queue: 512, concurrency: 64}
      - {name: stream, type: stream, queue: 256, concurrency: 64}
backends:
  json: {type: openai, url: "http://127.0.0.1:${UP_JSON_PORT:-18080}/v1", stream: true}
  stream: {type: openai, url: "http://127.0.0.1:${UP_STREAM_PORT:-18081}/v1", stream: true}
models:
  mock-json: {pipeline: default, backends: [json]}
  mock-stream: {pipeline: default, backends: [stream]}
EOF
"${pin[@]}" "$top/build/sluice" serve --config "$tmp/bench.yaml" --log-level warn \
	>"$tmp/sluice.log" 2>&1 &
spid=$!
for _ in $(seq 1 100); do
	(exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break
	kill -0 "$spid" 2>/dev/null || { cat "$tmp/sluice.log" >&2; exit 1; }
	sleep 0.1
done
echo "bench-gateway: sluice (pid $spid, ${pin[*]:-not pinned}) on 127.0.0.1:$PORT, in the harness's session"
bash "$bench/run-peers.sh" --target sluice=http://127.0.0.1:$PORT --target-upstream json "${args[@]}"
