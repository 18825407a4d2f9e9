"""The frameworks as the tools use them: each adapter class where it runs.

``get(name)`` is the adapter class itself where the framework runs in this process, or a class
with the same declared facts whose work runs in a worker process (``Adapter.placement``, acted on
by bnbench.timing.worker); ``describe(name)`` is one row of ``bnbench frameworks``. The adapter layer
below (bnbench.adapters) only declares; nothing there starts a process.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Type

from bnbench import tables
from bnbench.adapters.contract import Adapter
from bnbench.adapters.registry import ADAPTERS, UnknownFramework, local_class, names  # noqa: F401
from bnbench.timing.worker import remote_class

_remote_classes: Dict[tuple, Type[Adapter]] = {}


def get(name: str) -> Type[Adapter]:
    """The adapter class to use from this process: the class itself, or, where the framework
    lives in another environment or needs a process of its own (``Adapter.placement``), a class
    with the same facts whose work runs in a worker process (bnbench.timing.worker)."""
    adapter = local_class(name)
    placement = adapter.placement()
    if placement is None:
        return adapter
    key = (name, placement)
    if key not in _remote_classes:
        _remote_classes[key] = remote_class(adapter, placement)
    return _remote_classes[key]


def describe(name: str, *, probe: bool = True) -> Dict[str, object]:
    """One row of ``bnbench frameworks``: name, modes, devices, availability and the reason.

    With ``probe`` the framework is imported (a broken install is then 'unavailable' with the
    error) and each device asked; without, its presence is checked and its version read from
    package metadata, importing nothing.
    """
    adapter = get(name)
    reason: Optional[str] = adapter.import_error() if probe else adapter.missing_requirement()
    row: Dict[str, object] = {
        "name": name,
        "modes": list(adapter.modes),
        "devices": list(adapter.devices),
        "available": reason is None,
        "reason": reason,
        "version": None,
        "device_status": {},
        "tuning": {mode: adapter.tuning_of(mode) for mode in adapter.tuning},
        "runs_in": getattr(adapter, "worker_placement", None) and adapter.worker_placement.where or "this process",
    }
    if reason is None and probe:
        row["version"] = adapter.version()
        row["device_status"] = {device: adapter.device_unavailable(device) for device in adapter.devices}
    elif reason is None:
        row["version"] = adapter.installed_version()
    return row


def table(rows: List[Dict[str, object]]) -> str:
    """``bnbench frameworks``'s rows as a plain-text table."""
    header = ["framework", "available", "version", "modes", "devices", "note"]
    lines = []
    for row in rows:
        status = row["device_status"] or {}
        devices = [device if status.get(device) is None else f"{device} (unavailable)" for device in row["devices"]]
        notes = ([row["reason"]] if row["reason"] else []) + [f"{device}: {problem}" for device, problem in status.items() if problem]
        lines.append([row["name"], "yes" if row["available"] else "no", row["version"] or "-",
                      ", ".join(row["modes"]), ", ".join(devices), "; ".join(notes)])
    return tables.text(header, lines)
