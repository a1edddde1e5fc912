"""A lead adjudicates two conflicting physician sets in Chromium: keeps one label, keeps one span as
genuinely ambiguous, submits; gold replays from its events, and the physicians' sets export
byte-for-byte the same before and after."""

import hashlib
import io
import json
import uuid
import zipfile

import pytest
from e2e_support import log_in
from editor_support import PASSWORD, cp_range, settle, wait_for
from playwright.sync_api import expect
from sqlalchemy import delete, select

from app.db.models import AnnotationSet, Document, EditEvent, Project, ProjectMember, User
from app.demo.seed import MEDICATION_SCHEMA
from app.domain.spans import Fragment, SpanData
from app.domain.vocabulary import SetOrigin, SetStatus
from app.services.annotation_sets import add_spans
from app.services.editing import TIME_KINDS, replayed_state, stored_state
from app.services.exports import export_project

TEXT = "Metformin 500 mg PO BID. Nausea after the first dose."


@pytest.fixture
def world(demo_db):
    from app.services.users import hash_password

    tag = uuid.uuid4().hex[:8]
    hashed = hash_password(PASSWORD)

    def span(label: str, word: str) -> SpanData:
        return SpanData(label, (Fragment(*cp_range(TEXT, word)),))

    with demo_db.begin() as session:
        lead = User(username=f"lead-{tag}", display_name=f"Lead {tag}", role="lead", password_hash=hashed)
        ana = User(
            username=f"ana-{tag}", display_name=f"Dr Ana {tag}", role="annotator", password_hash=hashed
        )
        ben = User(
            username=f"ben-{tag}", display_name=f"Dr Ben {tag}", role="annotator", password_hash=hashed
        )
        project = Project(name=f"Adjudication e2e {tag}", label_schema=MEDICATION_SCHEMA, study_settings={})
        session.add_all([lead, ana, ben, project])
        session.flush()
        session.add(ProjectMember(project_id=project.id, user_id=lead.id))  # leads see only their projects
        document = Document(
            project_id=project.id,
            external_id=f"adj-{tag}",
            text=TEXT,
            sha256=hashlib.sha256(TEXT.encode()).hexdigest(),
        )
        session.add(document)
        session.flush()
        sets = {}
        for user, spans in (
            (
                ana,
                [
                    span("Drug", "Metformin"),
                    span("Strength", "500 mg"),
                    span("Route", "PO"),
                    span("ADE", "Nausea"),
                ],
            ),
            (ben, [span("Drug", "Metformin"), span("Dosage", "500 mg"), span("Route", "PO")]),
        ):
            annotation_set = AnnotationSet(
                document_id=document.id,
                origin=SetOrigin.annotator.value,
                annotator_id=user.id,
                condition="scratch",
                status=SetStatus.submitted.value,
            )
            session.add(annotation_set)
            session.flush()
            add_spans(session, annotation_set, spans)
            sets[user.username] = annotation_set.id
        ids = {
            "project": project.id,
            "document": document.id,
            "lead_id": lead.id,
            "users": [lead.id, ana.id, ben.id],
        }
    yield {"tag": tag, "sets": sets, "lead": f"lead-{tag}", **ids}
    with demo_db.begin() as session:
        session.execute(delete(Project).where(Project.id == ids["project"]))
        session.execute(delete(User).where(User.id.in_(ids["users"])))


def physician_exports(demo_db, world) -> dict[str, bytes]:
    """Each physician's layer as JSONL and as brat (the zip's members: a zip holds timestamps)."""
    out = {}
    for login in world["sets"]:
        layer = f"annotator:{login}"
        jsonl = export_project(demo_db, world["project"], "jsonl", layer, actor_id=world["lead_id"])
        out[f"{login}.jsonl"] = jsonl.content
        brat = export_project(demo_db, world["project"], "brat", layer, actor_id=world["lead_id"])
        with zipfile.ZipFile(io.BytesIO(brat.content)) as archive:
            for name in sorted(archive.namelist()):
                out[f"{login}/{name}"] = archive.read(name)
    everything = export_project(demo_db, world["project"], "jsonl", None, actor_id=world["lead_id"])
    for line in everything.content.decode().splitlines():
        for layer in json.loads(line)["layers"]:
            if layer["origin"] == "annotator":
                out[f"all:{layer['layer']}"] = json.dumps(layer, sort_keys=True).encode()
    return out


def test_a_lead_adjudicates_two_conflicting_sets_into_gold(page, demo_db, world):
    before = physician_exports(demo_db, world)
    physicians_before = {login: stored_state(demo_db, set_id) for login, set_id in world["sets"].items()}
    page.on("dialog", lambda dialog: dialog.accept())
    lead_id = world["lead_id"]
    log_in(page, world["lead"], PASSWORD)

    page.goto(f"/lead/projects/{world['project']}/adjudication")
    row = page.locator("[data-testid=queue-row]")
    expect(row).to_have_count(1)
    expect(row.locator("[data-testid=queue-agreement]")).to_have_text("50%")  # 2 of 4 stretches agreed
    with page.expect_navigation():
        row.locator("[data-testid=adjudicate]").click()
    page.wait_for_function("() => document.body.dataset.editorReady === 'true'")
    gold_id = int(page.url.rsplit("/", 1)[1])

    # Proposed: what both marked the same way. Disputed: 500 mg (Strength / Dosage) and Nausea.
    expect(page.locator("[data-testid=span-item]")).to_have_count(2)
    candidates = page.locator("[data-testid=candidate]")
    expect(candidates).to_have_count(4)
    strength = page.locator("[data-testid=version][data-label=Strength]")
    expect(strength.locator("[data-testid=version-physicians]")).to_have_text(f"Dr Ana {world['tag']}")
    nausea = page.locator("[data-testid=candidate]", has_text="Nausea")
    expect(nausea.locator("[data-testid=distribution]")).to_have_text("ADE 1 · O 1")

    # The names can be hidden while settling.
    page.click("[data-testid=hide-names]")
    page.wait_for_function("() => document.body.dataset.editorReady === 'true'")
    comparison = page.locator("[data-testid=comparison]")
    expect(comparison).not_to_contain_text("Dr Ana")
    expect(comparison).not_to_contain_text("Dr Ben")
    expect(page.locator("[data-testid=physician-name]")).to_have_text(["Physician A", "Physician B"])

    # A stretch of the comparison selects its text in the note.
    page.locator("[data-testid=candidate]", has_text="Nausea").locator(".candidate-text").click()
    start, end = cp_range(TEXT, "Nausea")
    expect(page.locator("[data-testid=note-text]")).to_have_attribute("data-selection", f"{start}-{end}")

    # Keep ana's Strength for 500 mg; keep Nausea as genuinely ambiguous.
    page.locator("[data-testid=version][data-label=Strength] [data-testid=keep]").click()
    settle(page)
    expect(page.locator("[data-testid=version][data-label=Strength] [data-testid=in-gold]")).to_be_visible()
    expect(comparison).not_to_contain_text("Dr Ana")  # the refreshed panel still hides names
    page.locator("[data-testid=version][data-label=ADE] [data-testid=keep-ambiguous]").click()
    settle(page)
    expect(page.locator("[data-testid=span-item]")).to_have_count(4)
    expect(page.locator("[data-testid=ambiguous-chip]")).to_have_text("ambiguous: ADE 1 · O 1")
    expect(page.locator("[data-testid=version][data-label=Dosage] [data-testid=keep]")).to_be_visible()
    page.click("[data-testid=submit]")
    page.click("[data-testid=submit-confirm]")
    settle(page)
    expect(page.locator("[data-testid=set-status]")).to_have_attribute("data-status", "submitted")
    expect(page.locator("[data-testid=reopen]")).to_be_visible()

    # Stored: gold as settled, equal to its replay, with its own edit log (and timing) by the lead.
    gold = wait_for(
        lambda: (s := stored_state(demo_db, gold_id)).status == "submitted" and s, message="gold submitted"
    )
    kept = {(s.label, TEXT[s.fragments[0][0] : s.fragments[0][1]]): s for s in gold.spans.values()}
    assert sorted(kept) == [("ADE", "Nausea"), ("Drug", "Metformin"), ("Route", "PO"), ("Strength", "500 mg")]
    assert kept[("ADE", "Nausea")].distribution == (("ADE", 1), ("O", 1))
    assert kept[("Strength", "500 mg")].distribution is None
    assert replayed_state(demo_db, gold_id) == gold
    with demo_db() as session:
        gold_set = session.get(AnnotationSet, gold_id)
        assert (gold_set.origin, gold_set.annotator_id) == ("gold", lead_id)
        events = session.execute(
            select(EditEvent.kind, EditEvent.user_id)
            .where(EditEvent.annotation_set_id == gold_id)
            .order_by(EditEvent.id)
        ).all()
    edits = [kind for kind, _ in events if kind not in TIME_KINDS]
    assert edits == ["propose", "adopt", "adopt", "submit"]
    assert {user for _, user in events} == {lead_id}
    assert "open" in {kind for kind, _ in events}  # the page's timing is gold's own

    # The physicians' sets: untouched, byte for byte in every export.
    physicians_after = {login: stored_state(demo_db, set_id) for login, set_id in world["sets"].items()}
    assert physicians_after == physicians_before
    assert physician_exports(demo_db, world) == before

    # The export gives gold with every physician's vote: agreed, disputed and ambiguous spans.
    everything = export_project(demo_db, world["project"], "jsonl", None, actor_id=lead_id).content.decode()
    [note] = [json.loads(line) for line in everything.splitlines()]
    by_label = {
        (entry["label"], entry["ambiguous"]): entry["label_distribution"]
        for entry in note["adjudication"]["spans"].values()
    }
    assert by_label == {
        ("Drug", False): {"Drug": 2},
        ("Route", False): {"Route": 2},
        ("Strength", False): {"Dosage": 1, "Strength": 1},
        ("ADE", True): {"ADE": 1, "O": 1},
    }


def test_submitting_gold_with_disputes_unsettled_says_how_many_and_goes_to_the_first(page, demo_db, world):
    """Issue 20: the submit dialog of gold counts the disputes gold settles none of, jumps to the
    first, and submits anyway only when asked."""
    log_in(page, world["lead"], PASSWORD)
    page.goto(f"/lead/projects/{world['project']}/adjudication")
    with page.expect_navigation():
        page.locator("[data-testid=adjudicate]").click()
    page.wait_for_function("() => document.body.dataset.editorReady === 'true'")
    gold_id = int(page.url.rsplit("/", 1)[1])
    dialog = page.locator("[data-testid=submit-dialog]")

    page.click("[data-testid=submit]")
    expect(page.locator("[data-testid=submit-text]")).to_contain_text("2 of 2 disputes are not settled yet.")
    expect(dialog.locator("[data-testid=submit-first-dispute]")).to_be_focused()
    expect(dialog.locator("[data-testid=submit-confirm]")).to_have_text("Submit anyway")

    # Go to the first: its stretch selected in the note, its first Keep button focused.
    dialog.locator("[data-testid=submit-first-dispute]").click()
    expect(dialog).not_to_be_visible()
    first = page.locator("[data-testid=candidate][data-agreed=false]").first
    expect(first).to_contain_text("500 mg")
    start, end = cp_range(TEXT, "500 mg")
    expect(page.locator("[data-testid=note-text]")).to_have_attribute("data-selection", f"{start}-{end}")
    expect(first.locator("[data-testid=keep]").first).to_be_focused()
    page.keyboard.press("Enter")  # keeps that version
    settle(page)
    expect(first).to_have_attribute("data-resolved", "true")

    page.click("[data-testid=submit]")
    expect(page.locator("[data-testid=submit-text]")).to_contain_text("1 of 2 disputes is not settled yet.")
    dialog.locator("[data-testid=submit-confirm]").click()  # Submit anyway
    settle(page)
    expect(page.locator("[data-testid=set-status]")).to_have_attribute("data-status", "submitted")
    assert wait_for(lambda: stored_state(demo_db, gold_id).status == "submitted", message="gold submitted")
