"""A verdict for a paired ratio (a row against the baseline, or against the next faster row):
faster, slower, equivalent within ±ε, or undecided with the reason.

- **faster / slower:** the ratio's interval lies wholly outside 1 ± the floor's spread (what the
  baseline against its own control showed two processes of one framework may differ by;
  ``stats.resolved_beyond``). An A/A pair stays inside it.
- **equivalent:** two one-sided tests, each at 2.5% (the 95% interval, as every interval here),
  both reject a difference of ε or more: the interval lies within [1 - ε, 1 + ε]. ε is the larger
  of the floor's spread and ``EPSILON_LEAST``, and at most ``EPSILON_MOST`` unless asked for.
- **undecided:** neither; the reason says which ends of the interval stand where. More rounds
  narrow the interval and decide, except where the spread exceeds ε and the interval straddles both.
"""
from __future__ import annotations

from typing import Optional, Tuple

from bnbench.timing.stats import Interval, resolved_beyond

FASTER, SLOWER, EQUIVALENT, UNDECIDED = "faster", "slower", "equivalent", "undecided"
EPSILON_LEAST = 0.02
EPSILON_MOST = 0.03


def epsilon(spread: float, asked: Optional[float] = None) -> float:
    """The equivalence margin of a run: ``asked``, or the floor's spread within [2%, 3%]."""
    if asked is not None:
        if not 0.0 < asked < 1.0:
            raise ValueError(f"epsilon {asked!r} must be above 0 and below 1")
        return float(asked)
    return float(min(max(spread, EPSILON_LEAST), EPSILON_MOST))


def decide(interval: Optional[Interval], spread: float, eps: float) -> Tuple[str, Optional[str]]:
    """(verdict, the reason where it is undecided) of a ratio's ``interval`` (module docstring)."""
    if interval is None or not interval.rounds:
        return UNDECIDED, "no round counted on both sides"
    if resolved_beyond(interval, spread):
        return (FASTER if interval.high < 1.0 else SLOWER), None
    if interval.low >= 1.0 - eps and interval.high <= 1.0 + eps:
        return EQUIVALENT, None
    return UNDECIDED, (f"[{interval.low:.3f}, {interval.high:.3f}] reaches inside 1 ± {spread:.3f} (the floor's spread) "
                       f"and beyond 1 ± {eps:.3f} (the equivalence margin)")
