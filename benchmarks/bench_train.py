"""One training step and one inference pass, per framework x mode x device x dtype x size, through
the suite's timing path (benchmarks/common.py: bnbench.timing.participant)."""
import time

import numpy as np

from bnbench.timing.flops import inference_flops
from bnbench.timing.workload import SIZE_ORDER

from .common import (
    DEVICES,
    DTYPES,
    IMPLS,
    fraction_of_peak,
    median_step_seconds,
    peak_gflops,
    pinned_threads,
    prepare,
    prepare_in_process,
)

PARAMS = [IMPLS, DEVICES, DTYPES, list(SIZE_ORDER)]
PARAM_NAMES = ["impl", "device", "dtype", "size"]


class TrainStep:
    """Steady-state step time of a framework of this process: the participant's synchronised step
    (data already on the device, warm-up and compilation excluded), timed by asv."""

    params = PARAMS
    param_names = PARAM_NAMES
    timeout = 900
    rounds = 2
    repeat = (10, 60, 10.0)
    warmup_time = 0.5

    def setup(self, impl, device, dtype, size):
        self.participant = prepare_in_process(impl, device, dtype, size)

    def time_train_step(self, impl, device, dtype, size):
        self.participant.step()

    def time_inference(self, impl, device, dtype, size):
        self.participant.adapter.predict_prepared(self.participant.prepared.batch)

    def peakmem_train_step(self, impl, device, dtype, size):
        self.participant.step()


class TrainStepDerived:
    """Values derived from the step, for every framework (in this process or in its worker): the
    first step, FLOP rates, the fraction of the matmul peak, threads."""

    params = PARAMS
    param_names = PARAM_NAMES
    timeout = 900
    rounds = 1
    repeat = 1

    def setup(self, impl, device, dtype, size):
        # Only the skips and the thread pinning here: every benchmark runs in a process of its own,
        # and building, compiling and verifying the adapter costs 5-10 s of each (measured), which
        # track_threads and track_peak_gflops do not need.
        self.key = (impl, device, dtype, size)
        self.threads = pinned_threads(impl, device, dtype, size)

    @property
    def participant(self):
        try:
            return prepare(*self.key)
        except NotImplementedError as reason:      # a skip with the reason, as in setup
            try:
                from asv_runner.benchmarks.mark import SkipNotImplemented
            except ImportError:                    # run outside asv
                raise reason from None
            raise SkipNotImplemented(str(reason)) from None

    def track_first_step_seconds(self, impl, device, dtype, size):
        """The first training step of a fresh adapter: tracing, compilation, allocation."""
        return self.participant.first_step_s

    track_first_step_seconds.unit = "seconds"

    def track_gflops(self, impl, device, dtype, size):
        """Analytic FLOPs of a step (bnbench/timing/flops.py) / median step time."""
        participant = self.participant
        return participant.flops / median_step_seconds(participant) / 1e9

    track_gflops.unit = "GFLOP/s"

    def track_fraction_of_peak(self, impl, device, dtype, size):
        """GFLOP/s of a step / the matmul peak's, paired burst by burst (common.fraction_of_peak)."""
        return fraction_of_peak(self.participant, device, dtype)

    track_fraction_of_peak.unit = "fraction"

    def track_peak_gflops(self, impl, device, dtype, size):
        """The matmul peak the fraction is taken of (bnbench.timing.peak, same thread count)."""
        return peak_gflops(device, dtype)

    track_peak_gflops.unit = "GFLOP/s"

    def track_threads(self, impl, device, dtype, size):
        """Compute threads the framework reports after pinning (BNBENCH_THREADS)."""
        return self.threads

    track_threads.unit = "threads"


class Inference:
    """Inference-mode FLOP rate, for the frameworks of this process."""

    params = PARAMS
    param_names = PARAM_NAMES
    timeout = 900
    rounds = 1
    repeat = 1

    def setup(self, impl, device, dtype, size):
        self.participant = prepare_in_process(impl, device, dtype, size)

    def track_inference_gflops(self, impl, device, dtype, size):
        adapter, batch = self.participant.adapter, self.participant.prepared.batch
        times = []
        for _ in range(20):
            start = time.perf_counter()
            adapter.predict_prepared(batch)
            times.append(time.perf_counter() - start)
        return inference_flops(adapter.spec, batch[0].shape[0]) / float(np.median(times)) / 1e9

    track_inference_gflops.unit = "GFLOP/s"

