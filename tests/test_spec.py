import json
import math

import numpy as np
import pytest

from bnbench.reference import Spec, SpecError, initial_parameters, parameter_shapes, state_names, trainable_names
from bnbench.reference.spec import ParameterError, check_parameters

from . import independent

BASE = dict(n_features=4, hidden=[3, 2], n_classes=3)


def test_defaults_are_those_of_spec_md():
    spec = Spec(**BASE)
    assert (spec.bn_epsilon, spec.bn_momentum, spec.running_var, spec.optimizer) == (1e-5, 0.9, "biased", "sgd")
    assert (spec.learning_rate, spec.beta1, spec.beta2, spec.adam_epsilon) == (0.01, 0.9, 0.999, 1e-8)
    assert (spec.l2, spec.dtype, spec.seed) == (0.0, "float32", 0)
    assert spec.hidden == (3, 2)


def test_spec_is_frozen():
    with pytest.raises(Exception):
        Spec(**BASE).learning_rate = 1.0


@pytest.mark.parametrize("field, value", [
    ("n_features", 0), ("n_features", 2.5), ("n_features", True), ("hidden", []), ("hidden", [3, 0]),
    ("hidden", "32"), ("n_classes", 1), ("bn_epsilon", 0.0), ("bn_epsilon", -1e-5), ("bn_momentum", 1.0),
    ("bn_momentum", -0.1), ("running_var", "sample"), ("optimizer", "rmsprop"), ("learning_rate", 0),
    ("learning_rate", float("nan")), ("beta1", 1.0), ("beta2", -0.5), ("adam_epsilon", 0.0), ("l2", -1.0),
    ("l2", float("inf")), ("dtype", "float16"), ("seed", -1), ("seed", "0"),
])
def test_bad_values_name_field_and_value(field, value):
    fields = dict(BASE, **{field: value})
    with pytest.raises(SpecError) as info:
        Spec(**fields)
    message = str(info.value)
    assert field.split("[")[0] in message
    if field == "hidden" and isinstance(value, list) and value:
        assert "hidden[1]" in message and "0" in message
    else:
        assert repr(value) in message or str(value) in message


def test_boundaries_accepted():
    Spec(**dict(BASE, bn_momentum=0.0, beta1=0.0, beta2=0.0, l2=0, learning_rate=1))


def test_json_round_trip(tmp_path):
    spec = Spec(**dict(BASE, optimizer="adam", dtype="float64", l2=0.5, seed=7))
    path = tmp_path / "spec.json"
    spec.save(path)
    assert Spec.load(path) == spec
    assert json.loads(path.read_text())["hidden"] == [3, 2]


def test_json_rejects_unknown_and_missing_keys():
    with pytest.raises(SpecError, match="unknown spec field.*'momentum'"):
        Spec.from_dict(dict(BASE, momentum=0.9))
    with pytest.raises(SpecError, match="'n_classes'"):
        Spec.from_dict({"n_features": 4, "hidden": [3]})
    with pytest.raises(SpecError, match="not valid JSON"):
        Spec.from_json("{n_features: 4")
    with pytest.raises(SpecError, match="JSON object"):
        Spec.from_json("[1, 2]")


def test_parameter_names_and_shapes():
    spec = Spec(**BASE)
    assert trainable_names(spec) == ("W1", "gamma1", "beta1", "W2", "gamma2", "beta2", "W_out", "b_out")
    assert state_names(spec)[-4:] == ("running_mean1", "running_var1", "running_mean2", "running_var2")
    shapes = parameter_shapes(spec)
    assert shapes["W1"] == (4, 3) and shapes["W2"] == (3, 2) and shapes["W_out"] == (2, 3) and shapes["b_out"] == (3,)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_initial_parameters_follow_spec_md(dtype):
    spec = Spec(**dict(BASE, dtype=dtype, seed=11))
    params = initial_parameters(spec)
    expected = independent.initial_parameters(independent.full_spec(**dict(BASE, seed=11)))
    assert set(params) == set(expected)
    for name, array in params.items():
        assert array.dtype == np.dtype(dtype), name
        np.testing.assert_array_equal(array, expected[name].astype(dtype), err_msg=name)
    # drawn W1, W2, W_out in that order from one generator
    rng = np.random.default_rng(11)
    np.testing.assert_array_equal(params["W1"], rng.normal(0, math.sqrt(2 / 4), (4, 3)).astype(dtype))


def test_initial_parameters_are_deterministic_and_seeded():
    a = initial_parameters(Spec(**BASE))
    b = initial_parameters(Spec(**BASE))
    c = initial_parameters(Spec(**dict(BASE, seed=1)))
    assert all(np.array_equal(a[n], b[n]) for n in a)
    assert not np.array_equal(a["W1"], c["W1"])


def test_he_scale():
    spec = Spec(n_features=400, hidden=(300,), n_classes=10, dtype="float64")
    W1 = initial_parameters(spec)["W1"]
    assert abs(W1.std() - math.sqrt(2 / 400)) < 0.01 * math.sqrt(2 / 400) * 3


def test_check_parameters_errors():
    spec = Spec(**BASE)
    params = initial_parameters(spec)
    with pytest.raises(ParameterError, match="missing array.*W2"):
        check_parameters(spec, {k: v for k, v in params.items() if k != "W2"})
    with pytest.raises(ParameterError, match="unknown array name.*W9"):
        check_parameters(spec, dict(params, W9=params["W1"]))
    with pytest.raises(ParameterError, match=r"W1 has shape \(3, 4\)"):
        check_parameters(spec, dict(params, W1=params["W1"].T))
    with pytest.raises(ParameterError, match="gamma1 has dtype int64"):
        check_parameters(spec, dict(params, gamma1=np.ones(3, dtype=np.int64)))
    bad = params["W_out"].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ParameterError, match="W_out holds 1 non-finite"):
        check_parameters(spec, dict(params, W_out=bad))
    cast = check_parameters(spec, {k: v.astype(np.float64) for k, v in params.items()})
    assert all(v.dtype == np.float32 for v in cast.values())
