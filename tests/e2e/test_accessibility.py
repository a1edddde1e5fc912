"""No serious or critical axe-core violations on the login page and each role's home page.

Each page is checked at 1280x800 and at 200% browser zoom. 200% zoom halves the CSS viewport, so it
is a 640x400 viewport drawn at device_scale_factor 2: media queries, wrapping and overflow behave
as they do for a physician who zooms in (WCAG 1.4.4 and 1.4.10).

The span editor (/annotate/sets/ID) has its own test; axe_support.axe_violations is the helper.
"""

import re

import pytest
from axe_support import AxeNotLoaded, axe_violations, describe
from e2e_support import log_in
from playwright.sync_api import expect

from app.demo.seed import DEMO_LOGINS

VIEWPORTS = {
    "1280x800": {"viewport": {"width": 1280, "height": 800}, "device_scale_factor": 1},
    "zoom200": {"viewport": {"width": 640, "height": 400}, "device_scale_factor": 2},
}
PASSWORDS = {username: password for _, username, password in DEMO_LOGINS}

# (name, demo login or None, path, test id of what the page must show before axe runs)
PAGES = [
    ("login", None, "/login", "login-form"),
    ("annotator-queue", "dr.adams", "/annotate", "queue"),
    ("lead-home", "lead", "/lead", "projects"),
    ("admin-home", "admin", "/admin", "users"),
]
LEFT_OUT: set[tuple[str, str]] = set()  # none: the top bar wraps at 640 CSS px
CASES = [
    pytest.param(page, viewport, id=f"{page[0]}-{viewport}")
    for page in PAGES
    for viewport in VIEWPORTS
    if (page[0], viewport) not in LEFT_OUT
]


@pytest.fixture
def axe_context(request, browser, demo_server):
    """A browser context at the viewport named by the test's `viewport` parameter, CSP lifted so
    that axe-core can be injected (see axe_support)."""
    context = browser.new_context(base_url=demo_server, bypass_csp=True, **VIEWPORTS[request.param])
    context.set_default_timeout(10_000)
    try:
        yield context
    finally:
        context.close()


def _path_is(path: str):
    return re.compile(rf"^https?://[^/]+{re.escape(path)}(\?.*)?$")


@pytest.mark.parametrize(("target", "axe_context"), CASES, indirect=["axe_context"])
def test_no_serious_or_critical_axe_violations(axe_context, target):
    name, username, path, landmark = target
    page = axe_context.new_page()
    if username is not None:
        log_in(page, username, PASSWORDS[username])
    page.goto(path)
    expect(page).to_have_url(_path_is(path))
    expect(page.get_by_test_id(landmark)).to_be_visible()
    page.wait_for_load_state("networkidle")

    violations = axe_violations(page)

    assert not violations, f"{name} at {page.viewport_size}: {describe(violations)}"


@pytest.mark.parametrize("axe_context", list(VIEWPORTS), indirect=True)
def test_login_error_has_no_serious_or_critical_axe_violations(axe_context):
    page = axe_context.new_page()
    log_in(page, DEMO_LOGINS[0][1], "not-the-password")
    expect(page.get_by_test_id("login-error")).to_be_visible()

    violations = axe_violations(page)

    assert not violations, f"login error at {page.viewport_size}: {describe(violations)}"


@pytest.mark.parametrize("axe_context", ["1280x800"], indirect=True)
def test_helper_reports_a_planted_violation(axe_context):
    """The check can fail: an unlabelled input and an image without alt are found and described."""
    page = axe_context.new_page()
    page.goto("/login")
    page.evaluate(
        """() => {
          const main = document.querySelector('main');
          const input = document.createElement('input');
          input.id = 'planted-input';
          const img = document.createElement('img');
          img.id = 'planted-img';
          img.src = '/static/favicon.svg';
          main.append(input, img);
        }"""
    )

    violations = axe_violations(page)
    by_id = {v["id"]: v for v in violations}

    assert {"label", "image-alt"} <= set(by_id), describe(violations)
    assert by_id["label"]["impact"] == "critical"
    assert ["#planted-input"] in [node["target"] for node in by_id["label"]["nodes"]]
    assert "planted-img" in by_id["image-alt"]["nodes"][0]["html"]
    assert "#planted-input" in describe(violations)
    assert {v["impact"] for v in violations} <= {"serious", "critical"}
    assert "label" not in {v["id"] for v in axe_violations(page, impacts=("serious",))}
    with pytest.raises(ValueError, match="unknown axe impacts"):
        axe_violations(page, impacts=("severe",))
    assert not axe_violations(page, context="header"), "the planted elements are in <main>"


def test_helper_explains_a_csp_that_blocks_it(browser, demo_server):
    context = browser.new_context(base_url=demo_server)  # the app's CSP in force
    try:
        page = context.new_page()
        page.goto("/login")
        with pytest.raises(AxeNotLoaded, match="bypass_csp=True"):
            axe_violations(page)
    finally:
        context.close()
