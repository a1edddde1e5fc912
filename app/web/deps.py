"""Dependencies shared by the routers: the runtime, the clock, who is asking, CSRF."""

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from itsdangerous import BadSignature, Signer
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Project, User
from app.domain.vocabulary import Role
from app.runtime import Runtime
from app.services import access, auth

SESSION_COOKIE = "clinann_session"
PRELOGIN_COOKIE = "clinann_prelogin"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class NotLoggedIn(Exception):
    """Raised by dependencies; pages redirect to the login page, the API answers 401."""


# The dependencies that only read the request are ``async def``: FastAPI runs a plain ``def``
# dependency in the thread pool, a hop per dependency per request that the editor's edits (tens a
# second) pay for nothing. Those that touch the database hop once, and only when they have to.


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def get_sessions(request: Request) -> sessionmaker[Session]:
    return request.app.state.runtime.sessions


def server_clock(request: Request) -> datetime:
    """The server's clock; tests inject another through app.state.clock."""
    clock = getattr(request.app.state, "clock", None)
    return clock() if clock else datetime.now(UTC)


async def utc_now(request: Request) -> datetime:
    return server_clock(request)


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def session_signer(request: Request) -> Signer:
    return Signer(request.app.state.runtime.secret_key, salt="clinann.session")


@dataclass(frozen=True)
class Identity:
    """Who is asking, and how: a browser login session or a personal API token."""

    user: User
    via: str  # "session" or "token"
    csrf_token: str | None = None
    login_session_id: int | None = None  # a password change keeps this session and ends the others


def _resolve_identity(request: Request) -> Identity | None:
    if hasattr(request.state, "identity"):
        return request.state.identity
    runtime: Runtime = request.app.state.runtime
    now = server_clock(request)
    identity = None
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        user = auth.user_for_api_token(runtime.sessions, authorization[7:].strip(), now=now)
        if user is not None:
            identity = Identity(user=user, via="token")
    elif cookie := request.cookies.get(SESSION_COOKIE):
        try:
            secret = session_signer(request).unsign(cookie).decode()
        except BadSignature:
            secret = None
        if secret:
            live = auth.current_session(runtime.sessions, runtime.settings, secret, now=now)
            if live is not None:
                identity = Identity(
                    user=live.user,
                    via="session",
                    csrf_token=live.csrf_token,
                    login_session_id=live.login_session_id,
                )
    request.state.identity = identity
    return identity


def optional_identity(request: Request) -> Identity | None:
    return _resolve_identity(request)


class PasswordChangeRequired(Exception):
    """An admin reset the password: the browser is sent to /account/password, the API answers 403."""


async def identity_before_password_change(request: Request) -> Identity:
    """Who is asking, even one who must change their password first (the password page only)."""
    # verify_csrf has resolved it already for a POST; a GET looks the session up in the pool.
    if hasattr(request.state, "identity"):
        identity = request.state.identity
    else:
        identity = await run_in_threadpool(_resolve_identity, request)
    if identity is None:
        raise NotLoggedIn()
    return identity


async def current_identity(request: Request) -> Identity:
    identity = await identity_before_password_change(request)
    if identity.user.must_change_password:
        raise PasswordChangeRequired()
    return identity


def require_role(*roles: Role):
    """A router dependency: the caller must be logged in with one of ``roles`` (403 otherwise)."""
    allowed = {role.value for role in roles}

    async def check(identity: Annotated[Identity, Depends(current_identity)]) -> Identity:
        if identity.user.role not in allowed:
            raise HTTPException(status_code=403, detail="Your role does not give access to this page.")
        return identity

    return check


def new_prelogin_nonce() -> str:
    return secrets.token_urlsafe(24)


def prelogin_csrf_token(request: Request, nonce: str) -> str:
    return Signer(request.app.state.runtime.secret_key, salt="clinann.prelogin").sign(nonce).decode()


async def verify_csrf(request: Request) -> None:
    """Refuse a state-changing browser request that does not carry its CSRF token.

    Logged-in browsers send the token of their login session (htmx as a header, forms as a
    field); the login form carries a token tied to a pre-login cookie. API calls with a bearer
    token carry no cookie and so cannot be forged cross-site.
    """
    if request.method not in UNSAFE_METHODS:
        return
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    identity = await run_in_threadpool(_resolve_identity, request)
    if identity is None and request.url.path == "/logout":
        return  # the session already ended (idle, expired): logging out must still work
    if identity is not None and identity.csrf_token:
        expected = identity.csrf_token
    else:
        nonce = request.cookies.get(PRELOGIN_COOKIE)
        expected = prelogin_csrf_token(request, nonce) if nonce else None
    if not sent or not expected or not hmac.compare_digest(sent, expected):
        raise HTTPException(
            status_code=403,
            detail="The form has expired or did not come from clinann. Reload the page and try again.",
        )


CurrentIdentity = Annotated[Identity, Depends(current_identity)]
Sessions = Annotated[sessionmaker[Session], Depends(get_sessions)]
Now = Annotated[datetime, Depends(utc_now)]


# ---- a lead's access to the objects a path names -------------------------------------------------------
#
# A lead's handler never reads an object id from the path itself: it declares the id with one of the
# types below (``project_id: LeadProjectId``). The type's dependency takes the raw path segment, accepts
# only a canonical id (digits, no sign, no leading zero, within PostgreSQL's bigint), decides access on
# that integer and hands the very same integer to the handler. There is no second parse that could read
# ``1.0`` differently from the check, and an id that cannot be resolved is refused, never let through.
# guard_lead_routes (run by create_app) refuses to start an app whose lead route takes an object id any
# other way, so a new route cannot forget the check.

CANONICAL_ID = r"^[1-9][0-9]{0,18}$"
LARGEST_ID = 2**63 - 1
LEAD_PREFIXES = ("/lead", "/api/v1/lead")
# Path parameters that name no object of a project: a user named on a project's page (the project in the
# same path decides, and the route checks that the user is one of its leads).
NOT_PROJECT_OBJECTS = frozenset({"user_id"})
# Names that, on a lead's route, may only be object ids taken through the types below: a create route
# that also read ``project_id`` from its query string updated another project (issue 17, finding 2).
OBJECT_ID_NAMES = frozenset(
    {"project_id", "document_id", "set_id", "run_id", "study_id", "export_id", "batch_id"}
)


def _authorise(kind: access.ProjectObject, name: str):
    """The dependency behind a Lead...Id type: the id in path parameter ``name``, of a ``kind`` the caller
    may lead. Every object a path names must be of the same project (the first one named decides)."""

    def authorise(
        request: Request,
        identity: Annotated[Identity, Depends(current_identity)],
        sessions: Annotated[sessionmaker[Session], Depends(get_sessions)],
        raw: Annotated[str, Path(alias=name, pattern=CANONICAL_ID)],
    ) -> int:
        object_id = int(raw)
        if object_id > LARGEST_ID:
            raise HTTPException(status_code=404, detail=str(access.NoSuchObject(kind, object_id)))
        decided = getattr(request.state, "lead_project_id", None)
        try:
            if decided is None:
                request.state.lead_project_id = access.check_lead_access(
                    sessions, identity.user, [(kind, object_id)]
                )
            else:
                with sessions() as db:
                    if access.project_of(db, kind, object_id) != decided:
                        raise access.NoSuchObject(kind, object_id, in_project=True)
        except access.NoSuchObject as error:
            raise HTTPException(status_code=404, detail=str(error)) from None
        except access.NotALeadOfProject as error:
            raise HTTPException(status_code=403, detail=str(error)) from None
        return object_id

    authorise.__name__ = f"authorise_{kind.value}"
    authorise.authorises = name  # read by guard_lead_routes
    return authorise


def _authorise_batch_filter(
    request: Request,
    sessions: Annotated[sessionmaker[Session], Depends(get_sessions)],
    raw: Annotated[str | None, Query(alias="batch_id")] = None,
) -> int | None:
    """The dependency behind LeadBatchFilter: an optional ``batch_id`` of the query string that must be a
    batch of the project the path decided (422 naming the parameter otherwise)."""
    if raw is None or not raw.strip():
        return None

    def refused(message: str) -> HTTPException:
        return HTTPException(status_code=422, detail=[{"loc": ["query", "batch_id"], "msg": message}])

    project_id = getattr(request.state, "lead_project_id", None)
    if project_id is None:  # a route that names no project cannot narrow one to a batch
        raise refused("names no project to take a batch of")
    if not re.fullmatch(CANONICAL_ID, raw) or int(raw) > LARGEST_ID:
        raise refused(f"not a batch id: {raw[:40]!r}")
    with sessions() as db:
        if message := access.batch_refusal(db, project_id, int(raw)):
            raise refused(message)
    return int(raw)


_authorise_batch_filter.authorises = "batch_id"


LeadProjectId = Annotated[int, Depends(_authorise(access.ProjectObject.project, "project_id"))]
LeadDocumentId = Annotated[int, Depends(_authorise(access.ProjectObject.document, "document_id"))]
LeadSetId = Annotated[int, Depends(_authorise(access.ProjectObject.annotation_set, "set_id"))]
LeadRunId = Annotated[int, Depends(_authorise(access.ProjectObject.pre_annotation_run, "run_id"))]
LeadAugmentationRunId = Annotated[int, Depends(_authorise(access.ProjectObject.augmentation_run, "run_id"))]
LeadStudyId = Annotated[int, Depends(_authorise(access.ProjectObject.study, "study_id"))]
LeadExportId = Annotated[int, Depends(_authorise(access.ProjectObject.export, "export_id"))]
# Declared after the path's ids in a handler's signature: FastAPI solves them in that order.
LeadBatchFilter = Annotated[int | None, Depends(_authorise_batch_filter)]


def _authorised_names(dependant) -> set[str]:
    names = set()
    for sub in dependant.dependencies:
        if name := getattr(sub.call, "authorises", None):
            names.add(name)
        names |= _authorised_names(sub)
    return names


def _declared_names(dependant) -> set[str]:
    """Every parameter a route's handler (or a dependency of it that decides no access) reads from the
    query string or the body (form or JSON fields), by the name the request uses."""
    names = {field.alias for fields in (dependant.query_params, dependant.body_params) for field in fields}
    for sub in dependant.dependencies:
        if not getattr(sub.call, "authorises", None):
            names |= _declared_names(sub)
    return names


def lead_route_problems(routes) -> list[str]:
    """Why each of these routes could let a lead past the project check (none: all is well)."""
    from starlette.routing import compile_path

    problems = []
    for route in routes:
        path, dependant = getattr(route, "path", None), getattr(route, "dependant", None)
        if dependant is None or not path or not path.startswith(LEAD_PREFIXES):
            continue
        in_path = set(compile_path(path)[2])
        authorised = _authorised_names(route.dependant)
        where = f"{sorted(route.methods or ())} {path}"
        for name in sorted(in_path - authorised - NOT_PROJECT_OBJECTS):
            problems.append(f"{where}: path parameter {name} is not taken through a Lead...Id type")
        if in_path & NOT_PROJECT_OBJECTS and "project_id" not in authorised:
            problems.append(f"{where}: names a user without an authorised project_id")
        for name in sorted((_declared_names(route.dependant) & OBJECT_ID_NAMES) - authorised):
            problems.append(f"{where}: reads {name} outside the path check (query, form or body)")
    return problems


def guard_lead_routes(routes) -> None:
    """Refuse to build an app in which a lead's route takes an object id past the access check."""
    if problems := lead_route_problems(routes):
        raise RuntimeError("lead routes that bypass the project check:\n" + "\n".join(problems))


def project_or_404(sessions: sessionmaker[Session], project_id: int) -> Project:
    """The project a lead's page is about, or a 404 (LeadProjectId has decided access)."""
    with sessions() as db:
        project = db.get(Project, project_id)
    if project is None:
        raise HTTPException(status_code=404, detail="No such project.")
    return project
