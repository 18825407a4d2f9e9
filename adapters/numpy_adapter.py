"""NumPy as an expert writes it: the reference's arithmetic, in place.

The kept form is one model of ``StackedModels`` (the caviar's step with k = 1): products written
into arrays the step owns, the batch-norm backward from the gradients of gamma and beta (three
passes over the batch instead of seven). Its tuning log (results/tuning-logs/) times it against
the reference's own step, which allocates every intermediate and is written term by term for
reading, not speed."""
from __future__ import annotations

from typing import Dict, List, Mapping

import numpy as np

from bnbench.reference.model import Optimizer, ReferenceModel, check_batch, forward, updated_running_stats
from bnbench.reference.spec import Spec, initial_parameters, running_stat_names, trainable_names, weight_names

from .contract import Adapter, ConventionProbe, Gradients, Unavailable, Unsupported
from .declaration import Alternative
from .many import ManyModels
from .profiling import seconds_per_step


class NumpyAdapter(Adapter):
    name = "numpy"
    status = "maintained (NumFOCUS-sponsored community): PyPI's newest release, checked 2026-11-26: 2.5.5, November 2026"
    modes = ("eager",)
    best_mode = "eager"
    devices = ("cpu",)
    requires = ("numpy",)
    requirements = ("numpy",)
    tuning = {"eager": "the reference's arithmetic in place (one model of StackedModels: products written into the "
                       "step's own arrays, the batch-norm backward in three passes); batch_norm=false: the reference's "
                       "step; BLAS threads from threadpoolctl"}
    # Its tuning logs: mallopt made the step 9% faster at large; huge pages on top, 10% (2026-11-26).
    allocator = "malloc-reuse+hugepages"
    alternatives = {"eager": {
        "reference": Alternative(
            "the reference's own step (reference/model.py): a fresh array for every intermediate, the batch-norm "
            "backward term by term"),
        # OpenBLAS's idle worker threads spin for 2^28 cycles after each call before they sleep
        # (measured: 105 ms of CPU during a 200 ms sleep after one (1024, 1024) product, 0.5 ms
        # with this variable), on the cores the step's ufuncs run on between two products.
        "blas-sleeps": Alternative("OpenBLAS's idle threads sleep at once instead of spinning (OPENBLAS_THREAD_TIMEOUT=4)",
                                   (("OPENBLAS_THREAD_TIMEOUT", "4"),))}}
    description = "the reference: SPEC.md transcribed, backward derived by hand"
    peak_devices = ("cpu",)      # the CPU peak is NumPy's BLAS, the suite's own baseline
    trains_many = True

    @classmethod
    def many_models(cls, specs: List[Spec], params: List[Mapping[str, np.ndarray]], device: str = "cpu") -> ManyModels:
        if device != "cpu":
            raise Unavailable(f"numpy has no device {device!r}: its many models train on the CPU")
        return StackedModels(specs, params)

    @classmethod
    def matmul_step(cls, a: np.ndarray, b: np.ndarray, device: str):
        if device != "cpu":
            return super().matmul_step(a, b, device)
        out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)

        def step() -> np.ndarray:
            return np.matmul(a, b, out=out)

        return f"numpy {np.__version__}", step

    def _build(self, params: Dict[str, np.ndarray]) -> None:
        if self.variant == "reference" or not self.spec.batch_norm:
            self.model, self.stacked = ReferenceModel(self.spec, params), None
        else:
            self.model, self.stacked = None, StackedModels([self.spec], [params])

    @classmethod
    def profile_steps(cls, adapter: Adapter, batch, steps: int):
        """NumPy has no profiler of its own: the step's products are timed one by one (np.matmul,
        BLAS on every core), and the rest of the step is NumPy's ufuncs and reductions, on one core."""
        import time

        stacked = adapter.stacked
        if stacked is None:
            raise Unavailable(f"the {cls.name} adapter times the products of its in-place step only "
                              f"(this form: {adapter.variant or adapter.mode})")
        products = [0, 0.0]

        def timed_matmul(*args, **kwargs):
            started = time.perf_counter()
            out = np.matmul(*args, **kwargs)
            products[0] += 1
            products[1] += time.perf_counter() - started
            return out

        stacked.matmul = timed_matmul
        try:
            profiled = seconds_per_step(adapter, batch, steps)
        finally:
            stacked.matmul = np.matmul
        kernels = {"np.matmul": (products[0], products[1], "product"),
                   "the rest: NumPy's ufuncs and reductions (one core, not timed one by one)":
                       (steps, profiled * steps - products[1], "other")}
        return f"numpy {np.__version__}, its products timed one by one", profiled, kernels

    def train_step(self, X: np.ndarray, y: np.ndarray) -> float:
        if self.stacked is None:
            return self.model.train_step(X, y)
        return float(self.stacked.train_step(X, y)[0])

    def gradients(self, X: np.ndarray, y: np.ndarray) -> Gradients:
        if self.stacked is None:
            result = self.model.gradients(X, y)
            return Gradients(result.loss, result.probs, result.grads)
        losses, probs, grads = self.stacked.gradients(X, y)
        return Gradients(float(losses[0]), probs[0], self.stacked.unstacked(grads, 0))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.stacked is None:
            return self.model.predict_proba(X)
        return self.stacked.predict_proba(X)[0]

    def state(self) -> Dict[str, np.ndarray]:
        if self.stacked is None:
            return self.model.state()
        return self._ordered_state(self.stacked.unstacked({**self.stacked.theta, **self.stacked.running}, 0))

    @classmethod
    def conventions(cls):
        """The spec's own row: the reference's batch norm and momentum with the spec's defaults."""

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


class StackedModels(ManyModels):
    """The reference's forward and hand-written backward with a leading model axis: every weight
    is a stack (k, n_in, n_out), so each layer of all k models is one batched matmul, and every
    vector is (k, 1, n) so that it broadcasts over the batch. Per-model hyperparameters are
    (k, 1, 1) arrays. Written from SPEC.md like reference/model.py, and tested against it."""

    def __init__(self, specs: List[Spec], params: List[Mapping[str, np.ndarray]]):
        super().__init__(specs, params)
        spec = self.spec
        if not spec.batch_norm:
            raise Unsupported("many NumPy models at once are written with batch norm only (batch_norm=false: "
                              "train them one by one)")
        k = len(specs)

        def stacked(name: str) -> np.ndarray:
            array = np.stack([p[name] for p in self.params])
            return array if array.ndim == 3 else array.reshape(k, 1, -1)   # vectors as (k, 1, n)

        self.shapes = {name: np.shape(value) for name, value in self.params[0].items()}
        self.names = trainable_names(spec)
        self.weights = weight_names(spec)
        self.theta = {name: stacked(name) for name in self.names}
        self.running = {name: stacked(name) for name in running_stat_names(spec)}
        column = lambda field: self.per_model(field).reshape(k, 1, 1)  # noqa: E731
        self.learning_rate, self.beta1, self.beta2 = column("learning_rate"), column("beta1"), column("beta2")
        self.bn_momentum = column("bn_momentum")
        self.v = {name: np.zeros_like(value) for name, value in self.theta.items()} if spec.optimizer != "sgd" else {}
        self.s = {name: np.zeros_like(value) for name, value in self.theta.items()} if spec.optimizer == "adam" else {}
        self.t = 0
        self.matmul = np.matmul          # every product of the step; NumpyAdapter.profile times them

    # The arithmetic is the reference's; the arrays are (k, m, n), big enough that allocating them
    # costs as much as computing them, so the step works in place wherever a value is not needed
    # again (measured: a fresh (64, 64, 64) product took 5x the time of one written in place).
    def _forward(self, X: np.ndarray, training: bool):
        spec, theta = self.spec, self.theta
        m = X.shape[0]
        A, caches, stats = X, [], []
        for layer in range(1, spec.n_layers + 1):
            Z = self.matmul(A, theta[f"W{layer}"])              # (m, n) @ (k, n, h) -> (k, m, h)
            if training:
                mu = Z.mean(axis=1, keepdims=True)
                Z -= mu                                         # centred
                var = np.einsum("kmh,kmh->kh", Z, Z)[:, None, :] / m   # biased, for normalising
                stats.append((mu, var))
            else:
                Z -= self.running[f"running_mean{layer}"]
                var = self.running[f"running_var{layer}"]
            inv_std = 1.0 / np.sqrt(var + spec.bn_epsilon)
            Z *= inv_std
            N = Z                                               # normalised
            Zt = N * theta[f"gamma{layer}"]
            Zt += theta[f"beta{layer}"]
            passes = Zt > 0                                     # the ReLU's derivative: 0 at 0
            np.maximum(Zt, 0, out=Zt)
            caches.append((A, N, inv_std, passes))
            A = Zt
        logits = self.matmul(A, theta["W_out"])
        logits += theta["b_out"]
        logits -= logits.max(axis=2, keepdims=True)
        logits -= np.log(np.exp(logits).sum(axis=2, keepdims=True))
        return logits, A, caches, stats                         # logits now holds the log-probabilities

    def unstacked(self, arrays: Mapping[str, np.ndarray], model: int) -> Dict[str, np.ndarray]:
        """Model ``model``'s own arrays out of stacks, in their spec shapes (copies)."""
        return {name: array[model].reshape(self.shapes[name]).copy() for name, array in arrays.items()}

    def gradients(self, X: np.ndarray, y: np.ndarray):
        """Every model's loss (k,), training-mode probabilities (k, m, C) and gradient stacks;
        changes nothing."""
        X, y = check_batch(self.spec, X, y)
        losses, grads, _, probs = self._forward_backward(X, y, keep_probs=True)
        return losses, probs, grads

    def train_step(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        spec = self.spec
        X, y = check_batch(spec, X, y)
        m = X.shape[0]
        losses, grads, stats, _ = self._forward_backward(X, y)
        momentum = self.bn_momentum
        for layer, (mu, var) in enumerate(stats, start=1):
            s2 = var if spec.running_var == "biased" else var * (m / (m - 1))
            self.running[f"running_mean{layer}"] = momentum * self.running[f"running_mean{layer}"] + (1 - momentum) * mu
            self.running[f"running_var{layer}"] = momentum * self.running[f"running_var{layer}"] + (1 - momentum) * s2
        self._update(grads)
        return losses

    def _forward_backward(self, X: np.ndarray, y: np.ndarray, *, keep_probs: bool = False):
        spec, theta = self.spec, self.theta
        m = X.shape[0]
        log_probs, A_last, caches, stats = self._forward(X, training=True)
        rows = np.arange(m)
        losses = -log_probs[:, rows, y].sum(axis=1) / m
        if spec.l2:
            losses = losses + spec.l2 / (2 * m) * sum(np.einsum("kij,kij->k", theta[w], theta[w]) for w in self.weights)

        grads = {}
        dlogits = np.exp(log_probs, out=log_probs)
        probs = dlogits.copy() if keep_probs else None
        dlogits[:, rows, y] -= 1
        dlogits /= m
        grads["W_out"] = self.matmul(A_last.transpose(0, 2, 1), dlogits)
        grads["b_out"] = dlogits.sum(axis=1, keepdims=True)
        dA = self.matmul(dlogits, theta["W_out"].transpose(0, 2, 1))
        for layer in range(spec.n_layers, 0, -1):
            A_prev, N, inv_std, passes = caches[layer - 1]
            dZt = dA
            dZt *= passes
            grad_gamma = np.einsum("kmh,kmh->kh", dZt, N)[:, None, :]
            grad_beta = dZt.sum(axis=1, keepdims=True)
            grads[f"gamma{layer}"], grads[f"beta{layer}"] = grad_gamma, grad_beta
            # dZ = inv_std / m (m dN - sum dN - N sum(dN N)) with dN = gamma dZt; gamma is one number
            # per unit, so the two sums are gamma times the gradients of beta and gamma just made:
            # dZ = a dZt + b + c N, with a, b, c per unit (three passes over the batch, not seven)
            scale = theta[f"gamma{layer}"] * inv_std
            N *= -scale * grad_gamma / m
            N -= scale * grad_beta / m
            dZt *= scale
            dZt += N
            dZ = dZt
            grads[f"W{layer}"] = self.matmul(A_prev.T if A_prev.ndim == 2 else A_prev.transpose(0, 2, 1), dZ)
            if layer > 1:
                dA = self.matmul(dZ, theta[f"W{layer}"].transpose(0, 2, 1))
        if spec.l2:
            for name in self.weights:
                grads[name] += (spec.l2 / m) * theta[name]
        return losses, grads, stats, probs

    def _update(self, grads: Dict[str, np.ndarray]) -> None:
        """SPEC.md's updates, in place on the stacks (the gradients are this step's own arrays)."""
        spec, lr, b1, b2 = self.spec, self.learning_rate, self.beta1, self.beta2
        self.t += 1
        for name, g in grads.items():
            theta = self.theta[name]
            if spec.optimizer == "sgd":
                g *= lr
                theta -= g
            elif spec.optimizer == "momentum":
                v = self.v[name]
                v *= b1
                g *= 1 - b1
                v += g
                np.multiply(v, lr, out=g)       # the gradient's array is free again: no new one
                theta -= g
            else:
                v, s = self.v[name], self.s[name]
                v *= b1
                v += (1 - b1) * g
                s *= b2
                g *= g
                g *= 1 - b2
                s += g
                v_hat = v / (1 - b1 ** self.t)
                denominator = np.sqrt(s / (1 - b2 ** self.t))
                denominator += spec.adam_epsilon
                v_hat /= denominator
                v_hat *= lr
                theta -= v_hat

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X, _ = check_batch(self.spec, X, training=False)
        return np.exp(self._forward(X, training=False)[0])
