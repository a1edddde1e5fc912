"""The project lead's pages: projects and their progress (dashboards come later)."""

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from app.domain.vocabulary import Role
from app.services.projects import project_overview
from app.web.deps import Sessions, require_role
from app.web.templating import render

# Admins may look over a lead's shoulder; annotators may not.
router = APIRouter(prefix="/lead", tags=["lead"], dependencies=[Depends(require_role(Role.lead, Role.admin))])


@router.get("")
def projects(request: Request, sessions: Sessions) -> Response:
    return render(request, "lead/home.html", {"projects": project_overview(sessions)})
