"""The prepared GPU run (scripts/gpu-run.sh) in its CPU dry run: the same script, the same
commands and code paths, with --device cpu, tiny only and a short budget. The GPU run itself
happens on a lent machine (README: "CUDA rows")."""
import json
import os
import subprocess
import sys

from tests.conftest import require_adapter

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts", "gpu-run.sh")


def test_dry_run_verifies_compares_and_summarises(tmp_path):
    require_adapter("torch")
    require_adapter("jax")
    # the two frameworks the lent GPU machine has; on this CPU the others that declare cuda
    # (TensorFlow, Paddle) would import too and only lengthen the dry run
    env = dict(os.environ, PYTHON=sys.executable, BNBENCH_GPU_BUDGET="2", BNBENCH_GPU_FRAMEWORKS="torch,jax")
    done = subprocess.run(["bash", SCRIPT, "--dry-run", str(tmp_path)], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (machine,) = os.listdir(tmp_path / "compare")
    verified = json.loads((tmp_path / "verify" / machine / "cpu.json").read_text())
    statuses = {(r["framework"], r["mode"], r["dtype"]): r["status"] for r in verified["rows"]}
    assert statuses == {(f, m, d): "pass" for f, modes in (("torch", ("eager", "compiled")), ("jax", ("eager", "jit")))
                        for m in modes for d in ("float32", "float64")}
    result = json.loads((tmp_path / "compare" / machine / "cpu-tiny-float32.json").read_text())
    assert result["baseline"] == "torch:compiled" and result["machine_id"] == machine
    assert {row["label"] for row in result["rows"]} == {"torch:eager", "torch:compiled", "jax:eager", "jax:jit"}
    assert all(row["verified"] and row["ratio"] > 0 for row in result["rows"])
    assert result["peak"]["gflops"] > 0
    # the summary table names every row with its verification in both dtypes
    assert "baseline torch:compiled" in done.stdout and done.stdout.count("pass/pass") == 4
