"""NumPy: the reference model itself, exposed through the adapter contract."""
from __future__ import annotations

from typing import Dict

import numpy as np

from bnbench.reference.model import ReferenceModel

from .base import Adapter, ConventionProbe, Gradients


class NumpyAdapter(Adapter):
    name = "numpy"
    modes = ("eager",)
    best_mode = "eager"
    devices = ("cpu",)
    requires = ("numpy",)
    requirements = ("numpy",)
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

    @classmethod
    def conventions(cls):
        """The spec's own row: the reference's batch norm and momentum with the spec's defaults."""
        from bnbench.reference.model import Optimizer, forward, updated_running_stats
        from bnbench.reference.spec import Spec, initial_parameters

        spec = Spec(n_features=1, hidden=(1,), n_classes=2, dtype="float64")

        def batch_norm(X):
            features = X.shape[1]
            spec_of_x = spec.replace(n_features=features, hidden=(features,))
            params = initial_parameters(spec_of_x)
            params["W1"] = np.eye(features)          # layer 1's Z is X itself
            result = forward(spec_of_x, params, X.astype(np.float64), training=True)
            after = updated_running_stats(spec_of_x, params, result.batch_means, result.batch_vars, len(X))
            return (result.caches[0].Zt, params["running_mean1"], params["running_var1"],
                    after["running_mean1"], after["running_var1"])

        def momentum_sgd(lr, beta, gradient, steps):
            optimizer = Optimizer(spec.replace(optimizer="momentum", learning_rate=lr, beta1=beta), ("theta",), {"theta": (1,)})
            params = {"theta": np.zeros(1)}
            values = []
            for _ in range(steps):
                optimizer.apply(params, {"theta": np.full(1, gradient)})
                values.append(float(params["theta"][0]))
            return values

        return [ConventionProbe("spec (reference)", f"SPEC.md v1, numpy {np.__version__}", "reference/model.py, Spec defaults",
                                batch_norm, spec.bn_momentum, "spec optimizer='momentum'", momentum_sgd)]
