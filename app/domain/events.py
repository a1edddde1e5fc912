"""brat events, and the relations and attributes that point at them, modelled enough to compare.

A set keeps the brat lines the editor does not edit verbatim (``E`` lines, ``R`` lines with an event as
an argument, ``A``/``M`` lines about an event); its spans keep their T ids as uids. ``read_events``
reads those lines back into events whose trigger and arguments name spans (by T id) or other events.

Comparing two annotators' events (``event_keys``):
- **strict**: the same type, the same trigger span (label and fragments), and the same role
  arguments, each argument the same span or (recursively) the same event;
- **lenient**: the same type, triggers that overlap, and for each role the same number of arguments,
  each argument overlapping one of the other's (spans: same label and overlapping; events: the same
  type with overlapping triggers).
An event whose trigger or an argument cannot be resolved (a span deleted in the editor, a cycle) is
left out and counted in ``unresolved``.
"""

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from app.domain.spans import SpanData

_EVENT = re.compile(r"^(E\d+)\t(\S+)$")
_ROLE = re.compile(r"^([^:\s]+):(\S+)$")
_RELATION = re.compile(r"^(R\d+)\t(\S+) Arg1:(\S+) Arg2:(\S+)\s*$")
_ATTRIBUTE = re.compile(r"^([AM]\d+)\t(\S+) (E\d+)(?: (\S+))?\s*$")


@dataclass(frozen=True)
class Event:
    """An E line: its type, its trigger (a T id) and its role arguments (role, T or E id) in file order."""

    id: str
    type: str
    trigger: str
    arguments: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class EventRelation:
    """An R line with an event as one argument (or both)."""

    id: str
    type: str
    arg1: str
    arg2: str


@dataclass(frozen=True)
class EventAttribute:
    """An A (or M) line about an event; ``value`` None for a binary attribute."""

    name: str
    event: str
    value: str | None = None


@dataclass(frozen=True)
class EventLines:
    events: dict[str, Event] = field(default_factory=dict)
    relations: list[EventRelation] = field(default_factory=list)
    attributes: list[EventAttribute] = field(default_factory=list)


def _role_name(role: str) -> str:
    """brat numbers repeated roles (Theme, Theme2, Theme3): they are one role for comparison."""
    return role.rstrip("0123456789") or role


def read_events(lines: Iterable[str]) -> EventLines:
    """The events, event relations and event attributes among a set's verbatim lines."""
    result = EventLines()
    relations, attributes = [], []
    for raw in lines:
        line = raw.rstrip("\r\n")
        identifier, _, rest = line.partition("\t")
        if identifier.startswith("E") and rest:
            parts = rest.split()
            head = _ROLE.match(parts[0]) if parts else None
            if head is None:
                continue
            arguments = tuple(
                (_role_name(match.group(1)), match.group(2))
                for match in (_ROLE.match(part) for part in parts[1:])
                if match is not None
            )
            result.events[identifier] = Event(identifier, head.group(1), head.group(2), arguments)
        elif match := _RELATION.match(line):
            if match.group(3).startswith("E") or match.group(4).startswith("E"):
                relations.append(EventRelation(*match.groups()))
        elif match := _ATTRIBUTE.match(line):
            attributes.append(EventAttribute(match.group(2), match.group(3), match.group(4)))
    result.relations.extend(relations)
    result.attributes.extend(attributes)
    return result


def _span_key(span: SpanData) -> tuple:
    return ("T", span.label, tuple((f.start, f.end) for f in span.fragments))


@dataclass(frozen=True)
class ResolvedEvent:
    """An event with its trigger and arguments resolved to comparable keys."""

    type: str
    trigger: SpanData
    key: tuple  # the strict key: type, trigger, sorted (role, argument key)
    arguments: tuple[tuple[str, object], ...]  # (role, SpanData or ResolvedEvent)


@dataclass(frozen=True)
class AnnotatorEvents:
    """One annotator's events of one note, resolved: what agreement compares."""

    events: list[ResolvedEvent]
    relations: list[tuple[str, tuple, tuple]]  # (type, arg1 key, arg2 key)
    attributes: list[tuple[str, tuple, str]]  # (name, event key, value)
    unresolved: int = 0


def resolve_events(lines: EventLines, spans_by_id: Mapping[str, SpanData]) -> AnnotatorEvents:
    """Events with their trigger and arguments looked up among the set's spans (by T id) and events."""
    resolved: dict[str, ResolvedEvent | None] = {}

    def resolve(event_id: str, visiting: frozenset[str]) -> ResolvedEvent | None:
        if event_id in resolved:
            return resolved[event_id]
        event = lines.events.get(event_id)
        if event is None or event_id in visiting or event.trigger not in spans_by_id:
            return None
        arguments: list[tuple[str, object]] = []
        for role, target in event.arguments:
            if target.startswith("E"):
                inner = resolve(target, visiting | {event_id})
                if inner is None:
                    return None
                arguments.append((role, inner))
            elif target in spans_by_id:
                arguments.append((role, spans_by_id[target]))
            else:
                return None
        trigger = spans_by_id[event.trigger]
        key = (
            "E",
            event.type,
            _span_key(trigger),
            tuple(sorted((role, _key_of(argument)) for role, argument in arguments)),
        )
        found = ResolvedEvent(event.type, trigger, key, tuple(arguments))
        resolved[event_id] = found
        return found

    events = []
    for event_id in lines.events:
        found = resolve(event_id, frozenset())
        resolved.setdefault(event_id, found)
        if found is not None:
            events.append(found)

    def argument_key(identifier: str) -> tuple | None:
        if identifier.startswith("E"):
            event = resolved.get(identifier)
            return event.key if event is not None else None
        span = spans_by_id.get(identifier)
        return _span_key(span) if span is not None else None

    relations = []
    for relation in lines.relations:
        keys = argument_key(relation.arg1), argument_key(relation.arg2)
        if None not in keys:
            relations.append((relation.type, *keys))
    attributes = []
    for attribute in lines.attributes:
        event = resolved.get(attribute.event)
        if event is not None:
            attributes.append(
                (attribute.name, event.key, "true" if attribute.value is None else attribute.value)
            )
    unresolved = sum(1 for found in resolved.values() if found is None)
    return AnnotatorEvents(events, relations, attributes, unresolved)


def _key_of(argument: object) -> tuple:
    return argument.key if isinstance(argument, ResolvedEvent) else _span_key(argument)


def _overlap(a: SpanData, b: SpanData) -> bool:
    return any(x.start < y.end and y.start < x.end for x in a.fragments for y in b.fragments)


def _lenient_same(a: object, b: object) -> bool:
    if isinstance(a, ResolvedEvent) and isinstance(b, ResolvedEvent):
        if a.type != b.type or not _overlap(a.trigger, b.trigger):
            return False
        roles_a = Counter(role for role, _ in a.arguments)
        if roles_a != Counter(role for role, _ in b.arguments):
            return False
        unused = list(b.arguments)
        for role, argument in a.arguments:
            partner = next(
                (i for i, (r, other) in enumerate(unused) if r == role and _lenient_same(argument, other)),
                None,
            )
            if partner is None:
                return False
            unused.pop(partner)
        return True
    if isinstance(a, SpanData) and isinstance(b, SpanData):
        return a.label == b.label and _overlap(a, b)
    return False


def matched_events(a: Sequence[ResolvedEvent], b: Sequence[ResolvedEvent], rule: str) -> dict[str, int]:
    """Per event type, how many of a's events have a partner in b (one to one) under ``rule``."""
    matched: Counter = Counter()
    if rule == "strict":
        left = Counter(event.key for event in a)
        right = Counter(event.key for event in b)
        for key, count in left.items():
            matched[key[1]] += min(count, right.get(key, 0))
        return dict(matched)
    # Lenient: exact partners first (so a lenient pass cannot take another's exact partner), then overlap.
    unused_b = list(b)
    rest_a = []
    for event in a:
        index = next((i for i, other in enumerate(unused_b) if other.key == event.key), None)
        if index is None:
            rest_a.append(event)
        else:
            matched[event.type] += 1
            unused_b.pop(index)
    for event in rest_a:
        index = next((i for i, other in enumerate(unused_b) if _lenient_same(event, other)), None)
        if index is not None:
            matched[event.type] += 1
            unused_b.pop(index)
    return dict(matched)
