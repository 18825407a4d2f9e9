"""A comparison's typed parts (bnbench.timing.rows): one to_json and one from_json each; a field a
file lacks reads as its default; a part without a required key is refused, named."""
import dataclasses
import json

import pytest

from bnbench.timing import records
from bnbench.timing.rows import Ceiling, Floor, PartError, Peak, Row, Verdict


def _row(**fields):
    return Row(**{"framework": "jax", "mode": "jit", "label": "jax:jit", "verified": True, **fields})


def test_a_row_round_trips_through_its_json():
    row = _row(median_step_s=2e-3, ratio=0.5, ci_low=0.45, ci_high=0.55, rounds_counted=12, kernels={"numpy": "Haswell"},
               vs_next_faster=Verdict(verdict="slower", label="numpy:eager", ratio=1.2, ci_low=1.1, ci_high=1.3, epsilon=0.02))
    text = json.dumps(row.to_json(), allow_nan=False)
    back = Row.from_json(json.loads(text), "x")
    assert back == row and isinstance(back.vs_next_faster, Verdict) and back.timed
    assert not _row(not_timed="not installed").timed


def test_a_field_a_file_lacks_reads_as_its_default_and_a_dropped_one_is_left_out():
    row = Row.from_json({"framework": "jax", "mode": "jit", "label": "jax:jit", "verified": False,
                         "a_key_since_dropped": 3}, "old.json: rows[0]")
    assert row == _row(verified=False) and row.memory_ratio is None and row.flags == ""
    assert set(row.to_json()) == {field.name for field in dataclasses.fields(Row)}


@pytest.mark.parametrize("part, data, key", [
    (Row, {"framework": "jax", "mode": "jit", "verified": True}, "label"),
    (Floor, {"ratio": 1.0}, "label"),
    (Ceiling, {"framework": "jax"}, "label"),
    (Verdict, {"label": "numpy:eager"}, "verdict"),
])
def test_a_part_without_a_required_key_is_refused_naming_where_and_the_key(part, data, key):
    with pytest.raises(PartError, match=f"^here: no '{key}'$"):
        part.from_json(data, "here")
    with pytest.raises(PartError, match="here: not a JSON object"):
        part.from_json([1, 2], "here")


def test_a_nested_part_is_refused_with_its_path():
    with pytest.raises(PartError, match=r"r\.json: rows\[0\]\.vs_next_faster: no 'verdict'"):
        records.rows.parts_of_comparison({"rows": [dict(_row().to_json(), vs_next_faster={"label": "x"})]}, "r.json")


def test_every_reader_of_a_comparison_finds_every_field(tmp_path):
    """A schema-2 file: its rows lack the fields added since, read as their defaults; its floor and
    peak typed too; a broken row refuses the file, naming it and the key."""
    data = {"schema": 2, "tool": "bnbench compare", "machine_id": "m", "device": "cpu", "dtype": "float32",
            "size": "tiny", "baseline": "numpy:eager", "created": "2026-11-30T00:00:00Z",
            "rows": [{"framework": "numpy", "mode": "eager", "label": "numpy:eager", "verified": True, "ratio": 1.0,
                      "memory_kind": "resident"}],
            "floor": {"label": "numpy:eager#control", "ratio": 1.01}, "peak": {"problem": "not measured"}}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    run = records.read(str(path), records.COMPARISON)
    row = run["rows"][0]
    assert set(row) == {field.name for field in dataclasses.fields(Row)}
    assert row["memory_kind"] == "resident-burst" and row["memory_ratio"] is None and row["variant"] is None
    assert run["floor"] == Floor(label="numpy:eager#control", ratio=1.01).to_json()
    assert run["peak"] == Peak(problem="not measured").to_json() and run["ceilings"] == []
    del data["rows"][0]["verified"]
    path.write_text(json.dumps(data))
    with pytest.raises(records.RecordError, match=r"run.json: rows\[0\]: no 'verified'"):
        records.read(str(path), records.COMPARISON)


def test_a_sweep_s_points_and_fits_are_read_through_their_parts(tmp_path):
    from bnbench.timing.rows import Fit, Point

    point = Point(size=64, flops=1e9, rows=[_row(ratio=1.2)], floor=Floor(label="numpy:eager#control", ratio=1.0),
                  round_medians={"jax:jit": [1e-3, 2e-3]})
    assert Point.from_json(json.loads(json.dumps(point.to_json())), "p") == point
    data = {"schema": 2, "tool": "bnbench scale", "machine_id": "m", "device": "cpu", "dtype": "float32", "axis": "batch",
            "swept": "m", "points": [{"size": 64, "flops": 1e9, "rows": [{"framework": "jax", "mode": "jit", "label": "jax:jit",
                                                                          "verified": True}]}],
            "fits": [{"label": "jax:jit", "t0_s": 1e-4, "rate_flops": 5e10}]}
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(data))
    sweep = records.read(str(path), records.SWEEP)
    assert set(sweep["points"][0]["rows"][0]) == {field.name for field in dataclasses.fields(Row)}
    assert sweep["fits"][0] == Fit(label="jax:jit", t0_s=1e-4, rate_flops=5e10).to_json()
    del data["fits"][0]["rate_flops"]
    path.write_text(json.dumps(data))
    with pytest.raises(records.RecordError, match=r"sweep.json: fits\[0\]: no 'rate_flops'"):
        records.read(str(path), records.SWEEP)
    data["fits"] = []
    del data["points"][0]["rows"][0]["label"]
    path.write_text(json.dumps(data))
    with pytest.raises(records.RecordError, match=r"sweep.json: points\[0\]\.rows\[0\]: no 'label'"):
        records.read(str(path), records.SWEEP)
