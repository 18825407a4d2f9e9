"""The spec once, as pure functions of an array namespace: the functional core of the adapters
whose frameworks are array libraries with automatic differentiation (JAX and MLX share it, as
einops' backends share NumPy's).

``make_functions(spec, ops)`` gives ``loss_and_grads``, ``train_step`` and ``inference`` over
(parameters, running statistics, optimizer state) dictionaries; ``ops`` is the framework's
namespace with the few operations the spec needs and its way of differentiating
(``ops.value_and_grad(f)``: a function of (trainable, X, y) returning ((loss, aux), grads)).
The adapter compiles them as its framework does (``jax.jit``, ``mx.compile``) and maps the spec's
conventions onto nothing: batch norm (biased variance for normalising), its running statistics
(momentum = weight of the OLD value, biased or unbiased as the spec says) and the optimizers are
SPEC.md's formulas; ReLU is where(x > 0, x, 0), whose gradient at 0 is 0. ``batch_norm=false``:
hidden layers Z = A W + b, then the same ReLU, no statistics.
"""
from __future__ import annotations

from typing import Callable, Dict

from bnbench.reference.spec import Spec, weight_names


def make_functions(spec: Spec, ops) -> Dict[str, Callable]:
    L = spec.n_layers
    eps = spec.bn_epsilon
    l2 = spec.l2
    weights = weight_names(spec)
    relu = lambda Z: ops.where(Z > 0, Z, 0)  # noqa: E731

    def forward_train(trainable, X):
        A = X
        means, variances = [], []
        for layer in range(1, L + 1):
            Z = A @ trainable[f"W{layer}"]
            if not spec.batch_norm:
                A = relu(Z + trainable[f"b{layer}"])
                continue
            mu = ops.mean(Z, axis=0)
            var = ops.mean(ops.square(Z - mu), axis=0)       # biased, for normalising
            means.append(mu)
            variances.append(var)
            A = relu(trainable[f"gamma{layer}"] * ((Z - mu) / ops.sqrt(var + eps)) + trainable[f"beta{layer}"])
        logits = A @ trainable["W_out"] + trainable["b_out"]
        return ops.log_softmax(logits), means, variances

    def loss_fn(trainable, X, y):
        log_probs, means, variances = forward_train(trainable, X)
        m = X.shape[0]
        loss = -ops.mean(ops.take_along_axis(log_probs, y[:, None], axis=1))
        if l2:
            loss = loss + (l2 / (2 * m)) * sum(ops.sum(ops.square(trainable[name])) for name in weights)
        return loss, (log_probs, means, variances)

    value_and_grad = ops.value_and_grad(loss_fn)

    def loss_and_grads(trainable, running, X, y):
        (loss, (log_probs, _, _)), grads = value_and_grad(trainable, X, y)
        return loss, log_probs, grads

    def train_step(trainable, running, opt_state, X, y, hyper=None):
        """One step; ``hyper`` (learning_rate, beta1, beta2, bn_momentum as arrays) replaces the
        spec's constants, so that many models can be trained at once under a vectorising map."""
        (loss, (_, means, variances)), grads = value_and_grad(trainable, X, y)
        m = X.shape[0]
        if hyper is None:
            lr, b1, b2, bn_momentum = spec.learning_rate, spec.beta1, spec.beta2, spec.bn_momentum
        else:
            lr, b1, b2, bn_momentum = hyper["learning_rate"], hyper["beta1"], hyper["beta2"], hyper["bn_momentum"]
        new_running = {}
        for layer in range(1, L + 1 if spec.batch_norm else 1):
            var = variances[layer - 1]
            s2 = var if spec.running_var == "biased" else var * (m / (m - 1))
            new_running[f"running_mean{layer}"] = bn_momentum * running[f"running_mean{layer}"] + (1 - bn_momentum) * means[layer - 1]
            new_running[f"running_var{layer}"] = bn_momentum * running[f"running_var{layer}"] + (1 - bn_momentum) * s2
        t = opt_state["t"] + 1
        new_params, new_v, new_s = {}, {}, {}
        for name, g in grads.items():
            theta = trainable[name]
            if spec.optimizer == "sgd":
                new_params[name] = theta - lr * g
            elif spec.optimizer == "momentum":
                new_v[name] = b1 * opt_state["v"][name] + (1 - b1) * g
                new_params[name] = theta - lr * new_v[name]
            else:
                new_v[name] = b1 * opt_state["v"][name] + (1 - b1) * g
                new_s[name] = b2 * opt_state["s"][name] + (1 - b2) * ops.square(g)
                v_hat = new_v[name] / (1 - ops.power(b1, t))
                s_hat = new_s[name] / (1 - ops.power(b2, t))
                new_params[name] = theta - lr * v_hat / (ops.sqrt(s_hat) + spec.adam_epsilon)
        return new_params, new_running, {"v": new_v, "s": new_s, "t": t}, loss

    def inference(trainable, running, X):
        A = X
        for layer in range(1, L + 1):
            Z = A @ trainable[f"W{layer}"]
            if not spec.batch_norm:
                A = relu(Z + trainable[f"b{layer}"])
                continue
            N = (Z - running[f"running_mean{layer}"]) / ops.sqrt(running[f"running_var{layer}"] + eps)
            A = relu(trainable[f"gamma{layer}"] * N + trainable[f"beta{layer}"])
        return ops.softmax(A @ trainable["W_out"] + trainable["b_out"])

    return {"loss_and_grads": loss_and_grads, "train_step": train_step, "inference": inference}
