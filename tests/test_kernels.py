"""The machine's own kernels in the timed processes (bnbench.timing.kernels): an environment that
forces a BLAS kernel is removed from a participant's worker and said, the kernel that really ran is
recorded, and a participant whose native kernel fails the check is timed under the machine's setting."""
import subprocess
import sys

import pytest

from bnbench.adapters.contract import AdapterError
from bnbench.reference import initial_parameters
from bnbench.timing import kernels
from bnbench.timing import participant as participant_module
from bnbench.timing.flops import step_flops
from bnbench.timing.worker import Placement, close_workers, worker_for
from bnbench.timing.workload import batch_size, spec_for, timing_batches

FORCED = {"OPENBLAS_CORETYPE": "Sandybridge", "OPENBLAS_L2_SIZE": "512"}


def native_kernel():
    """NumPy's OpenBLAS kernel in a fresh process without the overrides."""
    env, _ = kernels.without_overrides(dict(__import__("os").environ))
    script = "import numpy, threadpoolctl; print([i['architecture'] for i in threadpoolctl.threadpool_info() if i['internal_api'] == 'openblas'][0])"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True).stdout.strip()


def start_numpy():
    spec = spec_for("tiny", "float32")
    m = batch_size("tiny")
    X, y = timing_batches(spec, m)
    return participant_module.start("numpy", "eager", "numpy:eager", spec=spec, params=initial_parameters(spec), X=X, y=y,
                                    device="cpu", threads=1, flops=float(step_flops(spec, m)), index="kernels-test")


@pytest.fixture
def forced(monkeypatch):
    pytest.importorskip("threadpoolctl")
    for name, value in FORCED.items():
        monkeypatch.setenv(name, value)
    yield
    close_workers()


def test_the_overrides_are_removed_from_a_timed_worker_and_said(forced):
    native = native_kernel()
    assert native != "Sandybridge"
    # the override bites where it is left: a worker that keeps the environment runs Sandybridge
    kept = worker_for(Placement(python=sys.executable, where="a test worker", env=(("BNBENCH_TEST", "kept"),)))
    kept.call("build_peak", device="cpu", dtype="float32", framework="")
    assert [entry["kernel"] for entry in kept.call("blas")[0]["blas"] if entry["library"] == "openblas"] == ["Sandybridge"]
    participant = start_numpy()
    assert participant.timed and participant.kernels["native"] and participant.kernels["removed"] == FORCED
    assert [entry["kernel"] for entry in participant.kernels["blas"] if entry["library"] == "openblas"] == [native]
    peak = participant_module.start_peak("cpu", "float32", 1)
    assert peak.kernels["removed"] == FORCED and peak.kernels["blas"][0]["kernel"] == native


def test_a_participant_whose_native_kernel_fails_the_check_is_timed_under_the_machine_s_setting(forced, monkeypatch):
    real = participant_module.build_verified

    def native_kernel_computes_wrongly(adapter_class, *args, **kwargs):
        if adapter_class.worker_placement.native_kernels:
            raise AdapterError("not verified against the reference, not timed: grad/W1 differs (the native kernel)")
        return real(adapter_class, *args, **kwargs)

    monkeypatch.setattr(participant_module, "build_verified", native_kernel_computes_wrongly)
    participant = start_numpy()
    assert participant.timed and not participant.kernels["native"] and participant.kernels["removed"] == {}
    assert participant.kernels["native_failed"].startswith("not verified against the reference")
    assert participant.kernels["overrides_kept"] == FORCED
    assert [entry["kernel"] for entry in participant.kernels["blas"] if entry["library"] == "openblas"] == ["Sandybridge"]


def test_without_overrides_names_what_it_removed():
    env = {"PATH": "/bin", "OPENBLAS_CORETYPE": "Haswell", "DNNL_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "2"}
    kept, removed = kernels.without_overrides(env)
    assert kept == {"PATH": "/bin", "OMP_NUM_THREADS": "2"} and removed == {"OPENBLAS_CORETYPE": "Haswell",
                                                                            "DNNL_MAX_CPU_ISA": "AVX2"}
    assert kernels.describe([{"api": "blas", "library": "openblas", "version": "0.3.31", "kernel": "SkylakeX"},
                             {"api": "openmp", "library": "openmp", "version": None, "kernel": None}]) == "openblas 0.3.31 SkylakeX"
