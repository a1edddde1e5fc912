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


def job(name: str, queue: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a job function; its procrastinate name is ``clinann.<name>``."""

    def declare(function: Callable[..., Any]) -> Callable[..., Any]:
        _JOBS.append((function, {"name": f"clinann.{name}", "queue": queue, **options}))
        return function

    return declare


def defer_many(
    task_name: str,
    arguments: list[dict[str, Any]],
    *,
    queueing_lock: Callable[[dict[str, Any]], str] | None = None,
    conninfo: str | None = None,
) -> int:
    """Queue many jobs of one task over one connection; a job whose queueing lock is taken (the same
    work already waiting) is not queued twice. Returns how many were queued."""
    queue = make_job_queue(conninfo or runtime().database.libpq_url)
    queued = 0
    with queue.open():
        for each in arguments:
            lock = queueing_lock(each) if queueing_lock else None
            task = queue.configure_task(f"clinann.{task_name}", allow_unknown=False, queueing_lock=lock)
            try:
                task.defer(**each)
            except procrastinate.exceptions.AlreadyEnqueued:
                continue
            queued += 1
    return queued


async def requeue_stalled_jobs(queue: procrastinate.App, stalled_seconds: float) -> int:
    """Put back in the queue the jobs of workers that stopped beating (killed, lost their machine).

    Safe because every job is idempotent: a pre-annotation note already written is skipped.
    """
    stalled = await queue.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_seconds)
    for stalled_job in stalled:
        await queue.job_manager.retry_job(stalled_job)
    return len(stalled)


async def run_worker(
    current: "Runtime", *, concurrency: int | None = None, install_signal_handlers: bool = True
) -> None:
    """A worker on every queue, with a sweeper that requeues the jobs of dead workers."""
    import asyncio
    import contextlib
    import logging

    settings = current.settings
    log = logging.getLogger("clinann.jobs")

    async def sweep() -> None:
        while True:
            try:
                count = await requeue_stalled_jobs(current.job_queue, settings.stalled_worker_seconds)
                if count:
                    log.warning("requeued %d job(s) of a worker that stopped", count)
            except Exception:  # the sweeper must outlive a database hiccup
                log.exception("could not look for stalled jobs")
            await asyncio.sleep(max(1.0, settings.stalled_worker_seconds / 3))

    sweeper = asyncio.create_task(sweep(), name="clinann-stalled-job-sweeper")
    try:
        await current.job_queue.run_worker_async(
            queues=QUEUES,
            concurrency=concurrency or settings.worker_concurrency,
            install_signal_handlers=install_signal_handlers,
            update_heartbeat_interval=settings.worker_heartbeat_seconds,
            stalled_worker_timeout=settings.stalled_worker_seconds,
            wait=True,
        )
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper


def defer(task_name: str, conninfo: str | None = None, **arguments: Any) -> int:
    """Queue a job by name from synchronous code (a request, the CLI); return its id.

    A short-lived sync connection: the worker's async pool belongs to its own event loop.
    """
    queue = make_job_queue(conninfo or runtime().database.libpq_url)
    with queue.open():
        return queue.configure_task(f"clinann.{task_name}", allow_unknown=False).defer(**arguments)


def defer_once_later(
    task_name: str, lock: str, delay_seconds: float, conninfo: str | None = None, **arguments: Any
) -> bool:
    """Queue a job to run in delay_seconds unless one with the same lock is waiting; True if queued."""
    queue = make_job_queue(conninfo or runtime().database.libpq_url)
    with queue.open():
        task = queue.configure_task(
            f"clinann.{task_name}",
            allow_unknown=False,
            queueing_lock=lock,
            schedule_in={"seconds": delay_seconds},
        )
        try:
            task.defer(**arguments)
        except procrastinate.exceptions.AlreadyEnqueued:
            return False
    return True


@job("refresh_metrics", queue="maintenance")
def refresh_metrics(project_id: int) -> None:
    """Compute a project's report after submissions, so the lead's next dashboard load reads it, and
    the agreement of newly submitted notes for the adjudication queue."""
    from app.services.adjudication import adjudication_queue
    from app.services.metrics import project_metrics

    project_metrics(runtime().sessions, project_id)
    adjudication_queue(runtime().sessions, project_id)


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
def make_export(export_id: int, undecided: str = "exclude") -> None:
    """Make a large export in the background (the lead's page shows its progress)."""
    from app.services.exports import make_export as make

    current = runtime()
    make(current.sessions, export_id, current.settings.data_dir / "exports", undecided)


@job(
    "pre_annotate_note",
    queue="pre_annotation",
    # A crash outside the LLM calls (those retry on their own) gets a few more tries.
    retry=procrastinate.RetryStrategy(max_attempts=3, exponential_wait=2),
)
async def pre_annotate_note(run_id: int, document_id: int) -> str:
    """Pre-annotate one note of a run (idempotent: a note already written is skipped)."""
    from app.services.pre_annotation import pre_annotate_note as pre_annotate

    return await pre_annotate(runtime().sessions, run_id, document_id)


@job(
    "augment_set",
    queue="augmentation",
    retry=procrastinate.RetryStrategy(max_attempts=3, exponential_wait=2),
)
async def augment_set(run_id: int, source_set_id: int) -> str:
    """Rewrite one source set's segments into synthetic notes (a set already written is skipped)."""
    from app.services.augmentation import augment_set as augment

    return await augment(runtime().sessions, run_id, source_set_id)
