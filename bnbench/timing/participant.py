"""One participant of a timing run, built, verified, warmed and timed: the one timing path that
``bnbench compare``, the tuning logs, the sweeps and the asv benchmarks all take.

1. Its adapter class: the framework's own where it runs in this process, or a worker proxy in its
   environment (``placement_for``: a worker of its own, started with the variables its form
   needs).
2. The timed instance is built first, so that its first step pays for compilation (reported
   apart), then warmed up (``steps.prepare``, where the framework lives).
3. A second instance is checked against the NumPy reference on the very spec and batches the
   first is timed on; one that fails is never timed and says why.
4. Bursts (``steps.burst``): per-step synchronised latency, or steps queued and synchronised once
   per burst on a device with asynchronous dispatch (``queued_device``).

The matmul peak and a framework's own matmul are participants too (``start_peak``): bare timed
steps in a worker, paired with the others the same way.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from bnbench.adapters.contract import AdapterError
from bnbench.adapters.registry import local_class
from bnbench.equivalence.trace import check_equivalence
from bnbench.timing import steps
from bnbench.timing.form import split_mode_form
from bnbench.timing.kernels import loaded_blas
from bnbench.timing.peak import MatmulPeak, peak_framework
from bnbench.timing.runner import InProcess, InWorker
from bnbench.timing.worker import Placement, WorkerError, WorkerFault, burst_deadline, remote_class, worker_for

WARMUP_STEPS = 3
# A burst is at least this many steps, whose median it keeps: the first step of a burst may pay
# for the caches and the thread pools the other participants' bursts left cold (measured: at the
# large size, where a step takes about 0.1 s, one- and two-step bursts put NumPy's step at 100 ms
# where it takes 70 ms run back to back).
MIN_BURST_STEPS = 3
PEAK = "peak"


def queued_device(device: str) -> bool:
    """Whether steps on ``device`` are dispatched asynchronously, so that a burst queues them and
    synchronises once (on the CPU a step is done when it returns: latency and throughput are one
    measurement)."""
    return device != "cpu"


@dataclasses.dataclass
class Participant:
    framework: str
    mode: str
    label: str                       # framework:mode[+alternative], with #2, #3 for repeats (the A/A check)
    variant: Optional[str] = None    # an alternative form of the mode (None: the kept form)
    adapter: Any = None              # the timed adapter: a worker proxy, or the adapter itself (in_process)
    runner: Any = None               # where its steps run (bnbench.timing.runner): InProcess or InWorker
    version: Optional[str] = None
    verified: bool = False
    first_step_s: Optional[float] = None
    warmup_s: Optional[float] = None
    flops: float = 0.0               # per step
    flags: str = ""
    problem: Optional[str] = None    # why it was not timed
    medians: List[float] = dataclasses.field(default_factory=list)    # seconds per step, per round
    # per round: the baseline's step beside its burst (bnbench.timing.schedule); its ratio is medians / references
    references: List[float] = dataclasses.field(default_factory=list)
    latencies: List[float] = dataclasses.field(default_factory=list)  # synchronised step, per round (devices)
    steps: List[int] = dataclasses.field(default_factory=list)        # steps per burst
    memory: List[Optional[int]] = dataclasses.field(default_factory=list)
    memory_kind: Optional[str] = None
    unplaced: Optional[str] = None   # why its worker could not be placed on the cores the rounds rotate
    # the BLAS its process loaded and under which setting (bnbench.timing.kernels): {native, removed,
    # blas, problem, native_failed}
    kernels: Dict[str, Any] = dataclasses.field(default_factory=dict)
    burst_kinds: set = dataclasses.field(default_factory=set)    # the kinds of burst it has run (per_step, queued)
    busy_after: List[float] = dataclasses.field(default_factory=list)  # seconds the workers stayed busy after a burst
    # what it trains to against the reference (bnbench.equivalence.tolerances.EquivalenceReport.fingerprint)
    fingerprint: Optional[Dict[str, float]] = None

    @property
    def timed(self) -> bool:
        return self.problem is None

    @property
    def worker_client(self):
        """The worker its steps run in; None in this process (or not started)."""
        return None if self.runner is None else self.runner.worker

    @property
    def prepared(self):
        """Its steps.Prepared (or steps.Bare) where it runs in this process; None otherwise."""
        return self.runner.prepared if isinstance(self.runner, InProcess) else None

    def release(self) -> None:
        """Let go of its adapter and what its steps run on (its worker stays for the others)."""
        if self.runner is not None:
            self.runner.release()
        self.adapter = self.runner = None

    @property
    def process_id(self) -> Optional[int]:
        """The process of its worker; None for a participant in this process."""
        process = getattr(self.worker_client, "process", None)
        return None if process is None else process.pid

    def step(self) -> None:
        """One synchronised training step (what asv's timer times, in this process)."""
        if self.prepared is None:
            raise AdapterError(f"{self.label} is not prepared in this process (in_process=False)")
        self.prepared.step()

    def expected_step_s(self) -> Optional[float]:
        """What one step is expected to take: its last burst's median, else its warm-up's steps."""
        finite = [value for value in self.medians if np.isfinite(value)]
        if finite:
            return finite[-1]
        if self.warmup_s:
            return self.warmup_s / WARMUP_STEPS
        return self.first_step_s

    def burst(self, seconds: float, *, how: str = "per_step", min_steps: int = MIN_BURST_STEPS,
              memory: bool = False) -> Dict[str, Any]:
        """One burst; in a worker, within a deadline from its expected length (``burst_deadline``):
        a worker past it is killed and WorkerFault raised. A participant's first burst of each kind
        gets the calls' generous deadline: it may compile (torch.compile's queued form did, for
        more than 20 s on a loaded machine)."""
        if self.runner is None:
            raise AdapterError(f"{self.label} has nothing to run: {self.problem or 'released'}")
        deadline = burst_deadline(seconds, min_steps, self.expected_step_s()) if how in self.burst_kinds else None
        self.burst_kinds.add(how)
        return self.runner.burst(seconds, how=how, min_steps=min_steps, memory=memory, deadline_s=deadline)


def form_flags(adapter, form: str) -> str:
    """What a form publishes: its mode's tuning flags, or what its alternative changes."""
    mode, variant = split_mode_form(form)
    return adapter.alternatives_of(mode)[variant].what if variant else adapter.tuning_of(mode)


def placement_for(framework: str, form: str, index, *, native: bool = True) -> Placement:
    """A worker placement of its own for participant ``index``: the framework's environment
    (or this interpreter), with the variables its alternative form starts with, and one that
    keeps the worker apart from every other one; ``native``: without the environment's BLAS kernel
    overrides (bnbench.timing.kernels)."""
    adapter = local_class(framework)
    placement = adapter.placement()
    if placement is None:
        placement = Placement(python=sys.executable, env=tuple(adapter.process_variables()),
                              where=f"{framework}'s worker (this environment)")
    mode, variant = split_mode_form(form)
    extra = adapter.alternatives_of(mode)[variant].variables if variant else ()
    return dataclasses.replace(placement, env=tuple(placement.env) + tuple(extra) + (("BNBENCH_PARTICIPANT", str(index)),),
                               native_kernels=native)


def adapter_class_for(framework: str, form: str, index, *, in_process: bool = False, native: bool = True):
    """The class a participant is built from: the framework's own in this process, or a worker proxy
    (``native``: its worker without the environment's BLAS kernel overrides)."""
    local = local_class(framework)
    return local if in_process else remote_class(local, placement_for(framework, form, index, native=native))


def kernels_of(adapter_class, in_process: bool) -> Dict[str, Any]:
    """The BLAS a participant's process loaded, and the overrides its start removed."""
    if in_process or not hasattr(adapter_class, "worker_placement"):
        blas, problem = loaded_blas()
        return {"native": False, "removed": {}, "blas": blas, "problem": problem}
    try:
        return worker_kernels(worker_for(adapter_class.worker_placement))
    except WorkerError as error:
        return {"native": True, "removed": {}, "blas": [], "problem": (str(error).splitlines() or [""])[0]}


def worker_kernels(worker) -> Dict[str, Any]:
    """What a worker loaded and under which setting: {native, removed, blas, problem}."""
    reply, _ = worker.call("blas")
    return {"native": worker.placement.native_kernels, "removed": dict(worker.kernel_overrides_removed),
            "blas": reply["blas"], "problem": reply["problem"]}


def build_verified(adapter_class, spec, params: Dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, *, mode: str,
                   device: str, variant: Optional[str] = None, precision: Optional[str] = None, prepare=None):
    """Build the instance to be used (``prepare(adapter)`` runs on it first: its first step, so that
    compilation is paid and timed there), then check a second instance against the reference on
    the very spec and batches X, y; (the first instance, what ``prepare`` returned, the check's
    numerics fingerprint). AdapterError with the reason when it fails: an unverified adapter is
    never used."""
    adapter = adapter_class(spec, params, mode=mode, device=device, variant=variant, precision=precision)
    prepared = prepare(adapter) if prepare is not None else None
    report = check_equivalence(adapter_class(spec, params, mode=mode, device=device, variant=variant, precision=precision),
                               spec, params, X, y, precision=precision)
    if not report.ok:
        raise AdapterError("not verified against the reference, not timed: " + report.message(limit=2))
    return adapter, prepared, report.fingerprint()


def start(framework: str, form: str, label: str, *, spec, params: Dict[str, np.ndarray], X: np.ndarray, y: np.ndarray,
          device: str, threads: int, flops: float, adapter_class=None, index=0, in_process: bool = False,
          warmup: int = WARMUP_STEPS, precision: Optional[str] = None) -> Participant:
    """Build, warm and verify one participant (module docstring); its ``problem`` says why not. One
    whose worker ran without the environment's kernel overrides and then failed its check against
    the reference, or crashed, is started again under the machine's setting: its row says so
    (``kernels.native_failed``), and a wrong number is never timed."""
    arguments = dict(spec=spec, params=params, X=X, y=y, device=device, threads=threads, flops=flops, index=index,
                     in_process=in_process, warmup=warmup, precision=precision)
    participant = _start_once(framework, form, label, adapter_class=adapter_class, **arguments)
    removed = participant.kernels.get("removed")
    if participant.timed or not removed or not participant.problem.startswith(("not verified", "failed:")):
        return participant
    machine = adapter_class_for(framework, form, index, native=False)
    again = _start_once(framework, form, label, adapter_class=machine, **arguments)
    again.kernels.update(native_failed=participant.problem, overrides_kept=removed)
    return again


def _start_once(framework: str, form: str, label: str, *, spec, params: Dict[str, np.ndarray], X: np.ndarray,
                y: np.ndarray, device: str, threads: int, flops: float, adapter_class, index, in_process: bool,
                warmup: int, precision: Optional[str]) -> Participant:
    local = local_class(framework)
    mode, variant = split_mode_form(form)
    participant = Participant(framework, mode, label, variant=variant, flags=form_flags(local, form), flops=float(flops))
    try:
        reason = local.unsupported(spec, mode, device)
        if reason:
            raise AdapterError(f"unsupported: {reason}")
        adapter_class = adapter_class or adapter_class_for(framework, form, index, in_process=in_process)
        problem = (adapter_class.import_error() or adapter_class.device_unavailable(device)
                   or adapter_class.precision_unavailable(precision, device))
        if problem:
            raise AdapterError(problem)
        participant.version = adapter_class.version()
        adapter_class.set_threads(threads)
        if in_process:      # what this process holds without the model: build_verified builds it next
            before = steps.resident_kib()
            warm = lambda adapter: steps.prepare(adapter, X[0], y[0], warmup, before)  # noqa: E731
        else:       # the worker reads what it held before it built the model (bnbench.timing.server)
            warm = lambda adapter: timed_warm_up(adapter, X[0], y[0], warmup)  # noqa: E731
        try:
            participant.adapter, prepared, participant.fingerprint = build_verified(adapter_class, spec, params, X, y, mode=mode, device=device,
                                                           variant=variant, precision=precision, prepare=warm)
        finally:       # what the process loaded (its framework's BLAS is loaded by now), passed or not
            participant.kernels = kernels_of(adapter_class, in_process)
        if in_process:
            ready, participant.first_step_s, participant.warmup_s = prepared
            participant.runner = InProcess(ready)
        else:
            participant.first_step_s, participant.warmup_s = prepared
            participant.runner = participant.adapter.runner()
        participant.verified = True
    except WorkerFault as error:    # its worker died, hung or broke the protocol
        participant.release()
        participant.problem = f"failed: {getattr(error, 'reason', None) or (str(error).splitlines() or [''])[0]}"
    except (AdapterError, WorkerError) as error:
        participant.release()
        participant.problem = (str(error).splitlines() or [""])[0]
    except Exception as error:      # a framework that crashes is a row that says so, not a crashed run
        participant.release()
        participant.problem = f"failed: {type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
    return participant


def timed_warm_up(adapter, X: np.ndarray, y: np.ndarray, warmup: int) -> Tuple[float, float]:
    """A worker proxy's batch put on its device in the worker, its first step and warm-up timed there."""
    warm = adapter.prepare_timing(X, y, warmup=warmup)
    return warm["first_step"], warm["warmup_seconds"]


def start_peak(device: str, dtype: str, threads: int, *, worker=None, framework: str = "", label: str = PEAK) -> Participant:
    """The matmul peak (``framework`` empty: the peak framework's, in a worker of its own) or a
    framework's own matmul in ``worker`` (its kept form's): a bare timed participant."""
    mode = "own-matmul" if framework else "matmul"
    try:
        if worker is None:      # the machine's own kernels: the peak is the machine's, not the environment's
            worker = worker_for(Placement(python=sys.executable, env=(("BNBENCH_PARTICIPANT", PEAK),),
                                          where="the peak's worker", native_kernels=True))
            worker.call("set_threads", framework=peak_framework(device).name, n_threads=threads)
        reply, _ = worker.call("build_peak", device=device, dtype=dtype, framework=framework)
        kernels = worker_kernels(worker)
        return Participant(framework or PEAK, mode, label, runner=InWorker(worker, reply["handle"]), version=reply["library"],
                           verified=True, flops=float(reply["flops"]), flags=f"{reply['n']}^3 matmul, {reply['library']}",
                           kernels=kernels)
    except (WorkerError, AdapterError, ValueError) as error:    # no peak: the rows say so, the run goes on
        return Participant(framework or PEAK, mode, label, problem=(str(error).splitlines() or [""])[0])


def start_in_process_peak(device: str, dtype: str) -> Participant:
    """The matmul peak in this process (the asv benchmarks, which time in their own process)."""
    peak = MatmulPeak(device, dtype)
    return Participant(PEAK, "matmul", PEAK, verified=True, flops=peak.flops, version=peak.library,
                       flags=f"{peak.n}^3 matmul, {peak.library}", runner=InProcess(steps.Bare(peak.step)))
