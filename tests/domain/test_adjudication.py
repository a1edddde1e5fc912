"""Adjudication's view of a note: candidates, what everyone agrees on, label distributions and the
votes an export gives for each gold span."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.adjudication import Mark, agreement_share, candidates, gold_votes, proposed_gold


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
        if candidate.agreed:
            assert candidate.missing == () and len(candidate.versions) == 1
