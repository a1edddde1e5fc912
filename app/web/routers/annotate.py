"""The physician's pages: the queue and the note editor (its endpoints: app/web/editor_routes.py)."""

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from app.domain.vocabulary import Role
from app.services.queues import annotator_queue, next_unfinished
from app.web.deps import CurrentIdentity, Sessions, require_role
from app.web.editor_routes import add_editor_routes, editor_page
from app.web.templating import render

router = APIRouter(
    prefix="/annotate", tags=["annotate"], dependencies=[Depends(require_role(Role.annotator))]
)


@router.get("")
def queue(request: Request, identity: CurrentIdentity, sessions: Sessions) -> Response:
    items = annotator_queue(sessions, identity.user.id)
    counts = {
        status: sum(1 for item in items if item.status == status)
        for status in ("new", "in progress", "submitted", "skipped")
    }
    return render(request, "annotate/home.html", {"items": items, "counts": counts})


@router.get("/next")
def continue_work(identity: CurrentIdentity, sessions: Sessions) -> Response:
    """Open the first note of the queue that is neither submitted nor skipped."""
    set_id = next_unfinished(sessions, identity.user.id)
    return RedirectResponse(f"/annotate/sets/{set_id}" if set_id else "/annotate", status_code=303)


@router.get("/sets/{set_id}")
def document_page(request: Request, set_id: int, identity: CurrentIdentity, sessions: Sessions) -> Response:
    page = editor_page(sessions, set_id, identity.user.id, f"/annotate/sets/{set_id}")
    return render(request, "annotate/document.html", page)


add_editor_routes(router, "/sets/{set_id}")
