"""The study report (metrics.md) in two steps: what it needs of each note, then the figures pooled.

Every figure of the report pools per-note quantities: a set's active time is a function of its visible
gaps and the idle threshold, evaluation and edit-mix counts add up, and agreement pools per-document
sums (app.domain.agreement). So ``note_statistics`` reads one note's sets once, when they change, into a
plain-JSON record that can be stored; ``pooled_report`` turns any selection of those records into the
figures, for any idle threshold, without reading a span or an event again. On a study of 10,000 notes
this is the difference between minutes and well under a second per dashboard load.

Choices made here once:
- An annotator with two submitted sets on one note (an import and a study, say) counts once in
  agreement: the later set (higher id) is theirs.
- Agreement uses independent work only: a refine_human set starts from another physician's set.
"""

import base64
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.domain.active_time import TimeEvent
from app.domain.agreement import AttributeRule, document_agreement, pooled_agreement, ranked_by_disagreement
from app.domain.edit_mix import OUTCOMES, edit_event_counts, edit_mix_by_label
from app.domain.evaluation import Evaluation, RelationData, evaluation_counts, evaluations_from_counts
from app.domain.events import AnnotatorEvents
from app.domain.spans import SpanData
from app.domain.study_time import (
    PUBLISHED_REFERENCE,
    condition_summary,
    minutes_from_gaps,
    pipeline_savings,
    submission_gaps,
)
from app.domain.vocabulary import Condition

# Bumped whenever the record's content or meaning changes, so stored records of an older layout are
# recomputed instead of being misread.
# 4: events, relations with an event argument and attributes on events (issue 18)
LAYOUT = 5  # 5: the edit mix counts pre-labels still pending at the submit as undecided (issue 19)


@dataclass(frozen=True)
class SubmittedWork:
    """One submitted annotator set of a note, with everything the report needs of it."""

    set_id: int
    annotator: str
    condition: str | None
    spans: Sequence[SpanData]  # with their status, so that a pre-label left pending counts as undecided
    relations: Sequence[RelationData] = ()
    time_events: Sequence[TimeEvent] = ()  # the events stamped with the client's clock
    submit_seq: int | None = None  # log position of its (last) submit event
    edit_kinds: Mapping[str, int] = field(default_factory=dict)  # its edit events, counted by kind
    base_spans: Sequence[SpanData] | None = None  # the set it started from, if any
    answers: Mapping[str, Any] = field(default_factory=dict)  # its answers to the note's questions
    events: AnnotatorEvents | None = None  # its brat events (kept verbatim), resolved for agreement


@dataclass(frozen=True)
class NoteWork:
    """A note, its submitted sets (in set order) and its gold spans, if it has a gold set."""

    document: str
    text: str
    submitted: Sequence[SubmittedWork]
    gold: Sequence[SpanData] | None = None


def _packed(gaps: list[list[float]] | None) -> list[str] | None:
    # Per page session, its sorted gaps as little-endian float64 in base64: exact, and read back far
    # faster than JSON numbers (a study's records hold about a million of them).
    if gaps is None:
        return None
    return [base64.b64encode(np.asarray(session, dtype="<f8").tobytes()).decode("ascii") for session in gaps]


def _unpacked(packed: list[str]) -> list[list[float]]:
    return [np.frombuffer(base64.b64decode(session), dtype="<f8").tolist() for session in packed]


def note_statistics(
    note: NoteWork,
    labels: Sequence[str],
    *,
    attributes: Mapping[str, AttributeRule] | None = None,
    questions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One note's record for pooled_report: plain JSON, safe to store and to read back.

    ``attributes`` (name -> AttributeRule) and ``questions`` (key -> kind) are the schema's, for
    attribute and answer agreement."""
    sets = []
    independent: dict[str, SubmittedWork] = {}
    for work in note.submitted:
        refined_llm = work.condition == Condition.refine_llm.value and work.base_spans is not None
        sets.append(
            {
                "set_id": work.set_id,
                "annotator": work.annotator,
                "condition": work.condition,
                "gaps": _packed(submission_gaps(list(work.time_events), work.submit_seq))
                if work.time_events
                else None,
                "edit_kinds": dict(work.edit_kinds),
                "edit_mix": None
                if work.base_spans is None
                else {
                    label: list(mix.values())  # counts in OUTCOMES order
                    for label, mix in edit_mix_by_label(work.base_spans, work.spans).items()
                },
                "against_gold": None
                if note.gold is None
                else evaluation_counts(note.gold, work.spans, note.text),
                # The pre-labels this set refined, against the physician's final and against gold.
                "pre_against_final": evaluation_counts(work.spans, work.base_spans, note.text)
                if refined_llm
                else None,
                "pre_against_gold": evaluation_counts(note.gold, work.base_spans, note.text)
                if refined_llm and note.gold is not None
                else None,
            }
        )
        if work.condition != Condition.refine_human.value:
            kept = independent.get(work.annotator)
            if kept is None or kept.set_id < work.set_id:
                independent[work.annotator] = work
    agreement = document_agreement(
        note.document,
        {annotator: work.spans for annotator, work in independent.items()},
        {annotator: work.relations for annotator, work in independent.items()},
        note.text,
        labels,
        attributes=attributes,
        answers={annotator: work.answers for annotator, work in independent.items()},
        questions=questions,
        events={annotator: work.events for annotator, work in independent.items() if work.events is not None},
    )
    return {"layout": LAYOUT, "sets": sets, "agreement": agreement}


def evaluation_json(evaluation: Evaluation) -> dict[str, Any]:
    def counts(c) -> dict[str, Any]:
        return {"tp": c.tp, "fp": c.fp, "fn": c.fn, "precision": c.precision, "recall": c.recall,
                "f1": c.f1, "f2": c.f2}  # fmt: skip

    return {
        "micro": counts(evaluation.micro),
        "macro": {
            "precision": evaluation.macro_precision,
            "recall": evaluation.macro_recall,
            "f1": evaluation.macro_f1,
            "f2": evaluation.macro_f2,
        },
        "per_label": {label: counts(c) for label, c in evaluation.per_label.items()},
    }


def _quality(shares: list[Mapping], labels: Sequence[str]) -> dict[str, Any]:
    """An evaluation pooled over sets: how many, and the strict, lenient and token figures."""
    figures = None
    if shares:
        figures = {mode: evaluation_json(e) for mode, e in evaluations_from_counts(shares, labels).items()}
    return {"documents": len(shares), "figures": figures}


def _mix(rows: list[list[int]]) -> dict[str, int]:
    totals = np.asarray(rows, dtype=np.int64).reshape(-1, len(OUTCOMES)).sum(axis=0)
    return dict(zip(OUTCOMES, totals.tolist(), strict=True))


def pooled_report(
    notes: Mapping[str, Mapping[str, Any]],
    labels: Sequence[str],
    *,
    idle_threshold_seconds: float,
    agreement_resamples: int = 1000,
    time_resamples: int = 2000,
    seed: int = 0,
    question_kinds: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Time, savings, pre-label and physician quality, edit mix and agreement from the notes' records
    (note_statistics), taken in the given order (the bootstrap's documents)."""
    per_condition: dict[str, dict[str, float]] = defaultdict(dict)
    per_document: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    pre_final: list[Mapping] = []
    pre_gold: list[Mapping] = []
    against_gold: dict[str, list[Mapping]] = defaultdict(list)
    # Edit mixes as rows of counts in OUTCOMES order, summed at the end.
    mix_by_condition: dict[str, list[list[int]]] = defaultdict(list)
    mix_by_annotator: dict[str, list[list[int]]] = defaultdict(list)
    mix_by_label: dict[str, list[list[int]]] = defaultdict(list)
    kinds_by_condition: dict[str, Counter] = defaultdict(Counter)
    annotators: set[str] = set()
    for document, note in notes.items():
        for entry in note["sets"]:
            condition, annotator = entry["condition"], entry["annotator"]
            annotators.add(annotator)
            if entry["gaps"] is not None and condition:
                minutes = minutes_from_gaps(_unpacked(entry["gaps"]), idle_threshold_seconds)
                per_condition[condition][f"{document}/{annotator}"] = minutes
                per_document[condition][document].append(minutes)
            kinds_by_condition[condition or "none"].update(entry["edit_kinds"])
            if entry["edit_mix"] is not None:
                by_label = entry["edit_mix"]
                for label, counts in by_label.items():
                    mix_by_label[label].append(counts)
                mix_by_condition[condition or "none"].extend(by_label.values())
                mix_by_annotator[annotator].extend(by_label.values())
            if entry["pre_against_final"] is not None:
                pre_final.append(entry["pre_against_final"])
                if entry["pre_against_gold"] is not None:
                    pre_gold.append(entry["pre_against_gold"])
            if entry["against_gold"] is not None:
                against_gold[annotator].append(entry["against_gold"])

    mean_per_document = {
        condition: {d: sum(values) / len(values) for d, values in by_document.items()}
        for condition, by_document in per_document.items()
    }
    time = {
        "idle_threshold_seconds": idle_threshold_seconds,
        # Each submitted set's minutes, so the distribution can be drawn and rechecked.
        "minutes": {c: sorted(values.values()) for c, values in per_condition.items()},
        "per_condition": {
            c.value: condition_summary(per_condition.get(c.value, {}), resamples=time_resamples, seed=seed)
            for c in Condition
        },
        "savings": pipeline_savings(
            mean_per_document.get("scratch", {}),
            mean_per_document.get("refine_human", {}),
            mean_per_document.get("refine_llm", {}),
            resamples=time_resamples,
            seed=seed,
        ),
        "published_reference": PUBLISHED_REFERENCE,
    }
    shares = {document: note["agreement"] for document, note in notes.items()}
    agreement = pooled_agreement(
        shares, labels, resamples=agreement_resamples, seed=seed, question_kinds=question_kinds
    )
    disagreement = ranked_by_disagreement(
        (document, share["strict_f1_mean"]) for document, share in shares.items() if share["pairs"]
    )
    return {
        "time": time,
        "pre_label_quality": {
            "against_final": _quality(pre_final, labels),
            "against_gold": _quality(pre_gold, labels),
        },
        "physicians_against_gold": {
            login: _quality(against_gold[login], labels)
            for login in sorted(annotators)
            if against_gold[login]
        },
        "edit_mix": {
            "by_condition": {k: _mix(v) for k, v in mix_by_condition.items()},
            "by_annotator": {k: _mix(v) for k, v in mix_by_annotator.items()},
            "by_label": {k: _mix(v) for k, v in mix_by_label.items()},
            "events_by_condition": {k: edit_event_counts(v) for k, v in kinds_by_condition.items()},
        },
        "agreement": agreement,
        "documents_by_disagreement": disagreement,
    }
