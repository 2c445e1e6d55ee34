#!/usr/bin/env bash
# Runs the shared gateway comparison harness (../shared/bench/run-peers.sh:
# wrk and a streaming client against the mock upstream directly, through
# nginx, Portkey and nullplatform) with sluice in the same table.
# Usage: scripts/bench-gateway.sh [run-peers options, e.g. --quick --repeat 2]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bench=${SLUICE_PEER_BENCH:-$top/../shared/bench}
[ -x "$top/build/sluice" ] || make -C "$top" build
if [ ! -f "$bench/run-peers.sh" ]; then
	echo "bench-gateway: no harness at $bench (set SLUICE_PEER_BENCH)" >&2
	exit 2
fi
# The default pipeline's rag stage retrieves from ${SLUICE_DOCS:-docs} when
# that folder exists; the peers do no retrieval, so the comparison runs
# sluice with no corpus (the stage passes requests through, all five stages
# still run).  Set SLUICE_DOCS to a folder to include retrieval.
export SLUICE_DOCS=${SLUICE_DOCS:-/nonexistent-sluice-corpus}
exec bash "$bench/run-peers.sh" \
	--target sluice=http://127.0.0.1:18100 \
	--target-start "sluice=$top/build/sluice serve --port \$PORT --upstream \$UPSTREAM_URL --model mock-\$MODE --log-level warn" \
	"$@"
