"""Frameworks' native INFO lines kept off stderr, everything else passed on.

TensorFlow 2.21 logs through absl before absl's logging is initialised, and then ignores
TF_CPP_MIN_LOG_LEVEL (abseil-cpp #1718): importing it, placing its first variable and its first
XLA compilation each printed "WARNING: All log messages before absl::InitializeLog() is called
..." and INFO lines (oneDNN, CPU features, XLA service) on every command that ran it in its own
process (measured 2026-12-04). ``info_lines_dropped`` sends the process's stderr to a file for
the length of such a block and then writes back every line but those; a warning or an error
still reaches stderr, only later, at the end of the block."""
from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import tempfile
from types import ModuleType
from typing import Iterator

# absl/glog INFO lines ("I1204 17:40:31.123 2800 port.cc:153] ..."), absl's notice that it is not
# initialised, and the continuation line of TensorFlow's CPU-feature notice.
_DROPPED = re.compile(rb"^(?:I\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\]]+\] .*"
                      rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
                      rb"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.)\r?$")


def without_info_lines(text: bytes) -> bytes:
    """``text`` less its native INFO lines (whole lines; anything else kept byte for byte)."""
    return b"".join(line for line in text.splitlines(keepends=True) if not _DROPPED.match(line.rstrip(b"\n")))


@contextlib.contextmanager
def info_lines_dropped() -> Iterator[None]:
    """Native INFO lines written to stderr (file descriptor 2) inside the block are dropped."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:         # no stderr to filter
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = without_info_lines(held.read())
            if kept:
                os.write(2, kept)


def import_quietly(module: str) -> ModuleType:
    """``importlib.import_module(module)``, its native INFO lines dropped the first time (a module
    already imported is returned as it is, with stderr left alone)."""
    if module in sys.modules:
        return sys.modules[module]
    with info_lines_dropped():
        return importlib.import_module(module)


def quiet_first_call(owner: object, attribute: str) -> None:
    """``owner.attribute`` (a function) runs its first call inside ``info_lines_dropped`` (where a
    framework compiles and logs), and is itself again from then on: no wrapper on later calls."""
    function = getattr(owner, attribute)

    def first_call(*args, **kwargs):
        setattr(owner, attribute, function)
        with info_lines_dropped():
            return function(*args, **kwargs)

    setattr(owner, attribute, first_call)
