"""MLX (Apple's array framework; its Linux CPU build, ``mlx[cpu]``): modes ``eager`` (every op
evaluated lazily, one graph per step built and run by ``mx.eval``) and ``compiled`` (``mx.compile``
of the whole step: forward, ``value_and_grad``, running statistics and update, fused where MLX can).

The spec is written in mlx.core, as pure functions of (parameters, running statistics, optimizer
state, batch); MLX's own ``nn.BatchNorm`` cannot express the spec's default (it always feeds the
unbiased batch variance into the running variance; ``bnbench conventions`` measures it).
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from bnbench.reference.spec import running_stat_names, trainable_names

from .contract import Adapter, ConventionProbe, Gradients
from .functional import make_functions


def _mx():
    import mlx.core as mx

    return mx


class MlxAdapter(Adapter):
    name = "mlx"
    status = "maintained by Apple: PyPI's newest release, checked 2026-11-26: 0.32.4, October 2026"
    modes = ("eager", "compiled")
    best_mode = "compiled"
    devices = ("cpu",)
    requires = ("mlx",)
    # mlx's Linux CPU backend is a wheel of its own, mlx-cpu (what the extra mlx[cpu] pulls in),
    # named here because asv drops extras; the Metal GPU exists only on macOS.
    requirements = ("mlx==0.32.4", "mlx-cpu==0.32.4")
    tuning = {
        "eager": "mlx.core ops, lazily evaluated: one mx.eval per step",
        "compiled": "mx.compile of the whole step (forward, value_and_grad, running statistics, update)",
    }
    description = "mlx.core from the spec; mx.value_and_grad; optimizers by hand"

    @classmethod
    def version(cls) -> str:
        return _mx().__version__

    @classmethod
    def matmul_step(cls, a: np.ndarray, b: np.ndarray, device: str):
        if device != "cpu":
            return super().matmul_step(a, b, device)
        mx = _mx()
        # mx.array turns float64 into float32 unless told: the float64 ceiling was a float32 product
        # (found by the peak's check of its first product, bnbench.timing.peak)
        dtype = {"float32": mx.float32, "float64": mx.float64}[str(a.dtype)]
        ma, mb = mx.array(a, dtype=dtype), mx.array(b, dtype=dtype)

        def step():
            product = mx.matmul(ma, mb)
            mx.eval(product)
            return product

        return f"mlx {mx.__version__} (mx.matmul, cpu stream)", step

    @classmethod
    def set_threads(cls, n_threads: int) -> int:
        # mlx-cpu on Linux runs one thread whatever is asked: its matmuls go to the reference
        # (netlib) BLAS bundled in the wheel and its other kernels to one CPU stream (measured:
        # user time equals wall time; docs/FRAMEWORKS.md). The count it uses is recorded as 1.
        super().set_threads(n_threads)
        return 1

    @classmethod
    def conventions(cls):
        mx = _mx()
        import mlx.nn as nn
        import mlx.optimizers as optimizers

        def batch_norm(X):
            layer = nn.BatchNorm(X.shape[1])
            before = np.array(layer.running_mean), np.array(layer.running_var)
            layer.train()
            out = layer(mx.array(X, dtype=mx.float64 if X.dtype == np.float64 else mx.float32))
            mx.eval(out, layer.running_mean, layer.running_var)
            return np.array(out), before[0], before[1], np.array(layer.running_mean), np.array(layer.running_var)

        def momentum_sgd(lr, beta, gradient, steps):
            optimizer = optimizers.SGD(learning_rate=lr, momentum=beta)
            params = {"theta": mx.zeros((1,))}
            values = []
            for _ in range(steps):
                params = optimizer.apply_gradients({"theta": mx.full((1,), gradient)}, params)
                mx.eval(params)
                values.append(float(params["theta"][0]))
            return values

        return [ConventionProbe("mlx", mx.__version__, "mlx.nn.BatchNorm", batch_norm, nn.BatchNorm(1).momentum,
                                "mlx.optimizers.SGD(momentum)", momentum_sgd)]

    def _build(self, params: Dict[str, np.ndarray]) -> None:
        mx = _mx()
        self.mx = mx
        spec = self.spec
        # ---- the spec mapped onto MLX, in one place --------------------------------------------
        # Nothing has a framework default here: batch norm (biased variance for normalising), its
        # running statistics (momentum = weight of the OLD value, biased or unbiased as the spec
        # says) and the optimizers are SPEC.md's formulas in mlx.core. mx.array turns float64
        # NumPy arrays into float32 unless told otherwise, so every array is made with the spec's
        # dtype explicitly. ReLU is mx.where(Zt > 0, Zt, 0): its gradient at 0 is 0.
        # batch_norm=false: hidden layers Z = A W + b, then the same ReLU, no statistics.
        # MLX 0.32's CPU mx.exp is a float32-accurate approximation even in float64 (relative
        # error about 1e-6, measured: docs/FRAMEWORKS.md), so in float64 the softmax's exponential
        # is e ** x through mx.power, which is exact; float32 keeps mx.exp and mx.logsumexp.
        # -------------------------------------------------------------------------------------------
        self.mlx_dtype = {"float32": mx.float32, "float64": mx.float64}[spec.dtype]
        put = lambda array: mx.array(np.asarray(array, dtype=spec.dtype), dtype=self.mlx_dtype)  # noqa: E731
        self.trainable = {name: put(params[name]) for name in trainable_names(spec)}
        self.running = {name: put(params[name]) for name in running_stat_names(spec)}
        zeros = lambda: {name: mx.zeros_like(value) for name, value in self.trainable.items()}  # noqa: E731
        self.opt_state = {
            "v": zeros() if spec.optimizer in ("momentum", "adam") else {},
            "s": zeros() if spec.optimizer == "adam" else {},
            "t": mx.array(0.0, dtype=self.mlx_dtype),
        }
        functions = _make_functions(spec)
        self._loss_and_grads = functions["loss_and_grads"]
        self._train_step = functions["train_step"]
        self._inference = functions["inference"]
        if self.mode == "compiled":
            self._loss_and_grads = mx.compile(self._loss_and_grads)
            self._train_step = mx.compile(self._train_step)
            self._inference = mx.compile(self._inference)

    def to_device(self, X: np.ndarray, y: Optional[np.ndarray] = None):
        X, y = self._check(X, y, training=y is not None)
        mx = self.mx
        X_array = mx.array(X, dtype=self.mlx_dtype)
        y_array = None if y is None else mx.array(y.astype(np.int32))
        mx.eval(X_array) if y_array is None else mx.eval(X_array, y_array)
        return X_array, y_array

    def train_step(self, X: np.ndarray, y: np.ndarray) -> float:
        return self.train_step_prepared(self.to_device(X, y))

    def train_step_prepared(self, batch) -> float:
        self.trainable, self.running, self.opt_state, loss = self._train_step(
            self.trainable, self.running, self.opt_state, batch[0], batch[1])
        # MLX is lazy: evaluating the new state runs the whole step, not just the loss.
        self.mx.eval(self.trainable, self.running, self.opt_state, loss)
        return loss.item()

    def gradients(self, X: np.ndarray, y: np.ndarray) -> Gradients:
        X, y = self.to_device(X, y)
        loss, log_probs, grads = self._loss_and_grads(self.trainable, self.running, X, y)
        self.mx.eval(loss, log_probs, grads)
        return Gradients(loss.item(), np.exp(np.array(log_probs)), {name: np.array(g) for name, g in grads.items()})

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X, _ = self.to_device(X)
        return np.array(self._inference(self.trainable, self.running, X))

    def predict_prepared(self, batch) -> None:
        self.mx.eval(self._inference(self.trainable, self.running, batch[0]))

    def state(self) -> Dict[str, np.ndarray]:
        arrays = {name: np.array(value) for name, value in self.trainable.items()}
        arrays.update({name: np.array(value) for name, value in self.running.items()})
        return self._ordered_state(arrays)


def _make_functions(spec):
    """mlx.core as the functional core's namespace (bnbench.adapters.functional). MLX 0.32's CPU
    mx.exp is a float32-accurate approximation even in float64 (docs/FRAMEWORKS.md), so in
    float64 the softmax's exponential is e ** x through mx.power, which is exact; float32 keeps
    mx.exp through mx.logsumexp and mx.softmax."""
    import math
    import types

    import mlx.core as mx

    if spec.dtype == "float64":
        def log_softmax(logits):
            shifted = logits - mx.stop_gradient(mx.max(logits, axis=1, keepdims=True))
            return shifted - mx.log(mx.sum(mx.power(math.e, shifted), axis=1, keepdims=True))

        def softmax(logits):
            exponentials = mx.power(math.e, logits - mx.max(logits, axis=1, keepdims=True))
            return exponentials / mx.sum(exponentials, axis=1, keepdims=True)
    else:
        def log_softmax(logits):
            return logits - mx.logsumexp(logits, axis=1, keepdims=True)

        def softmax(logits):
            return mx.softmax(logits, axis=1)

    def value_and_grad(loss_fn):
        # mx.value_and_grad differentiates the first output; the rest ride along as auxiliaries
        return lambda trainable, X, y: mx.value_and_grad(lambda params: loss_fn(params, X, y))(trainable)

    ops = types.SimpleNamespace(where=mx.where, mean=mx.mean, square=mx.square, sqrt=mx.sqrt, sum=mx.sum, power=mx.power,
                                take_along_axis=mx.take_along_axis, log_softmax=log_softmax, softmax=softmax,
                                value_and_grad=value_and_grad)
    return make_functions(spec, ops)
