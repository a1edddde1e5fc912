"""Corpora as other tools made them (issue 18): notes known by name, nothing dropped for sharing a text,
a second annotator's layer, and a schema widened only when asked (audited, all or nothing)."""

import io
import zipfile

import pytest
from sqlalchemy import func, select

from app.db.models import AnnotationSet, AuditEvent, Document, Project, Span
from app.services.batches import upload_batch
from app.services.projects import create_project
from app.services.users import add_user

SCHEMA = {
    "entity_types": [{"name": "Drug", "color": "#1f77b4"}, {"name": "Reason", "color": "#2ca02c"}],
    "span_attributes": [{"name": "Time", "values": ["past", "present"], "applies_to": ["Drug"]}],
}
TEXT = "Aspirin for chest pain.\n"


def brat_zip(pairs: dict[str, tuple[str, str]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for stem, (text, ann) in pairs.items():
            archive.writestr(f"{stem}.txt", text)
            archive.writestr(f"{stem}.ann", ann)
    return buffer.getvalue()


@pytest.fixture
def project(sessions):
    return create_project(sessions, "corpus", SCHEMA)


def spans_of(sessions, external_id: str) -> list[tuple[str, str]]:
    with sessions() as db:
        rows = db.execute(
            select(AnnotationSet.source_name, Span.label)
            .join(Span, Span.annotation_set_id == AnnotationSet.id)
            .join(Document, Document.id == AnnotationSet.document_id)
            .where(Document.external_id == external_id)
            .order_by(Span.id)
        ).all()
    return [tuple(r) for r in rows]


def test_two_names_with_one_text_keep_their_own_annotations(sessions, runtime, project):
    """Chia has 56 such pairs (trials sharing a criteria text); the second copy lost its annotations."""
    files = [
        (
            "trials.zip",
            brat_zip(
                {
                    "NCT1_inc": (TEXT, "T1\tDrug 0 7\tAspirin\n"),
                    "NCT2_inc": (TEXT, "T1\tDrug 0 7\tAspirin\nT2\tReason 12 22\tchest pain\n"),
                }
            ),
        )
    ]
    outcome = upload_batch(sessions, runtime.settings, project.id, files, actor_id=None, layer="pre:corpus")
    assert (outcome.status, outcome.stored, outcome.same_text) == ("accepted", 2, [("NCT2_inc", "NCT1_inc")])
    assert spans_of(sessions, "NCT1_inc") == [("corpus", "Drug")]
    assert spans_of(sessions, "NCT2_inc") == [("corpus", "Drug"), ("corpus", "Reason")]
    assert "NCT2_inc: same text as NCT1_inc (stored as a note of its own)" in outcome.notices()


def test_a_second_annotators_values_outside_the_schema_are_added_only_when_asked(sessions, runtime, project):
    for username in ("dr.one", "dr.two"):
        add_user(sessions, username, "Velvet-harbour-lantern-2291", "annotator")
    first = brat_zip({"n1": (TEXT, "T1\tDrug 0 7\tAspirin\nA1\tTime T1 past\n")})
    second = brat_zip(
        {"n1": (TEXT, "T1\tDrug 0 7\tAspirin\nA1\tTime T1 most-recent-time\nT2\tSymptom 12 22\tchest pain\n")}
    )
    one = upload_batch(sessions, runtime.settings, project.id, [("a.zip", first)], actor_id=None,
                       layer="annotator:dr.one")  # fmt: skip
    assert (one.status, one.stored) == ("accepted", 1)
    refused = upload_batch(sessions, runtime.settings, project.id, [("b.zip", second)], actor_id=None,
                           layer="annotator:dr.two")  # fmt: skip
    assert refused.status == "refused"
    assert sorted((p.file, p.line) for p in refused.problems) == [("n1.ann", 2), ("n1.ann", 3)]
    assert any("extend the schema" in p.message for p in refused.problems)
    with sessions() as db:
        assert db.get(Project, project.id).label_schema["entity_types"][-1]["name"] == "Reason"

    widened = upload_batch(sessions, runtime.settings, project.id, [("b.zip", second)], actor_id=None,
                           layer="annotator:dr.two", extend_schema=True)  # fmt: skip
    assert (widened.status, widened.stored, widened.layers_added) == ("accepted", 0, ["n1"])
    assert widened.schema_additions == [
        "entity type 'Symptom' (used by the data)",
        "value 'most-recent-time' of attribute 'Time' (used by the data)",
    ]
    with sessions() as db:
        schema = db.get(Project, project.id).label_schema
        [event] = db.scalars(select(AuditEvent).where(AuditEvent.action == "project.schema_extend"))
    assert "Symptom" in [e["name"] for e in schema["entity_types"]]
    assert "most-recent-time" in schema["span_attributes"][0]["values"]
    assert event.details["additions"] == widened.schema_additions
    assert [e["name"] for e in event.details["before"]["entity_types"]] == ["Drug", "Reason"]
    assert [e["name"] for e in event.details["after"]["entity_types"]] == ["Drug", "Reason", "Symptom"]
    assert spans_of(sessions, "n1") == [
        ("annotator:dr.one", "Drug"),
        ("annotator:dr.two", "Drug"),
        ("annotator:dr.two", "Symptom"),
    ]


def test_a_refused_upload_leaves_the_schema_as_it_was_though_asked_to_extend_it(sessions, runtime, project):
    upload_batch(sessions, runtime.settings, project.id, [("n1.txt", TEXT.encode())], actor_id=None)
    with sessions() as db:
        before = db.get(Project, project.id).label_schema
    files = [("c.zip", brat_zip({"n1": ("Another text.\n", "T1\tSymptom 0 7\tAnother\n")}))]
    outcome = upload_batch(sessions, runtime.settings, project.id, files, actor_id=None, extend_schema=True)
    assert outcome.status == "refused"  # n1 has another text: refused whole, so nothing is added
    with sessions() as db:
        assert db.get(Project, project.id).label_schema == before
        assert db.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "project.schema_extend")) == 0  # fmt: skip
