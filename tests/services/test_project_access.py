"""Who leads which project (app.services.access): every kind of object finds its project, and only a
member lead (or an admin) gets through."""

import hashlib

import pytest

from app.db.models import (
    AnnotationSet,
    AugmentationRun,
    Batch,
    Document,
    ExportFile,
    PreAnnotationRun,
    Project,
    ProjectMember,
    Study,
    User,
)
from app.services.access import (
    NoSuchObject,
    NotALeadOfProject,
    ProjectObject,
    check_lead_access,
    led_project_ids,
    project_of,
)

SCHEMA = {"entity_types": [{"name": "Drug", "color": "#1f77b4"}]}


@pytest.fixture
def objects(sessions) -> dict:
    """Two projects with one object of every kind in the first; its lead, another lead, an admin."""
    with sessions.begin() as db:
        users = {
            name: User(username=name, display_name=name, role=role, password_hash="-")
            for name, role in [
                ("lead.a", "lead"),
                ("lead.b", "lead"),
                ("admin", "admin"),
                ("dr.a", "annotator"),
            ]
        }
        first, second = Project(name="A", label_schema=SCHEMA), Project(name="B", label_schema=SCHEMA)
        db.add_all([*users.values(), first, second])
        db.flush()
        db.add_all(
            [
                ProjectMember(project_id=first.id, user_id=users["lead.a"].id),
                ProjectMember(project_id=first.id, user_id=users["dr.a"].id),  # a physician who works on it
                ProjectMember(project_id=second.id, user_id=users["lead.b"].id),
            ]
        )
        batch = Batch(project_id=first.id, status="accepted")
        db.add(batch)
        db.flush()
        documents = [
            Document(project_id=p.id, batch_id=batch.id if p is first else None, external_id="n", text="x",
                     sha256=hashlib.sha256(b"x").hexdigest())
            for p in (first, second)
        ]  # fmt: skip
        run = PreAnnotationRun(project_id=first.id, name="r", method="imported", status="succeeded")
        db.add_all([*documents, run])
        db.flush()
        rows = {
            ProjectObject.project: first,
            ProjectObject.document: documents[0],
            ProjectObject.annotation_set: AnnotationSet(
                document_id=documents[0].id, origin="pre_annotation", pre_annotation_run_id=run.id
            ),
            ProjectObject.pre_annotation_run: run,
            ProjectObject.augmentation_run: AugmentationRun(project_id=first.id, name="a", status="queued"),
            ProjectObject.study: Study(project_id=first.id, name="s", seed=1, plan={}, status="released"),
            ProjectObject.export: ExportFile(project_id=first.id, format="jsonl"),
            ProjectObject.batch: batch,
        }
        db.add_all(rows.values())
        db.flush()
        return {
            "ids": {kind: row.id for kind, row in rows.items()},
            "projects": (first.id, second.id),
            "note_of_b": documents[1].id,
            "users": {name: db.get(User, u.id) for name, u in users.items()},
        }


@pytest.mark.parametrize("kind", list(ProjectObject))
def test_every_kind_of_object_finds_its_project(sessions, objects, kind):
    with sessions() as db:
        assert project_of(db, kind, objects["ids"][kind]) == objects["projects"][0]
        assert project_of(db, kind, 999_999) is None


# (who, what they name) -> what happens: the project's id, or the refusal.
CASES = [
    ("lead.a", [ProjectObject.pre_annotation_run], "project"),
    ("admin", [ProjectObject.pre_annotation_run], "project"),
    ("lead.b", [ProjectObject.pre_annotation_run], NotALeadOfProject),
    ("dr.a", [ProjectObject.project], NotALeadOfProject),  # members who are physicians lead nothing
    ("lead.a", [ProjectObject.pre_annotation_run, ProjectObject.document], "project"),
    ("lead.a", [], None),  # a route that names nothing
]


@pytest.mark.parametrize(("who", "named", "outcome"), CASES)
def test_only_a_member_lead_or_an_admin_gets_through(sessions, objects, who, named, outcome):
    user = objects["users"][who]
    asked = [(kind, objects["ids"][kind]) for kind in named]
    if isinstance(outcome, type):
        with pytest.raises(outcome):
            check_lead_access(sessions, user, asked)
    else:
        expected = objects["projects"][0] if outcome == "project" else None
        assert check_lead_access(sessions, user, asked) == expected


def test_a_missing_object_or_one_of_another_project_is_no_such_object(sessions, objects):
    admin = objects["users"]["admin"]
    with pytest.raises(NoSuchObject, match="No such run."):
        check_lead_access(sessions, admin, [(ProjectObject.pre_annotation_run, 999_999)])
    run = (ProjectObject.pre_annotation_run, objects["ids"][ProjectObject.pre_annotation_run])
    with pytest.raises(NoSuchObject, match="No such note in this project."):
        check_lead_access(sessions, admin, [run, (ProjectObject.document, objects["note_of_b"])])


def test_the_projects_a_caller_lists(sessions, objects):
    users = objects["users"]
    first, second = objects["projects"]
    assert led_project_ids(sessions, users["lead.a"]) == {first}
    assert led_project_ids(sessions, users["lead.b"]) == {second}
    assert led_project_ids(sessions, users["dr.a"]) == set()
    assert led_project_ids(sessions, users["admin"]) is None  # every project
