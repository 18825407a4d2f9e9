"""`bnbench scale`: the fit of a fixed cost and a rate on synthetic timings with a known answer,
crossovers on synthetic curves, the memory reading on a known allocation, and one small sweep
through the real timing path."""
import json
import os

import numpy as np
import pytest

from bnbench.comparisons import fit as fitting
from bnbench.comparisons import scale
from bnbench.timing import stats, steps
from bnbench.timing.flops import analytic_memory

FLOPS = np.array([2e6, 8e6, 3.2e7, 1.28e8, 5.12e8, 2.05e9])


def synthetic(rng, t0, rate, rounds=20, noise_sd=0.03, phase_sd=0.0):
    """Each point's rounds: t0 + F / R, times a round's noise (a few percent)."""
    return [list((t0 + flops / rate) * np.exp(rng.normal(0.0, noise_sd, rounds) + rng.normal(0.0, phase_sd)))
            for flops in FLOPS]


def test_the_fit_recovers_a_known_fixed_cost_and_rate_within_its_intervals():
    rng = np.random.default_rng(7)
    covered = 0
    for trial in range(20):
        result = fitting.fit(FLOPS, synthetic(rng, 200e-6, 50e9), seed=trial, resamples=300)
        assert result.t0_low <= result.t0 <= result.t0_high and result.rate_low <= result.rate <= result.rate_high
        covered += result.t0_low <= 200e-6 <= result.t0_high and result.rate_low <= 50e9 <= result.rate_high
        assert result.worst_error < 0.15 and result.breaks == []
        assert result.t0 == pytest.approx(200e-6, rel=0.1) and result.rate == pytest.approx(50e9, rel=0.05)
    assert covered >= 16          # both intervals cover the truth in most runs (95% each, nominal)


def test_a_point_off_the_model_is_named():
    rng = np.random.default_rng(8)
    rounds = synthetic(rng, 100e-6, 80e9)
    rounds[2] = [value * 1.6 for value in rounds[2]]      # a switch of kernels at one point
    result = fitting.fit(FLOPS, rounds, seed=0, resamples=200)
    assert 2 in result.breaks and result.worst_error > fitting.BREAK


def test_a_crossover_is_found_with_the_intervals_on_both_sides_and_its_reason():
    """A framework with a low fixed cost and a low rate against one with a high fixed cost and a
    high rate: the first is faster on small work, the second on large; the curves cross where
    t0_a + F / R_a = t0_b + F / R_b."""
    rng = np.random.default_rng(9)
    a = synthetic(rng, 50e-6, 20e9, noise_sd=0.01)
    b = synthetic(rng, 2e-3, 100e9, noise_sd=0.01)
    fits = {"a": fitting.fit(FLOPS, a, resamples=200), "b": fitting.fit(FLOPS, b, resamples=200)}
    ratios = {"a/b": [stats.paired_ratio(x, y) for x, y in zip(a, b)]}
    sizes = [8, 16, 32, 64, 128, 256]
    crossing = 1 / (1 / 20e9 - 1 / 100e9) * (2e-3 - 50e-6)      # F where the two lines meet: 4.9e7
    (found,) = fitting.crossovers(sizes, ratios, fits)
    assert found["faster_before"] == "a" and found["faster_after"] == "b"
    i = sizes.index(found["between"][0])
    assert FLOPS[i] < crossing < FLOPS[i + 1]
    assert found["before"]["ci_high"] < 1 < found["after"]["ci_low"] and found["before"]["resolved"]
    assert "a has the lower fixed cost" in found["reason"] and "b the higher rate" in found["reason"]
    assert fitting.crossovers(sizes, {"a/a": [stats.paired_ratio(x, x) for x in a]}, fits) == []


def test_a_sign_change_inside_the_noise_floor_is_not_a_crossover():
    """Two frameworks as fast as each other within a 5% floor: their ratio crosses 1 between two
    points, but one side's interval is inside the floor, so the table lists it apart, not as a
    crossover; the resolved one beside it is told in full."""
    rng = np.random.default_rng(10)
    a = synthetic(rng, 50e-6, 20e9, noise_sd=0.01)
    b = synthetic(rng, 2e-3, 100e9, noise_sd=0.01)
    twin = [[value * 1.01 for value in point] for point in a]
    fits = {label: fitting.fit(FLOPS, series, resamples=200) for label, series in (("a", a), ("b", b), ("c", twin))}
    sizes = [8, 16, 32, 64, 128, 256]
    ratios = {"a/b": [stats.paired_ratio(x, y) for x, y in zip(a, b)],
              "a/c": [stats.paired_ratio(x, [v * (0.98 if i % 2 else 1.0) for v in y])
                      for i, (x, y) in enumerate(zip(a, twin))]}
    found = fitting.crossovers(sizes, ratios, fits, spreads=[0.05] * len(sizes))
    assert {c["pair"] for c in found} == {"a/b", "a/c"}
    sweep = {"axis": "batch", "swept": "m", "points": [{"size": s} for s in sizes], "device": "cpu",
             "dtype": "float32", "fits": [], "crossovers": found}
    resolved, unresolved = scale.resolved_crossovers(sweep)
    assert [c["pair"] for c in resolved] == ["a/b"] and unresolved and {c["pair"] for c in unresolved} == {"a/c"}
    text = scale.table(sweep)
    assert "Crossovers resolved on both sides: 1" in text and "a then b between" in text
    assert "not crossovers): " + str(len(unresolved)) in text and "a/c " in text


def _points_with_disturbed_bursts(rng, disturbed_share, per_burst):
    """A sweep's points as the rounds write them: the baseline and one framework "a" (t0 = 100 us,
    R = 40 GFLOP/s), 30 rounds a point, every round undisturbed by the round's own rule, yet in
    ``disturbed_share`` of a's bursts the baseline beside it ran 1.6x slow and a itself 1.3x."""
    points = []
    for flops in FLOPS:
        truth = (100e-6 + flops / 40e9) * np.exp(rng.normal(0.0, 0.01, 30))
        slow = rng.random(30) < disturbed_share
        references = 1e-3 * np.exp(rng.normal(0.0, 0.01, 30)) * np.where(slow, 1.6, 1.0)
        points.append({"flops": float(flops), "rows": [{"label": "a:eager", "median_step_s": 1.0}],
                       "round_medians": {"a:eager": list(truth * np.where(slow, 1.3, 1.0))},
                       "round_references": {"a:eager": list(references)}, "undisturbed_rounds": [True] * 30,
                       "undisturbed": {"per_burst": per_burst, "limit_s": 1.25e-3 if per_burst else None},
                       "slow": slow})
    return points


def test_the_fit_counts_only_the_bursts_whose_own_baseline_ran_undisturbed():
    """Where most of a framework's bursts ran beside a disturbed baseline, its fit from the counted
    bursts recovers the true rate; the same rounds taken whole (a run without the per-burst rule)
    give a rate a fifth lower. A pair counts only the rounds both its sides count."""
    rng = np.random.default_rng(12)
    points = _points_with_disturbed_bursts(rng, 0.6, per_burst=True)
    for point in points:
        values = scale.counted(point, "a:eager", point["round_medians"]["a:eager"])
        assert np.array_equal(np.isnan(values), point["slow"])
    (fit,) = scale.framework_fits(points, seed=0)
    assert fit["rate_flops"] == pytest.approx(40e9, rel=0.05)
    whole = _points_with_disturbed_bursts(np.random.default_rng(12), 0.6, per_burst=False)
    (mixed,) = scale.framework_fits(whole, seed=0)
    assert mixed["rate_flops"] < 0.85 * 40e9
    point = points[0]
    other = scale.counted(dict(point, round_references={"a:eager": point["round_references"]["a:eager"][::-1]}),
                          "a:eager", point["round_medians"]["a:eager"])
    both = stats.paired_ratio(scale.counted(point, "a:eager", point["round_medians"]["a:eager"]), other)
    assert both.rounds == int((~point["slow"] & ~point["slow"][::-1]).sum())
    # a run that says which rounds counted for a participant is read, not judged again
    said = [i % 3 != 0 for i in range(30)]
    values = scale.counted(dict(point, round_counted={"a:eager": said}), "a:eager", point["round_medians"]["a:eager"])
    assert np.array_equal(~np.isnan(values), said)


def test_a_run_says_which_rounds_counted_for_each_participant_and_a_sweep_reads_it():
    """The rounds a row's figures took (the baseline beside 4 of its 12 bursts ran 1.6 times
    slower) are written with the run and are the rounds a sweep's fit counts."""
    from bnbench.timing import summary
    from bnbench.timing.participant import Participant
    from bnbench.timing.rounds import Settings
    from bnbench.timing.workload import spec_for

    fast = 5e-3 * np.exp(np.random.default_rng(3).normal(0, 0.01, 12))
    beside = fast * np.where(np.arange(12) < 4, 1.6, 1.0)

    def participant(label, medians, references):
        framework, mode = label.split(":")
        return Participant(framework, mode, label, medians=list(medians), references=list(references),
                           latencies=list(medians), steps=[3] * 12, busy_after=[0.0] * 12, flops=1e9)

    baseline, row = participant("numpy:eager", fast, fast), participant("mxnet:hybrid", 2 * beside, beside)
    out = summary.result(Settings(items=[("numpy", "eager"), ("mxnet", "hybrid")], control=False), [baseline, row], None,
                         None, baseline, spec_for("tiny", "float32"), 64, "budget", 1.0, 0.0, peak_problem=None,
                         ceilings=[], placement="workers not pinned to cores", sets=[0] * 12)
    values = scale.counted(out, "mxnet:hybrid", out["round_medians"]["mxnet:hybrid"])
    assert np.array_equal(np.isnan(values), np.arange(12) < 4)
    assert {r["label"]: r for r in out["rows"]}["mxnet:hybrid"]["rounds_counted"] == 8


class _Allocates:
    """A timed step that needs ``size`` bytes of working memory, touched, then freed."""

    def __init__(self, size):
        self.size = size
        self.estimate = None

    def step(self):
        block = np.ones(self.size // 8)          # every page written: resident
        block[::512] += 1.0
        del block

    queue = step

    def sync(self):
        pass

    def device_memory(self, reset=False):
        return None


def test_the_memory_reading_sees_a_known_allocation():
    if not steps.reset_high_water_mark():
        pytest.skip("no /proc/self/clear_refs here")
    size = 100 * 2 ** 20
    reply = steps.burst(_Allocates(size), 0.0, min_steps=2, max_steps=2, memory=True)
    assert reply["memory_kind"] == "resident-burst"      # not known what the process held before the model
    assert reply["memory_bytes"] == pytest.approx(size, rel=0.10)


class _Holds:
    """An adapter whose model holds ``size`` bytes from its build on, and whose step allocates nothing."""

    def __init__(self, size):
        self.block = np.ones(size // 8)          # every page written: resident

    def to_device(self, X, y):
        return X, y

    def train_step_prepared(self, batch):
        self.block[0] += 1.0

    def sync(self):
        pass

    def device_memory(self, reset=False):
        return None


def test_memory_held_since_the_model_was_built_is_counted_not_only_the_burst_s():
    """A 100 MB allocation made when the model is built, before the burst and not during it: the
    step holds it, so it is counted (the sweeps once published 0 bytes for NumPy's step)."""
    if not steps.reset_high_water_mark():
        pytest.skip("no /proc/self/clear_refs here")
    size = 100 * 2 ** 20
    X, y = np.zeros((4, 2)), np.zeros(4, dtype=np.int64)
    before = steps.resident_kib()
    prepared, _, _ = steps.prepare(_Holds(size), X, y, 1, before)
    reply = steps.burst(prepared, 0.0, min_steps=2, max_steps=2, memory=True)
    assert reply["memory_kind"] == "resident"
    assert reply["memory_bytes"] == pytest.approx(size, rel=0.10)
    burst_only = steps.burst(steps.prepare(prepared.adapter, X, y, 1)[0], 0.0, min_steps=2, max_steps=2, memory=True)
    assert burst_only["memory_kind"] == "resident-burst" and burst_only["memory_bytes"] < size / 10


def test_analytic_memory_counts_the_state_and_what_the_backward_keeps():
    spec, m = scale.point_spec("batch", 8, "float32")
    memory = analytic_memory(spec, m)
    parameters = 512 * 512 * 2 + 512 * 10 + 2 * 2 * 512 + 10
    assert memory["minimum"] > 4 * 3 * parameters          # parameters, momentum and gradients at least, float32
    assert memory["working"] < memory["minimum"]
    assert scale.point_values("batch") == [8, 32, 128, 512, 2048] and scale.point_values("width") == [32, 128, 512, 2048]
    with pytest.raises(scale.ScaleError, match="--points 1"):
        scale.point_values("width", 1)


@pytest.mark.slow
def test_a_small_sweep_is_timed_verified_fitted_and_written(tmp_path):
    sweep = scale.run(scale.request("width", "numpy", points=2, budget=1.5, progress=False))
    path = scale.write(sweep, str(tmp_path))
    data = json.loads(open(path).read())
    assert os.path.basename(path) == "cpu-width-float32.json"
    assert {"machine", "device", "axis", "dtype", "points", "fits", "crossovers"} <= set(data)
    assert [point["size"] for point in data["points"]] == [32, 2048]
    for point in data["points"]:
        assert point["flops"] > 0
        for row in point["rows"]:
            assert {"framework", "mode", "median_step_s", "ratio", "ci_low", "ci_high", "memory_bytes", "verified"} <= set(row)
            assert row["verified"] is True and row["median_step_s"] > 0
            assert row["memory_kind"] == "resident" and row["memory_bytes"] > 0 and row["memory_ratio"] > 0
    (only,) = data["fits"]
    assert {"framework", "mode", "t0_s", "t0_low", "t0_high", "rate_flops", "rate_low", "rate_high", "fraction_of_peak",
            "worst_fit_error"} <= set(only)
    assert only["rate_flops"] > 0


def test_the_card_beats_the_cpu_from_the_first_point_whose_whole_interval_says_so():
    def sweep(steps):
        return {"points": [{"size": size, "rows": [{"label": "torch:compiled", "median_step_s": s, "step_ci_low": s * 0.98,
                                                     "step_ci_high": s * 1.02}]} for size, s in steps.items()]}

    cpu = sweep({8: 1e-4, 64: 8e-4, 512: 6e-3, 2048: 2.4e-2})
    gpu = sweep({8: 5e-4, 64: 7.9e-4, 512: 1e-3, 2048: 2e-3})
    (entry,) = scale.device_crossover(cpu, gpu)
    assert entry["label"] == "torch:compiled" and entry["gpu_faster_from"] == 512    # at 64 the interval still holds 1
    assert entry["points"][1]["ci_low"] < 1 < entry["points"][1]["ci_high"]
    assert entry["not_timed"] is None


def test_a_framework_not_timed_on_either_device_says_why_instead_of_a_crossover():
    reason = "torch is not installed in this environment"
    cpu = {"points": [{"size": 8, "rows": [{"label": "torch:compiled", "median_step_s": None, "not_timed": reason}]}]}
    gpu = {"points": [{"size": 8, "rows": [{"label": "torch:compiled", "median_step_s": 1e-3}]}]}
    (entry,) = scale.device_crossover(cpu, gpu)
    assert entry["points"] == [] and entry["gpu_faster_from"] is None and entry["not_timed"] == reason
