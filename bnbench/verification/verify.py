"""``bnbench verify``: the equivalence checks for every available framework x mode x device x
dtype, as one table and one JSON file that the results tables read (a timing row is marked
verified only when its framework, version, mode, device and dtype passed here, on that machine).

Each combination runs a fixed battery of specs against the NumPy reference (bnbench.equivalence.trace):
every optimizer x running-variance convention on a two-layer problem, and a three-layer one with
a larger batch. A spec the framework cannot express counts as unsupported (with the reason), never
as passed; a combination passes when every supported check passes and at least one ran.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import time
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from bnbench import progress, tables
from bnbench.equivalence.tolerances import KINK_BAND, KINK_MARGIN, KINK_MAX_TOLERANCE, KINK_MAX_TOLERANCES, TOLERANCES
from bnbench.equivalence.trace import check_equivalence
from bnbench.reference.battery import battery
from bnbench.timing.frameworks import get

GROUPS = ("loss", "probs", "grad", "param", "running", "eval_probs")


@dataclasses.dataclass
class Row:
    framework: str
    mode: str
    device: str
    dtype: str
    status: str                       # pass, FAIL, unsupported, unavailable
    version: Optional[str] = None
    passed: int = 0
    checked: int = 0
    unsupported: List[str] = dataclasses.field(default_factory=list)
    failures: List[str] = dataclasses.field(default_factory=list)
    worst: Dict[str, float] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    reason: Optional[str] = None


def combinations(frameworks: Iterable[str], devices: Iterable[str], dtypes: Iterable[str],
                 modes: Optional[Iterable[str]] = None) -> List[Tuple[str, str, str, str]]:
    """Every (framework, mode, device, dtype); ``modes`` narrows the modes ('best': each adapter's
    best mode)."""

    out = []
    wanted = set(modes) if modes else None
    for name in frameworks:
        adapter = get(name)
        for mode in adapter.modes:
            if wanted is not None and mode not in wanted and not ("best" in wanted and mode == adapter.best_mode):
                continue
            for device in adapter.devices:
                if device in devices:
                    out.extend((name, mode, device, dtype) for dtype in dtypes)
    return out


def verify_one(name: str, mode: str, device: str, dtype: str, cases) -> Row:
    adapter_class = get(name)
    row = Row(name, mode, device, dtype, status="unavailable")
    precision = "tf32" if dtype == "tf32" else None       # a float32 spec, its matmuls in TF32
    problem = adapter_class.import_error()
    if problem is None:
        device_problem = adapter_class.device_unavailable(device) or adapter_class.precision_unavailable(precision, device)
        problem = None if device_problem is None else f"device {device}: {device_problem}"
    if problem:
        row.reason = problem
        return row
    row.version = adapter_class.version()
    start = time.perf_counter()
    worst = {group: 0.0 for group in GROUPS}
    for label, spec, params, X, y in cases:
        reason = adapter_class.unsupported(spec, mode, device)
        if reason:
            row.unsupported.append(f"{label}: {reason}")
            continue
        row.checked += 1
        try:
            report = check_equivalence(adapter_class(spec, params, mode=mode, device=device, precision=precision), spec,
                                       params, X, y, precision=precision)
        except Exception as error:   # a crash is a failure of that check, reported, not a crash of verify
            row.failures.append(f"{label}: {type(error).__name__}: {(str(error).splitlines() or [''])[0]}")
            continue
        for comparison in report.comparisons:
            group = comparison.group
            if group in worst and np.isfinite(comparison.error):
                worst[group] = max(worst[group], float(comparison.error))
            elif group in worst:
                worst[group] = float("inf")
        if report.ok:
            row.passed += 1
        else:
            first = report.failures[0]
            row.failures.append(f"{label}: {len(report.failures)} tensor(s) off, first {first.key} at step {first.step} "
                                f"(relative error {first.error:.2e} > {first.tolerance:.0e})")
    row.worst = worst if row.checked else {}
    row.seconds = round(time.perf_counter() - start, 2)
    if row.failures:
        row.status = "FAIL"
    elif row.checked == 0:
        row.status = "unsupported"
        row.reason = "; ".join(row.unsupported)
    else:
        row.status = "pass"
    return row


def run(frameworks: List[str], devices: List[str], dtypes: List[str], modes: Optional[List[str]] = None) -> List[Row]:
    combos = combinations(frameworks, devices, dtypes, modes)
    cases = {dtype: battery("float32" if dtype == "tf32" else dtype) for dtype in dtypes}
    rows = []
    bar = progress.bar(len(combos), "combination")
    try:
        for name, mode, device, dtype in combos:
            bar.set_description(f"{name} {mode} {device} {dtype}")
            rows.append(verify_one(name, mode, device, dtype, cases[dtype]))
            bar.update(1)
    finally:
        bar.close()
    return rows


def merge(previous: Optional[Dict[str, object]], current: Dict[str, object]) -> Dict[str, object]:
    """The new JSON keeps earlier rows of combinations this run did not check."""
    if not previous or previous.get("schema") != current["schema"]:
        return current
    key = lambda row: (row["framework"], row["mode"], row["device"], row["dtype"])  # noqa: E731
    fresh = {key(row) for row in current["rows"]}
    kept = [row for row in previous.get("rows", []) if key(row) not in fresh]
    merged = dict(current)
    merged["rows"] = sorted(kept + list(current["rows"]), key=key)
    return merged


def to_json(rows: List[Row], machine: str) -> Dict[str, object]:
    import sys

    return {
        "schema": 1,
        "machine": machine,
        "created": _now(),
        "python": platform.python_version(),
        "interpreter": sys.executable,
        "numpy": np.__version__,
        "tolerances": _tolerances(),
        "relu_kinks": _relu_kinks(),     # widening where ReLU inputs are within rounding of 0 (bnbench.equivalence.tolerances)
        "rows": [dict(_finite(dataclasses.asdict(row)), checked_at=_now()) for row in rows],
    }


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _tolerances() -> Dict[str, float]:
    return {str(k): float(v) for k, v in TOLERANCES.items()}


def _relu_kinks() -> Dict[str, float]:
    return {"band": KINK_BAND, "margin": KINK_MARGIN, "max_tolerance": KINK_MAX_TOLERANCE, "max_tolerances": dict(KINK_MAX_TOLERANCES)}


def _finite(row: Dict[str, object]) -> Dict[str, object]:
    row["worst"] = {k: (v if np.isfinite(v) else None) for k, v in row["worst"].items()}
    return row


def table(rows: List[Row]) -> str:
    header = ["framework", "mode", "device", "dtype", "status", "checks", "loss", "probs", "grad", "param", "running", "eval",
              "seconds", "note"]
    lines = []
    for row in rows:
        checks = f"{row.passed}/{row.checked}" + (f" (+{len(row.unsupported)} unsupported)" if row.unsupported else "")
        errors = [f"{row.worst[g]:.1e}" if row.worst.get(g) is not None else "-" for g in GROUPS]
        note = row.reason if row.status in ("unavailable", "unsupported") else ("; ".join(row.failures)[:160] if row.failures else "")
        lines.append([row.framework, row.mode, row.device, row.dtype, row.status, checks if row.status != "unavailable" else "-",
                      *errors, f"{row.seconds:.1f}" if row.status != "unavailable" else "-", note or ""])
    return tables.text(header, lines)


def default_path(machine: str, results: str = "results") -> str:
    """Where ``bnbench verify`` writes by default: results/verify/<machine id>/main.json (the main
    environment's record; asv's environments and the GPU run write theirs beside it)."""
    return os.path.join(results, "verify", machine, "main.json")


def write(path: str, rows: List[Row], machine: str) -> None:
    """The record at ``path``, keeping the rows of earlier runs this one did not check (merge),
    written atomically; an unreadable earlier file is replaced by this run's complete result. The
    read, merge and write hold a lock on ``path``.lock: of two runs writing at once, neither's rows
    are lost."""
    import fcntl

    from bnbench.reference.io import atomic_write_json, read_json

    current = to_json(rows, machine)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            previous = read_json(path)
            atomic_write_json(path, merge(previous if isinstance(previous, dict) else None, current))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def counts(rows: List[Row]) -> str:
    tally = {status: sum(row.status == status for row in rows) for status in ("pass", "FAIL", "unsupported", "unavailable")}
    return (f"{tally['pass']} passed, {tally['FAIL']} failed, {tally['unsupported']} unsupported, "
            f"{tally['unavailable']} unavailable")
