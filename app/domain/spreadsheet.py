"""Cells of the CSV files clinann writes, made safe to open in a spreadsheet."""

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
