"""Tokens of a note as metrics.md "Token level" defines them, and snapping a selection to whole tokens."""

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

# Exactly the pattern of metrics.md: a str pattern is Unicode-aware, so \w is str.isalnum() or "_" and
# \s is str.isspace(). Combining marks (U+0301), a BOM (U+FEFF) and zero-width spaces are neither, so
# each of them is a token of its own: the metric counts them that way, so snapping must too.
TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True, order=True)
class Token:
    """A half-open [start, end) code-point range of the text that TOKEN_PATTERN matched."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.end <= self.start:
            raise ValueError(f"token [{self.start}, {self.end}) must have 0 <= start < end")


def tokenize(text: str) -> list[Token]:
    """The tokens of the text, in order; offsets are code points, like every offset in the app."""
    return [Token(match.start(), match.end()) for match in TOKEN_PATTERN.finditer(text)]


def token_index_at(tokens: Sequence[Token], offset: int) -> int:
    """Index of the token containing `offset`, or else of the first token after it (len(tokens) if none)."""
    # Tokens are sorted and disjoint, so their ends are increasing: the first end beyond the offset wins.
    return bisect_right(tokens, offset, key=lambda token: token.end)


def snap_to_tokens(text: str, start: int, end: int) -> tuple[int, int] | None:
    """[start, end) widened to the whole tokens it touches, white space around dropped; None if no token."""
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if end < start:
        raise ValueError(f"end must be >= start ({start}), got {end}")
    if end > len(text):
        raise ValueError(f"end must be <= the text's length ({len(text)}), got {end}")
    if start == end:
        return None
    tokens = tokenize(text)
    # Every character that is not white space belongs to exactly one token, so a token is touched by a
    # selected non-space character exactly when it overlaps [start, end).
    first = token_index_at(tokens, start)
    if first == len(tokens) or tokens[first].start >= end:
        return None
    last = token_index_at(tokens, end - 1)
    if last == len(tokens) or tokens[last].start >= end:
        last -= 1
    return tokens[first].start, tokens[last].end
