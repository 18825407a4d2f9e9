"""Study ``scale``: the learning rate uniform on [1e-4, 1] against log-uniform, and beta1 uniform on
[0.9, 0.999] against 1 - beta log-uniform: trials per decade and the best accuracy."""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from bnbench import tables
from bnbench.lecture.common import figure, header, log_uniform, make_spec, pct, save_figure, train
from bnbench.reference.data import Dataset


# --------------------------------------------------------------------------- 2. scales
def compute(data: Dataset, seed: int, bar) -> Dict[str, object]:
    """Uniform against log-scale sampling, for the learning rate and for momentum's beta."""
    n_trials, seeds, epochs = 30, [seed + i for i in range(3)], 3
    fields = {
        # field: (low, high, the spec fields of the trials, the decade edges of the quantity that matters)
        "learning_rate": (1e-4, 1.0, {}, [1e-4, 1e-3, 1e-2, 1e-1, 1.0]),
        "beta1": (0.9, 0.999, {"optimizer": "momentum", "learning_rate": 0.3}, [0.9, 0.99, 0.999]),
    }
    bar.reset(total=2 * len(fields) * n_trials * len(seeds))
    out: Dict[str, object] = {"claim": "sample the learning rate, and 1 - beta, on a log scale: uniform sampling spends "
                                       "most trials in the top decade", "seeds": seeds, "trials": n_trials, "epochs": epochs}
    for key in ("trials_per_decade_uniform", "trials_per_decade_log", "best_val_accuracy_uniform", "best_val_accuracy_log",
                "decades"):
        out[key] = {}
    for field, (low, high, extra, edges) in fields.items():
        per_decade = {"uniform": np.zeros(len(edges) - 1), "log": np.zeros(len(edges) - 1)}
        best = {"uniform": [], "log": []}
        for run_seed in seeds:
            rng = np.random.default_rng([run_seed, len(field)])
            draws = {"uniform": rng.uniform(low, high, n_trials)}
            if field == "beta1":      # 1 - beta log-uniform in [1 - high, 1 - low]
                draws["log"] = 1 - log_uniform(rng, 1 - high, 1 - low, n_trials)
            else:
                draws["log"] = log_uniform(rng, low, high, n_trials)
            for scale, values in draws.items():
                # which decade each draw falls in (for beta: decades of 1 - beta)
                axis = np.log10(1 - values) if field == "beta1" else np.log10(values)
                edge_axis = np.log10(1 - np.asarray(edges)) if field == "beta1" else np.log10(edges)
                lo_edges = np.minimum(edge_axis[:-1], edge_axis[1:])
                hi_edges = np.maximum(edge_axis[:-1], edge_axis[1:])
                for i, (a, b) in enumerate(zip(lo_edges, hi_edges)):
                    per_decade[scale][i] += np.sum((axis >= a) & (axis <= b))
                top = 0.0
                for value in values:
                    curve, _ = train(make_spec(run_seed, **dict(extra, **{field: float(value)})), data, epochs, seed=run_seed)
                    top = max(top, curve[-1])
                    bar.update(1)
                best[scale].append(top)
        out["decades"][field] = [[edges[i], edges[i + 1]] for i in range(len(edges) - 1)]
        out["trials_per_decade_uniform"][field] = (per_decade["uniform"] / len(seeds)).tolist()
        out["trials_per_decade_log"][field] = (per_decade["log"] / len(seeds)).tolist()
        out["best_val_accuracy_uniform"][field] = float(np.mean(best["uniform"]))
        out["best_val_accuracy_log"][field] = float(np.mean(best["log"]))
        out.setdefault("best_val_accuracy_by_seed", {})[field] = best
    return out


def plot(result, folder) -> List[str]:
    plt, (fig, axes) = figure(10, 4.2, columns=2)
    for ax, field in zip(axes, ("learning_rate", "beta1")):
        decades = result["decades"][field]
        labels = [f"{a:g}–{b:g}" for a, b in decades]
        x = np.arange(len(labels))
        ax.bar(x - 0.2, result["trials_per_decade_uniform"][field], 0.4, label="uniform", color="tab:orange")
        ax.bar(x + 0.2, result["trials_per_decade_log"][field], 0.4, label="log scale", color="tab:blue")
        ax.set_xticks(x)
        ax.set_xticklabels(labels)
        ax.set_xlabel(f"{field} range (a decade{' of 1 - beta' if field == 'beta1' else ''})")
        ax.set_ylabel(f"trials (of {result['trials']}, mean over seeds)")
        ax.set_title(f"{field}: where {result['trials']} draws land")
        ax.legend()
    return [save_figure(plt, fig, folder, "scale.png")]


def markdown(result, plots) -> str:
    lines = header(result, "Sampling on the right scale")
    lines += [f"**The measurement.** {result['trials']} draws per scale and field, {len(result['seeds'])} seeds; each trial "
              f"trains {result['epochs']} epochs.", ""]
    lines += tables.markdown(["field", "decade", "uniform: trials", "log scale: trials"], [
        [field, f"{decade[0]:g} to {decade[1]:g}", f"{u:.1f}", f"{g:.1f}"] for field in ("learning_rate", "beta1")
        for decade, u, g in zip(result["decades"][field], result["trials_per_decade_uniform"][field],
                                result["trials_per_decade_log"][field])])
    lines += [""] + tables.markdown(["field", "best validation accuracy, uniform", "best validation accuracy, log scale"], [
        [field, pct(result["best_val_accuracy_uniform"][field]), pct(result["best_val_accuracy_log"][field])]
        for field in ("learning_rate", "beta1")])
    top = result["trials_per_decade_uniform"]["learning_rate"][-1] / result["trials"]
    low_beta = result["trials_per_decade_uniform"]["beta1"][0] / result["trials"]
    gains = {field: result["best_val_accuracy_log"][field] - result["best_val_accuracy_uniform"][field]
             for field in ("learning_rate", "beta1")}
    lines += ["", f"**What it shows.** Uniform sampling put {100 * top:.0f}% of the learning rates in the top decade "
              f"(0.1 to 1) and {100 * low_beta:.0f}% of the betas between 0.9 and 0.99; the log scale spreads them over "
              "every decade, as claimed. The best accuracy moved by "
              f"{100 * gains['learning_rate']:+.2f} points (learning rate) and {100 * gains['beta1']:+.2f} (beta1) with "
              "the log scale: on this problem the good learning rates lie in the top decades, where uniform sampling "
              "already looks, so the right scale buys coverage rather than a better best trial." if gains["learning_rate"] <= 0
              else "", ""]
    if gains["learning_rate"] > 0:
        lines[-2] = (f"**What it shows.** Uniform sampling put {100 * top:.0f}% of the learning rates in the top decade "
                     f"and {100 * low_beta:.0f}% of the betas between 0.9 and 0.99; the log scale spreads them over every "
                     f"decade and found a better best trial ({100 * gains['learning_rate']:+.2f} points for the learning "
                     f"rate, {100 * gains['beta1']:+.2f} for beta1).")
    lines += [f"![trials per decade]({p})" for p in plots]
    return "\n".join(lines) + "\n"
