"""Pages load everything from the clinann server itself: nothing from a CDN or the internet.

Clinical sites often run without internet access, and a request to a third party would leak
which pages a physician opens. Every request a page makes must go to the demo server's origin.
"""

import fnmatch
from urllib.parse import urlsplit

import pytest
from bs4 import BeautifulSoup
from e2e_support import log_in
from playwright.sync_api import expect

from app.demo.seed import DEMO_LOGINS

HTMX_PATTERN = "/static/js/htmx-*.min.js"
ERROR_PAGE = "/no-such-page"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Recorder:
    """Every request and response of one browser context."""

    def __init__(self, context) -> None:
        self.requests = []  # (resource type, url)
        self.responses = []  # (url, status)
        self.failed = []  # (url, failure)
        context.on("request", lambda r: self.requests.append((r.resource_type, r.url)))
        context.on("response", lambda r: self.responses.append((r.url, r.status)))
        context.on("requestfailed", lambda r: self.failed.append((r.url, r.failure)))

    def foreign(self, origin: str) -> list[tuple[str, str]]:
        return [
            (kind, url)
            for kind, url in self.requests
            if not url.startswith("data:") and _origin(url) != origin
        ]

    def htmx_statuses(self) -> list[int]:
        return [status for url, status in self.responses if fnmatch.fnmatch(urlsplit(url).path, HTMX_PATTERN)]


def _check_page(page, origin: str, path: str, expected_status: int | None = None) -> None:
    response = page.goto(path)
    page.wait_for_load_state("networkidle")
    assert response is not None
    if expected_status is not None:
        assert response.status == expected_status, f"{path}: HTTP {response.status}"
    else:
        assert response.ok, f"{path}: HTTP {response.status}"
    assert _origin(page.url) == origin, f"{path} ended on {page.url}"

    soup = BeautifulSoup(page.content(), "html.parser")
    references = (
        [("script", tag["src"]) for tag in soup.find_all("script", src=True)]
        + [("link", tag["href"]) for tag in soup.find_all("link", href=True)]
        + [("img", tag["src"]) for tag in soup.find_all("img", src=True)]
    )
    assert references, f"{path}: no scripts, styles or images at all?"
    bad = [(tag, ref) for tag, ref in references if not ref.startswith("/static/")]
    assert not bad, f"{path} references assets outside /static/: {bad}"
    assert any(fnmatch.fnmatch(ref, HTMX_PATTERN) for tag, ref in references if tag == "script"), (
        f"{path} does not load the vendored htmx"
    )

    page.wait_for_function("() => typeof window.htmx !== 'undefined'", timeout=5_000)
    assert page.evaluate("() => typeof window.htmx.process") == "function"


def _assert_all_local(recorder: Recorder, origin: str) -> None:
    assert recorder.requests, "no requests were recorded"
    foreign = recorder.foreign(origin)
    assert not foreign, f"requests left the demo server ({origin}): {foreign}"
    statuses = recorder.htmx_statuses()
    assert 200 in statuses, f"htmx was not served with 200 (statuses: {statuses})"
    broken = [
        (url, status)
        for url, status in recorder.responses
        if urlsplit(url).path.startswith("/static/") and status >= 400
    ]
    assert not broken, f"static files failed: {broken}"
    assert not recorder.failed, f"requests failed: {recorder.failed}"


def test_logged_out_pages_are_self_contained(browser, demo_server):
    context = browser.new_context(base_url=demo_server)
    try:
        recorder = Recorder(context)
        page = context.new_page()
        _check_page(page, demo_server, "/login")
        expect(page.get_by_test_id("login-form")).to_be_visible()
        _check_page(page, demo_server, ERROR_PAGE, expected_status=404)
        expect(page.get_by_test_id("error-page")).to_be_visible()
        _assert_all_local(recorder, demo_server)
    finally:
        context.close()


# One login of each role: the three demo physicians see the same pages (the page check,
# test_page_check.py, visits every page of each role too).
ONE_PER_ROLE = list(
    {role: (role, username, password) for role, username, password in reversed(DEMO_LOGINS)}.values()
)


@pytest.mark.parametrize(
    ("role", "username", "password"), ONE_PER_ROLE, ids=[username for _, username, _ in ONE_PER_ROLE]
)
def test_every_nav_page_is_self_contained(browser, demo_server, role, username, password):
    context = browser.new_context(base_url=demo_server)
    try:
        recorder = Recorder(context)
        page = context.new_page()
        log_in(page, username, password)
        expect(page.get_by_test_id("whoami")).to_be_visible()

        nav = page.locator("nav[aria-label=Main] a")
        targets = nav.evaluate_all("links => links.map(a => a.getAttribute('href'))")
        assert targets, f"{username} sees no navigation"
        assert all(t.startswith("/") and not t.startswith("//") for t in targets), targets
        expected = {
            "annotator": {"/annotate", "/account/tokens", "/account/password"},
            "lead": {"/lead", "/account/tokens", "/account/password"},
            "admin": {
                "/lead",
                "/admin",
                "/admin/users",
                "/admin/batches",
                "/admin/endpoints",
                "/admin/vocabularies",
                "/account/tokens",
                "/account/password",
            },
        }[role]
        assert set(targets) == expected

        for path in ["/", *targets]:
            _check_page(page, demo_server, path)
            expect(page.get_by_test_id("whoami")).to_be_visible()
        # /login while logged in sends the user home; the error pages use the same layout.
        _check_page(page, demo_server, "/login")
        _check_page(page, demo_server, ERROR_PAGE, expected_status=404)
        expect(page.get_by_test_id("error-page")).to_be_visible()
        if role == "annotator":
            _check_page(page, demo_server, "/admin", expected_status=403)
            expect(page.get_by_test_id("error-page")).to_be_visible()

        _assert_all_local(recorder, demo_server)
    finally:
        context.close()


def test_the_api_reference_works_offline(browser, demo_server):
    """/api/docs is Swagger UI from static/: FastAPI's own page loads it from a CDN, which our CSP
    blocks and which an offline site cannot reach. Every request stays on the server, the page
    breaks no CSP rule, and the operations are listed."""
    context = browser.new_context(base_url=demo_server)
    try:
        recorder = Recorder(context)
        page = context.new_page()
        console = []
        page.on("console", lambda message: console.append((message.type, message.text)))
        response = page.goto("/api/docs")
        assert response is not None and response.ok
        expect(page.locator(".opblock-summary-path").first).to_be_visible(timeout=10_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert any(path.startswith("/api/v1/") for path in paths), paths[:5]
        page.wait_for_load_state("networkidle")
        assert recorder.requests, "no requests were recorded"
        assert not recorder.foreign(demo_server), recorder.foreign(demo_server)
        requested = {urlsplit(url).path for _, url in recorder.requests}
        assert "/api/v1/openapi.json" in requested
        assert any(path.startswith("/static/swagger-ui-") for path in requested), requested
        assert not recorder.failed, recorder.failed
        violations = [text for kind, text in console if "Content Security Policy" in text]
        assert not violations, violations
        assert not [text for kind, text in console if kind == "error"], console
    finally:
        context.close()
