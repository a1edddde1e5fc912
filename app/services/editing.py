"""Editing an annotation set: one request, one transaction, one edit event.

The server validates each edit (offsets inside the text, label known, version current), commits
the change to the spans and its edit event together, and only then answers. A retried request
(same client id) is recorded once; an edit made on a stale version is refused with a conflict.
"""

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, literal, select
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Session, aliased, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from app.db.models import (
    AnnotationSet,
    Assignment,
    Concept,
    Document,
    DocumentAnswer,
    EditEvent,
    Project,
    ProjectVocabulary,
    Relation,
    Span,
    SpanFragment,
    User,
    Vocabulary,
)
from app.db.pipeline import Jsonb, StatementBatch
from app.domain.active_time import SessionTime, TimeEvent, session_times
from app.domain.editing import (
    UNDOABLE,
    Change,
    Command,
    EditRefused,
    RelationState,
    SetState,
    SpanState,
    StateMismatch,
    apply_change,
    check_evidence,
    distribution_items,
    plan,
    replay,
    starting_state,
)
from app.domain.label_schema import LabelSchema, StudySettings
from app.domain.vocabulary import EditKind, Role, SetOrigin

CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
TIME_KINDS = frozenset({EditKind.open, EditKind.close, EditKind.visible, EditKind.hidden, EditKind.activity})
EDIT_KINDS = frozenset(EditKind) - TIME_KINDS
MAX_TIME_EVENTS = 200
ADJUDICATOR_ROLES = frozenset({Role.lead.value, Role.admin.value})
# Edits only adjudication makes; the rest of the editor's kinds work on gold too, except skip.
GOLD_KINDS = frozenset({EditKind.propose, EditKind.adopt, EditKind.ambiguous, EditKind.reopen})


class NotYourNote(PermissionError):
    """The set is not an assignment of this physician."""


class VersionConflict(Exception):
    """The edit was made on an older version of the set (another tab changed it)."""

    def __init__(self, current_version: int):
        self.current_version = current_version
        super().__init__(f"the note changed (now version {current_version}); reload it")


@dataclass(frozen=True)
class EditRequest:
    """An edit as the browser sends it: what to do, and when and where it was done."""

    kind: str
    client_id: str
    page_session: str
    version: int
    monotonic_ms: float | None = None
    wall_time: datetime | None = None
    uid: str | None = None
    label: str | None = None
    fragments: tuple[tuple[int, int], ...] | None = None
    text: str | None = None
    uids: tuple[str, ...] | None = None
    target: str | None = None  # undo / redo: the client id of the event to reverse
    head: str | None = None  # relation_add
    tail: str | None = None
    attribute: str | None = None  # attribute_set
    key: str | None = None  # answer
    value: Any = None  # attribute_set, answer
    concept_system: str | None = None  # concept_set: the code chosen from the lookup (None clears)
    concept_code: str | None = None
    source_set: int | None = None  # adopt: the physician's set, and the span or relation to keep
    source_uid: str | None = None
    broken_relations: str | None = None  # relabel: "drop" or "retype" the relations it would break


@dataclass(frozen=True)
class EditOutcome:
    version: int
    touched: tuple[str, ...]  # span uids whose rows changed
    state: SetState  # the set after the edit, for the answer to render
    text: str  # the note, for the answer's span snippets
    duplicate: bool = False
    # The relations whose side-list item reads differently now (added, removed, decided, retyped, or a
    # span one links moved): the answer carries only those. None: the whole list (a resent edit).
    relations_touched: tuple[str, ...] | None = None


def relations_touched(before: SetState, after: SetState, touched: tuple[str, ...]) -> tuple[str, ...]:
    """The uids of the relations an edit changed, as the side list shows them, in a stable order."""
    changed = {
        uid
        for uid in before.relations.keys() | after.relations.keys()
        if before.relations.get(uid) != after.relations.get(uid)
    }
    moved = {
        uid
        for uid in touched
        if (old := before.spans.get(uid)) is None
        or (new := after.spans.get(uid)) is None
        or old.fragments != new.fragments
    }
    if moved:
        changed.update(uid for uid, r in after.relations.items() if r.head in moved or r.tail in moved)
    return tuple(sorted(changed))


def editor_display(db: Session, user_id: int) -> str:
    """How this physician wants label tags shown: "full" or "compact" (their toggle in the editor)."""
    return db.scalar(select(User.editor_display).where(User.id == user_id)) or "full"


@dataclass(frozen=True)
class EditorContext:
    """What the editor needs of a set it may edit."""

    annotation_set: AnnotationSet
    document: Document
    project: Project
    schema: LabelSchema
    study: StudySettings
    duplicate: bool = False  # the set already holds the edit of the client id asked about


def _check_ids(client_id: str, page_session: str) -> None:
    if not CLIENT_ID.match(client_id or ""):
        raise EditRefused("client_id: 1-64 letters, digits, '.', '_', ':' or '-'")
    if not CLIENT_ID.match(page_session or ""):
        raise EditRefused("page_session: 1-64 letters, digits, '.', '_', ':' or '-'")


def _editor_context_query(lock: bool, with_client_id: bool):
    assigned = select(Assignment.id).where(Assignment.annotation_set_id == AnnotationSet.id).exists()
    role = select(User.role).where(User.id == bindparam("user_id"), User.is_active).scalar_subquery()
    stored = (
        select(EditEvent.id)
        .where(EditEvent.annotation_set_id == AnnotationSet.id, EditEvent.client_id == bindparam("client_id"))
        .exists()
        if with_client_id
        else literal(False)
    )
    query = (
        select(AnnotationSet, Document, Project, assigned, role, stored)
        .join(Document, Document.id == AnnotationSet.document_id)
        .join(Project, Project.id == Document.project_id)
        .where(AnnotationSet.id == bindparam("set_id"))
    )
    return query.with_for_update(of=AnnotationSet) if lock else query


# Built once: every edit starts with this query, and building a statement (and its cache key)
# costs more Python than executing it.
_EDITOR_CONTEXT_QUERIES = {
    (lock, with_client_id): _editor_context_query(lock, with_client_id)
    for lock in (False, True)
    for with_client_id in (False, True)
}


def editor_context(
    db: Session, set_id: int, user_id: int, *, lock: bool = False, client_id: str | None = None
) -> EditorContext:
    """The set with its note and project, if it is assigned to this physician; else NotYourNote.

    One query (every edit starts here): the set, locked when asked, its note, its project, whether
    an assignment holds it, and whether the edit of ``client_id`` is stored already (a resend).
    """
    query = _EDITOR_CONTEXT_QUERIES[lock, client_id is not None]
    parameters = {"set_id": set_id, "user_id": user_id, "client_id": client_id}
    row = db.execute(query, parameters).first()
    if row is None:
        raise NotYourNote(set_id)
    annotation_set, document, project, is_assigned, user_role, duplicate = row
    if annotation_set.origin == SetOrigin.gold.value:
        # Gold is the project's: any lead (or admin) continues an adjudication. Imported gold has
        # no adjudicator and no edit log to replay, so it is not edited here.
        if annotation_set.annotator_id is None or user_role not in ADJUDICATOR_ROLES:
            raise NotYourNote(set_id)
    elif (
        annotation_set.origin != SetOrigin.annotator.value
        or annotation_set.annotator_id != user_id
        or not is_assigned
    ):
        raise NotYourNote(set_id)
    return EditorContext(
        annotation_set=annotation_set,
        document=document,
        project=project,
        schema=LabelSchema.model_validate(project.label_schema),
        study=StudySettings.model_validate(project.study_settings or {}),
        duplicate=bool(duplicate),
    )


def load_spans(db: Session, set_id: int) -> dict[str, SpanState]:
    """Spans of a set by uid, read with one plain query (no ORM objects: long notes stay fast).

    Every edit reads the whole set, so this is the hot path of the editor: one row per fragment,
    and attributes come back as NULL when empty so that most rows need no JSON decoding.
    """
    rows = db.execute(
        select(
            Span.id,
            Span.uid,
            Span.label,
            Span.status,
            func.nullif(Span.attributes, literal({}, JSONB)),
            Span.confidence,
            Span.concept_system,
            Span.concept_code,
            Span.concept_name,
            Span.label_distribution,
            SpanFragment.start,
            SpanFragment.end,
        )
        .outerjoin(SpanFragment, SpanFragment.span_id == Span.id)
        .where(Span.annotation_set_id == set_id)
        .order_by(Span.id, SpanFragment.ordinal)
    ).all()
    spans: dict[str, SpanState] = {}
    fragments: list[tuple[int, int]] = []
    for index, row in enumerate(rows):
        span_id, uid, label, status, attributes, confidence, system, code, name, distribution, start, end = (
            row
        )
        if start is not None:
            fragments.append((start, end))
        if index + 1 < len(rows) and rows[index + 1][0] == span_id:
            continue  # more fragments of this span follow
        spans[uid] = SpanState(
            label=label,
            fragments=tuple(fragments),
            status=status,
            attributes=tuple(sorted(attributes.items())) if attributes else (),
            confidence=confidence,
            concept=(system or "", code, name or "") if code is not None else None,
            distribution=distribution_items(distribution) if distribution else None,
        )
        fragments = []
    return spans


def load_relations(db: Session, set_id: int) -> dict[str, RelationState]:
    """Relations of a set by uid, their spans named by uid."""
    head, tail = aliased(Span), aliased(Span)
    rows = db.execute(
        select(Relation.uid, Relation.type, head.uid, tail.uid, Relation.status, Relation.confidence)
        .join(head, head.id == Relation.head_span_id)
        .join(tail, tail.id == Relation.tail_span_id)
        .where(Relation.annotation_set_id == set_id)
        .order_by(Relation.id)
    ).all()
    return {
        uid: RelationState(type_, h, t, status, confidence) for uid, type_, h, t, status, confidence in rows
    }


def load_answers(db: Session, set_id: int) -> dict[str, Any]:
    return dict(
        db.execute(
            select(DocumentAnswer.question_key, DocumentAnswer.value).where(
                DocumentAnswer.annotation_set_id == set_id
            )
        ).all()
    )


def load_state(db: Session, annotation_set: AnnotationSet) -> SetState:
    return SetState(
        spans=load_spans(db, annotation_set.id),
        note=annotation_set.note,
        status=annotation_set.status,
        skip_reason=annotation_set.skip_reason,
        relations=load_relations(db, annotation_set.id),
        answers=load_answers(db, annotation_set.id),
    )


def starting_state_of(db: Session, annotation_set: AnnotationSet) -> SetState:
    """The state the set began in: its base's spans and relations, undecided; empty for scratch."""
    if annotation_set.base_set_id is None:
        return SetState()
    base = annotation_set.base_set_id
    return starting_state(load_spans(db, base), load_relations(db, base))


def logged_changes(db: Session, set_id: int) -> list[Change]:
    rows = db.execute(
        select(EditEvent.before, EditEvent.after)
        .where(EditEvent.annotation_set_id == set_id, EditEvent.kind.in_([k.value for k in EDIT_KINDS]))
        .order_by(EditEvent.id)
    ).all()
    return [Change.from_json(before, after) for before, after in rows]


def replayed_state(sessions: sessionmaker[Session], set_id: int) -> SetState:
    """The set rebuilt from its base and its edit log (what the stored set must equal)."""
    with sessions() as db:
        annotation_set = db.get(AnnotationSet, set_id)
        return replay(starting_state_of(db, annotation_set), logged_changes(db, set_id))


def stored_state(sessions: sessionmaker[Session], set_id: int) -> SetState:
    with sessions() as db:
        return load_state(db, db.get(AnnotationSet, set_id))


def _base_ids(db: Session, annotation_set: AnnotationSet, table, uids) -> dict[str, int]:
    """Ids of the base set's spans or relations with these uids: a restored copy (undo of a delete)
    still comes from its base by uid."""
    if annotation_set.base_set_id is None or not uids:
        return {}
    return dict(
        db.connection()
        .execute(
            select(table.uid, table.id).where(
                table.annotation_set_id == annotation_set.base_set_id, table.uid.in_(list(uids))
            )
        )
        .all()
    )


def _span_values(after: SpanState) -> dict[str, Any]:
    system, code, name = after.concept or (None, None, None)
    return {
        "label": after.label,
        "status": after.status,
        "attributes": Jsonb(dict(after.attributes)),
        "concept_system": system,
        "concept_code": code,
        "concept_name": name,
        "label_distribution": Jsonb(dict(after.distribution)) if after.distribution is not None else None,
    }


# The statements of the editor's hot path: plain SQL, queued in a StatementBatch and sent with the
# COMMIT (see write_change). A span is named by its set and uid, so a fragment needs no span id back.
# Typed placeholders: one parameter used twice in a statement must be of one type for PostgreSQL.
_SPAN_BY_UID = "annotation_set_id = %(set_id)s::integer AND uid = %(uid)s::varchar"
_SPAN_ID_BY_UID = f"(SELECT id FROM spans WHERE {_SPAN_BY_UID})"
SQL_DELETE_SPAN = f"DELETE FROM spans WHERE {_SPAN_BY_UID}"  # fragments and relations go with it (CASCADE)
SQL_UPDATE_SPAN = (
    "UPDATE spans SET label = %(label)s, status = %(status)s, attributes = %(attributes)s,"
    " concept_system = %(concept_system)s, concept_code = %(concept_code)s,"
    f" concept_name = %(concept_name)s, label_distribution = %(label_distribution)s WHERE {_SPAN_BY_UID}"
)
SQL_DELETE_FRAGMENTS = f"DELETE FROM span_fragments WHERE span_id = {_SPAN_ID_BY_UID}"
# A restored copy (undo of a delete) still comes from its base: base_span_id by uid.
SQL_INSERT_SPAN = (
    "INSERT INTO spans (annotation_set_id, uid, label, status, attributes, concept_system, concept_code,"
    " concept_name, label_distribution, confidence, base_span_id) VALUES (%(set_id)s::integer,"
    " %(uid)s::varchar, %(label)s, %(status)s, %(attributes)s, %(concept_system)s, %(concept_code)s,"
    " %(concept_name)s, %(label_distribution)s, %(confidence)s,"
    " (SELECT id FROM spans WHERE annotation_set_id = %(base_set_id)s::integer AND uid = %(uid)s::varchar))"
)
SQL_INSERT_FRAGMENT = (
    'INSERT INTO span_fragments (span_id, ordinal, start, "end")'
    f" SELECT id, %(ordinal)s, %(start)s, %(end)s FROM spans WHERE {_SPAN_BY_UID}"
)
SQL_INSERT_EDIT_EVENT = (
    "INSERT INTO edit_events (annotation_set_id, user_id, page_session_id, kind, client_id,"
    " client_monotonic_ms, client_wall_time, set_version, before, after) VALUES (%(annotation_set_id)s,"
    " %(user_id)s, %(page_session_id)s, %(kind)s, %(client_id)s, %(client_monotonic_ms)s,"
    " %(client_wall_time)s, %(set_version)s, %(before)s, %(after)s)"
)
# The set's fields an edit changes; only these names ever go into the statement.
SET_FIELDS = ("version", "status", "note", "skip_reason", "submitted_at")


def write_change(
    db: Session, annotation_set: AnnotationSet, change: Change, batch: StatementBatch | None = None
) -> tuple[str, ...]:
    """Make the stored spans and set fields what the change says.

    Plain statements rather than ORM objects: this runs on every keystroke of every physician, and
    a unit-of-work flush costs more than the statements themselves. They are queued in ``batch``
    for the caller to send with the rest of the edit and its COMMIT; without one they are sent
    here. Relations and answers (rare) are written through the session, after the spans they name.
    """
    own_batch = batch is None
    batch = StatementBatch() if batch is None else batch
    set_id = annotation_set.id
    touched: list[str] = []
    for uid, after in change.after_spans.items():
        before = change.before_spans.get(uid)
        if before == after:
            continue
        touched.append(uid)
        key = {"set_id": set_id, "uid": uid}
        if after is None:
            batch.add(SQL_DELETE_SPAN, key)
            continue
        if before is None:
            batch.add(
                SQL_INSERT_SPAN,
                {
                    **key,
                    **_span_values(after),
                    "confidence": after.confidence,
                    "base_set_id": annotation_set.base_set_id,
                },
            )
        else:
            batch.add(SQL_UPDATE_SPAN, {**key, **_span_values(after)})
            if before.fragments == after.fragments:
                continue
            batch.add(SQL_DELETE_FRAGMENTS, key)
        batch.add(
            SQL_INSERT_FRAGMENT,
            [{**key, "ordinal": i, "start": a, "end": b} for i, (a, b) in enumerate(after.fragments)],
        )
    if change.after_set:
        queue_set_update(batch, annotation_set, change.after_set)
    relations_change = any(change.before_relations.get(u) != r for u, r in change.after_relations.items())
    answers_change = any(change.before_answers.get(k) != v for k, v in change.after_answers.items())
    if relations_change or answers_change:
        batch.send(db)  # the relations' statements read the ids of the spans just written
        _write_relations(db, annotation_set, change)
        _write_answers(db, set_id, change)
    if own_batch:
        batch.send(db)
    return tuple(touched)


def queue_set_update(batch: StatementBatch, annotation_set: AnnotationSet, values: dict[str, Any]) -> None:
    """Queue the update of the set's row, and update the loaded object with it (as committed:
    nothing is left for a flush to write again)."""
    unknown = set(values) - set(SET_FIELDS)
    if unknown:
        raise ValueError(f"not a field an edit changes: {sorted(unknown)}")
    assignments = ", ".join(f"{name} = %({name})s" for name in values)
    batch.add(
        f"UPDATE annotation_sets SET {assignments} WHERE id = %(set_id)s",
        {"set_id": annotation_set.id, **values},
    )
    for name, value in values.items():
        set_committed_value(annotation_set, name, value)


def _write_relations(db: Session, annotation_set: AnnotationSet, change: Change) -> None:
    changed = {u: r for u, r in change.after_relations.items() if change.before_relations.get(u) != r}
    if not changed:
        return
    set_id = annotation_set.id
    db.connection().execute(
        delete(Relation).where(Relation.annotation_set_id == set_id, Relation.uid.in_(list(changed)))
    )
    kept = {uid: relation for uid, relation in changed.items() if relation is not None}
    if not kept:
        return
    span_ids = dict(
        db.connection()
        .execute(
            select(Span.uid, Span.id).where(
                Span.annotation_set_id == set_id,
                Span.uid.in_({u for r in kept.values() for u in (r.head, r.tail)}),
            )
        )
        .all()
    )
    base_ids = _base_ids(db, annotation_set, Relation, list(kept))
    db.connection().execute(
        insert(Relation),
        [
            {
                "annotation_set_id": set_id,
                "uid": uid,
                "type": relation.type,
                "head_span_id": span_ids[relation.head],
                "tail_span_id": span_ids[relation.tail],
                "status": relation.status,
                "confidence": relation.confidence,
                "base_relation_id": base_ids.get(uid),
            }
            for uid, relation in kept.items()
        ],
    )


def _write_answers(db: Session, set_id: int, change: Change) -> None:
    for key, value in change.after_answers.items():
        if change.before_answers.get(key) == value:
            continue
        if value is None:
            db.execute(
                delete(DocumentAnswer).where(
                    DocumentAnswer.annotation_set_id == set_id, DocumentAnswer.question_key == key
                )
            )
        else:
            db.execute(
                insert(DocumentAnswer)
                .values(annotation_set_id=set_id, question_key=key, value=value)
                .on_conflict_do_update(
                    index_elements=["annotation_set_id", "question_key"],
                    set_={"value": value, "updated_at": func.now()},
                )
            )


def project_concept(db: Session, project_id: int, system: str, code: str) -> tuple[str, str, str]:
    """(system, code, preferred term) of a code in one of the project's vocabularies; the preferred
    term always comes from the vocabulary, never from the browser."""
    row = db.execute(
        select(Vocabulary.system, Concept.code, Concept.preferred_term)
        .join(Concept, Concept.vocabulary_id == Vocabulary.id)
        .join(ProjectVocabulary, ProjectVocabulary.vocabulary_id == Vocabulary.id)
        .where(ProjectVocabulary.project_id == project_id, Vocabulary.system == system, Concept.code == code)
        .order_by(Vocabulary.id)  # two attached vocabularies of one system: the first uploaded names it
        .limit(1)
    ).first()
    if row is None:
        raise EditRefused(f"concept: {system}:{code} is not in this project's vocabularies")
    return row[0], row[1], row[2]


def _undo_change(db: Session, set_id: int, request: EditRequest) -> Change:
    """Undo reverses an earlier edit; redo reverses an earlier undo. Both go through the log."""
    if not request.target:
        raise EditRefused(f"target: {request.kind} needs the client id of the edit to reverse")
    target = db.scalar(
        select(EditEvent).where(EditEvent.annotation_set_id == set_id, EditEvent.client_id == request.target)
    )
    if target is None:
        raise EditRefused(f"target: no edit {request.target} that can be {request.kind}ne")
    return reversal(request.kind, request.target, target.kind, target.before, target.after)


def reversal(kind: str, target: str, target_kind: str, before: dict, after: dict) -> Change:
    """The change that undoes an earlier edit (logged as ``before``/``after``), or redoes an undo."""
    allowed = UNDOABLE | {EditKind.redo} if kind == EditKind.undo else {EditKind.undo}
    if target_kind not in allowed:
        raise EditRefused(f"target: no edit {target} that can be {kind}ne")
    return Change.from_json(before, after).inverse()


def planned_change(db: Session, context: EditorContext, state: SetState, request: EditRequest) -> Change:
    """The change an edit request (not undo or redo) makes to the set's state, as the editor plans it:
    concept codes from the project's vocabularies and what gold keeps from the physicians' stored sets,
    never from the request."""
    concept = None
    if request.kind == EditKind.concept_set and request.concept_code is not None:
        concept = project_concept(db, context.project.id, request.concept_system or "", request.concept_code)
    if request.kind in (EditKind.adopt, EditKind.ambiguous):
        from app.services.adjudication import adjudication_command

        command = adjudication_command(db, context, state, request)
    else:
        command = Command(
            kind=request.kind,
            uid=request.uid,
            label=request.label,
            fragments=request.fragments,
            text=request.text,
            uids=request.uids,
            head=request.head,
            tail=request.tail,
            attribute=request.attribute,
            key=request.key,
            value=request.value,
            concept=concept,
            broken_relations=request.broken_relations,
        )
    return plan(
        command,
        state,
        text_length=len(context.document.text),
        schema=context.schema,
        require_decided=context.study.require_prelabels_decided,
    )


class _RecentStates:
    """The last state this process committed for each set it edited, with its version.

    Every change of a set goes through ``apply_edit``, which holds the set's row lock and bumps its
    version, so a cached state whose version equals the locked row's version is exactly the stored
    state (another process's edit would have moved the version on). It spares the hot path of the
    editor a read of the whole set (600 spans of a long note) on every keystroke.
    """

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._states: OrderedDict[tuple[int, Any], tuple[int, SetState]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(annotation_set: AnnotationSet) -> tuple[int, Any]:
        # The creation time too: an id may come back after a wipe (tests do), a set's birth does not.
        return annotation_set.id, annotation_set.created_at

    def get(self, annotation_set: AnnotationSet) -> SetState | None:
        key = self._key(annotation_set)
        with self._lock:
            found = self._states.get(key)
            if found is None or found[0] != annotation_set.version:
                return None
            self._states.move_to_end(key)
            return found[1]

    def put(self, annotation_set: AnnotationSet, state: SetState) -> None:
        key = self._key(annotation_set)
        with self._lock:
            self._states[key] = (annotation_set.version, state)
            self._states.move_to_end(key)
            while len(self._states) > self.size:
                self._states.popitem(last=False)


_SET_STATES = _RecentStates()


def apply_edit(
    sessions: sessionmaker[Session], user_id: int, set_id: int, request: EditRequest, *, now: datetime
) -> EditOutcome:
    """Validate an edit, commit it with its edit event, and return the new version."""
    _check_ids(request.client_id, request.page_session)
    if request.kind not in EDIT_KINDS:
        raise EditRefused(f"kind: '{request.kind}' is not an edit")
    with sessions.begin() as db:
        # The lock serialises edits of one set; a resent edit (same client id) is answered, not applied.
        context = editor_context(db, set_id, user_id, lock=True, client_id=request.client_id)
        annotation_set = context.annotation_set
        if context.duplicate:
            return EditOutcome(
                version=annotation_set.version,
                touched=(),
                state=load_state(db, annotation_set),
                text=context.document.text,
                duplicate=True,
            )
        if request.version != annotation_set.version:
            raise VersionConflict(annotation_set.version)
        state = _SET_STATES.get(annotation_set) or load_state(db, annotation_set)
        if request.kind in (EditKind.undo, EditKind.redo):
            change = _undo_change(db, set_id, request)
            try:
                new_state = apply_change(state, change)
                check_evidence(new_state, context.schema)
            except StateMismatch as mismatch:
                raise EditRefused(
                    f"target: the note changed since that edit, so it cannot be {request.kind}ne: {mismatch}"
                ) from None
        else:
            is_gold = annotation_set.origin == SetOrigin.gold.value
            physician_reopen = request.kind == EditKind.reopen and context.study.physicians_may_reopen
            if request.kind in GOLD_KINDS and not is_gold and not physician_reopen:
                raise EditRefused(f"kind: {request.kind} is an adjudication edit, for gold only")
            if is_gold and request.kind in (EditKind.skip, EditKind.propose):
                raise EditRefused(
                    f"kind: gold is not {'skipped' if request.kind == EditKind.skip else 'proposed again'}"
                )
            change = planned_change(db, context, state, request)
            new_state = apply_change(state, change)
        batch = StatementBatch()
        touched = write_change(db, annotation_set, change, batch)
        bumped: dict[str, Any] = {"version": annotation_set.version + 1}
        if request.kind == EditKind.submit:
            bumped["submitted_at"] = now
        queue_set_update(batch, annotation_set, bumped)
        if request.kind == EditKind.submit:
            # The refine_human notes that wait for this set start now, in this same transaction.
            from app.services.study import release_refinements

            release_refinements(db, set_id, now)
        before, after = change.to_json()
        if request.kind in (EditKind.undo, EditKind.redo):
            after["target"] = request.target
        batch.add(
            SQL_INSERT_EDIT_EVENT,
            {
                "annotation_set_id": set_id,
                "user_id": user_id,
                "page_session_id": request.page_session,
                "kind": request.kind,
                "client_id": request.client_id,
                "client_monotonic_ms": request.monotonic_ms,
                "client_wall_time": request.wall_time,
                "set_version": annotation_set.version,
                "before": Jsonb(before),
                "after": Jsonb(after),
            },
        )
        # The edit's writes and its COMMIT, in one round trip; the session's commit then has
        # nothing left to do.
        batch.send(db, commit=True)
        outcome = EditOutcome(
            version=annotation_set.version,
            touched=touched,
            state=new_state,
            text=context.document.text,
            relations_touched=relations_touched(state, new_state, touched),
        )
    # Only once committed: a state that never reached the database must not be taken for one.
    _SET_STATES.put(annotation_set, new_state)
    return outcome


@dataclass(frozen=True)
class TimeEventIn:
    kind: str
    client_id: str
    monotonic_ms: float
    wall_time: datetime | None = None


def record_time_events(
    sessions: sessionmaker[Session], user_id: int, set_id: int, page_session: str, events: list[TimeEventIn]
) -> int:
    """Store open/close/visible/hidden/activity events; a resent event is stored once."""
    if len(events) > MAX_TIME_EVENTS:
        raise EditRefused(f"events: at most {MAX_TIME_EVENTS} in one request")
    for i, event in enumerate(events):
        if event.kind not in TIME_KINDS:
            raise EditRefused(f"events[{i}].kind: '{event.kind}' is not a time event")
        if not event.monotonic_ms >= 0:
            raise EditRefused(f"events[{i}].monotonic_ms: must be a time >= 0")
        _check_ids(event.client_id, page_session)
    with sessions.begin() as db:
        editor_context(db, set_id, user_id)
        if not events:
            return 0
        result = db.execute(
            insert(EditEvent)
            .values(
                [
                    {
                        "annotation_set_id": set_id,
                        "user_id": user_id,
                        "page_session_id": page_session,
                        "kind": e.kind,
                        "client_id": e.client_id,
                        "client_monotonic_ms": e.monotonic_ms,
                        "client_wall_time": e.wall_time,
                    }
                    for e in events
                ]
            )
            .on_conflict_do_nothing(index_elements=["annotation_set_id", "client_id"])
            .returning(EditEvent.id)
        )
        return len(result.all())


def set_time_events(db: Session, set_id: int) -> list[TimeEvent]:
    """Every logged event of a set as a time event (edits count as activity too)."""
    rows = db.execute(
        select(EditEvent.page_session_id, EditEvent.kind, EditEvent.client_monotonic_ms, EditEvent.id)
        .where(EditEvent.annotation_set_id == set_id, EditEvent.client_monotonic_ms.is_not(None))
        .order_by(EditEvent.id)
    ).all()
    return [TimeEvent(page_session=p, kind=k, monotonic_ms=m, seq=i) for p, k, m, i in rows]


def session_time_so_far(db: Session, set_id: int, idle_threshold_seconds: float) -> float:
    """Active seconds over every page session of the set so far (the editor's timer starts there)."""
    return sum(s.active_seconds for s in session_times(set_time_events(db, set_id), idle_threshold_seconds))


def set_times(
    sessions: sessionmaker[Session], set_id: int, idle_threshold_seconds: float
) -> list[SessionTime]:
    """Active and wall time of each page session, as shared/design/metrics.md defines."""
    with sessions() as db:
        return session_times(set_time_events(db, set_id), idle_threshold_seconds)
