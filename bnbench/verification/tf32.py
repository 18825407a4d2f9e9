"""TF32 emulated on the CPU, to measure the tolerance a ``tf32`` run is held to.

An NVIDIA tensor core computing a float32 matmul in TF32 rounds each operand to a 10-bit mantissa
(float32 keeps 23) and accumulates in float32. ``tf32_matmul`` does the same in NumPy, and
``emulated_adapter`` is the NumPy adapter with every product of its step taken that way (its
in-place step's ``matmul`` hook, the one its profile times). ``measure`` runs it against the
float64 truth on the battery of ``bnbench verify`` and the timed sizes, and gives the largest
error of each tensor group: the tolerance (``TF32_TOLERANCE``) is set above the largest of them
with a margin, and docs/SPEC.md states both. ``python -m bnbench.verification.tf32`` prints them.

On a GPU the rounding is the hardware's; the check there (``bnbench verify --dtype tf32``) holds
it to the same tolerance.
"""
from __future__ import annotations

import sys
from typing import Dict

import numpy as np

from bnbench import tables
from bnbench.adapters.registry import local_class
from bnbench.equivalence.tolerances import tolerance
from bnbench.equivalence.trace import check_equivalence


def round_to_tf32(array: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest TF32 (10-bit mantissa), ties to even."""
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    lowest_kept = (bits >> np.uint32(13)) & np.uint32(1)
    rounded = (bits + np.uint32(0x0FFF) + lowest_kept) & np.uint32(0xFFFFE000)
    return rounded.view(np.float32)


def tf32_matmul(a: np.ndarray, b: np.ndarray, out=None, **kwargs) -> np.ndarray:
    """a @ b with both operands rounded to TF32, accumulated in float32."""
    return np.matmul(round_to_tf32(a), round_to_tf32(b), out=out, **kwargs)


def emulated_adapter(spec, params):
    """The NumPy adapter, every product of its step in emulated TF32."""
    adapter = local_class("numpy")(spec, params)
    if adapter.stacked is None:
        raise ValueError("the TF32 emulation needs the NumPy adapter's in-place step (batch_norm=true)")
    adapter.stacked.matmul = tf32_matmul
    return adapter


def measure() -> Dict[str, Dict[str, float]]:
    """The largest error of each tensor group, per case (the battery's float32 cases and the timed
    sizes tiny, medium and large), with whether the case passes at tf32's tolerance (``passed``,
    1 or 0: the gradients, where ReLU inputs within TF32's rounding of 0 move them, are held to
    what that moves, as in every dtype) and the largest error of the tensors the kinks do not move
    (``unwidened``), which the tolerance itself bounds."""
    from bnbench.reference.battery import battery
    from bnbench.reference.spec import initial_parameters
    from bnbench.timing.workload import batch_size, spec_for, timing_batches

    cases = [(label, spec, params, X, y) for label, spec, params, X, y in battery("float32") if spec.batch_norm]
    for size in ("tiny", "medium", "large"):
        spec = spec_for(size, "float32")
        cases.append((size, spec, initial_parameters(spec), *timing_batches(spec, batch_size(size))))
    worst = {}
    for label, spec, params, X, y in cases:
        report = check_equivalence(emulated_adapter(spec, params), spec, params, X, y, precision="tf32")
        worst[label] = dict(report.worst_by_group(), passed=float(report.ok),
                            unwidened=max(c.error for c in report.comparisons if not c.widened))
    return worst


def main() -> int:
    worst = measure()
    groups = sorted({group for errors in worst.values() for group in errors})
    print(tables.text(["case", *groups], [[label[:40], *(f"{errors.get(group, 0.0):.2e}" for group in groups)]
                                          for label, errors in worst.items()]))
    largest = max(errors["unwidened"] for errors in worst.values())
    passed = all(errors["passed"] for errors in worst.values())
    print(f"largest error of a tensor the ReLU kinks do not move: {largest:.2e}; tf32's tolerance {tolerance('tf32'):.0e}; "
          f"{'every case passes' if passed else 'a case FAILS'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
