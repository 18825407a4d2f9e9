"""Study ``batchnorm``: the network with and without batch norm over 5 decades of learning rate, 3
seeds (accuracy, epochs to 95%, the range that trains); how far each layer's input moves; the
train-test gap against the batch size; hardmax against softmax."""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import numpy as np

from bnbench import tables
from bnbench.lecture.common import figure, header, make_spec, pct, save_figure, summary_stats, train
from bnbench.reference import ReferenceModel, initial_parameters
from bnbench.reference.data import Dataset
from bnbench.reference.model import forward
from bnbench.tuning.trial import accuracy


# --------------------------------------------------------------------------- 3. batch norm
def _layer_inputs(model: ReferenceModel, X: np.ndarray) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Per hidden layer, the mean and variance (over the examples) of each unit of what its ReLU
    takes: gamma N + beta with batch norm, A W + b without; in training mode on X."""
    result = forward(model.spec, model.params, X, training=True)
    return [(cache.Zt.mean(axis=0), cache.Zt.var(axis=0)) for cache in result.caches]


def compute(data: Dataset, seed: int, bar) -> Dict[str, object]:
    learning_rates = [float(v) for v in np.logspace(-3, 2, 11)]       # 5 decades
    seeds, epochs, hidden, target = [seed + i for i in range(3)], 10, (64, 64, 64), 0.95
    shift_lr, batch_sizes, gap_epochs = 0.1, (16, 64, 256), 30
    bar.reset(total=2 * len(learning_rates) * len(seeds) + 2 + 2 * len(batch_sizes) * len(seeds))
    curves = {True: [], False: []}
    for with_bn in (True, False):
        for lr in learning_rates:
            per_seed = []
            for run_seed in seeds:
                curve, _ = train(make_spec(run_seed, hidden=hidden, learning_rate=lr, batch_norm=with_bn), data, epochs,
                                 seed=run_seed)
                per_seed.append(curve)
                bar.update(1)
            curves[with_bn].append(np.mean(per_seed, axis=0).tolist())

    def trains(curve) -> bool:
        return curve[-1] >= 0.9

    def decades(with_bn: bool) -> float:
        ok = [lr for lr, curve in zip(learning_rates, curves[with_bn]) if trains(curve)]
        return float(math.log10(max(ok) / min(ok))) if ok else 0.0

    def epochs_to(curve) -> Optional[int]:
        return next((epoch + 1 for epoch, value in enumerate(curve) if value >= target), None)

    # covariate shift: how far each layer's Z distribution moves over training, at one learning rate
    shift = {}
    probe = data.validation.X
    for with_bn in (True, False):
        history: List[List[Tuple[np.ndarray, np.ndarray]]] = []
        spec = make_spec(seed, hidden=hidden, learning_rate=shift_lr, batch_norm=with_bn)
        start = ReferenceModel(spec, initial_parameters(spec))
        history.append(_layer_inputs(start, probe))
        train(spec, data, epochs, seed=seed, on_epoch=lambda epoch, model: history.append(_layer_inputs(model, probe)))
        per_layer = []
        for layer in range(len(hidden)):
            mu0, var0 = history[0][layer]
            sd0 = np.sqrt(var0) + 1e-12
            per_layer.append({
                "mean_shift": [float(np.mean(np.abs(mu - mu0) / sd0)) for mu, _ in (h[layer] for h in history)],
                "log_variance_ratio": [float(np.mean(np.abs(np.log((var + 1e-12) / (var0 + 1e-12)))))
                                       for _, var in (h[layer] for h in history)],
            })
        shift["with_bn" if with_bn else "without_bn"] = per_layer
        bar.update(1)

    # regularisation: the train-test gap against the mini-batch size
    gap = {"with_bn": [], "without_bn": []}
    hardmax_agreement = []
    for with_bn in (True, False):
        for batch_size in batch_sizes:
            gaps = []
            for run_seed in seeds:
                spec = make_spec(run_seed, hidden=hidden, learning_rate=0.05 * batch_size / 64, batch_norm=with_bn)
                _, model = train(spec, data, gap_epochs, batch_size=batch_size, seed=run_seed)
                train_acc = accuracy(model.predict_proba(data.train.X), data.train.y)
                probs = model.predict_proba(data.test.X)
                gaps.append(train_acc - accuracy(probs, data.test.y))
                logits = forward(spec, model.params, data.test.X, training=False).logits
                hardmax_agreement.append(float(np.mean(np.argmax(logits, axis=1) == np.argmax(probs, axis=1))))
                bar.update(1)
            gap["with_bn" if with_bn else "without_bn"].append(summary_stats(gaps))
    return {
        "claim": "batch norm lets a network train over a wider range of learning rates and faster; it reduces the "
                 "shift of each layer's input distribution; its batch noise is a slight regulariser that weakens "
                 "with larger batches",
        "seeds": seeds, "epochs": epochs, "hidden": list(hidden), "optimizer": "sgd",
        "learning_rates": learning_rates,
        "with_bn_final_val_accuracy": [c[-1] for c in curves[True]],
        "without_bn_final_val_accuracy": [c[-1] for c in curves[False]],
        "with_bn_curves": curves[True], "without_bn_curves": curves[False],
        "with_bn_epochs_to_95": [epochs_to(c) for c in curves[True]],
        "without_bn_epochs_to_95": [epochs_to(c) for c in curves[False]],
        "trains_means": "final validation accuracy >= 0.90, mean over the seeds",
        "with_bn_trainable_decades": decades(True), "without_bn_trainable_decades": decades(False),
        "shift_learning_rate": shift_lr, "input_shift": shift,
        "batch_sizes": list(batch_sizes), "gap_epochs": gap_epochs,
        "gap_learning_rate": "0.05 * batch_size / 64 (the linear scaling rule)",
        "train_test_gap": gap,
        "hardmax_agreement": float(np.mean(hardmax_agreement)),
    }


def plot(result, folder) -> List[str]:
    plt, (fig, ax) = figure()
    lrs = result["learning_rates"]
    ax.plot(lrs, np.array(result["with_bn_final_val_accuracy"]) * 100, "o-", color="tab:blue", label="with batch norm")
    ax.plot(lrs, np.array(result["without_bn_final_val_accuracy"]) * 100, "s--", color="tab:red", label="without batch norm")
    ax.axhline(90, color="grey", linewidth=0.8, linestyle=":", label="trains (90%)")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (SGD, log scale)")
    ax.set_ylabel(f"validation accuracy after {result['epochs']} epochs (%)")
    ax.set_title(f"Batch norm and the learning rate (network {result['hidden']}, mean of {len(result['seeds'])} seeds)")
    ax.legend()
    ax.grid(alpha=0.3)
    files = [save_figure(plt, fig, folder, "batchnorm-learning-rates.png")]

    plt, (fig, axes) = figure(10, 4.2, columns=2)
    for ax, (key, label) in zip(axes, (("mean_shift", "mean shift (in initial standard deviations)"),
                                       ("log_variance_ratio", "|log(variance / initial variance)|"))):
        for model, style in (("with_bn", "-"), ("without_bn", "--")):
            for layer, entry in enumerate(result["input_shift"][model], start=1):
                ax.plot(range(len(entry[key])), entry[key], style, marker="o", markersize=3,
                        color=plt.get_cmap("viridis")(layer / (len(result["input_shift"][model]) + 0.5)),
                        label=f"layer {layer}, {'with' if model == 'with_bn' else 'without'} batch norm")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_title("How far each ReLU's input moves from its start")
    axes[1].legend(fontsize=7)
    files.append(save_figure(plt, fig, folder, "batchnorm-input-shift.png"))

    plt, (fig, ax) = figure()
    sizes = result["batch_sizes"]
    for model, colour, label in (("with_bn", "tab:blue", "with batch norm"), ("without_bn", "tab:red", "without batch norm")):
        gaps = result["train_test_gap"][model]
        ax.errorbar(sizes, [g["mean"] * 100 for g in gaps], yerr=[g["std"] * 100 for g in gaps], marker="o",
                    capsize=4, color=colour, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(s) for s in sizes])
    ax.set_xlabel("mini-batch size")
    ax.set_ylabel("training − test accuracy (percentage points)")
    ax.set_title(f"Generalisation gap after {result['gap_epochs']} epochs")
    ax.legend()
    ax.grid(alpha=0.3)
    files.append(save_figure(plt, fig, folder, "batchnorm-gap.png"))
    return files


def markdown(result, plots) -> str:
    lines = header(result, "Batch norm on and off")
    lines += [f"**The measurement.** The network {result['hidden']} with and without batch norm (`batch_norm: false`: "
              f"Z = A W + b, then ReLU; same initial draws), plain SGD, batch 64, {result['epochs']} epochs, "
              f"{len(result['seeds'])} seeds, learning rates over 5 decades.", ""]
    lines += tables.markdown(
        ["learning rate", "with batch norm: validation accuracy", "epochs to 95%", "without: validation accuracy", "epochs to 95%"],
        [[f"{lr:.3g}", pct(result["with_bn_final_val_accuracy"][i]), result["with_bn_epochs_to_95"][i] or "-",
          pct(result["without_bn_final_val_accuracy"][i]), result["without_bn_epochs_to_95"][i] or "-"]
         for i, lr in enumerate(result["learning_rates"])])
    lines += ["", f"Learning rates that train ({result['trains_means']}): "
              f"{result['with_bn_trainable_decades']:.1f} decades with batch norm, "
              f"{result['without_bn_trainable_decades']:.1f} without.", ""]
    shift = result["input_shift"]
    final = lambda model, key: ", ".join(f"{entry[key][-1]:.2f}" for entry in shift[model])  # noqa: E731
    lines += [f"**Input shift** (learning rate {result['shift_learning_rate']}, what each hidden layer's ReLU takes, on "
              "the validation set, after the last epoch against the start; layer 1 first): mean shift "
              f"{final('with_bn', 'mean_shift')} with batch norm, {final('without_bn', 'mean_shift')} without; "
              f"|log variance ratio| {final('with_bn', 'log_variance_ratio')} with, "
              f"{final('without_bn', 'log_variance_ratio')} without.", ""]
    gap = result["train_test_gap"]
    lines += [f"**Regularisation** (training − test accuracy after {result['gap_epochs']} epochs, learning rate "
              f"{result['gap_learning_rate']}):", ""]
    lines += tables.markdown(["batch size", "with batch norm", "without"], [
        [size, f"{100 * gap['with_bn'][i]['mean']:.2f} ± {100 * gap['with_bn'][i]['std']:.2f}",
         f"{100 * gap['without_bn'][i]['mean']:.2f} ± {100 * gap['without_bn'][i]['std']:.2f}"]
        for i, size in enumerate(result["batch_sizes"])])
    lines += ["", f"**Softmax and hardmax.** The class with the largest probability is the class with the largest "
              f"logit (softmax is monotone): the argmax of the probabilities and of the logits agree on "
              f"{100 * result['hardmax_agreement']:.1f}% of the test examples, over every model of the gap sweep. "
              "With two classes, softmax regression is logistic regression (`tests/test_lecture.py` checks "
              "probabilities and gradients).", "",
              "**What it shows.** " + " ".join(_batchnorm_verdicts(result)), ""]
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _batchnorm_verdicts(result) -> List[str]:
    """The claims checked against this run's numbers, each said as it came out."""
    out = []
    with_bn, without = result["with_bn_trainable_decades"], result["without_bn_trainable_decades"]
    out.append(f"Range: batch norm trains over {with_bn:.1f} decades of learning rate, {without:.1f} without "
               f"({'wider, as claimed' if with_bn > without else 'not wider here'}).")
    both = [(lr, a, b) for lr, a, b in zip(result["learning_rates"], result["with_bn_epochs_to_95"],
                                           result["without_bn_epochs_to_95"]) if a and b]
    if both:
        faster = sum(a < b for _, a, b in both)
        out.append(f"Speed: where both reach 95%, batch norm gets there in fewer epochs at {faster} of {len(both)} "
                   f"learning rates and never later at {sum(a <= b for _, a, b in both)}.")
    shift = result["input_shift"]
    last_with, last_without = shift["with_bn"][-1]["mean_shift"][-1], shift["without_bn"][-1]["mean_shift"][-1]
    out.append(f"Shift: the last hidden layer's input mean moves {last_with:.2f} initial standard deviations with batch "
               f"norm and {last_without:.2f} without "
               f"({'less with batch norm, as claimed' if last_with < last_without else 'not less with batch norm here'}).")
    gaps = result["train_test_gap"]
    bn_trend = gaps["with_bn"][-1]["mean"] - gaps["with_bn"][0]["mean"]
    out.append(f"Regularisation: with batch norm the train-test gap goes from {100 * gaps['with_bn'][0]['mean']:.2f} to "
               f"{100 * gaps['with_bn'][-1]['mean']:.2f} points from the smallest batch to the largest "
               f"({'it grows as the batch noise weakens, as claimed' if bn_trend > 0 else 'it does not grow here'}); "
               f"without batch norm it goes from {100 * gaps['without_bn'][0]['mean']:.2f} to "
               f"{100 * gaps['without_bn'][-1]['mean']:.2f}. The spreads over seeds (±) are as large as some of these "
               "differences: a slight effect, as the lecture says.")
    return out
