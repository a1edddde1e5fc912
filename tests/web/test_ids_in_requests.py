"""Ids a lead's request carries in its query string or form, not its path: a batch to filter on, the runs
to compare, the batch a run or a study covers. The path's objects are checked by the router's access
check (tests/web/test_access_matrix.py); these must be of the same project too, or the request is
refused naming the field, shows nothing of the other project and stores nothing.
"""

import hashlib
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from app.db.models import AnnotationSet, Batch, Document, PreAnnotationRun, Project, Study
from app.demo.seed import DEMO_PROJECT, MEDICATION_SCHEMA, seed_demo
from app.services import pre_annotation, study
from app.services.access import ProjectObject, not_of_project
from tests.conftest import log_in, session_csrf

OTHER_RUN = "Other project's secret run"


@pytest.fixture
def projects(sessions, accounts, password_hashes, monkeypatch) -> dict:
    """The demo project (the demo makes `lead` its lead), and project B with a batch, a note and a
    finished run."""
    monkeypatch.setattr("app.demo.seed.hash_password", lambda password: password_hashes["annotator"])
    seed_demo(sessions)
    with sessions.begin() as db:
        demo = db.scalar(select(Project).where(Project.name == DEMO_PROJECT))
        other = Project(name="B", label_schema=MEDICATION_SCHEMA)
        db.add(other)
        db.flush()
        batch = Batch(project_id=other.id, status="accepted")
        db.add(batch)
        db.flush()
        document = Document(
            project_id=other.id, batch_id=batch.id, external_id="b-1", text="Aspirin 81 mg daily.",
            sha256=hashlib.sha256(b"Aspirin 81 mg daily.").hexdigest(),
        )  # fmt: skip
        run = PreAnnotationRun(project_id=other.id, name=OTHER_RUN, method="imported", status="succeeded")
        db.add_all([document, run])
        db.flush()
        db.add(AnnotationSet(document_id=document.id, origin="pre_annotation", pre_annotation_run_id=run.id))
        demo_batch = db.scalar(select(Batch.id).where(Batch.project_id == demo.id).limit(1))
        demo_runs = list(
            db.scalars(
                select(PreAnnotationRun.id)
                .where(PreAnnotationRun.project_id == demo.id, PreAnnotationRun.status == "succeeded")
                .order_by(PreAnnotationRun.id)
            )
        )
        ids = {
            "demo": demo.id, "demo_batch": demo_batch, "demo_runs": demo_runs,
            "other": other.id, "other_batch": batch.id, "other_run": run.id,
        }  # fmt: skip
    assert ids["demo_batch"] is not None and ids["demo_runs"], "the demo needs a batch and a finished run"
    return ids


def test_not_of_project_names_missing_and_other_projects_ids(sessions, projects):
    with sessions() as db:
        batch = ProjectObject.batch
        assert not_of_project(db, projects["demo"], batch, [projects["demo_batch"]]) == []
        assert not_of_project(db, projects["demo"], batch, [projects["other_batch"], 999_999]) == sorted(
            [projects["other_batch"], 999_999]
        )
        run = ProjectObject.pre_annotation_run
        assert not_of_project(db, projects["demo"], run, [*projects["demo_runs"], projects["other_run"]]) == [
            projects["other_run"]
        ]
        assert not_of_project(db, projects["demo"], run, []) == []


def test_dashboard_refuses_another_projects_batch(web, projects):
    log_in(web, "lead")
    dashboard = f"/lead/projects/{projects['demo']}/dashboard"
    assert web.get(dashboard, params={"batch_id": projects["demo_batch"]}).status_code == 200
    for path in (dashboard, f"/lead/projects/{projects['demo']}/report"):
        response = web.get(path, params={"batch_id": projects["other_batch"]})
        assert response.status_code == 422, path
        assert "batch_id" in response.text and "not a batch of this project" in response.text


def test_metrics_api_and_command_line_refuse_another_projects_batch(web, projects, settings):
    log_in(web, "lead")
    metrics = f"/api/v1/lead/projects/{projects['demo']}/metrics"
    assert web.get(metrics, params={"batch_id": projects["demo_batch"]}).status_code == 200
    response = web.get(metrics, params={"batch_id": projects["other_batch"]})
    assert response.status_code == 422
    refused = f"batch {projects['other_batch']} is not a batch of this project"
    assert response.json()["detail"] == [{"loc": ["query", "batch_id"], "msg": refused}]
    env = {"CLINANN_DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin"}
    completed = subprocess.run(
        [sys.executable, "-m", "app.cli", "metrics", "--project", DEMO_PROJECT,
         "--batch", str(projects["other_batch"])],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 2
    assert f"--batch: {refused}" in completed.stderr


def test_run_comparison_refuses_another_projects_run_and_batch(web, projects):
    log_in(web, "lead")
    compare = f"/lead/projects/{projects['demo']}/runs/compare"
    own = [("run", str(r)) for r in projects["demo_runs"]]
    assert web.get(compare, params=own).status_code == 200
    response = web.get(compare, params=[*own, ("run", str(projects["other_run"]))])
    assert response.status_code == 422
    assert f"run: not runs of this project: {projects['other_run']}" in response.text
    assert OTHER_RUN not in response.text
    response = web.get(compare, params=[*own, ("batch_id", str(projects["other_batch"]))])
    assert response.status_code == 422
    assert "batch_id" in response.text and "not a batch of this project" in response.text


def test_a_run_over_another_projects_batch_is_refused_and_nothing_stored(web, sessions, projects):
    with sessions() as db:
        runs_before = db.scalar(select(func.count()).select_from(PreAnnotationRun))
    with pytest.raises(pre_annotation.RunError) as refused:
        pre_annotation.start_run(
            sessions,
            projects["demo"],
            pre_annotation.RunRequest(
                name="over B",
                method="lexicon",
                lexicon_csv="label,term\nDrug,aspirin\n",
                batch_id=projects["other_batch"],
            ),  # fmt: skip
            user_id=None,
            defer=lambda *args, **kwargs: None,
        )
    assert refused.value.field == "batch_id"
    # The page names the field too.
    log_in(web, "lead")
    runs_page = f"/lead/projects/{projects['demo']}/runs"
    response = web.post(
        runs_page,
        data={
            "name": "over B",
            "method": "lexicon",
            "batch_id": str(projects["other_batch"]),
            "csrf_token": session_csrf(web, runs_page),
        },  # fmt: skip
        files={"lexicon": ("lexicon.csv", b"label,term\nDrug,aspirin\n", "text/csv")},
    )
    assert response.status_code == 422
    assert "not a batch of this project" in response.text
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(PreAnnotationRun)) == runs_before


def test_a_study_over_another_projects_batch_is_refused_and_nothing_stored(sessions, projects):
    wanted = study.StudyRequest(
        name="over B", annotators=["dr.adams", "dr.baker"], shares={"scratch": 1.0},
        batch_id=projects["other_batch"],
    )  # fmt: skip
    for design in (study.preview_study, study.commit_study):
        kwargs = {"user_id": None} if design is study.commit_study else {}
        with pytest.raises(study.StudyError) as refused:
            design(sessions, projects["demo"], wanted, **kwargs)
        assert refused.value.field == "batch_id"
        assert "not a batch of this project" in refused.value.message
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(Study).where(Study.name == "over B")) == 0
