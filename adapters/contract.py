"""The adapter contract: the one interface every framework implements.

An adapter module never imports its framework at module level (the suite must import without any
framework installed); the framework is imported inside the class, the first time it is needed.
Parameters and data arrive as NumPy arrays produced by the reference side; an adapter never
initialises a weight of its own.

What an adapter class declares (its name, modes, devices, requirements, environment, ...) is
gathered into one ``Declaration`` (bnbench.adapters.declaration); the allocator settings of its
kept form are bnbench.adapters.allocator's, its profiler hook bnbench.adapters.profiling's, and
training many models at once bnbench.adapters.many's.
"""
from __future__ import annotations

import abc
import dataclasses
import importlib
import importlib.util
import os
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Tuple

import numpy as np

from bnbench.reference.model import check_batch
from bnbench.reference.spec import Spec, check_parameters, state_names

from . import allocator, profiling
from .declaration import Alternative, Declaration
from .native_log import import_quietly
from .placement import Placement, environment_placement

_blas_limits = []


def _limit_blas_threads(n_threads: int) -> None:
    """BLAS/OpenMP pools already loaded (numpy's OpenBLAS, MKL, ...) get ``n_threads``."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl is optional; OMP_NUM_THREADS then decides
        return
    _blas_limits.append(threadpool_limits(limits=n_threads))


class AdapterError(RuntimeError):
    """Base of the errors below; the message is meant for a person."""


class Unavailable(AdapterError):
    """The framework, mode or device cannot run here (not installed, no GPU, ...)."""


class Unsupported(AdapterError):
    """The framework cannot express this spec combination; the message says which and why."""


@dataclasses.dataclass
class ConventionProbe:
    """A framework's own batch-norm layer and momentum optimizer with their defaults, as callables
    that return raw outputs; ``bnbench conventions`` (a tool) solves for the conventions from them.

    ``batch_norm(X)``: a FRESH layer with every default, ONE training-mode forward on X; returns
    (output, running mean before, running var before, running mean after, running var after).
    ``momentum_sgd(lr, beta, gradient, steps)``: the framework's SGD with momentum from a scalar 0
    under a constant gradient; the parameter after each step.
    ``batch_norm_with_gamma(X, gamma)``: the output with gamma set, where defaults may ignore it."""

    framework: str
    version: str
    layer: str
    batch_norm: Optional[Callable] = None
    declared_momentum: Optional[float] = None
    optimizer: str = "-"
    momentum_sgd: Optional[Callable] = None
    batch_norm_with_gamma: Optional[Callable] = None


@dataclasses.dataclass
class Gradients:
    """What one training-mode forward and backward of a batch gives, as NumPy arrays."""

    loss: float
    probs: np.ndarray
    grads: Dict[str, np.ndarray]


# The float32 matmul precisions a tool may ask for beside the dtype's own ("tf32": NVIDIA's
# tensor-core format, a 10-bit mantissa; an adapter declares where it offers it, ``precisions``).
PRECISIONS = ("tf32",)


class Adapter(abc.ABC):
    """One framework's implementation of the spec.

    Subclasses declare the fields of ``Declaration`` as class attributes (``name``, ``modes``,
    ``devices``, ``requires``, ``requirements``, ...) and implement ``_build``, ``train_step``,
    ``gradients``, ``predict_proba`` and ``state``.
    """

    declaration: ClassVar[Declaration]
    name: ClassVar[str]
    modes: ClassVar[Tuple[str, ...]] = ()
    best_mode: ClassVar[str] = ""
    devices: ClassVar[Tuple[str, ...]] = ("cpu",)
    requires: ClassVar[Tuple[str, ...]] = ()
    packages: ClassVar[Tuple[str, ...]] = ()
    tuning: ClassVar[Dict[str, str]] = {}
    alternatives: ClassVar[Dict[str, Dict[str, Alternative]]] = {}
    allocator: ClassVar[str] = "default"
    description: ClassVar[str] = ""
    status: ClassVar[str] = ""
    requirements: ClassVar[Tuple[str, ...]] = ()
    python: ClassVar[str] = "3.11"
    environment: ClassVar[Optional[str]] = None
    install_then: ClassVar[Tuple[str, ...]] = ()
    setup_script: ClassVar[str] = ""
    system_packages: ClassVar[Tuple[str, ...]] = ()
    asv_variables: ClassVar[Tuple[Tuple[str, str], ...]] = ()
    timed_by: ClassVar[str] = "asv"
    tested_in_environment: ClassVar[bool] = False
    trains_many: ClassVar[bool] = False
    peak_devices: ClassVar[Tuple[str, ...]] = ()
    precisions: ClassVar[Dict[str, Tuple[str, ...]]] = {}
    gpu_requirements: ClassVar[Tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        """The class's declaration, gathered once from its class attributes; a class given a
        declaration (a worker proxy) takes every field from it instead."""
        super().__init_subclass__(**kwargs)
        given = cls.__dict__.get("declaration")
        if given is not None:
            for field in Declaration.fields():
                setattr(cls, field, getattr(given, field))
        elif isinstance(getattr(cls, "name", None), str):
            cls.declaration = Declaration.of(cls)

    # ------------------------------------------------------------------ class-level facts
    @classmethod
    def environment_hint(cls) -> str:
        """How to make the framework's environment, derived from the declaration."""
        return cls.declaration.environment_hint()

    @classmethod
    def placement(cls) -> Optional[Placement]:
        """None when the adapter runs in this process; else the worker environment it needs: the
        adapter's own ``environment``, unless its modules import here (its environment's asv run,
        or this process is already a worker there)."""
        if cls.environment is None or os.environ.get("BNBENCH_WORKER") or cls.missing_requirement() is None:
            return None
        placement = environment_placement(cls.environment, cls.environment_hint())
        variables = cls.process_variables()
        return dataclasses.replace(placement, env=variables) if variables else placement

    @classmethod
    def worker_variables(cls) -> Tuple[Tuple[str, str], ...]:
        """Environment variables the worker process needs before the framework is imported."""
        return ()

    @classmethod
    def tuning_of(cls, mode: str) -> str:
        """The published flags of ``mode``'s kept form: its ``tuning`` entry and its allocator's
        settings (an adapter whose kept form depends on this machine, as one that links a system
        library, adds which)."""
        return allocator.tuning_flags(cls.declaration, mode)

    @classmethod
    def allocator_parts(cls) -> Tuple[str, ...]:
        return allocator.allocator_parts(cls.declaration)

    @classmethod
    def allocator_variables(cls) -> Tuple[Tuple[str, str], ...]:
        return allocator.allocator_variables(cls.declaration)

    @classmethod
    def process_variables(cls) -> Tuple[Tuple[str, str], ...]:
        """What a process timing this framework starts with: its worker variables and its allocator's."""
        return tuple(cls.worker_variables()) + tuple(cls.allocator_variables())

    @classmethod
    def alternatives_of(cls, mode: str) -> Dict[str, Alternative]:
        return allocator.alternatives_of(cls.declaration, mode)

    @classmethod
    def conventions(cls) -> List[ConventionProbe]:
        """Probes of the framework's own batch-norm layer and momentum optimizer with their
        defaults, for ``bnbench conventions``. Runs in the framework's process; an adapter
        without a layer of its own to probe returns none."""
        return []

    @classmethod
    def missing_requirement(cls) -> Optional[str]:
        """Why the framework cannot be used here, without importing it (None when it is installed)."""
        for module in cls.requires:
            if importlib.util.find_spec(module) is None:
                install = f"its own environment: {cls.environment_hint()}" if cls.environment else cls.environment_hint()
                hint = f" ({install})" if install else ""
                return f"{module} is not installed in this environment{hint}"
        return None

    @classmethod
    def import_error(cls) -> Optional[str]:
        """Import the framework; None when it works, else why not (one line)."""
        missing = cls.missing_requirement()
        if missing:
            return missing
        for module in cls.requires:
            try:
                import_quietly(module)      # a framework's native start-up INFO lines dropped
            except Exception as error:  # a broken install must be a reason, not a crash
                first_line = (str(error).strip().splitlines() or [""])[0]
                return f"importing {module} failed: {type(error).__name__}: {first_line}"
        return None

    @classmethod
    def installed_version(cls) -> Optional[str]:
        """The framework's version from its package metadata, importing nothing; None when none of
        its distributions is installed here."""
        from importlib import metadata

        for distribution in cls.packages or cls.requires[:1]:
            try:
                return metadata.version(distribution)
            except metadata.PackageNotFoundError:
                continue
        return None

    @classmethod
    def version(cls) -> str:
        """The framework's version string (imports the framework)."""
        module = import_quietly(cls.requires[0]) if cls.requires else None
        return getattr(module, "__version__", "unknown")

    @classmethod
    def device_unavailable(cls, device: str) -> Optional[str]:
        """Why ``device`` cannot be used here, or None. The default knows only the CPU."""
        if device not in cls.devices:
            return f"{cls.name} has no device {device!r}; devices: {', '.join(cls.devices)}"
        if device != "cpu":
            return f"{cls.name} adapter does not implement device {device!r}"
        return None

    @classmethod
    def precision_unavailable(cls, precision: Optional[str], device: str) -> Optional[str]:
        """Why a float32 ``precision`` other than true float32 cannot run on ``device`` (None: it can)."""
        if precision is None:
            return None
        if precision not in PRECISIONS:
            return f"no precision {precision!r}; precisions: {', '.join(PRECISIONS)}"
        offered = cls.precisions.get(precision, ())
        if device not in offered:
            where = f"only on {', '.join(offered)}" if offered else "on no device"
            return (f"{cls.name} offers {precision} {where}, not on {device}"
                    + (" (TF32 is a tensor-core format of NVIDIA GPUs: a CPU's float32 matmul is true float32)"
                       if precision == "tf32" and device == "cpu" else ""))
        return None

    @classmethod
    def many_models(cls, specs: List[Spec], params: List[Mapping[str, np.ndarray]], device: str = "cpu"):
        """Many models of one shape trained at once (bnbench.adapters.many.ManyModels) on ``device``."""
        raise Unsupported(f"{cls.name} does not train many models in one vectorised program")

    @classmethod
    def matmul_step(cls, a: np.ndarray, b: np.ndarray, device: str) -> Tuple[str, Callable[[], Any]]:
        """(library and flags, step): ``step()`` computes a @ b with the framework's own matmul on
        ``device`` in their dtype, at full precision, waits for it and returns it, in the
        framework's own type (bnbench.timing.peak checks the first product against NumPy's). For a framework in
        ``peak_devices`` it is the peak; for the others, the ceiling of their own steps that a
        tuning log sets beside it (their step cannot run its matmuls faster than this)."""
        raise Unavailable(f"{cls.name} declares no matmul peak on {device!r}")

    @classmethod
    def unsupported(cls, spec: Spec, mode: str, device: str) -> Optional[str]:
        """Why ``spec`` cannot run in ``mode`` on ``device`` here (None: it can): a measured limit
        of the framework (``framework_cannot``)."""
        return cls.framework_cannot(spec, mode, device)

    @classmethod
    def framework_cannot(cls, spec: Spec, mode: str, device: str) -> Optional[str]:
        """A spec combination the framework cannot express, with the measured reason (None: none)."""
        return None

    @classmethod
    def known_departure(cls, spec: Spec, mode: str, device: str, m: int) -> Optional[str]:
        """A measured case where the framework runs the spec but misses the tolerance, and why
        (the tests expect that failure, strictly: they fail when it goes away). None: no known case."""
        return None

    @classmethod
    def check_variant(cls, mode: str, variant: Optional[str], *, environment: bool = True) -> None:
        """Unavailable unless ``variant`` is None or an alternative of ``mode`` whose variables
        (with ``environment``) this process was started with."""
        if variant is None:
            return
        alternatives = cls.alternatives_of(mode)
        if variant not in alternatives:
            raise Unavailable(f"{cls.name} ({mode}) has no alternative form {variant!r}; "
                              f"its alternatives: {', '.join(alternatives) or 'none'}")
        if environment:
            for key, value in alternatives[variant].variables:
                if os.environ.get(key) != value:
                    raise Unavailable(f"{cls.name} ({mode}+{variant}) runs only in a process started with {key}={value} "
                                      f"(bnbench compare and tunelog start its worker so)")

    @classmethod
    def check_combination(cls, spec: Spec, mode: str, device: str, precision: Optional[str] = None) -> None:
        """Raise Unavailable / Unsupported with the reason, before anything is built."""
        if mode not in cls.modes:
            raise Unavailable(f"{cls.name} has no mode {mode!r}; modes: {', '.join(cls.modes)}")
        if device not in cls.devices:
            raise Unavailable(f"{cls.name} has no device {device!r}; devices: {', '.join(cls.devices)}")
        problem = cls.import_error()
        if problem:
            raise Unavailable(problem)
        problem = cls.device_unavailable(device)
        if problem:
            raise Unavailable(f"device {device!r} unavailable for {cls.name}: {problem}")
        problem = cls.precision_unavailable(precision, device)
        if problem:
            raise Unavailable(problem)
        problem = cls.unsupported(spec, mode, device)
        if problem:
            raise Unsupported(f"unsupported by {cls.name} ({mode}, {device}): {problem}")

    @classmethod
    def set_threads(cls, n_threads: int) -> int:
        """Pin the framework's compute threads (and BLAS's) to ``n_threads``; returns what it uses."""
        _limit_blas_threads(n_threads)
        return n_threads

    @classmethod
    def has_profiler(cls) -> bool:
        """Whether the adapter asks its framework's own profiler (it implements ``profile_steps``)."""
        return cls.profile_steps.__func__ is not Adapter.profile_steps.__func__

    # ------------------------------------------------------------------ instances
    def __init__(self, spec: Spec, params: Mapping[str, np.ndarray], *, mode: Optional[str] = None, device: str = "cpu",
                 variant: Optional[str] = None, precision: Optional[str] = None):
        mode = self.modes[0] if mode is None else mode
        self.check_combination(spec, mode, device, precision)
        self.check_variant(mode, variant)
        self.spec = spec
        self.mode = mode
        self.device = device
        self.variant = variant      # None: the kept form; else an alternative of alternatives_of(mode)
        self.precision = precision  # None: the dtype's own (float32 means true float32); "tf32" where offered
        if "malloc-reuse" in self.allocator_parts() and variant not in ("malloc-default", "no-malloc-reuse"):
            problem = allocator.reuse_freed_memory()
            if problem:
                import warnings

                warnings.warn(f"{self.name}: its kept form keeps freed memory for reuse, not here: {problem}", stacklevel=2)
        self._build(check_parameters(spec, params))

    @abc.abstractmethod
    def _build(self, params: Dict[str, np.ndarray]) -> None:
        """Load the spec's arrays (names of SPEC.md) into the framework's own objects."""

    @abc.abstractmethod
    def train_step(self, X: np.ndarray, y: np.ndarray) -> float:
        """One training step (forward, backward, running statistics, update); returns the loss."""

    @abc.abstractmethod
    def gradients(self, X: np.ndarray, y: np.ndarray) -> Gradients:
        """Loss, training-mode probabilities and gradients of one batch; changes nothing."""

    @abc.abstractmethod
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Inference-mode softmax probabilities (running statistics); changes nothing."""

    @abc.abstractmethod
    def state(self) -> Dict[str, np.ndarray]:
        """Every parameter and running statistic, by SPEC.md name, as NumPy arrays."""

    # Timing support: the timing tools put data on the device once and then time steps on it.
    def to_device(self, X: np.ndarray, y: Optional[np.ndarray] = None):
        """Batch arrays in the form ``train_step_prepared`` / ``predict_prepared`` take."""
        X, y = check_batch(self.spec, X, y, training=y is not None)
        return X, y

    def train_step_prepared(self, batch) -> float:
        """One training step on a prepared batch; its loss read back (the step is done)."""
        return self.train_step(*batch)

    def train_step_queued(self, batch) -> None:
        """One training step on a prepared batch, queued on the device, its loss left there (a
        device with asynchronous dispatch overrides it; elsewhere the step is done when it returns)."""
        self.train_step_prepared(batch)

    def predict_prepared(self, batch) -> None:
        """Inference on a prepared batch, synchronised, result left on the device."""
        self.predict_proba(batch[0])

    def sync(self) -> None:
        """Wait until all queued device work is done (the clock stops after this)."""

    def device_memory(self, reset: bool = False) -> Optional[int]:
        """On a device with its own allocator: its peak bytes since the last reset (``reset``: start
        a new peak, and return what is allocated now). None where the host's memory is the measure."""
        return None

    # Profiling: where a step's time goes, by the framework's own profiler (the tuning logs).
    def profile(self, X: np.ndarray, y: np.ndarray, steps: int) -> Dict[str, object]:
        """``steps`` training steps on one batch timed first as they run, then under the
        framework's own profiler, by kernel (bnbench.adapters.profiling). Unavailable where the
        adapter has no profiler to ask."""
        return profiling.profile(self, X, y, steps, self.profile_steps)

    @classmethod
    def profile_steps(cls, adapter: "Adapter", batch, steps: int) -> Tuple[str, float, Dict[str, Tuple]]:
        """The hook of ``profile``: ``steps`` steps of ``adapter`` on its prepared ``batch``
        (``profiling.seconds_per_step``) under this framework's profiler; the profiler's name,
        the seconds per profiled step and its kernels' tally (``profiling.add_kernel_time``, each
        kernel's kind named by the hook). An adapter built on another framework, as Keras on its
        backend, borrows the backend's hook."""
        raise Unavailable(f"the {cls.name} adapter has no profiler hook")

    # ------------------------------------------------------------------ helpers
    def _check(self, X: np.ndarray, y: Optional[np.ndarray] = None, *, training: bool = True):
        return check_batch(self.spec, X, y, training=training)

    def _ordered_state(self, arrays: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        return {name: np.asarray(arrays[name]) for name in state_names(self.spec)}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} mode={self.mode} device={self.device} dtype={self.spec.dtype}>"
