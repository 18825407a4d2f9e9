"""Theano 1.0.5 (the last release) in its own environment (numpy<1.24, scipy<1.11; shared/
FRAMEWORKS.md), reached from the suite through a worker process. The graph is built by the same
code as PyTensor's (pytensor_adapter.SymbolicAdapter)."""
from __future__ import annotations

import importlib.util
import os

from .pytensor_adapter import SymbolicAdapter

ENVIRONMENT = "theano"
SETUP_HINT = "`make env-theano` (venv with Theano==1.0.5, numpy<1.24, scipy<1.11)"
# Theano's BLAS detection fails on this machine's libraries: it uses NumPy's BLAS through its C API.
THEANO_FLAGS = "blas.ldflags="


class TheanoAdapter(SymbolicAdapter):
    name = "theano"
    requires = ("theano",)
    install_hint = "its own environment: " + SETUP_HINT
    tuning = {
        "c": "theano.function(mode=Mode(linker='cvm', optimizer='fast_run')): C ops compiled by g++",
        "python": "theano.function(mode=Mode(linker='py', optimizer='fast_compile')): Python implementations",
    }
    description = "symbolic graph of the spec (shared with pytensor); theano.grad; updates on shared variables"

    @classmethod
    def placement(cls):
        if os.environ.get("BNBENCH_WORKER") or importlib.util.find_spec("theano") is not None:
            return None
        from bnbench.worker import environment_placement

        placement = environment_placement(ENVIRONMENT, SETUP_HINT)
        import dataclasses

        return dataclasses.replace(placement, env=(("THEANO_FLAGS", os.environ.get("THEANO_FLAGS", THEANO_FLAGS)),))

    @classmethod
    def _library(cls):
        os.environ.setdefault("THEANO_FLAGS", THEANO_FLAGS)
        import theano
        import theano.tensor as T
        from theano.compile.mode import Mode

        return theano, T, Mode, T.nnet.logsoftmax, T.nnet.softmax
