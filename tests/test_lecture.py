"""The lecture studies (bnbench study): softmax with two classes is logistic regression, the
studies' published JSON holds the keys their issue fixed, and a study runs end to end."""
import json

import numpy as np
import pytest

from bnbench import lecture
from bnbench.cli import main
from bnbench.lecture import frameworks as frameworks_study
from bnbench.reference import Spec, initial_parameters
from bnbench.reference.model import forward, gradients


@pytest.mark.parametrize("batch_norm", [True, False])
def test_softmax_with_two_classes_is_logistic_regression(batch_norm):
    """The spec's output layer with C = 2 on the last hidden activations A: softmax's probability
    of class 1 is sigmoid(A w + c) with w = W_out[:, 1] - W_out[:, 0], c = b_out[1] - b_out[0]; its
    loss is the logistic loss, and its gradients are the logistic ones, +- for the two columns."""
    spec = Spec(n_features=5, hidden=(7, 6), n_classes=2, dtype="float64", seed=3, batch_norm=batch_norm)
    params = initial_parameters(spec)
    rng = np.random.default_rng(1)
    params["W_out"] = rng.normal(size=params["W_out"].shape)
    params["b_out"] = rng.normal(size=2)
    X, y = rng.normal(size=(32, 5)), rng.integers(0, 2, 32)
    result = forward(spec, params, X, training=True)
    A = result.A_last
    z = A @ (params["W_out"][:, 1] - params["W_out"][:, 0]) + (params["b_out"][1] - params["b_out"][0])
    p = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(result.probs[:, 1], p, rtol=1e-13)
    np.testing.assert_allclose(result.probs[:, 0], 1 - p, rtol=1e-12)
    logistic_loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    grads = gradients(spec, params, X, y)
    assert grads.loss == pytest.approx(logistic_loss, rel=1e-13)
    grad_w = A.T @ (p - y) / len(y)
    np.testing.assert_allclose(grads.grads["W_out"][:, 1], grad_w, rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(grads.grads["W_out"][:, 0], -grad_w, rtol=1e-11, atol=1e-15)
    assert grads.grads["b_out"][1] == pytest.approx(np.mean(p - y), rel=1e-11)
    assert grads.grads["b_out"][0] == pytest.approx(-np.mean(p - y), rel=1e-11)


def test_a_study_runs_and_writes_its_files(tmp_path):
    assert main(["study", "test-time", "--results", str(tmp_path), "--quiet", "--seed", "1"]) == 0
    folder = tmp_path / "lecture"
    result = json.loads((folder / "test-time.json").read_text())
    assert result["study"] == "test-time" and all(key in result for key in lecture.KEYS["test-time"])
    assert result["seed"] == 1 and len(result["ewa_test_accuracy"]["10"]) == len(result["bn_momentum"])
    # 10 epochs: the population statistics classify about as well as short averaging windows
    assert abs(result["ewa_test_accuracy"]["10"][1] - result["population_test_accuracy"]["10"][1]) < 0.03
    assert (folder / "test-time.md").read_text().startswith("# Test-time statistics")
    assert (folder / "test-time.png").stat().st_size > 5000


def test_a_study_without_the_keys_its_issue_fixed_is_refused_and_writes_nothing(tmp_path, monkeypatch):
    from bnbench.lecture import test_time

    monkeypatch.setattr(test_time, "compute", lambda data, seed, bar: {"bn_momentum": [0.9]})
    with pytest.raises(lecture.StudyError, match="lacks 'ewa_test_accuracy', 'population_test_accuracy'"):
        lecture.run("test-time", results=str(tmp_path), show_progress=False)
    assert not (tmp_path / "lecture").exists()


def test_an_unknown_study_is_one_line(tmp_path, capsys):
    assert main(["study", "grid", "--results", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "study 'grid' is unknown; studies: search, scale, batchnorm, test-time, frameworks" in err
    assert err.count("\n") == 1 and not (tmp_path / "lecture").exists()


def test_api_calls_are_counted_through_imports_and_aliases():
    source = (
        "import torch\nimport torch.nn.functional as F\nfrom torch import nn\n"
        "def _t():\n    import torch\n    return torch\n"
        "class A:\n    def f(self):\n        t = _t()\n        self.torch = torch\n"
        "        t.zeros(1); self.torch.ones(2); F.relu(x); nn.Linear(2, 3); F.relu(y); numpy.zeros(3)\n")
    count, names = frameworks_study.api_calls(source, ["torch"])
    assert names == ["torch.nn.Linear", "torch.nn.functional.relu", "torch.ones", "torch.zeros"] and count == 4
