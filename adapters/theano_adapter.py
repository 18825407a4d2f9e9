"""Theano 1.0.5 (the last release) in its own environment (numpy<1.24, scipy<1.11; docs/
FRAMEWORKS.md), reached from the suite through a worker process. The graph is built by the same
code as PyTensor's (pytensor_adapter.SymbolicAdapter)."""
from __future__ import annotations

import os

from .pytensor_adapter import BLAS_PACKAGE, SymbolicAdapter, symbolic_alternatives, system_blas

# Theano's own BLAS detection fails on this machine (numpy.distutils has no blas_opt_info): the
# flags are always given, the system's OpenBLAS where it is installed (system_blas).
NO_BLAS = ("THEANO_FLAGS", "blas.ldflags=")


def theano_flags() -> str:
    return f"blas.ldflags={system_blas()}"


def theano_worker_variables():
    """A Theano worker's THEANO_FLAGS: the caller's own, else the system's OpenBLAS or none."""
    return (("THEANO_FLAGS", os.environ.get("THEANO_FLAGS", theano_flags())),)


class TheanoAdapter(SymbolicAdapter):
    name = "theano"
    status = "retired: MILA ended its development in 2017 (1.0 was the last major release); PyPI's newest release, checked 2026-11-26: 1.0.5, July 2020"
    requires = ("theano",)
    packages = ("Theano",)
    environment = "theano"
    requirements = ("Theano==1.0.5", "numpy<1.24", "scipy<1.11")
    system_packages = (BLAS_PACKAGE,)
    tuning = {
        "c": "theano.function(mode=Mode(linker='cvm', optimizer='fast_run')): C ops compiled by g++",
        "python": "theano.function(mode=Mode(linker='py', optimizer='fast_compile')): Python implementations",
    }
    alternatives = symbolic_alternatives(False, NO_BLAS)
    # Its tuning log: glibc's huge pages made the step 5% faster at large, level at tiny.
    allocator = "hugepages"
    description = "symbolic graph of the spec (shared with PyTensor); theano.grad; updates on shared variables"

    worker_variables = staticmethod(theano_worker_variables)

    @classmethod
    def _library(cls):
        os.environ.setdefault("THEANO_FLAGS", theano_flags())
        import theano
        import theano.tensor as T
        from theano.compile.mode import Mode

        return theano, T, Mode, T.nnet.logsoftmax, T.nnet.softmax
