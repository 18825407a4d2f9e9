"""Every table through one helper (bnbench.tables): columns laid out by tabulate, a row of the wrong
width refused and named, a cell's "|" kept in its cell; and no module pads a table by hand."""
import os
import re

import pytest

from bnbench import tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_text_table_lines_its_columns_up():
    text = tables.text(["framework", "ratio"], [["numpy", "1.000"], ["keras-torch", None]]).splitlines()
    assert text[0].split() == ["framework", "ratio"] and set(text[1].replace(" ", "")) == {"-"}
    column = text[0].index("ratio")                   # the second column starts at one place on every line
    assert text[2][column:] == "1.000" and text[3][column:] == "-" and text[3][:column].strip() == "keras-torch"
    assert all(line == line.rstrip() for line in text)


def test_a_markdown_table_is_one_row_per_line_and_keeps_a_pipe_in_its_cell():
    lines = tables.markdown(["kernel", "ms"], [["a|b", "1.5"], ["c", None]])
    assert len(lines) == 4 and re.fullmatch(r"\|[-|]+\|", lines[1])
    cells = [re.split(r"(?<!\\)\|", line)[1:-1] for line in lines]
    assert all(len(row) == 2 for row in cells)
    assert [cell.strip() for cell in cells[2]] == ["a\\|b", "1.5"] and cells[3][1].strip() == "-"


def test_a_row_of_the_wrong_width_is_named():
    with pytest.raises(ValueError, match=r"table row 1 has 1 cells, its header 2: \['x'\]"):
        tables.text(["a", "b"], [["1", "2"], ["x"]])


def test_no_module_pads_a_table_by_hand():
    offences = []
    for folder in ("bnbench", "benchmarks", "adapters", "reference"):
        for directory, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                path = os.path.join(directory, name)
                if not name.endswith(".py") or path.endswith(os.path.join("bnbench", "tables.py")):
                    continue
                for number, line in enumerate(open(path, encoding="utf-8"), 1):
                    if re.search(r"\|---|\.ljust\(|\.rjust\(|\"\|\s*\"|:[<>]\d+\}", line):
                        offences.append(f"{os.path.relpath(path, ROOT)}:{number}: {line.strip()}")
    assert not offences, "tables go through bnbench.tables:\n" + "\n".join(offences)
