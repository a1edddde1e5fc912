"""CoNLL IOB2 export: one token per line with its tag, a blank line between sentences.

Tokens are those of app.domain.tokens (``\\w+|[^\\w\\s]``, the token of metrics.md); a sentence is a
line of the note, so a blank line is written wherever the text has a line break between two tokens.
Each output line is ``token<TAB>tag``; tokens never hold white space, so the tab is unambiguous.

A token takes the span it overlaps, whole or in part. IOB2 cannot nest: where spans overlap, each token
takes the LONGEST span covering it (most characters over all its fragments); a tie goes to the label
that comes first in ``label_order``, then to the span that starts first, then to the one given first.
The other spans lose those tokens. A span's first token (in text order) that it keeps is tagged B-, its
other tokens I-, so the tokens of a discontinuous span's later fragments are I- even after an O.
"""

from collections.abc import Iterable, Sequence
from typing import Protocol

from app.domain.tokens import token_index_at, tokenize


class _Fragment(Protocol):
    start: int
    end: int


class LabelledSpan(Protocol):
    """Anything with a label and fragments: SpanData, ImportedSpan, BratEntity..."""

    @property
    def label(self) -> str: ...

    @property
    def fragments(self) -> Sequence[_Fragment]: ...


def write_conll(text: str, spans_given: Iterable[LabelledSpan], label_order: Sequence[str] = ()) -> str:
    """The note's tokens, one per line with its IOB2 tag; a blank line between lines of the note."""
    spans = list(spans_given)
    tokens = tokenize(text)
    rank = {label: i for i, label in enumerate(label_order)}

    def priority(index: int) -> tuple[int, int, int, int]:
        span = spans[index]
        length = sum(f.end - f.start for f in span.fragments)
        start = min((f.start for f in span.fragments), default=0)
        return (-length, rank.get(span.label, len(rank)), start, index)

    owner: list[int | None] = [None] * len(tokens)
    # IOB2 cannot nest: spans claim tokens longest first, so a token shared by overlapping spans goes to
    # the longest of them (ties: label_order, then start, then input order) and the others lose it.
    for index in sorted(range(len(spans)), key=priority):
        for fragment in spans[index].fragments:
            t = token_index_at(tokens, fragment.start)
            while t < len(tokens) and tokens[t].start < fragment.end:
                if owner[t] is None:
                    owner[t] = index
                t += 1

    tagged: set[int] = set()  # spans whose B- is written
    sentences: list[list[str]] = []
    previous_end: int | None = None
    for t, token in enumerate(tokens):
        gap = text[previous_end : token.start] if previous_end is not None else ""
        if previous_end is None or "\n" in gap or "\r" in gap:
            sentences.append([])
        previous_end = token.end
        index = owner[t]
        if index is None:
            tag = "O"
        else:
            tag = f"{'I' if index in tagged else 'B'}-{spans[index].label}"
            tagged.add(index)
        sentences[-1].append(f"{text[token.start : token.end]}\t{tag}")
    return "\n".join("".join(f"{line}\n" for line in sentence) for sentence in sentences)
