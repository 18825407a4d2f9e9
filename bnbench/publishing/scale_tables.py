"""The sweeps of ``bnbench scale`` (results/scale/<machine>/<device>-<axis>-<dtype>.json) as the
results page shows them: step time against FLOPs per step (log-log, with intervals, one line per
framework in the colours and markers of the comparison plots), memory against the work beside the
model's own minimum, and a table of each framework's fixed cost t0 and rate R with the crossovers."""
from __future__ import annotations

import os
from typing import Dict, List, Tuple

from bnbench import tables
from bnbench.comparisons.scale import resolved_crossovers
from bnbench.publishing.figures import finish, pyplot, styles_for
from bnbench.timing import records
from bnbench.timing.units import format_seconds


def load_sweeps(results: str) -> Tuple[List[Dict[str, object]], List[str]]:
    """Every ``bnbench scale`` sweep under results/scale/<machine>/, and a warning per file skipped."""
    return records.read_all(results, "scale", records.SWEEP)


def _series(sweep: Dict[str, object]) -> Dict[str, List[Dict[str, object]]]:
    """label -> its timed rows along the sweep, each with its point's size and FLOPs."""
    out: Dict[str, List[Dict[str, object]]] = {}
    for point in sweep["points"]:
        for row in point["rows"]:
            if row.get("median_step_s") is not None:
                out.setdefault(row["label"], []).append(dict(row, size=point["size"], flops=point["flops"],
                                                             analytic=point["analytic_memory_bytes"]))
    return out


def plot_sweep(sweep: Dict[str, object], path: str) -> bool:
    """Two panels: step time against FLOPs per step with each point's interval and each
    framework's fitted t0 + F/R dashed; memory per step against the work, the model's minimum grey."""
    series = _series(sweep)
    if not series:
        return False
    plt = pyplot()
    styles = styles_for(series)
    fits = {entry["label"]: entry for entry in sweep["fits"]}
    fig, (time_ax, memory_ax) = plt.subplots(1, 2, figsize=(12.5, 5.0), dpi=100)
    for label, rows in sorted(series.items()):
        colour, marker = styles[label]
        flops = [row["flops"] for row in rows]
        seconds = [row["median_step_s"] for row in rows]
        low = [row["median_step_s"] - (row.get("step_ci_low") or row["median_step_s"]) for row in rows]
        high = [(row.get("step_ci_high") or row["median_step_s"]) - row["median_step_s"] for row in rows]
        time_ax.errorbar(flops, seconds, yerr=[low, high], fmt=marker + "-", color=colour, label=label, capsize=3,
                         markersize=5, linewidth=1.2)
        if label in fits:
            model = fits[label]
            time_ax.plot(flops, [model["t0_s"] + f / model["rate_flops"] for f in flops], linestyle="--", color=colour,
                         linewidth=0.8, alpha=0.7)
        measured = [(row["flops"], row["memory_bytes"]) for row in rows if row.get("memory_bytes")]
        if measured:
            memory_ax.plot(*zip(*measured), marker + "-", color=colour, label=label, markersize=5, linewidth=1.2)
    first = next(iter(series.values()))
    key = "minimum" if sweep["device"] != "cpu" else "working"
    memory_ax.plot([row["flops"] for row in first], [row["analytic"][key] for row in first], color="grey", linewidth=2,
                   alpha=0.6, label=f"the model's {key} (analytic)")
    for ax in (time_ax, memory_ax):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"FLOPs per step ({sweep['axis']} axis: {sweep['swept']} = "
                      f"{sweep['points'][0]['size']} to {sweep['points'][-1]['size']})")
        ax.grid(True, which="major", alpha=0.3)
    time_ax.set_ylabel("step time, median over rounds (s); dashed: t0 + FLOPs / R")
    memory_ax.set_ylabel("memory per step (bytes)" + (": resident, above what was before the burst"
                                                      if sweep["device"] == "cpu" else ": allocator peak"))
    time_ax.legend(fontsize=7, ncol=2)
    memory_ax.legend(fontsize=7, ncol=2)
    fig.suptitle(f"How the step grows with the work: {sweep['device']}, {sweep['dtype']}, {sweep['machine_id']}", fontsize=10)
    finish(fig, path)
    return True


def sweep_section(sweep: Dict[str, object], plot: str) -> List[str]:
    lines = [f"#### {sweep['device']}, {sweep['axis']} axis ({sweep['swept']} = "
             f"{', '.join(str(p['size']) for p in sweep['points'])}), {sweep['dtype']}", "",
             f"![step time and memory against FLOPs, {sweep['axis']}]({plot})", "",
             f"Each point: paired rounds of every framework (budget {sweep['budget_per_point']:.0f} s), each verified "
             f"against the reference on that point's spec first; the fit is {sweep['fit_model']}. A point whose fitted "
             f"time is more than {sweep['break_threshold']:.0%} from its measured one breaks the model and is named. "
             f"Matmul peak in the same rounds: {sweep['peak_gflops']:.4g} GFLOP/s. (`{sweep['source']}`)", ""]
    header = ["framework", "t0 [95% CI]", "R, GFLOP/s [95% CI]", "R / peak", "worst fit error", "breaks at",
              "memory / the model's (smallest to largest point)"]
    rows = []
    series = _series(sweep)
    for entry in sweep["fits"]:
        ratios = [row.get("memory_ratio") for row in series.get(entry["label"], []) if row.get("memory_ratio") is not None]
        memory = f"{ratios[0]:.2f} to {ratios[-1]:.2f}" if ratios else "-"
        rows.append([entry["label"], f"{format_seconds(entry['t0_s'])} [{format_seconds(entry['t0_low'])}, "
                     f"{format_seconds(entry['t0_high'])}]", f"{entry['rate_flops'] / 1e9:.3g} [{entry['rate_low'] / 1e9:.3g}, "
                     f"{entry['rate_high'] / 1e9:.3g}]",
                     "-" if entry.get("fraction_of_peak") is None else format(entry["fraction_of_peak"], ".2f"),
                     f"{entry['worst_fit_error']:.1%}", ", ".join(map(str, entry["breaks"])) or "-", memory])
    lines += tables.markdown(header, rows) + [""]
    resolved, unresolved = resolved_crossovers(sweep)
    if resolved:
        lines += ["Crossovers (the faster of two changes between two points, the paired ratio resolved beyond that "
                  "point's noise floor on both sides):", ""]
        for crossing in resolved:
            side = lambda s: f"{s['ratio']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]"  # noqa: E731
            lines.append(f"- {crossing['faster_before']} then {crossing['faster_after']}, between {sweep['swept']} "
                         f"{crossing['between'][0]} and {crossing['between'][1]}: {crossing['pair']} "
                         f"{side(crossing['before'])} then {side(crossing['after'])}; {crossing['reason']}.")
        lines.append("")
    else:
        lines += ["No crossover resolved on both sides: where two frameworks trade places, one side's ratio is "
                  "inside that point's noise floor.", ""]
    if unresolved:
        lines += [f"Sign changes of a ratio inside the noise floor on at least one side, not counted as crossovers "
                  f"({len(unresolved)}, intervals in the JSON): "
                  + ", ".join(f"{c['pair']} between {c['between'][0]} and {c['between'][1]}" for c in unresolved) + ".", ""]
    return lines


def scale_sections(results: str) -> Tuple[List[str], List[str], List[str]]:
    """(markdown lines, plots, problems) of every committed sweep."""
    sweeps, problems = load_sweeps(results)
    if not sweeps:
        return [], [], problems
    lines = ["## How cost grows with the work (`bnbench scale`)", "",
             "Step time against the FLOPs of a step along a sweep of the batch or of every layer's width, each "
             "framework's fixed cost per step t0 and sustained rate R fitted over the sweep, where the faster of two "
             "frameworks changes, and the memory a step needs against the model's own minimum (`make scale`).", ""]
    plots = []
    for sweep in sweeps:
        plot = os.path.join("plots", f"scale-{sweep['machine_id']}-{sweep['device']}-{sweep['axis']}-{sweep['dtype']}.png")
        if plot_sweep(sweep, os.path.join(results, plot)):
            plots.append(plot)
        lines += [f"### Machine `{sweep['machine_id']}`", ""] + sweep_section(sweep, plot)
    return lines, plots, problems
