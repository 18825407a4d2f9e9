"""``bnbench study NAME``: the lecture's claims, measured on the digits set with the suite's own
verified reference model (the NumPy adapter: the spec itself, and the fastest panda here).

One module per study, each holding its computation (``compute``), its plots (``plot``) and its
report (``markdown``); ``common`` holds what they share. Each study writes
``results/lecture/NAME.json`` (the keys its issue fixed, plus what a reader needs to check them),
``NAME.md`` (the claim, the measurement, what it shows, said plainly where the claim does not
hold here) and its plots. Every study is seeded and takes well under 3 minutes on 2 cores.
"""
from __future__ import annotations

import importlib
import os
import time
from typing import Dict

from bnbench import progress
from bnbench.lecture.common import StudyError
from bnbench.reference.data import load_digits
from bnbench.reference.io import atomic_write_json, atomic_write_text

# study name -> its module
STUDIES = {"search": "search", "scale": "scale", "batchnorm": "batchnorm", "test-time": "test_time",
           "frameworks": "frameworks"}
# study name -> the keys its issue fixed: a study whose result lacks one is refused before it is written
KEYS = {
    "search": ("budgets", "random_best_val_accuracy", "grid_best_val_accuracy", "seeds"),
    "scale": ("trials_per_decade_uniform", "trials_per_decade_log", "best_val_accuracy_uniform", "best_val_accuracy_log"),
    "batchnorm": ("learning_rates", "with_bn_final_val_accuracy", "without_bn_final_val_accuracy",
                  "with_bn_trainable_decades", "without_bn_trainable_decades"),
    "test-time": ("bn_momentum", "ewa_test_accuracy", "population_test_accuracy"),
    "frameworks": ("rows",),
}


def run(name: str, *, seed: int = 0, results: str = "results", show_progress: bool = True) -> Dict[str, object]:
    """Run study ``name`` and write results/lecture/NAME.json, NAME.md and its plots."""
    if name not in STUDIES:
        raise StudyError(f"study {name!r} is unknown; studies: {', '.join(STUDIES)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise StudyError(f"--seed {seed!r} must be an integer >= 0")
    study = importlib.import_module(f"{__name__}.{STUDIES[name]}")
    started = time.perf_counter()
    bar = progress.bar(total=1, unit="model", enabled=show_progress)
    bar.set_description(f"study {name}")
    try:
        result = study.compute(results, bar) if name == "frameworks" else study.compute(load_digits("float64"), seed, bar)
    finally:
        bar.close()
    missing = [key for key in KEYS[name] if key not in result]
    if missing:
        raise StudyError(f"study {name}: its result lacks {', '.join(map(repr, missing))}; nothing written")
    result = dict(study=name, seed=seed, seconds=round(time.perf_counter() - started, 1), **result)
    folder = os.path.join(results, "lecture")
    os.makedirs(folder, exist_ok=True)
    plots = study.plot(result, folder)
    atomic_write_json(os.path.join(folder, f"{name}.json"), result)
    atomic_write_text(os.path.join(folder, f"{name}.md"), study.markdown(result, plots))
    return result
