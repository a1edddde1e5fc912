"""A brat .txt/.ann pair as an imported document: spans, attributes, concepts, notes, relations.

Syntax and reference errors refuse the upload (with file and line). A T line whose stated text is
not the text at its offsets is imported at its offsets, never shifted, and reported as a warning
naming the line: the stored note text is what every offset refers to.
"""

from app.domain.brat import BratAnnotations, find_offset_problems, parse_ann_with_problems
from app.domain.uploads import ImportedDocument, ImportedRelation, ImportedSpan, UploadProblem


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
    for attribute in annotations.attributes:
        value = True if attribute.value is None else attribute.value
        attributes.setdefault(attribute.target, {})[attribute.name] = value
    concepts = {}
    unmodelled = list(annotations.unmodelled)
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
    for note in annotations.annotator_notes:
        if note.type == "AnnotatorNotes":
            notes.setdefault(note.target, []).append(note.text)
        else:
            unmodelled.append(note.raw)
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
            )
        )
    relations = [ImportedRelation(r.id, r.type, r.arg1, r.arg2) for r in annotations.relations]
    return ImportedDocument(
        external_id=external_id,
        text=text,
        source_file=source,
        spans=spans,
        relations=relations,
        unmodelled=unmodelled,
        has_annotations=True,
    )
