"""Active time: Σ min(gap, idle threshold) over consecutive events, leaving out gaps that start hidden."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.active_time import SessionTime, TimeEvent, session_times, total_active_seconds

# Events are (page session, kind, client monotonic time in seconds); seconds read more easily than ms.
Compact = tuple[str, str, float]


def events_of(compact: list[Compact]) -> list[TimeEvent]:
    return [TimeEvent(page_session, kind, seconds * 1000) for page_session, kind, seconds in compact]


IN_ORDER_WITH_HIDDEN: list[Compact] = [
    ("p", "open", 0),
    ("p", "activity", 5),
    ("p", "hidden", 10),
    ("p", "visible", 500),
    ("p", "add", 520),
    ("p", "close", 530),
]

# (description, events, idle threshold in seconds, expected active seconds, expected wall seconds)
DATA: list[tuple[str, list[Compact], float, float, float]] = [
    (
        "gaps below the threshold count in full",
        [("p", "open", 0), ("p", "activity", 10), ("p", "activity", 30), ("p", "close", 45)],
        60,
        45,
        45,
    ),
    (
        "a gap above the threshold counts as the threshold",
        [("p", "open", 0), ("p", "activity", 10), ("p", "add", 200)],
        60,
        10 + 60,
        200,
    ),
    (
        "a smaller threshold cuts every longer gap",
        [("p", "open", 0), ("p", "activity", 10), ("p", "activity", 30), ("p", "close", 45)],
        5,
        5 + 5 + 5,
        45,
    ),
    ("a gap exactly at the threshold counts in full", [("p", "open", 0), ("p", "activity", 60)], 60, 60, 60),
    (
        "a hidden interval is left out; the interval that starts at visible counts",
        IN_ORDER_WITH_HIDDEN,
        60,
        5 + 5 + 20 + 10,
        530,
    ),
    (
        "events while hidden do not make the page visible",
        [
            ("p", "open", 0),
            ("p", "hidden", 10),
            ("p", "activity", 20),
            ("p", "visible", 30),
            ("p", "close", 40),
        ],
        60,
        10 + 10,
        40,
    ),
    (
        "hidden at the end: nothing after the hidden counts",
        [("p", "open", 0), ("p", "activity", 20), ("p", "hidden", 30), ("p", "close", 3000)],
        60,
        30,
        3000,
    ),
    (
        "visible without a hidden before it changes nothing",
        [("p", "open", 0), ("p", "visible", 10), ("p", "close", 20)],
        60,
        20,
        20,
    ),
    (
        "several page sessions are summed",
        [
            ("p1", "open", 0),
            ("p1", "close", 30),
            ("p2", "open", 0),
            ("p2", "activity", 100),
            ("p2", "close", 110),
        ],
        60,
        30 + 60 + 10,
        30 + 110,
    ),
    (
        "interleaved page sessions are kept apart",
        [("p1", "open", 0), ("p2", "open", 5), ("p1", "close", 10), ("p2", "close", 15)],
        60,
        10 + 10,
        10 + 10,
    ),
    (
        "events arriving out of order give the same result as in order",
        [IN_ORDER_WITH_HIDDEN[i] for i in (5, 2, 0, 4, 3, 1)],
        60,
        5 + 5 + 20 + 10,
        530,
    ),
    ("a single event has no interval", [("p", "open", 12)], 60, 0, 0),
    ("no events, no time", [], 60, 0, 0),
    (
        "an edit in the middle counts as an event and splits an idle gap",
        [("p", "open", 0), ("p", "relabel", 50), ("p", "close", 100)],
        60,
        50 + 50,
        100,
    ),
    (
        "a duplicate event (a retried beacon) counts once",
        [("p", "open", 0), ("p", "add", 30), ("p", "add", 30), ("p", "close", 40)],
        60,
        40,
        40,
    ),
    (
        "a duplicate hidden keeps the page hidden",
        [
            ("p", "open", 0),
            ("p", "hidden", 10),
            ("p", "hidden", 10),
            ("p", "visible", 50),
            ("p", "close", 55),
        ],
        60,
        10 + 5,
        55,
    ),
]


@pytest.mark.parametrize(
    ("events", "threshold", "expected_active", "expected_wall"),
    [case[1:] for case in DATA],
    ids=[case[0] for case in DATA],
)
def test_active_and_wall_time(events, threshold, expected_active, expected_wall):
    times = session_times(events_of(events), threshold)
    assert sum(t.active_seconds for t in times) == pytest.approx(expected_active)
    assert sum(t.wall_seconds for t in times) == pytest.approx(expected_wall)
    assert total_active_seconds(events_of(events), threshold) == pytest.approx(expected_active)


def test_a_session_reports_its_events_and_hidden_time():
    [time] = session_times(events_of(IN_ORDER_WITH_HIDDEN), 60)
    assert time == SessionTime(
        page_session="p", active_seconds=40, wall_seconds=530, events=6, hidden_seconds=490
    )


def test_duplicates_are_counted_once():
    events = events_of([("p", "open", 0), ("p", "add", 30), ("p", "add", 30), ("p", "close", 40)])
    assert [t.events for t in session_times(events, 60)] == [3]


def test_seq_orders_events_stamped_at_the_same_time():
    # hidden then visible at the same instant: the page is visible afterwards, so 0 -> 10 counts.
    events = [
        TimeEvent("p", "visible", 0, seq=2),
        TimeEvent("p", "hidden", 0, seq=1),
        TimeEvent("p", "close", 10_000, seq=3),
    ]
    assert total_active_seconds(events, 60) == pytest.approx(10)


def test_sessions_come_back_in_order_of_first_appearance():
    events = events_of([("b", "open", 50), ("a", "open", 0), ("b", "close", 60), ("a", "close", 1)])
    assert [t.page_session for t in session_times(events, 60)] == ["b", "a"]


@pytest.mark.parametrize("threshold", [0, -1, math.nan])
def test_a_threshold_that_is_not_positive_is_refused(threshold):
    with pytest.raises(ValueError, match="idle_threshold_seconds"):
        session_times(events_of([("p", "open", 0)]), threshold)
    with pytest.raises(ValueError, match="idle_threshold_seconds"):
        total_active_seconds([], threshold)


@pytest.mark.parametrize("monotonic_ms", [-0.001, -1000, math.nan, math.inf])
def test_a_negative_or_non_finite_monotonic_time_is_refused(monotonic_ms):
    with pytest.raises(ValueError, match="monotonic_ms"):
        TimeEvent("p", "open", monotonic_ms)


# Properties -------------------------------------------------------------------------------------------

KINDS = ["open", "close", "visible", "hidden", "activity", "add", "delete", "relabel", "undo", "submit"]
# Client times up to about three hours, the length of a long annotation sitting.
time_events = st.lists(
    st.builds(
        TimeEvent,
        page_session=st.sampled_from(["a", "b", "c"]),
        kind=st.sampled_from(KINDS),
        monotonic_ms=st.floats(min_value=0, max_value=1e7, allow_nan=False),
        seq=st.integers(min_value=0, max_value=3),
    ),
    max_size=30,
)
thresholds = st.floats(min_value=0.001, max_value=1e5, allow_nan=False)
# Tolerance for float sums of many rounded gaps against one rounded difference.
EPSILON = 1e-6


@given(time_events, thresholds)
def test_active_time_is_bounded_by_wall_time_and_by_the_threshold(events, threshold):
    for time in session_times(events, threshold):
        n = sum(1 for e in events if e.page_session == time.page_session)
        assert 0 <= time.active_seconds <= time.wall_seconds + EPSILON
        assert time.active_seconds <= (n - 1) * threshold + EPSILON
        assert time.active_seconds + time.hidden_seconds <= time.wall_seconds + EPSILON
        assert 1 <= time.events <= n


@given(time_events)
def test_without_an_idle_cut_active_and_hidden_time_make_up_wall_time(events):
    for time in session_times(events, math.inf):
        assert time.active_seconds + time.hidden_seconds == pytest.approx(time.wall_seconds, abs=EPSILON)


@given(st.data(), time_events, thresholds)
def test_arrival_order_never_changes_the_result(data, events, threshold):
    shuffled = data.draw(st.permutations(events))
    by_session = {t.page_session: t for t in session_times(events, threshold)}
    assert {t.page_session: t for t in session_times(shuffled, threshold)} == by_session
    assert total_active_seconds(shuffled, threshold) == total_active_seconds(events, threshold)


@given(time_events, thresholds, st.floats(min_value=0, max_value=1e5, allow_nan=False))
def test_raising_the_threshold_never_lowers_active_time(events, threshold, increase):
    assert total_active_seconds(events, threshold + increase) >= total_active_seconds(events, threshold)
