"""Every selected adapter x mode x device x dtype against the NumPy reference.

Tolerances: bnbench.equivalence.tolerances.TOLERANCES (norm-wise relative error per tensor; justified there).
"""
import numpy as np
import pytest

from bnbench.adapters.numpy_adapter import NumpyAdapter
from bnbench.equivalence.tolerances import EquivalenceError
from bnbench.equivalence.trace import check_equivalence
from bnbench.reference import ReferenceModel, Spec, initial_parameters
from bnbench.reference import model as reference
from bnbench.reference.battery import LABELS, case, problem
from bnbench.reference.data import batch_stack, synthetic

from .conftest import DTYPES, adapter_cases, require_adapter, selected_frameworks

CASES = adapter_cases()
CASE_IDS = [f"{name}-{mode}-{device}" for name, mode, device in CASES]


def run_case(framework, mode, device, spec, params, X, y):
    adapter_class = require_adapter(framework, device)
    reason = adapter_class.unsupported(spec, mode, device)
    if reason:
        pytest.skip(f"unsupported by {framework} ({mode}): {reason}")
    report = check_equivalence(adapter_class(spec, params, mode=mode, device=device), spec, params, X, y)
    departure = adapter_class.known_departure(spec, mode, device, X.shape[1])
    if departure:
        # measured and declared: the check must still fail here (if it passes, the declaration is stale)
        assert not report.ok, f"{framework} ({mode}) declares a departure that did not happen: {departure}"
        pytest.xfail(f"known departure of {framework} ({mode}): {departure}")
    report.raise_if_failed()
    return report


@pytest.mark.parametrize("label", LABELS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("framework, mode, device", CASES, ids=CASE_IDS)
def test_training_matches_reference(framework, mode, device, dtype, label):
    """The battery `bnbench verify` runs, check by check: loss, probabilities, every gradient;
    every parameter and running statistic after each step; inference-mode probabilities at the end."""
    _, spec, params, X, y = case(dtype, label)
    run_case(framework, mode, device, spec, params, X, y)


# One hidden layer at the smallest batch and a mid-sized one, beside the battery's two layers at
# m=16 and three at m=256 (test_training_matches_reference). Three layers at m=512 repeated the
# battery's three at m=256 and cost torch compiled 33 s of a cold machine's test time.
@pytest.mark.parametrize("hidden, m", [((7,), 2), ((16,), 64)], ids=["1layer-m2", "1layer-m64"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("framework, mode, device", CASES, ids=CASE_IDS)
def test_shapes_and_batch_sizes(framework, mode, device, dtype, hidden, m):
    if m == 2 and dtype == "float32":
        # With two examples batch norm maps every unit to about +-1 whatever W1 is: W1's gradient
        # is epsilon-sized and float32 cannot resolve it (the float32 reference itself is 2.7e-4
        # away from the float64 truth there). float64 checks m = 2 at 1e-10.
        pytest.skip("m=2 in float32: W1's gradient is below float32 resolution (checked in float64)")
    spec, params, X, y = problem(dtype, hidden=hidden, m=m, steps=3, optimizer="momentum", running_var="unbiased")
    if require_adapter(framework, device).unsupported(spec, mode, device) and spec.running_var == "unbiased":
        # shapes are this test's subject: a framework without the unbiased running variance is
        # checked with the biased one (test_training_matches_reference reports the skip)
        spec, params, X, y = problem(dtype, hidden=hidden, m=m, steps=3, optimizer="momentum", running_var="biased")
    run_case(framework, mode, device, spec, params, X, y)


@pytest.mark.parametrize("framework, mode, device", CASES, ids=CASE_IDS)
def test_rejects_batch_of_one(framework, mode, device):
    adapter_class = require_adapter(framework, device)
    candidates = [problem(dtype, running_var=rv) for dtype in ("float64", "float32") for rv in ("biased", "unbiased")]
    spec, params, X, y = next(c for c in candidates if not adapter_class.unsupported(c[0], mode, device))
    adapter = adapter_class(spec, params, mode=mode, device=device)
    with pytest.raises(ValueError, match="m >= 2"):
        adapter.train_step(X[0][:1], y[0][:1])
    assert adapter.predict_proba(X[0][:1]).shape == (1, spec.n_classes)   # inference takes one


# ---------------------------------------------------------------- the check itself can fail
class ReferenceForm(NumpyAdapter):
    """NumPy's adapter in its reference form (the reference's own step, ``self.model``), which
    the deliberately wrong adapters below change in one place each."""

    stacked = None

    def _build(self, params):
        self.model = ReferenceModel(self.spec, params)


class WrongRunningVariance(ReferenceForm):
    """Updates running_var with m/(m-1) although the spec says 'biased' (torch's default)."""

    def _build(self, params):
        self.model = ReferenceModel(self.spec.replace(running_var="unbiased"), params)


class WrongGammaGradient(ReferenceForm):
    """Gets the gradient of gamma2 wrong by 0.1%."""

    def _wrong(self, X, y):
        result = reference.gradients(self.spec, self.model.params, *self.model_batch(X, y))
        result.grads["gamma2"] = result.grads["gamma2"] * 1.001
        return result

    def model_batch(self, X, y):
        return reference.check_batch(self.spec, X, y)

    def gradients(self, X, y):
        result = self._wrong(X, y)
        from bnbench.adapters import Gradients

        return Gradients(result.loss, result.probs, result.grads)

    def train_step(self, X, y):
        result = self._wrong(X, y)
        model = self.model
        model.params.update(reference.updated_running_stats(self.spec, model.params, result.batch_means, result.batch_vars, len(y)))
        model.optimizer.apply(model.params, result.grads)
        return result.loss


@pytest.mark.parametrize("dtype, m", [("float64", 512), ("float32", 8)])
def test_missing_bias_correction_is_caught(dtype, m):
    spec, params, X, y = problem(dtype, m=m)
    report = check_equivalence(WrongRunningVariance(spec, params), spec, params, X, y)
    assert not report.ok
    with pytest.raises(EquivalenceError) as info:
        report.raise_if_failed()
    message = str(info.value)
    assert "param/running_var1 at step 1" in message
    assert "first departs from the reference at layer 1" in message
    assert all(c.ok for c in report.comparisons if c.key.startswith("grad/") or c.key.startswith("param/W"))


def test_departing_layer_is_named():
    spec, params, X, y = problem("float64", hidden=(12, 8, 6))
    report = check_equivalence(WrongGammaGradient(spec, params), spec, params, X, y)
    message = report.message()
    assert "grad/gamma2 at the first batch" in message
    assert "first departs from the reference at layer 2 (grad/gamma2" in message
    assert "elements differ" in message and "greatest absolute difference" in message
    assert {c.key for c in report.failures if c.step == 0} == {"grad/gamma2"}




# ---------------------------------------------------------------- ReLU kinks (bnbench.equivalence.tolerances)
def kinked_problem(m=512):
    """A float32 problem with one ReLU input of layer 2 (example 0, unit 0, first batch) placed
    within float32 rounding of 0, through beta2: a correct float32 run may put it on either side."""
    spec, params, X, y = problem("float32", hidden=(32, 24), m=m, steps=2, optimizer="momentum")
    truth_spec = spec.replace(dtype="float64")
    exact = {name: array.astype(np.float64) for name, array in params.items()}
    N = reference.forward(truth_spec, exact, X[0].astype(np.float64), training=True).caches[1].N
    params["beta2"][0] = np.float32(-params["gamma2"][0] * N[0, 0])
    Zt = reference.forward(truth_spec, {k: v.astype(np.float64) for k, v in params.items()},
                           X[0].astype(np.float64), training=True).caches[1].Zt
    assert abs(Zt[0, 0]) < 2e-7 and np.sort(np.abs(Zt).ravel())[1] > 1e-5   # one input at the kink, no other near
    return spec, params, X, y


class OtherSideOfTheKink(ReferenceForm):
    """The reference, except that a layer-2 ReLU input within 1e-6 of 0 passes the gradient when
    it is below 0 and stops it when above: what a float32 implementation rounding to the other
    side does."""

    def _build(self, params):
        def relu_grad(layer, Zt, n_in):
            active = Zt > 0
            return active ^ (np.abs(Zt) < 1e-6) if layer == 2 else active

        self.model = ReferenceModel(self.spec.replace(dtype="float64"), {k: v.astype(np.float64) for k, v in params.items()},
                                    relu_grad=relu_grad)


def test_relu_input_at_the_kink_widens_only_what_it_moves():
    spec, params, X, y = kinked_problem()
    report = check_equivalence(OtherSideOfTheKink(spec, params), spec, params, X, y)
    assert report.kinks >= 1
    widened = {(c.key, c.step) for c in report.widened}
    # the other side moves the gradients of layer 2 and below, far beyond the plain float32 tolerance...
    assert {("grad/beta2", 0), ("grad/W2", 0), ("grad/W1", 0), ("param/beta1", 1)} <= widened
    assert max(c.error for c in report.widened) > 1e-3
    # ...and nothing the ReLU's backward does not reach: loss, probabilities, the output layer's gradients
    assert not widened & {("loss", 0), ("probs", 0), ("grad/W_out", 0), ("grad/b_out", 0), ("eval_probs", 2)}
    assert all(c.tolerance <= 1e-2 for c in report.comparisons)
    report.raise_if_failed()
    # the same adapter on a problem without the kink gets the plain tolerance everywhere, and agrees
    plain = problem("float32", hidden=(32, 24), m=512, steps=2, optimizer="momentum")
    plain_report = check_equivalence(OtherSideOfTheKink(plain[0], plain[1]), *plain)
    assert plain_report.kinks == 0 and not plain_report.widened and plain_report.ok


def test_widening_stops_at_the_cap():
    """With 16 examples one example is 1/16 of every gradient: the other side of the kink moves them
    by ~20%, too much for a check to mean anything; the tolerance stops at 1e-2 and the check fails."""
    spec, params, X, y = kinked_problem(m=16)
    report = check_equivalence(OtherSideOfTheKink(spec, params), spec, params, X, y)
    assert not report.ok
    assert all(c.tolerance <= 1e-2 for c in report.comparisons)
    assert "capped at 1e-02: too close to the kinks to check further" in report.message()


class WrongBetaGradientAtTheKink(ReferenceForm):
    """Gets the gradient of beta2 wrong by 5%, on the kinked problem, where its tolerance is widened."""

    def gradients(self, X, y):
        result = self.model.gradients(X, y)
        grads = dict(result.grads, beta2=result.grads["beta2"] * 1.05)
        from bnbench.adapters import Gradients

        return Gradients(result.loss, result.probs, grads)


def test_widened_tolerance_still_catches_a_wrong_gradient():
    spec, params, X, y = kinked_problem()
    report = check_equivalence(WrongBetaGradientAtTheKink(spec, params), spec, params, X, y)
    failure = {c.key: c for c in report.failures}
    assert "grad/beta2" in failure and failure["grad/beta2"].widened
    assert "tolerance widened from 1e-04" in report.message()


# Only the selected ones: MXNet's environment runs this file with BNBENCH_FRAMEWORKS=numpy,mxnet.
LARGE_KINK_CASES = [(name, "eager") for name in ("numpy", "torch") if name in selected_frameworks()[0]]


@pytest.mark.parametrize("framework, mode", LARGE_KINK_CASES)
def test_large_float32_step_passes_despite_relu_kinks(framework, mode):
    """The benchmark's large size (m=1024, 3 x 1024) in float32: some of the 3 million ReLU inputs
    per step lie within float32 rounding of 0 (torch puts one of them on the other side at step 2:
    1.2e-3 on W1's gradient, measured). The check must accept that, and only that."""
    adapter_class = require_adapter(framework)
    spec = Spec(n_features=1024, hidden=(1024, 1024, 1024), n_classes=10, dtype="float32", optimizer="momentum")
    params = initial_parameters(spec)
    X, y = batch_stack(synthetic(4096, 1024, 10, seed=0, dtype="float32"), 1024, 2, seed=0)
    report = check_equivalence(adapter_class(spec, params, mode=mode), spec, params, X, y)
    assert report.kinks > 0
    report.raise_if_failed()
    unmoved = [c for c in report.comparisons if not c.widened]
    assert {c.key for c in unmoved} >= {"loss", "probs", "eval_probs", "param/W1", "param/running_var3"}
