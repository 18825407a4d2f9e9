"""The ``bnbench`` command line.

Every failure a user can cause (a bad flag, file, spec or array) ends in one line on stderr
that names the problem, and a non-zero exit status; no output file is left behind.

Each subcommand imports the suite's modules it needs inside its own function, on purpose: the
report pulls in matplotlib and the tuner Optuna, and `bnbench frameworks` must answer in about a
second. Every other module imports at its top.
"""
from __future__ import annotations

import argparse
import concurrent.futures
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
    from bnbench.adapters import names
    from bnbench.frameworks import describe

    if args.probe:      # one at a time: frameworks' import-time initialisation is not made for threads
        rows = [describe(name, probe=True) for name in names()]
    else:               # side by side: a framework of another environment is a short run of its interpreter
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            rows = list(pool.map(lambda name: describe(name, probe=False), names()))
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
    from bnbench.adapters import Unavailable, Unsupported
    from bnbench.frameworks import get
    from bnbench.adapters.registry import UnknownFramework
    from bnbench.reference.io import atomic_save_npz
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
    departure = adapter_class.known_departure(spec, args.mode or adapter_class.modes[0], args.device, X.shape[1])
    if departure:      # the framework runs it but misses the spec's tolerance: never silently
        print(f"warning: known departure of {args.framework} from the spec for this input: {departure}", file=sys.stderr)
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


# --------------------------------------------------------------------------- conventions
def _framework_list(values: Optional[List[str]]) -> List[str]:
    from bnbench.adapters import names

    if not values:
        return names()
    chosen = [name.strip() for value in values for name in value.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in names()]
    if unknown:
        raise CliError(f"unknown framework(s) {', '.join(unknown)} for --framework; known: {', '.join(names())}")
    return chosen


def cmd_conventions(args: argparse.Namespace) -> int:
    from bnbench import conventions
    from bnbench.frameworks import get
    from bnbench.reference.io import atomic_write_json, atomic_write_text

    if args.out is not None and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CliError(f"--out {args.out!r} exists and is not a folder")
    rows, not_probed = [], []
    for name in _framework_list(args.framework):
        adapter = get(name)
        reason = adapter.import_error()
        if reason:
            not_probed.append(f"{name}: {reason}")
            continue
        try:
            probed = conventions.measure(adapter)
            if not probed:
                not_probed.append(f"{name}: no conventions probe written for it yet (its adapter writes the spec's formulas or layers by hand)")
            rows.extend(probed)
        except Exception as error:   # one framework's failed probe must not hide the others
            not_probed.append(f"{name}: probe failed: {type(error).__name__}: {(str(error).splitlines() or [''])[0]}")
    text = conventions.markdown(rows)
    if not_probed:
        text += "\nNot probed here: " + "; ".join(not_probed) + "\n"
    print(text, end="")
    if args.out is not None:
        atomic_write_text(os.path.join(args.out, "conventions.md"),
                          "# Batch-norm and momentum conventions, measured\n\n"
                          "Each framework's own layer and optimizer with their defaults, probed on a small batch "
                          "by `bnbench conventions` (bnbench/conventions.py says how).\n\n" + text)
        atomic_write_text(os.path.join(args.out, "conventions.csv"), conventions.to_csv(rows))
        atomic_write_json(os.path.join(args.out, "conventions.json"), {"rows": rows, "not_probed": not_probed})
    return 0


# --------------------------------------------------------------------------- verify
def cmd_verify(args: argparse.Namespace) -> int:
    from bnbench import verify
    from bnbench.reference.io import atomic_write_json

    frameworks = _framework_list(args.framework)
    for value, allowed, flag in ((args.device, ("cpu", "cuda"), "--device"), (args.dtype, ("float64", "float32"), "--dtype")):
        bad = [item for item in value if item not in allowed]
        if bad:
            raise CliError(f"{flag} {bad[0]!r} is not one of {', '.join(allowed)}")
    machine = args.machine or verify.machine_name()
    path = args.json or os.path.join("results", "verify", f"{machine}.json")
    if os.path.isdir(path):
        raise CliError(f"--json {path!r} is a folder, expected a file name")
    if args.mode:
        from bnbench.frameworks import get

        known = {"best"}.union(*(get(name).modes for name in frameworks))
        bad = [mode for mode in args.mode if mode not in known]
        if bad:
            raise CliError(f"--mode {bad[0]!r} is not a mode of {', '.join(frameworks)}; modes: {', '.join(sorted(known))}")
    rows = verify.run(frameworks, args.device, args.dtype, args.mode)
    if not rows:
        raise CliError("nothing to verify: no framework has the chosen modes and devices")
    print(verify.table(rows))
    previous = None
    if os.path.exists(path):
        try:
            with open(path) as handle:
                previous = json.load(handle)
        except (OSError, ValueError):
            previous = None   # unreadable: replaced by this run's (complete) result
    atomic_write_json(path, verify.merge(previous, verify.to_json(rows, machine)))
    failed = [row for row in rows if row.status == "FAIL"]
    counts = {status: sum(row.status == status for row in rows) for status in ("pass", "FAIL", "unsupported", "unavailable")}
    print(f"\n{counts['pass']} passed, {counts['FAIL']} failed, {counts['unsupported']} unsupported, "
          f"{counts['unavailable']} unavailable; wrote {path}")
    return 1 if failed else 0


# --------------------------------------------------------------------------- compare
def cmd_compare(args: argparse.Namespace) -> int:
    from bnbench import paired
    from bnbench.reference.io import atomic_write_json

    out_dir = os.path.dirname(os.path.abspath(args.json))
    if os.path.isdir(args.json):
        raise CliError(f"--json {args.json!r} is a folder, expected a file name")
    if not os.path.isdir(out_dir):
        raise CliError(f"--json {args.json!r}: folder {out_dir!r} does not exist")
    if args.budget <= 0:
        raise CliError(f"--budget {args.budget!r} must be a positive number of seconds")
    try:
        if args.frameworks is None:
            items, left_out = paired.default_items(args.device)
        else:
            items = paired.resolve_items(paired.parse_items(args.frameworks), args.device, "--frameworks")
            left_out = []
        baseline = paired.resolve_items(paired.parse_items(args.baseline, "--baseline"), args.device, "--baseline")
        if len(baseline) != 1:
            raise paired.CompareError(f"--baseline {args.baseline!r} must name one framework")
        if baseline[0] not in items:
            items = [baseline[0]] + items        # the baseline always takes part
        if not items:
            raise paired.CompareError(f"no framework to compare on {args.device}")
        settings = paired.Settings(items=items, size=args.size, dtype=args.dtype, device=args.device, baseline=baseline[0],
                                   budget=args.budget, threads=args.threads, seed=args.seed, left_out=left_out,
                                   progress=not args.quiet)
        result = paired.run(settings)
    except paired.CompareError as error:
        raise CliError(str(error)) from None
    atomic_write_json(args.json, result)
    if not args.quiet:
        print(paired.table(result))
        peak = result["peak"]
        print(f"\n{result['rounds']} rounds in {result['seconds']:.0f} s ({result['stopped']}: "
              f"{'every interval within +-' + format(100 * result['target_half_width'], '.1f') + '%' if result['stopped'] == 'converged' else 'the budget ended first'}); "
              f"{args.size}, {args.dtype}, {args.device}, {args.threads} thread(s); "
              f"peak {'-' if peak is None else format(peak['gflops'], '.4g') + ' GFLOP/s'}; machine {result['machine_id']}; "
              f"wrote {args.json}")
    failed = [row for row in result["rows"] if (row.get("not_timed") or "").startswith(("not verified", "failed:"))]
    return 1 if failed else 0


# --------------------------------------------------------------------------- tunelog
def cmd_tunelog(args: argparse.Namespace) -> int:
    from bnbench import paired, tunelog

    if not os.path.isdir(args.results):
        raise CliError(f"--results {args.results!r} is not a folder")
    if len(_framework_list([args.framework])) != 1:
        raise CliError(f"--framework {args.framework!r} must name one framework")
    sizes = [size.strip() for size in args.sizes.split(",") if size.strip()]
    if not sizes:
        raise CliError(f"--sizes {args.sizes!r} names no size")
    try:
        log = tunelog.run(args.framework, sizes=sizes, dtype=args.dtype, budget=args.budget, threads=args.threads,
                          seed=args.seed, progress=not args.quiet)
    except (tunelog.TunelogError, paired.CompareError) as error:
        raise CliError(str(error)) from None
    paths = tunelog.write(log, args.results)
    if not args.quiet:
        print(tunelog.markdown(log))
        print(f"wrote {', '.join(paths)}")
    return 0


# --------------------------------------------------------------------------- report
def cmd_report(args: argparse.Namespace) -> int:
    try:
        from bnbench import report
    except ImportError as error:
        raise CliError(f"bnbench report needs pandas and matplotlib (pip install 'bnbench[report]'): {error}") from None
    try:
        import pandas  # noqa: F401
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise CliError(f"bnbench report needs pandas and matplotlib (pip install 'bnbench[report]'): {error}") from None
    try:
        summary = report.build(args.results, prune_old_runs=not args.keep_old_runs)
    except report.ReportError as error:
        raise CliError(str(error)) from None
    for problem in summary["problems"]:
        print(f"warning: {problem}", file=sys.stderr)
    if summary["removed"]:
        print(f"removed {len(summary['removed'])} asv result file(s) that newer runs replaced entirely "
              f"({', '.join(summary['removed'][:3])}{', ...' if len(summary['removed']) > 3 else ''})")
    print(f"{summary['measurements']} measurements from {len(summary['machines'])} machine(s) "
          f"({', '.join(summary['machines']) or 'none'}); wrote {os.path.join(args.results, 'README.md')}, "
          f"{os.path.join(args.results, 'results.csv')} and {len(summary['plots'])} plot(s)")
    return 0


# --------------------------------------------------------------------------- tune
def cmd_tune(args: argparse.Namespace) -> int:
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise CliError("bnbench tune needs Optuna (pip install 'bnbench[tune]')") from None
    from bnbench import tune

    space = None
    if args.space is not None:
        if not os.path.exists(args.space):
            raise CliError(f"search space file {args.space!r} does not exist")
        try:
            with open(args.space, encoding="utf-8") as handle:
                space = json.load(handle)
        except (ValueError, UnicodeDecodeError) as error:
            raise CliError(f"search space file {args.space!r} is not valid JSON: {error}") from None
    try:
        settings = tune.Settings(framework=args.framework, trials=args.trials, strategy=args.strategy, style=args.style,
                                 study=args.study or f"{args.framework}-{args.style}-{args.strategy}",
                                 storage=args.storage, seed=args.seed, epochs=args.epochs, rounds=args.rounds,
                                 results=args.results, space=tune.load_space(space), progress=not args.quiet,
                                 workers=args.workers, heartbeat=args.heartbeat, summary=not args.worker)
        summary = tune.run(settings)
    except tune.TuneError as error:
        raise CliError(str(error)) from None
    if not args.quiet and not args.worker:
        best = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in (summary["best_params"] or {}).items())
        test = summary["test_accuracy"]
        print(f"{summary['n_trials_complete']} trials complete; best: {best}; validation {summary['val_accuracy']:.4f}, "
              f"test {'-' if test is None else f'{test:.4f}'}; {summary['trials_per_second'] or 0:.3g} trials/s this run; "
              f"wrote {settings.folder}/summary.json")
    return 0


def cmd_study(args) -> int:
    from bnbench import lecture

    try:
        result = lecture.run(args.name, seed=args.seed, results=args.results, show_progress=not args.quiet)
    except lecture.StudyError as error:
        raise CliError(str(error)) from None
    if not args.quiet:
        print(f"study {args.name}: {result['seconds']} s; wrote {os.path.join(args.results, 'lecture', args.name)}.json, "
              f".md and its plots")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    from bnbench import paired   # numpy and the suite's statistics only: no framework
    parser = _Parser(prog="bnbench", description="One batch-normalised network in every framework: checked, then timed.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    frameworks = commands.add_parser("frameworks", help="list the adapters, their modes and devices, and what is available here")
    frameworks.add_argument("--json", action="store_true", help="a JSON list of {name, modes, devices, available, reason, ...}")
    frameworks.add_argument("--probe", action="store_true",
                            help="import every framework to prove that it works, and ask each device (slow); "
                                 "default: versions from package metadata, nothing imported")
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

    conv = commands.add_parser("conventions", help="measure each framework's own batch-norm layer and momentum optimizer with their defaults")
    conv.add_argument("--framework", action="append", metavar="NAME", help="only these (repeat or comma-separate; default: all)")
    conv.add_argument("--out", default=None, metavar="DIR", help="also write DIR/conventions.md, .csv and .json")
    conv.set_defaults(handler=cmd_conventions)

    ver = commands.add_parser("verify", help="check every available framework x mode x device x dtype against the reference")
    ver.add_argument("--framework", action="append", metavar="NAME", help="only these (repeat or comma-separate; default: all)")
    ver.add_argument("--mode", action="append", default=None, metavar="MODE", help="only these modes ('best': each framework's best mode; default: all)")
    ver.add_argument("--device", action="append", default=None, metavar="DEVICE", help="cpu and/or cuda (default: both)")
    ver.add_argument("--dtype", action="append", default=None, metavar="DTYPE", help="float64 and/or float32 (default: both)")
    ver.add_argument("--json", default=None, metavar="PATH", help="where to write the result (default: results/verify/<machine>.json)")
    ver.add_argument("--machine", default=None, help="machine name recorded in the JSON (default: asv's machine name, else the host name)")
    ver.set_defaults(handler=cmd_verify)

    com = commands.add_parser("compare", help="time frameworks together in interleaved paired rounds: ratios with 95%% intervals")
    com.add_argument("--frameworks", default=None, metavar="NAME[:MODE],...",
                     help="participants (default: every installed framework in its best mode); an item named twice is the A/A check")
    com.add_argument("--size", choices=("tiny", "medium", "large"), default="medium", help="spec size (default medium)")
    com.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="default float32")
    com.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default cpu")
    com.add_argument("--baseline", default="numpy", metavar="NAME[:MODE]", help="the row every ratio divides by (default numpy)")
    com.add_argument("--budget", type=float, default=paired.DEFAULT_BUDGET, metavar="SECONDS",
                     help="time for the rounds, unless every interval is within +-2.5%% sooner (default %(default)g)")
    com.add_argument("--threads", type=_positive_int, default=2, help="compute threads of every participant (default 2)")
    com.add_argument("--seed", type=int, default=0, help="round order and bootstrap seed (default 0)")
    com.add_argument("--json", required=True, metavar="OUT.json", help="where to write the result")
    com.add_argument("--quiet", action="store_true", help="no progress bar, no table")
    com.set_defaults(handler=cmd_compare)

    tlog = commands.add_parser("tunelog", help="time every form of a framework against its kept form: its tuning log "
                                               "(results/tuning-logs/<machine>/NAME.md)")
    tlog.add_argument("--framework", required=True, metavar="NAME", help="the framework")
    tlog.add_argument("--sizes", default="tiny,large", metavar="SIZE,...", help="spec sizes (default tiny,large)")
    tlog.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="default float32")
    tlog.add_argument("--budget", type=float, default=40.0, metavar="SECONDS",
                      help="rounds' time per size, unless every interval is within +-2.5%% sooner (default %(default)g)")
    tlog.add_argument("--threads", type=_positive_int, default=2, help="compute threads of every form (default 2)")
    tlog.add_argument("--seed", type=int, default=0, help="round order and bootstrap seed (default 0)")
    tlog.add_argument("--results", default="results", metavar="DIR", help="results folder (default: results)")
    tlog.add_argument("--quiet", action="store_true", help="no progress bar, no table")
    tlog.set_defaults(handler=cmd_tunelog)

    rep = commands.add_parser("report", help="publish tables, CSV and plots from asv's results (results/README.md)")
    rep.add_argument("--results", default="results", metavar="DIR", help="asv's results folder (default: results)")
    rep.add_argument("--keep-old-runs", action="store_true",
                     help="keep asv result files whose every measurement a newer run replaced (default: remove them)")
    rep.set_defaults(handler=cmd_report)

    tun = commands.add_parser("tune", help="random search (coarse to fine) on digits, panda or caviar, with Optuna")
    tun.add_argument("--framework", required=True, metavar="NAME", help="adapter that trains the models (caviar: a framework that declares trains_many)")
    tun.add_argument("--trials", type=_positive_int, default=32, help="trials the study should hold finished, complete or pruned, by all its workers (default 32)")
    tun.add_argument("--strategy", choices=("random", "coarse-to-fine"), default="coarse-to-fine")
    tun.add_argument("--style", choices=("panda", "caviar"), default="panda",
                     help="panda: one model at a time, pruned by its learning curve; caviar: many at once (vectorised)")
    tun.add_argument("--study", default=None, metavar="NAME", help="study name (default: FRAMEWORK-STYLE-STRATEGY); running it again resumes it")
    tun.add_argument("--storage", default=None, metavar="URL", help="Optuna storage URL shared by processes and machines, e.g. postgresql+psycopg2://user@host/db "
                          "(default: SQLite in WAL mode under results/tuning/NAME/)")
    tun.add_argument("--seed", type=int, default=0, help="sampling and initial-parameter seed (default 0)")
    tun.add_argument("--epochs", type=_positive_int, default=10, help="epochs per trial (default 10)")
    tun.add_argument("--rounds", type=_positive_int, default=3, help="coarse-to-fine rounds (default 3)")
    tun.add_argument("--space", default=None, metavar="SPACE.json", help='search space, e.g. {"learning_rate": {"scale": "log", "low": 1e-4, "high": 1}}')
    tun.add_argument("--results", default="results", metavar="DIR", help="results folder (default: results)")
    tun.add_argument("--quiet", action="store_true", help="no progress bar, no summary line")
    tun.add_argument("--workers", type=_positive_int, default=1,
                     help="worker processes on this machine sharing the study (default 1); processes on other machines "
                          "join it with the same --study and --storage")
    tun.add_argument("--heartbeat", type=_positive_int, default=10, metavar="SECONDS",
                     help="a running trial beats this often; one silent for 3 beats (its worker died, on any machine) "
                          "is failed and tried again (default 10)")
    tun.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)   # started by --workers: no summary
    tun.set_defaults(handler=cmd_tune)

    stu = commands.add_parser("study", help="one of the lecture's claims, measured on digits (results/lecture/NAME.*)")
    stu.add_argument("name", metavar="NAME", help="search, scale, batchnorm, test-time or frameworks")
    stu.add_argument("--seed", type=int, default=0, help="seed of the draws and the initial parameters (default 0)")
    stu.add_argument("--results", default="results", metavar="DIR", help="results folder (default: results)")
    stu.add_argument("--quiet", action="store_true", help="no progress bar, no summary line")
    stu.set_defaults(handler=cmd_study)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "handler", None) is cmd_verify:
            args.device = args.device or ["cpu", "cuda"]
            args.dtype = args.dtype or ["float64", "float32"]
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
