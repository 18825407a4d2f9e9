"""Keras 3 on its PyTorch backend (``keras-torch``): loss.backward() and optimizer.apply in eager
torch, and torch's autodiff for the gradients (bnbench.adapters.keras_adapter holds what every
backend shares)."""
from __future__ import annotations

from typing import Dict, Optional

from bnbench.reference.spec import Spec

from .declaration import Alternative
from .keras_adapter import KerasAdapter


class KerasTorchAdapter(KerasAdapter):
    name = "keras-torch"
    backend = "torch"
    backend_module = "torch"
    devices = ("cpu", "cuda")
    requires = ("keras", "torch")
    requirements = ("keras>=3", "jax", "torch==2.13.0")
    gpu_requirements = ("keras>=3",)        # the lent GPU machine has torch (a CUDA build) and jax
    asv_variables = (("KERAS_BACKEND", "torch"),)
    # Its tuning log: glibc's huge pages made the step 5% faster at tiny, level at large (2026-11-26).
    allocator = "hugepages"
    tuning = {"compiled": "Keras' custom PyTorch training step: the model called, loss.backward(), optimizer.apply "
                          "on the variables' gradients (eager torch, as Keras resolves jit_compile='auto' on torch)",
              "eager": "model.compile(run_eagerly=True): eager torch"}
    alternatives = {"compiled": {
        "jit-compile": Alternative("model.compile(jit_compile=True): Keras runs the train step under torch.compile"),
        "train-on-batch": Alternative("model.compile(jit_compile='auto') and model.train_on_batch: Keras' own train "
                                      "step (eager torch: Keras resolves 'auto' to no torch.compile)"),
    }}

    @classmethod
    def framework_cannot(cls, spec: Spec, mode: str, device: str) -> Optional[str]:
        if spec.dtype == "float64":
            return ("Keras' type promotion maps float64 to float32 on the torch backend "
                    "(keras/src/backend/common/dtypes.py, BIT64_TO_BIT32_DTYPE): keras.layers.Dense(dtype='float64') "
                    "returns float32 for a float64 input and kernel (3.7e-7 from the float64 product), and so do "
                    "BatchNormalization and a loss's mean (measured 2026-11-26); the jax and tensorflow backends "
                    "keep float64")
        return super().framework_cannot(spec, mode, device)

    def _compile_settings(self) -> Dict[str, object]:
        return dict(jit_compile=True) if self.variant == "jit-compile" else super()._compile_settings()

    def _uses_train_on_batch(self) -> bool:
        # keras-torch's jit-compile form is Keras' own step under torch.compile
        return self.variant == "jit-compile" or super()._uses_train_on_batch()

    def _custom_step(self, optimizer):
        """Keras' documented custom training step on torch: the model called in training mode,
        loss.backward(), optimizer.apply on the variables' gradients (eager torch, as
        train_on_batch runs it there)."""
        import torch

        model = self.model
        trainable = model.trainable_variables
        optimizer.build(trainable)
        loss_of = self._loss_of_model()

        def step(X, y):
            model.zero_grad()
            loss = loss_of(X, y)
            loss.backward()
            with torch.no_grad():
                optimizer.apply([variable.value.grad for variable in trainable], trainable)
            return loss

        return step

    def _loss_and_gradients(self, loss_of, trainable):
        trainable = [v.detach().clone().requires_grad_(True) for v in trainable]
        loss, logits = loss_of(trainable)
        loss.backward()
        return loss, logits, [v.grad for v in trainable]

    def _precision(self):
        if self.device == "cuda":
            import torch

            # the float32 matmul precision, pinned: true float32 (TF32 off)
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        return super()._precision()

    def sync(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def device_memory(self, reset: bool = False) -> Optional[int]:
        if self.device != "cuda":
            return None
        import torch

        torch.cuda.synchronize()
        if reset:
            torch.cuda.reset_peak_memory_stats()
            return torch.cuda.memory_allocated()
        return torch.cuda.max_memory_allocated()
