"""The physician's pages: their queue (the span editor comes with its own capability)."""

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from app.domain.vocabulary import Role
from app.services.queues import annotator_queue
from app.web.deps import CurrentIdentity, Sessions, require_role
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
