"""The NumPy reference against finite differences and against the independent implementation."""
import numpy as np
import pytest

from bnbench.reference import BatchError, ReferenceModel, Spec, initial_parameters
from bnbench.reference import model as reference
from bnbench.reference.data import batch_stack, synthetic

from . import independent


def _problem(hidden, m, *, l2=0.0, seed=0, n_features=5, n_classes=4, **fields):
    spec = Spec(n_features=n_features, hidden=hidden, n_classes=n_classes, dtype="float64", l2=l2, seed=seed, **fields)
    data = synthetic(max(4 * m, 64), n_features, n_classes, seed=seed + 1, dtype="float64")
    X, y = batch_stack(data, m, 3, seed=seed)
    return spec, initial_parameters(spec), X, y


@pytest.mark.parametrize("hidden, m, l2", [((6,), 8, 0.0), ((7, 5), 16, 0.3), ((4, 6, 3), 3, 0.0), ((5, 5, 5), 32, 1.0)])
def test_gradients_match_finite_differences(hidden, m, l2):
    """Central differences in float64; every parameter's gradient to relative error < 1e-6.

    (Not m = 2: there batch norm maps each unit to about +-1 whatever W is, W's gradients are
    ~epsilon-sized and finite differences measure only their own rounding; the complex-step
    comparison in test_cli covers m = 2.)"""
    spec, params, X, y = _problem(hidden, m, l2=l2)
    X, y = X[0], y[0]
    grads = reference.gradients(spec, params, X, y).grads
    h = 1e-6
    for name, grad in grads.items():
        numeric = np.zeros_like(grad)
        for index in np.ndindex(grad.shape):
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name][index] += h
            minus[name][index] -= h
            loss_plus = reference.gradients(spec, plus, X, y).loss
            loss_minus = reference.gradients(spec, minus, X, y).loss
            numeric[index] = (loss_plus - loss_minus) / (2 * h)
        error = np.linalg.norm(grad - numeric) / max(np.linalg.norm(numeric), 1e-12)
        assert error < 1e-6, f"{name}: relative error {error:.2e} against finite differences"


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("running_var", ["biased", "unbiased"])
def test_reference_matches_independent_implementation(optimizer, running_var):
    spec, params, X, y = _problem((6, 4), 8, l2=0.1, optimizer=optimizer, running_var=running_var, learning_rate=0.05)
    from bnbench.equivalence.trace import run

    actual = run(ReferenceModel(spec, params), X, y)
    expected = independent.trace(independent.full_spec(**spec.to_dict()), params, X, y)
    independent.assert_trace_matches(actual, expected, 1e-12)


def test_running_statistics_conventions_by_hand():
    spec = Spec(n_features=1, hidden=(1,), n_classes=2, dtype="float64", bn_momentum=0.75)
    params = initial_parameters(spec)
    params["W1"][:] = 1.0
    X = np.array([[1.0], [2.0], [3.0], [6.0]])
    y = np.array([0, 1, 0, 1])
    biased = ReferenceModel(spec, params)
    biased.train_step(X, y)
    # mean 3, biased variance 3.5, unbiased 14/3
    assert biased.state()["running_mean1"][0] == pytest.approx(0.75 * 0 + 0.25 * 3)
    assert biased.state()["running_var1"][0] == pytest.approx(0.75 * 1 + 0.25 * 3.5)
    unbiased = ReferenceModel(spec.replace(running_var="unbiased"), params)
    unbiased.train_step(X, y)
    assert unbiased.state()["running_var1"][0] == pytest.approx(0.75 * 1 + 0.25 * 14 / 3)


def test_optimizers_by_hand():
    """One parameter, two steps, the SPEC.md formulas evaluated by hand."""
    g1, g2, lr, b1, b2, eps = 0.5, -0.25, 0.1, 0.9, 0.999, 1e-8
    spec = Spec(n_features=1, hidden=(1,), n_classes=2, dtype="float64", learning_rate=lr, optimizer="adam")
    opt = reference.Optimizer(spec, ("w",), {"w": ()})
    params = {"w": np.array(1.0)}
    opt.apply(params, {"w": np.array(g1)})
    # first Adam step: v_hat = g, s_hat = g^2, so the step is lr * g / (|g| + eps)
    assert params["w"] == pytest.approx(1.0 - lr * g1 / (abs(g1) + eps), rel=1e-12)
    opt.apply(params, {"w": np.array(g2)})
    v = b1 * (1 - b1) * g1 + (1 - b1) * g2
    s = b2 * (1 - b2) * g1 ** 2 + (1 - b2) * g2 ** 2
    step2 = lr * (v / (1 - b1 ** 2)) / (np.sqrt(s / (1 - b2 ** 2)) + eps)
    assert params["w"] == pytest.approx(1.0 - lr * g1 / (abs(g1) + eps) - step2, rel=1e-12)

    momentum = reference.Optimizer(spec.replace(optimizer="momentum"), ("w",), {"w": ()})
    params = {"w": np.array(1.0)}
    momentum.apply(params, {"w": np.array(g1)})
    assert params["w"] == pytest.approx(1.0 - lr * (1 - b1) * g1)      # v starts at 0, not at g
    sgd = reference.Optimizer(spec.replace(optimizer="sgd"), ("w",), {"w": ()})
    params = {"w": np.array(1.0)}
    sgd.apply(params, {"w": np.array(g1)})
    assert params["w"] == pytest.approx(1.0 - lr * g1)


def test_inference_uses_running_statistics_and_changes_nothing():
    spec, params, X, y = _problem((6, 4), 8)
    model = ReferenceModel(spec, params)
    for k in range(3):
        model.train_step(X[k], y[k])
    before = model.state()
    probs = model.predict_proba(X[0][:1])          # inference accepts a single example
    assert probs.shape == (1, spec.n_classes) and np.isclose(probs.sum(), 1.0)
    after = model.state()
    assert all(np.array_equal(before[n], after[n]) for n in before)
    # with running stats equal to the batch's own statistics, inference = training-mode forward
    spec0, params0, X0, y0 = _problem((6,), 16)
    stats = reference.forward(spec0, params0, X0[0], training=True)
    params0 = dict(params0, running_mean1=stats.batch_means[0], running_var1=stats.batch_vars[0])
    np.testing.assert_allclose(reference.forward(spec0, params0, X0[0], training=False).probs, stats.probs, rtol=1e-12)


def test_gradients_call_changes_nothing():
    spec, params, X, y = _problem((6,), 8, optimizer="adam")
    model = ReferenceModel(spec, params)
    model.gradients(X[0], y[0])
    assert all(np.array_equal(model.state()[n], params[n]) for n in params)
    assert model.optimizer.t == 0


def test_float32_stays_float32():
    spec = Spec(n_features=5, hidden=(4,), n_classes=3, optimizer="adam")
    data = synthetic(32, 5, 3, dtype="float32")
    model = ReferenceModel(spec, initial_parameters(spec))
    model.train_step(data.X[:8], data.y[:8])
    assert all(a.dtype == np.float32 for a in model.state().values())
    assert model.predict_proba(data.X).dtype == np.float32


@pytest.mark.parametrize("X, y, message", [
    (np.zeros((1, 5)), np.array([0]), "m >= 2"),
    (np.zeros((4, 6)), np.array([0, 1, 2, 0]), r"shape \(4, 6\)"),
    (np.zeros((4, 5)), np.array([0, 1, 2]), r"y has shape \(3,\)"),
    (np.zeros((4, 5)), np.array([0, 1, 3, 0]), "label 3 outside"),
    (np.zeros((4, 5)), np.array([0.0, 1.0, 2.0, 0.0]), "integer class labels"),
    (np.zeros((4, 5), dtype=np.int64), np.array([0, 1, 2, 0]), "floating point"),
    (np.full((4, 5), np.inf), np.array([0, 1, 2, 0]), "non-finite"),
])
def test_bad_batches_are_rejected(X, y, message):
    spec = Spec(n_features=5, hidden=(4,), n_classes=3)
    with pytest.raises(BatchError, match=message):
        ReferenceModel(spec, initial_parameters(spec)).train_step(X, y)
