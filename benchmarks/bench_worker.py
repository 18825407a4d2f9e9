"""Frameworks that run only in a worker process of their own (bnbench/worker.py): the worker
measures its own steady-state step time (first step and warm-up excluded, every step
synchronised) and asv records it as a track_ value. Stated as such in the tables: asv did not
time these itself. Before timing, the adapter is checked against the reference in the same
worker, on the same spec and batches."""
import os

import numpy as np

from bnbench.adapters import names
from bnbench.frameworks import get
from bnbench.reference import initial_parameters

from .common import QUICK_SIZES, SIZES, WORKER_TIMED, timing_batches, grid, require_supported, spec_for, threads
from bnbench.trace import check_equivalence

PARAMS = [list(WORKER_TIMED), ["float32", "float64"], list(SIZES)]
_CACHE = {}


def measured(framework, dtype, size):
    key = (framework, dtype, size)
    if key in _CACHE:
        return _CACHE[key]
    if os.environ.get("BNBENCH_ENV") not in (None, "numpy"):
        raise NotImplementedError("worker-timed frameworks run once, from the numpy environment")
    if grid() == "quick" and (dtype != "float32" or size not in QUICK_SIZES):
        raise NotImplementedError("quick grid: float32, tiny and medium only")
    if framework not in names():
        raise NotImplementedError(f"{framework}: no adapter in the bnbench installed in this environment")
    adapter_class = get(framework)
    if not hasattr(adapter_class, "time_steps"):
        raise NotImplementedError(f"{framework} runs in this process: it is timed by bench_train")
    spec = spec_for(size, dtype)
    require_supported(adapter_class, spec, adapter_class.modes[0], "cpu")   # spec logic only: no worker started
    problem = adapter_class.import_error()
    if problem:
        raise NotImplementedError(problem)
    adapter_class.set_threads(threads())
    m = SIZES[size]["m"]
    params = initial_parameters(spec)
    X, y = timing_batches(spec, m)

    report = check_equivalence(adapter_class(spec, params), spec, params, X, y)
    if not report.ok:
        raise NotImplementedError("not verified against the reference, not timed: " + report.message(limit=2))
    adapter = adapter_class(spec, params)
    steps = 20 if size != "large" else 5
    _CACHE[key] = adapter.time_steps(X[0], y[0], warmup=3, steps=steps)
    return _CACHE[key]


class WorkerStep:
    params = PARAMS
    param_names = ["framework", "dtype", "size"]
    timeout = 900
    number = 1
    repeat = 1

    def setup(self, framework, dtype, size):
        self.seconds = measured(framework, dtype, size)

    def track_worker_step_seconds(self, framework, dtype, size):
        """Median training step measured inside the framework's own worker process."""
        return float(np.median(self.seconds["steps"]))

    track_worker_step_seconds.unit = "seconds"

    def track_worker_first_step_seconds(self, framework, dtype, size):
        return float(self.seconds["first_step"])

    track_worker_first_step_seconds.unit = "seconds"
