"""The lead's dashboard of the study: the metrics report as tables and charts, CSV, a printable page.

Every figure comes from app.services.metrics.project_metrics, the same report the JSON API and the CLI
give, so the three never disagree; this module only parses the filters and lays the report out.
"""

import math
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import select

from app.db.models import Assignment, Batch, Project, User
from app.domain.label_schema import parse_label_schema
from app.domain.note_statistics import evaluation_json
from app.domain.spreadsheet import csv_text
from app.domain.vocabulary import Condition, Role
from app.services import run_reports
from app.services.metrics import FilterError, MetricsFilter, project_metrics
from app.web import charts
from app.web.deps import (
    LeadProjectId,
    Sessions,
    project_or_404,
    require_role,
)
from app.web.templating import render

router = APIRouter(
    prefix="/lead",
    tags=["lead"],
    dependencies=[Depends(require_role(Role.lead, Role.admin))],
)

IDLE_RANGE = (1.0, 3600.0)
DISAGREEMENT_ROWS = 50
CSV_SECTIONS = ("time", "edit_mix", "agreement", "progress", "disagreement")
CONDITIONS = tuple(c.value for c in Condition)
TIME_KEYS = ("n", "mean", "median", "sd", "ci_low", "ci_high", "confidence", "resamples", "seed")
TIME_COLUMNS = ("condition", "n", "mean_minutes", "median_minutes", "sd_minutes", "ci_low", "ci_high",
                "confidence", "resamples", "seed")  # fmt: skip
PUBLISHED_COLUMNS = ("published_mean", "published_ci_low", "published_ci_high")


def _filters(request: Request, project: Project) -> tuple[MetricsFilter, float | None]:
    """The filters of the query string; an empty field means "all". Bad values answer 422 naming the field."""
    query = request.query_params
    batch_id = None
    if raw := (query.get("batch_id") or "").strip():
        try:
            batch_id = int(raw)
        except ValueError:
            raise HTTPException(status_code=422, detail="batch_id: must be a batch id") from None
    condition = (query.get("condition") or "").strip() or None
    if condition is not None and condition not in CONDITIONS:
        raise HTTPException(status_code=422, detail=f"condition: must be one of {', '.join(CONDITIONS)}")
    label = (query.get("label") or "").strip() or None
    labels = {e.name for e in parse_label_schema(project.label_schema).entity_types}
    if label is not None and label not in labels:
        raise HTTPException(status_code=422, detail="label: not a label of this project")
    idle = None
    if raw := (query.get("idle") or "").strip():
        try:
            idle = float(raw)
        except ValueError:
            idle = math.nan
        # `not a <= x <= b` also rejects NaN and infinities.
        if not (IDLE_RANGE[0] <= idle <= IDLE_RANGE[1]):
            raise HTTPException(
                status_code=422, detail="idle: the idle threshold must be a number of seconds from 1 to 3600"
            )
    annotator = (query.get("annotator") or "").strip() or None
    return MetricsFilter(batch_id=batch_id, annotator=annotator, label=label, condition=condition), idle


def _report(sessions, project: Project, filters: MetricsFilter, idle: float | None) -> dict[str, Any]:
    # The project's recorded seed (project_metrics' default), so a figure can be reproduced.
    try:
        return project_metrics(sessions, project.id, idle_threshold_seconds=idle, filters=filters)
    except FilterError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None


def _choices(sessions, project: Project) -> dict[str, list]:
    """What the filter form offers: the project's batches, physicians, labels and conditions."""
    with sessions() as db:
        batches = db.execute(
            select(Batch.id, Batch.uploaded_at, Batch.document_count)
            .where(Batch.project_id == project.id)
            .order_by(Batch.id)
        ).all()
        annotators = db.scalars(
            select(User.username)
            .join(Assignment, Assignment.annotator_id == User.id)
            .where(Assignment.project_id == project.id)
            .distinct()
            .order_by(User.username)
        ).all()
    return {
        "batches": [
            {"id": b.id, "uploaded_at": b.uploaded_at, "documents": b.document_count} for b in batches
        ],
        "annotators": list(annotators),
        "labels": [e.name for e in parse_label_schema(project.label_schema).entity_types],
        "conditions": list(CONDITIONS),
    }


def savings_reasons(savings: dict[str, Any]) -> dict[str, str]:
    """Why each undefined savings figure is undefined, in the lead's words (empty for defined figures)."""
    reasons: dict[str, str] = {}
    if savings["human_pipeline_mean"] is None:
        reasons["human_pipeline_mean"] = "no note has both a scratch and a refine_human time yet"
    if savings["llm_pipeline_mean"] is None:
        reasons["llm_pipeline_mean"] = "no refine_llm time yet"
    if savings["savings"] is None:
        missing_pipeline = reasons.get("human_pipeline_mean") or reasons.get("llm_pipeline_mean")
        reasons["savings"] = missing_pipeline or "the human pipeline took 0 minutes"
    if savings["ci_low"] is None:
        reasons["savings_ci"] = reasons.get("savings", "no resample gave a defined figure")
    paired_reason = "only for notes that went through both pipelines (the design is independent)"
    if savings["wilcoxon"] is None:
        reasons["wilcoxon"] = (
            paired_reason if savings["design"] != "paired" else "every paired difference is 0"
        )
    direct = savings["direct"]
    if direct["scratch_mean"] is None:
        reasons["scratch_mean"] = "no scratch time yet"
    if direct["refine_llm_mean"] is None:
        reasons["refine_llm_mean"] = "no refine_llm time yet"
    missing = reasons.get("scratch_mean") or reasons.get("refine_llm_mean")
    if direct["difference"] is None:
        reasons["difference"] = missing or "undefined"
    if direct["difference_ci_low"] is None:
        reasons["difference_ci"] = reasons.get("difference", "no resample gave a defined figure")
    if direct["ratio"] is None:
        reasons["ratio"] = missing or "scratch took 0 minutes"
    if direct["ratio_ci_low"] is None:
        reasons["ratio_ci"] = reasons.get("ratio", "no resample gave a defined figure")
    if direct["wilcoxon"] is None:
        reasons["direct_wilcoxon"] = (
            "only for notes done both from scratch and as refine_llm (the design is independent)"
            if direct["design"] != "paired"
            else "every paired difference is 0"
        )
    return reasons


def _charts(report: dict[str, Any]) -> dict[str, Any]:
    time = report["time"]
    return {
        "time": charts.time_chart(
            time["per_condition"],
            time["published_reference"]["minutes"],
            document_minutes=time.get("minutes"),
        ),
        "edit_mix": charts.edit_mix_chart(report["edit_mix"]["by_condition"]),
    }


def _context(request: Request, sessions, project_id: int) -> dict[str, Any]:
    project = project_or_404(sessions, project_id)
    filters, idle = _filters(request, project)
    report = _report(sessions, project, filters, idle)
    # The query string of the figures shown, for the download and report links.
    query = {
        "batch_id": filters.batch_id,
        "annotator": filters.annotator,
        "label": filters.label,
        "condition": filters.condition,
        # Only an idle threshold the lead chose: the project's own may lie outside what the form accepts.
        "idle": None if idle is None else f"{idle:.15g}",
    }
    return {
        "project": project,
        "report": report,
        "charts": _charts(report),
        "reasons": savings_reasons(report["time"]["savings"]),
        "query": {k: v for k, v in query.items() if v is not None},
        "idle_value": f"{report['time']['idle_threshold_seconds']:.15g}",
        "sections": CSV_SECTIONS,
        "disagreement_rows": DISAGREEMENT_ROWS,
        "runs_gold": runs_against_gold(sessions, project, filters.batch_id),
    }


def runs_against_gold(sessions, project: Project, batch_id: int | None) -> list[dict[str, Any]]:
    """Each finished pre-annotation run against gold, on the notes with gold it covered (of the batch
    when one is chosen), in the report's figure layout."""
    documents = run_reports.batch_documents(sessions, project.id, batch_id) if batch_id is not None else None
    rows = []
    for run in run_reports.list_runs(sessions, project.id):
        if run.status != "succeeded":
            continue
        [evaluation] = run_reports.evaluate_runs(sessions, project.id, [run.id], documents)
        rows.append(
            {
                "name": run.name,
                "documents": evaluation.documents,
                "figures": {mode: evaluation_json(e) for mode, e in evaluation.modes.items()} or None,
            }
        )
    return rows


@router.get("/projects/{project_id}/dashboard")
def dashboard(request: Request, sessions: Sessions, project_id: LeadProjectId) -> Response:
    context = _context(request, sessions, project_id)
    if request.headers.get("HX-Request"):
        return render(request, "lead/dashboard.html", context, block_name="figures")
    context["choices"] = _choices(sessions, context["project"])
    return render(request, "lead/dashboard.html", context)


@router.get("/projects/{project_id}/report")
def printable_report(request: Request, sessions: Sessions, project_id: LeadProjectId) -> Response:
    return render(request, "lead/report.html", _context(request, sessions, project_id))


# ---- CSV: one table per section, a header row, numbers at full precision, empty where undefined --------


def _ci(figure: dict[str, Any] | None) -> list[Any]:
    """value, ci_low, ci_high of an agreement figure ({"value", "ci"})."""
    if figure is None:
        return [None, None, None]
    ci = figure.get("ci") or [None, None]
    return [figure.get("value"), ci[0], ci[1]]


def csv_rows(report: dict[str, Any], section: str) -> list[list[Any]]:
    """The rows (header first) of one section of the report, as the CSV download gives them."""
    if section == "time":
        time = report["time"]
        published = time["published_reference"]["minutes"]
        rows: list[list[Any]] = [[*TIME_COLUMNS, "idle_threshold_seconds", *PUBLISHED_COLUMNS]]
        for condition, summary in time["per_condition"].items():
            reference = published.get(condition, {})
            rows.append(
                [condition, *(summary[key] for key in TIME_KEYS), time["idle_threshold_seconds"],
                 *(reference.get(key) for key in ("mean", "ci_low", "ci_high"))]
            )  # fmt: skip
        return rows
    if section == "edit_mix":
        rows = [["scope", "name", *charts.EDIT_OUTCOMES, "total"]]
        for scope in ("by_condition", "by_annotator", "by_label"):
            for name, mix in report["edit_mix"][scope].items():
                counts = [mix.get(outcome, 0) for outcome in charts.EDIT_OUTCOMES]
                rows.append([scope.removeprefix("by_"), name, *counts, sum(counts)])
        return rows
    if section == "progress":
        rows = [["annotator", "condition", "assigned", "released", "submitted", "skipped"]]
        for annotator, by_condition in sorted(report["progress"].items()):
            for condition, cell in by_condition.items():
                rows.append([annotator, condition, cell["assigned"], cell["released"], cell["submitted"],
                             cell["skipped"]])  # fmt: skip
        return rows
    if section == "disagreement":
        rows = [["document_id", "external_id", "mean_strict_f1"]]
        for document in report["documents_by_disagreement"]:
            rows.append([document["document_id"], document["external_id"], document["mean_strict_f1"]])
        return rows
    if section == "agreement":
        return _agreement_rows(report["agreement"])
    raise ValueError(f"section must be one of {', '.join(CSV_SECTIONS)}")


def _agreement_rows(agreement: dict[str, Any]) -> list[list[Any]]:
    """Long format: one row per (scope, pair, figure, label) so that every figure keeps its interval."""
    rows: list[list[Any]] = [
        ["scope", "annotator_a", "annotator_b", "documents", "figure", "label", "value", "ci_low", "ci_high"]
    ]

    def add(scope: str, a: str, b: str, entry: dict[str, Any]) -> None:
        documents = entry["documents"]
        for family in ("span_f1", "relation_f1", "event_f1", "event_relation_f1"):
            for rule, figures in (entry.get(family) or {}).items():
                rows.append([scope, a, b, documents, f"{family}_{rule}", "", *_ci(figures["overall"])])
                for label, figure in figures["per_label"].items():
                    rows.append([scope, a, b, documents, f"{family}_{rule}", label, *_ci(figure)])
        for variant, figure in entry["token_kappa"].items():
            rows.append([scope, a, b, documents, f"token_kappa_{variant}", "", *_ci(figure)])

    for pair in agreement["pairs"]:
        add("pair", pair["annotators"][0], pair["annotators"][1], pair)
    if agreement["mean_over_pairs"] is not None:
        add("mean_over_pairs", "", "", agreement["mean_over_pairs"])
    if agreement["fleiss_kappa"] is not None:
        fleiss = agreement["fleiss_kappa"]
        rows.append(["all", "", "", fleiss["documents"], f"fleiss_kappa_m{fleiss['m']}", "", *_ci(fleiss)])
    alpha = agreement["krippendorff_alpha"]
    rows.append(["all", "", "", alpha["documents"], "krippendorff_alpha", "", *_ci(alpha)])
    return rows


@router.get("/projects/{project_id}/dashboard.csv")
def dashboard_csv(request: Request, sessions: Sessions, project_id: LeadProjectId) -> Response:
    section = request.query_params.get("section") or ""
    if section not in CSV_SECTIONS:
        raise HTTPException(status_code=422, detail=f"section: must be one of {', '.join(CSV_SECTIONS)}")
    project = project_or_404(sessions, project_id)
    filters, idle = _filters(request, project)
    rows = csv_rows(_report(sessions, project, filters, idle), section)
    return Response(
        csv_text(None, rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="clinann-project-{project_id}-{section}.csv"'},
    )
