"""How workers share one study without talking to each other: a trial holds a slot by its rank
among the held slots, so the study ends with exactly --trials finished trials; round r of coarse
to fine starts only when the rounds before it are done; a dead worker's trial is failed by the
heartbeat and queued again into its own slot."""
from __future__ import annotations

import math
import os
import socket
from typing import Dict, List, Optional, Sequence

from bnbench.tuning.settings import Settings
from bnbench.tuning.space import Dimension
from bnbench.tuning.storage import MAX_RETRY, TrialSeededSampler

ROUND_ATTR = "round"


def slot_of(trial) -> int:
    """The slot a trial holds: its own number, or for a retry the number of the first attempt it
    retries (Optuna's retry callback copies it into ``failed_trial``), so that a retry takes over
    its failed attempt's slot, in its place among the others, and never a new one."""
    return trial.system_attrs.get("failed_trial", trial.number)


RELEASED_ATTR = "released"




# How long a heartbeat-failed attempt keeps its slot while its retry is being queued: one storage
# write after the failure, unless the worker that failed it died in between (then it is let go).
RETRY_DUE_SECONDS = 60.0


def retry_due(trial) -> bool:
    """A failed attempt whose retry Optuna's callback is about to queue: failed by the heartbeat
    (not released by claim), with retries left, and failed a moment ago."""
    import datetime

    if trial.user_attrs.get(RELEASED_ATTR) or len(trial.system_attrs.get("retry_history", [])) >= MAX_RETRY:
        return False
    ended = trial.datetime_complete
    return ended is not None and (datetime.datetime.now() - ended).total_seconds() < RETRY_DUE_SECONDS


def held_slots(trials) -> Dict[int, object]:
    """Slot -> its latest attempt, for each slot finished, running, queued, or failed with its
    retry due. Failing a stale attempt and queueing its retry are two storage writes: a worker
    that counted slots between them used to see one free, claim it with a new trial, and the
    retry then took a slot of the same round as well (CI caught a round of 21 out of 40 trials)."""
    import optuna

    latest: Dict[int, object] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        latest[slot_of(trial)] = trial
    return {slot: trial for slot, trial in latest.items()
            if trial.state != optuna.trial.TrialState.FAIL or retry_due(trial)}


def space_for_round(study, settings: Settings, round_index: int) -> Optional[Dict[str, Dimension]]:
    """Round 0: the whole space. Round r: each range narrowed around the best quarter (at least
    three) of the finished trials of earlier rounds, stored in the study, so that every worker
    samples round r from the same ranges. None while a trial of an earlier round is still running
    or queued: round r starts when the rounds before it are done, whichever worker ran them."""
    import optuna

    if round_index == 0:
        return settings.space
    key = f"space_round_{round_index}"
    stored = study.user_attrs.get(key)
    if stored is not None:
        return {field: Dimension.from_dict(field, value) for field, value in stored.items()}
    trials = study.get_trials(deepcopy=False)
    if any(not t.state.is_finished() or t.state == optuna.trial.TrialState.FAIL     # running, queued, or its retry is due
           for t in held_slots(trials).values() if t.user_attrs.get(ROUND_ATTR, 0) < round_index):
        return None
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get(ROUND_ATTR, 0) < round_index]
    if not done:
        return settings.space
    done.sort(key=lambda t: (-t.value, t.number))
    best = done[:max(3, math.ceil(len(done) / 4))]
    space = {}
    for field, dimension in settings.space.items():
        values = [dimension.from_optuna(t.params[dimension.optuna_name(field)]) for t in best]
        space[field] = dimension.narrowed(values)
    study.set_user_attr(key, {field: d.to_dict() for field, d in space.items()})
    return space


def ask(study, settings: Settings, index: int):
    """A new trial drawn from the space of the round that trial ``index`` belongs to (the study's
    sampler seeds each trial's draws by its number)."""
    if getattr(study.sampler, "seed", None) != settings.seed:
        study.sampler = TrialSeededSampler(settings.seed)
    trial = study.ask()
    space = space_for_round(study, settings, settings.round_of(index)) or settings.space
    return trial, draw(trial, settings, space, settings.round_of(index))


def draw(trial, settings: Settings, space: Dict[str, Dimension], round_index: int) -> Dict[str, object]:
    # A retried trial (Optuna's RetryFailedTrialCallback) holds the values its killed worker had
    # drawn; a worker killed half-way through drawing left only some of them, so the rest are drawn
    # here. Each suggest is its own storage write, which is why that window exists at all.
    held = trial.params
    for field, dimension in space.items():
        if dimension.optuna_name(field) not in held:
            dimension.suggest(trial, dimension.optuna_name(field))
    trial.set_user_attr(ROUND_ATTR, round_index)
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())
    return {field: dimension.from_optuna(trial.params[dimension.optuna_name(field)])
            for field, dimension in settings.space.items()}


FINISHED_STATES = ("COMPLETE", "PRUNED")


def finished_trials(study) -> List:
    """The trials that count against --trials: complete, or pruned (judged hopeless)."""
    import optuna

    return study.get_trials(deepcopy=False, states=tuple(getattr(optuna.trial.TrialState, s) for s in FINISHED_STATES))


def complete_trials(study) -> List:
    import optuna

    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def fail_unbeaten_trials(study, settings: Settings) -> None:
    """A worker killed between asking for a trial and its first heartbeat (a window of
    microseconds, see claim) leaves a RUNNING trial that Optuna's heartbeat check never sees. One
    that carries no worker's mark yet (its pid, set once it has beaten) and started longer ago
    than the grace period is failed here and queued again the way Optuna queues a stale one."""
    import datetime

    import optuna

    grace = datetime.timedelta(seconds=3 * settings.heartbeat)
    now = datetime.datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if "pid" in trial.user_attrs or trial.datetime_start is None or now - trial.datetime_start < grace:
            continue
        try:
            if not study._storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue          # another worker got there first
        callback = study._storage.get_heartbeat_stale_trial_callback()
        if callback is not None:
            callback(study, study._storage.get_trial(trial._trial_id))


def held_count(study) -> int:
    """Slots finished, running, queued, or waiting for their retry (held_slots)."""
    return len(held_slots(study.get_trials(deepcopy=False)))


def claim(study, settings: Settings):
    """Ask for a trial and hold one of the study's --trials slots with it: (trial, params), or
    None when there is nothing to do now (every slot is finished or held by a running trial, or
    the next round waits for the one before it). A slot is the trial's rank among the held slots
    (held_slots) by number, so that workers anywhere agree on who holds which slot without
    talking to each other; a trial that finds every slot taken is released (marked, failed, not
    retried)."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    held = len(held_slots(trials))
    waiting = any(t.state == optuna.trial.TrialState.WAITING for t in trials)
    if held >= settings.trials and not waiting:
        return None
    if space_for_round(study, settings, settings.round_of(min(held, settings.trials - 1))) is None and not waiting:
        return None
    trial = study.ask()
    # Optuna finds a dead worker's trial by its heartbeat, and a trial that never beat is never
    # found: the first beat goes in at once, before anything that takes time.
    study._storage.record_heartbeat(trial._trial_id)
    slot = slot_of(study._storage.get_trial(trial._trial_id))
    rank = sum(other < slot for other in held_slots(study.get_trials(deepcopy=False)))
    space = space_for_round(study, settings, settings.round_of(rank)) if rank < settings.trials else None
    if space is None:
        trial.set_user_attr(RELEASED_ATTR, True)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return None
    return trial, draw(trial, settings, space, settings.round_of(rank))


class Heartbeat:
    """Optuna's heartbeat for trials run through ask and tell (study.optimize beats by itself):
    a thread records one for each held trial every ``heartbeat_interval`` seconds."""

    def __init__(self, study, trials: Sequence) -> None:
        import threading

        self.storage = study._storage
        self.trial_ids = [trial._trial_id for trial in trials]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        interval = self.storage.get_heartbeat_interval()
        while True:
            for trial_id in self.trial_ids:
                self.storage.record_heartbeat(trial_id)
            if self.stop.wait(interval):
                return

    def __enter__(self) -> "Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
