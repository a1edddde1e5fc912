"""The cheap invariants are database constraints: no code path can store what they forbid."""

import hashlib

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from app.db.models import AnnotationSet, Document, EditEvent, Project, Span, SpanFragment, User


@pytest.fixture
def annotation_set(sessions):
    with sessions.begin() as db:
        user = User(username="dr.x", display_name="Dr X", role="annotator", password_hash="x")
        project = Project(name="p", label_schema={"entity_types": []})
        db.add_all([user, project])
        db.flush()
        note = "Aspirin 81 mg daily."
        document = Document(
            project_id=project.id,
            external_id="n1",
            text=note,
            sha256=hashlib.sha256(note.encode()).hexdigest(),
        )
        db.add(document)
        db.flush()
        annotation_set = AnnotationSet(
            document_id=document.id, origin="annotator", annotator_id=user.id, condition="scratch"
        )
        db.add(annotation_set)
        db.flush()
        return annotation_set.id, user.id


def _fails(sessions, *rows):
    with pytest.raises(IntegrityError), sessions.begin() as db:
        db.add_all(rows)
        db.flush()


@pytest.mark.parametrize("start,end", [(-1, 3), (5, 5), (7, 2)])
def test_fragment_offsets_are_non_negative_and_ordered(sessions, annotation_set, start, end):
    set_id, _ = annotation_set
    _fails(
        sessions,
        Span(
            annotation_set_id=set_id, label="Drug", fragments=[SpanFragment(ordinal=0, start=start, end=end)]
        ),
    )
    with sessions() as db:
        assert db.scalar(text("SELECT count(*) FROM spans")) == 0


def test_a_client_id_is_recorded_once_per_set(sessions, annotation_set):
    set_id, user_id = annotation_set
    with sessions.begin() as db:
        db.add(
            EditEvent(
                annotation_set_id=set_id, user_id=user_id, page_session_id="p1", kind="add", client_id="c-1"
            )
        )
    _fails(
        sessions,
        EditEvent(
            annotation_set_id=set_id, user_id=user_id, page_session_id="p1", kind="add", client_id="c-1"
        ),
    )


@pytest.mark.parametrize(
    "table,column,value",
    [
        ("users", "role", "superuser"),
        ("annotation_sets", "condition", "guessing"),
        ("annotation_sets", "status", "done"),
        ("edit_events", "kind", "teleport"),
    ],
)
def test_enumerations_are_closed(sessions, annotation_set, table, column, value):
    row_id = {"users": annotation_set[1], "annotation_sets": annotation_set[0]}.get(table)
    with pytest.raises(IntegrityError), sessions.begin() as db:
        if table == "edit_events":
            db.execute(
                text(
                    "INSERT INTO edit_events (annotation_set_id, user_id, page_session_id, "
                    "kind, client_id) VALUES (:s, :u, 'p', :v, 'c')"
                ),
                {"s": annotation_set[0], "u": annotation_set[1], "v": value},
            )
        else:
            db.execute(text(f"UPDATE {table} SET {column} = :v WHERE id = :id"), {"v": value, "id": row_id})


def test_an_annotator_set_needs_its_annotator(sessions, annotation_set):
    with sessions() as db:
        document_id = db.scalar(text("SELECT id FROM documents"))
    _fails(sessions, AnnotationSet(document_id=document_id, origin="annotator"))


def test_sha256_must_be_hex_and_foreign_keys_hold(sessions, annotation_set):
    with sessions() as db:
        project_id = db.scalar(text("SELECT id FROM projects"))
    _fails(sessions, Document(project_id=project_id, external_id="n2", text="x", sha256="nope"))
    _fails(sessions, Span(annotation_set_id=999999, label="Drug"))
