"""The admin's concept vocabularies: upload a CSV or TSV (errors name line and field), attach to projects."""

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from app.domain.concepts import VocabularyFileError
from app.domain.vocabulary import Role
from app.services.vocabularies import (
    VocabularyError,
    attach_to_project,
    detach_from_project,
    list_vocabularies,
    project_choices,
    upload_vocabulary,
)
from app.web.deps import CurrentIdentity, Sessions, client_address, require_role
from app.web.templating import render

router = APIRouter(
    prefix="/admin/vocabularies", tags=["admin"], dependencies=[Depends(require_role(Role.admin))]
)
PAGE = "/admin/vocabularies"


def _page(
    request: Request,
    sessions,
    *,
    error: dict | None = None,
    values: dict | None = None,
    uploaded: int | None = None,
    status_code: int = 200,
) -> Response:
    vocabularies = list_vocabularies(sessions)
    return render(
        request,
        "admin/vocabularies.html",
        {
            "vocabularies": vocabularies,
            "projects": project_choices(sessions),
            "uploaded": next((v for v in vocabularies if v.id == uploaded), None),
            "error": error,
            "values": values or {},
        },
        status_code=status_code,
    )


def _error(field: str, problems: list[str]) -> dict:
    return {"field": field, "problems": problems}


@router.get("")
def vocabularies(request: Request, sessions: Sessions, uploaded: int | None = None) -> Response:
    return _page(request, sessions, uploaded=uploaded)


@router.post("")
async def upload(request: Request, identity: CurrentIdentity, sessions: Sessions) -> Response:
    form = await request.form()
    values = {key: str(form.get(key) or "") for key in ("name", "system", "version")}
    file = form.get("file")
    if not hasattr(file, "read") or not getattr(file, "filename", ""):
        error = _error("file", ["file: choose a CSV or TSV file"])
        return _page(request, sessions, error=error, values=values, status_code=422)
    data = await file.read()
    limit_mb = request.app.state.runtime.settings.upload_max_batch_mb
    if len(data) > limit_mb * 2**20:
        error = _error(
            "file", [f"file: {file.filename} is larger than {limit_mb} MB (CLINANN_UPLOAD_MAX_BATCH_MB)"]
        )
        return _page(request, sessions, error=error, values=values, status_code=422)
    try:
        # Parsing and COPY of a large vocabulary take seconds: off the event loop.
        outcome = await run_in_threadpool(
            upload_vocabulary,
            sessions,
            values["name"],
            values["system"],
            values["version"],
            file.filename,
            data,
            identity.user.id,
            client_address=client_address(request),
        )
    except VocabularyFileError as error:
        lines = [f"{error.file_name}, {problem}" for problem in error.problems]
        if error.more:
            lines.append(f"{error.file_name}: more problems not listed")
        return _page(request, sessions, error=_error("file", lines), values=values, status_code=422)
    except VocabularyError as error:
        return _page(
            request, sessions, error=_error(error.field, [str(error)]), values=values, status_code=422
        )
    return RedirectResponse(f"{PAGE}?uploaded={outcome.vocabulary_id}", status_code=303)


@router.post("/{vocabulary_id}/projects")
def attach(
    request: Request,
    vocabulary_id: int,
    identity: CurrentIdentity,
    sessions: Sessions,
    project_id: Annotated[int, Form()],
) -> Response:
    try:
        attach_to_project(
            sessions, project_id, vocabulary_id, identity.user.id, client_address=client_address(request)
        )
    except VocabularyError as error:
        return _page(request, sessions, error=_error(error.field, [str(error)]), status_code=422)
    return RedirectResponse(PAGE, status_code=303)


@router.post("/{vocabulary_id}/projects/{project_id}/detach")
def detach(
    request: Request, vocabulary_id: int, project_id: int, identity: CurrentIdentity, sessions: Sessions
) -> Response:
    try:
        detach_from_project(
            sessions, project_id, vocabulary_id, identity.user.id, client_address=client_address(request)
        )
    except VocabularyError as error:
        return _page(request, sessions, error=_error(error.field, [str(error)]), status_code=422)
    return RedirectResponse(PAGE, status_code=303)
