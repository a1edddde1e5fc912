"""Adjudication: every physician's spans of a note side by side, what they agree on, and gold's votes.

Spans of all physicians are grouped into *candidates*: maximal runs of spans whose extents (first
start to last end) overlap; spans whose extents do not overlap never compete for the same gold
span. Within a candidate, a *version* is one exact (label, fragments) and the physicians who marked
exactly it. A candidate is *agreed* when every physician who submitted the note marked exactly the
same spans there, each once (nested spans everyone marked agree too): those are proposed for gold.
Everything else is a disagreement the adjudicator settles: by picking a version, editing, or keeping
it as genuinely ambiguous with its label distribution.

The physicians' sets are never changed here or anywhere by adjudication; gold is a set of its own.
"""

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Fragments = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Mark:
    """One physician's span."""

    annotator: str
    uid: str
    label: str
    fragments: Fragments
    attributes: tuple[tuple[str, Any], ...] = ()
    concept: tuple[str, str, str] | None = None  # (system, code, preferred name)

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
    marks: tuple[Mark, ...] = field(default=(), compare=False, repr=False)

    @property
    def attributes(self) -> dict[str, Any]:
        """The attributes every physician of this version set the same way."""
        if not self.marks:
            return {}
        common = dict(self.marks[0].attributes)
        for mark in self.marks[1:]:
            theirs = dict(mark.attributes)
            common = {name: value for name, value in common.items() if theirs.get(name) == value}
        return common

    @property
    def attribute_disputes(self) -> tuple[str, ...]:
        """Attributes its physicians set differently (one unset counts as different)."""
        names = sorted({name for mark in self.marks for name, _ in mark.attributes})
        return tuple(n for n in names if len({dict(m.attributes).get(n) for m in self.marks}) > 1)

    @property
    def concept(self) -> tuple[str, str, str] | None:
        """The concept code, when all its physicians gave the same one."""
        codes = {m.concept for m in self.marks}
        return codes.pop() if len(codes) == 1 else None

    @property
    def concept_disputed(self) -> bool:
        return len({m.concept for m in self.marks}) > 1


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
        return all(
            len(v.annotators) == len(set(v.annotators)) and set(v.annotators) == set(self.annotators)
            for v in self.versions
        )

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
        by_version: dict[tuple[str, Fragments], list[Mark]] = {}
        for mark in run:
            by_version.setdefault((mark.label, tuple(sorted(mark.fragments))), []).append(mark)
        versions = sorted(
            (
                Version(label, fragments, tuple(sorted(m.annotator for m in who)), tuple(who))
                for (label, fragments), who in by_version.items()
            ),
            key=lambda v: (-len(set(v.annotators)), v.fragments, v.label),
        )
        result.append(
            Candidate(min(m.start for m in run), max(m.end for m in run), tuple(versions), annotators)
        )
    return result


def stretch_counts(marks: Mapping[str, Sequence[tuple[str, Fragments]]]) -> tuple[int, int]:
    """(candidates, disputed) of a note, as ``candidates`` would count them, without building them:
    the adjudication queue counts every note of a study. ``marks``: each physician's (label,
    fragments), fragments sorted."""
    everyone = len(marks)
    ordered = sorted(
        (fragments[0][0], max(end for _, end in fragments), annotator, label, fragments)
        for annotator, spans in marks.items()
        for label, fragments in spans
    )
    found = disputed = 0
    run: dict[str, list] = {}
    reach = -1

    def settle() -> None:
        nonlocal found, disputed
        found += 1
        keys = [sorted(v) for v in run.values()]
        agreed = (
            len(run) == everyone
            and all(len(set(k)) == len(k) for k in keys)
            and all(k == keys[0] for k in keys[1:])
        )
        disputed += not agreed

    for start, end, annotator, label, fragments in ordered:
        if run and start >= reach:
            settle()
            run, reach = {}, -1
        run.setdefault(annotator, []).append((label, fragments))
        reach = max(reach, end)
    if run:
        settle()
    return found, disputed


def proposed_gold(found: Iterable[Candidate]) -> list[Version]:
    """What every physician agrees on: proposed for gold as it is."""
    return [version for candidate in found if candidate.agreed for version in candidate.versions]


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


def _cells(fragments: Fragments) -> set[int]:
    cells: set[int] = set()
    for start, end in fragments:
        cells.update(range(start, end))
    return cells


def competes(label: str, fragments: Fragments, other_label: str, other_fragments: Fragments) -> bool:
    """Whether two spans are rival readings of the same text, so that keeping one drops the other:
    they overlap, and either cover the same text, cross each other, or have the same label (a
    boundary dispute). A span of another type nested inside (an anatomy inside a problem) does not."""
    mine, theirs = _cells(fragments), _cells(other_fragments)
    if not mine & theirs:
        return False
    if mine == theirs or label == other_label:
        return True
    return not (mine <= theirs or theirs <= mine)


def distribution_over(fragments: Fragments, marks: Mapping[str, Sequence[Mark]]) -> dict[str, int]:
    """How many physicians gave each label to spans overlapping ``fragments`` ("O" for each who
    marked nothing there); what a gold span marked ambiguous keeps."""
    cells = _cells(fragments)
    votes: Counter = Counter()
    for annotator in sorted(marks):
        labels = {m.label for m in marks[annotator] if cells & _cells(m.fragments)}
        votes.update(labels or {"O"})
    return dict(sorted(votes.items(), key=lambda item: (-item[1], item[0])))


def distribution_of_votes(votes: Mapping[str, str | None]) -> dict[str, int]:
    """A gold span's label distribution from its votes (None: "O", the physician marked nothing)."""
    counted = Counter(label or "O" for label in votes.values())
    return dict(sorted(counted.items(), key=lambda item: (-item[1], item[0])))


@dataclass(frozen=True)
class RelationMark:
    """One physician's relation, its spans named by what they are (label and fragments)."""

    annotator: str
    uid: str
    type: str
    head: tuple[str, Fragments]
    tail: tuple[str, Fragments]

    @property
    def key(self) -> tuple[str, tuple[str, Fragments], tuple[str, Fragments]]:
        return (self.type, self.head, self.tail)


def agreed_relations(
    relations: Mapping[str, Sequence[RelationMark]], annotators: Sequence[str]
) -> list[tuple[str, tuple[str, Fragments], tuple[str, Fragments]]]:
    """Relations every physician drew the same way (same type between the same spans), in text order."""
    who: dict[tuple, set[str]] = {}
    for annotator in annotators:
        for relation in relations.get(annotator, ()):
            who.setdefault(relation.key, set()).add(annotator)
    everyone = set(annotators)
    return sorted(
        (key for key, marked in who.items() if marked == everyone and everyone),
        key=lambda k: (min(s for s, _ in k[1][1]), k[0], k[1], k[2]),
    )


def agreed_answers(answers: Mapping[str, Mapping[str, Any]], annotators: Sequence[str], skip=()) -> dict:
    """The document answers every physician gave the same way (questions in ``skip``, such as
    evidence naming each physician's own spans, are left to the adjudicator)."""
    if not annotators:
        return {}
    first = answers.get(annotators[0], {})
    return {
        key: value
        for key, value in first.items()
        if key not in skip
        and value is not None
        and all(answers.get(other, {}).get(key) == value for other in annotators[1:])
    }
