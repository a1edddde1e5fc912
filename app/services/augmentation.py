"""Augmentation runs: synthetic training notes from a project's gold (or submitted) sets.

A run stores its configuration and one result per source set (one transaction), then queues a job
per set on procrastinate, like a pre-annotation run: a job claims its set, asks the endpoint for
each segment and variant (answers cached, so a rerun or a crashed job asks nothing twice), and
writes the set's synthetic notes, its counts and every rejected answer with its reason in one
transaction. Synthetic notes live in ``synthetic_notes`` only: no study, metric or export of real
notes reads that table.
"""

import asyncio
import hashlib
import io
import json
import logging
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import (
    AnnotationSet,
    AugmentationResult,
    AugmentationRun,
    Document,
    LlmEndpoint,
    Project,
    SyntheticNote,
    User,
)
from app.domain import augmentation as aug
from app.domain.brat import BratAnnotations, BratEntity, BratRelation, write_ann, write_annotation_conf
from app.domain.label_schema import LabelSchema, parse_label_schema
from app.domain.prompts import prompt_fingerprint
from app.domain.spans import Fragment
from app.domain.vocabulary import RunStatus, SetOrigin, SetStatus
from app.services import audit, editing, item_runs
from app.services.gold import current_gold_set_ids
from app.services.item_runs import FINISHED

log = logging.getLogger("clinann.augmentation")
SOURCES = ("gold", "submitted")
MAX_VARIANTS = 5
MAX_SEGMENTS = 20


class AugmentationError(ValueError):
    """A run that cannot start; ``field`` names what is wrong."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        super().__init__(f"{field_name}: {message}")


@dataclass
class AugmentationRequest:
    name: str
    endpoint_id: int | None
    source: str = "gold"
    labels: list[str] = field(default_factory=list)  # entity types whose segments are rewritten
    relation_types: list[str] = field(default_factory=list)  # relation types whose arguments' segments too
    variants: int = 2
    freedom: str = "light"
    max_segments: int = 3  # per source note
    segment_chars: int = 250
    context_chars: int = 200
    temperature: float = 0.7


def _source_sets(db: Session, project_id: int, source: str) -> list[tuple[int, int]]:
    """(set id, document id) of the sets a run rewrites: each note's gold, or each submitted physician set."""
    if source == "gold":
        query = select(AnnotationSet.id, AnnotationSet.document_id).where(
            AnnotationSet.id.in_(current_gold_set_ids(project_id))
        )
    else:
        query = (
            select(AnnotationSet.id, AnnotationSet.document_id)
            .join(Document, Document.id == AnnotationSet.document_id)
            .where(
                Document.project_id == project_id,
                AnnotationSet.origin == SetOrigin.annotator.value,
                AnnotationSet.status == SetStatus.submitted.value,
            )
        )
    return [tuple(row) for row in db.execute(query.order_by(AnnotationSet.id))]


def _configuration(db: Session, project: Project, request: AugmentationRequest) -> dict[str, Any]:
    name = request.name.strip()
    if not name or len(name) > 200:
        raise AugmentationError("name", "give the run a name of 1 to 200 characters")
    if request.source not in SOURCES:
        raise AugmentationError("source", f"one of {', '.join(SOURCES)}")
    schema = parse_label_schema(project.label_schema)
    entity_names = {e.name for e in schema.entity_types}
    relation_names = {r.name for r in schema.relation_types}
    unknown = [label for label in request.labels if label not in entity_names]
    if unknown:
        raise AugmentationError("labels", f"not entity types of this project: {', '.join(unknown)}")
    unknown = [name for name in request.relation_types if name not in relation_names]
    if unknown:
        raise AugmentationError("relation_types", f"not relation types of this project: {', '.join(unknown)}")
    if not request.labels and not request.relation_types:
        raise AugmentationError("labels", "choose the entity or relation types whose segments are rewritten")
    if not 1 <= request.variants <= MAX_VARIANTS:
        raise AugmentationError("variants", f"from 1 to {MAX_VARIANTS}")
    if request.freedom not in aug.FREEDOMS:
        raise AugmentationError("freedom", f"one of {', '.join(aug.FREEDOMS)}")
    if not 1 <= request.max_segments <= MAX_SEGMENTS:
        raise AugmentationError("max_segments", f"from 1 to {MAX_SEGMENTS}")
    if not 40 <= request.segment_chars <= 5000:
        raise AugmentationError("segment_chars", "from 40 to 5000 characters")
    if not 0 <= request.context_chars <= 2000:
        raise AugmentationError("context_chars", "from 0 to 2000 characters")
    if not 0 <= request.temperature <= 2:
        raise AugmentationError("temperature", "from 0 to 2")
    endpoint = db.get(LlmEndpoint, request.endpoint_id) if request.endpoint_id is not None else None
    if endpoint is None or not endpoint.is_active:
        raise AugmentationError("endpoint", "choose an active LLM endpoint")
    return {
        "source": request.source,
        "labels": sorted(set(request.labels)),
        "relation_types": sorted(set(request.relation_types)),
        "variants": request.variants,
        "freedom": request.freedom,
        "max_segments": request.max_segments,
        "segment_chars": request.segment_chars,
        "context_chars": request.context_chars,
        "temperature": request.temperature,
        # As they were when the run started: what the synthetic notes were made with.
        "endpoint": {
            "id": endpoint.id,
            "name": endpoint.name,
            "base_url": endpoint.base_url,
            "model": endpoint.model,
        },
        "label_schema": project.label_schema,
    }


def start_augmentation(
    sessions: sessionmaker[Session],
    project_id: int,
    request: AugmentationRequest,
    *,
    user_id: int | None,
    defer: Callable[..., Any] | None = None,
    client_address: str | None = None,
) -> int:
    """Store the run and a queued result per source set (one transaction), then queue a job per set."""
    with sessions.begin() as db:
        project = db.get(Project, project_id)
        if project is None:
            raise AugmentationError("project", f"no project {project_id}")
        configuration = _configuration(db, project, request)
        sources = _source_sets(db, project_id, request.source)
        if not sources:
            raise AugmentationError(
                "source",
                "this project has no " + ("gold" if request.source == "gold" else "submitted set") + " yet",
            )
        run = AugmentationRun(
            project_id=project_id,
            name=request.name.strip(),
            llm_endpoint_id=request.endpoint_id,
            configuration=configuration,
            status=RunStatus.queued.value,
            created_by=user_id,
        )
        db.add(run)
        db.flush()
        db.execute(
            insert(AugmentationResult),
            [
                {"run_id": run.id, "source_set_id": s, "document_id": d, "status": RunStatus.queued.value}
                for s, d in sources
            ],
        )
        audit.record(
            db,
            "augmentation_run.started",
            user_id=user_id,
            object_type="augmentation_run",
            object_id=run.id,
            client_address=client_address,
            details={"project_id": project_id, "source_sets": len(sources), **{
                k: configuration[k] for k in ("source", "labels", "relation_types", "variants", "freedom")
            }},
        )  # fmt: skip
        run_id = run.id
    queue_sets(run_id, [s for s, _ in sources], defer=defer)
    return run_id


def queue_sets(run_id: int, set_ids: Sequence[int], *, defer: Callable[..., Any] | None = None) -> None:
    if defer is not None:
        for set_id in set_ids:
            defer("augment_set", run_id=run_id, source_set_id=set_id)
        return
    from app.jobs import defer_many

    defer_many(
        "augment_set",
        [{"run_id": run_id, "source_set_id": s} for s in set_ids],
        queueing_lock=lambda arguments: f"augment-{arguments['run_id']}-{arguments['source_set_id']}",
    )


def cancel_run(sessions: sessionmaker[Session], run_id: int, *, user_id: int | None) -> None:
    with sessions.begin() as db:
        run = db.get(AugmentationRun, run_id, with_for_update=True)
        if run is None:
            raise AugmentationError("run", f"no run {run_id}")
        if run.status in FINISHED:
            raise AugmentationError("run", f"the run has already {run.status}")
        item_runs.cancel_items(db, AugmentationResult, run)
        audit.record(db, "augmentation_run.cancelled", user_id=user_id, object_type="augmentation_run",
                     object_id=run_id)  # fmt: skip


# ---- the work on one source set -----------------------------------------------------------------


@dataclass
class SetWork:
    run_id: int
    source_set_id: int
    document_id: int
    text: str
    schema: LabelSchema
    configuration: dict[str, Any]
    mentions: list[aug.Mention]  # every span of the set with an id (discontinuous ones too)
    attributes: dict[int, dict[str, Any]]  # id -> attributes of its span
    fragments: dict[int, tuple[tuple[int, int], ...]]  # id -> fragments (more than one: discontinuous)
    links: list[aug.Link]


def claim_set(sessions: sessionmaker[Session], run_id: int, source_set_id: int) -> SetWork | None:
    """Take a source set up for work; None when it is done, cancelled or not part of the run."""
    with sessions.begin() as db:
        result = db.get(AugmentationResult, (run_id, source_set_id), with_for_update=True)
        run = db.get(AugmentationRun, run_id)
        if not item_runs.start_item(result, run):
            return None
        document = db.get(Document, result.document_id)
        spans = editing.load_spans(db, source_set_id)
        relations = editing.load_relations(db, source_set_id)
        uids = list(spans)
        single, discontinuous = aug.mentions_of([(spans[u].label, spans[u].fragments) for u in uids])
        # mentions_of numbers the single-fragment spans in text order; map them back to their uids.
        by_place = {(m.label, m.start, m.end): m.id for m in single}
        id_of: dict[str, int] = {}
        for uid in uids:
            span = spans[uid]
            if len(span.fragments) == 1:
                id_of[uid] = by_place[(span.label, *span.fragments[0])]
        next_id = len(single)
        mentions = list(single)
        for index in discontinuous:
            next_id += 1
            uid = uids[index]
            id_of[uid] = next_id
            first, last = spans[uid].fragments[0][0], max(e for _, e in spans[uid].fragments)
            mentions.append(aug.Mention(next_id, spans[uid].label, first, last))
        return SetWork(
            run_id=run_id,
            source_set_id=source_set_id,
            document_id=result.document_id,
            text=document.text,
            schema=parse_label_schema(run.configuration["label_schema"]),
            configuration=dict(run.configuration),
            mentions=mentions,
            attributes={id_of[u]: dict(spans[u].attributes) for u in uids if spans[u].attributes},
            fragments={id_of[u]: tuple(sorted(spans[u].fragments)) for u in uids},
            links=[aug.Link(r.type, id_of[r.head], id_of[r.tail]) for r in relations.values()],
        )


@dataclass
class SetOutcome:
    notes: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)


async def outcome_of(work: SetWork, client, cache) -> SetOutcome:
    """Every segment and variant asked (concurrently, within the endpoint's limit), decoded and checked."""
    configuration = work.configuration
    model = configuration["endpoint"]["model"]
    context = configuration["context_chars"]
    discontinuous = [(f[0][0], f[-1][1]) for f in work.fragments.values() if len(f) > 1]
    single = [m for m in work.mentions if len(work.fragments[m.id]) == 1]
    found = aug.choose_segments(
        work.text,
        single,
        [
            link
            for link in work.links
            if link.head in {m.id for m in single} and link.tail in {m.id for m in single}
        ],
        labels=set(configuration["labels"]),
        relation_types=set(configuration["relation_types"]),
        size=configuration["segment_chars"],
        discontinuous=discontinuous,
    )
    segments = found.chosen[: configuration["max_segments"]]
    asks = []
    for segment in segments:
        for variant in range(1, configuration["variants"] + 1):
            messages = aug.messages(
                work.schema, work.text, segment, work.links, variant=variant,
                variants=configuration["variants"], freedom=configuration["freedom"], context=context,
            )  # fmt: skip
            asks.append((segment, variant, messages, prompt_fingerprint(model, messages, None)))
    cached = await asyncio.to_thread(cache.get_many, [a[-1] for a in asks])

    async def ask(segment, variant, messages, fingerprint):
        hit = cached.get(fingerprint)
        if hit is not None:
            return segment, variant, hit.response_text, True

        async def keep(completion) -> None:  # stored while the request still holds its slot
            await asyncio.to_thread(cache.put, fingerprint, model, completion)

        completion = await client.complete(messages, temperature=configuration["temperature"], keep=keep)
        return segment, variant, completion.text, False

    answers = await asyncio.gather(*(ask(*a) for a in asks))
    outcome = SetOutcome()
    rejected = []
    for segment, variant, answer, was_cached in answers:
        record = {"segment": [segment.start, segment.end], "variant": variant, "cached": was_cached}
        try:
            note = aug.augment_answer(
                answer, work.text, single, work.links, segment, work.schema, configuration["freedom"], context
            )
        except aug.Rejected as rejection:
            rejected.append(rejection.reason)
            outcome.outputs.append({**record, "status": "rejected", "reason": rejection.reason,
                                    "detail": rejection.detail, "answer": answer[:4000]})  # fmt: skip
            continue
        outcome.outputs.append({**record, "status": "accepted"})
        outcome.notes.append(_synthetic_row(work, segment, variant, note))
    outcome.counts = {
        "segments": len(segments),
        "segments_available": len(found.chosen),
        "skipped": found.skipped,
        "requested": len(asks),
        "accepted": len(outcome.notes),
        "rejected": len(rejected),
        "rejections": aug.rejection_counts(rejected),
    }
    return outcome


def _synthetic_row(
    work: SetWork, segment: aug.Segment, variant: int, note: aug.SyntheticNote
) -> dict[str, Any]:
    """The stored form of a synthetic note: every span of the source, moved to the new text."""
    shift = len(note.text) - len(work.text)
    placed = {m.id: m for m in note.mentions}
    spans = []
    for mention in sorted(work.mentions, key=lambda m: (m.start, -m.end, m.id)):
        fragments = work.fragments[mention.id]
        if mention.id in placed:
            moved = placed[mention.id]
            fragments = ((moved.start, moved.end),)
        elif len(fragments) > 1:  # discontinuous: never inside a chosen segment, so before or after it
            fragments = tuple((a + shift, b + shift) if a >= segment.end else (a, b) for a, b in fragments)
        else:
            continue
        spans.append(
            {
                "id": f"T{mention.id}",
                "label": mention.label,
                "fragments": [list(f) for f in sorted(fragments)],
                "attributes": work.attributes.get(mention.id, {}),
            }
        )
    carried = {s["id"] for s in spans}
    relations = [
        {"type": link.type, "head": f"T{link.head}", "tail": f"T{link.tail}"}
        for link in work.links
        if f"T{link.head}" in carried and f"T{link.tail}" in carried
    ]
    spans.sort(key=lambda s: (s["fragments"][0][0], -s["fragments"][-1][1], s["id"]))
    return {
        "segment_start": segment.start,
        "segment_end": segment.end,
        "variant": variant,
        "text": note.text,
        "sha256": hashlib.sha256(note.text.encode("utf-8")).hexdigest(),
        "spans": spans,
        "relations": relations,
    }


def finish_set(sessions: sessionmaker[Session], work: SetWork, outcome: SetOutcome | None,
               error: str | None = None) -> bool:  # fmt: skip
    """Write the set's synthetic notes and result in one transaction; False if it was done already."""
    with sessions.begin() as db:
        result = db.get(AugmentationResult, (work.run_id, work.source_set_id), with_for_update=True)
        run = db.get(AugmentationRun, work.run_id, with_for_update=True)
        if not item_runs.may_finish(result, run):
            return False
        if outcome is None:
            result.status, result.error = RunStatus.failed.value, error
        else:
            if outcome.notes:
                db.execute(
                    pg_insert(SyntheticNote)
                    .values(
                        [
                            {
                                "run_id": work.run_id,
                                "source_set_id": work.source_set_id,
                                "source_document_id": work.document_id,
                                **row,
                            }
                            for row in outcome.notes
                        ]
                    )
                    .on_conflict_do_nothing()
                )
            result.status, result.error = RunStatus.succeeded.value, None
            result.counts, result.outputs = outcome.counts, outcome.outputs
        db.flush()
        item_runs.close_run_if_done(db, AugmentationResult, run, "{failed} source note(s) failed")
        return True


async def augment_set(
    sessions: sessionmaker[Session], run_id: int, source_set_id: int, *, make_client=None
) -> str:
    """The job: claim the set, ask for its variants, store what passed and why the rest did not."""
    from app.services.pre_annotation import ResponseCache, ask_endpoint

    work = await asyncio.to_thread(claim_set, sessions, run_id, source_set_id)
    if work is None:
        return "skipped"
    outcome, error = await ask_endpoint(
        sessions,
        work.configuration["endpoint"]["id"],
        lambda client: outcome_of(work, client, ResponseCache(sessions)),
        make_client=make_client,
    )
    if outcome is None:
        await asyncio.to_thread(finish_set, sessions, work, None, error)
        log.warning("augmentation run %s set %s failed", run_id, source_set_id)
        return "failed"
    await asyncio.to_thread(finish_set, sessions, work, outcome)
    log.info("augmentation run %s set %s: %d kept, %d rejected", run_id, source_set_id,
             outcome.counts["accepted"], outcome.counts["rejected"])  # fmt: skip
    return "done"


# ---- what the lead reads -------------------------------------------------------------------------


@dataclass
class RunView:
    id: int
    name: str
    status: str
    configuration: dict[str, Any]
    created_at: Any
    finished_at: Any
    error: str | None
    progress: dict[str, int]  # status -> source sets
    counts: dict[str, Any]  # summed over its sets: requested, accepted, rejected, rejections, skipped
    created_by: str | None = None

    @property
    def active(self) -> bool:
        return self.status in (RunStatus.queued.value, RunStatus.running.value)

    @property
    def done(self) -> int:
        return sum(n for s, n in self.progress.items() if s in FINISHED)

    @property
    def total(self) -> int:
        return sum(self.progress.values())


def _sum_counts(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {"requested": 0, "accepted": 0, "rejected": 0, "segments": 0, "rejections": {},
                             "skipped": {}}  # fmt: skip
    for counts in rows:
        for key in ("requested", "accepted", "rejected", "segments"):
            total[key] += counts.get(key, 0)
        for key in ("rejections", "skipped"):
            for reason, n in (counts.get(key) or {}).items():
                total[key][reason] = total[key].get(reason, 0) + n
    total["rejections"] = dict(sorted(total["rejections"].items(), key=lambda i: (-i[1], i[0])))
    return total


def list_runs(sessions: sessionmaker[Session], project_id: int, run_id: int | None = None) -> list[RunView]:
    with sessions() as db:
        query = (
            select(AugmentationRun, User.username)
            .outerjoin(User, User.id == AugmentationRun.created_by)
            .where(AugmentationRun.project_id == project_id)
            .order_by(AugmentationRun.id.desc())
        )
        if run_id is not None:
            query = query.where(AugmentationRun.id == run_id)
        runs = db.execute(query).all()
        ids = [run.id for run, _ in runs]
        progress: dict[int, dict[str, int]] = {i: {} for i in ids}
        counts: dict[int, list] = {i: [] for i in ids}
        for run_id_, status, row_counts in db.execute(
            select(AugmentationResult.run_id, AugmentationResult.status, AugmentationResult.counts).where(
                AugmentationResult.run_id.in_(ids)
            )
        ):
            progress[run_id_][status] = progress[run_id_].get(status, 0) + 1
            counts[run_id_].append(row_counts or {})
    return [
        RunView(
            run.id,
            run.name,
            run.status,
            run.configuration,
            run.created_at,
            run.finished_at,
            run.error,
            progress[run.id],
            _sum_counts(counts[run.id]),
            login,
        )  # fmt: skip
        for run, login in runs
    ]


def run_of(sessions: sessionmaker[Session], run_id: int) -> tuple[int, RunView] | None:
    """(project id, the run) or None."""
    with sessions() as db:
        project_id = db.scalar(select(AugmentationRun.project_id).where(AugmentationRun.id == run_id))
    if project_id is None:
        return None
    return project_id, list_runs(sessions, project_id, run_id)[0]


def rejected_outputs(sessions: sessionmaker[Session], run_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """The run's rejected answers, with their note, segment, variant and reason."""
    with sessions() as db:
        rows = db.execute(
            select(Document.external_id, AugmentationResult.outputs)
            .join(Document, Document.id == AugmentationResult.document_id)
            .where(AugmentationResult.run_id == run_id)
            .order_by(AugmentationResult.source_set_id)
        ).all()
    out = []
    for external_id, outputs in rows:
        for output in outputs or []:
            if output.get("status") == "rejected":
                out.append({"note": external_id, **output})
    return out[:limit]


def synthetic_notes(sessions: sessionmaker[Session], run_id: int) -> list[tuple[SyntheticNote, str]]:
    """The run's synthetic notes with their source note's external id, in source order."""
    with sessions() as db:
        rows = db.execute(
            select(SyntheticNote, Document.external_id)
            .join(Document, Document.id == SyntheticNote.source_document_id)
            .where(SyntheticNote.run_id == run_id)
            .order_by(SyntheticNote.source_set_id, SyntheticNote.segment_start, SyntheticNote.variant)
        ).all()
        db.expunge_all()
    return [(note, external_id) for note, external_id in rows]


def synthetic_id(note: SyntheticNote, source: str) -> str:
    """A synthetic note's name: its source note's, the run, the segment and the variant."""
    return f"{source}.aug{note.run_id}-{note.segment_start}-v{note.variant}"


def export_synthetic(sessions: sessionmaker[Session], run_id: int, fmt: str) -> tuple[bytes, str, str]:
    """(content, media type, file name) of a run's synthetic notes as JSONL or a brat zip; each names
    its source note, segment and variant, and says it is synthetic."""
    found = run_of(sessions, run_id)
    if found is None:
        raise AugmentationError("run", f"no run {run_id}")
    project_id, run = found
    notes = synthetic_notes(sessions, run_id)
    source = lambda note, external_id: {  # noqa: E731
        "note": external_id,
        "segment": [note.segment_start, note.segment_end],
        "variant": note.variant,
        "run": run.name,
        "run_id": run_id,
        "source_set_id": note.source_set_id,
    }
    if fmt == "jsonl":
        lines = [
            json.dumps(
                {
                    "id": synthetic_id(note, external_id),
                    "text": note.text,
                    "synthetic": True,
                    "source": source(note, external_id),
                    "spans": note.spans,
                    "relations": note.relations,
                },
                ensure_ascii=False,
            )
            + "\n"
            for note, external_id in notes
        ]
        return "".join(lines).encode("utf-8"), "application/x-ndjson", f"synthetic-run{run_id}.jsonl"
    if fmt != "brat":
        raise AugmentationError("format", "jsonl or brat")
    buffer = io.BytesIO()
    manifest = ["id\tsynthetic\tsource_note\tsegment_start\tsegment_end\tvariant\trun"]
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "synthetic/annotation.conf", write_annotation_conf(run.configuration["label_schema"])
        )
        for note, external_id in notes:
            name = synthetic_id(note, external_id)
            annotations = BratAnnotations()
            for span in note.spans:
                fragments = tuple(Fragment(a, b) for a, b in span["fragments"])
                covered = " ".join(note.text[a:b] for a, b in span["fragments"])
                annotations.entities[span["id"]] = BratEntity(span["id"], span["label"], fragments, covered)
            for index, relation in enumerate(note.relations, start=1):
                annotations.relations.append(
                    BratRelation(f"R{index}", relation["type"], relation["head"], relation["tail"])
                )
            archive.writestr(f"synthetic/{name}.txt", note.text.encode("utf-8"))
            archive.writestr(f"synthetic/{name}.ann", write_ann(annotations))
            manifest.append(
                f"{name}\ttrue\t{external_id}\t{note.segment_start}\t{note.segment_end}\t{note.variant}\t{run_id}"
            )
        archive.writestr("synthetic/SOURCES.tsv", "\n".join(manifest) + "\n")
    return buffer.getvalue(), "application/zip", f"synthetic-run{run_id}.zip"
