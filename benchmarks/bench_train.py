"""One training step and one inference pass, per framework x mode x device x dtype x size."""
import numpy as np

from bnbench.flops import inference_flops, step_flops

from .common import (DEVICES, DTYPES, IMPLS, SIZES, fraction_of_peak, matmul_gflops, median_step_seconds, prepare, runnable,
                     spec_for)

PARAMS = [IMPLS, DEVICES, DTYPES, list(SIZES)]
PARAM_NAMES = ["impl", "device", "dtype", "size"]


class TrainStep:
    """Steady-state step time: data already on the device, warm-up and compilation excluded,
    the step complete (synchronised) when the call returns."""

    params = PARAMS
    param_names = PARAM_NAMES
    timeout = 900
    rounds = 2
    repeat = (10, 60, 10.0)
    warmup_time = 0.5

    def setup(self, impl, device, dtype, size):
        self.prepared = prepare(impl, device, dtype, size)

    def time_train_step(self, impl, device, dtype, size):
        self.prepared.adapter.train_step_prepared(self.prepared.batch)

    def time_inference(self, impl, device, dtype, size):
        self.prepared.adapter.predict_prepared(self.prepared.inference_batch)

    def peakmem_train_step(self, impl, device, dtype, size):
        self.prepared.adapter.train_step_prepared(self.prepared.batch)


class TrainStepDerived:
    """Values derived from the step: first-call latency, FLOP rates, thread count."""

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
        self.threads = runnable(impl, device, dtype, size, spec_for(size, dtype))[2]

    @property
    def prepared(self):
        try:
            return prepare(*self.key)
        except NotImplementedError as reason:      # not verified: a skip with the reason, as in setup
            try:
                from asv_runner.benchmarks.mark import SkipNotImplemented
            except ImportError:                    # run outside asv
                raise reason from None
            raise SkipNotImplemented(str(reason)) from None

    def track_first_step_seconds(self, impl, device, dtype, size):
        """The first training step of a fresh adapter: tracing, compilation, allocation."""
        return self.prepared.first_step_seconds

    track_first_step_seconds.unit = "seconds"

    def track_gflops(self, impl, device, dtype, size):
        """Analytic FLOPs of a step (bnbench/flops.py) / median step time."""
        seconds = median_step_seconds(self.prepared)
        return step_flops(self.prepared.spec, self.prepared.m) / seconds / 1e9

    track_gflops.unit = "GFLOP/s"

    def track_fraction_of_peak(self, impl, device, dtype, size):
        """GFLOP/s of a step / the machine's matmul peak for this dtype, measured in this process,
        in interleaved pairs (common.fraction_of_peak)."""
        return fraction_of_peak(self.prepared)

    track_fraction_of_peak.unit = "fraction"

    def track_peak_gflops(self, impl, device, dtype, size):
        """The matmul peak the fraction is taken of (NumPy BLAS, same thread count)."""
        return matmul_gflops(dtype, repeats=3)

    track_peak_gflops.unit = "GFLOP/s"

    def track_inference_gflops(self, impl, device, dtype, size):
        times = []
        for _ in range(20):
            import time

            start = time.perf_counter()
            self.prepared.adapter.predict_prepared(self.prepared.inference_batch)
            times.append(time.perf_counter() - start)
        return inference_flops(self.prepared.spec, self.prepared.m) / float(np.median(times)) / 1e9

    track_inference_gflops.unit = "GFLOP/s"

    def track_threads(self, impl, device, dtype, size):
        """Compute threads the framework reports after pinning (BNBENCH_THREADS)."""
        return self.threads

    track_threads.unit = "threads"
