"""``bnbench study NAME``: the lecture's claims, measured on the digits set with the suite's own
verified reference model (the NumPy adapter: the spec itself, and the fastest panda here).

Each study writes ``results/lecture/NAME.json`` (the keys its issue fixed, plus what a reader needs
to check them), ``NAME.md`` (the claim, the measurement, what it shows, said plainly where the
claim does not hold here) and its plots. Every study is seeded and takes well under 3 minutes on
2 cores.
"""
from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bnbench import progress
from bnbench.adapters import registry
from bnbench.adapters.base import Adapter
from bnbench.reference import ReferenceModel, Spec, initial_parameters
from bnbench.reference.data import Dataset, load_digits, minibatches
from bnbench.reference.io import atomic_write_json, atomic_write_text
from bnbench.reference.model import forward
from bnbench.report import _save
from bnbench.tune import accuracy

STUDIES = ("search", "scale", "batchnorm", "test-time", "frameworks")
HIDDEN = (64, 64)


class StudyError(ValueError):
    pass


# --------------------------------------------------------------------------- training
def make_spec(seed: int, **fields) -> Spec:
    fields = dict(dict(n_features=64, n_classes=10, hidden=HIDDEN, optimizer="sgd", learning_rate=0.1), **fields)
    return Spec(seed=seed, dtype="float64", **fields)


def train(spec: Spec, data: Dataset, epochs: int, *, batch_size: int = 64, seed: int = 0,
          on_epoch: Optional[Callable[[int, ReferenceModel], None]] = None) -> Tuple[List[float], ReferenceModel]:
    """The reference model trained epoch by epoch; its validation accuracy after each epoch."""
    model = ReferenceModel(spec, initial_parameters(spec))
    curve = []
    with np.errstate(all="ignore"):       # a diverging learning rate is a result here, not a warning
        for epoch in range(epochs):
            diverged = False
            for X, y in minibatches(data.train, batch_size, seed=seed, epoch=epoch):
                if not math.isfinite(model.train_step(X, y)):
                    diverged = True
                    break
            curve.append(0.0 if diverged else accuracy(model.predict_proba(data.validation.X), data.validation.y))
            if on_epoch is not None:
                on_epoch(epoch, model)
            if diverged:
                curve += [0.0] * (epochs - epoch - 1)
                break
    return curve, model


def _log_uniform(rng: np.random.Generator, low: float, high: float, n: int) -> np.ndarray:
    return 10 ** rng.uniform(math.log10(low), math.log10(high), size=n)


def _stats(values: Sequence[float]) -> Dict[str, float]:
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()), "max": float(values.max())}


# --------------------------------------------------------------------------- 1. random vs grid
def study_search(data: Dataset, seed: int, bar) -> Dict[str, object]:
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
                      "random": list(zip(_log_uniform(rng, *lr_range, budget), _log_uniform(rng, *eps_range, budget)))}
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


# --------------------------------------------------------------------------- 2. scales
def study_scale(data: Dataset, seed: int, bar) -> Dict[str, object]:
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
                draws["log"] = 1 - _log_uniform(rng, 1 - high, 1 - low, n_trials)
            else:
                draws["log"] = _log_uniform(rng, low, high, n_trials)
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


# --------------------------------------------------------------------------- 3. batch norm
def _layer_inputs(model: ReferenceModel, X: np.ndarray) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Per hidden layer, the mean and variance (over the examples) of each unit of what its ReLU
    takes: gamma N + beta with batch norm, A W + b without; in training mode on X."""
    result = forward(model.spec, model.params, X, training=True)
    return [(cache.Zt.mean(axis=0), cache.Zt.var(axis=0)) for cache in result.caches]


def study_batchnorm(data: Dataset, seed: int, bar) -> Dict[str, object]:
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
            gap["with_bn" if with_bn else "without_bn"].append(_stats(gaps))
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


def study_test_time(data: Dataset, seed: int, bar) -> Dict[str, object]:
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


# --------------------------------------------------------------------------- 6. frameworks
def _api_calls(source: str, roots: Sequence[str]) -> Tuple[int, List[str]]:
    """Distinct dotted names reached from the framework's imports in an adapter's source: every
    `x.y.z` whose x was bound by an `import`/`from ... import` of one of ``roots`` (or assigned
    from such a name, as `self.lib = lib`), written out from the module's name."""
    tree = ast.parse(source)
    aliases: Dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for name in node.names:
                if name.name.split(".")[0] in roots:
                    if name.asname:
                        aliases[name.asname] = name.name
                    else:
                        aliases[name.name.split(".")[0]] = name.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in roots:
            for name in node.names:
                aliases[name.asname or name.name] = f"{node.module}.{name.name}"
    # helpers that import the framework and return it (def _lib(): import lib; return lib)
    helpers = {node.name: aliases[node.body[-1].value.id] for node in ast.walk(tree)
               if isinstance(node, ast.FunctionDef) and node.body and isinstance(node.body[-1], ast.Return)
               and isinstance(node.body[-1].value, ast.Name) and node.body[-1].value.id in aliases}
    for node in ast.walk(tree):     # lib = _lib(), self.lib = lib, self.F = F, ...
        if not isinstance(node, ast.Assign):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in aliases:
            module = aliases[node.value.id]
        elif isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name) and node.value.func.id in helpers:
            module = helpers[node.value.func.id]
        else:
            continue
        for target in node.targets:
            if isinstance(target, ast.Name):
                aliases.setdefault(target.id, module)
            elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
                aliases[f"self.{target.attr}"] = module
    found = set()

    def dotted(node) -> Optional[str]:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        parts.append(node.id)
        parts.reverse()
        if len(parts) >= 3 and f"{parts[0]}.{parts[1]}" in aliases:
            return ".".join([aliases[f"{parts[0]}.{parts[1]}"]] + parts[2:])
        if parts[0] in aliases:
            return ".".join([aliases[parts[0]]] + parts[1:])
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = dotted(node.func)
            if name is not None:
                found.add(name)
    return len(found), sorted(found)


def _code_lines(source: str) -> int:
    """Lines of code: not blank, not a comment, not part of a docstring."""
    tree = ast.parse(source)
    docstring_lines = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                docstring_lines.update(range(first.lineno, first.end_lineno + 1))
    return sum(1 for number, line in enumerate(source.splitlines(), start=1)
               if line.strip() and not line.strip().startswith("#") and number not in docstring_lines)


def _metadata(adapter_class) -> Dict[str, Optional[str]]:
    """Licence, maintainer and version from the installed package's metadata, read in the
    framework's own environment (its Python, without importing the framework)."""
    distributions = list(adapter_class.packages or adapter_class.requires[:1])
    script = ("import json, sys\nfrom importlib import metadata\nout = None\n"
              "for name in sys.argv[1:]:\n"
              "    try:\n        m = metadata.metadata(name)\n    except metadata.PackageNotFoundError:\n        continue\n"
              "    classifiers = [c.split(' :: ')[-1] for c in (m.get_all('Classifier') or []) if c.startswith('License ::')]\n"
              "    licence = m.get('License-Expression') or (m.get('License') if m.get('License') and len(m.get('License')) < 80 else None)\n"
              "    out = {'distribution': name, 'version': m.get('Version'), 'licence': licence or (', '.join(classifiers) or None),\n"
              "           'maintainer': m.get('Maintainer') or m.get('Author') or m.get('Maintainer-email') or m.get('Author-email'),\n"
              "           'home_page': m.get('Home-page') or next((u.split(', ', 1)[-1] for u in (m.get_all('Project-URL') or [])), None)}\n"
              "    break\nprint(json.dumps(out))\n")
    placement = adapter_class.placement() if adapter_class.environment else None
    python = placement.python if placement is not None else sys.executable
    try:
        done = subprocess.run([python, "-c", script, *distributions], capture_output=True, text=True, timeout=60)
        found = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 and done.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        found = None
    return found or {"distribution": None, "version": None, "licence": None, "maintainer": None, "home_page": None}


def _speed_ratios(results: str) -> Tuple[Dict[str, Tuple[float, str]], Optional[str]]:
    """Each framework's paired ratio (best mode, against the baseline) from the newest published
    CPU comparison at medium size, float32."""
    import glob

    paths = sorted(glob.glob(os.path.join(results, "compare", "*", "cpu-medium-float32.json")), key=os.path.getmtime)
    if not paths:
        return {}, None
    with open(paths[-1], encoding="utf-8") as handle:
        compared = json.load(handle)
    ratios = {row["framework"]: (row["ratio"], f"{row['ratio']:.3g} [{row['ci_low']:.3g}, {row['ci_high']:.3g}]")
              for row in compared["rows"] if row.get("ratio") is not None}
    return ratios, os.path.relpath(paths[-1], results)


def study_frameworks(results: str, bar) -> Dict[str, object]:
    ratios, source = _speed_ratios(results)
    rows = []
    names = [name for name in registry.names()]
    bar.reset(total=len(names))
    base_module = sys.modules[Adapter.__module__]
    modules_of = {}
    for name in names:
        # the adapter's module and the modules of the adapter classes it inherits from (Theano and
        # Lasagne build on the symbolic adapter of PyTensor's module), never the contract itself
        modules_of[name] = list(dict.fromkeys(sys.modules[c.__module__] for c in registry.local_class(name).__mro__
                                               if issubclass(c, Adapter) and sys.modules[c.__module__] is not base_module))
    for name in names:
        adapter_class = registry.local_class(name)
        module = sys.modules[adapter_class.__module__]
        texts = []
        for source_module in modules_of[name]:
            with open(source_module.__file__, encoding="utf-8") as handle:
                texts.append(handle.read())
        roots = sorted({module_name.split(".")[0] for module_name in adapter_class.requires})
        counted = [_api_calls(text, roots)[1] for text in texts] if adapter_class.modes else []
        call_names = sorted(set().union(*counted)) if counted else []
        calls = len(call_names)
        meta = _metadata(adapter_class) if adapter_class.modes else {}
        ratio = ratios.get(name)
        rows.append({
            "framework": name, "modes": list(adapter_class.modes),
            "adapter": os.path.relpath(module.__file__, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
            "adapter_lines": sum(_code_lines(text) for text in texts) if adapter_class.modes else None,
            "adapter_modules": [os.path.basename(m.__file__) for m in modules_of[name]],
            "adapter_shared_with": sorted(n for n in names if n != name and set(modules_of[n]) & set(modules_of[name])),
            "api_calls": calls if adapter_class.modes else None, "api_call_names": call_names,
            "licence": meta.get("licence"), "maintainer": meta.get("maintainer"), "version": meta.get("version"),
            "speed_ratio": None if ratio is None else ratio[0], "speed_interval": None if ratio is None else ratio[1],
            "status": adapter_class.status or None,
        })
        bar.update(1)
    return {
        "claim": "choose a framework by ease of programming, running speed and whether it is truly open "
                 "(open source with good governance)",
        "rows": rows, "speed_source": source,
        "speed_means": "the paired ratio of its best mode's training step to NumPy's, medium size, float32, CPU "
                       "(bnbench compare; lower is faster), with its 95% interval",
        "api_calls_means": "distinct dotted names called through the framework's imports in the adapter's source (AST); "
                           "a library handed around as a value (the symbolic adapters' shared code) is not followed, "
                           "so those counts are low",
        "adapter_lines_means": "lines that are not blank, comments or docstrings, in the adapter's module and the "
                               "modules of the adapter classes it inherits from (shared code counts for each)",
    }


# --------------------------------------------------------------------------- running and writing
def run(name: str, *, seed: int = 0, results: str = "results", show_progress: bool = True) -> Dict[str, object]:
    """Run study ``name`` and write results/lecture/NAME.json, NAME.md and its plots."""
    import time

    if name not in STUDIES:
        raise StudyError(f"study {name!r} is unknown; studies: {', '.join(STUDIES)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise StudyError(f"--seed {seed!r} must be an integer >= 0")
    started = time.perf_counter()
    bar = progress.bar(total=1, unit="model", enabled=show_progress)
    bar.set_description(f"study {name}")
    try:
        if name == "frameworks":
            result = study_frameworks(results, bar)
        else:
            data = load_digits("float64")
            result = {"search": study_search, "scale": study_scale, "batchnorm": study_batchnorm,
                      "test-time": study_test_time}[name](data, seed, bar)
    finally:
        bar.close()
    result = dict(study=name, seed=seed, seconds=round(time.perf_counter() - started, 1), **result)
    folder = os.path.join(results, "lecture")
    os.makedirs(folder, exist_ok=True)
    plots = PLOTS[name](result, folder)
    atomic_write_json(os.path.join(folder, f"{name}.json"), result)
    atomic_write_text(os.path.join(folder, f"{name}.md"), MARKDOWN[name](result, plots))
    return result


def _figure(width: float = 7.5, height: float = 4.6, columns: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.subplots(1, columns, figsize=(width, height), dpi=100)


def _save_figure(plt, fig, folder: str, filename: str) -> str:
    fig.tight_layout()
    _save(fig, os.path.join(folder, filename))
    plt.close(fig)
    return filename


def _plot_search(result, folder) -> List[str]:
    plt, (fig, ax) = _figure()
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
    return [_save_figure(plt, fig, folder, "search.png")]


def _plot_scale(result, folder) -> List[str]:
    plt, (fig, axes) = _figure(10, 4.2, columns=2)
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
    return [_save_figure(plt, fig, folder, "scale.png")]


def _plot_batchnorm(result, folder) -> List[str]:
    plt, (fig, ax) = _figure()
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
    files = [_save_figure(plt, fig, folder, "batchnorm-learning-rates.png")]

    plt, (fig, axes) = _figure(10, 4.2, columns=2)
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
    files.append(_save_figure(plt, fig, folder, "batchnorm-input-shift.png"))

    plt, (fig, ax) = _figure()
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
    files.append(_save_figure(plt, fig, folder, "batchnorm-gap.png"))
    return files


def _plot_test_time(result, folder) -> List[str]:
    plt, (fig, ax) = _figure()
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
    return [_save_figure(plt, fig, folder, "test-time.png")]


def _plot_frameworks(result, folder) -> List[str]:
    rows = [r for r in result["rows"] if r["speed_ratio"] is not None and r["adapter_lines"]]
    if not rows:
        return []
    plt, (fig, ax) = _figure(7.5, 5)
    for row in rows:
        retired = (row["status"] or "").startswith(("retired", "unmaintained"))
        ax.scatter(row["adapter_lines"], row["speed_ratio"], s=20 + 4 * row["api_calls"],
                   color="tab:grey" if retired else "tab:blue", edgecolor="black", linewidth=0.5)
        ax.annotate(row["framework"], (row["adapter_lines"], row["speed_ratio"]), fontsize=8, xytext=(4, 3),
                    textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xlabel("adapter lines of code (ease of programming: fewer is easier)")
    ax.set_ylabel("step time / NumPy's (medium, float32, CPU; log)")
    ax.set_title("Frameworks by the lecture's criteria (grey: retired; size: API calls)")
    ax.grid(alpha=0.3)
    return [_save_figure(plt, fig, folder, "frameworks.png")]


PLOTS = {"search": _plot_search, "scale": _plot_scale, "batchnorm": _plot_batchnorm, "test-time": _plot_test_time,
         "frameworks": _plot_frameworks}


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _header(result, title: str) -> List[str]:
    return [f"# {title}", "", f"**The claim.** {result['claim'][0].upper()}{result['claim'][1:]}.", "",
            f"`bnbench study {result['study']} --seed {result['seed']}` ({result['seconds']} s on this machine; "
            f"`{result['study']}.json` holds every number).", ""]


def _md_search(result, plots) -> str:
    lines = _header(result, "Random against grid search")
    lines += [f"**The measurement.** Budgets of {', '.join(map(str, result['budgets']))} trials over the learning rate "
              f"(log scale, {result['ranges']['learning_rate'][0]:g} to {result['ranges']['learning_rate'][1]:g}) and "
              f"bn_epsilon (log scale, {result['ranges']['bn_epsilon'][0]:g} to {result['ranges']['bn_epsilon'][1]:g}); "
              f"a k x k grid against k² random draws; each trial trains {result['epochs']} epochs of SGD; "
              f"{len(result['seeds'])} seeds.", "",
              "| budget | random: best validation accuracy | grid: best validation accuracy | learning rates tried (random / grid) |",
              "|---|---|---|---|"]
    for i, budget in enumerate(result["budgets"]):
        r, g = np.array(result["random_best_val_accuracy_by_seed"][i]), np.array(result["grid_best_val_accuracy_by_seed"][i])
        lines.append(f"| {budget} | {100 * r.mean():.2f}% ± {100 * r.std():.2f} | {100 * g.mean():.2f}% ± {100 * g.std():.2f} | "
                     f"{result['random_distinct_learning_rates'][i]} / {result['grid_distinct_learning_rates'][i]} |")
    diff = np.array(result["random_best_val_accuracy"]) - np.array(result["grid_best_val_accuracy"])
    verdict = ("random search is ahead at every budget" if np.all(diff > 0) else
               "random search is not ahead at every budget" if np.any(diff > 0) else "the grid is ahead or level at every budget")
    lines += ["", f"**What it shows.** With k² trials the grid tries only k learning rates; random search tries k². "
              f"Here {verdict} (differences {', '.join(f'{100 * d:+.2f}' for d in diff)} points). "
              "bn_epsilon barely matters, so every grid trial that shares a learning rate is nearly wasted; "
              "where the learning rate's good region is wide, both methods find it and the difference is small.", ""]
    lines += [f"![random against grid]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _md_scale(result, plots) -> str:
    lines = _header(result, "Sampling on the right scale")
    lines += [f"**The measurement.** {result['trials']} draws per scale and field, {len(result['seeds'])} seeds; each trial "
              f"trains {result['epochs']} epochs.", "",
              "| field | decade | uniform: trials | log scale: trials |", "|---|---|---|---|"]
    for field in ("learning_rate", "beta1"):
        for decade, u, g in zip(result["decades"][field], result["trials_per_decade_uniform"][field],
                                result["trials_per_decade_log"][field]):
            lines.append(f"| {field} | {decade[0]:g} to {decade[1]:g} | {u:.1f} | {g:.1f} |")
    lines += ["", "| field | best validation accuracy, uniform | best validation accuracy, log scale |", "|---|---|---|"]
    for field in ("learning_rate", "beta1"):
        lines.append(f"| {field} | {_pct(result['best_val_accuracy_uniform'][field])} | "
                     f"{_pct(result['best_val_accuracy_log'][field])} |")
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


def _md_batchnorm(result, plots) -> str:
    lines = _header(result, "Batch norm on and off")
    lines += [f"**The measurement.** The network {result['hidden']} with and without batch norm (`batch_norm: false`: "
              f"Z = A W + b, then ReLU; same initial draws), plain SGD, batch 64, {result['epochs']} epochs, "
              f"{len(result['seeds'])} seeds, learning rates over 5 decades.", "",
              "| learning rate | with batch norm: validation accuracy | epochs to 95% | without: validation accuracy | epochs to 95% |",
              "|---|---|---|---|---|"]
    for i, lr in enumerate(result["learning_rates"]):
        lines.append(f"| {lr:.3g} | {_pct(result['with_bn_final_val_accuracy'][i])} | "
                     f"{result['with_bn_epochs_to_95'][i] or '-'} | {_pct(result['without_bn_final_val_accuracy'][i])} | "
                     f"{result['without_bn_epochs_to_95'][i] or '-'} |")
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
              f"{result['gap_learning_rate']}):", "", "| batch size | with batch norm | without |", "|---|---|---|"]
    for i, size in enumerate(result["batch_sizes"]):
        lines.append(f"| {size} | {100 * gap['with_bn'][i]['mean']:.2f} ± {100 * gap['with_bn'][i]['std']:.2f} | "
                     f"{100 * gap['without_bn'][i]['mean']:.2f} ± {100 * gap['without_bn'][i]['std']:.2f} |")
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


def _md_test_time(result, plots) -> str:
    lines = _header(result, "Test-time statistics")
    lines += [f"**The measurement.** Train with bn_momentum from {result['bn_momentum'][0]} to {result['bn_momentum'][-1]} "
              f"for {' and '.join(map(str, result['training_epochs']))} epoch(s) ({result['steps_per_epoch']} steps each), "
              f"{len(result['seeds'])} seeds; then classify the test set with the running averages, and with the exact "
              "mean and variance of every layer over the whole training set (the population).", "",
              "| epochs | bn_momentum | test accuracy, running averages | test accuracy, population | mean error | variance error |",
              "|---|---|---|---|---|---|"]
    for length in result["training_epochs"]:
        key = str(length)
        for i, momentum in enumerate(result["bn_momentum"]):
            lines.append(f"| {length} | {momentum} | {_pct(result['ewa_test_accuracy'][key][i])} | "
                         f"{_pct(result['population_test_accuracy'][key][i])} | {result['running_mean_error'][key][i]:.3f} | "
                         f"{result['running_var_relative_error'][key][i]:.3f} |")
    lines += ["", f"Errors: {result['errors_mean']}.", "",
              "**What it shows.** An average with weight beta on the old value remembers about 1 / (1 - beta) steps: "
              "with bn_momentum 0.999 it has seen too few batches after a short training and still leans on its "
              "initial 0 and 1, and the running averages then classify worse than the population statistics. "
              "Once the averaging window is shorter than the training, the two agree.", ""]
    lines += [f"![test-time statistics]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _md_frameworks(result, plots) -> str:
    lines = _header(result, "Choosing a framework")
    lines += ["| framework | adapter lines | API calls | speed (× NumPy) | licence | maintainer | status |",
              "|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        shared = f" (module shared with {', '.join(row['adapter_shared_with'])})" if row["adapter_shared_with"] else ""
        lines.append(f"| {row['framework']} | {row['adapter_lines'] if row['adapter_lines'] is not None else '-'}{shared} | "
                     f"{row['api_calls'] if row['api_calls'] is not None else '-'} | {row['speed_interval'] or '-'} | "
                     f"{row['licence'] or '-'} | {row['maintainer'] or '-'} | {row['status'] or '-'} |")
    lines += ["", f"Speed: {result['speed_means']} (from `{result['speed_source']}`). API calls: "
              f"{result['api_calls_means']}. Lines: {result['adapter_lines_means']}. Licence and maintainer: the "
              "installed package's metadata, read in the framework's own environment. Status: the adapter's "
              "declaration, with its evidence.", "",
              "**What it shows.** " + _frameworks_verdict(result["rows"]), ""]
    lines += [f"![frameworks]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _frameworks_verdict(rows) -> str:
    timed = sorted((r for r in rows if r["speed_ratio"] is not None), key=lambda r: r["speed_ratio"])
    short = sorted((r for r in rows if r["adapter_lines"]), key=lambda r: r["adapter_lines"])
    retired = [r["framework"] for r in rows if (r["status"] or "").startswith(("retired", "unmaintained"))]
    parts = []
    if timed:
        parts.append(f"Fastest here: {', '.join(r['framework'] for r in timed[:3])}.")
    if short:
        parts.append(f"Shortest adapters: {', '.join(r['framework'] for r in short[:3])}.")
    parts.append(f"Retired or unmaintained: {', '.join(retired) or 'none'}; a licence alone does not keep a framework "
                 "alive, which is what 'truly open' has to weigh besides it. No framework leads on every criterion "
                 "unless the lists above share a name.")
    return " ".join(parts)


MARKDOWN = {"search": _md_search, "scale": _md_scale, "batchnorm": _md_batchnorm, "test-time": _md_test_time,
            "frameworks": _md_frameworks}
