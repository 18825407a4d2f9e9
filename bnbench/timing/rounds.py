"""Paired rounds: every participant timed together, in interleaved rounds (``bnbench compare``, the
tuning logs and the sweeps all run them).

1. One warm worker process per participant (framework and form), started with the interpreter of
   that framework's environment, threads pinned in each; built, warmed and checked against the
   NumPy reference on the very spec and batches it is timed on (bnbench.timing.participant).
2. A control: a second instance of the baseline, in a worker of its own placed like the others,
   timed in the same rounds. Its ratio to the baseline is the run's noise floor: what one
   framework measures against itself, beyond the round-to-round noise the intervals cover (which
   core a worker sits on, each process's memory layout). A row is resolved only when its interval
   lies wholly outside the floor's spread around 1 (``stats.resolved_beyond``).
3. Rounds (bnbench.timing.schedule): every participant runs one short burst per round, in an
   order shuffled per round, each between two bursts of the baseline, one in each of its
   processes; its ratio of the round is its burst over their geometric mean. Rows are thus
   divided by the baseline measured a fraction of a second away, in the same phase of the machine,
   and by both of its processes. Pinned workers share their cores within a round, moved round by
   round. On a device with asynchronous dispatch each burst is two: steps queued and synchronised
   once (the figure that ranks), and each step synchronised (its latency). Each burst starts once
   every worker has gone quiet (bnbench.timing.quiet).
4. The matmul peak is one more participant, so the fraction of peak is paired the same way; a
   framework's own matmul too, where asked (``ceilings``).
5. Ratios are taken within a round and summarised over rounds with bootstrap intervals
   (bnbench.timing.stats); rounds go on until every row's interval, the floor's included, is
   within +-2.5% or the budget ends. Rows whose interval is still wider say so, with the budget
   that would have converged them.
6. Process sets (bnbench.timing.sets): ``bnbench compare`` splits its budget over four sets of
   workers, every one closed and started again between them, so that what stays fixed for the
   life of a process is sampled four times and widens the intervals by as much as the sets disagree.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bnbench import progress
from bnbench.reference import initial_parameters
from bnbench.timing import participant as participants_module
from bnbench.timing import quiet, schedule, sets, stats, summary
from bnbench.timing.flops import step_flops
from bnbench.timing.form import Form, numbered, split_mode_form
from bnbench.timing.participant import Participant, queued_device, start, start_peak
from bnbench.timing.worker import WorkerError, close_workers
from bnbench.timing.workload import batch_size, spec_for, timing_batches, unavailable_on

# A round of every framework (16) at medium on 2 cores takes about 10 s. Two back-to-back runs of 150 s
# (16 rounds) moved a row by 11-13% at the most; of 300 s (31 rounds), by 6.5% (bnbench.timing.summary),
# and by 2-5% split over sets of workers (bnbench.timing.sets).
DEFAULT_BUDGET = 300.0
MAX_BUDGET_S = 86400.0          # a day of rounds: a budget of nan or inf never ended
BURST_SECONDS = 0.15
SETTLE_SECONDS = 0.05
MIN_ROUNDS = 10
CHECK_EVERY = 5
BUILDS_AT_ONCE = 4


class RoundsError(ValueError):
    """A run of rounds refused: its baseline, size, sets or budget; the message names the flag and value."""


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
    # the rounds split over this many sets of freshly started workers (bnbench.timing.sets)
    sets: int = 1
    # bursts queued and synchronised once, with the latency beside them: by the device (None), or
    # forced (the GPU run's dry run takes that path on the CPU)
    queued: Optional[bool] = None

    @property
    def queues(self) -> bool:
        return queued_device(self.device) if self.queued is None else self.queued

    @property
    def baseline_label(self) -> str:
        return str(Form.of(*self.baseline))

    @property
    def spec_dtype(self) -> str:
        """The spec's dtype: tf32 is a float32 spec whose matmuls run in TF32 (``precision``)."""
        return "float32" if self.dtype == "tf32" else self.dtype

    @property
    def precision(self) -> Optional[str]:
        return "tf32" if self.dtype == "tf32" else None


# --------------------------------------------------------------------------- placement
def _pin(workers: Sequence[Participant], round_index: int, threads: int, cores: Sequence[int]) -> None:
    sets = schedule.core_sets(round_index, len(workers), cores, threads)
    for participant, chosen in zip(workers, sets):
        worker = participant.worker_client
        if worker is not None and not participant.unplaced:
            try:
                worker.call("set_affinity", cores=chosen)
            except (WorkerError, OSError) as error:     # left where the system puts it, and the result says so
                participant.unplaced = (str(error).splitlines() or [""])[0]


# --------------------------------------------------------------------------- starting
def _start(settings: Settings, bar, *, together: int = 1) -> Tuple[List[Participant], Optional[Participant],
                                                                    Optional[Participant], Any, int]:
    """Start, verify and warm every participant, the control and the peak (outside the rounds),
    building ``together`` of them at a time."""
    spec = settings.spec or spec_for(settings.size, settings.spec_dtype)
    m = settings.m or batch_size(settings.size)
    params = initial_parameters(spec)
    X, y = timing_batches(spec, m)
    items = list(settings.items)
    names = [str(form) for form in numbered(items)]
    if settings.control:
        items.append(settings.baseline)
        names.append(str(Form.of(*settings.baseline).control))
    classes = [participants_module.adapter_class_for(name, form, index) for index, (name, form) in enumerate(items)]
    flops = float(step_flops(spec, m))

    def begin(index: int) -> Participant:
        bar.set_description(f"starting {names[index]}")
        (name, form), adapter_class = items[index], classes[index]
        participant = start(name, form, names[index], spec=spec, params=params, X=X, y=y, device=settings.device,
                            threads=settings.threads, flops=flops, adapter_class=adapter_class, index=index,
                            precision=settings.precision)
        bar.update(1)
        return participant

    # The baseline first: a run whose baseline cannot be timed stops before the others start.
    first = items.index(settings.baseline) if settings.baseline in items else None
    baseline = begin(first) if first is not None else None
    if baseline is None or not baseline.timed:
        return [baseline] if baseline is not None else [], None, None, spec, m
    # Every other worker starts and imports its framework at once (imports wait on the disk as much
    # as on the cores); building, compiling and verifying then go ``together`` participants at a
    # time: one in the first process set, so that each first step (compilation) is timed without
    # the others' load, and the result publishes the first set's (sets.join).
    bar.set_description("starting the workers")
    runnable = [c for index, (c, (_, form)) in enumerate(zip(classes, items))
                if index != first and c.unsupported(spec, split_mode_form(form)[0], settings.device) is None]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(runnable))) as pool:
        list(pool.map(lambda adapter_class: adapter_class.import_error(), runnable))
    rest = [index for index in range(len(items)) if index != first]
    if together > 1:
        with concurrent.futures.ThreadPoolExecutor(max_workers=together) as pool:
            built = dict(zip(rest, pool.map(begin, rest)))
    else:
        built = {index: begin(index) for index in rest}
    started = [baseline if index == first else built[index] for index in range(len(items))]
    control = started.pop() if settings.control else None
    bar.set_description("starting the matmul peak")
    peak = start_peak(settings.device, settings.spec_dtype, settings.threads)   # tf32 runs: the float32 peak
    bar.update(1)
    return started, control, peak, spec, m


def _start_ceilings(participants: List[Participant], settings: Settings) -> List[Participant]:
    """One own-matmul participant per framework, in the worker of its first timed kept form."""
    ceilings: List[Participant] = []
    for participant in participants:
        if participant.variant is not None or participant.worker_client is None:
            continue
        if any(ceiling.framework == participant.framework for ceiling in ceilings):
            continue
        ceilings.append(start_peak(settings.device, settings.spec_dtype, settings.threads, worker=participant.worker_client,
                                   framework=participant.framework, label=f"{participant.framework}:own-matmul"))
    return ceilings


# --------------------------------------------------------------------------- the rounds
def _measure(participant: Participant, settings: Settings) -> Tuple[float, float, int]:
    """One burst of ``participant``: (its median step, its latency, its steps). On a device with
    asynchronous dispatch, its steps queued and synchronised once, then a latency burst (on the
    CPU the two are one measurement)."""
    queued = settings.queues and participant.adapter is not None     # the peak's bare steps: per step
    reply = participant.burst(settings.burst_seconds, how="queued" if queued else "per_step")
    if queued:
        latency = participant.burst(settings.burst_seconds, how="per_step")
        return reply["queued"], _seconds(stats.burst_median(latency["steps"])), reply["count"]
    median = _seconds(stats.burst_median(reply["steps"]))
    return median, median, len(reply["steps"])


def _seconds(value: Optional[float]) -> float:
    return float("nan") if value is None else float(value)


class AnchorFailed(Exception):
    """The baseline, or its control, failed in the rounds: no row can be divided by it any more."""


def fault_reason(error: Exception) -> str:
    """A worker's failure in a few words: what ``WorkerFault.reason`` says, else the first line."""
    return getattr(error, "reason", None) or (str(error).splitlines() or [type(error).__name__])[0]


def _round(contenders: List[Participant], anchors: List[Participant], pids: Sequence[int], settings: Settings,
           rng: np.random.Generator, where: str = "") -> List[Participant]:
    """One round: every contender's burst between two of the baseline's (``schedule.chain``), each
    after the workers went quiet; each participant's figures of the round appended to it. A
    contender whose worker fails (dies, runs past its burst's deadline, breaks the protocol) fails
    its own row, saying why and in which round, and is returned among the failed; an anchor's
    failure raises AnchorFailed before anything of the round is kept."""
    layout = schedule.chain(rng.permutation(len(contenders)), len(anchors), int(rng.integers(len(anchors))))
    values, latencies, counts = [], [], []
    failed: List[Participant] = []
    previous = None
    for kind, index in layout:
        # Before every burst the workers go quiet (bnbench.timing.quiet): the previous
        # participant's spinning threads must not steal the next one's cores.
        waited, _ = quiet.wait_until_quiet(pids, window=settings.settle_seconds)
        if previous is not None:
            previous.busy_after.append(max(0.0, waited - settings.settle_seconds))
        previous = anchors[index] if kind == schedule.ANCHOR else contenders[index]
        try:
            median, latency, count = _measure(previous, settings)
        except WorkerError as error:
            reason = f"{fault_reason(error)} in {where}round {len(previous.medians) + 1}"
            if kind == schedule.ANCHOR:
                raise AnchorFailed(f"{previous.label} {reason}") from None
            previous.problem = f"failed: {reason}"
            failed.append(previous)
            median, latency, count = float("nan"), float("nan"), 0
        values.append(median)
        latencies.append(latency)
        counts.append(count)
    for index, median, beside in schedule.beside(layout, values):
        participant = contenders[index]
        participant.medians.append(median)
        participant.references.append(beside)
    for position, (kind, index) in enumerate(layout):
        if kind == schedule.OTHER:
            contenders[index].latencies.append(latencies[position])
            contenders[index].steps.append(counts[position])
    # the baseline's own figures: the median of its bursts in the round, in each process
    for which, anchor in enumerate(anchors):
        positions = [p for p, (kind, index) in enumerate(layout) if kind == schedule.ANCHOR and index == which]
        anchor.medians.append(float(np.median([values[p] for p in positions])))
        anchor.latencies.append(float(np.median([latencies[p] for p in positions])))
        anchor.steps.append(int(np.median([counts[p] for p in positions])))
    baseline = anchors[0]
    if len(anchors) == 1:
        baseline.references.append(baseline.medians[-1])
        return failed
    # The control's reading of the round: the median, over every pair of neighbouring anchors (one
    # burst apart, as a row is from its anchors), of its process's burst over the copy's. The
    # baseline's own row stands against both of its processes, as every row does.
    control = anchors[1]
    floor = float(np.median(schedule.anchor_pairs(layout, values)))
    control.references.append(control.medians[-1] / floor)
    baseline.references.append(float(np.sqrt(baseline.medians[-1] * control.medians[-1])))
    return failed


@dataclasses.dataclass
class _Team:
    """The workers of one process set, started and verified, and their parts in a round."""

    participants: List[Participant]
    control: Optional[Participant]
    peak: Optional[Participant]
    ceilings: List[Participant]
    anchors: List[Participant]        # the baseline, then its control where it is timed
    contenders: List[Participant]
    pinned: List[Participant]
    pids: List[int]

    @property
    def everyone(self) -> List[Participant]:
        return self.participants + ([self.control] if self.control is not None else [])

    def drop(self, participant: Participant) -> None:
        """A participant that failed leaves the rounds (its worker is gone)."""
        self.contenders = [p for p in self.contenders if p is not participant]
        self.pinned = [p for p in self.pinned if p is not participant]
        pid = participant.process_id
        if pid is not None and all(p.process_id != pid for p in self.anchors + self.contenders):
            self.pids = [p for p in self.pids if p != pid]


def _start_team(settings: Settings, index: int, cores: Sequence[int]) -> Tuple[_Team, Any, int]:
    where = f"set {index + 1} of {settings.sets}: " if settings.sets > 1 else ""
    bar = progress.bar(len(settings.items) + 1 + settings.control, f"{where}participant", settings.progress)
    # after the first set, as many builds at once as there are cores (up to BUILDS_AT_ONCE): every
    # framework at medium, 48 s to start one at a time on 2 cores, 38 s two at a time, 40 s four
    together = 1 if index == 0 else max(1, min(len(cores), BUILDS_AT_ONCE))
    try:
        participants, control, peak, spec, m = _start(settings, bar, together=together)
    finally:
        bar.close()
    timed = [p for p in participants if p.timed]
    baseline = next((p for p in timed if p.label == settings.baseline_label), None)
    if baseline is None:
        why = next((p.problem for p in participants if p.label == settings.baseline_label), "not among the participants")
        _stop(participants + ([control] if control is not None else []), settings.keep_workers)
        raise RoundsError(f"--baseline {settings.baseline_label}: cannot be timed here ({why})")
    timed_control = control if control is not None and control.timed else None
    timed_peak = peak if peak is not None and peak.timed else None
    ceilings = _start_ceilings(participants, settings) if settings.ceilings else []
    anchors = [baseline] + ([timed_control] if timed_control else [])
    contenders = ([p for p in timed if p is not baseline] + ([timed_peak] if timed_peak else [])
                  + [c for c in ceilings if c.timed])
    # the workers of one round, pinned by rotation (a framework's own matmul shares its kept form's worker)
    pinned = anchors + [p for p in contenders if p not in ceilings]
    pids = sorted({p.process_id for p in anchors + contenders if p.process_id is not None})
    return _Team(participants, control, peak, ceilings, anchors, contenders, pinned, pids), spec, m


def _joined(teams: Sequence[_Team], counts: Sequence[int]):
    """The participants of every set so far, one per label (bnbench.timing.sets): (participants,
    control, peak, ceilings)."""
    participants = sets.join([team.participants for team in teams], counts)
    control = sets.join([[team.control] for team in teams], counts)[0] if teams[0].control is not None else None
    peak = sets.join([[team.peak] for team in teams], counts)[0] if teams[0].peak is not None else None
    ceilings = sets.join([team.ceilings for team in teams], counts)
    return participants, control, peak, ceilings


def _rounds(teams: List[_Team], counts: List[int], settings: Settings, share: float, cores: Sequence[int],
            rotating: bool, rng: np.random.Generator) -> Tuple[str, float]:
    """The rounds of the last set: until its share of the budget ends, or every interval over the
    sets so far is within the target once it has run ``MIN_ROUNDS`` of its own; (how it stopped, seconds)."""
    team = teams[-1]
    began = time.perf_counter()
    bar = progress.bar(None, "round", settings.progress)
    try:
        while True:
            if rotating:
                _pin(team.pinned, sum(counts), settings.threads, cores)
            try:
                for participant in _round(team.contenders, team.anchors, team.pids, settings, rng,
                                          f"set {len(teams)}, " if settings.sets > 1 else ""):
                    team.drop(participant)
            except AnchorFailed as error:       # the set's rounds until then still count
                error.elapsed = time.perf_counter() - began
                raise
            counts[-1] += 1
            elapsed = time.perf_counter() - began
            if counts[-1] >= MIN_ROUNDS and counts[-1] % CHECK_EVERY == 0:
                participants, control, _, _ = _joined(teams, counts)
                timed = [p for p in participants if p.timed]
                baseline = next(p for p in timed if p.label == settings.baseline_label)
                intervals = summary.intervals(timed, baseline, control, settings.seed, sets.labels_of(counts))
                worst = max((i.relative_half_width for i in intervals), default=0.0)
                bar.set_description(f"round {sum(counts)}, widest interval +-{100 * worst:.1f}%")
                if stats.converged(intervals, min_rounds=MIN_ROUNDS):
                    return "converged", elapsed
            bar.update(1)
            if elapsed >= share and counts[-1] >= 2:
                return "budget", elapsed
    finally:
        bar.close()


def run(settings: Settings) -> Dict[str, Any]:
    problem = unavailable_on(settings.size, settings.device)
    if problem and settings.spec is None:
        raise RoundsError(f"--size {settings.size}: {problem}")
    if not 1 <= settings.sets <= sets.MAX_SETS:
        raise RoundsError(f"--sets {settings.sets!r} must be from 1 to {sets.MAX_SETS}")
    if not 0 < settings.budget <= MAX_BUDGET_S:
        raise RoundsError(f"--budget {settings.budget!r} must be more than 0 and at most {MAX_BUDGET_S:g} seconds")
    started = time.time()
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    rotating = settings.rotate and schedule.core_sets(0, 1, cores, settings.threads) is not None
    rng = np.random.default_rng(settings.seed)
    teams: List[_Team] = []
    counts: List[int] = []
    stopped, seconds, failure = "budget", 0.0, None
    for index, share in enumerate(sets.shares(settings.budget, settings.sets)):
        last = index == settings.sets - 1
        try:
            team, spec, m = _start_team(settings, index, cores)
        except RoundsError as error:
            if not sum(counts):
                raise
            # a later set whose baseline cannot be started: the sets done so far are published
            stopped, failure = "baseline failed", f"set {index + 1} could not start: {error}"
            break
        teams.append(team)
        counts.append(0)
        try:
            stopped, elapsed = _rounds(teams, counts, settings, share, cores, rotating, rng)
            seconds += elapsed
            if settings.memory and last:
                _read_memory(team, settings)
        except AnchorFailed as error:
            stopped, failure = "baseline failed", str(error)
            seconds += getattr(error, "elapsed", 0.0)
            if not counts[-1]:       # a set without a round has nothing to join
                teams, counts = teams[:-1], counts[:-1]
            if not sum(counts):
                raise RoundsError(f"--baseline {settings.baseline_label}: {error}; no round was completed, "
                                   "nothing was timed") from None
        finally:
            _stop(team.everyone, settings.keep_workers and last and failure is None)
        if failure is not None:
            break
    participants, control, peak, ceilings = _joined(teams, counts)
    baseline = next(p for p in participants if p.label == settings.baseline_label)
    result = summary.result(settings, participants, control, peak if peak is not None and peak.timed else None, baseline,
                            spec, m, stopped, seconds, started, peak_problem=None if peak is None else peak.problem,
                            ceilings=ceilings, placement=schedule.placement_of(rotating, cores, settings.threads),
                            sets=sets.labels_of(counts))
    if failure is not None:
        result["failure"] = failure
    return result


def _read_memory(team: _Team, settings: Settings) -> None:
    """One more burst per timed participant, reading its memory; a worker that fails then fails its row."""
    for participant in (p for p in team.participants if p.timed):
        try:
            reply = participant.burst(settings.burst_seconds, how="per_step", memory=True)
        except WorkerError as error:
            participant.problem = f"failed: {fault_reason(error)} reading its memory after the rounds"
            continue
        participant.memory.append(reply.get("memory_bytes"))
        participant.memory_kind = reply.get("memory_kind")


def _stop(participants: Sequence[Participant], keep_workers: bool = False) -> None:
    for participant in participants:
        participant.release()
    if not keep_workers:
        close_workers()
