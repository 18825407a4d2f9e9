"""A second, independent implementation of SPEC.md, for checking the reference and every trace.

It shares no code with ``reference/``: the forward pass is written per layer with einsum, the
gradients come from complex-step differentiation of that forward pass (no hand-derived backward,
accurate to rounding: d f/dx = Im f(x + ih) / h with h = 1e-30 has no subtractive cancellation),
and the optimizers are re-typed from SPEC.md. Float64 only; slow; for tests.
"""
from __future__ import annotations

import math
from typing import Dict, List, Tuple

import numpy as np

STEP = 1e-30


def _layer_count(params: Dict[str, np.ndarray]) -> int:
    return sum(1 for name in params if name.startswith("W") and name != "W_out")


def forward(spec: dict, params: Dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, training: bool = True):
    """Returns (loss, probs, [(mu, var) per layer]); works on complex arrays."""
    L = _layer_count(params)
    A = X.astype(complex) if np.iscomplexobj(next(iter(params.values()))) else X
    stats = []
    m = X.shape[0]
    for l in range(1, L + 1):
        Z = np.einsum("ij,jk->ik", A, params[f"W{l}"])
        if not spec.get("batch_norm", True):     # SPEC.md without batch norm: Z = A W + b, then the ReLU
            Z = Z + params[f"b{l}"]
            A = np.where(Z.real > 0, Z, 0)
            continue
        if training:
            mu = Z.sum(axis=0) / m
            var = ((Z - mu) ** 2).sum(axis=0) / m
            stats.append((mu, var))
        else:
            mu, var = params[f"running_mean{l}"], params[f"running_var{l}"]
        N = (Z - mu) / np.sqrt(var + spec["bn_epsilon"])
        Zt = params[f"gamma{l}"] * N + params[f"beta{l}"]
        A = np.where(Zt.real > 0, Zt, 0)
    logits = np.einsum("ij,jk->ik", A, params["W_out"]) + params["b_out"]
    shift = logits.real.max(axis=1, keepdims=True)
    exp = np.exp(logits - shift)
    probs = exp / exp.sum(axis=1, keepdims=True)
    loss = None
    if y is not None:
        picked = np.array([np.log(probs[i, y[i]]) for i in range(m)])
        loss = -picked.sum() / m
        squares = sum((params[f"W{l}"] ** 2).sum() for l in range(1, L + 1)) + (params["W_out"] ** 2).sum()
        loss = loss + spec["l2"] / (2 * m) * squares
    return loss, probs, stats


def gradients(spec: dict, params: Dict[str, np.ndarray], X: np.ndarray, y: np.ndarray) -> Dict[str, np.ndarray]:
    trainable = [n for n in params if not n.startswith("running_")]
    complex_params = {n: p.astype(complex) for n, p in params.items()}
    grads = {}
    for name in trainable:
        grad = np.zeros(params[name].shape)
        for index in np.ndindex(params[name].shape):
            complex_params[name][index] += 1j * STEP
            loss, _, _ = forward(spec, complex_params, X, y)
            complex_params[name][index] -= 1j * STEP
            grad[index] = loss.imag / STEP
        grads[name] = grad
    return grads


def trace(spec: dict, params: Dict[str, np.ndarray], Xs: np.ndarray, ys: np.ndarray) -> Dict[str, np.ndarray]:
    """The keys of ``bnbench trace``'s OUT.npz, computed independently in float64."""
    params = {n: np.array(p, dtype=np.float64) for n, p in params.items()}
    Xs = np.asarray(Xs, dtype=np.float64)
    out: Dict[str, np.ndarray] = {}
    loss, probs, _ = forward(spec, params, Xs[0], ys[0])
    out["loss"], out["probs"] = np.float64(loss), probs
    for name, grad in gradients(spec, params, Xs[0], ys[0]).items():
        out[f"grad/{name}"] = grad
    velocity: Dict[str, np.ndarray] = {}
    second: Dict[str, np.ndarray] = {}
    losses: List[float] = []
    for t in range(1, Xs.shape[0] + 1):
        X, y = Xs[t - 1], ys[t - 1]
        m = X.shape[0]
        loss, _, stats = forward(spec, params, X, y)
        grads = gradients(spec, params, X, y)
        losses.append(float(loss))
        b = spec["bn_momentum"]
        for l, (mu, var) in enumerate(stats, start=1):
            batch_var = var * m / (m - 1) if spec["running_var"] == "unbiased" else var
            params[f"running_mean{l}"] = b * params[f"running_mean{l}"] + (1 - b) * mu
            params[f"running_var{l}"] = b * params[f"running_var{l}"] + (1 - b) * batch_var
        lr = spec["learning_rate"]
        for name, g in grads.items():
            if spec["optimizer"] == "sgd":
                params[name] = params[name] - lr * g
            elif spec["optimizer"] == "momentum":
                velocity[name] = spec["beta1"] * velocity.get(name, 0.0) + (1 - spec["beta1"]) * g
                params[name] = params[name] - lr * velocity[name]
            else:
                velocity[name] = spec["beta1"] * velocity.get(name, 0.0) + (1 - spec["beta1"]) * g
                second[name] = spec["beta2"] * second.get(name, 0.0) + (1 - spec["beta2"]) * g * g
                corrected_v = velocity[name] / (1 - spec["beta1"] ** t)
                corrected_s = second[name] / (1 - spec["beta2"] ** t)
                params[name] = params[name] - lr * corrected_v / (np.sqrt(corrected_s) + spec["adam_epsilon"])
    out["losses"] = np.array(losses)
    for name, p in params.items():
        out[f"param/{name}"] = p
    _, out["eval_probs"], _ = forward(spec, params, Xs[-1], None, training=False)
    return out


def initial_parameters(spec: dict) -> Dict[str, np.ndarray]:
    """SPEC.md's initialisation, re-typed: He normal from default_rng(seed), W1..WL then W_out."""
    rng = np.random.default_rng(spec["seed"])
    widths = [spec["n_features"], *spec["hidden"]]
    params: Dict[str, np.ndarray] = {}
    for l in range(1, len(widths)):
        params[f"W{l}"] = rng.normal(0.0, math.sqrt(2.0 / widths[l - 1]), size=(widths[l - 1], widths[l]))
    params["W_out"] = rng.normal(0.0, math.sqrt(2.0 / widths[-1]), size=(widths[-1], spec["n_classes"]))
    for l in range(1, len(widths)):
        if not spec.get("batch_norm", True):
            params[f"b{l}"] = np.zeros(widths[l])
            continue
        params[f"gamma{l}"] = np.ones(widths[l])
        params[f"beta{l}"] = np.zeros(widths[l])
        params[f"running_mean{l}"] = np.zeros(widths[l])
        params[f"running_var{l}"] = np.ones(widths[l])
    params["b_out"] = np.zeros(spec["n_classes"])
    return params


def full_spec(**fields) -> dict:
    """SPEC.md's defaults filled in."""
    defaults = dict(batch_norm=True, bn_epsilon=1e-5, bn_momentum=0.9, running_var="biased", optimizer="sgd", learning_rate=0.01,
                    beta1=0.9, beta2=0.999, adam_epsilon=1e-8, l2=0.0, dtype="float32", seed=0)
    defaults.update(fields)
    return defaults


def norm_relative_error(actual, expected) -> float:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = np.linalg.norm(expected.ravel())
    return float(np.linalg.norm((actual - expected).ravel()) / (scale if scale else 1.0))


def assert_trace_matches(actual: Dict[str, np.ndarray], expected: Dict[str, np.ndarray], tol: float) -> Tuple[str, float]:
    assert sorted(actual) == sorted(expected), (sorted(actual), sorted(expected))
    worst = ("", 0.0)
    for key in expected:
        error = norm_relative_error(actual[key], expected[key])
        assert error <= tol, f"{key}: relative error {error:.3e} > {tol:.0e}"
        worst = max(worst, (key, error), key=lambda item: item[1])
    return worst
