"""The project lead's pages: projects and their progress (dashboards come later)."""

import json
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from app.db.models import Project
from app.domain.brat import label_schema_from_conf, parse_annotation_conf, write_annotation_conf
from app.domain.label_schema import (
    LABEL_PALETTE,
    STUDY_SETTING_NAMES,
    LabelSchemaError,
    StudySettings,
    distinct_colour,
    field_in_words,
)
from app.domain.vocabulary import Condition, Role
from app.services import access
from app.services.access import led_project_ids
from app.services.projects import ProjectError, create_project, project_overview, update_project
from app.web.deps import (
    CurrentIdentity,
    LeadExportId,
    LeadProjectId,
    Sessions,
    client_address,
    project_or_404,
    require_role,
)
from app.web.templating import render

# Admins may look over a lead's shoulder, on every project; a lead works only on the projects they
# lead (require_project_lead); annotators may not come here.
router = APIRouter(
    prefix="/lead",
    tags=["lead"],
    dependencies=[Depends(require_role(Role.lead, Role.admin))],
)


@router.get("")
def projects(request: Request, identity: CurrentIdentity, sessions: Sessions) -> Response:
    """The projects the lead is a member of (an admin sees every project)."""
    shown = project_overview(sessions, led_project_ids(sessions, identity.user))
    return render(request, "lead/home.html", {"projects": shown})


# ---- the project editor: name, guidelines, label schema, study; annotation.conf in and out -------

EMPTY_SCHEMA = {"entity_types": [{"name": "Entity", "color": "#1f77b4", "hotkey": "e"}]}
BLANK_ROWS = 2  # empty rows under each table of the schema form, for adding types


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.replace("|", ",").split(",") if part.strip()]


def schema_from_rows(form) -> dict:
    """The label schema from the form's rows (one row per type; rows without a name are unused)."""

    def rows(*fields: str):
        columns = [form.getlist(f) for f in fields]
        return [dict(zip(fields, values, strict=False)) for values in zip(*columns, strict=False)]

    entity_types = [
        {
            "name": r["entity_name"].strip(),
            "color": r["entity_color"],
            "hotkey": r["entity_hotkey"].strip() or None,
            "description": r["entity_description"].strip(),
        }
        for r in rows("entity_name", "entity_color", "entity_hotkey", "entity_description")
        if r["entity_name"].strip()
    ]
    relation_types = [
        {
            "name": r["relation_name"].strip(),
            "head_types": _split(r["relation_heads"]),
            "tail_types": _split(r["relation_tails"]),
        }
        for r in rows("relation_name", "relation_heads", "relation_tails")
        if r["relation_name"].strip()
    ]
    span_attributes = [
        {
            "name": r["attribute_name"].strip(),
            "values": _split(r["attribute_values"]),
            "default": r["attribute_default"].strip() or None,
            "applies_to": _split(r["attribute_applies_to"]),
        }
        for r in rows("attribute_name", "attribute_values", "attribute_default", "attribute_applies_to")
        if r["attribute_name"].strip()
    ]
    document_questions = []
    for r in rows("question_key", "question_prompt", "question_kind", "question_choices"):
        if r["question_key"].strip():
            question = {
                "key": r["question_key"].strip(),
                "prompt": r["question_prompt"].strip(),
                "kind": r["question_kind"],
            }
            if _split(r["question_choices"]):
                question["choices"] = _split(r["question_choices"])
            document_questions.append(question)
    return {
        "entity_types": entity_types,
        "relation_types": relation_types,
        "span_attributes": span_attributes,
        "document_questions": document_questions,
    }


def schema_rows(schema: dict) -> dict:
    """The schema as rows for the form, with blank rows to add to (without script); each blank label
    row has its own unused colour, so labels added there never share one."""
    blank = [{}] * BLANK_ROWS
    entities = [e for e in schema.get("entity_types") or [] if isinstance(e, dict)]
    colours = [e.get("color") for e in entities]
    for _ in range(BLANK_ROWS):
        colours.append(distinct_colour(colours))
    return {
        "entities": entities + [{"color": c} for c in colours[len(entities) :]],
        "relations": list(schema.get("relation_types") or []) + blank,
        "attributes": list(schema.get("span_attributes") or []) + blank,
        "questions": list(schema.get("document_questions") or []) + blank,
    }


STUDY_FLAGS = ("snap_to_tokens", "require_prelabels_decided", "physicians_may_reopen")
STUDY_NUMBERS = {"idle_threshold_seconds": float, "overlap": int, "bootstrap_seed": int}


def study_from_fields(form) -> tuple[dict, list[tuple[str, str]]]:
    """The study settings from the form's fields (``study_*``), and what in them is not a number."""
    study: dict = {"conditions": [str(c) for c in form.getlist("study_conditions")]}
    problems = []
    for key, kind in STUDY_NUMBERS.items():
        raw = str(form.get(f"study_{key}") or "").strip()
        if not raw:
            continue  # the default
        try:
            study[key] = kind(raw)
        except ValueError:
            words = "a whole number" if kind is int else "a number"
            problems.append((f"study.{key}", f"must be {words}"))
    for key in STUDY_FLAGS:
        study[key] = form.get(f"study_{key}") is not None
    return study, problems


# The project page's own fields, besides the schema's and the study's paths.
_PAGE_FIELDS = {
    "name": "Name",
    "guidelines": "Guidelines",
    "annotation.conf": "annotation.conf",
    "label_schema": "Label schema (JSON)",
    "study_settings": "Study settings (JSON)",
    "project": "Project",
}


# A problem about a whole row is shown beside the cell that usually causes it.
_ROW_CELL = {"entity_types": "name", "relation_types": "name", "span_attributes": "values",
             "document_questions": "choices"}  # fmt: skip


def _field_errors(problems: list[tuple[str, str]]) -> dict[str, str]:
    """The message beside each field of the page: ``relation_types[0].tail_types[1]`` goes beside
    the tail types of row 1, ``span_attributes[0]`` beside that row's values."""
    errors: dict[str, list[str]] = {}
    for field, message in problems:
        key = re.sub(r"(\.[a-z_]+)\[\d+\]$", r"\1", field)
        if row := re.fullmatch(r"([a-z_]+)\[\d+\]", key):
            key += "." + _ROW_CELL.get(row.group(1), "name")
        errors.setdefault(key, []).append(message)
    return {key: "; ".join(messages) for key, messages in errors.items()}


def _problems_in_words(problems: list[tuple[str, str]], schema: object) -> list[dict]:
    """Each problem with its path (for the field it is shown beside) and its words."""
    return [
        {
            "field": field,
            "message": message,
            "text": f"{_PAGE_FIELDS.get(field) or field_in_words(field, schema)}: {message}",
        }
        for field, message in problems
    ]


def _editor(
    request: Request,
    *,
    project=None,
    values=None,
    problems=None,
    lead_problem: str | None = None,
    lead_username: str = "",
    status_code: int = 200,
) -> Response:
    if values is None:
        values = {
            "name": project.name if project else "",
            "guidelines": project.guidelines if project else "",
            "label_schema": json.dumps(project.label_schema if project else EMPTY_SCHEMA, indent=2),
            "study_settings": json.dumps(project.study_settings if project else {}, indent=2),
        }
    from app.services.exports import list_exports

    exports = list_exports(request.app.state.runtime.sessions, project.id) if project else []
    try:
        shown = json.loads(values["label_schema"])
    except (json.JSONDecodeError, TypeError):
        shown = {}
    shown = shown if isinstance(shown, dict) else {}
    study = values.get("study")
    if study is None:
        try:
            study = json.loads(values.get("study_settings") or "{}")
        except json.JSONDecodeError:
            study = {}
    defaults = StudySettings().model_dump(mode="json")
    study = {**defaults, **(study if isinstance(study, dict) else {})}
    values = {**values, "rows": schema_rows(shown), "study": study}
    problems = [(field, str(message)) for field, message in (problems or [])]
    leads = access.project_leads(request.app.state.runtime.sessions, project.id) if project else []
    return render(
        request,
        "lead/project.html",
        {
            "project": project,
            "values": values,
            "problems": _problems_in_words(problems, shown),
            "field_errors": _field_errors(problems),
            "palette": LABEL_PALETTE,
            "conditions": [c.value for c in Condition],
            "study_names": STUDY_SETTING_NAMES,
            "exports": exports,
            "leads": leads,
            "lead_problem": lead_problem,
            "lead_username": lead_username,
        },
        status_code=status_code,
    )


@router.get("/projects/new")
def new_project(request: Request) -> Response:
    return _editor(request)


@router.get("/projects/{project_id}")
def edit_project(request: Request, project_id: LeadProjectId, sessions: Sessions) -> Response:
    with sessions() as db:
        project = db.get(Project, project_id)
    if project is None:
        raise HTTPException(status_code=404, detail="No such project.")
    return _editor(request, project=project)


@router.post("/projects")
async def create_project_page(request: Request, identity: CurrentIdentity, sessions: Sessions) -> Response:
    """Create a project. It takes no project id from anywhere: a create route that also read one from
    its query string updated that project, whoever led it (issue 17)."""
    return await _save_project(request, identity, sessions, None)


@router.post("/projects/{project_id}")
async def update_project_page(
    request: Request, identity: CurrentIdentity, sessions: Sessions, project_id: LeadProjectId
) -> Response:
    with sessions() as db:
        project = db.get(Project, project_id)
    if project is None:
        raise HTTPException(status_code=404, detail="No such project.")
    return await _save_project(request, identity, sessions, project)


async def _save_project(request: Request, identity, sessions, project: Project | None) -> Response:
    """Create or update a project; every problem names its field and nothing is stored."""
    form = await request.form()
    values = {
        key: str(form.get(key) or "") for key in ("name", "guidelines", "label_schema", "study_settings")
    }
    conf_upload = form.get("annotation_conf")
    problems: list[tuple[str, str]] = []
    schema: object = None
    if conf_upload is not None and hasattr(conf_upload, "read") and (conf_bytes := await conf_upload.read()):
        try:
            conf = parse_annotation_conf(conf_bytes.decode("utf-8"))
            schema = label_schema_from_conf(conf, {})
            values["label_schema"] = json.dumps(schema, indent=2)
        except (UnicodeDecodeError, ValueError) as error:
            problems.append(("annotation.conf", str(error)))
    elif "json" not in form.getlist("schema_source") and "entity_name" in form:
        schema = schema_from_rows(form)
        values["label_schema"] = json.dumps(schema, indent=2)
    else:
        try:
            schema = json.loads(values["label_schema"] or "{}")
        except json.JSONDecodeError as error:
            problems.append(
                ("label_schema", f"not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}")
            )
    if "study_form" in form:  # the page's fields; scripts may still post the settings as JSON
        study, study_problems = study_from_fields(form)
        problems += study_problems
        values["study"] = study
        values["study_settings"] = json.dumps(study, indent=2)
    else:
        try:
            study = json.loads(values["study_settings"] or "{}")
        except json.JSONDecodeError as error:
            where = f"at line {error.lineno}, column {error.colno}"
            problems.append(("study_settings", f"not valid JSON: {error.msg} {where}"))
            study = None
    if not problems:
        try:
            if project is None:
                project = create_project(
                    sessions,
                    values["name"],
                    schema,
                    guidelines=values["guidelines"],
                    study_settings=study,
                    actor_id=identity.user.id,
                )
            else:
                update_project(
                    sessions,
                    project.id,
                    name=values["name"],
                    guidelines=values["guidelines"],
                    label_schema=schema,
                    study_settings=study,
                    actor_id=identity.user.id,
                )
            return RedirectResponse(f"/lead/projects/{project.id}?saved=1", status_code=303)
        except LabelSchemaError as error:
            problems = list(error.problems)
        except ProjectError as error:
            problems = [tuple(str(error).split(": ", 1))]
    return _editor(request, project=project, values=values, problems=problems, status_code=422)


# ---- the leads of the project: who may see and change it (besides admins) ------------------------------


@router.post("/projects/{project_id}/leads")
def add_lead(
    request: Request,
    project_id: LeadProjectId,
    identity: CurrentIdentity,
    sessions: Sessions,
    username: Annotated[str, Form()] = "",
) -> Response:
    """Make another lead a lead of this project (the caller leads it: the router checked)."""
    try:
        access.add_lead(
            sessions, project_id, username, actor_id=identity.user.id, client_address=client_address(request)
        )
    except access.LeadError as error:
        project = project_or_404(sessions, project_id)
        return _editor(
            request, project=project, lead_problem=str(error), lead_username=username, status_code=422
        )
    return RedirectResponse(f"/lead/projects/{project_id}#leads", status_code=303)


@router.post("/projects/{project_id}/leads/{user_id}/remove")
def remove_lead(
    request: Request, project_id: LeadProjectId, user_id: int, identity: CurrentIdentity, sessions: Sessions
) -> Response:
    """Take a lead off this project; a lead who removes themselves loses the project at once."""
    try:
        access.remove_lead(
            sessions, project_id, user_id, actor_id=identity.user.id, client_address=client_address(request)
        )
    except access.NoSuchLead:
        raise HTTPException(status_code=404, detail="No such lead of this project.") from None
    except access.LeadError as error:
        project = project_or_404(sessions, project_id)
        return _editor(request, project=project, lead_problem=str(error), status_code=422)
    if user_id == identity.user.id:
        return RedirectResponse("/lead", status_code=303)
    return RedirectResponse(f"/lead/projects/{project_id}#leads", status_code=303)


@router.get("/projects/{project_id}/annotation.conf")
def download_conf(project_id: LeadProjectId, sessions: Sessions) -> Response:
    with sessions() as db:
        project = db.get(Project, project_id)
    if project is None:
        raise HTTPException(status_code=404, detail="No such project.")
    return Response(
        write_annotation_conf(project.label_schema),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="annotation.conf"'},
    )


# ---- exports in the background ---------------------------------------------------------------------


@router.post("/projects/{project_id}/exports")
def start_export(
    request: Request,
    project_id: LeadProjectId,
    identity: CurrentIdentity,
    sessions: Sessions,
    format: Annotated[str, Form()],
    layer: Annotated[str, Form()] = "",
    undecided: Annotated[str, Form()] = "exclude",
) -> Response:
    from app.services.exports import ExportError, request_export

    try:
        request_export(
            sessions,
            project_id,
            format,
            layer.strip() or None,
            actor_id=identity.user.id,
            client_address=client_address(request),
            undecided=undecided,
        )
    except ExportError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    if request.headers.get("HX-Request"):
        return _exports_block(request, sessions, project_id)
    return RedirectResponse(f"/lead/projects/{project_id}#exports", status_code=303)


def _exports_block(request: Request, sessions, project_id: int) -> Response:
    from app.services.exports import list_exports

    with sessions() as db:
        project = db.get(Project, project_id)
    if project is None:
        raise HTTPException(status_code=404, detail="No such project.")
    return render(
        request,
        "lead/project.html",
        {"project": project, "exports": list_exports(sessions, project_id)},
        block_name="exports",
    )


@router.get("/projects/{project_id}/exports")
def exports(request: Request, project_id: LeadProjectId, sessions: Sessions) -> Response:
    return _exports_block(request, sessions, project_id)


@router.get("/exports/{export_id}/download")
def download_export(
    request: Request, export_id: LeadExportId, identity: CurrentIdentity, sessions: Sessions
) -> Response:
    from pathlib import Path

    from fastapi.responses import FileResponse

    from app.db.models import ExportFile
    from app.services import audit

    with sessions.begin() as db:
        row = db.get(ExportFile, export_id)
        if row is None or row.status != "succeeded" or not row.path or not Path(row.path).exists():
            raise HTTPException(status_code=404, detail="No such export, or it is not ready.")
        audit.record(
            db,
            "export.download",
            user_id=identity.user.id,
            object_type="export",
            object_id=export_id,
            client_address=request.client.host if request.client else None,
        )
    return FileResponse(row.path, filename=row.file_name)
