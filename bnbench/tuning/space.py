"""The search space, on the right scale for each field: the learning rate log-uniform (r uniform
in [-4, 0], alpha = 10^r), averaging betas through 1 - beta on a log scale, width and depth
uniform; ``Dimension.narrowed`` zooms a range in, coarse to fine, in the scale's own coordinates.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Dict, Optional, Sequence, Tuple

from bnbench.reference.spec import Spec

SCALES = ("log", "one_minus_log", "uniform", "int", "choice")


class TuneError(ValueError):
    """A bad search space, flag or study; the message names the field and the value."""


# --------------------------------------------------------------------------- the search space
@dataclasses.dataclass(frozen=True)
class Dimension:
    scale: str
    low: float = 0.0
    high: float = 0.0
    step: int = 1
    choices: Tuple = ()

    def check(self, field: str) -> None:
        if self.scale not in SCALES:
            raise TuneError(f"search space field {field!r}: scale {self.scale!r} is not one of {', '.join(SCALES)}")
        if self.scale == "choice":
            if not self.choices:
                raise TuneError(f"search space field {field!r}: choice needs at least one value")
            return
        for name, value in (("low", self.low), ("high", self.high)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise TuneError(f"search space field {field!r}: {name} = {value!r} is not a finite number")
        if not self.low < self.high and not (self.scale == "int" and self.low == self.high):
            raise TuneError(f"search space field {field!r}: low = {self.low!r} must be below high = {self.high!r}")
        if self.scale == "log" and self.low <= 0:
            raise TuneError(f"search space field {field!r}: a log scale needs low > 0, got low = {self.low!r}")
        if self.scale == "one_minus_log" and not (0 <= self.low and self.high < 1):
            raise TuneError(f"search space field {field!r}: 1 - beta on a log scale needs 0 <= low < high < 1, "
                            f"got [{self.low!r}, {self.high!r}]")
        if self.scale == "int" and (int(self.low) != self.low or int(self.high) != self.high or self.step < 1):
            raise TuneError(f"search space field {field!r}: integer bounds and a step >= 1 needed, "
                            f"got [{self.low!r}, {self.high!r}] step {self.step!r}")

    # Optuna sees 1 - beta for 'one_minus_log' fields (so that its log-uniform draw is the lecture's)
    def optuna_name(self, field: str) -> str:
        return f"1-{field}" if self.scale == "one_minus_log" else field

    def distribution(self):
        import optuna.distributions as d

        if self.scale == "log":
            return d.FloatDistribution(self.low, self.high, log=True)
        if self.scale == "one_minus_log":
            return d.FloatDistribution(1 - self.high, 1 - self.low, log=True)
        if self.scale == "uniform":
            return d.FloatDistribution(self.low, self.high)
        if self.scale == "int":
            return d.IntDistribution(int(self.low), int(self.high), step=self.step)
        return d.CategoricalDistribution(list(self.choices))

    def suggest(self, trial, name: str):
        """Draw this dimension's value for ``trial`` through Optuna's sampler."""
        distribution = self.distribution()
        if self.scale == "int":
            return trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step)
        if self.scale == "choice":
            return trial.suggest_categorical(name, list(distribution.choices))
        return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)

    def from_optuna(self, value):
        return 1 - value if self.scale == "one_minus_log" else value

    # the coordinates in which 'random' is uniform: narrowing happens there
    def to_axis(self, value: float) -> float:
        if self.scale == "log":
            return math.log10(value)
        if self.scale == "one_minus_log":
            return math.log10(1 - value)
        return float(value)

    def from_axis(self, axis: float) -> float:
        if self.scale == "log":
            return 10 ** axis
        if self.scale == "one_minus_log":
            return 1 - 10 ** axis
        return axis

    def narrowed(self, values: Sequence, margin: float = 0.25) -> "Dimension":
        """A range around ``values`` (the best trials' values), never outside this one."""
        if self.scale == "choice":
            kept = tuple(c for c in self.choices if c in set(values))
            return dataclasses.replace(self, choices=kept or self.choices)
        axes = [self.to_axis(v) for v in values]
        bounds = sorted([self.to_axis(self.low), self.to_axis(self.high)])
        lo, hi = min(axes), max(axes)
        pad = max(margin * (hi - lo), 0.05 * (bounds[1] - bounds[0]))
        lo, hi = max(bounds[0], lo - pad), min(bounds[1], hi + pad)
        new = sorted([self.from_axis(lo), self.from_axis(hi)])
        if self.scale == "int":
            base = int(self.low)
            low = base + self.step * math.floor((new[0] - base) / self.step)
            high = base + self.step * math.ceil((new[1] - base) / self.step)
            return dataclasses.replace(self, low=max(int(self.low), low), high=min(int(self.high), high))
        return dataclasses.replace(self, low=new[0], high=new[1])

    def to_dict(self) -> Dict[str, object]:
        if self.scale == "choice":
            return {"scale": "choice", "choices": list(self.choices)}
        out = {"scale": self.scale, "low": self.low, "high": self.high}
        if self.scale == "int":
            out["step"] = self.step
        return out

    @classmethod
    def from_dict(cls, field: str, data) -> "Dimension":
        if not isinstance(data, dict):
            raise TuneError(f"search space field {field!r}: expected an object like "
                            f"{{\"scale\": \"log\", \"low\": 0.0001, \"high\": 1}}, got {data!r}")
        unknown = set(data) - {"scale", "low", "high", "step", "choices"}
        if unknown:
            raise TuneError(f"search space field {field!r}: unknown key(s) {', '.join(sorted(unknown))}")
        dimension = cls(scale=data.get("scale", ""), low=data.get("low", 0.0), high=data.get("high", 0.0),
                        step=data.get("step", 1), choices=tuple(data.get("choices", ())))
        dimension.check(field)
        return dimension


# Tunable fields: spec fields, plus the network's shape as two fields.
TUNABLE = ("learning_rate", "beta1", "bn_momentum", "l2", "hidden_units", "n_layers")


DEFAULT_SPACE: Dict[str, Dimension] = {
    "learning_rate": Dimension("log", 1e-4, 1.0),            # r uniform in [-4, 0], alpha = 10^r
    "beta1": Dimension("one_minus_log", 0.9, 0.999),          # momentum's averaging beta
    "bn_momentum": Dimension("one_minus_log", 0.9, 0.999),    # batch norm's running-average beta
    "hidden_units": Dimension("int", 64, 256, step=64),
    "n_layers": Dimension("int", 1, 3),
}


def load_space(data: Optional[dict]) -> Dict[str, Dimension]:
    if data is None:
        return dict(DEFAULT_SPACE)
    if not isinstance(data, dict) or not data:
        raise TuneError("the search space must be a non-empty JSON object of field -> {scale, low, high}")
    unknown = [field for field in data if field not in TUNABLE]
    if unknown:
        raise TuneError(f"search space field {unknown[0]!r} is not tunable; tunable: {', '.join(TUNABLE)}")
    return {field: Dimension.from_dict(field, value) for field, value in data.items()}


def spec_for(params: Dict[str, object], *, seed: int, n_features: int = 64, n_classes: int = 10):
    """The spec one trial trains: the base of the digits benchmark with the trial's values."""

    fields = dict(learning_rate=0.1, beta1=0.9, bn_momentum=0.9, l2=0.0)
    fields.update({k: v for k, v in params.items() if k in ("learning_rate", "beta1", "bn_momentum", "l2")})
    units, layers = int(params.get("hidden_units", 64)), int(params.get("n_layers", 2))
    return Spec(n_features=n_features, hidden=(units,) * layers, n_classes=n_classes, optimizer="momentum",
                dtype="float32", seed=seed, **fields)


def load_space_file(path: Optional[str]) -> Dict[str, Dimension]:
    """The search space of ``--space SPACE.json`` (None: the default space)."""
    if path is None:
        return load_space(None)
    if not os.path.exists(path):
        raise TuneError(f"search space file {path!r} does not exist")
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (ValueError, UnicodeDecodeError) as error:
        raise TuneError(f"search space file {path!r} is not valid JSON: {error}") from None
    return load_space(data)
