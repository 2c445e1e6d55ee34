#!/usr/bin/env bash
# Installs the Debian packages sluice needs to build, test and run.
# As root it runs apt-get; otherwise it prints the exact command to run.
# Usage: scripts/setup.sh [build|test|all]   (default: build)
set -euo pipefail
what=${1:-build}

build_pkgs=(build-essential cmake pkg-config libevent-dev libxxhash-dev
            libjansson-dev libcurl4-openssl-dev libcmocka-dev libyaml-dev libpcre2-dev
            libpq-dev)
test_pkgs=(clang libclang-rt-14-dev curl nodejs npm wrk python3 postgresql)

pkgs=("${build_pkgs[@]}")
case "$what" in
  build) ;;
  test|all) pkgs+=("${test_pkgs[@]}") ;;
  *) echo "usage: $0 [build|test|all]" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  # node and npm may come from outside Debian (e.g. nodesource); accept the commands.
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
    python3) command -v python3 >/dev/null 2>&1 && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || apt-get update
  $cmd >/dev/null || $cmd
else
  echo "setup: missing packages: ${missing[*]}" >&2
  echo "setup: run as root:  sudo apt-get update && sudo $cmd" >&2
  exit 1
fi
