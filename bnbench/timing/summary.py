"""What a run of paired rounds publishes (bnbench.timing.rounds runs them): each row's ratio to the
baseline beside it, its interval, the floor, the step times and fractions of peak, over the rounds
in which the machine ran undisturbed.

**Undisturbed rounds.** These machines also change state for minutes at a time: on the 2-core AMD
EPYC, NumPy's step at medium went from 5 ms to 8 ms for half of a 5-minute run, and with it jax's
by 1.4 times, Theano's by 1.15 and MLX's and the matmul peak's not at all (a neighbour's load on the
shared caches, as far as the figures tell). A row's ratio then depends on how much of the run fell
in which state: two back-to-back runs of 300 s at medium, the first half in the slow state and the
second hardly, moved by 11.7% at the median row and 53% at the most (MLX), 7 of 15 intervals
apart. The baseline, timed beside every burst, reads the state round by round: a round whose
baseline step (its two processes' geometric mean) ran more than ``UNDISTURBED_MARGIN`` slower
than its fastest tenth of the run is left out of every figure, and the result says how many were
left out and how much slower the baseline ran in them (``undisturbed``). On those two runs the
moves became 2.6% at the median and 6.5% at the most, 1 of 15 intervals apart; on two pairs of
150 s runs without such a change, 3.3% and 1.6% at the median before, 3.0% and 2.9% after.

**Undisturbed bursts.** The state also changes within a round (10 s at medium): the round's
baseline, a median over its bursts, may read undisturbed while a row's burst ran in the slow state.
In the slow state NumPy ran 1.64 times slower and MXNet hardly, so MXNet's ratio of such a round
was 1.33 instead of 2.1, Theano's 2.4 instead of 3.35; one run's MXNet set of 8 rounds, 3 of
them like that, took its median from them. The baseline's two bursts beside each row's (its
``references``) read the state of that very burst: a row's round counts only where they ran
within the same margin of the run's fastest tenth (``Kept.of``; in runs of at least
``PER_BURST_MIN_ROUNDS`` rounds), and each row says over how many rounds its figures were taken
(``rounds_counted``). Recomputed so from the rounds of three
back-to-back pairs at medium, a row moved by 2.6%, 1.9% and 4.8% at the most instead of 3.3%, 2.6%
and 6.9%, and the median interval narrowed from ±6.6% to ±4.0% and from ±7.9% to ±5.0%. Every round's figures
stay in the result (``round_medians``, ``round_references``, ``undisturbed_rounds``, and the limit
as ``undisturbed.limit_s``).
"""
from __future__ import annotations

import dataclasses
import datetime
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bnbench.timing import machine, quiet, records, stats, verdicts
from bnbench.timing.flops import analytic_memory, memory_ratio
from bnbench.timing.participant import Participant
from bnbench.timing.peak import fraction_per_round
from bnbench.timing.rows import Ceiling, Floor, Peak, Row, Verdict

# A round whose baseline ran this much slower than its fastest tenth of the run is disturbed: within
# one state the baseline's rounds spread by a few percent, the slow states measured were 1.3-1.6
# times slower; 0.15 also dropped the upper tail of the fast state (half the rounds of some runs).
UNDISTURBED_MARGIN = 0.25
# Single bursts are judged against the fastest tenth of at least this many rounds: of fewer, that
# tenth is one round, too rough a limit for two bursts (a short run on a loaded machine lost every
# burst of a row to it); such a run keeps the rounds' rule alone (``undisturbed.per_burst``).
PER_BURST_MIN_ROUNDS = 10


def disturbed_above(baseline: Participant) -> float:
    """The baseline's step above which the machine ran disturbed: ``UNDISTURBED_MARGIN`` above the
    fastest tenth of its steps in the rounds (its ``references``: both of its processes where there
    is a control); NaN where it has none."""
    steps = np.asarray(baseline.references, dtype=np.float64)
    finite = steps[np.isfinite(steps) & (steps > 0)]
    return float(np.percentile(finite, 10)) * (1.0 + UNDISTURBED_MARGIN) if finite.size else float("nan")


def within(steps: Sequence[float], limit: float) -> np.ndarray:
    """Per round: whether the baseline's step ``steps`` (of the round, or beside one burst) ran
    undisturbed, no slower than ``limit``."""
    data = np.asarray(steps, dtype=np.float64)
    return np.isfinite(data) & (data > 0) & (data <= limit)


def undisturbed(baseline: Participant) -> np.ndarray:
    """Per round: whether the machine ran undisturbed, read from the baseline's step in the round."""
    return within(baseline.references, disturbed_above(baseline))


def state_of(baseline: Participant, kept: np.ndarray, limit: float, per_burst: bool = False) -> Dict[str, Any]:
    """How many rounds were kept, and how much slower the baseline ran in those left out."""
    steps = np.asarray(baseline.references, dtype=np.float64)
    left_out = steps[~kept & np.isfinite(steps)]
    return {"rounds": int(kept.sum()), "of": int(kept.size), "margin": UNDISTURBED_MARGIN,
            "limit_s": limit if np.isfinite(limit) else None, "per_burst": per_burst,
            "baseline_step_s": float(np.median(steps[kept])) if kept.any() else None,
            "left_out_slower": float(np.median(left_out) / np.median(steps[kept])) if left_out.size and kept.any() else None}


def normalised(participant: Participant) -> np.ndarray:
    """Per round: the participant's burst over the baseline's beside it (its ratio of the round)."""
    return stats.round_ratios(participant.medians, participant.references)


def fractions(participant: Participant, peak: Participant) -> np.ndarray:
    """Per round: the step's FLOP/s over the peak's FLOP/s of the same round, each against the
    baseline beside it (bnbench.timing.peak.fraction_per_round)."""
    return fraction_per_round(participant.flops, normalised(participant), peak.flops, normalised(peak))


@dataclasses.dataclass(frozen=True)
class Kept:
    """The rounds a run's figures are taken over (the undisturbed ones), and the process set each
    round ran in (bnbench.timing.sets): every figure's interval resamples both. ``of`` narrows
    them to the rounds in which a participant's own bursts ran undisturbed."""

    mask: np.ndarray
    sets: np.ndarray
    seed: int
    limit: float = float("inf")       # bursts beside a baseline slower than this are left out (``of``)

    @classmethod
    def over(cls, baseline: Participant, sets: Optional[Sequence[int]], seed: int) -> "Kept":
        mask = undisturbed(baseline)
        per_burst = disturbed_above(baseline) if mask.size >= PER_BURST_MIN_ROUNDS else float("inf")
        return cls(mask, np.zeros(mask.size, dtype=int) if sets is None else np.asarray(sets, dtype=int), seed, per_burst)

    @property
    def per_burst(self) -> bool:
        return bool(np.isfinite(self.limit))

    def of(self, participant: Participant) -> "Kept":
        """The kept rounds in which the baseline beside ``participant``'s burst (its ``references``)
        also ran undisturbed."""
        if len(participant.references) != self.mask.size:
            raise ValueError(f"{participant.label}: {len(participant.references)} rounds in a run of {self.mask.size}")
        if not self.per_burst:
            return self
        return dataclasses.replace(self, mask=self.mask & within(participant.references, self.limit))

    def sets_apart(self, values: Sequence[float]) -> Optional[float]:
        """How far apart the sets' medians of ``values`` stand (the highest over the lowest, less
        one), where the sets disagree beyond their own rounds' noise: every set has enough rounds
        to tell (``stats.MIN_ROUNDS_TO_PROJECT``) and the highest set's interval lies wholly above
        the lowest's. None otherwise, and with fewer than two sets."""
        data = np.asarray(values, dtype=np.float64)[self.mask]
        groups = self.sets[self.mask]
        parts = [data[(groups == g) & np.isfinite(data)] for g in np.unique(groups)]
        if len(parts) < 2 or min(part.size for part in parts) < stats.MIN_ROUNDS_TO_PROJECT:
            return None
        each = sorted((stats.bootstrap_median(part, seed=self.seed) for part in parts), key=lambda i: i.estimate)
        low, high = each[0], each[-1]
        if low.estimate <= 0 or high.low <= low.high:
            return None
        return float(high.estimate / low.estimate - 1.0)

    def rounds_share(self, values: Sequence[float]) -> float:
        """The share of the interval of ``values`` that more rounds would narrow (``stats.rounds_share``:
        the rest is what the sets disagree on)."""
        data = np.asarray(values, dtype=np.float64)[self.mask]
        groups = self.sets[self.mask]
        return stats.rounds_share([data[groups == g] for g in np.unique(groups)], seed=self.seed)

    def budget(self, values: Sequence[float], interval: stats.Interval, seconds: float) -> Dict[str, Any]:
        """What more rounds would do for ``interval`` (of ``values``, after ``seconds`` of rounds):
        ``budget_to_converge``, with ``narrowed_by_rounds`` and ``sets_apart`` beside it. Rounds
        narrow what differs from round to round, not what the sets disagree on: where half the sets'
        distance alone is wider than the target, no budget would do; otherwise the budget grows the
        rounds' share of the width alone, or the whole width where four sets' rough share leaves the
        rounds none (that the sets dominate is then unproven: their own intervals overlap)."""
        apart = self.sets_apart(values)
        share = self.rounds_share(values)
        budget = None
        if apart is None or apart / 2 < stats.TARGET_HALF_WIDTH:
            budget = stats.budget_to_converge(interval, seconds, narrowed_by_rounds=share) \
                or stats.budget_to_converge(interval, seconds)
        return {"budget_to_converge": budget, "narrowed_by_rounds": share, "sets_apart": apart}

    def interval(self, values: Sequence[float]) -> stats.Interval:
        """The median of ``values`` (one per round) over the kept rounds, with its interval."""
        return stats.bootstrap_median(np.asarray(values, dtype=np.float64)[self.mask], groups=self.sets[self.mask],
                                      seed=self.seed)


def counted(participant: Participant, kept: Kept) -> Participant:
    """``participant``, or where not one of its bursts counts (every one beside a disturbed baseline,
    or in a round left out) the same participant not timed, saying so: no figure, rather than one
    taken over nothing."""
    if not participant.timed or np.isfinite(np.asarray(participant.medians, dtype=np.float64)[kept.of(participant).mask]).any():
        return participant
    return dataclasses.replace(participant, problem=(
        f"no round counted: the baseline beside each of its {len(participant.medians)} bursts ran disturbed (over "
        f"{1 + UNDISTURBED_MARGIN:g} times its fastest tenth) or the round was left out"))


def _figure(interval: Optional[stats.Interval]) -> Optional[stats.Interval]:
    """An interval taken over at least one round, or None (two participants' counted rounds may not meet)."""
    return interval if interval is not None and interval.rounds else None


def ratio(participant: Participant, kept: Kept) -> stats.Interval:
    """A row's ratio: the median over the undisturbed rounds of its burst over the baseline beside it."""
    return kept.of(participant).interval(normalised(participant))


def intervals(timed: List[Participant], baseline: Participant, control: Optional[Participant],
              seed: int, sets: Optional[Sequence[int]] = None) -> List[stats.Interval]:
    """The intervals the rounds go on for: every row's ratio to the baseline, and the floor's."""
    kept = Kept.over(baseline, sets, seed)
    out = [ratio(p, kept) for p in timed if p is not baseline]
    if control is not None and control.timed:
        out.append(ratio(control, kept))
    return out


def verdict_of(interval: Optional[stats.Interval], spread: float, eps: float, label: str) -> Verdict:
    """A row against the row ``label``, from their paired ratio's ``interval`` (bnbench.timing.verdicts)."""
    decided, reason = verdicts.decide(interval, spread, eps)
    return Verdict(verdict=decided, ratio=None if interval is None else interval.estimate,
                   ci_low=None if interval is None else interval.low, ci_high=None if interval is None else interval.high,
                   epsilon=eps, label=label, reason=reason)


def timed_row(participant: Participant, row_ratio: stats.Interval, own: Kept, faster: Optional[Participant],
              peak: Optional[Participant], ceilings: Sequence[Participant], spread: float, eps: float, *,
              baseline: str, is_baseline: bool, analytic: Optional[int]) -> Row:
    """A timed participant's row, over the rounds it counted (``own``); ``faster``: the next faster
    row; ``eps``: the run's equivalence margin."""
    step = own.interval(participant.medians)
    latency = own.interval(participant.latencies)
    fraction = _figure(own.of(peak).interval(fractions(participant, peak)) if peak is not None else None)
    versus = _figure(own.of(faster).interval(stats.round_ratios(normalised(participant), normalised(faster)))
                     if faster is not None else None)
    memory = [value for value in participant.memory if value is not None]
    held = max(memory) if memory else None
    return Row(
        framework=participant.framework, mode=participant.mode, label=participant.label, verified=True,
        variant=participant.variant, version=participant.version, flags=participant.flags,
        median_step_s=step.estimate, step_ci_low=step.low, step_ci_high=step.high,
        latency_s=latency.estimate, latency_ci_low=latency.low, latency_ci_high=latency.high,
        ratio=row_ratio.estimate, ci_low=row_ratio.low, ci_high=row_ratio.high, rounds_counted=row_ratio.rounds,
        resolved=None if is_baseline else stats.resolved_beyond(row_ratio, spread),
        converged=is_baseline or row_ratio.relative_half_width <= stats.TARGET_HALF_WIDTH,
        half_width=0.0 if is_baseline else row_ratio.relative_half_width,
        sets_apart=None if is_baseline else own.sets_apart(normalised(participant)),
        **_interval_fields("fraction_of_peak", "fraction_ci", fraction),
        **_of_own_matmul(participant, ceilings, own),
        gflops=participant.flops / step.estimate / 1e9,
        first_step_s=participant.first_step_s, warmup_s=participant.warmup_s,
        steps_per_burst=float(np.median(participant.steps)),
        busy_after_burst_s=float(np.median(participant.busy_after)) if participant.busy_after else None,
        unplaced=participant.unplaced or None,
        memory_bytes=held, memory_kind=participant.memory_kind,
        memory_ratio=memory_ratio(held, participant.memory_kind, analytic),
        kernels=participant.kernels, fingerprint=participant.fingerprint,
        vs_baseline=None if is_baseline else verdict_of(row_ratio, spread, eps, baseline),
        vs_next_faster=None if faster is None else verdict_of(versus, spread, eps, faster.label))


def untimed_row(participant: Participant) -> Row:
    """A participant not timed: who it is and why not, no figure."""
    return Row(framework=participant.framework, mode=participant.mode, label=participant.label,
               verified=participant.verified, variant=participant.variant, version=participant.version,
               flags=participant.flags, not_timed=participant.problem, first_step_s=participant.first_step_s,
               kernels=participant.kernels)


def ceiling_part(ceiling: Participant, kept: Kept, peak: Optional[Participant]) -> Ceiling:
    """A framework's own matmul: its step and its fraction of the peak, or why it has none."""
    entry = Ceiling(framework=ceiling.framework, label=ceiling.label, library=ceiling.version, flags=ceiling.flags)
    if not ceiling.timed:
        return dataclasses.replace(entry, problem=ceiling.problem)
    own = kept.of(ceiling)
    step = own.interval(ceiling.medians)
    fraction = _figure(own.of(peak).interval(fractions(ceiling, peak)) if peak is not None else None)
    return dataclasses.replace(entry, median_s=step.estimate, gflops=ceiling.flops / step.estimate / 1e9,
                               **_interval_fields("fraction_of_peak", "fraction_ci", fraction))


def result(settings: Any, participants: List[Participant], control: Optional[Participant], peak: Optional[Participant],
           baseline: Participant, spec, m: int, stopped: str, seconds: float, started: float, *,
           peak_problem: Optional[str], ceilings: Sequence[Participant], placement: str,
           sets: Sequence[int]) -> Dict[str, Any]:
    """The JSON of a run of rounds (``bnbench compare``'s, the tuning logs' and the sweeps'); ``sets``:
    the process set of each round."""
    kept = Kept.over(baseline, sets, settings.seed)
    participants = [counted(p, kept) for p in participants]
    control = counted(control, kept) if control is not None else None
    ceilings = [counted(c, kept) for c in ceilings]
    peak = counted(peak, kept) if peak is not None else None
    if peak is not None and not peak.timed:
        peak, peak_problem = None, peak.problem
    floor = ratio(control, kept) if control is not None and control.timed and control.medians else None
    spread = stats.floor_spread(floor)
    eps = verdicts.epsilon(spread)
    ratios = {p.label: ratio(p, kept) for p in participants if p.timed}
    timed = sorted([p for p in participants if p.timed], key=lambda p: (ratios[p.label].estimate, p.label))
    rounds = len(baseline.medians)
    analytic = analytic_memory(spec, m)
    rows: List[Row] = []
    unconverged = []
    for position, participant in enumerate(timed):
        own = kept.of(participant)
        row = timed_row(participant, ratios[participant.label], own, timed[position - 1] if position else None, peak,
                        ceilings, spread, eps, baseline=baseline.label, is_baseline=participant is baseline,
                        analytic=analytic)
        if not row.converged:
            unconverged.append({"label": participant.label, "half_width": row.half_width,
                                **own.budget(normalised(participant), ratios[participant.label], seconds)})
        rows.append(row)
    rows += [untimed_row(participant) for participant in participants if not participant.timed]
    peak_entry = None if peak_problem is None else Peak(problem=peak_problem)
    if peak is not None:
        peak_step = kept.of(peak).interval(peak.medians)
        peak_entry = Peak(library=peak.version, flags=peak.flags, flops=peak.flops, median_s=peak_step.estimate,
                          gflops=peak.flops / peak_step.estimate / 1e9, kernels=peak.kernels)
    rows, peak_entry = refuse_fractions_above_one(rows, peak_entry)
    ceiling_parts = [ceiling_part(ceiling, kept, peak) for ceiling in ceilings]
    info = machine.identify()
    floor_entry = None
    if control is not None:
        floor_entry = (Floor(label=control.label, problem=control.problem) if floor is None else
                       Floor(label=control.label, ratio=floor.estimate, ci_low=floor.low, ci_high=floor.high, spread=spread))
    queued = settings.queues
    every = ([*timed] + ([peak] if peak is not None else []) + ([control] if control is not None and control.timed else [])
             + [c for c in ceilings if c.timed])
    return {
        **records.COMPARISON.stamp(), "machine": info, "machine_id": info["id"],
        "created": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "size": settings.size, "dtype": settings.dtype, "device": settings.device, "baseline": baseline.label,
        "rounds": rounds, "undisturbed": state_of(baseline, kept.mask, disturbed_above(baseline), kept.per_burst), "seconds": round(seconds, 2),
        "process_sets": int(len(set(int(s) for s in sets))) if len(sets) else 1,
        "budget": settings.budget, "stopped": stopped,
        "target_half_width": stats.TARGET_HALF_WIDTH, "confidence": stats.CONFIDENCE,
        "epsilon": eps, "floor_spread": spread,
        "burst_seconds": settings.burst_seconds, "settle_seconds": settings.settle_seconds, "threads": settings.threads,
        "quiet": {"window_s": settings.settle_seconds, "busy_cores": quiet.BUSY_CORES, "max_wait_s": quiet.MAX_WAIT_S},
        "python": sys.version.split()[0],
        "timing": ("steps queued, one synchronisation per burst (median_step_s); each step synchronised (latency_s)"
                   if queued else "each step synchronised: median_step_s and latency_s are one measurement"),
        "reference": ("each burst between two of the baseline's, one in each of its processes (its copy and its "
                      "control): a row's ratio in a round is its burst over their geometric mean"
                      if floor is not None else "each burst between two of the baseline's copy: a row's ratio in a "
                      "round is its burst over their geometric mean"),
        "placement": placement,
        # what the environment forced and the timed processes ran without (bnbench.timing.kernels)
        "kernel_overrides_removed": baseline.kernels.get("removed", {}),
        "spec": spec.to_dict(), "m": m, "analytic_memory_bytes": analytic,
        "peak": None if peak_entry is None else peak_entry.to_json(),
        "floor": None if floor_entry is None else floor_entry.to_json(), "rows": [row.to_json() for row in rows],
        "unconverged": unconverged, "ceilings": [part.to_json() for part in ceiling_parts], "left_out": settings.left_out,
        # every participant's figure per round, and the baseline's beside it (its ratio of the round is
        # the one over the other): any other pair can be recomputed from them
        "round_medians": {p.label: p.medians for p in every},
        "round_references": {p.label: p.references for p in every},
        "undisturbed_rounds": [bool(k) for k in kept.mask],
        # per participant, the rounds its figures count (Kept.of): the one rule, written once
        "round_counted": {p.label: [bool(k) for k in kept.of(p).mask] for p in every},
        "round_sets": [int(s) for s in sets],
    }


def refuse_fractions_above_one(rows: Sequence[Row], peak: Optional[Peak]) -> Tuple[List[Row], Optional[Peak]]:
    """A step faster than the matmul peak: the peak is not the machine's fastest kernel (an
    environment forced a slower one, or a framework's matmul beats the peak's library). That is an
    error in the peak, said in its entry; no fraction of peak of the run is published."""
    above = [row for row in rows if (row.fraction_of_peak or 0.0) > 1.0]
    if not above or peak is None:
        return list(rows), peak
    error = ("a fraction of peak above 1 (" + ", ".join(f"{row.label} {row.fraction_of_peak:.2f}" for row in above)
             + "): the peak is not the machine's fastest matmul; no fraction of peak is published")
    return ([dataclasses.replace(row, **_interval_fields("fraction_of_peak", "fraction_ci", None)) for row in rows],
            dataclasses.replace(peak, error=error))


def _interval_fields(estimate: str, prefix: str, interval: Optional[stats.Interval]) -> Dict[str, Optional[float]]:
    """An interval's three fields of a part (``fraction_of_peak``, ``fraction_ci_low``, ``fraction_ci_high``)."""
    return {estimate: None if interval is None else interval.estimate, f"{prefix}_low": None if interval is None else interval.low,
            f"{prefix}_high": None if interval is None else interval.high}


def _of_own_matmul(participant: Participant, ceilings: Sequence[Participant], own: Kept) -> Dict[str, Any]:
    """The step's FLOP/s over its framework's own matmul's, per round: how near the step comes to
    what the framework's kernels allow (1: every step FLOP at the own matmul's rate)."""
    ceiling = next((c for c in ceilings if c.framework == participant.framework and c.timed), None)
    fraction = None if ceiling is None else _figure(own.of(ceiling).interval(fractions(participant, ceiling)))
    return _interval_fields("of_own_matmul", "of_own_matmul_ci", fraction)
