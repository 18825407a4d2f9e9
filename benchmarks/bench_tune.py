"""Search throughput: models trained per second, panda (one after another, through the adapter)
against caviar (all at once, vectorised), on one fixed trial set.

The trial set: 32 draws of bnbench tune's default space (learning rate on a log scale, beta1 and
the batch-norm momentum through 1 - beta on a log scale) for one network shape (64 -> [64, 64] ->
10, so that caviar can put all of them in one program), seed 0; each model trains 10 epochs on
the digits training split, batch 64, and is scored on the validation split after each epoch.

Steady state and compilation apart: ``setup`` runs the whole search once for one epoch (what a
compiler compiles, it compiles there) and keeps that time; ``track_models_per_second`` then times
the full search (building each model, training, scoring), and ``track_warmup_seconds`` reports
the warm-up.
"""
import time

from bnbench.adapters import names
from bnbench.reference.data import load_digits
from bnbench.timing.frameworks import get
from bnbench.tuning import settings as tune_settings
from bnbench.tuning import slots, trial
from bnbench.tuning import space as tune_space

from .common import grid, in_this_environment, threads

N_MODELS = 32
EPOCHS = 10
SEED = 0


def trial_set():
    import optuna


    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {field: tune_space.DEFAULT_SPACE[field] for field in ("learning_rate", "beta1", "bn_momentum")}
    settings = tune_settings.Settings(framework="numpy", trials=N_MODELS, strategy="random", style="panda", study="bench",
                                      storage=None, seed=SEED, space=space)
    study = optuna.create_study(direction="maximize")
    return [tune_space.spec_for(dict(slots.ask(study, settings, i)[1], hidden_units=64, n_layers=2), seed=SEED)
            for i in range(N_MODELS)]


class TuneThroughput:
    params = [names(), ["panda", "caviar"]]
    param_names = ["framework", "style"]
    timeout = 1200
    number = 1
    repeat = 1
    rounds = 1

    def setup(self, framework, style):
        problem = in_this_environment(framework)
        if problem:
            raise NotImplementedError(problem)
        caviar = trial.caviar_frameworks()
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
        self.warmup_seconds = search(framework, style, self.specs, self.data, 1)

    def track_models_per_second(self, framework, style):
        return N_MODELS / search(framework, style, self.specs, self.data, EPOCHS)

    track_models_per_second.unit = "models/s"

    def track_warmup_seconds(self, framework, style):
        """The one-epoch run before the timed one: compilation, where the framework compiles."""
        return self.warmup_seconds

    track_warmup_seconds.unit = "seconds"


def search(framework: str, style: str, specs, data, epochs: int) -> float:
    """Seconds to train and score every model of the trial set."""
    start = time.perf_counter()
    if style == "panda":
        for spec in specs:
            trial.train_panda(framework, spec, data, epochs, SEED)
    else:
        trial.train_caviar(framework, specs, data, epochs, SEED)
    return time.perf_counter() - start
