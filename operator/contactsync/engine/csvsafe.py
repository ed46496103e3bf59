"""CSV output that a spreadsheet cannot turn into formulas (CSV injection).

Following the OWASP CSV Injection guidance:

* Every field is quoted (``csv.QUOTE_ALL``), with embedded quotes doubled, so
  commas, quotes and line breaks inside a cell stay inside it.
* A cell that begins with ``=``, ``+``, ``-``, ``@``, TAB or CR, directly or
  after leading whitespace (spreadsheets skip it), gets a leading ``'``, which
  makes the cell text. The check looks past any Unicode whitespace, which is
  stricter than any one spreadsheet.
* NUL characters are removed: they are never meaningful in contact data, and
  they truncate or break many CSV consumers.

The prefix is applied without exceptions, as OWASP recommends, so some
legitimate values change too: a negative number ``-5`` is written ``'-5`` and
an E.164 phone number ``+14155550123`` is written ``'+14155550123`` (a
spreadsheet would otherwise evaluate it as a number). A consumer that needs the
raw value must strip one leading ``'`` from such cells; the header is
neutralised the same way.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from typing import TextIO

__all__ = ["FORMULA_TRIGGERS", "neutralize_cell", "write_csv"]

FORMULA_TRIGGERS = frozenset("=+-@\t\r")


def neutralize_cell(value: str) -> str:
    """The cell as it is safe to write: NULs removed, ``'`` prefixed if it could start a formula."""
    cell = value.replace("\0", "")
    # TAB and CR are triggers themselves, and lstrip() would remove them: check first.
    if cell[:1] in FORMULA_TRIGGERS or cell.lstrip()[:1] in FORMULA_TRIGGERS:
        return "'" + cell
    return cell


def write_csv(stream: TextIO, header: Sequence[str], rows: Iterable[Sequence[str]]) -> int:
    """Write header and rows with every cell neutralised and quoted; return the row count.

    ``stream`` must be opened with ``newline=""`` (as the csv module requires)
    so that line breaks inside cells are written unchanged. Every row must have
    as many cells as the header, and every cell must be a string: a number
    would bypass neutralisation. Errors name the row and column, never the value.
    """
    writer = csv.writer(stream, quoting=csv.QUOTE_ALL)
    writer.writerow([neutralize_cell(name) for name in header])
    count = 0
    for count, row in enumerate(rows, 1):
        if len(row) != len(header):
            raise ValueError(f"row {count}: {len(row)} cells, header has {len(header)}")
        for column, cell in enumerate(row):
            if not isinstance(cell, str):
                raise TypeError(f"row {count}, column {column}: cell is not a string")
        writer.writerow([neutralize_cell(cell) for cell in row])
    return count
