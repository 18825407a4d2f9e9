"""Data, produced once on the reference side and handed to every adapter as NumPy arrays.

* :func:`load_digits` -- the real 8x8 handwritten digits (1797 images, 10 classes) from the file
  that ships inside scikit-learn; read straight from that file, so scikit-learn is not imported
  and nothing is downloaded. Standardised with the training split's statistics, split once with a
  fixed seed into train / validation / test.
* :func:`synthetic` -- Gaussian class clusters of any size, for scaling benchmarks.
* :func:`minibatches` -- deterministic shuffled mini-batches from a seed.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import importlib.util
import os
from typing import Iterator, Tuple

import numpy as np

DIGITS_SPLIT_SEED = 20261125
DIGITS_TEST_FRACTION = 0.2
DIGITS_VALIDATION_FRACTION = 0.2   # of what remains after the test split


class DataError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class Split:
    X: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    validation: Split
    test: Split
    n_features: int
    n_classes: int

    def astype(self, dtype: "np.dtype | str") -> "Dataset":
        cast = lambda split: Split(split.X.astype(dtype), split.y)  # noqa: E731
        return dataclasses.replace(self, train=cast(self.train), validation=cast(self.validation), test=cast(self.test))


def digits_file() -> str:
    """Path of scikit-learn's bundled digits.csv.gz, found without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the digits set is read from scikit-learn's bundled copy: pip install scikit-learn")
    for location in spec.submodule_search_locations:
        path = os.path.join(location, "datasets", "data", "digits.csv.gz")
        if os.path.exists(path):
            return path
    raise DataError(f"scikit-learn is installed but its digits.csv.gz was not found under {list(spec.submodule_search_locations)}")


@functools.lru_cache(maxsize=1)
def _raw_digits() -> Tuple[np.ndarray, np.ndarray]:
    with gzip.open(digits_file(), "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.float64)
    if table.shape != (1797, 65):
        raise DataError(f"unexpected digits table shape {table.shape}, expected (1797, 65)")
    return table[:, :64], table[:, 64].astype(np.int64)


def load_digits(dtype: "np.dtype | str" = "float64") -> Dataset:
    """The digits set: 64 standardised features, 10 classes, a fixed train/validation/test split."""
    X, y = _raw_digits()
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(y))
    n_test = int(round(DIGITS_TEST_FRACTION * len(y)))
    n_validation = int(round(DIGITS_VALIDATION_FRACTION * (len(y) - n_test)))
    test_idx, validation_idx, train_idx = order[:n_test], order[n_test:n_test + n_validation], order[n_test + n_validation:]
    mean = X[train_idx].mean(axis=0)
    std = X[train_idx].std(axis=0)
    std[std == 0] = 1.0   # pixels that are blank in every training image stay 0
    standardised = (X - mean) / std
    split = lambda idx: Split(np.ascontiguousarray(standardised[idx], dtype=dtype), y[idx].copy())  # noqa: E731
    return Dataset("digits", split(train_idx), split(validation_idx), split(test_idx), n_features=64, n_classes=10)


def synthetic(n_examples: int, n_features: int, n_classes: int, *, seed: int = 0, separation: float = 3.0,
              dtype: "np.dtype | str" = "float32") -> Split:
    """Gaussian class clusters: class centres ~ N(0, separation^2 / n_features), unit noise."""
    for field, value, minimum in (("n_examples", n_examples, 1), ("n_features", n_features, 1), ("n_classes", n_classes, 2)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"synthetic data: {field}={value!r} must be an integer >= {minimum}")
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, separation / np.sqrt(n_features), size=(n_classes, n_features))
    y = rng.integers(0, n_classes, size=n_examples)
    X = centres[y] + rng.normal(size=(n_examples, n_features))
    return Split(X.astype(dtype), y.astype(np.int64))


def minibatches(split: Split, batch_size: int, *, seed: int = 0, epoch: int = 0,
                drop_last: bool = True) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Shuffled batches of one epoch, the same for the same (seed, epoch) on every framework.

    A training batch needs at least two examples, so a short final batch is dropped by default.
    """
    if batch_size < 2:
        raise ValueError(f"batch_size={batch_size} must be >= 2 (a training batch needs two examples)")
    order = np.random.default_rng([seed, epoch]).permutation(len(split))
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        if len(idx) >= 2:
            yield split.X[idx], split.y[idx]


def batch_stack(split: Split, batch_size: int, n_batches: int, *, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """K batches as arrays of shape (K, m, n) and (K, m), drawn without replacement per epoch."""
    xs, ys = [], []
    epoch = 0
    while len(xs) < n_batches:
        for X, y in minibatches(split, batch_size, seed=seed, epoch=epoch):
            xs.append(X)
            ys.append(y)
            if len(xs) == n_batches:
                break
        epoch += 1
        if epoch > 10_000:
            raise ValueError("batch_stack: the split is too small for that batch size")
    return np.stack(xs), np.stack(ys)

