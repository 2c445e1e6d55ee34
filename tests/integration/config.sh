#!/usr/bin/env bash
# config.sh - `sluice check-config` and `sluice config --print-default`
# against the real program.
#   examples/*.yaml               exit 0, "FILE: ok" on stdout
#   tests/config/NAME.yaml        exit 1, stderr exactly tests/config/NAME.expected
#   missing / directory / unreadable file, usage errors: exit 2
#   a 100 MB file, binary garbage: exit 1 with one clear problem, quickly
#   the printed default passes check-config (from a file and from stdin)
# Usage: config.sh path/to/sluice
set -u
SLUICE=${1:?usage: config.sh path/to/sluice}
SLUICE=$(cd "$(dirname "$SLUICE")" && pwd)/$(basename "$SLUICE")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TMP=$(mktemp -d)
trap 'chmod -R u+rwx "$TMP" 2>/dev/null; rm -rf "$TMP"' EXIT

# The files must not depend on the caller's environment.
unset SLUICE_HOST SLUICE_PORT UPSTREAM_URL UPSTREAM_MODEL \
      SLUICE_TEST_PORT SLUICE_TEST_HOST SLUICE_TEST_UNSET_URL

fails=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }

# run NAME EXPECTED_EXIT CMD... : runs CMD, keeps stdout/stderr in $TMP/NAME.{out,err}
run() {
	local name=$1 want=$2
	shift 2
	"$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
	local got=$?
	if [ "$got" -ne "$want" ]; then
		fail "$name: exit $got, expected $want"
		sed 's/^/     | /' "$TMP/$name.err" | head -20
		return 1
	fi
	return 0
}

# --- the examples are valid (failover.yaml needs its variables)
export PRIMARY_URL=http://127.0.0.1:1/v1 FALLBACK_URL=http://127.0.0.1:2/v1 DLQ_DIR="$TMP/dlq"
cd "$ROOT/examples" || exit 1
n_examples=0
for f in *.yaml; do
	n_examples=$((n_examples + 1))
	if run "ex-$f" 0 "$SLUICE" check-config "$f"; then
		if [ "$(cat "$TMP/ex-$f.out")" = "$f: ok" ] && [ ! -s "$TMP/ex-$f.err" ]; then
			pass "examples/$f"
		else
			fail "examples/$f: unexpected output"
			cat "$TMP/ex-$f.out" "$TMP/ex-$f.err"
		fi
	fi
done
for need in minimal.yaml fanout.yaml upstream.yaml; do
	[ -f "$need" ] || fail "examples/$need is missing"
done

# --- the broken files: every problem, exactly
cd "$ROOT/tests/config" || exit 1
for f in *.yaml; do
	name=${f%.yaml}
	if [ ! -f "$name.expected" ]; then
		fail "tests/config/$name.expected is missing"
		continue
	fi
	if run "bad-$name" 1 timeout 20 "$SLUICE" check-config "$f"; then
		if [ -s "$TMP/bad-$name.out" ]; then
			fail "tests/config/$f: wrote to stdout"
		elif diff -u "$name.expected" "$TMP/bad-$name.err" >"$TMP/bad-$name.diff"; then
			pass "tests/config/$f ($(tail -n 1 "$name.expected"))"
		else
			fail "tests/config/$f: stderr differs from $name.expected"
			sed 's/^/     | /' "$TMP/bad-$name.diff"
		fi
	fi
done

# --- an environment variable fixes env.yaml's unset-variable problem
cd "$ROOT/tests/config" || exit 1
if run env-set 1 env SLUICE_TEST_UNSET_URL=http://127.0.0.1:9/v1 "$SLUICE" check-config env.yaml; then
	if grep -q SLUICE_TEST_UNSET_URL "$TMP/env-set.err"; then
		fail "env.yaml: SLUICE_TEST_UNSET_URL set, still reported"
	elif [ "$(tail -n 1 "$TMP/env-set.err")" = "3 problems" ]; then
		pass "env.yaml with the variable set: 3 problems"
	else
		fail "env.yaml with the variable set: $(tail -n 1 "$TMP/env-set.err")"
	fi
fi

# --- unreadable files and usage errors: exit 2
cd "$TMP" || exit 1
if run missing 2 "$SLUICE" check-config nope.yaml; then
	[ "$(cat missing.err)" = "nope.yaml: cannot open: No such file or directory" ] &&
		pass "missing file: exit 2" || { fail "missing file: stderr"; cat missing.err; }
fi
mkdir adir
if run dir 2 "$SLUICE" check-config adir; then
	[ "$(cat dir.err)" = "adir: cannot read: Is a directory" ] &&
		pass "directory: exit 2" || { fail "directory: stderr"; cat dir.err; }
fi
if [ "$(id -u)" -ne 0 ]; then
	cp "$ROOT/examples/minimal.yaml" secret.yaml
	chmod 000 secret.yaml
	if run perm 2 "$SLUICE" check-config secret.yaml; then
		[ "$(cat perm.err)" = "secret.yaml: cannot open: Permission denied" ] &&
			pass "unreadable file: exit 2" || { fail "unreadable file: stderr"; cat perm.err; }
	fi
else
	echo "skip unreadable file (running as root)"
fi
run usage 2 "$SLUICE" check-config && pass "check-config without FILE: exit 2"
run usage2 2 "$SLUICE" check-config a.yaml b.yaml && pass "check-config with two files: exit 2"
run usage3 2 "$SLUICE" config && pass "config without an option: exit 2"
run help 0 "$SLUICE" check-config --help && pass "check-config --help: exit 0"

# --- a 100 MB file: refused from its size, at once
truncate -s 100M big.yaml
start=$(date +%s%N)
if run big 1 "$SLUICE" check-config big.yaml; then
	ms=$((($(date +%s%N) - start) / 1000000))
	printf 'big.yaml: file too large: 104857600 bytes (at most 16777216)\n1 problem\n' >big.want
	if diff -u big.want big.err >/dev/null; then
		pass "100 MB file: exit 1 in ${ms} ms"
	else
		fail "100 MB file: stderr"
		cat big.err
	fi
fi

# --- binary garbage: one problem naming libyaml's complaint
LC_ALL=C awk 'BEGIN { srand(42); for (i = 0; i < 65536; i++) printf "%c", int(rand() * 256) }' >garbage.yaml
if run garbage 1 timeout 20 "$SLUICE" check-config garbage.yaml; then
	if [ "$(wc -l <garbage.err)" -eq 2 ] && grep -q '^garbage.yaml:[0-9]*:[0-9]*: .*invalid YAML: ' garbage.err &&
		[ "$(tail -n 1 garbage.err)" = "1 problem" ]; then
		pass "binary garbage: exit 1, one problem"
	else
		fail "binary garbage: stderr"
		cat garbage.err
	fi
fi

# --- the printed default is valid, with a comment on every key
if run default 0 "$SLUICE" config --print-default; then
	cp default.out default.yaml
	if run default-check 0 "$SLUICE" check-config default.yaml &&
		[ "$(cat default-check.out)" = "default.yaml: ok" ]; then
		pass "config --print-default passes check-config"
	else
		fail "config --print-default does not pass check-config"
	fi
	if "$SLUICE" config --print-default | "$SLUICE" check-config - >stdin.out 2>stdin.err &&
		[ "$(cat stdin.out)" = "-: ok" ]; then
		pass "check-config - (standard input)"
	else
		fail "check-config -"
		cat stdin.err
	fi
	if printf 'models: 1\n' | "$SLUICE" check-config - >stdin2.out 2>stdin2.err; then
		fail "check-config - on an invalid file: exit 0"
	elif [ "$(head -n 1 stdin2.err)" = "<stdin>:1:9: models: expected a mapping, found 1" ]; then
		pass "check-config - on an invalid file"
	else
		fail "check-config - on an invalid file: stderr"
		cat stdin2.err
	fi
	# every line that holds a key has a comment
	bare=$(grep -v '^[[:space:]]*#' default.yaml | grep ':' | grep -v '#' || true)
	if [ -z "$bare" ]; then
		pass "a comment on every key of the default"
	else
		fail "keys without a comment in the default:"
		echo "$bare"
	fi
fi

echo
if [ "$fails" -ne 0 ]; then
	echo "$fails check(s) failed"
	exit 1
fi
echo "all checks passed ($n_examples examples)"
