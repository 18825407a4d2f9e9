"""PaddlePaddle: modes ``eager`` (dynamic graph) and ``static`` (paddle.jit.to_static of the forward
and loss: a compiled static program, differentiated by Paddle); cpu, and cuda with a GPU build."""
from __future__ import annotations

import os
import sys
from typing import Dict, Optional

import numpy as np

from bnbench.reference.spec import running_stat_names, trainable_names, weight_names

from .base import Adapter, Gradients


def _paddle():
    import os

    os.environ.setdefault("GLOG_minloglevel", "2")     # keep Paddle's start-up log off stderr
    import paddle

    return paddle


class PaddleAdapter(Adapter):
    name = "paddle"
    modes = ("eager", "static")
    best_mode = "static"
    devices = ("cpu", "cuda")
    requires = ("paddle",)
    install_hint = "pip install paddlepaddle"
    tuning = {
        "eager": "dynamic graph, op by op, paddle.grad",
        "static": "paddle.jit.to_static(full_graph=True) of the forward and loss; updates in place",
    }
    description = "the spec's formulas in paddle ops (matmul, mean, where); optimizers as in-place updates"

    @classmethod
    def placement(cls):
        # Importing paddle 3.3 into a process that has imported tensorflow (or keras) crashes it
        # (segmentation fault, measured): paddle runs in a process of its own, a worker, unless
        # this process exists for paddle alone (a worker, or paddle's asv environment).
        if os.environ.get("BNBENCH_WORKER") or os.environ.get("BNBENCH_ENV") == "paddle":
            return None
        from bnbench.worker import Placement

        return Placement(python=sys.executable, where="a worker process of its own (paddle crashes a process that "
                                                      "imported tensorflow before it)")

    @classmethod
    def known_departure(cls, spec, mode: str, device: str, m: int) -> Optional[str]:
        if mode == "static" and spec.dtype == "float64" and m < 4:
            return ("Paddle's static program loses precision in the batch-norm backward when a batch has "
                    "fewer than 4 examples: grad/W1 is 2.5e-8 (m=2) and 1.4e-10 (m=3) from the float64 reference, "
                    "against 1.7e-13 in eager mode and below 5e-13 from m=8 on (measured)")
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
        paddle = _paddle()
        self.paddle = paddle
        spec = self.spec
        # ---- the spec mapped onto Paddle, in one place -----------------------------------------
        # No Paddle layer or optimizer: paddle.nn.BatchNorm1D's defaults (bnbench conventions
        # shows them) are not needed, the spec's batch norm is written out (biased variance for
        # normalising, running averages weighting the OLD value by spec.bn_momentum, biased or
        # unbiased as spec.running_var says); ReLU is where(Zt > 0, Zt, 0) (gradient 0 at 0);
        # SPEC.md's update rules run in place under no_grad; the L2 term is in the loss.
        # ----------------------------------------------------------------------------------------
        self.place = paddle.CUDAPlace(0) if self.device == "cuda" else paddle.CPUPlace()
        paddle.set_device("gpu:0" if self.device == "cuda" else "cpu")
        tensor = lambda array, trainable: paddle.to_tensor(np.ascontiguousarray(array, dtype=spec.dtype),  # noqa: E731
                                                             place=self.place, stop_gradient=not trainable)
        self.names = trainable_names(spec)
        self.params = {name: tensor(params[name], True) for name in self.names}
        self.running = {name: tensor(params[name], False) for name in running_stat_names(spec)}
        zeros = lambda: {name: paddle.zeros_like(p) for name, p in self.params.items()}  # noqa: E731
        self.velocity = zeros() if spec.optimizer in ("momentum", "adam") else {}
        self.second_moment = zeros() if spec.optimizer == "adam" else {}
        self.t = 0
        self.weights = weight_names(spec)
        forward = _make_forward_loss(paddle, spec.n_layers, spec.bn_epsilon, spec.l2, self.weights)
        if self.mode == "static":
            forward = paddle.jit.to_static(forward, full_graph=True)
        self._forward = forward

    def _loss_and_grads(self, X, y):
        loss, log_probs, means, variances = self._forward(self.params, X, y)
        grads = self.paddle.grad([loss], [self.params[name] for name in self.names])
        return loss, log_probs, means, variances, grads

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
        loss, _, means, variances, grads = self._loss_and_grads(X, y)
        m = X.shape[0]
        beta = spec.bn_momentum
        lr, b1, b2 = spec.learning_rate, spec.beta1, spec.beta2
        self.t += 1
        with paddle.no_grad():
            for layer in range(1, spec.n_layers + 1):
                var = variances[layer - 1]
                s2 = var if spec.running_var == "biased" else var * (m / (m - 1))
                mean_name, var_name = f"running_mean{layer}", f"running_var{layer}"
                paddle.assign(beta * self.running[mean_name] + (1 - beta) * means[layer - 1], self.running[mean_name])
                paddle.assign(beta * self.running[var_name] + (1 - beta) * s2, self.running[var_name])
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
        loss, log_probs, _, _, grads = self._loss_and_grads(X, y)
        return Gradients(float(loss.numpy()), np.exp(log_probs.numpy()),
                         {name: g.numpy() for name, g in zip(self.names, grads)})

    def _inference(self, X):
        paddle = self.paddle
        spec = self.spec
        A = X
        with paddle.no_grad():
            for layer in range(1, spec.n_layers + 1):
                Z = paddle.matmul(A, self.params[f"W{layer}"])
                N = (Z - self.running[f"running_mean{layer}"]) / paddle.sqrt(self.running[f"running_var{layer}"] + spec.bn_epsilon)
                Zt = self.params[f"gamma{layer}"] * N + self.params[f"beta{layer}"]
                A = paddle.where(Zt > 0, Zt, paddle.zeros_like(Zt))
            return paddle.nn.functional.softmax(paddle.matmul(A, self.params["W_out"]) + self.params["b_out"], axis=1)

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
        from bnbench import conventions

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
        return [conventions.row("paddle", paddle.__version__, "paddle.nn.BatchNorm1D", batch_norm, declared,
                                "paddle.optimizer.Momentum", momentum_sgd)]


def _make_forward_loss(paddle, n_layers: int, bn_epsilon: float, l2: float, weights):
    """Training-mode forward and loss as a plain function (paddle.jit.to_static converts
    functions and nn.Layer methods, not methods of other classes)."""

    def forward_loss(params, X, y):
        A = X
        means, variances = [], []
        for layer in range(1, n_layers + 1):
            Z = paddle.matmul(A, params[f"W{layer}"])
            mu = paddle.mean(Z, axis=0)
            var = paddle.mean(paddle.square(Z - mu), axis=0)       # biased, for normalising
            means.append(mu)
            variances.append(var)
            Zt = params[f"gamma{layer}"] * ((Z - mu) / paddle.sqrt(var + bn_epsilon)) + params[f"beta{layer}"]
            A = paddle.where(Zt > 0, Zt, paddle.zeros_like(Zt))
        logits = paddle.matmul(A, params["W_out"]) + params["b_out"]
        log_probs = paddle.nn.functional.log_softmax(logits, axis=1)
        loss = -paddle.mean(paddle.take_along_axis(log_probs, y.unsqueeze(1), axis=1))
        if l2:
            m = paddle.cast(paddle.shape(X)[0], X.dtype)
            squares = [paddle.sum(paddle.square(params[name])) for name in weights]
            loss = loss + l2 / (2 * m) * paddle.add_n(squares)
        return loss, log_probs, means, variances

    return forward_loss
