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
    assert problems == ["Label 10 (Allergy), hotkey: 'y' is reserved by the editor"]
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
    assert problem.startswith("Label schema (JSON): not valid JSON") and "line 1" in problem
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
    assert "Labels: 'Strength' is used by annotations and cannot be removed" in problems


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
    assert "Label 2 (Drug), name: 'Drug' is defined twice" in problems
    assert [i["value"] for i in page(bad).select("input[name=entity_name]")][:2] == [
        "Drug",
        "Drug",
    ]  # input kept


# ---- issue 20: problems in words beside their fields, study settings as fields, distinct colours ----


def _schema_form(web, **changes):
    data = {
        "name": "By form",
        "guidelines": "",
        "schema_source": "form",
        "entity_name": ["Drug", "Dose", ""],
        "entity_color": ["#1f77b4", "#ff7f0e", "#2ca02c"],
        "entity_hotkey": ["d", "o", ""],
        "entity_description": ["", "", ""],
        "relation_name": ["Of", ""],
        "relation_heads": ["Dose", ""],
        "relation_tails": ["Drug", ""],
        "study_form": "1",
        "study_conditions": ["scratch", "refine_llm"],
        "study_idle_threshold_seconds": "90",
        "study_overlap": "3",
        "study_bootstrap_seed": "7",
        "study_require_prelabels_decided": "on",
        "csrf_token": session_csrf(web, "/lead/projects/new"),
    }
    return web.post("/lead/projects", data={**data, **changes})


def _beside(html, control_id: str) -> str:
    """The error shown in the field of a control."""
    return (
        html.select_one(f"#{control_id}")
        .find_parent(class_="field")
        .select_one("[data-testid=field-error]")
        .text
    )


def test_study_settings_are_fields_with_their_meaning(web, accounts, sessions):
    log_in(web, "lead")
    form = page(web.get("/lead/projects/new"))
    assert form.select_one("textarea[name=study_settings]") is None  # no raw JSON to write
    settings = ("study-idle", "study-overlap", "study-snap", "study-decided", "study-reopen", "study-seed")
    for control in settings:
        field = form.select_one(f"#{control}").find_parent(class_="field")
        assert field.select_one(f"label[for={control}]").text.strip()
        assert field.select_one(".hint").text.strip()  # what the setting means, in words
    assert _schema_form(web).status_code == 303
    with sessions() as db:
        study = db.scalar(select(Project)).study_settings
    assert study["conditions"] == ["scratch", "refine_llm"]
    assert (study["idle_threshold_seconds"], study["overlap"], study["bootstrap_seed"]) == (90.0, 3, 7)
    assert study["require_prelabels_decided"] is True
    assert study["snap_to_tokens"] is False and study["physicians_may_reopen"] is False  # unticked


def test_a_refused_schema_says_what_is_wrong_beside_the_field(web, accounts, sessions):
    log_in(web, "lead")
    bad = _schema_form(
        web,
        entity_color=["#1f77b4", "orange", "#2ca02c"],
        relation_heads=["", ""],
        study_idle_threshold_seconds="0",
        study_overlap="two",
    )
    assert bad.status_code == 422
    html = page(bad)
    problems = [li.text for li in html.select("[data-testid=project-problems] li")]
    assert problems == [
        "Study settings, physicians per note for agreement: must be a whole number",
    ]  # a field that is not a number is named before anything is validated
    assert html.select_one("#study-overlap")["aria-invalid"] == "true"
    assert _beside(html, "study-overlap") == "must be a whole number"
    bad = _schema_form(
        web, entity_color=["#1f77b4", "orange", "#2ca02c"], relation_heads=["", ""], study_overlap="3"
    )
    html = page(bad)
    problems = [li.text for li in html.select("[data-testid=project-problems] li")]
    assert problems == [
        "Label 2 (Dose), colour: must be a colour like #1f77b4",
        "Relation type 1 (Of), from (head) types: name at least one entity type",
    ]
    assert not any("List should" in p or "String should" in p for p in problems)
    colour_cell = html.select("input[name=entity_color]")[1].find_parent("td")
    assert colour_cell.select_one("[data-testid=field-error]").text == "must be a colour like #1f77b4"
    heads_cell = html.select("input[name=relation_heads]")[0].find_parent("td")
    assert heads_cell.select_one("[data-testid=field-error]").text == "name at least one entity type"
    bad = _schema_form(web, study_idle_threshold_seconds="0")
    assert _beside(page(bad), "study-idle") == "must be above 0"
    assert _count(sessions) == 0  # nothing stored


def test_blank_label_rows_offer_distinct_unused_colours(web, accounts, sessions):
    log_in(web, "lead")
    html = page(web.get("/lead/projects/new"))
    colours = [i["value"] for i in html.select("tbody input[name=entity_color]")]
    assert len(colours) == 3 and len(set(colours)) == 3  # the starting label and the two blank rows
