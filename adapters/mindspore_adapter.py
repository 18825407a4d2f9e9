"""MindSpore (Huawei's framework; its CPU build): modes ``pynative`` (op by op, MindSpore's eager
mode) and ``graph`` (``mindspore.jit`` of the whole step: forward, ``value_and_grad``, running
statistics and update compiled into one graph). It lives in its own environment: importing it into
a process that has imported Paddle fails (both bring their own oneDNN, and MindSpore's CPU kernels
then miss a symbol; measured), and its autograd needs NumPy < 2 (docs/FRAMEWORKS.md).

State lives in MindSpore ``Parameter`` objects, updated in place with ``ops.assign`` inside the
step, which is how MindSpore's own optimizers are written.
"""
from __future__ import annotations

import inspect
import os
from typing import Dict, Optional

import numpy as np

from bnbench.reference.spec import running_stat_names, trainable_names, weight_names

from .contract import Adapter, ConventionProbe, Gradients


def _ms():
    # MindSpore logs WARNING lines from C++ (glog) unless told otherwise before it is imported.
    os.environ.setdefault("GLOG_v", "3")
    import mindspore

    return mindspore


class MindsporeAdapter(Adapter):
    name = "mindspore"
    status = "maintained by Huawei: PyPI's newest release, checked 2026-11-26: 2.10.0, July 2026"
    modes = ("pynative", "graph")
    best_mode = "graph"
    devices = ("cpu",)
    requires = ("mindspore",)
    environment = "mindspore"
    requirements = ("mindspore==2.10.0", "numpy<2")
    tuning = {
        "pynative": "PyNative mode: mindspore.ops run op by op; mindspore.value_and_grad over the Parameters; "
                    "kernels on n - 1 of the n pinned threads, one dispatch thread, bound to cores (runtime.set_cpu_affinity)",
        "graph": "mindspore.jit of the whole step (forward, value_and_grad, running statistics, update as ops.assign); "
                 "kernels on n - 1 of the n pinned threads, one dispatch thread, bound to cores (runtime.set_cpu_affinity)",
    }
    description = "mindspore.ops from the spec; value_and_grad over Parameters; optimizers by hand with ops.assign"

    @classmethod
    def worker_variables(cls):
        return (("GLOG_v", "3"),)

    @classmethod
    def set_threads(cls, n_threads: int) -> int:
        ms = _ms()
        super().set_threads(n_threads)
        # MindSpore's CPU kernels have a pool of their own (25 threads by default), and its runtime
        # dispatches from threads of its own (5 by default) that work beside the kernels. On the
        # 2-core machine, a kernel pool of 2 beside them made medium steps take 15 ms to 1.1 s
        # (median 0.5 s, measured); a pool of 1 beside one dispatch thread, 19-34 ms. So the
        # kernels get n - 1 threads and the runtime the last one, bound to cores.
        kernel_threads = max(1, n_threads - 1)
        ms.device_context.cpu.op_tuning.threads_num(kernel_threads)
        ms.runtime.dispatch_threads_num(1)
        ms.runtime.set_cpu_affinity(True)
        return kernel_threads

    @classmethod
    def matmul_step(cls, a: np.ndarray, b: np.ndarray, device: str):
        if device != "cpu":
            return super().matmul_step(a, b, device)
        ms = _ms()
        ma, mb = ms.Tensor(a), ms.Tensor(b)

        def step():
            product = ms.ops.matmul(ma, mb)
            ms.runtime.synchronize()
            return product

        return f"mindspore {ms.__version__} (ops.matmul, PyNative)", step

    @classmethod
    def conventions(cls):
        ms = _ms()
        from mindspore import Parameter, Tensor, nn

        def batch_norm(X):
            layer = nn.BatchNorm1d(X.shape[1], dtype=ms.float64 if X.dtype == np.float64 else ms.float32)
            before = layer.moving_mean.asnumpy().copy(), layer.moving_variance.asnumpy().copy()
            layer.set_train(True)
            out = layer(Tensor(X))
            return out.asnumpy(), before[0], before[1], layer.moving_mean.asnumpy(), layer.moving_variance.asnumpy()

        def momentum_sgd(lr, beta, gradient, steps):
            theta = Parameter(Tensor(np.zeros(1, dtype=np.float32)), name="theta")
            optimizer = nn.Momentum([theta], learning_rate=lr, momentum=beta)
            values = []
            for _ in range(steps):
                optimizer((Tensor(np.full(1, gradient, dtype=np.float32)),))
                values.append(float(theta.asnumpy()[0]))
            return values

        # the argument's default, as a user reads it (the layer stores 1 - momentum)
        declared_momentum = inspect.signature(nn.BatchNorm1d).parameters["momentum"].default
        return [ConventionProbe("mindspore", ms.__version__, "mindspore.nn.BatchNorm1d", batch_norm, declared_momentum,
                                "mindspore.nn.Momentum", momentum_sgd)]

    def _build(self, params: Dict[str, np.ndarray]) -> None:
        ms = _ms()
        from mindspore import Parameter, Tensor, ops

        self.ms, self.ops, self.Tensor = ms, ops, Tensor
        spec = self.spec
        # ---- the spec mapped onto MindSpore, in one place ---------------------------------------
        # No nn.BatchNorm1d: its momentum is the weight of the OLD value like the spec's, but it
        # always feeds the unbiased (m-1) batch variance into the running variance (bnbench
        # conventions measures it), which is not the spec's default. Batch norm is written with mindspore.ops (biased variance for
        # normalising, running averages weighting the OLD value by spec.bn_momentum, biased or
        # unbiased as the spec says); ReLU is ops.relu (its gradient at 0 is 0); SPEC.md's updates
        # with ops.assign; L2 in the loss. MindSpore 2.10's CPU log_softmax is float32-accurate on
        # float64 inputs (relative error 4e-5 measured), so float64 takes logits - logsumexp. A
        # Python float meeting a float64 tensor becomes a float32 scalar first (0.9 * x is 2.6e-8
        # off, measured), so every constant of the spec is a tensor of the spec's dtype.
        # batch_norm=false: hidden layers ops.relu(Z + b), no statistics.
        # -------------------------------------------------------------------------------------------
        self.ms_dtype = {"float32": ms.float32, "float64": ms.float64}[spec.dtype]
        tensor = lambda array: Tensor(np.asarray(array, dtype=spec.dtype))  # noqa: E731
        self.param_names = trainable_names(spec)
        self.stat_names = running_stat_names(spec)
        self.trainable = [Parameter(tensor(params[name]), name=name) for name in self.param_names]
        self.running = [Parameter(tensor(params[name]), name=name, requires_grad=False) for name in self.stat_names]
        zeros = lambda prefix: [Parameter(tensor(np.zeros_like(params[name])), name=f"{prefix}_{name}", requires_grad=False)  # noqa: E731
                                for name in self.param_names]
        self.velocity = zeros("v") if spec.optimizer in ("momentum", "adam") else []
        self.second_moment = zeros("s") if spec.optimizer == "adam" else []
        self.t = Parameter(tensor(np.zeros(())), name="t", requires_grad=False)
        functions = _make_functions(ms, spec, self.trainable, self.running, self.velocity, self.second_moment, self.t)
        self._loss_and_grads = functions["loss_and_grads"]
        self._train_step = functions["train_step"]
        self._inference = functions["inference"]
        if self.mode == "graph":
            self._loss_and_grads = ms.jit(self._loss_and_grads)
            self._train_step = ms.jit(self._train_step)
            self._inference = ms.jit(self._inference)

    def to_device(self, X: np.ndarray, y: Optional[np.ndarray] = None):
        X, y = self._check(X, y, training=y is not None)
        return self.Tensor(X), None if y is None else self.Tensor(y.astype(np.int32))

    def sync(self) -> None:
        # ms.runtime.synchronize() refuses the CPU; reading the step's last assigned parameter
        # back waits for every op queued before it, the assigns of the step included.
        self.trainable[-1].asnumpy()

    def train_step(self, X: np.ndarray, y: np.ndarray) -> float:
        return self.train_step_prepared(self.to_device(X, y))

    def train_step_prepared(self, batch) -> float:
        loss = self._train_step(*batch)
        loss = float(loss.asnumpy())
        self.sync()
        return loss

    def gradients(self, X: np.ndarray, y: np.ndarray) -> Gradients:
        loss, log_probs, grads = self._loss_and_grads(*self.to_device(X, y))
        return Gradients(float(loss.asnumpy()), np.exp(log_probs.asnumpy()),
                         {name: g.asnumpy() for name, g in zip(self.param_names, grads)})

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._inference(self.to_device(X)[0]).asnumpy()

    def predict_prepared(self, batch) -> None:
        self._inference(batch[0]).asnumpy()   # waits for the inference (a CPU array: no transfer)

    def state(self) -> Dict[str, np.ndarray]:
        arrays = {name: p.asnumpy().copy() for name, p in zip(self.param_names, self.trainable)}
        arrays.update({name: r.asnumpy().copy() for name, r in zip(self.stat_names, self.running)})
        return self._ordered_state(arrays)


def _make_functions(ms, spec, trainable, running, velocity, second_moment, t):
    """The spec as functions of (X, y) over the Parameters; ``train_step`` updates them in place."""
    from mindspore import Tensor, ops

    dtype = {"float32": ms.float32, "float64": ms.float64}[spec.dtype]

    def constant(value):
        # made here, outside the graph: inside mindspore.jit a Python float becomes a float32
        # literal whatever tensor it is turned into (0.01 / 32 comes out 7e-12 off, measured)
        return Tensor(value, dtype)

    def count(m):
        # a batch size as a tensor of the spec's dtype, exact in graph mode (integers are)
        return ops.cast(ops.scalar_to_tensor(m, ms.int64), dtype)

    L = spec.n_layers
    eps = constant(spec.bn_epsilon)
    momentum, one_minus_momentum = constant(spec.bn_momentum), constant(1 - spec.bn_momentum)
    l2 = spec.l2
    half_l2 = constant(l2 / 2)
    one = constant(1.0)
    lr, b1, b2 = constant(spec.learning_rate), constant(spec.beta1), constant(spec.beta2)
    one_minus_b1, one_minus_b2 = constant(1 - spec.beta1), constant(1 - spec.beta2)
    adam_epsilon = constant(spec.adam_epsilon)
    names = trainable_names(spec)
    weight_indices = [names.index(name) for name in weight_names(spec)]
    float64 = spec.dtype == "float64"
    batch_norm = spec.batch_norm

    def forward_loss(X, y):
        A = X
        means, variances = (), ()
        for layer in range(L):
            if not batch_norm:                               # an ordinary layer: the ReLU takes Z + b
                A = ops.relu(ops.matmul(A, trainable[2 * layer]) + trainable[2 * layer + 1])
                continue
            W, gamma, beta = trainable[3 * layer], trainable[3 * layer + 1], trainable[3 * layer + 2]
            Z = ops.matmul(A, W)
            mu = ops.mean(Z, 0)
            centred = Z - mu
            var = ops.mean(ops.square(centred), 0)            # biased, for normalising
            means += (mu,)
            variances += (var,)
            A = ops.relu(gamma * (centred / ops.sqrt(var + eps)) + beta)
        logits = ops.matmul(A, trainable[-2]) + trainable[-1]
        log_probs = logits - ops.logsumexp(logits, 1, True) if float64 else ops.log_softmax(logits, 1)
        loss = -ops.mean(ops.gather_elements(log_probs, 1, y.reshape(-1, 1)))
        if l2:
            penalty = ops.sum(ops.square(trainable[weight_indices[0]]))
            for index in weight_indices[1:]:
                penalty = penalty + ops.sum(ops.square(trainable[index]))
            loss = loss + half_l2 * penalty / count(X.shape[0])
        return loss, log_probs, means, variances

    value_and_grad = ms.value_and_grad(forward_loss, None, trainable, has_aux=True)

    def loss_and_grads(X, y):
        (loss, log_probs, _, _), grads = value_and_grad(X, y)
        return loss, log_probs, grads

    def train_step(X, y):
        (loss, _, means, variances), grads = value_and_grad(X, y)
        m = X.shape[0]
        for layer in range(L if batch_norm else 0):
            s2 = variances[layer] if spec.running_var == "biased" else variances[layer] * (count(m) / count(m - 1))
            ops.assign(running[2 * layer], momentum * running[2 * layer] + one_minus_momentum * means[layer])
            ops.assign(running[2 * layer + 1], momentum * running[2 * layer + 1] + one_minus_momentum * s2)
        step = t + one
        ops.assign(t, step)
        for index in range(len(trainable)):
            theta, g = trainable[index], grads[index]
            if spec.optimizer == "sgd":
                ops.assign(theta, theta - lr * g)
            elif spec.optimizer == "momentum":
                v = b1 * velocity[index] + one_minus_b1 * g
                ops.assign(velocity[index], v)
                ops.assign(theta, theta - lr * v)
            else:
                v = b1 * velocity[index] + one_minus_b1 * g
                s = b2 * second_moment[index] + one_minus_b2 * ops.square(g)
                ops.assign(velocity[index], v)
                ops.assign(second_moment[index], s)
                v_hat = v / (one - ops.pow(b1, step))
                s_hat = s / (one - ops.pow(b2, step))
                ops.assign(theta, theta - lr * v_hat / (ops.sqrt(s_hat) + adam_epsilon))
        return loss

    def inference(X):
        A = X
        for layer in range(L):
            if not batch_norm:
                A = ops.relu(ops.matmul(A, trainable[2 * layer]) + trainable[2 * layer + 1])
                continue
            W, gamma, beta = trainable[3 * layer], trainable[3 * layer + 1], trainable[3 * layer + 2]
            N = (ops.matmul(A, W) - running[2 * layer]) / ops.sqrt(running[2 * layer + 1] + eps)
            A = ops.relu(gamma * N + beta)
        logits = ops.matmul(A, trainable[-2]) + trainable[-1]
        if float64:
            return ops.exp(logits - ops.logsumexp(logits, 1, True))
        return ops.softmax(logits, 1)

    return {"loss_and_grads": loss_and_grads, "train_step": train_step, "inference": inference}
