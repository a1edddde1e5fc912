"""The CSV files clinann writes, every cell made safe to open in a spreadsheet.

Every CSV the app produces goes through ``csv_text``: a note id, a user name or a label written by an
upload or a login could otherwise run as a formula (``=HYPERLINK(...)``) in the spreadsheet of whoever
opens the export (issue 17, finding 5).
"""

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """A CSV cell: empty for None, floats written exactly, and text that a spreadsheet would run as a
    formula (names and ids come from uploads and logins) kept as text with a leading quote."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


def csv_text(header: Sequence[str] | None, rows: Iterable[Sequence[Any]]) -> str:
    """The rows (after the header, when given) as CSV text, each cell through ``safe_cell``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header is not None:
        writer.writerow([safe_cell(name) for name in header])
    writer.writerows([safe_cell(value) for value in row] for row in rows)
    return out.getvalue()
