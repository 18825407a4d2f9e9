"""What a run of rounds publishes (bnbench.timing.summary), on synthetic rounds: the rounds the
machine ran disturbed are read from the baseline beside every burst and left out, and said so."""
import dataclasses
import json

import numpy as np
import pytest

from bnbench.timing import summary
from bnbench.timing.participant import Participant
from bnbench.timing.rows import Row


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
    state = summary.state_of(baseline, kept, summary.disturbed_above(baseline))
    assert state["limit_s"] == pytest.approx(5e-3 * 1.25, rel=0.05)
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
    assert summary.undisturbed(empty).size == 0 and summary.state_of(empty, summary.undisturbed(empty), float("nan"))["rounds"] == 0


def test_a_burst_beside_a_disturbed_baseline_is_left_out_of_its_row():
    """The state changed within a round: the round's baseline (a median over its bursts) read
    undisturbed while the baseline beside one row's burst ran 1.6 times slower, and that row's ratio
    with it (MXNet's 1.33 instead of 2.1, measured). Its own rounds leave those bursts out; the
    round's mask alone kept them, and half of them moved the median."""
    rng = np.random.default_rng(5)
    fast = 5e-3 * np.exp(rng.normal(0, 0.01, 10))
    baseline = _participant("numpy:eager", fast, fast)
    slow_beside = np.arange(10) < 5
    beside = fast * np.where(slow_beside, 1.6, 1.0)
    row = _participant("mxnet:hybrid", beside * np.where(slow_beside, 1.33, 2.1), beside)
    kept = summary.Kept.over(baseline, None, seed=0)
    assert kept.mask.all()                                             # every round read undisturbed
    own = kept.of(row)
    assert np.array_equal(own.mask, ~slow_beside)
    assert summary.ratio(row, kept).estimate == pytest.approx(2.1) and summary.ratio(row, kept).rounds == 5
    assert _kept(kept.mask).interval(summary.normalised(row)).estimate < 2.0     # the round's mask alone
    with pytest.raises(ValueError, match="mxnet:hybrid: 3 rounds in a run of 10"):
        kept.of(_participant("mxnet:hybrid", [1.0] * 3, [1.0] * 3))
    # a shorter run: the fastest tenth of its rounds is one round, and the rounds' rule alone applies
    short = summary.Kept.over(_participant("numpy:eager", fast[:9], fast[:9]), None, seed=0)
    assert not short.per_burst
    assert short.of(_participant("mxnet:hybrid", row.medians[:9], row.references[:9])).mask.all()


def test_a_row_whose_every_burst_ran_beside_a_disturbed_baseline_is_not_timed_and_says_why():
    """No figure taken over nothing: the JSON holds no NaN, and the row says why it has none."""
    from bnbench.timing.rounds import Settings
    from bnbench.timing.workload import spec_for

    def participant(label, medians, references):
        framework, mode = label.split(":")
        return Participant(framework, mode, label, medians=list(medians), references=list(references),
                           latencies=list(medians), steps=[3] * 10, busy_after=[0.0] * 10, flops=1e9)

    fast = 5e-3 * np.exp(np.random.default_rng(6).normal(0, 0.01, 10))
    baseline = participant("numpy:eager", fast, fast)
    beside_slow = participant("jax:jit", 2 * 1.6 * fast, 1.6 * fast)
    steady = participant("mxnet:hybrid", 2.1 * fast, fast)
    out = summary.result(Settings(items=[("numpy", "eager"), ("jax", "jit"), ("mxnet", "hybrid")], control=False),
                         [baseline, beside_slow, steady], None, None, baseline, spec_for("tiny", "float32"), 64,
                         "budget", 1.0, 0.0, peak_problem=None, ceilings=[], placement="workers not pinned to cores",
                         sets=[0] * 10)
    json.dumps(out, allow_nan=False)
    # the writer writes every field of a row, and nothing else (bnbench.timing.rows)
    assert all(list(row) == [f.name for f in dataclasses.fields(Row)] for row in out["rows"])
    assert out["undisturbed"]["per_burst"] is True
    rows = {row["label"]: row for row in out["rows"]}
    assert rows["jax:jit"]["ratio"] is None and rows["jax:jit"]["not_timed"].startswith("no round counted: the baseline")
    assert rows["mxnet:hybrid"]["ratio"] == pytest.approx(2.1) and rows["mxnet:hybrid"]["rounds_counted"] == 10
    assert rows["mxnet:hybrid"]["vs_next_faster"]["label"] == "numpy:eager"
    assert rows["mxnet:hybrid"]["vs_baseline"]["verdict"] == "slower" and rows["numpy:eager"]["vs_baseline"] is None


def test_a_row_says_how_far_apart_its_process_sets_stand():
    """Two sets of workers whose row ran 2.0 and 2.4 times the baseline: the row says they stand 20%
    apart (the baseline, against itself, none)."""
    from bnbench.timing.rounds import Settings
    from bnbench.timing.workload import spec_for

    rng = np.random.default_rng(7)
    fast = 5e-3 * np.exp(rng.normal(0, 0.01, 16))
    sets = [0] * 8 + [1] * 8
    row = np.where(np.asarray(sets) == 0, 2.0, 2.4) * fast * np.exp(rng.normal(0, 0.01, 16))

    def participant(label, medians):
        framework, mode = label.split(":")
        return Participant(framework, mode, label, medians=list(medians), references=list(fast),
                           latencies=list(medians), steps=[3] * 16, busy_after=[0.0] * 16, flops=1e9)

    baseline, apart = participant("numpy:eager", fast), participant("mxnet:hybrid", row)
    out = summary.result(Settings(items=[("numpy", "eager"), ("mxnet", "hybrid")], control=False), [baseline, apart],
                         None, None, baseline, spec_for("tiny", "float32"), 64, "budget", 1.0, 0.0, peak_problem=None,
                         ceilings=[], placement="workers not pinned to cores", sets=sets)
    rows = {row["label"]: row for row in out["rows"]}
    assert rows["mxnet:hybrid"]["sets_apart"] == pytest.approx(0.2, abs=0.02)
    assert rows["numpy:eager"]["sets_apart"] is None


def test_a_fraction_of_peak_above_one_is_an_error_in_the_peak_and_never_published():
    """keras-jax read 1.06 of a peak that an environment's forced Haswell kernel had halved."""
    from bnbench.timing.rows import Peak, Row
    from bnbench.timing.summary import refuse_fractions_above_one

    def row(label, **fields):
        return Row(framework=label.split(":")[0], mode=label.split(":")[1], label=label, verified=True, **fields)

    rows = [row("keras-jax:compiled", fraction_of_peak=1.06, fraction_ci_low=1.01, fraction_ci_high=1.1),
            row("numpy:eager", fraction_of_peak=0.5, fraction_ci_low=0.48, fraction_ci_high=0.52),
            row("mlx:eager", not_timed="not installed")]
    rows, peak = refuse_fractions_above_one(rows, Peak(gflops=207.0))
    assert "keras-jax:compiled 1.06" in peak.error and "not the machine's fastest matmul" in peak.error
    assert all(r.fraction_of_peak is None and r.fraction_ci_low is None and r.fraction_ci_high is None for r in rows)
    assert len(rows) == 3 and peak.gflops == 207.0
    fine, peak = refuse_fractions_above_one([row("numpy:eager", fraction_of_peak=0.5)], Peak(gflops=400.0))
    assert peak.error is None and fine[0].fraction_of_peak == 0.5
