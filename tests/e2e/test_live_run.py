"""A lead watches a run in Chromium (issue 20): the page follows it without a reload, note by note,
until it has finished; then the Cancel button is gone and the page stops asking."""

import asyncio
import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from e2e_support import log_in
from editor_support import PASSWORD
from playwright.sync_api import expect
from sqlalchemy import delete, select

from app.db.models import Document, Project, ProjectMember, User
from app.services import pre_annotation

NOTES = {"n1": "Metformin 500 mg daily.", "n2": "Aspirin and metformin.", "n3": "No drugs today."}
SCHEMA = {"entity_types": [{"name": "Drug", "color": "#1f77b4", "hotkey": "d"}]}


@pytest.fixture
def run_world(demo_db):
    """A lead, a project of three notes and a lexicon run queued on them (nothing works it but the test)."""
    from app.services.users import hash_password

    tag = uuid.uuid4().hex[:8]
    with demo_db.begin() as session:
        lead = User(
            username=f"runlead-{tag}",
            display_name="Run lead",
            role="lead",
            password_hash=hash_password(PASSWORD),
        )
        project = Project(name=f"Live run {tag}", label_schema=SCHEMA, study_settings={})
        session.add_all([lead, project])
        session.flush()
        session.add(ProjectMember(project_id=project.id, user_id=lead.id))
        for name, text in NOTES.items():
            session.add(
                Document(
                    project_id=project.id,
                    external_id=name,
                    text=text,
                    sha256=hashlib.sha256(text.encode()).hexdigest(),
                )
            )
        ids = {"project": project.id, "lead": lead.id, "login": lead.username}
    request = pre_annotation.RunRequest(
        name="terms", method="lexicon", lexicon_csv="label,term\nDrug,metformin\n"
    )
    ids["run"] = pre_annotation.start_run(
        demo_db, ids["project"], request, user_id=None, defer=lambda *a, **k: None
    )
    yield ids
    with demo_db.begin() as session:
        session.execute(delete(Project).where(Project.id == ids["project"]))
        session.execute(delete(User).where(User.id == ids["lead"]))


def _work(demo_db, run_id: int, *names: str) -> None:
    """Work notes as the worker does, with its own function, on the server's database."""
    with demo_db() as session:
        ids = session.scalars(select(Document.id).where(Document.external_id.in_(names))).all()
    # In a thread of its own: Playwright's event loop runs in this one.
    with ThreadPoolExecutor(1) as pool:
        for document_id in ids:
            pool.submit(asyncio.run, pre_annotation.pre_annotate_note(demo_db, run_id, document_id)).result()


def test_the_run_page_turns_finished_without_a_reload(page, demo_db, run_world):
    run_id = run_world["run"]
    log_in(page, run_world["login"], PASSWORD)
    page.goto(f"/lead/runs/{run_id}")
    polls = []
    page.on("request", lambda r: polls.append(r) if r.url.endswith(f"/lead/runs/{run_id}") else None)
    page.evaluate("() => { window.loadedOnce = true; }")  # gone if the page reloads
    status = page.locator("[data-testid=run-status]")
    expect(status).to_have_text("queued")
    expect(page.locator("[data-testid=cancel-run]")).to_be_visible()

    _work(demo_db, run_id, "n1")
    expect(status).to_have_text("running")
    expect(page.locator("[data-testid=note-result][data-note=n1]")).to_have_attribute(
        "data-status", "succeeded"
    )
    expect(page.locator("[data-testid=note-result][data-note=n2]")).to_have_attribute("data-status", "queued")

    _work(demo_db, run_id, "n2", "n3")
    expect(status).to_have_text("succeeded")
    expect(page.locator("[data-testid=note-result][data-status=succeeded]")).to_have_count(3)
    expect(page.locator("[data-testid=run-counts]")).to_contain_text("3 / 3 notes")
    expect(page.locator("[data-testid=cancel-run]")).to_have_count(0)
    expect(page.locator("[data-testid=mark-study-base]")).to_be_visible()
    assert page.evaluate("() => window.loadedOnce") is True  # the same page, never reloaded
    assert polls, "the page never asked for its progress"
    asked = len(polls)
    page.wait_for_timeout(2200)  # longer than one polling interval after the last swap
    assert len(polls) == asked, "the page kept polling after the run had finished"
