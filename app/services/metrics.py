"""The study's figures, read from the stored sets and events and computed by app/domain (metrics.md).

One function, ``project_metrics``, makes the versioned report that the dashboard, the JSON API and
`clinann metrics --json` all give, so the three always agree. The layout is documented in the
README (``METRICS_SCHEMA``); a change to it gets a new version.
"""

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ARRAY, Integer, any_, bindparam, func, literal, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import (
    AnnotationSet,
    Assignment,
    Document,
    DocumentAnswer,
    EditEvent,
    MetricsReport,
    NoteStatistics,
    PreAnnotationRun,
    Project,
    Relation,
    Span,
    SpanFragment,
    User,
)
from app.domain.active_time import TimeEvent
from app.domain.agreement import AttributeRule
from app.domain.evaluation import RelationData
from app.domain.events import AnnotatorEvents, read_events, resolve_events
from app.domain.label_schema import parse_label_schema, parse_study_settings
from app.domain.note_statistics import LAYOUT, NoteWork, SubmittedWork, note_statistics, pooled_report
from app.domain.spans import Fragment, SpanData
from app.domain.vocabulary import EditKind, SetOrigin, SetStatus
from app.services import access

METRICS_SCHEMA = "clinann.metrics/1"


def _among(column, ids):
    """``column = ANY(:ids)`` with the ids as one array parameter: a large study has tens of thousands
    of sets, more than the 65,535 parameters PostgreSQL allows in one statement."""
    return column == any_(bindparam(None, list(ids), type_=ARRAY(Integer), unique=True))


TIME_KINDS = {"open", "close", "visible", "hidden", "activity"}
# Notes whose records are computed per REFRESH_CHUNK notes: bounded memory on a first computation.
REFRESH_CHUNK = 500
# A note's record is stored once its last submission is this old: activity the page stamped before the
# submit may arrive just after it.
SETTLE_TIME = timedelta(minutes=2)
REFRESH_MARGIN = timedelta(seconds=10)


class FilterError(ValueError):
    """A filter naming what the project does not have (another project's batch); ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class MetricsFilter:
    """What the lead narrows the figures to; None means everything."""

    batch_id: int | None = None
    annotator: str | None = None
    label: str | None = None
    condition: str | None = None


def _spans_of(
    db: Session, set_ids: list[int], label: str | None
) -> tuple[dict[int, list[SpanData]], dict[int, SpanData], dict[int, dict[str, SpanData]]]:
    """Spans of many sets in one query, as domain spans with their status (the edit mix tells a pre-label
    left pending apart): by set, by span id (for relations) and by (set, uid) (for the events of its
    verbatim brat lines, which name spans by their T ids)."""
    if not set_ids:
        return {}, {}, {}
    query = (
        select(
            Span.annotation_set_id,
            Span.id,
            Span.uid,
            Span.label,
            Span.status,
            SpanFragment.start,
            SpanFragment.end,
            # NULL when empty, so most rows need no JSON decoding
            func.nullif(Span.attributes, literal({}, JSONB)),
            Span.concept_system,
            Span.concept_code,
        )
        .join(SpanFragment, SpanFragment.span_id == Span.id)
        .where(_among(Span.annotation_set_id, set_ids))
        .order_by(Span.annotation_set_id, Span.id, SpanFragment.ordinal)
    )
    if label is not None:
        query = query.where(Span.label == label)
    grouped: dict[tuple[int, int], tuple[str, str, str, list[Fragment], dict | None, str | None]] = {}
    for set_id, span_id, uid, span_label, status, start, end, attributes, system, code in db.execute(query):
        concept = f"{system}:{code}" if code is not None else None
        grouped.setdefault((set_id, span_id), (uid, span_label, status, [], attributes, concept))[3].append(
            Fragment(start, end)
        )
    spans: dict[int, list[SpanData]] = defaultdict(list)
    by_span_id: dict[int, SpanData] = {}
    by_uid: dict[int, dict[str, SpanData]] = defaultdict(dict)
    for (set_id, span_id), (uid, span_label, status, fragments, attributes, concept) in grouped.items():
        span = SpanData(
            span_label, tuple(sorted(fragments)), attributes=attributes or {}, concept=concept, status=status
        )
        spans[set_id].append(span)
        by_span_id[span_id] = span
        by_uid[set_id][uid] = span
    return spans, by_span_id, by_uid


def _events_of(
    db: Session, set_ids: list[int], by_uid: dict[int, dict[str, SpanData]]
) -> dict[int, AnnotatorEvents]:
    """The events among the sets' verbatim brat lines, resolved against their spans (sets with none
    are left out, and cost one indexed read of an empty list)."""
    found: dict[int, AnnotatorEvents] = {}
    for set_id, lines in db.execute(
        select(AnnotationSet.id, AnnotationSet.unmodelled_lines).where(
            _among(AnnotationSet.id, set_ids), func.jsonb_array_length(AnnotationSet.unmodelled_lines) > 0
        )
    ):
        events = read_events(lines)
        if events.events or events.relations:
            found[set_id] = resolve_events(events, by_uid.get(set_id, {}))
    return found


def set_spans_and_texts(
    sessions: sessionmaker[Session], sets_by_document: dict[int, dict[str, int]]
) -> tuple[dict[str, dict[str, list[SpanData]]], dict[str, str]]:
    """Spans of the given sets (document id -> annotator -> set id) and the notes' texts, keyed for
    app.domain.agreement."""
    with sessions() as db:
        set_ids = [set_id for by_login in sets_by_document.values() for set_id in by_login.values()]
        spans, _, _ = _spans_of(db, set_ids, None)
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


def _variant(filters: MetricsFilter) -> str:
    """The stored records' key for the filters that change what a note's record holds ('' for none); the
    batch filter only picks notes, so it shares the unfiltered records."""
    if filters.annotator is None and filters.condition is None and filters.label is None:
        return ""
    return json.dumps([filters.annotator, filters.condition, filters.label])


@dataclass(frozen=True)
class Definitions:
    """What of the schema besides the labels a note's record depends on: its attributes and questions."""

    attributes: dict[str, AttributeRule]
    questions: dict[str, str]

    @classmethod
    def of(cls, schema) -> "Definitions":
        return cls(
            {a.name: AttributeRule(a.default, tuple(a.applies_to)) for a in schema.span_attributes},
            {q.key: q.kind.value for q in schema.document_questions},
        )


def _fingerprint(
    labels: list[str], definitions: Definitions, variant: str, note_sets: list[tuple], gold: tuple | None
) -> str:
    digest = hashlib.sha256(repr((LAYOUT, labels, definitions, variant, sorted(note_sets), gold)).encode())
    return digest.hexdigest()


def _note_works(
    db: Session, document_ids: list[int], sets_by_document: dict[int, list], gold_sets: dict[int, int],
    label: str | None,
) -> dict[int, NoteWork]:  # fmt: skip
    """The submitted work of the given notes, read in a few queries: spans, relations, events, texts."""
    submitted = [s for d in document_ids for s in sets_by_document[d]]
    submitted_ids = [s.id for s in submitted]
    base_ids = {s.base_set_id for s in submitted if s.base_set_id is not None}
    gold_ids = {gold_sets[d] for d in document_ids if d in gold_sets}
    spans, by_span_id, by_uid = _spans_of(db, sorted(set(submitted_ids) | base_ids | gold_ids), label)
    events = _events_of(db, submitted_ids, by_uid)
    relations: dict[int, list[RelationData]] = defaultdict(list)
    for set_id, type_, head, tail in db.execute(
        select(Relation.annotation_set_id, Relation.type, Relation.head_span_id, Relation.tail_span_id).where(
            _among(Relation.annotation_set_id, submitted_ids)
        )
    ):
        if head in by_span_id and tail in by_span_id:
            relations[set_id].append(RelationData(type_, by_span_id[head], by_span_id[tail]))
    time_events: dict[int, list[TimeEvent]] = defaultdict(list)
    kinds: dict[int, Counter] = defaultdict(Counter)
    submit_seq: dict[int, int] = {}
    for set_id, page_session, kind, monotonic, event_id in db.execute(
        select(
            EditEvent.annotation_set_id,
            EditEvent.page_session_id,
            EditEvent.kind,
            EditEvent.client_monotonic_ms,
            EditEvent.id,
        )  # fmt: skip
        .where(_among(EditEvent.annotation_set_id, submitted_ids))
        .order_by(EditEvent.id)
    ):
        if kind not in TIME_KINDS:
            kinds[set_id][kind] += 1
        if kind == EditKind.submit.value:
            submit_seq[set_id] = event_id
        if monotonic is not None:
            time_events[set_id].append(TimeEvent(page_session or "", kind, monotonic, event_id))
    answers: dict[int, dict[str, Any]] = defaultdict(dict)
    for set_id, key, value in db.execute(
        select(DocumentAnswer.annotation_set_id, DocumentAnswer.question_key, DocumentAnswer.value).where(
            _among(DocumentAnswer.annotation_set_id, submitted_ids)
        )
    ):
        answers[set_id][key] = value
    texts = dict(
        db.execute(select(Document.id, Document.text).where(_among(Document.id, document_ids))).all()
    )
    return {
        d: NoteWork(
            document=str(d),
            text=texts[d],
            submitted=[
                SubmittedWork(
                    set_id=s.id,
                    annotator=s.username,
                    condition=s.condition,
                    spans=spans.get(s.id, []),
                    relations=relations.get(s.id, []),
                    time_events=time_events.get(s.id, []),
                    submit_seq=submit_seq.get(s.id),
                    edit_kinds=kinds.get(s.id, {}),
                    base_spans=None if s.base_set_id is None else spans.get(s.base_set_id, []),
                    answers=answers.get(s.id, {}),
                    events=events.get(s.id),
                )
                for s in sets_by_document[d]
            ],
            gold=spans.get(gold_sets[d], []) if d in gold_sets else None,
        )
        for d in document_ids
    }


def _refresh_notes(
    sessions: sessionmaker[Session],
    stale: list[int],
    fingerprints: dict[int, str],
    settled: set[int],
    sets_by_document: dict[int, list],
    gold_sets: dict[int, int],
    labels: list[str],
    variant: str,
    label: str | None,
    definitions: "Definitions",
) -> dict[int, dict[str, Any]]:
    """Compute the records of the stale notes, in chunks, storing each chunk in its own transaction (a
    long first computation keeps what it has done if it is interrupted)."""
    records: dict[int, dict[str, Any]] = {}
    for first in range(0, len(stale), REFRESH_CHUNK):
        chunk = stale[first : first + REFRESH_CHUNK]
        with sessions() as db:
            works = _note_works(db, chunk, sets_by_document, gold_sets, label)
        computed = {
            d: note_statistics(
                works[d], labels, attributes=definitions.attributes, questions=definitions.questions
            )
            for d in chunk
        }
        records.update(computed)
        # A note submitted moments ago may still get activity its page sent before the submit; its
        # record is used now but stored only once the note has settled.
        rows = [
            {"document_id": d, "variant": variant, "fingerprint": fingerprints[d], "statistics": computed[d]}
            for d in chunk
            if d in settled
        ]
        if rows:
            with sessions.begin() as db:
                statement = pg_insert(NoteStatistics).values(rows)
                db.execute(
                    statement.on_conflict_do_update(
                        index_elements=[NoteStatistics.document_id, NoteStatistics.variant],
                        set_={
                            "fingerprint": statement.excluded.fingerprint,
                            "statistics": statement.excluded.statistics,
                            "computed_at": func.now(),
                        },
                    )
                )
    return records


def refresh_after_submission(sessions: sessionmaker[Session], set_id: int) -> bool:
    """Queue the computation of the project's report for when a submission has settled (one waiting
    computation per project, however many physicians submit meanwhile). True if one was queued."""
    from app.jobs import defer_once_later

    with sessions() as db:
        project_id = db.scalar(
            select(Document.project_id)
            .join(AnnotationSet, AnnotationSet.document_id == Document.id)
            .where(AnnotationSet.id == set_id)
        )
    if project_id is None:
        return False
    delay = (SETTLE_TIME + REFRESH_MARGIN).total_seconds()
    return defer_once_later("refresh_metrics", f"metrics-{project_id}", delay, project_id=project_id)


def _keep_figures(sessions: sessionmaker[Session], project_id: int, view: str, fingerprint: str,
                  figures: dict[str, Any]) -> None:  # fmt: skip
    with sessions.begin() as db:
        statement = pg_insert(MetricsReport).values(
            project_id=project_id, view=view, fingerprint=fingerprint, figures=figures
        )
        db.execute(
            statement.on_conflict_do_update(
                index_elements=[MetricsReport.project_id, MetricsReport.view],
                set_={
                    "fingerprint": fingerprint,
                    "figures": statement.excluded.figures,
                    "computed_at": func.now(),
                },
            )
        )


def project_metrics(
    sessions: sessionmaker[Session],
    project_id: int,
    *,
    idle_threshold_seconds: float | None = None,
    filters: MetricsFilter | None = None,
    agreement_resamples: int = 1000,
    time_resamples: int = 2000,
    seed: int | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The whole report for a project: progress, time and savings, quality, edit mix, agreement.

    ``seed`` defaults to the project's recorded bootstrap seed, so every place that shows a figure
    (dashboard, API, command line) gives the same interval and a reader can reproduce it. Each note's
    share of the figures comes from its stored record when the record still matches the note's sets,
    and is computed (and stored) otherwise, so the report is always that of the sets as they are now.
    """
    filters = filters or MetricsFilter()
    now = now or datetime.now(UTC)
    variant = _variant(filters)
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
        definitions = Definitions.of(schema)

        documents_query = select(Document.id, Document.external_id).where(Document.project_id == project_id)
        if filters.batch_id is not None:
            # Another project's batch would show empty figures as if they were this project's.
            if refusal := access.batch_refusal(db, project_id, filters.batch_id):
                raise FilterError("batch_id", refusal)
            documents_query = documents_query.where(Document.batch_id == filters.batch_id)
        external = dict(db.execute(documents_query).all())
        document_ids = sorted(external)

        sets_query = (
            select(
                AnnotationSet.id,
                AnnotationSet.document_id,
                AnnotationSet.version,
                AnnotationSet.condition,
                AnnotationSet.base_set_id,
                AnnotationSet.submitted_at,
                User.username,
            )  # fmt: skip
            .join(User, User.id == AnnotationSet.annotator_id)
            .where(
                AnnotationSet.origin == SetOrigin.annotator.value,
                AnnotationSet.status == SetStatus.submitted.value,
                _among(AnnotationSet.document_id, document_ids),
            )
            .order_by(AnnotationSet.id)
        )
        if filters.annotator is not None:
            sets_query = sets_query.where(User.username == filters.annotator)
        if filters.condition is not None:
            sets_query = sets_query.where(AnnotationSet.condition == filters.condition)
        submitted = db.execute(sets_query).all()
        gold_rows = db.execute(
            select(AnnotationSet.document_id, AnnotationSet.id, AnnotationSet.version)
            .where(
                AnnotationSet.origin == SetOrigin.gold.value,
                AnnotationSet.status == SetStatus.submitted.value,  # an adjudication in progress is not gold
                _among(AnnotationSet.document_id, document_ids),
            )
            .order_by(AnnotationSet.id)
        ).all()
        base_ids = sorted({s.base_set_id for s in submitted if s.base_set_id is not None})
        bases = {
            row.id: (row.origin, row.version)
            for row in db.execute(
                select(AnnotationSet.id, AnnotationSet.origin, AnnotationSet.version).where(
                    _among(AnnotationSet.id, base_ids)
                )
            )
        }
        progress_rows = db.execute(
            select(User.username, Assignment.condition, Assignment.released_at, AnnotationSet.status)
            .join(User, User.id == Assignment.annotator_id)
            .outerjoin(AnnotationSet, AnnotationSet.id == Assignment.annotation_set_id)
            .where(Assignment.project_id == project_id, _among(Assignment.document_id, document_ids))
        ).all()
        base_run = db.scalar(
            select(PreAnnotationRun.id).where(
                PreAnnotationRun.project_id == project_id, PreAnnotationRun.is_study_base
            )
        )
        sets_by_document: dict[int, list] = defaultdict(list)
        for s in submitted:
            sets_by_document[s.document_id].append(s)
        gold_sets = {d: set_id for d, set_id, _ in gold_rows}  # the latest gold set of a note
        gold_versions = {d: (set_id, version) for d, set_id, version in gold_rows}
        # Notes with submitted work; the others add nothing to any figure.
        worked = sorted(sets_by_document)
        fingerprints = {
            d: _fingerprint(
                labels,
                definitions,
                variant,
                [
                    (s.id, s.version, s.condition, s.username, s.base_set_id, bases.get(s.base_set_id))
                    for s in sets_by_document[d]
                ],
                gold_versions.get(d),
            )
            for d in worked
        }
        view = json.dumps([variant, filters.batch_id, idle, seed, agreement_resamples, time_resamples])
        report_fingerprint = hashlib.sha256(
            repr((LAYOUT, labels, [(d, fingerprints[d]) for d in worked])).encode()
        ).hexdigest()
        kept = db.execute(
            select(MetricsReport.figures).where(
                MetricsReport.project_id == project_id,
                MetricsReport.view == view,
                MetricsReport.fingerprint == report_fingerprint,
            )
        ).scalar_one_or_none()

    settle_before = now - SETTLE_TIME
    settled = {
        d
        for d in worked
        if all(s.submitted_at is None or s.submitted_at <= settle_before for s in sets_by_document[d])
    }
    if kept is not None:
        pooled = kept
    else:
        with sessions() as db:
            stored = {
                d: statistics
                for d, fingerprint, statistics in db.execute(
                    select(
                        NoteStatistics.document_id, NoteStatistics.fingerprint, NoteStatistics.statistics
                    ).where(NoteStatistics.variant == variant, _among(NoteStatistics.document_id, worked))
                )
                if fingerprint == fingerprints[d]
            }
        stale = [d for d in worked if d not in stored]
        computed = _refresh_notes(
            sessions, stale, fingerprints, settled, sets_by_document, gold_sets, labels, variant,
            filters.label, definitions,
        )  # fmt: skip
        records = {**stored, **computed}
        pooled = pooled_report(
            {str(d): records[d] for d in worked},
            labels,
            idle_threshold_seconds=idle,
            agreement_resamples=agreement_resamples,
            time_resamples=time_resamples,
            seed=seed,
            question_kinds=definitions.questions,
        )
        # As it reads back when stored (tuples become lists), so a report never depends on where it came from.
        pooled = json.loads(json.dumps(pooled))
        if len(settled) == len(worked):
            _keep_figures(sessions, project_id, view, report_fingerprint, pooled)

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

    return {
        "schema": METRICS_SCHEMA,
        "generated_at": now.isoformat(),
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
        "documents": len(document_ids),
        "submitted_sets": len(submitted),
        "progress": progress,
        "time": pooled["time"],
        "pre_label_quality": pooled["pre_label_quality"],
        "physicians_against_gold": pooled["physicians_against_gold"],
        "edit_mix": {**pooled["edit_mix"], "base_origin": sorted({origin for origin, _ in bases.values()})},
        "agreement": pooled["agreement"],
        "documents_by_disagreement": [
            {"document_id": int(d), "external_id": external[int(d)], "mean_strict_f1": f1}
            for d, f1 in pooled["documents_by_disagreement"]
        ],
    }


def notes_awaiting_adjudication(
    sessions: sessionmaker[Session],
    project_id: int,
    *,
    batch_id: int | None = None,
    annotator: str | None = None,
) -> int:
    """Notes that two or more physicians submitted and whose adjudication into gold is not submitted yet:
    the adjudication queue's notes that are not done (of the batch, and with that physician's work, when
    given). Counted in the database, so the dashboard's summary does not build the queue."""
    with sessions() as db:
        submitted = (
            select(AnnotationSet.document_id)
            .join(Document, Document.id == AnnotationSet.document_id)
            .where(
                Document.project_id == project_id,
                AnnotationSet.origin == SetOrigin.annotator.value,
                AnnotationSet.status == SetStatus.submitted.value,
            )
            .group_by(AnnotationSet.document_id)
            .having(func.count(AnnotationSet.annotator_id.distinct()) >= 2)
        )
        if batch_id is not None:
            submitted = submitted.where(Document.batch_id == batch_id)
        if annotator is not None:
            physician = (
                select(AnnotationSet.document_id)
                .join(User, User.id == AnnotationSet.annotator_id)
                .where(
                    User.username == annotator,
                    AnnotationSet.origin == SetOrigin.annotator.value,
                    AnnotationSet.status == SetStatus.submitted.value,
                )
            )
            submitted = submitted.where(AnnotationSet.document_id.in_(physician))
        # An adjudication is a lead's gold set (an imported gold layer has no annotator), as in the queue.
        adjudicated = select(AnnotationSet.document_id).where(
            AnnotationSet.origin == SetOrigin.gold.value,
            AnnotationSet.annotator_id.is_not(None),
            AnnotationSet.status == SetStatus.submitted.value,
        )
        waiting = submitted.where(AnnotationSet.document_id.not_in(adjudicated)).subquery()
        return db.scalar(select(func.count()).select_from(waiting)) or 0
