"""Dependencies shared by the routers: the runtime, the clock, who is asking, CSRF."""

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request
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
                identity = Identity(user=live.user, via="session", csrf_token=live.csrf_token)
    request.state.identity = identity
    return identity


def optional_identity(request: Request) -> Identity | None:
    return _resolve_identity(request)


async def current_identity(request: Request) -> Identity:
    # verify_csrf has resolved it already for a POST; a GET looks the session up in the pool.
    if hasattr(request.state, "identity"):
        identity = request.state.identity
    else:
        identity = await run_in_threadpool(_resolve_identity, request)
    if identity is None:
        raise NotLoggedIn()
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


# What a path parameter of a lead's route names. A router whose parameter means something else (the
# augmentation pages' run_id) says so in its own require_project_lead(...).
LEAD_PATH_OBJECTS = {
    "project_id": access.ProjectObject.project,
    "document_id": access.ProjectObject.document,
    "set_id": access.ProjectObject.annotation_set,
    "run_id": access.ProjectObject.pre_annotation_run,
    "study_id": access.ProjectObject.study,
    "export_id": access.ProjectObject.export,
    "batch_id": access.ProjectObject.batch,
}
# Path parameters that name no object of a project: a user named on a project's page (the project in the
# same path decides; the route itself checks the user is one of its leads).
NOT_PROJECT_OBJECTS = frozenset({"user_id"})


def require_project_lead(**meanings: access.ProjectObject):
    """A router dependency, beside the role check: the objects the path names must be of a project the
    caller leads (admins lead every project). A missing object answers 404, another project's 403.

    ``meanings`` overrides LEAD_PATH_OBJECTS for this router. A path parameter the check does not know
    is a programming error and answers 500: a new route cannot slip past the check by its naming.
    """
    known = {**LEAD_PATH_OBJECTS, **meanings}

    def check(
        request: Request,
        identity: Annotated[Identity, Depends(current_identity)],
        sessions: Annotated[sessionmaker[Session], Depends(get_sessions)],
    ) -> None:
        named = []
        for name, raw in request.path_params.items():  # in the order of the path
            if name in NOT_PROJECT_OBJECTS:
                continue
            if name not in known:
                raise RuntimeError(f"{request.url.path}: the access check does not know {name}")
            try:
                named.append((known[name], int(raw)))
            except (TypeError, ValueError):
                return  # not an id: the route's own validation answers 422
        try:
            access.check_lead_access(sessions, identity.user, named)
        except access.NoSuchObject as error:
            raise HTTPException(status_code=404, detail=str(error)) from None
        except access.NotALeadOfProject as error:
            raise HTTPException(status_code=403, detail=str(error)) from None

    return check


def project_or_404(sessions: sessionmaker[Session], project_id: int) -> Project:
    """The project a lead's page is about, or a 404 (require_project_lead has decided access)."""
    with sessions() as db:
        project = db.get(Project, project_id)
    if project is None:
        raise HTTPException(status_code=404, detail="No such project.")
    return project
