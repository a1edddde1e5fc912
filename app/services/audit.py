"""The audit trail: who did what to which object, from where, when."""

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.db.models import AuditEvent


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
