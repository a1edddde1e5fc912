"""The JSON API under /api/v1, for scripts with a personal token (or a logged-in browser).

Each role has its own sub-router with the role check on it, as for the pages.
"""

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from app.domain.label_schema import LabelSchemaError
from app.domain.vocabulary import Role
from app.services import projects as project_service
from app.services.access import led_project_ids
from app.services.administration import admin_overview
from app.services.queues import annotator_queue
from app.web.deps import (
    CurrentIdentity,
    LeadBatchFilter,
    LeadProjectId,
    LeadRunId,
    Now,
    Sessions,
    current_identity,
    require_role,
)

router = APIRouter(prefix="/api/v1", tags=["api"], dependencies=[Depends(current_identity)])
annotate = APIRouter(prefix="/annotate", dependencies=[Depends(require_role(Role.annotator))])
# A lead reaches only the projects they are a member of (and what is in them); admins every one.
lead = APIRouter(
    prefix="/lead",
    dependencies=[Depends(require_role(Role.lead, Role.admin))],
)
admin = APIRouter(prefix="/admin", dependencies=[Depends(require_role(Role.admin))])


class Me(BaseModel):
    id: int
    username: str
    display_name: str
    role: Role


class QueueEntry(BaseModel):
    assignment_id: int
    project: str
    document: str
    position: int
    status: str


class ProjectSummary(BaseModel):
    id: int
    name: str
    documents: int
    assignments: int
    submitted: int
    created_at: datetime


class NewProject(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    guidelines: str = ""
    label_schema: dict[str, Any]
    study_settings: dict[str, Any] = Field(default_factory=dict)


class UserSummary(BaseModel):
    id: int
    username: str
    display_name: str
    role: Role
    is_active: bool


@router.get("/me", response_model=Me)
def me(identity: CurrentIdentity) -> Me:
    user = identity.user
    return Me(id=user.id, username=user.username, display_name=user.display_name, role=user.role)


@annotate.get("/queue", response_model=list[QueueEntry])
def my_queue(identity: CurrentIdentity, sessions: Sessions) -> list[QueueEntry]:
    return [
        QueueEntry(
            assignment_id=i.assignment_id,
            project=i.project_name,
            document=i.document_external_id,
            position=i.position,
            status=i.status,
        )
        for i in annotator_queue(sessions, identity.user.id)
    ]


@lead.get("/projects", response_model=list[ProjectSummary])
def list_projects(identity: CurrentIdentity, sessions: Sessions) -> list[ProjectSummary]:
    """The projects the caller leads (an admin: every project)."""
    return [
        ProjectSummary(
            id=p.project.id,
            name=p.project.name,
            documents=p.documents,
            assignments=p.assignments,
            submitted=p.submitted,
            created_at=p.project.created_at,
        )
        for p in project_service.project_overview(sessions, led_project_ids(sessions, identity.user))
    ]


@lead.post("/projects", status_code=201, response_model=ProjectSummary)
def create_project(body: NewProject, identity: CurrentIdentity, sessions: Sessions) -> ProjectSummary:
    try:
        project = project_service.create_project(
            sessions,
            body.name,
            body.label_schema,
            guidelines=body.guidelines,
            study_settings=body.study_settings,
            actor_id=identity.user.id,
        )
    except LabelSchemaError as error:
        raise HTTPException(
            status_code=422,
            detail=[
                {"loc": ["body", "label_schema", field], "msg": message}
                if not field.startswith("study.")
                else {"loc": ["body", "study_settings", field[6:]], "msg": message}
                for field, message in error.problems
            ],
        ) from None
    except project_service.ProjectError as error:
        raise HTTPException(status_code=409, detail=str(error)) from None
    return ProjectSummary(
        id=project.id,
        name=project.name,
        documents=0,
        assignments=0,
        submitted=0,
        created_at=project.created_at,
    )


@admin.get("/users", response_model=list[UserSummary])
def list_users(sessions: Sessions) -> list[UserSummary]:
    return [
        UserSummary(
            id=u.id, username=u.username, display_name=u.display_name, role=u.role, is_active=u.is_active
        )
        for u in admin_overview(sessions, audit_rows=0).users
    ]


# ---- batches and exports ------------------------------------------------------------------------


class UploadResult(BaseModel):
    status: str
    batch_id: int | None
    stored: int
    duplicates: list[str]  # notes the project has already (same name, same text): not stored again
    layers_added: list[str]  # of those, the ones whose annotations became a new layer
    same_text: list[list[str]]  # [name, other name]: new notes whose text another note has too
    skipped: list[str]  # with skip_mismatched: notes whose name the project has with another text
    schema_additions: list[str]  # with extend_schema
    summary: str
    problems: list[str]
    warnings: list[str]
    phi_counts: dict[str, int]
    flagged_documents: int


class Release(BaseModel):
    reason: str = ""  # may be left out once every flagged note has its own decision


class NoteDecisionBody(BaseModel):
    note: str  # the flagged note's name
    decision: str  # release, exclude or mask
    reason: str


class Reject(BaseModel):
    confirm: bool = False  # must be true: rejecting erases the batch's notes


class FlaggedNoteSummary(BaseModel):
    note: str
    hits: dict[str, int]  # by kind, as the screen found them
    decision: str | None  # release, exclude, mask; None: undecided
    reason: str | None
    undecided: bool
    remaining_hits: dict[str, int]  # after a masking, what the screen still finds (normally nothing)


class BatchReport(BaseModel):
    id: int
    project_id: int
    status: str
    documents: int  # held: the notes it would store; else the notes it stored
    phi_counts: dict[str, int]
    flagged: list[FlaggedNoteSummary]
    undecided: int


@admin.post("/batches", response_model=UploadResult)
async def upload_batch_api(request: Request, identity: CurrentIdentity, sessions: Sessions) -> JSONResponse:
    """Upload files (multipart: project_id, layer, files); refused, held for PHI review or stored."""
    from starlette.concurrency import run_in_threadpool

    from app.services.batches import BatchError, upload_batch

    form = await request.form()
    files = [(f.filename or "upload", await f.read()) for f in form.getlist("files") if hasattr(f, "read")]
    try:
        project_id = int(str(form.get("project_id") or ""))
    except ValueError:
        raise HTTPException(status_code=422, detail="project_id: a project number") from None
    try:
        outcome = await run_in_threadpool(
            upload_batch,
            sessions,
            request.app.state.runtime.settings,
            project_id,
            files,
            actor_id=identity.user.id,
            layer=str(form.get("layer") or "") or None,
            client_address=request.client.host if request.client else None,
            skip_mismatched=str(form.get("skip_mismatched") or "").lower() in ("1", "true", "on"),
            extend_schema=str(form.get("extend_schema") or "").lower() in ("1", "true", "on"),
            annotator_from_folder=str(form.get("annotator_from_folder") or "").lower() in ("1", "true", "on"),
            create_annotators=str(form.get("create_annotators") or "").lower() in ("1", "true", "on"),
        )
    except BatchError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    body = UploadResult(
        status=outcome.status,
        batch_id=outcome.batch_id,
        stored=outcome.stored,
        duplicates=outcome.already_stored,
        layers_added=outcome.layers_added,
        same_text=[list(pair) for pair in outcome.same_text],
        skipped=[str(p) for p in outcome.skipped],
        schema_additions=outcome.schema_additions,
        summary=outcome.summary(),
        problems=[str(p) for p in outcome.problems],
        warnings=[str(w) for w in outcome.warnings],
        phi_counts=outcome.phi_counts,
        flagged_documents=outcome.flagged_documents,
    )
    return JSONResponse(body.model_dump(), status_code=422 if outcome.status == "refused" else 200)


@admin.get("/batches/{batch_id}", response_model=BatchReport)
def batch_report_api(batch_id: int, sessions: Sessions) -> BatchReport:
    """A batch's PHI report (kinds and counts, never the text) and the decision on each flagged note."""
    from app.services.batches import batch_detail

    detail = batch_detail(sessions, batch_id)
    if detail is None:
        raise HTTPException(status_code=404, detail="No such batch.")
    batch = detail.batch
    return BatchReport(
        id=batch.id,
        project_id=batch.project_id,
        status=batch.status,
        documents=detail.staged_documents if batch.status == "held" else detail.stored_documents,
        phi_counts=(batch.phi_report or {}).get("counts", {}),
        flagged=[
            FlaggedNoteSummary(
                note=n.external_id,
                hits=n.counts,
                decision=n.decision,
                reason=n.reason,
                undecided=n.undecided,
                remaining_hits=n.remaining,
            )
            for n in detail.flagged
        ],
        undecided=detail.undecided if batch.status == "held" else 0,
    )


@admin.post("/batches/{batch_id}/notes")
def decide_note_api(
    batch_id: int,
    body: NoteDecisionBody,
    request: Request,
    identity: CurrentIdentity,
    sessions: Sessions,
    now: Now,
) -> dict:
    """Release, exclude or mask one flagged note of a held batch, with a reason (audited)."""
    from app.services.batches import BatchError, decide_note

    try:
        decided = decide_note(
            sessions,
            batch_id,
            body.note,
            body.decision,
            body.reason,
            actor_id=identity.user.id,
            now=now,
            client_address=request.client.host if request.client else None,
        )
    except BatchError as error:
        status = 409 if "not held" in str(error) else 422
        raise HTTPException(status_code=status, detail=str(error)) from None
    return {
        "note": decided.note,
        "decision": decided.decision,
        "undecided": decided.undecided,
        "remaining_hits": decided.remaining_hits,
    }


@admin.post("/batches/{batch_id}/release")
def release_batch_api(
    batch_id: int, body: Release, request: Request, identity: CurrentIdentity, sessions: Sessions, now: Now
) -> dict:
    from app.services.batches import BatchError, release_batch

    try:
        stored = release_batch(
            sessions,
            batch_id,
            body.reason,
            actor_id=identity.user.id,
            now=now,
            client_address=request.client.host if request.client else None,
        )
    except BatchError as error:
        raise HTTPException(status_code=409, detail=str(error)) from None
    return {"status": "accepted", "stored": stored}


@admin.post("/batches/{batch_id}/reject")
def reject_batch_api(
    batch_id: int,
    request: Request,
    identity: CurrentIdentity,
    sessions: Sessions,
    now: Now,
    body: Reject | None = None,
) -> dict:
    """Reject a held batch, erasing its notes: only with ``{"confirm": true}``."""
    from app.services.batches import BatchError, notes_to_erase, reject_batch

    if body is None or not body.confirm:
        erased = notes_to_erase(sessions, batch_id)
        if erased is None:
            raise HTTPException(status_code=409, detail=f"batch {batch_id} is not held for review")
        raise HTTPException(
            status_code=422,
            detail=f"confirm: rejecting erases the batch's {erased} notes; send confirm: true to do it",
        )
    try:
        erased = reject_batch(
            sessions,
            batch_id,
            actor_id=identity.user.id,
            now=now,
            client_address=request.client.host if request.client else None,
        )
    except BatchError as error:
        raise HTTPException(status_code=409, detail=str(error)) from None
    return {"status": "rejected", "erased": erased}


@lead.get("/projects/{project_id}/export")
def export_api(
    project_id: LeadProjectId,
    request: Request,
    identity: CurrentIdentity,
    sessions: Sessions,
    format: str = "jsonl",
    layer: str | None = None,
    undecided: str = "exclude",
) -> Response:
    """Download an export: brat (zip), jsonl, conll (one layer), events-csv or events-jsonl.
    ``undecided``: the pre-labels a physician left undecided in their set are left out (``exclude``)
    or written marked as undecided (``mark``; brat and JSONL)."""
    from app.services.exports import ExportError, export_project

    try:
        result = export_project(
            sessions,
            project_id,
            format,
            layer or None,
            actor_id=identity.user.id,
            client_address=request.client.host if request.client else None,
            undecided=undecided,
        )
    except ExportError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    return Response(
        result.content,
        media_type=result.media_type,
        headers={"Content-Disposition": f'attachment; filename="{result.name}"'},
    )


# ---- pre-annotation runs -------------------------------------------------------------------


class NewRun(BaseModel):
    """A pre-annotation run: ``llm`` (an endpoint and a prompt schema) or ``lexicon`` (a CSV of terms)."""

    name: str
    method: str = "llm"
    prompt_schema: str = "ensemble"
    endpoint_id: int | None = None
    chunk_size: int | None = None
    few_shot: int = 3
    fuzzy_threshold: float = 85
    document_ids: list[int] | None = None
    batch_id: int | None = None
    lexicon_csv: str | None = None
    whole_word: bool = True
    case_sensitive: bool = False


class RunStatusOut(BaseModel):
    id: int
    name: str
    method: str
    status: str
    is_study_base: bool
    total: int
    finished: int
    counts: dict[str, int]
    error: str | None


def _run_out(summary) -> RunStatusOut:
    return RunStatusOut(
        id=summary.id,
        name=summary.name,
        method=summary.method,
        status=summary.status,
        is_study_base=summary.is_study_base,
        total=summary.progress.total,
        finished=summary.progress.finished,
        counts=summary.progress.counts,
        error=summary.error,
    )


@lead.post("/projects/{project_id}/runs", status_code=201, response_model=RunStatusOut)
def start_run_api(
    project_id: LeadProjectId, body: NewRun, identity: CurrentIdentity, sessions: Sessions
) -> RunStatusOut:
    """Start a pre-annotation run; its notes are queued as background jobs."""
    from app.services import pre_annotation, run_reports

    try:
        run_id = pre_annotation.start_run(
            sessions,
            project_id,
            pre_annotation.RunRequest(**body.model_dump()),
            user_id=identity.user.id,
        )
    except pre_annotation.RunError as error:
        raise HTTPException(
            status_code=422, detail=[{"loc": ["body", error.field], "msg": error.message}]
        ) from None
    return _run_out(run_reports.run_summary(sessions, run_id)[0])


@lead.get("/projects/{project_id}/runs", response_model=list[RunStatusOut])
def list_runs_api(project_id: LeadProjectId, sessions: Sessions) -> list[RunStatusOut]:
    from app.services import run_reports

    return [_run_out(r) for r in run_reports.list_runs(sessions, project_id)]


@lead.get("/runs/{run_id}", response_model=RunStatusOut)
def run_api(run_id: LeadRunId, sessions: Sessions) -> RunStatusOut:
    from app.services import run_reports

    found = run_reports.run_summary(sessions, run_id)
    if found is None:
        raise HTTPException(status_code=404, detail="No such run.")
    return _run_out(found[0])


@lead.get("/projects/{project_id}/metrics")
def metrics_api(
    project_id: LeadProjectId,
    sessions: Sessions,
    batch_id: LeadBatchFilter,
    idle: float | None = None,
    annotator: str | None = None,
    label: str | None = None,
    condition: str | None = None,
    seed: int | None = None,
) -> JSONResponse:
    """The study's figures in the versioned layout of the README (the dashboard's and the CLI's)."""
    from app.services.metrics import FilterError, MetricsFilter, project_metrics

    if idle is not None and not 0 < idle <= 3600:
        raise HTTPException(
            status_code=422, detail=[{"loc": ["query", "idle"], "msg": "must be in (0, 3600]"}]
        )
    try:
        report = project_metrics(
            sessions,
            project_id,
            idle_threshold_seconds=idle,
            filters=MetricsFilter(batch_id, annotator, label, condition),
            seed=seed,
        )
    except FilterError as error:
        raise HTTPException(
            status_code=422, detail=[{"loc": ["query", error.field], "msg": error.message}]
        ) from None
    except LookupError:
        raise HTTPException(status_code=404, detail="No such project.") from None
    return JSONResponse(report)


# Included last: FastAPI copies a sub-router's routes at include time.
router.include_router(annotate)
router.include_router(lead)
router.include_router(admin)
