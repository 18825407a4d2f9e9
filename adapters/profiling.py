"""Where a step's time goes, as a framework's own profiler sees it (the tuning logs' profiles).

An adapter that can ask its framework's profiler implements the hook
``profile_steps(adapter, batch, steps)``: it runs the steps under the profiler and tallies each
kernel's calls and self time with ``add_kernel_time``, naming which of its own kernels are matrix
products (each framework names its own: ``kind_of`` with its set). ``profile_report`` turns the
tally into the report a log keeps.
"""
from __future__ import annotations

import re
from typing import Collection, Dict, Mapping, Tuple


def kind_of(name: str, products: Collection[str]) -> str:
    """"product" when a kernel's name (its first word, lower case, before any '{') is one of the
    framework's matrix-product kernels ``products``; else "other"."""
    return "product" if name.lower().split("{")[0].split(" ")[0] in products else "other"


def xla_products(hlo_text: str) -> set:
    """The instructions of a compiled XLA module that are, or fuse, a matrix product: a dot, or
    one whose metadata names JAX's dot_general or TensorFlow's MatMul."""
    products = set()
    for name, line in re.findall(r"^\s*(?:ROOT )?%(\S+) = ([^\n]*)$", hlo_text, re.M):
        if re.search(r"\bdot\(", line) or "dot_general" in line or re.search(r'op_type="(Batch)?MatMul', line):
            products.add(name)
    return products


def add_kernel_time(kernels: Dict[str, Tuple], name: str, seconds: float, *, kind: str, calls: int = 1) -> None:
    """Add ``calls`` of a kernel, of ``kind`` ("product" or "other"), and their self ``seconds``
    to a profile's tally."""
    held_calls, held_seconds = kernels.get(name, (0, 0.0))[:2]
    kernels[name] = (held_calls + calls, held_seconds + seconds, kind)


def profile_report(profiler: str, steps: int, unprofiled_seconds: float, profiled_seconds: float,
                   kernels: Mapping[str, Tuple], *, top: int = 12) -> Dict[str, object]:
    """A profile as the tuning logs keep it. ``kernels``: name -> (calls, seconds, kind) over the
    ``steps`` profiled steps (self time: a kernel's children are not in it). Per step: the step's
    time without and with the profiler, the products', the other kernels' and what lies outside
    every kernel (the framework's dispatch and the adapter's Python), and the ``top`` kernels."""
    rows = sorted(({"kernel": name, "kind": value[2], "calls": value[0] / steps, "ms": 1e3 * value[1] / steps}
                   for name, value in kernels.items()), key=lambda row: -row["ms"])
    products = sum(row["ms"] for row in rows if row["kind"] == "product")
    others = sum(row["ms"] for row in rows if row["kind"] != "product")
    profiled_ms = 1e3 * profiled_seconds
    return {"profiler": profiler, "steps": steps, "step_ms": 1e3 * unprofiled_seconds, "profiled_step_ms": profiled_ms,
            "products_ms": products, "other_kernels_ms": others,
            "outside_kernels_ms": max(0.0, profiled_ms - products - others),
            "kernels": rows[:top], "kernels_left_out": max(0, len(rows) - top)}


def seconds_per_step(adapter, batch, steps: int) -> float:
    """``steps`` training steps on a prepared batch, synchronised: seconds per step (a profile
    hook runs it under its profiler)."""
    import time

    started = time.perf_counter()
    for _ in range(steps):
        adapter.train_step_prepared(batch)
    adapter.sync()
    return (time.perf_counter() - started) / steps


def profile(adapter, X, y, steps: int, hook) -> Dict[str, object]:
    """``steps`` training steps on one batch timed first as they run, then under the framework's
    own profiler (``hook``, the adapter class's ``profile_steps``), by kernel."""
    batch = adapter.to_device(X, y)
    for _ in range(2):
        adapter.train_step_prepared(batch)
    adapter.sync()
    unprofiled = seconds_per_step(adapter, batch, steps)
    name, profiled, kernels = hook(adapter, batch, steps)
    return profile_report(name, steps, unprofiled, profiled, kernels)

