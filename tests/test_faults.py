"""A worker that dies, hangs or babbles costs its own row, never the run (bnbench.timing.worker,
bnbench.timing.rounds): each fault is put into a real worker process of a real `bnbench compare`,
and the run must finish within the fault's deadline, write its JSON with the other rows timed, and
name the failed row and why."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from bnbench import cli
from bnbench.timing import protocol, rounds
from bnbench.timing import worker as worker_module
from bnbench.timing.protocol import ProtocolError, WorkerFault, encode_message, read_message
from bnbench.timing.worker import Placement, WorkerProcess, worker_for

TWIN = "numpy:eager#2"
# short bursts and settles: a round of the baseline, its control, a twin and the peak in about 0.5 s
FAST = {"burst_seconds": 0.05, "settle_seconds": 0.01}


def compare(tmp_path, monkeypatch, *extra, budget="4"):
    """`bnbench compare` of numpy against itself, in this process (its workers are real processes);
    (exit status, the JSON it wrote, seconds it took)."""
    real_settings = rounds.Settings

    def fast_settings(*args, **kwargs):
        return real_settings(*args, **dict(kwargs, **FAST))

    monkeypatch.setattr("bnbench.comparisons.compare.Settings", fast_settings)
    out = tmp_path / "compare.json"
    began = time.monotonic()
    status = cli.main(["compare", "--frameworks", "numpy,numpy", "--size", "tiny", "--budget", budget, "--sets", "1",
                       "--json", str(out), "--quiet", *extra])
    took = time.monotonic() - began
    assert out.exists(), "no JSON written"
    return status, json.loads(out.read_text()), took


def fault_at_burst(monkeypatch, label, burst_number, fault):
    """``fault(pid)`` applied to ``label``'s worker just before its ``burst_number``-th burst."""
    real = rounds._measure

    def measure(participant, settings):
        if participant.label == label and len(participant.medians) == burst_number - 1:
            fault(participant.process_id)
        return real(participant, settings)

    monkeypatch.setattr(rounds, "_measure", measure)


def rows_by_label(result):
    return {row["label"]: row for row in result["rows"]}


@pytest.mark.slow
def test_a_worker_that_dies_mid_rounds_fails_its_own_row(tmp_path, monkeypatch):
    fault_at_burst(monkeypatch, TWIN, 2, lambda pid: os.kill(pid, signal.SIGKILL))
    status, result, took = compare(tmp_path, monkeypatch)
    rows = rows_by_label(result)
    assert rows[TWIN]["not_timed"].startswith("failed: died from signal SIGKILL in 'burst' in round 2"), rows[TWIN]
    assert rows[TWIN]["framework"] == "numpy" and rows[TWIN]["mode"] == "eager"
    assert rows["numpy:eager"]["ratio"] is not None and result["peak"]["gflops"] > 0
    assert result["rounds"] >= 2 and status == 1       # a row failed: the exit status says so


@pytest.mark.slow
def test_a_worker_that_hangs_is_killed_at_its_burst_s_deadline(tmp_path, monkeypatch):
    monkeypatch.setattr(worker_module, "BURST_DEADLINE_CONSTANT_S", 2.0)
    stopped = []

    def stop(pid):
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)

    fault_at_burst(monkeypatch, TWIN, 2, stop)        # its first burst had the calls' deadline (it may compile)
    status, result, took = compare(tmp_path, monkeypatch)
    deadline = worker_module.burst_deadline(FAST["burst_seconds"], rounds.participants_module.MIN_BURST_STEPS, None)
    rows = rows_by_label(result)
    assert rows[TWIN]["not_timed"].startswith(f"failed: timed out after {deadline:.3g} s in 'burst' in round 2"), rows[TWIN]
    assert rows["numpy:eager"]["ratio"] is not None and status == 1
    with pytest.raises(ProcessLookupError):      # killed, not left stopped
        for _ in range(50):
            os.kill(stopped[0], 0)
            time.sleep(0.1)
    assert took < 120


@pytest.mark.slow
def test_a_framework_that_prints_at_import_cannot_reach_the_protocol(tmp_path, monkeypatch):
    """Every worker's interpreter prints to stdout before anything else runs (a sitecustomize): the
    run goes on, every row timed, and what it printed is in no row."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.stdout.write('hello from a chatty framework\\n')\n"
                                           "sys.stdout.flush()\n")
    monkeypatch.setenv("PYTHONPATH", str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    status, result, _ = compare(tmp_path, monkeypatch)
    rows = rows_by_label(result)
    assert rows[TWIN]["ratio"] is not None and rows["numpy:eager"]["ratio"] is not None, rows
    assert status == 0 and "hello" not in json.dumps(result)


@pytest.mark.slow
def test_a_baseline_that_dies_stops_the_rounds_and_publishes_what_was_done(tmp_path, monkeypatch):
    fault_at_burst(monkeypatch, "numpy:eager", 3, lambda pid: os.kill(pid, signal.SIGKILL))
    status, result, _ = compare(tmp_path, monkeypatch, budget="30")
    assert result["stopped"] == "baseline failed" and result["rounds"] == 2 and result["seconds"] > 0
    assert "numpy:eager died from signal SIGKILL in 'burst' in round 3" in result["failure"]
    assert rows_by_label(result)[TWIN]["ratio"] is not None and status == 1


def test_bytes_that_are_not_the_protocol_s_are_refused_and_quoted(tmp_path):
    """A worker that writes text where a message belongs: the first call fails at once, quoting it
    (it was read as a length: 'hell' is 1.7 GB)."""
    script = tmp_path / "python"
    # started as `python -m bnbench.timing.server IN OUT`: OUT is its fourth argument
    script.write_text(f"#!{sys.executable}\nimport os, sys, time\nos.write(int(sys.argv[4]), b'hello, I am a framework')\n"
                      "time.sleep(30)\n")
    script.chmod(0o755)
    began = time.monotonic()
    with pytest.raises(WorkerFault, match=r"not a message of the protocol to its stream: b'hello, I am a framework'"):
        WorkerProcess(Placement(python=str(script), where="a chatty test worker"))
    assert time.monotonic() - began < 15


def test_the_protocol_refuses_a_header_it_cannot_hold(tmp_path):
    data = protocol.MAGIC + (protocol.MAX_HEADER_BYTES + 1).to_bytes(4, "big") + b"{}"
    path = tmp_path / "message"
    path.write_bytes(data)
    with open(path, "rb") as stream, pytest.raises(ProtocolError, match="announced a header of"):
        read_message(stream)
    path.write_bytes(encode_message({"op": "x"})[:-8] + (protocol.MAX_PAYLOAD_BYTES + 1).to_bytes(8, "big"))
    with open(path, "rb") as stream, pytest.raises(ProtocolError, match="announced a payload"):
        read_message(stream)


def test_a_call_past_its_deadline_kills_the_worker_and_removes_its_files():
    worker = worker_for(Placement(python=sys.executable, where="a test worker", env=(("BNBENCH_TEST", "deadline"),)))
    folder = worker.folder
    os.kill(worker.process.pid, signal.SIGSTOP)
    began = time.monotonic()
    with pytest.raises(WorkerFault, match=r"timed out after 1 s during 'hello'") as info:
        worker.call("hello", deadline_s=1.0)
    assert time.monotonic() - began < 1.0 + worker_module.EXIT_WAIT_S
    assert info.value.reason == "timed out after 1 s in 'hello'"
    assert worker.process.returncode == -signal.SIGKILL and not os.path.exists(folder)
    with pytest.raises(WorkerFault, match="timed out"):       # a dead worker answers at once
        worker.call("hello")
    fresh = worker_for(worker.placement)                        # and is replaced when asked for again
    assert fresh is not worker and fresh.call("hello")[0]["ok"]


def test_a_worker_never_imports_from_the_caller_s_directory(tmp_path, monkeypatch):
    """A `bnbench/timing/server.py` planted where the caller runs is not the worker that starts."""
    planted = tmp_path / "bnbench" / "timing"
    planted.mkdir(parents=True)
    marker = tmp_path / "planted-module-ran"
    (tmp_path / "bnbench" / "__init__.py").write_text("")
    (planted / "__init__.py").write_text("")
    (planted / "server.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    monkeypatch.chdir(tmp_path)
    worker = worker_for(Placement(python=sys.executable, where="a test worker", env=(("BNBENCH_TEST", "planted"),)))
    assert worker.call("hello")[0]["protocol"] == protocol.PROTOCOL
    assert not marker.exists()
    worker.close()


def test_a_worker_whose_caller_is_killed_exits_and_removes_its_folder(tmp_path):
    """A caller killed before it could close its workers (pytest-xdist ends its workers so when
    their teardown runs long): the worker reads the end of its stream, exits and takes its folder
    and log with it."""
    script = ("import os, sys\n"
              "from bnbench.timing.worker import Placement, worker_for\n"
              "worker = worker_for(Placement(python=sys.executable, where='an orphan'))\n"
              "print(worker.folder, worker.process.pid, flush=True)\n"
              "os.kill(os.getpid(), 9)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == -signal.SIGKILL, done.stderr
    folder, pid = done.stdout.split()
    deadline = time.monotonic() + 30
    while (os.path.exists(folder) or _alive(int(pid))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(folder) and not _alive(int(pid))


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:           # a zombie has exited
        return handle.read().split(")")[-1].split()[0] != "Z"


def test_a_closed_worker_leaves_no_log_or_folder_behind():
    worker = worker_for(Placement(python=sys.executable, where="a test worker", env=(("BNBENCH_TEST", "leftovers"),)))
    folder = worker.folder
    assert os.path.exists(worker.log_path)
    worker.close()
    assert worker.process.returncode == 0 and not os.path.exists(folder)
