"""PostgreSQL goes away for a few seconds while a physician labels in Chromium: the page keeps the edits
queued in order, says they are not saved yet, retries as the server's 503 Retry-After says, and once
PostgreSQL is back every edit is stored exactly once. A private `clinann demo` on a private PostgreSQL,
really stopped and started (the shared one serves every other test)."""

import time

import pytest
from e2e_support import SECRET_KEY, demo_env, free_port, start_demo, stop, wait_until_up
from editor_support import assert_added_once_in_order, label, open_next_note, settle
from playwright.sync_api import expect

from app.db.engine import make_engine, make_session_factory, start_embedded_postgres
from tests.pg_control import start_postgres, stop_postgres


@pytest.fixture
def private_demo(tmp_path):
    server = start_embedded_postgres(tmp_path / "pg")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    env = demo_env(
        CLINANN_DATABASE_URL=server.url, CLINANN_SECRET_KEY=SECRET_KEY, CLINANN_DATA_DIR=str(tmp_path)
    )
    process = start_demo(env, port, log_path, "--no-worker", "--no-fake-llm")
    engine = None
    try:
        wait_until_up(process, base_url, log_path, 90)
        engine = make_engine(server.url, pool_size=2)
        yield base_url, server, make_session_factory(engine)
    finally:
        if engine is not None:
            engine.dispose()
        stop(process)
        server.stop()


def test_edits_made_while_postgresql_is_down_wait_in_the_page_and_are_stored_once(browser, private_demo):
    base_url, server, sessions = private_demo
    context = browser.new_context(base_url=base_url)
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        set_id, words = open_next_note(page, sessions, "dr.adams", "demo-adams", 4)

        label(page, *words[0])
        settle(page)  # one edit stored while PostgreSQL is up

        socket_dir = stop_postgres(server)
        try:
            for waiting, (start, end) in enumerate(words[1:], start=1):
                label(page, start, end)
                assert page.evaluate("() => window.clinannEditor.pending()") == waiting
            # The next retry (Retry-After: 2 s) says how many wait.
            expect(page.locator("[data-testid=save-state]")).to_have_text(
                "Not saved yet: 3 edits waiting, retrying…", timeout=10_000
            )
            time.sleep(3)  # a few seconds of outage, with the page retrying
            assert page.evaluate("() => window.clinannEditor.pending()") == 3
        finally:
            start_postgres(server, socket_dir)
        settle(page)
        assert page.locator("[data-testid=save-state]").inner_text() == "Saved"
    finally:
        context.close()
    assert_added_once_in_order(sessions, set_id, words)
