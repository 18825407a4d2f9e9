"""`bnbench tune`: scales, reproducible random draws, coarse-to-fine narrowing, resuming a killed
search without losing or repeating trials (the killed trial found by Optuna's heartbeat and tried
again), and caviar (many models at once) equal to training one by one."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from bnbench.cli import main  # noqa: E402
from bnbench.tuning import slots, storage, trial  # noqa: E402
from bnbench.tuning import space as tune_space  # noqa: E402
from bnbench.tuning import study as tune_study  # noqa: E402
from bnbench.tuning.settings import Settings  # noqa: E402

from .conftest import require_adapter  # noqa: E402


def settings(tmp_path, **changes):
    fields = dict(framework="numpy", trials=6, strategy="random", style="panda", study="s", storage=None, seed=3,
                  epochs=1, results=str(tmp_path), progress=False)
    fields.update(changes)
    return Settings(**fields)


@pytest.mark.parametrize("space, message", [
    ({"learning_rate": {"scale": "log", "low": 0, "high": 1}}, "'learning_rate': a log scale needs low > 0, got low = 0"),
    ({"beta1": {"scale": "one_minus_log", "low": 0.9, "high": 1.0}}, "'beta1': 1 - beta on a log scale needs 0 <= low < high < 1"),
    ({"learning_rate": {"scale": "log", "low": 1, "high": 0.1}}, "'learning_rate': low = 1 must be below high = 0.1"),
    ({"learning_rate": {"scale": "cubic", "low": 1, "high": 2}}, "scale 'cubic' is not one of"),
    ({"momentum": {"scale": "log", "low": 0.1, "high": 1}}, "'momentum' is not tunable"),
    ({"hidden_units": {"scale": "int", "low": 10.5, "high": 20}}, "integer bounds"),
    ({"learning_rate": {"scale": "log", "low": 1e-3, "high": "big"}}, "high = 'big' is not a finite number"),
    ({"learning_rate": {"scale": "log", "lo": 1e-3, "high": 1}}, "unknown key(s) lo"),
    ({}, "non-empty"),
])
def test_bad_search_spaces_are_rejected_by_name(space, message):
    with pytest.raises(tune_space.TuneError) as info:
        tune_space.load_space(space)
    assert message in str(info.value)


def test_draws_are_uniform_on_the_right_scale(tmp_path):
    study = optuna.create_study(direction="maximize")
    s = settings(tmp_path, trials=2000)
    values = [slots.ask(study, s, i)[1] for i in range(2000)]
    r = np.log10([v["learning_rate"] for v in values])
    assert r.min() >= -4 and r.max() <= 0
    assert np.histogram(r, bins=4, range=(-4, 0))[0].min() > 400            # ~500 in each decade
    q = np.log10([1 - v["beta1"] for v in values])                            # 1 - beta from 0.001 to 0.1
    assert q.min() >= -3 - 1e-9 and q.max() <= -1 + 1e-9
    assert np.histogram(q, bins=2, range=(-3, -1))[0].min() > 900
    assert {v["n_layers"] for v in values} == {1, 2, 3} and {v["hidden_units"] for v in values} == {64, 128, 192, 256}


def test_draws_are_reproducible_from_the_seed(tmp_path):
    first = [slots.ask(optuna.create_study(direction="maximize"), settings(tmp_path), 0)[1] for _ in range(2)]
    assert first[0] == first[1]
    other = slots.ask(optuna.create_study(direction="maximize"), settings(tmp_path, seed=4), 0)[1]
    assert other != first[0]


def test_narrowing_stays_inside_and_keeps_the_best():
    lr = tune_space.DEFAULT_SPACE["learning_rate"]
    narrow = lr.narrowed([0.01, 0.03, 0.02])
    assert lr.low <= narrow.low < 0.01 and 0.03 < narrow.high <= lr.high and narrow.high / narrow.low < 100
    beta = tune_space.DEFAULT_SPACE["beta1"].narrowed([0.99, 0.995])
    assert 0.9 <= beta.low < 0.99 and 0.995 < beta.high <= 0.999
    units = tune_space.DEFAULT_SPACE["hidden_units"].narrowed([128, 128, 192])
    assert units.low <= 128 and units.high >= 192 and (units.high - units.low) % 64 == 0


def test_coarse_to_fine_rounds_narrow_the_learning_rate(tmp_path):
    s = settings(tmp_path, trials=9, strategy="coarse-to-fine", rounds=3)
    summary = tune_study.run(s)
    assert summary["n_trials_complete"] == 9 and [r["trials"] for r in summary["rounds"]] == [3, 3, 3]
    spans = [math.log10(r["space"]["learning_rate"]["high"] / r["space"]["learning_rate"]["low"]) for r in summary["rounds"]]
    assert spans[0] == pytest.approx(4) and spans[1] < 4 and spans[2] < 4
    for key in ("best_params", "val_accuracy", "test_accuracy", "n_trials_complete", "trials_per_second", "framework",
                "style", "strategy"):
        assert key in summary
    assert 0 <= summary["test_accuracy"] <= 1 and 0 <= summary["val_accuracy"] <= 1
    folder = tmp_path / "tuning" / "s"
    assert json.loads((folder / "summary.json").read_text())["n_trials_complete"] == 9
    assert (folder / "accuracy_vs_learning_rate.png").stat().st_size > 5000 and (folder / "learning_curves.png").exists()
    assert "round 2" in (folder / "summary.md").read_text()


def _finished(storage, study):
    """Complete or pruned: the trials that count against --trials."""
    if not os.path.exists(storage[len("sqlite:///"):]):
        return []
    try:
        loaded = optuna.load_study(study_name=study, storage=storage)
    except Exception:      # not created yet, or being created
        return []
    return [t for t in loaded.get_trials(deepcopy=False)
            if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]


def test_a_killed_search_resumes_without_losing_or_repeating_trials(tmp_path):
    storage = f"sqlite:///{tmp_path / 'tuning' / 'killed' / 'study.db'}"
    command = [sys.executable, "-m", "bnbench.cli", "tune", "--framework", "numpy", "--style", "panda", "--strategy",
               "random", "--trials", "400", "--epochs", "2", "--study", "killed", "--results", str(tmp_path), "--quiet",
               "--heartbeat", "1"]      # the killed trial is found stale 3 s after its last beat
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and len(_finished(storage, "killed")) < 3 and process.poll() is None:
        time.sleep(0.5)
    process.send_signal(signal.SIGKILL)          # no clean-up at all
    process.wait()
    before = {t.number: t.params for t in _finished(storage, "killed")}
    assert 3 <= len(before) < 400, "the search must be interrupted half-way"
    command[command.index("400")] = str(len(before) + 4)
    resumed = subprocess.run(command, timeout=300, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    after = {t.number: t.params for t in _finished(storage, "killed")}
    assert len(after) == len(before) + 4
    assert all(after[number] == params for number, params in before.items())      # nothing lost or redone
    draws = [tuple(sorted(p.items())) for p in after.values()]
    assert len(set(draws)) == len(draws)                                             # no draw repeated
    summary = json.loads((tmp_path / "tuning" / "killed" / "summary.json").read_text())
    assert summary["n_trials_complete"] + summary["n_trials_pruned"] == len(before) + 4
    assert summary["trials_this_run"] == 4


def test_a_worker_killed_before_its_first_heartbeat_does_not_stall_the_study(tmp_path):
    """A trial asked for by a worker that died before it beat (and before it drew its values) is
    invisible to Optuna's heartbeat check; the next worker fails it after the grace period, queues
    it again and finishes the study."""
    s = settings(tmp_path, trials=3, heartbeat=1)
    study = storage.open_study(s)
    orphan = study.ask()                        # asked, never beaten, never drawn: then the worker died
    started = time.perf_counter()
    summary = tune_study.run(s)
    assert summary["n_trials_complete"] + summary["n_trials_pruned"] == 3
    trials = optuna.load_study(study_name="s", storage=s.storage_url).get_trials()
    assert [t.state for t in trials if t.number == orphan.number] == [optuna.trial.TrialState.FAIL]
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert any(t.system_attrs.get("failed_trial") == orphan.number for t in trials)    # queued again
    assert time.perf_counter() - started < 60


def test_a_worker_killed_half_way_through_its_draw_is_retried_with_the_rest_drawn(tmp_path):
    """Each value is its own storage write, so a worker can die holding some of them (CI caught it:
    the retried trial then lacked hidden_units). The retry keeps what was drawn and draws the rest."""
    s = settings(tmp_path, trials=3, heartbeat=1)
    study = storage.open_study(s)
    orphan = study.ask()
    study._storage.record_heartbeat(orphan._trial_id)
    dimension = s.space["learning_rate"]
    drawn = dimension.suggest(orphan, dimension.optuna_name("learning_rate"))    # then the worker died
    summary = tune_study.run(s)
    assert summary["n_trials_complete"] + summary["n_trials_pruned"] == 3
    trials = optuna.load_study(study_name="s", storage=s.storage_url).get_trials()
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == orphan.number]
    assert len(retried) == 1 and retried[0].state.is_finished()
    assert retried[0].params[dimension.optuna_name("learning_rate")] == drawn
    assert set(retried[0].params) == {d.optuna_name(f) for f, d in s.space.items()}


def test_a_slot_whose_attempt_failed_stays_held_until_its_retry_is_queued(tmp_path):
    """Failing a stale trial and queueing its retry are two storage writes. A worker that claimed
    between them took the failed trial's slot with a new trial, the retry then took one more of
    the same round, and round 0 of a 40-trial, 2-round search ended with 21 trials (CI, 4 workers
    on PostgreSQL). Here each step is played in that order, in one process."""
    s = settings(tmp_path, trials=4, strategy="coarse-to-fine", rounds=2, heartbeat=1)
    study = storage.open_study(s)
    first, second = slots.claim(study, s)[0], slots.claim(study, s)[0]
    study.tell(first, 0.5)
    # the heartbeat check fails `second` (its worker died) ...
    study._storage.set_trial_state_values(second._trial_id, state=optuna.trial.TrialState.FAIL)
    assert slots.claim(study, s) is None            # ... its slot is not free: its retry is due
    callback = study._storage.get_heartbeat_stale_trial_callback()
    callback(study, study._storage.get_trial(second._trial_id))      # ... and queues it again
    retry, params = slots.claim(study, s)
    assert retry.number != second.number and params == {f: d.from_optuna(second.params[d.optuna_name(f)])
                                                         for f, d in s.space.items()}
    assert study._storage.get_trial(retry._trial_id).user_attrs[slots.ROUND_ATTR] == 0
    assert slots.claim(study, s) is None            # round 1 waits for the retry
    study.tell(retry, 0.6)
    later = [slots.claim(study, s)[0] for _ in range(2)]
    assert [study._storage.get_trial(t._trial_id).user_attrs[slots.ROUND_ATTR] for t in later] == [1, 1]
    assert slots.claim(study, s) is None            # every slot held
    assert set(study.user_attrs["space_round_1"]) == set(s.space)


def test_resuming_with_other_settings_is_refused(tmp_path):
    tune_study.run(settings(tmp_path, trials=1))
    with pytest.raises(tune_space.TuneError, match="other settings"):
        tune_study.run(settings(tmp_path, trials=2, epochs=2))


@pytest.mark.parametrize("framework", ["numpy", "jax"])
def test_caviar_equals_training_one_by_one(framework):
    """Three models of one shape trained together (stacked NumPy, jax.vmap) end where each ends
    alone (the framework's adapter, same batches): final losses and validation curves."""
    require_adapter(framework)
    from bnbench.reference import initial_parameters
    from bnbench.reference.data import load_digits, minibatches
    from bnbench.timing.frameworks import get

    data = load_digits("float32")
    specs = [tune_space.spec_for(dict(learning_rate=lr, beta1=b1, bn_momentum=bm, hidden_units=64, n_layers=2), seed=1)
             for lr, b1, bm in ((0.3, 0.9, 0.9), (0.01, 0.99, 0.95), (0.001, 0.95, 0.999))]
    curves, losses = trial.train_caviar(framework, specs, data, epochs=2, seed=5)
    assert len(curves) == len(losses) == len(specs) and all(len(curve) == 2 for curve in curves)
    for spec, curve, loss in zip(specs, curves, losses):
        adapter = get(framework)(spec, initial_parameters(spec), mode=get(framework).best_mode)
        for epoch in range(2):
            for X, y in minibatches(data.train, trial.BATCH_SIZE, seed=5, epoch=epoch):
                alone = adapter.train_step(X, y)
        assert loss == pytest.approx(alone, rel=1e-4)
        assert curve[-1] == pytest.approx(trial.accuracy(adapter.predict_proba(data.validation.X), data.validation.y), abs=1.5 / 288)


@pytest.mark.parametrize("argv, message", [
    (["--framework", "pytensor", "--style", "caviar"], "--style caviar vectorises many models in one program"),
    (["--framework", "nope"], "--framework 'nope' is unknown"),
    (["--framework", "numpy", "--study", "a/b"], "--study 'a/b' must be a plain name"),
    (["--framework", "numpy", "--trials", "0"], "'0' must be at least 1"),
    (["--framework", "numpy", "--space", "missing.json"], "search space file 'missing.json' does not exist"),
])
def test_tune_bad_flags(tmp_path, capsys, argv, message):
    assert main(["tune", "--results", str(tmp_path)] + argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not os.path.exists(tmp_path / "tuning" / "a")
