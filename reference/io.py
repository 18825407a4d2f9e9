"""Atomic writes: a reader sees the old file or the new one, never half of one, with the mode the
file had (a new one: the umask's); the one read of a JSON file that may be missing or unreadable;
and a private folder for a child process to start in. At the bottom of the layers (the spec saves
itself with it; every tool writes its results with it)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import stat
import tempfile
from typing import Any, Callable, Iterator, Mapping, Optional

import numpy as np


def _umask() -> int:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)      # no /proc: read by setting it, and set back at once
    os.umask(mask)
    return mask


def _mode_for(path: str) -> int:
    """The mode the file at ``path`` has, or a new file's (0666 less the umask)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _atomic_write(path: "os.PathLike[str] | str", write: Callable[[io.BufferedWriter], None]) -> None:
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fchmod(stream.fileno(), _mode_for(path))    # mkstemp's 0600 would replace the file's own
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


@contextlib.contextmanager
def private_directory(prefix: str = "bnbench-") -> Iterator[str]:
    """A new empty folder of this process's alone (0700), removed afterwards: where a child Python
    starts, so that nothing in the caller's directory (``python -c`` and ``-m`` put it first on
    sys.path) or in a folder others can write to is imported."""
    folder = tempfile.mkdtemp(prefix=prefix)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
