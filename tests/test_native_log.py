"""Frameworks' native INFO lines are dropped from stderr; every other line reaches it unchanged."""
import os
import subprocess
import sys

import pytest

from bnbench.adapters.native_log import info_lines_dropped, quiet_first_call, without_info_lines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFO = (b"I0000 00:00:1796407440.671904    2800 port.cc:153] oneDNN custom operations are on.\n"
        b"I1204 17:40:31.123456 1604 service.cc:161]   StreamExecutor [0]: Host\n")
ABSL = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
CONTINUATION = (b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with "
                b"the appropriate compiler flags.\n")
KEPT = (b"W0000 00:00:1796407440.671904    2800 gpu.cc:1] a warning stays\n"
        b"E1204 17:40:31.123456 1604 x.cc:2] an error stays\n"
        b"Traceback (most recent call last):\n  0%|   | 0/3 [00:00<?, ?combination/s]\r 33%|#  | 1/3\n")


def test_only_info_lines_are_dropped_and_the_rest_is_kept_byte_for_byte():
    assert without_info_lines(ABSL + INFO + KEPT + CONTINUATION) == KEPT
    assert without_info_lines(KEPT) == KEPT
    assert without_info_lines(b"I0000 is not a log line\n") == b"I0000 is not a log line\n"


def test_the_block_drops_what_the_process_writes_to_descriptor_2(capfd):
    with info_lines_dropped():
        os.write(2, ABSL + INFO + KEPT)
    assert capfd.readouterr().err == KEPT.decode()


def test_an_error_inside_the_block_still_restores_stderr(capfd):
    with pytest.raises(RuntimeError):
        with info_lines_dropped():
            os.write(2, b"before the error\n")
            raise RuntimeError("inside")
    os.write(2, INFO)
    assert capfd.readouterr().err == "before the error\n" + INFO.decode()


def test_only_the_first_call_is_filtered_and_then_the_function_is_itself_again(capfd):
    class Owner:
        def step(self, x):
            os.write(2, INFO)
            return x + 1

    owner = Owner()
    function = owner.step
    quiet_first_call(owner, "step")
    assert owner.step(1) == 2 and capfd.readouterr().err == ""
    assert owner.step == function
    assert owner.step(2) == 3 and capfd.readouterr().err == INFO.decode()


def test_importing_tensorflow_through_its_adapter_prints_no_info_lines():
    """TensorFlow 2.21 ignores TF_CPP_MIN_LOG_LEVEL before absl is initialised (measured): the
    adapter's import, first variable and first XLA compilation must still print nothing."""
    code = ("import numpy as np\n"
            "from bnbench.adapters import local_class\n"
            "from bnbench.reference import Spec, initial_parameters\n"
            "from bnbench.timing.workload import spec_for, timing_batches\n"
            "cls = local_class('tensorflow')\n"
            "problem = cls.import_error()\n"
            "if problem: print('SKIP', problem); raise SystemExit(0)\n"
            "spec = spec_for('tiny', 'float32')\n"
            "X, y = timing_batches(spec, 8)\n"
            "adapter = cls(spec, initial_parameters(spec), mode='xla')\n"
            "adapter.train_step(X[0], y[0]); print(cls.version())\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("TF_")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
    if result.stdout.startswith("SKIP"):
        pytest.skip(result.stdout.strip())
    assert "I0000" not in result.stderr and "absl::InitializeLog" not in result.stderr, result.stderr
