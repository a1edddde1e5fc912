"""Relations, span attributes, document questions and concept codes in a real browser, each checked
in the page AND in PostgreSQL, then again after a reload, and in the edit log."""

import re
import time

import pytest
from e2e_support import log_in
from editor_support import (
    NOTE,
    PASSWORD,
    build_world,
    cp_range,
    drop_world,
    edit_log,
    mouse_select,
    open_editor,
    selected_uid,
    settle,
    wait_for,
)
from playwright.sync_api import expect
from sqlalchemy import select

from app.db.models import (
    AnnotationSet,
    Concept,
    ConceptTerm,
    Project,
    ProjectVocabulary,
    Relation,
    Span,
    Vocabulary,
)
from app.demo.seed import MEDICATION_SCHEMA
from app.services.editing import replayed_state, stored_state

QUESTIONS = [
    {"key": "diagnosis", "prompt": "Primary diagnosis", "kind": "text"},
    {"key": "setting", "prompt": "Care setting", "kind": "choice", "choices": ["inpatient", "outpatient"]},
    {
        "key": "problems",
        "prompt": "Problems",
        "kind": "multi_choice",
        "choices": ["diabetes", "pain", "fever"],
    },
    {"key": "sure", "prompt": "How sure are you?", "kind": "scale", "scale_min": 1, "scale_max": 5},
    {"key": "why", "prompt": "Evidence for the diagnosis", "kind": "evidence"},
]


@pytest.fixture(scope="module")
def password_hash() -> str:
    from app.services.users import hash_password

    return hash_password(PASSWORD)


@pytest.fixture
def world(page, demo_db, password_hash):
    """An editor world whose project asks every kind of question, codes drugs with a small vocabulary,
    and whose refine_llm note carries two pre-labelled relations."""
    world = build_world(demo_db, password_hash)
    with demo_db.begin() as db:
        project = db.get(Project, world.project_id)
        project.label_schema = {**MEDICATION_SCHEMA, "document_questions": QUESTIONS}
        vocabulary = Vocabulary(name=f"RxNorm subset {world.tag}", system="RxNorm")
        db.add(vocabulary)
        db.flush()
        for code, preferred, synonyms in (
            ("6809", "metformin", ["Glucophage", "metformin hydrochloride"]),
            ("1191", "aspirin", ["acetylsalicylic acid"]),
        ):
            concept = Concept(vocabulary_id=vocabulary.id, code=code, preferred_term=preferred)
            db.add(concept)
            db.flush()
            for term in [preferred, *synonyms]:
                db.add(
                    ConceptTerm(
                        concept_id=concept.id, vocabulary_id=vocabulary.id, term=term,
                        normalised=term.casefold(), is_preferred=term == preferred,
                    )
                )  # fmt: skip
        db.add(ProjectVocabulary(project_id=world.project_id, vocabulary_id=vocabulary.id))
        uid = world.prelabel_uids
        # In the pre-annotation set and in the physician's copy of it (made when the note was assigned),
        # as a pre-annotation run with relations would have stored them.
        for set_id, status in ((world.pre_set_ids[0], "confirmed"), (world.refine_set, "pending")):
            ids = dict(db.execute(select(Span.uid, Span.id).where(Span.annotation_set_id == set_id)).all())
            for relation_uid, type_, head in (
                ("pre-r1", "Strength-Drug", "strength"),
                ("pre-r2", "Route-Drug", "route"),
            ):
                db.add(
                    Relation(
                        annotation_set_id=set_id, uid=relation_uid, type=type_, status=status,
                        head_span_id=ids[uid[head]], tail_span_id=ids[uid["drug"]], confidence=0.8,
                    )
                )  # fmt: skip
        world.vocabulary_id = vocabulary.id
    log_in(page, world.username, world.password)
    yield world
    page.context.close()
    time.sleep(0.2)
    with demo_db.begin() as db:
        db.execute(Vocabulary.__table__.delete().where(Vocabulary.id == world.vocabulary_id))
    drop_world(demo_db, world)


def relations_in_page(page) -> dict[str, tuple[str, str, str, str]]:
    items = page.eval_on_selector_all(
        "#relation-list > li",
        "items => items.map(li => [li.dataset.uid, li.dataset.type, li.dataset.head, li.dataset.tail, "
        "li.dataset.status])",
    )
    return {uid: (type_, head, tail, status) for uid, type_, head, tail, status in items}


def relations_stored(sessions, set_id: int) -> dict[str, tuple[str, str, str, str]]:
    return {
        u: (r.type, r.head, r.tail, r.status) for u, r in stored_state(sessions, set_id).relations.items()
    }


def select_span(page, uid: str) -> None:
    page.click(f"#span-list > li[data-uid='{uid}']")
    wait_for(lambda: selected_uid(page) == uid, message=f"span {uid} selected")


def test_relations_accepted_rejected_added_by_keyboard_and_deleted(page, world, demo_db):
    open_editor(page, world.refine_set)
    uid = world.prelabel_uids
    assert relations_in_page(page) == relations_stored(demo_db, world.refine_set)
    assert relations_in_page(page)["pre-r1"] == ("Strength-Drug", uid["strength"], uid["drug"], "pending")

    # Hovering a relation highlights its two spans in the text.
    page.hover("#relation-list > li[data-uid='pre-r1']")
    expect(page.locator(f"#note-layer .mark.related[data-uid='{uid['strength']}']")).not_to_have_count(0)
    expect(page.locator(f"#note-layer .mark.related[data-uid='{uid['drug']}']")).not_to_have_count(0)

    page.click("#relation-list > li[data-uid='pre-r1'] [data-testid=relation-accept]")
    settle(page)
    # The answer carried only pre-r1: its item and its arc changed in place, no longer dashed.
    expect(page.locator("#arc-layer g[data-uid='pre-r1']")).not_to_have_class(re.compile(r"\bpending\b"))
    expect(page.locator("#arc-layer g[data-uid='pre-r1'] title")).to_have_text("Strength-Drug")
    page.click("#relation-list > li[data-uid='pre-r2'] [data-testid=relation-reject]")
    settle(page)
    expect(page.locator("#arc-layer g[data-uid='pre-r2']")).to_have_count(0)
    expect(page.get_by_test_id("relation-count")).to_have_text("1")
    assert relations_stored(demo_db, world.refine_set) == {
        "pre-r1": ("Strength-Drug", uid["strength"], uid["drug"], "confirmed")
    }

    # By keyboard: the Route span, Shift+R, the type's number, Tab to the drug, Enter.
    select_span(page, uid["route"])
    page.focus("#note-text")
    page.keyboard.press("Shift+R")
    expect(page.locator("#relation-types")).to_be_visible()
    page.keyboard.press("1")
    expect(page.locator("[data-testid=relation-hint]")).to_be_visible()
    for _ in range(6):
        if selected_uid(page) == uid["drug"]:
            break
        page.keyboard.press("Tab")
    assert selected_uid(page) == uid["drug"]
    page.keyboard.press("Enter")
    settle(page)
    stored = relations_stored(demo_db, world.refine_set)
    [added] = [u for u in stored if u != "pre-r1"]
    assert stored[added] == ("Route-Drug", uid["route"], uid["drug"], "confirmed")
    assert relations_in_page(page) == stored
    # The added item went where the server puts it: the list reads as a fresh load of the page does
    # (fetched beside this page, which keeps its undo history).
    patched = page.evaluate(
        "() => [...document.querySelectorAll('#relation-list > li')].map((li) => li.dataset.uid)"
    )
    fresh = page.evaluate("""async () => {
      const html = await (await fetch(location.href, { credentials: "same-origin" })).text();
      const doc = new DOMParser().parseFromString(html, "text/html");
      return [...doc.querySelectorAll('#relation-list > li')].map((li) => li.dataset.uid);
    }""")
    assert patched == fresh and len(patched) == 2
    expect(page.locator("[data-testid=relation-arc]")).to_have_count(2)

    # The schema's argument types hold: a Drug cannot be the head of a Route-Drug relation.
    select_span(page, uid["aspirin"])
    page.focus("#note-text")
    page.keyboard.press("Shift+R")
    expect(page.locator("[data-testid=toast]")).to_contain_text("No relation starts from Drug")

    page.click(f"#relation-list > li[data-uid='{added}'] [data-testid=relation-delete]")
    settle(page)
    assert set(relations_stored(demo_db, world.refine_set)) == {"pre-r1"}

    # Deleting a span takes its relations with it; undo brings both back.
    select_span(page, uid["strength"])
    page.focus("#note-text")
    page.keyboard.press("Delete")
    settle(page)
    assert relations_stored(demo_db, world.refine_set) == {}
    page.keyboard.press("Control+z")
    settle(page)
    assert set(relations_stored(demo_db, world.refine_set)) == {"pre-r1"}

    page.reload()
    page.wait_for_function("() => document.body.dataset.editorReady === 'true'")
    assert relations_in_page(page) == relations_stored(demo_db, world.refine_set)
    assert stored_state(demo_db, world.refine_set) == replayed_state(demo_db, world.refine_set)
    kinds = [e.kind for e in edit_log(demo_db, page_session_of_set(demo_db, world.refine_set))]
    assert kinds == [
        "relation_accept",
        "relation_reject",
        "relation_add",
        "relation_delete",
        "reject",
        "undo",
    ]


def page_session_of_set(sessions, set_id: int) -> str:
    from app.db.models import EditEvent

    with sessions() as db:
        return db.scalar(
            select(EditEvent.page_session_id)
            .where(EditEvent.annotation_set_id == set_id, EditEvent.kind.like("relation%"))
            .limit(1)
        )


def test_attributes_answers_and_a_concept_code_by_keyboard_survive_a_reload(page, world, demo_db):
    open_editor(page, world.scratch_set)
    text = world.text

    # A Reason span (certainty applies to Reason and ADE), its attribute by Shift+A and the menu.
    s, e = cp_range(text, "daily")
    mouse_select(page, s, e)
    page.keyboard.press("e")
    settle(page)
    [reason] = [u for u, sp in stored_state(demo_db, world.scratch_set).spans.items() if sp.label == "Reason"]
    select_span(page, reason)
    page.focus("#note-text")
    page.keyboard.press("Shift+A")
    expect(page.locator("[data-testid=attribute-certainty]")).to_be_focused()
    page.select_option("[data-testid=attribute-certainty]", "possible")
    settle(page)
    assert dict(stored_state(demo_db, world.scratch_set).spans[reason].attributes) == {
        "certainty": "possible"
    }
    expect(page.locator(f"#span-list > li[data-uid='{reason}'] [data-testid=attribute-chip]")).to_have_text(
        "certainty=possible"
    )

    # A drug, coded by keyboard: Shift+C, a synonym's prefix, Enter on the first result.
    s, e = cp_range(text, "Metformin")
    mouse_select(page, s, e)
    page.keyboard.press("d")
    settle(page)
    [drug] = [u for u, sp in stored_state(demo_db, world.scratch_set).spans.items() if sp.label == "Drug"]
    select_span(page, drug)
    page.focus("#note-text")
    page.keyboard.press("Shift+C")
    expect(page.locator("[data-testid=concept-search]")).to_be_focused()
    page.keyboard.type("glucoph")
    expect(page.locator("[data-testid=concept-result]").first).to_contain_text("RxNorm:6809")
    page.keyboard.press("Enter")
    settle(page)
    assert stored_state(demo_db, world.scratch_set).spans[drug].concept == ("RxNorm", "6809", "metformin")
    expect(page.locator(f"#span-list > li[data-uid='{drug}'] [data-testid=concept-chip]")).to_have_text(
        "RxNorm:6809"
    )

    # Every kind of question.
    page.fill("[data-testid=question-diagnosis] textarea", "type 2 diabetes")
    page.locator("[data-testid=question-diagnosis] textarea").blur()
    page.check("[data-testid=question-setting] input[value=outpatient]")
    page.check("[data-testid=question-problems] input[value=pain]")
    page.check("[data-testid=question-problems] input[value=diabetes]")
    page.check("[data-testid=question-sure] input[value='4']")
    select_span(page, drug)
    page.click("[data-testid=evidence-add-why]")
    settle(page)
    expected = {
        "diagnosis": "type 2 diabetes",
        "setting": "outpatient",
        "problems": ["diabetes", "pain"],  # in the schema's order, whatever the clicking order
        "sure": 4,
        "why": [drug],
    }
    assert dict(stored_state(demo_db, world.scratch_set).answers) == expected

    page.reload()
    page.wait_for_function("() => document.body.dataset.editorReady === 'true'")
    expect(page.locator("[data-testid=question-diagnosis] textarea")).to_have_value("type 2 diabetes")
    expect(page.locator("[data-testid=question-setting] input[value=outpatient]")).to_be_checked()
    expect(page.locator("[data-testid=question-problems] input[value=pain]")).to_be_checked()
    expect(page.locator("[data-testid=question-sure] input[value='4']")).to_be_checked()
    expect(page.locator("[data-testid=evidence-why] [data-testid=evidence-item]")).to_have_count(1)
    expect(page.locator(f"#span-list > li[data-uid='{reason}'] [data-testid=attribute-chip]")).to_have_count(
        1
    )
    expect(page.locator(f"#span-list > li[data-uid='{drug}'] [data-testid=concept-chip]")).to_have_count(1)
    assert stored_state(demo_db, world.scratch_set) == replayed_state(demo_db, world.scratch_set)
    session = page_session_of_kind(demo_db, world.scratch_set)
    kinds = [e.kind for e in edit_log(demo_db, session)]
    assert kinds == ["add", "attribute_set", "add", "concept_set", "answer", "answer", "answer", "answer",
                     "answer", "answer"]  # fmt: skip


def page_session_of_kind(sessions, set_id: int) -> str:
    from app.db.models import EditEvent

    with sessions() as db:
        return db.scalar(
            select(EditEvent.page_session_id)
            .where(EditEvent.annotation_set_id == set_id, EditEvent.kind == "add")
            .limit(1)
        )


def test_a_code_outside_the_projects_vocabularies_is_refused(page, world, demo_db):
    open_editor(page, world.scratch_set)
    s, e = cp_range(NOTE, "aspirin")
    mouse_select(page, s, e)
    page.keyboard.press("d")
    settle(page)
    with demo_db() as db:
        [drug] = db.scalars(select(Span.uid).where(Span.annotation_set_id == world.scratch_set)).all()
        version = db.get(AnnotationSet, world.scratch_set).version
    from editor_support import csrf_token

    response = page.request.post(
        f"/annotate/sets/{world.scratch_set}/edits",
        data={
            "kind": "concept_set",
            "client_id": "forged-1",
            "page_session": "forged",
            "version": version,
            "uid": drug,
            "concept_system": "SNOMED",
            "concept_code": "22298006",
        },  # fmt: skip
        headers={"X-CSRF-Token": csrf_token(page)},
    )
    assert response.status == 422 and "concept:" in response.json()["detail"]
    assert stored_state(demo_db, world.scratch_set).spans[drug].concept is None
