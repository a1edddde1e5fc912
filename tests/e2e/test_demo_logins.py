"""Each demo login lands on its role's home page in a real browser; errors and logout work."""

import re

import pytest
from e2e_support import log_in
from playwright.sync_api import expect

from app.demo.seed import DEMO_LOGINS, DEMO_PROJECT, DISPLAY_NAMES
from app.demo.simulated import SIMULATED_ACCOUNTS

HOME = {"admin": "/admin", "lead": "/lead", "annotator": "/annotate"}


def _path_is(path: str):
    return re.compile(rf"^https?://[^/]+{re.escape(path)}(\?.*)?$")


@pytest.mark.parametrize(
    ("role", "username", "password"), DEMO_LOGINS, ids=[username for _, username, _ in DEMO_LOGINS]
)
def test_demo_login_lands_on_role_home(page, role, username, password):
    log_in(page, username, password)

    expect(page).to_have_url(_path_is(HOME[role]))
    expect(page.get_by_test_id("whoami")).to_have_text(DISPLAY_NAMES[username])
    if role == "annotator":
        expect(page.get_by_test_id("queue")).to_be_visible()
        assert page.get_by_test_id("queue-item").count() >= 1
    elif role == "lead":
        projects = page.get_by_test_id("projects")
        expect(projects).to_be_visible()
        expect(projects.get_by_test_id("project-row").filter(has_text=DEMO_PROJECT)).to_have_count(1)
    else:
        expect(page.get_by_test_id("users")).to_be_visible()
        # The demo's logins and the simulated physicians of its finished study (disabled, listed too).
        expected = len(DEMO_LOGINS) + len(SIMULATED_ACCOUNTS)
        expect(page.get_by_test_id("users").get_by_test_id("user-row")).to_have_count(expected)


def test_wrong_password_shows_error_and_stays_on_login(page):
    _, username, _ = DEMO_LOGINS[0]
    log_in(page, username, "not-the-password")

    expect(page).to_have_url(_path_is("/login"))
    expect(page.get_by_test_id("login-error")).to_be_visible()
    expect(page.get_by_test_id("whoami")).to_have_count(0)


def test_logout_returns_to_login_and_ends_the_session(page):
    _, username, password = next(login for login in DEMO_LOGINS if login[0] == "annotator")
    log_in(page, username, password)
    expect(page).to_have_url(_path_is("/annotate"))

    with page.expect_navigation():
        page.get_by_test_id("logout").click()
    expect(page).to_have_url(_path_is("/login"))
    expect(page.get_by_test_id("login-form")).to_be_visible()

    page.goto("/annotate")
    expect(page).to_have_url(_path_is("/login"))
    expect(page.get_by_test_id("whoami")).to_have_count(0)
