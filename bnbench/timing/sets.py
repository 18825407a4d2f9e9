"""Process sets: a run's rounds split over two or more sets of freshly started workers.

What stays fixed for the life of a worker process stays fixed for a whole run when every
participant keeps one process: its memory layout (where the allocator put its arrays, how they fall
on the caches), the state the machine was in while it ran. No interval taken over one run's rounds
can see it, and it moved the rows of two back-to-back runs together: on the 2-core AMD EPYC, the
baseline's two NumPy processes ran about 3% faster, relative to everything else, in the second of
two runs at medium, and most of the 15 rows moved that way (the median row by 3.6%, Caffe by 8.5%).

A run of ``sets`` process sets gives each set its share of the budget; between two sets every
worker is closed and started again (imported, built, verified and warmed as the first time, and
outside the budget). Each row's figure is the mean over the sets of its median within each set,
and its interval resamples the sets as well as the rounds within them
(``stats.set_bootstrap``): two sets that disagree widen the interval by as much.

``join`` makes the participants of the sets one participant per label, as the summary reads them;
pure Python, tested on synthetic participants (tests/test_sets.py).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence

from bnbench.timing.participant import Participant

# Every framework at medium starts in about 50 s on 2 cores, which each set pays again (the first
# 53 s, the others about 43 s: bnbench.timing.rounds). What a set fixes, a row's sets showed it: 1.6%
# from one set to the next for NumPy's own control, 3-3.6% for JAX, TensorFlow XLA and
# keras-tensorflow, against 1-2% within a set from its rounds; four sets halve what two leave of it.
# Back-to-back runs of 300 s at medium moved a row at the most by 8.5% over one set, by 2.6%, 5.1%
# and 3.3% over two (three pairs), by 2.6% and 6.9% over four (1.9% and 4.8% over their own rows'
# undisturbed rounds: bnbench.timing.summary).
DEFAULT_SETS = 4
# Each set starts, builds and verifies every worker again (every framework at medium: about 45 s on
# 2 cores): 16 sets spend 12 minutes on that alone; --sets 100000 was accepted (about 4 days).
MAX_SETS = 16


def shares(budget: float, sets: int) -> List[float]:
    """The seconds of rounds of each set: the budget split evenly."""
    if not 1 <= sets <= MAX_SETS:
        raise ValueError(f"sets {sets!r} must be from 1 to {MAX_SETS}")
    return [budget / sets] * sets


def join(sets: Sequence[Sequence[Optional[Participant]]], rounds: Sequence[int]) -> List[Participant]:
    """One participant per position from each set's participants (``sets[k][i]``: set k's i-th,
    ``rounds[k]`` rounds in set k), their per-round figures one after the other.

    A participant that was not timed in every set is not timed: its problem is the first set's
    that failed, which it names. One that failed its check against the reference in one set has
    no figure that counts (a timing is published only for what passed in the same environment)."""
    if len(sets) != len(rounds):
        raise ValueError(f"{len(sets)} sets of participants for {len(rounds)} counts of rounds")
    width = max((len(members) for members in sets), default=0)
    return [_joined([members[i] if i < len(members) else None for members in sets], rounds) for i in range(width)]


def _joined(pieces: Sequence[Optional[Participant]], rounds: Sequence[int]) -> Participant:
    first = next(piece for piece in pieces if piece is not None)
    stray = next((piece.label for piece in pieces if piece is not None and piece.label != first.label), None)
    if stray is not None:      # the sets must list their participants in one order
        raise ValueError(f"{stray} in the place of {first.label} in another process set")
    for index, piece in enumerate(pieces):
        if piece is None or not piece.timed:
            where = f"process set {index + 1} of {len(pieces)}: " if len(pieces) > 1 else ""
            problem = "not started" if piece is None else piece.problem
            base = piece if piece is not None else first
            return dataclasses.replace(base, adapter=None, runner=None, problem=f"{where}{problem}",
                                       **_empty_rounds())
    for piece, count in zip(pieces, rounds):
        if len(piece.medians) != count:
            raise ValueError(f"{piece.label}: {len(piece.medians)} rounds in a set of {count}")
    joined: Dict[str, list] = {field: [value for piece in pieces for value in getattr(piece, field)]
                               for field in _empty_rounds()}
    return dataclasses.replace(first, adapter=None, runner=None, **joined,
                               unplaced=next((p.unplaced for p in pieces if p.unplaced), None),
                               memory_kind=next((p.memory_kind for p in pieces if p.memory_kind), None))


def _empty_rounds() -> Dict[str, list]:
    return {"medians": [], "references": [], "latencies": [], "steps": [], "memory": [], "busy_after": []}


def labels_of(rounds: Sequence[int]) -> List[int]:
    """The process set of each round of the run."""
    return [index for index, count in enumerate(rounds) for _ in range(count)]
