"""Every user's own account pages: personal API tokens, and their password."""

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

from app.domain.passwords import MIN_LENGTH
from app.services import auth, users
from app.web.deps import (
    CurrentIdentity,
    Identity,
    Now,
    Sessions,
    client_address,
    current_identity,
    identity_before_password_change,
)
from app.web.templating import render

router = APIRouter(prefix="/account", tags=["account"], dependencies=[Depends(current_identity)])
# The password page answers also those who must change their password first (every other page sends
# them here), so it is a router of its own, without the gate.
password_router = APIRouter(
    prefix="/account", tags=["account"], dependencies=[Depends(identity_before_password_change)]
)
IdentityBeforeChange = Annotated[Identity, Depends(identity_before_password_change)]


def _tokens_page(
    request: Request, sessions, user_id: int, new_secret: str | None = None, block_name: str | None = None
) -> Response:
    return render(
        request,
        "account/tokens.html",
        {"tokens": auth.list_api_tokens(sessions, user_id), "new_secret": new_secret},
        block_name=block_name,
    )


@router.get("/tokens")
def tokens(request: Request, identity: CurrentIdentity, sessions: Sessions) -> Response:
    return _tokens_page(request, sessions, identity.user.id)


@router.post("/tokens")
def create_token(
    request: Request, identity: CurrentIdentity, sessions: Sessions, name: Annotated[str, Form()]
) -> Response:
    try:
        _, secret = auth.create_api_token(sessions, identity.user.id, name)
    except ValueError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    block = "token_list" if request.headers.get("HX-Request") else None
    response = _tokens_page(request, sessions, identity.user.id, new_secret=secret, block_name=block)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/tokens/{token_id}/revoke")
def revoke_token(
    request: Request, token_id: int, identity: CurrentIdentity, sessions: Sessions, now: Now
) -> Response:
    if not auth.revoke_api_token(sessions, identity.user.id, token_id, now=now):
        raise HTTPException(status_code=404, detail="No such token.")
    block = "token_list" if request.headers.get("HX-Request") else None
    return _tokens_page(request, sessions, identity.user.id, block_name=block)


# ---- the user's own password ------------------------------------------------------------------------


def _password_page(
    request: Request, identity: Identity, *, changed: bool = False, error: str | None = None
) -> Response:
    field, _, _ = (error or "").partition(": ")
    response = render(
        request,
        "account/password.html",
        {
            "must_change": identity.user.must_change_password,
            "changed": changed,
            "form_error": error,
            "error_field": field if error else None,
            "min_length": MIN_LENGTH,
        },
        status_code=422 if error else 200,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@password_router.get("/password")
def password_form(request: Request, identity: IdentityBeforeChange, changed: bool = False) -> Response:
    return _password_page(request, identity, changed=changed)


@password_router.post("/password")
def change_password(
    request: Request,
    identity: IdentityBeforeChange,
    sessions: Sessions,
    now: Now,
    current_password: Annotated[str, Form()] = "",
    new_password: Annotated[str, Form()] = "",
    new_password_confirmation: Annotated[str, Form()] = "",
) -> Response:
    if identity.via != "session":
        raise HTTPException(status_code=403, detail="Change your password in the browser, logged in.")
    try:
        users.change_password(
            sessions,
            identity.user.id,
            current_password,
            new_password,
            new_password_confirmation,
            keep_session_id=identity.login_session_id,
            now=now,
            client_address=client_address(request),
        )
    except users.AccountError as error:
        return _password_page(request, identity, error=str(error))
    return RedirectResponse("/account/password?changed=1", status_code=303)


class EditorDisplayIn(BaseModel):
    display: str = Field(max_length=16)


@router.post("/editor-display", status_code=204)
def editor_display(body: EditorDisplayIn, identity: CurrentIdentity, sessions: Sessions) -> Response:
    """The editor's compact/full toggle, remembered with the account (any role that edits)."""
    try:
        users.set_editor_display(sessions, identity.user.id, body.display)
    except users.AccountError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    return Response(status_code=204)
