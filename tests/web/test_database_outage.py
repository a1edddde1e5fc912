"""PostgreSQL stops for a few seconds while a physician edits: the server answers 503 with
Retry-After (nothing half-stored), and once PostgreSQL is back the same edits, sent again with
their client ids, are each applied exactly once. A private PostgreSQL, really stopped and started."""

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.db.engine import start_embedded_postgres
from app.db.models import EditEvent
from app.runtime import open_runtime
from app.services import editing
from app.settings import Settings
from app.web.app import DATABASE_RETRY_AFTER_SECONDS, create_app
from tests.conftest import PASSWORDS, log_in, page
from tests.pg_control import start_postgres, stop_postgres
from tests.services.editing_fixtures import METFORMIN, build_world


@pytest.fixture
def private_postgres(tmp_path, runtime):
    """A PostgreSQL of this test's own (stopping the shared one would stop every other test)."""
    from app.jobs import bind_runtime

    server = start_embedded_postgres(tmp_path / "outage")
    private = open_runtime(
        Settings(database_url=server.url, data_dir=tmp_path / "outage", secret_key="outage")
    )
    try:
        yield server, private
    finally:
        private.close()
        server.stop()
        bind_runtime(runtime)


def test_edits_during_an_outage_get_503_and_are_applied_once_when_postgresql_is_back(
    private_postgres, password_hashes
):
    server, private = private_postgres
    world = build_world(private.sessions, password_hashes["annotator"])
    set_id = world.sets["scratch"]
    with TestClient(create_app(private), follow_redirects=False) as client:
        assert log_in(client, "dr.a", PASSWORDS["annotator"]).status_code == 303
        csrf = json.loads(page(client.get("/annotate")).body["hx-headers"])["X-CSRF-Token"]

        def edit(client_id: str, version: int, start: int):
            body = {"kind": "add", "client_id": client_id, "page_session": "p1", "version": version,
                    "monotonic_ms": 1.0, "uid": f"u-{client_id}", "label": "Drug",
                    "fragments": [[start, start + 9]]}  # fmt: skip
            return client.post(f"/annotate/sets/{set_id}/edits", json=body, headers={"X-CSRF-Token": csrf})

        assert edit("e1", 0, METFORMIN).status_code == 200
        socket_dir = stop_postgres(server)
        try:
            refused = edit("e2", 1, METFORMIN + 1)
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == str(DATABASE_RETRY_AFTER_SECONDS)
            assert "not reachable" in refused.json()["detail"]
            down_page = client.get(f"/annotate/sets/{set_id}")
            assert down_page.status_code == 503 and down_page.headers["retry-after"]
        finally:
            start_postgres(server, socket_dir)
        # Back: the editor sends the queued edit again (same client id), and once more as if the
        # first retry's answer had been lost; it is applied once.
        assert edit("e2", 1, METFORMIN + 1).status_code == 200
        again = edit("e2", 1, METFORMIN + 1)
        assert again.status_code == 200
        assert client.get(f"/annotate/sets/{set_id}").status_code == 200
    with private.sessions() as db:
        kinds = db.scalars(
            select(EditEvent.client_id).where(EditEvent.annotation_set_id == set_id, EditEvent.kind == "add")
        ).all()
        assert kinds == ["e1", "e2"]
        assert db.scalar(select(func.count()).select_from(EditEvent).where(EditEvent.client_id == "e2")) == 1
    assert len(editing.stored_state(private.sessions, set_id).spans) == 2
    assert editing.replayed_state(private.sessions, set_id) == editing.stored_state(private.sessions, set_id)
