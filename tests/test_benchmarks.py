"""Guards for the asv suite: nothing goes unbenchmarked, nothing imports a framework early."""
import json
import os
import re
import subprocess
import sys

import pytest

from bnbench.adapters import names
from bnbench.timing.frameworks import get

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def asv_config():
    text = open(os.path.join(ROOT, "asv.conf.json")).read()
    return json.loads(re.sub(r"^\s*//.*$", "", text, flags=re.M))


def test_every_adapter_mode_is_benchmarked_in_an_environment():
    sys.path.insert(0, ROOT)
    try:
        from benchmarks.common import ENV_FRAMEWORKS, IMPLS, WORKER_TIMED
    finally:
        sys.path.remove(ROOT)
    assert set(IMPLS) == {f"{name}:{mode}" for name in names() for mode in get(name).modes}
    config = asv_config()
    groups = [config["matrix"]["env_nobuild"]["BNBENCH_ENV"]] + [entry["env_nobuild"]["BNBENCH_ENV"] for entry in config["include"]]
    assert sorted(groups) == sorted(ENV_FRAMEWORKS), "every environment group of asv.conf.json is known to the suite"
    covered = set().union(*ENV_FRAMEWORKS.values()) | set(WORKER_TIMED)
    in_process = {name for name in names() if get(name).requires}
    assert in_process <= covered, f"frameworks without an asv environment: {sorted(in_process - covered)}"
    for entry in config["include"]:
        assert "python" in entry, "an asv include entry must name its python"
    torch_envs = [entry for entry in config["include"] if "torch" in entry["req"]]
    assert torch_envs, "asv.conf.json has no torch environment"
    assert all(entry["req"]["torch"] == "2.13.0" for entry in torch_envs), "torch stays pinned (its CPU wheel is local)"


def framework_modules():
    """Every module a framework's declaration requires (derived: a new framework is guarded too), but
    NumPy, the reference's own language."""
    from bnbench.adapters.registry import local_class

    return sorted({module for name in names() for module in local_class(name).requires} - {"numpy"})


def test_importing_the_suite_imports_no_framework():
    modules = framework_modules()
    assert {"torch", "tensorflow", "jax", "mxnet", "keras"} <= set(modules)
    code = ("import sys; sys.path.insert(0, %r); import bnbench.cli, bnbench.adapters, bnbench.comparisons.scale, "
            "bnbench.publishing.report, bnbench.tuning.study, bnbench.lecture, benchmarks.bench_train, "
            "benchmarks.bench_digits, benchmarks.bench_worker, benchmarks.bench_tune; "
            "bad = [m for m in %r if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)") % (ROOT, modules)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_asv_environments_are_found_for_verification():
    """`make bench` verifies inside each asv environment: every group of asv.conf.json is found,
    with the benchmark-time variables it needs (KERAS_BACKEND for the Keras ones)."""
    pytest.importorskip("asv")
    from benchmarks.common import ENV_FRAMEWORKS
    from bnbench.verification.asvenvs import environments

    found = {env.group: env for env in environments(os.path.join(ROOT, "asv.conf.json"))}
    assert set(found) == set(ENV_FRAMEWORKS)
    assert found["keras-torch"].env_vars["KERAS_BACKEND"] == "torch"
    assert all(env.python.endswith(os.path.join("bin", "python")) for env in found.values())


def test_asv_check_passes():
    """asv's own validation of the suite (discovery, parameters, names) in this environment."""
    pytest.importorskip("asv")
    asv = os.path.join(os.path.dirname(sys.executable), "asv")
    result = subprocess.run([asv, "check", "--python=same"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "No problems found" in result.stdout, result.stdout + result.stderr


def _benchmarks():
    sys.path.insert(0, ROOT)
    try:
        from benchmarks import bench_train, bench_worker, common
    finally:
        sys.path.remove(ROOT)
    return common, bench_worker, bench_train


def test_a_spec_the_framework_cannot_express_is_a_skip_with_its_reason(monkeypatch):
    """Not a crash of the run, and not a different model timed: NotImplementedError, asv's skip."""
    common, bench_worker, _ = _benchmarks()
    monkeypatch.delenv("BNBENCH_ENV", raising=False)
    monkeypatch.setenv("BNBENCH_GRID", "full")
    # pycaffe's blobs are float32: its float64 rows are skips with the reason.
    with pytest.raises(NotImplementedError, match=r"unsupported by caffe \(net\): pycaffe's blobs are float32 only"):
        bench_worker.measured("caffe:net", "float64", "tiny")
    # Keras 3 on torch computes float64 in float32: its float64 rows are skips, before any worker starts.
    with pytest.raises(NotImplementedError, match=r"unsupported by keras-torch \(compiled\): Keras' type promotion maps float64"):
        common.prepare("keras-torch:compiled", "cpu", "float64", "tiny")


def test_without_an_nvidia_driver_cuda_is_skipped_before_any_framework_is_imported():
    """Every cuda combination is a process of its own: on a machine without the NVIDIA driver its
    skip must not pay for importing the framework (tensorflow: 5-8 s, measured)."""
    code = ("import sys; sys.path.insert(0, %r); from benchmarks import common; "
            "common.no_nvidia_driver = lambda: 'no NVIDIA GPU on this machine (test)'; "
            "print(common.skip_reason('tensorflow:xla', 'cuda', 'float32', 'tiny')); "
            "sys.exit(1 if 'tensorflow' in sys.modules else 0)") % ROOT
    env = dict(os.environ, BNBENCH_GRID="full")
    env.pop("BNBENCH_ENV", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "no NVIDIA GPU on this machine (test)"


def test_the_nvidia_driver_check_asks_the_framework_where_a_driver_is_loaded(monkeypatch):
    common, _, _ = _benchmarks()
    monkeypatch.setattr(common.sys, "platform", "linux")
    monkeypatch.setattr(common.os.path, "exists", lambda path: False)
    assert "no NVIDIA driver" in common.no_nvidia_driver()
    monkeypatch.setattr(common.os.path, "exists", lambda path: path == "/dev/nvidiactl")
    assert common.no_nvidia_driver() is None
    monkeypatch.setattr(common.sys, "platform", "darwin")
    monkeypatch.setattr(common.os.path, "exists", lambda path: False)
    assert common.no_nvidia_driver() is None


def test_derived_values_build_the_adapter_only_when_they_need_it(monkeypatch):
    """track_threads needs no adapter: its process must not compile and verify one."""
    common, _, bench_train = _benchmarks()
    monkeypatch.delenv("BNBENCH_ENV", raising=False)
    monkeypatch.setenv("BNBENCH_GRID", "full")
    built = []
    monkeypatch.setattr(bench_train, "prepare", lambda *key: built.append(key) or common.prepare(*key))
    derived = bench_train.TrainStepDerived()
    derived.setup("numpy:eager", "cpu", "float32", "tiny")
    assert derived.track_threads("numpy:eager", "cpu", "float32", "tiny") == common.threads()
    assert built == []
    assert derived.track_gflops("numpy:eager", "cpu", "float32", "tiny") > 0
    assert set(built) == {("numpy:eager", "cpu", "float32", "tiny")}


def test_each_timer_skips_the_others_participants_without_starting_them(monkeypatch):
    """asv's timer takes the frameworks of this process, the worker track the others: each skips the
    other's combinations from the declaration, before a worker starts or a framework is compiled
    here (both once ran in full only to be skipped: 10 min of asv run --quick)."""
    common, bench_worker, bench_train = _benchmarks()
    monkeypatch.delenv("BNBENCH_ENV", raising=False)
    monkeypatch.setenv("BNBENCH_GRID", "full")
    started = []
    monkeypatch.setattr(common.participants, "start", lambda *args, **kwargs: started.append(args))
    in_process = [impl for impl in common.IMPLS if common.runs_in_process(impl)]
    in_worker = [impl for impl in common.IMPLS if not common.runs_in_process(impl)]
    assert "numpy:eager" in in_process and in_worker, (in_process, in_worker)
    for impl in in_process:
        with pytest.raises(NotImplementedError, match="runs in this process here"):
            bench_worker.measured(impl, "float32", "tiny")
    for impl in in_worker:
        with pytest.raises(NotImplementedError, match="runs in a worker process here"):
            bench_train.TrainStep().setup(impl, "cpu", "float32", "tiny")
    assert started == []


def test_asv_and_compare_take_one_fraction_of_peak(monkeypatch):
    """asv's track_fraction_of_peak and compare's rows divide the same way (bnbench.timing.peak.
    fraction_per_round) and take the same estimator: the median over rounds, paired burst by burst."""
    import numpy as np

    from bnbench.timing.peak import fraction_per_round
    sys.path.insert(0, ROOT)
    try:
        from benchmarks import common
    finally:
        sys.path.remove(ROOT)
    np.testing.assert_allclose(fraction_per_round(100.0, [1.0, 2.0, np.nan], 1000.0, [1.0, 1.0, 1.0]), [0.1, 0.05, np.nan])

    class Bursts:
        """A participant whose bursts take the given medians, one per call."""
        def __init__(self, flops, medians):
            self.flops, self.medians = flops, iter(medians)

        def burst(self, seconds, **_):
            return {"steps": [next(self.medians)] * 3}

    steps = [1.0, 2.0, 1.0, 4.0, 1.0, 2.0, 8.0]        # a slow phase hits the step and its product alike
    products = [0.5, 1.0, 0.5, 2.0, 0.5, 1.0, 4.0]
    monkeypatch.setattr(common, "peak", lambda device, dtype: Bursts(1000.0, products))
    assert common.PEAK_ROUNDS == len(steps)
    assert common.fraction_of_peak(Bursts(100.0, steps), "cpu", "float32") == pytest.approx(0.05)
