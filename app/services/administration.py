"""What an admin sees: accounts and the latest audit events."""

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import AuditEvent, User


@dataclass(frozen=True)
class AdminOverview:
    users: list[User]
    recent_audit: list[AuditEvent]


def admin_overview(sessions: sessionmaker[Session], audit_rows: int = 50) -> AdminOverview:
    with sessions() as db:
        users = list(db.scalars(select(User).order_by(User.role, User.username)))
        recent = list(db.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(audit_rows)))
    return AdminOverview(users=users, recent_audit=recent)
