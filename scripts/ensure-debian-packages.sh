#!/usr/bin/env bash
# The Debian packages that frameworks' kept forms link to (SYSTEM_PACKAGES, from the adapters'
# `system_packages`): installed where missing on a root Debian machine. Elsewhere a missing one is
# a warning, not a failure: the adapter that would link it falls back and its flags say so.
set -euo pipefail
missing=()
for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2> /dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get > /dev/null; then
    echo "ensure-debian-packages: not installed: ${missing[*]} (not a root Debian machine); the adapters that link them run without (their flags say so)" >&2
    exit 0
fi
echo "ensure-debian-packages: installing ${missing[*]}"
# a log of its own (a fixed name in /tmp, written as root, is a link anyone could plant first)
log=$(mktemp -t bnbench-apt-packages.XXXXXX)
trap 'rm -f "$log"' EXIT
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" > "$log" 2>&1 \
    || { apt-get update -q > /dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" > "$log" 2>&1; } \
    || { tail -20 "$log" >&2; echo "ensure-debian-packages: could not install ${missing[*]}; the adapters that link them run without" >&2; }
