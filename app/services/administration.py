"""What an admin sees: accounts and the latest audit events."""

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import AuditEvent, User


@dataclass(frozen=True)
class AuditLine:
    event: AuditEvent
    who: str  # the acting user's name, or the name tried at a failed login


@dataclass(frozen=True)
class AdminOverview:
    users: list[User]
    recent_audit: list[AuditLine]


def admin_overview(sessions: sessionmaker[Session], audit_rows: int = 50) -> AdminOverview:
    with sessions() as db:
        users = list(db.scalars(select(User).order_by(User.role, User.username)))
        rows = db.execute(
            select(AuditEvent, User.username)
            .outerjoin(User, User.id == AuditEvent.user_id)
            .order_by(AuditEvent.id.desc())
            .limit(audit_rows)
        ).all()
    recent = [AuditLine(event, actor or event.username or "") for event, actor in rows]
    return AdminOverview(users=users, recent_audit=recent)
