"""Keras 3 on its jax backend (``keras-jax``): Keras' documented custom JAX training step, and
jax's autodiff for the gradients (bnbench.adapters.keras_adapter holds what every backend shares)."""
from __future__ import annotations

import contextlib
from typing import Dict, Optional

import numpy as np

from .declaration import Alternative
from .keras_adapter import KerasAdapter, floatx


class KerasJaxAdapter(KerasAdapter):
    name = "keras-jax"
    backend = "jax"
    backend_module = "jax"
    devices = ("cpu", "cuda")
    requires = ("keras", "jax")
    requirements = ("keras>=3", "jax")      # keras imports jax whatever its backend
    gpu_requirements = ("keras>=3",)        # the lent GPU machine has jax with its CUDA plugin
    asv_variables = (("KERAS_BACKEND", "jax"),)
    # Its tuning log: glibc's huge pages made the step 8% faster at large and 3% at tiny (2026-11-26).
    allocator = "hugepages"
    tuning = {"compiled": "Keras' custom JAX training step: model.stateless_call under jax.value_and_grad and "
                          "optimizer.stateless_apply, one jax.jit; the variables' values kept outside Keras between "
                          "steps, written back when read",
              "eager": "model.compile(run_eagerly=True): jax ops one by one"}
    alternatives = {"compiled": {"train-on-batch": Alternative(
        "model.compile(jit_compile='auto') and model.train_on_batch: Keras' own train step under jax.jit")}}

    @classmethod
    def batch_norm_casts_to_float32(cls, dtype: str) -> bool:
        return dtype == "float64"

    @contextlib.contextmanager
    def _precision(self):
        """floatx, and x64 for a float64 spec (JAX computes float64 only with x64 enabled: enabled
        for the call, as the jax adapter does, so that the setting never leaks); the float32 matmul
        precision pinned (XLA's default on an NVIDIA GPU is TF32, not the spec's float32)."""
        import jax

        with floatx(self.spec.dtype):
            if self.spec.dtype == "float64":
                with jax.enable_x64(True):
                    yield
            else:
                with jax.default_matmul_precision("float32"):
                    yield

    def _custom_step(self, optimizer):
        """Keras' documented custom JAX training step: model.stateless_call differentiated by
        jax.value_and_grad, optimizer.stateless_apply, all under one jax.jit; the variables' values
        live in the adapter between steps and go back into Keras when read (``_write_back``)."""
        import jax

        model, loss_object = self.model, self.loss_object
        optimizer.build(model.trainable_variables)

        def loss_of(trainable, non_trainable, X, y):
            logits, non_trainable, losses = model.stateless_call(trainable, non_trainable, X, training=True,
                                                                 return_losses=True)
            loss = loss_object(y, logits)
            for extra in losses:
                loss = loss + extra
            return loss, non_trainable

        def step(state, X, y):
            trainable, non_trainable, optimizer_variables = state
            (loss, non_trainable), grads = jax.value_and_grad(loss_of, has_aux=True)(trainable, non_trainable, X, y)
            trainable, optimizer_variables = optimizer.stateless_apply(optimizer_variables, grads, trainable)
            return loss, (trainable, non_trainable, optimizer_variables)

        self._state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
                       [v.value for v in optimizer.variables])
        self._state_stale = False      # True: the adapter's values are newer than Keras' variables
        self._stateless = jax.jit(step)

        def run(X, y):
            loss, self._state = self._stateless(self._state, X, y)
            self._state_stale = True
            return loss

        return run

    def _write_back(self) -> None:
        if self._custom is not None and self._state_stale:
            trainable, non_trainable, optimizer_variables = self._state
            for variable, value in zip(self.model.trainable_variables, trainable):
                variable.assign(value)
            for variable, value in zip(self.model.non_trainable_variables, non_trainable):
                variable.assign(value)
            for variable, value in zip(self.model.optimizer.variables, optimizer_variables):
                variable.assign(value)
            self._state_stale = False

    def _loss_and_gradients(self, loss_of, trainable):
        import jax

        (loss, logits), grads = jax.value_and_grad(loss_of, has_aux=True)(trainable)
        return loss, logits, grads

    def sync(self) -> None:
        if self._custom is not None:
            import jax

            jax.block_until_ready(self._state)

    def device_memory(self, reset: bool = False) -> Optional[int]:
        if self.device == "cpu":
            return None
        import jax

        stats = jax.devices("gpu")[0].memory_stats() or {}
        return stats.get("bytes_in_use" if reset else "peak_bytes_in_use")

    def compiled_step_text(self, batch) -> str:
        if self._custom is None:
            return super().compiled_step_text(batch)
        with self._precision():
            return self._stateless.lower(self._state, batch[0], batch[1]).compile().as_text()

    def _build_model(self, params: Dict[str, np.ndarray]) -> None:
        if self.device == "cuda":
            import jax

            with jax.default_device(jax.devices("gpu")[0]):
                return super()._build_model(params)
        return super()._build_model(params)

