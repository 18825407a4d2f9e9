"""The suite's result files, read by one reader: each kind's tool, schema number, required keys and
the upgrades of its older schemas (as asv checks its results' ``api_version`` on load).

A writer stamps ``tool`` and ``schema`` from its ``Kind``; every reader goes through ``read`` (one
file) or ``read_all`` (a folder's files). An older schema is upgraded step by step and says so
(``upgraded_from``); a newer or unknown one, a file of another tool, or one without a required key
is refused with a ``RecordError`` naming the file and the key, and ``read_all`` skips it with that
message as its warning. Never a KeyError."""
from __future__ import annotations

import dataclasses
import glob
import json
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from bnbench.timing import rows
from bnbench.timing.form import Form, FormError


class RecordError(ValueError):
    """A result file that cannot be read as its kind; the message names the file and the key."""


Upgrade = Callable[[Dict[str, Any]], Dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Kind:
    tool: str                                   # the command that writes it, its files' "tool"
    schema: int                                 # the schema its writer stamps now
    required: Mapping[str, type]                # what every reader may rely on, by type
    upgrades: Mapping[int, Upgrade] = dataclasses.field(default_factory=dict)   # schema n -> n + 1
    # its typed parts read and written back (bnbench.timing.rows), once upgraded: a field older files
    # lack reads as its default, so a field added to a part needs no upgrade
    parts: Optional[Callable[[Dict[str, Any], str], Dict[str, Any]]] = None

    def stamp(self) -> Dict[str, Any]:
        """The keys a writer of this kind starts its JSON with."""
        return {"schema": self.schema, "tool": self.tool}


# --------------------------------------------------------------------------- upgrades
def _comparison_1_to_2(data: Dict[str, Any]) -> Dict[str, Any]:
    """Schema 1 (before 2026-11-27): no control, no process sets, no per-round masks, no latency or
    memory in a row. What it lacks is written as unknown (None, or nothing counted), never guessed;
    a row's variant is its label's (a row's other fields default in bnbench.timing.rows)."""
    for key, value in (("floor", None), ("ceilings", []), ("unconverged", []), ("process_sets", 1),
                       ("round_sets", []), ("undisturbed_rounds", []), ("round_references", {})):
        data.setdefault(key, value)
    for row in data.get("rows", []):
        if not isinstance(row, dict):
            continue
        try:
            row.setdefault("variant", Form.parse(str(row.get("label"))).variant)
        except FormError:
            row.setdefault("variant", None)
    return data


def _burst_memory(rows: List[Any]) -> None:
    """Before 2026-12-08 a CPU row's memory was what one burst allocated above what was resident
    before it: kind ``resident`` then is ``resident-burst`` now (bnbench.timing.steps.MemoryWatch)."""
    for row in rows:
        if isinstance(row, dict) and row.get("memory_kind") == "resident":
            row["memory_kind"] = "resident-burst"


def _comparison_2_to_3(data: Dict[str, Any]) -> Dict[str, Any]:
    """Schema 2: no memory against the analytic minimum; its CPU memory, one burst's alone."""
    data.setdefault("analytic_memory_bytes", None)
    _burst_memory(data.get("rows", []))
    return data


def _old_verdict(resolved: Any, ratio: Any, low: Any, high: Any, label: Any) -> Dict[str, Any]:
    """A verdict from before verdicts: resolved beyond the floor (faster or slower by its ratio), or
    undecided, equivalence never tested (no epsilon)."""
    decided = ("faster" if (ratio or 1.0) < 1.0 else "slower") if resolved else "undecided"
    return {"verdict": decided, "ratio": ratio, "ci_low": low, "ci_high": high, "epsilon": None, "label": label,
            "reason": None if resolved else "made before verdicts: not resolved, equivalence not tested"}


def _comparison_3_to_4(data: Dict[str, Any]) -> Dict[str, Any]:
    """Schema 3: a row said whether it was resolved (against the baseline, and in
    ``versus_next_faster``); now each has a verdict (bnbench.timing.verdicts)."""
    for row in data.get("rows", []):
        if not isinstance(row, dict):
            continue
        versus = row.pop("versus_next_faster", None)
        if isinstance(versus, dict):
            row["vs_next_faster"] = _old_verdict(versus.get("resolved"), versus.get("ratio"), versus.get("ci_low"),
                                                 versus.get("ci_high"), versus.get("label"))
        if row.get("ratio") is not None and row.get("resolved") is not None:
            row["vs_baseline"] = _old_verdict(row["resolved"], row["ratio"], row.get("ci_low"), row.get("ci_high"),
                                              data.get("baseline"))
    return data


def _sweep_1_to_2(data: Dict[str, Any]) -> Dict[str, Any]:
    """Schema 1: its CPU memory, one burst's alone (its ratio taken against the working part)."""
    for point in data.get("points", []):
        if isinstance(point, dict):
            _burst_memory(point.get("rows", []))
    return data


def _tuning_log_comparisons(data: Dict[str, Any]) -> Dict[str, Any]:
    """Schemas 1 to 3: its comparisons are of an older comparison schema, upgraded as every
    comparison is; one without a control keeps the legacy margin (bnbench.comparisons.tunelog.margin)."""
    data["compare"] = {size: upgraded(COMPARISON, comparison, f"compare[{size!r}]")
                       for size, comparison in (data.get("compare") or {}).items()}
    return data


def _tuning_log_parts(data: Dict[str, Any], name: str) -> Dict[str, Any]:
    """A tuning log's comparisons, each part read as every comparison's is."""
    compare = data.get("compare") or {}
    return dict(data, compare={size: rows.parts_of_comparison(comparison, f"{name}: compare[{size!r}]")
                               if isinstance(comparison, dict) else comparison for size, comparison in compare.items()})


COMPARISON = Kind("bnbench compare", 4, {"machine_id": str, "device": str, "dtype": str, "size": str, "baseline": str,
                                         "created": str, "rows": list}, {1: _comparison_1_to_2, 2: _comparison_2_to_3, 3: _comparison_3_to_4},
                  parts=rows.parts_of_comparison)
SWEEP = Kind("bnbench scale", 2, {"machine_id": str, "device": str, "dtype": str, "axis": str, "swept": str,
                                  "points": list, "fits": list}, {1: _sweep_1_to_2}, parts=rows.parts_of_sweep)
TUNING_LOG = Kind("bnbench tunelog", 4, {"framework": str, "kept": str, "compare": dict, "forms": list, "sizes": list},
                  {1: _tuning_log_comparisons, 2: _tuning_log_comparisons, 3: _tuning_log_comparisons},
                  parts=_tuning_log_parts)


def upgraded(kind: Kind, data: Any, name: str) -> Dict[str, Any]:
    """``data`` as ``kind``'s current schema; RecordError naming ``name`` and the key otherwise."""
    if not isinstance(data, dict):
        raise RecordError(f"{name}: not a JSON object")
    if data.get("tool", kind.tool) != kind.tool:
        raise RecordError(f"{name}: 'tool' is {data.get('tool')!r}, not {kind.tool!r}")
    schema = data.get("schema", 1)
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise RecordError(f"{name}: 'schema' {schema!r} is not a schema number")
    if schema > kind.schema:
        raise RecordError(f"{name}: 'schema' {schema} is newer than this suite reads ({kind.tool} writes "
                          f"{kind.schema}); update bnbench to read it")
    start = schema
    while schema < kind.schema:
        if schema not in kind.upgrades:
            raise RecordError(f"{name}: 'schema' {schema} of {kind.tool} has no upgrade to {schema + 1}")
        try:
            data = kind.upgrades[schema](dict(data))
        except RecordError as error:        # a part of it (a tuning log's comparison) refused
            raise RecordError(f"{name}: {error}") from None
        schema += 1
    data = dict(data, tool=kind.tool, schema=schema)
    if start != schema:
        data["upgraded_from"] = start
    for key, expected in kind.required.items():
        if not isinstance(data.get(key), expected):
            raise RecordError(f"{name}: no {key!r} ({expected.__name__})" if key not in data else
                              f"{name}: {key!r} is {type(data[key]).__name__}, not {expected.__name__}")
    if kind.parts is not None:
        try:
            data = kind.parts(data, name)
        except (rows.PartError, TypeError) as error:
            raise RecordError(str(error)) from None
    return data


def read(path: str, kind: Kind, *, root: Optional[str] = None) -> Dict[str, Any]:
    """One result file as ``kind``'s current schema, its ``source`` relative to ``root``;
    RecordError naming the file otherwise."""
    name = os.path.relpath(path, root) if root else path
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as error:
        raise RecordError(f"{name}: not readable ({error})") from None
    data = upgraded(kind, data, name)
    data["source"] = name
    return data


def read_all(root: str, folder: str, kind: Kind) -> Tuple[List[Dict[str, Any]], List[str]]:
    """Every ``<root>/<folder>/<machine>/*.json`` of ``kind``, and a warning for each file skipped,
    naming it and why ("...; skipped")."""
    records, problems = [], []
    for path in sorted(glob.glob(os.path.join(root, folder, "*", "*.json"))):
        try:
            records.append(read(path, kind, root=root))
        except RecordError as error:
            problems.append(f"{error}; skipped")
    return records, problems
