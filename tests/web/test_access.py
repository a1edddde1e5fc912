"""Roles are enforced on the server, on every page and API route of a role's router."""

import pytest

from tests.conftest import log_in

PAGES = {"annotator": ["/annotate"], "lead": ["/lead"], "admin": ["/admin"]}
API = {
    "annotator": ["/api/v1/annotate/queue"],
    "lead": ["/api/v1/lead/projects"],
    "admin": ["/api/v1/admin/users"],
}
# role -> which routers it may use (admins may look at lead pages)
ALLOWED = {"annotator": {"annotator"}, "lead": {"lead"}, "admin": {"admin", "lead"}}


@pytest.mark.parametrize("role", ["annotator", "lead", "admin"])
def test_role_matrix_for_pages_and_api(web, accounts, role):
    log_in(web, role)
    for router_role, paths in PAGES.items():
        for path in paths:
            expected = 200 if router_role in ALLOWED[role] else 403
            assert web.get(path).status_code == expected, (role, path)
    for router_role, paths in API.items():
        for path in paths:
            response = web.get(path)
            expected = 200 if router_role in ALLOWED[role] else 403
            assert response.status_code == expected, (role, path)
            assert response.headers["content-type"].startswith("application/json")


def test_forbidden_post_to_admin_changes_nothing(web, accounts, sessions):
    from app.services.users import list_users
    from tests.conftest import session_csrf

    log_in(web, "lead")
    token = session_csrf(web)
    response = web.post(
        "/admin/users",
        data={"username": "x2", "password": "long-enough", "role": "admin", "csrf_token": token},
    )
    assert response.status_code == 403
    assert "x2" not in [u.username for u in list_users(sessions)]


def test_anonymous_requests_go_to_login_or_get_401(web, accounts):
    for path in ["/annotate", "/lead", "/admin", "/account/tokens"]:
        response = web.get(path)
        assert response.status_code == 303 and response.headers["location"] == f"/login?next={path}"
    for path in ["/api/v1/me", "/api/v1/admin/users"]:
        assert web.get(path).status_code == 401


def test_role_change_takes_effect_on_the_next_request(web, accounts, sessions):
    from app.services.users import set_role

    log_in(web, "annotator")
    assert web.get("/lead").status_code == 403
    set_role(sessions, "annotator", "lead")
    assert web.get("/lead").status_code == 200


def test_home_redirects_to_the_role_home(web, accounts):
    for role, home in [("annotator", "/annotate"), ("lead", "/lead"), ("admin", "/admin")]:
        web.cookies.clear()
        log_in(web, role)
        assert web.get("/").headers["location"] == home
