"""The prepared GPU run (scripts/gpu-run.sh) in its CPU dry run: the same script, the same
commands and code paths (the wheels it would carry, verification, the tuning logs, bursts queued
with their latency beside, xlarge listed and skipped with its reason, caviar), with --device cpu,
tiny only and short budgets. The GPU run itself happens on a lent machine (docs/GUIDE.md)."""
import json
import os
import subprocess
import sys

import pytest

from bnbench.catalogue import wheelhouse
from tests.conftest import require_adapter

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts")


@pytest.mark.slow
def test_dry_run_verifies_tunes_compares_and_summarises(tmp_path):
    require_adapter("torch")
    require_adapter("jax")
    # the two frameworks the lent GPU machine has; on this CPU the others that declare cuda
    # (TensorFlow, Paddle, the Keras backends) would import too and only lengthen the dry run
    env = dict(os.environ, PYTHON=sys.executable, BNBENCH_GPU_BUDGET="2", BNBENCH_GPU_FRAMEWORKS="torch,jax")
    done = subprocess.run(["bash", os.path.join(SCRIPTS, "gpu-run.sh"), "--dry-run", str(tmp_path)], capture_output=True,
                          text=True, env=env, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (machine,) = os.listdir(tmp_path / "compare")
    verified = json.loads((tmp_path / "verify" / machine / "cpu.json").read_text())
    statuses = {(r["framework"], r["mode"], r["dtype"]): r["status"] for r in verified["rows"]}
    # the dry run verifies float32 (the GPU run float32, float64 and tf32; float64 on the CPU is the
    # equivalence suite's)
    assert statuses == {(f, m, "float32"): "pass" for f, modes in (("torch", ("eager", "compiled")), ("jax", ("eager", "jit")))
                        for m in modes}
    result = json.loads((tmp_path / "compare" / machine / "cpu-tiny-float32.json").read_text())
    assert result["baseline"] == "torch:compiled" and result["machine_id"] == machine
    assert {row["label"] for row in result["rows"]} == {"torch:eager", "torch:compiled", "jax:eager", "jax:jit"}
    assert result["timing"].startswith("steps queued")            # the GPU's path, taken on the CPU
    assert all(row["verified"] and row["ratio"] > 0 and row["latency_s"] > 0 for row in result["rows"])
    assert result["peak"]["gflops"] > 0 and result["floor"]["ratio"] > 0
    assert "xlarge skipped: xlarge is a workload for cuda" in done.stdout
    assert not (tmp_path / "compare" / machine / "cpu-xlarge-float32.json").exists()
    log = json.loads((tmp_path / "tuning-logs" / machine / "jax.json").read_text())   # written under the machine's id
    assert log["device"] == "cpu" and len(log["forms"]) >= 4 and log["compare"]["tiny"]["floor"]["ratio"] > 0
    caviar = json.loads((tmp_path / "tuning" / "jax-caviar-cpu" / "summary.json").read_text())
    assert caviar["style"] == "caviar" and caviar["models_per_program"] == 8 and caviar["n_trials_complete"] == 16
    assert caviar["throughput"]["caviar_models_per_second"] > 0 and caviar["throughput"]["panda_models_per_second"] > 0
    # the summary table names every row with its verification in every dtype
    assert "baseline torch:compiled" in done.stdout and done.stdout.count("pass/-/-") == 4
    assert "caviar on cpu: 16 models" in done.stdout


@pytest.mark.slow
def test_the_wheelhouse_s_dry_run_plans_what_the_gpu_machine_lacks():
    """What travels and what stays behind, resolved by pip for the lent machine's Python 3.12 and
    sized on PyPI, downloading nothing (this needs PyPI, as make test does)."""
    try:
        manifest = wheelhouse.build("unused", dry_run=True)
    except OSError as error:          # no network: nothing to plan with
        pytest.skip(f"PyPI unreachable: {error}")
    frameworks = manifest["frameworks"]
    assert frameworks["torch"]["note"] == frameworks["jax"]["note"] == "the lent GPU machine has it"
    keras = {wheel["name"].lower() for wheel in frameworks["keras-jax"]["wheels"]}
    assert frameworks["keras-jax"]["travels"] and "keras" in keras and not keras & {"numpy", "jax", "torch"}
    assert frameworks["bnbench (tuning)"]["travels"]
    carried = sum(entry["bytes"] for entry in frameworks.values() if entry.get("travels"))
    assert carried <= wheelhouse.LIMIT_BYTES
    tensorflow = frameworks["tensorflow"]
    assert not tensorflow["travels"] and "MiB" in tensorflow["reason"] and tensorflow["bytes"] > wheelhouse.LIMIT_BYTES


def test_the_wheelhouse_carries_the_smallest_sets_that_fit():
    plans = {"a": {"travels": True, "wheels": [{"wheel": "x.whl", "bytes": 30}], "bytes": 30},
             "b": {"travels": True, "wheels": [{"wheel": "x.whl", "bytes": 30}, {"wheel": "y.whl", "bytes": 10}], "bytes": 40},
             "c": {"travels": True, "wheels": [{"wheel": "z.whl", "bytes": 50}], "bytes": 50}}
    decided = wheelhouse.decide(plans, limit=60)
    assert decided["a"]["travels"] and decided["b"]["travels"]          # x.whl counted once
    assert not decided["c"]["travels"] and "more than the 0 MiB left" in decided["c"]["reason"]
