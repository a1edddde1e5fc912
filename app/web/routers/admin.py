"""The admin's pages: accounts and the audit trail (uploads and endpoints come later)."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from app.domain.passwords import MIN_LENGTH as MIN_PASSWORD_LENGTH
from app.domain.vocabulary import Role
from app.services import audit, users
from app.services.administration import admin_overview
from app.web.deps import CurrentIdentity, Now, Sessions, client_address, require_role
from app.web.templating import render

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_role(Role.admin))])


@router.get("")
def overview(request: Request, sessions: Sessions) -> Response:
    return render(request, "admin/home.html", {"overview": admin_overview(sessions), "roles": list(Role)})


# ---- accounts: list, add, change role, disable or enable, reset a password ------------------------


def _error_field(error: Exception | str | None) -> str | None:
    """The field a refusal names ("password: at least 12 characters" names password)."""
    return str(error).partition(": ")[0] if error else None


def _accounts_page(request: Request, sessions, *, form=None, error=None, outcome=None) -> Response:
    return render(
        request,
        "admin/users.html",
        {
            "accounts": users.list_users(sessions),
            "roles": [role.value for role in Role],
            "form": form or {},
            "form_error": str(error) if error else None,
            "error_field": _error_field(error),
            "outcome": outcome,
            "min_length": MIN_PASSWORD_LENGTH,
        },
        status_code=422 if error else 200,
    )


@router.get("/users")
def accounts(request: Request, sessions: Sessions, added: str | None = None) -> Response:
    return _accounts_page(request, sessions, outcome=f"Account {added} added." if added else None)


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
        user = users.add_user(
            sessions,
            username,
            password,
            role,
            display_name or None,
            actor_id=identity.user.id,
            client_address=client_address(request),
        )
    except users.AccountError as error:
        form = {"username": username, "display_name": display_name, "role": role}
        return _accounts_page(request, sessions, form=form, error=error)
    return RedirectResponse(f"/admin/users?added={user.username}", status_code=303)


def _account_page(
    request: Request,
    identity,
    sessions,
    user_id: int,
    *,
    error=None,
    outcome=None,
    temporary_password=None,
) -> Response:
    account = users.get_user(sessions, user_id)
    if account is None:
        raise HTTPException(status_code=404, detail="No such account.")
    response = render(
        request,
        "admin/user.html",
        {
            "account": account,
            "is_self": account.id == identity.user.id,
            "roles": [role.value for role in Role],
            "form_error": str(error) if error else None,
            "error_field": _error_field(error),
            "outcome": outcome,
            "temporary_password": temporary_password,
        },
        status_code=422 if error else 200,
    )
    response.headers["Cache-Control"] = "no-store"  # a temporary password is shown once
    return response


ACCOUNT_OUTCOMES = {
    "role": "Role changed.",
    "disabled": "Account disabled; its login sessions have ended.",
    "enabled": "Account enabled.",
}


@router.get("/users/{user_id}")
def account(
    request: Request, user_id: int, identity: CurrentIdentity, sessions: Sessions, done: str | None = None
) -> Response:
    return _account_page(request, identity, sessions, user_id, outcome=ACCOUNT_OUTCOMES.get(done or ""))


def _account_change(request: Request, identity, sessions, user_id: int, done: str, change) -> Response:
    """Run one change of an account; on a refusal show its page with the reason, naming the field."""
    if users.get_user(sessions, user_id) is None:
        raise HTTPException(status_code=404, detail="No such account.")
    try:
        change()
    except users.AccountError as error:
        return _account_page(request, identity, sessions, user_id, error=error)
    return RedirectResponse(f"/admin/users/{user_id}?done={done}", status_code=303)


@router.post("/users/{user_id}/role")
def change_role(
    request: Request,
    user_id: int,
    identity: CurrentIdentity,
    sessions: Sessions,
    role: Annotated[str, Form()] = "",
) -> Response:
    return _account_change(
        request,
        identity,
        sessions,
        user_id,
        "role",
        lambda: users.set_role(
            sessions, user_id, role, actor_id=identity.user.id, client_address=client_address(request)
        ),
    )


def _set_active(request: Request, user_id: int, identity, sessions, now, active: bool) -> Response:
    return _account_change(
        request,
        identity,
        sessions,
        user_id,
        "enabled" if active else "disabled",
        lambda: users.set_active(
            sessions,
            user_id,
            active,
            actor_id=identity.user.id,
            now=now,
            client_address=client_address(request),
        ),
    )


@router.post("/users/{user_id}/disable")
def disable(
    request: Request, user_id: int, identity: CurrentIdentity, sessions: Sessions, now: Now
) -> Response:
    return _set_active(request, user_id, identity, sessions, now, False)


@router.post("/users/{user_id}/enable")
def enable(
    request: Request, user_id: int, identity: CurrentIdentity, sessions: Sessions, now: Now
) -> Response:
    return _set_active(request, user_id, identity, sessions, now, True)


@router.post("/users/{user_id}/password")
def reset_password(
    request: Request,
    user_id: int,
    identity: CurrentIdentity,
    sessions: Sessions,
    now: Now,
    temporary_password: Annotated[str, Form()] = "",
) -> Response:
    """Answered with the page itself, not a redirect: a generated password is shown this once."""
    if users.get_user(sessions, user_id) is None:
        raise HTTPException(status_code=404, detail="No such account.")
    try:
        _, password = users.reset_password(
            sessions,
            user_id,
            temporary_password or None,
            actor_id=identity.user.id,
            now=now,
            client_address=client_address(request),
        )
    except users.AccountError as error:
        return _account_page(request, identity, sessions, user_id, error=error)
    given = bool(temporary_password)
    return _account_page(
        request,
        identity,
        sessions,
        user_id,
        outcome="Password reset to the one you gave; the user's sessions have ended." if given else None,
        temporary_password=None if given else password,
    )


# ---- the audit trail: read, filter, export (never changed: PostgreSQL refuses it) -------------------

AUDIT_PAGE = 100


def _audit_filter(request: Request) -> audit.AuditFilter:
    query = request.query_params

    def moment(name: str):
        value = (query.get(name) or "").strip()
        if not value:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise HTTPException(
                status_code=422, detail=f"{name}: a date or time such as 2026-12-01"
            ) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    def text(name: str):
        return (query.get(name) or "").strip()[:200] or None

    return audit.AuditFilter(
        action=text("action"),
        who=text("who"),
        object_type=text("object_type"),
        object_id=text("object_id"),
        since=moment("since"),
        until=moment("until"),
    )


@router.get("/audit")
def audit_page(request: Request, sessions: Sessions) -> Response:
    """The trail, newest first, AUDIT_PAGE events a page; a page past the last shows the last."""
    wanted = _audit_filter(request)
    raw = (request.query_params.get("page") or "1").strip()
    if not raw.isdigit() or int(raw) < 1:
        raise HTTPException(status_code=422, detail="page: a page number, 1 or more")
    rows, total, page = audit.audit_trail_page(sessions, wanted, int(raw), AUDIT_PAGE)
    pages = max(1, -(-total // AUDIT_PAGE))
    query = {k: v for k, v in request.query_params.items() if k != "page" and v}
    first = (page - 1) * AUDIT_PAGE + 1 if rows else 0
    return render(
        request,
        "admin/audit.html",
        {
            "rows": rows,
            "total": total,
            "page": page,
            "pages": pages,
            "first": first,
            "last": first + len(rows) - 1 if rows else 0,
            "query": query,
            "wanted": wanted,
            "actions": audit.audit_actions(sessions),
        },
    )


@router.get("/audit/export")
def audit_export(
    request: Request, identity: CurrentIdentity, sessions: Sessions, format: str = "csv"
) -> Response:
    """Every audit event the filters select, oldest first; the export is itself audited."""
    if format not in ("csv", "jsonl"):
        raise HTTPException(status_code=422, detail="format: csv or jsonl")
    wanted = _audit_filter(request)
    content = audit.export_audit_trail(sessions, wanted, format)
    with sessions.begin() as db:
        audit.record(
            db,
            "audit.exported",
            user_id=identity.user.id,
            client_address=client_address(request),
            details={
                "format": format,
                "filters": {k: v for k, v in request.query_params.items() if k != "format"},
            },
        )
    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    return Response(
        content, media_type=media, headers={"Content-Disposition": f'attachment; filename="audit.{format}"'}
    )


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
            skip_mismatched=form.get("skip_mismatched") == "on",
            extend_schema=form.get("extend_schema") == "on",
            annotator_from_folder=form.get("annotator_from_folder") == "on",
            create_annotators=form.get("create_annotators") == "on",
        )
    except BatchError as error:
        return _batches_page(request, sessions, form_error=str(error), status_code=422)
    if outcome.status == "held":
        return RedirectResponse(f"/admin/batches/{outcome.batch_id}", status_code=303)
    return _batches_page(
        request, sessions, outcome=outcome, status_code=200 if outcome.status != "refused" else 422
    )


def _batch_page(request: Request, sessions, batch_id: int, *, status_code: int = 200, **context) -> Response:
    """The batch's page: its PHI report and, while it is held, a decision per flagged note."""
    from app.services.batches import batch_detail

    detail = batch_detail(sessions, batch_id)
    if detail is None:
        raise HTTPException(status_code=404, detail="No such batch.")
    return render(request, "admin/batch.html", {"detail": detail, **context}, status_code=status_code)


@router.get("/batches/{batch_id}")
def batch_report(request: Request, batch_id: int, sessions: Sessions) -> Response:
    return _batch_page(request, sessions, batch_id)


@router.post("/batches/{batch_id}/notes")
def decide_note(
    request: Request,
    batch_id: int,
    identity: CurrentIdentity,
    sessions: Sessions,
    now: Now,
    note: Annotated[str, Form()] = "",
    decision: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Release, exclude or mask one flagged note of a held batch, with a reason (audited)."""
    from app.services import batches

    try:
        batches.decide_note(
            sessions,
            batch_id,
            note,
            decision,
            reason,
            actor_id=identity.user.id,
            now=now,
            client_address=client_address(request),
        )
    except batches.BatchError as error:
        if not str(error).startswith(("note:", "decision:", "reason:")):  # the batch is decided already
            return _batch_page(request, sessions, batch_id, status_code=409, form_error=str(error))
        return _batch_page(
            request,
            sessions,
            batch_id,
            status_code=422,
            note_error={"note": note, "decision": decision, "reason": reason, "message": str(error)},
        )
    return RedirectResponse(f"/admin/batches/{batch_id}#decided", status_code=303)


@router.post("/batches/{batch_id}/release")
def release(
    request: Request,
    batch_id: int,
    identity: CurrentIdentity,
    sessions: Sessions,
    now: Now,
    reason: Annotated[str, Form()] = "",
) -> Response:
    from app.services.batches import BatchError, release_batch

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
        return _batch_page(request, sessions, batch_id, status_code=422, form_error=str(error))
    return RedirectResponse(f"/admin/batches/{batch_id}", status_code=303)


@router.post("/batches/{batch_id}/reject")
def reject(
    request: Request,
    batch_id: int,
    identity: CurrentIdentity,
    sessions: Sessions,
    now: Now,
    confirm: Annotated[str, Form()] = "",
) -> Response:
    """Reject a held batch, erasing its notes; only with ``confirm=yes``. Without it (a page without
    scripts, a stray request) nothing changes and the page asks first, saying how many notes go."""
    from app.services.batches import BatchError, notes_to_erase, reject_batch

    if confirm != "yes":
        if notes_to_erase(sessions, batch_id) is None:
            return _batch_page(
                request,
                sessions,
                batch_id,
                status_code=409,
                form_error=f"batch {batch_id} is not held for review",
            )
        return _batch_page(request, sessions, batch_id, confirm_reject=True)
    try:
        reject_batch(
            sessions, batch_id, actor_id=identity.user.id, now=now, client_address=client_address(request)
        )
    except BatchError as error:
        return _batch_page(request, sessions, batch_id, status_code=409, form_error=str(error))
    return RedirectResponse(f"/admin/batches/{batch_id}", status_code=303)


# ---- LLM endpoints: OpenAI-compatible servers, keys only as environment variable names ----------


def _endpoint_form(form):
    from app.services.llm_endpoints import EndpointError, EndpointForm

    def number(field: str, kind, default):
        raw = str(form.get(field) or "").strip()
        try:
            return kind(raw) if raw else default
        except ValueError:
            raise EndpointError(field, "must be a number") from None

    return EndpointForm(
        name=str(form.get("name") or ""),
        base_url=str(form.get("base_url") or ""),
        model=str(form.get("model") or ""),
        api_key_env=str(form.get("api_key_env") or "") or None,
        max_concurrency=number("max_concurrency", int, 4),
        timeout_seconds=number("timeout_seconds", float, 60.0),
        structured_output=form.get("structured_output") is not None,
        azure_api_version=str(form.get("azure_api_version") or "") or None,
        is_active=form.get("is_active") is not None,
    )


def _endpoints_page(request: Request, sessions, *, editing=None, values=None, error=None, status_code=200):
    from app.services.llm_endpoints import list_endpoints

    return render(
        request,
        "admin/endpoints.html",
        {"endpoints": list_endpoints(sessions), "editing": editing, "values": values or {}, "error": error},
        status_code=status_code,
    )


@router.get("/endpoints")
def endpoints(request: Request, sessions: Sessions, edit: int | None = None) -> Response:
    from app.services.llm_endpoints import get_endpoint

    editing = get_endpoint(sessions, edit) if edit else None
    if edit and editing is None:
        raise HTTPException(404)
    return _endpoints_page(request, sessions, editing=editing)


@router.post("/endpoints")
async def save_endpoint(
    request: Request, identity: CurrentIdentity, sessions: Sessions, endpoint_id: int | None = None
) -> Response:
    from app.services.llm_endpoints import EndpointError, get_endpoint
    from app.services.llm_endpoints import save_endpoint as save

    form = await request.form()
    try:
        save(
            sessions,
            _endpoint_form(form),
            user_id=identity.user.id,
            endpoint_id=endpoint_id,
            client_address=client_address(request),
        )
    except EndpointError as error:
        editing = get_endpoint(sessions, endpoint_id) if endpoint_id else None
        return _endpoints_page(
            request, sessions, editing=editing, values=dict(form), error=error, status_code=422
        )
    return RedirectResponse("/admin/endpoints", status_code=303)


@router.post("/endpoints/{endpoint_id}/test")
async def test_endpoint(request: Request, sessions: Sessions, endpoint_id: int) -> Response:
    from app.services.llm_endpoints import get_endpoint, test_connection

    endpoint = get_endpoint(sessions, endpoint_id)
    if endpoint is None:
        raise HTTPException(404)
    worked, message = await test_connection(endpoint)
    return render(
        request,
        "admin/endpoints.html",
        {"endpoint": endpoint, "worked": worked, "message": message},
        block_name="connection_result",
    )
