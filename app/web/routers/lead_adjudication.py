"""The lead's adjudication: the queue of notes to settle, and the gold editor beside every
physician's version (its edit endpoints are the editor's, mounted under /lead/gold)."""

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from app.domain.vocabulary import Role
from app.services import adjudication, editing
from app.web.deps import (
    CurrentIdentity,
    LeadDocumentId,
    LeadProjectId,
    LeadSetId,
    Now,
    Sessions,
    project_or_404,
    require_role,
)
from app.web.editor_routes import add_editor_routes, editor_page
from app.web.templating import render

router = APIRouter(
    prefix="/lead",
    tags=["lead"],
    dependencies=[Depends(require_role(Role.lead, Role.admin))],
)


PAGE_SIZE = 100
GOLD_STATUSES = ("not started", "open", "submitted")


@router.get("/projects/{project_id}/adjudication")
def queue(
    request: Request, project_id: LeadProjectId, sessions: Sessions, page: int = 1, gold: str | None = None
) -> Response:
    """The queue, a page at a time; ``gold`` keeps only the notes whose gold is in that state."""
    project = project_or_404(sessions, project_id)
    if gold is not None and gold not in GOLD_STATUSES:
        raise HTTPException(status_code=422, detail=f"gold: one of {', '.join(GOLD_STATUSES)}")
    items = adjudication.adjudication_queue(sessions, project_id)
    counts = {status: sum(1 for i in items if i.gold_status == status) for status in GOLD_STATUSES}
    if gold is not None:
        items = [i for i in items if i.gold_status == gold]
    pages = max(1, -(-len(items) // PAGE_SIZE))
    page = min(max(page, 1), pages)
    return render(
        request,
        "lead/adjudication.html",
        {
            "project": project,
            "items": items[(page - 1) * PAGE_SIZE : page * PAGE_SIZE],
            "total": len(items),
            "counts": counts,
            "gold": gold,
            "page": page,
            "pages": pages,
        },
    )


@router.post("/projects/{project_id}/adjudication/{document_id}")
def start(
    project_id: LeadProjectId,
    document_id: LeadDocumentId,
    identity: CurrentIdentity,
    sessions: Sessions,
    now: Now,
) -> Response:
    """Open the note's adjudication, starting it (with what everyone agreed on) the first time."""
    project_or_404(sessions, project_id)
    try:
        set_id = adjudication.start_gold(sessions, project_id, document_id, identity.user.id, now=now)
    except adjudication.AdjudicationError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    return RedirectResponse(f"/lead/gold/{set_id}", status_code=303)


def _comparison(sessions, set_id: int, user_id: int, hide_names: bool) -> adjudication.Comparison:
    with sessions() as db:
        try:
            context = editing.editor_context(db, set_id, user_id)
        except editing.NotYourNote:
            raise HTTPException(status_code=404, detail="No such adjudication.") from None
        return adjudication.comparison(
            db, context, editing.load_state(db, context.annotation_set), hide_names=hide_names
        )


@router.get("/gold/{set_id}")
def gold_page(
    request: Request,
    set_id: LeadSetId,
    identity: CurrentIdentity,
    sessions: Sessions,
    hide_names: bool = False,
) -> Response:
    comparison = _comparison(sessions, set_id, identity.user.id, hide_names)
    page = editor_page(sessions, set_id, identity.user.id, f"/lead/gold/{set_id}")
    page["editor"]["hide_names"] = hide_names
    return render(
        request, "lead/adjudicate.html", {**page, "comparison": comparison, "hide_names": hide_names}
    )


@router.get("/gold/{set_id}/comparison")
def comparison_panel(
    request: Request,
    set_id: LeadSetId,
    identity: CurrentIdentity,
    sessions: Sessions,
    hide_names: bool = False,
) -> Response:
    """The physicians' versions beside gold as it is now: what the page reloads after each edit."""
    comparison = _comparison(sessions, set_id, identity.user.id, hide_names)
    return render(
        request,
        "lead/adjudicate.html",
        {"comparison": comparison, "hide_names": hide_names},
        block_name="comparison_panel",
    )


add_editor_routes(router, "/gold/{set_id}", LeadSetId)
