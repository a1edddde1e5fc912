"""A large export runs as a background job: queued, run by the worker, progress, file, download."""

import io
import time
import zipfile

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.db.models import AuditEvent, ExportFile
from app.services.batches import upload_batch
from app.services.projects import create_project
from app.web.app import create_app
from tests.conftest import log_in, make_lead_of, page, session_csrf

SCHEMA = {"entity_types": [{"name": "Drug", "color": "#112233", "hotkey": "d"}]}


def _wait(sessions, export_id, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sessions() as db:
            row = db.get(ExportFile, export_id)
        if row.status in ("succeeded", "failed"):
            return row
        time.sleep(0.1)
    raise AssertionError(f"export still {row.status}")


def test_background_export_end_to_end(runtime, sessions, accounts, clock):
    project = create_project(sessions, "Bg", SCHEMA)
    make_lead_of(sessions, project.id)
    files = [("n1.txt", b"Aspirin 81 mg.\r\n"), ("n1.ann", b"T1\tDrug 0 7\tAspirin\n")]
    assert (
        upload_batch(sessions, runtime.settings, project.id, files, actor_id=None, layer="gold").status
        == "accepted"
    )
    with TestClient(create_app(runtime, run_worker=True, clock=clock), follow_redirects=False) as web:
        log_in(web, "lead")
        csrf = session_csrf(web, f"/lead/projects/{project.id}")
        response = web.post(
            f"/lead/projects/{project.id}/exports",
            data={"format": "brat", "layer": "gold", "csrf_token": csrf},
        )
        assert response.status_code == 303
        with sessions() as db:
            export_id = db.scalar(select(ExportFile.id))
        row = _wait(sessions, export_id)
        assert row.status == "succeeded" and row.done == row.total == 1
        listing = page(web.get(f"/lead/projects/{project.id}/exports", headers={"HX-Request": "true"}))
        assert listing.select_one("[data-testid=export-row]")["data-status"] == "succeeded"
        download = web.get(listing.select_one("[data-testid=export-download]")["href"])
        assert download.status_code == 200
        archive = zipfile.ZipFile(io.BytesIO(download.content))
        assert (
            archive.read("n1.txt") == b"Aspirin 81 mg.\r\n"
            and archive.read("n1.ann") == b"T1\tDrug 0 7\tAspirin\n"
        )
        web.post(
            f"/lead/projects/{project.id}/exports",
            data={"format": "conll", "layer": "pre:nothing", "csrf_token": csrf},
        )
        with sessions() as db:
            failing = db.scalar(select(ExportFile.id).order_by(ExportFile.id.desc()))
        failed = _wait(sessions, failing)
        assert failed.status == "failed" and failed.error == "layer: no layer 'pre:nothing' in this project"
    with sessions() as db:
        actions = list(db.scalars(select(AuditEvent.action)))
    assert "export" in actions and "export.download" in actions


def test_conll_without_layer_is_refused_at_once(web, accounts, sessions):
    project = create_project(sessions, "Bg", SCHEMA)
    make_lead_of(sessions, project.id)
    log_in(web, "lead")
    csrf = session_csrf(web, f"/lead/projects/{project.id}")
    response = web.post(f"/lead/projects/{project.id}/exports", data={"format": "conll", "csrf_token": csrf})
    assert response.status_code == 422 and "layer" in response.text
    with sessions() as db:
        assert db.scalar(select(ExportFile.id)) is None
