"""A study's settings, as the command's flags give them, checked with the flag and value named."""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Dict, Optional

from bnbench.adapters import names, registry
from bnbench.tuning.space import DEFAULT_SPACE, Dimension, TuneError
from bnbench.tuning.trial import caviar_frameworks

# Worker processes per core of this machine at most: more only queue for the cores and the storage's
# locks (each is a Python process holding its framework); a --workers of 1000 was accepted.
WORKERS_PER_CORE = 4


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
    device: str = "cpu"       # where the models train (panda: the adapter's device; caviar: its program's)

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
        if not 1 <= self.workers <= WORKERS_PER_CORE * (os.cpu_count() or 1):
            raise TuneError(f"--workers {self.workers} must be from 1 to {WORKERS_PER_CORE * (os.cpu_count() or 1)} "
                            f"({WORKERS_PER_CORE} per core)")
        if self.heartbeat < 1:
            raise TuneError(f"--heartbeat {self.heartbeat} must be at least 1 (seconds)")
        if self.chunk < 1:
            raise TuneError(f"--models {self.chunk} must be at least 1")
        if self.device not in ("cpu", "cuda"):
            raise TuneError(f"--device {self.device!r} must be cpu or cuda")
        declared = registry.local_class(self.framework)
        if self.device not in declared.devices:
            raise TuneError(f"--device {self.device}: {self.framework} has no such device (devices: "
                            f"{', '.join(declared.devices)})")

    @property
    def n_rounds(self) -> int:
        return 1 if self.strategy == "random" else min(self.rounds, self.trials)

    def round_of(self, index: int) -> int:
        per_round = math.ceil(self.trials / self.n_rounds)
        return min(self.n_rounds - 1, index // per_round)
