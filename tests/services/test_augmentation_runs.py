"""Augmentation runs end to end: real PostgreSQL, the real job queue, and the fake LLM over real HTTP.

A run over the demo's gold makes synthetic notes whose spans cover exactly the texts they covered in
the source, with the context outside the rewritten segment unchanged; the answers the fake model
spoils are rejected, counted and shown; and no synthetic note reaches a study, a figure or an export
of real notes.
"""

import io
import json
import time
import zipfile

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.db.models import AnnotationSet, AugmentationResult, AugmentationRun, Document, Project, SyntheticNote
from app.demo.seed import DEMO_LOGINS, DEMO_PROJECT, seed_demo
from app.llm.fake_server import FakeBehaviour, FakeLlmServer
from app.services import augmentation, editing
from app.services.exports import export_project
from app.services.metrics import project_metrics
from app.web.app import create_app
from tests.conftest import log_in, page
from tests.services.test_pre_annotation import demo_schema, endpoint, gold_notes


@pytest.fixture
def demo(sessions):
    seed_demo(sessions)
    with sessions() as db:
        return db.scalar(select(Project.id).where(Project.name == DEMO_PROJECT))


def start(sessions, project_id, endpoint_id, **request) -> int:
    return augmentation.start_augmentation(
        sessions,
        project_id,
        augmentation.AugmentationRequest(name=request.pop("name", "aug"), endpoint_id=endpoint_id, **request),
        user_id=None,
    )


def wait_for(sessions, run_id, timeout=90.0) -> str:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        with sessions() as db:
            status = db.scalar(select(AugmentationRun.status).where(AugmentationRun.id == run_id))
        if status in augmentation.FINISHED:
            return status
        time.sleep(0.2)
    raise AssertionError(f"augmentation run {run_id} still {status} after {timeout} s")


def source_spans(sessions, set_id: int, text: str) -> list[tuple[str, str]]:
    """(label, covered text) of every span of a set, in text order."""
    with sessions() as db:
        spans = editing.load_spans(db, set_id)
    ordered = sorted(spans.values(), key=lambda s: (s.fragments[0][0], -s.fragments[-1][1], s.label))
    return [(s.label, " ".join(text[a:b] for a, b in s.fragments)) for s in ordered]


def run_once(runtime, sessions, clock, demo, behaviour, **request):
    notes, _, _ = gold_notes(sessions, demo)
    schema = demo_schema(sessions, demo)
    with FakeLlmServer(notes, schema, behaviour) as fake:
        endpoint_id = endpoint(sessions, fake.base_url)
        with TestClient(create_app(runtime, run_worker=True, clock=clock)):
            run_id = start(sessions, demo, endpoint_id, **request)
            assert wait_for(sessions, run_id) == "succeeded"
        served = [a for a in fake.served if a.prompt_schema == "augment"]
    return run_id, served


def test_a_run_makes_valid_synthetic_notes_and_reports_what_it_rejected(runtime, sessions, clock, demo):
    run_id, served = run_once(
        runtime, sessions, clock, demo, FakeBehaviour(augment_fault_by_variant={3: "drop_marker"}, seed=3),
        labels=["Drug"], variants=3, max_segments=1, freedom="light",
    )  # fmt: skip
    with sessions() as db:
        notes = db.scalars(select(SyntheticNote).where(SyntheticNote.run_id == run_id)).all()
        results = db.scalars(select(AugmentationResult).where(AugmentationResult.run_id == run_id)).all()
        sources = {
            s.id: d.text
            for s, d in db.execute(
                select(AnnotationSet, Document).join(Document, Document.id == AnnotationSet.document_id)
            )
        }
    requested = sum(r.counts["requested"] for r in results)
    assert requested == len(served) > 0  # one request per segment and variant, none repeated
    assert len(notes) == sum(r.counts["accepted"] for r in results) > 0
    rejected = sum(r.counts["rejected"] for r in results)
    assert rejected == requested // 3  # variant 3 of every segment dropped a marker
    assert {reason for r in results for reason in r.counts["rejections"]} <= {
        "dropped_marker",
        "lost_relation_argument",
    }
    for note in notes:
        source_text = sources[note.source_set_id]
        # Outside the segment the note is the source, character for character.
        assert note.text.startswith(source_text[: note.segment_start])
        assert note.text.endswith(source_text[note.segment_end :])
        assert note.text != source_text
        # Every span covers exactly the text it covered in the source (freedom "light" keeps them).
        covered = [(s["label"], " ".join(note.text[a:b] for a, b in s["fragments"])) for s in note.spans]
        assert sorted(covered) == sorted(source_spans(sessions, note.source_set_id, source_text))
        ids = {s["id"] for s in note.spans}
        assert all(r["head"] in ids and r["tail"] in ids for r in note.relations)
    # Each rejected answer is kept with its reason and shown to the lead.
    outputs = augmentation.rejected_outputs(sessions, run_id)
    assert len(outputs) == rejected and all(o["variant"] == 3 for o in outputs)
    client = TestClient(create_app(runtime, clock=clock), follow_redirects=False)
    with client:
        lead = next(password for _, login, password in DEMO_LOGINS if login == "lead")
        log_in(client, "lead", lead)
        html = page(client.get(f"/lead/augmentation/{run_id}"))
        assert html.select_one("[data-testid=run-rejected]").text == str(rejected)
        assert len(html.select("[data-testid=rejected-output]")) == rejected
        assert len(html.select("[data-testid=synthetic-note]")) == min(len(notes), 100)
        exported = client.get(f"/lead/augmentation/{run_id}/export?format=jsonl")
        assert exported.status_code == 200
        lines = [json.loads(line) for line in exported.text.splitlines()]
        assert len(lines) == len(notes) and all(line["synthetic"] is True for line in lines)
        with sessions() as db:
            real = dict(db.execute(select(Document.id, Document.external_id)).all())
        stored = {(real[n.source_document_id], n.segment_start, n.variant): n.text for n in notes}
        # Each line names its source note, segment and variant, and carries exactly the stored note.
        named = {(ln["source"]["note"], ln["source"]["segment"][0], ln["source"]["variant"]): ln["text"]
                 for ln in lines}  # fmt: skip
        assert named == stored
        brat = client.get(f"/lead/augmentation/{run_id}/export?format=brat")
        with zipfile.ZipFile(io.BytesIO(brat.content)) as archive:
            names = archive.namelist()
            manifest = archive.read("synthetic/SOURCES.tsv").decode().splitlines()
        assert len([n for n in names if n.endswith(".ann")]) == len(notes)
        assert len(manifest) == len(notes) + 1 and all("\ttrue\t" in row for row in manifest[1:])


def test_no_synthetic_note_reaches_a_study_a_figure_or_an_export_of_real_notes(
    runtime, sessions, clock, demo
):
    before_metrics = project_metrics(sessions, demo)
    before = {
        fmt: export_project(sessions, demo, fmt, None, actor_id=None).content for fmt in ("jsonl", "brat")
    }
    from app.db.models import Assignment

    with sessions() as db:
        documents_before = db.scalar(select(func.count()).select_from(Document))
        assignments_before = db.execute(
            select(Assignment.id, Assignment.document_id).order_by(Assignment.id)
        ).all()
    run_id, _ = run_once(
        runtime,
        sessions,
        clock,
        demo,
        FakeBehaviour(seed=5),
        labels=["Drug", "Strength"],
        variants=2,
        max_segments=3,
    )
    with sessions() as db:
        synthetic = db.scalars(select(SyntheticNote.text).where(SyntheticNote.run_id == run_id)).all()
        assert db.scalar(select(func.count()).select_from(Document)) == documents_before
    assert synthetic
    after_metrics = project_metrics(sessions, demo)
    for key in ("documents", "submitted_sets", "progress", "pre_label_quality", "physicians_against_gold"):
        assert after_metrics[key] == before_metrics[key], key
    for fmt in ("jsonl", "brat"):
        content = export_project(sessions, demo, fmt, None, actor_id=None).content
        if fmt == "jsonl":
            assert content == before[fmt]  # byte for byte: nothing synthetic was added
        else:
            with zipfile.ZipFile(io.BytesIO(content)) as archive:
                texts = {archive.read(n).decode() for n in archive.namelist() if n.endswith(".txt")}
            assert not texts & set(synthetic)
    # Studies assign documents only: the physicians' queues are exactly what they were.
    with sessions() as db:
        assert db.execute(select(Assignment.id, Assignment.document_id).order_by(Assignment.id)).all() == (
            assignments_before
        )


def test_a_bad_run_request_names_its_field_and_stores_nothing(sessions, demo):
    with pytest.raises(augmentation.AugmentationError, match="endpoint"):
        start(sessions, demo, None, labels=["Drug"])
    with pytest.raises(
        augmentation.AugmentationError, match="labels: not entity types of this project: Nope"
    ):
        start(sessions, demo, None, labels=["Nope"])
    with pytest.raises(augmentation.AugmentationError, match="variants"):
        start(sessions, demo, None, labels=["Drug"], variants=9)
    with pytest.raises(augmentation.AugmentationError, match="freedom"):
        start(sessions, demo, None, labels=["Drug"], freedom="wild")
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(AugmentationRun)) == 0


def test_a_set_is_written_once_however_often_its_job_runs(runtime, sessions, clock, demo):
    """The guard a killed-and-restarted worker relies on: a finished set is never claimed or written again."""
    run_id, _ = run_once(
        runtime, sessions, clock, demo, FakeBehaviour(seed=2), labels=["Drug"], variants=1, max_segments=1
    )
    with sessions() as db:
        set_id = db.scalar(
            select(AugmentationResult.source_set_id).where(AugmentationResult.run_id == run_id)
        )
        count = db.scalar(select(func.count()).select_from(SyntheticNote))
    assert augmentation.claim_set(sessions, run_id, set_id) is None
    with sessions.begin() as db:  # as if a second job had claimed it before the first one finished
        db.get(AugmentationResult, (run_id, set_id)).status = "running"
    work = augmentation.claim_set(sessions, run_id, set_id)
    with sessions.begin() as db:
        db.get(AugmentationResult, (run_id, set_id)).status = "succeeded"
    assert augmentation.finish_set(sessions, work, augmentation.SetOutcome(notes=[], counts={})) is False
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(SyntheticNote)) == count
