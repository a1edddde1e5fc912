"""Uploading a batch of notes in a real browser: PHI screen, hold, release with a reason, refusal.

Each test makes its own project (name with a random tag) in the demo server's database, uploads
through /admin/batches as the demo admin, and checks both the page and what PostgreSQL holds.
The project and everything stored in it are deleted afterwards.
"""

import io
import re
import uuid
import zipfile

import pytest
from e2e_support import log_in
from playwright.sync_api import expect
from sqlalchemy import delete, make_url, select

from app.db.engine import make_engine, make_session_factory
from app.db.models import (
    AnnotationSet,
    AuditEvent,
    Batch,
    Document,
    PreAnnotationRun,
    Project,
    Span,
    SpanFragment,
)
from app.demo.seed import DEMO_LOGINS, DEMO_PROJECT
from app.services.projects import create_project

E2E_DATABASE = "clinann_e2e"  # tests/e2e/conftest.py: demo_server runs on this database
ADMIN_USER, ADMIN_PASSWORD = next((u, p) for role, u, p in DEMO_LOGINS if role == "admin")
SCHEMA = {
    "entity_types": [
        {"name": "Drug", "color": "#1f77b4"},
        {"name": "Dose", "color": "#ff7f0e"},
    ]
}

N1_TEXT = "Metformin 500 mg daily.\r\n"
N2_TEXT = "Patient: John Smith, MRN 12345678, seen on March 4, 2019.\n"
LAYER_NAME = "upload-test"


def _path_is(path: str):
    return re.compile(rf"^https?://[^/]+{re.escape(path)}(\?.*)?$")


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def batch_db(postgres, demo_server):
    """Sessions on the database the demo server runs on (not a fresh one)."""
    url = make_url(postgres.admin_url.replace("postgresql://", "postgresql+psycopg://", 1))
    engine = make_engine(url.set(database=E2E_DATABASE).render_as_string(hide_password=False), pool_size=2)
    sessions = make_session_factory(engine)
    with sessions() as db:
        assert db.scalar(select(Project.id).where(Project.name == DEMO_PROJECT)) is not None, (
            f"{E2E_DATABASE} is not the database of the demo server"
        )
    yield sessions
    engine.dispose()


@pytest.fixture
def fresh_project(page, batch_db):
    """A new project (Drug, Dose) made directly in the database; dropped with its notes afterwards."""
    name = f"Batch e2e {uuid.uuid4().hex[:10]}"
    project = create_project(batch_db, name, SCHEMA)
    yield project.id, name
    page.context.close()
    with batch_db.begin() as db:
        # documents.batch_id is RESTRICT: drop the notes before the project cascades to its batches.
        db.execute(delete(Document).where(Document.project_id == project.id))
        db.execute(delete(Project).where(Project.id == project.id))


def _upload(page, project_id: int, name: str, payload: bytes, mime: str, layer: str | None = None):
    page.goto("/admin/batches")
    form = page.get_by_test_id("upload-form")
    expect(form).to_be_visible()
    form.locator("#project").select_option(value=str(project_id))
    form.locator("#files").set_input_files(files=[{"name": name, "mimeType": mime, "buffer": payload}])
    if layer is not None:
        form.locator("#layer").fill(layer)
    with page.expect_navigation():
        page.get_by_test_id("upload-submit").click()


def test_held_batch_is_released_with_a_reason_and_stored(page, batch_db, fresh_project):
    project_id, project_name = fresh_project
    payload = _zip(
        {
            "n1.txt": N1_TEXT.encode("utf-8"),
            "n1.ann": b"T1\tDrug 0 9\tMetformin\n",
            "n2.txt": N2_TEXT.encode("utf-8"),
            "n2.ann": b"",
        }
    )
    log_in(page, ADMIN_USER, ADMIN_PASSWORD)
    _upload(page, project_id, "batch.zip", payload, "application/zip", layer=f"pre:{LAYER_NAME}")

    # Held for review: the browser was sent to the batch's own page.
    expect(page).to_have_url(re.compile(r"^https?://[^/]+/admin/batches/\d+$"))
    batch_id = int(page.url.rsplit("/", 1)[1])
    status = page.get_by_test_id("batch-status")
    expect(status).to_have_attribute("data-status", "held")
    expect(page.get_by_role("heading", level=1)).to_contain_text(project_name)
    with batch_db() as db:
        batch = db.get(Batch, batch_id)
        assert (batch.project_id, batch.status, batch.document_count) == (project_id, "held", 2)
        assert db.scalar(select(Document.id).where(Document.project_id == project_id)) is None

    # The PHI report names n2 (with its hits in context) and not n1.
    expect(page.get_by_test_id("phi-note")).to_have_count(1)
    expect(page.locator("[data-testid=phi-note][data-note=n1]")).to_have_count(0)
    n2 = page.locator("[data-testid=phi-note][data-note=n2]")
    expect(n2).to_have_count(1)
    hits = n2.get_by_test_id("phi-hit")
    for identifier in ("John Smith", "12345678", "March 4, 2019"):
        expect(hits.filter(has_text=identifier)).to_have_count(1)
    expect(page.get_by_test_id("release-form")).to_be_visible()
    expect(page.get_by_test_id("reject")).to_be_visible()

    # Padded with blanks it passes the browser's minlength; the server strips it and refuses.
    page.locator("#reason").fill("   too short   ")
    with page.expect_navigation():
        page.get_by_test_id("release").click()
    expect(page.get_by_test_id("release-error")).to_contain_text("10 characters")
    expect(page.get_by_test_id("batch-status")).to_have_attribute("data-status", "held")
    with batch_db() as db:
        assert db.get(Batch, batch_id).status == "held"
        assert db.scalar(select(Document.id).where(Document.project_id == project_id)) is None

    reason = f"E2E check {uuid.uuid4().hex[:6]}: synthetic notes, the name and MRN are invented."
    page.goto(f"/admin/batches/{batch_id}")
    page.locator("#reason").fill(reason)
    with page.expect_navigation():
        page.get_by_test_id("release").click()
    expect(page).to_have_url(_path_is(f"/admin/batches/{batch_id}"))
    expect(page.get_by_test_id("batch-status")).to_have_attribute("data-status", "accepted")
    expect(page.get_by_test_id("batch-status")).to_contain_text(reason)
    expect(page.get_by_test_id("release-form")).to_have_count(0)
    expect(page.get_by_test_id("release-error")).to_have_count(0)

    with batch_db() as db:
        batch = db.get(Batch, batch_id)
        assert (batch.status, batch.staged, batch.phi_override_reason) == ("accepted", None, reason)
        documents = {
            d.external_id: d for d in db.scalars(select(Document).where(Document.project_id == project_id))
        }
        assert sorted(documents) == ["n1", "n2"]
        assert documents["n1"].text == N1_TEXT  # CRLF kept
        assert documents["n2"].text == N2_TEXT
        assert {d.batch_id for d in documents.values()} == {batch_id}

        sets = list(
            db.scalars(
                select(AnnotationSet).where(AnnotationSet.document_id.in_([d.id for d in documents.values()]))
            )
        )
        # A brat pair is an annotated note even when its .ann is empty: n2 gets an empty pre set.
        pre_of = {s.document_id: s for s in sets}
        assert sorted(pre_of) == sorted([documents["n1"].id, documents["n2"].id]) and len(sets) == 2
        assert {(s.origin, s.source_name) for s in sets} == {("pre_annotation", LAYER_NAME)}
        assert len({s.pre_annotation_run_id for s in sets}) == 1
        pre = pre_of[documents["n1"].id]
        run = db.get(PreAnnotationRun, pre.pre_annotation_run_id)
        assert (run.project_id, run.name, run.method) == (project_id, LAYER_NAME, "imported")
        empty = pre_of[documents["n2"].id].id
        assert db.scalar(select(Span.id).where(Span.annotation_set_id == empty)) is None
        spans = db.execute(
            select(Span.uid, Span.label, Span.status, SpanFragment.start, SpanFragment.end)
            .join(SpanFragment, SpanFragment.span_id == Span.id)
            .where(Span.annotation_set_id == pre.id)
        ).all()
        assert [tuple(row) for row in spans] == [("T1", "Drug", "pending", 0, 9)]
        assert documents["n1"].text[0:9] == "Metformin"

        overrides = list(
            db.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "batch.phi_override", AuditEvent.object_id == str(batch_id)
                )
            )
        )
        assert len(overrides) == 1
        assert overrides[0].details["reason"] == reason
        assert overrides[0].details["documents"] == 2

    # The lead's overview (seen by the admin) counts the two notes.
    page.goto("/lead")
    row = page.get_by_test_id("project-row").filter(has_text=project_name)
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(1)).to_have_text("2")


def test_invalid_utf8_is_refused_and_nothing_is_stored(page, batch_db, fresh_project):
    project_id, _ = fresh_project
    log_in(page, ADMIN_USER, ADMIN_PASSWORD)
    _upload(page, project_id, "bad.txt", b"\xff\xfe bad", "text/plain")

    expect(page).to_have_url(_path_is("/admin/batches"))
    outcome = page.get_by_test_id("upload-outcome")
    expect(outcome).to_have_attribute("data-status", "refused")
    expect(outcome).to_contain_text("nothing was stored")
    problems = page.get_by_test_id("upload-problems")
    expect(problems).to_contain_text("bad.txt")
    expect(problems).to_contain_text("invalid UTF-8")

    with batch_db() as db:
        assert db.scalar(select(Document.id).where(Document.project_id == project_id)) is None
        assert db.scalar(select(Batch.id).where(Batch.project_id == project_id)) is None
        refused = list(
            db.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "batch.refused", AuditEvent.object_id == str(project_id)
                )
            )
        )
        assert len(refused) == 1
        assert refused[0].details["files"] == ["bad.txt"]
        # The audit log says where the problem was, never the text.
        assert refused[0].details["problems"] == ["bad.txt:1"]


def test_a_flagged_note_is_masked_and_rejecting_asks_in_the_page(page, batch_db, fresh_project):
    """Issue 20: a decision per flagged note, and a rejection that says what it erases before it does."""
    project_id, _ = fresh_project
    payload = _zip({"n1.txt": N2_TEXT.encode(), "n2.txt": N1_TEXT.encode()})
    log_in(page, ADMIN_USER, ADMIN_PASSWORD)
    _upload(page, project_id, "batch.zip", payload, "application/zip")
    batch_id = int(page.url.rsplit("/", 1)[1])
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))  # a native confirm() would land here

    note = page.locator("[data-testid=phi-note][data-note=n1]")
    note.get_by_label("Mask its hits").check()
    note.get_by_label("Reason").fill("masked so the synthetic names cannot be mistaken for real ones")
    with page.expect_navigation():
        note.get_by_test_id("note-decide").click()
    expect(note).to_have_attribute("data-decision", "mask")
    expect(note.get_by_test_id("phi-hit")).to_have_text(["[NAME]", "[ID]", "[DATE]"])
    with batch_db() as db:
        [staged] = [d for d in db.get(Batch, batch_id).staged["documents"] if d["external_id"] == "n1"]
        assert staged["text"] == "Patient: [NAME], MRN [ID], seen on [DATE].\n"

    reject = page.get_by_test_id("reject")
    dialog = page.get_by_test_id("reject-dialog")
    reject.click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("erases its 2 notes")
    expect(page.get_by_test_id("reject-cancel")).to_be_focused()  # Enter keeps the batch
    page.get_by_test_id("reject-cancel").click()
    expect(dialog).to_be_hidden()
    with batch_db() as db:
        assert db.get(Batch, batch_id).status == "held"
    reject.click()
    with page.expect_navigation():
        page.get_by_test_id("reject-confirm").click()
    expect(page.get_by_test_id("batch-status")).to_have_attribute("data-status", "rejected")
    expect(page.get_by_test_id("batch-kept")).to_contain_text("its notes were erased")
    assert dialogs == []
    with batch_db() as db:
        batch = db.get(Batch, batch_id)
        assert (batch.status, batch.staged) == ("rejected", None)
        assert db.scalar(select(Document.id).where(Document.project_id == project_id)) is None
