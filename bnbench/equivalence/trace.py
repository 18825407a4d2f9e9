"""Running an adapter on given inputs and recording everything (``bnbench trace``), and the
equivalence check built on the same run."""
from __future__ import annotations

import os
import zipfile
from typing import Callable, Dict, Mapping, Optional, Tuple

import numpy as np

from bnbench.adapters.contract import Adapter
from bnbench.equivalence.tolerances import EquivalenceReport, ReluKinks, compare, compare_all
from bnbench.reference.model import BatchError, ReferenceModel
from bnbench.reference.spec import Spec, check_parameters

StepCallback = Callable[[int, Dict[str, np.ndarray]], None]


def check_batches(spec: Spec, X: np.ndarray, y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """X of shape (K, m, n_features) or (m, n_features); y of shape (K, m) or (m,)."""
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim == 2:
        X = X[None]
    if y.ndim == 1:
        y = y[None]
    if X.ndim != 3:
        raise BatchError(f"X has {X.ndim} dimensions, expected (K, m, {spec.n_features}) or (m, {spec.n_features})")
    if y.ndim != 2:
        raise BatchError(f"y has {y.ndim} dimensions, expected (K, m) or (m,)")
    if X.shape[0] < 1:
        raise BatchError("X holds no batch (K = 0)")
    if X.shape[:2] != y.shape:
        raise BatchError(f"X holds {X.shape[0]} batch(es) of {X.shape[1]} examples but y has shape {y.shape}; "
                         f"expected {X.shape[:2]}")
    return X, y


def run(model, X: np.ndarray, y: np.ndarray, *, on_step: Optional[StepCallback] = None) -> Dict[str, np.ndarray]:
    """The trace of one model (an adapter or the ReferenceModel): OUT.npz's keys.

    ``loss``, ``probs`` and ``grad/<name>`` come from the first batch before any update;
    ``losses`` from K training steps; ``param/<name>`` after them; ``eval_probs`` is the
    inference-mode softmax of the last batch's X after the K steps.
    """
    first = model.gradients(X[0], y[0])
    out: Dict[str, np.ndarray] = {"loss": np.asarray(first.loss, dtype=np.float64), "probs": np.asarray(first.probs)}
    for name, grad in first.grads.items():
        out[f"grad/{name}"] = np.asarray(grad)
    losses = []
    for k in range(X.shape[0]):
        losses.append(model.train_step(X[k], y[k]))
        if on_step is not None:
            on_step(k + 1, model.state())
    out["losses"] = np.asarray(losses, dtype=np.float64)
    for name, array in model.state().items():
        out[f"param/{name}"] = np.asarray(array)
    out["eval_probs"] = np.asarray(model.predict_proba(X[-1]))
    return out


def check_equivalence(adapter: Adapter, spec: Spec, params: Mapping[str, np.ndarray], X: np.ndarray, y: np.ndarray,
                      *, label: Optional[str] = None, precision: Optional[str] = None) -> EquivalenceReport:
    """Run the adapter and the reference side by side on the same batches and compare every tensor:
    first-batch loss, probabilities and gradients; loss and all parameters and running statistics
    after every step; inference-mode probabilities at the end.

    The reference runs in float64 on the adapter's own arrays (for a float32 spec, its float32
    numbers, exact in float64): that is the truth. Where ReLU inputs lie within the spec dtype's
    rounding of 0, it runs again with them on the other side, and each tensor's tolerance covers
    what that moves (bnbench.equivalence.tolerances, "ReLU kinks"). A float32 spec computed at a
    lower matmul ``precision`` ("tf32") is held to that precision's tolerance and rounding."""
    X, y = check_batches(spec, X, y)
    exact = lambda array: np.asarray(array, dtype=spec.np_dtype).astype(np.float64)  # noqa: E731
    truth_spec = spec.replace(dtype="float64")
    truth_params = {name: exact(array) for name, array in check_parameters(spec, params).items()}
    X_truth = exact(X)

    def reference_trace(relu_grad: ReluKinks):
        states: Dict[int, Dict[str, np.ndarray]] = {}
        out = run(ReferenceModel(truth_spec, truth_params, relu_grad=relu_grad), X_truth, y,
                  on_step=lambda k, state: states.__setitem__(k, state))
        return out, states

    dtype = precision or spec.dtype     # what the tolerance and the ReLU band are taken of
    kinks = ReluKinks(dtype)
    expected, reference_states = reference_trace(kinks)
    # without inputs near a kink the flipped truth is the truth: nothing is widened
    flipped, flipped_states = (reference_trace(ReluKinks(dtype, flip=True)) if kinks.count
                               else (expected, reference_states))
    adapter_states: Dict[int, Dict[str, np.ndarray]] = {}
    actual = run(adapter, X, y, on_step=lambda k, state: adapter_states.__setitem__(k, state))
    comparisons = [compare(key, actual[key], expected[key], dtype, 0, flipped[key]) for key in ("loss", "probs")]
    comparisons += compare_all("grad", _strip(actual, "grad/"), _strip(expected, "grad/"), dtype, 0, _strip(flipped, "grad/"))
    for k in range(1, X.shape[0] + 1):
        comparisons.append(compare("loss", actual["losses"][k - 1], expected["losses"][k - 1], dtype, k, flipped["losses"][k - 1]))
        comparisons += compare_all("param", adapter_states[k], reference_states[k], dtype, k, flipped_states[k])
    comparisons.append(compare("eval_probs", actual["eval_probs"], expected["eval_probs"], dtype, X.shape[0], flipped["eval_probs"]))
    label = label or f"{adapter.name} ({adapter.mode}, {adapter.device}, {dtype}, {spec.optimizer}, running_var={spec.running_var})"
    return EquivalenceReport(label, dtype, comparisons, kinks.count)


def _strip(arrays: Mapping[str, np.ndarray], prefix: str) -> Dict[str, np.ndarray]:
    return {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}


class InputError(ValueError):
    """A file a person gave (parameters, batches) that cannot be used; the message names it and why."""


def load_npz(path: str, what: str) -> Dict[str, np.ndarray]:
    """The named arrays of an .npz archive, or InputError naming the file and what is wrong."""
    if not os.path.exists(path):
        raise InputError(f"{what} file {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not hasattr(archive, "files"):
                raise InputError(f"{what} file {path!r} is a single .npy array, expected an .npz archive of named arrays")
            return {name: archive[name] for name in archive.files}
    except InputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise InputError(f"{what} file {path!r} is not a readable .npz archive: {error}") from None


def load_batch_file(path: str, spec: Spec) -> Tuple[np.ndarray, np.ndarray]:
    """X (K, m, n_features) and y (K, m) from ``bnbench trace``'s batch file, every batch checked
    against ``spec`` before anything runs."""
    from bnbench.reference.model import check_batch

    arrays = load_npz(path, "batch")
    unknown = sorted(set(arrays) - {"X", "y"})
    missing = [name for name in ("X", "y") if name not in arrays]
    if missing or unknown:
        found = ", ".join(sorted(arrays)) or "nothing"
        raise InputError(f"batch file {path!r} must hold exactly the arrays X and y; it holds {found}")
    try:
        X, y = check_batches(spec, arrays["X"], arrays["y"])
    except ValueError as error:
        raise InputError(f"batch file {path!r}: {error}") from None
    for k in range(X.shape[0]):   # every batch, so that a bad one fails before anything runs
        try:
            check_batch(spec, X[k], y[k], training=True)
        except ValueError as error:
            raise InputError(f"batch file {path!r}, batch {k}: {error}") from None
    return X, y
