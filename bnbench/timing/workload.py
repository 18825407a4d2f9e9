"""The timed workloads: the sizes of the spec that every timing tool uses (the asv suite,
``bnbench compare``, the tuning logs), the devices each is timed on, and the seeded batches they
run on. One definition, so that a ratio from ``bnbench compare`` and a time from asv describe the
same model."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from bnbench.reference import Spec
from bnbench.reference.data import batch_stack, synthetic

SIZES: Dict[str, dict] = {
    "tiny": dict(m=32, n_features=64, hidden=(64, 64), n_classes=10),
    "medium": dict(m=256, n_features=512, hidden=(512, 512), n_classes=10),
    "large": dict(m=1024, n_features=1024, hidden=(1024, 1024, 1024), n_classes=10),
    # A workload that fills a GPU: a step of 2.2 TFLOP, timed on devices of this list only.
    "xlarge": dict(m=8192, n_features=4096, hidden=(4096, 4096, 4096), n_classes=10),
}
SIZE_ORDER = ("tiny", "medium", "large", "xlarge")
# Sizes timed only where they fit: on a 2-core CPU xlarge's step of 2.2 TFLOP takes 7 s or more (at
# its float32 matmul peak of about 0.3 TFLOP/s), before its warm-up, its rounds and its check
# against a float64 reference of the same size.
SIZE_DEVICES: Dict[str, Tuple[str, ...]] = {"xlarge": ("cuda",)}
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


def unavailable_on(size: str, device: str) -> Optional[str]:
    """Why ``size`` is not timed on ``device`` (None: it is): an unknown size, or one listed for
    other devices (SIZE_DEVICES), with its reason."""
    if size not in SIZES:
        return f"unknown size {size!r}; sizes: {', '.join(SIZE_ORDER)}"
    devices = SIZE_DEVICES.get(size)
    if devices is not None and device not in devices:
        from bnbench.timing.flops import step_flops

        flops = step_flops(spec_for(size, "float32"), batch_size(size))
        return (f"{size} is a workload for {', '.join(devices)} (a step of {flops / 1e12:.1f} TFLOP); on {device} it is "
                f"listed and skipped")
    return None


def sizes_on(device: str) -> Tuple[str, ...]:
    """The sizes timed on ``device`` by default, smallest first."""
    return tuple(size for size in SIZE_ORDER if unavailable_on(size, device) is None)
