"""The layout of a round of paired bursts: which core each worker runs on, and in which order the
bursts run.

- **Cores.** Only one burst runs at a time, so where workers are pinned to fewer cores than the
  machine has, every worker of a round takes the same cores, and each round moves them all to the
  next cores (``core_sets``): within a round every participant meets the same cores, and over the
  rounds a core's own speed (interrupts, a neighbour) stays with no participant. Where each worker
  uses every core (``threads`` at least the cores there are) nothing is pinned: the system places
  the threads. Holding each worker's main thread to a core of its own, rotated round by round, was
  measured on 2 cores to double the spread of the ratios from round to round (NumPy's twin: an
  interquartile range of 0.100 against 0.061 in log ratio, PyTensor 0.126 against 0.051, jax
  0.183 against 0.101, at medium): a thread team whose helper the system wakes beside a pinned
  main thread runs on one core until it is moved.
- **Order.** Every participant's burst sits between two bursts of the baseline (``chain``), which
  alternate between the baseline's two processes (its copy and its control) where there is a
  control. A row's ratio in a round is its burst over the geometric mean of the two baseline
  bursts on either side of it: they ran a fraction of a second before and after it, in the same
  phase of the machine (these machines alternate fast and slow phases of a few seconds; a round
  of every framework lasts about as long as one), and a drift that is linear over the three bursts
  cancels. The order of the other participants is shuffled round by round.

Pure Python: nothing here starts a worker; ``rounds`` applies it."""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

ANCHOR = "anchor"
OTHER = "other"


def core_sets(round_index: int, n_workers: int, cores: Sequence[int], threads: int) -> Optional[List[List[int]]]:
    """The cores every worker runs on in round ``round_index``, or None where workers are not
    pinned (each of them may use every core: ``threads`` at least the cores there are). The cores
    are cut into slots of ``threads``; in round r every worker takes slot r modulo the slots."""
    cores = sorted(cores)
    if threads >= len(cores):
        return None
    slot = round_index % (len(cores) // threads)
    return [cores[slot * threads:(slot + 1) * threads] for _ in range(n_workers)]


def placement_of(rotating: bool, cores: Sequence[int], threads: int) -> str:
    """How the rounds place their workers (what ``rounds`` pins with these cores and threads)."""
    if rotating and core_sets(0, 1, cores, threads) is not None:
        return "every worker of a round pinned to the same cores, moved to the next cores round by round"
    return "workers not pinned to cores"


def chain(order: Sequence[int], n_anchors: int, first_anchor: int) -> List[Tuple[str, int]]:
    """A round's bursts: (ANCHOR, which of the baseline's processes) before and after every
    (OTHER, index) of ``order``, the anchors taking the baseline's ``n_anchors`` processes in turn
    from ``first_anchor``. With two processes, every other participant has one of each beside it,
    in one order or the other."""
    if n_anchors < 1:
        raise ValueError(f"n_anchors {n_anchors!r}: a chain needs the baseline in at least one process")
    anchor = first_anchor % n_anchors
    layout = [(ANCHOR, anchor)]
    for index in order:
        anchor = (anchor + 1) % n_anchors
        layout += [(OTHER, index), (ANCHOR, anchor)]
    return layout


def beside(layout: Sequence[Tuple[str, int]], values: Sequence[float]) -> List[Tuple[int, float, float]]:
    """For each OTHER burst of ``layout`` (``values`` the medians of every burst, in its order):
    (its index, its median, the geometric mean of the anchors' medians on either side of it)."""
    out = []
    for position, (kind, index) in enumerate(layout):
        if kind == OTHER:
            out.append((index, values[position], math.sqrt(values[position - 1] * values[position + 1])))
    return out


def anchor_pairs(layout: Sequence[Tuple[str, int]], values: Sequence[float]) -> List[float]:
    """The ratio of process 1 to process 0 of the baseline over every pair of neighbouring anchors
    (one participant's burst apart, as a row is from its anchors): the floor's per-pair readings,
    alternately taken in one order and the other. Empty with one process."""
    anchors = [(index, values[position]) for position, (kind, index) in enumerate(layout) if kind == ANCHOR]
    ratios = []
    for (first, a), (second, b) in zip(anchors, anchors[1:]):
        if {first, second} == {0, 1}:
            ratios.append(a / b if first == 1 else b / a)
    return ratios
