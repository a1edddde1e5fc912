"""Reading brat standoff (.ann) files.

Offsets are code points of the text exactly as stored (a CRLF's ``\\r`` and a byte-order mark
count). Discontinuous spans are ``start end;start end``. A line that cannot be read is reported
with its number; nothing is shifted or guessed.
"""

import re
from dataclasses import dataclass, field

from app.domain.spans import Fragment

_FRAGMENTS = re.compile(r"^\d+ \d+(;\d+ \d+)*$")


class BratError(ValueError):
    def __init__(self, source: str, line: int, message: str):
        self.source, self.line = source, line
        super().__init__(f"{source}, line {line}: {message}")


@dataclass(frozen=True)
class BratEntity:
    id: str
    label: str
    fragments: tuple[Fragment, ...]
    text: str
    line: int


@dataclass(frozen=True)
class BratRelation:
    id: str
    type: str
    arg1: str
    arg2: str
    line: int


@dataclass
class BratAnnotations:
    entities: dict[str, BratEntity] = field(default_factory=dict)
    relations: list[BratRelation] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)  # target id -> AnnotatorNotes


def parse_ann(content: str, source: str = "<ann>") -> BratAnnotations:
    """Parse T, R and # lines; other line kinds (E, A, N, *) are kept for later capabilities."""
    result = BratAnnotations()
    for number, raw in enumerate(content.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        kind = line[0]
        parts = line.split("\t")
        if kind == "T":
            if len(parts) < 3:
                raise BratError(source, number, "a T line needs id, 'Label start end' and text")
            label, _, offsets = parts[1].partition(" ")
            if not _FRAGMENTS.match(offsets):
                raise BratError(source, number, f"bad offsets '{offsets}'")
            try:
                fragments = tuple(
                    Fragment(int(a), int(b)) for a, b in (piece.split(" ") for piece in offsets.split(";"))
                )
            except ValueError as error:
                raise BratError(source, number, str(error)) from None
            result.entities[parts[0]] = BratEntity(parts[0], label, fragments, "\t".join(parts[2:]), number)
        elif kind == "R":
            if len(parts) < 2:
                raise BratError(source, number, "an R line needs id and 'Type Arg1:T1 Arg2:T2'")
            fields = parts[1].split()
            args = dict(f.split(":", 1) for f in fields[1:] if ":" in f)
            if len(fields) != 3 or "Arg1" not in args or "Arg2" not in args:
                raise BratError(source, number, "expected 'Type Arg1:Tn Arg2:Tm'")
            result.relations.append(BratRelation(parts[0], fields[0], args["Arg1"], args["Arg2"], number))
        elif kind == "#":
            if len(parts) >= 3:
                target = parts[1].split(" ")[-1]
                result.notes.setdefault(target, []).append(parts[2])
    for relation in result.relations:
        for arg in (relation.arg1, relation.arg2):
            if arg not in result.entities:
                raise BratError(source, relation.line, f"relation argument {arg} is not an entity")
    return result


def check_offsets(annotations: BratAnnotations, text: str, source: str = "<ann>") -> None:
    """Every entity's stated text must be the text at its offsets (fragments joined by a space)."""
    for entity in annotations.entities.values():
        if any(f.end > len(text) for f in entity.fragments):
            raise BratError(source, entity.line, f"{entity.id} ends past the text ({len(text)})")
        covered = " ".join(text[f.start : f.end] for f in entity.fragments)
        if covered != entity.text:
            raise BratError(source, entity.line, f"{entity.id} text does not match its offsets")
