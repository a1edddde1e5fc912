"""The editor's endpoints, shared by a physician's set and a lead's gold set.

Both edit through the same service and the same page script; each router mounts these routes under
its own prefix and keeps its own role check, and the service decides who may edit which set.
"""

import inspect
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import partial, wraps
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError, field_validator

from app.domain.editing import EditRefused, RelationsWouldBreak, SetState, SpanState
from app.domain.events import read_events
from app.domain.vocabulary import EditKind, SpanStatus
from app.services import editing, metrics, vocabularies
from app.web.deps import CurrentIdentity, Now, Sessions
from app.web.templating import render

log = logging.getLogger("clinann.editor")
DENIED = "This note is not assigned to you."
VERSION_POLL_MS = 3000  # how often an open editor asks whether another tab changed the set
WALL_CLOCK_LIMIT_MS = 32_503_680_000_000  # the year 3000: a browser clock beyond it is not a clock


def _editor_context(db, set_id: int, user_id: int) -> editing.EditorContext:
    try:
        return editing.editor_context(db, set_id, user_id)
    except editing.NotYourNote:
        raise HTTPException(status_code=403, detail=DENIED) from None


def _context(sessions, set_id: int, user_id: int) -> dict[str, Any]:
    with sessions() as db:
        context = _editor_context(db, set_id, user_id)
        state = editing.load_state(db, context.annotation_set)
        time = editing.session_time_so_far(db, set_id, context.study.idle_threshold_seconds)
        display = editing.editor_display(db, user_id)
    return {"context": context, "state": state, "previous_active_seconds": time, "display": display}


def span_rows(text: str, spans: dict[str, SpanState], uids=None) -> list[dict[str, Any]]:
    """The side list, in text order: label, covered text, fragments, status, for each span."""
    chosen = spans if uids is None else {u: spans[u] for u in uids if u in spans}
    rows = [
        {
            "uid": uid,
            "label": span.label,
            "fragments": [list(f) for f in span.fragments],
            "text": " … ".join(text[a:b] for a, b in span.fragments),
            "pending": span.status == SpanStatus.pending.value,
            "confidence": span.confidence,
            "start": min(a for a, _ in span.fragments),
            "end": max(b for _, b in span.fragments),
            "attributes": dict(span.attributes),
            "concept": dict(zip(("system", "code", "name"), span.concept, strict=True))
            if span.concept
            else None,
            "distribution": dict(span.distribution) if span.distribution else None,
        }
        for uid, span in chosen.items()
    ]
    rows.sort(key=lambda r: (r["start"], -r["end"], r["label"], r["uid"]))
    return rows


def event_rows(text: str, state: SetState, lines: list[str]) -> list[dict[str, Any]]:
    """The set's brat events, read-only: type, trigger text and each role's argument (a span's text, or
    another event by id). They are kept verbatim and written back on export; the editor does not edit
    them, and says when a span they name was deleted."""
    events = read_events(lines).events

    def shown(target: str) -> str:
        if target.startswith("E"):
            return f"{events[target].type} {target}" if target in events else f"{target} (missing)"
        span = state.spans.get(target)
        return " … ".join(text[a:b] for a, b in span.fragments) if span else f"{target} (deleted)"

    return [
        {
            "id": event.id,
            "type": event.type,
            "trigger": shown(event.trigger),
            "arguments": [(role, shown(target)) for role, target in event.arguments],
        }
        for event in events.values()
    ]


def relation_rows(text: str, state: SetState, only: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The relation list (or the rows of `only`, those that exist): type, the two spans' texts, status;
    in the text order of their heads, which `order` spells as one sortable key for the editor."""

    def covered(uid: str) -> str:
        return " … ".join(text[a:b] for a, b in state.spans[uid].fragments)

    rows = [
        {
            "uid": uid,
            "type": relation.type,
            "head": relation.head,
            "tail": relation.tail,
            "head_text": covered(relation.head),
            "tail_text": covered(relation.tail),
            "pending": relation.status == SpanStatus.pending.value,
            "start": min(a for a, _ in state.spans[relation.head].fragments),
        }
        for uid, relation in (
            state.relations.items()
            if only is None
            else ((uid, state.relations[uid]) for uid in only if uid in state.relations)
        )
    ]
    rows.sort(key=lambda r: (r["start"], r["type"], r["uid"]))
    for row in rows:
        row["order"] = f"{row['start']:09d} {row['type']} {row['uid']}"
    return rows


def _pending(state: SetState) -> int:
    pending = SpanStatus.pending.value
    return sum(1 for s in state.spans.values() if s.status == pending) + sum(
        1 for r in state.relations.values() if r.status == pending
    )


def editor_page(sessions, set_id: int, user_id: int, base: str) -> dict[str, Any]:
    """What the editor page renders for a set: the note, its spans and relations, the script's data.
    ``base`` is where the page's script sends its requests (the routes of ``add_editor_routes``)."""
    data = _context(sessions, set_id, user_id)
    context, state = data["context"], data["state"]
    text = context.document.text
    schema = context.schema
    coding = bool(vocabularies.project_vocabulary_ids(sessions, context.project.id))
    labels = [
        {"name": e.name, "color": e.color, "hotkey": e.hotkey, "description": e.description}
        for e in schema.entity_types
    ]
    editor = {
        "set_id": set_id,
        "base": base,
        "gold": context.annotation_set.origin == "gold",
        "text": text,
        "version": context.annotation_set.version,
        "status": state.status,
        "labels": labels,
        "snap": context.study.snap_to_tokens,
        "require_decided": context.study.require_prelabels_decided,
        "idle_threshold_seconds": context.study.idle_threshold_seconds,
        "previous_active_seconds": data["previous_active_seconds"],
        "relation_types": [
            {
                "name": r.name,
                "head_types": r.head_types,
                "tail_types": r.tail_types,
                "description": r.description,
            }
            for r in schema.relation_types
        ],
        "attributes": [
            {"name": a.name, "values": a.values, "applies_to": a.applies_to, "default": a.default}
            for a in schema.span_attributes
        ],
        "coding": coding,
        "display": data["display"],
        # A physician reopens a submitted note only where the study allows it; a lead's gold always.
        "may_reopen": context.annotation_set.origin == "gold" or context.study.physicians_may_reopen,
        "poll_ms": VERSION_POLL_MS,
    }
    return {
        "context": context,
        "state": state,
        "labels": labels,
        "spans": span_rows(text, state.spans),
        "relations": relation_rows(text, state),
        "events": event_rows(text, state, list(context.annotation_set.unmodelled_lines or [])),
        "relation_types": schema.relation_types,
        "questions": [q.model_dump(mode="json") for q in schema.document_questions],
        "answers": state.answers,
        "coding": coding,
        "pending_count": _pending(state),
        "has_confidence": any(s.confidence is not None for s in state.spans.values()),
        "editor": editor,
    }


def add_editor_routes(router: APIRouter, path: str, set_id_type: Any = int) -> None:
    """Mount the editor's endpoints on ``router`` under ``path`` (which holds ``{set_id}``).

    ``set_id_type`` is how the router takes the set's id: a physician's set is decided by its assignment
    (editing.editor_context), a lead's gold set by the project check (deps.LeadSetId).
    """
    taking = partial(_taking_set_id, set_id_type=set_id_type)
    router.add_api_route(f"{path}/spans", taking(span_list), methods=["GET"])
    router.add_api_route(f"{path}/version", taking(set_version), methods=["GET"])
    router.add_api_route(f"{path}/relations", taking(relation_list), methods=["GET"])
    router.add_api_route(f"{path}/concepts", taking(concept_lookup), methods=["GET"])
    router.add_api_route(f"{path}/edits", taking(edit), methods=["POST"])
    router.add_api_route(f"{path}/events", taking(time_events), methods=["POST"], status_code=204)


def _taking_set_id(endpoint, set_id_type: Any):
    """``endpoint`` as FastAPI should see it: the same function, its ``set_id`` of ``set_id_type``."""
    if set_id_type is int:
        return endpoint
    signature = inspect.signature(endpoint)
    parameters = [
        p.replace(annotation=set_id_type) if p.name == "set_id" else p for p in signature.parameters.values()
    ]

    if inspect.iscoroutinefunction(endpoint):

        @wraps(endpoint)
        async def taking(*args, **kwargs):
            return await endpoint(*args, **kwargs)

    else:

        @wraps(endpoint)
        def taking(*args, **kwargs):
            return endpoint(*args, **kwargs)

    taking.__signature__ = signature.replace(parameters=parameters)
    return taking


def span_list(request: Request, set_id: int, identity: CurrentIdentity, sessions: Sessions) -> Response:
    """The whole side list and the current version: what a page reloads after a conflict."""
    data = _context(sessions, set_id, identity.user.id)
    context, state = data["context"], data["state"]
    return render(
        request,
        "annotate/document.html",
        {
            "context": context,
            "state": state,
            "labels": [],
            "spans": span_rows(context.document.text, state.spans),
            "pending_count": _pending(state),
        },
        block_name="span_list",
    )


def set_version(set_id: int, identity: CurrentIdentity, sessions: Sessions) -> Response:
    """The set's version and status: what another tab of the note polls to learn it changed."""
    with sessions() as db:
        context = _editor_context(db, set_id, identity.user.id)
        body = {"version": context.annotation_set.version, "status": context.annotation_set.status}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def relation_list(request: Request, set_id: int, identity: CurrentIdentity, sessions: Sessions) -> Response:
    """The relation list as it is stored: what a page reloads after a conflict."""
    data = _context(sessions, set_id, identity.user.id)
    return render(
        request,
        "annotate/document.html",
        {
            "state": data["state"],
            "spans": [],
            "removed": [],
            "relations": relation_rows(data["context"].document.text, data["state"]),
            "outcome": {"version": data["context"].annotation_set.version, "duplicate": False},
            "pending_count": _pending(data["state"]),
        },
        block_name="edit_result",
    )


def concept_lookup(set_id: int, identity: CurrentIdentity, sessions: Sessions, q: str = "") -> JSONResponse:
    """Codes of the project's vocabularies for a search box: exact synonyms first, then prefix, then fuzzy."""
    # Every keystroke of the search box comes here: check access, without reading the set.
    with sessions() as db:
        project_id = _editor_context(db, set_id, identity.user.id).project.id
    query = q.strip()[:200]
    if not query:
        return JSONResponse({"results": []})
    results = vocabularies.search_concepts(
        sessions, vocabularies.project_vocabulary_ids(sessions, project_id), query, limit=10
    )
    return JSONResponse(
        {
            "results": [
                {
                    "system": r.system,
                    "code": r.code,
                    "preferred_term": r.preferred_term,
                    "term": r.term,
                    "semantic_type": r.semantic_type,
                    "match": str(r.match),
                }  # fmt: skip
                for r in results
            ]
        }
    )


class EditIn(BaseModel):
    kind: str
    client_id: str = Field(max_length=64)
    page_session: str = Field(max_length=64)
    version: int
    monotonic_ms: float | None = Field(default=None, ge=0)
    wall_time_ms: float | None = Field(default=None, ge=0, le=WALL_CLOCK_LIMIT_MS)
    uid: str | None = Field(default=None, max_length=64)
    label: str | None = Field(default=None, max_length=64)
    fragments: list[tuple[int, int]] | None = None
    text: str | None = None
    uids: list[str] | None = None
    target: str | None = Field(default=None, max_length=64)
    head: str | None = Field(default=None, max_length=64)
    tail: str | None = Field(default=None, max_length=64)
    attribute: str | None = Field(default=None, max_length=64)
    key: str | None = Field(default=None, max_length=64)
    value: str | int | list[str] | None = None
    concept_system: str | None = Field(default=None, max_length=100)
    concept_code: str | None = Field(default=None, max_length=100)
    source_set: int | None = None  # adopt (gold): the physician's set and the span or relation kept
    source_uid: str | None = Field(default=None, max_length=64)
    broken_relations: Literal["drop", "retype"] | None = None  # relabel: what becomes of the relations

    @field_validator("uid")
    @classmethod
    def _uid(cls, value: str | None) -> str | None:
        if value is not None and not editing.CLIENT_ID.match(value):
            raise ValueError("1-64 letters, digits, '.', '_', ':' or '-'")
        return value


def _wall(ms: float | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms is not None else None


def edit(
    request: Request,
    set_id: int,
    body: EditIn,
    identity: CurrentIdentity,
    sessions: Sessions,
    now: Now,
    background: BackgroundTasks,
) -> Response:
    """Apply one edit; answer with the re-rendered side-list items of the spans it changed."""
    try:
        outcome = editing.apply_edit(
            sessions,
            identity.user.id,
            set_id,
            editing.EditRequest(
                kind=body.kind,
                client_id=body.client_id,
                page_session=body.page_session,
                version=body.version,
                monotonic_ms=body.monotonic_ms,
                wall_time=_wall(body.wall_time_ms),
                uid=body.uid,
                label=body.label,
                fragments=tuple(body.fragments) if body.fragments is not None else None,
                text=body.text,
                uids=tuple(body.uids) if body.uids is not None else None,
                target=body.target,
                head=body.head,
                tail=body.tail,
                attribute=body.attribute,
                key=body.key,
                value=body.value,
                concept_system=body.concept_system,
                concept_code=body.concept_code,
                source_set=body.source_set,
                source_uid=body.source_uid,
                broken_relations=body.broken_relations,
            ),
            now=now,
        )
    except editing.NotYourNote:
        raise HTTPException(status_code=403, detail=DENIED) from None
    except editing.VersionConflict as conflict:
        return JSONResponse({"detail": str(conflict), "version": conflict.current_version}, status_code=409)
    except RelationsWouldBreak as refused:
        # The editor offers the choice: drop them, or retype those one relation type fits.
        relations = {"broken": refused.broken, "retypable": refused.retypable}
        return JSONResponse({"detail": str(refused), "relations": relations}, status_code=422)
    except EditRefused as refused:
        return JSONResponse({"detail": str(refused)}, status_code=422)
    state = outcome.state
    rows = span_rows(outcome.text, state.spans, outcome.touched)
    removed = [uid for uid in outcome.touched if uid not in state.spans]
    result = {
        "state": state,
        "spans": rows,
        "removed": removed,
        "outcome": outcome,
        "pending_count": _pending(state),
    }
    # 300 relation items are most of a dense note's answer: only the changed ones go, unless the edit
    # was a resent one (then the whole list, as the page may have missed anything).
    if outcome.relations_touched is None:
        result["relations"] = relation_rows(outcome.text, state)
    elif outcome.relations_touched:
        result["relation_changes"] = relation_rows(outcome.text, state, outcome.relations_touched)
        result["relations_removed"] = [uid for uid in outcome.relations_touched if uid not in state.relations]
        result["relation_count"] = len(state.relations)
    response = render(request, "annotate/document.html", result, block_name="edit_result")
    response.headers["X-Set-Version"] = str(outcome.version)
    if body.kind == EditKind.submit and not outcome.duplicate:
        # After the answer: the physician never waits for the lead's figures.
        background.add_task(_refresh_metrics, sessions, set_id)
    return response


def _refresh_metrics(sessions, set_id: int) -> None:
    try:
        metrics.refresh_after_submission(sessions, set_id)
    except Exception:  # the submission is stored; the dashboard computes what it lacks on its next load
        log.warning("could not queue the report refresh after set %s was submitted", set_id, exc_info=True)


class TimeEventIn(BaseModel):
    kind: str
    client_id: str = Field(max_length=64)
    monotonic_ms: float = Field(ge=0)
    wall_time_ms: float | None = Field(default=None, ge=0, le=WALL_CLOCK_LIMIT_MS)


class TimeEventsIn(BaseModel):
    page_session: str = Field(max_length=64)
    events: list[TimeEventIn] = Field(max_length=editing.MAX_TIME_EVENTS)


async def _time_events_body(request: Request) -> TimeEventsIn:
    # sendBeacon posts a form (it cannot set headers): the events come as a JSON field.
    try:
        if request.headers.get("content-type", "").startswith("application/json"):
            return TimeEventsIn.model_validate_json(await request.body())
        form = await request.form()
        return TimeEventsIn.model_validate_json(str(form.get("payload") or "{}"))
    except ValidationError as error:
        raise RequestValidationError(error.errors(include_input=False)) from None


def time_events(
    set_id: int,
    body: Annotated[TimeEventsIn, Depends(_time_events_body)],
    identity: CurrentIdentity,
    sessions: Sessions,
) -> Response:
    """Record open, close, visible, hidden and activity events of a page session."""
    try:
        editing.record_time_events(
            sessions,
            identity.user.id,
            set_id,
            body.page_session,
            [
                editing.TimeEventIn(e.kind, e.client_id, e.monotonic_ms, _wall(e.wall_time_ms))
                for e in body.events
            ],
        )
    except editing.NotYourNote:
        raise HTTPException(status_code=403, detail=DENIED) from None
    except EditRefused as refused:
        return JSONResponse({"detail": str(refused)}, status_code=422)
    return Response(status_code=204)
