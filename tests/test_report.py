"""`bnbench report` on a small stored fixture of asv results: two machines, a malformed file,
an older run that a newer one replaces, verification records that match and one that fails."""
import filecmp
import json
import os
import re
import shutil

import pytest

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from bnbench.cli import main  # noqa: E402
from bnbench.publishing import report  # noqa: E402

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "asv_results")


@pytest.fixture
def results(tmp_path):
    target = tmp_path / "results"
    shutil.copytree(FIXTURE, target)
    return target


def rows_by_key(summary):
    return {(r["machine"], r["size"], r["framework"], r["mode"], r["device"]): r for r in summary["rows"]}


def test_tables_hold_the_fixture_numbers(results):
    summary = report.build(str(results))
    assert summary["machines"] == ["alpha", "beta"]
    assert len(summary["problems"]) == 1 and "beta/cccc3333-virtualenv-py3.11-broken.json" in summary["problems"][0]
    rows = rows_by_key(summary)
    # alpha: numpy 2 ms / 200 ms, torch 1 ms / 100 ms (the older torch run at 9 s is replaced)
    torch_tiny, numpy_tiny = rows[("alpha", "tiny", "torch", "compiled", "cpu")], rows[("alpha", "tiny", "numpy", "eager", "cpu")]
    assert torch_tiny["median"] == pytest.approx(0.001) and numpy_tiny["median"] == pytest.approx(0.002)
    # rows come from separate asv runs: each says which, and no ratio is taken between them
    assert torch_tiny["run"].startswith("aaaa1111 ") and "vs_fastest" not in torch_tiny and "vs_numpy" not in torch_tiny
    assert torch_tiny["q25"] == pytest.approx(0.0009) and torch_tiny["q75"] == pytest.approx(0.0012)
    assert torch_tiny["first_step"] == pytest.approx(2.5)
    assert rows[("alpha", "large", "torch", "compiled", "cpu")]["fraction_of_peak"] == pytest.approx(0.9)
    assert rows[("alpha", "large", "numpy", "eager", "cpu")]["gflops"] == pytest.approx(80.0)
    assert rows[("alpha", "large", "numpy", "eager", "cpu")]["peak_memory_mb"] == pytest.approx(400)
    # verification joins on machine, environment group, framework, mode, device and dtype
    assert torch_tiny["verified"].startswith("yes") and torch_tiny["version"] == "2.13.0+cpu"
    assert numpy_tiny["verified"].startswith("**FAILED**")
    beta_torch = rows[("beta", "tiny", "torch", "compiled", "cpu")]
    assert beta_torch["median"] == pytest.approx(0.0005) and beta_torch["verified"].startswith("**not verified**")
    # the failed cuda run (null) and skipped combinations (NaN) are not rows
    assert not any(key[4] == "cuda" for key in rows)

    text = re.sub(" {2,}", " ", (results / "README.md").read_text())     # cells unpadded
    assert "## Machine `alpha`" in text and "## Machine `beta`" in text
    assert "CPU Beta CPU, 8 cores, 64.0 GiB memory" in text
    assert "| torch | compiled | cpu | 2.13.0+cpu | 1 ms (900 µs–1.2 ms) | aaaa1111 " in text
    assert "x slower" not in text
    assert "broken.json" in text and "skipped" in text
    for plot in summary["plots"]:
        assert (results / plot).stat().st_size > 5000 and f"]({plot})" in text
    assert "plots/alpha-fraction-of-peak-large-float32.png" in summary["plots"]

    csv_lines = (results / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("machine,env_group,group,environment,commit,date,benchmark,framework,mode,device,dtype,size,value")
    assert not any(",0ld0ld00," in line for line in csv_lines)        # older run replaced
    assert summary["removed"] == ["alpha/0ld0ld00-virtualenv-py3.11-torch.json"]   # and pruned: results/ holds what the tables use
    assert not (results / "asv" / "alpha" / "0ld0ld00-virtualenv-py3.11-torch.json").exists()
    assert (results / "asv" / "alpha" / "aaaa1111-virtualenv-py3.11-torch.json").exists()
    assert sum(",time_train_step," in line for line in csv_lines) == 8   # 2 machines x 2 frameworks x 2 sizes


def test_output_is_deterministic(results, tmp_path):
    report.build(str(results))
    first = tmp_path / "first"
    shutil.copytree(results, first)
    report.build(str(results))
    for name in ["README.md", "results.csv"] + [os.path.join("plots", p) for p in os.listdir(results / "plots")]:
        assert filecmp.cmp(first / name, results / name, shallow=False), name


def test_cli_report_and_missing_folder(results, tmp_path, capsys):
    assert main(["report", "--results", str(results)]) == 0
    captured = capsys.readouterr()
    assert "from 2 machine(s) (alpha, beta)" in captured.out and "broken.json" in captured.err
    assert main(["report", "--results", str(tmp_path / "nowhere")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_asv_keeps_its_results_in_a_folder_of_its_own():
    """asv takes every folder of its results directory for a machine: under results/ itself,
    `asv publish` said "could not load" for compare/, scale/, verify/, ... (27 messages)."""
    from bnbench.publishing.asv_tables import history_dir
    from tests.test_benchmarks import asv_config

    assert asv_config()["results_dir"] == history_dir("results")
    others = {"compare", "scale", "verify", "tuning-logs", "tuning", "lecture", "plots"}     # the other tools' folders
    assert os.path.dirname(history_dir("results")) == "results" and os.path.basename(history_dir("results")) not in others


def test_older_result_files_read_through_a_newer_benchmarks_json(tmp_path):
    """asv rewrites benchmarks.json at every run: a result file made before a benchmark moved to
    another class, or before the worker benchmark took framework:mode, keeps its unit and its rows."""
    from bnbench.publishing.asv_tables import WORKER_GROUP, read_result_file

    columns = ["result", "params"]
    path = tmp_path / "0ld-virtualenv-py3.11-numpy.json"
    path.write_text(json.dumps({
        "version": 2, "commit_hash": "0" * 40, "env_name": "virtualenv-py3.11-numpy", "date": 1, "result_columns": columns,
        "params": {"machine": "alpha"}, "env_vars": {"BNBENCH_ENV": "numpy"},
        "results": {
            "bench_train.TrainStepDerived.track_inference_gflops": [[5.0], [["'numpy:eager'"], ["'cpu'"], ["'float32'"], ["'tiny'"]]],
            "bench_worker.WorkerStep.track_worker_step_seconds": [[0.01], [["'chainer'"], ["'float32'"], ["'tiny'"]]]}}))
    # what benchmarks.json says today (the benchmark moved; the worker's first parameter renamed)
    units = {"track_inference_gflops": "GFLOP/s", "bench_train.Inference.track_inference_gflops": "GFLOP/s",
             "track_worker_step_seconds": "seconds", "bench_worker.WorkerStep.track_worker_step_seconds": "seconds"}
    names = {"bench_worker.WorkerStep.track_worker_step_seconds": ["impl", "dtype", "size"],
             "track_worker_step_seconds": ["impl", "dtype", "size"],
             "track_inference_gflops": ["impl", "device", "dtype", "size"]}
    inference, worker = read_result_file(str(path), units, names)
    assert inference["unit"] == "GFLOP/s" and inference["framework"] == "numpy" and inference["mode"] == "eager"
    assert worker["framework"] == "chainer" and worker["group"] == WORKER_GROUP and worker["size"] == "tiny"


def test_a_result_file_whose_impl_is_no_label_is_named_and_skipped(tmp_path):
    """An impl parameter that is not FRAMEWORK:MODE (bnbench.timing.form) makes the file unreadable
    as this suite's: a ReportError naming why, so the report skips it, never a crash."""
    from bnbench.publishing.asv_tables import ReportError, read_result_file

    path = tmp_path / "0ld-virtualenv-py3.11-numpy.json"
    path.write_text(json.dumps({
        "version": 2, "commit_hash": "0" * 40, "env_name": "virtualenv-py3.11-numpy", "date": 1,
        "result_columns": ["result", "params"], "params": {"machine": "alpha"}, "env_vars": {"BNBENCH_ENV": "numpy"},
        "results": {"bench_train.TrainStep.time_train_step": [[0.01], [["'numpy'"], ["'cpu'"], ["'float32'"], ["'tiny'"]]]}}))
    names = {"bench_train.TrainStep.time_train_step": ["impl", "device", "dtype", "size"]}
    with pytest.raises(ReportError, match="not an asv result file .FormError: label 'numpy'"):
        read_result_file(str(path), {}, names)


def test_the_report_deletes_only_a_result_file_that_a_newer_one_supersedes(results):
    """A newest run whose benchmarks all failed is the latest record of its environment: kept. An
    all-failed run older than a used run of the same machine and environment group: removed."""
    alpha = results / "asv" / "alpha"
    template = json.loads((alpha / "aaaa1111-virtualenv-py3.11-torch.json").read_text())

    def failed_run(name, date, group):
        data = dict(template, date=date, env_name=f"virtualenv-py3.11-{group}", env_vars={"BNBENCH_ENV": group})
        data["results"] = {key: [[None] * len(value[0])] + value[1:] for key, value in template["results"].items()}
        (alpha / name).write_text(json.dumps(data))

    failed_run("ffff9999-virtualenv-py3.11-mxnet.json", 5000, "mxnet")      # newest, nothing newer beside it
    failed_run("eeee8888-virtualenv-py3.11-torch.json", 10, "torch")        # older than aaaa1111's torch run
    summary = report.build(str(results))
    assert (alpha / "ffff9999-virtualenv-py3.11-mxnet.json").exists()
    assert sorted(summary["removed"]) == ["alpha/0ld0ld00-virtualenv-py3.11-torch.json",
                                          "alpha/eeee8888-virtualenv-py3.11-torch.json"]


def test_result_files_missing_a_key_are_skipped_naming_the_file_and_the_key(results):
    """A compare JSON without machine_id crashed the report (a KeyError); a sweep without its points too."""
    for folder, name, data in (("compare", "cpu-tiny-float32.json", {"tool": "bnbench compare", "rows": [], "device": "cpu",
                                                                     "dtype": "float32", "size": "tiny", "created": "x",
                                                                     "baseline": "numpy:eager"}),
                               ("scale", "cpu-batch-float32.json", {"tool": "bnbench scale", "machine_id": "alpha"})):
        (results / folder / "alpha").mkdir(parents=True, exist_ok=True)
        (results / folder / "alpha" / name).write_text(json.dumps(data))
    summary = report.build(str(results))
    assert "compare/alpha/cpu-tiny-float32.json: no 'machine_id' (str); skipped" in summary["problems"]
    assert "scale/alpha/cpu-batch-float32.json: no 'device' (str); skipped" in summary["problems"]
