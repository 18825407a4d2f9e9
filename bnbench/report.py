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

from bnbench.paired import format_seconds
from bnbench import conventions, machine as machines_module, tunelog
from bnbench.machine import slug
from bnbench.reference.io import atomic_write_bytes, atomic_write_text

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
        machine = machine_key(data["params"])
        group = (data.get("env_vars") or {}).get("BNBENCH_ENV", data["env_name"])
        base = {"machine": machine, "env_group": group, "group": group, "environment": data["env_name"], "commit": data["commit_hash"][:8],
                "date": int(data["date"]), "source": os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))}
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


def machine_key(params: Dict[str, object]) -> str:
    """A machine is its hardware: asv's machine name with the CPU, cores and memory that asv
    recorded in the result file, so that two machines sharing a host name never share a table."""
    name = str(params["machine"])
    if not params.get("cpu"):
        return name
    try:
        memory = f", {int(params['ram']) / 2 ** 30:.0f} GiB"
    except (KeyError, TypeError, ValueError):
        memory = ""
    return f"{name} ({params['cpu']}, {params.get('num_cpu', '?')} cores{memory})"


def file_name_part(key: str) -> str:
    return key if key.replace("-", "").replace("_", "").isalnum() else slug(key)


def load(results: str, read: Optional[List[str]] = None):
    """(tidy DataFrame of the newest result file per machine and group, machines, problems).
    ``read`` collects the result files that were read (as machine-folder/file)."""
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
                folder_info = json.load(handle)
        except (OSError, ValueError) as error:
            problems.append(f"{os.path.relpath(machine_dir, results)}: not readable ({error})")
            folder_info = {}
        for path in sorted(glob.glob(os.path.join(folder, "*-*.json"))):
            if os.path.basename(path) in ("run-info.json",):
                continue
            try:
                found = read_result_file(path, units, param_names)
            except ReportError as error:
                problems.append(f"{os.path.relpath(path, results)}: {error}; skipped")
                continue
            rows.extend(found)
            if read is not None:
                read.append(os.path.join(os.path.basename(folder), os.path.basename(path)))
            for key in {row["machine"] for row in found}:
                # the hardware asv recorded in the result file itself, not the folder's latest
                params = (_read_json(path) or {}).get("params", {})
                machines.setdefault(key, dict(params if params.get("cpu") else folder_info, folder=os.path.basename(folder)))
        if not any(info.get("folder") == os.path.basename(folder) for info in machines.values()):
            machines[os.path.basename(folder)] = dict(folder_info, folder=os.path.basename(folder))
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
# Plot styles: a colour and a marker per series; the first 8 series differ in colour, and no two of
# the 80 pairs share both.
_STYLES = [(colour, marker) for marker in "osD^v<>ph*" for colour in
           ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")]
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
            lines += [f"### {machine}: {dtype}, `{size}` (m={SIZES_M.get(size, '?')})", "",
                      "Each row is its own asv process and run (named in *run*); rows are not paired in time, so no "
                      "ratio is taken between them: the paired comparisons above rank frameworks.", "",
                      "| framework | mode | device | version | step (median, IQR) | run | GFLOP/s | "
                      "of peak | first step | peak memory | verified |",
                      "|---|---|---|---|---|---|---|---|---|---|---|"]
            for _, row in subset.sort_values(["value", "framework", "mode", "device"], kind="mergesort").iterrows():
                key = (row.framework, row["mode"], row.device, dtype, size)
                gflops = _pick(data, "track_gflops", *key)
                peak = _pick(data, "track_fraction_of_peak", *key)
                first = _pick(data, FIRST_STEP[row.benchmark], *key)
                memory = _pick(data, "peakmem_train_step", *key)
                record = verification_row(verification, row.group, row.framework, row["mode"], row.device, dtype)
                version = (record or {}).get("version") or "-"
                spread = (f" ({format_seconds(row.q25)}–{format_seconds(row.q75)})" if row.q25 is not None and row.q75 is not None
                          and row.q25 == row.q25 else "")
                entry = {
                    "framework": row.framework, "mode": row["mode"], "device": row.device, "version": version,
                    "median": row.value, "q25": row.q25, "q75": row.q75, "run": _run_label(row),
                    "gflops": None if gflops is None else gflops.value,
                    "fraction_of_peak": None if peak is None else peak.value,
                    "first_step": None if first is None else first.value,
                    "peak_memory_mb": None if memory is None else memory.value / 2 ** 20,
                    "verified": verification_label(verification, row.group, row.framework, row["mode"], row.device, dtype),
                    "dtype": dtype, "size": size,
                }
                table_rows.append(entry)
                memory_text = "-" if entry["peak_memory_mb"] is None else f"{entry['peak_memory_mb']:.0f} MB"
                lines.append(f"| {row.framework} | {row['mode']} | {row.device} | {version} | {format_seconds(row.value)}{spread} | "
                             f"{entry['run']} | {_number(entry['gflops'])}{_other_run(gflops, row)} | "
                             f"{_number(entry['fraction_of_peak'], 2)}{_other_run(peak, row)} | "
                             f"{format_seconds(entry['first_step'])}{_other_run(first, row)} | {memory_text}{_other_run(memory, row)} | "
                             f"{entry['verified']} |")
            lines.append("")
    return lines, table_rows


def _run_label(row) -> str:
    import datetime

    when = datetime.datetime.fromtimestamp(int(row.date) / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    return f"{row.commit} {when}"


def _other_run(value, row) -> str:
    """Where a derived value comes from another run than the row's step time, it says which."""
    if value is None or (value.commit == row.commit and value.date == row.date):
        return ""
    return f" (run {_run_label(value)})"


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
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=100)
    for index, ((framework, mode), rows) in enumerate(data.groupby(["framework", "mode"], sort=True)):
        rows = rows.assign(m=rows["size"].map(SIZES_M)).sort_values("m")
        colour, marker = _STYLES[index % len(_STYLES)]       # no two series share both colour and marker
        ax.plot(rows.m, rows.value * 1e3, marker=marker, color=colour, label=f"{framework} ({mode})")
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


    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})   # no version stamp: deterministic
    atomic_write_bytes(path, buffer.getvalue())


LECTURE_TITLES = {"search": "Random against grid search at equal budgets", "scale": "Sampling on the right scale",
                  "batchnorm": "Batch norm on and off (learning rates, input shift, regularisation, hardmax)",
                  "test-time": "Test-time statistics: running averages against the population",
                  "frameworks": "Choosing a framework by the lecture's criteria"}


def lecture_section(results: str) -> List[str]:
    """Links to the lecture studies (results/lecture/NAME.md, `bnbench study NAME`, `make lecture`)."""
    folder = os.path.join(results, "lecture")
    found = [name for name in LECTURE_TITLES if os.path.exists(os.path.join(folder, f"{name}.md"))]
    if not found:
        return []
    lines = ["## The lecture's claims, measured", "",
             "Each study runs on the digits set with the suite's verified reference model (`bnbench study NAME`; all of "
             "them: `make lecture`) and says what it found, including where a claim does not show here.", ""]
    for name in found:
        data = _read_json(os.path.join(folder, f"{name}.json")) or {}
        took = f" ({data['seconds']} s, seed {data.get('seed', 0)})" if "seconds" in data else ""
        lines.append(f"- [{LECTURE_TITLES[name]}](lecture/{name}.md){took}")
    return lines + [""]


def conventions_section(results: str) -> List[str]:
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


# --------------------------------------------------------------------------- paired comparisons
COMPARE_COLUMNS = ["machine", "device", "dtype", "size", "baseline", "created", "rounds", "framework", "mode", "label",
                   "version", "ratio", "ci_low", "ci_high", "resolved", "median_step_s", "step_ci_low", "step_ci_high",
                   "fraction_of_peak", "fraction_ci_low", "fraction_ci_high", "first_step_s", "verified", "source"]


def load_comparisons(results: str) -> Tuple[List[Dict[str, object]], List[str]]:
    """Every ``bnbench compare`` result under results/compare/<machine>/, one run per file.
    A file holds one run on one machine: its values are never combined with another file's."""
    runs, problems = [], []
    for path in sorted(glob.glob(os.path.join(results, "compare", "*", "*.json"))):
        data = _read_json(path)
        if not isinstance(data, dict) or data.get("tool") != "bnbench compare" or not isinstance(data.get("rows"), list):
            problems.append(f"{os.path.relpath(path, results)}: not a `bnbench compare` result; skipped")
            continue
        data["source"] = os.path.relpath(path, results)
        runs.append(data)
    runs.sort(key=lambda r: (r["machine_id"], r["device"], r["dtype"], SIZE_ORDER.index(r["size"]) if r["size"] in SIZE_ORDER else 9))
    return runs, problems


def _interval(value, low, high, style: str = ".3f") -> str:
    if value is None:
        return "-"
    return f"{value:{style}} [{low:{style}}, {high:{style}}]"


def _tuning_log_link(results: str, machine_id: str, framework: str) -> str:
    path = tunelog.path_for(results, machine_id, framework, "md")
    return f" ([tuning log]({os.path.relpath(path, results)}))" if os.path.exists(path) else ""


def comparison_table(run: Dict[str, object], verification, results: str = "results") -> List[str]:
    peak = run.get("peak") or {}
    peak_text = (f"matmul peak {peak['gflops']:.4g} GFLOP/s ({peak.get('flags')})" if "gflops" in peak
                 else f"no matmul peak ({peak.get('problem', 'not measured')})")
    lines = [f"#### {run['device']}, {run['dtype']}, `{run['size']}` (m={run.get('m', SIZES_M.get(run['size'], '?'))})", "",
             f"Baseline `{run['baseline']}`; {run['rounds']} rounds in {run['seconds']:.0f} s, stopped: {run['stopped']} "
             f"(target ±{100 * run.get('target_half_width', 0.025):.1f}%); {run.get('threads', '?')} thread(s) each; "
             f"{peak_text}; run of {run['created']} (`{run['source']}`).", "",
             "| framework | mode | version | ratio to baseline [95% CI] | vs baseline | vs next faster row | median step [95% CI] | "
             "GFLOP/s | fraction of peak [95% CI] | first step (compile) | verified | flags |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in run["rows"]:
        if row.get("median_step_s") is None:
            lines.append(f"| {row['framework']} | {row['mode']} | {row.get('version') or '-'} | not timed | - | - | - | - | - | - | "
                         f"{'**no**' if not row.get('verified') else 'yes'}: {row.get('not_timed', '')} | {row.get('flags', '')} |")
            continue
        versus = row.get("versus_next_faster")
        versus_text = "-" if not versus else (f"{versus['ratio']:.3f} vs {versus['label']} "
                                              f"({'resolved' if versus['resolved'] else 'not resolved'})")
        baseline_text = "baseline" if row.get("resolved") is None else ("resolved" if row["resolved"] else "not resolved")
        record = verification.get((row["framework"], row["mode"], run["device"], run["dtype"]))
        checked = "yes, on the timed spec and batches" + (f"; `bnbench verify` {record['status']} "
                                                          f"({record.get('passed')}/{record.get('checked')})" if record else "")
        step = f"{format_seconds(row['median_step_s'])} [{format_seconds(row['step_ci_low'])}, {format_seconds(row['step_ci_high'])}]"
        fraction = _interval(row.get("fraction_of_peak"), row.get("fraction_ci_low"), row.get("fraction_ci_high"), ".2g")
        lines.append(f"| {row['framework']} | {row['mode']} | {row.get('version') or '-'} | "
                     f"{_interval(row['ratio'], row['ci_low'], row['ci_high'])} | {baseline_text} | {versus_text} | {step} | "
                     f"{_number(row.get('gflops'))} | {fraction} | {format_seconds(row.get('first_step_s'))} | {checked} | "
                     f"{row.get('flags', '')}{_tuning_log_link(results, run['machine_id'], row['framework'])} |")
    return lines + [""]




def plot_comparison(runs: List[Dict[str, object]], path: str) -> bool:
    """Ratios to the baseline with their 95% intervals, one panel per size, rows sorted; every
    framework and mode keeps one colour and marker pair across panels, and no two share both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    runs = [run for run in runs if any(row.get("ratio") is not None for row in run["rows"])]
    if not runs:
        return False
    labels = sorted({row["label"] for run in runs for row in run["rows"] if row.get("ratio") is not None})
    style = {label: _STYLES[i % len(_STYLES)] for i, label in enumerate(labels)}
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
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
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


def tuning_logs_section(results: str) -> List[str]:
    """One row per committed tuning log (results/tuning-logs/<machine>/<framework>.md): the kept
    form, how many alternatives were timed against it, the fastest of them at each size, its
    fraction of peak at large beside its own matmul's, and the log's verdict."""
    logs = tunelog.load_logs(results)
    if not logs:
        return []
    tunelog.render_all(results, logs)
    lines = ["## Tuning logs (`bnbench tunelog`)", "",
             "Each framework's forms (its other modes, its own alternatives, the allocator's) timed against the form "
             "the tables use, in paired rounds at tiny and large; each form checked against the reference first. "
             "A ratio below 1 is faster than the kept form.", "",
             "| machine | framework | kept form | forms timed | fastest other at tiny | fastest other at large | "
             "fraction of peak at large | own matmul / peak | of own matmul | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for log in logs:
        framework, kept = log["framework"], log["kept"]

        def fastest(size: str) -> str:
            rows = [row for row in log["compare"].get(size, {}).get("rows", [])
                    if row.get("ratio") is not None and row["label"] != f"{framework}:{kept}"]
            if not rows:
                return "-"
            best = min(rows, key=lambda row: row["ratio"])
            return f"{best['label'].split(':', 1)[1]} {_interval(best['ratio'], best['ci_low'], best['ci_high'])}"

        verdict = tunelog.verdict(log)
        large = log["compare"].get("large", {})
        kept_row = next((row for row in large.get("rows", []) if row["label"] == f"{framework}:{kept}"), {})
        ceiling = next((c for c in large.get("ceilings", []) if "gflops" in c), {})
        timed = sum(1 for row in log["compare"][log["sizes"][0]]["rows"] if row.get("ratio") is not None) - 1
        link = f"[{framework}]({log['source'][:-len('json')]}md)"
        lines.append(f"| {log['machine_id']} | {link} | `{kept}` | {timed} of {len(log['forms']) - 1} | {fastest('tiny')} | "
                     f"{fastest('large')} | {_number(kept_row.get('fraction_of_peak'), 2)} | "
                     f"{_number(ceiling.get('fraction_of_peak'), 2)} | {_number(kept_row.get('of_own_matmul'), 2)} | "
                     f"{'kept' if verdict['kept_stands'] else 'adopt ' + ', '.join(verdict['adopt'])} |")
    return lines + [""]


def prune(results: str, read: List[str], frame) -> List[str]:
    """Remove the asv result files none of whose measurements the tables use any more (every one
    was replaced by a newer run of the same machine and environment group); returns them."""
    used = set(frame["source"]) if len(frame) else set()
    removed = []
    for source in read:
        if source not in used:
            os.remove(os.path.join(results, source))
            removed.append(source)
    return removed


def build(results: str = "results", *, prune_old_runs: bool = True) -> Dict[str, object]:
    """Write results/README.md, results/results.csv and results/plots/*.png; returns a summary."""

    if not os.path.isdir(results):
        raise ReportError(f"results folder {results!r} does not exist (run the benchmarks first: make bench)")
    read: List[str] = []
    frame, machines, problems = load(results, read)
    removed = prune(results, read, frame) if prune_old_runs else []
    lines = ["# Results", "",
             "Generated by `bnbench report` from `bnbench compare`'s paired comparisons (results/compare/) and asv's "
             "result files (do not edit by hand). Every timing row says "
             "whether `bnbench verify` passed for that framework, mode, device and dtype in the same environment; "
             "unverified rows are marked. Data for analysis: [compare.csv](compare.csv) (paired comparisons) and "
             "[results.csv](results.csv) (asv, one row per measurement). "
             "Interactive asv pages: `asv publish`, then `.asv/html/index.html` (not committed).", ""]
    compare_lines, plots, compare_problems, compare_rows = comparison_sections(results)
    problems = problems + compare_problems
    if problems:
        lines += ["**Skipped files:**", ""] + [f"- {problem}" for problem in problems] + [""]
    lines += compare_lines
    lines += tuning_logs_section(results)
    if machines:
        lines += ["## asv timings (history across commits)", "",
                  "Each framework timed by asv in a process of its own; rows of one table come from separate processes "
                  "and are not paired in time (the paired comparisons above are).", ""]
    all_rows = []
    for machine in sorted(machines):
        folder = machines[machine].get("folder", machine)
        verification = load_verification(results, folder)
        lines += machine_header(machine, machines[machine], frame)
        lines += how_measured(machine, frame, _read_json(os.path.join(results, folder, "run-info.json")))
        data = frame[frame.machine == machine]
        for dtype in sorted(data[data.benchmark.isin(STEP_BENCHMARKS)].dtype.unique()):
            step_plot = os.path.join("plots", f"{file_name_part(machine)}-step-time-{dtype}.png")
            peak_plot = os.path.join("plots", f"{file_name_part(machine)}-fraction-of-peak-large-{dtype}.png")
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
            lines += ["Digits test accuracy after 8 epochs, same hyperparameters (a check that the same model was "
                      "timed): " + ", ".join(f"{r.framework} ({r['mode']}) {r.value:.4f}"
                                             for _, r in accuracy.iterrows()), ""]
        throughput = data[data.benchmark == "track_models_per_second"].sort_values(["framework", "mode"], kind="mergesort")
        if len(throughput):
            lines += ["Search throughput (`bench_tune.TuneThroughput` as defined at the run's commit; until 2026-11-26 "
                      "16 models of one shape, 2 epochs each, compiling included; since, 32 models, 10 epochs, steady "
                      "state, the warm-up reported apart): " + ", ".join(f"{r.framework} {r['mode']} {r.value:.3g} models/s"
                                                          for _, r in throughput.iterrows()), ""]
        lines += verification_section(verification, machine)
    lines += lecture_section(results)
    lines += frameworks_section(results)
    lines += conventions_section(results)
    atomic_write_text(os.path.join(results, "README.md"), "\n".join(lines).rstrip() + "\n")
    atomic_write_text(os.path.join(results, "results.csv"), frame.to_csv(index=False, lineterminator="\n"))
    if compare_rows:
        import pandas as pd

        atomic_write_text(os.path.join(results, "compare.csv"),
                          pd.DataFrame(compare_rows, columns=["machine", "device", "dtype", "size", "baseline", "created", "rounds"]
                                       + [c for c in COMPARE_COLUMNS if c not in ("machine", "device", "dtype", "size", "baseline",
                                                                                   "created", "rounds")]).to_csv(index=False, lineterminator="\n"))
    return {"machines": sorted(machines), "rows": all_rows, "problems": problems, "plots": plots,
            "measurements": len(frame), "comparisons": compare_rows, "removed": removed,
            "compare_machines": sorted({row["machine"] for row in compare_rows})}
