"""TensorFlow: modes ``eager``, ``graph`` (tf.function) and ``xla`` (tf.function(jit_compile=True));
gradients with tf.GradientTape; devices ``cpu`` and ``cuda`` (a GPU build of TensorFlow)."""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from bnbench.reference.spec import running_stat_names, trainable_names, weight_names

from .contract import Adapter, ConventionProbe, Gradients, Unavailable
from .native_log import import_quietly, info_lines_dropped, quiet_first_call
from .profiling import add_kernel_time, seconds_per_step, xla_products


def _tf():
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")   # keep TF's start-up chatter off stderr
    tf = import_quietly("tensorflow")                   # where TF 2.21 ignores the variable
    tf.get_logger().setLevel("ERROR")    # its retracing warnings: verify builds many adapters on purpose
    return tf


class TensorflowAdapter(Adapter):
    name = "tensorflow"
    status = "maintained by Google: PyPI's newest release, checked 2026-11-26: 2.21.0, March 2026"
    modes = ("eager", "graph", "xla")
    best_mode = "xla"
    devices = ("cpu", "cuda")
    requires = ("tensorflow",)
    packages = ("tensorflow-cpu", "tensorflow")
    requirements = ("tensorflow-cpu",)
    gpu_requirements = ("tensorflow[and-cuda]",)    # its CUDA build and the CUDA libraries it pins
    tuning = {
        "eager": "op by op, tf.GradientTape",
        "graph": "tf.function of the whole step (forward, GradientTape, running statistics, update)",
        "xla": "tf.function(jit_compile=True) of the whole step: XLA",
    }
    # Its tuning log: glibc's huge pages made the xla step 7% faster at tiny, level at large. Its
    # processes (compare's workers, its asv environment) start with GLIBC_TUNABLES set for it.
    allocator = "hugepages"
    description = "tf.nn.moments + tf.nn.batch_normalization; optimizers as Variable.assign"

    @classmethod
    def device_unavailable(cls, device: str) -> Optional[str]:
        if device == "cuda":
            tf = _tf()
            if not tf.config.list_physical_devices("GPU"):
                built = "built with CUDA" if tf.test.is_built_with_cuda() else "a CPU-only build"
                return f"TensorFlow {tf.__version__} ({built}) lists no GPU"
            return None
        return super().device_unavailable(device)

    @classmethod
    def matmul_step(cls, a: np.ndarray, b: np.ndarray, device: str):
        if device != "cpu":
            return super().matmul_step(a, b, device)
        tf = _tf()
        ta, tb = tf.constant(a), tf.constant(b)
        # eager CPU ops run synchronously: the product is done when the call returns
        return f"tensorflow {tf.__version__} (tf.linalg.matmul, eager)", lambda: tf.linalg.matmul(ta, tb)

    @classmethod
    def set_threads(cls, n_threads: int) -> int:
        super().set_threads(n_threads)
        tf = _tf()
        try:   # must happen before TensorFlow runs its first op
            tf.config.threading.set_intra_op_parallelism_threads(n_threads)
            tf.config.threading.set_inter_op_parallelism_threads(n_threads)
        except RuntimeError:
            pass   # already initialised: report what it really uses
        return tf.config.threading.get_intra_op_parallelism_threads() or n_threads

    @classmethod
    def conventions(cls):
        """TensorFlow's own batch norm below Keras: the fused op with its defaults (NHWC, so the
        batch is given as (m, 1, 1, features)); its momentum is exponential_avg_factor."""
        import inspect


        tf = _tf()
        fused = tf.compat.v1.nn.fused_batch_norm
        defaults = {name: p.default for name, p in inspect.signature(fused).parameters.items()}

        def batch_norm(X):
            n = X.shape[1]
            before = np.zeros(n, np.float32), np.ones(n, np.float32)
            out, mean, variance = fused(tf.constant(X[:, None, None, :]), tf.ones(n), tf.zeros(n),
                                        mean=tf.constant(before[0]), variance=tf.constant(before[1]))
            return out.numpy()[:, 0, 0, :], before[0], before[1], mean.numpy(), variance.numpy()

        def momentum_sgd(lr, beta, gradient, steps):
            theta = tf.Variable([0.0])
            optimizer = tf.compat.v1.train.MomentumOptimizer(learning_rate=lr, momentum=beta)
            values = []
            for _ in range(steps):
                optimizer.apply_gradients([(tf.constant([gradient]), theta)])
                values.append(float(theta.numpy()[0]))
            return values

        return [ConventionProbe("tensorflow", tf.__version__, "tf.compat.v1.nn.fused_batch_norm", batch_norm,
                                defaults["exponential_avg_factor"], "tf.compat.v1.train.MomentumOptimizer", momentum_sgd)]

    def _build(self, params: Dict[str, np.ndarray]) -> None:
        tf = _tf()
        self.tf = tf
        spec = self.spec
        # ---- the spec mapped onto TensorFlow, in one place ----------------------------------------
        # tf.nn.moments gives the BIASED batch variance (tf.nn.fused_batch_norm would give the
        # unbiased one); the normalisation uses it, and the running variance takes it or
        # var * m / (m - 1) as spec.running_var says. Running averages weight the OLD value by
        # spec.bn_momentum. No Keras layer or optimizer is involved: SPEC.md's update rules are
        # written as Variable.assign, the L2 term is in the loss. batch_norm=false: hidden layers
        # tf.nn.relu(Z + b), no statistics.
        # -------------------------------------------------------------------------------------------
        self.tf_dtype = {"float32": tf.float32, "float64": tf.float64}[spec.dtype]
        self.tf_device = "/GPU:0" if self.device == "cuda" else "/CPU:0"
        self.names = trainable_names(spec)
        with tf.device(self.tf_device), info_lines_dropped():     # its first variable starts the device
            self.params = {name: tf.Variable(params[name], dtype=self.tf_dtype, name=name) for name in self.names}
            self.running = {name: tf.Variable(params[name], dtype=self.tf_dtype, trainable=False, name=name)
                            for name in running_stat_names(spec)}
            zeros = lambda: {name: tf.Variable(tf.zeros_like(v), trainable=False) for name, v in self.params.items()}  # noqa: E731
            self.velocity = zeros() if spec.optimizer in ("momentum", "adam") else {}
            self.second_moment = zeros() if spec.optimizer == "adam" else {}
            self.t = tf.Variable(0.0, dtype=self.tf_dtype, trainable=False)
        self.weights = weight_names(spec)

        if self.mode == "eager":
            wrap = lambda function: function  # noqa: E731
        else:
            wrap = lambda function: tf.function(function, jit_compile=self.mode == "xla", reduce_retracing=True)  # noqa: E731
        self._train = wrap(self._train_step_function)
        self._grads = wrap(self._gradients_function)
        self._infer = wrap(self._inference_function)
        if self.mode != "eager":
            for compiled in ("_train", "_grads", "_infer"):
                quiet_first_call(self, compiled)      # where XLA starts and logs

    # ------------------------------------------------------------------ the model
    def _forward(self, X, *, training: bool):
        tf = self.tf
        spec = self.spec
        A = X
        stats = []
        for layer in range(1, spec.n_layers + 1):
            Z = tf.matmul(A, self.params[f"W{layer}"])
            if not spec.batch_norm:                          # an ordinary layer: the ReLU takes Z + b
                A = tf.nn.relu(Z + self.params[f"b{layer}"])
                continue
            if training:
                mean, variance = tf.nn.moments(Z, axes=[0])
                stats.append((mean, variance))
            else:
                mean, variance = self.running[f"running_mean{layer}"], self.running[f"running_var{layer}"]
            Zt = tf.nn.batch_normalization(Z, mean, variance, offset=self.params[f"beta{layer}"],
                                           scale=self.params[f"gamma{layer}"], variance_epsilon=spec.bn_epsilon)
            A = tf.nn.relu(Zt)     # its gradient at 0 is 0
        logits = tf.matmul(A, self.params["W_out"]) + self.params["b_out"]
        return logits, stats

    def _loss(self, X, y):
        tf = self.tf
        logits, stats = self._forward(X, training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        if self.spec.l2:
            m = tf.cast(tf.shape(X)[0], self.tf_dtype)
            loss = loss + self.spec.l2 / (2 * m) * tf.add_n([tf.reduce_sum(tf.square(self.params[n])) for n in self.weights])
        return loss, logits, stats

    def _gradients_function(self, X, y):
        tf = self.tf
        with tf.GradientTape() as tape:
            loss, logits, _ = self._loss(X, y)
        grads = tape.gradient(loss, [self.params[name] for name in self.names])
        return loss, tf.nn.log_softmax(logits, axis=1), grads

    def _train_step_function(self, X, y):
        tf = self.tf
        spec = self.spec
        with tf.GradientTape() as tape:
            loss, _, stats = self._loss(X, y)
        grads = tape.gradient(loss, [self.params[name] for name in self.names])
        m = tf.cast(tf.shape(X)[0], self.tf_dtype)
        beta = spec.bn_momentum
        for layer, (mean, variance) in enumerate(stats, start=1):
            s2 = variance if spec.running_var == "biased" else variance * (m / (m - 1))
            self.running[f"running_mean{layer}"].assign(beta * self.running[f"running_mean{layer}"] + (1 - beta) * mean)
            self.running[f"running_var{layer}"].assign(beta * self.running[f"running_var{layer}"] + (1 - beta) * s2)
        t = self.t.assign_add(1.0)
        lr, b1, b2 = spec.learning_rate, spec.beta1, spec.beta2
        for name, g in zip(self.names, grads):
            theta = self.params[name]
            if spec.optimizer == "sgd":
                theta.assign_sub(lr * g)
            elif spec.optimizer == "momentum":
                v = self.velocity[name].assign(b1 * self.velocity[name] + (1 - b1) * g)
                theta.assign_sub(lr * v)
            else:
                v = self.velocity[name].assign(b1 * self.velocity[name] + (1 - b1) * g)
                s = self.second_moment[name].assign(b2 * self.second_moment[name] + (1 - b2) * tf.square(g))
                v_hat = v / (1 - tf.pow(tf.constant(b1, self.tf_dtype), t))
                s_hat = s / (1 - tf.pow(tf.constant(b2, self.tf_dtype), t))
                theta.assign_sub(lr * v_hat / (tf.sqrt(s_hat) + spec.adam_epsilon))
        return loss

    def _inference_function(self, X):
        logits, _ = self._forward(X, training=False)
        return self.tf.nn.softmax(logits, axis=1)

    # ------------------------------------------------------------------ contract
    def to_device(self, X: np.ndarray, y: Optional[np.ndarray] = None):
        X, y = self._check(X, y, training=y is not None)
        tf = self.tf
        with tf.device(self.tf_device):
            X_tensor = tf.identity(tf.constant(X, dtype=self.tf_dtype))
            y_tensor = None if y is None else tf.identity(tf.constant(y, dtype=tf.int64))
        return X_tensor, y_tensor

    def train_step(self, X: np.ndarray, y: np.ndarray) -> float:
        return self.train_step_prepared(self.to_device(X, y))

    @classmethod
    def profile_steps(cls, adapter: Adapter, batch, steps: int):
        """tf.profiler's trace (its XSpace, read with TensorFlow's own protobuf): every thunk XLA
        runs, by its instruction's name in the compiled module, its kind read from that module's
        text (``xla_products``); ``adapter`` gives the text (``compiled_step_text``). As in JAX,
        XLA runs some products asynchronously: the totals are right, a split between two
        overlapping thunks less so."""
        import glob
        import os
        import tempfile

        tf = _tf()
        from tensorflow.tsl.profiler.protobuf import xplane_pb2

        products = xla_products(adapter.compiled_step_text(batch))
        with tempfile.TemporaryDirectory() as directory:
            tf.profiler.experimental.start(directory)
            profiled = seconds_per_step(adapter, batch, steps)
            tf.profiler.experimental.stop()
            space = xplane_pb2.XSpace()
            with open(glob.glob(os.path.join(directory, "**", "*.xplane.pb"), recursive=True)[0], "rb") as handle:
                space.ParseFromString(handle.read())
        kernels: Dict[str, tuple] = {}
        for plane in space.planes:
            hlo_op = [key for key, stat in plane.stat_metadata.items() if stat.name == "hlo_op"]
            for line in plane.lines:
                for event in line.events:
                    if not any(stat.metadata_id in hlo_op for stat in event.stats):
                        continue
                    name = plane.event_metadata[event.metadata_id].name
                    add_kernel_time(kernels, name, event.duration_ps / 1e12, kind="product" if name in products else "other")
        return f"tensorflow {tf.__version__} tf.profiler (XLA thunks)", profiled, kernels

    def compiled_step_text(self, batch) -> str:
        if self.mode != "xla":
            raise Unavailable(f"the {self.name} adapter profiles its XLA step only (mode {self.mode!r} is not XLA-compiled)")
        return self._train.experimental_get_compiler_ir(batch[0], batch[1])(stage="optimized_hlo")

    def train_step_prepared(self, batch) -> float:
        with self.tf.device(self.tf_device):
            return float(self._train(batch[0], batch[1]).numpy())   # .numpy() waits for the device

    def gradients(self, X: np.ndarray, y: np.ndarray) -> Gradients:
        X, y = self.to_device(X, y)
        with self.tf.device(self.tf_device):
            loss, log_probs, grads = self._grads(X, y)
        return Gradients(float(loss.numpy()), np.exp(log_probs.numpy()),
                         {name: g.numpy() for name, g in zip(self.names, grads)})

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X, _ = self.to_device(X)
        with self.tf.device(self.tf_device):
            return self._infer(X).numpy()

    def predict_prepared(self, batch) -> None:
        with self.tf.device(self.tf_device):
            self._infer(batch[0]).numpy()

    def state(self) -> Dict[str, np.ndarray]:
        arrays = {name: v.numpy().copy() for name, v in self.params.items()}
        arrays.update({name: v.numpy().copy() for name, v in self.running.items()})
        return self._ordered_state(arrays)
