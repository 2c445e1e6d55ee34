#!/usr/bin/env bash
# Integration test of `sluice dlq`: records are written by the test helper
# dlq_writer (the library, as the server writes them), then list / show /
# purge / replay run through the real program: output shapes, exit codes,
# bad input, a writer holding the lock, a corrupt record, and replay against
# a stand-in admin endpoint (python3) and against nothing.
# Usage: tests/integration/dlq_cli.sh /path/to/sluice /path/to/dlq_writer
# Prints "N passed, M failed" last; exits non-zero when anything failed.
set -u

BIN=${1:?usage: $0 /path/to/sluice /path/to/dlq_writer}
WRITER=${2:?usage: $0 /path/to/sluice /path/to/dlq_writer}

TMP=$(mktemp -d)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	rm -rf "$TMP"
}
trap cleanup EXIT

PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok   - $1"; }
nok() { FAIL=$((FAIL + 1)); echo "FAIL - $1${2:+: $2}"; }
eq() { if [ "$2" = "$3" ]; then ok "$1"; else nok "$1" "got [$2] want [$3]"; fi; }
has() { case "$2" in *"$3"*) ok "$1" ;; *) nok "$1" "[$3] not in [${2:0:600}]" ;; esac; }
hasnt() { case "$2" in *"$3"*) nok "$1" "[$3] found in [${2:0:600}]" ;; *) ok "$1" ;; esac; }

# run ARGS...: sets OUT, ERR, RC.
run() {
	"$BIN" "$@" >"$TMP/out" 2>"$TMP/err"
	RC=$?
	OUT=$(cat "$TMP/out")
	ERR=$(cat "$TMP/err")
}

# pyjson EXPR: evaluates a python expression on the JSON in $OUT as `j`.
HAVE_PY=0
command -v python3 >/dev/null && HAVE_PY=1
pyjson() {
	printf '%s' "$OUT" | python3 -c "import json,sys; j=json.load(sys.stdin); print($1)" 2>&1
}

Q=$TMP/q
# ---- bad input ---------------------------------------------------------
run dlq
eq "no command: exit 2" "$RC" 2
has "no command: usage" "$ERR" "usage: sluice dlq"
run dlq frob
eq "unknown command: exit 2" "$RC" 2
has "unknown command: named" "$ERR" "unknown command 'frob'"
run dlq list
eq "list without a directory: exit 2" "$RC" 2
run dlq list --dir "$Q" --bogus
eq "unknown flag: exit 2" "$RC" 2
has "unknown flag: named" "$ERR" "unknown option '--bogus'"
run dlq list --dir "$Q" --limit lots
eq "bad --limit: exit 2" "$RC" 2
run dlq show --dir "$Q"
eq "show without ID: exit 2" "$RC" 2
run dlq list --dir "$Q" --url http://x
eq "flag of another command: exit 2" "$RC" 2
run dlq list --dir "$TMP/none"
eq "missing dir: exit 1" "$RC" 1
has "missing dir: message" "$ERR" "no DLQ at $TMP/none"
eq "missing dir: nothing on stdout" "$OUT" ""
run dlq --help
eq "--help: exit 0" "$RC" 0
has "--help: on stdout" "$OUT" "usage: sluice dlq"
run help
has "sluice help lists dlq" "$OUT" "dlq"

# ---- list --------------------------------------------------------------
"$WRITER" "$Q" 5 --segment 1024 >"$TMP/ids" || { nok "dlq_writer"; exit 1; }
mapfile -t IDS <"$TMP/ids"
eq "writer wrote 5 records" "${#IDS[@]}" 5
SEGS=$(ls "$Q" | grep -c '^dlq-.*\.log$')
[ "$SEGS" -gt 1 ] && ok "records span several segments ($SEGS)" || nok "several segments" "$SEGS"

run dlq list --dir "$Q"
eq "list: exit 0" "$RC" 0
eq "list: 5 lines" "$(printf '%s\n' "$OUT" | wc -l)" 5
eq "list: summary on stderr" "$ERR" "5 records, 0 corrupt skipped"
eq "list: first id" "$(printf '%s\n' "$OUT" | head -1 | cut -f1)" "${IDS[0]}"
eq "list: last id" "$(printf '%s\n' "$OUT" | tail -1 | cut -f1)" "${IDS[4]}"
L0=$(printf '%s\n' "$OUT" | sed -n 1p)
L1=$(printf '%s\n' "$OUT" | sed -n 2p)
if [[ "$(cut -f2 <<<"$L0")" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$ ]]; then
	ok "list: ISO-8601 UTC time with ms"
else
	nok "list: time" "$L0"
fi
eq "list: columns of record 0" "$(cut -f3- <<<"$L0")" "$(printf 'failed\tinference\tupstream_error\techo')"
eq "list: record 1 (no reason, replayed)" "$(cut -f3- <<<"$L1")" \
	"$(printf 'shed\tinference\t-\techo\treplayed:completed')"
run dlq list --dir "$Q" --limit 2
eq "list --limit 2: the newest two" "$(printf '%s\n' "$OUT" | cut -f1 | tr '\n' ' ')" "${IDS[3]} ${IDS[4]} "
run dlq list --dir="$Q" --limit=0
eq "list --limit=0: nothing" "$OUT" ""
eq "list --limit=0: summary" "$ERR" "0 records, 0 corrupt skipped"

run dlq list --dir "$Q" --json
eq "list --json: exit 0" "$RC" 0
if [ $HAVE_PY = 1 ]; then
	eq "list --json: 5 records" "$(pyjson 'len(j)')" 5
	eq "list --json: no bodies" "$(pyjson 'any("body" in r for r in j)')" False
	eq "list --json: replayed" "$(pyjson '[r["replayed"] for r in j]')" "[None, 'completed', None, None, None]"
	eq "list --json: fields" "$(pyjson 'j[0]["outcome"], j[0]["http_status"], j[0]["tenant"], j[0]["body_bytes"]')" \
		"failed 502 t1 6"
fi

# ---- show --------------------------------------------------------------
run dlq show "${IDS[0]}" --dir "$Q"
eq "show: exit 0" "$RC" 0
has "show: pretty JSON" "$OUT" "\"id\": \"${IDS[0]}\""
if [ $HAVE_PY = 1 ]; then
	eq "show: binary body as base64" "$(pyjson 'j["body_encoding"], j["body"], j["replays"]')" \
		"base64 /wCAYmlu []"
	run dlq show "${IDS[1]}" --dir "$Q"
	eq "show: text body" "$(pyjson 'j["body_encoding"], json.loads(j["body"])["messages"][0]["content"]')" \
		"utf8 n1"
	eq "show: replays in order" "$(pyjson '[(r["kind"], r["replay_of"] == j["id"], r["outcome"]) for r in j["replays"]]')" \
		"[('replay', True, 'failed'), ('replay', True, 'completed')]"
fi
run dlq show dlq-0000000000000000 --dir "$Q"
eq "show unknown id: exit 1" "$RC" 1
eq "show unknown id: message" "$ERR" "sluice dlq: no record dlq-0000000000000000"
run dlq show nonsense --dir "$Q"
eq "show malformed id: exit 1" "$RC" 1

# ---- --config ------------------------------------------------------------
cat >"$TMP/sluice.yaml" <<EOF
server: {host: 127.0.0.1, port: 1, admin: {token_env: DLQ_TEST_TOKEN}}
pipelines:
  default:
    stages:
      - {name: inference, type: inference}
backends:
  echo: {type: echo}
models:
  echo: {pipeline: default, backends: [echo]}
dlq: {dir: $Q}
EOF
run dlq list --config "$TMP/sluice.yaml"
if [ "$RC" = 0 ]; then
	eq "list --config: the dir of dlq.dir" "$(printf '%s\n' "$OUT" | wc -l)" 5
else
	# A build whose configuration does not know dlq yet.
	has "list --config: says why" "$ERR" "dlq"
fi
run dlq list --config "$TMP/none.yaml"
eq "list --config missing file: exit 1" "$RC" 1
run dlq list --config "$TMP/sluice.yaml" --dir "$Q"
eq "--config and --dir: exit 2" "$RC" 2

# ---- replay --------------------------------------------------------------
run dlq replay "${IDS[0]}" --url http://127.0.0.1:1
eq "replay, no server: exit 1" "$RC" 1
has "replay, no server: message" "$ERR" "cannot reach the server at http://127.0.0.1:1: "
run dlq replay "${IDS[0]}" --config "$TMP/sluice.yaml"
eq "replay, config's address (port 1): exit 1" "$RC" 1
has "replay, config's address: message" "$ERR" "cannot reach the server at http://127.0.0.1:1"
run dlq replay "../etc" --url http://127.0.0.1:1
eq "replay malformed id: exit 1" "$RC" 1
has "replay malformed id: message" "$ERR" "no record ../etc"

if [ $HAVE_PY = 1 ]; then
	# A stand-in for the server's admin API: logs method, path and the
	# Authorization header; 200 for IDS[0], 404 otherwise.
	cat >"$TMP/admin.py" <<'EOF'
import http.server, json, sys
ok_id = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        with open(sys.argv[2], "a") as f:
            f.write("%s %s %s\n" % (self.command, self.path, self.headers.get("Authorization")))
        good = self.path == "/admin/dlq/%s/replay" % ok_id
        body = json.dumps({"id": ok_id, "outcome": "completed", "replay_id": "dlq-00000000000000ff"}
                          if good else {"error": {"message": "no record", "type": "not_found"}}).encode()
        self.send_response(200 if good else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
EOF
	python3 "$TMP/admin.py" "${IDS[0]}" "$TMP/admin.log" >"$TMP/port" &
	PIDS+=($!)
	disown
	for _ in $(seq 200); do [ -s "$TMP/port" ] && break; sleep 0.1; done
	PORT=$(cat "$TMP/port")
	sed "s/port: 1,/port: $PORT,/" "$TMP/sluice.yaml" >"$TMP/live.yaml"
	DLQ_TEST_TOKEN=s3cret run dlq replay "${IDS[0]}" --config "$TMP/live.yaml"
	eq "replay: exit 0 on 200" "$RC" 0
	eq "replay: prints the answer" "$(pyjson 'j["outcome"]')" completed
	eq "replay: POST, path, bearer token" "$(tail -1 "$TMP/admin.log")" \
		"POST /admin/dlq/${IDS[0]}/replay Bearer s3cret"
	run dlq replay "${IDS[2]}" --url "http://127.0.0.1:$PORT/"
	eq "replay: exit 1 on 404" "$RC" 1
	has "replay 404: the answer on stdout" "$OUT" "no record"
	has "replay 404: status on stderr" "$ERR" "HTTP 404"
	eq "replay: --url, no token" "$(tail -1 "$TMP/admin.log")" "POST /admin/dlq/${IDS[2]}/replay None"
fi

# ---- corruption ----------------------------------------------------------
cp -r "$Q" "$TMP/qc"
SEG=$(ls "$TMP/qc"/dlq-*.log | head -1)
# flip one payload byte of the first record (offset 40: inside its JSON)
printf 'X' | dd of="$SEG" bs=1 seek=40 conv=notrunc status=none
run dlq list --dir "$TMP/qc"
eq "corrupt: exit 0" "$RC" 0
eq "corrupt: 4 records left" "$(printf '%s\n' "$OUT" | wc -l)" 4
eq "corrupt: counted" "$ERR" "4 records, 1 corrupt skipped"

# ---- purge ---------------------------------------------------------------
run dlq purge --dir "$Q"
eq "purge without --yes: exit 2" "$RC" 2
has "purge without --yes: message" "$ERR" "add --yes"
run dlq list --dir "$Q"
eq "purge without --yes: nothing removed" "$(printf '%s\n' "$OUT" | wc -l)" 5

# A writer holding the directory: its active segment stays.
W=$TMP/w
coproc WR { exec "$WRITER" "$W" 20 --segment 1024 --hold; }
# bash unsets WR_PID and WR once the coprocess is reaped: keep copies.
WPID=$WR_PID
WIN=${WR[1]}
PIDS+=($WPID)
READY=""
while read -r -t 30 line <&"${WR[0]}"; do [ "$line" = ready ] && { READY=1; break; }; done
eq "holding writer ready" "$READY" 1
run dlq list --dir "$W"
eq "list while a writer holds the lock" "$ERR" "20 records, 0 corrupt skipped"
run dlq purge --dir "$W" --yes
eq "purge with a writer: exit 0" "$RC" 0
has "purge with a writer: kept the active segment" "$OUT" "kept the active segment: a writer (pid $WPID) holds $W/lock"
# 20 requests and 2 replay records in all; the active segment is left.
R1=$(sed -n 's/^removed \([0-9]*\) records\{0,1\} from .*/\1/p' <<<"$OUT")
[ -n "$R1" ] && [ "$R1" -gt 0 ] && [ "$R1" -lt 22 ] && ok "purge with a writer: removed $R1 of 22" \
	|| nok "purge with a writer: count" "$OUT"
eq "purge with a writer: one segment left" "$(ls "$W" | grep -c '^dlq-.*\.log$')" 1
eval "exec $WIN>&-" # the writer exits when its stdin closes
wait "$WPID" 2>/dev/null
run dlq purge --dir "$W" --yes
R2=$(sed -n 's/^removed \([0-9]*\) records\{0,1\} from .*/\1/p' <<<"$OUT")
eq "purge, no writer: the rest" "$((R1 + R2))" 22
hasnt "purge, no writer: no writer mentioned" "$OUT" "kept"
eq "purge, no writer: no segment left" "$(ls "$W" | grep -c '^dlq-.*\.log$')" 0
run dlq list --dir "$W"
eq "purged: empty" "$OUT" ""
eq "purged: summary" "$ERR" "0 records, 0 corrupt skipped"
run dlq purge --dir "$TMP/none" --yes
eq "purge missing dir: exit 1" "$RC" 1

echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
