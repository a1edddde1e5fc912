"""The study's figures, read from the stored sets and events and computed by app/domain (metrics.md).

One function, ``project_metrics``, makes the versioned report that the dashboard, the JSON API and
`clinann metrics --json` all give, so the three always agree. The layout is documented in the
README (``METRICS_SCHEMA``); a change to it gets a new version.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ARRAY, Integer, any_, bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import (
    AnnotationSet,
    Assignment,
    Document,
    EditEvent,
    PreAnnotationRun,
    Project,
    Relation,
    Span,
    SpanFragment,
    User,
)
from app.domain.active_time import TimeEvent
from app.domain.agreement import agreement_report, documents_by_disagreement
from app.domain.edit_mix import edit_event_counts, edit_mix, edit_mix_by_label, sum_edit_mixes
from app.domain.evaluation import Evaluation, RelationData, evaluate_all
from app.domain.label_schema import parse_label_schema, parse_study_settings
from app.domain.spans import Fragment, SpanData
from app.domain.study_time import PUBLISHED_REFERENCE, condition_summary, document_minutes, pipeline_savings
from app.domain.vocabulary import Condition, EditKind, SetOrigin

METRICS_SCHEMA = "clinann.metrics/1"


def _among(column, ids):
    """``column = ANY(:ids)`` with the ids as one array parameter: a large study has tens of thousands
    of sets, more than the 65,535 parameters PostgreSQL allows in one statement."""
    return column == any_(bindparam(None, list(ids), type_=ARRAY(Integer), unique=True))


TIME_KINDS = {"open", "close", "visible", "hidden", "activity"}


@dataclass(frozen=True)
class MetricsFilter:
    """What the lead narrows the figures to; None means everything."""

    batch_id: int | None = None
    annotator: str | None = None
    label: str | None = None
    condition: str | None = None


def _evaluation_json(evaluation: Evaluation) -> dict[str, Any]:
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


def _evaluations_json(evaluations: dict[str, Evaluation]) -> dict[str, Any]:
    return {mode: _evaluation_json(e) for mode, e in evaluations.items()}


def _spans_of(
    db: Session, set_ids: list[int], label: str | None
) -> tuple[dict[int, list[SpanData]], dict[int, SpanData]]:
    """Spans of many sets in one query, as domain spans: by set, and by span id (for relations)."""
    if not set_ids:
        return {}, {}
    query = (
        select(Span.annotation_set_id, Span.id, Span.label, SpanFragment.start, SpanFragment.end)
        .join(SpanFragment, SpanFragment.span_id == Span.id)
        .where(_among(Span.annotation_set_id, set_ids))
        .order_by(Span.annotation_set_id, Span.id, SpanFragment.ordinal)
    )
    if label is not None:
        query = query.where(Span.label == label)
    grouped: dict[tuple[int, int], tuple[str, list[Fragment]]] = {}
    for set_id, span_id, span_label, start, end in db.execute(query):
        grouped.setdefault((set_id, span_id), (span_label, []))[1].append(Fragment(start, end))
    spans: dict[int, list[SpanData]] = defaultdict(list)
    by_span_id: dict[int, SpanData] = {}
    for (set_id, span_id), (span_label, fragments) in grouped.items():
        span = SpanData(span_label, tuple(sorted(fragments)))
        spans[set_id].append(span)
        by_span_id[span_id] = span
    return spans, by_span_id


def set_spans_and_texts(
    sessions: sessionmaker[Session], sets_by_document: dict[int, dict[str, int]]
) -> tuple[dict[str, dict[str, list[SpanData]]], dict[str, str]]:
    """Spans of the given sets (document id -> annotator -> set id) and the notes' texts, keyed for
    app.domain.agreement."""
    with sessions() as db:
        set_ids = [set_id for by_login in sets_by_document.values() for set_id in by_login.values()]
        spans, _ = _spans_of(db, set_ids, None)
        texts = dict(
            db.execute(
                select(Document.id, Document.text).where(_among(Document.id, list(sets_by_document)))
            ).all()
        )
    annotations = {
        str(document): {login: spans.get(set_id, []) for login, set_id in by_login.items()}
        for document, by_login in sets_by_document.items()
    }
    return annotations, {str(d): t for d, t in texts.items()}


def project_metrics(
    sessions: sessionmaker[Session],
    project_id: int,
    *,
    idle_threshold_seconds: float | None = None,
    filters: MetricsFilter | None = None,
    agreement_resamples: int = 1000,
    time_resamples: int = 2000,
    seed: int | None = None,
) -> dict[str, Any]:
    """The whole report for a project: progress, time and savings, quality, edit mix, agreement.

    ``seed`` defaults to the project's recorded bootstrap seed, so every place that shows a figure
    (dashboard, API, command line) gives the same interval and a reader can reproduce it.
    """
    filters = filters or MetricsFilter()
    with sessions() as db:
        project = db.get(Project, project_id)
        if project is None:
            raise LookupError(f"no project {project_id}")
        schema = parse_label_schema(project.label_schema)
        study = parse_study_settings(project.study_settings or {})
        idle = idle_threshold_seconds if idle_threshold_seconds is not None else study.idle_threshold_seconds
        seed = study.bootstrap_seed if seed is None else seed
        labels = [e.name for e in schema.entity_types]
        if filters.label is not None:
            labels = [label for label in labels if label == filters.label]

        documents_query = select(Document.id, Document.external_id, Document.text).where(
            Document.project_id == project_id
        )
        if filters.batch_id is not None:
            documents_query = documents_query.where(Document.batch_id == filters.batch_id)
        documents = {i: (external, text) for i, external, text in db.execute(documents_query)}

        sets_query = (
            select(
                AnnotationSet.id,
                AnnotationSet.document_id,
                User.username,
                AnnotationSet.condition,
                AnnotationSet.status,
                AnnotationSet.base_set_id,
            )  # fmt: skip
            .join(User, User.id == AnnotationSet.annotator_id)
            .where(
                AnnotationSet.origin == SetOrigin.annotator.value,
                _among(AnnotationSet.document_id, list(documents)),
            )
        )
        if filters.annotator is not None:
            sets_query = sets_query.where(User.username == filters.annotator)
        if filters.condition is not None:
            sets_query = sets_query.where(AnnotationSet.condition == filters.condition)
        sets = db.execute(sets_query).all()
        submitted = [s for s in sets if s.status == "submitted"]
        gold_sets = dict(
            db.execute(
                select(AnnotationSet.document_id, AnnotationSet.id).where(
                    AnnotationSet.origin == SetOrigin.gold.value,
                    _among(AnnotationSet.document_id, list(documents)),
                )
            ).all()
        )
        base_ids = sorted({s.base_set_id for s in submitted if s.base_set_id is not None})
        span_sets = sorted({s.id for s in submitted} | set(base_ids) | set(gold_sets.values()))
        spans, by_span_id = _spans_of(db, span_sets, filters.label)
        relations: dict[int, list[RelationData]] = defaultdict(list)
        for set_id, type_, head, tail in db.execute(
            select(
                Relation.annotation_set_id, Relation.type, Relation.head_span_id, Relation.tail_span_id
            ).where(_among(Relation.annotation_set_id, [s.id for s in submitted]))
        ):
            if head in by_span_id and tail in by_span_id:
                relations[set_id].append(RelationData(type_, by_span_id[head], by_span_id[tail]))
        events: dict[int, list[TimeEvent]] = defaultdict(list)
        kinds: dict[int, list[str]] = defaultdict(list)
        submit_seq: dict[int, int] = {}
        for set_id, page_session, kind, monotonic, event_id in db.execute(
            select(
                EditEvent.annotation_set_id,
                EditEvent.page_session_id,
                EditEvent.kind,
                EditEvent.client_monotonic_ms,
                EditEvent.id,
            )  # fmt: skip
            .where(_among(EditEvent.annotation_set_id, [s.id for s in submitted]))
            .order_by(EditEvent.id)
        ):
            if kind not in TIME_KINDS:
                kinds[set_id].append(kind)
            if kind == EditKind.submit.value:
                submit_seq[set_id] = event_id
            if monotonic is not None:
                events[set_id].append(TimeEvent(page_session or "", kind, monotonic, event_id))
        progress_rows = db.execute(
            select(User.username, Assignment.condition, Assignment.released_at, AnnotationSet.status)
            .join(User, User.id == Assignment.annotator_id)
            .outerjoin(AnnotationSet, AnnotationSet.id == Assignment.annotation_set_id)
            .where(Assignment.project_id == project_id, _among(Assignment.document_id, list(documents)))
        ).all()
        pre_origin = dict(
            db.execute(
                select(AnnotationSet.id, AnnotationSet.origin).where(_among(AnnotationSet.id, base_ids))
            ).all()
        )
        base_run = db.scalar(
            select(PreAnnotationRun.id).where(
                PreAnnotationRun.project_id == project_id, PreAnnotationRun.is_study_base
            )
        )

    texts = {str(d): text for d, (_, text) in documents.items()}
    external = {str(d): ext for d, (ext, _) in documents.items()}

    # ---- progress
    progress: dict[str, dict[str, dict[str, int]]] = {}
    for login, condition, released_at, status in progress_rows:
        if filters.annotator and login != filters.annotator:
            continue
        cell = progress.setdefault(login, {}).setdefault(
            condition, {"assigned": 0, "released": 0, "submitted": 0, "skipped": 0}
        )
        cell["assigned"] += 1
        cell["released"] += released_at is not None
        cell["submitted"] += status == "submitted"
        cell["skipped"] += status == "skipped"

    # ---- time
    minutes = document_minutes(events, idle, submitted_at=submit_seq)
    per_condition: dict[str, dict[str, float]] = defaultdict(dict)
    per_document: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s in submitted:
        if s.id in minutes and s.condition:
            per_condition[s.condition][f"{s.document_id}/{s.username}"] = minutes[s.id]
            per_document[s.condition][str(s.document_id)].append(minutes[s.id])
    mean_per_document = {
        condition: {d: sum(values) / len(values) for d, values in by_document.items()}
        for condition, by_document in per_document.items()
    }
    time = {
        "idle_threshold_seconds": idle,
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

    # ---- quality of pre-labels and of physicians
    refined = [s for s in submitted if s.condition == Condition.refine_llm.value and s.base_set_id]
    pre_vs_final = {
        "documents": len(refined),
        "figures": _evaluations_json(
            evaluate_all(
                {str(s.id): spans.get(s.id, []) for s in refined},
                {str(s.id): spans.get(s.base_set_id, []) for s in refined},
                {str(s.id): documents[s.document_id][1] for s in refined},
                labels=labels,
            )
        )
        if refined
        else None,
    }
    pre_with_gold = [s for s in refined if s.document_id in gold_sets]
    pre_vs_gold = {
        "documents": len(pre_with_gold),
        "figures": _evaluations_json(
            evaluate_all(
                {str(s.id): spans.get(gold_sets[s.document_id], []) for s in pre_with_gold},
                {str(s.id): spans.get(s.base_set_id, []) for s in pre_with_gold},
                {str(s.id): documents[s.document_id][1] for s in pre_with_gold},
                labels=labels,
            )
        )
        if pre_with_gold
        else None,
    }
    physicians_vs_gold: dict[str, Any] = {}
    for login in sorted({s.username for s in submitted}):
        mine = [s for s in submitted if s.username == login and s.document_id in gold_sets]
        if mine:
            physicians_vs_gold[login] = {
                "documents": len(mine),
                "figures": _evaluations_json(
                    evaluate_all(
                        {str(s.id): spans.get(gold_sets[s.document_id], []) for s in mine},
                        {str(s.id): spans.get(s.id, []) for s in mine},
                        {str(s.id): documents[s.document_id][1] for s in mine},
                        labels=labels,
                    )
                ),
            }

    # ---- what happened to each pre-label, and the edit events themselves
    mix_by_condition: dict[str, list] = defaultdict(list)
    mix_by_annotator: dict[str, list] = defaultdict(list)
    mix_by_label: dict[str, list] = defaultdict(list)
    events_by_condition: dict[str, list[str]] = defaultdict(list)
    for s in submitted:
        events_by_condition[s.condition or "none"].extend(kinds.get(s.id, []))
        if s.base_set_id is None:
            continue
        base, final = spans.get(s.base_set_id, []), spans.get(s.id, [])
        mix = edit_mix(base, final)
        mix_by_condition[s.condition or "none"].append(mix)
        mix_by_annotator[s.username].append(mix)
        for label, counts in edit_mix_by_label(base, final).items():
            mix_by_label[label].append(counts)
    edits = {
        "by_condition": {k: sum_edit_mixes(v) for k, v in mix_by_condition.items()},
        "by_annotator": {k: sum_edit_mixes(v) for k, v in mix_by_annotator.items()},
        "by_label": {k: sum_edit_mixes(v) for k, v in mix_by_label.items()},
        "events_by_condition": {k: edit_event_counts(v) for k, v in events_by_condition.items()},
        "base_origin": sorted(set(pre_origin.values())),
    }

    # ---- agreement between physicians, on independent work (a refine_human set copies another's)
    annotations: dict[str, dict[str, list[SpanData]]] = defaultdict(dict)
    relation_sets: dict[str, dict[str, list[RelationData]]] = defaultdict(dict)
    for s in submitted:
        if s.condition == Condition.refine_human.value:
            continue
        annotations[str(s.document_id)][s.username] = spans.get(s.id, [])
        relation_sets[str(s.document_id)][s.username] = relations.get(s.id, [])
    agreement = agreement_report(
        annotations, relation_sets, texts, labels, resamples=agreement_resamples, seed=seed
    )
    disagreement = [
        {"document_id": int(d), "external_id": external[d], "mean_strict_f1": f1}
        for d, f1 in documents_by_disagreement(annotations, labels)
    ]

    return {
        "schema": METRICS_SCHEMA,
        "generated_at": datetime.now(UTC).isoformat(),
        "project": {"id": project_id, "name": project.name},
        "filters": {
            "batch_id": filters.batch_id,
            "annotator": filters.annotator,
            "label": filters.label,
            "condition": filters.condition,
        },  # fmt: skip
        "seed": seed,
        "labels": labels,
        "study_base_run_id": base_run,
        "documents": len(documents),
        "submitted_sets": len(submitted),
        "progress": progress,
        "time": time,
        "pre_label_quality": {"against_final": pre_vs_final, "against_gold": pre_vs_gold},
        "physicians_against_gold": physicians_vs_gold,
        "edit_mix": edits,
        "agreement": agreement,
        "documents_by_disagreement": disagreement,
    }
