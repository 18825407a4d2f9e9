"""Keras 3 on each of its backends: ``keras-jax``, ``keras-tensorflow``, ``keras-torch``.

The model is built from Keras' own layers (Dense, BatchNormalization, ReLU) and trained with a
Keras optimizer. Keras picks its backend once per process, from KERAS_BACKEND, before it is first
imported; so an adapter runs in this process only when this process was started for its backend,
and otherwise in a worker process started with KERAS_BACKEND set (bnbench.timing.worker).

Modes: ``compiled`` is Keras' documented custom training step for the backend (stateless_call
under jax.jit; a GradientTape step in tf.function(jit_compile=True); loss.backward() and
optimizer.apply in eager torch), which the tuning logs found faster than ``model.train_on_batch``
(kept as the ``train-on-batch`` alternative); ``eager`` is ``model.compile(run_eagerly=True)``
and ``model.train_on_batch``.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from typing import ClassVar, Dict, Optional, Tuple

import numpy as np

from bnbench.reference.spec import Spec, trainable_names

from .contract import Adapter, ConventionProbe, Gradients, Unavailable
from .placement import Placement


def _keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras


def _process_backend() -> Optional[str]:
    """The Keras backend of this process: keras' own answer once imported, else KERAS_BACKEND."""
    if "keras" in sys.modules:
        try:
            return sys.modules["keras"].backend.backend()
        except Exception:
            return None
    return os.environ.get("KERAS_BACKEND")


@contextlib.contextmanager
def floatx(dtype: str):
    """Keras computes in floatx wherever no dtype can be passed (the optimizer's learning-rate
    variable, the sum of the model's losses): every call of the adapter runs with floatx set to the
    spec's dtype."""
    keras = _keras()
    previous = keras.config.floatx()
    keras.config.set_floatx(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(previous)


class KerasAdapter(Adapter):
    """What Keras does the same on every backend: the model from Keras' layers, its optimizer,
    model.train_on_batch, inference and the variables. Each backend's subclass, one module each as
    Keras keeps them (keras_jax_adapter, keras_tensorflow_adapter, keras_torch_adapter), writes its
    custom training step (``_custom_step``), its autodiff (``_loss_and_gradients``), its limits
    (``framework_cannot``) and its precision (``_precision``)."""

    # The compiled mode's kept form is Keras' documented custom training step (stateless_call on
    # jax, GradientTape in a tf.function on tensorflow, loss.backward() on torch), not
    # train_on_batch, whose own machinery cost 1.1x (torch) to 3x (jax) the step at tiny (the tuning logs).
    custom_modes: ClassVar[Tuple[str, ...]] = ("compiled",)
    backend: ClassVar[str]
    backend_module: ClassVar[str]
    modes = ("compiled", "eager")
    best_mode = "compiled"
    devices = ("cpu",)
    description = ("keras.layers.Dense(use_bias=False) + BatchNormalization + ReLU; Keras optimizers; compiled: a "
                   "custom training step per backend, eager: model.train_on_batch")
    status = "maintained by Google (the Keras team): PyPI's newest release, checked 2026-11-26: 3.15.1, July 2026"

    @classmethod
    def placement(cls):
        if _process_backend() == cls.backend:
            return None

        return Placement(python=sys.executable, env=(("KERAS_BACKEND", cls.backend),) + tuple(cls.allocator_variables()),
                         where=f"a worker process with KERAS_BACKEND={cls.backend}")

    @classmethod
    def framework_cannot(cls, spec: Spec, mode: str, device: str) -> Optional[str]:
        """What Keras cannot express on any backend (a backend's subclass adds its own)."""
        if spec.running_var == "unbiased" and spec.batch_norm:
            return ("keras.layers.BatchNormalization always feeds the biased batch variance into its moving "
                    "variance (bnbench conventions measures it); running_var='unbiased' cannot be expressed")
        if spec.optimizer == "adam":
            return ("keras.optimizers.Adam adds epsilon to sqrt(v) before the bias correction "
                    "(lr*sqrt(1-beta2^t)/(1-beta1^t) * v/(sqrt(s)+eps)), the spec adds it to sqrt(s_hat); the two "
                    "differ by a factor sqrt(1-beta2^t) on epsilon that changes every step")
        return None

    @classmethod
    def installed_version(cls) -> Optional[str]:
        from importlib import metadata

        try:
            keras = metadata.version("keras")
        except metadata.PackageNotFoundError:
            return None
        backend = cls._backend_adapter().installed_version()
        return f"{keras} ({cls.backend} {backend or 'not installed'})"

    @classmethod
    def version(cls) -> str:
        keras = _keras()
        backend = importlib.import_module(cls.backend_module)
        return f"{keras.__version__} ({cls.backend} {getattr(backend, '__version__', 'unknown')})"

    @classmethod
    def _backend_adapter(cls):
        from .registry import local_class

        return local_class(cls.backend)

    @classmethod
    def set_threads(cls, n_threads: int) -> int:
        return cls._backend_adapter().set_threads(n_threads)

    @classmethod
    def matmul_step(cls, a: np.ndarray, b: np.ndarray, device: str):
        """Keras' Dense calls its backend's matmul: the backend framework's own is the ceiling."""
        library, step = cls._backend_adapter().matmul_step(a, b, device)
        return f"keras {_keras().__version__} on {library}", step

    @classmethod
    def device_unavailable(cls, device: str) -> Optional[str]:
        if device not in cls.devices:
            return super().device_unavailable(device)
        return cls._backend_adapter().device_unavailable(device)

    @classmethod
    def batch_norm_casts_to_float32(cls, dtype: str) -> bool:
        """Whether keras.layers.BatchNormalization computes a ``dtype`` input in float32 here (the
        jax backend's subclass says so for float64; torch is refused float64 before it gets this far)."""
        return False

    def _precision(self):
        """The context every call runs in: floatx set to the spec's dtype (the jax backend adds x64)."""
        return floatx(self.spec.dtype)

    def profile(self, X: np.ndarray, y: np.ndarray, steps: int) -> Dict[str, object]:
        with self._precision():
            return super().profile(X, y, steps)

    @classmethod
    def profile_steps(cls, adapter: Adapter, batch, steps: int):
        """Keras' steps are its backend's ops: the backend framework's profiler."""
        return cls._backend_adapter().profile_steps(adapter, batch, steps)

    def compiled_step_text(self, batch) -> str:
        """The compiled step's program, for a backend profiler that names its kernels after it."""
        raise Unavailable(f"{self.name} ({self.mode}{'+' + self.variant if self.variant else ''}) has no compiled "
                          f"step to profile")

    # ------------------------------------------------------------------ build
    def _build(self, params: Dict[str, np.ndarray]) -> None:
        with self._precision():
            self._build_model(params)

    def _build_model(self, params: Dict[str, np.ndarray]) -> None:
        keras = _keras()
        self.keras = keras
        spec = self.spec
        dtype = spec.dtype
        # ---- the spec mapped onto Keras, in one place -----------------------------------------
        # BatchNormalization(momentum=spec.bn_momentum): Keras' momentum weights the OLD moving
        #   value, as the spec's does (Keras' default 0.99 is not the spec's 0.9: always passed);
        #   epsilon=spec.bn_epsilon (Keras' default is 1e-3); it normalises with the biased
        #   variance, inside the square root, and its moving variance takes the biased one.
        # float64 on jax: Keras' type promotion maps float64 to float32 on every backend but
        #   tensorflow (keras/src/backend/common/dtypes.py, BIT64_TO_BIT32_DTYPE), and
        #   BatchNormalization casts its input to result_type(dtype, "float32"): its output was
        #   2.1e-7 from the float64 reference (measured). There the adapter runs the layer's own math
        #   without that cast (_batch_norm_in_input_dtype); everything else already keeps float64.
        # SGD: the spec's momentum v = b1 v + (1 - b1) g, theta -= lr v is Keras' m = b1 m - lr' g,
        #   theta += m with lr' = lr (1 - b1) (then m = -lr v exactly).
        # L2: the spec's l2 / (2m) * sum W^2 depends on the batch size m, which a weight
        #   regularizer cannot see; a layer on the logits adds it with add_loss() from the batch
        #   it is called on.
        # Every layer, the loss and the optimizer's variables carry the spec's dtype.
        # batch_norm=false: hidden layers Dense(use_bias=True) and ReLU.
        # ----------------------------------------------------------------------------------------
        inputs = keras.Input(shape=(spec.n_features,), dtype=dtype)
        x = inputs
        self.dense, self.norm = [], []
        batch_norm = (_batch_norm_in_input_dtype(keras) if self.batch_norm_casts_to_float32(dtype)
                      else keras.layers.BatchNormalization)
        for width in spec.hidden:
            dense = keras.layers.Dense(width, use_bias=not spec.batch_norm, dtype=dtype)
            if not spec.batch_norm:                          # an ordinary layer: Dense with its bias, ReLU
                x = keras.layers.ReLU(dtype=dtype)(dense(x))
                self.dense.append(dense)
                continue
            norm = batch_norm(axis=-1, momentum=spec.bn_momentum, epsilon=spec.bn_epsilon, center=True, scale=True,
                              dtype=dtype)
            x = keras.layers.ReLU(dtype=dtype)(norm(dense(x)))
            self.dense.append(dense)
            self.norm.append(norm)
        self.output = keras.layers.Dense(spec.n_classes, use_bias=True, dtype=dtype)
        logits = self.output(x)
        if spec.l2:
            logits = _batch_l2_layer(keras)(self.dense + [self.output], spec.l2, dtype=dtype)(logits)
        self.model = keras.Model(inputs, logits)
        probabilities = keras.layers.Softmax(axis=-1, dtype=dtype)(logits)
        self.inference = keras.Model(inputs, probabilities)

        variable_of = {}
        for layer, dense in enumerate(self.dense, start=1):
            variable_of.update({f"W{layer}": dense.kernel} if spec.batch_norm else
                               {f"W{layer}": dense.kernel, f"b{layer}": dense.bias})
        for layer, norm in enumerate(self.norm, start=1):
            variable_of.update({f"gamma{layer}": norm.gamma, f"beta{layer}": norm.beta,
                                f"running_mean{layer}": norm.moving_mean, f"running_var{layer}": norm.moving_variance})
        variable_of.update({"W_out": self.output.kernel, "b_out": self.output.bias})
        self.variable_of = variable_of
        for name, variable in variable_of.items():
            variable.assign(params[name])
        by_id = {id(variable): name for name, variable in variable_of.items()}
        self.trainable_order = [by_id[id(v)] for v in self.model.trainable_variables]
        self.non_trainable_order = [by_id[id(v)] for v in self.model.non_trainable_variables]
        if sorted(self.trainable_order) != sorted(trainable_names(spec)):
            raise RuntimeError(f"Keras' trainable variables {self.trainable_order} are not the spec's")

        if spec.optimizer == "sgd":
            optimizer = keras.optimizers.SGD(learning_rate=spec.learning_rate, momentum=0.0)
        else:
            optimizer = keras.optimizers.SGD(learning_rate=spec.learning_rate * (1 - spec.beta1), momentum=spec.beta1)
        self.loss_object = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=dtype)
        settings = self._compile_settings()
        self.model.compile(optimizer=optimizer, loss=self.loss_object, **settings)
        self.inference.compile(**settings)
        custom = self.mode in self.custom_modes and not self._uses_train_on_batch()
        self._custom = self._custom_step(optimizer) if custom else None

    def _compile_settings(self) -> Dict[str, object]:
        """model.compile's execution settings for the mode (a backend may add its own)."""
        return dict(run_eagerly=True) if self.mode == "eager" else dict(jit_compile="auto")

    def _uses_train_on_batch(self) -> bool:
        """Whether the form trains through model.train_on_batch (Keras' own step)."""
        return self.variant == "train-on-batch"

    def _custom_step(self, optimizer):
        """The backend's custom training step: a function of a prepared batch (X, y) that runs one
        step and returns its loss on the device."""
        raise NotImplementedError(f"{type(self).__name__} writes no custom training step")

    def _loss_and_gradients(self, loss_of, trainable):
        """(loss, logits, gradients) of ``loss_of(trainable)`` by the backend's own autodiff."""
        raise NotImplementedError(f"{type(self).__name__} writes no autodiff")

    def _write_back(self) -> None:
        """Bring Keras' variables up to date where a step keeps the values outside them (jax)."""

    def _loss_of_model(self):
        """The model's training loss of a batch, the L2 term included (model.losses)."""
        model, loss_object = self.model, self.loss_object

        def loss_of(X, y):
            logits = model(X, training=True)
            loss = loss_object(y, logits)
            for extra in model.losses:
                loss = loss + extra
            return loss

        return loss_of

    # ------------------------------------------------------------------ contract
    def to_device(self, X: np.ndarray, y: Optional[np.ndarray] = None):
        X, y = self._check(X, y, training=y is not None)
        ops = self.keras.ops
        with self._precision():
            return ops.convert_to_tensor(X), (None if y is None else ops.convert_to_tensor(y))

    def train_step(self, X: np.ndarray, y: np.ndarray) -> float:
        X, y = self._check(X, y)
        return self.train_step_prepared((X, y))

    def train_step_prepared(self, batch) -> float:
        with self._precision():
            if self._custom is None:
                return float(self.model.train_on_batch(batch[0], batch[1]))   # a Python float: the step is done
            return float(self.keras.ops.convert_to_numpy(self._custom(batch[0], batch[1])))

    def train_step_queued(self, batch) -> None:
        if self._custom is None:
            self.train_step_prepared(batch)
            return
        with self._precision():
            self._custom(batch[0], batch[1])

    def gradients(self, X: np.ndarray, y: np.ndarray) -> Gradients:
        """Keras has no public gradient call: the model's stateless_call (Keras' documented way to
        write a custom training step) differentiated by the backend's own autodiff."""
        with self._precision():
            self._write_back()
            X, y = self._check(X, y)
            ops = self.keras.ops
            X_tensor, y_tensor = ops.convert_to_tensor(X), ops.convert_to_tensor(y)
            non_trainable = [v.value for v in self.model.non_trainable_variables]

            def loss_of(trainable):
                logits, _, losses = self.model.stateless_call(trainable, non_trainable, X_tensor, training=True,
                                                              return_losses=True)
                loss = self.loss_object(y_tensor, logits)
                for extra in losses:
                    loss = loss + extra
                return loss, logits

            loss, logits, grads = self._loss_and_gradients(loss_of, [v.value for v in self.model.trainable_variables])
            probs = ops.convert_to_numpy(ops.softmax(logits, axis=-1))
            grads_by_name = {name: ops.convert_to_numpy(g) for name, g in zip(self.trainable_order, grads)}
            return Gradients(float(ops.convert_to_numpy(loss)), probs,
                             {name: grads_by_name[name] for name in trainable_names(self.spec)})

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X, _ = self._check(X, None, training=False)
        with self._precision():
            self._write_back()
            return np.asarray(self.inference.predict_on_batch(X))

    def predict_prepared(self, batch) -> None:
        with self._precision():
            self._write_back()
            self.inference.predict_on_batch(batch[0])     # returns NumPy: the work is done

    def state(self) -> Dict[str, np.ndarray]:
        ops = self.keras.ops
        with self._precision():
            self._write_back()
            return self._ordered_state({name: np.array(ops.convert_to_numpy(v.value)) for name, v in self.variable_of.items()})

    # ------------------------------------------------------------------ conventions
    @classmethod
    def conventions(cls):
        keras = _keras()

        def batch_norm(X):
            layer = keras.layers.BatchNormalization()
            layer.build(X.shape)
            before = (keras.ops.convert_to_numpy(layer.moving_mean.value), keras.ops.convert_to_numpy(layer.moving_variance.value))
            out = layer(keras.ops.convert_to_tensor(X), training=True)
            return (keras.ops.convert_to_numpy(out), before[0], before[1],
                    keras.ops.convert_to_numpy(layer.moving_mean.value), keras.ops.convert_to_numpy(layer.moving_variance.value))

        def momentum_sgd(lr, beta, gradient, steps):
            variable = keras.Variable(np.zeros(1, dtype="float32"))
            optimizer = keras.optimizers.SGD(learning_rate=lr, momentum=beta)
            values = []
            for _ in range(steps):
                optimizer.apply([keras.ops.convert_to_tensor(np.full(1, gradient, dtype="float32"))], [variable])
                values.append(float(keras.ops.convert_to_numpy(variable.value)[0]))
            return values

        declared = keras.layers.BatchNormalization().momentum
        return [ConventionProbe(cls.name, cls.version(), "keras.layers.BatchNormalization", batch_norm, declared,
                                "keras.optimizers.SGD(momentum)", momentum_sgd)]


def _batch_l2_layer(keras):
    class BatchL2(keras.layers.Layer):
        """Adds the spec's l2 / (2m) * (sum of squared weights) for the batch it sees (m rows)."""

        def __init__(self, weight_layers, l2, **kwargs):
            super().__init__(**kwargs)
            self.weight_layers = weight_layers
            self.l2 = l2

        def call(self, logits):
            ops = keras.ops
            m = ops.cast(ops.shape(logits)[0], self.compute_dtype)
            squares = [ops.sum(ops.square(layer.kernel)) for layer in self.weight_layers]
            total = squares[0]
            for term in squares[1:]:
                total = total + term
            self.add_loss(self.l2 / (2 * m) * total)
            return logits

    return BatchL2


def _batch_norm_in_input_dtype(keras):
    class BatchNormalizationInInputDtype(keras.layers.BatchNormalization):
        """keras.layers.BatchNormalization's training and inference math (its own _moments, the
        same moving-average update, keras.ops.batch_normalization) without its cast to
        result_type(dtype, "float32"), so that float64 stays float64 on jax."""

        def call(self, inputs, training=None, mask=None):
            ops = keras.ops
            if training and self.trainable:
                mean, variance = self._moments(inputs, mask)
                self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
                self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
            else:
                mean, variance = self.moving_mean, self.moving_variance
            return ops.batch_normalization(inputs, mean=mean, variance=variance, axis=self.axis, offset=self.beta,
                                           scale=self.gamma, epsilon=self.epsilon)

    return BatchNormalizationInInputDtype
