"""JSONL notes: one JSON document per line, with its spans, relations and document answers.

    {"id": "n1", "text": "...", "metadata": {},
     "spans": [{"id": "T1", "label": "Drug", "fragments": [[0, 7]], "attributes": {"negation": "absent"},
                "concept": {"system": "RxNorm", "code": "1191", "name": "aspirin"}}],
     "relations": [{"id": "R1", "type": "Strength-Drug", "head": "T2", "tail": "T1",
                    "status": "pending", "confidence": 0.7}],
     "answers": {"primary_diagnosis": "angina", "evidence": ["T1"]}}

Offsets are half-open code-point ranges of ``text`` (Python string indices). JavaScript counts UTF-16
units instead, so a character outside the Basic Multilingual Plane (an emoji) is one position here and
two there: a producer must convert. A span may also carry ``notes`` (a list of strings) and, as a
pre-label, a ``confidence`` from 0 to 1; ``concept`` may
name the concept (``"name"``). A relation's ``status`` and ``confidence`` may be left out (its layer
decides, as for spans). A span or relation with ``"status": "undecided"`` is a pre-label a physician
left undecided (an export of their layer marks them so): it is stored as pending. ``answers`` maps
the keys of the schema's document questions to their answers; an evidence answer lists span ids of the
same line. Every error names the file, the line and the field.
"""

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from app.domain.label_schema import AnswerRefused, DocumentQuestion, checked_answer
from app.domain.spans import Fragment
from app.domain.uploads import ImportedDocument, ImportedRelation, ImportedSpan

# The longest text answer the editor takes; an import may not store what the editor would refuse.
Confidence = Annotated[float, Strict(), Field(ge=0, le=1)]


@dataclass(frozen=True)
class ImportedRelationState(ImportedRelation):
    """An imported relation with the decision its file states (None: its layer decides)."""

    status: str | None = None
    confidence: float | None = None


@dataclass
class AnsweredDocument(ImportedDocument):
    """An imported note with its set's answers to the schema's document questions.

    ``line`` is where the note is in its file (JSONL); ``answers_file`` is the file the answers come
    from when it is not the note's own (a brat ``.answers.json`` beside the ``.ann``).
    """

    answers: dict[str, Any] = field(default_factory=dict)
    line: int | None = None
    answers_file: str | None = None
    # Where its annotations go when the upload has one folder per annotator ("annotator:LOGIN");
    # None: the upload's layer.
    layer: str | None = None


def answered(document: ImportedDocument) -> AnsweredDocument:
    """The document as an AnsweredDocument (relations with their state), whatever reader made it."""
    if isinstance(document, AnsweredDocument):
        return document
    values = {f.name: getattr(document, f.name) for f in fields(document)}
    values["relations"] = [
        r
        if isinstance(r, ImportedRelationState)
        else ImportedRelationState(r.id, r.type, r.head, r.tail, line=r.line)
        for r in document.relations
    ]
    return AnsweredDocument(**values)


class JsonlError(ValueError):
    """A line of a JSONL file that cannot be used: file, line and field."""

    def __init__(self, source: str, line: int, field: str, problem: str):
        self.source, self.line, self.field, self.problem = source, line, field, problem
        self.message = f"{field}: {problem}"
        super().__init__(f"{source}, line {line}: {self.message}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JsonlConcept(_Strict):
    """A concept code from a terminology: {"system": "SNOMED-CT", "code": "22298006"}."""

    system: StrictStr = Field(min_length=1)
    code: StrictStr = Field(min_length=1)
    name: StrictStr | None = None


class JsonlSpan(_Strict):
    """A label over one or more fragments of the text."""

    id: StrictStr = Field(min_length=1)
    label: StrictStr = Field(min_length=1)
    fragments: list[tuple[StrictInt, StrictInt]] = Field(min_length=1)
    attributes: dict[StrictStr, Any] = Field(default_factory=dict)
    concept: JsonlConcept | None = None
    notes: list[StrictStr] = Field(default_factory=list)
    confidence: Confidence | None = None  # of a pre-label, 0 to 1
    # Only "undecided" is written (an export's mark); pending and confirmed are read for symmetry.
    status: Literal["pending", "confirmed", "undecided"] | None = None

    @field_validator("attributes")
    @classmethod
    def _scalar_values(cls, value: dict[str, Any]) -> dict[str, Any]:
        # One message naming the key, rather than one per type a union would try.
        for key, item in value.items():
            if item is not None and not isinstance(item, str | int | float | bool):
                raise ValueError(f"'{key}' must be a string, a number, true, false or null")
        return value


class JsonlRelation(_Strict):
    """A directed relation from the head span to the tail span; a pre-label stays pending until decided."""

    id: StrictStr = Field(min_length=1)
    type: StrictStr = Field(min_length=1)
    head: StrictStr = Field(min_length=1)
    tail: StrictStr = Field(min_length=1)
    status: Literal["pending", "confirmed", "undecided"] | None = None
    confidence: Confidence | None = None


def _stored_status(status: str | None) -> str | None:
    """The span status a file's status is stored as: an undecided pre-label waits, as pending."""
    return "pending" if status == "undecided" else status


class JsonlDocument(_Strict):
    """One note and, optionally, its annotations."""

    id: StrictStr = Field(min_length=1, max_length=200)  # documents.external_id
    text: StrictStr
    metadata: dict[StrictStr, Any] = Field(default_factory=dict)
    spans: list[JsonlSpan] = Field(default_factory=list)
    relations: list[JsonlRelation] = Field(default_factory=list)
    answers: dict[StrictStr, Any] = Field(default_factory=dict)
    _line: int | None = PrivateAttr(default=None)  # where the parser found it, for later messages

    def __eq__(self, other: object) -> bool:
        # Where a document was read is not part of it: the same note read from another line is equal.
        if not isinstance(other, JsonlDocument):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # dict fields: never hashable

    def to_imported(self, source: str) -> AnsweredDocument:
        """The document as an upload carries it into a batch."""
        spans = [
            ImportedSpan(
                span.id,
                span.label,
                tuple(Fragment(start, end) for start, end in span.fragments),
                dict(span.attributes),
                span.concept.system if span.concept else None,
                span.concept.code if span.concept else None,
                span.concept.name if span.concept else None,
                tuple(span.notes),
                span.confidence,
                _stored_status(span.status),
            )
            for span in self.spans
        ]
        relations = [
            ImportedRelationState(r.id, r.type, r.head, r.tail, _stored_status(r.status), r.confidence)
            for r in self.relations
        ]
        # A line that names its spans (even none) or its answers is annotated; one without is a bare note.
        annotated = bool({"spans", "relations", "answers"} & self.model_fields_set)
        return AnsweredDocument(
            self.id,
            self.text,
            source,
            dict(self.metadata),
            spans,
            relations,
            has_annotations=annotated,
            answers=dict(self.answers),
            line=self._line,
        )

    def to_json(self) -> dict[str, Any]:
        """The document in the key order of the format, without empty optional keys."""
        spans = []
        for span in self.spans:
            item: dict[str, Any] = {
                "id": span.id,
                "label": span.label,
                "fragments": [[start, end] for start, end in span.fragments],
                "attributes": dict(span.attributes),
                "concept": span.concept.model_dump(exclude_none=True) if span.concept else None,
            }
            if span.notes:
                item["notes"] = list(span.notes)
            if span.confidence is not None:
                item["confidence"] = span.confidence
            if span.status is not None:
                item["status"] = span.status
            spans.append(item)
        relations = []
        for relation in self.relations:
            item = {"id": relation.id, "type": relation.type, "head": relation.head, "tail": relation.tail}
            for key in ("status", "confidence"):
                if getattr(relation, key) is not None:
                    item[key] = getattr(relation, key)
            relations.append(item)
        document: dict[str, Any] = {
            "id": self.id,
            "text": self.text,
            "metadata": self.metadata,
            "spans": spans,
            "relations": relations,
        }
        if self.answers:
            document["answers"] = dict(self.answers)
        return document


def _location(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def _lone_surrogate(value: str) -> int | None:
    # json.loads turns an unpaired "\ud83d" escape into a lone surrogate, which no UTF-8 file can hold.
    return next((i for i, c in enumerate(value) if "\ud800" <= c <= "\udfff"), None)


def document_problems(document: JsonlDocument) -> list[tuple[str, str]]:
    """(field, message) for what the schema alone cannot check: offsets, unique ids, relation ends."""
    problems: list[tuple[str, str]] = []
    if not document.text.strip():
        problems.append(("text", "is empty"))
    surrogate = _lone_surrogate(document.text)
    if surrogate is not None:
        problems.append(("text", f"has an unpaired UTF-16 surrogate at position {surrogate}"))
    span_ids: set[str] = set()
    for i, span in enumerate(document.spans):
        if span.id in span_ids:
            problems.append((f"spans[{i}].id", f"'{span.id}' is the id of an earlier span"))
        span_ids.add(span.id)
        for j, (start, end) in enumerate(span.fragments):
            if not 0 <= start < end <= len(document.text):
                problems.append(
                    (
                        f"spans[{i}].fragments[{j}]",
                        f"[{start}, {end}] must have 0 <= start < end <= {len(document.text)} (the text's "
                        "length in code points)",
                    )
                )
        if span.concept is not None:
            problems.extend(
                (f"spans[{i}].concept.{key}", message) for key, message in _concept_problems(span.concept)
            )
    relation_ids: set[str] = set()
    for i, relation in enumerate(document.relations):
        if relation.id in relation_ids:
            problems.append((f"relations[{i}].id", f"'{relation.id}' is the id of an earlier relation"))
        relation_ids.add(relation.id)
        for end in ("head", "tail"):
            target = getattr(relation, end)
            if target not in span_ids:
                problems.append((f"relations[{i}].{end}", f"no span has the id '{target}'"))
    return problems


def _concept_problems(concept: JsonlConcept) -> list[tuple[str, str]]:
    # A brat export writes the concept as one word, "system:code": it must be able to.
    problems = []
    if any(c.isspace() for c in concept.system) or ":" in concept.system:
        problems.append(("system", f"'{concept.system}' must be one word without ':'"))
    if any(c.isspace() for c in concept.code):
        problems.append(("code", f"'{concept.code}' must be one word without spaces"))
    return problems


def check_answers(
    questions: Sequence[DocumentQuestion], answers: Mapping[str, Any], span_ids: Iterable[str]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The answers as the editor would store them, and (field, message) for each one it would refuse.

    A null (or blank, or empty) answer is no answer and is left out; multiple choices come in the
    schema's order, each once; evidence lists span ids of the note, each once.
    """
    by_key = {q.key: q for q in questions}
    known_spans = set(span_ids)
    stored: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for key, value in answers.items():
        where = f"answers.{key}"
        question = by_key.get(key)
        if question is None:
            offered = ", ".join(by_key) or "none"
            problems.append((where, f"'{key}' is not a question of this project (its questions: {offered})"))
            continue
        try:
            answer = checked_answer(question, value, known_spans)
        except AnswerRefused as refused:
            problems.append((where, str(refused)))
            continue
        if answer is not None:
            stored[key] = answer
    return stored, problems


# Deeper than any real record; a line nested thousands deep made json.loads raise RecursionError (a 500).
MAX_NESTING = 64


def _nesting_depth(line: str) -> int:
    """The deepest nesting of arrays and objects in ``line`` (brackets inside strings not counted)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in line:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _holds_nul(value: Any) -> bool:
    """Whether a parsed value holds U+0000 anywhere (PostgreSQL text cannot store it)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


def parse_jsonl_with_problems(
    content: str, source: str = "<jsonl>"
) -> tuple[list[JsonlDocument], list[JsonlError]]:
    """Every readable document, and one error per problem (file, line, field)."""
    documents: list[JsonlDocument] = []
    problems: list[JsonlError] = []
    seen: dict[str, int] = {}
    # Split on "\n" only: U+2028 and friends are legal inside a JSON string and must not end a line.
    for number, physical in enumerate(content.removeprefix("\ufeff").split("\n"), start=1):
        line = physical.removesuffix("\r")
        if not line.strip():
            continue
        # Counted only where it could matter: a line with few brackets cannot be nested deep.
        if line.count("[") + line.count("{") > MAX_NESTING and _nesting_depth(line) > MAX_NESTING:
            problems.append(
                JsonlError(source, number, "(line)", f"nested more than {MAX_NESTING} levels deep")
            )
            continue
        try:
            data = json.loads(line)
        except RecursionError:  # cannot happen past the depth check; refused, never a 500, all the same
            problems.append(JsonlError(source, number, "(line)", "nested too deep"))
            continue
        except json.JSONDecodeError as error:
            problems.append(
                JsonlError(source, number, "(line)", f"not JSON: {error.msg} at column {error.colno}")
            )
            continue
        if not isinstance(data, dict):
            problems.append(JsonlError(source, number, "(line)", "must be a JSON object"))
            continue
        if "u0000" in line and _holds_nul(data):
            problems.append(
                JsonlError(source, number, "(line)", "holds a NUL character (\\u0000): not allowed in a note")
            )
            continue
        try:
            document = JsonlDocument.model_validate(data)
        except ValidationError as error:
            for item in error.errors():
                message = item["msg"].removeprefix("Value error, ")
                problems.append(JsonlError(source, number, _location(item["loc"]), message))
            continue
        found = document_problems(document)
        if document.id in seen:
            found.insert(0, ("id", f"'{document.id}' is already the id of line {seen[document.id]}"))
        seen.setdefault(document.id, number)
        document._line = number
        if found:
            problems.extend(JsonlError(source, number, field, message) for field, message in found)
            continue
        documents.append(document)
    return documents, problems


def parse_jsonl(content: str, source: str = "<jsonl>") -> list[JsonlDocument]:
    """The documents of a JSONL file; raise JsonlError for the first problem."""
    documents, problems = parse_jsonl_with_problems(content, source)
    if problems:
        raise problems[0]
    return documents


def write_jsonl(documents: Iterable[JsonlDocument]) -> str:
    """One JSON object per line, characters unescaped; raise ValueError for an inconsistent document."""
    lines = []
    for document in documents:
        problems = document_problems(document)
        if problems:
            raise ValueError(f"document {document.id}: " + "; ".join(f"{f}: {m}" for f, m in problems))
        line = json.dumps(document.to_json(), ensure_ascii=False)
        # Escaped, so a reader that splits lines on Unicode line separators still sees one document per line.
        lines.append(line.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029") + "\n")
    return "".join(lines)
