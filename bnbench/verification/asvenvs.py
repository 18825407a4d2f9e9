"""The asv environments of asv.conf.json, and `bnbench verify` run inside each of them.

Rule 1 of the project: a timing is published only for an adapter that passed the equivalence
checks in the same environment. asv builds one environment per framework group; after a
benchmark run, ``python -m bnbench.verification.asvenvs verify`` runs ``bnbench verify`` with each existing
environment's own interpreter (and its benchmark-time variables: BNBENCH_ENV, KERAS_BACKEND, ...)
and writes ``results/verify/<machine>/<group>.json``, which ``bnbench report`` joins with the asv
results of that machine and group. Uses asv's configuration loader (asv is in the bench extra).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
from typing import Dict, List, Optional

from bnbench.reference.io import atomic_write_json, private_directory
from bnbench.timing.kernels import without_overrides

# `bnbench verify` of one framework's every mode and dtype in an asv environment: minutes; a hung one ends here
VERIFY_DEADLINE_S = 1800


@dataclasses.dataclass
class AsvEnvironment:
    group: str                 # BNBENCH_ENV
    name: str                  # asv's environment name (as in the result file names)
    python: str
    env_vars: Dict[str, str]

    @property
    def exists(self) -> bool:
        return os.path.exists(self.python)


def environments(config: str = "asv.conf.json") -> List[AsvEnvironment]:
    from asv import environment
    from asv.config import Config

    conf = Config.load(config)
    out = []
    for env in environment.get_environments(conf, None):
        variables = dict(env.env_vars)
        out.append(AsvEnvironment(group=variables.get("BNBENCH_ENV", env.name), name=env.name,
                                  python=os.path.join(env._path, "bin", "python"), env_vars=variables))
    return out


def verify(machine: str, grid: str, results: str = "results", config: str = "asv.conf.json",
           threads: Optional[int] = None) -> int:
    failures = 0
    for env in environments(config):
        if not env.exists:
            print(f"asv environment for {env.group} not created yet ({env.python}): not verified", file=sys.stderr)
            continue
        out = os.path.abspath(os.path.join(results, "verify", machine, f"{env.group}.json"))
        command = [env.python, "-m", "bnbench.cli", "verify", "--framework", env.group, "--machine", machine, "--json", out]
        if grid == "quick":     # what the quick grid times: each framework's best mode, float32
            command += ["--mode", "best", "--dtype", "float32"]
        variables = dict(os.environ, **env.env_vars)
        if threads:
            variables["OMP_NUM_THREADS"] = str(threads)
        print(f"verify in the asv environment of {env.group}: {' '.join(command[1:])}", flush=True)
        # not from the checkout (its bnbench/ folder would shadow the environment's installed bnbench),
        # nor from a folder others can write to: a folder of its own; and a deadline
        with private_directory() as folder:
            try:
                failures += subprocess.call(command, env=variables, cwd=folder, timeout=VERIFY_DEADLINE_S) != 0
            except subprocess.TimeoutExpired:
                print(f"verify in the asv environment of {env.group}: timed out after {VERIFY_DEADLINE_S} s", file=sys.stderr)
                failures += 1
    return 1 if failures else 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bnbench.verification.asvenvs")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("verify", help="run bnbench verify inside every existing asv environment")
    run.add_argument("--machine", required=True)
    run.add_argument("--grid", choices=("quick", "full"), default="quick")
    run.add_argument("--results", default="results")
    run.add_argument("--config", default="asv.conf.json")
    info = sub.add_parser("runinfo", help="record the settings of a benchmark run (read by bnbench report)")
    info.add_argument("--machine", required=True)
    info.add_argument("--grid", choices=("quick", "full"), default="quick")
    info.add_argument("--threads", type=int, required=True)
    info.add_argument("--config", default="asv.conf.json")
    sub.add_parser("list", help="the asv environments and whether they exist")
    args = parser.parse_args(argv)
    if args.command == "list":
        for env in environments():
            print(f"{env.group:18} {'exists' if env.exists else 'missing':8} {env.name}")
        return 0
    if args.command == "runinfo":
        return write_run_info(args.machine, args.grid, args.threads, args.config)
    return verify(args.machine, args.grid, args.results, args.config)


def write_run_info(machine: str, grid: str, threads: int, config: str = "asv.conf.json") -> int:
    """The run's settings beside the machine's asv results (asv.conf.json's results_dir)."""
    import datetime

    import asv
    from asv.config import Config

    results_dir = Config.load(config).results_dir

    atomic_write_json(os.path.join(results_dir, machine, "run-info.json"), {
        "asv_version": asv.__version__, "grid": grid, "threads": threads,
        # make bench runs asv without them (bnbench.timing.kernels): the machine's own kernels
        "kernel_overrides_removed": without_overrides(os.environ)[1],
        "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
