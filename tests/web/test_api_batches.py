"""The JSON API for uploads and exports, with a personal token, and who may use it."""

import io
import json
import zipfile

from app.demo.seed import MEDICATION_SCHEMA
from app.services.projects import create_project
from tests.conftest import log_in, page, session_csrf


def _token(web, role: str) -> str:
    log_in(web, role)
    response = web.post("/account/tokens", data={"name": "script", "csrf_token": session_csrf(web)})
    secret = page(response).select_one("[data-testid=new-token]").text
    web.cookies.clear()
    return secret


def test_upload_and_export_through_the_api(web, accounts, sessions):
    project = create_project(sessions, "API", MEDICATION_SCHEMA)
    bearer = {"Authorization": f"Bearer {_token(web, 'admin')}"}
    files = [
        ("files", ("n1.txt", b"Metformin 500 mg BID.\r\n", "text/plain")),
        ("files", ("n1.ann", b"T1\tDrug 0 9\tMetformin\n", "text/plain")),
    ]
    response = web.post(
        "/api/v1/admin/batches",
        headers=bearer,
        files=files,
        data={"project_id": str(project.id), "layer": "gold"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted" and response.json()["stored"] == 1
    exported = web.get(
        f"/api/v1/lead/projects/{project.id}/export",
        params={"format": "brat", "layer": "gold"},
        headers=bearer,
    )
    assert exported.status_code == 200
    assert 'filename="API-gold.zip"' in exported.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(exported.content))
    assert archive.read("n1.txt") == b"Metformin 500 mg BID.\r\n"
    assert archive.read("n1.ann").decode() == "T1\tDrug 0 9\tMetformin\n"
    assert "Strength-Drug" in archive.read("annotation.conf").decode()
    lines = web.get(f"/api/v1/lead/projects/{project.id}/export", params={"format": "jsonl"}, headers=bearer)
    [document] = [json.loads(line) for line in lines.text.splitlines()]
    assert document["layers"][0]["layer"] == "gold" and document["layers"][0]["spans"][0]["label"] == "Drug"


def test_a_refused_upload_says_why_and_an_annotator_cannot_export(web, accounts, sessions):
    project = create_project(sessions, "API", MEDICATION_SCHEMA)
    admin = {"Authorization": f"Bearer {_token(web, 'admin')}"}
    refused = web.post(
        "/api/v1/admin/batches",
        headers=admin,
        data={"project_id": str(project.id)},
        files=[("files", ("bad.txt", b"\xff\xfeoops", "text/plain"))],
    )
    assert refused.status_code == 422 and refused.json()["problems"] == [
        "bad.txt, line 1: invalid UTF-8 at byte 0"
    ]
    annotator = {"Authorization": f"Bearer {_token(web, 'annotator')}"}
    assert web.get(f"/api/v1/lead/projects/{project.id}/export", headers=annotator).status_code == 403
    assert (
        web.post(
            "/api/v1/admin/batches",
            headers=annotator,
            data={"project_id": str(project.id)},
            files=[("files", ("n.txt", b"text", "text/plain"))],
        ).status_code
        == 403
    )
    bad_format = web.get(
        f"/api/v1/lead/projects/{project.id}/export", params={"format": "docx"}, headers=admin
    )
    assert bad_format.status_code == 422 and bad_format.json()["detail"].startswith("format:")
