"""Login throttling against real PostgreSQL: counted before the password is checked (so concurrent
attempts cannot all pass), blocking only the pair (user name, address), and only for a while."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.db.models import AuditEvent, LoginThrottle
from app.services import auth
from app.services.auth import LoginRefused
from tests.conftest import PASSWORDS

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
ATTACKER = "203.0.113.66"


def _count(sessions, action: str, **where) -> int:
    conditions = [AuditEvent.action == action] + [getattr(AuditEvent, k) == v for k, v in where.items()]
    with sessions() as db:
        return db.scalar(select(func.count()).select_from(AuditEvent).where(*conditions))


def _attempt(sessions, settings, username, password, address, now=NOW):
    """'ok', 'refused' (password checked, wrong) or 'throttled' (password not checked)."""
    try:
        auth.log_in(sessions, settings, username, password, now=now, client_address=address)
    except LoginRefused as refused:
        return "throttled" if refused.throttled else "refused"
    return "ok"


def test_concurrent_wrong_passwords_check_no_more_than_the_limit(sessions, accounts, runtime):
    settings = runtime.settings
    attempts = 12
    start = threading.Barrier(attempts)

    def attempt(_):
        start.wait()  # all at once, as an attacker's parallel requests
        return _attempt(sessions, settings, "lead", "wrong-password!", ATTACKER)

    with ThreadPoolExecutor(attempts) as pool:
        outcomes = list(pool.map(attempt, range(attempts)))
    limit = settings.login_max_failures
    # Each password check is one login.failure row: no more checks than the limit.
    assert _count(sessions, "login.failure") == limit
    assert _count(sessions, "login.throttled") == attempts - limit
    assert sorted(outcomes) == ["refused"] * limit + ["throttled"] * (attempts - limit)
    # ... and the pair is blocked now, even for the right password.
    assert _attempt(sessions, settings, "lead", PASSWORDS["lead"], ATTACKER) == "throttled"


def test_failures_from_one_address_do_not_lock_the_user_out_from_another(sessions, accounts, runtime):
    settings = runtime.settings
    for _ in range(settings.login_max_failures + 3):
        _attempt(sessions, settings, "admin", "guess-guess", ATTACKER)
    assert _attempt(sessions, settings, "admin", PASSWORDS["admin"], ATTACKER) == "throttled"
    # The real admin, at the clinic, still logs in; so does a mistyped attempt get its password checked.
    assert _attempt(sessions, settings, "admin", "typo-password", "192.0.2.10") == "refused"
    assert _attempt(sessions, settings, "admin", PASSWORDS["admin"], "192.0.2.10") == "ok"
    assert _count(sessions, "login.success", username="admin", client_address="192.0.2.10") == 1


def test_many_names_from_one_address_do_not_lock_out_others_there_or_elsewhere(sessions, accounts, runtime):
    settings = runtime.settings
    # Password spraying from one address (the clinic's NAT, which the real users share too), with
    # the names of real accounts among them.
    names = ["admin", "annotator"] + [f"guess{i}" for i in range(6)]
    for name in names:
        for _ in range(settings.login_max_failures):
            assert _attempt(sessions, settings, name, "Winter2026!", ATTACKER) == "refused"
    assert (
        _count(sessions, "login.failure", client_address=ATTACKER) == len(names) * settings.login_max_failures
    )
    # Another user behind the same address, and the attacked users elsewhere, log in.
    assert _attempt(sessions, settings, "lead", PASSWORDS["lead"], ATTACKER) == "ok"
    assert _attempt(sessions, settings, "admin", PASSWORDS["admin"], "192.0.2.10") == "ok"
    assert _attempt(sessions, settings, "annotator", PASSWORDS["annotator"], "198.51.100.4") == "ok"


def test_a_blocked_pair_is_blocked_for_the_block_time_only(sessions, accounts, runtime):
    settings = runtime.settings
    minute = timedelta(minutes=1)
    for i in range(settings.login_max_failures):  # spread over the window: the last one blocks
        assert (
            _attempt(sessions, settings, "lead", "wrong-password!", ATTACKER, now=NOW + i * minute)
            == "refused"
        )
    blocked_at = NOW + (settings.login_max_failures - 1) * minute
    block = timedelta(minutes=settings.login_block_minutes)
    # Refused without a check while blocked, however many tries (they do not lengthen the block).
    for offset in (timedelta(0), block / 2, block - minute):
        at = blocked_at + offset
        assert _attempt(sessions, settings, "lead", PASSWORDS["lead"], ATTACKER, now=at) == "throttled"
    assert _count(sessions, "login.failure") == settings.login_max_failures
    # Once the block is over the pair starts afresh: a full allowance of attempts, then a new block.
    after = blocked_at + block
    assert _attempt(sessions, settings, "lead", "wrong-password!", ATTACKER, now=after) == "refused"
    assert _attempt(sessions, settings, "lead", PASSWORDS["lead"], ATTACKER, now=after) == "ok"


def test_a_success_clears_the_pair_but_failures_keep_slowing_the_account(sessions, accounts, runtime):
    settings = runtime.settings.model_copy(
        update={"login_slow_after_failures": 3, "login_max_delay_seconds": 5}
    )
    delays = []
    for i in range(8):  # one failure from each of eight addresses: each pair is new
        try:
            auth.log_in(sessions, settings, "lead", "wrong-password!", now=NOW, client_address=f"192.0.2.{i}")
        except LoginRefused as refused:
            assert not refused.throttled
            delays.append(refused.delay_seconds)
    # Past three failures for the account, each answer waits twice as long, up to the cap.
    assert delays == [0, 0, 0, 1, 2, 4, 5, 5]
    # The right password from any of those addresses is checked and works: no account-wide lockout.
    assert _attempt(sessions, settings, "lead", PASSWORDS["lead"], "192.0.2.7", now=NOW) == "ok"
    with sessions() as db:
        assert db.get(LoginThrottle, "pair:lead|192.0.2.7") is None
        assert db.get(LoginThrottle, "account:lead").failures == 8


def test_repeated_failures_of_one_pair_wait_longer_and_longer(sessions, accounts, runtime):
    settings = runtime.settings
    delays = []
    for _ in range(settings.login_max_failures):
        with pytest.raises(LoginRefused) as refused:
            auth.log_in(sessions, settings, "lead", "wrong-password!", now=NOW, client_address=ATTACKER)
        delays.append(refused.value.delay_seconds)
    assert delays == [0, 1, 2, 4, 8][: settings.login_max_failures]


def test_spent_counts_are_forgotten(sessions, accounts, runtime):
    settings = runtime.settings
    for i in range(3):
        _attempt(sessions, settings, f"someone{i}", "whatever-pass", f"192.0.2.{i}")
    later = NOW + timedelta(minutes=settings.login_failure_window_minutes + settings.login_block_minutes + 1)
    _attempt(sessions, settings, "lead", "wrong-password!", ATTACKER, now=later)
    with sessions() as db:
        keys = set(db.scalars(select(LoginThrottle.key)))
    assert keys == {"pair:lead|" + ATTACKER, "account:lead", "address:" + ATTACKER}
