"""The matmul peak a fraction of peak is measured against: one n x n x n product in the dtype of
the comparison, on its device, with the same pinned threads. It runs as one more participant of
``bnbench compare``'s rounds, so that the peak of each round falls in the same phase of the
machine as the steps it divides.

CPU: NumPy's BLAS (the suite's own baseline). CUDA: torch.matmul with TF32 off, so a float32
peak is a float32 peak (NumPy has no GPU). The library is imported only when a peak is built.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

# n of the product: 2048 on a CPU (about 0.1 s on 2 cores, as the asv suite's peak), 8192 on a GPU
# (smaller products leave an H100's SMs idle: its float32 peak is reached from about n = 4096).
SIZE = {"cpu": 2048, "cuda": 8192}


def matmul_flops(n: int) -> float:
    return 2.0 * n ** 3


class MatmulPeak:
    """``step()`` runs one product and waits for it; ``flops`` is what one step computes."""

    def __init__(self, device: str, dtype: str, n: int = 0):
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype {dtype!r} is not float32 or float64")
        self.device = device
        self.dtype = dtype
        self.n = n or SIZE.get(device, 2048)
        self.flops = matmul_flops(self.n)
        self.library, self.step = self._build()
        self.step()          # the first product pays for allocation and kernel selection

    def _build(self) -> "tuple[str, Callable[[], None]]":
        rng = np.random.default_rng(0)
        a = rng.standard_normal((self.n, self.n)).astype(self.dtype)
        b = rng.standard_normal((self.n, self.n)).astype(self.dtype)
        if self.device == "cpu":
            out = np.empty_like(a)

            def step() -> None:
                np.matmul(a, b, out=out)

            return f"numpy {np.__version__}", step
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise RuntimeError("the matmul peak on cuda needs torch with a visible GPU")
            torch.backends.cuda.matmul.allow_tf32 = False     # a float32 peak, not TF32's
            ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
            out = torch.empty_like(ta)

            def step() -> None:
                torch.matmul(ta, tb, out=out)
                torch.cuda.synchronize()

            return f"torch {torch.__version__} ({torch.cuda.get_device_name()})", step
        raise ValueError(f"device {self.device!r} is not cpu or cuda")

    def sync(self) -> None:
        pass
