"""The dashboard leads with the answer (issue 20): a small first page holding the summary figures, each
the report's own, and the other sections fetched on demand with the same filters, for the project's
leads only."""

from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from app.db.models import AnnotationSet, Assignment, Document, Project, User
from app.services.access import NOT_A_LEAD
from app.services.adjudication import adjudication_queue
from app.services.metrics import notes_awaiting_adjudication
from tests.conftest import log_in, make_lead_of, page
from tests.services.study_fixtures import project_with_pre_labels
from tests.services.test_metrics import simulate
from tests.web import test_dashboard as dashboard_tests
from tests.web.test_dashboard import _report, _submit, section

# The dashboard tests' fixtures: the demo as seeded, and with two notes timed in two conditions.
client, demo, timed_demo = dashboard_tests.client, dashboard_tests.demo, dashboard_tests.timed_demo

FIRST_PAGE_LIMIT = 60_000  # bytes; the demo's first page is about 30 KB (the old page was 80 KB)


def _value(element) -> float:
    return float(element.select_one("[data-value]")["data-value"])


def _interval(element) -> tuple[float, float]:
    found = element.select_one("[data-low]")
    return float(found["data-low"]), float(found["data-high"])


def _waiting_in_queue(sessions, project_id: int) -> int:
    """The adjudication queue's own count: notes with two physicians whose gold is not submitted."""
    return sum(item.gold_status != "submitted" for item in adjudication_queue(sessions, project_id))


@pytest.fixture
def simulated(sessions, accounts, password_hashes) -> int:
    """A finished study through all three conditions (tests/services/test_metrics.py): savings defined."""
    project_id, _ = simulate(sessions, password_hashes["annotator"], seed=3, documents=12)
    make_lead_of(sessions, project_id)
    return project_id


def test_the_first_page_is_small_and_holds_the_reports_savings_and_progress(client, sessions, simulated):
    log_in(client, "lead")
    response = client.get(f"/lead/projects/{simulated}/dashboard")
    assert response.status_code == 200
    assert len(response.content) < FIRST_PAGE_LIMIT
    soup = page(response)
    report = _report(sessions, simulated)
    savings = report["time"]["savings"]
    assert savings["savings"] is not None and savings["ci_low"] is not None
    tile = soup.select_one("[data-testid=summary-savings]")
    assert _value(tile.select_one("[data-figure=savings]")) == savings["savings"]
    assert _interval(tile.select_one("[data-figure=savings_ci]")) == (savings["ci_low"], savings["ci_high"])
    assert tile.select_one("[data-figure=savings]").get_text(strip=True) == f"{savings['savings'] * 100:.1f}%"
    assert "58%" in tile.get_text()
    # Progress: the report's cells summed per condition and per physician.
    progress = report["progress"]
    assigned = sum(c["assigned"] for cells in progress.values() for c in cells.values())
    submitted = sum(c["submitted"] for cells in progress.values() for c in cells.values())
    overall = soup.select_one("[data-testid=summary-progress] [data-figure=submitted]")
    assert (int(overall["data-submitted"]), int(overall["data-assigned"])) == (submitted, assigned) != (0, 0)
    for item in soup.select("[data-testid=progress-by-condition] li"):
        condition = item["data-condition"]
        cells = [cells[condition] for cells in progress.values() if condition in cells]
        assert int(item["data-assigned"]) == sum(c["assigned"] for c in cells)
        assert int(item["data-submitted"]) == sum(c["submitted"] for c in cells)
        assert item.select_one("progress")["value"] == item["data-submitted"]
    rows = soup.select("[data-testid=progress-table] tbody tr[data-annotator]")
    assert sorted(row["data-annotator"] for row in rows) == sorted(progress)
    for row in rows:
        cells = progress[row["data-annotator"]].values()
        assert int(row["data-assigned"]) == sum(c["assigned"] for c in cells)
    # Not on the first page: the sections' tables and a dot per timed note.
    assert soup.select_one("[data-testid=savings-table], [data-testid=agreement-pairs]") is None
    assert not soup.select("[data-testid=time-chart] g[data-series=ours] circle:not([data-mean])")
    waiting = soup.select_one("[data-testid=awaiting-adjudication]")
    assert int(waiting["data-count"]) == _waiting_in_queue(sessions, simulated)


def test_the_summary_agreement_is_the_reports(client, sessions, timed_demo):
    log_in(client, "lead")
    soup = page(client.get(f"/lead/projects/{timed_demo}/dashboard"))
    agreement = _report(sessions, timed_demo)["agreement"]
    strict = agreement["mean_over_pairs"]["span_f1"]["strict"]
    tile = soup.select_one("[data-testid=summary-agreement]")
    figure = tile.select_one("[data-figure=span_f1_strict]")
    assert _value(figure) == strict["overall"]["value"]
    assert _interval(tile) == tuple(strict["overall"]["ci"])
    assert (
        _value(tile.select_one("[data-figure=krippendorff_alpha]"))
        == agreement["krippendorff_alpha"]["value"]
    )
    # The chart per label: one bar per label with the report's value, its CI said in words.
    chart = soup.select_one("svg[data-testid=agreement-chart]")
    bars = {g["data-label"]: float(g["data-value"]) for g in chart.select("g[data-label]")}
    expected = {label: f["value"] for label, f in strict["per_label"].items() if f["value"] is not None}
    assert bars == {**expected, "all labels": strict["overall"]["value"]}
    low, high = strict["overall"]["ci"]
    assert f"all labels: {strict['overall']['value']:.2f} (95% CI {low:.2f} to {high:.2f})" in chart.desc.text


def test_a_fresh_demo_says_in_words_what_cannot_be_computed_yet(client, demo):
    log_in(client, "lead")
    soup = page(client.get(f"/lead/projects/{demo}/dashboard"))
    summary = soup.select_one("[data-testid=dashboard-summary]")
    assert "n/a" not in summary.get_text()
    refine = soup.select_one("[data-testid=time-table] tr[data-condition=refine_llm] td[data-figure=mean]")
    assert refine.get_text(strip=True) == "no submitted note refining LLM pre-labels yet"
    agreement = soup.select_one("[data-testid=summary-agreement] [data-figure=span_f1_strict]")
    assert agreement.get_text(strip=True) == "no note done by two physicians yet"


def test_the_first_page_does_not_grow_with_the_timed_notes(client, sessions, demo, monkeypatch):
    """The old page drew a dot per timed note; the summary draws none, the time section draws them all."""
    log_in(client, "lead")
    with sessions() as db:
        open_sets = db.execute(
            select(AnnotationSet.id, AnnotationSet.annotator_id)
            .join(Document, Document.id == AnnotationSet.document_id)
            .where(
                Document.project_id == demo,
                AnnotationSet.origin == "annotator",
                AnnotationSet.status == "open",
                AnnotationSet.condition.in_(["scratch", "refine_llm"]),
            )
            .order_by(AnnotationSet.id)
        ).all()
    half = len(open_sets) // 2
    sizes = []
    for begin, end in ((0, half), (half, len(open_sets))):
        for index, (set_id, user_id) in enumerate(open_sets[begin:end], start=begin):
            _submit(sessions, set_id, user_id, 30 + index)
        sizes.append(len(client.get(f"/lead/projects/{demo}/dashboard").content))
    # Twice the timed notes, about the same page (digits and the names of physicians behind change).
    assert abs(sizes[1] - sizes[0]) < 1_500, sizes
    dots = section(client, demo, "time").select(
        "[data-testid=time-notes-chart] g[data-series=ours] circle:not([data-mean])"
    )
    timed = _report(sessions, demo)["time"]["minutes"]
    assert len(dots) == sum(len(minutes) for minutes in timed.values()) >= len(open_sets) > 20
    # Past DOTS_LIMIT timed notes the section leaves the dots out too, and says so.
    monkeypatch.setattr("app.web.routers.lead_dashboard.DOTS_LIMIT", len(dots) - 1)
    capped = section(client, demo, "time")
    assert not capped.select("[data-testid=time-notes-chart] g[data-series=ours] circle:not([data-mean])")
    assert f"The {len(dots)} timed notes" in capped.select_one("[data-testid=dots-left-out]").get_text()


def test_each_section_and_the_summary_apply_the_filters(client, sessions, timed_demo):
    log_in(client, "lead")
    filters = {"annotator": "dr.baker", "idle": "120", "label": "Drug"}
    soup = page(client.get(f"/lead/projects/{timed_demo}/dashboard", params=filters))
    # The summary: that physician's progress only, the time at that idle threshold.
    report = _report(sessions, timed_demo, idle=120, annotator="dr.baker", label="Drug")
    assert [r["data-annotator"] for r in soup.select("[data-testid=progress-table] tr[data-annotator]")] == [
        "dr.baker"
    ]
    scratch = report["time"]["per_condition"]["scratch"]
    cell = soup.select_one("[data-testid=time-table] tr[data-condition=scratch] td[data-figure=mean]")
    assert _value(cell) == scratch["mean"]
    # Each section's URL carries the same filters ...
    for details in soup.select("details[data-section]"):
        query = {k: v[0] for k, v in parse_qs(urlsplit(details["hx-get"]).query).items()}
        assert query == {**filters, "section": details["data-section"]}
    # ... and its figures are those of the filtered report.
    time = section(client, timed_demo, "time", **filters)
    cell = time.select_one("[data-testid=time-detail-table] tr[data-condition=scratch] td[data-figure=mean]")
    assert _value(cell) == scratch["mean"]
    edit_mix = section(client, timed_demo, "edit_mix", **filters)
    rows = edit_mix.select("[data-testid=edit-mix-label-table] tbody tr[data-name]")
    assert [r["data-name"] for r in rows] == list(report["edit_mix"]["by_label"]) == ["Drug"]
    agreement = section(client, timed_demo, "agreement", label="Drug")  # needs two physicians
    labels = [r["data-label"] for r in agreement.select("[data-testid=agreement-per-label] tr[data-label]")]
    assert labels == ["Drug", "(all)"]
    batch_only = section(client, timed_demo, "savings", condition="scratch")
    llm = batch_only.select_one("[data-testid=savings-table] tr[data-figure=llm_pipeline_mean] td")
    assert llm.select_one("[data-na]") is not None  # refine_llm filtered out: no LLM pipeline time


def test_a_section_is_only_for_the_projects_leads(client, sessions, demo):
    with sessions.begin() as db:
        other = project_with_pre_labels(db, "Another lead's study", "other", 2).id
    url = f"/lead/projects/{other}/dashboard/section"
    assert client.get(url, params={"section": "time"}).status_code == 303  # not logged in: to the login
    log_in(client, "annotator")
    assert (
        client.get(f"/lead/projects/{demo}/dashboard/section", params={"section": "time"}).status_code == 403
    )
    client.cookies.clear()
    log_in(client, "lead")  # a lead of the demo, not of the other project
    for name in ("time", "agreement", "runs_gold", "no-such-section"):
        refused = client.get(url, params={"section": name})
        assert refused.status_code == 403, name  # access is decided before the section is read
        assert NOT_A_LEAD in refused.text and "Note other-" not in refused.text
    assert (
        client.get(f"/lead/projects/{demo}/dashboard/section", params={"section": "time"}).status_code == 200
    )
    client.cookies.clear()
    log_in(client, "admin")  # admins see every project
    assert client.get(url, params={"section": "time"}).status_code == 200


def test_physicians_behind_and_notes_waiting_for_adjudication(client, sessions, timed_demo):
    with sessions() as db:
        baker = db.scalar(select(User.id).where(User.username == "dr.baker"))
        open_sets = db.scalars(
            select(Assignment.annotation_set_id)
            .join(AnnotationSet, AnnotationSet.id == Assignment.annotation_set_id)
            .where(Assignment.annotator_id == baker, AnnotationSet.status == "open")
            .order_by(Assignment.id)
        ).all()
    for set_id in open_sets[:8]:  # dr.baker races ahead
        _submit(sessions, set_id, baker, 40)
    log_in(client, "lead")
    soup = page(client.get(f"/lead/projects/{timed_demo}/dashboard"))
    progress = _report(sessions, timed_demo)["progress"]
    totals = {
        login: (sum(c["submitted"] for c in cells.values()), sum(c["assigned"] for c in cells.values()))
        for login, cells in progress.items()
    }
    team = sum(s for s, _ in totals.values()) / sum(a for _, a in totals.values())
    # At least one whole note short of the team's pace, the smallest share first.
    expected = sorted((login for login, (s, a) in totals.items() if team * a - s >= 1),
                      key=lambda login: (totals[login][0] / totals[login][1], login))  # fmt: skip
    shown = [item["data-annotator"] for item in soup.select("[data-testid=physician-behind]")]
    assert shown == expected and "dr.baker" not in shown and shown
    # Waiting for adjudication: the queue's count; a submitted adjudication takes its note off.
    waiting = int(soup.select_one("[data-testid=awaiting-adjudication]")["data-count"])
    assert waiting == _waiting_in_queue(sessions, timed_demo) > 0
    first = adjudication_queue(sessions, timed_demo)[0]
    with sessions.begin() as db:
        lead = db.scalar(select(User.id).where(User.username == "lead"))
        db.add(
            AnnotationSet(document_id=first.document_id, origin="gold", annotator_id=lead, status="submitted")
        )
    soup = page(client.get(f"/lead/projects/{timed_demo}/dashboard"))
    after = int(soup.select_one("[data-testid=awaiting-adjudication]")["data-count"])
    assert after == waiting - 1 == _waiting_in_queue(sessions, timed_demo)
    # The batch and physician filters narrow the count; another project's batch counts nothing.
    with sessions() as db:
        batch = db.scalar(select(Document.batch_id).where(Document.project_id == timed_demo))
        other = db.scalar(select(Project.id).where(Project.id != timed_demo))
    assert notes_awaiting_adjudication(sessions, timed_demo, batch_id=batch) == after
    assert notes_awaiting_adjudication(sessions, timed_demo, annotator="nobody") == 0
    if other is not None:
        assert notes_awaiting_adjudication(sessions, other, batch_id=batch) == 0
