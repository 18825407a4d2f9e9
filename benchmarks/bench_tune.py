"""Search throughput: models trained per second, panda (one after another, through the adapter)
against caviar (all at once, vectorised), on one fixed trial set.

The trial set: 16 draws of bnbench tune's default space (learning rate on a log scale, beta1 and
the batch-norm momentum through 1 - beta on a log scale) for one network shape (64 -> [64, 64] ->
10, so that caviar can put all 16 in one program), seed 0; each model trains 2 epochs on the
digits training split, batch 64, and is scored on the validation split. The clock covers
everything a search pays for: building each model, compiling, training and scoring.
"""
import time

from bnbench.adapters import names
from bnbench.frameworks import get

from .common import ENV_FRAMEWORKS, grid, threads
from bnbench import tune
from bnbench.reference.data import load_digits

N_MODELS = 16
EPOCHS = 2
SEED = 0


def trial_set():
    import optuna


    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {field: tune.DEFAULT_SPACE[field] for field in ("learning_rate", "beta1", "bn_momentum")}
    settings = tune.Settings(framework="numpy", trials=N_MODELS, strategy="random", style="panda", study="bench",
                             storage=None, seed=SEED, space=space)
    study = optuna.create_study(direction="maximize")
    return [tune.spec_for(dict(tune._ask(study, settings, i)[1], hidden_units=64, n_layers=2), seed=SEED)
            for i in range(N_MODELS)]


class TuneThroughput:
    params = [names(), ["panda", "caviar"]]
    param_names = ["framework", "style"]
    timeout = 1200
    number = 1
    repeat = 1
    rounds = 1

    def setup(self, framework, style):
        import os

        group = os.environ.get("BNBENCH_ENV")
        if group is not None and framework not in ENV_FRAMEWORKS.get(group, {group}):
            raise NotImplementedError(f"{framework} is benchmarked in its own environment, not in {group!r}")

        caviar = tune.caviar_frameworks()
        if grid() == "quick" and framework not in caviar:
            raise NotImplementedError(f"quick grid: search throughput of the frameworks that train many models at once "
                                      f"({', '.join(caviar)}) only")
        if style == "caviar" and framework not in caviar:
            raise NotImplementedError(f"caviar (many models in one vectorised program) is written for "
                                      f"{', '.join(caviar)} only")
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise NotImplementedError("optuna is not installed in this environment (bnbench[tune])") from None
        problem = get(framework).import_error()
        if problem:
            raise NotImplementedError(problem)
        get(framework).set_threads(threads())

        self.data = load_digits("float32")
        self.specs = trial_set()

    def track_models_per_second(self, framework, style):
        start = time.perf_counter()
        if style == "panda":
            for spec in self.specs:
                tune.train_panda(framework, spec, self.data, EPOCHS, SEED)
        else:
            tune.train_caviar(framework, self.specs, self.data, EPOCHS, SEED)
        return N_MODELS / (time.perf_counter() - start)

    track_models_per_second.unit = "models/s"
