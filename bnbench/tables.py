"""Every table the suite prints or publishes, as plain text or as markdown, laid out by one library
(tabulate): no column is padded by hand. Cells are written as given (numbers are formatted by the
caller, which knows their units and digits); None is written as "-"."""
from __future__ import annotations

from typing import Any, List, Sequence


def _cells(rows: Sequence[Sequence[Any]], width: int) -> List[List[str]]:
    out = []
    for number, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"table row {number} has {len(row)} cells, its header {width}: {list(row)!r}")
        out.append(["-" if cell is None else str(cell) for cell in row])
    return out


def text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: the header, a rule of dashes, the rows; columns two spaces apart."""
    from tabulate import tabulate

    table = tabulate(_cells(rows, len(header)), headers=list(header), tablefmt="simple", disable_numparse=True,
                     stralign="left")
    return "\n".join(line.rstrip() for line in table.splitlines())


def markdown(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> List[str]:
    """A markdown (GitHub) table, as lines; a cell's "|" is escaped so that it stays one cell."""
    from tabulate import tabulate

    cells = [[cell.replace("|", "\\|") for cell in row] for row in _cells(rows, len(header))]
    return tabulate(cells, headers=[str(h).replace("|", "\\|") for h in header], tablefmt="github",
                    disable_numparse=True, stralign="left").splitlines()
