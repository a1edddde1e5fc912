"""One CSV writer for every CSV clinann produces (issue 17, finding 5): no cell runs as a formula."""

import csv
import io

from app.domain.spreadsheet import FORMULA_STARTS, csv_text
from app.domain.study_design import PlannedAssignment, assignments_csv

FORMULAS = ['=HYPERLINK("http://x.example","open")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(1)", "\tx", "\rx"]


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_every_cell_that_a_spreadsheet_would_run_is_kept_as_text():
    text = csv_text(["note", "n"], [[value, -3.5] for value in FORMULAS])
    rows = _cells(text)
    assert rows[0] == ["note", "n"]
    assert [row[0] for row in rows[1:]] == ["'" + value for value in FORMULAS]
    assert {row[1] for row in rows[1:]} == {"-3.5"}  # numbers stay numbers, negative ones too


def test_the_assignments_csv_escapes_note_ids_and_user_names():
    """The study's assignments.csv passed note ids and user names through as they were."""
    planned = [PlannedAssignment(FORMULAS[0], "@dr.evil", "scratch", 0, False, "=base")]
    rows = _cells(assignments_csv(planned))
    assert not [cell for row in rows for cell in row if cell[:1] in FORMULA_STARTS]
    assert rows[1][:2] == ["'" + FORMULAS[0], "'@dr.evil"] and rows[1][5] == "'=base"
