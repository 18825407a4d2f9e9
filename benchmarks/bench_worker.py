"""Frameworks that run in a worker process here (their own environment, or a Keras backend other
than this process's): the worker times its own steady-state steps, in the bursts ``bnbench
compare`` times (first step and warm-up excluded, every step synchronised), and asv records the
median as a track_ value. Stated as such in the tables: asv did not time these itself. The
participant is checked against the reference in the same worker, on the same spec and batches,
before it is timed (benchmarks/common.py: bnbench.timing.participant)."""
import numpy as np

from bnbench.timing.workload import SIZE_ORDER

from .common import DTYPES, IMPLS, WORKER_BURST_SECONDS, WORKER_BURSTS, prepare, runs_in_process

PARAMS = [IMPLS, DTYPES, list(SIZE_ORDER)]
_MEASURED = {}


def measured(impl, dtype, size):
    """The worker's step times, once per process: a few bursts, their medians."""
    key = (impl, dtype, size)
    if key not in _MEASURED:
        if runs_in_process(impl):
            raise NotImplementedError(f"{impl} runs in this process here: it is timed by bench_train.TrainStep")
        participant = prepare(impl, "cpu", dtype, size)
        medians = [float(np.median(participant.burst(WORKER_BURST_SECONDS)["steps"])) for _ in range(WORKER_BURSTS)]
        _MEASURED[key] = {"steps": medians, "first_step": participant.first_step_s}
    return _MEASURED[key]


class WorkerStep:
    params = PARAMS
    param_names = ["impl", "dtype", "size"]
    timeout = 900
    number = 1
    repeat = 1

    def setup(self, impl, dtype, size):
        self.seconds = measured(impl, dtype, size)

    def track_worker_step_seconds(self, impl, dtype, size):
        """Median training step measured inside the framework's own worker process."""
        return float(np.median(self.seconds["steps"]))

    track_worker_step_seconds.unit = "seconds"

    def track_worker_first_step_seconds(self, impl, dtype, size):
        return float(self.seconds["first_step"])

    track_worker_first_step_seconds.unit = "seconds"
