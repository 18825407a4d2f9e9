"""Chainer 7.8.1 (its last release; define-by-run, the design PyTorch took up) in its own
environment (numpy<2: it uses names numpy 2 removed), reached through a worker process. Mode
``eager``: Chainer has no compiler."""
from __future__ import annotations

from typing import Dict

import numpy as np

from bnbench.reference.model import Optimizer, updated_running_stats
from bnbench.reference.spec import running_stat_names, trainable_names, weight_names

from .contract import Adapter, ConventionProbe, Gradients
from .declaration import Alternative
from .profiling import add_kernel_time, kind_of, seconds_per_step

# Chainer's matrix-product function nodes (the rest are its other functions).
PRODUCT_KERNELS = frozenset({"linearfunction", "matmul"})


def _chainer():
    import chainer

    return chainer


class ChainerAdapter(Adapter):
    name = "chainer"
    status = "retired: Preferred Networks ended its development in December 2019 (moving to PyTorch); PyPI's newest release, checked 2026-11-26: 7.8.1, January 2022"
    modes = ("eager",)
    best_mode = "eager"
    devices = ("cpu",)
    requires = ("chainer",)
    environment = "chainer"
    # chainer's sdist builds only without build isolation, which asv cannot ask for: its worker times it
    requirements = ("numpy<2", "setuptools", "wheel")
    install_then = ("--no-build-isolation", "chainer==7.8.1")
    timed_by = "worker"
    # Its tuning log: the fused batch norm made the step 2.1x faster at tiny and 5% at large, the
    # type checks off 16% at tiny, F.relu instead of F.where 22% at large (its profile showed where).
    tuning = {"eager": "define-by-run: chainer.functions on chainer.Variable, Variable.backward(); batch norm as "
                       "Chainer's fused F.batch_normalization; ReLU as F.relu; chainer.config.type_check = False"}
    alternatives = {"eager": {
        "where-relu": Alternative("ReLU as F.where(Zt > 0, Zt, 0), as SPEC.md states it, instead of F.relu"),
        "spec-functions": Alternative("batch norm written out in chainer.functions (mean, centred square, sqrt, "
                                      "broadcasts), as SPEC.md states it"),
        "type-check": Alternative("chainer.config.type_check = True (Chainer's default): input type checks in "
                                  "every function call"),
        "chainer-optimizer": Alternative(
            "sgd and momentum by Chainer's own optimizers on a Link of the parameters (SGD(lr); MomentumSGD with lr "
            "(1 - beta1) and momentum beta1, whose velocity is -lr times the spec's), updating in place from the "
            "parameters' own gradients, instead of the reference's optimizer on copies; Adam stays the reference's "
            "(Chainer's adds epsilon before the bias correction)"),
    }}
    description = "the spec's formulas in chainer.functions; optimizers as the reference's NumPy updates"

    @classmethod
    def profile_steps(cls, adapter: Adapter, batch, steps: int):
        """A chainer.FunctionHook timing every function node's forward and backward by name, less
        the nodes it calls (Chainer's backward of one node runs others; its TimerHook counts both).
        The update, in NumPy outside any function, is what lies outside them."""
        import time

        chainer = _chainer()

        class SelfTimeHook(chainer.FunctionHook):
            name = "bnbench self time"

            def __init__(self):
                self.running, self.kernels = [], {}

            def _start(self):
                self.running.append([time.perf_counter(), 0.0])

            def _stop(self, function, label):
                started, inner = self.running.pop()
                elapsed = time.perf_counter() - started
                if self.running:
                    self.running[-1][1] += elapsed
                add_kernel_time(self.kernels, label, elapsed - inner, kind=kind_of(label, PRODUCT_KERNELS))

            def forward_preprocess(self, function, in_data):
                self._start()

            def forward_postprocess(self, function, in_data):
                self._stop(function, function.label)

            def backward_preprocess(self, function, in_data, out_grad):
                self._start()

            def backward_postprocess(self, function, in_data, out_grad):
                self._stop(function, f"{function.label} (backward)")

        with SelfTimeHook() as hook:
            profiled = seconds_per_step(adapter, batch, steps)
        return f"chainer {chainer.__version__} FunctionHook (self time)", profiled, hook.kernels

    @classmethod
    def matmul_step(cls, a: np.ndarray, b: np.ndarray, device: str):
        if device != "cpu":
            return super().matmul_step(a, b, device)
        chainer = _chainer()
        import chainer.functions as F

        return f"chainer {chainer.__version__} (F.matmul on NumPy {np.__version__})", lambda: F.matmul(a, b)

    def _build(self, params: Dict[str, np.ndarray]) -> None:
        chainer = _chainer()
        import chainer.functions as F

        self.chainer, self.F = chainer, F
        spec = self.spec
        # ---- the spec mapped onto Chainer, in one place ----------------------------------------
        # No Link: chainer.links.BatchNormalization's defaults (decay 0.9, eps 2e-5, an unbiased
        # running variance: bnbench conventions measures them) differ from the spec, so batch
        # norm is the function F.batch_normalization with eps = spec.bn_epsilon (it normalises
        # with the biased variance), and the running averages (weighting the OLD value by
        # spec.bn_momentum, biased or unbiased as the spec says) are the reference's, from the
        # batch's mean and biased variance; ReLU as F.relu, whose backward masks the gradient by
        # y > 0, so it is 0 at 0 as the spec's (the spec-functions form writes where(Zt > 0, Zt, 0));
        # L2 in the loss; batch_norm=false: hidden layers F.relu(Z + b), no statistics. The update
        # happens in NumPy on the Variables' arrays, so it is the reference's Optimizer; in the
        # chainer-optimizer form sgd is chainer.optimizers.SGD(lr) and momentum is MomentumSGD with
        # lr (1 - beta1) and momentum beta1 (its v = beta1 v - lr (1 - beta1) g is -lr times the
        # spec's, and param += v is the spec's step, up to rounding).
        # ----------------------------------------------------------------------------------------
        self.names = trainable_names(spec)
        self.params = {name: chainer.Parameter(np.array(params[name], dtype=spec.dtype)) for name in self.names}
        self.running = {name: np.array(params[name], dtype=spec.dtype) for name in running_stat_names(spec)}
        self.optimizer = Optimizer(spec, self.names, {name: params[name].shape for name in self.names})
        self.chainer_optimizer = None
        if self.variant == "chainer-optimizer" and spec.optimizer in ("sgd", "momentum"):
            link = chainer.Link()
            with link.init_scope():
                for name in self.names:
                    setattr(link, name, self.params[name])
            lr = spec.learning_rate
            self.chainer_optimizer = (chainer.optimizers.SGD(lr=lr) if spec.optimizer == "sgd" else
                                      chainer.optimizers.MomentumSGD(lr=lr * (1 - spec.beta1), momentum=spec.beta1))
            self.chainer_optimizer.setup(link)
        self.weights = weight_names(spec)

    def _forward_loss(self, X: np.ndarray, y: np.ndarray):
        F = self.F
        spec = self.spec
        m, A = X.shape[0], X
        stats = []
        for layer in range(1, spec.n_layers + 1):
            Z = F.matmul(A, self.params[f"W{layer}"])
            if not spec.batch_norm:                          # an ordinary layer: the ReLU takes Z + b
                A = F.relu(Z + F.broadcast_to(self.params[f"b{layer}"], Z.shape))
                continue
            if self.variant != "spec-functions":
                stats.append((Z.array.mean(axis=0), Z.array.var(axis=0)))
                Zt = F.batch_normalization(Z, self.params[f"gamma{layer}"], self.params[f"beta{layer}"], eps=spec.bn_epsilon)
                A = (F.where(Zt.array > 0, Zt, np.zeros(Zt.shape, dtype=spec.dtype)) if self.variant == "where-relu"
                     else F.relu(Zt))
                continue
            mu = F.mean(Z, axis=0)
            centred = Z - F.broadcast_to(mu, Z.shape)
            var = F.mean(F.square(centred), axis=0)                # biased, for normalising
            stats.append((mu.array, var.array))
            N = centred / F.broadcast_to(F.sqrt(var + spec.bn_epsilon), Z.shape)
            Zt = F.broadcast_to(self.params[f"gamma{layer}"], Z.shape) * N + F.broadcast_to(self.params[f"beta{layer}"], Z.shape)
            A = F.where(Zt.array > 0, Zt, np.zeros(Zt.shape, dtype=spec.dtype))
        logits = F.matmul(A, self.params["W_out"]) + F.broadcast_to(self.params["b_out"], (m, spec.n_classes))
        log_probs = F.log_softmax(logits)
        loss = -F.mean(F.select_item(log_probs, y))
        if spec.l2:
            loss = loss + spec.l2 / (2 * m) * sum(F.sum(F.square(self.params[name])) for name in self.weights)
        return loss, log_probs, stats

    def _backward(self, X, y):
        for p in self.params.values():
            p.cleargrad()
        loss, log_probs, stats = self._forward_loss(X, y)
        loss.backward()
        return loss, log_probs, stats, {name: self.params[name].grad for name in self.names}

    def train_step(self, X: np.ndarray, y: np.ndarray) -> float:
        X, y = self._check(X, y)
        spec = self.spec
        with self.chainer.using_config("type_check", self.variant == "type-check"):
            loss, _, stats, grads = self._backward(X, y.astype(np.int32))
        if stats:
            means, variances = zip(*stats)
            self.running = updated_running_stats(spec, self.running, list(means), list(variances), X.shape[0])
        if self.chainer_optimizer is not None:
            self.chainer_optimizer.update()          # in place, from each Parameter's own gradient
            return float(loss.array)
        arrays = {name: p.array for name, p in self.params.items()}
        self.optimizer.apply(arrays, grads)          # the reference's optimizer (new arrays; the gradients are read)
        for name, array in arrays.items():
            self.params[name].array = array
        return float(loss.array)

    def gradients(self, X: np.ndarray, y: np.ndarray) -> Gradients:
        X, y = self._check(X, y)
        loss, log_probs, _, grads = self._backward(X, y.astype(np.int32))
        return Gradients(float(loss.array), np.exp(log_probs.array), {name: g.copy() for name, g in grads.items()})

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X, _ = self._check(X, None, training=False)
        F = self.F
        spec = self.spec
        with self.chainer.no_backprop_mode():
            A = X
            for layer in range(1, spec.n_layers + 1):
                Z = F.matmul(A, self.params[f"W{layer}"]).array
                if not spec.batch_norm:
                    Z = Z + self.params[f"b{layer}"].array
                    A = np.where(Z > 0, Z, 0).astype(spec.dtype)
                    continue
                N = (Z - self.running[f"running_mean{layer}"]) / np.sqrt(self.running[f"running_var{layer}"] + spec.bn_epsilon)
                Zt = self.params[f"gamma{layer}"].array * N + self.params[f"beta{layer}"].array
                A = np.where(Zt > 0, Zt, 0).astype(spec.dtype)
            logits = F.matmul(A, self.params["W_out"]).array + self.params["b_out"].array
            return F.softmax(logits).array

    def state(self) -> Dict[str, np.ndarray]:
        arrays = {name: p.array.copy() for name, p in self.params.items()}
        arrays.update({name: r.copy() for name, r in self.running.items()})
        return self._ordered_state(arrays)

    # ------------------------------------------------------------------ conventions
    @classmethod
    def conventions(cls):

        chainer = _chainer()
        import chainer.links as L

        def batch_norm(X):
            link = L.BatchNormalization(X.shape[1])
            before = link.avg_mean.copy(), link.avg_var.copy()
            with chainer.using_config("train", True):
                out = link(X)
            return out.array, before[0], before[1], link.avg_mean, link.avg_var

        def momentum_sgd(lr, beta, gradient, steps):
            link = chainer.Link()
            with link.init_scope():
                link.theta = chainer.Parameter(np.zeros(1, dtype=np.float32))
            optimizer = chainer.optimizers.MomentumSGD(lr=lr, momentum=beta)
            optimizer.setup(link)
            values = []
            for _ in range(steps):
                link.cleargrads()
                link.theta.grad = np.full(1, gradient, dtype=np.float32)
                optimizer.update()
                values.append(float(link.theta.array[0]))
            return values

        return [ConventionProbe("chainer", chainer.__version__, "chainer.links.BatchNormalization", batch_norm,
                                L.BatchNormalization(1).decay, "chainer.optimizers.MomentumSGD", momentum_sgd)]
