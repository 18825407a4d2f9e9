"""A study's summary: the best configuration, its test accuracy (the test split used once), the
throughput, summary.json and summary.md, accuracy against learning rate and the learning curves."""
from __future__ import annotations

import os
import time
from typing import Dict

from bnbench import tables
from bnbench.publishing.figures import finish, pyplot
from bnbench.reference.io import atomic_write_json, atomic_write_text
from bnbench.tuning.settings import Settings
from bnbench.tuning.slots import ROUND_ATTR, complete_trials, finished_trials
from bnbench.tuning.space import DEFAULT_SPACE, spec_for
from bnbench.tuning.storage import redacted
from bnbench.tuning.trial import accuracy, train_caviar, train_panda

CPU_CAVIAR_MODELS = 32


def summarise(study, settings: Settings, data, new_trials: int, elapsed: float) -> Dict[str, object]:
    complete = complete_trials(study)
    summary: Dict[str, object] = {
        "framework": settings.framework, "style": settings.style, "strategy": settings.strategy,
        "study": settings.study,
        "storage": redacted(settings.storage_url) if settings.storage else "sqlite (results/tuning/<study>/study.db)",
        "n_trials_complete": len(complete), "n_trials_pruned": len(finished_trials(study)) - len(complete),
        "n_trials_requested": settings.trials, "workers": settings.workers,
        "trials_this_run": new_trials, "seconds_this_run": round(elapsed, 3),
        "trials_per_second": round(new_trials / elapsed, 4) if elapsed > 0 and new_trials else None,
        "epochs": settings.epochs, "seed": settings.seed, "best_params": None, "val_accuracy": None, "test_accuracy": None,
        "device": settings.device, "models_per_program": settings.chunk if settings.style == "caviar" else 1,
    }
    finished = len(finished_trials(study)) >= settings.trials
    if complete:
        best = max(complete, key=lambda t: (t.value, -t.number))
        params = {field: dimension.from_optuna(best.params[dimension.optuna_name(field)])
                  for field, dimension in settings.space.items()}
        summary["best_params"] = params
        summary["best_trial"] = best.number
        summary["val_accuracy"] = float(best.value)
        if finished:
            # the test split, once, for the chosen configuration: retrained from its seed, one model
            spec = spec_for(params, seed=settings.seed)
            framework = settings.framework
            started = time.perf_counter()
            curve, adapter = train_panda(framework, spec, data, settings.epochs, settings.seed, device=settings.device)
            panda_seconds = time.perf_counter() - started
            summary["test_accuracy"] = accuracy(adapter.predict_proba(data.test.X), data.test.y)
            summary["retrained_val_accuracy"] = curve[-1]
            if settings.style == "caviar":
                summary["throughput"] = throughput(settings, data, spec, panda_seconds, summary["trials_per_second"])
    rounds = sorted({t.user_attrs.get(ROUND_ATTR, 0) for t in complete})
    summary["rounds"] = [{"round": r, "trials": sum(t.user_attrs.get(ROUND_ATTR, 0) == r for t in complete),
                          "space": (study.user_attrs.get(f"space_round_{r}")
                                    or {k: v.to_dict() for k, v in settings.space.items()})} for r in rounds]
    atomic_write_json(os.path.join(settings.folder, "summary.json"), summary)
    atomic_write_text(os.path.join(settings.folder, "summary.md"), markdown(summary, settings))
    plot(study, settings)
    return summary


def throughput(settings: Settings, data, spec, panda_seconds: float, caviar_rate) -> Dict[str, object]:
    """Models trained per second, from the same run: this caviar study's (its trials over its
    seconds), one model at a time on the same device (the best configuration's retraining just
    timed: a panda trial), and, for a study on a GPU, caviar on this machine's CPU (one program of
    ``CPU_CAVIAR_MODELS`` models timed now)."""
    panda_rate = 1.0 / panda_seconds if panda_seconds > 0 else None
    out: Dict[str, object] = {"caviar_models_per_second": caviar_rate, "panda_models_per_second": panda_rate,
                              "device": settings.device, "models_per_program": settings.chunk}
    if caviar_rate and panda_rate:
        out["caviar_over_panda"] = caviar_rate / panda_rate
    if settings.device != "cpu":
        specs = [spec.replace(seed=settings.seed + i) for i in range(CPU_CAVIAR_MODELS)]
        started = time.perf_counter()
        train_caviar(settings.framework, specs, data, settings.epochs, settings.seed, device="cpu")
        cpu_rate = CPU_CAVIAR_MODELS / (time.perf_counter() - started)
        out.update(cpu_caviar_models_per_second=cpu_rate, cpu_caviar_models=CPU_CAVIAR_MODELS)
        if caviar_rate:
            out["caviar_over_cpu_caviar"] = caviar_rate / cpu_rate
    return out


def markdown(summary: Dict[str, object], settings: Settings) -> str:
    best = summary.get("best_params") or {}
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = [f"# Tuning study `{settings.study}`", "",
             f"{settings.framework}, {settings.style}, {settings.strategy}; {summary['n_trials_complete']} of "
             f"{summary['n_trials_requested']} trials complete; {settings.epochs} epochs each on digits "
             f"(train 1150, selection on validation 288, test 359 used once).", "",
             ]
    facts = [[f"best {k}", fmt(v)] for k, v in best.items()]
    for key, label in (("val_accuracy", "validation accuracy (best trial)"), ("test_accuracy", "test accuracy (once, at the end)"),
                       ("retrained_val_accuracy", "validation accuracy of the retrained best"),
                       ("trials_per_second", "trials per second (this run)")):
        value = summary.get(key)
        facts.append([label, "-" if value is None else fmt(value)])
    lines += tables.markdown(["", ""], facts)
    speed = summary.get("throughput") or {}
    if speed:
        lines += ["", f"Models trained per second on {speed['device']} ({speed['models_per_program']} models in one "
                      f"program): caviar {fmt(speed['caviar_models_per_second'])}, one model at a time "
                      f"{fmt(speed['panda_models_per_second'])}"
                  + (f" ({fmt(speed['caviar_over_panda'])}x)" if speed.get("caviar_over_panda") else "")
                  + (f"; caviar on the CPU ({speed['cpu_caviar_models']} models) {fmt(speed['cpu_caviar_models_per_second'])}"
                     + (f" ({fmt(speed['caviar_over_cpu_caviar'])}x)" if speed.get("caviar_over_cpu_caviar") else "")
                     if "cpu_caviar_models_per_second" in speed else "") + "."]
    lines += ["", "![accuracy against learning rate](accuracy_vs_learning_rate.png)", "",
              "![learning curves](learning_curves.png)", ""]
    for entry in summary.get("rounds", []):
        ranges = ", ".join(f"{field} {range_text(d)}" for field, d in entry["space"].items())
        lines.append(f"- round {entry['round']}: {entry['trials']} trials; {ranges}")
    return "\n".join(lines) + "\n"


def range_text(d: Dict[str, object]) -> str:
    if d.get("scale") == "choice":
        return "{" + ", ".join(map(str, d["choices"])) + "}"
    return f"[{d['low']:.4g}, {d['high']:.4g}] ({d['scale']})"


def plot(study, settings: Settings) -> None:
    plt = pyplot()


    complete = sorted(complete_trials(study), key=lambda t: t.number)
    if not complete:
        return
    name = DEFAULT_SPACE["learning_rate"].optuna_name("learning_rate")
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=100)
    colours = plt.get_cmap("viridis")
    rounds = sorted({t.user_attrs.get(ROUND_ATTR, 0) for t in complete})
    for r in rounds:
        trials = [t for t in complete if t.user_attrs.get(ROUND_ATTR, 0) == r and name in t.params]
        ax.scatter([t.params[name] for t in trials], [t.value * 100 for t in trials], s=28,
                   color=colours(r / max(1, len(rounds) - 1) * 0.85), label=f"round {r} ({len(trials)} trials)",
                   edgecolor="black", linewidth=0.4)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"{settings.study}: {settings.framework}, {settings.style}, {settings.strategy}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    finish(fig, os.path.join(settings.folder, "accuracy_vs_learning_rate.png"))

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=100)
    best = max(complete, key=lambda t: (t.value, -t.number))
    for trial in study.get_trials(deepcopy=False):
        curve = trial.user_attrs.get("curve")
        if not curve:
            continue
        epochs = list(range(1, len(curve) + 1))
        if trial.number == best.number:
            continue
        ax.plot(epochs, [c * 100 for c in curve], color="grey", alpha=0.35, linewidth=0.8)
    ax.plot(range(1, len(best.user_attrs.get("curve", [])) + 1), [c * 100 for c in best.user_attrs.get("curve", [])],
            color="crimson", linewidth=2, label=f"best (trial {best.number})")
    ax.plot([], [], color="grey", alpha=0.5, label="other trials (pruned ones end early)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"Learning curves, {settings.study} ({settings.style})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    finish(fig, os.path.join(settings.folder, "learning_curves.png"))


def summary_line(summary: Dict[str, object], folder: str) -> str:
    """What ``bnbench tune`` prints at the end."""
    best = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in (summary["best_params"] or {}).items())
    test = summary["test_accuracy"]
    validation = summary["val_accuracy"]
    return (f"{summary['n_trials_complete']} trials complete; best: {best}; validation "
            f"{'-' if validation is None else f'{validation:.4f}'}, test {'-' if test is None else f'{test:.4f}'}; "
            f"{summary['trials_per_second'] or 0:.3g} trials/s this run; wrote {folder}/summary.json")
