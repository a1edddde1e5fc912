"""Adjudication's view of a note: candidates, what everyone agrees on, label distributions and the
votes an export gives for each gold span."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.adjudication import (
    Mark,
    RelationMark,
    agreed_answers,
    agreed_relations,
    agreement_share,
    candidates,
    competes,
    distribution_of_votes,
    distribution_over,
    gold_votes,
    proposed_gold,
    stretch_counts,
)


def mark(annotator: str, label: str, *fragments: tuple[int, int], uid: str | None = None) -> Mark:
    return Mark(annotator, uid or f"{annotator}-{label}-{fragments[0][0]}", label, tuple(fragments))


def test_agreed_disputed_and_missed_spans():
    marks = {
        "ann": [
            mark("ann", "Drug", (0, 9)),
            mark("ann", "Strength", (10, 16)),
            mark("ann", "Route", (17, 19)),
        ],
        "bob": [mark("bob", "Drug", (0, 9)), mark("bob", "Dosage", (10, 16))],
        "cy": [mark("cy", "Drug", (0, 9)), mark("cy", "Strength", (10, 13))],
    }
    found = candidates(marks)
    assert [c.key for c in found] == ["0-9", "10-16", "17-19"]
    drug, strength, route = found
    assert drug.agreed and not strength.agreed and not route.agreed
    assert proposed_gold(found)[0].label == "Drug" and len(proposed_gold(found)) == 1
    # The disputed stretch: three versions, each by one physician; ties by fragments then label.
    assert [(v.label, v.fragments, v.annotators) for v in strength.versions] == [
        ("Strength", ((10, 13),), ("cy",)),
        ("Dosage", ((10, 16),), ("bob",)),
        ("Strength", ((10, 16),), ("ann",)),
    ]
    assert strength.label_distribution() == {"Strength": 2, "Dosage": 1}
    assert route.missing == ("bob", "cy")
    assert route.label_distribution() == {"O": 2, "Route": 1}  # two physicians saw nothing there
    assert agreement_share(found) == pytest.approx(1 / 3)


def test_a_physician_marking_twice_in_one_place_is_not_agreement():
    marks = {"ann": [mark("ann", "Drug", (0, 4), uid="a1"), mark("ann", "Drug", (0, 4), uid="a2")], "bob": []}
    [candidate] = candidates(marks)
    assert not candidate.agreed and candidate.missing == ("bob",)
    assert candidate.label_distribution() == {"Drug": 1, "O": 1}


def test_discontinuous_versions_compare_as_fragment_sets():
    marks = {
        "ann": [mark("ann", "ADE", (0, 4), (10, 14))],
        "bob": [mark("bob", "ADE", (10, 14), (0, 4))],  # the same fragments listed the other way round
    }
    [candidate] = candidates(marks)
    assert candidate.agreed and candidate.versions[0].fragments == ((0, 4), (10, 14))


def test_nobody_marked_anything():
    assert candidates({"ann": [], "bob": []}) == []
    assert agreement_share([]) is None


def test_gold_votes_take_exact_fragments_first_then_the_largest_overlap():
    marks = {
        "ann": [mark("ann", "Strength", (10, 16))],
        "bob": [mark("bob", "Dosage", (10, 13)), mark("bob", "Strength", (12, 20))],
        "cy": [],
    }
    votes = gold_votes([("g1", "Strength", ((10, 16),))], marks)
    # bob: no span with exactly [10, 16); [12, 20) overlaps it by 4 characters, [10, 13) by 3.
    assert votes == {"g1": {"ann": "Strength", "bob": "Strength", "cy": None}}


spans = st.lists(
    st.tuples(st.sampled_from(["Drug", "Dose"]), st.integers(0, 40), st.integers(1, 6)), max_size=6
)


@given(st.dictionaries(st.sampled_from(["ann", "bob", "cy"]), spans, min_size=1))
def test_candidates_partition_every_mark_into_non_overlapping_runs(raw):
    marks = {
        annotator: [mark(annotator, label, (start, start + width), uid=f"{annotator}{i}")
                    for i, (label, start, width) in enumerate(items)]
        for annotator, items in raw.items()
    }  # fmt: skip
    found = candidates(marks)
    counted = sum(len(v.annotators) for c in found for v in c.versions)
    assert counted == sum(len(items) for items in marks.values())  # every mark in exactly one version
    for first, second in zip(found, found[1:], strict=False):
        assert first.end <= second.start  # runs never overlap, so a key names one candidate
    for candidate in found:
        assert sum(candidate.label_distribution().values()) >= len(candidate.annotators)
        if candidate.agreed:  # every physician marked each version of it, once
            assert candidate.missing == ()
            assert all(sorted(v.annotators) == sorted(marks) for v in candidate.versions)


def test_nested_spans_everyone_marked_are_agreed_and_all_proposed():
    marks = {who: [mark(who, "Problem", (0, 10)), mark(who, "Anatomy", (0, 5))] for who in ("ann", "bob")}
    [candidate] = candidates(marks)
    assert candidate.agreed
    assert sorted(v.label for v in proposed_gold([candidate])) == ["Anatomy", "Problem"]
    marks["bob"] = marks["bob"][:1]  # bob did not mark the anatomy: the stretch is disputed
    assert not candidates(marks)[0].agreed


def test_versions_keep_only_the_attributes_and_code_their_physicians_share():
    code = ("RXNORM", "1191", "aspirin")
    marks = {
        "ann": [Mark("ann", "a", "Drug", ((0, 7),), (("negated", "no"), ("certainty", "high")), code)],
        "bob": [Mark("bob", "b", "Drug", ((0, 7),), (("negated", "no"), ("certainty", "low")), code)],
    }
    [version] = candidates(marks)[0].versions
    assert version.attributes == {"negated": "no"}
    assert version.attribute_disputes == ("certainty",)
    assert version.concept == code and not version.concept_disputed
    marks["bob"] = [Mark("bob", "b", "Drug", ((0, 7),), (("negated", "no"),), None)]
    [version] = candidates(marks)[0].versions
    assert version.concept is None and version.concept_disputed
    assert version.attribute_disputes == ("certainty",)  # set by one, unset by the other


@pytest.mark.parametrize(
    ("a", "b", "rivals"),
    [
        (("Drug", ((0, 7),)), ("Dose", ((0, 7),)), True),  # same text, other label
        (("Drug", ((0, 7),)), ("Drug", ((0, 4),)), True),  # a boundary dispute
        (("Problem", ((0, 10),)), ("Anatomy", ((0, 5),)), False),  # a nested span of another type
        (("Problem", ((0, 6),)), ("Anatomy", ((4, 10),)), True),  # crossing spans
        (("Drug", ((0, 4),)), ("Drug", ((5, 9),)), False),  # no overlap
        (("ADE", ((0, 4), (10, 14))), ("ADE", ((10, 14),)), True),
    ],
)
def test_which_spans_compete(a, b, rivals):
    assert competes(*a, *b) is rivals
    assert competes(*b, *a) is rivals


def test_distribution_over_a_stretch_counts_each_physician_once_per_label():
    marks = {
        "ann": [mark("ann", "Drug", (0, 4))],
        "bob": [mark("bob", "Dose", (2, 6)), mark("bob", "Dose", (3, 8), uid="b2")],
        "cy": [mark("cy", "Drug", (20, 24))],
    }
    assert distribution_over(((0, 5),), marks) == {"Dose": 1, "Drug": 1, "O": 1}
    assert distribution_of_votes({"ann": "Drug", "bob": "Dose", "cy": None, "dee": "Drug"}) == {
        "Drug": 2,
        "Dose": 1,
        "O": 1,
    }


def test_agreed_relations_and_answers():
    drug, ade = ("Drug", ((0, 4),)), ("ADE", ((10, 14),))
    relations = {
        "ann": [
            RelationMark("ann", "r1", "causes", drug, ade),
            RelationMark("ann", "r2", "treats", drug, ade),
        ],
        "bob": [RelationMark("bob", "r9", "causes", drug, ade)],
    }
    assert agreed_relations(relations, ["ann", "bob"]) == [("causes", drug, ade)]
    assert agreed_relations({}, []) == []
    answers = {
        "ann": {"smoker": "yes", "severity": 3, "evidence": ["a1"]},
        "bob": {"smoker": "yes", "severity": 2, "evidence": ["b1"]},
    }
    assert agreed_answers(answers, ["ann", "bob"], skip={"evidence"}) == {"smoker": "yes"}


@given(st.dictionaries(st.sampled_from(["ann", "bob", "cy"]), spans, min_size=1))
def test_stretch_counts_count_what_candidates_find(raw):
    """The queue's fast count equals the comparison's candidates on any marks (duplicates included)."""
    marks = {
        annotator: [mark(annotator, label, (start, start + width), uid=f"{annotator}{i}")
                    for i, (label, start, width) in enumerate(items)]
        for annotator, items in raw.items()
    }  # fmt: skip
    found = candidates(marks)
    plain = {a: [(m.label, m.fragments) for m in ms] for a, ms in marks.items()}
    assert stretch_counts(plain) == (len(found), sum(not c.agreed for c in found))


def test_stretch_counts_of_the_worked_example():
    marks = {
        "ann": [("Drug", ((0, 9),)), ("Strength", ((10, 16),)), ("Route", ((17, 19),))],
        "bob": [("Drug", ((0, 9),)), ("Dosage", ((10, 16),))],
        "cy": [("Drug", ((0, 9),)), ("Strength", ((10, 13),))],
    }
    assert stretch_counts(marks) == (3, 2)
    assert stretch_counts({"ann": [("ADE", ((0, 4), (10, 14)))], "bob": [("ADE", ((0, 4), (10, 14)))]}) == (
        1,
        0,
    )
    assert stretch_counts({"ann": [], "bob": []}) == (0, 0)
