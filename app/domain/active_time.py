"""Time spent on an annotation set, computed from the browser's events as metrics.md "Time" defines."""

import math
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

VISIBLE = "visible"
HIDDEN = "hidden"


@dataclass(frozen=True)
class TimeEvent:
    """One event of a page session, stamped with the client's monotonic clock (performance.now())."""

    page_session: str
    kind: str
    monotonic_ms: float
    seq: int = 0

    def __post_init__(self) -> None:
        # `not >=` also rejects NaN, which would otherwise sort arbitrarily and poison every sum.
        if not (self.monotonic_ms >= 0) or math.isinf(self.monotonic_ms):
            raise ValueError(f"monotonic_ms must be a finite number >= 0, got {self.monotonic_ms!r}")


@dataclass(frozen=True)
class SessionTime:
    """Active and wall time of one page session, with what was left out while the page was hidden."""

    page_session: str
    active_seconds: float
    wall_seconds: float
    events: int
    hidden_seconds: float


def _ordered_unique(events: list[TimeEvent]) -> list[TimeEvent]:
    """The session's events in client-clock order, each (time, kind) once."""
    # The client's monotonic clock is the truth, not arrival order (network, sendBeacon). Kind is the
    # last tie-breaker so that the order, and so the result, never depends on arrival order.
    ordered = sorted(events, key=lambda e: (e.monotonic_ms, e.seq, e.kind))
    seen: set[tuple[float, str]] = set()
    unique: list[TimeEvent] = []
    for event in ordered:
        # A retried beacon repeats an event; counting it twice would inflate the event count.
        key = (event.monotonic_ms, event.kind)
        if key not in seen:
            seen.add(key)
            unique.append(event)
    return unique


def _session_gaps(events: list[TimeEvent]) -> tuple[list[TimeEvent], list[float], list[float]]:
    """The session's ordered events, and the gaps between them while visible and while hidden (ms)."""
    ordered = _ordered_unique(events)
    visible_ms: list[float] = []
    hidden_ms: list[float] = []
    hidden = False  # a page starts visible
    for current, following in zip(ordered, ordered[1:], strict=False):
        if current.kind == HIDDEN:
            hidden = True
        elif current.kind == VISIBLE:
            hidden = False
        (hidden_ms if hidden else visible_ms).append(following.monotonic_ms - current.monotonic_ms)
    return ordered, visible_ms, hidden_ms


def _capped_seconds(sorted_gaps_ms: list[float], idle_threshold_ms: float) -> float:
    # Each gap counts up to the threshold. fsum is exactly rounded, so summing the gaps below the
    # threshold and the threshold for each longer one gives the same float as summing min(gap, threshold).
    below = bisect_right(sorted_gaps_ms, idle_threshold_ms)
    return math.fsum([*sorted_gaps_ms[:below], *[idle_threshold_ms] * (len(sorted_gaps_ms) - below)]) / 1000


def _session_time(page_session: str, events: list[TimeEvent], idle_threshold_ms: float) -> SessionTime:
    """Active, wall and hidden time of one page session's events."""
    ordered, visible_ms, hidden_ms = _session_gaps(events)
    # The open is sent at page load, so it is the first event; taking the first event rather than
    # searching for the open keeps active <= wall even if an event was stamped before it.
    wall_ms = ordered[-1].monotonic_ms - ordered[0].monotonic_ms
    return SessionTime(
        page_session=page_session,
        active_seconds=_capped_seconds(sorted(visible_ms), idle_threshold_ms),
        wall_seconds=wall_ms / 1000,
        events=len(ordered),
        hidden_seconds=math.fsum(hidden_ms) / 1000,
    )


def _check_threshold(idle_threshold_seconds: float) -> None:
    # `not >` also rejects NaN; an infinite threshold is allowed and means "no idle cut-off".
    if not (idle_threshold_seconds > 0):
        raise ValueError(f"idle_threshold_seconds must be > 0, got {idle_threshold_seconds!r}")


def _by_session(events: Iterable[TimeEvent]) -> dict[str, list[TimeEvent]]:
    by_session: dict[str, list[TimeEvent]] = {}
    for event in events:
        by_session.setdefault(event.page_session, []).append(event)
    return by_session


def visible_gaps(events: Iterable[TimeEvent]) -> list[list[float]]:
    """Per page session, the sorted gaps (ms) between its events while the page was visible.

    That is all active time needs, for any idle threshold (active_seconds_from_gaps), so a submitted
    set's gaps can be stored once and the lead can move the threshold without the events being read again.
    """
    return [sorted(_session_gaps(session)[1]) for session in _by_session(events).values()]


def active_seconds_from_gaps(gaps: Iterable[list[float]], idle_threshold_seconds: float) -> float:
    """total_active_seconds of the events whose visible_gaps these are."""
    _check_threshold(idle_threshold_seconds)
    idle_threshold_ms = idle_threshold_seconds * 1000
    return math.fsum(_capped_seconds(session, idle_threshold_ms) for session in gaps)


def session_times(events: Iterable[TimeEvent], idle_threshold_seconds: float) -> list[SessionTime]:
    """Time of each page session, in order of the sessions' first appearance in `events`."""
    _check_threshold(idle_threshold_seconds)
    by_session = _by_session(events)
    idle_threshold_ms = idle_threshold_seconds * 1000
    return [
        _session_time(page_session, session_events, idle_threshold_ms)
        for page_session, session_events in by_session.items()
    ]


def total_active_seconds(events: Iterable[TimeEvent], idle_threshold_seconds: float) -> float:
    """Active time summed over all page sessions of the events."""
    # fsum is exactly rounded, so the total does not depend on the order the sessions came in.
    return math.fsum(s.active_seconds for s in session_times(events, idle_threshold_seconds))
