"""PyTorch: modes ``eager`` and ``compiled`` (torch.compile, inductor), devices ``cpu`` and ``cuda``."""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from bnbench.reference.spec import running_stat_names, trainable_names, weight_names

from .contract import Adapter, ConventionProbe, Gradients, Unavailable, Unsupported
from .profiling import kind_of, seconds_per_step

# torch's matrix-product ops, as torch.profiler names them (the rest are its other kernels).
PRODUCT_KERNELS = frozenset({"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear"})
from .declaration import Alternative


def _torch():
    import torch

    return torch


class TorchAdapter(Adapter):
    name = "torch"
    status = "maintained by the PyTorch Foundation (Linux Foundation): PyPI's newest release, checked 2026-11-26: 2.15.0, October 2026"
    modes = ("eager", "compiled")
    best_mode = "compiled"
    devices = ("cpu", "cuda")
    requires = ("torch",)
    # Pinned: the machines keep a CPU wheel of exactly this version; any other pulls CUDA (docs/FRAMEWORKS.md).
    requirements = ("torch==2.13.0",)
    tuning = {
        "eager": "F.batch_norm; optimizer as torch._foreach_* ops",
        "compiled": "torch.compile(backend='inductor', fullgraph=True, dynamic=False) of forward+loss "
                    "(AOTAutograd compiles the backward) and of inference; optimizer as torch._foreach_* ops",
    }
    alternatives = {"compiled": {
        "compiled-update": Alternative("the momentum update (torch._foreach_* ops) under torch.compile as well: "
                                       "inductor fuses it into one kernel"),
        "max-autotune": Alternative("torch.compile(mode='max-autotune-no-cudagraphs'): inductor benchmarks its own "
                                    "GEMM templates against the BLAS call for each matmul"),
        "cudagraphs": Alternative("torch.compile(mode='reduce-overhead') of forward+loss, backward and the momentum "
                                  "update: on a GPU each compiled region replays as one CUDA graph (one launch where "
                                  "there were dozens); on the CPU inductor has no graphs to capture"),
    }}
    precisions = {"tf32": ("cuda",)}     # TF32 matmuls (torch.backends.cuda.matmul.allow_tf32), only where asked for
    description = "F.batch_norm with the spec's momentum and variance convention mapped explicitly"

    @classmethod
    def device_unavailable(cls, device: str) -> Optional[str]:
        if device == "cuda":
            torch = _torch()
            if not torch.cuda.is_available():
                build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda} build"
                return f"torch.cuda.is_available() is False (torch {torch.__version__}, {build}; no GPU visible)"
            return None
        return super().device_unavailable(device)

    peak_devices = ("cuda",)     # NumPy has no GPU: a GPU's peak is torch's matmul

    @classmethod
    def profile_steps(cls, adapter: Adapter, batch, steps: int):
        """torch.profiler over the steps (CPU activity; CUDA kernels too on a GPU): the self time
        of every op, a compiled region's generated kernels under its own name."""
        from torch.profiler import ProfilerActivity, profile

        torch = _torch()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if adapter.device == "cuda" else [])
        with profile(activities=activities) as profiler:
            profiled = seconds_per_step(adapter, batch, steps)
        kernels = {}
        for event in profiler.key_averages():
            seconds = (event.self_cpu_time_total + getattr(event, "self_device_time_total", 0)) / 1e6
            if seconds > 0:
                kernels[event.key] = (event.count, seconds, kind_of(event.key, PRODUCT_KERNELS))
        return f"torch {torch.__version__} torch.profiler (self time)", profiled, kernels

    @classmethod
    def matmul_step(cls, a: np.ndarray, b: np.ndarray, device: str):
        torch = _torch()
        if device == "cpu":
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            out = torch.empty((a.shape[0], b.shape[1]), dtype=ta.dtype)
            return f"torch {torch.__version__} (torch.matmul, {torch.get_num_threads()} threads)", lambda: torch.matmul(ta, tb, out=out)
        if device != "cuda":
            return super().matmul_step(a, b, device)
        if not torch.cuda.is_available():
            raise Unavailable("the matmul peak on cuda needs torch with a visible GPU")
        torch.backends.cuda.matmul.allow_tf32 = False     # a float32 peak, not TF32's
        ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
        out = torch.empty((a.shape[0], b.shape[1]), dtype=ta.dtype, device=ta.device)

        def step():
            torch.matmul(ta, tb, out=out)
            torch.cuda.synchronize()
            return out

        return f"torch {torch.__version__} ({torch.cuda.get_device_name()})", step

    @classmethod
    def set_threads(cls, n_threads: int) -> int:
        super().set_threads(n_threads)
        torch = _torch()
        torch.set_num_threads(n_threads)
        return torch.get_num_threads()

    @classmethod
    def conventions(cls):

        torch = _torch()

        def batch_norm(X):
            layer = torch.nn.BatchNorm1d(X.shape[1])
            before = layer.running_mean.numpy().copy(), layer.running_var.numpy().copy()
            layer.train()
            with torch.no_grad():
                out = layer(torch.from_numpy(X))
            return out.numpy(), before[0], before[1], layer.running_mean.numpy(), layer.running_var.numpy()

        def momentum_sgd(lr, beta, gradient, steps):
            theta = torch.zeros(1, requires_grad=True)
            optimizer = torch.optim.SGD([theta], lr=lr, momentum=beta)
            values = []
            for _ in range(steps):
                theta.grad = torch.full((1,), gradient)
                optimizer.step()
                values.append(float(theta.detach()[0]))
            return values

        return [ConventionProbe("torch", torch.__version__, "torch.nn.BatchNorm1d", batch_norm,
                                torch.nn.BatchNorm1d(1).momentum, "torch.optim.SGD(momentum)", momentum_sgd)]

    def _build(self, params: Dict[str, np.ndarray]) -> None:
        if self.variant in ("compiled-update", "cudagraphs") and self.spec.optimizer != "momentum":
            raise Unsupported(f"the {self.variant} alternative is written for optimizer='momentum' only, "
                              f"not {self.spec.optimizer!r}")
        torch = _torch()
        spec = self.spec
        self.torch = torch
        self.torch_device = torch.device(self.device)
        self.torch_dtype = {"float32": torch.float32, "float64": torch.float64}[spec.dtype]
        if self.device == "cuda":
            # The float32 matmul precision, pinned either way (frameworks' defaults differ, and
            # torch's own has changed between releases): TF32 only for the "tf32" precision.
            torch.backends.cuda.matmul.allow_tf32 = self.precision == "tf32"
            torch.backends.cudnn.allow_tf32 = self.precision == "tf32"

        # ---- the spec mapped onto torch, in one place -------------------------------------
        # torch's BatchNorm momentum is the weight of the NEW value; the spec's, of the OLD one.
        self.torch_bn_momentum = 1.0 - spec.bn_momentum
        # torch updates running_var with the unbiased (m-1) batch variance. That is the spec's
        # "unbiased" convention, so torch's own update is used there; for "biased" the running
        # statistics are updated here from torch.var_mean(correction=0).
        self.native_running_update = spec.running_var == "unbiased"
        # torch.optim.SGD(momentum=b) keeps v = b v + g and starts v at g, not at (1-b) g; the
        # spec's momentum and Adam are therefore written below with torch._foreach_* ops. The L2
        # term is part of the loss (as in the spec), never torch's weight_decay.
        # -------------------------------------------------------------------------------------

        to_tensor = lambda array: torch.tensor(array, dtype=self.torch_dtype, device=self.torch_device)  # noqa: E731
        self.param_names = trainable_names(spec)
        self.stat_names = running_stat_names(spec)
        self.params: List = [to_tensor(params[name]).requires_grad_(True) for name in self.param_names]
        self.running: List = [to_tensor(params[name]) for name in self.stat_names]
        self.velocity = [torch.zeros_like(p) for p in self.params] if spec.optimizer in ("momentum", "adam") else []
        self.second_moment = [torch.zeros_like(p) for p in self.params] if spec.optimizer == "adam" else []
        self.t = 0
        self.weight_indices = [self.param_names.index(name) for name in weight_names(spec)]

        if spec.batch_norm:
            forward_loss = _make_forward_loss(spec.n_layers, spec.bn_epsilon, self.torch_bn_momentum, spec.bn_momentum,
                                              spec.l2, self.native_running_update, self.weight_indices)
            inference = _make_inference(spec.n_layers, spec.bn_epsilon)
        else:
            forward_loss = _make_plain_forward_loss(spec.n_layers, spec.l2, self.weight_indices)
            inference = _make_plain_inference(spec.n_layers)
        if self.mode == "compiled":
            dynamo_config = torch._dynamo.config
            # Every adapter instance re-uses the same function code with other constants; the
            # default limit (8) would silently fall back to eager after a few specs.
            for limit in ("recompile_limit", "cache_size_limit"):
                if hasattr(dynamo_config, limit):
                    setattr(dynamo_config, limit, max(getattr(dynamo_config, limit), 256))
            compile_options = dict(backend="inductor", fullgraph=True, dynamic=False)
            if self.variant == "max-autotune":
                compile_options["mode"] = "max-autotune-no-cudagraphs"
            elif self.variant == "cudagraphs":
                compile_options["mode"] = "reduce-overhead"
            forward_loss = torch.compile(forward_loss, **compile_options)
            inference = torch.compile(inference, **compile_options)
        self._compiled_update = None
        if self.variant in ("compiled-update", "cudagraphs"):
            self._compiled_update = torch.compile(_make_momentum_update(spec.learning_rate, spec.beta1),
                                                  backend="inductor", fullgraph=True, dynamic=False,
                                                  **({"mode": "reduce-overhead"} if self.variant == "cudagraphs" else {}))
        self._forward_loss = forward_loss
        self._inference = inference

    # ------------------------------------------------------------------ data
    def to_device(self, X: np.ndarray, y: Optional[np.ndarray] = None):
        X, y = self._check(X, y, training=y is not None)
        torch = self.torch
        X_tensor = torch.tensor(X, dtype=self.torch_dtype, device=self.torch_device)
        y_tensor = None if y is None else torch.tensor(y, dtype=torch.int64, device=self.torch_device)
        return X_tensor, y_tensor

    def sync(self) -> None:
        if self.torch_device.type == "cuda":
            self.torch.cuda.synchronize()

    # ------------------------------------------------------------------ contract
    def train_step(self, X: np.ndarray, y: np.ndarray) -> float:
        return self.train_step_prepared(self.to_device(X, y))

    def train_step_prepared(self, batch) -> float:
        self.train_step_queued(batch)
        return self._loss.item()   # .item() waits for the device: the step is complete when it returns

    def train_step_queued(self, batch) -> None:
        X, y = batch
        loss, _ = self._forward_loss(self.params, self.running, X, y, True)
        grads = self.torch.autograd.grad(loss, self.params)
        self._apply_update(grads)
        self._loss = loss.detach()

    def device_memory(self, reset: bool = False) -> Optional[int]:
        """On a GPU, torch's caching allocator: the peak bytes allocated since the last reset."""
        if self.torch_device.type != "cuda":
            return None
        cuda = self.torch.cuda
        if reset:
            cuda.synchronize()
            cuda.reset_peak_memory_stats()
            return cuda.memory_allocated()
        cuda.synchronize()
        return cuda.max_memory_allocated()

    def gradients(self, X: np.ndarray, y: np.ndarray) -> Gradients:
        X, y = self.to_device(X, y)
        loss, log_probs = self._forward_loss(self.params, self.running, X, y, False)
        grads = self.torch.autograd.grad(loss, self.params)
        return Gradients(
            loss=loss.item(),
            probs=log_probs.detach().exp().cpu().numpy(),
            grads={name: g.detach().cpu().numpy() for name, g in zip(self.param_names, grads)},
        )

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X, _ = self.to_device(X)
        with self.torch.no_grad():
            return self._inference(self.params, self.running, X).cpu().numpy()

    def predict_prepared(self, batch) -> None:
        with self.torch.no_grad():
            self._inference(self.params, self.running, batch[0])
        self.sync()

    def state(self) -> Dict[str, np.ndarray]:
        arrays = {name: p.detach().cpu().numpy().copy() for name, p in zip(self.param_names, self.params)}
        arrays.update({name: r.cpu().numpy().copy() for name, r in zip(self.stat_names, self.running)})
        return self._ordered_state(arrays)

    # ------------------------------------------------------------------ optimizer
    def _apply_update(self, grads) -> None:
        torch = self.torch
        spec = self.spec
        lr = spec.learning_rate
        params = self.params
        self.t += 1
        with torch.no_grad():
            if self._compiled_update is not None:
                self._compiled_update(params, list(grads), self.velocity)
            elif spec.optimizer == "sgd":
                torch._foreach_add_(params, grads, alpha=-lr)
            elif spec.optimizer == "momentum":
                torch._foreach_mul_(self.velocity, spec.beta1)
                torch._foreach_add_(self.velocity, grads, alpha=1 - spec.beta1)
                torch._foreach_add_(params, self.velocity, alpha=-lr)
            else:
                torch._foreach_mul_(self.velocity, spec.beta1)
                torch._foreach_add_(self.velocity, grads, alpha=1 - spec.beta1)
                torch._foreach_mul_(self.second_moment, spec.beta2)
                torch._foreach_addcmul_(self.second_moment, grads, grads, value=1 - spec.beta2)
                bias_correction1 = 1 - spec.beta1 ** self.t
                bias_correction2 = 1 - spec.beta2 ** self.t
                denominator = torch._foreach_div(self.second_moment, bias_correction2)   # s_hat
                torch._foreach_sqrt_(denominator)
                torch._foreach_add_(denominator, spec.adam_epsilon)
                step = torch._foreach_div(self.velocity, denominator)
                torch._foreach_add_(params, step, alpha=-lr / bias_correction1)          # v_hat = v / bc1


def _make_forward_loss(n_layers: int, bn_epsilon: float, torch_bn_momentum: float, bn_momentum: float,
                       l2: float, native_running_update: bool, weight_indices: List[int]):
    """Training-mode forward and loss; updates the running statistics when ``update_stats``."""
    import torch
    import torch.nn.functional as F

    def forward_loss(params, running, X, y, update_stats: bool):
        A = X
        for layer in range(n_layers):
            W, gamma, beta = params[3 * layer], params[3 * layer + 1], params[3 * layer + 2]
            running_mean, running_var = running[2 * layer], running[2 * layer + 1]
            Z = A @ W
            if update_stats and native_running_update:
                Zt = F.batch_norm(Z, running_mean, running_var, gamma, beta, training=True,
                                  momentum=torch_bn_momentum, eps=bn_epsilon)
            else:
                Zt = F.batch_norm(Z, None, None, gamma, beta, training=True, momentum=0.0, eps=bn_epsilon)
                if update_stats:
                    batch_var, batch_mean = torch.var_mean(Z.detach(), dim=0, correction=0)
                    running_mean.mul_(bn_momentum).add_(batch_mean, alpha=1 - bn_momentum)
                    running_var.mul_(bn_momentum).add_(batch_var, alpha=1 - bn_momentum)
            A = torch.relu(Zt)   # relu's gradient at 0 is 0, as the spec says
        logits = A @ params[-2] + params[-1]
        log_probs = torch.log_softmax(logits, dim=1)
        loss = F.nll_loss(log_probs, y)
        if l2:
            m = X.shape[0]
            loss = loss + (l2 / (2 * m)) * sum((params[i] * params[i]).sum() for i in weight_indices)
        return loss, log_probs

    return forward_loss


def _make_momentum_update(learning_rate: float, beta1: float):
    """The spec's momentum (as _apply_update writes it), a function for torch.compile."""
    import torch

    def update(params, grads, velocity):
        torch._foreach_mul_(velocity, beta1)
        torch._foreach_add_(velocity, grads, alpha=1 - beta1)
        torch._foreach_add_(params, velocity, alpha=-learning_rate)

    return update


def _make_inference(n_layers: int, bn_epsilon: float):
    import torch
    import torch.nn.functional as F

    def inference(params, running, X):
        A = X
        for layer in range(n_layers):
            Zt = F.batch_norm(A @ params[3 * layer], running[2 * layer], running[2 * layer + 1],
                              params[3 * layer + 1], params[3 * layer + 2], training=False, eps=bn_epsilon)
            A = torch.relu(Zt)
        return torch.softmax(A @ params[-2] + params[-1], dim=1)

    return inference


def _make_plain_forward_loss(n_layers: int, l2: float, weight_indices: List[int]):
    """batch_norm=False: hidden layers Z = A W + b (F.linear's fused bias add), then the ReLU."""
    import torch
    import torch.nn.functional as F

    def forward_loss(params, running, X, y, update_stats: bool):
        A = X
        for layer in range(n_layers):
            A = torch.relu(torch.addmm(params[2 * layer + 1], A, params[2 * layer]))
        log_probs = torch.log_softmax(torch.addmm(params[-1], A, params[-2]), dim=1)
        loss = F.nll_loss(log_probs, y)
        if l2:
            m = X.shape[0]
            loss = loss + (l2 / (2 * m)) * sum((params[i] * params[i]).sum() for i in weight_indices)
        return loss, log_probs

    return forward_loss


def _make_plain_inference(n_layers: int):
    import torch

    def inference(params, running, X):
        A = X
        for layer in range(n_layers):
            A = torch.relu(torch.addmm(params[2 * layer + 1], A, params[2 * layer]))
        return torch.softmax(torch.addmm(params[-1], A, params[-2]), dim=1)

    return inference
