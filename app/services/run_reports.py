"""What a lead reads about pre-annotation runs: progress, per-note results, prompts, evaluation.

A run is evidence: its configuration, every prompt, every raw answer, what the resolver dropped or
fuzzy-matched, and how its pre-labels compare with gold (strict, lenient and token level).
"""

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, column, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import (
    AnnotationSet,
    Document,
    PreAnnotationResult,
    PreAnnotationRun,
    Project,
    Span,
    SpanFragment,
)
from app.domain.evaluation import Evaluation, evaluate_all
from app.domain.label_schema import parse_label_schema
from app.domain.spans import Fragment, SpanData
from app.domain.vocabulary import RunStatus
from app.services import access
from app.services.gold import current_gold_set_ids


@dataclass(frozen=True)
class Progress:
    total: int
    counts: dict[str, int]

    @property
    def finished(self) -> int:
        return sum(self.counts.get(s, 0) for s in ("succeeded", "failed", "cancelled"))

    @property
    def percent(self) -> int:
        return round(100 * self.finished / self.total) if self.total else 100


@dataclass(frozen=True)
class RunSummary:
    id: int
    name: str
    method: str
    status: str
    is_study_base: bool
    created_at: Any
    finished_at: Any
    error: str | None
    progress: Progress
    configuration: dict[str, Any]

    @property
    def prompt_schema(self) -> str:
        return self.configuration.get("prompt_schema", self.method)

    @property
    def active(self) -> bool:
        return self.status in (RunStatus.queued.value, RunStatus.running.value)


@dataclass(frozen=True)
class NoteResult:
    document_id: int
    external_id: str
    status: str
    attempts: int
    pre_labels: int
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float | None
    chunks: int
    dropped: int
    fuzzy: int
    error: str | None


def _progress(db: Session, run_ids: list[int]) -> dict[int, Progress]:
    rows = db.execute(
        select(PreAnnotationResult.run_id, PreAnnotationResult.status, func.count())
        .where(PreAnnotationResult.run_id.in_(run_ids))
        .group_by(PreAnnotationResult.run_id, PreAnnotationResult.status)
    ).all()
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for run_id, status, count in rows:
        counts[run_id][status] = count
    # An imported run (pre-labels uploaded as pre:NAME) has no job per note, only its sets: each is a
    # note it finished (issue 20: it showed "0 / 0 notes").
    imported = [r for r in run_ids if not counts[r]]
    if imported:
        for run_id, count in db.execute(
            select(AnnotationSet.pre_annotation_run_id, func.count(func.distinct(AnnotationSet.document_id)))
            .where(AnnotationSet.pre_annotation_run_id.in_(imported))
            .group_by(AnnotationSet.pre_annotation_run_id)
        ):
            counts[run_id][RunStatus.succeeded.value] = count
    return {r: Progress(sum(counts[r].values()), dict(counts[r])) for r in run_ids}


def _summary(run: PreAnnotationRun, progress: Progress) -> RunSummary:
    return RunSummary(
        run.id, run.name, run.method, run.status, run.is_study_base, run.created_at, run.finished_at,
        run.error, progress, run.configuration or {},
    )  # fmt: skip


def list_runs(sessions: sessionmaker[Session], project_id: int) -> list[RunSummary]:
    """The project's runs, newest first, with their progress."""
    with sessions() as db:
        runs = list(
            db.scalars(
                select(PreAnnotationRun)
                .where(PreAnnotationRun.project_id == project_id)
                .order_by(PreAnnotationRun.id.desc())
            )
        )
        progress = _progress(db, [r.id for r in runs])
        return [_summary(r, progress[r.id]) for r in runs]


def run_summary(sessions: sessionmaker[Session], run_id: int) -> tuple[RunSummary, int] | None:
    """One run and its project id."""
    with sessions() as db:
        run = db.get(PreAnnotationRun, run_id)
        if run is None:
            return None
        return _summary(run, _progress(db, [run_id])[run_id]), run.project_id


def note_results(sessions: sessionmaker[Session], run_id: int) -> list[NoteResult]:
    """Per note: status, pre-labels, tokens, latency and what the resolver dropped or fuzzy-matched."""
    with sessions() as db:
        span_counts = dict(
            db.execute(
                select(AnnotationSet.id, func.count(Span.id))
                .join(Span, Span.annotation_set_id == AnnotationSet.id)
                .where(AnnotationSet.pre_annotation_run_id == run_id)
                .group_by(AnnotationSet.id)
            ).all()
        )
        # Counted in the database: the raw outputs hold every prompt and answer, and the run's page
        # reads this table every 2 s while the run works (issue 20).
        chunk = (
            func.jsonb_array_elements(PreAnnotationResult.raw_outputs)
            .table_valued(column("value", JSONB))
            .alias("c")
        )
        item = chunk.c.value

        def over_chunks(value):
            return (
                select(func.coalesce(func.sum(value), 0))
                .select_from(chunk)
                .where(func.jsonb_typeof(item) == "object")
                .scalar_subquery()
            )

        def listed(key: str):
            return case(
                (func.jsonb_typeof(item[key]) == "array", func.jsonb_array_length(item[key])), else_=0
            )

        rows = db.execute(
            select(
                PreAnnotationResult.document_id,
                Document.external_id,
                PreAnnotationResult.status,
                PreAnnotationResult.attempts,
                PreAnnotationResult.annotation_set_id,
                PreAnnotationResult.prompt_tokens,
                PreAnnotationResult.completion_tokens,
                PreAnnotationResult.latency_ms,
                over_chunks(case((item.has_key("messages"), 1), else_=0)),
                over_chunks(listed("dropped")),
                over_chunks(listed("fuzzy")),
                PreAnnotationResult.error,
            )
            .join(Document, Document.id == PreAnnotationResult.document_id)
            .where(PreAnnotationResult.run_id == run_id)
            .order_by(Document.external_id)
        ).all()
        results = [
            NoteResult(
                document_id=document_id,
                external_id=external_id,
                status=status,
                attempts=attempts,
                pre_labels=span_counts.get(set_id, 0),
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                latency_ms=latency_ms,
                chunks=int(chunks),
                dropped=int(dropped),
                fuzzy=int(fuzzy),
                error=error,
            )
            for (document_id, external_id, status, attempts, set_id, prompt_tokens, completion_tokens,
                 latency_ms, chunks, dropped, fuzzy, error) in rows
        ]  # fmt: skip
        if not results:  # an imported run: its notes are its sets
            results = [
                NoteResult(
                    document_id,
                    external_id,
                    RunStatus.succeeded.value,
                    0,
                    span_counts.get(set_id, 0),
                    None,
                    None,
                    None,
                    0,
                    0,
                    0,
                    None,
                )  # fmt: skip
                for set_id, document_id, external_id in db.execute(
                    select(AnnotationSet.id, Document.id, Document.external_id)
                    .join(Document, Document.id == AnnotationSet.document_id)
                    .where(AnnotationSet.pre_annotation_run_id == run_id)
                    .order_by(Document.external_id)
                )
            ]
        return results


def chunk_records(sessions: sessionmaker[Session], run_id: int, document_id: int) -> list[dict[str, Any]]:
    """The exact prompts, raw answers, dropped and fuzzy outputs of one note of a run, chunk by chunk."""
    with sessions() as db:
        raw = db.scalar(
            select(PreAnnotationResult.raw_outputs).where(
                PreAnnotationResult.run_id == run_id, PreAnnotationResult.document_id == document_id
            )
        )
        return [c for c in (raw or []) if isinstance(c, dict)]


def dropped_and_fuzzy(sessions: sessionmaker[Session], run_id: int) -> dict[str, list[dict[str, Any]]]:
    """Every output the resolver dropped or fuzzy-matched in the run, with its note and chunk."""
    listing: dict[str, list[dict[str, Any]]] = {"dropped": [], "fuzzy": []}
    with sessions() as db:
        rows = db.execute(
            select(Document.external_id, PreAnnotationResult.raw_outputs)
            .join(Document, Document.id == PreAnnotationResult.document_id)
            .where(PreAnnotationResult.run_id == run_id)
            .order_by(Document.external_id)
        ).all()
    for external_id, raw in rows:
        for chunk in raw or []:
            if not isinstance(chunk, dict):
                continue
            for reason, text in chunk.get("dropped") or []:
                listing["dropped"].append(
                    {
                        "note": external_id,
                        "schema": chunk.get("prompt_schema"),
                        "reason": reason,
                        "output": text,
                    }
                )
            for entry in chunk.get("fuzzy") or []:
                model_text, matched, score = (list(entry) + [None, None, None])[:3]
                listing["fuzzy"].append(
                    {"note": external_id, "schema": chunk.get("prompt_schema"), "output": model_text,
                     "matched": matched, "score": score}
                )  # fmt: skip
    return listing


# ---------------------------------------------------------------------------------------------
# evaluation against gold


@dataclass
class RunEvaluation:
    run_id: int
    run_name: str
    documents: int
    modes: dict[str, Evaluation] = field(default_factory=dict)


def _spans_by_document(db: Session, set_filter, document_ids: set[int] | None) -> dict[int, list[SpanData]]:
    query = (
        select(AnnotationSet.document_id, Span.id, Span.label, SpanFragment.start, SpanFragment.end)
        .join(Span, Span.annotation_set_id == AnnotationSet.id)
        .join(SpanFragment, SpanFragment.span_id == Span.id)
        .where(set_filter)
        .order_by(Span.id, SpanFragment.ordinal)
    )
    fragments: dict[tuple[int, int], tuple[str, list[Fragment]]] = {}
    for document_id, span_id, label, start, end in db.execute(query):
        if document_ids is not None and document_id not in document_ids:
            continue
        fragments.setdefault((document_id, span_id), (label, []))[1].append(Fragment(start, end))
    by_document: dict[int, list[SpanData]] = defaultdict(list)
    for (document_id, _), (label, parts) in fragments.items():
        by_document[document_id].append(SpanData(label, tuple(sorted(parts))))
    return by_document


def gold_documents(sessions: sessionmaker[Session], project_id: int) -> list[tuple[int, str]]:
    """Notes of the project that have gold, (id, external id)."""
    with sessions() as db:
        return list(
            db.execute(
                select(Document.id, Document.external_id)
                .join(AnnotationSet, AnnotationSet.document_id == Document.id)
                .where(AnnotationSet.id.in_(current_gold_set_ids(project_id)))
                .order_by(Document.external_id)
            ).all()
        )


class NotOfProject(LookupError):
    """Runs or a batch named in a request that are not this project's; the message names the field."""


def batch_documents(sessions: sessionmaker[Session], project_id: int, batch_id: int) -> list[int]:
    """The notes of one batch of the project (a development set to evaluate runs on)."""
    with sessions() as db:
        if refusal := access.batch_refusal(db, project_id, batch_id):
            raise NotOfProject(f"batch_id: {refusal}")
        return list(
            db.scalars(
                select(Document.id).where(Document.project_id == project_id, Document.batch_id == batch_id)
            )
        )


def evaluate_runs(
    sessions: sessionmaker[Session],
    project_id: int,
    run_ids: list[int],
    document_ids: list[int] | None = None,
) -> list[RunEvaluation]:
    """Each run against gold on the same notes: those with gold that every run covered (or those chosen).

    A run id that is not of this project is refused (NotOfProject) rather than skipped: it would
    otherwise still narrow the notes the other runs are compared on.
    """
    with sessions() as db:
        if foreign := access.not_of_project(db, project_id, access.ProjectObject.pre_annotation_run, run_ids):
            raise NotOfProject(f"run: not runs of this project: {', '.join(map(str, foreign))}")
        project = db.get(Project, project_id)
        labels = [e.name for e in parse_label_schema(project.label_schema).entity_types]
        gold_sets = current_gold_set_ids(project_id)
        gold_ids = set(db.scalars(select(AnnotationSet.document_id).where(AnnotationSet.id.in_(gold_sets))))
        runs = {r.id: r for r in db.scalars(select(PreAnnotationRun).where(PreAnnotationRun.id.in_(run_ids)))}
        covered = gold_ids
        for run_id in run_ids:
            covered = covered & set(
                db.scalars(
                    select(AnnotationSet.document_id).where(AnnotationSet.pre_annotation_run_id == run_id)
                )
            )
        if document_ids is not None:
            covered = covered & set(document_ids)
        texts = {
            str(i): t
            for i, t in db.execute(select(Document.id, Document.text).where(Document.id.in_(covered)))
        }
        gold = _spans_by_document(db, AnnotationSet.id.in_(gold_sets), covered)
        reference = {str(d): gold.get(d, []) for d in covered}
        evaluations = []
        for run_id in run_ids:
            run = runs[run_id]
            response_spans = _spans_by_document(db, AnnotationSet.pre_annotation_run_id == run_id, covered)
            response = {str(d): response_spans.get(d, []) for d in covered}
            evaluation = RunEvaluation(run_id, run.name, len(covered))
            if covered:
                evaluation.modes = evaluate_all(reference, response, texts, labels=labels)
            evaluations.append(evaluation)
        return evaluations
