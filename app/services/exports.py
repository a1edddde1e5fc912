"""Exports: brat standoff zip per layer, JSONL with every layer, CoNLL IOB2, and the edit log.

A layer is ``gold``, ``annotator:LOGIN`` or ``pre:NAME`` (a pre-annotation run or imported source).
Every annotator's set is its own layer, so disagreement between physicians survives the export.
``gold`` is the gold that counts, a note's latest submitted gold set (``app.services.gold``); any other
gold set of the note (an adjudication still open, a superseded gold layer) is ``gold:<set id>``.
The JSONL of every layer also gives, per note with gold and submitted physician sets, each gold
span's votes (every physician's label there) and its label distribution, for models of disagreement.
brat gets each span's attributes (A lines) and concept (N lines) and the set's relations (R lines);
its document answers go in ``<note>.answers.json`` beside the ``.ann``, which an import reads back.

An annotator's layer is what that physician decided (issue 20). A pre-label still ``pending`` in their
set (neither accepted, changed nor rejected) is theirs to decide, not their work: it is left out unless
the export asks ``undecided="mark"``, which writes it marked ``undecided`` (JSONL: ``"status":
"undecided"``; brat: an AnnotatorNotes line ``status=undecided``, as the confidence is written). A set
the physician has not changed yet (open, no edit) is left out whole; marked, its pre-labels come out.
"""

import io
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import (
    AnnotationSet,
    Document,
    DocumentAnswer,
    EditEvent,
    PreAnnotationRun,
    Project,
    Relation,
    Span,
    SpanFragment,
    User,
)
from app.domain.adjudication import Mark, distribution_of_votes, gold_votes
from app.domain.brat import (
    ANSWERS_SUFFIX,
    BratAnnotations,
    BratAttribute,
    BratEntity,
    BratNormalization,
    BratNote,
    BratRelation,
    write_ann,
    write_annotation_conf,
    write_answers,
)
from app.domain.conll import write_conll
from app.domain.label_schema import LabelSchema, QuestionKind
from app.domain.spans import Fragment
from app.domain.spreadsheet import csv_text
from app.domain.vocabulary import SetOrigin, SetStatus, SpanStatus
from app.services import audit
from app.services.gold import current_gold_sets

FORMATS = ("brat", "jsonl", "conll", "events-csv", "events-jsonl")
_T_ID = re.compile(r"^T\d+$")
_R_ID = re.compile(r"^R\d+$")


CONFIDENCE_NOTE = "confidence="  # a pre-label's confidence in brat: ``#1\tAnnotatorNotes T1\tconfidence=0.9``
# What an export does with the pre-labels a physician left undecided in their set: leave them out, or
# write them marked as undecided.
UNDECIDED_CHOICES = ("exclude", "mark")
UNDECIDED = "undecided"  # the status a marked one is written with
STATUS_NOTE = "status="  # in brat: ``#2\tAnnotatorNotes T1\tstatus=undecided``


class ExportError(ValueError):
    """An export that cannot be made; the message names the field."""


@dataclass
class LayerSpan:
    uid: str
    label: str
    fragments: tuple[Fragment, ...]
    status: str
    attributes: dict[str, Any]
    concept_system: str | None
    concept_code: str | None
    concept_name: str | None
    notes: list[str]
    confidence: float | None
    # Gold only: a span kept as genuinely ambiguous, with how many physicians gave each label.
    label_distribution: dict[str, int] | None = None

    @property
    def start(self) -> int:
        return min(f.start for f in self.fragments)

    @property
    def ambiguous(self) -> bool:
        return self.label_distribution is not None


@dataclass
class LayerRelation:
    uid: str
    type: str
    head: str  # span uids
    tail: str
    status: str
    confidence: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.uid,
            "type": self.type,
            "head": self.head,
            "tail": self.tail,
            "status": self.status,
            "confidence": self.confidence,
        }


@dataclass
class LayerSet:
    """One annotation set of one note, ready to write."""

    set_id: int
    layer: str
    origin: str
    annotator: str | None
    status: str
    condition: str | None
    note: str
    unmodelled: list[str]
    spans: list[LayerSpan] = field(default_factory=list)
    relations: list[LayerRelation] = field(default_factory=list)
    answers: dict[str, Any] = field(default_factory=dict)
    # An annotator's set the physician has not changed yet: still open, at its first version.
    untouched: bool = False


@dataclass
class ExportDocument:
    external_id: str
    text: str
    metadata: dict[str, Any]
    sets: list[LayerSet]


def _layer_name(
    annotation_set: AnnotationSet, usernames: dict[int, str], runs: dict[int, str], current_gold: set[int]
) -> str:
    """``current_gold``: the ids of the gold sets that count (``current_gold_sets``)."""
    if annotation_set.origin == SetOrigin.gold.value:
        return "gold" if annotation_set.id in current_gold else f"gold:{annotation_set.id}"
    if annotation_set.origin == SetOrigin.annotator.value:
        return f"annotator:{usernames.get(annotation_set.annotator_id, annotation_set.annotator_id)}"
    if annotation_set.origin == SetOrigin.pre_annotation.value:
        return f"pre:{runs.get(annotation_set.pre_annotation_run_id) or annotation_set.source_name}"
    return f"imported:{annotation_set.source_name or annotation_set.id}"


def load_project(
    db: Session, project_id: int, layer: str | None = None, progress: Callable[[int, int], None] | None = None
) -> tuple[Project, list[ExportDocument]]:
    """Every note of the project with its sets (only ``layer``'s when given), in a few bulk queries."""
    project = db.get(Project, project_id)
    if project is None:
        raise ExportError(f"project: no project {project_id}")
    usernames = dict(db.execute(select(User.id, User.username)).all())
    runs = dict(
        db.execute(
            select(PreAnnotationRun.id, PreAnnotationRun.name).where(
                PreAnnotationRun.project_id == project_id
            )
        ).all()
    )
    documents = list(
        db.scalars(select(Document).where(Document.project_id == project_id).order_by(Document.id))
    )
    sets = list(
        db.scalars(
            select(AnnotationSet)
            .join(Document, Document.id == AnnotationSet.document_id)
            .where(Document.project_id == project_id)
            .order_by(AnnotationSet.id)
        )
    )
    current_gold = {set_id for _, set_id in db.execute(current_gold_sets(project_id))}
    layer_sets: dict[int, LayerSet] = {}
    by_document: dict[int, list[LayerSet]] = {}
    for annotation_set in sets:
        name = _layer_name(annotation_set, usernames, runs, current_gold)
        if layer is not None and name != layer:
            continue
        item = LayerSet(
            annotation_set.id,
            name,
            annotation_set.origin,
            usernames.get(annotation_set.annotator_id) if annotation_set.annotator_id else None,
            annotation_set.status,
            annotation_set.condition,
            annotation_set.note,
            list(annotation_set.unmodelled_lines or []),
            untouched=annotation_set.origin == SetOrigin.annotator.value
            and annotation_set.status == SetStatus.open.value
            and annotation_set.version == 0,
        )
        layer_sets[annotation_set.id] = item
        by_document.setdefault(annotation_set.document_id, []).append(item)
    if layer is not None and not layer_sets:
        raise ExportError(f"layer: no layer '{layer}' in this project")
    set_ids = list(layer_sets)
    spans_by_id: dict[int, tuple[int, LayerSpan]] = {}
    for chunk_start in range(0, len(set_ids), 5000):
        chunk = set_ids[chunk_start : chunk_start + 5000]
        fragments: dict[int, list[Fragment]] = {}
        for span_id, start, end in db.execute(
            select(SpanFragment.span_id, SpanFragment.start, SpanFragment.end)
            .join(Span, Span.id == SpanFragment.span_id)
            .where(Span.annotation_set_id.in_(chunk))
            .order_by(SpanFragment.span_id, SpanFragment.ordinal)
        ):
            fragments.setdefault(span_id, []).append(Fragment(start, end))
        for row in db.execute(
            select(Span).where(Span.annotation_set_id.in_(chunk)).order_by(Span.id)
        ).scalars():
            span = LayerSpan(
                row.uid,
                row.label,
                tuple(fragments.get(row.id, ())),
                row.status,
                dict(row.attributes or {}),
                row.concept_system,
                row.concept_code,
                row.concept_name,
                list(row.notes or []),
                row.confidence,
                _ordered(row.label_distribution) if row.label_distribution is not None else None,
            )
            spans_by_id[row.id] = (row.annotation_set_id, span)
            layer_sets[row.annotation_set_id].spans.append(span)
        for relation in db.execute(
            select(Relation).where(Relation.annotation_set_id.in_(chunk)).order_by(Relation.id)
        ).scalars():
            head, tail = spans_by_id[relation.head_span_id][1], spans_by_id[relation.tail_span_id][1]
            layer_sets[relation.annotation_set_id].relations.append(
                LayerRelation(
                    relation.uid, relation.type, head.uid, tail.uid, relation.status, relation.confidence
                )
            )
        for answer in db.execute(
            select(DocumentAnswer).where(DocumentAnswer.annotation_set_id.in_(chunk))
        ).scalars():
            layer_sets[answer.annotation_set_id].answers[answer.question_key] = answer.value
        if progress:
            progress(min(chunk_start + 5000, len(set_ids)), len(set_ids))
    result = [
        ExportDocument(d.external_id, d.text, dict(d.metadata_ or {}), by_document.get(d.id, []))
        for d in documents
    ]
    return project, result


def check_undecided(undecided: str) -> str:
    """The undecided option as given, or an ExportError naming it."""
    if undecided not in UNDECIDED_CHOICES:
        raise ExportError(
            f"undecided: '{undecided}' is not a choice: exclude (leave undecided pre-labels out) or mark"
        )
    return undecided


def _decided(layer_set: LayerSet, undecided: str, evidence: set[str]) -> LayerSet | None:
    """The set as written: an annotator's set without the pre-labels its physician left undecided, or
    with them marked; None for a set to leave out. Other layers are written as they are."""
    if layer_set.origin != SetOrigin.annotator.value:
        return layer_set
    pending = SpanStatus.pending.value
    if layer_set.untouched and (undecided == "exclude" or not layer_set.spans):
        return None
    if undecided == "mark":
        return replace(
            layer_set,
            spans=[replace(s, status=UNDECIDED) if s.status == pending else s for s in layer_set.spans],
            relations=[
                replace(r, status=UNDECIDED) if r.status == pending else r for r in layer_set.relations
            ],
        )
    spans = [s for s in layer_set.spans if s.status != pending]
    kept = {s.uid for s in spans}
    relations = [r for r in layer_set.relations if r.status != pending and r.head in kept and r.tail in kept]
    answers = {
        # Evidence cites spans: only those written.
        key: [uid for uid in value if uid in kept] if key in evidence and isinstance(value, list) else value
        for key, value in layer_set.answers.items()
    }
    return replace(layer_set, spans=spans, relations=relations, answers=answers)


def _written(document: ExportDocument, undecided: str, evidence: set[str]) -> list[LayerSet]:
    """The sets of a note as an export writes them (see ``_decided``)."""
    return [s for s in (_decided(x, undecided, evidence) for x in document.sets) if s is not None]


def _evidence_keys(project: Project) -> set[str]:
    schema = LabelSchema.model_validate(project.label_schema)
    return {q.key for q in schema.document_questions if q.kind == QuestionKind.evidence}


def _ordered(distribution: dict[str, int]) -> dict[str, int]:
    """Most votes first, then by label: the order of ``app.domain.adjudication`` (JSONB keeps none)."""
    return dict(sorted(distribution.items(), key=lambda item: (-item[1], item[0])))


def _ambiguity_note(distribution: dict[str, int]) -> str:
    """The AnnotatorNotes text of an ambiguous gold span: ``ambiguous: Problem=1, O=1``."""
    return "ambiguous: " + ", ".join(f"{label}={count}" for label, count in distribution.items())


def _attribute_line(schema: LabelSchema, target: str, name: str, value: Any) -> BratAttribute | None:
    """The A line of one attribute of a span, or None when brat has nothing to say."""
    if value is None or value is False:
        return None  # brat says "not negated" by having no line
    definition = next((a for a in schema.span_attributes if a.name == name), None)
    # True (a binary line read in), or the one value of a one-valued attribute: a flag, present or not.
    if value is True or (definition is not None and definition.values == [str(value)]):
        return BratAttribute("", name, target, None)
    return BratAttribute("", name, target, str(value))


def _brat(text: str, layer_set: LayerSet, schema: LabelSchema) -> tuple[str, dict[str, Any]]:
    """The set's .ann, and its answers with evidence naming the T ids of that .ann."""
    annotations = BratAnnotations()
    t_ids: dict[str, str] = {}
    taken = {s.uid for s in layer_set.spans if _T_ID.match(s.uid)}
    counter = 0
    for span in layer_set.spans:
        if _T_ID.match(span.uid):
            ident = span.uid
        else:
            counter += 1
            while f"T{counter}" in taken:
                counter += 1
            ident = f"T{counter}"
            taken.add(ident)
        t_ids[span.uid] = ident
        covered = " ".join(text[f.start : f.end] for f in span.fragments)
        annotations.entities[ident] = BratEntity(ident, span.label, span.fragments, covered)
        for name, value in span.attributes.items():
            line = _attribute_line(schema, ident, name, value)
            if line is not None:
                annotations.attributes.append(line)
        if span.concept_code is not None:
            annotations.normalizations.append(
                BratNormalization(
                    "",
                    ident,
                    f"{span.concept_system or 'concept'}:{span.concept_code}",
                    span.concept_name or "",
                )
            )
        for note in span.notes:
            annotations.annotator_notes.append(BratNote("", ident, note))
        if span.confidence is not None and not any(n.startswith(CONFIDENCE_NOTE) for n in span.notes):
            # The form clinann's import reads back (a note read in with it is written as it was).
            annotations.annotator_notes.append(BratNote("", ident, f"{CONFIDENCE_NOTE}{span.confidence:g}"))
        if span.status == UNDECIDED and not any(n.startswith(STATUS_NOTE) for n in span.notes):
            annotations.annotator_notes.append(BratNote("", ident, f"{STATUS_NOTE}{UNDECIDED}"))
        if layer_set.origin == SetOrigin.gold.value and span.label_distribution is not None:
            annotations.annotator_notes.append(BratNote("", ident, _ambiguity_note(span.label_distribution)))
    marked = any(r.status == UNDECIDED for r in layer_set.relations)
    # A note names its relation: with undecided relations to mark, every relation gets its id here, the
    # way write_ann would number it (after the highest R id given).
    next_r = 1 + max(
        (
            int(ident[1:])
            for ident in [r.uid for r in layer_set.relations]
            + [u.split("\t", 1)[0] for u in layer_set.unmodelled]
            if _R_ID.match(ident)
        ),
        default=0,
    )
    for relation in layer_set.relations:
        ident = relation.uid if _R_ID.match(relation.uid) else ""
        if marked and not ident:
            ident, next_r = f"R{next_r}", next_r + 1
        annotations.relations.append(
            BratRelation(ident, relation.type, t_ids[relation.head], t_ids[relation.tail])
        )
        if relation.status == UNDECIDED:
            annotations.annotator_notes.append(BratNote("", ident, f"{STATUS_NOTE}{UNDECIDED}"))
    annotations.unmodelled = list(layer_set.unmodelled)
    evidence = {q.key for q in schema.document_questions if q.kind == QuestionKind.evidence}
    answers = {
        key: [t_ids.get(uid, uid) for uid in value] if key in evidence and isinstance(value, list) else value
        for key, value in layer_set.answers.items()
    }
    return write_ann(annotations), answers


def _folder(layer: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", layer.replace(":", "-"))


def export_brat(
    project: Project, documents: list[ExportDocument], layer: str | None, undecided: str = "exclude"
) -> bytes:
    """A zip: annotation.conf and, per layer (a folder each when several), .txt and .ann per note,
    with ``.answers.json`` beside the ``.ann`` of a set that answered the document questions."""
    schema = LabelSchema.model_validate(project.label_schema)
    evidence = _evidence_keys(project)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("annotation.conf", write_annotation_conf(project.label_schema))
        for document in documents:
            for layer_set in _written(document, undecided, evidence):
                folder = "" if layer else f"{_folder(layer_set.layer)}/"
                stem = f"{folder}{document.external_id}"
                ann, answers = _brat(document.text, layer_set, schema)
                archive.writestr(f"{stem}.txt", document.text.encode("utf-8"))
                archive.writestr(f"{stem}.ann", ann)
                if answers:
                    archive.writestr(f"{stem}{ANSWERS_SUFFIX}", write_answers(answers))
    return buffer.getvalue()


def _span_json(span: LayerSpan) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": span.uid,
        "label": span.label,
        "fragments": [[f.start, f.end] for f in span.fragments],
        "attributes": span.attributes,
        "concept": (
            {"system": span.concept_system, "code": span.concept_code, "name": span.concept_name}
            if span.concept_code is not None
            else None
        ),
    }
    if span.notes:
        item["notes"] = span.notes
    if span.confidence is not None:
        item["confidence"] = span.confidence
    if span.status == UNDECIDED:  # the import format: only a marked one says so
        item["status"] = UNDECIDED
    return item


def _layer_span_json(layer_set: LayerSet, span: LayerSpan) -> dict[str, Any]:
    """A span in the JSONL of every layer; a gold span says whether it was kept as ambiguous."""
    item = {**_span_json(span), "status": span.status, "confidence": span.confidence}
    if layer_set.origin == SetOrigin.gold.value:
        item["ambiguous"] = span.ambiguous
        if span.label_distribution is not None:
            item["label_distribution"] = span.label_distribution
    return item


def _adjudication(document: ExportDocument) -> dict[str, Any] | None:
    """Each span of the note's gold with every physician's vote there (their label, or None for
    nothing) and its label distribution: the stored one of an ambiguous span, else the votes'.
    None for a note without gold or without a submitted physician set."""
    gold = next((s for s in document.sets if s.layer == "gold"), None)
    latest: dict[str, LayerSet] = {}  # a physician with two submitted sets of one note: the latest
    for layer_set in document.sets:
        if (
            layer_set.origin == SetOrigin.annotator.value
            and layer_set.status == SetStatus.submitted.value
            and layer_set.annotator is not None
        ):
            latest[layer_set.annotator] = layer_set
    if gold is None or not latest:
        return None
    marks = {
        login: [
            Mark(login, s.uid, s.label, tuple((f.start, f.end) for f in s.fragments)) for s in physician.spans
        ]
        for login, physician in latest.items()
    }
    votes = gold_votes(
        [(s.uid, s.label, tuple((f.start, f.end) for f in s.fragments)) for s in gold.spans], marks
    )
    return {
        "gold_layer": gold.layer,
        "physicians": sorted(latest),
        "spans": {
            span.uid: {
                "label": span.label,
                "votes": votes[span.uid],
                "label_distribution": (
                    span.label_distribution
                    if span.label_distribution is not None
                    else distribution_of_votes(votes[span.uid])
                ),
                "ambiguous": span.ambiguous,
            }
            for span in gold.spans
        },
    }


def export_jsonl(
    documents: list[ExportDocument],
    layer: str | None,
    undecided: str = "exclude",
    evidence: set[str] = frozenset(),
) -> str:
    """With a layer: the import format (spans at top level). Without: every layer of every note, and
    for a note with gold and submitted physician sets its ``adjudication``: each gold span's votes
    (counted on the physicians' whole sets, as the adjudication page shows them)."""
    lines = []
    for document in documents:
        written = _written(document, undecided, evidence)
        if layer is not None:
            for layer_set in written:
                lines.append(
                    {
                        "id": document.external_id,
                        "text": document.text,
                        "metadata": document.metadata,
                        "spans": [_span_json(s) for s in layer_set.spans],
                        "relations": [r.to_json() for r in layer_set.relations],
                        "answers": layer_set.answers,
                    }
                )
            continue
        line: dict[str, Any] = {
            "id": document.external_id,
            "text": document.text,
            "metadata": document.metadata,
            "layers": [
                {
                    "layer": s.layer,
                    "origin": s.origin,
                    "annotator": s.annotator,
                    "status": s.status,
                    "condition": s.condition,
                    "note": s.note,
                    "spans": [_layer_span_json(s, x) for x in s.spans],
                    "relations": [r.to_json() for r in s.relations],
                    "answers": s.answers,
                    "unmodelled": s.unmodelled,
                }
                for s in written
            ],
        }
        adjudication = _adjudication(document)
        if adjudication is not None:
            line["adjudication"] = adjudication
        lines.append(line)
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)


def export_conll(project: Project, documents: list[ExportDocument], layer: str) -> str:
    """CoNLL IOB2 of one layer; a ``# doc_id`` comment starts each note (overlaps: see app/domain/conll).
    It cannot mark a label undecided: an annotator's undecided pre-labels are left out."""
    order = [e["name"] for e in project.label_schema.get("entity_types", [])]
    evidence = _evidence_keys(project)
    parts = []
    for document in documents:
        for layer_set in _written(document, "exclude", evidence):
            parts.append(
                f"# doc_id = {document.external_id}\n" + write_conll(document.text, layer_set.spans, order)
            )
    return "\n".join(parts)


EVENT_COLUMNS = [
    "event_id",
    "document",
    "layer",
    "user",
    "page_session",
    "kind",
    "client_id",
    "client_monotonic_ms",
    "client_wall_time",
    "server_time",
    "set_version",
    "before",
    "after",
]


def export_events(db: Session, project_id: int, fmt: str) -> str:
    """The edit log of every set of the project: CSV or JSONL, one event a row."""
    rows = db.execute(
        select(EditEvent, Document.external_id, User.username, AnnotationSet)
        .join(AnnotationSet, AnnotationSet.id == EditEvent.annotation_set_id)
        .join(Document, Document.id == AnnotationSet.document_id)
        .join(User, User.id == EditEvent.user_id)
        .where(Document.project_id == project_id)
        .order_by(EditEvent.id)
    ).all()
    records = []
    for event, external_id, username, annotation_set in rows:
        records.append(
            {
                "event_id": event.id,
                "document": external_id,
                "layer": f"annotator:{username}"
                if annotation_set.origin == SetOrigin.annotator.value
                else annotation_set.origin,
                "user": username,
                "page_session": event.page_session_id,
                "kind": event.kind,
                "client_id": event.client_id,
                "client_monotonic_ms": event.client_monotonic_ms,
                "client_wall_time": event.client_wall_time.isoformat() if event.client_wall_time else None,
                "server_time": event.server_time.isoformat(),
                "set_version": event.set_version,
                "before": event.before,
                "after": event.after,
            }
        )
    if fmt == "events-jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return csv_text(
        EVENT_COLUMNS,
        (
            [json.dumps(record[c]) if c in ("before", "after") else record.get(c) for c in EVENT_COLUMNS]
            for record in records
        ),
    )


@dataclass(frozen=True)
class ExportFile:
    name: str
    media_type: str
    content: bytes
    documents: int


def export_project(
    sessions: sessionmaker[Session],
    project_id: int,
    fmt: str,
    layer: str | None = None,
    *,
    actor_id: int | None,
    client_address: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    undecided: str = "exclude",
) -> ExportFile:
    """Make one export of a project and audit it. ``undecided``: what to do with the pre-labels a
    physician left undecided in their set, ``exclude`` or ``mark`` (not for CoNLL); the edit log
    ignores it."""
    _check_request(fmt, layer, undecided)
    with sessions() as db:
        if fmt.startswith("events"):
            project = db.get(Project, project_id)
            if project is None:
                raise ExportError(f"project: no project {project_id}")
            content = export_events(db, project_id, fmt).encode("utf-8")
            count = 0
        else:
            project, documents = load_project(db, project_id, layer, progress)
            count = len(documents)
            if fmt == "brat":
                content = export_brat(project, documents, layer, undecided)
            elif fmt == "jsonl":
                content = export_jsonl(documents, layer, undecided, _evidence_keys(project)).encode("utf-8")
            else:
                content = export_conll(project, documents, layer).encode("utf-8")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", project.name).strip("-") or "project"
    suffix = {
        "brat": ".zip",
        "jsonl": ".jsonl",
        "conll": ".conll",
        "events-csv": "-events.csv",
        "events-jsonl": "-events.jsonl",
    }[fmt]
    media = {
        "brat": "application/zip",
        "jsonl": "application/x-ndjson",
        "conll": "text/plain",
        "events-csv": "text/csv",
        "events-jsonl": "application/x-ndjson",
    }[fmt]
    marked = "-undecided-marked" if undecided == "mark" and not fmt.startswith("events") else ""
    name = f"{stem}{'-' + _folder(layer) if layer else ''}{marked}{suffix}"
    with sessions.begin() as db:
        audit.record(
            db,
            "export",
            user_id=actor_id,
            object_type="project",
            object_id=project_id,
            client_address=client_address,
            details={
                "format": fmt,
                "layer": layer,
                "undecided": undecided,
                "documents": count,
                "bytes": len(content),
            },
        )
    return ExportFile(name, media, content, count)


def _check_request(fmt: str, layer: str | None, undecided: str) -> None:
    if fmt not in FORMATS:
        raise ExportError(f"format: one of {', '.join(FORMATS)}")
    if fmt == "conll" and not layer:
        raise ExportError("layer: CoNLL holds one layer; name it (gold, annotator:LOGIN or pre:NAME)")
    check_undecided(undecided)
    if fmt == "conll" and undecided == "mark":
        raise ExportError(
            "undecided: CoNLL cannot mark a label as undecided; export it with them left out (exclude), "
            "or choose brat or JSONL to mark them"
        )


# ---- exports in the background --------------------------------------------------------------------


def request_export(
    sessions: sessionmaker[Session],
    project_id: int,
    fmt: str,
    layer: str | None,
    *,
    actor_id: int | None,
    client_address: str | None = None,
    undecided: str = "exclude",
) -> int:
    """Record an export to make in the background, audited, and queue its job; return its id."""
    from app.db.models import ExportFile as ExportRow
    from app.jobs import defer

    _check_request(fmt, layer, undecided)
    with sessions.begin() as db:
        if db.get(Project, project_id) is None:
            raise ExportError(f"project: no project {project_id}")
        row = ExportRow(project_id=project_id, format=fmt, layer=layer or None, requested_by=actor_id)
        db.add(row)
        db.flush()
        export_id = row.id
        audit.record(
            db,
            "export.requested",
            user_id=actor_id,
            object_type="export",
            object_id=export_id,
            client_address=client_address,
            details={"project_id": project_id, "format": fmt, "layer": layer or None, "undecided": undecided},
        )
    # The row has no column for it (no migration for one option): the job carries it, the audit keeps it.
    defer("make_export", export_id=export_id, undecided=undecided)
    return export_id


def make_export(sessions: sessionmaker[Session], export_id: int, folder, undecided: str = "exclude") -> None:
    """The job: make the file, reporting progress as it goes; a failure is recorded, not lost."""
    from datetime import UTC, datetime
    from pathlib import Path

    from sqlalchemy import update

    from app.db.models import ExportFile as ExportRow

    with sessions.begin() as db:
        row = db.get(ExportRow, export_id)
        if row is None or row.status != "queued":
            return
        row.status = "running"
        project_id, fmt, layer, actor = row.project_id, row.format, row.layer, row.requested_by

    def progress(done: int, total: int) -> None:
        with sessions.begin() as db:
            db.execute(update(ExportRow).where(ExportRow.id == export_id).values(done=done, total=total))

    try:
        result = export_project(
            sessions, project_id, fmt, layer, actor_id=actor, progress=progress, undecided=undecided
        )
        target = Path(folder) / f"{export_id}-{result.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(result.content)
        values = {
            "status": "succeeded",
            "file_name": result.name,
            "path": str(target),
            "size_bytes": len(result.content),
        }
    except Exception as error:  # recorded for the lead; the type only (messages may quote notes)
        values = {
            "status": "failed",
            "error": type(error).__name__ if not isinstance(error, ExportError) else str(error),
        }
    with sessions.begin() as db:
        db.execute(
            update(ExportRow).where(ExportRow.id == export_id).values(**values, finished_at=datetime.now(UTC))
        )


def list_exports(sessions: sessionmaker[Session], project_id: int):
    from app.db.models import ExportFile as ExportRow

    with sessions() as db:
        return list(
            db.scalars(
                select(ExportRow)
                .where(ExportRow.project_id == project_id)
                .order_by(ExportRow.id.desc())
                .limit(20)
            )
        )
