"""The running pieces one process needs: settings, the database, sessions and the job queue."""

import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import procrastinate
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.db.engine import DatabaseServer, make_engine, make_session_factory, open_database
from app.db.migrate import upgrade
from app.settings import Settings

log = logging.getLogger("clinann")


def secret_key(settings: Settings) -> str:
    """The configured key, or one generated once and kept in the data directory."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    path = Path(settings.data_dir).expanduser() / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


@dataclass
class Runtime:
    settings: Settings
    database: DatabaseServer
    engine: Engine
    sessions: sessionmaker[Session]
    job_queue: procrastinate.App
    secret_key: str = field(repr=False, default="")

    def close(self) -> None:
        self.engine.dispose()
        self.database.stop()


def open_runtime(settings: Settings, *, migrate: bool = True) -> Runtime:
    """Reach (or start) the database, bring its schema to head, and wire the job queue."""
    from app.jobs import bind_runtime, make_job_queue

    database = open_database(settings)
    try:
        if migrate:
            upgrade(database.url)
        engine = make_engine(database.url, settings.db_pool_size)
        runtime = Runtime(
            settings=settings,
            database=database,
            engine=engine,
            sessions=make_session_factory(engine),
            job_queue=make_job_queue(database.libpq_url),
            secret_key=secret_key(settings),
        )
    except BaseException:
        database.stop()
        raise
    bind_runtime(runtime)
    return runtime
