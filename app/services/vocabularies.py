"""Concept vocabularies: upload (all or nothing, bulk COPY), attachment to projects, concept lookup.

A lookup asks the database twice at most. First exact and prefix matches, both range scans of the
btree index on (vocabulary_id, normalised text_pattern_ops). Then, only when the query names no term
as it stands and the prefixes leave the list short, terms with a similar stretch through the GIN
trigram index (pg_trgm's ``<%``, its threshold set per query here rather than left to the server's
configuration). Ranking is app.domain.concepts.rank_terms. bench/concept_bench.py measures it.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Project, ProjectVocabulary, User, Vocabulary
from app.domain.concepts import (
    MatchKind,
    ParsedVocabulary,
    TermCandidate,
    normalise,
    parse_vocabulary,
    rank_terms,
)
from app.services import audit

# Fuzzy matches: see set_similarity_threshold. A typo in fewer than FUZZY_MIN_QUERY_LENGTH characters
# leaves too few trigrams to tell it from another word; such short queries get exact and prefix matches.
FUZZY_MIN_SIMILARITY = 0.4
FUZZY_FILL_SIMILARITY = 0.6
FUZZY_TYPO_TRIGRAMS = 4
FUZZY_MIN_QUERY_LENGTH = 5
# A short prefix can match tens of thousands of terms; the shortest are looked for among the first
# PREFIX_SCAN in index order, which keeps every lookup's cost bounded (typing on narrows it anyway).
PREFIX_SCAN = 2000
MAX_QUERY_LENGTH = 200
MAX_LIMIT = 100
# Beyond the largest code point no character sorts: query + this is above every term starting with query.
_AFTER_EVERY_CHARACTER = "\U0010ffff"


class VocabularyError(ValueError):
    """A vocabulary request that cannot be carried out; ``field`` names what to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class VocabularyUploaded:
    vocabulary_id: int
    name: str
    concepts: int
    terms: int


@dataclass(frozen=True)
class VocabularyView:
    id: int
    name: str
    system: str
    version: str
    source_name: str | None
    concept_count: int
    term_count: int
    uploaded_at: datetime
    uploaded_by: str | None  # the uploader's user name (None once the account is gone)
    projects: list[tuple[int, str]]  # attached projects (id, name), by name


@dataclass(frozen=True)
class ConceptMatch:
    """One concept a lookup found, by its best-matching term."""

    concept_id: int
    vocabulary_id: int
    code: str
    system: str  # the coding system written into spans and brat N lines, e.g. "RxNorm"
    preferred_term: str
    term: str  # the term that matched, as the vocabulary spells it (may be the preferred term)
    semantic_type: str | None
    match: MatchKind  # "exact", "prefix" or "fuzzy"
    # 1.0 exact; prefix: the share of the term the query covers; fuzzy: pg_trgm word similarity (0 to 1).
    score: float


def _checked_fields(name: str, system: str, version: str) -> tuple[str, str, str]:
    name, system, version = (name or "").strip(), (system or "").strip(), (version or "").strip()
    if not name or len(name) > 200:
        raise VocabularyError("name", "give a name of 1 to 200 characters")
    if not system or len(system) > 100:
        raise VocabularyError(
            "system", "give the coding system (e.g. RxNorm, SNOMED CT), 1 to 100 characters"
        )
    if ":" in system:
        # Codes are written as SYSTEM:CODE in spans and brat N lines; a colon would make that ambiguous.
        raise VocabularyError("system", "must not contain ':'")
    if len(version) > 100:
        raise VocabularyError("version", "at most 100 characters")
    return name, system, version


def upload_vocabulary(
    sessions: sessionmaker[Session],
    name: str,
    system: str,
    version: str,
    file_name: str,
    data: bytes,
    actor_id: int | None,
    *,
    client_address: str | None = None,
) -> VocabularyUploaded:
    """Store a vocabulary file, all or nothing: a bad field or line raises and stores nothing."""
    name, system, version = _checked_fields(name, system, version)
    parsed = parse_vocabulary(file_name, data)  # VocabularyFileError names file, line and field
    with sessions.begin() as db:
        if db.scalar(select(Vocabulary.id).where(Vocabulary.name == name)) is not None:
            raise VocabularyError("name", f"a vocabulary named '{name}' exists; choose another name")
        vocabulary = Vocabulary(
            name=name,
            system=system,
            version=version,
            source_name=file_name[:300],
            sha256=hashlib.sha256(data).hexdigest(),
            concept_count=len(parsed.concepts),
            term_count=parsed.term_count,
            uploaded_by=actor_id,
        )
        db.add(vocabulary)
        try:
            db.flush()
        except IntegrityError:  # another upload took the name since the check above
            raise VocabularyError(
                "name", f"a vocabulary named '{name}' exists; choose another name"
            ) from None
        _copy_concepts(db, vocabulary.id, parsed)
        audit.record(
            db,
            "vocabulary.uploaded",
            user_id=actor_id,
            object_type="vocabulary",
            object_id=vocabulary.id,
            client_address=client_address,
            details={
                "name": name,
                "system": system,
                "version": version,
                "file": file_name,
                "format": parsed.file_format,
                "sha256": vocabulary.sha256,
                "concepts": vocabulary.concept_count,
                "terms": vocabulary.term_count,
            },
        )
        return VocabularyUploaded(vocabulary.id, name, vocabulary.concept_count, vocabulary.term_count)


def _copy_concepts(db: Session, vocabulary_id: int, parsed: ParsedVocabulary) -> None:
    """Write concepts and terms with COPY in the session's transaction (300,000 terms in seconds)."""
    cursor = db.connection().connection.driver_connection.cursor()
    with cursor.copy("COPY concepts (vocabulary_id, code, preferred_term, semantic_type) FROM STDIN") as copy:
        for concept in parsed.concepts:
            copy.write_row((vocabulary_id, concept.code, concept.preferred_term, concept.semantic_type))
    cursor.execute("SELECT code, id FROM concepts WHERE vocabulary_id = %s", (vocabulary_id,))
    concept_ids = dict(cursor.fetchall())
    with cursor.copy(
        "COPY concept_terms (concept_id, vocabulary_id, term, normalised, is_preferred) FROM STDIN"
    ) as copy:
        for concept in parsed.concepts:
            concept_id = concept_ids[concept.code]
            for term in concept.terms:
                copy.write_row((concept_id, vocabulary_id, term.text, term.normalised, term.is_preferred))
    # Rows inserted into a GIN index wait in its pending list, which every trigram lookup reads from
    # start to end until a vacuum merges it: merge it now so that lookups are fast from the first.
    cursor.execute("SELECT gin_clean_pending_list('ix_concept_terms_normalised_trgm'::regclass)")
    # The planner's statistics, so that lookups pick the indexes on a table that just grew.
    cursor.execute("ANALYZE concepts, concept_terms")


def list_vocabularies(sessions: sessionmaker[Session]) -> list[VocabularyView]:
    """Every vocabulary, by name, with its counts, uploader and attached projects."""
    with sessions() as db:
        rows = db.execute(
            select(Vocabulary, User.username)
            .outerjoin(User, User.id == Vocabulary.uploaded_by)
            .order_by(Vocabulary.name)
        ).all()
        attached: dict[int, list[tuple[int, str]]] = {}
        for vocabulary_id, project_id, project_name in db.execute(
            select(ProjectVocabulary.vocabulary_id, Project.id, Project.name)
            .join(Project, Project.id == ProjectVocabulary.project_id)
            .order_by(Project.name)
        ):
            attached.setdefault(vocabulary_id, []).append((project_id, project_name))
    return [
        VocabularyView(
            id=v.id,
            name=v.name,
            system=v.system,
            version=v.version,
            source_name=v.source_name,
            concept_count=v.concept_count,
            term_count=v.term_count,
            uploaded_at=v.uploaded_at,
            uploaded_by=username,
            projects=attached.get(v.id, []),
        )
        for v, username in rows
    ]


def project_choices(sessions: sessionmaker[Session]) -> list[tuple[int, str]]:
    """Every project (id, name), by name: where a vocabulary can be attached."""
    with sessions() as db:
        return [
            (row.id, row.name) for row in db.execute(select(Project.id, Project.name).order_by(Project.name))
        ]


def _project_and_vocabulary(db: Session, project_id: int, vocabulary_id: int) -> tuple[Project, Vocabulary]:
    project = db.get(Project, project_id)
    if project is None:
        raise VocabularyError("project_id", f"no project {project_id}")
    vocabulary = db.get(Vocabulary, vocabulary_id)
    if vocabulary is None:
        raise VocabularyError("vocabulary_id", f"no vocabulary {vocabulary_id}")
    return project, vocabulary


def attach_to_project(
    sessions: sessionmaker[Session],
    project_id: int,
    vocabulary_id: int,
    actor_id: int | None,
    *,
    client_address: str | None = None,
) -> bool:
    """Let a project's physicians code spans with a vocabulary, audited; False when it already could."""
    with sessions.begin() as db:
        project, vocabulary = _project_and_vocabulary(db, project_id, vocabulary_id)
        already = db.get(ProjectVocabulary, (project_id, vocabulary_id)) is not None
        if already:
            return False
        db.add(ProjectVocabulary(project_id=project_id, vocabulary_id=vocabulary_id))
        audit.record(
            db,
            "vocabulary.attached",
            user_id=actor_id,
            object_type="project",
            object_id=project_id,
            client_address=client_address,
            details={"vocabulary_id": vocabulary_id, "vocabulary": vocabulary.name, "project": project.name},
        )
    return True


def detach_from_project(
    sessions: sessionmaker[Session],
    project_id: int,
    vocabulary_id: int,
    actor_id: int | None,
    *,
    client_address: str | None = None,
) -> bool:
    """Take a vocabulary from a project, audited (codes on spans stay); False when it was not attached."""
    with sessions.begin() as db:
        project, vocabulary = _project_and_vocabulary(db, project_id, vocabulary_id)
        removed = db.execute(
            delete(ProjectVocabulary).where(
                ProjectVocabulary.project_id == project_id, ProjectVocabulary.vocabulary_id == vocabulary_id
            )
        ).rowcount
        if not removed:
            return False
        audit.record(
            db,
            "vocabulary.detached",
            user_id=actor_id,
            object_type="project",
            object_id=project_id,
            client_address=client_address,
            details={"vocabulary_id": vocabulary_id, "vocabulary": vocabulary.name, "project": project.name},
        )
    return True


def project_vocabulary_ids(sessions: sessionmaker[Session], project_id: int) -> list[int]:
    """The vocabularies a project's physicians code with, by id."""
    with sessions() as db:
        return list(
            db.scalars(
                select(ProjectVocabulary.vocabulary_id)
                .where(ProjectVocabulary.project_id == project_id)
                .order_by(ProjectVocabulary.vocabulary_id)
            )
        )


# ---- lookup ----------------------------------------------------------------------------------------

# Columns every stage returns: the candidate term, then what the result shows of its concept.
_DETAILS = """
    b.concept_id, b.term, b.normalised, b.is_preferred, b.similarity,
    c.vocabulary_id, c.code, c.preferred_term, c.semantic_type, v.system
"""
_JOIN_DETAILS = "JOIN concepts c ON c.id = b.concept_id JOIN vocabularies v ON v.id = c.vocabulary_id"

# Exact matches (all of them: homonyms in several concepts), and each concept's shortest term starting
# with the query among the first PREFIX_SCAN of them in the btree index (by vocabulary, then by code
# point order); both are range scans of that index.
EXACT_AND_PREFIX_LOOKUP = text(f"""
WITH exact AS (
    SELECT t.concept_id, t.term, t.normalised, t.is_preferred, 1.0::float8 AS similarity
    FROM concept_terms t
    WHERE t.vocabulary_id = ANY(:vocabulary_ids) AND t.normalised = :query
), prefix_scan AS (
    SELECT t.concept_id, t.term, t.normalised, t.is_preferred
    FROM concept_terms t
    WHERE t.vocabulary_id = ANY(:vocabulary_ids)
      AND t.normalised ~>~ :query AND t.normalised ~<~ :query_end
    ORDER BY t.vocabulary_id, t.normalised USING ~<~  -- the index's own order: no sort, stops at the limit
    LIMIT :prefix_scan
), prefix AS (
    SELECT DISTINCT ON (p.concept_id) p.concept_id, p.term, p.normalised, p.is_preferred,
           0.0::float8 AS similarity
    FROM prefix_scan p
    WHERE NOT EXISTS (SELECT 1 FROM exact e WHERE e.concept_id = p.concept_id)
    ORDER BY p.concept_id, length(p.normalised), p.is_preferred DESC, p.normalised
), best AS (
    (SELECT * FROM exact)
    UNION ALL
    (SELECT * FROM prefix ORDER BY length(normalised), is_preferred DESC, normalised LIMIT :limit)
)
SELECT {_DETAILS} FROM best b {_JOIN_DETAILS}
""")

# Each concept's best term among those holding a stretch similar to the query (pg_trgm word similarity:
# "glucophage" finds "metformin (glucophage)"), found through the GIN trigram index with ``<%``.
FUZZY_LOOKUP = text(f"""
WITH similar_terms AS (
    SELECT DISTINCT ON (t.concept_id) t.concept_id, t.term, t.normalised, t.is_preferred,
           word_similarity(:query, t.normalised)::float8 AS similarity
    FROM concept_terms t
    WHERE :query <% t.normalised AND t.vocabulary_id = ANY(:vocabulary_ids)
    ORDER BY t.concept_id, similarity DESC, length(t.normalised), t.is_preferred DESC
), best AS (
    SELECT * FROM similar_terms ORDER BY similarity DESC, length(normalised), concept_id LIMIT :limit
)
SELECT {_DETAILS} FROM best b {_JOIN_DETAILS}
""")


def lookup_parameters(vocabulary_ids: Sequence[int], normalised_query: str, limit: int) -> dict:
    """The bound values of the lookup statements (also what a test or bench EXPLAINs them with)."""
    return {
        "vocabulary_ids": list(vocabulary_ids),
        "query": normalised_query,
        "query_end": normalised_query + _AFTER_EVERY_CHARACTER,
        "prefix_scan": PREFIX_SCAN,
        "limit": limit,
    }


def set_similarity_threshold(db: Session, normalised_query: str, *, filling: bool = False) -> None:
    """pg_trgm's ``<%`` threshold for this query, local to the transaction (the server's is left alone).

    Word similarity is shared trigrams over the trigrams of query and matched stretch together; one
    typo (a swap is the worst) takes about FUZZY_TYPO_TRIGRAMS from the first and adds as many to the
    second, so a query of n trigrams keeps (n - 4) / (n + 4) with its term. Asking for no less than that
    keeps the typo found (a hair below, since pg_trgm computes in single precision), and keeps a long
    query from matching every term that merely shares its common words ("100 mg oral tablet").

    ``filling``: prefix matches were found, so the query is likely spelled right and similar terms only
    fill the list; they must then be closer (FUZZY_FILL_SIMILARITY), which keeps a short prefix from
    trawling every term that begins with the same letters."""
    floor = FUZZY_FILL_SIMILARITY if filling else FUZZY_MIN_SIMILARITY
    db.execute(
        text(
            "SELECT set_config('pg_trgm.word_similarity_threshold', "
            "greatest(:floor, (n - :typo) / (n + :typo) - 0.01)::text, true) "
            "FROM (SELECT cardinality(show_trgm(:query))::float8 AS n) AS query"
        ),
        {"query": normalised_query, "floor": floor, "typo": float(FUZZY_TYPO_TRIGRAMS)},
    )


def search_concepts(
    sessions: sessionmaker[Session], vocabulary_ids: Sequence[int], query: str, limit: int = 10
) -> list[ConceptMatch]:
    """Concepts of the given vocabularies for a search box: exact synonym matches first, then prefix
    matches (shorter terms first), then similar terms (trigram similarity); one row per concept."""
    normalised = normalise(query or "")[:MAX_QUERY_LENGTH]
    limit = max(0, min(limit, MAX_LIMIT))
    ids = sorted({int(i) for i in vocabulary_ids})
    if not normalised or not ids or not limit:
        return []
    parameters = lookup_parameters(ids, normalised, limit)
    with sessions() as db:
        rows = list(db.execute(EXACT_AND_PREFIX_LOOKUP, parameters))
        found = {row.concept_id for row in rows}
        exact = any(row.normalised == normalised for row in rows)
        # Similar terms only when needed: the query names no term as it stands and prefixes leave room.
        if not exact and len(found) < limit and len(normalised) >= FUZZY_MIN_QUERY_LENGTH:
            set_similarity_threshold(db, normalised, filling=bool(found))
            rows += db.execute(FUZZY_LOOKUP, {**parameters, "limit": limit + len(found)}).all()
    details = {row.concept_id: row for row in rows}
    candidates = [
        TermCandidate(row.concept_id, row.term, row.normalised, row.is_preferred, float(row.similarity))
        for row in rows
    ]
    results = []
    for ranked in rank_terms(normalised, candidates, limit):
        row = details[ranked.candidate.concept_id]
        results.append(
            ConceptMatch(
                concept_id=row.concept_id,
                vocabulary_id=row.vocabulary_id,
                code=row.code,
                system=row.system,
                preferred_term=row.preferred_term,
                term=ranked.candidate.term,
                semantic_type=row.semantic_type,
                match=ranked.kind,
                score=round(ranked.score, 4),
            )
        )
    return results
