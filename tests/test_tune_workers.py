"""Tuning past one process: several workers on one study, on a real PostgreSQL server (never
mocked) and on the local default storage; a worker killed mid-trial has its trial failed by
Optuna's heartbeat and tried again, and the study still ends with exactly --trials finished
trials, none repeated, none left running, coarse-to-fine rounds intact."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

optuna = pytest.importorskip("optuna")

from bnbench.tuning import space as tune_space  # noqa: E402
from bnbench.tuning.settings import Settings  # noqa: E402

from .postgres import PostgresUnavailable, postgres_server  # noqa: E402

# `make test` sets it: there the PostgreSQL test must run, not skip
REQUIRED = os.environ.get("BNBENCH_REQUIRE_POSTGRES") == "1"
TRIALS = 40
State = optuna.trial.TrialState


def _missing(reason: str):
    if REQUIRED:
        pytest.fail(f"BNBENCH_REQUIRE_POSTGRES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def postgres_url():
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        _missing("psycopg2 is not installed (pip install 'bnbench[tune]')")
    server = postgres_server()
    try:
        url = server.__enter__()
    except PostgresUnavailable as error:
        _missing(str(error))
    yield url
    server.__exit__(None, None, None)


def worker_command(tmp_path, study, storage, *extra):
    return [sys.executable, "-m", "bnbench.cli", "tune", "--framework", "numpy", "--style", "panda", "--trials", str(TRIALS),
            "--epochs", "4", "--study", study, "--results", str(tmp_path), "--heartbeat", "1", "--quiet", "--seed", "2",
            *(["--storage", storage] if storage else []), *extra]


def check_study(study):
    """Exactly TRIALS finished, nothing running or queued, no parameter set twice."""
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (State.COMPLETE, State.PRUNED)]
    assert len(finished) == TRIALS
    assert not [t.number for t in trials if t.state in (State.RUNNING, State.WAITING)]
    draws = [tuple(sorted(t.params.items())) for t in finished]
    assert len(set(draws)) == len(draws)
    return trials, finished


@pytest.mark.slow
def test_four_workers_share_a_postgresql_study_and_survive_one_killed_mid_trial(postgres_url, tmp_path):
    # started together on a fresh database: they all create Optuna's tables at once
    command = worker_command(tmp_path, "shared", postgres_url, "--strategy", "coarse-to-fine", "--rounds", "2", "--worker")
    workers = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    victim, killed = workers[0], None
    try:
        deadline = time.time() + 180
        while killed is None and time.time() < deadline and victim.poll() is None:
            try:
                study = optuna.load_study(study_name="shared", storage=postgres_url)
                running = study.get_trials(deepcopy=False, states=(State.RUNNING,))
            except Exception:       # the study or its tables do not exist yet
                running = []
            for trial in running:
                if trial.user_attrs.get("pid") == victim.pid:
                    victim.send_signal(signal.SIGKILL)     # mid-trial, no clean-up at all
                    killed = trial.number
                    break
            time.sleep(0.02)
        assert killed is not None, "no trial of the first worker was caught running"
        victim.wait(timeout=30)
        for worker in workers[1:]:
            _, err = worker.communicate(timeout=600)
            assert worker.returncode == 0, err[-2000:]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials, finished = check_study(study)
    by_number = {t.number: t for t in trials}
    assert by_number[killed].state == State.FAIL
    retried = [t for t in finished if t.system_attrs.get("failed_trial") == killed]
    assert len(retried) == 1 and retried[0].params == by_number[killed].params     # drawn again, by another worker
    assert {t.user_attrs["pid"] for t in finished} <= {w.pid for w in workers[1:]} | {victim.pid}
    # coarse to fine across workers: round 1 was narrowed from all 20 finished trials of round 0
    rounds = [sum(t.user_attrs["round"] == r for t in finished) for r in (0, 1)]
    assert rounds == [TRIALS // 2, TRIALS // 2]
    settings = Settings(framework="numpy", trials=TRIALS, strategy="coarse-to-fine", style="panda", study="x",
                             storage=None, seed=2, rounds=2)
    stored = study.user_attrs["space_round_1"]
    round0 = sorted((t for t in finished if t.user_attrs["round"] == 0 and t.state == State.COMPLETE),
                    key=lambda t: (-t.value, t.number))
    best = round0[:max(3, -(-len(round0) // 4))]
    for field, dimension in settings.space.items():
        expected = dimension.narrowed([dimension.from_optuna(t.params[dimension.optuna_name(field)]) for t in best])
        assert stored[field] == expected.to_dict()
        narrowed = tune_space.Dimension.from_dict(field, stored[field])
        for t in finished:
            if t.user_attrs["round"] == 1 and "failed_trial" not in t.system_attrs:
                value = dimension.from_optuna(t.params[dimension.optuna_name(field)])
                assert min(narrowed.low, narrowed.high) - 1e-12 <= value <= max(narrowed.low, narrowed.high) + 1e-12


@pytest.mark.slow
def test_workers_flag_completes_a_study_on_the_local_default_storage(tmp_path):
    done = subprocess.run(worker_command(tmp_path, "local", None, "--strategy", "random", "--workers", "4"),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    folder = tmp_path / "tuning" / "local"
    study = optuna.load_study(study_name="local", storage=f"sqlite:///{folder / 'study.db'}")
    _, finished = check_study(study)
    assert len({t.user_attrs["pid"] for t in finished}) > 1          # the work was shared
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["workers"] == 4
    assert summary["n_trials_complete"] + summary["n_trials_pruned"] == TRIALS
    assert summary["test_accuracy"] is not None


def test_a_storage_that_cannot_be_reached_is_one_clear_line(tmp_path, capsys):
    from bnbench.cli import main

    assert main(["tune", "--framework", "numpy", "--results", str(tmp_path), "--storage",
                 "postgresql+psycopg2://someone:secret@127.0.0.1:1/nothing"]) == 1
    err = capsys.readouterr().err
    assert "cannot open the study" in err and "secret" not in err and err.count("\n") == 1


def _children(pid):
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


@pytest.mark.slow
def test_no_child_of_workers_has_the_password_on_its_command_line(postgres_url, tmp_path):
    """The URL reaches the parent through BNBENCH_TUNE_STORAGE and the children through their
    environment: no /proc/<pid>/cmdline of theirs holds the password."""
    from bnbench.tuning.storage import STORAGE_VARIABLE, secrets_of

    password = secrets_of(postgres_url)[0]
    command = worker_command(tmp_path, "secret", None, "--strategy", "random", "--workers", "2", "--trials", "6")
    parent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, **{STORAGE_VARIABLE: postgres_url}))
    seen = {}
    try:
        while parent.poll() is None:
            for child in _children(parent.pid):
                try:
                    with open(f"/proc/{child}/cmdline", "rb") as handle:
                        line = handle.read().decode(errors="replace")
                except OSError:
                    continue
                if line:            # empty once it has ended
                    seen[child] = line
            time.sleep(0.05)
        _, err = parent.communicate(timeout=600)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert parent.returncode == 0, err[-2000:]
    tune_children = [line for line in seen.values() if "bnbench.cli" in line and "--worker" in line]
    assert len(tune_children) == 2, seen
    assert not [line for line in seen.values() if password in line]


@pytest.mark.slow
def test_children_that_write_much_to_stderr_do_not_hang_the_study(tmp_path):
    """PYTHONVERBOSE makes every child print each import to stderr, megabytes of it: a pipe read
    only when the children end fills at 64 KB and hangs them."""
    command = worker_command(tmp_path, "verbose", None, "--strategy", "random", "--workers", "2", "--trials", "4")
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300,
                          env=dict(os.environ, PYTHONVERBOSE="1"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(done.stderr) > 1 << 16


def test_every_password_of_a_storage_url_is_redacted():
    from bnbench.tuning.storage import redacted, scrubbed

    url = "postgresql+psycopg2://user:p%40ss@db.example:5432/tune?sslmode=require&password=hunter2&application_name=x"
    assert redacted(url) == "postgresql+psycopg2://user:***@db.example:5432/tune?sslmode=require&password=***&application_name=x"
    assert scrubbed("could not log in as user with p@ss (hunter2)", url) == "could not log in as user with *** (***)"
    plain = "postgresql+psycopg2://user@db.example/tune"
    assert redacted(plain) == plain


def test_the_test_server_trusts_no_local_user(postgres_url):
    """The throw-away server used to trust every local connection as its superuser: without the
    password it made, a connection is refused."""
    import psycopg2

    from bnbench.tuning.storage import secrets_of

    password = secrets_of(postgres_url)[0]
    dsn = postgres_url.replace("postgresql+psycopg2://", "postgresql://")
    with pytest.raises(psycopg2.OperationalError, match="password"):
        psycopg2.connect(dsn.replace(f":{password}@", "@"), connect_timeout=10)
    psycopg2.connect(dsn, connect_timeout=10).close()
