#!/usr/bin/env bash
# The prepared GPU run: one call on a machine with an NVIDIA driver and the frameworks already
# installed (no network, nothing to install). The frameworks are those whose adapters declare the
# cuda device and that import on that machine in its own Python (BNBENCH_GPU_FRAMEWORKS=a,b
# narrows them). It
#   1. makes bnbench importable from this checkout without installing anything (a copy of the
#      package laid out under its import name, on PYTHONPATH);
#   2. runs `bnbench verify --device cuda` for every mode of each in float32 and float64 (side by
#      side, each its own process);
#   3. runs `bnbench compare --device cuda` at tiny, medium and large, float32, against the
#      framework whose matmul is the card's peak (bnbench.timing.peak); that peak in the same dtype is
#      one more participant;
#   4. writes the results as the CPU runs do, under the machine's id (which names the GPU):
#      OUT/verify/<machine>.json and OUT/compare/<machine>/<device>-<size>-<dtype>.json;
#   5. prints one summary table.
#
#   scripts/gpu-run.sh [--dry-run] [OUT]     (OUT: default $OUT, else results)
#
# --dry-run takes the same code paths with --device cpu, tiny only and a short budget: it runs
# in `make test` (tests/test_gpu_run.py) on machines without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
device=cuda sizes="tiny medium large" budget=${BNBENCH_GPU_BUDGET:-25} verify_limit=${BNBENCH_GPU_VERIFY_LIMIT:-270}
if [ "${1:-}" = "--dry-run" ]; then
    device=cpu sizes=tiny budget=${BNBENCH_GPU_BUDGET:-3}
    shift
fi
out=$(mkdir -p "${1:-${OUT:-results}}" && cd "${1:-${OUT:-results}}" && pwd) || { echo "gpu-run: cannot create the output folder" >&2; exit 2; }
python=$(command -v "${PYTHON:-python3}") || { echo "gpu-run: no ${PYTHON:-python3}" >&2; exit 2; }
python=$(cd "$(dirname "$python")" && pwd)/$(basename "$python")
started=$(date +%s)

# 1. bnbench importable without installing: the package's folders laid out as they are imported.
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
cp -r bnbench "$site/bnbench"
cp -r reference "$site/bnbench/reference"
cp -r adapters "$site/bnbench/adapters"
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
cd "$site"      # python -m puts the working folder first on sys.path: the checkout's bnbench/ must not shadow the copy
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=3
bnbench() { "$python" -m bnbench.cli "$@"; }

machine=$("$python" -c 'from bnbench import machine; print(machine.identify()["id"])') || exit 2
# every mode of the frameworks that declare cuda and import here, as NAME:MODE items
items=$(BNBENCH_GPU_FRAMEWORKS=${BNBENCH_GPU_FRAMEWORKS:-} "$python" - <<'EOF'
import os
from bnbench.adapters import registry
wanted = [name for name in os.environ["BNBENCH_GPU_FRAMEWORKS"].split(",") if name]
for name in wanted or registry.names():
    adapter = registry.local_class(name)
    if "cuda" in adapter.devices and adapter.environment is None and adapter.missing_requirement() is None:
        print(" ".join(f"{name}:{mode}" for mode in adapter.modes))
EOF
) || exit 2
items=$(echo $items)
[ -n "$items" ] || { echo "gpu-run: no framework that declares cuda imports here" >&2; exit 2; }
baseline=$("$python" -c 'from bnbench.timing.peak import peak_framework; print(peak_framework("cuda").name)') || exit 2
names=$(for item in $items; do echo "${item%%:*}"; done | sort -u | paste -sd'|')
echo "gpu-run: frameworks $items; baseline $baseline"
echo "gpu-run: machine $machine, device $device, python $("$python" -c 'import sys; print(sys.version.split()[0])')"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
mkdir -p "$out/verify/$machine" "$out/compare/$machine"
status=0

# 2. verification, every framework and mode side by side (each its own process: compilation
#    dominates, and one that runs out of time loses only its own rows).
logs=$(mktemp -d)
for item in $items; do
    timeout "$verify_limit" "$python" -m bnbench.cli verify --framework "${item%%:*}" --mode "${item#*:}" --device "$device" \
        --dtype float32 --dtype float64 --machine "$machine" --json "$logs/verify-${item/:/-}.json" \
        > "$logs/verify-${item/:/-}.log" 2>&1 &
done
for job in $(jobs -p); do wait "$job" || status=1; done
for log in "$logs"/verify-*.log; do
    grep -E "^($names) " "$log" || { echo "gpu-run: $(basename "$log" .log) wrote no result; its log ends:"; tail -n 5 "$log"; }
done
"$python" - "$out/verify/$machine/$device.json" "$logs"/verify-*.json <<'EOF' || status=1
import json, sys
from bnbench.verification import verify
from bnbench.reference.io import atomic_write_json
target, parts = sys.argv[1], sys.argv[2:]
merged = None
for path in parts:
    try:
        with open(path) as handle:
            merged = verify.merge(merged, json.load(handle))
    except OSError:
        print(f"gpu-run: {path} missing (that verification did not finish)")
if merged is None:
    sys.exit("gpu-run: no verification result was written")
atomic_write_json(target, merged)
EOF
rm -rf "$logs"

# 3. paired comparisons, one size at a time (nothing else runs meanwhile).
for size in $sizes; do
    bnbench compare --device "$device" --size "$size" --dtype float32 --frameworks "${items// /,}" \
        --baseline "$baseline" --budget "$budget" --quiet --json "$out/compare/$machine/$device-$size-float32.json" || status=1
done

# 4. one summary table.
"$python" - "$out" "$machine" "$device" <<'EOF'
import glob, json, os, sys
from bnbench.timing.rounds import format_seconds
out, machine, device = sys.argv[1:4]
with open(os.path.join(out, "verify", machine, device + ".json")) as handle:
    checked = {(r["framework"], r["mode"], r["dtype"]): r["status"] for r in json.load(handle)["rows"] if r["device"] == device}
print(f"\n{'size':7} {'framework':10} {'mode':9} {'ratio to the baseline [95% CI]':34} {'median step':12} {'of peak':8} {'first step':11} verify f32/f64")
for path in sorted(glob.glob(os.path.join(out, "compare", machine, device + "-*.json"))):
    with open(path) as handle:
        result = json.load(handle)
    for row in result["rows"]:
        status = "/".join(checked.get((row["framework"], row["mode"], dtype), "-") for dtype in ("float32", "float64"))
        if row.get("median_step_s") is None:
            print(f"{result['size']:7} {row['framework']:10} {row['mode']:9} not timed: {row.get('not_timed')}")
            continue
        ratio = f"{row['ratio']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
        peak = "-" if row["fraction_of_peak"] is None else f"{row['fraction_of_peak']:.3f}"
        print(f"{result['size']:7} {row['framework']:10} {row['mode']:9} {ratio:34} {format_seconds(row['median_step_s']):12} "
              f"{peak:8} {format_seconds(row['first_step_s']):11} {status}")
    peak = result.get("peak") or {}
    print(f"{result['size']:7} baseline {result['baseline']}; peak: {peak.get('gflops', float('nan')):.0f} GFLOP/s ({peak.get('flags', peak.get('problem'))}); "
          f"{result['rounds']} rounds, {result['stopped']}")
EOF
echo "gpu-run: done in $(( $(date +%s) - started )) s, exit status $status; results under $out"
exit $status
