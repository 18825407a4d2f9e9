"""PaddlePaddle: modes ``eager`` (dynamic graph) and ``static`` (paddle.jit.to_static of the forward
and loss: a compiled static program, differentiated by Paddle); cpu, and cuda with a GPU build."""
from __future__ import annotations

import os
import sys
from typing import Dict, Optional

import numpy as np

from bnbench.reference.spec import running_stat_names, trainable_names, weight_names

from .contract import Adapter, ConventionProbe, Gradients, Unsupported
from .declaration import Alternative
from .profiling import add_kernel_time, kind_of, seconds_per_step

# Paddle's matrix-product kernels, as its profiler names them (the rest are its other kernels).
PRODUCT_KERNELS = frozenset({"matmul", "matmul_grad"})
from .placement import Placement


def _paddle():
    os.environ.setdefault("GLOG_minloglevel", "2")     # keep Paddle's start-up log off stderr
    # Paddle's program executor runs ops from a pool of its own threads by default; next to the
    # pinned compute threads they compete for the cores (2 here): serial, the ops run in the
    # calling thread as in every other framework. Measured at medium, two alternating runs each:
    # static 13.1/14.4 -> 8.3/10.0 ms, eager (same process) 12.9/10.5 -> 8.2/8.7 ms.
    _select_mkl_kernels()
    import paddle

    paddle.set_flags({"FLAGS_new_executor_serial_run": True})   # also where paddle was imported before
    return paddle


def _cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _select_mkl_kernels() -> None:
    """Paddle's CPU matmul is an old MKL (mklml) that takes a generic slow path on AMD processors;
    MKL_DEBUG_CPU_TYPE=5 selects its AVX2 kernels. Measured on this project's AMD EPYC machines,
    the float32 CPU peak's product at 2 threads: 37 -> 129-149 GFLOP/s (NumPy's OpenBLAS: 151). MKL reads it at its
    first call, so it works until Paddle has run an op. Newer MKLs ignore it (PyTorch's 2024.2: no
    change); Intel processors keep their own (AVX-512) path. A tuning flag, published as such."""
    if _cpu_vendor() == "AuthenticAMD":
        os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")


class PaddleAdapter(Adapter):
    name = "paddle"
    status = "maintained by Baidu: PyPI's newest release, checked 2026-11-26: 3.3.1, March 2026"
    modes = ("eager", "static")
    # Measured (interleaved, 2 threads): eager 1.2-1.6 ms against static 2.7-2.8 ms at tiny, 9.7-9.9
    # against 10.8-11.1 ms at medium; to_static covers the forward and backward but the
    # run-program op costs more than it saves for a network this small.
    best_mode = "eager"
    devices = ("cpu", "cuda")
    requires = ("paddle",)
    packages = ("paddlepaddle",)
    requirements = ("paddlepaddle",)
    gpu_requirements = ("paddlepaddle-gpu",)
    tuning = {
        "eager": "dynamic graph, op by op, paddle.grad; F.batch_norm (fused kernel); MKL_DEBUG_CPU_TYPE=5 on AMD; "
                 "FLAGS_new_executor_serial_run=1",
        "static": "paddle.jit.to_static(full_graph=True) of the forward and loss; F.batch_norm; updates in place; "
                  "MKL_DEBUG_CPU_TYPE=5 on AMD; FLAGS_new_executor_serial_run=1",
    }
    # Paddle's Momentum keeps v' = mu v' + g and subtracts lr v': with lr (1 - beta1) for lr and
    # mu = beta1 that is the spec's rule with v = (1 - beta1) v', as Keras' SGD is mapped. Its
    # tuning log: 1.5x faster than paddle.assign updates at tiny, 1.1x at large; float32 only
    # (its kernel holds mu as a float32 attribute), float64 and the other optimizers keep assign.
    tuning = {mode: flags + "; float32 momentum as loss.backward() and paddle.optimizer.Momentum(learning_rate=lr "
                            "(1 - beta1), momentum=beta1, use_multi_tensor=True).step()"
              for mode, flags in tuning.items()}
    alternatives = {mode: {"assign-updates": Alternative(
        "paddle.grad and the spec's momentum as paddle.assign updates under no_grad (the float64 form)")}
        for mode in ("eager", "static")}
    description = "paddle.nn.functional.batch_norm with the spec's momentum and epsilon; optimizers as in-place updates"

    @classmethod
    def placement(cls):
        # Importing paddle 3.3 into a process that has imported TensorFlow (or Keras) crashes it
        # (segmentation fault, measured): paddle runs in a process of its own, a worker, unless
        # this process exists for paddle alone (a worker, or paddle's asv environment).
        if os.environ.get("BNBENCH_WORKER") or os.environ.get("BNBENCH_ENV") == "paddle":
            return None

        return Placement(python=sys.executable, where="a worker process of its own (paddle crashes a process that "
                                                      "imported TensorFlow before it)")

    @classmethod
    def set_threads(cls, n_threads: int) -> int:
        super().set_threads(n_threads)
        _select_mkl_kernels()
        paddle = _paddle()
        # Paddle starts its math library with one thread; this is its setting for the CPU kernels.
        paddle.base.core.set_num_threads(n_threads)
        return n_threads

    @classmethod
    def profile_steps(cls, adapter: Adapter, batch, steps: int):
        """paddle.profiler on the CPU: the self time of every kernel launch (a dygraph op's kernel,
        its gradient's, the fused optimizer's); the op dispatch around them lies outside."""
        import paddle.profiler as profiler
        from paddle.profiler.profiler_statistic import wrap_tree

        paddle = _paddle()
        recorder = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU])
        recorder.start()
        profiled = seconds_per_step(adapter, batch, steps)
        recorder.stop()
        kernels: Dict[str, tuple] = {}
        for nodes in wrap_tree(recorder.profiler_result.get_data())[1].values():
            for node in nodes:
                if node.type == profiler.TracerEventType.DygraphKernelLaunch:
                    name = node.name.replace(" kernel launch", "")
                    add_kernel_time(kernels, name, node.self_cpu_time / 1e9, kind=kind_of(name, PRODUCT_KERNELS))
        return f"paddle {paddle.__version__} paddle.profiler (kernel launches, self time)", profiled, kernels

    @classmethod
    def matmul_step(cls, a: np.ndarray, b: np.ndarray, device: str):
        if device != "cpu":
            return super().matmul_step(a, b, device)
        paddle = _paddle()
        pa, pb = paddle.to_tensor(a, place=paddle.CPUPlace()), paddle.to_tensor(b, place=paddle.CPUPlace())
        # CPU kernels run synchronously in the calling thread (FLAGS_new_executor_serial_run)
        return f"paddle {paddle.__version__} (paddle.matmul)", lambda: paddle.matmul(pa, pb)

    @classmethod
    def known_departure(cls, spec, mode: str, device: str, m: int) -> Optional[str]:
        if spec.dtype == "float64" and m < 4 and spec.batch_norm:
            return ("Paddle's batch_norm kernel loses precision in its backward when a batch has fewer than 4 "
                    "examples: grad/W1 is 2.5e-8 (m=2) and 1.4e-10 (m=3) from the float64 reference, 7e-12 at m=4 and "
                    "below 5e-13 from m=8 on (measured, eager and static alike)")
        return None

    @classmethod
    def device_unavailable(cls, device: str) -> Optional[str]:
        if device == "cuda":
            paddle = _paddle()
            if not paddle.device.is_compiled_with_cuda():
                return f"Paddle {paddle.__version__} is a CPU build"
            if paddle.device.cuda.device_count() == 0:
                return "Paddle sees no GPU"
            return None
        return super().device_unavailable(device)

    def _build(self, params: Dict[str, np.ndarray]) -> None:
        fused = (self.spec.optimizer, self.spec.dtype) == ("momentum", "float32")
        if self.variant == "assign-updates" and not fused:
            raise Unsupported(f"the assign-updates alternative is the alternative to float32 momentum only, not to "
                              f"optimizer={self.spec.optimizer!r} in {self.spec.dtype}")
        paddle = _paddle()
        self.paddle = paddle
        spec = self.spec
        # ---- the spec mapped onto Paddle, in one place -----------------------------------------
        # paddle.nn.functional.batch_norm, whose momentum weights the OLD running value as the
        # spec's does: momentum = bn_momentum, epsilon = bn_epsilon (never its defaults). It
        # normalises with the biased batch variance and feeds the biased one into the running
        # variance (bnbench conventions measures both), which is the spec's "biased"; for
        # "unbiased" it updates scratch copies and the running statistics are updated here from
        # the batch mean and the m-1 variance. F.relu's gradient at 0 is 0, as the spec says.
        # batch_norm=false: hidden layers F.relu(Z + b), no statistics.
        # SPEC.md's update rules run in place under no_grad; the L2 term is in the loss. The
        # fused kernel matters: the batch norm written out in paddle ops took 9.6 ms per layer
        # (forward and backward, 256 x 512) against 0.6 ms, broadcast gradients being slow on CPU.
        # ----------------------------------------------------------------------------------------
        self.place = paddle.CUDAPlace(0) if self.device == "cuda" else paddle.CPUPlace()
        paddle.set_device("gpu:0" if self.device == "cuda" else "cpu")
        tensor = lambda array, trainable: paddle.to_tensor(np.ascontiguousarray(array, dtype=spec.dtype),  # noqa: E731
                                                             place=self.place, stop_gradient=not trainable)
        self.names = trainable_names(spec)
        self.params = {name: tensor(params[name], True) for name in self.names}
        self.running = {name: tensor(params[name], False) for name in running_stat_names(spec)}
        self.native_running_update = spec.running_var == "biased"
        zeros = lambda: {name: paddle.zeros_like(p) for name, p in self.params.items()}  # noqa: E731
        self.velocity = zeros() if spec.optimizer in ("momentum", "adam") else {}
        self.second_moment = zeros() if spec.optimizer == "adam" else {}
        self.t = 0
        self.weights = weight_names(spec)
        forward = _make_forward_loss(paddle, spec.n_layers, spec.bn_epsilon, spec.bn_momentum, spec.l2, self.weights,
                                     own_statistics=not self.native_running_update, batch_norm=spec.batch_norm)
        if self.mode == "static":
            forward = paddle.jit.to_static(forward, full_graph=True)
        self._forward = forward
        self._optimizer = None
        if fused and self.variant != "assign-updates":
            self._optimizer = paddle.optimizer.Momentum(
                learning_rate=spec.learning_rate * (1 - spec.beta1), momentum=spec.beta1,
                parameters=[self.params[name] for name in self.names], use_multi_tensor=True)

    def _loss_and_grads(self, X, y, running):
        """``running``: the statistics batch_norm updates in place (scratch copies where the step
        must not change them)."""
        loss, log_probs, statistics = self._forward(self.params, running, X, y)
        grads = self.paddle.grad([loss], [self.params[name] for name in self.names])
        return loss, log_probs, statistics, grads

    def _scratch_running(self):
        return {name: value.clone() for name, value in self.running.items()}

    # ------------------------------------------------------------------ contract
    def to_device(self, X: np.ndarray, y: Optional[np.ndarray] = None):
        X, y = self._check(X, y, training=y is not None)
        paddle = self.paddle
        return (paddle.to_tensor(X, place=self.place),
                None if y is None else paddle.to_tensor(y.astype(np.int64), place=self.place))

    def train_step(self, X: np.ndarray, y: np.ndarray) -> float:
        return self.train_step_prepared(self.to_device(X, y))

    def train_step_prepared(self, batch) -> float:
        paddle = self.paddle
        spec = self.spec
        X, y = batch
        running = self.running if self.native_running_update else self._scratch_running()
        if self._optimizer is not None:
            loss, _, statistics = self._forward(self.params, running, X, y)
            loss.backward()
            self._optimizer.step()
            self._optimizer.clear_grad()
            grads = []          # the optimizer has updated the parameters
        else:
            loss, _, statistics, grads = self._loss_and_grads(X, y, running)
        beta = spec.bn_momentum
        lr, b1, b2 = spec.learning_rate, spec.beta1, spec.beta2
        self.t += 1
        with paddle.no_grad():
            for layer, (mean, unbiased_var) in enumerate(statistics, start=1):
                mean_name, var_name = f"running_mean{layer}", f"running_var{layer}"
                paddle.assign(beta * self.running[mean_name] + (1 - beta) * mean, self.running[mean_name])
                paddle.assign(beta * self.running[var_name] + (1 - beta) * unbiased_var, self.running[var_name])
            for name, g in zip(self.names, grads):
                theta = self.params[name]
                if spec.optimizer == "sgd":
                    paddle.assign(theta - lr * g, theta)
                elif spec.optimizer == "momentum":
                    v = self.velocity[name]
                    paddle.assign(b1 * v + (1 - b1) * g, v)
                    paddle.assign(theta - lr * v, theta)
                else:
                    v, s = self.velocity[name], self.second_moment[name]
                    paddle.assign(b1 * v + (1 - b1) * g, v)
                    paddle.assign(b2 * s + (1 - b2) * g * g, s)
                    v_hat = v / (1 - b1 ** self.t)
                    s_hat = s / (1 - b2 ** self.t)
                    paddle.assign(theta - lr * v_hat / (paddle.sqrt(s_hat) + spec.adam_epsilon), theta)
        return float(loss.numpy())     # .numpy() waits for the device

    def gradients(self, X: np.ndarray, y: np.ndarray) -> Gradients:
        X, y = self.to_device(X, y)
        loss, log_probs, _, grads = self._loss_and_grads(X, y, self._scratch_running())
        return Gradients(float(loss.numpy()), np.exp(log_probs.numpy()),
                         {name: g.numpy() for name, g in zip(self.names, grads)})

    def _inference(self, X):
        paddle = self.paddle
        spec = self.spec
        A = X
        with paddle.no_grad():
            F = paddle.nn.functional
            for layer in range(1, spec.n_layers + 1):
                if not spec.batch_norm:
                    A = F.relu(paddle.matmul(A, self.params[f"W{layer}"]) + self.params[f"b{layer}"])
                    continue
                Zt = F.batch_norm(paddle.matmul(A, self.params[f"W{layer}"]), self.running[f"running_mean{layer}"],
                                  self.running[f"running_var{layer}"], self.params[f"gamma{layer}"], self.params[f"beta{layer}"],
                                  training=False, epsilon=spec.bn_epsilon)
                A = F.relu(Zt)
            return F.softmax(paddle.matmul(A, self.params["W_out"]) + self.params["b_out"], axis=1)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X, _ = self.to_device(X)
        return self._inference(X).numpy()

    def predict_prepared(self, batch) -> None:
        self._inference(batch[0]).numpy()

    def state(self) -> Dict[str, np.ndarray]:
        arrays = {name: p.numpy().copy() for name, p in self.params.items()}
        arrays.update({name: r.numpy().copy() for name, r in self.running.items()})
        return self._ordered_state(arrays)

    # ------------------------------------------------------------------ conventions
    @classmethod
    def conventions(cls):
        paddle = _paddle()
        paddle.set_device("cpu")

        def batch_norm(X):
            layer = paddle.nn.BatchNorm1D(X.shape[1])
            layer.train()
            before = layer._mean.numpy().copy(), layer._variance.numpy().copy()
            out = layer(paddle.to_tensor(X))
            return out.numpy(), before[0], before[1], layer._mean.numpy(), layer._variance.numpy()

        def momentum_sgd(lr, beta, gradient, steps):
            theta = paddle.create_parameter([1], "float32", default_initializer=paddle.nn.initializer.Constant(0.0))
            optimizer = paddle.optimizer.Momentum(learning_rate=lr, momentum=beta, parameters=[theta])
            values = []
            for _ in range(steps):
                (theta * gradient).sum().backward()
                optimizer.step()
                optimizer.clear_grad()
                values.append(float(theta.numpy()[0]))
            return values

        declared = paddle.nn.BatchNorm1D(1)._momentum
        return [ConventionProbe("paddle", paddle.__version__, "paddle.nn.BatchNorm1D", batch_norm, declared,
                                "paddle.optimizer.Momentum", momentum_sgd)]


def _make_forward_loss(paddle, n_layers: int, bn_epsilon: float, bn_momentum: float, l2: float, weights,
                       own_statistics: bool, batch_norm: bool = True):
    """Training-mode forward and loss as a plain function (paddle.jit.to_static converts
    functions and nn.Layer methods, not methods of other classes). batch_norm updates ``running``
    in place; with ``own_statistics`` it also returns each layer's batch mean and unbiased variance."""
    F = paddle.nn.functional

    def forward_loss(params, running, X, y):
        A = X
        statistics = []
        for layer in range(1, n_layers + 1):
            Z = paddle.matmul(A, params[f"W{layer}"])
            if not batch_norm:                               # an ordinary layer: the ReLU takes Z + b
                A = F.relu(Z + params[f"b{layer}"])
                continue
            if own_statistics:
                batch = Z.detach()
                statistics.append((paddle.mean(batch, axis=0), paddle.var(batch, axis=0, unbiased=True)))
            Zt = F.batch_norm(Z, running[f"running_mean{layer}"], running[f"running_var{layer}"], params[f"gamma{layer}"],
                              params[f"beta{layer}"], training=True, momentum=bn_momentum, epsilon=bn_epsilon)
            A = F.relu(Zt)
        logits = paddle.matmul(A, params["W_out"]) + params["b_out"]
        log_probs = F.log_softmax(logits, axis=1)
        loss = -paddle.mean(paddle.take_along_axis(log_probs, y.unsqueeze(1), axis=1))
        if l2:
            m = paddle.cast(paddle.shape(X)[0], X.dtype)
            squares = [paddle.sum(paddle.square(params[name])) for name in weights]
            loss = loss + l2 / (2 * m) * paddle.add_n(squares)
        return loss, log_probs, statistics

    return forward_loss
