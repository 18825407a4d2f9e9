"""The ``bnbench`` command line: the flags, and one small handler per command that calls the
suite's module for it.

Every failure a user can cause (a bad flag, file, spec or array) ends in one line on stderr that
names the problem, and a non-zero exit status; no output file is left behind.

Each handler imports the modules it needs inside its own function, on purpose: the report pulls in
matplotlib and the tuner Optuna, and `bnbench frameworks` must answer in about a second.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
from typing import List, Optional, Sequence

from bnbench.arguments import at_most, cores, positive_int, seconds

DTYPES = ("float32", "float64", "tf32")     # tf32: a float32 spec with TF32 matmuls, on a GPU that offers them


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage + message
        raise CliError(f"{self.prog}: {message} (see {self.prog} --help)")


def _framework_list(values: Optional[List[str]]) -> List[str]:
    from bnbench.adapters import names

    if not values:
        return names()
    chosen = [name.strip() for value in values for name in value.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in names()]
    if unknown:
        raise CliError(f"unknown framework(s) {', '.join(unknown)} for --framework; known: {', '.join(names())}")
    return chosen


def _output_file(path: str, flag: str = "--json") -> None:
    if os.path.isdir(path):
        raise CliError(f"{flag} {path!r} is a folder, expected a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CliError(f"{flag} {path!r}: folder {folder!r} does not exist")


def _results_folder(path: str) -> None:
    if not os.path.isdir(path):
        raise CliError(f"--results {path!r} is not a folder")


# --------------------------------------------------------------------------- commands
def cmd_frameworks(args: argparse.Namespace) -> int:
    from bnbench.adapters import names
    from bnbench.timing.frameworks import describe, table

    if args.probe:      # one at a time: frameworks' import-time initialisation is not made for threads
        rows = [describe(name, probe=True) for name in names()]
    else:               # side by side: a framework of another environment is a short run of its interpreter
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            rows = list(pool.map(lambda name: describe(name, probe=False), names()))
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    from bnbench.adapters import Unavailable, Unsupported
    from bnbench.adapters.registry import UnknownFramework
    from bnbench.equivalence.trace import InputError, load_batch_file, load_npz, run
    from bnbench.reference.io import atomic_save_npz
    from bnbench.reference.spec import ParameterError, Spec, SpecError, check_parameters, initial_parameters
    from bnbench.timing.frameworks import get

    try:
        adapter_class = get(args.framework)
        if args.mode is not None and args.mode not in adapter_class.modes:
            raise CliError(f"{args.framework} has no mode {args.mode!r}; modes: {', '.join(adapter_class.modes)}")
        if args.device not in adapter_class.devices:
            raise CliError(f"{args.framework} has no device {args.device!r}; devices: {', '.join(adapter_class.devices)}")
        spec = Spec.load(args.spec)
        params = (check_parameters(spec, load_npz(args.params, "parameters"), source=args.params) if args.params
                  else initial_parameters(spec))
        X, y = load_batch_file(args.batch, spec)
    except (UnknownFramework, SpecError, ParameterError, InputError) as error:
        raise CliError(str(error)) from None
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
        losses = ", ".join(f"{loss:.6g}" for loss in trace["losses"][:5]) + (", ..." if len(trace["losses"]) > 5 else "")
        print(f"{adapter.name} ({adapter.mode}, {adapter.device}, {spec.dtype}): {X.shape[0]} step(s) of m={X.shape[1]}; "
              f"losses {losses}; wrote {args.out}")
    return 0


def cmd_conventions(args: argparse.Namespace) -> int:
    from bnbench.equivalence import conventions
    from bnbench.timing.frameworks import get

    if args.out is not None and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CliError(f"--out {args.out!r} exists and is not a folder")
    rows, not_probed = conventions.collect(get(name) for name in _framework_list(args.framework))
    print(conventions.text(rows, not_probed), end="")
    if args.out is not None:
        conventions.write(args.out, rows, not_probed)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from bnbench.timing import machine
    from bnbench.timing.frameworks import get
    from bnbench.verification import verify

    frameworks = _framework_list(args.framework)
    devices, dtypes = args.device or ["cpu", "cuda"], args.dtype or ["float64", "float32"]
    for value, allowed, flag in ((devices, ("cpu", "cuda"), "--device"), (dtypes, DTYPES, "--dtype")):
        bad = [item for item in value if item not in allowed]
        if bad:
            raise CliError(f"{flag} {bad[0]!r} is not one of {', '.join(allowed)}")
    machine_id = args.machine or machine.identify()["id"]
    path = args.json or verify.default_path(machine_id)
    if os.path.isdir(path):
        raise CliError(f"--json {path!r} is a folder, expected a file name")
    if args.mode:
        known = {"best"}.union(*(get(name).modes for name in frameworks))
        bad = [mode for mode in args.mode if mode not in known]
        if bad:
            raise CliError(f"--mode {bad[0]!r} is not a mode of {', '.join(frameworks)}; modes: {', '.join(sorted(known))}")
    rows = verify.run(frameworks, devices, dtypes, args.mode)
    if not rows:
        raise CliError("nothing to verify: no framework has the chosen modes and devices")
    print(verify.table(rows))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    verify.write(path, rows, machine_id)
    print(f"\n{verify.counts(rows)}; wrote {path}")
    return 1 if any(row.status == "FAIL" for row in rows) else 0


def _earlier(path: str):
    """The comparison a run's JSON replaces, read as every reader reads it; None where there is none
    or it cannot be read as one (it is replaced all the same)."""
    from bnbench.timing import records

    try:
        return records.read(path, records.COMPARISON) if os.path.exists(path) else None
    except records.RecordError:
        return None


def cmd_compare(args: argparse.Namespace) -> int:
    from bnbench.comparisons import compare
    from bnbench.reference.io import atomic_write_json
    from bnbench.timing.rounds import RoundsError

    _output_file(args.json)
    try:
        settings = compare.request(args.frameworks, args.baseline, size=args.size, dtype=args.dtype, device=args.device,
                                   budget=args.budget, threads=args.threads, seed=args.seed, progress=not args.quiet,
                                   queued=True if args.queued else None, sets=args.sets)
        result = compare.run(settings)
    except (compare.CompareError, RoundsError) as error:
        raise CliError(str(error)) from None
    compare.against_earlier(result, _earlier(args.json))     # the run this one replaces, if any
    atomic_write_json(args.json, result)
    if args.quiet and (result.get("undisturbed") or {}).get("whole_run_slower"):
        print(f"bnbench compare: {compare.state_line(result)}", file=sys.stderr)
    if not args.quiet:
        print(compare.verdict_table(result) + "\n\n" + compare.table(result))
        print("\n" + compare.summary(result, args.json))
    return 1 if compare.failed(result) else 0


def cmd_tunelog(args: argparse.Namespace) -> int:
    from bnbench.comparisons import compare, tunelog
    from bnbench.timing.rounds import RoundsError

    _results_folder(args.results)
    if len(_framework_list([args.framework])) != 1:
        raise CliError(f"--framework {args.framework!r} must name one framework")
    sizes = None if args.sizes is None else [size.strip() for size in args.sizes.split(",") if size.strip()]
    if sizes == []:
        raise CliError(f"--sizes {args.sizes!r} names no size")
    try:
        log = tunelog.run(args.framework, sizes=sizes, dtype=args.dtype, device=args.device, budget=args.budget,
                          threads=args.threads, seed=args.seed, progress=not args.quiet)
    except (tunelog.TunelogError, compare.CompareError, RoundsError) as error:
        raise CliError(str(error)) from None
    paths = tunelog.write(log, args.results)
    if not args.quiet:
        print(tunelog.markdown(log) + f"\nwrote {', '.join(paths)}")
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    from bnbench.comparisons import compare, scale
    from bnbench.timing.rounds import RoundsError

    _results_folder(args.results)
    try:
        sweep = scale.run(scale.request(args.axis, args.frameworks, device=args.device, dtype=args.dtype,
                                        budget=args.budget, threads=args.threads, seed=args.seed, points=args.points,
                                        progress=not args.quiet))
    except (scale.ScaleError, compare.CompareError, RoundsError) as error:
        raise CliError(str(error)) from None
    path = scale.write(sweep, args.results)
    if not args.quiet:
        print(scale.table(sweep) + f"\nwrote {path}")
    return 1 if scale.failed(sweep) else 0


def cmd_report(args: argparse.Namespace) -> int:
    try:
        import matplotlib  # noqa: F401
        import pandas  # noqa: F401

        from bnbench.publishing import report
    except ImportError as error:
        raise CliError(f"bnbench report needs pandas and matplotlib (pip install 'bnbench[report]'): {error}") from None
    try:
        summary = report.build(args.results, prune_old_runs=not args.keep_old_runs)
    except report.ReportError as error:
        raise CliError(str(error)) from None
    for problem in summary["problems"]:
        print(f"warning: {problem}", file=sys.stderr)
    print(report.summary_line(summary, args.results))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise CliError("bnbench tune needs Optuna (pip install 'bnbench[tune]')") from None
    from bnbench.tuning import settings as tune_settings
    from bnbench.tuning import space, study, summary
    from bnbench.tuning.storage import STORAGE_VARIABLE

    try:
        settings = tune_settings.Settings(
            framework=args.framework, trials=args.trials, strategy=args.strategy, style=args.style,
            study=args.study or f"{args.framework}-{args.style}-{args.strategy}" + ("-cuda" if args.device == "cuda" else ""),
            storage=args.storage or os.environ.get(STORAGE_VARIABLE) or None, seed=args.seed, epochs=args.epochs, rounds=args.rounds, results=args.results,
            space=space.load_space_file(args.space), progress=not args.quiet, workers=args.workers,
            heartbeat=args.heartbeat, summary=not args.worker, device=args.device, chunk=args.models)
        result = study.run(settings)
    except space.TuneError as error:
        raise CliError(str(error)) from None
    if not args.quiet and not args.worker:
        print(summary.summary_line(result, settings.folder))
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


# --------------------------------------------------------------------------- the parser
def _timing_flags(parser, *, budget: float, threads_help: str) -> None:
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="default float32 (true float32); tf32: float32 with TF32 matmuls, on a GPU")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default cpu")
    parser.add_argument("--budget", type=seconds, default=budget, metavar="SECONDS",
                        help="rounds' time, unless every interval is within +-2.5%% sooner (default %(default)g)")
    parser.add_argument("--threads", type=at_most(cores(), "the machine's cores"), default=2, help=threads_help)
    parser.add_argument("--worker-deadline", type=seconds, default=None, metavar="SECONDS",
                        help="how long a worker may take to start, build and verify before its row fails "
                             "(default $BNBENCH_WORKER_DEADLINE_S, else 900); a burst's own deadline comes from its length")
    parser.add_argument("--seed", type=int, default=0, help="round order and bootstrap seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no table")


def build_parser() -> argparse.ArgumentParser:
    from bnbench.timing.rounds import DEFAULT_BUDGET  # numpy and the suite's statistics only: no framework
    from bnbench.timing.sets import DEFAULT_SETS, MAX_SETS
    from bnbench.timing.workload import SIZE_ORDER
    from bnbench.tuning.settings import WORKERS_PER_CORE

    parser = _Parser(prog="bnbench", description="One batch-normalised network in every framework: checked, then timed.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    frameworks = commands.add_parser("frameworks", help="list the adapters, their modes and devices, and what is available here")
    frameworks.add_argument("--json", action="store_true", help="a JSON list of {name, modes, devices, available, reason, ...}")
    frameworks.add_argument("--probe", action="store_true", help="import every framework to prove that it works, and ask "
                                                                 "each device (slow); default: versions from package metadata")
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
    ver.add_argument("--dtype", action="append", default=None, metavar="DTYPE",
                     help="float64, float32 and/or tf32 (default: float64 and float32)")
    ver.add_argument("--json", default=None, metavar="PATH", help="where to write the result (default: results/verify/<machine>/main.json)")
    ver.add_argument("--machine", default=None, help="machine id recorded in the JSON (default: this machine's, from its hardware)")
    ver.set_defaults(handler=cmd_verify)

    com = commands.add_parser("compare", help="time frameworks together in interleaved paired rounds: ratios with 95%% intervals")
    com.add_argument("--frameworks", default=None, metavar="NAME[:MODE],...",
                     help="participants (default: every installed framework in its best mode); an item named twice is an A/A pair")
    com.add_argument("--size", choices=SIZE_ORDER, default="medium", help="spec size (default medium; xlarge on cuda only)")
    com.add_argument("--baseline", default="numpy", metavar="NAME[:MODE]", help="the row every ratio divides by (default numpy)")
    com.add_argument("--json", required=True, metavar="OUT.json", help="where to write the result")
    com.add_argument("--queued", action="store_true",
                     help="queue every burst's steps and synchronise once, with the latency beside, on the CPU too "
                          "(the GPU run's dry run; on a GPU it is always so)")
    com.add_argument("--sets", type=at_most(MAX_SETS, "each set starts every worker again"), default=DEFAULT_SETS, metavar="N",
                     help="split the rounds over N sets of freshly started workers, each with its share of the budget: "
                          "what stays fixed within a process shows in the intervals (default %(default)d)")
    _timing_flags(com, budget=DEFAULT_BUDGET, threads_help="compute threads of every participant (default 2)")
    com.set_defaults(handler=cmd_compare)

    tlog = commands.add_parser("tunelog", help="time every form of a framework against its kept form: its tuning log "
                                               "(results/tuning-logs/<machine>/NAME.md)")
    tlog.add_argument("--framework", required=True, metavar="NAME", help="the framework")
    tlog.add_argument("--sizes", default=None, metavar="SIZE,...", help="spec sizes (default tiny,large; on cuda tiny,large,xlarge)")
    tlog.add_argument("--results", default="results", metavar="DIR", help="results folder (default: results)")
    _timing_flags(tlog, budget=40.0, threads_help="compute threads of every form (default 2)")
    tlog.set_defaults(handler=cmd_tunelog)

    sca = commands.add_parser("scale", help="how each framework's step time grows with the work: a sweep, a fit of its fixed "
                                            "cost and rate, crossovers and memory (results/scale/<machine>/)")
    sca.add_argument("--axis", choices=("batch", "width"), required=True,
                     help="batch: the batch swept at a fixed width; width: every layer's width swept at a fixed batch "
                          "(bnbench.comparisons.scale.AXES)")
    sca.add_argument("--frameworks", default=None, metavar="NAME[:MODE],...",
                     help="participants (default: the best mode of every framework of the main environment)")
    sca.add_argument("--points", type=positive_int, default=None, help="points of the sweep, log-spaced (default: every power of 2)")
    sca.add_argument("--results", default="results", metavar="DIR", help="results folder (default: results)")
    _timing_flags(sca, budget=20.0, threads_help="compute threads of every participant (default 2)")
    sca.set_defaults(handler=cmd_scale)

    rep = commands.add_parser("report", help="publish tables, CSV and plots from the results (results/README.md)")
    rep.add_argument("--results", default="results", metavar="DIR", help="results folder (default: results)")
    rep.add_argument("--keep-old-runs", action="store_true",
                     help="keep asv result files whose every measurement a newer run replaced (default: remove them)")
    rep.set_defaults(handler=cmd_report)

    tun = commands.add_parser("tune", help="random search (coarse to fine) on digits, panda or caviar, with Optuna")
    tun.add_argument("--framework", required=True, metavar="NAME", help="adapter that trains the models (caviar: a framework that declares trains_many)")
    tun.add_argument("--trials", type=positive_int, default=32, help="trials the study should hold finished, complete or pruned, by all its workers (default 32)")
    tun.add_argument("--strategy", choices=("random", "coarse-to-fine"), default="coarse-to-fine")
    tun.add_argument("--style", choices=("panda", "caviar"), default="panda",
                     help="panda: one model at a time, pruned by its learning curve; caviar: many at once (vectorised)")
    tun.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the models train (default cpu)")
    tun.add_argument("--models", type=positive_int, default=16, metavar="N",
                     help="caviar: models asked, trained in one program and told together (default 16; 256 or more on a GPU)")
    tun.add_argument("--study", default=None, metavar="NAME", help="study name (default: FRAMEWORK-STYLE-STRATEGY); running it again resumes it")
    tun.add_argument("--storage", default=None, metavar="URL", help="Optuna storage URL shared by processes and machines, e.g. postgresql+psycopg2://user@host/db "
                          "(default: $BNBENCH_TUNE_STORAGE, which keeps a password off the command line, else SQLite "
                          "in WAL mode under results/tuning/NAME/)")
    tun.add_argument("--seed", type=int, default=0, help="sampling and initial-parameter seed (default 0)")
    tun.add_argument("--epochs", type=positive_int, default=10, help="epochs per trial (default 10)")
    tun.add_argument("--rounds", type=positive_int, default=3, help="coarse-to-fine rounds (default 3)")
    tun.add_argument("--space", default=None, metavar="SPACE.json", help='search space, e.g. {"learning_rate": {"scale": "log", "low": 1e-4, "high": 1}}')
    tun.add_argument("--results", default="results", metavar="DIR", help="results folder (default: results)")
    tun.add_argument("--quiet", action="store_true", help="no progress bar, no summary line")
    tun.add_argument("--workers", type=at_most(WORKERS_PER_CORE * cores(), f"{WORKERS_PER_CORE} per core"), default=1,
                     help="worker processes on this machine sharing the study (default 1); processes on other machines "
                          "join it with the same --study and --storage")
    tun.add_argument("--heartbeat", type=positive_int, default=10, metavar="SECONDS",
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
        if getattr(args, "worker_deadline", None):
            from bnbench.timing.worker import DEADLINE_VARIABLE

            os.environ[DEADLINE_VARIABLE] = repr(args.worker_deadline)     # read by every call to a worker
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
