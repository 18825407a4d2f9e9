"""The adapter contract: the one interface every framework implements.

An adapter module never imports its framework at module level (the suite must import without any
framework installed); the framework is imported inside the class, the first time it is needed.
Parameters and data arrive as NumPy arrays produced by the reference side; an adapter never
initialises a weight of its own.
"""
from __future__ import annotations

import abc
import ctypes
import dataclasses
import importlib
import importlib.util
import os
from typing import Callable, ClassVar, Dict, List, Mapping, Optional, Tuple

import numpy as np

from bnbench.reference.model import check_batch
from bnbench.reference.spec import Spec, check_parameters, state_names

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


# A profile's kernels whose names say they are matrix products (BLAS and its wrappers); the rest
# are the framework's other kernels (elementwise, reductions, copies, its optimizer's update).
PRODUCT_KERNELS = frozenset({
    "gemm", "gemv", "cgemv", "dot", "dot22", "dot22scalar",                       # PyTensor, Theano
    "aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear",  # torch
    "linearfunction", "matmul",                                                   # Chainer
    "np.matmul",                                                                  # NumPy
    "matmul_grad",                                                                # Paddle
})


def xla_products(hlo_text: str) -> set:
    """The instructions of a compiled XLA module that are, or fuse, a matrix product: a dot, or
    one whose metadata names JAX's dot_general or TensorFlow's MatMul."""
    import re

    products = set()
    for name, line in re.findall(r"^\s*(?:ROOT )?%(\S+) = ([^\n]*)$", hlo_text, re.M):
        if re.search(r"\bdot\(", line) or "dot_general" in line or re.search(r'op_type="(Batch)?MatMul', line):
            products.add(name)
    return products


def profile_report(profiler: str, steps: int, unprofiled_seconds: float, profiled_seconds: float,
                   kernels: Mapping[str, Tuple], *, top: int = 12) -> Dict[str, object]:
    """A profile as the tuning logs keep it. ``kernels``: name -> (calls, seconds) over the
    ``steps`` profiled steps (self time: a kernel's children are not in it), or (calls, seconds,
    kind) where the profiler knows the kind better than the name does. Per step: the step's
    time without and with the profiler, the products', the other kernels' and what lies outside
    every kernel (the framework's dispatch and the adapter's Python), and the ``top`` kernels."""
    def kind(name: str) -> str:
        return "product" if name.lower().split("{")[0].split(" ")[0] in PRODUCT_KERNELS else "other"

    rows = sorted(({"kernel": name, "kind": value[2] if len(value) > 2 else kind(name), "calls": value[0] / steps,
                    "ms": 1e3 * value[1] / steps} for name, value in kernels.items()), key=lambda row: -row["ms"])
    products = sum(row["ms"] for row in rows if row["kind"] == "product")
    others = sum(row["ms"] for row in rows if row["kind"] == "other")
    profiled_ms = 1e3 * profiled_seconds
    return {"profiler": profiler, "steps": steps, "step_ms": 1e3 * unprofiled_seconds, "profiled_step_ms": profiled_ms,
            "products_ms": products, "other_kernels_ms": others,
            "outside_kernels_ms": max(0.0, profiled_ms - products - others),
            "kernels": rows[:top], "kernels_left_out": max(0, len(rows) - top)}


def add_kernel_time(kernels: Dict[str, Tuple], name: str, seconds: float, *, calls: int = 1,
                    kind: Optional[str] = None) -> None:
    """Add ``calls`` of a kernel and their self ``seconds`` to a profile's tally (the ``kernels``
    of ``profile_report``), with its kind where the profiler knows it better than the name does."""
    held_calls, held_seconds = kernels.get(name, (0, 0.0))[:2]
    kernels[name] = (held_calls + calls, held_seconds + seconds) + ((kind,) if kind else ())


@dataclasses.dataclass(frozen=True)
class Alternative:
    """Another form of a mode, timed against the kept form in the framework's tuning log
    (``bnbench tunelog``) and published there, never in the grid: what it changes, and the
    environment variables its worker process starts with where that is how the change is made
    (allocator tunables, framework flags read when the framework is imported). A change made in
    code is read by the adapter from ``self.variant``."""

    what: str
    variables: Tuple[Tuple[str, str], ...] = ()


# What each allocator setting of a kept form is, as its published flags say it (tuning_of).
ALLOCATOR_FLAGS: Dict[str, str] = {
    "malloc-reuse": "glibc mallopt keeps freed memory for reuse (M_MMAP_THRESHOLD 1 GiB, M_TRIM_THRESHOLD 2 GiB)",
    "hugepages": "glibc malloc with transparent huge pages (GLIBC_TUNABLES glibc.malloc.hugetlb=1)",
}

# Alternatives every mode of every framework is tried with: how glibc's allocator treats the
# large temporaries of a step. With its defaults, a block over its mmap threshold is mapped
# afresh and page-faulted on every step (measured: the NumPy step at large spent about a fifth
# of its time so).
ALLOCATOR_ALTERNATIVES: Dict[str, Alternative] = {
    "malloc-reuse": Alternative(
        "glibc malloc keeps freed memory for reuse instead of unmapping it "
        "(GLIBC_TUNABLES mmap_threshold 1 GiB, trim_threshold 2 GiB)",
        (("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=2147483647"),)),
    "hugepages": Alternative(
        "glibc malloc asks for transparent huge pages (GLIBC_TUNABLES glibc.malloc.hugetlb=1): "
        "a 2 MiB page fault where there were 512 of 4 KiB",
        (("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1"),)),
}


_MALLOPT = {"M_TRIM_THRESHOLD": -1, "M_MMAP_THRESHOLD": -3}   # glibc's malloc.h
_REUSE_SETTINGS = {"M_MMAP_THRESHOLD": 1 << 30, "M_TRIM_THRESHOLD": (1 << 31) - 1}   # the same as "malloc-reuse"'s


def reuse_freed_memory() -> Optional[str]:
    """What "malloc-reuse" does, from inside the process (glibc's mallopt), for a kept form that
    takes it (``Adapter.allocator``): None when applied, else why not (not glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as error:
        return f"no glibc mallopt here ({error})"
    for name, value in _REUSE_SETTINGS.items():
        if not mallopt(_MALLOPT[name], value):
            return f"mallopt({name}, {value}) refused"
    return None


MALLOC_DEFAULT = {   # the allocator's defaults, the alternative to a kept form that changes them
    "malloc-reuse": Alternative("glibc malloc with its defaults (large blocks mapped afresh, freed memory given back), "
                                "instead of the kept form's mallopt"),
    "hugepages": Alternative("glibc malloc with its defaults (4 KiB pages), instead of the kept form's huge pages "
                             "(GLIBC_TUNABLES empty)", (("GLIBC_TUNABLES", ""),)),
}


# The spec fields that may differ between the models a ManyModels trains together; every other
# field (the network's shape, the optimizer, l2, epsilons, the dtype) is one for all of them.
PER_MODEL_FIELDS = ("learning_rate", "beta1", "beta2", "bn_momentum", "seed")


class ManyModels(abc.ABC):
    """Many models trained at once in one vectorised program (the lecture's "caviar"): model i
    has its own spec (its ``PER_MODEL_FIELDS``) and initial parameters, and sees the same batches
    it would see alone, so each ends where it would end trained by itself."""

    def __init__(self, specs: List[Spec], params: List[Mapping[str, np.ndarray]]):
        if not specs or len(specs) != len(params):
            raise ValueError(f"ManyModels needs one parameter set per spec, got {len(specs)} specs and {len(params)} sets")
        shared = {key: value for key, value in specs[0].to_dict().items() if key not in PER_MODEL_FIELDS}
        for index, spec in enumerate(specs[1:], start=1):
            for key, value in spec.to_dict().items():
                if key in shared and shared[key] != value:
                    raise Unsupported(f"models trained together share every spec field but {', '.join(PER_MODEL_FIELDS)}: "
                                      f"spec {index} has {key}={value!r}, spec 0 has {shared[key]!r}")
        self.specs = list(specs)
        self.spec = specs[0]
        self.params = [check_parameters(spec, p) for spec, p in zip(specs, params)]

    def per_model(self, field: str) -> np.ndarray:
        """A per-model hyperparameter as an array of the spec's dtype, one value per model."""
        return np.array([getattr(spec, field) for spec in self.specs], dtype=self.spec.np_dtype)

    @abc.abstractmethod
    def train_step(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """One training step of every model on the same batch; their losses (k,)."""

    @abc.abstractmethod
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Inference-mode probabilities of every model, (k, m, n_classes)."""


class Adapter(abc.ABC):
    """One framework's implementation of the spec.

    Subclasses declare ``name``, ``modes``, ``devices`` and ``requires`` (modules that must be
    importable) and implement ``_build``, ``train_step``, ``gradients``, ``predict_proba``,
    ``state``. ``tuning`` says, per mode, which framework flags the mode turns on, so that a
    results table can publish them.
    """

    name: ClassVar[str]
    modes: ClassVar[Tuple[str, ...]]
    devices: ClassVar[Tuple[str, ...]] = ("cpu",)
    requires: ClassVar[Tuple[str, ...]] = ()
    # Distributions whose installed version names the framework, read from package metadata
    # without importing it (empty: the module names in ``requires``).
    packages: ClassVar[Tuple[str, ...]] = ()
    best_mode: ClassVar[str] = ""      # the mode the quick benchmark grid times (its fastest form)
    tuning: ClassVar[Dict[str, str]] = {}
    # {mode: {name: Alternative}}: the framework's own alternatives to a mode's kept form, tried in
    # its tuning log beside the other modes and ALLOCATOR_ALTERNATIVES (see ``alternatives_of``).
    alternatives: ClassVar[Dict[str, Dict[str, Alternative]]] = {}
    # The kept form's allocator, where its tuning log measured that another wins: "malloc-reuse"
    # (reuse_freed_memory() when the adapter is built), "hugepages" (its processes start with
    # that alternative's variables: compare's workers, its asv environment), or both,
    # "malloc-reuse+hugepages". "malloc-default" (the allocator's defaults) is then the alternative
    # in its place, and with both, "no-malloc-reuse" and "no-hugepages" drop one of them.
    allocator: ClassVar[str] = "default"
    description: ClassVar[str] = ""
    # maintained or retired, by whom, with the evidence (a release date, a stated end of development)
    status: ClassVar[str] = ""

    # ---- the framework's one declaration of how it is installed and timed. The registry, the
    # Makefile's environments, asv.conf.json, pyproject's extras, the test list and the frameworks
    # table derive from it (bnbench.catalogue, `make generate`).
    requirements: ClassVar[Tuple[str, ...]] = ()   # pip requirements, with their pins
    python: ClassVar[str] = "3.11"                 # the Python of its environment
    # None: the shared main environment (a pyproject extra named after the framework); else the
    # name of its own venv under environments_dir(), reached through a worker process.
    environment: ClassVar[Optional[str]] = None
    install_then: ClassVar[Tuple[str, ...]] = ()   # a second pip step in its own venv (after requirements)
    setup_script: ClassVar[str] = ""               # its own environment made by this script instead of pip
    # Debian packages its kept form links to where they are installed (`make env` installs them on
    # a root Debian machine; elsewhere the adapter falls back and its flags say so).
    system_packages: ClassVar[Tuple[str, ...]] = ()
    asv_variables: ClassVar[Tuple[Tuple[str, str], ...]] = ()   # set in its asv environment at benchmark time
    timed_by: ClassVar[str] = "asv"                # "asv": an asv environment; "worker": its own worker (asv cannot build it)
    tested_in_environment: ClassVar[bool] = False  # `make test` also runs the reference tests inside its own venv
    without_batch_norm: ClassVar[bool] = False    # implements spec.batch_norm = False (plain hidden layers)
    trains_many: ClassVar[bool] = False            # implements many_models() (tuning's "caviar" style)
    # Devices on which this framework's plain matmul is the peak that fractions of peak divide by
    # (bnbench.peak takes the first framework that declares the device).
    peak_devices: ClassVar[Tuple[str, ...]] = ()

    @classmethod
    def environment_hint(cls) -> str:
        """How to make the framework's environment, derived from the declaration."""
        if cls.environment is None:
            return f"pip install 'bnbench[{cls.name}]' ({', '.join(cls.requirements)})" if cls.requirements else ""
        how = cls.setup_script or ", ".join(cls.requirements + cls.install_then)
        return f"`make env-{cls.environment}` (Python {cls.python}: {how})"

    # ------------------------------------------------------------------ class-level facts
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
        """The published flags of ``mode``'s kept form: its ``tuning`` entry, its allocator's
        settings (``allocator``), and what this machine decides of it (an adapter whose kept form
        links a system library says which)."""
        flags = [cls.tuning.get(mode, "")] + [ALLOCATOR_FLAGS[part] for part in cls.allocator_parts()]
        return "; ".join(flag for flag in flags if flag)

    @classmethod
    def allocator_variables(cls) -> Tuple[Tuple[str, str], ...]:
        """The kept form's allocator, where it is set from the environment (``allocator``)."""
        return ALLOCATOR_ALTERNATIVES["hugepages"].variables if "hugepages" in cls.allocator_parts() else ()

    @classmethod
    def allocator_parts(cls) -> Tuple[str, ...]:
        """The allocator settings the kept form takes (``allocator``, split on '+')."""
        return () if cls.allocator == "default" else tuple(cls.allocator.split("+"))

    @classmethod
    def process_variables(cls) -> Tuple[Tuple[str, str], ...]:
        """What a process timing this framework starts with: its worker variables and its allocator's."""
        return tuple(cls.worker_variables()) + tuple(cls.allocator_variables())

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
                importlib.import_module(module)
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
        module = importlib.import_module(cls.requires[0]) if cls.requires else None
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
    def many_models(cls, specs: List[Spec], params: List[Mapping[str, np.ndarray]]) -> ManyModels:
        """Many models of one shape trained at once (see ManyModels), on the CPU."""
        raise Unsupported(f"{cls.name} does not train many models in one vectorised program")

    @classmethod
    def matmul_step(cls, a: np.ndarray, b: np.ndarray, device: str) -> Tuple[str, Callable[[], None]]:
        """(library and flags, step): ``step()`` computes a @ b with the framework's own matmul on
        ``device`` in their dtype, at full precision, and waits for it. For a framework in
        ``peak_devices`` it is the peak; for the others, the ceiling of their own steps that a
        tuning log sets beside it (their step cannot run its matmuls faster than this)."""
        raise Unavailable(f"{cls.name} declares no matmul peak on {device!r}")

    @classmethod
    def unsupported(cls, spec: Spec, mode: str, device: str) -> Optional[str]:
        """Why ``spec`` cannot run in ``mode`` on ``device`` here (None: it can): a spec field this
        adapter does not implement, or a measured limit of the framework (``framework_cannot``)."""
        if not spec.batch_norm and not cls.without_batch_norm:
            return (f"batch_norm=false (hidden layers without batch norm) is not implemented in the {cls.name} "
                    f"adapter yet (an adapter that implements it declares without_batch_norm)")
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
    def alternatives_of(cls, mode: str) -> Dict[str, Alternative]:
        """Every alternative form of ``mode`` its tuning log tries: the framework's own, then the
        allocator's (unless the framework names one of those itself, for its kept form)."""
        own = dict(cls.alternatives.get(mode, {}))
        parts = cls.allocator_parts()
        allocator = {name: alt for name, alt in ALLOCATOR_ALTERNATIVES.items() if name not in parts}
        if parts:
            defaults = [MALLOC_DEFAULT[part] for part in parts]
            allocator["malloc-default"] = Alternative("; ".join(d.what for d in defaults),
                                                      tuple(v for d in defaults for v in d.variables))
        if len(parts) > 1:
            allocator.update({f"no-{part}": MALLOC_DEFAULT[part] for part in parts})
        return {**own, **{name: alt for name, alt in allocator.items() if name not in own}}

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
    def check_combination(cls, spec: Spec, mode: str, device: str) -> None:
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
        problem = cls.unsupported(spec, mode, device)
        if problem:
            raise Unsupported(f"unsupported by {cls.name} ({mode}, {device}): {problem}")

    @classmethod
    def set_threads(cls, n_threads: int) -> int:
        """Pin the framework's compute threads (and BLAS's) to ``n_threads``; returns what it uses."""
        _limit_blas_threads(n_threads)
        return n_threads

    # ------------------------------------------------------------------ instances
    def __init__(self, spec: Spec, params: Mapping[str, np.ndarray], *, mode: Optional[str] = None, device: str = "cpu",
                 variant: Optional[str] = None):
        mode = self.modes[0] if mode is None else mode
        self.check_combination(spec, mode, device)
        self.check_variant(mode, variant)
        self.spec = spec
        self.mode = mode
        self.device = device
        self.variant = variant      # None: the kept form; else an alternative of alternatives_of(mode)
        if "malloc-reuse" in self.allocator_parts() and variant not in ("malloc-default", "no-malloc-reuse"):
            problem = reuse_freed_memory()
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

    # Timing support: the benchmarks put data on the device once and then time steps on it.
    def to_device(self, X: np.ndarray, y: Optional[np.ndarray] = None):
        """Batch arrays in the form ``train_step_prepared`` / ``predict_prepared`` take."""
        X, y = check_batch(self.spec, X, y, training=y is not None)
        return X, y

    def train_step_prepared(self, batch) -> float:
        return self.train_step(*batch)

    def predict_prepared(self, batch) -> None:
        """Inference on a prepared batch, synchronised, result left on the device."""
        self.predict_proba(batch[0])

    def sync(self) -> None:
        """Wait until all queued device work is done (the clock stops after this)."""

    # Profiling: where a step's time goes, by the framework's own profiler (the tuning logs).
    def profile(self, X: np.ndarray, y: np.ndarray, steps: int) -> Dict[str, object]:
        """``steps`` training steps on one batch timed first as they run, then under the
        framework's own profiler, by kernel (``profile_report``). Unavailable where the adapter
        has no profiler to ask."""
        batch = self.to_device(X, y)
        unprofiled = self._unprofiled_seconds(batch, steps)
        profiler, profiled, kernels = self.profile_steps(self, batch, steps)
        return profile_report(profiler, steps, unprofiled, profiled, kernels)

    @classmethod
    def profile_steps(cls, adapter: "Adapter", batch, steps: int) -> Tuple[str, float, Dict[str, Tuple]]:
        """The hook of ``profile``: ``steps`` steps of ``adapter`` on its prepared ``batch``
        (``_seconds_per_step``) under this framework's profiler; the profiler's name, the seconds
        per profiled step and its kernels' tally (``add_kernel_time``). ``adapter``'s steps run
        this framework's ops: an adapter built on another framework, as Keras on its backend,
        borrows the backend's hook."""
        raise Unavailable(f"the {cls.name} adapter has no profiler hook")

    def _unprofiled_seconds(self, batch, steps: int) -> float:
        """Seconds per training step on a prepared batch, two steps of warm-up first."""
        for _ in range(2):
            self.train_step_prepared(batch)
        self.sync()
        return self._seconds_per_step(batch, steps)

    def _seconds_per_step(self, batch, steps: int) -> float:
        """``steps`` training steps on a prepared batch, synchronised: seconds per step (a
        profile hook runs it under its profiler)."""
        import time

        started = time.perf_counter()
        for _ in range(steps):
            self.train_step_prepared(batch)
        self.sync()
        return (time.perf_counter() - started) / steps

    # ------------------------------------------------------------------ helpers
    def _check(self, X: np.ndarray, y: Optional[np.ndarray] = None, *, training: bool = True):
        return check_batch(self.spec, X, y, training=training)

    def _ordered_state(self, arrays: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        return {name: np.asarray(arrays[name]) for name in state_names(self.spec)}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} mode={self.mode} device={self.device} dtype={self.spec.dtype}>"
