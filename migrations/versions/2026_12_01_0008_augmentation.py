"""structured augmentation: runs, their results per source set, and synthetic notes kept apart

Synthetic notes live in their own table, never in documents: no study, metric or export of real
notes can reach them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')"


def upgrade() -> None:
    op.create_table(
        "augmentation_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("llm_endpoint_id", sa.Integer(), nullable=True),
        sa.Column(
            "configuration", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(STATUSES, name=op.f("ck_augmentation_runs_status")),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_augmentation_runs_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["llm_endpoint_id"],
            ["llm_endpoints.id"],
            name=op.f("fk_augmentation_runs_llm_endpoint_id_llm_endpoints"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_augmentation_runs_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_augmentation_runs")),
    )
    op.create_index(op.f("ix_augmentation_runs_project_id"), "augmentation_runs", ["project_id"])
    op.create_table(
        "augmentation_results",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("source_set_id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("counts", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("outputs", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
        sa.CheckConstraint(STATUSES, name=op.f("ck_augmentation_results_status")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["augmentation_runs.id"], name=op.f("fk_augmentation_results_run_id_augmentation_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["source_set_id"], ["annotation_sets.id"],
            name=op.f("fk_augmentation_results_source_set_id_annotation_sets"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["document_id"], ["documents.id"], name=op.f("fk_augmentation_results_document_id_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "source_set_id", name=op.f("pk_augmentation_results")),
    )  # fmt: skip
    op.create_table(
        "synthetic_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("source_set_id", sa.Integer(), nullable=False),
        sa.Column("source_document_id", sa.Integer(), nullable=False),
        sa.Column("segment_start", sa.Integer(), nullable=False),
        sa.Column("segment_end", sa.Integer(), nullable=False),
        sa.Column("variant", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("spans", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
        sa.Column("relations", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["augmentation_runs.id"], name=op.f("fk_synthetic_notes_run_id_augmentation_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["source_set_id"], ["annotation_sets.id"], name=op.f("fk_synthetic_notes_source_set_id_annotation_sets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["source_document_id"], ["documents.id"], name=op.f("fk_synthetic_notes_source_document_id_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_synthetic_notes")),
        sa.UniqueConstraint(
            "run_id", "source_set_id", "segment_start", "variant",
            name=op.f("uq_synthetic_notes_run_id_source_set_id_segment_start_variant"),
        ),
    )  # fmt: skip
    op.create_index(op.f("ix_synthetic_notes_run_id"), "synthetic_notes", ["run_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_synthetic_notes_run_id"), table_name="synthetic_notes")
    op.drop_table("synthetic_notes")
    op.drop_table("augmentation_results")
    op.drop_index(op.f("ix_augmentation_runs_project_id"), table_name="augmentation_runs")
    op.drop_table("augmentation_runs")
