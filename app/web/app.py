"""The FastAPI application: routers, static files, error pages, security headers, the worker."""

import asyncio
import contextlib
import gc
import logging
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import psycopg
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import __version__
from app.runtime import Runtime
from app.settings import PROJECT_ROOT
from app.web.deps import NotLoggedIn, PasswordChangeRequired, guard_lead_routes, verify_csrf
from app.web.proxies import TrustedProxies
from app.web.routers import (
    account,
    admin,
    annotate,
    api,
    api_docs,
    auth,
    lead,
    lead_adjudication,
    lead_augmentation,
    lead_dashboard,
    lead_runs,
    lead_study,
)
from app.web.routers.admin_vocabularies import router as admin_vocabularies_router
from app.web.templating import render

# FastAPI traces requests through OpenTelemetry when a provider is set up (by an agent, by
# FASTAPI_OTEL_AUTO_CONFIGURE and an OTLP endpoint in the environment, or by any library), and its
# records of failures carry exception messages, which may quote a note. Nothing leaves this server
# but calls to the configured LLM endpoint, so all of it is off, whatever the environment says.
NO_TELEMETRY = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}

log = logging.getLogger("clinann.web")

# Pages load nothing from anywhere but this server; the browser enforces it.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'"
)
DATABASE_RETRY_AFTER_SECONDS = 2  # how soon a client may try again while PostgreSQL is away
HSTS = "max-age=31536000; includeSubDomains"  # a year; only ever sent over TLS
ERROR_TITLES = {
    401: "Please log in",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    409: "Conflict",
    422: "Cannot use this input",
    429: "Too many attempts",
    500: "Something went wrong",
}


def _wants_json(request: Request) -> bool:
    return (
        request.url.path.startswith("/api/")
        or "application/json" in request.headers.get("accept", "").split(",")[0]
    )


def _error_page(request: Request, status: int, message: str, reference: str | None = None) -> Response:
    return render(
        request,
        "errors/error.html",
        {
            "status": status,
            "title": ERROR_TITLES.get(status, "Error"),
            "message": message,
            "reference": reference,
        },
        status_code=status,
    )


def _log_exception_without_values(reference: str, exc: BaseException) -> None:
    """Log where it failed, never what: messages and locals may carry note text."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(frames))
    log.error("unhandled %s (reference %s) at %s", type(exc).__name__, reference, where)


def _unexpected_error(request: Request, exc: Exception) -> Response:
    reference = uuid.uuid4().hex[:12]
    _log_exception_without_values(reference, exc)
    if _wants_json(request):
        return JSONResponse({"detail": "Internal error", "reference": reference}, status_code=500)
    return _error_page(
        request, 500, "The error has been logged. Quote this reference to your administrator.", reference
    )


class SecurityHeaders:
    """Headers every answer carries, the server's own time for it, and a page (not a traceback)
    for an unexpected error.

    A plain ASGI middleware rather than ``@app.middleware("http")``: that one streams every answer
    through a task and a channel of its own, which costs each edit about a millisecond.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope["path"]
        answered = False

        async def send_with_headers(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
                headers = MutableHeaders(scope=message)
                # Server-Timing: what the server spent on this request (benchmarks, browser dev tools).
                headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.2f}"
                for name, value in (
                    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
                    ("X-Content-Type-Options", "nosniff"),
                    ("Referrer-Policy", "no-referrer"),
                    ("X-Frame-Options", "DENY"),
                ):
                    headers.setdefault(name, value)
                if not path.startswith("/static/"):
                    headers.setdefault("Cache-Control", "no-store")
                if scope.get("scheme") == "https":  # behind TLS (a trusted proxy's X-Forwarded-Proto)
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:  # caught here so that no traceback with values reaches a log
            if answered:
                raise
            await _unexpected_error(Request(scope), exc)(scope, receive, send_with_headers)


async def _worker(runtime: Runtime) -> None:
    from app.jobs import run_worker

    await run_worker(runtime, install_signal_handlers=False)


def freeze_start_up_objects() -> None:
    """For a server process, once its app is built: what exists by then (modules, the schema, the
    templates) lives as long as the process, so keep the collector's full passes off it, or each
    one stalls every request for ~170 ms. Not in create_app: tests build an app per test."""
    gc.collect()
    gc.freeze()


def every_route(app: FastAPI) -> list:
    """Every route of the app, those of included routers too (FastAPI keeps these as branches)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before the included-router branches: app.routes is already flat
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def create_app(
    runtime: Runtime, *, run_worker: bool = False, clock: Callable[[], datetime] | None = None
) -> FastAPI:
    """Build the app on a runtime; with ``run_worker`` the job worker runs in the same process."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker_task = None
        if run_worker:
            await runtime.job_queue.open_async()
            worker_task = asyncio.create_task(_worker(runtime), name="clinann-worker")
        try:
            yield
        finally:
            if worker_task is not None:
                worker_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await worker_task
                await runtime.job_queue.close_async()

    app = FastAPI(
        title="clinann",
        version=__version__,
        lifespan=lifespan,
        telemetry=NO_TELEMETRY,
        dependencies=[Depends(verify_csrf)],
        docs_url=None,  # served by routers/api_docs from vendored assets (FastAPI's own uses a CDN)
        redoc_url=None,
        openapi_url=api_docs.OPENAPI_URL,
    )
    app.state.runtime = runtime
    app.state.clock = clock
    app.mount("/static", StaticFiles(directory=PROJECT_ROOT / "static"), name="static")
    for module in (
        auth,
        annotate,
        lead,
        lead_runs,
        lead_study,
        lead_dashboard,
        lead_adjudication,
        lead_augmentation,
        admin,
        account,
        api,
        api_docs,
    ):
        app.include_router(module.router)
    app.include_router(admin_vocabularies_router)
    app.include_router(account.password_router)
    guard_lead_routes(every_route(app))

    app.add_middleware(SecurityHeaders)
    # Outermost, so that everything inside sees the client (and scheme) a trusted proxy reported.
    app.add_middleware(TrustedProxies, trusted=runtime.settings.trusted_proxies if runtime else ())

    @app.exception_handler(NotLoggedIn)
    async def not_logged_in(request: Request, exc: NotLoggedIn) -> Response:
        if _wants_json(request):
            return JSONResponse(
                {"detail": "Not authenticated"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.headers.get("HX-Request"):
            return Response(status_code=401, headers={"HX-Redirect": "/login"})
        return RedirectResponse(f"/login?next={target}", status_code=303)

    @app.exception_handler(PasswordChangeRequired)
    async def password_change_required(request: Request, exc: PasswordChangeRequired) -> Response:
        # Until the user replaces the password an admin reset, nothing but the password page answers.
        if _wants_json(request):
            message = (
                "Your password was reset by an administrator: log in in the browser and choose a new "
                "one at /account/password before using the API."
            )
            return JSONResponse({"detail": message}, status_code=403)
        if request.headers.get("HX-Request"):
            return Response(status_code=403, headers={"HX-Redirect": "/account/password"})
        return RedirectResponse("/account/password", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else None
        if _wants_json(request):
            return JSONResponse(
                {"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
            )
        default = {404: "There is no such page.", 403: "Your role does not give access to this page."}
        return _error_page(request, exc.status_code, detail or default.get(exc.status_code, ""))

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeout)
    async def database_unreachable(request: Request, exc: Exception) -> Response:
        # PostgreSQL is down or restarting: nothing was stored, and the client may send the same
        # request again (edits carry their client id, so a retry is applied once).
        log.warning("database unreachable: %s", type(exc).__name__)
        message = "The database is not reachable right now; nothing was lost. Try again shortly."
        headers = {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)}
        if _wants_json(request) or request.headers.get("content-type", "").startswith("application/json"):
            return JSONResponse({"detail": message}, status_code=503, headers=headers)
        response = _error_page(request, 503, message)
        response.headers.update(headers)
        return response

    @app.exception_handler(DataError)
    async def out_of_range(request: Request, exc: DataError) -> Response:
        # PostgreSQL refused a value of the request (an id beyond its integer range, say): the
        # request is wrong, not the server. The value itself is not echoed (it may be note text).
        if not isinstance(getattr(exc, "orig", None), psycopg.errors.DataError):
            return _unexpected_error(request, exc)
        message = "A value in the request is out of range for this server."
        if _wants_json(request):
            return JSONResponse({"detail": message}, status_code=422)
        return _error_page(request, 422, message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # The errors name fields; the input values are left out (they may be note text).
        problems = [{"loc": list(e.get("loc", [])), "msg": e.get("msg", "")} for e in exc.errors()]
        if _wants_json(request):
            return JSONResponse({"detail": problems}, status_code=422)
        message = "; ".join(f"{'.'.join(map(str, p['loc'][1:]))}: {p['msg']}" for p in problems)
        return _error_page(request, 422, message)

    return app
