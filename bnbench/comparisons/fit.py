"""Two numbers per framework from a sweep: a fixed cost per step ``t0`` and a sustained rate ``R``,
from step time ~ t0 + FLOPs / R, each with a 95% interval; where the model breaks, and where two
frameworks change places.

The fit is linear in (t0, 1/R) and weighted by each point's own time (its relative error is
minimised, so that the small points, microseconds, count as much as the large ones, seconds).
Intervals: a bootstrap over the rounds, resampled within each point (rounds of one point are its
independent units, as in ``bnbench compare``), the fit redone on each resample's medians.

Pure NumPy: tested on synthetic timings with a known t0 and R (tests/test_scale.py).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np

from bnbench.timing import stats

RESAMPLES = 1000
# A point whose fitted time is further than this from its measured one breaks the model there
# (cache effects, a switch of kernels): it is named in the published fit.
BREAK = 0.15


@dataclasses.dataclass
class Fit:
    t0: float                 # seconds per step that do not grow with the work
    t0_low: float
    t0_high: float
    rate: float               # FLOP/s sustained on the work
    rate_low: float
    rate_high: float
    errors: List[float]       # the fit's relative error at each point
    breaks: List[int]         # indices of the points where it exceeds BREAK

    @property
    def worst_error(self) -> float:
        return float(max(self.errors)) if self.errors else float("nan")


def _solve(flops: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """(t0, 1/R) minimising the relative error sum ((t0 + F/R - t) / t)^2, t0 and 1/R kept >= 0."""
    design = np.stack([np.ones_like(flops), flops], axis=1) / seconds[:, None]
    target = np.ones_like(seconds)
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    if solution[0] < 0:          # no fixed cost to speak of: a pure rate
        solution = np.array([0.0, float(np.sum(flops / seconds) / np.sum((flops / seconds) ** 2))])
    elif solution[1] <= 0:       # no rate to speak of: a pure fixed cost
        solution = np.array([float(np.sum(1 / seconds) / np.sum(1 / seconds ** 2)), 0.0])
    return solution


def fit(flops: Sequence[float], rounds: Sequence[Sequence[float]], *, seed: int = 0,
        resamples: int = RESAMPLES, confidence: float = stats.CONFIDENCE) -> Fit:
    """The fit of step time against FLOPs over a sweep: ``flops[i]`` per step at point i, and
    ``rounds[i]`` the step times its rounds measured there (NaN: a round it missed)."""
    flops = np.asarray(flops, dtype=np.float64)
    per_point = [np.asarray([value for value in values if np.isfinite(value)], dtype=np.float64) for values in rounds]
    if len(per_point) < 2 or any(values.size == 0 for values in per_point):
        raise ValueError("a fit needs two points or more, each with a measured round")
    medians = np.array([np.median(values) for values in per_point])
    t0, inverse_rate = _solve(flops, medians)
    rng = np.random.default_rng(seed)
    draws = np.empty((resamples, 2))
    for k in range(resamples):
        resampled = np.array([np.median(values[rng.integers(0, values.size, values.size)]) for values in per_point])
        draws[k] = _solve(flops, resampled)
    tail = (1 - confidence) / 2
    t0_low, t0_high = np.quantile(draws[:, 0], [tail, 1 - tail])
    inverse_low, inverse_high = np.quantile(draws[:, 1], [tail, 1 - tail])
    rate = 1 / inverse_rate if inverse_rate > 0 else float("inf")
    errors = [float(abs(t0 + f * inverse_rate - t) / t) for f, t in zip(flops, medians)]
    return Fit(t0=float(t0), t0_low=float(t0_low), t0_high=float(t0_high), rate=float(rate),
               rate_low=float(1 / inverse_high) if inverse_high > 0 else float("inf"),
               rate_high=float(1 / inverse_low) if inverse_low > 0 else float("inf"),
               errors=errors, breaks=[i for i, error in enumerate(errors) if error > BREAK])


def crossovers(sizes: Sequence[int], ratios: Dict[str, Sequence[stats.Interval]], fits: Dict[str, Fit],
               spreads: Optional[Sequence[float]] = None) -> List[Dict[str, object]]:
    """Where the faster of two frameworks changes along a sweep. ``ratios[f"{a}/{b}"]`` holds the
    paired ratio of a's step time to b's at each point; a crossover lies between two consecutive
    points whose ratios fall on either side of 1, and is told with the interval on each side
    (resolved beyond that point's noise floor, ``spreads``, or not) and the reason in the fitted
    numbers: the one faster before it has the lower fixed cost, the one faster after it the
    higher rate."""
    out = []
    for pair, intervals in sorted(ratios.items()):
        a, b = pair.split("/")
        for i in range(len(sizes) - 1):
            before, after = intervals[i], intervals[i + 1]
            if not (np.isfinite(before.estimate) and np.isfinite(after.estimate)):
                continue
            if (before.estimate < 1) == (after.estimate < 1):
                continue
            first, then = (a, b) if before.estimate < 1 else (b, a)
            spread_before = spreads[i] if spreads else 0.0
            spread_after = spreads[i + 1] if spreads else 0.0
            out.append({
                "pair": pair, "between": [sizes[i], sizes[i + 1]],
                "faster_before": first, "faster_after": then,
                "before": {"ratio": before.estimate, "ci_low": before.low, "ci_high": before.high,
                           "resolved": stats.resolved_beyond(before, spread_before)},
                "after": {"ratio": after.estimate, "ci_low": after.low, "ci_high": after.high,
                          "resolved": stats.resolved_beyond(after, spread_after)},
                "reason": _reason(first, then, fits),
            })
    return out


def _reason(first: str, then: str, fits: Dict[str, Fit]) -> str:
    """Why ``first`` leads at the smaller sizes and ``then`` at the larger ones, from their fits."""
    if first not in fits or then not in fits:
        return "no fit for both"
    lead, catch = fits[first], fits[then]
    parts = []
    if lead.t0 < catch.t0:
        parts.append(f"{first} has the lower fixed cost ({lead.t0 * 1e6:.0f} µs against {catch.t0 * 1e6:.0f} µs)")
    if catch.rate > lead.rate:
        parts.append(f"{then} the higher rate ({catch.rate / 1e9:.3g} against {lead.rate / 1e9:.3g} GFLOP/s)")
    return "; ".join(parts) or "the fits do not explain it (one of them breaks between these points)"
