"""`bnbench verify`: one table, a JSON the results tables read, non-zero exit on any failure."""
import json

import pytest

from bnbench.adapters import registry
from bnbench.cli import main

from .test_equivalence import WrongRunningVariance


class WrongAdapter(WrongRunningVariance):
    name = "wrong"


def test_verify_numpy_passes_and_writes_json(tmp_path, capsys):
    path = tmp_path / "verify.json"
    assert main(["verify", "--framework", "numpy", "--json", str(path), "--machine", "testbox"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:5] == ["framework", "mode", "device", "dtype", "status"]
    data = json.loads(path.read_text())
    assert data["machine"] == "testbox" and data["tolerances"] == {"float64": 1e-10, "float32": 1e-4, "tf32": 2e-3}
    assert data["relu_kinks"] == {"band": 4.0, "margin": 2.0, "max_tolerance": 1e-2, "max_tolerances": {"tf32": 0.1}}
    rows = {(r["mode"], r["device"], r["dtype"]): r for r in data["rows"]}
    assert set(rows) == {("eager", "cpu", "float64"), ("eager", "cpu", "float32")}
    for row in rows.values():
        assert row["status"] == "pass" and row["passed"] == row["checked"] == 7 and row["version"]
        assert row["worst"]["grad"] < (1e-10 if row["dtype"] == "float64" else 1e-4)


def test_verify_fails_on_a_wrong_adapter_and_keeps_earlier_rows(tmp_path, capsys, monkeypatch):
    path = tmp_path / "verify.json"
    assert main(["verify", "--framework", "numpy", "--dtype", "float64", "--json", str(path)]) == 0
    monkeypatch.setitem(registry.ADAPTERS, "wrong", "tests.test_verify:WrongAdapter")
    assert main(["verify", "--framework", "wrong", "--dtype", "float64", "--json", str(path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "running_var1" in out
    rows = {r["framework"]: r for r in json.loads(path.read_text())["rows"]}
    assert rows["numpy"]["status"] == "pass"                  # kept from the first run
    # the four checks with a biased running variance fail; the three unbiased ones pass
    assert rows["wrong"]["status"] == "FAIL" and rows["wrong"]["passed"] == 3 and len(rows["wrong"]["failures"]) == 4
    assert any("running_var1" in failure for failure in rows["wrong"]["failures"])


@pytest.mark.parametrize("argv, message", [
    (["--framework", "nope"], "unknown framework(s) nope"),
    (["--dtype", "float16"], "--dtype 'float16' is not one of"),
    (["--device", "tpu"], "--device 'tpu' is not one of"),
])
def test_verify_bad_flags(capsys, argv, message):
    assert main(["verify"] + argv) == 1
    assert message in capsys.readouterr().err


def test_unsupported_combinations_are_not_passes(tmp_path):
    """A framework that cannot express a spec gets 'unsupported' checks, never counted as passed."""
    pytest.importorskip("keras")
    path = tmp_path / "verify.json"
    main(["verify", "--framework", "keras-torch", "--dtype", "float64", "--device", "cpu", "--json", str(path)])
    rows = json.loads(path.read_text())["rows"]
    assert {row["status"] for row in rows} == {"unsupported"}
    assert all(row["passed"] == 0 and "BIT64_TO_BIT32_DTYPE" in row["reason"] for row in rows)


def _write_rows(path, first, count, barrier):
    from bnbench.verification import verify

    barrier.wait(timeout=60)       # every writer starts at once
    for index in range(first, first + count):
        verify.write(path, [verify.Row(framework=f"framework-{index}", mode="eager", device="cpu", dtype="float32",
                                       status="pass")], "test-machine")


def test_two_verify_runs_writing_at_once_lose_no_row(tmp_path):
    """verify reads, merges and rewrites its record: without a lock, of two runs one's rows were lost."""
    import json
    import multiprocessing

    path = str(tmp_path / "main.json")
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(4)
    writers = [context.Process(target=_write_rows, args=(path, 25 * k, 25, barrier)) for k in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    rows = json.loads(open(path).read())["rows"]
    assert sorted(row["framework"] for row in rows) == sorted(f"framework-{i}" for i in range(100))
