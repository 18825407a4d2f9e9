"""The matmul peak a fraction of peak is measured against: one n x n x n product in the dtype of
the comparison, on its device, with the same pinned threads. It runs as one more participant of
``bnbench compare``'s rounds, so that the peak of each round falls in the same phase of the
machine as the steps it divides.

Which library computes it is declared by the adapters (``peak_devices``, ``matmul_step``): the
first framework, in the registry's order, that declares the device. The library is imported only
when a peak is built.
"""
from __future__ import annotations

import numpy as np

from bnbench.adapters import registry
from bnbench.adapters.contract import AdapterError
from bnbench.timing import stats

# n of the product: 2048 on a CPU (about 0.1 s on 2 cores), 8192 on a GPU (smaller products leave an
# H100's SMs idle: its float32 peak is reached from about n = 4096). The one place this n is written.
SIZE = {"cpu": 2048, "cuda": 8192}


def size_for(device: str) -> int:
    """n of the peak's n x n x n product on ``device``."""
    return SIZE.get(device, SIZE["cpu"])


def matmul_flops(n: int) -> float:
    return 2.0 * n ** 3


# The first product is checked against NumPy's in float64 on its first CHECKED_ROWS rows: its
# greatest difference, over the greatest magnitude there, at most this. A float32 product of n =
# 2048 differs by about 1e-6 of it; TF32 by about 1e-3; a product that was not computed, by 1.
CHECKED_ROWS = 4
PRODUCT_TOLERANCE = {"float32": 1e-4, "float64": 1e-10}


def as_numpy(value) -> np.ndarray:
    """A framework's product as a NumPy array on the host."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):      # torch
        return value.detach().cpu().numpy()
    for method in ("asnumpy", "numpy"):                         # mxnet, mindspore; tensorflow, paddle
        if callable(getattr(value, method, None)):
            return np.asarray(getattr(value, method)())
    if hasattr(value, "array") and not isinstance(value, np.ndarray):     # a chainer Variable
        value = value.array
    return np.asarray(value)


def check_product(product, a: np.ndarray, b: np.ndarray, library: str) -> None:
    """AdapterError where ``product`` is not a @ b (none returned, a wrong shape, or values that
    differ beyond PRODUCT_TOLERANCE): a peak is the fastest *correct* product."""
    if product is None:
        raise AdapterError(f"{library}: its matmul step returned no product to check")
    rows = min(CHECKED_ROWS, a.shape[0])
    got = as_numpy(product)
    want = a[:rows].astype(np.float64) @ b.astype(np.float64)
    if got.shape != (a.shape[0], b.shape[1]):
        raise AdapterError(f"{library}: its matmul product has shape {got.shape}, not {(a.shape[0], b.shape[1])}")
    difference = float(np.max(np.abs(got[:rows].astype(np.float64) - want)) / max(float(np.max(np.abs(want))), 1e-300))
    if not difference <= PRODUCT_TOLERANCE[str(a.dtype)]:
        raise AdapterError(f"{library}: its matmul product differs from NumPy's by {difference:.3g} of its greatest "
                           f"value (at most {PRODUCT_TOLERANCE[str(a.dtype)]:g} in {a.dtype}); not a peak")


def fraction_per_round(flops: float, step_s, peak_flops: float, peak_s) -> np.ndarray:
    """The one fraction of peak, per round: a step's FLOP/s over the peak's FLOP/s in the same round
    (NaN where either missed it). ``step_s`` and ``peak_s``: one figure per round each, both raw
    burst medians (asv's benchmarks) or both over the baseline beside them (compare's rounds).
    Every fraction of the suite is the median over rounds of these (bnbench.timing.stats)."""
    return (flops / peak_flops) * stats.round_ratios(peak_s, step_s)


def peak_framework(device: str):
    """The adapter class whose matmul is the peak on ``device``."""

    for name in registry.names():
        adapter_class = registry.local_class(name)
        if device in adapter_class.peak_devices:
            return adapter_class
    raise ValueError(f"no framework declares a matmul peak on device {device!r}")


class MatmulPeak:
    """``step()`` runs one product and waits for it; ``flops`` is what one step computes."""

    def __init__(self, device: str, dtype: str, n: int = 0, framework: str = ""):
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype {dtype!r} is not float32 or float64")
        self.device = device
        self.dtype = dtype
        self.n = n or size_for(device)
        self.flops = matmul_flops(self.n)
        # framework: another framework's own matmul, as a ceiling of that framework's steps
        self.adapter_class = registry.local_class(framework) if framework else peak_framework(device)
        a, b = self._operands()
        self.library, self.step = self.adapter_class.matmul_step(a, b, self.device)
        # the first product pays for allocation and kernel selection, and is checked
        check_product(self.step(), a, b, self.library)

    def _operands(self) -> "tuple[np.ndarray, np.ndarray]":
        rng = np.random.default_rng(0)
        a = rng.standard_normal((self.n, self.n)).astype(self.dtype)
        b = rng.standard_normal((self.n, self.n)).astype(self.dtype)
        return a, b

    def sync(self) -> None:
        pass
