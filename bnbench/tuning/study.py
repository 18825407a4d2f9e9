"""``bnbench tune``: hyperparameter search as the course teaches it, on the digits set.

- Random values, never a grid: Optuna's RandomSampler, every draw reproducible from ``--seed``
  (and the number of trials already in the study, so a resumed search continues with new draws
  instead of repeating old ones).
- The right scale for each field (``SearchSpace``): the learning rate on a log scale
  (r uniform in [-4, 0], alpha = 10^r), averaging betas through 1 - beta on a log scale (beta from
  0.9 to 0.999), layer count and width uniform.
- Coarse to fine: rounds; after each, every range is narrowed around the best trials so far (in
  the scale's own coordinates) and sampled again; every round is kept and drawn in its own colour.
- Panda: one model at a time through the framework's adapter, a learning curve per epoch, hopeless
  trials pruned (median rule). Caviar: many models at once, vectorised in one program by the
  adapters that declare it (``trains_many``: stacked matmuls over a model axis, or a vmap), with
  per-model hyperparameters; one program per network shape.
- Selection on the validation split; the test split is used once, at the end, for the best
  configuration (retrained from its seed).
- The study lives in a database (default: SQLite under results/tuning/<study>/), so a killed run
  resumes where it stopped and several processes or machines can share one study (``--storage``).
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from typing import Dict, List, Optional, Tuple

from bnbench.reference.data import load_digits
from bnbench.reference.io import atomic_write_json
from bnbench.tuning.settings import Settings
from bnbench.tuning.slots import ROUND_ATTR, Heartbeat, claim, complete_trials, fail_unbeaten_trials, finished_trials, held_count
from bnbench.tuning.space import TuneError, spec_for
from bnbench.tuning.storage import STORAGE_VARIABLE, open_study, scrubbed
from bnbench.tuning.summary import summarise
from bnbench.tuning.trial import train_caviar, train_panda


class Progress:
    """Trials finished out of the study's total, with the best validation accuracy so far."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, initial=initial, unit="trial", dynamic_ncols=True)
            except ImportError:
                pass

    def show(self, done: int, best: Optional[float]) -> None:
        if self.bar is not None:
            self.bar.update(max(0, min(done, self.bar.total) - self.bar.n))
            if best is not None:
                self.bar.set_postfix_str(f"best val {best:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


POLL_SECONDS = 0.5


def run(settings: Settings, *, stop_after: Optional[int] = None) -> Dict[str, object]:
    """Run the study until ``settings.trials`` trials are finished (counting those of earlier runs
    and of other workers); returns the summary written to summary.json. ``stop_after`` ends this
    call after that many new trials (tests use it to interrupt a search). With ``workers`` > 1,
    that many worker processes share the study and this process watches them."""
    settings.check()
    if settings.workers > 1:
        return run_workers(settings)
    started = time.perf_counter()
    study = open_study(settings)
    new_trials = work(study, settings, stop_after=stop_after)
    if not settings.summary:
        return {"trials_this_run": new_trials}
    return summarise(study, settings, load_digits("float32"), new_trials, time.perf_counter() - started)


def work(study, settings: Settings, *, stop_after: Optional[int] = None) -> int:
    """One worker's loop: claim a slot, train, tell; until every slot is finished. Stale trials
    (a worker that stopped beating, on any machine) are failed and queued again on the way."""
    import optuna

    data = load_digits("float32")
    new_trials = 0
    bar = Progress(settings.trials, min(settings.trials, len(finished_trials(study))), settings.progress)
    try:
        while len(finished_trials(study)) < settings.trials and (stop_after is None or new_trials < stop_after):
            optuna.storages.fail_stale_trials(study)
            fail_unbeaten_trials(study, settings)
            if settings.style == "panda":
                claimed = claim(study, settings)
                if claimed is None:
                    time.sleep(POLL_SECONDS)    # the last slots are running elsewhere (or a round is closing)
                    continue
                trial, params = claimed
                spec = spec_for(params, seed=settings.seed)

                def on_epoch(epoch, value, trial=trial):
                    trial.report(value, epoch)
                    return trial.should_prune()

                with Heartbeat(study, [trial]):
                    curve, _ = train_panda(settings.framework, spec, data, settings.epochs, settings.seed, on_epoch,
                                           device=settings.device)
                trial.set_user_attr("curve", curve)
                if len(curve) < settings.epochs:
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                else:
                    study.tell(trial, curve[-1])
                new_trials += 1
            else:
                limit = settings.chunk if stop_after is None else min(settings.chunk, stop_after - new_trials)
                claimed = []
                while len(claimed) < limit:
                    # a chunk never crosses into the next round: that round is narrowed from this one
                    if claimed and settings.round_of(held_count(study)) != claimed[0][0].user_attrs.get(ROUND_ATTR, 0):
                        break
                    one = claim(study, settings)
                    if one is None:
                        break
                    claimed.append(one)
                if not claimed:
                    time.sleep(POLL_SECONDS)
                    continue
                groups: Dict[Tuple, List] = {}
                for trial, params in claimed:
                    spec = spec_for(params, seed=settings.seed)
                    groups.setdefault(spec.hidden, []).append((trial, spec))
                with Heartbeat(study, [trial for trial, _ in claimed]):
                    for members in groups.values():
                        curves, losses = train_caviar(settings.framework, [spec for _, spec in members], data,
                                                      settings.epochs, settings.seed, device=settings.device)
                        for (trial, _), curve, loss in zip(members, curves, losses):
                            trial.set_user_attr("curve", curve)
                            trial.set_user_attr("final_loss", loss if math.isfinite(loss) else None)
                            study.tell(trial, curve[-1])
                new_trials += len(claimed)
            finished = finished_trials(study)
            bar.show(len(finished), max((t.value for t in complete_trials(study)), default=None))
    finally:
        bar.close()
    return new_trials


def run_workers(settings: Settings) -> Dict[str, object]:
    """``--workers N`` on this machine: N processes of `bnbench tune` on the same study and
    storage (SQLite in WAL mode by default), then the summary. The study is created here first,
    so that the workers only ever open it."""
    import subprocess
    import sys

    started = time.perf_counter()
    study = open_study(settings)
    before = len(finished_trials(study))
    space_file = os.path.join(settings.folder, "space.json")
    atomic_write_json(space_file, {field: d.to_dict() for field, d in settings.space.items()})
    # The children get the storage URL through the environment, never their command line; each
    # writes its stderr to a file of its own (a pipe read only at the end fills at 64 KB and hangs
    # the child); they start in a folder of their own, so nothing in the caller's is imported.
    command = [sys.executable, "-m", "bnbench.cli", "tune", "--framework", settings.framework, "--trials", str(settings.trials),
               "--strategy", settings.strategy, "--style", settings.style, "--study", settings.study,
               "--seed", str(settings.seed), "--epochs", str(settings.epochs),
               "--rounds", str(settings.rounds), "--results", os.path.abspath(settings.results),
               "--heartbeat", str(settings.heartbeat), "--space", os.path.abspath(space_file), "--worker", "--quiet"]
    env = dict(os.environ, **{STORAGE_VARIABLE: settings.storage_url})
    private = tempfile.mkdtemp(prefix="bnbench-tune-")
    logs = [open(os.path.join(private, f"worker-{index}.log"), "w+") for index in range(settings.workers)]
    try:
        workers = [subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env,
                                    cwd=private) for log in logs]
        bar = Progress(settings.trials, min(settings.trials, before), settings.progress)
        try:
            while any(worker.poll() is None for worker in workers):
                finished = finished_trials(study)
                bar.show(len(finished), max((t.value for t in complete_trials(study)), default=None))
                time.sleep(POLL_SECONDS)
        finally:
            bar.close()
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
        errors = []
        for worker, log in zip(workers, logs):
            log.seek(0)
            errors.append((worker.returncode, scrubbed(log.read().strip(), settings.storage_url)))
    finally:
        for log in logs:
            log.close()
        shutil.rmtree(private, ignore_errors=True)
    failed = [(code, text) for code, text in errors if code != 0]
    if len(finished_trials(study)) < settings.trials:
        code, text = failed[0] if failed else (0, "")
        raise TuneError(f"the study stopped at {len(finished_trials(study))} of {settings.trials} trials: "
                        f"{len(failed)} of {settings.workers} workers failed (first, exit {code}: "
                        f"{(text.splitlines() or ['no message'])[-1]})")
    return summarise(study, settings, load_digits("float32"), len(finished_trials(study)) - before, time.perf_counter() - started)


