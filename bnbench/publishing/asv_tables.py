"""asv's result files as tidy rows, and the tables and plots of the asv history.

Reads every machine's results under ``results/asv/`` (asv's layout: ``<machine>/machine.json`` and
``<machine>/<commit>-<environment>.json``; a folder of its own, since asv takes every folder of its
results directory for a machine), the verification records ``bnbench verify`` wrote for them
(``results/verify/<machine>/<group>.json``) and the run settings ``make bench`` recorded
(``results/asv/<machine>/run-info.json``). Each measurement comes from the newest run of its machine
and environment group that made it; machines never overwrite each other; a malformed file is
named and skipped.
"""
from __future__ import annotations

import ast
import glob
import json
import math
import os
from typing import Dict, List, Optional, Tuple

from bnbench import tables
from bnbench.publishing.figures import STYLES, finish, number, pyplot
from bnbench.reference.io import read_json
from bnbench.timing.form import Form, FormError, is_label
from bnbench.timing.machine import LEGACY_NOTE, asv_legacy, asv_machine_id
from bnbench.timing.peak import size_for
from bnbench.timing.units import format_seconds
from bnbench.timing.workload import SIZE_ORDER, SIZES

SIZES_M = {size: fields["m"] for size, fields in SIZES.items()}


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
MAIN_GROUP = "main"


STEP_BENCHMARKS = ("time_train_step", "track_worker_step_seconds")


FIRST_STEP = {"time_train_step": "track_first_step_seconds", "track_worker_step_seconds": "track_worker_first_step_seconds"}


def environment_group(data: Dict[str, object]) -> str:
    """The framework group of an asv result file: an asv-built environment names it (BNBENCH_ENV);
    the environments `make test` builds run as asv's "existing" one, verified as a whole by
    `bnbench verify` (results/verify/<id>/main.json)."""
    return (data.get("env_vars") or {}).get("BNBENCH_ENV") or (MAIN_GROUP if str(data["env_name"]).startswith("existing")
                                                               else data["env_name"])


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
        machine = asv_machine_id(data["params"])
        # an asv-built environment names its framework group (BNBENCH_ENV); the environments `make test`
        # builds run as asv's "existing" one, verified as a whole by `bnbench verify` (results/verify/<id>/main.json)
        group = environment_group(data)
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
            # a benchmark moved to another class keeps its method's name: older result files use the old one
            names = (param_names.get(name) or param_names.get(benchmark)
                     or ["impl", "device", "dtype", "size"][:len(combos[0]) if combos else 0])
            for i, combo in enumerate(combos):
                value = results[i]
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                values = dict(zip(names, combo))
                if benchmark.startswith("track_worker") and "impl" in values and not is_label(values["impl"]):
                    # an older worker benchmark, parametrised by the framework alone
                    values["framework"] = values.pop("impl", values.get("framework", ""))
                if "impl" in values:
                    impl = Form.parse(str(values["impl"]))
                    framework, mode = impl.framework, impl.mode_label
                    row_group = base["group"]
                elif benchmark.startswith("track_worker"):   # timed inside the framework's own worker process
                    framework, mode, row_group = str(values.get("framework", "")), WORKER_MODE, WORKER_GROUP
                else:      # e.g. search throughput: (framework, style)
                    framework, mode, row_group = str(values.get("framework", "")), str(values.get("style", "")), base["group"]
                rows.append(dict(base, group=row_group, benchmark=benchmark, framework=framework, mode=mode,
                                 device=values.get("device", "cpu" if benchmark.startswith("track_worker") else ""),
                                 dtype=values.get("dtype", ""), size=values.get("size", ""), value=float(value),
                                 unit=units.get(name) or units.get(benchmark) or UNITS.get(kind, ""),
                                 q25=stat("stats_q_25", i), q75=stat("stats_q_75", i), ci99_low=stat("stats_ci_99_a", i),
                                 ci99_high=stat("stats_ci_99_b", i), repeat=stat("stats_repeat", i)))
        return rows
    except ReportError:
        raise
    except (KeyError, TypeError, IndexError, AttributeError, FormError) as error:
        raise ReportError(f"not an asv result file ({type(error).__name__}: {error})") from None


ASV_DIR = "asv"     # asv.conf.json's results_dir, under the results folder (the catalogue writes it)


def history_dir(results: str) -> str:
    """asv's results directory inside the results folder ``results``."""
    return os.path.join(results, ASV_DIR)


def load(results: str, read: Optional[List[str]] = None):
    """(tidy DataFrame of the newest result file per machine and group, machines, problems).
    ``read`` collects the result files that were read (as machine-folder/file)."""
    import pandas as pd

    history = history_dir(results)

    units: Dict[str, str] = {}
    param_names: Dict[str, List[str]] = {}
    try:
        with open(os.path.join(history, "benchmarks.json")) as handle:
            described = {k: v for k, v in json.load(handle).items() if isinstance(v, dict)}
        for key, value in described.items():       # by full name, and by the method's name alone
            for alias in (key.split(".")[-1], key):
                units[alias] = value.get("unit", "")
                param_names[alias] = list(value.get("param_names", []))
    except (OSError, ValueError):
        pass
    rows, problems, machines = [], [], {}
    for machine_dir in sorted(glob.glob(os.path.join(history, "*", "machine.json"))):
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
                params = (read_json(path) or {}).get("params", {})
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


def _pick(frame, benchmark: str, framework: str, mode: str, device: str, dtype: str, size: str):
    rows = frame[(frame.benchmark == benchmark) & (frame.framework == framework) & (frame["mode"] == mode)
                 & (frame.device == device) & (frame.dtype == dtype) & (frame["size"] == size)]
    return None if rows.empty else rows.iloc[0]


def verification_row(verification, group: str, framework: str, mode: str, device: str, dtype: str):
    row = verification.get((group, framework, mode, device, dtype)) or verification.get((MAIN_GROUP, framework, mode, device, dtype))
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
                      "ratio is taken between them: the paired comparisons above rank frameworks.", ""]
            cells = []
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
                cells.append([row.framework, row["mode"], row.device, version, f"{format_seconds(row.value)}{spread}",
                              entry["run"], f"{number(entry['gflops'])}{_other_run(gflops, row)}",
                              f"{number(entry['fraction_of_peak'], 2)}{_other_run(peak, row)}",
                              f"{format_seconds(entry['first_step'])}{_other_run(first, row)}",
                              f"{memory_text}{_other_run(memory, row)}", entry["verified"]])
            lines += tables.markdown(["framework", "mode", "device", "version", "step (median, IQR)", "run", "GFLOP/s",
                                      "of peak", "first step", "peak memory", "verified"], cells) + [""]
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
            f"{info.get('os', '?')} ({info.get('arch', '?')}); GPU: {gpu}."
            + (f" A legacy id: {LEGACY_NOTE}." if asv_legacy(info) else ""), ""]


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
            "FLOPs are counted analytically (`bnbench/timing/flops.py`); the peak is an n³ NumPy matmul (n = " + str(size_for("cpu")) + ", bnbench/timing/peak.py) in the same "
            "process, and the fraction of peak is the median of 7 ratios, each of a few steps and the matmul "
            "right after them (so that both fall in the same phase of the machine). These machines alternate fast and slow phases: read no gap under ~20% from one run.", ""]


def plot_step_times(frame, machine: str, dtype: str, path: str) -> bool:
    plt = pyplot()

    data = frame[(frame.machine == machine) & (frame.benchmark.isin(STEP_BENCHMARKS)) & (frame.dtype == dtype)
                 & (frame.device == "cpu")]
    if data.empty:
        return False
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=100)
    for index, ((framework, mode), rows) in enumerate(data.groupby(["framework", "mode"], sort=True)):
        rows = rows.assign(m=rows["size"].map(SIZES_M)).sort_values("m")
        colour, marker = STYLES[index % len(STYLES)]       # no two series share both colour and marker
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
    finish(fig, path)
    return True


def plot_fraction_of_peak(frame, machine: str, dtype: str, path: str) -> bool:
    plt = pyplot()

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
    finish(fig, path)
    return True


def prune(results: str, read: List[str], frame) -> List[str]:
    """Remove the asv result files that a newer file supersedes: none of their measurements is used
    any more, and a file used by the tables, of the same machine folder and environment group, is
    newer. A file whose benchmarks all failed, with nothing newer beside it, is kept: it is the
    latest record of that environment. Returns what was removed."""
    used = set(frame["source"]) if len(frame) else set()
    newest: Dict[Tuple[str, str], int] = {}
    for _, row in (frame.drop_duplicates("source").iterrows() if len(frame) else []):
        key = (row["source"].split(os.sep)[0], row["env_group"])
        newest[key] = max(newest.get(key, row["date"]), row["date"])
    removed = []
    for source in read:
        if source in used:
            continue
        path = os.path.join(history_dir(results), source)
        data = read_json(path)
        try:
            key, date = (source.split(os.sep)[0], environment_group(data)), int(data["date"])
        except (KeyError, TypeError, ValueError):
            continue                     # not a result file that can be told superseded: kept
        if key in newest and newest[key] > date:
            os.remove(path)
            removed.append(source)
    return removed
