"""The lead's dashboard: the metrics report as tables, SVG charts, CSV and a printable page, over HTTP.

The dashboard's first page holds the summary; the other sections come from .../dashboard/section
(``section(...)`` below fetches one as the page's htmx does), so each figure is read where it is shown."""

import csv
import io
import re
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.db.models import AnnotationSet, Batch, Document, Project
from app.demo.seed import DEMO_PROJECT, seed_demo
from app.domain.label_schema import parse_study_settings
from app.services import editing
from app.services.metrics import MetricsFilter, project_metrics
from app.web import charts
from tests.conftest import log_in, page

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
SECTIONS = [
    "dashboard-filters", "dashboard-summary", "summary-savings", "summary-agreement", "summary-progress",
    "summary-attention", "progress-section", "progress-table", "time-section", "time-table", "time-chart",
    "savings-section", "edit-mix-section", "edit-mix-chart", "edit-mix-table", "agreement-chart",
    "pre-label-section", "physicians-gold-section", "agreement-section", "disagreement-section",
    "runs-gold-section",
]  # fmt: skip
# What each folded section holds once it is loaded.
SECTION_PARTS = {
    "savings": ["savings-table", "direct-table"],
    "time": ["time-detail-table", "time-notes-chart"],
    "edit_mix": ["edit-mix-annotator-table", "edit-mix-label-table", "edit-events-table"],
    "agreement": ["agreement-matrix", "agreement-pairs", "agreement-summary"],
    "disagreement": ["disagreement-table"],
    "pre_labels": ["pre-final", "pre-gold"],
    "physicians_gold": [],
    "runs_gold": ["run-gold"],
}
# (condition, seconds from open to submit) of the two notes each physician submits in `timed_demo`:
# one gap each, so the idle threshold caps it whole (a 90 s gap counts 60 s at idle 60, 90 s at 120).
VALUE_CI = ["value", "ci_low", "ci_high"]
TIMED = {"scratch": (90, 120), "refine_llm": (30, 45)}


@pytest.fixture
def client(web) -> TestClient:
    return web


@pytest.fixture
def demo(sessions, accounts, password_hashes, monkeypatch) -> int:
    # The demo's physicians never log in here: skip hashing their passwords (argon2 is slow on purpose).
    monkeypatch.setattr("app.demo.seed.hash_password", lambda password: password_hashes["annotator"])
    seed_demo(sessions)
    with sessions() as db:
        return db.scalar(select(Project.id).where(Project.name == DEMO_PROJECT))


def _submit(sessions, set_id: int, user_id: int, seconds: float) -> None:
    """Open the note, then submit it `seconds` later in the same page session."""
    page_session = f"page-{set_id}"
    editing.record_time_events(
        sessions, user_id, set_id, page_session, [editing.TimeEventIn("open", f"open-{set_id}", 0.0)]
    )
    with sessions() as db:
        version = db.get(AnnotationSet, set_id).version
    request = editing.EditRequest(
        kind="submit", client_id=f"submit-{set_id}", page_session=page_session, version=version,
        monotonic_ms=seconds * 1000.0,
    )  # fmt: skip
    editing.apply_edit(sessions, user_id, set_id, request, now=NOW)


@pytest.fixture
def timed_demo(sessions, demo) -> int:
    """The demo with two notes each done from scratch and as refine_llm (by two physicians), timed."""
    with sessions() as db:
        rows = db.execute(
            select(
                AnnotationSet.id,
                AnnotationSet.document_id,
                AnnotationSet.condition,
                AnnotationSet.annotator_id,
            )
            .join(Document, Document.id == AnnotationSet.document_id)
            .where(
                Document.project_id == demo,
                AnnotationSet.origin == "annotator",
                AnnotationSet.status != "submitted",
                AnnotationSet.condition.in_(list(TIMED)),
            )
            .order_by(AnnotationSet.document_id)
        ).all()
    by_document: dict[int, dict[str, tuple[int, int]]] = {}
    for set_id, document_id, condition, annotator_id in rows:
        by_document.setdefault(document_id, {})[condition] = (set_id, annotator_id)
    both = [sets for sets in by_document.values() if set(sets) == set(TIMED)][:2]
    assert len(both) == 2
    for index, sets in enumerate(both):
        for condition, (set_id, annotator_id) in sets.items():
            _submit(sessions, set_id, annotator_id, TIMED[condition][index])
    return demo


def _report(sessions, project_id: int, idle=None, **filters):
    with sessions() as db:
        seed = parse_study_settings(db.get(Project, project_id).study_settings).bootstrap_seed
    return project_metrics(
        sessions, project_id, idle_threshold_seconds=idle, filters=MetricsFilter(**filters), seed=seed
    )


def section(client, project_id: int, name: str, **filters):
    """One folded section as the page's htmx fetches it when the lead opens it."""
    response = client.get(
        f"/lead/projects/{project_id}/dashboard/section",
        params={"section": name, **filters},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200, (name, response.text[:300])
    return page(response)


def _time_cell(soup, condition: str, figure: str):
    return soup.select_one(
        f"[data-testid=time-table] tr[data-condition={condition}] td[data-figure={figure}]"
    )


def test_the_lead_sees_every_section_and_an_annotator_is_refused(client, timed_demo):
    log_in(client, "annotator")
    assert client.get(f"/lead/projects/{timed_demo}/dashboard").status_code == 403
    assert client.get(f"/lead/projects/{timed_demo}/dashboard.csv?section=time").status_code == 403
    assert client.get(f"/lead/projects/{timed_demo}/report").status_code == 403
    client.cookies.clear()
    log_in(client, "lead")
    response = client.get(f"/lead/projects/{timed_demo}/dashboard")
    assert response.status_code == 200
    soup = page(response)
    missing = [testid for testid in SECTIONS if soup.select_one(f"[data-testid={testid}]") is None]
    assert missing == []
    # Each folded section is a <details> that fetches its body (with the page's filters) when opened.
    for name, parts in SECTION_PARTS.items():
        details = soup.select_one(f"details[data-section={name}]")
        assert details["hx-get"].startswith(f"/lead/projects/{timed_demo}/dashboard/section?")
        assert f"section={name}" in details["hx-get"] and details["hx-trigger"] == "toggle once"
        assert not [p for p in parts if soup.select_one(f"[data-testid={p}]")], name  # not on first paint
        fragment = section(client, timed_demo, name)
        assert [p for p in parts if fragment.select_one(f"[data-testid={p}]") is None] == [], name
        assert fragment.select_one("header, form, [data-testid=dashboard-summary]") is None
    assert client.get("/lead/projects/999999/dashboard").status_code == 404
    assert client.get("/lead/projects/999999/dashboard/section?section=time").status_code == 404


@pytest.mark.parametrize(
    "filters",
    [{}, {"condition": "scratch"}, {"annotator": "dr.adams"}, {"label": "Drug"}],
    ids=["all", "condition", "annotator", "label"],
)
def test_the_time_table_shows_the_reports_figures(client, sessions, timed_demo, filters):
    log_in(client, "lead")
    soup = page(client.get(f"/lead/projects/{timed_demo}/dashboard", params=filters))
    report = _report(sessions, timed_demo, **filters)
    # The summary shows the chosen condition only (the others are filtered out, not "not done yet").
    shown = [row["data-condition"] for row in soup.select("[data-testid=time-table] tbody tr")]
    expected_rows = [c for c in report["time"]["per_condition"] if filters.get("condition") in (None, c)]
    assert shown == expected_rows
    for condition, summary in report["time"]["per_condition"].items():
        if condition not in shown:
            continue
        assert _time_cell(soup, condition, "n").get_text(strip=True) == str(summary["n"])
        mean = _time_cell(soup, condition, "mean")
        if summary["mean"] is None:
            assert mean.select_one("[data-na]") is not None
        else:
            assert float(mean.select_one("[data-value]")["data-value"]) == summary["mean"]
            assert mean.get_text(strip=True) == f"{summary['mean']:.2f}"
        interval = _time_cell(soup, condition, "ci").select_one("[data-low]")
        if summary["ci_low"] is not None:
            assert (float(interval["data-low"]), float(interval["data-high"])) == (
                summary["ci_low"], summary["ci_high"]
            )  # fmt: skip
    # The chart's mean marks are the report's means too, in the summary and in the time section.
    detail = section(client, timed_demo, "time", **filters)
    for chart, where in (("time-chart", soup), ("time-notes-chart", detail)):
        marks = {
            g["data-condition"]: float(g.select_one("circle[data-mean]")["data-mean"])
            for g in where.select(f"[data-testid={chart}] g[data-series=ours]")
            if g.select_one("circle[data-mean]")
        }
        expected = {c: s["mean"] for c, s in report["time"]["per_condition"].items() if s["mean"] is not None}
        assert marks == expected, chart
    # The summary's chart draws no dot per note (they would grow with the study) ...
    assert not soup.select("[data-testid=time-chart] g[data-series=ours] circle:not([data-mean])")
    # ... the time section's draws each timed note beside its condition's mean, with the median and SD.
    for condition, minutes in report["time"]["minutes"].items():
        group = detail.select_one(
            f"[data-testid=time-notes-chart] g[data-series=ours][data-condition={condition}]"
        )
        assert len(group.select("circle:not([data-mean])")) == len(minutes) > 0
    for condition, summary in report["time"]["per_condition"].items():
        cell = detail.select_one(
            f"[data-testid=time-detail-table] tr[data-condition={condition}] td[data-figure=median]"
        )
        assert (summary["median"] is None) == (cell.select_one("[data-value]") is None)
        if summary["median"] is not None:
            assert float(cell.select_one("[data-value]")["data-value"]) == summary["median"]


@pytest.mark.parametrize(
    ("idle", "scratch_minutes"),
    [
        (None, (60 + 60) / 2 / 60),  # the project's 60 s: both gaps (90 s, 120 s) cut to 60 s
        ("60", (60 + 60) / 2 / 60),
        ("120", (90 + 120) / 2 / 60),
        ("100", (90 + 100) / 2 / 60),
        ("20", (20 + 20) / 2 / 60),
    ],
)
def test_the_idle_threshold_recomputes_the_time_figures(client, timed_demo, idle, scratch_minutes):
    log_in(client, "lead")
    soup = page(client.get(f"/lead/projects/{timed_demo}/dashboard", params={"idle": idle} if idle else {}))
    mean = float(_time_cell(soup, "scratch", "mean").select_one("[data-value]")["data-value"])
    assert mean == pytest.approx(scratch_minutes)
    refine_llm = float(_time_cell(soup, "refine_llm", "mean").select_one("[data-value]")["data-value"])
    capped = [min(s, float(idle or 60)) for s in TIMED["refine_llm"]]
    assert refine_llm == pytest.approx(sum(capped) / 2 / 60)
    assert soup.select_one("[data-testid=idle-threshold]").get_text() == (idle or "60")
    assert soup.select_one("input[name=idle]")["value"] == (idle or "60")


def test_the_filter_form_keeps_its_values(client, sessions, timed_demo):
    with sessions() as db:
        batch_id = db.scalar(select(Batch.id).where(Batch.project_id == timed_demo))
    log_in(client, "lead")
    chosen = {"batch_id": str(batch_id), "annotator": "dr.baker", "label": "Route", "condition": "refine_llm"}
    soup = page(client.get(f"/lead/projects/{timed_demo}/dashboard", params={**chosen, "idle": "75"}))
    form = soup.select_one("form[data-testid=dashboard-filters]")
    assert form["method"] == "get"
    for name, value in chosen.items():
        assert form.select_one(f"select[name={name}] option[selected]")["value"] == value
    assert form.select_one("input[name=idle]")["value"] == "75"
    # Every download link carries the same filters.
    link = soup.select_one("[data-testid=csv-time]")["href"]
    assert all(f"{name}={value}" in link for name, value in chosen.items()) and "idle=75" in link


def test_the_time_csv_has_a_header_and_one_row_per_condition_with_the_same_numbers(
    client, sessions, timed_demo
):
    log_in(client, "lead")
    response = client.get(
        f"/lead/projects/{timed_demo}/dashboard.csv", params={"section": "time", "idle": "120"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert re.match(r'attachment; filename="[^"]+\.csv"', response.headers["content-disposition"])
    rows = list(csv.DictReader(io.StringIO(response.text)))
    report = _report(sessions, timed_demo, idle=120)
    assert [row["condition"] for row in rows] == list(report["time"]["per_condition"])
    for row in rows:
        summary = report["time"]["per_condition"][row["condition"]]
        for column, key in [("n", "n"), ("mean_minutes", "mean"), ("median_minutes", "median"),
                            ("sd_minutes", "sd"), ("ci_low", "ci_low"), ("ci_high", "ci_high")]:  # fmt: skip
            assert (float(row[column]) if row[column] else None) == summary[key], (row["condition"], column)
        assert float(row["idle_threshold_seconds"]) == 120
    scratch = next(row for row in rows if row["condition"] == "scratch")
    assert float(scratch["mean_minutes"]) == pytest.approx((90 + 120) / 2 / 60)
    assert float(scratch["published_mean"]) == 17.6


@pytest.mark.parametrize(
    ("section", "header"),
    [
        ("progress", ["annotator", "condition", "assigned", "released", "submitted", "skipped"]),
        ("edit_mix", ["scope", "name", *charts.EDIT_OUTCOMES, "total"]),
        ("agreement", ["scope", "annotator_a", "annotator_b", "documents", "figure", "label", *VALUE_CI]),
        ("disagreement", ["document_id", "external_id", "mean_strict_f1"]),
    ],
)
def test_each_csv_section_has_its_header_and_the_reports_rows(client, sessions, timed_demo, section, header):
    log_in(client, "lead")
    response = client.get(f"/lead/projects/{timed_demo}/dashboard.csv", params={"section": section})
    assert response.status_code == 200
    assert section in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == header
    report = _report(sessions, timed_demo)
    if section == "progress":
        expected = sum(len(by_condition) for by_condition in report["progress"].values())
        assert len(rows) - 1 == expected
        adams = next(r for r in rows if r[:2] == ["dr.adams", "scratch"])
        assert int(adams[2]) == report["progress"]["dr.adams"]["scratch"]["assigned"]
    elif section == "disagreement":
        assert [int(r[0]) for r in rows[1:]] == [
            d["document_id"] for d in report["documents_by_disagreement"]
        ]
        assert len(rows) - 1 == 2  # the two notes done by two physicians
    elif section == "agreement":
        pairs = report["agreement"]["pairs"]
        assert any(pair["documents"] for pair in pairs)
        for pair in pairs:
            strict = next(
                r for r in rows if r[:3] == ["pair", *pair["annotators"]] and r[4:6] == ["span_f1_strict", ""]
            )
            value = pair["span_f1"]["strict"]["overall"]["value"]
            assert (float(strict[6]) if strict[6] else None) == value
    else:
        refine = next(r for r in rows if r[:2] == ["condition", "refine_llm"])
        mix = report["edit_mix"]["by_condition"]["refine_llm"]
        counts = refine[2 : 2 + len(charts.EDIT_OUTCOMES)]
        assert [int(v) for v in counts] == [mix[o] for o in charts.EDIT_OUTCOMES]
        assert int(refine[-1]) == sum(mix[o] for o in charts.EDIT_OUTCOMES)  # total, undecided included


def test_the_charts_are_inline_svg_that_load_nothing(client, timed_demo):
    log_in(client, "lead")
    response = client.get(f"/lead/projects/{timed_demo}/dashboard")
    soup = page(response)
    time_section = section(client, timed_demo, "time")
    for testid, where in (("time-chart", soup), ("edit-mix-chart", soup), ("agreement-chart", soup),
                          ("time-notes-chart", time_section)):  # fmt: skip
        svg = where.select_one(f"svg[data-testid={testid}]")
        assert svg is not None and svg["role"] == "img" and svg["aria-label"]
        title_id, desc_id = svg["aria-labelledby"].split()
        assert svg.select_one(f"title[id={title_id}]").get_text() and svg.select_one(f"desc[id={desc_id}]")
        markup = str(svg)
        assert not re.search(r"https?:|href|src=|url\(|<script|style=", markup), testid
    edit_mix = soup.select_one("svg[data-testid=edit-mix-chart]")
    assert edit_mix.select("rect[data-outcome]"), "the refine_llm bar has segments"
    # No inline script anywhere on the page (the CSP would block it).
    assert all(script.get("src") and not script.get_text(strip=True) for script in soup.select("script"))
    assert not any(d.has_attr("open") for d in soup.select("details"))  # folded on screen
    assert not soup.select("[style]")


def test_chart_text_is_escaped():
    hostile = '<script>alert("x")</script>'
    summary = {"n": 0, "mean": None, "median": None, "sd": None, "ci_low": None, "ci_high": None}
    for svg in (
        charts.time_chart({hostile: summary}, {}),
        charts.edit_mix_chart({hostile: {"kept": 1}}),
        charts.agreement_chart({hostile: {"value": 0.5, "ci": [0.4, 0.6]}}),
    ):
        assert "<script>" not in str(svg) and "&lt;script&gt;" in str(svg)


@pytest.mark.parametrize(
    ("high", "ticks"),
    [
        (0, [0.0, 1.0]),
        (1.75, [0.0, 0.5, 1.0, 1.5, 2.0]),
        (19.8, [0.0, 5.0, 10.0, 15.0, 20.0]),
        (20, [0.0, 5.0, 10.0, 15.0, 20.0]),
        (33, [0.0, 10.0, 20.0, 30.0, 40.0]),
        (0.3, [0.0, 0.1, 0.2, 0.3]),
    ],
)
def test_axis_ticks_are_round_minutes_covering_the_data(high, ticks):
    assert charts.nice_ticks(high) == pytest.approx(ticks)


def test_undefined_savings_show_n_a_with_a_reason(client, demo):
    log_in(client, "lead")  # the demo as seeded: nothing timed yet
    summary = page(client.get(f"/lead/projects/{demo}/dashboard")).select_one("[data-testid=summary-savings]")
    # The summary says why in plain words, with no bare "n/a" and no 0.
    figure = summary.select_one("[data-figure=savings]")
    assert figure.select_one("[data-na]") is not None and "n/a" not in summary.get_text()
    assert "no note has been done both from scratch and by refining a colleague's labels" in figure.get_text()
    assert "58%" in summary.select_one("[data-figure=published_savings]").get_text()
    soup = section(client, demo, "savings")
    savings = soup.select_one("[data-testid=savings-table] tr[data-figure=savings] td")
    assert savings.select_one("[data-na]") is not None
    assert "no note has both a scratch and a refine_human time" in savings.get_text()
    wilcoxon = soup.select_one("[data-testid=savings-table] tr[data-figure=wilcoxon] td").get_text()
    assert "n/a" in wilcoxon and "both pipelines" in wilcoxon
    assert "0.0" not in savings.get_text()


def test_the_direct_comparison_is_paired_when_the_notes_are_shared(client, sessions, timed_demo):
    log_in(client, "lead")
    soup = section(client, timed_demo, "savings", idle="120")
    direct = _report(sessions, timed_demo, idle=120)["time"]["savings"]["direct"]
    assert soup.select_one("[data-testid=direct-design]").get_text() == direct["design"] == "paired"
    difference = soup.select_one("[data-testid=direct-table] tr[data-figure=difference] [data-value]")
    assert float(difference["data-value"]) == pytest.approx(((90 + 120) - (30 + 45)) / 2 / 60)


def test_the_agreement_matrix_has_the_pairs_strict_f1(client, sessions, timed_demo):
    log_in(client, "lead")
    soup = section(client, timed_demo, "agreement")
    agreement = _report(sessions, timed_demo)["agreement"]
    matrix = soup.select_one("[data-testid=agreement-matrix]")
    shared = [pair for pair in agreement["pairs"] if pair["documents"]]
    assert shared
    for pair in agreement["pairs"]:
        a, b = pair["annotators"]
        value = pair["span_f1"]["strict"]["overall"]["value"]
        for row, column in ((a, b), (b, a)):
            cell = matrix.select_one(f"tr[data-annotator='{row}'] td[data-annotator='{column}']")
            if value is None:
                assert cell.select_one("[data-na]") is not None
            else:
                assert float(cell.select_one("[data-value]")["data-value"]) == value
    bootstrap = soup.select_one("[data-testid=agreement-bootstrap]").get_text()
    assert f"seed {agreement['bootstrap']['seed']}," in bootstrap
    assert "inflated" in soup.select_one("[data-testid=kappa-notes]").get_text()


def test_the_printable_report_has_the_figures_and_how_they_were_made_without_the_form(client, timed_demo):
    log_in(client, "lead")
    response = client.get(
        f"/lead/projects/{timed_demo}/report", params={"idle": "120", "condition": "scratch"}
    )
    assert response.status_code == 200
    soup = page(response)
    assert soup.select_one("[data-testid=dashboard-filters]") is None and soup.select_one("form") is None
    assert soup.select_one("svg[data-testid=time-chart]") is not None
    assert soup.select_one("[data-testid=agreement-matrix]") is not None
    assert soup.select_one("[data-testid=schema-version]").get_text() == "clinann.metrics/1"
    assert soup.select_one("[data-testid=generated-at]").get_text()
    assert "condition = scratch" in soup.select_one("[data-testid=report-filters]").get_text()
    assert soup.select_one("[data-testid=report-seed]").get_text() == str(
        parse_study_settings({}).bootstrap_seed
    )
    assert "agreement 1000" in soup.select_one("[data-testid=report-resamples]").get_text()
    assert soup.select_one("link[rel=stylesheet]")["href"].startswith("/static/")
    assert soup.select("details") and all(d.has_attr("open") for d in soup.select("details"))
    mean = float(_time_cell(soup, "scratch", "mean").select_one("[data-value]")["data-value"])
    assert mean == pytest.approx((90 + 120) / 2 / 60)


def test_an_htmx_request_gets_only_the_figures(client, timed_demo):
    log_in(client, "lead")
    response = client.get(f"/lead/projects/{timed_demo}/dashboard", headers={"HX-Request": "true"})
    soup = page(response)
    assert soup.select_one("[data-testid=dashboard-figures]") and soup.select_one("[data-testid=time-table]")
    assert soup.select_one("[data-testid=dashboard-summary]") and soup.select("details[data-section]")
    assert soup.select_one("form") is None and soup.select_one("header") is None


# (page, query, the field the 422 must name); one set-up for all, each case named when it fails.
BAD_FILTERS = [
    ("dashboard", {"idle": "0"}, "idle"),
    ("dashboard", {"idle": "3601"}, "idle"),
    ("dashboard", {"idle": "soon"}, "idle"),
    ("dashboard", {"idle": "nan"}, "idle"),
    ("dashboard.csv", {"section": "time", "idle": "-5"}, "idle"),
    ("report", {"idle": "inf"}, "idle"),
    ("dashboard.csv", {"section": "everything"}, "section"),
    ("dashboard.csv", {}, "section"),
    ("dashboard", {"condition": "dictation"}, "condition"),
    ("dashboard", {"batch_id": "first"}, "batch_id"),
    ("dashboard", {"label": "Vitamin"}, "label"),
    ("dashboard/section", {"section": "time", "idle": "0"}, "idle"),
    ("dashboard/section", {"section": "agreement", "condition": "dictation"}, "condition"),
    ("dashboard/section", {"section": "everything"}, "section"),
    ("dashboard/section", {}, "section"),
]


def test_a_bad_filter_is_refused_naming_it(client, demo):
    log_in(client, "lead")
    for path, params, field in BAD_FILTERS:
        response = client.get(f"/lead/projects/{demo}/{path}", params=params)
        assert response.status_code == 422, (path, params)
        message = page(response).select_one("[data-testid=error-page]").get_text()
        assert f"{field}:" in message, (path, params, message)


def test_the_idle_bounds_are_accepted(client, timed_demo):
    log_in(client, "lead")
    for idle in ("1", "3600"):
        assert client.get(f"/lead/projects/{timed_demo}/dashboard", params={"idle": idle}).status_code == 200


def test_a_csv_cell_that_looks_like_a_formula_is_kept_as_text(client, sessions, timed_demo):
    ranked = _report(sessions, timed_demo)["documents_by_disagreement"]
    with sessions.begin() as db:
        db.get(Document, ranked[0]["document_id"]).external_id = "=HYPERLINK(1)"
    log_in(client, "lead")
    response = client.get(f"/lead/projects/{timed_demo}/dashboard.csv", params={"section": "disagreement"})
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[1][1] == "'=HYPERLINK(1)"


def test_each_pre_annotation_run_is_shown_against_gold(client, sessions, demo):
    """The demo's pre-labels against its gold: strict counts as exact (label, start, end) matches,
    counted here directly from the stored spans."""
    from app.db.models import PreAnnotationRun, Span, SpanFragment

    def exact(origin: str) -> set[tuple]:
        with sessions() as db:
            rows = db.execute(
                select(AnnotationSet.document_id, Span.label, SpanFragment.start, SpanFragment.end)
                .join(Span, Span.annotation_set_id == AnnotationSet.id)
                .join(SpanFragment, SpanFragment.span_id == Span.id)
                .where(AnnotationSet.origin == origin)
            ).all()
        return set(rows)

    gold, pre = exact("gold"), exact("pre_annotation")
    log_in(client, "lead", "lead-password")
    html = section(client, demo, "runs_gold")
    with sessions() as db:
        run_name = db.scalar(select(PreAnnotationRun.name))
    [run] = html.select("[data-testid=run-gold]")
    assert run["data-run"] == run_name
    strict = run.select_one("[data-testid=run-gold-table] tr[data-mode=strict]")
    tp, fp, fn = (int(cell.text) for cell in strict.select("td")[:3])
    assert (tp, fp, fn) == (len(gold & pre), len(pre - gold), len(gold - pre))
    assert tp > 0 and fp > 0 and fn > 0  # the simulated LLM is imperfect both ways
