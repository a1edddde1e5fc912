"""The lead's project editor: create and edit, errors naming the field, annotation.conf in and out."""

import json

from sqlalchemy import func, select

from app.db.models import Project
from app.demo.seed import MEDICATION_SCHEMA
from tests.conftest import log_in, make_lead_of, page, session_csrf

CONF = b"""[entities]
Drug
Dose
[relations]
Dose-Drug Arg1:Dose, Arg2:Drug
[attributes]
Negated Arg:Drug
[events]
"""


def _post(web, path, **fields):
    files = fields.pop("files", None)
    data = {"csrf_token": session_csrf(web, "/lead/projects/new"), **fields}
    return web.post(path, data=data, files=files)


def _count(sessions):
    with sessions() as db:
        return db.scalar(select(func.count()).select_from(Project))


def test_lead_creates_and_edits_a_project(web, accounts, sessions):
    log_in(web, "lead")
    created = _post(
        web,
        "/lead/projects",
        name="Meds",
        guidelines="Label drugs.",
        label_schema=json.dumps(MEDICATION_SCHEMA),
        study_settings='{"overlap": 3}',
    )
    assert created.status_code == 303
    project_url = created.headers["location"].split("?")[0]
    with sessions() as db:
        project = db.scalar(select(Project))
    assert project.study_settings["overlap"] == 3 and project.guidelines == "Label drugs."
    schema = dict(
        MEDICATION_SCHEMA,
        entity_types=MEDICATION_SCHEMA["entity_types"]
        + [{"name": "Allergy", "color": "#000000", "hotkey": "y"}],
    )
    bad = _post(
        web, project_url, name="Meds", guidelines="", label_schema=json.dumps(schema), study_settings="{}"
    )
    assert bad.status_code == 422
    problems = [li.text for li in page(bad).select("[data-testid=project-problems] li")]
    assert problems == ["label_schema.entity_types[9].hotkey: 'y' is reserved by the editor"]
    with sessions() as db:
        assert len(db.get(Project, project.id).label_schema["entity_types"]) == 9  # nothing stored
    schema["entity_types"][-1]["hotkey"] = "l"
    assert (
        _post(
            web,
            project_url,
            name="Meds v2",
            guidelines="",
            label_schema=json.dumps(schema),
            study_settings="{}",
        ).status_code
        == 303
    )
    with sessions() as db:
        assert db.get(Project, project.id).name == "Meds v2"


def test_json_errors_name_the_field_and_store_nothing(web, accounts, sessions):
    log_in(web, "lead")
    response = _post(
        web, "/lead/projects", name="X", guidelines="", label_schema="{not json", study_settings="{}"
    )
    assert response.status_code == 422
    [problem] = [li.text for li in page(response).select("[data-testid=project-problems] li")]
    assert problem.startswith("label_schema: not valid JSON") and "line 1" in problem
    assert _count(sessions) == 0


def test_annotation_conf_in_and_out(web, accounts, sessions):
    log_in(web, "lead")
    response = _post(
        web,
        "/lead/projects",
        name="From conf",
        guidelines="",
        label_schema="",
        study_settings="{}",
        files={"annotation_conf": ("annotation.conf", CONF, "text/plain")},
    )
    assert response.status_code == 303
    with sessions() as db:
        project = db.scalar(select(Project))
    assert [e["name"] for e in project.label_schema["entity_types"]] == ["Drug", "Dose"]
    assert project.label_schema["relation_types"][0]["name"] == "Dose-Drug"
    conf = web.get(f"/lead/projects/{project.id}/annotation.conf").text
    assert "[entities]" in conf and "Dose-Drug" in conf and "Negated" in conf


def test_labels_in_use_cannot_be_removed(web, accounts, sessions, password_hashes):
    from tests.services.editing_fixtures import build_world

    world = build_world(sessions, password_hashes["annotator"])
    make_lead_of(sessions, world.project_id)
    log_in(web, "lead")
    schema = {"entity_types": [{"name": "Drug", "color": "#112233", "hotkey": "d"}]}
    response = _post(
        web,
        f"/lead/projects/{world.project_id}",
        name="Editing",
        guidelines="",
        label_schema=json.dumps(schema),
        study_settings="{}",
    )
    assert response.status_code == 422
    problems = [li.text for li in page(response).select("[data-testid=project-problems] li")]
    assert "label_schema.entity_types: 'Strength' is used by annotations and cannot be removed" in problems


def test_annotators_cannot_edit_projects(web, accounts, sessions):
    log_in(web, "annotator")
    assert web.get("/lead/projects/new").status_code == 403


def test_the_schema_form_builds_the_schema_from_its_rows(web, accounts, sessions):
    log_in(web, "lead")
    form = page(web.get("/lead/projects/new"))
    assert len(form.select("[data-testid=entity-row]")) == 3  # the starting type and blank rows
    data = {
        "name": "By form",
        "guidelines": "",
        "study_settings": "{}",
        "schema_source": "form",
        "entity_name": ["Drug", "Dose", ""],
        "entity_color": ["#1f77b4", "#ff7f0e", "#000000"],
        "entity_hotkey": ["d", "o", ""],
        "entity_description": ["", "amount", ""],
        "relation_name": ["Dose-Drug", ""],
        "relation_heads": ["Dose", ""],
        "relation_tails": ["Drug", ""],
        "attribute_name": ["Negated", ""],
        "attribute_values": ["yes, no", ""],
        "attribute_default": ["no", ""],
        "attribute_applies_to": ["Drug", ""],
        "question_key": ["confidence", ""],
        "question_prompt": ["How sure?", ""],
        "question_kind": ["scale", "text"],
        "question_choices": ["", ""],
        "csrf_token": session_csrf(web, "/lead/projects/new"),
    }
    assert web.post("/lead/projects", data=data).status_code == 303
    with sessions() as db:
        schema = db.scalar(select(Project)).label_schema
    assert [(e["name"], e["hotkey"]) for e in schema["entity_types"]] == [("Drug", "d"), ("Dose", "o")]
    assert schema["relation_types"][0]["head_types"] == ["Dose"]
    assert schema["span_attributes"][0]["values"] == ["yes", "no"]
    assert schema["document_questions"][0]["kind"] == "scale"
    data.update(name="Bad", entity_name=["Drug", "Drug", ""])
    bad = web.post("/lead/projects", data=data)
    assert bad.status_code == 422
    problems = [li.text for li in page(bad).select("[data-testid=project-problems] li")]
    assert "label_schema.entity_types[1].name: 'Drug' is defined twice" in problems
    assert [i["value"] for i in page(bad).select("input[name=entity_name]")][:2] == [
        "Drug",
        "Drug",
    ]  # input kept
