"""A run of items: pre-annotation (a result per note) and augmentation (a result per source set).

Each item has a result row that a job claims, works on and finishes; jobs may run twice or after
the lead cancelled, so the claim and the finish are guarded in the item's own locked transaction,
and the last item to finish closes the run. The callers hold the locks; this is the shared rule.
"""

from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.domain.vocabulary import RunStatus

FINISHED = (RunStatus.succeeded.value, RunStatus.failed.value, RunStatus.cancelled.value)
# An item in one of these is never worked on again (a failed one may be: a re-run, a job's retry).
SETTLED = (RunStatus.succeeded.value, RunStatus.cancelled.value)


def cancel_items(db: Session, results, run) -> None:
    """Cancel the run and its items not yet finished; a job that finds its item so does nothing."""
    unfinished = [RunStatus.queued.value, RunStatus.running.value]
    db.execute(
        update(results)
        .where(results.run_id == run.id, results.status.in_(unfinished))
        .values(status=RunStatus.cancelled.value, finished_at=func.now())
    )
    run.status, run.finished_at = RunStatus.cancelled.value, datetime.now(UTC)


def start_item(result, run) -> bool:
    """Mark a claimed item (and its run, on the first) running; False when it is not to be worked."""
    if result is None or run is None or run.status == RunStatus.cancelled.value or result.status in SETTLED:
        return False
    now = datetime.now(UTC)
    result.status, result.started_at = RunStatus.running.value, now
    result.attempts += 1
    if run.status == RunStatus.queued.value:
        run.status, run.started_at = RunStatus.running.value, now
    return True


def may_finish(result, run) -> bool:
    """Whether a job may write its item's outcome: not when another job settled it, nor after the
    lead cancelled the run (the item is then cancelled too)."""
    if result is None or result.status in SETTLED:
        return False
    if run.status == RunStatus.cancelled.value:
        result.status = RunStatus.cancelled.value
        return False
    result.finished_at = datetime.now(UTC)
    return True


def close_run_if_done(db: Session, results, run, failed_message: str) -> None:
    """Once no item waits or runs, the run ends: failed if any item failed (``failed_message`` is
    formatted with their count), else succeeded. The caller has flushed its item's result."""
    counts = dict(
        db.execute(
            select(results.status, func.count()).where(results.run_id == run.id).group_by(results.status)
        ).all()
    )
    if counts.get(RunStatus.queued.value) or counts.get(RunStatus.running.value):
        return
    failed = counts.get(RunStatus.failed.value, 0)
    run.status = RunStatus.failed.value if failed else RunStatus.succeeded.value
    run.error = failed_message.format(failed=failed) if failed else None
    run.finished_at = datetime.now(UTC)
