"""An annotator's queue: only their own assignments, in order, with status."""

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import AnnotationSet, Assignment, Document, Project


@dataclass(frozen=True)
class QueueItem:
    assignment_id: int
    project_name: str
    document_external_id: str
    position: int
    status: str  # new, in progress, submitted, skipped


def annotator_queue(sessions: sessionmaker[Session], annotator_id: int) -> list[QueueItem]:
    with sessions() as db:
        rows = db.execute(
            select(
                Assignment.id,
                Project.name,
                Document.external_id,
                Assignment.queue_position,
                AnnotationSet.status,
                AnnotationSet.version,
            )
            .join(Document, Document.id == Assignment.document_id)
            .join(Project, Project.id == Assignment.project_id)
            .outerjoin(AnnotationSet, AnnotationSet.id == Assignment.annotation_set_id)
            .where(Assignment.annotator_id == annotator_id)
            .order_by(Project.name, Assignment.queue_position)
        ).all()
    items = []
    for assignment_id, project_name, external_id, position, set_status, version in rows:
        if set_status in ("submitted", "skipped"):
            status = set_status
        elif set_status == "open" and version:
            status = "in progress"
        else:
            status = "new"
        items.append(QueueItem(assignment_id, project_name, external_id, position, status))
    return items
