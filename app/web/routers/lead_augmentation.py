"""The lead's augmentation runs: start one over gold or submitted sets, watch it, read what it kept
and rejected, export its synthetic notes (apart from every export of real notes)."""

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from app.db.models import Project
from app.domain import augmentation as aug
from app.domain.label_schema import parse_label_schema
from app.domain.vocabulary import Role
from app.services import audit, augmentation
from app.services.llm_endpoints import list_endpoints
from app.web.deps import (
    CurrentIdentity,
    LeadAugmentationRunId,
    LeadProjectId,
    Sessions,
    client_address,
    project_or_404,
    require_role,
)
from app.web.forms import number_field
from app.web.templating import render

router = APIRouter(
    prefix="/lead",
    tags=["lead"],
    dependencies=[
        Depends(require_role(Role.lead, Role.admin)),
    ],
)


def _page(request: Request, sessions, project: Project, *, values=None, error=None, status_code=200):
    schema = parse_label_schema(project.label_schema)
    return render(
        request,
        "lead/augmentation.html",
        {
            "project": project,
            "runs": augmentation.list_runs(sessions, project.id),
            "endpoints": list_endpoints(sessions, active_only=True),
            "entity_types": [e.name for e in schema.entity_types],
            "relation_types": [r.name for r in schema.relation_types],
            "freedoms": aug.FREEDOMS,
            "values": values or {"variants": 2, "max_segments": 3, "freedom": "light", "source": "gold"},
            "error": error,
        },
        status_code=status_code,
    )


@router.get("/projects/{project_id}/augmentation")
def runs(request: Request, sessions: Sessions, project_id: LeadProjectId) -> Response:
    project = project_or_404(sessions, project_id)
    if request.headers.get("HX-Request"):
        return render(
            request,
            "lead/augmentation.html",
            {"project": project, "runs": augmentation.list_runs(sessions, project_id)},
            block_name="run_list",
        )
    return _page(request, sessions, project)


@router.post("/projects/{project_id}/augmentation")
async def start(
    request: Request, identity: CurrentIdentity, sessions: Sessions, project_id: LeadProjectId
) -> Response:
    project = project_or_404(sessions, project_id)
    form = await request.form()

    def number(name: str, kind, default):
        return number_field(form, name, kind, default, augmentation.AugmentationError)

    try:
        run_id = augmentation.start_augmentation(
            sessions,
            project_id,
            augmentation.AugmentationRequest(
                name=str(form.get("name") or ""),
                endpoint_id=number("endpoint_id", int, None),
                source=str(form.get("source") or "gold"),
                labels=[str(v) for v in form.getlist("labels")],
                relation_types=[str(v) for v in form.getlist("relation_types")],
                variants=number("variants", int, 2),
                freedom=str(form.get("freedom") or "light"),
                max_segments=number("max_segments", int, 3),
                segment_chars=number("segment_chars", int, 250),
                context_chars=number("context_chars", int, 200),
                temperature=number("temperature", float, 0.7),
            ),
            user_id=identity.user.id,
            client_address=client_address(request),
        )
    except augmentation.AugmentationError as error:
        values = {k: form.get(k) for k in form}
        values["labels"], values["relation_types"] = form.getlist("labels"), form.getlist("relation_types")
        return _page(request, sessions, project, values=values, error=error, status_code=422)
    return RedirectResponse(f"/lead/augmentation/{run_id}", status_code=303)


def _run(sessions, run_id: int):
    found = augmentation.run_of(sessions, run_id)
    if found is None:
        raise HTTPException(status_code=404, detail="No such augmentation run.")
    return found


@router.get("/augmentation/{run_id}")
def run_page(request: Request, sessions: Sessions, run_id: LeadAugmentationRunId) -> Response:
    project_id, run = _run(sessions, run_id)
    project = project_or_404(sessions, project_id)
    context = {"project": project, "run": run, "reasons": aug.REJECTIONS}
    if request.headers.get("HX-Request"):
        return render(request, "lead/augmentation_run.html", context, block_name="run_status")
    notes = augmentation.synthetic_notes(sessions, run_id)
    return render(
        request,
        "lead/augmentation_run.html",
        {
            **context,
            "notes": [
                {
                    "id": augmentation.synthetic_id(note, source),
                    "note": note,
                    "source": source,
                    "segment": note.text[note.segment_start : note.segment_start + 400],
                }
                for note, source in notes[:100]
            ],
            "note_count": len(notes),
            "rejected": augmentation.rejected_outputs(sessions, run_id),
        },
    )


@router.post("/augmentation/{run_id}/cancel")
def cancel(identity: CurrentIdentity, sessions: Sessions, run_id: LeadAugmentationRunId) -> Response:
    _run(sessions, run_id)
    try:
        augmentation.cancel_run(sessions, run_id, user_id=identity.user.id)
    except augmentation.AugmentationError as error:
        raise HTTPException(status_code=409, detail=str(error)) from None
    return RedirectResponse(f"/lead/augmentation/{run_id}", status_code=303)


@router.get("/augmentation/{run_id}/export")
def export(
    request: Request,
    identity: CurrentIdentity,
    sessions: Sessions,
    run_id: LeadAugmentationRunId,
    format: str = "jsonl",
):
    """The run's synthetic notes, as JSONL or a brat zip; every export is audited."""
    _run(sessions, run_id)
    try:
        content, media_type, name = augmentation.export_synthetic(sessions, run_id, format)
    except augmentation.AugmentationError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    with sessions.begin() as db:
        audit.record(
            db,
            "augmentation_run.exported",
            user_id=identity.user.id,
            object_type="augmentation_run",
            object_id=run_id,
            client_address=client_address(request),
            details={"format": format, "bytes": len(content)},
        )
    return Response(
        content, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )
