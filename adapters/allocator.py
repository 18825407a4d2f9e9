"""How glibc's allocator treats a step's large temporaries, as a kept form's setting and as the
alternatives every framework's tuning log tries: freed memory kept for reuse (``malloc-reuse``)
and transparent huge pages (``hugepages``). With its defaults, a block over its mmap threshold is
mapped afresh and page-faulted on every step (measured: the NumPy step at large spent about a
fifth of its time so).

A declaration's ``allocator`` names the kept form's settings ("default", "malloc-reuse",
"hugepages" or "malloc-reuse+hugepages"); ``tuning_flags`` appends what they are to the form's
published flags, and ``alternatives_of`` offers the others (or the defaults in their place).
"""
from __future__ import annotations

import ctypes
from typing import Dict, Optional, Tuple

from .declaration import Alternative, Declaration

# What each allocator setting of a kept form is, as its published flags say it (tuning_flags).
ALLOCATOR_FLAGS: Dict[str, str] = {
    "malloc-reuse": "glibc mallopt keeps freed memory for reuse (M_MMAP_THRESHOLD 1 GiB, M_TRIM_THRESHOLD 2 GiB)",
    "hugepages": "glibc malloc with transparent huge pages (GLIBC_TUNABLES glibc.malloc.hugetlb=1)",
}

# Alternatives every mode of every framework is tried with.
ALLOCATOR_ALTERNATIVES: Dict[str, Alternative] = {
    "malloc-reuse": Alternative(
        "glibc malloc keeps freed memory for reuse instead of unmapping it "
        "(GLIBC_TUNABLES mmap_threshold 1 GiB, trim_threshold 2 GiB)",
        (("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=2147483647"),)),
    "hugepages": Alternative(
        "glibc malloc asks for transparent huge pages (GLIBC_TUNABLES glibc.malloc.hugetlb=1): "
        "a 2 MiB page fault where there were 512 of 4 KiB",
        (("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1"),)),
}

MALLOC_DEFAULT = {   # the allocator's defaults, the alternative to a kept form that changes them
    "malloc-reuse": Alternative("glibc malloc with its defaults (large blocks mapped afresh, freed memory given back), "
                                "instead of the kept form's mallopt"),
    "hugepages": Alternative("glibc malloc with its defaults (4 KiB pages), instead of the kept form's huge pages "
                             "(GLIBC_TUNABLES empty)", (("GLIBC_TUNABLES", ""),)),
}

_MALLOPT = {"M_TRIM_THRESHOLD": -1, "M_MMAP_THRESHOLD": -3}   # glibc's malloc.h
_REUSE_SETTINGS = {"M_MMAP_THRESHOLD": 1 << 30, "M_TRIM_THRESHOLD": (1 << 31) - 1}   # the same as "malloc-reuse"'s


def reuse_freed_memory() -> Optional[str]:
    """What "malloc-reuse" does, from inside the process (glibc's mallopt), for a kept form that
    takes it: None when applied, else why not (not glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as error:
        return f"no glibc mallopt here ({error})"
    for name, value in _REUSE_SETTINGS.items():
        if not mallopt(_MALLOPT[name], value):
            return f"mallopt({name}, {value}) refused"
    return None


def allocator_parts(declaration: Declaration) -> Tuple[str, ...]:
    """The allocator settings the kept form takes (``allocator``, split on '+')."""
    return () if declaration.allocator == "default" else tuple(declaration.allocator.split("+"))


def allocator_variables(declaration: Declaration) -> Tuple[Tuple[str, str], ...]:
    """The kept form's allocator, where it is set from the environment."""
    return ALLOCATOR_ALTERNATIVES["hugepages"].variables if "hugepages" in allocator_parts(declaration) else ()


def tuning_flags(declaration: Declaration, mode: str) -> str:
    """The published flags of ``mode``'s kept form: its ``tuning`` entry and its allocator's settings."""
    flags = [declaration.tuning.get(mode, "")] + [ALLOCATOR_FLAGS[part] for part in allocator_parts(declaration)]
    return "; ".join(flag for flag in flags if flag)


def alternatives_of(declaration: Declaration, mode: str) -> Dict[str, Alternative]:
    """Every alternative form of ``mode`` its tuning log tries: the framework's own, then the
    allocator's (unless the framework names one of those itself, for its kept form)."""
    own = dict(declaration.alternatives.get(mode, {}))
    parts = allocator_parts(declaration)
    allocator = {name: alt for name, alt in ALLOCATOR_ALTERNATIVES.items() if name not in parts}
    if parts:
        defaults = [MALLOC_DEFAULT[part] for part in parts]
        allocator["malloc-default"] = Alternative("; ".join(d.what for d in defaults),
                                                  tuple(v for d in defaults for v in d.variables))
    if len(parts) > 1:
        allocator.update({f"no-{part}": MALLOC_DEFAULT[part] for part in parts})
    return {**own, **{name: alt for name, alt in allocator.items() if name not in own}}
