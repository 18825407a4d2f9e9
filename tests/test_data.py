import numpy as np
import pytest

from bnbench.reference.data import batch_stack, load_digits, minibatches, synthetic


def test_digits_split_is_fixed_and_standardised():
    data = load_digits()
    sizes = (len(data.train), len(data.validation), len(data.test))
    assert sum(sizes) == 1797 and sizes == (1150, 288, 359)
    assert data.n_features == 64 and data.n_classes == 10
    assert set(np.unique(data.train.y)) == set(range(10))
    mean = data.train.X.mean(axis=0)
    std = data.train.X.std(axis=0)
    assert np.allclose(mean, 0, atol=1e-12)
    assert np.all(np.isclose(std, 1) | np.isclose(std, 0))
    again = load_digits()
    assert np.array_equal(again.test.X, data.test.X) and np.array_equal(again.test.y, data.test.y)
    assert load_digits("float32").train.X.dtype == np.float32


def test_digits_splits_are_disjoint():
    data = load_digits()
    rows = lambda split: {row.tobytes() for row in split.X}  # noqa: E731
    assert not rows(data.train) & rows(data.test)


def test_synthetic_is_deterministic_and_learnable():
    a = synthetic(500, 20, 5, seed=3)
    b = synthetic(500, 20, 5, seed=3)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert a.X.shape == (500, 20) and a.X.dtype == np.float32
    # nearest class mean classifies well above chance: the clusters are real
    means = np.stack([a.X[a.y == c].mean(axis=0) for c in range(5)])
    predicted = np.argmin(((a.X[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (predicted == a.y).mean() > 0.6
    with pytest.raises(ValueError, match="n_classes"):
        synthetic(10, 3, 1)


def test_minibatches_are_deterministic_and_cover_the_epoch():
    data = synthetic(103, 4, 3)
    batches = list(minibatches(data, 10, seed=5, epoch=2))
    assert len(batches) == 10 and all(len(y) == 10 for _, y in batches)
    again = list(minibatches(data, 10, seed=5, epoch=2))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(batches, again))
    other_epoch = list(minibatches(data, 10, seed=5, epoch=3))
    assert not np.array_equal(batches[0][0], other_epoch[0][0])
    X, y = batch_stack(data, 10, 12)
    assert X.shape == (12, 10, 4) and y.shape == (12, 10)
    with pytest.raises(ValueError, match="batch_size"):
        list(minibatches(data, 1))
