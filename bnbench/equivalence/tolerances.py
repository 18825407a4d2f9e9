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
  with fused multiply-adds. Measured agreement of PyTorch with the reference is ~1e-6 (see README),
  so 1e-4 still catches every convention error above that is not below float32 precision, e.g. a
  wrong epsilon (1e-3 vs 1e-5) or momentum (0.99 vs 0.9).

What is compared with what: every run is compared with the truth, the reference computed in
float64 from the very arrays the adapter was given (a float32 spec's parameters and batches are
float32 numbers, exact in float64). The float32 reference is itself ~1e-6 from that truth on the
suite's problems (up to 1.5e-6 at the large benchmark size: 1024 x 3 x 1024, m = 1024).

ReLU kinks. max(x, 0) has no derivative at 0, so an input that lies within rounding error of 0
may land on either side in a correct implementation, and the gradient changes by that whole
example's contribution to its unit. On small problems no input comes that close; at the large
benchmark size in float32 a few of the 3 million ReLU inputs per step do, and one of them falling
on the other side moves every gradient below it by ~1e-3 (measured: PyTorch's float32 step 2 at
large, 1.2e-3 for W1, while its float64 run agrees to 3e-15). So the check finds the inputs whose
float64 value is within KINK_BAND x the dtype's rounding of a dot product of that length
(u sqrt(n_in) x the unit's rms; the float32 reference's largest error in Zt measured 1.8-2.5 of
that at every size), recomputes the truth with those inputs on the other side, and lets each
tensor differ from the truth by KINK_MARGIN x what that moved it (never more than
KINK_MAX_TOLERANCE, and never less than the dtype's tolerance). Tensors the flip does not move
(the loss, the probabilities, the running statistics, W after a step) keep the dtype's tolerance;
the gradients and the betas (which start at 0) get what the spec allows at that precision.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from bnbench.reference.model import relu_derivative
from bnbench.reference.spec import layer_of

# tf32: a float32 model whose matmuls take operands rounded to TF32 (10-bit mantissa) and accumulate in
# float32, as an NVIDIA tensor core does. The tolerance is measured on that rounding emulated on the CPU
# (bnbench.verification.tf32, `python -m bnbench.verification.tf32`; docs/SPEC.md gives the figures).
TF32_TOLERANCE = 2e-3

TOLERANCES: Dict[str, float] = {"float64": 1e-10, "float32": 1e-4, "tf32": TF32_TOLERANCE}
KINK_BAND = 4.0            # x u sqrt(n_in) x rms(Zt): 1.6-2.2x the float32 reference's largest error in Zt
KINK_MARGIN = 2.0          # an adapter may flip a different subset of the inputs in the band
KINK_MAX_TOLERANCE = 1e-2  # past this a tensor is too close to the kinks to check: the tolerance stops here
# tf32's band is 2**13 times float32's: at the medium and large sizes a few percent of the ReLU
# inputs lie in it, and flipping them moves the gradients by up to 2e-2 (measured: tf32.measure)
KINK_MAX_TOLERANCES = {"tf32": 1e-1}


def tolerance(dtype: str) -> float:
    try:
        return TOLERANCES[str(dtype)]
    except KeyError:
        raise ValueError(f"no tolerance for dtype {dtype!r}; known: {', '.join(TOLERANCES)}") from None


def unit_roundoff(dtype: str) -> float:
    """Half a unit in the last place of ``dtype``'s mantissa; tf32's, where matmul operands keep 10
    bits of float32's 23, is 2**-11."""
    return 2.0 ** -11 if str(dtype) == "tf32" else float(np.finfo(np.dtype(dtype)).eps) / 2


class ReluKinks:
    """A ReLU derivative for the reference (``relu_grad``) that finds the inputs an implementation in
    ``dtype`` may put on either side of 0, counts them, and with ``flip`` takes the other side there."""

    def __init__(self, dtype: str, *, flip: bool = False):
        self.dtype = str(dtype)
        self.flip = flip
        self.count = 0

    def band(self, Zt: np.ndarray, n_in: int) -> np.ndarray:
        """Per unit: how close to 0 an input of the ReLU must be to be on an uncertain side."""
        unit_rms = np.sqrt(np.mean(np.square(Zt), axis=0))
        return KINK_BAND * unit_roundoff(self.dtype) * np.sqrt(n_in) * unit_rms

    def __call__(self, layer: int, Zt: np.ndarray, n_in: int) -> np.ndarray:
        active = relu_derivative(layer, Zt, n_in)
        uncertain = np.abs(Zt) <= self.band(Zt, n_in)
        self.count += int(np.count_nonzero(uncertain))
        return active ^ uncertain if self.flip else active


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
    widened: str = ""  # why the tolerance is above the dtype's (ReLU kinks), or empty

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
                f"{'<=' if self.ok else '>'} tolerance {self.tolerance:.1e}")
        return text + "".join(f"; {note}" for note in (self.widened, self.detail) if note)


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


def compare(key: str, actual, expected, dtype: str, step: int, kinks_flipped=None) -> Comparison:
    """``kinks_flipped``: the truth recomputed with the ReLU inputs near 0 on the other side
    (ReluKinks), where there are any; the tolerance then covers what that flip moves."""
    tol = tolerance(dtype)
    widened = ""
    if kinks_flipped is not None:
        moved = relative_error(kinks_flipped, expected)
        if KINK_MARGIN * moved > tol:
            widened = (f"tolerance widened from {tol:.0e}: ReLU inputs within {dtype} rounding of 0 move this tensor "
                       f"by {moved:.1e} when they fall on the other side")
            cap = KINK_MAX_TOLERANCES.get(str(dtype), KINK_MAX_TOLERANCE)
            tol = min(KINK_MARGIN * moved, cap)
            if tol == cap:
                widened += f" (capped at {cap:.0e}: too close to the kinks to check further)"
    error = relative_error(actual, expected)
    detail = "" if error <= tol else _detail(actual, expected, tol)
    return Comparison(key, step, error, tol, detail, widened)


def compare_all(prefix: str, actual: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray],
                dtype: str, step: int, kinks_flipped: Optional[Mapping[str, np.ndarray]] = None) -> List[Comparison]:
    results = []
    missing = [name for name in expected if name not in actual]
    for name in missing:
        results.append(Comparison(f"{prefix}/{name}", step, float("inf"), tolerance(dtype), "missing from the adapter's output"))
    for name in expected:
        if name in actual:
            flipped = None if kinks_flipped is None else kinks_flipped[name]
            results.append(compare(f"{prefix}/{name}", actual[name], expected[name], dtype, step, flipped))
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
    kinks: int = 0     # ReLU inputs the truth found within the dtype's rounding of 0 (ReluKinks)

    @property
    def widened(self) -> List[Comparison]:
        return [c for c in self.comparisons if c.widened]

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

    def fingerprint(self) -> Dict[str, float]:
        """The numbers a framework trains to, against the reference: after the last training step,
        the loss's and every parameter's and running statistic's norm-wise relative distance from the
        reference, in units of the dtype's machine epsilon (3 significant digits). Two releases of a
        framework that train alike have one fingerprint, to within the tolerance."""
        last = max((c.step for c in self.comparisons), default=0)
        epsilon = 2.0 ** -10 if self.dtype == "tf32" else float(np.finfo(np.dtype(self.dtype)).eps)
        return {c.key: float(f"{c.error / epsilon:.3g}") for c in self.comparisons
                if c.step == last and (c.key == "loss" or c.key.startswith("param/"))}

    def message(self, limit: int = 6) -> str:
        failures = sorted(self.failures, key=lambda c: (c.step, c.key))
        if not failures:
            return f"{self.label}: all {len(self.comparisons)} comparisons within tolerance"
        widened = len(self.widened)
        lines = [f"{self.label}: {len(failures)} of {len(self.comparisons)} comparisons exceed their tolerance "
                 f"({self.dtype}: {tolerance(self.dtype):.0e}" + (f"; {widened} widened for ReLU kinks" if widened else "") + ")."]
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

