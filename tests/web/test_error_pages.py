"""Error pages: 403, 404 and 500 are pages of ours, with no stack trace and no note text."""

import logging

import pytest
from fastapi.testclient import TestClient

from app.web.app import create_app
from tests.conftest import log_in, page

NOTE_TEXT = "Patient with metastatic melanoma started on pembrolizumab 200 mg IV"


def _assert_clean(response):
    body = response.text
    for leak in ("Traceback", 'File "', "pembrolizumab", "melanoma", "ValueError", "site-packages"):
        assert leak not in body


def test_404_page(web, accounts):
    log_in(web, "lead")
    response = web.get("/no/such/page")
    assert response.status_code == 404
    assert page(response).select_one("#error-title").text == "Not found"
    _assert_clean(response)


def test_403_page(web, accounts):
    log_in(web, "annotator")
    response = web.get("/admin")
    assert response.status_code == 403
    assert page(response).select_one("#error-title").text == "Not allowed"
    _assert_clean(response)


@pytest.mark.parametrize("path,json", [("/boom", False), ("/api/v1/boom", True)])
def test_500_hides_the_error_and_logs_no_note_text(runtime, sessions, clock, caplog, path, json):
    app = create_app(runtime, clock=clock)

    def boom():
        raise ValueError(f"could not parse: {NOTE_TEXT}")

    app.add_api_route(path, boom)
    caplog.set_level(logging.DEBUG)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get(path)
    assert response.status_code == 500
    _assert_clean(response)
    if json:
        assert response.json()["detail"] == "Internal error"
        reference = response.json()["reference"]
    else:
        reference = page(response).select_one("[data-testid=error-reference]").text
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert reference in logged and "ValueError" in logged
    assert "pembrolizumab" not in logged and "melanoma" not in logged


def test_validation_errors_name_fields_without_echoing_values(web, accounts):
    log_in(web, "lead")
    from tests.conftest import session_csrf

    csrf = session_csrf(web)
    response = web.post(
        "/api/v1/lead/projects", json={"name": NOTE_TEXT, "label_schema": "x"}, headers={"X-CSRF-Token": csrf}
    )
    assert response.status_code == 422
    assert "pembrolizumab" not in response.text
    assert ["body", "label_schema"] in [d["loc"] for d in response.json()["detail"]]
