"""Personal API tokens: stored hashed, work as Bearer tokens, stop working when revoked."""

import hashlib

from sqlalchemy import select

from app.db.models import ApiToken, AuditEvent
from app.services.users import set_active
from tests.conftest import log_in, page, session_csrf


def _create(web, name="script") -> str:
    token = session_csrf(web)
    response = web.post("/account/tokens", data={"name": name, "csrf_token": token})
    assert response.status_code == 200
    return page(response).select_one("[data-testid=new-token]").text


def test_token_auth_works_and_revoked_token_does_not(web, accounts, sessions):
    log_in(web, "lead")
    secret = _create(web)
    with sessions() as db:
        stored = db.scalar(select(ApiToken))
    assert stored.token_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in (stored.prefix + stored.name)  # only a prefix is kept in clear

    web.cookies.clear()  # a script has no cookie
    bearer = {"Authorization": f"Bearer {secret}"}
    me = web.get("/api/v1/me", headers=bearer)
    assert me.status_code == 200 and me.json()["username"] == "lead" and me.json()["role"] == "lead"
    assert web.get("/api/v1/lead/projects", headers=bearer).status_code == 200
    assert web.get("/api/v1/admin/users", headers=bearer).status_code == 403

    log_in(web, "lead")
    csrf = session_csrf(web)
    assert web.post(f"/account/tokens/{stored.id}/revoke", data={"csrf_token": csrf}).status_code == 200
    web.cookies.clear()
    assert web.get("/api/v1/me", headers=bearer).status_code == 401
    with sessions() as db:
        actions = list(db.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
    assert "api_token.create" in actions and "api_token.revoke" in actions


def test_a_token_needs_no_csrf_and_creates_projects_through_the_api(web, accounts, sessions):
    log_in(web, "lead")
    secret = _create(web)
    web.cookies.clear()
    schema = {"entity_types": [{"name": "Drug", "color": "#112233", "hotkey": "d"}]}
    response = web.post(
        "/api/v1/lead/projects",
        json={"name": "Meds", "label_schema": schema},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 201 and response.json()["name"] == "Meds"


def test_a_disabled_users_token_stops_working(web, accounts, sessions):
    log_in(web, "annotator")
    secret = _create(web)
    web.cookies.clear()
    set_active(sessions, "annotator", False)
    assert web.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_one_cannot_revoke_another_users_token(web, accounts, sessions):
    log_in(web, "lead")
    _create(web)
    with sessions() as db:
        token_id = db.scalar(select(ApiToken.id))
    web.cookies.clear()
    log_in(web, "annotator")
    csrf = session_csrf(web)
    assert web.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": csrf}).status_code == 404
    with sessions() as db:
        assert db.scalar(select(ApiToken.revoked_at)) is None


def test_garbage_bearer_tokens_are_refused(web, accounts):
    for value in ["Bearer nonsense", "Bearer cln_" + "x" * 43, "Bearer "]:
        assert web.get("/api/v1/me", headers={"Authorization": value}).status_code == 401


def test_the_api_has_an_openapi_schema(web):
    schema = web.get("/api/v1/openapi.json").json()
    assert {"/api/v1/me", "/api/v1/lead/projects", "/api/v1/admin/users"} <= set(schema["paths"])
