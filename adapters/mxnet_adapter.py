"""MXNet 1.9.1 (gluon): modes ``imperative`` (gluon + autograd) and ``hybrid`` (``hybridize()``:
the network runs as one cached symbolic graph). It lives in its own environment (numpy<1.24,
docs/FRAMEWORKS.md); from any other environment it runs in a worker process (bnbench.timing.worker)."""
from __future__ import annotations

import os
from typing import Dict, Optional

import numpy as np

from bnbench.reference.spec import Spec, running_stat_names, trainable_names, weight_names

from .contract import Adapter, ConventionProbe, Gradients, Unsupported
from .declaration import Alternative


def _mx():
    import mxnet as mx

    return mx


class MxnetAdapter(Adapter):
    name = "mxnet"
    status = "retired: Apache MXNet moved to the Apache Attic in 2023; PyPI's newest release, checked 2026-11-26: 1.9.1, May 2022"
    modes = ("imperative", "hybrid")
    best_mode = "hybrid"
    devices = ("cpu", "cuda")
    requires = ("mxnet",)
    environment = "mxnet"
    requirements = ("mxnet==1.9.1", "numpy<1.24")
    gpu_requirements = ("mxnet-cu117==1.9.1", "numpy<1.24")   # its newest CUDA build
    asv_variables = (("OMP_NUM_THREADS", "2"),)
    tested_in_environment = True       # its numpy 1.23 is not the main environment's
    # MXNet's own fused momentum kernels keep mom = momentum mom - lr g and add mom to the weight:
    # with lr (1 - beta1) for lr that is the spec's rule with mom = -lr v (same numbers up to
    # rounding), so the spec's momentum runs as one sgd_mom_update per parameter (its tuning log:
    # 3x faster than mx.nd ops at tiny; and 4% faster than one multi_sgd_mom_update for all
    # at large). In float32 only: the
    # kernels take lr and momentum as float32 parameters, which puts float64 weights 1.5e-8 off
    # the spec after one step (measured), so float64 keeps the mx.nd ops.
    _update_flags = ("float32 momentum as mx.nd.sgd_mom_update per parameter (lr (1 - beta1), momentum beta1, mom = -lr v); "
                     "float64, sgd and Adam as mx.nd ops")
    tuning = {
        "imperative": "gluon blocks run op by op under autograd.record(); " + _update_flags,
        "hybrid": "net.hybridize(static_alloc=True, static_shape=True): one cached graph for the network; " + _update_flags,
    }
    allocator = "malloc-reuse"
    alternatives = {mode: {
        "nd-ops": Alternative("momentum written as mx.nd ops: v[:] = b1 v + (1 - b1) g; theta -= lr v (three to "
                              "four ops per parameter)"),
        "multi-sgd-mom-update": Alternative("momentum as one mx.nd.multi_sgd_mom_update for every parameter"),
    } for mode in ("imperative", "hybrid")}
    description = "gluon Dense(use_bias=False) + gluon BatchNorm + relu; optimizers written with mx.nd"

    @classmethod
    def framework_cannot(cls, spec: Spec, mode: str, device: str) -> Optional[str]:
        if not spec.batch_norm:
            return None                 # no BatchNorm: neither of its limits below applies
        if spec.running_var == "unbiased":
            return ("gluon BatchNorm always feeds the biased batch variance into its running variance "
                    "(bnbench conventions measures it); running_var='unbiased' cannot be expressed with it")
        if spec.dtype == "float64" and float(np.float32(spec.bn_momentum)) != spec.bn_momentum:
            return (f"MXNet's BatchNorm operator holds its momentum as a float32 parameter: "
                    f"bn_momentum={spec.bn_momentum!r} becomes {float(np.float32(spec.bn_momentum))!r}, so float64 "
                    f"running statistics drift about 6e-8 relative from the spec, above the float64 tolerance; "
                    f"use float32, or a bn_momentum exact in float32 (0.75, 0.875, 0.9375, ...)")
        return None

    @classmethod
    def device_unavailable(cls, device: str) -> Optional[str]:
        if device == "cuda":
            mx = _mx()
            if mx.context.num_gpus() == 0:
                return f"MXNet {mx.__version__} sees no GPU (the PyPI mxnet wheel is a CPU build)"
            return None
        return super().device_unavailable(device)

    @classmethod
    def set_threads(cls, n_threads: int) -> int:
        # MXNet sizes its OpenMP pool from these when it loads; threadpoolctl (in the base class)
        # resizes the OpenMP runtime already loaded.
        os.environ["OMP_NUM_THREADS"] = str(n_threads)
        os.environ["MXNET_OMP_MAX_THREADS"] = str(n_threads)
        _mx()
        return super().set_threads(n_threads)

    @classmethod
    def matmul_step(cls, a: np.ndarray, b: np.ndarray, device: str):
        if device != "cpu":
            return super().matmul_step(a, b, device)
        mx = _mx()
        # gluon Dense is the FullyConnected operator (oneDNN), which stores its weight transposed;
        # mx.nd.dot is another kernel, five times slower (35 against 183 GFLOP/s on the CPU peak's product, 2 cores)
        ma, weight = mx.nd.array(a, dtype=a.dtype), mx.nd.array(np.ascontiguousarray(b.T), dtype=b.dtype)
        out = mx.nd.empty((a.shape[0], b.shape[1]), dtype=a.dtype)

        def step():
            mx.nd.FullyConnected(ma, weight, no_bias=True, num_hidden=b.shape[1], flatten=False, out=out)
            out.wait_to_read()      # MXNet's engine is asynchronous
            return out

        return f"mxnet {mx.__version__} (FullyConnected, gluon Dense's operator)", step

    def _build(self, params: Dict[str, np.ndarray]) -> None:
        if self.variant in ("multi-sgd-mom-update", "nd-ops") and (self.spec.optimizer, self.spec.dtype) != ("momentum", "float32"):
            raise Unsupported(f"the {self.variant} alternative is an alternative to the fused float32 momentum "
                              f"only, not to optimizer={self.spec.optimizer!r} in {self.spec.dtype}")
        self.fused_momentum = (self.spec.optimizer, self.spec.dtype) == ("momentum", "float32") and self.variant != "nd-ops"
        mx = _mx()
        from mxnet import gluon

        self.mx = mx
        self.autograd = mx.autograd
        spec = self.spec
        self.ctx = mx.gpu(0) if self.device == "cuda" else mx.cpu()
        self.dtype = spec.dtype
        # ---- the spec mapped onto MXNet, in one place -----------------------------------------
        # gluon BatchNorm: momentum = weight of the OLD running value = spec.bn_momentum (its own
        # default 0.9 happens to be the spec's); epsilon = spec.bn_epsilon; center/scale on; it
        # normalises with the biased variance and feeds the biased one into the running variance
        # (so running_var='unbiased' is unsupported). Never the raw mx.nd.BatchNorm, whose
        # defaults are fix_gamma=True and eps=1e-3. gluon Dense stores W transposed (out x in).
        # Inference: a block called outside autograd.record() uses the running statistics.
        # batch_norm=false: hidden layers gluon Dense with its bias, then relu (gradient 0 at 0).
        # The gluon Trainer's optimizers differ from the spec (SGD momentum v = b v - lr g,
        # Adam with its epsilon outside the bias correction), so the update rules of SPEC.md are
        # written with mx.nd in-place ops; the L2 term is in the loss.
        # ----------------------------------------------------------------------------------------
        self.net = gluon.nn.HybridSequential()
        self.dense, self.norm = [], []
        width_in = spec.n_features
        for width in spec.hidden:
            dense = gluon.nn.Dense(width, use_bias=not spec.batch_norm, in_units=width_in, flatten=False)
            self.dense.append(dense)
            width_in = width
            if not spec.batch_norm:                          # an ordinary layer: Dense with its bias, relu
                self.net.add(dense, gluon.nn.Activation("relu"))
                continue
            norm = gluon.nn.BatchNorm(axis=1, momentum=spec.bn_momentum, epsilon=spec.bn_epsilon,
                                      center=True, scale=True, use_global_stats=False, in_channels=width)
            self.net.add(dense, norm, gluon.nn.Activation("relu"))
            self.norm.append(norm)
        self.output = gluon.nn.Dense(spec.n_classes, use_bias=True, in_units=width_in, flatten=False)
        self.net.add(self.output)
        self.net.initialize(ctx=self.ctx)
        self.net.cast(self.dtype)
        for layer, dense in enumerate(self.dense, start=1):
            dense.weight.set_data(self._nd(params[f"W{layer}"].T))
            if not spec.batch_norm:
                dense.bias.set_data(self._nd(params[f"b{layer}"]))
        for layer, norm in enumerate(self.norm, start=1):
            norm.gamma.set_data(self._nd(params[f"gamma{layer}"]))
            norm.beta.set_data(self._nd(params[f"beta{layer}"]))
            norm.running_mean.set_data(self._nd(params[f"running_mean{layer}"]))
            norm.running_var.set_data(self._nd(params[f"running_var{layer}"]))
        self.output.weight.set_data(self._nd(params["W_out"].T))
        self.output.bias.set_data(self._nd(params["b_out"]))
        if self.mode == "hybrid":
            self.net.hybridize(static_alloc=True, static_shape=True)

        self.names = trainable_names(spec)
        self.param_of = {}
        for layer, dense in enumerate(self.dense, start=1):
            self.param_of.update({f"W{layer}": dense.weight} if spec.batch_norm else
                                 {f"W{layer}": dense.weight, f"b{layer}": dense.bias})
        for layer, norm in enumerate(self.norm, start=1):
            self.param_of.update({f"gamma{layer}": norm.gamma, f"beta{layer}": norm.beta})
        self.param_of.update({"W_out": self.output.weight, "b_out": self.output.bias})
        self.transposed = {name for name in self.names if name.startswith("W")}
        self.weights = [self.param_of[name] for name in weight_names(spec)]
        zeros = lambda: {name: mx.nd.zeros_like(p.data()) for name, p in self.param_of.items()}  # noqa: E731
        self.velocity = zeros() if spec.optimizer in ("momentum", "adam") else {}
        self.second_moment = zeros() if spec.optimizer == "adam" else {}
        self.t = 0
        self.loss_function = gluon.loss.SoftmaxCrossEntropyLoss(axis=1, sparse_label=True)

    def _nd(self, array: np.ndarray):
        return self.mx.nd.array(np.ascontiguousarray(array), ctx=self.ctx, dtype=self.dtype)

    # ------------------------------------------------------------------ the model
    def _record_loss(self, X, y):
        """Training-mode forward under autograd (updates the running statistics) and the loss."""
        mx = self.mx
        with self.autograd.record(train_mode=True):
            logits = self.net(X)
            loss = self.loss_function(logits, y).mean()
            if self.spec.l2:
                m = X.shape[0]
                loss = loss + self.spec.l2 / (2 * m) * mx.nd.add_n(*[mx.nd.sum(w.data() * w.data()) for w in self.weights])
        return loss, logits

    def _update(self) -> None:
        spec = self.spec
        self.t += 1
        lr, b1, b2 = spec.learning_rate, spec.beta1, spec.beta2
        if self.fused_momentum:
            return self._fused_momentum(lr * (1 - b1), b1)
        for name, parameter in self.param_of.items():
            theta, g = parameter.data(), parameter.grad()
            if spec.optimizer == "sgd":
                theta -= lr * g
            elif spec.optimizer == "momentum":
                v = self.velocity[name]
                v[:] = b1 * v + (1 - b1) * g
                theta -= lr * v
            else:
                v, s = self.velocity[name], self.second_moment[name]
                v[:] = b1 * v + (1 - b1) * g
                s[:] = b2 * s + (1 - b2) * g * g
                v_hat = v / (1 - b1 ** self.t)
                s_hat = s / (1 - b2 ** self.t)
                theta -= lr * v_hat / (self.mx.nd.sqrt(s_hat) + spec.adam_epsilon)

    def _fused_momentum(self, fused_lr: float, momentum: float) -> None:
        """The spec's momentum through MXNet's fused kernels; self.velocity holds mom = -lr v."""
        mx = self.mx
        weights = [parameter.data() for parameter in self.param_of.values()]
        grads = [parameter.grad() for parameter in self.param_of.values()]
        moms = [self.velocity[name] for name in self.param_of]
        if self.variant != "multi-sgd-mom-update":
            for weight, grad, mom in zip(weights, grads, moms):
                mx.nd.sgd_mom_update(weight, grad, mom, lr=fused_lr, momentum=momentum, wd=0.0, out=weight)
        else:
            data = [array for triple in zip(weights, grads, moms) for array in triple]
            mx.nd.multi_sgd_mom_update(*data, lrs=(fused_lr,) * len(weights), wds=(0.0,) * len(weights),
                                       momentum=momentum, num_weights=len(weights), out=weights)

    # ------------------------------------------------------------------ contract
    def to_device(self, X: np.ndarray, y: Optional[np.ndarray] = None):
        X, y = self._check(X, y, training=y is not None)
        return self._nd(X), (None if y is None else self._nd(y))

    def train_step(self, X: np.ndarray, y: np.ndarray) -> float:
        return self.train_step_prepared(self.to_device(X, y))

    def train_step_prepared(self, batch) -> float:
        loss, _ = self._record_loss(*batch)
        loss.backward()
        self._update()
        return float(loss.asscalar())     # asscalar() waits for MXNet's asynchronous engine

    def gradients(self, X: np.ndarray, y: np.ndarray) -> Gradients:
        X, y = self.to_device(X, y)
        saved = {name: self.mx.nd.array(value.asnumpy(), ctx=self.ctx, dtype=self.dtype)
                 for name, value in self._running().items()}
        loss, logits = self._record_loss(X, y)
        loss.backward()
        grads = {name: self.param_of[name].grad().asnumpy() for name in self.names}
        grads = {name: (g.T.copy() if name in self.transposed else g) for name, g in grads.items()}
        probs = self.mx.nd.softmax(logits, axis=1).asnumpy()
        for name, value in saved.items():          # the forward above updated them; nothing may change
            self._running_parameter(name).set_data(value)
        return Gradients(float(loss.asscalar()), probs, grads)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X, _ = self.to_device(X)
        return self.mx.nd.softmax(self.net(X), axis=1).asnumpy()

    def predict_prepared(self, batch) -> None:
        self.net(batch[0]).wait_to_read()

    def sync(self) -> None:
        self.mx.nd.waitall()

    def _running_parameter(self, name: str):
        layer = int(name.rsplit("running_mean" if name.startswith("running_mean") else "running_var", 1)[1])
        norm = self.norm[layer - 1]
        return norm.running_mean if name.startswith("running_mean") else norm.running_var

    def _running(self):
        return {name: self._running_parameter(name).data() for name in running_stat_names(self.spec)}

    def state(self) -> Dict[str, np.ndarray]:
        arrays = {}
        for name, parameter in self.param_of.items():
            value = parameter.data().asnumpy()
            arrays[name] = value.T.copy() if name in self.transposed else value
        arrays.update({name: value.asnumpy() for name, value in self._running().items()})
        return self._ordered_state(arrays)

    # ------------------------------------------------------------------ conventions
    @classmethod
    def conventions(cls):

        mx = _mx()
        from mxnet import autograd, gluon

        def gluon_batch_norm(X):
            layer = gluon.nn.BatchNorm(in_channels=X.shape[1])
            layer.initialize()
            before = layer.running_mean.data().asnumpy(), layer.running_var.data().asnumpy()
            with autograd.record(train_mode=True):
                out = layer(mx.nd.array(X))
            out.backward()     # MXNet updates the running statistics in the backward pass
            return (out.asnumpy(), before[0], before[1], layer.running_mean.data().asnumpy(),
                    layer.running_var.data().asnumpy())

        def raw_batch_norm(X, gamma_value=1.0):
            n = X.shape[1]
            gamma, beta = mx.nd.full((n,), gamma_value), mx.nd.zeros((n,))
            moving_mean, moving_var = mx.nd.zeros((n,)), mx.nd.ones((n,))
            for array in (gamma, beta):
                array.attach_grad()
            with autograd.record(train_mode=True):
                out = mx.nd.BatchNorm(mx.nd.array(X), gamma, beta, moving_mean, moving_var)
            out.backward()
            return out.asnumpy(), np.zeros(n), np.ones(n), moving_mean.asnumpy(), moving_var.asnumpy()

        def momentum_sgd(lr, beta, gradient, steps):
            parameter = gluon.Parameter("theta", shape=(1,))
            parameter.initialize(mx.init.Zero())
            trainer = gluon.Trainer([parameter], "sgd", {"learning_rate": lr, "momentum": beta})
            values = []
            for _ in range(steps):
                with autograd.record():
                    loss = (parameter.data() * gradient).sum()
                loss.backward()
                trainer.step(1)
                values.append(float(parameter.data().asscalar()))
            return values

        declared = gluon.nn.BatchNorm()._kwargs["momentum"]
        return [ConventionProbe("mxnet", mx.__version__, "gluon.nn.BatchNorm", gluon_batch_norm, declared,
                                "gluon.Trainer('sgd', momentum)", momentum_sgd),
                ConventionProbe("mxnet", mx.__version__, "mx.nd.BatchNorm (raw op)", raw_batch_norm,
                                _raw_default(mx, "momentum"),
                                batch_norm_with_gamma=lambda X, gamma: raw_batch_norm(X, gamma)[0])]


def _raw_default(mx, argument: str) -> float:
    """A default of the raw operator, read from its documentation string (the registry's truth)."""
    import re

    doc = mx.nd.BatchNorm.__doc__ or ""
    match = re.search(rf"{argument}\s*:\s*float, optional, default=([0-9.eE+-]+)", doc)
    return float(match.group(1)) if match else float("nan")
