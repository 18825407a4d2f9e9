"""The layout of a round (bnbench.timing.schedule): every burst between two of the baseline's, and
every worker of a round on the same cores; a slow core's bias, on synthetic timings."""
import numpy as np
import pytest

from bnbench.timing import schedule, stats


def test_every_burst_sits_between_the_baseline_s_two_processes():
    layout = schedule.chain([2, 0, 1], 2, 1)
    assert layout == [("anchor", 1), ("other", 2), ("anchor", 0), ("other", 0), ("anchor", 1), ("other", 1), ("anchor", 0)]
    for position, (kind, _) in enumerate(layout):
        if kind == "other":
            assert {layout[position - 1], layout[position + 1]} == {("anchor", 0), ("anchor", 1)}
    assert schedule.chain([0, 1], 1, 0) == [("anchor", 0), ("other", 0), ("anchor", 0), ("other", 1), ("anchor", 0)]
    with pytest.raises(ValueError, match="n_anchors 0"):
        schedule.chain([0], 0, 0)


def test_a_row_is_divided_by_the_bursts_beside_it_and_the_floor_by_neighbouring_anchors():
    layout = schedule.chain([1, 0], 2, 0)              # copy, other 1, control, other 0, copy
    values = [1.0, 3.0, 4.0, 5.0, 1.0]
    assert schedule.beside(layout, values) == [(1, 3.0, 2.0), (0, 5.0, 2.0)]
    # the control over the copy in both orders: 4/1 after the copy, 4/1 before it
    assert schedule.anchor_pairs(layout, values) == [4.0, 4.0]
    assert schedule.anchor_pairs(schedule.chain([0], 1, 0), [1.0, 2.0, 3.0]) == []


def _rounds_on_cores(rng, rounds, slow_core_bias, placement, noise_sd=0.01, phase_sd=0.3):
    """Burst medians of a participant and its A/A twin, identical but for the core each sits on in
    every round (core 1 runs ``slow_core_bias`` slower): ``placement(r)`` gives their cores."""
    twin, baseline = [], []
    for r in range(rounds):
        phase = np.exp(rng.normal(0.0, phase_sd))
        speed = [1.0 + slow_core_bias * (cores[0] == 1) for cores in placement(r)]
        baseline.append(1e-3 * phase * speed[0] * np.exp(rng.normal(0.0, noise_sd)))
        twin.append(1e-3 * phase * speed[1] * np.exp(rng.normal(0.0, noise_sd)))
    return np.array(twin), np.array(baseline)


def test_a_slow_core_is_cancelled_by_the_rounds_placement():
    """A 2% bias that stays with one core: with each worker left on a core of its own, the twin on
    that core looks 2% slower than its baseline, resolved; placed by the rounds' rule (every worker
    of a round on the same core, moved round by round) the bias cancels in every round and the
    A/A pair is not resolved, nor resolved beyond its floor."""
    rng = np.random.default_rng(5)
    fixed = stats.paired_ratio(*_rounds_on_cores(rng, 40, 0.02, lambda r: [[0], [1]]))
    assert fixed.resolved and fixed.estimate == pytest.approx(1.02, abs=0.006)
    rule = lambda r: schedule.core_sets(r, 2, [0, 1], 1)        # noqa: E731
    assert [rule(r) for r in range(3)] == [[[0], [0]], [[1], [1]], [[0], [0]]]
    resolved = 0
    for trial in range(40):
        twin, baseline = _rounds_on_cores(rng, 40, 0.02, rule)
        ratio = stats.paired_ratio(twin, baseline, seed=trial)
        control, _ = _rounds_on_cores(rng, 40, 0.02, rule)
        floor = stats.paired_ratio(control, baseline, seed=trial)
        resolved += stats.resolved_beyond(ratio, stats.floor_spread(floor))
    assert resolved == 0


def test_core_sets_move_every_worker_over_every_slot_together():
    assert schedule.core_sets(0, 3, [0, 1], 2) is None                  # threads cover the cores: nothing pinned
    seen = set()
    for r in range(4):
        sets = schedule.core_sets(r, 3, [0, 1, 2, 3], 2)
        assert len(sets) == 3 and all(cores == sets[0] and len(cores) == 2 for cores in sets)
        seen.add(tuple(sets[0]))
    assert seen == {(0, 1), (2, 3)}


def test_the_published_placement_says_what_the_rounds_do():
    assert schedule.placement_of(True, [0, 1, 2, 3], 2) == ("every worker of a round pinned to the same cores, "
                                                           "moved to the next cores round by round")
    assert schedule.placement_of(True, [0, 1], 2) == "workers not pinned to cores"
    assert schedule.placement_of(False, [0, 1, 2, 3], 2) == "workers not pinned to cores"
