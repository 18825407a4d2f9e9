"""What a run of rounds publishes (bnbench.timing.summary), on synthetic rounds: the rounds the
machine ran disturbed are read from the baseline beside every burst and left out, and said so."""
import numpy as np
import pytest

from bnbench.timing import summary
from bnbench.timing.participant import Participant


def _participant(label, medians, references):
    framework, mode = label.split(":")
    return Participant(framework, mode, label, medians=list(medians), references=list(references), flops=1e9)


def _kept(mask):
    return summary.Kept(np.asarray(mask, bool), np.zeros(len(mask), int), seed=0)


def _two_states(rng, rounds, slow_share, row_fast, row_slow, noise=0.03):
    """A baseline of 5 ms that runs 1.6 times slower in the slow rounds, and a row whose ratio to
    it is ``row_fast`` in the fast state and ``row_slow`` in the slow one."""
    slow = rng.random(rounds) < slow_share
    beside = 5e-3 * np.where(slow, 1.6, 1.0) * np.exp(rng.normal(0, noise, rounds))
    row = beside * np.where(slow, row_slow, row_fast) * np.exp(rng.normal(0, noise, rounds))
    baseline = _participant("numpy:eager", beside, beside)
    return baseline, _participant("mlx:compiled", row, beside), slow


def test_the_rounds_of_a_disturbed_machine_are_left_out_and_said_so():
    rng = np.random.default_rng(0)
    baseline, row, slow = _two_states(rng, 40, 0.7, row_fast=30.0, row_slow=18.0)
    assert slow.sum() > 20                  # more than half the rounds in the slow state
    kept = summary.undisturbed(baseline)
    assert np.array_equal(kept, ~slow)
    assert summary.ratio(row, _kept(kept)).estimate == pytest.approx(30.0, rel=0.02)
    everything = np.ones_like(kept)
    assert summary.ratio(row, _kept(everything)).estimate < 25.0          # over every round: the slow state's
    state = summary.state_of(baseline, kept)
    assert state["of"] == 40 and state["rounds"] == int((~slow).sum())
    assert state["left_out_slower"] == pytest.approx(1.6, rel=0.05) and state["baseline_step_s"] == pytest.approx(5e-3, rel=0.05)


def test_two_runs_in_different_states_agree_on_their_undisturbed_rounds():
    """The case measured on the 2-core EPYC: one run half in the slow state, the next hardly; over
    every round their ratios differ by about a fifth, over the undisturbed ones by about the noise."""
    rng = np.random.default_rng(1)
    first = _two_states(rng, 30, 0.5, 30.0, 18.0)
    second = _two_states(rng, 30, 0.1, 30.0, 18.0)
    ratios = [summary.ratio(row, _kept(summary.undisturbed(baseline))).estimate for baseline, row, _ in (first, second)]
    mixed = [summary.ratio(row, _kept(np.ones(30, bool))).estimate for baseline, row, _ in (first, second)]
    assert abs(ratios[1] / ratios[0] - 1) < 0.03
    assert abs(mixed[1] / mixed[0] - 1) > 0.1


def test_a_steady_machine_keeps_every_round():
    rng = np.random.default_rng(2)
    for _ in range(20):
        baseline, _, _ = _two_states(rng, 40, 0.0, 2.0, 2.0)
        assert summary.undisturbed(baseline).all()
    empty = _participant("numpy:eager", [], [])
    assert summary.undisturbed(empty).size == 0 and summary.state_of(empty, summary.undisturbed(empty))["rounds"] == 0
