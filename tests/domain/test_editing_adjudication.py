"""Gold's own edits as data (app/domain/editing.py, no database): the proposal that starts a gold set,
keeping a version (with its rivals dropped), ambiguity and reopening; each undoes and replays."""

import json

import pytest

from app.domain.editing import (
    Change,
    Command,
    EditRefused,
    RelationState,
    SetState,
    SpanState,
    apply_change,
    distribution_items,
    plan,
    replay,
)
from tests.domain.test_editing_annotations import SCHEMA, TEXT_LENGTH

DRUG = SpanState("Drug", ((0, 9),), attributes=(("negation", "affirmed"),))
STRENGTH = SpanState("Strength", ((10, 16),))
REASON = SpanState("Reason", ((20, 28),), attributes=(("certainty", "certain"),))
ADE = SpanState("ADE", ((20, 28),), attributes=(("certainty", "possible"),))
LINK = RelationState("Strength-Drug", "s", "d")
GOLD = SetState(
    spans={"d": DRUG, "s": STRENGTH, "a": ADE}, relations={"l": LINK}, answers={"evidence": ["a"]}
)


def planned(command: Command, state: SetState = GOLD) -> Change:
    return plan(command, state, text_length=TEXT_LENGTH, schema=SCHEMA)


def test_a_proposal_fills_an_empty_gold_set_in_one_change():
    command = Command(
        "propose",
        spans={"d": DRUG, "s": STRENGTH},
        relations={"l": LINK},
        answers={"primary_diagnosis": "diabetes"},
    )
    change = planned(command, SetState())
    gold = apply_change(SetState(), change)
    assert gold.spans == {"d": DRUG, "s": STRENGTH} and gold.relations == {"l": LINK}
    assert gold.answers == {"primary_diagnosis": "diabetes"}
    assert replay(SetState(), [Change.from_json(*change.to_json())]) == gold


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (Command("propose", spans={"x": DRUG}), "a proposal starts an empty gold set"),
        (Command("propose", spans={"x": SpanState("Nope", ((0, 2),))}), "label: 'Nope'"),
        (Command("propose", spans={"x": SpanState("Drug", ((0, 999),))}), r"fragments\[0\]"),
        (Command("propose", relations={"r": RelationState("Strength-Drug", "s", "gone")}), "not in gold"),
        (Command("propose", spans={"x": DRUG, "y": STRENGTH},
                 relations={"r": RelationState("Strength-Drug", "x", "y")}),
         "head: a Strength-Drug relation starts at Strength"),
        (Command("propose", answers={"severity": "terrible"}), "value: severity"),
    ],
)  # fmt: skip
def test_a_bad_proposal_is_refused_naming_what_is_wrong(command, message):
    state = GOLD if "empty" in message else SetState()
    with pytest.raises(EditRefused, match=message):
        planned(command, state)


def test_keeping_a_version_drops_its_rival_with_its_relations_and_evidence_and_undoes():
    relation_to_ade = RelationState("Reason-Drug", "a", "d")
    state = SetState(
        spans=GOLD.spans, relations={**GOLD.relations, "ra": relation_to_ade}, answers=GOLD.answers
    )
    change = planned(Command("adopt", uids=("a",), spans={"r": REASON}), state)
    after = apply_change(state, change)
    assert set(after.spans) == {"d", "s", "r"}
    assert after.relations == {"l": LINK}  # the ADE's relation went with it
    assert "evidence" not in after.answers  # and so did the evidence naming it
    assert apply_change(after, change.inverse()) == state
    assert apply_change(state, Change.from_json(*json.loads(json.dumps(change.to_json())))) == after


def test_keeping_a_relation_brings_its_spans():
    state = SetState(spans={"d": DRUG})
    change = planned(
        Command("adopt", spans={"s2": STRENGTH}, relations={"l2": RelationState("Strength-Drug", "s2", "d")}),
        state,
    )
    after = apply_change(state, change)
    assert after.spans["s2"] == STRENGTH and after.relations["l2"].tail == "d"


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (Command("adopt"), "nothing to keep"),
        (Command("adopt", uids=("missing",), spans={"n": REASON}), "uid: that span is no longer"),
        (Command("adopt", spans={"d": REASON}), "a span of this proposal is in gold already"),
        (Command("adopt", relations={"l": LINK}), "a relation of this proposal is in gold already"),
        (Command("adopt", relations={"x": LINK}), "links these spans the same way already"),
        (
            Command("adopt", uids=("d",), relations={"x": RelationState("Strength-Drug", "s", "d")}),
            "not in gold",
        ),
    ],
)
def test_a_bad_keep_is_refused(command, message):
    with pytest.raises(EditRefused, match=message):
        planned(command)


def test_ambiguity_is_kept_on_the_span_cleared_and_stored_in_canonical_order():
    distribution = distribution_items({"O": 1, "Reason": 1, "ADE": 2})
    assert distribution == (("ADE", 2), ("O", 1), ("Reason", 1))
    change = planned(Command("ambiguous", uid="a", distribution=distribution))
    after = apply_change(GOLD, change)
    assert after.spans["a"].distribution == distribution
    stored = Change.from_json(*json.loads(json.dumps(change.to_json())))
    assert apply_change(GOLD, stored) == after
    assert change.to_json()[1]["spans"]["a"]["distribution"] == {"ADE": 2, "O": 1, "Reason": 1}
    cleared = apply_change(after, planned(Command("ambiguous", uid="a", distribution=None), after))
    assert cleared.spans["a"].distribution is None and cleared == GOLD
    with pytest.raises(EditRefused, match="needs the labels"):
        planned(Command("ambiguous", uid="a", distribution=()))
    with pytest.raises(EditRefused, match="that span is no longer"):
        planned(Command("ambiguous", uid="nope", distribution=distribution))


def test_reopen_only_opens_a_submitted_set_and_gold_edits_need_it_open():
    answered = apply_change(GOLD, planned(Command("answer", key="primary_diagnosis", value="diabetes")))
    submitted = apply_change(answered, planned(Command("submit"), answered))
    with pytest.raises(EditRefused, match="reopen it to edit"):
        planned(Command("adopt", spans={"n": REASON}), submitted)
    reopened = apply_change(submitted, planned(Command("reopen"), submitted))
    assert reopened.status == "open" and reopened == answered
    with pytest.raises(EditRefused, match="not submitted"):
        planned(Command("reopen"))
