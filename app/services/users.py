"""Accounts: create, list, change role, disable, reset and change passwords (hashed with argon2).

Every password that is set goes through the one policy (app/domain/passwords.py); every change is
audited in the transaction that makes it, never with the password in the details.
"""

import re
import secrets
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import LoginSession, User
from app.domain.passwords import name_words, password_problem
from app.domain.vocabulary import Role
from app.services import audit

_hasher = PasswordHasher()
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._\-]{1,63}$")
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


def _check_username(username: str) -> None:
    if not USERNAME.match(username):
        raise AccountError(
            "username: 2-64 characters, lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def _check_role(role: str) -> None:
    if role not in Role.__members__:
        raise AccountError(f"role: one of {', '.join(Role)}")


def _check_password(field: str, password: str, username: str, display_name: str | None) -> None:
    problem = password_problem(password, name_words(username, display_name))
    if problem:
        raise AccountError(f"{field}: {problem}")


def _get(db: Session, who: int | str, *, lock: bool = False) -> User:
    """The account by id (the browser) or by user name (the command line)."""
    wanted = User.id == who if isinstance(who, int) else User.username == who.strip().lower()
    query = select(User).where(wanted)
    user = db.scalar(query.with_for_update() if lock else query)
    if user is None:
        raise AccountError(f"username: no user '{who}'")
    return user


def _end_sessions(db: Session, user_id: int, now: datetime, *, keep_session_id: int | None = None) -> int:
    """End the user's live login sessions (all, or all but the one asking); their cookies stop working."""
    ending = update(LoginSession).where(LoginSession.user_id == user_id, LoginSession.ended_at.is_(None))
    if keep_session_id is not None:
        ending = ending.where(LoginSession.id != keep_session_id)
    return db.execute(ending.values(ended_at=now)).rowcount


def _lock_active_admins(db: Session) -> list[int]:
    """Lock the active admins' rows, always first and in id order: two admins disabling each other at
    once then take turns, and the second sees the first's change (and no deadlock)."""
    by_id = select(User.id).where(User.role == Role.admin.value, User.is_active).order_by(User.id)
    return list(db.scalars(by_id.with_for_update()))


def _keep_an_admin(user: User, active_admins: list[int], actor_id: int | None, doing: str) -> None:
    """Refuse to lock out the one doing it, or the last active admin (nobody could manage accounts)."""
    if actor_id is not None and user.id == actor_id:
        raise AccountError(f"username: you cannot {doing} your own account; another admin can")
    if user.id in active_admins and len(active_admins) == 1:
        raise AccountError(f"username: {user.username} is the last active admin; make another admin first")


def add_user(
    sessions: sessionmaker[Session],
    username: str,
    password: str,
    role: str,
    display_name: str | None = None,
    *,
    actor_id: int | None = None,
    client_address: str | None = None,
) -> User:
    """Create an account; refuse a taken user name or a weak password."""
    username = username.strip().lower()
    display_name = (display_name or "").strip() or None
    _check_username(username)
    _check_role(role)
    _check_password("password", password, username, display_name)
    with sessions.begin() as db:
        if db.scalar(select(User.id).where(User.username == username)) is not None:
            raise AccountError(f"username: '{username}' is taken")
        user = User(
            username=username,
            display_name=display_name or username,
            role=role,
            password_hash=hash_password(password),
            password_changed_at=datetime.now(UTC),
        )
        db.add(user)
        db.flush()
        audit.record(
            db,
            "user.create",
            user_id=actor_id,
            object_type="user",
            object_id=user.id,
            client_address=client_address,
            details={"username": username, "role": role},
        )
    return user


def list_users(sessions: sessionmaker[Session]) -> list[User]:
    with sessions() as db:
        return list(db.scalars(select(User).order_by(User.username)))


def get_user(sessions: sessionmaker[Session], user_id: int) -> User | None:
    with sessions() as db:
        return db.get(User, user_id)


def set_role(
    sessions: sessionmaker[Session],
    who: int | str,
    role: str,
    *,
    actor_id: int | None = None,
    client_address: str | None = None,
) -> User:
    """Change a user's role (it applies from their next request); the change is audited."""
    _check_role(role)
    with sessions.begin() as db:
        active_admins = _lock_active_admins(db)
        user = _get(db, who, lock=True)
        before = user.role
        if before == role:
            return user
        _keep_an_admin(user, active_admins, actor_id, "change the role of")
        user.role = role
        audit.record(
            db,
            "user.role_change",
            user_id=actor_id,
            object_type="user",
            object_id=user.id,
            client_address=client_address,
            details={"username": user.username, "from": before, "to": role},
        )
    return user


def set_active(
    sessions: sessionmaker[Session],
    who: int | str,
    active: bool,
    *,
    actor_id: int | None = None,
    now: datetime | None = None,
    client_address: str | None = None,
) -> User:
    """Disable (or re-enable) an account; disabling also ends its login sessions (its API tokens stop
    working too: they act only for an active user)."""
    with sessions.begin() as db:
        active_admins = _lock_active_admins(db)
        user = _get(db, who, lock=True)
        if user.is_active == active:
            return user
        if not active:
            _keep_an_admin(user, active_admins, actor_id, "disable")
        user.is_active = active
        if not active:
            _end_sessions(db, user.id, now or datetime.now(UTC))
        audit.record(
            db,
            "user.enable" if active else "user.disable",
            user_id=actor_id,
            object_type="user",
            object_id=user.id,
            client_address=client_address,
            details={"username": user.username},
        )
    return user


def generate_temporary_password() -> str:
    """A random password for an admin to hand over; it passes the policy like any other."""
    while True:
        candidate = secrets.token_urlsafe(12)  # 16 characters, 96 random bits
        if password_problem(candidate) is None:
            return candidate


def reset_password(
    sessions: sessionmaker[Session],
    who: int | str,
    temporary_password: str | None = None,
    *,
    actor_id: int | None = None,
    now: datetime | None = None,
    client_address: str | None = None,
) -> tuple[User, str]:
    """Give an account a temporary password (the admin's, or a generated one) that must be changed at
    the next login; the account's login sessions end. Returns the user and the temporary password."""
    now = now or datetime.now(UTC)
    with sessions.begin() as db:
        user = _get(db, who, lock=True)
        if actor_id is not None and user.id == actor_id:
            raise AccountError("username: change your own password under Account, Password")
        if temporary_password:
            _check_password("temporary_password", temporary_password, user.username, user.display_name)
        else:
            temporary_password = generate_temporary_password()
        user.password_hash = hash_password(temporary_password)
        user.must_change_password = True
        user.password_changed_at = now
        ended = _end_sessions(db, user.id, now)
        audit.record(
            db,
            "user.password_reset",
            user_id=actor_id,
            object_type="user",
            object_id=user.id,
            client_address=client_address,
            details={"username": user.username, "sessions_ended": ended},
            at=now,
        )
    return user, temporary_password


def change_password(
    sessions: sessionmaker[Session],
    user_id: int,
    current_password: str,
    new_password: str,
    confirmation: str,
    *,
    keep_session_id: int | None,
    now: datetime,
    client_address: str | None = None,
) -> User:
    """A user's own change: the current password is required, the new one meets the policy; every
    other login session of the user ends (a thief's included), the one asking stays."""
    with sessions.begin() as db:
        user = _get(db, user_id, lock=True)
        if not verify_password(user.password_hash, current_password):
            raise AccountError("current_password: not your current password")
        if new_password != confirmation:
            raise AccountError("new_password_confirmation: does not match the new password")
        if new_password == current_password:
            raise AccountError("new_password: must differ from your current password")
        _check_password("new_password", new_password, user.username, user.display_name)
        user.password_hash = hash_password(new_password)
        user.must_change_password = False
        user.password_changed_at = now
        ended = _end_sessions(db, user.id, now, keep_session_id=keep_session_id)
        audit.record(
            db,
            "user.password_change",
            user_id=user.id,
            object_type="user",
            object_id=user.id,
            client_address=client_address,
            details={"username": user.username, "other_sessions_ended": ended},
            at=now,
        )
    return user


EDITOR_DISPLAYS = ("full", "compact")


def set_editor_display(sessions: sessionmaker[Session], user_id: int, display: str) -> None:
    """Remember how the physician wants label tags shown in the editor. Audited like every change to an
    account (an auditor asking why a physician saw abbreviated labels gets an answer); a toggle to the
    display already stored writes nothing."""
    if display not in EDITOR_DISPLAYS:
        raise AccountError(f"display: one of {', '.join(EDITOR_DISPLAYS)}, not {display!r}")
    with sessions.begin() as db:
        user = _get(db, user_id)
        if user.editor_display == display:
            return
        before, user.editor_display = user.editor_display, display
        audit.record(
            db,
            "user.editor_display",
            user_id=user.id,
            object_type="user",
            object_id=user.id,
            details={"from": before, "to": display},
        )
