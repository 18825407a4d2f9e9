"""Verdicts (bnbench.timing.verdicts): faster or slower beyond the floor's spread, equivalent where two
one-sided tests reject a difference of epsilon, undecided otherwise, on synthetic paired rounds of
known means."""
import numpy as np
import pytest

from bnbench.timing import stats, verdicts


def _interval(mean, rounds, noise=0.03, seed=0):
    rng = np.random.default_rng(seed)
    return stats.bootstrap_median(mean * np.exp(rng.normal(0.0, noise, rounds)), seed=seed)


@pytest.mark.parametrize("seed", range(5))
def test_equal_means_are_equivalent_and_never_different(seed):
    eps = verdicts.epsilon(0.005)
    assert eps == verdicts.EPSILON_LEAST
    assert verdicts.decide(_interval(1.0, 400, seed=seed), 0.005, eps) == (verdicts.EQUIVALENT, None)
    few = verdicts.decide(_interval(1.0, 6, noise=0.1, seed=seed), 0.005, eps)   # too few rounds to tell
    assert few[0] == verdicts.UNDECIDED and "equivalence margin" in few[1]


def test_unequal_means_are_faster_or_slower_beyond_the_floor():
    assert verdicts.decide(_interval(1.10, 60), 0.02, 0.02)[0] == verdicts.SLOWER
    assert verdicts.decide(_interval(0.90, 60), 0.02, 0.02)[0] == verdicts.FASTER
    # 1.5% apart, within the floor's spread of 4%: not different, but within a margin of 3%
    assert verdicts.decide(_interval(1.015, 400, noise=0.01), 0.04, verdicts.epsilon(0.04))[0] == verdicts.EQUIVALENT


def test_a_difference_within_the_floor_but_beyond_epsilon_stays_undecided():
    decided, reason = verdicts.decide(_interval(1.05, 400, noise=0.01), 0.08, verdicts.epsilon(0.08))
    assert verdicts.epsilon(0.08) == verdicts.EPSILON_MOST
    assert decided == verdicts.UNDECIDED and "1 ± 0.080" in reason and "1 ± 0.030" in reason


def test_epsilon_is_the_floor_s_spread_within_bounds_unless_asked_for():
    assert verdicts.epsilon(0.025) == 0.025 and verdicts.epsilon(0.0) == 0.02 and verdicts.epsilon(0.2) == 0.03
    assert verdicts.epsilon(0.2, asked=0.1) == 0.1
    with pytest.raises(ValueError, match="epsilon 0 must be above 0"):
        verdicts.epsilon(0.02, asked=0)
    assert verdicts.decide(None, 0.02, 0.02) == (verdicts.UNDECIDED, "no round counted on both sides")


def test_the_short_table_ranks_rows_with_their_verdicts():
    from bnbench.comparisons.compare import verdict_table
    from bnbench.timing.rows import Row, Verdict

    def row(label, ratio, **fields):
        framework, mode = label.split(":")
        return Row(framework=framework, mode=mode, label=label, verified=True, ratio=ratio, ci_low=ratio * 0.99,
                   ci_high=ratio * 1.01, rounds_counted=12, **fields).to_json()

    result = {"baseline": "numpy:eager", "rows": [
        row("jax:jit", 0.5, vs_baseline=Verdict("faster", epsilon=0.02).to_json()),
        row("numpy:eager", 1.0, vs_next_faster=Verdict("slower").to_json()),
        row("torch:eager", 1.01, vs_baseline=Verdict("equivalent", epsilon=0.02).to_json(),
            vs_next_faster=Verdict("undecided").to_json()),
        Row(framework="mlx", mode="eager", label="mlx:eager", verified=False, not_timed="not installed").to_json()]}
    lines = verdict_table(result).splitlines()
    assert lines[0].split()[:4] == ["rank", "framework", "mode", "ratio"]
    assert lines[2].split() == ["1", "jax", "jit", "0.500", "[0.495,", "0.505]", "12", "faster", "-"]
    assert lines[3].split()[-2:] == ["baseline", "slower"]
    assert lines[4].split()[-3:] == ["equivalent", "+-2.0%", "undecided"]
    assert lines[5] == "not timed: mlx:eager"
