"""brat events read back from verbatim lines and compared (issue 18), checked against a computation of
its own on tests/fixtures/events: two annotators' hand-made events, nested and with event relations."""

from collections import Counter
from pathlib import Path

from app.domain.brat import parse_ann
from app.domain.events import matched_events, read_events, resolve_events
from app.domain.spans import Fragment, SpanData

EVENTS = Path(__file__).resolve().parent.parent / "fixtures" / "events"


def _independent_strict_keys(ann: str) -> tuple[Counter, Counter]:
    """Event and event-relation keys straight from the .ann text: no clinann code involved."""
    spans, events, relations = {}, {}, []
    for line in ann.splitlines():
        identifier, rest = line.split("\t", 1)[0], line.split("\t")[1]
        if identifier.startswith("T"):
            label, start, end = rest.split(" ")
            spans[identifier] = (label, int(start), int(end))
        elif identifier.startswith("E"):
            trigger, *arguments = rest.split(" ")
            events[identifier] = (trigger.split(":"), [a.split(":") for a in arguments])
        elif identifier.startswith("R"):
            kind, arg1, arg2 = rest.split(" ")
            relations.append((kind, arg1.split(":")[1], arg2.split(":")[1]))

    def key(identifier: str):
        if identifier.startswith("T"):
            return spans[identifier]
        (kind, trigger), arguments = events[identifier]
        roles = sorted((role.rstrip("0123456789"), key(argument)) for role, argument in arguments)
        return (kind, spans[trigger], tuple(roles))

    event_keys = Counter(key(e) for e in events)
    relation_keys = Counter(
        (kind, key(a), key(b)) for kind, a, b in relations if a.startswith("E") or b.startswith("E")
    )
    return event_keys, relation_keys


def _clinann_events(ann: str):
    parsed = parse_ann(ann)
    spans = {
        entity.id: SpanData(entity.label, tuple(Fragment(f.start, f.end) for f in entity.fragments))
        for entity in parsed.entities.values()
    }
    return resolve_events(read_events(parsed.unmodelled), spans)


def test_event_agreement_equals_an_independent_count():
    strict = lenient = size_a = size_b = 0
    expected_matched = expected_relations = relation_matched = relations_a = relations_b = 0
    for note in ("n1", "n2"):
        one = (EVENTS / "ann1" / f"{note}.ann").read_text()
        two = (EVENTS / "ann2" / f"{note}.ann").read_text()
        a, b = _clinann_events(one), _clinann_events(two)
        assert a.unresolved == b.unresolved == 0
        strict += sum(matched_events(a.events, b.events, "strict").values())
        lenient += sum(matched_events(a.events, b.events, "lenient").values())
        size_a, size_b = size_a + len(a.events), size_b + len(b.events)
        keys_a, relation_keys_a = _independent_strict_keys(one)
        keys_b, relation_keys_b = _independent_strict_keys(two)
        expected_matched += sum((keys_a & keys_b).values())
        expected_relations += sum((relation_keys_a & relation_keys_b).values())
        relation_matched += sum((Counter(a.relations) & Counter(b.relations)).values())
        relations_a, relations_b = relations_a + len(a.relations), relations_b + len(b.relations)
    assert (size_a, size_b) == (5, 5)
    assert strict == expected_matched == 2  # F1 0.4
    assert lenient == 4  # by hand (README of the fixture): F1 0.8
    assert relation_matched == expected_relations == 1 and (relations_a, relations_b) == (2, 2)  # F1 0.5


def test_events_are_read_with_roles_attributes_and_relations_and_unresolved_ones_counted():
    lines = read_events(
        [
            "E1\tBinding:T1 Theme:T2 Theme2:T3",
            "E2\tRegulation:T4 Theme:E1 Cause:E9",  # E9: no such event
            "R1\tSame Arg1:E1 Arg2:T2",
            "R2\tPlain Arg1:T1 Arg2:T2",  # no event argument: a modelled relation, not read here
            "A1\tNegation E1",
            "M2\tCertainty E1 likely",
            "*\tEquiv T2 T3",
        ]
    )
    assert lines.events["E1"].arguments == (("Theme", "T2"), ("Theme", "T3"))  # Theme2 is a Theme
    assert [r.type for r in lines.relations] == ["Same"]
    assert [(a.name, a.value) for a in lines.attributes] == [("Negation", None), ("Certainty", "likely")]
    spans = {f"T{i}": SpanData("X", (Fragment(i, i + 1),)) for i in range(1, 5)}
    resolved = resolve_events(lines, spans)
    assert len(resolved.events) == 1 and resolved.unresolved == 1
    assert sorted(name for name, _, _ in resolved.attributes) == ["Certainty", "Negation"]
