"""Lasagne 0.1 (PyPI's only release) on Theano 0.8.2, in its own environment: Python 3.9 (the
newest Python whose `collections` still has the names Lasagne 0.1 imports, so nothing is
patched), numpy<1.24, scipy<1.11. The network is built from Lasagne layers: DenseLayer without
bias, a batch-norm layer written as a Lasagne layer (0.1 has none), NonlinearityLayer; the
update rules are the spec's, shared with the Theano and PyTensor adapters."""
from __future__ import annotations

from .pytensor_adapter import BLAS_PACKAGE, symbolic_alternatives
from .theano_adapter import NO_BLAS, TheanoAdapter


class LasagneAdapter(TheanoAdapter):
    """Theano's adapter (its library, its flags, the graph's update rules) with the network built
    from Lasagne's layers: only the forward pass is Lasagne's."""

    name = "lasagne"
    status = "unmaintained: PyPI's newest release, checked 2026-11-26 is 0.1, August 2015, on Theano, itself retired"
    requires = ("lasagne", "theano")
    packages = ("Lasagne",)
    environment = "lasagne"
    # Lasagne 0.1 imports names `collections` lost in Python 3.10: a Python 3.9 venv, nothing patched
    python = "3.9"
    requirements = ("numpy<1.24", "scipy<1.11", "Theano==0.8.2", "Lasagne==0.1")
    timed_by = "worker"
    tuning = {
        "c": "Lasagne layers, theano.function(mode=Mode(linker='cvm', optimizer='fast_run')): C ops compiled by g++",
        "python": "Lasagne layers, theano.function(mode=Mode(linker='py', optimizer='fast_compile'))",
    }
    alternatives = symbolic_alternatives(False, NO_BLAS)
    system_packages = (BLAS_PACKAGE,)
    # Its tuning log: glibc's huge pages made the step 8% faster at large, level at tiny.
    allocator = "hugepages"
    description = "lasagne.layers DenseLayer(b=None) + a spec batch-norm Lasagne layer + NonlinearityLayer"

    def _forward(self, T, X, training: bool, c):
        import lasagne

        spec = self.spec
        if not hasattr(self, "_output_layer"):
            BatchNorm = _batch_norm_layer(lasagne, T)
            relu = lambda x: T.switch(T.gt(x, c(0)), x, T.zeros_like(x))  # noqa: E731  (gradient 0 at 0)
            network = lasagne.layers.InputLayer((None, spec.n_features), input_var=X)
            self._norm_layers = []
            for layer, width in enumerate(spec.hidden, start=1):
                if not spec.batch_norm:                      # an ordinary layer: DenseLayer with its bias, ReLU
                    network = lasagne.layers.DenseLayer(network, width, W=self.params[f"W{layer}"],
                                                        b=self.params[f"b{layer}"], nonlinearity=None)
                    network = lasagne.layers.NonlinearityLayer(network, nonlinearity=relu)
                    continue
                network = lasagne.layers.DenseLayer(network, width, W=self.params[f"W{layer}"], b=None, nonlinearity=None)
                network = BatchNorm(network, self.params[f"gamma{layer}"], self.params[f"beta{layer}"],
                                    self.running[f"running_mean{layer}"], self.running[f"running_var{layer}"],
                                    c(spec.bn_epsilon))
                self._norm_layers.append(network)
                network = lasagne.layers.NonlinearityLayer(network, nonlinearity=relu)
            self._output_layer = lasagne.layers.DenseLayer(network, spec.n_classes, W=self.params["W_out"],
                                                           b=self.params["b_out"], nonlinearity=None)
        logits = lasagne.layers.get_output(self._output_layer, deterministic=not training)
        stats = [layer.last_batch_stats for layer in self._norm_layers] if training else []
        return logits, stats


def _batch_norm_layer(lasagne, T):
    class SpecBatchNormLayer(lasagne.layers.Layer):
        """Batch norm as SPEC.md writes it, as a Lasagne layer: training mode normalises with the
        batch's mean and biased variance (and records them, for the running averages the adapter
        updates); deterministic (inference) mode with the running statistics."""

        def __init__(self, incoming, gamma, beta, mean, var, epsilon, **kwargs):
            super(SpecBatchNormLayer, self).__init__(incoming, **kwargs)
            width = self.input_shape[1]
            self.gamma = self.add_param(gamma, (width,), name="gamma", regularizable=False)
            self.beta = self.add_param(beta, (width,), name="beta", regularizable=False)
            self.mean = self.add_param(mean, (width,), name="running_mean", trainable=False, regularizable=False)
            self.var = self.add_param(var, (width,), name="running_var", trainable=False, regularizable=False)
            self.epsilon = epsilon
            self.last_batch_stats = None

        def get_output_for(self, input, deterministic=False, **kwargs):
            if deterministic:
                mean, var = self.mean, self.var
            else:
                mean = input.mean(axis=0)
                var = T.sqr(input - mean).mean(axis=0)
                self.last_batch_stats = (mean, var)
            return self.gamma * ((input - mean) / T.sqrt(var + self.epsilon)) + self.beta

    return SpecBatchNormLayer
