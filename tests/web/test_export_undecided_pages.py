"""The undecided option of exports (issue 20) on the lead's export form, the API and `clinann export`:
an annotator's undecided pre-labels are left out by default and marked when asked."""

import io
import json
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from app.cli import main
from app.db.models import AuditEvent, ExportFile
from app.services.exports import make_export
from tests.conftest import log_in, make_lead_of, page, session_csrf
from tests.services.test_export_undecided import build_worked

LAYER = "annotator:dr.a"


@pytest.fixture
def worked(sessions, password_hashes):
    return build_worked(sessions, password_hashes)


def _statuses(jsonl: bytes) -> dict[str, list]:
    return {
        line["id"]: sorted(s.get("status", "decided") for s in line["spans"])
        for line in map(json.loads, jsonl.splitlines())
    }


def test_the_export_form_offers_the_option_and_its_job_marks_them(web, sessions, accounts, worked, tmp_path):
    make_lead_of(sessions, worked.project_id)
    log_in(web, "lead")
    project_page = f"/lead/projects/{worked.project_id}"
    form = page(web.get(project_page)).select_one("[data-testid=export-form]")
    select_box = form.select_one("select[name=undecided]")
    assert form.select_one(f"label[for={select_box['id']}]").get_text() == "Undecided pre-labels"
    assert [o["value"] for o in select_box.select("option")] == ["exclude", "mark"]
    assert select_box.select_one("option[selected]")["value"] == "exclude"

    csrf = session_csrf(web, project_page)
    for undecided in ("exclude", "mark"):
        fields = {"format": "jsonl", "layer": LAYER, "undecided": undecided, "csrf_token": csrf}
        assert web.post(f"{project_page}/exports", data=fields).status_code == 303
    with sessions() as db:
        rows = db.scalars(select(ExportFile).order_by(ExportFile.id)).all()
        jobs = db.execute(
            text("SELECT args FROM procrastinate_jobs WHERE task_name = 'clinann.make_export' ORDER BY id")
        ).scalars()
        arguments = list(jobs)
        requested = db.scalars(
            select(AuditEvent.details).where(AuditEvent.action == "export.requested").order_by(AuditEvent.id)
        ).all()
    assert [a["undecided"] for a in arguments] == ["exclude", "mark"]
    assert [d["undecided"] for d in requested] == ["exclude", "mark"]
    # The job as the worker runs it, with the arguments it was queued with.
    assert [a["export_id"] for a in arguments] == [row.id for row in rows]
    for args in arguments:
        make_export(sessions, args["export_id"], tmp_path, args["undecided"])
    with sessions() as db:
        done = db.scalars(select(ExportFile).order_by(ExportFile.id)).all()
    plain, marked = (Path(row.path).read_bytes() for row in done)
    assert _statuses(plain) == {"decided": ["decided"] * 3}
    assert _statuses(marked)["decided"] == ["decided", "decided", "decided", "undecided", "undecided"]
    assert done[1].file_name.endswith("-undecided-marked.jsonl")

    refused = web.post(
        f"{project_page}/exports",
        data={"format": "conll", "layer": LAYER, "undecided": "mark", "csrf_token": csrf},
    )
    assert refused.status_code == 422 and "undecided: CoNLL cannot mark" in refused.text
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(ExportFile)) == 2  # nothing stored for it


def test_the_api_takes_the_option_and_names_it_when_wrong(web, sessions, accounts, worked):
    make_lead_of(sessions, worked.project_id)
    log_in(web, "lead")
    api = f"/api/v1/lead/projects/{worked.project_id}/export"
    plain = web.get(api, params={"format": "brat", "layer": LAYER})
    marked = web.get(api, params={"format": "brat", "layer": LAYER, "undecided": "mark"})
    assert plain.status_code == marked.status_code == 200

    def ann(response):
        return zipfile.ZipFile(io.BytesIO(response.content)).read("decided.ann").decode()

    assert "status=undecided" not in ann(plain) and "\tRoute " not in ann(plain)
    assert ann(marked).count("\tstatus=undecided") == 3  # Route, Frequency and the Route-Drug relation
    wrong = web.get(api, params={"format": "jsonl", "undecided": "all"})
    assert wrong.status_code == 422 and "undecided" in wrong.json()["detail"]


def test_the_export_command_has_an_undecided_flag(sessions, settings, worked, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("CLINANN_DATABASE_URL", settings.database_url)
    out = tmp_path / "layer.jsonl"
    base = ["export", str(out), "--project", "Editing", "--format", "jsonl", "--layer", LAYER]
    assert main(base) == 0
    assert _statuses(out.read_bytes()) == {"decided": ["decided"] * 3}
    assert main([*base, "--undecided", "mark"]) == 0
    assert _statuses(out.read_bytes())["untouched"] == ["undecided"] * 4
    assert main([*base[:5], "conll", *base[6:], "--undecided", "mark"]) == 2
    assert "undecided: CoNLL cannot mark" in capsys.readouterr().err
