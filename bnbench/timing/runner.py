"""Where a participant's steps run, behind one small protocol: ``burst`` (the only thing the rounds
ask of it), ``worker`` (its process, to pin; None in this process) and ``release``.

Two runners: ``InProcess`` (steps.Prepared or steps.Bare here, as asv times) and ``InWorker`` (a
handle on what a worker process prepared: a verified adapter's timed steps, the matmul peak, a
framework's own matmul). A burst in a worker then travels: the rounds, ``Participant.burst`` (its
deadline), ``InWorker.burst``, ``WorkerProcess.call``, the worker's ``handle``, ``steps.burst``."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Protocol

from bnbench.timing import steps


class Runner(Protocol):
    worker: Any        # its WorkerProcess, or None in this process

    def burst(self, seconds: float, *, how: str, min_steps: int, memory: bool,
              deadline_s: Optional[float]) -> Dict[str, Any]:
        """One burst (bnbench.timing.steps.burst): its steps' times, and its memory if asked."""

    def release(self) -> None:
        """Let go of what it runs (the adapter, the worker's handle); the worker itself stays."""


@dataclasses.dataclass
class InProcess:
    """Steps prepared in this process (steps.Prepared: an adapter's; steps.Bare: the peak's)."""

    prepared: Any
    worker: Any = None

    def burst(self, seconds: float, *, how: str, min_steps: int, memory: bool,
              deadline_s: Optional[float] = None) -> Dict[str, Any]:
        # in this process nothing can be killed at a deadline: the burst runs to its end
        return steps.burst(self.prepared, seconds, min_steps=min_steps, how=how, memory=memory)

    def release(self) -> None:
        self.prepared = None


@dataclasses.dataclass
class InWorker:
    """What a worker prepared under ``handle``; ``owner`` keeps the proxy whose handle it is alive
    (its collection releases the handle in the worker)."""

    worker: Any
    handle: int
    owner: Any = None

    def burst(self, seconds: float, *, how: str, min_steps: int, memory: bool,
              deadline_s: Optional[float], max_steps: int = 10000) -> Dict[str, Any]:
        reply, _ = self.worker.call("burst", handle=self.handle, seconds=seconds, min_steps=min_steps, max_steps=max_steps,
                                    how=how, memory=memory, deadline_s=deadline_s)
        reply.pop("ok", None)
        return reply

    def release(self) -> None:
        self.owner = None
