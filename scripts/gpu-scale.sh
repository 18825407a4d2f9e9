#!/usr/bin/env bash
# The batch sweep of torch and jax on a lent GPU machine's card and on its own CPU, in one call
# (bnbench scale --axis batch, once per device), and from which batch size the card beats that
# machine's CPU (bnbench.comparisons.scale.device_crossover). Sized for at most 5 minutes there.
#   scripts/gpu-scale.sh [--dry-run] [OUT]     (--dry-run: the CPU twice, two points, short budgets)
set -uo pipefail
cd "$(dirname "$0")/.."
gpu=cuda points=${BNBENCH_SCALE_POINTS:-5} budget=${BNBENCH_SCALE_BUDGET:-8} threads=${BNBENCH_SCALE_THREADS:-16}
if [ "${1:-}" = "--dry-run" ]; then gpu=cpu points=2 budget=1 threads=2; shift; fi
out=$(mkdir -p "${1:-${OUT:-results}}" && cd "${1:-${OUT:-results}}" && pwd) || exit 2
python=$(command -v "${PYTHON:-python3}") || exit 2
python=$(cd "$(dirname "$python")" && pwd)/$(basename "$python")
source scripts/gpu-site.sh
gpu_site "$python" gpu-scale || exit 2
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
cd "$site"
status=0
for device in cpu $gpu; do
    "$python" -m bnbench.cli scale --axis batch --device "$device" --frameworks torch,jax --points "$points" \
        --budget "$budget" --threads "$threads" --results "$out" --quiet || status=1
done
"$python" - "$out" "$gpu" <<'PY'
import glob, json, os, sys
from bnbench.comparisons.scale import device_crossover
from bnbench.reference.io import atomic_write_json
out, gpu = sys.argv[1:3]
for cpu_path in glob.glob(os.path.join(out, "scale", "*", "cpu-batch-float32.json")):
    gpu_path = os.path.join(os.path.dirname(cpu_path), f"{gpu}-batch-float32.json")
    if gpu == "cpu" or not os.path.exists(gpu_path):
        gpu_path = cpu_path
    with open(cpu_path) as a, open(gpu_path) as b:
        crossing = device_crossover(json.load(a), json.load(b))
    atomic_write_json(os.path.join(os.path.dirname(cpu_path), "device-crossover-batch-float32.json"), crossing)
    for entry in crossing:
        if entry["not_timed"]:
            print(f"{entry['label']}: not timed: {entry['not_timed']}")
            continue
        faster = (f"from m = {entry['gpu_faster_from']} on" if entry["gpu_faster_from"] is not None
                  else "nowhere in the sweep")
        print(f"{entry['label']}: the card is faster than this machine's CPU {faster}; card/CPU step "
              + "; ".join(f"m={p['size']}: {p['ratio']:.3g} [{p['ci_low']:.3g}, {p['ci_high']:.3g}]" for p in entry["points"]))
PY
exit $status
