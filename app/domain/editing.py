"""Edits of an annotation set, as changes that can be stored, undone and replayed.

Every edit a physician makes becomes a ``Change``: the state before and after of exactly the spans
(and set fields) it touched. Applying the changes of the edit log, in order, to the set's base
rebuilds the set; ``replay`` is that function, and the stored set must always equal it.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from app.domain.label_schema import AnswerRefused, LabelSchema, checked_answer
from app.domain.vocabulary import EditKind, SetStatus, SpanStatus

Fragments = tuple[tuple[int, int], ...]
MAX_FRAGMENTS = 16
MAX_NOTE_LENGTH = 20_000


class EditRefused(ValueError):
    """An edit that cannot be applied to the set as it is; the message names the field."""


class RelationsWouldBreak(EditRefused):
    """A relabel that would leave relations with a span their type does not take. The message names
    them in the physician's words (type, from which label to which); ``broken`` counts them and
    ``retypable`` those that exactly one relation type fits, so the editor can offer to drop them or
    to retype them in the same edit (``Command.broken_relations``)."""

    def __init__(self, message: str, broken: int, retypable: int):
        super().__init__(message)
        self.broken, self.retypable = broken, retypable


class StateMismatch(EditRefused):
    """The set is not in the state the change starts from (a stale undo, a corrupt log)."""


@dataclass(frozen=True)
class SpanState:
    label: str
    fragments: Fragments
    status: str = SpanStatus.confirmed.value
    attributes: tuple[tuple[str, Any], ...] = ()
    confidence: float | None = None  # of a pre-label; kept through edits so undo restores it
    concept: tuple[str, str, str] | None = None  # (system, code, preferred name) of its concept code
    # Gold only: kept as genuinely ambiguous, with how many physicians gave each label ("O": none).
    distribution: tuple[tuple[str, int], ...] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "label": self.label,
            "fragments": [list(f) for f in self.fragments],
            "status": self.status,
            "attributes": dict(self.attributes),
        }
        if self.confidence is not None:
            out["confidence"] = self.confidence
        if self.concept is not None:
            out["concept"] = dict(zip(("system", "code", "name"), self.concept, strict=True))
        if self.distribution is not None:
            out["distribution"] = dict(self.distribution)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SpanState":
        concept = data.get("concept")
        return cls(
            label=data["label"],
            fragments=tuple((int(a), int(b)) for a, b in data["fragments"]),
            status=data.get("status", SpanStatus.confirmed.value),
            attributes=tuple(sorted((data.get("attributes") or {}).items())),
            confidence=data.get("confidence"),
            concept=(concept["system"], concept["code"], concept.get("name") or "") if concept else None,
            distribution=distribution_items(data["distribution"]) if data.get("distribution") else None,
        )


def distribution_items(distribution: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    """A label distribution in its canonical order: most votes first, then by label."""
    return tuple(sorted(((str(k), int(v)) for k, v in distribution.items()), key=lambda i: (-i[1], i[0])))


@dataclass(frozen=True)
class RelationState:
    """A relation between two spans of the set, named by their uids."""

    type: str
    head: str
    tail: str
    status: str = SpanStatus.confirmed.value
    confidence: float | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"type": self.type, "head": self.head, "tail": self.tail, "status": self.status}
        if self.confidence is not None:
            out["confidence"] = self.confidence
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RelationState":
        return cls(
            type=data["type"],
            head=data["head"],
            tail=data["tail"],
            status=data.get("status", SpanStatus.confirmed.value),
            confidence=data.get("confidence"),
        )


@dataclass(frozen=True)
class SetState:
    """What replay rebuilds: spans and relations by uid, answers by question, the note and the status."""

    spans: Mapping[str, SpanState] = field(default_factory=dict)
    note: str = ""
    status: str = SetStatus.open.value
    skip_reason: str | None = None
    relations: Mapping[str, RelationState] = field(default_factory=dict)
    answers: Mapping[str, Any] = field(default_factory=dict)  # question key -> JSON value


_SET_FIELDS = ("note", "status", "skip_reason")


@dataclass(frozen=True)
class Change:
    """Before and after of what one edit touched: spans by uid (None = absent) and set fields."""

    before_spans: Mapping[str, SpanState | None] = field(default_factory=dict)
    after_spans: Mapping[str, SpanState | None] = field(default_factory=dict)
    before_set: Mapping[str, Any] = field(default_factory=dict)
    after_set: Mapping[str, Any] = field(default_factory=dict)
    before_relations: Mapping[str, RelationState | None] = field(default_factory=dict)
    after_relations: Mapping[str, RelationState | None] = field(default_factory=dict)
    before_answers: Mapping[str, Any] = field(default_factory=dict)  # None: unanswered
    after_answers: Mapping[str, Any] = field(default_factory=dict)

    def inverse(self) -> "Change":
        return Change(
            self.after_spans,
            self.before_spans,
            self.after_set,
            self.before_set,
            self.after_relations,
            self.before_relations,
            self.after_answers,
            self.before_answers,
        )

    @property
    def is_empty(self) -> bool:
        return (
            self.before_spans == self.after_spans
            and self.before_set == self.after_set
            and self.before_relations == self.after_relations
            and self.before_answers == self.after_answers
        )

    def to_json(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(before, after) as stored in the edit log."""

        def side(
            spans: Mapping[str, SpanState | None],
            fields: Mapping[str, Any],
            relations: Mapping[str, RelationState | None],
            answers: Mapping[str, Any],
        ) -> dict[str, Any]:
            out: dict[str, Any] = {"spans": {u: (s.to_json() if s else None) for u, s in spans.items()}}
            if fields:
                out["set"] = dict(fields)
            if relations:
                out["relations"] = {u: (r.to_json() if r else None) for u, r in relations.items()}
            if answers:
                out["answers"] = dict(answers)
            return out

        return (
            side(self.before_spans, self.before_set, self.before_relations, self.before_answers),
            side(self.after_spans, self.after_set, self.after_relations, self.after_answers),
        )

    @classmethod
    def from_json(cls, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> "Change":
        def spans(side: Mapping[str, Any] | None) -> dict[str, SpanState | None]:
            raw = (side or {}).get("spans") or {}
            return {uid: (SpanState.from_json(s) if s else None) for uid, s in raw.items()}

        def relations(side: Mapping[str, Any] | None) -> dict[str, RelationState | None]:
            raw = (side or {}).get("relations") or {}
            return {uid: (RelationState.from_json(r) if r else None) for uid, r in raw.items()}

        return cls(
            spans(before),
            spans(after),
            dict((before or {}).get("set") or {}),
            dict((after or {}).get("set") or {}),
            relations(before),
            relations(after),
            dict((before or {}).get("answers") or {}),
            dict((after or {}).get("answers") or {}),
        )


def apply_change(state: SetState, change: Change) -> SetState:
    """Apply a change, first checking the set is in the state the change starts from."""
    for uid, expected in change.before_spans.items():
        if state.spans.get(uid) != expected:
            raise StateMismatch("span: a span has changed since (in another tab?); reload the note")
    for name, expected in change.before_set.items():
        if getattr(state, name) != expected:
            raise StateMismatch(f"{name} is not as this edit expects; reload the note")
    for uid, expected in change.before_relations.items():
        if state.relations.get(uid) != expected:
            raise StateMismatch("relation: a relation has changed since (in another tab?); reload the note")
    for key, expected in change.before_answers.items():
        if state.answers.get(key) != expected:
            raise StateMismatch(f"the answer to {key} is not as this edit expects; reload the note")
    spans = _updated(state.spans, change.after_spans)
    relations = _updated(state.relations, change.after_relations)
    # A relation never outlives a span it links: an undo that would leave one so is refused (the
    # physician deletes the relation first), and a change made by plan() never does.
    for relation in relations.values():
        if relation.head not in spans or relation.tail not in spans:
            raise StateMismatch(
                f"relation: a {relation.type} relation would lose a span it links; delete the relation first"
            )
    return replace(
        state,
        spans=spans,
        relations=relations,
        answers=_updated(state.answers, change.after_answers),
        **{k: v for k, v in change.after_set.items() if k in _SET_FIELDS},
    )


def check_evidence(state: SetState, schema: LabelSchema) -> None:
    """Evidence answers name spans of the set only (StateMismatch otherwise)."""
    for question in schema.document_questions:
        if question.kind.value != "evidence":
            continue
        missing = [uid for uid in state.answers.get(question.key) or () if uid not in state.spans]
        if missing:
            raise StateMismatch(
                f"the evidence for {question.key} would name span {missing[0]}, which would be gone; "
                "remove it from the evidence first"
            )


def _updated(current: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """`current` with the entries of `after` set, None meaning absent."""
    updated = dict(current)
    for key, value in after.items():
        if value is None:
            updated.pop(key, None)
        else:
            updated[key] = value
    return updated


def replay(base: SetState, changes: Iterable[Change]) -> SetState:
    """The set rebuilt from its starting state and the changes of its edit log, in order."""
    state = base
    for change in changes:
        state = apply_change(state, change)
    return state


def starting_state(
    base_spans: Mapping[str, SpanState], base_relations: Mapping[str, RelationState] | None = None
) -> SetState:
    """An annotator's set starts as a copy of its base with every copied span and relation undecided."""
    return SetState(
        spans={uid: replace(s, status=SpanStatus.pending.value) for uid, s in base_spans.items()},
        relations={
            uid: replace(r, status=SpanStatus.pending.value) for uid, r in (base_relations or {}).items()
        },
    )


# --- commands: what the physician asked for, turned into a change after validation -------------


def check_fragments(fragments: Iterable[Iterable[int]], text_length: int) -> Fragments:
    """Fragments as code-point ranges inside the text, none empty, none overlapping another."""
    try:
        result = tuple((int(a), int(b)) for a, b in fragments)
    except (TypeError, ValueError):
        raise EditRefused("fragments: a list of [start, end] pairs of whole numbers") from None
    if not result:
        raise EditRefused("fragments: at least one [start, end] range")
    if len(result) > MAX_FRAGMENTS:
        raise EditRefused(f"fragments: at most {MAX_FRAGMENTS} ranges")
    for i, (start, end) in enumerate(result):
        if not 0 <= start < end <= text_length:
            raise EditRefused(
                f"fragments[{i}]: [{start}, {end}) is not a range inside the note (0 to {text_length})"
            )
    ordered = sorted(result)
    for (_, end), (start, _) in zip(ordered, ordered[1:], strict=False):
        if start < end:
            raise EditRefused("fragments: ranges of one span must not overlap")
    return result


def _label(schema: LabelSchema, label: str) -> str:
    if schema.entity_type(label) is None:
        raise EditRefused(f"label: '{label}' is not an entity type of this project")
    return label


def _existing(state: SetState, uid: str) -> SpanState:
    span = state.spans.get(uid)
    if span is None:
        raise EditRefused("uid: that span is no longer in the note (deleted in another tab?); reload it")
    return span


def _open(state: SetState) -> None:
    if state.status != SetStatus.open.value:
        raise EditRefused(f"status: the note is {state.status}; reopen it to edit")


@dataclass(frozen=True)
class Command:
    """One request of the editor: ``kind`` and its arguments, as the browser sent them."""

    kind: str
    uid: str | None = None  # the span, or the relation for relation_* kinds
    label: str | None = None  # entity type, or relation type for relation_add
    fragments: tuple[tuple[int, int], ...] | None = None
    text: str | None = None  # note text, skip reason
    uids: tuple[str, ...] | None = None  # accept_all: the pre-labels the physician saw
    head: str | None = None  # relation_add: the spans it links
    tail: str | None = None
    attribute: str | None = None  # attribute_set: which attribute; `value` its value (None clears)
    key: str | None = None  # answer: which question; `value` the answer (None clears)
    value: Any = None
    # concept_set: (system, code, preferred name) as the server looked it up, None clears
    concept: tuple[str, str, str] | None = None
    # propose / adopt: what the server built from the physicians' sets (never from the browser);
    # adopt replaces the spans named in ``uids``.
    spans: Mapping[str, SpanState] | None = None
    relations: Mapping[str, RelationState] | None = None
    answers: Mapping[str, Any] | None = None
    # ambiguous: the distribution the server counted (None clears)
    distribution: tuple[tuple[str, int], ...] | None = None
    # relabel: what to do with relations the new label cannot be in: "drop" them, or "retype" those
    # that exactly one relation type fits (dropping the rest); None refuses, saying which they are.
    broken_relations: str | None = None


def _relation_type(schema: LabelSchema, name: str):
    relation_type = schema.relation_type(name)
    if relation_type is None:
        raise EditRefused(f"label: '{name}' is not a relation type of this project")
    return relation_type


def _existing_relation(state: SetState, uid: str) -> RelationState:
    relation = state.relations.get(uid)
    if relation is None:
        raise EditRefused("uid: that relation is no longer in the note (deleted in another tab?); reload it")
    return relation


def _check_arguments(schema: LabelSchema, relation: RelationState, spans: Mapping[str, SpanState]) -> None:
    relation_type = _relation_type(schema, relation.type)
    head, tail = spans[relation.head], spans[relation.tail]
    if head.label not in relation_type.head_types:
        raise EditRefused(
            f"head: a {relation.type} relation starts at "
            f"{' or '.join(relation_type.head_types)}, not {head.label}"
        )
    if tail.label not in relation_type.tail_types:
        raise EditRefused(
            f"tail: a {relation.type} relation ends at "
            f"{' or '.join(relation_type.tail_types)}, not {tail.label}"
        )


def _fits(schema: LabelSchema, relation: RelationState, spans: Mapping[str, SpanState]) -> bool:
    try:
        _check_arguments(schema, relation, spans)
    except EditRefused:
        return False
    return True


def _only_fitting_type(
    schema: LabelSchema, relation: RelationState, spans: Mapping[str, SpanState]
) -> str | None:
    """The one relation type that takes these two spans, if exactly one does."""
    head, tail = spans[relation.head].label, spans[relation.tail].label
    fitting = [r.name for r in schema.relation_types if head in r.head_types and tail in r.tail_types]
    return fitting[0] if len(fitting) == 1 else None


def _a(words: str) -> str:
    return f"{'an' if words[:1].lower() in 'aeiou' else 'a'} {words}"


def _broken_message(
    label: str, broken: Mapping[str, RelationState], retyped: Mapping[str, str | None], schema: LabelSchema
) -> str:
    """In the physician's words, with no internal id: which relations the new label cannot be in, and
    what the editor can do about them."""

    def sides(relation: RelationState) -> str:
        kind = schema.relation_type(relation.type)
        if kind is None:
            return ""
        return f" (from {_a(' or '.join(kind.head_types))} to {_a(' or '.join(kind.tail_types))})"

    subject = _a(label)
    subject = subject[0].upper() + subject[1:]
    relations = list(broken.values())
    count = len(relations)
    renames = [f"{broken[uid].type} as {new}" for uid, new in retyped.items() if new]
    if count == 1:
        only, new_type = relations[0], next(iter(retyped.values()))
        text = f"{subject} cannot be in the {only.type} relation it has{sides(only)}."
        advice = f"Retype it as {new_type}, or drop it." if new_type else "Drop it, or keep the label."
        return f"{text} {advice}"
    listed = ", ".join(f"{r.type}{sides(r)}" for r in relations)
    text = f"{subject} cannot be in {count} of the relations it has: {listed}."
    if len(renames) == count:
        advice = f"Retype them ({', '.join(renames)}), or drop them."
    elif renames:
        advice = (
            f"Retype {len(renames)} ({', '.join(renames)}) and drop the other {count - len(renames)}, "
            "or drop them all."
        )
    else:
        advice = "Drop them, or keep the label."
    return f"{text} {advice}"


def _removing_spans(state: SetState, uids: set[str], schema: LabelSchema) -> tuple[dict, dict, dict, dict]:
    """What else goes when spans go: the relations that name them, and their uids in evidence answers
    (so that undo brings all of it back)."""
    relations = {u: r for u, r in state.relations.items() if r.head in uids or r.tail in uids}
    answers_before: dict[str, Any] = {}
    answers_after: dict[str, Any] = {}
    evidence = {q.key for q in schema.document_questions if q.kind.value == "evidence"}
    for key, value in state.answers.items():
        if key in evidence and isinstance(value, list) and any(uid in uids for uid in value):
            answers_before[key] = value
            kept = [uid for uid in value if uid not in uids]
            answers_after[key] = kept or None
    return relations, dict.fromkeys(relations), answers_before, answers_after


def _check_answer(schema: LabelSchema, state: SetState, key: str, value: Any) -> Any:
    question = schema.question(key)
    if question is None:
        raise EditRefused(f"key: '{key}' is not a question of this project")
    # The editor's span uids are its own; a stale one is named by what it means, not by its id.
    evidence = question.kind.value == "evidence" and isinstance(value, list)
    if evidence and any(isinstance(v, str) and v not in state.spans for v in value):
        raise EditRefused(f"value: {key}: a span given as evidence is no longer in the note; reload it")
    try:
        return checked_answer(question, value, state.spans)
    except AnswerRefused as refused:
        raise EditRefused(f"value: {key}: {refused}") from None


def plan(
    command: Command,
    state: SetState,
    *,
    text_length: int,
    schema: LabelSchema,
    require_decided: bool = False,
) -> Change:
    """The change a command makes to the set, or EditRefused naming what is wrong."""
    kind = command.kind
    if kind == EditKind.add:
        _open(state)
        if not command.uid:
            raise EditRefused("uid: a new span needs the uid the editor gave it")
        if command.uid in state.spans:
            raise EditRefused("uid: a span with the editor's identifier exists already; reload the note")
        span = SpanState(
            _label(schema, command.label or ""), check_fragments(command.fragments or (), text_length)
        )
        return Change({command.uid: None}, {command.uid: span})
    if kind in (EditKind.delete, EditKind.reject):
        _open(state)
        span = _existing(state, command.uid or "")
        if kind == EditKind.reject and span.status != SpanStatus.pending.value:
            raise EditRefused("uid: that span is not an undecided pre-label")
        relations, gone, answers_before, answers_after = _removing_spans(state, {command.uid}, schema)
        return Change({command.uid: span}, {command.uid: None}, {}, {}, relations, gone, answers_before,
                      answers_after)  # fmt: skip
    if kind == EditKind.accept:
        _open(state)
        span = _existing(state, command.uid or "")
        return Change({command.uid: span}, {command.uid: replace(span, status=SpanStatus.confirmed.value)})
    if kind == EditKind.accept_all:
        _open(state)
        pending = {u: s for u, s in state.spans.items() if s.status == SpanStatus.pending.value}
        relations = {u: r for u, r in state.relations.items() if r.status == SpanStatus.pending.value}
        if command.uids is not None:  # only what the physician saw when confirming
            seen = set(command.uids)
            pending = {u: s for u, s in pending.items() if u in seen}
            relations = {u: r for u, r in relations.items() if u in seen}
        confirmed = SpanStatus.confirmed.value
        return Change(
            pending,
            {u: replace(s, status=confirmed) for u, s in pending.items()},
            before_relations=relations,
            after_relations={u: replace(r, status=confirmed) for u, r in relations.items()},
        )
    if kind == EditKind.reject_all:
        # The undecided pre-labels named in `uids` (only what the physician saw: never everything
        # pending), gone as a reject takes each: with the relations that name them and their evidence
        # citations, plus the pending relations named in `uids`. One change, so one undo restores all.
        _open(state)
        if command.uids is None:
            raise EditRefused("uids: name the pre-labels to reject (those shown to the physician)")
        seen = set(command.uids)
        pending_status = SpanStatus.pending.value
        rejected = {u: s for u, s in state.spans.items() if u in seen and s.status == pending_status}
        relations, gone, answers_before, answers_after = _removing_spans(state, set(rejected), schema)
        shown = {
            u: r
            for u, r in state.relations.items()
            if u in seen and r.status == pending_status and u not in relations
        }
        return Change(
            rejected,
            dict.fromkeys(rejected),
            {},
            {},
            {**relations, **shown},
            {**gone, **dict.fromkeys(shown)},
            answers_before,
            answers_after,
        )
    if kind == EditKind.relabel:
        _open(state)
        span = _existing(state, command.uid or "")
        label = _label(schema, command.label or "")
        # Attributes that do not apply to the new type go with the old one (undo restores them).
        attributes = tuple(
            (name, value)
            for name, value in span.attributes
            if (definition := schema.span_attribute(name)) is None
            or not definition.applies_to
            or label in definition.applies_to
        )
        after = replace(span, label=label, attributes=attributes, status=SpanStatus.confirmed.value)
        spans = {**state.spans, command.uid: after}
        broken = {
            uid: relation
            for uid, relation in state.relations.items()
            if command.uid in (relation.head, relation.tail) and not _fits(schema, relation, spans)
        }
        retyped = {uid: _only_fitting_type(schema, relation, spans) for uid, relation in broken.items()}
        if broken and command.broken_relations not in ("drop", "retype"):
            raise RelationsWouldBreak(_broken_message(label, broken, retyped, schema), len(broken),
                                      sum(1 for kind in retyped.values() if kind))  # fmt: skip
        after_relations: dict[str, RelationState | None] = {
            uid: replace(relation, type=retyped[uid])
            if command.broken_relations == "retype" and retyped[uid]
            else None
            for uid, relation in broken.items()
        }
        return Change({command.uid: span}, {command.uid: after}, before_relations=broken,
                      after_relations=after_relations)  # fmt: skip
    if kind == EditKind.relation_add:
        _open(state)
        if not command.uid:
            raise EditRefused("uid: a new relation needs the uid the editor gave it")
        if command.uid in state.relations:
            raise EditRefused("uid: a relation with the editor's identifier exists already; reload the note")
        for side, uid in (("head", command.head), ("tail", command.tail)):
            if not uid or uid not in state.spans:
                raise EditRefused(f"{side}: the {side} span is not in the note")
        if command.head == command.tail:
            raise EditRefused("tail: a relation links two different spans")
        relation = RelationState(_relation_type(schema, command.label or "").name, command.head, command.tail)
        _check_arguments(schema, relation, state.spans)
        for other in state.relations.values():
            if (other.type, other.head, other.tail) == (relation.type, relation.head, relation.tail):
                raise EditRefused(f"uid: a {other.type} relation links these spans the same way already")
        return Change(before_relations={command.uid: None}, after_relations={command.uid: relation})
    if kind in (EditKind.relation_delete, EditKind.relation_reject):
        _open(state)
        relation = _existing_relation(state, command.uid or "")
        if kind == EditKind.relation_reject and relation.status != SpanStatus.pending.value:
            raise EditRefused("uid: that relation is not an undecided pre-label")
        return Change(before_relations={command.uid: relation}, after_relations={command.uid: None})
    if kind == EditKind.relation_accept:
        _open(state)
        relation = _existing_relation(state, command.uid or "")
        return Change(
            before_relations={command.uid: relation},
            after_relations={command.uid: replace(relation, status=SpanStatus.confirmed.value)},
        )
    if kind == EditKind.attribute_set:
        _open(state)
        span = _existing(state, command.uid or "")
        definition = schema.span_attribute(command.attribute or "")
        if definition is None:
            raise EditRefused(f"attribute: '{command.attribute}' is not a span attribute of this project")
        if definition.applies_to and span.label not in definition.applies_to:
            raise EditRefused(f"attribute: {definition.name} does not apply to {span.label}")
        if command.value is not None and command.value not in definition.values:
            raise EditRefused(f"value: {definition.name} is one of {', '.join(definition.values)}")
        attributes = dict(span.attributes)
        if command.value is None:
            attributes.pop(definition.name, None)
        else:
            attributes[definition.name] = command.value
        after = replace(span, attributes=tuple(sorted(attributes.items())), status=SpanStatus.confirmed.value)
        return Change({command.uid: span}, {command.uid: after})
    if kind == EditKind.concept_set:
        _open(state)
        span = _existing(state, command.uid or "")
        after = replace(span, concept=command.concept, status=SpanStatus.confirmed.value)
        return Change({command.uid: span}, {command.uid: after})
    if kind == EditKind.answer:
        _open(state)
        key = command.key or ""
        value = _check_answer(schema, state, key, command.value)
        return Change(before_answers={key: state.answers.get(key)}, after_answers={key: value})
    if kind == EditKind.modify:
        _open(state)
        span = _existing(state, command.uid or "")
        fragments = check_fragments(command.fragments or (), text_length)
        after = replace(span, fragments=fragments, status=SpanStatus.confirmed.value)
        return Change({command.uid: span}, {command.uid: after})
    if kind == EditKind.note:
        note = command.text or ""
        if len(note) > MAX_NOTE_LENGTH:
            raise EditRefused(f"text: a note has at most {MAX_NOTE_LENGTH} characters")
        return Change(before_set={"note": state.note}, after_set={"note": note})
    if kind == EditKind.skip:
        _open(state)
        reason = (command.text or "").strip()
        if not reason:
            raise EditRefused("text: say why you skip this note")
        return Change(
            before_set={"status": state.status, "skip_reason": state.skip_reason},
            after_set={"status": SetStatus.skipped.value, "skip_reason": reason},
        )
    if kind in (EditKind.propose, EditKind.adopt):
        return _adoption(command, state, text_length, schema)
    if kind == EditKind.ambiguous:
        _open(state)
        span = _existing(state, command.uid or "")
        if command.distribution is not None and not command.distribution:
            raise EditRefused("value: an ambiguous span needs the labels it was given")
        after = replace(span, distribution=command.distribution, status=SpanStatus.confirmed.value)
        return Change({command.uid: span}, {command.uid: after})
    if kind == EditKind.reopen:
        if state.status != SetStatus.submitted.value:
            raise EditRefused(f"status: the note is {state.status}, not submitted")
        return Change(before_set={"status": state.status}, after_set={"status": SetStatus.open.value})
    if kind == EditKind.submit:
        _open(state)
        undecided = sum(1 for s in state.spans.values() if s.status == SpanStatus.pending.value)
        undecided += sum(1 for r in state.relations.values() if r.status == SpanStatus.pending.value)
        if require_decided and undecided:
            raise EditRefused(f"status: {undecided} pre-labels are undecided; accept or reject them first")
        unanswered = [
            q.key for q in schema.document_questions if q.required and state.answers.get(q.key) is None
        ]
        if unanswered:
            raise EditRefused(f"answers: answer {', '.join(unanswered)} before submitting")
        return Change(before_set={"status": state.status}, after_set={"status": SetStatus.submitted.value})
    raise EditRefused(f"kind: '{kind}' is not an edit")


def _adoption(command: Command, state: SetState, text_length: int, schema: LabelSchema) -> Change:
    """propose and adopt: spans, relations and answers taken into gold in one change. adopt drops
    the gold spans it replaces (with their relations and evidence, as a delete does)."""
    _open(state)
    new_spans = dict(command.spans or {})
    new_relations = dict(command.relations or {})
    replaced = set(command.uids or ())
    if command.kind == EditKind.propose and (state.spans or state.relations or replaced):
        raise EditRefused("kind: a proposal starts an empty gold set")
    if not new_spans and not new_relations and command.kind == EditKind.adopt:
        raise EditRefused("uid: nothing to keep")
    for uid in replaced:
        _existing(state, uid)
    for uid, span in new_spans.items():
        if uid in state.spans:
            raise EditRefused("uid: a span of this proposal is in gold already; reload the note")
        _label(schema, span.label)
        check_fragments(span.fragments, text_length)
    spans_after = {**{u: s for u, s in state.spans.items() if u not in replaced}, **new_spans}
    relations, gone, answers_before, answers_after = _removing_spans(state, replaced, schema)
    kept_relations = {u: r for u, r in state.relations.items() if u not in relations}
    for uid, relation in new_relations.items():
        if uid in state.relations:
            raise EditRefused("uid: a relation of this proposal is in gold already; reload the note")
        if relation.head not in spans_after or relation.tail not in spans_after:
            raise EditRefused(f"uid: a {relation.type} relation links a span that is not in gold")
        _check_arguments(schema, relation, spans_after)
        for other in kept_relations.values():
            if (other.type, other.head, other.tail) == (relation.type, relation.head, relation.tail):
                raise EditRefused("uid: gold links these spans the same way already")
    for key, value in (command.answers or {}).items():
        answers_before[key] = state.answers.get(key)
        answers_after[key] = _check_answer(schema, replace(state, spans=spans_after), key, value)
    return Change(
        {**{u: state.spans[u] for u in replaced}, **dict.fromkeys(new_spans)},
        {**dict.fromkeys(replaced), **new_spans},
        {},
        {},
        {**relations, **dict.fromkeys(new_relations)},
        {**gone, **new_relations},
        answers_before,
        answers_after,
    )


UNDOABLE = frozenset(
    {
        EditKind.add,
        EditKind.delete,
        EditKind.reject,
        EditKind.accept,
        EditKind.accept_all,
        EditKind.reject_all,
        EditKind.relabel,
        EditKind.modify,
        EditKind.note,
        EditKind.relation_add,
        EditKind.relation_delete,
        EditKind.relation_accept,
        EditKind.relation_reject,
        EditKind.attribute_set,
        EditKind.concept_set,
        EditKind.answer,
        EditKind.adopt,
        EditKind.ambiguous,
    }
)
