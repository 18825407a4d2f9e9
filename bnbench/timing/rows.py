"""The parts of the suite's results, typed: a comparison's row, its standing against the next
faster row, the floor, the peak and a ceiling (a framework's own matmul); a sweep's point and fit.
Each is written by its ``to_json`` and read by its ``from_json``; bnbench.timing.summary and
bnbench.comparisons.scale make them, bnbench.timing.records reads every file's through them.

A field is added to its dataclass with a default: files written before it read it as that default
(unknown: None), never guessed, so a new field touches its dataclass, its writer and its test.
A change of meaning is an upgrade in bnbench.timing.records."""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple, Type, TypeVar

T = TypeVar("T", bound="Part")


class PartError(ValueError):
    """A part of a result that is not one: the message names where, and the key."""


@dataclasses.dataclass(frozen=True)
class Part:
    """What every part shares: its JSON, written and read in one place."""

    required: ClassVar[Tuple[str, ...]] = ()       # keys a file must hold; every other field has a default
    nested: ClassVar[Mapping[str, Type["Part"]]] = {}   # fields that hold a part (or a list of parts) of their own

    def to_json(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls: Type[T], data: Any, name: str) -> T:
        """``data`` as this part, its missing fields their defaults; PartError naming ``name`` and the
        key where a required one is missing. Keys no field declares (written by an earlier version
        and since dropped) are left out."""
        if not isinstance(data, Mapping):
            raise PartError(f"{name}: not a JSON object")
        missing = [key for key in cls.required if key not in data]
        if missing:
            raise PartError(f"{name}: no {missing[0]!r}")
        names = {field.name for field in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in names}
        for key, part in cls.nested.items():
            value = values.get(key)
            if isinstance(value, list):
                values[key] = [part.from_json(item, f"{name}.{key}[{i}]") for i, item in enumerate(value)]
            elif value is not None:
                values[key] = part.from_json(value, f"{name}.{key}")
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class Verdict(Part):
    """A row against another (the baseline, the next faster row): their paired ratio over the rounds
    both counted and what it decides (bnbench.timing.verdicts)."""

    required: ClassVar[Tuple[str, ...]] = ("verdict",)
    verdict: str                                 # faster, slower, equivalent or undecided
    ratio: Optional[float] = None
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None
    epsilon: Optional[float] = None              # the equivalence margin it was tested against
    label: Optional[str] = None                  # the row it is against
    reason: Optional[str] = None                 # why undecided


@dataclasses.dataclass(frozen=True)
class Row(Part):
    """One participant of a comparison: timed (its figures over the rounds it counted), or not
    (``not_timed`` says why, every figure None)."""

    required: ClassVar[Tuple[str, ...]] = ("framework", "mode", "label", "verified")
    nested: ClassVar[Mapping[str, Type[Part]]] = {"vs_baseline": Verdict, "vs_next_faster": Verdict}
    framework: str
    mode: str
    label: str                                   # its Form (bnbench.timing.form)
    verified: bool
    variant: Optional[str] = None
    version: Optional[str] = None
    flags: str = ""
    # its step: steps queued, one synchronisation per burst; and each step synchronised (latency)
    median_step_s: Optional[float] = None
    step_ci_low: Optional[float] = None
    step_ci_high: Optional[float] = None
    latency_s: Optional[float] = None
    latency_ci_low: Optional[float] = None
    latency_ci_high: Optional[float] = None
    # its burst over the baseline's beside it, over the rounds it counted
    ratio: Optional[float] = None
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None
    rounds_counted: Optional[int] = None
    resolved: Optional[bool] = None              # apart from 1 beyond the floor's spread; None for the baseline
    converged: Optional[bool] = None             # its interval within the target half-width
    half_width: Optional[float] = None
    sets_apart: Optional[float] = None           # how far its process sets' medians stand apart, where they disagree
    fraction_of_peak: Optional[float] = None
    fraction_ci_low: Optional[float] = None
    fraction_ci_high: Optional[float] = None
    of_own_matmul: Optional[float] = None        # its FLOP/s over its framework's own matmul's
    of_own_matmul_ci_low: Optional[float] = None
    of_own_matmul_ci_high: Optional[float] = None
    gflops: Optional[float] = None
    first_step_s: Optional[float] = None
    warmup_s: Optional[float] = None
    steps_per_burst: Optional[float] = None
    busy_after_burst_s: Optional[float] = None
    unplaced: Optional[str] = None               # why its worker ran on no core of its own
    memory_bytes: Optional[int] = None
    memory_kind: Optional[str] = None            # bnbench.timing.steps.MemoryWatch
    memory_ratio: Optional[float] = None         # over the analytic minimum (bnbench.timing.flops)
    kernels: Optional[Dict[str, Any]] = None     # the BLAS kernels that ran (bnbench.timing.kernels)
    fingerprint: Optional[Dict[str, float]] = None   # distance from the reference after training, in epsilons
    vs_baseline: Optional[Verdict] = None        # None for the baseline itself
    vs_next_faster: Optional[Verdict] = None     # None for the fastest row
    not_timed: Optional[str] = None

    @property
    def timed(self) -> bool:
        return self.ratio is not None


@dataclasses.dataclass(frozen=True)
class Floor(Part):
    """The control's ratio (the baseline against itself in a second process): the run's noise floor;
    or, where it has none, why."""

    required: ClassVar[Tuple[str, ...]] = ("label",)
    label: str
    ratio: Optional[float] = None
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None
    spread: Optional[float] = None
    problem: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Peak(Part):
    """The machine's matmul peak of the run, or why there is none (``problem``), or why no fraction
    of it is published (``error``)."""

    library: Optional[str] = None
    flags: str = ""
    flops: Optional[float] = None
    median_s: Optional[float] = None
    gflops: Optional[float] = None
    kernels: Optional[Dict[str, Any]] = None
    problem: Optional[str] = None
    error: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Ceiling(Part):
    """A framework's own matmul, timed beside the rows: what its kernels allow."""

    required: ClassVar[Tuple[str, ...]] = ("framework", "label")
    framework: str
    label: str
    library: Optional[str] = None
    flags: str = ""
    median_s: Optional[float] = None
    gflops: Optional[float] = None
    fraction_of_peak: Optional[float] = None
    fraction_ci_low: Optional[float] = None
    fraction_ci_high: Optional[float] = None
    problem: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Fit(Part):
    """A framework's step time along a sweep: t0 + FLOPs / R, each with its interval."""

    required: ClassVar[Tuple[str, ...]] = ("label", "t0_s", "rate_flops")
    label: str
    t0_s: float
    rate_flops: float
    framework: str = ""
    mode: str = ""
    t0_low: Optional[float] = None
    t0_high: Optional[float] = None
    rate_low: Optional[float] = None
    rate_high: Optional[float] = None
    worst_fit_error: Optional[float] = None
    fit_errors: List[float] = dataclasses.field(default_factory=list)
    breaks: List[int] = dataclasses.field(default_factory=list)      # the points the model misses
    fraction_of_peak: Optional[float] = None     # R over the matmul peak of the sweep's rounds


@dataclasses.dataclass(frozen=True)
class Point(Part):
    """One point of a sweep: its spec, its comparison's rows and the rounds they were taken over."""

    required: ClassVar[Tuple[str, ...]] = ("size", "flops", "rows")
    nested: ClassVar[Mapping[str, Type[Part]]] = {"rows": Row, "floor": Floor}
    size: int
    flops: float
    rows: List[Row]
    m: Optional[int] = None
    spec: Optional[Dict[str, Any]] = None
    analytic_memory_bytes: Optional[int] = None
    floor: Optional[Floor] = None
    rounds: Optional[int] = None
    seconds: Optional[float] = None
    round_medians: Dict[str, List[float]] = dataclasses.field(default_factory=dict)
    round_references: Optional[Dict[str, List[float]]] = None
    undisturbed_rounds: Optional[List[bool]] = None
    round_counted: Optional[Dict[str, List[bool]]] = None
    undisturbed: Optional[Dict[str, Any]] = None


def parts_of_sweep(data: Dict[str, Any], name: str) -> Dict[str, Any]:
    """A sweep's points and fits, each read through its dataclass and written back."""
    return dict(data, points=[Point.from_json(p, f"{name}: points[{i}]").to_json() for i, p in enumerate(data.get("points") or [])],
                fits=[Fit.from_json(f, f"{name}: fits[{i}]").to_json() for i, f in enumerate(data.get("fits") or [])])


def parts_of_comparison(data: Dict[str, Any], name: str) -> Dict[str, Any]:
    """A comparison's rows, floor, peak and ceilings, each read through its dataclass and written
    back: every reader finds every field (older files' missing ones as their defaults)."""
    out = dict(data)
    out["rows"] = [Row.from_json(row, f"{name}: rows[{i}]").to_json() for i, row in enumerate(data.get("rows") or [])]
    out["ceilings"] = [Ceiling.from_json(c, f"{name}: ceilings[{i}]").to_json()
                       for i, c in enumerate(data.get("ceilings") or [])]
    for key, part in (("floor", Floor), ("peak", Peak)):
        if data.get(key) is not None:
            out[key] = part.from_json(data[key], f"{name}: {key}").to_json()
    return out
