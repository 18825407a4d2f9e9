"""The problems every adapter is checked on, made once on the reference side: ``bnbench verify``
runs ``battery(dtype)`` and the test suite runs the same cases (and more shapes through
``problem``), so a table that says "7/7" and a green test run mean the same seven checks."""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

from .data import batch_stack, synthetic
from .spec import OPTIMIZERS, RUNNING_VAR_CONVENTIONS, Spec, initial_parameters

# Every value differs from a framework default somewhere (SPEC.md section 7), so that a
# convention mapped wrongly cannot pass by coincidence: bn_momentum 0.75 is neither 0.9 nor 0.99,
# beta1 0.875 not 0.9, and l2 makes the loss depend on the batch size.
FIELDS = dict(l2=0.01, learning_rate=0.05, bn_momentum=0.75, beta1=0.875)

Case = Tuple[str, Spec, dict, np.ndarray, np.ndarray]


def problem(dtype: str, *, hidden=(12, 8), m: int = 16, steps: int = 4, n_features: int = 10, n_classes: int = 4,
            **fields) -> Tuple[Spec, dict, np.ndarray, np.ndarray]:
    """(spec, initial parameters, X (steps, m, n_features), y (steps, m)) of one check."""
    spec = Spec(n_features=n_features, hidden=tuple(hidden), n_classes=n_classes, dtype=dtype, **dict(FIELDS, **fields))
    data = synthetic(max(m * steps, 512), n_features, n_classes, seed=7, dtype=dtype)
    X, y = batch_stack(data, m, steps, seed=3)
    return spec, initial_parameters(spec), X, y


# label -> the problem's arguments: each optimizer x running-variance rule on a two-layer problem
# (m = 16, four steps), and a three-layer one with a larger batch.
DEFINITIONS = {
    **{f"{optimizer}/{running_var}": dict(optimizer=optimizer, running_var=running_var)
       for optimizer in OPTIMIZERS for running_var in RUNNING_VAR_CONVENTIONS},
    "3 layers, m=256": dict(hidden=(32, 16, 8), m=256, steps=2, optimizer="momentum", running_var="biased"),
}
LABELS = tuple(DEFINITIONS)


def case(dtype: str, label: str) -> Case:
    """One check of the battery: (label, spec, params, X, y)."""
    return (label, *problem(dtype, **DEFINITIONS[label]))


def battery(dtype: str) -> List[Case]:
    """Every check, in order."""
    return [case(dtype, label) for label in LABELS]
