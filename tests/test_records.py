"""Result files are read by one reader (bnbench.timing.records): an older schema is upgraded, a
newer one or one missing a required key is refused with a message naming the file and the key,
and the tables skip such a file with that warning. The fixtures are made here."""
import json
import os

import pytest

from bnbench.publishing.compare_tables import load_comparisons
from bnbench.publishing.scale_tables import load_sweeps
from bnbench.timing import records


def comparison(schema, **extra):
    """A small comparison as its writer wrote it at ``schema`` (schema 1: no control, no latency)."""
    row = {"framework": "jax", "mode": "jit", "label": "jax:jit+xla", "version": "0.4", "verified": True, "flags": "",
           "median_step_s": 0.002, "ratio": 0.5, "ci_low": 0.45, "ci_high": 0.55, "resolved": True,
           "fraction_of_peak": 0.3, "first_step_s": 0.5}
    data = {"schema": schema, "tool": "bnbench compare", "machine_id": "m-2c-4g", "device": "cpu", "dtype": "float32",
            "size": "tiny", "baseline": "numpy:reference", "created": "2026-11-26T00:00:00Z", "rounds": 3, "rows": [row]}
    data.update(extra)
    return data


def write(folder, name, data):
    path = os.path.join(folder, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(data, handle)
    return path


def test_a_comparison_of_the_first_schema_is_upgraded(tmp_path):
    path = write(tmp_path, "compare/m/cpu-tiny-float32.json", comparison(1))
    data = records.read(path, records.COMPARISON)
    assert data["schema"] == records.COMPARISON.schema == 4 and data["upgraded_from"] == 1
    assert data["floor"] is None and data["ceilings"] == [] and data["process_sets"] == 1
    row = data["rows"][0]
    assert row["variant"] == "xla" and row["latency_s"] is None and row["memory_bytes"] is None and row["converged"] is None
    assert row["memory_ratio"] is None and data["analytic_memory_bytes"] is None


def test_a_comparison_of_the_previous_schema_says_its_cpu_memory_was_one_burst_s(tmp_path):
    """Schema 2 read a CPU step's memory over one burst alone ('resident' then): upgraded, that
    is 'resident-burst', and 'resident' means what the model holds since it was built."""
    data = comparison(2)
    data["rows"][0].update(memory_bytes=2 ** 20, memory_kind="resident")
    upgraded = records.read(write(tmp_path, "compare/m/x.json", data), records.COMPARISON)
    assert upgraded["upgraded_from"] == 2 and upgraded["rows"][0]["memory_kind"] == "resident-burst"
    sweep = {"schema": 1, "tool": "bnbench scale", "machine_id": "m", "device": "cpu", "dtype": "float32", "axis": "width",
             "swept": "hidden", "fits": [], "points": [{"size": 32, "flops": 1e9, "rows": [dict(data["rows"][0])]}]}
    upgraded = records.read(write(tmp_path, "scale/m/cpu-width-float32.json", sweep), records.SWEEP)
    assert upgraded["points"][0]["rows"][0]["memory_kind"] == "resident-burst"


def test_a_comparison_of_schema_3_has_its_resolved_rows_as_verdicts(tmp_path):
    """Schema 3 said resolved or not; schema 4 gives a verdict. A resolved row is faster or slower
    by its ratio; one not resolved is undecided, saying that equivalence was not tested then."""
    data = comparison(3)
    data["rows"][0]["versus_next_faster"] = {"label": "numpy:reference", "ratio": 1.01, "ci_low": 0.98, "ci_high": 1.04,
                                             "resolved": False}
    row = records.read(write(tmp_path, "compare/m/x.json", data), records.COMPARISON)["rows"][0]
    assert "versus_next_faster" not in row
    assert row["vs_baseline"] == {"verdict": "faster", "ratio": 0.5, "ci_low": 0.45, "ci_high": 0.55, "epsilon": None,
                                  "label": "numpy:reference", "reason": None}
    assert row["vs_next_faster"]["verdict"] == "undecided" and "equivalence not tested" in row["vs_next_faster"]["reason"]


def test_a_comparison_of_a_future_schema_is_refused_naming_the_file(tmp_path):
    path = write(tmp_path, "compare/m/cpu-tiny-float32.json", comparison(records.COMPARISON.schema + 1))
    with pytest.raises(records.RecordError, match=rf"cpu-tiny-float32\.json: 'schema' {records.COMPARISON.schema + 1} is newer"):
        records.read(path, records.COMPARISON)


@pytest.mark.parametrize("change, message", [
    ({"machine_id": None}, "no 'machine_id'|'machine_id' is NoneType"),
    ({"rows": {"a": 1}}, "'rows' is dict, not list"),
    ({"tool": "bnbench scale"}, "'tool' is 'bnbench scale', not 'bnbench compare'"),
    ({"schema": "two"}, "'schema' 'two' is not a schema number"),
])
def test_a_bad_file_is_refused_naming_the_file_and_the_key(tmp_path, change, message):
    data = comparison(2)
    data.update(change)
    data = {key: value for key, value in data.items() if value is not None}
    path = write(tmp_path, "compare/m/bad.json", data)
    with pytest.raises(records.RecordError, match=f"bad.json: ({message})"):
        records.read(path, records.COMPARISON)


def test_the_tables_skip_a_file_they_cannot_read_with_a_warning_and_keep_the_others(tmp_path):
    write(tmp_path, "compare/m/cpu-tiny-float32.json", comparison(2))
    write(tmp_path, "compare/m/cpu-medium-float32.json", comparison(1, size="medium"))
    write(tmp_path, "compare/m/cpu-large-float32.json", comparison(9, size="large"))
    write(tmp_path, "compare/other/broken.json", [1, 2])
    with open(os.path.join(tmp_path, "compare/other/truncated.json"), "w") as handle:
        handle.write('{"schema": 2, "tool": "bnbench co')
    runs, problems = load_comparisons(str(tmp_path))
    assert [run["size"] for run in runs] == ["tiny", "medium"]
    assert [run["source"] for run in runs] == ["compare/m/cpu-tiny-float32.json", "compare/m/cpu-medium-float32.json"]
    assert len(problems) == 3 and all(problem.endswith("; skipped") for problem in problems)
    assert any(p.startswith("compare/m/cpu-large-float32.json: 'schema' 9 is newer") for p in problems)
    assert any(p.startswith("compare/other/broken.json: not a JSON object") for p in problems)
    assert any(p.startswith("compare/other/truncated.json: not readable") for p in problems)


def test_a_sweep_without_its_points_is_skipped_naming_the_key(tmp_path):
    sweep = {"schema": 1, "tool": "bnbench scale", "machine_id": "m", "device": "cpu", "dtype": "float32",
             "axis": "width", "swept": "hidden", "fits": []}
    write(tmp_path, "scale/m/cpu-width-float32.json", sweep)
    sweeps, problems = load_sweeps(str(tmp_path))
    assert sweeps == [] and problems == ["scale/m/cpu-width-float32.json: no 'points' (list); skipped"]


def test_a_tuning_log_of_the_previous_schema_has_its_comparisons_upgraded(tmp_path):
    log = {"schema": 1, "tool": "bnbench tunelog", "framework": "jax", "kept": "jit", "sizes": ["tiny"],
           "forms": [{"form": "jit"}, {"form": "jit+xla"}], "compare": {"tiny": comparison(1)}}
    path = write(tmp_path, "tuning-logs/m/jax.json", log)
    data = records.read(path, records.TUNING_LOG)
    assert data["upgraded_from"] == 1 and data["compare"]["tiny"]["upgraded_from"] == 1
    log["compare"]["tiny"]["schema"] = 5
    write(tmp_path, "tuning-logs/m/jax.json", log)
    with pytest.raises(records.RecordError, match=r"jax\.json: compare\['tiny'\]: 'schema' 5 is newer"):
        records.read(path, records.TUNING_LOG)

