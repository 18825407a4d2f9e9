"""The real digits set: one epoch's time, and test accuracy after a fixed training budget."""
import numpy as np

from bnbench.reference import initial_parameters
from bnbench.reference.data import load_digits, minibatches
from bnbench.timing.frameworks import get

from .common import (
    ACCURACY_EPOCHS,
    DEVICES,
    DIGITS_BATCH,
    DTYPES,
    IMPLS,
    digits_spec,
    prepare_digits,
    require_supported,
    skip_reason,
    split_impl,
    threads,
)


class DigitsEpoch:
    params = [IMPLS, DEVICES, DTYPES]
    param_names = ["impl", "device", "dtype"]
    timeout = 900
    rounds = 2
    repeat = (5, 20, 10.0)

    def setup(self, impl, device, dtype):
        self.prepared = prepare_digits(impl, device, dtype)

    def time_epoch_digits(self, impl, device, dtype):
        """One epoch over the digits training split, batch 64 (17 steps), data on the device."""
        adapter, batches, _ = self.prepared
        for batch in batches:
            adapter.train_step_prepared(batch)
        adapter.sync()


class DigitsAccuracy:
    """The same model trained the same way must reach the same accuracy on every framework:
    a check that the same model was timed (compare rows within a few test examples)."""

    params = [IMPLS]
    param_names = ["impl"]
    timeout = 900
    rounds = 1
    repeat = 1

    def setup(self, impl):
        reason = skip_reason(impl, "cpu", "float32", None)
        if reason:
            raise NotImplementedError(reason)
        framework, mode = split_impl(impl)
        require_supported(get(framework), digits_spec("float32"), mode, "cpu")

    def track_test_accuracy_digits(self, impl):
        framework, mode = split_impl(impl)
        adapter_class = get(framework)
        adapter_class.set_threads(threads())
        spec = digits_spec("float32")
        data = load_digits("float32")
        adapter = adapter_class(spec, initial_parameters(spec), mode=mode)
        for epoch in range(ACCURACY_EPOCHS):
            for X, y in minibatches(data.train, DIGITS_BATCH, seed=0, epoch=epoch):
                adapter.train_step(X, y)
        predicted = np.argmax(adapter.predict_proba(data.test.X), axis=1)
        return float(np.mean(predicted == data.test.y))

    track_test_accuracy_digits.unit = "fraction"
