"""The lexicon pre-annotator: CSV term lists, whole words, case, leftmost-longest, code-point offsets."""

import pytest

from app.domain.lexicon import Lexicon, LexiconError, LexiconTerm, parse_lexicon_csv

SCHEMA_LABELS = {"Drug", "Strength", "Route"}

DRUGS = [
    LexiconTerm("Drug", "aspirin"),
    LexiconTerm("Drug", "metoprolol"),
    LexiconTerm("Drug", "metoprolol succinate"),
    LexiconTerm("Route", "po"),
]


def found(lexicon: Lexicon, text: str) -> list[tuple[str, str]]:
    """Matches as (label, covered text), which shows the offsets are right."""
    return [(label, text[start:end]) for label, start, end in lexicon.annotate(text)]


# (name, options, text, expected (label, start, end))
ANNOTATE_CASES = [
    ("whole word only", {}, "aspirinate and aspirin", [("Drug", 15, 22)]),
    ("inside words too", {"whole_word": False}, "aspirinate", [("Drug", 0, 7)]),
    ("punctuation is a boundary", {}, "(aspirin),po.", [("Drug", 1, 8), ("Route", 10, 12)]),
    ("underscore and digits are word characters", {}, "aspirin_x 2aspirin", []),
    ("case-insensitive by default", {}, "ASPIRIN Aspirin", [("Drug", 0, 7), ("Drug", 8, 15)]),
    ("case-sensitive on request", {"case_sensitive": True}, "ASPIRIN aspirin", [("Drug", 8, 15)]),
    ("longest wins", {}, "Metoprolol succinate 25 mg", [("Drug", 0, 20)]),
    ("shorter term where the longer is absent", {}, "metoprolol tartrate", [("Drug", 0, 10)]),
    ("emoji before the match", {}, "😀😀 Aspirin", [("Drug", 3, 10)]),
    ("CRLF line ends", {}, "note\r\naspirin\r\npo", [("Drug", 6, 13), ("Route", 15, 17)]),
    # "İ" lowers to two code points and "ß" casefolds to two: both stay as they are, offsets stay right.
    ("dotted capital I before the match", {}, "İ ASPIRIN", [("Drug", 2, 9)]),
    ("sharp s before the match", {}, "Straße aspirin", [("Drug", 7, 14)]),
    ("no terms in the text", {}, "no medication today", []),
    ("empty text", {}, "", []),
]


@pytest.mark.parametrize(
    ("name", "options", "text", "expected"), ANNOTATE_CASES, ids=[c[0] for c in ANNOTATE_CASES]
)
def test_annotate(name, options, text, expected):
    assert Lexicon(DRUGS, **options).annotate(text) == expected


def test_found_text_is_the_text_matched():
    lexicon = Lexicon(DRUGS)
    text = "Pt 🙂 on METOPROLOL SUCCINATE, aspirin po"
    assert found(lexicon, text) == [
        ("Drug", "METOPROLOL SUCCINATE"),
        ("Drug", "aspirin"),
        ("Route", "po"),
    ]


# (terms, text, expected covered texts): overlapping matches keep the leftmost, then the longest.
OVERLAP_CASES = [
    (["a b", "b c d"], "a b c d", ["a b"]),
    (["b c", "a b c d"], "a b c d", ["a b c d"]),
    (["x", "x y", "y z"], "x y z", ["x y"]),
]


@pytest.mark.parametrize(("terms", "text", "expected"), OVERLAP_CASES)
def test_overlapping_terms_leftmost_longest(terms, text, expected):
    lexicon = Lexicon([LexiconTerm("Drug", term) for term in terms])
    assert [covered for _, covered in found(lexicon, text)] == expected


def test_a_longer_match_inside_a_word_does_not_hide_a_whole_word_match():
    lexicon = Lexicon([LexiconTerm("Drug", "aspirin"), LexiconTerm("Drug", "aspirin c")])
    # "aspirin c" ends inside "cap", so it is not a whole word and "aspirin" is kept.
    assert found(lexicon, "aspirin cap") == [("Drug", "aspirin")]


def test_a_term_under_two_labels_gives_both():
    lexicon = Lexicon([LexiconTerm("Drug", "insulin"), LexiconTerm("Route", "insulin")])
    assert lexicon.annotate("insulin pump") == [("Drug", 0, 7), ("Route", 0, 7)]


def test_terms_differing_only_in_case_give_the_label_once():
    lexicon = Lexicon([LexiconTerm("Drug", "Aspirin"), LexiconTerm("Drug", "aspirin")])
    assert lexicon.annotate("aspirin") == [("Drug", 0, 7)]


def test_an_empty_lexicon_finds_nothing():
    assert Lexicon([]).annotate("aspirin") == []


# (name, content, expected terms)
CSV_CASES = [
    ("plain", "label,term\nDrug,aspirin\nRoute,po\n", [("Drug", "aspirin"), ("Route", "po")]),
    ("BOM, CRLF, spaces", "\ufefflabel , term\r\nDrug, aspirin \r\n", [("Drug", "aspirin")]),
    (
        "extra columns, other order",
        "term,source,label\nmetoprolol succinate,RxNorm,Drug\n",
        [("Drug", "metoprolol succinate")],
    ),
    ("quoted comma", 'label,term\nDrug,"aspirin, buffered"\n', [("Drug", "aspirin, buffered")]),
    ("blank lines and repeats skipped", "label,term\n\nDrug,aspirin\nDrug,aspirin\n", [("Drug", "aspirin")]),
    ("header only", "label,term\n", []),
]


@pytest.mark.parametrize(("name", "content", "expected"), CSV_CASES, ids=[c[0] for c in CSV_CASES])
def test_parse_lexicon_csv(name, content, expected):
    terms = parse_lexicon_csv(content, "drugs.csv", SCHEMA_LABELS)
    assert terms == [LexiconTerm(label, term) for label, term in expected]


# (name, content, expected problems): all problems are reported at once, and nothing is returned.
CSV_ERROR_CASES = [
    (
        "empty file",
        "",
        [
            "drugs.csv, line 1: the header has no column 'label'",
            "drugs.csv, line 1: the header has no column 'term'",
        ],
    ),
    ("no term column", "label,name\nDrug,aspirin\n", ["drugs.csv, line 1: the header has no column 'term'"]),
    (
        "every bad row named",
        "label,term\nDrug,aspirin\nDrug,\nDosage,10 mg\n,po\nRoute\n",
        [
            "drugs.csv, line 3, field 'term': the term is empty",
            "drugs.csv, line 4, field 'label': 'Dosage' is not a label of the schema",
            "drugs.csv, line 5, field 'label': the label is empty",
            "drugs.csv, line 6, field 'term': the term is empty",
        ],
    ),
    (
        "line numbers count blank and CRLF lines",
        "label,term\r\n\r\nDrug,aspirin\r\nRoute,   \r\n",
        ["drugs.csv, line 4, field 'term': the term is empty"],
    ),
]


@pytest.mark.parametrize(
    ("name", "content", "problems"), CSV_ERROR_CASES, ids=[c[0] for c in CSV_ERROR_CASES]
)
def test_parse_lexicon_csv_errors(name, content, problems):
    with pytest.raises(LexiconError) as raised:
        parse_lexicon_csv(content, "drugs.csv", SCHEMA_LABELS)
    assert raised.value.problems == problems
    assert isinstance(raised.value, ValueError)
    assert all(problem in str(raised.value) for problem in problems)


def test_parsed_lexicon_annotates():
    terms = parse_lexicon_csv("label,term\nDrug,Aspirin\nStrength,81 mg\n", "drugs.csv", SCHEMA_LABELS)
    assert Lexicon(terms).annotate("aspirin 81 MG") == [("Drug", 0, 7), ("Strength", 8, 13)]
