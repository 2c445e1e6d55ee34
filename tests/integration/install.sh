#!/usr/bin/env bash
# `make install` works: install the build into a temporary prefix, build a
# small program against it with pkg-config only, run it.
# Usage: tests/integration/install.sh BUILD_DIR SOURCE_DIR
set -eu
B=${1:?build dir}
S=${2:?source dir}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cmake --install "$B" --prefix "$T/prefix" >/dev/null
pc=$(dirname "$(find "$T/prefix" -name sluice.pc | head -1)")
export PKG_CONFIG_PATH=$pc
cc -std=c11 "$S/tests/integration/install_user.c" $(pkg-config --cflags --libs sluice) -o "$T/user"
out=$(LD_LIBRARY_PATH=$(pkg-config --variable=libdir sluice) "$T/user")
if [ "$out" = "completed installed ok" ]; then
	echo "1 passed, 0 failed"
else
	echo "unexpected output: $out" >&2
	echo "0 passed, 1 failed"
	exit 1
fi
