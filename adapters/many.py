"""Many models trained at once in one vectorised program (the lecture's "caviar"), the interface
an adapter that declares ``trains_many`` returns from ``many_models``."""
from __future__ import annotations

import abc
from typing import List, Mapping

import numpy as np

from bnbench.reference.spec import Spec, check_parameters

from .contract import Unsupported

# The spec fields that may differ between the models a ManyModels trains together; every other
# field (the network's shape, the optimizer, l2, epsilons, the dtype) is one for all of them.
PER_MODEL_FIELDS = ("learning_rate", "beta1", "beta2", "bn_momentum", "seed")


class ManyModels(abc.ABC):
    """Many models trained at once in one vectorised program: model i has its own spec (its
    ``PER_MODEL_FIELDS``) and initial parameters, and sees the same batches it would see alone, so
    each ends where it would end trained by itself."""

    def __init__(self, specs: List[Spec], params: List[Mapping[str, np.ndarray]], device: str = "cpu"):
        if not specs or len(specs) != len(params):
            raise ValueError(f"ManyModels needs one parameter set per spec, got {len(specs)} specs and {len(params)} sets")
        shared = {key: value for key, value in specs[0].to_dict().items() if key not in PER_MODEL_FIELDS}
        for index, spec in enumerate(specs[1:], start=1):
            for key, value in spec.to_dict().items():
                if key in shared and shared[key] != value:
                    raise Unsupported(f"models trained together share every spec field but {', '.join(PER_MODEL_FIELDS)}: "
                                      f"spec {index} has {key}={value!r}, spec 0 has {shared[key]!r}")
        self.specs = list(specs)
        self.spec = specs[0]
        self.device = device
        self.params = [check_parameters(spec, p) for spec, p in zip(specs, params)]

    def per_model(self, field: str) -> np.ndarray:
        """A per-model hyperparameter as an array of the spec's dtype, one value per model."""
        return np.array([getattr(spec, field) for spec in self.specs], dtype=self.spec.np_dtype)

    @abc.abstractmethod
    def train_step(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """One training step of every model on the same batch; their losses (k,)."""

    @abc.abstractmethod
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Inference-mode probabilities of every model, (k, m, n_classes)."""
