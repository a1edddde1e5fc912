"""The augmentation pages over HTTP: the form, its errors by field, and who may use them."""

import json

import pytest
from sqlalchemy import func, select

from app.db.models import AugmentationRun, LlmEndpoint, Project, ProjectMember
from tests.conftest import PASSWORDS, log_in, page


@pytest.fixture
def project(sessions, accounts):
    with sessions.begin() as db:
        project = Project(
            name="Aug",
            label_schema={"entity_types": [{"name": "Drug", "color": "#1f77b4"}]},
            study_settings={},
        )
        endpoint = LlmEndpoint(name="local", base_url="http://127.0.0.1:9/v1", model="m")
        db.add_all([project, endpoint])
        db.flush()
        db.add(ProjectMember(project_id=project.id, user_id=accounts["lead"].id))
        return project.id, endpoint.id


def _csrf(web):
    return json.loads(page(web.get("/lead")).body["hx-headers"])["X-CSRF-Token"]


def test_the_form_offers_the_schema_and_refuses_a_bad_run_naming_the_field(web, sessions, project):
    project_id, endpoint_id = project
    log_in(web, "lead", PASSWORDS["lead"])
    html = page(web.get(f"/lead/projects/{project_id}/augmentation"))
    assert [i["value"] for i in html.select("[data-testid=augmentation-labels] input")] == ["Drug"]
    assert html.select_one("[data-testid=no-augmentation-runs]")
    response = web.post(
        f"/lead/projects/{project_id}/augmentation",
        data={"csrf_token": _csrf(web), "name": "try", "endpoint_id": str(endpoint_id), "variants": "2"},
    )
    assert response.status_code == 422
    assert "labels" in page(response).select_one("[data-testid=augmentation-error]").text
    response = web.post(
        f"/lead/projects/{project_id}/augmentation",
        data={"csrf_token": _csrf(web), "name": "try", "endpoint_id": str(endpoint_id), "labels": "Drug"},
    )
    assert response.status_code == 422  # no gold yet
    assert "source" in page(response).select_one("[data-testid=augmentation-error]").text
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(AugmentationRun)) == 0


@pytest.mark.parametrize(
    "path", ["/lead/projects/{p}/augmentation", "/lead/augmentation/1", "/lead/augmentation/1/export"]
)
def test_physicians_cannot_reach_augmentation(web, project, path):
    log_in(web, "annotator", PASSWORDS["annotator"])
    assert web.get(path.format(p=project[0])).status_code == 403


def test_an_unknown_run_is_not_found(web, project):
    log_in(web, "lead", PASSWORDS["lead"])
    assert web.get("/lead/augmentation/999").status_code == 404
    assert web.get("/lead/augmentation/999/export?format=jsonl").status_code == 404
