"""Study design: preview and commit a counterbalanced design, the calibration gate, releases.

The design itself is pure (app/domain/study_design.py); this module turns it into assignments in
one transaction. Calibration notes go to everyone first; the rest waits until the lead, having read
the calibration agreement, releases the study. A refine_human note waits until its base physician
has submitted the scratch set it refines; the submission releases it (``release_refinements``).
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, null, select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import AnnotationSet, Assignment, Document, PreAnnotationRun, Project, Study, User
from app.domain.study_design import PlannedAssignment, StudyDesignError, StudyPlan, design_study, summarise
from app.domain.vocabulary import Condition, Role, SetOrigin, StudyStatus
from app.services import access, audit
from app.services.annotation_sets import start_set


def _from_design(error: StudyDesignError) -> "StudyError":
    """The design's error, its field named once."""
    message = str(error)
    prefix = f"{error.field}: "
    return StudyError(error.field, message[len(prefix) :] if message.startswith(prefix) else message)


class StudyError(ValueError):
    """A study that cannot be designed or changed; ``field`` names what to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class StudyRequest:
    """What the lead chooses on the design page."""

    name: str
    annotators: list[str]  # logins
    shares: dict[str, float]  # condition -> share of the documents
    overlap_documents: int = 0
    overlap_annotators: int = 2
    calibration_documents: int = 0  # how many of the chosen notes make the calibration batch
    batch_id: int | None = None  # None: every note of the project
    seed: int = 0


@dataclass(frozen=True)
class Preview:
    plan: StudyPlan
    assignments: list[PlannedAssignment]
    summary: dict[str, Any]
    base_run_id: int | None


def _plan(
    db: Session, project_id: int, request: StudyRequest
) -> tuple[StudyPlan, dict[str, int], dict[str, int]]:
    if not request.name.strip() or len(request.name) > 200:
        raise StudyError("name", "give the study a name of 1 to 200 characters")
    logins = sorted(set(request.annotators))
    users = {
        u.username: u.id
        for u in db.scalars(select(User).where(User.username.in_(logins), User.is_active))
        if u.role == Role.annotator.value
    }
    unknown = [login for login in logins if login not in users]
    if unknown:
        raise StudyError("annotators", f"not active annotators: {', '.join(unknown)}")
    if not logins:
        raise StudyError("annotators", "choose at least one annotator")
    query = (
        select(Document.id, Document.external_id)
        .where(Document.project_id == project_id)
        .order_by(Document.id)
    )
    if request.batch_id is not None:
        if refusal := access.batch_refusal(db, project_id, request.batch_id):
            raise StudyError("batch_id", refusal)
        query = query.where(Document.batch_id == request.batch_id)
    taken = set(db.scalars(select(Assignment.document_id).where(Assignment.project_id == project_id)))
    documents = {external: i for i, external in db.execute(query).all() if i not in taken}
    if not documents:
        raise StudyError("documents", "no note left that is not in a study already")
    names = list(documents)
    if not 0 <= request.calibration_documents <= len(names):
        raise StudyError("calibration_documents", f"must be between 0 and {len(names)}")
    calibration = names[: request.calibration_documents]
    try:
        plan = StudyPlan(
            documents=names[request.calibration_documents :],
            annotators=logins,
            conditions=dict(request.shares),
            overlap_documents=request.overlap_documents,
            overlap_annotators=request.overlap_annotators,
            calibration_documents=calibration,
            seed=request.seed,
        )
    except StudyDesignError as error:
        raise _from_design(error) from None
    return plan, documents, users


def _base_run(db: Session, project_id: int) -> PreAnnotationRun | None:
    return db.scalar(
        select(PreAnnotationRun).where(
            PreAnnotationRun.project_id == project_id, PreAnnotationRun.is_study_base
        )
    )


def preview_study(sessions: sessionmaker[Session], project_id: int, request: StudyRequest) -> Preview:
    """The design as it would be committed: per physician and condition counts, nothing stored."""
    with sessions() as db:
        plan, _, _ = _plan(db, project_id, request)
        base_run = _base_run(db, project_id)
    try:
        assignments = design_study(plan)
    except StudyDesignError as error:
        raise _from_design(error) from None
    needs_llm = any(a.condition == Condition.refine_llm.value for a in assignments)
    if needs_llm and base_run is None:
        raise StudyError("shares", "refine_llm needs a pre-annotation run marked as the study's base")
    return Preview(plan, assignments, summarise(assignments), base_run.id if base_run else None)


def _pre_labels(db: Session, run_id: int | None, document_ids: list[int]) -> dict[int, AnnotationSet]:
    if run_id is None or not document_ids:
        return {}
    return {
        s.document_id: s
        for s in db.scalars(
            select(AnnotationSet).where(
                AnnotationSet.pre_annotation_run_id == run_id, AnnotationSet.document_id.in_(document_ids)
            )
        )
    }


def commit_study(
    sessions: sessionmaker[Session], project_id: int, request: StudyRequest, *, user_id: int | None
) -> int:
    """Store the design's assignments in one transaction; calibration notes are released at once."""
    preview = preview_study(sessions, project_id, request)
    now = datetime.now(UTC)
    with sessions.begin() as db:
        if db.get(Project, project_id) is None:
            raise StudyError("project", f"no project {project_id}")
        plan, documents, users = _plan(db, project_id, request)  # again, inside the transaction
        calibrating = bool(plan.calibration_documents)
        study = Study(
            project_id=project_id,
            name=request.name.strip(),
            seed=request.seed,
            plan={
                "annotators": list(plan.annotators),
                "shares": dict(plan.conditions),
                "overlap_documents": plan.overlap_documents,
                "overlap_annotators": plan.overlap_annotators,
                "calibration_documents": list(plan.calibration_documents),
                "documents": list(plan.documents),
                "batch_id": request.batch_id,
            },
            status=StudyStatus.calibration.value if calibrating else StudyStatus.released.value,
            pre_annotation_run_id=preview.base_run_id,
            created_by=user_id,
            released_at=None if calibrating else now,
        )
        db.add(study)
        db.flush()
        pre_labels = _pre_labels(db, preview.base_run_id, list(documents.values()))
        missing = sorted(
            a.document for a in preview.assignments
            if a.condition == Condition.refine_llm.value and documents[a.document] not in pre_labels
        )  # fmt: skip
        if missing:
            raise StudyError(
                "shares", f"the study's base run has no pre-labels for: {', '.join(missing[:10])}"
            )
        rows: dict[tuple[str, str], Assignment] = {}
        offsets = _queue_offsets(db, project_id, list(users.values()))
        ordered = sorted(preview.assignments, key=lambda a: a.base_annotator is not None)  # bases first
        for planned in ordered:
            document_id = documents[planned.document]
            assignment = Assignment(
                project_id=project_id,
                document_id=document_id,
                annotator_id=users[planned.annotator],
                condition=planned.condition,
                queue_position=offsets[users[planned.annotator]] + planned.position,
                is_calibration=planned.calibration,
                study_id=study.id,
                base_assignment_id=rows[(planned.document, planned.base_annotator)].id
                if planned.base_annotator
                else None,
                released_at=null(),  # None would let the column default (now) fill it
            )
            db.add(assignment)
            db.flush()
            rows[(planned.document, planned.annotator)] = assignment
            if (planned.calibration or not calibrating) and planned.base_annotator is None:
                _release(db, assignment, pre_labels, now)
        audit.record(db, "study.committed", user_id=user_id, object_type="study", object_id=study.id,
                     details={"project_id": project_id, "assignments": len(rows), "seed": request.seed,
                              "summary": preview.summary})  # fmt: skip
        return study.id


def _queue_offsets(db: Session, project_id: int, annotator_ids: list[int]) -> dict[int, int]:
    """Where each physician's new notes start: after what they already have in this project."""
    offsets = dict.fromkeys(annotator_ids, 0)
    for annotator_id, last in db.execute(
        select(Assignment.annotator_id, func.max(Assignment.queue_position))
        .where(Assignment.project_id == project_id, Assignment.annotator_id.in_(annotator_ids))
        .group_by(Assignment.annotator_id)
    ):
        offsets[annotator_id] = last + 1
    return offsets


def _release(
    db: Session, assignment: Assignment, pre_labels: dict[int, AnnotationSet], now: datetime
) -> None:
    """Give the physician the note: start its set from its base and put it in the queue."""
    condition = Condition(assignment.condition)
    base = None
    if condition == Condition.refine_llm:
        base = pre_labels[assignment.document_id]
    elif condition == Condition.refine_human:
        base_assignment = db.get(Assignment, assignment.base_assignment_id)
        base = db.get(AnnotationSet, base_assignment.annotation_set_id)
    annotation_set = start_set(db, assignment.document_id, assignment.annotator_id, condition, base)
    assignment.annotation_set_id = annotation_set.id
    assignment.released_at = now


def release_study(sessions: sessionmaker[Session], study_id: int, *, user_id: int | None) -> int:
    """Pass the calibration gate: release every waiting note whose base is ready; returns how many."""
    now = datetime.now(UTC)
    with sessions.begin() as db:
        study = db.get(Study, study_id, with_for_update=True)
        if study is None:
            raise StudyError("study", f"no study {study_id}")
        if study.status == StudyStatus.released.value:
            raise StudyError("study", "the study is released already")
        study.status = StudyStatus.released.value
        study.released_at = now
        released = _release_ready(db, study, now)
        audit.record(db, "study.released", user_id=user_id, object_type="study", object_id=study_id,
                     details={"released": released})  # fmt: skip
        return released


def _release_ready(db: Session, study: Study, now: datetime) -> int:
    waiting = list(
        db.scalars(
            select(Assignment)
            .where(Assignment.study_id == study.id, Assignment.released_at.is_(None))
            .order_by(Assignment.id)
        )
    )
    pre_labels = _pre_labels(db, study.pre_annotation_run_id, [a.document_id for a in waiting])
    released = 0
    for assignment in waiting:
        if assignment.base_assignment_id is not None and not _base_submitted(db, assignment):
            continue
        _release(db, assignment, pre_labels, now)
        released += 1
    return released


def _base_submitted(db: Session, assignment: Assignment) -> bool:
    base = db.get(Assignment, assignment.base_assignment_id)
    if base is None or base.annotation_set_id is None:
        return False
    return db.get(AnnotationSet, base.annotation_set_id).status == "submitted"


def release_refinements(db: Session, submitted_set_id: int, now: datetime) -> int:
    """In the submitting edit's transaction: release the refine_human notes waiting for this set."""
    base = db.scalar(select(Assignment).where(Assignment.annotation_set_id == submitted_set_id))
    if base is None:
        return 0
    released = 0
    for waiting in db.scalars(
        select(Assignment).where(Assignment.base_assignment_id == base.id, Assignment.released_at.is_(None))
    ):
        study = db.get(Study, waiting.study_id) if waiting.study_id else None
        if study is not None and study.status != StudyStatus.released.value and not waiting.is_calibration:
            continue  # still behind the calibration gate; release_study will take it
        _release(db, waiting, {}, now)
        released += 1
    return released


@dataclass(frozen=True)
class StudyOverview:
    study: Study
    counts: dict[str, dict[str, dict[str, int]]]  # annotator -> condition -> {assigned, released, submitted}


def studies_of(sessions: sessionmaker[Session], project_id: int) -> list[StudyOverview]:
    """The project's studies with per physician and condition progress."""
    with sessions() as db:
        studies = list(db.scalars(select(Study).where(Study.project_id == project_id).order_by(Study.id)))
        overviews = []
        for study in studies:
            rows = db.execute(
                select(User.username, Assignment.condition, Assignment.released_at, AnnotationSet.status)
                .join(User, User.id == Assignment.annotator_id)
                .outerjoin(AnnotationSet, AnnotationSet.id == Assignment.annotation_set_id)
                .where(Assignment.study_id == study.id)
            ).all()
            counts: dict[str, dict[str, dict[str, int]]] = {}
            for login, condition, released_at, status in rows:
                cell = counts.setdefault(login, {}).setdefault(
                    condition, {"assigned": 0, "released": 0, "submitted": 0}
                )
                cell["assigned"] += 1
                cell["released"] += released_at is not None
                cell["submitted"] += status == "submitted"
            overviews.append(StudyOverview(study, counts))
        return overviews


def calibration_sets(sessions: sessionmaker[Session], study_id: int) -> dict[int, dict[str, int]]:
    """The submitted calibration sets of a study: document id -> annotator login -> set id."""
    with sessions() as db:
        rows = db.execute(
            select(Assignment.document_id, User.username, AnnotationSet.id)
            .join(User, User.id == Assignment.annotator_id)
            .join(AnnotationSet, AnnotationSet.id == Assignment.annotation_set_id)
            .where(
                Assignment.study_id == study_id,
                Assignment.is_calibration,
                AnnotationSet.status == "submitted",
                AnnotationSet.origin == SetOrigin.annotator.value,
            )
        ).all()
    sets: dict[int, dict[str, int]] = {}
    for document_id, login, set_id in rows:
        sets.setdefault(document_id, {})[login] = set_id
    return sets


def assignment_rows(sessions: sessionmaker[Session], study_id: int) -> list[PlannedAssignment] | None:
    """The study's stored assignments in the design's terms (for the CSV); None if no such study."""
    from sqlalchemy.orm import aliased

    with sessions() as db:
        if db.get(Study, study_id) is None:
            return None
        base = aliased(Assignment)
        base_user = aliased(User)
        rows = db.execute(
            select(
                Document.external_id,
                User.username,
                Assignment.condition,
                Assignment.queue_position,
                Assignment.is_calibration,
                base_user.username,
            )  # fmt: skip
            .join(Document, Document.id == Assignment.document_id)
            .join(User, User.id == Assignment.annotator_id)
            .outerjoin(base, base.id == Assignment.base_assignment_id)
            .outerjoin(base_user, base_user.id == base.annotator_id)
            .where(Assignment.study_id == study_id)
            .order_by(User.username, Assignment.queue_position)
        ).all()
    return [PlannedAssignment(d, a, c, p, bool(k), b) for d, a, c, p, k, b in rows]
