"""Relations, attributes, concept codes and answers edited on a real PostgreSQL: each edit is one
event, the stored set always equals its base plus its events replayed, and a refused edit stores
nothing."""

import contextlib
import dataclasses
import hashlib
import itertools
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from app.db.models import (
    AnnotationSet,
    Concept,
    Document,
    DocumentAnswer,
    EditEvent,
    ProjectVocabulary,
    Relation,
    Span,
    Vocabulary,
)
from app.domain.editing import EditRefused, RelationState
from app.domain.spans import Fragment, SpanData
from app.domain.vocabulary import Condition, SetOrigin, SetStatus, SpanStatus
from app.services import editing
from app.services.annotation_sets import add_spans, assign
from tests.services.editing_fixtures import ANNOTATION_SCHEMA, ASPIRIN, METFORMIN, NOTE, build_world

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
_ids = itertools.count(1)
DRUG = ((METFORMIN, METFORMIN + 9),)  # "Metformin"
STRENGTH = ((METFORMIN + 10, METFORMIN + 16),)  # "500 mg"
ASPIRIN_DRUG = ((ASPIRIN, ASPIRIN + 7),)
REASON = ((ASPIRIN + 14, ASPIRIN + 19),)  # "daily": any words will do for a Reason here


@pytest.fixture
def world(sessions, password_hashes):
    return build_world(sessions, password_hashes["annotator"], label_schema=ANNOTATION_SCHEMA)


def version_of(sessions, set_id: int) -> int:
    with sessions() as db:
        return db.get(AnnotationSet, set_id).version


def edit(sessions, world, set_id: int, kind: str, **fields) -> editing.EditOutcome:
    """One edit through the service, then the invariant: the stored set is its replayed log."""
    request = editing.EditRequest(
        kind=kind,
        client_id=fields.pop("client_id", f"c{next(_ids)}"),
        page_session="page-1",
        version=version_of(sessions, set_id),
        monotonic_ms=float(next(_ids)),
        **fields,
    )
    outcome = editing.apply_edit(sessions, world.annotator_id, set_id, request, now=NOW)
    assert editing.stored_state(sessions, set_id) == editing.replayed_state(sessions, set_id)
    assert outcome.state == editing.stored_state(sessions, set_id)
    return outcome


def refused(sessions, world, set_id: int, kind: str, message: str, **fields) -> None:
    """The edit is refused with a message starting `message`, and the set and its log are unchanged."""
    before = (editing.stored_state(sessions, set_id), version_of(sessions, set_id), kinds(sessions, set_id))
    with pytest.raises(EditRefused) as refusal:
        edit(sessions, world, set_id, kind, **fields)
    assert str(refusal.value).startswith(message)
    assert (
        editing.stored_state(sessions, set_id),
        version_of(sessions, set_id),
        kinds(sessions, set_id),
    ) == before


def kinds(sessions, set_id: int) -> list[str]:
    with sessions() as db:
        return list(
            db.scalars(
                select(EditEvent.kind).where(EditEvent.annotation_set_id == set_id).order_by(EditEvent.id)
            )
        )


def relation_rows(sessions, set_id: int) -> dict[str, tuple]:
    """uid -> (type, head span uid, tail span uid, status, confidence, base relation id) as stored."""
    with sessions() as db:
        span_uids = dict(db.execute(select(Span.id, Span.uid).where(Span.annotation_set_id == set_id)).all())
        return {
            r.uid: (r.type, span_uids[r.head_span_id], span_uids[r.tail_span_id], r.status, r.confidence,
                    r.base_relation_id)
            for r in db.scalars(select(Relation).where(Relation.annotation_set_id == set_id))
        }  # fmt: skip


def answer_rows(sessions, set_id: int) -> dict:
    with sessions() as db:
        return dict(
            db.execute(
                select(DocumentAnswer.question_key, DocumentAnswer.value).where(
                    DocumentAnswer.annotation_set_id == set_id
                )
            ).all()
        )


def span_row(sessions, set_id: int, uid: str) -> Span:
    with sessions() as db:
        return db.scalar(select(Span).where(Span.annotation_set_id == set_id, Span.uid == uid))


def add_drug_and_strength(sessions, world, set_id: int) -> None:
    edit(sessions, world, set_id, "add", uid="drug", label="Drug", fragments=DRUG)
    edit(sessions, world, set_id, "add", uid="strength", label="Strength", fragments=STRENGTH)


# --- relations ------------------------------------------------------------------------------------


def test_a_physician_links_two_spans_and_unlinks_them(sessions, world):
    set_id = world.sets["scratch"]
    add_drug_and_strength(sessions, world, set_id)
    outcome = edit(
        sessions,
        world,
        set_id,
        "relation_add",
        uid="rel1",
        label="Strength-Drug",
        head="strength",
        tail="drug",
    )
    assert outcome.state.relations == {"rel1": RelationState("Strength-Drug", "strength", "drug")}
    assert relation_rows(sessions, set_id) == {
        "rel1": ("Strength-Drug", "strength", "drug", "confirmed", None, None)
    }
    with sessions() as db:
        event = db.scalar(select(EditEvent).where(EditEvent.kind == "relation_add"))
    link = {"type": "Strength-Drug", "head": "strength", "tail": "drug", "status": "confirmed"}
    assert (event.before, event.after) == (
        {"spans": {}, "relations": {"rel1": None}},
        {"spans": {}, "relations": {"rel1": link}},
    )
    edit(sessions, world, set_id, "relation_delete", uid="rel1")
    assert relation_rows(sessions, set_id) == {}
    assert kinds(sessions, set_id) == ["add", "add", "relation_add", "relation_delete"]


# (uid, relation type, head, tail, the start of the refusal); rel0 links strength to drug2 already
BAD_RELATIONS = [
    ("rel1", "Strength-Drug", "drug", "strength", "head: a Strength-Drug"),
    ("rel1", "Reason-Drug", "strength", "drug", "head: a Reason-Drug"),
    ("rel1", "Treats", "strength", "drug", "label: 'Treats'"),
    ("rel1", "Strength-Drug", "ghost", "drug", "head: the head span is not in the note"),
    ("rel1", "Strength-Drug", "strength", "ghost", "tail: the tail span is not in the note"),
    ("rel1", "Strength-Drug", "drug", "drug", "tail: a relation links two"),
    (None, "Strength-Drug", "strength", "drug", "uid: a new relation needs"),
    ("rel0", "Strength-Drug", "strength", "drug", "uid: a relation with the editor's identifier exists"),
    ("rel1", "Strength-Drug", "strength", "drug2", "uid: a Strength-Drug relation links"),
]


@pytest.mark.parametrize(
    ("uid", "label", "head", "tail", "message"), BAD_RELATIONS, ids=[r[-1] for r in BAD_RELATIONS]
)
def test_a_relation_that_breaks_the_schema_is_refused_and_stores_nothing(
    sessions, world, uid, label, head, tail, message
):
    set_id = world.sets["scratch"]
    add_drug_and_strength(sessions, world, set_id)
    edit(sessions, world, set_id, "add", uid="drug2", label="Drug", fragments=ASPIRIN_DRUG)
    edit(
        sessions,
        world,
        set_id,
        "relation_add",
        uid="rel0",
        label="Strength-Drug",
        head="strength",
        tail="drug2",
    )
    refused(sessions, world, set_id, "relation_add", message, uid=uid, label=label, head=head, tail=tail)
    assert set(relation_rows(sessions, set_id)) == {"rel0"}


def test_undoing_a_span_delete_restores_its_relation_and_evidence_in_the_database(sessions, world):
    set_id = world.sets["scratch"]
    add_drug_and_strength(sessions, world, set_id)
    edit(
        sessions,
        world,
        set_id,
        "relation_add",
        uid="rel1",
        label="Strength-Drug",
        head="strength",
        tail="drug",
    )
    edit(sessions, world, set_id, "answer", key="evidence", value=["drug", "strength"])
    edit(sessions, world, set_id, "delete", client_id="del", uid="drug")
    assert relation_rows(sessions, set_id) == {}
    assert answer_rows(sessions, set_id) == {"evidence": ["strength"]}
    with sessions() as db:
        deleted = db.scalar(select(EditEvent).where(EditEvent.client_id == "del"))
    assert set(deleted.before["relations"]) == {"rel1"} and deleted.after["relations"] == {"rel1": None}
    edit(sessions, world, set_id, "undo", client_id="undo-del", target="del")
    assert span_row(sessions, set_id, "drug").label == "Drug"
    assert relation_rows(sessions, set_id) == {
        "rel1": ("Strength-Drug", "strength", "drug", "confirmed", None, None)
    }
    assert answer_rows(sessions, set_id) == {"evidence": ["drug", "strength"]}
    edit(sessions, world, set_id, "redo", target="undo-del")
    assert relation_rows(sessions, set_id) == {} and answer_rows(sessions, set_id) == {
        "evidence": ["strength"]
    }
    assert kinds(sessions, set_id) == ["add", "add", "relation_add", "answer", "delete", "undo", "redo"]


def test_relabel_is_refused_while_a_relation_would_no_longer_fit(sessions, world):
    set_id = world.sets["scratch"]
    add_drug_and_strength(sessions, world, set_id)
    edit(
        sessions,
        world,
        set_id,
        "relation_add",
        uid="rel1",
        label="Strength-Drug",
        head="strength",
        tail="drug",
    )
    refused(
        sessions,
        world,
        set_id,
        "relabel",
        "An ADE cannot be in the Strength-Drug relation",
        uid="drug",
        label="ADE",
    )
    edit(sessions, world, set_id, "relation_delete", uid="rel1")
    edit(sessions, world, set_id, "relabel", uid="drug", label="ADE")
    assert span_row(sessions, set_id, "drug").label == "ADE"


# --- span attributes ------------------------------------------------------------------------------


def test_attributes_are_set_within_their_values_and_types_and_cleared(sessions, world):
    set_id = world.sets["scratch"]
    add_drug_and_strength(sessions, world, set_id)
    edit(sessions, world, set_id, "add", uid="reason", label="Reason", fragments=REASON)
    edit(sessions, world, set_id, "attribute_set", uid="drug", attribute="negation", value="negated")
    edit(sessions, world, set_id, "attribute_set", uid="reason", attribute="certainty", value="possible")
    edit(sessions, world, set_id, "attribute_set", uid="reason", attribute="negation", value="affirmed")
    assert span_row(sessions, set_id, "drug").attributes == {"negation": "negated"}
    assert span_row(sessions, set_id, "reason").attributes == {
        "certainty": "possible",
        "negation": "affirmed",
    }
    refused(sessions, world, set_id, "attribute_set", "attribute: certainty does not apply to Drug",
            uid="drug", attribute="certainty", value="possible")  # fmt: skip
    refused(sessions, world, set_id, "attribute_set", "value: negation is one of affirmed, negated",
            uid="drug", attribute="negation", value="absent")  # fmt: skip
    refused(sessions, world, set_id, "attribute_set", "attribute: 'temporality' is not",
            uid="drug", attribute="temporality", value="past")  # fmt: skip
    refused(sessions, world, set_id, "attribute_set", "uid: that span is no longer in the note",
            uid="ghost", attribute="negation", value="negated")  # fmt: skip
    edit(sessions, world, set_id, "attribute_set", uid="drug", attribute="negation", value=None)
    assert span_row(sessions, set_id, "drug").attributes == {}
    # relabelled to a type certainty does not apply to, the Reason loses it; undo brings it back
    edit(sessions, world, set_id, "relabel", client_id="to-drug", uid="reason", label="Drug")
    assert span_row(sessions, set_id, "reason").attributes == {"negation": "affirmed"}
    edit(sessions, world, set_id, "undo", target="to-drug")
    assert span_row(sessions, set_id, "reason").attributes == {
        "certainty": "possible",
        "negation": "affirmed",
    }
    assert kinds(sessions, set_id).count("attribute_set") == 4


def test_setting_an_attribute_of_a_pre_label_confirms_it(sessions, world):
    set_id = world.sets["refine_llm"]
    state = editing.stored_state(sessions, set_id)
    uid = next(u for u, s in state.spans.items() if s.label == "Drug")
    edit(sessions, world, set_id, "attribute_set", uid=uid, attribute="negation", value="negated")
    row = span_row(sessions, set_id, uid)
    assert (row.status, row.attributes, row.confidence) == ("confirmed", {"negation": "negated"}, 0.9)


# --- document answers -----------------------------------------------------------------------------


# (question key, the answer sent, the answer stored)
ANSWERS = [
    ("primary_diagnosis", "Type 2 diabetes mellitus", "Type 2 diabetes mellitus"),
    ("severity", "moderate", "moderate"),
    ("findings", ["rash", "fever", "rash"], ["fever", "rash"]),
    ("confidence", 4, 4),
    ("evidence", ["strength", "drug", "drug"], ["strength", "drug"]),
]


@pytest.mark.parametrize(("key", "value", "stored"), ANSWERS, ids=[k for k, *_ in ANSWERS])
def test_each_kind_of_question_is_answered_changed_and_cleared(sessions, world, key, value, stored):
    set_id = world.sets["scratch"]
    add_drug_and_strength(sessions, world, set_id)
    outcome = edit(sessions, world, set_id, "answer", key=key, value=value)
    assert outcome.state.answers == {key: stored} == answer_rows(sessions, set_id)
    again = {"primary_diagnosis": "Sepsis", "severity": "mild", "findings": ["nausea"], "confidence": 1,
             "evidence": ["drug"]}[key]  # fmt: skip
    edit(sessions, world, set_id, "answer", key=key, value=again)  # a second answer replaces the first
    assert answer_rows(sessions, set_id) == {key: again}
    edit(sessions, world, set_id, "answer", key=key, value=None)
    assert answer_rows(sessions, set_id) == {}
    with sessions() as db:
        logged = db.scalars(select(EditEvent).where(EditEvent.kind == "answer").order_by(EditEvent.id)).all()
    assert [(e.before["answers"][key], e.after["answers"][key]) for e in logged] == [
        (None, stored),
        (stored, again),
        (again, None),
    ]


# (question key, a bad answer, the start of the refusal)
BAD_ANSWERS = [
    ("primary_diagnosis", 7, "value: primary_diagnosis: must be text of at most 5000 characters"),
    ("primary_diagnosis", "x" * 5001, "value: primary_diagnosis: must be text of at most 5000 characters"),
    ("severity", "critical", 'value: severity: "critical" is not one of'),
    ("findings", ["fever", "cough"], 'value: findings: "cough" is not one of'),
    ("confidence", 9, "value: confidence: 9 is outside the scale 1 to 5"),
    ("confidence", True, "value: confidence: must be a whole number from 1 to 5"),
    ("confidence", 2.5, "value: confidence: must be a whole number from 1 to 5"),
    ("evidence", ["ghost"], "value: evidence: a span given as evidence is no longer in the note"),
    ("evidence", "drug", "value: evidence: must be a list of span ids"),
    ("allergies", "none", "key: 'allergies' is not a question"),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD_ANSWERS, ids=[m for *_, m in BAD_ANSWERS])
def test_a_bad_answer_is_refused_and_the_stored_answer_stays(sessions, world, key, value, message):
    set_id = world.sets["scratch"]
    add_drug_and_strength(sessions, world, set_id)
    edit(sessions, world, set_id, "answer", key="confidence", value=3)
    refused(sessions, world, set_id, "answer", message, key=key, value=value)
    assert answer_rows(sessions, set_id) == {"confidence": 3}


def test_submit_waits_for_the_required_answer(sessions, world):
    set_id = world.sets["scratch"]
    refused(sessions, world, set_id, "submit", "answers: answer primary_diagnosis before submitting")
    edit(sessions, world, set_id, "answer", key="primary_diagnosis", value="Sepsis")
    edit(sessions, world, set_id, "submit")
    with sessions() as db:
        assert db.get(AnnotationSet, set_id).status == "submitted"
    assert kinds(sessions, set_id) == ["answer", "submit"]


# --- concept codes --------------------------------------------------------------------------------


@pytest.fixture
def vocabularies(sessions, world) -> dict[str, int]:
    """An RxNorm subset attached to the project, and another vocabulary of the same system that is not
    (holding the same code under another name, and a code of its own)."""
    with sessions.begin() as db:
        attached = Vocabulary(name="RxNorm subset", system="RxNorm", version="2026-11")
        other = Vocabulary(name="Another RxNorm list", system="RxNorm", version="2019-01")
        db.add_all([attached, other])
        db.flush()
        db.add_all(
            [
                Concept(vocabulary_id=attached.id, code="6809", preferred_term="Metformin"),
                Concept(vocabulary_id=attached.id, code="1191", preferred_term="Aspirin"),
                Concept(vocabulary_id=other.id, code="6809", preferred_term="METFORMIN HCL (old name)"),
                Concept(vocabulary_id=other.id, code="7052", preferred_term="Morphine"),
                ProjectVocabulary(project_id=world.project_id, vocabulary_id=attached.id),
            ]
        )
        return {"attached": attached.id, "other": other.id}


def concept_columns(sessions, set_id: int, uid: str) -> tuple:
    row = span_row(sessions, set_id, uid)
    return row.concept_system, row.concept_code, row.concept_name


def test_a_code_from_the_projects_vocabulary_is_stored_with_the_vocabularys_name(
    sessions, world, vocabularies
):
    set_id = world.sets["scratch"]
    add_drug_and_strength(sessions, world, set_id)
    outcome = edit(
        sessions, world, set_id, "concept_set", uid="drug", concept_system="RxNorm", concept_code="6809"
    )
    assert outcome.state.spans["drug"].concept == ("RxNorm", "6809", "Metformin")
    # the name is the attached vocabulary's: the other list's name for the same code is not used, and
    # the browser has no field to send one
    assert concept_columns(sessions, set_id, "drug") == ("RxNorm", "6809", "Metformin")
    assert not {f.name for f in dataclasses.fields(editing.EditRequest)} & {"concept", "concept_name", "name"}
    with sessions() as db:
        event = db.scalar(select(EditEvent).where(EditEvent.kind == "concept_set"))
    assert event.after["spans"]["drug"]["concept"] == {
        "system": "RxNorm",
        "code": "6809",
        "name": "Metformin",
    }
    edit(sessions, world, set_id, "concept_set", uid="drug", concept_system="RxNorm", concept_code="1191")
    assert concept_columns(sessions, set_id, "drug") == ("RxNorm", "1191", "Aspirin")
    edit(sessions, world, set_id, "concept_set", uid="drug", concept_system=None, concept_code=None)
    assert concept_columns(sessions, set_id, "drug") == (None, None, None)
    assert kinds(sessions, set_id) == ["add", "add", "concept_set", "concept_set", "concept_set"]


# (system, code) that are not in the project's vocabularies
FOREIGN_CODES = [
    ("RxNorm", "7052"),  # only in the vocabulary not attached
    ("SNOMED", "6809"),  # the right code in another system
    ("RxNorm", "0000"),  # in no vocabulary
    ("RxNorm", ""),
    (None, "6809"),
]


@pytest.mark.parametrize(("system", "code"), FOREIGN_CODES)
def test_a_code_outside_the_projects_vocabularies_is_refused_and_nothing_stored(
    sessions, world, vocabularies, system, code
):
    set_id = world.sets["scratch"]
    add_drug_and_strength(sessions, world, set_id)
    edit(sessions, world, set_id, "concept_set", uid="strength", concept_system="RxNorm", concept_code="6809")
    refused(
        sessions,
        world,
        set_id,
        "concept_set",
        "concept:",
        uid="drug",
        concept_system=system,
        concept_code=code,
    )
    assert concept_columns(sessions, set_id, "drug") == (None, None, None)
    assert concept_columns(sessions, set_id, "strength") == ("RxNorm", "6809", "Metformin")


def test_a_project_without_that_vocabulary_cannot_use_its_codes(sessions, world, vocabularies):
    with sessions.begin() as db:
        db.execute(ProjectVocabulary.__table__.delete())
    set_id = world.sets["scratch"]
    add_drug_and_strength(sessions, world, set_id)
    message = "concept: RxNorm:6809 is not in this project's vocabularies"
    refused(
        sessions,
        world,
        set_id,
        "concept_set",
        message,
        uid="drug",
        concept_system="RxNorm",
        concept_code="6809",
    )


def test_coding_a_pre_label_confirms_it_and_undo_restores_it(sessions, world, vocabularies):
    set_id = world.sets["refine_llm"]
    uid = next(u for u, s in editing.stored_state(sessions, set_id).spans.items() if s.label == "Drug")
    edit(sessions, world, set_id, "concept_set", client_id="code", uid=uid, concept_system="RxNorm",
         concept_code="6809")  # fmt: skip
    assert span_row(sessions, set_id, uid).status == "confirmed"
    edit(sessions, world, set_id, "undo", target="code")
    row = span_row(sessions, set_id, uid)
    assert (row.status, row.concept_code, row.confidence) == ("pending", None, 0.9)


# --- relations pre-labelled in the base set ---------------------------------------------------------


def _refine_set_with_relations(sessions, world) -> tuple[int, dict[str, str]]:
    """A new note whose pre-annotation set has three spans and two relations with confidences, and the
    annotator's refine_llm set started from it; returns the set id and the base uids by role."""
    with sessions.begin() as db:
        n = next(_ids)
        document = Document(
            project_id=world.project_id,
            external_id=f"relations-{n}",
            text=NOTE,
            sha256=hashlib.sha256(NOTE.encode()).hexdigest(),
        )
        db.add(document)
        db.flush()
        pre_run = db.get(AnnotationSet, world.pre_set_id).pre_annotation_run_id
        pre = AnnotationSet(
            document_id=document.id,
            origin=SetOrigin.pre_annotation.value,
            pre_annotation_run_id=pre_run,
            status=SetStatus.submitted.value,
        )
        db.add(pre)
        db.flush()
        drug, strength, aspirin = add_spans(
            db,
            pre,
            [
                SpanData("Drug", (Fragment(*DRUG[0]),), confidence=0.9),
                SpanData("Strength", (Fragment(*STRENGTH[0]),), confidence=0.8),
                SpanData("Drug", (Fragment(*ASPIRIN_DRUG[0]),), confidence=0.4),
            ],
            status=SpanStatus.pending,
        )
        for uid, tail, confidence in (("r-good", drug, 0.85), ("r-bad", aspirin, 0.3)):
            db.add(
                Relation(
                    annotation_set_id=pre.id,
                    uid=uid,
                    type="Strength-Drug",
                    head_span_id=strength.id,
                    tail_span_id=tail.id,
                    confidence=confidence,
                )
            )
        db.flush()
        assignment = assign(
            db,
            project_id=world.project_id,
            document_id=document.id,
            annotator_id=world.annotator_id,
            condition=Condition.refine_llm,
            queue_position=100 + n,
            base_set=pre,
        )
        return assignment.annotation_set_id, {
            "drug": drug.uid,
            "strength": strength.uid,
            "aspirin": aspirin.uid,
        }


def test_a_refine_llm_set_gets_the_base_relations_as_pending_and_decides_them(sessions, world):
    set_id, uid = _refine_set_with_relations(sessions, world)
    start = editing.stored_state(sessions, set_id)
    assert start == editing.replayed_state(sessions, set_id)
    assert start.relations == {
        "r-good": RelationState("Strength-Drug", uid["strength"], uid["drug"], "pending", 0.85),
        "r-bad": RelationState("Strength-Drug", uid["strength"], uid["aspirin"], "pending", 0.3),
    }
    with sessions() as db:
        base_ids = dict(
            db.execute(select(Relation.uid, Relation.id).where(Relation.annotation_set_id != set_id)).all()
        )
    stored = relation_rows(sessions, set_id)
    assert {u: row[5] for u, row in stored.items()} == base_ids  # each copy remembers its pre-label

    edit(sessions, world, set_id, "relation_accept", uid="r-good")
    edit(sessions, world, set_id, "relation_reject", client_id="reject-bad", uid="r-bad")
    assert relation_rows(sessions, set_id) == {
        "r-good": ("Strength-Drug", uid["strength"], uid["drug"], "confirmed", 0.85, base_ids["r-good"])
    }
    refused(sessions, world, set_id, "relation_reject", "uid: that relation is not an undecided pre-label",
            uid="r-good")  # fmt: skip
    refused(
        sessions, world, set_id, "relation_accept", "uid: that relation is no longer in the note", uid="r-bad"
    )
    # undo of the reject brings the pre-label back, undecided, with its confidence and its origin
    edit(sessions, world, set_id, "undo", target="reject-bad")
    assert relation_rows(sessions, set_id)["r-bad"] == (
        "Strength-Drug", uid["strength"], uid["aspirin"], "pending", 0.3, base_ids["r-bad"]
    )  # fmt: skip
    # rejecting the aspirin pre-label takes its relation with it
    edit(sessions, world, set_id, "reject", uid=uid["aspirin"])
    assert set(relation_rows(sessions, set_id)) == {"r-good"}
    assert kinds(sessions, set_id) == ["relation_accept", "relation_reject", "undo", "reject"]


def test_accept_all_accepts_the_relations_shown(sessions, world):
    set_id, uid = _refine_set_with_relations(sessions, world)
    edit(sessions, world, set_id, "accept_all", uids=(uid["drug"], uid["strength"], "r-good"))
    statuses = {u: row[3] for u, row in relation_rows(sessions, set_id).items()}
    assert statuses == {"r-good": "confirmed", "r-bad": "pending"}
    edit(sessions, world, set_id, "accept_all")
    assert {row[3] for row in relation_rows(sessions, set_id).values()} == {"confirmed"}
    assert {s.status for s in editing.stored_state(sessions, set_id).spans.values()} == {"confirmed"}


def test_submit_counts_pending_relations_when_every_pre_label_must_be_decided(sessions, password_hashes):
    world = build_world(
        sessions,
        password_hashes["annotator"],
        {"require_prelabels_decided": True},
        label_schema=ANNOTATION_SCHEMA,
    )
    set_id, uid = _refine_set_with_relations(sessions, world)
    edit(sessions, world, set_id, "answer", key="primary_diagnosis", value="Type 2 diabetes mellitus")
    edit(sessions, world, set_id, "accept_all", uids=tuple(uid.values()))
    refused(sessions, world, set_id, "submit", "status: 2 pre-labels are undecided")
    edit(sessions, world, set_id, "relation_accept", uid="r-good")
    edit(sessions, world, set_id, "relation_reject", uid="r-bad")
    edit(sessions, world, set_id, "submit")
    with sessions() as db:
        assert db.get(AnnotationSet, set_id).status == "submitted"


# --- the log: one event per edit, of its kind -----------------------------------------------------


def test_every_edit_is_one_event_of_its_kind_and_one_version(sessions, world, vocabularies):
    set_id = world.sets["scratch"]
    steps = [
        ("add", {"uid": "drug", "label": "Drug", "fragments": DRUG}),
        ("add", {"uid": "strength", "label": "Strength", "fragments": STRENGTH}),
        ("relation_add", {"uid": "rel1", "label": "Strength-Drug", "head": "strength", "tail": "drug"}),
        ("attribute_set", {"uid": "drug", "attribute": "negation", "value": "affirmed"}),
        ("concept_set", {"uid": "drug", "concept_system": "RxNorm", "concept_code": "6809"}),
        ("answer", {"key": "primary_diagnosis", "value": "Type 2 diabetes mellitus"}),
        ("answer", {"key": "severity", "value": "mild"}),
        ("answer", {"key": "findings", "value": ["nausea"]}),
        ("answer", {"key": "confidence", "value": 5}),
        ("answer", {"key": "evidence", "value": ["drug"]}),
        ("relation_delete", {"uid": "rel1"}),
        ("submit", {}),
    ]
    for kind, fields in steps:
        edit(sessions, world, set_id, kind, **fields)
    assert kinds(sessions, set_id) == [kind for kind, _ in steps]
    with sessions() as db:
        annotation_set = db.get(AnnotationSet, set_id)
        versions = list(
            db.scalars(
                select(EditEvent.set_version)
                .where(EditEvent.annotation_set_id == set_id)
                .order_by(EditEvent.id)
            )
        )
        assert annotation_set.version == len(steps) and versions == list(range(1, len(steps) + 1))
        assert (
            db.scalar(select(func.count()).select_from(Relation).where(Relation.annotation_set_id == set_id))
            == 0
        )
    assert answer_rows(sessions, set_id) == {
        "primary_diagnosis": "Type 2 diabetes mellitus",
        "severity": "mild",
        "findings": ["nausea"],
        "confidence": 5,
        "evidence": ["drug"],
    }


# --- undo that would leave a relation or evidence without its span ----------------------------------


def test_undoing_an_add_that_a_relation_uses_keeps_the_set_replayable(sessions, world):
    set_id = world.sets["scratch"]
    edit(sessions, world, set_id, "add", client_id="add-drug", uid="drug", label="Drug", fragments=DRUG)
    edit(sessions, world, set_id, "add", uid="strength", label="Strength", fragments=STRENGTH)
    edit(
        sessions,
        world,
        set_id,
        "relation_add",
        uid="rel1",
        label="Strength-Drug",
        head="strength",
        tail="drug",
    )
    with contextlib.suppress(EditRefused):  # refusing the undo is a fix too
        edit(sessions, world, set_id, "undo", target="add-drug")  # asserts stored == replayed
    state = editing.stored_state(sessions, set_id)
    assert all({r.head, r.tail} <= set(state.spans) for r in state.relations.values())


def test_undoing_a_delete_after_the_other_end_went_keeps_the_set_replayable(sessions, world):
    set_id = world.sets["scratch"]
    add_drug_and_strength(sessions, world, set_id)
    edit(
        sessions,
        world,
        set_id,
        "relation_add",
        uid="rel1",
        label="Strength-Drug",
        head="strength",
        tail="drug",
    )
    edit(sessions, world, set_id, "delete", client_id="del-strength", uid="strength")
    edit(sessions, world, set_id, "delete", uid="drug")
    with contextlib.suppress(EditRefused):  # refusing the undo is a fix too
        edit(sessions, world, set_id, "undo", target="del-strength")  # asserts stored == replayed
    state = editing.stored_state(sessions, set_id)
    assert all({r.head, r.tail} <= set(state.spans) for r in state.relations.values())
