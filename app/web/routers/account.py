"""Every user's own account page: personal API tokens."""

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import Response

from app.services import auth
from app.web.deps import CurrentIdentity, Now, Sessions, current_identity
from app.web.templating import render

router = APIRouter(prefix="/account", tags=["account"], dependencies=[Depends(current_identity)])


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
