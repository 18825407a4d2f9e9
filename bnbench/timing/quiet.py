"""Waiting for the workers to go quiet before a burst.

A framework's thread runtime may keep spinning after its last task: Intel's OpenMP waits actively
for 200 ms by default (KMP_BLOCKTIME), OpenBLAS's threads for a while too. In paired rounds the
next burst belongs to another worker, and a thread team that loses a core to a spinning neighbour
stalls at every barrier. Measured on 2 cores at width 128: NumPy's step took 55 ms instead of 0.7
ms in the bursts that followed Paddle's, whose worker used 0.9-1.0 core during them; a fixed pause
of 50 ms did not cover it. So before every burst the rounds wait, window by window, until no
worker used more than a fraction of a core in the last window (or a limit passes), and each
participant's row tells how long the workers stayed busy after its bursts.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

WINDOW_S = 0.05        # the shortest pause, and the window over which a worker's CPU time is read
BUSY_CORES = 0.3       # a worker that used more than this share of one core over a window is busy
MAX_WAIT_S = 1.0       # a worker busy for longer is left so, and the wait says it was cut short
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") and "SC_CLK_TCK" in os.sysconf_names else 100


def cpu_seconds(pid: int) -> Optional[float]:
    """User and system CPU time of process ``pid`` (all its threads) so far; None where it cannot
    be read (no /proc, or a process that has ended)."""
    try:
        with open(f"/proc/{pid}/stat", "r") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return None


def wait_until_quiet(pids: Sequence[int], *, window: float = WINDOW_S, busy: float = BUSY_CORES,
                     max_wait: float = MAX_WAIT_S, read: Callable[[int], Optional[float]] = cpu_seconds,
                     sleep: Callable[[float], None] = time.sleep,
                     clock: Callable[[], float] = time.perf_counter) -> Tuple[float, bool]:
    """Sleep one window at a time until no process of ``pids`` used more than ``busy`` of a core
    over the last window, or ``max_wait`` has passed: (seconds waited, whether they went quiet).
    Processes whose CPU time cannot be read count as quiet, so without /proc this is one window."""
    started = clock()
    before: Dict[int, Optional[float]] = {pid: read(pid) for pid in pids}
    while True:
        window_started = clock()
        sleep(window)
        elapsed = max(clock() - window_started, 1e-9)
        now = {pid: read(pid) for pid in pids}
        loudest = max((((now[pid] or 0.0) - (before[pid] or 0.0)) / elapsed for pid in pids
                       if now[pid] is not None and before[pid] is not None), default=0.0)
        waited = clock() - started
        if loudest <= busy:
            return waited, True
        if waited >= max_wait:
            return waited, False
        before = now
