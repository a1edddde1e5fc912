"""Relations, span attributes, concept codes and document answers as edits: validated, undoable,
stored as JSON and replayed (app/domain/editing.py, no database)."""

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.editing import (
    Change,
    Command,
    EditRefused,
    RelationState,
    SetState,
    SpanState,
    StateMismatch,
    apply_change,
    plan,
    replay,
    starting_state,
)
from app.domain.label_schema import parse_label_schema

SEVERITIES = ["mild", "moderate", "severe"]
FINDINGS = ["fever", "rash", "nausea"]
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
            {"name": "Reason-Drug", "head_types": ["Reason", "ADE"], "tail_types": ["Drug"]},
        ],
        "span_attributes": [
            {"name": "negation", "values": ["affirmed", "negated"]},
            {"name": "certainty", "values": ["certain", "possible"], "applies_to": ["Reason", "ADE"]},
        ],
        "document_questions": [
            {"key": "primary_diagnosis", "prompt": "Primary diagnosis", "kind": "text", "required": True},
            {"key": "severity", "prompt": "Severity", "kind": "choice", "choices": SEVERITIES},
            {"key": "findings", "prompt": "Findings", "kind": "multi_choice", "choices": FINDINGS},
            {"key": "confidence", "prompt": "Confidence", "kind": "scale", "scale_min": 1, "scale_max": 5},
            {"key": "evidence", "prompt": "Supporting evidence", "kind": "evidence"},
            {"key": "alternatives", "prompt": "Alternatives considered", "kind": "evidence"},
        ],
    }
)  # fmt: skip
TEXT_LENGTH = 100

D1 = SpanState("Drug", ((0, 9),))
S1 = SpanState("Strength", ((10, 16),))
R1 = SpanState("Reason", ((20, 28),), "pending", (("certainty", "possible"),), confidence=0.6)
D2 = SpanState("Drug", ((30, 37),), "pending", confidence=0.7)
A1 = SpanState("ADE", ((40, 44),), attributes=(("certainty", "possible"), ("negation", "negated")))
REL1 = RelationState("Strength-Drug", "s1", "d1")
REL2 = RelationState("Reason-Drug", "r1", "d2", "pending", confidence=0.5)
STATE = SetState(
    spans={"d1": D1, "s1": S1, "r1": R1, "d2": D2, "a1": A1},
    relations={"rel1": REL1, "rel2": REL2},
    answers={"evidence": ["r1", "d1"], "alternatives": ["d1"], "confidence": 3},
)


def planned(command: Command, state: SetState = STATE, **options) -> Change:
    return plan(command, state, text_length=TEXT_LENGTH, schema=SCHEMA, **options)


def relation_add(uid, label, head, tail) -> Command:
    return Command("relation_add", uid=uid, label=label, head=head, tail=tail)


def attribute_set(uid, attribute, value) -> Command:
    return Command("attribute_set", uid=uid, attribute=attribute, value=value)


def answer(key, value) -> Command:
    return Command("answer", key=key, value=value)


def relations_change(uid, before, after) -> Change:
    return Change(before_relations={uid: before}, after_relations={uid: after})


def span_change(uid, before, after) -> Change:
    return Change({uid: before}, {uid: after})


def answer_change(key, before, after) -> Change:
    return Change(before_answers={key: before}, after_answers={key: after})


# (command, the change it makes to STATE)
ACCEPTED: list[tuple[str, Command, Change]] = [
    (
        "relation_add",
        relation_add("rel3", "Reason-Drug", "r1", "d1"),
        relations_change("rel3", None, RelationState("Reason-Drug", "r1", "d1")),
    ),
    (
        "relation_add-second-head-type",
        relation_add("rel3", "Reason-Drug", "a1", "d1"),
        relations_change("rel3", None, RelationState("Reason-Drug", "a1", "d1")),
    ),
    (
        "relation_add-same-type-other-tail",
        relation_add("rel3", "Strength-Drug", "s1", "d2"),
        relations_change("rel3", None, RelationState("Strength-Drug", "s1", "d2")),
    ),
    ("relation_delete", Command("relation_delete", uid="rel1"), relations_change("rel1", REL1, None)),
    ("relation_delete-pending", Command("relation_delete", uid="rel2"), relations_change("rel2", REL2, None)),
    ("relation_reject", Command("relation_reject", uid="rel2"), relations_change("rel2", REL2, None)),
    (
        "relation_accept-keeps-confidence",
        Command("relation_accept", uid="rel2"),
        relations_change("rel2", REL2, RelationState("Reason-Drug", "r1", "d2", "confirmed", 0.5)),
    ),
    (
        "attribute_set",
        attribute_set("d1", "negation", "negated"),
        span_change("d1", D1, SpanState("Drug", ((0, 9),), attributes=(("negation", "negated"),))),
    ),
    (
        "attribute_set-confirms-a-pre-label",
        attribute_set("r1", "certainty", "certain"),
        span_change(
            "r1", R1, SpanState("Reason", ((20, 28),), "confirmed", (("certainty", "certain"),), 0.6)
        ),
    ),
    (
        "attribute_set-kept-sorted",
        attribute_set("r1", "negation", "affirmed"),
        span_change(
            "r1",
            R1,
            SpanState(
                "Reason", ((20, 28),), "confirmed", (("certainty", "possible"), ("negation", "affirmed")), 0.6
            ),
        ),
    ),
    (
        "attribute_set-None-clears",
        attribute_set("r1", "certainty", None),
        span_change("r1", R1, SpanState("Reason", ((20, 28),), "confirmed", (), 0.6)),
    ),
    (
        "concept_set",
        Command("concept_set", uid="d1", concept=("RxNorm", "6809", "Metformin")),
        span_change("d1", D1, SpanState("Drug", ((0, 9),), concept=("RxNorm", "6809", "Metformin"))),
    ),
    (
        "concept_set-None-confirms",
        Command("concept_set", uid="d2", concept=None),
        span_change("d2", D2, SpanState("Drug", ((30, 37),), "confirmed", confidence=0.7)),
    ),
    ("answer-text", answer("primary_diagnosis", "Sepsis"),
     answer_change("primary_diagnosis", None, "Sepsis")),
    ("answer-blank-text-is-none", answer("primary_diagnosis", "  \n"),
     answer_change("primary_diagnosis", None, None)),
    ("answer-choice", answer("severity", "mild"), answer_change("severity", None, "mild")),
    (
        "answer-multi_choice-in-schema-order-once",
        answer("findings", ["nausea", "fever", "nausea"]),
        answer_change("findings", None, ["fever", "nausea"]),
    ),
    ("answer-multi_choice-empty-is-none", answer("findings", []), answer_change("findings", None, None)),
    ("answer-scale", answer("confidence", 5), answer_change("confidence", 3, 5)),
    ("answer-scale-minimum", answer("confidence", 1), answer_change("confidence", 3, 1)),
    ("answer-evidence-once", answer("evidence", ["d2", "a1", "d2"]),
     answer_change("evidence", ["r1", "d1"], ["d2", "a1"])),
    ("answer-evidence-empty-is-none", answer("evidence", []), answer_change("evidence", ["r1", "d1"], None)),
    ("answer-None-clears", answer("confidence", None), answer_change("confidence", 3, None)),
]  # fmt: skip


@pytest.mark.parametrize(("command", "expected"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_accepted_commands_make_exactly_their_change(command, expected):
    change = planned(command)
    assert change == expected
    assert apply_change(apply_change(STATE, change), change.inverse()) == STATE


# (command, the start of the refusal: the field it names, and words of the reason)
REFUSED: list[tuple[Command, str]] = [
    (relation_add(None, "Strength-Drug", "s1", "d2"), "uid: a new relation needs"),
    (relation_add("rel1", "Strength-Drug", "s1", "d2"), "uid: a relation with the editor's identifier"),
    (relation_add("rel3", "Strength-Drug", "nope", "d2"), "head: the head span is not in the note"),
    (relation_add("rel3", "Strength-Drug", None, "d2"), "head: the head span is not in the note"),
    (relation_add("rel3", "Strength-Drug", "s1", "nope"), "tail: the tail span is not in the note"),
    (relation_add("rel3", "Reason-Drug", "d1", "d1"), "tail: a relation links two different spans"),
    (relation_add("rel3", "Treats", "r1", "d1"), "label: 'Treats' is not a relation type"),
    (relation_add("rel3", None, "r1", "d1"), "label: '' is not a relation type"),
    (relation_add("rel3", "Reason-Drug", "s1", "d1"), "head: a Reason-Drug relation starts at Reason or ADE"),
    (relation_add("rel3", "Strength-Drug", "d1", "s1"), "head: a Strength-Drug relation starts at Strength"),
    (relation_add("rel3", "Strength-Drug", "s1", "r1"), "tail: a Strength-Drug relation ends at Drug"),
    (relation_add("rel3", "Strength-Drug", "s1", "d1"), "uid: a Strength-Drug relation links these spans"),
    (Command("relation_delete", uid="nope"), "uid: that relation is no longer in the note"),
    (Command("relation_delete"), "uid: that relation is no longer in the note"),
    (Command("relation_accept", uid="nope"), "uid: that relation is no longer in the note"),
    (Command("relation_reject", uid="nope"), "uid: that relation is no longer in the note"),
    (Command("relation_reject", uid="rel1"), "uid: that relation is not an undecided pre-label"),
    (Command("relation_delete", uid="d1"), "uid: that relation is no"),  # a span uid is no relation
    (attribute_set("nope", "negation", "negated"), "uid: that span is no longer"),
    (attribute_set("d1", "severity", "mild"), "attribute: 'severity' is not a span attribute"),
    (attribute_set("d1", None, "negated"), "attribute: 'None' is not a span attribute"),
    (attribute_set("d1", "certainty", "certain"), "attribute: certainty does not apply to Drug"),
    (attribute_set("d1", "negation", "maybe"), "value: negation is one of affirmed, negated"),
    (attribute_set("d1", "negation", ""), "value: negation is one of"),
    (attribute_set("d1", "negation", ["negated"]), "value: negation is one of"),
    (Command("concept_set", uid="nope", concept=("RxNorm", "6809", "Metformin")), "uid: that span is no"),
    (answer("unknown", "x"), "key: 'unknown' is not a question"),
    (answer(None, "x"), "key: '' is not a question"),
    (answer("primary_diagnosis", "x" * 5001), "value: primary_diagnosis: must be text of at most 5000"),
    (answer("primary_diagnosis", 42), "value: primary_diagnosis: must be text of at most 5000"),
    (answer("primary_diagnosis", ["Sepsis"]), "value: primary_diagnosis: must be text of at most 5000"),
    (answer("severity", "extreme"), 'value: severity: "extreme" is not one of mild, moderate, severe'),
    (answer("severity", ["mild"]), 'value: severity: ["mild"] is not one of'),
    (answer("severity", ""), 'value: severity: "" is not one of'),
    (answer("findings", "fever"), "value: findings: must be a list of choices among"),
    (answer("findings", ["fever", "cough"]), 'value: findings: "cough" is not one of'),
    (answer("confidence", 0), "value: confidence: 0 is outside the scale 1 to 5"),
    (answer("confidence", 6), "value: confidence: 6 is outside the scale 1 to 5"),
    (answer("confidence", True), "value: confidence: must be a whole number from 1 to 5"),
    (answer("confidence", 3.0), "value: confidence: must be a whole number from 1 to 5"),
    (answer("confidence", "3"), "value: confidence: must be a whole number from 1 to 5"),
    (answer("evidence", ["nope"]), "value: evidence: a span given as evidence is no"),
    (answer("evidence", ["d1", "nope"]), "value: evidence: a span given as evidence is no"),
    # evidence is spans, not relations
    (answer("evidence", ["rel1"]), "value: evidence: a span given as evidence is no"),
    (answer("evidence", "d1"), "value: evidence: must be a list of span ids"),
    (answer("evidence", [1]), "value: evidence: must be a list of span ids"),
    (Command("relabel", uid="s1", label="Drug"), "A Drug cannot be in the Strength-Drug relation it has"),
    (Command("relabel", uid="d1", label="Reason"), "A Reason cannot be in the Strength-Drug relation"),
    (Command("relabel", uid="r1", label="Drug"), "A Drug cannot be in the Reason-Drug relation"),
    (Command("submit"), "answers: answer primary_diagnosis before submitting"),
]  # fmt: skip


@pytest.mark.parametrize(("command", "message"), REFUSED, ids=[m.split(" ")[0] + c.kind for c, m in REFUSED])
def test_refused_commands_name_the_field(command, message):
    with pytest.raises(EditRefused) as refused:
        planned(command)
    assert str(refused.value).startswith(message)
    # No internal id in what the physician reads (issue 19): the editor's uids stay the editor's.
    words = set(re.findall(r"[\w-]+", str(refused.value)))
    assert not words & {"rel1", "rel2", "rel3", "s1", "d1", "d2", "r1", "nope"}, str(refused.value)


NEW_COMMANDS = [
    relation_add("rel3", "Reason-Drug", "r1", "d1"),
    Command("relation_delete", uid="rel1"),
    Command("relation_accept", uid="rel2"),
    Command("relation_reject", uid="rel2"),
    attribute_set("d1", "negation", "negated"),
    Command("concept_set", uid="d1", concept=("RxNorm", "6809", "Metformin")),
    answer("severity", "mild"),
]


@pytest.mark.parametrize("command", NEW_COMMANDS, ids=lambda c: c.kind)
def test_a_submitted_note_takes_no_new_annotation(command):
    submitted = SetState(spans=STATE.spans, relations=STATE.relations, status="submitted")
    with pytest.raises(EditRefused, match="^status: the note is submitted"):
        planned(command, submitted)


# --- relabel, accept_all and submit with relations and answers --------------------------------------


# (uid, new label, the attributes it keeps)
RELABELS = [
    ("a1", "Reason", (("certainty", "possible"), ("negation", "negated"))),  # certainty applies to both
    ("a1", "Drug", (("negation", "negated"),)),  # certainty does not apply to Drug: it goes
    ("d2", "Drug", ()),  # relabel to the same type inside a relation that still fits
]


@pytest.mark.parametrize(("uid", "label", "attributes"), RELABELS)
def test_relabel_keeps_the_attributes_that_apply_to_the_new_type(uid, label, attributes):
    change = planned(Command("relabel", uid=uid, label=label))
    after = apply_change(STATE, change).spans[uid]
    assert (after.label, after.attributes, after.status) == (label, attributes, "confirmed")
    assert apply_change(apply_change(STATE, change), change.inverse()) == STATE  # undo brings them back


def test_relabel_within_the_allowed_head_types_keeps_the_relation():
    state = SetState(spans={**STATE.spans}, relations={"rel": RelationState("Reason-Drug", "a1", "d1")})
    change = planned(Command("relabel", uid="a1", label="Reason"), state)
    assert apply_change(state, change).relations == state.relations


@pytest.mark.parametrize(
    ("uids", "spans_confirmed", "relations_confirmed"),
    [
        (None, {"r1", "d2"}, {"rel2"}),
        (("r1", "rel2"), {"r1"}, {"rel2"}),
        (("r1", "d2"), {"r1", "d2"}, set()),
        ((), set(), set()),
    ],
)
def test_accept_all_accepts_pending_relations_too_restricted_to_what_was_shown(
    uids, spans_confirmed, relations_confirmed
):
    change = planned(Command("accept_all", uids=uids))
    after = apply_change(STATE, change)
    assert {u for u, s in after.spans.items() if s.status == "confirmed"} - {
        "d1",
        "s1",
        "a1",
    } == spans_confirmed
    assert {u for u, r in after.relations.items() if r.status == "confirmed"} - {
        "rel1"
    } == relations_confirmed
    assert after.relations["rel2"].confidence == 0.5
    assert apply_change(after, change.inverse()) == STATE


def test_submit_counts_pending_relations_as_undecided_and_needs_required_answers():
    state = SetState(
        spans={"d1": D1, "s1": S1},
        relations={"rel": RelationState("Strength-Drug", "s1", "d1", "pending")},
        answers={"primary_diagnosis": "Sepsis"},
    )
    with pytest.raises(EditRefused, match="^status: 1 pre-labels are undecided"):
        planned(Command("submit"), state, require_decided=True)
    assert planned(Command("submit"), state).after_set == {"status": "submitted"}  # not required
    decided = apply_change(state, planned(Command("relation_accept", uid="rel"), state))
    assert planned(Command("submit"), decided, require_decided=True).after_set == {"status": "submitted"}
    unanswered = SetState(spans=decided.spans, relations=decided.relations)
    with pytest.raises(EditRefused, match="^answers: answer primary_diagnosis"):
        planned(Command("submit"), unanswered)
    cleared = apply_change(state, planned(answer("primary_diagnosis", " "), state))
    with pytest.raises(EditRefused, match="^answers: answer primary_diagnosis"):  # a blank answer is none
        planned(Command("submit"), cleared)


# --- what goes with a span: its relations and its place in evidence answers -------------------------


# (command, relations that go, evidence answers after)
CASCADES = [
    (Command("delete", uid="d1"), {"rel1"}, {"evidence": ["r1"], "alternatives": None}),
    (Command("reject", uid="r1"), {"rel2"}, {"evidence": ["d1"], "alternatives": ["d1"]}),
    (Command("delete", uid="d2"), {"rel2"}, {"evidence": ["r1", "d1"], "alternatives": ["d1"]}),
    (Command("delete", uid="s1"), {"rel1"}, {"evidence": ["r1", "d1"], "alternatives": ["d1"]}),
    (Command("delete", uid="a1"), set(), {"evidence": ["r1", "d1"], "alternatives": ["d1"]}),
]


@pytest.mark.parametrize(("command", "gone", "evidence"), CASCADES, ids=lambda v: getattr(v, "uid", None))
def test_removing_a_span_removes_its_relations_and_evidence_in_one_undoable_change(command, gone, evidence):
    change = planned(command)
    after = apply_change(STATE, change)
    assert command.uid not in after.spans
    assert set(STATE.relations) - set(after.relations) == gone
    assert all(command.uid not in (r.head, r.tail) for r in after.relations.values())
    assert {k: after.answers.get(k) for k in ("evidence", "alternatives")} == evidence
    assert after.answers["confidence"] == 3  # other answers untouched
    assert set(change.before_relations) == gone  # the change holds what it removed, so undo has it
    assert apply_change(after, change.inverse()) == STATE


def test_removing_two_spans_of_one_relation_in_turn_and_undoing_in_reverse():
    first = planned(Command("delete", uid="s1"))
    middle = apply_change(STATE, first)
    second = planned(Command("delete", uid="d1"), middle)
    end = apply_change(middle, second)
    assert end.relations == {"rel2": REL2} and end.answers["evidence"] == ["r1"]
    assert replay(end, [second.inverse(), first.inverse()]) == STATE


def test_removing_a_span_leaves_choice_answers_alone_even_if_a_choice_looks_like_its_uid():
    state = SetState(spans={"rash": D1}, answers={"findings": ["fever", "rash"], "evidence": ["rash"]})
    after = apply_change(state, planned(Command("delete", uid="rash"), state))
    assert after.answers == {"findings": ["fever", "rash"]}


# --- every kind undoes exactly --------------------------------------------------------------------


EVERY_KIND = [
    Command("add", uid="n1", label="Drug", fragments=((50, 55),)),
    Command("delete", uid="d1"),
    Command("reject", uid="r1"),
    Command("accept", uid="d2"),
    Command("accept_all"),
    Command("relabel", uid="a1", label="Drug"),
    Command("modify", uid="r1", fragments=((20, 25), (26, 28))),
    Command("note", text="check the dose"),
    Command("skip", text="wrong patient"),
    relation_add("rel3", "Reason-Drug", "a1", "d2"),
    Command("relation_delete", uid="rel1"),
    Command("relation_accept", uid="rel2"),
    Command("relation_reject", uid="rel2"),
    attribute_set("a1", "certainty", "certain"),
    attribute_set("a1", "negation", None),
    Command("concept_set", uid="d1", concept=("RxNorm", "6809", "Metformin")),
    Command("concept_set", uid="d2", concept=None),
    answer("primary_diagnosis", "Sepsis"),
    answer("severity", "severe"),
    answer("findings", ["rash"]),
    answer("confidence", 4),
    answer("evidence", ["a1"]),
    answer("evidence", None),
]
ANSWERED = SetState(
    spans=STATE.spans, relations=STATE.relations, answers={**STATE.answers, "primary_diagnosis": "x"}
)


@pytest.mark.parametrize("command", [*EVERY_KIND, Command("submit")], ids=lambda c: c.kind)
def test_every_kind_of_change_undoes_exactly_and_survives_json(command):
    change = planned(command, ANSWERED)
    assert not change.is_empty
    after = apply_change(ANSWERED, change)
    assert apply_change(after, change.inverse()) == ANSWERED
    stored = Change.from_json(*json.loads(json.dumps(change.to_json())))
    assert stored == change
    assert apply_change(ANSWERED, stored) == after


def test_an_undo_on_a_changed_set_is_a_state_mismatch():
    accept = planned(Command("relation_accept", uid="rel2"))
    after = apply_change(STATE, accept)
    rejected = apply_change(after, planned(Command("relation_delete", uid="rel2"), after))
    with pytest.raises(StateMismatch, match="^relation: a relation has changed"):
        apply_change(rejected, accept.inverse())
    answered = apply_change(STATE, planned(answer("confidence", 4)))
    again = apply_change(answered, planned(answer("confidence", 5), answered))
    with pytest.raises(StateMismatch, match="^the answer to confidence"):
        apply_change(again, planned(answer("confidence", 4)).inverse())


# --- the edit log as JSON ---------------------------------------------------------------------------


def test_change_to_json_and_back_with_relations_and_answers():
    change = Change(
        before_spans={"d1": D1},
        after_spans={"d1": None},
        before_relations={"rel1": REL1, "rel2": REL2},
        after_relations={"rel1": None, "rel2": None},
        before_answers={"evidence": ["r1", "d1"], "confidence": None},
        after_answers={"evidence": ["r1"], "confidence": 2},
    )
    before, after = change.to_json()
    assert before["relations"] == {
        "rel1": {"type": "Strength-Drug", "head": "s1", "tail": "d1", "status": "confirmed"},
        "rel2": {"type": "Reason-Drug", "head": "r1", "tail": "d2", "status": "pending", "confidence": 0.5},
    }
    assert (after["relations"], before["answers"], after["answers"]) == (
        {"rel1": None, "rel2": None},
        {"evidence": ["r1", "d1"], "confidence": None},
        {"evidence": ["r1"], "confidence": 2},
    )
    assert Change.from_json(*json.loads(json.dumps([before, after]))) == change
    concept = SpanState("Drug", ((0, 9),), concept=("RxNorm", "6809", "Metformin"))
    [stored] = Change.from_json(
        *json.loads(json.dumps(span_change("d1", D1, concept).to_json()))
    ).after_spans.values()
    assert stored == concept


def test_a_change_of_spans_only_is_stored_in_the_old_shape():
    before, after = span_change("u1", None, D1).to_json()
    assert before == {"spans": {"u1": None}}
    assert set(after) == {"spans"}


# (before, after) of events stored before relations, answers, concepts and statuses were logged
OLD_EVENTS = [
    (
        {"spans": {"u1": None}},
        {"spans": {"u1": {"label": "Drug", "fragments": [[0, 9]], "status": "confirmed", "attributes": {}}}},
    ),
    ({"spans": {"u2": None}}, {"spans": {"u2": {"label": "Strength", "fragments": [[10, 16]]}}}),
    (
        {"spans": {"u1": {"label": "Drug", "fragments": [[0, 9]], "status": "confirmed", "attributes": {}}}},
        {"spans": {"u1": {"label": "Drug", "fragments": [[0, 9]], "attributes": {"negation": "negated"}}}},
    ),
    ({"spans": {}, "set": {"note": ""}}, {"spans": {}, "set": {"note": "old note"}}),
    (None, None),  # a time event's columns
]


def test_old_stored_events_without_relations_or_answers_still_load_and_replay():
    changes = [Change.from_json(before, after) for before, after in OLD_EVENTS]
    assert all(not c.before_relations and not c.after_answers for c in changes)
    assert changes[-1].is_empty
    state = replay(SetState(), changes)
    assert state == SetState(
        spans={
            "u1": SpanState("Drug", ((0, 9),), attributes=(("negation", "negated"),)),
            "u2": SpanState("Strength", ((10, 16),)),
        },
        note="old note",
    )
    # and the new commands work on a set rebuilt from an old log
    linked = apply_change(state, planned(relation_add("rel", "Strength-Drug", "u2", "u1"), state))
    deleted = apply_change(linked, planned(Command("delete", uid="u1"), linked))
    assert deleted.relations == {} and set(deleted.spans) == {"u2"}


# --- property: any sequence of edits replays, also from its JSON ----------------------------------

LABELS = ["Drug", "Strength", "Reason", "ADE"]
RELATION_TYPES = ["Strength-Drug", "Reason-Drug"]
ATTRIBUTE_VALUES = {"negation": ["affirmed", "negated", None], "certainty": ["certain", "possible", None]}
KEYS = ["primary_diagnosis", "severity", "findings", "confidence", "evidence", "alternatives"]
BASE = starting_state({"d1": D1, "s1": S1, "r1": R1, "d2": D2, "a1": A1}, {"rel1": REL1, "rel2": REL2})

index = st.integers(0, 30)
operation = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(LABELS), st.integers(0, TEXT_LENGTH - 1), st.integers(1, 8)),
    st.tuples(st.sampled_from(["delete", "reject", "accept"]), index),
    st.tuples(st.just("relabel"), index, st.sampled_from(LABELS)),
    st.tuples(st.just("relation_add"), st.sampled_from(RELATION_TYPES), index, index),
    st.tuples(st.sampled_from(["relation_delete", "relation_accept", "relation_reject"]), index),
    st.tuples(st.just("attribute_set"), index, st.sampled_from(sorted(ATTRIBUTE_VALUES)), st.integers(0, 2)),
    st.tuples(st.just("concept_set"), index, st.sampled_from([None, ("RxNorm", "6809", "Metformin")])),
    st.tuples(st.just("answer"), st.sampled_from(KEYS), st.integers(0, 6), st.lists(index, max_size=3)),
    st.tuples(st.just("accept_all"), st.lists(index, max_size=4) | st.none()),
    st.tuples(st.just("undo"), index),
)


def _pick(uids: list[str], i: int) -> str:
    return uids[i % len(uids)] if uids else "none"


def _command(op: tuple, state: SetState, serial: int) -> Command:
    kind = op[0]
    spans, relations = sorted(state.spans), sorted(state.relations)
    if kind == "add":
        start = op[2]
        return Command(
            "add", uid=f"n{serial}", label=op[1], fragments=((start, min(start + op[3], TEXT_LENGTH)),)
        )
    if kind in ("delete", "reject", "accept"):
        return Command(kind, uid=_pick(spans, op[1]))
    if kind == "relabel":
        return Command("relabel", uid=_pick(spans, op[1]), label=op[2])
    if kind == "relation_add":  # between spans of the allowed types, mostly
        relation_type = SCHEMA.relation_type(op[1])
        heads = [u for u in spans if state.spans[u].label in relation_type.head_types]
        tails = [u for u in spans if state.spans[u].label in relation_type.tail_types]
        return relation_add(f"rel-n{serial}", op[1], _pick(heads, op[2]), _pick(tails, op[3]))
    if kind in ("relation_delete", "relation_accept", "relation_reject"):
        return Command(kind, uid=_pick(relations, op[1]))
    if kind == "attribute_set":
        return attribute_set(_pick(spans, op[1]), op[2], ATTRIBUTE_VALUES[op[2]][op[3]])
    if kind == "concept_set":
        return Command("concept_set", uid=_pick(spans, op[1]), concept=op[2])
    if kind == "accept_all":
        shown = None if op[1] is None else tuple(_pick(spans + relations, i) for i in op[1])
        return Command("accept_all", uids=shown)
    key, number, picks = op[1], op[2], op[3]  # answer
    question = SCHEMA.question(key)
    kind = question.kind.value
    if kind == "text":
        value = f"diagnosis {number}" if number else ""
    elif kind == "choice":
        value = question.choices[number % len(question.choices)]
    elif kind == "multi_choice":
        value = [question.choices[i % len(question.choices)] for i in picks]
    elif kind == "scale":
        value = number  # 0 and 6 are out of range: refused, and skipped
    else:
        value = [_pick(spans, i) for i in picks]
    if number == 6 and kind != "scale":
        value = None  # clears the answer
    return answer(key, value)


def _dangling(state: SetState) -> bool:
    """Whether a relation or an evidence answer names a span the set does not have."""
    named = {u for r in state.relations.values() for u in (r.head, r.tail)}
    for key in ("evidence", "alternatives"):
        named.update(state.answers.get(key) or ())
    return not named <= set(state.spans)


@settings(max_examples=200, deadline=None)
@given(st.lists(operation, min_size=1, max_size=30))
def test_any_sequence_of_edits_equals_its_replay_and_its_replay_from_json(operations):
    state, applied = BASE, []
    for serial, op in enumerate(operations):
        if op[0] == "undo":
            if not applied:
                continue
            change = applied[op[1] % len(applied)].inverse()
        else:
            try:
                change = planned(_command(op, state, serial), state)
            except EditRefused:
                continue
        try:
            after = apply_change(state, change)
        except StateMismatch:  # an undo of an edit whose spans changed since: refused, as the server does
            assert op[0] == "undo"
            continue
        if op[0] == "undo" and _dangling(after):
            continue  # evidence naming a span the undo removes: the server refuses it (check_evidence)
        assert not _dangling(after)  # relations and evidence only ever name spans of the set
        assert apply_change(after, change.inverse()) == state
        state = after
        applied.append(change)
    assert replay(BASE, applied) == state
    stored = [Change.from_json(*json.loads(json.dumps(c.to_json()))) for c in applied]
    assert stored == applied
    assert replay(BASE, stored) == state


def test_undoing_an_add_leaves_no_relation_to_a_missing_span():
    add = planned(Command("add", uid="n1", label="Reason", fragments=((50, 55),)))
    added = apply_change(STATE, add)
    linked = apply_change(added, planned(relation_add("rel3", "Reason-Drug", "n1", "d1"), added))
    cited = apply_change(linked, planned(answer("evidence", ["n1"]), linked))
    try:
        undone = apply_change(cited, add.inverse())
    except StateMismatch:
        return  # refusing the undo is a fix too
    assert not _dangling(undone)
