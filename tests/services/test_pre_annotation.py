"""Pre-annotation runs end to end on real PostgreSQL, the real job queue and a real HTTP fake LLM.

The fake server answers from the demo's gold notes with the noise it is told; what it served is
recorded, so the tests know exactly which pre-labels a correct pipeline must store.
"""

import socket
import time
from collections import Counter

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from app.db.models import (
    AnnotationSet,
    Document,
    LlmEndpoint,
    LlmResponse,
    PreAnnotationResult,
    PreAnnotationRun,
    Project,
    Relation,
    Span,
    SpanFragment,
)
from app.demo.seed import DEMO_PROJECT, seed_demo
from app.domain.label_schema import parse_label_schema
from app.domain.vocabulary import SetOrigin
from app.llm.fake_server import FakeBehaviour, FakeLlmServer, GoldNote
from app.services import pre_annotation, run_reports
from app.services.llm_endpoints import EndpointForm, save_endpoint
from app.web.app import create_app

FAST = {"backoff_seconds": 0.01, "max_attempts": 4, "timeout_seconds": 5.0, "max_concurrency": 8}


@pytest.fixture
def demo(sessions):
    """The demo project (20+ synthetic notes with gold); returns its id."""
    seed_demo(sessions)
    with sessions() as db:
        return db.scalar(select(Project.id).where(Project.name == DEMO_PROJECT))


def gold_notes(sessions, project_id) -> tuple[list[GoldNote], dict[int, set], dict[int, str]]:
    """The project's gold as the fake server's corpus, and as sets of (label, start, end) per note."""
    notes, gold, texts = [], {}, {}
    with sessions() as db:
        sets = db.execute(
            select(AnnotationSet.id, Document.id, Document.text)
            .join(Document, Document.id == AnnotationSet.document_id)
            .where(Document.project_id == project_id, AnnotationSet.origin == SetOrigin.gold.value)
            .order_by(Document.id)
        ).all()
        for set_id, document_id, text in sets:
            spans, relations = pre_annotation._set_contents(db, set_id)
            notes.append(GoldNote(text, spans, relations))
            gold[document_id] = set(spans)
            texts[document_id] = text
    return notes, gold, texts


def demo_schema(sessions, project_id):
    with sessions() as db:
        return parse_label_schema(db.get(Project, project_id).label_schema)


def endpoint(sessions, base_url, **parameters) -> int:
    endpoint_id = save_endpoint(
        sessions, EndpointForm(name="fake", base_url=base_url, model="clinann-fake"), user_id=None
    )
    with sessions.begin() as db:
        row = db.get(LlmEndpoint, endpoint_id)
        row.parameters = {**row.parameters, **FAST, **parameters}
    return endpoint_id


def wait_for_run(sessions, run_id, timeout=90.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sessions() as db:
            status = db.scalar(select(PreAnnotationRun.status).where(PreAnnotationRun.id == run_id))
        if status in pre_annotation.FINISHED:
            return status
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} still {status} after {timeout} s")


def stored_pre_labels(sessions, run_id) -> dict[int, set]:
    with sessions() as db:
        rows = db.execute(
            select(AnnotationSet.document_id, Span.label, SpanFragment.start, SpanFragment.end)
            .join(Span, Span.annotation_set_id == AnnotationSet.id)
            .join(SpanFragment, SpanFragment.span_id == Span.id)
            .where(AnnotationSet.pre_annotation_run_id == run_id)
        ).all()
    stored: dict[int, set] = {}
    for document_id, label, start, end in rows:
        stored.setdefault(document_id, set()).add((label, start, end))
    return stored


def expected_from_served(sessions, run_id, fake: FakeLlmServer) -> dict[int, set]:
    """What the fake model returned, moved to note offsets through the chunks the run recorded."""
    by_chunk: dict[tuple[str, str], list] = {}
    for answer in fake.served:
        if answer.status == 200 and answer.prompt_schema:
            by_chunk[(answer.prompt_schema, answer.chunk_text)] = answer.returned_spans
    expected: dict[int, set] = {}
    with sessions() as db:
        rows = db.execute(
            select(PreAnnotationResult.document_id, PreAnnotationResult.raw_outputs, Document.text)
            .join(Document, Document.id == PreAnnotationResult.document_id)
            .where(PreAnnotationResult.run_id == run_id)
        ).all()
    for document_id, records, text in rows:
        spans = expected.setdefault(document_id, set())
        for record in records:
            start, end = record["chunk"]
            for label, s, e in by_chunk[(record["prompt_schema"], text[start:end])]:
                spans.add((label, start + s, start + e))
    return expected


def start(sessions, project_id, endpoint_id, defer=None, **request) -> int:
    return pre_annotation.start_run(
        sessions,
        project_id,
        pre_annotation.RunRequest(name=request.pop("name", "run"), endpoint_id=endpoint_id, **request),
        user_id=None,
        defer=defer,
    )


def test_a_run_stores_exactly_what_the_model_returned_and_recall_follows(runtime, sessions, clock, demo):
    notes, gold, texts = gold_notes(sessions, demo)
    assert len(notes) >= 20
    schema = demo_schema(sessions, demo)
    with FakeLlmServer(notes, schema, FakeBehaviour(missed=0.3, seed=7)) as fake:
        endpoint_id = endpoint(sessions, fake.base_url)
        with TestClient(create_app(runtime, run_worker=True, clock=clock)):
            run_id = start(sessions, demo, endpoint_id, prompt_schema="direct_chunk", few_shot=2)
            assert wait_for_run(sessions, run_id) == "succeeded"
        expected = expected_from_served(sessions, run_id, fake)

    stored = stored_pre_labels(sessions, run_id)
    assert {d: stored.get(d, set()) for d in expected} == expected
    returned = sum(len(s) for s in expected.values())
    assert returned > 0
    # The fake model left out 30% of gold; a span cut by a chunk boundary was never shown to it.
    found = sum(len(expected[d] & gold[d]) for d in gold)
    total = sum(len(g) for g in gold.values())
    # Nothing spurious was asked for; the few returned spans that are not gold come from chunk texts
    # that occur in several notes, which the fake answers from the first note holding them.
    assert returned - found <= 0.02 * returned
    assert 0.55 < found / total < 0.8

    evaluation = run_reports.evaluate_runs(sessions, demo, [run_id])[0]
    strict = evaluation.modes["strict"].micro
    assert (strict.tp, strict.fp, strict.fn) == (found, returned - found, total - found)
    assert strict.recall == pytest.approx(found / total, abs=1e-12)
    with sessions() as db:
        sets = db.scalar(select(func.count()).where(AnnotationSet.pre_annotation_run_id == run_id))
        relations = db.scalar(
            select(func.count(Relation.id))
            .join(AnnotationSet, AnnotationSet.id == Relation.annotation_set_id)
            .where(AnnotationSet.pre_annotation_run_id == run_id)
        )
        results = db.scalars(select(PreAnnotationResult).where(PreAnnotationResult.run_id == run_id)).all()
    assert sets == len(notes)  # one set per note
    assert relations > 0  # relations come from the groups
    assert all(r.prompt_tokens and r.completion_tokens and r.latency_ms is not None for r in results)
    assert all(
        r.raw_outputs and all("messages" in c and "output" in c for c in r.raw_outputs) for r in results
    )


def test_ensemble_merges_both_schemas_and_confidence_tells_how_sure(runtime, sessions, clock, demo):
    notes, gold, _ = gold_notes(sessions, demo)
    schema = demo_schema(sessions, demo)
    with FakeLlmServer(notes, schema, FakeBehaviour(missed=0.2, seed=3)) as fake:
        endpoint_id = endpoint(sessions, fake.base_url)
        with TestClient(create_app(runtime, run_worker=True, clock=clock)):
            run_id = start(sessions, demo, endpoint_id, prompt_schema="ensemble", few_shot=0)
            assert wait_for_run(sessions, run_id) == "succeeded"
        schemas = Counter(a.prompt_schema for a in fake.served)
    assert schemas["iob_token"] > 0 and schemas["direct_chunk"] > 0
    with sessions() as db:
        confidences = Counter(
            db.scalars(
                select(Span.confidence)
                .join(AnnotationSet, AnnotationSet.id == Span.annotation_set_id)
                .where(AnnotationSet.pre_annotation_run_id == run_id)
            )
        )
    assert confidences[0.9] > 0  # found by both schemas
    assert confidences[0.7] > 0  # found by one
    with sessions() as db:
        head, tail = aliased(Span), aliased(Span)
        relations = db.execute(
            select(Relation.confidence, head.confidence, tail.confidence)
            .join(head, head.id == Relation.head_span_id)
            .join(tail, tail.id == Relation.tail_span_id)
            .join(AnnotationSet, AnnotationSet.id == Relation.annotation_set_id)
            .where(AnnotationSet.pre_annotation_run_id == run_id)
        ).all()
    assert relations  # the demo schema relates drugs to their doses
    assert all(r == min(h, t) for r, h, t in relations)  # as sure as its less sure span
    single = run_reports.evaluate_runs(sessions, demo, [run_id])[0].modes["strict"].micro
    assert single.recall > 0.8  # recall first: the union of two noisy views recalls more than one


def test_a_rerun_is_answered_from_the_cache(runtime, sessions, clock, demo):
    notes, _, _ = gold_notes(sessions, demo)
    schema = demo_schema(sessions, demo)
    with FakeLlmServer(notes[:3], schema, FakeBehaviour()) as fake:
        endpoint_id = endpoint(sessions, fake.base_url)
        with sessions() as db:
            ids = list(
                db.scalars(select(Document.id).where(Document.project_id == demo).order_by(Document.id))
            )[:3]
        with TestClient(create_app(runtime, run_worker=True, clock=clock)):
            first = start(
                sessions, demo, endpoint_id, prompt_schema="iob_token", document_ids=ids, few_shot=0
            )
            assert wait_for_run(sessions, first) == "succeeded"
            asked = fake.request_count
            assert asked > 0
            second = start(
                sessions, demo, endpoint_id, prompt_schema="iob_token", document_ids=ids, few_shot=0
            )
            assert wait_for_run(sessions, second) == "succeeded"
        assert fake.request_count == asked  # not one more call
    assert stored_pre_labels(sessions, first) == stored_pre_labels(sessions, second)
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(LlmResponse)) == asked


def test_faults_are_retried_and_failures_reported_then_rerun(runtime, sessions, clock, demo):
    notes, _, _ = gold_notes(sessions, demo)
    schema = demo_schema(sessions, demo)
    with sessions() as db:
        ids = list(db.scalars(select(Document.id).where(Document.project_id == demo).order_by(Document.id)))[
            :4
        ]
    behaviour = FakeBehaviour(fail_first=1, fail_first_status=429, hang_first=2, hang_seconds=1.0,
                              malformed_first=3, seed=1)  # fmt: skip
    with FakeLlmServer(notes, schema, behaviour) as fake:
        endpoint_id = endpoint(sessions, fake.base_url, timeout_seconds=0.5)
        with TestClient(create_app(runtime, run_worker=True, clock=clock)):
            # 429 once per prompt, then a hang past the time-out, then a broken body: all retried.
            run_id = start(sessions, demo, endpoint_id, prompt_schema="direct_chunk", document_ids=ids[:2])
            assert wait_for_run(sessions, run_id) == "succeeded"
            statuses = Counter(a.status for a in fake.served)
            assert statuses[429] > 0 and statuses[200] > 0
            with sessions() as db:
                records = [c for r in db.scalars(select(PreAnnotationResult.raw_outputs).where(
                    PreAnnotationResult.run_id == run_id)) for c in r]  # fmt: skip
            assert records and all(c["attempts"] == 4 for c in records)  # 429, time-out, broken, answer

            # An endpoint that always fails: every note fails with the reason, nothing half-written.
            fake.behaviour = FakeBehaviour(errors={500: 1.0})
            broken = start(sessions, demo, endpoint_id, prompt_schema="direct_chunk", document_ids=ids[2:])
            assert wait_for_run(sessions, broken) == "failed"
            results = [r for r in run_reports.note_results(sessions, broken)]
            assert {r.status for r in results} == {"failed"}
            assert all("500" in (r.error or "") for r in results)
            assert stored_pre_labels(sessions, broken) == {}

            # The endpoint heals: re-run the failed notes.
            fake.behaviour = FakeBehaviour()
            assert pre_annotation.rerun_failed(sessions, broken, user_id=None) == 2
            assert wait_for_run(sessions, broken) == "succeeded"
    assert set(stored_pre_labels(sessions, broken)) <= set(ids[2:])
    with sessions() as db:
        attempts = db.scalars(
            select(PreAnnotationResult.attempts).where(PreAnnotationResult.run_id == broken)
        )
        assert set(attempts) == {2}


def test_cancel_stops_the_run_and_nothing_more_is_written(runtime, sessions, demo):
    notes, _, _ = gold_notes(sessions, demo)
    schema = demo_schema(sessions, demo)
    with FakeLlmServer(notes, schema, FakeBehaviour()) as fake:
        endpoint_id = endpoint(sessions, fake.base_url)
        run_id = start(sessions, demo, endpoint_id, prompt_schema="direct_chunk")  # no worker yet
        pre_annotation.cancel_run(sessions, run_id, user_id=None)
        document_id = next(iter(gold_notes(sessions, demo)[1]))
        assert pre_annotation.claim_note(sessions, run_id, document_id) is None
        assert fake.request_count == 0
    with sessions() as db:
        run = db.get(PreAnnotationRun, run_id)
        assert run.status == "cancelled"
        assert set(
            db.scalars(select(PreAnnotationResult.status).where(PreAnnotationResult.run_id == run_id))
        ) == {"cancelled"}
    with pytest.raises(pre_annotation.RunError, match="already cancelled"):
        pre_annotation.cancel_run(sessions, run_id, user_id=None)


def test_a_bad_run_request_names_its_field_and_stores_nothing(sessions, demo):
    cases = [
        ({"name": ""}, "name"),
        ({"method": "oracle"}, "method"),
        ({"prompt_schema": "free_text"}, "prompt_schema"),
        ({"endpoint_id": None}, "endpoint"),
        ({"endpoint_id": 999}, "endpoint"),
        ({"chunk_size": 5}, "chunk_size"),
        ({"document_ids": [123456]}, "document_ids"),
        ({"method": "lexicon"}, "lexicon"),
        ({"method": "lexicon", "lexicon_csv": "label,term\nNoSuchLabel,aspirin\n"}, "lexicon"),
    ]
    endpoint_id = endpoint(sessions, "http://127.0.0.1:9/v1")
    for changes, field in cases:
        request = {"name": "run", "endpoint_id": endpoint_id, **changes}
        with pytest.raises(pre_annotation.RunError) as caught:
            pre_annotation.start_run(sessions, demo, pre_annotation.RunRequest(**request), user_id=None,
                                     defer=lambda *a, **k: None)  # fmt: skip
        assert caught.value.field == field, changes
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(PreAnnotationRun).where(
            PreAnnotationRun.method != "imported")) == 0  # fmt: skip
        assert db.scalar(select(func.count()).select_from(PreAnnotationResult)) == 0


def test_the_lexicon_method_annotates_the_demo_notes_and_is_evaluated(runtime, sessions, clock, demo):
    _, gold, texts = gold_notes(sessions, demo)
    drugs = sorted({texts[d][s:e] for d in gold for label, s, e in gold[d] if label == "Drug"})
    lexicon = "label,term\n" + "".join(f'Drug,"{term}"\n' for term in drugs[: len(drugs) // 2])
    with TestClient(create_app(runtime, run_worker=True, clock=clock)):
        run_id = pre_annotation.start_run(
            sessions, demo,
            pre_annotation.RunRequest(name="half the drug names", method="lexicon", lexicon_csv=lexicon),
            user_id=None,
        )  # fmt: skip
        assert wait_for_run(sessions, run_id) == "succeeded"
    stored = stored_pre_labels(sessions, run_id)
    assert stored and all(label == "Drug" for spans in stored.values() for label, _, _ in spans)
    for document_id, spans in stored.items():
        for _, start, end in spans:
            assert texts[document_id][start:end].lower() in {d.lower() for d in drugs}
    evaluation = run_reports.evaluate_runs(sessions, demo, [run_id])[0]
    drug = evaluation.modes["strict"].per_label["Drug"]
    assert drug.tp > 0 and 0 < drug.recall < 1
    assert evaluation.modes["strict"].per_label["Strength"].tp == 0


def test_study_base_is_one_run_per_project(runtime, sessions, clock, demo):
    lexicon = "label,term\nDrug,aspirin\n"
    with TestClient(create_app(runtime, run_worker=True, clock=clock)):
        runs = [
            pre_annotation.start_run(
                sessions,
                demo,
                pre_annotation.RunRequest(name=f"lexicon {i}", method="lexicon", lexicon_csv=lexicon),
                user_id=None,
            )  # fmt: skip
            for i in range(2)
        ]
        for run_id in runs:
            assert wait_for_run(sessions, run_id) == "succeeded"
    pre_annotation.mark_study_base(sessions, runs[0], user_id=None)
    pre_annotation.mark_study_base(sessions, runs[1], user_id=None)
    with sessions() as db:
        bases = db.scalars(select(PreAnnotationRun.id).where(PreAnnotationRun.is_study_base)).all()
    assert bases == [runs[1]]


def test_no_connection_goes_anywhere_but_the_endpoint_and_the_database(
    runtime, sessions, clock, demo, monkeypatch
):
    notes, _, _ = gold_notes(sessions, demo)
    schema = demo_schema(sessions, demo)
    seen: list = []
    original = socket.socket.connect

    def recording_connect(self, address):
        seen.append(address)
        return original(self, address)

    with FakeLlmServer(notes[:2], schema, FakeBehaviour()) as fake:
        endpoint_id = endpoint(sessions, fake.base_url)
        port = int(fake.base_url.rsplit(":", 1)[1].split("/")[0])
        with sessions() as db:
            ids = list(
                db.scalars(select(Document.id).where(Document.project_id == demo).order_by(Document.id))
            )[:2]
        monkeypatch.setattr(socket.socket, "connect", recording_connect)
        with TestClient(create_app(runtime, run_worker=True, clock=clock)):
            run_id = start(sessions, demo, endpoint_id, prompt_schema="direct_chunk", document_ids=ids)
            assert wait_for_run(sessions, run_id) == "succeeded"
    database_port = runtime.database.url.port if hasattr(runtime.database.url, "port") else None
    hosts = {a for a in seen if isinstance(a, tuple)}
    assert ("127.0.0.1", port) in hosts
    others = {a for a in hosts if a != ("127.0.0.1", port) and a[1] != database_port}
    assert others == set(), others


def test_only_active_results_are_claimed_and_a_note_is_written_once(sessions, demo):
    """The guard a killed-and-restarted worker relies on: a finished note is never written again."""
    endpoint_id = endpoint(sessions, "http://127.0.0.1:9/v1")
    run_id = start(sessions, demo, endpoint_id, prompt_schema="direct_chunk", defer=lambda *a, **k: None)
    with sessions() as db:
        document_id = db.scalar(
            select(PreAnnotationResult.document_id).where(PreAnnotationResult.run_id == run_id)
        )
    work = pre_annotation.claim_note(sessions, run_id, document_id)
    again = pre_annotation.claim_note(sessions, run_id, document_id)  # a stalled job put back
    outcome = pre_annotation.NoteOutcome(spans=[("Drug", 0, 3, 0.7)], relations=[], chunk_records=[])
    assert pre_annotation.finish_note(sessions, work, outcome) is True
    assert pre_annotation.finish_note(sessions, again, outcome) is False
    assert pre_annotation.claim_note(sessions, run_id, document_id) is None
    with sessions() as db:
        sets = db.scalar(
            select(func.count()).where(
                AnnotationSet.pre_annotation_run_id == run_id, AnnotationSet.document_id == document_id
            )
        )
        attempts = db.scalar(
            select(PreAnnotationResult.attempts).where(
                PreAnnotationResult.run_id == run_id, PreAnnotationResult.document_id == document_id
            )
        )
    assert sets == 1 and attempts == 2


def test_garbage_answers_are_asked_again_and_never_cached(runtime, sessions, clock, demo):
    notes, _, _ = gold_notes(sessions, demo)
    with sessions() as db:
        ids = list(db.scalars(select(Document.id).where(Document.project_id == demo).order_by(Document.id)))[
            :4
        ]
    with FakeLlmServer(notes, demo_schema(sessions, demo), FakeBehaviour(garbage_first=1)) as fake:
        endpoint_id = endpoint(sessions, fake.base_url)
        with TestClient(create_app(runtime, run_worker=True, clock=clock)):
            healed = start(
                sessions, demo, endpoint_id, prompt_schema="iob_token", document_ids=ids[:2], few_shot=0
            )
            assert wait_for_run(sessions, healed) == "succeeded"
            # A model that only ever answers prose: the notes fail, saying why; nothing is cached.
            fake.behaviour = FakeBehaviour(garbage_rate=1.0)
            hopeless = start(
                sessions, demo, endpoint_id, prompt_schema="iob_token", document_ids=ids[2:], few_shot=0
            )
            assert wait_for_run(sessions, hopeless) == "failed"
    with sessions() as db:
        records = [c for r in db.scalars(select(PreAnnotationResult.raw_outputs).where(
            PreAnnotationResult.run_id == healed)) for c in r]  # fmt: skip
        cached = set(db.scalars(select(LlmResponse.response_text)))
    assert records and all(len(c["unparseable"]) == 1 and c["output"] for c in records)
    assert not any("cannot help" in text for text in cached)
    assert stored_pre_labels(sessions, healed)
    failed = run_reports.note_results(sessions, hopeless)
    assert {r.status for r in failed} == {"failed"}
    assert all("no parseable answer" in r.error for r in failed)
    assert stored_pre_labels(sessions, hopeless) == {}
