"""Annotation sets: starting an annotator's set from its base, copying spans with their fragments."""

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.db.models import AnnotationSet, Assignment, Relation, Span, SpanFragment
from app.domain.spans import SpanData
from app.domain.vocabulary import Condition, SetOrigin, SpanStatus


class AssignmentError(ValueError):
    """An assignment that the study design does not allow."""


def add_spans(
    db: Session,
    annotation_set: AnnotationSet,
    spans: list[SpanData],
    status: SpanStatus = SpanStatus.confirmed,
) -> list[Span]:
    rows = []
    for span in spans:
        row = Span(
            annotation_set_id=annotation_set.id,
            label=span.label,
            attributes=dict(span.attributes),
            confidence=span.confidence,
            status=status.value,
            fragments=[
                SpanFragment(ordinal=i, start=f.start, end=f.end) for i, f in enumerate(span.fragments)
            ],
        )
        db.add(row)
        rows.append(row)
    db.flush()
    return rows


def copy_set_contents(db: Session, base: AnnotationSet, target: AnnotationSet, status: SpanStatus) -> None:
    """Copy spans and relations of ``base`` into ``target``, each remembering what it came from."""
    base_spans = db.scalars(
        select(Span)
        .where(Span.annotation_set_id == base.id)
        .options(selectinload(Span.fragments))
        .order_by(Span.id)
    ).all()
    copies: dict[int, Span] = {}
    for span in base_spans:
        copy = Span(
            annotation_set_id=target.id,
            uid=span.uid,
            label=span.label,
            attributes=dict(span.attributes),
            concept_code=span.concept_code,
            concept_system=span.concept_system,
            concept_name=span.concept_name,
            base_span_id=span.id,
            status=status.value,
            confidence=span.confidence,
            fragments=[SpanFragment(ordinal=f.ordinal, start=f.start, end=f.end) for f in span.fragments],
        )
        db.add(copy)
        copies[span.id] = copy
    db.flush()
    for relation in db.scalars(select(Relation).where(Relation.annotation_set_id == base.id)):
        db.add(
            Relation(
                annotation_set_id=target.id,
                uid=relation.uid,
                type=relation.type,
                head_span_id=copies[relation.head_span_id].id,
                tail_span_id=copies[relation.tail_span_id].id,
                base_relation_id=relation.id,
                # Undecided like the copied spans, so the physician accepts or rejects each.
                status=status.value,
                confidence=relation.confidence,
            )
        )
    db.flush()


def check_base(
    condition: Condition, base_set: AnnotationSet | None, document_id: int, annotator_id: int
) -> None:
    """The base a condition allows: none for scratch (nothing of a pre-annotation may reach the
    physician); a pre-annotation set for refine_llm; another physician's submitted set for
    refine_human."""
    if condition == Condition.scratch and base_set is not None:
        raise AssignmentError("scratch: a scratch assignment has no base set")
    if condition != Condition.scratch:
        if base_set is None or base_set.document_id != document_id:
            raise AssignmentError(f"{condition}: needs a base set on the same note")
        if condition == Condition.refine_llm and base_set.origin != SetOrigin.pre_annotation:
            raise AssignmentError("refine_llm: the base must be a pre-annotation set")
        if condition == Condition.refine_human and (
            base_set.origin != SetOrigin.annotator
            or base_set.status != "submitted"
            or base_set.annotator_id == annotator_id
        ):
            raise AssignmentError("refine_human: the base must be another annotator's submitted set")


def start_set(
    db: Session, document_id: int, annotator_id: int, condition: Condition, base_set: AnnotationSet | None
) -> AnnotationSet:
    """The physician's set for a note: a copy of its base (spans undecided), or empty for scratch."""
    check_base(condition, base_set, document_id, annotator_id)
    annotation_set = AnnotationSet(
        document_id=document_id,
        origin=SetOrigin.annotator.value,
        annotator_id=annotator_id,
        base_set_id=base_set.id if base_set else None,
        condition=condition.value,
    )
    db.add(annotation_set)
    db.flush()
    if base_set is not None:
        copy_set_contents(db, base_set, annotation_set, SpanStatus.pending)
    return annotation_set


def assign(
    db: Session,
    *,
    project_id: int,
    document_id: int,
    annotator_id: int,
    condition: Condition,
    queue_position: int,
    base_set: AnnotationSet | None = None,
    is_calibration: bool = False,
) -> Assignment:
    """Put a note in an annotator's queue with the set they will work on, inside the caller's
    transaction (the base rules of ``check_base``; copied spans stay `pending` until decided)."""
    annotation_set = start_set(db, document_id, annotator_id, condition, base_set)
    assignment = Assignment(
        project_id=project_id,
        document_id=document_id,
        annotator_id=annotator_id,
        condition=condition.value,
        queue_position=queue_position,
        is_calibration=is_calibration,
        annotation_set_id=annotation_set.id,
    )
    db.add(assignment)
    db.flush()
    return assignment
