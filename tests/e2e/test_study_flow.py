"""A lead designs a study in the browser, reads the calibration agreement, releases the study and
reads the dashboard; the physicians' work in between goes through the same services as the editor."""

import uuid
from datetime import UTC, datetime

import pytest
from e2e_support import log_in
from editor_support import check_is_demo_database, e2e_database_url
from playwright.sync_api import expect
from sqlalchemy import delete, select

from app.db.engine import make_engine, make_session_factory
from app.db.models import AnnotationSet, Assignment, Document, Project, ProjectMember, User
from app.services import editing
from tests.services.study_fixtures import project_with_pre_labels


@pytest.fixture
def study_world(postgres, demo_server):
    engine = make_engine(e2e_database_url(postgres), 2)
    sessions = make_session_factory(engine)
    check_is_demo_database(sessions)
    tag = uuid.uuid4().hex[:6]
    with sessions.begin() as db:
        users = [User(username=f"dr.{tag}{i}", display_name=f"Dr {tag} {i}", role="annotator",
                      password_hash="unused") for i in range(3)]  # fmt: skip
        db.add_all(users)
        project = project_with_pre_labels(db, f"Study e2e {tag}", tag, 16)
        demo_lead = db.scalar(select(User.id).where(User.username == "lead"))
        db.add(ProjectMember(project_id=project.id, user_id=demo_lead))  # leads see only their projects
        world = {
            "project_id": project.id,
            "logins": [u.username for u in users],
            "user_ids": [u.id for u in users],
        }
    try:
        yield sessions, world
    finally:
        with sessions.begin() as db:
            documents = select(Document.id).where(Document.project_id == world["project_id"])
            db.execute(delete(Assignment).where(Assignment.project_id == world["project_id"]))
            db.execute(
                delete(AnnotationSet).where(
                    AnnotationSet.document_id.in_(documents), AnnotationSet.base_set_id.is_not(None)
                )
            )
            db.execute(delete(Project).where(Project.id == world["project_id"]))
            db.execute(delete(User).where(User.id.in_(world["user_ids"])))
        engine.dispose()


def test_a_lead_designs_calibrates_releases_and_reads_the_dashboard(page, study_world):
    sessions, world = study_world
    project_id = world["project_id"]
    log_in(page, "lead", "demo-lead")
    page.goto(f"/lead/projects/{project_id}/study")
    page.fill("#study-name", "e2e pilot")
    for box in page.get_by_test_id("study-annotator").all():  # only this test's physicians
        box.set_checked(box.get_attribute("value") in world["logins"])
    page.fill("#study-calibration", "2")
    page.fill("#study-overlap", "2")
    page.get_by_test_id("preview-study").click()
    expect(page.get_by_test_id("preview-table")).to_be_visible()
    expect(page.get_by_test_id("preview-row")).to_have_count(3)
    page.get_by_test_id("commit-study").click()
    expect(page.get_by_test_id("study-status")).to_have_text("calibration")

    # The physicians submit the calibration notes (through the editor's own service).
    with sessions() as db:
        calibration = db.scalars(
            select(Assignment).where(Assignment.project_id == project_id, Assignment.is_calibration)
        ).all()
    assert len(calibration) == 2 * 3
    for assignment in calibration:
        request = editing.EditRequest(kind="submit", client_id=f"e2e-{assignment.id}", page_session="e2e",
                                      version=0, monotonic_ms=1.0)  # fmt: skip
        editing.apply_edit(sessions, assignment.annotator_id, assignment.annotation_set_id, request,
                           now=datetime.now(UTC))  # fmt: skip

    page.reload()
    expect(page.get_by_test_id("calibration-agreement")).to_be_visible()
    expect(page.get_by_test_id("calibration-f1")).to_have_text("1.000")
    page.get_by_test_id("release-study").click()
    expect(page.get_by_test_id("study-status")).to_have_text("released")
    with sessions() as db:
        waiting = db.scalars(
            select(Assignment.condition).where(
                Assignment.project_id == project_id, Assignment.released_at.is_(None)
            )
        ).all()
    assert set(waiting) <= {"refine_human"}  # the rest is in the physicians' queues now

    page.goto(f"/lead/projects/{project_id}/dashboard")
    for section in ("progress-section", "time-section", "savings-section", "edit-mix-section",
                    "agreement-section", "disagreement-section"):  # fmt: skip
        expect(page.get_by_test_id(section)).to_be_visible()
    expect(page.get_by_test_id("progress-table")).to_contain_text(world["logins"][0])
