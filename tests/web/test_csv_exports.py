"""Every CSV the app produces over HTTP keeps planted formulas as text (issue 17, finding 5).

Before, the events CSV passed a note id such as ``=HYPERLINK(...)`` through as it was."""

import csv
import io

from sqlalchemy import select

from app.db.models import AnnotationSet, Document, EditEvent, User
from app.domain.spreadsheet import FORMULA_STARTS
from tests.conftest import log_in
from tests.services.study_fixtures import project_with_pre_labels

PLANTED = '=HYPERLINK("http://x.example","open")'


def _formula_cells(text: str) -> list[str]:
    return [
        cell
        for row in csv.reader(io.StringIO(text, newline=""))
        for cell in row
        if cell[:1] in FORMULA_STARTS
    ]


def test_the_events_csv_and_the_audit_csv_keep_formulas_as_text(web, sessions, accounts):
    with sessions.begin() as db:
        project = project_with_pre_labels(db, "Formulas", "x", 1)
        document = db.scalar(select(Document).where(Document.project_id == project.id))
        document.external_id = PLANTED
        pre = db.scalar(select(AnnotationSet).where(AnnotationSet.document_id == document.id))
        admin = db.scalar(select(User).where(User.username == "admin"))
        db.add(EditEvent(annotation_set_id=pre.id, user_id=admin.id, page_session_id="p", kind="open",
                         client_id="@SUM(1)", set_version=1))  # fmt: skip
        project_id = project.id
    assert log_in(web, "=cmd|calc", "wrong-password-x").status_code in (200, 401, 422)  # audited by name
    assert log_in(web, "admin").status_code == 303
    events = web.get(f"/api/v1/lead/projects/{project_id}/export", params={"format": "events-csv"})
    assert events.status_code == 200 and "'" + PLANTED.replace('"', '""') in events.text
    assert _formula_cells(events.text) == []
    trail = web.get("/admin/audit/export", params={"format": "csv"})
    assert trail.status_code == 200 and "'=cmd|calc" in trail.text
    assert _formula_cells(trail.text) == []
