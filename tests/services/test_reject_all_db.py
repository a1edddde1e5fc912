"""reject_all on a real PostgreSQL: one logged edit rejects the pre-labels shown, with their relations and
evidence; one undo brings all of it back, as it was stored; a submitted note refuses it."""

import hashlib
import itertools
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from app.db.models import AnnotationSet, Document, EditEvent, Relation, Span
from app.domain.editing import EditRefused
from app.domain.spans import Fragment, SpanData
from app.domain.vocabulary import Condition, SetOrigin, SetStatus, SpanStatus
from app.services import editing
from app.services.annotation_sets import add_spans, assign
from app.services.metrics import project_metrics
from tests.services.editing_fixtures import ANNOTATION_SCHEMA, ASPIRIN, METFORMIN, NOTE, build_world

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
_ids = itertools.count(1)


@pytest.fixture
def world(sessions, password_hashes):
    return build_world(sessions, password_hashes["annotator"], label_schema=ANNOTATION_SCHEMA)


def edit(sessions, world, set_id: int, kind: str, **fields) -> editing.EditOutcome:
    """One edit through the service, then the invariant: the stored set is its replayed log."""
    with sessions() as db:
        version = db.get(AnnotationSet, set_id).version
    request = editing.EditRequest(
        kind=kind, client_id=fields.pop("client_id", f"ra{next(_ids)}"), page_session="page-1",
        version=version, monotonic_ms=float(next(_ids)), **fields,
    )  # fmt: skip
    outcome = editing.apply_edit(sessions, world.annotator_id, set_id, request, now=NOW)
    assert editing.stored_state(sessions, set_id) == editing.replayed_state(sessions, set_id)
    return outcome


def stored_rows(sessions, set_id: int) -> tuple[dict, dict]:
    """Spans (uid -> base span id) and relations (uid -> head, tail, status, confidence, base id)."""
    with sessions() as db:
        spans = {
            s.uid: (s.id, s.base_span_id)
            for s in db.scalars(select(Span).where(Span.annotation_set_id == set_id))
        }
        uid_of = {span_id: uid for uid, (span_id, _) in spans.items()}
        relations = {
            r.uid: (
                uid_of[r.head_span_id],
                uid_of[r.tail_span_id],
                r.status,
                r.confidence,
                r.base_relation_id,
            )
            for r in db.scalars(select(Relation).where(Relation.annotation_set_id == set_id))
        }
    return {uid: base for uid, (_, base) in spans.items()}, relations


def refine_set(sessions, world) -> tuple[int, dict[str, str]]:
    """A note whose pre-labels are Metformin, 500 mg and aspirin with two Strength-Drug relations, and the
    physician's refine_llm set copied from it; returns the set and the span uids by name."""
    with sessions.begin() as db:
        document = Document(
            project_id=world.project_id, external_id=f"reject-all-{next(_ids)}", text=NOTE,
            sha256=hashlib.sha256(NOTE.encode()).hexdigest(),
        )  # fmt: skip
        db.add(document)
        db.flush()
        pre = AnnotationSet(
            document_id=document.id,
            origin=SetOrigin.pre_annotation.value,
            pre_annotation_run_id=db.get(AnnotationSet, world.pre_set_id).pre_annotation_run_id,
            status=SetStatus.submitted.value,
        )
        db.add(pre)
        db.flush()
        drug, strength, aspirin = add_spans(
            db,
            pre,
            [
                SpanData("Drug", (Fragment(METFORMIN, METFORMIN + 9),), confidence=0.9),
                SpanData("Strength", (Fragment(METFORMIN + 10, METFORMIN + 16),), confidence=0.8),
                SpanData("Drug", (Fragment(ASPIRIN, ASPIRIN + 7),), confidence=0.4),
            ],
            status=SpanStatus.pending,
        )
        for uid, tail, confidence in (("r-metformin", drug, 0.85), ("r-aspirin", aspirin, 0.3)):
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
        set_id = assign(
            db, project_id=world.project_id, document_id=document.id, annotator_id=world.annotator_id,
            condition=Condition.refine_llm, queue_position=50, base_set=pre,
        ).annotation_set_id  # fmt: skip
    state = editing.stored_state(sessions, set_id)
    names = {"metformin": METFORMIN, "strength": METFORMIN + 10, "aspirin": ASPIRIN}
    uid = {
        name: next(u for u, s in state.spans.items() if s.fragments[0][0] == at) for name, at in names.items()
    }
    return set_id, uid


def test_rejects_what_was_shown_with_relations_and_evidence_and_one_undo_restores_it(sessions, world):
    set_id, uid = refine_set(sessions, world)
    edit(sessions, world, set_id, "accept", uid=uid["aspirin"])  # decided: stays though shown
    edit(sessions, world, set_id, "answer", key="evidence", value=[uid["metformin"], uid["aspirin"]])
    before_state = editing.stored_state(sessions, set_id)
    before_rows = stored_rows(sessions, set_id)
    outcome = edit(sessions, world, set_id, "reject_all", client_id="reject-all",
                   uids=(uid["metformin"], uid["strength"], uid["aspirin"]))  # fmt: skip
    assert set(outcome.touched) == {uid["metformin"], uid["strength"]}
    after = editing.stored_state(sessions, set_id)
    assert set(after.spans) == {uid["aspirin"]}
    assert after.relations == {}  # both relations name the rejected Strength
    assert after.answers["evidence"] == [uid["aspirin"]]
    with sessions() as db:
        event = db.scalar(select(EditEvent).where(EditEvent.client_id == "reject-all"))
        assert event.kind == "reject_all"
        assert set(event.before["spans"]) == {uid["metformin"], uid["strength"]}
        assert set(event.before["relations"]) == {"r-metformin", "r-aspirin"}
    edit(sessions, world, set_id, "undo", target="reject-all", client_id="undo-reject-all")
    assert editing.stored_state(sessions, set_id) == before_state
    # Restored as they were stored: each copy still names the pre-label and relation it came from.
    assert stored_rows(sessions, set_id) == before_rows
    assert None not in before_rows[0].values() and all(r[4] is not None for r in before_rows[1].values())
    edit(sessions, world, set_id, "redo", target="undo-reject-all")
    assert set(editing.stored_state(sessions, set_id).spans) == {uid["aspirin"]}


def test_only_the_pre_labels_shown_go_and_a_pending_relation_shown_goes_too(sessions, world):
    set_id, uid = refine_set(sessions, world)
    edit(sessions, world, set_id, "reject_all", uids=(uid["aspirin"], "r-metformin"))
    after = editing.stored_state(sessions, set_id)
    assert set(after.spans) == {uid["metformin"], uid["strength"]}
    assert {s.status for s in after.spans.values()} == {"pending"}  # not shown: still undecided
    assert after.relations == {}  # r-aspirin named the rejected aspirin; r-metformin was shown


def test_refused_without_uids_and_on_a_submitted_note(sessions, world):
    set_id, uid = refine_set(sessions, world)
    with pytest.raises(EditRefused, match="^uids: "):
        edit(sessions, world, set_id, "reject_all")
    edit(sessions, world, set_id, "answer", key="primary_diagnosis", value="Type 2 diabetes mellitus")
    edit(sessions, world, set_id, "submit")
    before = editing.stored_state(sessions, set_id)
    with pytest.raises(EditRefused, match="^status: the note is submitted"):
        edit(sessions, world, set_id, "reject_all", uids=tuple(uid.values()))
    assert editing.stored_state(sessions, set_id) == before
    with sessions() as db:
        kinds = db.scalars(select(EditEvent.kind).where(EditEvent.annotation_set_id == set_id)).all()
    assert "reject_all" not in kinds


def test_the_report_counts_reject_all_as_one_decision_and_its_spans_as_deleted(sessions, world):
    set_id, uid = refine_set(sessions, world)
    edit(sessions, world, set_id, "reject_all", uids=(uid["aspirin"], uid["strength"]))
    edit(sessions, world, set_id, "accept_all", uids=(uid["metformin"],))
    edit(sessions, world, set_id, "answer", key="primary_diagnosis", value="Type 2 diabetes mellitus")
    edit(sessions, world, set_id, "submit")
    report = project_metrics(sessions, world.project_id, time_resamples=50, agreement_resamples=10)
    events = report["edit_mix"]["events_by_condition"]["refine_llm"]
    assert (events["reject_all"], events["accept_all"], events["decisions"]) == (1, 1, 2)
    mix = report["edit_mix"]["by_condition"]["refine_llm"]
    assert (mix["kept"], mix["deleted"], mix["undecided"]) == (1, 2, 0)
