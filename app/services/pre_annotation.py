"""Pre-annotation runs: an LLM or a lexicon labels the notes first, physicians refine.

The published method (shared/design/llm-preannotation.md) made durable: a run is queued as one
job per note on procrastinate. A note is *claimed* in one transaction and its result *written* in
another, guarded so that however often a job is retried (a killed worker, a stalled job put back
in the queue) a note gets exactly one pre-annotation set. Model answers are cached by model and
prompt before they are used, so a retried note asks the model only what it had not answered yet.
"""

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import (
    AnnotationSet,
    Document,
    LlmEndpoint,
    LlmResponse,
    PreAnnotationResult,
    PreAnnotationRun,
    Project,
    Relation,
    Span,
    SpanFragment,
)
from app.domain.chunking import DEFAULT_CHUNK_SIZE, chunk_note
from app.domain.label_schema import LabelSchema, parse_label_schema
from app.domain.lexicon import Lexicon, LexiconError, parse_lexicon_csv
from app.domain.prompts import (
    ExampleIndex,
    FewShotExample,
    build_messages,
    examples_from_note,
    prompt_fingerprint,
    response_format,
)
from app.domain.resolver import (
    FUZZY_THRESHOLD,
    ResolvedChunk,
    ResolvedRelation,
    UnparseableOutput,
    ensemble,
    resolve_direct_chunk,
    resolve_iob_token,
)
from app.domain.vocabulary import RunStatus, SetOrigin, SetStatus, SpanStatus
from app.services import access, audit, item_runs
from app.services.gold import current_gold_set_ids
from app.services.item_runs import FINISHED

log = logging.getLogger("clinann.pre_annotation")

METHODS = ("llm", "lexicon")
PROMPT_SCHEMAS = ("iob_token", "direct_chunk", "ensemble")
# Garbage answers are asked again this many times (bypassing the cache) before the note fails.
UNPARSEABLE_ATTEMPTS = 3
MAX_FEW_SHOT_POOL = 400  # candidate example chunks taken from the project's gold notes


class RunError(ValueError):
    """A run that cannot be started or changed; ``field`` names what to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class RunRequest:
    """What a lead asks for when starting a run."""

    name: str
    method: str = "llm"
    prompt_schema: str = "ensemble"
    endpoint_id: int | None = None
    chunk_size: int | None = None  # None: the published size of the prompt schema
    few_shot: int = 3
    fuzzy_threshold: float = FUZZY_THRESHOLD
    document_ids: Sequence[int] | None = None  # None: every note of the project
    batch_id: int | None = None
    lexicon_csv: str | None = None
    lexicon_source: str = "lexicon.csv"
    whole_word: bool = True
    case_sensitive: bool = False


# ---------------------------------------------------------------------------------------------
# starting, cancelling, re-running


def _documents_of(db: Session, project_id: int, request: RunRequest) -> list[int]:
    query = select(Document.id).where(Document.project_id == project_id).order_by(Document.id)
    if request.batch_id is not None:
        if refusal := access.batch_refusal(db, project_id, request.batch_id):
            raise RunError("batch_id", refusal)
        query = query.where(Document.batch_id == request.batch_id)
    ids = list(db.scalars(query))
    if request.document_ids is not None:
        wanted = set(request.document_ids)
        unknown = wanted - set(ids)
        if unknown:
            raise RunError("document_ids", f"not notes of this project: {sorted(unknown)[:10]}")
        ids = [i for i in ids if i in wanted]
    if not ids:
        raise RunError("documents", "the run would cover no note")
    return ids


def _configuration(db: Session, project: Project, request: RunRequest) -> dict[str, Any]:
    name = request.name.strip()
    if not name or len(name) > 200:
        raise RunError("name", "give the run a name of 1 to 200 characters")
    if request.method not in METHODS:
        raise RunError("method", f"must be one of {', '.join(METHODS)}")
    if not 0 <= request.fuzzy_threshold <= 100:
        raise RunError("fuzzy_threshold", "must be between 0 and 100")
    schema = parse_label_schema(project.label_schema)
    if request.method == "lexicon":
        if not request.lexicon_csv:
            raise RunError("lexicon", "upload a CSV of terms with the columns label,term")
        try:
            terms = parse_lexicon_csv(
                request.lexicon_csv, request.lexicon_source, [e.name for e in schema.entity_types]
            )
        except LexiconError as error:
            raise RunError("lexicon", str(error)) from error
        return {
            "method": "lexicon",
            "terms": [[t.label, t.term] for t in terms],
            "whole_word": request.whole_word,
            "case_sensitive": request.case_sensitive,
            "source": request.lexicon_source,
        }
    if request.prompt_schema not in PROMPT_SCHEMAS:
        raise RunError("prompt_schema", f"must be one of {', '.join(PROMPT_SCHEMAS)}")
    if request.endpoint_id is None:
        raise RunError("endpoint", "choose the LLM endpoint")
    endpoint = db.get(LlmEndpoint, request.endpoint_id)
    if endpoint is None or not endpoint.is_active:
        raise RunError("endpoint", "no such active endpoint")
    schemas = (
        ["iob_token", "direct_chunk"] if request.prompt_schema == "ensemble" else [request.prompt_schema]
    )
    if request.chunk_size is not None and not 40 <= request.chunk_size <= 20_000:
        raise RunError("chunk_size", "must be between 40 and 20000 characters")
    if not 0 <= request.few_shot <= 20:
        raise RunError("few_shot", "must be between 0 and 20")
    return {
        "method": "llm",
        "prompt_schema": request.prompt_schema,
        "schemas": schemas,
        "chunk_sizes": {s: request.chunk_size or DEFAULT_CHUNK_SIZE[s] for s in schemas},
        "few_shot": request.few_shot,
        "fuzzy_threshold": request.fuzzy_threshold,
        "temperature": 0.0,
        # The endpoint as it was when the run started: the paper needs what was used, not what is now.
        "endpoint": {
            "id": endpoint.id,
            "name": endpoint.name,
            "base_url": endpoint.base_url,
            "model": endpoint.model,
            "parameters": endpoint.parameters,
        },
        "guidelines": project.guidelines,
        "label_schema": project.label_schema,
        # The adjudicated sets few-shot examples may come from, fixed now so every worker (and a
        # rerun) offers the model the same examples however the gold grows meanwhile.
        "few_shot_sets": sorted(db.scalars(current_gold_set_ids(project.id))) if request.few_shot else [],
    }


def start_run(
    sessions: sessionmaker[Session],
    project_id: int,
    request: RunRequest,
    *,
    user_id: int | None,
    defer: Callable[..., Any] | None = None,
    client_address: str | None = None,
) -> int:
    """Store a run with a queued result per note (one transaction), then queue a job per note."""
    with sessions.begin() as db:
        project = db.get(Project, project_id)
        if project is None:
            raise RunError("project", f"no project {project_id}")
        configuration = _configuration(db, project, request)
        document_ids = _documents_of(db, project_id, request)
        run = PreAnnotationRun(
            project_id=project_id,
            name=request.name.strip(),
            method=configuration["method"],
            llm_endpoint_id=request.endpoint_id if configuration["method"] == "llm" else None,
            configuration=configuration,
            status=RunStatus.queued.value,
            created_by=user_id,
        )
        db.add(run)
        db.flush()
        db.execute(
            insert(PreAnnotationResult),
            [{"run_id": run.id, "document_id": d, "status": RunStatus.queued.value} for d in document_ids],
        )
        audit.record(
            db,
            "pre_annotation_run.started",
            user_id=user_id,
            object_type="pre_annotation_run",
            object_id=run.id,
            client_address=client_address,
            details={"project_id": project_id, "method": run.method, "documents": len(document_ids)},
        )
        run_id = run.id
    queue_documents(run_id, document_ids, defer=defer)
    return run_id


def queue_documents(
    run_id: int, document_ids: Sequence[int], *, defer: Callable[..., Any] | None = None
) -> None:
    """One job per note; a note already queued for this run is not queued twice (procrastinate lock)."""
    if defer is None:
        from app.jobs import defer_many

        defer_many(
            "pre_annotate_note",
            [{"run_id": run_id, "document_id": d} for d in document_ids],
            queueing_lock=lambda arguments: f"pre-annotate-{arguments['run_id']}-{arguments['document_id']}",
        )
        return
    for document_id in document_ids:
        defer("pre_annotate_note", run_id=run_id, document_id=document_id)


def cancel_run(sessions: sessionmaker[Session], run_id: int, *, user_id: int | None) -> None:
    """Stop a run: notes not yet done are marked cancelled; a job finding them so does nothing."""
    with sessions.begin() as db:
        run = db.get(PreAnnotationRun, run_id, with_for_update=True)
        if run is None:
            raise RunError("run", f"no run {run_id}")
        if run.status in FINISHED:
            raise RunError("run", f"the run has already {run.status}")
        item_runs.cancel_items(db, PreAnnotationResult, run)
        audit.record(db, "pre_annotation_run.cancelled", user_id=user_id, object_type="pre_annotation_run",
                     object_id=run_id)  # fmt: skip


def rerun_failed(
    sessions: sessionmaker[Session],
    run_id: int,
    *,
    user_id: int | None,
    defer: Callable[..., Any] | None = None,
) -> int:
    """Queue the run's failed (and cancelled) notes again; returns how many."""
    with sessions.begin() as db:
        run = db.get(PreAnnotationRun, run_id, with_for_update=True)
        if run is None:
            raise RunError("run", f"no run {run_id}")
        if run.method == "imported":
            raise RunError("run", "an imported layer cannot be re-run")
        ids = list(
            db.scalars(
                update(PreAnnotationResult)
                .where(
                    PreAnnotationResult.run_id == run_id,
                    PreAnnotationResult.status.in_([RunStatus.failed.value, RunStatus.cancelled.value]),
                )
                .values(status=RunStatus.queued.value, error=None, finished_at=None)
                .returning(PreAnnotationResult.document_id)
            )
        )
        if not ids:
            raise RunError("run", "no failed or cancelled note to re-run")
        run.status = RunStatus.running.value if run.started_at else RunStatus.queued.value
        run.finished_at = None
        run.error = None
        audit.record(db, "pre_annotation_run.rerun", user_id=user_id, object_type="pre_annotation_run",
                     object_id=run_id, details={"documents": len(ids)})  # fmt: skip
    queue_documents(run_id, ids, defer=defer)
    return len(ids)


def mark_study_base(sessions: sessionmaker[Session], run_id: int, *, user_id: int | None) -> None:
    """Make this run's sets the base of the study's refine_llm assignments (one run per project)."""
    with sessions.begin() as db:
        run = db.get(PreAnnotationRun, run_id, with_for_update=True)
        if run is None:
            raise RunError("run", f"no run {run_id}")
        if run.status != RunStatus.succeeded.value:
            raise RunError("run", "only a run that succeeded on every note can be the study's base")
        db.execute(
            update(PreAnnotationRun)
            .where(PreAnnotationRun.project_id == run.project_id, PreAnnotationRun.is_study_base)
            .values(is_study_base=False)
        )
        db.flush()
        run.is_study_base = True
        audit.record(db, "pre_annotation_run.study_base", user_id=user_id, object_type="pre_annotation_run",
                     object_id=run_id, details={"project_id": run.project_id})  # fmt: skip


# ---------------------------------------------------------------------------------------------
# the work on one note


@dataclass
class NoteWork:
    """What a job needs to pre-annotate one note, read in the claiming transaction."""

    run_id: int
    document_id: int
    text: str
    label_schema: LabelSchema
    configuration: dict[str, Any]
    examples: ExampleIndex | None = None  # few-shot candidates of the run, prepared once per worker
    own_examples: frozenset[int] = frozenset()  # candidates cut from this very note: never shown


def claim_note(sessions: sessionmaker[Session], run_id: int, document_id: int) -> NoteWork | None:
    """Take a note up for work; None when it is done, cancelled or not part of the run."""
    with sessions.begin() as db:
        result = db.scalar(
            select(PreAnnotationResult)
            .where(PreAnnotationResult.run_id == run_id, PreAnnotationResult.document_id == document_id)
            .with_for_update()
        )
        run = db.get(PreAnnotationRun, run_id)
        if not item_runs.start_item(result, run):
            return None
        document = db.get(Document, document_id)
        configuration = dict(run.configuration)
        work = NoteWork(
            run_id=run_id,
            document_id=document_id,
            text=document.text,
            label_schema=parse_label_schema(
                configuration.get("label_schema") or db.get(Project, run.project_id).label_schema
            ),
            configuration=configuration,
        )
        if configuration["method"] == "llm" and configuration.get("few_shot"):
            index, sources = _example_pool(db, run_id, configuration)
            work.examples = index
            work.own_examples = frozenset(i for i, source in enumerate(sources) if source == document_id)
        return work


_POOLS: dict[int, tuple[ExampleIndex, list[int]]] = {}  # run id -> index, note of each candidate
_POOLS_LOCK = threading.Lock()
_POOLS_KEPT = 8


def _example_pool(db: Session, run_id: int, configuration: dict) -> tuple[ExampleIndex, list[int]]:
    """The run's few-shot candidates: chunks of the gold sets fixed when the run started.

    Built once per run in each worker process (notes of one run share it), so a note costs no
    queries for its examples; the gold sets are those recorded in the run's configuration, so every
    worker offers the model the same examples.
    """
    with _POOLS_LOCK:
        if run_id in _POOLS:
            return _POOLS[run_id]
    size = min(configuration["chunk_sizes"].values())
    set_ids = configuration.get("few_shot_sets") or []
    texts = dict(
        db.execute(
            select(AnnotationSet.id, Document.text)
            .join(Document, Document.id == AnnotationSet.document_id)
            .where(AnnotationSet.id.in_(set_ids))
        ).all()
    )
    owners = dict(
        db.execute(
            select(AnnotationSet.id, AnnotationSet.document_id).where(AnnotationSet.id.in_(set_ids))
        ).all()
    )
    contents = _sets_contents(db, list(texts))
    candidates: list[FewShotExample] = []
    sources: list[int] = []
    for set_id in set_ids:
        if set_id not in texts:
            continue  # a gold set removed since the run started
        spans, relations = contents.get(set_id, ([], []))
        for example in examples_from_note(texts[set_id], spans, relations, size):
            if example.spans:
                candidates.append(example)
                sources.append(owners[set_id])
        if len(candidates) >= MAX_FEW_SHOT_POOL:
            break
    pool = (ExampleIndex(candidates[:MAX_FEW_SHOT_POOL]), sources[:MAX_FEW_SHOT_POOL])
    with _POOLS_LOCK:
        while len(_POOLS) >= _POOLS_KEPT:
            _POOLS.pop(next(iter(_POOLS)))
        _POOLS[run_id] = pool
    return pool


def _sets_contents(db: Session, set_ids: list[int]) -> dict[int, tuple[list, list]]:
    """``_set_contents`` of many sets in two queries."""
    if not set_ids:
        return {}
    rows = db.execute(
        select(
            Span.annotation_set_id,
            Span.id,
            Span.label,
            func.min(SpanFragment.start),
            func.max(SpanFragment.end),
            func.count(),
        )  # fmt: skip
        .join(SpanFragment, SpanFragment.span_id == Span.id)
        .where(Span.annotation_set_id.in_(set_ids))
        .group_by(Span.annotation_set_id, Span.id)
        .order_by(Span.annotation_set_id, func.min(SpanFragment.start), Span.id)
    ).all()
    contents: dict[int, tuple[list, list]] = {}
    index: dict[int, int] = {}
    for set_id, span_id, label, start, end, fragments in rows:
        spans, _ = contents.setdefault(set_id, ([], []))
        if fragments == 1:  # a prompt shows mentions as strings: discontinuous ones cannot be shown
            index[span_id] = len(spans)
            spans.append((label, start, end))
    for set_id, type_, head, tail in db.execute(
        select(Relation.annotation_set_id, Relation.type, Relation.head_span_id, Relation.tail_span_id).where(
            Relation.annotation_set_id.in_(set_ids)
        )
    ):
        if head in index and tail in index:
            contents.setdefault(set_id, ([], []))[1].append((type_, index[head], index[tail]))
    return contents


def _set_contents(db: Session, set_id: int) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
    """Contiguous spans of a set as (label, start, end) and relations as (type, head index, tail index)."""
    rows = db.execute(
        select(Span.id, Span.label, func.min(SpanFragment.start), func.max(SpanFragment.end), func.count())
        .join(SpanFragment, SpanFragment.span_id == Span.id)
        .where(Span.annotation_set_id == set_id)
        .group_by(Span.id)
        .order_by(func.min(SpanFragment.start), Span.id)
    ).all()
    index = {}
    spans = []
    for span_id, label, start, end, fragments in rows:
        if fragments == 1:  # a prompt shows mentions as strings: discontinuous ones cannot be shown
            index[span_id] = len(spans)
            spans.append((label, start, end))
    relations = [
        (type_, index[head], index[tail])
        for type_, head, tail in db.execute(
            select(Relation.type, Relation.head_span_id, Relation.tail_span_id).where(
                Relation.annotation_set_id == set_id
            )
        )
        if head in index and tail in index
    ]
    return spans, relations


@dataclass
class NoteOutcome:
    spans: list[tuple[str, int, int, float]]  # label, start, end (note offsets), confidence
    relations: list[tuple[str, int, int]]  # type, head index, tail index into spans
    chunk_records: list[dict[str, Any]]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0


def lexicon_outcome(work: NoteWork) -> NoteOutcome:
    """The lexicon method: every term match, confidence as the contract gives it."""
    from app.domain.lexicon import LexiconTerm

    configuration = work.configuration
    lexicon = Lexicon(
        [LexiconTerm(label, term) for label, term in configuration["terms"]],
        whole_word=configuration["whole_word"],
        case_sensitive=configuration["case_sensitive"],
    )
    matches = lexicon.annotate(work.text)
    return NoteOutcome(
        spans=[(label, start, end, 0.7) for label, start, end in matches],
        relations=[],
        chunk_records=[{"method": "lexicon", "matches": len(matches)}],
    )


class ResponseCache:
    """Model answers by fingerprint, in the database: a rerun of the same prompt makes no call."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def get(self, fingerprint: str) -> LlmResponse | None:
        return self.get_many([fingerprint]).get(fingerprint)

    def get_many(self, fingerprints: Sequence[str]) -> dict[str, LlmResponse]:
        """The cached answers among these prompts, in one query (a note asks for all its chunks at once)."""
        with self.sessions() as db:
            rows = list(
                db.scalars(select(LlmResponse).where(LlmResponse.fingerprint.in_(list(fingerprints))))
            )
            db.expunge_all()
        return {row.fingerprint: row for row in rows}

    def put(self, fingerprint: str, model: str, completion) -> None:
        with self.sessions.begin() as db:
            db.execute(
                pg_insert(LlmResponse)
                .values(
                    fingerprint=fingerprint,
                    model=model,
                    response_text=completion.text,
                    prompt_tokens=completion.prompt_tokens,
                    completion_tokens=completion.completion_tokens,
                    latency_ms=completion.latency_ms,
                )
                .on_conflict_do_nothing(index_elements=["fingerprint"])
            )

    def forget(self, fingerprint: str) -> None:
        with self.sessions.begin() as db:
            row = db.get(LlmResponse, fingerprint)
            if row is not None:
                db.delete(row)


_RESOLVERS = {"iob_token": resolve_iob_token, "direct_chunk": resolve_direct_chunk}


async def _ask(
    client, cache: ResponseCache, cached, fingerprint, messages, fmt, prompt_schema, chunk_text, work
):
    """One chunk in one prompt schema: the cached or fresh answer, resolved; retried while garbage."""
    model = work.configuration["endpoint"]["model"]
    record: dict[str, Any] = {
        "prompt_schema": prompt_schema,
        "fingerprint": fingerprint,
        "messages": messages,
    }
    threshold = work.configuration.get("fuzzy_threshold", FUZZY_THRESHOLD)

    def resolve(text: str):
        return _RESOLVERS[prompt_schema](text, chunk_text, work.label_schema, fuzzy_threshold=threshold)

    async def keep(completion) -> None:
        # Cached before the endpoint's slot is released, and only if it resolves: a crash then loses at
        # most the answers of requests in flight, and garbage is never cached.
        try:
            resolve(completion.text)
        except UnparseableOutput:
            return
        await asyncio.to_thread(cache.put, fingerprint, model, completion)

    for attempt in range(UNPARSEABLE_ATTEMPTS):
        if attempt > 0:
            cached = None  # a garbage answer is never taken from the cache again
        if cached is not None:
            text, prompt_tokens, completion_tokens, latency = (
                cached.response_text, cached.prompt_tokens, cached.completion_tokens, 0.0,
            )  # fmt: skip
            record["cached"] = True
        else:
            completion = await client.complete(messages, response_format=fmt, temperature=0.0, keep=keep)
            text = completion.text
            prompt_tokens, completion_tokens, latency = (
                completion.prompt_tokens, completion.completion_tokens, completion.latency_ms,
            )  # fmt: skip
            record["cached"] = False
            record["attempts"] = completion.attempts
        try:
            resolved = resolve(text)
        except UnparseableOutput:
            record.setdefault("unparseable", []).append(text[:2000])
            if cached is not None:
                await asyncio.to_thread(cache.forget, fingerprint)
            continue
        record.update(
            output=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=latency,
            dropped=[[d.reason, d.raw] for d in resolved.dropped],
            fuzzy=[list(f) for f in resolved.fuzzy],
        )
        return resolved, record
    from app.llm.client import LlmError

    # Not the parser's message: it quotes the answer, which may quote the note.
    raise LlmError(f"{prompt_schema}: no parseable answer after {UNPARSEABLE_ATTEMPTS} tries")


async def llm_outcome(work: NoteWork, client, cache: ResponseCache) -> NoteOutcome:
    """Chunk the note, ask the model per chunk and prompt schema (concurrently), resolve and merge."""
    configuration = work.configuration
    model = configuration["endpoint"]["model"]
    structured = bool(getattr(client, "structured_supported", True)) and bool(
        (configuration["endpoint"].get("parameters") or {}).get("structured_output", True)
    )
    per_schema: dict[str, list[tuple[int, ResolvedChunk, dict]]] = {}
    few_shot = configuration.get("few_shot", 0) if work.examples is not None else 0
    jobs = []
    for prompt_schema in configuration["schemas"]:
        fmt = response_format(prompt_schema, work.label_schema) if structured else None
        for chunk in chunk_note(work.text, configuration["chunk_sizes"][prompt_schema]):
            jobs.append((prompt_schema, chunk, fmt))

    prompts = []
    for prompt_schema, chunk, fmt in jobs:
        examples = work.examples.select(chunk.text, few_shot, work.own_examples) if few_shot else []
        messages = build_messages(
            work.label_schema, configuration.get("guidelines", ""), prompt_schema, chunk.text, examples,
            structured=structured,
        )  # fmt: skip
        prompts.append((prompt_schema, chunk, fmt, messages, prompt_fingerprint(model, messages, fmt)))
    # One look into the cache for the whole note, off the event loop.
    cached = await asyncio.to_thread(cache.get_many, [p[-1] for p in prompts])

    async def one(prompt_schema, chunk, fmt, messages, fingerprint):
        resolved, record = await _ask(
            client,
            cache,
            cached.get(fingerprint),
            fingerprint,
            messages,
            fmt,
            prompt_schema,
            chunk.text,
            work,
        )
        record["chunk"] = [chunk.start, chunk.end]
        return prompt_schema, chunk, resolved, record

    answers = await asyncio.gather(*(one(*p) for p in prompts))
    records = []
    for prompt_schema, chunk, resolved, record in answers:
        per_schema.setdefault(prompt_schema, []).append((chunk.start, resolved, record))
        records.append(record)
    outcome = NoteOutcome(spans=[], relations=[], chunk_records=records)
    for record in records:
        outcome.prompt_tokens += record.get("prompt_tokens") or 0
        outcome.completion_tokens += record.get("completion_tokens") or 0
        outcome.latency_ms += record.get("latency_ms") or 0.0
    if len(configuration["schemas"]) == 2:
        # The ensemble merges per chunk, so both schemas must be cut the same way: pair by overlap.
        merged = _ensemble_by_chunk(per_schema["iob_token"], per_schema["direct_chunk"], work)
    else:
        merged = [(start, resolved) for start, resolved, _ in per_schema[configuration["schemas"][0]]]
    for start, resolved in merged:
        base = len(outcome.spans)
        for span in resolved.spans:
            outcome.spans.append((span.label, start + span.start, start + span.end, span.confidence))
        for relation in resolved.relations:
            outcome.relations.append((relation.type, base + relation.head, base + relation.tail))
    return outcome


def _ensemble_by_chunk(iob, direct, work: NoteWork) -> list[tuple[int, ResolvedChunk]]:
    """The ensemble, region by region: overlapping chunks of the two schemas are merged together.

    The schemas use different chunk sizes (250 and 180 as published), so their chunks do not line
    up: every answer is moved into note offsets, and each connected run of overlapping chunks of
    either schema is one region whose two answers are merged. Returns (0, merged) per region.
    """
    chunks = [("iob", record["chunk"][0], record["chunk"][1], r) for _, r, record in iob]
    chunks += [("direct", record["chunk"][0], record["chunk"][1], r) for _, r, record in direct]
    chunks.sort(key=lambda c: (c[1], c[2]))
    regions: list[list] = []
    end = -1
    for chunk in chunks:
        if regions and chunk[1] < end:
            regions[-1].append(chunk)
            end = max(end, chunk[2])
        else:
            regions.append([chunk])
            end = chunk[2]
    merged = []
    for region in regions:
        parts: dict[str, list[ResolvedChunk]] = {"iob": [], "direct": []}
        for schema, start, _, resolved in region:
            parts[schema].append(_rebased(resolved, start))
        merged.append((0, ensemble(_joined(parts["iob"]), _joined(parts["direct"]), work.label_schema)))
    return merged


def _rebased(resolved: ResolvedChunk, shift: int) -> ResolvedChunk:
    return replace(
        resolved, spans=tuple(replace(s, start=s.start + shift, end=s.end + shift) for s in resolved.spans)
    )


def _joined(parts: list[ResolvedChunk]) -> ResolvedChunk:
    """Several resolved chunks (in note offsets) as one, relation indices shifted."""
    spans, relations, dropped, fuzzy = [], [], [], []
    for part in parts:
        base = len(spans)
        spans.extend(part.spans)
        relations.extend(ResolvedRelation(r.type, base + r.head, base + r.tail) for r in part.relations)
        dropped.extend(part.dropped)
        fuzzy.extend(part.fuzzy)
    return ResolvedChunk(tuple(spans), tuple(relations), tuple(dropped), tuple(fuzzy), True)


def finish_note(
    sessions: sessionmaker[Session], work: NoteWork, outcome: NoteOutcome | None, error: str | None = None
) -> bool:
    """Write the note's pre-annotation set and result in one transaction; False if it was done already."""
    with sessions.begin() as db:
        result = db.scalar(
            select(PreAnnotationResult)
            .where(
                PreAnnotationResult.run_id == work.run_id, PreAnnotationResult.document_id == work.document_id
            )
            .with_for_update()
        )
        run = db.get(PreAnnotationRun, work.run_id, with_for_update=True)
        if not item_runs.may_finish(result, run):
            return False  # another job finished it, or the lead cancelled: write nothing
        if outcome is None:
            result.status = RunStatus.failed.value
            result.error = error
        else:
            result.annotation_set_id = _store_set(db, work, outcome)
            result.status = RunStatus.succeeded.value
            result.error = None
            result.raw_outputs = outcome.chunk_records
            result.prompt_tokens = outcome.prompt_tokens
            result.completion_tokens = outcome.completion_tokens
            result.latency_ms = outcome.latency_ms
        db.flush()
        item_runs.close_run_if_done(
            db, PreAnnotationResult, run, "{failed} note(s) failed; re-run them from the run's page"
        )
        return True


def _store_set(db: Session, work: NoteWork, outcome: NoteOutcome) -> int:
    set_id = db.scalar(
        insert(AnnotationSet)
        .values(
            document_id=work.document_id,
            origin=SetOrigin.pre_annotation.value,
            pre_annotation_run_id=work.run_id,
            status=SetStatus.submitted.value,
        )
        .returning(AnnotationSet.id)
    )
    unique: dict[tuple[str, int, int], int] = {}
    kept: list[tuple[str, int, int, float]] = []
    index_of: list[int] = []
    for label, start, end, confidence in outcome.spans:
        key = (label, start, end)
        if key not in unique:
            unique[key] = len(kept)
            kept.append((label, start, end, confidence))
        index_of.append(unique[key])
    if not kept:
        return set_id
    span_ids = db.scalars(
        insert(Span).returning(Span.id, sort_by_parameter_order=True),
        [
            {
                "annotation_set_id": set_id,
                "uid": f"p{position}",
                "label": label,
                "status": SpanStatus.pending.value,
                "confidence": confidence,
            }
            for position, (label, _, _, confidence) in enumerate(kept)
        ],
    ).all()
    db.execute(
        insert(SpanFragment),
        [
            {"span_id": span_id, "ordinal": 0, "start": start, "end": end}
            for span_id, (_, start, end, _) in zip(span_ids, kept, strict=True)
        ],
    )
    relations = {(t, index_of[h], index_of[k]) for t, h, k in outcome.relations if index_of[h] != index_of[k]}
    if relations:
        db.execute(
            insert(Relation),
            [
                {
                    "annotation_set_id": set_id,
                    "uid": f"r{position}",
                    "type": type_,
                    "head_span_id": span_ids[head],
                    "tail_span_id": span_ids[tail],
                    # A relation is as sure as the less sure of its two spans.
                    "confidence": _lower(kept[head][3], kept[tail][3]),
                }
                for position, (type_, head, tail) in enumerate(sorted(relations))
            ],
        )
    return set_id


def _lower(a: float | None, b: float | None) -> float | None:
    known = [c for c in (a, b) if c is not None]
    return min(known) if known else None


_CLIENTS: dict[tuple[int, Any], Any] = {}  # (event loop, endpoint configuration) -> ChatClient


def _client_for(config):
    """One HTTP client per endpoint and event loop: its connections are reused from note to note."""
    from app.llm.client import ChatClient

    loop = asyncio.get_running_loop()
    for key in [k for k, c in _CLIENTS.items() if c[1].is_closed()]:
        _CLIENTS.pop(key)  # clients of loops that ended (tests run several)
    key = (id(loop), config)
    if key not in _CLIENTS:
        _CLIENTS[key] = (ChatClient(config), loop)
    return _CLIENTS[key][0]


async def ask_endpoint(sessions: sessionmaker[Session], endpoint_id: int, ask, *, make_client=None):
    """``await ask(client)`` with a client of the endpoint: (its result, None), or (None, why) when the
    endpoint is gone or the model gave no answer. The message never quotes the answer (it may quote
    the note). A client made by ``make_client`` (tests) is closed after; the shared ones are kept."""
    from app.llm.client import LlmError
    from app.services.llm_endpoints import client_config

    def endpoint_config():
        with sessions() as db:
            endpoint = db.get(LlmEndpoint, endpoint_id)
            return client_config(endpoint) if endpoint else None

    config = await asyncio.to_thread(endpoint_config)
    if config is None:
        return None, "the run's endpoint no longer exists"
    client = make_client(config) if make_client else _client_for(config)
    try:
        return await ask(client), None
    except LlmError as error:
        return None, str(error)[:1000]
    finally:
        if make_client:
            await client.aclose()


async def pre_annotate_note(
    sessions: sessionmaker[Session], run_id: int, document_id: int, *, make_client=None
) -> str:
    """The job: claim the note, label it, write its set; returns what happened (for the job log).

    Database work runs in threads so that the event loop, shared by every chunk request in flight,
    is never held up by it.
    """
    work = await asyncio.to_thread(claim_note, sessions, run_id, document_id)
    if work is None:
        return "skipped"
    started = time.monotonic()
    if work.configuration["method"] == "lexicon":
        await asyncio.to_thread(finish_note, sessions, work, lexicon_outcome(work))
        return "done"
    outcome, error = await ask_endpoint(
        sessions,
        work.configuration["endpoint"]["id"],
        lambda client: llm_outcome(work, client, ResponseCache(sessions)),
        make_client=make_client,
    )
    if outcome is None:
        await asyncio.to_thread(finish_note, sessions, work, None, error)
        log.warning("run %s note %s failed", run_id, document_id)
        return "failed"
    await asyncio.to_thread(finish_note, sessions, work, outcome)
    log.info("run %s note %s: %d pre-labels in %.1f s", run_id, document_id, len(outcome.spans),
             time.monotonic() - started)  # fmt: skip
    return "done"
