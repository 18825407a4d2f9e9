"""Steps and bursts, run where the framework lives: in its worker process (bnbench.timing.worker)
or, for the asv benchmarks of a framework of this environment, in this process.

A prepared participant has one batch on its device and two ways to step on it:

- ``step()``: one training step, synchronised and its loss read back (the per-step latency);
- ``queue()``: one training step queued, its loss left on the device (``Adapter.train_step_queued``).

A burst times steps until its seconds have passed:

- ``per_step``: every step timed on its own, synchronised; the burst's median resists a step that
  an interrupt slowed. This is the figure on the CPU, where a step is done when it returns.
- ``queued``: the burst's steps queued back to back and synchronised once at its end, as training
  runs on a device with asynchronous dispatch; seconds per step is the burst's time over its
  steps, and the host's dispatch of step k+1 overlaps the device's work on step k.
- ``total``: only the whole burst timed (the bare measurement the timer's overhead is checked
  against).

With ``memory``, the burst also reads the memory its steps needed (``peak_memory``).

The code here must stay importable by the oldest interpreter a worker runs under (Python 3.9).
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, Optional

import numpy as np

HOW = ("per_step", "queued", "total")
clock = time.perf_counter


class Prepared:
    """An adapter with one batch on its device, ready to be timed."""

    def __init__(self, adapter, X: np.ndarray, y: np.ndarray, resident_before: Optional[int] = None):
        self.adapter = adapter
        self.batch = adapter.to_device(X, y)
        self.estimate: Optional[float] = None    # seconds per synchronised step, from the last burst
        # KiB resident in the process before the adapter was built (``resident_kib``): what the
        # model holds is counted above it (MemoryWatch)
        self.resident_before = resident_before

    def step(self) -> None:
        self.adapter.train_step_prepared(self.batch)
        self.adapter.sync()

    def queue(self) -> None:
        self.adapter.train_step_queued(self.batch)

    def sync(self) -> None:
        self.adapter.sync()

    def device_memory(self, reset: bool = False) -> Optional[int]:
        return self.adapter.device_memory(reset=reset)


class Bare:
    """A timed callable that is its own synchronised step (the matmul peak, a framework's own matmul)."""

    def __init__(self, step: Callable[[], None]):
        self.step = self.queue = step
        self.estimate: Optional[float] = None
        self.resident_before: Optional[int] = None

    def sync(self) -> None:
        pass

    def device_memory(self, reset: bool = False) -> Optional[int]:
        return None


def prepare(adapter, X: np.ndarray, y: np.ndarray, warmup: int, resident_before: Optional[int] = None):
    """(Prepared, first step's seconds, warm-up's seconds): the first step pays for compilation and
    tracing, the warm-up for the rest of what a fresh adapter does; both are reported apart from
    the steady state. ``resident_before``: ``resident_kib()`` just before the adapter was built."""
    prepared = Prepared(adapter, X, y, resident_before)
    start = clock()
    prepared.step()
    first = clock() - start
    start = clock()
    for _ in range(warmup):
        prepared.step()
    warm = clock() - start
    prepared.estimate = warm / warmup if warmup else first
    return prepared, first, warm


def burst(prepared, seconds: float, *, min_steps: int = 1, max_steps: int = 10000, how: str = "per_step",
          memory: bool = False) -> Dict[str, Any]:
    """Steps until ``seconds`` have passed (at least ``min_steps``, at most ``max_steps``); see the
    module's docstring for ``how``. The reply holds ``steps`` (per_step: each step's seconds),
    ``queued`` (queued: seconds per step) or ``total`` and ``count``; with ``memory``, the bytes
    the burst needed above what was resident before it (``memory_bytes``, ``memory_kind``)."""
    if how not in HOW:
        raise ValueError(f"burst how={how!r} is not one of {', '.join(HOW)}")
    watch = MemoryWatch(prepared) if memory else None
    if how == "total":
        count = max(min_steps, 1)
        start = clock()
        for _ in range(count):
            prepared.step()
        reply: Dict[str, Any] = {"total": clock() - start, "count": count}
    elif how == "queued":
        estimate = prepared.estimate or seconds
        count = int(min(max_steps, max(min_steps, 1, math.ceil(seconds / max(estimate, 1e-9)))))
        start = clock()
        for _ in range(count):
            prepared.queue()
        prepared.sync()
        reply = {"queued": (clock() - start) / count, "count": count}
    else:
        times = []
        burst_start = clock()
        while len(times) < max_steps:
            start = clock()
            prepared.step()
            end = clock()
            times.append(end - start)
            if len(times) >= min_steps and end - burst_start >= seconds:
                break
        prepared.estimate = float(np.median(times))
        reply = {"steps": times}
    if watch is not None:
        reply.update(watch.done())
    return reply


# --------------------------------------------------------------------------- memory
def _status_kib(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def resident_kib() -> Optional[int]:
    """KiB resident in this process now, freed memory given back first: taken just before an
    adapter is built, it is what the process held without the model."""
    return_freed_memory()
    return _status_kib("VmRSS")


def return_freed_memory() -> None:
    """glibc's malloc_trim(0): freed memory given back to the system, so that what is resident
    before a burst is what is live (an allocator told to keep freed memory, as NumPy's kept form's
    mallopt, would otherwise hold the last step's temporaries, and the burst would need nothing new)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_high_water_mark() -> bool:
    """Linux: set the process's resident high-water mark (VmHWM) to what is resident now, by writing
    5 to /proc/self/clear_refs; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


class MemoryWatch:
    """The memory a step holds: on a device with its own allocator, the allocator's peak over the
    burst (the adapter's ``device_memory``: parameters, optimizer state and the step's working memory
    together); on the CPU, the process's peak resident memory during the burst (VmHWM after a reset)
    above what it held before the model was built (``Prepared.resident_before``): the parameters,
    the optimizer's state, the framework's caches for the model and the step's working memory
    (kind ``resident``). Where that is not known, above what was resident before the burst: the
    step's working memory alone (kind ``resident-burst``)."""

    def __init__(self, prepared) -> None:
        self.prepared = prepared
        self.device_before = prepared.device_memory(reset=True)
        self.kind = "device"
        if self.device_before is None:
            return_freed_memory()
            self.reset = reset_high_water_mark()
            before = getattr(prepared, "resident_before", None)
            self.kind = "resident" if before is not None else "resident-burst"
            self.rss_before = before if before is not None else _status_kib("VmRSS")

    def done(self) -> Dict[str, Any]:
        if self.device_before is not None:
            return {"memory_bytes": self.prepared.device_memory(), "memory_kind": self.kind}
        high = _status_kib("VmHWM")
        if not self.reset or high is None or self.rss_before is None:
            return {"memory_bytes": None, "memory_kind": "unavailable"}
        return {"memory_bytes": max(0, high - self.rss_before) * 1024, "memory_kind": self.kind}
