"""Paired rounds: every participant timed together, in interleaved rounds (``bnbench compare``, the
tuning logs and the sweeps all run them).

1. One warm worker process per participant (framework and form), started with the interpreter of
   that framework's environment, threads pinned in each; built, warmed and checked against the
   NumPy reference on the very spec and batches it is timed on (bnbench.timing.participant).
2. A control: a second instance of the baseline, in a worker of its own placed like the others,
   timed in the same rounds. Its ratio to the baseline is the run's noise floor: what one
   framework measures against itself, beyond the round-to-round noise the intervals cover (which
   core a worker sits on, each process's memory layout). A row is resolved only when its interval
   lies wholly outside the floor's spread around 1 (``stats.resolved_beyond``). Every row is
   divided by the baseline measured in both its processes (``reference``), so that one process
   of the baseline running a little apart does not move every row with it.
3. Rounds: every participant runs one short burst, in an order shuffled per round, so that all of
   a round's bursts sample the same phase of the machine. Where workers are pinned to fewer cores
   than the machine has, each round rotates which worker runs on which cores, so that a core's
   own speed averages out within the run instead of staying with one participant. On a device
   with asynchronous dispatch each participant runs two bursts per round: its steps queued and
   synchronised once (the figure that ranks), and each step synchronised (its latency). Each
   burst starts once every worker has gone quiet (bnbench.timing.quiet).
4. The matmul peak is one more participant, so the fraction of peak is paired the same way; a
   framework's own matmul too, where asked (``ceilings``).
5. Ratios are taken within a round and summarised over rounds with bootstrap intervals
   (bnbench.timing.stats); rounds go on until every row's interval, the floor's included, is
   within +-2.5% or the budget ends. Rows whose interval is still wider say so, with the budget
   that would have converged them.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bnbench import progress
from bnbench.reference import initial_parameters
from bnbench.timing import machine, quiet, stats
from bnbench.timing import participant as participants_module
from bnbench.timing.flops import step_flops
from bnbench.timing.participant import Participant, labels, queued_device, start, start_peak
from bnbench.timing.worker import WorkerError, close_workers
from bnbench.timing.workload import batch_size, spec_for, timing_batches, unavailable_on

# Rounds of every framework at medium on 2 cores take about 3 s: 150 s gives about 50. Two back-to-back
# runs of 20 rounds (60 s) left 2 of 12 intervals apart (the machine's state drifts between runs and
# slows frameworks unequally); of 50 rounds, every interval overlapped and no ratio moved over 3.6%.
DEFAULT_BUDGET = 150.0
BURST_SECONDS = 0.15
SETTLE_SECONDS = 0.05
MIN_ROUNDS = 10
CHECK_EVERY = 5
SCHEMA = 2
CONTROL = "control"


class CompareError(ValueError):
    """Bad participants, baseline or settings; the message names the flag and value."""


@dataclasses.dataclass
class Settings:
    items: List[Tuple[str, str]]
    size: str = "medium"
    dtype: str = "float32"
    device: str = "cpu"
    baseline: Tuple[str, str] = ("numpy", "eager")
    budget: float = DEFAULT_BUDGET
    threads: int = 2
    burst_seconds: float = BURST_SECONDS
    settle_seconds: float = SETTLE_SECONDS
    seed: int = 0
    left_out: List[Dict[str, str]] = dataclasses.field(default_factory=list)
    progress: bool = True
    # Also time each framework's own matmul (Adapter.matmul_step, the peak's n), in its kept
    # form's worker: the ceiling of that framework's steps, paired like the peak (tuning logs).
    ceilings: bool = False
    control: bool = True          # the A/A control of the baseline: the run's noise floor
    rotate: bool = True           # rotate pinned workers over the cores, round by round
    memory: bool = False          # one more burst per participant after the rounds, reading its memory
    spec: Any = None              # a spec and batch size of its own (the sweeps); default: the size's
    m: Optional[int] = None
    keep_workers: bool = False    # leave the workers running for the next run (a sweep imports each framework once)
    # bursts queued and synchronised once, with the latency beside them: by the device (None), or
    # forced (the GPU run's dry run takes that path on the CPU)
    queued: Optional[bool] = None

    @property
    def queues(self) -> bool:
        return queued_device(self.device) if self.queued is None else self.queued

    @property
    def baseline_label(self) -> str:
        return f"{self.baseline[0]}:{self.baseline[1]}"

    @property
    def spec_dtype(self) -> str:
        """The spec's dtype: tf32 is a float32 spec whose matmuls run in TF32 (``precision``)."""
        return "float32" if self.dtype == "tf32" else self.dtype

    @property
    def precision(self) -> Optional[str]:
        return "tf32" if self.dtype == "tf32" else None


# --------------------------------------------------------------------------- placement
def core_sets(round_index: int, n_workers: int, cores: Sequence[int], threads: int) -> Optional[List[List[int]]]:
    """The cores each worker runs on in round ``round_index``, or None where workers are not pinned
    (each of them may use every core: ``threads`` at least the cores there are). The cores are cut
    into slots of ``threads``; worker i takes slot (i + round) modulo the slots, so that over the
    rounds every worker runs on every slot equally often."""
    cores = sorted(cores)
    if threads >= len(cores):
        return None
    slots = len(cores) // threads
    return [cores[((i + round_index) % slots) * threads:((i + round_index) % slots + 1) * threads] for i in range(n_workers)]


def main_thread_cores(round_index: int, n_workers: int, cores: Sequence[int]) -> List[List[int]]:
    """Where workers use every core: the core each worker's main thread (the one that runs its
    step, and its framework's dispatch) is held to in round ``round_index``, its other threads
    left on every core. Left alone, the system keeps a process's main thread on one core for the
    whole run, and a core slower than the other (interrupts, a neighbour) stays with one worker."""
    cores = sorted(cores)
    return [[cores[(i + round_index) % len(cores)]] for i in range(n_workers)]


def placement_of(rotating: bool, cores: Sequence[int], threads: int) -> str:
    """How the rounds place their workers (what ``_pin`` does with these cores and threads)."""
    if not rotating:
        return "workers not pinned to cores"
    if core_sets(0, 1, cores, threads) is not None:
        return "workers pinned to their cores, rotated round by round"
    return "every worker on every core, its main thread's core rotated round by round"


def _pin(workers: Sequence[Participant], round_index: int, threads: int, cores: Sequence[int]) -> None:
    sets = core_sets(round_index, len(workers), cores, threads)
    main_only = sets is None
    if main_only:
        sets = main_thread_cores(round_index, len(workers), cores)
    for participant, chosen in zip(workers, sets):
        worker = participant.worker_client
        if worker is not None and not participant.unplaced:
            try:
                worker.call("set_affinity", cores=chosen, main_only=main_only)
            except (WorkerError, OSError) as error:     # left where the system puts it, and the result says so
                participant.unplaced = (str(error).splitlines() or [""])[0]


# --------------------------------------------------------------------------- starting
def _start(settings: Settings, bar) -> Tuple[List[Participant], Optional[Participant], Optional[Participant], Any, int]:
    """Start, verify and warm every participant, the control and the peak (outside the rounds)."""
    spec = settings.spec or spec_for(settings.size, settings.spec_dtype)
    m = settings.m or batch_size(settings.size)
    params = initial_parameters(spec)
    X, y = timing_batches(spec, m)
    items = list(settings.items)
    names = labels(items)
    if settings.control:
        items.append(settings.baseline)
        names.append(f"{settings.baseline_label}#{CONTROL}")
    classes = [participants_module.adapter_class_for(name, form, index) for index, (name, form) in enumerate(items)]
    # Every worker starts and imports its framework at once (imports wait on the disk as much as
    # on the cores); building, compiling and verifying then go one participant at a time, so that
    # each first step (compilation) is timed without the others' load.
    bar.set_description("starting the workers")
    runnable = [c for c, (_, form) in zip(classes, items)
                if c.unsupported(spec, participants_module.split_form(form)[0], settings.device) is None]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(runnable))) as pool:
        list(pool.map(lambda adapter_class: adapter_class.import_error(), runnable))
    flops = float(step_flops(spec, m))
    started = []
    for index, (adapter_class, (name, form), label) in enumerate(zip(classes, items, names)):
        bar.set_description(f"starting {label}")
        started.append(start(name, form, label, spec=spec, params=params, X=X, y=y, device=settings.device,
                             threads=settings.threads, flops=flops, adapter_class=adapter_class, index=index,
                             precision=settings.precision))
        bar.update(1)
    control = started.pop() if settings.control else None
    bar.set_description("starting the matmul peak")
    peak = start_peak(settings.device, settings.spec_dtype, settings.threads)   # tf32 runs: the float32 peak
    bar.update(1)
    return started, control, peak, spec, m


def _start_ceilings(participants: List[Participant], settings: Settings) -> List[Participant]:
    """One own-matmul participant per framework, in the worker of its first timed kept form."""
    ceilings: List[Participant] = []
    for participant in participants:
        if participant.variant is not None or participant.adapter is None:
            continue
        if any(ceiling.framework == participant.framework for ceiling in ceilings):
            continue
        ceilings.append(start_peak(settings.device, settings.spec_dtype, settings.threads, worker=participant.adapter.worker,
                                   framework=participant.framework, label=f"{participant.framework}:own-matmul"))
    return ceilings


# --------------------------------------------------------------------------- the rounds
def _measure(participant: Participant, settings: Settings) -> None:
    """One round of ``participant``: its burst (queued on a device), and its latency burst on a
    device with asynchronous dispatch (on the CPU the two are one measurement)."""
    queued = settings.queues and participant.adapter is not None
    reply = participant.burst(settings.burst_seconds, how="queued" if queued else "per_step")
    if queued:
        participant.medians.append(reply["queued"])
        participant.steps.append(reply["count"])
        latency = participant.burst(settings.burst_seconds, how="per_step")
        participant.latencies.append(stats.burst_median(latency["steps"]))
    else:
        participant.medians.append(stats.burst_median(reply["steps"]))
        participant.steps.append(len(reply["steps"]))
        participant.latencies.append(participant.medians[-1])


def _fractions(participant: Participant, peak: Participant) -> np.ndarray:
    """Per round: the step's FLOP/s over the peak's FLOP/s of the same round."""
    return (participant.flops / peak.flops) * stats.round_ratios(peak.medians, participant.medians)


def reference(baseline: Participant, control: Optional[Participant]) -> np.ndarray:
    """What every row is divided by, round by round: the baseline measured in its two processes,
    the geometric mean of its copy and its control's (a process of the baseline that runs a little
    faster or slower than another, for the whole run, then moves every ratio by half of that at
    most); the baseline's copy alone where there is no control."""
    first = np.asarray(baseline.medians, dtype=np.float64)
    if control is None or not control.timed or len(control.medians) != len(first):
        return first
    return np.sqrt(first * np.asarray(control.medians, dtype=np.float64))


def _intervals(timed: List[Participant], baseline: Participant, control: Optional[Participant],
               seed: int) -> List[stats.Interval]:
    """The intervals the rounds go on for: every row's ratio to the reference, and the floor's."""
    against = reference(baseline, control)
    out = [stats.paired_ratio(p.medians, against, seed=seed) for p in timed if p is not baseline]
    if control is not None and control.timed:
        out.append(stats.paired_ratio(control.medians, baseline.medians, seed=seed))
    return out


def run(settings: Settings) -> Dict[str, Any]:
    problem = unavailable_on(settings.size, settings.device)
    if problem and settings.spec is None:
        raise CompareError(f"--size {settings.size}: {problem}")
    bar = progress.bar(len(settings.items) + 1 + settings.control, "participant", settings.progress)
    started = time.time()
    try:
        participants, control, peak, spec, m = _start(settings, bar)
    finally:
        bar.close()
    timed = [p for p in participants if p.timed]
    baseline = next((p for p in timed if p.label == settings.baseline_label), None)
    if baseline is None:
        why = next((p.problem for p in participants if p.label == settings.baseline_label), "not among the participants")
        _stop(participants + ([control] if control is not None else []), settings.keep_workers)
        raise CompareError(f"--baseline {settings.baseline_label}: cannot be timed here ({why})")
    timed_control = control if control is not None and control.timed else None
    timed_peak = peak if peak is not None and peak.timed else None
    ceilings = _start_ceilings(participants, settings) if settings.ceilings else []
    contenders = (timed + ([timed_control] if timed_control else []) + ([timed_peak] if timed_peak else [])
                  + [c for c in ceilings if c.timed])
    # the workers of one round, pinned by rotation (a framework's own matmul shares its kept form's worker)
    pinned = [p for p in contenders if p not in ceilings]
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    rotating = settings.rotate and len(cores) > 1
    pids = sorted({p.process_id for p in contenders if p.process_id is not None})
    rng = np.random.default_rng(settings.seed)
    rounds_started = time.perf_counter()
    stopped = "budget"
    bar = progress.bar(None, "round", settings.progress)
    try:
        while True:
            if rotating:
                _pin(pinned, len(baseline.medians), settings.threads, cores)
            previous = None
            for index in rng.permutation(len(contenders)):
                # Before every burst the workers go quiet (bnbench.timing.quiet): the previous
                # participant's spinning threads must not steal the next one's cores.
                waited, _ = quiet.wait_until_quiet(pids, window=settings.settle_seconds)
                if previous is not None:
                    previous.busy_after.append(max(0.0, waited - settings.settle_seconds))
                previous = contenders[index]
                _measure(previous, settings)
            rounds = len(baseline.medians)
            elapsed = time.perf_counter() - rounds_started
            if rounds >= MIN_ROUNDS and rounds % CHECK_EVERY == 0:
                intervals = _intervals(timed, baseline, timed_control, settings.seed)
                worst = max((i.relative_half_width for i in intervals), default=0.0)
                bar.set_description(f"round {rounds}, widest interval +-{100 * worst:.1f}%")
                if stats.converged(intervals, min_rounds=MIN_ROUNDS):
                    stopped = "converged"
                    break
            bar.update(1)
            if elapsed >= settings.budget and rounds >= 2:
                break
        seconds = time.perf_counter() - rounds_started
        if settings.memory:
            bar.set_description("memory")
            for participant in timed:
                reply = participant.burst(settings.burst_seconds, how="per_step", memory=True)
                participant.memory.append(reply.get("memory_bytes"))
                participant.memory_kind = reply.get("memory_kind")
    finally:
        bar.close()
        _stop(participants + ([control] if control is not None else []), settings.keep_workers)
    return _result(settings, participants, control, timed_peak, baseline, spec, m, stopped, seconds, started,
                   peak_problem=None if peak is None else peak.problem, ceilings=ceilings,
                   placement=placement_of(rotating, cores, settings.threads))


def _stop(participants: Sequence[Participant], keep_workers: bool = False) -> None:
    for participant in participants:
        participant.adapter = None
        participant.prepared = None
    if not keep_workers:
        close_workers()


# --------------------------------------------------------------------------- the result
def _floor(control: Optional[Participant], baseline: Participant, seed: int) -> Optional[stats.Interval]:
    if control is None or not control.timed or not control.medians:
        return None
    return stats.paired_ratio(control.medians, baseline.medians, seed=seed)


def _result(settings: Settings, participants: List[Participant], control: Optional[Participant], peak: Optional[Participant],
            baseline: Participant, spec, m: int, stopped: str, seconds: float, started: float,
            peak_problem: Optional[str] = None, ceilings: Sequence[Participant] = (),
            placement: str = "workers not pinned to cores") -> Dict[str, Any]:
    seed = settings.seed
    floor = _floor(control, baseline, seed)
    spread = stats.floor_spread(floor)
    against = reference(baseline, control)
    ratios = {p.label: stats.paired_ratio(p.medians, against, seed=seed) for p in participants if p.timed}
    timed = sorted([p for p in participants if p.timed], key=lambda p: (ratios[p.label].estimate, p.label))
    rounds = len(baseline.medians)
    rows, unconverged = [], []
    for position, participant in enumerate(timed):
        ratio = ratios[participant.label]
        step = stats.bootstrap_median(participant.medians, seed=seed)
        latency = stats.bootstrap_median(participant.latencies, seed=seed)
        fraction = stats.bootstrap_median(_fractions(participant, peak), seed=seed) if peak is not None else None
        faster = timed[position - 1] if position else None
        versus = stats.paired_ratio(participant.medians, faster.medians, seed=seed) if faster is not None else None
        is_baseline = participant is baseline
        converged = is_baseline or ratio.relative_half_width <= stats.TARGET_HALF_WIDTH
        if not converged:
            unconverged.append({"label": participant.label, "half_width": ratio.relative_half_width,
                                "budget_to_converge": stats.budget_to_converge(ratio, seconds)})
        memory = [value for value in participant.memory if value is not None]
        rows.append({
            "framework": participant.framework, "mode": participant.mode, "label": participant.label,
            "variant": participant.variant, "version": participant.version, "verified": True, "flags": participant.flags,
            "median_step_s": step.estimate, "step_ci_low": step.low, "step_ci_high": step.high,
            "latency_s": latency.estimate, "latency_ci_low": latency.low, "latency_ci_high": latency.high,
            "ratio": ratio.estimate, "ci_low": ratio.low, "ci_high": ratio.high,
            "resolved": None if is_baseline else stats.resolved_beyond(ratio, spread),
            "converged": converged, "half_width": 0.0 if is_baseline else ratio.relative_half_width,
            "fraction_of_peak": None if fraction is None else fraction.estimate,
            "fraction_ci_low": None if fraction is None else fraction.low,
            "fraction_ci_high": None if fraction is None else fraction.high,
            "gflops": participant.flops / step.estimate / 1e9,
            "first_step_s": participant.first_step_s, "warmup_s": participant.warmup_s,
            "steps_per_burst": float(np.median(participant.steps)),
            "busy_after_burst_s": float(np.median(participant.busy_after)) if participant.busy_after else None,
            **({"unplaced": participant.unplaced} if participant.unplaced else {}),
            "memory_bytes": max(memory) if memory else None, "memory_kind": participant.memory_kind,
            **_of_own_matmul(participant, ceilings, peak, seed),
            "versus_next_faster": None if versus is None else {
                "label": faster.label, "ratio": versus.estimate, "ci_low": versus.low, "ci_high": versus.high,
                "resolved": stats.resolved_beyond(versus, spread)},
        })
    for participant in participants:
        if not participant.timed:
            rows.append({"framework": participant.framework, "mode": participant.mode, "label": participant.label,
                         "variant": participant.variant, "version": participant.version, "verified": participant.verified,
                         "flags": participant.flags, "median_step_s": None, "latency_s": None, "ratio": None,
                         "ci_low": None, "ci_high": None, "resolved": None, "fraction_of_peak": None,
                         "not_timed": participant.problem, "first_step_s": participant.first_step_s})
    peak_entry = None if peak_problem is None else {"problem": peak_problem}
    if peak is not None:
        peak_step = stats.bootstrap_median(peak.medians, seed=seed)
        peak_entry = {"library": peak.version, "flags": peak.flags, "flops": peak.flops, "median_s": peak_step.estimate,
                      "gflops": peak.flops / peak_step.estimate / 1e9}
    ceiling_rows = []
    for ceiling in ceilings:
        row = {"framework": ceiling.framework, "label": ceiling.label, "library": ceiling.version, "flags": ceiling.flags}
        if not ceiling.timed:
            row["problem"] = ceiling.problem
        else:
            step = stats.bootstrap_median(ceiling.medians, seed=seed)
            fraction = stats.bootstrap_median(_fractions(ceiling, peak), seed=seed) if peak is not None else None
            row.update({"median_s": step.estimate, "gflops": ceiling.flops / step.estimate / 1e9,
                        "fraction_of_peak": None if fraction is None else fraction.estimate,
                        "fraction_ci_low": None if fraction is None else fraction.low,
                        "fraction_ci_high": None if fraction is None else fraction.high})
        ceiling_rows.append(row)
    info = machine.identify()
    floor_entry = None
    if control is not None:
        floor_entry = ({"label": control.label, "problem": control.problem} if floor is None else
                       {"label": control.label, "ratio": floor.estimate, "ci_low": floor.low, "ci_high": floor.high,
                        "spread": spread})
    queued = settings.queues
    return {
        "schema": SCHEMA, "tool": "bnbench compare", "machine": info, "machine_id": info["id"],
        "created": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "size": settings.size, "dtype": settings.dtype, "device": settings.device, "baseline": baseline.label,
        "rounds": rounds, "seconds": round(seconds, 2), "budget": settings.budget, "stopped": stopped,
        "target_half_width": stats.TARGET_HALF_WIDTH, "confidence": stats.CONFIDENCE,
        "burst_seconds": settings.burst_seconds, "settle_seconds": settings.settle_seconds, "threads": settings.threads,
        "quiet": {"window_s": settings.settle_seconds, "busy_cores": quiet.BUSY_CORES, "max_wait_s": quiet.MAX_WAIT_S},
        "python": sys.version.split()[0],
        "timing": ("steps queued, one synchronisation per burst (median_step_s); each step synchronised (latency_s)"
                   if queued else "each step synchronised: median_step_s and latency_s are one measurement"),
        "reference": ("the baseline in two processes: the geometric mean, round by round, of its copy and its control"
                      if floor is not None else "the baseline's copy"),
        "placement": placement,
        "spec": spec.to_dict(), "m": m, "peak": peak_entry, "floor": floor_entry, "rows": rows,
        "unconverged": unconverged, "ceilings": ceiling_rows, "left_out": settings.left_out,
        # every participant's figure per round: any other baseline or pair can be recomputed from it
        "round_medians": {p.label: p.medians for p in [*timed] + ([peak] if peak is not None else [])
                          + ([control] if control is not None and control.timed else [])
                          + [c for c in ceilings if c.timed]},
    }


def _of_own_matmul(participant: Participant, ceilings: Sequence[Participant], peak, seed: int) -> Dict[str, Any]:
    """The step's FLOP/s over its framework's own matmul's, per round: how near the step comes to
    what the framework's kernels allow (1: every step FLOP at the own matmul's rate)."""
    ceiling = next((c for c in ceilings if c.framework == participant.framework and c.timed), None)
    if ceiling is None:
        return {}
    fraction = stats.bootstrap_median(_fractions(participant, ceiling), seed=seed)
    return {"of_own_matmul": fraction.estimate, "of_own_matmul_ci_low": fraction.low, "of_own_matmul_ci_high": fraction.high}
