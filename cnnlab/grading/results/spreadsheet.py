"""CSV cells an instructor opens in a spreadsheet: nothing a student wrote may become a formula.

Excel, LibreOffice and Google Sheets run a cell that starts with ``=``, ``+``,
``-`` or ``@`` (and some also one that starts with a tab or a carriage return)
as a formula: ``=HYPERLINK(...)`` in a student's name or answer would run on
the instructor's machine. OWASP's advice, followed here: such a cell is written
with a leading apostrophe, which every spreadsheet shows as text, and the
apostrophe is taken off again when the sheet is read back.
"""

from __future__ import annotations

import csv
import io

__all__ = ["FORMULA_STARTS", "cell", "csv_text", "read_cell"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value) -> str:
    """``value`` as a CSV cell that no spreadsheet runs."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def read_cell(text) -> str:
    """A cell written by :func:`cell`, as it was before (other text unchanged)."""
    text = "" if text is None else str(text)
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_STARTS) else text


def csv_text(rows) -> str:
    """Rows of values as CSV text, every cell passed through :func:`cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return buffer.getvalue()
