"""Theano 1.0.5 (the last release) in its own environment (numpy<1.24, scipy<1.11; docs/
FRAMEWORKS.md), reached from the suite through a worker process. The graph is built by the same
code as PyTensor's (pytensor_adapter.SymbolicAdapter)."""
from __future__ import annotations

import os

from .pytensor_adapter import symbolic_alternatives, SymbolicAdapter

# Theano's BLAS detection fails on this machine's libraries: it uses NumPy's BLAS through its C API.
THEANO_FLAGS = "blas.ldflags="


def theano_worker_variables():
    """A Theano worker's THEANO_FLAGS: the caller's own, else the ones above."""
    return (("THEANO_FLAGS", os.environ.get("THEANO_FLAGS", THEANO_FLAGS)),)


class TheanoAdapter(SymbolicAdapter):
    name = "theano"
    status = "retired: MILA ended its development in 2017 (1.0 was the last major release); PyPI's newest release, checked 2026-11-26: 1.0.5, July 2020"
    requires = ("theano",)
    packages = ("Theano",)
    environment = "theano"
    requirements = ("Theano==1.0.5", "numpy<1.24", "scipy<1.11")
    asv_variables = (("THEANO_FLAGS", THEANO_FLAGS),)
    tuning = {
        "c": "theano.function(mode=Mode(linker='cvm', optimizer='fast_run')): C ops compiled by g++",
        "python": "theano.function(mode=Mode(linker='py', optimizer='fast_compile')): Python implementations",
    }
    alternatives = symbolic_alternatives(False)
    # Its tuning log: glibc's huge pages made the step 5% faster at large, level at tiny.
    allocator = "hugepages"
    tuning = {mode: flags + "; glibc malloc with transparent huge pages (GLIBC_TUNABLES glibc.malloc.hugetlb=1)"
              for mode, flags in tuning.items()}
    description = "symbolic graph of the spec (shared with PyTensor); theano.grad; updates on shared variables"

    worker_variables = staticmethod(theano_worker_variables)

    @classmethod
    def _library(cls):
        os.environ.setdefault("THEANO_FLAGS", THEANO_FLAGS)
        import theano
        import theano.tensor as T
        from theano.compile.mode import Mode

        return theano, T, Mode, T.nnet.logsoftmax, T.nnet.softmax
