"""Adjudication: the queue of notes to settle, every physician's work side by side, and gold.

Gold is an annotation set of its own (origin gold, started by a lead), edited through the same
edit path as a physician's set, so it has its own edit log and timing and replays from its events.
Its first event, ``propose``, holds what every physician agreed on; ``adopt`` keeps a physician's
version; ``ambiguous`` keeps a span with its label distribution. The physicians' sets are only read.
"""

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import (
    AdjudicationStatistics,
    AnnotationSet,
    Document,
    EditEvent,
    PreAnnotationRun,
    Project,
    Span,
    SpanFragment,
    User,
    new_uid,
)
from app.domain.active_time import TimeEvent, session_times
from app.domain.adjudication import (
    Fragments,
    Mark,
    RelationMark,
    Version,
    agreed_answers,
    agreed_relations,
    agreement_share,
    candidates,
    competes,
    distribution_over,
    stretch_counts,
)
from app.domain.editing import (
    Command,
    EditRefused,
    RelationState,
    SetState,
    SpanState,
    apply_change,
    distribution_items,
    plan,
)
from app.domain.label_schema import LabelSchema, StudySettings
from app.domain.vocabulary import EditKind, SetOrigin, SetStatus
from app.services import audit, editing

PROPOSAL_CLIENT_ID = "propose"  # the gold set's first event; one per set, so a repeated start is harmless


class AdjudicationError(ValueError):
    """A note that cannot be adjudicated (yet); the message says why."""


# ---- the queue ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueItem:
    document_id: int
    external_id: str
    physicians: int  # submitted physician sets
    agreement: float | None  # share of candidates everyone agreed on (None: nobody marked anything)
    disputed: int  # candidates to settle
    candidates: int
    gold_set_id: int | None  # the adjudication, when started
    gold_status: str  # "not started", "open" or "submitted"
    minutes: float | None = None  # the lead's active time on it so far (idle excluded)


def _spans_of_sets(db: Session, set_ids: list[int]) -> dict[int, list[tuple[str, Fragments]]]:
    """(label, sorted fragments) of every span of many sets, in one query (the queue reads every note)."""
    rows = db.execute(
        select(Span.annotation_set_id, Span.id, Span.label, SpanFragment.start, SpanFragment.end)
        .join(SpanFragment, SpanFragment.span_id == Span.id)
        .where(Span.annotation_set_id.in_(set_ids))
        .order_by(Span.id, SpanFragment.start)
    ).all()
    by_set: dict[int, list[tuple[str, Fragments]]] = defaultdict(list)
    fragments: list[tuple[int, int]] = []
    for index, (set_id, span_id, label, start, end) in enumerate(rows):
        fragments.append((start, end))
        if index + 1 < len(rows) and rows[index + 1][1] == span_id:
            continue  # more fragments of this span follow
        by_set[set_id].append((label, tuple(fragments)))
        fragments = []
    return by_set


QUEUE_CHUNK = 500  # notes whose agreement is computed and kept in one transaction


def adjudication_queue(sessions: sessionmaker[Session], project_id: int) -> list[QueueItem]:
    """Notes with two or more submitted physician sets, the worst agreement first.

    A note's agreement is kept (adjudication_statistics) until its physicians' sets change, so a load
    reads only the notes submitted since the last one; a first load keeps its progress chunk by chunk.
    """
    with sessions() as db:
        rows = db.execute(
            select(AnnotationSet.document_id, AnnotationSet.id, AnnotationSet.version, User.username)
            .join(User, User.id == AnnotationSet.annotator_id)
            .join(Document, Document.id == AnnotationSet.document_id)
            .where(
                Document.project_id == project_id,
                AnnotationSet.origin == SetOrigin.annotator.value,
                AnnotationSet.status == SetStatus.submitted.value,
            )
            .order_by(AnnotationSet.id)
        ).all()
        latest: dict[int, dict[str, tuple[int, int]]] = defaultdict(dict)  # a physician's latest set counts
        for document_id, set_id, version, login in rows:
            latest[document_id][login] = (set_id, version)
        eligible = {d: sets for d, sets in latest.items() if len(sets) >= 2}
        if not eligible:
            return []
        fingerprints = {d: _queue_fingerprint(sets) for d, sets in eligible.items()}
        stored = {
            d: (fingerprint, candidates_, disputed)
            for d, fingerprint, candidates_, disputed in db.execute(
                select(
                    AdjudicationStatistics.document_id,
                    AdjudicationStatistics.fingerprint,
                    AdjudicationStatistics.candidates,
                    AdjudicationStatistics.disputed,
                )
                .join(Document, Document.id == AdjudicationStatistics.document_id)
                .where(Document.project_id == project_id)
            )
        }
        names = dict(
            db.execute(
                select(Document.id, Document.external_id).where(Document.project_id == project_id)
            ).all()
        )
        gold = {
            document_id: (set_id, status)
            for document_id, set_id, status in db.execute(
                select(AnnotationSet.document_id, AnnotationSet.id, AnnotationSet.status)
                .join(Document, Document.id == AnnotationSet.document_id)
                .where(
                    Document.project_id == project_id,
                    AnnotationSet.origin == SetOrigin.gold.value,
                    AnnotationSet.annotator_id.is_not(None),
                )
            )
        }
        minutes = _active_minutes(db, [set_id for set_id, _ in gold.values()], idle_threshold(db, project_id))
    counts = {d: (c, disputed) for d, (f, c, disputed) in stored.items() if f == fingerprints.get(d)}
    stale = sorted(d for d in eligible if d not in counts)
    for begin in range(0, len(stale), QUEUE_CHUNK):
        counts.update(
            _keep_queue_statistics(sessions, stale[begin : begin + QUEUE_CHUNK], eligible, fingerprints)
        )
    items = []
    for document_id, sets in eligible.items():
        found, disputed = counts[document_id]
        gold_set_id, status = gold.get(document_id, (None, "not started"))
        items.append(
            QueueItem(
                document_id=document_id,
                external_id=names[document_id],
                physicians=len(sets),
                agreement=(found - disputed) / found if found else None,
                disputed=disputed,
                candidates=found,
                gold_set_id=gold_set_id,
                gold_status=status,
                minutes=minutes.get(gold_set_id),
            )
        )
    # Worst agreement first; a note nobody marked anything on agrees fully.
    items.sort(key=lambda i: (1.0 if i.agreement is None else i.agreement, -i.disputed, i.external_id))
    return items


def _queue_fingerprint(sets: dict[str, tuple[int, int]]) -> str:
    return hashlib.sha256(repr(sorted(sets.items())).encode()).hexdigest()


def _keep_queue_statistics(
    sessions: sessionmaker[Session],
    document_ids: list[int],
    eligible: dict[int, dict[str, tuple[int, int]]],
    fingerprints: dict[int, str],
) -> dict[int, tuple[int, int]]:
    """Compute and keep the (candidates, disputed) of these notes, in one transaction."""
    set_ids = [set_id for d in document_ids for set_id, _ in eligible[d].values()]
    result = {}
    with sessions.begin() as db:
        spans = _spans_of_sets(db, set_ids)
        for document_id in document_ids:
            result[document_id] = stretch_counts(
                {login: spans.get(set_id, []) for login, (set_id, _) in eligible[document_id].items()}
            )
        statement = pg_insert(AdjudicationStatistics).values(
            [
                {"document_id": d, "fingerprint": fingerprints[d], "candidates": c, "disputed": disputed}
                for d, (c, disputed) in result.items()
            ]
        )
        db.execute(
            statement.on_conflict_do_update(
                index_elements=[AdjudicationStatistics.document_id],
                set_={
                    "fingerprint": statement.excluded.fingerprint,
                    "candidates": statement.excluded.candidates,
                    "disputed": statement.excluded.disputed,
                    "computed_at": func.now(),
                },
            )
        )
    return result


def idle_threshold(db: Session, project_id: int) -> float:
    project = db.get(Project, project_id)
    return StudySettings.model_validate(project.study_settings or {}).idle_threshold_seconds


def _active_minutes(db: Session, set_ids: list[int], idle_seconds: float) -> dict[int, float]:
    """Active minutes of each set (its page sessions' time, idle excluded), in one query."""
    if not set_ids:
        return {}
    rows = db.execute(
        select(EditEvent.annotation_set_id, EditEvent.page_session_id, EditEvent.kind,
               EditEvent.client_monotonic_ms, EditEvent.id)
        .where(EditEvent.annotation_set_id.in_(set_ids), EditEvent.client_monotonic_ms.is_not(None))
        .order_by(EditEvent.id)
    ).all()  # fmt: skip
    events: dict[int, list[TimeEvent]] = defaultdict(list)
    for set_id, page_session, kind, ms, seq in rows:
        events[set_id].append(TimeEvent(page_session=page_session, kind=kind, monotonic_ms=ms, seq=seq))
    return {
        set_id: sum(s.active_seconds for s in session_times(events.get(set_id, []), idle_seconds)) / 60
        for set_id in set_ids
    }


# ---- every physician's work on one note ---------------------------------------------------------


@dataclass
class PhysicianWork:
    """One physician's submitted set, read in full."""

    set_id: int
    login: str
    display_name: str
    state: SetState


def physicians_work(db: Session, document_id: int) -> list[PhysicianWork]:
    """The submitted physician sets of a note (the latest of each physician), in set order."""
    rows = db.execute(
        select(AnnotationSet, User.username, User.display_name)
        .join(User, User.id == AnnotationSet.annotator_id)
        .where(
            AnnotationSet.document_id == document_id,
            AnnotationSet.origin == SetOrigin.annotator.value,
            AnnotationSet.status == SetStatus.submitted.value,
        )
        .order_by(AnnotationSet.id)
    ).all()
    latest = {login: (annotation_set, name) for annotation_set, login, name in rows}
    return [
        PhysicianWork(annotation_set.id, login, name, editing.load_state(db, annotation_set))
        for login, (annotation_set, name) in sorted(latest.items(), key=lambda item: item[1][0].id)
    ]


def marks_of(work: list[PhysicianWork]) -> dict[str, list[Mark]]:
    return {
        w.login: [
            Mark(w.login, uid, s.label, s.fragments, s.attributes, s.concept)
            for uid, s in w.state.spans.items()
        ]
        for w in work
    }


def relation_marks_of(work: list[PhysicianWork]) -> dict[str, list[RelationMark]]:
    def named(state: SetState, uid: str) -> tuple[str, Fragments]:
        span = state.spans[uid]
        return (span.label, tuple(sorted(span.fragments)))

    return {
        w.login: [
            RelationMark(w.login, uid, r.type, named(w.state, r.head), named(w.state, r.tail))
            for uid, r in w.state.relations.items()
        ]
        for w in work
    }


def _evidence_keys(schema: LabelSchema) -> set[str]:
    return {q.key for q in schema.document_questions if q.kind.value == "evidence"}


def _proposal(work: list[PhysicianWork], schema: LabelSchema) -> Command:
    """What every physician agreed on, as gold's first change: spans with the attributes and code
    they share, the relations all drew between them, and the answers all gave alike."""
    logins = [w.login for w in work]
    marks = marks_of(work)
    spans: dict[str, SpanState] = {}
    uid_of: dict[tuple[str, Fragments], str] = {}
    for candidate in candidates(marks):
        if not candidate.agreed:
            continue
        for version in candidate.versions:
            uid = new_uid()
            spans[uid] = _gold_span(version)
            uid_of[(version.label, version.fragments)] = uid
    relations = {}
    for relation_type, head, tail in agreed_relations(relation_marks_of(work), logins):
        if head in uid_of and tail in uid_of:
            relations[new_uid()] = RelationState(relation_type, uid_of[head], uid_of[tail])
    answers = agreed_answers({w.login: w.state.answers for w in work}, logins, skip=_evidence_keys(schema))
    return Command(kind=EditKind.propose, spans=spans, relations=relations, answers=answers)


def _gold_span(version: Version, distribution: dict[str, int] | None = None) -> SpanState:
    return SpanState(
        label=version.label,
        fragments=version.fragments,
        attributes=tuple(sorted(version.attributes.items())),
        concept=version.concept,
        distribution=distribution_items(distribution) if distribution else None,
    )


def start_gold(
    sessions: sessionmaker[Session], project_id: int, document_id: int, user_id: int, *, now: datetime
) -> int:
    """The note's adjudication: the existing one, or a new gold set holding what everyone agreed on
    (one transaction: the set and its proposal event together)."""
    try:
        with sessions.begin() as db:
            document = db.get(Document, document_id)
            if document is None or document.project_id != project_id:
                raise AdjudicationError("document: no such note in this project")
            existing = _adjudicated_gold(db, document_id)
            if existing is not None:
                return existing
            work = physicians_work(db, document_id)
            if len(work) < 2:
                raise AdjudicationError(
                    f"document: {document.external_id} has {len(work)} submitted physician set(s); "
                    "adjudication compares two or more"
                )
            gold = AnnotationSet(document_id=document_id, origin=SetOrigin.gold.value, annotator_id=user_id)
            db.add(gold)
            db.flush()
            context = editing.editor_context(db, gold.id, user_id)
            change = plan(
                _proposal(work, context.schema),
                SetState(),
                text_length=len(document.text),
                schema=context.schema,
            )
            apply_change(SetState(), change)
            editing.write_change(db, gold, change)
            gold.version = 1
            before, after = change.to_json()
            after["physicians"] = [w.set_id for w in work]  # what the proposal was made from
            db.add(
                EditEvent(
                    annotation_set_id=gold.id,
                    user_id=user_id,
                    page_session_id="server",
                    kind=EditKind.propose.value,
                    client_id=PROPOSAL_CLIENT_ID,
                    set_version=1,
                    before=before,
                    after=after,
                    client_wall_time=now,
                )
            )
            audit.record(
                db,
                "adjudication.start",
                user_id=user_id,
                object_type="annotation_set",
                object_id=gold.id,
                details={
                    "document_id": document_id,
                    "physician_sets": [w.set_id for w in work],
                    "proposed_spans": len(change.after_spans),
                },
                at=now,
            )
            return gold.id
    except IntegrityError:  # another lead started it at the same moment: continue theirs
        with sessions() as db:
            existing = _adjudicated_gold(db, document_id)
        if existing is None:
            raise
        return existing


def _adjudicated_gold(db: Session, document_id: int) -> int | None:
    return db.scalar(
        select(AnnotationSet.id).where(
            AnnotationSet.document_id == document_id,
            AnnotationSet.origin == SetOrigin.gold.value,
            AnnotationSet.annotator_id.is_not(None),
        )
    )


# ---- adopt and ambiguous: built here from the stored physician sets --------------------------


def adjudication_command(
    db: Session, context: "editing.EditorContext", state: SetState, request: "editing.EditRequest"
) -> Command:
    """The command an adopt or ambiguous request stands for, from the physicians' stored work."""
    work = physicians_work(db, context.document.id)
    marks = marks_of(work)
    if request.kind == EditKind.ambiguous:
        span = state.spans.get(request.uid or "")
        if span is None:
            raise EditRefused("uid: that span is not in gold")
        if not request.value:
            return Command(kind=EditKind.ambiguous, uid=request.uid, distribution=None)
        distribution = distribution_over(span.fragments, marks)
        if set(distribution) == {"O"}:
            raise EditRefused("uid: no physician marked this text, so there is no label distribution to keep")
        return Command(
            kind=EditKind.ambiguous, uid=request.uid, distribution=distribution_items(distribution)
        )
    source = next((w for w in work if w.set_id == request.source_set), None)
    if source is None:
        raise EditRefused("source_set: not a submitted physician set of this note")
    uid = request.source_uid or ""
    if uid in source.state.spans:
        return _adopt_span(state, marks, source.state.spans[uid], ambiguous=bool(request.value))
    if uid in source.state.relations:
        return _adopt_relation(state, marks, source.state, source.state.relations[uid])
    raise EditRefused("source_uid: that span or relation is not in that physician's set")


def _version_of(marks: dict[str, list[Mark]], label: str, fragments: Fragments) -> Version:
    """Every physician's mark with exactly this label and these fragments, as one version."""
    wanted = tuple(sorted(fragments))
    same = [
        m for ms in marks.values() for m in ms if m.label == label and tuple(sorted(m.fragments)) == wanted
    ]
    return Version(label, wanted, tuple(sorted(m.annotator for m in same)), tuple(same))


def _exact(state: SetState, label: str, fragments: Fragments) -> str | None:
    wanted = tuple(sorted(fragments))
    return next(
        (u for u, s in state.spans.items() if s.label == label and tuple(sorted(s.fragments)) == wanted), None
    )


def _adopt_span(
    state: SetState, marks: dict[str, list[Mark]], span: SpanState, *, ambiguous: bool
) -> Command:
    version = _version_of(marks, span.label, span.fragments)
    existing = _exact(state, version.label, version.fragments)
    distribution = distribution_over(version.fragments, marks) if ambiguous else None
    if existing is not None:
        if ambiguous:  # already in gold: keep it as it is, now ambiguous
            return Command(
                kind=EditKind.ambiguous, uid=existing, distribution=distribution_items(distribution)
            )
        raise EditRefused("source_uid: gold has this span already")
    rivals = tuple(
        u for u, s in state.spans.items() if competes(version.label, version.fragments, s.label, s.fragments)
    )
    return Command(kind=EditKind.adopt, uids=rivals, spans={new_uid(): _gold_span(version, distribution)})


def _adopt_relation(
    state: SetState, marks: dict[str, list[Mark]], source: SetState, relation: RelationState
) -> Command:
    """A physician's relation into gold; its spans come along when gold lacks them."""
    new_spans: dict[str, SpanState] = {}
    rivals: set[str] = set()
    ends = []
    for uid in (relation.head, relation.tail):
        span = source.spans[uid]
        gold_uid = _exact(state, span.label, span.fragments)
        if gold_uid is None:
            version = _version_of(marks, span.label, span.fragments)
            gold_uid = new_uid()
            new_spans[gold_uid] = _gold_span(version)
            rivals.update(
                u
                for u, s in state.spans.items()
                if competes(version.label, version.fragments, s.label, s.fragments)
            )
        ends.append(gold_uid)
    if rivals & set(ends):
        raise EditRefused("source_uid: the relation's two spans compete with each other in gold")
    return Command(
        kind=EditKind.adopt,
        uids=tuple(sorted(rivals)),
        spans=new_spans,
        relations={new_uid(): RelationState(relation.type, ends[0], ends[1])},
    )


# ---- the comparison view ------------------------------------------------------------------------


@dataclass
class VersionRow:
    label: str
    fragments: list[list[int]]
    text: str
    physicians: list[str]  # names as shown (aliases when names are hidden)
    source_set: int  # where "keep" takes it from
    source_uid: str
    in_gold: str | None  # the gold span's uid when gold holds exactly this
    gold_ambiguous: bool
    attributes: dict[str, Any]
    attribute_disputes: list[str]
    dispute_detail: str  # who set the disputed attributes and codes how
    concept: tuple[str, str, str] | None
    concept_disputed: bool
    everyone: bool  # every physician marked it


@dataclass
class CandidateRow:
    key: str
    start: int
    end: int
    text: str
    agreed: bool
    versions: list[VersionRow]
    missing: list[str]
    distribution: dict[str, int]
    pre_labels: list[str]  # "Label (run)" of pre-annotations overlapping it
    resolved: bool  # gold holds one of its versions


@dataclass
class RelationRow:
    type: str
    head_text: str
    tail_text: str
    head_label: str
    tail_label: str
    physicians: list[str]
    source_set: int
    source_uid: str
    in_gold: bool
    everyone: bool
    start: int  # of the head, for text order


@dataclass
class AnswerRow:
    key: str
    prompt: str
    kind: str
    values: list[tuple[str, Any]]  # (physician as shown, value)
    agreed: bool
    gold: Any


@dataclass
class Comparison:
    physicians: list[tuple[str, str]]  # (login, as shown)
    candidates: list[CandidateRow]
    relations: list[RelationRow]
    answers: list[AnswerRow]
    gold_only: list[str]  # gold span uids no physician marked exactly
    agreement: float | None
    hidden_names: bool = False
    counts: dict[str, int] = field(default_factory=dict)


def _covered(text: str, fragments) -> str:
    return " … ".join(text[a:b] for a, b in fragments)


def _pre_labels(db: Session, document_id: int) -> list[tuple[str, Fragments, str]]:
    """(label, fragments, source) of every pre-annotation of the note."""
    rows = db.execute(
        select(
            Span.id,
            Span.label,
            func.coalesce(PreAnnotationRun.name, AnnotationSet.source_name),
            SpanFragment.start,
            SpanFragment.end,
        )
        .join(AnnotationSet, AnnotationSet.id == Span.annotation_set_id)
        .outerjoin(PreAnnotationRun, PreAnnotationRun.id == AnnotationSet.pre_annotation_run_id)
        .join(SpanFragment, SpanFragment.span_id == Span.id)
        .where(
            AnnotationSet.document_id == document_id, AnnotationSet.origin == SetOrigin.pre_annotation.value
        )
        .order_by(Span.id, SpanFragment.ordinal)
    ).all()
    spans: dict[int, tuple[str, str, list]] = {}
    for span_id, label, source, start, end in rows:
        spans.setdefault(span_id, (label, source or "", []))[2].append((start, end))
    return [(label, tuple(fragments), source) for label, source, fragments in spans.values()]


def comparison(
    db: Session, context: "editing.EditorContext", gold: SetState, *, hide_names: bool = False
) -> Comparison:
    """Every physician's spans, relations, attributes, codes and answers beside gold, disagreements marked."""
    text = context.document.text
    work = physicians_work(db, context.document.id)
    shown = {
        w.login: (f"Physician {chr(ord('A') + i)}" if hide_names else (w.display_name or w.login))
        for i, w in enumerate(work)
    }
    marks = marks_of(work)
    source_of = {}
    for w in work:
        for uid, span in w.state.spans.items():
            source_of.setdefault((span.label, tuple(sorted(span.fragments))), (w.set_id, uid))
    pre = _pre_labels(db, context.document.id)
    found = candidates(marks)
    gold_exact = {(s.label, tuple(sorted(s.fragments))): uid for uid, s in gold.spans.items()}
    rows = []
    for candidate in found:
        versions = []
        for version in candidate.versions:
            in_gold = gold_exact.get((version.label, version.fragments))
            source_set, source_uid = source_of[(version.label, version.fragments)]
            versions.append(
                VersionRow(
                    label=version.label,
                    fragments=[list(f) for f in version.fragments],
                    text=_covered(text, version.fragments),
                    physicians=[shown[a] for a in dict.fromkeys(version.annotators)],
                    source_set=source_set,
                    source_uid=source_uid,
                    in_gold=in_gold,
                    gold_ambiguous=bool(in_gold and gold.spans[in_gold].distribution),
                    attributes=version.attributes,
                    attribute_disputes=list(version.attribute_disputes),
                    dispute_detail=_dispute_detail(version, shown),
                    concept=version.concept,
                    concept_disputed=version.concept_disputed,
                    everyone=set(version.annotators) == set(candidate.annotators),
                )
            )
        cells = (candidate.start, candidate.end)
        rows.append(
            CandidateRow(
                key=candidate.key,
                start=candidate.start,
                end=candidate.end,
                text=text[candidate.start : candidate.end],
                agreed=candidate.agreed,
                versions=versions,
                missing=[shown[a] for a in candidate.missing],
                distribution=candidate.label_distribution(),
                pre_labels=sorted(
                    {
                        f"{label} ({source})" if source else label
                        for label, fragments, source in pre
                        if any(a < cells[1] and cells[0] < b for a, b in fragments)
                    }
                ),
                resolved=any(v.in_gold for v in versions),
            )
        )
    marked = {(m.label, tuple(sorted(m.fragments))) for ms in marks.values() for m in ms}
    gold_only = [u for u, s in gold.spans.items() if (s.label, tuple(sorted(s.fragments))) not in marked]
    return Comparison(
        physicians=[(w.login, shown[w.login]) for w in work],
        candidates=rows,
        relations=_relation_rows(text, work, shown, gold),
        answers=_answer_rows(context.schema, work, shown, gold),
        gold_only=gold_only,
        agreement=agreement_share(found),
        hidden_names=hide_names,
        counts={
            "candidates": len(found),
            "agreed": sum(c.agreed for c in found),
            "disputed": sum(not c.agreed for c in found),
            "resolved": sum(1 for r in rows if not r.agreed and r.resolved),
        },
    )


def _dispute_detail(version: Version, shown: dict[str, str]) -> str:
    """'Dr A: certainty=certain; Dr B: certainty=possible' for what the version's physicians set apart."""
    parts = []
    for mark in version.marks:
        values = dict(mark.attributes)
        said = [f"{name}={values.get(name, '(unset)')}" for name in version.attribute_disputes]
        if version.concept_disputed:
            said.append(f"code={mark.concept[0]}:{mark.concept[1]}" if mark.concept else "code=(none)")
        if said:
            parts.append(f"{shown[mark.annotator]}: {', '.join(said)}")
    return "; ".join(parts)


def _relation_rows(
    text: str, work: list[PhysicianWork], shown: dict[str, str], gold: SetState
) -> list[RelationRow]:
    everyone = {w.login for w in work}
    grouped: dict[tuple, list[tuple[PhysicianWork, str]]] = {}
    for w in work:
        for uid, relation in w.state.relations.items():
            head, tail = w.state.spans[relation.head], w.state.spans[relation.tail]
            key = (
                relation.type,
                (head.label, tuple(sorted(head.fragments))),
                (tail.label, tuple(sorted(tail.fragments))),
            )
            grouped.setdefault(key, []).append((w, uid))
    in_gold = set()
    for relation in gold.relations.values():
        head, tail = gold.spans[relation.head], gold.spans[relation.tail]
        in_gold.add(
            (
                relation.type,
                (head.label, tuple(sorted(head.fragments))),
                (tail.label, tuple(sorted(tail.fragments))),
            )
        )
    rows = []
    for key, who in grouped.items():
        relation_type, (head_label, head_fragments), (tail_label, tail_fragments) = key
        rows.append(
            RelationRow(
                type=relation_type,
                head_text=_covered(text, head_fragments),
                tail_text=_covered(text, tail_fragments),
                head_label=head_label,
                tail_label=tail_label,
                physicians=[shown[w.login] for w, _ in who],
                source_set=who[0][0].set_id,
                source_uid=who[0][1],
                in_gold=key in in_gold,
                everyone={w.login for w, _ in who} == everyone,
                start=min(a for a, _ in head_fragments),
            )
        )
    rows.sort(key=lambda r: (r.start, r.type, r.head_text))
    return rows


def _answer_rows(
    schema: LabelSchema, work: list[PhysicianWork], shown: dict[str, str], gold: SetState
) -> list[AnswerRow]:
    rows = []
    for question in schema.document_questions:
        values = [(shown[w.login], w.state.answers.get(question.key)) for w in work]
        given = [v for _, v in values]
        rows.append(
            AnswerRow(
                key=question.key,
                prompt=question.prompt,
                kind=question.kind.value,
                values=values,
                agreed=bool(given) and given[0] is not None and all(v == given[0] for v in given),
                gold=gold.answers.get(question.key),
            )
        )
    return rows
