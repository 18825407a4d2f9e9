"""The NumPy reference: SPEC.md written out directly, backward pass derived by hand.

This is the truth every adapter is compared with. It favours being an obvious transcription of
the spec over speed, but it is also the suite's "numpy" framework, so it avoids needless copies.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from .spec import Spec, check_parameters, running_stat_names, trainable_names, weight_names


class BatchError(ValueError):
    """A batch that does not fit the spec: the message names the array and the problem."""


def check_batch(spec: Spec, X: np.ndarray, y: Optional[np.ndarray] = None, *, training: bool = True) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Validate one batch (X: m x n_features, y: m integer labels) and cast X to the spec dtype."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != spec.n_features:
        raise BatchError(f"X has shape {X.shape}, expected (m, {spec.n_features}) for n_features={spec.n_features}")
    if X.dtype.kind != "f":
        raise BatchError(f"X has dtype {X.dtype}, expected floating point (it is cast to the spec dtype {spec.dtype})")
    m = X.shape[0]
    if training and m < 2:
        raise BatchError(f"a training batch needs m >= 2 examples (batch statistics of one example are undefined), got m={m}")
    if m < 1:
        raise BatchError("X holds no examples")
    if not np.all(np.isfinite(X)):
        raise BatchError(f"X holds {int(X.size - np.count_nonzero(np.isfinite(X)))} non-finite value(s)")
    if y is not None:
        y = np.asarray(y)
        if y.shape != (m,):
            raise BatchError(f"y has shape {y.shape}, expected ({m},) to match X's {m} examples")
        if y.dtype.kind not in "iu":
            raise BatchError(f"y has dtype {y.dtype}, expected integer class labels")
        if m and (y.min() < 0 or y.max() >= spec.n_classes):
            bad = y[(y < 0) | (y >= spec.n_classes)][0]
            raise BatchError(f"y holds label {int(bad)} outside [0, {spec.n_classes}) for n_classes={spec.n_classes}")
        y = y.astype(np.int64, copy=False)
    return np.ascontiguousarray(X, dtype=spec.np_dtype), y


@dataclasses.dataclass
class LayerCache:
    A_prev: np.ndarray
    N: Optional[np.ndarray]          # normalised Z (None without batch norm)
    inv_std: Optional[np.ndarray]    # 1 / sqrt(var + eps) (None without batch norm)
    Zt: np.ndarray                   # the ReLU's input: gamma * N + beta, or A_prev @ W + b without batch norm


@dataclasses.dataclass
class ForwardResult:
    logits: np.ndarray
    probs: np.ndarray
    log_probs: np.ndarray
    caches: List[LayerCache]
    A_last: np.ndarray
    batch_means: List[np.ndarray]
    batch_vars: List[np.ndarray]   # biased, as used for normalising


@dataclasses.dataclass
class GradientResult:
    loss: float
    probs: np.ndarray
    grads: Dict[str, np.ndarray]
    batch_means: List[np.ndarray]
    batch_vars: List[np.ndarray]


# (layer, Zt, n_in) -> where the ReLU of layer `layer` passes the gradient (a boolean mask of Zt's
# shape); n_in is the width of the layer's input. Only the equivalence check passes another one.
ReluDerivative = Callable[[int, np.ndarray, int], np.ndarray]


def relu_derivative(layer: int, Zt: np.ndarray, n_in: int) -> np.ndarray:
    """SPEC.md: the derivative of max(x, 0) is 1 where x > 0 and 0 elsewhere, 0 at x = 0 included."""
    return Zt > 0


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def forward(spec: Spec, params: Mapping[str, np.ndarray], X: np.ndarray, *, training: bool) -> ForwardResult:
    """Training mode normalises with the batch's statistics; inference mode with the running ones."""
    A = X
    caches, means, variances = [], [], []
    for layer in range(1, spec.n_layers + 1):
        Z = A @ params[f"W{layer}"]
        if not spec.batch_norm:
            Z = Z + params[f"b{layer}"]                  # an ordinary layer: the ReLU takes Z itself
            caches.append(LayerCache(A_prev=A, N=None, inv_std=None, Zt=Z))
            A = np.maximum(Z, 0)
            continue
        if training:
            mu = Z.mean(axis=0)
            centred = Z - mu
            var = (centred * centred).mean(axis=0)   # biased, always, for normalising
            means.append(mu)
            variances.append(var)
        else:
            centred = Z - params[f"running_mean{layer}"]
            var = params[f"running_var{layer}"]
        inv_std = 1.0 / np.sqrt(var + spec.bn_epsilon)
        N = centred * inv_std
        Zt = params[f"gamma{layer}"] * N + params[f"beta{layer}"]
        caches.append(LayerCache(A_prev=A, N=N, inv_std=inv_std, Zt=Zt))
        A = np.maximum(Zt, 0)
    logits = A @ params["W_out"] + params["b_out"]
    log_probs = _log_softmax(logits)
    return ForwardResult(logits, np.exp(log_probs), log_probs, caches, A, means, variances)


def loss_from(spec: Spec, params: Mapping[str, np.ndarray], log_probs: np.ndarray, y: np.ndarray) -> float:
    m = log_probs.shape[0]
    data_loss = -log_probs[np.arange(m), y].sum() / m
    penalty = 0.0
    if spec.l2:
        penalty = spec.l2 / (2 * m) * sum(float(np.sum(params[name] * params[name])) for name in weight_names(spec))
    return float(data_loss) + penalty


def gradients(spec: Spec, params: Mapping[str, np.ndarray], X: np.ndarray, y: np.ndarray, *,
              relu_grad: ReluDerivative = relu_derivative) -> GradientResult:
    """Loss, training-mode probabilities and the gradient of every trainable parameter (by hand).

    ``relu_grad`` is the spec's ReLU derivative; the equivalence check (bnbench.equivalence.trace) passes one
    that takes the other side for inputs within rounding of 0, to measure what that changes."""
    result = forward(spec, params, X, training=True)
    m = X.shape[0]
    loss = loss_from(spec, params, result.log_probs, y)

    grads: Dict[str, np.ndarray] = {}
    dlogits = result.probs.copy()
    dlogits[np.arange(m), y] -= 1
    dlogits /= m
    grads["W_out"] = result.A_last.T @ dlogits
    grads["b_out"] = dlogits.sum(axis=0)
    dA = dlogits @ params["W_out"].T
    for layer in range(spec.n_layers, 0, -1):
        cache = result.caches[layer - 1]
        dZt = dA * relu_grad(layer, cache.Zt, cache.A_prev.shape[1])
        if not spec.batch_norm:
            grads[f"b{layer}"] = dZt.sum(axis=0)
            grads[f"W{layer}"] = cache.A_prev.T @ dZt
            if layer > 1:
                dA = dZt @ params[f"W{layer}"].T
            continue
        grads[f"gamma{layer}"] = (dZt * cache.N).sum(axis=0)
        grads[f"beta{layer}"] = dZt.sum(axis=0)
        dN = dZt * params[f"gamma{layer}"]
        # d/dZ of (Z - mu) / sqrt(var + eps) with mu and (biased) var taken over the batch
        dZ = cache.inv_std / m * (m * dN - dN.sum(axis=0) - cache.N * (dN * cache.N).sum(axis=0))
        grads[f"W{layer}"] = cache.A_prev.T @ dZ
        if layer > 1:
            dA = dZ @ params[f"W{layer}"].T
    if spec.l2:
        for name in weight_names(spec):
            grads[name] = grads[name] + (spec.l2 / m) * params[name]
    ordered = {name: grads[name] for name in trainable_names(spec)}
    return GradientResult(loss, result.probs, ordered, result.batch_means, result.batch_vars)


def updated_running_stats(spec: Spec, params: Mapping[str, np.ndarray], batch_means: List[np.ndarray],
                          batch_vars: List[np.ndarray], m: int) -> Dict[str, np.ndarray]:
    """SPEC.md's exponentially weighted averages, with the chosen running-variance convention."""
    beta = spec.bn_momentum
    stats = {}
    for layer, (mu, var) in enumerate(zip(batch_means, batch_vars), start=1):
        s2 = var if spec.running_var == "biased" else var * (m / (m - 1))
        stats[f"running_mean{layer}"] = beta * params[f"running_mean{layer}"] + (1 - beta) * mu
        stats[f"running_var{layer}"] = beta * params[f"running_var{layer}"] + (1 - beta) * s2
    return stats


class Optimizer:
    """sgd, momentum (v = b1 v + (1 - b1) g) and Adam with bias correction, exactly as SPEC.md."""

    def __init__(self, spec: Spec, names: Tuple[str, ...], shapes: Mapping[str, Tuple[int, ...]]):
        self.spec = spec
        self.t = 0
        dtype = spec.np_dtype
        self.v = {name: np.zeros(shapes[name], dtype) for name in names} if spec.optimizer in ("momentum", "adam") else {}
        self.s = {name: np.zeros(shapes[name], dtype) for name in names} if spec.optimizer == "adam" else {}

    def apply(self, params: Dict[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        spec = self.spec
        self.t += 1
        lr = spec.learning_rate
        for name, g in grads.items():
            if spec.optimizer == "sgd":
                params[name] = params[name] - lr * g
            elif spec.optimizer == "momentum":
                self.v[name] = spec.beta1 * self.v[name] + (1 - spec.beta1) * g
                params[name] = params[name] - lr * self.v[name]
            else:
                self.v[name] = spec.beta1 * self.v[name] + (1 - spec.beta1) * g
                self.s[name] = spec.beta2 * self.s[name] + (1 - spec.beta2) * (g * g)
                v_hat = self.v[name] / (1 - spec.beta1 ** self.t)
                s_hat = self.s[name] / (1 - spec.beta2 ** self.t)
                params[name] = params[name] - lr * v_hat / (np.sqrt(s_hat) + spec.adam_epsilon)


class ReferenceModel:
    """A trainable instance of the spec in NumPy: the reference every adapter is checked against."""

    def __init__(self, spec: Spec, params: Mapping[str, np.ndarray], *, relu_grad: ReluDerivative = relu_derivative):
        self.spec = spec
        self.relu_grad = relu_grad
        self.params = check_parameters(spec, params)
        self.params = {name: array.copy() for name, array in self.params.items()}
        names = trainable_names(spec)
        self.optimizer = Optimizer(spec, names, {name: self.params[name].shape for name in names})

    def gradients(self, X: np.ndarray, y: np.ndarray) -> GradientResult:
        """Gradients of one batch; nothing (parameters, statistics, optimizer) changes."""
        X, y = check_batch(self.spec, X, y, training=True)
        return gradients(self.spec, self.params, X, y, relu_grad=self.relu_grad)

    def train_step(self, X: np.ndarray, y: np.ndarray) -> float:
        X, y = check_batch(self.spec, X, y, training=True)
        result = gradients(self.spec, self.params, X, y, relu_grad=self.relu_grad)
        self.params.update(updated_running_stats(self.spec, self.params, result.batch_means, result.batch_vars, X.shape[0]))
        self.optimizer.apply(self.params, result.grads)
        return result.loss

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X, _ = check_batch(self.spec, X, training=False)
        return forward(self.spec, self.params, X, training=False).probs

    def state(self) -> Dict[str, np.ndarray]:
        return {name: array.copy() for name, array in self.params.items()}


__all__ = [
    "BatchError", "ForwardResult", "GradientResult", "Optimizer", "ReferenceModel", "check_batch",
    "forward", "gradients", "loss_from", "relu_derivative", "updated_running_stats", "running_stat_names",
]
