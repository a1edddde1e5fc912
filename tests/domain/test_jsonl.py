"""JSONL notes: one document per line; every error names the file, the line and the field."""

import json

import pytest

from app.domain.jsonl import (
    AnsweredDocument,
    ImportedRelationState,
    JsonlConcept,
    JsonlDocument,
    JsonlError,
    JsonlRelation,
    JsonlSpan,
    answered,
    check_answers,
    parse_jsonl,
    parse_jsonl_with_problems,
    write_jsonl,
)
from app.domain.label_schema import DocumentQuestion
from app.domain.spans import Fragment
from app.domain.uploads import ImportedDocument, ImportedRelation

NOTE = {
    "id": "n1",
    "text": "aspirin 81 mg and then 2 tablets",
    "metadata": {"ward": "cardiology", "age": 71},
    "spans": [
        {"id": "T1", "label": "Drug", "fragments": [[0, 7]], "attributes": {}, "concept": None},
        {
            "id": "T2",
            "label": "Strength",
            "fragments": [[8, 13]],
            "attributes": {"certainty": "certain", "negated": False},
            "concept": {"system": "UCUM", "code": "mg"},
        },
        {"id": "T3", "label": "Dosage", "fragments": [[23, 32], [0, 7]], "attributes": {}, "concept": None},
    ],
    "relations": [{"id": "R1", "type": "Strength-Drug", "head": "T2", "tail": "T1"}],
}


def line(**changes) -> str:
    """NOTE as one JSONL line, with top-level keys replaced (None removes the key)."""
    document = {**NOTE, **changes}
    return json.dumps({k: v for k, v in document.items() if v is not None})


def span_line(index: int, **changes) -> str:
    spans = [dict(s) for s in NOTE["spans"]]
    spans[index].update(changes)
    return line(spans=spans)


def test_a_document_is_read_with_its_spans_and_relations():
    (document,) = parse_jsonl(line() + "\n", "notes.jsonl")
    assert document.id == "n1" and document.metadata == {"ward": "cardiology", "age": 71}
    assert document.spans[2].fragments == [(23, 32), (0, 7)]  # the order given is kept
    assert document.spans[1].concept == JsonlConcept(system="UCUM", code="mg")
    imported = document.to_imported("notes.jsonl")
    assert imported.external_id == "n1" and imported.source_file == "notes.jsonl" and imported.has_annotations
    assert imported.spans[2].fragments == (Fragment(23, 32), Fragment(0, 7))
    assert (imported.spans[1].concept_system, imported.spans[1].concept_code) == ("UCUM", "mg")
    assert [(r.type, r.head, r.tail) for r in imported.relations] == [("Strength-Drug", "T2", "T1")]


# (what, JSONL content, number of documents, has_annotations of the first)
GOOD_FILES = [
    ("a bare note", '{"id": "a", "text": "fever"}\n', 1, False),
    ("annotated with nothing", '{"id": "a", "text": "fever", "spans": []}\n', 1, True),
    ("blank lines and CRLF", '\r\n{"id": "a", "text": "x"}\r\n\n{"id": "b", "text": "y"}\r\n', 2, False),
    ("a byte-order mark", '\ufeff{"id": "a", "text": "x"}', 1, False),
    ("a line separator inside the text", '{"id": "a", "text": "one\u2028two"}\n', 1, False),
    ("empty file", "", 0, None),
]


@pytest.mark.parametrize(
    "content,count,annotated", [c[1:] for c in GOOD_FILES], ids=[c[0] for c in GOOD_FILES]
)
def test_good_files(content, count, annotated):
    documents = parse_jsonl(content, "x.jsonl")
    assert len(documents) == count
    if documents:
        assert documents[0].to_imported("x.jsonl").has_annotations is annotated


# (what, JSONL content, line, field, words)
BAD_LINES = [
    ("not JSON", line() + "\n{id: 1}\n", 2, "(line)", "not JSON"),
    ("not an object", "[1, 2]\n", 1, "(line)", "JSON object"),
    ("no id", line(id=None), 1, "id", "required"),
    ("id not a string", line(id=7), 1, "id", "string"),
    ("empty id", line(id=""), 1, "id", "at least 1"),
    ("no text", line(text=None), 1, "text", "required"),
    ("empty text", line(text="  ", spans=[], relations=[]), 1, "text", "is empty"),
    ("unknown field", line(txt="x"), 1, "txt", "Extra inputs"),
    ("metadata not an object", line(metadata=[1]), 1, "metadata", "dictionary"),
    ("span without label", span_line(1, label=None), 1, "spans[1].label", "string"),
    (
        "fragment of three numbers",
        span_line(0, fragments=[[0, 7, 9]]),
        1,
        "spans[0].fragments[0]",
        "at most 2",
    ),
    ("offset as a string", span_line(0, fragments=[["0", 7]]), 1, "spans[0].fragments[0][0]", "integer"),
    ("offset as a float", span_line(0, fragments=[[0.0, 7]]), 1, "spans[0].fragments[0][0]", "integer"),
    ("no fragments", span_line(0, fragments=[]), 1, "spans[0].fragments", "at least 1"),
    ("fragment past the text", span_line(2, fragments=[[23, 99]]), 1, "spans[2].fragments[0]", "<= 32"),
    ("fragment backwards", span_line(0, fragments=[[7, 0]]), 1, "spans[0].fragments[0]", "start < end"),
    (
        "attribute value an object",
        span_line(0, attributes={"a": {}}),
        1,
        "spans[0].attributes",
        "'a' must be a string",
    ),
    ("concept without code", span_line(0, concept={"system": "X"}), 1, "spans[0].concept.code", "required"),
    ("span id twice", span_line(1, id="T1"), 1, "spans[1].id", "earlier span"),
    (
        "relation to no span",
        line(relations=[{"id": "R1", "type": "X", "head": "T2", "tail": "T9"}]),
        1,
        "relations[0].tail",
        "'T9'",
    ),
    (
        "relation without type",
        line(relations=[{"id": "R1", "head": "T2", "tail": "T1"}]),
        1,
        "relations[0].type",
        "",
    ),
    (
        "relation status neither pending, confirmed nor undecided",
        line(relations=[{"id": "R1", "type": "X", "head": "T2", "tail": "T1", "status": "accepted"}]),
        1,
        "relations[0].status",
        "'pending', 'confirmed' or 'undecided'",
    ),
    (
        "span status neither pending, confirmed nor undecided (an export marks undecided ones)",
        line(spans=[{"id": "T1", "label": "Drug", "fragments": [[0, 7]], "status": "kept"}]),
        1,
        "spans[0].status",
        "'pending', 'confirmed' or 'undecided'",
    ),
    (
        "relation confidence above 1",
        line(relations=[{"id": "R1", "type": "X", "head": "T2", "tail": "T1", "confidence": 1.5}]),
        1,
        "relations[0].confidence",
        "less than or equal to 1",
    ),
    (
        "relation confidence as a string",
        line(relations=[{"id": "R1", "type": "X", "head": "T2", "tail": "T1", "confidence": "0.5"}]),
        1,
        "relations[0].confidence",
        "valid number",
    ),
    ("answers not an object", line(answers=["angina"]), 1, "answers", "dictionary"),
    (
        "concept system with a colon",
        span_line(0, concept={"system": "UMLS:2024", "code": "C1"}),
        1,
        "spans[0].concept.system",
        "one word without ':'",
    ),
    (
        "concept code with a space",
        span_line(0, concept={"system": "ICD-10", "code": "E11 9"}),
        1,
        "spans[0].concept.code",
        "one word",
    ),
    ("document id twice", line() + "\n\n" + line(), 3, "id", "already the id of line 1"),
    ("unpaired surrogate", '{"id": "a", "text": "x\\ud83d"}', 1, "text", "surrogate"),
]


@pytest.mark.parametrize(
    "content,number,field,words", [c[1:] for c in BAD_LINES], ids=[c[0] for c in BAD_LINES]
)
def test_errors_name_file_line_and_field(content, number, field, words):
    with pytest.raises(JsonlError) as raised:
        parse_jsonl(content, "notes.jsonl")
    error = raised.value
    assert (error.source, error.line, error.field) == ("notes.jsonl", number, field)
    assert words in error.message and str(error).startswith(f"notes.jsonl, line {number}: {field}: ")


def test_every_bad_line_is_reported():
    content = "\n".join([line(id="a"), "{", '{"id": "b", "text": ""}', line(id="c")])
    documents, problems = parse_jsonl_with_problems(content, "n.jsonl")
    assert [d.id for d in documents] == ["a", "c"]
    assert [(p.line, p.field) for p in problems] == [(2, "(line)"), (3, "text")]


def test_offsets_are_code_points_not_utf16_units():
    text = "\U0001f600 fever"  # JavaScript would put "fever" at [3, 8)
    (document,) = parse_jsonl(
        json.dumps({"id": "e", "text": text, "spans": [{"id": "T1", "label": "S", "fragments": [[2, 7]]}]})
    )
    start, end = document.spans[0].fragments[0]
    assert text[start:end] == "fever"
    with pytest.raises(JsonlError, match="<= 7"):
        parse_jsonl(
            json.dumps(
                {"id": "e", "text": text, "spans": [{"id": "T1", "label": "S", "fragments": [[3, 8]]}]}
            )
        )


def test_write_then_read_gives_the_same_documents():
    documents = parse_jsonl(
        line() + "\n" + json.dumps({"id": "n2", "text": "caf\u00e9 \U0001f600\u2028ok\r\n"})
    )
    written = write_jsonl(documents)
    assert written.count("\n") == 2 and "\u2028" not in written and "café 😀" in written
    assert parse_jsonl(written) == documents
    first = json.loads(written.split("\n")[0])
    assert list(first) == ["id", "text", "metadata", "spans", "relations"]
    assert list(first["spans"][0]) == ["id", "label", "fragments", "attributes", "concept"]


def test_write_builds_from_models_and_refuses_inconsistent_documents():
    span = JsonlSpan(id="T1", label="Drug", fragments=[(0, 7)], notes=["confidence=0.9"])
    good = JsonlDocument(id="d", text="aspirin", spans=[span])
    assert json.loads(write_jsonl([good]))["spans"][0]["notes"] == ["confidence=0.9"]
    bad = JsonlDocument(
        id="d",
        text="aspirin",
        spans=[span],
        relations=[JsonlRelation(id="R1", type="X", head="T1", tail="T5")],
    )
    with pytest.raises(ValueError, match="relations\\[0\\].tail"):
        write_jsonl([bad])


ANSWERED = {
    "id": "n1",
    "text": "Chest pain, no dyspnea; nitroglycerin helped.",
    "spans": [
        {
            "id": "T1",
            "label": "Problem",
            "fragments": [[0, 10]],
            "attributes": {"certainty": "possible"},
            "concept": {"system": "SNOMED-CT", "code": "29857009", "name": "Chest pain"},
        },
        {"id": "T2", "label": "Problem", "fragments": [[15, 22]], "attributes": {"negated": "true"}},
        {
            "id": "T3",
            "label": "Drug",
            "fragments": [[24, 37]],
            "concept": {"system": "RxNorm", "code": "4917"},
        },
    ],
    "relations": [
        {"id": "R1", "type": "Treats", "head": "T3", "tail": "T1", "status": "pending", "confidence": 0.7},
        {"id": "R2", "type": "Treats", "head": "T3", "tail": "T2"},
    ],
    "answers": {"primary_diagnosis": "angina", "evidence": ["T1", "T3"], "confidence": 4},
}


def test_relation_states_and_answers_are_read_and_written_back():
    (document,) = parse_jsonl("\n" + json.dumps(ANSWERED) + "\n", "notes.jsonl")
    imported = document.to_imported("notes.jsonl")
    assert isinstance(imported, AnsweredDocument) and imported.line == 2  # where to point a later problem
    assert imported.answers == ANSWERED["answers"] and imported.has_annotations
    assert [(r.id, r.status, r.confidence) for r in imported.relations] == [
        ("R1", "pending", 0.7),
        ("R2", None, None),  # its layer decides
    ]
    assert imported.spans[1].attributes == {"negated": "true"}
    assert (imported.spans[0].concept_system, imported.spans[0].concept_name) == ("SNOMED-CT", "Chest pain")
    written = json.loads(write_jsonl([document]))
    assert written["answers"] == ANSWERED["answers"]
    assert written["relations"] == ANSWERED["relations"]  # status and confidence only where given
    assert parse_jsonl(write_jsonl([document])) == [document]


def test_answers_alone_make_an_annotated_note():
    (document,) = parse_jsonl(json.dumps({"id": "a", "text": "fever", "answers": {"confidence": 2}}))
    assert document.to_imported("x.jsonl").has_annotations


def test_any_reader_s_document_becomes_an_answered_one():
    plain = ImportedDocument("a", "fever", "a.txt", relations=[ImportedRelation("R1", "X", "T1", "T2")])
    document = answered(plain)
    assert isinstance(document, AnsweredDocument) and (document.answers, document.line) == ({}, None)
    assert document.relations == [ImportedRelationState("R1", "X", "T1", "T2")]
    assert answered(document) is document


QUESTIONS = [
    DocumentQuestion(key="diagnosis", prompt="Primary diagnosis", kind="choice", choices=["angina", "MI"]),
    DocumentQuestion(
        key="alternatives", prompt="Alternatives", kind="multi_choice", choices=["MI", "GERD", "PE"]
    ),
    DocumentQuestion(key="comment", prompt="Comment", kind="text"),
    DocumentQuestion(key="confidence", prompt="Confidence", kind="scale", scale_min=1, scale_max=5),
    DocumentQuestion(key="evidence", prompt="Supporting evidence", kind="evidence"),
]

# (what, answers, stored, [(field, words)])
ANSWER_CASES = [
    (
        "every kind answered",
        {
            "diagnosis": "MI",
            "alternatives": ["PE", "MI"],
            "comment": "typical",
            "confidence": 5,
            "evidence": ["T2"],
        },
        {
            "diagnosis": "MI",
            "alternatives": ["MI", "PE"],
            "comment": "typical",
            "confidence": 5,
            "evidence": ["T2"],
        },
        [],
    ),
    ("null, blank and empty are no answer", {"diagnosis": None, "comment": " ", "alternatives": []}, {}, []),
    ("evidence named twice is named once", {"evidence": ["T2", "T1", "T2"]}, {"evidence": ["T2", "T1"]}, []),
    ("an unknown key", {"diagnose": "MI"}, {}, [("answers.diagnose", "not a question of this project")]),
    (
        "a choice not offered",
        {"diagnosis": "gout"},
        {},
        [("answers.diagnosis", '"gout" is not one of angina, MI')],
    ),
    ("a choice that is not text", {"diagnosis": 1}, {}, [("answers.diagnosis", "1 is not one of")]),
    ("multiple choices not a list", {"alternatives": "MI"}, {}, [("answers.alternatives", "must be a list")]),
    ("one of several not offered", {"alternatives": ["MI", "flu"]}, {}, [("answers.alternatives", '"flu"')]),
    ("scale above its top", {"confidence": 6}, {}, [("answers.confidence", "6 is outside the scale 1 to 5")]),
    ("scale below its bottom", {"confidence": 0}, {}, [("answers.confidence", "outside the scale")]),
    ("scale not whole", {"confidence": 4.5}, {}, [("answers.confidence", "whole number from 1 to 5")]),
    ("scale as true", {"confidence": True}, {}, [("answers.confidence", "whole number")]),
    ("text not a string", {"comment": ["a"]}, {}, [("answers.comment", "must be text")]),
    ("text too long", {"comment": "x" * 5001}, {}, [("answers.comment", "at most 5000 characters")]),
    (
        "evidence of an unknown span",
        {"evidence": ["T1", "T9"]},
        {},
        [("answers.evidence", "no span has the id 'T9'")],
    ),
    ("evidence not a list of ids", {"evidence": "T1"}, {}, [("answers.evidence", "list of span ids")]),
    (
        "each bad answer reported, the good kept",
        {"confidence": 9, "diagnosis": "MI", "other": 1},
        {"diagnosis": "MI"},
        [("answers.confidence", "outside"), ("answers.other", "not a question")],
    ),
]


@pytest.mark.parametrize(
    "answers,stored,expected", [c[1:] for c in ANSWER_CASES], ids=[c[0] for c in ANSWER_CASES]
)
def test_answers_are_checked_against_the_schema_s_questions(answers, stored, expected):
    got, problems = check_answers(QUESTIONS, answers, ["T1", "T2"])
    assert got == stored
    assert [field for field, _ in problems] == [field for field, _ in expected]
    for (_, message), (_, words) in zip(problems, expected, strict=True):
        assert words in message, message
