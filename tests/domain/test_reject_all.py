"""reject_all: the undecided pre-labels the physician saw, rejected in one undoable edit
(app/domain/editing.py, no database)."""

import pytest

from app.domain.editing import (
    UNDOABLE,
    Change,
    Command,
    EditRefused,
    RelationState,
    SetState,
    SpanState,
    apply_change,
    plan,
    replay,
)
from app.domain.label_schema import parse_label_schema
from app.domain.vocabulary import EditKind

SCHEMA = parse_label_schema(
    {
        "entity_types": [
            {"name": "Drug", "color": "#1f77b4"},
            {"name": "Strength", "color": "#ff7f0e"},
            {"name": "Reason", "color": "#2ca02c"},
        ],
        "relation_types": [
            {"name": "Strength-Drug", "head_types": ["Strength"], "tail_types": ["Drug"]},
            {"name": "Reason-Drug", "head_types": ["Reason"], "tail_types": ["Drug"]},
        ],
        "document_questions": [{"key": "evidence", "prompt": "Supporting evidence", "kind": "evidence"}],
    }
)
TEXT_LENGTH = 100

DRUG = SpanState("Drug", ((0, 9),), "pending", confidence=0.9)  # pending, shown
STRENGTH = SpanState("Strength", ((10, 16),), "pending", confidence=0.8)  # pending, shown
REASON = SpanState("Reason", ((20, 28),), "pending", confidence=0.6)  # pending, not shown
ACCEPTED = SpanState("Drug", ((30, 37),))  # decided already
STATE = SetState(
    spans={"drug": DRUG, "strength": STRENGTH, "reason": REASON, "accepted": ACCEPTED},
    relations={
        "dose": RelationState("Strength-Drug", "strength", "drug", "pending", 0.5),  # names rejected spans
        "why": RelationState("Reason-Drug", "reason", "accepted", "pending", 0.4),  # pending, shown
        "why-2": RelationState("Reason-Drug", "reason", "drug"),  # confirmed, names a rejected span
        "also": RelationState("Strength-Drug", "strength", "accepted", "pending"),  # not shown, names one
    },
    answers={"evidence": ["drug", "accepted"]},
)
SHOWN = ("drug", "strength", "accepted", "why", "gone-already")


def planned(command: Command, state: SetState = STATE) -> Change:
    return plan(command, state, text_length=TEXT_LENGTH, schema=SCHEMA)


def test_rejects_the_pending_pre_labels_shown_and_nothing_else():
    after = apply_change(STATE, planned(Command("reject_all", uids=SHOWN)))
    # The decided span stays though named; the pending span not shown stays; an unknown uid is ignored.
    assert after.spans == {"reason": REASON, "accepted": ACCEPTED}


def test_relations_and_evidence_go_as_a_single_reject_takes_them():
    after = apply_change(STATE, planned(Command("reject_all", uids=SHOWN)))
    # "dose", "why-2" and "also" name a rejected span (whatever their status); "why" is pending and shown.
    assert after.relations == {}
    assert after.answers == {"evidence": ["accepted"]}
    # The same as rejecting each shown pre-label alone, then the shown pending relation.
    one_by_one = STATE
    for command in (Command("reject", uid="drug"), Command("reject", uid="strength")):
        one_by_one = apply_change(one_by_one, planned(command, one_by_one))
    assert set(one_by_one.relations) == {"why"}
    one_by_one = apply_change(one_by_one, planned(Command("relation_reject", uid="why"), one_by_one))
    assert (after.spans, after.relations, after.answers) == (
        one_by_one.spans, one_by_one.relations, one_by_one.answers,
    )  # fmt: skip


def test_a_pending_relation_not_shown_stays():
    state = SetState(
        spans={"reason": REASON, "accepted": ACCEPTED, "drug": DRUG},
        relations={"why": RelationState("Reason-Drug", "reason", "accepted", "pending")},
    )
    after = apply_change(state, planned(Command("reject_all", uids=("drug",)), state))
    assert set(after.spans) == {"reason", "accepted"} and set(after.relations) == {"why"}


def test_one_undo_restores_everything_even_through_the_stored_log():
    change = planned(Command("reject_all", uids=SHOWN))
    after = apply_change(STATE, change)
    assert apply_change(after, change.inverse()) == STATE
    stored = Change.from_json(*change.to_json())  # as the edit log keeps it
    assert replay(STATE, [stored, stored.inverse()]) == STATE
    assert EditKind.reject_all in UNDOABLE


def test_needs_the_uids_shown_and_an_empty_list_rejects_nothing():
    with pytest.raises(EditRefused, match="^uids: "):
        planned(Command("reject_all"))
    assert planned(Command("reject_all", uids=())).is_empty


def test_refused_on_a_submitted_note():
    submitted = SetState(spans=STATE.spans, relations=STATE.relations, status="submitted")
    with pytest.raises(EditRefused, match="^status: the note is submitted"):
        planned(Command("reject_all", uids=SHOWN), submitted)
