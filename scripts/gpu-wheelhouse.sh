#!/usr/bin/env bash
# The wheels the lent GPU machine lacks, for its Python 3.12 (manylinux x86_64), made here from the
# frameworks' declarations (bnbench.catalogue.wheelhouse): .whl/ and .whl/wheelhouse.json, which
# travel with the working tree (`carry: [".whl"]`) and scripts/gpu-run.sh puts on the path.
#   scripts/gpu-wheelhouse.sh [--dry-run] [OUT]     (OUT: default .whl; --dry-run: resolve and size only)
set -euo pipefail
cd "$(dirname "$0")/.."
dry=""
if [ "${1:-}" = "--dry-run" ]; then dry="--dry-run"; shift; fi
out=${1:-.whl}
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3
exec "$python" -m bnbench.catalogue.wheelhouse --out "$out" $dry
