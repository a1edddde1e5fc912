"""Which gold set of a note counts: its latest submitted one.

A note may hold an imported gold layer and an adjudicated one, and an adjudication in progress is
not gold yet; every figure, comparison and few-shot pool reads gold through this one rule.
"""

from sqlalchemy import Select, func, select

from app.db.models import AnnotationSet, Document
from app.domain.vocabulary import SetOrigin, SetStatus


def current_gold_sets(project_id: int) -> Select:
    """(document_id, set_id) of each note of the project that has gold: its latest submitted gold set."""
    return (
        select(AnnotationSet.document_id, func.max(AnnotationSet.id).label("id"))
        .join(Document, Document.id == AnnotationSet.document_id)
        .where(
            Document.project_id == project_id,
            AnnotationSet.origin == SetOrigin.gold.value,
            AnnotationSet.status == SetStatus.submitted.value,
        )
        .group_by(AnnotationSet.document_id)
    )


def current_gold_set_ids(project_id: int) -> Select:
    """The ids of ``current_gold_sets``, for an ``IN``."""
    inner = current_gold_sets(project_id).subquery()
    return select(inner.c.id)
