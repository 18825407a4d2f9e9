"""Many models trained at once (the caviar style): each of them must end exactly where the NumPy
reference ends training it alone, in float64, for every optimizer and running-variance rule."""
import numpy as np
import pytest

from bnbench.adapters.contract import Unsupported
from bnbench.reference import Spec, initial_parameters
from bnbench.reference.model import ReferenceModel

from .conftest import require_adapter

FRAMEWORKS = ["numpy", "jax"]
# learning rate, beta1, beta2, batch-norm momentum: one row per model
HYPER = [(0.05, 0.9, 0.999, 0.9), (0.3, 0.5, 0.99, 0.99), (0.001, 0.99, 0.9, 0.5)]


def specs_for(optimizer: str, running_var: str, dtype: str = "float64"):
    return [Spec(n_features=10, hidden=(12, 8), n_classes=4, dtype=dtype, optimizer=optimizer, running_var=running_var,
                 l2=0.01, learning_rate=lr, beta1=b1, beta2=b2, bn_momentum=bm, seed=seed)
            for seed, (lr, b1, b2, bm) in enumerate(HYPER)]


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("running_var", ["biased", "unbiased"])
def test_many_models_match_the_reference_one_by_one(framework, optimizer, running_var):
    adapter_class = require_adapter(framework)
    specs = specs_for(optimizer, running_var)
    params = [initial_parameters(spec) for spec in specs]
    many = adapter_class.many_models(specs, params)
    alone = [ReferenceModel(spec, p) for spec, p in zip(specs, params)]
    rng = np.random.default_rng(0)
    for _ in range(4):
        X, y = rng.standard_normal((16, 10)), rng.integers(0, 4, 16)
        losses = many.train_step(X, y)
        expected = [model.train_step(X, y) for model in alone]
        np.testing.assert_allclose(losses, expected, rtol=1e-12)
    probs = many.predict_proba(X)
    assert probs.shape == (len(specs), 16, 4)
    for model_probs, model in zip(probs, alone):
        np.testing.assert_allclose(model_probs, model.predict_proba(X), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_models_of_different_shapes_are_refused(framework):
    adapter_class = require_adapter(framework)
    specs = specs_for("sgd", "biased")
    specs[1] = specs[1].replace(hidden=(12, 9))
    with pytest.raises(Unsupported, match=r"spec 1 has hidden=\[12, 9\]"):
        adapter_class.many_models(specs, [initial_parameters(spec) for spec in specs])


def test_a_framework_without_it_says_so():
    adapter_class = require_adapter("numpy")
    from bnbench.timing.frameworks import get

    others = [name for name in ("pytensor", "torch") if not get(name).trains_many]
    assert others, "every framework trains many models: pick another for this test"
    with pytest.raises(Unsupported, match="does not train many models"):
        get(others[0]).many_models(specs_for("sgd", "biased"), [])
    assert adapter_class.trains_many
