"""The admin's pages: accounts and the audit trail (uploads and endpoints come later)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from app.domain.vocabulary import Role
from app.services import users
from app.services.administration import admin_overview
from app.web.deps import CurrentIdentity, Sessions, require_role
from app.web.templating import render

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_role(Role.admin))])


@router.get("")
def overview(request: Request, sessions: Sessions) -> Response:
    return render(request, "admin/home.html", {"overview": admin_overview(sessions), "roles": list(Role)})


@router.post("/users")
def add_user(
    request: Request,
    identity: CurrentIdentity,
    sessions: Sessions,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    role: Annotated[str, Form()],
    display_name: Annotated[str, Form()] = "",
) -> Response:
    try:
        users.add_user(sessions, username, password, role, display_name or None, actor_id=identity.user.id)
    except users.AccountError as error:
        return render(
            request,
            "admin/home.html",
            {
                "overview": admin_overview(sessions),
                "roles": list(Role),
                "form_error": str(error),
                "form_username": username,
            },
            status_code=422,
        )
    return RedirectResponse("/admin", status_code=303)
