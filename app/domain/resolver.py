"""Resolving an LLM's pre-annotation answer to spans of its chunk, never guessing silently.

The published method (design/llm-preannotation.md): parse each prompt schema's answer, map every
returned string back to offsets in the chunk (fuzzy where needed), strip edge punctuation, derive
relations from groups, and ensemble the two schemas recall first. Every entity string the model
returned ends up in a span or in ``dropped``; every fuzzy match is listed in ``fuzzy``.

Decisions the contract leaves open, taken here:
- Only entity strings are accounted for: tagged (B-/I-) lines of an iob_token answer and entities of a
  direct_chunk answer. O lines are aligned (they move the cursor) but make no span and are not counted.
- iob_token text form: when the answer has a ``` fence only the fenced lines are read and prose outside
  is ignored; without a fence every non-blank line is read, so a prose line is dropped as
  "unparseable line". A header line ("token tag group") and a table rule ("---|---") are skipped
  without counting: they carry no entity.
- An I- tag that does not continue a span of its label (none open, other label, or a word the model
  skipped in between) starts a span, as the published resolver does; it is not dropped.
- Labels map case-insensitively to the schema's names ("drug" -> "Drug"); an unknown label is dropped.
- direct_chunk: the n-th listing of a string takes the n-th occurrence not yet taken by that string;
  when every occurrence is taken, the listing is the entity listed before (a Reason shared by two
  drugs), so it becomes one span in several groups.
- Exact and case/white-space-insensitive matches prefer occurrences that do not cut a word; a match
  inside a word ("mg" in "81mg") is used only when there is no other.
- A fuzzy-matched listing counts as a listing of the text it matched: it prefers an occurrence that no
  listing of that text (exact or misspelled) took, so "by muoth" and "by motuh" are the chunk's first
  and second "by mouth", not both the first; when every one is taken, any this string did not take.
  Listed again, a fuzzy string takes another occurrence only one at least as close as its first (else
  it is the entity listed before); of equally close windows, the one the model's capitals match.
- score is 100 for exact and normalised matches (equal once normalised), the rapidfuzz ratio otherwise.
- A typo is tolerated word by word (see ``typo_tolerated``): a word of 4+ letters may be one edit away
  (an insertion, a deletion, a substitution or two adjacent letters swapped: "muoth" for "mouth"), one
  of 8+ letters two, whatever the ratio says (a swap in a 5-letter word has ratio 80, under 85). Such a
  match is fuzzy and listed in ``fuzzy`` with its ratio as the score; an exact or case-insensitive match
  within reach always wins over it, and a ratio match over it. Shorter words ("mg"/"mcg", "bid"/"ibd")
  and words with a digit ("1000"/"1500" is another dose) must match exactly or by the ratio rule.
- Edge stripping (see ``strip_edges``): white space and , ; : ! ? ' " always; a leading "."; a trailing
  "." unless the span ends in a dotted abbreviation ("q.d.", "p.o."); a bracket that is unmatched
  inside the span, or a pair wrapping the whole span ("(PO)" -> "PO"). Inner punctuation stays.
- Ensemble: a union span takes the better match and score of its two sources; a span of the second
  schema discarded because the first schema's span of that label does not overlap it is not "dropped"
  (the resolver found it; the ensemble chose), so dropped/fuzzy are the inputs' concatenation.
"""

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import yaml
from rapidfuzz import fuzz
from rapidfuzz.distance import OSA

from app.domain.label_schema import LabelSchema
from app.domain.tokens import tokenize

FUZZY_THRESHOLD = 85.0
# How many chunk tokens ahead of the cursor an iob_token answer token may be aligned: enough to skip
# the few tokens a model leaves out, small enough that a common token ("mg", ".") is not pulled far.
LOOK_AHEAD = 10
# Word lengths (the shorter of the two words) from which one, and two, typo edits are tolerated.
TYPO_MIN_LENGTH = 4
TWO_TYPOS_MIN_LENGTH = 8

EXACT, NORMALISED, FUZZY = "exact", "normalised", "fuzzy"
IOB_TOKEN, DIRECT_CHUNK, BOTH = "iob_token", "direct_chunk", "both"
# The contract's confidence of a pre-label.
CONFIDENCE = {BOTH: 0.9, EXACT: 0.7, NORMALISED: 0.6, FUZZY: 0.4}
_MATCH_RANK = {EXACT: 0, NORMALISED: 1, FUZZY: 2}

UNPARSEABLE_LINE = "unparseable line"
UNPARSEABLE_ENTITY = "unparseable entity"
UNKNOWN_LABEL = "unknown label"
NOT_FOUND = "not found in text"
EMPTY = "empty after stripping"
UNPARSEABLE_OUTPUT = "unparseable output"


@dataclass(frozen=True)
class ResolvedSpan:
    """A pre-label found in the chunk; offsets are relative to the chunk text."""

    label: str
    start: int
    end: int
    groups: frozenset[int]
    match: str  # "exact" | "normalised" | "fuzzy"
    score: float  # 100 for exact and normalised
    source: str  # "iob_token" | "direct_chunk" | "both"
    confidence: float


@dataclass(frozen=True)
class ResolvedRelation:
    """A relation between two spans of a ResolvedChunk, by index into its spans."""

    type: str
    head: int
    tail: int


@dataclass(frozen=True)
class Dropped:
    """A piece of the model's answer that made no span, and why."""

    reason: str
    raw: str


@dataclass(frozen=True)
class ResolvedChunk:
    """What one answer (or the ensemble of two) gave for one chunk."""

    spans: tuple[ResolvedSpan, ...]
    relations: tuple[ResolvedRelation, ...]
    dropped: tuple[Dropped, ...]
    fuzzy: tuple[tuple[str, str, float], ...]  # (model string, text matched, score)
    parsed: bool = True  # False when nothing at all could be parsed from the output

    @property
    def dropped_count(self) -> int:
        """How many returned strings or lines made no span."""
        return len(self.dropped)

    @property
    def fuzzy_count(self) -> int:
        """How many returned strings were matched only fuzzily."""
        return len(self.fuzzy)


class UnparseableOutput(ValueError):
    """The output holds no parseable answer at all; the caller may retry."""


def nothing_parsed(output: str) -> ResolvedChunk:
    """The chunk of an answer that stayed unparseable (after retries): no spans, the output dropped."""
    return ResolvedChunk((), (), (Dropped(UNPARSEABLE_OUTPUT, output),), (), parsed=False)


# ---------------------------------------------------------------------------------------------------
# Labels and edges


def _label_lookup(schema: LabelSchema) -> Callable[[str], str | None]:
    names = [entity.name for entity in schema.entity_types]
    exact = set(names)
    folded: dict[str, str] = {}
    for name in names:
        folded.setdefault(name.casefold(), name)

    def lookup(raw: str) -> str | None:
        raw = raw.strip()
        return raw if raw in exact else folded.get(raw.casefold())

    return lookup


_ALWAYS_STRIPPED = set(",;:!?'\"")
_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {close: open_ for open_, close in _OPENERS.items()}
_DOTTED_ABBREVIATION = re.compile(r"(?:^|[^\w.])(?:[^\W\d_]\.){2,}$")


def _bracket_pairs(text: str) -> dict[int, int]:
    """Index of each matched bracket to its partner's, nesting respected; unmatched ones are absent."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for i, char in enumerate(text):
        if char in _OPENERS:
            stack.append(i)
        elif char in _CLOSERS and stack and text[stack[-1]] == _CLOSERS[char]:
            j = stack.pop()
            pairs[i], pairs[j] = j, i
    return pairs


def _stray_period(span: str) -> bool:
    return span.endswith(".") and not _DOTTED_ABBREVIATION.search(span)


def strip_edges(text: str, start: int, end: int) -> tuple[int, int]:
    """[start, end) without edge white space and edge punctuation that does not belong to the mention."""
    while start < end:
        span = text[start:end]
        first, last = span[0], span[-1]
        pairs = _bracket_pairs(span)
        if first.isspace() or first in _ALWAYS_STRIPPED or first == ".":
            start += 1
        elif last.isspace() or last in _ALWAYS_STRIPPED or _stray_period(span):
            end -= 1
        elif first in _OPENERS and pairs.get(0) in (None, len(span) - 1):
            # Unmatched, or a pair wrapping the whole span: "(PO)" is the route PO.
            if pairs.get(0) == len(span) - 1:
                end -= 1
            start += 1
        elif last in _CLOSERS and len(span) - 1 not in pairs:
            end -= 1
        else:
            break
    return start, end


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def _typo_budget(answer: str, text: str) -> int:
    shorter = min(len(answer), len(text))
    # A changed digit is another strength or dose, never a typo to forgive.
    if shorter < TYPO_MIN_LENGTH or any(char.isdigit() for char in answer + text):
        return 0
    return 2 if shorter >= TWO_TYPOS_MIN_LENGTH else 1


def typo_tolerated(answer: str, text: str) -> bool:
    """Whether the model's word may be the chunk's word: equal case aside, or within its typo budget."""
    answer, text = answer.casefold(), text.casefold()
    if answer == text:
        return True
    budget = _typo_budget(answer, text)
    # OSA counts a swap of two adjacent letters as one edit, as Damerau-Levenshtein does.
    return budget > 0 and OSA.distance(answer, text, score_cutoff=budget) <= budget


def _same_words(answer: Sequence[str], chunk: Sequence[str]) -> bool:
    """Token by token: the same count, each equal case-insensitively or within its typo budget."""
    return len(answer) == len(chunk) and all(typo_tolerated(a, c) for a, c in zip(answer, chunk, strict=True))


# ---------------------------------------------------------------------------------------------------
# Mapping strings back to offsets


@dataclass(frozen=True)
class _Found:
    start: int
    end: int
    match: str
    score: float


@dataclass
class _Finder:
    """Finds the strings of one answer in one chunk, remembering which occurrences each string took."""

    chunk: str
    threshold: float
    taken: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    last: dict[str, _Found] = field(default_factory=dict)
    # Occurrences taken by fuzzy matches, by the (normalised) chunk text they matched.
    fuzzy_taken: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tokens = tokenize(self.chunk)
        self.texts = [self.chunk[t.start : t.end] for t in self.tokens]

    def _cuts_no_word(self, start: int, end: int) -> bool:
        def word(i: int) -> bool:
            return 0 <= i < len(self.chunk) and (self.chunk[i].isalnum() or self.chunk[i] == "_")

        return not (word(start - 1) and word(start)) and not (word(end - 1) and word(end))

    def _free(self, key: str, start: int, end: int) -> bool:
        return all(end <= s or e <= start for s, e in self.taken.get(key, ()))

    def _free_for_text(self, start: int, end: int) -> bool:
        """Not taken by a listing of this very text, nor by another misspelling of it."""
        text = _normalise(self.chunk[start:end])
        return self._free(text, start, end) and all(
            end <= s or e <= start for s, e in self.fuzzy_taken.get(text, ())
        )

    def _first_free(self, key: str, pattern: re.Pattern[str]) -> tuple[int, int] | None:
        occurrences = [(m.start(), m.end()) for m in pattern.finditer(self.chunk) if m.end() > m.start()]
        whole_words = [o for o in occurrences if self._cuts_no_word(*o)]
        for start, end in whole_words or occurrences:
            if self._free(key, start, end):
                return start, end
        return None

    def _fuzzy(self, key: str, bare: str, at_least: float = 0.0) -> _Found | None:
        needle = _normalise(bare)
        spaced = " ".join(bare.split())
        words = [needle[t.start : t.end] for t in tokenize(needle)]
        width = max(1, len(words))
        candidates: list[tuple[float, float, int, int, int]] = []
        for i in range(len(self.tokens)):
            for size in range(max(1, width - 1), width + 2):
                if i + size > len(self.tokens):
                    break
                start, end = self.tokens[i].start, self.tokens[i + size - 1].end
                score = fuzz.ratio(needle, _normalise(self.chunk[start:end]))
                # Under the ratio threshold a window still matches when word for word it is the
                # string with a typo or two; its ratio ranks it below every ratio match.
                if score < at_least or (
                    score < self.threshold
                    and not (size == width and _same_words(words, self.texts[i : i + size]))
                ):
                    continue
                # Of equally close windows, the one the model's capitals match ("Ltihium": "Lithium").
                cased = fuzz.ratio(spaced, " ".join(self.chunk[start:end].split()))
                candidates.append((-score, -cased, start, abs(size - width), end))
        # A misspelling counts as a listing of the text it stands for: "by muoth" then "by motuh" are the
        # two "by mouth" of the chunk, not both the first. Else any occurrence this string did not take.
        ranked = sorted(candidates)
        for for_text in (True, False):
            for negative_score, _, start, _, end in ranked:
                if self._free(key, start, end) and (not for_text or self._free_for_text(start, end)):
                    text = _normalise(self.chunk[start:end])
                    self.fuzzy_taken.setdefault(text, []).append((start, end))
                    return _Found(start, end, FUZZY, -negative_score)
        return None

    def find(self, raw: str) -> _Found | None:
        """Where the n-th listing of `raw` is: exact, else normalised, else fuzzy (whole tokens)."""
        key = _normalise(raw)
        given = raw.strip()
        start, end = strip_edges(given, 0, len(given))
        bare = given[start:end]
        found: _Found | None = None
        for needle in dict.fromkeys((given, bare)):
            hit = self._first_free(key, re.compile(re.escape(needle)))
            if hit:
                found = _Found(*hit, EXACT, 100.0)
                break
        if found is None:
            pattern = re.compile(r"\s+".join(map(re.escape, bare.split())), re.IGNORECASE)
            hit = self._first_free(key, pattern)
            found = _Found(*hit, NORMALISED, 100.0) if hit else None
        previous = self.last.get(key)
        # A string listed again with no occurrence left is the entity listed before (a shared Reason),
        # unless it was fuzzy: then another fuzzy occurrence at least as close is the likelier reading
        # (a less close one, "nuetropenia" for "neutropenic" after "neutropenia", is another word).
        if found is None and previous is not None and previous.match != FUZZY:
            return previous
        if found is None:
            found = self._fuzzy(key, bare, previous.score if previous is not None else 0.0)
        if found is None:
            return previous
        self.taken.setdefault(key, []).append((found.start, found.end))
        self.last[key] = found
        return found


# ---------------------------------------------------------------------------------------------------
# Tolerant parsing of JSON / YAML answers

_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_MAX_JSON_STARTS = 50


def _fenced_blocks(output: str) -> list[str]:
    return [m.group(1) for m in _FENCE.finditer(output)]


def _yaml_block(text: str, key: str) -> str | None:
    """The YAML mapping that starts at a line `key:`, up to the first line that cannot belong to it."""
    head = re.search(rf"^([ \t]*)[\"']?{key}[\"']?[ \t]*:", text, re.IGNORECASE | re.MULTILINE)
    if head is None:
        return None
    indent = len(head.group(1))
    lines = text[head.start() :].splitlines()
    kept = [lines[0][indent:]]
    for line in lines[1:]:
        stripped = line.strip()
        depth = len(line) - len(line.lstrip())
        if stripped.startswith("```"):
            break
        if stripped and depth <= indent and not (depth == indent and stripped.startswith("-")):
            break
        kept.append(line[indent:])
    return "\n".join(kept)


def _structures(output: str, key: str) -> Iterator[Any]:
    """Every JSON or YAML value the output may hold, most likely first."""
    for text in [*_fenced_blocks(output), output]:
        cleaned = _TRAILING_COMMA.sub(r"\1", text)
        decoder = json.JSONDecoder()
        # raw_decode reads one value and ignores the prose after it.
        for m in list(re.finditer(r"[{\[]", cleaned))[:_MAX_JSON_STARTS]:
            try:
                yield decoder.raw_decode(cleaned, m.start())[0]
            except json.JSONDecodeError:
                continue
        braces = cleaned[cleaned.find("{") : cleaned.rfind("}") + 1] if "{" in cleaned else None
        for candidate in (text, _yaml_block(text, key), braces):
            if candidate:
                try:
                    # BaseLoader keeps every scalar a string: "text: 1.50" stays "1.50", "no" stays "no".
                    yield yaml.load(candidate, Loader=yaml.BaseLoader)  # noqa: S506 - BaseLoader is safe
                except yaml.YAMLError:
                    continue


def _get(mapping: dict[Any, Any], key: str) -> Any:
    return next((v for k, v in mapping.items() if isinstance(k, str) and k.strip().casefold() == key), None)


def _has(mapping: Any, key: str) -> bool:
    return isinstance(mapping, dict) and any(
        isinstance(k, str) and k.strip().casefold() == key for k in mapping
    )


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def _as_text(value: Any) -> str:
    return "" if value is None else str(value)


# ---------------------------------------------------------------------------------------------------
# direct_chunk


@dataclass(frozen=True)
class _Listing:
    group: int
    label: str
    text: str


def _parse_int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _direct_groups(value: Any) -> list[Any] | None:
    if _has(value, "groups"):
        return _as_list(_get(value, "groups"))
    if _has(value, "entities"):
        return [value]
    if isinstance(value, list) and value and all(_has(item, "entities") for item in value):
        return value
    return None


def _listings_from_groups(groups: list[Any]) -> tuple[list[_Listing], list[Dropped]]:
    listings: list[_Listing] = []
    dropped: list[Dropped] = []
    used = {i for g in groups if isinstance(g, dict) and (i := _parse_int(_get(g, "id"))) is not None}
    fresh = (i for i in count(1) if i not in used)
    for group in groups:
        if not isinstance(group, dict):
            dropped.append(Dropped(UNPARSEABLE_ENTITY, _as_text(group)))
            continue
        group_id = _parse_int(_get(group, "id"))
        group_id = next(fresh) if group_id is None else group_id
        entities = _as_list(_get(group, "entities"))
        # Models also write a group as {"Drug": "aspirin", "Strength": "81 mg"}.
        shorthand = {k: v for k, v in group.items() if str(k).strip().casefold() not in ("id", "entities")}
        entities += [{"label": k, "text": v} for k, vs in shorthand.items() for v in _as_list(vs)]
        for entity in entities:
            if _has(entity, "label") and _has(entity, "text"):
                for text in _as_list(_get(entity, "text")):
                    listings.append(_Listing(group_id, _as_text(_get(entity, "label")), _as_text(text)))
            elif isinstance(entity, dict) and len(entity) == 1:
                ((label, texts),) = entity.items()
                listings += [_Listing(group_id, str(label), _as_text(t)) for t in _as_list(texts)]
            else:
                dropped.append(Dropped(UNPARSEABLE_ENTITY, json.dumps(entity, default=str)))
    return listings, dropped


_LOOSE_FIELD = re.compile(
    r"""["']?\b(?P<key>id|label|text)\b["']?\s*:\s*"""
    r"""(?:"(?P<dq>(?:[^"\\]|\\.)*)"|'(?P<sq>[^']*)'|(?P<bare>[^,{}\[\]\n]*))""",
    re.IGNORECASE,
)


def _loose_listings(output: str) -> tuple[list[_Listing], list[Dropped]]:
    """Line by line reading of a YAML/JSON-like answer that no parser accepts (a stray quote, a colon)."""
    text = "\n".join(_fenced_blocks(output)) or output
    used = {int(m.group(1)) for m in re.finditer(r"\bid[\"']?\s*:\s*[\"']?(\d+)", text, re.IGNORECASE)}
    fresh = (i for i in count(1) if i not in used)
    listings: list[_Listing] = []
    dropped: list[Dropped] = []
    group: int | None = None
    pending: dict[str, str] = {}

    def value(m: re.Match[str]) -> str:
        if m.group("dq") is not None:
            try:
                return json.loads(f'"{m.group("dq")}"')
            except json.JSONDecodeError:
                return m.group("dq")
        return m.group("sq") if m.group("sq") is not None else m.group("bare").strip()

    for line in text.splitlines():
        fields = {m.group("key").casefold(): value(m) for m in _LOOSE_FIELD.finditer(line)}
        if "id" in fields:
            group = _parse_int(fields.pop("id"))
        for key, val in fields.items():
            if key in pending:  # a second label (or text) before the first was completed
                dropped.append(Dropped(UNPARSEABLE_ENTITY, f"{key}: {pending.pop(key)}"))
            pending[key] = val
        if "label" in pending and "text" in pending:
            gid = group if group is not None else next(fresh)
            listings.append(_Listing(gid, pending.pop("label"), pending.pop("text")))
    dropped += [Dropped(UNPARSEABLE_ENTITY, f"{key}: {val}") for key, val in pending.items()]
    return listings, dropped


def _parse_direct(output: str) -> tuple[list[_Listing], list[Dropped]]:
    for value in _structures(output, "groups"):
        groups = _direct_groups(value)
        if groups is not None:
            return _listings_from_groups(groups)
    listings, dropped = _loose_listings(output)
    if not listings and not dropped:
        raise UnparseableOutput(f"no direct_chunk answer in the output: {output[:200]!r}")
    return listings, dropped


def _confidence(source: str, match: str, score: float = 100.0) -> float:
    """How sure a pre-label is: both prompt schemas agreeing beats one; a fuzzy match counts by its
    similarity (a word found at ratio 80 is less sure than one at 95)."""
    base = CONFIDENCE[BOTH] if source == BOTH else CONFIDENCE[match]
    return round(base * score / 100, 3) if match == FUZZY else base


def _better(a: str, b: str) -> str:
    return a if _MATCH_RANK[a] <= _MATCH_RANK[b] else b


def _worse(a: str, b: str) -> str:
    return a if _MATCH_RANK[a] >= _MATCH_RANK[b] else b


def _finish(
    spans: list[ResolvedSpan], schema: LabelSchema
) -> tuple[tuple[ResolvedSpan, ...], tuple[ResolvedRelation, ...]]:
    ordered = tuple(sorted(spans, key=lambda s: (s.start, s.end, s.label)))
    return ordered, relations_from_groups(ordered, schema)


def resolve_direct_chunk(
    output: str, chunk_text: str, label_schema: LabelSchema, fuzzy_threshold: float = FUZZY_THRESHOLD
) -> ResolvedChunk:
    """Spans of a direct_chunk answer (groups of label/text entities) in the chunk."""
    listings, dropped = _parse_direct(output)
    lookup = _label_lookup(label_schema)
    finder = _Finder(chunk_text, fuzzy_threshold)
    fuzzy: list[tuple[str, str, float]] = []
    # (label, start, end) -> [groups, match, score]: one entity listed in several groups is one span.
    found: dict[tuple[str, int, int], list[Any]] = {}
    for listing in listings:
        raw = f"{listing.label}: {listing.text}"
        label = lookup(listing.label)
        if label is None:
            dropped.append(Dropped(UNKNOWN_LABEL, raw))
            continue
        given = listing.text.strip()
        bare_start, bare_end = strip_edges(given, 0, len(given))
        if bare_start >= bare_end:
            dropped.append(Dropped(EMPTY, raw))
            continue
        hit = finder.find(listing.text)
        if hit is None:
            dropped.append(Dropped(NOT_FOUND, raw))
            continue
        start, end = strip_edges(chunk_text, hit.start, hit.end)
        if start >= end:
            dropped.append(Dropped(EMPTY, raw))
            continue
        if hit.match == FUZZY:
            fuzzy.append((listing.text, chunk_text[start:end], hit.score))
        entry = found.setdefault((label, start, end), [set(), hit.match, hit.score])
        entry[0].add(listing.group)
        entry[1], entry[2] = _better(entry[1], hit.match), max(entry[2], hit.score)
    spans = [
        ResolvedSpan(label, s, e, frozenset(g), m, sc, DIRECT_CHUNK, _confidence(DIRECT_CHUNK, m, sc))
        for (label, s, e), (g, m, sc) in found.items()
    ]
    ordered, relations = _finish(spans, label_schema)
    return ResolvedChunk(ordered, relations, tuple(dropped), tuple(fuzzy))


# ---------------------------------------------------------------------------------------------------
# iob_token


@dataclass(frozen=True)
class _TaggedToken:
    token: str
    prefix: str  # "O", "B" or "I"
    label: str
    groups: frozenset[int]
    raw: str


_TAG = re.compile(r"^(?:(?P<outside>[Oo])|(?P<prefix>[BbIi])[-_:](?P<label>\S+))$")
_IOB_LINE = re.compile(
    r"^(?P<token>\S.*?)\s+(?P<tag>[Oo]|[BbIi][-_:]\S+)(?:\s+(?P<groups>\d+(?:\s*[,;]\s*\d+)*|-))?\s*$"
)
_HEADER_WORDS = {"token", "tokens", "word", "words", "tag", "tags", "label", "labels", "group", "groups"}
_TABLE_RULE = re.compile(r"^[\s|:=+\-]{3,}$")


def _groups(value: Any) -> frozenset[int]:
    items = value if isinstance(value, list) else re.split(r"[,;\s]+", _as_text(value))
    return frozenset(i for item in items if (i := _parse_int(item)) is not None)


def _tagged(token: str, tag: str, groups: Any, raw: str) -> _TaggedToken | None:
    m = _TAG.match(tag.strip())
    if m is None:
        return None
    if m.group("outside"):
        return _TaggedToken(token, "O", "", frozenset(), raw)
    return _TaggedToken(token, m.group("prefix").upper(), m.group("label"), _groups(groups), raw)


def _iob_from_structure(items: list[Any]) -> tuple[list[_TaggedToken], list[Dropped]]:
    tagged: list[_TaggedToken] = []
    dropped: list[Dropped] = []
    for item in items:
        if isinstance(item, dict):
            token, tag = _as_text(_get(item, "token")), _as_text(_get(item, "tag"))
            groups = _get(item, "groups") if _has(item, "groups") else _get(item, "group")
        elif isinstance(item, list) and len(item) >= 2:
            token, tag, groups = _as_text(item[0]), _as_text(item[1]), item[2] if len(item) > 2 else None
        else:
            dropped.append(Dropped(UNPARSEABLE_LINE, _as_text(item)))
            continue
        line = _tagged(token, tag, groups, f"{token}\t{tag}")
        if line is None:
            dropped.append(Dropped(UNPARSEABLE_LINE, json.dumps(item, default=str)))
        else:
            tagged.append(line)
    return tagged, dropped


def _iob_from_lines(output: str) -> tuple[list[_TaggedToken], list[Dropped]]:
    blocks = _fenced_blocks(output)
    text = "\n".join(blocks) if blocks else output
    tagged: list[_TaggedToken] = []
    dropped: list[Dropped] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("|") and line.endswith("|") and len(line) > 1:  # a markdown table row
            line = "\t".join(cell.strip() for cell in line[1:-1].split("|"))
        if not line or line.startswith("```") or _TABLE_RULE.match(line):
            continue
        if all(word.casefold() in _HEADER_WORDS for word in line.split()):
            continue
        m = _IOB_LINE.match(line)
        parsed = m and _tagged(m.group("token"), m.group("tag"), m.group("groups"), raw.strip())
        if parsed:
            tagged.append(parsed)
        else:
            dropped.append(Dropped(UNPARSEABLE_LINE, raw.strip()))
    return tagged, dropped


def _parse_iob(output: str) -> tuple[list[_TaggedToken], list[Dropped]]:
    for value in _structures(output, "tokens"):
        if _has(value, "tokens"):
            return _iob_from_structure(_as_list(_get(value, "tokens")))
        if isinstance(value, list) and value and all(_has(i, "token") and _has(i, "tag") for i in value):
            return _iob_from_structure(value)
    tagged, dropped = _iob_from_lines(output)
    if not tagged:
        raise UnparseableOutput(f"no iob_token answer in the output: {output[:200]!r}")
    return tagged, dropped


@dataclass
class _OpenSpan:
    label: str
    first: int  # chunk token indices, inclusive
    last: int
    groups: set[int]
    match: str
    score: float
    pieces: list[str]


def _align(
    pieces: list[str], joined: str, texts: list[str], cursor: int, threshold: float
) -> tuple[int, int, str, float] | None:
    """Chunk tokens [first, last) an answer token stands for: the nearest exact/case-insensitive run
    within the look-ahead, else the best fuzzy window there (by ratio, else word by word a typo away)."""
    size = len(pieces)
    horizon = min(cursor + LOOK_AHEAD, len(texts))
    folded = [p.casefold() for p in pieces]
    for j in range(cursor, horizon):
        window = texts[j : j + size]
        if window == pieces:
            return j, j + size, EXACT, 100.0
        if [w.casefold() for w in window] == folded:
            return j, j + size, NORMALISED, 100.0
    needle = "".join(joined.split()).casefold()
    best: tuple[float, int, int, int] | None = None
    for j in range(cursor, horizon):
        for width in range(max(1, size - 1), size + 2):
            if j + width > len(texts):
                break
            window = texts[j : j + width]
            score = fuzz.ratio(needle, "".join(window).casefold())
            # A typo-only window has a ratio under the threshold, so any ratio match outranks it.
            if score < threshold and not (width == size and _same_words(pieces, window)):
                continue
            if best is None or (-score, j, abs(width - size)) < (-best[0], best[1], best[3]):
                best = (score, j, j + width, abs(width - size))
    if best is None:
        return None
    # Equal once the model's white space is ignored ("81mg" for "81 mg") is not a misspelling.
    match = NORMALISED if best[0] == 100 else FUZZY
    return best[1], best[2], match, best[0]


def resolve_iob_token(
    output: str, chunk_text: str, label_schema: LabelSchema, fuzzy_threshold: float = FUZZY_THRESHOLD
) -> ResolvedChunk:
    """Spans of an iob_token answer (token, tag, groups per line) aligned in order to the chunk's tokens."""
    tagged, dropped = _parse_iob(output)
    lookup = _label_lookup(label_schema)
    tokens = tokenize(chunk_text)
    texts = [chunk_text[t.start : t.end] for t in tokens]
    is_word = [text[0].isalnum() or text[0] == "_" for text in texts]
    spans: list[ResolvedSpan] = []
    fuzzy: list[tuple[str, str, float]] = []
    current: _OpenSpan | None = None

    def close() -> None:
        nonlocal current
        if current is None:
            return
        start, end = strip_edges(chunk_text, tokens[current.first].start, tokens[current.last].end)
        if start >= end:
            dropped.append(Dropped(EMPTY, " ".join(current.pieces)))
        else:
            confidence = _confidence(IOB_TOKEN, current.match, current.score)
            groups = frozenset(current.groups)
            spans.append(
                ResolvedSpan(
                    current.label, start, end, groups, current.match, current.score, IOB_TOKEN, confidence
                )
            )
        current = None

    cursor = 0
    for line in tagged:
        pieces = [line.token[t.start : t.end] for t in tokenize(line.token)]
        aligned = _align(pieces, line.token, texts, cursor, fuzzy_threshold) if pieces else None
        if aligned is not None:
            cursor = aligned[1]
        if line.prefix == "O":
            close()
            continue
        label = lookup(line.label)
        if label is None or aligned is None:
            close()
            reason = UNKNOWN_LABEL if label is None else (NOT_FOUND if pieces else EMPTY)
            dropped.append(Dropped(reason, line.raw))
            continue
        first, last, match, score = aligned[0], aligned[1] - 1, aligned[2], aligned[3]
        if match == FUZZY:
            fuzzy.append((line.token, chunk_text[tokens[first].start : tokens[last].end], score))
        # I- continues only across tokens the model skipped that are punctuation (white space has no token).
        continues = (
            line.prefix == "I"
            and current is not None
            and current.label == label
            and not any(is_word[current.last + 1 : first])
        )
        if continues:
            current.last = last
            current.groups |= line.groups
            current.match, current.score = _worse(current.match, match), min(current.score, score)
            current.pieces.append(line.token)
        else:
            close()
            current = _OpenSpan(label, first, last, set(line.groups), match, score, [line.token])
    close()
    ordered, relations = _finish(spans, label_schema)
    return ResolvedChunk(ordered, relations, tuple(dropped), tuple(fuzzy))


# ---------------------------------------------------------------------------------------------------
# Relations and ensemble


def relations_from_groups(
    spans: Sequence[ResolvedSpan], label_schema: LabelSchema
) -> tuple[ResolvedRelation, ...]:
    """Within each group, (a, b) is related by the first relation type with a as head and b as tail."""
    members: dict[int, list[int]] = {}
    for index, span in enumerate(spans):
        for group in span.groups:
            members.setdefault(group, []).append(index)
    relations: dict[tuple[str, int, int], None] = {}
    for group in sorted(members):
        for head in members[group]:
            for tail in members[group]:
                if head == tail:
                    continue
                relation_type = next(
                    (
                        r.name
                        for r in label_schema.relation_types
                        if spans[head].label in r.head_types and spans[tail].label in r.tail_types
                    ),
                    None,
                )
                if relation_type is not None:
                    relations.setdefault((relation_type, head, tail), None)
    return tuple(ResolvedRelation(t, h, tl) for t, h, tl in relations)


def anchor_labels(label_schema: LabelSchema) -> frozenset[str]:
    """Labels that are a tail of some relation type and a head of none (Drug in the medication schema)."""
    tails = {name for r in label_schema.relation_types for name in r.tail_types}
    heads = {name for r in label_schema.relation_types for name in r.head_types}
    return frozenset(tails - heads)


def _pseudo_groups(chunk: ResolvedChunk) -> list[list[int]]:
    """Span indices per group; a span in no group is a group of its own."""
    members: dict[int, list[int]] = {}
    alone: list[list[int]] = []
    for index, span in enumerate(chunk.spans):
        if not span.groups:
            alone.append([index])
        for group in span.groups:
            members.setdefault(group, []).append(index)
    return [members[g] for g in sorted(members)] + alone


def _overlap(a: ResolvedSpan, b: ResolvedSpan) -> bool:
    return a.start < b.end and b.start < a.end


def _aligned(first: list[ResolvedSpan], second: list[ResolvedSpan], anchors: frozenset[str]) -> bool:
    first_anchors = [s for s in first if s.label in anchors]
    second_anchors = [s for s in second if s.label in anchors]
    if first_anchors and second_anchors:
        return any(_overlap(a, b) for a in first_anchors for b in second_anchors)
    if first_anchors or second_anchors:
        return False
    # Groups without an anchor (no relation types, or a lone Reason) align by a same-label overlap.
    return any(a.label == b.label and _overlap(a, b) for a in first for b in second)


def ensemble(iob: ResolvedChunk, direct: ResolvedChunk, label_schema: LabelSchema) -> ResolvedChunk:
    """Both schemas' spans, recall first: aligned groups merge per label (overlap: union; else iob's)."""
    anchors = anchor_labels(label_schema)
    first_groups = [[iob.spans[i] for i in g] for g in _pseudo_groups(iob)]
    second_groups = [[direct.spans[i] for i in g] for g in _pseudo_groups(direct)]
    pairs: list[tuple[list[ResolvedSpan], list[ResolvedSpan]]] = []
    unmatched_second = list(range(len(second_groups)))
    for first in first_groups:
        partner = next((j for j in unmatched_second if _aligned(first, second_groups[j], anchors)), None)
        if partner is None:
            pairs.append((first, []))
        else:
            unmatched_second.remove(partner)
            pairs.append((first, second_groups[partner]))
    pairs += [([], second_groups[j]) for j in unmatched_second]

    # (label, start, end) -> [groups, sources, match, score]
    merged: dict[tuple[str, int, int], list[Any]] = {}

    def keep(
        group: int, label: str, start: int, end: int, sources: set[str], match: str, score: float
    ) -> None:
        entry = merged.setdefault((label, start, end), [set(), set(), match, score])
        entry[0].add(group)
        entry[1] |= sources
        entry[2], entry[3] = _better(entry[2], match), max(entry[3], score)

    for group, (first, second) in enumerate(pairs, start=1):
        for label in dict.fromkeys(s.label for s in first + second):
            ours = [s for s in first if s.label == label]
            theirs = [s for s in second if s.label == label]
            for span in ours:
                overlapping = [t for t in theirs if _overlap(span, t)]
                start = min([span.start, *(t.start for t in overlapping)])
                end = max([span.end, *(t.end for t in overlapping)])
                sources = {span.source, *(t.source for t in overlapping)}
                match, score = span.match, span.score
                for t in overlapping:
                    match, score = _better(match, t.match), max(score, t.score)
                keep(group, label, start, end, sources, match, score)
            if not ours:  # only the second schema has this field: keep it
                for span in theirs:
                    keep(group, label, span.start, span.end, {span.source}, span.match, span.score)

    spans = []
    for (label, start, end), (groups, sources, match, score) in merged.items():
        source = BOTH if len(sources) > 1 or BOTH in sources else next(iter(sources))
        spans.append(
            ResolvedSpan(
                label, start, end, frozenset(groups), match, score, source, _confidence(source, match, score)
            )
        )
    ordered, relations = _finish(spans, label_schema)
    return ResolvedChunk(
        ordered,
        relations,
        iob.dropped + direct.dropped,
        iob.fuzzy + direct.fuzzy,
        parsed=iob.parsed or direct.parsed,
    )
