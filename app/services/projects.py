"""Projects: creation with a validated label schema, and what leads see of them."""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import AnnotationSet, Assignment, Document, Project, ProjectMember
from app.domain.label_schema import parse_label_schema, parse_study_settings
from app.services import audit


class ProjectError(ValueError):
    """A project request that cannot be carried out; the message names the field."""


def create_project(
    sessions: sessionmaker[Session],
    name: str,
    label_schema: Any,
    *,
    guidelines: str = "",
    study_settings: Any = None,
    actor_id: int | None = None,
) -> Project:
    """Create a project; a bad schema raises LabelSchemaError and stores nothing."""
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ProjectError("name: 1-200 characters")
    schema = parse_label_schema(label_schema)
    study = parse_study_settings(study_settings)
    with sessions.begin() as db:
        if db.scalar(select(Project.id).where(Project.name == name)) is not None:
            raise ProjectError(f"name: a project called '{name}' exists")
        project = Project(
            name=name,
            guidelines=guidelines,
            label_schema=schema.model_dump(mode="json"),
            study_settings=study.model_dump(mode="json"),
            created_by=actor_id,
        )
        db.add(project)
        db.flush()
        if actor_id is not None:
            db.add(ProjectMember(project_id=project.id, user_id=actor_id))
        audit.record(
            db,
            "project.create",
            user_id=actor_id,
            object_type="project",
            object_id=project.id,
            details={"name": name},
        )
    return project


@dataclass(frozen=True)
class ProjectProgress:
    project: Project
    documents: int
    assignments: int
    submitted: int
    by_condition: dict[str, int]


def project_overview(sessions: sessionmaker[Session]) -> list[ProjectProgress]:
    """Every project with its document count and assignment progress per condition."""
    with sessions() as db:
        projects = list(db.scalars(select(Project).order_by(Project.name)))
        documents = dict(
            db.execute(select(Document.project_id, func.count()).group_by(Document.project_id)).all()
        )
        per_condition = db.execute(
            select(
                Assignment.project_id,
                Assignment.condition,
                func.count(),
                func.count().filter(AnnotationSet.status == "submitted"),
            )
            .outerjoin(AnnotationSet, AnnotationSet.id == Assignment.annotation_set_id)
            .group_by(Assignment.project_id, Assignment.condition)
        ).all()
    result = []
    for project in projects:
        rows = [row for row in per_condition if row[0] == project.id]
        result.append(
            ProjectProgress(
                project=project,
                documents=documents.get(project.id, 0),
                assignments=sum(row[2] for row in rows),
                submitted=sum(row[3] for row in rows),
                by_condition={row[1]: row[2] for row in rows},
            )
        )
    return result
