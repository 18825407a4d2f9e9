"""Keras 3 on its TensorFlow backend (``keras-tensorflow``): a GradientTape step in one
tf.function, and TensorFlow's autodiff for the gradients (bnbench.adapters.keras_adapter holds what
every backend shares)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from bnbench.reference.spec import Spec

from .declaration import Alternative
from .keras_adapter import KerasAdapter


class KerasTensorflowAdapter(KerasAdapter):
    name = "keras-tensorflow"
    backend = "tensorflow"
    backend_module = "tensorflow"
    requires = ("keras", "tensorflow")
    requirements = ("keras>=3", "jax", "tensorflow-cpu")
    asv_variables = (("KERAS_BACKEND", "tensorflow"),)
    # Its tuning log: the custom step is 1.6x faster than train_on_batch at tiny; under XLA it is
    # 14% faster at large and 7% slower at tiny than without; glibc's huge pages 5% faster at tiny.
    allocator = "hugepages"
    tuning = {"compiled": "Keras' custom TensorFlow training step: the model under tf.GradientTape and "
                          "optimizer.apply, in one tf.function(jit_compile=True) (XLA)",
              "eager": "model.compile(run_eagerly=True): TensorFlow eager"}
    alternatives = {"compiled": {
        "no-xla": Alternative("the custom step under tf.function without XLA (what Keras' jit_compile='auto' "
                              "chooses on a CPU-only machine)"),
        "train-on-batch": Alternative("model.compile(jit_compile='auto') and model.train_on_batch: Keras' own train "
                                      "step under tf.function (Keras turns XLA off on a CPU-only machine)"),
    }}

    @classmethod
    def framework_cannot(cls, spec: Spec, mode: str, device: str) -> Optional[str]:
        if spec.dtype == "float64" and spec.optimizer == "momentum" and float(np.float32(spec.beta1)) != spec.beta1:
            return (f"Keras SGD casts its momentum through a float32 TensorFlow constant: beta1={spec.beta1!r} "
                    f"becomes {float(np.float32(spec.beta1))!r}, about 1e-8 off in float64; use a beta1 exact in "
                    f"float32 (0.875, 0.9375, ...) or float32")
        return super().framework_cannot(spec, mode, device)

    def _custom_step(self, optimizer):
        """Keras' documented custom training step on TensorFlow: the model called in training mode
        under tf.GradientTape, optimizer.apply, in one tf.function (XLA unless the form says not)."""
        import tensorflow as tf

        trainable = self.model.trainable_variables
        optimizer.build(trainable)
        loss_of = self._loss_of_model()

        @tf.function(jit_compile=self.variant != "no-xla")
        def step(X, y):
            with tf.GradientTape() as tape:
                loss = loss_of(X, y)
            optimizer.apply(tape.gradient(loss, trainable), trainable)
            return loss

        return step

    def _loss_and_gradients(self, loss_of, trainable):
        import tensorflow as tf

        trainable = [tf.convert_to_tensor(v) for v in trainable]
        with tf.GradientTape() as tape:
            tape.watch(trainable)
            loss, logits = loss_of(trainable)
        return loss, logits, tape.gradient(loss, trainable)

    def compiled_step_text(self, batch) -> str:
        if self._custom is None or self.variant == "no-xla":
            return super().compiled_step_text(batch)
        with self._precision():
            return self._custom.experimental_get_compiler_ir(batch[0], batch[1])(stage="optimized_hlo")
