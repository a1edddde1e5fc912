"""Exports of adjudicated gold: which gold set is the layer ``gold``, every physician's vote on each
gold span with its label distribution (JSONL), ambiguous spans flagged (JSONL) and noted (brat), and
the physicians' own layers written exactly as before gold existed."""

import hashlib
import io
import json
import zipfile

from app.db.models import AnnotationSet, Document, Span, SpanFragment, User
from app.domain.brat import parse_ann_with_problems
from app.domain.jsonl import parse_jsonl
from app.domain.vocabulary import SetOrigin, SetStatus
from app.services.exports import export_project
from app.services.projects import create_project

SCHEMA = {
    "entity_types": [
        {"name": "Problem", "color": "#d62728"},
        {"name": "Drug", "color": "#1f77b4"},
    ],
}
TEXT = "Chest pain and nausea after reflux pills. Fever at night."


def at(words: str) -> tuple[int, int]:
    start = TEXT.index(words)
    return (start, start + len(words))


CHEST_PAIN, NAUSEA, PILLS, FEVER = at("Chest pain"), at("nausea"), at("reflux pills"), at("Fever")


def add_user(db, login: str, role: str, password_hashes) -> User:
    user = User(username=login, display_name=login, role=role, password_hash=password_hashes["annotator"])
    db.add(user)
    db.flush()
    return user


def add_document(db, project_id: int, external_id: str) -> Document:
    document = Document(
        project_id=project_id,
        external_id=external_id,
        text=TEXT,
        sha256=hashlib.sha256(f"{external_id}{TEXT}".encode()).hexdigest(),
    )
    db.add(document)
    db.flush()
    return document


def add_set(db, document_id: int, origin: SetOrigin, status: SetStatus, spans, annotator_id=None) -> int:
    """A set with ``spans``: (uid, label, (start, end)) or (uid, label, (start, end), distribution)."""
    annotation_set = AnnotationSet(
        document_id=document_id,
        origin=origin.value,
        annotator_id=annotator_id,
        status=status.value,
        source_name="gold" if origin == SetOrigin.gold and annotator_id is None else None,
    )
    db.add(annotation_set)
    db.flush()
    for uid, label, (start, end), *distribution in spans:
        db.add(
            Span(
                annotation_set_id=annotation_set.id,
                uid=uid,
                label=label,
                label_distribution=distribution[0] if distribution else None,
                fragments=[SpanFragment(ordinal=0, start=start, end=end)],
            )
        )
    db.flush()
    return annotation_set.id


def physicians(db, project_id: int, password_hashes) -> tuple[int, int, int]:
    """note-1 with ana's and ben's submitted sets, and note-2 (no gold) with ana's; (note-1, note-2, lead)."""
    lead = add_user(db, "lead", "lead", password_hashes)
    ana = add_user(db, "ana", "annotator", password_hashes)
    ben = add_user(db, "ben", "annotator", password_hashes)
    note = add_document(db, project_id, "note-1")
    add_set(
        db,
        note.id,
        SetOrigin.annotator,
        SetStatus.submitted,
        [("a1", "Problem", CHEST_PAIN), ("a2", "Problem", NAUSEA), ("a3", "Problem", PILLS)],
        ana.id,
    )
    add_set(
        db,
        note.id,
        SetOrigin.annotator,
        SetStatus.submitted,
        [("b1", "Problem", CHEST_PAIN), ("b2", "Drug", PILLS)],
        ben.id,
    )
    other = add_document(db, project_id, "note-2")
    add_set(db, other.id, SetOrigin.annotator, SetStatus.submitted, [("a9", "Problem", FEVER)], ana.id)
    return note.id, other.id, lead.id


def jsonl(sessions, project_id: int, layer: str | None = None) -> list[dict]:
    content = export_project(sessions, project_id, "jsonl", layer, actor_id=None).content.decode()
    return [json.loads(line) for line in content.splitlines()]


def brat(sessions, project_id: int, layer: str | None = None) -> zipfile.ZipFile:
    content = export_project(sessions, project_id, "brat", layer, actor_id=None).content
    return zipfile.ZipFile(io.BytesIO(content))


def physician_output(sessions, project_id: int) -> tuple[dict[str, bytes], list[dict]]:
    archive = brat(sessions, project_id)
    files = {n: archive.read(n) for n in archive.namelist() if n.startswith("annotator-")}
    layers = [
        layer
        for document in jsonl(sessions, project_id)
        for layer in document["layers"]
        if layer["origin"] == "annotator"
    ]
    return files, layers


def test_adjudicated_gold_exports_votes_distributions_and_ambiguity(sessions, password_hashes):
    project = create_project(sessions, "Adjudicated", SCHEMA)
    with sessions.begin() as db:
        note_id, _, lead_id = physicians(db, project.id, password_hashes)
    before = physician_output(sessions, project.id)

    with sessions.begin() as db:
        imported = add_set(
            db, note_id, SetOrigin.gold, SetStatus.submitted, [("g0", "Problem", CHEST_PAIN)]
        )  # an older gold layer, superseded by the adjudication
        adjudicated = add_set(
            db,
            note_id,
            SetOrigin.gold,
            SetStatus.submitted,
            [
                ("T1", "Problem", CHEST_PAIN),  # agreed
                ("T2", "Problem", NAUSEA, {"Problem": 1, "O": 1}),  # ambiguous: only ana marked it
                ("T3", "Problem", PILLS),  # disputed: ana Problem, ben Drug
                ("T4", "Problem", FEVER),  # only gold has it
            ],
            lead_id,
        )
        still_open = add_set(db, note_id, SetOrigin.gold, SetStatus.open, [("x1", "Drug", PILLS)])

    first, second = jsonl(sessions, project.id)
    assert [layer["layer"] for layer in first["layers"]] == [
        "annotator:ana",
        "annotator:ben",
        f"gold:{imported}",
        "gold",
        f"gold:{still_open}",
    ]
    assert f"gold:{adjudicated}" not in {layer["layer"] for layer in first["layers"]}  # it is "gold"
    gold = next(layer for layer in first["layers"] if layer["layer"] == "gold")
    assert gold["annotator"] == "lead"
    assert [(s["id"], s["ambiguous"], s.get("label_distribution")) for s in gold["spans"]] == [
        ("T1", False, None),
        ("T2", True, {"O": 1, "Problem": 1}),
        ("T3", False, None),
        ("T4", False, None),
    ]
    older = next(layer for layer in first["layers"] if layer["layer"] == f"gold:{imported}")
    assert [(s["id"], s["ambiguous"]) for s in older["spans"]] == [("g0", False)]
    ana = next(layer for layer in first["layers"] if layer["layer"] == "annotator:ana")
    assert all("ambiguous" not in s and "label_distribution" not in s for s in ana["spans"])

    assert first["adjudication"] == {
        "gold_layer": "gold",
        "physicians": ["ana", "ben"],
        "spans": {
            "T1": {
                "label": "Problem",
                "votes": {"ana": "Problem", "ben": "Problem"},
                "label_distribution": {"Problem": 2},
                "ambiguous": False,
            },
            "T2": {
                "label": "Problem",
                "votes": {"ana": "Problem", "ben": None},
                "label_distribution": {"O": 1, "Problem": 1},
                "ambiguous": True,
            },
            "T3": {
                "label": "Problem",
                "votes": {"ana": "Problem", "ben": "Drug"},
                "label_distribution": {"Drug": 1, "Problem": 1},
                "ambiguous": False,
            },
            "T4": {
                "label": "Problem",
                "votes": {"ana": None, "ben": None},
                "label_distribution": {"O": 2},
                "ambiguous": False,
            },
        },
    }
    assert second["id"] == "note-2" and "adjudication" not in second  # physicians, but no gold

    # brat: one folder per layer, never two files of one name; the ambiguous span is noted.
    archive = brat(sessions, project.id)
    names = archive.namelist()
    assert len(names) == len(set(names))
    assert {n for n in names if n.endswith("note-1.ann")} == {
        "annotator-ana/note-1.ann",
        "annotator-ben/note-1.ann",
        "gold/note-1.ann",
        f"gold-{imported}/note-1.ann",
        f"gold-{still_open}/note-1.ann",
    }
    ann = archive.read("gold/note-1.ann").decode()
    assert [line for line in ann.splitlines() if line.startswith("#")] == [
        "#1\tAnnotatorNotes T2\tambiguous: O=1, Problem=1"
    ]
    parsed = parse_ann_with_problems(ann)[0]
    assert [(n.target, n.text) for n in parsed.annotator_notes] == [("T2", "ambiguous: O=1, Problem=1")]
    assert set(parsed.entities) == {"T1", "T2", "T3", "T4"}

    # --layer gold is the gold that counts; the others are reachable by their own names.
    only_gold = brat(sessions, project.id, "gold")
    assert sorted(only_gold.namelist()) == ["annotation.conf", "note-1.ann", "note-1.txt"]
    assert only_gold.read("note-1.ann") == archive.read("gold/note-1.ann")
    [superseded] = jsonl(sessions, project.id, f"gold:{imported}")
    assert [s["id"] for s in superseded["spans"]] == ["g0"]
    [still] = jsonl(sessions, project.id, f"gold:{still_open}")
    assert [(s["id"], s["label"]) for s in still["spans"]] == [("x1", "Drug")]

    # The single-layer JSONL stays the import format: it reads back, without the gold-only keys.
    [line] = jsonl(sessions, project.id, "gold")
    assert [s["id"] for s in line["spans"]] == ["T1", "T2", "T3", "T4"]
    assert all(set(s) == {"id", "label", "fragments", "attributes", "concept"} for s in line["spans"])
    assert "adjudication" not in line
    [read_back] = parse_jsonl(json.dumps(line))
    assert [s.id for s in read_back.spans] == ["T1", "T2", "T3", "T4"]

    # The physicians' layers are written exactly as before there was any gold.
    assert physician_output(sessions, project.id) == before
    assert before[0]["annotator-ana/note-1.ann"] == (
        b"T1\tProblem 0 10\tChest pain\nT2\tProblem 15 21\tnausea\nT3\tProblem 28 40\treflux pills\n"
    )


def test_when_the_adjudication_is_submitted_after_imported_gold_it_becomes_gold(sessions, password_hashes):
    project = create_project(sessions, "Order", SCHEMA)
    with sessions.begin() as db:
        note_id, _, lead_id = physicians(db, project.id, password_hashes)
        imported = add_set(db, note_id, SetOrigin.gold, SetStatus.submitted, [("g0", "Drug", PILLS)])
        adjudication = add_set(
            db, note_id, SetOrigin.gold, SetStatus.open, [("T1", "Problem", CHEST_PAIN)], lead_id
        )
    [first, _] = jsonl(sessions, project.id)
    names = {
        layer["layer"]: layer["spans"][0]["id"] for layer in first["layers"] if layer["origin"] == "gold"
    }
    assert names == {"gold": "g0", f"gold:{adjudication}": "T1"}  # open: not gold yet
    assert first["adjudication"]["spans"] == {
        "g0": {
            "label": "Drug",
            "votes": {"ana": "Problem", "ben": "Drug"},
            "label_distribution": {"Drug": 1, "Problem": 1},
            "ambiguous": False,
        }
    }

    with sessions.begin() as db:
        db.get(AnnotationSet, adjudication).status = SetStatus.submitted.value
    [first, _] = jsonl(sessions, project.id)
    names = {
        layer["layer"]: layer["spans"][0]["id"] for layer in first["layers"] if layer["origin"] == "gold"
    }
    assert names == {f"gold:{imported}": "g0", "gold": "T1"}
    assert list(first["adjudication"]["spans"]) == ["T1"]


def test_a_note_with_gold_and_one_physician_lists_that_physicians_votes(sessions, password_hashes):
    project = create_project(sessions, "One physician", SCHEMA)
    with sessions.begin() as db:
        lead = add_user(db, "lead", "lead", password_hashes)
        ana = add_user(db, "ana", "annotator", password_hashes)
        note = add_document(db, project.id, "note-1")
        add_set(
            db,
            note.id,
            SetOrigin.annotator,
            SetStatus.submitted,
            [("a1", "Drug", PILLS), ("a2", "Problem", at("Chest"))],
            ana.id,
        )
        add_set(db, note.id, SetOrigin.annotator, SetStatus.open, [("o1", "Drug", FEVER)], lead.id)
        add_set(
            db,
            note.id,
            SetOrigin.gold,
            SetStatus.submitted,
            [("T1", "Drug", PILLS), ("T2", "Problem", CHEST_PAIN), ("T3", "Problem", FEVER)],
            lead.id,
        )
    [line] = jsonl(sessions, project.id)
    assert line["adjudication"] == {
        "gold_layer": "gold",
        "physicians": ["ana"],  # an open set is not a vote
        "spans": {
            "T1": {
                "label": "Drug",
                "votes": {"ana": "Drug"},
                "label_distribution": {"Drug": 1},
                "ambiguous": False,
            },
            # no exact match: the label of the span overlapping it most
            "T2": {
                "label": "Problem",
                "votes": {"ana": "Problem"},
                "label_distribution": {"Problem": 1},
                "ambiguous": False,
            },
            "T3": {
                "label": "Problem",
                "votes": {"ana": None},
                "label_distribution": {"O": 1},
                "ambiguous": False,
            },
        },
    }


def test_gold_without_physicians_has_no_adjudication_and_notes_ambiguity_most_votes_first(
    sessions, password_hashes
):
    project = create_project(sessions, "Gold only", SCHEMA)
    with sessions.begin() as db:
        note = add_document(db, project.id, "note-1")
        add_set(
            db,
            note.id,
            SetOrigin.gold,
            SetStatus.submitted,
            [("T1", "Problem", PILLS, {"O": 1, "Drug": 1, "Problem": 2}), ("T2", "Problem", FEVER)],
        )
    [line] = jsonl(sessions, project.id)
    assert "adjudication" not in line
    [gold] = line["layers"]
    assert gold["layer"] == "gold"
    assert list(gold["spans"][0]["label_distribution"].items()) == [("Problem", 2), ("Drug", 1), ("O", 1)]
    ann = brat(sessions, project.id, "gold").read("note-1.ann").decode()
    assert ann.splitlines()[-1] == "#1\tAnnotatorNotes T1\tambiguous: Problem=2, Drug=1, O=1"
    assert sum(line.startswith("#") for line in ann.splitlines()) == 1
