"""Training one trial on digits: panda (one model through the framework's adapter, a learning
curve per epoch) or caviar (many models of one shape in one vectorised program)."""
from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from bnbench.adapters import registry
from bnbench.reference import initial_parameters
from bnbench.reference.data import minibatches
from bnbench.timing.frameworks import get

BATCH_SIZE = 64


# --------------------------------------------------------------------------- training trials
def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    probs = np.asarray(probs)
    if not np.all(np.isfinite(probs)):
        return 0.0        # a diverged model predicts nothing
    return float(np.mean(np.argmax(probs, axis=1) == y))


def train_panda(framework: str, spec, data, epochs: int, seed: int,
                on_epoch: Optional[Callable[[int, float], bool]] = None, evaluate=None,
                device: str = "cpu") -> Tuple[List[float], object]:
    """One model, epoch by epoch, on ``device``: its validation curve. ``on_epoch(epoch,
    val_accuracy)`` returns True to stop (pruned). Returns (curve, adapter)."""

    adapter_class = get(framework)
    adapter = adapter_class(spec, initial_parameters(spec), mode=adapter_class.best_mode, device=device)
    split = evaluate if evaluate is not None else data.validation
    curve = []
    for epoch in range(epochs):
        for X, y in minibatches(data.train, BATCH_SIZE, seed=seed, epoch=epoch):
            loss = adapter.train_step(X, y)
            if not math.isfinite(loss):
                break
        curve.append(accuracy(adapter.predict_proba(split.X), split.y))
        if not math.isfinite(loss):
            curve += [curve[-1]] * (epochs - epoch - 1)
            break
        if on_epoch is not None and on_epoch(epoch, curve[-1]):
            break
    return curve, adapter


def train_caviar(framework: str, specs: Sequence, data, epochs: int, seed: int,
                 device: str = "cpu") -> Tuple[List[List[float]], List[float]]:
    """Many models of ONE shape at once on ``device``, through the adapter's ManyModels (a
    vectorised program: stacked matmuls over a model axis, a vmap, ...); every model sees the same
    batches as it would alone. Returns (validation curves, final training losses)."""

    many = get(framework).many_models(list(specs), [initial_parameters(spec) for spec in specs], device=device)
    curves: List[List[float]] = [[] for _ in specs]
    losses = np.full(len(specs), np.nan)
    for epoch in range(epochs):
        for X, y in minibatches(data.train, BATCH_SIZE, seed=seed, epoch=epoch):
            losses = many.train_step(X, y)
        probs = many.predict_proba(data.validation.X)
        for i in range(len(specs)):
            curves[i].append(accuracy(probs[i], data.validation.y))
    return curves, [float(v) for v in losses]


def caviar_frameworks() -> List[str]:
    """The frameworks whose adapter trains many models in one program (declared, not imported)."""

    return [name for name in registry.names() if registry.local_class(name).trains_many]
