"""What the lecture's studies share: the reference model trained epoch by epoch on digits, the
specs they vary, and the figures and Markdown pieces of their reports."""
from __future__ import annotations

import math
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bnbench.publishing.figures import finish, pyplot
from bnbench.reference import ReferenceModel, Spec, initial_parameters
from bnbench.reference.data import Dataset, minibatches
from bnbench.tuning.trial import accuracy

HIDDEN = (64, 64)


class StudyError(ValueError):
    pass


# --------------------------------------------------------------------------- training
def make_spec(seed: int, **fields) -> Spec:
    fields = dict(dict(n_features=64, n_classes=10, hidden=HIDDEN, optimizer="sgd", learning_rate=0.1), **fields)
    return Spec(seed=seed, dtype="float64", **fields)


def train(spec: Spec, data: Dataset, epochs: int, *, batch_size: int = 64, seed: int = 0,
          on_epoch: Optional[Callable[[int, ReferenceModel], None]] = None) -> Tuple[List[float], ReferenceModel]:
    """The reference model trained epoch by epoch; its validation accuracy after each epoch."""
    model = ReferenceModel(spec, initial_parameters(spec))
    curve = []
    with np.errstate(all="ignore"):       # a diverging learning rate is a result here, not a warning
        for epoch in range(epochs):
            diverged = False
            for X, y in minibatches(data.train, batch_size, seed=seed, epoch=epoch):
                if not math.isfinite(model.train_step(X, y)):
                    diverged = True
                    break
            curve.append(0.0 if diverged else accuracy(model.predict_proba(data.validation.X), data.validation.y))
            if on_epoch is not None:
                on_epoch(epoch, model)
            if diverged:
                curve += [0.0] * (epochs - epoch - 1)
                break
    return curve, model


def log_uniform(rng: np.random.Generator, low: float, high: float, n: int) -> np.ndarray:
    return 10 ** rng.uniform(math.log10(low), math.log10(high), size=n)


def summary_stats(values: Sequence[float]) -> Dict[str, float]:
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()), "max": float(values.max())}


def figure(width: float = 7.5, height: float = 4.6, columns: int = 1):
    plt = pyplot()
    return plt, plt.subplots(1, columns, figsize=(width, height), dpi=100)


def save_figure(plt, fig, folder: str, filename: str) -> str:
    """The figure saved as ``folder/filename`` (publishing.figures.finish); its file name."""
    finish(fig, os.path.join(folder, filename))
    return filename


def pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def header(result, title: str) -> List[str]:
    return [f"# {title}", "", f"**The claim.** {result['claim'][0].upper()}{result['claim'][1:]}.", "",
            f"`bnbench study {result['study']} --seed {result['seed']}` ({result['seconds']} s on this machine; "
            f"`{result['study']}.json` holds every number).", ""]
