"""An edit's answer carries only the relations whose side-list item reads differently (issue 19: on a
dense note the 300 relation items were most of every answer and of the browser's redraw)."""

from dataclasses import replace

from app.domain.editing import RelationState, SetState, SpanState
from app.services.editing import relations_touched

DRUG = SpanState("Drug", ((0, 7),), status="pending")
DOSE = SpanState("Strength", ((8, 13),), status="pending")
LONE = SpanState("Route", ((14, 16),), status="pending")
LINK = RelationState("Strength-Drug", "t2", "t1", status="pending")
BEFORE = SetState(spans={"t1": DRUG, "t2": DOSE, "t3": LONE}, relations={"r1": LINK})


def after(spans=None, relations=None) -> SetState:
    return replace(BEFORE, spans={**BEFORE.spans, **(spans or {})}, relations=relations or BEFORE.relations)


def test_accepting_or_relabelling_a_linked_span_touches_no_relation():
    accepted = after({"t1": replace(DRUG, status="confirmed")})
    assert relations_touched(BEFORE, accepted, ("t1",)) == ()
    relabelled = after({"t2": replace(DOSE, label="Dosage")})
    assert relations_touched(BEFORE, relabelled, ("t2",)) == ()
    assert relations_touched(BEFORE, after({"t3": replace(LONE, fragments=((14, 18),))}), ("t3",)) == ()


def test_a_relation_decided_added_or_removed_or_a_linked_span_moved_is_named():
    other = RelationState("Route-Drug", "t3", "t1", status="pending")
    assert relations_touched(BEFORE, after(relations={"r1": replace(LINK, status="confirmed")}), ()) == (
        "r1",
    )
    assert relations_touched(BEFORE, after(relations={"r1": replace(LINK, type="Dose-Drug")}), ("t2",)) == (
        "r1",
    )
    assert relations_touched(BEFORE, after({"t1": replace(DRUG, fragments=((0, 8),))}), ("t1",)) == ("r1",)
    added = after(relations={"r1": LINK, "r2": other})
    assert relations_touched(BEFORE, added, ()) == ("r2",)
    # Only the one that changed, when several exist.
    assert relations_touched(
        added, after(relations={"r1": LINK, "r2": replace(other, status="confirmed")}), ()
    ) == ("r2",)
    removed = SetState(spans={"t1": DRUG, "t3": LONE}, relations={})
    assert relations_touched(BEFORE, removed, ("t2",)) == ("r1",)
