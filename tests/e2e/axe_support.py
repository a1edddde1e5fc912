"""Accessibility checks with axe-core, vendored under tests/vendor/axe-core/ (never fetched at test time).

Usage, in a test that already has a Playwright page showing what it wants checked::

    from axe_support import axe_violations, describe

    violations = axe_violations(page)  # serious and critical ones, whole document
    assert not violations, describe(violations)

    axe_violations(page, impacts=("moderate", "serious", "critical"), context="#main")
    axe_violations(page, context={"include": ["main"], "exclude": [[".ruler"]]})

The page's browser context must be created with ``bypass_csp=True``: clinann's
Content-Security-Policy (``script-src 'self'``, app/web/app.py) blocks the inline ``<script>`` that
``page.add_script_tag(content=...)`` adds, and :func:`axe_violations` raises :class:`AxeNotLoaded`
when axe is not there after the injection. clinann's pages carry no inline scripts or ``style``
attributes for the CSP to block, so lifting it changes nothing that axe looks at::

    context = browser.new_context(base_url=demo_server, bypass_csp=True)

Run it on a settled page (after ``page.wait_for_load_state("networkidle")`` or an ``expect`` on what
htmx swaps in): axe reads the DOM and the computed styles as they are when it runs.
"""

import functools
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError

AXE_DIR = Path(__file__).resolve().parents[1] / "vendor" / "axe-core"
AXE_SCRIPT = AXE_DIR / "axe.min.js"
IMPACTS = ("minor", "moderate", "serious", "critical")
NODES_SHOWN = 5  # nodes kept per violation
HTML_CHARS = 300  # of each node's outerHTML

_HAS_AXE = "() => typeof window.axe === 'object' && typeof window.axe.run === 'function'"

# axe.run resolves to {violations: [...]}; keep what a failure message needs, as plain JSON.
_RUN = """
async ([context, nodesShown, htmlChars]) => {
  const results = await window.axe.run(context === null ? document : context,
                                       {resultTypes: ['violations']});
  return results.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    helpUrl: v.helpUrl,
    node_count: v.nodes.length,
    nodes: v.nodes.slice(0, nodesShown).map((n) => ({
      target: n.target,
      html: n.html.length > htmlChars ? n.html.slice(0, htmlChars) + '…' : n.html,
      summary: n.failureSummary || '',
    })),
  }));
}
"""


class AxeNotLoaded(RuntimeError):
    """The vendored axe-core could not be injected into the page."""


@functools.cache
def axe_source() -> str:
    return AXE_SCRIPT.read_text(encoding="utf-8")


def inject_axe(page) -> None:
    """Add axe-core to the page's current document (once; a navigation drops it)."""
    if page.evaluate(_HAS_AXE):
        return
    hint = (
        "the page's Content-Security-Policy most likely blocks inline scripts: create the browser "
        "context with bypass_csp=True, e.g. browser.new_context(base_url=..., bypass_csp=True)"
    )
    try:
        page.add_script_tag(content=axe_source())
    except PlaywrightError as error:
        raise AxeNotLoaded(f"could not inject axe-core ({AXE_SCRIPT}) into {page.url}: {hint}") from error
    if not page.evaluate(_HAS_AXE):
        raise AxeNotLoaded(f"axe-core ({AXE_SCRIPT}) is not defined on {page.url} after injection: {hint}")


def axe_violations(page, *, impacts=("serious", "critical"), context=None) -> list[dict]:
    """Run axe-core on ``page`` and return its violations whose impact is in ``impacts``.

    ``context`` is what axe.run takes as its context (a CSS selector, or a dict such as
    ``{"include": [...], "exclude": [...]}``); None checks the whole document. Each violation is
    ``{"id", "impact", "help", "helpUrl", "node_count", "nodes": [{"target", "html", "summary"}]}``
    with at most NODES_SHOWN nodes, each node's HTML cut to HTML_CHARS characters.
    """
    unknown = set(impacts) - set(IMPACTS)
    if unknown:
        raise ValueError(f"unknown axe impacts {sorted(unknown)}; axe knows {IMPACTS}")
    inject_axe(page)
    violations = page.evaluate(_RUN, [context, NODES_SHOWN, HTML_CHARS])
    return [v for v in violations if v["impact"] in impacts]


def describe(violations: list[dict]) -> str:
    """A readable list of violations, for an assertion message."""
    if not violations:
        return "no axe violations"
    lines = [f"{len(violations)} axe violation(s):"]
    for v in violations:
        lines.append(f"- {v['id']} [{v['impact']}] {v['help']} ({v['node_count']} node(s)) {v['helpUrl']}")
        for node in v["nodes"]:
            lines.append(f"    target {' '.join(map(str, node['target']))}")
            lines.append(f"      html {node['html']}")
            for summary_line in node["summary"].splitlines():
                lines.append(f"           {summary_line}")
        hidden = v["node_count"] - len(v["nodes"])
        if hidden > 0:
            lines.append(f"    … and {hidden} more node(s)")
    return "\n".join(lines)
