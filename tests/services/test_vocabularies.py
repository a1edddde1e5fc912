"""Vocabularies on a real PostgreSQL: stored all or nothing, attached to projects, looked up by term.

Every test checks what the database holds as well as what the service answered: a refused upload
leaves no vocabulary, concept, term or audit event behind.
"""

import pytest
from sqlalchemy import func, select, text

from app.db.models import AuditEvent, Concept, ConceptTerm, ProjectVocabulary, Vocabulary
from app.domain.concepts import MatchKind, VocabularyFileError, suggest_among
from app.services.projects import create_project
from app.services.vocabularies import (
    VocabularyError,
    attach_to_project,
    detach_from_project,
    list_vocabularies,
    project_vocabulary_ids,
    search_concepts,
    upload_vocabulary,
)

SCHEMA = {"entity_types": [{"name": "Drug", "color": "#1f77b4"}]}

DRUGS = (
    "code,preferred_term,synonyms,semantic_type\n"
    "6809,Metformin,Glucophage|metformin hydrochloride|Fortamet,Ingredient\n"
    "1191,Aspirin,acetylsalicylic acid|ASA,Ingredient\n"
    "860975,Metformin 500 MG Oral Tablet,metformin 500 mg tab,Clinical Drug\n"
    "7052,Morphine,morphine sulfate|MS Contin,Ingredient\n"
    "1000,Metoprolol,Lopressor|Toprol|metoprolol succinate,Ingredient\n"
    "1001,Metoprolol tartrate,Lopressor HCT,Ingredient\n"
    # "ASA" again, in another concept: homonyms are allowed; the lookup lists both.
    "9999,Argininosuccinic aciduria,ASA,Disease\n"
    # Other biguanides: trigram-similar to metformin, but neither equal to it nor starting with it.
    "8150,Phenformin,,Ingredient\n"
    "1500,Buformin,,Ingredient\n"
)
SNOMED = (
    "code\tpreferred term\tsynonyms\n"
    "22298006\tMyocardial infarction\theart attack|MI\n"
    "38341003\tHypertensive disorder\thypertension|high blood pressure\n"
)


def counts(sessions) -> dict[str, int]:
    with sessions() as db:
        return {
            "vocabularies": db.scalar(select(func.count()).select_from(Vocabulary)),
            "concepts": db.scalar(select(func.count()).select_from(Concept)),
            "terms": db.scalar(select(func.count()).select_from(ConceptTerm)),
            "audit": db.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action.like("vocabulary.%"))
            ),
        }


@pytest.fixture
def drugs(sessions, accounts) -> int:
    return upload_vocabulary(
        sessions, "RxNorm subset", "RxNorm", "2026-11", "drugs.csv", DRUGS.encode(), accounts["admin"].id
    ).vocabulary_id


def test_upload_stores_concepts_and_terms_with_counts_and_an_audit_event(sessions, accounts):
    outcome = upload_vocabulary(
        sessions, "RxNorm subset", "RxNorm", "2026-11", "drugs.csv", DRUGS.encode(), accounts["admin"].id
    )
    # Nine concepts; terms: 4 + 3 + 2 + 3 + 4 + 2 + 2 + 1 + 1 (each preferred term is a term too).
    assert (outcome.concepts, outcome.terms) == (9, 22)
    assert counts(sessions) == {"vocabularies": 1, "concepts": 9, "terms": 22, "audit": 1}
    with sessions() as db:
        vocabulary = db.get(Vocabulary, outcome.vocabulary_id)
        assert (vocabulary.name, vocabulary.system, vocabulary.version, vocabulary.source_name) == (
            "RxNorm subset", "RxNorm", "2026-11", "drugs.csv"
        )  # fmt: skip
        assert (vocabulary.concept_count, vocabulary.term_count) == (9, 22)
        assert vocabulary.uploaded_by == accounts["admin"].id
        metformin = db.scalar(select(Concept).where(Concept.code == "6809"))
        assert (metformin.preferred_term, metformin.semantic_type) == ("Metformin", "Ingredient")
        terms = db.execute(
            select(ConceptTerm.term, ConceptTerm.normalised, ConceptTerm.is_preferred)
            .where(ConceptTerm.concept_id == metformin.id)
            .order_by(ConceptTerm.id)
        ).all()
        assert [tuple(t) for t in terms] == [
            ("Metformin", "metformin", True),
            ("Glucophage", "glucophage", False),
            ("metformin hydrochloride", "metformin hydrochloride", False),
            ("Fortamet", "fortamet", False),
        ]
        event = db.scalar(select(AuditEvent).where(AuditEvent.action == "vocabulary.uploaded"))
        assert event.user_id == accounts["admin"].id
        assert event.object_id == str(outcome.vocabulary_id)
        assert event.details["concepts"] == 9 and event.details["terms"] == 22
    [listed] = list_vocabularies(sessions)
    assert (listed.name, listed.concept_count, listed.term_count, listed.uploaded_by) == (
        "RxNorm subset", 9, 22, "admin"
    )  # fmt: skip


def test_a_bad_line_stores_nothing(sessions, accounts):
    bad = DRUGS + "1191,Aspirin again,,\n"  # line 11 repeats a code
    with pytest.raises(VocabularyFileError) as caught:
        upload_vocabulary(
            sessions, "RxNorm subset", "RxNorm", "", "drugs.csv", bad.encode(), accounts["admin"].id
        )
    assert (caught.value.line, caught.value.field) == (11, "code")
    assert "drugs.csv, line 11, field 'code'" in str(caught.value)
    assert counts(sessions) == {"vocabularies": 0, "concepts": 0, "terms": 0, "audit": 0}


@pytest.mark.parametrize(
    ("name", "system", "version", "field"),
    [("", "RxNorm", "", "name"), ("x" * 201, "RxNorm", "", "name"), ("V", "", "", "system"),
     ("V", "Rx:Norm", "", "system"), ("V", "RxNorm", "v" * 101, "version")],
)  # fmt: skip
def test_bad_fields_are_named_and_store_nothing(sessions, accounts, name, system, version, field):
    with pytest.raises(VocabularyError) as caught:
        upload_vocabulary(sessions, name, system, version, "drugs.csv", DRUGS.encode(), accounts["admin"].id)
    assert caught.value.field == field
    assert counts(sessions)["vocabularies"] == 0


def test_a_duplicate_name_is_refused(sessions, accounts, drugs):
    with pytest.raises(VocabularyError) as caught:
        upload_vocabulary(
            sessions, "RxNorm subset", "RxNorm", "", "other.tsv", SNOMED.encode(), accounts["admin"].id
        )
    assert caught.value.field == "name" and "exists" in str(caught.value)
    assert counts(sessions) == {"vocabularies": 1, "concepts": 9, "terms": 22, "audit": 1}


def found(sessions, vocabulary_ids, query, limit=10) -> list[tuple[str, str, str]]:
    return [(r.code, r.term, r.match) for r in search_concepts(sessions, vocabulary_ids, query, limit)]


def test_exact_synonym_matches_come_before_prefix_matches(sessions, drugs):
    results = search_concepts(sessions, [drugs], "metformin")
    assert [(r.code, r.term, r.match) for r in results] == [
        ("6809", "Metformin", MatchKind.exact),
        # Each concept once, by its shortest term starting with the query. With an exact match there is
        # no fuzzy search: the query names a concept as it stands.
        ("860975", "metformin 500 mg tab", MatchKind.prefix),
    ]
    first, second = results
    assert (first.system, first.preferred_term, first.semantic_type, first.score) == (
        "RxNorm", "Metformin", "Ingredient", 1.0
    )  # fmt: skip
    assert second.preferred_term == "Metformin 500 MG Oral Tablet"
    assert second.score == pytest.approx(len("metformin") / len("metformin 500 mg tab"))


def test_prefix_matches_come_before_similar_terms(sessions, drugs):
    assert found(sessions, [drugs], "Metoprolol s") == [
        ("1000", "metoprolol succinate", "prefix"),
        ("1001", "Metoprolol tartrate", "fuzzy"),
    ]


def test_similar_terms_come_most_similar_first(sessions, drugs):
    results = search_concepts(sessions, [drugs], "formin")  # no term is or starts with it
    assert {r.match for r in results} == {MatchKind.fuzzy}
    # Buformin, Metformin, Phenformin; then the tablet, whose best term is longer for the same stretch.
    assert [(r.code, r.term) for r in results] == [
        ("1500", "Buformin"), ("6809", "Metformin"), ("8150", "Phenformin"),
        ("860975", "metformin 500 mg tab"),
    ]  # fmt: skip
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True) and scores[-1] >= 0.4


def test_an_exact_synonym_finds_its_concept_by_that_synonym(sessions, drugs):
    assert found(sessions, [drugs], "  GLUCOPHAGE ")[0] == ("6809", "Glucophage", "exact")
    # Homonyms: both concepts that call themselves ASA, the preferred term of neither.
    assert sorted(found(sessions, [drugs], "asa")[:2]) == [("1191", "ASA", "exact"), ("9999", "ASA", "exact")]


def test_a_one_typo_query_finds_the_concept(sessions, drugs):
    assert found(sessions, [drugs], "metfromin")[0] == ("6809", "Metformin", "fuzzy")
    assert found(sessions, [drugs], "morfine sulfate")[0] == ("7052", "morphine sulfate", "fuzzy")


def test_prefix_matches_prefer_shorter_terms(sessions, drugs):
    assert found(sessions, [drugs], "Met", limit=3) == [
        ("6809", "Metformin", "prefix"),
        ("1000", "Metoprolol", "prefix"),
        ("1001", "Metoprolol tartrate", "prefix"),
    ]


def test_one_row_per_concept_and_the_limit_holds(sessions, drugs):
    results = search_concepts(sessions, [drugs], "metformin hydrochlorid")
    codes = [r.code for r in results]
    assert codes[0] == "6809" and len(codes) == len(set(codes))
    assert len(search_concepts(sessions, [drugs], "m", limit=2)) == 2
    assert search_concepts(sessions, [drugs], "m", limit=0) == []


def test_results_come_only_from_the_given_vocabularies(sessions, accounts, drugs):
    snomed = upload_vocabulary(
        sessions, "SNOMED CT subset", "SNOMED CT", "", "conditions.tsv", SNOMED.encode(), accounts["admin"].id
    ).vocabulary_id
    assert found(sessions, [snomed], "heart attack") == [("22298006", "heart attack", "exact")]
    assert found(sessions, [drugs], "heart attack") == []
    assert found(sessions, [], "metformin") == []
    assert {r.system for r in search_concepts(sessions, [drugs, snomed], "m")} == {"RxNorm", "SNOMED CT"}


def test_nothing_to_look_for_finds_nothing(sessions, drugs):
    assert found(sessions, [drugs], "") == []
    assert found(sessions, [drugs], "   ") == []
    assert found(sessions, [drugs], "zzzzqqq") == []
    # LIKE's wildcards are only characters here.
    assert found(sessions, [drugs], "%") == [] and found(sessions, [drugs], "_") == []


def many_drugs(n: int) -> bytes:
    """n concepts with made-up names of three syllables each, and a synonym each."""
    syllables = ["ba", "ce", "di", "fo", "gu", "ka", "le", "mi", "no", "pu", "ra", "se", "ti", "vo", "zu"]
    rows = ["code,preferred_term,synonyms"]
    for i in range(n):
        a, b, c = (syllables[(i // len(syllables) ** k) % len(syllables)] for k in range(3))
        rows.append(f"D{i},{a}{b}{c}mab {i},{c}{b}{a}zol {i}")
    return "\n".join(rows).encode()


def plan(sessions, statement, parameters) -> str:
    from app.services.vocabularies import set_similarity_threshold

    with sessions() as db:
        set_similarity_threshold(db, parameters["query"])
        return "\n".join(db.scalars(text(f"EXPLAIN {statement.text}"), parameters))


def test_the_lookups_use_their_indexes(sessions, accounts):
    from app.services.vocabularies import EXACT_AND_PREFIX_LOOKUP, FUZZY_LOOKUP, lookup_parameters

    vocabulary_id = upload_vocabulary(
        sessions, "Many", "LOCAL", "", "many.csv", many_drugs(5000), accounts["admin"].id
    ).vocabulary_id
    parameters = lookup_parameters([vocabulary_id], "bacedimab", 10)
    # Fuzzy: the GIN trigram index; exact and prefix: range scans of the btree, never the whole table.
    assert "ix_concept_terms_normalised_trgm" in plan(sessions, FUZZY_LOOKUP, parameters)
    exact_and_prefix = plan(sessions, EXACT_AND_PREFIX_LOOKUP, parameters)
    assert "ix_concept_terms_vocabulary_normalised" in exact_and_prefix
    assert "Seq Scan on concept_terms" not in exact_and_prefix
    assert found(sessions, [vocabulary_id], "MiBaBamab 7")[0] == ("D7", "mibabamab 7", "exact")


def test_a_model_may_only_choose_among_the_codes_the_lookup_returned(sessions, drugs):
    results = search_concepts(sessions, [drugs], "metformin")
    assert suggest_among(results, "6809").code == "6809"
    assert suggest_among(results, "RxNorm:860975").code == "860975"
    assert suggest_among(results, "1191") is None  # aspirin is a real code, but not offered here
    assert suggest_among(results, "RxNorm:424242") is None


def test_attach_and_detach_are_audited_and_idempotent(sessions, accounts, drugs):
    project = create_project(sessions, "Trials", SCHEMA, actor_id=accounts["admin"].id)
    admin = accounts["admin"].id
    assert attach_to_project(sessions, project.id, drugs, admin) is True
    assert attach_to_project(sessions, project.id, drugs, admin) is False
    assert project_vocabulary_ids(sessions, project.id) == [drugs]
    assert list_vocabularies(sessions)[0].projects == [(project.id, "Trials")]
    assert detach_from_project(sessions, project.id, drugs, admin) is True
    assert detach_from_project(sessions, project.id, drugs, admin) is False
    assert project_vocabulary_ids(sessions, project.id) == []
    with sessions() as db:
        actions = db.execute(
            select(AuditEvent.action, AuditEvent.user_id, AuditEvent.details["vocabulary_id"].as_integer())
            .where(AuditEvent.action.in_(["vocabulary.attached", "vocabulary.detached"]))
            .order_by(AuditEvent.id)
        ).all()
    assert [tuple(a) for a in actions] == [
        ("vocabulary.attached", admin, drugs),
        ("vocabulary.detached", admin, drugs),
    ]


def test_attaching_to_a_missing_project_or_vocabulary_names_it(sessions, accounts, drugs):
    with pytest.raises(VocabularyError) as caught:
        attach_to_project(sessions, 4242, drugs, accounts["admin"].id)
    assert caught.value.field == "project_id"
    project = create_project(sessions, "Trials", SCHEMA)
    with pytest.raises(VocabularyError) as caught:
        attach_to_project(sessions, project.id, 4242, accounts["admin"].id)
    assert caught.value.field == "vocabulary_id"
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(ProjectVocabulary)) == 0
