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

import dataclasses
import math
import os
import socket
import time
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bnbench.frameworks import get
from bnbench.adapters import names, registry
from bnbench.reference import initial_parameters
from bnbench.reference.data import load_digits, minibatches
from bnbench.reference.io import atomic_write_json, atomic_write_text
from bnbench.reference.spec import Spec
from bnbench.report import _save

BATCH_SIZE = 64
SCALES = ("log", "one_minus_log", "uniform", "int", "choice")
ROUND_ATTR = "round"


class TuneError(ValueError):
    """A bad search space, flag or study; the message names the field and the value."""


# --------------------------------------------------------------------------- the search space
@dataclasses.dataclass(frozen=True)
class Dimension:
    scale: str
    low: float = 0.0
    high: float = 0.0
    step: int = 1
    choices: Tuple = ()

    def check(self, field: str) -> None:
        if self.scale not in SCALES:
            raise TuneError(f"search space field {field!r}: scale {self.scale!r} is not one of {', '.join(SCALES)}")
        if self.scale == "choice":
            if not self.choices:
                raise TuneError(f"search space field {field!r}: choice needs at least one value")
            return
        for name, value in (("low", self.low), ("high", self.high)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise TuneError(f"search space field {field!r}: {name} = {value!r} is not a finite number")
        if not self.low < self.high and not (self.scale == "int" and self.low == self.high):
            raise TuneError(f"search space field {field!r}: low = {self.low!r} must be below high = {self.high!r}")
        if self.scale == "log" and self.low <= 0:
            raise TuneError(f"search space field {field!r}: a log scale needs low > 0, got low = {self.low!r}")
        if self.scale == "one_minus_log" and not (0 <= self.low and self.high < 1):
            raise TuneError(f"search space field {field!r}: 1 - beta on a log scale needs 0 <= low < high < 1, "
                            f"got [{self.low!r}, {self.high!r}]")
        if self.scale == "int" and (int(self.low) != self.low or int(self.high) != self.high or self.step < 1):
            raise TuneError(f"search space field {field!r}: integer bounds and a step >= 1 needed, "
                            f"got [{self.low!r}, {self.high!r}] step {self.step!r}")

    # Optuna sees 1 - beta for 'one_minus_log' fields (so that its log-uniform draw is the lecture's)
    def optuna_name(self, field: str) -> str:
        return f"1-{field}" if self.scale == "one_minus_log" else field

    def distribution(self):
        import optuna.distributions as d

        if self.scale == "log":
            return d.FloatDistribution(self.low, self.high, log=True)
        if self.scale == "one_minus_log":
            return d.FloatDistribution(1 - self.high, 1 - self.low, log=True)
        if self.scale == "uniform":
            return d.FloatDistribution(self.low, self.high)
        if self.scale == "int":
            return d.IntDistribution(int(self.low), int(self.high), step=self.step)
        return d.CategoricalDistribution(list(self.choices))

    def suggest(self, trial, name: str):
        """Draw this dimension's value for ``trial`` through Optuna's sampler."""
        distribution = self.distribution()
        if self.scale == "int":
            return trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step)
        if self.scale == "choice":
            return trial.suggest_categorical(name, list(distribution.choices))
        return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)

    def from_optuna(self, value):
        return 1 - value if self.scale == "one_minus_log" else value

    # the coordinates in which 'random' is uniform: narrowing happens there
    def to_axis(self, value: float) -> float:
        if self.scale == "log":
            return math.log10(value)
        if self.scale == "one_minus_log":
            return math.log10(1 - value)
        return float(value)

    def from_axis(self, axis: float) -> float:
        if self.scale == "log":
            return 10 ** axis
        if self.scale == "one_minus_log":
            return 1 - 10 ** axis
        return axis

    def narrowed(self, values: Sequence, margin: float = 0.25) -> "Dimension":
        """A range around ``values`` (the best trials' values), never outside this one."""
        if self.scale == "choice":
            kept = tuple(c for c in self.choices if c in set(values))
            return dataclasses.replace(self, choices=kept or self.choices)
        axes = [self.to_axis(v) for v in values]
        bounds = sorted([self.to_axis(self.low), self.to_axis(self.high)])
        lo, hi = min(axes), max(axes)
        pad = max(margin * (hi - lo), 0.05 * (bounds[1] - bounds[0]))
        lo, hi = max(bounds[0], lo - pad), min(bounds[1], hi + pad)
        new = sorted([self.from_axis(lo), self.from_axis(hi)])
        if self.scale == "int":
            base = int(self.low)
            low = base + self.step * math.floor((new[0] - base) / self.step)
            high = base + self.step * math.ceil((new[1] - base) / self.step)
            return dataclasses.replace(self, low=max(int(self.low), low), high=min(int(self.high), high))
        return dataclasses.replace(self, low=new[0], high=new[1])

    def to_dict(self) -> Dict[str, object]:
        if self.scale == "choice":
            return {"scale": "choice", "choices": list(self.choices)}
        out = {"scale": self.scale, "low": self.low, "high": self.high}
        if self.scale == "int":
            out["step"] = self.step
        return out

    @classmethod
    def from_dict(cls, field: str, data) -> "Dimension":
        if not isinstance(data, dict):
            raise TuneError(f"search space field {field!r}: expected an object like "
                            f"{{\"scale\": \"log\", \"low\": 0.0001, \"high\": 1}}, got {data!r}")
        unknown = set(data) - {"scale", "low", "high", "step", "choices"}
        if unknown:
            raise TuneError(f"search space field {field!r}: unknown key(s) {', '.join(sorted(unknown))}")
        dimension = cls(scale=data.get("scale", ""), low=data.get("low", 0.0), high=data.get("high", 0.0),
                        step=data.get("step", 1), choices=tuple(data.get("choices", ())))
        dimension.check(field)
        return dimension


# Tunable fields: spec fields, plus the network's shape as two fields.
TUNABLE = ("learning_rate", "beta1", "bn_momentum", "l2", "hidden_units", "n_layers")
DEFAULT_SPACE: Dict[str, Dimension] = {
    "learning_rate": Dimension("log", 1e-4, 1.0),            # r uniform in [-4, 0], alpha = 10^r
    "beta1": Dimension("one_minus_log", 0.9, 0.999),          # momentum's averaging beta
    "bn_momentum": Dimension("one_minus_log", 0.9, 0.999),    # batch norm's running-average beta
    "hidden_units": Dimension("int", 64, 256, step=64),
    "n_layers": Dimension("int", 1, 3),
}


def load_space(data: Optional[dict]) -> Dict[str, Dimension]:
    if data is None:
        return dict(DEFAULT_SPACE)
    if not isinstance(data, dict) or not data:
        raise TuneError("the search space must be a non-empty JSON object of field -> {scale, low, high}")
    unknown = [field for field in data if field not in TUNABLE]
    if unknown:
        raise TuneError(f"search space field {unknown[0]!r} is not tunable; tunable: {', '.join(TUNABLE)}")
    return {field: Dimension.from_dict(field, value) for field, value in data.items()}


def spec_for(params: Dict[str, object], *, seed: int, n_features: int = 64, n_classes: int = 10):
    """The spec one trial trains: the base of the digits benchmark with the trial's values."""

    fields = dict(learning_rate=0.1, beta1=0.9, bn_momentum=0.9, l2=0.0)
    fields.update({k: v for k, v in params.items() if k in ("learning_rate", "beta1", "bn_momentum", "l2")})
    units, layers = int(params.get("hidden_units", 64)), int(params.get("n_layers", 2))
    return Spec(n_features=n_features, hidden=(units,) * layers, n_classes=n_classes, optimizer="momentum",
                dtype="float32", seed=seed, **fields)


# --------------------------------------------------------------------------- training trials
def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    probs = np.asarray(probs)
    if not np.all(np.isfinite(probs)):
        return 0.0        # a diverged model predicts nothing
    return float(np.mean(np.argmax(probs, axis=1) == y))


def train_panda(framework: str, spec, data, epochs: int, seed: int,
                on_epoch: Optional[Callable[[int, float], bool]] = None, evaluate=None) -> Tuple[List[float], object]:
    """One model, epoch by epoch: its validation curve. ``on_epoch(epoch, val_accuracy)`` returns
    True to stop (pruned). Returns (curve, adapter)."""

    adapter_class = get(framework)
    adapter = adapter_class(spec, initial_parameters(spec), mode=adapter_class.best_mode)
    split = evaluate if evaluate is not None else data.validation
    curve = []
    for epoch in range(epochs):
        for X, y in minibatches(data.train, BATCH_SIZE, seed=seed, epoch=epoch):
            loss = adapter.train_step(X, y)
            if not math.isfinite(loss):
                break
        curve.append(accuracy(adapter.predict_proba(split.X), split.y))
        if not math.isfinite(loss):
            curve += [curve[-1]] * (epochs - epoch - 1)
            break
        if on_epoch is not None and on_epoch(epoch, curve[-1]):
            break
    return curve, adapter


def train_caviar(framework: str, specs: Sequence, data, epochs: int, seed: int) -> Tuple[List[List[float]], List[float]]:
    """Many models of ONE shape at once, through the adapter's ManyModels (a vectorised program:
    stacked matmuls over a model axis, a vmap, ...); every model sees the same batches as it would alone.
    Returns (validation curves, final training losses)."""

    many = get(framework).many_models(list(specs), [initial_parameters(spec) for spec in specs])
    curves: List[List[float]] = [[] for _ in specs]
    losses = np.full(len(specs), np.nan)
    for epoch in range(epochs):
        for X, y in minibatches(data.train, BATCH_SIZE, seed=seed, epoch=epoch):
            losses = many.train_step(X, y)
        probs = many.predict_proba(data.validation.X)
        for i in range(len(specs)):
            curves[i].append(accuracy(probs[i], data.validation.y))
    return curves, [float(v) for v in losses]


def caviar_frameworks() -> List[str]:
    """The frameworks whose adapter trains many models in one program (declared, not imported)."""

    return [name for name in registry.names() if registry.local_class(name).trains_many]


# --------------------------------------------------------------------------- the study
@dataclasses.dataclass
class Settings:
    framework: str
    trials: int
    strategy: str
    style: str
    study: str
    storage: Optional[str]
    seed: int
    epochs: int = 10
    rounds: int = 3
    results: str = "results"
    space: Dict[str, Dimension] = dataclasses.field(default_factory=lambda: dict(DEFAULT_SPACE))
    chunk: int = 16           # caviar: models asked, trained and told together (what a kill can lose)
    progress: bool = True
    workers: int = 1          # worker processes on this machine (> 1: this process starts and watches them)
    heartbeat: int = 10       # seconds between a trial's heartbeats; a trial silent for 3 of them is failed and retried
    summary: bool = True      # write summary.json, .md and the plots at the end (a --worker leaves that to its parent)

    @property
    def folder(self) -> str:
        return os.path.join(self.results, "tuning", self.study)

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{os.path.abspath(os.path.join(self.folder, 'study.db'))}"

    def check(self) -> None:
        if self.framework not in names():
            raise TuneError(f"--framework {self.framework!r} is unknown; known: {', '.join(names())}")
        if self.trials < 1:
            raise TuneError(f"--trials {self.trials} must be at least 1")
        if self.strategy not in ("random", "coarse-to-fine"):
            raise TuneError(f"--strategy {self.strategy!r} must be random or coarse-to-fine")
        if self.style not in ("panda", "caviar"):
            raise TuneError(f"--style {self.style!r} must be panda or caviar")
        if self.style == "caviar" and self.framework not in caviar_frameworks():
            raise TuneError(f"--style caviar vectorises many models in one program, written for "
                            f"{', '.join(caviar_frameworks())}; {self.framework!r} can tune with --style panda")
        if not self.study or any(c in self.study for c in "/\\") or self.study.startswith("."):
            raise TuneError(f"--study {self.study!r} must be a plain name (it names results/tuning/<study>/)")
        if self.epochs < 1:
            raise TuneError(f"--epochs {self.epochs} must be at least 1")
        if self.rounds < 1:
            raise TuneError(f"--rounds {self.rounds} must be at least 1")
        if self.workers < 1:
            raise TuneError(f"--workers {self.workers} must be at least 1")
        if self.heartbeat < 1:
            raise TuneError(f"--heartbeat {self.heartbeat} must be at least 1 (seconds)")

    @property
    def n_rounds(self) -> int:
        return 1 if self.strategy == "random" else min(self.rounds, self.trials)

    def round_of(self, index: int) -> int:
        per_round = math.ceil(self.trials / self.n_rounds)
        return min(self.n_rounds - 1, index // per_round)


def open_study(settings: Settings, *, attempts: int = 12):
    """The study on its storage, with Optuna's heartbeat on (a trial whose worker stops beating
    for ``grace_period`` seconds is failed, and RetryHeartbeatStaleTrialCallback queues it again).

    Workers started together on a fresh database all try to create Optuna's tables at once;
    PostgreSQL then refuses all but one (a unique-constraint error on its catalogue). Each
    attempt after a failure waits a little, by then the tables exist, and the next one opens them."""
    import optuna
    import sqlalchemy.exc

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # the heartbeat and its retry callback are "experimental" in Optuna 5: said once here, not per worker
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # ... and meant for study.optimize: with ask and tell, _Heartbeat below does the beating
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    os.makedirs(settings.folder, exist_ok=True)     # summary and plots live there whatever the storage
    url = settings.storage_url
    if url.startswith("sqlite:///"):
        _sqlite_for_many_processes(url[len("sqlite:///"):])
    rng = np.random.default_rng()
    for attempt in range(attempts):
        try:
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs=_engine_kwargs(url), heartbeat_interval=settings.heartbeat,
                grace_period=3 * settings.heartbeat,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))
            study = optuna.create_study(study_name=settings.study, storage=storage, direction="maximize",
                                        load_if_exists=True, sampler=TrialSeededSampler(settings.seed),
                                        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2))
            break
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.ProgrammingError,
                optuna.exceptions.DuplicatedStudyError) as error:
            if attempt == attempts - 1 or _unreachable(error):
                raise TuneError(f"--storage {_redacted(url)!r}: cannot open the study "
                                f"({type(error).__name__}: {_first_line(error)})") from None
            time.sleep(0.2 + rng.uniform(0, 0.3) * (attempt + 1))
        except Exception as error:
            raise TuneError(f"--storage {_redacted(url)!r}: cannot open the study "
                            f"({type(error).__name__}: {_first_line(error)})") from None
    fixed = {"framework": settings.framework, "style": settings.style, "strategy": settings.strategy,
             "epochs": settings.epochs, "seed": settings.seed, "space": {k: v.to_dict() for k, v in settings.space.items()}}
    stored = study.user_attrs.get("settings")
    if stored is None:
        study.set_user_attr("settings", fixed)
    elif stored != fixed:
        changed = sorted(k for k in fixed if stored.get(k) != fixed[k])
        raise TuneError(f"study {settings.study!r} was started with other settings ({', '.join(changed)}: "
                        f"{', '.join(repr(stored.get(k)) for k in changed)}); resume it with the same flags or pick another --study")
    return study


def _engine_kwargs(url: str) -> Dict[str, object]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}     # wait for another process's write instead of failing
    return {"pool_pre_ping": True}


def _sqlite_for_many_processes(path: str) -> None:
    """Write-ahead logging: several processes read and write one SQLite file safely (one writer
    at a time, readers never blocked). The mode is stored in the file, so it is set once."""
    import sqlite3

    connection = sqlite3.connect(path, timeout=60)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


def _unreachable(error: Exception) -> bool:
    """A server that is not there or refuses the login: retrying does not help."""
    text = str(error).lower()
    return any(part in text for part in ("could not connect", "connection refused", "password authentication",
                                         "does not exist", "could not translate host name"))


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    head, at, tail = url.rpartition("@")
    if not at or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, credentials = head.partition("//")
    return f"{scheme}//{credentials.split(':', 1)[0]}:***@{tail}"


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [""])[0]


_SAMPLER_CLASS = []


def TrialSeededSampler(seed: int):  # noqa: N802 (it makes an Optuna sampler; the class needs Optuna, imported late)
    """Random search whose draws for trial n depend only on (seed, n): reproducible, never the
    same for two trials, and the same whichever worker asks for the trial, on whichever machine."""
    if not _SAMPLER_CLASS:
        import optuna

        class _TrialSeededSampler(optuna.samplers.BaseSampler):
            def __init__(self, seed: int) -> None:
                self.seed = seed
                self._by_trial: Dict[int, object] = {}

            def infer_relative_search_space(self, study, trial):
                return {}

            def sample_relative(self, study, trial, search_space):
                return {}

            def sample_independent(self, study, trial, param_name, param_distribution):
                if trial.number not in self._by_trial:
                    self._by_trial = {trial.number: optuna.samplers.RandomSampler(seed=self.seed * 100003 + trial.number)}
                return self._by_trial[trial.number].sample_independent(study, trial, param_name, param_distribution)

        _SAMPLER_CLASS.append(_TrialSeededSampler)
    return _SAMPLER_CLASS[0](seed)


def _slot_of(trial) -> int:
    """The slot a trial holds: its own number, or for a retry the number of the first attempt it
    retries (Optuna's retry callback copies it into ``failed_trial``), so that a retry takes over
    its failed attempt's slot, in its place among the others, and never a new one."""
    return trial.system_attrs.get("failed_trial", trial.number)


RELEASED_ATTR = "released"
MAX_RETRY = 3
# How long a heartbeat-failed attempt keeps its slot while its retry is being queued: one storage
# write after the failure, unless the worker that failed it died in between (then it is let go).
RETRY_DUE_SECONDS = 60.0


def _retry_due(trial) -> bool:
    """A failed attempt whose retry Optuna's callback is about to queue: failed by the heartbeat
    (not released by _claim), with retries left, and failed a moment ago."""
    import datetime

    if trial.user_attrs.get(RELEASED_ATTR) or len(trial.system_attrs.get("retry_history", [])) >= MAX_RETRY:
        return False
    ended = trial.datetime_complete
    return ended is not None and (datetime.datetime.now() - ended).total_seconds() < RETRY_DUE_SECONDS


def _held_slots(trials) -> Dict[int, object]:
    """Slot -> its latest attempt, for each slot finished, running, queued, or failed with its
    retry due. Failing a stale attempt and queueing its retry are two storage writes: a worker
    that counted slots between them used to see one free, claim it with a new trial, and the
    retry then took a slot of the same round as well (CI caught a round of 21 out of 40 trials)."""
    import optuna

    latest: Dict[int, object] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        latest[_slot_of(trial)] = trial
    return {slot: trial for slot, trial in latest.items()
            if trial.state != optuna.trial.TrialState.FAIL or _retry_due(trial)}


def _space_for_round(study, settings: Settings, round_index: int) -> Optional[Dict[str, Dimension]]:
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
           for t in _held_slots(trials).values() if t.user_attrs.get(ROUND_ATTR, 0) < round_index):
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


def _ask(study, settings: Settings, index: int):
    """A new trial drawn from the space of the round that trial ``index`` belongs to (the study's
    sampler seeds each trial's draws by its number)."""
    if getattr(study.sampler, "seed", None) != settings.seed:
        study.sampler = TrialSeededSampler(settings.seed)
    trial = study.ask()
    space = _space_for_round(study, settings, settings.round_of(index)) or settings.space
    return trial, _draw(trial, settings, space, settings.round_of(index))


def _draw(trial, settings: Settings, space: Dict[str, Dimension], round_index: int) -> Dict[str, object]:
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


def _finished(study) -> List:
    """The trials that count against --trials: complete, or pruned (judged hopeless)."""
    import optuna

    return study.get_trials(deepcopy=False, states=tuple(getattr(optuna.trial.TrialState, s) for s in FINISHED_STATES))


def _complete(study) -> List:
    import optuna

    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def _fail_unbeaten_trials(study, settings: Settings) -> None:
    """A worker killed between asking for a trial and its first heartbeat (a window of
    microseconds, see _claim) leaves a RUNNING trial that Optuna's heartbeat check never sees. One
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


def _held(study) -> int:
    """Slots finished, running, queued, or waiting for their retry (_held_slots)."""
    return len(_held_slots(study.get_trials(deepcopy=False)))


def _claim(study, settings: Settings):
    """Ask for a trial and hold one of the study's --trials slots with it: (trial, params), or
    None when there is nothing to do now (every slot is finished or held by a running trial, or
    the next round waits for the one before it). A slot is the trial's rank among the held slots
    (_held_slots) by number, so that workers anywhere agree on who holds which slot without
    talking to each other; a trial that finds every slot taken is released (marked, failed, not
    retried)."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    held = len(_held_slots(trials))
    waiting = any(t.state == optuna.trial.TrialState.WAITING for t in trials)
    if held >= settings.trials and not waiting:
        return None
    if _space_for_round(study, settings, settings.round_of(min(held, settings.trials - 1))) is None and not waiting:
        return None
    trial = study.ask()
    # Optuna finds a dead worker's trial by its heartbeat, and a trial that never beat is never
    # found: the first beat goes in at once, before anything that takes time.
    study._storage.record_heartbeat(trial._trial_id)
    slot = _slot_of(study._storage.get_trial(trial._trial_id))
    rank = sum(other < slot for other in _held_slots(study.get_trials(deepcopy=False)))
    space = _space_for_round(study, settings, settings.round_of(rank)) if rank < settings.trials else None
    if space is None:
        trial.set_user_attr(RELEASED_ATTR, True)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return None
    return trial, _draw(trial, settings, space, settings.round_of(rank))


class _Heartbeat:
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

    def __enter__(self) -> "_Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


class _Progress:
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
        return _run_workers(settings)
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
    bar = _Progress(settings.trials, min(settings.trials, len(_finished(study))), settings.progress)
    try:
        while len(_finished(study)) < settings.trials and (stop_after is None or new_trials < stop_after):
            optuna.storages.fail_stale_trials(study)
            _fail_unbeaten_trials(study, settings)
            if settings.style == "panda":
                claimed = _claim(study, settings)
                if claimed is None:
                    time.sleep(POLL_SECONDS)    # the last slots are running elsewhere (or a round is closing)
                    continue
                trial, params = claimed
                spec = spec_for(params, seed=settings.seed)

                def on_epoch(epoch, value, trial=trial):
                    trial.report(value, epoch)
                    return trial.should_prune()

                with _Heartbeat(study, [trial]):
                    curve, _ = train_panda(settings.framework, spec, data, settings.epochs, settings.seed, on_epoch)
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
                    if claimed and settings.round_of(_held(study)) != claimed[0][0].user_attrs.get(ROUND_ATTR, 0):
                        break
                    one = _claim(study, settings)
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
                with _Heartbeat(study, [trial for trial, _ in claimed]):
                    for members in groups.values():
                        curves, losses = train_caviar(settings.framework, [spec for _, spec in members], data,
                                                      settings.epochs, settings.seed)
                        for (trial, _), curve, loss in zip(members, curves, losses):
                            trial.set_user_attr("curve", curve)
                            trial.set_user_attr("final_loss", loss if math.isfinite(loss) else None)
                            study.tell(trial, curve[-1])
                new_trials += len(claimed)
            finished = _finished(study)
            bar.show(len(finished), max((t.value for t in _complete(study)), default=None))
    finally:
        bar.close()
    return new_trials


def _run_workers(settings: Settings) -> Dict[str, object]:
    """``--workers N`` on this machine: N processes of `bnbench tune` on the same study and
    storage (SQLite in WAL mode by default), then the summary. The study is created here first,
    so that the workers only ever open it."""
    import subprocess
    import sys

    started = time.perf_counter()
    study = open_study(settings)
    before = len(_finished(study))
    space_file = os.path.join(settings.folder, "space.json")
    atomic_write_json(space_file, {field: d.to_dict() for field, d in settings.space.items()})
    command = [sys.executable, "-m", "bnbench.cli", "tune", "--framework", settings.framework, "--trials", str(settings.trials),
               "--strategy", settings.strategy, "--style", settings.style, "--study", settings.study,
               "--storage", settings.storage_url, "--seed", str(settings.seed), "--epochs", str(settings.epochs),
               "--rounds", str(settings.rounds), "--results", settings.results, "--heartbeat", str(settings.heartbeat),
               "--space", space_file, "--worker", "--quiet"]
    workers = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for _ in range(settings.workers)]
    bar = _Progress(settings.trials, min(settings.trials, before), settings.progress)
    try:
        while any(worker.poll() is None for worker in workers):
            finished = _finished(study)
            bar.show(len(finished), max((t.value for t in _complete(study)), default=None))
            time.sleep(POLL_SECONDS)
    finally:
        bar.close()
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    errors = [(worker.returncode, worker.stderr.read().strip()) for worker in workers]
    failed = [(code, text) for code, text in errors if code != 0]
    if len(_finished(study)) < settings.trials:
        code, text = failed[0] if failed else (0, "")
        raise TuneError(f"the study stopped at {len(_finished(study))} of {settings.trials} trials: "
                        f"{len(failed)} of {settings.workers} workers failed (first, exit {code}: "
                        f"{(text.splitlines() or ['no message'])[-1]})")
    return summarise(study, settings, load_digits("float32"), len(_finished(study)) - before, time.perf_counter() - started)


def summarise(study, settings: Settings, data, new_trials: int, elapsed: float) -> Dict[str, object]:
    complete = _complete(study)
    summary: Dict[str, object] = {
        "framework": settings.framework, "style": settings.style, "strategy": settings.strategy,
        "study": settings.study,
        "storage": _redacted(settings.storage_url) if settings.storage else "sqlite (results/tuning/<study>/study.db)",
        "n_trials_complete": len(complete), "n_trials_pruned": len(_finished(study)) - len(complete),
        "n_trials_requested": settings.trials, "workers": settings.workers,
        "trials_this_run": new_trials, "seconds_this_run": round(elapsed, 3),
        "trials_per_second": round(new_trials / elapsed, 4) if elapsed > 0 and new_trials else None,
        "epochs": settings.epochs, "seed": settings.seed, "best_params": None, "val_accuracy": None, "test_accuracy": None,
    }
    finished = len(_finished(study)) >= settings.trials
    if complete:
        best = max(complete, key=lambda t: (t.value, -t.number))
        params = {field: dimension.from_optuna(best.params[dimension.optuna_name(field)])
                  for field, dimension in settings.space.items()}
        summary["best_params"] = params
        summary["best_trial"] = best.number
        summary["val_accuracy"] = float(best.value)
        if finished:
            # the test split, once, for the chosen configuration: retrained from its seed, one model
            spec = spec_for(params, seed=settings.seed)
            framework = settings.framework
            curve, adapter = train_panda(framework, spec, data, settings.epochs, settings.seed)
            summary["test_accuracy"] = accuracy(adapter.predict_proba(data.test.X), data.test.y)
            summary["retrained_val_accuracy"] = curve[-1]
    rounds = sorted({t.user_attrs.get(ROUND_ATTR, 0) for t in complete})
    summary["rounds"] = [{"round": r, "trials": sum(t.user_attrs.get(ROUND_ATTR, 0) == r for t in complete),
                          "space": (study.user_attrs.get(f"space_round_{r}")
                                    or {k: v.to_dict() for k, v in settings.space.items()})} for r in rounds]
    atomic_write_json(os.path.join(settings.folder, "summary.json"), summary)
    atomic_write_text(os.path.join(settings.folder, "summary.md"), markdown(summary, settings))
    plot(study, settings)
    return summary


def markdown(summary: Dict[str, object], settings: Settings) -> str:
    best = summary.get("best_params") or {}
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = [f"# Tuning study `{settings.study}`", "",
             f"{settings.framework}, {settings.style}, {settings.strategy}; {summary['n_trials_complete']} of "
             f"{summary['n_trials_requested']} trials complete; {settings.epochs} epochs each on digits "
             f"(train 1150, selection on validation 288, test 359 used once).", "",
             "| | |", "|---|---|"]
    lines += [f"| best {k} | {fmt(v)} |" for k, v in best.items()]
    for key, label in (("val_accuracy", "validation accuracy (best trial)"), ("test_accuracy", "test accuracy (once, at the end)"),
                       ("retrained_val_accuracy", "validation accuracy of the retrained best"),
                       ("trials_per_second", "trials per second (this run)")):
        value = summary.get(key)
        lines.append(f"| {label} | {'-' if value is None else fmt(value)} |")
    lines += ["", "![accuracy against learning rate](accuracy_vs_learning_rate.png)", "",
              "![learning curves](learning_curves.png)", ""]
    for entry in summary.get("rounds", []):
        ranges = ", ".join(f"{field} {_range_text(d)}" for field, d in entry["space"].items())
        lines.append(f"- round {entry['round']}: {entry['trials']} trials; {ranges}")
    return "\n".join(lines) + "\n"


def _range_text(d: Dict[str, object]) -> str:
    if d.get("scale") == "choice":
        return "{" + ", ".join(map(str, d["choices"])) + "}"
    return f"[{d['low']:.4g}, {d['high']:.4g}] ({d['scale']})"


def plot(study, settings: Settings) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    complete = sorted(_complete(study), key=lambda t: t.number)
    if not complete:
        return
    name = DEFAULT_SPACE["learning_rate"].optuna_name("learning_rate")
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=100)
    colours = plt.get_cmap("viridis")
    rounds = sorted({t.user_attrs.get(ROUND_ATTR, 0) for t in complete})
    for r in rounds:
        trials = [t for t in complete if t.user_attrs.get(ROUND_ATTR, 0) == r and name in t.params]
        ax.scatter([t.params[name] for t in trials], [t.value * 100 for t in trials], s=28,
                   color=colours(r / max(1, len(rounds) - 1) * 0.85), label=f"round {r} ({len(trials)} trials)",
                   edgecolor="black", linewidth=0.4)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"{settings.study}: {settings.framework}, {settings.style}, {settings.strategy}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, os.path.join(settings.folder, "accuracy_vs_learning_rate.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=100)
    best = max(complete, key=lambda t: (t.value, -t.number))
    for trial in study.get_trials(deepcopy=False):
        curve = trial.user_attrs.get("curve")
        if not curve:
            continue
        epochs = list(range(1, len(curve) + 1))
        if trial.number == best.number:
            continue
        ax.plot(epochs, [c * 100 for c in curve], color="grey", alpha=0.35, linewidth=0.8)
    ax.plot(range(1, len(best.user_attrs.get("curve", [])) + 1), [c * 100 for c in best.user_attrs.get("curve", [])],
            color="crimson", linewidth=2, label=f"best (trial {best.number})")
    ax.plot([], [], color="grey", alpha=0.5, label="other trials (pruned ones end early)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"Learning curves, {settings.study} ({settings.style})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    _save(fig, os.path.join(settings.folder, "learning_curves.png"))
    plt.close(fig)
