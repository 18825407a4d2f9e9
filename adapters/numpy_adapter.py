"""NumPy: the reference model itself, exposed through the adapter contract."""
from __future__ import annotations

from typing import Dict

import numpy as np

from bnbench.reference.model import ReferenceModel

from .base import Adapter, Gradients


class NumpyAdapter(Adapter):
    name = "numpy"
    modes = ("eager",)
    best_mode = "eager"
    devices = ("cpu",)
    requires = ("numpy",)
    tuning = {"eager": "hand-written forward and backward; BLAS threads from OMP_NUM_THREADS/threadpoolctl"}
    description = "the reference: SPEC.md transcribed, backward derived by hand"

    def _build(self, params: Dict[str, np.ndarray]) -> None:
        self.model = ReferenceModel(self.spec, params)

    def train_step(self, X: np.ndarray, y: np.ndarray) -> float:
        return self.model.train_step(X, y)

    def gradients(self, X: np.ndarray, y: np.ndarray) -> Gradients:
        result = self.model.gradients(X, y)
        return Gradients(result.loss, result.probs, result.grads)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(X)

    def state(self) -> Dict[str, np.ndarray]:
        return self.model.state()
