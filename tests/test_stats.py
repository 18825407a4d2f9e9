"""The paired statistics of `bnbench compare` on synthetic timings with a known answer."""
import numpy as np
import pytest

from bnbench.timing import stats


def synthetic_rounds(rng, rounds, true_ratio, phase_sd=0.3, noise_sd=0.02):
    """Burst medians of two participants that share each round's machine phase (a common factor
    that varies a lot between rounds) and differ by ``true_ratio`` with a little noise of their own."""
    phase = np.exp(rng.normal(0.0, phase_sd, rounds))
    baseline = 1e-3 * phase * np.exp(rng.normal(0.0, noise_sd, rounds))
    other = 1e-3 * true_ratio * phase * np.exp(rng.normal(0.0, noise_sd, rounds))
    return other, baseline


def test_interval_covers_the_true_ratio_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    trials = 300
    for trial in range(trials):
        other, baseline = synthetic_rounds(rng, 40, 1.25)
        interval = stats.paired_ratio(other, baseline, seed=trial)
        covered += interval.low <= 1.25 <= interval.high
    # a percentile bootstrap of a median is a little liberal or conservative; 95% nominal
    assert 0.88 <= covered / trials <= 0.995, covered / trials


def test_pairing_removes_the_machine_phase():
    """Phases of +-30% between rounds would swamp a 5% difference unpaired; paired, it resolves."""
    rng = np.random.default_rng(2)
    other, baseline = synthetic_rounds(rng, 60, 1.05, phase_sd=0.3, noise_sd=0.01)
    paired = stats.paired_ratio(other, baseline)
    assert paired.resolved and paired.low > 1.0 and abs(paired.estimate - 1.05) < 0.01
    unpaired = stats.paired_ratio(other, np.roll(baseline, 7))      # rounds no longer matched
    assert not unpaired.resolved


def test_equal_participants_are_not_resolved():
    rng = np.random.default_rng(3)
    unresolved = 0
    for trial in range(200):
        other, baseline = synthetic_rounds(rng, 30, 1.0)
        unresolved += not stats.paired_ratio(other, baseline, seed=trial).resolved
    assert unresolved / 200 >= 0.88          # the A/A check: a false "resolved" about 5% of the time


def test_interval_is_seeded_and_deterministic():
    values = np.linspace(0.9, 1.1, 25)
    assert stats.bootstrap_median(values, seed=4) == stats.bootstrap_median(values, seed=4)
    interval = stats.bootstrap_median(values)
    assert interval.estimate == pytest.approx(1.0) and interval.low < 1.0 < interval.high and interval.rounds == 25


def test_missed_rounds_and_edge_cases():
    ratios = stats.round_ratios([2.0, np.nan, 3.0], [1.0, 1.0, 0.0])
    assert ratios[0] == 2.0 and np.isnan(ratios[1]) and np.isnan(ratios[2])
    assert stats.bootstrap_median([]).rounds == 0 and not stats.bootstrap_median([]).resolved
    one = stats.bootstrap_median([1.5])
    assert (one.estimate, one.low, one.high, one.rounds) == (1.5, 1.5, 1.5, 1)
    with pytest.raises(ValueError, match="round counts differ"):
        stats.round_ratios([1.0, 2.0], [1.0])


def test_convergence_rule():
    narrow = stats.Interval(1.0, 0.99, 1.02, 20)
    wide = stats.Interval(1.0, 0.9, 1.02, 20)
    assert narrow.relative_half_width == pytest.approx(0.02)
    assert stats.converged([narrow]) and not stats.converged([narrow, wide])
    assert not stats.converged([stats.Interval(1.0, 0.999, 1.001, 5)])          # too few rounds yet
    assert stats.Interval(1.2, 1.1, 1.3, 20).verdict() == "resolved"
    assert stats.Interval(1.2, 0.98, 1.3, 20).verdict() == "not resolved"


# --------------------------------------------------------------------------- the floor and the rotation
def test_a_row_is_resolved_only_beyond_the_floor_s_spread():
    floor = stats.Interval(1.004, 0.992, 1.015, 30)
    spread = stats.floor_spread(floor)
    assert spread == pytest.approx(0.019)                 # its reach (0.015) and its distance from 1 (0.004)
    assert not stats.resolved_beyond(stats.Interval(1.012, 1.005, 1.02, 30), spread)   # excludes 1, inside the floor
    assert stats.resolved_beyond(stats.Interval(1.05, 1.02, 1.08, 30), spread)
    assert stats.resolved_beyond(stats.Interval(0.95, 0.93, 0.98, 30), spread)
    assert not stats.resolved_beyond(stats.Interval(0.99, 0.984, 0.995, 30), spread)
    assert not stats.resolved_beyond(stats.Interval(1.022, 1.017, 1.03, 30), spread)  # beyond the reach alone
    # the A/A run that the reach alone called resolved (tiny, 10 rounds): twin 0.987 [0.984, 0.989]
    assert not stats.resolved_beyond(stats.Interval(0.987, 0.984, 0.989, 10),
                                     stats.floor_spread(stats.Interval(1.008, 1.006, 1.010, 10)))
    assert stats.floor_spread(None) == 0.0                 # no control: resolved when 1 is excluded
    assert stats.resolved_beyond(stats.Interval(1.012, 1.005, 1.02, 30), 0.0)


def test_the_budget_that_would_converge_an_interval():
    wide = stats.Interval(1.0, 0.95, 1.05, 12)             # +-5% after 60 s: four times the rounds for +-2.5%
    assert stats.budget_to_converge(wide, 60.0) == pytest.approx(240.0)
    assert stats.budget_to_converge(stats.Interval(1.0, 0.99, 1.01, 12), 60.0) == pytest.approx(60.0)
    assert stats.budget_to_converge(stats.Interval(float("nan"), float("nan"), float("nan"), 0), 60.0) is None
    assert stats.budget_to_converge(stats.Interval(1.0, 0.5, 3.0, 4), 6.0) is None        # 4 rounds tell too little


def test_the_budget_grows_only_the_share_of_the_width_that_rounds_narrow():
    """With four sets, half of a +-5% interval's variance fixed by the sets: a +-2.5% width needs a
    quarter of the variance, less than the sets' part alone, so no budget; a tenth fixed: the rounds'
    0.9 must fall to 0.15, six times the rounds (against four with all of it narrowing)."""
    wide = stats.Interval(1.0, 0.95, 1.05, 40)
    assert stats.budget_to_converge(wide, 60.0, narrowed_by_rounds=0.5) is None
    assert stats.budget_to_converge(wide, 60.0, narrowed_by_rounds=0.9) == pytest.approx(360.0)
    assert stats.budget_to_converge(wide, 60.0, narrowed_by_rounds=1.0) == pytest.approx(240.0)


def test_the_share_of_the_width_rounds_narrow_is_read_from_the_sets():
    """Sets 2% apart in turn with 2% noise over 30 rounds each: the sets' part, (S-1) b against
    (2S-1) w, is most of the variance (about 0.07 left to the rounds); sets that differ by nothing
    but their rounds leave it all, or nearly, to the rounds; one set, all of it."""
    rng = np.random.default_rng(5)
    offsets = np.array([-0.03, -0.01, 0.01, 0.03])
    apart = [stats.rounds_share([np.exp(o + rng.normal(0.0, 0.02, 30)) for o in offsets], seed=i) for i in range(10)]
    assert 0.02 < min(apart) and max(apart) < 0.2
    alike = [stats.rounds_share([np.exp(rng.normal(0.0, 0.05, 10)) for _ in offsets], seed=i) for i in range(30)]
    assert np.mean(alike) > 0.8 and min(alike) > 0.4
    assert stats.rounds_share([np.exp(rng.normal(0.0, 0.05, 10))]) == 1.0
    assert stats.rounds_share([np.ones(10), np.ones(2) * 1.1]) < 1.0        # a set of two rounds: its median counts
