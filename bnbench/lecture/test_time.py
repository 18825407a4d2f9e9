"""Study ``test-time``: inference with the running averages against the exact population statistics,
``bn_momentum`` 0.5 to 0.999, 1 and 10 epochs."""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from bnbench import tables
from bnbench.lecture.common import figure, header, make_spec, pct, save_figure, train
from bnbench.reference import ReferenceModel
from bnbench.reference.data import Dataset
from bnbench.tuning.trial import accuracy


# --------------------------------------------------------------------------- 4. test time
def population_statistics(model: ReferenceModel, X: np.ndarray) -> Dict[str, np.ndarray]:
    """The exact mean and (biased) variance of every layer's Z over the whole training set, layer
    by layer, each layer normalised with the population statistics of the ones before it."""
    spec, params = model.spec, model.params
    A, stats = X, {}
    for layer in range(1, spec.n_layers + 1):
        Z = A @ params[f"W{layer}"]
        mu, var = Z.mean(axis=0), Z.var(axis=0)
        stats[f"running_mean{layer}"], stats[f"running_var{layer}"] = mu, var
        Zt = params[f"gamma{layer}"] * (Z - mu) / np.sqrt(var + spec.bn_epsilon) + params[f"beta{layer}"]
        A = np.maximum(Zt, 0)
    return stats


def compute(data: Dataset, seed: int, bar) -> Dict[str, object]:
    momenta, lengths, seeds = [0.5, 0.9, 0.99, 0.999], [1, 10], [seed + i for i in range(3)]
    bar.reset(total=len(momenta) * len(lengths) * len(seeds))
    ewa, population, mean_error, var_error = ({length: [] for length in lengths} for _ in range(4))
    for length in lengths:
        for momentum in momenta:
            accs, pops, mean_errs, var_errs = [], [], [], []
            for run_seed in seeds:
                spec = make_spec(run_seed, bn_momentum=momentum, learning_rate=0.1)
                _, model = train(spec, data, length, seed=run_seed)
                accs.append(accuracy(model.predict_proba(data.test.X), data.test.y))
                exact = population_statistics(model, data.train.X)
                with_population = ReferenceModel(spec, dict(model.params, **exact))
                pops.append(accuracy(with_population.predict_proba(data.test.X), data.test.y))
                for layer in range(1, spec.n_layers + 1):
                    mu, var = exact[f"running_mean{layer}"], exact[f"running_var{layer}"]
                    mean_errs.append(float(np.mean(np.abs(model.params[f"running_mean{layer}"] - mu)) / np.mean(np.sqrt(var))))
                    var_errs.append(float(np.mean(np.abs(model.params[f"running_var{layer}"] - var) / var)))
                bar.update(1)
            ewa[length].append(float(np.mean(accs)))
            population[length].append(float(np.mean(pops)))
            mean_error[length].append(float(np.mean(mean_errs)))
            var_error[length].append(float(np.mean(var_errs)))
    return {
        "claim": "at test time, exponentially weighted averages of the batch statistics stand in for the population "
                 "statistics: they are close when the averaging has seen enough batches",
        "seeds": seeds, "training_epochs": lengths, "steps_per_epoch": len(data.train) // 64,
        "bn_momentum": momenta,
        "ewa_test_accuracy": {str(k): v for k, v in ewa.items()},
        "population_test_accuracy": {str(k): v for k, v in population.items()},
        "running_mean_error": {str(k): v for k, v in mean_error.items()},
        "running_var_relative_error": {str(k): v for k, v in var_error.items()},
        "errors_mean": "mean |running - population| over units, over the population's mean standard deviation (means); "
                       "mean relative error (variances); averaged over layers and seeds",
    }


def plot(result, folder) -> List[str]:
    plt, (fig, ax) = figure()
    momenta = result["bn_momentum"]
    for length, style in zip(result["training_epochs"], ("--", "-")):
        ax.plot(momenta, np.array(result["ewa_test_accuracy"][str(length)]) * 100, style, marker="o", color="tab:blue",
                label=f"running averages, {length} epoch(s)")
        ax.plot(momenta, np.array(result["population_test_accuracy"][str(length)]) * 100, style, marker="s",
                color="tab:green", label=f"population statistics, {length} epoch(s)")
    ax.set_xscale("function", functions=(lambda b: -np.log10(np.clip(1 - np.asarray(b), 1e-9, None)), lambda t: 1 - 10 ** (-np.asarray(t))))
    ax.set_xticks(momenta)
    ax.set_xticklabels([str(m) for m in momenta])
    ax.set_xlabel("bn_momentum (weight of the old value; axis: -log10(1 - beta))")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Test-time statistics: running averages against the exact population")
    ax.legend()
    ax.grid(alpha=0.3)
    return [save_figure(plt, fig, folder, "test-time.png")]


def markdown(result, plots) -> str:
    lines = header(result, "Test-time statistics")
    lines += [f"**The measurement.** Train with bn_momentum from {result['bn_momentum'][0]} to {result['bn_momentum'][-1]} "
              f"for {' and '.join(map(str, result['training_epochs']))} epoch(s) ({result['steps_per_epoch']} steps each), "
              f"{len(result['seeds'])} seeds; then classify the test set with the running averages, and with the exact "
              "mean and variance of every layer over the whole training set (the population).", ""]
    rows = [[length, momentum, pct(result["ewa_test_accuracy"][str(length)][i]),
             pct(result["population_test_accuracy"][str(length)][i]), f"{result['running_mean_error'][str(length)][i]:.3f}",
             f"{result['running_var_relative_error'][str(length)][i]:.3f}"]
            for length in result["training_epochs"] for i, momentum in enumerate(result["bn_momentum"])]
    lines += tables.markdown(["epochs", "bn_momentum", "test accuracy, running averages", "test accuracy, population",
                              "mean error", "variance error"], rows)
    lines += ["", f"Errors: {result['errors_mean']}.", "",
              "**What it shows.** An average with weight beta on the old value remembers about 1 / (1 - beta) steps: "
              "with bn_momentum 0.999 it has seen too few batches after a short training and still leans on its "
              "initial 0 and 1, and the running averages then classify worse than the population statistics. "
              "Once the averaging window is shorter than the training, the two agree.", ""]
    lines += [f"![test-time statistics]({p})" for p in plots]
    return "\n".join(lines) + "\n"
