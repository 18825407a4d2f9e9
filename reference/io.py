"""Atomic writes: a reader sees the old file or the new one, never half of one; and the one read of
a JSON file that may be missing or unreadable. At the bottom of the layers (the spec saves itself
with it; every tool writes its results with it)."""
from __future__ import annotations

import io
import json
import os
import tempfile
from typing import Any, Callable, Mapping, Optional

import numpy as np


def _atomic_write(path: "os.PathLike[str] | str", write: Callable[[io.BufferedWriter], None]) -> None:
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: "os.PathLike[str] | str", data: bytes) -> None:
    _atomic_write(path, lambda stream: stream.write(data))


def atomic_write_text(path: "os.PathLike[str] | str", text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: "os.PathLike[str] | str", data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def atomic_save_npz(path: "os.PathLike[str] | str", arrays: Mapping[str, np.ndarray]) -> None:
    """np.savez to exactly ``path`` (no '.npz' appended), atomically."""
    _atomic_write(path, lambda stream: np.savez(stream, **arrays))


def read_json(path: "os.PathLike[str] | str") -> Optional[Any]:
    """The JSON at ``path``, or None where there is none or it cannot be read."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None
