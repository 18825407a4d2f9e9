"""The ``bnbench`` command line.

Every failure a user can cause (a bad flag, file, spec or array) ends in one line on stderr
that names the problem, and a non-zero exit status; no output file is left behind.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import zipfile
from typing import Dict, List, Optional, Sequence

import numpy as np


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage + message
        raise CliError(f"{self.prog}: {message} (see {self.prog} --help)")


# --------------------------------------------------------------------------- frameworks
def cmd_frameworks(args: argparse.Namespace) -> int:
    from bnbench.adapters import describe, names

    rows = [describe(name, probe=True) for name in names()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(_frameworks_table(rows))
    return 0


def _frameworks_table(rows: List[Dict[str, object]]) -> str:
    header = ["framework", "available", "version", "modes", "devices", "note"]
    table = []
    for row in rows:
        devices = []
        for device in row["devices"]:
            problem = row["device_status"].get(device) if row["device_status"] else None
            devices.append(device if problem is None else f"{device} (unavailable)")
        notes = [row["reason"]] if row["reason"] else []
        notes += [f"{device}: {problem}" for device, problem in (row["device_status"] or {}).items() if problem]
        table.append([row["name"], "yes" if row["available"] else "no", row["version"] or "-",
                      ", ".join(row["modes"]), ", ".join(devices), "; ".join(notes)])
    widths = [max(len(str(line[i])) for line in [header] + table) for i in range(len(header))]
    fmt = lambda line: "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(line) for line in table])


# --------------------------------------------------------------------------- trace
def _load_npz(path: str, what: str) -> Dict[str, np.ndarray]:
    if not os.path.exists(path):
        raise CliError(f"{what} file {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not hasattr(archive, "files"):
                raise CliError(f"{what} file {path!r} is a single .npy array, expected an .npz archive of named arrays")
            return {name: archive[name] for name in archive.files}
    except CliError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise CliError(f"{what} file {path!r} is not a readable .npz archive: {error}") from None


def load_batches(path: str, spec) -> "tuple[np.ndarray, np.ndarray]":
    from bnbench.trace import check_batches

    arrays = _load_npz(path, "batch")
    unknown = sorted(set(arrays) - {"X", "y"})
    missing = [name for name in ("X", "y") if name not in arrays]
    if missing or unknown:
        found = ", ".join(sorted(arrays)) or "nothing"
        raise CliError(f"batch file {path!r} must hold exactly the arrays X and y; it holds {found}")
    from bnbench.reference.model import check_batch

    try:
        X, y = check_batches(spec, arrays["X"], arrays["y"])
    except ValueError as error:
        raise CliError(f"batch file {path!r}: {error}") from None

    for k in range(X.shape[0]):   # every batch, so that a bad one fails before anything runs
        try:
            check_batch(spec, X[k], y[k], training=True)
        except ValueError as error:
            raise CliError(f"batch file {path!r}, batch {k}: {error}") from None
    return X, y


def cmd_trace(args: argparse.Namespace) -> int:
    from bnbench.adapters import Unavailable, Unsupported, get
    from bnbench.adapters.registry import UnknownFramework
    from bnbench.io import atomic_save_npz
    from bnbench.reference.spec import ParameterError, Spec, SpecError, check_parameters, initial_parameters
    from bnbench.trace import run

    try:
        adapter_class = get(args.framework)
    except UnknownFramework as error:
        raise CliError(str(error)) from None
    if args.mode is not None and args.mode not in adapter_class.modes:
        raise CliError(f"{args.framework} has no mode {args.mode!r}; modes: {', '.join(adapter_class.modes)}")
    if args.device not in adapter_class.devices:
        raise CliError(f"{args.framework} has no device {args.device!r}; devices: {', '.join(adapter_class.devices)}")
    try:
        spec = Spec.load(args.spec)
    except SpecError as error:
        raise CliError(str(error)) from None
    if args.params is not None:
        try:
            params = check_parameters(spec, _load_npz(args.params, "parameters"), source=args.params)
        except ParameterError as error:
            raise CliError(str(error)) from None
    else:
        params = initial_parameters(spec)
    X, y = load_batches(args.batch, spec)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise CliError(f"output folder {out_dir!r} does not exist")
    try:
        adapter = adapter_class(spec, params, mode=args.mode, device=args.device)
        trace = run(adapter, X, y)
    except (Unavailable, Unsupported) as error:
        raise CliError(str(error)) from None
    atomic_save_npz(args.out, trace)
    if not args.quiet:
        losses = ", ".join(f"{loss:.6g}" for loss in trace["losses"][:5])
        more = ", ..." if len(trace["losses"]) > 5 else ""
        print(f"{adapter.name} ({adapter.mode}, {adapter.device}, {spec.dtype}): {X.shape[0]} step(s) of m={X.shape[1]}; "
              f"losses {losses}{more}; wrote {args.out}")
    return 0


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bnbench", description="One batch-normalised network in every framework: checked, then timed.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    frameworks = commands.add_parser("frameworks", help="list the adapters, their modes and devices, and what is available here")
    frameworks.add_argument("--json", action="store_true", help="a JSON list of {name, modes, devices, available, reason, ...}")
    frameworks.set_defaults(handler=cmd_frameworks)

    trace = commands.add_parser("trace", help="run one adapter on given inputs and write every tensor to an .npz")
    trace.add_argument("--framework", required=True, metavar="NAME", help="an adapter name (see `bnbench frameworks`)")
    trace.add_argument("--mode", default=None, help="execution mode (default: the adapter's first)")
    trace.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    trace.add_argument("--spec", required=True, metavar="SPEC.json", help="spec fields as in SPEC.md")
    trace.add_argument("--params", default=None, metavar="PARAMS.npz", help="initial arrays by SPEC.md names (default: from the spec's seed)")
    trace.add_argument("--batch", required=True, metavar="BATCH.npz", help="X (K, m, n_features) and y (K, m): K training steps")
    trace.add_argument("--out", required=True, metavar="OUT.npz", help="where to write loss, probs, grad/*, losses, param/*, eval_probs")
    trace.add_argument("--quiet", action="store_true", help="print nothing on success")
    trace.set_defaults(handler=cmd_trace)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        return int(args.handler(args) or 0)
    except CliError as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # an unexpected failure still gets one line; --debug shows where
        if debug:
            raise
        first_line = (str(error).strip().splitlines() or [""])[0]
        print(f"error: {type(error).__name__}: {first_line} (run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
