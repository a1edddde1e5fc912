"""Accounts: create, list, change role, disable; passwords hashed with argon2."""

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import User
from app.domain.vocabulary import Role
from app.services import audit

_hasher = PasswordHasher()
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._\-]{1,63}$")
MIN_PASSWORD_LENGTH = 8
# Verifying against this keeps an unknown user name as slow as a wrong password.
_DUMMY_HASH = _hasher.hash("clinann-timing-equaliser")


class AccountError(ValueError):
    """A request about an account that cannot be carried out; the message names the field."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def _check(username: str, password: str | None, role: str | None) -> None:
    if not USERNAME.match(username):
        raise AccountError(
            "username: 2-64 characters, lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    if role is not None and role not in Role.__members__:
        raise AccountError(f"role: one of {', '.join(Role)}")


def add_user(
    sessions: sessionmaker[Session],
    username: str,
    password: str,
    role: str,
    display_name: str | None = None,
    *,
    actor_id: int | None = None,
) -> User:
    """Create an account; refuse a taken user name."""
    username = username.strip().lower()
    _check(username, password, role)
    with sessions.begin() as db:
        if db.scalar(select(User.id).where(User.username == username)) is not None:
            raise AccountError(f"username: '{username}' is taken")
        user = User(
            username=username,
            display_name=display_name or username,
            role=role,
            password_hash=hash_password(password),
        )
        db.add(user)
        db.flush()
        audit.record(
            db,
            "user.create",
            user_id=actor_id,
            object_type="user",
            object_id=user.id,
            details={"username": username, "role": role},
        )
    return user


def list_users(sessions: sessionmaker[Session]) -> list[User]:
    with sessions() as db:
        return list(db.scalars(select(User).order_by(User.username)))


def _get(db: Session, username: str) -> User:
    user = db.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        raise AccountError(f"username: no user '{username}'")
    return user


def set_role(
    sessions: sessionmaker[Session], username: str, role: str, *, actor_id: int | None = None
) -> User:
    """Change a user's role; the change is audited."""
    _check(username.strip().lower(), None, role)
    with sessions.begin() as db:
        user = _get(db, username)
        before = user.role
        user.role = role
        audit.record(
            db,
            "user.role_change",
            user_id=actor_id,
            object_type="user",
            object_id=user.id,
            details={"username": user.username, "from": before, "to": role},
        )
    return user


def set_active(
    sessions: sessionmaker[Session], username: str, active: bool, *, actor_id: int | None = None
) -> User:
    """Disable (or re-enable) an account; disabling also ends its login sessions."""
    from app.services.auth import end_all_sessions  # the auth service imports this module

    with sessions.begin() as db:
        user = _get(db, username)
        user.is_active = active
        if not active:
            end_all_sessions(db, user.id)
        audit.record(
            db,
            "user.enable" if active else "user.disable",
            user_id=actor_id,
            object_type="user",
            object_id=user.id,
            details={"username": user.username},
        )
    return user


def set_password(
    sessions: sessionmaker[Session], username: str, password: str, *, actor_id: int | None = None
) -> User:
    _check(username.strip().lower(), password, None)
    with sessions.begin() as db:
        user = _get(db, username)
        user.password_hash = hash_password(password)
        audit.record(
            db,
            "user.password_change",
            user_id=actor_id,
            object_type="user",
            object_id=user.id,
            details={"username": user.username},
        )
    return user
