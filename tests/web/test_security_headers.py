"""Security headers on every kind of answer, and pages that run no inline script (so the CSP can
forbid it): HSTS only over TLS."""

import re
from pathlib import Path

import pytest

from app.web.app import CONTENT_SECURITY_POLICY, HSTS
from tests.conftest import PASSWORDS, log_in

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def directives(policy: str) -> dict[str, str]:
    return {part.split()[0]: " ".join(part.split()[1:]) for part in policy.split(";") if part.strip()}


@pytest.mark.parametrize(
    "path", ["/login", "/lead", "/does-not-exist", "/api/v1/lead/projects", "/static/js/editor.js"]
)
def test_every_answer_carries_the_security_headers(web, accounts, path):
    log_in(web, "lead", PASSWORDS["lead"])
    response = web.get(path)
    policy = directives(response.headers["content-security-policy"])
    assert policy["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval', no other origin
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    assert policy["default-src"] == "'self'" and policy["base-uri"] == "'none'"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "strict-transport-security" not in response.headers  # plain HTTP: HSTS would mean nothing


def test_hsts_is_sent_over_tls(runtime, sessions, clock, accounts):
    from fastapi.testclient import TestClient

    from app.web.app import create_app

    with TestClient(create_app(runtime, clock=clock), base_url="https://clinann.example") as client:
        response = client.get("/login")
    assert response.headers["strict-transport-security"] == HSTS
    assert "max-age=31536000" in HSTS


def test_the_policy_allows_no_inline_script_and_no_template_needs_one():
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY and "unsafe-eval" not in CONTENT_SECURITY_POLICY
    inline_handler = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)
    for template in TEMPLATES.rglob("*.html"):
        source = template.read_text()
        for tag in re.findall(r"<script\b[^>]*>", source):
            # Only scripts from /static, or JSON data blocks the browser never runs.
            assert "src=" in tag or 'type="application/json"' in tag, f"{template.name}: inline script {tag}"
        handlers = inline_handler.findall(source)
        assert not handlers, f"{template.name}: inline event handler {handlers[0]}"  # the CSP would block it
