"""An annotator's layer is what that physician decided (issue 20): the pre-labels they left undecided
are left out of its export, or written marked as undecided when asked (brat and JSONL), a set they never
touched is left out, and a marked export imports back with the marks as pending pre-labels."""

import hashlib
import io
import itertools
import json
import zipfile
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from app.db.models import AnnotationSet, AuditEvent, Document, Relation, Span
from app.demo.seed import MEDICATION_SCHEMA
from app.domain.brat import parse_ann
from app.domain.spans import Fragment, SpanData
from app.domain.vocabulary import Condition, SetOrigin, SetStatus, SpanStatus
from app.services import editing
from app.services.annotation_sets import add_spans, assign
from app.services.batches import upload_batch
from app.services.exports import ExportError, export_project
from app.services.projects import create_project
from tests.services.editing_fixtures import ASPIRIN, METFORMIN, NOTE, build_world

NOW = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
SCHEMA = {
    **MEDICATION_SCHEMA,
    "document_questions": [{"key": "evidence", "prompt": "Evidence", "kind": "evidence"}],
}
PO, BID = NOTE.index("PO"), NOTE.index("BID")
PRE_LABELS = {  # label -> (start, end): the base the physician refines
    "Drug": (METFORMIN, METFORMIN + 9),
    "Strength": (METFORMIN + 10, METFORMIN + 16),
    "Route": (PO, PO + 2),
    "Frequency": (BID, BID + 3),
}
_ids = itertools.count(1)


def _edit(sessions, annotator_id: int, set_id: int, kind: str, **fields) -> None:
    with sessions() as db:
        version = db.get(AnnotationSet, set_id).version
    request = editing.EditRequest(
        kind=kind, client_id=f"x{next(_ids)}", page_session="page-1", version=version,
        monotonic_ms=float(next(_ids)), **fields,
    )  # fmt: skip
    editing.apply_edit(sessions, annotator_id, set_id, request, now=NOW)


def _note(db, project_id: int, name: str) -> Document:
    document = Document(
        project_id=project_id, external_id=name, text=NOTE, sha256=hashlib.sha256(NOTE.encode()).hexdigest()
    )
    db.add(document)
    db.flush()
    return document


def _refine(db, world, document: Document, position: int) -> int:
    """A refine_llm set of ``document`` for dr.a over four pending pre-labels and two pending relations."""
    pre = AnnotationSet(
        document_id=document.id,
        origin=SetOrigin.pre_annotation.value,
        pre_annotation_run_id=db.get(AnnotationSet, world.pre_set_id).pre_annotation_run_id,
        status=SetStatus.submitted.value,
    )
    db.add(pre)
    db.flush()
    spans = add_spans(
        db, pre, [SpanData(label, (Fragment(*at),)) for label, at in PRE_LABELS.items()], SpanStatus.pending
    )
    by_label = {s.label: s for s in spans}
    for kind in ("Strength", "Route"):
        db.add(
            Relation(
                annotation_set_id=pre.id, type=f"{kind}-Drug", head_span_id=by_label[kind].id,
                tail_span_id=by_label["Drug"].id, status=SpanStatus.pending.value,
            )
        )  # fmt: skip
    db.flush()
    return assign(
        db, project_id=world.project_id, document_id=document.id, annotator_id=world.annotator_id,
        condition=Condition.refine_llm, queue_position=position, base_set=pre,
    ).annotation_set_id  # fmt: skip


@pytest.fixture
def worked(sessions, password_hashes):
    return build_worked(sessions, password_hashes)


def build_worked(sessions, password_hashes):
    """dr.a's layer: 'decided' (Drug and Strength and their relation accepted, aspirin added, Route and
    Frequency and the Route-Drug relation left pending, the evidence citing the Drug and the Route;
    submitted) and 'untouched' (a refine_llm set never changed), beside build_world's untouched sets."""
    world = build_world(sessions, password_hashes["annotator"], label_schema=SCHEMA)
    with sessions.begin() as db:
        decided_id = _refine(db, world, _note(db, world.project_id, "decided"), 10)
        _refine(db, world, _note(db, world.project_id, "untouched"), 11)
    state = editing.stored_state(sessions, decided_id)
    uid = {s.label: u for u, s in state.spans.items()}
    strength_drug = next(u for u, r in state.relations.items() if r.type == "Strength-Drug")
    for kind, fields in [
        ("accept", {"uid": uid["Drug"]}),
        ("accept", {"uid": uid["Strength"]}),
        ("relation_accept", {"uid": strength_drug}),
        ("add", {"uid": "mine", "label": "Drug", "fragments": ((ASPIRIN, ASPIRIN + 7),)}),
        ("answer", {"key": "evidence", "value": [uid["Drug"], uid["Route"]]}),
        ("submit", {}),
    ]:
        _edit(sessions, world.annotator_id, decided_id, kind, **fields)
    return world


def _export(sessions, world, fmt, layer="annotator:dr.a", undecided="exclude") -> bytes:
    return export_project(sessions, world.project_id, fmt, layer, actor_id=None, undecided=undecided).content


def _anns(content: bytes) -> dict[str, str]:
    archive = zipfile.ZipFile(io.BytesIO(content))
    return {n[:-4]: archive.read(n).decode() for n in archive.namelist() if n.endswith(".ann")}


def _facts(ann: str) -> dict:
    """What a .ann says, ids replaced by the text they point at: spans, relations and notes."""
    parsed = parse_ann(ann)
    text = {e.id: f"{e.label} {e.text}" for e in parsed.entities.values()}
    relations = {r.id: f"{r.type} {text[r.arg1]} -> {text[r.arg2]}" for r in parsed.relations}
    notes = {(n.target, n.text) for n in parsed.annotator_notes}
    # Notes on relations are kept verbatim by the reader: "#N\tAnnotatorNotes R1\ttext".
    notes |= {(line.split("\t")[1].split()[1], line.split("\t")[2]) for line in parsed.unmodelled}
    return {
        "spans": sorted(text.values()),
        "relations": sorted(relations.values()),
        "marked": sorted(
            {**text, **relations}[target] for target, note in notes if note == "status=undecided"
        ),
    }


DECIDED = ["Drug Metformin", "Drug aspirin", "Strength 500 mg"]
UNDECIDED = ["Frequency BID", "Route PO"]
DECIDED_RELATIONS = ["Strength-Drug Strength 500 mg -> Drug Metformin"]
UNDECIDED_RELATIONS = ["Route-Drug Route PO -> Drug Metformin"]


def test_brat_leaves_out_what_the_physician_left_undecided_or_marks_it(sessions, worked):
    plain = _anns(_export(sessions, worked, "brat"))
    # Nothing of a set never touched: the untouched refine_llm note and build_world's sets are absent.
    assert sorted(plain) == ["decided"]
    assert _facts(plain["decided"]) == {"spans": DECIDED, "relations": DECIDED_RELATIONS, "marked": []}

    marked = _anns(_export(sessions, worked, "brat", undecided="mark"))
    assert _facts(marked["decided"]) == {
        "spans": sorted(DECIDED + UNDECIDED),
        "relations": sorted(DECIDED_RELATIONS + UNDECIDED_RELATIONS),
        "marked": sorted(UNDECIDED + UNDECIDED_RELATIONS),
    }
    assert "\tAnnotatorNotes T" in marked["decided"]  # the form of the confidence note, on the T line
    # A set never touched, marked: every pre-label of it is undecided. The scratch set (no spans) stays out.
    assert sorted(marked) == ["decided", "note-refine_human", "note-refine_llm", "untouched"]
    for name in ("note-refine_human", "note-refine_llm", "untouched"):
        facts = _facts(marked[name])
        assert facts["spans"] and facts["marked"] == sorted(facts["spans"] + facts["relations"]), name


def test_jsonl_leaves_out_what_the_physician_left_undecided_or_marks_it(sessions, worked):
    def lines(undecided, layer="annotator:dr.a"):
        return [
            json.loads(line) for line in _export(sessions, worked, "jsonl", layer, undecided).splitlines()
        ]

    [plain] = lines("exclude")
    assert plain["id"] == "decided"
    assert sorted(s["label"] for s in plain["spans"]) == ["Drug", "Drug", "Strength"]
    assert all("status" not in s for s in plain["spans"])  # the import format, as before
    assert [(r["type"], r["status"]) for r in plain["relations"]] == [("Strength-Drug", "confirmed")]
    drug = next(s["id"] for s in plain["spans"] if s["label"] == "Drug" and s["fragments"][0][0] == METFORMIN)
    assert plain["answers"] == {"evidence": [drug]}  # the Route it cited is not in the layer

    marked = {line["id"]: line for line in lines("mark")}
    assert sorted(marked) == ["decided", "note-refine_human", "note-refine_llm", "untouched"]
    statuses = sorted((s["label"], s.get("status")) for s in marked["decided"]["spans"])
    assert statuses == [("Drug", None), ("Drug", None), ("Frequency", "undecided"), ("Route", "undecided"),
                        ("Strength", None)]  # fmt: skip
    assert sorted((r["type"], r["status"]) for r in marked["decided"]["relations"]) == [
        ("Route-Drug", "undecided"), ("Strength-Drug", "confirmed"),
    ]  # fmt: skip
    assert len(marked["decided"]["answers"]["evidence"]) == 2
    assert {s["status"] for s in marked["untouched"]["spans"]} == {"undecided"}

    # Every layer: the annotator's layer as decided (or marked); the pre-labels' own layer untouched.
    for undecided, expected in (("exclude", {"confirmed"}), ("mark", {"confirmed", "undecided"})):
        every = [json.loads(x) for x in _export(sessions, worked, "jsonl", None, undecided).splitlines()]
        decided = next(line for line in every if line["id"] == "decided")
        layers = {layer["layer"]: layer for layer in decided["layers"]}
        assert {s["status"] for s in layers["annotator:dr.a"]["spans"]} == expected
        assert {s["status"] for s in layers["pre:llm"]["spans"]} == {"pending"}
        assert len(layers["pre:llm"]["spans"]) == 4
        untouched = next(line for line in every if line["id"] == "untouched")
        assert [x["layer"] for x in untouched["layers"]] == (
            ["pre:llm"] if undecided == "exclude" else ["pre:llm", "annotator:dr.a"]
        )


def _stored(sessions, project_id: int) -> dict[str, list[tuple[str, str]]]:
    """Per note: (label or relation type, status) of every span and relation, and every span note."""
    with sessions() as db:
        spans = db.execute(
            select(Document.external_id, Span.label, Span.status, Span.notes)
            .join(AnnotationSet, AnnotationSet.id == Span.annotation_set_id)
            .join(Document, Document.id == AnnotationSet.document_id)
            .where(Document.project_id == project_id)
        ).all()
        relations = db.execute(
            select(Document.external_id, Relation.type, Relation.status)
            .join(AnnotationSet, AnnotationSet.id == Relation.annotation_set_id)
            .join(Document, Document.id == AnnotationSet.document_id)
            .where(Document.project_id == project_id)
        ).all()
    out: dict[str, list] = {}
    for name, label, status, notes in spans:
        out.setdefault(name, []).append((label, status, tuple(notes)))
    for name, kind, status in relations:
        out.setdefault(name, []).append((kind, status, ()))
    return {name: sorted(items) for name, items in out.items()}


EXPECTED_BACK = [
    ("Drug", "confirmed", ()), ("Drug", "confirmed", ()), ("Frequency", "pending", ()),
    ("Route", "pending", ()), ("Route-Drug", "pending", ()), ("Strength", "confirmed", ()),
    ("Strength-Drug", "confirmed", ()),
]  # fmt: skip


@pytest.mark.parametrize("fmt", ["brat", "jsonl"])
def test_a_marked_export_imports_back_as_pending_and_exports_the_same(sessions, runtime, worked, fmt):
    first = _export(sessions, worked, fmt, undecided="mark")
    again = create_project(sessions, f"again {fmt}", SCHEMA)
    name = "export.zip" if fmt == "brat" else "export.jsonl"
    outcome = upload_batch(
        sessions, runtime.settings, again.id, [(name, first)], actor_id=None, layer="annotator:dr.b"
    )
    assert outcome.status == "accepted", [str(p) for p in outcome.problems]
    stored = _stored(sessions, again.id)
    # Marked pre-labels come back pending (not as a note), the rest as the physician's own work.
    assert stored["decided"] == EXPECTED_BACK
    assert {status for _, status, _ in stored["untouched"]} == {"pending"}

    second = export_project(
        sessions, again.id, fmt, "annotator:dr.b", actor_id=None, undecided="mark"
    ).content
    if fmt == "brat":
        assert {k: _facts(v) for k, v in _anns(second).items()} == {
            k: _facts(v) for k, v in _anns(first).items()
        }
        left_out = _anns(export_project(sessions, again.id, fmt, "annotator:dr.b", actor_id=None).content)
        assert _facts(left_out["decided"])["spans"] == DECIDED
    else:
        assert [json.loads(x) for x in second.splitlines()] == [json.loads(x) for x in first.splitlines()]


@pytest.mark.parametrize(
    ("fmt", "undecided", "message"),
    [
        ("conll", "mark", "undecided: CoNLL cannot mark"),
        ("brat", "maybe", "undecided: 'maybe' is not a choice"),
    ],
)
def test_a_bad_undecided_option_names_the_field_and_records_nothing(
    sessions, worked, fmt, undecided, message
):
    with sessions() as db:
        before = db.scalar(select(func.count()).select_from(AuditEvent))
    with pytest.raises(ExportError, match=message):
        _export(sessions, worked, fmt, undecided=undecided)
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(AuditEvent)) == before


def test_conll_of_an_annotator_leaves_out_the_undecided(sessions, worked):
    conll = _export(sessions, worked, "conll").decode()
    tagged = {
        line.split()[0]: line.split()[-1] for line in conll.splitlines() if line and not line.startswith("#")
    }
    assert tagged["Metformin"] == "B-Drug" and tagged["PO"] == "O" and tagged["BID"] == "O"
    assert "# doc_id = untouched" not in conll
