"""Concept vocabularies: reading an admin's vocabulary file, normalising terms, ranking lookups.

A vocabulary file (a licensed RxNorm or SNOMED CT subset, a local code list) is CSV or TSV in UTF-8
with a header naming its columns: ``code``, ``preferred_term`` (or ``preferred term``), ``synonyms``
(several separated by ``|``) and, optionally, ``semantic_type``. Rules:

- The whole file is refused when any line is wrong, and every problem names the file, the line and
  the field (up to MAX_PROBLEMS of them), so that an admin fixes the file once instead of line by line.
- The preferred term is also a term of its concept; a term repeated within a concept (after
  ``normalise``) is kept once, spelled as it first appears.
- Stored terms and queries go through the same ``normalise``, so "Metformin  HCl" finds "METFORMIN HCL".
- A lookup ranks exact matches of a term first, then terms that start with the query (shorter first),
  then similar terms (trigram similarity, highest first); a concept appears once, by its best term.
- A model's suggestion is accepted only when it names a code the lookup offered: it may choose, never
  invent (``suggest_among``).
"""

import csv
import io
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, TypeVar

COLUMNS = ("code", "preferred_term", "synonyms", "semantic_type")
REQUIRED_COLUMNS = ("code", "preferred_term", "synonyms")
SYNONYM_SEPARATOR = "|"
MAX_CODE_LENGTH = 100  # concepts.code is String(100)
MAX_SEMANTIC_TYPE_LENGTH = 200  # concepts.semantic_type is String(200)
# No clinical term is this long; a longer value is nearly always a CSV quote left open that swallowed
# the following lines, and the admin is better told so than left with one giant "term".
MAX_TERM_LENGTH = 1000
MAX_PROBLEMS = 20
TSV_EXTENSIONS = (".tsv", ".tab")
CSV_EXTENSIONS = (".csv",)


class VocabularyFileError(ValueError):
    """A vocabulary file that cannot be used; ``problems`` lists where (line and field) and what."""

    def __init__(self, file_name: str, problems: Sequence["VocabularyProblem"], more: bool = False):
        self.file_name = file_name
        self.problems = list(problems)
        self.more = more
        lines = [f"{file_name}, {problem}" for problem in self.problems]
        if more:
            lines.append(f"{file_name}: more problems not listed (the first {len(self.problems)} are shown)")
        super().__init__("; ".join(lines))

    @property
    def line(self) -> int | None:
        return self.problems[0].line if self.problems else None

    @property
    def field(self) -> str | None:
        return self.problems[0].field if self.problems else None


@dataclass(frozen=True, slots=True)
class VocabularyProblem:
    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", field '{self.field}'" if self.field else "")
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class VocabularyTerm:
    """One name of a concept, as written and as searched."""

    text: str
    normalised: str
    is_preferred: bool


@dataclass(frozen=True, slots=True)
class VocabularyConcept:
    code: str
    preferred_term: str
    semantic_type: str | None
    terms: tuple[VocabularyTerm, ...]  # the preferred term first
    line: int


@dataclass(frozen=True)
class ParsedVocabulary:
    file_name: str
    file_format: str  # "csv" or "tsv"
    concepts: tuple[VocabularyConcept, ...]

    @property
    def term_count(self) -> int:
        return sum(len(concept.terms) for concept in self.concepts)


def normalise(term: str) -> str:
    """The form a term is stored and searched in: NFKC, case-folded, white space collapsed and stripped.

    NFKC makes compatibility forms one ("ﬁ" -> "fi", full-width digits -> digits, "µ" -> "μ"); casefold
    is the Unicode caseless match ("ß" -> "ss"); folding can leave a string that NFKC changes again,
    hence the second pass."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", term).casefold())
    return " ".join(folded.split())


def _column_name(header_cell: str) -> str:
    return "_".join(header_cell.strip().casefold().replace("-", " ").split())


def _delimiter(file_name: str, first_line: str) -> str:
    """Tab or comma: the one whose header names a ``code`` column, the extension deciding a tie."""
    extension = "." + file_name.rsplit(".", 1)[-1].casefold() if "." in file_name else ""
    order = ["\t", ","] if extension in TSV_EXTENSIONS else [",", "\t"]
    if extension not in TSV_EXTENSIONS + CSV_EXTENSIONS and "\t" in first_line:
        order = ["\t", ","]
    for delimiter in order:
        if "code" in {_column_name(cell) for cell in first_line.split(delimiter)}:
            return delimiter
    return order[0]


def _reader(text: str, delimiter: str):
    if delimiter == "\t":
        # TSV has no quoting: a quote is part of the term (e.g. 'Tylenol "Extra Strength"').
        return csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    return csv.reader(io.StringIO(text, newline=""))


def _field_at(line_text: str, column: int, delimiter: str, columns: Sequence[str]) -> str:
    """The column a character position of a line falls in (for bytes and characters that cannot be read)."""
    cells = next(_reader(line_text[:column], delimiter), [""])
    index = max(len(cells) - 1, 0)
    return columns[index] if index < len(columns) else f"column {index + 1}"


def _decode(file_name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        line_start = data.rfind(b"\n", 0, error.start) + 1
        first_line = data.split(b"\n", 1)[0].decode("utf-8", "replace").removeprefix("\ufeff")
        delimiter = _delimiter(file_name, first_line)
        prefix = data[line_start : error.start].decode("utf-8", "replace")
        if line == 1:
            field = "header"
        else:
            columns = [_column_name(c) for c in next(_reader(first_line, delimiter), [])]
            field = _field_at(prefix, len(prefix), delimiter, columns)
        problem = VocabularyProblem(
            line, field, f"byte 0x{data[error.start]:02x} is not UTF-8 (save the file as UTF-8)"
        )
        raise VocabularyFileError(file_name, [problem]) from None


def parse_vocabulary(file_name: str, data: bytes) -> ParsedVocabulary:
    """The concepts of a CSV or TSV vocabulary file; VocabularyFileError names file, line and field."""
    # Spreadsheet programs save UTF-8 with a byte order mark; it is not part of the first column's name.
    text = _decode(file_name, data).removeprefix("\ufeff")
    first_line = text.split("\n", 1)[0].rstrip("\r")
    delimiter = _delimiter(file_name, first_line)
    file_format = "tsv" if delimiter == "\t" else "csv"

    if "\x00" in text:  # PostgreSQL text cannot hold NUL; name where it is rather than fail at COPY
        position = text.index("\x00")
        line = text.count("\n", 0, position) + 1
        line_start = text.rfind("\n", 0, position) + 1
        columns = [_column_name(c) for c in next(_reader(first_line, delimiter), [])]
        field = (
            "header" if line == 1 else _field_at(text[line_start:], position - line_start, delimiter, columns)
        )
        raise VocabularyFileError(file_name, [VocabularyProblem(line, field, "contains a NUL character")])

    reader = _reader(text, delimiter)
    try:
        header = next(reader, None)
    except csv.Error as error:
        raise VocabularyFileError(file_name, [VocabularyProblem(1, "header", str(error))]) from None
    if header is None or not any(cell.strip() for cell in header):
        raise VocabularyFileError(
            file_name,
            [VocabularyProblem(1, "header", "the file is empty; the first line must name the columns "
                               "code, preferred_term, synonyms and optionally semantic_type")],
        )  # fmt: skip
    columns = [_column_name(cell) for cell in header]
    header_problems = []
    for name in REQUIRED_COLUMNS:
        if name not in columns:
            header_problems.append(VocabularyProblem(1, "header", f"there is no column '{name}'"))
    for index, name in enumerate(columns):
        if name not in COLUMNS:
            header_problems.append(
                VocabularyProblem(
                    1,
                    "header",
                    f"column {index + 1} '{header[index].strip()}' is not one of {', '.join(COLUMNS)}",
                )
            )
        elif columns.index(name) != index:
            header_problems.append(VocabularyProblem(1, "header", f"column '{name}' appears twice"))
    if header_problems:
        raise VocabularyFileError(file_name, header_problems)
    position = {name: columns.index(name) for name in columns}

    problems: list[VocabularyProblem] = []
    more = False
    concepts: list[VocabularyConcept] = []
    first_line_of_code: dict[str, int] = {}

    def problem(line: int, field: str | None, message: str) -> None:
        nonlocal more
        if len(problems) < MAX_PROBLEMS:
            problems.append(VocabularyProblem(line, field, message))
        else:
            more = True

    line = reader.line_num
    while True:
        start = line + 1  # where the record starts (a quoted CSV value may span lines)
        try:
            row = next(reader, None)
        except csv.Error as error:
            problem(reader.line_num, None, str(error))
            break
        line = reader.line_num
        if row is None:
            break
        if not any(cell.strip() for cell in row):
            continue  # blank lines, often at the end of a hand-edited file
        if len(row) != len(columns):
            hint = (
                " (a term with a comma needs double quotes)"
                if delimiter == "," and len(row) > len(columns)
                else ""
            )
            problem(
                start,
                None,
                f"has {len(row)} fields, the header has {len(columns)} ({', '.join(columns)}){hint}",
            )
            continue

        code, preferred, semantic_type = (
            row[position[name]].strip() if name in position else ""
            for name in ("code", "preferred_term", "semantic_type")
        )
        if not code:
            problem(start, "code", "the code is empty")
        elif len(code) > MAX_CODE_LENGTH:
            problem(
                start, "code", f"the code has {len(code)} characters, at most {MAX_CODE_LENGTH} are allowed"
            )
        elif code in first_line_of_code:
            problem(start, "code", f"code '{code}' is already on line {first_line_of_code[code]}")
        else:
            first_line_of_code[code] = start
        if not preferred:
            problem(start, "preferred_term", "the preferred term is empty")
        elif len(preferred) > MAX_TERM_LENGTH:
            problem(
                start,
                "preferred_term",
                f"the term has {len(preferred)} characters, at most {MAX_TERM_LENGTH}",
            )
        if len(semantic_type) > MAX_SEMANTIC_TYPE_LENGTH:
            problem(
                start,
                "semantic_type",
                f"the semantic type has {len(semantic_type)} characters, at most {MAX_SEMANTIC_TYPE_LENGTH}",
            )
        synonyms = [s.strip() for s in row[position["synonyms"]].split(SYNONYM_SEPARATOR)]
        too_long = [s for s in synonyms if len(s) > MAX_TERM_LENGTH]
        if too_long:
            problem(
                start, "synonyms", f"a synonym has {len(too_long[0])} characters, at most {MAX_TERM_LENGTH}"
            )
        if problems or more:
            continue  # the file is refused; checking the rest only collects further problems
        concepts.append(
            VocabularyConcept(
                code=code,
                preferred_term=preferred,
                semantic_type=semantic_type or None,
                terms=_terms(preferred, synonyms),
                line=start,
            )
        )
    if problems:
        raise VocabularyFileError(file_name, problems, more)
    if not concepts:
        raise VocabularyFileError(
            file_name, [VocabularyProblem(line + 1, None, "the file has no concepts below its header")]
        )
    return ParsedVocabulary(file_name=file_name, file_format=file_format, concepts=tuple(concepts))


def _terms(preferred: str, synonyms: Iterable[str]) -> tuple[VocabularyTerm, ...]:
    terms: dict[str, VocabularyTerm] = {}
    for text, is_preferred in [(preferred, True), *((s, False) for s in synonyms)]:
        key = normalise(text)
        if key and key not in terms:
            terms[key] = VocabularyTerm(text=text, normalised=key, is_preferred=is_preferred)
    return tuple(terms.values())


# ---- lookups ---------------------------------------------------------------------------------------


class MatchKind(StrEnum):
    """How a term matched a query, best first."""

    exact = "exact"
    prefix = "prefix"
    fuzzy = "fuzzy"


_KIND_ORDER = {MatchKind.exact: 0, MatchKind.prefix: 1, MatchKind.fuzzy: 2}


@dataclass(frozen=True, slots=True)
class TermCandidate:
    """A term the database offered for a query, with its trigram (word) similarity to it (0 to 1)."""

    concept_id: int
    term: str
    normalised: str
    is_preferred: bool
    similarity: float


@dataclass(frozen=True, slots=True)
class RankedTerm:
    candidate: TermCandidate
    kind: MatchKind
    score: float


def match_kind(query: str, normalised_term: str) -> MatchKind:
    """Exact, prefix or fuzzy, for a normalised query and term."""
    if normalised_term == query:
        return MatchKind.exact
    if normalised_term.startswith(query):
        return MatchKind.prefix
    return MatchKind.fuzzy


def _rank_key(ranked: RankedTerm) -> tuple:
    candidate = ranked.candidate
    order = _KIND_ORDER[ranked.kind]
    if ranked.kind is MatchKind.fuzzy:
        return (order, -ranked.score, len(candidate.normalised), not candidate.is_preferred,
                candidate.normalised, candidate.concept_id)  # fmt: skip
    return (order, len(candidate.normalised), not candidate.is_preferred, candidate.normalised,
            candidate.concept_id)  # fmt: skip


def _score(query: str, candidate: TermCandidate, kind: MatchKind) -> float:
    if kind is MatchKind.exact:
        return 1.0
    if kind is MatchKind.prefix:
        return len(query) / len(candidate.normalised)  # how much of the term the query already covers
    return candidate.similarity


def rank_terms(query: str, candidates: Iterable[TermCandidate], limit: int) -> list[RankedTerm]:
    """The best ``limit`` concepts for a query, each once by its best term: exact before prefix (shorter
    terms first) before fuzzy (more similar first); a preferred term wins a tie with a synonym."""
    query = normalise(query)
    best: dict[int, tuple[tuple, RankedTerm]] = {}
    for candidate in candidates:
        kind = match_kind(query, candidate.normalised)
        ranked = RankedTerm(candidate, kind, _score(query, candidate, kind))
        key = _rank_key(ranked)
        if candidate.concept_id not in best or key < best[candidate.concept_id][0]:
            best[candidate.concept_id] = (key, ranked)
    return [ranked for _, ranked in sorted(best.values(), key=lambda pair: pair[0])][: max(limit, 0)]


class CodedResult(Protocol):
    @property
    def code(self) -> str: ...

    @property
    def system(self) -> str: ...


Result = TypeVar("Result", bound=CodedResult)


def suggest_among(results: Sequence[Result], answer: str | None) -> Result | None:
    """The lookup result a model's answer names, or None: a model may choose a code, never invent one.

    The answer is a code (``1049630``) or system and code (``RxNorm:1049630``), with white space or
    quotes around it tolerated; a bare code that two vocabularies both offered is ambiguous (None)."""
    if not answer:
        return None
    chosen = answer.strip().strip("\"'`").strip()
    qualified = [r for r in results if f"{r.system}:{r.code}" == chosen]
    if len(qualified) == 1:
        return qualified[0]
    bare = [r for r in results if r.code == chosen]
    return bare[0] if len({(r.system, r.code) for r in bare}) == 1 else None
