"""Paired statistics of ``bnbench compare``: ratios per round, bootstrap intervals, resolution.

Every participant of a comparison runs one short burst per round, between two bursts of the
baseline (bnbench.timing.schedule), so that a row and what it is divided by sample the same phase
of the machine (these machines alternate fast and slow phases, of a second to a few). A ratio is
therefore taken within a round, never across rounds: ``round_ratios[k] = medians_a[k] /
medians_b[k]``. The published ratio is the median over rounds; its 95% interval is a percentile
bootstrap over rounds (rounds are the independent units; the steps of one burst are not). Where
the rounds ran in two or more sets of worker processes, the ratio is the mean of the sets'
medians and the bootstrap resamples the sets too (``set_bootstrap``). A difference is *resolved* when
that interval excludes 1, and lies wholly outside the run's noise floor (``floor_spread``): what
one participant measures against itself, in an A/A pair timed in the same rounds.

Pure NumPy: nothing here knows about frameworks or processes, so the statistics are tested on
synthetic timings with a known answer (tests/test_stats.py).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
# Rounds continue until every interval lies within this fraction of its ratio (or the budget ends).
TARGET_HALF_WIDTH = 0.025
# Fewer rounds than this give a bootstrap interval too rough to project the budget that would narrow it.
MIN_ROUNDS_TO_PROJECT = 8


@dataclasses.dataclass(frozen=True)
class Interval:
    """A median over rounds with its bootstrap interval."""

    estimate: float
    low: float
    high: float
    rounds: int

    @property
    def resolved(self) -> bool:
        """True when the interval of a ratio excludes 1 (the difference is real at 95%)."""
        return self.rounds > 0 and (self.low > 1.0 or self.high < 1.0)

    @property
    def relative_half_width(self) -> float:
        """The larger distance from the estimate to an end of the interval, as a fraction of it."""
        if not self.rounds or not np.isfinite(self.estimate) or self.estimate == 0:
            return float("inf")
        return max(self.high - self.estimate, self.estimate - self.low) / abs(self.estimate)

    def verdict(self) -> str:
        return "resolved" if self.resolved else "not resolved"


def bootstrap_median(values: Sequence[float], *, groups: Optional[Sequence[int]] = None, confidence: float = CONFIDENCE,
                     resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> Interval:
    """The median of ``values`` and its percentile-bootstrap interval (resampling the values).

    ``groups`` names each value's process set (bnbench.timing.sets): where the values come from
    two or more, the estimate is the mean of the sets' medians, and its interval resamples the sets
    as well as the values within each (``set_bootstrap``). Seeded, so the same timings give the
    same interval. NaN values (a round a participant missed) are dropped."""
    data = np.asarray(values, dtype=np.float64)
    if groups is not None:
        labels = np.asarray(groups)
        if labels.shape != data.shape:
            raise ValueError(f"{labels.shape[0] if labels.ndim else 0} process-set labels for {data.shape[0]} values")
        finite = np.isfinite(data)
        parts = [data[finite & (labels == label)] for label in np.unique(labels[finite])]
        if len(parts) > 1:
            return set_bootstrap(parts, confidence=confidence, resamples=resamples, seed=seed)
    data = data[np.isfinite(data)]
    if data.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    estimate = float(np.median(data))
    if data.size == 1:
        return Interval(estimate, estimate, estimate, 1)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, data.size, size=(resamples, data.size))
    medians = np.median(data[picks], axis=1)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(medians, [tail, 1.0 - tail])
    return Interval(estimate, float(low), float(high), int(data.size))


def set_bootstrap(parts: Sequence[np.ndarray], *, confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES,
                  seed: int = 0) -> Interval:
    """The mean of the medians of ``parts`` (one per process set, each non-empty), and its interval
    by a two-level bootstrap: each resample draws as many sets as there are, with replacement, and
    within each drawn set its values. What stays fixed within a set (its processes' memory layout,
    their cores, the machine's state while it ran) thus widens the interval by as much as the sets
    disagree, which no resampling of one set's rounds can see."""
    rng = np.random.default_rng(seed)
    estimate = float(np.mean([np.median(part) for part in parts]))
    medians = np.empty((len(parts), resamples))
    for index, part in enumerate(parts):
        medians[index] = np.median(part[rng.integers(0, part.size, size=(resamples, part.size))], axis=1)
    drawn = rng.integers(0, len(parts), size=(resamples, len(parts)))
    means = medians[drawn, np.arange(resamples)[:, None]].mean(axis=1)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(estimate, float(min(low, estimate)), float(max(high, estimate)), int(sum(part.size for part in parts)))


def round_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> np.ndarray:
    """Per-round ratios of two participants' burst medians (NaN where either missed the round)."""
    a = np.asarray(numerator, dtype=np.float64)
    b = np.asarray(denominator, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"round counts differ: {a.shape[0]} against {b.shape[0]}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((b > 0) & np.isfinite(a) & np.isfinite(b), a / b, np.nan)


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float], *, groups: Optional[Sequence[int]] = None,
                 seed: int = 0) -> Interval:
    """Median over rounds of numerator/denominator, with its bootstrap interval."""
    return bootstrap_median(round_ratios(numerator, denominator), groups=groups, seed=seed)


def converged(intervals: Sequence[Interval], target: float = TARGET_HALF_WIDTH, min_rounds: int = 10) -> bool:
    """Every interval within ``target`` of its estimate, after at least ``min_rounds`` rounds."""
    return all(i.rounds >= min_rounds and i.relative_half_width <= target for i in intervals)


def burst_median(step_seconds: Sequence[float]) -> Optional[float]:
    data = [s for s in step_seconds if s is not None and np.isfinite(s)]
    return float(np.median(data)) if data else None


def floor_spread(floor: Optional[Interval]) -> float:
    """How far from 1 a ratio must stay to be told from the framework against itself: the distance
    from 1 to the far end of the A/A control's interval (its reach), plus the control's own distance
    from 1 once more (0 without a control). The control is one draw of how far apart two processes
    of one framework stand (which core, which memory layout); a row's process may stand that far
    again from the reference, on the other side. Measured on 2 cores: in 20 A/A runs of NumPy at
    tiny and medium, the twin's interval once reached past the reach alone (by 1.05 times it), and
    at most 0.60 of the reach plus the distance."""
    if floor is None or not floor.rounds or not np.isfinite(floor.low) or not np.isfinite(floor.high):
        return 0.0
    reach = max(0.0, 1.0 - floor.low, floor.high - 1.0)
    return float(reach + abs(floor.estimate - 1.0))


def resolved_beyond(interval: Interval, spread: float) -> bool:
    """A ratio's interval lies wholly outside [1 - spread, 1 + spread] (the floor's spread around 1)."""
    return interval.rounds > 0 and (interval.low > 1.0 + spread or interval.high < 1.0 - spread)


def budget_to_converge(interval: Interval, seconds: float, target: float = TARGET_HALF_WIDTH,
                       narrowed_by_rounds: float = 1.0) -> Optional[float]:
    """The rounds' seconds that would have brought ``interval`` within ``target`` of its estimate,
    had it taken ``seconds`` to reach its width, or None where no number of rounds would.

    Of the interval's variance, the share ``narrowed_by_rounds`` (``rounds_share``) falls as one
    over the rounds and the rest, what the process sets disagree on, stays: with k times the
    rounds the width becomes width * sqrt(fixed + narrowed / k). All of it narrows with one set,
    and then the seconds grow as the square of width / target."""
    width = interval.relative_half_width
    if not np.isfinite(width) or interval.rounds < MIN_ROUNDS_TO_PROJECT or seconds <= 0:
        return None       # too few rounds to say how wide their interval is
    needed = (target / width) ** 2            # the variance the target allows, over the present one
    if needed >= 1.0:
        return float(seconds)
    fixed = 1.0 - narrowed_by_rounds
    if needed <= fixed:
        return None       # the sets' part alone is wider than the target: more sets, not rounds
    return float(seconds * max(1.0, narrowed_by_rounds / (needed - fixed)))


def rounds_share(parts: Sequence[np.ndarray], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> float:
    """The share of a ``set_bootstrap`` interval's variance that more rounds per set would narrow.

    With S sets, w the mean variance of a set's median over its rounds (a bootstrap within each
    set) and b the variance of what a set fixes (the sets' medians' variance less w, at least 0),
    the set bootstrap's variance is about ((S-1) b + (2S-1) w) / S^2: drawing a set draws its b
    and, twice over, its rounds' noise (once in the set's own median, once in resampling it). More
    rounds shrink w alone. 1 with fewer than two sets, or where no set has the 3 rounds it takes to
    see its own noise."""
    usable = [np.asarray(part, dtype=np.float64) for part in parts]
    usable = [part[np.isfinite(part)] for part in usable]
    if len(usable) < 2 or any(part.size == 0 for part in usable):
        return 1.0
    rng = np.random.default_rng(seed)
    noisy = [part for part in usable if part.size >= 3]
    if not noisy:
        return 1.0
    within = float(np.mean([np.var(np.median(part[rng.integers(0, part.size, size=(resamples, part.size))], axis=1))
                            for part in noisy]))
    sets = len(usable)
    between = max(0.0, float(np.var([np.median(part) for part in usable], ddof=1)) - within)
    total = (sets - 1) * between + (2 * sets - 1) * within
    return float((2 * sets - 1) * within / total) if total > 0 else 1.0
