"""How the suite writes a duration or an amount of memory for people: the one format of every
table and message."""
from __future__ import annotations

from typing import Optional


def format_seconds(seconds: Optional[float]) -> str:
    if seconds is None or seconds != seconds:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def format_bytes(count: Optional[float]) -> str:
    if count is None or count != count:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count:.0f} B"
