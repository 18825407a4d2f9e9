"""``bnbench scale``: how each framework's step time grows with the work, along a log-spaced sweep
of the batch (m from 8 to 2048 at width 512) or of every layer's width (32 to 2048 at m = 256).

At every point the participants are timed in paired rounds (bnbench.timing.rounds: each verified
against the reference on that point's spec and batches before it is timed, the baseline's control
giving the point's noise floor, the matmul peak in the same rounds), and each one's memory is read
after its rounds. Over the sweep, each framework gets two numbers (bnbench.comparisons.fit): a
fixed cost per step t0 and a sustained rate R, with intervals, the fit's worst error and the
points where it breaks; each pair of frameworks, the points where the faster one changes.

Written to results/scale/<machine>/<device>-<axis>-<dtype>.json (its schema and required keys: bnbench.timing.records.SWEEP).
"""
from __future__ import annotations

import datetime
import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from bnbench import tables
from bnbench.adapters.registry import local_class, names
from bnbench.comparisons import fit as fitting
from bnbench.comparisons.compare import parse_items, resolve_items
from bnbench.reference.io import atomic_write_json
from bnbench.reference.spec import Spec
from bnbench.timing import machine, records, rounds, stats, summary
from bnbench.timing.flops import analytic_memory, step_flops
from bnbench.timing.form import Form
from bnbench.timing.rows import Fit, Floor, Point, Row
from bnbench.timing.units import format_seconds

# axis -> (the swept quantity, its log-spaced values: powers of two, the fixed ones)
AXES = {
    "batch": {"swept": "m", "values": [2 ** k for k in range(3, 12)], "width": 512},
    "width": {"swept": "width", "values": [2 ** k for k in range(5, 12)], "m": 256},
}
DEFAULT_POINTS = {"batch": 5, "width": 4}     # every other power of two: 8, 32, ..., 2048; 32, 128, 512, 2048
DEFAULT_BUDGET = 20.0
BASELINES = {"cpu": "numpy", "cuda": "torch"}


class ScaleError(ValueError):
    """Bad axis, participants or settings; the message names the flag and value."""


def point_values(axis: str, points: Optional[int] = None) -> List[int]:
    """``points`` values of the axis, log-spaced over its powers of two, both ends included."""
    values = AXES[axis]["values"]
    count = points or DEFAULT_POINTS[axis]
    if count < 2 or count > len(values):
        raise ScaleError(f"--points {count}: the {axis} axis has 2 to {len(values)} points ({values[0]} to {values[-1]})")
    picks = np.unique(np.round(np.linspace(0, len(values) - 1, count)).astype(int))
    return [values[i] for i in picks]


def point_spec(axis: str, value: int, dtype: str) -> Tuple[Spec, int]:
    """The spec and batch size of one point: the timed model of bnbench.timing.workload, two
    hidden layers, momentum, at this width and batch."""
    width = value if axis == "width" else AXES["batch"]["width"]
    m = value if axis == "batch" else AXES["width"]["m"]
    spec = Spec(n_features=width, hidden=(width, width), n_classes=10, dtype="float32" if dtype == "tf32" else dtype,
                learning_rate=0.01, optimizer="momentum")
    return spec, m


def default_items(device: str) -> Tuple[List[Tuple[str, str]], List[Dict[str, str]]]:
    """The best mode of every framework available in the main environment (its own or a worker of
    this interpreter, as the Keras backends), and the others with the reason."""
    chosen, left_out = [], []
    for name in names():
        adapter = local_class(name)
        if not adapter.modes or adapter.environment is not None:
            left_out.append({"framework": name, "reason": "not in the main environment" if adapter.modes else
                             (adapter.missing_requirement() or "no modes")})
        elif device not in adapter.devices:
            left_out.append({"framework": name, "reason": f"no {device} device"})
        elif adapter.missing_requirement():
            left_out.append({"framework": name, "reason": adapter.missing_requirement()})
        else:
            chosen.append((name, adapter.declaration.kept_mode()))
    return chosen, left_out


def request(axis: str, frameworks: Optional[str], *, device: str = "cpu", dtype: str = "float32",
            budget: float = DEFAULT_BUDGET, threads: int = 2, seed: int = 0, points: Optional[int] = None,
            progress: bool = True) -> Dict[str, Any]:
    if axis not in AXES:
        raise ScaleError(f"--axis {axis!r} is not one of {', '.join(AXES)}")
    if budget <= 0:
        raise ScaleError(f"--budget {budget!r} must be a positive number of seconds")
    if frameworks is None:
        items, left_out = default_items(device)
    else:
        items, left_out = resolve_items(parse_items(frameworks), device, "--frameworks"), []
    baseline = resolve_items(parse_items(BASELINES.get(device, "numpy"), "--baseline"), device, "--baseline")[0]
    if baseline not in items:
        items = [baseline] + items
    return {"axis": axis, "items": items, "left_out": left_out, "baseline": baseline, "device": device, "dtype": dtype,
            "budget": budget, "threads": threads, "seed": seed, "values": point_values(axis, points), "progress": progress}


def run(settings: Dict[str, Any]) -> Dict[str, Any]:
    """Every point's paired rounds, then the fits, the crossovers and the memory against the model's."""
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    axis, dtype, device = settings["axis"], settings["dtype"], settings["device"]
    points, runs = [], []
    for index, value in enumerate(settings["values"]):
        spec, m = point_spec(axis, value, dtype)
        if settings["progress"]:
            print(f"bnbench scale: {axis} {value} ({step_flops(spec, m) / 1e9:.3g} GFLOP a step)", flush=True)
        result = rounds.run(rounds.Settings(
            items=settings["items"], size=f"{axis}-{value}", dtype=dtype, device=device, baseline=settings["baseline"],
            budget=settings["budget"], threads=settings["threads"], progress=settings["progress"],
            # each point its own round order: one order at every point would repeat any effect of
            # who follows whom along the whole sweep
            seed=settings["seed"] + index,
            memory=True, spec=spec, m=m, keep_workers=True))
        runs.append(result)
        points.append(_point(value, spec, m, result))
    rounds.close_workers()
    fits = framework_fits(points, settings["seed"])
    peak = float(np.median([run["peak"]["gflops"] for run in runs if (run.get("peak") or {}).get("gflops") is not None] or [np.nan]))
    for entry in fits:
        entry["fraction_of_peak"] = entry["rate_flops"] / (peak * 1e9) if np.isfinite(peak) else None
    info = machine.identify()
    return {**records.SWEEP.stamp(), "machine": info, "machine_id": info["id"], "created": started,
            "device": device, "axis": axis, "dtype": dtype, "swept": AXES[axis]["swept"],
            "fixed": {key: value for key, value in AXES[axis].items() if key not in ("swept", "values")},
            "baseline": str(Form.of(*settings["baseline"])), "budget_per_point": settings["budget"],
            "threads": settings["threads"], "peak_gflops": peak, "points": points, "fits": fits,
            "crossovers": _crossovers(points, runs, fits, settings["seed"]), "left_out": settings["left_out"],
            "fit_model": "median step time = t0 + FLOPs / R, weighted by relative error; intervals: a bootstrap over "
                         "each point's rounds",
            "break_threshold": fitting.BREAK}


def _point(value: int, spec: Spec, m: int, result: Dict[str, Any]) -> Dict[str, Any]:
    # its rows as the run wrote them (their memory against this point's spec and m: the analytic minimum's)
    return Point(size=value, m=m, spec=spec.to_dict(), flops=float(step_flops(spec, m)),
                 rows=[Row.from_json(row, f"point {value}: row") for row in result["rows"]],
                 analytic_memory_bytes=analytic_memory(spec, m),
                 floor=None if result.get("floor") is None else Floor.from_json(result["floor"], f"point {value}: floor"),
                 rounds=result["rounds"], seconds=result["seconds"], round_medians=result["round_medians"],
                 round_references=result.get("round_references"), undisturbed_rounds=result.get("undisturbed_rounds"),
                 round_counted=result.get("round_counted"), undisturbed=result.get("undisturbed")).to_json()


def framework_fits(points: List[Dict[str, Any]], seed: int) -> List[Dict[str, Any]]:
    """Each framework's fixed cost and rate over the sweep's points, from the rounds that count for it."""
    labels = [row["label"] for row in points[0]["rows"] if row.get("median_step_s") is not None]
    out = []
    for label in labels:
        if any(label not in point["round_medians"] for point in points):
            continue
        series = [counted(point, label, point["round_medians"][label]) for point in points]
        if any(not np.isfinite(values).any() for values in series):
            continue        # no round counted at a point: that point's row says so (bnbench.timing.summary.counted)
        result = fitting.fit([point["flops"] for point in points], series, seed=seed)
        form = Form.parse(label)
        out.append(Fit(framework=form.framework, mode=form.mode_label, label=label, t0_s=result.t0, t0_low=result.t0_low,
                       t0_high=result.t0_high, rate_flops=result.rate, rate_low=result.rate_low,
                       rate_high=result.rate_high, worst_fit_error=result.worst_error,
                       fit_errors=list(result.errors), breaks=[points[i]["size"] for i in result.breaks]).to_json())
    return out


def _crossovers(points: List[Dict[str, Any]], runs: List[Dict[str, Any]], fits: List[Dict[str, Any]], seed: int):
    labels = [entry["label"] for entry in fits]
    sizes = [point["size"] for point in points]
    ratios = {}
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            ratios[f"{a}/{b}"] = [stats.paired_ratio(_against_baseline(point, a), _against_baseline(point, b), seed=seed)
                                  for point in points]
    models = {entry["label"]: fitting.Fit(entry["t0_s"], entry["t0_low"], entry["t0_high"], entry["rate_flops"],
                                          entry["rate_low"], entry["rate_high"], entry["fit_errors"], [])
              for entry in fits}
    spreads = [(point.get("floor") or {}).get("spread") or 0.0 for point in points]
    return fitting.crossovers(sizes, ratios, models, spreads)


def counted(point: Dict[str, Any], label: str, values) -> np.ndarray:
    """A point's figures for ``label`` per round, NaN in the rounds that do not count for it, as its
    run said (``round_counted``, bnbench.timing.summary.Kept.of). NaN rather than dropped, so that
    two participants' rounds stay aligned and a pair counts only the rounds both count.

    A sweep written before its runs said so (before 2026-12-08) counts as they counted: not the
    rounds the machine ran disturbed in, nor, where the run applied the per-burst rule
    (``undisturbed.per_burst``), those where the baseline beside its own burst ran slower than the
    run's limit; one written before the rounds said which keeps every round."""
    values = np.asarray(values, dtype=np.float64)
    said = (point.get("round_counted") or {}).get(label)
    if said is not None and len(said) == values.size:
        return np.where(np.asarray(said, dtype=bool), values, np.nan)
    mask = np.ones(values.size, dtype=bool)
    kept = point.get("undisturbed_rounds")
    if kept is not None and len(kept) == values.size:
        mask &= np.asarray(kept, dtype=bool)
    state = point.get("undisturbed") or {}
    references = (point.get("round_references") or {}).get(label)
    if state.get("per_burst") and state.get("limit_s") is not None and references is not None \
            and len(references) == values.size:
        mask &= summary.within(references, state["limit_s"])
    return np.where(mask, values, np.nan)


def _against_baseline(point: Dict[str, Any], label: str) -> np.ndarray:
    """A participant's figure per round over the baseline's beside it (its burst's own phase of the
    machine), NaN in the rounds that do not count for it; its figure alone in a sweep written before
    the rounds kept the baseline's."""
    medians = point["round_medians"][label]
    references = (point.get("round_references") or {}).get(label)
    return counted(point, label, stats.round_ratios(medians, references) if references is not None else medians)


def resolved_crossovers(sweep: Dict[str, Any]) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """(crossovers resolved on both sides, the other sign changes): a ratio that moves across 1 inside
    the noise floor on one side is not a change of order anyone could rely on."""
    both = [c for c in sweep["crossovers"] if c["before"]["resolved"] and c["after"]["resolved"]]
    return both, [c for c in sweep["crossovers"] if c not in both]


def failed(sweep: Dict[str, Any]) -> bool:
    return any((row.get("not_timed") or "").startswith(("not verified", "failed:")) for point in sweep["points"]
               for row in point["rows"])


def path_for(results: str, sweep: Dict[str, Any]) -> str:
    return os.path.join(results, "scale", sweep["machine_id"], f"{sweep['device']}-{sweep['axis']}-{sweep['dtype']}.json")


def write(sweep: Dict[str, Any], results: str = "results") -> str:
    path = path_for(results, sweep)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_json(path, sweep)
    return path


def table(sweep: Dict[str, Any]) -> str:
    """The fits and crossovers as the command prints them."""
    lines = [f"{sweep['axis']} sweep ({sweep['swept']} = {', '.join(str(p['size']) for p in sweep['points'])}), "
             f"{sweep['device']}, {sweep['dtype']}; t0 + FLOPs / R:", ""]
    header = ["framework", "t0 [95% CI]", "R GFLOP/s [95% CI]", "of peak", "worst fit error", "breaks at"]
    rows = [[entry["label"], f"{format_seconds(entry['t0_s'])} [{format_seconds(entry['t0_low'])}, {format_seconds(entry['t0_high'])}]",
             f"{entry['rate_flops'] / 1e9:.3g} [{entry['rate_low'] / 1e9:.3g}, {entry['rate_high'] / 1e9:.3g}]",
             "-" if entry.get("fraction_of_peak") is None else f"{entry['fraction_of_peak']:.2f}",
             f"{entry['worst_fit_error']:.1%}", ", ".join(map(str, entry["breaks"])) or "-"] for entry in sweep["fits"]]
    lines += [tables.text(header, rows), ""]
    resolved, unresolved = resolved_crossovers(sweep)
    lines.append(f"Crossovers resolved on both sides: {len(resolved) or 'none'}")
    for crossing in resolved:
        before, after = crossing["before"], crossing["after"]
        lines.append(f"  {crossing['faster_before']} then {crossing['faster_after']} between {crossing['between'][0]} and "
                     f"{crossing['between'][1]}: {crossing['pair']} {before['ratio']:.3f} [{before['ci_low']:.3f}, "
                     f"{before['ci_high']:.3f}] then {after['ratio']:.3f} [{after['ci_low']:.3f}, {after['ci_high']:.3f}]; "
                     f"{crossing['reason']}")
    if unresolved:
        where = ", ".join(f"{c['pair']} {c['between'][0]}-{c['between'][1]}" for c in unresolved)
        lines.append(f"Sign changes inside the noise floor on at least one side (not crossovers): {len(unresolved)} ({where})")
    return "\n".join(lines)



def device_crossover(cpu: Dict[str, Any], gpu: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Per framework, along two batch sweeps of one machine (its CPU and its GPU, two runs, so not
    paired round by round): the GPU's step time over the CPU's at each point, with an interval made
    of the two steps' own (the GPU's lower end over the CPU's upper end, and the reverse: wider than
    a paired one), and the first point from which the GPU is faster with that whole interval below 1."""
    out = []
    def by_label(sweep: Dict[str, Any]) -> Dict[str, Dict[int, Dict[str, Any]]]:
        rows: Dict[str, Dict[int, Dict[str, Any]]] = {}
        for point in sweep["points"]:
            for row in point["rows"]:
                rows.setdefault(row["label"], {})[point["size"]] = row
        return rows

    cpu_rows, gpu_rows = by_label(cpu), by_label(gpu)
    for label in sorted(set(cpu_rows) & set(gpu_rows)):
        points = []
        for size in sorted(set(cpu_rows[label]) & set(gpu_rows[label])):
            c, g = cpu_rows[label][size], gpu_rows[label][size]
            if c.get("median_step_s") is None or g.get("median_step_s") is None:
                continue
            c_low, c_high = c.get("step_ci_low") or c["median_step_s"], c.get("step_ci_high") or c["median_step_s"]
            g_low, g_high = g.get("step_ci_low") or g["median_step_s"], g.get("step_ci_high") or g["median_step_s"]
            points.append({"size": size, "ratio": g["median_step_s"] / c["median_step_s"], "ci_low": g_low / c_high,
                           "ci_high": g_high / c_low})
        beats = next((point["size"] for point in points if point["ci_high"] < 1), None)
        reasons = [row.get("not_timed") for rows in (cpu_rows[label], gpu_rows[label]) for row in rows.values()]
        out.append({"label": label, "points": points, "gpu_faster_from": beats,
                    "not_timed": None if points else next((reason for reason in reasons if reason), "not timed")})
    return out
