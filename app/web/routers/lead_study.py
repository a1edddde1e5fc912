"""The lead's study design: preview, commit, the calibration agreement, release, assignments as CSV."""

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from app.db.models import Project, User
from app.domain.agreement import agreement_report
from app.domain.label_schema import parse_label_schema
from app.domain.study_design import assignments_csv
from app.domain.vocabulary import Condition, Role
from app.services import study
from app.services.batches import batch_choices
from app.web.deps import (
    CurrentIdentity,
    LeadProjectId,
    LeadStudyId,
    Sessions,
    project_or_404,
    require_role,
)
from app.web.forms import number_field
from app.web.templating import render

router = APIRouter(
    prefix="/lead",
    tags=["lead"],
    dependencies=[Depends(require_role(Role.lead, Role.admin))],
)


def _number(form, field: str, kind, default):
    return number_field(form, field, kind, default, study.StudyError)


def _request(form) -> study.StudyRequest:
    shares = {c.value: _number(form, f"share_{c.value}", float, 0.0) for c in Condition}
    total = sum(shares.values())
    if total <= 0:
        raise study.StudyError("shares", "give at least one condition a share above 0")
    return study.StudyRequest(
        name=str(form.get("name") or ""),
        annotators=[str(a) for a in form.getlist("annotators")],
        # The form takes shares as any positive weights; the design wants fractions of one.
        shares={c: v / total for c, v in shares.items() if v > 0},
        overlap_documents=_number(form, "overlap_documents", int, 0),
        overlap_annotators=_number(form, "overlap_annotators", int, 2),
        calibration_documents=_number(form, "calibration_documents", int, 0),
        batch_id=_number(form, "batch_id", int, None),
        seed=_number(form, "seed", int, 0),
    )


def _calibration(sessions, project: Project, overview: study.StudyOverview) -> dict | None:
    """Agreement of the calibration batch, per label, for the gate."""
    if overview.study.status != "calibration":
        return None
    from app.services.metrics import set_spans_and_texts

    by_document = study.calibration_sets(sessions, overview.study.id)
    labels = [e.name for e in parse_label_schema(project.label_schema).entity_types]
    annotations, texts = set_spans_and_texts(sessions, by_document)
    report = agreement_report(
        annotations, {d: {} for d in annotations}, texts, labels, resamples=1000, seed=0
    )
    return {"documents": len(by_document), "report": report}


def _page(request: Request, sessions, project: Project, *, values=None, preview=None, error=None, status=200):
    with sessions() as db:
        annotators = list(
            db.scalars(
                select(User).where(User.role == Role.annotator.value, User.is_active).order_by(User.username)
            )
        )
    batches = batch_choices(sessions, project.id)  # neither held, rejected nor empty ones
    overviews = study.studies_of(sessions, project.id)
    return render(
        request,
        "lead/study.html",
        {
            "project": project,
            "annotators": annotators,
            "batches": batches,
            "values": values or {},
            "preview": preview,
            "error": error,
            "studies": [(o, _calibration(sessions, project, o)) for o in overviews],
            "conditions": [c.value for c in Condition],
        },
        status_code=status,
    )


@router.get("/projects/{project_id}/study")
def study_page(request: Request, sessions: Sessions, project_id: LeadProjectId) -> Response:
    return _page(request, sessions, project_or_404(sessions, project_id))


@router.post("/projects/{project_id}/study")
async def design(
    request: Request, identity: CurrentIdentity, sessions: Sessions, project_id: LeadProjectId
) -> Response:
    project = project_or_404(sessions, project_id)
    form = await request.form()
    values = {k: form.getlist(k) if k == "annotators" else form.get(k) for k in form}
    try:
        wanted = _request(form)
        if form.get("action") == "commit":
            study.commit_study(sessions, project_id, wanted, user_id=identity.user.id)
            return RedirectResponse(f"/lead/projects/{project_id}/study", status_code=303)
        preview = study.preview_study(sessions, project_id, wanted)
    except study.StudyError as error:
        return _page(request, sessions, project, values=values, error=error, status=422)
    return _page(request, sessions, project, values=values, preview=preview)


@router.post("/studies/{study_id}/release")
def release(identity: CurrentIdentity, sessions: Sessions, study_id: LeadStudyId) -> Response:
    from app.db.models import Study

    with sessions() as db:
        row = db.get(Study, study_id)
    if row is None:
        raise HTTPException(status_code=404, detail="No such study.")
    try:
        study.release_study(sessions, study_id, user_id=identity.user.id)
    except study.StudyError as error:
        raise HTTPException(status_code=409, detail=str(error)) from None
    return RedirectResponse(f"/lead/projects/{row.project_id}/study", status_code=303)


@router.get("/studies/{study_id}/assignments.csv")
def assignments(sessions: Sessions, study_id: LeadStudyId) -> Response:
    """The study's assignments as stored, one row each."""
    rows = study.assignment_rows(sessions, study_id)
    if rows is None:
        raise HTTPException(status_code=404, detail="No such study.")
    return Response(
        assignments_csv(rows),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="study-{study_id}-assignments.csv"'},
    )
