"""Writes sent to PostgreSQL together, in one round trip: psycopg's pipeline mode under a session.

The editor's hot path writes a handful of rows per edit (the span, its fragments, the set's version,
the edit event) and then commits. Sent one by one, each statement waits for its answer, and each wait
hands the interpreter lock to another thread and back; queued and sent together with the COMMIT they
cost one wait. SQLAlchemy cannot run its own statements in a pipeline (it reads each result's
description at once), so the queued statements are plain SQL with psycopg parameters, and none of
them returns rows.
"""

from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy.orm import Session

__all__ = ["Jsonb", "StatementBatch"]


class StatementBatch:
    """Plain SQL statements queued in order, sent in one go (``send``)."""

    def __init__(self) -> None:
        self._queued: list[tuple[str, list[dict[str, Any]]]] = []

    def __bool__(self) -> bool:
        return bool(self._queued)

    def add(self, sql: str, rows: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Queue ``sql`` for one row of parameters, or for each of a list of them."""
        rows = [rows] if isinstance(rows, dict) else rows
        if rows:
            self._queued.append((sql, rows))

    def send(self, db: Session, *, commit: bool = False) -> None:
        """Run the queued statements in the session's transaction; with ``commit``, commit it too.

        Whatever the ORM has pending is flushed first, outside the pipeline. An error in any
        statement is raised here, and the whole transaction is then rolled back by the session.
        After a commit here the session's own commit finds nothing to do (psycopg sends no COMMIT
        on an idle connection), so callers keep their ``with sessions.begin()`` blocks.
        """
        db.flush()
        connection = db.connection().connection.driver_connection
        with connection.pipeline(), connection.cursor() as cursor:
            for sql, rows in self._queued:
                if len(rows) == 1:
                    cursor.execute(sql, rows[0])
                else:
                    cursor.executemany(sql, rows)
            if commit:
                connection.commit()
        self._queued.clear()
