"""The lead's study page over HTTP: preview (nothing stored), commit, calibration agreement, release."""

from sqlalchemy import func, select

from app.db.models import Assignment, Study
from app.services import editing
from tests.conftest import log_in, make_lead_of, page, session_csrf
from tests.services.test_study import NOW, world  # noqa: F401  (the fixture)


def _form(web, project_id, **fields):
    path = f"/lead/projects/{project_id}/study"
    data = {
        "csrf_token": session_csrf(web, path),
        "name": "pilot",
        "annotators": ["dr.a", "dr.b", "dr.c"],
        "share_scratch": "1",
        "share_refine_llm": "1",
        "share_refine_human": "1",
        "overlap_documents": "2",
        "overlap_annotators": "2",
        "calibration_documents": "2",
        "seed": "3",
        **fields,
    }
    return web.post(path, data=data)


def test_a_lead_previews_commits_reads_calibration_and_releases(web, sessions, accounts, world):  # noqa: F811
    make_lead_of(sessions, world["project_id"])
    log_in(web, "lead")
    project_id = world["project_id"]
    preview = page(_form(web, project_id, action="preview"))
    rows = preview.select("[data-testid=preview-row]")
    assert {r["data-annotator"] for r in rows} == {"dr.a", "dr.b", "dr.c"}
    for row in rows:  # every physician in every condition
        assert all(int(cell.get_text()) > 0 for cell in row.select("td[data-condition]"))
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(Assignment)) == 0  # a preview stores nothing

    assert _form(web, project_id, action="commit").status_code == 303
    html = page(web.get(f"/lead/projects/{project_id}/study"))
    assert html.select_one("[data-testid=study]")["data-status"] == "calibration"
    csv = web.get(html.select_one("[data-testid=assignments-csv]")["href"])
    lines = csv.text.strip().splitlines()
    assert lines[0] == "document,annotator,condition,position,calibration,base_annotator"
    with sessions() as db:
        stored = db.scalar(select(func.count()).select_from(Assignment))
        calibration = db.scalars(select(Assignment).where(Assignment.is_calibration)).all()
    assert len(lines) - 1 == stored

    for assignment in calibration:  # everyone submits the calibration notes as they came (identical)
        request = editing.EditRequest(
            kind="submit", client_id=f"s{assignment.id}", page_session="p", version=0, monotonic_ms=1.0
        )
        editing.apply_edit(sessions, assignment.annotator_id, assignment.annotation_set_id, request, now=NOW)
    html = page(web.get(f"/lead/projects/{project_id}/study"))
    assert (
        html.select_one("[data-testid=calibration-f1]").get_text().strip() == "1.000"
    )  # all left the pre-labels

    csrf = session_csrf(web, f"/lead/projects/{project_id}/study")
    study_id = int(html.select_one("[data-testid=study]")["data-study-id"])
    assert web.post(f"/lead/studies/{study_id}/release", data={"csrf_token": csrf}).status_code == 303
    with sessions() as db:
        assert db.get(Study, study_id).status == "released"
    html = page(web.get(f"/lead/projects/{project_id}/study"))
    assert html.select_one("[data-testid=release-study]") is None


def test_a_bad_design_names_its_field(web, sessions, accounts, world):  # noqa: F811
    make_lead_of(sessions, world["project_id"])
    log_in(web, "lead")
    response = _form(web, world["project_id"], action="commit", overlap_annotators="7")
    assert response.status_code == 422
    assert page(response).select_one("[data-testid=form-error]")["data-field"] == "overlap_annotators"
    response = _form(web, world["project_id"], action="preview", share_scratch="x")
    assert page(response).select_one("[data-testid=form-error]")["data-field"] == "share_scratch"
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(Study)) == 0


def test_annotators_cannot_design_studies(web, sessions, accounts, world):  # noqa: F811
    log_in(web, "annotator")
    assert web.get(f"/lead/projects/{world['project_id']}/study").status_code == 403
