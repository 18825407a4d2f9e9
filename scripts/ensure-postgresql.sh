#!/usr/bin/env bash
# The tune tests run a real PostgreSQL server (tests/postgres.py). Debian's postgresql package is
# on these machines; where it is missing, this installs it (root and Debian's archive needed).
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb > /dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get > /dev/null; then
    echo "ensure-postgresql: PostgreSQL is not installed and this is not a root Debian machine: install Debian's postgresql package" >&2
    exit 1
fi
echo "ensure-postgresql: installing Debian's postgresql package"
# a log of its own (a fixed name in /tmp, written as root, is a link anyone could plant first)
log=$(mktemp -t bnbench-apt-postgresql.XXXXXX)
trap 'rm -f "$log"' EXIT
DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql > "$log" 2>&1 \
    || { apt-get update -q > /dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql > "$log" 2>&1; } \
    || { tail -20 "$log" >&2; exit 1; }
