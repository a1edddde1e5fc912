"""Edits of an annotation set, as changes that can be stored, undone and replayed.

Every edit a physician makes becomes a ``Change``: the state before and after of exactly the spans
(and set fields) it touched. Applying the changes of the edit log, in order, to the set's base
rebuilds the set; ``replay`` is that function, and the stored set must always equal it.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from app.domain.label_schema import LabelSchema
from app.domain.vocabulary import EditKind, SetStatus, SpanStatus

Fragments = tuple[tuple[int, int], ...]
MAX_FRAGMENTS = 16
MAX_NOTE_LENGTH = 20_000


class EditRefused(ValueError):
    """An edit that cannot be applied to the set as it is; the message names the field."""


class StateMismatch(EditRefused):
    """The set is not in the state the change starts from (a stale undo, a corrupt log)."""


@dataclass(frozen=True)
class SpanState:
    label: str
    fragments: Fragments
    status: str = SpanStatus.confirmed.value
    attributes: tuple[tuple[str, Any], ...] = ()
    confidence: float | None = None  # of a pre-label; kept through edits so undo restores it

    def to_json(self) -> dict[str, Any]:
        out = {
            "label": self.label,
            "fragments": [list(f) for f in self.fragments],
            "status": self.status,
            "attributes": dict(self.attributes),
        }
        if self.confidence is not None:
            out["confidence"] = self.confidence
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SpanState":
        return cls(
            label=data["label"],
            fragments=tuple((int(a), int(b)) for a, b in data["fragments"]),
            status=data.get("status", SpanStatus.confirmed.value),
            attributes=tuple(sorted((data.get("attributes") or {}).items())),
            confidence=data.get("confidence"),
        )


@dataclass(frozen=True)
class SetState:
    """What replay rebuilds: the spans by uid, the physician's note and the set's status."""

    spans: Mapping[str, SpanState] = field(default_factory=dict)
    note: str = ""
    status: str = SetStatus.open.value
    skip_reason: str | None = None


_SET_FIELDS = ("note", "status", "skip_reason")


@dataclass(frozen=True)
class Change:
    """Before and after of what one edit touched: spans by uid (None = absent) and set fields."""

    before_spans: Mapping[str, SpanState | None] = field(default_factory=dict)
    after_spans: Mapping[str, SpanState | None] = field(default_factory=dict)
    before_set: Mapping[str, Any] = field(default_factory=dict)
    after_set: Mapping[str, Any] = field(default_factory=dict)

    def inverse(self) -> "Change":
        return Change(self.after_spans, self.before_spans, self.after_set, self.before_set)

    @property
    def is_empty(self) -> bool:
        return self.before_spans == self.after_spans and self.before_set == self.after_set

    def to_json(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(before, after) as stored in the edit log."""

        def side(spans: Mapping[str, SpanState | None], fields: Mapping[str, Any]) -> dict[str, Any]:
            out: dict[str, Any] = {"spans": {u: (s.to_json() if s else None) for u, s in spans.items()}}
            if fields:
                out["set"] = dict(fields)
            return out

        return side(self.before_spans, self.before_set), side(self.after_spans, self.after_set)

    @classmethod
    def from_json(cls, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> "Change":
        def spans(side: Mapping[str, Any] | None) -> dict[str, SpanState | None]:
            raw = (side or {}).get("spans") or {}
            return {uid: (SpanState.from_json(s) if s else None) for uid, s in raw.items()}

        return cls(
            spans(before),
            spans(after),
            dict((before or {}).get("set") or {}),
            dict((after or {}).get("set") or {}),
        )


def apply_change(state: SetState, change: Change) -> SetState:
    """Apply a change, first checking the set is in the state the change starts from."""
    for uid, expected in change.before_spans.items():
        if state.spans.get(uid) != expected:
            raise StateMismatch(f"span {uid} is not as this edit expects; reload the note")
    for name, expected in change.before_set.items():
        if getattr(state, name) != expected:
            raise StateMismatch(f"{name} is not as this edit expects; reload the note")
    spans = dict(state.spans)
    for uid, after in change.after_spans.items():
        if after is None:
            spans.pop(uid, None)
        else:
            spans[uid] = after
    return replace(state, spans=spans, **{k: v for k, v in change.after_set.items() if k in _SET_FIELDS})


def replay(base: SetState, changes: Iterable[Change]) -> SetState:
    """The set rebuilt from its starting state and the changes of its edit log, in order."""
    state = base
    for change in changes:
        state = apply_change(state, change)
    return state


def starting_state(base_spans: Mapping[str, SpanState]) -> SetState:
    """An annotator's set starts as a copy of its base with every copied span still undecided."""
    return SetState(spans={uid: replace(s, status=SpanStatus.pending.value) for uid, s in base_spans.items()})


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
        raise EditRefused(f"uid: no span {uid} in this set")
    return span


def _open(state: SetState) -> None:
    if state.status != SetStatus.open.value:
        raise EditRefused(f"status: the note is {state.status}; reopen it to edit")


@dataclass(frozen=True)
class Command:
    """One request of the editor: ``kind`` and its arguments, as the browser sent them."""

    kind: str
    uid: str | None = None
    label: str | None = None
    fragments: tuple[tuple[int, int], ...] | None = None
    text: str | None = None  # note text, skip reason
    uids: tuple[str, ...] | None = None  # accept_all: the pre-labels the physician saw


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
            raise EditRefused(f"uid: span {command.uid} exists already")
        span = SpanState(
            _label(schema, command.label or ""), check_fragments(command.fragments or (), text_length)
        )
        return Change({command.uid: None}, {command.uid: span})
    if kind in (EditKind.delete, EditKind.reject):
        _open(state)
        span = _existing(state, command.uid or "")
        if kind == EditKind.reject and span.status != SpanStatus.pending.value:
            raise EditRefused(f"uid: span {command.uid} is not an undecided pre-label")
        return Change({command.uid: span}, {command.uid: None})
    if kind == EditKind.accept:
        _open(state)
        span = _existing(state, command.uid or "")
        return Change({command.uid: span}, {command.uid: replace(span, status=SpanStatus.confirmed.value)})
    if kind == EditKind.accept_all:
        _open(state)
        pending = {u: s for u, s in state.spans.items() if s.status == SpanStatus.pending.value}
        if command.uids is not None:  # only what the physician saw when confirming
            pending = {u: s for u, s in pending.items() if u in set(command.uids)}
        return Change(pending, {u: replace(s, status=SpanStatus.confirmed.value) for u, s in pending.items()})
    if kind == EditKind.relabel:
        _open(state)
        span = _existing(state, command.uid or "")
        after = replace(span, label=_label(schema, command.label or ""), status=SpanStatus.confirmed.value)
        return Change({command.uid: span}, {command.uid: after})
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
    if kind == EditKind.submit:
        _open(state)
        undecided = sum(1 for s in state.spans.values() if s.status == SpanStatus.pending.value)
        if require_decided and undecided:
            raise EditRefused(f"status: {undecided} pre-labels are undecided; accept or reject them first")
        return Change(before_set={"status": state.status}, after_set={"status": SetStatus.submitted.value})
    raise EditRefused(f"kind: '{kind}' is not an edit")


UNDOABLE = frozenset(
    {
        EditKind.add,
        EditKind.delete,
        EditKind.reject,
        EditKind.accept,
        EditKind.accept_all,
        EditKind.relabel,
        EditKind.modify,
        EditKind.note,
    }
)
