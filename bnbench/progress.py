"""The progress bar of the suite's long commands (tqdm on stderr where it is installed; nothing
otherwise, and nothing when a command is asked to be quiet)."""
from __future__ import annotations

import sys
from typing import Optional


class NoBar:
    def set_description(self, text: str) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def reset(self, total: Optional[int] = None) -> None:
        pass


def bar(total: Optional[int], unit: str, enabled: bool = True):
    if not enabled:
        return NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return NoBar()
    return tqdm(total=total, unit=unit, leave=False, dynamic_ncols=True, file=sys.stderr)
