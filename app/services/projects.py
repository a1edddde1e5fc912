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


def create_project(sessions: sessionmaker[Session], name: str, label_schema: Any, **options: Any) -> Project:
    """Create a project (``options`` as add_project's); a bad schema raises LabelSchemaError and stores
    nothing."""
    with sessions.begin() as db:
        return add_project(db, name, label_schema, **options)


def add_project(
    db: Session,
    name: str,
    label_schema: Any,
    *,
    guidelines: str = "",
    study_settings: Any = None,
    actor_id: int | None = None,
) -> Project:
    """A new project in the caller's transaction (an import creates its project with its notes, all or
    nothing); its creator leads it."""
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ProjectError("name: 1-200 characters")
    schema = parse_label_schema(label_schema)
    study = parse_study_settings(study_settings)
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


def project_overview(
    sessions: sessionmaker[Session], project_ids: set[int] | None = None
) -> list[ProjectProgress]:
    """The projects (those of ``project_ids``, or every one) with their document counts and
    assignment progress per condition."""
    with sessions() as db:
        query = select(Project).order_by(Project.name)
        if project_ids is not None:
            query = query.where(Project.id.in_(project_ids))
        projects = list(db.scalars(query))
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


def labels_in_use(db: Session, project_id: int) -> tuple[set[str], set[str]]:
    """Entity labels and relation types that some set of the project uses."""
    from app.db.models import Relation, Span

    labels = set(
        db.scalars(
            select(Span.label)
            .distinct()
            .join(AnnotationSet, AnnotationSet.id == Span.annotation_set_id)
            .join(Document, Document.id == AnnotationSet.document_id)
            .where(Document.project_id == project_id)
        )
    )
    relation_types = set(
        db.scalars(
            select(Relation.type)
            .distinct()
            .join(AnnotationSet, AnnotationSet.id == Relation.annotation_set_id)
            .join(Document, Document.id == AnnotationSet.document_id)
            .where(Document.project_id == project_id)
        )
    )
    return labels, relation_types


def update_project(
    sessions: sessionmaker[Session],
    project_id: int,
    *,
    name: str,
    guidelines: str,
    label_schema: Any,
    study_settings: Any,
    actor_id: int | None,
) -> Project:
    """Change a project's name, guidelines, schema and study; labels in use cannot disappear."""
    from app.domain.label_schema import LabelSchemaError

    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ProjectError("name: 1-200 characters")
    schema = parse_label_schema(label_schema)
    study = parse_study_settings(study_settings)
    with sessions.begin() as db:
        project = db.get(Project, project_id, with_for_update=True)
        if project is None:
            raise ProjectError(f"project: no project {project_id}")
        clash = db.scalar(select(Project.id).where(Project.name == name, Project.id != project_id))
        if clash is not None:
            raise ProjectError(f"name: a project called '{name}' exists")
        labels, relation_types = labels_in_use(db, project_id)
        problems = [
            ("entity_types", f"'{label}' is used by annotations and cannot be removed")
            for label in sorted(labels - {e.name for e in schema.entity_types})
        ]
        problems += [
            ("relation_types", f"'{kind}' is used by annotations and cannot be removed")
            for kind in sorted(relation_types - {r.name for r in schema.relation_types})
        ]
        if problems:
            raise LabelSchemaError(problems, label_schema)
        before = {
            "name": project.name,
            "label_schema": project.label_schema,
            "study_settings": project.study_settings,
        }
        project.name, project.guidelines = name, guidelines
        project.label_schema = schema.model_dump(mode="json")
        project.study_settings = study.model_dump(mode="json")
        audit.record(
            db,
            "project.update",
            user_id=actor_id,
            object_type="project",
            object_id=project_id,
            details={
                "before": before,
                "after": {
                    "name": name,
                    "label_schema": project.label_schema,
                    "study_settings": project.study_settings,
                },
            },
        )
    return project
