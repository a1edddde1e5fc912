"""The counterbalanced study design: which physician annotates which document, in which condition, when.

Conditions are those of metrics.md "Time": ``scratch`` (no pre-labels), ``refine_llm`` (pre-labels from
a pre-annotation run) and ``refine_human`` (a second physician refines a first physician's submitted
scratch set, its base). A document's *human pipeline* is scratch by A then refine_human by B on A's set;
its *LLM pipeline* is refine_llm by one physician.

What :func:`design_study` guarantees (each is a property test in tests/domain/test_study_design.py):

1. No physician gets a document twice. Calibration documents are left out of the main study, even
   when they are also listed among ``documents``.
2. Every physician works in every chosen condition (share > 0; ``refine_human`` also chooses
   ``scratch``, its base step). The minimum: each chosen condition needs at least one main-study
   assignment per annotator, where a scratch or refine_llm document gives one assignment, a
   human-pipeline document one scratch and one refine_human assignment, and an overlap document
   ``overlap_annotators`` assignments in its condition. ``refine_human`` needs two annotators.
   Short of that, :class:`StudyDesignError` names the field to change.
3. Balance: per condition, any two physicians' numbers of main-study assignments differ by at most 1,
   and so do their totals of main-study assignments.
   Each queue interleaves its conditions: leaving out refine_human, in every prefix of p main
   assignments a condition with n_c of the queue's N assignments occurs within 1 of p·n_c/N times.
   refine_human assignments are spread evenly over the second half of the queue, the last at its end
   (they wait for the base to be submitted), and a physician's human-pipeline scratch bases come
   first among their scratch work.
4. refine_human: the base annotator is another physician, who has the same document in scratch.
5. Overlap documents are annotated independently by ``overlap_annotators`` distinct physicians in one
   condition, scratch or refine_llm (whichever are chosen; scratch when only refine_human is), split
   as evenly as possible with scratch taking the odd one.
6. Calibration documents come first in every queue (positions 0..k-1, in the order given), for every
   annotator, with ``calibration=True``, in ``calibration_condition``.
7. Deterministic for a seed and independent of the order in which documents and annotators are
   listed. Outside calibration and overlap, each condition gets its share of documents by the largest
   remainder: share·n rounded down, then one more document to the conditions with the largest
   remainders (ties in the order scratch, refine_llm, refine_human) until all n are used.

Documents are each used once in the main study: in one condition pipeline or in overlap.
"""

import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from app.domain.spreadsheet import csv_text

SCRATCH = "scratch"
REFINE_LLM = "refine_llm"
REFINE_HUMAN = "refine_human"
CONDITIONS = (SCRATCH, REFINE_LLM, REFINE_HUMAN)
# A whole-document condition that every annotator can do on the same document at the same time;
# refine_human cannot, because its base is one other annotator's submitted set.
INDEPENDENT_CONDITIONS = (SCRATCH, REFINE_LLM)
OVERLAP_ANNOTATORS = (2, 3)
SHARE_TOLERANCE = 1e-9
# refine_human work is placed in this later part of a queue, so that the base is likely submitted.
REFINE_HUMAN_FROM = 0.5
CSV_COLUMNS = ("document", "annotator", "condition", "position", "calibration", "base_annotator")
# How far the error message looks for the smallest study that works.
_MINIMUM_SEARCH_LIMIT = 100_000


class StudyDesignError(ValueError):
    """A study plan that cannot be designed; ``field`` names the StudyPlan field to change."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class StudyPlan:
    """What the lead chose: documents, physicians, condition shares, overlap and calibration."""

    documents: Sequence[str]
    annotators: Sequence[str]
    conditions: Mapping[str, float]
    overlap_documents: int = 0
    overlap_annotators: int = 2
    calibration_documents: Sequence[str] = ()
    calibration_condition: str = REFINE_LLM
    seed: int = 0

    def __post_init__(self) -> None:
        # Tuples and a plain dict, so that a frozen plan cannot change under the design.
        object.__setattr__(self, "documents", _ids(self.documents, "documents", "document"))
        object.__setattr__(self, "annotators", _ids(self.annotators, "annotators", "annotator"))
        object.__setattr__(
            self,
            "calibration_documents",
            _ids(self.calibration_documents, "calibration_documents", "calibration document"),
        )
        object.__setattr__(self, "conditions", _shares(self.conditions))
        _check_int(self.seed, "seed")
        _check_int(self.overlap_documents, "overlap_documents")
        _check_int(self.overlap_annotators, "overlap_annotators")
        if self.calibration_condition not in INDEPENDENT_CONDITIONS:
            raise StudyDesignError(
                "calibration_condition",
                f"must be one of {', '.join(INDEPENDENT_CONDITIONS)}, got {self.calibration_condition!r}",
            )
        if self.overlap_documents < 0:
            raise StudyDesignError("overlap_documents", f"must be >= 0, got {self.overlap_documents}")
        if self.overlap_annotators not in OVERLAP_ANNOTATORS:
            raise StudyDesignError("overlap_annotators", f"must be 2 or 3, got {self.overlap_annotators}")
        self._check_feasible()

    @property
    def main_documents(self) -> tuple[str, ...]:
        """The documents of the main study: those listed, less the calibration documents."""
        calibration = set(self.calibration_documents)
        return tuple(d for d in self.documents if d not in calibration)

    @property
    def chosen_conditions(self) -> tuple[str, ...]:
        """Conditions some physician works in: share > 0, plus scratch as refine_human's base step."""
        chosen = {c for c, share in self.conditions.items() if share > 0}
        if REFINE_HUMAN in chosen:
            chosen.add(SCRATCH)
        return tuple(c for c in CONDITIONS if c in chosen)

    @property
    def overlap_conditions(self) -> tuple[str, ...]:
        """Conditions overlap documents are annotated in, taking turns in this order."""
        chosen = tuple(c for c in INDEPENDENT_CONDITIONS if self.conditions.get(c, 0) > 0)
        return chosen or (SCRATCH,)

    def _check_feasible(self) -> None:
        """Raise StudyDesignError, naming the field, when no design can meet the guarantees."""
        annotators = len(self.annotators)
        if annotators == 0:
            raise StudyDesignError("annotators", "the study needs at least one annotator")
        if REFINE_HUMAN in self.chosen_conditions and annotators < 2:
            raise StudyDesignError(
                "annotators", "refine_human needs at least 2 annotators: the base is another physician's"
            )
        if self.overlap_documents > 0 and self.overlap_annotators > annotators:
            raise StudyDesignError(
                "overlap_annotators",
                f"{self.overlap_annotators} per overlap document, but the study has {annotators} annotators",
            )
        pool = len(self.main_documents)
        if self.overlap_documents > pool:
            raise StudyDesignError(
                "overlap_documents",
                f"{self.overlap_documents} overlap documents, but only {pool} documents outside calibration",
            )
        short = _short_conditions(self, pool - self.overlap_documents)
        if short:
            detail = ", ".join(f"{c} would have {n}" for c, n in short.items())
            needed = _smallest_working_pool(self)
            advice = (
                f"; the smallest study that works has {needed} documents outside calibration"
                if needed is not None
                else ""
            )
            raise StudyDesignError(
                "documents",
                f"each chosen condition needs one assignment per annotator ({annotators}), but "
                f"{detail}{advice} (got {pool})",
            )


@dataclass(frozen=True)
class PlannedAssignment:
    """One document in one physician's queue, in one condition, at one position."""

    document: str
    annotator: str
    condition: str
    position: int
    calibration: bool
    base_annotator: str | None  # refine_human: whose scratch set is the base; None otherwise


def documents_per_condition(conditions: Mapping[str, float], documents: int) -> dict[str, int]:
    """Documents per condition (canonical order) by the largest remainder: floor, then remainders."""
    total = sum(conditions.values())
    # Rounding the quota to the share tolerance keeps 0.29·100 = 28.999999999999996 at 29.
    quotas = {c: round(conditions[c] * documents / total, 9) for c in CONDITIONS if c in conditions}
    counts = {c: math.floor(q) for c, q in quotas.items()}
    left_over = documents - sum(counts.values())
    # Remainders at the same tolerance too: 4/6·2 − 1 and 1/6·2 are equal, not 3e-17 apart, so the tie
    # goes to the canonical order as exact fractions say.
    by_remainder = sorted(quotas, key=lambda c: (-round(quotas[c] - counts[c], 9), CONDITIONS.index(c)))
    for condition in by_remainder[:left_over]:
        counts[condition] += 1
    return counts


def _ids(values: Iterable[str], field_name: str, what: str) -> tuple[str, ...]:
    """The ids as a tuple, each a non-empty string listed once."""
    if isinstance(values, str):
        raise StudyDesignError(field_name, "must be a list of ids, not one string")
    ids = tuple(values)
    seen: set[str] = set()
    for value in ids:
        if not isinstance(value, str) or not value:
            raise StudyDesignError(field_name, f"each {what} must be a non-empty string, got {value!r}")
        if value in seen:
            raise StudyDesignError(field_name, f"{what} {value!r} is listed twice")
        seen.add(value)
    return ids


def _shares(conditions: Mapping[str, float]) -> dict[str, float]:
    """The condition shares, checked: known names, each in [0, 1], summing to 1."""
    if not isinstance(conditions, Mapping) or not conditions:
        raise StudyDesignError("conditions", "choose at least one condition with its share of documents")
    shares: dict[str, float] = {}
    for name, share in conditions.items():
        if name not in CONDITIONS:
            raise StudyDesignError(
                "conditions", f"unknown condition {name!r}; conditions are {', '.join(CONDITIONS)}"
            )
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise StudyDesignError("conditions", f"the share of {name} must be in [0, 1], got {share!r}")
        shares[name] = float(share)
    if abs(sum(shares.values()) - 1) > SHARE_TOLERANCE:
        raise StudyDesignError("conditions", f"shares must sum to 1, got {sum(shares.values())!r}")
    return shares


def _check_int(value: object, field_name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise StudyDesignError(field_name, f"must be a whole number, got {value!r}")


def _overlap_split(plan: StudyPlan) -> dict[str, int]:
    """Overlap documents per condition: taking turns, so the first condition takes the odd one."""
    conditions = plan.overlap_conditions
    return {c: len(range(i, plan.overlap_documents, len(conditions))) for i, c in enumerate(conditions)}


def _assignments_per_condition(plan: StudyPlan, rest: int) -> dict[str, int]:
    """Main-study assignments per condition when `rest` documents go to the condition pipelines."""
    pipelines = documents_per_condition(plan.conditions, rest)
    overlap = _overlap_split(plan)
    k = plan.overlap_annotators
    return {
        SCRATCH: pipelines.get(SCRATCH, 0) + pipelines.get(REFINE_HUMAN, 0) + k * overlap.get(SCRATCH, 0),
        REFINE_LLM: pipelines.get(REFINE_LLM, 0) + k * overlap.get(REFINE_LLM, 0),
        REFINE_HUMAN: pipelines.get(REFINE_HUMAN, 0),
    }


def _short_conditions(plan: StudyPlan, rest: int) -> dict[str, int]:
    """Chosen conditions with fewer main-study assignments than annotators, and their number."""
    counts = _assignments_per_condition(plan, rest)
    return {c: counts[c] for c in plan.chosen_conditions if counts[c] < len(plan.annotators)}


def _smallest_working_pool(plan: StudyPlan) -> int | None:
    """The fewest documents outside calibration that would work, overlap included; None if far off."""
    # Searched rather than solved: largest-remainder rounding is not monotone (the Alabama paradox).
    for rest in range(_MINIMUM_SEARCH_LIMIT):
        if not _short_conditions(plan, rest):
            return plan.overlap_documents + rest
    return None


class _Dealer:
    """Hands out annotators in rounds, each a fresh shuffle, so any two counts differ by at most one."""

    def __init__(self, annotators: Sequence[str], rng: random.Random, round_: list[str], next_: int):
        self._annotators = list(annotators)
        self._rng = rng
        self._round = round_
        self._next = next_

    def deal(self, size: int) -> list[str]:
        """`size` distinct annotators, the next ones in the rounds."""
        group: list[str] = []
        while len(group) < size:
            if self._next == len(self._round):
                order = list(self._annotators)
                self._rng.shuffle(order)
                # A group straddling two rounds must not meet an annotator twice: those already in it
                # go to the end of the new round, which stays a permutation and so keeps the balance.
                self._round = [a for a in order if a not in group] + [a for a in order if a in group]
                self._next = 0
            group.append(self._round[self._next])
            self._next += 1
        return group


@dataclass
class _Work:
    """One main-study assignment before its queue position is known."""

    document: str
    annotator: str
    condition: str
    base_annotator: str | None = None
    is_base: bool = False  # a human pipeline's scratch step, which someone else waits for


def _human_pipelines(
    documents: Sequence[str], annotators: Sequence[str], rng: random.Random
) -> tuple[list[_Work], _Dealer]:
    """Scratch and refine_human work of the human pipelines, and the scratch dealer to continue with."""
    work: list[_Work] = []
    n = len(annotators)
    round_: list[str] = []
    next_ = 0
    for block_start in range(0, len(documents), n):
        # In each block of n documents the bases are one round (a permutation) and the refiners the
        # same round turned by a random 1..n-1 places: never the base, each physician at most once.
        round_ = list(annotators)
        rng.shuffle(round_)
        turn = rng.randrange(1, n)
        block = documents[block_start : block_start + n]
        for i, document in enumerate(block):
            base, refiner = round_[i], round_[(i + turn) % n]
            work.append(_Work(document, base, SCRATCH, is_base=True))
            work.append(_Work(document, refiner, REFINE_HUMAN, base_annotator=base))
        next_ = len(block)
    # Later scratch work continues the last round, so the scratch counts stay within one.
    return work, _Dealer(annotators, rng, round_, next_)


def _even_out_workloads(work: list[_Work], annotators: Sequence[str]) -> None:
    """Move work from the busiest to the least busy physician until totals differ by at most one."""
    # Per condition the dealers already keep counts within one; the physicians who got the extra one
    # may coincide across conditions. Moving a c-assignment from H to L where H has one more c than L
    # swaps their c counts (keeping that balance) and lowers the spread of totals. Such a move exists
    # whenever totals differ by two or more: refine_llm work of H unmovable means L shares all of it
    # (overlap), and scratch and refine_human work both unmovable would need L to refine more of H's
    # bases than H of L's and the reverse at once.
    while True:
        load = Counter(w.annotator for w in work)
        counts = Counter((w.annotator, w.condition) for w in work)
        busiest = max(annotators, key=lambda a: (load[a], a))
        idlest = min(annotators, key=lambda a: (load[a], a))
        if load[busiest] - load[idlest] <= 1:
            return
        has_document = {w.document for w in work if w.annotator == idlest}
        movable = (
            w
            for w in work
            if w.annotator == busiest
            and counts[(busiest, w.condition)] > counts[(idlest, w.condition)]
            and w.document not in has_document
        )
        move = next(movable, None)
        if move is None:  # cannot happen (see above); the balance test would show it
            return
        move.annotator = idlest
        if move.is_base:
            for refinement in work:
                if refinement.document == move.document and refinement.condition == REFINE_HUMAN:
                    refinement.base_annotator = idlest


def _queue(items: list[_Work], rng: random.Random) -> list[_Work]:
    """One physician's main-study work in order: conditions interleaved, refine_human late."""
    keyed: list[tuple[float, int, int, _Work]] = []
    for condition in CONDITIONS:
        of_condition = [w for w in items if w.condition == condition]
        bases = [w for w in of_condition if w.is_base]
        others = [w for w in of_condition if not w.is_base]
        rng.shuffle(others)
        # Bases first: another physician's refine_human waits for them.
        ordered = bases + others
        offset = rng.random()
        for i, work in enumerate(ordered):
            # Item i of n sits at (i + offset)/n: evenly spaced with a random phase, which keeps every
            # prefix within one of its proportional share of each condition.
            key = (i + offset) / len(ordered)
            if condition == REFINE_HUMAN:
                # Evenly spaced over the later part of the queue, the last one at its very end.
                key = REFINE_HUMAN_FROM + (1 - REFINE_HUMAN_FROM) * (i + 1) / len(ordered)
            keyed.append((key, CONDITIONS.index(condition), i, work))
    keyed.sort(key=lambda entry: entry[:3])
    return [entry[3] for entry in keyed]


def design_study(plan: StudyPlan) -> list[PlannedAssignment]:
    """Every physician's queue for the plan, ordered by annotator and position."""
    rng = random.Random(plan.seed)
    annotators = sorted(plan.annotators)
    documents = sorted(plan.main_documents)
    rng.shuffle(documents)

    overlap = documents[: plan.overlap_documents]
    rest = documents[plan.overlap_documents :]
    counts = documents_per_condition(plan.conditions, len(rest))
    by_condition: dict[str, list[str]] = {}
    start = 0
    for condition in CONDITIONS:
        by_condition[condition] = rest[start : start + counts.get(condition, 0)]
        start += counts.get(condition, 0)

    # Human-pipeline bases are dealt first so that each block of them is exactly one scratch round.
    work, scratch_dealer = _human_pipelines(by_condition[REFINE_HUMAN], annotators, rng)
    dealers = {SCRATCH: scratch_dealer, REFINE_LLM: _Dealer(annotators, rng, [], 0)}
    overlap_conditions = plan.overlap_conditions
    for i, document in enumerate(overlap):
        condition = overlap_conditions[i % len(overlap_conditions)]
        for annotator in dealers[condition].deal(plan.overlap_annotators):
            work.append(_Work(document, annotator, condition))
    for condition in INDEPENDENT_CONDITIONS:
        for document in by_condition[condition]:
            (annotator,) = dealers[condition].deal(1)
            work.append(_Work(document, annotator, condition))

    _even_out_workloads(work, annotators)

    assignments: list[PlannedAssignment] = []
    for annotator in annotators:
        for position, document in enumerate(plan.calibration_documents):
            assignments.append(
                PlannedAssignment(document, annotator, plan.calibration_condition, position, True, None)
            )
        mine = [w for w in work if w.annotator == annotator]
        for position, item in enumerate(_queue(mine, rng), start=len(plan.calibration_documents)):
            assignments.append(
                PlannedAssignment(
                    item.document, annotator, item.condition, position, False, item.base_annotator
                )
            )
    return assignments


def summarise(assignments: Iterable[PlannedAssignment]) -> dict:
    """Counts per physician and condition (calibration apart), totals, and documents, for the preview."""
    columns = (*CONDITIONS, "calibration", "total")
    per_annotator: dict[str, dict[str, int]] = {}
    totals = dict.fromkeys(columns, 0)
    main_documents: set[str] = set()
    calibration_documents: set[str] = set()
    # Overlap documents: two or more physicians on one document in one condition, outside calibration.
    annotators_of: dict[tuple[str, str], set[str]] = {}
    for a in assignments:
        row = per_annotator.setdefault(a.annotator, dict.fromkeys(columns, 0))
        column = "calibration" if a.calibration else a.condition
        for counts in (row, totals):
            counts[column] += 1
            counts["total"] += 1
        if a.calibration:
            calibration_documents.add(a.document)
        else:
            main_documents.add(a.document)
            annotators_of.setdefault((a.document, a.condition), set()).add(a.annotator)
    overlap = {d for (d, _), who in annotators_of.items() if len(who) >= 2}
    return {
        "per_annotator": dict(sorted(per_annotator.items())),
        "totals": totals,
        "documents": {
            "main": len(main_documents),
            "overlap": len(overlap),
            "calibration": len(calibration_documents),
        },
    }


def assignments_csv(assignments: Iterable[PlannedAssignment]) -> str:
    """The assignments as CSV with a header row; calibration as true/false, no base as empty."""
    return csv_text(
        CSV_COLUMNS,
        (
            [
                a.document,
                a.annotator,
                a.condition,
                a.position,
                "true" if a.calibration else "false",
                a.base_annotator or "",
            ]
            for a in assignments
        ),
    )
