"""Accounts in the browser (issue 17, finding 8): the password policy, disable and enable, role changes,
an admin's reset (the user must change it before anything else opens), a user's own change, and the audit
trail of each, never with a password in it."""

import json

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.db.models import AuditEvent, LoginSession, User
from tests.conftest import PASSWORDS, log_in, page, session_csrf

STRONG = "violet tram grows under seven lanterns"
ANOTHER_STRONG = "quiet heron folds maps at dawn"


def _user(sessions, username: str) -> User:
    with sessions() as db:
        return db.scalar(select(User).where(User.username == username))


def _actions(sessions) -> list[str]:
    with sessions() as db:
        return list(db.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def _second_browser(web: TestClient) -> TestClient:
    """Another browser on the same app: its own cookie jar."""
    return TestClient(web.app, follow_redirects=False)


def _as_admin(web: TestClient, path: str, data: dict | None = None):
    log_in(web, "admin")
    return web.post(path, data={**(data or {}), "csrf_token": session_csrf(web, "/admin/users")})


def test_weak_passwords_are_refused_naming_the_field_and_a_passphrase_is_accepted(web, accounts, sessions):
    log_in(web, "admin")
    csrf = session_csrf(web, "/admin/users")
    for weak in ["password", "12345678", "password1234"]:
        response = web.post(
            "/admin/users",
            data={"username": "dr.weak", "password": weak, "role": "annotator", "csrf_token": csrf},
        )
        assert response.status_code == 422, weak
        assert page(response).select_one("[data-testid=form-error]").text.startswith("password:"), weak
        assert not page(response).select_one("input[name=password]").get("value")  # not echoed back
        assert _user(sessions, "dr.weak") is None
    response = web.post(
        "/admin/users",
        data={"username": "dr.weak", "password": STRONG, "role": "annotator", "csrf_token": csrf},
    )
    assert response.status_code == 303
    assert _user(sessions, "dr.weak").role == "annotator"
    assert _actions(sessions).count("user.create") == 1


def test_disabling_ends_the_users_session_and_login_until_enabled(web, accounts, sessions):
    physician = _second_browser(web)
    log_in(physician, "annotator")
    assert physician.get("/annotate").status_code == 200
    user_id = accounts["annotator"].id

    response = _as_admin(web, f"/admin/users/{user_id}/disable")
    assert response.status_code == 303
    follow = physician.get("/annotate")
    assert follow.status_code == 303 and follow.headers["location"].startswith("/login")
    assert log_in(physician, "annotator").status_code == 401

    csrf = session_csrf(web, "/admin/users")
    assert web.post(f"/admin/users/{user_id}/enable", data={"csrf_token": csrf}).status_code == 303
    assert log_in(physician, "annotator").status_code == 303
    assert physician.get("/annotate").status_code == 200
    assert [a for a in _actions(sessions) if a.startswith("user.")] == ["user.disable", "user.enable"]


def test_a_physician_made_lead_reaches_the_lead_pages(web, accounts, sessions):
    physician = _second_browser(web)
    log_in(physician, "annotator")
    assert physician.get("/lead").status_code == 403
    response = _as_admin(web, f"/admin/users/{accounts['annotator'].id}/role", {"role": "lead"})
    assert response.status_code == 303
    assert physician.get("/lead").status_code == 200  # from the next request, no new login needed
    assert _user(sessions, "annotator").role == "lead"
    assert "user.role_change" in _actions(sessions)


def test_a_bad_role_is_refused_naming_the_field(web, accounts, sessions):
    response = _as_admin(web, f"/admin/users/{accounts['annotator'].id}/role", {"role": "superuser"})
    assert response.status_code == 422
    assert page(response).select_one("[data-testid=form-error]").text.startswith("role:")
    assert _user(sessions, "annotator").role == "annotator"


def test_after_a_reset_the_user_must_change_the_password_before_anything_else(web, accounts, sessions):
    physician = _second_browser(web)
    log_in(physician, "annotator")
    token = physician.post("/account/tokens", data={"name": "script", "csrf_token": session_csrf(physician)})
    secret = page(token).select_one("[data-testid=new-token]").text
    bearer = {"Authorization": f"Bearer {secret}"}
    script = _second_browser(web)
    assert script.get("/api/v1/me", headers=bearer).status_code == 200

    response = _as_admin(web, f"/admin/users/{accounts['annotator'].id}/password")
    assert response.status_code == 200
    temporary = page(response).select_one("[data-testid=temporary-password]").text
    assert temporary and response.headers["cache-control"] == "no-store"
    with sessions() as db:
        assert (
            db.scalar(
                select(LoginSession.id).where(
                    LoginSession.user_id == accounts["annotator"].id, LoginSession.ended_at.is_(None)
                )
            )
            is None
        )
    follow = physician.get("/annotate")
    assert follow.status_code == 303 and follow.headers["location"].startswith("/login")

    physician.cookies.clear()
    assert log_in(physician, "annotator").status_code == 401  # the old password is gone
    assert log_in(physician, "annotator", temporary).status_code == 303
    for path in ["/annotate", "/account/tokens", "/lead", "/admin/users"]:
        sent = physician.get(path)
        assert sent.status_code == 303 and sent.headers["location"] == "/account/password", path
    assert page(physician.get("/account/password")).select_one("[data-testid=must-change]")
    api = script.get("/api/v1/me", headers=bearer)
    assert api.status_code == 403 and "/account/password" in api.json()["detail"]

    changed = physician.post(
        "/account/password",
        data={
            "current_password": temporary,
            "new_password": STRONG,
            "new_password_confirmation": STRONG,
            "csrf_token": session_csrf(physician, "/account/password"),
        },
    )
    assert changed.status_code == 303
    assert physician.get("/annotate").status_code == 200
    assert script.get("/api/v1/me", headers=bearer).status_code == 200
    assert not _user(sessions, "annotator").must_change_password


def test_own_change_with_a_wrong_current_password_changes_nothing(web, accounts, sessions):
    log_in(web, "annotator")
    before = _user(sessions, "annotator").password_hash
    response = web.post(
        "/account/password",
        data={
            "current_password": "not-my-password",
            "new_password": STRONG,
            "new_password_confirmation": STRONG,
            "csrf_token": session_csrf(web, "/account/password"),
        },
    )
    assert response.status_code == 422
    assert page(response).select_one("[data-testid=form-error]").text.startswith("current_password:")
    assert _user(sessions, "annotator").password_hash == before
    assert "user.password_change" not in _actions(sessions)
    web.cookies.clear()
    assert log_in(web, "annotator").status_code == 303


def test_own_change_ends_the_other_sessions_but_not_this_one(web, accounts, sessions):
    other = _second_browser(web)
    log_in(other, "annotator")
    log_in(web, "annotator")
    assert other.get("/annotate").status_code == 200
    response = web.post(
        "/account/password",
        data={
            "current_password": PASSWORDS["annotator"],
            "new_password": STRONG,
            "new_password_confirmation": STRONG,
            "csrf_token": session_csrf(web, "/account/password"),
        },
    )
    assert response.status_code == 303
    assert web.get("/annotate").status_code == 200  # this browser stays logged in
    ended = other.get("/annotate")
    assert ended.status_code == 303 and ended.headers["location"].startswith("/login")
    other.cookies.clear()
    assert log_in(other, "annotator").status_code == 401
    assert log_in(other, "annotator", STRONG).status_code == 303
    with sessions() as db:
        change = db.scalar(select(AuditEvent).where(AuditEvent.action == "user.password_change"))
    assert change.details["other_sessions_ended"] == 1


def test_a_weak_new_password_is_refused_naming_the_field(web, accounts, sessions):
    log_in(web, "annotator")
    before = _user(sessions, "annotator").password_hash
    response = web.post(
        "/account/password",
        data={
            "current_password": PASSWORDS["annotator"],
            "new_password": "password1234",
            "new_password_confirmation": "password1234",
            "csrf_token": session_csrf(web, "/account/password"),
        },
    )
    assert response.status_code == 422
    assert page(response).select_one("[data-testid=form-error]").text.startswith("new_password:")
    assert _user(sessions, "annotator").password_hash == before


def test_leads_and_physicians_cannot_manage_accounts(web, accounts, sessions):
    for role in ["lead", "annotator"]:
        web.cookies.clear()
        log_in(web, role)
        assert web.get("/admin/users").status_code == 403, role
        assert web.get(f"/admin/users/{accounts['admin'].id}").status_code == 403, role
        csrf = session_csrf(web)
        refused = web.post(
            "/admin/users",
            data={"username": "intruder", "password": STRONG, "role": "admin", "csrf_token": csrf},
        )
        assert refused.status_code == 403, role
        assert (
            web.post(f"/admin/users/{accounts['admin'].id}/password", data={"csrf_token": csrf}).status_code
            == 403
        ), role
    assert _user(sessions, "intruder") is None
    assert not _user(sessions, "admin").must_change_password


def test_every_account_change_is_audited_without_any_password(web, accounts, sessions):
    log_in(web, "admin")
    csrf = session_csrf(web, "/admin/users")
    assert (
        web.post(
            "/admin/users",
            data={"username": "dr.new", "password": STRONG, "role": "annotator", "csrf_token": csrf},
        ).status_code
        == 303
    )
    new_id = _user(sessions, "dr.new").id
    for path, data in [
        (f"/admin/users/{new_id}/role", {"role": "lead"}),
        (f"/admin/users/{new_id}/disable", {}),
        (f"/admin/users/{new_id}/enable", {}),
    ]:
        assert web.post(path, data={**data, "csrf_token": csrf}).status_code == 303, path
    reset = web.post(
        f"/admin/users/{new_id}/password", data={"temporary_password": ANOTHER_STRONG, "csrf_token": csrf}
    )
    assert reset.status_code == 200
    user = _second_browser(web)
    assert log_in(user, "dr.new", ANOTHER_STRONG).status_code == 303
    final = "pebble orchard hums beside cobalt rivers"
    assert (
        user.post(
            "/account/password",
            data={
                "current_password": ANOTHER_STRONG,
                "new_password": final,
                "new_password_confirmation": final,
                "csrf_token": session_csrf(user, "/account/password"),
            },
        ).status_code
        == 303
    )

    with sessions() as db:
        events = list(db.scalars(select(AuditEvent).where(AuditEvent.action.like("user.%"))))
    by_action = {event.action: event for event in events}
    assert set(by_action) == {
        "user.create",
        "user.role_change",
        "user.disable",
        "user.enable",
        "user.password_reset",
        "user.password_change",
    }
    admin_id = accounts["admin"].id
    for action, event in by_action.items():
        assert (event.object_type, event.object_id) == ("user", str(new_id)), action
        expected_actor = _user(sessions, "dr.new").id if action == "user.password_change" else admin_id
        assert event.user_id == expected_actor, action
    assert by_action["user.role_change"].details["from"] == "annotator"
    assert by_action["user.role_change"].details["to"] == "lead"
    with sessions() as db:
        everything = json.dumps([e.details for e in db.scalars(select(AuditEvent))], default=str)
    for password in [STRONG, ANOTHER_STRONG, final]:
        assert password not in everything


def test_the_editor_display_is_kept_with_the_account_and_each_change_audited(web, accounts, sessions):
    log_in(web, "annotator")
    headers = {"X-CSRF-Token": session_csrf(web, "/account/password")}
    for display in ("compact", "compact", "full"):
        answer = web.post("/account/editor-display", json={"display": display}, headers=headers)
        assert answer.status_code == 204, answer.text
    refused = web.post("/account/editor-display", json={"display": "tiny"}, headers=headers)
    assert refused.status_code == 422 and "display" in refused.text
    assert _user(sessions, "annotator").editor_display == "full"
    with sessions() as db:
        changes = list(
            db.scalars(
                select(AuditEvent).where(AuditEvent.action == "user.editor_display").order_by(AuditEvent.id)
            )
        )
    # Two changes, not three: the repeated "compact" stored nothing; the refused value wrote nothing either.
    assert [json.loads(e.details) if isinstance(e.details, str) else e.details for e in changes] == [
        {"from": "full", "to": "compact"},
        {"from": "compact", "to": "full"},
    ]
    assert all(event.user_id == accounts["annotator"].id for event in changes)
