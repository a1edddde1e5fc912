"""Batches on a real PostgreSQL: stored all or nothing, PHI held for review, layers of imported annotations.

Every test checks the outcome AND what the database holds: a refusal stores no document, batch,
annotation set or span, and its audit event says where the problems are, never what the notes say.
"""

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from app.db.models import (
    AnnotationSet,
    AuditEvent,
    Batch,
    Document,
    DocumentAnswer,
    PreAnnotationRun,
    Relation,
    Span,
    SpanFragment,
)
from app.services.batches import BatchError, batch_detail, reject_batch, release_batch, upload_batch
from app.services.projects import create_project
from tests.conftest import log_in, page, session_csrf

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
REASON = "the hits are synthetic, made up for this test"

SCHEMA = {
    "entity_types": [
        {"name": "Drug", "color": "#1f77b4"},
        {"name": "Strength", "color": "#ff7f0e"},
        {"name": "Reason", "color": "#2ca02c"},
    ],
    "relation_types": [{"name": "Strength-Drug", "head_types": ["Strength"], "tail_types": ["Drug"]}],
    "span_attributes": [{"name": "certainty", "values": ["certain", "possible"], "applies_to": ["Reason"]}],
    "document_questions": [
        {
            "key": "primary_diagnosis",
            "prompt": "Primary diagnosis",
            "kind": "choice",
            "choices": ["angina", "MI"],
        },
        {"key": "evidence", "prompt": "Supporting evidence", "kind": "evidence"},
        {"key": "confidence", "prompt": "Confidence", "kind": "scale", "scale_min": 1, "scale_max": 5},
    ],
}

CLEAN = "Aspirin 81 mg daily for chest pain."
PHI = "Patient: John Smith, MRN 12345678, seen 03/04/2019"
ANN = (
    "T1\tDrug 0 7\tAspirin\n"
    "T2\tStrength 8 13\t81 mg\n"
    "T3\tReason 24 29;30 34\tchest pain\n"
    "R1\tStrength-Drug Arg1:T2 Arg2:T1\n"
    "A1\tcertainty T3 possible\n"
    "N1\tReference T1 RxNorm:1191\tAspirin\n"
    "#1\tAnnotatorNotes T1\tconfidence=0.9\n"
)


def jsonl_of(**changes) -> bytes:
    """A JSONL upload: a bare note on line 1, then note n2 (CLEAN, annotated) with ``changes``."""
    note = {
        "id": "n2",
        "text": CLEAN,
        "spans": [
            {"id": "T1", "label": "Drug", "fragments": [[0, 7]]},
            {"id": "T3", "label": "Reason", "fragments": [[24, 29], [30, 34]]},
        ],
        **changes,
    }
    return (json.dumps({"id": "n1", "text": "Heparin 5000 units"}) + "\n" + json.dumps(note) + "\n").encode()


def zip_of(entries: dict[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def project(sessions):
    return create_project(sessions, "medications", SCHEMA)


def upload(sessions, runtime, project, files, layer=None, actor_id=None):
    return upload_batch(sessions, runtime.settings, project.id, files, actor_id=actor_id, layer=layer)


def counts(sessions) -> dict[str, int]:
    with sessions() as db:
        return {
            model.__tablename__: db.scalar(select(func.count()).select_from(model))
            for model in (Document, Batch, AnnotationSet, Span, Relation, DocumentAnswer)
        }


NOTHING = {
    "documents": 0,
    "batches": 0,
    "annotation_sets": 0,
    "spans": 0,
    "relations": 0,
    "document_answers": 0,
}


def events(sessions, action: str) -> list[AuditEvent]:
    with sessions() as db:
        return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def the_batch(sessions, batch_id: int) -> Batch:
    with sessions() as db:
        return db.get(Batch, batch_id)


def documents(sessions) -> dict[str, Document]:
    with sessions() as db:
        return {d.external_id: d for d in db.scalars(select(Document))}


# ---- accepted ---------------------------------------------------------------------------------------


def test_a_clean_note_is_stored_exactly_with_its_sha256(sessions, runtime, project):
    text = "\ufeffAspirin 81 mg\r\ndaily for chest pain.\r\n"
    outcome = upload(sessions, runtime, project, [("n1.txt", text.encode())])
    assert (outcome.status, outcome.stored, outcome.problems) == ("accepted", 1, [])
    assert outcome.already_stored == []
    stored = documents(sessions)
    assert list(stored) == ["n1"]
    assert stored["n1"].text == text
    assert stored["n1"].sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert stored["n1"].batch_id == outcome.batch_id and stored["n1"].project_id == project.id
    batch = the_batch(sessions, outcome.batch_id)
    assert (batch.status, batch.document_count, batch.staged, batch.file_names) == (
        "accepted",
        1,
        None,
        ["n1.txt"],
    )
    assert counts(sessions) == {**NOTHING, "documents": 1, "batches": 1}  # a bare note has no annotation set
    [event] = events(sessions, "batch.upload")
    assert event.details["status"] == "accepted" and text not in json.dumps(event.details)


# ---- refused: all or nothing ------------------------------------------------------------------------

REFUSALS = {
    "one bad file among good ones": (
        [
            ("good1.txt", CLEAN.encode()),
            ("bad.txt", b"Heparin\n5000 \xff units"),
            ("good2.txt", b"Heparin 5000 units"),
        ],
        None,
        [("bad.txt", 2, "invalid UTF-8")],
    ),
    "a malformed .ann line in a zip of pairs": (
        [
            (
                "set.zip",
                zip_of(
                    {
                        "set/a.txt": CLEAN,
                        "set/a.ann": "T1\tDrug 0 7\tAspirin\nA1\tcertainty\n",
                        "set/b.txt": "Heparin",
                    }
                ),
            )
        ],
        "pre:ctakes",
        [("set/a.ann", 2, "an attribute needs")],
    ),
    "a label not in the project's schema": (
        [("a.txt", CLEAN.encode()), ("a.ann", b"T1\tMedication 0 7\tAspirin\n"), ("b.txt", b"Heparin")],
        "pre:ctakes",
        [("a.ann", 1, "label 'Medication' is not in the project's schema")],
    ),
    "a relation type not in the project's schema": (
        [
            ("a.txt", CLEAN.encode()),
            ("a.ann", b"T1\tDrug 0 7\tAspirin\nT2\tStrength 8 13\t81 mg\nR1\tDose-of Arg1:T2 Arg2:T1\n"),
        ],
        "gold",
        [("a.ann", 3, "relation type 'Dose-of' is not in the project's schema")],
    ),
    "an unknown annotator login": (
        [("a.txt", CLEAN.encode()), ("a.ann", b"T1\tDrug 0 7\tAspirin\n")],
        "annotator:dr.nobody",
        [("(batch)", None, "layer: no user 'dr.nobody'")],
    ),
    "a layer that is none of pre:NAME, gold, annotator:LOGIN": (
        [("a.txt", CLEAN.encode())],
        "silver",
        [("(batch)", None, "layer: pre:NAME, gold or annotator:LOGIN")],
    ),
    "an answer to a question the schema does not ask": (
        [("notes.jsonl", jsonl_of(answers={"diagnosis": "angina"}))],
        "gold",
        [("notes.jsonl", 2, "answers.diagnosis: 'diagnosis' is not a question of this project")],
    ),
    "a choice the question does not offer": (
        [("notes.jsonl", jsonl_of(answers={"primary_diagnosis": "gout"}))],
        "gold",
        [("notes.jsonl", 2, 'answers.primary_diagnosis: "gout" is not one of angina, MI')],
    ),
    "a scale answer outside its scale": (
        [("notes.jsonl", jsonl_of(answers={"confidence": 7}))],
        "gold",
        [("notes.jsonl", 2, "answers.confidence: 7 is outside the scale 1 to 5")],
    ),
    "evidence pointing to no span of the note": (
        [("notes.jsonl", jsonl_of(answers={"evidence": ["T1", "T9"]}))],
        "gold",
        [("notes.jsonl", 2, "answers.evidence: no span has the id 'T9'")],
    ),
    "a relation status that is neither pending, confirmed nor undecided": (
        [
            (
                "notes.jsonl",
                jsonl_of(
                    relations=[
                        {
                            "id": "R1",
                            "type": "Strength-Drug",
                            "head": "T3",
                            "tail": "T1",
                            "status": "accepted",
                        }
                    ]
                ),  # fmt: skip
            )
        ],
        "gold",
        [("notes.jsonl", 2, "relations[0].status: Input should be 'pending', 'confirmed' or 'undecided'")],
    ),
    "an attribute value the schema does not offer": (
        [
            (
                "notes.jsonl",
                jsonl_of(
                    spans=[
                        {
                            "id": "T3",
                            "label": "Reason",
                            "fragments": [[24, 34]],
                            "attributes": {"certainty": "likely"},
                        }
                    ]
                ),  # fmt: skip
            )
        ],
        "gold",
        [("notes.jsonl", 2, "spans[0].attributes.certainty: 'likely' is not one of certain, possible")],
    ),
    "an attribute on a type it does not apply to": (
        [("a.txt", CLEAN.encode()), ("a.ann", b"T1\tDrug 0 7\tAspirin\nA1\tcertainty T1 possible\n")],
        "gold",
        [("a.ann", 2, "T1 certainty: does not apply to Drug (only to Reason)")],
    ),
    "a binary attribute line for an attribute with values": (
        [("a.txt", CLEAN.encode()), ("a.ann", b"T3\tReason 24 34\tchest pain\nA1\tcertainty T3\n")],
        "gold",
        [("a.ann", 2, "T3 certainty: needs a value, one of certain, possible")],
    ),
    "brat answers to a question the schema does not ask": (
        [
            (
                "set.zip",
                zip_of({"set/a.txt": CLEAN, "set/a.ann": ANN, "set/a.answers.json": '{"diagnosis": "MI"}'}),
            )
        ],
        "gold",
        [("set/a.answers.json", None, "answers.diagnosis: 'diagnosis' is not a question of this project")],
    ),
    "brat evidence naming no T line of its .ann": (
        [
            (
                "set.zip",
                zip_of({"set/a.txt": CLEAN, "set/a.ann": ANN, "set/a.answers.json": '{"evidence": ["T7"]}'}),
            )
        ],
        "gold",
        [("set/a.answers.json", None, "answers.evidence: no span has the id 'T7'")],
    ),
    "brat answers that are not JSON": (
        [("a.txt", CLEAN.encode()), ("a.ann", ANN.encode()), ("a.answers.json", b"{\n'confidence': 4}")],
        "gold",
        [("a.answers.json", 2, "not JSON")],
    ),
    "brat answers without their note": (
        [
            (
                "set.zip",
                zip_of({"set/a.txt": CLEAN, "set/a.ann": ANN, "set/c.answers.json": '{"confidence": 4}'}),
            )
        ],
        "gold",
        [("set/c.answers.json", None, "answers need their note beside them: no set/c.txt")],
    ),
}


@pytest.mark.parametrize(("files", "layer", "expected"), REFUSALS.values(), ids=REFUSALS.keys())
def test_a_refused_upload_stores_nothing_and_audits_only_where(
    sessions, runtime, project, files, layer, expected
):
    outcome = upload(sessions, runtime, project, files, layer=layer)
    assert outcome.status == "refused" and outcome.batch_id is None and outcome.stored == 0
    found = [(p.file, p.line, p.message) for p in outcome.problems]
    assert len(found) == len(expected), found
    for (file, line, message), (want_file, want_line, part) in zip(found, expected, strict=True):
        assert (file, line) == (want_file, want_line) and part in message, found
    assert counts(sessions) == NOTHING
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(PreAnnotationRun)) == 0
    [event] = events(sessions, "batch.refused")
    assert event.object_type == "project" and event.object_id == str(project.id)
    reasons = event.details.pop("reasons")
    assert event.details == {
        "files": [name for name, _ in files],
        "problems": [f"{f}:{line}" if line else f for f, line, _ in expected],
    }
    # Why each problem refused the upload, beside where: the message with its quoted stretches (an
    # .ann line, a note's name or text) left out.
    assert len(reasons) == len(found)
    for (_, _, message), reason in zip(found, reasons, strict=True):
        assert reason == message if "'" not in message else "'…'" in reason, (message, reason)
    logged = json.dumps({**event.details, "reasons": reasons}, ensure_ascii=False)
    for words in ("Aspirin", "Heparin", "chest pain"):
        assert words not in logged
    assert events(sessions, "batch.upload") == []


def test_a_stored_note_sent_again_is_not_stored_twice_and_a_copy_under_another_name_is_its_own(
    sessions, runtime, project
):
    first = upload(sessions, runtime, project, [("n1.txt", CLEAN.encode())])
    again = upload(
        sessions,
        runtime,
        project,
        [("n1.txt", CLEAN.encode()), ("copy.txt", CLEAN.encode()), ("n2.txt", b"Heparin 5000 units")],
    )
    assert first.status == "accepted"
    assert (again.status, again.stored, again.already_stored) == ("accepted", 2, ["n1"])
    assert again.same_text == [("copy", "n1")]  # a note of its own, reported, never dropped
    stored = documents(sessions)
    assert sorted(stored) == ["copy", "n1", "n2"] and stored["n1"].batch_id == first.batch_id
    assert the_batch(sessions, again.batch_id).document_count == 2
    assert "1 with the same text as another note" in again.summary()


def test_a_note_id_that_exists_with_another_text_is_refused_naming_the_first_differing_line(
    sessions, runtime, project
):
    upload(sessions, runtime, project, [("n1.txt", b"Aspirin 81 mg\ndaily\nfor chest pain\n")])
    before = counts(sessions)
    files = [("n1.txt", b"Aspirin 81 mg\ndaily for\nchest pain\n"), ("n2.txt", b"Warfarin")]
    outcome = upload(sessions, runtime, project, files)
    assert outcome.status == "refused" and counts(sessions) == before
    assert [(p.file, p.line, p.message) for p in outcome.problems] == [
        ("n1.txt", 2, "note 'n1' is in the project with another text (they differ from line 2 on)")
    ]
    # Asked to, the rest is stored and the mismatched note is reported as skipped.
    kept = upload_batch(sessions, runtime.settings, project.id, files, actor_id=None, skip_mismatched=True)
    assert (kept.status, kept.stored) == ("accepted", 1)
    assert [(p.file, p.line) for p in kept.skipped] == [("n1.txt", 2)]
    assert sorted(documents(sessions)) == ["n1", "n2"]
    assert documents(sessions)["n1"].text == "Aspirin 81 mg\ndaily\nfor chest pain\n"
    assert "1 skipped (another text under that name)" in kept.summary()


# ---- PHI: held, released with a reason, or rejected ---------------------------------------------------


def hold(sessions, runtime, project, files=None, layer=None):
    outcome = upload(
        sessions, runtime, project, files or [("n1.txt", PHI.encode()), ("n2.txt", CLEAN.encode())], layer
    )
    assert outcome.status == "held", [str(p) for p in outcome.problems]
    return outcome


def test_a_note_with_phi_holds_the_batch_and_stores_nothing_yet(sessions, runtime, project):
    outcome = hold(sessions, runtime, project)
    assert outcome.stored == 0 and outcome.flagged_documents == 1
    assert outcome.phi_counts == {"person_name": 1, "id_number": 1, "date": 1}
    assert counts(sessions) == {**NOTHING, "batches": 1}
    batch = the_batch(sessions, outcome.batch_id)
    assert batch.status == "held" and batch.document_count == 2
    assert {d["external_id"]: d["text"] for d in batch.staged["documents"]} == {"n1": PHI, "n2": CLEAN}
    assert PHI not in json.dumps(batch.phi_report)  # the report holds kinds and offsets only
    detail = batch_detail(sessions, outcome.batch_id)
    [note] = detail.flagged
    assert note.external_id == "n1" and note.counts == {"person_name": 1, "id_number": 1, "date": 1}
    assert {(kind, hit) for kind, _, hit, _ in note.excerpts} == {
        ("person_name", "John Smith"),
        ("id_number", "12345678"),
        ("date", "03/04/2019"),
    }
    assert note.excerpts[0] == ("person_name", "Patient: ", "John Smith", ", MRN 12345678, seen 03/04/201")
    [event] = events(sessions, "batch.upload")
    assert event.details["status"] == "held" and "John Smith" not in json.dumps(event.details)


@pytest.mark.parametrize("reason", ["", "   ", "ok fine", "  too short  "])
def test_a_release_without_a_real_reason_keeps_the_batch_held(sessions, runtime, project, reason):
    outcome = hold(sessions, runtime, project)
    with pytest.raises(BatchError, match="reason"):
        release_batch(sessions, outcome.batch_id, reason, actor_id=None, now=NOW)
    batch = the_batch(sessions, outcome.batch_id)
    assert batch.status == "held" and batch.staged is not None and batch.phi_override_reason is None
    assert counts(sessions) == {**NOTHING, "batches": 1}
    assert events(sessions, "batch.phi_override") == []


def test_a_release_with_a_reason_stores_the_notes_and_audits_the_reason(sessions, runtime, project, accounts):
    outcome = hold(sessions, runtime, project)
    admin_id = accounts["admin"].id
    assert release_batch(sessions, outcome.batch_id, f"  {REASON}  ", actor_id=admin_id, now=NOW) == 2
    stored = documents(sessions)
    assert {k: d.text for k, d in stored.items()} == {"n1": PHI, "n2": CLEAN}
    assert stored["n1"].sha256 == hashlib.sha256(PHI.encode()).hexdigest()
    batch = the_batch(sessions, outcome.batch_id)
    assert (batch.status, batch.staged, batch.phi_override_reason) == ("accepted", None, REASON)
    assert (batch.decided_by, batch.decided_at) == (admin_id, NOW)
    [event] = events(sessions, "batch.phi_override")
    assert (event.user_id, event.object_type, event.object_id) == (admin_id, "batch", str(outcome.batch_id))
    assert event.details["reason"] == REASON and event.details["documents"] == 2
    with pytest.raises(BatchError, match="not held"):
        release_batch(sessions, outcome.batch_id, REASON, actor_id=admin_id, now=NOW)
    assert counts(sessions)["documents"] == 2 and len(events(sessions, "batch.phi_override")) == 1


def test_a_rejected_batch_erases_its_notes(sessions, runtime, project, accounts):
    outcome = hold(sessions, runtime, project)
    reject_batch(sessions, outcome.batch_id, actor_id=accounts["admin"].id, now=NOW)
    batch = the_batch(sessions, outcome.batch_id)
    assert (batch.status, batch.staged, batch.decided_at) == ("rejected", None, NOW)
    assert counts(sessions) == {**NOTHING, "batches": 1}
    [event] = events(sessions, "batch.reject")
    assert event.object_id == str(outcome.batch_id) and "John" not in json.dumps(event.details)
    assert batch_detail(sessions, outcome.batch_id).flagged[0].excerpts == []  # the text is gone
    for decide in (
        lambda: release_batch(sessions, outcome.batch_id, REASON, actor_id=None, now=NOW),
        lambda: reject_batch(sessions, outcome.batch_id, actor_id=None, now=NOW),
    ):
        with pytest.raises(BatchError, match="not held"):
            decide()
    assert counts(sessions) == {**NOTHING, "batches": 1}


def test_an_unknown_batch_cannot_be_released_or_rejected(sessions):
    with pytest.raises(BatchError):
        release_batch(sessions, 999, REASON, actor_id=None, now=NOW)
    with pytest.raises(BatchError):
        reject_batch(sessions, 999, actor_id=None, now=NOW)
    assert batch_detail(sessions, 999) is None


def test_releasing_a_batch_whose_note_id_was_stored_meanwhile_is_refused(sessions, runtime, project):
    held = hold(sessions, runtime, project, [("n1.txt", PHI.encode())])
    assert upload(sessions, runtime, project, [("n1.txt", CLEAN.encode())]).status == "accepted"
    with pytest.raises(BatchError, match="n1"):
        release_batch(sessions, held.batch_id, REASON, actor_id=None, now=NOW)
    assert the_batch(sessions, held.batch_id).status == "held"
    assert documents(sessions)["n1"].text == CLEAN


def test_a_layer_name_too_long_to_store_is_refused_naming_the_layer(sessions, runtime, project):
    files = [("a.txt", CLEAN.encode()), ("a.ann", b"T1\tDrug 0 7\tAspirin\n")]
    outcome = upload(sessions, runtime, project, files, layer="pre:" + "x" * 250)
    assert outcome.status == "refused"
    assert [p.file for p in outcome.problems] == ["(batch)"] and outcome.problems[0].message.startswith(
        "layer:"
    )
    assert counts(sessions) == NOTHING


def test_a_note_id_too_long_to_store_is_refused_naming_file_and_line(sessions, runtime, project):
    lines = json.dumps({"id": "n1", "text": "Heparin"}) + "\n" + json.dumps({"id": "n" * 250, "text": CLEAN})
    outcome = upload(sessions, runtime, project, [("notes.jsonl", lines.encode())])
    assert outcome.status == "refused"
    assert [(p.file, p.line) for p in outcome.problems] == [("notes.jsonl", 2)]
    assert counts(sessions) == NOTHING


# ---- layers of imported annotations ------------------------------------------------------------------

PAIRS = {"export/a.txt": CLEAN, "export/a.ann": ANN, "export/b.txt": "Heparin 5000 units", "export/b.ann": ""}


def stored_layer(sessions):
    """(set, [(span, fragments)], relations) of note a."""
    with sessions() as db:
        document = db.scalar(select(Document).where(Document.external_id == "a"))
        sets = list(db.scalars(select(AnnotationSet).where(AnnotationSet.document_id == document.id)))
        assert len(sets) == 1
        spans = list(db.scalars(select(Span).where(Span.annotation_set_id == sets[0].id).order_by(Span.uid)))
        fragments = {
            s.id: [
                (f.start, f.end)
                for f in db.scalars(
                    select(SpanFragment).where(SpanFragment.span_id == s.id).order_by(SpanFragment.ordinal)
                )
            ]
            for s in spans
        }
        relations = list(db.scalars(select(Relation).where(Relation.annotation_set_id == sets[0].id)))
        by_id = {s.id: s.uid for s in spans}
        return (
            sets[0],
            spans,
            fragments,
            [(r.uid, r.type, by_id[r.head_span_id], by_id[r.tail_span_id]) for r in relations],
        )


def check_annotations(spans, fragments, relations, status):
    by_uid = {s.uid: s for s in spans}
    assert {uid: (s.label, fragments[s.id]) for uid, s in by_uid.items()} == {
        "T1": ("Drug", [(0, 7)]),
        "T2": ("Strength", [(8, 13)]),
        "T3": ("Reason", [(24, 29), (30, 34)]),
    }
    assert {s.status for s in spans} == {status}
    assert by_uid["T3"].attributes == {"certainty": "possible"}
    t1 = by_uid["T1"]
    assert (t1.concept_system, t1.concept_code, t1.concept_name) == ("RxNorm", "1191", "Aspirin")
    assert t1.notes == ["confidence=0.9"] and t1.confidence == pytest.approx(0.9)
    assert relations == [("R1", "Strength-Drug", "T2", "T1")]


def test_pairs_imported_as_a_named_pre_annotation_run(sessions, runtime, project):
    outcome = upload(sessions, runtime, project, [("export.zip", zip_of(PAIRS))], layer="pre:ctakes")
    assert (outcome.status, outcome.stored) == ("accepted", 2), [str(p) for p in outcome.problems]
    with sessions() as db:
        [run] = db.scalars(select(PreAnnotationRun))
        assert (run.name, run.method, run.project_id, run.status) == (
            "ctakes",
            "imported",
            project.id,
            "succeeded",
        )
    annotation_set, spans, fragments, relations = stored_layer(sessions)
    assert (annotation_set.origin, annotation_set.pre_annotation_run_id, annotation_set.source_name) == (
        "pre_annotation",
        run.id,
        "ctakes",
    )
    assert annotation_set.annotator_id is None
    check_annotations(spans, fragments, relations, "pending")
    assert counts(sessions) == {**NOTHING, "documents": 2, "batches": 1, "annotation_sets": 2, "spans": 3,
                                "relations": 1}  # fmt: skip


def test_a_second_upload_to_the_same_source_reuses_its_run(sessions, runtime, project):
    upload(sessions, runtime, project, [("export.zip", zip_of(PAIRS))], layer="pre:ctakes")
    more = {"c.txt": "Warfarin 5 mg", "c.ann": "T1\tDrug 0 8\tWarfarin\n"}
    assert (
        upload(sessions, runtime, project, [("more.zip", zip_of(more))], layer="pre:ctakes").status
        == "accepted"
    )
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(PreAnnotationRun)) == 1


def test_pairs_imported_as_gold(sessions, runtime, project):
    outcome = upload(sessions, runtime, project, [("export.zip", zip_of(PAIRS))], layer="gold")
    assert outcome.status == "accepted"
    annotation_set, spans, fragments, relations = stored_layer(sessions)
    assert (annotation_set.origin, annotation_set.pre_annotation_run_id, annotation_set.annotator_id) == (
        "gold",
        None,
        None,
    )
    check_annotations(spans, fragments, relations, "confirmed")
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(PreAnnotationRun)) == 0


def test_pairs_imported_as_an_annotators_set(sessions, runtime, project, accounts):
    outcome = upload(sessions, runtime, project, [("export.zip", zip_of(PAIRS))], layer="annotator:Annotator")
    assert outcome.status == "accepted"
    annotation_set, spans, fragments, relations = stored_layer(sessions)
    assert (annotation_set.origin, annotation_set.annotator_id, annotation_set.source_name) == (
        "annotator",
        accounts["annotator"].id,
        "annotator:annotator",
    )
    check_annotations(spans, fragments, relations, "confirmed")


def test_held_pairs_keep_their_annotations_until_released(sessions, runtime, project):
    pairs = {**PAIRS, "export/b.txt": PHI}
    outcome = hold(sessions, runtime, project, [("export.zip", zip_of(pairs))], layer="pre:ctakes")
    assert counts(sessions) == {**NOTHING, "batches": 1}
    release_batch(sessions, outcome.batch_id, REASON, actor_id=None, now=NOW)
    _, spans, fragments, relations = stored_layer(sessions)
    check_annotations(spans, fragments, relations, "pending")
    assert counts(sessions) == {**NOTHING, "documents": 2, "batches": 1, "annotation_sets": 2, "spans": 3,
                                "relations": 1}  # fmt: skip


# ---- answers, relation states and attributes -------------------------------------------------------


def stored_answers(sessions) -> dict[str, dict]:
    """Note id -> question key -> stored answer."""
    with sessions() as db:
        rows = db.execute(
            select(Document.external_id, DocumentAnswer.question_key, DocumentAnswer.value)
            .join(AnnotationSet, AnnotationSet.document_id == Document.id)
            .join(DocumentAnswer, DocumentAnswer.annotation_set_id == AnnotationSet.id)
        ).all()
    answers: dict[str, dict] = {}
    for external_id, key, value in rows:
        answers.setdefault(external_id, {})[key] = value
    return answers


def test_jsonl_answers_and_relation_states_are_stored(sessions, runtime, project):
    content = jsonl_of(
        spans=[
            # Not a uid the app can keep: stored as s0, and the evidence that names it follows.
            {"id": "mention 1", "label": "Drug", "fragments": [[0, 7]]},
            {"id": "T2", "label": "Strength", "fragments": [[8, 13]]},
            {"id": "T3", "label": "Reason", "fragments": [[24, 34]], "attributes": {"certainty": "possible"}},
        ],
        relations=[
            {
                "id": "R1",
                "type": "Strength-Drug",
                "head": "T2",
                "tail": "mention 1",
                "status": "confirmed",
                "confidence": 0.8,
            },
            {"id": "R2", "type": "Strength-Drug", "head": "T2", "tail": "mention 1"},
        ],  # fmt: skip
        answers={"primary_diagnosis": "MI", "evidence": ["T3", "mention 1"], "confidence": None},
    )
    outcome = upload(sessions, runtime, project, [("notes.jsonl", content)], layer="pre:model")
    assert (outcome.status, outcome.stored, outcome.warnings) == ("accepted", 2, [])
    with sessions() as db:
        relations = {
            r.uid: (r.status, r.confidence) for r in db.scalars(select(Relation).order_by(Relation.uid))
        }
        spans = {s.uid: s.attributes for s in db.scalars(select(Span))}
    assert relations == {"R1": ("confirmed", 0.8), "R2": ("pending", None)}  # R2: as its pre-labelled spans
    assert spans == {"s0": {}, "T2": {}, "T3": {"certainty": "possible"}}
    # A null is no answer: nothing stored for it.
    assert stored_answers(sessions) == {"n2": {"primary_diagnosis": "MI", "evidence": ["T3", "s0"]}}
    assert counts(sessions)["document_answers"] == 2


def test_brat_answers_beside_the_ann_wait_with_a_held_batch(sessions, runtime, project):
    pairs = {**PAIRS, "export/b.txt": PHI, "export/a.answers.json": '{"evidence": ["T3"], "confidence": 5}'}
    outcome = hold(sessions, runtime, project, [("export.zip", zip_of(pairs))], layer="pre:ctakes")
    assert outcome.warnings == []  # the sidecar is read, not left out as "not a note"
    assert counts(sessions) == {**NOTHING, "batches": 1}
    release_batch(sessions, outcome.batch_id, REASON, actor_id=None, now=NOW)
    assert stored_answers(sessions) == {"a": {"evidence": ["T3"], "confidence": 5}}
    _, spans, fragments, relations = stored_layer(sessions)
    check_annotations(spans, fragments, relations, "pending")
    with sessions() as db:
        assert {r.status for r in db.scalars(select(Relation))} == {"pending"}


# ---- a decision per flagged note (issue 20) ---------------------------------------------------------

NOTE_REASON = "the patient asked to be left out of the study"
# A flagged note with pre-labels before, after and across its hits (offsets in code points).
PHI_NOTE = "Seen 03/04/2019 by Dr. Jane Doe: aspirin 81 mg, call 555-123-4567 if chest pain."
#           0         1         2         3         4         5         6         7
#           01234567890123456789012345678901234567890123456789012345678901234567890123456789


def phi_jsonl() -> bytes:
    spans = [
        {"id": "T1", "label": "Drug", "fragments": [[33, 40]]},  # aspirin: after the date and the name
        {"id": "T2", "label": "Strength", "fragments": [[41, 46]]},  # 81 mg
        {"id": "T3", "label": "Reason", "fragments": [[69, 74], [75, 79]]},  # chest pain: after the phone
        {"id": "T4", "label": "Reason", "fragments": [[5, 21]]},  # across the date into "by Dr"
    ]
    note = {"id": "flagged", "text": PHI_NOTE, "spans": spans}
    clean = {"id": "clean", "text": CLEAN, "spans": [{"id": "T1", "label": "Drug", "fragments": [[0, 7]]}]}
    return (json.dumps(note) + "\n" + json.dumps(clean) + "\n").encode()


def decide(sessions, batch_id, note, decision, reason=NOTE_REASON, actor=None):
    from app.services.batches import decide_note

    return decide_note(sessions, batch_id, note, decision, reason, actor_id=actor, now=NOW)


def stored_spans(sessions, external_id) -> dict[str, list[tuple[int, int]]]:
    with sessions() as db:
        rows = db.execute(
            select(Span.uid, SpanFragment.start, SpanFragment.end)
            .join(SpanFragment, SpanFragment.span_id == Span.id)
            .join(AnnotationSet, AnnotationSet.id == Span.annotation_set_id)
            .join(Document, Document.id == AnnotationSet.document_id)
            .where(Document.external_id == external_id)
            .order_by(Span.uid, SpanFragment.ordinal)
        ).all()
    found: dict[str, list[tuple[int, int]]] = {}
    for uid, start, end in rows:
        found.setdefault(uid, []).append((start, end))
    return found


def test_excluding_a_flagged_note_lets_the_rest_of_the_batch_be_released(
    sessions, runtime, project, accounts
):
    outcome = hold(sessions, runtime, project)  # n1 flagged, n2 clean
    admin = accounts["admin"].id
    decided = decide(sessions, outcome.batch_id, "n1", "exclude", actor=admin)
    assert (decided.decision, decided.undecided) == ("exclude", 0)
    batch = the_batch(sessions, outcome.batch_id)
    assert batch.status == "held" and [d["external_id"] for d in batch.staged["documents"]] == ["n2"]
    assert "John Smith" not in json.dumps(batch.staged) and batch.document_count == 1  # erased at once
    assert counts(sessions) == {**NOTHING, "batches": 1}
    [event] = events(sessions, "batch.note_exclude")
    assert (event.user_id, event.object_id) == (admin, str(outcome.batch_id))
    assert event.details == {
        "note": "n1",
        "reason": NOTE_REASON,
        "hits": {"person_name": 1, "id_number": 1, "date": 1},
    }
    # Every flagged note decided: the batch is released without a further reason; n1 is not imported.
    assert release_batch(sessions, outcome.batch_id, "", actor_id=admin, now=NOW) == 1
    assert {k: d.text for k, d in documents(sessions).items()} == {"n2": CLEAN}
    batch = the_batch(sessions, outcome.batch_id)
    assert (batch.status, batch.document_count, batch.phi_override_reason) == ("accepted", 1, None)
    [released] = events(sessions, "batch.phi_override")
    assert released.details["decided"] == {"exclude": 1} and released.details["released_with_batch"] == 0
    [note] = batch_detail(sessions, outcome.batch_id).flagged
    assert (note.decision, note.reason, note.decided_by, note.excerpts) == (
        "exclude",
        NOTE_REASON,
        "admin",
        [],
    )
    with pytest.raises(BatchError, match="not held"):
        decide(sessions, outcome.batch_id, "n1", "release")


def test_masking_a_note_replaces_its_hits_and_moves_its_pre_labels(sessions, runtime, project, accounts):
    outcome = upload(sessions, runtime, project, [("notes.jsonl", phi_jsonl())], layer="pre:model")
    assert outcome.status == "held" and outcome.flagged_documents == 1
    hits = {kind for kind, _, _ in the_batch(sessions, outcome.batch_id).phi_report["documents"]["flagged"]}
    assert hits == {"date", "person_name", "phone"}
    decided = decide(sessions, outcome.batch_id, "flagged", "mask", actor=accounts["admin"].id)
    assert (decided.undecided, decided.remaining_hits) == (0, 0)
    masked = "Seen [DATE] by Dr. [NAME]: aspirin 81 mg, call [PHONE] if chest pain."
    staged = {d["external_id"]: d for d in the_batch(sessions, outcome.batch_id).staged["documents"]}
    assert staged["flagged"]["text"] == masked and staged["clean"]["text"] == CLEAN
    [event] = events(sessions, "batch.note_mask")
    assert event.details["placeholders"] == 3 and event.details["remaining"] == {}
    assert all(words not in json.dumps(event.details) for words in ("Jane Doe", "555-123", "03/04"))
    detail = batch_detail(sessions, outcome.batch_id)
    assert [hit for _, _, hit, _ in detail.flagged[0].excerpts] == ["[DATE]", "[NAME]", "[PHONE]"]
    release_batch(sessions, outcome.batch_id, "", actor_id=None, now=NOW)
    stored = documents(sessions)["flagged"]
    assert stored.text == masked and stored.sha256 == hashlib.sha256(masked.encode()).hexdigest()
    spans = stored_spans(sessions, "flagged")
    # Each pre-label covers what it covered, found independently in the masked text.
    assert [masked[s:e] for s, e in spans["T1"]] == ["aspirin"]
    assert [masked[s:e] for s, e in spans["T2"]] == ["81 mg"]
    assert [masked[s:e] for s, e in spans["T3"]] == ["chest", "pain"]
    # The span across the date covers its placeholder and what followed it.
    assert [masked[s:e] for s, e in spans["T4"]] == ["[DATE] by Dr"]
    assert stored_spans(sessions, "clean") == {"T1": [(0, 7)]}


def test_masking_a_note_masks_every_annotators_copy_of_it(sessions, runtime, project):
    ann = "T1\tReason 69 74;75 79\tchest pain\n"
    files = [
        ("corpus.zip", zip_of({"corpus/ann1/flagged.txt": PHI_NOTE, "corpus/ann1/flagged.ann": ann,
                               "corpus/ann2/flagged.txt": PHI_NOTE, "corpus/ann2/flagged.ann": ann}))
    ]  # fmt: skip
    outcome = upload_batch(sessions, runtime.settings, project.id, files, actor_id=None,
                           annotator_from_folder=True, create_annotators=True)  # fmt: skip
    assert outcome.status == "held", [str(p) for p in outcome.problems]
    decide(sessions, outcome.batch_id, "flagged", "mask")
    staged = the_batch(sessions, outcome.batch_id).staged
    assert {d["text"] for d in [*staged["documents"], *staged["layers"]]} == {
        "Seen [DATE] by Dr. [NAME]: aspirin 81 mg, call [PHONE] if chest pain."
    }
    release_batch(sessions, outcome.batch_id, "", actor_id=None, now=NOW)
    with sessions() as db:
        sets = db.scalars(select(AnnotationSet.source_name).order_by(AnnotationSet.source_name)).all()
    assert sets == ["annotator:ann1", "annotator:ann2"]  # the copy matched the masked note's text
    # Each annotator's "chest pain", moved past the placeholders.
    assert sorted(stored_spans(sessions, "flagged")["T1"]) == [(58, 63), (58, 63), (64, 68), (64, 68)]


@pytest.mark.parametrize(
    ("note", "decision", "reason", "field"),
    [
        ("n1", "delete", NOTE_REASON, "decision"),
        ("n1", "mask", "", "reason"),
        ("n1", "mask", "   fine   ", "reason"),
        ("n1", "release", "1234567890 12/04", "reason"),  # no words
        ("n1", "release", "okokokokokok", "reason"),  # one word
        ("n2", "exclude", NOTE_REASON, "note"),  # not flagged
        ("nobody", "exclude", NOTE_REASON, "note"),
    ],
)
def test_a_note_decision_refused_names_the_field_and_changes_nothing(
    sessions, runtime, project, note, decision, reason, field
):
    outcome = hold(sessions, runtime, project)
    before = the_batch(sessions, outcome.batch_id)
    with pytest.raises(BatchError) as refused:
        decide(sessions, outcome.batch_id, note, decision, reason)
    assert str(refused.value).startswith(f"{field}:")
    after = the_batch(sessions, outcome.batch_id)
    assert (after.staged, after.phi_report, after.status) == (before.staged, before.phi_report, "held")
    with sessions() as db:
        assert db.scalars(select(AuditEvent.action).where(AuditEvent.action.like("batch.note%"))).all() == []


def test_a_note_released_alone_still_needs_no_batch_reason_and_an_excluded_one_stays_out(
    sessions, runtime, project
):
    outcome = hold(sessions, runtime, project)
    decide(sessions, outcome.batch_id, "n1", "release", "the name and number are invented for a test")
    with pytest.raises(BatchError, match="released already"):
        decide(sessions, outcome.batch_id, "n1", "release")
    decide(sessions, outcome.batch_id, "n1", "exclude")  # changed its mind before the release
    with pytest.raises(BatchError, match="excluded already"):
        decide(sessions, outcome.batch_id, "n1", "mask")
    assert release_batch(sessions, outcome.batch_id, "", actor_id=None, now=NOW) == 1
    assert sorted(documents(sessions)) == ["n2"]
    assert [e.action for e in events(sessions, "batch.note_release")] == ["batch.note_release"]


def test_a_batch_with_every_note_excluded_has_nothing_to_release(sessions, runtime, project):
    outcome = hold(sessions, runtime, project, [("n1.txt", PHI.encode())])
    decide(sessions, outcome.batch_id, "n1", "exclude")
    with pytest.raises(BatchError, match="nothing is left"):
        release_batch(sessions, outcome.batch_id, REASON, actor_id=None, now=NOW)
    assert the_batch(sessions, outcome.batch_id).status == "held"
    assert reject_batch(sessions, outcome.batch_id, actor_id=None, now=NOW) == 0


def test_undecided_notes_are_released_with_the_batch_reason_and_recorded(sessions, runtime, project):
    files = [("n1.txt", PHI.encode()), ("n3.txt", b"Call 555-123-4567 today."), ("n2.txt", CLEAN.encode())]
    outcome = hold(sessions, runtime, project, files)
    decide(sessions, outcome.batch_id, "n3", "mask")
    with pytest.raises(BatchError, match="reason"):  # n1 is still undecided
        release_batch(sessions, outcome.batch_id, "", actor_id=None, now=NOW)
    assert release_batch(sessions, outcome.batch_id, REASON, actor_id=None, now=NOW) == 3
    assert documents(sessions)["n3"].text == "Call [PHONE] today."
    decisions = the_batch(sessions, outcome.batch_id).phi_report["decisions"]
    assert {name: (d["decision"], d.get("with_batch", False)) for name, d in decisions.items()} == {
        "n1": ("release", True),
        "n3": ("mask", False),
    }
    [event] = events(sessions, "batch.phi_override")
    assert event.details["released_with_batch"] == 1 and event.details["decided"] == {"release": 1, "mask": 1}


# ---- what pickers offer, and an upload that adds nothing (issue 20) --------------------------------


def test_an_upload_of_notes_already_stored_makes_no_batch_and_says_so(sessions, runtime, project):
    first = upload(sessions, runtime, project, [("n1.txt", CLEAN.encode()), ("n2.txt", b"Heparin")])
    again = upload(sessions, runtime, project, [("n1.txt", CLEAN.encode()), ("n2.txt", b"Heparin")])
    assert first.status == "accepted"
    assert (again.status, again.batch_id, again.stored, sorted(again.already_stored)) == (
        "unchanged",
        None,
        0,
        ["n1", "n2"],
    )
    assert again.summary().startswith("nothing to add (2 already in the project with the same text)")
    assert counts(sessions) == {**NOTHING, "documents": 2, "batches": 1}
    [event] = events(sessions, "batch.nothing_new")
    assert event.details == {"files": ["n1.txt", "n2.txt"], "already_stored": 2, "skipped": []}
    # The same notes with annotations for a layer they lack do add something: a batch holds them.
    layered = upload(
        sessions, runtime, project, [("n1.txt", CLEAN.encode()), ("n1.ann", ANN.encode())], "gold"
    )
    assert (layered.status, layered.layers_added) == ("accepted", ["n1"]) and layered.batch_id is not None


def test_pickers_offer_only_batches_whose_notes_are_in_the_project(sessions, runtime, project):
    from app.services.batches import batch_choices

    stored = upload(sessions, runtime, project, [("a.txt", CLEAN.encode())])
    held = hold(sessions, runtime, project, [("b.txt", PHI.encode())])
    rejected = hold(sessions, runtime, project, [("c.txt", PHI.replace("John", "Jack").encode())])
    reject_batch(sessions, rejected.batch_id, actor_id=None, now=NOW)
    layers_only = upload(
        sessions, runtime, project, [("a.txt", CLEAN.encode()), ("a.ann", ANN.encode())], "gold"
    )
    assert layers_only.status == "accepted" and layers_only.stored == 0  # a layer on a, no note of its own
    other = create_project(sessions, "other", SCHEMA)
    upload(sessions, runtime, other, [("z.txt", CLEAN.encode())])
    assert [b.id for b in batch_choices(sessions, project.id)] == [stored.batch_id]
    assert held.batch_id not in [b.id for b in batch_choices(sessions, project.id)]


def test_a_rejected_batch_audits_how_many_notes_it_erased_and_its_hits(sessions, runtime, project, accounts):
    outcome = hold(sessions, runtime, project)
    assert reject_batch(sessions, outcome.batch_id, actor_id=accounts["admin"].id, now=NOW) == 2
    [event] = events(sessions, "batch.reject")
    assert event.details["documents_erased"] == 2
    assert event.details["flagged"] == {"n1": {"person_name": 1, "id_number": 1, "date": 1}}
    assert "John" not in json.dumps(event.details)


# ---- the admin's pages -------------------------------------------------------------------------------


def post_upload(web, project, files, layer="pre:x"):
    token = session_csrf(web)
    return web.post(
        "/admin/batches",
        files=[("files", (name, data, "text/plain")) for name, data in files],
        data={"project_id": str(project.id), "layer": layer, "csrf_token": token},
    )


def test_admin_uploads_a_held_batch_reviews_and_releases_it(web, accounts, sessions, project):
    log_in(web, "admin")
    response = post_upload(web, project, [("n1.txt", PHI.encode()), ("n2.txt", CLEAN.encode())])
    assert response.status_code == 303
    [batch_id] = [b for b in the_batches(sessions)]
    assert response.headers["location"] == f"/admin/batches/{batch_id}"
    report = web.get(f"/admin/batches/{batch_id}")
    assert report.status_code == 200
    html = page(report)
    assert html.select_one("[data-testid=batch-status]")["data-status"] == "held"
    assert sorted(mark.text for mark in html.select("[data-testid=phi-hit]")) == [
        "03/04/2019",
        "12345678",
        "John Smith",
    ]
    assert counts(sessions)["documents"] == 0
    token = html.select_one("[data-testid=release-form] input[name=csrf_token]")["value"]
    short = web.post(f"/admin/batches/{batch_id}/release", data={"reason": "fine", "csrf_token": token})
    assert short.status_code == 422 and page(short).select_one("[data-testid=release-error]").text.startswith(
        "reason"
    )
    assert the_batch(sessions, batch_id).status == "held"
    released = web.post(f"/admin/batches/{batch_id}/release", data={"reason": REASON, "csrf_token": token})
    assert released.status_code == 303 and released.headers["location"] == f"/admin/batches/{batch_id}"
    assert (
        page(web.get(f"/admin/batches/{batch_id}")).select_one("[data-testid=batch-status]")["data-status"]
        == "accepted"
    )
    batch = the_batch(sessions, batch_id)
    assert (batch.status, batch.phi_override_reason, batch.decided_by) == (
        "accepted",
        REASON,
        accounts["admin"].id,
    )
    assert sorted(documents(sessions)) == ["n1", "n2"]
    [event] = events(sessions, "batch.phi_override")
    assert event.user_id == accounts["admin"].id


def the_batches(sessions) -> list[int]:
    with sessions() as db:
        return list(db.scalars(select(Batch.id)))


def test_a_refused_upload_shows_its_problems(web, accounts, sessions, project):
    log_in(web, "admin")
    response = post_upload(web, project, [("good.txt", CLEAN.encode()), ("bad.txt", b"ok\n\xff")])
    assert response.status_code == 422
    html = page(response)
    assert html.select_one("[data-testid=upload-outcome]")["data-status"] == "refused"
    assert [li.text for li in html.select("[data-testid=upload-problems] li")] == [
        "bad.txt, line 2: invalid UTF-8 at byte 3"
    ]
    assert counts(sessions) == NOTHING


def test_a_clean_upload_shows_what_was_stored(web, accounts, sessions, project):
    log_in(web, "admin")
    response = post_upload(web, project, [("n1.txt", CLEAN.encode())])
    assert response.status_code == 200
    assert page(response).select_one("[data-testid=upload-outcome]")["data-status"] == "accepted"
    assert sorted(documents(sessions)) == ["n1"]


def test_an_annotator_may_not_upload(web, accounts, sessions, project):
    log_in(web, "annotator")
    assert web.get("/admin/batches").status_code == 403
    token = session_csrf(web)
    response = web.post(
        "/admin/batches",
        files=[("files", ("n1.txt", CLEAN.encode(), "text/plain"))],
        data={"project_id": str(project.id), "layer": "pre:x", "csrf_token": token},
    )
    assert response.status_code == 403
    assert counts(sessions) == NOTHING
