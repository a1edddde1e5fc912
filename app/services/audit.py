"""The audit trail: who did what to which object, from where, when; read and exported by admins,
never changed (PostgreSQL refuses updates and deletes: migration 0009)."""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import AuditEvent, User
from app.domain.spreadsheet import csv_text


def record(
    db: Session,
    action: str,
    *,
    user_id: int | None = None,
    username: str | None = None,
    object_type: str | None = None,
    object_id: Any = None,
    client_address: str | None = None,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Add an audit event to the caller's transaction (it commits with the change it describes)."""
    event = AuditEvent(
        action=action,
        user_id=user_id,
        username=username,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        client_address=client_address,
        details=details or {},
    )
    if at is not None:  # the caller's clock (the app's, injectable); otherwise the database's
        event.at = at
    db.add(event)
    return event


@dataclass(frozen=True)
class AuditFilter:
    """What an auditor asks for; every field optional."""

    # An action ("batch.reject"), or a prefix of whole parts: "adjudication" and "adjudication." are
    # every adjudication.* action (and an action named just "adjudication").
    action: str | None = None
    who: str | None = None  # the user name
    object_type: str | None = None
    object_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


AUDIT_COLUMNS = ("id", "at", "who", "action", "object_type", "object_id", "client_address", "details")


def _filtered(query, wanted: AuditFilter):
    if wanted.action:
        name = wanted.action.rstrip(".")
        query = query.where(
            or_(AuditEvent.action == name, AuditEvent.action.startswith(f"{name}.", autoescape=True))
        )
    if wanted.who:
        query = query.where(func.coalesce(User.username, AuditEvent.username) == wanted.who)
    if wanted.object_type:
        query = query.where(AuditEvent.object_type == wanted.object_type)
    if wanted.object_id:
        query = query.where(AuditEvent.object_id == wanted.object_id)
    if wanted.since:
        query = query.where(AuditEvent.at >= wanted.since)
    if wanted.until:
        query = query.where(AuditEvent.at < wanted.until)
    return query


def audit_trail(
    sessions: sessionmaker[Session], wanted: AuditFilter, *, limit: int | None = 100, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """The audit events asked for, newest first, as rows of AUDIT_COLUMNS; and how many there are."""
    rows, total, _ = _trail(sessions, wanted, limit=limit, offset=lambda total: offset)
    return rows, total


def audit_trail_page(
    sessions: sessionmaker[Session], wanted: AuditFilter, page: int, size: int
) -> tuple[list[dict[str, Any]], int, int]:
    """One page of the trail, newest first (a page past the last is the last); with the count of
    events and the page shown. One count and one read."""
    return _trail(
        sessions,
        wanted,
        limit=size,
        offset=lambda total: (min(page, max(1, -(-total // size))) - 1) * size,
    )


def _trail(
    sessions, wanted: AuditFilter, *, limit: int | None, offset
) -> tuple[list[dict[str, Any]], int, int]:
    base = select(AuditEvent, func.coalesce(User.username, AuditEvent.username)).outerjoin(
        User, User.id == AuditEvent.user_id
    )
    with sessions() as db:
        counted = select(func.count()).select_from(AuditEvent).outerjoin(User, User.id == AuditEvent.user_id)
        total = db.scalar(_filtered(counted, wanted)) or 0
        skip = offset(total)
        query = _filtered(base, wanted).order_by(AuditEvent.id.desc()).offset(skip)
        if limit is not None:
            query = query.limit(limit)
        rows = db.execute(query).all()
    shown = [
        {
            "id": event.id,
            "at": event.at.isoformat(),
            "who": who or "",
            "action": event.action,
            "object_type": event.object_type or "",
            "object_id": event.object_id or "",
            "client_address": event.client_address or "",
            "details": event.details or {},
        }
        for event, who in rows
    ]
    return shown, total, skip // limit + 1 if limit else 1


def audit_actions(sessions: sessionmaker[Session]) -> list[str]:
    """The actions the trail holds, and their leading parts ("batch" for "batch.reject"), sorted: what
    the action filter offers. A skip scan over the (action, at) index, so a long trail costs one
    index probe per action."""
    distinct_actions = text(
        """
        WITH RECURSIVE found(action) AS (
            SELECT min(action) FROM audit_events
            UNION ALL
            SELECT (SELECT min(action) FROM audit_events WHERE action > found.action)
            FROM found WHERE found.action IS NOT NULL
        )
        SELECT action FROM found WHERE action IS NOT NULL
        """
    )
    with sessions() as db:
        actions = list(db.scalars(distinct_actions))
    pieces = [action.split(".") for action in actions]
    parts = {".".join(piece[:n]) for piece in pieces for n in range(1, len(piece))}
    return sorted(set(actions) | parts)


def export_audit_trail(sessions: sessionmaker[Session], wanted: AuditFilter, fmt: str) -> str:
    """Every event asked for, oldest first, as CSV (details as JSON) or JSONL."""
    rows, _ = audit_trail(sessions, wanted, limit=None)
    rows.reverse()
    if fmt == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows)
    return csv_text(
        AUDIT_COLUMNS,
        (
            [json.dumps(row[c], ensure_ascii=False, sort_keys=True) if c == "details" else row[c]
             for c in AUDIT_COLUMNS]
            for row in rows
        ),
    )  # fmt: skip
