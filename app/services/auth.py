"""Logging in and out, login sessions with idle and absolute expiry, personal API tokens.

Session and token secrets are random; the database keeps only their sha256, so a copy of the
database does not let anyone in.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, case, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import ApiToken, LoginSession, LoginThrottle, User
from app.domain.login_throttle import failure_delay, throttle_keys
from app.services import audit
from app.services.users import verify_password
from app.settings import Settings

TOKEN_PREFIX = "cln_"
# Extend last_seen at most this often: the idle clock need not be finer than this.
LAST_SEEN_RESOLUTION = timedelta(seconds=15)


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class LoginRefused(Exception):
    """A login that did not succeed; ``throttled`` when too many failures came first (the password
    was not checked). ``delay_seconds``: how long to hold the answer to a failure."""

    def __init__(self, throttled: bool = False, delay_seconds: float = 0.0):
        self.throttled = throttled
        self.delay_seconds = delay_seconds
        super().__init__("throttled" if throttled else "wrong user name or password")


@dataclass(frozen=True)
class Login:
    """What the browser gets after a login: the session secret for its cookie."""

    session_secret: str
    user: User
    csrf_token: str


@dataclass(frozen=True)
class CurrentSession:
    user: User
    login_session_id: int
    csrf_token: str


def _count_attempt(db: Session, key: str, *, now: datetime, window_start: datetime) -> tuple[int, bool]:
    """Count one attempt under ``key`` in a single statement: the count with it, and whether a block
    is in force (then nothing is counted). The row lock the statement takes orders concurrent
    attempts, so each sees those before it; a window or a block that has run out starts again at 1.
    """
    row = LoginThrottle.__table__.c  # the stored row, in ON CONFLICT DO UPDATE
    blocked = row.blocked_until > now
    start_again = or_(row.window_started_at <= window_start, row.blocked_until <= now)
    statement = (
        pg_insert(LoginThrottle)
        .values(key=key, failures=1, window_started_at=now, blocked_until=None)
        .on_conflict_do_update(
            index_elements=[row.key],
            set_={
                "failures": case((blocked, row.failures), (start_again, 1), else_=row.failures + 1),
                "window_started_at": case(
                    (blocked, row.window_started_at), (start_again, now), else_=row.window_started_at
                ),
                "blocked_until": case((blocked, row.blocked_until), else_=None),
            },
        )
        .returning(row.failures, row.blocked_until)
    )
    failures, blocked_until = db.execute(statement).one()
    return failures, blocked_until is not None


def _forget_spent_throttles(db: Session, settings: Settings, now: datetime) -> None:
    """Drop counts whose window and any block have run out (names that were tried once and never
    again would pile up). Rows another attempt holds are skipped, so this never waits for one."""
    spent = now - timedelta(minutes=settings.login_failure_window_minutes + settings.login_block_minutes)
    rows = (
        select(LoginThrottle.key)
        .where(LoginThrottle.window_started_at < spent)
        .with_for_update(skip_locked=True)
    )
    db.execute(delete(LoginThrottle).where(LoginThrottle.key.in_(rows.scalar_subquery())))


def log_in(
    sessions: sessionmaker[Session],
    settings: Settings,
    username: str,
    password: str,
    *,
    now: datetime,
    client_address: str | None,
) -> Login:
    """Check a password and open a new login session (a fresh id every time).

    Every attempt is first counted, in a transaction of its own, under the pair (user name, client
    address), the user name and the address, before the password is looked at; so concurrent
    attempts cannot all pass. The pair may have ``login_max_failures`` failures per window: the
    last of them blocks that pair (only) for ``login_block_minutes``, and until then its attempts
    are refused without checking the password. A success clears the pair's count. Nothing blocks a
    user name or an address as a whole (anyone could lock a real user out that way): their counts,
    and the pair's, only make each failure's answer wait longer (``LoginRefused.delay_seconds``,
    see ``app.domain.login_throttle``). Successes, failures and refusals are audited.
    """
    username = username.strip().lower()[:64]
    keys = throttle_keys(username, client_address)
    window_start = now - timedelta(minutes=settings.login_failure_window_minutes)
    with sessions.begin() as db:
        pair_failures, blocked = _count_attempt(db, keys.pair, now=now, window_start=window_start)
        if blocked or pair_failures > settings.login_max_failures:
            audit.record(db, "login.throttled", username=username, client_address=client_address, at=now)
            throttled = True
        else:
            throttled = False
            # Always account, then address, after the pair: concurrent attempts lock rows in one order.
            account_failures, _ = _count_attempt(db, keys.account, now=now, window_start=window_start)
            address_failures, _ = _count_attempt(db, keys.address, now=now, window_start=window_start)
            user = db.scalar(select(User).where(User.username == username))
            password_hash = user.password_hash if user else None
    if throttled:
        raise LoginRefused(throttled=True)
    # Outside any transaction: argon2 takes its time, and holds no connection or row lock meanwhile.
    password_ok = verify_password(password_hash, password)
    with sessions.begin() as db:
        user = db.get(User, user.id) if user is not None else None
        # A password changed (or an account disabled) while this one was checked does not count.
        password_ok = password_ok and user is not None and user.password_hash == password_hash
        if user is not None and password_ok and user.is_active:
            db.execute(delete(LoginThrottle).where(LoginThrottle.key == keys.pair))
            for key in (keys.account, keys.address):  # this attempt was no failure after all
                db.execute(
                    update(LoginThrottle)
                    .where(LoginThrottle.key == key)
                    .values(failures=func.greatest(LoginThrottle.failures - 1, 0))
                )
            secret = secrets.token_urlsafe(32)
            csrf_token = secrets.token_urlsafe(32)
            db.add(
                LoginSession(
                    token_sha256=_sha256(secret),
                    user_id=user.id,
                    csrf_token=csrf_token,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + timedelta(hours=settings.session_max_hours),
                    client_address=client_address,
                )
            )
            audit.record(
                db,
                "login.success",
                user_id=user.id,
                username=username,
                client_address=client_address,
                at=now,
            )
            return Login(session_secret=secret, user=user, csrf_token=csrf_token)
        reason = "unknown user" if user is None else ("disabled user" if password_ok else "wrong password")
        audit.record(
            db,
            "login.failure",
            user_id=user.id if user else None,
            username=username,
            client_address=client_address,
            details={"reason": reason},
            at=now,
        )
        if pair_failures >= settings.login_max_failures:
            db.execute(
                update(LoginThrottle)
                .where(LoginThrottle.key == keys.pair, LoginThrottle.blocked_until.is_(None))
                .values(blocked_until=now + timedelta(minutes=settings.login_block_minutes))
            )
        _forget_spent_throttles(db, settings, now)
    raise LoginRefused(
        delay_seconds=failure_delay(
            pair_failures=pair_failures,
            account_failures=account_failures,
            address_failures=address_failures,
            slow_after=settings.login_slow_after_failures,
            max_delay_seconds=settings.login_max_delay_seconds,
        )
    )


# Built once: every request of a logged-in browser runs it.
_SESSION_AND_USER = (
    select(LoginSession, User)
    .outerjoin(User, User.id == LoginSession.user_id)
    .where(LoginSession.token_sha256 == bindparam("token_sha256"))
)


def current_session(
    sessions: sessionmaker[Session], settings: Settings, secret: str, *, now: datetime
) -> CurrentSession | None:
    """The live session behind a cookie secret, or None when it ended, idled out or expired."""
    idle_limit = timedelta(minutes=settings.session_idle_minutes)
    token = {"token_sha256": _sha256(secret)}
    # Every request of a logged-in browser comes here, and nearly always only reads: the session and
    # its user in one query, outside a transaction (no BEGIN and COMMIT round trips). Anything to
    # write (the idle clock, an expiry with its audit event) is done in a transaction below.
    with sessions() as db:
        db.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        found = db.execute(_SESSION_AND_USER, token).first()
        if found is None or found[0].ended_at is not None:
            return None
        row, user = found
        if (
            user is not None
            and user.is_active
            and now < row.expires_at
            and now - row.last_seen_at < min(idle_limit, LAST_SEEN_RESOLUTION)
        ):
            return CurrentSession(user=user, login_session_id=row.id, csrf_token=row.csrf_token)
    with sessions.begin() as db:
        found = db.execute(_SESSION_AND_USER, token).first()
        if found is None or found[0].ended_at is not None:
            return None
        row, user = found
        expired = now >= row.expires_at or now - row.last_seen_at >= idle_limit
        if expired or user is None or not user.is_active:
            row.ended_at = now
            if not expired:
                reason = "account disabled"
            else:
                reason = "lifetime" if now >= row.expires_at else "idle"
            audit.record(db, "session.expired", user_id=row.user_id, details={"reason": reason}, at=now)
            return None
        if now - row.last_seen_at >= LAST_SEEN_RESOLUTION:
            row.last_seen_at = now
        return CurrentSession(user=user, login_session_id=row.id, csrf_token=row.csrf_token)


def log_out(sessions: sessionmaker[Session], secret: str, *, now: datetime) -> None:
    with sessions.begin() as db:
        row = db.scalar(select(LoginSession).where(LoginSession.token_sha256 == _sha256(secret)))
        if row is not None and row.ended_at is None:
            row.ended_at = now
            audit.record(db, "logout", user_id=row.user_id)


def end_all_sessions(db: Session, user_id: int) -> None:
    """End every live login session of a user, inside the caller's transaction."""
    db.execute(
        update(LoginSession)
        .where(LoginSession.user_id == user_id, LoginSession.ended_at.is_(None))
        .values(ended_at=func.now())
    )


def create_api_token(sessions: sessionmaker[Session], user_id: int, name: str) -> tuple[ApiToken, str]:
    """Make a personal API token; the secret is returned once and never stored."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ValueError("name: 1-100 characters")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with sessions.begin() as db:
        token = ApiToken(user_id=user_id, name=name, token_sha256=_sha256(secret), prefix=secret[:10])
        db.add(token)
        db.flush()
        audit.record(
            db,
            "api_token.create",
            user_id=user_id,
            object_type="api_token",
            object_id=token.id,
            details={"name": name},
        )
    return token, secret


def revoke_api_token(sessions: sessionmaker[Session], user_id: int, token_id: int, *, now: datetime) -> bool:
    """Revoke one of the user's own tokens; False when there is no such live token."""
    with sessions.begin() as db:
        token = db.get(ApiToken, token_id)
        if token is None or token.user_id != user_id or token.revoked_at is not None:
            return False
        token.revoked_at = now
        audit.record(db, "api_token.revoke", user_id=user_id, object_type="api_token", object_id=token.id)
    return True


def list_api_tokens(sessions: sessionmaker[Session], user_id: int) -> list[ApiToken]:
    with sessions() as db:
        return list(db.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)))


def user_for_api_token(sessions: sessionmaker[Session], secret: str, *, now: datetime) -> User | None:
    """The active user owning a live token, or None."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    with sessions.begin() as db:
        token = db.scalar(select(ApiToken).where(ApiToken.token_sha256 == _sha256(secret)))
        if token is None or token.revoked_at is not None:
            return None
        user = db.get(User, token.user_id)
        if user is None or not user.is_active:
            return None
        token.last_used_at = now
        return user
