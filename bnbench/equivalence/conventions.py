"""``bnbench conventions``: what each framework's own batch-norm layer and momentum optimizer
really do with their defaults, measured on a small batch rather than typed in.

A probe (written per framework in its adapter, run in the framework's own process) hands over
two callables:

``batch_norm(X)``  builds a FRESH layer with every default, runs ONE training-mode forward on X
                   (m x 3) and returns (output, running mean before, running var before,
                   running mean after, running var after) as NumPy arrays;
``momentum_sgd(lr, beta, gradient, steps)``  runs the framework's SGD-with-momentum from a
                   scalar parameter 0 with a constant gradient and returns the parameter after
                   each step.

The analysis (here, framework-free) solves for the conventions:
- the weight w the running mean gives the batch mean: mean_after = (1 - w) mean_before + w mu;
  compared with the layer's declared momentum, this says whether the declared number weights the
  old or the new value;
- the variance fed to the running variance, s2 = (var_after - (1 - w) var_before) / w, compared
  with the biased batch variance v and the unbiased v m / (m - 1);
- epsilon and the normalising variance: with gamma = 1 and beta = 0 the layer gives
  y = (x - mu) / sqrt(k v + eps); two batches with the same pattern at variances v and 4v give
  q = sum (x - mu)^2 / sum y^2 = k v + eps, hence k (1: biased; m / (m - 1): unbiased) and eps.
  A batch of large variance feeds the momentum and running-variance estimates, two of small
  variance (so that eps is visible next to v) the epsilon estimate.
- the momentum form from the first two steps with a constant gradient g: v = beta v + g gives
  steps of lr g and lr g (1 + beta); v = beta v + (1 - beta) g gives (1 - beta) times those.
"""
from __future__ import annotations

import csv
import io
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bnbench import tables

M = 4          # a small batch makes m / (m - 1) = 4/3 easy to tell from 1
FEATURES = 3

BatchNormProbe = Callable[[np.ndarray], Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
MomentumProbe = Callable[[float, float, float, int], Sequence[float]]

COLUMNS = ("framework", "version", "layer", "declared_momentum", "momentum_weights", "epsilon",
           "normalising_variance", "running_variance", "gamma", "optimizer", "momentum_form")
HEADINGS = {
    "framework": "framework", "version": "version", "layer": "batch-norm layer (defaults)",
    "declared_momentum": "default momentum", "momentum_weights": "momentum weights",
    "epsilon": "default epsilon", "normalising_variance": "normalising variance",
    "running_variance": "running variance update", "gamma": "gamma", "optimizer": "momentum optimizer",
    "momentum_form": "momentum form (measured)",
}


def probe_batches(dtype: str = "float32") -> Dict[str, np.ndarray]:
    """The three probe batches: mean about 1 in every feature; variances about 1, 1e-4, 4e-4."""
    rng = np.random.default_rng(20261125)
    pattern = rng.standard_normal((M, FEATURES))
    pattern = (pattern - pattern.mean(axis=0)) / pattern.std(axis=0)   # exactly mean 0, variance 1
    offset = 1.0 + 0.25 * np.arange(FEATURES)
    return {name: (offset + scale * pattern).astype(dtype)
            for name, scale in (("large", 1.0), ("small", 1e-2), ("small4", 2e-2))}


def _significant(value: float, digits: int = 3) -> float:
    return float(f"{value:.{digits - 1}e}")


def analyse_batch_norm(batch_norm: BatchNormProbe, declared_momentum: Optional[float]) -> Dict[str, object]:
    batches = probe_batches()
    x = batches["large"].astype(np.float64)
    mu, var = x.mean(axis=0), x.var(axis=0)
    _, mean_before, var_before, mean_after, var_after = (np.asarray(a, dtype=np.float64) for a in batch_norm(batches["large"]))
    new_weight = float(np.mean((mean_after - mean_before) / (mu - mean_before)))
    fed = (var_after - (1 - new_weight) * var_before) / new_weight
    ratio = float(np.mean(fed / var))
    row: Dict[str, object] = {"new_value_weight": _significant(new_weight)}
    if declared_momentum is None:
        row["declared_momentum"] = "-"
        row["momentum_weights"] = f"new value by {_significant(new_weight)}"
    else:
        if abs(declared_momentum - new_weight) < 1e-3:
            which = "NEW value"
        elif abs(declared_momentum - (1 - new_weight)) < 1e-3:
            which = "OLD value"
        else:
            which = f"neither (new value weighted by {_significant(new_weight)})"
        row["declared_momentum"] = _significant(declared_momentum)
        row["momentum_weights"] = which
    row["running_variance"] = _variance_kind(ratio)

    q = []
    for name in ("small", "small4"):
        xs = batches[name].astype(np.float64)
        y = np.asarray(batch_norm(batches[name])[0], dtype=np.float64)
        centred = xs - xs.mean(axis=0)
        q.append(np.sum(centred ** 2, axis=0) / np.sum(y ** 2, axis=0))
    v_small = batches["small"].astype(np.float64).var(axis=0)
    v_small4 = batches["small4"].astype(np.float64).var(axis=0)
    k = (q[1] - q[0]) / (v_small4 - v_small)
    eps = q[0] - k * v_small
    row["normalising_variance"] = _variance_kind(float(np.mean(k)))
    row["epsilon"] = _significant(float(np.mean(eps)), 2)
    row["gamma"] = "used"
    return row


def _variance_kind(ratio: float) -> str:
    if abs(ratio - 1) < 0.05:
        return "biased"
    if abs(ratio - M / (M - 1)) < 0.05:
        return "unbiased (m-1)"
    return f"other (ratio to biased {ratio:.3g})"


def analyse_momentum(momentum_sgd: MomentumProbe) -> str:
    lr, beta, gradient = 0.5, 0.9, 1.0
    params = [0.0] + [float(p) for p in momentum_sgd(lr, beta, gradient, 2)]
    first, second = params[0] - params[1], params[1] - params[2]
    if abs(first - lr * gradient) < 1e-6 and abs(second - lr * gradient * (1 + beta)) < 1e-6:
        return "v = beta*v + g (no 1-beta)"
    if abs(first - lr * (1 - beta) * gradient) < 1e-6 and abs(second - lr * (1 - beta) * gradient * (1 + beta)) < 1e-6:
        return "v = beta*v + (1-beta)*g"
    return f"other (steps {first:.4g}, {second:.4g} for lr={lr}, beta={beta}, g={gradient})"


def gamma_is_used(batch_norm_with_gamma: Callable[[np.ndarray, float], np.ndarray]) -> str:
    """For layers whose defaults may ignore gamma (MXNet's raw op): run with gamma 2 and 1."""
    x = probe_batches()["large"]
    doubled = np.asarray(batch_norm_with_gamma(x, 2.0), dtype=np.float64)
    single = np.asarray(batch_norm_with_gamma(x, 1.0), dtype=np.float64)
    return "used" if np.allclose(doubled, 2 * single, rtol=1e-4) else "IGNORED (fixed at 1)"


def row(probe) -> Dict[str, object]:
    """One table row from an adapter's ConventionProbe (bnbench.adapters.contract): its raw outputs
    analysed here, in the framework's process."""
    result: Dict[str, object] = {"framework": probe.framework, "version": probe.version, "layer": probe.layer}
    if probe.batch_norm is not None:
        result.update(analyse_batch_norm(probe.batch_norm, probe.declared_momentum))
    if probe.batch_norm_with_gamma is not None:
        result["gamma"] = gamma_is_used(probe.batch_norm_with_gamma)
    result["optimizer"] = probe.optimizer
    result["momentum_form"] = analyse_momentum(probe.momentum_sgd) if probe.momentum_sgd is not None else "-"
    return result


def measure(adapter_class) -> List[Dict[str, object]]:
    """The rows of one framework: probed and analysed in its own process (a worker's adapter class
    brings back rows), else here."""
    remote = getattr(adapter_class, "measured_conventions", None)
    if remote is not None:
        return remote()
    return [row(probe) for probe in adapter_class.conventions()]


def markdown(rows: List[Dict[str, object]]) -> str:
    return "\n".join(tables.markdown([HEADINGS[c] for c in COLUMNS], [[r.get(c, "-") for c in COLUMNS] for r in rows])) + "\n"


def to_csv(rows: List[Dict[str, object]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS) + ["new_value_weight"], extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def collect(adapter_classes) -> Tuple[List[Dict[str, object]], List[str]]:
    """Every framework's measured rows (``measure``, in its own process where that is a worker's),
    and why the others were not probed: one framework's failed probe never hides the others."""
    rows: List[Dict[str, object]] = []
    not_probed: List[str] = []
    for adapter in adapter_classes:
        reason = adapter.import_error()
        if reason:
            not_probed.append(f"{adapter.name}: {reason}")
            continue
        try:
            probed = measure(adapter)
            if not probed:
                not_probed.append(f"{adapter.name}: no conventions probe written for it yet (its adapter writes the "
                                  f"spec's formulas or layers by hand)")
            rows.extend(probed)
        except Exception as error:
            not_probed.append(f"{adapter.name}: probe failed: {type(error).__name__}: {(str(error).splitlines() or [''])[0]}")
    return rows, not_probed


def text(rows: List[Dict[str, object]], not_probed: List[str]) -> str:
    body = markdown(rows)
    return body + ("\nNot probed here: " + "; ".join(not_probed) + "\n" if not_probed else "")


def write(folder: str, rows: List[Dict[str, object]], not_probed: List[str]) -> None:
    """conventions.md, .csv and .json under ``folder``, each written atomically."""
    import os

    from bnbench.reference.io import atomic_write_json, atomic_write_text

    atomic_write_text(os.path.join(folder, "conventions.md"),
                      "# Batch-norm and momentum conventions, measured\n\n"
                      "Each framework's own layer and optimizer with their defaults, probed on a small batch "
                      "by `bnbench conventions` (bnbench/equivalence/conventions.py says how).\n\n" + text(rows, not_probed))
    atomic_write_text(os.path.join(folder, "conventions.csv"), to_csv(rows))
    atomic_write_json(os.path.join(folder, "conventions.json"), {"rows": rows, "not_probed": not_probed})
