"""End-to-end fixtures: a real `clinann demo` server process and a headless Chromium.

Chromium is Debian's (/usr/bin/chromium); Playwright cannot download its own browsers here.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SECRET_KEY,
    STARTUP_SECONDS,
    demo_env,
    free_port,
    read_log,
    start_demo,
    stop,
    wait_until_up,
)


def pytest_collection_modifyitems(config, items) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def demo_server(postgres, tmp_path_factory) -> Iterator[str]:
    """Base URL (no trailing slash) of a real `clinann demo` process on a fresh database."""
    url = postgres.create_database("clinann_e2e")
    data_dir = tmp_path_factory.mktemp("e2e-data")
    log_path = data_dir / "server.log"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = demo_env(CLINANN_DATABASE_URL=url, CLINANN_SECRET_KEY=SECRET_KEY, CLINANN_DATA_DIR=str(data_dir))
    process = start_demo(env, port, log_path, "--no-worker")
    wait_until_up(process, base_url, log_path, STARTUP_SECONDS)
    try:
        yield base_url
    finally:
        code = stop(process)
        if code is None:
            print(f"`clinann demo` ignored SIGTERM and was killed:\n{read_log(log_path)}")


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, demo_server):
    context = browser.new_context(base_url=demo_server)
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="module")
def demo_db(postgres, demo_server):
    """Sessions on the demo server's own database, for tests that build a world in it and read back
    what the browser stored."""
    from editor_support import check_is_demo_database, e2e_database_url

    from app.db.engine import make_engine, make_session_factory

    engine = make_engine(e2e_database_url(postgres), pool_size=2)
    sessions = make_session_factory(engine)
    check_is_demo_database(sessions)
    yield sessions
    engine.dispose()
