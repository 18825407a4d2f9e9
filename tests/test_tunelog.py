"""Tuning logs (`bnbench tunelog`): alternative forms of a mode, timed against the kept form in
paired rounds; the verdict computed from the intervals; and the committed logs themselves."""
import json
import os

import pytest

from bnbench import tunelog
from bnbench.adapters.base import ALLOCATOR_ALTERNATIVES, Unavailable
from bnbench.cli import main
from bnbench.reference import initial_parameters
from bnbench.workload import spec_for
from tests.conftest import require_adapter

RESULTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "results")


def test_forms_are_the_kept_form_then_the_other_modes_then_the_alternatives():
    require_adapter("numpy")
    assert tunelog.forms("numpy") == ["eager", "eager+reference", "eager+hugepages", "eager+malloc-default"]
    require_adapter("torch")
    forms = tunelog.forms("torch")
    assert forms[:2] == ["compiled", "eager"]
    assert {"compiled+compiled-update", "compiled+max-autotune", "compiled+malloc-reuse", "compiled+hugepages"} <= set(forms)


def test_an_alternative_made_by_environment_variables_refuses_a_process_without_them(monkeypatch):
    require_adapter("numpy")
    from bnbench.adapters.numpy_adapter import NumpyAdapter

    spec = spec_for("tiny", "float32")
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    with pytest.raises(Unavailable, match=r"runs only in a process started with GLIBC_TUNABLES=glibc\.malloc\.hugetlb=1"):
        NumpyAdapter(spec, initial_parameters(spec), variant="hugepages")
    with pytest.raises(Unavailable, match="has no alternative form 'fast'; its alternatives: reference, hugepages"):
        NumpyAdapter(spec, initial_parameters(spec), variant="fast")
    monkeypatch.setenv("GLIBC_TUNABLES", dict(ALLOCATOR_ALTERNATIVES["hugepages"].variables)["GLIBC_TUNABLES"])
    assert NumpyAdapter(spec, initial_parameters(spec), variant="hugepages").variant == "hugepages"


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


def test_a_tuning_log_is_timed_verified_and_written(tmp_path):
    require_adapter("numpy")
    assert main(["tunelog", "--framework", "numpy", "--sizes", "tiny", "--budget", "3", "--results", str(tmp_path),
                 "--quiet"]) == 0
    (machine,) = os.listdir(tmp_path / "tuning-logs")
    log = json.loads((tmp_path / "tuning-logs" / machine / "numpy.json").read_text())
    assert log["tool"] == "bnbench tunelog" and log["kept"] == "eager" and log["sizes"] == ["tiny"]
    rows = {row["label"]: row for row in log["compare"]["tiny"]["rows"]}
    assert set(rows) == {f"numpy:{form}" for form in tunelog.forms("numpy")}
    for label, row in rows.items():
        assert row["verified"] is True and row["ratio"] > 0, label
        assert row["variant"] == (label.partition("+")[2] or None)
    assert rows["numpy:eager+hugepages"]["flags"] == ALLOCATOR_ALTERNATIVES["hugepages"].what
    text = (tmp_path / "tuning-logs" / machine / "numpy.md").read_text()
    assert "| `eager+reference` |" in text and ("**Kept: `eager`**" in text or "**Change the adapter" in text)


@pytest.mark.parametrize("args, message", [
    (["--framework", "nosuch"], "unknown framework(s) nosuch"),
    (["--framework", "numpy", "--sizes", "tiny,huge"], "--sizes: unknown size 'huge'"),
    (["--framework", "numpy", "--budget", "-1"], "--budget -1.0 must be a positive number"),
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
    from bnbench.adapters.registry import local_class
    from bnbench.peak import MatmulPeak

    checked = []
    for name in names():
        adapter = local_class(name)
        if not adapter.modes or adapter.placement() is not None or adapter.import_error() is not None:
            continue
        if name.startswith("keras-") or name == "paddle":
            continue        # Keras picks its backend per process, paddle runs in its own: the worker test covers them
        peak = MatmulPeak("cpu", "float32", 64, framework=name)
        peak.step()
        assert peak.flops == 2 * 64 ** 3 and peak.library, name
        checked.append(name)
    assert "numpy" in checked


def test_the_committed_tuning_logs_keep_the_fastest_form():
    """Every committed log: at least three alternatives timed and checked against the reference
    at every size, and the kept form standing: no alternative faster beyond the margin at one
    size unless it is slower beyond it at another (a trade-off between sizes, which the log
    states; a framework has one best mode for every size)."""
    logs = tunelog.load_logs(RESULTS)
    if not logs:
        pytest.skip("no tuning logs committed (make tunelogs)")
    for log in logs:
        where = log["source"]
        verdict = tunelog.verdict(log)
        assert verdict["kept_stands"], f"{where}: {verdict['why']}"
        for size, comparison in log["compare"].items():
            rows = {row["label"]: row for row in comparison["rows"]}
            timed = [label for label, row in rows.items() if row.get("ratio") is not None and row.get("verified")
                     and label != f"{log['framework']}:{log['kept']}"]
            assert len(timed) >= 3, f"{where} at {size}: only {timed} timed and verified"
            for label in timed:
                if rows[label]["ci_high"] < 1 - tunelog.MARGIN:
                    form = label.split(":", 1)[1]
                    assert verdict["slower"].get(form), f"{where}: {label} is faster at {size} and slower nowhere"
