"""The one way every figure of the suite is drawn and saved, and the number formats of its tables.

``save`` writes a PNG without a version stamp, atomically, so that the same data give
byte-identical files; ``STYLES`` gives each series of a plot its own colour and marker pair."""
from __future__ import annotations

import io
from typing import Optional

from bnbench.reference.io import atomic_write_bytes
from bnbench.timing.form import Form, FormError

# --------------------------------------------------------------------------- formatting
# Plot styles: a colour and a marker per series; the first 8 series differ in colour, and no two of
# the 80 pairs share both.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
MARKERS = "osD^v<>ph*"
STYLES = [(colour, marker) for marker in MARKERS for colour in COLOURS]


def style_for(label: str) -> "tuple[str, str]":
    """The colour and marker of a framework's series ('framework:form') in every plot of the suite:
    its colour from the framework's place in the registry, its marker from the form's among the
    framework's modes and forms, so that one framework looks the same in the comparisons and the
    sweeps, and no two series of one plot share both."""
    from bnbench.adapters.registry import local_class, names

    try:
        form = Form.parse(label)
    except FormError:           # a series that is no form (a fit, a bound): styled by its whole name
        form = Form(label.replace(":", "-").replace("+", "-").replace("#", "-") or "-", "-")
    framework = form.framework
    known = names()
    index = known.index(framework) if framework in known else len(known) + sum(map(ord, framework))
    forms = list(local_class(framework).modes) if framework in known else []
    form_index = forms.index(form.mode) if form.mode in forms else 0
    form_index += 2 * (form.variant is not None) + 4 * (form.copy is not None)
    return COLOURS[index % len(COLOURS)], MARKERS[(3 * (index // len(COLOURS)) + form_index) % len(MARKERS)]


def styles_for(labels) -> "dict[str, tuple[str, str]]":
    """``style_for`` of every series of one plot, a series whose pair another already took moved
    to the next free marker of its colour: no two series of a plot share both."""
    taken, out = set(), {}
    for label in sorted(labels):
        colour, marker = style_for(label)
        start = MARKERS.index(marker)
        for step in range(len(MARKERS)):
            candidate = (colour, MARKERS[(start + step) % len(MARKERS)])
            if candidate not in taken:
                break
        taken.add(candidate)
        out[label] = candidate
    return out


def number(value: Optional[float], digits: int = 3) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:.{digits}g}"


def save(fig, path: str) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})   # no version stamp: deterministic
    atomic_write_bytes(path, buffer.getvalue())


def interval(value, low, high, style: str = ".3f") -> str:
    if value is None:
        return "-"
    return f"{value:{style}} [{low:{style}}, {high:{style}}]"


def pyplot():
    """matplotlib's pyplot on the Agg backend (no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def finish(fig, path: str) -> str:
    """Lay the figure out, save it (``save``) and close it; its path."""
    fig.tight_layout()
    save(fig, path)
    pyplot().close(fig)
    return path
