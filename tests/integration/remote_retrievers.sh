#!/usr/bin/env bash
# The retrievers that do I/O, against real peers on loopback:
#   PostgreSQL full-text search (a private PostgreSQL this script starts with
#   Debian's binaries: initdb into a temp dir, 127.0.0.1 on a free port):
#   ranked results in the prompt; the database down at start and mid-run
#   (requests fail with a named reason, quickly; `on_error: skip` goes on
#   without sources; the pool reconnects when it is back);
#   an HTTP retriever (a python stub): results, a 500 and a dead endpoint.
# Usage: tests/integration/remote_retrievers.sh path/to/sluice
set -u
BIN=${1:?usage: remote_retrievers.sh path/to/sluice}
T=$(mktemp -d)
chmod 755 "$T"
SPID=
HPID=
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
pass=0
fail=0
as_pg() { # runs a command as the postgres user when we are root
	if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi
}
pg_stop() { as_pg "'$PGBIN/pg_ctl' -D '$T/pg' -m immediate stop" >/dev/null 2>&1; }
cleanup() {
	[ -n "$SPID" ] && kill "$SPID" 2>/dev/null
	[ -n "$HPID" ] && kill "$HPID" 2>/dev/null
	pg_stop
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
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
	echo "PostgreSQL server binaries not found (Debian package postgresql; scripts/setup.sh test installs it)" >&2
	exit 1
fi

# ---- a private PostgreSQL --------------------------------------------------
PGP=$(port)
mkdir -p "$T/pg" "$T/sock"
[ "$(id -u)" = 0 ] && chown postgres "$T/pg" "$T/sock"
as_pg "'$PGBIN/initdb' -D '$T/pg' -A trust -U postgres" >"$T/initdb.log" 2>&1 || {
	cat "$T/initdb.log"
	exit 1
}
pg_start() {
	as_pg "'$PGBIN/pg_ctl' -D '$T/pg' -w -t 30 -l '$T/sock/pg.log' -o \"-p $PGP -k $T/sock -c listen_addresses=127.0.0.1\" start" >/dev/null 2>&1
}
pg_start || { cat "$T/sock/pg.log"; exit 1; }
PSQL() { as_pg "'$PGBIN/psql' -X -q -h 127.0.0.1 -p $PGP -U postgres -d postgres -v ON_ERROR_STOP=1 $*"; }
PSQL "-c \"CREATE TABLE docs (doc_id text PRIMARY KEY, body text NOT NULL)\"" || exit 1
PSQL "-c \"INSERT INTO docs VALUES
  ('breakers', 'A circuit breaker opens after five consecutive failures and half-open probes close it again.'),
  ('dlq', 'The dead-letter log keeps every failed request with its body; replay resubmits it.'),
  ('reload', 'SIGHUP or POST /admin/reload reloads the configuration without dropping a request.'),
  ('redact', 'Email addresses and card numbers are redacted from the streamed answer.')\"" || exit 1

P=$(port)
HP=$(port)
DEADP=$(port) # nothing listens there: a database that is down from the start
cat >"$T/s.yaml" <<EOF
pipelines:
  pg:
    stages:
      - name: rag
        type: rag
        retriever: {type: pg, conninfo: "host=127.0.0.1 port=$PGP user=postgres dbname=postgres",
                    table: docs, id_column: doc_id, text_column: body, k: 2, timeout_ms: 1000}
      - {name: assemble, type: assemble}
      - {name: inference, type: inference}
  pgskip:
    stages:
      - name: rag
        type: rag
        retriever: {type: pg, conninfo: "host=127.0.0.1 port=$PGP user=postgres dbname=postgres",
                    table: docs, id_column: doc_id, text_column: body, on_error: skip,
                    timeout_ms: 1000}
      - {name: assemble, type: assemble}
      - {name: inference, type: inference}
  pgdead:
    stages:
      - name: rag
        type: rag
        retriever: {type: pg, conninfo: "host=127.0.0.1 port=$DEADP user=postgres dbname=postgres",
                    table: docs, timeout_ms: 1000}
      - {name: inference, type: inference}
  http:
    stages:
      - {name: rag, type: rag, retriever: {type: http, url: "http://127.0.0.1:$HP/search", k: 2}}
      - {name: assemble, type: assemble}
      - {name: inference, type: inference}
backends:
  echo: {type: echo}
models:
  pg: {pipeline: pg, backends: [echo]}
  pgskip: {pipeline: pgskip, backends: [echo]}
  http: {pipeline: http, backends: [echo]}
  pgdead: {pipeline: pgdead, backends: [echo]}
EOF
"$BIN" serve --config "$T/s.yaml" --port "$P" --log-level error >"$T/out" 2>"$T/err" &
SPID=$!
for _ in $(seq 1 200); do
	curl -s -o /dev/null "http://127.0.0.1:$P/healthz" && break
	sleep 0.05
done
ask() { # ask MODEL TEXT -> "status content"
	curl -s -m 20 -o "$T/resp" -w '%{http_code}' "http://127.0.0.1:$P/v1/chat/completions" \
		-d "{\"model\":\"$1\",\"messages\":[{\"role\":\"user\",\"content\":\"$2\"}]}"
}

# ---- PostgreSQL up ---------------------------------------------------------
code=$(ask pg "when does the circuit breaker open")
check "pg: 200" [ "$code" = 200 ]
check "pg: the ranked row first" grep -q 'Context: \[breakers\] A circuit breaker opens' "$T/resp"
code=$(ask pg "how do I replay a failed request")
check "pg: websearch query finds the dlq row" grep -q '\[dlq\]' "$T/resp"
code=$(ask pg "zebra quantum")
check "pg: no match, no context" bash -c "grep -q '\"content\":\"zebra quantum\"' '$T/resp'"

# ---- a database down from the start: the server starts, requests fail named
code=$(ask pgdead "anything")
check "pg down at start: 502 with a named reason" bash -c "[ '$code' = 502 ] && grep -q 'retrieval failed: pg: connection to server at' '$T/resp'"

# ---- PostgreSQL down mid-run ----------------------------------------------
pg_stop
t0=$(date +%s%N)
code=$(ask pg "when does the circuit breaker open")
t1=$(date +%s%N)
check "pg down: the request fails with 502 ($code)" [ "$code" = 502 ]
check "  with a named reason" grep -q 'retrieval failed: pg:' "$T/resp"
check "  quickly ($(((t1 - t0) / 1000000)) ms)" [ $(((t1 - t0) / 1000000)) -lt 5000 ]
code=$(ask pgskip "when does the circuit breaker open")
check "pg down, on_error: skip: answered without sources" bash -c "[ '$code' = 200 ] && ! grep -q Context '$T/resp'"
pg_start
ok_again=0
for _ in 1 2 3 4 5; do
	code=$(ask pg "when does the circuit breaker open")
	if [ "$code" = 200 ] && grep -q '\[breakers\]' "$T/resp"; then ok_again=1; break; fi
	sleep 0.3
done
check "pg back: the pool reconnects" [ "$ok_again" = 1 ]

# ---- HTTP retriever ----------------------------------------------------------
cat >"$T/stub.py" <<'PY'
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        q = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if "boom" in q["query"]:
            self.send_response(500); self.end_headers(); return
        out = json.dumps([{"id": "vec-%d" % i, "text": "about %s #%d" % (q["query"], i), "score": 1.0 - i / 10}
                          for i in range(q["k"])]).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out))); self.end_headers(); self.wfile.write(out)
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$T/stub.py" "$HP" &
HPID=$!
for _ in $(seq 1 100); do
	python3 -c "import socket; socket.create_connection(('127.0.0.1', $HP), 0.2)" 2>/dev/null && break
	sleep 0.05
done
code=$(ask http "vector search")
check "http: results in the prompt" bash -c "[ '$code' = 200 ] && grep -q '\[vec-0\] about vector search #0' '$T/resp' && grep -q '\[vec-1\]' '$T/resp'"
code=$(ask http "boom")
check "http: a 500 from the endpoint fails the request, named" grep -q 'retrieval failed: http retriever: status 500' "$T/resp"
kill "$HPID"
wait "$HPID" 2>/dev/null
HPID=
code=$(ask http "vector search")
check "http: endpoint gone, named" grep -q 'retrieval failed: http retriever:' "$T/resp"

kill "$SPID"
wait "$SPID"
check "server exits 0" [ $? -eq 0 ]
SPID=
echo "remote retrievers: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
