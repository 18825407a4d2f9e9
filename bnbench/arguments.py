"""The command line's value types: a bad value is a one-line error naming the flag, the value and
the limit (argparse puts the flag in front). Imports no framework."""
from __future__ import annotations

import argparse
import os


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def at_most(limit: int, why: str):
    """A positive integer no larger than ``limit`` (``why`` says what bounds it)."""

    def parse(text: str) -> int:
        value = positive_int(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"{text!r} is more than {limit} ({why})")
        return value

    return parse


def cores() -> int:
    """The machine's logical CPUs."""
    return os.cpu_count() or 1


def seconds(text: str) -> float:
    """Seconds (a budget, a deadline): a finite number above 0 and at most a day (nan and inf never end)."""
    from bnbench.timing.rounds import MAX_BUDGET_S

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (0 < value <= MAX_BUDGET_S):     # False for nan
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 and at most {MAX_BUDGET_S:g} seconds")
    return value
