"""Every page of every role, checked as a new user first sees it (issue 20).

Chromium crawls the demo as the physician, the lead and the admin, following the links each page
offers; every page route of the app (read from the route table, so a new page cannot slip by) must be
reached by some role, and each page reached is checked at 1280x800:

- axe-core (vendored) finds no serious or critical violation;
- the page does not scroll sideways;
- nothing is written to the console as an error and no script fails;
- no request leaves the server (nothing from a CDN or the internet);
- every visible label sits beside (or right above) the control its `for=` names, and no other
  control is nearer to it: a form whose boxes sit one row off their labels makes a lead set the
  wrong number even though each `for=` is right, which axe cannot see.

The page check writes nothing: edits and time events the editor pages would send are answered here
in the browser and never reach the demo, which other tests share.
"""

import re
from collections import deque
from urllib.parse import urlsplit

import pytest
from axe_support import axe_violations, describe
from e2e_support import log_in
from starlette.routing import compile_path

from app.demo.seed import DEMO_LOGINS, DEMO_PROJECT
from app.web.app import create_app

VIEWPORT = {"width": 1280, "height": 800}
ROLES = ["dr.adams", "lead", "admin"]  # the physician first: each page is checked by the first who reaches it
PASSWORDS = {username: password for _, username, password in DEMO_LOGINS}

# GET routes that are not pages a person opens, and why.
NOT_PAGES = {
    "/annotate/next": "redirects to the next unfinished note",
    "/admin/audit/export": "a CSV download",
    "/lead/projects/{project_id}/dashboard.csv": "a CSV download",
    "/lead/projects/{project_id}/annotation.conf": "a brat configuration download",
    "/lead/exports/{export_id}/download": "a file download",
    "/lead/augmentation/{run_id}/export": "a file download",
    "/lead/studies/{study_id}/assignments.csv": "a CSV download",
}
# Fragments and data the pages fetch for themselves (checked as part of the page that shows them).
FRAGMENT = re.compile(r"/(spans|relations|concepts|version|comparison|exports|dashboard/section)$")
# The span editor has its own axe, zoom and overflow checks (test_editor_accessibility.py) on a dense
# note; the gold editor is the same page in gold mode and is checked here.
CHECKED_ELSEWHERE = {"/annotate/sets/{set_id}": "tests/e2e/test_editor_accessibility.py"}


def _page_routes() -> list[str]:
    from fastapi.routing import iter_route_contexts

    paths = set()
    for route in iter_route_contexts(create_app(None).routes):
        path = getattr(route, "path", "")
        if "GET" not in (getattr(route, "methods", None) or set()):
            continue
        if path.startswith(("/api", "/static", "/docs", "/openapi", "/redoc")) or path == "/login":
            continue
        if path in NOT_PAGES or path in CHECKED_ELSEWHERE or FRAGMENT.search(path):
            continue
        paths.add(path)
    return sorted(paths)


PAGE_ROUTES = _page_routes()
MATCHERS = [(template, compile_path(template)[0]) for template in PAGE_ROUTES]


def _template_of(path: str) -> str | None:
    for template, regex in MATCHERS:
        if regex.match(path):
            return template
    return None


# Each visible label against the visible controls: the one its `for=` names must be the nearest.
LABEL_CHECK = """
() => {
  const visible = (el) => { const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; };
  const controls = [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
    .filter(visible);
  const gap = (a, b) => { // distance between two boxes, 0 when they touch or overlap
    const dx = Math.max(0, a.left - b.right, b.left - a.right);
    const dy = Math.max(0, a.top - b.bottom, b.top - a.bottom);
    return Math.hypot(dx, dy); };
  const wrong = [];
  for (const label of document.querySelectorAll('label[for]')) {
    if (!visible(label)) continue;
    const own = document.getElementById(label.htmlFor);
    if (!own || !visible(own) || label.contains(own)) continue;
    const l = label.getBoundingClientRect(), o = own.getBoundingClientRect();
    const distance = gap(l, o);
    const nearer = controls.filter((c) => c !== own && !label.contains(c)
      && gap(l, c.getBoundingClientRect()) + 1 < distance);
    // Beside it (their rows overlap) or right under it (stacked), and nothing nearer.
    const beside = o.top < l.bottom && l.top < o.bottom;
    const under = o.top >= l.top && o.top - l.bottom < 24 && o.left < l.right + 8;
    if (nearer.length || !(beside || under)) {
      const other = nearer[0];
      wrong.push(`"${label.textContent.trim().slice(0, 40)}" names #${own.id}` +
        (other ? `, but ${other.id ? '#' + other.id : other.name || other.tagName} is nearer`
          : ', which is not beside or under it'));
    }
  }
  return wrong;
}
"""
EDITOR_WRITES = re.compile(r".*/(annotate/sets|lead/gold)/\d+/(edits|events)$")
OVERFLOW = "() => [document.documentElement.scrollWidth, window.innerWidth]"


# The links of a page, and where its GET forms (filters, comparisons) lead with what they hold.
LINKS = """
() => [...document.querySelectorAll('a[href]:not([download])')].map((a) => a.getAttribute('href')).concat(
  [...document.querySelectorAll('form')]
    .filter((f) => (f.getAttribute('method') || 'get').toLowerCase() === 'get')
    .map((f) => `${f.getAttribute('action') || location.pathname}?${new URLSearchParams(new FormData(f))}`))
"""


LOOKS_PER_KIND = 2


def _demo_project_path(page) -> str | None:
    """/lead/projects/ID of the demo project, when this user's pages list it."""
    page.goto("/lead")
    rows = page.locator("[data-testid=project-row]").filter(has_text=DEMO_PROJECT)
    if rows.count() == 0:
        return None
    return rows.first.locator("a").first.get_attribute("href")


def _links(page) -> list[str]:
    hrefs = page.evaluate(LINKS)
    found = []
    for href in hrefs:
        parts = urlsplit(href)
        if parts.scheme or parts.netloc or not parts.path.startswith("/"):
            continue
        found.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    return found


def _check(page, url: str, problems: list[str]) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    response = page.goto(url)
    page.wait_for_load_state("networkidle")
    if response is None or not response.ok:
        problems.append(f"{url}: HTTP {response.status if response else 'no answer'}")
        return []
    width, window = page.evaluate(OVERFLOW)
    if width > window + 1:
        problems.append(f"{url}: {width} px wide in a {window} px window (scrolls sideways)")
    for wrong in page.evaluate(LABEL_CHECK):
        problems.append(f"{url}: label {wrong}")
    violations = axe_violations(page)
    if violations:
        problems.append(f"{url}: axe: {describe(violations)}")
    for error in errors:
        problems.append(f"{url}: console error: {error[:200]}")
    return _links(page)


@pytest.fixture
def crawl(browser, demo_server):
    contexts = []
    origin = f"{urlsplit(demo_server).scheme}://{urlsplit(demo_server).netloc}"

    def open_as(username: str, foreign: list[str]):
        context = browser.new_context(base_url=demo_server, bypass_csp=True, viewport=VIEWPORT)
        context.set_default_timeout(15_000)
        context.on(
            "request",
            lambda r: None if r.url.startswith(("data:", "blob:", origin)) else foreign.append(r.url),
        )
        # The editor pages' writes (edits, time events) are answered here; the shared demo stays as it is.
        context.route(EDITOR_WRITES, lambda route: route.fulfill(status=204))
        contexts.append(context)
        page = context.new_page()
        log_in(page, username, PASSWORDS[username])
        return page

    yield open_as
    for context in contexts:
        context.close()


def test_every_page_of_every_role_passes_the_page_check(crawl):
    problems: list[str] = []
    foreign: list[str] = []
    reached: dict[str, str] = {}  # route template -> the first URL of it checked
    looked: dict[str, int] = {}  # route template -> pages of it opened (checked, or read for links)
    for username in ROLES:
        page = crawl(username, foreign)
        # Other tests add projects to the shared demo: the demo project's pages go first, as they
        # hold everything (runs, gold, augmentation); a few pages of each kind are read for links.
        home = urlsplit(page.url).path
        demo = _demo_project_path(page) if home == "/lead" or username == "admin" else None
        queue = deque([home])
        seen_here: set[str] = set()
        while queue:
            url = queue.popleft()
            template = _template_of(urlsplit(url).path)
            if url in seen_here or template is None or looked.get(template, 0) >= LOOKS_PER_KIND:
                continue
            seen_here.add(url)
            looked[template] = looked.get(template, 0) + 1
            fresh = page.context.new_page()
            try:
                if template in reached:
                    fresh.goto(url)
                    links = _links(fresh)  # another page of a kind already checked: only its links
                else:
                    reached[template] = url
                    links = _check(fresh, url, problems)
            finally:
                fresh.close()
            for link in links:
                if demo and link.startswith(demo):
                    queue.appendleft(link)
                else:
                    queue.append(link)
    problems.extend(f"a request left the server: {url}" for url in foreign)
    missing = [template for template in PAGE_ROUTES if template not in reached]
    if missing:
        problems.append(
            "pages no role reached from the demo's links (give the demo one, or list them in NOT_PAGES"
            f" with the reason): {missing}"
        )
    assert not problems, f"{len(problems)} problem(s) on {len(reached)} pages:\n" + "\n".join(problems)
