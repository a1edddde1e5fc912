"""A study on real PostgreSQL: the design committed as assignments, the calibration gate, and
refine_human notes released by their base physician's submission."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from app.db.models import (
    AnnotationSet,
    Assignment,
    AuditEvent,
    PreAnnotationRun,
    Span,
    Study,
)
from app.db.models import User as UserRow
from app.services import editing, study
from app.services.queues import annotator_queue
from tests.services.study_fixtures import project_with_pre_labels

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ANNOTATORS = ["dr.a", "dr.b", "dr.c"]


@pytest.fixture
def world(sessions, password_hashes):
    """A project of 14 notes with LLM pre-labels (the study's base run) and three physicians."""
    with sessions.begin() as db:
        users = {
            login: UserRow(username=login, display_name=login, role="annotator",
                           password_hash=password_hashes["annotator"])
            for login in ANNOTATORS
        }  # fmt: skip
        db.add_all(users.values())
        project = project_with_pre_labels(db, "Study", "n", 14)
        return {"project_id": project.id, "users": {login: u.id for login, u in users.items()}}


def request(**changes) -> study.StudyRequest:
    values = {
        "name": "pilot",
        "annotators": ANNOTATORS,
        "shares": {"scratch": 1 / 3, "refine_llm": 1 / 3, "refine_human": 1 / 3},
        "overlap_documents": 2,
        "overlap_annotators": 2,
        "calibration_documents": 2,
        "seed": 7,
    }
    return study.StudyRequest(**{**values, **changes})


def submit(sessions, user_id, set_id):
    with sessions() as db:
        version = db.get(AnnotationSet, set_id).version
    request = editing.EditRequest(kind="submit", client_id=f"submit-{set_id}", page_session="p",
                                  version=version, monotonic_ms=1.0)  # fmt: skip
    return editing.apply_edit(sessions, user_id, set_id, request, now=NOW)


def queue_conditions(sessions, user_id):
    return [(item.document_external_id, item.status) for item in annotator_queue(sessions, user_id)]


def test_the_calibration_gate_then_refinements_released_by_their_base(sessions, world):
    preview = study.preview_study(sessions, world["project_id"], request())
    assert preview.summary["documents"]["calibration"] == 2
    study_id = study.commit_study(sessions, world["project_id"], request(), user_id=None)

    with sessions() as db:
        rows = db.scalars(select(Assignment).where(Assignment.study_id == study_id)).all()
        assert db.get(Study, study_id).status == "calibration"
    assert len(rows) == len(preview.assignments)
    calibration = [a for a in rows if a.is_calibration]
    assert len(calibration) == 2 * len(ANNOTATORS)
    assert all(a.released_at is not None and a.annotation_set_id for a in calibration)
    assert all(a.released_at is None and a.annotation_set_id is None for a in rows if not a.is_calibration)
    # Before the gate, each physician sees only the calibration notes.
    for login, user_id in world["users"].items():
        assert len(annotator_queue(sessions, user_id)) == 2, login

    # The physicians submit the calibration notes; the lead reads their agreement, then releases.
    for assignment in calibration:
        submit(sessions, assignment.annotator_id, assignment.annotation_set_id)
    sets = study.calibration_sets(sessions, study_id)
    assert len(sets) == 2 and all(set(by_login) == set(ANNOTATORS) for by_login in sets.values())
    released = study.release_study(sessions, study_id, user_id=None)

    with sessions() as db:
        rows = db.scalars(select(Assignment).where(Assignment.study_id == study_id)).all()
        waiting = [a for a in rows if a.released_at is None]
        human = [a for a in rows if a.condition == "refine_human"]
        llm = [a for a in rows if a.condition == "refine_llm" and not a.is_calibration]
        llm_sets = [db.get(AnnotationSet, a.annotation_set_id) for a in llm]
        llm_spans = {
            s.id: db.scalar(select(func.count()).where(Span.annotation_set_id == s.id)) for s in llm_sets
        }
    assert human and {a.id for a in waiting} == {a.id for a in human}  # only refinements wait, for their base
    assert released == len(rows) - len(calibration) - len(human)
    assert all(s.base_set_id is not None for s in llm_sets) and all(n == 1 for n in llm_spans.values())

    # A base physician submits the scratch set: its refinement is released, starting as a copy of it.
    refinement = human[0]
    with sessions() as db:
        base = db.get(Assignment, refinement.base_assignment_id)
    assert base.condition == "scratch" and base.annotator_id != refinement.annotator_id
    start = 0
    add = editing.EditRequest(kind="add", client_id="base-add", page_session="p", version=0, monotonic_ms=1.0,
                              uid="s1", label="Drug", fragments=((start, 4),))  # fmt: skip
    editing.apply_edit(sessions, base.annotator_id, base.annotation_set_id, add, now=NOW)
    submit(sessions, base.annotator_id, base.annotation_set_id)
    with sessions() as db:
        refinement = db.get(Assignment, refinement.id)
        copy = db.get(AnnotationSet, refinement.annotation_set_id)
        copied = db.scalars(select(Span.uid).where(Span.annotation_set_id == copy.id)).all()
    assert refinement.released_at is not None
    assert copy.base_set_id == base.annotation_set_id and copy.condition == "refine_human"
    assert copied == ["s1"]
    with sessions() as db:
        actions = set(db.scalars(select(AuditEvent.action)))
    assert {"study.committed", "study.released"} <= actions


def test_without_calibration_everything_but_refinements_is_released_at_once(sessions, world):
    study_id = study.commit_study(
        sessions, world["project_id"], request(calibration_documents=0), user_id=None
    )
    with sessions() as db:
        rows = db.scalars(select(Assignment).where(Assignment.study_id == study_id)).all()
        assert db.get(Study, study_id).status == "released"
    assert {a.condition for a in rows if a.released_at is None} == {"refine_human"}
    # No physician sees a note twice, and each has every condition.
    for user_id in world["users"].values():
        mine = [a for a in rows if a.annotator_id == user_id]
        assert len({a.document_id for a in mine}) == len(mine)
        assert {a.condition for a in mine} == {"scratch", "refine_llm", "refine_human"}
    with pytest.raises(study.StudyError, match="released already"):
        study.release_study(sessions, study_id, user_id=None)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"annotators": ["dr.a", "nobody"]}, "annotators"),
        ({"annotators": []}, "annotators"),
        ({"calibration_documents": 99}, "calibration_documents"),
        ({"shares": {"scratch": 0.5, "refine_llm": 0.2}}, "conditions"),
        ({"overlap_annotators": 5}, "overlap_annotators"),
    ],
)
def test_a_bad_design_names_its_field_and_stores_nothing(sessions, world, changes, field):
    with pytest.raises(study.StudyError) as caught:
        study.commit_study(sessions, world["project_id"], request(**changes), user_id=None)
    assert caught.value.field == field
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(Assignment)) == 0
        assert db.scalar(select(func.count()).select_from(Study)) == 0


def test_refine_llm_needs_the_study_base_run(sessions, world):
    with sessions.begin() as db:
        db.execute(PreAnnotationRun.__table__.update().values(is_study_base=False))
    with pytest.raises(study.StudyError) as caught:
        study.preview_study(sessions, world["project_id"], request())
    assert caught.value.field == "shares"
    # a study without refine_llm does not need one
    shares = {"scratch": 0.5, "refine_human": 0.5}
    assert study.preview_study(sessions, world["project_id"], request(shares=shares, calibration_documents=0))


def test_notes_in_a_study_are_not_designed_into_another(sessions, world):
    study.commit_study(sessions, world["project_id"], request(calibration_documents=0), user_id=None)
    with pytest.raises(study.StudyError) as caught:
        study.commit_study(sessions, world["project_id"], request(name="again"), user_id=None)
    assert caught.value.field == "documents"
