"""The demo project: complete, counterbalanced, honest about conditions, and loaded once."""

from collections import Counter

from sqlalchemy import func, select

from app.db.base import Base
from app.db.models import AnnotationSet, Assignment, Document, Span, User
from app.demo.seed import DEMO_LOGINS, seed_demo
from app.services.users import verify_password


def _row_counts(sessions) -> dict[str, int]:
    with sessions() as db:
        return {
            table.name: db.scalar(select(func.count()).select_from(table))
            for table in Base.metadata.sorted_tables
        }


def test_demo_has_users_notes_and_all_three_conditions(sessions):
    summary = seed_demo(sessions)
    assert "loaded" in summary
    with sessions() as db:
        users = {u.username: u for u in db.scalars(select(User))}
        for role, username, password in DEMO_LOGINS:
            assert users[username].role == role and verify_password(users[username].password_hash, password)
        documents = list(db.scalars(select(Document)))
        assert len(documents) >= 20
        assert all(len(d.text) > 1000 for d in documents)
        assignments = list(db.scalars(select(Assignment)))
        per_annotator = {}
        for a in assignments:
            per_annotator.setdefault(a.annotator_id, Counter())[a.condition] += 1
        assert len(per_annotator) == 3
        for conditions in per_annotator.values():  # every physician works in every condition
            assert set(conditions) == {"scratch", "refine_llm", "refine_human"}
        per_document = Counter(a.document_id for a in assignments)
        assert set(per_document.values()) == {2}  # every note twice: agreement is measurable


def test_each_condition_starts_from_the_right_base(sessions):
    seed_demo(sessions)
    with sessions() as db:
        for assignment in db.scalars(select(Assignment)):
            annotation_set = db.get(AnnotationSet, assignment.annotation_set_id)
            assert annotation_set.annotator_id == assignment.annotator_id
            assert annotation_set.condition == assignment.condition
            base = db.get(AnnotationSet, annotation_set.base_set_id) if annotation_set.base_set_id else None
            spans = list(db.scalars(select(Span).where(Span.annotation_set_id == annotation_set.id)))
            if assignment.condition == "scratch":
                assert base is None
                if annotation_set.status == "open":
                    assert spans == []  # nothing of a pre-annotation reaches this physician
            elif assignment.condition == "refine_llm":
                assert base.origin == "pre_annotation"
                base_ids = set(db.scalars(select(Span.id).where(Span.annotation_set_id == base.id)))
                assert spans and {s.base_span_id for s in spans} == base_ids
                assert {s.status for s in spans} == {"pending"}
            else:
                assert base.origin == "annotator" and base.status == "submitted"
                assert base.annotator_id != assignment.annotator_id
                assert len(spans) == db.scalar(
                    select(func.count()).select_from(Span).where(Span.annotation_set_id == base.id)
                )


def test_pre_labels_differ_from_gold_like_a_recall_first_llm(sessions):
    seed_demo(sessions)
    with sessions() as db:
        by_origin = dict(
            db.execute(
                select(AnnotationSet.origin, func.count(Span.id))
                .join(Span, Span.annotation_set_id == AnnotationSet.id)
                .where(AnnotationSet.origin.in_(["gold", "pre_annotation"]))
                .group_by(AnnotationSet.origin)
            ).all()
        )
        confidences = list(
            db.scalars(
                select(Span.confidence)
                .join(AnnotationSet, AnnotationSet.id == Span.annotation_set_id)
                .where(AnnotationSet.origin == "pre_annotation")
            )
        )
    assert by_origin["gold"] > 300 and by_origin["pre_annotation"] > 300
    assert by_origin["gold"] != by_origin["pre_annotation"]
    assert all(c is not None and 0 < c <= 1 for c in confidences)


def test_loading_twice_changes_nothing(sessions):
    seed_demo(sessions)
    before = _row_counts(sessions)
    assert "already loaded" in seed_demo(sessions)
    assert _row_counts(sessions) == before


def test_the_simulated_llm_answers_from_gold_and_running_it_twice_keeps_one_endpoint(sessions):
    import httpx

    from app.db.models import LlmEndpoint
    from app.demo.seed import SIMULATED_ENDPOINT, start_simulated_llm

    seed_demo(sessions)
    first, name = start_simulated_llm(sessions)
    first.stop()
    second, _ = start_simulated_llm(sessions)
    try:
        with sessions() as db:
            endpoints = db.scalars(select(LlmEndpoint).where(LlmEndpoint.name == SIMULATED_ENDPOINT)).all()
        assert name == SIMULATED_ENDPOINT and len(endpoints) == 1
        assert endpoints[0].base_url == second.base_url and endpoints[0].parameters["simulated"] is True
        note = second.notes[0]
        _, start, end = note.spans[0]
        chunk = note.text[max(0, start - 30) : end + 30]
        messages = [
            {"role": "system", "content": "Find the medications; list the entities."},
            {"role": "user", "content": f"Text:\n<<<\n{chunk}\n>>>"},
        ]
        answer = httpx.post(f"{second.base_url}/chat/completions", json={"model": "m", "messages": messages})
        assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"]
        assert second.served[0].gold_spans_in_chunk  # the chunk holds a gold label
    finally:
        second.stop()


def test_the_demo_lead_leads_the_demo_project(sessions):
    """Leads see only the projects they are members of: the demo's lead must see the demo's."""
    from app.db.models import Project
    from app.services.access import leads_project

    seed_demo(sessions)
    with sessions() as db:
        lead = db.scalar(select(User).where(User.username == "lead"))
        [project] = db.scalars(select(Project)).all()
        assert leads_project(db, lead, project.id)
