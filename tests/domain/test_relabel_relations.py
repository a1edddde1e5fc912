"""Relabelling a span that has relations (issue 19): the refusal says in plain words which relations
would no longer fit (no internal id), and the same edit can drop them or retype them where exactly one
relation type fits; undo (the change reversed) restores every one."""

import pytest

from app.domain.editing import (
    Command,
    RelationState,
    RelationsWouldBreak,
    SetState,
    SpanState,
    apply_change,
    plan,
)
from app.domain.label_schema import parse_label_schema

SCHEMA = parse_label_schema(
    {
        "entity_types": [
            {"name": "Drug", "color": "#1f77b4"},
            {"name": "Strength", "color": "#ff7f0e"},
            {"name": "Reason", "color": "#2ca02c"},
            {"name": "ADE", "color": "#d62728"},
        ],
        "relation_types": [
            {"name": "Strength-Drug", "head_types": ["Strength"], "tail_types": ["Drug"]},
            {"name": "Reason-Drug", "head_types": ["Reason"], "tail_types": ["Drug"]},
            {"name": "ADE-Drug", "head_types": ["ADE"], "tail_types": ["Drug"]},
        ],
    }
)
STATE = SetState(
    spans={
        "5abf10acb9594b8d": SpanState("Reason", ((20, 28),)),
        "d1": SpanState("Drug", ((0, 9),)),
        "s1": SpanState("Strength", ((10, 16),)),
    },
    relations={
        "r-7f3e2a": RelationState("Reason-Drug", "5abf10acb9594b8d", "d1", "pending"),
        "r-9c1d00": RelationState("Strength-Drug", "s1", "d1"),
    },
)


def relabel(uid: str, label: str, broken: str | None = None):
    return plan(
        Command("relabel", uid=uid, label=label, broken_relations=broken),
        STATE,
        text_length=100,
        schema=SCHEMA,
    )


def test_the_refusal_names_the_relations_in_plain_words_and_no_id():
    with pytest.raises(RelationsWouldBreak) as refused:
        relabel("5abf10acb9594b8d", "ADE")
    message = str(refused.value)
    assert message == (
        "An ADE cannot be in the Reason-Drug relation it has (from a Reason to a Drug). "
        "Retype it as ADE-Drug, or drop it."
    )
    for internal in ("5abf10acb9594b8d", "r-7f3e2a", "d1", "uid"):
        assert internal not in message
    assert (refused.value.broken, refused.value.retypable) == (1, 1)


def test_drop_removes_them_and_the_reversed_change_restores_them():
    change = relabel("d1", "Reason", "drop")  # a Reason is in neither relation's tail
    after = apply_change(STATE, change)
    assert after.spans["d1"].label == "Reason" and after.relations == {}
    undone = apply_change(after, change.inverse())
    assert undone == STATE


def test_retype_where_exactly_one_type_fits_and_drop_the_rest():
    change = relabel("5abf10acb9594b8d", "ADE", "retype")
    after = apply_change(STATE, change)
    assert after.relations["r-7f3e2a"] == RelationState("ADE-Drug", "5abf10acb9594b8d", "d1", "pending")
    assert after.relations["r-9c1d00"] == STATE.relations["r-9c1d00"]
    dropped = apply_change(STATE, relabel("d1", "Strength", "retype"))  # nothing fits a Strength tail
    assert dropped.relations == {}


def test_a_relabel_that_breaks_nothing_needs_no_choice():
    after = apply_change(STATE, relabel("s1", "Strength"))  # same label: a plain (confirming) relabel
    assert after.relations == STATE.relations
