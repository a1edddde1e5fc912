"""The admin's pages: accounts and the audit trail (uploads and endpoints come later)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from app.domain.vocabulary import Role
from app.services import users
from app.services.administration import admin_overview
from app.web.deps import CurrentIdentity, Now, Sessions, client_address, require_role
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


# ---- batches: upload, PHI report, release or reject -------------------------------------------


def _batches_page(request: Request, sessions, *, outcome=None, status_code: int = 200, form_error=None):
    from app.services.batches import batch_overview

    return render(
        request,
        "admin/batches.html",
        {**batch_overview(sessions), "outcome": outcome, "form_error": form_error},
        status_code=status_code,
    )


@router.get("/batches")
def batches(request: Request, sessions: Sessions) -> Response:
    return _batches_page(request, sessions)


@router.post("/batches")
async def upload(request: Request, identity: CurrentIdentity, sessions: Sessions) -> Response:
    from starlette.concurrency import run_in_threadpool

    from app.services.batches import BatchError, upload_batch

    form = await request.form()
    files = [(f.filename or "upload", await f.read()) for f in form.getlist("files") if hasattr(f, "read")]
    try:
        project_id = int(str(form.get("project_id") or "0"))
    except ValueError:
        project_id = 0
    layer = str(form.get("layer") or "").strip() or None
    if not files or not any(content for _, content in files):
        return _batches_page(request, sessions, form_error="files: choose one or more files", status_code=422)
    runtime = request.app.state.runtime
    try:
        outcome = await run_in_threadpool(
            upload_batch,
            sessions,
            runtime.settings,
            project_id,
            files,
            actor_id=identity.user.id,
            layer=layer,
            client_address=client_address(request),
        )
    except BatchError as error:
        return _batches_page(request, sessions, form_error=str(error), status_code=422)
    if outcome.status == "held":
        return RedirectResponse(f"/admin/batches/{outcome.batch_id}", status_code=303)
    return _batches_page(
        request, sessions, outcome=outcome, status_code=200 if outcome.status != "refused" else 422
    )


@router.get("/batches/{batch_id}")
def batch_report(request: Request, batch_id: int, sessions: Sessions) -> Response:
    from app.services.batches import batch_detail

    detail = batch_detail(sessions, batch_id)
    if detail is None:
        raise HTTPException(status_code=404, detail="No such batch.")
    return render(request, "admin/batch.html", {"detail": detail})


@router.post("/batches/{batch_id}/release")
def release(
    request: Request,
    batch_id: int,
    identity: CurrentIdentity,
    sessions: Sessions,
    now: Now,
    reason: Annotated[str, Form()] = "",
) -> Response:
    from app.services.batches import BatchError, batch_detail, release_batch

    try:
        release_batch(
            sessions,
            batch_id,
            reason,
            actor_id=identity.user.id,
            now=now,
            client_address=client_address(request),
        )
    except BatchError as error:
        detail = batch_detail(sessions, batch_id)
        if detail is None:
            raise HTTPException(status_code=404, detail="No such batch.") from None
        return render(
            request, "admin/batch.html", {"detail": detail, "form_error": str(error)}, status_code=422
        )
    return RedirectResponse(f"/admin/batches/{batch_id}", status_code=303)


@router.post("/batches/{batch_id}/reject")
def reject(
    request: Request, batch_id: int, identity: CurrentIdentity, sessions: Sessions, now: Now
) -> Response:
    from app.services.batches import BatchError, reject_batch

    try:
        reject_batch(
            sessions, batch_id, actor_id=identity.user.id, now=now, client_address=client_address(request)
        )
    except BatchError as error:
        raise HTTPException(status_code=409, detail=str(error)) from None
    return RedirectResponse(f"/admin/batches/{batch_id}", status_code=303)
