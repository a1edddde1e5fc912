"""The label schema of a project and the study settings, validated before anything is stored.

A lead writes the schema as JSON; every error names the field it is about
(``entity_types[2].hotkey``) so it can be fixed without guessing.
"""

import colorsys
import json
import re
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.domain.vocabulary import Condition

_NAME = r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$"
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
# Keys the editor keeps for itself (accept, reject, undo, navigation, help).
RESERVED_HOTKEYS = frozenset({"?", "/", "z", "y", " "})


# Colours a new label gets, first unused first: Tableau 10, then colours chosen to stay clearly apart
# from those and from each other (each pair at least 20 CIELAB units apart; tests/domain checks it).
LABEL_PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#00441b", "#ffbb78", "#009e73", "#b2df8a", "#ff9da7", "#aec7e8",
    "#67001f", "#053061", "#e7298a", "#b15928",
)  # fmt: skip


def distinct_colour(taken: Iterable[str]) -> str:
    """The first palette colour no label has yet; past the palette, further hues by the golden angle."""
    used = {colour.lower() for colour in taken if isinstance(colour, str)}
    for colour in LABEL_PALETTE:
        if colour not in used:
            return colour
    step = 0
    while True:
        hue = (0.61803398875 * (len(used) + step)) % 1.0
        red, green, blue = colorsys.hls_to_rgb(hue, 0.45, 0.65)
        colour = f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"
        if colour not in used:
            return colour
        step += 1


class LabelSchemaError(ValueError):
    """A label schema or study settings that cannot be used; ``problems`` lists (field, message) with
    the field as a path (``entity_types[2].color``, for scripts), ``described`` the same problems for
    a person ("Label 3 (Drug), colour: must be a colour like #1f77b4")."""

    def __init__(self, problems: list[tuple[str, str]], data: Any = None):
        self.problems = problems
        self.described = [f"{field_in_words(field, data)}: {message}" for field, message in problems]
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))


# What a lead calls each part of the schema and of the study settings (the project page's words).
_SECTIONS = {
    "entity_types": ("Label", "Labels"),
    "relation_types": ("Relation type", "Relation types"),
    "span_attributes": ("Attribute", "Attributes"),
    "document_questions": ("Question", "Questions"),
}
_KEYS = {
    "name": "name",
    "color": "colour",
    "hotkey": "hotkey",
    "description": "description",
    "head_types": "from (head) types",
    "tail_types": "to (tail) types",
    "values": "values",
    "default": "default",
    "applies_to": "for types",
    "key": "key",
    "prompt": "question",
    "kind": "kind",
    "choices": "choices",
    "scale_min": "lowest value of the scale",
    "scale_max": "highest value of the scale",
    "required": "required",
}
STUDY_SETTING_NAMES = {
    "conditions": "conditions",
    "idle_threshold_seconds": "idle time threshold",
    "overlap": "physicians per note for agreement",
    "snap_to_tokens": "snap selections to whole words",
    "require_prelabels_decided": "every pre-label decided before submitting",
    "physicians_may_reopen": "physicians may reopen a submitted note",
    "bootstrap_seed": "seed of the confidence intervals",
}
_PATH_PART = re.compile(r"([A-Za-z_]+)|\[(\d+)\]")


def field_in_words(field: str, data: Any = None) -> str:
    """``entity_types[2].color`` as "Label 3 (Drug), colour"; ``study.overlap`` as "Study settings,
    physicians per note for agreement". ``data`` is the schema as given, for the row's name."""
    if field == "(schema)":
        return "Label schema"
    if field.startswith("study."):
        rest = field[len("study.") :]
        key = rest.split("[")[0].split(".")[0]
        return f"Study settings, {STUDY_SETTING_NAMES.get(key, rest)}"
    parts = [m.group(1) or int(m.group(2)) for m in _PATH_PART.finditer(field)]
    if not parts or parts[0] not in _SECTIONS:
        return field
    one, many = _SECTIONS[parts[0]]
    if len(parts) == 1:
        return many
    if not isinstance(parts[1], int):
        return f"{many}, {parts[1]}"
    index = parts[1]
    words = f"{one} {index + 1}"
    rows = data.get(parts[0]) if isinstance(data, dict) else None
    row = rows[index] if isinstance(rows, list) and 0 <= index < len(rows) else None
    name = row.get("key" if parts[0] == "document_questions" else "name") if isinstance(row, dict) else None
    if isinstance(name, str) and name.strip():
        words += f" ({name.strip()})"
    if len(parts) > 2 and isinstance(parts[2], str):
        words += f", {_KEYS.get(parts[2], parts[2])}"
        if len(parts) > 3 and isinstance(parts[3], int):
            words += f", item {parts[3] + 1}"
    return words


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _in_words(error: dict[str, Any]) -> str:
    """A pydantic error as a lead would say it, not as the validator does."""
    kind, context = error["type"], error.get("ctx") or {}
    field = next((part for part in reversed(error["loc"]) if isinstance(part, str)), "")
    if kind == "too_short":
        return {
            "head_types": "name at least one entity type",
            "tail_types": "name at least one entity type",
            "values": "give at least one value",
            "conditions": "choose at least one condition",
        }.get(field, "add at least one")
    if kind == "string_too_short":
        return "fill it in"
    if kind == "string_pattern_mismatch":
        return "start with a letter, then letters, digits, '_' or '-' (at most 64 characters, no spaces)"
    if kind == "missing":
        return "fill it in"
    if kind == "extra_forbidden":
        return "is not a field clinann knows"
    if kind == "enum":
        return f"choose one of {context.get('expected', '').replace(' or ', ', ')}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "must be a whole number"
    if kind in ("float_parsing", "float_type"):
        return "must be a number"
    if kind in ("bool_parsing", "bool_type"):
        return "must be yes or no"
    if kind in ("string_type", "list_type", "dict_type", "model_type"):
        return "must be " + {"string_type": "text", "list_type": "a list"}.get(kind, "an object")
    if kind == "greater_than":
        return f"must be above {_number(context['gt'])}"
    if kind == "greater_than_equal":
        return f"must be at least {_number(context['ge'])}"
    if kind == "less_than":
        return f"must be below {_number(context['lt'])}"
    if kind == "less_than_equal":
        return f"must be at most {_number(context['le'])}"
    return error["msg"].removeprefix("Value error, ")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EntityType(_Strict):
    name: str = Field(pattern=_NAME)
    color: str
    hotkey: str | None = None
    description: str = ""

    @field_validator("color")
    @classmethod
    def _colour(cls, value: str) -> str:
        if not _COLOUR.match(value):
            raise ValueError("must be a colour like #1f77b4")
        return value.lower()

    @field_validator("hotkey")
    @classmethod
    def _hotkey(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value) != 1 or not value.isprintable():
            raise ValueError("must be one printable character")
        if value.lower() in RESERVED_HOTKEYS:
            raise ValueError(f"'{value}' is reserved by the editor")
        return value.lower()


class RelationType(_Strict):
    name: str = Field(pattern=_NAME)
    head_types: list[str] = Field(min_length=1)
    tail_types: list[str] = Field(min_length=1)
    description: str = ""


class SpanAttribute(_Strict):
    """An attribute of a span such as negation or certainty, with its allowed values."""

    name: str = Field(pattern=_NAME)
    values: list[str] = Field(min_length=1)
    default: str | None = None
    applies_to: list[str] = Field(default_factory=list)  # empty: every entity type

    @model_validator(mode="after")
    def _values(self) -> "SpanAttribute":
        if len(set(self.values)) != len(self.values):
            raise ValueError("values must be unique")
        if self.default is not None and self.default not in self.values:
            raise ValueError(f"default '{self.default}' is not one of the values")
        return self


class QuestionKind(StrEnum):
    text = "text"
    choice = "choice"
    multi_choice = "multi_choice"
    scale = "scale"
    evidence = "evidence"  # answered by pointing at spans of the note


class DocumentQuestion(_Strict):
    """A document-level question: primary diagnosis, supporting evidence, confidence..."""

    key: str = Field(pattern=_NAME)
    prompt: str = Field(min_length=1)
    kind: QuestionKind
    choices: list[str] = Field(default_factory=list)
    scale_min: int = 1
    scale_max: int = 5
    required: bool = False

    @model_validator(mode="after")
    def _choices(self) -> "DocumentQuestion":
        if self.kind in (QuestionKind.choice, QuestionKind.multi_choice) and not self.choices:
            raise ValueError("a choice question needs choices")
        if self.kind == QuestionKind.scale and self.scale_min >= self.scale_max:
            raise ValueError("scale_min must be below scale_max")
        return self


MAX_ANSWER_LENGTH = 5_000


class AnswerRefused(ValueError):
    """An answer a question does not take; the message says what it takes."""


def checked_answer(question: DocumentQuestion, value: Any, span_uids: Iterable[str] = ()) -> Any:
    """The answer as it is stored, None for no answer (null, blank, empty), or AnswerRefused.

    One rule for the editor and for imports: multiple choices in the schema's order, each once;
    evidence as span uids of the note (``span_uids``), each once.
    """
    if value is None:
        return None
    kind = question.kind
    if kind == QuestionKind.text:
        if not isinstance(value, str) or len(value) > MAX_ANSWER_LENGTH:
            raise AnswerRefused(f"must be text of at most {MAX_ANSWER_LENGTH} characters")
        return value if value.strip() else None
    if kind == QuestionKind.choice:
        if not isinstance(value, str) or value not in question.choices:
            raise AnswerRefused(f"{json.dumps(value)} is not one of {', '.join(question.choices)}")
        return value
    if kind == QuestionKind.multi_choice:
        if not isinstance(value, list):
            raise AnswerRefused(f"must be a list of choices among {', '.join(question.choices)}")
        others = [v for v in value if not isinstance(v, str) or v not in question.choices]
        if others:
            raise AnswerRefused(f"{json.dumps(others[0])} is not one of {', '.join(question.choices)}")
        return [c for c in question.choices if c in value] or None
    if kind == QuestionKind.scale:
        if isinstance(value, bool) or not isinstance(value, int):
            raise AnswerRefused(f"must be a whole number from {question.scale_min} to {question.scale_max}")
        if not question.scale_min <= value <= question.scale_max:
            raise AnswerRefused(f"{value} is outside the scale {question.scale_min} to {question.scale_max}")
        return value
    # evidence: spans of the same note
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AnswerRefused("must be a list of span ids")
    known = set(span_uids)
    missing = [v for v in value if v not in known]
    if missing:
        raise AnswerRefused(f"no span has the id '{missing[0]}'")
    return list(dict.fromkeys(value)) or None


class LabelSchema(_Strict):
    entity_types: list[EntityType] = Field(default_factory=list)  # empty: a new project the lead fills in
    relation_types: list[RelationType] = Field(default_factory=list)
    span_attributes: list[SpanAttribute] = Field(default_factory=list)
    document_questions: list[DocumentQuestion] = Field(default_factory=list)

    def entity_type(self, name: str) -> EntityType | None:
        return next((e for e in self.entity_types if e.name == name), None)

    def relation_type(self, name: str) -> RelationType | None:
        return next((r for r in self.relation_types if r.name == name), None)

    def span_attribute(self, name: str) -> SpanAttribute | None:
        return next((a for a in self.span_attributes if a.name == name), None)

    def question(self, key: str) -> DocumentQuestion | None:
        return next((q for q in self.document_questions if q.key == key), None)


class StudySettings(_Strict):
    """How a project's study runs; defaults follow shared/design/metrics.md."""

    conditions: list[Condition] = Field(
        default_factory=lambda: [Condition.scratch, Condition.refine_llm, Condition.refine_human],
        min_length=1,
    )
    idle_threshold_seconds: float = Field(default=60.0, gt=0, le=3600)
    overlap: int = Field(default=2, ge=1, le=20)  # annotators per document for agreement
    snap_to_tokens: bool = True
    require_prelabels_decided: bool = False
    # A physician may reopen a note they submitted (its time and edits keep counting; off by default,
    # since a timing study usually wants a submitted note to stay as it was).
    physicians_may_reopen: bool = False
    bootstrap_seed: int = 20261122


def _location(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(schema)"


def _cross_references(schema: LabelSchema) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    entity_names = [e.name for e in schema.entity_types]
    known = set(entity_names)
    seen: dict[str, int] = {}
    for i, entity in enumerate(schema.entity_types):
        if entity.name in seen:
            problems.append((f"entity_types[{i}].name", f"'{entity.name}' is defined twice"))
        seen.setdefault(entity.name, i)
    hotkeys: dict[str, int] = {}
    for i, entity in enumerate(schema.entity_types):
        if entity.hotkey is None:
            continue
        if entity.hotkey in hotkeys:
            other = schema.entity_types[hotkeys[entity.hotkey]].name
            problems.append(
                (f"entity_types[{i}].hotkey", f"'{entity.hotkey}' is already the hotkey of {other}")
            )
        hotkeys.setdefault(entity.hotkey, i)
    relation_names: set[str] = set()
    for i, relation in enumerate(schema.relation_types):
        if relation.name in relation_names:
            problems.append((f"relation_types[{i}].name", f"'{relation.name}' is defined twice"))
        relation_names.add(relation.name)
        for side in ("head_types", "tail_types"):
            for j, name in enumerate(getattr(relation, side)):
                if name not in known:
                    problems.append((f"relation_types[{i}].{side}[{j}]", f"unknown entity type '{name}'"))
    attribute_names: set[str] = set()
    for i, attribute in enumerate(schema.span_attributes):
        if attribute.name in attribute_names:
            problems.append((f"span_attributes[{i}].name", f"'{attribute.name}' is defined twice"))
        attribute_names.add(attribute.name)
        for j, name in enumerate(attribute.applies_to):
            if name not in known:
                problems.append((f"span_attributes[{i}].applies_to[{j}]", f"unknown entity type '{name}'"))
    keys: set[str] = set()
    for i, question in enumerate(schema.document_questions):
        if question.key in keys:
            problems.append((f"document_questions[{i}].key", f"'{question.key}' is defined twice"))
        keys.add(question.key)
    return problems


def parse_label_schema(data: Any) -> LabelSchema:
    """Validate a label schema given as parsed JSON; raise LabelSchemaError naming each bad field."""
    if not isinstance(data, dict):
        raise LabelSchemaError([("(schema)", "must be a JSON object")])
    try:
        schema = LabelSchema.model_validate(data)
    except ValidationError as error:
        raise LabelSchemaError([(_location(e["loc"]), _in_words(e)) for e in error.errors()], data) from None
    problems = _cross_references(schema)
    if problems:
        raise LabelSchemaError(problems, data)
    return schema


def parse_study_settings(data: Any) -> StudySettings:
    """Validate study settings; raise LabelSchemaError naming each bad field."""
    try:
        return StudySettings.model_validate(data or {})
    except ValidationError as error:
        problems = [(f"study.{_location(e['loc'])}", _in_words(e)) for e in error.errors()]
        raise LabelSchemaError(problems) from None
