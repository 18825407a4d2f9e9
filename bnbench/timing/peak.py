"""The matmul peak a fraction of peak is measured against: one n x n x n product in the dtype of
the comparison, on its device, with the same pinned threads. It runs as one more participant of
``bnbench compare``'s rounds, so that the peak of each round falls in the same phase of the
machine as the steps it divides.

Which library computes it is declared by the adapters (``peak_devices``, ``matmul_step``): the
first framework, in the registry's order, that declares the device. The library is imported only
when a peak is built.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from bnbench.adapters import registry

# n of the product: 2048 on a CPU (about 0.1 s on 2 cores), 8192 on a GPU (smaller products leave an
# H100's SMs idle: its float32 peak is reached from about n = 4096). The one place this n is written.
SIZE = {"cpu": 2048, "cuda": 8192}


def size_for(device: str) -> int:
    """n of the peak's n x n x n product on ``device``."""
    return SIZE.get(device, SIZE["cpu"])


def matmul_flops(n: int) -> float:
    return 2.0 * n ** 3


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
        self.library, self.step = self._build()
        self.step()          # the first product pays for allocation and kernel selection

    def _build(self) -> "tuple[str, Callable[[], None]]":
        rng = np.random.default_rng(0)
        a = rng.standard_normal((self.n, self.n)).astype(self.dtype)
        b = rng.standard_normal((self.n, self.n)).astype(self.dtype)
        return self.adapter_class.matmul_step(a, b, self.device)

    def sync(self) -> None:
        pass
