"""An annotator's queue: only their own assignments, in order, with status."""

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import AnnotationSet, Assignment, Document, EditEvent, Project


@dataclass(frozen=True)
class QueueItem:
    assignment_id: int
    annotation_set_id: int | None
    project_name: str
    document_external_id: str
    position: int
    status: str  # new, in progress, submitted, skipped


def annotator_queue(sessions: sessionmaker[Session], annotator_id: int) -> list[QueueItem]:
    with sessions() as db:
        rows = db.execute(
            select(
                Assignment.id,
                Assignment.annotation_set_id,
                Project.name,
                Document.external_id,
                Assignment.queue_position,
                AnnotationSet.status,
                select(EditEvent.id)
                .where(EditEvent.annotation_set_id == Assignment.annotation_set_id)
                .exists()
                .label("opened"),
            )
            .join(Document, Document.id == Assignment.document_id)
            .join(Project, Project.id == Assignment.project_id)
            .outerjoin(AnnotationSet, AnnotationSet.id == Assignment.annotation_set_id)
            # Waiting assignments (calibration gate, or a base not yet submitted) stay out of sight.
            .where(Assignment.annotator_id == annotator_id, Assignment.released_at.is_not(None))
            .order_by(Project.name, Assignment.queue_position)
        ).all()
    items = []
    for assignment_id, set_id, project_name, external_id, position, set_status, opened in rows:
        if set_status in ("submitted", "skipped"):
            status = set_status
        elif opened:
            status = "in progress"
        else:
            status = "new"
        items.append(QueueItem(assignment_id, set_id, project_name, external_id, position, status))
    return items


def next_unfinished(sessions: sessionmaker[Session], annotator_id: int) -> int | None:
    """The set of the first assignment in queue order that is neither submitted nor skipped."""
    for item in annotator_queue(sessions, annotator_id):
        if item.status in ("new", "in progress") and item.annotation_set_id is not None:
            return item.annotation_set_id
    return None
