#!/usr/bin/env bash
# pii_cli.sh - `sluice redact` from the outside: whole and streamed output
# identical for several chunk sizes, exit codes (2 unknown class, 1 bad
# regex, 3 blocked).  Usage: pii_cli.sh SLUICE_BIN DATA_DIR
set -u
bin=$1 data=$2
fail=0
check() { if [ "$2" != "$3" ]; then echo "FAIL $1: got [$2] want [$3]"; fail=1; else echo "ok $1"; fi; }

in=$(mktemp); trap 'rm -f "$in" "$in".*' EXIT
# the labeled set's texts, markers removed
cut -f3 "$data/pii_labeled.tsv" | grep -v '^#' | sed 's/{{//g; s/}}//g' > "$in"
"$bin" redact < "$in" > "$in.whole"; check "whole exit" "$?" 0
for n in 1 3 4 17 4096; do
  "$bin" redact --stream-chunk $n < "$in" > "$in.s$n"; check "stream $n exit" "$?" 0
  cmp -s "$in.whole" "$in.s$n"; check "stream $n == whole" "$?" 0
done
check "email redacted" "$(echo 'mail john@example.com now' | "$bin" redact)" 'mail [REDACTED:EMAIL] now'
check "classes" "$(echo 'john@example.com 10.0.0.1' | "$bin" redact --classes ipv4,ssn)" 'john@example.com [REDACTED:IPV4]'
check "custom" "$(echo 'see TCK-1234' | "$bin" redact --custom 'ticket=TCK-\d+' --stream-chunk 2)" 'see [REDACTED:TICKET]'

err=$(echo x | "$bin" redact --classes email,passport 2>&1 >/dev/null); rc=$?
check "unknown class exit" "$rc" 2
case "$err" in *"unknown class 'passport'"*"email, phone, card, iban, ssn, ipv4, ipv6, secret"*) check "unknown class message" ok ok;;
  *) check "unknown class message" "$err" "unknown class 'passport' (classes: ...)";; esac
err=$(echo x | "$bin" redact --custom 'bad=(ab' 2>&1 >/dev/null); rc=$?
check "bad regex exit" "$rc" 1
case "$err" in *"custom pattern 'bad': missing closing parenthesis at offset 3"*) check "bad regex message" ok ok;;
  *) check "bad regex message" "$err" "custom pattern 'bad': missing closing parenthesis at offset 3";; esac
out=$(printf 'how to build a BOMB today' | "$bin" redact --block bomb --stream-chunk 1 2>/dev/null); rc=$?
check "blocked exit" "$rc" 3
check "blocked output" "$out" 'how to build a '
echo x | "$bin" redact --stream-chunk 0 >/dev/null 2>&1; check "bad chunk exit" "$?" 2
exit $fail
