"""`bnbench compare` (paired rounds) and the report built from its results.

The CLI runs are short (a few seconds of rounds on tiny): they check the mechanism, the JSON
contract and the errors; the statistics themselves are tested on synthetic timings in
tests/test_stats.py."""
import json
import os
import shutil

import pytest

from bnbench.cli import main
from bnbench.timing import records, sets, stats
from tests.conftest import require_adapter

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
ROW_KEYS = {"framework", "mode", "median_step_s", "ratio", "ci_low", "ci_high", "fraction_of_peak", "verified"}


def run_compare(tmp_path, *args):
    out = tmp_path / "out.json"
    status = main(["compare", "--quiet", "--json", str(out), *args])
    if not out.exists():
        return status, None
    result = records.read(str(out), records.COMPARISON)     # what every reader reads: its kind's current schema
    assert "upgraded_from" not in result and result["schema"] == records.COMPARISON.schema
    return status, result


@pytest.mark.slow
def test_aa_check_numpy_against_itself(tmp_path):
    status, result = run_compare(tmp_path, "--frameworks", "numpy,numpy", "--size", "tiny", "--budget", "4")
    assert status == 0
    assert {"machine", "size", "dtype", "device", "baseline", "rounds", "seconds", "rows"} <= set(result)
    assert result["baseline"] == "numpy:eager" and result["size"] == "tiny" and result["device"] == "cpu"
    assert result["machine"]["id"] == result["machine_id"] and result["rounds"] >= 2
    rows = {row["label"]: row for row in result["rows"]}
    assert set(rows) == {"numpy:eager", "numpy:eager#2"}
    for row in rows.values():
        assert ROW_KEYS <= set(row) and row["verified"] is True
        assert 0 < row["median_step_s"] < 0.1 and 0 < row["fraction_of_peak"] < 1
        assert row["ci_low"] <= row["ratio"] <= row["ci_high"]
        # the memory its step holds, above what its worker held before the model was built
        assert row["memory_kind"] == "resident" and row["memory_bytes"] > 0 and row["memory_ratio"] > 0
        # what it trained to in its check, against the reference, in float32 epsilons
        assert row["fingerprint"]["loss"] >= 0 and "param/W_out" in row["fingerprint"]
    # the control: the baseline again, in a worker of its own, the same rounds: the run's noise floor
    floor = result["floor"]
    assert floor["label"] == "numpy:eager#control" and floor["ci_low"] <= floor["ratio"] <= floor["ci_high"]
    assert floor["spread"] == stats.floor_spread(stats.Interval(floor["ratio"], floor["ci_low"], floor["ci_high"], 1))
    assert len(result["round_medians"]["numpy:eager#control"]) == result["rounds"]
    twin = rows["numpy:eager#2"]
    assert twin["resolved"] == stats.resolved_beyond(stats.Interval(twin["ratio"], twin["ci_low"], twin["ci_high"], 1),
                                                     floor["spread"])
    assert result["peak"]["gflops"] > 0 and len(result["round_medians"]["peak"]) == result["rounds"]
    assert all(row["latency_s"] == row["median_step_s"] for row in rows.values())    # on the CPU: one measurement
    # four sets of workers by default, each started afresh with its share of the rounds
    assert result["process_sets"] == sets.DEFAULT_SETS == 4 and len(result["round_sets"]) == result["rounds"]
    assert result["round_sets"] == sorted(result["round_sets"]) and set(result["round_sets"]) == {0, 1, 2, 3}


@pytest.mark.slow
def test_torch_is_timed_in_its_own_worker_and_verified(tmp_path):
    require_adapter("torch")
    status, result = run_compare(tmp_path, "--frameworks", "torch:eager", "--size", "tiny", "--budget", "3", "--sets", "1")
    assert status == 0
    rows = {row["label"]: row for row in result["rows"]}
    assert set(rows) == {"numpy:eager", "torch:eager"}       # the baseline always takes part
    torch_row = rows["torch:eager"]
    assert torch_row["verified"] and torch_row["version"].startswith("2.") and torch_row["first_step_s"] > 0
    assert torch_row["flags"]                                  # the adapter's published flags


@pytest.mark.parametrize("args, message", [
    (["--frameworks", "nosuch"], "unknown framework 'nosuch'"),
    (["--frameworks", "numpy:jit"], "numpy has no mode 'jit'"),
    (["--frameworks", "numpy:"], "is not NAME, NAME:MODE or NAME:MODE+ALTERNATIVE"),
    (["--frameworks", "numpy:eager+"], "is not NAME, NAME:MODE or NAME:MODE+ALTERNATIVE"),
    (["--frameworks", "numpy:eager+fast"], "numpy (eager) has no alternative 'fast'; alternatives: reference, blas-sleeps, malloc-default, no-malloc-reuse, no-hugepages"),
    (["--frameworks", "numpy", "--baseline", "numpy,numpy"], "must name one framework"),
    (["--frameworks", "numpy", "--budget", "0"], "--budget: '0' must be more than 0 and at most 86400 seconds"),
    (["--frameworks", "numpy", "--budget", "nan"], "--budget: 'nan' must be more than 0 and at most 86400 seconds"),
    (["--frameworks", "numpy", "--budget", "inf"], "--budget: 'inf' must be more than 0 and at most 86400 seconds"),
    (["--frameworks", "numpy", "--budget", "lots"], "--budget: 'lots' is not a number of seconds"),
    (["--frameworks", "numpy", "--size", "huge"], "invalid choice: 'huge'"),
    (["--frameworks", "numpy", "--sets", "0"], "--sets: '0' must be at least 1"),
    (["--frameworks", "numpy", "--sets", "100000"], "--sets: '100000' is more than 16 (each set starts every worker again)"),
    (["--frameworks", "numpy", "--threads", "1000000"], f"--threads: '1000000' is more than {os.cpu_count()} (the machine's cores)"),
    (["--frameworks", "numpy", "--worker-deadline", "-1"], "--worker-deadline: '-1' must be more than 0"),
    (["--frameworks", "numpy", "--device", "cuda"], "--frameworks: numpy has no device 'cuda'"),
])
def test_bad_flags_are_named(tmp_path, capsys, args, message):
    status, result = run_compare(tmp_path, *args)
    assert status == 1 and result is None
    assert message in capsys.readouterr().err


def test_a_tune_with_more_workers_than_the_machine_holds_is_refused(tmp_path, capsys):
    assert main(["tune", "--framework", "numpy", "--results", str(tmp_path), "--workers", "1000"]) == 1
    assert f"--workers: '1000' is more than {4 * os.cpu_count()} (4 per core)" in capsys.readouterr().err


def test_a_budget_that_never_ends_is_refused_by_the_rounds_too():
    from bnbench.timing import rounds

    for budget in (float("nan"), float("inf"), 0.0):
        with pytest.raises(rounds.RoundsError, match="--budget"):
            rounds.run(rounds.Settings(items=[("numpy", "eager")], size="tiny", budget=budget, progress=False))


def test_output_folder_must_exist(tmp_path, capsys):
    assert main(["compare", "--frameworks", "numpy", "--json", str(tmp_path / "missing" / "out.json")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_a_baseline_that_cannot_run_is_an_error(tmp_path, capsys):
    """On a machine without a GPU, torch on cuda is unavailable: the run says so, in one line."""
    require_adapter("torch")
    from bnbench.timing.frameworks import get

    if get("torch").device_unavailable("cuda") is None:
        pytest.skip("a GPU is visible here")
    status, result = run_compare(tmp_path, "--frameworks", "torch", "--device", "cuda", "--baseline", "torch", "--budget", "1")
    assert status == 1 and result is None
    assert "--baseline torch:compiled: cannot be timed here" in capsys.readouterr().err


# --------------------------------------------------------------------------- the report
pytest.importorskip("pandas")
pytest.importorskip("matplotlib")


@pytest.fixture
def two_machines_one_hostname(tmp_path):
    """Stored compare results of a 16-core H200 machine and a 2-core CPU machine, both called
    `vm`, and asv results of two CPUs under one asv machine folder `alpha`."""
    results = tmp_path / "results"
    shutil.copytree(os.path.join(FIXTURES, "asv_results"), results)
    for name in ("h200-cuda-large-float32.json", "xeon-cpu-tiny-float32.json"):
        data = json.loads(open(os.path.join(FIXTURES, "compare", name)).read())
        target = results / "compare" / data["machine_id"] / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(data))
    for path, cpu in (("asv/alpha/aaaa1111-virtualenv-py3.11-numpy.json", "AMD EPYC"),
                      ("asv/alpha/aaaa1111-virtualenv-py3.11-torch.json", "Intel Xeon")):
        data = json.loads((results / path).read_text())
        data["params"].update(cpu=cpu, num_cpu="2", ram="25276510208")
        (results / path).write_text(json.dumps(data))
    return results


def test_report_keeps_machines_with_one_hostname_apart(two_machines_one_hostname):
    from bnbench.publishing import report

    results = two_machines_one_hostname
    summary = report.build(str(results))
    text = (results / "README.md").read_text()
    # compare results: one section per hardware, each table from one run
    assert summary["compare_machines"] == ["intel-xeon-16c-126g-nvidia-h200", "intel-xeon-2c-24g"]
    assert "### Machine `intel-xeon-16c-126g-nvidia-h200`" in text and "### Machine `intel-xeon-2c-24g`" in text
    assert "NVIDIA H200" in text and text.count("host name `vm`") == 2
    by_machine = {}
    for row in summary["comparisons"]:
        by_machine.setdefault((row["machine"], row["device"], row["size"]), set()).add(row["source"])
    assert all(len(sources) == 1 for sources in by_machine.values())      # no table mixes runs
    assert set(by_machine) == {("intel-xeon-16c-126g-nvidia-h200", "cuda", "large"), ("intel-xeon-2c-24g", "cpu", "tiny")}
    gpu = [r for r in summary["comparisons"] if r["device"] == "cuda"]
    assert {r["label"] for r in gpu} == {"torch:eager", "torch:compiled", "jax:eager", "jax:jit"}
    assert all(r["verified"] and 0 < r["fraction_of_peak"] < 1 for r in gpu)
    assert "not resolved" in text or "resolved" in text
    assert "plots/compare-intel-xeon-16c-126g-nvidia-h200-cuda-float32.png" in summary["plots"]
    # asv results: the same asv machine name on two CPUs gives two machines, never one table, keyed
    # as the comparisons key them (the legacy id of the hardware asv recorded: no CPU facts there)
    assert {"amd-epyc-2c-24g", "intel-xeon-2c-24g"} <= set(summary["machines"])
    two = [row for row in summary["rows"] if row["machine"] in ("amd-epyc-2c-24g", "intel-xeon-2c-24g")]
    assert {row["framework"] for row in two} >= {"numpy", "torch"}
    for row in two:
        assert row["machine"] == ("amd-epyc-2c-24g" if row["framework"] == "numpy" else "intel-xeon-2c-24g")
    assert text.count("A legacy id:") >= 2
    assert (results / "compare.csv").read_text().startswith("machine,device,dtype,size,baseline")


def test_a_framework_s_own_matmul_is_timed_beside_its_steps():
    """Tuning logs time each framework's own matmul in its kept form's worker, in the same rounds:
    its fraction of the peak, and each step's share of it."""
    require_adapter("numpy")
    from bnbench.timing import rounds

    result = rounds.run(rounds.Settings(items=[("numpy", "eager"), ("numpy", "eager+reference")], size="tiny",
                                        baseline=("numpy", "eager"), budget=3, ceilings=True, progress=False))
    (ceiling,) = result["ceilings"]
    assert ceiling["framework"] == "numpy" and ceiling["library"].startswith("numpy") and ceiling["problem"] is None
    assert ceiling["gflops"] > 0 and 0.5 < ceiling["fraction_of_peak"] < 2
    assert len(result["round_medians"]["numpy:own-matmul"]) == result["rounds"]
    for row in result["rows"]:
        assert 0 < row["of_own_matmul"] < 1 and row["of_own_matmul_ci_low"] <= row["of_own_matmul"]
    assert {row["label"]: row["variant"] for row in result["rows"]} == {"numpy:eager": None,
                                                                        "numpy:eager+reference": "reference"}


def test_a_run_wholly_in_the_slow_state_is_told_against_the_run_it_replaces():
    """A run's own rule cannot see a run that was slow from its first round to its last: the run it
    replaces can. The medium `make bench` run whose NumPy step read 8.2 ms against 5.1 ms."""
    from bnbench.comparisons import compare
    from bnbench.publishing import glance

    def run(step, created, size="medium"):
        return {"machine_id": "m", "size": size, "dtype": "float32", "device": "cpu", "baseline": "numpy:eager",
                "created": created, "undisturbed": {"baseline_step_s": step, "margin": 0.25, "rounds": 10, "of": 10}}

    earlier = run(0.00515, "2026-12-05T00:19:33Z")
    slow = compare.against_earlier(run(0.00825, "2026-12-05T06:45:35Z"), earlier)
    assert slow["undisturbed"]["whole_run_slower"]["ratio"] == pytest.approx(1.602, abs=0.001)
    line = compare.state_line(slow)
    assert line.startswith("the whole run ran disturbed: the baseline's step was 1.60 times") and "2026-12-05T00:19:33Z" in line
    # within the margin, another size, or no earlier run: nothing to tell
    for result, before in ((run(0.0062, "x"), earlier), (run(0.00825, "x", size="tiny"), earlier), (run(0.00825, "x"), None)):
        assert "whole_run_slower" not in compare.against_earlier(result, before)["undisturbed"]
    # a second slow run is measured against the undisturbed reference, not the slow run it replaces
    again = compare.against_earlier(run(0.0081, "2026-12-06T00:00:00Z"), slow)
    assert again["undisturbed"]["whole_run_slower"]["earlier_created"] == "2026-12-05T00:19:33Z"
    assert compare.state_line(compare.against_earlier(run(0.0051, "y"), slow)) == ""
    published = glance.table(dict(slow, rows=[], floor=None, rounds=10, process_sets=2, m=256,
                                  machine={"cpu": "AMD EPYC", "cores": 2}))
    assert "**the whole run ran disturbed: the baseline's step was 1.60 times" in published[-2]


@pytest.mark.parametrize("earlier", [[1, 2, 3], "a string", 7, {"undisturbed": [1]},
                                     {"undisturbed": {"baseline_step_s": 0.005, "whole_run_slower": "yes"}}])
def test_an_earlier_file_that_is_not_a_result_counts_as_absent(earlier):
    """valid JSON that is not a result object at the --json path crashed compare after its run,
    and the run's result was lost"""
    from bnbench.comparisons import compare

    result = {"machine_id": "m", "size": "tiny", "dtype": "float32", "device": "cpu", "baseline": "numpy:eager",
              "undisturbed": {"baseline_step_s": 0.004, "margin": 0.25}}
    assert "whole_run_slower" not in compare.against_earlier(result, earlier)["undisturbed"]
