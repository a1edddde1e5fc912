"""The lead's dashboard of the study: the metrics report as tables and charts, CSV, a printable page.

Every figure comes from app.services.metrics.project_metrics, the same report the JSON API and the CLI
give, so the three never disagree; this module only parses the filters and lays the report out.

The dashboard leads with a summary (time per note, time saved, agreement, progress, what needs
attention) and folds the rest into sections that the page fetches when the lead opens them
(GET .../dashboard/section?section=NAME with the same filters), so a 10,000-note study's first paint
stays small; the printable report keeps every section unfolded (issue 20).
"""

import math
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import select

from app.db.models import Assignment, Project, User
from app.domain.label_schema import parse_label_schema
from app.domain.note_statistics import evaluation_json
from app.domain.spreadsheet import csv_text
from app.domain.vocabulary import Condition, Role
from app.services import run_reports
from app.services.batches import batch_choices
from app.services.metrics import FilterError, MetricsFilter, notes_awaiting_adjudication, project_metrics
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
# The sections the dashboard folds and loads on demand: name in the URL -> (data-testid, title). The
# printable report lays out the same section bodies (templates/lead/report.html).
DASHBOARD_SECTIONS = {
    "savings": ("savings-section", "Savings of the LLM pipeline"),
    "time": ("time-section", "Time per note, note by note"),
    "edit_mix": ("edit-mix-section", "Edit mix per physician and per label, edit events"),
    "agreement": ("agreement-section", "Agreement between physicians"),
    "disagreement": ("disagreement-section", "Notes by disagreement, worst first"),
    "pre_labels": ("pre-label-section", "Quality of the pre-labels"),
    "physicians_gold": ("physicians-gold-section", "Each physician against gold"),
    "runs_gold": ("runs-gold-section", "Each pre-annotation run against gold"),
}
# A condition in the lead's words, for the summary's sentences.
CONDITION_WORDS = {
    "scratch": "from scratch",
    "refine_llm": "refining LLM pre-labels",
    "refine_human": "refining a colleague's labels",
}
BEHIND_SHOWN = 5  # physicians named as behind in the summary
# Above this many timed notes the dashboard's time section draws no dot per note (10,000 notes in three
# conditions made it 2.2 MB of overlapping dots); the printable report draws them all.
DOTS_LIMIT = 3_000


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
    batches = batch_choices(sessions, project.id)  # neither held, rejected nor empty ones
    with sessions() as db:
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


def _charts(report: dict[str, Any], *, dots: bool = True, time_chart: str = "time-chart") -> dict[str, Any]:
    """The report's charts. Without ``dots`` the time chart leaves out the dot of each timed note (30,000
    marks in a 10,000-note study), as the dashboard's summary does; the dashboard's time section draws
    them under an id of its own (``time_chart``), since both can be on the page at once."""
    time = report["time"]
    agreement = report["agreement"]["mean_over_pairs"]
    return {
        "time": charts.time_chart(
            time["per_condition"],
            time["published_reference"]["minutes"],
            document_minutes=time.get("minutes") if dots else None,
            chart_id=time_chart,
            testid=time_chart,
        ),
        "edit_mix": charts.edit_mix_chart(report["edit_mix"]["by_condition"]),
        "agreement": charts.agreement_chart(
            agreement["span_f1"]["strict"]["per_label"], agreement["span_f1"]["strict"]["overall"]
        )
        if agreement
        else None,
    }


def _query(filters: MetricsFilter, idle: float | None) -> dict[str, Any]:
    """The query string of the figures shown, for the download, report and section links."""
    query = {
        "batch_id": filters.batch_id,
        "annotator": filters.annotator,
        "label": filters.label,
        "condition": filters.condition,
        # Only an idle threshold the lead chose: the project's own may lie outside what the form accepts.
        "idle": None if idle is None else f"{idle:.15g}",
    }
    return {k: v for k, v in query.items() if v is not None}


def _context(request: Request, sessions, project_id: int, *, runs: bool = True) -> dict[str, Any]:
    project = project_or_404(sessions, project_id)
    filters, idle = _filters(request, project)
    report = _report(sessions, project, filters, idle)
    return {
        "project": project,
        "filters": filters,
        "report": report,
        "reasons": savings_reasons(report["time"]["savings"]),
        "query": _query(filters, idle),
        "idle_value": f"{report['time']['idle_threshold_seconds']:.15g}",
        "sections": CSV_SECTIONS,
        "disagreement_rows": DISAGREEMENT_ROWS,
        "runs_gold": runs_against_gold(sessions, project, filters.batch_id) if runs else None,
    }


def _time_reason(condition: str, summary: dict[str, Any]) -> dict[str, str]:
    """Why a condition's mean or CI cannot be given yet, in plain words (empty when both can)."""
    words = CONDITION_WORDS.get(condition, condition)
    reasons = {}
    if summary["mean"] is None:
        reasons["mean"] = f"no submitted note {words} yet"
    if summary["ci_low"] is None:
        reasons["ci"] = reasons.get("mean") or "an interval needs a second note"
    return reasons


def dashboard_summary(report: dict[str, Any], awaiting_adjudication: int) -> dict[str, Any]:
    """What the dashboard shows first, all taken from the report: each condition's minutes per note, the
    savings, the agreement, the progress per condition and per physician, and what needs attention.
    Progress follows the condition filter too (the report's progress table lists every condition)."""
    time = report["time"]
    published = time["published_reference"]
    condition_filter = report["filters"]["condition"]
    conditions = []
    for condition, summary in time["per_condition"].items():
        if condition_filter is not None and condition != condition_filter:
            continue
        conditions.append(
            {
                "condition": condition,
                "words": CONDITION_WORDS.get(condition, condition),
                "figures": summary,
                "published": published["minutes"].get(condition),
                "reasons": _time_reason(condition, summary),
            }
        )
    by_condition: dict[str, dict[str, int]] = {}
    physicians = []
    for login, cells in sorted(report["progress"].items()):
        total = {"assigned": 0, "submitted": 0, "skipped": 0, "released": 0}
        shown = {}
        for condition, cell in cells.items():
            if condition_filter is not None and condition != condition_filter:
                continue
            shown[condition] = cell
            pooled = by_condition.setdefault(condition, {"assigned": 0, "submitted": 0, "skipped": 0})
            for key in pooled:
                pooled[key] += cell[key]
            for key in total:
                total[key] += cell[key]
        if total["assigned"]:
            physicians.append({"login": login, "cells": shown, **total})
    order = {c: i for i, c in enumerate(CONDITIONS)}
    by_condition = dict(sorted(by_condition.items(), key=lambda item: order.get(item[0], len(order))))
    assigned = sum(p["assigned"] for p in physicians)
    submitted = sum(p["submitted"] for p in physicians)
    team_share = submitted / assigned if assigned else None
    # Behind: at least one whole note short of the team's pace (the team's share of their assigned notes),
    # the smallest share first; a rounding's worth below the team is not behind.
    behind = sorted(
        (
            p
            for p in physicians
            if team_share is not None and team_share * p["assigned"] - p["submitted"] >= 1
        ),
        key=lambda p: (p["submitted"] / p["assigned"], -p["assigned"], p["login"]),
    )
    mean = report["agreement"]["mean_over_pairs"]
    savings = time["savings"]
    savings_words = {"human": "none yet", "llm": "none yet"}
    if savings["human_pipeline_mean"] is None:
        savings_words["savings"] = (
            "Not yet: no note has been done both from scratch and by refining a colleague's labels"
        )
    elif savings["llm_pipeline_mean"] is None:
        savings_words["savings"] = "Not yet: no submitted note refining LLM pre-labels"
    else:
        savings_words["savings"] = "Undefined: the human pipeline took 0 minutes"
    savings_words["ci"] = "an interval needs more notes in each pipeline"
    return {
        "conditions": conditions,
        "savings": savings,
        "savings_words": savings_words,
        "published": published,
        "agreement": None if mean is None else mean["span_f1"]["strict"]["overall"],
        "agreement_documents": 0 if mean is None else mean["documents"],
        "alpha": report["agreement"]["krippendorff_alpha"],
        "progress": {"assigned": assigned, "submitted": submitted, "by_condition": by_condition},
        "physicians": physicians,
        "behind": behind[:BEHIND_SHOWN],
        "behind_count": len(behind),
        "team_share": team_share,
        "awaiting_adjudication": awaiting_adjudication,
        "condition_words": CONDITION_WORDS,
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
    """The summary and the folded sections; an htmx request (the filter form) gets the figures block."""
    context = _context(request, sessions, project_id, runs=False)
    filters: MetricsFilter = context["filters"]
    awaiting = notes_awaiting_adjudication(
        sessions, project_id, batch_id=filters.batch_id, annotator=filters.annotator
    )
    context["summary"] = dashboard_summary(context["report"], awaiting)
    context["charts"] = _charts(context["report"], dots=False)
    context["dashboard_sections"] = DASHBOARD_SECTIONS
    if request.headers.get("HX-Request"):
        return render(request, "lead/dashboard.html", context, block_name="figures")
    context["choices"] = _choices(sessions, context["project"])
    return render(request, "lead/dashboard.html", context)


@router.get("/projects/{project_id}/dashboard/section")
def dashboard_section(request: Request, sessions: Sessions, project_id: LeadProjectId) -> Response:
    """One folded section of the dashboard (``section`` in the query string), with the same filters,
    as the page's htmx fetches it when the lead opens the section."""
    section = request.query_params.get("section") or ""
    if section not in DASHBOARD_SECTIONS:
        raise HTTPException(
            status_code=422, detail=f"section: must be one of {', '.join(DASHBOARD_SECTIONS)}"
        )
    context = _context(request, sessions, project_id, runs=section == "runs_gold")
    context["charts"] = {}
    if section == "time":
        timed = sum(len(minutes) for minutes in context["report"]["time"]["minutes"].values())
        dots = timed <= DOTS_LIMIT
        context["charts"] = _charts(context["report"], dots=dots, time_chart="time-notes-chart")
        context["charts"]["dots_left_out"] = None if dots else timed
    context["section"] = section
    return render(request, "lead/dashboard.html", context, block_name="section")


@router.get("/projects/{project_id}/report")
def printable_report(request: Request, sessions: Sessions, project_id: LeadProjectId) -> Response:
    context = _context(request, sessions, project_id)
    context["charts"] = _charts(context["report"])
    return render(request, "lead/report.html", context)


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
