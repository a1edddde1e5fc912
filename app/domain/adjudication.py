"""Adjudication: every physician's spans of a note side by side, what they agree on, and gold's votes.

Spans of all physicians are grouped into *candidates*: maximal runs of spans whose extents (first
start to last end) overlap; spans whose extents do not overlap never compete for the same gold
span. Within a candidate, a *version* is one exact (label, fragments) and the physicians who marked
exactly it. A candidate is *agreed* when every physician who submitted the note marked it, once, the
same way: those are proposed for gold. Everything else is a disagreement the adjudicator settles: by
picking a version, editing, or keeping it as genuinely ambiguous with its label distribution.

The physicians' sets are never changed here or anywhere by adjudication; gold is a set of its own.
"""

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

Fragments = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Mark:
    """One physician's span."""

    annotator: str
    uid: str
    label: str
    fragments: Fragments

    @property
    def start(self) -> int:
        return min(start for start, _ in self.fragments)

    @property
    def end(self) -> int:
        return max(end for _, end in self.fragments)


@dataclass(frozen=True)
class Version:
    """One way of marking a stretch of text, and who marked it that way."""

    label: str
    fragments: Fragments
    annotators: tuple[str, ...]


@dataclass(frozen=True)
class Candidate:
    """Overlapping spans of the physicians: the versions, most supported first."""

    start: int
    end: int
    versions: tuple[Version, ...]
    annotators: tuple[str, ...]  # every physician who submitted the note

    @property
    def key(self) -> str:
        """Stable within a note: candidates' extents never overlap, so they differ."""
        return f"{self.start}-{self.end}"

    @property
    def agreed(self) -> bool:
        if len(self.versions) != 1:
            return False
        marked = self.versions[0].annotators
        return len(marked) == len(set(marked)) and set(marked) == set(self.annotators)

    @property
    def missing(self) -> tuple[str, ...]:
        """Physicians who marked nothing here."""
        marked = {a for version in self.versions for a in version.annotators}
        return tuple(a for a in self.annotators if a not in marked)

    def label_distribution(self) -> dict[str, int]:
        """How many physicians gave each label here (a physician with two labels here counts for
        both), and "O" for each physician who marked nothing: the distribution an ambiguous gold span
        keeps."""
        votes: Counter = Counter()
        for annotator in self.annotators:
            labels = {v.label for v in self.versions if annotator in v.annotators}
            if not labels:
                votes["O"] += 1
            for label in labels:
                votes[label] += 1
        return dict(sorted(votes.items(), key=lambda item: (-item[1], item[0])))


def candidates(marks: Mapping[str, Sequence[Mark]]) -> list[Candidate]:
    """The note's candidates in text order; ``marks`` holds every physician who submitted the note
    (one with no spans submitted an empty set)."""
    annotators = tuple(sorted(marks))
    ordered = sorted((m for spans in marks.values() for m in spans), key=lambda m: (m.start, m.end))
    runs: list[list[Mark]] = []
    reach = -1
    for mark in ordered:
        if runs and mark.start < reach:
            runs[-1].append(mark)
            reach = max(reach, mark.end)
        else:
            runs.append([mark])
            reach = mark.end
    result = []
    for run in runs:
        by_version: dict[tuple[str, Fragments], list[str]] = {}
        for mark in run:
            by_version.setdefault((mark.label, tuple(sorted(mark.fragments))), []).append(mark.annotator)
        versions = sorted(
            (Version(label, fragments, tuple(sorted(who))) for (label, fragments), who in by_version.items()),
            key=lambda v: (-len(set(v.annotators)), v.fragments, v.label),
        )
        result.append(
            Candidate(min(m.start for m in run), max(m.end for m in run), tuple(versions), annotators)
        )
    return result


def proposed_gold(found: Iterable[Candidate]) -> list[Version]:
    """What every physician agrees on: proposed for gold as it is."""
    return [candidate.versions[0] for candidate in found if candidate.agreed]


def agreement_share(found: Sequence[Candidate]) -> float | None:
    """The share of candidates everyone agrees on (None for a note nobody marked): the queue's order."""
    return sum(c.agreed for c in found) / len(found) if found else None


def gold_votes(
    gold: Sequence[tuple[str, str, Fragments]], marks: Mapping[str, Sequence[Mark]]
) -> dict[str, dict[str, str | None]]:
    """For each gold span (uid, label, fragments): each physician's label on a span with exactly its
    fragments, else the label of their span overlapping it most, else None (they marked nothing there).
    What an export gives downstream to model label distributions."""
    votes: dict[str, dict[str, str | None]] = {}
    for uid, _, fragments in gold:
        cells = set()
        for start, end in fragments:
            cells.update(range(start, end))
        wanted = tuple(sorted(fragments))
        row: dict[str, str | None] = {}
        for annotator in sorted(marks):
            exact = [m.label for m in marks[annotator] if tuple(sorted(m.fragments)) == wanted]
            if exact:
                row[annotator] = exact[0]
                continue
            best, best_overlap = None, 0
            for mark in marks[annotator]:
                overlap = sum(len(cells.intersection(range(s, e))) for s, e in mark.fragments)
                if overlap > best_overlap:
                    best, best_overlap = mark.label, overlap
            row[annotator] = best
        votes[uid] = row
    return votes
