"""The timed workloads: the three sizes of the spec that every timing tool uses (the asv suite,
``bnbench compare``), and the seeded batches they run on. One definition, so that a ratio from
``bnbench compare`` and a time from asv describe the same model."""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from bnbench.reference import Spec
from bnbench.reference.data import batch_stack, synthetic

SIZES: Dict[str, dict] = {
    "tiny": dict(m=32, n_features=64, hidden=(64, 64), n_classes=10),
    "medium": dict(m=256, n_features=512, hidden=(512, 512), n_classes=10),
    "large": dict(m=1024, n_features=1024, hidden=(1024, 1024, 1024), n_classes=10),
}
SIZE_ORDER = ("tiny", "medium", "large")
VERIFY_STEPS = 2


def spec_for(size: str, dtype: str) -> Spec:
    fields = dict(SIZES[size])
    fields.pop("m")
    return Spec(dtype=dtype, learning_rate=0.01, optimizer="momentum", **fields)


def batch_size(size: str) -> int:
    return SIZES[size]["m"]


def timing_batches(spec: Spec, m: int, steps: int = VERIFY_STEPS) -> Tuple[np.ndarray, np.ndarray]:
    """X (steps, m, n_features) and y (steps, m): the batches a timed adapter is verified on; the
    first is the one it is timed on."""
    data = synthetic(m * 4, spec.n_features, spec.n_classes, seed=0, dtype=spec.dtype)
    return batch_stack(data, m, steps, seed=0)
