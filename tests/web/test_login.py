"""Logging in and out against real PostgreSQL: success, failures, expiry, throttling, audit."""

import pytest
from sqlalchemy import select

from app.db.models import AuditEvent, LoginSession
from app.services.users import set_active
from app.web.deps import SESSION_COOKIE
from tests.conftest import PASSWORDS, log_in, page


@pytest.fixture(autouse=True)
def waits(web) -> list[float]:
    """The pauses a failed login is held for, recorded instead of slept (the app takes its sleep from
    app.state.sleep): throttling is tested without 15 s of waiting per test."""
    held: list[float] = []

    async def sleep(seconds: float) -> None:
        held.append(seconds)

    web.app.state.sleep = sleep
    return held


def _audit(sessions, action):
    with sessions() as db:
        return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def test_login_succeeds_and_lands_on_the_role_home(web, accounts, sessions):
    response = log_in(web, "lead")
    assert response.status_code == 303 and response.headers["location"] == "/lead"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    home = web.get("/lead")
    assert home.status_code == 200
    assert page(home).select_one("[data-testid=whoami]").text == "lead"
    assert [e.username for e in _audit(sessions, "login.success")] == ["lead"]


def test_wrong_password_unknown_user_and_disabled_user_are_refused(web, accounts, sessions):
    set_active(sessions, "annotator", False)
    for username, password, _reason in [
        ("lead", "not-the-password", "wrong password"),
        ("nobody", "whatever-password", "unknown user"),
        ("annotator", PASSWORDS["annotator"], "disabled user"),
    ]:
        response = log_in(web, username, password)
        assert response.status_code == 401
        assert SESSION_COOKIE not in response.cookies
        assert "Wrong user name or password" in page(response).select_one("[data-testid=login-error]").text
        assert web.get("/annotate").status_code == 303
    failures = _audit(sessions, "login.failure")
    assert [(e.username, e.details["reason"]) for e in failures] == [
        ("lead", "wrong password"),
        ("nobody", "unknown user"),
        ("annotator", "disabled user"),
    ]
    with sessions() as db:
        assert db.scalar(select(LoginSession.id)) is None


def test_each_login_gets_a_new_session_id(web, accounts):
    log_in(web, "lead")
    first = web.cookies.get(SESSION_COOKIE)
    web.cookies.clear()
    log_in(web, "lead")
    second = web.cookies.get(SESSION_COOKIE)
    assert first and second and first != second


def test_idle_session_expires_with_the_injected_clock(web, accounts, clock, sessions):
    log_in(web, "annotator")
    clock.advance(minutes=29)
    assert web.get("/annotate").status_code == 200  # activity renews the idle clock
    clock.advance(minutes=29)
    assert web.get("/annotate").status_code == 200
    clock.advance(minutes=30)
    response = web.get("/annotate")
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    assert [e.details["reason"] for e in _audit(sessions, "session.expired")] == ["idle"]
    clock.advance(minutes=1)
    assert web.get("/annotate").status_code == 303  # an ended session stays ended


def test_absolute_lifetime_ends_even_an_active_session(web, accounts, clock, sessions):
    log_in(web, "annotator")
    for _ in range(12 * 4):  # active every 15 minutes for 12 hours
        clock.advance(minutes=15)
        if web.get("/annotate").status_code != 200:
            break
    assert web.get("/annotate").status_code == 303
    assert [e.details["reason"] for e in _audit(sessions, "session.expired")] == ["lifetime"]


def test_logout_ends_the_session_on_the_server(web, accounts, sessions):
    log_in(web, "lead")
    cookie = web.cookies.get(SESSION_COOKIE)
    token = page(web.get("/lead")).select_one("form[action='/logout'] input[name=csrf_token]")["value"]
    assert web.post("/logout", data={"csrf_token": token}).status_code == 303
    web.cookies.set(SESSION_COOKIE, cookie)  # a copied cookie must not work after logout
    assert web.get("/lead").status_code == 303


def test_failed_logins_are_throttled_and_audited(web, accounts, sessions, runtime, waits):
    limit = runtime.settings.login_max_failures
    for _ in range(limit):
        assert log_in(web, "lead", "wrong-password!").status_code == 401
    # Each failure was held, and for longer as they went on.
    assert len(waits) == limit and waits == sorted(waits) and waits[-1] > 0
    throttled = log_in(web, "lead", PASSWORDS["lead"])  # even the right password waits
    assert throttled.status_code == 429
    assert "Too many failed logins" in throttled.text
    assert len(_audit(sessions, "login.throttled")) == 1
    assert len(_audit(sessions, "login.failure")) == limit


def test_throttling_ends_after_the_window(web, accounts, clock, runtime, sessions):
    for _ in range(runtime.settings.login_max_failures):
        log_in(web, "lead", "wrong-password!")
    clock.advance(minutes=runtime.settings.login_failure_window_minutes - 1)
    assert log_in(web, "lead").status_code == 429
    clock.advance(minutes=2)
    assert log_in(web, "lead").status_code == 303


def test_next_parameter_only_accepts_local_paths(web, accounts):
    from tests.conftest import login_csrf

    for target, expected in [
        ("/account/tokens", "/account/tokens"),
        ("https://evil.example/", "/lead"),
        ("//evil.example/x", "/lead"),
    ]:
        web.cookies.clear()
        token = login_csrf(web)
        response = web.post(
            "/login",
            data={"username": "lead", "password": PASSWORDS["lead"], "csrf_token": token, "next": target},
        )
        assert response.headers["location"] == expected


def test_logout_after_the_session_idled_out_still_works(web, accounts, clock):
    log_in(web, "lead")
    token = page(web.get("/lead")).select_one("form[action='/logout'] input[name=csrf_token]")["value"]
    clock.advance(hours=1)
    response = web.post("/logout", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["location"] == "/login"
