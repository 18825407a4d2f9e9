"""The numerics fingerprint (EquivalenceReport.fingerprint): what a framework trains to after the
check's steps, against the reference, in units of the dtype's epsilon; it travels with a timed row."""
import numpy as np

from bnbench.adapters.numpy_adapter import NumpyAdapter
from bnbench.equivalence.trace import check_equivalence
from bnbench.timing import participant as participants
from tests.test_worker import problem


class _Nudged(NumpyAdapter):
    """NumPy's adapter whose learning rate is off by a part in a million: it trains to other numbers."""

    def __init__(self, spec, params, **kwargs):
        super().__init__(spec.replace(learning_rate=spec.learning_rate * (1 + 1e-6)), params, **kwargs)


def test_a_fingerprint_names_the_loss_and_every_parameter_after_the_last_step_in_epsilons():
    spec, params, X, y = problem("float64")
    print_ = check_equivalence(NumpyAdapter(spec, params), spec, params, X, y).fingerprint()
    assert "loss" in print_ and {"param/W1", "param/W2", "param/W_out", "param/b_out"} <= set(print_)
    assert any(key.startswith("param/running_") for key in print_)
    assert all(0 <= value < 1e3 for value in print_.values())          # NumPy's own: within rounding of the truth
    nudged = check_equivalence(_Nudged(spec, params), spec, params, X, y).fingerprint()
    moved = {key: nudged[key] for key in nudged if nudged[key] > 10 * max(print_[key], 1.0)}
    assert "param/W1" in moved and np.isfinite(list(moved.values())).all()


def test_a_participant_carries_the_fingerprint_of_its_check():
    spec, params, X, y = problem("float64")
    _, _, print_ = participants.build_verified(NumpyAdapter, spec, params, X, y, mode="eager", device="cpu")
    assert print_ == check_equivalence(NumpyAdapter(spec, params), spec, params, X, y).fingerprint()
