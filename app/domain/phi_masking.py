"""Masking a note's PHI hits with typed placeholders, and moving its annotations' offsets with them.

An admin reviewing a held batch may mask a flagged note instead of releasing or excluding it: each
hit becomes a placeholder naming its kind (``[DATE]``, ``[PHONE]``, ``[NAME]``), which the screen
itself leaves alone (app/domain/phi.py). Offsets are code points of the text. A boundary before a
hit stays, one after it moves by the difference in length, and one inside it goes to the edge of the
placeholder, so a span that covered part of an identifier covers the whole placeholder and no span
ever ends up empty or crossing into a placeholder.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.domain.phi import (
    AGE_90_PLUS,
    DATE,
    EMAIL,
    ID_NUMBER,
    IP_ADDRESS,
    PERSON_NAME,
    PHONE,
    SSN,
    STREET_ADDRESS,
    URL,
    ZIP_CODE,
    PhiHit,
)
from app.domain.spans import Fragment

PLACEHOLDERS = {
    DATE: "[DATE]",
    PHONE: "[PHONE]",
    EMAIL: "[EMAIL]",
    URL: "[URL]",
    IP_ADDRESS: "[IP]",
    SSN: "[SSN]",
    ID_NUMBER: "[ID]",
    AGE_90_PLUS: "[AGE]",
    ZIP_CODE: "[ZIP]",
    PERSON_NAME: "[NAME]",
    STREET_ADDRESS: "[ADDRESS]",
}


def placeholder(kind: str) -> str:
    """The placeholder of a hit's kind; a kind the table does not know yet is written ``[PHI]``."""
    return PLACEHOLDERS.get(kind, "[PHI]")


@dataclass(frozen=True)
class Replacement:
    """One stretch of the old text [start, end) replaced, now at [new_start, new_start + len)."""

    start: int
    end: int
    new_start: int
    text: str

    @property
    def new_end(self) -> int:
        return self.new_start + len(self.text)


@dataclass(frozen=True)
class MaskedText:
    """The masked text and the replacements that made it (in text order)."""

    text: str
    replacements: tuple[Replacement, ...]

    @property
    def placeholders(self) -> tuple[PhiHit, ...]:
        """Where each placeholder is in the new text, with the kind it stands for."""
        kinds = {v: k for k, v in PLACEHOLDERS.items()}
        return tuple(PhiHit(kinds.get(r.text, "phi"), r.new_start, r.new_end) for r in self.replacements)

    def position(self, offset: int, *, is_end: bool) -> int:
        """Where an old offset is in the new text; inside a replaced stretch, the placeholder's
        start for a span's start and its end for a span's end."""
        shift = 0
        for r in self.replacements:
            if offset <= r.start:
                break
            if offset < r.end:
                return r.new_end if is_end else r.new_start
            shift = r.new_end - r.end
        return offset + shift

    def fragments(self, fragments: Sequence[Fragment]) -> tuple[Fragment, ...]:
        """A span's fragments in the new text, in their order; fragments the masking made overlap
        (two parts of one identifier) become one."""
        moved: list[Fragment] = []
        for fragment in fragments:
            new = Fragment(
                self.position(fragment.start, is_end=False), self.position(fragment.end, is_end=True)
            )
            for index, kept in enumerate(moved):
                if new.start < kept.end and kept.start < new.end:
                    moved[index] = Fragment(min(kept.start, new.start), max(kept.end, new.end))
                    break
            else:
                moved.append(new)
        return tuple(moved)


def mask_hits(text: str, hits: Sequence[PhiHit]) -> MaskedText:
    """Replace every hit with its kind's placeholder. Overlapping hits are one stretch, written as
    the placeholder of its longest hit (the first in text order on a tie)."""
    stretches: list[tuple[int, int, PhiHit]] = []  # start, end, the hit that names it
    for hit in sorted(hits, key=lambda h: (h.start, -h.end)):
        if hit.end <= hit.start or hit.start < 0 or hit.end > len(text):
            raise ValueError(f"hit [{hit.start}, {hit.end}) is not inside the text")
        if stretches and hit.start < stretches[-1][1]:
            start, end, named = stretches[-1]
            longest = hit if hit.end - hit.start > named.end - named.start else named
            stretches[-1] = (start, max(end, hit.end), longest)
        else:
            stretches.append((hit.start, hit.end, hit))
    parts, replacements, position, shift = [], [], 0, 0
    for start, end, named in stretches:
        written = placeholder(named.kind)
        parts.append(text[position:start])
        parts.append(written)
        replacements.append(Replacement(start, end, start + shift, written))
        shift += len(written) - (end - start)
        position = end
    parts.append(text[position:])
    return MaskedText("".join(parts), tuple(replacements))


def mask_until_clean(
    text: str,
    hits: Sequence[PhiHit],
    screen: Callable[[str], Sequence[PhiHit]],
    rounds: int = 3,
) -> tuple[list[MaskedText], tuple[PhiHit, ...]]:
    """Mask the hits, screen the result again and mask what it still finds, a few rounds at most.

    Returns each round's masking (apply them in order to move offsets) and the hits still left
    (normally none: the screen skips placeholders).
    """
    steps: list[MaskedText] = []
    current, pending = text, tuple(hits)
    for _ in range(rounds):
        if not pending:
            break
        step = mask_hits(current, pending)
        steps.append(step)
        current = step.text
        pending = tuple(screen(current))
    return steps, pending


def moved_fragments(steps: Sequence[MaskedText], fragments: Sequence[Fragment]) -> tuple[Fragment, ...]:
    """A span's fragments through every round of masking."""
    result = tuple(fragments)
    for step in steps:
        result = step.fragments(result)
    return result


def moved_range(steps: Sequence[MaskedText], start: int, end: int) -> tuple[int, int]:
    """A stretch [start, end) of the text before the rounds, in the text after them."""
    for step in steps:
        start, end = step.position(start, is_end=False), step.position(end, is_end=True)
    return start, end


def placeholders_after(steps: Sequence[MaskedText]) -> tuple[PhiHit, ...]:
    """Every placeholder the rounds wrote, where it is in the final text, in text order."""
    found = [
        PhiHit(hit.kind, *moved_range(steps[index + 1 :], hit.start, hit.end))
        for index, step in enumerate(steps)
        for hit in step.placeholders
    ]
    return tuple(sorted(found, key=lambda h: (h.start, h.end)))
