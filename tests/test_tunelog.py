"""Tuning logs (`bnbench tunelog`): alternative forms of a mode, timed against the kept form in
paired rounds; the verdict computed from the intervals; each framework's own matmul, checked."""
import os
import re

import numpy as np
import pytest

from bnbench.adapters import names
from bnbench.adapters.allocator import ALLOCATOR_ALTERNATIVES, MALLOC_DEFAULT
from bnbench.adapters.contract import Unavailable
from bnbench.adapters.registry import local_class
from bnbench.cli import main
from bnbench.comparisons import tunelog
from bnbench.reference import initial_parameters
from bnbench.timing import records
from bnbench.timing.form import Form
from bnbench.timing.workload import spec_for
from tests.conftest import require_adapter


def test_forms_are_the_kept_form_then_the_other_modes_then_the_alternatives():
    require_adapter("numpy")
    assert tunelog.forms("numpy") == ["eager", "eager+reference", "eager+blas-sleeps", "eager+malloc-default",
                                      "eager+no-malloc-reuse", "eager+no-hugepages"]
    require_adapter("torch")
    forms = tunelog.forms("torch")
    assert forms[:2] == ["compiled", "eager"]
    assert {"compiled+compiled-update", "compiled+max-autotune", "compiled+malloc-reuse", "compiled+hugepages"} <= set(forms)


def test_an_alternative_made_by_environment_variables_refuses_a_process_without_them(monkeypatch):
    require_adapter("numpy")
    from bnbench.adapters.numpy_adapter import NumpyAdapter

    spec = spec_for("tiny", "float32")
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    with pytest.raises(Unavailable, match=r"runs only in a process started with GLIBC_TUNABLES= \(bnbench compare"):
        NumpyAdapter(spec, initial_parameters(spec), variant="no-hugepages")
    with pytest.raises(Unavailable, match="has no alternative form 'fast'; its alternatives: reference, blas-sleeps, "
                                          "malloc-default, no-malloc-reuse, no-hugepages"):
        NumpyAdapter(spec, initial_parameters(spec), variant="fast")
    monkeypatch.setenv("GLIBC_TUNABLES", "")
    assert NumpyAdapter(spec, initial_parameters(spec), variant="no-hugepages").variant == "no-hugepages"


def test_a_kept_form_with_two_allocator_settings_is_tried_without_each_and_without_both():
    require_adapter("numpy")
    from bnbench.adapters.numpy_adapter import NumpyAdapter

    assert NumpyAdapter.allocator_parts() == ("malloc-reuse", "hugepages")
    assert NumpyAdapter.allocator_variables() == ALLOCATOR_ALTERNATIVES["hugepages"].variables
    alternatives = NumpyAdapter.alternatives_of("eager")
    assert alternatives["malloc-default"].variables == (("GLIBC_TUNABLES", ""),)
    assert alternatives["no-malloc-reuse"].variables == ()            # the huge pages stay, from the process
    assert alternatives["no-hugepages"].variables == (("GLIBC_TUNABLES", ""),)
    assert "hugepages" not in alternatives and "malloc-reuse" not in alternatives


def _log(ratios):
    """A log of framework 'f' kept form 'a': ratios {size: {form: (ratio, low, high)}}."""
    forms = sorted({form for by_form in ratios.values() for form in by_form})
    compare = {}
    for size, by_form in ratios.items():
        rows = [{"label": "f:a", "ratio": 1.0, "ci_low": 1.0, "ci_high": 1.0, "resolved": None, "verified": True}]
        for form, (ratio, low, high) in by_form.items():
            rows.append({"label": f"f:{form}", "ratio": ratio, "ci_low": low, "ci_high": high,
                         "resolved": not low <= 1 <= high, "verified": True})
        compare[size] = {"rows": rows}
    return {"framework": "f", "kept": "a", "forms": [{"form": "a"}] + [{"form": form} for form in forms], "compare": compare}


def test_the_verdict_comes_from_the_intervals():
    kept = tunelog.verdict(_log({"tiny": {"b": (1.2, 1.1, 1.3)}, "large": {"b": (0.99, 0.95, 1.02)}}))
    assert kept["kept_stands"] and kept["adopt"] == [] and kept["slower"] == {"b": ["tiny"]}
    within_the_margin = tunelog.verdict(_log({"tiny": {"b": (0.98, 0.975, 0.985)}}))
    assert within_the_margin["kept_stands"] and within_the_margin["faster"] == {}
    adopt = tunelog.verdict(_log({"tiny": {"b": (0.8, 0.7, 0.9)}, "large": {"b": (1.0, 0.97, 1.03)}}))
    assert not adopt["kept_stands"] and adopt["adopt"] == ["b"] and "should adopt it" in adopt["why"]
    trade = tunelog.verdict(_log({"tiny": {"b": (0.8, 0.7, 0.9)}, "large": {"b": (1.2, 1.1, 1.3)}}))
    assert trade["kept_stands"] and "b is faster at tiny but slower at large" in trade["why"]


def test_the_verdict_s_margin_is_the_run_s_measured_floor():
    """With a control in the run, the margin is the floor's spread: a form 2% faster counts where
    the kept form against its own control stayed within 1%, and does not where that reached 3%;
    a log without a control keeps the 3% it was judged by."""
    log = _log({"tiny": {"b": (0.98, 0.975, 0.985)}})
    log["compare"]["tiny"]["floor"] = {"ratio": 1.002, "ci_low": 0.995, "ci_high": 1.01, "spread": 0.01}
    assert tunelog.margin(log["compare"]["tiny"]) == 0.01
    assert tunelog.verdict(log)["adopt"] == ["b"]
    log["compare"]["tiny"]["floor"]["spread"] = 0.03
    assert tunelog.verdict(log)["kept_stands"]
    assert tunelog.margin({"rows": []}) == tunelog.LEGACY_MARGIN


@pytest.mark.slow
def test_a_tuning_log_is_timed_verified_and_written(tmp_path):
    require_adapter("numpy")
    assert main(["tunelog", "--framework", "numpy", "--sizes", "tiny", "--budget", "3", "--results", str(tmp_path),
                 "--quiet"]) == 0
    (machine,) = os.listdir(tmp_path / "tuning-logs")
    log = records.read(str(tmp_path / "tuning-logs" / machine / "numpy.json"), records.TUNING_LOG)
    assert "upgraded_from" not in log and log["kept"] == "eager" and log["sizes"] == ["tiny"]
    rows = {row["label"]: row for row in log["compare"]["tiny"]["rows"]}
    assert set(rows) == {f"numpy:{form}" for form in tunelog.forms("numpy")}
    for label, row in rows.items():
        assert row["verified"] is True and row["ratio"] > 0, label
        assert row["variant"] == Form.parse(label).variant
    assert rows["numpy:eager+no-hugepages"]["flags"] == MALLOC_DEFAULT["hugepages"].what
    text = re.sub(" {2,}", " ", (tmp_path / "tuning-logs" / machine / "numpy.md").read_text())   # cells unpadded
    assert "| `eager+reference` |" in text
    # the Markdown states the verdict its JSON gives, and every form timed beside the kept one is verified
    assert ("**Kept: `eager`**" if tunelog.verdict(log)["kept_stands"] else "**Change the adapter: ") in text
    assert len([row for label, row in rows.items() if label != "numpy:eager"]) >= 3


@pytest.mark.parametrize("args, message", [
    (["--framework", "nosuch"], "unknown framework(s) nosuch"),
    (["--framework", "numpy", "--sizes", "tiny,huge"], "--sizes: unknown size 'huge'"),
    (["--framework", "numpy", "--budget", "-1"], "--budget: '-1' must be more than 0 and at most 86400 seconds"),
])
def test_bad_tunelog_flags_are_named(tmp_path, capsys, args, message):
    assert main(["tunelog", "--results", str(tmp_path), "--quiet", *args]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "tuning-logs").exists()


def test_each_framework_s_own_matmul_runs():
    """Adapter.matmul_step on the CPU, for every framework this process runs itself: the ceiling
    a tuning log sets beside each framework's steps runs and names its library (the frameworks
    of other processes are built by the tuning-log run in their own workers)."""
    from bnbench.adapters import names
    from bnbench.timing.peak import MatmulPeak

    checked = []
    for name in names():
        adapter = local_class(name)
        if not adapter.modes or adapter.placement() is not None or adapter.import_error() is not None:
            continue
        if name.startswith("keras-") or name == "paddle":
            continue        # Keras picks its backend per process, paddle runs in its own: the worker test covers them
        peak = MatmulPeak("cpu", "float32", 64, framework=name)      # its first product checked against NumPy's
        assert peak.flops == 2 * 64 ** 3 and peak.library, name
        checked.append(name)
    assert "numpy" in checked


@pytest.mark.parametrize("wrong, message", [
    (lambda a, b: None, "returned no product"),
    (lambda a, b: np.zeros((a.shape[0], b.shape[1]), a.dtype), "differs from NumPy's by 1 of its greatest value"),
    (lambda a, b: (a @ b)[:, :-1], "has shape"),
    (lambda a, b: (a.astype(np.float16) @ b.astype(np.float16)).astype(a.dtype), "differs from NumPy's"),
])
def test_a_matmul_that_computes_no_product_is_no_peak(monkeypatch, wrong, message):
    """The peak is the fastest correct product: a step that computes nothing, the wrong shape or at
    half precision is refused when the peak is built, naming the library."""
    from bnbench.adapters.contract import AdapterError
    from bnbench.timing.peak import MatmulPeak

    numpy_adapter = local_class("numpy")
    monkeypatch.setattr(numpy_adapter, "matmul_step", classmethod(lambda cls, a, b, device: ("fake", lambda: wrong(a, b))))
    with pytest.raises(AdapterError, match=f"fake: its matmul.*{message}"):
        MatmulPeak("cpu", "float32", 256, framework="numpy")


@pytest.mark.slow
@pytest.mark.parametrize("name", names())
def test_each_framework_s_profile_accounts_for_its_step(name):
    """tunelog.profile_kept in the kept form's worker, for every framework here (one case each, so
    that the test workers share them out): a profile with the products found among its kernels and
    no more kernel time than the step took (beyond the overlap of XLA's asynchronous dots), or the
    reason there is none."""
    if name not in tunelog.loggable():
        pytest.skip(f"{name} cannot be timed here")
    adapter = local_class(name)
    profile = tunelog.profile_kept(name, adapter.best_mode or adapter.modes[0], size="tiny", steps=3)
    if not adapter.has_profiler():
        assert "no profiler hook" in profile["problem"], (name, profile)
        return
    assert "problem" not in profile, (name, profile)
    kernels = profile["kernels"]
    assert any(kernel["kind"] == "product" for kernel in kernels), (name, kernels)
    total = profile["products_ms"] + profile["other_kernels_ms"]
    assert 0 < total <= 1.3 * profile["profiled_step_ms"] + 0.1, (name, total, profile["profiled_step_ms"])
    assert profile["step_ms"] > 0 and profile["steps"] == 3


def test_numpy_can_be_profiled_here():
    """The profile cases above skip what cannot be timed here; NumPy always can."""
    assert "numpy" in tunelog.loggable()


@pytest.mark.parametrize("variant, extra", [(None, 0), ("dot22scalar", 1)])
def test_pytensor_s_kept_step_runs_each_product_of_the_spec_once(variant, extra):
    """Its profile counted 10 products of 1024^3 where the spec has 8: with PyTensor's
    local_dot22_to_dot22scalar rewrite the negated dZ @ W.T of every layer but the first is a
    second product. The kept form excludes it; the dot22scalar form shows the rewrite's extra ones."""
    adapter_class = require_adapter("pytensor")
    spec = spec_for("tiny", "float32")
    adapter = adapter_class(spec, initial_parameters(spec), mode="c", variant=variant)
    products = [str(node.op) for node in adapter._train.maker.fgraph.toposort()
                if type(node.op).__name__ in ("Dot22", "Dot22Scalar", "Gemm", "Dot")]
    layers = spec.n_layers
    # forward (hidden layers and output), the output's two, each hidden layer's W and dA but the first's dA
    assert len(products) == (layers + 1) + 2 + 2 * (layers - 1) + 1 + extra * layers, products


def test_a_profile_renders_in_its_log():
    log = {"framework": "numpy", "dtype": "float32", "compare": {"large": {"peak": {"gflops": 340.0}}},
           "profile": {"size": "large", "profiler": "numpy, its products timed one by one", "steps": 10,
                       "step_ms": 77.0, "profiled_step_ms": 76.5, "products_ms": 55.2, "other_kernels_ms": 21.3,
                       "outside_kernels_ms": 0.0, "kernels_left_out": 0,
                       "kernels": [{"kernel": "np.matmul", "kind": "product", "calls": 11, "ms": 55.2},
                                   {"kernel": "a|b", "kind": "other", "calls": 1, "ms": 21.3}]}}
    text = re.sub(" {2,}", " ", "\n".join(tunelog.profile_markdown(log)))     # cells unpadded
    assert "Matrix products 55.2 ms (72%)" in text
    assert "would take 50.7 ms at this run's matmul peak" in text and "numpy's take 0.92 of the peak's speed" in text
    assert "| `np.matmul` | product | 11 | 55.20 | 72% |" in text and "`a\\|b`" in text
    assert "None at large: the x adapter has no profiler hook." in "\n".join(
        tunelog.profile_markdown(dict(log, profile={"size": "large", "problem": "the x adapter has no profiler hook"})))
