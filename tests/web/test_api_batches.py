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


PHI = "Patient: John Smith, MRN 12345678, seen 03/04/2019"
WORDS = "the name and record number are invented for this test"


def test_a_held_batch_through_the_api_report_decisions_and_a_confirmed_reject(web, accounts, sessions):
    from sqlalchemy import func, select

    from app.db.models import AuditEvent, Batch, Document

    project = create_project(sessions, "API", MEDICATION_SCHEMA)
    admin = {"Authorization": f"Bearer {_token(web, 'admin')}"}

    def upload(files):
        return web.post(
            "/api/v1/admin/batches",
            headers=admin,
            data={"project_id": str(project.id)},
            files=[("files", (name, text.encode(), "text/plain")) for name, text in files],
        )

    held = upload(
        [("n1.txt", PHI), ("n2.txt", "Aspirin 81 mg."), ("n3.txt", PHI.replace("John", "Jack"))]
    ).json()
    assert held["status"] == "held"
    batch = f"/api/v1/admin/batches/{held['batch_id']}"
    report = web.get(batch, headers=admin).json()
    assert (report["status"], report["documents"], report["undecided"]) == ("held", 3, 2)
    assert [n["note"] for n in report["flagged"]] == ["n1", "n3"]
    assert report["flagged"][0]["hits"] == {"person_name": 1, "id_number": 1, "date": 1}
    assert "John" not in json.dumps(report)  # kinds and counts, never the text

    bad = web.post(f"{batch}/notes", headers=admin, json={"note": "n1", "decision": "mask", "reason": "x"})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("reason:")
    masked = web.post(
        f"{batch}/notes", headers=admin, json={"note": "n1", "decision": "mask", "reason": WORDS}
    )
    assert masked.status_code == 200
    assert masked.json() == {"note": "n1", "decision": "mask", "undecided": 1, "remaining_hits": 0}
    assert web.get(batch, headers=admin).json()["flagged"][0]["decision"] == "mask"

    # Rejecting erases the notes: refused without {"confirm": true}, naming the field and the count.
    for body in (None, {}, {"confirm": False}):
        refused = web.post(f"{batch}/reject", headers=admin, **({} if body is None else {"json": body}))
        assert refused.status_code == 422 and refused.json()["detail"].startswith("confirm:")
        assert "3 notes" in refused.json()["detail"]
    with sessions() as db:
        assert db.get(Batch, held["batch_id"]).status == "held"
        assert (
            db.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "batch.reject"))
            == 0
        )
    rejected = web.post(f"{batch}/reject", headers=admin, json={"confirm": True})
    assert rejected.status_code == 200 and rejected.json() == {"status": "rejected", "erased": 3}
    assert web.post(f"{batch}/reject", headers=admin, json={"confirm": True}).status_code == 409
    assert (
        web.post(
            f"{batch}/notes", headers=admin, json={"note": "n3", "decision": "exclude", "reason": WORDS}
        ).status_code
        == 409
    )

    # An upload of what the project holds already makes no batch, and says so.
    assert upload([("n2.txt", "Aspirin 81 mg.")]).json()["status"] == "accepted"
    again = upload([("n2.txt", "Aspirin 81 mg.")])
    assert again.status_code == 200
    assert (again.json()["status"], again.json()["batch_id"], again.json()["stored"]) == (
        "unchanged",
        None,
        0,
    )
    assert again.json()["summary"].startswith("nothing to add")
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(Batch)) == 2
        assert db.scalar(select(func.count()).select_from(Document)) == 1
    annotator = {"Authorization": f"Bearer {_token(web, 'annotator')}"}
    assert web.get(batch, headers=annotator).status_code == 403
