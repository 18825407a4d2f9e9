"""``bnbench tunelog``: a framework's tuning log, the evidence that its adapter runs in the
framework's fastest honest form.

Every form of the framework is timed against its kept form (the best mode as the adapter
builds it) in ``bnbench compare``'s interleaved paired rounds, at each size of the log: the
other modes, the framework's own alternatives and the allocator's (``Adapter.alternatives_of``).
Each form is first checked against the reference on the spec and batches it is timed on, so
the log says per form whether it passed. The verdict is computed from the intervals: the kept
form stands unless an alternative that passed is resolved faster at some size without being
resolved slower at another; then the log says the adapter should change, and the test of the
committed logs fails until it does.

A log is one run on one machine: results/tuning-logs/<machine>/<framework>.json (the runs) and
.md (made from the JSON, verdict included, by ``write`` and again by ``bnbench report``).
"""
from __future__ import annotations

import datetime
import os
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

from bnbench import tables
from bnbench.adapters.contract import AdapterError
from bnbench.adapters.registry import local_class
from bnbench.comparisons.compare import kernel_text, verdict_text
from bnbench.reference.io import atomic_write_json, atomic_write_text
from bnbench.reference.spec import initial_parameters
from bnbench.timing import records, rounds
from bnbench.timing.flops import matmul_flops
from bnbench.timing.form import Form, split_mode_form
from bnbench.timing.participant import adapter_class_for, form_flags
from bnbench.timing.units import format_seconds
from bnbench.timing.worker import WorkerError
from bnbench.timing.workload import SIZE_ORDER, batch_size, spec_for, timing_batches, unavailable_on

# An alternative counts as faster (or slower) than the kept form when its whole interval lies
# beyond the run's own noise floor: the spread around 1 of the kept form against its own control,
# timed in the same rounds (bnbench.timing.rounds). Logs made before every run had a control
# (schema 1) keep the margin they were judged by then: 3%, the most the same participant had
# drifted between two runs of one comparison.
LEGACY_MARGIN = 0.03
DEFAULT_SIZES = ("tiny", "large")
DEVICE_SIZES = {"cuda": ("tiny", "large", "xlarge")}
DEFAULT_BUDGET = 40.0
LOG_DIR = os.path.join("results", "tuning-logs")


class TunelogError(ValueError):
    """Bad framework, sizes or settings; the message names the flag and value."""


def loggable(device: str = "cpu") -> List[str]:
    """The frameworks installed here whose kept form can be timed on the suite's timing spec
    (compare's float32 sizes), in the registry's order."""
    from bnbench.adapters import names
    from bnbench.timing.workload import spec_for

    out = []
    for name in names():
        adapter = local_class(name)
        placement = adapter.placement() if adapter.modes else None      # its own environment's worker
        missing = placement.missing() if placement is not None else adapter.missing_requirement()
        if adapter.modes and device in adapter.devices and missing is None:
            kept = adapter.best_mode or adapter.modes[0]
            if adapter.unsupported(spec_for("tiny", "float32"), kept, device) is None:
                out.append(name)
    return out


def forms(framework: str, device: str = "cpu") -> List[str]:
    """The kept form first (the best mode), then the other modes, then the kept mode's alternatives."""
    adapter = local_class(framework)
    if not adapter.modes:
        raise TunelogError(f"--framework {framework}: cannot run here: {adapter.missing_requirement()}")
    if device not in adapter.devices:
        raise TunelogError(f"--device {device}: {framework} has no such device (devices: {', '.join(adapter.devices)})")
    kept = adapter.best_mode or adapter.modes[0]
    return ([kept] + [mode for mode in adapter.modes if mode != kept]
            + [Form(framework, kept, name).mode_form for name in adapter.alternatives_of(kept)])


def default_sizes(device: str) -> Tuple[str, ...]:
    return DEVICE_SIZES.get(device, DEFAULT_SIZES)


def run(framework: str, *, sizes: Optional[Sequence[str]] = None, dtype: str = "float32", device: str = "cpu",
        budget: float = DEFAULT_BUDGET, threads: int = 2, seed: int = 0, progress: bool = True) -> Dict[str, Any]:
    """Time every form of ``framework`` against its kept form at each size (default: the device's,
    ``default_sizes``); the log as a dict."""
    sizes = list(sizes or default_sizes(device))
    for size in sizes:
        if size not in SIZE_ORDER:
            raise TunelogError(f"--sizes: unknown size {size!r}; sizes: {', '.join(SIZE_ORDER)}")
        problem = unavailable_on(size, device)
        if problem:
            raise TunelogError(f"--sizes: {problem}")
    if budget <= 0:
        raise TunelogError(f"--budget {budget!r} must be a positive number of seconds")
    all_forms = forms(framework, device)
    kept = all_forms[0]
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    comparisons = {}
    for size in sizes:
        settings = rounds.Settings(items=[(framework, form) for form in all_forms], size=size, dtype=dtype, device=device,
                                   baseline=(framework, kept), budget=budget, threads=threads, seed=seed, progress=progress,
                                   ceilings=size in ("large", "xlarge"))
        comparisons[size] = rounds.run(settings)
    profile = profile_kept(framework, kept, dtype=dtype, device=device, threads=threads) if "large" in sizes else None
    first = comparisons[sizes[0]]
    log = {**records.TUNING_LOG.stamp(), "framework": framework, "kept": kept, "created": started,
           "machine_id": first["machine_id"], "machine": first["machine"], "dtype": dtype, "device": device,
           "threads": threads, "budget": budget, "sizes": list(sizes),
           "forms": [{"form": form, "what": form_flags(local_class(framework), form)} for form in all_forms],
           "compare": comparisons}
    if profile is not None:
        log["profile"] = profile
    return log


PROFILE_STEPS = 10


def profile_kept(framework: str, kept: str, *, size: str = "large", dtype: str = "float32", device: str = "cpu",
                 threads: int = 2, steps: int = PROFILE_STEPS) -> Dict[str, Any]:
    """The kept form's steps at ``size`` under the framework's own profiler (``Adapter.profile``),
    in a worker started as compare starts it; {"problem": why} where there is no profile."""
    spec = spec_for(size, dtype)
    X, y = timing_batches(spec, batch_size(size))
    adapter_class = adapter_class_for(framework, kept, 0)
    mode, variant = split_mode_form(kept)
    try:
        adapter_class.set_threads(threads)
        adapter = adapter_class(spec, initial_parameters(spec), mode=mode, device=device, variant=variant)
        profile = adapter.profile(X[0], y[0], steps)
    except (AdapterError, WorkerError) as error:
        return {"size": size, "problem": (str(error).splitlines() or [""])[0]}
    return {"size": size, **profile}


def _row(comparison: Dict[str, Any], framework: str, form: str) -> Optional[Dict[str, Any]]:
    label = str(Form.of(framework, form))
    return next((row for row in comparison["rows"] if row["label"] == label), None)


def margin(comparison: Dict[str, Any]) -> float:
    """How far from 1 a form's whole interval must lie to count as faster or slower at one size:
    the run's measured noise floor (its spread), or LEGACY_MARGIN for a run without a control."""
    floor = comparison.get("floor") or {}
    return float(floor["spread"]) if floor.get("spread") is not None else LEGACY_MARGIN


def verdict(log: Dict[str, Any]) -> Dict[str, Any]:
    """Per size, the alternatives faster and slower than the kept form (their interval wholly below
    1 - margin, or above 1 + margin: ``margin``); ``adopt``: those that passed, were faster at some
    size and slower at none (the adapter should take one of them); ``kept_stands``: there is none."""
    framework = log["framework"]
    faster: Dict[str, List[str]] = {}
    slower: Dict[str, List[str]] = {}
    for size, comparison in log["compare"].items():
        beyond = margin(comparison)
        for entry in log["forms"][1:]:
            row = _row(comparison, framework, entry["form"])
            if row is None or row.get("ratio") is None or not row.get("verified"):
                continue
            if row["ci_high"] < 1 - beyond:
                faster.setdefault(entry["form"], []).append(size)
            elif row["ci_low"] > 1 + beyond:
                slower.setdefault(entry["form"], []).append(size)
    adopt = sorted(form for form in faster if form not in slower)
    return {"faster": faster, "slower": slower, "adopt": adopt, "kept_stands": not adopt,
            "why": _why(log, faster, slower, adopt)}


def _why(log, faster, slower, adopt) -> str:
    kept = log["kept"]
    if adopt:
        return (f"{', '.join(adopt)} passed and was faster than {kept} beyond the run's noise floor at "
                f"{'; '.join(', '.join(faster[form]) for form in adopt)} and slower nowhere: the adapter should adopt it")
    parts = [f"no alternative that passed is faster than {kept} beyond the run's noise floor (its whole interval) at "
             f"any size without being slower by as much at another"]
    for form, sizes in sorted(faster.items()):
        parts.append(f"{form} is faster at {', '.join(sizes)} but slower at {', '.join(slower[form])}")
    return "; ".join(parts)


def path_for(results: str, machine_id: str, framework: str, extension: str) -> str:
    return os.path.join(results, "tuning-logs", machine_id, f"{framework}.{extension}")


def write(log: Dict[str, Any], results: str = "results") -> List[str]:
    """The log as JSON and Markdown under results/tuning-logs/<machine>/ (atomically); their paths."""
    paths = [path_for(results, log["machine_id"], log["framework"], extension) for extension in ("json", "md")]
    os.makedirs(os.path.dirname(paths[0]), exist_ok=True)
    atomic_write_json(paths[0], log)
    atomic_write_text(paths[1], markdown(log))
    return paths


def _interval(row: Optional[Dict[str, Any]], key: str = "ratio", low: str = "ci_low", high: str = "ci_high",
              style: str = ".3f") -> str:
    if row is None or row.get(key) is None:
        return "-"
    return f"{row[key]:{style}} [{row[low]:{style}}, {row[high]:{style}}]"


def _cell(row: Optional[Dict[str, Any]]) -> str:
    if row is None:
        return "-"
    if row.get("ratio") is None:
        return f"not timed: {row.get('not_timed') or ''}"
    verdict = row.get("vs_baseline")
    return f"{_interval(row)} {verdict_text(verdict)}" if verdict else _interval(row)


def markdown(log: Dict[str, Any]) -> str:
    framework, kept, sizes = log["framework"], log["kept"], log["sizes"]
    first = log["compare"][sizes[0]]
    version = next((row.get("version") for row in first["rows"] if row.get("version")), "-")
    lines = [f"# Tuning log: {framework} ({kept}), {log['machine_id']}", "",
             f"Generated by `bnbench tunelog --framework {framework}` (do not edit by hand) on {log['created']}: "
             f"{framework} {version}, {log['dtype']}, {log['device']}, {log['threads']} thread(s). Every form is timed "
             f"against the kept form `{kept}` in interleaved paired rounds (`bnbench compare`, budget {log['budget']:.0f} s "
             f"per size); a ratio below 1 is faster. A form that fails the check against the reference on the timed spec "
             f"and batches is not timed. An alternative would replace the kept form if its interval lay wholly below "
             f"1 - margin at a size and wholly above 1 + margin at none, the margin being "
             + "; ".join(f"{margin(log['compare'][size]):.3f} at {size}" for size in sizes)
             + (" (the spread of the run's own A/A control)" if all((log['compare'][size].get('floor') or {}).get('spread')
                                                                    is not None for size in sizes)
                else f" ({LEGACY_MARGIN:g} in a log made before every run had its control)") + ".", ""]
    header = (["form", "what it changes", "passed"] + [f"ratio at {size} [95% CI]" for size in sizes]
              + [f"step at {size}" for size in sizes]
              + (["fraction of peak at large", "of its own matmul at large"] if "large" in sizes else []) + ["BLAS loaded"])
    forms = []
    for entry in log["forms"]:
        rows = {size: _row(log["compare"][size], framework, entry["form"]) for size in sizes}
        passed = all(row is not None and row.get("verified") for row in rows.values())
        cells = [_cell(rows[size]) if entry["form"] != kept else "1 (kept)" for size in sizes]
        steps = [format_seconds(rows[size].get("median_step_s")) if rows[size] else "-" for size in sizes]
        fraction = []
        if "large" in sizes:
            fraction = [_interval(rows["large"], "fraction_of_peak", "fraction_ci_low", "fraction_ci_high", ".2f"),
                        _interval(rows["large"], "of_own_matmul", "of_own_matmul_ci_low", "of_own_matmul_ci_high", ".2f")]
        blas = kernel_text(rows[sizes[0]]) if rows[sizes[0]] else "-"     # the BLAS its process really ran
        forms.append([f"`{entry['form']}`", entry["what"], "yes" if passed else "**no**", *cells, *steps, *fraction, blas])
    lines += tables.markdown(header, forms)
    lines += ["", "Rounds: " + "; ".join(f"{size} {log['compare'][size]['rounds']} in {log['compare'][size]['seconds']:.0f} s "
                                          f"({log['compare'][size]['stopped']})" for size in sizes) + ".", ""]
    if "large" in sizes:
        large = log["compare"]["large"]
        peak = large.get("peak") or {}
        for ceiling in large.get("ceilings", []):
            if ceiling.get("problem") is not None:
                lines += [f"The framework's own matmul was not timed: {ceiling['problem']}.", ""]
                continue
            lines += [f"**Ceiling.** The matmul peak is {peak.get('gflops') or float('nan'):.0f} GFLOP/s ({peak.get('flags') or '-'}). "
                      f"{framework}'s own matmul of the same product ({ceiling['library']}), timed in the kept form's "
                      f"process in the same rounds, reaches {ceiling['gflops']:.0f} GFLOP/s: "
                      f"{_interval(ceiling, 'fraction_of_peak', 'fraction_ci_low', 'fraction_ci_high', '.2f')} of the peak. "
                      f"No step of {framework} can run its matmuls faster, so that fraction bounds its fraction of peak; "
                      f"the last column is how much of it each form reaches.", ""]
    if log.get("profile"):
        lines += profile_markdown(log)
    outcome = verdict(log)
    lines += [f"**Kept: `{kept}`**" if outcome["kept_stands"] else f"**Change the adapter: {', '.join(outcome['adopt'])}**",
              f"({outcome['why']}).", ""]
    return "\n".join(lines)


def profile_markdown(log: Dict[str, Any]) -> List[str]:
    """The kept form's profile: where its step's time goes, kernel by kernel, beside what the
    spec's products would take at the same run's matmul peak."""
    profile, framework = log["profile"], log["framework"]
    size = profile.get("size", "large")
    if "problem" in profile:
        return [f"**Profile.** None at {size}: {profile['problem']}.", ""]
    step, profiled = profile["step_ms"], profile["profiled_step_ms"]
    share = lambda ms: f"{ms:.1f} ms ({ms / profiled:.0%})"  # noqa: E731
    spec = spec_for(size, log["dtype"])
    peak = (log["compare"].get(size) or {}).get("peak") or {}
    ideal = ""
    if peak.get("gflops"):
        ideal_ms = 1e3 * matmul_flops(spec, batch_size(size)) / (peak["gflops"] * 1e9)
        ideal = (f" The spec's products ({matmul_flops(spec, batch_size(size)) / 1e9:.1f} GFLOP) would take {ideal_ms:.1f} ms "
                 f"at this run's matmul peak, {ideal_ms / profiled:.2f} of the profiled step"
                 + (f"; {framework}'s take {ideal_ms / profile['products_ms']:.2f} of the peak's speed"
                    if profile["products_ms"] > 0 else "") + ".")
    lines = [f"**Profile of the kept form at {size}** ({profile['profiler']}, {profile['steps']} steps): the step takes "
             f"{step:.1f} ms as timed alone and {profiled:.1f} ms under the profiler. Matrix products "
             f"{share(profile['products_ms'])}, the framework's other kernels {share(profile['other_kernels_ms'])}, "
             f"outside every kernel (the framework's dispatch, the adapter's Python and anything it computes outside the "
             f"framework) {share(profile['outside_kernels_ms'])}.{ideal}", ""]
    kernels = [[f"`{kernel['kernel']}`", kernel["kind"], f"{kernel['calls']:g}", f"{kernel['ms']:.2f}",
                f"{kernel['ms'] / profiled:.0%}"] for kernel in profile["kernels"]]
    if profile.get("kernels_left_out"):
        kernels.append([f"{profile['kernels_left_out']} more kernels", "", "", "", ""])
    return lines + tables.markdown(["kernel (self time)", "kind", "calls per step", "ms per step",
                                    "share of the profiled step"], kernels) + [""]


def render_all(results: str, logs: Optional[List[Dict[str, Any]]] = None) -> List[str]:
    """Every committed log's Markdown made again from its JSON (the verdict rule may have changed
    since it ran), from ``logs`` where they are loaded already; the paths written."""
    written = []
    for log in load_logs(results) if logs is None else logs:
        path = os.path.join(results, log["source"][:-len("json")] + "md")
        log = {key: value for key, value in log.items() if key != "source"}
        atomic_write_text(path, markdown(log))
        written.append(path)
    return written


def load_logs(results: str) -> List[Dict[str, Any]]:
    """Every committed tuning log (JSON) under results/tuning-logs/<machine>/; a file that is not
    one is skipped with a warning naming it and the key (bnbench.timing.records)."""
    logs, problems = records.read_all(results, "tuning-logs", records.TUNING_LOG)
    for problem in problems:
        warnings.warn(problem, stacklevel=2)
    return logs
