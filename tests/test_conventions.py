"""`bnbench conventions`: the analysis recovers known conventions from synthetic layers, and the
real frameworks' rows say what docs/FRAMEWORKS.md measured by hand."""
import json

import numpy as np
import pytest

from bnbench.cli import main
from bnbench.equivalence import conventions

from .conftest import require_adapter, selected_frameworks


def fake_layer(new_weight, epsilon, normalise_unbiased=False, running_unbiased=False):
    def batch_norm(X):
        X = X.astype(np.float64)
        m = len(X)
        mu, var = X.mean(axis=0), X.var(axis=0)
        norm_var = var * m / (m - 1) if normalise_unbiased else var
        fed = var * m / (m - 1) if running_unbiased else var
        before_mean, before_var = np.full(X.shape[1], 0.5), np.full(X.shape[1], 2.0)
        return ((X - mu) / np.sqrt(norm_var + epsilon), before_mean, before_var,
                (1 - new_weight) * before_mean + new_weight * mu, (1 - new_weight) * before_var + new_weight * fed)
    return batch_norm


@pytest.mark.parametrize("declared, new_weight, which", [(0.1, 0.1, "NEW value"), (0.9, 0.1, "OLD value"), (0.99, 0.01, "OLD value")])
@pytest.mark.parametrize("epsilon", [1e-5, 1e-3])
@pytest.mark.parametrize("normalise_unbiased, running_unbiased", [(False, False), (False, True), (True, True)])
def test_analysis_recovers_known_conventions(declared, new_weight, which, epsilon, normalise_unbiased, running_unbiased):
    row = conventions.analyse_batch_norm(fake_layer(new_weight, epsilon, normalise_unbiased, running_unbiased), declared)
    assert row["momentum_weights"] == which
    assert row["epsilon"] == pytest.approx(epsilon, rel=0.02)
    assert row["normalising_variance"] == ("unbiased (m-1)" if normalise_unbiased else "biased")
    assert row["running_variance"] == ("unbiased (m-1)" if running_unbiased else "biased")


def test_momentum_forms():
    def classic(lr, beta, g, steps):            # v = beta v + g; theta -= lr v
        theta, v, out = 0.0, 0.0, []
        for _ in range(steps):
            v = beta * v + g
            theta -= lr * v
            out.append(theta)
        return out

    def ewa(lr, beta, g, steps):
        theta, v, out = 0.0, 0.0, []
        for _ in range(steps):
            v = beta * v + (1 - beta) * g
            theta -= lr * v
            out.append(theta)
        return out

    assert conventions.analyse_momentum(classic) == "v = beta*v + g (no 1-beta)"
    assert conventions.analyse_momentum(ewa) == "v = beta*v + (1-beta)*g"
    assert conventions.analyse_momentum(lambda lr, beta, g, steps: [-1.0, -5.0]).startswith("other")


# What docs/FRAMEWORKS.md measured by hand (2026-11): momentum, what it weights, epsilon, running var.
EXPECTED = {
    ("torch", "torch.nn.BatchNorm1d"): (0.1, "NEW value", 1e-5, "biased", "unbiased (m-1)", "v = beta*v + g (no 1-beta)"),
    ("mxnet", "gluon.nn.BatchNorm"): (0.9, "OLD value", 1e-5, "biased", "biased", "v = beta*v + g (no 1-beta)"),
    ("mxnet", "mx.nd.BatchNorm (raw op)"): (0.9, "OLD value", 1e-3, "biased", "biased", "-"),
    ("spec (reference)", "reference/model.py, Spec defaults"): (0.9, "OLD value", 1e-5, "biased", "biased", "v = beta*v + (1-beta)*g"),
    ("chainer", "chainer.links.BatchNormalization"): (0.9, "OLD value", 2e-5, "biased", "unbiased (m-1)", "v = beta*v + g (no 1-beta)"),
    ("paddle", "paddle.nn.BatchNorm1D"): (0.9, "OLD value", 1e-5, "biased", "biased", "v = beta*v + g (no 1-beta)"),
    ("tensorflow", "tf.compat.v1.nn.fused_batch_norm"): (1.0, "NEW value", 1e-3, "biased", "unbiased (m-1)", "v = beta*v + g (no 1-beta)"),
}
for backend in ("keras-jax", "keras-tensorflow", "keras-torch"):
    EXPECTED[(backend, "keras.layers.BatchNormalization")] = (0.99, "OLD value", 1e-3, "biased", "biased", "v = beta*v + g (no 1-beta)")

PROBED = ["numpy"] + [name for name in selected_frameworks()[0] if name != "numpy"]


@pytest.mark.slow
@pytest.mark.parametrize("framework", PROBED)
def test_conventions_command_matches_hand_measurements(tmp_path, capsys, framework):
    require_adapter(framework)
    assert main(["conventions", "--framework", framework, "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    data = json.loads((tmp_path / "conventions.json").read_text())
    if not data["rows"]:     # an adapter without a probe says so
        assert len(data["not_probed"]) == 1 and "no conventions probe" in data["not_probed"][0], data
        return
    assert not data["not_probed"], data
    assert (tmp_path / "conventions.csv").read_text().splitlines()[0].startswith("framework,version,layer")
    for row in data["rows"]:
        assert row["layer"] in printed
        key = (row["framework"], row["layer"])
        if key not in EXPECTED:
            continue
        momentum, which, epsilon, normalising, running, form = EXPECTED[key]
        assert (row["declared_momentum"], row["momentum_weights"], row["normalising_variance"], row["running_variance"],
                row["momentum_form"]) == (momentum, which, normalising, running, form), row
        assert row["epsilon"] == pytest.approx(epsilon, rel=0.01)
    if framework == "mxnet":
        assert {row["layer"]: row["gamma"] for row in data["rows"]}["mx.nd.BatchNorm (raw op)"].startswith("IGNORED")


def test_conventions_bad_flags(tmp_path, capsys):
    assert main(["conventions", "--framework", "caffe3"]) == 1
    assert "unknown framework(s) caffe3" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["conventions", "--framework", "numpy", "--out", str(tmp_path / "file")]) == 1
    assert "is not a folder" in capsys.readouterr().err
