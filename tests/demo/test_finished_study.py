"""The demo as a finished study (issue 20): simulated physicians' work stored as real edit and time
events, from which the dashboard's own report computes every figure.

One seeded database for the whole module (the plain demo, then the finished study added to it, as an
older demo data directory gets it); the tests only read it.
"""

from collections import defaultdict

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.db.base import Base
from app.db.models import (
    AnnotationSet,
    Assignment,
    Document,
    EditEvent,
    Project,
    Study,
    User,
)
from app.demo import simulated
from app.demo.seed import DEMO_LOGINS, DEMO_PROJECT, seed_demo
from app.domain.vocabulary import Condition
from app.services import adjudication, run_reports
from app.services.editing import TIME_KINDS, replayed_state, stored_state
from app.services.metrics import project_metrics
from app.services.users import verify_password
from tests.conftest import EMPTY_EVERY_TABLE, PASSWORDS, log_in, page

NEWCOMERS = [username for role, username, _ in DEMO_LOGINS if role == "annotator"]
SIMULATED = [p.username for p in simulated.PHYSICIANS]


def _newcomer_queues(sessions) -> list[tuple]:
    """Everything the demo's own physicians see of their queues, and what their sets hold."""
    with sessions() as db:
        rows = db.execute(
            select(
                User.username,
                Document.external_id,
                Assignment.condition,
                Assignment.queue_position,
                Assignment.is_calibration,
                AnnotationSet.status,
                AnnotationSet.version,
                AnnotationSet.base_set_id,
                select(func.count()).where(EditEvent.annotation_set_id == AnnotationSet.id).scalar_subquery(),
            )  # fmt: skip
            .join(User, User.id == Assignment.annotator_id)
            .join(Document, Document.id == Assignment.document_id)
            .join(AnnotationSet, AnnotationSet.id == Assignment.annotation_set_id)
            .where(User.username.in_(NEWCOMERS))
            .order_by(User.username, Assignment.queue_position)
        ).all()
    return [tuple(r) for r in rows]


def _row_counts(sessions) -> dict[str, int]:
    with sessions() as db:
        return {t.name: db.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}


@pytest.fixture(scope="module")
def demo(runtime, _every_table_known, password_hashes):
    """The demo with its finished study, and the dashboard's report of it."""
    sessions = runtime.sessions
    with pytest.MonkeyPatch.context() as patch:
        # argon2 is slow on purpose: every demo login gets the test lead's password instead.
        patch.setattr("app.demo.seed.hash_password", lambda password: password_hashes["lead"])
        plain = seed_demo(sessions)
        queues_before = _newcomer_queues(sessions)
        summary = seed_demo(sessions, finished_study=True)
        counts = _row_counts(sessions)
        again = seed_demo(sessions, finished_study=True)
        counts_again = _row_counts(sessions)
    with sessions() as db:
        project_id = db.scalar(select(Project.id).where(Project.name == DEMO_PROJECT))
    yield {
        "sessions": sessions, "runtime": runtime, "project_id": project_id, "plain": plain,
        "summary": summary, "again": again, "counts": counts, "counts_again": counts_again,
        "queues_before": queues_before, "report": project_metrics(sessions, project_id),  # the dashboard's
    }  # fmt: skip
    with runtime.engine.begin() as connection:
        connection.exec_driver_sql(EMPTY_EVERY_TABLE)


def _sets(sessions, logins) -> list[tuple[int, str, str]]:
    with sessions() as db:
        return db.execute(
            select(AnnotationSet.id, User.username, AnnotationSet.condition)
            .join(User, User.id == AnnotationSet.annotator_id)
            .where(User.username.in_(logins), AnnotationSet.origin == "annotator")
            .order_by(AnnotationSet.id)
        ).all()


def _minutes_from_rows(sessions, set_id: int, idle_seconds: float) -> float:
    """Active minutes of a set read straight from its stored events, written here apart from the app
    (metrics.md): per page session, the gaps between events while visible, each capped at the idle
    threshold, up to the submit."""
    with sessions() as db:
        rows = db.execute(
            select(EditEvent.id, EditEvent.page_session_id, EditEvent.kind, EditEvent.client_monotonic_ms)
            .where(EditEvent.annotation_set_id == set_id, EditEvent.client_monotonic_ms.is_not(None))
            .order_by(EditEvent.id)
        ).all()
    submit_id, submit_session, submit_ms = next((i, p, m) for i, p, k, m in reversed(rows) if k == "submit")
    sessions_events = defaultdict(list)
    for event_id, page_session, kind, ms in rows:
        counted = ms <= submit_ms if page_session == submit_session else event_id <= submit_id
        if counted:
            sessions_events[page_session].append((ms, kind))
    total_ms = 0.0
    for events in sessions_events.values():
        events.sort()
        hidden = False
        for (ms, kind), (next_ms, _) in zip(events, events[1:], strict=False):
            hidden = True if kind == "hidden" else False if kind == "visible" else hidden
            if not hidden:
                total_ms += min(next_ms - ms, idle_seconds * 1000)
    return total_ms / 60_000


def test_the_dashboard_has_minutes_in_every_condition_and_a_time_saved_with_its_interval(demo):
    time = demo["report"]["time"]
    for condition in Condition:
        summary = time["per_condition"][condition.value]
        assert summary["n"] >= 8, condition
        assert summary["mean"] is not None and summary["ci_low"] < summary["mean"] < summary["ci_high"]
    means = {c: s["mean"] for c, s in time["per_condition"].items()}
    # Like the published study (17.6, 11.3 and 9.1 minutes): refining LLM pre-labels clearly beats scratch.
    assert 15 < means["scratch"] < 21 and 10 < means["refine_llm"] < 14 and 7 < means["refine_human"] < 11
    savings = time["savings"]
    assert savings["design"] == "paired" and len(savings["paired_documents"]) == len(simulated.STUDY_NOTES)
    assert 0.4 < savings["ci_low"] < savings["savings"] < savings["ci_high"] < 0.7
    direct = savings["direct"]
    assert direct["difference_ci_low"] > 0  # scratch minus refine_llm, excluding zero


def test_the_minutes_are_the_stored_events_read_at_the_idle_threshold(demo):
    """Each condition's mean is the mean over its sets of what their own event rows give (an
    independent reading), at the project's threshold and at another one: the figures come from the
    events, not from anywhere else."""
    sessions = demo["sessions"]
    sets = _sets(sessions, SIMULATED)
    assert len(sets) == 2 * 3 + 3 * len(simulated.STUDY_NOTES)
    for idle, report in (
        (60, demo["report"]),
        (20, project_metrics(sessions, demo["project_id"], idle_threshold_seconds=20)),
    ):
        by_condition = defaultdict(list)
        for set_id, _, condition in sets:
            by_condition[condition].append(_minutes_from_rows(sessions, set_id, idle))
        for condition, minutes in by_condition.items():
            assert sorted(report["time"]["minutes"][condition]) == pytest.approx(sorted(minutes))
            assert report["time"]["per_condition"][condition]["mean"] == pytest.approx(
                sum(minutes) / len(minutes)
            )
    lower = project_metrics(sessions, demo["project_id"], idle_threshold_seconds=20)["time"]["per_condition"]
    assert all(lower[c]["mean"] < demo["report"]["time"]["per_condition"][c]["mean"] for c in lower)


def test_every_simulated_set_is_a_real_edit_log_that_replays_to_what_is_stored(demo):
    sessions = demo["sessions"]
    with sessions() as db:
        kinds = defaultdict(set)
        for set_id, kind in db.execute(
            select(EditEvent.annotation_set_id, EditEvent.kind)
            .join(AnnotationSet, AnnotationSet.id == EditEvent.annotation_set_id)
            .join(User, User.id == AnnotationSet.annotator_id)
            .where(User.username.in_(list(simulated.SIMULATED_ACCOUNTS)))
        ):
            kinds[set_id].add(kind)
    sets = [set_id for set_id, _, _ in _sets(sessions, SIMULATED)]
    for set_id in sets:
        assert {"open", "close", "activity", "submit"} <= kinds[set_id]
        assert kinds[set_id] - TIME_KINDS - {"submit", "answer"}, "a set with no edit"
        assert stored_state(sessions, set_id) == replayed_state(sessions, set_id)
        assert stored_state(sessions, set_id).status == "submitted"
    every_kind = set().union(*kinds.values())
    assert {"add", "relation_add", "accept", "accept_all", "reject", "modify", "relabel", "undo", "redo",
            "attribute_set", "hidden", "visible", "propose", "adopt"} <= every_kind  # fmt: skip
    edit_mix = demo["report"]["edit_mix"]["by_condition"]
    for condition in ("refine_llm", "refine_human"):
        mix = edit_mix[condition]
        assert mix["kept"] > mix["resized"] > 0 and mix["deleted"] > 0 and mix["added"] > 0


def test_the_calibration_notes_were_done_by_every_simulated_physician_and_agreement_has_figures(demo):
    sessions, report = demo["sessions"], demo["report"]
    with sessions() as db:
        study = db.scalar(select(Study).where(Study.name == simulated.STUDY_NAME))
        calibration = db.execute(
            select(Document.external_id, User.username, AnnotationSet.status)
            .join(Assignment, Assignment.document_id == Document.id)
            .join(User, User.id == Assignment.annotator_id)
            .join(AnnotationSet, AnnotationSet.id == Assignment.annotation_set_id)
            .where(Assignment.study_id == study.id, Assignment.is_calibration)
        ).all()
    assert study.status == "released" and study.released_at is not None
    assert sorted(calibration) == sorted(
        (note, login, "submitted") for note in simulated.CALIBRATION_NOTES for login in SIMULATED
    )
    pairs = {tuple(p["annotators"]): p for p in report["agreement"]["pairs"]}
    for a in SIMULATED:
        for b in SIMULATED:
            if a < b:
                strict = pairs[(a, b)]["span_f1"]["strict"]["overall"]
                assert (
                    pairs[(a, b)]["documents"] >= 2 and 0.5 < strict["value"] < 1 and strict["ci"] is not None
                )
    ranked = {d["external_id"]: d["mean_strict_f1"] for d in report["documents_by_disagreement"]}
    assert set(simulated.CALIBRATION_NOTES) | set(simulated.STUDY_NOTES) == set(ranked)
    assert (
        report["agreement"]["fleiss_kappa"]["value"] is not None
    )  # three physicians on each calibration note


def test_one_note_is_adjudicated_into_gold_by_the_simulated_lead(demo):
    sessions, project_id = demo["sessions"], demo["project_id"]
    with sessions() as db:
        gold = db.execute(
            select(AnnotationSet, Document.external_id, User.username)
            .join(Document, Document.id == AnnotationSet.document_id)
            .join(User, User.id == AnnotationSet.annotator_id)
            .where(AnnotationSet.origin == "gold")
        ).all()
        first = db.scalar(
            select(EditEvent.kind).where(EditEvent.annotation_set_id == gold[0][0].id).order_by(EditEvent.id)
        )
    [(gold_set, note, lead)] = gold
    assert (note, lead, gold_set.status, first) == (
        simulated.ADJUDICATED_NOTE,
        simulated.LEAD[0],
        "submitted",
        "propose",
    )
    assert stored_state(sessions, gold_set.id) == replayed_state(sessions, gold_set.id)
    gold_spans = stored_state(sessions, gold_set.id).spans.values()
    assert len(gold_spans) > 30 and any(s.distribution for s in gold_spans)  # one kept as ambiguous
    queue = {item.external_id: item for item in adjudication.adjudication_queue(sessions, project_id)}
    assert set(queue) == set(simulated.CALIBRATION_NOTES) | set(simulated.STUDY_NOTES)
    item = queue[simulated.ADJUDICATED_NOTE]
    assert item.gold_status == "submitted" and item.minutes > 1
    assert all(queue[n].gold_status == "not started" for n in queue if n != simulated.ADJUDICATED_NOTE)
    against_gold = demo["report"]["physicians_against_gold"]
    for login in SIMULATED:
        assert 0.6 < against_gold[login]["figures"]["strict"]["micro"]["f1"] < 1


def test_a_finished_pre_annotation_run_has_its_evaluation_against_gold(demo):
    sessions, project_id = demo["sessions"], demo["project_id"]
    runs = {run.name: run for run in run_reports.list_runs(sessions, project_id)}
    term_list = runs[simulated.RUN_NAME]
    assert term_list.status == "succeeded" and term_list.method == "lexicon"
    assert term_list.progress.finished == term_list.progress.total == 22
    llm = next(run for run in runs.values() if run.is_study_base)
    [lexicon, prelabels] = run_reports.evaluate_runs(sessions, project_id, [term_list.id, llm.id])
    assert lexicon.documents == prelabels.documents == 22
    lexicon_micro, llm_micro = lexicon.modes["strict"].micro, prelabels.modes["strict"].micro
    assert 0 < lexicon_micro.recall < llm_micro.recall < 1  # a term list finds no strengths or reasons
    assert 0 < lexicon_micro.f1 < 1
    quality = demo["report"]["pre_label_quality"]
    assert quality["against_gold"]["figures"]["strict"]["micro"]["f1"] is not None


def test_the_simulated_accounts_say_so_cannot_log_in_and_leave_the_demo_logins_queues_alone(demo):
    sessions = demo["sessions"]
    with sessions() as db:
        accounts = {
            u.username: u
            for u in db.scalars(select(User).where(User.username.in_(list(simulated.SIMULATED_ACCOUNTS))))
        }
    assert set(accounts) == set(simulated.SIMULATED_ACCOUNTS)
    for username, user in accounts.items():
        assert "simulated" in username and "(simulated" in user.display_name
        assert not user.is_active and not verify_password(user.password_hash, "")
    assert _newcomer_queues(sessions) == demo["queues_before"]
    assert "loaded" in demo["plain"] and "finished study by simulated physicians" in demo["summary"]
    assert "already loaded" in demo["again"] and "simulated" not in demo["again"]
    assert demo["counts_again"] == demo["counts"]  # seeding again changes nothing


def test_the_lead_home_says_the_finished_study_is_simulated(demo):
    from app.web.app import create_app

    app = create_app(demo["runtime"])
    with TestClient(app, follow_redirects=False) as client:
        assert log_in(client, "lead", PASSWORDS["lead"]).status_code == 303
        soup = page(client.get("/lead"))
    with TestClient(app, follow_redirects=False) as client:
        refused = log_in(client, simulated.PHYSICIANS[0].username, "any password at all")
    notice = soup.select_one("[data-testid=simulated-study-notice]")
    assert notice is not None and "simulated" in notice.get_text()
    assert all(p.display_name in notice.get_text() for p in simulated.PHYSICIANS)
    assert refused.status_code != 303 and page(refused).select_one("[data-testid=login-error]") is not None
