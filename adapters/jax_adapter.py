"""JAX: mode ``jit`` (jax.jit of one pure train step, parameters as a pytree) and ``eager`` (the
same function dispatched op by op); devices ``cpu`` and ``cuda``.

Batch norm and the optimizers are written in jax.numpy straight from SPEC.md. float64 runs inside
``jax.enable_x64(True)`` around every call, a context manager, so the setting never leaks into the
rest of the process.
"""
from __future__ import annotations

import glob
import os
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from bnbench.reference.model import check_batch
from bnbench.reference.spec import Spec, running_stat_names, trainable_names

from .contract import Adapter, ConventionProbe, Gradients, Unavailable
from .declaration import Alternative
from .functional import make_functions
from .many import PER_MODEL_FIELDS, ManyModels
from .profiling import add_kernel_time, seconds_per_step, xla_products


def _jax():
    import jax

    return jax


class JaxAdapter(Adapter):
    name = "jax"
    status = "maintained by Google: PyPI's newest release, checked 2026-11-26: 0.12.0.1, October 2026"
    modes = ("eager", "jit")
    best_mode = "jit"
    devices = ("cpu", "cuda")
    requires = ("jax", "jaxlib")
    requirements = ("jax",)
    tuning = {
        "eager": "no jit: every jax.numpy op dispatched on its own",
        "jit": "jax.jit of the whole step (forward, value_and_grad, running statistics, update); XLA CPU/GPU",
    }
    alternatives = {"jit": {
        "donate": Alternative("jax.jit(train_step, donate_argnums=(0, 1, 2)): the parameters, running statistics and "
                              "optimizer state are donated, so XLA updates them in their own buffers"),
        "onednn": Alternative("XLA_FLAGS=--xla_cpu_experimental_onednn_custom_call=true: XLA calls oneDNN for "
                              "the matmuls instead of its own kernels",
                              (("XLA_FLAGS", "--xla_cpu_experimental_onednn_custom_call=true"),)),
    }}
    description = "jax.numpy from the spec; value_and_grad; optimizers by hand"

    @classmethod
    def device_unavailable(cls, device: str) -> Optional[str]:
        if device == "cuda":
            jax = _jax()
            try:
                gpus = jax.devices("gpu")
            except RuntimeError as error:
                return f"jax sees no GPU ({str(error).splitlines()[0]}); a CUDA jaxlib is needed (pip install 'jax[cuda12]')"
            return None if gpus else "jax sees no GPU"
        return super().device_unavailable(device)

    @classmethod
    def set_threads(cls, n_threads: int) -> int:
        # XLA's CPU thread pool ignores XLA_FLAGS thread settings (docs/FRAMEWORKS.md): the
        # process's CPU affinity is what bounds it.
        import os

        super().set_threads(n_threads)
        available = sorted(os.sched_getaffinity(0))
        if n_threads < len(available):
            os.sched_setaffinity(0, available[:n_threads])
        return len(os.sched_getaffinity(0))

    @classmethod
    def conventions(cls):
        """jax itself has no batch-norm layer: Flax's (linen.BatchNorm), where Flax is installed;
        the momentum optimizer of jax.example_libraries (jax's own)."""
        import importlib.util


        jax = _jax()
        import jax.numpy as jnp
        from jax.example_libraries import optimizers

        def momentum_sgd(lr, beta, gradient, steps):
            init, update, get_params = optimizers.momentum(lr, mass=beta)
            state = init(jnp.zeros(1))
            values = []
            for step in range(steps):
                state = update(step, jnp.full(1, gradient), state)
                values.append(float(get_params(state)[0]))
            return values

        if importlib.util.find_spec("flax") is None:
            return [ConventionProbe("jax", jax.__version__, "none in jax (flax not installed)",
                                    optimizer="jax.example_libraries.optimizers.momentum", momentum_sgd=momentum_sgd)]
        import flax
        from flax import linen

        def batch_norm(X):
            layer = linen.BatchNorm(use_running_average=False)
            variables = layer.init(jax.random.PRNGKey(0), jnp.asarray(X))
            before = variables["batch_stats"]
            out, updated = layer.apply(variables, jnp.asarray(X), mutable=["batch_stats"])
            after = updated["batch_stats"]
            return (np.asarray(out), np.asarray(before["mean"]), np.asarray(before["var"]),
                    np.asarray(after["mean"]), np.asarray(after["var"]))

        return [ConventionProbe("jax", f"{jax.__version__} (flax {flax.__version__})", "flax.linen.BatchNorm", batch_norm,
                                linen.BatchNorm.momentum, "jax.example_libraries.optimizers.momentum", momentum_sgd)]

    trains_many = True
    precisions = {"tf32": ("cuda",)}     # XLA's TensorFloat-32 matmuls, only where asked for

    @classmethod
    def many_models(cls, specs: List[Spec], params: List[Mapping[str, np.ndarray]], device: str = "cpu") -> ManyModels:
        problem = cls.device_unavailable(device)
        if problem:
            raise Unavailable(f"many jax models on {device}: {problem}")
        return VmappedModels(specs, params, device)

    @classmethod
    def matmul_step(cls, a: np.ndarray, b: np.ndarray, device: str):
        if device != "cpu":
            return super().matmul_step(a, b, device)
        jax = _jax()
        x64 = a.dtype == np.float64
        with jax.enable_x64(x64):
            ja, jb = jax.device_put(a), jax.device_put(b)
            product = jax.jit(lambda x, z: jax.numpy.matmul(x, z, precision="highest"))

        def step():
            # called outside enable_x64, the jitted product was traced again in float32: the float64
            # ceiling was a float32 product (found by the peak's check of its first product)
            with jax.enable_x64(x64):
                return product(ja, jb).block_until_ready()

        return f"jax {jax.__version__} (jit jnp.matmul, XLA CPU)", step

    @classmethod
    def profile_steps(cls, adapter: Adapter, batch, steps: int):
        """jax.profiler's trace: every thunk XLA runs (an HLO instruction or fusion, by its name in
        the compiled module), its kind read from that module's text (``xla_products``).
        ``adapter`` gives the compiled step's text (``compiled_step_text``); eager steps, op by op,
        have none. XLA runs some dots asynchronously, so one thunk's time can hold another's
        running beside it: the totals are right, the split between two thunks less so."""
        import gzip
        import json
        import tempfile

        jax = _jax()
        products = xla_products(adapter.compiled_step_text(batch))
        with tempfile.TemporaryDirectory() as directory:
            with jax.profiler.trace(directory, create_perfetto_trace=True):
                profiled = seconds_per_step(adapter, batch, steps)
            traces = glob.glob(os.path.join(directory, "**", "perfetto_trace.json.gz"), recursive=True)
            with gzip.open(traces[0]) as handle:
                trace = json.load(handle)
        kernels: Dict[str, tuple] = {}
        for event in trace["traceEvents"] if isinstance(trace, dict) else trace:
            name = (event.get("args") or {}).get("hlo_op")
            if event.get("ph") == "X" and name:
                add_kernel_time(kernels, name, event.get("dur", 0.0) / 1e6, kind="product" if name in products else "other")
        return f"jax {jax.__version__} jax.profiler (XLA thunks)", profiled, kernels

    def compiled_step_text(self, batch) -> str:
        if self.mode != "jit":
            raise Unavailable(f"the {self.name} adapter profiles its compiled step only (mode {self.mode!r} runs op by op)")
        with self._precision():
            return self._train_step.lower(self.trainable, self.running, self.opt_state, batch[0], batch[1]).compile().as_text()

    @classmethod
    def worker_variables(cls):
        # XLA takes 75% of a GPU's memory when it starts by default; beside other workers on the
        # same card (bnbench compare) it must allocate as it goes.
        return (("XLA_PYTHON_CLIENT_PREALLOCATE", "false"),)

    def _precision(self):
        if self.spec.dtype == "float64":
            return self.jax.enable_x64(True)
        # The float32 matmul precision, pinned: on NVIDIA GPUs XLA's default is TF32 (a 10-bit
        # mantissa), which is not the spec's float32; TF32 only where it is asked for (the "tf32"
        # precision, labelled as such). A no-op on the CPU.
        return self.jax.default_matmul_precision("tensorfloat32" if self.precision == "tf32" else "float32")

    def _build(self, params: Dict[str, np.ndarray]) -> None:
        jax = _jax()
        self.jax = jax
        spec = self.spec
        # ---- the spec mapped onto JAX, in one place -------------------------------------------
        # Nothing has a framework default here: batch norm, its running statistics (momentum =
        # weight of the OLD value, biased or unbiased as the spec says) and the optimizers are
        # SPEC.md's formulas in jax.numpy. ReLU is jnp.where(Zt > 0, Zt, 0), whose gradient at 0 is
        # 0 (jnp.maximum's would be 0.5 there).
        # -------------------------------------------------------------------------------------------
        self.jax_device = jax.devices("gpu" if self.device == "cuda" else "cpu")[0]
        with self._precision():
            put = lambda array: jax.device_put(np.asarray(array, dtype=spec.dtype), self.jax_device)  # noqa: E731
            self.trainable = {name: put(params[name]) for name in trainable_names(spec)}
            self.running = {name: put(params[name]) for name in running_stat_names(spec)}
            zeros = lambda: {name: put(np.zeros_like(params[name])) for name in self.trainable}  # noqa: E731
            self.opt_state = {
                "v": zeros() if spec.optimizer in ("momentum", "adam") else {},
                "s": zeros() if spec.optimizer == "adam" else {},
                "t": put(np.zeros((), dtype=spec.dtype)),
            }
        functions = _make_functions(spec)
        self._loss_and_grads = functions["loss_and_grads"]
        self._train_step = functions["train_step"]
        self._inference = functions["inference"]
        if self.mode == "jit":
            self._loss_and_grads = jax.jit(self._loss_and_grads)
            donate = dict(donate_argnums=(0, 1, 2)) if self.variant == "donate" else {}
            self._train_step = jax.jit(self._train_step, **donate)
            self._inference = jax.jit(self._inference)

    def to_device(self, X: np.ndarray, y: Optional[np.ndarray] = None):
        X, y = self._check(X, y, training=y is not None)
        with self._precision():
            X_device = self.jax.device_put(X, self.jax_device)
            y_device = None if y is None else self.jax.device_put(y.astype(np.int32), self.jax_device)
        return X_device, y_device

    def train_step(self, X: np.ndarray, y: np.ndarray) -> float:
        return self.train_step_prepared(self.to_device(X, y))

    def train_step_prepared(self, batch) -> float:
        self.train_step_queued(batch)
        return float(self._loss)   # waits for the device

    def train_step_queued(self, batch) -> None:
        with self._precision():
            self.trainable, self.running, self.opt_state, self._loss = self._train_step(
                self.trainable, self.running, self.opt_state, batch[0], batch[1])

    def sync(self) -> None:
        self.jax.block_until_ready((self.trainable, self.running, self.opt_state, getattr(self, "_loss", None)))

    def device_memory(self, reset: bool = False) -> Optional[int]:
        """On a GPU, XLA's allocator: its peak bytes in use (it keeps one peak for the worker's life:
        ``reset`` reads what is in use now instead)."""
        if self.device == "cpu":
            return None
        stats = self.jax_device.memory_stats() or {}
        return stats.get("bytes_in_use" if reset else "peak_bytes_in_use")

    def gradients(self, X: np.ndarray, y: np.ndarray) -> Gradients:
        X, y = self.to_device(X, y)
        with self._precision():
            loss, log_probs, grads = self._loss_and_grads(self.trainable, self.running, X, y)
            return Gradients(float(loss), np.exp(np.asarray(log_probs)), {name: np.asarray(g) for name, g in grads.items()})

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X, _ = self.to_device(X)
        with self._precision():
            return np.asarray(self._inference(self.trainable, self.running, X))

    def predict_prepared(self, batch) -> None:
        with self._precision():
            self._inference(self.trainable, self.running, batch[0]).block_until_ready()

    def state(self) -> Dict[str, np.ndarray]:
        arrays = {name: np.array(value) for name, value in self.trainable.items()}
        arrays.update({name: np.array(value) for name, value in self.running.items()})
        return self._ordered_state(arrays)


class VmappedModels(ManyModels):
    """jax.vmap of the adapter's own train step over stacked parameters and per-model learning
    rate, beta1, beta2 and batch-norm momentum, jitted with the models' state donated (XLA updates
    it in its own buffers); on the CPU or a GPU, in float32 or float64."""

    _programs: Dict[Tuple, Tuple] = {}

    def __init__(self, specs: List[Spec], params: List[Mapping[str, np.ndarray]], device: str = "cpu"):
        super().__init__(specs, params, device)
        self.jax = jax = _jax()
        spec = self.spec
        self.jax_device = jax.devices("gpu" if device == "cuda" else "cpu")[0]
        self.step, self.infer = self._compiled(spec)
        with self._precision():
            put = lambda array: jax.device_put(np.asarray(array, dtype=spec.dtype), self.jax_device)  # noqa: E731
            stack = lambda name: put(np.stack([p[name] for p in self.params]))  # noqa: E731
            self.trainable = {name: stack(name) for name in trainable_names(spec)}
            self.running = {name: stack(name) for name in running_stat_names(spec)}
            zeros = lambda: {name: put(np.zeros(value.shape)) for name, value in self.trainable.items()}  # noqa: E731
            self.opt_state = {"v": zeros() if spec.optimizer != "sgd" else {}, "s": zeros() if spec.optimizer == "adam" else {},
                              "t": put(np.zeros(len(specs)))}
            self.hyper = {field: put(self.per_model(field)) for field in ("learning_rate", "beta1", "beta2", "bn_momentum")}

    def _precision(self):
        return self.jax.enable_x64(True) if self.spec.dtype == "float64" else self.jax.default_matmul_precision("float32")

    @classmethod
    def _compiled(cls, spec: Spec):
        """The vmapped, jitted step and inference for one network (compiled once per shape and
        number of models, then reused by every later group of the same shape)."""
        jax = _jax()
        key = tuple(repr(value) for field, value in spec.to_dict().items() if field not in PER_MODEL_FIELDS)
        if key not in cls._programs:
            functions = _make_functions(spec)
            cls._programs[key] = (jax.jit(jax.vmap(functions["train_step"], in_axes=(0, 0, 0, None, None, 0)),
                                          donate_argnums=(0, 1, 2)),
                                  jax.jit(jax.vmap(functions["inference"], in_axes=(0, 0, None))))
        return cls._programs[key]

    def train_step(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        X, y = check_batch(self.spec, X, y)
        with self._precision():
            X, y = self.jax.device_put(X, self.jax_device), self.jax.device_put(y.astype(np.int32), self.jax_device)
            self.trainable, self.running, self.opt_state, losses = self.step(
                self.trainable, self.running, self.opt_state, X, y, self.hyper)
            return np.asarray(losses)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X, _ = check_batch(self.spec, X, training=False)
        with self._precision():
            return np.asarray(self.infer(self.trainable, self.running, self.jax.device_put(X, self.jax_device)))


def _ops():
    """jax.numpy as the functional core's namespace (bnbench.adapters.functional)."""
    import types

    import jax
    import jax.numpy as jnp

    return types.SimpleNamespace(
        where=jnp.where, mean=jnp.mean, square=jnp.square, sqrt=jnp.sqrt, sum=jnp.sum, power=jnp.power,
        take_along_axis=jnp.take_along_axis,
        log_softmax=lambda logits: jax.nn.log_softmax(logits, axis=1), softmax=lambda logits: jax.nn.softmax(logits, axis=1),
        value_and_grad=lambda loss_fn: jax.value_and_grad(loss_fn, has_aux=True))


def _make_functions(spec):
    return make_functions(spec, _ops())
