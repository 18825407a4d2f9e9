"""``bnbench compare``: every framework measured together, in interleaved paired rounds
(bnbench.timing.rounds), as the command names them and prints them.

Participants are ``NAME``, ``NAME:MODE`` or ``NAME:MODE+ALTERNATIVE`` (an alternative form of a
mode, as the tuning logs time them); an item named twice is two participants, an A/A pair. Every
run also times the baseline's control, whose ratio is the run's noise floor.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from bnbench import tables
from bnbench.adapters.registry import local_class, names
from bnbench.timing import records
from bnbench.timing.form import Form, FormError, parse_item, split_mode_form
from bnbench.timing.kernels import describe as describe_kernels
from bnbench.timing.rounds import DEFAULT_BUDGET, MAX_BUDGET_S, Settings, run  # noqa: F401 (the command's entry points)
from bnbench.timing.sets import DEFAULT_SETS
from bnbench.timing.summary import UNDISTURBED_MARGIN
from bnbench.timing.units import format_bytes, format_seconds


class CompareError(ValueError):
    """``bnbench compare``'s participants or flags refused; the message names the flag and value."""


def parse_items(text: Optional[str], flag: str = "--frameworks") -> List[Tuple[str, Optional[str]]]:
    """'numpy,NAME:MODE' -> [('numpy', None), ('NAME', 'MODE')] (no mode: the best mode); a mode
    may name an alternative form, 'NAME:MODE+ALTERNATIVE'."""
    if text is None:
        return []
    items = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        try:
            items.append(parse_item(item))
        except FormError as error:
            raise CompareError(f"{flag} {error}") from None
    if not items:
        raise CompareError(f"{flag} {text!r} names no framework")
    return items


def resolve_items(items: Sequence[Tuple[str, Optional[str]]], device: str, flag: str) -> List[Tuple[str, str]]:
    """(name, mode) pairs with modes resolved and checked against each adapter's declaration."""

    known = names()
    out = []
    for name, mode in items:
        if name not in known:
            raise CompareError(f"{flag}: unknown framework {name!r}; known: {', '.join(known)}")
        adapter = local_class(name)
        if not adapter.modes:
            raise CompareError(f"{flag}: {name} cannot run here: {adapter.missing_requirement()}")
        mode, variant = split_mode_form(mode or adapter.best_mode or adapter.modes[0])
        if mode not in adapter.modes:
            raise CompareError(f"{flag}: {name} has no mode {mode!r}; modes: {', '.join(adapter.modes)}")
        alternatives = adapter.alternatives_of(mode)
        if variant and variant not in alternatives:
            raise CompareError(f"{flag}: {name} ({mode}) has no alternative {variant!r}; "
                               f"alternatives: {', '.join(alternatives)}")
        if device not in adapter.devices:
            raise CompareError(f"{flag}: {name} has no device {device!r}; devices: {', '.join(adapter.devices)}")
        out.append((name, Form(name, mode, variant).mode_form))
    return out


def default_items(device: str) -> Tuple[List[Tuple[str, str]], List[Dict[str, str]]]:
    """Every framework that is installed here (checked without importing it) and has ``device``,
    in its best mode; and the others with the reason."""

    chosen, left_out = [], []
    for name in names():
        adapter = local_class(name)
        if not adapter.modes:
            left_out.append({"framework": name, "reason": adapter.missing_requirement() or "no modes"})
        elif device not in adapter.devices:
            left_out.append({"framework": name, "reason": f"no {device} device (devices: {', '.join(adapter.devices)})"})
        else:
            chosen.append((name, adapter.best_mode or adapter.modes[0]))
    return chosen, left_out


def request(frameworks: Optional[str], baseline: str, *, size: str = "medium", dtype: str = "float32",
            device: str = "cpu", budget: float = DEFAULT_BUDGET, threads: int = 2, seed: int = 0,
            progress: bool = True, queued: Optional[bool] = None, sets: int = DEFAULT_SETS) -> Settings:
    """The run the command's flags ask for: the participants (default: every framework installed
    here in its best mode), the baseline among them (it always takes part), the settings."""
    if not 0 < budget <= MAX_BUDGET_S:        # False for nan: a budget that never ends
        raise CompareError(f"--budget {budget!r} must be more than 0 and at most {MAX_BUDGET_S:g} seconds")
    if frameworks is None:
        items, left_out = default_items(device)
    else:
        items, left_out = resolve_items(parse_items(frameworks), device, "--frameworks"), []
    chosen = resolve_items(parse_items(baseline, "--baseline"), device, "--baseline")
    if len(chosen) != 1:
        raise CompareError(f"--baseline {baseline!r} must name one framework")
    if chosen[0] not in items:
        items = [chosen[0]] + items
    return Settings(items=items, size=size, dtype=dtype, device=device, baseline=chosen[0], budget=budget,
                    threads=threads, seed=seed, left_out=left_out, progress=progress, queued=queued, sets=sets,
                    memory=True)


def summary(result: Dict[str, Any], path: str) -> str:
    """The line under the printed table: rounds, how the run stopped, its settings, where it went."""
    peak = result["peak"]
    how = (f"every interval within +-{100 * result['target_half_width']:.1f}%" if result["stopped"] == "converged"
           else f"{result.get('failure')}; the rounds before it are published" if result.get("failure")
           else "the budget ended first")
    gflops = "-" if not peak or peak.get("gflops") is None else f"{peak['gflops']:.4g} GFLOP/s"
    return (f"{rounds_text(result)} in {result['seconds']:.0f} s ({result['stopped']}: {how}); {result['size']}, "
            f"{result['dtype']}, {result['device']}, {result['threads']} thread(s); peak {gflops}; "
            f"machine {result['machine_id']}; wrote {path}")


def rounds_text(result: Dict[str, Any]) -> str:
    """'N rounds', and over how many sets of workers where more than one (bnbench.timing.sets)."""
    sets = result.get("process_sets", 1)
    return f"{result['rounds']} rounds" + (f" over {sets} sets of workers" if sets > 1 else "")


def failed(result: Dict[str, Any]) -> bool:
    """A participant failed its check against the reference, or crashed, hung or broke the protocol
    (not one that cannot run here); or the baseline failed and ended the rounds."""
    return bool(result.get("failure")) or any((row.get("not_timed") or "").startswith(("not verified", "failed:"))
                                              for row in result["rows"])


def table(result: Dict[str, Any]) -> str:
    """The comparison as a plain-text table (what the command prints), its floor and its
    unconverged rows under it."""
    device = result.get("device") != "cpu" or result.get("timing", "").startswith("steps queued")
    header = (["framework", "mode", f"ratio to {result['baseline']} [95% CI]", "vs baseline", "vs next faster",
               "median step"] + (["latency"] if device else []) + ["of peak", "first step", "memory (x minimum)", "BLAS loaded",
                                                                "verified"])
    lines = []
    for row in result["rows"]:
        if row.get("median_step_s") is None:
            lines.append([row["framework"], row["mode"]] + ["-"] * (len(header) - 4) + [kernel_text(row)]
                         + [f"{'no' if not row['verified'] else 'yes'}: {row.get('not_timed') or ''}"[:90]])
            continue
        versus = row.get("vs_next_faster")
        wide = "" if row.get("converged") is not False else " *"
        form = Form.parse(row["label"])
        lines.append([
            form.framework, form.mode_label,
            f"{row['ratio']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]{wide}",
            verdict_text(row.get("vs_baseline"), "+-") if row.get("vs_baseline") else "baseline",
            "-" if versus is None else f"{number_text(versus.get('ratio'))} ({verdict_text(versus, '+-')})",
            format_seconds(row["median_step_s"])]
            + ([format_seconds(row.get("latency_s"))] if device else [])
            + ["-" if row["fraction_of_peak"] is None else f"{row['fraction_of_peak']:.2f}",
               format_seconds(row["first_step_s"]), memory_text(row), kernel_text(row), "yes"])
    return "\n".join([tables.text(header, lines)] + footer(result))


def memory_text(row: Dict[str, Any]) -> str:
    """The memory a row's step holds, and its ratio to the model's analytic minimum
    ('41.2 MB (3.1x)'; bnbench.timing.flops.memory_ratio); '-' where none was read."""
    if row.get("memory_bytes") is None:
        return "-"
    ratio = row.get("memory_ratio")
    burst = " in one burst" if row.get("memory_kind") == "resident-burst" else ""
    return format_bytes(row["memory_bytes"]) + burst + (f" ({ratio:.2g}x)" if ratio is not None else "")


def kernel_text(row: Dict[str, Any]) -> str:
    """The BLAS kernel a row's process ran ('openblas 0.3.31 Haswell'), and where it ran under the
    machine's setting because its native kernel failed the check (bnbench.timing.kernels)."""
    found = row.get("kernels") or {}
    text = describe_kernels(found.get("blas") or []) or "-"
    return text + (" (machine's setting: the native kernel failed)" if found.get("native_failed") else "")


def kernels_line(result: Dict[str, Any]) -> str:
    """What the environment forced and the timed processes ran without; the peak's error, if any."""
    removed = result.get("kernel_overrides_removed") or {}
    line = ("timed with the machine's own kernels, without " + ", ".join(f"{k}={v}" for k, v in sorted(removed.items()))
            if removed else "")
    error = (result.get("peak") or {}).get("error")
    return "; ".join(part for part in (line, f"peak: {error}" if error else "") if part)


def verdict_text(verdict: Optional[Dict[str, Any]], plus_minus: str = "±") -> str:
    """A verdict in a table's cell: faster, slower, equivalent (within ±ε), undecided."""
    if not verdict:
        return "-"
    if verdict["verdict"] == "equivalent" and verdict.get("epsilon") is not None:
        return f"equivalent {plus_minus}{100 * verdict['epsilon']:.1f}%"
    return str(verdict["verdict"])


def number_text(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


def epsilon_line(result: Dict[str, Any]) -> str:
    """How the verdicts were reached, under the table."""
    if result.get("epsilon") is None:
        return ""
    return (f"verdicts: faster or slower where the interval lies wholly outside 1 +- {result.get('floor_spread') or 0:.3f} "
            f"(the floor's spread); equivalent where it lies within 1 +- {result['epsilon']:.3f} (two one-sided tests); "
            "undecided otherwise")


def footer(result: Dict[str, Any]) -> List[str]:
    """The lines under a comparison's table: its noise floor, the verdicts' rule, the kernels, and the
    rows whose interval is still wider than the target, with the budget that would have converged them."""
    lines = [floor_line(result), epsilon_line(result), state_line(result), kernels_line(result)]
    wide = result.get("unconverged") or []
    if wide:
        target = 100 * result.get("target_half_width", 0.025)
        lines.append(f"* interval wider than +-{target:.1f}% when the rounds ended: "
                     + "; ".join(unconverged_text(entry, "+-") for entry in wide))
    return [line for line in lines if line]


def unconverged_text(entry: Dict[str, Any], plus_minus: str = "±") -> str:
    """A row still wider than the target, in words: its width, and the budget that would converge
    it, or how far apart its sets stood where more rounds would not."""
    text = f"{entry['label']} {plus_minus}{100 * entry['half_width']:.1f}%"
    if entry.get("budget_to_converge"):
        return text + f" (about {entry['budget_to_converge']:.0f} s of rounds would converge it)"
    if entry.get("sets_apart") is not None:     # no budget because the sets disagree (bnbench.timing.summary)
        return text + f" (its sets of workers stood {100 * entry['sets_apart']:.1f}% apart: more sets would narrow it, not more rounds)"
    return text


def floor_line(result: Dict[str, Any]) -> str:
    """The run's noise floor in words: the baseline against its own control."""
    floor = result.get("floor")
    if not floor:
        return "no control timed: rows are resolved when their interval excludes 1"
    if floor.get("ratio") is None:
        return f"floor: the control {floor['label']} was not timed ({floor.get('problem')})"
    return (f"floor: {floor['label']} / {result['baseline']} = {floor['ratio']:.3f} [{floor['ci_low']:.3f}, "
            f"{floor['ci_high']:.3f}]; a row is resolved when its interval lies wholly outside "
            f"1 +- {floor['spread']:.3f}")


def against_earlier(result: Dict[str, Any], earlier: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """``result``, with ``undisturbed.whole_run_slower`` where its baseline ran more than the margin
    slower, in its undisturbed rounds, than in ``earlier`` (the run it replaces: same machine, size,
    dtype, device and baseline). A run's own rule reads the machine's state from the fastest tenth
    of that run, so a run wholly in the slow state keeps every round: NumPy's step at medium was
    8.2 ms through one whole `make bench` run against 5.1 ms the run before, while MXNet's and
    MLX's stayed put, and MXNet's ratio read 1.27 instead of 2.06."""
    if not isinstance(earlier, dict):       # none, or a file that is not a result: nothing to tell against
        earlier = None
    state = result.get("undisturbed") or {}
    before = (earlier or {}).get("undisturbed")
    before = before if isinstance(before, dict) else {}
    slow_before = before.get("whole_run_slower")
    same = earlier is not None and all(result.get(key) == earlier.get(key)
                                       for key in ("machine_id", "size", "dtype", "device", "baseline"))
    step, earlier_step = state.get("baseline_step_s"), before.get("baseline_step_s")
    if earlier_step and isinstance(slow_before, dict):       # the earlier run was itself slow: its reference
        earlier_step = slow_before.get("earlier_baseline_step_s")
        earlier = dict(earlier, created=slow_before.get("earlier_created"))
    if not isinstance(step, (int, float)) or not isinstance(earlier_step, (int, float)):
        return result
    if same and step and earlier_step and step > (1.0 + state.get("margin", UNDISTURBED_MARGIN)) * earlier_step:
        state["whole_run_slower"] = {"ratio": step / earlier_step, "earlier_baseline_step_s": earlier_step,
                                     "earlier_created": earlier.get("created")}
    return result


def state_line(result: Dict[str, Any]) -> str:
    """The rounds left out because the machine ran disturbed (bnbench.timing.summary), in words;
    empty where none was, or for a run made before they were."""
    state = result.get("undisturbed") or {}
    whole = state.get("whole_run_slower")
    if whole:
        return (f"the whole run ran disturbed: the baseline's step was {whole['ratio']:.2f} times its step in the run "
                f"of {whole['earlier_created']} on this machine, in every round; its ratios are not comparable "
                f"(a framework the slow state spares reads that much faster)")
    if not state or state.get("rounds") == state.get("of"):
        return ""
    slower = state.get("left_out_slower")
    return (f"{state['of'] - state['rounds']} of {state['of']} rounds left out of every figure: the machine ran "
            f"disturbed (the baseline's step over {1 + state['margin']:.2f} times its fastest tenth"
            + (f"; {slower:.2f} times its step in the rounds kept" if slower else "") + ")")


def verdict_table(result: Dict[str, Any]) -> str:
    """The short table: each timed row by rank, its ratio and its verdicts; the rows not timed under it."""
    timed = [row for row in result["rows"] if row.get("ratio") is not None]
    rows = [[rank, row["framework"], Form.parse(row["label"]).mode_label,
             f"{row['ratio']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]", row.get("rounds_counted"),
             verdict_text(row.get("vs_baseline"), "+-") if row.get("vs_baseline") else "baseline",
             verdict_text(row.get("vs_next_faster"), "+-")] for rank, row in enumerate(timed, 1)]
    untimed = [row["label"] for row in result["rows"] if row.get("ratio") is None]
    return "\n".join([tables.text(["rank", "framework", "mode", f"ratio to {result['baseline']}", "rounds", "vs baseline",
                                   "vs next faster"], rows)] + ([f"not timed: {', '.join(untimed)}"] if untimed else []))


def main(paths: List[str]) -> int:
    """``python -m bnbench.comparisons.compare RESULT.json ...`` (the end of ``make bench``): each
    run's verdicts, then its rows whose interval was still wider than the target, with the budget
    that would converge them."""
    for path in paths:
        try:
            result = records.read(path, records.COMPARISON)
        except records.RecordError as error:
            print(error)
            continue
        decided = [row for row in result["rows"] if (row.get("vs_next_faster") or {}).get("verdict") not in (None, "undecided")]
        pairs = sum(1 for row in result["rows"] if row.get("vs_next_faster"))
        print(f"\n{result['size']}, {result['dtype']}, {result['device']} ({rounds_text(result)}; {len(decided)} of {pairs} "
              f"neighbour pairs decided):\n{verdict_table(result)}")
        wide = result.get("unconverged") or []
        print(("every interval within the target" if not wide else "; ".join(footer(result)[1:]))
              + f" ({floor_line(result)})")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
