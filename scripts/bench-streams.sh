#!/usr/bin/env bash
# bench-streams.sh - concurrent SSE streams and time to first token.
# Measurement only; prints to stdout, writes nothing into the repository.
#
# Part 1 (hold): a slow mock upstream (`sluice mock-upstream --tokens 30
# --inter-token-ms 1000`: every stream stays open ~30 s) behind `sluice serve`;
# bench/sse_load opens --streams streams through sluice and holds them.
# sluice's RSS (VmRSS, /proc/PID/status) is read idle (after a one-stream
# warm-up) and sampled every 0.2 s while the streams are open; the peak is the
# kernel's high-water mark VmHWM (cross-checked with the samples).
#   per-stream RSS = (peak - idle) / streams open at once.
# Target: 10,000 streams open at once, <= 16 KiB per stream, no error.
#
# Part 2 (TTFT): the mock at --tokens 20 --inter-token-ms 5; sse_load in a
# closed loop (keep-alive) at 1 and 256 connections, (a) straight to the mock
# and (b) through sluice; TTFT p50/p99 of both and the difference ("added").
#
# Pinning (as the shared harness, ../shared/bench): the load client on CPU 0,
# sluice and the mock on CPU 1 (so sluice runs one shard); --no-pin turns it
# off.  Everything listens on 127.0.0.1.  All processes started here are
# stopped on exit (by PID).
#
# File descriptors: sluice needs one per client plus one per upstream
# connection (2 x streams + ~20), the mock and sse_load one per stream.  The
# script raises the hard limit (`ulimit -Hn`, needs root with
# CAP_SYS_RESOURCE) and the soft limit to it, and says so when it cannot.
#
# Usage: scripts/bench-streams.sh [options]
#   --streams N        streams to hold open (default 10000)
#   --quick            1000 streams of 10 s, TTFT rows of 3 s
#   --no-pin           do not pin processes to CPUs
#   --rate R           hold: new client connections per second (default 1000;
#                      0 = all at once, a connect storm: then the listen
#                      backlog and SYN retries dominate the first tokens)
#   --serve-args 'A'   extra arguments for `sluice serve` in both parts
#                      (default none)
#   --hold-serve-args 'A'  arguments for the hold part instead of
#                      '--concurrency N' (N = --streams; sluice's default,
#                      256 per shard, would let only 256 streams per shard run
#                      at once and park the rest: pass '' to measure that)
#   --ttft-duration S  seconds per TTFT row (default 10; --quick 3)
#   --ttft-conc LIST   connection counts for TTFT (default 1,256)
#   --repeat N         run every TTFT row N times, report the median (default 1)
#   --skip-hold | --skip-ttft
#   --build DIR        take DIR/sluice and DIR/bench/sse_load (default: build)
#   --sluice BIN       the sluice program to measure (default: DIR/sluice); the
#                      mock always comes from DIR/sluice
#   --verbose          also print the RSS samples and sse_load's progress lines
#   --help
# Ports (env): MOCK_PORT=18210 SLUICE_PORT=18211
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
STREAMS=10000
QUICK=0
PIN=1
RATE=1000
SERVE_ARGS=""
TTFT_DUR=""
TTFT_CONC=1,256
REPEAT=1
DO_HOLD=1
DO_TTFT=1
BUILD=$top/build
VERBOSE=0
SUT=""
HOLD_SERVE_ARGS=""
HOLD_SET=0
MOCK_PORT=${MOCK_PORT:-18210}
SLUICE_PORT=${SLUICE_PORT:-18211}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
	case "$1" in
	--streams) STREAMS=$2; shift ;;
	--quick) QUICK=1 ;;
	--no-pin) PIN=0 ;;
	--rate) RATE=$2; shift ;;
	--serve-args) SERVE_ARGS=$2; shift ;;
	--hold-serve-args) HOLD_SERVE_ARGS=$2; HOLD_SET=1; shift ;;
	--ttft-duration) TTFT_DUR=$2; shift ;;
	--ttft-conc) TTFT_CONC=$2; shift ;;
	--repeat) REPEAT=$2; shift ;;
	--skip-hold) DO_HOLD=0 ;;
	--skip-ttft) DO_TTFT=0 ;;
	--build) BUILD=$(cd "$2" && pwd); shift ;;
	--sluice) SUT=$2; shift ;;
	--verbose) VERBOSE=1 ;;
	-h|--help) usage; exit 0 ;;
	*) echo "bench-streams: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

HOLD_TOKENS=30
if [ "$QUICK" = 1 ]; then
	[ "$STREAMS" = 10000 ] && STREAMS=1000
	HOLD_TOKENS=10
	: "${TTFT_DUR:=3}"
fi
: "${TTFT_DUR:=10}"
[ "$HOLD_SET" = 1 ] || HOLD_SERVE_ARGS="--concurrency $STREAMS"
TTFT_WARMUP=1

SLUICE=$BUILD/sluice
LOAD=$BUILD/bench/sse_load
SUT=${SUT:-$SLUICE}
for b in "$SLUICE" "$SUT" "$LOAD"; do
	if [ ! -x "$b" ]; then
		echo "bench-streams: $b is missing; build first (make build, or cmake --build $BUILD)" >&2
		exit 2
	fi
done

RUN=$(mktemp -d "${TMPDIR:-/tmp}/bench-streams.XXXXXX")
PIDS=() # what this script started; only those still running are signalled
stop_all() {
	local p running
	running=" $(jobs -pr | tr '\n' ' ') "
	for p in "${PIDS[@]}"; do
		case "$running" in *" $p "*) kill "$p" 2>/dev/null || true ;; esac
	done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	PIDS=()
}
cleanup() {
	stop_all
	rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$PIN" = 1 ] && command -v taskset >/dev/null && [ "$(nproc --all)" -ge 2 ]; then
	PIN_LOAD=(taskset -c 0)
	PIN_SUT=(taskset -c 1)
else
	PIN_LOAD=()
	PIN_SUT=()
	PIN=0
fi

# ---- file descriptors ------------------------------------------------------
need=$((2 * STREAMS + 256))
want=$((need > 200000 ? need : 200000))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
	ulimit -Hn "$want" 2>/dev/null || true
fi
hard=$(ulimit -Hn)
ulimit -n "$hard"
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
	echo "bench-streams: warning: open-files limit is $hard and cannot be raised here" \
		"(ulimit -Hn needs CAP_SYS_RESOURCE); sluice needs about $need fds for $STREAMS" \
		"streams (one per client + one per upstream connection), so it will run out" \
		"near $(((hard - 16) / 2)) streams" >&2
fi

# ---- helpers ---------------------------------------------------------------
jnum() { # jnum JSON KEY: a number (or null) from sse_load's flat JSON line
	sed -n "s/.*\"$2\":\(null\|-\{0,1\}[0-9.]*\).*/\1/p" <<<"$1" | head -1
}
jobj() { # jobj JSON KEY: a flat {...} value
	sed -n "s/.*\"$2\":\({[^}]*}\).*/\1/p" <<<"$1" | head -1
}
kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
TCK=$(getconf CLK_TCK)
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
now_s() { date +%s.%N; }
pct() { # pct TICKS0 TICKS1 T0 T1: CPU % over the interval
	awk -v a="$1" -v b="$2" -v s="$3" -v e="$4" -v k="$TCK" 'BEGIN { printf "%.0f", (b - a) / k / (e - s) * 100 }'
}

wait_http() { # wait_http PORT PID NAME
	for _ in $(seq 1 100); do
		curl -sf -o /dev/null "http://127.0.0.1:$1/healthz" && return 0
		kill -0 "$2" 2>/dev/null || { echo "bench-streams: $3 exited:" >&2; cat "$RUN/$3.log" >&2; exit 1; }
		sleep 0.05
	done
	echo "bench-streams: $3 did not answer on port $1" >&2
	cat "$RUN/$3.log" >&2
	exit 1
}

MOCK_PID=""
SLUICE_PID=""
start_mock() { # start_mock TOKENS INTER_TOKEN_MS
	"${PIN_SUT[@]}" "$SLUICE" mock-upstream --port "$MOCK_PORT" --threads 1 \
		--tokens "$1" --inter-token-ms "$2" >"$RUN/mock.log" 2>&1 &
	MOCK_PID=$!
	PIDS+=("$MOCK_PID")
	wait_http "$MOCK_PORT" "$MOCK_PID" mock
}
start_sluice() { # start_sluice [EXTRA ARGS...]
	# The default pipeline's rag stage retrieves from ${SLUICE_DOCS:-docs}
	# when that folder exists (from the repository root it does: 4 sources,
	# a prompt of several KiB per stream).  Like bench-gateway, measure the
	# gateway without a corpus unless SLUICE_DOCS names one.
	# shellcheck disable=SC2086  # SERVE_ARGS is a list of words
	SLUICE_DOCS=${SLUICE_DOCS:-/nonexistent-sluice-corpus} "${PIN_SUT[@]}" "$SUT" serve --port "$SLUICE_PORT" \
		--upstream "http://127.0.0.1:$MOCK_PORT/v1" --model mock --log-level warn \
		$SERVE_ARGS "$@" >"$RUN/sluice.log" 2>&1 &
	SLUICE_PID=$!
	PIDS+=("$SLUICE_PID")
	wait_http "$SLUICE_PORT" "$SLUICE_PID" sluice
}

# run_load ARGS...: sse_load pinned; its JSON line goes to $RUN/load.json.  It
# runs in the background and is waited for, so that a signal reaches the trap
# (and the cleanup) at once.
run_load() {
	"${PIN_LOAD[@]}" "$LOAD" "$@" >"$RUN/load.json" 2>>"$RUN/load.err" &
	local pid=$!
	PIDS+=("$pid")
	wait "$pid" || true
}

URL_MOCK=127.0.0.1:$MOCK_PORT/v1/chat/completions
URL_SLUICE=127.0.0.1:$SLUICE_PORT/v1/chat/completions
JSON_LINES=()
echo "# bench-streams: $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -n), $(nproc --all) CPUs," \
	"pinning $([ "$PIN" = 1 ] && echo 'load CPU 0, sluice+mock CPU 1' || echo off)," \
	"open files $(ulimit -n), sluice $SUT ($(git -C "$top" describe --always --dirty 2>/dev/null || echo "?"))"

# ---- part 1: streams held open ---------------------------------------------
if [ "$DO_HOLD" = 1 ]; then
	start_mock "$HOLD_TOKENS" 1000
	# shellcheck disable=SC2086
	start_sluice $HOLD_SERVE_ARGS
	rss_fresh=$(kib "$SLUICE_PID" VmRSS)
	# one stream, dropped after its first token, so that lazily built state
	# (libcurl's multi handle, caches) is not counted per stream
	run_load --url "$URL_SLUICE" --conc 1 --hold --timeout-s 10 --drain-s 0
	sleep 0.5
	rss_idle=$(kib "$SLUICE_PID" VmRSS)
	fds_idle=$(fds "$SLUICE_PID")
	(
		while kill -0 "$SLUICE_PID" 2>/dev/null; do
			echo "$(date +%s.%N | cut -c1-14) $(kib "$SLUICE_PID" VmRSS) $(fds "$SLUICE_PID")"
			sleep 0.2
		done
	) >"$RUN/rss.log" 2>/dev/null &
	SAMPLER=$!
	PIDS+=("$SAMPLER")
	rm -f "$RUN/ready"
	(
		while [ ! -e "$RUN/ready" ]; do sleep 0.05; done
		sleep 0.5
		echo "$(kib "$SLUICE_PID" VmRSS) $(fds "$SLUICE_PID")" >"$RUN/rss_at_open"
	) &
	PIDS+=("$!")
	timeout_s=$((STREAMS / 200 + 30))
	m0=$(ticks "$MOCK_PID") s0=$(ticks "$SLUICE_PID") t0=$(now_s)
	: >"$RUN/load.err"
	run_load --url "$URL_SLUICE" --conc "$STREAMS" --hold --rate "$RATE" \
		--expect-tokens "$HOLD_TOKENS" --timeout-s "$timeout_s" --drain-s $((HOLD_TOKENS + 90)) \
		--ready-file "$RUN/ready" --progress
	hold=$(cat "$RUN/load.json")
	m1=$(ticks "$MOCK_PID") s1=$(ticks "$SLUICE_PID") t1=$(now_s)
	mcpu=$(pct "$m0" "$m1" "$t0" "$t1") scpu=$(pct "$s0" "$s1" "$t0" "$t1")
	sleep 0.3
	rss_peak=$(kib "$SLUICE_PID" VmHWM)
	rss_after=$(kib "$SLUICE_PID" VmRSS)
	alive=yes
	kill -0 "$SLUICE_PID" 2>/dev/null || alive="NO (exited)"
	rss_sampled=$(awk '$2 > m { m = $2 } END { print m + 0 }' "$RUN/rss.log")
	fds_peak=$(awk '$3 > m { m = $3 } END { print m + 0 }' "$RUN/rss.log")
	read -r rss_open fds_open <"$RUN/rss_at_open" 2>/dev/null || { rss_open=""; fds_open=""; }
	open=$(jnum "$hold" open_at_once)
	[ -n "$rss_peak" ] || rss_peak=$rss_sampled
	per=null
	if [ -n "$open" ] && [ "$open" != null ] && [ "$open" -gt 0 ] && [ -n "$rss_peak" ]; then
		per=$(awk -v p="$rss_peak" -v i="$rss_idle" -v n="$open" 'BEGIN { printf "%.2f", (p - i) / n }')
	fi
	errs=$(jnum "$hold" error_count)
	summary="{\"bench\":\"streams_hold\",\"streams\":$STREAMS,\"open_at_once\":${open:-null}"
	summary+=",\"rss_fresh_kib\":${rss_fresh:-null},\"rss_idle_kib\":${rss_idle:-null}"
	summary+=",\"rss_all_open_kib\":${rss_open:-null},\"rss_peak_kib\":${rss_peak:-null}"
	summary+=",\"rss_after_kib\":${rss_after:-null},\"per_stream_kib\":$per"
	summary+=",\"fds_idle\":${fds_idle:-null},\"fds_all_open\":${fds_open:-null},\"fds_peak\":${fds_peak:-null}"
	summary+=",\"errors\":${errs:-null},\"error_kinds\":$(jobj "$hold" errors | sed 's/^$/null/')"
	summary+=",\"sluice_cpu_pct\":$scpu,\"mock_cpu_pct\":$mcpu"
	summary+=",\"sluice_alive\":\"$alive\",\"open_files_limit\":\"$(ulimit -n)\"}"
	JSON_LINES+=("$hold" "$summary")

	echo
	echo "## load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every figure)"
	echo "## $STREAMS streams held open (mock: $HOLD_TOKENS tokens, 1 per s; clients: $RATE" \
		"connections/s; sluice serve ... $SERVE_ARGS $HOLD_SERVE_ARGS)"
	printf '%-34s %s\n' \
		"streams opened / first token" "$(jnum "$hold" opened) / $(jnum "$hold" first_token)" \
		"open at once (peak)" "${open:-?} ($(jnum "$hold" peak_open))" \
		"every first token after" "$(jnum "$hold" all_first_token_s) s" \
		"TTFT p50 / p99 (hold)" "$(jnum "$hold" ttft_p50_us) / $(jnum "$hold" ttft_p99_us) us" \
		"completed" "$(jnum "$hold" completed)" \
		"errors" "${errs:-?} $(jobj "$hold" errors)" \
		"sluice RSS fresh / idle" "${rss_fresh:-?} / ${rss_idle:-?} KiB" \
		"sluice RSS all open / peak (HWM)" "${rss_open:-?} / ${rss_peak:-?} KiB (sampled max $rss_sampled)" \
		"sluice RSS after the streams" "${rss_after:-?} KiB" \
		"per stream (peak - idle) / open" "$per KiB  (target <= 16)" \
		"sluice fds idle / all open / peak" "${fds_idle:-?} / ${fds_open:-?} / ${fds_peak:-?}" \
		"CPU % sluice / mock (whole run)" "$scpu / $mcpu" \
		"sluice still running" "$alive"
	if grep -qv '^sluice\|^  \|^try:' "$RUN/sluice.log" 2>/dev/null; then
		echo "sluice stderr (first lines):"
		grep -v '^sluice \|^  \|^try:' "$RUN/sluice.log" | head -20 | sed 's/^/  /'
	fi
	if [ "$VERBOSE" = 1 ]; then
		echo "sse_load progress:"; sed 's/^/  /' "$RUN/load.err"
		echo "RSS samples (time KiB fds):"; sed 's/^/  /' "$RUN/rss.log"
	fi
	stop_all
fi

# ---- part 2: time to first token, direct vs through sluice -----------------
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)]; else print "null" }'; }
if [ "$DO_TTFT" = 1 ]; then
	start_mock 20 5
	start_sluice
	[ "$DO_HOLD" = 1 ] && sleep 3 # let the hold part's sockets and memory settle
	echo
	echo "## time to first token, closed loop ${TTFT_DUR} s per row (mock: 20 tokens, 5 ms apart;" \
		"load average $(cut -d' ' -f1 /proc/loadavg))"
	printf '%6s  %-8s %12s %12s %10s %6s %6s %8s %s\n' conc target ttft_p50_us ttft_p99_us rps \
		mock% sluice% errors ""
	for conc in ${TTFT_CONC//,/ }; do
		declare -A p50=() p99=()
		for target in direct sluice; do
			url=$URL_MOCK
			[ "$target" = sluice ] && url=$URL_SLUICE
			p50s="" p99s=""
			for _ in $(seq 1 "$REPEAT"); do
				m0=$(ticks "$MOCK_PID") s0=$(ticks "$SLUICE_PID") t0=$(now_s)
				run_load --url "$url" --conc "$conc" --duration "$TTFT_DUR" \
					--warmup "$TTFT_WARMUP" --expect-tokens 20 --drain-s 30
				line=$(cat "$RUN/load.json")
				m1=$(ticks "$MOCK_PID") s1=$(ticks "$SLUICE_PID") t1=$(now_s)
				mcpu=$(pct "$m0" "$m1" "$t0" "$t1") scpu=$(pct "$s0" "$s1" "$t0" "$t1")
				line=${line%\}},\"bench\":\"ttft\",\"target\":\"$target\",\"mock_cpu_pct\":$mcpu,\"sluice_cpu_pct\":$scpu\}
				JSON_LINES+=("$line")
				p50s+="$(jnum "$line" ttft_p50_us)"$'\n'
				p99s+="$(jnum "$line" ttft_p99_us)"$'\n'
				printf '%6s  %-8s %12s %12s %10s %6s %6s %8s %s\n' "$conc" "$target" \
					"$(jnum "$line" ttft_p50_us)" "$(jnum "$line" ttft_p99_us)" \
					"$(jnum "$line" rps)" "$mcpu" "$scpu" "$(jnum "$line" error_count)" \
					"$(jobj "$line" errors | sed 's/{}//')"
			done
			p50[$target]=$(printf '%s' "$p50s" | grep -v '^null$' | median)
			p99[$target]=$(printf '%s' "$p99s" | grep -v '^null$' | median)
		done
		add50=$(awk -v a="${p50[sluice]}" -v b="${p50[direct]}" 'BEGIN { if (a == "null" || b == "null") print "null"; else print a - b }')
		add99=$(awk -v a="${p99[sluice]}" -v b="${p99[direct]}" 'BEGIN { if (a == "null" || b == "null") print "null"; else print a - b }')
		printf '%6s  %-8s %12s %12s\n' "$conc" added "$add50" "$add99"
		JSON_LINES+=("{\"bench\":\"ttft_added\",\"conc\":$conc,\"repeat\":$REPEAT,\"direct_p50_us\":${p50[direct]},\"direct_p99_us\":${p99[direct]},\"sluice_p50_us\":${p50[sluice]},\"sluice_p99_us\":${p99[sluice]},\"added_p50_us\":$add50,\"added_p99_us\":$add99}")
		unset p50 p99
	done
	stop_all
fi

echo
echo "## JSON lines"
printf '%s\n' "${JSON_LINES[@]}"
