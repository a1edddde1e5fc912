"""Background work on procrastinate, the PostgreSQL job queue, in the same database.

Task functions are declared once with ``job(...)``; every App made by ``make_job_queue`` (one
per process, plus short-lived ones for deferring from synchronous code) registers all of them,
so no App shares mutable state with another.
`clinann serve` runs a worker in-process; `clinann worker` runs more, anywhere.
"""

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import procrastinate
from sqlalchemy import select

if TYPE_CHECKING:
    from app.runtime import Runtime

_JOBS: list[tuple[Callable[..., Any], dict[str, Any]]] = []
_runtime: "Runtime | None" = None
QUEUES = ["maintenance", "pre_annotation", "augmentation", "export"]


def bind_runtime(runtime: "Runtime") -> None:
    """Tasks reach the database through the runtime of the process that runs them."""
    global _runtime
    _runtime = runtime


def runtime() -> "Runtime":
    if _runtime is None:
        raise RuntimeError("no runtime bound: start through `clinann serve` or `clinann worker`")
    return _runtime


def make_job_queue(conninfo: str) -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))
    for function, options in _JOBS:
        app.task(**options)(function)
    return app


def job(name: str, queue: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a job function; its procrastinate name is ``clinann.<name>``."""

    def declare(function: Callable[..., Any]) -> Callable[..., Any]:
        _JOBS.append((function, {"name": f"clinann.{name}", "queue": queue}))
        return function

    return declare


def defer(task_name: str, conninfo: str | None = None, **arguments: Any) -> int:
    """Queue a job by name from synchronous code (a request, the CLI); return its id.

    A short-lived sync connection: the worker's async pool belongs to its own event loop.
    """
    queue = make_job_queue(conninfo or runtime().database.libpq_url)
    with queue.open():
        return queue.configure_task(f"clinann.{task_name}", allow_unknown=False).defer(**arguments)


@job("verify_document_integrity", queue="maintenance")
def verify_document_integrity(project_id: int) -> dict[str, Any]:
    """Recompute the sha256 of every note of a project and audit the result.

    The stored text of a note must never change; this is the check an auditor can ask for.
    """
    from app.db.models import Document
    from app.services import audit

    with runtime().sessions.begin() as db:
        rows = db.execute(
            select(Document.id, Document.text, Document.sha256).where(Document.project_id == project_id)
        ).all()
        altered = [
            row.id for row in rows if hashlib.sha256(row.text.encode("utf-8")).hexdigest() != row.sha256
        ]
        result = {"documents": len(rows), "altered": altered}
        audit.record(
            db, "documents.integrity_check", object_type="project", object_id=project_id, details=result
        )
    return result


@job("make_export", queue="export")
def make_export(export_id: int) -> None:
    """Make a large export in the background (the lead's page shows its progress)."""
    from app.services.exports import make_export as make

    current = runtime()
    make(current.sessions, export_id, current.settings.data_dir / "exports")
