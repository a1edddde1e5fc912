"""The data model of shared/design/domain.md.

Cheap invariants live in the database as constraints (offsets ordered, one client id per set,
closed vocabularies), so no code path can store what the domain forbids.
"""

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import uuid4

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db.base import Base
from app.domain.vocabulary import (
    BatchStatus,
    Condition,
    EditKind,
    Role,
    RunStatus,
    SetOrigin,
    SetStatus,
    SpanStatus,
    StudyStatus,
)


def one_of(column: str, enum: type[StrEnum], name: str | None = None) -> CheckConstraint:
    allowed = ", ".join(f"'{member.value}'" for member in enum)
    return CheckConstraint(f"{column} IN ({allowed})", name=name or column)


def created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        one_of("role", Role),
        CheckConstraint("username = lower(username)", name="username_lowercase"),
        CheckConstraint("editor_display IN ('full', 'compact')", name="editor_display_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    # Set by an admin's reset: the next login must choose a new password before anything else.
    must_change_password: Mapped[bool] = mapped_column(Boolean, server_default="false")
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # How the editor shows label tags: full names, or short forms in less room (the physician's toggle).
    editor_display: Mapped[str] = mapped_column(String(8), server_default="full")
    created_at: Mapped[datetime] = created_at()


class LoginThrottle(Base):
    """Login attempts (failed, or still being checked) counted under one key ("account:NAME",
    "address:IP" or "pair:NAME|IP"); ``blocked_until`` is only ever set on a pair.

    One row per key, changed by single statements (INSERT ... ON CONFLICT ... RETURNING), so that
    concurrent attempts cannot all read the same count before any of them records its failure.
    """

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, server_default="0")
    # Indexed: spent rows are deleted by it (app.services.auth._forget_spent_throttles).
    window_started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LoginSession(Base):
    """A browser login. The cookie carries a signed random id; only its sha256 is stored."""

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at()
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    client_address: Mapped[str | None] = mapped_column(String(64))

    user: Mapped[User] = relationship()


class ApiToken(Base):
    """A personal token for the JSON API. Shown once at creation; only its sha256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = created_at()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    user: Mapped[User] = relationship()


class LlmEndpoint(Base):
    """An OpenAI-compatible chat-completions endpoint; the key is read from an environment variable."""

    __tablename__ = "llm_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    base_url: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(200))
    api_key_env: Mapped[str | None] = mapped_column(String(100))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    is_active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    created_at: Mapped[datetime] = created_at()


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    guidelines: Mapped[str] = mapped_column(Text, server_default="")
    label_schema: Mapped[dict[str, Any]] = mapped_column(JSONB)
    study_settings: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = created_at()


class ProjectMember(Base):
    """Leads and annotators who work on a project."""

    __tablename__ = "project_members"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    added_at: Mapped[datetime] = created_at()


class Batch(Base):
    """One upload of notes: who, when, which files, what the PHI screen found."""

    __tablename__ = "batches"
    __table_args__ = (
        one_of("status", BatchStatus),
        CheckConstraint("document_count >= 0", name="document_count_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    uploaded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    uploaded_at: Mapped[datetime] = created_at()
    file_names: Mapped[list[str]] = mapped_column(JSONB, server_default="[]")
    document_count: Mapped[int] = mapped_column(Integer, server_default="0")
    status: Mapped[str] = mapped_column(String(16))
    phi_report: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    phi_override_reason: Mapped[str | None] = mapped_column(Text)
    # What a held batch would store, kept only until an admin decides; a rejection erases it.
    staged: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    layer: Mapped[str | None] = mapped_column(Text)  # how its annotations import: pre:NAME, gold...
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Document(Base):
    """A note. Its text is stored exactly as uploaded and never changes; offsets refer to it."""

    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("project_id", "external_id"),
        CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name="sha256_hex"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id", ondelete="RESTRICT"), index=True)
    external_id: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, server_default="{}")
    created_at: Mapped[datetime] = created_at()


class PreAnnotationRun(Base):
    """A pre-annotation run (LLM, lexicon, imported model output) over a set of documents."""

    __tablename__ = "pre_annotation_runs"
    __table_args__ = (
        one_of("status", RunStatus),
        Index(
            "uq_pre_annotation_runs_one_study_base",
            "project_id",
            unique=True,
            postgresql_where=text("is_study_base"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(64))
    llm_endpoint_id: Mapped[int | None] = mapped_column(ForeignKey("llm_endpoints.id", ondelete="SET NULL"))
    # Model, endpoint name, prompt schema and text, chunk size, parameters: all of it, for the paper.
    configuration: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    status: Mapped[str] = mapped_column(String(16))
    # The run whose sets become the base of the study's refine_llm assignments (one per project).
    is_study_base: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = created_at()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)


class AnnotationSet(Base):
    """One layer of annotations on one document: a pre-annotation, one physician's work, or gold."""

    __tablename__ = "annotation_sets"
    __table_args__ = (
        one_of("origin", SetOrigin),
        one_of("status", SetStatus),
        one_of("condition", Condition),
        CheckConstraint("version >= 0", name="version_non_negative"),
        CheckConstraint(
            "origin <> 'annotator' OR annotator_id IS NOT NULL", name="annotator_set_has_annotator"
        ),
        CheckConstraint(
            "origin <> 'pre_annotation' OR pre_annotation_run_id IS NOT NULL",
            name="pre_annotation_set_has_run",
        ),
        CheckConstraint("base_set_id IS NULL OR base_set_id <> id", name="base_is_another_set"),
        # One adjudicated gold set per note (every lead continues it); imported gold has no adjudicator.
        Index(
            "uq_annotation_sets_adjudicated_gold",
            "document_id",
            unique=True,
            postgresql_where=text("origin = 'gold' AND annotator_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    origin: Mapped[str] = mapped_column(String(32))
    annotator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    pre_annotation_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("pre_annotation_runs.id", ondelete="CASCADE"), index=True
    )
    base_set_id: Mapped[int | None] = mapped_column(ForeignKey("annotation_sets.id", ondelete="RESTRICT"))
    condition: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), server_default=SetStatus.open.value)
    # Bumped by every change; an edit naming an older version is refused (two tabs, one set).
    version: Mapped[int] = mapped_column(Integer, server_default="0")
    note: Mapped[str] = mapped_column(Text, server_default="")
    skip_reason: Mapped[str | None] = mapped_column(Text)
    source_name: Mapped[str | None] = mapped_column(String(200))  # an imported layer's name
    # brat lines the app does not model (events, equivalences...), kept verbatim for export.
    unmodelled_lines: Mapped[list[str]] = mapped_column(JSONB, server_default="[]")
    created_at: Mapped[datetime] = created_at()
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    spans: Mapped[list["Span"]] = relationship(
        back_populates="annotation_set", cascade="all, delete-orphan", passive_deletes=True
    )


def new_uid() -> str:
    return uuid4().hex[:16]


UID_PATTERN = "^[A-Za-z0-9_.:-]{1,64}$"


class Span(Base):
    """An entity mention: a label over one or more fragments of the text.

    ``uid`` names the span within its set and across the edit log: a copy keeps the uid of the
    base span it came from and a span added in the browser gets the uid the browser made, so the
    set can be rebuilt by replaying its base and its events.
    """

    __tablename__ = "spans"
    __table_args__ = (
        UniqueConstraint("annotation_set_id", "uid"),
        CheckConstraint(f"uid ~ '{UID_PATTERN}'", name="uid_format"),
        one_of("status", SpanStatus),
        CheckConstraint(
            "confidence IS NULL OR (confidence >= 0 AND confidence <= 1)", name="confidence_unit"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    annotation_set_id: Mapped[int] = mapped_column(
        ForeignKey("annotation_sets.id", ondelete="CASCADE"), index=True
    )
    uid: Mapped[str] = mapped_column(String(64), default=new_uid)
    label: Mapped[str] = mapped_column(String(64))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    concept_code: Mapped[str | None] = mapped_column(String(100))
    concept_system: Mapped[str | None] = mapped_column(String(100))
    concept_name: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[list[str]] = mapped_column(JSONB, server_default="[]")  # annotator notes (brat #)
    base_span_id: Mapped[int | None] = mapped_column(ForeignKey("spans.id", ondelete="SET NULL"), index=True)
    status: Mapped[str] = mapped_column(String(16), server_default=SpanStatus.confirmed.value)
    confidence: Mapped[float | None] = mapped_column(Double)
    # Gold only: a genuinely ambiguous span keeps how many physicians gave each label ("O": none).
    label_distribution: Mapped[dict[str, int] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = created_at()

    annotation_set: Mapped[AnnotationSet] = relationship(back_populates="spans")
    fragments: Mapped[list["SpanFragment"]] = relationship(
        order_by="SpanFragment.ordinal", cascade="all, delete-orphan", passive_deletes=True
    )


class SpanFragment(Base):
    """A half-open ``[start, end)`` range of code points; discontinuous spans have several."""

    __tablename__ = "span_fragments"
    __table_args__ = (
        CheckConstraint("start >= 0", name="start_non_negative"),
        CheckConstraint('"end" > start', name="end_after_start"),
        CheckConstraint("ordinal >= 0", name="ordinal_non_negative"),
    )

    span_id: Mapped[int] = mapped_column(ForeignKey("spans.id", ondelete="CASCADE"), primary_key=True)
    ordinal: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)


class Relation(Base):
    __tablename__ = "relations"
    __table_args__ = (
        UniqueConstraint("annotation_set_id", "uid"),
        CheckConstraint(f"uid ~ '{UID_PATTERN}'", name="uid_format"),
        CheckConstraint("head_span_id <> tail_span_id", name="head_is_not_tail"),
        one_of("status", SpanStatus),
        # No uniqueness of (type, head, tail): real corpora (Chia) repeat relations under two ids.
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    annotation_set_id: Mapped[int] = mapped_column(
        ForeignKey("annotation_sets.id", ondelete="CASCADE"), index=True
    )
    uid: Mapped[str] = mapped_column(String(64), default=new_uid)
    type: Mapped[str] = mapped_column(String(64))
    head_span_id: Mapped[int] = mapped_column(ForeignKey("spans.id", ondelete="CASCADE"), index=True)
    tail_span_id: Mapped[int] = mapped_column(ForeignKey("spans.id", ondelete="CASCADE"), index=True)
    base_relation_id: Mapped[int | None] = mapped_column(ForeignKey("relations.id", ondelete="SET NULL"))
    # A pre-labelled relation stays `pending` until the physician accepts or rejects it, as spans do.
    status: Mapped[str] = mapped_column(String(16), server_default=SpanStatus.confirmed.value)
    confidence: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[datetime] = created_at()


class DocumentAnswer(Base):
    """The answer of one set to one document-level question of the schema."""

    __tablename__ = "document_answers"

    annotation_set_id: Mapped[int] = mapped_column(
        ForeignKey("annotation_sets.id", ondelete="CASCADE"), primary_key=True
    )
    question_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = created_at()


class Assignment(Base):
    """A document in an annotator's queue, under one study condition."""

    __tablename__ = "assignments"
    __table_args__ = (
        one_of("condition", Condition),
        UniqueConstraint("document_id", "annotator_id"),
        UniqueConstraint("project_id", "annotator_id", "queue_position"),
        CheckConstraint("queue_position >= 0", name="queue_position_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    condition: Mapped[str] = mapped_column(String(32))
    queue_position: Mapped[int] = mapped_column(Integer)
    is_calibration: Mapped[bool] = mapped_column(Boolean, server_default="false")
    annotation_set_id: Mapped[int | None] = mapped_column(
        ForeignKey("annotation_sets.id", ondelete="SET NULL"), unique=True
    )
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    # refine_human: the scratch assignment whose submitted set is this one's base.
    base_assignment_id: Mapped[int | None] = mapped_column(
        ForeignKey("assignments.id", ondelete="RESTRICT"), index=True
    )
    # When the physician may see it: NULL while waiting for the calibration gate or for the base.
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_at: Mapped[datetime] = created_at()


class Study(Base):
    """A study design committed for a project: its plan and seed, the calibration gate, the release."""

    __tablename__ = "studies"
    __table_args__ = (one_of("status", StudyStatus),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    seed: Mapped[int] = mapped_column(BigInteger)
    plan: Mapped[dict[str, Any]] = mapped_column(JSONB)  # documents, annotators, shares, overlap...
    status: Mapped[str] = mapped_column(String(16))
    pre_annotation_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("pre_annotation_runs.id", ondelete="SET NULL")
    )
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = created_at()
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PreAnnotationResult(Base):
    """What a run produced for one document: the set, the raw model outputs, tokens and latency."""

    __tablename__ = "pre_annotation_results"
    __table_args__ = (
        UniqueConstraint("run_id", "document_id"),
        one_of("status", RunStatus),
        CheckConstraint("prompt_tokens IS NULL OR prompt_tokens >= 0", name="prompt_tokens_non_negative"),
        CheckConstraint(
            "completion_tokens IS NULL OR completion_tokens >= 0", name="completion_tokens_non_negative"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("pre_annotation_runs.id", ondelete="CASCADE"), index=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    annotation_set_id: Mapped[int | None] = mapped_column(
        ForeignKey("annotation_sets.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(16))
    raw_outputs: Mapped[list[Any]] = mapped_column(JSONB, server_default="[]")
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Double)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")  # jobs that took this note up
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LlmResponse(Base):
    """A model's answer to one prompt, kept so that a rerun of the same prompt makes no call.

    Keyed by the fingerprint of model, messages and response format; unparseable answers are not
    kept, so that a retry asks again.
    """

    __tablename__ = "llm_responses"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(200))
    response_text: Mapped[str] = mapped_column(Text)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[datetime] = created_at()


class EditEvent(Base):
    """One entry of the action log of an annotation set; replaying them rebuilds the set."""

    __tablename__ = "edit_events"
    __table_args__ = (
        one_of("kind", EditKind),
        # A retried request carries the same client id and is recorded once.
        UniqueConstraint("annotation_set_id", "client_id"),
        CheckConstraint(
            "client_monotonic_ms IS NULL OR client_monotonic_ms >= 0", name="monotonic_non_negative"
        ),
        Index("ix_edit_events_set_session", "annotation_set_id", "page_session_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    annotation_set_id: Mapped[int] = mapped_column(ForeignKey("annotation_sets.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    page_session_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    client_id: Mapped[str] = mapped_column(String(64))
    client_monotonic_ms: Mapped[float | None] = mapped_column(Double)
    client_wall_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    server_time: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp()
    )
    set_version: Mapped[int | None] = mapped_column(Integer)
    before: Mapped[Any | None] = mapped_column(JSONB)
    after: Mapped[Any | None] = mapped_column(JSONB)


class AuditEvent(Base):
    """Who did what to which object, from where, when: what an auditor asks about."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_action_at", "action", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    # Kept apart from user_id: a failed login names a user who may not exist.
    username: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str | None] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(64))
    client_address: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")


class ExportFile(Base):
    """An export made in the background: what was asked, how far it got, where the file is."""

    __tablename__ = "export_files"
    __table_args__ = (
        one_of("status", RunStatus),
        CheckConstraint("done >= 0 AND total >= 0", name="progress_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    format: Mapped[str] = mapped_column(String(32))
    layer: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), server_default=RunStatus.queued.value)
    done: Mapped[int] = mapped_column(Integer, server_default="0")
    total: Mapped[int] = mapped_column(Integer, server_default="0")
    file_name: Mapped[str | None] = mapped_column(String(300))
    path: Mapped[str | None] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = created_at()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class NoteStatistics(Base):
    """What the study report needs of one note (app.domain.note_statistics), kept until its sets change.

    ``variant`` names the lead's set and label filters ('' for none); ``fingerprint`` is a digest of every
    set the record was computed from (ids, versions, statuses, conditions, bases) and of the labels, so a
    record that no longer matches its note is never used.
    """

    __tablename__ = "note_statistics"

    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    variant: Mapped[str] = mapped_column(String(300), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    statistics: Mapped[dict[str, Any]] = mapped_column(JSONB)
    computed_at: Mapped[datetime] = created_at()


class MetricsReport(Base):
    """The figures of one view of a project's report (filters, idle threshold, seed, resamples), kept
    until a note's sets change: ``fingerprint`` digests every note fingerprint the figures came from."""

    __tablename__ = "metrics_reports"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    view: Mapped[str] = mapped_column(String(500), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    figures: Mapped[dict[str, Any]] = mapped_column(JSONB)
    computed_at: Mapped[datetime] = created_at()


class Vocabulary(Base):
    """A concept vocabulary an admin uploaded (a licensed RxNorm or SNOMED CT subset, a local list)."""

    __tablename__ = "vocabularies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # The coding system written into spans and brat N lines (``RxNorm:1049630``).
    system: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(100), server_default="")
    description: Mapped[str] = mapped_column(Text, server_default="")
    source_name: Mapped[str | None] = mapped_column(String(300))
    sha256: Mapped[str | None] = mapped_column(String(64))
    concept_count: Mapped[int] = mapped_column(Integer, server_default="0")
    term_count: Mapped[int] = mapped_column(Integer, server_default="0")
    uploaded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    uploaded_at: Mapped[datetime] = created_at()


class Concept(Base):
    __tablename__ = "concepts"
    __table_args__ = (UniqueConstraint("vocabulary_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    vocabulary_id: Mapped[int] = mapped_column(ForeignKey("vocabularies.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(100))
    preferred_term: Mapped[str] = mapped_column(Text)
    semantic_type: Mapped[str | None] = mapped_column(String(200))


class ConceptTerm(Base):
    """One name of a concept (its preferred term or a synonym), normalised for search."""

    __tablename__ = "concept_terms"
    __table_args__ = (
        # Prefix and exact search on the normalised term; the trigram index (migration) serves fuzzy search.
        Index(
            "ix_concept_terms_vocabulary_normalised",
            "vocabulary_id",
            "normalised",
            postgresql_ops={"normalised": "text_pattern_ops"},
        ),
        Index(
            "ix_concept_terms_normalised_trgm",
            "normalised",
            postgresql_using="gin",
            postgresql_ops={"normalised": "gin_trgm_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    concept_id: Mapped[int] = mapped_column(ForeignKey("concepts.id", ondelete="CASCADE"), index=True)
    vocabulary_id: Mapped[int] = mapped_column(ForeignKey("vocabularies.id", ondelete="CASCADE"))
    term: Mapped[str] = mapped_column(Text)
    normalised: Mapped[str] = mapped_column(Text)
    is_preferred: Mapped[bool] = mapped_column(Boolean, server_default="false")


class ProjectVocabulary(Base):
    """The vocabularies a project's physicians code spans with."""

    __tablename__ = "project_vocabularies"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    vocabulary_id: Mapped[int] = mapped_column(
        ForeignKey("vocabularies.id", ondelete="CASCADE"), primary_key=True
    )


class AdjudicationStatistics(Base):
    """A note's agreement as the adjudication queue orders it, kept until its physicians' sets change
    (``fingerprint``: a digest of the submitted sets' ids and versions)."""

    __tablename__ = "adjudication_statistics"

    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    candidates: Mapped[int] = mapped_column(Integer)  # stretches any physician marked
    disputed: Mapped[int] = mapped_column(Integer)  # of those, where they did not all mark the same
    computed_at: Mapped[datetime] = created_at()


class AugmentationRun(Base):
    """A structured-augmentation run (app.domain.augmentation) over a project's gold or submitted sets."""

    __tablename__ = "augmentation_runs"
    __table_args__ = (one_of("status", RunStatus),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    llm_endpoint_id: Mapped[int | None] = mapped_column(ForeignKey("llm_endpoints.id", ondelete="SET NULL"))
    # Everything the run was asked and with what: source, labels, variants, freedom, schema, endpoint.
    configuration: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    status: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = created_at()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)


class AugmentationResult(Base):
    """One source set of a run: its status, its counts, and every answer with why it was not kept."""

    __tablename__ = "augmentation_results"
    __table_args__ = (one_of("status", RunStatus),)

    run_id: Mapped[int] = mapped_column(
        ForeignKey("augmentation_runs.id", ondelete="CASCADE"), primary_key=True
    )
    source_set_id: Mapped[int] = mapped_column(
        ForeignKey("annotation_sets.id", ondelete="CASCADE"), primary_key=True
    )
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    outputs: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")


class SyntheticNote(Base):
    """A note made by augmentation: synthetic, kept apart from documents so that no study, metric or
    export of real notes ever holds it; it names the note and segment it was made from."""

    __tablename__ = "synthetic_notes"
    __table_args__ = (UniqueConstraint("run_id", "source_set_id", "segment_start", "variant"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("augmentation_runs.id", ondelete="CASCADE"), index=True)
    source_set_id: Mapped[int] = mapped_column(ForeignKey("annotation_sets.id", ondelete="CASCADE"))
    source_document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    segment_start: Mapped[int] = mapped_column(Integer)
    segment_end: Mapped[int] = mapped_column(Integer)
    variant: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    spans: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")  # label, fragments, id
    relations: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")  # type, head, tail
    created_at: Mapped[datetime] = created_at()
