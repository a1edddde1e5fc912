"""What happened to each pre-label, and how many edit events it took (metrics.md "edit mix").

A pre-label the physician neither accepted, changed nor rejected before submitting is still `pending`
in the submitted set: it is **undecided**, counted apart and never as kept, since nobody looked at it
closely enough to say. Kept means decided and unchanged (accepted, or its attribute or code set).
"""

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from app.domain.evaluation import match_spans
from app.domain.spans import SpanData
from app.domain.vocabulary import SpanStatus

Key = TypeVar("Key", bound=Hashable)

KEPT = "kept"
RESIZED = "resized"
RELABELLED = "relabelled"
RESIZED_AND_RELABELLED = "resized_and_relabelled"
DELETED = "deleted"
UNDECIDED = "undecided"
ADDED = "added"
# Report order: the fates of base spans the physician decided, the base spans left undecided, then the
# final spans that came from none.
OUTCOMES = (KEPT, RESIZED, RELABELLED, RESIZED_AND_RELABELLED, DELETED, UNDECIDED, ADDED)
PENDING = SpanStatus.pending.value

# Matching order: the closest relation first, so that a base span is never called resized when a final
# span kept it exactly, and a looser class only pairs what the tighter classes left. Undecided comes
# first and pairs only final spans still pending (an untouched copy of its pre-label, so a strict match):
# a physician's own identical span, added beside it, is then added rather than taking its place.
_MATCHING_STEPS: tuple[tuple[str, str, bool], ...] = (
    (UNDECIDED, "strict", False),  # final span still pending: same label, same fragment set
    (KEPT, "strict", False),  # same label, same fragment set
    (RELABELLED, "strict", True),  # same fragment set; labels differ because equal labels were kept
    (RESIZED, "lenient", False),  # same label, sharing a character, fragments differ
    (RESIZED_AND_RELABELLED, "lenient", True),  # sharing a character; label and fragments differ
)


@dataclass(frozen=True)
class SpanOutcome:
    """The fate of one base span (base_index set) or one added final span (base_index None)."""

    outcome: str
    base_index: int | None
    final_index: int | None


def classify_edits(base: Sequence[SpanData], final: Sequence[SpanData]) -> list[SpanOutcome]:
    """One outcome per base span (in base order), then one `added` per unmatched final span.

    The matching is one-to-one and built in steps: undecided, then kept, then relabelled, then resized,
    then resized and relabelled, each step pairing only spans the earlier steps left. Undecided pairs a
    base span with an equal final span whose ``status`` is still ``pending`` (a pre-label nobody decided
    before the submit); kept pairs it with an equal final span the physician decided. Within a lenient
    step the matching is a maximum matching with the largest total overlap
    (app.domain.evaluation.match_spans).
    """
    free_base = list(range(len(base)))
    free_final = list(range(len(final)))
    fate: dict[int, SpanOutcome] = {}
    for outcome, rule, type_agnostic in _MATCHING_STEPS:
        candidates = free_final
        if outcome == UNDECIDED:
            candidates = [j for j in free_final if final[j].status == PENDING]
        pairs = match_spans(
            [base[i] for i in free_base],
            [final[j] for j in candidates],
            rule=rule,
            type_agnostic=type_agnostic,
        )
        for local_base, local_final in pairs:
            fate[free_base[local_base]] = SpanOutcome(outcome, free_base[local_base], candidates[local_final])
        matched_base = {free_base[i] for i, _ in pairs}
        matched_final = {candidates[j] for _, j in pairs}
        free_base = [i for i in free_base if i not in matched_base]
        free_final = [j for j in free_final if j not in matched_final]
    outcomes = [fate.get(i, SpanOutcome(DELETED, i, None)) for i in range(len(base))]
    outcomes.extend(SpanOutcome(ADDED, None, j) for j in free_final)
    return outcomes


def _empty_mix() -> dict[str, int]:
    return dict.fromkeys(OUTCOMES, 0)


def edit_mix(base: Sequence[SpanData], final: Sequence[SpanData]) -> dict[str, int]:
    """Counts of kept, resized, relabelled, resized_and_relabelled, deleted, undecided and added spans of
    one set."""
    mix = _empty_mix()
    for span_outcome in classify_edits(base, final):
        mix[span_outcome.outcome] += 1
    return mix


def edit_mix_by_label(base: Sequence[SpanData], final: Sequence[SpanData]) -> dict[str, dict[str, int]]:
    """The edit mix per label: base spans by the base span's label, added spans by the final span's label."""
    by_label: dict[str, dict[str, int]] = {}
    for span_outcome in classify_edits(base, final):
        if span_outcome.base_index is not None:
            label = base[span_outcome.base_index].label
        else:
            label = final[span_outcome.final_index].label  # type: ignore[index]
        by_label.setdefault(label, _empty_mix())[span_outcome.outcome] += 1
    return dict(sorted(by_label.items()))


def sum_edit_mixes(mixes: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """The edit mixes of several sets added up."""
    total = _empty_mix()
    for mix in mixes:
        for outcome, count in mix.items():
            total[outcome] = total.get(outcome, 0) + count
    return total


def edit_mix_rows(entries: Iterable[tuple[Key, Mapping[str, int]]]) -> dict[Key, dict[str, int]]:
    """Edit mixes summed per key (document, condition, annotator or a tuple), keys in first-seen order."""
    rows: dict[Key, dict[str, int]] = {}
    for key, mix in entries:
        rows[key] = sum_edit_mixes([rows.get(key, _empty_mix()), mix])
    return rows


def sum_edit_mixes_by_label(mixes: Iterable[Mapping[str, Mapping[str, int]]]) -> dict[str, dict[str, int]]:
    """Per-label edit mixes of several sets added up, label by label."""
    total: dict[str, dict[str, int]] = {}
    for by_label in mixes:
        for label, mix in by_label.items():
            total[label] = sum_edit_mixes([total.get(label, _empty_mix()), mix])
    return dict(sorted(total.items()))


# Edit events (the action log), as opposed to the final state: undo and churn show up only here.
EDIT_EVENT_KINDS = (
    "add",
    "delete",
    "modify",
    "relabel",
    "accept",
    "reject",
    "accept_all",
    "reject_all",
    "undo",
    "redo",
    "relation_add",
    "relation_delete",
    "attribute_set",
    "concept_set",
)
EDIT_EVENT_GROUPS: dict[str, tuple[str, ...]] = {
    "additions": ("add",),
    "deletions": ("delete",),
    "modifications": ("modify", "relabel"),
    # accept_all and reject_all are one decision each, even though each settles many pre-labels.
    "decisions": ("accept", "reject", "accept_all", "reject_all"),
    "churn": ("undo", "redo"),
}


def edit_event_counts(kinds: Iterable[str]) -> dict[str, int]:
    """Edit events counted by kind, plus additions, deletions, modifications, decisions and churn."""
    counted = Counter(kinds)
    # Every edit kind is listed, with 0 when absent; other kinds given (open, activity...) are kept too.
    counts = {kind: counted.get(kind, 0) for kind in EDIT_EVENT_KINDS}
    counts.update({kind: n for kind, n in counted.items() if kind not in counts})
    for group, members in EDIT_EVENT_GROUPS.items():
        counts[group] = sum(counted.get(kind, 0) for kind in members)
    return counts
