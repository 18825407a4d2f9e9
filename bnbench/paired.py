"""``bnbench compare``: every framework measured together, in interleaved paired rounds.

1. One warm worker process per participant (framework and mode), started with the interpreter
   of that framework's environment (bnbench.worker), threads pinned in each.
2. Each participant is checked against the NumPy reference on the very spec and batches it will
   be timed on; one that fails is never timed (its row says so).
3. Its first step (compilation, tracing) and a short warm-up run outside the rounds and are
   reported apart.
4. Rounds: every participant runs one short burst of synchronised steps, in an order shuffled
   per round, so that all of a round's bursts sample the same phase of the machine. The matmul
   peak is one more participant, so the fraction of peak is paired the same way.
5. Ratios are taken within a round and summarised over rounds with bootstrap intervals
   (bnbench.stats); rounds go on until every interval is within +-2.5% or the budget ends.

An item named twice (``numpy,numpy``) is two participants: the A/A check. ``NAME:MODE+ALTERNATIVE``
is an alternative form of a mode (Adapter.alternatives_of), as the tuning logs time them.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bnbench import machine, progress, stats
from bnbench.adapters.base import AdapterError
from bnbench.peak import peak_framework
from bnbench.adapters import names
from bnbench.adapters.registry import local_class
from bnbench.flops import step_flops
from bnbench.reference import initial_parameters
from bnbench.trace import check_equivalence
from bnbench.worker import burst, close_workers, Placement, remote_class, worker_for, WorkerError
from bnbench.workload import batch_size, spec_for, timing_batches

PEAK = "peak"
# Rounds of every framework at medium on 2 cores take about 3 s: 150 s gives about 50. Two back-to-back
# runs of 20 rounds (60 s) left 2 of 12 intervals apart (the machine's state drifts between runs and
# slows frameworks unequally); of 50 rounds, every interval overlapped and no ratio moved over 3.6%.
DEFAULT_BUDGET = 150.0
BURST_SECONDS = 0.15
# A burst is at least this many steps, whose median it keeps: the first step of a burst may pay
# for the caches and the thread pools the other participants' bursts left cold (measured: at the
# large size, where a step takes about 0.1 s, one- and two-step bursts put NumPy's step at 100 ms
# where it takes 70 ms run back to back).
MIN_BURST_STEPS = 3
SETTLE_SECONDS = 0.05
WARMUP_STEPS = 3
MIN_ROUNDS = 10
CHECK_EVERY = 5
SCHEMA = 1


class CompareError(ValueError):
    """Bad participants, baseline or settings; the message names the flag and value."""


@dataclasses.dataclass
class Participant:
    framework: str
    mode: str
    label: str                       # framework:mode[+alternative], with #2, #3 for repeats (the A/A check)
    variant: Optional[str] = None    # an alternative form of the mode (None: the kept form)
    adapter: Any = None              # the worker-side adapter proxy (None for the peak)
    worker: Any = None
    handle: Optional[int] = None
    version: Optional[str] = None
    verified: bool = False
    first_step_s: Optional[float] = None
    warmup_s: Optional[float] = None
    flops: float = 0.0               # per step
    flags: str = ""
    medians: List[float] = dataclasses.field(default_factory=list)    # burst median per round
    steps: List[int] = dataclasses.field(default_factory=list)        # steps per burst
    problem: Optional[str] = None    # why it was not timed


def parse_items(text: Optional[str], flag: str = "--frameworks") -> List[Tuple[str, Optional[str]]]:
    """'numpy,NAME:MODE' -> [('numpy', None), ('NAME', 'MODE')] (no mode: the best mode); a mode
    may name an alternative form, 'NAME:MODE+ALTERNATIVE'."""
    if text is None:
        return []
    items = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        name, _, mode = item.partition(":")
        if not name or (":" in item and not mode) or mode.startswith("+") or mode.endswith("+"):
            raise CompareError(f"{flag} item {item!r} is not NAME, NAME:MODE or NAME:MODE+ALTERNATIVE")
        items.append((name, mode or None))
    if not items:
        raise CompareError(f"{flag} {text!r} names no framework")
    return items


def resolve_items(items: Sequence[Tuple[str, Optional[str]]], device: str, flag: str) -> List[Tuple[str, str]]:
    """(name, mode) pairs with modes resolved and checked against each adapter's declaration."""

    known = names()
    out = []
    for name, mode in items:
        if name not in known:
            raise CompareError(f"{flag}: unknown framework {name!r}; known: {', '.join(known)}")
        adapter = local_class(name)
        if not adapter.modes:
            raise CompareError(f"{flag}: {name} cannot run here: {adapter.missing_requirement()}")
        mode, variant = split_form(mode or adapter.best_mode or adapter.modes[0])
        if mode not in adapter.modes:
            raise CompareError(f"{flag}: {name} has no mode {mode!r}; modes: {', '.join(adapter.modes)}")
        alternatives = adapter.alternatives_of(mode)
        if variant and variant not in alternatives:
            raise CompareError(f"{flag}: {name} ({mode}) has no alternative {variant!r}; "
                               f"alternatives: {', '.join(alternatives)}")
        if device not in adapter.devices:
            raise CompareError(f"{flag}: {name} has no device {device!r}; devices: {', '.join(adapter.devices)}")
        out.append((name, f"{mode}+{variant}" if variant else mode))
    return out


def default_items(device: str) -> Tuple[List[Tuple[str, str]], List[Dict[str, str]]]:
    """Every framework that is installed here (checked without importing it) and has ``device``,
    in its best mode; and the others with the reason."""

    chosen, left_out = [], []
    for name in names():
        adapter = local_class(name)
        if not adapter.modes:
            left_out.append({"framework": name, "reason": adapter.missing_requirement() or "no modes"})
        elif device not in adapter.devices:
            left_out.append({"framework": name, "reason": f"no {device} device (devices: {', '.join(adapter.devices)})"})
        else:
            chosen.append((name, adapter.best_mode or adapter.modes[0]))
    return chosen, left_out


def _labels(pairs: Sequence[Tuple[str, str]]) -> List[str]:
    seen: Dict[str, int] = {}
    labels = []
    for name, mode in pairs:
        base = f"{name}:{mode}"
        seen[base] = seen.get(base, 0) + 1
        labels.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return labels


def split_form(form: str) -> Tuple[str, Optional[str]]:
    """'MODE+ALTERNATIVE' -> (MODE, ALTERNATIVE); 'MODE' -> (MODE, None)."""
    mode, _, variant = form.partition("+")
    return mode, variant or None


def form_flags(adapter, form: str) -> str:
    """What a form publishes: its mode's tuning flags, or what its alternative changes."""
    mode, variant = split_form(form)
    return adapter.alternatives_of(mode)[variant].what if variant else adapter.tuning_of(mode)


def placement_for(framework: str, form: str, index: int):
    """A worker placement of its own for participant ``index``: the framework's environment
    (or this interpreter), with the variables its alternative form starts with, and one that
    keeps the worker apart from every other one."""

    adapter = local_class(framework)
    placement = adapter.placement()
    if placement is None:
        placement = Placement(python=sys.executable, env=tuple(adapter.process_variables()),
                              where="a worker of this environment")
    mode, variant = split_form(form)
    extra = adapter.alternatives_of(mode)[variant].variables if variant else ()
    return dataclasses.replace(placement, env=tuple(placement.env) + tuple(extra) + (("BNBENCH_PARTICIPANT", str(index)),))


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


def _start_ceilings(participants: List[Participant], settings: Settings) -> List[Participant]:
    """One own-matmul participant per framework, in the worker of its first timed kept form."""
    ceilings = []
    for participant in participants:
        if participant.variant is not None or participant.adapter is None:
            continue
        if any(ceiling.framework == participant.framework for ceiling in ceilings):
            continue
        label = f"{participant.framework}:own-matmul"
        try:
            worker = participant.adapter.worker
            reply, _ = worker.call("build_peak", device=settings.device, dtype=settings.dtype, framework=participant.framework)
            ceilings.append(Participant(participant.framework, "own-matmul", label, worker=worker, handle=reply["handle"],
                                        version=reply["library"], verified=True, flops=float(reply["flops"]),
                                        flags=f"{reply['n']}^3 matmul, {reply['library']}"))
        except (WorkerError, AdapterError, ValueError) as error:
            ceilings.append(Participant(participant.framework, "own-matmul", label,
                                        problem=(str(error).splitlines() or [""])[0]))
    return ceilings


def _start(settings: Settings, bar) -> Tuple[List[Participant], Optional[Participant], Any]:
    """Start, verify and warm every participant and the peak (outside the rounds)."""

    spec = spec_for(settings.size, settings.dtype)
    m = batch_size(settings.size)
    params = initial_parameters(spec)
    X, y = timing_batches(spec, m)
    classes = [remote_class(local_class(name), placement_for(name, form, index)) for index, (name, form) in enumerate(settings.items)]
    # Every worker starts and imports its framework at once (imports wait on the disk as much as
    # on the cores); building, compiling and verifying then go one participant at a time, so that
    # each first step (compilation) is timed without the others' load.
    bar.set_description("starting the workers")
    runnable = [c for c, (_, form) in zip(classes, settings.items) if c.unsupported(spec, split_form(form)[0], settings.device) is None]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(runnable))) as pool:
        list(pool.map(lambda adapter_class: adapter_class.import_error(), runnable))
    participants = []
    for adapter_class, (name, form), label in zip(classes, settings.items, _labels(settings.items)):
        bar.set_description(f"starting {label}")
        local = local_class(name)
        mode, variant = split_form(form)
        participant = Participant(name, mode, label, variant=variant, flags=form_flags(local, form),
                                  flops=float(step_flops(spec, m)))
        participants.append(participant)
        try:
            reason = local.unsupported(spec, mode, settings.device)
            if reason:
                raise AdapterError(f"unsupported: {reason}")
            problem = adapter_class.import_error() or adapter_class.device_unavailable(settings.device)
            if problem:
                raise AdapterError(problem)
            participant.version = adapter_class.version()
            adapter_class.set_threads(settings.threads)
            # The timed instance first, so that its first step pays for compilation (reported
            # apart); then a second instance is checked against the reference on the same spec
            # and batches. One that fails is dropped before any round.
            timed_adapter = adapter_class(spec, params, mode=mode, device=settings.device, variant=variant)
            warm = timed_adapter.prepare_timing(X[0], y[0], warmup=WARMUP_STEPS)
            participant.first_step_s, participant.warmup_s = warm["first_step"], warm["warmup_seconds"]
            report = check_equivalence(adapter_class(spec, params, mode=mode, device=settings.device, variant=variant),
                                       spec, params, X, y)
            participant.verified = report.ok
            if not report.ok:
                raise AdapterError("not verified against the reference, not timed: " + report.message(limit=2))
            participant.adapter = timed_adapter
        except (AdapterError, WorkerError) as error:
            participant.problem = (str(error).splitlines() or [""])[0]
        except Exception as error:      # a framework that crashes is a row that says so, not a crashed run
            participant.problem = f"failed: {type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
        bar.update(1)
    bar.set_description("starting the matmul peak")
    peak = None
    try:
        worker = worker_for(Placement(python=sys.executable, env=(("BNBENCH_PARTICIPANT", PEAK),), where="the peak's worker"))
        worker.call("set_threads", framework=peak_framework(settings.device).name, n_threads=settings.threads)
        reply, _ = worker.call("build_peak", device=settings.device, dtype=settings.dtype)
        peak = Participant(PEAK, "matmul", PEAK, worker=worker, handle=reply["handle"], version=reply["library"],
                           verified=True, flops=float(reply["flops"]), flags=f"{reply['n']}^3 matmul, {reply['library']}")
    except (WorkerError, AdapterError, ValueError) as error:    # no peak: the rows say so, the run goes on
        peak = Participant(PEAK, "matmul", PEAK, problem=(str(error).splitlines() or [""])[0])
    bar.update(1)
    return participants, peak, spec


def _burst(participant: Participant, seconds: float) -> List[float]:
    if participant.adapter is not None:
        reply = participant.adapter.burst(seconds, min_steps=MIN_BURST_STEPS)
    else:
        reply = burst(participant.worker, participant.handle, seconds, min_steps=MIN_BURST_STEPS)
    return reply["steps"]


def _intervals(timed: List[Participant], baseline: Participant, peak: Optional[Participant], seed: int) -> List[stats.Interval]:
    out = [stats.paired_ratio(p.medians, baseline.medians, seed=seed) for p in timed if p is not baseline]
    if peak is not None and peak.medians:
        out += [stats.bootstrap_median(_fractions(p, peak), seed=seed) for p in timed]
    return out


def _fractions(participant: Participant, peak: Participant) -> np.ndarray:
    """Per round: the step's FLOP/s over the peak's FLOP/s of the same round."""
    return (participant.flops / peak.flops) * stats.round_ratios(peak.medians, participant.medians)


def run(settings: Settings) -> Dict[str, Any]:
    bar = progress.bar(len(settings.items) + 1, "participant", settings.progress)
    started = time.time()
    try:
        participants, peak, spec = _start(settings, bar)
    finally:
        bar.close()
    baseline_label = f"{settings.baseline[0]}:{settings.baseline[1]}"
    timed = [p for p in participants if p.problem is None]
    baseline = next((p for p in timed if p.label == baseline_label), None)
    if baseline is None:
        why = next((p.problem for p in participants if p.label == baseline_label), "not among the participants")
        _stop(participants)
        raise CompareError(f"--baseline {baseline_label}: cannot be timed here ({why})")
    timed_peak = peak if peak is not None and peak.problem is None else None
    ceilings = _start_ceilings(participants, settings) if settings.ceilings else []
    contenders = timed + ([timed_peak] if timed_peak is not None else []) + [c for c in ceilings if c.problem is None]
    rng = np.random.default_rng(settings.seed)
    rounds_started = time.perf_counter()
    stopped = "budget"
    bar = progress.bar(None, "round", settings.progress)
    try:
        while True:
            for index in rng.permutation(len(contenders)):
                participant = contenders[index]
                # A pause before every burst: the previous participant's spinning threads (OpenMP,
                # OpenBLAS wait actively for a while after their last task) must not steal the
                # cores of the next one, whose thread team then stalls at every barrier.
                time.sleep(settings.settle_seconds)
                steps = _burst(participant, settings.burst_seconds)
                participant.medians.append(stats.burst_median(steps))
                participant.steps.append(len(steps))
            rounds = len(baseline.medians)
            elapsed = time.perf_counter() - rounds_started
            if rounds >= MIN_ROUNDS and rounds % CHECK_EVERY == 0:
                intervals = _intervals(timed, baseline, timed_peak, settings.seed)
                worst = max((i.relative_half_width for i in intervals), default=0.0)
                bar.set_description(f"round {rounds}, widest interval +-{100 * worst:.1f}%")
                if stats.converged(intervals, min_rounds=MIN_ROUNDS):
                    stopped = "converged"
                    break
            bar.update(1)
            if elapsed >= settings.budget and rounds >= 2:
                break
    finally:
        bar.close()
        _stop(participants)
    seconds = time.perf_counter() - rounds_started
    return _result(settings, participants, timed_peak, baseline, spec, stopped, seconds, started,
                   peak_problem=None if peak is None else peak.problem, ceilings=ceilings)


def _stop(participants: List[Participant]) -> None:
    for participant in participants:
        participant.adapter = None
    close_workers()


def _result(settings: Settings, participants: List[Participant], peak: Optional[Participant], baseline: Participant,
            spec, stopped: str, seconds: float, started: float, peak_problem: Optional[str] = None,
            ceilings: Sequence[Participant] = ()) -> Dict[str, Any]:

    seed = settings.seed
    timed = sorted([p for p in participants if p.problem is None],
                   key=lambda p: (stats.paired_ratio(p.medians, baseline.medians, seed=seed).estimate, p.label))
    rows = []
    for position, participant in enumerate(timed):
        ratio = stats.paired_ratio(participant.medians, baseline.medians, seed=seed)
        step = stats.bootstrap_median(participant.medians, seed=seed)
        fraction = stats.bootstrap_median(_fractions(participant, peak), seed=seed) if peak is not None else None
        faster = timed[position - 1] if position else None
        versus = stats.paired_ratio(participant.medians, faster.medians, seed=seed) if faster is not None else None
        rows.append({
            "framework": participant.framework, "mode": participant.mode, "label": participant.label,
            "variant": participant.variant, "version": participant.version, "verified": True, "flags": participant.flags,
            "median_step_s": step.estimate, "step_ci_low": step.low, "step_ci_high": step.high,
            "ratio": ratio.estimate, "ci_low": ratio.low, "ci_high": ratio.high,
            "resolved": ratio.resolved if participant is not baseline else None,
            "fraction_of_peak": None if fraction is None else fraction.estimate,
            "fraction_ci_low": None if fraction is None else fraction.low,
            "fraction_ci_high": None if fraction is None else fraction.high,
            "gflops": participant.flops / step.estimate / 1e9,
            "first_step_s": participant.first_step_s, "warmup_s": participant.warmup_s,
            "steps_per_burst": float(np.median(participant.steps)),
            **_of_own_matmul(participant, ceilings, seed),
            "versus_next_faster": None if versus is None else {
                "label": faster.label, "ratio": versus.estimate, "ci_low": versus.low, "ci_high": versus.high,
                "resolved": versus.resolved},
        })
    for participant in participants:
        if participant.problem is not None:
            rows.append({"framework": participant.framework, "mode": participant.mode, "label": participant.label,
                         "variant": participant.variant, "version": participant.version, "verified": participant.verified, "flags": participant.flags,
                         "median_step_s": None, "ratio": None, "ci_low": None, "ci_high": None, "resolved": None,
                         "fraction_of_peak": None, "not_timed": participant.problem,
                         "first_step_s": participant.first_step_s})
    peak_entry = None if peak_problem is None else {"problem": peak_problem}
    if peak is not None:
        peak_step = stats.bootstrap_median(peak.medians, seed=seed)
        peak_entry = {"library": peak.version, "flags": peak.flags, "flops": peak.flops, "median_s": peak_step.estimate,
                      "gflops": peak.flops / peak_step.estimate / 1e9}
    ceiling_rows = []
    for ceiling in ceilings:
        row = {"framework": ceiling.framework, "label": ceiling.label, "library": ceiling.version, "flags": ceiling.flags}
        if ceiling.problem is not None:
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
    return {
        "schema": SCHEMA, "tool": "bnbench compare", "machine": info, "machine_id": info["id"],
        "created": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "size": settings.size, "dtype": settings.dtype, "device": settings.device, "baseline": baseline.label,
        "rounds": len(baseline.medians), "seconds": round(seconds, 2), "budget": settings.budget, "stopped": stopped,
        "target_half_width": stats.TARGET_HALF_WIDTH, "confidence": stats.CONFIDENCE,
        "burst_seconds": settings.burst_seconds, "settle_seconds": settings.settle_seconds, "threads": settings.threads, "python": sys.version.split()[0],
        "spec": spec.to_dict(), "m": batch_size(settings.size), "peak": peak_entry, "rows": rows,
        "ceilings": ceiling_rows,
        "left_out": settings.left_out,
        # every participant's burst median per round: any other baseline or pair can be recomputed
        "round_medians": {p.label: p.medians for p in [*timed] + ([peak] if peak is not None else [])
                          + [c for c in ceilings if c.problem is None]},
    }


def _of_own_matmul(participant: Participant, ceilings: Sequence[Participant], seed: int) -> Dict[str, Any]:
    """The step's FLOP/s over its framework's own matmul's, per round: how near the step comes to
    what the framework's kernels allow (1: every step FLOP at the own matmul's rate)."""
    ceiling = next((c for c in ceilings if c.framework == participant.framework and c.problem is None), None)
    if ceiling is None:
        return {}
    fraction = stats.bootstrap_median(_fractions(participant, ceiling), seed=seed)
    return {"of_own_matmul": fraction.estimate, "of_own_matmul_ci_low": fraction.low, "of_own_matmul_ci_high": fraction.high}


def table(result: Dict[str, Any]) -> str:
    """The comparison as a plain-text table (what the command prints)."""
    header = ["framework", "mode", f"ratio to {result['baseline']} [95% CI]", "vs baseline", "vs next faster", "median step",
              "of peak", "first step", "verified"]
    lines = []
    for row in result["rows"]:
        if row.get("median_step_s") is None:
            lines.append([row["framework"], row["mode"], "-", "-", "-", "-", "-", "-",
                          f"{'no' if not row['verified'] else 'yes'}: {row.get('not_timed', '')}"[:90]])
            continue
        versus = row.get("versus_next_faster")
        lines.append([
            row["label"].split(":")[0], row["label"].split(":", 1)[1],
            f"{row['ratio']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]",
            "baseline" if row["resolved"] is None else ("resolved" if row["resolved"] else "not resolved"),
            "-" if versus is None else f"{versus['ratio']:.3f} ({'resolved' if versus['resolved'] else 'not resolved'})",
            format_seconds(row["median_step_s"]),
            "-" if row["fraction_of_peak"] is None else f"{row['fraction_of_peak']:.2f}",
            format_seconds(row["first_step_s"]), "yes"])
    widths = [max(len(str(line[i])) for line in [header] + lines) for i in range(len(header))]
    fmt = lambda line: "  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(line) for line in lines])


def format_seconds(seconds: Optional[float]) -> str:
    if seconds is None or seconds != seconds:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"
