"""Who may lead which project: the one place that decides it (issue 10, "Access").

A lead sees and changes a project, and everything in it, only while a member of it (a
``project_members`` row); an admin sees every project. Pages and API routes name objects by id
(a run, a study, a gold set...), so the check first finds the project each named object belongs
to. Physicians are not decided here: they reach a note only through their own assignment
(app.services.editing.editor_context).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import (
    AnnotationSet,
    AugmentationRun,
    Batch,
    Document,
    ExportFile,
    PreAnnotationRun,
    Project,
    ProjectMember,
    Study,
    User,
)
from app.domain.vocabulary import Role
from app.services import audit

NOT_A_LEAD = "You are not a lead of this project."


class ProjectObject(StrEnum):
    """The kinds of object a lead's route names, each belonging to one project."""

    project = "project"
    document = "document"
    annotation_set = "annotation_set"
    pre_annotation_run = "pre_annotation_run"
    augmentation_run = "augmentation_run"
    study = "study"
    export = "export"
    batch = "batch"


# Where each kind keeps its project: a column of its own row, or its document's.
_PROJECT_COLUMN = {
    ProjectObject.project: (Project, Project.id),
    ProjectObject.document: (Document, Document.project_id),
    ProjectObject.pre_annotation_run: (PreAnnotationRun, PreAnnotationRun.project_id),
    ProjectObject.augmentation_run: (AugmentationRun, AugmentationRun.project_id),
    ProjectObject.study: (Study, Study.project_id),
    ProjectObject.export: (ExportFile, ExportFile.project_id),
    ProjectObject.batch: (Batch, Batch.project_id),
}

# The words of the 404 answers, in the lead's terms.
_NAMES = {
    ProjectObject.project: "project",
    ProjectObject.document: "note",
    ProjectObject.annotation_set: "annotation set",
    ProjectObject.pre_annotation_run: "run",
    ProjectObject.augmentation_run: "augmentation run",
    ProjectObject.study: "study",
    ProjectObject.export: "export",
    ProjectObject.batch: "batch",
}


class NoSuchObject(LookupError):
    """A named object does not exist (or is not in the project the route is about)."""

    def __init__(self, kind: ProjectObject, object_id: int, *, in_project: bool = False) -> None:
        self.kind, self.object_id = kind, object_id
        where = " in this project" if in_project else ""
        super().__init__(f"No such {_NAMES[kind]}{where}.")


class NotALeadOfProject(PermissionError):
    """The object exists, in a project the caller does not lead."""

    def __init__(self, project_id: int) -> None:
        self.project_id = project_id
        super().__init__(NOT_A_LEAD)


def project_of(db: Session, kind: ProjectObject, object_id: int) -> int | None:
    """The id of the project the object belongs to, or None when there is no such object."""
    if kind == ProjectObject.annotation_set:
        query = (
            select(Document.project_id)
            .join(AnnotationSet, AnnotationSet.document_id == Document.id)
            .where(AnnotationSet.id == object_id)
        )
    else:
        table, column = _PROJECT_COLUMN[kind]
        query = select(column).where(table.id == object_id)
    return db.scalar(query)


def not_of_project(db: Session, project_id: int, kind: ProjectObject, ids: Sequence[int]) -> list[int]:
    """The ids among ``ids`` that are no ``kind`` of this project (missing, or another project's).

    For ids a route reads from its query string or form (a batch filter, the runs to compare): the
    path's objects are checked by check_lead_access, these by the service that uses them.
    """
    if not ids:
        return []
    table, column = _PROJECT_COLUMN[kind]
    found = set(db.scalars(select(table.id).where(table.id.in_(set(ids)), column == project_id)))
    return sorted({i for i in ids if i not in found})


def batch_refusal(db: Session, project_id: int, batch_id: int) -> str | None:
    """Why a request may not narrow this project's notes to ``batch_id`` (None when it may)."""
    if not_of_project(db, project_id, ProjectObject.batch, [batch_id]):
        return f"batch {batch_id} is not a batch of this project"
    return None


def leads_project(db: Session, user: User, project_id: int) -> bool:
    """Whether ``user`` may see and change the project: an admin, or a lead who is a member."""
    if user.role == Role.admin.value:
        return True
    if user.role != Role.lead.value:
        return False
    member = select(ProjectMember).where(
        ProjectMember.project_id == project_id, ProjectMember.user_id == user.id
    )
    return bool(db.scalar(select(member.exists())))


def check_lead_access(
    sessions: sessionmaker[Session], user: User, named: Sequence[tuple[ProjectObject, int]]
) -> int | None:
    """Refuse unless ``user`` leads the project of the objects a route names; return that project's id.

    The first object decides the project (404 if it does not exist, NotALeadOfProject if the user does
    not lead its project); every other object must exist in the same project (404 otherwise: a run of
    this project cannot show a note of another).
    """
    if not named:
        return None
    with sessions() as db:
        (first_kind, first_id), *others = named
        project_id = project_of(db, first_kind, first_id)
        if project_id is None:
            raise NoSuchObject(first_kind, first_id)
        if not leads_project(db, user, project_id):
            raise NotALeadOfProject(project_id)
        for kind, object_id in others:
            if project_of(db, kind, object_id) != project_id:
                raise NoSuchObject(kind, object_id, in_project=True)
    return project_id


def led_project_ids(sessions: sessionmaker[Session], user: User) -> set[int] | None:
    """The projects a lead is a member of; None for an admin (every project)."""
    if user.role == Role.admin.value:
        return None
    with sessions() as db:
        if user.role != Role.lead.value:
            return set()
        return set(db.scalars(select(ProjectMember.project_id).where(ProjectMember.user_id == user.id)))


# ---- the leads of a project ---------------------------------------------------------------------------


class LeadError(ValueError):
    """A change to a project's leads that cannot be made; the message names the field."""


class NoSuchLead(LookupError):
    """The user named is not a lead of the project."""


@dataclass(frozen=True)
class ProjectLead:
    user_id: int
    username: str
    display_name: str
    is_active: bool


def project_leads(sessions: sessionmaker[Session], project_id: int) -> list[ProjectLead]:
    """The members of the project who are leads, by user name."""
    with sessions() as db:
        rows = db.execute(
            select(User.id, User.username, User.display_name, User.is_active)
            .join(ProjectMember, ProjectMember.user_id == User.id)
            .where(ProjectMember.project_id == project_id, User.role == Role.lead.value)
            .order_by(User.username)
        ).all()
    return [ProjectLead(*row) for row in rows]


def add_lead(
    sessions: sessionmaker[Session],
    project_id: int,
    username: str,
    *,
    actor_id: int | None,  # None: the command line
    client_address: str | None = None,
) -> ProjectLead:
    """Make an active lead account a lead of the project; anything else stores nothing."""
    username = (username or "").strip().lower()
    if not username:
        raise LeadError("username: the user name of a lead")
    with sessions.begin() as db:
        if db.get(Project, project_id) is None:
            raise LeadError(f"project: no project {project_id}")
        user = db.scalar(select(User).where(User.username == username))
        if user is None:
            raise LeadError(f"username: no account '{username}'")
        if not user.is_active:
            raise LeadError(f"username: the account '{username}' is disabled")
        if user.role != Role.lead.value:
            raise LeadError(f"username: '{username}' is not a lead (their role is {user.role})")
        if db.get(ProjectMember, (project_id, user.id)) is not None:
            raise LeadError(f"username: '{username}' already leads this project")
        db.add(ProjectMember(project_id=project_id, user_id=user.id))
        audit.record(
            db,
            "project.lead_add",
            user_id=actor_id,
            object_type="project",
            object_id=project_id,
            client_address=client_address,
            details={"lead": username, "lead_id": user.id},
        )
        return ProjectLead(user.id, user.username, user.display_name, user.is_active)


def remove_lead(
    sessions: sessionmaker[Session],
    project_id: int,
    user_id: int,
    *,
    actor_id: int,
    client_address: str | None = None,
) -> None:
    """Take a lead off the project. The last active lead stays: someone must be able to run it
    (an admin may add another lead first)."""
    with sessions.begin() as db:
        # Locks the project row so that two leads removing each other cannot leave it with none.
        if db.get(Project, project_id, with_for_update=True) is None:
            raise LeadError(f"project: no project {project_id}")
        user = db.get(User, user_id)
        member = db.get(ProjectMember, (project_id, user_id))
        if user is None or member is None or user.role != Role.lead.value:
            raise NoSuchLead(user_id)
        others = db.scalar(
            select(func.count())
            .select_from(ProjectMember)
            .join(User, User.id == ProjectMember.user_id)
            .where(
                ProjectMember.project_id == project_id,
                ProjectMember.user_id != user_id,
                User.role == Role.lead.value,
                User.is_active,
            )
        )
        if user.is_active and not others:
            raise LeadError(f"lead: '{user.username}' is the project's only lead; add another lead first")
        db.delete(member)
        audit.record(
            db,
            "project.lead_remove",
            user_id=actor_id,
            object_type="project",
            object_id=project_id,
            client_address=client_address,
            details={"lead": user.username, "lead_id": user.id},
        )
