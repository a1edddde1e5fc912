"""Every state-changing browser request must carry its CSRF token, forms and htmx alike."""

from sqlalchemy import func, select

from app.db.models import ApiToken, User
from tests.conftest import log_in, page, session_csrf


def _count(sessions, model):
    with sessions() as db:
        return db.scalar(select(func.count()).select_from(model))


def test_post_without_token_is_refused_and_changes_nothing(web, accounts, sessions):
    log_in(web, "admin")
    before = _count(sessions, User)
    response = web.post(
        "/admin/users", data={"username": "intruder", "password": "long-enough-pw", "role": "admin"}
    )
    assert response.status_code == 403
    assert "did not come from clinann" in page(response).select_one("[data-testid=error-page]").text
    assert _count(sessions, User) == before


def test_post_with_a_wrong_token_is_refused(web, accounts, sessions):
    log_in(web, "admin")
    response = web.post("/account/tokens", data={"name": "x", "csrf_token": "forged"})
    assert response.status_code == 403
    assert _count(sessions, ApiToken) == 0


def test_form_field_and_htmx_header_are_both_accepted(web, accounts, sessions):
    log_in(web, "admin")
    token = session_csrf(web)
    assert web.post("/account/tokens", data={"name": "by form", "csrf_token": token}).status_code == 200
    htmx = web.post(
        "/account/tokens", data={"name": "by htmx"}, headers={"X-CSRF-Token": token, "HX-Request": "true"}
    )
    assert htmx.status_code == 200
    # htmx gets only the named block, not the whole page
    assert page(htmx).select_one("#token-list") is not None and "<html" not in htmx.text
    assert _count(sessions, ApiToken) == 2


def test_the_page_puts_the_token_in_hx_headers(web, accounts):
    log_in(web, "admin")
    body = page(web.get("/admin")).body
    import json

    assert json.loads(body["hx-headers"])["X-CSRF-Token"] == session_csrf(web)


def test_login_form_needs_its_token_too(web, accounts, sessions):
    web.get("/login")
    response = web.post("/login", data={"username": "admin", "password": "admin-password"})
    assert response.status_code == 403
    assert "clinann_session" not in response.cookies


def test_a_token_of_another_session_does_not_work(web, runtime, accounts, clock):
    from fastapi.testclient import TestClient

    from app.web.app import create_app

    log_in(web, "admin")
    other_token = session_csrf(web)
    with TestClient(create_app(runtime, clock=clock), follow_redirects=False) as other:
        log_in(other, "lead")
        assert other.post("/account/tokens", data={"name": "x", "csrf_token": other_token}).status_code == 403
