"""The paired comparisons (``bnbench compare``'s results under results/compare/<machine>/) as
tables and plots: one table per run, never two runs or two machines in one."""
from __future__ import annotations

import os
from typing import Dict, List, Tuple

from bnbench import tables
from bnbench.comparisons import compare, tunelog
from bnbench.publishing.asv_tables import SIZES_M, load_verification
from bnbench.publishing.figures import finish, interval, number, pyplot, styles_for
from bnbench.timing import machine as machines_module
from bnbench.timing import records
from bnbench.timing.units import format_seconds
from bnbench.timing.workload import SIZE_ORDER


def verification_section(verification, machine: str) -> List[str]:
    if not verification:
        return [f"No `bnbench verify` record for machine `{machine}`.", ""]
    header = ["environment", "framework", "mode", "device", "dtype", "status", "checks", "worst grad error",
              "worst parameter error"]
    rows = []
    for (group, framework, mode, device, dtype), row in sorted(verification.items()):
        worst = row.get("worst") or {}
        checks = f"{row.get('passed', 0)}/{row.get('checked', 0)}"
        if row.get("unsupported"):
            checks += f" (+{len(row['unsupported'])} unsupported)"
        rows.append([group, framework, mode, device, dtype, row.get("status"), checks, number(worst.get("grad"), 2),
                     number(worst.get("param"), 2)])
    return [f"### Equivalence on `{machine}` (`bnbench verify` in each asv environment)", "",
            *tables.markdown(header, rows), ""]


# --------------------------------------------------------------------------- paired comparisons
COMPARE_COLUMNS = ["machine", "device", "dtype", "size", "baseline", "created", "rounds", "framework", "mode", "label",
                   "version", "ratio", "ci_low", "ci_high", "resolved", "converged", "median_step_s", "step_ci_low",
                   "step_ci_high", "latency_s", "fraction_of_peak", "fraction_ci_low", "fraction_ci_high", "first_step_s",
                   "memory_bytes", "memory_kind", "memory_ratio", "verified", "source"]


def load_comparisons(results: str) -> Tuple[List[Dict[str, object]], List[str]]:
    """Every ``bnbench compare`` result under results/compare/<machine>/, one run per file.
    A file holds one run on one machine: its values are never combined with another file's."""
    runs, problems = records.read_all(results, "compare", records.COMPARISON)
    runs.sort(key=lambda r: (r["machine_id"], r["device"], r["dtype"], SIZE_ORDER.index(r["size"]) if r["size"] in SIZE_ORDER else 9))
    return runs, problems


def _flags(row: Dict[str, object]) -> str:
    """A row's flags, and the BLAS kernel its process really ran (bnbench.timing.kernels)."""
    kernel = compare.kernel_text(row) if row.get("kernels") else ""
    return "; ".join(part for part in (str(row.get("flags") or ""), f"BLAS: {kernel}" if kernel not in ("", "-") else "")
                     if part)


def tuning_log_link(results: str, machine_id: str, framework: str) -> str:
    path = tunelog.path_for(results, machine_id, framework, "md")
    return f" ([tuning log]({os.path.relpath(path, results)}))" if os.path.exists(path) else ""


def comparison_table(run: Dict[str, object], verification, results: str = "results") -> List[str]:
    """One run's table: ratios resolved beyond the run's noise floor, intervals still wider than the
    target marked, and on a device with asynchronous dispatch each row's per-step latency beside
    its queued step."""
    peak = run.get("peak") or {}
    peak_text = (f"matmul peak {peak['gflops']:.4g} GFLOP/s ({peak.get('flags')})" if peak.get("gflops") is not None
                 else f"no matmul peak ({peak.get('problem') or 'not measured'})")
    device = run["device"] != "cpu"
    floor = run.get("floor") or {}
    floor_text = (f"Floor: `{floor['label']}` / baseline = {floor['ratio']:.3f} [{floor['ci_low']:.3f}, {floor['ci_high']:.3f}]; "
                  f"a row is resolved when its interval lies wholly outside 1 ± {floor['spread']:.3f} (the floor's reach "
                  "from 1, and its distance from 1 once more)."
                  if floor.get("ratio") is not None else
                  "No control in this run (made before every run had one): a row is resolved when its interval excludes 1.")
    timing = run.get("timing") or ("each step synchronised" if not device else "each step synchronised (made before "
                                   "queued bursts: median step and latency are one measurement)")
    precision = " (a float32 spec, its matmuls in TF32)" if run["dtype"] == "tf32" else ""
    state = "; ".join(part for part in (compare.state_line(run), compare.kernels_line(run)) if part)
    lines = [f"#### {run['device']}, {run['dtype']}{precision}, `{run['size']}` (m={run.get('m', SIZES_M.get(run['size'], '?'))})", "",
             f"Baseline `{run['baseline']}`; {compare.rounds_text(run)} in {run['seconds']:.0f} s, stopped: {run['stopped']} "
             f"(target ±{100 * run.get('target_half_width', 0.025):.1f}%); {run.get('threads', '?')} thread(s) each; "
             f"{peak_text}; timing: {timing}; run of {run['created']} (`{run['source']}`). {floor_text}"
             + (f" A row is equivalent where its interval lies within 1 ± {run['epsilon']:.3f} (two one-sided tests); "
                "undecided where it is neither resolved nor equivalent." if run.get("epsilon") is not None else "")
             + (f" {state}." if state else ""), ""]
    header = (["framework", "mode", "version", "ratio to baseline [95% CI]", "vs baseline", "vs next faster row",
               "median step [95% CI]"] + (["latency (synchronised step)"] if device else [])
              + ["GFLOP/s", "fraction of peak [95% CI]", "first step (compile)", "memory held (x analytic minimum)", "verified",
                 "flags"])
    cells = []
    for row in run["rows"]:
        if row.get("median_step_s") is None:
            cells.append([row["framework"], row["mode"], row.get("version") or "-", "not timed"] + ["-"] * (len(header) - 6)
                         + [f"{'**no**' if not row.get('verified') else 'yes'}: {row.get('not_timed') or ''}", _flags(row)])
            continue
        versus = row.get("vs_next_faster")
        versus_text = "-" if not versus else (f"{compare.number_text(versus.get('ratio'))} vs {versus['label']} "
                                              f"({compare.verdict_text(versus)})")
        baseline_text = compare.verdict_text(row["vs_baseline"]) if row.get("vs_baseline") else "baseline"
        record = verification.get((row["framework"], row["mode"], run["device"], run["dtype"]))
        checked = "yes, on the timed spec and batches" + (f"; `bnbench verify` {record['status']} "
                                                          f"({record.get('passed')}/{record.get('checked')})" if record else "")
        step = f"{format_seconds(row['median_step_s'])} [{format_seconds(row['step_ci_low'])}, {format_seconds(row['step_ci_high'])}]"
        fraction = interval(row.get("fraction_of_peak"), row.get("fraction_ci_low"), row.get("fraction_ci_high"), ".2g")
        wide = "" if row.get("converged") is not False else " (wide: ±{:.1f}%)".format(100 * row.get("half_width", 0))
        latency = [format_seconds(row.get("latency_s"))] if device else []
        cells.append([row["framework"], row["mode"], row.get("version") or "-",
                      f"{interval(row['ratio'], row['ci_low'], row['ci_high'])}{wide}", baseline_text, versus_text, step,
                      *latency, number(row.get("gflops")), fraction, format_seconds(row.get("first_step_s")),
                      compare.memory_text(row), checked,
                      _flags(row) + tuning_log_link(results, run["machine_id"], row["framework"])])
    lines += tables.markdown(header, cells)
    unconverged = run.get("unconverged") or []
    if unconverged:
        lines += ["", "Rows whose interval was still wider than the target when the budget ended: "
                  + "; ".join(compare.unconverged_text(entry) for entry in unconverged) + "."]
    return lines + [""]


def plot_comparison(runs: List[Dict[str, object]], path: str) -> bool:
    """Ratios to the baseline with their 95% intervals, one panel per size, rows sorted; every
    framework and mode keeps one colour and marker pair across panels, and no two share both."""
    import matplotlib.ticker

    plt = pyplot()

    runs = [run for run in runs if any(row.get("ratio") is not None for row in run["rows"])]
    if not runs:
        return False
    labels = sorted({row["label"] for run in runs for row in run["rows"] if row.get("ratio") is not None})
    style = styles_for(labels)
    height = max(len([r for r in run["rows"] if r.get("ratio") is not None]) for run in runs)
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs) + 1.0, 0.38 * height + 1.9), dpi=100, squeeze=False)
    for ax, run in zip(axes[0], runs):
        rows = sorted([r for r in run["rows"] if r.get("ratio") is not None], key=lambda r: r["ratio"], reverse=True)
        for y, row in enumerate(rows):
            colour, marker = style[row["label"]]
            ax.errorbar(row["ratio"], y, xerr=[[row["ratio"] - row["ci_low"]], [row["ci_high"] - row["ratio"]]],
                        fmt=marker, color=colour, capsize=3, markersize=6)
        ax.axvline(1.0, color="grey", linewidth=1, linestyle="--")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_yticks(range(len(rows)), [row["label"] for row in rows], fontsize=8)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_xlabel(f"step time / {run['baseline']} (log; <1 faster)")
        ax.set_title(f"{run['size']} (m={run.get('m', '?')}), {run['rounds']} rounds", fontsize=10)
        ax.grid(True, axis="x", which="both", alpha=0.3)
    first = runs[0]
    fig.suptitle(f"Paired step-time ratios with 95% intervals: {first['device']}, {first['dtype']}, {first['machine_id']}",
                 fontsize=10)
    finish(fig, path)
    return True


def comparison_sections(results: str) -> Tuple[List[str], List[str], List[str], List[Dict[str, object]]]:
    """(markdown lines, plots, problems, tidy rows) of every machine's paired comparisons."""

    runs, problems = load_comparisons(results)
    lines, plots, tidy = [], [], []
    if not runs:
        return lines, plots, problems, tidy
    lines += ["## Paired comparisons (`bnbench compare`)", "",
              "Every framework of a table was timed in the same run, in interleaved rounds: one short burst each per round, "
              "in an order shuffled per round, so that all of them sample the same phase of the machine. A ratio is "
              "taken within each round (burst median over the baseline's burst median); the table gives its median over "
              "rounds with a bootstrap 95% interval. A difference is **resolved** when its interval excludes 1 "
              "(*vs next faster row*: the paired ratio to the row above). The fraction of peak divides each round's "
              "FLOP/s by the matmul peak measured in the same round. First steps (compilation) ran before the rounds. "
              "Each participant was checked against the NumPy reference on the spec and batches it was timed on "
              "before any round; one that failed was not timed.", ""]
    for machine_id in sorted({run["machine_id"] for run in runs}):
        mine = [run for run in runs if run["machine_id"] == machine_id]
        info = mine[-1]["machine"]
        lines += [f"### Machine `{machine_id}`", "",
                  f"{machines_module.describe(info)}; host name `{info.get('hostname')}` (not part of its identity).", ""]
        records = load_verification(results, machine_id)
        verification = {(f, m, d, t): row for (_, f, m, d, t), row in records.items()}
        for device, dtype in sorted({(run["device"], run["dtype"]) for run in mine}):
            group = [run for run in mine if run["device"] == device and run["dtype"] == dtype]
            plot = os.path.join("plots", f"compare-{machine_id}-{device}-{dtype}.png")
            if plot_comparison(group, os.path.join(results, plot)):
                plots.append(plot)
                lines += [f"![paired ratios, {device}, {dtype}, {machine_id}]({plot})", ""]
            for run in group:
                lines += comparison_table(run, verification, results)
                tidy += [dict({key: run.get(key) for key in ("device", "dtype", "size", "baseline", "created", "rounds")},
                              machine=machine_id, source=run["source"],
                              **{key: row.get(key) for key in COMPARE_COLUMNS if key in row}) for row in run["rows"]]
        if records:
            lines += verification_section(records, machine_id)
    return lines, plots, problems, tidy
