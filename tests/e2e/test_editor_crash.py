"""kill -9 of the server in the middle of a burst of edits in Chromium: every edit the server had
acknowledged is in PostgreSQL, and the page sends the rest again once a new server is up, each
applied exactly once. A private `clinann demo` on a private PostgreSQL (the shared server serves
every other test)."""

import json

import pytest
from e2e_support import SECRET_KEY, demo_env, free_port, start_demo, stop, wait_until_up
from editor_support import assert_added_once_in_order, label, open_next_note
from sqlalchemy import select

from app.db.engine import make_engine, make_session_factory, start_embedded_postgres
from app.db.models import EditEvent


@pytest.fixture
def crashable_demo(tmp_path):
    server = start_embedded_postgres(tmp_path / "pg")
    port = free_port()
    env = demo_env(
        CLINANN_DATABASE_URL=server.url, CLINANN_SECRET_KEY=SECRET_KEY, CLINANN_DATA_DIR=str(tmp_path)
    )
    processes = []

    def start(log_name: str):
        log_path = tmp_path / log_name
        process = start_demo(env, port, log_path, "--no-worker", "--no-fake-llm")
        processes.append(process)
        wait_until_up(process, f"http://127.0.0.1:{port}", log_path, 90)
        return process

    engine = make_engine(server.url, pool_size=2)
    try:
        yield f"http://127.0.0.1:{port}", start, make_session_factory(engine)
    finally:
        engine.dispose()
        for process in processes:
            stop(process)
        server.stop()


def test_a_server_killed_mid_burst_loses_no_acknowledged_edit_and_applies_the_rest_once(
    browser, crashable_demo
):
    base_url, start, sessions = crashable_demo
    server = start("first.log")
    context = browser.new_context(base_url=base_url)
    context.set_default_timeout(30_000)
    page = context.new_page()
    acknowledged: list[str] = []

    def answered(response):
        if response.url.endswith("/edits") and response.status == 200:
            acknowledged.append(json.loads(response.request.post_data)["client_id"])

    page.on("response", answered)
    try:
        set_id, words = open_next_note(page, sessions, "dr.adams", "demo-adams", 12)
        for start_offset, end_offset in words[:8]:  # a burst: labels as fast as the keyboard goes
            label(page, start_offset, end_offset)
        server.kill()  # kill -9, with edits still queued or in flight
        server.wait(10)
        for start_offset, end_offset in words[8:]:  # the physician goes on while the server is gone
            label(page, start_offset, end_offset)
        with sessions() as db:
            stored_before = set(
                db.scalars(
                    select(EditEvent.client_id).where(
                        EditEvent.annotation_set_id == set_id, EditEvent.kind == "add"
                    )
                )
            )
        assert set(acknowledged) <= stored_before  # every success answer was already durable
        assert page.evaluate("() => window.clinannEditor.pending()") > 0
        start("second.log")  # a new server on the same port: the page's retries reach it
        page.wait_for_function("() => window.clinannEditor.pending() === 0")
        assert page.locator("[data-testid=save-state]").inner_text() == "Saved"
    finally:
        context.close()
    assert_added_once_in_order(sessions, set_id, words)
