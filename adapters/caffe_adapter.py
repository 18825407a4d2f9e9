"""Caffe 1.0 (Debian 11's python3-caffe: Python 3.9, numpy 1.19) in a chroot, reached through a
worker process (scripts/setup-caffe-chroot.sh creates it). The network is a NetSpec: per layer
InnerProduct(bias_term=False) -> BatchNorm(use_global_stats=False) -> Scale(bias_term=True) ->
ReLU, then InnerProduct -> SoftmaxWithLoss; a second net in the TEST phase shares every blob and
gives inference. Mode ``net``: Caffe has one way to run, its C++ Net."""
from __future__ import annotations

import os
import tempfile
from typing import Dict, Optional

import numpy as np

from bnbench.reference.model import Optimizer
from bnbench.reference.spec import Spec, running_stat_names, trainable_names, weight_names

from .contract import Adapter, Gradients
from .declaration import Alternative


def _caffe():
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe

    caffe.set_mode_cpu()
    return caffe


class CaffeAdapter(Adapter):
    name = "caffe"
    status = "retired: BVLC's last release is 1.0 (April 2017) and its repository takes no more changes; Debian 11 was the last distribution to package it"
    modes = ("net",)
    best_mode = "net"
    devices = ("cpu",)
    requires = ("caffe",)
    environment = "caffe"
    python = "3.9"
    setup_script = "scripts/setup-caffe-chroot.sh"      # root: a Debian 11 chroot with python3-caffe
    timed_by = "worker"
    # Its tuning log: Debian's Caffe calls whatever provides libblas.so.3, the reference BLAS
    # unless OpenBLAS is installed (setup_script installs it).
    tuning = {"net": "caffe.Net from a NetSpec prototxt (C++ layers, CPU build of Debian 11); Debian 11's OpenBLAS "
                     "(libopenblas0-pthread) as libblas.so.3"}
    alternatives = {"net": {
        "in-place": Alternative("BatchNorm, Scale and ReLU computed in place on the InnerProduct's top blob "
                                "(in_place=True, as Caffe's ResNet prototxts do): one activation blob per layer "
                                "instead of four"),
        "reference-blas": Alternative("Debian's reference BLAS as libblas.so.3 (what python3-caffe installs alone)",
                                      (("LD_LIBRARY_PATH", "/usr/lib/x86_64-linux-gnu/blas"),)),
    }}
    description = "NetSpec: InnerProduct + BatchNorm + Scale + ReLU, SoftmaxWithLoss; updates in NumPy on the blobs"

    @classmethod
    def matmul_step(cls, a: np.ndarray, b: np.ndarray, device: str):
        if device != "cpu" or a.dtype != np.float32:
            return super().matmul_step(a, b, device)
        caffe = _caffe()
        from caffe import layers as L

        n = caffe.NetSpec()
        n.data = L.Input(shape=dict(dim=list(a.shape)))
        n.product = L.InnerProduct(n.data, num_output=b.shape[1], bias_term=False)
        handle, path = tempfile.mkstemp(prefix="bnbench-caffe-matmul-", suffix=".prototxt")
        with os.fdopen(handle, "w") as prototxt:
            prototxt.write(str(n.to_proto()))
        net = caffe.Net(path, caffe.TEST)
        os.unlink(path)
        net.blobs["data"].data[...] = a
        net.params["product"][0].data[...] = b.T          # InnerProduct stores W transposed
        blas = "reference BLAS" if "/blas" in os.environ.get("LD_LIBRARY_PATH", "") else "OpenBLAS"
        return f"caffe 1.0 (InnerProduct forward, Debian 11 {blas})", lambda: net.forward()["product"]

    @classmethod
    def version(cls) -> str:
        caffe = _caffe()
        return getattr(caffe, "__version__", "1.0.0") + " (Debian 11 python3-caffe)"

    @classmethod
    def installed_version(cls) -> Optional[str]:
        """pycaffe is a Debian package, not a pip one: its version from the chroot's dpkg database."""
        try:
            with open("/var/lib/dpkg/status", encoding="utf-8", errors="replace") as handle:
                for record in handle.read().split("\n\n"):
                    fields = dict(line.split(": ", 1) for line in record.splitlines() if ": " in line)
                    if fields.get("Package") == "python3-caffe" and fields.get("Status", "").endswith("installed"):
                        return f"{fields.get('Version')} (Debian python3-caffe)"
        except OSError:
            pass
        return None

    @classmethod
    def framework_cannot(cls, spec: Spec, mode: str, device: str) -> Optional[str]:
        if spec.dtype == "float64":
            return "pycaffe's blobs are float32 only (Caffe is built with Dtype=float for Python)"
        return None

    def _build(self, params: Dict[str, np.ndarray]) -> None:
        caffe = _caffe()
        from caffe import layers as L
        from caffe import params as P

        self.caffe = caffe
        spec = self.spec
        # ---- the spec mapped onto Caffe, in one place -------------------------------------------
        # BatchNorm(moving_average_fraction = spec.bn_momentum, eps = spec.bn_epsilon): it keeps
        # SUMS (blob0 = sum of means, blob1 = sum of variances times m/(m-1), blob2 = scale s) and
        # updates s <- maf*s + 1, sums <- maf*sums + batch value; the running value is sum / s.
        # With s held at 1/(1 - maf) (its fixed point), that is exactly the spec's EWA
        # running = maf*running + (1 - maf)*batch; so blob0 = running_mean / (1 - maf), etc. It
        # normalises with the biased variance, eps inside the square root. Scale(bias_term) holds
        # gamma and beta. InnerProduct stores W transposed. ReLU's gradient at 0 is 0.
        # batch_norm=false: hidden layers InnerProduct(bias_term=True) and ReLU.
        # SoftmaxWithLoss averages over the batch. The L2 term and SPEC.md's updates are applied
        # here in NumPy to the blobs' data (Caffe's solvers and weight_decay differ). Caffe adds
        # var * m / (m - 1) to the variance sum; for running_var="biased" the adapter scales that
        # increment by (m - 1) / m after the forward (as the torch adapter updates its biased
        # running variance itself).
        # ----------------------------------------------------------------------------------------
        self.scale = 1.0 / (1.0 - spec.bn_momentum)
        train, test = self._net_spec(L, P, training=True), self._net_spec(L, P, training=False)
        # Caffe reads a net's definition from a file; the folder goes once both nets are built
        with tempfile.TemporaryDirectory(prefix="bnbench-caffe-") as folder:
            paths = {}
            for name, net in (("train", train), ("test", test)):
                paths[name] = os.path.join(folder, f"{name}.prototxt")
                with open(paths[name], "w") as handle:
                    handle.write(str(net.to_proto()))
            self.net = caffe.Net(paths["train"], caffe.TRAIN)
            self.test_net = caffe.Net(paths["test"], caffe.TEST)
        self.test_net.share_with(self.net)
        self.names = trainable_names(spec)
        for name, array in params.items():
            self._set(name, array)
        self.optimizer = Optimizer(spec, self.names, {name: params[name].shape for name in self.names})

    def _net_spec(self, L, P, training: bool):
        spec = self.spec
        n = self.caffe.NetSpec()
        n.data = L.Input(shape=dict(dim=[2, spec.n_features]))
        if training:
            n.label = L.Input(shape=dict(dim=[2]))
        top = n.data
        for layer, width in enumerate(spec.hidden, start=1):
            if not spec.batch_norm:                          # an ordinary layer: InnerProduct with its bias, ReLU
                setattr(n, f"fc{layer}", L.InnerProduct(top, num_output=width, bias_term=True))
                setattr(n, f"relu{layer}", L.ReLU(getattr(n, f"fc{layer}")))
                top = getattr(n, f"relu{layer}")
                continue
            setattr(n, f"fc{layer}", L.InnerProduct(top, num_output=width, bias_term=False))
            norm_params = dict(moving_average_fraction=spec.bn_momentum, eps=spec.bn_epsilon)
            if training:
                norm_params["use_global_stats"] = False
            in_place = dict(in_place=True) if self.variant == "in-place" else {}
            setattr(n, f"bn{layer}", L.BatchNorm(getattr(n, f"fc{layer}"), batch_norm_param=norm_params, **in_place))
            setattr(n, f"scale{layer}", L.Scale(getattr(n, f"bn{layer}"), bias_term=True, **in_place))
            setattr(n, f"relu{layer}", L.ReLU(getattr(n, f"scale{layer}"), **in_place))
            top = getattr(n, f"relu{layer}")
        n.logits = L.InnerProduct(top, num_output=spec.n_classes, bias_term=True)
        n.prob = L.Softmax(n.logits)
        if training:
            n.loss = L.SoftmaxWithLoss(n.logits, n.label)
        return n

    # ------------------------------------------------------------------ the blobs <-> SPEC.md names
    def _blob(self, name: str):
        params = self.net.params
        if name == "W_out":
            return params["logits"][0], True
        if name == "b_out":
            return params["logits"][1], False
        for prefix, layer_name, index in (("W", "fc", 0), ("b", "fc", 1), ("gamma", "scale", 0), ("beta", "scale", 1),
                                          ("running_mean", "bn", 0), ("running_var", "bn", 1)):
            if name.startswith(prefix) and name[len(prefix):].isdigit():
                return params[f"{layer_name}{name[len(prefix):]}"][index], prefix == "W"
        raise KeyError(name)

    def _set(self, name: str, array: np.ndarray) -> None:
        blob, transposed = self._blob(name)
        value = np.asarray(array, dtype=np.float32)
        if name.startswith("running_"):
            # a running value is stored as sum / s with s held at 1 / (1 - bn_momentum)
            layer = name[len(name.rstrip("0123456789")):]
            value = value * np.float32(self.scale)
            self.net.params[f"bn{layer}"][2].data[...] = np.float32(self.scale)
        blob.data[...] = value.T if transposed else value

    def _get(self, name: str) -> np.ndarray:
        blob, transposed = self._blob(name)
        value = np.array(blob.data, dtype=np.float32)
        if name.startswith("running_"):
            scale = float(self.net.params[f"bn{name[len(name.rstrip('0123456789')):]}"][2].data[0])
            value = value / np.float32(scale)
        return value.T.copy() if transposed else value

    def _grad(self, name: str) -> np.ndarray:
        blob, transposed = self._blob(name)
        value = np.array(blob.diff, dtype=np.float32)
        return value.T.copy() if transposed else value

    # ------------------------------------------------------------------ contract
    def _forward_backward(self, X: np.ndarray, y: np.ndarray):
        net = self.net
        net.blobs["data"].reshape(*X.shape)
        net.blobs["label"].reshape(X.shape[0])
        net.reshape()
        net.blobs["data"].data[...] = X
        net.blobs["label"].data[...] = y
        net.clear_param_diffs()
        m = X.shape[0]
        variance_sums = [self.net.params[f"bn{layer}"][1] for layer in range(1, self.spec.n_layers + 1)
                         if self.spec.batch_norm]
        before = [np.array(blob.data) for blob in variance_sums] if self.spec.running_var == "biased" else []
        net.forward()
        decay = np.float32(self.spec.bn_momentum)
        for blob, old in zip(variance_sums, before):     # Caffe added the unbiased variance: make it biased
            increment = blob.data - decay * old
            blob.data[...] = decay * old + increment * np.float32((m - 1) / m)
        net.backward()
        loss = float(net.blobs["loss"].data)
        grads = {name: self._grad(name) for name in self.names}
        if self.spec.l2:
            weights = weight_names(self.spec)
            loss += self.spec.l2 / (2 * m) * sum(float(np.sum(self._get(w).astype(np.float64) ** 2)) for w in weights)
            for w in weights:
                grads[w] = grads[w] + np.float32(self.spec.l2 / m) * self._get(w)
        return loss, np.array(net.blobs["prob"].data), grads

    def train_step(self, X: np.ndarray, y: np.ndarray) -> float:
        X, y = self._check(X, y)
        loss, _, grads = self._forward_backward(X, y.astype(np.float32))
        arrays = {name: self._get(name) for name in grads}
        self.optimizer.apply(arrays, grads)          # the reference's optimizer, in NumPy
        for name, array in arrays.items():
            self._set(name, array)
        return loss

    def gradients(self, X: np.ndarray, y: np.ndarray) -> Gradients:
        X, y = self._check(X, y)
        saved = {name: np.array(blob.data) for layer in self.net.params
                 for name, blob in [(f"{layer}/{i}", b) for i, b in enumerate(self.net.params[layer])]}
        loss, probs, grads = self._forward_backward(X, y.astype(np.float32))
        for key, value in saved.items():          # the training-mode forward moved the statistics
            layer, index = key.rsplit("/", 1)
            self.net.params[layer][int(index)].data[...] = value
        return Gradients(loss, probs, grads)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X, _ = self._check(X, None, training=False)
        net = self.test_net
        net.blobs["data"].reshape(*X.shape)
        net.reshape()
        net.blobs["data"].data[...] = X
        net.forward()
        return np.array(net.blobs["prob"].data)

    def state(self) -> Dict[str, np.ndarray]:
        return self._ordered_state({name: self._get(name) for name in list(self.names) + list(running_stat_names(self.spec))})
