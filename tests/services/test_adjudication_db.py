"""Adjudication against real PostgreSQL: the queue, gold's proposal, keeping versions, ambiguity,
gold replaying from its events, and the physicians' sets never touched."""

from datetime import UTC, datetime
from itertools import count

import pytest
from sqlalchemy import select

from app.db.models import AnnotationSet, AuditEvent, EditEvent
from app.domain.editing import EditRefused
from app.domain.vocabulary import EditKind, SetOrigin
from app.services import adjudication, editing
from app.services.metrics import project_metrics
from tests.services.adjudication_fixtures import (
    ASPIRIN,
    DIABETES,
    METFORMIN,
    NAUSEA,
    STRENGTH,
    add_note,
    build_adjudication_world,
    physician_set,
)
from tests.services.adjudication_fixtures import _span as span

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
_ids = count(1)


@pytest.fixture
def world(sessions, password_hashes):
    return build_adjudication_world(sessions, password_hashes)


def edit(sessions, user_id, set_id, kind, **fields):
    with sessions() as db:
        version = db.get(AnnotationSet, set_id).version
    request = editing.EditRequest(
        kind=kind,
        client_id=f"c{next(_ids)}",
        page_session="page1",
        version=version,
        monotonic_ms=1.0,
        **fields,
    )
    return editing.apply_edit(sessions, user_id, set_id, request, now=NOW)


def gold_of(sessions, world):
    return adjudication.start_gold(sessions, world.project_id, world.document_id, world.lead_id, now=NOW)


def physicians_states(sessions, world):
    return {login: editing.stored_state(sessions, set_id) for login, set_id in world.sets.items()}


def source_uid(sessions, world, login, label, extent):
    state = editing.stored_state(sessions, world.sets[login])
    return next(u for u, s in state.spans.items() if s.label == label and s.fragments == (extent,))


def by_text(state):
    return {(s.label, s.fragments): s for s in state.spans.values()}


def test_the_queue_lists_notes_two_physicians_submitted_worst_agreement_first(sessions, world):
    with sessions.begin() as db:
        agreed = add_note(db, world.project_id, "note-agreed")
        for login in ("ana", "ben"):
            physician_set(db, agreed.id, world.annotator_ids[login], [span("Drug", METFORMIN)], [], {})
        single = add_note(db, world.project_id, "note-one-physician")
        physician_set(db, single.id, world.annotator_ids["ana"], [span("Drug", METFORMIN)], [], {})
    items = adjudication.adjudication_queue(sessions, world.project_id)
    assert [i.external_id for i in items] == ["note-1", "note-agreed"]
    first, second = items
    # note-1: Metformin, 500 mg and Aspirin agreed; diabetes and Nausea disputed.
    assert (first.candidates, first.disputed, first.agreement) == (5, 2, pytest.approx(3 / 5))
    assert (second.agreement, second.gold_status) == (1.0, "not started")
    gold_id = gold_of(sessions, world)
    assert adjudication.adjudication_queue(sessions, world.project_id)[0].gold_status == "open"
    assert adjudication.adjudication_queue(sessions, world.project_id)[0].gold_set_id == gold_id


def test_gold_starts_with_what_everyone_agreed_on_and_replays_from_its_events(sessions, world):
    before = physicians_states(sessions, world)
    gold_id = gold_of(sessions, world)
    assert gold_of(sessions, world) == gold_id  # a second lead continues the same adjudication
    gold = editing.stored_state(sessions, gold_id)
    spans = by_text(gold)
    assert sorted(spans) == sorted([("Drug", (ASPIRIN,)), ("Drug", (METFORMIN,)), ("Strength", (STRENGTH,))])
    assert dict(spans[("Drug", (METFORMIN,))].attributes) == {"negation": "affirmed"}  # both set it alike
    [relation] = gold.relations.values()
    assert relation.type == "Strength-Drug"
    assert gold.spans[relation.head].label == "Strength" and gold.spans[relation.tail].fragments == (
        METFORMIN,
    )
    assert gold.answers == {"primary_diagnosis": "diabetes"}  # severity differs: left to the lead
    assert editing.replayed_state(sessions, gold_id) == gold
    with sessions() as db:
        gold_set = db.get(AnnotationSet, gold_id)
        assert (gold_set.origin, gold_set.annotator_id, gold_set.status) == ("gold", world.lead_id, "open")
        kinds = db.scalars(select(EditEvent.kind).where(EditEvent.annotation_set_id == gold_id)).all()
        assert kinds == ["propose"]
        audit = db.scalars(select(AuditEvent).where(AuditEvent.action == "adjudication.start")).one()
        assert audit.details["physician_sets"] == sorted(world.sets.values())
    assert physicians_states(sessions, world) == before


def test_a_note_with_one_submitted_set_cannot_be_adjudicated(sessions, world):
    with sessions.begin() as db:
        single = add_note(db, world.project_id, "note-one")
        physician_set(db, single.id, world.annotator_ids["ana"], [span("Drug", METFORMIN)], [], {})
    with pytest.raises(adjudication.AdjudicationError, match="1 submitted physician set"):
        adjudication.start_gold(sessions, world.project_id, single.id, world.lead_id, now=NOW)
    with sessions() as db:
        assert db.scalar(select(AnnotationSet.id).where(AnnotationSet.origin == "gold")) is None


def test_keeping_a_version_replaces_its_rival_and_ambiguity_keeps_the_distribution(sessions, world):
    before = physicians_states(sessions, world)
    gold_id = gold_of(sessions, world)
    lead = world.lead_id
    # diabetes: keep ana's Reason, with the certainty she gave it.
    reason = source_uid(sessions, world, "ana", "Reason", DIABETES)
    edit(sessions, lead, gold_id, EditKind.adopt, source_set=world.sets["ana"], source_uid=reason)
    spans = by_text(editing.stored_state(sessions, gold_id))
    assert dict(spans[("Reason", (DIABETES,))].attributes) == {"certainty": "certain"}
    # Changing their mind: ben's ADE replaces the Reason (same text, rival labels).
    ade = source_uid(sessions, world, "ben", "ADE", DIABETES)
    edit(sessions, lead, gold_id, EditKind.adopt, source_set=world.sets["ben"], source_uid=ade)
    spans = by_text(editing.stored_state(sessions, gold_id))
    assert ("Reason", (DIABETES,)) not in spans and ("ADE", (DIABETES,)) in spans
    # Nausea: only ana marked it; kept as genuinely ambiguous.
    nausea = source_uid(sessions, world, "ana", "ADE", NAUSEA)
    edit(sessions, lead, gold_id, EditKind.adopt, source_set=world.sets["ana"], source_uid=nausea, value=1)
    gold = editing.stored_state(sessions, gold_id)
    kept = by_text(gold)[("ADE", (NAUSEA,))]
    assert kept.distribution == (("ADE", 1), ("O", 1))
    # diabetes too, afterwards: marking an existing gold span ambiguous counts both labels.
    ade_uid = next(u for u, s in gold.spans.items() if s.fragments == (DIABETES,))
    edit(sessions, lead, gold_id, EditKind.ambiguous, uid=ade_uid, value=1)
    assert editing.stored_state(sessions, gold_id).spans[ade_uid].distribution == (("ADE", 1), ("Reason", 1))
    # ...and undone.
    edit(sessions, lead, gold_id, EditKind.ambiguous, uid=ade_uid, value=None)
    assert editing.stored_state(sessions, gold_id).spans[ade_uid].distribution is None
    # ana's Reason-Drug relation: its Reason span comes along and replaces the ADE.
    relation_uid = next(
        u
        for u, r in editing.stored_state(sessions, world.sets["ana"]).relations.items()
        if r.type == "Reason-Drug"
    )
    edit(sessions, lead, gold_id, EditKind.adopt, source_set=world.sets["ana"], source_uid=relation_uid)
    gold = editing.stored_state(sessions, gold_id)
    assert sorted(r.type for r in gold.relations.values()) == ["Reason-Drug", "Strength-Drug"]
    assert ("ADE", (DIABETES,)) not in by_text(gold)
    # Undo of the relation's adoption brings the ADE back and drops the Reason with its relation.
    with sessions() as db:
        last = db.scalars(
            select(EditEvent.client_id)
            .where(EditEvent.annotation_set_id == gold_id)
            .order_by(EditEvent.id.desc())
        ).first()
    edit(sessions, lead, gold_id, EditKind.undo, target=last)
    gold = editing.stored_state(sessions, gold_id)
    assert ("ADE", (DIABETES,)) in by_text(gold) and [r.type for r in gold.relations.values()] == [
        "Strength-Drug"
    ]
    assert editing.replayed_state(sessions, gold_id) == gold
    assert physicians_states(sessions, world) == before


def test_adjudication_edits_are_refused_where_they_do_not_belong(sessions, world):
    gold_id = gold_of(sessions, world)
    lead = world.lead_id
    aspirin = source_uid(sessions, world, "ana", "Drug", ASPIRIN)
    with pytest.raises(EditRefused, match="gold has this span already"):
        edit(sessions, lead, gold_id, EditKind.adopt, source_set=world.sets["ana"], source_uid=aspirin)
    with pytest.raises(EditRefused, match="source_set"):
        edit(sessions, lead, gold_id, EditKind.adopt, source_set=gold_id, source_uid=aspirin)
    with pytest.raises(EditRefused, match="source_uid"):
        edit(sessions, lead, gold_id, EditKind.adopt, source_set=world.sets["ana"], source_uid="nope")
    with pytest.raises(EditRefused, match="not skipped"):
        edit(sessions, lead, gold_id, EditKind.skip, text="tired")
    with pytest.raises(EditRefused, match="proposed again"):
        edit(sessions, lead, gold_id, EditKind.propose)
    with pytest.raises(EditRefused, match="not submitted"):
        edit(sessions, lead, gold_id, EditKind.reopen)
    # Gold kinds on a physician's own set, by that physician.
    with sessions() as db:
        ana_set = db.get(AnnotationSet, world.sets["ana"])
        ana_set.status = "open"
        db.commit()
    with pytest.raises((EditRefused, editing.NotYourNote)):
        edit(
            sessions, world.annotator_ids["ana"], world.sets["ana"], EditKind.ambiguous, uid=aspirin, value=1
        )
    # A physician cannot edit gold; a lead cannot edit a physician's set.
    with pytest.raises(editing.NotYourNote):
        edit(sessions, world.annotator_ids["ana"], gold_id, EditKind.note, text="mine now")
    with pytest.raises(editing.NotYourNote):
        edit(sessions, lead, world.sets["ben"], EditKind.note, text="lead was here")


def test_imported_gold_is_not_edited_in_adjudication(sessions, world):
    with sessions.begin() as db:
        imported = AnnotationSet(
            document_id=world.document_id, origin=SetOrigin.gold.value, status="submitted"
        )
        db.add(imported)
        db.flush()
        imported_id = imported.id
    with pytest.raises(editing.NotYourNote):
        edit(sessions, world.lead_id, imported_id, EditKind.note, text="x")


def test_submitted_gold_feeds_the_metrics_and_an_open_one_does_not(sessions, world):
    gold_id = gold_of(sessions, world)
    report = project_metrics(sessions, world.project_id)
    assert report["physicians_against_gold"] == {}  # open: not gold yet
    edit(sessions, world.lead_id, gold_id, EditKind.submit)
    report = project_metrics(sessions, world.project_id)
    against = report["physicians_against_gold"]
    assert sorted(against) == ["ana", "ben"]
    # gold = the three agreed spans; ana marked 5 (3 right), ben 4 (3 right): strict micro precision.
    assert against["ana"]["figures"]["strict"]["micro"]["precision"] == pytest.approx(3 / 5)
    assert against["ben"]["figures"]["strict"]["micro"]["precision"] == pytest.approx(3 / 4)
    edit(sessions, world.lead_id, gold_id, EditKind.reopen)
    assert editing.stored_state(sessions, gold_id).status == "open"
    assert project_metrics(sessions, world.project_id)["physicians_against_gold"] == {}


def test_the_queue_keeps_each_notes_agreement_until_its_sets_change(sessions, world):
    from app.db.models import AdjudicationStatistics, Span

    [item] = adjudication.adjudication_queue(sessions, world.project_id)
    assert (item.candidates, item.disputed) == (5, 2)
    with sessions() as db:
        kept = db.get(AdjudicationStatistics, world.document_id)
        assert (kept.candidates, kept.disputed) == (5, 2)
    # Behind the app's back (no version bump): the kept figures are used, so they really are read.
    with sessions.begin() as db:
        nausea = db.scalars(
            select(Span).where(Span.annotation_set_id == world.sets["ana"], Span.label == "ADE")
        ).all()
        for span in nausea:
            db.delete(span)
    assert adjudication.adjudication_queue(sessions, world.project_id)[0].disputed == 2
    # Any change through the app bumps the set's version: the note is computed again.
    with sessions.begin() as db:
        db.get(AnnotationSet, world.sets["ana"]).version += 1
    [item] = adjudication.adjudication_queue(sessions, world.project_id)
    assert (item.candidates, item.disputed) == (4, 1)  # Nausea is gone; diabetes is still disputed


def test_the_comparison_says_who_set_an_agreed_spans_attributes_apart(sessions, world):
    from app.db.models import Span

    with sessions.begin() as db:
        metformin = db.scalars(
            select(Span).where(Span.annotation_set_id == world.sets["ben"], Span.label == "Drug")
        ).all()
        for span in metformin:
            if span.attributes:
                span.attributes = {"negation": "negated"}
    gold_id = gold_of(sessions, world)
    gold = editing.stored_state(sessions, gold_id)
    assert dict(by_text(gold)[("Drug", (METFORMIN,))].attributes) == {}  # not proposed: they differ
    with sessions() as db:
        context = editing.editor_context(db, gold_id, world.lead_id)
        shown = adjudication.comparison(db, context, gold)
        hidden = adjudication.comparison(db, context, gold, hide_names=True)
    [row] = [c for c in shown.candidates if c.start == METFORMIN[0]]
    [version] = row.versions
    assert row.agreed and version.attribute_disputes == ["negation"]
    assert version.dispute_detail == "Dr Ana: negation=affirmed; Dr Ben: negation=negated"
    [hidden_version] = [c for c in hidden.candidates if c.start == METFORMIN[0]][0].versions
    assert hidden_version.dispute_detail == "Physician A: negation=affirmed; Physician B: negation=negated"
    assert hidden_version.physicians == ["Physician A", "Physician B"]
