"""The lexicon pre-annotator: term lists per label, found in a note with an Aho-Corasick automaton.

It is a pre-annotation method like the LLM (llm-preannotation.md, "No LLM needed to start"). Rules:

- Offsets are code points of the original text. Case-insensitive matching folds each character on its
  own and keeps it unfolded when folding would change its length ("İ".lower() is two code points), so
  every offset in the folded text is the same offset in the original.
- ``whole_word``: a match must have, on each side, a character outside \\w or the edge of the text.
- Among overlapping matches the leftmost wins, and among those starting there the longest
  ("metoprolol succinate" over "metoprolol"); the rest are dropped.
- A term listed under several labels yields one match per label, in the order the lexicon lists them.
"""

import csv
import io
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from functools import lru_cache

import ahocorasick

_WORD_CHARACTER = re.compile(r"\w")


class LexiconError(ValueError):
    """A lexicon file that cannot be used; ``problems`` lists every problem, each naming source and line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in the lexicon:\n" + "\n".join(problems))


@dataclass(frozen=True)
class LexiconTerm:
    """One term of the lexicon and the label it pre-annotates."""

    label: str
    term: str


def parse_lexicon_csv(content: str, source: str, known_labels: Collection[str]) -> list[LexiconTerm]:
    """The terms of a CSV lexicon with columns label,term; LexiconError lists every problem."""
    # Spreadsheet programs save UTF-8 with a byte order mark; it is not part of the first column's name.
    reader = csv.reader(io.StringIO(content.removeprefix("\ufeff"), newline=""))
    header = next(reader, None)
    columns = [name.strip().lower() for name in header or []]
    missing = [name for name in ("label", "term") if name not in columns]
    if missing:
        raise LexiconError([f"{source}, line 1: the header has no column {name!r}" for name in missing])
    label_column, term_column = columns.index("label"), columns.index("term")

    problems: list[str] = []
    terms: dict[LexiconTerm, None] = {}  # ordered and without repeats
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue  # blank lines separate groups of terms in hand-written files
        # reader.line_num is the line the record ends on, which is where a multi-line quoted term ends.
        where = f"{source}, line {reader.line_num}"
        label = row[label_column].strip() if label_column < len(row) else ""
        term = row[term_column].strip() if term_column < len(row) else ""
        if not label:
            problems.append(f"{where}, field 'label': the label is empty")
        elif label not in known_labels:
            problems.append(f"{where}, field 'label': {label!r} is not a label of the schema")
        if not term:
            problems.append(f"{where}, field 'term': the term is empty")
        if label and term:
            terms[LexiconTerm(label, term)] = None
    if problems:
        raise LexiconError(problems)
    return list(terms)


@lru_cache(maxsize=4096)
def _fold_character(character: str) -> str:
    # casefold() is the Unicode caseless match ("ſ" -> "s", "ς" -> "σ"), but it may lengthen a character
    # ("ß" -> "ss"); then lower(), and failing that the character itself, keeps the offsets aligned.
    for folded in (character.casefold(), character.lower()):
        if len(folded) == 1:
            return folded
    return character


def _fold(text: str) -> str:
    return "".join(map(_fold_character, text))


class Lexicon:
    """Terms per label, ready to pre-annotate notes."""

    def __init__(
        self, terms: Iterable[LexiconTerm], *, whole_word: bool = True, case_sensitive: bool = False
    ) -> None:
        self.terms = list(dict.fromkeys(terms))
        self.whole_word = whole_word
        self.case_sensitive = case_sensitive
        labels_by_key: dict[str, list[str]] = {}
        for entry in self.terms:
            labels = labels_by_key.setdefault(self._normalise(entry.term), [])
            if entry.label not in labels:
                labels.append(entry.label)
        self._automaton: ahocorasick.Automaton | None = None
        if labels_by_key:
            # An empty automaton cannot be built, so a lexicon without terms simply finds nothing.
            self._automaton = ahocorasick.Automaton()
            for key, labels in labels_by_key.items():
                self._automaton.add_word(key, (len(key), tuple(labels)))
            self._automaton.make_automaton()

    def _normalise(self, text: str) -> str:
        return text if self.case_sensitive else _fold(text)

    def _at_word_boundary(self, text: str, start: int, end: int) -> bool:
        before_ok = start == 0 or not _WORD_CHARACTER.match(text[start - 1])
        after_ok = end == len(text) or not _WORD_CHARACTER.match(text[end])
        return before_ok and after_ok

    def annotate(self, text: str) -> list[tuple[str, int, int]]:
        """(label, start, end) of each lexicon match in the text, in code points, leftmost-longest."""
        if self._automaton is None:
            return []
        candidates: list[tuple[int, int, tuple[str, ...]]] = []
        for last, (length, labels) in self._automaton.iter(self._normalise(text)):
            start, end = last - length + 1, last + 1
            if not self.whole_word or self._at_word_boundary(text, start, end):
                candidates.append((start, end, labels))
        # Leftmost first, longest first among those starting at the same place; a match that overlaps
        # one already kept is dropped.
        candidates.sort(key=lambda candidate: (candidate[0], -candidate[1]))
        found: list[tuple[str, int, int]] = []
        kept_until = 0
        for start, end, labels in candidates:
            if start >= kept_until:
                found.extend((label, start, end) for label in labels)
                kept_until = end
        return found
