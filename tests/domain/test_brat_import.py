"""A brat pair as an imported note: A lines as attributes, N lines as concepts, answers from the sidecar."""

import pytest

from app.domain.brat import BratError, read_answers, write_answers
from app.domain.brat_import import attach_answer_files, read_brat_document
from app.domain.uploads import ImportedDocument, UploadProblem

TEXT = "Chest pain, no dyspnea; nitroglycerin helped."
T_LINES = "T1\tProblem 0 10\tChest pain\nT2\tProblem 15 22\tdyspnea\nT3\tDrug 24 37\tnitroglycerin\n"

# (what, A/N lines after the T lines, {span: (attributes, (system, code, name) or None)}, kept verbatim)
CASES = [
    (
        "a binary attribute is True, a valued one its value",
        "A1\tNegated T2\nA2\tCertainty T1 possible\nA3\tTemporality T1 current\n",
        {
            "T1": ({"Certainty": "possible", "Temporality": "current"}, None),
            "T2": ({"Negated": True}, None),
        },
        [],
    ),
    (
        "a second value of one attribute is kept as written",
        "A1\tCertainty T1 possible\nA2\tCertainty T1 certain\n",
        {"T1": ({"Certainty": "possible"}, None)},
        ["A2\tCertainty T1 certain"],
    ),
    (
        "a concept: the system is what comes before the first ':'",
        "N1\tReference T3 RxNorm:4917\tnitroglycerin\nN2\tReference T1 UMLS:C0008031:x\tChest pain\n",
        {
            "T3": ({}, ("RxNorm", "4917", "nitroglycerin")),
            "T1": ({}, ("UMLS", "C0008031:x", "Chest pain")),
        },
        [],
    ),
    (
        "a second concept, and one of another type, are kept as written",
        "N1\tReference T3 RxNorm:4917\tnitroglycerin\nN2\tReference T3 ATC:C01DA02\tglyceryl trinitrate\n"
        "N3\tSimilar T1 UMLS:C0008031\tChest pain\n",
        {"T3": ({}, ("RxNorm", "4917", "nitroglycerin")), "T1": ({}, None)},
        ["N2\tReference T3 ATC:C01DA02\tglyceryl trinitrate", "N3\tSimilar T1 UMLS:C0008031\tChest pain"],
    ),
]


@pytest.mark.parametrize("lines,spans,verbatim", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_attribute_and_normalization_lines(lines, spans, verbatim):
    document, problems, warnings = read_brat_document("n1", TEXT, T_LINES + lines, "n1.ann")
    assert problems == [] and warnings == []
    by_id = {s.id: s for s in document.spans}
    for uid, (attributes, concept) in spans.items():
        span = by_id[uid]
        assert span.attributes == attributes
        stated = (span.concept_system, span.concept_code, span.concept_name)
        assert stated == (concept or (None, None, None))
    assert document.unmodelled == verbatim


def test_answers_are_written_and_read_back():
    answers = {"diagnosis": "angina", "alternatives": ["MI"], "evidence": ["T1", "T3"], "confidence": 4}
    written = write_answers(answers)
    assert written.endswith("}\n") and read_answers(written) == answers
    assert read_answers("\ufeff" + written) == answers  # an editor's byte-order mark


@pytest.mark.parametrize(
    "content,line,words",
    [
        ('{"confidence": 4,\n "evidence": [T1]}', 2, "not JSON"),
        ("", 1, "not JSON"),
        ('["angina"]', 1, "must be a JSON object"),
    ],
)
def test_a_bad_answers_file_names_its_line(content, line, words):
    with pytest.raises(BratError) as raised:
        read_answers(content, "set/n1.answers.json")
    assert (raised.value.source, raised.value.line) == ("set/n1.answers.json", line)
    assert words in raised.value.message


def test_answers_files_join_the_note_beside_them():
    annotated, _, _ = read_brat_document("n1", TEXT, T_LINES, "set/n1.ann")
    annotated.source_file = "set/n1.txt"  # as the upload reader names a pair
    bare = ImportedDocument("n2", "fever", "set/n2.txt")
    other = ImportedDocument("n3", "cough", "notes.jsonl")
    documents, problems = attach_answer_files(
        [annotated, bare, other],
        {
            "set/n1.answers.json": '{"confidence": 4}',
            "set/n2.answers.json": '{"comment": "nothing to mark"}',
            "set/n4.answers.json": "{}",
            "set/n5.answers.json": "{",
        },
    )
    assert problems == [
        UploadProblem("set/n4.answers.json", "answers need their note beside them: no set/n4.txt"),
        UploadProblem("set/n5.answers.json", "answers need their note beside them: no set/n5.txt"),
    ]
    first, second, third = documents
    assert (first.answers, first.answers_file, len(first.spans)) == (
        {"confidence": 4},
        "set/n1.answers.json",
        3,
    )
    assert second.answers == {"comment": "nothing to mark"} and second.has_annotations  # answers alone
    assert (third.answers, third.answers_file, third.has_annotations) == ({}, None, False)


def test_an_unreadable_answers_file_is_a_problem_naming_file_and_line():
    bare = ImportedDocument("n1", "fever", "n1.txt")
    documents, problems = attach_answer_files([bare], {"n1.answers.json": '{"a": 1,}'})
    assert [(p.file, p.line) for p in problems] == [("n1.answers.json", 1)]
    assert "not JSON" in problems[0].message and documents[0].answers == {}


# (what, note lines after T1-T3 and R1, span statuses, span notes, relation status, kept verbatim)
UNDECIDED_CASES = [
    (
        "a T line's status=undecided (an export's mark) makes it pending, not a note",
        "#1\tAnnotatorNotes T2\tstatus=undecided\n#2\tAnnotatorNotes T1\tseen by Dr A\n",
        {"T1": None, "T2": "pending", "T3": None},
        {"T1": ("seen by Dr A",)},
        None,
        [],
    ),
    (
        "on an R line too",
        "#1\tAnnotatorNotes R1\tstatus=undecided\n",
        {"T1": None, "T2": None, "T3": None},
        {},
        "pending",
        [],
    ),
    (
        "another note on a relation stays verbatim, and other words are a note",
        "#1\tAnnotatorNotes R1\tchecked\n#2\tAnnotatorNotes T3\tstatus=undecided?\n",
        {"T1": None, "T2": None, "T3": None},
        {"T3": ("status=undecided?",)},
        None,
        ["#1\tAnnotatorNotes R1\tchecked"],
    ),
]


@pytest.mark.parametrize(
    ("notes", "statuses", "span_notes", "relation_status", "verbatim"),
    [case[1:] for case in UNDECIDED_CASES],
    ids=[case[0] for case in UNDECIDED_CASES],
)
def test_an_undecided_mark_is_read_as_the_status(notes, statuses, span_notes, relation_status, verbatim):
    ann = T_LINES + "R1\tTreats Arg1:T3 Arg2:T1\n" + notes
    document, problems, _ = read_brat_document("n", TEXT, ann, "n.ann")
    assert not problems
    assert {s.id: s.status for s in document.spans} == statuses
    assert {s.id: s.notes for s in document.spans if s.notes} == span_notes
    assert [r.status for r in document.relations] == [relation_status]
    assert document.unmodelled == verbatim
