"""Where an adapter runs when it cannot run in the suite's own process: data of the adapter
contract (an interpreter, environment variables, how to make the environment), declared by the
adapters and acted on by the tools (bnbench.timing.worker starts the process). Imports no framework and
nothing above the adapters."""
from __future__ import annotations

import dataclasses
import os
from typing import Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where an adapter runs when not in this process: an interpreter and extra environment."""

    python: str
    env: Tuple[Tuple[str, str], ...] = ()
    where: str = ""                 # for people: "its own venv .envs/<name>"
    setup_hint: str = ""            # how to create the environment when it is missing
    # started without the environment's BLAS kernel overrides (the timed processes: the tools decide)
    native_kernels: bool = False

    def missing(self) -> Optional[str]:
        if not os.path.exists(self.python):
            hint = f"; create it with {self.setup_hint}" if self.setup_hint else ""
            return f"{self.where or self.python} does not exist ({self.python} missing){hint}"
        return None


def environments_dir() -> str:
    """Where the framework environments live: $BNBENCH_ENVS, else .envs/ in the source checkout
    bnbench runs from, else ~/.cache/bnbench/envs."""
    if os.environ.get("BNBENCH_ENVS"):
        return os.path.abspath(os.environ["BNBENCH_ENVS"])
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.exists(os.path.join(checkout, "pyproject.toml")):
        return os.path.join(checkout, ".envs")
    return os.path.join(os.path.expanduser("~"), ".cache", "bnbench", "envs")


def environment_placement(environment: str, setup_hint: str) -> Placement:
    """The worker placement for a framework venv ``environments_dir()/<environment>``."""
    root = os.path.join(environments_dir(), environment)
    return Placement(python=os.path.join(root, "bin", "python"), where=f"the {environment} environment {root}",
                     setup_hint=setup_hint)
