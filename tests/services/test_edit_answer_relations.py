"""An edit's answer carries the relation list only when the list reads differently (issue 19: on a
dense note the 300 relation items were most of every answer and of the browser's redraw)."""

from dataclasses import replace

from app.domain.editing import RelationState, SetState, SpanState
from app.services.editing import relations_changed

DRUG = SpanState("Drug", ((0, 7),), status="pending")
DOSE = SpanState("Strength", ((8, 13),), status="pending")
LONE = SpanState("Route", ((14, 16),), status="pending")
LINK = RelationState("Strength-Drug", "t2", "t1", status="pending")
BEFORE = SetState(spans={"t1": DRUG, "t2": DOSE, "t3": LONE}, relations={"r1": LINK})


def after(spans=None, relations=None) -> SetState:
    return replace(BEFORE, spans={**BEFORE.spans, **(spans or {})}, relations=relations or BEFORE.relations)


def test_accepting_or_relabelling_a_linked_span_leaves_the_list_as_it_reads():
    accepted = after({"t1": replace(DRUG, status="confirmed")})
    assert not relations_changed(BEFORE, accepted, ("t1",))
    relabelled = after({"t2": replace(DOSE, label="Dosage")})
    assert not relations_changed(BEFORE, relabelled, ("t2",))
    assert not relations_changed(BEFORE, after({"t3": replace(LONE, fragments=((14, 18),))}), ("t3",))


def test_a_relation_decided_or_a_linked_span_moved_or_removed_changes_it():
    assert relations_changed(BEFORE, after(relations={"r1": replace(LINK, status="confirmed")}), ())
    assert relations_changed(BEFORE, after(relations={"r1": replace(LINK, type="Dose-Drug")}), ("t2",))
    assert relations_changed(BEFORE, after({"t1": replace(DRUG, fragments=((0, 8),))}), ("t1",))
    removed = SetState(spans={"t1": DRUG, "t3": LONE}, relations={})
    assert relations_changed(BEFORE, removed, ("t2",))
