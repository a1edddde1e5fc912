"""Edit mix: a pre-label still pending at the submit is undecided, counted apart and never as kept."""

from app.domain.edit_mix import (
    OUTCOMES,
    SpanOutcome,
    classify_edits,
    edit_event_counts,
    edit_mix,
    edit_mix_by_label,
    sum_edit_mixes,
)
from app.domain.spans import Fragment, SpanData


def span(label: str, start: int, end: int, status: str | None = None) -> SpanData:
    return SpanData(label, (Fragment(start, end),), status=status)


def pending(label: str, start: int, end: int) -> SpanData:
    return span(label, start, end, "pending")


def confirmed(label: str, start: int, end: int) -> SpanData:
    return span(label, start, end, "confirmed")


def mix(**counts: int) -> dict[str, int]:
    return {outcome: counts.get(outcome, 0) for outcome in OUTCOMES}


# The base: pre-labels, stored pending in their pre-annotation set (a base span's status plays no part).
BASE = [
    pending("Drug", 0, 7),
    pending("Strength", 8, 14),
    pending("Route", 15, 17),
    pending("Frequency", 18, 23),
    pending("Drug", 30, 39),
    pending("Strength", 40, 46),
    pending("Reason", 50, 60),
]


def test_undecided_is_an_outcome_of_its_own_between_deleted_and_added():
    assert OUTCOMES == (
        "kept", "resized", "relabelled", "resized_and_relabelled", "deleted", "undecided", "added",
    )  # fmt: skip


def test_a_pre_label_left_pending_is_undecided_and_an_accepted_one_kept():
    assert edit_mix([pending("Drug", 0, 7)], [pending("Drug", 0, 7)]) == mix(undecided=1)
    assert edit_mix([pending("Drug", 0, 7)], [confirmed("Drug", 0, 7)]) == mix(kept=1)
    # A final span of unknown status (a reader that does not say) is taken as decided, as before.
    assert edit_mix([pending("Drug", 0, 7)], [span("Drug", 0, 7)]) == mix(kept=1)


def test_a_hand_counted_submission():
    final = [
        confirmed("Drug", 0, 7),  # accepted: kept
        pending("Strength", 8, 14),  # left pending: undecided
        pending("Route", 15, 17),  # left pending: undecided
        confirmed("Frequency", 18, 25),  # resized
        pending("Drug", 30, 39),  # left pending: undecided
        # Strength 40-46 rejected: deleted
        confirmed("Reason", 50, 60),  # accepted: kept
        confirmed("ADE", 70, 75),  # the physician's own: added
    ]
    # By hand: kept 2 (Drug 0-7, Reason), undecided 3, resized 1, deleted 1, added 1 = 7 base + 1 added.
    expected = mix(kept=2, undecided=3, resized=1, deleted=1, added=1)
    assert edit_mix(BASE, final) == expected
    assert sum(expected.values()) == len(BASE) + 1
    assert edit_mix_by_label(BASE, final) == {
        "ADE": mix(added=1),
        "Drug": mix(kept=1, undecided=1),
        "Frequency": mix(resized=1),
        "Reason": mix(kept=1),
        "Route": mix(undecided=1),
        "Strength": mix(undecided=1, deleted=1),
    }
    assert sum_edit_mixes([edit_mix(BASE, final), edit_mix(BASE, final)])["undecided"] == 6


def test_submitting_every_pre_label_untouched_keeps_none():
    final = [pending(s.label, s.fragments[0].start, s.fragments[0].end) for s in BASE]
    assert edit_mix(BASE, final) == mix(undecided=len(BASE))


def test_each_undecided_outcome_names_its_own_final_span():
    # Pending spans after decided ones in the final order: the indices are the final set's, not a
    # position among the pending spans only.
    base = [pending("Drug", 0, 7), pending("Route", 15, 17), pending("Drug", 30, 39)]
    final = [
        confirmed("ADE", 70, 75),
        confirmed("Drug", 30, 39),
        pending("Route", 15, 17),
        pending("Drug", 0, 7),
    ]
    assert classify_edits(base, final) == [
        SpanOutcome("undecided", 0, 3),
        SpanOutcome("undecided", 1, 2),
        SpanOutcome("kept", 2, 1),
        SpanOutcome("added", None, 0),
    ]


def test_twins_one_accepted_one_left_pending():
    base = [pending("Drug", 0, 7), pending("Drug", 0, 7)]
    assert edit_mix(base, [pending("Drug", 0, 7), confirmed("Drug", 0, 7)]) == mix(kept=1, undecided=1)


def test_an_identical_span_the_physician_added_beside_a_pending_one_is_added():
    # The pre-label stayed pending; the physician's own copy is theirs, and never takes its place.
    final = [confirmed("Drug", 0, 7), pending("Drug", 0, 7)]
    assert edit_mix([pending("Drug", 0, 7)], final) == mix(undecided=1, added=1)


def test_reject_all_is_one_decision():
    counts = edit_event_counts(["reject_all", "accept_all", "reject", "undo"])
    assert (counts["reject_all"], counts["decisions"], counts["churn"]) == (1, 3, 1)
    assert edit_event_counts([])["reject_all"] == 0
