"""A framework's one declaration: what it is, how it is installed, where it runs and how it is
timed. Every adapter class declares it as class attributes; ``Adapter.__init_subclass__`` gathers
them into one frozen ``Declaration`` (``Adapter.declaration``), which the adapter, its worker proxy
(bnbench.timing.worker) and the catalogue (bnbench.catalogue: asv.conf.json, the Makefile's
environments, pyproject's extras, the documents' lists) all read. A proxy takes the same object,
so a field added here reaches it without a line written for it.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Mapping, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Alternative:
    """Another form of a mode, timed against the kept form in the framework's tuning log
    (``bnbench tunelog``) and published there, never in the grid: what it changes, and the
    environment variables its worker process starts with where that is how the change is made
    (allocator tunables, framework flags read when the framework is imported). A change made in
    code is read by the adapter from ``self.variant``."""

    what: str
    variables: Tuple[Tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Declaration:
    name: str
    modes: Tuple[str, ...] = ()
    best_mode: str = ""                  # the form the tables time (its fastest honest form: its tuning log)
    devices: Tuple[str, ...] = ("cpu",)
    requires: Tuple[str, ...] = ()       # modules that must import
    # distributions whose installed version names the framework (empty: the modules in ``requires``)
    packages: Tuple[str, ...] = ()
    tuning: Mapping[str, str] = dataclasses.field(default_factory=dict)    # {mode: its published flags}
    # {mode: {name: Alternative}}: the framework's own alternatives to a mode's kept form
    alternatives: Mapping[str, Mapping[str, Alternative]] = dataclasses.field(default_factory=dict)
    # the kept form's allocator where its tuning log measured that another wins (bnbench.adapters.allocator)
    allocator: str = "default"
    description: str = ""
    status: str = ""                     # maintained or retired, by whom, with the evidence
    requirements: Tuple[str, ...] = ()   # pip requirements, with their pins
    python: str = "3.11"                 # the Python of its environment
    # None: the shared main environment (a pyproject extra named after the framework); else the
    # name of its own venv under environments_dir(), reached through a worker process.
    environment: Optional[str] = None
    install_then: Tuple[str, ...] = ()   # a second pip step in its own venv (after requirements)
    setup_script: str = ""               # its own environment made by this script instead of pip
    # Debian packages its kept form links to where they are installed (`make env` installs them)
    system_packages: Tuple[str, ...] = ()
    asv_variables: Tuple[Tuple[str, str], ...] = ()   # set in its asv environment at benchmark time
    timed_by: str = "asv"                # "asv": an asv environment; "worker": its own worker (asv cannot build it)
    tested_in_environment: bool = False  # `make test` also runs the reference tests inside its own venv
    trains_many: bool = False            # implements many_models() (tuning's "caviar" style)
    # devices on which this framework's plain matmul is the peak that fractions of peak divide by
    peak_devices: Tuple[str, ...] = ()
    # precisions beyond the dtype's own it offers on a device: {"tf32": ("cuda",)}
    precisions: Mapping[str, Tuple[str, ...]] = dataclasses.field(default_factory=dict)
    # pip requirements of its CUDA build beyond what the lent GPU machine has (bnbench.catalogue.wheelhouse
    # carries them there as wheels): () where the machine has the framework itself
    gpu_requirements: Tuple[str, ...] = ()

    @classmethod
    def fields(cls) -> Tuple[str, ...]:
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def of(cls, adapter_class) -> "Declaration":
        """The declaration an adapter class makes through its class attributes (inherited ones too)."""
        return cls(**{name: getattr(adapter_class, name) for name in cls.fields()})

    def environment_hint(self) -> str:
        """How to make the framework's environment."""
        if self.environment is None:
            return f"pip install 'bnbench[{self.name}]' ({', '.join(self.requirements)})" if self.requirements else ""
        how = self.setup_script or ", ".join(self.requirements + self.install_then)
        return f"`make env-{self.environment}` (Python {self.python}: {how})"

    def kept_mode(self) -> str:
        return self.best_mode or (self.modes[0] if self.modes else "")

    def as_dict(self) -> Dict[str, object]:
        return dataclasses.asdict(self)
