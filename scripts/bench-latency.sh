#!/usr/bin/env bash
# bench-latency.sh - latency sluice adds to non-streaming chat completions at a
# steady request rate (open loop).  Measurement only; prints to stdout, writes
# nothing into the repository.
#
# Target (the gateway issue): added latency p50 <= 100 us and p99 <= 1 ms at a
# steady 10,000 req/s.
#
# bench/sse_load sends POST /v1/chat/completions ("stream":false, model
# mock-json) on a fixed schedule of R requests per second over a pool of
# keep-alive connections (open loop, as wrk2: latency counts from each
# request's *scheduled* time, so a stall is not hidden by the client slowing
# down).  For each rate and repeat it measures, one after the other:
#   direct  the upstream itself: the shared harness's nginx `return 200`
#           upstream on 18080 (../shared/bench/upstream/nginx-json.conf)
#   nginx   nginx as a reverse proxy in front of it (18090, the harness's
#           peers/nginx-proxy.conf): the cheapest possible hop, for scale
#   sluice  build/sluice serve --port 18100 --upstream http://127.0.0.1:18080/v1
#           --model mock-json --log-level warn, SLUICE_DOCS=/nonexistent-sluice-corpus
#           (no retrieval corpus: the rag stage passes requests through, as
#           in scripts/bench-gateway.sh; all five stages still run)
# and prints p50/p99 per system and rate, and the *added* latency: the system
# minus direct in the same repeat (direct ran seconds before or after it),
# median over the repeats.  The order of the systems rotates from one repeat
# to the next.
#
# What it starts, it stops (by PID); what was already running is used and
# left alone: the upstream on 18080 (e.g. `../shared/bench/run-peers.sh
# --serve-upstreams`), or a proxy on 18090.  When 18080 is down, the script
# starts nginx from the harness's upstream config itself (not run-peers.sh:
# that one first kills the PIDs recorded in the harness's shared .run/pids,
# which may belong to another run).
#
# Pinning (as the shared harness): the load client on CPU 0; sluice, the
# nginx proxy and the upstream on CPU 1 (--no-pin turns it off; an upstream
# or proxy already running keeps its own pinning, which is printed).
#
# Is the client the bottleneck?  Every row shows late_sends (writes more than
# 1 ms behind schedule), the client's send lag p99 and its CPU %; the end of
# the output says, per rate, whether the client kept up.
#
# Usage: scripts/bench-latency.sh [options]
#   --rates LIST       requests per second (default 1000,5000,10000)
#   --seconds S        recorded seconds per row (default 10)
#   --warmup S         seconds sent before each row's window, not recorded (1)
#   --repeat N         repeats, the systems interleaved (default 3)
#   --systems LIST     default direct,nginx,sluice (direct is needed for
#                      "added")
#   --conc N           the client's connection cap (default 256)
#   --threads N        the client's event loops (default 1)
#   --tick-us N        the client's send timer: 0 = armed for each scheduled
#                      request (default), N = fires every N us, sends what is due
#   --serve-args 'A'   extra `sluice serve` arguments
#   --no-pin           no taskset
#   --build DIR        take DIR/sluice and DIR/bench/sse_load (default: build)
#   --sluice BIN       the sluice program (default: DIR/sluice)
#   --help
# Ports (env): UP_JSON_PORT=18080 NGINX_JSON_PORT=18090 NGINX_STREAM_PORT=18091
#   UP_STREAM_PORT=18081 (only written into the proxy's config) SLUICE_PORT=18100
# Harness folder (env): SLUICE_PEER_BENCH (default ../shared/bench)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
RATES=1000,5000,10000
SECONDS_ROW=10
WARMUP=1
REPEAT=3
SYSTEMS=direct,nginx,sluice
CONC=256
THREADS=1
TICK_US=0
SERVE_ARGS=""
PIN=1
BUILD=$top/build
SUT=""
UP_JSON_PORT=${UP_JSON_PORT:-18080}
UP_STREAM_PORT=${UP_STREAM_PORT:-18081}
NGINX_JSON_PORT=${NGINX_JSON_PORT:-18090}
NGINX_STREAM_PORT=${NGINX_STREAM_PORT:-18091}
SLUICE_PORT=${SLUICE_PORT:-18100}
HARNESS=${SLUICE_PEER_BENCH:-$top/../shared/bench}
LATE_PCT_MAX=0.1   # client kept up: at most this % of sends late ...
CLIENT_CPU_MAX=85  # ... and below this CPU % (the harness's "!" mark)

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "bench-latency: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
	case "$1" in
	--rates) RATES=${2:?}; shift ;;
	--seconds) SECONDS_ROW=${2:?}; shift ;;
	--warmup) WARMUP=${2:?}; shift ;;
	--repeat) REPEAT=${2:?}; shift ;;
	--systems) SYSTEMS=${2:?}; shift ;;
	--conc) CONC=${2:?}; shift ;;
	--threads) THREADS=${2:?}; shift ;;
	--tick-us) TICK_US=${2:?}; shift ;;
	--serve-args) SERVE_ARGS=${2?}; shift ;;
	--no-pin) PIN=0 ;;
	--build) BUILD=$(cd "${2:?}" && pwd); shift ;;
	--sluice) SUT=${2:?}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown option $1 (see --help)" ;;
	esac
	shift
done
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "--repeat takes a positive integer"
[[ $RATES =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--rates takes a list like 1000,5000,10000"
IFS=, read -r -a RATE_ARR <<<"$RATES"
IFS=, read -r -a SYS_ARR <<<"$SYSTEMS"
for s in "${SYS_ARR[@]}"; do
	case $s in direct | nginx | sluice) ;; *) die "unknown system '$s' (direct, nginx, sluice)" ;; esac
done

LOAD=$BUILD/bench/sse_load
SUT=${SUT:-$BUILD/sluice}
for b in "$LOAD" "$SUT"; do
	[ -x "$b" ] || die "$b is missing; build first (make build, or cmake --build $BUILD)"
done
"$LOAD" --help | grep -q -- --no-stream || die "$LOAD has no open loop (--rate with --no-stream); rebuild it"
export PATH=$PATH:/usr/sbin

if [ "$PIN" = 1 ] && command -v taskset >/dev/null && [ "$(nproc --all)" -ge 2 ]; then
	PIN_LOAD=(taskset -c 0)
	PIN_SUT=(taskset -c 1)
else
	PIN_LOAD=()
	PIN_SUT=()
	PIN=0
fi
hard=$(ulimit -Hn)
ulimit -n "$hard" 2>/dev/null || true

RUN=$(mktemp -d "${TMPDIR:-/tmp}/bench-latency.XXXXXX")
PIDS=() # what this script started; only those still running are signalled
cleanup() {
	local p running
	running=" $(jobs -pr | tr '\n' ' ') "
	for p in "${PIDS[@]}"; do
		case "$running" in *" $p "*) kill "$p" 2>/dev/null || true ;; esac
	done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	PIDS=()
	rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- helpers ---------------------------------------------------------------
jnum() { # jnum JSON KEY: a number (or null) from a flat JSON line
	sed -n "s/.*\"$2\":\(null\|-\{0,1\}[0-9.]*\).*/\1/p" <<<"$1" | head -1
}
jobj() { # jobj JSON KEY: a flat {...} value
	sed -n "s/.*\"$2\":\({[^}]*}\).*/\1/p" <<<"$1" | head -1
}
TCK=$(getconf CLK_TCK)
ticks() { # ticks PID...: user + system CPU ticks of the processes, summed
	local p s=0 t
	for p in "$@"; do
		t=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)
		s=$((s + t))
	done
	echo "$s"
}
now_s() { date +%s.%N; }
pct() { # pct TICKS0 TICKS1 T0 T1: CPU % over the interval
	awk -v a="$1" -v b="$2" -v s="$3" -v e="$4" -v k="$TCK" 'BEGIN { printf "%.0f", (b - a) / k / (e - s) * 100 }'
}
median() { # numbers on stdin ("null" and empty lines ignored) -> median, or null
	grep -v '^null$' | grep . | sort -n |
		awk '{ a[NR] = $1 } END { if (!NR) print "null"; else if (NR % 2) print a[(NR + 1) / 2];
			else printf "%.0f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
port_up() { # port_up PORT: something answers POST /v1/chat/completions with 200
	[ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
		-d '{"model":"mock-json","messages":[{"role":"user","content":"Say something."}]}' \
		"http://127.0.0.1:$1/v1/chat/completions" 2>/dev/null)" = 200 ]
}
port_busy() { ss -Hltn "( sport = :$1 )" 2>/dev/null | grep -q .; }
listener_pids() { # PIDs of the processes listening on PORT (nginx: master and workers)
	ss -Hltnp "( sport = :$1 )" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u | tr '\n' ' '
}
affinity() { # CPUs the first of the PIDs may run on
	local p=${1%% *}
	[ -n "$p" ] && taskset -cp "$p" 2>/dev/null | sed 's/.*: //' || echo "?"
}
wait_up() { # wait_up PORT PID NAME: until the port answers, or the process died
	local i
	for i in $(seq 1 100); do
		port_up "$1" && return 0
		kill -0 "$2" 2>/dev/null || break
		sleep 0.1
	done
	echo "bench-latency: $3 did not come up on port $1:" >&2
	tail -n 20 "$RUN/$3.log" "$RUN/$3.err" 2>/dev/null >&2 || true
	return 1
}
start_nginx() { # start_nginx NAME TEMPLATE: nginx from a harness config template
	sed -e "s#@RUN@#$RUN#g" -e "s#@PORT@#$UP_JSON_PORT#g" -e "s#@PJ@#$NGINX_JSON_PORT#g" \
		-e "s#@PS@#$NGINX_STREAM_PORT#g" -e "s#@UJ@#$UP_JSON_PORT#g" -e "s#@US@#$UP_STREAM_PORT#g" \
		-e "s#^\(\s*\)pid .*#\1pid $RUN/$1.pid;#" -e "s#^\(\s*\)error_log .*#\1error_log $RUN/$1.err warn;#" \
		"$2" >"$RUN/$1.conf"
	"${PIN_SUT[@]}" nginx -p "$RUN" -e "$RUN/$1.err" -c "$RUN/$1.conf" -g 'daemon off;' \
		>"$RUN/$1.log" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

echo "# bench-latency: $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -n), $(nproc --all) CPUs," \
	"pinning $([ "$PIN" = 1 ] && echo 'client CPU 0, sluice/proxy CPU 1' || echo off)," \
	"sluice $SUT ($(git -C "$top" describe --always --dirty 2>/dev/null || echo "?"))"
echo "# load average at the start: $(cut -d' ' -f1-3 /proc/loadavg) (anything else running" \
	"on the 2 cores shows in every figure)"

# ---- what is measured ------------------------------------------------------
declare -A URL=() SUT_PIDS=() NOTE=()
if port_up "$UP_JSON_PORT"; then
	NOTE[direct]="already running (pids $(listener_pids "$UP_JSON_PORT")on CPUs $(affinity "$(listener_pids "$UP_JSON_PORT")"))"
else
	port_busy "$UP_JSON_PORT" && die "port $UP_JSON_PORT is taken by something that does not answer like the upstream"
	command -v nginx >/dev/null || die "nginx is not installed (apt-get install nginx), and no upstream on $UP_JSON_PORT"
	[ -f "$HARNESS/upstream/nginx-json.conf" ] || die "no harness at $HARNESS (set SLUICE_PEER_BENCH)"
	start_nginx upstream "$HARNESS/upstream/nginx-json.conf"
	wait_up "$UP_JSON_PORT" "$LAST_PID" upstream || exit 1
	NOTE[direct]="started here from the harness config, pid $LAST_PID"
fi
UP_PIDS=$(listener_pids "$UP_JSON_PORT")
URL[direct]=127.0.0.1:$UP_JSON_PORT/v1/chat/completions
SUT_PIDS[direct]=$UP_PIDS

ACTIVE=()
for sys in "${SYS_ARR[@]}"; do
	case $sys in
	direct) ACTIVE+=(direct) ;;
	nginx)
		if port_up "$NGINX_JSON_PORT"; then
			NOTE[nginx]="already running (pids $(listener_pids "$NGINX_JSON_PORT")on CPUs $(affinity "$(listener_pids "$NGINX_JSON_PORT")"))"
		elif ! command -v nginx >/dev/null || [ ! -f "$HARNESS/peers/nginx-proxy.conf" ]; then
			echo "# nginx proxy: skipped (no nginx, or no harness config at $HARNESS)"
			continue
		elif port_busy "$NGINX_JSON_PORT" || port_busy "$NGINX_STREAM_PORT"; then
			echo "# nginx proxy: skipped (port $NGINX_JSON_PORT or $NGINX_STREAM_PORT taken)"
			continue
		else
			start_nginx proxy "$HARNESS/peers/nginx-proxy.conf"
			if ! wait_up "$NGINX_JSON_PORT" "$LAST_PID" proxy; then
				echo "# nginx proxy: skipped (did not start)"
				continue
			fi
			NOTE[nginx]="started here from the harness config, pid $LAST_PID"
		fi
		URL[nginx]=127.0.0.1:$NGINX_JSON_PORT/v1/chat/completions
		SUT_PIDS[nginx]=$(listener_pids "$NGINX_JSON_PORT")
		ACTIVE+=(nginx)
		;;
	sluice)
		port_busy "$SLUICE_PORT" && die "port $SLUICE_PORT is taken (set SLUICE_PORT)"
		# shellcheck disable=SC2086  # SERVE_ARGS is a list of words
		SLUICE_DOCS=${SLUICE_DOCS:-/nonexistent-sluice-corpus} "${PIN_SUT[@]}" "$SUT" serve \
			--port "$SLUICE_PORT" --upstream "http://127.0.0.1:$UP_JSON_PORT/v1" --model mock-json \
			--log-level warn $SERVE_ARGS >"$RUN/sluice.log" 2>&1 &
		SLUICE_PID=$!
		PIDS+=("$SLUICE_PID")
		wait_up "$SLUICE_PORT" "$SLUICE_PID" sluice || exit 1
		NOTE[sluice]="started here, pid $SLUICE_PID, SLUICE_DOCS=${SLUICE_DOCS:-/nonexistent-sluice-corpus}${SERVE_ARGS:+, $SERVE_ARGS}"
		URL[sluice]=127.0.0.1:$SLUICE_PORT/v1/chat/completions
		SUT_PIDS[sluice]=$SLUICE_PID
		ACTIVE+=(sluice)
		;;
	esac
done
[ ${#ACTIVE[@]} -gt 0 ] || die "nothing to measure"
for sys in "${ACTIVE[@]}"; do
	echo "# $sys: http://${URL[$sys]} — ${NOTE[$sys]}"
done
echo "# client: sse_load --no-stream --model mock-json --rate R --duration $SECONDS_ROW" \
	"--warmup $WARMUP --conc $CONC --threads $THREADS --tick-us $TICK_US (open loop)"

# ---- the rows --------------------------------------------------------------
JSON_LINES=()
ROWS=() # "rate sys run lat50 lat99 svc50 svc99 errors late sent lag99 ccpu scpu ucpu waits"
one_row() { # one_row RATE SYS RUN
	local rate=$1 sys=$2 run=$3 out line u0 u1 s0 s1 t0 t1 scpu ucpu
	# shellcheck disable=SC2086  # lists of PIDs
	u0=$(ticks $UP_PIDS) s0=$(ticks ${SUT_PIDS[$sys]}) t0=$(now_s)
	"${PIN_LOAD[@]}" "$LOAD" --url "${URL[$sys]}" --model mock-json --no-stream --rate "$rate" \
		--duration "$SECONDS_ROW" --warmup "$WARMUP" --conc "$CONC" --threads "$THREADS" \
		--tick-us "$TICK_US" --drain-s 10 >"$RUN/load.json" 2>"$RUN/load.err" &
	local pid=$!
	PIDS+=("$pid")
	wait "$pid" || true
	# shellcheck disable=SC2086
	u1=$(ticks $UP_PIDS) s1=$(ticks ${SUT_PIDS[$sys]}) t1=$(now_s)
	out=$(cat "$RUN/load.json")
	if [[ $out != '{"mode":"open"'* ]]; then
		echo "bench-latency: sse_load failed ($sys, $rate/s):" >&2
		head -n 5 "$RUN/load.err" >&2
		out="{\"mode\":\"open\",\"error_count\":null}"
	fi
	ucpu=$(pct "$u0" "$u1" "$t0" "$t1")
	scpu=$ucpu
	[ "$sys" = direct ] || scpu=$(pct "$s0" "$s1" "$t0" "$t1")
	line="{\"bench\":\"latency\",\"system\":\"$sys\",\"run\":$run,\"load1\":$(cut -d' ' -f1 /proc/loadavg)"
	line+=",\"sut_cpu_pct\":$scpu,\"upstream_cpu_pct\":$ucpu,${out#\{}"
	JSON_LINES+=("$line")
	local v=()
	for k in lat_p50_us lat_p99_us svc_p50_us svc_p99_us error_count late_sends sent send_lag_p99_us \
		client_cpu_pct conn_waits rps client_runq_ms; do
		v+=("$(jnum "$line" "$k")")
	done
	ROWS+=("$rate $sys $run ${v[*]} $scpu $ucpu")
	local errs
	errs=$(jobj "$line" errors | sed 's/^{}$//')
	printf '%6s %-7s %3s %9s %9s %9s %9s %8s %7s %9s %6s %6s %6s %6s %s\n' "$rate" "$sys" "$run" \
		"${v[0]}" "${v[1]}" "${v[2]}" "${v[3]}" "${v[10]}" "${v[5]}" "${v[7]}" "${v[8]}" "${v[11]}" \
		"$scpu" "$ucpu" "${v[4]} $errs"
}

echo
echo "## each row: latency in us from the scheduled send to the complete answer (lat, open loop),"
echo "## from the actual write (svc); late = sends > 1 ms behind schedule, lag_p99 = how late (us);"
echo "## c_cpu% / s_cpu% / u_cpu% = CPU of client / system / upstream; c_rq_ms = time the client was"
echo "## runnable but waiting for a CPU (other work on its core)"
printf '%6s %-7s %3s %9s %9s %9s %9s %8s %7s %9s %6s %6s %6s %6s %s\n' rate system run lat_p50 lat_p99 \
	svc_p50 svc_p99 rps late lag_p99 c_cpu% c_rq_ms s_cpu% u_cpu% errors
for ((r = 1; r <= REPEAT; r++)); do
	for rate in "${RATE_ARR[@]}"; do
		n=${#ACTIVE[@]}
		for ((i = 0; i < n; i++)); do
			sys=${ACTIVE[$(((i + r - 1) % n))]} # the order rotates with the repeat
			one_row "$rate" "$sys" "$r"
		done
	done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
if grep -q 'level=\(warn\|error\)' "$RUN/sluice.log" 2>/dev/null; then
	echo
	echo "## sluice's warnings and errors (first lines; retriever_skipped is expected: no corpus)"
	grep 'level=\(warn\|error\)' "$RUN/sluice.log" | head -n 20 | sed 's/^/  /'
fi

# ---- summary ---------------------------------------------------------------
# rows: 1 rate 2 system 3 run 4 lat_p50 5 lat_p99 6 svc_p50 7 svc_p99 8 errors 9 late 10 sent
#       11 lag_p99 12 client_cpu 13 conn_waits 14 rps 15 client_runq_ms 16 system_cpu 17 upstream_cpu
printf '%s\n' "${ROWS[@]}" >"$RUN/rows"
col() { awk -v r="$1" -v s="$2" -v c="$3" '$1 == r && $2 == s { print $c }' "$RUN/rows"; }
paired() { # paired RATE SYS COL: per repeat, SYS minus direct
	awk -v r="$1" -v s="$2" -v c="$3" '
		$1 == r && $2 == "direct" { d[$3] = $c }
		$1 == r && $2 == s { v[$3] = $c }
		END { for (k in v) if ((k in d) && v[k] != "null" && d[k] != "null") print v[k] - d[k] }' "$RUN/rows"
}
sum() { awk -v r="$1" -v c="$2" '$1 == r && $c != "null" { s += $c } END { print s + 0 }' "$RUN/rows"; }
colmax() { awk -v r="$1" -v c="$2" '$1 == r && $c != "null" && $c + 0 > m { m = $c + 0 } END { print m + 0 }' "$RUN/rows"; }

echo
echo "## summary: medians over $REPEAT repeat(s), us; added = system minus direct in the same repeat, median"
printf '%6s  %-7s %9s %9s %10s %10s %9s %9s %7s\n' rate system lat_p50 lat_p99 added_p50 added_p99 \
	svc_p50 svc_p99 errors
declare -A ADD50=() ADD99=() KEPT=()
for rate in "${RATE_ARR[@]}"; do
	for sys in "${ACTIVE[@]}"; do
		l50=$(col "$rate" "$sys" 4 | median) l99=$(col "$rate" "$sys" 5 | median)
		v50=$(col "$rate" "$sys" 6 | median) v99=$(col "$rate" "$sys" 7 | median)
		errs=$(col "$rate" "$sys" 8 | awk '$1 != "null" { s += $1 } END { print s + 0 }')
		a50=null a99=null
		if [ "$sys" != direct ] && [ -n "${URL[direct]:-}" ] && [[ " ${ACTIVE[*]} " == *" direct "* ]]; then
			a50=$(paired "$rate" "$sys" 4 | median) a99=$(paired "$rate" "$sys" 5 | median)
		fi
		ADD50[$rate.$sys]=$a50 ADD99[$rate.$sys]=$a99
		printf '%6s  %-7s %9s %9s %10s %10s %9s %9s %7s\n' "$rate" "$sys" "$l50" "$l99" \
			"$([ "$sys" = direct ] && echo - || echo "$a50")" "$([ "$sys" = direct ] && echo - || echo "$a99")" \
			"$v50" "$v99" "$errs"
		JSON_LINES+=("{\"bench\":\"latency_summary\",\"rate\":$rate,\"system\":\"$sys\",\"repeat\":$REPEAT,\"lat_p50_us\":$l50,\"lat_p99_us\":$l99,\"added_p50_us\":$a50,\"added_p99_us\":$a99,\"svc_p50_us\":$v50,\"svc_p99_us\":$v99,\"errors\":$errs}")
	done
done

echo
echo "## is the client the bottleneck? (kept up: <= $LATE_PCT_MAX % of sends > 1 ms late and client CPU < $CLIENT_CPU_MAX %)"
for rate in "${RATE_ARR[@]}"; do
	late=$(sum "$rate" 9) sent=$(sum "$rate" 10) waits=$(sum "$rate" 13) ccpu=$(colmax "$rate" 12)
	rq=$(sum "$rate" 15) rows=$(awk -v r="$rate" '$1 == r' "$RUN/rows" | wc -l)
	# share of the run time the client was runnable without a CPU
	rqpct=$(awk -v q="$rq" -v n="$rows" -v s="$SECONDS_ROW" -v w="$WARMUP" \
		'BEGIN { printf "%.0f", n ? q / 10 / (n * (s + w)) : 0 }')
	lag=$(awk -v r="$rate" '$1 == r { print $11 }' "$RUN/rows" | median)
	latepct=$(awk -v l="$late" -v s="$sent" 'BEGIN { printf "%.2f", s ? 100 * l / s : 0 }')
	ok=$(awk -v p="$latepct" -v c="$ccpu" -v mp="$LATE_PCT_MAX" -v mc="$CLIENT_CPU_MAX" \
		'BEGIN { print (p <= mp && c < mc) ? "yes" : "no" }')
	KEPT[$rate]=$ok
	verdict="kept up"
	if [ "$ok" = no ]; then
		verdict="did NOT keep up: its own delays are in lat_* (svc_* leaves them out)"
		if awk -v c="$ccpu" -v m="$CLIENT_CPU_MAX" 'BEGIN { exit !(c >= m) }'; then
			verdict+="; it is CPU-bound (try --threads 2 with --no-pin)"
		elif [ "$rqpct" -ge 5 ]; then
			verdict+="; not for lack of speed (CPU max $ccpu %) but of a CPU: it waited $rqpct % of the time on a run queue (other work on its core)"
		fi
		[ "$waits" -gt 0 ] && verdict+="; $waits requests waited for a free connection (--conc $CONC reached: the server was slow too)"
	fi
	printf '%6s/s: late_sends %s of %s (%s %%), send lag p99 (median of rows) %s us, client CPU max %s %%, run-queue wait %s %% -> %s\n' \
		"$rate" "$late" "$sent" "$latepct" "$lag" "$ccpu" "$rqpct" "$verdict"
done

if [[ " ${ACTIVE[*]} " == *" sluice "* ]] && [[ " ${ACTIVE[*]} " == *" direct "* ]]; then
	for rate in "${RATE_ARR[@]}"; do
		[ "$rate" = 10000 ] || continue
		a50=${ADD50[$rate.sluice]} a99=${ADD99[$rate.sluice]}
		m50=$(awk -v a="$a50" 'BEGIN { print (a != "null" && a <= 100) ? "met" : "NOT met" }')
		m99=$(awk -v a="$a99" 'BEGIN { print (a != "null" && a <= 1000) ? "met" : "NOT met" }')
		echo
		echo "## target at 10000 req/s: sluice adds p50 $a50 us (<= 100: $m50), p99 $a99 us (<= 1000: $m99)" \
			"$([ "${KEPT[$rate]}" = yes ] || echo '-- the client did not keep up, so this is not a clean reading')"
	done
fi
echo
echo "## load average at the start: see the top; at the end: $LOAD_END (each row has its load1)"
echo
echo "## JSON lines"
printf '%s\n' "${JSON_LINES[@]}"
