"""Shared set-up of the asv suite: its parameters and the participants it times, which it gets
from the suite's one timing path (bnbench.timing.participant: build, verify against the
reference on the very spec and batch timed, warm up, time). A combination that cannot run or
fails its check is a skip with the reason (NotImplementedError), so no unverified timing is ever
recorded.

A framework of this process's environment is timed by asv's own timer on the participant's
synchronised step (``TrainStep.time_train_step``); one that runs in a worker process (its own
environment, or a Keras backend other than this process's) is timed by the same bursts as
``bnbench compare``, inside its worker, and recorded as ``WorkerStep.track_worker_step_seconds``.

Nothing here imports a framework at module level (asv discovers the suite in one environment).

Environment variables (set by `make bench`, read at benchmark time):
  BNBENCH_ENV      the framework group of an asv-built environment (asv.conf.json); unset in the
                   environments `make test` builds (``asv run -E existing:...``), where every
                   framework runs, in this process or in its worker
  BNBENCH_GRID     "quick" (default, what a bare `asv run` times): each framework's best mode, tiny +
                   medium, float32, every device; "full": everything (`make bench GRID=full`)
  BNBENCH_THREADS  compute threads for every framework (default 2)
  BNBENCH_SIZES, BNBENCH_DTYPES, BNBENCH_MODES  comma lists narrowing the grid (e.g. "medium,large";
                   BNBENCH_MODES=best: each framework's best mode)
"""
from __future__ import annotations

import os
import sys
from typing import Dict, List, Optional, Tuple

import numpy as np

from bnbench.adapters import AdapterError, local_class, names
from bnbench.reference import Spec, initial_parameters
from bnbench.reference.data import batch_stack, load_digits, minibatches
from bnbench.timing import participant as participants
from bnbench.timing import stats
from bnbench.timing.flops import step_flops
from bnbench.timing.form import Form
from bnbench.timing.frameworks import get
from bnbench.timing.peak import fraction_per_round
from bnbench.timing.workload import SIZES, VERIFY_STEPS, spec_for, timing_batches, unavailable_on

QUICK_SIZES = ("tiny", "medium")
IMPLS: List[str] = [str(Form(name, mode)) for name in names() for mode in get(name).modes]
DEVICES = ["cpu", "cuda"]
DTYPES = ["float32", "float64"]
DIGITS_HIDDEN = (64, 64)
DIGITS_BATCH = 64
ACCURACY_EPOCHS = 8
# the bursts of a worker-timed step: as many seconds as a compare round gives one participant, a few times
WORKER_BURSTS = 5
WORKER_BURST_SECONDS = 0.3

# From the frameworks' declarations (as asv.conf.json is): each framework timed by asv has an
# environment group of its own (BNBENCH_ENV); the others cannot be built by asv (Chainer's sdist
# needs --no-build-isolation, Lasagne Python 3.9, Caffe a Debian 11 chroot) and are timed by their
# own worker process, reported as track_ values.
_RUNNABLE = [local_class(name) for name in names() if local_class(name).modes]
ENV_FRAMEWORKS = {adapter.name: {adapter.name} for adapter in _RUNNABLE if adapter.timed_by == "asv"}
WORKER_TIMED = tuple(adapter.name for adapter in _RUNNABLE if adapter.timed_by == "worker")


def split_impl(impl: str) -> Tuple[str, str]:
    """An asv parameter 'FRAMEWORK:MODE' -> (FRAMEWORK, MODE)."""
    form = Form.parse(impl)
    return form.framework, form.mode


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


def in_this_environment(framework: str) -> Optional[str]:
    """Why ``framework`` is not benchmarked in this asv environment (None: it is)."""
    group = os.environ.get("BNBENCH_ENV")
    if group is not None and framework not in ENV_FRAMEWORKS.get(group, {group}):
        return f"{framework} is benchmarked in its own environment, not in {group!r}"
    return None


def skip_reason(impl: str, device: str, dtype: str, size: Optional[str]) -> Optional[str]:
    """Why this combination is not run here (cheap checks first; imports the framework last)."""
    framework, mode = split_impl(impl)
    sizes, dtypes, modes = _narrowed("BNBENCH_SIZES"), _narrowed("BNBENCH_DTYPES"), _narrowed("BNBENCH_MODES")
    if modes is not None and mode not in modes and not ("best" in modes and mode == get(framework).best_mode):
        return f"BNBENCH_MODES={','.join(modes)}: mode {mode} not requested"
    if size is not None and sizes is not None and size not in sizes:
        return f"BNBENCH_SIZES={','.join(sizes)}: size {size} not requested"
    if dtypes is not None and dtype not in dtypes:
        return f"BNBENCH_DTYPES={','.join(dtypes)}: {dtype} not requested"
    problem = in_this_environment(framework)
    if problem:
        return problem
    adapter = get(framework)
    if grid() == "quick":
        if mode != adapter.best_mode:
            return f"quick grid: {framework} runs only its best mode {adapter.best_mode!r}"
        if dtype != "float32":
            return "quick grid: float32 only"
        if size is not None and size not in QUICK_SIZES:
            return f"quick grid: sizes {', '.join(QUICK_SIZES)} only"
    if size is not None:
        problem = unavailable_on(size, device)
        if problem:
            return problem
    if device == "cuda":
        problem = no_nvidia_driver()
        if problem:
            return problem
    return adapter.import_error() or adapter.device_unavailable(device)


def no_nvidia_driver() -> Optional[str]:
    """Why no framework can see a CUDA GPU on this machine, decided without importing one (each
    cuda combination is a process of its own: importing the slowest framework only to learn that there is no
    GPU cost 5-8 s per process, measured). Every CUDA build reaches the GPU through the NVIDIA
    kernel driver, which publishes /proc/driver/nvidia and /dev/nvidiactl on Linux. None: a driver
    is there (or not Linux), so the framework itself is asked."""
    if not sys.platform.startswith("linux") or os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidiactl"):
        return None
    return "no NVIDIA GPU on this machine (no NVIDIA driver: neither /proc/driver/nvidia nor /dev/nvidiactl exists)"


def require_supported(adapter_class, spec: Spec, mode: str, device: str) -> None:
    """A spec the framework cannot express is a skip with its reason (never a different model)."""
    reason = adapter_class.unsupported(spec, mode, device)
    if reason:
        raise NotImplementedError(f"unsupported by {adapter_class.name} ({mode}): {reason}")


def pinned_threads(impl: str, device: str, dtype: str, size: str) -> int:
    """The skips of a combination, and its framework's threads pinned (BNBENCH_THREADS): what it
    reports it uses. Builds nothing."""
    framework, mode = split_impl(impl)
    require_supported(local_class(framework), spec_for(size, dtype), mode, device)
    reason = skip_reason(impl, device, dtype, size)
    if reason:
        raise NotImplementedError(reason)
    return get(framework).set_threads(threads())


_PARTICIPANTS: Dict[Tuple, participants.Participant] = {}
_PEAKS: Dict[Tuple, participants.Participant] = {}


def prepare(impl: str, device: str, dtype: str, size: str) -> participants.Participant:
    """The participant of one combination, started once per process through the suite's timing
    path (bnbench.timing.participant): in this process where the framework runs here, else in its
    worker. NotImplementedError (a skip) with the reason when it cannot run or is not verified."""
    key = (impl, device, dtype, size)
    if key not in _PARTICIPANTS:
        framework, mode = split_impl(impl)
        spec = spec_for(size, dtype)
        require_supported(local_class(framework), spec, mode, device)     # spec logic: before any worker starts
        reason = skip_reason(impl, device, dtype, size)
        if reason:
            raise NotImplementedError(reason)
        X, y = timing_batches(spec, SIZES[size]["m"])
        _PARTICIPANTS[key] = participants.start(
            framework, mode, impl, spec=spec, params=initial_parameters(spec), X=X, y=y, device=device, threads=threads(),
            flops=step_flops(spec, SIZES[size]["m"]), in_process=runs_in_process(impl))
    participant = _PARTICIPANTS[key]
    if not participant.timed:
        raise NotImplementedError(participant.problem)
    return participant


def runs_in_process(impl: str) -> bool:
    """Whether ``impl``'s framework runs in this process (True) or in its worker, decided from its
    declaration before anything is built: each benchmark skips the other's participants without
    starting them (a worker, or a framework imported and compiled here, only to be skipped)."""
    return local_class(split_impl(impl)[0]).placement() is None


def prepare_in_process(impl: str, device: str, dtype: str, size: str) -> participants.Participant:
    """A participant asv's own timer can time: one of this process (a worker's is timed by its bursts)."""
    if not runs_in_process(impl):
        raise NotImplementedError(f"{impl} runs in a worker process here: its steps are timed inside it "
                                  f"(WorkerStep.track_worker_step_seconds), not by asv's timer across the pipe")
    return prepare(impl, device, dtype, size)


def median_step_seconds(participant: participants.Participant, seconds: float = 1.0) -> float:
    """Median of individually timed steps over one burst of ``seconds`` (at least 10 steps)."""
    return float(np.median(participant.burst(seconds, min_steps=10)["steps"]))


def peak(device: str, dtype: str) -> participants.Participant:
    """The matmul peak (bnbench.timing.peak), in this process, once."""
    if (device, dtype) not in _PEAKS:
        _PEAKS[(device, dtype)] = participants.start_in_process_peak(device, dtype)
    return _PEAKS[(device, dtype)]


PEAK_ROUNDS = 7


def fraction_of_peak(participant: participants.Participant, device: str, dtype: str) -> float:
    """GFLOP/s of a step over the matmul peak's, paired as ``bnbench compare`` pairs them: a burst of
    steps, then a burst of the peak's products, PEAK_ROUNDS times; the median of the ratios. These
    machines alternate fast and slow phases of seconds, so a step median and a peak measured one
    after the other can fall in different phases."""
    matmul = peak(device, dtype)
    step_s, product_s = [], []
    for _ in range(PEAK_ROUNDS):
        step_s.append(float(np.median(participant.burst(0.25)["steps"])))
        product_s.append(float(np.median(matmul.burst(0.25)["steps"])))
    # compare's estimator, its interval left out: an asv track value is one number
    return stats.bootstrap_median(fraction_per_round(participant.flops, step_s, matmul.flops, product_s)).estimate


def peak_gflops(device: str, dtype: str) -> float:
    matmul = peak(device, dtype)
    return matmul.flops / float(np.median(matmul.burst(0.5)["steps"])) / 1e9


# --------------------------------------------------------------------------- digits
def digits_spec(dtype: str) -> Spec:
    # Momentum rather than Adam: Adam's step g / (sqrt(g^2) + 1e-8) turns the float32 rounding of
    # near-zero gradients (nearly blank pixels) into whole +-learning_rate steps, so float32
    # frameworks cannot agree with each other there to 1e-4 however correct they are.
    return Spec(n_features=64, hidden=DIGITS_HIDDEN, n_classes=10, dtype=dtype, optimizer="momentum", learning_rate=0.1)


_DIGITS: Dict[Tuple, Tuple] = {}


def prepare_digits(impl: str, device: str, dtype: str):
    """(adapter, prepared batches of one epoch, test split): the adapter built and verified on
    digits batches by the suite's timing path, in this process."""
    key = (impl, device, dtype)
    if key not in _DIGITS:
        reason = skip_reason(impl, device, dtype, None)
        if reason:
            raise NotImplementedError(reason)
        framework, mode = split_impl(impl)
        adapter_class = local_class(framework)
        if adapter_class.placement() is not None:
            raise NotImplementedError(f"{impl} runs in a worker process here: an epoch is timed in its own environment")
        spec = digits_spec(dtype)
        require_supported(adapter_class, spec, mode, device)
        adapter_class.set_threads(threads())
        data = load_digits(dtype)
        X, y = batch_stack(data.train, DIGITS_BATCH, VERIFY_STEPS, seed=0)
        try:
            adapter, _, _ = participants.build_verified(adapter_class, spec, initial_parameters(spec), X, y, mode=mode,
                                                     device=device)
        except AdapterError as error:
            raise NotImplementedError(str(error).splitlines()[0]) from None
        batches = [adapter.to_device(Xb, yb) for Xb, yb in minibatches(data.train, DIGITS_BATCH, seed=0)]
        adapter.train_step_prepared(batches[0])
        _DIGITS[key] = (adapter, batches, (data.test.X, data.test.y))
    return _DIGITS[key]

