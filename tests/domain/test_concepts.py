"""Vocabulary files, term normalisation, lookup ranking and the guard on a model's suggestion."""

from dataclasses import dataclass

import pytest

from app.domain.concepts import (
    MAX_PROBLEMS,
    MatchKind,
    TermCandidate,
    VocabularyFileError,
    normalise,
    parse_vocabulary,
    rank_terms,
    suggest_among,
)

# (name, input, normalised)
NORMALISE_CASES = [
    ("case folded", "Metformin HCl", "metformin hcl"),
    ("white space collapsed and stripped", "  metformin \t 500\u00a0mg\n", "metformin 500 mg"),
    ("compatibility forms", "\ufb01lgrastim \uff15\uff10\uff10 \u00b5g", "filgrastim 500 μg"),
    ("sharp s folds to ss", "Straße", "strasse"),
    ("composed and decomposed accents agree", "ce\u0301falexine", "céfalexine"),
    ("empty", "", ""),
    ("only white space", " \t ", ""),
]


@pytest.mark.parametrize(("name", "term", "expected"), NORMALISE_CASES, ids=[c[0] for c in NORMALISE_CASES])
def test_normalise(name, term, expected):
    assert normalise(term) == expected
    assert normalise(expected) == expected  # the stored form is its own normal form


def concepts(file_name: str, content: str | bytes) -> list[tuple]:
    data = content.encode() if isinstance(content, str) else content
    parsed = parse_vocabulary(file_name, data)
    return [
        (c.code, c.preferred_term, c.semantic_type, [(t.text, t.is_preferred) for t in c.terms])
        for c in parsed.concepts
    ]


METFORMIN = ("6809", "Metformin", "Ingredient", [("Metformin", True), ("Glucophage", False)])
CSV_METFORMIN = "code,preferred_term,synonyms,semantic_type\n6809,Metformin,Glucophage,Ingredient\n"
TSV_METFORMIN = CSV_METFORMIN.replace(",", "\t")

# (name, file name, content, expected concepts)
PARSE_CASES = [
    ("CSV", "rx.csv", CSV_METFORMIN, [METFORMIN]),
    ("TSV", "rx.tsv", TSV_METFORMIN, [METFORMIN]),
    ("tabs in the first line make a TSV whatever the name", "rx.txt", TSV_METFORMIN, [METFORMIN]),
    ("a TSV named .csv is still read by its header", "rx.csv", TSV_METFORMIN, [METFORMIN]),
    ("byte order mark, CRLF, header words in any case", "rx.csv",
     "\ufeffCode,Preferred Term,Synonyms,Semantic Type\r\n6809,Metformin,Glucophage,Ingredient\r\n",
     [METFORMIN]),
    ("columns in any order", "rx.csv",
     "synonyms,semantic_type,code,preferred_term\nGlucophage,Ingredient,6809,Metformin\n", [METFORMIN]),
    ("semantic type column optional", "rx.csv", "code,preferred_term,synonyms\n1191,Aspirin,ASA\n",
     [("1191", "Aspirin", None, [("Aspirin", True), ("ASA", False)])]),
    ("empty semantic type is none", "rx.csv", "code,preferred_term,synonyms,semantic_type\n1191,Aspirin,,\n",
     [("1191", "Aspirin", None, [("Aspirin", True)])]),
    ("several synonyms, blanks and repeats of the same term dropped", "rx.csv",
     "code,preferred_term,synonyms\n1191,Aspirin,ASA| |aspirin|acetylsalicylic acid|asa||ASPIRIN \n",
     [("1191", "Aspirin", None, [("Aspirin", True), ("ASA", False), ("acetylsalicylic acid", False)])]),
    ("values stripped", "rx.csv", "code,preferred_term,synonyms\n 1191 , Aspirin , ASA \n",
     [("1191", "Aspirin", None, [("Aspirin", True), ("ASA", False)])]),
    ("quoted CSV values keep their commas", "rx.csv",
     'code,preferred_term,synonyms\n860975,"Metformin 500 MG, Oral Tablet","Glucophage 500, tab"\n',
     [("860975", "Metformin 500 MG, Oral Tablet", None,
       [("Metformin 500 MG, Oral Tablet", True), ("Glucophage 500, tab", False)])]),
    ("TSV quotes are part of the term", "rx.tsv",
     'code\tpreferred_term\tsynonyms\n209387\tTylenol "Extra Strength"\t"APAP"\n',
     [("209387", 'Tylenol "Extra Strength"', None, [('Tylenol "Extra Strength"', True), ('"APAP"', False)])]),
    ("blank lines skipped", "rx.csv", "code,preferred_term,synonyms\n\n1191,Aspirin,\n\n,,\n",
     [("1191", "Aspirin", None, [("Aspirin", True)])]),
    ("codes are case-sensitive", "rx.csv", "code,preferred_term,synonyms\nA1,Alpha,\na1,alpha,\n",
     [("A1", "Alpha", None, [("Alpha", True)]), ("a1", "alpha", None, [("alpha", True)])]),
    ("unicode terms", "sct.csv",
     "code,preferred_term,synonyms\n22298006,Infarctus du myocarde,IDM|心肌梗死\n",
     [("22298006", "Infarctus du myocarde", None,
       [("Infarctus du myocarde", True), ("IDM", False), ("心肌梗死", False)])]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "file_name", "content", "expected"), PARSE_CASES, ids=[c[0] for c in PARSE_CASES]
)
def test_parse(name, file_name, content, expected):
    assert concepts(file_name, content) == expected


def test_the_format_and_counts_are_reported():
    parsed = parse_vocabulary("rx.tsv", b"code\tpreferred_term\tsynonyms\n1\tA\tB|C\n2\tD\t\n")
    assert (parsed.file_name, parsed.file_format, len(parsed.concepts), parsed.term_count) == (
        "rx.tsv",
        "tsv",
        2,
        4,
    )
    assert [c.line for c in parsed.concepts] == [2, 3]
    assert parsed.concepts[0].terms[1].normalised == "b"


HEADER = "code,preferred_term,synonyms,semantic_type\n"

# (name, content, line, field, words in the message): every error names the file, the line and the field.
ERROR_CASES = [
    ("empty code", HEADER + ",Aspirin,,\n", 2, "code", "code is empty"),
    ("duplicate code", HEADER + "1191,Aspirin,,\n6809,Metformin,,\n1191,Aspirin 81,,\n", 4, "code",
     "already on line 2"),
    ("code too long", HEADER + "C" * 101 + ",Aspirin,,\n", 2, "code", "101 characters"),
    ("missing preferred term", HEADER + "1191,,ASA,\n", 2, "preferred_term", "preferred term is empty"),
    ("preferred term too long", HEADER + "1191," + "a" * 1001 + ",,\n", 2, "preferred_term",
     "1001 characters"),
    ("synonym too long", HEADER + "1191,Aspirin,ASA|" + "a" * 1001 + ",\n", 2, "synonyms",
     "1001 characters"),
    ("semantic type too long", HEADER + "1191,Aspirin,," + "t" * 201 + "\n", 2, "semantic_type",
     "201 characters"),
    ("too many fields", HEADER + "1191,Aspirin,ASA,Ingredient,extra\n", 2, None,
     "5 fields, the header has 4"),
    ("too few fields", HEADER + "1191,Aspirin\n", 2, None, "2 fields, the header has 4"),
    ("a quoted value over two lines starts on its first", HEADER + '1,A,,\n2,"B\nC",,,\n', 3, None,
     "5 fields"),
    ("no rows", HEADER, 2, None, "no concepts"),
    ("only blank lines", HEADER + "\n\n", 4, None, "no concepts"),
    ("empty file", "", 1, "header", "empty"),
    ("no code column", "id,preferred_term,synonyms\n1,A,\n", 1, "header", "no column 'code'"),
    ("no synonyms column", "code,preferred_term\n1,A\n", 1, "header", "no column 'synonyms'"),
    ("unknown column", "code,preferred_term,synonyms,tty\n1,A,,SCD\n", 1, "header", "'tty' is not one of"),
    ("column twice", "code,preferred_term,synonyms,code\n1,A,,1\n", 1, "header", "'code' appears twice"),
    ("NUL character", HEADER + "1,A\x00,,\n", 2, "preferred_term", "NUL"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "content", "line", "field", "words"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES]
)
def test_errors_name_file_line_and_field(name, content, line, field, words):
    with pytest.raises(VocabularyFileError) as caught:
        parse_vocabulary("drugs.csv", content.encode())
    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.line, error.field) == (line, field)
    where = f"drugs.csv, line {line}" + (f", field '{field}'" if field else "")
    assert str(error).startswith(where), str(error)
    assert words in str(error)


# (name, bytes, line, field): the bad byte's line and the column it falls in.
UNDECODABLE_CASES = [
    ("in a term", HEADER.encode() + b"1191,Aspirin,,\n6809,Metformin,Glucophage \xff,Ingredient\n", 3,
     "synonyms"),
    ("in the first column", HEADER.encode() + b"\xe9191,Aspirin,,\n", 2, "code"),
    ("Latin-1 in a TSV", b"code\tpreferred_term\tsynonyms\n1\tCaf\xe9ine\t\n", 2, "preferred_term"),
    ("in the header", b"code,pr\xe9ferred_term,synonyms\n", 1, "header"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "data", "line", "field"), UNDECODABLE_CASES, ids=[c[0] for c in UNDECODABLE_CASES]
)
def test_undecodable_bytes_are_named_by_line_and_field(name, data, line, field):
    file_name = "drugs.tsv" if b"\t" in data else "drugs.csv"
    with pytest.raises(VocabularyFileError) as caught:
        parse_vocabulary(file_name, data)
    assert (caught.value.line, caught.value.field) == (line, field)
    assert "not UTF-8" in str(caught.value)


def test_every_problem_is_listed_up_to_a_limit():
    with pytest.raises(VocabularyFileError) as caught:
        parse_vocabulary("drugs.csv", (HEADER + ",A,,\n1,,,\n").encode())
    assert [(p.line, p.field) for p in caught.value.problems] == [(2, "code"), (3, "preferred_term")]

    many = HEADER + ",A,,\n" * (MAX_PROBLEMS + 5)
    with pytest.raises(VocabularyFileError) as caught:
        parse_vocabulary("drugs.csv", many.encode())
    assert len(caught.value.problems) == MAX_PROBLEMS and caught.value.more
    assert "more problems not listed" in str(caught.value)


# ---- ranking ----------------------------------------------------------------------------------------


def candidate(
    concept_id: int, term: str, similarity: float = 0.0, is_preferred: bool = False
) -> TermCandidate:
    return TermCandidate(concept_id, term, normalise(term), is_preferred, similarity)


# (name, query, candidates, limit, expected (concept id, term, kind))
RANK_CASES = [
    ("exact before prefix before fuzzy", "metformin",
     [candidate(3, "Buformin", 0.6), candidate(2, "metformin 500 mg tab"), candidate(1, "Metformin", 1.0)],
     10,
     [(1, "Metformin", "exact"), (2, "metformin 500 mg tab", "prefix"), (3, "Buformin", "fuzzy")]),
    ("shorter prefix matches first", "met",
     [candidate(1, "metoprolol succinate"), candidate(2, "Metformin"), candidate(3, "metoprolol")], 10,
     [(2, "Metformin", "prefix"), (3, "metoprolol", "prefix"), (1, "metoprolol succinate", "prefix")]),
    ("more similar first among fuzzy matches", "morfine",
     [candidate(1, "morphine", 0.45), candidate(2, "codeine", 0.2), candidate(3, "morphine sulfate", 0.45)],
     10,
     [(1, "morphine", "fuzzy"), (3, "morphine sulfate", "fuzzy"), (2, "codeine", "fuzzy")]),
    ("one row per concept, by its best term", "asa",
     [candidate(1, "ASA tablet"), candidate(1, "ASA"), candidate(1, "aspirin", 0.2)], 10,
     [(1, "ASA", "exact")]),
    ("the preferred term wins a tie with a synonym", "asa",
     [candidate(1, "ASA"), candidate(2, "ASA", is_preferred=True)], 10,
     [(2, "ASA", "exact"), (1, "ASA", "exact")]),
    ("query normalised as the terms are", "  METFORMIN ", [candidate(1, "Metformin")], 10,
     [(1, "Metformin", "exact")]),
    ("limit", "m", [candidate(i, f"m{'x' * i}") for i in range(1, 6)], 2,
     [(1, "mx", "prefix"), (2, "mxx", "prefix")]),
    ("nothing offered", "metformin", [], 10, []),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "query", "candidates", "limit", "expected"), RANK_CASES, ids=[c[0] for c in RANK_CASES]
)
def test_rank_terms(name, query, candidates, limit, expected):
    ranked = rank_terms(query, candidates, limit)
    assert [(r.candidate.concept_id, r.candidate.term, r.kind) for r in ranked] == expected


def test_scores_say_how_well_a_term_matches():
    exact, prefix, fuzzy = rank_terms(
        "metformin",
        [candidate(1, "metformin"), candidate(2, "metformin hcl"), candidate(3, "buformin", 0.6)],
        10,
    )
    assert (exact.kind, exact.score) == (MatchKind.exact, 1.0)
    assert prefix.score == pytest.approx(9 / 13)  # the share of the term the query covers
    assert fuzzy.score == 0.6  # the database's trigram similarity


# ---- a model's suggestion ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Offered:
    system: str
    code: str


OFFERED = [Offered("RxNorm", "6809"), Offered("RxNorm", "860975"), Offered("SNOMED CT", "6809")]

# (name, model's answer, expected result or None)
SUGGEST_CASES = [
    ("a qualified code offered", "RxNorm:860975", Offered("RxNorm", "860975")),
    ("a bare code offered once", "860975", Offered("RxNorm", "860975")),
    ("quotes and white space around it", ' "860975"\n', Offered("RxNorm", "860975")),
    ("a bare code two vocabularies offered is ambiguous", "6809", None),
    ("qualified, it is not", "SNOMED CT:6809", Offered("SNOMED CT", "6809")),
    ("a code not offered is refused, however real", "1191", None),
    ("an offered code of another system is refused", "SNOMED CT:860975", None),
    ("prose is not a code", "I think metformin", None),
    ("no answer", "", None),
    ("none", None, None),
]


@pytest.mark.parametrize(("name", "answer", "expected"), SUGGEST_CASES, ids=[c[0] for c in SUGGEST_CASES])
def test_suggest_among_accepts_only_an_offered_code(name, answer, expected):
    assert suggest_among(OFFERED, answer) == expected


def test_nothing_offered_nothing_accepted():
    assert suggest_among([], "RxNorm:6809") is None
