"""The model specification of ``docs/SPEC.md`` (v1) as a frozen, validated object.

Every framework adapter is handed a :class:`Spec` and the arrays of :func:`initial_parameters`;
nothing here imports a framework.
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from typing import Any, Dict, Mapping, Tuple

import numpy as np
from bnbench.reference.io import atomic_write_text

SPEC_VERSION = 1

OPTIMIZERS = ("sgd", "momentum", "adam")
RUNNING_VAR_CONVENTIONS = ("biased", "unbiased")
DTYPES = ("float32", "float64")


class SpecError(ValueError):
    """A spec field (or a spec file) that does not satisfy SPEC.md; the message names the field and value."""


def _fail(field: str, value: Any, expected: str) -> None:
    raise SpecError(f"spec field {field!r} = {value!r} is invalid: expected {expected}")


def _check_int(field: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _fail(field, value, f"an integer >= {minimum}")
    if value < minimum:
        _fail(field, value, f"an integer >= {minimum}")
    return int(value)


def _check_float(field: str, value: Any, low: float, high: float, *, low_open: bool, high_open: bool) -> float:
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if high == math.inf:
        interval = f"{'(' if low_open else '['}{low:g}, inf)"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(field, value, f"a number in {interval}")
    value = float(value)
    if not math.isfinite(value):
        _fail(field, value, f"a finite number in {interval}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        _fail(field, value, f"a number in {interval}")
    return value


def _check_choice(field: str, value: Any, choices: Tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        _fail(field, value, "one of " + ", ".join(repr(c) for c in choices))
    return value


@dataclasses.dataclass(frozen=True)
class Spec:
    """Hyperparameters of the network and its training, field for field as in SPEC.md."""

    n_features: int
    hidden: Tuple[int, ...]
    n_classes: int
    batch_norm: bool = True   # False: every hidden layer is Z = A @ W + b, ReLU (no gamma, beta, statistics)
    bn_epsilon: float = 1e-5
    bn_momentum: float = 0.9  # weight of the OLD running value (the lecture's EWA beta)
    running_var: str = "biased"
    optimizer: str = "sgd"
    learning_rate: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    adam_epsilon: float = 1e-8
    l2: float = 0.0
    dtype: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        set_("n_features", _check_int("n_features", self.n_features, 1))
        hidden = self.hidden
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, (tuple, list)) or len(hidden) < 1:
            _fail("hidden", hidden, "a non-empty list of integers > 0")
        set_("hidden", tuple(_check_int(f"hidden[{i}]", width, 1) for i, width in enumerate(hidden)))
        set_("n_classes", _check_int("n_classes", self.n_classes, 2))
        if not isinstance(self.batch_norm, (bool, np.bool_)):
            _fail("batch_norm", self.batch_norm, "true or false")
        set_("batch_norm", bool(self.batch_norm))
        set_("bn_epsilon", _check_float("bn_epsilon", self.bn_epsilon, 0.0, math.inf, low_open=True, high_open=True))
        set_("bn_momentum", _check_float("bn_momentum", self.bn_momentum, 0.0, 1.0, low_open=False, high_open=True))
        set_("running_var", _check_choice("running_var", self.running_var, RUNNING_VAR_CONVENTIONS))
        set_("optimizer", _check_choice("optimizer", self.optimizer, OPTIMIZERS))
        set_("learning_rate", _check_float("learning_rate", self.learning_rate, 0.0, math.inf, low_open=True, high_open=True))
        set_("beta1", _check_float("beta1", self.beta1, 0.0, 1.0, low_open=False, high_open=True))
        set_("beta2", _check_float("beta2", self.beta2, 0.0, 1.0, low_open=False, high_open=True))
        set_("adam_epsilon", _check_float("adam_epsilon", self.adam_epsilon, 0.0, math.inf, low_open=True, high_open=True))
        set_("l2", _check_float("l2", self.l2, 0.0, math.inf, low_open=False, high_open=True))
        set_("dtype", _check_choice("dtype", self.dtype, DTYPES))
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or self.seed < 0:
            _fail("seed", self.seed, "an integer >= 0")
        set_("seed", int(self.seed))

    # ----------------------------------------------------------------- derived facts
    @property
    def n_layers(self) -> int:
        """L, the number of hidden layers (batch-normalised unless batch_norm is false)."""
        return len(self.hidden)

    @property
    def widths(self) -> Tuple[int, ...]:
        """n[0..L] followed by C."""
        return (self.n_features,) + self.hidden + (self.n_classes,)

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def replace(self, **changes: Any) -> "Spec":
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> Dict[str, Any]:
        data = dataclasses.asdict(self)
        data["hidden"] = list(self.hidden)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Spec":
        if not isinstance(data, Mapping):
            raise SpecError(f"a spec must be a JSON object of fields, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"unknown spec field(s) {', '.join(map(repr, unknown))}; known fields: {', '.join(sorted(known))}")
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise SpecError(f"spec field(s) {', '.join(map(repr, missing))} missing: they have no default")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Spec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SpecError(f"spec is not valid JSON: {error}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: "os.PathLike[str] | str") -> "Spec":
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as error:
            raise SpecError(f"cannot read spec file {os.fspath(path)!r}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise SpecError(f"spec file {os.fspath(path)!r} is not valid JSON (not UTF-8 text)") from None
        try:
            return cls.from_json(text)
        except SpecError as error:
            raise SpecError(f"{os.fspath(path)}: {error}") from None

    def save(self, path: "os.PathLike[str] | str") -> None:
        atomic_write_text(path, self.to_json())


# --------------------------------------------------------------------- parameter names
def trainable_names(spec: Spec) -> Tuple[str, ...]:
    """Parameters that get a gradient, layer by layer (layer 1 first, the output layer last)."""
    names = []
    for layer in range(1, spec.n_layers + 1):
        names += [f"W{layer}", f"gamma{layer}", f"beta{layer}"] if spec.batch_norm else [f"W{layer}", f"b{layer}"]
    return tuple(names + ["W_out", "b_out"])


def running_stat_names(spec: Spec) -> Tuple[str, ...]:
    if not spec.batch_norm:
        return ()
    names = []
    for layer in range(1, spec.n_layers + 1):
        names += [f"running_mean{layer}", f"running_var{layer}"]
    return tuple(names)


def state_names(spec: Spec) -> Tuple[str, ...]:
    """Every array of a model: trainable parameters, then running statistics."""
    return trainable_names(spec) + running_stat_names(spec)


def weight_names(spec: Spec) -> Tuple[str, ...]:
    """The matrices that the L2 term penalises."""
    return tuple(f"W{layer}" for layer in range(1, spec.n_layers + 1)) + ("W_out",)


def parameter_shapes(spec: Spec) -> Dict[str, Tuple[int, ...]]:
    widths = spec.widths
    shapes: Dict[str, Tuple[int, ...]] = {}
    for layer in range(1, spec.n_layers + 1):
        shapes[f"W{layer}"] = (widths[layer - 1], widths[layer])
        if spec.batch_norm:
            shapes[f"gamma{layer}"] = (widths[layer],)
            shapes[f"beta{layer}"] = (widths[layer],)
        else:
            shapes[f"b{layer}"] = (widths[layer],)
    shapes["W_out"] = (spec.hidden[-1], spec.n_classes)
    shapes["b_out"] = (spec.n_classes,)
    for layer in range(1, spec.n_layers + 1 if spec.batch_norm else 1):
        shapes[f"running_mean{layer}"] = (widths[layer],)
        shapes[f"running_var{layer}"] = (widths[layer],)
    return shapes


def layer_of(name: str) -> str:
    """'W2', 'grad/gamma2', 'param/running_var2' -> '2'; 'W_out' -> 'out'. Used to report where two models part."""
    base = name.rsplit("/", 1)[-1]
    if base.endswith("_out"):
        return "out"
    digits = ""
    for char in reversed(base):
        if not char.isdigit():
            break
        digits = char + digits
    return digits or base


def initial_parameters(spec: Spec) -> Dict[str, np.ndarray]:
    """The one set of initial arrays every adapter loads (SPEC.md: He normal, draws W1..WL, W_out)."""
    rng = np.random.default_rng(spec.seed)
    widths = spec.widths
    dtype = spec.np_dtype
    params: Dict[str, np.ndarray] = {}
    weights = []
    for layer in range(1, spec.n_layers + 1):
        fan_in, fan_out = widths[layer - 1], widths[layer]
        weights.append((f"W{layer}", rng.normal(0.0, math.sqrt(2.0 / fan_in), size=(fan_in, fan_out))))
    fan_in = spec.hidden[-1]
    weights.append(("W_out", rng.normal(0.0, math.sqrt(2.0 / fan_in), size=(fan_in, spec.n_classes))))
    drawn = dict(weights)
    for layer in range(1, spec.n_layers + 1):
        width = widths[layer]
        params[f"W{layer}"] = drawn[f"W{layer}"].astype(dtype)
        if spec.batch_norm:
            params[f"gamma{layer}"] = np.ones(width, dtype)
            params[f"beta{layer}"] = np.zeros(width, dtype)
        else:
            params[f"b{layer}"] = np.zeros(width, dtype)
    params["W_out"] = drawn["W_out"].astype(dtype)
    params["b_out"] = np.zeros(spec.n_classes, dtype)
    for layer in range(1, spec.n_layers + 1 if spec.batch_norm else 1):
        width = widths[layer]
        params[f"running_mean{layer}"] = np.zeros(width, dtype)
        params[f"running_var{layer}"] = np.ones(width, dtype)
    return params


class ParameterError(ValueError):
    """Arrays that do not fit a spec (names, shapes, dtype, finiteness)."""


def check_parameters(spec: Spec, params: Mapping[str, np.ndarray], *, source: str = "parameters") -> Dict[str, np.ndarray]:
    """Validate a full set of arrays for ``spec`` and return them as contiguous arrays of the spec dtype."""
    expected = parameter_shapes(spec)
    missing = [name for name in expected if name not in params]
    unknown = sorted(set(params) - set(expected))
    if missing:
        raise ParameterError(f"{source}: missing array(s) {', '.join(missing)}")
    if unknown:
        raise ParameterError(f"{source}: unknown array name(s) {', '.join(unknown)}; expected {', '.join(expected)}")
    checked = {}
    for name, shape in expected.items():
        array = np.asarray(params[name])
        if array.shape != shape:
            raise ParameterError(f"{source}: {name} has shape {array.shape}, the spec needs {shape}")
        if array.dtype.kind != "f":
            # float32 <-> float64 is accepted and cast to the spec's dtype; integers, booleans
            # and objects are a mistake, not a precision choice.
            raise ParameterError(f"{source}: {name} has dtype {array.dtype}, expected floating point (spec dtype {spec.dtype})")
        if not np.all(np.isfinite(array)):
            bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
            raise ParameterError(f"{source}: {name} holds {bad} non-finite value(s)")
        if name.startswith("running_var") and np.any(array < 0):
            raise ParameterError(f"{source}: {name} holds negative variances")
        checked[name] = np.ascontiguousarray(array, dtype=spec.np_dtype)
    return checked
