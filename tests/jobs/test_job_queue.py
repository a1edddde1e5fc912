"""The job queue runs a real job end to end: deferred to PostgreSQL, run by the in-process worker."""

import hashlib
import time

from fastapi.testclient import TestClient
from sqlalchemy import select, text

from app.db.models import AuditEvent, Document, Project
from app.jobs import defer
from app.web.app import create_app


def _project_with_notes(sessions, notes):
    with sessions.begin() as db:
        project = Project(name="Integrity", label_schema={"entity_types": []})
        db.add(project)
        db.flush()
        for i, note in enumerate(notes):
            db.add(
                Document(
                    project_id=project.id,
                    external_id=f"n{i}",
                    text=note,
                    sha256=hashlib.sha256(note.encode()).hexdigest(),
                )
            )
        return project.id


def _wait_for_job(sessions, job_id, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sessions() as db:
            status = db.scalar(text("SELECT status FROM procrastinate_jobs WHERE id = :id"), {"id": job_id})
        if status in ("succeeded", "failed"):
            return status
        time.sleep(0.1)
    return status


def test_in_process_worker_runs_a_job_end_to_end(runtime, sessions, clock):
    project_id = _project_with_notes(sessions, ["Metformin 500 mg BID.", "Lisinopril 10 mg daily 😀"])
    with sessions.begin() as db:  # tamper with one stored note behind the app's back
        db.execute(text("UPDATE documents SET text = text || ' ' WHERE external_id = 'n1'"))
        altered_id = db.scalar(select(Document.id).where(Document.external_id == "n1"))

    with TestClient(create_app(runtime, run_worker=True, clock=clock)):
        # Deferred as another process would: its own connection to the same database.
        job_id = defer("verify_document_integrity", runtime.database.libpq_url, project_id=project_id)
        assert _wait_for_job(sessions, job_id) == "succeeded"

    with sessions() as db:
        event = db.scalar(select(AuditEvent).where(AuditEvent.action == "documents.integrity_check"))
    assert event.details == {"documents": 2, "altered": [altered_id]}
    assert event.object_id == str(project_id)


def test_without_a_worker_the_job_waits_in_the_queue(runtime, sessions):
    project_id = _project_with_notes(sessions, ["Aspirin 81 mg."])
    job_id = defer("verify_document_integrity", project_id=project_id)
    time.sleep(0.5)
    with sessions() as db:
        assert (
            db.scalar(text("SELECT status FROM procrastinate_jobs WHERE id = :id"), {"id": job_id}) == "todo"
        )
