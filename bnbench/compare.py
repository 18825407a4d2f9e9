"""Comparing an adapter with the reference: one tolerance table, and failures that say where.

Error measure: the norm-wise relative error of a tensor, ||actual - expected||_2 / ||expected||_2.
It is insensitive to which individual element is near zero (an element-wise relative error is
not: an entry of a gradient that is 1e-9 by cancellation can legitimately differ by 100%).

Tolerances, per dtype (unit roundoff u = 2**-53 for float64, 2**-24 for float32):

* float64: 1e-10. About 1e6 u, room for summation order in matmuls and batch reductions of up to
  a few thousand terms and for a few optimizer steps, while any convention error is far above it:
  a running variance updated with m/(m-1) where the spec says biased differs by
  (1 - bn_momentum) * var / (m - 1) relative to O(1) values, about 1e-4 even at m = 1024.
* float32: 1e-4. About 1700 u: the batch-norm backward subtracts three terms of similar size
  (m dN - sum dN - N sum dN N), which loses digits, and frameworks sum in different orders and
  with fused multiply-adds. Measured agreement of torch with the reference is ~1e-6 (see README),
  so 1e-4 still catches every convention error above that is not below float32 precision, e.g. a
  wrong epsilon (1e-3 vs 1e-5) or momentum (0.99 vs 0.9).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from bnbench.reference.spec import layer_of

TOLERANCES: Dict[str, float] = {"float64": 1e-10, "float32": 1e-4}


def tolerance(dtype: str) -> float:
    try:
        return TOLERANCES[str(dtype)]
    except KeyError:
        raise ValueError(f"no tolerance for dtype {dtype!r}; known: {', '.join(TOLERANCES)}") from None


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return float("inf")
    difference = np.linalg.norm((actual - expected).ravel())
    scale = np.linalg.norm(expected.ravel())
    if not np.isfinite(difference):
        return float("inf")
    if scale == 0.0:
        return 0.0 if difference == 0.0 else float("inf")
    return float(difference / scale)


@dataclasses.dataclass
class Comparison:
    """One tensor compared at one step."""

    key: str          # e.g. 'grad/W2', 'param/running_var1', 'loss', 'probs', 'eval_probs'
    step: int         # 0: the first batch before any update; k >= 1: after k training steps
    error: float
    tolerance: float
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.error <= self.tolerance

    @property
    def group(self) -> str:
        if "/" in self.key:
            prefix, name = self.key.split("/", 1)
            if prefix == "param" and name.startswith("running_"):
                return "running"
            return prefix
        return self.key

    def describe(self) -> str:
        when = "the first batch (before any update)" if self.step == 0 else f"step {self.step}"
        text = (f"{self.key} at {when}: norm-wise relative error {self.error:.3e} "
                f"{'<=' if self.ok else '>'} tolerance {self.tolerance:.0e}")
        return text + (f"; {self.detail}" if self.detail else "")


def _detail(actual: np.ndarray, expected: np.ndarray, tol: float) -> str:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return f"shape {actual.shape} where the reference has {expected.shape}"
    if actual.size == 0:
        return ""
    absolute = np.abs(actual - expected)
    if not np.all(np.isfinite(actual)):
        return f"{int(actual.size - np.count_nonzero(np.isfinite(actual)))} non-finite element(s)"
    scale = max(float(np.abs(expected).max()), np.finfo(np.float64).tiny)
    differ = int(np.count_nonzero(absolute > tol * scale))
    worst_abs = np.unravel_index(int(np.argmax(absolute)), absolute.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(expected != 0, absolute / np.abs(expected), np.where(absolute == 0, 0.0, np.inf))
    worst_rel = np.unravel_index(int(np.argmax(relative)), relative.shape)
    fmt = lambda index: str(tuple(int(i) for i in index)) if len(index) != 1 else f"[{int(index[0])}]"  # noqa: E731
    return (f"{differ} of {actual.size} elements differ by more than {tol:.0e} x max|reference|; greatest absolute "
            f"difference {absolute[worst_abs]:.3e} at {fmt(worst_abs)} ({actual[worst_abs]!r} vs {expected[worst_abs]!r}), "
            f"greatest relative difference {relative[worst_rel]:.3e} at {fmt(worst_rel)}")


def compare(key: str, actual, expected, dtype: str, step: int) -> Comparison:
    tol = tolerance(dtype)
    error = relative_error(actual, expected)
    detail = "" if error <= tol else _detail(actual, expected, tol)
    return Comparison(key, step, error, tol, detail)


def compare_all(prefix: str, actual: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray],
                dtype: str, step: int) -> List[Comparison]:
    results = []
    missing = [name for name in expected if name not in actual]
    for name in missing:
        results.append(Comparison(f"{prefix}/{name}", step, float("inf"), tolerance(dtype), "missing from the adapter's output"))
    for name in expected:
        if name in actual:
            results.append(compare(f"{prefix}/{name}", actual[name], expected[name], dtype, step))
    return results


def _layer_rank(layer: str, backward: bool) -> float:
    rank = float("inf") if layer == "out" else float(layer) if layer.isdigit() else float("nan")
    return -rank if backward else rank


def departure(failures: Sequence[Comparison]) -> Optional[str]:
    """Where the framework first leaves the reference, at the earliest failing step.

    Running statistics are produced by the forward pass, so the lowest layer whose statistics
    depart is the culprit (forward order). Gradients flow from the output back, so there it is
    the departing layer closest to the output (backward order). Parameters after a step follow
    their gradients.
    """
    tensor_failures = [c for c in failures if "/" in c.key and layer_of(c.key) != c.key.rsplit("/", 1)[-1]]
    if not tensor_failures:
        return None
    first_step = min(c.step for c in tensor_failures)
    at_step = [c for c in tensor_failures if c.step == first_step]
    running = [c for c in at_step if c.group == "running"]
    if running:
        culprit = min(running, key=lambda c: _layer_rank(layer_of(c.key), backward=False))
        order = "forward order: its batch statistics"
    else:
        culprit = min(at_step, key=lambda c: _layer_rank(layer_of(c.key), backward=True))
        order = "backward order: counting from the output"
    layer = layer_of(culprit.key)
    where = "the output layer" if layer == "out" else f"layer {layer}"
    when = "the first batch" if first_step == 0 else f"step {first_step}"
    return f"first departs from the reference at {where} ({culprit.key} at {when}; {order})"


class EquivalenceError(AssertionError):
    pass


@dataclasses.dataclass
class EquivalenceReport:
    label: str
    dtype: str
    comparisons: List[Comparison]

    @property
    def failures(self) -> List[Comparison]:
        return [c for c in self.comparisons if not c.ok]

    @property
    def ok(self) -> bool:
        return not self.failures

    def worst_by_group(self) -> Dict[str, float]:
        worst: Dict[str, float] = {}
        for c in self.comparisons:
            worst[c.group] = max(worst.get(c.group, 0.0), c.error)
        return worst

    def message(self, limit: int = 6) -> str:
        failures = sorted(self.failures, key=lambda c: (c.step, c.key))
        if not failures:
            return f"{self.label}: all {len(self.comparisons)} comparisons within tolerance"
        lines = [f"{self.label}: {len(failures)} of {len(self.comparisons)} comparisons exceed the {self.dtype} tolerance "
                 f"{tolerance(self.dtype):.0e}."]
        where = departure(failures)
        if where:
            lines.append(f"The framework {where}.")
        lines += ["  " + c.describe() for c in failures[:limit]]
        if len(failures) > limit:
            lines.append(f"  ... and {len(failures) - limit} more")
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise EquivalenceError(self.message())

