#!/usr/bin/env bash
# The real stages end to end through `sluice serve` (echo backend: it
# streams the assembled prompt back, so the answer shows what retrieval,
# the template and the redactors did):
#   examples/rag.yaml: BM25 over docs/ + the rag.tmpl template + prompt and
#   output redaction; PII split across streamed tokens; a blocked term ends
#   the answer with finish_reason content_filter (stream and not); a prompt
#   over the token budget is a 400; bad configurations fail at start with a
#   clear message (template with an unknown variable, empty corpus, a regex
#   that does not compile).
# Usage: tests/integration/rag.sh path/to/sluice
set -u
BIN=${1:?usage: rag.sh path/to/sluice}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d)
SPID=
pass=0
fail=0
cleanup() {
	[ -n "$SPID" ] && kill "$SPID" 2>/dev/null
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
start() { # start CONFIG
	"$BIN" serve --config "$1" --port "$P" --log-level error >"$T/out" 2>"$T/err" &
	SPID=$!
	for _ in $(seq 1 200); do
		curl -s -o /dev/null "http://127.0.0.1:$P/healthz" && return 0
		kill -0 "$SPID" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}
stop() { kill "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; SPID=; }
chat() { # chat MODEL TEXT [stream]
	python3 - "$P" "$1" "$2" "${3:-}" <<'PY'
import http.client, json, sys
port, model, text, stream = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "stream"
c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
c.request("POST", "/v1/chat/completions", json.dumps({"model": model, "stream": stream,
          "messages": [{"role": "user", "content": text}]}), {"Content-Type": "application/json"})
r = c.getresponse()
body = r.read().decode()
if r.status != 200:
    print("STATUS %d %s" % (r.status, body))
elif not stream:
    d = json.loads(body)
    print("FINISH %s" % d["choices"][0]["finish_reason"])
    print(d["choices"][0]["message"]["content"])
else:
    text, finish, deltas = "", None, 0
    for line in body.split("\n"):
        if line.startswith("data: {"):
            ch = json.loads(line[6:])["choices"]
            if ch:
                text += ch[0]["delta"].get("content") or ""
                deltas += 1
                finish = ch[0]["finish_reason"] or finish
    print("FINISH %s DELTAS %d" % (finish, deltas))
    print(text)
PY
}

P=$(port)

# ---- examples/rag.yaml: retrieval, template, prompt redaction ----------------
cd "$ROOT" || exit 1
check "rag.yaml starts" start examples/rag.yaml
chat rag-echo "How do I reload the configuration? Write to bob@example.com" >"$T/a1"
check "sources retrieved into the template" grep -q "Sources:" "$T/a1"
check "a relevant source: the reload section" grep -qE "\[(api|configuration|internals/config|internals/http)\.md#[0-9]+\]" "$T/a1"
check "the question closes the prompt" grep -q "Question: How do I reload the configuration?" "$T/a1"
check "email redacted before inference" grep -q "\[REDACTED:EMAIL\]" "$T/a1"
check "no email left" bash -c "! grep -q 'bob@example.com' '$T/a1'"
chat rag-echo "what is the kill switch of the gateway" >"$T/a2"
check "blocked term: finish content_filter" grep -q "FINISH content_filter" "$T/a2"
check "nothing after the blocked term" bash -c "! grep -q 'switch of the gateway' '$T/a2'"
chat rag-echo "what is the kill switch of the gateway" stream >"$T/a3"
check "blocked term, streamed: content_filter" grep -q "FINISH content_filter" "$T/a3"
check "streamed: nothing after the term" bash -c "! grep -q 'switch of the gateway' '$T/a3'"
stop

# ---- output redaction only: PII split across streamed tokens ---------------
cat >"$T/out.yaml" <<EOF
pipelines:
  p:
    stages:
      - {name: inference, type: inference}
      - {name: redact, type: redact, classes: all, block_patterns: ["launch\\\\s+codes?"]}
      - {name: post, type: post}
      - {name: stream, type: stream}
  fan:
    stages:
      - {name: r1, type: rag, after: [], retriever: {type: bm25, corpus: $ROOT/docs, k: 3}}
      - {name: r2, type: rag, after: [], retriever: {type: bm25, corpus: $ROOT/README.md, k: 3}}
      - {name: assemble, type: assemble, after: [r1, r2]}
      - {name: inference, type: inference}
  small:
    stages:
      - name: rag
        type: rag
        retriever: {type: bm25, corpus: $ROOT/docs, k: 8}
      - {name: assemble, type: assemble, template: $ROOT/examples/templates/rag.tmpl, max_prompt_tokens: 60}
      - {name: inference, type: inference}
backends:
  echo: {type: echo}
models:
  out: {pipeline: p, backends: [echo]}
  small: {pipeline: small, backends: [echo]}
  fan: {pipeline: fan, backends: [echo]}
EOF
check "output-only config starts" start "$T/out.yaml"
chat out "pay with 4111 1111 1111 1111 or DE89 3704 0044 0532 0130 00 today" stream >"$T/b1"
check "card split over 4 tokens redacted in the stream" grep -q "\[REDACTED:CARD\]" "$T/b1"
check "iban split over 6 tokens redacted in the stream" grep -q "\[REDACTED:IBAN\]" "$T/b1"
check "no digits of them leak" bash -c "! grep -qE '4111|0532' '$T/b1'"
check "text after them still flows" grep -q "today" "$T/b1"
chat out "pay with 4111 1111 1111 1111 or DE89 3704 0044 0532 0130 00 today" >"$T/b2"
check "stream and final text agree" bash -c "[ \"\$(tail -n +2 '$T/b1')\" = \"\$(tail -n +2 '$T/b2')\" ]"
chat out "the launch   codes are 1234" stream >"$T/b3"
check "block pattern ends the stream" grep -q "FINISH content_filter" "$T/b3"
chat fan "how does the dead-letter log survive kill -9" >"$T/b5"
check "fan-out: sources of both retrievers, fused" bash -c "grep -q '\[README.md#' '$T/b5' && grep -qE '\[(internals/)?[a-z-]+\.md#' '$T/b5'"
chat small "How do I reload the configuration and what does the dead-letter queue keep?" >"$T/b4"
check "prompt over the budget: 400 context_length_exceeded" grep -q "STATUS 400.*context_length_exceeded" "$T/b4"
stop

# ---- chat backends get the assembled messages (system, few-shot, user) ------
UP=$(port)
cat >"$T/upstream.py" <<'PY'
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):  # answers with the messages it was sent
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        out = json.dumps({"id": "x", "object": "chat.completion", "choices": [{"index": 0,
              "message": {"role": "assistant", "content": json.dumps(req["messages"])},
              "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out))); self.end_headers(); self.wfile.write(out)
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$T/upstream.py" "$UP" &
UPID=$!
cat >"$T/chat.yaml" <<EOF
pipelines:
  p:
    stages:
      - {name: rag, type: rag, retriever: {type: bm25, corpus: $ROOT/docs, k: 2}}
      - {name: assemble, type: assemble, template: $ROOT/examples/templates/rag.tmpl,
         system: $ROOT/examples/templates/system.tmpl, examples: $ROOT/examples/templates/fewshot.json,
         max_prompt_tokens: 4000}
      - {name: redact_prompt, type: redact, classes: [email]}
      - {name: inference, type: inference}
backends:
  up: {type: openai, url: "http://127.0.0.1:$UP/v1", stream: false}
models:
  chat: {pipeline: p, backends: [up]}
EOF
check "chat config starts" start "$T/chat.yaml"
chat chat "How do I reload the configuration?" >"$T/c1"
check "upstream got system, 2 few-shot pairs, then the user message with sources" python3 -c '
import json, sys
msgs = json.loads(open(sys.argv[1]).read().split("\n", 1)[1])
roles = [m["role"] for m in msgs]
ok = roles == ["system", "user", "assistant", "user", "assistant", "user"]
ok = ok and "careful assistant" in msgs[0]["content"]
ok = ok and "Sources:" in msgs[-1]["content"] and "How do I reload" in msgs[-1]["content"]
sys.exit(0 if ok else 1)' "$T/c1"
chat chat "How do I reload the configuration? I am carol@example.org" >"$T/c2"
check "the chat messages are redacted before they leave" bash -c "grep -q 'REDACTED:EMAIL' '$T/c2' && ! grep -q 'carol@example.org' '$T/c2'"
stop
kill "$UPID" 2>/dev/null

# ---- bad configurations fail at start, clearly -----------------------------
printf 'Hello {{nope}}\n' >"$T/bad.tmpl"
cat >"$T/bad1.yaml" <<EOF
pipelines:
  p:
    stages:
      - {name: assemble, type: assemble, template: $T/bad.tmpl}
      - {name: inference, type: inference}
backends: {echo: {type: echo}}
models: {m: {pipeline: p, backends: [echo]}}
EOF
"$BIN" serve --config "$T/bad1.yaml" --port "$P" >"$T/o1" 2>"$T/e1"
check "unknown template variable: exit 1" [ $? -eq 1 ]
check "  named with line:col" grep -q "bad.tmpl:1:7" "$T/e1"
mkdir -p "$T/empty"
sed "s|template: $T/bad.tmpl|template: $ROOT/examples/templates/rag.tmpl|" "$T/bad1.yaml" >"$T/bad2.yaml"
sed -i "s|      - {name: assemble|      - {name: rag, type: rag, retriever: {type: bm25, corpus: $T/empty}}\n      - {name: assemble|" "$T/bad2.yaml"
"$BIN" serve --config "$T/bad2.yaml" --port "$P" >"$T/o2" 2>"$T/e2"
check "empty corpus: exit 1" [ $? -eq 1 ]
check "  says so" grep -qi "empty\|no document" "$T/e2"
cat >"$T/bad3.yaml" <<EOF
pipelines:
  p:
    stages:
      - {name: inference, type: inference}
      - {name: redact, type: redact, custom: [{name: ticket, pattern: "T-(\\\\d+"}]}
backends: {echo: {type: echo}}
models: {m: {pipeline: p, backends: [echo]}}
EOF
"$BIN" serve --config "$T/bad3.yaml" --port "$P" >"$T/o3" 2>"$T/e3"
check "regex that does not compile: exit 1" [ $? -eq 1 ]
check "  with PCRE2's message" grep -q "custom pattern 'ticket'.*parenthesis" "$T/e3"
check "check-config names a key of the wrong type" bash -c "printf 'pipelines:\n  p:\n    stages:\n      - {name: i, type: inference, template: x}\nbackends: {e: {type: echo}}\nmodels: {m: {pipeline: p, backends: [e]}}\n' | '$BIN' check-config - 2>&1 | grep -q 'key \"template\" is only valid for type assemble'"

echo "rag: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
