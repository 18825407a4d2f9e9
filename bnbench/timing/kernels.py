"""The machine's own kernels in the processes that are timed, and which ones really ran.

Some machines' environments force a BLAS kernel: these set ``OPENBLAS_CORETYPE=Haswell`` and
``OPENBLAS_L2_SIZE=512`` on processors where old OpenBLAS builds crashed or computed wrongly. A
current OpenBLAS then runs its Haswell kernel where the CPU has AVX-512: NumPy's 2048^3 float32
matmul at 204-221 GFLOP/s against 371-396 with both unset (a 2-core AMD EPYC of family 26). Every
framework on OpenBLAS was timed at half its matmul speed, the peak with it, and nothing said so.

So the timed processes (bnbench.timing.participant's workers) start without the variables that
force a BLAS or oneDNN kernel, ISA or core type (``OVERRIDES``), and say what was removed; each
participant's row names the BLAS libraries its process really loaded, with their kernel
(threadpoolctl). A participant that fails its check against the reference under its native kernel
is started again under the machine's setting, and its row says so: a wrong number is never timed.
The test suite and CI keep the environment they are given.

Pure Python: imported by the worker too (Python 3.9), no framework.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Tuple

# Variables that force a BLAS or oneDNN kernel, ISA or core type instead of the one the library
# picks for the CPU.
OVERRIDES = (
    "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_L1_SIZE", "GOTO_CORETYPE",   # OpenBLAS
    "MKL_DEBUG_CPU_TYPE", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR",                    # MKL
    "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA", "DNNL_CPU_ISA_HINTS", "ONEDNN_CPU_ISA_HINTS",  # oneDNN
    "BLIS_ARCH_TYPE",                                                               # BLIS
    "ATEN_CPU_CAPABILITY",                                                          # PyTorch's vector kernels
    "NPY_DISABLE_CPU_FEATURES",                                                     # NumPy's own kernels
)


def without_overrides(environment: Mapping[str, str]) -> Tuple[Dict[str, str], Dict[str, str]]:
    """(``environment`` without the kernel overrides, the overrides it had)."""
    removed = {name: environment[name] for name in OVERRIDES if name in environment}
    return {name: value for name, value in environment.items() if name not in removed}, removed


def loaded_blas() -> Tuple[List[Dict[str, object]], Optional[str]]:
    """The BLAS and OpenMP libraries this process has loaded, as threadpoolctl reads them: (one
    entry each, {library, version, kernel, threads, api}; why none could be read, or None)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [], "threadpoolctl is not installed in this environment"
    out = []
    for info in threadpool_info():
        entry = {"library": info.get("internal_api"), "version": info.get("version"),
                 "kernel": info.get("architecture"), "threads": info.get("num_threads"), "api": info.get("user_api")}
        if entry not in out:
            out.append(entry)
    return out, None


def describe(blas: List[Dict[str, object]]) -> str:
    """'openblas 0.3.31 Haswell' for each BLAS library loaded (not the OpenMP runtimes), joined."""
    parts = []
    for entry in blas:
        if entry.get("api") != "blas":
            continue
        text = " ".join(str(part) for part in (entry.get("library"), entry.get("version"), entry.get("kernel")) if part)
        if text not in parts:
            parts.append(text)
    return "; ".join(parts)
