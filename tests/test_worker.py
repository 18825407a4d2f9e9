"""The out-of-process adapter mechanism (bnbench.timing.worker): what runs in a worker must give the
same answers as in-process, and every failure must come back as the suite's own error."""
import sys

import numpy as np
import pytest

from bnbench.adapters.numpy_adapter import NumpyAdapter
from bnbench.equivalence.trace import check_equivalence, run
from bnbench.reference import Spec, initial_parameters
from bnbench.reference.data import batch_stack, synthetic
from bnbench.reference.model import BatchError
from bnbench.reference.spec import SpecError
from bnbench.timing.protocol import read_message, write_message
from bnbench.timing.worker import Placement, WorkerError, remote_class, worker_for

HERE = Placement(python=sys.executable, where="a test worker (this interpreter)")


def problem(dtype="float64"):
    spec = Spec(n_features=6, hidden=(5, 4), n_classes=3, dtype=dtype, optimizer="adam", running_var="unbiased", l2=0.02)
    X, y = batch_stack(synthetic(64, 6, 3, seed=1, dtype=dtype), 8, 3, seed=2)
    return spec, initial_parameters(spec), X, y


def test_wire_format_round_trip(tmp_path):
    arrays = {"X": np.arange(6.0).reshape(2, 3), "y": np.array([1, 2], dtype=np.int64), "name/with/slash": np.float32([1.5])}
    with open(tmp_path / "message", "wb") as stream:
        write_message(stream, {"op": "x", "n": 3}, arrays)
        write_message(stream, {"op": "empty"})
    with open(tmp_path / "message", "rb") as stream:
        header, back = read_message(stream)
        assert header == {"op": "x", "n": 3}
        assert set(back) == set(arrays) and all(np.array_equal(back[k], arrays[k]) and back[k].dtype == arrays[k].dtype for k in arrays)
        assert read_message(stream) == ({"op": "empty"}, {})


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_remote_adapter_matches_in_process_bit_for_bit(dtype):
    spec, params, X, y = problem(dtype)
    Remote = remote_class(NumpyAdapter, HERE)
    assert Remote.name == "numpy" and Remote.modes == NumpyAdapter.modes and Remote.import_error() is None
    remote, local = run(Remote(spec, params), X, y), run(NumpyAdapter(spec, params), X, y)
    assert set(remote) == set(local)
    for key in local:
        assert remote[key].dtype == local[key].dtype and np.array_equal(remote[key], local[key]), key
    assert check_equivalence(Remote(spec, params), spec, params, X, y).ok


def test_remote_errors_come_back_as_the_suites_errors():
    spec, params, X, y = problem()
    Remote = remote_class(NumpyAdapter, HERE)
    adapter = Remote(spec, params)
    with pytest.raises(BatchError, match="m >= 2"):      # checked before anything is sent
        adapter.train_step(X[0][:1], y[0][:1])
    worker = worker_for(HERE)
    with pytest.raises(SpecError, match="n_classes"):   # raised inside the worker
        worker.call("build", params, framework="numpy", mode="eager", device="cpu", spec=dict(spec.to_dict(), n_classes=1))
    with pytest.raises(WorkerError, match="unknown worker operation"):
        worker.call("no-such-operation", handle=1)
    warm = adapter.prepare_timing(X[0], y[0], warmup=1)          # the timing path: steps timed in the worker
    assert warm["first_step"] > 0 and warm["warmup_seconds"] > 0
    runner = adapter.runner()           # its timed steps in the worker, as the rounds burst them
    burst = runner.burst(0.0, how="per_step", min_steps=3, memory=False, deadline_s=None, max_steps=3)
    assert len(burst["steps"]) == 3 and all(t > 0 for t in burst["steps"])
    queued = runner.burst(0.0, how="queued", min_steps=4, memory=False, deadline_s=None, max_steps=4)
    assert queued["count"] == 4 and queued["queued"] > 0
    with pytest.raises(WorkerError, match="burst how='sideways'"):
        runner.burst(0.0, how="sideways", min_steps=1, memory=False, deadline_s=None)


def test_a_proxy_shares_its_framework_s_declaration_object():
    """Every declared fact reaches the worker proxy through the one declaration object, none
    copied by hand: a field added to the declaration is on the proxy with no line written for it."""
    Remote = remote_class(NumpyAdapter, HERE)
    assert Remote.declaration is NumpyAdapter.declaration
    for field in type(NumpyAdapter.declaration).fields():
        assert getattr(Remote, field) == getattr(NumpyAdapter, field), field


def test_missing_environment_is_a_reason_not_a_crash(tmp_path):
    nowhere = Placement(python=str(tmp_path / "env" / "bin" / "python"), where="the test environment",
                        setup_hint="`make env-test`")
    Remote = remote_class(NumpyAdapter, nowhere)
    reason = Remote.import_error()
    assert "does not exist" in reason and "make env-test" in reason


def test_a_dying_worker_is_reported_with_its_log(tmp_path):
    script = tmp_path / "python"
    script.write_text("#!/bin/sh\necho 'this worker cannot start' >&2\nexit 3\n")
    script.chmod(0o755)
    dying = Placement(python=str(script), where="a broken environment")
    with pytest.raises(WorkerError) as info:
        worker_for(dying)
    assert "died" in str(info.value) and "this worker cannot start" in str(info.value)
    assert "died" in remote_class(NumpyAdapter, dying).import_error()


def test_a_worker_s_threads_are_placed_on_the_cores_asked():
    import os

    cores = sorted(os.sched_getaffinity(0))
    worker = worker_for(HERE)
    reply, _ = worker.call("set_affinity", cores=cores[:1])
    assert reply["cores"] == cores[:1]
    reply, _ = worker.call("set_affinity", cores=cores)
    assert reply["cores"] == cores
