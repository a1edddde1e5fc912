"""Reading and writing brat standoff (.ann) files and brat's annotation.conf.

Offsets are code points of the text exactly as stored (a CRLF's ``\\r`` and a byte-order mark
count). Discontinuous spans are ``start end;start end``, fragments possibly out of text order; brat
writes their covered texts joined by one space. A line that cannot be read is reported with its
number; nothing is shifted or guessed.

Line kinds: T (text-bound), R (relation), A/M (attribute), N (normalization), # (note), E (event)
and * (equivalence). The app models T and R, and A, N and # lines about a T; every other line (E, *,
and A/N/# about a relation or an event) is kept verbatim in ``BratAnnotations.unmodelled`` so an
export can write it back unchanged.

brat has no place for a set's answers to the schema's document questions: they go in a sidecar
``<note>.answers.json`` beside the ``.ann`` (``write_answers``, ``read_answers``), a JSON object of
question key -> answer in which evidence names T ids of the ``.ann``.

A line that does not start with an id and a tab (``T12\\t``, ``#\\t``, ``*\\t``...) continues the text
of the T line before it: Chia wraps some covered texts that contain a line break that way.
"""

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from app.domain.label_schema import LABEL_PALETTE, RESERVED_HOTKEYS, LabelSchema, distinct_colour
from app.domain.spans import Fragment

_FRAGMENTS = re.compile(r"^\d+ \d+(;\d+ \d+)*$")
# The id patterns brat writes; any other line continues the text of the T line before it.
_LINE_START = re.compile(r"(?:T\d+|R\d+|A\d+|M\d+|N\d+|#\d*|E\d+|\*)\t")
# An annotation line whose tab after the id became spaces: reported, not taken as wrapped text.
_SPACE_FOR_TAB = re.compile(
    r"^(?:T\d+ +\S+ +\d+ \d+(?:;\d+ \d+)*(?:\s|$)|R\d+ +\S+ +Arg1:|[AM]\d+ +\S+ +[TRE]\d+(?: +\S+)? *$"
    r"|N\d+ +\S+ +[TRE]\d+ +\S+:|E\d+ +\S+:T\d+|#\d* +\S+ +[TRE]\d+(?:\s|$)|\* +\S+ +[TE]\d+ +[TE]\d+)"
)
_ROLE_ARG = re.compile(r"^([^:\s]+):(\S+)$")
_REFERABLE = ("T", "R", "E", "A", "M", "N")  # kinds whose id another line may name
_ID_KIND = re.compile(r"^([TRAMNE#])(\d*)$")

# A binary brat attribute (``A1\tNegated T1``) is a clinann span attribute with this one value.
BINARY_VALUE = "true"
ANSWERS_SUFFIX = ".answers.json"  # the sidecar of a note's document answers: <note>.answers.json
# The AnnotatorNotes text of a pre-label a physician left undecided (an export of their layer marks it):
# ``#2\tAnnotatorNotes T1\tstatus=undecided``, on a T or an R line.
UNDECIDED_NOTE = "status=undecided"
# Colours given to entity types in order: the label palette, then further distinct hues (issue 20).
PALETTE = LABEL_PALETTE
_CONF_SECTIONS = ("entities", "relations", "events", "attributes")
_ANY, _ENTITY, _EVENT = "<ANY>", "<ENTITY>", "<EVENT>"


class BratError(ValueError):
    """A line of an .ann or annotation.conf file that cannot be used, with its file and number.

    ``kind`` sorts problems for a report: "syntax", "reference" (an id no line defines), "offsets" (the
    stated text is not the text at the offsets), "bounds" (past the end of the text) or "stray-text"
    (lines after a T line that are not its text).
    """

    def __init__(self, source: str, line: int, message: str, kind: str = "syntax"):
        self.source, self.line, self.message, self.kind = source, line, message, kind
        super().__init__(f"{source}, line {line}: {message}")


@dataclass(frozen=True)
class BratEntity:
    """A T line: a label over fragments, with the text the file states for them."""

    id: str
    label: str
    fragments: tuple[Fragment, ...]
    text: str
    line: int = 0
    raw: str = field(default="", compare=False)  # the line(s) as read, continuation lines included


@dataclass(frozen=True)
class BratRelation:
    """An R line between two T entities."""

    id: str
    type: str
    arg1: str
    arg2: str
    line: int = 0
    raw: str = field(default="", compare=False)


@dataclass(frozen=True)
class BratAttribute:
    """An A (or legacy M) line about a T entity; ``value`` is None for a binary attribute."""

    id: str
    name: str
    target: str
    value: str | None = None
    line: int = 0
    raw: str = field(default="", compare=False)


@dataclass(frozen=True)
class BratNormalization:
    """An N line linking a T entity to a concept: ``N1\\tReference T1 Wikipedia:534366\\tBarack Obama``."""

    id: str
    target: str
    reference: str  # "resource:id", e.g. "UMLS:C0011849"
    text: str = ""
    type: str = "Reference"
    line: int = 0
    raw: str = field(default="", compare=False)

    @property
    def system(self) -> str:
        return self.reference.partition(":")[0]

    @property
    def code(self) -> str:
        return self.reference.partition(":")[2]


@dataclass(frozen=True)
class BratNote:
    """A # line about a T entity: ``#1\\tAnnotatorNotes T1\\ttext``."""

    id: str
    target: str
    text: str
    type: str = "AnnotatorNotes"
    line: int = 0
    raw: str = field(default="", compare=False)


@dataclass
class BratAnnotations:
    """Everything one .ann file says; ``unmodelled`` keeps the lines the app does not edit, verbatim."""

    entities: dict[str, BratEntity] = field(default_factory=dict)
    relations: list[BratRelation] = field(default_factory=list)
    attributes: list[BratAttribute] = field(default_factory=list)
    normalizations: list[BratNormalization] = field(default_factory=list)
    annotator_notes: list[BratNote] = field(default_factory=list)
    unmodelled: list[str] = field(default_factory=list)
    unmodelled_lines: list[int] = field(default_factory=list)  # line number of each unmodelled line
    continuation_lines: list[int] = field(default_factory=list)  # lines that continued a T line's text

    @property
    def notes(self) -> dict[str, list[str]]:
        """Target id -> note texts (a read-only view: add a BratNote to ``annotator_notes`` to write one)."""
        result: dict[str, list[str]] = {}
        for note in self.annotator_notes:
            result.setdefault(note.target, []).append(note.text)
        return result


@dataclass(frozen=True)
class _Deferred:
    """A line whose references can only be checked once the whole file is read."""

    kind: str  # R, A, N, #, E, *
    line: int
    raw: str
    references: tuple[str, ...]
    record: BratRelation | BratAttribute | BratNormalization | BratNote | None = None
    trigger: str | None = None  # an event's trigger must be a T


class _AnnReader:
    """Reads an .ann line by line, collecting problems instead of stopping at the first."""

    def __init__(self, source: str):
        self.source = source
        self.result = BratAnnotations()
        self.problems: list[BratError] = []
        self.defined: dict[str, int] = {}  # id -> line
        self.broken: dict[str, int] = {}  # ids of lines that could not be read -> line
        self.deferred: list[_Deferred] = []
        # The T line a continuation line would extend: None after any other line, "" after a bad T line.
        self.open_entity: str | None = None
        self.blank_run: list[str] = []

    def problem(self, line: int, message: str, kind: str = "syntax") -> None:
        self.problems.append(BratError(self.source, line, message, kind))

    def read(self, content: str) -> None:
        # A byte-order mark opening the .ann is its encoding, not an annotation (the .txt's BOM counts).
        content = content.removeprefix("\ufeff")
        for number, physical in enumerate(content.split("\n"), start=1):
            line = physical.removesuffix("\r")  # the .ann's own line ending, nothing else
            if not line.strip():
                self.blank_run.append(line)
                continue
            if _LINE_START.match(line):
                self.blank_run = []
                self.open_entity = None
                self.read_line(number, line)
            else:
                self.continue_text(number, line)
                self.blank_run = []
        self.resolve()

    def continue_text(self, number: int, line: str) -> None:
        if _SPACE_FOR_TAB.match(line):
            self.problem(number, "the id must be followed by a tab, not spaces")
            self.open_entity = None
            return
        if self.open_entity is None:
            self.problem(number, "a line must start with an id and a tab (T1, R1, A1, M1, N1, #1, E1 or *)")
            return
        if not self.open_entity:
            return  # the T line it continues is already reported
        entity = self.result.entities[self.open_entity]
        # Blank lines inside wrapped text belong to it: brat wrote the text's line breaks as they were.
        joined = "\n".join([*self.blank_run, line])
        self.result.entities[self.open_entity] = replace(
            entity, text=f"{entity.text}\n{joined}", raw=f"{entity.raw}\n{joined}"
        )
        self.result.continuation_lines.append(number)

    def define(self, number: int, ident: str) -> bool:
        if ident in self.defined:
            self.problem(number, f"{ident} is already defined on line {self.defined[ident]}")
            return False
        self.defined[ident] = number
        return True

    def read_line(self, number: int, line: str) -> None:
        parts = line.split("\t")
        ident = parts[0]
        kind = ident[0]
        try:
            if kind == "T":
                self.open_entity = ""
                self.read_entity(number, line, parts)
            elif kind == "R":
                self.read_relation(number, line, parts)
            elif kind in "AM":
                self.read_attribute(number, line, parts)
            elif kind == "N":
                self.read_normalization(number, line, parts)
            elif kind == "#":
                self.read_note(number, line, parts)
            elif kind == "E":
                self.read_event(number, line, parts)
            else:
                self.read_equivalence(number, line, parts)
        except BratError as error:
            self.problems.append(error)
            if kind in _REFERABLE and ident not in self.defined:
                self.broken.setdefault(ident, number)

    def fail(self, number: int, message: str) -> BratError:
        return BratError(self.source, number, message)

    def read_entity(self, number: int, line: str, parts: list[str]) -> None:
        if len(parts) < 3:
            raise self.fail(number, "a T line needs id, 'Label start end' and text, separated by tabs")
        label, _, offsets = parts[1].partition(" ")
        if not label:
            raise self.fail(number, "a T line needs a label before its offsets")
        if not _FRAGMENTS.match(offsets):
            raise self.fail(number, f"bad offsets '{offsets}': expected 'start end' or 'start end;start end'")
        try:
            fragments = tuple(
                Fragment(int(a), int(b)) for a, b in (piece.split(" ") for piece in offsets.split(";"))
            )
        except ValueError as error:
            raise self.fail(number, str(error)) from None
        if self.define(number, parts[0]):
            # A tab inside the covered text is kept: only the first two tabs separate fields.
            entity = BratEntity(parts[0], label, fragments, "\t".join(parts[2:]), number, line)
            self.result.entities[parts[0]] = entity
            self.open_entity = parts[0]

    def read_relation(self, number: int, line: str, parts: list[str]) -> None:
        fields = parts[1].split()
        args = dict(f.split(":", 1) for f in fields[1:] if ":" in f)
        if len(fields) != 3 or set(args) != {"Arg1", "Arg2"} or not all(args.values()):
            raise self.fail(number, f"expected 'Type Arg1:Tn Arg2:Tm', found '{parts[1]}'")
        if self.define(number, parts[0]):
            relation = BratRelation(parts[0], fields[0], args["Arg1"], args["Arg2"], number, line)
            self.deferred.append(_Deferred("R", number, line, (relation.arg1, relation.arg2), relation))

    def read_attribute(self, number: int, line: str, parts: list[str]) -> None:
        fields = parts[1].split()
        if len(fields) not in (2, 3):
            raise self.fail(
                number, f"an attribute needs 'Name Target' or 'Name Target Value', found '{parts[1]}'"
            )
        if self.define(number, parts[0]):
            value = fields[2] if len(fields) == 3 else None
            attribute = BratAttribute(parts[0], fields[0], fields[1], value, number, line)
            self.deferred.append(_Deferred("A", number, line, (attribute.target,), attribute))

    def read_normalization(self, number: int, line: str, parts: list[str]) -> None:
        fields = parts[1].split()
        if len(fields) != 3 or not re.match(r"^[^:]+:.+$", fields[2]):
            raise self.fail(number, f"a normalization needs 'Type Target Resource:Id', found '{parts[1]}'")
        if self.define(number, parts[0]):
            text = "\t".join(parts[2:])
            normalization = BratNormalization(parts[0], fields[1], fields[2], text, fields[0], number, line)
            self.deferred.append(_Deferred("N", number, line, (normalization.target,), normalization))

    def read_note(self, number: int, line: str, parts: list[str]) -> None:
        fields = parts[1].split()
        if len(fields) != 2:
            raise self.fail(number, f"a note needs 'Type Target' before its text, found '{parts[1]}'")
        note = BratNote(parts[0], fields[1], "\t".join(parts[2:]), fields[0], number, line)
        self.deferred.append(_Deferred("#", number, line, (note.target,), note))

    def read_event(self, number: int, line: str, parts: list[str]) -> None:
        fields = parts[1].split()
        pairs = [_ROLE_ARG.match(f) for f in fields]
        if not fields or not all(pairs):
            raise self.fail(number, f"an event needs 'Type:Trigger Role:Arg...', found '{parts[1]}'")
        if self.define(number, parts[0]):
            references = tuple(p.group(2) for p in pairs if p)
            self.deferred.append(_Deferred("E", number, line, references, trigger=references[0]))

    def read_equivalence(self, number: int, line: str, parts: list[str]) -> None:
        fields = parts[1].split()
        if len(fields) < 3:
            raise self.fail(number, f"an equivalence needs 'Type Id Id...', found '{parts[1]}'")
        self.deferred.append(_Deferred("*", number, line, tuple(fields[1:])))

    def resolve(self) -> None:
        """Check every reference now that all ids are known; sort lines into modelled and unmodelled."""
        result = self.result
        unmodelled: list[tuple[int, str]] = []
        for item in self.deferred:
            missing = [r for r in item.references if r not in self.defined]
            if missing:
                for ref in missing:
                    if ref in self.broken:
                        self.problem(
                            item.line,
                            f"argument {ref} is on line {self.broken[ref]}, which could not be read",
                            "reference",
                        )
                    else:
                        self.problem(
                            item.line,
                            f"unknown argument {ref}: no annotation has that id in this file",
                            "reference",
                        )
                continue
            if item.trigger is not None and item.trigger not in result.entities:
                message = f"the trigger {item.trigger} of an event must be a T annotation"
                self.problem(item.line, message, "reference")
                continue
            record = item.record
            if record is None or not all(r in result.entities for r in item.references):
                unmodelled.append((item.line, item.raw))
            elif isinstance(record, BratRelation):
                result.relations.append(record)
            elif isinstance(record, BratAttribute):
                result.attributes.append(record)
            elif isinstance(record, BratNormalization):
                result.normalizations.append(record)
            else:
                result.annotator_notes.append(record)
        unmodelled.sort()
        result.unmodelled = [raw for _, raw in unmodelled]
        result.unmodelled_lines = [number for number, _ in unmodelled]
        self.problems.sort(key=lambda p: p.line)


def parse_ann_with_problems(content: str, source: str = "<ann>") -> tuple[BratAnnotations, list[BratError]]:
    """Read every line that can be read; return the annotations and one problem per bad line."""
    reader = _AnnReader(source)
    reader.read(content)
    return reader.result, reader.problems


def parse_ann(content: str, source: str = "<ann>") -> BratAnnotations:
    """Read an .ann file; raise BratError for its first bad line."""
    result, problems = parse_ann_with_problems(content, source)
    if problems:
        raise problems[0]
    return result


def covered_text(entity: BratEntity, text: str) -> str:
    """The text at the entity's offsets as brat states it: fragments in given order, joined by a space."""
    return " ".join(text[f.start : f.end] for f in entity.fragments)


def _short(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")


def _own_line_text(entity: BratEntity) -> str | None:
    """The text on the T line itself when continuation lines followed it, else None."""
    first, newline, _ = entity.raw.partition("\n")
    parts = first.split("\t", 2)
    return parts[2] if newline and len(parts) == 3 else None


def find_offset_problems(annotations: BratAnnotations, text: str, source: str = "<ann>") -> list[BratError]:
    """One problem per T line whose stated text is not the text at its offsets; nothing is shifted."""
    problems: list[BratError] = []
    for entity in sorted(annotations.entities.values(), key=lambda e: e.line):
        if any(f.end > len(text) for f in entity.fragments):
            message = f"{entity.id} ends past the text ({len(text)} characters)"
            problems.append(BratError(source, entity.line, message, "bounds"))
            continue
        found = covered_text(entity, text)
        if found == entity.text:
            continue
        if _own_line_text(entity) == found:
            # The T line alone matches: the lines after it are stray text (two Chia files), not a wrapped
            # text, so this is no offset mismatch; it is reported all the same.
            extra = entity.raw.count("\n")
            message = (
                f"{entity.id} matches its offsets, but the {extra} line(s) after it are not an annotation "
                f"and not part of its text"
            )
            problems.append(BratError(source, entity.line, message, "stray-text"))
            continue
        message = (
            f"{entity.id} text does not match its offsets: the line says {_short(entity.text)}, "
            f"the text has {_short(found)}"
        )
        problems.append(BratError(source, entity.line, message, "offsets"))
    return problems


def check_offsets(annotations: BratAnnotations, text: str, source: str = "<ann>") -> None:
    """Every entity's stated text must be the text at its offsets; raise BratError for the first bad one."""
    problems = find_offset_problems(annotations, text, source)
    if problems:
        raise problems[0]


class _Ids:
    """Fresh ids for records given without one, numbered after the highest id already used."""

    def __init__(self, annotations: BratAnnotations):
        self.next: dict[str, int] = {}
        given = [
            *(e.id for e in annotations.entities.values()),
            *(r.id for r in annotations.relations),
            *(a.id for a in annotations.attributes),
            *(n.id for n in annotations.normalizations),
            *(n.id for n in annotations.annotator_notes),
            *(line.split("\t", 1)[0] for line in annotations.unmodelled),
        ]
        for ident in given:
            match = _ID_KIND.match(ident or "")
            if match and match.group(2):
                kind = "A" if match.group(1) == "M" else match.group(1)
                self.next[kind] = max(self.next.get(kind, 1), int(match.group(2)) + 1)

    def take(self, ident: str, kind: str) -> str:
        if ident:
            return ident
        number = self.next.get(kind, 1)
        self.next[kind] = number + 1
        return f"{kind}{number}"


def _word(value: str, what: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"{what} '{value}' must be one word without spaces or tabs")
    return value


def _one_line(text: str) -> str:
    # brat has no way to write a line break in a note or a concept name: the next line would be read
    # as a new annotation.
    return re.sub(r"\r\n|\r|\n", " ", text)


def write_ann(annotations: BratAnnotations) -> str:
    """Standard brat lines: T, R, A/M, N, # (ids kept, missing ones numbered), then unmodelled lines verbatim.

    An entity text with a line break is written as continuation lines, as Chia does; line breaks in a note
    or a concept name become spaces.
    """
    ids = _Ids(annotations)
    lines: list[str] = []
    for key, entity in annotations.entities.items():
        if not entity.fragments:
            raise ValueError(f"entity {entity.id or key} has no fragments")
        offsets = ";".join(f"{f.start} {f.end}" for f in entity.fragments)
        ident = ids.take(entity.id, "T")
        lines.append(f"{ident}\t{_word(entity.label, 'label')} {offsets}\t{entity.text}")
    for relation in annotations.relations:
        ident = ids.take(relation.id, "R")
        lines.append(
            f"{ident}\t{_word(relation.type, 'relation type')} Arg1:{relation.arg1} Arg2:{relation.arg2}"
        )
    for attribute in annotations.attributes:
        value = "" if attribute.value is None else f" {_word(attribute.value, 'attribute value')}"
        ident = ids.take(attribute.id, "A")
        lines.append(f"{ident}\t{_word(attribute.name, 'attribute')} {attribute.target}{value}")
    for normalization in annotations.normalizations:
        ident = ids.take(normalization.id, "N")
        reference = _word(normalization.reference, "reference")
        head = f"{_word(normalization.type, 'normalization type')} {normalization.target} {reference}"
        lines.append(f"{ident}\t{head}\t{_one_line(normalization.text)}")
    for note in annotations.annotator_notes:
        ident = ids.take(note.id, "#")
        lines.append(f"{ident}\t{_word(note.type, 'note type')} {note.target}\t{_one_line(note.text)}")
    lines.extend(annotations.unmodelled)
    return "".join(f"{line}\n" for line in lines)


def write_answers(answers: Mapping[str, Any]) -> str:
    """A note's answers as its ``.answers.json`` sidecar: one JSON object, question key -> answer."""
    return json.dumps(dict(answers), ensure_ascii=False, indent=2) + "\n"


def read_answers(content: str, source: str = ANSWERS_SUFFIX) -> dict[str, Any]:
    """The answers of an ``.answers.json`` sidecar; raise BratError naming the line of a bad file.

    Which keys and values a project takes is the schema's business, not the file's.
    """
    try:
        data = json.loads(content.removeprefix("\ufeff"))
    except json.JSONDecodeError as error:
        raise BratError(source, error.lineno, f"not JSON: {error.msg} at column {error.colno}") from None
    if not isinstance(data, dict):
        raise BratError(source, 1, "must be a JSON object of question key -> answer")
    return data


# --- annotation.conf -------------------------------------------------------------------------------


def _conf_arguments(spec: str, macros: Mapping[str, str], source: str, number: int) -> tuple[list, dict]:
    """'Arg1:A|B, Arg2:C, <REL-TYPE>:symmetric' -> arguments [{role, types, repeat}] and options."""
    arguments: list[dict[str, Any]] = []
    options: dict[str, str] = {}
    for piece in (p.strip() for p in spec.split(",")):
        if not piece:
            continue
        role, colon, types = piece.partition(":")
        if not colon or not role.strip() or not types.strip():
            raise BratError(source, number, f"expected 'Role:Type|Type', found '{piece}'")
        role, types = role.strip(), types.strip()
        if role.startswith("<"):
            options[role] = types
            continue
        # Roles may say how often they occur: Theme+, Cause?, Theme*, Person-Arg{2}.
        repeat_match = re.match(r"^(.*?)([?*+]|\{\d+(?:-\d+)?\})?$", role)
        name, repeat = (repeat_match.group(1), repeat_match.group(2) or "") if repeat_match else (role, "")
        expanded: list[str] = []
        for kind in types.split("|"):
            kind = kind.strip()
            expanded.extend(macros[kind].split("|") if kind in macros else [kind])
        arguments.append({"role": name, "types": expanded, "repeat": repeat})
    return arguments, options


def parse_annotation_conf(text: str, source: str = "annotation.conf") -> dict[str, Any]:
    """brat's annotation.conf as a dict: entities (nested by indentation), relations, events, attributes."""
    conf: dict[str, Any] = {"entities": [], "relations": [], "events": [], "attributes": [], "macros": {}}
    section: str | None = None
    parents: list[tuple[int, str]] = []  # (indent width, name) of the enclosing types
    for number, physical in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        line = physical.rstrip()
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        header = re.match(r"^\[(\w+)\]$", stripped)
        if header:
            section = header.group(1).lower()
            if section not in _CONF_SECTIONS:
                raise BratError(source, number, f"unknown section [{header.group(1)}]")
            parents = []
            continue
        macro = re.match(r"^(<[^>]+>)\s*=\s*(.+)$", stripped)
        if macro:
            conf["macros"][macro.group(1)] = macro.group(2).strip()
            continue
        if section is None:
            raise BratError(source, number, "a type outside any section ([entities], [relations]...)")
        indent = len(line) - len(line.lstrip())
        while parents and parents[-1][0] >= indent:
            parents.pop()
        name, *rest_parts = stripped.split(maxsplit=1)
        rest = rest_parts[0] if rest_parts else ""
        annotatable = not name.startswith("!")
        name = name.removeprefix("!")
        parent = parents[-1][1] if parents else None
        parents.append((indent, name))
        if section == "entities":
            conf["entities"].append({"name": name, "annotatable": annotatable, "parent": parent})
            continue
        arguments, options = _conf_arguments(rest, conf["macros"], source, number)
        if section == "attributes":
            targets = next((a["types"] for a in arguments if a["role"] == "Arg"), None)
            if targets is None:
                raise BratError(source, number, f"attribute {name} needs 'Arg:<ENTITY>' or 'Arg:Type|Type'")
            values = next((a["types"] for a in arguments if a["role"] == "Value"), [])
            conf["attributes"].append({"name": name, "targets": targets, "values": values})
            continue
        roles = {a["role"] for a in arguments}
        if (
            section == "relations"
            and annotatable
            and not name.startswith("<")
            and not {"Arg1", "Arg2"} <= roles
        ):
            raise BratError(source, number, f"relation {name} needs 'Arg1:Type, Arg2:Type'")
        conf[section].append(
            {
                "name": name,
                "annotatable": annotatable,
                "parent": parent,
                "arguments": arguments,
                "options": options,
            }
        )
    return conf


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _hotkey(name: str, used: set[str]) -> str | None:
    for char in name.lower():
        if "a" <= char <= "z" and char not in used and char not in RESERVED_HOTKEYS:
            used.add(char)
            return char
    return None


def collect_data_labels(documents: Iterable[BratAnnotations]) -> dict[str, Any]:
    """The labels a set of .ann files uses, in the shape label_schema_from_conf takes as ``data_labels``."""
    entities: dict[str, None] = {}
    relations: dict[str, dict[str, list[str]]] = {}
    attributes: dict[str, dict[str, list[str]]] = {}
    for document in documents:
        for entity in document.entities.values():
            entities.setdefault(entity.label)
        for relation in document.relations:
            found = relations.setdefault(relation.type, {"head_types": [], "tail_types": []})
            for side, arg in (("head_types", relation.arg1), ("tail_types", relation.arg2)):
                label = document.entities[arg].label
                if label not in found[side]:
                    found[side].append(label)
        for attribute in document.attributes:
            found = attributes.setdefault(attribute.name, {"values": [], "applies_to": []})
            value = BINARY_VALUE if attribute.value is None else attribute.value
            label = document.entities[attribute.target].label
            for key, item in (("values", value), ("applies_to", label)):
                if item not in found[key]:
                    found[key].append(item)
    return {"entities": list(entities), "relations": relations, "attributes": attributes}


def _data_relation_sides(spec: Any) -> tuple[list[str], list[str]]:
    if isinstance(spec, Mapping):
        return list(spec.get("head_types", spec.get("head", []))), list(
            spec.get("tail_types", spec.get("tail", []))
        )
    heads, tails = spec
    return list(heads), list(tails)


def label_schema_from_conf(
    conf: Mapping[str, Any], data_labels: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A clinann label schema dict from a parsed annotation.conf, with every label the data uses merged in.

    ``data_labels`` is ``collect_data_labels``'s shape: ``entities`` (labels), ``relations`` (type ->
    head_types/tail_types) and ``attributes`` (name -> values/applies_to). Event types become entity
    types, because an event's trigger is a T annotation with that label; events themselves stay unmodelled.
    """
    data = dict(data_labels or {})
    conf_entities = [e["name"] for e in conf.get("entities", []) if e.get("annotatable", True)]
    triggers = [e["name"] for e in conf.get("events", []) if e.get("annotatable", True)]
    data_entities = list(data.get("entities", data.get("entity_labels", [])))
    names = _unique([*conf_entities, *triggers, *data_entities])
    plain_entities = [n for n in names if n not in triggers or n in conf_entities]

    def expand(types: Iterable[str]) -> list[str]:
        result: list[str] = []
        for kind in types:
            if kind == _ANY:
                result.extend(names)
            elif kind == _ENTITY:
                result.extend(plain_entities)
            elif kind != _EVENT:  # arguments that are events stay in unmodelled lines
                result.append(kind)
        return _unique(result)

    used: set[str] = set()
    entity_types = []
    for name in names:
        entity: dict[str, Any] = {
            "name": name,
            "color": distinct_colour(e["color"] for e in entity_types),
            "hotkey": _hotkey(name, used),
        }
        if name in triggers and name not in conf_entities:
            entity["description"] = "Event trigger (events are kept as written, not edited)."
        entity_types.append(entity)

    relations: dict[str, dict[str, list[str]]] = {}
    for relation in conf.get("relations", []):
        if relation["name"].startswith("<") or not relation.get("annotatable", True):
            continue
        arguments = {a["role"]: a["types"] for a in relation.get("arguments", [])}
        found = relations.setdefault(relation["name"], {"head_types": [], "tail_types": []})
        found["head_types"] = _unique([*found["head_types"], *expand(arguments.get("Arg1", []))])
        found["tail_types"] = _unique([*found["tail_types"], *expand(arguments.get("Arg2", []))])
    for name, spec in dict(data.get("relations", data.get("relation_types", {}))).items():
        heads, tails = _data_relation_sides(spec)
        found = relations.setdefault(name, {"head_types": [], "tail_types": []})
        found["head_types"] = _unique([*found["head_types"], *heads])
        found["tail_types"] = _unique([*found["tail_types"], *tails])
    relation_types = [
        {"name": name, **sides}
        for name, sides in relations.items()
        if sides["head_types"] and sides["tail_types"]
    ]

    attributes: dict[str, dict[str, list[str]]] = {}
    for attribute in conf.get("attributes", []):
        targets = attribute.get("targets", [])
        if all(t == _EVENT for t in targets):
            continue  # attributes of events only: events are not modelled
        everywhere = any(t in (_ANY, _ENTITY) for t in targets)
        attributes[attribute["name"]] = {
            "values": list(attribute.get("values") or [BINARY_VALUE]),
            "applies_to": [] if everywhere else expand(targets),
        }
    for name, spec in dict(data.get("attributes", {})).items():
        values = list(spec.get("values", [])) or [BINARY_VALUE]
        applies_to = list(spec.get("applies_to", []))
        found = attributes.get(name)
        if found is None:
            attributes[name] = {"values": values, "applies_to": applies_to}
            continue
        found["values"] = _unique([*found["values"], *values])
        if found["applies_to"]:  # empty means every type already
            found["applies_to"] = _unique([*found["applies_to"], *applies_to])
    span_attributes = [{"name": name, **spec} for name, spec in attributes.items()]
    return {
        "entity_types": entity_types,
        "relation_types": relation_types,
        "span_attributes": span_attributes,
    }


def write_annotation_conf(schema: Mapping[str, Any] | LabelSchema) -> str:
    """brat's annotation.conf for a clinann label schema dict (a one-value 'true' attribute is binary)."""
    if isinstance(schema, LabelSchema):
        schema = schema.model_dump()
    entity_lines = [entity["name"] for entity in schema.get("entity_types", [])]

    def types(names: list[str]) -> str:
        # Every entity type is written as brat's own <ENTITY>: one short line instead of a long list.
        return _ENTITY if set(names) >= set(entity_lines) else "|".join(names)

    relation_lines = [
        f"{r['name']}\tArg1:{types(r['head_types'])}, Arg2:{types(r['tail_types'])}"
        for r in schema.get("relation_types", [])
    ]
    attribute_lines = []
    for attribute in schema.get("span_attributes", []):
        target = "|".join(attribute.get("applies_to") or []) or _ENTITY
        values = list(attribute.get("values", []))
        value = "" if values == [BINARY_VALUE] else f", Value:{'|'.join(values)}"
        attribute_lines.append(f"{attribute['name']}\tArg:{target}{value}")
    sections = (
        ("entities", entity_lines),
        ("relations", relation_lines),
        ("events", []),
        ("attributes", attribute_lines),
    )
    return "\n".join(f"[{name}]\n" + "".join(f"{line}\n" for line in lines) for name, lines in sections)
