"""Cutting a note into the chunks an LLM pre-annotates, at line breaks and sentence ends (Goel et al. 2023).

Offsets are code points of the note exactly as stored, so CRLF, tabs, a BOM and emoji keep their places.
"""

import re
from dataclasses import dataclass

# The chunk sizes of the published method (best on its development set), per prompt schema.
DEFAULT_CHUNK_SIZE: dict[str, int] = {"iob_token": 250, "direct_chunk": 180}

# White space for chunking is str.isspace() plus U+FEFF: a leading BOM (or a stray zero-width no-break
# space) is invisible and never part of a mention, so it must not start a chunk sent to the model.
_NOT_BLANK = re.compile(r"[^\s\ufeff]+")
_LINE_BREAK = re.compile(r"[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
# A sentence ends at ., ! or ? (possibly closing a bracket or quote) followed by white space.
_SENTENCE_END = re.compile(r"[.!?]+[)\]\"'\u201d\u2019\u00bb]*(?=\s)")
# Words that end with a period without ending the sentence: titles, and the clinic's own shorthand.
_ABBREVIATIONS = frozenset(
    {"dr", "mr", "mrs", "ms", "prof", "jr", "sr", "st", "pt", "pts", "vs", "approx", "appt", "fig", "hosp"}
)
# Dotted abbreviations such as e.g, i.e, q.d, p.o, b.i.d, a.m (the final period is the terminator). A
# single capital ("vitamin D. Then") is left to end the sentence: it does more often than it is an initial.
_DOTTED = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")


@dataclass(frozen=True)
class Chunk:
    """A piece of the note sent to the model on its own: note[start:end] == text."""

    start: int
    end: int
    text: str


def _is_blank(character: str) -> bool:
    return character.isspace() or character == "\ufeff"


def _ends_sentence(text: str, match: re.Match[str]) -> bool:
    """Whether a ., ! or ? run really ends a sentence, by simple rules against abbreviations and lists."""
    if match.group().rstrip(")]\"'\u201d\u2019\u00bb") != ".":
        return True  # "!", "?", "?!" and "..." end a sentence
    after = match.end()
    while after < len(text) and _is_blank(text[after]):
        after += 1
    # "81 mg. daily": a lower-case word after the period continues the sentence.
    if after < len(text) and text[after].islower():
        return False
    word_start = match.start()
    while word_start > 0 and not _is_blank(text[word_start - 1]):
        word_start -= 1
    word = text[word_start : match.start()].lstrip("([\"'")
    if word.lower() in _ABBREVIATIONS or _DOTTED.fullmatch(word):
        return False
    if word.isdigit():
        # "1. Aspirin" at the start of a line numbers a list item; "took 2. Then" ends a sentence.
        line_start = word_start
        while (
            line_start > 0 and _is_blank(text[line_start - 1]) and not _LINE_BREAK.match(text[line_start - 1])
        ):
            line_start -= 1
        if line_start == 0 or _LINE_BREAK.match(text[line_start - 1]):
            return False
    return True


def _strip(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and _is_blank(text[start]):
        start += 1
    while end > start and _is_blank(text[end - 1]):
        end -= 1
    return (start, end) if start < end else None


def _pieces(text: str) -> list[tuple[int, int]]:
    """The lines and sentences of the note, stripped, in order."""
    cuts = {0, len(text)}
    cuts.update(match.start() for match in _LINE_BREAK.finditer(text))
    cuts.update(match.end() for match in _SENTENCE_END.finditer(text) if _ends_sentence(text, match))
    ordered = sorted(cuts)
    pieces = [_strip(text, a, b) for a, b in zip(ordered, ordered[1:], strict=False)]
    return [piece for piece in pieces if piece is not None]


def chunk_note(text: str, max_chars: int) -> list[Chunk]:
    """The note cut into stripped chunks of at most max_chars, at line breaks and sentence ends, in order."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    units: list[tuple[int, int]] = []
    for start, end in _pieces(text):
        if end - start <= max_chars:
            units.append((start, end))
        else:
            # A sentence too long for one chunk is cut between words; a word is never cut.
            units.extend((m.start() + start, m.end() + start) for m in _NOT_BLANK.finditer(text[start:end]))
    chunks: list[tuple[int, int]] = []
    for start, end in units:
        if chunks and end - chunks[-1][0] <= max_chars:
            chunks[-1] = (chunks[-1][0], end)
        else:
            chunks.append((start, end))
    return [Chunk(start, end, text[start:end]) for start, end in chunks]
