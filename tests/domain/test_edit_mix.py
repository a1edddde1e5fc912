"""Edit mix: the fate of each pre-label under a one-to-one matching, and counts of edit events."""

import pytest

from app.domain.edit_mix import (
    OUTCOMES,
    SpanOutcome,
    classify_edits,
    edit_event_counts,
    edit_mix,
    edit_mix_by_label,
    edit_mix_rows,
    sum_edit_mixes,
    sum_edit_mixes_by_label,
)
from app.domain.spans import Fragment, SpanData

# A span written compactly: (label, [(start, end), ...]).
Compact = tuple[str, list[tuple[int, int]]]


def spans(compact: list[Compact]) -> list[SpanData]:
    return [SpanData(label, tuple(Fragment(s, e) for s, e in fragments)) for label, fragments in compact]


def mix(**counts: int) -> dict[str, int]:
    return {outcome: counts.get(outcome, 0) for outcome in OUTCOMES}


# (description, base, final, expected counts)
CASES: list[tuple[str, list[Compact], list[Compact], dict[str, int]]] = [
    ("both empty", [], [], mix()),
    ("no base: every final span is added", [], [("Drug", [(0, 7)])], mix(added=1)),
    ("no final: every base span is deleted", [("Drug", [(0, 7)])], [], mix(deleted=1)),
    ("kept: same label, same fragments", [("Drug", [(0, 7)])], [("Drug", [(0, 7)])], mix(kept=1)),
    (
        "kept: fragment order does not matter",
        [("Drug", [(0, 3), (10, 12)])],
        [("Drug", [(10, 12), (0, 3)])],
        mix(kept=1),
    ),
    ("resized: same label, longer", [("Drug", [(0, 7)])], [("Drug", [(0, 10)])], mix(resized=1)),
    (
        "resized: same label, shifted but overlapping",
        [("Drug", [(0, 7)])],
        [("Drug", [(6, 12)])],
        mix(resized=1),
    ),
    (
        "resized: same characters split into other fragments",
        [("Drug", [(0, 7)])],
        [("Drug", [(0, 3), (3, 7)])],
        mix(resized=1),
    ),
    (
        "relabelled: same fragments, other label",
        [("Drug", [(0, 7)])],
        [("Form", [(0, 7)])],
        mix(relabelled=1),
    ),
    (
        "resized and relabelled: overlapping, other fragments and label",
        [("Drug", [(0, 7)])],
        [("Form", [(3, 12)])],
        mix(resized_and_relabelled=1),
    ),
    (
        "deleted and added: touching but not overlapping ranges share no character",
        [("Drug", [(0, 7)])],
        [("Drug", [(7, 12)])],
        mix(deleted=1, added=1),
    ),
    (
        "one-to-one: two final spans over one base span, one resized, one added",
        [("Drug", [(0, 10)])],
        [("Drug", [(0, 4)]), ("Drug", [(5, 10)])],
        mix(resized=1, added=1),
    ),
    (
        "one-to-one: two base spans over one final span, one resized, one deleted",
        [("Drug", [(0, 4)]), ("Drug", [(5, 10)])],
        [("Drug", [(0, 10)])],
        mix(resized=1, deleted=1),
    ),
    (
        "kept before resized: the exact final span is taken by its twin, the other resized",
        [("Drug", [(0, 10)]), ("Drug", [(0, 8)])],
        [("Drug", [(0, 10)]), ("Drug", [(2, 9)])],
        mix(kept=1, resized=1),
    ),
    (
        "relabelled before resized: same fragments under another label wins over an overlapping same label",
        [("Drug", [(0, 10)])],
        [("Drug", [(0, 9)]), ("Form", [(0, 10)])],
        mix(relabelled=1, added=1),
    ),
    (
        "resized before resized and relabelled",
        [("Drug", [(0, 10)])],
        [("Form", [(0, 9)]), ("Drug", [(2, 12)])],
        mix(resized=1, added=1),
    ),
    (
        "maximum matching: the greedy pairing would leave one base span deleted",
        # Base 0 shares 9 characters with final 0 and 1 with final 1; base 1 overlaps final 0 only.
        # Pairing the largest overlap first would delete base 1; a maximum matching pairs both.
        [("Drug", [(0, 10)]), ("Drug", [(5, 8)])],
        [("Drug", [(0, 9)]), ("Drug", [(9, 20)])],
        mix(resized=2),
    ),
    (
        "duplicate base spans: one kept, the twin deleted",
        [("Drug", [(0, 7)]), ("Drug", [(0, 7)])],
        [("Drug", [(0, 7)])],
        mix(kept=1, deleted=1),
    ),
    (
        "a mixed document",
        [
            ("Drug", [(0, 7)]),  # kept
            ("Strength", [(8, 13)]),  # resized to 8-16
            ("Route", [(20, 22)]),  # relabelled Form
            ("Frequency", [(30, 35)]),  # resized and relabelled to Duration 30-40
            ("Reason", [(50, 60)]),  # deleted
        ],
        [
            ("Drug", [(0, 7)]),
            ("Strength", [(8, 16)]),
            ("Form", [(20, 22)]),
            ("Duration", [(30, 40)]),
            ("ADE", [(70, 75)]),  # added
        ],
        mix(kept=1, resized=1, relabelled=1, resized_and_relabelled=1, deleted=1, added=1),
    ),
]


@pytest.mark.parametrize(("description", "base", "final", "expected"), CASES, ids=[c[0] for c in CASES])
def test_edit_mix(description, base, final, expected):
    assert edit_mix(spans(base), spans(final)) == expected


@pytest.mark.parametrize(("description", "base", "final", "expected"), CASES, ids=[c[0] for c in CASES])
def test_every_span_has_exactly_one_fate(description, base, final, expected):
    outcomes = classify_edits(spans(base), spans(final))
    assert sorted(o.base_index for o in outcomes if o.base_index is not None) == list(range(len(base)))
    assert sorted(o.final_index for o in outcomes if o.final_index is not None) == list(range(len(final)))


def test_which_final_span_each_base_span_went_to():
    base = spans([("Drug", [(0, 10)]), ("Drug", [(20, 25)])])
    final = spans([("Drug", [(5, 10)]), ("Drug", [(0, 4)]), ("Drug", [(20, 25)])])
    # The larger overlap (5 characters against 4) wins when both pairings are maximum.
    assert classify_edits(base, final) == [
        SpanOutcome("resized", 0, 0),
        SpanOutcome("kept", 1, 2),
        SpanOutcome("added", None, 1),
    ]


def test_edit_mix_by_label_counts_base_fates_by_base_label_and_added_by_final_label():
    base = spans([("Drug", [(0, 7)]), ("Route", [(20, 22)]), ("Drug", [(40, 45)])])
    final = spans([("Drug", [(0, 9)]), ("Form", [(20, 22)]), ("ADE", [(60, 64)])])
    assert edit_mix_by_label(base, final) == {
        "ADE": mix(added=1),
        "Drug": mix(resized=1, deleted=1),
        "Route": mix(relabelled=1),
    }


def test_edit_mix_by_label_of_empty_sets_is_empty():
    assert edit_mix_by_label([], []) == {}


def test_sums_over_documents_conditions_and_annotators():
    first = mix(kept=2, deleted=1)
    second = mix(kept=1, added=3, resized=1)
    assert sum_edit_mixes([first, second]) == mix(kept=3, deleted=1, added=3, resized=1)
    assert sum_edit_mixes([]) == mix()
    rows = edit_mix_rows(
        [(("refine_llm", "ann1"), first), (("scratch", "ann2"), second), (("refine_llm", "ann1"), second)]
    )
    assert rows == {
        ("refine_llm", "ann1"): mix(kept=3, deleted=1, added=3, resized=1),
        ("scratch", "ann2"): second,
    }
    assert list(rows) == [("refine_llm", "ann1"), ("scratch", "ann2")]
    assert sum_edit_mixes_by_label([{"Drug": first}, {"Drug": second, "ADE": mix(added=1)}]) == {
        "ADE": mix(added=1),
        "Drug": mix(kept=3, deleted=1, added=3, resized=1),
    }


# (description, kinds, expected subset of the counts)
EVENT_CASES: list[tuple[str, list[str], dict[str, int]]] = [
    (
        "nothing",
        [],
        {"add": 0, "undo": 0, "additions": 0, "deletions": 0, "modifications": 0, "decisions": 0, "churn": 0},
    ),
    ("additions are adds", ["add", "add", "delete"], {"add": 2, "additions": 2, "deletions": 1}),
    ("modifications are modify and relabel", ["modify", "relabel", "relabel"], {"modifications": 3}),
    ("decisions are accept, reject and accept_all", ["accept", "reject", "accept_all"], {"decisions": 3}),
    (
        "churn is undo and redo",
        ["undo", "undo", "redo", "add"],
        {"undo": 2, "redo": 1, "churn": 3, "additions": 1},
    ),
    (
        "time events are counted by kind but in no group",
        ["open", "activity", "activity"],
        {"activity": 2, "open": 1, "additions": 0, "churn": 0},
    ),
]


@pytest.mark.parametrize(("description", "kinds", "expected"), EVENT_CASES, ids=[c[0] for c in EVENT_CASES])
def test_edit_event_counts(description, kinds, expected):
    counts = edit_event_counts(kinds)
    assert {key: counts[key] for key in expected} == expected


def test_edit_event_counts_accepts_a_generator():
    assert edit_event_counts(kind for kind in ["add", "modify"])["modifications"] == 1
