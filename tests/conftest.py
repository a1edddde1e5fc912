"""Shared fixtures: one real PostgreSQL for the whole run, migrated by our own migrations.

Without CLINANN_TEST_DATABASE_URL the run starts an embedded PostgreSQL in a temporary directory;
with it, the tests make their own databases on that server. Each test that touches the
database gets empty tables afterwards (TRUNCATE), so tests cannot leak into each other.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from bs4 import BeautifulSoup
from fastapi.testclient import TestClient
from sqlalchemy import make_url

import app.db.models  # noqa: F401  (every table on the metadata)
from app.db.base import Base
from app.db.engine import DatabaseServer, start_embedded_postgres
from app.db.migrate import upgrade
from app.runtime import Runtime, open_runtime
from app.settings import Settings

TEST_DATABASE = "clinann_test"


@dataclass
class PostgresForTests:
    """A PostgreSQL server the tests may create databases on."""

    admin_url: str  # libpq URL of the maintenance database
    server: DatabaseServer | None

    def create_database(self, name: str) -> str:
        """Drop and create ``name``; return its SQLAlchemy URL."""
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{name}"')
        url = make_url(self.admin_url.replace("postgresql://", "postgresql+psycopg://", 1))
        return url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory) -> Iterator[PostgresForTests]:
    external = os.environ.get("CLINANN_TEST_DATABASE_URL")
    if external:
        url = make_url(external.replace("postgresql+psycopg://", "postgresql://", 1))
        yield PostgresForTests(url.set(database="postgres").render_as_string(hide_password=False), None)
        return
    # Not under pytest's tmp dirs: pytest prunes those while another run may still use them.
    data_dir = Path(tempfile.mkdtemp(prefix="clinann-test-pg-"))
    server = start_embedded_postgres(data_dir, database="postgres")
    try:
        yield PostgresForTests(server.libpq_url, server)
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(postgres: PostgresForTests) -> str:
    url = postgres.create_database(TEST_DATABASE)
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path_factory.mktemp("data"),
        secret_key="test-secret-key-not-for-production",
        db_pool_size=4,
    )


@pytest.fixture(scope="session")
def runtime(settings: Settings) -> Iterator[Runtime]:
    runtime = open_runtime(settings, migrate=False)
    yield runtime
    runtime.close()


# The job queue's tables, in an order that deletes what refers to a row before the row.
QUEUE_TABLES = (
    "procrastinate_periodic_defers",
    "procrastinate_events",
    "procrastinate_jobs",
    "procrastinate_workers",
)
APPEND_ONLY_TABLES = ("audit_events",)  # a trigger refuses DELETE; TRUNCATE is the way to empty it
# DELETE rather than one TRUNCATE of everything: a TRUNCATE makes new files for every table and
# index (65 ms a test, minutes over the suite); deleting the few rows a test wrote takes 2-5 ms.
# Then every sequence starts again at 1, as TRUNCATE ... RESTART IDENTITY would.
EMPTY_EVERY_TABLE = "; ".join(
    [f"DELETE FROM {name}" for name in QUEUE_TABLES]
    + [
        f'DELETE FROM "{t.name}"'
        for t in reversed(Base.metadata.sorted_tables)
        if t.name not in APPEND_ONLY_TABLES
    ]
    + [f"TRUNCATE {', '.join(APPEND_ONLY_TABLES)}"]
    + [
        "SELECT setval(c.oid, 1, false) FROM pg_class c"
        " WHERE c.relkind = 'S' AND c.relnamespace = 'public'::regnamespace"
    ]
)


@pytest.fixture(scope="session")
def _every_table_known(runtime: Runtime) -> None:
    """A table the migrations made that the emptying above does not know would leak between tests."""
    with runtime.engine.connect() as connection:
        tables = {
            r[0]
            for r in connection.exec_driver_sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    known = {t.name for t in Base.metadata.sorted_tables} | set(QUEUE_TABLES) | {"alembic_version"}
    assert tables == known, f"tables not emptied between tests: {sorted(tables - known)}"


@pytest.fixture
def sessions(runtime: Runtime, _every_table_known):
    """The session factory, with every table emptied after the test."""
    yield runtime.sessions
    with runtime.engine.begin() as connection:
        connection.exec_driver_sql(EMPTY_EVERY_TABLE)


class FakeClock:
    """The server's clock, moved by the test instead of by sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def web(runtime: Runtime, sessions, clock: FakeClock) -> Iterator[TestClient]:
    from app.web.app import create_app

    with TestClient(create_app(runtime, clock=clock), follow_redirects=False) as client:
        yield client


PASSWORDS = {"admin": "admin-password", "lead": "lead-password", "annotator": "annotator-password"}


@pytest.fixture(scope="session")
def password_hashes() -> dict[str, str]:
    # argon2 takes ~0.2 s a hash here on purpose; hash the test passwords once per run.
    from app.services.users import hash_password

    return {role: hash_password(password) for role, password in PASSWORDS.items()}


@pytest.fixture
def accounts(sessions, password_hashes):
    """One account per role, each with the user name of its role."""
    from app.db.models import User

    with sessions.begin() as db:
        users = {
            role: User(username=role, display_name=role, role=role, password_hash=password_hashes[role])
            for role in PASSWORDS
        }
        db.add_all(users.values())
    return users


def make_lead_of(sessions, project_id: int, username: str = "lead") -> None:
    """Make the account ``username`` a lead of the project: a lead sees only the projects they lead."""
    from sqlalchemy import select

    from app.db.models import ProjectMember, User

    with sessions.begin() as db:
        user_id = db.scalar(select(User.id).where(User.username == username))
        assert user_id is not None, f"no account {username}"
        db.add(ProjectMember(project_id=project_id, user_id=user_id))


def page(response) -> BeautifulSoup:
    return BeautifulSoup(response.text, "html.parser")


def login_csrf(client: TestClient) -> str:
    response = client.get("/login")
    return page(response).select_one("input[name=csrf_token]")["value"]


def log_in(client: TestClient, username: str, password: str | None = None):
    """Log in through the login form, as a browser does; return the response."""
    token = login_csrf(client)
    return client.post(
        "/login",
        data={"username": username, "password": password or PASSWORDS[username], "csrf_token": token},
    )


def session_csrf(client: TestClient, path: str = "/account/tokens") -> str:
    """The CSRF token a logged-in page carries for its forms."""
    return page(client.get(path)).select_one("input[name=csrf_token]")["value"]


FIXTURES = Path(__file__).parent / "fixtures"


def pytest_collection_modifyitems(config, items) -> None:
    """Browser tests run last: Playwright's sync API keeps an event loop running in the main thread
    for the rest of the session, where tests of async code (asyncio.run) could no longer run."""
    e2e = Path(__file__).parent / "e2e"
    items.sort(key=lambda item: e2e in item.path.parents)
