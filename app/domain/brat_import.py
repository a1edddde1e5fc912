"""A brat .txt/.ann pair as an imported document: spans, attributes, concepts, notes, relations,
and the answers of its ``.answers.json`` sidecar.

Syntax and reference errors refuse the upload (with file and line). A T line whose stated text is
not the text at its offsets is imported at its offsets, never shifted, and reported as a warning
naming the line: the stored note text is what every offset refers to.

A lines become span attributes (a binary one, ``A1\tNegated T1``, is ``True``); an N line of type
``Reference`` becomes the span's concept (system: the part of ``RxNorm:1191`` before the first ':').
What a span cannot hold (a second value of one attribute, a second concept) is kept verbatim.
An AnnotatorNotes ``status=undecided`` on a T or R line (an export's mark of a pre-label a physician
left undecided) is read as the span's or relation's status, pending, not kept as a note.
"""

import posixpath
import re
from collections.abc import Mapping
from dataclasses import replace

from app.domain.brat import (
    ANSWERS_SUFFIX,
    UNDECIDED_NOTE,
    BratAnnotations,
    BratError,
    find_offset_problems,
    parse_ann_with_problems,
    read_answers,
)
from app.domain.jsonl import AnsweredDocument, ImportedRelationState, answered
from app.domain.uploads import ImportedDocument, ImportedSpan, UploadProblem

# The brat reader keeps a note on a relation verbatim (it models notes on T lines only).
_RELATION_UNDECIDED = re.compile(rf"^#\d*\tAnnotatorNotes (R\d+)\t{re.escape(UNDECIDED_NOTE)}$")


def read_brat_document(
    external_id: str, text: str, ann: str, source: str
) -> tuple[ImportedDocument, list[UploadProblem], list[UploadProblem]]:
    """The document, its problems (refuse) and its warnings (report, keep)."""
    annotations, errors = parse_ann_with_problems(ann, source)
    problems = [UploadProblem(source, e.message, e.line) for e in errors]
    warnings = []
    for e in find_offset_problems(annotations, text, source):
        if e.kind == "bounds":  # a span outside the note cannot be stored at all
            problems.append(UploadProblem(source, e.message, e.line))
        elif e.kind == "offsets":
            warnings.append(UploadProblem(source, f"{e.message} (kept at its offsets)", e.line))
        else:
            warnings.append(UploadProblem(source, e.message, e.line))
    return to_imported(external_id, text, annotations, source), problems, warnings


def to_imported(external_id: str, text: str, annotations: BratAnnotations, source: str) -> ImportedDocument:
    attributes: dict[str, dict] = {}
    attribute_lines: dict[str, dict[str, int]] = {}
    unmodelled = list(annotations.unmodelled)
    for attribute in annotations.attributes:
        value = True if attribute.value is None else attribute.value
        of_span = attributes.setdefault(attribute.target, {})
        if attribute.name in of_span:  # a second value for one attribute of one span: kept as written
            unmodelled.append(attribute.raw)
            continue
        of_span[attribute.name] = value
        attribute_lines.setdefault(attribute.target, {})[attribute.name] = attribute.line
    concepts = {}
    for normalization in annotations.normalizations:
        if normalization.target in concepts:  # a second concept for one span: kept as written
            unmodelled.append(normalization.raw)
            continue
        system, _, code = normalization.reference.partition(":")
        concepts[normalization.target] = (system, code, normalization.text, normalization.type)
        if normalization.type != "Reference":
            unmodelled.append(normalization.raw)
            concepts.pop(normalization.target)
    notes: dict[str, list[str]] = {}
    undecided: set[str] = set()
    for note in annotations.annotator_notes:
        if note.type == "AnnotatorNotes" and note.text == UNDECIDED_NOTE:
            undecided.add(note.target)
        elif note.type == "AnnotatorNotes":
            notes.setdefault(note.target, []).append(note.text)
        else:
            unmodelled.append(note.raw)
    relation_ids = {r.id for r in annotations.relations}
    verbatim = []
    for line in unmodelled:
        found = _RELATION_UNDECIDED.match(line)
        if found and found.group(1) in relation_ids:
            undecided.add(found.group(1))
        else:
            verbatim.append(line)
    unmodelled = verbatim
    spans = []
    for entity in annotations.entities.values():
        concept = concepts.get(entity.id)
        spans.append(
            ImportedSpan(
                id=entity.id,
                label=entity.label,
                fragments=entity.fragments,
                attributes=attributes.get(entity.id, {}),
                concept_system=concept[0] if concept else None,
                concept_code=concept[1] if concept else None,
                concept_name=concept[2] if concept else None,
                notes=tuple(notes.get(entity.id, ())),
                status="pending" if entity.id in undecided else None,
                line=entity.line or None,
                attribute_lines=attribute_lines.get(entity.id, {}),
            )
        )
    relations = [
        ImportedRelationState(
            r.id, r.type, r.arg1, r.arg2, "pending" if r.id in undecided else None, line=r.line or None
        )
        for r in annotations.relations
    ]
    return ImportedDocument(
        external_id=external_id,
        text=text,
        source_file=source,
        spans=spans,
        relations=relations,
        unmodelled=unmodelled,
        has_annotations=True,
    )


def attach_answer_files(
    documents: list[ImportedDocument], answer_files: Mapping[str, str]
) -> tuple[list[AnsweredDocument], list[UploadProblem]]:
    """Every document, each brat note with the answers of the ``<note>.answers.json`` beside its .txt.

    ``answer_files`` maps each sidecar's path in the upload to its text. A sidecar that cannot be read,
    or that has no note beside it, is a problem naming it.
    """
    result = [answered(d) for d in documents]
    by_stem = {
        posixpath.splitext(d.source_file)[0]: i
        for i, d in enumerate(result)
        if d.source_file.endswith(".txt")
    }
    problems = []
    for name, content in answer_files.items():
        stem = name[: -len(ANSWERS_SUFFIX)]
        index = by_stem.get(stem)
        if index is None:
            problems.append(UploadProblem(name, f"answers need their note beside them: no {stem}.txt"))
            continue
        try:
            answers = read_answers(content, name)
        except BratError as error:
            problems.append(UploadProblem(name, error.message, error.line))
            continue
        # Answers alone make a layer too: the set that gave them had nothing else to say.
        result[index] = replace(result[index], answers=answers, answers_file=name, has_annotations=True)
    return result, problems
