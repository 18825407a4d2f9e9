"""PyTensor (the maintained successor of Theano) and Theano 1.0.5 itself: the spec as a symbolic
graph, differentiated by grad and compiled into functions whose updates change shared
variables. Both adapters build the same graph through the same code (``SymbolicAdapter``); only
the module differs. Modes ``c`` (the C virtual machine, g++-compiled ops: Theano's classic fast
path) and ``python`` (the Python linker: no compilation, a slow reference for the compiler)."""
from __future__ import annotations

import importlib
import os
from typing import ClassVar, Dict, Tuple

import numpy as np

from bnbench.reference.spec import running_stat_names, trainable_names, weight_names

from .contract import Adapter, Gradients
from .declaration import Alternative
from .profiling import add_kernel_time, kind_of

# The ops of PyTensor's and Theano's graphs that are matrix products (BLAS and its wrappers).
PRODUCT_KERNELS = frozenset({"gemm", "gemv", "cgemv", "dot", "dot22", "dot22scalar"})

MODES = {
    # linker and graph rewrites of each mode; the "c" mode is PyTensor's FAST_RUN with the C VM
    "c": ("cvm", "fast_run"),
    "python": ("py", "fast_compile"),
}


BLAS_PACKAGE = "libopenblas-dev"


def system_blas() -> str:
    """The link flags of the system's OpenBLAS ('-lopenblas') where the C compiler finds it, else
    '' (no BLAS: PyTensor and Theano then run their products through NumPy's dot or a C
    fallback, and neither finds Debian's OpenBLAS by itself, so the adapters say it)."""
    import functools
    import subprocess

    @functools.lru_cache(maxsize=None)
    def found() -> bool:
        try:
            answer = subprocess.run(["g++", "-print-file-name=libopenblas.so"], capture_output=True, text=True,
                                    timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return False
        return os.path.isabs(answer) and os.path.exists(answer)

    return "-lopenblas" if found() else ""


def blas_flags_text() -> str:
    """What the kept C form links its products to, for its published flags."""
    return ("blas ldflags -lopenblas (Debian's OpenBLAS)" if system_blas()
            else f"no BLAS linked ({BLAS_PACKAGE} is not installed: products through NumPy's dot or a C fallback)")


# A rewrite of PyTensor's fast_run that folds a scalar into a product. In PyTensor's gradient the
# dZ @ W.T of every layer but the first appears twice, once negated: folded into
# Dot22Scalar(dZ, W.T, -1), that one is no longer the same node as Dot22(dZ, W.T), the merge
# rewrite cannot share them, and the step runs 10 products of 1024^3 at large where the spec has
# 8 (its profile; on the compiled graph, excluding the rewrite leaves each product once: a test).
# Theano's graph of the same step has each product once either way.
DOT22SCALAR = "local_dot22_to_dot22scalar"


def symbolic_alternatives(openmp: bool, no_blas: Tuple[str, str]) -> Dict[str, Dict[str, Alternative]]:
    """The C mode's alternatives of PyTensor and Theano, made through their configuration (set
    before the functions are compiled): OpenMP in the elementwise C loops on or off (the other
    way than the kept form), the C ops compiled for this processor, and no BLAS linked
    (``no_blas``: the flags variable that says so)."""
    toggle = ("no-openmp", "config.openmp = False: the elementwise C loops on one thread") if openmp else \
        ("openmp", "config.openmp = True: the elementwise C loops on OpenMP threads")
    return {"c": {toggle[0]: Alternative(toggle[1]),
                  "march-native": Alternative("the C ops compiled with '-O3 -march=native' added to the compiler flags "
                                              "(config gcc cxxflags)"),
                  "no-blas": Alternative("no BLAS linked (blas ldflags empty): the products through NumPy's dot or the "
                                         "framework's C fallback, what a pip install does where it finds no BLAS",
                                         (no_blas,))}}


class SymbolicAdapter(Adapter):
    """The graph builder shared by PyTensor and Theano; ``_library`` gives the module's pieces."""

    modes = ("c", "python")
    best_mode = "c"
    devices = ("cpu",)

    @classmethod
    def _library(cls):
        """(root module, tensor module, Mode class, log_softmax(x), softmax(x)), rows of x."""
        raise NotImplementedError

    @classmethod
    def matmul_step(cls, a: np.ndarray, b: np.ndarray, device: str):
        if device != "cpu":
            return super().matmul_step(a, b, device)
        library, pt, Mode, _, _ = cls._library()
        cls._link_blas(library.config)          # as the kept form links it: the ceiling is its matmul's
        product = library.function([], pt.dot(library.shared(a), library.shared(b)),
                                   mode=Mode(linker="cvm", optimizer="fast_run"))
        return f"{library.__name__} {library.__version__} (dot of shared variables, C linker)", product

    # the kept C form runs its elementwise loops on OpenMP threads (config.openmp; its tuning log)
    openmp: ClassVar[bool] = False
    # whether the kept C form compiles with the DOT22SCALAR rewrite (PyTensor's does not: its tuning log)
    dot22scalar: ClassVar[bool] = True

    @classmethod
    def tuning_of(cls, mode: str) -> str:
        flags = super().tuning_of(mode)
        return f"{flags}; {blas_flags_text()}" if mode == "c" else flags

    @classmethod
    def _link_blas(cls, config) -> None:
        """Theano reads its BLAS from THEANO_FLAGS when imported (theano_worker_variables)."""

    def _build(self, params: Dict[str, np.ndarray]) -> None:
        pytensor, pt, Mode, log_softmax, softmax = self._library()
        config = pytensor.config
        config.openmp = self.openmp != (self.variant in ("openmp", "no-openmp"))
        self._link_blas(config)
        if self.variant == "march-native":
            gcc = config.gcc if hasattr(config, "gcc") else None      # Theano nests it, PyTensor spells it gcc__cxxflags
            if gcc is not None:
                gcc.cxxflags = f"{gcc.cxxflags} -O3 -march=native".strip()
            else:
                config.gcc__cxxflags = f"{config.gcc__cxxflags} -O3 -march=native".strip()
        spec = self.spec
        # ---- the spec mapped onto PyTensor / Theano, in one place ------------------------------
        # No layer library: the graph is SPEC.md's formulas (biased variance for normalising;
        # running averages weighting the OLD value by spec.bn_momentum, biased or unbiased as
        # spec.running_var says; ReLU as switch(Zt > 0, Zt, 0), gradient 0 at 0), every variable
        # in the spec's dtype, updates as the function's `updates`, the L2 term in the loss;
        # batch_norm=false: hidden layers Z = A W + b, then the same ReLU (Lasagne: DenseLayer with b).
        # ----------------------------------------------------------------------------------------
        dtype = spec.dtype
        # Python numbers would enter the graph as float64 constants and upcast a float32 model
        c = lambda value: pt.constant(np.asarray(value, dtype=dtype))  # noqa: E731
        shared = lambda name, value: pytensor.shared(np.asarray(value, dtype=dtype), name=name)  # noqa: E731
        self.names = trainable_names(spec)
        self.params = {name: shared(name, params[name]) for name in self.names}
        self.running = {name: shared(name, params[name]) for name in running_stat_names(spec)}
        X = pt.matrix("X", dtype=dtype)
        y = pt.vector("y", dtype="int64")
        m = pt.cast(X.shape[0], dtype)

        forward = lambda training: self._forward(pt, X, training, c)  # noqa: E731

        logits, stats = forward(training=True)
        log_probs = log_softmax(logits)
        # log P[i, y_i] through a flat index: Theano 0.8.2 (Lasagne's) mis-evaluates the two-array
        # advanced index log_probs[arange(m), y] with today's numpy; one index array works everywhere
        picked = log_probs.flatten()[pt.arange(X.shape[0]) * spec.n_classes + y]
        loss = -picked.mean()
        if spec.l2:
            loss = loss + c(spec.l2) / (c(2) * m) * pt.add(*[pt.sqr(self.params[n]).sum() for n in weight_names(spec)])
        grads = pytensor.grad(loss, [self.params[name] for name in self.names])

        updates = []
        beta, one_minus_beta = c(spec.bn_momentum), c(1 - spec.bn_momentum)
        for layer, (mu, var) in enumerate(stats, start=1):
            s2 = var if spec.running_var == "biased" else var * (m / (m - c(1)))
            updates.append((self.running[f"running_mean{layer}"], beta * self.running[f"running_mean{layer}"] + one_minus_beta * mu))
            updates.append((self.running[f"running_var{layer}"], beta * self.running[f"running_var{layer}"] + one_minus_beta * s2))
        lr, b1, b2 = c(spec.learning_rate), c(spec.beta1), c(spec.beta2)
        one_minus_b1, one_minus_b2 = c(1 - spec.beta1), c(1 - spec.beta2)
        t = pytensor.shared(np.asarray(0.0, dtype=dtype), name="t")
        t_next = t + c(1)
        if spec.optimizer == "adam":
            updates.append((t, t_next))
        for name, g in zip(self.names, grads):
            theta = self.params[name]
            if spec.optimizer == "sgd":
                updates.append((theta, theta - lr * g))
                continue
            v = pytensor.shared(np.zeros_like(params[name], dtype=dtype), name=f"v_{name}")
            v_next = b1 * v + one_minus_b1 * g
            updates.append((v, v_next))
            if spec.optimizer == "momentum":
                updates.append((theta, theta - lr * v_next))
            else:
                s = pytensor.shared(np.zeros_like(params[name], dtype=dtype), name=f"s_{name}")
                s_next = b2 * s + one_minus_b2 * pt.sqr(g)
                updates.append((s, s_next))
                v_hat = v_next / (c(1) - b1 ** t_next)
                s_hat = s_next / (c(1) - b2 ** t_next)
                updates.append((theta, theta - lr * v_hat / (pt.sqrt(s_hat) + c(spec.adam_epsilon))))

        linker, optimizer = MODES[self.mode]
        mode = Mode(linker=linker, optimizer=optimizer)
        if not (self.dot22scalar or self.variant == "dot22scalar"):
            mode = mode.excluding(DOT22SCALAR)
        self._train = pytensor.function([X, y], loss, updates=updates, mode=mode)
        self._train_graph = ([X, y], loss, updates, mode)     # compiled again, profiled, by profile()
        self._grads = pytensor.function([X, y], [loss, log_probs] + list(grads), mode=mode)
        eval_logits, _ = forward(training=False)
        self._infer = pytensor.function([X], softmax(eval_logits), mode=mode)

    @classmethod
    def profile_steps(cls, adapter: Adapter, batch, steps: int):
        """The training function compiled again with the library's ProfileStats (its per-op
        wall time, the ops' C or Python code as they run in the step): self time of every op."""
        import time

        library = cls._library()[0]
        ProfileStats = importlib.import_module(f"{library.__name__}.compile").ProfileStats
        inputs, loss, updates, mode = adapter._train_graph
        stats = ProfileStats(atexit_print=False)
        train = library.function(inputs, loss, updates=updates, mode=mode, profile=stats)
        for _ in range(2):
            train(*batch)
        before_time, before_calls = dict(stats.apply_time), dict(stats.apply_callcount)
        started = time.perf_counter()
        for _ in range(steps):
            train(*batch)
        profiled = (time.perf_counter() - started) / steps
        kernels: Dict[str, Tuple[int, float]] = {}
        for key, seconds in stats.apply_time.items():
            node = key[-1] if isinstance(key, tuple) else key      # PyTensor keys by (graph, node)
            name = str(node.op)
            name = name if len(name) <= 60 else name[:57] + "..."
            add_kernel_time(kernels, name, seconds - before_time.get(key, 0.0), kind=kind_of(name, PRODUCT_KERNELS),
                            calls=stats.apply_callcount[key] - before_calls.get(key, 0))
        return f"{library.__name__} {library.__version__} ProfileStats", profiled, kernels

    def _forward(self, pt, X, training: bool, c):
        """Logits of the network and, in training mode, each layer's batch (mean, variance)."""
        spec = self.spec
        A = X
        stats = []
        for layer in range(1, spec.n_layers + 1):
            Z = pt.dot(A, self.params[f"W{layer}"])
            if not spec.batch_norm:                          # an ordinary layer: the ReLU takes Z + b
                Z = Z + self.params[f"b{layer}"]
                A = pt.switch(pt.gt(Z, c(0)), Z, pt.zeros_like(Z))
                continue
            if training:
                mu = Z.mean(axis=0)
                var = pt.sqr(Z - mu).mean(axis=0)          # biased, for normalising
                stats.append((mu, var))
            else:
                mu, var = self.running[f"running_mean{layer}"], self.running[f"running_var{layer}"]
            Zt = self.params[f"gamma{layer}"] * ((Z - mu) / pt.sqrt(var + c(spec.bn_epsilon))) + self.params[f"beta{layer}"]
            A = pt.switch(pt.gt(Zt, c(0)), Zt, pt.zeros_like(Zt))
        logits = pt.dot(A, self.params["W_out"]) + self.params["b_out"]
        return logits, stats

    def train_step(self, X: np.ndarray, y: np.ndarray) -> float:
        X, y = self._check(X, y)
        return float(self._train(X, y))

    def gradients(self, X: np.ndarray, y: np.ndarray) -> Gradients:
        X, y = self._check(X, y)
        loss, log_probs, *grads = self._grads(X, y)
        return Gradients(float(loss), np.exp(log_probs), {name: np.asarray(g) for name, g in zip(self.names, grads)})

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X, _ = self._check(X, None, training=False)
        return np.asarray(self._infer(X))

    def state(self) -> Dict[str, np.ndarray]:
        arrays = {name: p.get_value() for name, p in self.params.items()}
        arrays.update({name: r.get_value() for name, r in self.running.items()})
        return self._ordered_state(arrays)


class PytensorAdapter(SymbolicAdapter):
    name = "pytensor"
    status = "maintained by the PyMC developers (Theano's fork): PyPI's newest release, checked 2026-11-26: 3.3.7, November 2026"
    requires = ("pytensor",)
    requirements = ("pytensor",)
    tuning = {
        "c": "pytensor.function(mode=Mode(linker='cvm', optimizer='fast_run').excluding('local_dot22_to_dot22scalar')): "
             "rewritten graph, C ops compiled by g++, dZ @ W.T and its negation one product (8 of 1024^3 per step at "
             "large, not 10); config.openmp = True (the elementwise C loops on OpenMP threads)",
        "python": "pytensor.function(mode=Mode(linker='py', optimizer='fast_compile')): Python implementations",
    }
    # Its tuning logs: OpenMP made the step 15% faster at large, level at tiny; without the
    # DOT22SCALAR rewrite it was 0.950 [0.924, 0.975] of the step with it at large, resolved, and
    # 0.965 [0.923, 1.001] at tiny: two products of 1024^3 fewer, which is why it is kept (2026-11-26).
    openmp = True
    dot22scalar = False
    alternatives = symbolic_alternatives(openmp, ("PYTENSOR_FLAGS", "blas__ldflags="))
    alternatives["c"]["dot22scalar"] = Alternative(
        f"PyTensor's fast_run rewrite {DOT22SCALAR} kept (its default): a negated dZ @ W.T becomes a second "
        "product (10 of 1024^3 per step at large instead of 8)")
    system_packages = (BLAS_PACKAGE,)
    description = "symbolic graph of the spec; pytensor.grad; updates on shared variables"

    @classmethod
    def _link_blas(cls, config) -> None:
        """The system's OpenBLAS, unless PYTENSOR_FLAGS names the BLAS (as the no-blas alternative
        does): set before PyTensor looks for one itself, which finds no Debian library and warns."""
        if "blas__ldflags" not in os.environ.get("PYTENSOR_FLAGS", ""):
            config.blas__ldflags = system_blas()

    @classmethod
    def _library(cls):
        import pytensor
        import pytensor.tensor as pt
        from pytensor.compile.mode import Mode

        return (pytensor, pt, Mode, lambda x: pt.special.log_softmax(x, axis=1), lambda x: pt.special.softmax(x, axis=1))
