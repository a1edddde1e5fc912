"""HTML and script in note text, guidelines, names and comments are shown as text and never run, in
Chromium: the physician's editor, the lead's adjudication and dashboard, and the admin's pages."""

import hashlib
import uuid

import pytest
from e2e_support import log_in
from editor_support import PASSWORD
from playwright.sync_api import expect
from sqlalchemy import delete

from app.db.models import AnnotationSet, Assignment, Document, Project, ProjectMember, User
from app.demo.seed import MEDICATION_SCHEMA
from app.domain.spans import Fragment, SpanData
from app.domain.vocabulary import SetOrigin, SetStatus
from app.services.annotation_sets import add_spans


def payload(n: int) -> str:
    """Markup that would set window.__pwned to n if it ever ran."""
    return (
        f'<script>window.__pwned={n}</script><img src=x onerror="window.__pwned={n}">'
        f'<svg onload="window.__pwned={n}"></svg>"\'><iframe srcdoc="<script>parent.__pwned={n}</script>">'
    )


NOTE = f"Aspirin 81 mg daily. {payload(1)} Nausea after the dose."


@pytest.fixture
def world(demo_db):
    from app.services.users import hash_password

    tag = uuid.uuid4().hex[:8]
    hashed = hash_password(PASSWORD)
    with demo_db.begin() as session:
        lead = User(
            username=f"lead-{tag}", display_name=f"Lead {payload(2)}", role="lead", password_hash=hashed
        )
        ana = User(
            username=f"ana-{tag}", display_name=f"Dr Ana {payload(3)}", role="annotator", password_hash=hashed
        )
        ben = User(
            username=f"ben-{tag}", display_name=f"Dr Ben {tag}", role="annotator", password_hash=hashed
        )
        project = Project(
            name=f"Injection {tag} {payload(4)}",
            guidelines=f"Label drugs. {payload(5)}",
            label_schema=MEDICATION_SCHEMA,
            study_settings={},
        )
        session.add_all([lead, ana, ben, project])
        session.flush()
        session.add(ProjectMember(project_id=project.id, user_id=lead.id))  # leads see only their projects
        document = Document(
            project_id=project.id,
            external_id=f"inj-{tag}",
            text=NOTE,
            sha256=hashlib.sha256(NOTE.encode()).hexdigest(),
            metadata_={"ward": payload(6)},
        )
        session.add(document)
        session.flush()
        script = NOTE.index("<script>")
        sets = {}
        for user, status in ((ana, SetStatus.submitted), (ben, SetStatus.submitted)):
            annotation_set = AnnotationSet(
                document_id=document.id,
                origin=SetOrigin.annotator.value,
                annotator_id=user.id,
                condition="scratch",
                status=status.value,
                note=f"My comment {payload(7)}",
            )
            session.add(annotation_set)
            session.flush()
            labels = ["Drug", "ADE"] if user is ana else ["Drug", "Reason"]
            add_spans(
                session,
                annotation_set,
                [
                    SpanData(labels[0], (Fragment(0, 7),)),
                    SpanData(labels[1], (Fragment(script, script + 40),)),  # a span over the markup itself
                ],
            )
            session.add(
                Assignment(
                    project_id=project.id,
                    document_id=document.id,
                    annotator_id=user.id,
                    condition="scratch",
                    queue_position=0,
                    annotation_set_id=annotation_set.id,
                )
            )
            sets[user.username] = annotation_set.id
        ids = {"project": project.id, "users": [lead.id, ana.id, ben.id], "document": document.id}
    yield {"tag": tag, "sets": sets, **ids}
    with demo_db.begin() as session:
        session.execute(delete(Project).where(Project.id == ids["project"]))
        session.execute(delete(User).where(User.id.in_(ids["users"])))


def assert_inert(page, *texts: str) -> None:
    page.wait_for_timeout(300)  # time for an image error or an onload to fire, had anything been parsed
    assert page.evaluate("() => window.__pwned") is None
    body = page.locator("body").inner_text()
    for text in texts:
        assert text in body, f"{text!r} is not shown as text"


def test_markup_everywhere_is_text_and_never_runs(page, demo_db, world):
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    tag = world["tag"]

    # The physician's editor: the note, their comment, the guidelines, a span over the markup.
    log_in(page, f"ana-{tag}", PASSWORD)
    with demo_db.begin() as session:  # reopened so that the editor is live for ana
        session.get(AnnotationSet, world["sets"][f"ana-{tag}"]).status = "open"
    page.goto(f"/annotate/sets/{world['sets'][f'ana-{tag}']}")
    page.wait_for_function("() => document.body.dataset.editorReady === 'true'")
    expect(page.locator("[data-testid=note-text]")).to_contain_text("<script>window.__pwned=1</script>")
    page.click("[data-testid=guidelines-button]")
    expect(page.locator("[data-testid=guidelines]")).to_contain_text("<script>window.__pwned=5</script>")
    page.keyboard.press("Escape")
    page.locator("[data-testid=span-item]").nth(1).hover()
    assert_inert(page, "<img src=x")
    assert page.locator("[data-testid=set-note]").input_value().startswith("My comment <script>")
    page.goto("/annotate")
    assert_inert(page, f"Injection {tag} <script>")
    page.context.clear_cookies()  # a fresh browser session for the lead

    # The lead: the adjudication comparison names the physicians; the dashboard and project pages.
    with demo_db.begin() as session:
        session.get(AnnotationSet, world["sets"][f"ana-{tag}"]).status = "submitted"
    log_in(page, f"lead-{tag}", PASSWORD)
    page.goto(f"/lead/projects/{world['project']}/adjudication")
    assert_inert(page, f"inj-{tag}")
    with page.expect_navigation():
        page.locator("[data-testid=adjudicate]").click()
    page.wait_for_function("() => document.body.dataset.editorReady === 'true'")
    expect(page.locator("[data-testid=comparison]")).to_contain_text(
        "Dr Ana <script>window.__pwned=3</script>"
    )
    assert_inert(page, "<script>window.__pwned=1</script>")
    for path in (
        f"/lead/projects/{world['project']}/dashboard",
        "/lead",
        f"/lead/projects/{world['project']}",
    ):
        page.goto(path)
        assert_inert(page)
    assert dialogs == []
