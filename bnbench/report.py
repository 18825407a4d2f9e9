"""``bnbench report``: asv's result files -> published tables, a tidy CSV and plots.

Reads every machine's results under ``results/`` (asv's layout: ``<machine>/machine.json`` and
``<machine>/<commit>-<environment>.json``), the verification records ``bnbench verify`` wrote
for each asv environment (``results/verify/<machine>/<group>.json``), the run settings
``make bench`` recorded (``results/<machine>/run-info.json``) and the measured conventions
(``results/conventions.json``), and writes:

- ``results/README.md``: per machine, dtype and size, one table (framework, mode, device,
  version, median step with its interquartile spread, speed relative to the fastest row and to
  NumPy, GFLOP/s, fraction of peak, first-step latency, peak memory, verified), how it was
  measured, the conventions and the verification summary;
- ``results/results.csv``: one row per measurement;
- ``results/plots/*.png``: step time against batch size (log-log) and fraction of peak at the
  large size.

Each measurement comes from the newest run of its machine and environment group that made it;
machines never overwrite each other. A malformed file is named in the report and skipped. The output is deterministic
(same inputs, byte-identical files) and written atomically.
"""
from __future__ import annotations

import ast
import glob
import json
import math
import os
from typing import Dict, List, Optional, Tuple

SIZES_M = {"tiny": 32, "medium": 256, "large": 1024}
SIZE_ORDER = ["tiny", "medium", "large"]
TRAIN = "bench_train.TrainStep"
DERIVED = "bench_train.TrainStepDerived"
COLUMNS = ["machine", "env_group", "group", "environment", "commit", "date", "benchmark", "framework", "mode", "device", "dtype",
           "size", "value", "unit", "q25", "q75", "ci99_low", "ci99_high", "repeat", "source"]
UNITS = {"time": "seconds", "peakmem": "bytes"}


class ReportError(ValueError):
    pass


# --------------------------------------------------------------------------- loading
def _param(value: str):
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _combinations(params: List[List[str]]):
    import itertools

    return list(itertools.product(*params))


WORKER_MODE = "best (worker-timed)"
WORKER_GROUP = "workers"
STEP_BENCHMARKS = ("time_train_step", "track_worker_step_seconds")
FIRST_STEP = {"time_train_step": "track_first_step_seconds", "track_worker_step_seconds": "track_worker_first_step_seconds"}


def read_result_file(path: str, units: Dict[str, str], param_names: Optional[Dict[str, List[str]]] = None) -> List[Dict[str, object]]:
    """The measurements of one asv result file as tidy rows (NaN = skipped and null = failed are
    dropped). Raises ReportError (with the reason) when the file is not an asv result file.
    ``param_names`` (from benchmarks.json) names each benchmark's parameters; rows of the
    worker-timed benchmarks (parameters framework, dtype, size) get the mode WORKER_MODE and the
    verification group WORKER_GROUP."""
    param_names = param_names or {}
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise ReportError(f"not readable as JSON ({type(error).__name__}: {error})") from None
    try:
        if data.get("version") != 2:
            raise ReportError(f"asv result format version {data.get('version')!r}, expected 2")
        columns = data["result_columns"]
        machine = data["params"]["machine"]
        group = (data.get("env_vars") or {}).get("BNBENCH_ENV", data["env_name"])
        base = {"machine": machine, "env_group": group, "group": group, "environment": data["env_name"], "commit": data["commit_hash"][:8],
                "date": int(data["date"]), "source": os.path.basename(path)}
        rows = []
        for name, values in sorted(data["results"].items()):
            record = dict(zip(columns, values))
            params = record.get("params") or []
            combos = _combinations([[_param(p) for p in options] for options in params]) if params else [()]
            results = record["result"]
            if not isinstance(results, list):
                results = [results]
            if len(results) != len(combos):
                raise ReportError(f"{name}: {len(results)} results for {len(combos)} parameter combinations")
            stat = lambda key, i: (record.get(key) or [None] * len(combos))[i]  # noqa: E731
            benchmark = name.split(".")[-1]
            kind = benchmark.split("_")[0]
            names = param_names.get(name) or ["impl", "device", "dtype", "size"][:len(combos[0]) if combos else 0]
            for i, combo in enumerate(combos):
                value = results[i]
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                values = dict(zip(names, combo))
                if "impl" in values:
                    framework, _, mode = str(values["impl"]).partition(":")
                    row_group = base["group"]
                elif benchmark.startswith("track_worker"):   # timed inside the framework's own worker process
                    framework, mode, row_group = str(values.get("framework", "")), WORKER_MODE, WORKER_GROUP
                else:      # e.g. search throughput: (framework, style)
                    framework, mode, row_group = str(values.get("framework", "")), str(values.get("style", "")), base["group"]
                rows.append(dict(base, group=row_group, benchmark=benchmark, framework=framework, mode=mode,
                                 device=values.get("device", "cpu" if benchmark.startswith("track_worker") else ""),
                                 dtype=values.get("dtype", ""), size=values.get("size", ""), value=float(value),
                                 unit=units.get(name, UNITS.get(kind, "")),
                                 q25=stat("stats_q_25", i), q75=stat("stats_q_75", i), ci99_low=stat("stats_ci_99_a", i),
                                 ci99_high=stat("stats_ci_99_b", i), repeat=stat("stats_repeat", i)))
        return rows
    except ReportError:
        raise
    except (KeyError, TypeError, IndexError, AttributeError) as error:
        raise ReportError(f"not an asv result file ({type(error).__name__}: {error})") from None


def load(results: str):
    """(tidy DataFrame of the newest result file per machine and group, machines, problems)."""
    import pandas as pd

    units: Dict[str, str] = {}
    param_names: Dict[str, List[str]] = {}
    try:
        with open(os.path.join(results, "benchmarks.json")) as handle:
            described = {k: v for k, v in json.load(handle).items() if isinstance(v, dict)}
        units = {k: v.get("unit", "") for k, v in described.items()}
        param_names = {k: list(v.get("param_names", [])) for k, v in described.items()}
    except (OSError, ValueError):
        pass
    rows, problems, machines = [], [], {}
    for machine_dir in sorted(glob.glob(os.path.join(results, "*", "machine.json"))):
        folder = os.path.dirname(machine_dir)
        try:
            with open(machine_dir) as handle:
                machines[os.path.basename(folder)] = json.load(handle)
        except (OSError, ValueError) as error:
            problems.append(f"{os.path.relpath(machine_dir, results)}: not readable ({error})")
            machines[os.path.basename(folder)] = {}
        for path in sorted(glob.glob(os.path.join(folder, "*-*.json"))):
            if os.path.basename(path) in ("run-info.json",):
                continue
            try:
                rows.extend(read_result_file(path, units, param_names))
            except ReportError as error:
                problems.append(f"{os.path.relpath(path, results)}: {error}; skipped")
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if len(frame):
        # each measurement from the newest run that made it, per machine and environment group
        # (BNBENCH_ENV: an environment whose requirements changed has a new asv name but replaces
        # the old one; a partial run updates only what it measured)
        key = ["machine", "env_group", "benchmark", "framework", "mode", "device", "dtype", "size"]
        newest = frame.groupby(key, dropna=False)["date"].transform("max")
        frame = frame[frame["date"] == newest]
        frame = frame.sort_values(["machine", "group", "benchmark", "framework", "mode", "device", "dtype", "size"],
                                  kind="mergesort").reset_index(drop=True)
    return frame, machines, problems


def load_verification(results: str, machine: str) -> Dict[Tuple[str, str, str, str, str], Dict[str, object]]:
    """(group, framework, mode, device, dtype) -> the verify row, from every JSON of the machine."""
    out = {}
    for path in sorted(glob.glob(os.path.join(results, "verify", machine, "*.json"))):
        group = os.path.splitext(os.path.basename(path))[0]
        try:
            with open(path) as handle:
                data = json.load(handle)
            for row in data["rows"]:
                out[(group, row["framework"], row["mode"], row["device"], row["dtype"])] = row
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def _read_json(path: str) -> Optional[dict]:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- formatting
def _time(seconds: Optional[float]) -> str:
    if seconds is None or seconds != seconds:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def _number(value: Optional[float], digits: int = 3) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:.{digits}g}"


def _pick(frame, benchmark: str, framework: str, mode: str, device: str, dtype: str, size: str):
    rows = frame[(frame.benchmark == benchmark) & (frame.framework == framework) & (frame["mode"] == mode)
                 & (frame.device == device) & (frame.dtype == dtype) & (frame["size"] == size)]
    return None if rows.empty else rows.iloc[0]


def verification_row(verification, group: str, framework: str, mode: str, device: str, dtype: str):
    row = verification.get((group, framework, mode, device, dtype))
    if row is None and group == WORKER_GROUP:     # worker-timed rows: the framework's best mode
        row = next((r for (g, f, _, d, t), r in sorted(verification.items(), key=lambda item: item[0])
                    if (g, f, d, t) == (group, framework, device, dtype)), None)
    return row


def verification_label(verification, group: str, framework: str, mode: str, device: str, dtype: str) -> str:
    row = verification_row(verification, group, framework, mode, device, dtype)
    if row is None:
        return "**not verified** (no record)"
    status = row.get("status")
    when = (row.get("checked_at") or "")[:10]
    if status == "pass":
        return f"yes ({row.get('passed')}/{row.get('checked')} checks, {when})"
    if status == "FAIL":
        return f"**FAILED** ({when})"
    return f"**not verified** ({status})"


def machine_tables(frame, machine: str, verification) -> Tuple[List[str], List[Dict[str, object]]]:
    """Markdown lines of one machine's step-time tables, and the rows behind them (for tests)."""
    lines, table_rows = [], []
    data = frame[frame.machine == machine]
    steps = data[data.benchmark.isin(STEP_BENCHMARKS)]
    for dtype in sorted(steps.dtype.unique()):
        for size in [s for s in SIZE_ORDER if s in set(steps[steps.dtype == dtype]["size"])]:
            subset = steps[(steps.dtype == dtype) & (steps["size"] == size)]
            fastest = subset.value.min()
            numpy_row = subset[(subset.framework == "numpy") & (subset.device == "cpu")]
            numpy_time = numpy_row.value.iloc[0] if len(numpy_row) else None
            lines += [f"### {machine}: {dtype}, `{size}` (m={SIZES_M.get(size, '?')})", "",
                      "| framework | mode | device | version | step (median, IQR) | vs fastest | vs numpy | GFLOP/s | "
                      "of peak | first step | peak memory | verified |",
                      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
            for _, row in subset.sort_values(["value", "framework", "mode", "device"], kind="mergesort").iterrows():
                key = (row.framework, row["mode"], row.device, dtype, size)
                gflops = _pick(data, "track_gflops", *key)
                peak = _pick(data, "track_fraction_of_peak", *key)
                first = _pick(data, FIRST_STEP[row.benchmark], *key)
                memory = _pick(data, "peakmem_train_step", *key)
                record = verification_row(verification, row.group, row.framework, row["mode"], row.device, dtype)
                version = (record or {}).get("version") or "-"
                spread = (f" ({_time(row.q25)}–{_time(row.q75)})" if row.q25 is not None and row.q75 is not None
                          and row.q25 == row.q25 else "")
                entry = {
                    "framework": row.framework, "mode": row["mode"], "device": row.device, "version": version,
                    "median": row.value, "q25": row.q25, "q75": row.q75, "vs_fastest": row.value / fastest,
                    "vs_numpy": (numpy_time / row.value) if numpy_time else None,
                    "gflops": None if gflops is None else gflops.value,
                    "fraction_of_peak": None if peak is None else peak.value,
                    "first_step": None if first is None else first.value,
                    "peak_memory_mb": None if memory is None else memory.value / 2 ** 20,
                    "verified": verification_label(verification, row.group, row.framework, row["mode"], row.device, dtype),
                    "dtype": dtype, "size": size,
                }
                table_rows.append(entry)
                vs_fastest = "fastest" if entry["vs_fastest"] == 1 else f"{entry['vs_fastest']:.2f}x slower"
                vs_numpy = "-" if entry["vs_numpy"] is None else f"{entry['vs_numpy']:.2f}x"
                memory_text = "-" if entry["peak_memory_mb"] is None else f"{entry['peak_memory_mb']:.0f} MB"
                lines.append(f"| {row.framework} | {row['mode']} | {row.device} | {version} | {_time(row.value)}{spread} | "
                             f"{vs_fastest} | {vs_numpy} | {_number(entry['gflops'])} | "
                             f"{_number(entry['fraction_of_peak'], 2)} | {_time(entry['first_step'])} | {memory_text} | "
                             f"{entry['verified']} |")
            lines.append("")
    return lines, table_rows


def machine_header(machine: str, info: Dict[str, object], frame) -> List[str]:
    ram = info.get("ram")
    try:
        ram_text = f"{int(ram) / 2 ** 30:.1f} GiB"
    except (TypeError, ValueError):
        ram_text = str(ram or "?")
    cuda_rows = frame[(frame.machine == machine) & (frame.device == "cuda")]
    gpu = "CUDA rows present" if len(cuda_rows) else "none used (no CUDA row ran)"
    return [f"## Machine `{machine}`", "",
            f"CPU {info.get('cpu', '?')}, {info.get('num_cpu', '?')} cores, {ram_text} memory, "
            f"{info.get('os', '?')} ({info.get('arch', '?')}); GPU: {gpu}.", ""]


def how_measured(machine: str, frame, run_info: Optional[dict]) -> List[str]:
    data = frame[frame.machine == machine]
    threads = sorted({int(v) for v in data[data.benchmark == "track_threads"].value})
    steps = data[data.benchmark.isin(STEP_BENCHMARKS)]
    repeats = sorted({int(r) for r in steps.repeat.dropna()}) if len(steps) else []
    commits = sorted(set(data.commit))
    parts = [f"Threads per framework: {', '.join(map(str, threads)) or 'not recorded'} (pinned, `track_threads`)",
             f"samples per step-time row: {', '.join(map(str, repeats)) or '?'} (asv repeats, rounds interleaved across environments)",
             f"commit(s) {', '.join(commits)}"]
    if run_info:
        parts.append(f"asv {run_info.get('asv_version', '?')}, grid `{run_info.get('grid', '?')}`, "
                     f"started {run_info.get('started', '?')}")
    return ["**How measured.** " + "; ".join(parts) + ". Step time is the median of asv's samples with the "
            "interquartile range beside it; the data sit on the device before timing, every step ends synchronised, "
            "and compilation is excluded (first step reported on its own). Each benchmark process also checked its "
            "adapter against the NumPy reference on the spec and batch it timed before timing (a failing one "
            "records nothing); the *verified* column is `bnbench verify` run in the same asv environment. "
            "FLOPs are counted analytically (`bnbench/flops.py`); the peak is a 2048³ NumPy matmul in the same "
            "process, and the fraction of peak is the median of 7 ratios, each of a few steps and the matmul "
            "right after them (so that both fall in the same phase of the machine). These machines alternate fast and slow phases: read no gap under ~20% from one run.", ""]


def plot_step_times(frame, machine: str, dtype: str, path: str) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = frame[(frame.machine == machine) & (frame.benchmark.isin(STEP_BENCHMARKS)) & (frame.dtype == dtype)
                 & (frame.device == "cpu")]
    if data.empty:
        return False
    import itertools

    markers = itertools.cycle("osD^v<>ph*")
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=100)
    for (framework, mode), rows in data.groupby(["framework", "mode"], sort=True):
        rows = rows.assign(m=rows["size"].map(SIZES_M)).sort_values("m")
        ax.plot(rows.m, rows.value * 1e3, marker=next(markers), label=f"{framework} ({mode})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    present = sorted(set(data["size"]), key=SIZE_ORDER.index)
    ax.set_xticks([SIZES_M[size] for size in present], [f"{SIZES_M[size]}\n({size})" for size in present])
    ax.minorticks_off()
    ax.set_xlabel("batch size m (tiny 32: widths 64; medium 256: 512; large 1024: 1024 x 3)")
    ax.set_ylabel("training step, median (ms)")
    ax.set_title(f"Training step time, {dtype}, cpu, machine {machine}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


def plot_fraction_of_peak(frame, machine: str, dtype: str, path: str) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = frame[(frame.machine == machine) & (frame.benchmark == "track_fraction_of_peak") & (frame.dtype == dtype)
                 & (frame["size"] == "large") & (frame.device == "cpu")]
    if data.empty:
        return False
    data = data.sort_values(["value", "framework", "mode"], kind="mergesort")
    labels = [f"{f} ({m})" for f, m in zip(data.framework, data["mode"])]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(data) + 1.5), dpi=100)
    ax.barh(labels, data.value * 100, color="#4c72b0")
    for y, value in enumerate(data.value):
        ax.text(value * 100 + 1, y, f"{value * 100:.0f}%", va="center", fontsize=8)
    ax.set_xlim(0, 110)
    ax.set_xlabel("achieved FLOP/s, % of the matmul peak measured beside it")
    ax.set_title(f"Fraction of peak, large, {dtype}, cpu, machine {machine}")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


def _save(fig, path: str) -> None:
    import io as _io

    from bnbench.io import atomic_write_bytes

    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})   # no version stamp: deterministic
    atomic_write_bytes(path, buffer.getvalue())


def conventions_section(results: str) -> List[str]:
    from bnbench import conventions

    data = _read_json(os.path.join(results, "conventions.json"))
    if not data:
        return ["## Conventions", "", "No `results/conventions.json` yet (`bnbench conventions --out results`).", ""]
    lines = ["## Batch-norm conventions, measured (`bnbench conventions`)", "", conventions.markdown(data.get("rows", []))]
    if data.get("not_probed"):
        lines.append("Not probed: " + "; ".join(data["not_probed"]))
    return lines + [""]


def verification_section(verification, machine: str) -> List[str]:
    if not verification:
        return [f"No `bnbench verify` record for machine `{machine}`.", ""]
    lines = [f"### Equivalence on `{machine}` (`bnbench verify` in each asv environment)", "",
             "| environment | framework | mode | device | dtype | status | checks | worst grad error | worst parameter error |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (group, framework, mode, device, dtype), row in sorted(verification.items()):
        worst = row.get("worst") or {}
        checks = f"{row.get('passed', 0)}/{row.get('checked', 0)}"
        if row.get("unsupported"):
            checks += f" (+{len(row['unsupported'])} unsupported)"
        lines.append(f"| {group} | {framework} | {mode} | {device} | {dtype} | {row.get('status')} | {checks} | "
                     f"{_number(worst.get('grad'), 2)} | {_number(worst.get('param'), 2)} |")
    return lines + [""]


def frameworks_section(results: str) -> List[str]:
    """Every framework of the lecture's list plus JAX, from `bnbench frameworks --json` as
    `make bench` saved it: version, modes, where it runs, or why it cannot run here."""
    data = _read_json(os.path.join(results, "frameworks.json"))
    if not data:
        return []
    lines = ["## Frameworks on this machine (`bnbench frameworks`)", "",
             "| framework | available | version | modes | runs in | why not |", "|---|---|---|---|---|---|"]
    for row in data:
        lines.append(f"| {row.get('name')} | {'yes' if row.get('available') else 'no'} | {row.get('version') or '-'} | "
                     f"{', '.join(row.get('modes') or []) or '-'} | {row.get('runs_in') or '-'} | {row.get('reason') or ''} |")
    return lines + [""]


def build(results: str = "results") -> Dict[str, object]:
    """Write results/README.md, results/results.csv and results/plots/*.png; returns a summary."""
    from bnbench.io import atomic_write_text

    if not os.path.isdir(results):
        raise ReportError(f"results folder {results!r} does not exist (run the benchmarks first: make bench)")
    frame, machines, problems = load(results)
    lines = ["# Results", "",
             "Generated by `bnbench report` from asv's result files (do not edit by hand). Every timing row says "
             "whether `bnbench verify` passed for that framework, mode, device and dtype in the same environment; "
             "unverified rows are marked. Data for analysis: [results.csv](results.csv) (one row per measurement). "
             "Interactive asv pages: `asv publish`, then `.asv/html/index.html` (not committed).", ""]
    if problems:
        lines += ["**Skipped files:**", ""] + [f"- {problem}" for problem in problems] + [""]
    plots, all_rows = [], []
    for machine in sorted(machines):
        verification = load_verification(results, machine)
        lines += machine_header(machine, machines[machine], frame)
        lines += how_measured(machine, frame, _read_json(os.path.join(results, machine, "run-info.json")))
        data = frame[frame.machine == machine]
        for dtype in sorted(data[data.benchmark.isin(STEP_BENCHMARKS)].dtype.unique()):
            step_plot = os.path.join("plots", f"{machine}-step-time-{dtype}.png")
            peak_plot = os.path.join("plots", f"{machine}-fraction-of-peak-large-{dtype}.png")
            links = []
            if plot_step_times(frame, machine, dtype, os.path.join(results, step_plot)):
                links.append(f"![step time against batch size, {dtype}]({step_plot})")
                plots.append(step_plot)
            if plot_fraction_of_peak(frame, machine, dtype, os.path.join(results, peak_plot)):
                links.append(f"![fraction of peak, large, {dtype}]({peak_plot})")
                plots.append(peak_plot)
            else:
                links.append(f"(no `large` {dtype} results on this machine: run `make bench GRID=full` for the "
                             f"fraction-of-peak plot)")
            lines += links + [""]
        table_lines, rows = machine_tables(frame, machine, verification)
        lines += table_lines
        all_rows += [dict(row, machine=machine) for row in rows]
        accuracy = data[data.benchmark == "track_test_accuracy_digits"]
        if len(accuracy):
            lines += [f"Digits test accuracy after 8 epochs, same hyperparameters (a check that the same model was "
                      f"timed): " + ", ".join(f"{r.framework} ({r['mode']}) {r.value:.4f}"
                                             for _, r in accuracy.iterrows()), ""]
        throughput = data[data.benchmark == "track_models_per_second"].sort_values(["framework", "mode"], kind="mergesort")
        if len(throughput):
            lines += ["Search throughput (`bench_tune`: 16 models of one shape, 2 epochs each on digits, building and "
                      "compiling included): " + ", ".join(f"{r.framework} {r['mode']} {r.value:.3g} models/s"
                                                          for _, r in throughput.iterrows()), ""]
        lines += verification_section(verification, machine)
    lines += frameworks_section(results)
    lines += conventions_section(results)
    atomic_write_text(os.path.join(results, "README.md"), "\n".join(lines).rstrip() + "\n")
    atomic_write_text(os.path.join(results, "results.csv"), frame.to_csv(index=False, lineterminator="\n"))
    return {"machines": sorted(machines), "rows": all_rows, "problems": problems, "plots": plots,
            "measurements": len(frame)}
