"""The report's stored parts: each note's record and each view's figures are used only while they match
the note's sets, are stored only once a submission has settled, and give the same report as computing
everything again."""

from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, text, update

from app.db.models import AnnotationSet, MetricsReport, NoteStatistics, Span
from app.services import metrics
from app.services.metrics import SETTLE_TIME, project_metrics
from tests.services.test_metrics import NOW, simulate

LATER = NOW + timedelta(days=1)  # long after the simulated submissions: everything has settled
FAST = {"time_resamples": 200, "agreement_resamples": 30}


def _without_clock(report: dict) -> dict:
    return {key: value for key, value in report.items() if key != "generated_at"}


def _forget_everything(sessions) -> None:
    with sessions.begin() as db:
        db.execute(delete(MetricsReport))
        db.execute(delete(NoteStatistics))


def _counts(sessions) -> tuple[int, int]:
    with sessions() as db:
        return (
            db.scalar(select(func.count()).select_from(NoteStatistics)),
            db.scalar(select(func.count()).select_from(MetricsReport)),
        )


@pytest.fixture
def study(sessions, password_hashes) -> int:
    project_id, _ = simulate(sessions, password_hashes["annotator"], seed=11, documents=9)
    return project_id


def test_stored_records_and_figures_give_the_report_computed_from_scratch(sessions, study, monkeypatch):
    first = project_metrics(sessions, study, now=LATER, **FAST)
    notes, views = _counts(sessions)
    assert notes == 9 and views == 1  # every worked note has its record, the view its figures
    # Served from the stored figures: pooling is not even called.
    pooled = metrics.pooled_report
    monkeypatch.setattr(metrics, "pooled_report", lambda *a, **k: pytest.fail("figures were recomputed"))
    from_figures = project_metrics(sessions, study, now=LATER, **FAST)
    monkeypatch.setattr(metrics, "pooled_report", pooled)
    # From the notes' records only (another view: a different idle threshold pools them again).
    with sessions.begin() as db:
        db.execute(delete(MetricsReport))
    from_records = project_metrics(sessions, study, now=LATER, **FAST)
    _forget_everything(sessions)
    from_scratch = project_metrics(sessions, study, now=LATER, **FAST)
    assert _without_clock(first) == _without_clock(from_figures) == _without_clock(from_records)
    assert _without_clock(from_records) == _without_clock(from_scratch)


def test_a_changed_set_is_never_read_from_its_old_record(sessions, study):
    before = project_metrics(sessions, study, now=LATER, **FAST)
    with sessions() as db:
        set_id = db.scalar(
            select(AnnotationSet.id)
            .where(AnnotationSet.status == "submitted", AnnotationSet.condition == "refine_llm")
            .order_by(AnnotationSet.id)
        )
        span_id = db.scalar(select(Span.id).where(Span.annotation_set_id == set_id).order_by(Span.id))
    # Behind the app's back, without the version every change bumps: the stored parts are still used,
    # which shows the figures really come from them...
    with sessions.begin() as db:
        db.execute(delete(Span).where(Span.id == span_id))
    assert _without_clock(project_metrics(sessions, study, now=LATER, **FAST)) == _without_clock(before)
    # ...and with the version bumped, as every change through the app does, they are not.
    with sessions.begin() as db:
        db.execute(
            update(AnnotationSet).where(AnnotationSet.id == set_id).values(version=AnnotationSet.version + 1)
        )
    after = project_metrics(sessions, study, now=LATER, **FAST)
    deleted = after["edit_mix"]["by_condition"]["refine_llm"]["deleted"]
    assert deleted == before["edit_mix"]["by_condition"]["refine_llm"]["deleted"] + 1
    _forget_everything(sessions)
    assert _without_clock(project_metrics(sessions, study, now=LATER, **FAST)) == _without_clock(after)


def test_a_note_submitted_moments_ago_is_used_but_not_stored_until_it_settles(sessions, study):
    with sessions() as db:
        last = db.scalar(select(func.max(AnnotationSet.submitted_at)))
    soon = last + SETTLE_TIME / 2
    report = project_metrics(sessions, study, now=soon, **FAST)
    assert report["submitted_sets"] > 0
    with sessions() as db:
        unsettled = db.scalar(
            select(func.count(func.distinct(AnnotationSet.document_id))).where(
                AnnotationSet.submitted_at > soon - SETTLE_TIME
            )
        )
    notes, views = _counts(sessions)
    assert unsettled > 0 and notes == 9 - unsettled and views == 0
    assert _without_clock(project_metrics(sessions, study, now=LATER, **FAST)) == _without_clock(report)
    assert _counts(sessions) == (9, 1)


def test_each_filter_and_threshold_is_its_own_view(sessions, study):
    project_metrics(sessions, study, now=LATER, **FAST)
    refine = project_metrics(
        sessions, study, now=LATER, filters=metrics.MetricsFilter(condition="refine_llm"), **FAST
    )
    short = project_metrics(sessions, study, now=LATER, idle_threshold_seconds=30, **FAST)
    assert set(refine["time"]["minutes"]) == {"refine_llm"}
    assert short["time"]["idle_threshold_seconds"] == 30
    with sessions() as db:
        variants = db.scalars(select(NoteStatistics.variant).distinct()).all()
        views = db.scalar(select(func.count()).select_from(MetricsReport))
    # The threshold pools the same records; the condition filter has records of its own.
    assert sorted(variants) == ["", '[null, "refine_llm", null]'] and views == 3


def test_a_submission_queues_one_refresh_of_its_project_report(runtime, sessions, study, monkeypatch):
    from app import jobs

    with sessions() as db:
        set_ids = db.scalars(
            select(AnnotationSet.id).where(AnnotationSet.status == "submitted").limit(3)
        ).all()
    assert all(
        metrics.refresh_after_submission(sessions, set_id) is (i == 0) for i, set_id in enumerate(set_ids)
    )
    with sessions() as db:
        [job] = db.execute(
            text(
                "SELECT task_name, queueing_lock, args, scheduled_at - now() AS delay FROM procrastinate_jobs"
            )
        ).all()
    assert job.task_name == "clinann.refresh_metrics" and job.queueing_lock == f"metrics-{study}"
    assert job.args == {"project_id": study}
    assert SETTLE_TIME < job.delay <= SETTLE_TIME + timedelta(seconds=15)
    # What the job does: the default view's figures, stored for the lead's next load.
    jobs.refresh_metrics(study)
    assert _counts(sessions)[1] == 1
    # ...and the adjudication queue's agreement of every note two physicians submitted.
    from app.db.models import AdjudicationStatistics
    from app.services.adjudication import adjudication_queue

    with sessions() as db:
        kept = db.scalar(select(func.count()).select_from(AdjudicationStatistics))
    assert kept == len(adjudication_queue(sessions, study)) > 0
    monkeypatch.setattr(metrics, "pooled_report", lambda *a, **k: pytest.fail("figures were recomputed"))
    project_metrics(sessions, study)
