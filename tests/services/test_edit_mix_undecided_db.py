"""A note submitted with pre-labels still pending: the report (JSON, CSV, chart and the dashboard's
table) counts them as undecided, never as kept."""

import hashlib
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from app.db.models import AnnotationSet, Document
from app.domain.spans import Fragment, SpanData
from app.domain.vocabulary import Condition, SetOrigin, SetStatus, SpanStatus
from app.services import editing
from app.services.annotation_sets import add_spans, assign
from app.services.metrics import project_metrics
from app.web import charts
from app.web.routers.lead_dashboard import csv_rows
from tests.conftest import log_in, make_lead_of, page
from tests.services.editing_fixtures import ASPIRIN, METFORMIN, NOTE, build_world

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=1)  # every submission has settled: records are stored, then read back
FAST = {"time_resamples": 50, "agreement_resamples": 10}
_ids = itertools.count(1)
PO, BID = NOTE.index("PO"), NOTE.index("BID")
PRE_LABELS = [  # (label, start, end): four pending pre-labels of the study's base
    ("Drug", METFORMIN, METFORMIN + 9),
    ("Strength", METFORMIN + 10, METFORMIN + 16),
    ("Route", PO, PO + 2),
    ("Frequency", BID, BID + 3),
]


def edit(sessions, world, set_id: int, kind: str, **fields) -> editing.EditOutcome:
    with sessions() as db:
        version = db.get(AnnotationSet, set_id).version
    request = editing.EditRequest(
        kind=kind, client_id=f"u{next(_ids)}", page_session="page-1", version=version,
        monotonic_ms=float(next(_ids)), **fields,
    )  # fmt: skip
    return editing.apply_edit(sessions, world.annotator_id, set_id, request, now=NOW)


@pytest.fixture
def submitted(sessions, password_hashes):
    """A refine_llm note of four pre-labels: the physician accepts the Drug, adds aspirin and submits
    with Strength, Route and Frequency still pending. Returns (world, set id)."""
    world = build_world(sessions, password_hashes["annotator"])
    with sessions.begin() as db:
        document = Document(
            project_id=world.project_id, external_id="undecided", text=NOTE,
            sha256=hashlib.sha256(NOTE.encode()).hexdigest(),
        )  # fmt: skip
        db.add(document)
        db.flush()
        pre = AnnotationSet(
            document_id=document.id,
            origin=SetOrigin.pre_annotation.value,
            pre_annotation_run_id=db.get(AnnotationSet, world.pre_set_id).pre_annotation_run_id,
            status=SetStatus.submitted.value,
        )
        db.add(pre)
        db.flush()
        spans = [SpanData(label, (Fragment(start, end),)) for label, start, end in PRE_LABELS]
        add_spans(db, pre, spans, status=SpanStatus.pending)
        set_id = assign(
            db, project_id=world.project_id, document_id=document.id, annotator_id=world.annotator_id,
            condition=Condition.refine_llm, queue_position=10, base_set=pre,
        ).annotation_set_id  # fmt: skip
    state = editing.stored_state(sessions, set_id)
    drug = next(uid for uid, span in state.spans.items() if span.label == "Drug")
    edit(sessions, world, set_id, "accept", uid=drug)
    edit(sessions, world, set_id, "add", uid="mine", label="Drug", fragments=((ASPIRIN, ASPIRIN + 7),))
    edit(sessions, world, set_id, "submit")
    stored = editing.stored_state(sessions, set_id)
    assert stored.status == "submitted"
    assert sorted(s.label for s in stored.spans.values() if s.status == "pending") == [
        "Frequency", "Route", "Strength",
    ]  # fmt: skip
    return world, set_id


EXPECTED = {"kept": 1, "resized": 0, "relabelled": 0, "resized_and_relabelled": 0, "deleted": 0,
            "undecided": 3, "added": 1}  # fmt: skip


def test_the_report_counts_the_pending_pre_labels_as_undecided_not_kept(sessions, submitted):
    world, _ = submitted
    report = project_metrics(sessions, world.project_id, now=LATER, **FAST)
    mixes = report["edit_mix"]
    assert mixes["by_condition"] == {"refine_llm": EXPECTED}
    assert mixes["by_annotator"] == {"dr.a": EXPECTED}
    assert mixes["by_label"]["Strength"]["undecided"] == mixes["by_label"]["Route"]["undecided"] == 1
    assert mixes["by_label"]["Drug"] == {**dict.fromkeys(EXPECTED, 0), "kept": 1, "added": 1}
    # The same figures from the stored per-note records (a second load reads them, computes nothing).
    again = project_metrics(sessions, world.project_id, now=LATER, **FAST)
    assert again["edit_mix"] == mixes


def test_the_csv_and_the_chart_have_an_undecided_column(sessions, submitted):
    world, _ = submitted
    report = project_metrics(sessions, world.project_id, now=LATER, **FAST)
    header, *rows = csv_rows(report, "edit_mix")
    assert header == ["scope", "name", "kept", "resized", "relabelled", "resized_and_relabelled", "deleted",
                      "undecided", "added", "total"]  # fmt: skip
    by_name = {(row[0], row[1]): dict(zip(header, row, strict=True)) for row in rows}
    refine = by_name["condition", "refine_llm"]
    assert (refine["kept"], refine["undecided"], refine["added"], refine["total"]) == (1, 3, 1, 5)
    assert by_name["annotator", "dr.a"]["undecided"] == 3
    assert by_name["label", "Route"]["undecided"] == 1 and by_name["label", "Route"]["kept"] == 0
    chart = str(charts.edit_mix_chart(report["edit_mix"]["by_condition"]))
    assert 'data-outcome="undecided" data-count="3"' in chart
    assert 'data-outcome="kept" data-count="1"' in chart
    assert "undecided 3 (60%)" in chart  # said in the chart's description too


def test_the_dashboard_table_shows_undecided_apart(web, sessions, accounts, submitted):
    world, _ = submitted
    make_lead_of(sessions, world.project_id)
    log_in(web, "lead")
    for path in ("dashboard", "report"):
        response = web.get(f"/lead/projects/{world.project_id}/{path}")
        assert response.status_code == 200, path
        table = page(response).select_one("table[data-testid=edit-mix-table]")
        row = table.select_one("tr[data-name=refine_llm]")
        cells = {td["data-outcome"]: int(td.get_text()) for td in row.select("td[data-outcome]")}
        assert cells == {**EXPECTED, "total": 5}, path
        assert [th.get_text() for th in table.select("thead th")][6] == "undecided"
