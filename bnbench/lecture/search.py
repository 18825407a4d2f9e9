"""Study ``search``: random against grid search at budgets of 9, 25 and 49 trials over the learning
rate and ``bn_epsilon`` (which matters little), 5 seeds; the learning rates each method tried."""
from __future__ import annotations

import math
from typing import Dict, List

import numpy as np

from bnbench import tables
from bnbench.lecture.common import figure, header, log_uniform, make_spec, save_figure, train
from bnbench.reference.data import Dataset


# --------------------------------------------------------------------------- 1. random vs grid
def compute(data: Dataset, seed: int, bar) -> Dict[str, object]:
    """Random search against a grid at equal budgets, over the learning rate (which matters) and
    bn_epsilon (which matters little): a grid of k x k tries only k learning rates."""
    budgets, seeds, epochs = (9, 25, 49), [seed + i for i in range(5)], 3
    lr_range, eps_range = (1e-4, 1.0), (1e-8, 1e-1)
    bar.reset(total=2 * sum(budgets) * len(seeds))
    results = {"random": {b: [] for b in budgets}, "grid": {b: [] for b in budgets}}
    distinct = {"random": {}, "grid": {}}
    for run_seed in seeds:
        rng = np.random.default_rng(run_seed)
        for budget in budgets:
            side = int(round(math.sqrt(budget)))
            grid_lr = np.logspace(math.log10(lr_range[0]), math.log10(lr_range[1]), side)
            grid_eps = np.logspace(math.log10(eps_range[0]), math.log10(eps_range[1]), side)
            trials = {"grid": [(lr, eps) for lr in grid_lr for eps in grid_eps],
                      "random": list(zip(log_uniform(rng, *lr_range, budget), log_uniform(rng, *eps_range, budget)))}
            for method, points in trials.items():
                best = 0.0
                for lr, eps in points:
                    curve, _ = train(make_spec(run_seed, learning_rate=float(lr), bn_epsilon=float(eps)), data, epochs,
                                     seed=run_seed)
                    best = max(best, curve[-1])
                    bar.update(1)
                results[method][budget].append(best)
                distinct[method][budget] = len({round(lr, 12) for lr, _ in points})
    return {
        "claim": "random search beats a grid at equal budget when one hyperparameter matters much more than another",
        "budgets": list(budgets), "seeds": seeds, "epochs": epochs,
        "ranges": {"learning_rate": lr_range, "bn_epsilon": eps_range},
        "random_best_val_accuracy": [float(np.mean(results["random"][b])) for b in budgets],
        "grid_best_val_accuracy": [float(np.mean(results["grid"][b])) for b in budgets],
        "random_best_val_accuracy_by_seed": [results["random"][b] for b in budgets],
        "grid_best_val_accuracy_by_seed": [results["grid"][b] for b in budgets],
        "random_distinct_learning_rates": [distinct["random"][b] for b in budgets],
        "grid_distinct_learning_rates": [distinct["grid"][b] for b in budgets],
    }


def plot(result, folder) -> List[str]:
    plt, (fig, ax) = figure()
    budgets = result["budgets"]
    for method, colour, marker in (("random", "tab:blue", "o"), ("grid", "tab:orange", "s")):
        by_seed = np.array(result[f"{method}_best_val_accuracy_by_seed"]) * 100
        ax.errorbar(budgets, by_seed.mean(axis=1), yerr=by_seed.std(axis=1), color=colour, marker=marker, capsize=4,
                    label=f"{method} search (mean ± sd over {by_seed.shape[1]} seeds)")
    ax.set_xlabel("budget (trials)")
    ax.set_ylabel("best validation accuracy (%)")
    ax.set_xticks(budgets)
    ax.set_title("Random against grid search at equal budget (learning rate × bn_epsilon)")
    ax.legend()
    ax.grid(alpha=0.3)
    return [save_figure(plt, fig, folder, "search.png")]


def markdown(result, plots) -> str:
    lines = header(result, "Random against grid search")
    lines += [f"**The measurement.** Budgets of {', '.join(map(str, result['budgets']))} trials over the learning rate "
              f"(log scale, {result['ranges']['learning_rate'][0]:g} to {result['ranges']['learning_rate'][1]:g}) and "
              f"bn_epsilon (log scale, {result['ranges']['bn_epsilon'][0]:g} to {result['ranges']['bn_epsilon'][1]:g}); "
              f"a k x k grid against k² random draws; each trial trains {result['epochs']} epochs of SGD; "
              f"{len(result['seeds'])} seeds.", ""]
    rows = []
    for i, budget in enumerate(result["budgets"]):
        r, g = np.array(result["random_best_val_accuracy_by_seed"][i]), np.array(result["grid_best_val_accuracy_by_seed"][i])
        rows.append([budget, f"{100 * r.mean():.2f}% ± {100 * r.std():.2f}", f"{100 * g.mean():.2f}% ± {100 * g.std():.2f}",
                     f"{result['random_distinct_learning_rates'][i]} / {result['grid_distinct_learning_rates'][i]}"])
    lines += tables.markdown(["budget", "random: best validation accuracy", "grid: best validation accuracy",
                              "learning rates tried (random / grid)"], rows)
    diff = np.array(result["random_best_val_accuracy"]) - np.array(result["grid_best_val_accuracy"])
    verdict = ("random search is ahead at every budget" if np.all(diff > 0) else
               "random search is not ahead at every budget" if np.any(diff > 0) else "the grid is ahead or level at every budget")
    lines += ["", f"**What it shows.** With k² trials the grid tries only k learning rates; random search tries k². "
              f"Here {verdict} (differences {', '.join(f'{100 * d:+.2f}' for d in diff)} points). "
              "bn_epsilon barely matters, so every grid trial that shares a learning rate is nearly wasted; "
              "where the learning rate's good region is wide, both methods find it and the difference is small.", ""]
    lines += [f"![random against grid]({p})" for p in plots]
    return "\n".join(lines) + "\n"
