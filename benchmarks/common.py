"""Shared set-up of the asv suite: parameters, seeded cached data, verified adapters.

Nothing here imports a framework at module level (asv discovers the suite in one environment).
Every timed adapter is first checked against the NumPy reference on the very spec and batch it
is timed on, in the same process and environment; a combination that fails is skipped
(NotImplementedError), so no unverified timing is ever recorded.

Environment variables (set by `make bench`, read at benchmark time):
  BNBENCH_ENV      the framework group this asv environment exists for (asv.conf.json)
  BNBENCH_GRID     "quick" (default, what a bare `asv run` times): each framework's best mode, tiny +
                   medium, float32, every device;
                   "full": everything (`make bench GRID=full`)
  BNBENCH_THREADS  compute threads for every framework (default 2)
  BNBENCH_SIZES, BNBENCH_DTYPES, BNBENCH_MODES  comma lists narrowing the grid (e.g. "medium,large";
                   BNBENCH_MODES=best: each framework's best mode)
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from bnbench.adapters import local_class, names
from bnbench.frameworks import get
from bnbench.flops import step_flops
from bnbench.reference import Spec, initial_parameters
from bnbench.reference.data import batch_stack, load_digits, minibatches
from bnbench.workload import SIZES, VERIFY_STEPS, spec_for, timing_batches  # noqa: F401 (the suite's sizes)
from bnbench.trace import check_equivalence

QUICK_SIZES = ("tiny", "medium")
IMPLS: List[str] = [f"{name}:{mode}" for name in names() for mode in get(name).modes]
DEVICES = ["cpu", "cuda"]
DTYPES = ["float32", "float64"]
DIGITS_HIDDEN = (64, 64)
DIGITS_BATCH = 64
ACCURACY_EPOCHS = 8

# From the frameworks' declarations (as asv.conf.json is): each framework timed by asv has an
# environment group of its own (BNBENCH_ENV); the others cannot be built by asv (Chainer's sdist
# needs --no-build-isolation, Lasagne Python 3.9, Caffe a Debian 11 chroot) and are timed by their
# own worker process, reported as track_ values.
_RUNNABLE = [local_class(name) for name in names() if local_class(name).modes]
ENV_FRAMEWORKS = {adapter.name: {adapter.name} for adapter in _RUNNABLE if adapter.timed_by == "asv"}
WORKER_TIMED = tuple(adapter.name for adapter in _RUNNABLE if adapter.timed_by == "worker")


def threads() -> int:
    value = os.environ.get("BNBENCH_THREADS", "2")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"BNBENCH_THREADS={value!r} must be a positive integer")
    return int(value)


def grid() -> str:
    value = os.environ.get("BNBENCH_GRID", "quick")
    if value not in ("quick", "full"):
        raise ValueError(f"BNBENCH_GRID={value!r} must be 'quick' or 'full'")
    return value


def _narrowed(variable: str) -> Optional[List[str]]:
    """BNBENCH_SIZES / BNBENCH_DTYPES: comma lists that narrow the grid (unset: no narrowing)."""
    value = os.environ.get(variable, "").strip()
    return [item.strip() for item in value.split(",") if item.strip()] or None


def skip_reason(impl: str, device: str, dtype: str, size: Optional[str]) -> Optional[str]:
    """Why this combination is not run here (cheap checks first; imports the framework last)."""
    framework, mode = impl.split(":")
    sizes, dtypes, modes = _narrowed("BNBENCH_SIZES"), _narrowed("BNBENCH_DTYPES"), _narrowed("BNBENCH_MODES")
    if modes is not None and mode not in modes and not ("best" in modes and mode == get(framework).best_mode):
        return f"BNBENCH_MODES={','.join(modes)}: mode {mode} not requested"
    if size is not None and sizes is not None and size not in sizes:
        return f"BNBENCH_SIZES={','.join(sizes)}: size {size} not requested"
    if dtypes is not None and dtype not in dtypes:
        return f"BNBENCH_DTYPES={','.join(dtypes)}: {dtype} not requested"
    group = os.environ.get("BNBENCH_ENV")
    if group is not None and framework not in ENV_FRAMEWORKS.get(group, {group}):
        return f"{framework} is benchmarked in its own environment, not in {group!r}"
    adapter = get(framework)
    if grid() == "quick":
        if mode != adapter.best_mode:
            return f"quick grid: {framework} runs only its best mode {adapter.best_mode!r}"
        if dtype != "float32":
            return "quick grid: float32 only"
        if size is not None and size not in QUICK_SIZES:
            return f"quick grid: sizes {', '.join(QUICK_SIZES)} only"
    if device == "cuda":
        problem = no_nvidia_driver()
        if problem:
            return problem
    problem = adapter.import_error() or adapter.device_unavailable(device)
    if problem:
        return problem
    return None


def no_nvidia_driver() -> Optional[str]:
    """Why no framework can see a CUDA GPU on this machine, decided without importing one (each
    cuda combination is a process of its own: importing the slowest framework only to learn that there is no
    GPU cost 5-8 s per process, measured). Every CUDA build reaches the GPU through the NVIDIA
    kernel driver, which publishes /proc/driver/nvidia and /dev/nvidiactl on Linux. None: a driver
    is there (or not Linux), so the framework itself is asked."""
    if not sys.platform.startswith("linux") or os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidiactl"):
        return None
    return "no NVIDIA GPU on this machine (no NVIDIA driver: neither /proc/driver/nvidia nor /dev/nvidiactl exists)"


@dataclasses.dataclass
class Prepared:
    adapter: object
    spec: Spec
    batch: tuple
    inference_batch: tuple
    first_step_seconds: float
    threads: int
    m: int


_CACHE: Dict[Tuple, Prepared] = {}
_MATMUL_OPERANDS: Dict[Tuple, tuple] = {}


def require_supported(adapter_class, spec: Spec, mode: str, device: str) -> None:
    """A spec the framework cannot express is a skip with its reason (never a different model)."""
    reason = adapter_class.unsupported(spec, mode, device)
    if reason:
        raise NotImplementedError(f"unsupported by {adapter_class.name} ({mode}): {reason}")


def runnable(impl: str, device: str, dtype: str, size: Optional[str], spec: Spec):
    """The adapter class and mode of ``impl`` with threads pinned, or NotImplementedError (a skip)."""
    reason = skip_reason(impl, device, dtype, size)
    if reason:
        raise NotImplementedError(reason)
    framework, mode = impl.split(":")
    adapter_class = get(framework)
    require_supported(adapter_class, spec, mode, device)
    return adapter_class, mode, adapter_class.set_threads(threads())


def _verify(adapter_class, spec, params, X, y, mode, device) -> None:
    report = check_equivalence(adapter_class(spec, params, mode=mode, device=device), spec, params, X, y)
    if not report.ok:
        raise NotImplementedError("not verified against the reference, not timed: " + report.message(limit=2))


def prepare(impl: str, device: str, dtype: str, size: str) -> Prepared:
    """Build (once per process), time the first step, verify, warm up. Raises NotImplementedError to skip."""
    key = (impl, device, dtype, size)
    if key in _CACHE:
        return _CACHE[key]
    spec = spec_for(size, dtype)
    adapter_class, mode, used_threads = runnable(impl, device, dtype, size, spec)
    m = SIZES[size]["m"]
    params = initial_parameters(spec)
    X, y = timing_batches(spec, m)

    adapter = adapter_class(spec, params, mode=mode, device=device)
    batch = adapter.to_device(X[0], y[0])
    inference_batch = adapter.to_device(X[1])
    start = time.perf_counter()
    adapter.train_step_prepared(batch)       # includes compilation / tracing: reported on its own
    first = time.perf_counter() - start
    _verify(adapter_class, spec, params, X, y, mode, device)
    for _ in range(3):                       # steady state from here
        adapter.train_step_prepared(batch)
    adapter.predict_prepared(inference_batch)
    adapter.predict_prepared(inference_batch)
    _CACHE[key] = Prepared(adapter, spec, batch, inference_batch, first, used_threads, m)
    return _CACHE[key]


def median_step_seconds(prepared: Prepared, min_seconds: float = 1.0, min_steps: int = 10) -> float:
    """Median of individually timed steps (for the derived track_* values)."""
    times = []
    total = 0.0
    while len(times) < min_steps or total < min_seconds:
        start = time.perf_counter()
        prepared.adapter.train_step_prepared(prepared.batch)
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        total += elapsed
        if len(times) >= 1000:
            break
    return float(np.median(times))


def matmul_gflops(dtype: str, repeats: int = 2, n: int = 2048) -> float:
    """The machine's matmul peak for ``dtype``, measured now in this process: the best of
    ``repeats`` n^3 NumPy matmuls (its BLAS, the same pinned threads)."""
    if (dtype, n) not in _MATMUL_OPERANDS:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((n, n)).astype(dtype)
        b = rng.standard_normal((n, n)).astype(dtype)
        a @ b
        _MATMUL_OPERANDS[(dtype, n)] = a, b
    a, b = _MATMUL_OPERANDS[(dtype, n)]
    return 2 * n ** 3 / min(_timed(lambda: a @ b) for _ in range(repeats)) / 1e9


PEAK_ROUNDS = 7


def fraction_of_peak(prepared: Prepared) -> float:
    """GFLOP/s of a step over the machine's matmul peak, measured in pairs: a few steps, then the
    matmul, PEAK_ROUNDS times; the median of the ratios. These machines alternate fast and slow
    phases of seconds, so a step median and a peak measured one after the other can fall in
    different phases: one process (PyTorch compiled, medium) read 0.94 that way, where four paired
    repeats in one process gave 0.56-0.64 (and unpaired ones 0.50-0.74)."""
    flops = step_flops(prepared.spec, prepared.m)
    ratios = []
    for _ in range(PEAK_ROUNDS):
        seconds = median_step_seconds(prepared, min_seconds=0.25, min_steps=3)
        ratios.append(flops / seconds / 1e9 / matmul_gflops(prepared.spec.dtype))
    return float(np.median(ratios))


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


@dataclasses.dataclass
class PreparedDigits:
    adapter: object
    batches: list
    test: tuple
    spec: Spec


_DIGITS: Dict[Tuple, PreparedDigits] = {}


def digits_spec(dtype: str) -> Spec:
    # Momentum rather than Adam: Adam's step g / (sqrt(g^2) + 1e-8) turns the float32 rounding of
    # near-zero gradients (nearly blank pixels) into whole +-learning_rate steps, so float32
    # frameworks cannot agree with each other there to 1e-4 however correct they are.
    return Spec(n_features=64, hidden=DIGITS_HIDDEN, n_classes=10, dtype=dtype, optimizer="momentum", learning_rate=0.1)


def prepare_digits(impl: str, device: str, dtype: str) -> PreparedDigits:
    key = (impl, device, dtype)
    if key in _DIGITS:
        return _DIGITS[key]
    spec = digits_spec(dtype)
    adapter_class, mode, _ = runnable(impl, device, dtype, None, spec)
    data = load_digits(dtype)
    params = initial_parameters(spec)
    X, y = batch_stack(data.train, DIGITS_BATCH, VERIFY_STEPS, seed=0)
    _verify(adapter_class, spec, params, X, y, mode, device)
    adapter = adapter_class(spec, params, mode=mode, device=device)
    batches = [adapter.to_device(Xb, yb) for Xb, yb in minibatches(data.train, DIGITS_BATCH, seed=0)]
    adapter.train_step_prepared(batches[0])
    _DIGITS[key] = PreparedDigits(adapter, batches, (data.test.X, data.test.y), spec)
    return _DIGITS[key]
