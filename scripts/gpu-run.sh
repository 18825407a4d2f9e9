#!/usr/bin/env bash
# The prepared GPU run: one call on a machine with an NVIDIA driver and torch and jax already
# installed (the lent H100/H200: no network). The frameworks are those whose adapters declare the
# cuda device and that import on that machine in its own Python, with the wheels it lacks carried
# in .whl/ (scripts/gpu-wheelhouse.sh makes them here; BNBENCH_GPU_FRAMEWORKS=a,b narrows them). It
#   1. puts the carried wheels and bnbench (a copy of the package under its import name) on the path,
#      installing nothing into the machine's Python;
#   2. runs `bnbench verify --device cuda` for every mode of each, in float32, float64 and, where a
#      framework offers it, tf32 (side by side, each its own process; the dry run: float32);
#   3. writes the GPU tuning logs of torch and jax (`bnbench tunelog --device cuda`: every form
#      against the kept one at tiny, large and xlarge);
#   4. runs `bnbench compare --device cuda` at tiny, medium, large and xlarge in float32, and at
#      large and xlarge in tf32, against the framework whose matmul is the card's peak: each step
#      queued and synchronised once per burst (median step), and each step synchronised (latency);
#   5. trains many models in one program on the card (`bnbench tune --style caviar --device cuda`,
#      256 models a program) and compares its models per second with one model at a time there and
#      with caviar on this machine's CPU;
#   6. writes everything as the CPU runs do, under the machine's id (which names the GPU), with the
#      wheelhouse's manifest (why a framework stayed behind), and prints one summary table.
#
#   scripts/gpu-run.sh [--dry-run] [OUT]     (OUT: default $OUT, else results)
#
# --dry-run takes the same code paths on the CPU: --device cpu, tiny only, short budgets, the
# bursts queued all the same (--queued), xlarge listed and skipped with its reason, a small caviar;
# `make test` runs it (tests/test_gpu_run.py). On the lent H200 the whole run must stay under 9
# minutes (the budgets below are sized for it).
set -uo pipefail
cd "$(dirname "$0")/.."
device=cuda sizes="tiny medium large xlarge" tf32_sizes="large xlarge" budget=${BNBENCH_GPU_BUDGET:-12}
tunelog_budget=${BNBENCH_GPU_TUNELOG_BUDGET:-6} verify_limit=${BNBENCH_GPU_VERIFY_LIMIT:-240}
caviar=(--models 256 --trials 512 --epochs 10) queued="" tunelog_frameworks="torch jax" verify_dtypes="float32 float64"
# One set of workers per comparison (compare's default is two): a second would start and compile
# every framework again inside the lent machine's minutes. The JSON says so (process_sets).
sets=${BNBENCH_GPU_SETS:-1}
if [ "${1:-}" = "--dry-run" ]; then
    device=cpu sizes="tiny xlarge" tf32_sizes="" budget=${BNBENCH_GPU_BUDGET:-3} tunelog_budget=${BNBENCH_GPU_TUNELOG_BUDGET:-2}
    caviar=(--models 8 --trials 16 --epochs 2) queued="--queued" tunelog_frameworks="jax"   # one log: the path, not the forms
    verify_dtypes="float32"   # the path; float64 on the CPU is the equivalence suite's (tests/test_equivalence.py)
    shift
fi
out=$(mkdir -p "${1:-${OUT:-results}}" && cd "${1:-${OUT:-results}}" && pwd) || { echo "gpu-run: cannot create the output folder" >&2; exit 2; }
python=$(command -v "${PYTHON:-python3}") || { echo "gpu-run: no ${PYTHON:-python3}" >&2; exit 2; }
python=$(cd "$(dirname "$python")" && pwd)/$(basename "$python")
started=$(date +%s)

# 1. the carried wheels and bnbench importable without installing anything into the machine's Python
source scripts/gpu-site.sh
gpu_site "$python" gpu-run || exit 2
wheels=$(pwd)/.whl
cd "$site"      # python -m puts the working folder first on sys.path: the checkout's bnbench/ must not shadow the copy
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=3
bnbench() { "$python" -m bnbench.cli "$@"; }

machine=$("$python" -c 'from bnbench.timing import machine; print(machine.identify()["id"])') || exit 2
# every mode of the frameworks that declare cuda and import here, as NAME:MODE items
items=$(BNBENCH_GPU_FRAMEWORKS=${BNBENCH_GPU_FRAMEWORKS:-} "$python" - <<'EOF'
import os
from bnbench.adapters import registry
wanted = [name for name in os.environ["BNBENCH_GPU_FRAMEWORKS"].split(",") if name]
for name in wanted or registry.names():
    adapter = registry.local_class(name)
    if "cuda" in adapter.devices and adapter.environment is None and adapter.import_error() is None:
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
[ -f "$wheels/wheelhouse.json" ] && cp "$wheels/wheelhouse.json" "$out/verify/$machine/wheelhouse.json"
status=0

# 2. verification, every framework and mode side by side (each its own process: compilation
#    dominates, and one that runs out of time loses only its own rows); tf32 where offered.
logs=$(mktemp -d)
for item in $items; do
    dtypes=$(for dtype in $verify_dtypes; do printf -- "--dtype %s " "$dtype"; done)
    "$python" -c "import sys; from bnbench.adapters.registry import local_class; sys.exit(0 if '$device' in local_class('${item%%:*}').precisions.get('tf32', ()) else 1)" \
        && dtypes="$dtypes --dtype tf32"
    timeout "$verify_limit" "$python" -m bnbench.cli verify --framework "${item%%:*}" --mode "${item#*:}" --device "$device" \
        $dtypes --machine "$machine" --json "$logs/verify-${item/:/-}.json" > "$logs/verify-${item/:/-}.log" 2>&1 &
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

# 3. the GPU tuning logs: every form of torch and jax against its kept one.
tunelog_sizes=$([ "$device" = cpu ] && echo tiny || echo tiny,large,xlarge)
for name in $tunelog_frameworks; do
    case " $items " in *" $name:"*) ;; *) continue ;; esac
    bnbench tunelog --framework "$name" --device "$device" --sizes "$tunelog_sizes" --budget "$tunelog_budget" \
        --results "$out" --quiet || status=1
done

# 4. paired comparisons, one size at a time (nothing else runs meanwhile); tf32 beside float32.
for size in $sizes; do
    skip=$("$python" -c "from bnbench.timing.workload import unavailable_on; print(unavailable_on('$size', '$device') or '')")
    if [ -n "$skip" ]; then echo "gpu-run: $size skipped: $skip"; continue; fi
    bnbench compare --device "$device" --size "$size" --dtype float32 --frameworks "${items// /,}" $queued \
        --baseline "$baseline" --budget "$budget" --sets "$sets" --quiet --json "$out/compare/$machine/$device-$size-float32.json" || status=1
done
for size in $tf32_sizes; do
    tf32_items=$(for item in $items; do "$python" -c "import sys; from bnbench.adapters.registry import local_class; sys.exit(0 if '$device' in local_class('${item%%:*}').precisions.get('tf32', ()) else 1)" && echo "$item"; done | paste -sd,)
    [ -n "$tf32_items" ] || continue
    bnbench compare --device "$device" --size "$size" --dtype tf32 --frameworks "$tf32_items" $queued \
        --baseline "$baseline" --budget "$budget" --sets "$sets" --quiet --json "$out/compare/$machine/$device-$size-tf32.json" || status=1
done

# 5. caviar on the card: many models in one program, against one model at a time and the CPU's caviar.
case " $items " in
    *" jax:"*) bnbench tune --framework jax --style caviar --strategy random --device "$device" "${caviar[@]}" \
                   --study "jax-caviar-$device" --results "$out" --quiet || status=1 ;;
esac

# 6. one summary table.
"$python" - "$out" "$machine" "$device" <<'EOF'
import glob, json, os, sys
from bnbench.timing.units import format_seconds
out, machine, device = sys.argv[1:4]
with open(os.path.join(out, "verify", machine, device + ".json")) as handle:
    checked = {(r["framework"], r["mode"], r["dtype"]): r["status"] for r in json.load(handle)["rows"] if r["device"] == device}
print(f"\n{'size':7} {'dtype':7} {'framework':12} {'mode':9} {'ratio to the baseline [95% CI]':34} {'step':9} {'latency':9} "
      f"{'of peak':8} {'first step':11} verify f32/f64/tf32")
for path in sorted(glob.glob(os.path.join(out, "compare", machine, device + "-*.json"))):
    with open(path) as handle:
        result = json.load(handle)
    for row in result["rows"]:
        status = "/".join(checked.get((row["framework"], row["mode"], dtype), "-") for dtype in ("float32", "float64", "tf32"))
        if row.get("median_step_s") is None:
            print(f"{result['size']:7} {result['dtype']:7} {row['framework']:12} {row['mode']:9} not timed: {row.get('not_timed')}")
            continue
        ratio = f"{row['ratio']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]" + ("" if row.get("converged", True) else " *")
        peak = "-" if row["fraction_of_peak"] is None else f"{row['fraction_of_peak']:.3f}"
        print(f"{result['size']:7} {result['dtype']:7} {row['framework']:12} {row['mode']:9} {ratio:34} "
              f"{format_seconds(row['median_step_s']):9} {format_seconds(row.get('latency_s')):9} {peak:8} "
              f"{format_seconds(row['first_step_s']):11} {status}")
    peak, floor = result.get("peak") or {}, result.get("floor") or {}
    print(f"{result['size']:7} {result['dtype']:7} baseline {result['baseline']}; peak {peak.get('gflops', float('nan')):.0f} GFLOP/s; "
          f"floor {floor.get('ratio', float('nan')):.3f}; {result['rounds']} rounds, {result['stopped']}")
manifest = os.path.join(out, "verify", machine, "wheelhouse.json")
if os.path.exists(manifest):
    with open(manifest) as handle:
        for name, entry in json.load(handle)["frameworks"].items():
            if not entry.get("travels"):
                print(f"not on this machine: {name}: {entry['reason']}")
for path in glob.glob(os.path.join(out, "tuning", f"jax-caviar-{device}", "summary.json")):
    with open(path) as handle:
        summary = json.load(handle)
    speed = summary.get("throughput") or {}
    print(f"caviar on {device}: {summary['n_trials_complete']} models, {speed.get('models_per_program')} a program; "
          f"{speed.get('caviar_models_per_second') or 0:.3g} models/s against one at a time "
          f"{speed.get('panda_models_per_second') or 0:.3g} ({speed.get('caviar_over_panda') or 0:.3g}x)"
          + (f" and the CPU's caviar {speed['cpu_caviar_models_per_second']:.3g} ({speed['caviar_over_cpu_caviar']:.3g}x)"
             if "cpu_caviar_models_per_second" in speed else "")
          + f"; best test accuracy {summary.get('test_accuracy')}")
EOF
echo "gpu-run: done in $(( $(date +%s) - started )) s, exit status $status; results under $out"
exit $status
