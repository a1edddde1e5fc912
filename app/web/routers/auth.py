"""Login and logout pages."""

import asyncio
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from itsdangerous import BadSignature

from app.domain.vocabulary import Role
from app.services import auth
from app.web.deps import (
    PRELOGIN_COOKIE,
    SESSION_COOKIE,
    Now,
    client_address,
    new_prelogin_nonce,
    optional_identity,
    prelogin_csrf_token,
    session_signer,
)
from app.web.templating import render

router = APIRouter(tags=["auth"])

HOME_OF_ROLE = {Role.admin: "/admin", Role.lead: "/lead", Role.annotator: "/annotate"}


def home_of(role: str) -> str:
    return HOME_OF_ROLE.get(Role(role), "/")


def _safe_next(target: str | None) -> str | None:
    """Only same-site paths: a login link must not send a physician to another host."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def _login_page(
    request: Request,
    *,
    error: str | None = None,
    status_code: int = 200,
    username: str = "",
    next_url: str | None = None,
) -> Response:
    nonce = new_prelogin_nonce()
    response = render(
        request,
        "auth/login.html",
        {
            "error": error,
            "username": username,
            "next_url": next_url or "",
            "login_csrf_token": prelogin_csrf_token(request, nonce),
        },
        status_code=status_code,
    )
    settings = request.app.state.runtime.settings
    response.set_cookie(
        PRELOGIN_COOKIE, nonce, httponly=True, samesite="strict", secure=settings.cookie_secure, max_age=3600
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    identity = optional_identity(request)
    if identity is not None and identity.via == "session":
        return RedirectResponse(_safe_next(next) or home_of(identity.user.role), status_code=303)
    return _login_page(request, next_url=_safe_next(next))


@router.post("/login")
async def login(
    request: Request,
    now: Now,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    runtime = request.app.state.runtime
    try:
        login = await run_in_threadpool(
            auth.log_in,
            runtime.sessions,
            runtime.settings,
            username,
            password,
            now=now,
            client_address=client_address(request),
        )
    except auth.LoginRefused as refused:
        if refused.throttled:
            message = "Too many failed logins. Wait a few minutes, then try again."
            return _login_page(request, error=message, status_code=429, username=username)
        # Held here, on the event loop, not in a thread of the pool: waiting answers cost nothing
        # but their connection. Tests inject another sleep through app.state.sleep.
        await getattr(request.app.state, "sleep", asyncio.sleep)(refused.delay_seconds)
        return _login_page(
            request,
            error="Wrong user name or password.",
            status_code=401,
            username=username,
            next_url=_safe_next(next),
        )
    target = _safe_next(next) or home_of(login.user.role)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_signer(request).sign(login.session_secret).decode(),
        httponly=True,
        samesite="lax",
        secure=runtime.settings.cookie_secure,
        max_age=runtime.settings.session_max_hours * 3600,
        path="/",
    )
    response.delete_cookie(PRELOGIN_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, now: Now) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        try:
            secret = session_signer(request).unsign(cookie).decode()
            auth.log_out(request.app.state.runtime.sessions, secret, now=now)
        except BadSignature:  # a forged or stale cookie: nothing to end
            pass
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/")
def home(request: Request) -> Response:
    identity = optional_identity(request)
    if identity is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(home_of(identity.user.role), status_code=303)
