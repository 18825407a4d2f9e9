"""Where a study lives: an Optuna storage (SQLite in write-ahead-log mode under
results/tuning/<study>/, or a PostgreSQL URL any machine can join), opened with Optuna's heartbeat,
and the sampler whose draws for trial n depend only on (seed, n)."""
from __future__ import annotations

import os
import time
import urllib.parse
import warnings
from typing import Dict, List

import numpy as np

from bnbench.tuning.settings import Settings
from bnbench.tuning.space import TuneError

# Times Optuna's heartbeat callback queues a dead worker's trial again before it gives up on it.
MAX_RETRY = 3


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
    # ... and meant for study.optimize: with ask and tell, Heartbeat below does the beating
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
                raise TuneError(f"--storage {redacted(url)!r}: cannot open the study "
                                f"({type(error).__name__}: {first_line(error)})") from None
            time.sleep(0.2 + rng.uniform(0, 0.3) * (attempt + 1))
        except Exception as error:
            raise TuneError(f"--storage {redacted(url)!r}: cannot open the study "
                            f"({type(error).__name__}: {first_line(error)})") from None
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


# The variable a storage URL reaches `tune --workers`'s children through (never their command
# line, which any local user reads with ps); a user may set it too, to keep a password off theirs.
STORAGE_VARIABLE = "BNBENCH_TUNE_STORAGE"
# query parameters whose values are secrets (libpq's password, and the like)
SECRET_PARAMETERS = ("password", "passwd", "pwd", "secret", "token", "sslpassword")


def secrets_of(url: str) -> List[str]:
    """The secrets in a storage URL: the password of its user part, and of any query parameter
    named like one (``SECRET_PARAMETERS``), as written and as decoded."""
    parts = urllib.parse.urlsplit(url)
    found = []
    head, at, _ = parts.netloc.rpartition("@")
    if at and ":" in head:
        found.append(head.split(":", 1)[1])
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() in SECRET_PARAMETERS and value:
            found.append(value)
    out = []
    for secret in found:
        for form in (secret, urllib.parse.unquote(secret), urllib.parse.quote(secret, safe="")):
            if form and form not in out:
                out.append(form)
    return sorted(out, key=len, reverse=True)


def redacted(url: str) -> str:
    """The URL with every password (user part and query parameters) as ***, for messages, logs and results."""
    return scrubbed(url, url)


def scrubbed(text: str, url: str) -> str:
    """``text`` (a message, a child's stderr) with every secret of ``url`` replaced by ***."""
    for secret in secrets_of(url):
        text = text.replace(secret, "***")
    return text


def first_line(error: Exception) -> str:
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
