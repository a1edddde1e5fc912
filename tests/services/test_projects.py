"""Creating a project: a bad label schema gets an error naming the field and stores nothing."""

import pytest
from sqlalchemy import func, select

from app.db.models import AuditEvent, Project
from app.demo.seed import MEDICATION_SCHEMA
from app.domain.label_schema import LabelSchemaError
from app.services.projects import ProjectError, create_project


def _count(sessions, model):
    with sessions() as db:
        return db.scalar(select(func.count()).select_from(model))


def test_good_schema_is_stored_normalised(sessions):
    project = create_project(sessions, "Meds", MEDICATION_SCHEMA, study_settings={"overlap": 3})
    with sessions() as db:
        stored = db.get(Project, project.id)
    assert [e["name"] for e in stored.label_schema["entity_types"]][:2] == ["Drug", "Strength"]
    assert stored.study_settings["overlap"] == 3 and stored.study_settings["idle_threshold_seconds"] == 60
    assert _count(sessions, AuditEvent) == 1


def test_bad_schema_names_the_field_and_stores_nothing(sessions):
    bad = {
        **MEDICATION_SCHEMA,
        "relation_types": [{"name": "Dose-Drug", "head_types": ["Dose"], "tail_types": ["Drug"]}],
    }
    with pytest.raises(LabelSchemaError) as raised:
        create_project(sessions, "Meds", bad)
    assert raised.value.problems == [("relation_types[0].head_types[0]", "unknown entity type 'Dose'")]
    assert _count(sessions, Project) == 0 and _count(sessions, AuditEvent) == 0


def test_duplicate_name_is_refused(sessions):
    create_project(sessions, "Meds", MEDICATION_SCHEMA)
    with pytest.raises(ProjectError, match="name"):
        create_project(sessions, "Meds", MEDICATION_SCHEMA)
    assert _count(sessions, Project) == 1


def test_the_api_returns_the_field_of_a_bad_schema(web, accounts, sessions):
    from tests.conftest import log_in, session_csrf

    log_in(web, "lead")
    response = web.post(
        "/api/v1/lead/projects",
        json={"name": "Meds", "label_schema": {"entity_types": [{"name": "Drug", "color": "red"}]}},
        headers={"X-CSRF-Token": session_csrf(web)},
    )
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["body", "label_schema", "entity_types[0].color"], "msg": "must be a colour like #1f77b4"}
    ]
    assert _count(sessions, Project) == 0
